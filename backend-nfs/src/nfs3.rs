//! The NFSv3 procedures (RFC 1813) over a [`Vfs`].
//!
//! Every procedure decodes its arguments with the bounded [`Dec`] (undecodable arguments
//! are GARBAGE_ARGS), calls the filesystem with the caller's [`Ctx`], and answers with the
//! exact result shape RFC 1813 gives for success and for failure (failures still carry
//! the weak cache consistency data clients use to keep their caches right).
//!
//! # Decisions
//! - **Permissions of stateless I/O are the server's to check.** READ and WRITE arrive
//!   without an open, and the `Vfs` serves `fh = None` I/O without checking the caller.
//!   As knfsd does, READ needs read or execute permission and WRITE write permission,
//!   except that the owner may always do both (a file created `0444` by `open(O_CREAT|
//!   O_WRONLY)` must stay writable through the descriptor the client holds). Namespace
//!   and attribute changes are checked by the filesystem itself.
//! - **WRITE stability is honoured:** UNSTABLE writes are acknowledged as UNSTABLE and
//!   made durable by COMMIT (`Vfs::fsync`); DATA_SYNC and FILE_SYNC writes are synced
//!   before the reply. Large UNSTABLE writes are applied just after their replies
//!   ([`crate::behind`]), in order, before any later call runs, with their failures
//!   reported at COMMIT. The write verifier is the server instance, constant for its
//!   life, so a client that sees it change after a restart resends what it had not
//!   committed.
//! - **Directory cookies are the `Vfs` cookies** (below 2^63); `.` and `..`, which the
//!   `Vfs` never lists, get the two reserved cookies 2^63+1 and 2^63+2. The cookie
//!   verifier is derived from the directory's mtime, but any verifier is accepted, as
//!   knfsd does for filesystems with stable cookies: the `Vfs` guarantees that resuming
//!   after a cookie neither repeats nor skips entries that exist throughout.
//! - **Directory listings always ask for attributes** (`wants_attr`), for READDIR too:
//!   loopback only hands out stable inode numbers for entries it registers.
//! - **EXCLUSIVE CREATE stores the verifier in mtime and atime seconds,** as knfsd does,
//!   so a retransmitted CREATE finds its own file and succeeds.

use std::ffi::OsStr;
use std::sync::Arc;

use nfsserve::nfs::{
    fattr3, fsinfo3, nfsstat3, nfstime3, post_op_attr, sattr3, specdata3, wcc_data,
};
use vmount_core::{
    AccessMask, Attr, Ctx, DirEntry, DirSink, FileType, Ino, OpenFlags, RenameFlags, SetAttr,
    SetTime, VfsError,
};

use crate::auth::Caller;
use crate::behind;
use crate::convert;
use crate::rpc::{AcceptError, Dec, Enc, Garbage};
use crate::server::Shared;
use crate::splice::{self, Tail};

/// Largest READ and WRITE, and the preferred size of both.
pub const IO_MAX: u32 = 1 << 20;
/// The encoded size of a `post_op_attr` with attributes: a bool and a `fattr3`.
const POST_OP_MAX: usize = 4 + 84;
/// Largest READDIR/READDIRPLUS reply built, whatever the client asks for.
const DIR_REPLY_MAX: usize = 1 << 20;
/// Preferred READDIR size.
const DTPREF: u32 = 128 * 1024;
/// Longest handle accepted (NFS3_FHSIZE).
const FHSIZE: usize = 64;
/// Names longer than this are read and answered with NAMETOOLONG; longer still is
/// garbage.
const NAME_READ_MAX: usize = 4096;
/// Longest symlink target (PATH_MAX).
const PATH_MAX: usize = 4096;

/// The reserved cookies of `.` and `..`.
const COOKIE_DOT: u64 = (1 << 63) | 1;
const COOKIE_DOTDOT: u64 = (1 << 63) | 2;

/// ACCESS bits.
const ACCESS3_READ: u32 = 0x01;
const ACCESS3_LOOKUP: u32 = 0x02;
const ACCESS3_MODIFY: u32 = 0x04;
const ACCESS3_EXTEND: u32 = 0x08;
const ACCESS3_DELETE: u32 = 0x10;
const ACCESS3_EXECUTE: u32 = 0x20;

/// stable_how.
const UNSTABLE: u32 = 0;
const DATA_SYNC: u32 = 1;
const FILE_SYNC: u32 = 2;

/// FSINFO properties.
const FSF_LINK: u32 = 0x0001;
const FSF_SYMLINK: u32 = 0x0002;
const FSF_HOMOGENEOUS: u32 = 0x0008;
const FSF_CANSETTIME: u32 = 0x0010;

type Status<T> = Result<T, nfsstat3>;

fn garbage(_: Garbage) -> AcceptError {
    AcceptError::GarbageArgs
}

/// Handles one NFSv3 call, appending its results to `out`, and returns the data that
/// follows them when a READ's data was spliced (see [`crate::splice`]).
pub(crate) fn dispatch(
    shared: &Shared,
    proc_: u32,
    caller: &Caller,
    record: &Arc<Vec<u8>>,
    args: &[u8],
    out: &mut Vec<u8>,
) -> Result<Option<Tail>, AcceptError> {
    let started = std::time::Instant::now();
    // Everything but a WRITE (which orders itself) sees the writes queued before it.
    if proc_ != 0 && proc_ != 7 {
        shared.behind.barrier();
    }
    let reply_at = out.len();
    let ctx = caller.ctx();
    let mut p = Proc {
        s: shared,
        ctx: &ctx,
        caller,
        record,
        d: Dec::new(args),
        out,
        bytes: 0,
        tail: None,
    };
    let r = match proc_ {
        0 => Ok(()),
        1 => p.getattr(),
        2 => p.setattr(),
        3 => p.lookup(),
        4 => p.access(),
        5 => p.readlink(),
        6 => p.read(),
        7 => p.write(),
        8 => p.create(),
        9 => p.mkdir(),
        10 => p.symlink(),
        11 => p.mknod(),
        12 => p.remove(),
        13 => p.rmdir(),
        14 => p.rename(),
        15 => p.link(),
        16 => p.readdir(false),
        17 => p.readdir(true),
        18 => p.fsstat(),
        19 => p.fsinfo(),
        20 => p.pathconf(),
        21 => p.commit(),
        _ => Err(AcceptError::ProcUnavail),
    };
    // Counted for `vmount status` and the metrics endpoint (see `vmount_core::stats`):
    // a call fails when it is not accepted or its reply's status word is not NFS3_OK.
    if let Some(&op) = usize::try_from(proc_).ok().and_then(|i| STAT_OPS.get(i)) {
        let status = p.out.get(reply_at..reply_at + 4);
        let ok = r.is_ok() && status.is_none_or(|s| s == [0; 4]);
        vmount_core::stats::global().record_since(op, started, ok, p.bytes);
    }
    r.map(|()| p.tail)
}

