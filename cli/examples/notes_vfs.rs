//! A small writable filesystem: one flat directory of notes kept in memory.
//!
//! ```text
//! mkdir -p /tmp/notes && cargo run --example notes_vfs -- /tmp/notes
//! echo hi > /tmp/notes/a; mv /tmp/notes/a /tmp/notes/b; cat /tmp/notes/b; rm /tmp/notes/b
//! ```
//!
//! It shows the parts of the [`Vfs`] contract a writable filesystem must get right:
//! stable inode numbers, readdir cookies that survive concurrent changes (the inode
//! number is the cookie, and entries are listed in inode order), atomic rename with its
//! flags, handles that keep an unlinked file alive until released, and checked
//! arithmetic on offsets a client controls. Subdirectories, links and xattrs are not
//! supported; permission bits are checked by the kernel (`enforces_permissions: false`).

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::sync::Mutex;
use std::time::SystemTime;

use vmount::core::{
    AccessMask, Attr, Capabilities, Ctx, DirEntry, DirSink, Fh, FileType, Ino, OpenFlags, Opened,
    RenameFlags, SetAttr, SetTime, StatFs, Vfs, VfsError, VfsResult, check_name,
};

/// The largest note, so that a client cannot make the daemon allocate without bound.
pub const MAX_NOTE: u64 = 64 << 20;

/// One note.
struct Note {
    /// `None` once unlinked while still open.
    name: Option<OsString>,
    data: Vec<u8>,
    perm: u16,
    uid: u32,
    gid: u32,
    atime: SystemTime,
    mtime: SystemTime,
    ctime: SystemTime,
    crtime: SystemTime,
    /// Open handles; an unlinked note lives until this drops to zero.
    open: u32,
}

#[derive(Default)]
struct State {
    /// Name -> inode, for lookups.
    names: BTreeMap<OsString, Ino>,
    /// Inode -> note; listing goes in this (inode) order, so an inode number is a cookie.
    notes: BTreeMap<Ino, Note>,
    /// Open handles: the note and the mode it was opened with.
    handles: HashMap<u64, (Ino, OpenFlags)>,
    next_ino: u64,
    next_fh: u64,
}

/// A flat directory of notes. All state sits behind one mutex: simple, and plenty for a
/// directory of notes.
pub struct NotesFs {
    state: Mutex<State>,
    root_uid: u32,
    root_gid: u32,
    born: SystemTime,
}

impl NotesFs {
    /// An empty directory owned by `uid`:`gid` (mode 1777 like /tmp, so anyone may add
    /// notes and only owners remove them).
    pub fn new(uid: u32, gid: u32) -> NotesFs {
        NotesFs {
            state: Mutex::new(State {
                next_ino: 2,
                next_fh: 1,
                ..State::default()
            }),
            root_uid: uid,
            root_gid: gid,
            born: SystemTime::now(),
        }
    }

