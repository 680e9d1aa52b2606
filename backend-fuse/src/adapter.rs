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
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, BackingId, CopyFileRangeFlags, Errno, FileHandle, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, KernelConfig, LockOwner, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen, ReplyStatfs,
    ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use parking_lot::Mutex;
use vmount_core::{
    Attr, Ctx, DirEntry, DirSink, Fh, FileType, Ino, OpenFlags, Opened, SetAttr, SetTime, Vfs,
    VfsError,
};

use crate::convert::{self, DirPos};
use crate::{FuseOptions, Passthrough};

/// Inode generations: vmount never reuses an inode number while mounted, so 0 always.
const GENERATION: Generation = Generation(0);

/// Largest single write the kernel may send (FUSE's `max_write`).
const MAX_WRITE: u32 = 1 << 20;
/// Largest readahead we ask for; the kernel caps it at what it offered.
const MAX_READAHEAD: u32 = 1 << 20;
/// Pending background requests (readahead, writeback) the kernel may queue.
const MAX_BACKGROUND: u16 = 64;
/// Filesystem stacking depth announced with passthrough. 2 (the kernel's maximum) lets the
/// backing files live on a stacked filesystem themselves (overlayfs, as in most
/// containers), at the price that this mount cannot be a layer of another overlayfs.
const MAX_STACK_DEPTH: u32 = 2;
/// The open flags the kernel accepts together with FOPEN_PASSTHROUGH (KEEP_CACHE, for one,
/// makes the open fail with EINVAL: there is no page cache of our own to keep).
const PASSTHROUGH_FOPEN_MASK: FopenFlags =
    FopenFlags::FOPEN_DIRECT_IO.union(FopenFlags::FOPEN_NOFLUSH);

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
    want_passthrough: Passthrough,
    /// Whether opens may register backing files: FUSE_PASSTHROUGH was negotiated in `init`,
    /// and cleared for good if the kernel later refuses registration (EPERM).
    passthrough: AtomicBool,
    /// Backing files of passthrough opens.
    backing: BackingTable<BackingId>,
    /// Set in `init` when `passthrough = on` cannot be honoured, so that `mount` can say
    /// why the session ended.
    startup: Arc<StartupFailure>,
    /// Operations already reported as unimplemented (logged once each).
    unimplemented: Mutex<HashSet<&'static str>>,
}

/// Why `init` refused the session, for [`crate::mount`] to turn into a clear error.
#[derive(Debug, Default)]
pub(crate) struct StartupFailure {
    pub(crate) passthrough_unsupported: AtomicBool,
}

/// What `init` asks the kernel for, given what was wanted and what the kernel offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Negotiation {
    passthrough: bool,
    writeback: bool,
    /// Writeback was wanted but dropped in favour of passthrough.
    writeback_dropped: bool,
    /// Passthrough was wanted (auto) but the kernel lacks it.
    passthrough_missing: bool,
}

/// Decides passthrough and writeback cache, which the kernel never enables together (it
/// disables passthrough on a writeback-cache mount): passthrough wins. `Err` when
/// `passthrough = on` cannot be honoured.
fn negotiate(
    mode: Passthrough,
    want_writeback: bool,
    kernel_passthrough: bool,
    kernel_writeback: bool,
) -> Result<Negotiation, ()> {
    let passthrough = match mode {
        Passthrough::Off => false,
        Passthrough::Auto => kernel_passthrough,
        Passthrough::On if kernel_passthrough => true,
        Passthrough::On => return Err(()),
    };
    Ok(Negotiation {
        passthrough,
        writeback: want_writeback && kernel_writeback && !passthrough,
        writeback_dropped: want_writeback && passthrough,
        passthrough_missing: mode == Passthrough::Auto && !kernel_passthrough,
    })
}