/// Whether NFSv3 procedure `proc_` with arguments `args` waits on the disk by design: a
/// COMMIT, or a WRITE the client asked to be stable (both flush to storage). Unreadable
/// arguments count as quick: such a call is refused at once.
pub(crate) fn waits_on_storage(proc_: u32, args: &[u8]) -> bool {
    match proc_ {
        21 => true,
        7 => {
            let mut d = Dec::new(args);
            let stable = (|| {
                d.opaque(FHSIZE)?;
                d.u64()?;
                d.u32()?;
                d.u32()
            })();
            stable.is_ok_and(|s| s != UNSTABLE)
        }
        _ => false,
    }
}

/// The counted operation of each procedure number (see `vmount_core::stats`).
const STAT_OPS: [vmount_core::stats::Op; 22] = {
    use vmount_core::stats::Op::*;
    [
        Null,
        Getattr,
        Setattr,
        Lookup,
        Access,
        Readlink,
        Read,
        Write,
        Create,
        Mkdir,
        Symlink,
        Mknod,
        Unlink,
        Rmdir,
        Rename,
        Link,
        Readdir,
        Readdirplus,
        Statfs,
        Fsinfo,
        Pathconf,
        Fsync,
    ]
};

/// Whether `name` is a macOS Apple Double file (`._` followed by anything).
fn is_apple_double(name: &OsStr) -> bool {
    name.as_encoded_bytes().starts_with(b"._")
}

/// A name as the filesystem takes it.
fn os_str(bytes: &[u8]) -> Status<&OsStr> {
    if bytes.len() > vmount_core::NAME_MAX {
        return Err(nfsstat3::NFS3ERR_NAMETOOLONG);
    }
    bytes_to_os(bytes)
}

#[cfg(unix)]
fn bytes_to_os(bytes: &[u8]) -> Status<&OsStr> {
    Ok(std::os::unix::ffi::OsStrExt::from_bytes(bytes))
}

#[cfg(not(unix))]
fn bytes_to_os(bytes: &[u8]) -> Status<&OsStr> {
    // Windows names are Unicode; anything else cannot name a file there.
    std::str::from_utf8(bytes)
        .map(OsStr::new)
        .map_err(|_| nfsstat3::NFS3ERR_INVAL)
}

fn vfs(e: VfsError) -> nfsstat3 {
    convert::status(&e)
}

fn vfs_h(e: VfsError) -> nfsstat3 {
    convert::handle_status(&e)
}

/// One call in progress.
struct Proc<'a, 'o> {
    s: &'a Shared,
    ctx: &'a Ctx,
    caller: &'a Caller,
    /// The call's record, which `d` decodes: WRITE data queued behind the reply stays in
    /// it.
    record: &'a Arc<Vec<u8>>,
    d: Dec<'a>,
    out: &'o mut Vec<u8>,
    /// File data moved by a READ or WRITE, for the counters.
    bytes: u64,
    /// A READ's data, when spliced: it follows `out` on the wire.
    tail: Option<Tail>,
}

