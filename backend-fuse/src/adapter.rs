//! `impl fuser::Filesystem` for any [`Vfs`].
//!
//! Each handler converts its arguments with the functions of [`crate::convert`], makes
//! one trait call and replies; nothing a client sends reaches an `unwrap`, and every
//! arithmetic step on client offsets is checked, so no panic can unwind into fuser's
//! event loop (which would take the whole mount down).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, CopyFileRangeFlags, Errno, FileHandle, Filesystem, FopenFlags, Generation,
    INodeNo, InitFlags, KernelConfig, LockOwner, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use parking_lot::Mutex;
use vmount_core::{
    Attr, Ctx, DirEntry, DirSink, Fh, FileType, Ino, OpenFlags, Opened, SetAttr, SetTime, Vfs,
    VfsError,
};

use crate::FuseOptions;
use crate::convert::{self, DirPos};

/// Inode generations: vmount never reuses an inode number while mounted, so 0 always.
const GENERATION: Generation = Generation(0);

/// Largest single write the kernel may send (FUSE's `max_write`).
const MAX_WRITE: u32 = 1 << 20;
/// Largest readahead we ask for; the kernel caps it at what it offered.
const MAX_READAHEAD: u32 = 1 << 20;
/// Pending background requests (readahead, writeback) the kernel may queue.
const MAX_BACKGROUND: u16 = 64;