    fn lock(&self) -> VfsResult<std::sync::MutexGuard<'_, State>> {
        // A panic while holding the lock leaves notes that may be half-written, but
        // each operation keeps them consistent before any step that could panic.
        Ok(self.state.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn root_attr(&self, st: &State) -> Attr {
        Attr {
            ino: Ino::ROOT,
            kind: FileType::Directory,
            perm: 0o1777,
            nlink: 2,
            uid: self.root_uid,
            gid: self.root_gid,
            size: st.names.len() as u64,
            blocks: 0,
            blksize: 4096,
            rdev: 0,
            atime: self.born,
            mtime: self.born,
            ctime: self.born,
            crtime: self.born,
        }
    }

    fn attr(&self, st: &State, ino: Ino) -> VfsResult<Attr> {
        if ino == Ino::ROOT {
            return Ok(self.root_attr(st));
        }
        let n = st.notes.get(&ino).ok_or(VfsError::Stale)?;
        let size = n.data.len() as u64;
        Ok(Attr {
            ino,
            kind: FileType::RegularFile,
            perm: n.perm,
            nlink: u32::from(n.name.is_some()),
            uid: n.uid,
            gid: n.gid,
            size,
            blocks: size.div_ceil(512),
            blksize: 4096,
            rdev: 0,
            atime: n.atime,
            mtime: n.mtime,
            ctime: n.ctime,
            crtime: n.crtime,
        })
    }
}

/// Only the root is a directory.
fn in_root(parent: Ino) -> VfsResult<()> {
    if parent == Ino::ROOT {
        Ok(())
    } else {
        Err(VfsError::NotDir)
    }
}

fn resolve(t: SetTime) -> SystemTime {
    match t {
        SetTime::Now => SystemTime::now(),
        SetTime::At(t) => t,
    }
}

impl Vfs for NotesFs {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            xattrs: false,
            hard_links: false,
            symlinks: false,
            special_files: false,
            case_sensitive: true,
            read_only: false,
            sparse_files: false,
            enforces_permissions: false,
            kills_privileges: false,
            max_name_len: vmount::core::NAME_MAX as u32,
        }
    }

    fn lookup(&self, _: &Ctx, parent: Ino, name: &OsStr) -> VfsResult<Attr> {
        in_root(parent)?;
        let st = self.lock()?;
        let ino = *st.names.get(name).ok_or(VfsError::NotFound)?;
        self.attr(&st, ino)
    }

    fn getattr(&self, _: &Ctx, ino: Ino, _: Option<Fh>) -> VfsResult<Attr> {
        let st = self.lock()?;
        self.attr(&st, ino)
    }

    fn setattr(&self, _: &Ctx, ino: Ino, set: &SetAttr, _: Option<Fh>) -> VfsResult<Attr> {
        let mut st = self.lock()?;
        if ino == Ino::ROOT {
            return if set.is_empty() {
                Ok(self.root_attr(&st))
            } else {
                Err(VfsError::NotPermitted)
            };
        }
        if let Some(size) = set.size
            && size > MAX_NOTE
        {
            return Err(VfsError::FileTooLarge);
        }
        let n = st.notes.get_mut(&ino).ok_or(VfsError::Stale)?;
        let now = SystemTime::now();
        if let Some(size) = set.size {
            // `size <= MAX_NOTE`, which fits in usize on every supported target.
            n.data.resize(
                usize::try_from(size).map_err(|_| VfsError::FileTooLarge)?,
                0,
            );
            n.mtime = now;
        }
        if let Some(mode) = set.mode {
            n.perm = (mode & 0o7777) as u16;
        }
        if let Some(uid) = set.uid {
            n.uid = uid;
        }
        if let Some(gid) = set.gid {
            n.gid = gid;
        }
        if let Some(t) = set.atime {
            n.atime = resolve(t);
        }
        if let Some(t) = set.mtime {
            n.mtime = resolve(t);
        }
        n.ctime = set.ctime.unwrap_or(now);
        self.attr(&st, ino)
    }

    fn mkdir(&self, _: &Ctx, parent: Ino, _: &OsStr, _: u32) -> VfsResult<Attr> {
        in_root(parent)?;
        // A flat directory: the operation exists, this case does not.
        Err(VfsError::NotSupported)
    }

    fn unlink(&self, _: &Ctx, parent: Ino, name: &OsStr) -> VfsResult<()> {
        in_root(parent)?;
        let mut st = self.lock()?;
        let ino = st.names.remove(name).ok_or(VfsError::NotFound)?;
        let open = st.notes.get(&ino).map_or(0, |n| n.open);
        if open == 0 {
            st.notes.remove(&ino);
        } else if let Some(n) = st.notes.get_mut(&ino) {
            n.name = None;
            n.ctime = SystemTime::now();
        }
        Ok(())
    }

    fn rmdir(&self, _: &Ctx, parent: Ino, name: &OsStr) -> VfsResult<()> {
        in_root(parent)?;
        let st = self.lock()?;
        if st.names.contains_key(name) {
            Err(VfsError::NotDir)
        } else {
            Err(VfsError::NotFound)
        }
    }

    fn rename(
        &self,
        _: &Ctx,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        flags: RenameFlags,
    ) -> VfsResult<()> {
        in_root(parent)?;
        in_root(new_parent)?;
        check_name(new_name)?;
        if flags.contains(RenameFlags::NOREPLACE | RenameFlags::EXCHANGE) {
            return Err(VfsError::InvalidArgument);
        }
        // One lock for the whole change: no moment where a name is missing.
        let mut st = self.lock()?;
        let src = *st.names.get(name).ok_or(VfsError::NotFound)?;
        let dst = st.names.get(new_name).copied();
        if dst == Some(src) {
            return Ok(());
        }
        let now = SystemTime::now();
        if flags.contains(RenameFlags::EXCHANGE) {
            let dst = dst.ok_or(VfsError::NotFound)?;
            st.names.insert(name.to_owned(), dst);
            st.names.insert(new_name.to_owned(), src);
            for (ino, n) in [(dst, name), (src, new_name)] {
                if let Some(note) = st.notes.get_mut(&ino) {
                    note.name = Some(n.to_owned());
                    note.ctime = now;
                }
            }
            return Ok(());
        }
        if dst.is_some() && flags.contains(RenameFlags::NOREPLACE) {
            return Err(VfsError::Exists);
        }
        st.names.remove(name);
        if let Some(old) = st.names.insert(new_name.to_owned(), src) {
            // The replaced note loses its name, and its data once no handle holds it.
            if st.notes.get(&old).is_some_and(|n| n.open == 0) {
                st.notes.remove(&old);
            } else if let Some(n) = st.notes.get_mut(&old) {
                n.name = None;
            }
        }
        if let Some(n) = st.notes.get_mut(&src) {
            n.name = Some(new_name.to_owned());
            n.ctime = now;
        }
        Ok(())
    }

    fn open(&self, _: &Ctx, ino: Ino, flags: OpenFlags) -> VfsResult<Opened> {
        if ino == Ino::ROOT {
            return Err(VfsError::IsDir);
        }
        let mut st = self.lock()?;
        let n = st.notes.get_mut(&ino).ok_or(VfsError::Stale)?;
        if flags.contains(OpenFlags::TRUNCATE) && flags.contains(OpenFlags::WRITE) {
            n.data.clear();
            n.mtime = SystemTime::now();
            n.ctime = n.mtime;
        }
        n.open += 1;
        let fh = st.next_fh;
        st.next_fh += 1;
        st.handles.insert(fh, (ino, flags));
        Ok(Opened::cached(Fh(fh)))
    }

    fn create(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        flags: OpenFlags,
    ) -> VfsResult<(Attr, Opened)> {
        in_root(parent)?;
        check_name(name)?;
        let existing = self.lock()?.names.get(name).copied();
        if let Some(ino) = existing {
            if flags.contains(OpenFlags::EXCLUSIVE) {
                return Err(VfsError::Exists);
            }
            let opened = self.open(ctx, ino, flags)?;
            return Ok((self.getattr(ctx, ino, None)?, opened));
        }
        let mut st = self.lock()?;
        if st.names.contains_key(name) {
            // Created by another caller between the two locks: as O_EXCL would see it.
            return Err(VfsError::Exists);
        }
        let ino = Ino(st.next_ino);
        st.next_ino += 1;
        let fh = st.next_fh;
        st.next_fh += 1;
        let now = SystemTime::now();
        st.notes.insert(
            ino,
            Note {
                name: Some(name.to_owned()),
                data: Vec::new(),
                perm: (mode & !ctx.umask & 0o7777) as u16,
                uid: ctx.uid,
                gid: ctx.gid,
                atime: now,
                mtime: now,
                ctime: now,
                crtime: now,
                open: 1,
            },
        );
        st.names.insert(name.to_owned(), ino);
        st.handles.insert(fh, (ino, flags));
        Ok((self.attr(&st, ino)?, Opened::cached(Fh(fh))))
    }

    fn read(
        &self,
        _: &Ctx,
        ino: Ino,
        _: Option<Fh>,
        offset: u64,
        buf: &mut [u8],
    ) -> VfsResult<usize> {
        if ino == Ino::ROOT {
            return Err(VfsError::IsDir);
        }
        let st = self.lock()?;
        let data = &st.notes.get(&ino).ok_or(VfsError::Stale)?.data;
        let start = usize::try_from(offset).map_or(data.len(), |o| o.min(data.len()));
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        Ok(n)
    }

    fn write(&self, _: &Ctx, ino: Ino, fh: Option<Fh>, offset: u64, data: &[u8]) -> VfsResult<u32> {
        let mut st = self.lock()?;
        let mode = match fh {
            Some(Fh(fh)) => match st.handles.get(&fh) {
                Some(&(i, mode)) if i == ino => mode,
                _ => return Err(VfsError::BadHandle),
            },
            // Stateless protocols (NFS) write to the inode directly.
            None => OpenFlags::WRITE,
        };
        if !mode.contains(OpenFlags::WRITE) {
            return Err(VfsError::BadHandle);
        }
        let n = st.notes.get_mut(&ino).ok_or(VfsError::Stale)?;
        let start = if mode.contains(OpenFlags::APPEND) {
            n.data.len() as u64
        } else {
            offset
        };
        let len = u32::try_from(data.len()).map_err(|_| VfsError::InvalidArgument)?;
        let end = start
            .checked_add(u64::from(len))
            .filter(|&e| e <= MAX_NOTE)
            .ok_or(VfsError::FileTooLarge)?;
        // Both fit in usize: they are at most MAX_NOTE.
        let (start, end) = (start as usize, end as usize);
        if n.data.len() < end {
            n.data.resize(end, 0);
        }
        n.data[start..end].copy_from_slice(data);
        n.mtime = SystemTime::now();
        n.ctime = n.mtime;
        Ok(len)
    }

    fn release(&self, _: &Ctx, _: Ino, fh: Fh) -> VfsResult<()> {
        let mut st = self.lock()?;
        let Some((ino, _)) = st.handles.remove(&fh.0) else {
            return Err(VfsError::BadHandle);
        };
        let gone = match st.notes.get_mut(&ino) {
            Some(n) => {
                n.open = n.open.saturating_sub(1);
                n.open == 0 && n.name.is_none()
            }
            None => false,
        };
        if gone {
            st.notes.remove(&ino);
        }
        Ok(())
    }

    fn opendir(&self, _: &Ctx, ino: Ino, _: OpenFlags) -> VfsResult<Fh> {
        match ino {
            Ino::ROOT => Ok(Fh(0)),
            _ => Err(VfsError::NotDir),
        }
    }

    fn readdir(
        &self,
        _: &Ctx,
        ino: Ino,
        _: Option<Fh>,
        after: u64,
        sink: &mut dyn DirSink,
    ) -> VfsResult<()> {
        in_root(ino)?;
        let st = self.lock()?;
        // Inode order, resuming after inode `after`: an entry present for the whole
        // listing is returned exactly once, whatever else is created or removed.
        let rest = st.notes.range(Ino(after.saturating_add(1))..);
        for (&ino, note) in rest {
            let Some(name) = &note.name else { continue };
            let attr = if sink.wants_attr() {
                Some(self.attr(&st, ino)?)
            } else {
                None
            };
            let entry = DirEntry {
                name,
                ino,
                kind: FileType::RegularFile,
                cookie: ino.0,
                attr,
            };
            if sink.add(&entry) {
                break;
            }
        }
        Ok(())
    }

    fn releasedir(&self, _: &Ctx, _: Ino, _: Fh) -> VfsResult<()> {
        Ok(())
    }

    fn statfs(&self, _: &Ctx, _: Ino) -> VfsResult<StatFs> {
        let st = self.lock()?;
        let used: u64 = st.notes.values().map(|n| n.data.len() as u64).sum();
        Ok(StatFs {
            blocks: used.div_ceil(4096),
            bfree: 0,
            bavail: 0,
            files: st.notes.len() as u64 + 1,
            ffree: 0,
            bsize: 4096,
            frsize: 4096,
            namelen: vmount::core::NAME_MAX as u32,
        })
    }

    fn access(&self, ctx: &Ctx, ino: Ino, mask: AccessMask) -> VfsResult<()> {
        // FUSE's kernel checks mode bits itself (enforces_permissions is false), but NFS
        // clients decide from this answer, so it follows the mode bits.
        let st = self.lock()?;
        let a = self.attr(&st, ino)?;
        let perm = u32::from(a.perm);
        let bits = if ctx.uid == a.uid {
            perm >> 6
        } else if ctx.in_group(a.gid) {
            perm >> 3
        } else {
            perm
        } & 0o7;
        let want = [
            (AccessMask::READ, 0o4),
            (AccessMask::WRITE, 0o2),
            (AccessMask::EXEC, 0o1),
        ];
        for (flag, bit) in want {
            // Root may read and write anything, and execute what anyone may execute.
            let root_ok = ctx.is_root() && (flag != AccessMask::EXEC || perm & 0o111 != 0);
            if mask.contains(flag) && bits & bit == 0 && !root_ok {
                return Err(VfsError::PermissionDenied);
            }
        }
        Ok(())
    }
}

#[allow(dead_code)] // The tests include this file for `NotesFs` only.
fn main() -> anyhow::Result<()> {
    let Some(mountpoint) = std::env::args_os().nth(1) else {
        anyhow::bail!("usage: notes_vfs MOUNTPOINT");
    };
    let plan = vmount::MountPlan::builder(mountpoint)
        .name("notes")
        .build()?;
    // The root belongs to root; mode 1777 lets every user add notes.
    let mount = vmount::mount(NotesFs::new(0, 0), &plan)?;
    println!(
        "mounted notes at {} via {}; Ctrl-C unmounts",
        mount.mountpoint().display(),
        mount.backend()
    );
    mount.wait()
}