impl Adapter {
    /// `passthrough` is the mode after `mount`'s privilege check (Auto becomes Off without
    /// CAP_SYS_ADMIN); `startup` is shared with `mount`.
    pub(crate) fn new(
        fs: Arc<dyn Vfs>,
        opts: &FuseOptions,
        passthrough: Passthrough,
        startup: Arc<StartupFailure>,
    ) -> Adapter {
        Adapter {
            // Every request is one trait call, counted for `vmount status` and the
            // metrics endpoint (see `vmount_core::stats`).
            fs: Arc::new(vmount_core::stats::Recorded::new(
                fs,
                vmount_core::stats::global(),
            )),
            attr_ttl: opts.attr_timeout,
            entry_ttl: opts.entry_timeout,
            want_writeback: opts.writeback_cache,
            writeback: false,
            want_passthrough: passthrough,
            passthrough: AtomicBool::new(false),
            backing: BackingTable::default(),
            startup,
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

    /// FORGET: the filesystem counted every reference the kernel drops here (READDIRPLUS
    /// entries included), so the count goes through unchanged.
    fn forget_inode(&self, i: INodeNo, nlookup: u64) {
        self.fs.forget(ino(i), nlookup);
    }

    /// The backing file for a new open handle `fh` of `ino`, if passthrough is on and the
    /// filesystem has a host descriptor for it. `register` turns a descriptor into a
    /// `BackingId` (the reply's `open_backing`). `None` serves the open through the daemon.
    fn backing_for(
        &self,
        ino: Ino,
        fh: Fh,
        register: impl FnOnce(OwnedFd) -> io::Result<BackingId>,
    ) -> Option<Arc<BackingId>> {
        if !self.passthrough.load(Ordering::Relaxed) {
            return None;
        }
        let res = self.backing.attach(ino.0, fh.0, || {
            self.fs
                .passthrough_fd(ino, fh)
                .map(|fd| register(fd).map_err(|e| (fd_error(&e), e)))
        });
        match res {
            Ok(id) => id,
            Err((RegisterError::NotPermitted, e)) => {
                // Only the first refusal is logged: after it no open asks again.
                if self.passthrough.swap(false, Ordering::Relaxed) {
                    let msg = "the kernel refused to register a FUSE passthrough backing file \
                               (needs CAP_SYS_ADMIN); file data goes through the daemon";
                    if self.want_passthrough == Passthrough::On {
                        tracing::warn!(error = %e, "{msg}");
                    } else {
                        tracing::info!(error = %e, "{msg}");
                    }
                }
                None
            }
            Err((RegisterError::Other, e)) => {
                tracing::debug!(
                    ino = ino.0,
                    error = %e,
                    "passthrough refused for this file; serving it through the daemon"
                );
                None
            }
        }
    }
}

/// How registering a backing file failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RegisterError {
    /// EPERM: passthrough is off for this connection or we lack CAP_SYS_ADMIN; no later
    /// attempt will succeed either.
    NotPermitted,
    /// Anything about this one file (a host filesystem stacked too deep, one without
    /// read_iter/write_iter); other files may still work.
    Other,
}

fn fd_error(e: &io::Error) -> RegisterError {
    if e.raw_os_error() == Some(libc::EPERM) {
        RegisterError::NotPermitted
    } else {
        RegisterError::Other
    }
}

/// The kernel's backing files of passthrough opens.
///
/// The kernel allows one backing file per FUSE inode at a time (a second, different one
/// fails the open with EBUSY), and an inode open in passthrough mode must be opened in
/// passthrough mode by every later open too. So the first open of an inode registers its
/// host descriptor and every later one reuses that `BackingId`: `by_inode` finds it
/// (weakly), `by_handle` keeps it alive, one strong reference per open handle, until that
/// handle's `release`. The last release closes it in the kernel (`BackingId`'s `Drop`).
/// Generic only so that the bookkeeping can be tested without a kernel.
struct BackingTable<T> {
    inner: Mutex<BackingMaps<T>>,
}

struct BackingMaps<T> {
    by_inode: HashMap<u64, Weak<T>>,
    by_handle: HashMap<u64, Arc<T>>,
}

impl<T> Default for BackingTable<T> {
    fn default() -> Self {
        BackingTable {
            inner: Mutex::new(BackingMaps {
                by_inode: HashMap::new(),
                by_handle: HashMap::new(),
            }),
        }
    }
}

impl<T> BackingTable<T> {
    /// The backing of inode `ino`, now also held by handle `fh`: the live one if another
    /// handle holds it, else the result of `create` (`None` when the filesystem has no
    /// host file, an error when registration failed; both leave the handle unbacked).
    ///
    /// The lock is held across `create` so that two concurrent first opens of an inode
    /// cannot register two different backing files.
    fn attach<E>(
        &self,
        ino: u64,
        fh: u64,
        create: impl FnOnce() -> Option<Result<T, E>>,
    ) -> Result<Option<Arc<T>>, E> {
        let mut maps = self.inner.lock();
        let live = maps.by_inode.get(&ino).and_then(Weak::upgrade);
        let id = match live {
            Some(id) => id,
            None => match create() {
                None => return Ok(None),
                Some(Err(e)) => return Err(e),
                Some(Ok(id)) => {
                    let id = Arc::new(id);
                    maps.by_inode.insert(ino, Arc::downgrade(&id));
                    id
                }
            },
        };
        // A handle number is not reused before its release, so nothing is replaced here;
        // if a filesystem broke that, the old reference would simply be dropped.
        maps.by_handle.insert(fh, Arc::clone(&id));
        Ok(Some(id))
    }