thread_local! {
    /// One read buffer per fuser worker thread, grown to the largest read seen and
    /// reused, so that reads do not allocate.
    static READ_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The fuser filesystem serving one [`Vfs`].
pub(crate) struct Adapter {
    fs: Arc<dyn Vfs>,
    attr_ttl: Duration,
    entry_ttl: Duration,
    want_writeback: bool,
    /// Whether FUSE_WRITEBACK_CACHE was negotiated (set once in `init`).
    writeback: bool,
    plus_refs: PlusRefs,
    /// Operations already reported as unimplemented (logged once each).
    unimplemented: Mutex<HashSet<&'static str>>,
}

impl Adapter {
    pub(crate) fn new(fs: Arc<dyn Vfs>, opts: &FuseOptions) -> Adapter {
        Adapter {
            fs,
            attr_ttl: opts.attr_timeout,
            entry_ttl: opts.entry_timeout,
            want_writeback: opts.writeback_cache,
            writeback: false,
            plus_refs: PlusRefs::default(),
            unimplemented: Mutex::new(HashSet::new()),
        }
    }

    /// The errno for `e`, logging it: `Unimplemented` once per operation as a warning
    /// (the kernel remembers ENOSYS for most operations and stops asking), everything
    /// else at debug level since errors like ENOENT are routine.
    fn fail(&self, op: &'static str, e: VfsError) -> Errno {
        if matches!(e, VfsError::Unimplemented) {
            if self.unimplemented.lock().insert(op) {
                tracing::warn!(
                    op,
                    "the filesystem does not implement {op}; replying ENOSYS"
                );
            }
        } else {
            tracing::debug!(op, error = %e, "operation failed");
        }
        convert::errno(&e)
    }

    fn reply_entry(&self, reply: ReplyEntry, attr: &Attr) {
        reply.entry_with_ttls(
            &self.attr_ttl,
            &self.entry_ttl,
            &convert::file_attr(attr),
            GENERATION,
        );
    }

    fn single_ttl(&self) -> Duration {
        convert::combined_ttl(self.attr_ttl, self.entry_ttl)
    }

    /// Open flags as the filesystem should see them. With the writeback cache the kernel
    /// reads through write-only handles (to fill partial pages) and implements O_APPEND
    /// itself from its cached size, so a write-only open asks for read access too and
    /// APPEND is dropped (the same adjustment libfuse's passthrough examples make).
    fn fs_open_flags(&self, raw: i32) -> OpenFlags {
        let mut flags = convert::open_flags(raw);
        if self.writeback {
            flags.remove(OpenFlags::APPEND);
            if flags.contains(OpenFlags::WRITE) {
                flags.insert(OpenFlags::READ);
            }
        }
        flags
    }

    /// Runs `call` with the writeback-adjusted flags, retrying with the caller's own flags
    /// when the added read access is what was refused (a file with mode 0200).
    fn with_open_flags<T>(
        &self,
        raw: i32,
        call: impl Fn(OpenFlags) -> Result<T, VfsError>,
    ) -> Result<T, VfsError> {
        let adjusted = self.fs_open_flags(raw);
        match call(adjusted) {
            Err(VfsError::PermissionDenied)
                if adjusted.contains(OpenFlags::READ)
                    && !convert::open_flags(raw).contains(OpenFlags::READ) =>
            {
                let mut plain = adjusted;
                plain.remove(OpenFlags::READ);
                call(plain)
            }
            other => other,
        }
    }

    fn forget_one(&self, ino: u64, nlookup: u64) {
        let rest = self.plus_refs.absorb(ino, nlookup);
        if rest > 0 {
            self.fs.forget(Ino(ino), rest);
        }
    }
}

fn ctx(req: &Request) -> Ctx {
    Ctx::new(req.uid(), req.gid(), req.pid())
}

fn ino(i: INodeNo) -> Ino {
    Ino(i.0)
}

fn fh(h: FileHandle) -> Fh {
    Fh(h.0)
}

fn fopen_flags(o: &Opened) -> FopenFlags {
    let mut f = FopenFlags::empty();
    if o.direct_io {
        f |= FopenFlags::FOPEN_DIRECT_IO;
    }
    if o.keep_cache {
        f |= FopenFlags::FOPEN_KEEP_CACHE;
    }
    f
}

fn set_time(t: TimeOrNow) -> SetTime {
    match t {
        TimeOrNow::Now => SetTime::Now,
        TimeOrNow::SpecificTime(t) => SetTime::At(t),
    }
}

/// Lookup references the kernel holds because of READDIRPLUS entries.
///
/// The kernel counts one lookup for every READDIRPLUS entry except `.` and `..` and later
/// forgets them like any other, but the trait's [`DirSink`] is shared with NFS and
/// WinFsp, so filesystems do not count them. The adapter keeps these references itself
/// and lets a FORGET consume them before passing the remainder on, so the counts a
/// filesystem sees stay exactly balanced with its own `lookup`/`create`/... results.
/// Sharded to keep concurrent listings on different threads from contending.
#[derive(Default)]
struct PlusRefs {
    shards: [Mutex<HashMap<u64, u64>>; 16],
}

impl PlusRefs {
    fn shard(&self, ino: u64) -> &Mutex<HashMap<u64, u64>> {
        // The low bits of inode numbers vary fastest.
        &self.shards[(ino % 16) as usize]
    }

    fn add(&self, ino: u64) {
        let mut map = self.shard(ino).lock();
        let n = map.entry(ino).or_insert(0);
        *n = n.saturating_add(1);
    }

    /// Takes up to `n` references of `ino` from the adapter's share and returns how many
    /// remain for the filesystem.
    fn absorb(&self, ino: u64, n: u64) -> u64 {
        let mut map = self.shard(ino).lock();
        let Some(held) = map.get_mut(&ino) else {
            return n;
        };
        let taken = (*held).min(n);
        *held -= taken;
        if *held == 0 {
            map.remove(&ino);
        }
        n - taken
    }
}

/// Why a directory sink stopped taking entries before the reply was full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SinkFault {
    /// The filesystem broke the readdir contract (cookie 0, missing attributes, a name
    /// the kernel cannot take); the listing fails with EIO rather than looping forever.
    Contract(&'static str),
}

fn check_entry(e: &DirEntry<'_>) -> Result<u64, SinkFault> {
    let len = e.name.len();
    if len == 0 || len > convert::FUSE_NAME_MAX {
        return Err(SinkFault::Contract(
            "entry name empty or longer than FUSE allows",
        ));
    }
    convert::cookie_offset(e.cookie).ok_or(SinkFault::Contract("entry cookie 0 or out of range"))
}

/// Pours entries into a READDIR reply.
struct PlainSink<'r> {
    reply: &'r mut ReplyDirectory,
    fault: Option<SinkFault>,
}