impl<'a> Proc<'a, '_> {
    // ---- argument decoding ----

    fn fh(&mut self) -> Result<Status<Ino>, AcceptError> {
        let fh = self.d.opaque(FHSIZE).map_err(garbage)?;
        Ok(self.s.handles.decode(fh))
    }

    /// diropargs3: (directory, name), each possibly invalid as a status.
    fn dirop(&mut self) -> Result<(Status<Ino>, Status<&'a OsStr>), AcceptError> {
        let dir = self.fh()?;
        let name = self.d.opaque(NAME_READ_MAX).map_err(garbage)?;
        Ok((dir, os_str(name)))
    }

    fn sattr(&mut self) -> Result<sattr3, AcceptError> {
        self.d.fixed_xdr::<sattr3>().map_err(garbage)
    }

    // ---- attribute helpers ----

    fn attr(&self, ino: Ino) -> Option<Attr> {
        self.s.fs.getattr(self.ctx, ino, None).ok()
    }

    fn fattr(&self, a: &Attr) -> fattr3 {
        convert::fattr(a, self.s.fsid)
    }

    fn post_op(&self, a: Option<&Attr>) -> post_op_attr {
        match a {
            Some(a) => post_op_attr::attributes(self.fattr(a)),
            None => post_op_attr::Void,
        }
    }

    fn put_post_op(&mut self, a: Option<&Attr>) {
        let p = self.post_op(a);
        self.out.put(&p);
    }

    fn put_wcc(&mut self, before: Option<&Attr>, after: Option<&Attr>) {
        let w = wcc_data {
            before: convert::pre_op(before),
            after: self.post_op(after),
        };
        self.out.put(&w);
    }

    /// An error reply whose body is the object's post-op attributes (most procedures).
    fn fail_post_op(&mut self, s: nfsstat3, a: Option<&Attr>) {
        self.put_status(s);
        self.put_post_op(a);
    }

    /// An error reply whose body is the directory's wcc data (namespace procedures).
    fn fail_wcc(&mut self, s: nfsstat3, before: Option<&Attr>, after: Option<&Attr>) {
        self.put_status(s);
        self.put_wcc(before, after);
    }

    fn put_status(&mut self, s: nfsstat3) {
        self.out.put(&s);
    }

    /// A name a new object may take: `._*` is refused when the Apple Double filter is on.
    fn new_name<'n>(&self, name: Status<&'n OsStr>) -> Status<&'n OsStr> {
        let name = name?;
        if self.s.no_apple_double && is_apple_double(name) {
            return Err(nfsstat3::NFS3ERR_ACCES);
        }
        Ok(name)
    }

    fn writable(&self) -> Status<()> {
        if self.s.read_only {
            Err(nfsstat3::NFS3ERR_ROFS)
        } else {
            Ok(())
        }
    }

    /// Applies the attributes of a CREATE/MKDIR/MKNOD that the creating call itself
    /// did not take (owner, group, times, a size on a new file).
    fn apply_rest(&self, ino: Ino, mut set: SetAttr) -> Status<Option<Attr>> {
        set.mode = None;
        if set.size == Some(0) {
            set.size = None;
        }
        if set.is_empty() {
            return Ok(None);
        }
        self.s
            .fs
            .setattr(self.ctx, ino, &set, None)
            .map(Some)
            .map_err(vfs)
    }

    /// The object part of a successful CREATE/MKDIR/SYMLINK/MKNOD result.
    fn put_new_object(&mut self, a: &Attr) {
        self.out.put_bool(true);
        let fh = self.s.handles.encode(a.ino);
        self.out.put_opaque(&fh);
        self.put_post_op(Some(a));
    }

    /// Checks stateless READ or WRITE permission the way knfsd does (see module docs).
    fn check_io(&self, a: &Attr, write: bool) -> Status<()> {
        if self.ctx.is_root() || a.uid == self.ctx.uid {
            return Ok(());
        }
        let fs = &self.s.fs;
        let ok = if write {
            fs.access(self.ctx, a.ino, AccessMask::WRITE).is_ok()
        } else {
            fs.access(self.ctx, a.ino, AccessMask::READ).is_ok()
                || fs.access(self.ctx, a.ino, AccessMask::EXEC).is_ok()
        };
        if ok {
            Ok(())
        } else {
            Err(nfsstat3::NFS3ERR_ACCES)
        }
    }

    // ---- procedures ----

    fn getattr(&mut self) -> Result<(), AcceptError> {
        let ino = self.fh()?;
        match ino.and_then(|i| self.s.fs.getattr(self.ctx, i, None).map_err(vfs_h)) {
            Ok(a) => {
                self.put_status(nfsstat3::NFS3_OK);
                let f = self.fattr(&a);
                self.out.put(&f);
            }
            Err(s) => self.put_status(s),
        }
        Ok(())
    }

    fn setattr(&mut self) -> Result<(), AcceptError> {
        let ino = self.fh()?;
        let set = convert::set_attr(&self.sattr()?);
        let guard = if self.d.bool().map_err(garbage)? {
            Some(self.d.fixed_xdr::<nfstime3>().map_err(garbage)?)
        } else {
            None
        };
        let ino = match ino {
            Ok(i) => i,
            Err(s) => {
                self.fail_wcc(s, None, None);
                return Ok(());
            }
        };
        let before = match self.s.fs.getattr(self.ctx, ino, None) {
            Ok(a) => a,
            Err(e) => {
                self.put_status(vfs_h(e));
                self.put_wcc(None, None);
                return Ok(());
            }
        };
        let r = (|| {
            self.writable()?;
            if let Some(g) = guard {
                let c = convert::time(before.ctime);
                if (c.seconds, c.nseconds) != (g.seconds, g.nseconds) {
                    return Err(nfsstat3::NFS3ERR_NOT_SYNC);
                }
            }
            if set.is_empty() {
                return Ok(before);
            }
            self.s.fs.setattr(self.ctx, ino, &set, None).map_err(vfs_h)
        })();
        match r {
            Ok(after) => {
                self.put_status(nfsstat3::NFS3_OK);
                self.put_wcc(Some(&before), Some(&after));
            }
            Err(s) => {
                let after = self.attr(ino);
                self.fail_wcc(s, Some(&before), after.as_ref());
            }
        }
        Ok(())
    }

    fn lookup(&mut self) -> Result<(), AcceptError> {
        let (dir, name) = self.dirop()?;
        let dir = match dir {
            Ok(d) => d,
            Err(s) => {
                self.fail_post_op(s, None);
                return Ok(());
            }
        };
        let r = name.and_then(|name| {
            let bytes = name.as_encoded_bytes();
            if self.s.no_apple_double && is_apple_double(name) {
                return Err(nfsstat3::NFS3ERR_NOENT);
            }
            if bytes == b"." {
                return self.s.fs.getattr(self.ctx, dir, None).map_err(vfs_h);
            }
            if bytes == b".." {
                let dattr = self.s.fs.getattr(self.ctx, dir, None).map_err(vfs_h)?;
                if dattr.kind != FileType::Directory {
                    return Err(nfsstat3::NFS3ERR_NOTDIR);
                }
                let parent = self.s.handles.parent(dir).ok_or(nfsstat3::NFS3ERR_NOENT)?;
                return self.s.fs.getattr(self.ctx, parent, None).map_err(vfs);
            }
            let a = self.s.fs.lookup(self.ctx, dir, name).map_err(vfs)?;
            if a.kind == FileType::Directory {
                self.s.handles.set_parent(a.ino, dir);
            }
            Ok(a)
        });
        let dattr = self.attr(dir);
        match r {
            Ok(a) => {
                self.put_status(nfsstat3::NFS3_OK);
                let fh = self.s.handles.encode(a.ino);
                self.out.put_opaque(&fh);
                self.put_post_op(Some(&a));
                self.put_post_op(dattr.as_ref());
            }
            Err(s) => {
                // A stale directory handle is STALE, not "no such name".
                let s = if dattr.is_none() && matches!(s, nfsstat3::NFS3ERR_NOENT) {
                    nfsstat3::NFS3ERR_STALE
                } else {
                    s
                };
                self.fail_post_op(s, dattr.as_ref());
            }
        }
        Ok(())
    }

    fn access(&mut self) -> Result<(), AcceptError> {
        let ino = self.fh()?;
        let asked = self.d.u32().map_err(garbage)?;
        let a = match ino.and_then(|i| self.s.fs.getattr(self.ctx, i, None).map_err(vfs_h)) {
            Ok(a) => a,
            Err(s) => {
                self.fail_post_op(s, None);
                return Ok(());
            }
        };
        let dir = a.kind == FileType::Directory;
        let (r, w, x) = (AccessMask::READ, AccessMask::WRITE, AccessMask::EXEC);
        // Which permission each bit needs (knfsd's tables): on directories LOOKUP and
        // DELETE are searching and writing the directory; on other files LOOKUP and
        // DELETE mean nothing and are never granted, EXECUTE is running the file.
        let needs = |bit: u32| -> Option<AccessMask> {
            match (bit, dir) {
                (ACCESS3_READ, _) => Some(r),
                (ACCESS3_LOOKUP, true) => Some(x),
                (ACCESS3_MODIFY, true) | (ACCESS3_EXTEND, true) | (ACCESS3_DELETE, true) => {
                    Some(w | x)
                }
                (ACCESS3_MODIFY, false) | (ACCESS3_EXTEND, false) => Some(w),
                (ACCESS3_EXECUTE, false) => Some(x),
                _ => None,
            }
        };
        let mut granted = 0;
        let mut cache: Vec<(AccessMask, bool)> = Vec::with_capacity(4);
        for bit in [
            ACCESS3_READ,
            ACCESS3_LOOKUP,
            ACCESS3_MODIFY,
            ACCESS3_EXTEND,
            ACCESS3_DELETE,
            ACCESS3_EXECUTE,
        ] {
            if asked & bit == 0 {
                continue;
            }
            let modifying = matches!(bit, ACCESS3_MODIFY | ACCESS3_EXTEND | ACCESS3_DELETE);
            if modifying && self.s.read_only {
                continue;
            }
            let Some(mask) = needs(bit) else { continue };
            let ok = match cache.iter().find(|(m, _)| *m == mask) {
                Some((_, ok)) => *ok,
                None => {
                    let ok = self.s.fs.access(self.ctx, a.ino, mask).is_ok();
                    cache.push((mask, ok));
                    ok
                }
            };
            if ok {
                granted |= bit;
            }
        }
        self.put_status(nfsstat3::NFS3_OK);
        self.put_post_op(Some(&a));
        self.out.put_u32(granted);
        Ok(())
    }

    fn readlink(&mut self) -> Result<(), AcceptError> {
        let ino = self.fh()?;
        let r = ino.and_then(|i| self.s.fs.readlink(self.ctx, i).map_err(vfs_h));
        let a = ino.ok().and_then(|i| self.attr(i));
        match r {
            Ok(target) => {
                self.put_status(nfsstat3::NFS3_OK);
                self.put_post_op(a.as_ref());
                self.out.put_opaque(&target);
            }
            Err(s) => {
                self.fail_post_op(s, a.as_ref());
            }
        }
        Ok(())
    }

    /// READ. Large reads of a file with a host file are spliced (see [`crate::splice`]).
    /// Others are read straight into the reply, after room for the largest post-op
    /// attributes (which must follow the read, and precede the data): one copy of the
    /// file's bytes fewer than reading into a buffer and appending it, which was a sixth
    /// of the server's time serving a large copy out.
    fn read(&mut self) -> Result<(), AcceptError> {
        let ino = self.fh()?;
        let offset = self.d.u64().map_err(garbage)?;
        let count = self.d.u32().map_err(garbage)?.min(IO_MAX);
        let checked = ino.and_then(|ino| {
            let before = self.s.fs.getattr(self.ctx, ino, None).map_err(vfs_h)?;
            match before.kind {
                FileType::RegularFile => {}
                FileType::Directory => return Err(nfsstat3::NFS3ERR_ISDIR),
                _ => return Err(nfsstat3::NFS3ERR_INVAL),
            }
            self.check_io(&before, false)?;
            Ok((ino, before))
        });
        let (ino, before) = match checked {
            Ok(c) => c,
            Err(s) => {
                let a = ino.ok().and_then(|i| self.attr(i));
                self.fail_post_op(s, a.as_ref());
                return Ok(());
            }
        };
        if let Some(tail) = splice::read(&*self.s.fs, ino, offset, count, before.size) {
            let n = tail.len();
            let after = self.attr(ino);
            let size = after.as_ref().map_or(before.size, |a| a.size);
            let eof = n < count as usize || offset.saturating_add(n as u64) >= size;
            self.put_status(nfsstat3::NFS3_OK);
            self.out.put(&self.post_op(after.as_ref()));
            self.out.put_u32(n as u32);
            self.out.put_bool(eof);
            self.out.put_u32(n as u32);
            self.bytes = n as u64;
            self.tail = Some(tail);
            return Ok(());
        }
        let status_at = self.out.len();
        self.put_status(nfsstat3::NFS3_OK);
        // post_op_attr (at most 4 + 84 bytes), count, eof, the opaque's length, data.
        let attr_at = self.out.len();
        let data_at = attr_at + POST_OP_MAX + 12;
        self.out.resize(data_at + count as usize, 0);
        let read = self
            .s
            .fs
            .read(self.ctx, ino, None, offset, &mut self.out[data_at..]);
        let n = match read {
            Ok(n) => n.min(count as usize),
            Err(e) => {
                self.out.truncate(status_at);
                let a = self.attr(ino);
                self.fail_post_op(vfs_h(e), a.as_ref());
                return Ok(());
            }
        };
        self.out.truncate(data_at + n);
        self.out.resize((data_at + n).next_multiple_of(4), 0);
        let after = self.attr(ino);
        let size = after.as_ref().map_or(before.size, |a| a.size);
        let eof = n < count as usize || offset.saturating_add(n as u64) >= size;
        let mut head = Vec::with_capacity(POST_OP_MAX + 12);
        head.put(&self.post_op(after.as_ref()));
        head.put_u32(n as u32);
        head.put_bool(eof);
        head.put_u32(n as u32);
        // Without attributes the head is shorter than the room kept: close the gap.
        let gap = data_at - attr_at - head.len();
        self.out[attr_at..attr_at + head.len()].copy_from_slice(&head);
        if gap > 0 {
            self.out.copy_within(data_at.., data_at - gap);
            self.out.truncate(self.out.len() - gap);
        }
        self.bytes = n as u64;
        Ok(())
    }

    fn write(&mut self) -> Result<(), AcceptError> {
        let ino = self.fh()?;
        let offset = self.d.u64().map_err(garbage)?;
        let count = self.d.u32().map_err(garbage)?;
        let stable = self.d.u32().map_err(garbage)?;
        if stable > FILE_SYNC {
            return Err(AcceptError::GarbageArgs);
        }
        let data = self.d.opaque(IO_MAX as usize).map_err(garbage)?;
        let ino = match ino {
            Ok(i) => i,
            Err(s) => {
                self.fail_wcc(s, None, None);
                return Ok(());
            }
        };
        // Behind its reply, or after the writes that are: a stable or small write waits
        // for them (its wcc data then shows them), and so sees their failure.
        let behind = stable == UNSTABLE && count as usize >= behind::BEHIND_MIN;
        if !behind {
            self.s.behind.barrier();
        }
        let before = self.attr(ino);
        let r = (|| {
            self.writable()?;
            let b = before.as_ref().ok_or(nfsstat3::NFS3ERR_STALE)?;
            match b.kind {
                FileType::RegularFile => {}
                FileType::Directory => return Err(nfsstat3::NFS3ERR_ISDIR),
                _ => return Err(nfsstat3::NFS3ERR_INVAL),
            }
            // A count beyond the data sent is a broken request (RFC 1813 allows INVAL).
            let len = usize::try_from(count).map_err(|_| nfsstat3::NFS3ERR_INVAL)?;
            let data = data.get(..len).ok_or(nfsstat3::NFS3ERR_INVAL)?;
            offset
                .checked_add(data.len() as u64)
                .filter(|end| *end <= i64::MAX as u64)
                .ok_or(nfsstat3::NFS3ERR_FBIG)?;
            self.check_io(b, true)?;
            if let Some(s) = self.s.behind.take_failure(ino) {
                return Err(s);
            }
            if behind {
                let at = data.as_ptr() as usize - self.record.as_ptr() as usize;
                let job = behind::Job {
                    caller: self.caller.clone(),
                    ino,
                    offset,
                    record: Arc::clone(self.record),
                    range: at..at + data.len(),
                };
                if self.s.behind.queue(job).is_ok() {
                    return Ok((data.len() as u32, true));
                }
                self.s.behind.barrier();
            }
            let n = self
                .s
                .fs
                .write(self.ctx, ino, None, offset, data)
                .map_err(vfs_h)?;
            if stable != UNSTABLE {
                self.s
                    .fs
                    .fsync(self.ctx, ino, None, stable == DATA_SYNC)
                    .map_err(vfs_h)?;
            }
            Ok((n, false))
        })();
        // A write still queued has no attributes after it yet; the client asks again.
        let after = match r {
            Ok((_, true)) => None,
            _ => self.attr(ino),
        };
        match r {
            Ok((n, _)) => {
                self.bytes = u64::from(n);
                self.put_status(nfsstat3::NFS3_OK);
                self.put_wcc(before.as_ref(), after.as_ref());
                self.out.put_u32(n);
                self.out.put_u32(stable);
                let verf = self.s.handles.instance().to_be_bytes();
                self.out.extend_from_slice(&verf);
            }
            Err(s) => {
                self.fail_wcc(s, before.as_ref(), after.as_ref());
            }
        }
        Ok(())
    }

    /// Answers a CREATE/MKDIR/SYMLINK/MKNOD: the new object, or the failure, with the
    /// directory's wcc data either way.
    fn finish_create(&mut self, dir: Ino, before: Option<&Attr>, r: Status<Attr>) {
        let after = self.attr(dir);
        match r {
            Ok(a) => {
                self.put_status(nfsstat3::NFS3_OK);
                self.put_new_object(&a);
                self.put_wcc(before, after.as_ref());
            }
            Err(s) => {
                self.fail_wcc(s, before, after.as_ref());
            }
        }
    }

    /// Reports a bad directory handle for the create family and namespace calls.
    fn bad_dir(&mut self, s: nfsstat3) -> Result<(), AcceptError> {
        self.fail_wcc(s, None, None);
        Ok(())
    }

    fn create(&mut self) -> Result<(), AcceptError> {
        let (dir, name) = self.dirop()?;
        let how = self.d.u32().map_err(garbage)?;
        enum How {
            Unchecked(SetAttr),
            Guarded(SetAttr),
            Exclusive([u8; 8]),
        }
        let how = match how {
            0 => How::Unchecked(convert::set_attr(&self.sattr()?)),
            1 => How::Guarded(convert::set_attr(&self.sattr()?)),
            2 => How::Exclusive(self.d.fixed::<8>().map_err(garbage)?),
            _ => return Err(AcceptError::GarbageArgs),
        };
        let dir = match dir {
            Ok(d) => d,
            Err(s) => return self.bad_dir(s),
        };
        let before = self.attr(dir);
        let fs = &self.s.fs;
        let ctx = self.ctx;
        let r = (|| {
            self.writable()?;
            let name = self.new_name(name)?;
            match how {
                How::Unchecked(set) | How::Guarded(set) => {
                    let mode = set.mode.unwrap_or(0o644);
                    match fs.create(ctx, dir, name, mode, OpenFlags::EXCLUSIVE) {
                        Ok((a, opened)) => {
                            let _ = fs.release(ctx, a.ino, opened.fh);
                            Ok(self.apply_rest(a.ino, set)?.unwrap_or(a))
                        }
                        Err(VfsError::Exists) if matches!(how, How::Unchecked(_)) => {
                            let a = fs.lookup(ctx, dir, name).map_err(vfs)?;
                            if a.kind != FileType::RegularFile {
                                return Err(nfsstat3::NFS3ERR_EXIST);
                            }
                            // An existing file keeps its attributes; only a truncation
                            // (O_CREAT|O_TRUNC) applies.
                            match set.size {
                                Some(size) => {
                                    let t = SetAttr {
                                        size: Some(size),
                                        ..SetAttr::default()
                                    };
                                    fs.setattr(ctx, a.ino, &t, None).map_err(vfs)
                                }
                                None => Ok(a),
                            }
                        }
                        Err(e) => Err(vfs(e)),
                    }
                }
                How::Exclusive(verf) => {
                    let (m, at) = exclusive_times(&verf);
                    let matches = |a: &Attr| {
                        a.kind == FileType::RegularFile
                            && convert::time(a.mtime).seconds == m
                            && convert::time(a.atime).seconds == at
                    };
                    match fs.create(ctx, dir, name, 0o600, OpenFlags::EXCLUSIVE) {
                        Ok((a, opened)) => {
                            let _ = fs.release(ctx, a.ino, opened.fh);
                            let t = SetAttr {
                                mtime: Some(SetTime::At(convert::system_time(nfstime3 {
                                    seconds: m,
                                    nseconds: 0,
                                }))),
                                atime: Some(SetTime::At(convert::system_time(nfstime3 {
                                    seconds: at,
                                    nseconds: 0,
                                }))),
                                ..SetAttr::default()
                            };
                            fs.setattr(ctx, a.ino, &t, None).map_err(vfs)
                        }
                        Err(VfsError::Exists) => {
                            // A retransmission finds the file it created.
                            let a = fs.lookup(ctx, dir, name).map_err(vfs)?;
                            if matches(&a) {
                                Ok(a)
                            } else {
                                Err(nfsstat3::NFS3ERR_EXIST)
                            }
                        }
                        Err(e) => Err(vfs(e)),
                    }
                }
            }
        })();
        self.finish_create(dir, before.as_ref(), r);
        Ok(())
    }

    fn mkdir(&mut self) -> Result<(), AcceptError> {
        let (dir, name) = self.dirop()?;
        let set = convert::set_attr(&self.sattr()?);
        let dir = match dir {
            Ok(d) => d,
            Err(s) => return self.bad_dir(s),
        };
        let before = self.attr(dir);
        let r = (|| {
            self.writable()?;
            let name = self.new_name(name)?;
            let a = self
                .s
                .fs
                .mkdir(self.ctx, dir, name, set.mode.unwrap_or(0o755))
                .map_err(vfs)?;
            self.s.handles.set_parent(a.ino, dir);
            let set = SetAttr { size: None, ..set };
            Ok(self.apply_rest(a.ino, set)?.unwrap_or(a))
        })();
        self.finish_create(dir, before.as_ref(), r);
        Ok(())
    }

    fn symlink(&mut self) -> Result<(), AcceptError> {
        let (dir, name) = self.dirop()?;
        let _attrs = self.sattr()?;
        let target = self.d.opaque(PATH_MAX).map_err(garbage)?;
        let dir = match dir {
            Ok(d) => d,
            Err(s) => return self.bad_dir(s),
        };
        let before = self.attr(dir);
        // Symlink permission bits mean nothing; like knfsd, the sattr3 is not applied.
        let r = (|| {
            self.writable()?;
            let name = self.new_name(name)?;
            let target = bytes_to_os(target)?;
            self.s.fs.symlink(self.ctx, dir, name, target).map_err(vfs)
        })();
        self.finish_create(dir, before.as_ref(), r);
        Ok(())
    }

    fn mknod(&mut self) -> Result<(), AcceptError> {
        let (dir, name) = self.dirop()?;
        let ftype = self.d.u32().map_err(garbage)?;
        // ftype3: REG 1, DIR 2, BLK 3, CHR 4, LNK 5, SOCK 6, FIFO 7.
        let (kind, set, rdev) = match ftype {
            3 | 4 => {
                let set = convert::set_attr(&self.sattr()?);
                let spec = self.d.fixed_xdr::<specdata3>().map_err(garbage)?;
                let kind = if ftype == 3 {
                    FileType::BlockDevice
                } else {
                    FileType::CharDevice
                };
                (
                    Some(kind),
                    set,
                    convert::make_rdev(spec.specdata1, spec.specdata2),
                )
            }
            6 | 7 => {
                let set = convert::set_attr(&self.sattr()?);
                let kind = if ftype == 6 {
                    FileType::Socket
                } else {
                    FileType::Fifo
                };
                (Some(kind), set, 0)
            }
            1 | 2 | 5 => (None, SetAttr::default(), 0),
            _ => return Err(AcceptError::GarbageArgs),
        };
        let dir = match dir {
            Ok(d) => d,
            Err(s) => return self.bad_dir(s),
        };
        let before = self.attr(dir);
        let r = (|| {
            self.writable()?;
            let kind = kind.ok_or(nfsstat3::NFS3ERR_BADTYPE)?;
            let name = self.new_name(name)?;
            let mode = set.mode.unwrap_or(0o644);
            let a = self
                .s
                .fs
                .mknod(self.ctx, dir, name, kind, mode, rdev)
                .map_err(vfs)?;
            let set = SetAttr { size: None, ..set };
            Ok(self.apply_rest(a.ino, set)?.unwrap_or(a))
        })();
        self.finish_create(dir, before.as_ref(), r);
        Ok(())
    }

    fn remove(&mut self) -> Result<(), AcceptError> {
        self.unlink_like(false)
    }

    fn rmdir(&mut self) -> Result<(), AcceptError> {
        self.unlink_like(true)
    }

    fn unlink_like(&mut self, is_rmdir: bool) -> Result<(), AcceptError> {
        let (dir, name) = self.dirop()?;
        let dir = match dir {
            Ok(d) => d,
            Err(s) => return self.bad_dir(s),
        };
        let before = self.attr(dir);
        let r = (|| {
            self.writable()?;
            let name = name?;
            if is_rmdir {
                let victim = self.s.fs.lookup(self.ctx, dir, name).ok();
                self.s.fs.rmdir(self.ctx, dir, name).map_err(vfs)?;
                if let Some(v) = victim {
                    self.s.handles.remove_dir(v.ino);
                }
                Ok(())
            } else {
                self.s.fs.unlink(self.ctx, dir, name).map_err(vfs)
            }
        })();
        let after = self.attr(dir);
        self.put_status(r.err().unwrap_or(nfsstat3::NFS3_OK));
        self.put_wcc(before.as_ref(), after.as_ref());
        Ok(())
    }

    fn rename(&mut self) -> Result<(), AcceptError> {
        let (from_dir, from_name) = self.dirop()?;
        let (to_dir, to_name) = self.dirop()?;
        let (from_dir, to_dir) = match (from_dir, to_dir) {
            (Ok(f), Ok(t)) => (f, t),
            (Err(s), _) | (_, Err(s)) => {
                self.fail_wcc(s, None, None);
                self.put_wcc(None, None);
                return Ok(());
            }
        };
        let from_before = self.attr(from_dir);
        let to_before = self.attr(to_dir);
        let r = (|| {
            self.writable()?;
            let (from_name, to_name) = (from_name?, self.new_name(to_name)?);
            self.s
                .fs
                .rename(
                    self.ctx,
                    from_dir,
                    from_name,
                    to_dir,
                    to_name,
                    RenameFlags::empty(),
                )
                .map_err(vfs)?;
            if let Ok(a) = self.s.fs.lookup(self.ctx, to_dir, to_name)
                && a.kind == FileType::Directory
            {
                self.s.handles.set_parent(a.ino, to_dir);
            }
            Ok(())
        })();
        let from_after = self.attr(from_dir);
        let to_after = self.attr(to_dir);
        self.put_status(r.err().unwrap_or(nfsstat3::NFS3_OK));
        self.put_wcc(from_before.as_ref(), from_after.as_ref());
        self.put_wcc(to_before.as_ref(), to_after.as_ref());
        Ok(())
    }

    fn link(&mut self) -> Result<(), AcceptError> {
        let file = self.fh()?;
        let (dir, name) = self.dirop()?;
        let (file, dir) = match (file, dir) {
            (Ok(f), Ok(d)) => (f, d),
            (Err(s), _) | (_, Err(s)) => {
                self.fail_post_op(s, None);
                self.put_wcc(None, None);
                return Ok(());
            }
        };
        let before = self.attr(dir);
        let r = (|| {
            self.writable()?;
            let name = self.new_name(name)?;
            self.s
                .fs
                .link(self.ctx, file, dir, name)
                .map_err(|e| match e {
                    VfsError::Stale => nfsstat3::NFS3ERR_STALE,
                    e => vfs(e),
                })
        })();
        let file_attr = match &r {
            Ok(a) => Some(*a),
            Err(_) => self.attr(file),
        };
        let after = self.attr(dir);
        self.put_status(r.err().unwrap_or(nfsstat3::NFS3_OK));
        self.put_post_op(file_attr.as_ref());
        self.put_wcc(before.as_ref(), after.as_ref());
        Ok(())
    }

    fn readdir(&mut self, plus: bool) -> Result<(), AcceptError> {
        let dir = self.fh()?;
        let cookie = self.d.u64().map_err(garbage)?;
        let _verf = self.d.fixed::<8>().map_err(garbage)?;
        let (dircount, maxcount) = if plus {
            let dc = self.d.u32().map_err(garbage)?;
            let mc = self.d.u32().map_err(garbage)?;
            (dc as usize, mc as usize)
        } else {
            let c = self.d.u32().map_err(garbage)? as usize;
            (usize::MAX, c)
        };
        let maxcount = maxcount.min(DIR_REPLY_MAX);
        let r = dir.and_then(|dir| {
            let a = self.s.fs.getattr(self.ctx, dir, None).map_err(vfs_h)?;
            if a.kind != FileType::Directory {
                return Err(nfsstat3::NFS3ERR_NOTDIR);
            }
            if !self.ctx.is_root() {
                self.s
                    .fs
                    .access(self.ctx, dir, AccessMask::READ)
                    .map_err(vfs)?;
            }
            let mut sink = ListSink::new(self.s, plus, dircount, maxcount);
            let after = match cookie {
                0 => {
                    let parent = self.s.handles.parent(dir).unwrap_or(dir);
                    if sink.add_dot(b".", dir, COOKIE_DOT)
                        || sink.add_dot(b"..", parent, COOKIE_DOTDOT)
                    {
                        return sink.finish(false, a);
                    }
                    0
                }
                COOKIE_DOT => {
                    let parent = self.s.handles.parent(dir).unwrap_or(dir);
                    if sink.add_dot(b"..", parent, COOKIE_DOTDOT) {
                        return sink.finish(false, a);
                    }
                    0
                }
                COOKIE_DOTDOT => 0,
                c if c >> 63 != 0 => return Err(nfsstat3::NFS3ERR_BAD_COOKIE),
                c => c,
            };
            self.s
                .fs
                .readdir(self.ctx, dir, None, after, &mut sink)
                .map_err(|e| match e {
                    VfsError::InvalidArgument => nfsstat3::NFS3ERR_BAD_COOKIE,
                    e => vfs_h(e),
                })?;
            let eof = !sink.full;
            for child in sink.subdirs.drain(..) {
                self.s.handles.set_parent(child, dir);
            }
            sink.finish(eof, a)
        });
        match r {
            Ok((entries, eof, dattr)) => {
                self.put_status(nfsstat3::NFS3_OK);
                self.put_post_op(Some(&dattr));
                let m = convert::time(dattr.mtime);
                self.out.put_u32(m.seconds);
                self.out.put_u32(m.nseconds);
                self.out.extend_from_slice(&entries);
                self.out.put_bool(false);
                self.out.put_bool(eof);
            }
            Err(s) => {
                let a = dir.ok().and_then(|d| self.attr(d));
                self.fail_post_op(s, a.as_ref());
            }
        }
        Ok(())
    }

    fn fsstat(&mut self) -> Result<(), AcceptError> {
        let ino = self.fh()?;
        let r = ino.and_then(|i| {
            let a = self.s.fs.getattr(self.ctx, i, None).map_err(vfs_h)?;
            let st = self.s.fs.statfs(self.ctx, i).map_err(vfs_h)?;
            Ok((a, st))
        });
        match r {
            Ok((a, st)) => {
                let unit = u64::from(st.frsize.max(1));
                self.put_status(nfsstat3::NFS3_OK);
                self.put_post_op(Some(&a));
                self.out.put_u64(st.blocks.saturating_mul(unit));
                self.out.put_u64(st.bfree.saturating_mul(unit));
                self.out.put_u64(st.bavail.saturating_mul(unit));
                self.out.put_u64(st.files);
                self.out.put_u64(st.ffree);
                self.out.put_u64(st.ffree);
                self.out.put_u32(0); // invarsec: the numbers change at any time
            }
            Err(s) => {
                self.fail_post_op(s, None);
            }
        }
        Ok(())
    }

    fn fsinfo(&mut self) -> Result<(), AcceptError> {
        let ino = self.fh()?;
        match ino.and_then(|i| self.s.fs.getattr(self.ctx, i, None).map_err(vfs_h)) {
            Ok(a) => {
                let caps = self.s.fs.capabilities();
                let mut properties = FSF_HOMOGENEOUS | FSF_CANSETTIME;
                if caps.hard_links {
                    properties |= FSF_LINK;
                }
                if caps.symlinks {
                    properties |= FSF_SYMLINK;
                }
                let info = fsinfo3 {
                    obj_attributes: self.post_op(Some(&a)),
                    rtmax: IO_MAX,
                    rtpref: IO_MAX,
                    rtmult: 4096,
                    wtmax: IO_MAX,
                    wtpref: IO_MAX,
                    wtmult: 4096,
                    dtpref: DTPREF,
                    maxfilesize: i64::MAX as u64,
                    time_delta: nfstime3 {
                        seconds: 0,
                        nseconds: 1,
                    },
                    properties,
                };
                self.put_status(nfsstat3::NFS3_OK);
                self.out.put(&info);
            }
            Err(s) => {
                self.fail_post_op(s, None);
            }
        }
        Ok(())
    }

    fn pathconf(&mut self) -> Result<(), AcceptError> {
        let ino = self.fh()?;
        let r = ino.and_then(|i| {
            let a = self.s.fs.getattr(self.ctx, i, None).map_err(vfs_h)?;
            let st = self.s.fs.statfs(self.ctx, i).ok();
            Ok((a, st))
        });
        match r {
            Ok((a, st)) => {
                let caps = self.s.fs.capabilities();
                let name_max = st
                    .map(|s| s.namelen)
                    .filter(|n| *n > 0)
                    .unwrap_or(caps.max_name_len)
                    .min(vmount_core::NAME_MAX as u32);
                self.put_status(nfsstat3::NFS3_OK);
                self.put_post_op(Some(&a));
                self.out.put_u32(65000); // linkmax: the Vfs states no limit
                self.out.put_u32(name_max);
                self.out.put_bool(true); // no_trunc: long names fail, never truncate
                self.out.put_bool(true); // chown_restricted
                self.out.put_bool(!caps.case_sensitive); // case_insensitive
                self.out.put_bool(true); // case_preserving
            }
            Err(s) => {
                self.fail_post_op(s, None);
            }
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<(), AcceptError> {
        let ino = self.fh()?;
        let _offset = self.d.u64().map_err(garbage)?;
        let _count = self.d.u32().map_err(garbage)?;
        let ino = match ino {
            Ok(i) => i,
            Err(s) => return self.bad_dir(s),
        };
        let before = self.attr(ino);
        // The whole file is synced: the Vfs has no ranged fsync, and a larger commit
        // than asked is always correct.
        let r = match before {
            None => Err(nfsstat3::NFS3ERR_STALE),
            Some(_) => match self.s.behind.take_failure(ino) {
                Some(s) => Err(s),
                None => self.s.fs.fsync(self.ctx, ino, None, false).map_err(vfs_h),
            },
        };
        let after = self.attr(ino);
        match r {
            Ok(()) => {
                self.put_status(nfsstat3::NFS3_OK);
                self.put_wcc(before.as_ref(), after.as_ref());
                let verf = self.s.handles.instance().to_be_bytes();
                self.out.extend_from_slice(&verf);
            }
            Err(s) => {
                self.fail_wcc(s, before.as_ref(), after.as_ref());
            }
        }
        Ok(())
    }
}

/// The (mtime, atime) seconds an EXCLUSIVE CREATE verifier is stored as; the top bit is
/// cleared so the times stay valid everywhere, as knfsd does.
fn exclusive_times(verf: &[u8; 8]) -> (u32, u32) {
    let m = u32::from_be_bytes([verf[0], verf[1], verf[2], verf[3]]) & 0x7fff_ffff;
    let a = u32::from_be_bytes([verf[4], verf[5], verf[6], verf[7]]) & 0x7fff_ffff;
    (m, a)
}

/// Encodes READDIR/READDIRPLUS entries straight into the reply, within the client's
/// byte budgets.
struct ListSink<'a> {
    s: &'a Shared,
    plus: bool,
    /// Directory-information bytes left (READDIRPLUS `dircount`).
    dir_left: usize,
    /// Reply bytes left (`count` / `maxcount`).
    max_left: usize,
    entries: Vec<u8>,
    taken: usize,
    full: bool,
    /// Directories seen, whose parent is the listed directory.
    subdirs: Vec<Ino>,
}

