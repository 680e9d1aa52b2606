//! What every FUSE request does, independent of how it arrived.
//!
//! Requests reach vmount through two transports: fuser's `/dev/fuse` loop (every OS,
//! and Linux without FUSE-over-io_uring) and, on Linux, vmount's own io_uring queues
//! ([`crate::uring`]). Both call the methods of [`Ops`] with decoded arguments and turn
//! the result into their own reply, so the semantics (validation, errno choice,
//! passthrough bookkeeping, directory offsets) exist once.
//!
//! Each method converts its arguments with the functions of [`crate::convert`], makes
//! one trait call and returns; nothing a client sends reaches an `unwrap`, and every
//! arithmetic step on client offsets is checked, so no panic can unwind into a
//! transport's loop (which would take the whole mount down).

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, SystemTime};

use fuser::{Errno, FileAttr, FopenFlags, TimeOrNow};
use parking_lot::{Condvar, Mutex};
use vmount_core::{
    Attr, Ctx, DirEntry, DirSink, Fh, FileType, Ino, OpenFlags, Opened, SetAttr, SetTime, Vfs,
    VfsError,
};

use crate::convert::{self, DirPos};
use crate::{FuseOptions, IoUring, Passthrough};

/// Largest single write the kernel may send (FUSE's `max_write`).
pub(crate) const MAX_WRITE: u32 = 1 << 20;
/// Largest readahead we ask for; the kernel caps it at what it offered.
pub(crate) const MAX_READAHEAD: u32 = 1 << 20;
/// Pending background requests (readahead, writeback) the kernel may queue.
pub(crate) const MAX_BACKGROUND: u16 = 64;
/// Filesystem stacking depth announced with passthrough. 2 (the kernel's maximum) lets the
/// backing files live on a stacked filesystem themselves (overlayfs, as in most
/// containers), at the price that this mount cannot be a layer of another overlayfs.
pub(crate) const MAX_STACK_DEPTH: u32 = 2;
/// The open flags the kernel accepts together with FOPEN_PASSTHROUGH (KEEP_CACHE, for one,
/// makes the open fail with EINVAL: there is no page cache of our own to keep).
const PASSTHROUGH_FOPEN_MASK: FopenFlags =
    FopenFlags::FOPEN_DIRECT_IO.union(FopenFlags::FOPEN_NOFLUSH);

/// What a request gets back: a value or the errno to reply with.
pub(crate) type OpResult<T> = Result<T, Errno>;

/// What a LOOKUP found.
#[derive(Debug)]
pub(crate) enum Looked {
    /// The name's entry, cached for the entry and attribute TTLs.
    Found(FileAttr),
    /// No such name. The reply is an entry with node id 0, which the kernel keeps as a
    /// negative dentry for [`Ops::negative_ttl`]: a create right after a failed `stat`
    /// (git checks every path it is about to write) and paths probed again and again
    /// (include and import paths, `$PATH`, git's `.gitattributes` in every directory) then
    /// cost no round trip. Anything created through the mount replaces the dentry at
    /// once; a name created behind the filesystem's back shows when the negative entry
    /// expires, or at once where the filesystem reports it (a watched loopback).
    Absent,
}

impl Looked {
    /// What both transports put in the entry reply: the attributes, their lifetime and
    /// the entry's (for an absent name node id 0 and the negative lifetime).
    pub(crate) fn reply(self, ops: &Ops) -> (FileAttr, Duration, Duration) {
        match self {
            Looked::Found(a) => (a, ops.attr_ttl, ops.entry_ttl),
            Looked::Absent => (Looked::absent_attr(), Duration::ZERO, ops.negative_ttl),
        }
    }

    /// The node id 0 "entry" of an absent name: the kernel reads nothing else of it.
    fn absent_attr() -> FileAttr {
        FileAttr {
            ino: fuser::INodeNo(0),
            size: 0,
            blocks: 0,
            atime: std::time::UNIX_EPOCH,
            mtime: std::time::UNIX_EPOCH,
            ctime: std::time::UNIX_EPOCH,
            crtime: std::time::UNIX_EPOCH,
            kind: fuser::FileType::RegularFile,
            perm: 0,
            nlink: 0,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 0,
            flags: 0,
        }
    }
}

/// Whether a SETATTR only hands over the times the kernel keeps for a regular file under
/// the writeback cache (it carries a ctime, which Linux sends for nothing else).
///
/// The kernel sends them for a file it has just unlinked, too (`fuse_update_ctime` on the
/// victim), and for one it writes back after the last close; by then the filesystem may
/// have freed the file (no links, no open handles) and answers `Stale`. The kernel records
/// that failure against the whole superblock (`mapping_set_error`), so every later
/// `syncfs` on the mount failed with ESTALE once per descriptor: after each unlink of a
/// closed file, 50 of 50 `syncfs` calls in a test, and `stress-ng --io` failed beside any
/// stressor that removes files. Times set on a freed file can be seen by nobody, so the
/// call succeeds instead (see [`freed_file_attr`]).
fn is_times_of_freed_file(set: &SetAttr) -> bool {
    set.ctime.is_some()
        && set.mode.is_none()
        && set.uid.is_none()
        && set.gid.is_none()
        && set.size.is_none()
}

/// The attributes answered for a time update of a freed regular file: no links, no data,
/// no permissions, and the times asked for. The kernel ignores them when it flushes times
/// itself (`fuse_flush_times`); a caller that reaches the freed file another way (an
/// `O_PATH` descriptor) sees it as what it is, an empty file nobody can open. The kind
/// must stay a regular file, as only those carry a ctime here: another kind would make the
/// kernel mark its inode bad.
fn freed_file_attr(ino: u64, set: &SetAttr) -> FileAttr {
    let ctime = set.ctime.unwrap_or_else(SystemTime::now);
    let mtime = match set.mtime {
        Some(SetTime::At(t)) => t,
        Some(SetTime::Now) | None => ctime,
    };
    let atime = match set.atime {
        Some(SetTime::At(t)) => t,
        Some(SetTime::Now) => ctime,
        None => mtime,
    };
    FileAttr {
        ino: fuser::INodeNo(ino),
        atime,
        mtime,
        ctime,
        crtime: ctime,
        ..Looked::absent_attr()
    }
}