impl DirSink for PlainSink<'_> {
    fn wants_attr(&self) -> bool {
        false
    }

    fn add(&mut self, e: &DirEntry<'_>) -> bool {
        let offset = match check_entry(e) {
            Ok(o) => o,
            Err(f) => {
                self.fault = Some(f);
                return true;
            }
        };
        self.reply
            .add(INodeNo(e.ino.0), offset, convert::file_type(e.kind), e.name)
    }
}

/// Pours entries with attributes into a READDIRPLUS reply, remembering the lookup
/// reference the kernel will count for each one taken.
struct PlusSink<'r> {
    reply: &'r mut ReplyDirectoryPlus,
    ttl: Duration,
    refs: &'r PlusRefs,
    fault: Option<SinkFault>,
}

impl DirSink for PlusSink<'_> {
    fn wants_attr(&self) -> bool {
        true
    }

    fn add(&mut self, e: &DirEntry<'_>) -> bool {
        let checked = check_entry(e).and_then(|o| {
            e.attr
                .map(|a| (o, a))
                .ok_or(SinkFault::Contract("entry without attributes"))
        });
        let (offset, attr) = match checked {
            Ok(v) => v,
            Err(f) => {
                self.fault = Some(f);
                return true;
            }
        };
        let fattr = convert::file_attr(&attr);
        let full = self
            .reply
            .add(fattr.ino, offset, e.name, &self.ttl, &fattr, GENERATION);
        if !full {
            self.refs.add(attr.ino.0);
        }
        full
    }
}

