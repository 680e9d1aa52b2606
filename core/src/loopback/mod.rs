//! loopback: a live mirror of a host directory, confined to it.
//!
//! # Design decisions
//! - **Identity.** One vmount [`Ino`] per host `(st_dev, st_ino)`: a table entry holds a
//!   descriptor of the object (Linux: `O_PATH | O_NOFOLLOW`; macOS: see below), its kind
//!   and its lookup count. Hard links therefore share one inode, and `nlink` is the
//!   host's. Numbers are allocated monotonically from 2 and never reused; the source
//!   directory is [`Ino::ROOT`]. A held descriptor pins the host inode, so its
//!   `(st_dev, st_ino)` cannot be recycled by the host while held (see "Descriptors").
//! - **Lifetime.** An entry leaves the table (closing its descriptor) when its lookup
//!   count reaches zero through [`Vfs::forget`] and no handle is open on it, or as soon
//!   as the object is gone from the host (`nlink` 0, seen after unlink, rmdir, a replacing
//!   rename, the last release, or a getattr) and no handle is open. A removal through the
//!   filesystem lets go at once (or at the last release of an open object), never at the
//!   kernel's later forget: the host frees the space when `rm` returns, as it does for its
//!   own removals, at the cost of a `stat` before and after (a loopback unlink on ext4
//!   13 -> 18-21 us). Only a removal made on the host while the object is open through
//!   the mount waits for the forget where one comes at once (Linux FUSE with a watched
//!   source, [`Vfs::attach`]), which spares every last release a `stat`. The root is never
//!   dropped. A forgotten number is `Stale` afterwards; the FUSE kernel never uses a
//!   number after forgetting it. (Consequently loopback does *not* keep forgotten but
//!   still linked inodes usable, which stateless NFS would want.)
//! - **Descriptors.** NFS never forgets, so the table can outgrow the descriptor limit.
//!   On Linux an entry therefore also stores the object's file handle
//!   (`name_to_handle_at(fd, "", AT_EMPTY_PATH)`), and the descriptors of such entries
//!   form a bounded cache (`min(8192, RLIMIT_NOFILE / 4)`). Eviction is CLOCK (second
//!   chance), an approximation of least recently used: a hit only locks the entry's own
//!   slot and sets a flag; the global ring lock is taken only when a descriptor is
//!   (re)opened. An evicted entry reopens with `open_by_handle_at(source, handle,
//!   O_PATH | O_NOFOLLOW)` when next used, and the result must be the same `(st_dev,
//!   st_ino)`, else (or on `ESTALE`) the number is `Stale`. Descriptors are handed out
//!   as `Arc`s, so one in use when evicted stays open until its user is done. A handle
//!   names exactly the object the entry held, so confinement is unchanged: it is only
//!   ever used as the entry's own descriptor. Pinned (never evicted, as before): the
//!   root, objects on another filesystem than the source (handles resolve on the
//!   source's), objects whose filesystem has no handles (`EOPNOTSUPP`), and every entry
//!   when handles cannot be reopened at all (no `CAP_DAC_READ_SEARCH`: a non-root
//!   daemon, probed at start on the source's own handle). An evicted entry no longer
//!   pins its host inode: its number stays bound to the object its handle names (and is
//!   `Stale` once that is gone), while a new object given the recycled `(st_dev,
//!   st_ino)` is told apart by its handle (the generation differs) and gets a number of
//!   its own. Lookups open a name before matching it against the table, so the object
//!   cannot change between the two. macOS has no handles: every entry keeps its
//!   descriptor.
//! - **Confinement.** Every host call is relative to a held directory descriptor plus one
//!   name checked with [`check_name`], using the `*at` calls with `AT_SYMLINK_NOFOLLOW` /
//!   `O_NOFOLLOW`, and `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//!   RESOLVE_NO_MAGICLINKS)` where the kernel has it. No path string is ever walked, so
//!   swapping a directory for a symlink meanwhile cannot lead outside: a held directory
//!   descriptor keeps naming the real directory, and a symlink is only ever held as
//!   itself (using it as a parent fails with `NotDir`). Reopening a held `O_PATH`
//!   descriptor for I/O through `/proc/self/fd/N` is done only for regular files and
//!   directories, never for symlinks (that would follow them).
//! - **Ownership and permissions.** When the daemon runs as root on Linux, each host call
//!   made for a non-root caller runs with the caller's fsuid, fsgid and supplementary
//!   groups on the calling thread (see `creds.rs`), so the host kernel decides every
//!   permission (ACLs included) and new files belong to the caller, setgid directories
//!   included. Root callers take the fast path (no switch). A non-root daemon never
//!   switches: files belong to it and the host checks against it. On macOS there is no
//!   per-thread switch: a root daemon chowns new objects to the caller afterwards and
//!   checks the caller against mode bits itself for lookups, namespace changes, opens and
//!   `access` (not ACLs, sticky directories or chmod/chown ownership, which then follow
//!   the daemon's root rights: a documented limitation of the macOS build).
//! - **Modes are exact.** The process umask would otherwise be applied a second time by
//!   the host; a new object whose permission bits differ from the requested ones is
//!   chmod'ed (as the daemon, so an inherited setgid bit survives).
//! - **I/O.** `open` maps a handle to one host descriptor used for every read and write
//!   (`pread`/`pwrite`, no per-I/O open). Stateless I/O (`fh` None, NFS) goes through a
//!   small bounded cache of descriptors per inode (64 entries, least recently used out).
//!   There is no global lock around I/O.
//! - **readdir** streams the host directory with `getdents64` and uses the host's `d_off`
//!   as the cookie (see `dir.rs`). Entries accepted by an attribute-wanting sink are
//!   registered and count one lookup, like `lookup`. Entries listed without attributes
//!   carry their table number when the object is known, else a synthetic number with the
//!   top bit set (never handed out as a real inode, so it cannot collide).
//! - **Locks** are not implemented here: FUSE keeps POSIX and flock locks in the kernel.
//! - **macOS** (compile-checked only): no `O_PATH` or `/proc`; directories are held
//!   `O_RDONLY`, other objects `O_EVTONLY | O_SYMLINK` (sockets cannot be opened, so they
//!   cannot be looked up). Regular files are reopened through `F_GETPATH` and verified to
//!   be the same `(st_dev, st_ino)`; rename flags map to `renameatx_np`; fallocate
//!   supports only plain allocation; copy_file_range copies with pread/pwrite.

#[cfg(target_os = "linux")]
mod ahead;
mod creds;
mod dir;
mod sys;
#[cfg(target_os = "linux")]
mod watch;

use std::collections::{HashMap, VecDeque};
use std::ffi::{CStr, OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use parking_lot::{MappedMutexGuard, Mutex, MutexGuard, RwLock};

use self::creds::CredGuard;
use self::dir::DirStream;
use self::sys::Stat;
use crate::handle_table::{HandleOwner, HandleTable};
use crate::io_cache::IoCache;
use crate::{
    AccessMask, Attr, Capabilities, Ctx, DirEntry, DirSink, FallocateFlags, Fh, FileType, Ino,
    NAME_MAX, OpenFlags, Opened, RenameFlags, SetAttr, SetTime, StatFs, Vfs, VfsError, VfsResult,
    Whence, XattrFlags, check_name, is_selinux_label,
};

/// Descriptors kept for stateless I/O.
/// Most entry descriptors held at once (see "Descriptors" in the module docs); the
/// limit is also at most a quarter of the process's descriptor limit.
const ENTRY_FD_CACHE_MAX: usize = 8192;
/// Bit set on the synthetic inode numbers of entries listed without attributes.
const SYNTHETIC_INO: u64 = 1 << 63;

/// Most xattr names remembered missing per object (`ls -l` asks for one, the kernel's
/// capability check for another).
#[cfg(target_os = "linux")]
const ABSENT_XATTRS_MAX: usize = 8;

/// Whether a miss on xattr `name` may be remembered: namespaces whose reads need no
/// permission, so that every caller gets the same answer.
#[cfg(target_os = "linux")]
fn remembered_miss(name: &[u8]) -> bool {
    name.starts_with(b"security.") || name.starts_with(b"system.")
}

/// An xattr name as a C string, refusing the names loopback does not carry (see
/// [`is_selinux_label`]).
fn xattr_cname(name: &OsStr) -> VfsResult<std::ffi::CString> {
    if is_selinux_label(name.as_bytes()) {
        return Err(VfsError::NotSupported);
    }
    sys::cname(name)
}

/// Settings of a [`Loopback`].
#[derive(Debug, Clone, Default)]
pub struct LoopbackOptions {
    /// The host directory to mirror.
    pub source: PathBuf,
    /// Every modifying call fails with `ReadOnly`; nothing on the host changes.
    pub read_only: bool,
}

/// An entry descriptor in use. It is shared: an eviction only drops the cache's
/// reference, so a descriptor handed out stays valid until its user is done with it.
type EntryFd = Arc<OwnedFd>;

/// The bounded set of entry descriptors that may be closed and reopened by file handle
/// (see "Descriptors" in the module docs).
#[derive(Debug)]
struct EntryFds {
    /// The source directory opened for reading (the kernel refuses `O_PATH` here):
    /// `open_by_handle_at` resolves handles on its filesystem. `None`: handles cannot
    /// be reopened (probed at start: needs `CAP_DAC_READ_SEARCH` and a host filesystem
    /// with handles), so every entry is pinned.
    mount: Option<OwnedFd>,
    /// `st_dev` of the source; only entries on it get handles.
    root_dev: u64,
    /// Most evictable descriptors held at once.
    capacity: usize,
    /// The entries holding an evictable descriptor (and those dropped since, whose
    /// descriptor is already closed), in CLOCK order.
    ring: Mutex<VecDeque<Weak<Inode>>>,
}

impl EntryFds {
    /// Counts `inode`, which just got its descriptor, and evicts descriptors beyond the
    /// capacity: the front of the ring goes unless it was used since it last passed
    /// the hand (then it gets a second chance at the back), an approximation of
    /// least-recently-used that keeps hits free of this lock.
    fn admit(&self, inode: &Inode) {
        inode.used.store(true, Ordering::Relaxed);
        let mut evicted: Vec<(Arc<Inode>, Option<EntryFd>)> = Vec::new();
        {
            let mut ring = self.ring.lock();
            ring.push_back(inode.me.clone());
            // Every entry is passed over at most once before one is evicted.
            let mut budget = ring.len().saturating_mul(2);
            while ring.len() > self.capacity && budget > 0 {
                budget -= 1;
                let Some(weak) = ring.pop_front() else { break };
                let Some(entry) = weak.upgrade() else {
                    continue; // dropped from the table: its descriptor is closed
                };
                if entry.used.swap(false, Ordering::Relaxed) {
                    ring.push_back(weak);
                    continue;
                }
                let mut slot = entry.fd.lock();
                // The handle is taken now, from the descriptor that still pins the
                // object. Without one the entry stays pinned and leaves the ring.
                if entry.handle.get().is_none() {
                    match slot.as_ref().map(|fd| sys::name_to_handle(fd.as_fd())) {
                        Some(Ok(Some(h))) => {
                            let _ = entry.handle.set(h);
                        }
                        _ => continue,
                    }
                }
                let fd = slot.take();
                drop(slot);
                evicted.push((entry, fd));
            }
        }
        // Closed (and entries possibly freed) outside the lock.
        drop(evicted);
    }
}

/// One host object the filesystem has handed out a number for.
#[derive(Debug)]
struct Inode {
    ino: Ino,
    key: (u64, u64),
    kind: FileType,
    /// The held descriptor (see the module docs); `None` while evicted.
    fd: Mutex<Option<EntryFd>>,
    /// Whether the descriptor may be evicted: the object is on the source's filesystem
    /// and handles can be reopened there. (Not the root, nor objects on other
    /// filesystems, nor any without a handle, found out when first evicted.)
    evictable: bool,
    /// The host file handle to reopen an evicted descriptor with, taken from the
    /// descriptor when it is evicted (or when a lookup had to take it anyway): most
    /// entries never are, and `name_to_handle_at` for each new entry was a host call per
    /// name listed, looked up or created. Set means the entry may be, or has been, evicted.
    handle: OnceLock<Box<[u8]>>,
    /// Used since the eviction hand last passed it.
    used: AtomicBool,
    /// This entry, for the eviction ring.
    me: Weak<Inode>,
    fds: Arc<EntryFds>,
    /// Lookup references (FUSE's count).
    lookups: AtomicU64,
    /// Open handles.
    opens: AtomicU64,
    /// The FUSE passthrough backing id registered for this object's descriptor, kept
    /// until the entry leaves the table (see [`Loopback::backing_id`]).
    backing: Mutex<Option<u32>>,
    /// Removed through the mount while open: its last release lets go of it (and so of
    /// its space), not the kernel's forget a moment later.
    removed: AtomicBool,
    /// Names of `security.*`/`system.*` xattrs the host said this object lacks, kept only
    /// while the source is watched (see [`Loopback::getxattr`]).
    #[cfg(target_os = "linux")]
    absent_xattrs: Mutex<Vec<Box<[u8]>>>,
}

impl Inode {
    /// A new entry holding `fd`; an `evictable` one joins the descriptor cache, with its
    /// `handle` when it is already known.
    fn new(
        ino: Ino,
        key: (u64, u64),
        kind: FileType,
        fd: EntryFd,
        evictable: bool,
        handle: Option<Box<[u8]>>,
        fds: Arc<EntryFds>,
    ) -> Arc<Inode> {
        let inode = Arc::new_cyclic(|me| Inode {
            ino,
            key,
            kind,
            fd: Mutex::new(Some(fd)),
            evictable,
            handle: handle.map_or_else(OnceLock::new, OnceLock::from),
            used: AtomicBool::new(true),
            me: me.clone(),
            fds,
            lookups: AtomicU64::new(1),
            opens: AtomicU64::new(0),
            backing: Mutex::new(None),
            removed: AtomicBool::new(false),
            #[cfg(target_os = "linux")]
            absent_xattrs: Mutex::new(Vec::new()),
        });
        if inode.evictable {
            inode.fds.admit(&inode);
        }
        inode
    }

    /// The entry's descriptor, reopened by file handle when it was evicted. An object
    /// gone from the host (or replaced: the handle must give the same `(st_dev,
    /// st_ino)`) is `Stale`.
    fn fd(&self) -> VfsResult<EntryFd> {
        if let Some(fd) = &*self.fd.lock() {
            self.used.store(true, Ordering::Relaxed);
            return Ok(fd.clone());
        }
        // Only entries with a handle are ever evicted.
        let (Some(handle), Some(mount)) = (self.handle.get(), self.fds.mount.as_ref()) else {
            return Err(VfsError::Stale);
        };
        let fd = match creds::as_daemon(|| sys::open_by_handle(mount.as_fd(), handle)) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Err(VfsError::Stale),
            Err(e) => return Err(e.into()),
        };
        if sys::key(&sys::fstat(fd.as_fd())?) != self.key {
            return Err(VfsError::Stale);
        }
        let fd = Arc::new(fd);
        {
            let mut slot = self.fd.lock();
            if let Some(held) = &*slot {
                return Ok(held.clone()); // reopened concurrently; ours closes
            }
            *slot = Some(fd.clone());
        }
        self.fds.admit(self);
        Ok(fd)
    }

    /// Whether the entry holds its descriptor (and so pins its host object).
    fn holds_fd(&self) -> bool {
        self.fd.lock().is_some()
    }

    /// The host descriptor of a deferred handle (see `HandleData::Deferred`), opened
    /// as the daemon: the caller's access was checked when the handle was opened.
    fn open_deferred(&self, flags: libc::c_int) -> VfsResult<OwnedFd> {
        creds::as_daemon(|| Ok(sys::reopen(self.fd()?.as_fd(), self.kind, flags)?))
    }

    /// Whether the host object is gone (no links left, or its handle is stale).
    fn gone(&self) -> bool {
        match self.fd() {
            Ok(fd) => sys::fstat(fd.as_fd()).is_ok_and(|st| st.st_nlink == 0),
            Err(e) => matches!(e, VfsError::Stale),
        }
    }
}