/// The transport-neutral handlers of one mount's requests.
pub(crate) struct Ops {
    fs: Arc<dyn Vfs>,
    pub(crate) attr_ttl: Duration,
    pub(crate) entry_ttl: Duration,
    /// How long the kernel may remember that a name does not exist (zero: not at all).
    pub(crate) negative_ttl: Duration,
    pub(crate) want_writeback: bool,
    /// Whether FUSE_WRITEBACK_CACHE was negotiated (set once in `init`).
    writeback: AtomicBool,
    pub(crate) want_passthrough: Passthrough,
    /// Whether opens may register backing files: FUSE_PASSTHROUGH was negotiated in `init`,
    /// and cleared for good if the kernel later refuses registration (EPERM).
    passthrough: AtomicBool,
    /// Whether the filesystem took this connection's [`DeviceRegistry`]: only then are its
    /// backing ids this connection's (one filesystem may be mounted more than once).
    registry_taken: AtomicBool,
    pub(crate) want_uring: IoUring,
    /// Whether FUSE_OVER_IO_URING was negotiated in `init`.
    uring: AtomicBool,
    /// Whether directory listings may be cached by the kernel (see [`Ops::opendir`]).
    cache_dirs: AtomicBool,
    /// Whether an open of a directory needs no permission check by the filesystem: the
    /// kernel checks (`default_permissions`), or the only user who may reach the mount is
    /// root, who may read every directory (see [`Ops::opendir`]).
    dirs_open_unchecked: bool,
    /// Whether OPENDIR is answered with ENOSYS, so that the kernel stops sending OPENDIR
    /// and RELEASEDIR (see [`Ops::opendir`]); set once in `init`.
    no_opendir: AtomicBool,
    /// Set once the io_uring queues serve every request: `/dev/fuse` then carries only
    /// FORGETs (and INTERRUPTs, which fuser refuses once), see [`Ops::pace_forgets`].
    forgets_only: AtomicBool,
    /// Backing files of passthrough opens.
    backing: BackingTable<Backing>,
    /// The connection's `/dev/fuse` descriptor (a duplicate of fuser's), set once the
    /// handshake is done: backing files are registered on it and the io_uring queues
    /// submit their commands on it.
    device: OnceLock<Arc<OwnedFd>>,
    /// Set in `init` when `passthrough = on` cannot be honoured, so that `mount` can say
    /// why the session ended.
    pub(crate) startup: Arc<StartupFailure>,
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
pub(crate) struct Negotiation {
    pub(crate) passthrough: bool,
    pub(crate) writeback: bool,
    /// Writeback was wanted but dropped in favour of passthrough.
    pub(crate) writeback_dropped: bool,
    /// Passthrough was wanted (auto) but the kernel lacks it.
    pub(crate) passthrough_missing: bool,
}

/// Decides passthrough and writeback cache, which the kernel never enables together (it
/// disables passthrough on a writeback-cache mount): passthrough wins. `Err` when
/// `passthrough = on` cannot be honoured.
pub(crate) fn negotiate(
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

/// An open answered: the handle, its FOPEN flags, and the backing file's kernel id when
/// the kernel is to serve its data itself (FUSE passthrough).
#[derive(Debug, Clone, Copy)]
pub(crate) struct OpenOut {
    pub(crate) fh: u64,
    pub(crate) flags: FopenFlags,
    pub(crate) backing_id: Option<u32>,
}

/// A getxattr/listxattr answer: `size` 0 asks for the length only.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum XattrOut {
    Size(u32),
    Data(Vec<u8>),
}

/// Where READDIR entries go: a reply buffer of the transport's.
pub(crate) trait DirOut {
    /// Adds an entry; `true` when the reply is full and the entry was not taken.
    fn add(&mut self, ino: u64, offset: u64, kind: fuser::FileType, name: &OsStr) -> bool;
}

/// Where READDIRPLUS entries go.
pub(crate) trait DirPlusOut {
    /// Adds an entry with its attributes; `true` when full and not taken.
    fn add(&mut self, offset: u64, name: &OsStr, ttl: Duration, attr: &FileAttr) -> bool;
}

impl Ops {
    /// `passthrough` is the mode after `mount`'s privilege check (Auto becomes Off without
    /// CAP_SYS_ADMIN); `startup` is shared with `mount`.
    pub(crate) fn new(
        fs: Arc<dyn Vfs>,
        opts: &FuseOptions,
        passthrough: Passthrough,
        startup: Arc<StartupFailure>,
    ) -> Ops {
        Ops {
            // Every request is one trait call, counted for `vmount status` and the
            // metrics endpoint (see `vmount_core::stats`).
            fs: Arc::new(vmount_core::stats::Recorded::new(
                fs,
                vmount_core::stats::global(),
            )),
            attr_ttl: opts.attr_timeout,
            entry_ttl: opts.entry_timeout,
            // macFUSE caches negative entries only with its own mount option; a node id 0
            // reply is Linux's protocol.
            negative_ttl: if cfg!(target_os = "linux") {
                opts.negative_timeout
            } else {
                Duration::ZERO
            },
            want_writeback: opts.writeback_cache,
            writeback: AtomicBool::new(false),
            want_passthrough: passthrough,
            passthrough: AtomicBool::new(false),
            registry_taken: AtomicBool::new(false),
            want_uring: opts.io_uring,
            uring: AtomicBool::new(false),
            cache_dirs: AtomicBool::new(false),
            dirs_open_unchecked: opts.default_permissions
                || (!opts.allow_other && crate::mount::is_root()),
            no_opendir: AtomicBool::new(false),
            forgets_only: AtomicBool::new(false),
            backing: BackingTable::default(),
            device: OnceLock::new(),
            startup,
            unimplemented: Mutex::new(HashSet::new()),
        }
    }

    /// Whether the filesystem clears setuid/setgid and capabilities itself on writes.
    pub(crate) fn kills_privileges(&self) -> bool {
        self.fs.capabilities().kills_privileges
    }

    /// Records what `init` negotiated. `auto_inval_data`: the kernel compares a
    /// directory's mtime before serving a cached listing (FUSE_AUTO_INVAL_DATA).
    /// `kernel_no_opendir`: the kernel takes ENOSYS for OPENDIR as "no directory handles"
    /// (FUSE_NO_OPENDIR_SUPPORT, Linux 5.1+).
    pub(crate) fn negotiated(
        &self,
        plan: &Negotiation,
        uring: bool,
        auto_inval_data: bool,
        kernel_no_opendir: bool,
    ) {
        self.writeback.store(plan.writeback, Ordering::Relaxed);
        self.passthrough.store(plan.passthrough, Ordering::Relaxed);
        self.offer_registry();
        self.uring.store(uring, Ordering::Relaxed);
        let cache_dirs = auto_inval_data && !self.attr_ttl.is_zero();
        self.cache_dirs.store(cache_dirs, Ordering::Relaxed);
        self.no_opendir.store(
            cfg!(target_os = "linux")
                && kernel_no_opendir
                && cache_dirs
                && self.dirs_open_unchecked,
            Ordering::Relaxed,
        );
    }

    /// The handle a directory request names: none where OPENDIR is not used (the kernel
    /// then sends 0), and the filesystem lists statelessly, as it does for NFS.
    fn dir_handle(&self, fh: u64) -> Option<Fh> {
        if self.no_opendir.load(Ordering::Relaxed) {
            None
        } else {
            Some(Fh(fh))
        }
    }

    pub(crate) fn writeback(&self) -> bool {
        self.writeback.load(Ordering::Relaxed)
    }

    /// Whether FUSE_OVER_IO_URING was negotiated: the io_uring queues are to be started.
    #[cfg(target_os = "linux")]
    pub(crate) fn uring_negotiated(&self) -> bool {
        self.uring.load(Ordering::Relaxed)
    }

    /// Records that the io_uring queues serve the requests from now on.
    #[cfg(target_os = "linux")]
    pub(crate) fn queues_serving(&self) {
        self.forgets_only.store(true, Ordering::Relaxed);
    }

    /// Called by a `/dev/fuse` worker after each FORGET, with when the FORGET reached it:
    /// while the io_uring queues serve everything else, a worker that has just taken a
    /// FORGET from a read of its own naps 1 ms, so that the kernel gathers the FORGETs
    /// meanwhile and sends them as one BATCH_FORGET, and no worker sits in `read` to be
    /// woken for each one.
    ///
    /// Why: the kernel wakes a `/dev/fuse` reader for every FORGET it queues, and on an
    /// idle CPU that is a cross-CPU wakeup per forgotten inode, paid partly by the process
    /// whose unlink or close dropped the inode. "From a read of its own" is told by time:
    /// fuser hands a batch's nodes over one after another with no gap, while a FORGET
    /// after a read has at least the read's microseconds before it; so the first node of
    /// each read naps (a batch's rest then waits that millisecond, which costs nothing).
    /// The gap runs from the previous FORGET's end to this one's arrival, not between
    /// their ends: a forget that closes a removed host file takes tens of microseconds,
    /// and measured end to end every node of a batch napped (a millisecond per removed
    /// file, seconds of forgets behind an `rm -rf`, which slowed a `git clone` started
    /// after it 3-5x while they closed files beside it).
    /// Deleting 10,000 memfs files took 0.26 s with a wakeup each and 0.22 s with a nap
    /// at most every 2 ms per worker, the rule before this one, which still left the
    /// other worker in `read` about half the time. Side by side with this rule:
    /// 4,600-5,500 reads and 16.7-17.1 µs per delete against 250-290 reads and
    /// 13.2-13.6 µs. Nothing waits for a FORGET (it only lets the filesystem drop an inode
    /// it no longer has to keep), so the delay costs nothing but that memory for that
    /// long. Interrupts, which come the same way, wait at most the millisecond while both
    /// workers nap.
    pub(crate) fn pace_forgets(&self, arrived: std::time::Instant) {
        use std::cell::Cell;
        use std::time::Instant;
        thread_local! {
            /// When this worker last finished with a FORGET.
            static LAST_FORGET: Cell<Option<Instant>> = const { Cell::new(None) };
        }
        if !self.forgets_only.load(Ordering::Relaxed) {
            return;
        }
        LAST_FORGET.with(|last| {
            if last
                .get()
                .is_none_or(|t| arrived.saturating_duration_since(t) >= FORGET_BATCH_GAP)
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            last.set(Some(Instant::now()));
        });
    }