    /// Drops handle `fh`'s reference and returns it, so that the caller can drop it
    /// outside the lock (dropping the last `BackingId` makes an ioctl).
    fn detach(&self, ino: u64, fh: u64) -> Option<Arc<T>> {
        let mut maps = self.inner.lock();
        let id = maps.by_handle.remove(&fh)?;
        // Ours is the last strong reference: forget the inode's entry (a concurrent open
        // re-registers, which is correct once the kernel has released the old one).
        if Arc::strong_count(&id) == 1 {
            maps.by_inode.remove(&ino);
        }
        Some(id)
    }

    #[cfg(test)]
    fn len(&self) -> (usize, usize) {
        let maps = self.inner.lock();
        (maps.by_inode.len(), maps.by_handle.len())
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
    if o.no_flush {
        // The kernel still writes back dirty pages on close when the writeback cache is
        // on (it ignores NOFLUSH then), so no data waits for a FLUSH we skip.
        f |= FopenFlags::FOPEN_NOFLUSH;
    }
    f
}

fn set_time(t: TimeOrNow) -> SetTime {
    match t {
        TimeOrNow::Now => SetTime::Now,
        TimeOrNow::SpecificTime(t) => SetTime::At(t),
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

/// Pours entries with attributes into a READDIRPLUS reply. The kernel counts a lookup
/// for each entry taken, and so does the filesystem (it sees `add` return `false`).
struct PlusSink<'r> {
    reply: &'r mut ReplyDirectoryPlus,
    ttl: Duration,
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
        self.reply
            .add(fattr.ino, offset, e.name, &self.ttl, &fattr, GENERATION)
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
        // A filesystem that clears setuid/setgid and file capabilities itself takes that
        // job from the kernel, which otherwise reads `security.capability` before every
        // write (a GETXATTR round trip per write(2)) and sets SB_NOSEC only with this.
        if self.fs.capabilities().kills_privileges
            && config
                .add_capabilities(InitFlags::FUSE_HANDLE_KILLPRIV_V2)
                .is_err()
        {
            tracing::debug!("the kernel does not offer FUSE capability handle_killpriv_v2");
        }
        let kernel = config.capabilities();
        // Passthrough also needs a stacking depth the kernel accepts.
        let kernel_passthrough = kernel.contains(InitFlags::FUSE_PASSTHROUGH)
            && config.set_max_stack_depth(MAX_STACK_DEPTH).is_ok();
        let kernel_writeback = kernel.contains(InitFlags::FUSE_WRITEBACK_CACHE);
        let Ok(plan) = negotiate(
            self.want_passthrough,
            self.want_writeback,
            kernel_passthrough,
            kernel_writeback,
        ) else {
            self.startup
                .passthrough_unsupported
                .store(true, Ordering::SeqCst);
            // The session ends here and `mount` reports why.
            return Err(io::Error::from_raw_os_error(libc::ENOTSUP));
        };
        if plan.passthrough {
            // Offered by the kernel (checked above), so this cannot fail.
            let _ = config.add_capabilities(InitFlags::FUSE_PASSTHROUGH);
        } else {
            // The depth is only sent with FUSE_PASSTHROUGH; reset it anyway for clarity.
            let _ = config.set_max_stack_depth(0);
        }
        if plan.passthrough_missing {
            tracing::info!(
                "the kernel does not support FUSE passthrough (Linux 6.9+); file data goes \
                 through the daemon"
            );
        }
        if plan.writeback_dropped {
            tracing::info!(
                "writeback_cache is off for this mount: FUSE passthrough is on, and the kernel \
                 does not combine the two (set passthrough = \"off\" to get the writeback cache)"
            );
        }
        if plan.writeback {
            let _ = config.add_capabilities(InitFlags::FUSE_WRITEBACK_CACHE);
            self.writeback = true;
        } else if self.want_writeback && !kernel_writeback {
            tracing::warn!(
                "the kernel does not support the FUSE writeback cache; writes go through uncached"
            );
        }
        *self.passthrough.get_mut() = plan.passthrough;
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
            passthrough = plan.passthrough,
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

    fn forget(&self, _req: &Request, i: INodeNo, nlookup: u64) {
        self.forget_inode(i, nlookup);
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
        let o = match self.with_open_flags(flags.0, |f| self.fs.open(&ctx, ino(i), f)) {
            Ok(o) => o,
            Err(e) => return reply.error(self.fail("open", e)),
        };
        match self.backing_for(ino(i), o.fh, |fd| reply.open_backing(fd)) {
            Some(id) => reply.opened_passthrough(
                FileHandle(o.fh.0),
                fopen_flags(&o) & PASSTHROUGH_FOPEN_MASK,
                &id,
            ),
            None => reply.opened(FileHandle(o.fh.0), fopen_flags(&o)),
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
        let res = self.fs.release(&ctx(req), ino(i), fh(h));
        // The kernel is done with this handle; its share of the backing file goes (the
        // last share closes it in the kernel).
        drop(self.backing.detach(i.0, h.0));
        match res {
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
        let (a, o) = match res {
            Ok(v) => v,
            Err(e) => return reply.error(self.fail("create", e)),
        };
        let ttl = self.single_ttl();
        let attr = convert::file_attr(&a);
        match self.backing_for(a.ino, o.fh, |fd| reply.open_backing(fd)) {
            Some(id) => reply.created_passthrough(
                &ttl,
                &attr,
                GENERATION,
                FileHandle(o.fh.0),
                fopen_flags(&o) & PASSTHROUGH_FOPEN_MASK,
                &id,
            ),
            None => reply.created(&ttl, &attr, GENERATION, FileHandle(o.fh.0), fopen_flags(&o)),
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

    /// memfs that records every FORGET it receives.
    struct Forgets {
        inner: vmount_core::memfs::MemFs,
        seen: Mutex<Vec<(u64, u64)>>,
    }

    impl Vfs for Forgets {
        fn capabilities(&self) -> vmount_core::Capabilities {
            self.inner.capabilities()
        }
        fn lookup(&self, ctx: &Ctx, parent: Ino, name: &OsStr) -> vmount_core::VfsResult<Attr> {
            self.inner.lookup(ctx, parent, name)
        }
        fn forget(&self, ino: Ino, nlookup: u64) {
            self.seen.lock().push((ino.0, nlookup));
        }
        fn getattr(&self, ctx: &Ctx, ino: Ino, fh: Option<Fh>) -> vmount_core::VfsResult<Attr> {
            self.inner.getattr(ctx, ino, fh)
        }
        fn setattr(
            &self,
            ctx: &Ctx,
            ino: Ino,
            set: &SetAttr,
            fh: Option<Fh>,
        ) -> vmount_core::VfsResult<Attr> {
            self.inner.setattr(ctx, ino, set, fh)
        }
        fn mkdir(
            &self,
            ctx: &Ctx,
            parent: Ino,
            name: &OsStr,
            mode: u32,
        ) -> vmount_core::VfsResult<Attr> {
            self.inner.mkdir(ctx, parent, name, mode)
        }
        fn unlink(&self, ctx: &Ctx, parent: Ino, name: &OsStr) -> vmount_core::VfsResult<()> {
            self.inner.unlink(ctx, parent, name)
        }
        fn rmdir(&self, ctx: &Ctx, parent: Ino, name: &OsStr) -> vmount_core::VfsResult<()> {
            self.inner.rmdir(ctx, parent, name)
        }
        fn rename(
            &self,
            ctx: &Ctx,
            parent: Ino,
            name: &OsStr,
            new_parent: Ino,
            new_name: &OsStr,
            flags: vmount_core::RenameFlags,
        ) -> vmount_core::VfsResult<()> {
            self.inner
                .rename(ctx, parent, name, new_parent, new_name, flags)
        }
        fn open(&self, ctx: &Ctx, ino: Ino, flags: OpenFlags) -> vmount_core::VfsResult<Opened> {
            self.inner.open(ctx, ino, flags)
        }
        fn create(
            &self,
            ctx: &Ctx,
            parent: Ino,
            name: &OsStr,
            mode: u32,
            flags: OpenFlags,
        ) -> vmount_core::VfsResult<(Attr, Opened)> {
            self.inner.create(ctx, parent, name, mode, flags)
        }
        fn read(
            &self,
            ctx: &Ctx,
            ino: Ino,
            fh: Option<Fh>,
            offset: u64,
            buf: &mut [u8],
        ) -> vmount_core::VfsResult<usize> {
            self.inner.read(ctx, ino, fh, offset, buf)
        }
        fn write(
            &self,
            ctx: &Ctx,
            ino: Ino,
            fh: Option<Fh>,
            offset: u64,
            data: &[u8],
        ) -> vmount_core::VfsResult<u32> {
            self.inner.write(ctx, ino, fh, offset, data)
        }
        fn release(&self, ctx: &Ctx, ino: Ino, fh: Fh) -> vmount_core::VfsResult<()> {
            self.inner.release(ctx, ino, fh)
        }
        fn opendir(&self, ctx: &Ctx, ino: Ino, flags: OpenFlags) -> vmount_core::VfsResult<Fh> {
            self.inner.opendir(ctx, ino, flags)
        }
        fn readdir(
            &self,
            ctx: &Ctx,
            ino: Ino,
            fh: Option<Fh>,
            after: u64,
            sink: &mut dyn DirSink,
        ) -> vmount_core::VfsResult<()> {
            self.inner.readdir(ctx, ino, fh, after, sink)
        }
        fn releasedir(&self, ctx: &Ctx, ino: Ino, fh: Fh) -> vmount_core::VfsResult<()> {
            self.inner.releasedir(ctx, ino, fh)
        }
        fn statfs(&self, ctx: &Ctx, ino: Ino) -> vmount_core::VfsResult<vmount_core::StatFs> {
            self.inner.statfs(ctx, ino)
        }
        fn access(
            &self,
            ctx: &Ctx,
            ino: Ino,
            mask: vmount_core::AccessMask,
        ) -> vmount_core::VfsResult<()> {
            self.inner.access(ctx, ino, mask)
        }
    }

    #[test]
    fn forgets_pass_through_unchanged() {
        let fs = Arc::new(Forgets {
            inner: vmount_core::memfs::MemFs::new(Default::default()),
            seen: Mutex::new(Vec::new()),
        });
        let adapter = Adapter::new(
            fs.clone(),
            &FuseOptions::default(),
            Passthrough::Off,
            Arc::default(),
        );
        // Counts the kernel got from READDIRPLUS are the filesystem's too: nothing is
        // held back, split or merged.
        adapter.forget_inode(INodeNo(5), 3);
        adapter.forget_inode(INodeNo(5), 1);
        adapter.forget_inode(INodeNo(21), u64::MAX);
        assert_eq!(*fs.seen.lock(), [(5, 3), (5, 1), (21, u64::MAX)]);
    }

    #[test]
    fn passthrough_and_writeback_are_never_both_asked_for() {
        use Passthrough::{Auto, Off, On};
        let n = |mode, wb, kp, kw| negotiate(mode, wb, kp, kw);
        // Auto: passthrough when the kernel has it, and then it wins over writeback.
        let got = n(Auto, true, true, true).unwrap();
        assert!(got.passthrough && !got.writeback && got.writeback_dropped);
        let got = n(Auto, false, true, true).unwrap();
        assert!(got.passthrough && !got.writeback && !got.writeback_dropped);
        let got = n(Auto, true, false, true).unwrap();
        assert!(!got.passthrough && got.writeback && got.passthrough_missing);
        // On: required.
        assert!(n(On, false, false, true).is_err());
        let got = n(On, false, true, true).unwrap();
        assert!(got.passthrough && !got.passthrough_missing);
        // Off: writeback as asked, if the kernel has it.
        let got = n(Off, true, true, true).unwrap();
        assert!(!got.passthrough && got.writeback && !got.writeback_dropped);
        assert!(!n(Off, true, true, false).unwrap().writeback);
        assert!(!n(Off, false, true, true).unwrap().passthrough_missing);
        for mode in [Auto, On, Off] {
            for bits in 0..8u8 {
                if let Ok(got) = n(mode, bits & 1 != 0, bits & 2 != 0, bits & 4 != 0) {
                    assert!(!(got.passthrough && got.writeback), "{mode:?} {bits}");
                }
            }
        }
    }

    #[test]
    fn backing_files_are_shared_per_inode_and_freed_on_last_release() {
        let table = BackingTable::<u32>::default();
        let made = std::cell::Cell::new(0);
        let make = |v: u32| {
            made.set(made.get() + 1);
            Some(Ok::<_, ()>(v))
        };
        let a = table.attach(7, 100, || make(1)).unwrap().unwrap();
        // A second open of the same inode reuses it: `create` is not called.
        let b = table
            .attach(7, 101, || -> Option<Result<u32, ()>> {
                panic!("must reuse")
            })
            .unwrap()
            .unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let c = table.attach(8, 102, || make(2)).unwrap().unwrap();
        assert_eq!(*c, 2);
        assert_eq!(made.get(), 2);
        drop((a, b, c));
        assert_eq!(table.len(), (2, 3));
        // Releasing one of two handles keeps the inode's backing.
        assert!(table.detach(7, 100).is_some());
        assert_eq!(table.len(), (2, 2));
        let last = table.detach(7, 101).unwrap();
        assert_eq!(
            Arc::strong_count(&last),
            1,
            "the caller drops the last reference"
        );
        assert_eq!(table.len(), (1, 1));
        drop(last);
        // Unknown handles (opened without passthrough) are ignored.
        assert!(table.detach(9, 999).is_none());
        // No host file, or a failed registration: the handle stays unbacked.
        assert!(
            table
                .attach(9, 103, || None::<Result<u32, ()>>)
                .unwrap()
                .is_none()
        );
        assert!(table.attach(9, 104, || Some(Err::<u32, _>("no"))).is_err());
        assert_eq!(table.len(), (1, 1));
        // A new open after the last release registers afresh.
        let d = table.attach(7, 105, || make(3)).unwrap().unwrap();
        assert_eq!((*d, made.get()), (3, 3));
        drop(d);
        assert!(table.detach(8, 102).is_some());
        assert!(table.detach(7, 105).is_some());
        assert_eq!(table.len(), (0, 0));
    }

    #[test]
    fn xattr_lists_are_nul_terminated() {
        let names = [OsString::from("user.a"), OsString::from("user.bc")];
        assert_eq!(xattr_list(&names), b"user.a\0user.bc\0");
        assert!(xattr_list(&[]).is_empty());
    }
}