#[derive(Debug, Default)]
struct Table {
    by_ino: HashMap<u64, Arc<Inode>>,
    by_key: HashMap<(u64, u64), u64>,
}

/// What an open handle holds.
enum HandleData {
    File(OwnedFd),
    /// A read-only open of a regular file (Linux), whose host descriptor is opened only
    /// when the daemon itself first needs one: a READ, `fsync` or `lseek`. Under FUSE
    /// passthrough the kernel reads through a backing file made from the entry's own
    /// `O_PATH` descriptor, so `cat`, `grep -r` or a compiler reading its headers open
    /// nothing on the host at all. The caller's read permission is checked at the open,
    /// as the host open would have; the deferred open is made as the daemon.
    Deferred(OnceLock<OwnedFd>),
    /// A directory's stream; on Linux opened at the first READDIR or `fsyncdir`, never
    /// for a listing the kernel already holds (FOPEN_CACHE_DIR), as for files above.
    Dir(Mutex<Option<DirStream>>),
}

/// The stream of a directory handle, opened now if it was deferred.
fn dir_stream(h: &Handle) -> VfsResult<MappedMutexGuard<'_, DirStream>> {
    let HandleData::Dir(slot) = &h.data else {
        return Err(VfsError::NotDir);
    };
    let mut stream = slot.lock();
    if stream.is_none() {
        *stream = Some(dir::open_stream(h.inode.open_deferred(libc::O_RDONLY)?)?);
    }
    Ok(MutexGuard::map(stream, |s| {
        s.as_mut().expect("opened above")
    }))
}

/// An open file or directory.
struct Handle {
    inode: Arc<Inode>,
    flags: OpenFlags,
    data: HandleData,
    /// Whether the kernel may do this handle's I/O itself (FUSE passthrough); see
    /// [`passthrough_keeps_privileges`].
    passthrough: bool,
    /// Made by `create`: its backing is registered for this open only (see
    /// [`Loopback::backing_id`]).
    created: bool,
}

/// Whether a write by `ctx` may have to drop setuid/setgid bits of a file with mode
/// `mode` (Linux's rule: unless the writer is root; setgid also depends on group-exec
/// and the writer's groups, which the host decides).
///
/// Passthrough writes reach the host with the daemon's credentials (root's, which keep
/// the bits), and with `FUSE_HANDLE_KILLPRIV_V2` the FUSE kernel no longer clears them
/// either, so such a handle does its writes through the daemon, as the caller, and the
/// host clears the bits. File capabilities need nothing: the host drops
/// `security.capability` on any write, whoever makes it.
fn passthrough_keeps_privileges(ctx: &Ctx, flags: OpenFlags, mode: u32) -> bool {
    writes(flags) && !ctx.is_root() && mode & 0o6000 != 0
}

impl HandleOwner for Handle {
    fn owner(&self) -> Ino {
        self.inode.ino
    }
}

/// A descriptor to do I/O on: a handle's or a cached one.
enum IoFd {
    Handle(Arc<Handle>),
    Cached(Arc<OwnedFd>),
}

impl IoFd {
    /// The descriptor, opening a deferred handle's now.
    fn fd(&self) -> VfsResult<BorrowedFd<'_>> {
        Ok(match self {
            IoFd::Handle(h) => match &h.data {
                HandleData::File(fd) => fd.as_fd(),
                HandleData::Deferred(cell) => {
                    if cell.get().is_none() {
                        let fd = h.inode.open_deferred(host_flags(h.flags))?;
                        // A concurrent first use may have won; its descriptor is kept.
                        let _ = cell.set(fd);
                    }
                    cell.get().expect("set above").as_fd()
                }
                // `io_fd` only returns file handles.
                HandleData::Dir(_) => return Err(VfsError::IsDir),
            },
            IoFd::Cached(fd) => fd.as_fd(),
        })
    }
}

/// The loopback filesystem. See the [module docs](self) for its design.
pub struct Loopback {
    opts: LoopbackOptions,
    /// Shared with the change watcher's thread, which holds it weakly.
    table: Arc<RwLock<Table>>,
    /// Reports changes made to the source by others, once `watch_changes` started it.
    #[cfg(target_os = "linux")]
    watch: OnceLock<Arc<watch::Watcher>>,
    /// Reads directories ahead of a tree walk (see `ahead.rs`).
    #[cfg(target_os = "linux")]
    ahead: ahead::ReadAhead,
    /// Bumped whenever xattrs may have appeared (see [`Loopback::getxattr`]): by the
    /// watcher for every batch of events it reads, and by `setxattr`.
    #[cfg(target_os = "linux")]
    xattr_epoch: Arc<AtomicU64>,
    next_ino: AtomicU64,
    handles: HandleTable<Handle>,
    cache: IoCache<OwnedFd>,
    entry_fds: Arc<EntryFds>,
    /// The daemon is root: switch to callers' credentials (Linux) / chown new objects
    /// and check mode bits (macOS).
    daemon_root: bool,
    daemon_groups: Vec<libc::gid_t>,
    /// Streams of stateless listings (NFS READDIR), kept between calls (see
    /// [`Parked`]).
    parked: Mutex<Vec<Parked>>,
    /// Bumped at the end of every call that may change directory entries (see
    /// [`EntriesChange`]): a kept stream opened before it is not resumed.
    listing_epoch: AtomicU64,
    /// Adapters attached that forget their lookups, and that never do ([`Vfs::attach`]).
    forgetting: AtomicU64,
    never_forgetting: AtomicU64,
    /// The FUSE connection's backing registry, once one was offered
    /// ([`Vfs::use_backing_registry`]); set when a registration failed, after which
    /// opens offer descriptors instead.
    registry: OnceLock<Arc<dyn crate::BackingRegistry>>,
    registry_failed: AtomicBool,
    /// Whether the kernel takes an `O_PATH` descriptor as a backing file, learned at the
    /// first registration: [`OPATH_UNKNOWN`], [`OPATH_TAKEN`] or [`OPATH_REFUSED`].
    opath_backing: std::sync::atomic::AtomicU8,
}

/// Not yet learned whether the kernel takes `O_PATH` backing files.
const OPATH_UNKNOWN: u8 = 0;
/// It does (Linux 6.12+, `fget_raw` in `fuse_backing_open`).
const OPATH_TAKEN: u8 = 1;
/// It does not (Linux 6.9-6.11: EBADF, or EOPNOTSUPP for the empty `f_op`).
const OPATH_REFUSED: u8 = 2;

/// Bumps [`Loopback::listing_epoch`] when dropped, at the end of a call that may change
/// directory entries, whether it succeeded or not.
struct EntriesChange<'a>(&'a AtomicU64);

/// Ends the reader of the change events, which otherwise sleeps until the next event.
#[cfg(target_os = "linux")]
impl Drop for Loopback {
    fn drop(&mut self) {
        if let Some(w) = self.watch.get() {
            w.finish();
        }
    }
}

impl Drop for EntriesChange<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// When a kept stream was opened: nothing may have changed the directory since, or its
/// buffered entries could be stale for a listing that began after the change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StreamOpened {
    /// [`Loopback::listing_epoch`]: changes made through this filesystem.
    epoch: u64,
    /// The watcher's event batches (`xattr_epoch`): changes made on the host, where the
    /// source is watched.
    events: u64,
    /// The directory's mtime and ctime (seconds, nanoseconds): host changes where it is
    /// not watched (fine-grained on kernels with multigrain timestamps, 6.13+).
    stamp: [i64; 4],
}

/// A directory stream of a stateless listing that stopped part way, kept for the call
/// that continues it (the same directory, from the cookie where it stopped), so that the
/// next call neither reopens the directory nor reads its entries again.
/// Under FUSE without OPENDIR a listing that reached the end is kept too, for the empty
/// call that tells the kernel so ([`DirSink::asks_again_at_the_end`]).
///
/// Why: an NFS READDIRPLUS reply holds a few hundred entries; opening the directory for
/// each call and reading it from the cookie read a whole `getdents64` buffer (about
/// 1,000 short names) a call to use them (`nfs-ls` of 10,000 entries: 71-83 -> 46-58
/// ms, with the handle check of `lookup_name` in both). A kept stream is an open
/// directory like any other:
/// entries made or removed while a listing runs may or may not show, as POSIX allows
/// (removed ones are skipped: their lookup fails). At most [`PARKED_MAX`], none older
/// than [`PARKED_FOR`]; a listing from the start always opens anew. The cookie is all
/// that names a listing, so a later one that reaches the same cookie could take the
/// stream too: a stream whose directory changed since it was opened ([`StreamOpened`]) is
/// therefore dropped rather than resumed, or a listing begun after an unlink would still
/// show the name (found by `concurrent_sequences_keep_the_invariants`).
struct Parked {
    dir: Ino,
    stream: DirStream,
    opened: StreamOpened,
    since: std::time::Instant,
}