    /// Hands over the connection's descriptor once the handshake is done.
    pub(crate) fn set_device(&self, fd: OwnedFd) {
        let _ = self.device.set(Arc::new(fd));
        self.offer_registry();
    }

    /// Gives the filesystem a registry for its host files once both the handshake
    /// agreed to passthrough and the connection's descriptor is here (whichever comes
    /// last; the filesystem keeps the first it gets).
    fn offer_registry(&self) {
        if self.passthrough.load(Ordering::Relaxed)
            && let Some(device) = self.device.get()
            && self.fs.use_backing_registry(Arc::new(DeviceRegistry {
                device: Arc::downgrade(device),
            }))
        {
            self.registry_taken.store(true, Ordering::Relaxed);
        }
    }

    #[cfg(target_os = "linux")]
    pub(crate) fn device(&self) -> Option<&Arc<OwnedFd>> {
        self.device.get()
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

    /// The single TTL of replies that carry one for both an entry and its attributes.
    pub(crate) fn single_ttl(&self) -> Duration {
        convert::combined_ttl(self.attr_ttl, self.entry_ttl)
    }

    /// Open flags as the filesystem should see them. With the writeback cache the kernel
    /// reads through write-only handles (to fill partial pages) and implements O_APPEND
    /// itself from its cached size, so a write-only open asks for read access too and
    /// APPEND is dropped (the same adjustment libfuse's passthrough examples make).
    fn fs_open_flags(&self, raw: i32) -> OpenFlags {
        let mut flags = convert::open_flags(raw);
        if self.writeback() {
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

    /// How the new open handle `fh` of `ino` is served (see [`Io`]): through a backing
    /// file if passthrough is on, the filesystem offers a host descriptor for this handle
    /// and no open of the inode uses the page cache; else through the daemon, without the
    /// page cache while the inode has a passthrough open.
    fn io_for(&self, ino: Ino, fh: Fh, direct_io: bool) -> Io<Backing> {
        if !self.passthrough.load(Ordering::Relaxed) {
            return Io::Cached;
        }
        // Asked for every open, also when the inode has a backing file already: the
        // filesystem may refuse passthrough to this one handle (memfs does for a
        // non-root writer of a setuid file, whose writes must reach it to clear the bit).
        let id = if self.registry_taken.load(Ordering::Relaxed) {
            self.fs.backing_id(ino, fh)
        } else {
            None
        };
        let offered = match id {
            Some(id) => Some(Offer::Id(id)),
            None => self.fs.passthrough_fd(ino, fh).map(Offer::Fd),
        };
        let (io, failed) = self
            .backing
            .attach(ino.0, fh.0, offered, direct_io, |offer| {
                let fd = match offer {
                    Offer::Id(id) => return Ok(Backing::borrowed(id)),
                    Offer::Fd(fd) => fd,
                };
                let Some(dev) = self.device.get() else {
                    // Only before the handshake hands the descriptor over (tests).
                    let e = io::Error::from_raw_os_error(libc::ENOTCONN);
                    return Err((RegisterError::Other, e));
                };
                Backing::open(dev, &fd).map_err(|e| (fd_error(&e), e))
            });
        let Some((why, e)) = failed else {
            return io;
        };
        if why == RegisterError::NotPermitted {
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
        } else {
            tracing::debug!(
                ino = ino.0,
                error = %e,
                "passthrough refused for this file; serving it through the daemon"
            );
        }
        io
    }

    /// The reply to an open the filesystem made, or ETXTBSY (the filesystem's handle
    /// released again) when the kernel could not take it beside the inode's other opens.
    fn opened(&self, ctx: &Ctx, ino: Ino, o: &Opened) -> OpResult<OpenOut> {
        let flags = fopen_flags(o);
        Ok(match self.io_for(ino, o.fh, o.direct_io) {
            Io::Passthrough(b) => OpenOut {
                fh: o.fh.0,
                flags: (flags & PASSTHROUGH_FOPEN_MASK) | FopenFlags::FOPEN_PASSTHROUGH,
                backing_id: Some(b.id),
            },
            Io::Cached | Io::Direct => OpenOut {
                fh: o.fh.0,
                flags,
                backing_id: None,
            },
            Io::Busy => {
                if let Err(e) = self.fs.release(ctx, ino, o.fh) {
                    tracing::debug!(ino = ino.0, error = %e, "releasing a refused open failed");
                }
                return Err(Errno::from_i32(libc::ETXTBSY));
            }
        })
    }

    /// LOOKUP. A missing name is answered as an entry with node id 0 when negative
    /// entries may be cached ([`Looked::Absent`]), else with ENOENT.
    pub(crate) fn lookup(&self, ctx: &Ctx, parent: u64, name: &OsStr) -> OpResult<Looked> {
        match self.fs.lookup(ctx, Ino(parent), name) {
            Ok(a) => Ok(Looked::Found(convert::file_attr(&a))),
            Err(VfsError::NotFound) if !self.negative_ttl.is_zero() => Ok(Looked::Absent),
            Err(e) => Err(self.fail("lookup", e)),
        }
    }

    /// FORGET: the filesystem counted every reference the kernel drops here (READDIRPLUS
    /// entries included), so the count goes through unchanged.
    pub(crate) fn forget(&self, ino: u64, nlookup: u64) {
        self.fs.forget(Ino(ino), nlookup);
    }

    pub(crate) fn getattr(&self, ctx: &Ctx, ino: u64, fh: Option<u64>) -> OpResult<FileAttr> {
        self.fs
            .getattr(ctx, Ino(ino), fh.map(Fh))
            .map(|a| convert::file_attr(&a))
            .map_err(|e| self.fail("getattr", e))
    }

    pub(crate) fn setattr(
        &self,
        ctx: &Ctx,
        ino: u64,
        set: &SetAttr,
        fh: Option<u64>,
    ) -> OpResult<FileAttr> {
        match self.fs.setattr(ctx, Ino(ino), set, fh.map(Fh)) {
            Ok(a) => Ok(convert::file_attr(&a)),
            Err(VfsError::Stale) if cfg!(target_os = "linux") && is_times_of_freed_file(set) => {
                Ok(freed_file_attr(ino, set))
            }
            Err(e) => Err(self.fail("setattr", e)),
        }
    }

    pub(crate) fn readlink(&self, ctx: &Ctx, ino: u64) -> OpResult<Vec<u8>> {
        self.fs
            .readlink(ctx, Ino(ino))
            .map_err(|e| self.fail("readlink", e))
    }

    pub(crate) fn mknod(
        &self,
        ctx: &Ctx,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
    ) -> OpResult<FileAttr> {
        let Some(kind) = FileType::from_mode(mode) else {
            return Err(Errno::EINVAL);
        };
        if kind == FileType::Directory {
            // mknod(2) cannot make directories.
            return Err(Errno::EINVAL);
        }
        let perm = convert::masked_mode(mode, umask);
        self.fs
            .mknod(ctx, Ino(parent), name, kind, perm, u64::from(rdev))
            .map(|a| convert::file_attr(&a))
            .map_err(|e| self.fail("mknod", e))
    }

    pub(crate) fn mkdir(
        &self,
        ctx: &Ctx,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
    ) -> OpResult<FileAttr> {
        let perm = convert::masked_mode(mode, umask);
        self.fs
            .mkdir(ctx, Ino(parent), name, perm)
            .map(|a| convert::file_attr(&a))
            .map_err(|e| self.fail("mkdir", e))
    }

    pub(crate) fn unlink(&self, ctx: &Ctx, parent: u64, name: &OsStr) -> OpResult<()> {
        self.fs
            .unlink(ctx, Ino(parent), name)
            .map_err(|e| self.fail("unlink", e))
    }

    pub(crate) fn rmdir(&self, ctx: &Ctx, parent: u64, name: &OsStr) -> OpResult<()> {
        self.fs
            .rmdir(ctx, Ino(parent), name)
            .map_err(|e| self.fail("rmdir", e))
    }

    pub(crate) fn symlink(
        &self,
        ctx: &Ctx,
        parent: u64,
        name: &OsStr,
        target: &OsStr,
    ) -> OpResult<FileAttr> {
        self.fs
            .symlink(ctx, Ino(parent), name, target)
            .map(|a| convert::file_attr(&a))
            .map_err(|e| self.fail("symlink", e))
    }

    pub(crate) fn rename(
        &self,
        ctx: &Ctx,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        flags: u32,
    ) -> OpResult<()> {
        let flags = convert::rename_flags(flags)?;
        self.fs
            .rename(ctx, Ino(parent), name, Ino(new_parent), new_name, flags)
            .map_err(|e| self.fail("rename", e))
    }

    pub(crate) fn link(
        &self,
        ctx: &Ctx,
        ino: u64,
        new_parent: u64,
        new_name: &OsStr,
    ) -> OpResult<FileAttr> {
        self.fs
            .link(ctx, Ino(ino), Ino(new_parent), new_name)
            .map(|a| convert::file_attr(&a))
            .map_err(|e| self.fail("link", e))
    }

    pub(crate) fn open(&self, ctx: &Ctx, ino: u64, flags: i32) -> OpResult<OpenOut> {
        let o = self
            .with_open_flags(flags, |f| self.fs.open(ctx, Ino(ino), f))
            .map_err(|e| self.fail("open", e))?;
        self.opened(ctx, Ino(ino), &o)
    }

    /// Reads into `buf` (as long as the request's size); returns the bytes read.
    pub(crate) fn read(
        &self,
        ctx: &Ctx,
        ino: u64,
        fh: u64,
        offset: u64,
        buf: &mut [u8],
    ) -> OpResult<usize> {
        let size = buf.len();
        self.fs
            .read(ctx, Ino(ino), Some(Fh(fh)), offset, buf)
            .map(|n| n.min(size))
            .map_err(|e| self.fail("read", e))
    }

    pub(crate) fn write(
        &self,
        ctx: &Ctx,
        ino: u64,
        fh: u64,
        offset: u64,
        data: &[u8],
    ) -> OpResult<u32> {
        self.fs
            .write(ctx, Ino(ino), Some(Fh(fh)), offset, data)
            .map_err(|e| self.fail("write", e))
    }

    pub(crate) fn flush(&self, ctx: &Ctx, ino: u64, fh: u64, lock_owner: u64) -> OpResult<()> {
        self.fs
            .flush(ctx, Ino(ino), Fh(fh), lock_owner)
            .map_err(|e| self.fail("flush", e))
    }

    pub(crate) fn release(&self, ctx: &Ctx, ino: u64, fh: u64) -> OpResult<()> {
        let res = self.fs.release(ctx, Ino(ino), Fh(fh));
        // The kernel is done with this handle; its share of the backing file goes (the
        // last share closes it in the kernel).
        drop(self.backing.detach(ino, fh));
        res.map_err(|e| self.fail("release", e))
    }

    pub(crate) fn fsync(&self, ctx: &Ctx, ino: u64, fh: u64, datasync: bool) -> OpResult<()> {
        self.fs
            .fsync(ctx, Ino(ino), Some(Fh(fh)), datasync)
            .map_err(|e| self.fail("fsync", e))
    }

    /// Opens a directory, letting the kernel keep its listing in the page cache
    /// (FOPEN_CACHE_DIR, kept across opens with FOPEN_KEEP_CACHE) where that can never
    /// serve a stale listing for longer than attributes are cached.
    ///
    /// Why: without it every `ls` of a directory lists it again through the daemon; a
    /// second `ls -l` of 10,000 memfs files made 153 READDIRPLUS requests costing 32 ms
    /// of daemon time (3.2 µs per entry, an fstat of each kernel-held file among it).
    /// The kernel drops the cached listing when the directory changes through the mount
    /// (its i_version), when a reported outside change invalidates the directory (the
    /// loopback watcher), and, with FUSE_AUTO_INVAL_DATA, when a refresh of its
    /// attributes at the start of a listing shows another mtime: an outside change then
    /// shows within the attribute timeout, as it does for `stat`. Off with a zero
    /// attribute timeout or without AUTO_INVAL_DATA.
    ///
    /// Where the kernel caches listings and nobody's permission to read a directory needs
    /// checking at its open (see `dirs_open_unchecked`), OPENDIR is answered with ENOSYS:
    /// the kernel then never sends OPENDIR or RELEASEDIR again, treats every directory as
    /// opened with `FOPEN_CACHE_DIR | FOPEN_KEEP_CACHE` (what this answers anyway), and
    /// READDIR comes without a handle, which the filesystem serves statelessly. That saves
    /// two round trips for every directory opened: a warm `find` over 707 cached
    /// directories of a loopback mount took 12.8-13.8 ms with them and 7.9 ms without.
    /// With `allow_other` and no `default_permissions`, another user's open of a directory
    /// it may not read must fail at the open, so OPENDIR stays.
    pub(crate) fn opendir(&self, ctx: &Ctx, ino: u64, flags: i32) -> OpResult<OpenOut> {
        if self.no_opendir.load(Ordering::Relaxed) {
            return Err(Errno::ENOSYS);
        }
        let fh = self
            .fs
            .opendir(ctx, Ino(ino), convert::open_flags(flags))
            .map_err(|e| self.fail("opendir", e))?;
        let flags = if self.cache_dirs.load(Ordering::Relaxed) {
            FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE
        } else {
            FopenFlags::empty()
        };
        Ok(OpenOut {
            fh: fh.0,
            flags,
            backing_id: None,
        })
    }

    pub(crate) fn readdir(
        &self,
        ctx: &Ctx,
        ino: u64,
        fh: u64,
        offset: u64,
        out: &mut dyn DirOut,
    ) -> OpResult<()> {
        // `..` gets the directory's own inode: the parent is not tracked, and the kernel
        // answers `..` lookups itself from its dentry tree.
        let dir = fuser::FileType::Directory;
        let after = match convert::dir_pos(offset) {
            DirPos::Start => {
                if out.add(ino, convert::OFFSET_AFTER_DOT, dir, OsStr::new("."))
                    || out.add(ino, convert::OFFSET_AFTER_DOTDOT, dir, OsStr::new(".."))
                {
                    return Ok(());
                }
                0
            }
            DirPos::AfterDot => {
                if out.add(ino, convert::OFFSET_AFTER_DOTDOT, dir, OsStr::new("..")) {
                    return Ok(());
                }
                0
            }
            DirPos::After(cookie) => cookie,
        };
        let mut sink = PlainSink { out, fault: None };
        let res = self
            .fs
            .readdir(ctx, Ino(ino), self.dir_handle(fh), after, &mut sink);
        finish_listing(
            "readdir",
            ino,
            res.map_err(|e| self.fail("readdir", e)),
            sink.fault,
        )
    }

    pub(crate) fn readdirplus(
        &self,
        ctx: &Ctx,
        ino: u64,
        fh: u64,
        offset: u64,
        out: &mut dyn DirPlusOut,
    ) -> OpResult<()> {
        let ttl = self.single_ttl();
        let pos = convert::dir_pos(offset);
        let after = match pos {
            DirPos::Start | DirPos::AfterDot => {
                // `.` and `..` need attributes in the reply although the kernel ignores
                // them (and counts no lookup for them); the directory's own serve both.
                let dir = self.getattr(ctx, ino, None)?;
                if pos == DirPos::Start
                    && out.add(convert::OFFSET_AFTER_DOT, OsStr::new("."), ttl, &dir)
                {
                    return Ok(());
                }
                if out.add(convert::OFFSET_AFTER_DOTDOT, OsStr::new(".."), ttl, &dir) {
                    return Ok(());
                }
                0
            }
            DirPos::After(cookie) => cookie,
        };
        let mut sink = PlusSink {
            out,
            ttl,
            fault: None,
        };
        let res = self
            .fs
            .readdir(ctx, Ino(ino), self.dir_handle(fh), after, &mut sink);
        finish_listing(
            "readdirplus",
            ino,
            res.map_err(|e| self.fail("readdirplus", e)),
            sink.fault,
        )
    }

    pub(crate) fn releasedir(&self, ctx: &Ctx, ino: u64, fh: u64) -> OpResult<()> {
        self.fs
            .releasedir(ctx, Ino(ino), Fh(fh))
            .map_err(|e| self.fail("releasedir", e))
    }

    pub(crate) fn fsyncdir(&self, ctx: &Ctx, ino: u64, fh: u64, datasync: bool) -> OpResult<()> {
        self.fs
            .fsyncdir(ctx, Ino(ino), self.dir_handle(fh), datasync)
            .map_err(|e| self.fail("fsyncdir", e))
    }

    pub(crate) fn statfs(&self, ctx: &Ctx, ino: u64) -> OpResult<vmount_core::StatFs> {
        self.fs
            .statfs(ctx, Ino(ino))
            .map_err(|e| self.fail("statfs", e))
    }

    pub(crate) fn setxattr(
        &self,
        ctx: &Ctx,
        ino: u64,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        position: u32,
    ) -> OpResult<()> {
        // `position` is macOS's resource-fork offset; vmount has no resource forks.
        if position != 0 {
            return Err(Errno::EINVAL);
        }
        let flags = convert::xattr_flags(flags)?;
        self.fs
            .setxattr(ctx, Ino(ino), name, value, flags)
            .map_err(|e| self.fail("setxattr", e))
    }

    pub(crate) fn getxattr(
        &self,
        ctx: &Ctx,
        ino: u64,
        name: &OsStr,
        size: u32,
    ) -> OpResult<XattrOut> {
        let value = self
            .fs
            .getxattr(ctx, Ino(ino), name)
            .map_err(|e| self.fail("getxattr", e))?;
        xattr_reply(size, value)
    }

    pub(crate) fn listxattr(&self, ctx: &Ctx, ino: u64, size: u32) -> OpResult<XattrOut> {
        let names = self
            .fs
            .listxattr(ctx, Ino(ino))
            .map_err(|e| self.fail("listxattr", e))?;
        xattr_reply(size, xattr_list(&names))
    }

    pub(crate) fn removexattr(&self, ctx: &Ctx, ino: u64, name: &OsStr) -> OpResult<()> {
        self.fs
            .removexattr(ctx, Ino(ino), name)
            .map_err(|e| self.fail("removexattr", e))
    }

    pub(crate) fn access(&self, ctx: &Ctx, ino: u64, mask: i32) -> OpResult<()> {
        self.fs
            .access(ctx, Ino(ino), convert::access_mask(mask))
            .map_err(|e| self.fail("access", e))
    }

    pub(crate) fn create(
        &self,
        ctx: &Ctx,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
    ) -> OpResult<(FileAttr, OpenOut)> {
        let perm = convert::masked_mode(mode, umask);
        let (a, o) = self
            .with_open_flags(flags, |f| self.fs.create(ctx, Ino(parent), name, perm, f))
            .map_err(|e| self.fail("create", e))?;
        let out = self.opened(ctx, a.ino, &o)?;
        Ok((convert::file_attr(&a), out))
    }

    pub(crate) fn fallocate(
        &self,
        ctx: &Ctx,
        ino: u64,
        fh: u64,
        offset: u64,
        length: u64,
        mode: i32,
    ) -> OpResult<()> {
        let mode = convert::fallocate_flags(mode)?;
        if offset
            .checked_add(length)
            .is_none_or(|end| end > i64::MAX as u64)
        {
            return Err(Errno::EFBIG);
        }
        self.fs
            .fallocate(ctx, Ino(ino), Some(Fh(fh)), offset, length, mode)
            .map_err(|e| self.fail("fallocate", e))
    }

    pub(crate) fn lseek(
        &self,
        ctx: &Ctx,
        ino: u64,
        fh: u64,
        offset: i64,
        whence: i32,
    ) -> OpResult<i64> {
        // Under the writeback cache the kernel holds written data the filesystem has not
        // seen, and asks SEEK_DATA and SEEK_HOLE without writing it back first, so the
        // filesystem's answer could put a hole over it (SEEK_DATA at 0 of a file whose
        // data was all still cached: ENXIO, in every run of `stress-ng --seek`). ENOSYS
        // makes the kernel answer from its own size from then on: all data up to the end,
        // as on a filesystem without holes, which is true if coarse.
        if self.writeback() {
            return Err(Errno::ENOSYS);
        }
        let whence = convert::whence(whence)?;
        // A negative start has no data or hole after it (what ext4 and tmpfs answer).
        let Ok(offset) = u64::try_from(offset) else {
            return Err(Errno::ENXIO);
        };
        let found = self
            .fs
            .lseek(ctx, Ino(ino), Some(Fh(fh)), offset, whence)
            .map_err(|e| self.fail("lseek", e))?;
        i64::try_from(found).map_err(|_| Errno::from_i32(libc::EOVERFLOW))
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn copy_file_range(
        &self,
        ctx: &Ctx,
        ino_in: u64,
        fh_in: u64,
        offset_in: u64,
        ino_out: u64,
        fh_out: u64,
        offset_out: u64,
        len: u64,
        flags: u64,
    ) -> OpResult<u32> {
        if flags != 0 {
            return Err(Errno::EINVAL);
        }
        // The reply carries a 32-bit count; the kernel never asks for more, but a short
        // copy is always allowed, so clamp rather than trust it.
        let len = len.min(u64::from(u32::MAX));
        let n = self
            .fs
            .copy_file_range(
                ctx,
                Ino(ino_in),
                Some(Fh(fh_in)),
                offset_in,
                Ino(ino_out),
                Some(Fh(fh_out)),
                offset_out,
                len,
            )
            .map_err(|e| self.fail("copy_file_range", e))?;
        Ok(u32::try_from(n.min(len)).unwrap_or(u32::MAX))
    }
}

/// The longest pause between two FORGETs that fuser hands over from one batch; a longer
/// one means the second came with a read of its own (see [`Ops::pace_forgets`]).
const FORGET_BATCH_GAP: Duration = Duration::from_micros(3);

/// A registered passthrough backing file: the kernel's id for a host descriptor, closed
/// in the kernel when the last open handle sharing it is released, unless the
/// filesystem registered it ([`Vfs::backing_id`](vmount_core::Vfs::backing_id)) and
/// ends it itself.
pub(crate) struct Backing {
    id: u32,
    /// The connection to close it on; empty for a registration the filesystem owns.
    device: Weak<OwnedFd>,
}

/// `FUSE_DEV_IOC_BACKING_OPEN`: `_IOW(229, 1, struct fuse_backing_map)`.
const FUSE_DEV_IOC_BACKING_OPEN: libc::c_ulong = 0x4010_e501;
/// `FUSE_DEV_IOC_BACKING_CLOSE`: `_IOW(229, 2, uint32_t)`.
const FUSE_DEV_IOC_BACKING_CLOSE: libc::c_ulong = 0x4004_e502;

/// `struct fuse_backing_map`.
#[repr(C)]
struct BackingMap {
    fd: i32,
    flags: u32,
    padding: u64,
}

/// Registers the open file of `fd` on connection `device`; returns the kernel's id.
fn backing_open(device: RawFd, fd: BorrowedFd<'_>) -> io::Result<u32> {
    let map = BackingMap {
        fd: fd.as_raw_fd(),
        flags: 0,
        padding: 0,
    };
    // SAFETY: the ioctl reads one `fuse_backing_map` from the pointer, which lives across
    // the call; both descriptors are open.
    let id = unsafe {
        libc::ioctl(
            device,
            FUSE_DEV_IOC_BACKING_OPEN as _,
            &map as *const BackingMap,
        )
    };
    if id < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(id as u32)
}

/// Ends registration `id` on connection `device`.
fn backing_close(device: RawFd, id: u32) {
    // SAFETY: the ioctl reads one u32 from the pointer, which lives across the call.
    let r = unsafe { libc::ioctl(device, FUSE_DEV_IOC_BACKING_CLOSE as _, &id as *const u32) };
    if r < 0 {
        tracing::debug!(
            id,
            error = %io::Error::last_os_error(),
            "closing a passthrough backing file failed"
        );
    }
}

impl Backing {
    fn open(device: &Arc<OwnedFd>, fd: &OwnedFd) -> io::Result<Backing> {
        Ok(Backing {
            id: backing_open(device.as_raw_fd(), fd.as_fd())?,
            device: Arc::downgrade(device),
        })
    }

    /// A registration the filesystem made and ends itself.
    fn borrowed(id: u32) -> Backing {
        Backing {
            id,
            device: Weak::new(),
        }
    }
}

impl Drop for Backing {
    fn drop(&mut self) {
        if let Some(device) = self.device.upgrade() {
            backing_close(device.as_raw_fd(), self.id);
        }
    }
}

/// The registry a filesystem registers its host files with ahead of any open
/// ([`Vfs::use_backing_registry`](vmount_core::Vfs::use_backing_registry)): the
/// connection's descriptor, weakly, so that registrations outliving the mount fail
/// instead of keeping it.
struct DeviceRegistry {
    device: Weak<OwnedFd>,
}

impl vmount_core::BackingRegistry for DeviceRegistry {
    fn register(&self, fd: BorrowedFd<'_>) -> io::Result<u32> {
        let device = self
            .device
            .upgrade()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOTCONN))?;
        backing_open(device.as_raw_fd(), fd)
    }

    fn unregister(&self, id: u32) {
        if let Some(device) = self.device.upgrade() {
            backing_close(device.as_raw_fd(), id);
        }
    }
}

/// What the filesystem offers an open handle for passthrough.
enum Offer {
    /// A registration it owns (see [`Vfs::backing_id`](vmount_core::Vfs::backing_id)).
    Id(u32),
    /// A descriptor to register for this inode's passthrough opens.
    Fd(OwnedFd),
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

/// How one open handle's reads and writes are served.
///
/// The kernel keeps an I/O mode per inode (`fs/fuse/iomode.c`): while one open of an inode
/// uses the page cache ("cached"), an open in passthrough mode fails with EIO, and while
/// one is in passthrough mode, every other open must be in passthrough mode too (else
/// EIO). Opens with FOPEN_DIRECT_IO take no mode of their own, but are refused beside a
/// passthrough open all the same. It also allows one backing file per inode at a time (a
/// second, different one fails the open with EBUSY).
#[derive(Debug)]
pub(crate) enum Io<T> {
    /// Through the inode's backing file, in the kernel.
    Passthrough(Arc<T>),
    /// Through the daemon, with the page cache.
    Cached,
    /// Through the daemon, without the page cache, as the filesystem asked.
    Direct,
    /// Not at all: the filesystem refused passthrough to this handle while the inode has
    /// passthrough opens (still, after [`RELEASE_WAIT`]), beside which the kernel takes
    /// no other kind (the open fails with ETXTBSY, as writing to a running program does).
    /// memfs and loopback refuse it to a write handle whose writes must reach them to
    /// clear setuid, setgid or file capabilities; passing it through anyway would keep
    /// those privileges after the file changed.
    Busy,
}

impl<T> Io<T> {
    /// The same mode, sharing the backing file.
    fn share(&self) -> Io<T> {
        match self {
            Io::Passthrough(b) => Io::Passthrough(Arc::clone(b)),
            Io::Cached => Io::Cached,
            Io::Direct => Io::Direct,
            Io::Busy => Io::Busy,
        }
    }
}

/// The kernel's backing files of passthrough opens, and the I/O mode of every open
/// handle, so that no open is given a mode the kernel refuses beside the others (see
/// [`Io`]).
///
/// The first passthrough open of an inode registers the host descriptor the filesystem
/// offers; later ones reuse that [`Backing`]: `by_inode` finds it (weakly), `by_handle`
/// keeps it alive, one strong reference per open handle, until that handle's `release`.
/// The last release closes it in the kernel (`Backing`'s `Drop`). An inode with cached
/// opens gets no passthrough open until they are released; an open the filesystem
/// refuses passthrough, of an inode that has passthrough opens, is refused ([`Io::Busy`]).
/// Generic only so that the bookkeeping can be tested without a kernel.
struct BackingTable<T> {
    inner: Mutex<BackingMaps<T>>,
    /// Signalled whenever a handle is released.
    released: Condvar,
}

/// How long an open the filesystem refuses passthrough waits for the inode's passthrough
/// opens to be released before it is refused as busy. The kernel ends a passthrough open
/// when the file is closed and sends RELEASE afterwards, asynchronously, so a write right
/// after another process's close would otherwise find a passthrough open that is gone.
const RELEASE_WAIT: Duration = Duration::from_millis(20);

struct BackingMaps<T> {
    by_inode: HashMap<u64, InodeIo<T>>,
    by_handle: HashMap<u64, Io<T>>,
}

/// The open handles of one inode, as far as the kernel's I/O mode is concerned.
struct InodeIo<T> {
    /// The backing file of its passthrough opens, while there are any.
    backing: Weak<T>,
    /// Its open handles in the cached mode.
    cached: u32,
}

impl<T> Default for BackingTable<T> {
    fn default() -> Self {
        BackingTable {
            inner: Mutex::new(BackingMaps {
                by_inode: HashMap::new(),
                by_handle: HashMap::new(),
            }),
            released: Condvar::new(),
        }
    }
}

impl<T> BackingTable<T> {
    /// Decides how handle `fh` of inode `ino` is served and records it: `offered` is the
    /// host descriptor the filesystem offers this handle for passthrough, `direct_io`
    /// whether the filesystem asked for direct I/O, and `register` makes a backing file
    /// of the descriptor when the inode has none live. A failed registration serves the
    /// handle through the daemon and is returned beside that.
    ///
    /// The lock is held across `register` so that two concurrent first opens of an inode
    /// cannot register two different backing files.
    fn attach<F, E>(
        &self,
        ino: u64,
        fh: u64,
        offered: Option<F>,
        direct_io: bool,
        register: impl FnOnce(F) -> Result<T, E>,
    ) -> (Io<T>, Option<E>) {
        let mut maps = self.inner.lock();
        if offered.is_none() {
            let deadline = std::time::Instant::now() + RELEASE_WAIT;
            while maps
                .by_inode
                .get(&ino)
                .is_some_and(|i| i.backing.strong_count() > 0)
            {
                if self.released.wait_until(&mut maps, deadline).timed_out() {
                    break;
                }
            }
        }
        let inode = maps.by_inode.entry(ino).or_insert_with(|| InodeIo {
            backing: Weak::new(),
            cached: 0,
        });
        let live = inode.backing.upgrade();
        let through_daemon = if direct_io { Io::Direct } else { Io::Cached };
        let (io, failed) = match (offered, live) {
            (Some(_), _) if inode.cached > 0 => (through_daemon, None),
            (Some(_), Some(b)) => (Io::Passthrough(b), None),
            (Some(fd), None) => match register(fd) {
                Ok(t) => {
                    let b = Arc::new(t);
                    inode.backing = Arc::downgrade(&b);
                    (Io::Passthrough(b), None)
                }
                Err(e) => (through_daemon, Some(e)),
            },
            (None, Some(_)) => (Io::Busy, None),
            (None, None) => (through_daemon, None),
        };
        if matches!(io, Io::Cached) {
            inode.cached += 1;
        }
        if inode.cached == 0 && inode.backing.strong_count() == 0 {
            maps.by_inode.remove(&ino);
        }
        if !matches!(io, Io::Busy) {
            // A handle number is not reused before its release, so nothing is replaced
            // here; if a filesystem broke that, the old reference would simply be dropped.
            maps.by_handle.insert(fh, io.share());
        }
        (io, failed)
    }

    /// Forgets handle `fh` and returns what it held, so that the caller can drop it
    /// outside the lock (dropping the last `Backing` makes an ioctl).
    fn detach(&self, ino: u64, fh: u64) -> Option<Io<T>> {
        let mut maps = self.inner.lock();
        let held = maps.by_handle.remove(&fh)?;
        self.released.notify_all();
        if let Some(inode) = maps.by_inode.get_mut(&ino) {
            if matches!(held, Io::Cached) {
                inode.cached = inode.cached.saturating_sub(1);
            }
            // Ours is the last strong reference: the inode has no passthrough open left
            // (a concurrent open registers anew, which is correct once the kernel has
            // released the old one).
            let last = match &held {
                Io::Passthrough(b) => Arc::strong_count(b) == 1,
                _ => inode.backing.strong_count() == 0,
            };
            if last {
                inode.backing = Weak::new();
                if inode.cached == 0 {
                    maps.by_inode.remove(&ino);
                }
            }
        }
        Some(held)
    }

    #[cfg(test)]
    fn len(&self) -> (usize, usize) {
        let maps = self.inner.lock();
        (maps.by_inode.len(), maps.by_handle.len())
    }
}

/// The caller of a request as the filesystem sees it.
pub(crate) fn ctx(uid: u32, gid: u32, pid: u32) -> Ctx {
    Ctx::new(uid, gid, pid)
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

/// A SETATTR time as the filesystem takes it.
pub(crate) fn set_time(t: TimeOrNow) -> SetTime {
    match t {
        TimeOrNow::Now => SetTime::Now,
        TimeOrNow::SpecificTime(t) => SetTime::At(t),
    }
}

/// The changes a SETATTR asks for; `mode` keeps only permission bits.
#[allow(clippy::too_many_arguments)]
pub(crate) fn set_attr(
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
    size: Option<u64>,
    atime: Option<TimeOrNow>,
    mtime: Option<TimeOrNow>,
    ctime: Option<SystemTime>,
) -> SetAttr {
    SetAttr {
        mode: mode.map(|m| m & 0o7777),
        uid,
        gid,
        size,
        atime: atime.map(set_time),
        mtime: mtime.map(set_time),
        ctime,
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

fn finish_listing(
    op: &'static str,
    ino: u64,
    res: OpResult<()>,
    fault: Option<SinkFault>,
) -> OpResult<()> {
    match (res, fault) {
        (Err(e), _) => Err(e),
        (Ok(()), Some(SinkFault::Contract(what))) => {
            tracing::warn!(ino, "{op}: filesystem bug: {what}");
            Err(Errno::EIO)
        }
        (Ok(()), None) => Ok(()),
    }
}

/// Pours entries into a READDIR reply.
struct PlainSink<'r> {
    out: &'r mut dyn DirOut,
    fault: Option<SinkFault>,
}

impl DirSink for PlainSink<'_> {
    fn wants_attr(&self) -> bool {
        false
    }

    fn asks_again_at_the_end(&self) -> bool {
        true
    }

    fn add(&mut self, e: &DirEntry<'_>) -> bool {
        let offset = match check_entry(e) {
            Ok(o) => o,
            Err(f) => {
                self.fault = Some(f);
                return true;
            }
        };
        self.out
            .add(e.ino.0, offset, convert::file_type(e.kind), e.name)
    }
}

/// Pours entries with attributes into a READDIRPLUS reply. The kernel counts a lookup
/// for each entry taken, and so does the filesystem (it sees `add` return `false`).
struct PlusSink<'r> {
    out: &'r mut dyn DirPlusOut,
    ttl: Duration,
    fault: Option<SinkFault>,
}

impl DirSink for PlusSink<'_> {
    fn wants_attr(&self) -> bool {
        true
    }

    fn asks_again_at_the_end(&self) -> bool {
        true
    }

    fn add(&mut self, e: &DirEntry<'_>) -> bool {
        let checked = check_entry(e).and_then(|o| {
            e.attr
                .map(|a: Attr| (o, a))
                .ok_or(SinkFault::Contract("entry without attributes"))
        });
        let (offset, attr) = match checked {
            Ok(v) => v,
            Err(f) => {
                self.fault = Some(f);
                return true;
            }
        };
        self.out
            .add(offset, e.name, self.ttl, &convert::file_attr(&attr))
    }
}

/// Answers getxattr/listxattr: `size` 0 asks for the length, a value longer than `size`
/// is ERANGE.
fn xattr_reply(size: u32, value: Vec<u8>) -> OpResult<XattrOut> {
    let Ok(len) = u32::try_from(value.len()) else {
        return Err(Errno::from_i32(libc::E2BIG));
    };
    if size == 0 {
        Ok(XattrOut::Size(len))
    } else if len > size {
        Err(Errno::from_i32(libc::ERANGE))
    } else {
        Ok(XattrOut::Data(value))
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
        let ops = Ops::new(
            fs.clone(),
            &FuseOptions::default(),
            Passthrough::Off,
            Arc::default(),
        );
        // Counts the kernel got from READDIRPLUS are the filesystem's too: nothing is
        // held back, split or merged.
        ops.forget(5, 3);
        ops.forget(5, 1);
        ops.forget(21, u64::MAX);
        assert_eq!(*fs.seen.lock(), [(5, 3), (5, 1), (21, u64::MAX)]);
    }

    /// The times the kernel hands over for a regular file it has just unlinked (or writes
    /// back after the last close) succeed though memfs has freed the file, and are answered
    /// as a regular file (another kind would make the kernel mark its inode bad). Every
    /// other change of a freed file, and times without a ctime (not from the kernel's
    /// cache), still fail with ESTALE.
    #[cfg(target_os = "linux")]
    #[test]
    fn times_of_a_freed_file_succeed_and_nothing_else() {
        let fs = Arc::new(vmount_core::memfs::MemFs::new(Default::default()));
        let ops = Ops::new(
            fs.clone(),
            &FuseOptions::default(),
            Passthrough::Off,
            Arc::default(),
        );
        let ctx = Ctx::root();
        let (attr, opened) = fs
            .create(&ctx, Ino::ROOT, OsStr::new("f"), 0o644, OpenFlags::WRITE)
            .unwrap();
        fs.release(&ctx, attr.ino, opened.fh).unwrap();
        fs.unlink(&ctx, Ino::ROOT, OsStr::new("f")).unwrap();
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let flush = SetAttr {
            mtime: Some(SetTime::At(t)),
            ctime: Some(t),
            ..SetAttr::default()
        };
        let a = ops.setattr(&ctx, attr.ino.0, &flush, None).unwrap();
        assert_eq!(a.kind, fuser::FileType::RegularFile);
        assert_eq!((a.ino.0, a.nlink, a.size), (attr.ino.0, 0, 0));
        assert_eq!((a.mtime, a.ctime), (t, t));
        for set in [
            SetAttr {
                mode: Some(0o600),
                ..flush
            },
            SetAttr {
                size: Some(0),
                ..flush
            },
            SetAttr {
                uid: Some(1),
                ..flush
            },
            SetAttr {
                ctime: None,
                ..flush
            },
        ] {
            assert_eq!(
                ops.setattr(&ctx, attr.ino.0, &set, None).err(),
                Some(Errno::ESTALE),
                "{set:?}"
            );
        }
    }

    /// While the io_uring queues serve, a FORGET taken by a read of its own naps the worker
    /// once; the rest of a batch (handed over back to back) does not, however long each
    /// forget itself takes; before the queues serve, nothing naps.
    #[cfg(target_os = "linux")]
    #[test]
    fn forgets_nap_once_per_read_while_the_queues_serve() {
        use std::time::Instant;
        let ops = Ops::new(
            Arc::new(vmount_core::memfs::MemFs::new(Default::default())),
            &FuseOptions::default(),
            Passthrough::Off,
            Arc::default(),
        );
        // `work`: how long each forget takes before its pacing.
        let batch = |n: usize, work: Duration| {
            let t = Instant::now();
            for _ in 0..n {
                let arrived = Instant::now();
                while arrived.elapsed() < work {
                    std::hint::spin_loop();
                }
                ops.pace_forgets(arrived);
            }
            t.elapsed()
        };
        let timed = |n: usize| batch(n, Duration::ZERO);
        assert!(
            timed(100) < Duration::from_millis(50),
            "napped on /dev/fuse alone"
        );
        ops.queues_serving();
        assert!(
            timed(1) >= Duration::from_millis(1),
            "a lone FORGET must nap"
        );
        // A batch's nodes: at most a nap or two if this thread is preempted, not 100.
        assert!(
            timed(100) < Duration::from_millis(50),
            "napped inside a batch"
        );
        // Forgets that close host files: 100 x 50 us of work, not 100 naps more.
        assert!(
            batch(100, Duration::from_micros(50)) < Duration::from_millis(55),
            "napped inside a batch of slow forgets"
        );
        std::thread::sleep(Duration::from_micros(200));
        assert!(
            timed(1) >= Duration::from_millis(1),
            "a FORGET from a new read must nap"
        );
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
            Ok::<_, ()>(v)
        };
        let backed = |(io, failed): (Io<u32>, Option<()>)| match (io, failed) {
            (Io::Passthrough(b), None) => b,
            (io, failed) => panic!("not passthrough: {io:?} {failed:?}"),
        };
        let a = backed(table.attach(7, 100, Some(1), false, make));
        // A second open of the same inode reuses it: `register` is not called.
        let b = backed(
            table.attach(7, 101, Some(9), false, |_| -> Result<u32, ()> {
                panic!("must reuse")
            }),
        );
        assert!(Arc::ptr_eq(&a, &b));
        let c = backed(table.attach(8, 102, Some(2), false, make));
        assert_eq!(*c, 2);
        assert_eq!(made.get(), 2);
        drop((a, b, c));
        assert_eq!(table.len(), (2, 3));
        // Releasing one of two handles keeps the inode's backing.
        assert!(table.detach(7, 100).is_some());
        assert_eq!(table.len(), (2, 2));
        let Some(Io::Passthrough(last)) = table.detach(7, 101) else {
            panic!("a passthrough handle");
        };
        assert_eq!(
            Arc::strong_count(&last),
            1,
            "the caller drops the last reference"
        );
        assert_eq!(table.len(), (1, 1));
        drop(last);
        // Unknown handles are ignored.
        assert!(table.detach(9, 999).is_none());
        // A failed registration serves the handle through the daemon and says why.
        let (io, failed) = table.attach(9, 104, Some(3), false, |_| Err::<u32, _>("no"));
        assert!(matches!(io, Io::Cached) && failed == Some("no"));
        assert!(matches!(table.detach(9, 104), Some(Io::Cached)));
        assert_eq!(table.len(), (1, 1));
        // A new open after the last release registers afresh.
        let d = backed(table.attach(7, 105, Some(3), false, make));
        assert_eq!((*d, made.get()), (3, 3));
        drop(d);
        assert!(table.detach(8, 102).is_some());
        assert!(table.detach(7, 105).is_some());
        assert_eq!(table.len(), (0, 0));
    }

    /// A registration that succeeds with the descriptor as its id.
    fn reg(v: u32) -> Result<u32, ()> {
        Ok(v)
    }

    /// A registration that must not happen.
    fn never(_: u32) -> Result<u32, ()> {
        panic!("must not register")
    }

    /// No open gets an I/O mode the kernel refuses beside the inode's other opens (EIO):
    /// an open refused passthrough beside passthrough opens is refused (ETXTBSY), and an
    /// inode with cached opens gets no passthrough open until they are released.
    #[test]
    fn opens_never_mix_cached_and_passthrough_modes() {
        let table = BackingTable::<u32>::default();
        // A passthrough open, then one the filesystem refuses (a setuid file's non-root
        // writer): busy, whether or not it asked for direct I/O, and not recorded.
        assert!(matches!(
            table.attach(1, 10, Some(1), false, reg).0,
            Io::Passthrough(_)
        ));
        assert!(matches!(
            table.attach(1, 11, None, false, never).0,
            Io::Busy
        ));
        assert!(matches!(table.attach(1, 12, None, true, never).0, Io::Busy));
        assert!(table.detach(1, 11).is_none());
        // Once the passthrough open is released, a refused open is cached.
        assert!(matches!(table.detach(1, 10), Some(Io::Passthrough(_))));
        assert!(matches!(
            table.attach(1, 13, None, false, never).0,
            Io::Cached
        ));
        // While that cached open lives, an open offered passthrough stays cached (or
        // direct, if the filesystem asked for it), and registers nothing.
        assert!(matches!(
            table.attach(1, 14, Some(1), false, never).0,
            Io::Cached
        ));
        assert!(matches!(
            table.attach(1, 15, Some(1), true, never).0,
            Io::Direct
        ));
        assert!(matches!(table.detach(1, 13), Some(Io::Cached)));
        assert!(matches!(
            table.attach(1, 16, Some(1), false, never).0,
            Io::Cached
        ));
        // Only when every cached open is released does passthrough come back; a direct
        // open beside it is no obstacle.
        for fh in [14, 16] {
            assert!(matches!(table.detach(1, fh), Some(Io::Cached)));
        }
        assert!(matches!(
            table.attach(1, 17, Some(2), false, reg).0,
            Io::Passthrough(_)
        ));
        // A refused open of an inode with no passthrough open that asked for direct I/O.
        assert!(matches!(
            table.attach(2, 20, None, true, never).0,
            Io::Direct
        ));
        for (ino, fh) in [(1, 15), (1, 17), (2, 20)] {
            assert!(table.detach(ino, fh).is_some());
        }
        assert_eq!(table.len(), (0, 0));
    }

    /// An open refused passthrough waits for a passthrough open whose release is on its
    /// way, rather than failing as busy.
    #[test]
    fn refused_opens_wait_for_releases_in_flight() {
        let table = Arc::new(BackingTable::<u32>::default());
        assert!(matches!(
            table.attach(1, 10, Some(1), false, reg).0,
            Io::Passthrough(_)
        ));
        let t = Arc::clone(&table);
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(5));
            t.detach(1, 10)
        });
        let start = std::time::Instant::now();
        assert!(matches!(
            table.attach(1, 11, None, false, never).0,
            Io::Cached
        ));
        assert!(start.elapsed() < RELEASE_WAIT * 5);
        assert!(matches!(releaser.join().unwrap(), Some(Io::Passthrough(_))));
        assert!(matches!(table.detach(1, 11), Some(Io::Cached)));
        assert_eq!(table.len(), (0, 0));
    }

    #[test]
    fn xattr_lists_are_nul_terminated() {
        let names = [OsString::from("user.a"), OsString::from("user.bc")];
        assert_eq!(xattr_list(&names), b"user.a\0user.bc\0");
        assert!(xattr_list(&[]).is_empty());
    }
}