/// The fixed part of a READDIR(PLUS) reply: status, dir attributes, verifier, list end,
/// eof.
const LIST_OVERHEAD: usize = 4 + 4 + 84 + 8 + 4 + 4;

impl<'a> ListSink<'a> {
    fn new(s: &'a Shared, plus: bool, dircount: usize, maxcount: usize) -> ListSink<'a> {
        ListSink {
            s,
            plus,
            dir_left: dircount,
            max_left: maxcount.saturating_sub(LIST_OVERHEAD),
            entries: Vec::with_capacity(maxcount.min(64 * 1024)),
            taken: 0,
            full: false,
            subdirs: Vec::new(),
        }
    }

    /// Adds an entry; true (and `full`) when it does not fit.
    fn push(&mut self, name: &[u8], ino: Ino, cookie: u64, attr: Option<&Attr>) -> bool {
        let name_len = name.len().div_ceil(4) * 4;
        let dir_size = 4 + 8 + 4 + name_len + 8;
        let size = if self.plus {
            // + post_op_attr (flag + fattr3) + post_op_fh3 (flag + length + handle).
            dir_size + 4 + 84 + 4 + 4 + crate::handles::HANDLE_LEN
        } else {
            dir_size
        };
        if size > self.max_left || dir_size > self.dir_left {
            self.full = true;
            return true;
        }
        self.max_left -= size;
        self.dir_left -= dir_size;
        let out = &mut self.entries;
        out.put_bool(true);
        out.put_u64(ino.0);
        out.put_opaque(name);
        out.put_u64(cookie);
        if self.plus {
            match attr {
                Some(a) => {
                    out.put_bool(true);
                    out.put(&convert::fattr(a, self.s.fsid));
                    out.put_bool(true);
                    out.put_opaque(&self.s.handles.encode(a.ino));
                }
                None => {
                    // Budgeted as if present; `..` of an unknown parent has neither.
                    out.put_bool(false);
                    out.put_bool(false);
                }
            }
        }
        self.taken += 1;
        false
    }

    fn add_dot(&mut self, name: &[u8], ino: Ino, cookie: u64) -> bool {
        let attr = if name == b"." && self.plus {
            self.s.fs.getattr(&Ctx::root(), ino, None).ok()
        } else {
            None
        };
        self.push(name, ino, cookie, attr.as_ref())
    }

    /// The encoded entries, eof, and the directory's attributes; TOOSMALL when not even
    /// one entry fitted.
    fn finish(self, eof: bool, dir: Attr) -> Status<(Vec<u8>, bool, Attr)> {
        if self.taken == 0 && !eof {
            return Err(nfsstat3::NFS3ERR_TOOSMALL);
        }
        Ok((self.entries, eof, dir))
    }
}

impl DirSink for ListSink<'_> {
    fn wants_attr(&self) -> bool {
        true
    }