/// How a call of [`Loopback::fill`] ended.
enum Filled {
    /// The sink was full; the stream holds the next entry.
    Stopped,
    /// The directory ended; `added`: this call gave the sink at least one entry.
    Ended { added: bool },
}

/// Most stateless listings kept part way at once.
const PARKED_MAX: usize = 8;
/// How long a stream is kept for the listing's next call.
const PARKED_FOR: std::time::Duration = std::time::Duration::from_secs(2);

impl std::fmt::Debug for Loopback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loopback")
            .field("opts", &self.opts)
            .field("inodes", &self.inode_count())
            .finish_non_exhaustive()
    }
}

/// Whether a handle opened with `flags` may read.
fn can_read(flags: OpenFlags) -> bool {
    flags.contains(OpenFlags::READ) || !flags.contains(OpenFlags::WRITE)
}

/// The host open flags for `flags` (access mode, append, truncate, sync).
fn host_flags(flags: OpenFlags) -> libc::c_int {
    let mut f = match (
        flags.contains(OpenFlags::READ),
        flags.contains(OpenFlags::WRITE),
    ) {
        (true, true) => libc::O_RDWR,
        (_, true) => libc::O_WRONLY,
        _ => libc::O_RDONLY,
    };
    if flags.contains(OpenFlags::APPEND) {
        f |= libc::O_APPEND;
    }
    if flags.contains(OpenFlags::TRUNCATE) {
        f |= libc::O_TRUNC;
    }
    if flags.contains(OpenFlags::SYNC) {
        f |= libc::O_SYNC;
    }
    f
}

/// Whether `flags` would modify the file.
fn writes(flags: OpenFlags) -> bool {
    flags.intersects(OpenFlags::WRITE | OpenFlags::TRUNCATE | OpenFlags::APPEND)
}

/// The vmount kind for a `d_type`, when it says.
fn kind_of_dtype(t: u8) -> Option<FileType> {
    Some(match t {
        libc::DT_REG => FileType::RegularFile,
        libc::DT_DIR => FileType::Directory,
        libc::DT_LNK => FileType::Symlink,
        libc::DT_FIFO => FileType::Fifo,
        libc::DT_SOCK => FileType::Socket,
        libc::DT_CHR => FileType::CharDevice,
        libc::DT_BLK => FileType::BlockDevice,
        _ => return None,
    })
}

/// Whether `ctx` passes `mask` on an object with `st`, by mode bits (Linux semantics:
/// root bypasses read/write and needs some x bit to execute a non-directory).
fn mode_allows(ctx: &Ctx, st: &Stat, mask: AccessMask) -> bool {
    #[allow(clippy::unnecessary_cast)]
    let mode = st.st_mode as u32;
    let is_dir = mode & 0o170000 == 0o040000;
    if ctx.is_root() {
        return !mask.contains(AccessMask::EXEC) || is_dir || mode & 0o111 != 0;
    }
    #[allow(clippy::unnecessary_cast)]
    let (uid, gid) = (st.st_uid as u32, st.st_gid as u32);
    let bits = if ctx.uid == uid {
        (mode >> 6) & 7
    } else if ctx.in_group(gid) {
        (mode >> 3) & 7
    } else {
        mode & 7
    };
    let mut need = 0;
    if mask.contains(AccessMask::READ) {
        need |= 4;
    }
    if mask.contains(AccessMask::WRITE) {
        need |= 2;
    }
    if mask.contains(AccessMask::EXEC) {
        need |= 1;
    }
    bits & need == need
}

impl Loopback {
    /// Mirrors `opts.source`, which must be an existing directory. Raises the process's
    /// soft limit on open descriptors to the hard limit (pinned entries hold one each;
    /// the entry-descriptor cache is sized from it, see the module docs).
    pub fn new(opts: LoopbackOptions) -> VfsResult<Loopback> {
        Self::build(opts, None)
    }

    /// Like [`new`](Self::new) with at most `entry_fds` evictable entry descriptors held
    /// (tests use a small cache to exercise eviction).
    #[doc(hidden)]
    pub fn with_entry_fd_cache(opts: LoopbackOptions, entry_fds: usize) -> VfsResult<Loopback> {
        Self::build(opts, Some(entry_fds))
    }

    fn build(opts: LoopbackOptions, capacity: Option<usize>) -> VfsResult<Loopback> {
        let fd = sys::open_root(&opts.source)?;
        let st = sys::fstat(fd.as_fd())?;
        if sys::kind(&st) != Some(FileType::Directory) {
            return Err(VfsError::NotDir);
        }
        sys::raise_nofile_limit();
        let capacity = capacity
            .unwrap_or_else(|| {
                let quarter = sys::nofile_limit()
                    .map_or(usize::MAX, |n| usize::try_from(n / 4).unwrap_or(usize::MAX));
                ENTRY_FD_CACHE_MAX.min(quarter)
            })
            .max(1);
        // Handles are used only if the source's own can be reopened: not on a host
        // filesystem without them, not without CAP_DAC_READ_SEARCH (EPERM).
        // The kernel does not take an `O_PATH` descriptor as the mount argument.
        let mount = sys::reopen(fd.as_fd(), FileType::Directory, libc::O_RDONLY)
            .ok()
            .filter(|mount| {
                sys::name_to_handle(fd.as_fd())
                    .ok()
                    .flatten()
                    .is_some_and(|h| sys::open_by_handle(mount.as_fd(), &h).is_ok())
            });
        let fd = Arc::new(fd);
        let entry_fds = Arc::new(EntryFds {
            mount,
            #[allow(clippy::unnecessary_cast)]
            root_dev: st.st_dev as u64,
            capacity,
            ring: Mutex::new(VecDeque::new()),
        });
        // The root's descriptor is pinned (no handle).
        let root = Inode::new(
            Ino::ROOT,
            sys::key(&st),
            FileType::Directory,
            fd,
            false,
            None,
            entry_fds.clone(),
        );
        let mut table = Table::default();
        table.by_key.insert(root.key, Ino::ROOT.0);
        table.by_ino.insert(Ino::ROOT.0, root);
        Ok(Loopback {
            opts,
            table: Arc::new(RwLock::new(table)),
            #[cfg(target_os = "linux")]
            watch: OnceLock::new(),
            #[cfg(target_os = "linux")]
            ahead: ahead::ReadAhead::new(),
            #[cfg(target_os = "linux")]
            xattr_epoch: Arc::new(AtomicU64::new(0)),
            next_ino: AtomicU64::new(2),
            handles: HandleTable::new(),
            cache: IoCache::new(),
            entry_fds,
            daemon_root: sys::geteuid() == 0,
            daemon_groups: sys::getgroups(),
            parked: Mutex::new(Vec::new()),
            listing_epoch: AtomicU64::new(0),
            forgetting: AtomicU64::new(0),
            never_forgetting: AtomicU64::new(0),
            registry: OnceLock::new(),
            registry_failed: AtomicBool::new(false),
            opath_backing: std::sync::atomic::AtomicU8::new(OPATH_UNKNOWN),
        })
    }

    /// Whether the last release of an object must ask the host whether it is gone: unless
    /// every adapter attached forgets its lookups, no `forget` may ever come for an object
    /// removed on the host while open (see [`Vfs::attach`]).
    fn drops_removed_itself(&self) -> bool {
        self.never_forgetting.load(Ordering::Relaxed) > 0
            || self.forgetting.load(Ordering::Relaxed) == 0
    }

    /// Whether the watcher reports changes made in the source by others.
    fn watched(&self) -> bool {
        #[cfg(target_os = "linux")]
        return self.watch.get().is_some();
        #[cfg(not(target_os = "linux"))]
        return false;
    }

    /// The table key of `name` in `dir` before a call removes or replaces it, so that
    /// the call can let go of it at once ([`Self::drop_victim`]).
    fn victim(&self, dir: BorrowedFd<'_>, name: &CStr) -> Option<(u64, u64)> {
        sys::fstatat(dir, name).ok().map(|st| sys::key(&st))
    }

    /// The kept stream of a listing of `dir` that stopped at cookie `after`, if any and
    /// if the directory has not changed since the stream was opened.
    fn unpark(&self, dir: Ino, after: u64) -> Option<(DirStream, StreamOpened)> {
        let kept = {
            let mut parked = self.parked.lock();
            parked.retain(|p| p.since.elapsed() < PARKED_FOR);
            let i = parked
                .iter()
                .position(|p| p.dir == dir && p.stream.resumes_at() == Some(after))?;
            parked.swap_remove(i)
        };
        let now = self.stream_opened(kept.stream.fd()).ok()?;
        (now == kept.opened).then_some((kept.stream, kept.opened))
    }

    /// Keeps `stream`, which stopped part way through `dir`, for the next call (the
    /// oldest kept one goes when there are [`PARKED_MAX`]).
    fn park(&self, dir: Ino, stream: DirStream, opened: StreamOpened) {
        let mut parked = self.parked.lock();
        if parked.len() >= PARKED_MAX {
            parked.remove(0);
        }
        parked.push(Parked {
            dir,
            stream,
            opened,
            since: std::time::Instant::now(),
        });
    }

    /// The state a stream of the directory open as `dir` starts from (see
    /// [`StreamOpened`]); the epochs are read before the directory's times.
    fn stream_opened(&self, dir: std::os::fd::BorrowedFd<'_>) -> std::io::Result<StreamOpened> {
        let epoch = self.listing_epoch.load(Ordering::SeqCst);
        // Only Linux watches the source.
        #[cfg(target_os = "linux")]
        let events = self.xattr_epoch.load(Ordering::SeqCst);
        #[cfg(not(target_os = "linux"))]
        let events = 0;
        let st = sys::fstat(dir)?;
        #[allow(clippy::unnecessary_cast)] // stat field types differ between platforms
        let stamp = [
            st.st_mtime as i64,
            st.st_mtime_nsec as i64,
            st.st_ctime as i64,
            st.st_ctime_nsec as i64,
        ];
        Ok(StreamOpened {
            epoch,
            events,
            stamp,
        })
    }