impl Filesystem for Adapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        let optional = [
            ("readdirplus", InitFlags::FUSE_DO_READDIRPLUS),
            ("readdirplus_auto", InitFlags::FUSE_READDIRPLUS_AUTO),
            ("parallel_dirops", InitFlags::FUSE_PARALLEL_DIROPS),
            ("async_read", InitFlags::FUSE_ASYNC_READ),
            ("big_writes", InitFlags::FUSE_BIG_WRITES),
            ("auto_inval_data", InitFlags::FUSE_AUTO_INVAL_DATA),
            ("cache_symlinks", InitFlags::FUSE_CACHE_SYMLINKS),
            ("max_pages", InitFlags::FUSE_MAX_PAGES),
        ];
        for (name, flag) in optional {
            if config.add_capabilities(flag).is_err() {
                tracing::debug!("the kernel does not offer FUSE capability {name}");
            }
        }
        if self.want_writeback {
            match config.add_capabilities(InitFlags::FUSE_WRITEBACK_CACHE) {
                Ok(()) => self.writeback = true,
                Err(_) => tracing::warn!(
                    "the kernel does not support the FUSE writeback cache; writes go through \
                     uncached"
                ),
            }
        }
        // Each setter returns the nearest allowed value when ours is out of range.
        if let Err(nearest) = config.set_max_write(MAX_WRITE) {
            let _ = config.set_max_write(nearest);
        }
        if let Err(nearest) = config.set_max_readahead(MAX_READAHEAD) {
            let _ = config.set_max_readahead(nearest);
        }
        let _ = config.set_max_background(MAX_BACKGROUND);
        tracing::debug!(
            abi = %config.kernel_abi(),
            writeback = self.writeback,
            "FUSE session initialised"
        );
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.fs.lookup(&ctx(req), ino(parent), name) {
            Ok(a) => self.reply_entry(reply, &a),
            Err(e) => reply.error(self.fail("lookup", e)),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.forget_one(ino.0, nlookup);
    }

    // `batch_forget` keeps fuser's default, which calls `forget` for each node: its
    // `ForgetOne` argument type is not exported by fuser 0.18, so it cannot be overridden.

    fn getattr(&self, req: &Request, i: INodeNo, h: Option<FileHandle>, reply: ReplyAttr) {
        match self.fs.getattr(&ctx(req), ino(i), h.map(fh)) {
            Ok(a) => reply.attr(&self.attr_ttl, &convert::file_attr(&a)),
            Err(e) => reply.error(self.fail("getattr", e)),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        i: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        h: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let set = SetAttr {
            mode: mode.map(|m| m & 0o7777),
            uid,
            gid,
            size,
            atime: atime.map(set_time),
            mtime: mtime.map(set_time),
            ctime,
        };
        match self.fs.setattr(&ctx(req), ino(i), &set, h.map(fh)) {
            Ok(a) => reply.attr(&self.attr_ttl, &convert::file_attr(&a)),
            Err(e) => reply.error(self.fail("setattr", e)),
        }
    }

    fn readlink(&self, req: &Request, i: INodeNo, reply: ReplyData) {
        match self.fs.readlink(&ctx(req), ino(i)) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(self.fail("readlink", e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let Some(kind) = FileType::from_mode(mode) else {
            return reply.error(Errno::EINVAL);
        };
        if kind == FileType::Directory {
            // mknod(2) cannot make directories.
            return reply.error(Errno::EINVAL);
        }
        let perm = convert::masked_mode(mode, umask);
        match self
            .fs
            .mknod(&ctx(req), ino(parent), name, kind, perm, u64::from(rdev))
        {
            Ok(a) => self.reply_entry(reply, &a),
            Err(e) => reply.error(self.fail("mknod", e)),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let perm = convert::masked_mode(mode, umask);
        match self.fs.mkdir(&ctx(req), ino(parent), name, perm) {
            Ok(a) => self.reply_entry(reply, &a),
            Err(e) => reply.error(self.fail("mkdir", e)),
        }
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.fs.unlink(&ctx(req), ino(parent), name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.fail("unlink", e)),
        }
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.fs.rmdir(&ctx(req), ino(parent), name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.fail("rmdir", e)),
        }
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        match self
            .fs
            .symlink(&ctx(req), ino(parent), link_name, target.as_os_str())
        {
            Ok(a) => self.reply_entry(reply, &a),
            Err(e) => reply.error(self.fail("symlink", e)),
        }
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        let flags = match convert::rename_flags(flags.bits()) {
            Ok(f) => f,
            Err(e) => return reply.error(e),
        };
        match self
            .fs
            .rename(&ctx(req), ino(parent), name, ino(newparent), newname, flags)
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.fail("rename", e)),
        }
    }

    fn link(
        &self,
        req: &Request,
        i: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        match self.fs.link(&ctx(req), ino(i), ino(newparent), newname) {
            Ok(a) => self.reply_entry(reply, &a),
            Err(e) => reply.error(self.fail("link", e)),
        }
    }

    fn open(&self, req: &Request, i: INodeNo, flags: fuser::OpenFlags, reply: ReplyOpen) {
        let ctx = ctx(req);
        match self.with_open_flags(flags.0, |f| self.fs.open(&ctx, ino(i), f)) {
            Ok(o) => reply.opened(FileHandle(o.fh.0), fopen_flags(&o)),
            Err(e) => reply.error(self.fail("open", e)),
        }
    }

    fn read(
        &self,
        req: &Request,
        i: INodeNo,
        h: FileHandle,
        offset: u64,
        size: u32,
        _flags: fuser::OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let size = size as usize;
        READ_BUF.with_borrow_mut(|buf| {
            if buf.len() < size {
                buf.resize(size, 0);
            }
            let buf = &mut buf[..size];
            match self.fs.read(&ctx(req), ino(i), Some(fh(h)), offset, buf) {
                Ok(n) => reply.data(&buf[..n.min(size)]),
                Err(e) => reply.error(self.fail("read", e)),
            }
        });
    }

    fn write(
        &self,
        req: &Request,
        i: INodeNo,
        h: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: fuser::OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.fs.write(&ctx(req), ino(i), Some(fh(h)), offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(self.fail("write", e)),
        }
    }

    fn flush(
        &self,
        req: &Request,
        i: INodeNo,
        h: FileHandle,
        lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        match self.fs.flush(&ctx(req), ino(i), fh(h), lock_owner.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.fail("flush", e)),
        }
    }

    fn release(
        &self,
        req: &Request,
        i: INodeNo,
        h: FileHandle,
        _flags: fuser::OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        match self.fs.release(&ctx(req), ino(i), fh(h)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.fail("release", e)),
        }
    }

    fn fsync(&self, req: &Request, i: INodeNo, h: FileHandle, datasync: bool, reply: ReplyEmpty) {
        match self.fs.fsync(&ctx(req), ino(i), Some(fh(h)), datasync) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.fail("fsync", e)),
        }
    }

    fn opendir(&self, req: &Request, i: INodeNo, flags: fuser::OpenFlags, reply: ReplyOpen) {
        match self
            .fs
            .opendir(&ctx(req), ino(i), convert::open_flags(flags.0))
        {
            Ok(h) => reply.opened(FileHandle(h.0), FopenFlags::empty()),
            Err(e) => reply.error(self.fail("opendir", e)),
        }
    }

    fn readdir(
        &self,
        req: &Request,
        i: INodeNo,
        h: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        // `..` gets the directory's own inode: the parent is not tracked, and the kernel
        // answers `..` lookups itself from its dentry tree.
        let after = match convert::dir_pos(offset) {
            DirPos::Start => {
                if reply.add(
                    i,
                    convert::OFFSET_AFTER_DOT,
                    fuser::FileType::Directory,
                    ".",
                ) || reply.add(
                    i,
                    convert::OFFSET_AFTER_DOTDOT,
                    fuser::FileType::Directory,
                    "..",
                ) {
                    return reply.ok();
                }
                0
            }
            DirPos::AfterDot => {
                if reply.add(
                    i,
                    convert::OFFSET_AFTER_DOTDOT,
                    fuser::FileType::Directory,
                    "..",
                ) {
                    return reply.ok();
                }
                0
            }
            DirPos::After(cookie) => cookie,
        };
        let mut sink = PlainSink {
            reply: &mut reply,
            fault: None,
        };
        let res = self
            .fs
            .readdir(&ctx(req), ino(i), Some(fh(h)), after, &mut sink);
        let fault = sink.fault;
        match (res, fault) {
            (Err(e), _) => reply.error(self.fail("readdir", e)),
            (Ok(()), Some(SinkFault::Contract(what))) => {
                tracing::warn!(ino = i.0, "readdir: filesystem bug: {what}");
                reply.error(Errno::EIO);
            }
            (Ok(()), None) => reply.ok(),
        }
    }

    fn readdirplus(
        &self,
        req: &Request,
        i: INodeNo,
        h: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let ctx = ctx(req);
        let ttl = self.single_ttl();
        let pos = convert::dir_pos(offset);
        let after = match pos {
            DirPos::Start | DirPos::AfterDot => {
                // `.` and `..` need attributes in the reply although the kernel ignores
                // them (and counts no lookup for them); the directory's own serve both.
                let dir = match self.fs.getattr(&ctx, ino(i), None) {
                    Ok(a) => convert::file_attr(&a),
                    Err(e) => return reply.error(self.fail("readdirplus", e)),
                };
                if pos == DirPos::Start
                    && reply.add(i, convert::OFFSET_AFTER_DOT, ".", &ttl, &dir, GENERATION)
                {
                    return reply.ok();
                }
                if reply.add(
                    i,
                    convert::OFFSET_AFTER_DOTDOT,
                    "..",
                    &ttl,
                    &dir,
                    GENERATION,
                ) {
                    return reply.ok();
                }
                0
            }
            DirPos::After(cookie) => cookie,
        };
        let mut sink = PlusSink {
            reply: &mut reply,
            ttl,
            refs: &self.plus_refs,
            fault: None,
        };
        let res = self.fs.readdir(&ctx, ino(i), Some(fh(h)), after, &mut sink);
        let fault = sink.fault;
        match (res, fault) {
            (Err(e), _) => reply.error(self.fail("readdirplus", e)),
            (Ok(()), Some(SinkFault::Contract(what))) => {
                tracing::warn!(ino = i.0, "readdirplus: filesystem bug: {what}");
                reply.error(Errno::EIO);
            }
            (Ok(()), None) => reply.ok(),
        }
    }

    fn releasedir(
        &self,
        req: &Request,
        i: INodeNo,
        h: FileHandle,
        _flags: fuser::OpenFlags,
        reply: ReplyEmpty,
    ) {
        match self.fs.releasedir(&ctx(req), ino(i), fh(h)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.fail("releasedir", e)),
        }
    }

    fn fsyncdir(
        &self,
        req: &Request,
        i: INodeNo,
        h: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.fs.fsyncdir(&ctx(req), ino(i), Some(fh(h)), datasync) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.fail("fsyncdir", e)),
        }
    }

    fn statfs(&self, req: &Request, i: INodeNo, reply: ReplyStatfs) {
        match self.fs.statfs(&ctx(req), ino(i)) {
            Ok(s) => {
                let (blocks, bfree, bavail, files, ffree, bsize, namelen, frsize) =
                    convert::statfs_args(&s);
                reply.statfs(blocks, bfree, bavail, files, ffree, bsize, namelen, frsize);
            }
            Err(e) => reply.error(self.fail("statfs", e)),
        }
    }

    fn setxattr(
        &self,
        req: &Request,
        i: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        position: u32,
        reply: ReplyEmpty,
    ) {
        // `position` is macOS's resource-fork offset; vmount has no resource forks.
        if position != 0 {
            return reply.error(Errno::EINVAL);
        }
        let flags = match convert::xattr_flags(flags) {
            Ok(f) => f,
            Err(e) => return reply.error(e),
        };
        match self.fs.setxattr(&ctx(req), ino(i), name, value, flags) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.fail("setxattr", e)),
        }
    }

    fn getxattr(&self, req: &Request, i: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.fs.getxattr(&ctx(req), ino(i), name) {
            Ok(value) => reply_xattr(reply, size, &value),
            Err(e) => reply.error(self.fail("getxattr", e)),
        }
    }

    fn listxattr(&self, req: &Request, i: INodeNo, size: u32, reply: ReplyXattr) {
        match self.fs.listxattr(&ctx(req), ino(i)) {
            Ok(names) => reply_xattr(reply, size, &xattr_list(&names)),
            Err(e) => reply.error(self.fail("listxattr", e)),
        }
    }

    fn removexattr(&self, req: &Request, i: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.fs.removexattr(&ctx(req), ino(i), name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.fail("removexattr", e)),
        }
    }

    fn access(&self, req: &Request, i: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        match self
            .fs
            .access(&ctx(req), ino(i), convert::access_mask(mask.bits()))
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.fail("access", e)),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let ctx = ctx(req);
        let perm = convert::masked_mode(mode, umask);
        let res = self.with_open_flags(flags, |f| self.fs.create(&ctx, ino(parent), name, perm, f));
        match res {
            Ok((a, o)) => reply.created(
                &self.single_ttl(),
                &convert::file_attr(&a),
                GENERATION,
                FileHandle(o.fh.0),
                fopen_flags(&o),
            ),
            Err(e) => reply.error(self.fail("create", e)),
        }
    }

    fn fallocate(
        &self,
        req: &Request,
        i: INodeNo,
        h: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let mode = match convert::fallocate_flags(mode) {
            Ok(m) => m,
            Err(e) => return reply.error(e),
        };
        if offset
            .checked_add(length)
            .is_none_or(|end| end > i64::MAX as u64)
        {
            return reply.error(Errno::EFBIG);
        }
        match self
            .fs
            .fallocate(&ctx(req), ino(i), Some(fh(h)), offset, length, mode)
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.fail("fallocate", e)),
        }
    }

    fn lseek(
        &self,
        req: &Request,
        i: INodeNo,
        h: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        let whence = match convert::whence(whence) {
            Ok(w) => w,
            Err(e) => return reply.error(e),
        };
        // A negative start has no data or hole after it (what ext4 and tmpfs answer).
        let Ok(offset) = u64::try_from(offset) else {
            return reply.error(Errno::ENXIO);
        };
        match self
            .fs
            .lseek(&ctx(req), ino(i), Some(fh(h)), offset, whence)
        {
            Ok(found) => match i64::try_from(found) {
                Ok(found) => reply.offset(found),
                Err(_) => reply.error(Errno::from_i32(libc::EOVERFLOW)),
            },
            Err(e) => reply.error(self.fail("lseek", e)),
        }
    }

    fn copy_file_range(
        &self,
        req: &Request,
        ino_in: INodeNo,
        fh_in: FileHandle,
        offset_in: u64,
        ino_out: INodeNo,
        fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        if !flags.is_empty() {
            return reply.error(Errno::EINVAL);
        }
        // The reply carries a 32-bit count; the kernel never asks for more, but a short
        // copy is always allowed, so clamp rather than trust it.
        let len = len.min(u64::from(u32::MAX));
        let res = self.fs.copy_file_range(
            &ctx(req),
            ino(ino_in),
            Some(fh(fh_in)),
            offset_in,
            ino(ino_out),
            Some(fh(fh_out)),
            offset_out,
            len,
        );
        match res {
            Ok(n) => reply.written(u32::try_from(n.min(len)).unwrap_or(u32::MAX)),
            Err(e) => reply.error(self.fail("copy_file_range", e)),
        }
    }
}