    fn add(&mut self, e: &DirEntry<'_>) -> bool {
        if self.push(e.name.as_encoded_bytes(), e.ino, e.cookie, e.attr.as_ref()) {
            return true;
        }
        if e.kind == FileType::Directory {
            self.subdirs.push(e.ino);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn post_op_attributes_fill_the_room_read_keeps() {
        let t = std::time::UNIX_EPOCH;
        let a = vmount_core::Attr {
            ino: Ino(7),
            kind: FileType::RegularFile,
            perm: 0o7777,
            nlink: u32::MAX,
            uid: u32::MAX,
            gid: u32::MAX,
            size: u64::MAX,
            blocks: u64::MAX,
            blksize: u32::MAX,
            rdev: u64::MAX,
            atime: t,
            mtime: t,
            ctime: t,
            crtime: t,
        };
        let mut out = Vec::new();
        out.put(&post_op_attr::attributes(convert::fattr(&a, u64::MAX)));
        assert_eq!(out.len(), POST_OP_MAX);
        out.clear();
        out.put(&post_op_attr::Void);
        assert_eq!(out.len(), 4);
    }

    #[test]
    fn exclusive_verifier_fits_times() {
        let (m, a) = exclusive_times(&[0xff; 8]);
        assert_eq!((m, a), (0x7fff_ffff, 0x7fff_ffff));
        assert_eq!(exclusive_times(&[0, 0, 0, 1, 0, 0, 0, 2]), (1, 2));
    }

    #[test]
    fn names_are_bounded() {
        assert!(matches!(
            os_str(&[b'a'; 256]),
            Err(nfsstat3::NFS3ERR_NAMETOOLONG)
        ));
        assert_eq!(os_str(b"abc").unwrap(), OsStr::new("abc"));
    }
}