    /// A guard for a call that may change directory entries (see [`EntriesChange`]).
    fn entries_change(&self) -> EntriesChange<'_> {
        EntriesChange(&self.listing_epoch)
    }

    /// Stateless listings kept part way (tests).
    #[doc(hidden)]
    pub fn parked_listings(&self) -> usize {
        self.parked.lock().len()
    }

    /// Directories read ahead of tree walks so far, and how many of them a caller
    /// listed after (tests and diagnostics; see `ahead.rs`).
    #[doc(hidden)]
    #[cfg(target_os = "linux")]
    pub fn read_ahead_counts(&self) -> (u64, u64) {
        self.ahead.counts()
    }

    /// Tests: reads ahead below every listing, as if each had waited for the disk.
    #[doc(hidden)]
    #[cfg(target_os = "linux")]
    pub fn read_ahead_as_if_cold(&self) {
        self.ahead.as_if_cold();
    }

    /// Tests: waits up to `limit` until the read-ahead has nothing queued or being
    /// read, or its window is full; false if it did not get there.
    #[doc(hidden)]
    #[cfg(target_os = "linux")]
    pub fn read_ahead_settle(&self, limit: std::time::Duration) -> bool {
        self.ahead.settle(limit)
    }

    /// Number of live table entries, root included (for tests and diagnostics).
    pub fn inode_count(&self) -> u64 {
        self.table.read().by_ino.len() as u64
    }

    // -----------------------------------------------------------------------------------
    // Table.

    fn inode(&self, ino: Ino) -> VfsResult<Arc<Inode>> {
        self.table
            .read()
            .by_ino
            .get(&ino.0)
            .cloned()
            .ok_or(VfsError::Stale)
    }

    fn dir_inode(&self, ino: Ino) -> VfsResult<Arc<Inode>> {
        let inode = self.inode(ino)?;
        if inode.kind != FileType::Directory {
            return Err(VfsError::NotDir);
        }
        Ok(inode)
    }

    /// Registers the object held by `fd` (stat `st`), counting one lookup. An object
    /// already in the table keeps its entry and number; `fd` is then closed.
    ///
    /// `fd` pins the object, so a table entry with the same `(st_dev, st_ino)` that also
    /// holds its descriptor is the very same object (two live objects cannot share a
    /// key). An entry whose descriptor was evicted pins nothing: its object may be gone
    /// and the number recycled by the host, so it is matched by file handle (which
    /// carries the generation) and unmapped when it names another object.
    fn register(&self, fd: OwnedFd, st: &Stat) -> VfsResult<Arc<Inode>> {
        let key = sys::key(st);
        {
            let t = self.table.read();
            if let Some(inode) = t.by_key.get(&key).and_then(|i| t.by_ino.get(i))
                && inode.holds_fd()
            {
                inode.lookups.fetch_add(1, Ordering::Relaxed);
                return Ok(inode.clone());
            }
        }
        let kind = sys::kind(st).ok_or(VfsError::Io(std::io::Error::from_raw_os_error(
            libc::EINVAL,
        )))?;
        // Objects on other filesystems (mounts below the source) stay pinned: handles
        // are resolved on the source's filesystem. So does any object without one.
        #[allow(clippy::unnecessary_cast)]
        let evictable =
            self.entry_fds.mount.is_some() && st.st_dev as u64 == self.entry_fds.root_dev;
        // `fd`'s handle, taken only to match it against an evicted entry of the same key
        // (rare: under the write lock rather than a second pass).
        let mut handle = None;
        let mut t = self.table.write();
        if let Some(inode) = t.by_key.get(&key).and_then(|i| t.by_ino.get(i)).cloned() {
            let same = inode.holds_fd()
                || inode.handle.get().is_some_and(|h| {
                    handle = sys::name_to_handle(fd.as_fd()).ok().flatten();
                    handle.as_deref() == Some(&**h)
                });
            if same {
                inode.lookups.fetch_add(1, Ordering::Relaxed);
                return Ok(inode);
            }
            // A dead object's entry: its number stays valid (and `Stale`) until
            // forgotten, but the key now belongs to the object `fd` holds.
            t.by_key.remove(&key);
        }
        // Release: a lookup that sees this number allocated also sees `fd` opened (see
        // `lookup_name`).
        let ino = Ino(self.next_ino.fetch_add(1, Ordering::AcqRel));
        #[cfg(target_os = "linux")]
        if kind == FileType::Directory
            && let Some(w) = self.watch.get()
        {
            // With unlimited marks this fails only for a directory already gone.
            let _ = w.mark(fd.as_fd());
        }
        let inode = Inode::new(
            ino,
            key,
            kind,
            Arc::new(fd),
            evictable,
            handle.filter(|_| evictable),
            self.entry_fds.clone(),
        );
        t.by_key.insert(key, ino.0);
        t.by_ino.insert(ino.0, inode.clone());
        Ok(inode)
    }

    /// Finds (registering if needed) `name` in `parent`, counting one lookup; returns the
    /// entry and the stat taken.
    ///
    /// A stat by name alone cannot be matched against the table by `(st_dev, st_ino)`:
    /// between the stat and the match, another client could unlink the object and create
    /// a new one that the host gives the same inode number, and the name would be handed
    /// the other file's entry (the concurrent model test in `core/tests/model.rs` found
    /// writes landing in the wrong file that way). The stat is trusted only for an entry
    /// registered *before* it was taken (its number is below the next number read first)
    /// that holds its descriptor now: that object was pinned, or provably alive (reopened
    /// by handle), all along, so the number was its own when the stat saw it. Otherwise
    /// the name is opened, which pins the object, before it is matched.
    fn lookup_name(&self, parent: &Inode, name: &CStr) -> VfsResult<(Arc<Inode>, Stat)> {
        self.lookup_listed(parent, name, None)
    }

    /// [`Self::lookup_name`] for a name just read from the directory with inode number
    /// `d_ino`: when no entry has that number, the name is opened straight away instead
    /// of being stat-ed first to look for one (the open and its `fstat` follow either
    /// way), one host call less for each entry of a listing seen for the first time. The
    /// number is only a hint: a known one takes the usual way, and an object replaced
    /// meanwhile is whatever the open pins.
    fn lookup_listed(
        &self,
        parent: &Inode,
        name: &CStr,
        d_ino: Option<u64>,
    ) -> VfsResult<(Arc<Inode>, Stat)> {
        let pfd = parent.fd()?;
        if let Some(d_ino) = d_ino
            && !self
                .table
                .read()
                .by_key
                .contains_key(&(parent.key.0, d_ino))
        {
            let fd = sys::open_entry(pfd.as_fd(), name)?;
            let st = sys::fstat(fd.as_fd())?;
            let inode = self.register(fd, &st)?;
            return Ok((inode, st));
        }
        let before = self.next_ino.load(Ordering::Acquire);
        let st = sys::fstatat(pfd.as_fd(), name)?;
        let known = {
            let t = self.table.read();
            t.by_key
                .get(&sys::key(&st))
                .and_then(|i| t.by_ino.get(i))
                .filter(|inode| inode.ino.0 < before)
                .cloned()
        };
        if let Some(inode) = known {
            // An entry holding its descriptor pins its object, so the key is still its
            // own. One whose descriptor was evicted (more entries than the descriptor
            // cache holds, as when a big directory is listed) is the object at `name` if
            // the handle there is its handle (which carries the inode's generation): one
            // call instead of opening, fstat-ing, taking the handle and closing. Listing
            // 10,000 entries through NFS with a cache of 5,000 descriptors made every
            // entry take the long way on every listing.
            let same = inode.holds_fd()
                || inode.handle.get().is_some_and(|h| {
                    sys::name_to_handle_at(pfd.as_fd(), name)
                        .ok()
                        .flatten()
                        .is_some_and(|mine| mine == *h)
                });
            if same {
                inode.lookups.fetch_add(1, Ordering::Relaxed);
                return Ok((inode, st));
            }
        }
        let fd = sys::open_entry(pfd.as_fd(), name)?;
        let st = sys::fstat(fd.as_fd())?;
        let inode = self.register(fd, &st)?;
        Ok((inode, st))
    }

    /// Removes `inode` from the table when it is still there, nothing holds it open, and
    /// either no lookups remain or it is gone from the host.
    fn maybe_drop(&self, inode: &Arc<Inode>, dead: bool) {
        if inode.ino == Ino::ROOT || inode.opens.load(Ordering::Acquire) != 0 {
            return;
        }
        let removed = {
            let mut t = self.table.write();
            let current = t
                .by_ino
                .get(&inode.ino.0)
                .is_some_and(|i| Arc::ptr_eq(i, inode));
            if current
                && inode.opens.load(Ordering::Acquire) == 0
                && (dead || inode.lookups.load(Ordering::Acquire) == 0)
            {
                t.by_ino.remove(&inode.ino.0);
                if t.by_key.get(&inode.key) == Some(&inode.ino.0) {
                    t.by_key.remove(&inode.key);
                }
                true
            } else {
                false
            }
        };
        if removed {
            // Before the descriptor can close: the kernel's reference would keep the
            // object, and its space, alive.
            if let (Some(id), Some(registry)) = (inode.backing.lock().take(), self.registry.get()) {
                registry.unregister(id);
            }
            self.cache.remove(inode.ino.0);
            #[cfg(target_os = "linux")]
            if inode.kind == FileType::Directory
                && let Some(w) = self.watch.get()
                && let Ok(fd) = inode.fd()
            {
                w.unmark(fd.as_fd());
            }
        }
    }

    /// After a call removed or replaced `victim`'s name: when that was its last one, lets
    /// go of the entry now, or at its last release while it is open, so that the host
    /// frees the object before the call returns, as a removal on the host itself does.
    /// A `rm` of a big file on a full source followed by a write must not meet ENOSPC
    /// for as long as the kernel takes to forget the inode.
    ///
    /// Whether it is gone is asked of the host after the call, not inferred from the
    /// link count before: a concurrent rename may have put another object under the
    /// name, and a rename onto another link of the same object removes nothing.
    fn drop_victim(&self, key: Option<(u64, u64)>) {
        let Some(key) = key else { return };
        let inode = {
            let t = self.table.read();
            t.by_key.get(&key).and_then(|i| t.by_ino.get(i)).cloned()
        };
        let Some(inode) = inode else { return };
        // An entry that pins nothing on the host (descriptor evicted, no open handle, no
        // backing file, its stateless-I/O file let go here) already let the host free the
        // object, and when every attached adapter forgets (FUSE on Linux; not NFS, which
        // never does) the forget drops the entry a moment later. Asking whether it is
        // gone would reopen it by handle (`open_by_handle_at` and a host inode read) only
        // to be told ESTALE: 7% of the daemon's time deleting 10,000 files, 1,800 of
        // them past the descriptor cache.
        if !self.drops_removed_itself()
            && !inode.holds_fd()
            && inode.opens.load(Ordering::Acquire) == 0
            && inode.backing.lock().is_none()
        {
            self.cache.remove(inode.ino.0);
            return;
        }
        if !inode.gone() {
            return;
        }
        // Marked first: a release that ends the last open after this sees it.
        inode.removed.store(true, Ordering::Release);
        self.maybe_drop(&inode, true);
    }

    /// Stat of a live entry: an object gone from the host with no open handle is
    /// `Stale` (and leaves the table).
    fn live_stat(&self, inode: &Arc<Inode>) -> VfsResult<Stat> {
        let fd = match inode.fd() {
            Ok(fd) => fd,
            Err(VfsError::Stale) => {
                self.maybe_drop(inode, true);
                return Err(VfsError::Stale);
            }
            Err(e) => return Err(e),
        };
        let st = sys::fstat(fd.as_fd())?;
        if st.st_nlink == 0 && inode.ino != Ino::ROOT && inode.opens.load(Ordering::Acquire) == 0 {
            self.maybe_drop(inode, true);
            return Err(VfsError::Stale);
        }
        Ok(st)
    }

    #[allow(clippy::unnecessary_cast)] // stat field types differ between platforms
    fn attr(&self, inode: &Inode, st: &Stat) -> Attr {
        #[cfg(target_os = "linux")]
        let (at, mt, ct) = (
            sys::time(st.st_atime, st.st_atime_nsec),
            sys::time(st.st_mtime, st.st_mtime_nsec),
            sys::time(st.st_ctime, st.st_ctime_nsec),
        );
        #[cfg(not(target_os = "linux"))]
        let (at, mt, ct) = (
            sys::time(st.st_atime as i64, st.st_atime_nsec as i64),
            sys::time(st.st_mtime as i64, st.st_mtime_nsec as i64),
            sys::time(st.st_ctime as i64, st.st_ctime_nsec as i64),
        );
        #[cfg(target_os = "macos")]
        let crtime = sys::time(st.st_birthtime as i64, st.st_birthtime_nsec as i64);
        #[cfg(not(target_os = "macos"))]
        let crtime = ct;
        Attr {
            ino: inode.ino,
            kind: sys::kind(st).unwrap_or(inode.kind),
            perm: (st.st_mode as u32 & 0o7777) as u16,
            nlink: u32::try_from(st.st_nlink as u64).unwrap_or(u32::MAX),
            uid: st.st_uid as u32,
            gid: st.st_gid as u32,
            size: u64::try_from(st.st_size as i64).unwrap_or(0),
            blocks: u64::try_from(st.st_blocks as i64).unwrap_or(0),
            blksize: u32::try_from(st.st_blksize as i64).unwrap_or(4096),
            rdev: st.st_rdev as u64,
            atime: at,
            mtime: mt,
            ctime: ct,
            crtime,
        }
    }

    // -----------------------------------------------------------------------------------
    // Credentials and checks.

    fn creds(&self, ctx: &Ctx) -> VfsResult<CredGuard<'_>> {
        Ok(CredGuard::enter(
            ctx,
            self.daemon_root,
            &self.daemon_groups,
        )?)
    }

    /// The permission check of a host open for reading, made as the caller without the
    /// open (see `HandleData::Deferred`). A root daemon serving root needs none.
    fn may_read(&self, ctx: &Ctx, inode: &Inode) -> VfsResult<()> {
        if self.daemon_root && ctx.is_root() {
            return Ok(());
        }
        let _g = self.creds(ctx)?;
        Ok(sys::may_read(inode.fd()?.as_fd(), inode.kind)?)
    }

    fn writable(&self) -> VfsResult<()> {
        if self.opts.read_only {
            return Err(VfsError::ReadOnly);
        }
        Ok(())
    }

    /// macOS only (a root daemon serving a non-root caller): the mode-bit check the host
    /// kernel cannot make for us there. On Linux the switched credentials make the host
    /// check, so this does nothing.
    fn check(&self, ctx: &Ctx, inode: &Inode, mask: AccessMask) -> VfsResult<()> {
        if cfg!(target_os = "linux") || !self.daemon_root || ctx.is_root() {
            return Ok(());
        }
        let st = sys::fstat(inode.fd()?.as_fd())?;
        if mode_allows(ctx, &st, mask) {
            Ok(())
        } else {
            Err(VfsError::PermissionDenied)
        }
    }

    /// After a write by a user who does not own the file, the FUSE kernel clears setuid and
    /// setgid by sending a chmod in the writer's name (without
    /// `FUSE_HANDLE_KILLPRIV_V2`, which loopback cannot take: passthrough writes bypass
    /// the daemon). The host refuses a non-owner's chmod, so the write would fail with EIO,
    /// while a local write on the host clears the bits itself. So a chmod whose only
    /// change is dropping setuid and/or setgid is done as the daemon, for a caller that
    /// may write the file (checked by opening it for writing with the caller's
    /// credentials): it can clear those bits by writing anyway. `Err(())`: not that case,
    /// report the host's refusal.
    fn drop_suid_bits_for_writer(&self, ctx: &Ctx, inode: &Inode, mode: u32) -> Result<(), ()> {
        const SUID_SGID: u32 = 0o6000;
        if !self.daemon_root || inode.kind != FileType::RegularFile || ctx.is_root() {
            return Err(());
        }
        let fd = inode.fd().map_err(|_| ())?;
        let st = sys::fstat(fd.as_fd()).map_err(|_| ())?;
        let current = st.st_mode as u32 & 0o7777;
        let dropped = current & !mode;
        if dropped == 0 || dropped & !SUID_SGID != 0 || mode & !current != 0 {
            return Err(());
        }
        self.confirm_writer(inode, fd.as_fd(), None)
            .map_err(|_| ())?;
        creds::as_daemon(|| sys::chmod_entry(fd.as_fd(), inode.kind, mode)).map_err(|_| ())
    }

    /// Sets times that mean "now" but carry the kernel's exact value (the writeback
    /// cache's, see `SetAttr::ctime`): the host takes an explicit time only from the
    /// owner, while anyone who may write the file may set it to now. So, for a caller
    /// with a handle open for writing or write access (checked by opening the file for
    /// writing with the caller's credentials, as a local `touch` would be judged), the
    /// times are set as the daemon. `Err(None)`: not that case, report the host's refusal;
    /// `Err(Some(e))`: the caller may not write the file (EACCES, as for `touch`).
    fn set_now_for_writer(
        &self,
        ctx: &Ctx,
        inode: &Inode,
        fh: Option<Fh>,
        ts: &[libc::timespec; 2],
    ) -> Result<(), Option<VfsError>> {
        if !self.daemon_root || ctx.is_root() {
            return Err(None);
        }
        let fd = inode.fd().map_err(Some)?;
        self.confirm_writer(inode, fd.as_fd(), fh)
            .map_err(|e| Some(e.into()))?;
        creds::as_daemon(|| sys::utimens_entry(fd.as_fd(), inode.kind, ts))
            .map_err(|e| Some(e.into()))
    }

    /// Confirms that the caller, whose credentials this thread still has, may write
    /// `inode` (open as `fd`): through `fh` if it is a handle open for writing, else by
    /// opening the file for writing, so that the host decides as for a local writer.
    /// The two callers then act as the daemon, which the host would refuse the caller.
    fn confirm_writer(
        &self,
        inode: &Inode,
        fd: std::os::fd::BorrowedFd<'_>,
        fh: Option<Fh>,
    ) -> std::io::Result<()> {
        let writing = fh
            .and_then(|fh| self.handle(inode.ino, fh).ok())
            .is_some_and(|h| h.flags.contains(OpenFlags::WRITE));
        if !writing {
            sys::reopen(fd, inode.kind, libc::O_WRONLY)?;
        }
        Ok(())
    }

    /// macOS only: a root daemon gives objects it just created to the caller. Returns
    /// whether the owner changed (and the attributes read before are stale).
    fn give_to_caller(&self, ctx: &Ctx, inode: &Inode) -> VfsResult<bool> {
        if cfg!(target_os = "linux") || !self.daemon_root || ctx.is_root() {
            return Ok(false);
        }
        sys::chown_entry(inode.fd()?.as_fd(), Some(ctx.uid), Some(ctx.gid))?;
        Ok(true)
    }

    /// Remembers, for a file this filesystem just created, which of the xattrs asked of
    /// every new file it was born without: the kernel's `security.capability` check
    /// before the first write, and `ls -l`'s `system.posix_acl_access`. The host may give
    /// a new file some (an ACL inherited from the directory's default), so one
    /// `flistxattr` on the open descriptor finds out, where the getxattrs would each
    /// cost a host call through `/proc/self/fd` (3-4 us). Same conditions as
    /// `getxattr`'s memory: only while the source is watched, and not if an event batch
    /// began meanwhile.
    #[cfg(target_os = "linux")]
    fn note_xattrs_at_birth(&self, inode: &Inode, io: std::os::fd::BorrowedFd<'_>) {
        const ASKED: [&[u8]; 2] = [b"security.capability", b"system.posix_acl_access"];
        if self.watch.get().is_none() {
            return;
        }
        let epoch = self.xattr_epoch.load(Ordering::SeqCst);
        let Ok(list) = sys::list_xattrs_of_open(io) else {
            return;
        };
        let mut absent = inode.absent_xattrs.lock();
        if self.xattr_epoch.load(Ordering::SeqCst) != epoch {
            return;
        }
        for name in ASKED {
            if absent.len() < ABSENT_XATTRS_MAX
                && !list.split(|&b| b == 0).any(|n| n == name)
                && !absent.iter().any(|n| **n == *name)
            {
                absent.push(name.into());
            }
        }
    }

    /// Registers the object just created as `parent/name` (one lookup), gives it the
    /// exact permission bits `mode` when it is of kind `expect`, and returns its
    /// attributes. Runs as the daemon.
    fn finish_new(
        &self,
        ctx: &Ctx,
        parent: &Inode,
        name: &CStr,
        expect: FileType,
        mode: Option<u32>,
    ) -> VfsResult<Attr> {
        let (inode, mut st) = self.lookup_name(parent, name)?;
        self.give_to_caller(ctx, &inode)?;
        if let Some(mode) = mode {
            self.fix_mode(&inode, &mut st, expect, mode)?;
            // mkdir(2) ignores setuid/setgid in its mode; memfs and POSIX chmod do not.
            // Add requested ones as the caller, so the host decides whether it may.
            #[allow(clippy::unnecessary_cast)]
            let have = st.st_mode as u32 & 0o7777;
            if expect == FileType::Directory && mode & 0o7000 & !have != 0 {
                let _g = self.creds(ctx)?;
                sys::chmod_entry(inode.fd()?.as_fd(), inode.kind, have | (mode & 0o7000))?;
                st = sys::fstat(inode.fd()?.as_fd())?;
            }
        } else if !cfg!(target_os = "linux") {
            st = sys::fstat(inode.fd()?.as_fd())?;
        }
        Ok(self.attr(&inode, &st))
    }

    /// Sets the rwx bits of a new object to exactly those of `mode` when the process
    /// umask took some away; the special bits stay as the host kernel decided them (an
    /// inherited setgid bit kept, a setgid bit a non-member asked for dropped).
    #[allow(clippy::unnecessary_cast)]
    fn fix_mode(&self, inode: &Inode, st: &mut Stat, expect: FileType, mode: u32) -> VfsResult<()> {
        let have = st.st_mode as u32 & 0o7777;
        if sys::kind(st) != Some(expect) || inode.kind == FileType::Symlink {
            return Ok(());
        }
        let want = (have & 0o7000) | (mode & 0o777);
        if have != want {
            sys::chmod_entry(inode.fd()?.as_fd(), inode.kind, want)?;
            *st = sys::fstat(inode.fd()?.as_fd())?;
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------
    // Handles and descriptors.

    fn add_handle(&self, h: Handle) -> Fh {
        h.inode.opens.fetch_add(1, Ordering::AcqRel);
        self.handles.insert(h)
    }

    fn handle(&self, ino: Ino, fh: Fh) -> VfsResult<Arc<Handle>> {
        self.handles.get(ino, fh)
    }

    fn remove_handle(&self, ino: Ino, fh: Fh) -> VfsResult<()> {
        let h = self.handles.remove(ino, fh)?;
        let inode = h.inode.clone();
        drop(h); // closes the host descriptor before the entry may go
        if inode.opens.fetch_sub(1, Ordering::AcqRel) == 1 {
            // Without lookups left it goes anyway. Removed through the mount meanwhile, it
            // goes now (see `removed`). With lookups, a removal on the host is seen by the
            // forget that follows the watcher's report; on an unwatched host, or when an
            // adapter never forgets, only here.
            let dead = inode.removed.load(Ordering::Acquire)
                || ((self.drops_removed_itself() || !self.watched()) && inode.gone());
            self.maybe_drop(&inode, dead);
        }
        Ok(())
    }

    /// The descriptor for file I/O on `ino`: the handle's (checked for the access) or,
    /// without a handle, a cached one.
    fn io_fd(&self, ino: Ino, fh: Option<Fh>, write: bool) -> VfsResult<IoFd> {
        if let Some(fh) = fh {
            let h = self.handle(ino, fh)?;
            if matches!(h.data, HandleData::Dir(_)) {
                return Err(VfsError::BadHandle);
            }
            let ok = if write {
                h.flags.contains(OpenFlags::WRITE)
            } else {
                can_read(h.flags)
            };
            if !ok {
                return Err(VfsError::BadHandle);
            }
            if h.inode.kind == FileType::Directory {
                return Err(VfsError::IsDir);
            }
            return Ok(IoFd::Handle(h));
        }
        let inode = self.inode(ino)?;
        match inode.kind {
            FileType::RegularFile => {}
            FileType::Directory => return Err(VfsError::IsDir),
            _ => return Err(VfsError::InvalidArgument),
        }
        if write {
            self.writable()?;
        }
        if let Some(fd) = self.cache.get(ino.0, write) {
            return Ok(IoFd::Cached(fd));
        }
        // Opened as the daemon: stateless protocols check permissions in the adapter.
        let (fd, writable) = if self.opts.read_only {
            (
                sys::reopen(inode.fd()?.as_fd(), inode.kind, libc::O_RDONLY)?,
                false,
            )
        } else {
            match sys::reopen(inode.fd()?.as_fd(), inode.kind, libc::O_RDWR) {
                Ok(fd) => (fd, true),
                Err(e)
                    if !write
                        && matches!(
                            e.raw_os_error(),
                            Some(libc::EACCES | libc::EPERM | libc::EROFS | libc::ETXTBSY)
                        ) =>
                {
                    (
                        sys::reopen(inode.fd()?.as_fd(), inode.kind, libc::O_RDONLY)?,
                        false,
                    )
                }
                Err(e) => return Err(e.into()),
            }
        };
        let fd = Arc::new(fd);
        // Still registered? (A concurrent drop must not leave a descriptor behind.)
        self.cache.insert(ino.0, writable, fd.clone(), || {
            self.table.read().by_ino.contains_key(&ino.0)
        });
        Ok(IoFd::Cached(fd))
    }

    /// Lists `inode` from `stream` after `after` into `sink`.
    fn fill(
        &self,
        dir: &Inode,
        stream: &mut DirStream,
        after: u64,
        sink: &mut dyn DirSink,
    ) -> VfsResult<Filled> {
        stream.seek(after)?;
        #[cfg(target_os = "linux")]
        let mut subdirs = Vec::new();
        #[cfg(target_os = "linux")]
        let before = ahead::blocks_read();
        let filled = self.fill_from(
            dir,
            stream,
            sink,
            #[cfg(target_os = "linux")]
            &mut subdirs,
        );
        // Whether it failed or not: what was listed says how cold the tree is.
        #[cfg(target_os = "linux")]
        self.ahead.listed(dir.key, stream.fd(), subdirs, before);
        filled
    }

    /// [`Loopback::fill`]'s loop, which also collects the subdirectories met (Linux).
    fn fill_from(
        &self,
        dir: &Inode,
        stream: &mut DirStream,
        sink: &mut dyn DirSink,
        #[cfg(target_os = "linux")] subdirs: &mut Vec<(std::ffi::CString, (u64, u64))>,
    ) -> VfsResult<Filled> {
        let plus = sink.wants_attr();
        let mut added = false;
        while let Some(e) = stream.next_entry()? {
            if e.name == b"." || e.name == b".." {
                continue;
            }
            let name = OsStr::from_bytes(&e.name);
            let cname = sys::cname(name)?;
            let accepted = if plus {
                let (inode, st) = match self.lookup_listed(dir, &cname, Some(e.d_ino)) {
                    Ok(x) => x,
                    Err(VfsError::NotFound) => continue, // removed meanwhile
                    Err(err) => return Err(err),
                };
                let attr = self.attr(&inode, &st);
                #[cfg(target_os = "linux")]
                if attr.kind == FileType::Directory {
                    subdirs.push((cname, sys::key(&st)));
                }
                let full = sink.add(&DirEntry {
                    name,
                    ino: inode.ino,
                    kind: attr.kind,
                    cookie: e.cookie,
                    attr: Some(attr),
                });
                if full {
                    inode.lookups.fetch_sub(1, Ordering::AcqRel);
                    self.maybe_drop(&inode, false);
                }
                !full
            } else {
                let (kind, key) = match kind_of_dtype(e.d_type) {
                    Some(k) => (k, (dir.key.0, e.d_ino)),
                    None => match sys::fstatat(dir.fd()?.as_fd(), &cname) {
                        Ok(st) => (
                            sys::kind(&st).unwrap_or(FileType::RegularFile),
                            sys::key(&st),
                        ),
                        Err(err) if err.raw_os_error() == Some(libc::ENOENT) => continue,
                        Err(err) => return Err(err.into()),
                    },
                };
                #[cfg(target_os = "linux")]
                if kind == FileType::Directory {
                    subdirs.push((cname, key));
                }
                let ino = {
                    let t = self.table.read();
                    t.by_key.get(&key).copied()
                }
                .unwrap_or(SYNTHETIC_INO | (key.1 & !SYNTHETIC_INO));
                !sink.add(&DirEntry {
                    name,
                    ino: Ino(ino),
                    kind,
                    cookie: e.cookie,
                    attr: None,
                })
            };
            if !accepted {
                stream.unread();
                return Ok(Filled::Stopped);
            }
            added = true;
        }
        Ok(Filled::Ended { added })
    }
}

impl Vfs for Loopback {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            xattrs: true,
            hard_links: true,
            symlinks: true,
            special_files: true,
            case_sensitive: !cfg!(target_os = "macos"),
            read_only: self.opts.read_only,
            sparse_files: true,
            enforces_permissions: self.daemon_root,
            // The host removes privileges on every write made as the caller, and handles
            // whose passthrough writes would keep setuid/setgid are not passed through
            // (see `passthrough_keeps_privileges`). macFUSE has no such flag.
            kills_privileges: cfg!(target_os = "linux"),
            max_name_len: NAME_MAX as u32,
        }
    }

    fn lookup(&self, ctx: &Ctx, parent: Ino, name: &OsStr) -> VfsResult<Attr> {
        check_name(name)?;
        let dir = self.dir_inode(parent)?;
        let cname = sys::cname(name)?;
        self.check(ctx, &dir, AccessMask::EXEC)?;
        let _g = self.creds(ctx)?;
        let (inode, st) = self.lookup_name(&dir, &cname)?;
        Ok(self.attr(&inode, &st))
    }

    /// Changes made in the source by other processes, through fanotify (see `watch.rs`):
    /// Linux, with file handles that reopen (a root daemon).
    #[cfg(target_os = "linux")]
    fn watch_changes(&self, sink: Arc<dyn crate::ChangeSink>) -> bool {
        if self.entry_fds.mount.is_none() || self.watch.get().is_some() {
            return false;
        }
        let Ok(w) = watch::Watcher::new() else {
            return false;
        };
        let w = Arc::new(w);
        // Directories registered so far (the root, normally alone) are marked now,
        // later ones as they are registered.
        let dirs: Vec<Arc<Inode>> = self
            .table
            .read()
            .by_ino
            .values()
            .filter(|i| i.kind == FileType::Directory)
            .cloned()
            .collect();
        for d in dirs {
            let Ok(fd) = d.fd() else { continue };
            if w.mark(fd.as_fd()).is_err() && d.ino == Ino::ROOT {
                return false;
            }
        }
        if self.watch.set(Arc::clone(&w)).is_err() {
            return false;
        }
        let table = Arc::downgrade(&self.table);
        let fds = Arc::clone(&self.entry_fds);
        let epoch = Arc::clone(&self.xattr_epoch);
        std::thread::Builder::new()
            .name("vmount-watch".to_owned())
            .spawn(move || w.run(table, fds, epoch, sink))
            .is_ok()
    }

    fn attach(&self, forgets: bool) {
        let count = if forgets {
            &self.forgetting
        } else {
            &self.never_forgetting
        };
        count.fetch_add(1, Ordering::Relaxed);
    }

    fn forget(&self, ino: Ino, nlookup: u64) {
        let Ok(inode) = self.inode(ino) else { return };
        let mut cur = inode.lookups.load(Ordering::Acquire);
        loop {
            let new = cur.saturating_sub(nlookup);
            match inode
                .lookups
                .compare_exchange(cur, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        self.maybe_drop(&inode, false);
    }

    fn getattr(&self, _ctx: &Ctx, ino: Ino, fh: Option<Fh>) -> VfsResult<Attr> {
        if let Some(fh) = fh {
            let h = self.handle(ino, fh)?;
            let st = match &h.data {
                HandleData::File(fd) => sys::fstat(fd.as_fd())?,
                HandleData::Deferred(_) | HandleData::Dir(_) => sys::fstat(h.inode.fd()?.as_fd())?,
            };
            return Ok(self.attr(&h.inode, &st));
        }
        let inode = self.inode(ino)?;
        let st = self.live_stat(&inode)?;
        Ok(self.attr(&inode, &st))
    }

    fn setattr(&self, ctx: &Ctx, ino: Ino, set: &SetAttr, fh: Option<Fh>) -> VfsResult<Attr> {
        let inode = match fh {
            Some(fh) => self.handle(ino, fh)?.inode.clone(),
            None => self.inode(ino)?,
        };
        if set.is_empty() {
            let st = self.live_stat(&inode)?;
            return Ok(self.attr(&inode, &st));
        }
        self.writable()?;
        let _g = self.creds(ctx)?;
        if set.uid.is_some() || set.gid.is_some() {
            sys::chown_entry(inode.fd()?.as_fd(), set.uid, set.gid)?;
        }
        if let Some(mode) = set.mode {
            let fd = inode.fd()?;
            match sys::chmod_entry(fd.as_fd(), inode.kind, mode & 0o7777) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                    self.drop_suid_bits_for_writer(ctx, &inode, mode & 0o7777)
                        .map_err(|()| VfsError::from(e))?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(size) = set.size {
            match inode.kind {
                FileType::RegularFile => {}
                FileType::Directory => return Err(VfsError::IsDir),
                _ => return Err(VfsError::InvalidArgument),
            }
            let handle = match fh {
                Some(fh) => Some(self.handle(ino, fh)?),
                None => None,
            };
            match handle {
                Some(h) if h.flags.contains(OpenFlags::WRITE) => {
                    sys::ftruncate(IoFd::Handle(h).fd()?, size)?;
                }
                _ => {
                    self.check(ctx, &inode, AccessMask::WRITE)?;
                    let fd = sys::reopen(inode.fd()?.as_fd(), inode.kind, libc::O_WRONLY)?;
                    sys::ftruncate(fd.as_fd(), size)?;
                }
            }
        }
        let mut mtime = set.mtime;
        // A kernel keeping the times itself (see `SetAttr::ctime`) also sends an mtime
        // the host already has: that changes nothing, and the caller (who may only have
        // renamed the file and closed it) needs no right to it.
        if set.ctime.is_some()
            && matches!(mtime, Some(SetTime::At(_)))
            && set.mtime_is_kept(self.attr(&inode, &sys::fstat(inode.fd()?.as_fd())?).mtime)
        {
            mtime = None;
        }
        if set.atime.is_some() || mtime.is_some() {
            let ts = sys::utimes_pair(set.atime, mtime)?;
            match sys::utimens_entry(inode.fd()?.as_fd(), inode.kind, &ts) {
                Ok(()) => {}
                Err(e)
                    if e.raw_os_error() == Some(libc::EPERM)
                        && mtime.is_some()
                        && set.mtime_is_now()
                        && !matches!(set.atime, Some(SetTime::At(_))) =>
                {
                    self.set_now_for_writer(ctx, &inode, fh, &ts)
                        .map_err(|why| why.unwrap_or_else(|| VfsError::from(e)))?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        // `set.ctime` cannot be set on a host filesystem; the host moves it itself.
        let st = sys::fstat(inode.fd()?.as_fd())?;
        Ok(self.attr(&inode, &st))
    }

    fn readlink(&self, _ctx: &Ctx, ino: Ino) -> VfsResult<Vec<u8>> {
        let inode = self.inode(ino)?;
        if inode.kind != FileType::Symlink {
            return Err(VfsError::InvalidArgument);
        }
        Ok(sys::readlink_entry(inode.fd()?.as_fd())?)
    }

    fn mknod(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &OsStr,
        kind: FileType,
        mode: u32,
        rdev: u64,
    ) -> VfsResult<Attr> {
        let _change = self.entries_change();
        check_name(name)?;
        let dir = self.dir_inode(parent)?;
        if matches!(kind, FileType::Directory | FileType::Symlink) {
            return Err(VfsError::InvalidArgument);
        }
        self.writable()?;
        let cname = sys::cname(name)?;
        let perm = mode & !ctx.umask & 0o7777;
        let rdev = if matches!(kind, FileType::CharDevice | FileType::BlockDevice) {
            if !cfg!(target_os = "linux") && self.daemon_root && !ctx.is_root() {
                return Err(VfsError::NotPermitted);
            }
            rdev
        } else {
            0
        };
        self.check(ctx, &dir, AccessMask::WRITE | AccessMask::EXEC)?;
        {
            let _g = self.creds(ctx)?;
            sys::mknodat(dir.fd()?.as_fd(), &cname, kind.mode_bits() | perm, rdev)?;
        }
        self.finish_new(ctx, &dir, &cname, kind, Some(perm))
    }

    fn mkdir(&self, ctx: &Ctx, parent: Ino, name: &OsStr, mode: u32) -> VfsResult<Attr> {
        let _change = self.entries_change();
        check_name(name)?;
        let dir = self.dir_inode(parent)?;
        self.writable()?;
        let cname = sys::cname(name)?;
        let perm = mode & !ctx.umask & 0o7777;
        self.check(ctx, &dir, AccessMask::WRITE | AccessMask::EXEC)?;
        {
            let _g = self.creds(ctx)?;
            sys::mkdirat(dir.fd()?.as_fd(), &cname, perm)?;
        }
        self.finish_new(ctx, &dir, &cname, FileType::Directory, Some(perm))
    }

    fn unlink(&self, ctx: &Ctx, parent: Ino, name: &OsStr) -> VfsResult<()> {
        let _change = self.entries_change();
        check_name(name)?;
        let dir = self.dir_inode(parent)?;
        self.writable()?;
        let cname = sys::cname(name)?;
        self.check(ctx, &dir, AccessMask::WRITE | AccessMask::EXEC)?;
        let victim = {
            let _g = self.creds(ctx)?;
            let victim = self.victim(dir.fd()?.as_fd(), &cname);
            sys::unlinkat(dir.fd()?.as_fd(), &cname, false)?;
            victim
        };
        self.drop_victim(victim);
        Ok(())
    }

    fn rmdir(&self, ctx: &Ctx, parent: Ino, name: &OsStr) -> VfsResult<()> {
        let _change = self.entries_change();
        check_name(name)?;
        let dir = self.dir_inode(parent)?;
        self.writable()?;
        let cname = sys::cname(name)?;
        self.check(ctx, &dir, AccessMask::WRITE | AccessMask::EXEC)?;
        let victim = {
            let _g = self.creds(ctx)?;
            let victim = self.victim(dir.fd()?.as_fd(), &cname);
            sys::unlinkat(dir.fd()?.as_fd(), &cname, true)?;
            victim
        };
        self.drop_victim(victim);
        Ok(())
    }

    fn symlink(&self, ctx: &Ctx, parent: Ino, name: &OsStr, target: &OsStr) -> VfsResult<Attr> {
        let _change = self.entries_change();
        check_name(name)?;
        let dir = self.dir_inode(parent)?;
        self.writable()?;
        let cname = sys::cname(name)?;
        let ctarget = sys::cbytes(target.as_bytes())?;
        self.check(ctx, &dir, AccessMask::WRITE | AccessMask::EXEC)?;
        {
            let _g = self.creds(ctx)?;
            sys::symlinkat(&ctarget, dir.fd()?.as_fd(), &cname)?;
        }
        self.finish_new(ctx, &dir, &cname, FileType::Symlink, None)
    }

    fn rename(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        flags: RenameFlags,
    ) -> VfsResult<()> {
        let _change = self.entries_change();
        check_name(name)?;
        check_name(new_name)?;
        let noreplace = flags.contains(RenameFlags::NOREPLACE);
        let exchange = flags.contains(RenameFlags::EXCHANGE);
        if noreplace && exchange {
            return Err(VfsError::InvalidArgument);
        }
        let from = self.dir_inode(parent)?;
        let to = self.dir_inode(new_parent)?;
        self.writable()?;
        let (cold, cnew) = (sys::cname(name)?, sys::cname(new_name)?);
        self.check(ctx, &from, AccessMask::WRITE | AccessMask::EXEC)?;
        self.check(ctx, &to, AccessMask::WRITE | AccessMask::EXEC)?;
        let victim = {
            let _g = self.creds(ctx)?;
            let victim = if exchange {
                None
            } else {
                self.victim(to.fd()?.as_fd(), &cnew)
            };
            sys::renameat(
                from.fd()?.as_fd(),
                &cold,
                to.fd()?.as_fd(),
                &cnew,
                noreplace,
                exchange,
            )?;
            victim
        };
        self.drop_victim(victim);
        Ok(())
    }

    fn link(&self, ctx: &Ctx, ino: Ino, new_parent: Ino, new_name: &OsStr) -> VfsResult<Attr> {
        let _change = self.entries_change();
        check_name(new_name)?;
        let inode = self.inode(ino)?;
        let dir = self.dir_inode(new_parent)?;
        self.writable()?;
        if inode.kind == FileType::Directory {
            return Err(VfsError::NotPermitted);
        }
        let cname = sys::cname(new_name)?;
        self.check(ctx, &dir, AccessMask::WRITE | AccessMask::EXEC)?;
        {
            let _g = self.creds(ctx)?;
            sys::link_entry(inode.fd()?.as_fd(), dir.fd()?.as_fd(), &cname)?;
        }
        let (linked, st) = self.lookup_name(&dir, &cname)?;
        Ok(self.attr(&linked, &st))
    }

    fn open(&self, ctx: &Ctx, ino: Ino, flags: OpenFlags) -> VfsResult<Opened> {
        let inode = self.inode(ino)?;
        match inode.kind {
            FileType::RegularFile => {}
            FileType::Directory if writes(flags) => return Err(VfsError::IsDir),
            FileType::Directory => {}
            FileType::Symlink => return Err(VfsError::Loop),
            _ => return Err(VfsError::NotSupported),
        }
        if writes(flags) {
            self.writable()?;
        }
        let mut mask = AccessMask::empty();
        if can_read(flags) {
            mask |= AccessMask::READ;
        }
        if writes(flags) {
            mask |= AccessMask::WRITE;
        }
        self.check(ctx, &inode, mask)?;
        if cfg!(target_os = "linux") && inode.kind == FileType::RegularFile && !writes(flags) {
            // Read-only: no host open now (see `HandleData::Deferred`).
            self.may_read(ctx, &inode)?;
            let fh = self.add_handle(Handle {
                inode,
                flags,
                data: HandleData::Deferred(Default::default()),
                passthrough: true,
                created: false,
            });
            return Ok(Opened {
                fh,
                direct_io: flags.contains(OpenFlags::DIRECT),
                keep_cache: false,
                no_flush: true,
            });
        }
        let fd = {
            let _g = self.creds(ctx)?;
            sys::reopen(inode.fd()?.as_fd(), inode.kind, host_flags(flags))?
        };
        let direct_io = flags.contains(OpenFlags::DIRECT);
        let passthrough = inode.kind == FileType::RegularFile
            && !(writes(flags)
                && !ctx.is_root()
                && passthrough_keeps_privileges(
                    ctx,
                    flags,
                    sys::fstat(fd.as_fd())?.st_mode as u32,
                ));
        let fh = self.add_handle(Handle {
            inode,
            flags,
            data: HandleData::File(fd),
            passthrough,
            created: false,
        });
        Ok(Opened {
            fh,
            direct_io,
            // The host may change the file behind the kernel's back: drop its cache on
            // open (close-to-open consistency).
            keep_cache: false,
            // `flush` is the trait's no-op: the host descriptor is closed on release.
            no_flush: true,
        })
    }

    fn create(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        flags: OpenFlags,
    ) -> VfsResult<(Attr, Opened)> {
        let _change = self.entries_change();
        check_name(name)?;
        let dir = self.dir_inode(parent)?;
        self.writable()?;
        let cname = sys::cname(name)?;
        let perm = mode & !ctx.umask & 0o7777;
        // An exclusive create either makes a new regular file or opens nothing, so only
        // the open of an existing name needs O_NONBLOCK (never hang on a fifo's open or a
        // lease break), which is then cleared for I/O.
        let base = host_flags(flags);
        self.check(ctx, &dir, AccessMask::WRITE | AccessMask::EXEC)?;
        let (fd, created) = {
            let _g = self.creds(ctx)?;
            let mut tries = 0;
            loop {
                match sys::open_beneath(
                    dir.fd()?.as_fd(),
                    &cname,
                    base | libc::O_CREAT | libc::O_EXCL,
                    perm,
                ) {
                    Ok(fd) => break (fd, true),
                    Err(e)
                        if e.raw_os_error() == Some(libc::EEXIST)
                            && !flags.contains(OpenFlags::EXCLUSIVE) =>
                    {
                        // Never open a device, fifo or socket of the host just to find
                        // out it is not a regular file.
                        match sys::fstatat(dir.fd()?.as_fd(), &cname).map(|st| sys::kind(&st)) {
                            Ok(Some(FileType::RegularFile)) => {}
                            Ok(Some(FileType::Directory)) => return Err(VfsError::IsDir),
                            Ok(_) => return Err(VfsError::Exists),
                            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && tries < 8 => {
                                tries += 1;
                                continue;
                            }
                            Err(e) => return Err(e.into()),
                        }
                        match sys::open_beneath(
                            dir.fd()?.as_fd(),
                            &cname,
                            base | libc::O_NONBLOCK,
                            0,
                        ) {
                            Ok(fd) => break (fd, false),
                            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && tries < 8 => {
                                tries += 1;
                            }
                            Err(e) => return Err(e.into()),
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        let st = sys::fstat(fd.as_fd())?;
        match sys::kind(&st) {
            Some(FileType::RegularFile) => {}
            Some(FileType::Directory) => return Err(VfsError::IsDir),
            _ => return Err(VfsError::Exists),
        }
        if !created {
            sys::clear_nonblock(fd.as_fd())?;
        }
        let entry = sys::entry_from_io(fd.as_fd(), FileType::RegularFile)?;
        let inode = self.register(entry, &st)?;
        #[cfg(target_os = "linux")]
        if created {
            self.note_xattrs_at_birth(&inode, fd.as_fd());
        }
        if !created {
            let mut mask = AccessMask::empty();
            if can_read(flags) {
                mask |= AccessMask::READ;
            }
            if writes(flags) {
                mask |= AccessMask::WRITE;
            }
            if let Err(e) = self.check(ctx, &inode, mask) {
                inode.lookups.fetch_sub(1, Ordering::AcqRel);
                self.maybe_drop(&inode, false);
                return Err(e);
            }
        }
        let mut st = st;
        if self.give_to_caller(ctx, &inode)? {
            st = sys::fstat(fd.as_fd())?;
        }
        if created {
            self.fix_mode(&inode, &mut st, FileType::RegularFile, perm)?;
        }
        let attr = self.attr(&inode, &st);
        let direct_io = flags.contains(OpenFlags::DIRECT);
        let passthrough = !passthrough_keeps_privileges(ctx, flags, st.st_mode as u32);
        let fh = self.add_handle(Handle {
            inode,
            flags,
            data: HandleData::File(fd),
            passthrough,
            created: true,
        });
        Ok((
            attr,
            Opened {
                fh,
                direct_io,
                keep_cache: false,
                no_flush: true,
            },
        ))
    }

    fn read(
        &self,
        _ctx: &Ctx,
        ino: Ino,
        fh: Option<Fh>,
        offset: u64,
        buf: &mut [u8],
    ) -> VfsResult<usize> {
        let io = self.io_fd(ino, fh, false)?;
        if offset > i64::MAX as u64 {
            return Ok(0);
        }
        let max = (i64::MAX as u64 - offset).min(buf.len() as u64) as usize;
        Ok(sys::pread(io.fd()?, &mut buf[..max], offset)?)
    }

    fn write(
        &self,
        ctx: &Ctx,
        ino: Ino,
        fh: Option<Fh>,
        offset: u64,
        data: &[u8],
    ) -> VfsResult<u32> {
        self.writable()?;
        let io = self.io_fd(ino, fh, true)?;
        let data = &data[..data.len().min(u32::MAX as usize)];
        if offset
            .checked_add(data.len() as u64)
            .is_none_or(|end| end > i64::MAX as u64)
        {
            return Err(VfsError::FileTooLarge);
        }
        // As the caller, so that the host clears setuid/setgid as POSIX requires.
        let _g = self.creds(ctx)?;
        let n = sys::pwrite(io.fd()?, data, offset)?;
        Ok(n as u32)
    }

    fn release(&self, _ctx: &Ctx, ino: Ino, fh: Fh) -> VfsResult<()> {
        self.remove_handle(ino, fh)
    }

    fn fsync(&self, _ctx: &Ctx, ino: Ino, fh: Option<Fh>, datasync: bool) -> VfsResult<()> {
        let io = match fh {
            Some(fh) => {
                let h = self.handle(ino, fh)?;
                if let HandleData::Dir(_) = &h.data {
                    sys::fsync(dir_stream(&h)?.fd(), datasync)?;
                    return Ok(());
                }
                IoFd::Handle(h)
            }
            None => {
                let inode = self.inode(ino)?;
                if inode.kind == FileType::Directory {
                    let fd = sys::reopen(inode.fd()?.as_fd(), inode.kind, libc::O_RDONLY)?;
                    sys::fsync(fd.as_fd(), datasync)?;
                    return Ok(());
                }
                self.io_fd(ino, None, false)?
            }
        };
        sys::fsync(io.fd()?, datasync)?;
        Ok(())
    }

    fn opendir(&self, ctx: &Ctx, ino: Ino, _flags: OpenFlags) -> VfsResult<Fh> {
        let inode = self.dir_inode(ino)?;
        self.check(ctx, &inode, AccessMask::READ)?;
        let stream = if cfg!(target_os = "linux") {
            // Deferred (see `HandleData::Dir`); the permission check is the open's.
            self.may_read(ctx, &inode)?;
            None
        } else {
            let fd = {
                let _g = self.creds(ctx)?;
                sys::reopen(inode.fd()?.as_fd(), inode.kind, libc::O_RDONLY)?
            };
            Some(dir::open_stream(fd)?)
        };
        Ok(self.add_handle(Handle {
            inode,
            flags: OpenFlags::READ,
            data: HandleData::Dir(Mutex::new(stream)),
            passthrough: false,
            created: false,
        }))
    }

    fn readdir(
        &self,
        ctx: &Ctx,
        ino: Ino,
        fh: Option<Fh>,
        after: u64,
        sink: &mut dyn DirSink,
    ) -> VfsResult<()> {
        if let Some(fh) = fh {
            let h = self.handle(ino, fh)?;
            let _g = self.creds(ctx)?;
            let mut stream = dir_stream(&h)?;
            return self.fill(&h.inode, &mut stream, after, sink).map(drop);
        }
        let inode = self.dir_inode(ino)?;
        self.check(ctx, &inode, AccessMask::READ)?;
        let _g = self.creds(ctx)?;
        let kept = if after == 0 {
            None
        } else {
            self.unpark(ino, after)
        };
        let (mut stream, opened) = match kept {
            Some(kept) => kept,
            None => {
                let fd = sys::reopen(inode.fd()?.as_fd(), inode.kind, libc::O_RDONLY)?;
                // Before the first read: a change after this point drops the stream.
                let opened = self.stream_opened(fd.as_fd())?;
                (dir::open_stream(fd)?, opened)
            }
        };
        // A listing that reached the end keeps its stream too when the caller asks once
        // more to learn that (FUSE): opening the directory again for an empty answer cost
        // that call 2.5-3 us.
        let keep = match self.fill(&inode, &mut stream, after, sink)? {
            Filled::Stopped => true,
            Filled::Ended { added } => added && sink.asks_again_at_the_end(),
        };
        if keep {
            self.park(ino, stream, opened);
        }
        Ok(())
    }

    fn releasedir(&self, _ctx: &Ctx, ino: Ino, fh: Fh) -> VfsResult<()> {
        self.remove_handle(ino, fh)
    }

    fn fsyncdir(&self, ctx: &Ctx, ino: Ino, fh: Option<Fh>, datasync: bool) -> VfsResult<()> {
        self.fsync(ctx, ino, fh, datasync)
    }

    #[allow(clippy::unnecessary_cast)] // statvfs field types differ between platforms
    fn statfs(&self, _ctx: &Ctx, ino: Ino) -> VfsResult<StatFs> {
        let inode = self.inode(ino)?;
        let st = sys::fstatvfs(inode.fd()?.as_fd())?;
        Ok(StatFs {
            blocks: st.f_blocks as u64,
            bfree: st.f_bfree as u64,
            bavail: st.f_bavail as u64,
            files: st.f_files as u64,
            ffree: st.f_ffree as u64,
            bsize: u32::try_from(st.f_bsize as u64).unwrap_or(4096),
            frsize: u32::try_from(st.f_frsize as u64).unwrap_or(4096),
            namelen: u32::try_from(st.f_namemax as u64).unwrap_or(NAME_MAX as u32),
        })
    }

    fn access(&self, ctx: &Ctx, ino: Ino, mask: AccessMask) -> VfsResult<()> {
        let inode = self.inode(ino)?;
        let st = self.live_stat(&inode)?;
        if mask.contains(AccessMask::WRITE) {
            self.writable()?;
        }
        if mask.is_empty() {
            return Ok(());
        }
        #[cfg(target_os = "linux")]
        {
            let mut m = 0;
            if mask.contains(AccessMask::READ) {
                m |= libc::R_OK;
            }
            if mask.contains(AccessMask::WRITE) {
                m |= libc::W_OK;
            }
            if mask.contains(AccessMask::EXEC) {
                m |= libc::X_OK;
            }
            let _g = self.creds(ctx)?;
            if sys::access_entry(inode.fd()?.as_fd(), m)?.is_some() {
                return Ok(());
            }
        }
        // No faccessat2 (old kernel) or no per-thread credentials (macOS): mode bits.
        if !self.daemon_root && !cfg!(target_os = "linux") {
            return Ok(()); // the host decides on use; see the module docs
        }
        if mode_allows(ctx, &st, mask) {
            Ok(())
        } else {
            Err(VfsError::PermissionDenied)
        }
    }

    fn setxattr(
        &self,
        ctx: &Ctx,
        ino: Ino,
        name: &OsStr,
        value: &[u8],
        flags: XattrFlags,
    ) -> VfsResult<()> {
        let inode = self.inode(ino)?;
        self.writable()?;
        let cname = xattr_cname(name)?;
        let efd = inode.fd()?;
        let target = sys::XattrTarget::new(efd.as_fd(), inode.kind)?;
        let _g = self.creds(ctx)?;
        let r = target.set(
            &cname,
            value,
            flags.contains(XattrFlags::CREATE),
            flags.contains(XattrFlags::REPLACE),
        );
        #[cfg(target_os = "linux")]
        {
            // After the host call: a concurrent miss that raced with it either sees the
            // new epoch and is not remembered, or was remembered before this clear.
            self.xattr_epoch.fetch_add(1, Ordering::SeqCst);
            inode.absent_xattrs.lock().clear();
        }
        r?;
        Ok(())
    }

    /// Where the source is watched (Linux, root), a miss on a `security.*` or `system.*` name is
    /// remembered per object: `ls -l` asks for `system.posix_acl_access` of every file, and the
    /// kernel for `security.capability` before a chown, each a host call (3-4 us through
    /// `/proc/self/fd`) that answers the same ENODATA every time. Those reads need no permission,
    /// so the answer is the same for every caller. An xattr appears only through a setxattr (the
    /// kernel creates none on an existing object), so the memory is dropped on this filesystem's
    /// `setxattr` and on every change the watcher hears of for the object; a miss is remembered
    /// only if no such event batch or setxattr began since the host was asked (`xattr_epoch`), so
    /// one racing with the change is not kept.
    fn getxattr(&self, ctx: &Ctx, ino: Ino, name: &OsStr) -> VfsResult<Vec<u8>> {
        let inode = self.inode(ino)?;
        let cname = xattr_cname(name)?;
        #[cfg(target_os = "linux")]
        let remember = self.watch.get().is_some() && remembered_miss(name.as_bytes());
        #[cfg(target_os = "linux")]
        let epoch = if remember {
            if inode
                .absent_xattrs
                .lock()
                .iter()
                .any(|n| **n == *name.as_bytes())
            {
                return Err(VfsError::NoAttribute);
            }
            self.xattr_epoch.load(Ordering::SeqCst)
        } else {
            0
        };
        let efd = inode.fd()?;
        let target = sys::XattrTarget::new(efd.as_fd(), inode.kind)?;
        let _g = self.creds(ctx)?;
        let r = target.get(&cname);
        #[cfg(target_os = "linux")]
        if remember
            && r.as_ref()
                .is_err_and(|e| e.raw_os_error() == Some(libc::ENODATA))
        {
            let mut absent = inode.absent_xattrs.lock();
            if self.xattr_epoch.load(Ordering::SeqCst) == epoch && absent.len() < ABSENT_XATTRS_MAX
            {
                absent.push(name.as_bytes().into());
            }
        }
        Ok(r?)
    }

    fn listxattr(&self, ctx: &Ctx, ino: Ino) -> VfsResult<Vec<OsString>> {
        let inode = self.inode(ino)?;
        let efd = inode.fd()?;
        let target = match sys::XattrTarget::new(efd.as_fd(), inode.kind) {
            Ok(t) => t,
            // Symlinks on Linux: nothing can be listed without following them.
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let _g = self.creds(ctx)?;
        let raw = target.list()?;
        Ok(raw
            .split(|&b| b == 0)
            .filter(|n| !n.is_empty() && !is_selinux_label(n))
            .map(|n| OsStr::from_bytes(n).to_owned())
            .collect())
    }

    fn removexattr(&self, ctx: &Ctx, ino: Ino, name: &OsStr) -> VfsResult<()> {
        let inode = self.inode(ino)?;
        self.writable()?;
        let cname = xattr_cname(name)?;
        let efd = inode.fd()?;
        let target = sys::XattrTarget::new(efd.as_fd(), inode.kind)?;
        let _g = self.creds(ctx)?;
        target.remove(&cname)?;
        Ok(())
    }

    fn fallocate(
        &self,
        ctx: &Ctx,
        ino: Ino,
        fh: Option<Fh>,
        offset: u64,
        len: u64,
        mode: FallocateFlags,
    ) -> VfsResult<()> {
        self.writable()?;
        let io = self.io_fd(ino, fh, true)?;
        let _g = self.creds(ctx)?;
        sys::fallocate(
            io.fd()?,
            offset,
            len,
            mode.contains(FallocateFlags::KEEP_SIZE),
            mode.contains(FallocateFlags::PUNCH_HOLE),
            mode.contains(FallocateFlags::ZERO_RANGE),
        )
    }

    fn copy_file_range(
        &self,
        ctx: &Ctx,
        ino_in: Ino,
        fh_in: Option<Fh>,
        offset_in: u64,
        ino_out: Ino,
        fh_out: Option<Fh>,
        offset_out: u64,
        len: u64,
    ) -> VfsResult<u64> {
        self.writable()?;
        let src = self.io_fd(ino_in, fh_in, false)?;
        let dst = self.io_fd(ino_out, fh_out, true)?;
        let _g = self.creds(ctx)?;
        if let Some(n) = sys::copy_file_range(src.fd()?, offset_in, dst.fd()?, offset_out, len)? {
            return Ok(n);
        }
        // No host copy_file_range for these files: copy through a buffer.
        if ino_in == ino_out {
            let a_end = offset_in
                .checked_add(len)
                .ok_or(VfsError::InvalidArgument)?;
            let b_end = offset_out.checked_add(len).ok_or(VfsError::FileTooLarge)?;
            if offset_in < b_end && offset_out < a_end {
                return Err(VfsError::InvalidArgument);
            }
        }
        let mut buf = vec![0u8; (1 << 20).min(usize::try_from(len).unwrap_or(usize::MAX))];
        let mut done: u64 = 0;
        while done < len {
            let want = usize::try_from(len - done)
                .unwrap_or(usize::MAX)
                .min(buf.len());
            let from = offset_in
                .checked_add(done)
                .ok_or(VfsError::InvalidArgument)?;
            let n = sys::pread(src.fd()?, &mut buf[..want], from)?;
            if n == 0 {
                break;
            }
            let to = offset_out.checked_add(done).ok_or(VfsError::FileTooLarge)?;
            let w = sys::pwrite(dst.fd()?, &buf[..n], to)?;
            done += w as u64;
            if w < n {
                break;
            }
        }
        Ok(done)
    }

    /// One registration per object, made at its first passthrough `open` from the
    /// entry's own `O_PATH` descriptor and kept until the entry leaves the table, instead
    /// of one per open, ended at its release: opening and closing a file opened before
    /// costs no `FUSE_DEV_IOC_BACKING_OPEN`/`CLOSE` (and no descriptor duplicate) at all
    /// (open+close 12-12.7 -> 9.7-10.2 us). The kernel opens its backing file from the
    /// registered path with each FUSE file's own flags, so one registration serves
    /// readers and writers alike; access was checked by the open.
    ///
    /// A registration pins the object, so a removal must end it before it returns (see
    /// `drop_victim`), which made unlink 3.5 us slower. So a `create`'s handle
    /// is not registered here (the adapter registers it for that open alone, ended at its
    /// release): the files a create makes (an untar, a checkout, build output) are mostly
    /// written once, closed and never reopened, where an `open` means a file that is read
    /// again and again (sources, headers).
    fn backing_id(&self, ino: Ino, fh: Fh) -> Option<u32> {
        let h = self.handle(ino, fh).ok()?;
        if !h.passthrough || h.created || matches!(h.data, HandleData::Dir(_)) {
            return None;
        }
        let registry = self.registry.get()?;
        if self.registry_failed.load(Ordering::Relaxed)
            || self.opath_backing.load(Ordering::Relaxed) == OPATH_REFUSED
        {
            return None;
        }
        let mut id = h.inode.backing.lock();
        if id.is_none() {
            match registry.register(h.inode.fd().ok()?.as_fd()) {
                Ok(new) => {
                    *id = Some(new);
                    self.opath_backing.store(OPATH_TAKEN, Ordering::Relaxed);
                }
                // A kernel before 6.12: the adapter registers each open's own descriptor
                // instead (see `passthrough_fd`), as it does after any other refusal.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EBADF | libc::EOPNOTSUPP)) => {
                    self.opath_backing.store(OPATH_REFUSED, Ordering::Relaxed);
                }
                Err(_) => self.registry_failed.store(true, Ordering::Relaxed),
            }
        }
        *id
    }

    fn use_backing_registry(&self, registry: Arc<dyn crate::BackingRegistry>) -> bool {
        self.registry.set(registry).is_ok()
    }

    fn passthrough_fd(&self, ino: Ino, fh: Fh) -> Option<OwnedFd> {
        let h = self.handle(ino, fh).ok()?;
        match &h.data {
            HandleData::File(fd) if h.passthrough => sys::dup(fd.as_fd()).ok(),
            // The kernel opens its backing file from the path of the descriptor it is
            // given, with the FUSE file's flags (`backing_file_open`): where it takes an
            // `O_PATH` one, the entry's own serves every handle. Until that is known, and
            // on kernels that refuse it, the handle's own, opened now.
            HandleData::Deferred(_) if h.passthrough => {
                if self.opath_backing.load(Ordering::Relaxed) == OPATH_TAKEN {
                    sys::dup(h.inode.fd().ok()?.as_fd()).ok()
                } else {
                    let io = IoFd::Handle(h.clone());
                    io.fd().ok()?.try_clone_to_owned().ok()
                }
            }
            _ => None,
        }
    }

    /// The cached stateless descriptor of a regular file (the host marks access times).
    fn read_fd(&self, ino: Ino) -> Option<OwnedFd> {
        let io = self.io_fd(ino, None, false).ok()?;
        io.fd().ok()?.try_clone_to_owned().ok()
    }

    fn lseek(
        &self,
        _ctx: &Ctx,
        ino: Ino,
        fh: Option<Fh>,
        offset: u64,
        whence: Whence,
    ) -> VfsResult<u64> {
        let io = self.io_fd(ino, fh, false)?;
        Ok(sys::seek_data_hole(
            io.fd()?,
            offset,
            whence == Whence::Data,
        )?)
    }
}