/// Answers getxattr/listxattr: `size` 0 asks for the length, a value longer than `size`
/// is ERANGE.
fn reply_xattr(reply: ReplyXattr, size: u32, value: &[u8]) {
    let Ok(len) = u32::try_from(value.len()) else {
        return reply.error(Errno::from_i32(libc::E2BIG));
    };
    if size == 0 {
        reply.size(len);
    } else if len > size {
        reply.error(Errno::from_i32(libc::ERANGE));
    } else {
        reply.data(value);
    }
}

/// The listxattr wire format: every name followed by a NUL byte.
fn xattr_list(names: &[OsString]) -> Vec<u8> {
    let mut out = Vec::with_capacity(names.iter().map(|n| n.len() + 1).sum());
    for n in names {
        out.extend_from_slice(n.as_encoded_bytes());
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plus_refs_absorb_only_their_share() {
        let refs = PlusRefs::default();
        refs.add(5);
        refs.add(5);
        refs.add(21); // same shard as 5
        assert_eq!(refs.absorb(5, 1), 0);
        assert_eq!(
            refs.absorb(5, 3),
            2,
            "one left for us, two go to the filesystem"
        );
        assert_eq!(refs.absorb(5, 4), 4, "nothing left for us");
        assert_eq!(refs.absorb(21, 1), 0);
        assert_eq!(refs.absorb(7, 9), 9);
        assert!(refs.shards.iter().all(|s| s.lock().is_empty()));
    }

    #[test]
    fn xattr_lists_are_nul_terminated() {
        let names = [OsString::from("user.a"), OsString::from("user.bc")];
        assert_eq!(xattr_list(&names), b"user.a\0user.bc\0");
        assert!(xattr_list(&[]).is_empty());
    }
}
