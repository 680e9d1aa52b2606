//! File contents kept by the kernel (Linux): every regular file is an unnamed file in a
//! private tmpfs that only this process can reach.
//!
//! Why: through FUSE, a memfs read or write costs a round trip to the daemon and a copy
//! into its heap, which on a small VM is 25-45 µs per call and page faults on fresh heap.
//! A file whose bytes live in a kernel file can be handed to the FUSE kernel as a
//! passthrough backing file; reads and writes then never leave the kernel, and cost what
//! they cost on tmpfs. The daemon still owns every name and attribute; only the bytes
//! move. Through NFS or WinFsp the same files are read and written with
//! `pread`/`pwrite`, which also keeps bulk data out of the allocator (no heap growth or
//! fragmentation after large files come and go).
//!
//! The tmpfs is made with the new mount API (`fsopen`, `fsconfig`, `fsmount`) and never
//! attached anywhere: no path names it, it disappears with the last descriptor, and a
//! daemon that dies takes every byte with it, as memfs always did. Its `size` is the
//! memfs size limit, so the kernel enforces the limit on passthrough writes that memfs
//! never sees. Files are `O_TMPFILE`: nothing to name, nothing to clean up.
//!
//! Making a file (`O_TMPFILE`, about 2 us on the development VM) and closing an empty one
//! (about 1.2 us: tmpfs frees the inode) are taken off the request path where they can be:
//! a helper thread keeps a few fresh files ready and closes emptied ones in batches (see
//! [`Spares`]). Files that hold data are closed at once, so that their space is free
//! before the unlink that freed it returns (a write right after must not see ENOSPC).
//! With `max_inodes` set there is no helper: spare files would take the tmpfs's inodes.
//!
//! Under a FUSE mount that does passthrough, the helper also registers each spare with
//! the kernel as it makes it (see [`Vfs::backing_id`](crate::Vfs::backing_id)): a create
//! then hands the kernel an id instead of registering a descriptor, and the release
//! closes nothing. Side by side on the 2-CPU VM, 6 rounds of 5,000 creates: 24.3-25.0
//! against 27.5-28.3 µs per create (median per call). A registration is ended just
//! before its file is closed, so a deleted file's space still comes back at the unlink.
//!
//! Costs, and the bounds on them: one descriptor per regular file (a budget of half the
//! open-file limit; past it new files keep their bytes on the heap), and tmpfs's page
//! granularity (a 10-byte file takes a 4 KiB page, as on tmpfs itself). Making the mount
//! needs CAP_SYS_ADMIN, so only a root daemon uses it, which is also the only daemon
//! that can use FUSE passthrough.

use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, OnceLock};

use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::SystemTime;

pub(crate) use super::HostStat;
use crate::types::Whence;
use crate::{BackingRegistry, VfsError, VfsResult};

const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOUNT_ATTR_NOSUID: libc::c_uint = 0x2;
const MOUNT_ATTR_NODEV: libc::c_uint = 0x4;
const MOUNT_ATTR_NOEXEC: libc::c_uint = 0x8;

/// The private tmpfs holding file contents.
pub(crate) struct HostStore {
    /// The root of the detached mount (an `O_PATH` descriptor from `fsmount`).
    root: OwnedFd,
    /// Descriptors still available to new files.
    budget: AtomicU64,
    /// Files made ahead and files waiting to be closed, where a helper thread runs.
    spares: Option<Spares>,
    /// Where files are registered for FUSE passthrough, once a FUSE mount that does
    /// passthrough offers it (see [`HostStore::use_registry`]).
    registry: OnceLock<Arc<dyn BackingRegistry>>,
    /// Set when a registration failed: none is tried again.
    registry_failed: AtomicBool,
    /// Set by `use_registry` until the helper has registered the spares made before.
    register_spares: AtomicBool,
    /// Tests: how long the helper takes to make each file, in ms.
    #[cfg(test)]
    helper_delay_ms: AtomicU64,
}

impl std::fmt::Debug for HostStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostStore")
            .field("root", &self.root)
            .field("budget", &self.budget)
            .field("spares", &self.spares)
            .field("registry", &self.registry.get().is_some())
            .finish_non_exhaustive()
    }
}

/// One unnamed file of the store and, once registered for FUSE passthrough, the
/// kernel's id for it.
#[derive(Debug)]
struct Held {
    fd: OwnedFd,
    id: Option<u32>,
}

/// What the helper thread of a [`HostStore`] works on. Fresh files are made ahead, never
/// reused: a file that held another file's bytes could still be mapped by someone.
#[derive(Debug, Default)]
struct Spares {
    /// Fresh unnamed files, and whether the helper is making one now.
    ready: Mutex<Ready>,
    /// Signalled when the helper has finished making a file (see [`HostStore::file`]).
    made: Condvar,
    /// Emptied files of deleted nodes, still counted against the budget until closed
    /// (and registered until then).
    closing: Mutex<Vec<Held>>,
    /// How many taken from `closing` the helper is closing now (their budget is not back
    /// yet); set under the `closing` lock, so that the two never miss a file between them.
    #[cfg(test)]
    closing_now: AtomicU64,
    /// The helper, once started.
    helper: std::sync::OnceLock<std::thread::Thread>,
    /// Its join handle, for tests to see it end.
    #[cfg(test)]
    handle: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// The spare files of a [`Spares`]. Each descriptor, and the one being made, is already
/// counted against the descriptor budget, so budget + `fds` + `making` stays constant
/// (changed only under the lock).
///
/// Why `making`: the helper makes each file *outside* the lock. Making one under it (an
/// `O_TMPFILE`, a few µs) made every create that came meanwhile wait for the lock and
/// then sleep and wake on it: 3.5-5 µs more per create over a 5,000-file burst on the
/// 2-CPU VM (32.4-33.8 vs 28.8-29.0 µs per create with passthrough, side by side). A create that finds no
/// spare and no budget while a file is being made waits for that file instead of
/// falling back to the heap.
#[derive(Debug, Default)]
struct Ready {
    fds: Vec<Held>,
    making: bool,
}

/// Fresh files kept ready: a burst of creates takes them faster than one helper makes
/// them only after [`SPARES`] / 2 creates, about 3 ms of creating at FUSE speed, while
/// refilling half takes the helper well under 1 ms.
pub(crate) const SPARES: usize = 256;
/// How long the helper lets emptied files gather before closing them: one wakeup per
/// batch instead of one per deleted file (a wakeup costs what the close saves).
const CLOSE_BATCH_WAIT: std::time::Duration = std::time::Duration::from_millis(1);

/// One file's contents: an unnamed tmpfs file, freed when this is dropped.
#[derive(Debug)]
pub(crate) struct HostFile {
    /// Taken only by `drop`, which may hand it to the helper to close.
    fd: ManuallyDrop<OwnedFd>,
    /// Its FUSE passthrough registration, made before it was handed out (see
    /// [`Vfs::backing_id`](crate::Vfs::backing_id)); ended by `drop`.
    id: Option<u32>,
    store: Arc<HostStore>,
}

fn last_error() -> io::Error {
    io::Error::last_os_error()
}

fn cvt(r: libc::c_long) -> io::Result<libc::c_long> {
    if r < 0 { Err(last_error()) } else { Ok(r) }
}

fn cstr(s: &str) -> std::ffi::CString {
    std::ffi::CString::new(s).expect("no NUL in a constant")
}

/// Maps a host error on file contents to the VFS error the caller should see.
fn vfs_err(e: io::Error) -> VfsError {
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => VfsError::NoSpace,
        Some(libc::EFBIG) => VfsError::FileTooLarge,
        Some(libc::EINVAL) => VfsError::InvalidArgument,
        Some(libc::ENXIO) => VfsError::NoDataAtOffset,
        Some(libc::EOPNOTSUPP) => VfsError::NotSupported,
        _ => VfsError::Io(e),
    }
}

impl HostStore {
    /// Makes the private tmpfs: at most `size` bytes of contents (`None`: tmpfs's
    /// default, half the machine's memory) and `inodes` files (`None`: unlimited).
    pub(crate) fn new(size: Option<u64>, inodes: Option<u64>) -> io::Result<Arc<HostStore>> {
        let name = cstr("tmpfs");
        // SAFETY: a valid C string and flags; the result is checked.
        let fs = cvt(unsafe { libc::syscall(libc::SYS_fsopen, name.as_ptr(), FSOPEN_CLOEXEC) })?;
        // SAFETY: `fs` is a descriptor we just got and own.
        let fs = unsafe { OwnedFd::from_raw_fd(fs as i32) };
        let set = |key: &str, value: &str| -> io::Result<()> {
            let (k, v) = (cstr(key), cstr(value));
            // SAFETY: valid descriptor and C strings.
            cvt(unsafe {
                libc::syscall(
                    libc::SYS_fsconfig,
                    fs.as_raw_fd(),
                    FSCONFIG_SET_STRING,
                    k.as_ptr(),
                    v.as_ptr(),
                    0,
                )
            })
            .map(drop)
        };
        set("mode", "0700")?;
        if let Some(size) = size {
            // tmpfs wants at least one page; memfs's own accounting still applies to the
            // heap side, so a zero limit stays a zero limit there.
            set("size", &size.max(4096).to_string())?;
        }
        if let Some(n) = inodes {
            set("nr_inodes", &n.max(1).to_string())?;
        }
        // SAFETY: valid descriptor; no key or value for this command.
        cvt(unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs.as_raw_fd(),
                FSCONFIG_CMD_CREATE,
                std::ptr::null::<libc::c_char>(),
                std::ptr::null::<libc::c_void>(),
                0,
            )
        })?;
        // SAFETY: valid descriptor; the flags are plain bits.
        let root = cvt(unsafe {
            libc::syscall(
                libc::SYS_fsmount,
                fs.as_raw_fd(),
                FSMOUNT_CLOEXEC,
                MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
            )
        })?;
        // SAFETY: `root` is a descriptor we just got and own.
        let root = unsafe { OwnedFd::from_raw_fd(root as i32) };
        let store = Arc::new(HostStore {
            root,
            budget: AtomicU64::new(fd_budget()),
            spares: inodes.is_none().then(Spares::default),
            registry: OnceLock::new(),
            registry_failed: AtomicBool::new(false),
            register_spares: AtomicBool::new(false),
            #[cfg(test)]
            helper_delay_ms: AtomicU64::new(0),
        });
        if let Some(spares) = &store.spares {
            let weak = Arc::downgrade(&store);
            // Without a helper, files are made and closed on the request path.
            if let Ok(h) = std::thread::Builder::new()
                .name("vmount-memfs".to_owned())
                .spawn(move || helper(weak))
            {
                let _ = spares.helper.set(h.thread().clone());
                h.thread().unpark();
                #[cfg(test)]
                {
                    *spares.handle.lock() = Some(h);
                }
            }
        }
        Ok(store)
    }

    /// Takes one descriptor from the budget; false when it is spent.
    fn take_budget(&self) -> bool {
        self.budget
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| b.checked_sub(1))
            .is_ok()
    }

    /// A new unnamed file, its descriptor already taken from the budget.
    fn make(&self) -> Option<OwnedFd> {
        let dot = cstr(".");
        // SAFETY: valid directory descriptor and C string; the result is checked.
        let fd = unsafe {
            libc::openat(
                self.root.as_raw_fd(),
                dot.as_ptr(),
                libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC,
                0o600,
            )
        };
        // SAFETY: a descriptor we just got and own.
        (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
    }

    fn wake_helper(&self) {
        if let Some(t) = self.spares.as_ref().and_then(|s| s.helper.get()) {
            t.unpark();
        }
    }

    /// A new empty file, or `None` when the descriptor budget is spent or the kernel
    /// refuses (the caller then keeps the file's bytes on the heap).
    pub(crate) fn file(self: &Arc<Self>) -> Option<HostFile> {
        let made = |h: Held| HostFile {
            fd: ManuallyDrop::new(h.fd),
            id: h.id,
            store: Arc::clone(self),
        };
        if let Some(spares) = &self.spares {
            // Under the `ready` lock the helper cannot turn budget into a spare between
            // the pop and the budget check, which would leave this file on the heap.
            let mut ready = spares.ready.lock();
            loop {
                let spare = ready.fds.pop();
                // Past the budget there is nothing to refill with: no wakeup (a futex
                // call) for every create.
                if ready.fds.len() < SPARES / 2 && self.budget.load(Ordering::Relaxed) > 0 {
                    self.wake_helper();
                }
                if let Some(h) = spare {
                    return Some(made(h));
                }
                if self.take_budget() {
                    break;
                }
                if !ready.making {
                    return None;
                }
                // The last of the budget is the file the helper is making: wait for it.
                spares.made.wait(&mut ready);
            }
        } else if !self.take_budget() {
            return None;
        }
        let Some(fd) = self.make() else {
            self.budget.fetch_add(1, Ordering::AcqRel);
            return None;
        };
        // Made on the request path (no helper, or it fell behind): not registered here,
        // which would cost the request what registering ahead saves; the adapter
        // registers it per open instead.
        Some(made(Held { fd, id: None }))
    }

    /// Takes `registry` for registering files from now on, if it is the first one offered
    /// (see [`Vfs::use_backing_registry`](crate::Vfs::use_backing_registry)); returns
    /// whether it did. The spares made before are registered by the helper.
    pub(crate) fn use_registry(&self, registry: Arc<dyn BackingRegistry>) -> bool {
        if self.registry.set(registry).is_err() {
            return false;
        }
        self.register_spares.store(true, Ordering::Release);
        self.wake_helper();
        true
    }

    /// Registers `fd` for FUSE passthrough, if a registry was given and none failed.
    fn register(&self, fd: &OwnedFd) -> Option<u32> {
        let registry = self.registry.get()?;
        if self.registry_failed.load(Ordering::Relaxed) {
            return None;
        }
        match registry.register(fd.as_fd()) {
            Ok(id) => Some(id),
            // Opens register their files instead; if they fail too, the adapter says so.
            Err(_) => {
                self.registry_failed.store(true, Ordering::Relaxed);
                None
            }
        }
    }

    /// Ends registration `id` (before the file's descriptor is closed, so that the
    /// kernel's reference does not keep the file's space).
    fn unregister(&self, id: Option<u32>) {
        if let (Some(id), Some(registry)) = (id, self.registry.get()) {
            registry.unregister(id);
        }
    }

    /// The helper thread's join handle (tests).
    #[cfg(test)]
    pub(crate) fn take_helper(&self) -> Option<std::thread::JoinHandle<()>> {
        self.spares.as_ref()?.handle.lock().take()
    }

    /// Spare files made ahead and emptied files not yet closed (tests).
    #[cfg(test)]
    pub(crate) fn spares(&self) -> (usize, usize) {
        self.spares.as_ref().map_or((0, 0), |s| {
            let closing = s.closing.lock();
            let now = s.closing_now.load(Ordering::Acquire) as usize;
            (s.ready.lock().fds.len(), closing.len() + now)
        })
    }

    /// The `ready` lock, once the helper is not making a file (tests: the books then
    /// balance without counting one in flight).
    #[cfg(test)]
    fn settled(&self) -> Option<parking_lot::MutexGuard<'_, Ready>> {
        let spares = self.spares.as_ref()?;
        let mut ready = spares.ready.lock();
        while ready.making {
            spares.made.wait(&mut ready);
        }
        Some(ready)
    }

    /// Descriptors left for new files, spare files made ahead included.
    #[cfg(test)]
    pub(crate) fn budget(&self) -> u64 {
        // Budget moves to spares only under the `ready` lock (see `helper`).
        let ready = self.settled();
        self.budget.load(Ordering::Acquire) + ready.map_or(0, |r| r.fds.len() as u64)
    }

    /// Makes the helper take `ms` to make each spare file and wakes it (to test a create
    /// that comes while the helper is making one).
    #[cfg(test)]
    pub(crate) fn slow_helper(&self, ms: u64) {
        self.helper_delay_ms.store(ms, Ordering::Relaxed);
        self.wake_helper();
    }

    /// Whether the helper is making a spare file now (tests).
    #[cfg(test)]
    pub(crate) fn making(&self) -> bool {
        self.spares.as_ref().is_some_and(|s| s.ready.lock().making)
    }

    /// Sets the descriptors left for new files, spares included (to test running out).
    #[cfg(test)]
    pub(crate) fn set_budget(&self, n: u64) {
        if let Some(mut r) = self.settled() {
            for h in std::mem::take(&mut r.fds) {
                self.unregister(h.id);
            }
        }
        self.budget.store(n, Ordering::Release);
    }

    /// Bytes of contents the kernel holds.
    pub(crate) fn used(&self) -> u64 {
        // SAFETY: all-zero is a valid statfs; the pointer is valid.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: valid descriptor and out pointer.
        if unsafe { libc::fstatfs(self.root.as_raw_fd(), &mut st) } != 0 {
            return 0;
        }
        #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
        let (blocks, free, bsize) = (st.f_blocks as u64, st.f_bfree as u64, st.f_bsize as u64);
        blocks.saturating_sub(free).saturating_mul(bsize)
    }
}

/// Half the open-file limit (the other half stays for the backend and the loopback-style
/// uses of the process), less a margin.
fn fd_budget() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    let cur = lim.rlim_cur as u64;
    (cur / 2).saturating_sub(256)
}

use crate::time::from_parts as time;

impl HostFile {
    /// Size, allocation and times, as the kernel sees them now (passthrough writes change
    /// them without memfs knowing).
    pub(crate) fn stat(&self) -> io::Result<HostStat> {
        // SAFETY: all-zero is a valid stat; the pointer is valid.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid descriptor and out pointer.
        if unsafe { libc::fstat(self.fd.as_raw_fd(), &mut st) } != 0 {
            return Err(last_error());
        }
        #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
        Ok(HostStat {
            size: st.st_size as u64,
            blocks: st.st_blocks as u64,
            mtime: time(st.st_mtime as i64, st.st_mtime_nsec as i64),
            ctime: time(st.st_ctime as i64, st.st_ctime_nsec as i64),
        })
    }

    /// Reads up to `buf.len()` bytes at `off`; short only at EOF.
    pub(crate) fn read(&self, off: u64, buf: &mut [u8]) -> VfsResult<usize> {
        let mut done = 0;
        while done < buf.len() {
            // Nothing lies past the largest file size, and the kernel refuses a read
            // whose end would pass it (EINVAL): that part is past EOF.
            let at = off.saturating_add(done as u64);
            let room = (i64::MAX as u64).saturating_sub(at);
            let want = (buf.len() - done).min(usize::try_from(room).unwrap_or(usize::MAX));
            if want == 0 {
                break;
            }
            // SAFETY: the pointer and length lie within the unread tail of `buf`.
            let n = unsafe {
                libc::pread(
                    self.fd.as_raw_fd(),
                    buf[done..].as_mut_ptr().cast(),
                    want,
                    at as i64,
                )
            };
            match n {
                0 => break,
                n if n > 0 => done += n as usize,
                _ => {
                    let e = last_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(vfs_err(e));
                    }
                }
            }
        }
        Ok(done)
    }

    /// Writes `data` at `off`; returns the count written, short only when the store
    /// filled up (or failed) part way, as write(2) reports it.
    pub(crate) fn write(&self, off: u64, data: &[u8]) -> VfsResult<usize> {
        let mut done = 0;
        while done < data.len() {
            let at = i64::try_from(off + done as u64).map_err(|_| VfsError::FileTooLarge)?;
            // SAFETY: the pointer and length describe the unwritten tail of `data`.
            let n = unsafe {
                libc::pwrite(
                    self.fd.as_raw_fd(),
                    data[done..].as_ptr().cast(),
                    data.len() - done,
                    at,
                )
            };
            if n > 0 {
                done += n as usize;
                continue;
            }
            let e = if n == 0 {
                io::Error::from_raw_os_error(libc::ENOSPC)
            } else {
                last_error()
            };
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return if done > 0 { Ok(done) } else { Err(vfs_err(e)) };
        }
        Ok(done)
    }

    /// Sets the size (cutting or extending with a hole).
    pub(crate) fn set_len(&self, size: u64) -> VfsResult<()> {
        let size = i64::try_from(size).map_err(|_| VfsError::FileTooLarge)?;
        // SAFETY: valid descriptor.
        if unsafe { libc::ftruncate(self.fd.as_raw_fd(), size) } != 0 {
            return Err(vfs_err(last_error()));
        }
        Ok(())
    }

    /// `fallocate(2)` with Linux's mode bits.
    pub(crate) fn fallocate(&self, mode: libc::c_int, off: u64, len: u64) -> VfsResult<()> {
        let off = i64::try_from(off).map_err(|_| VfsError::FileTooLarge)?;
        let len = i64::try_from(len).map_err(|_| VfsError::FileTooLarge)?;
        // SAFETY: valid descriptor.
        if unsafe { libc::fallocate(self.fd.as_raw_fd(), mode, off, len) } != 0 {
            return Err(vfs_err(last_error()));
        }
        Ok(())
    }

    /// SEEK_DATA / SEEK_HOLE from `off`.
    pub(crate) fn seek(&self, off: u64, whence: Whence) -> VfsResult<u64> {
        let off = i64::try_from(off).map_err(|_| VfsError::NoDataAtOffset)?;
        let w = match whence {
            Whence::Data => libc::SEEK_DATA,
            Whence::Hole => libc::SEEK_HOLE,
        };
        // The descriptor's offset is shared, but nothing else uses it: reads and writes
        // are positional.
        // SAFETY: valid descriptor.
        let r = unsafe { libc::lseek(self.fd.as_raw_fd(), off, w) };
        if r < 0 {
            return Err(vfs_err(last_error()));
        }
        Ok(r as u64)
    }

    /// Copies `n` bytes at `off_in` of `self` to `off_out` of `dst` inside the kernel;
    /// returns the count copied (short at EOF).
    pub(crate) fn copy_to(
        &self,
        off_in: u64,
        dst: &HostFile,
        off_out: u64,
        n: u64,
    ) -> VfsResult<u64> {
        let mut done = 0u64;
        while done < n {
            let mut i = i64::try_from(off_in + done).map_err(|_| VfsError::FileTooLarge)?;
            let mut o = i64::try_from(off_out + done).map_err(|_| VfsError::FileTooLarge)?;
            let chunk = (n - done).min(1 << 30) as usize;
            // SAFETY: valid descriptors and offset pointers.
            let r = unsafe {
                libc::copy_file_range(
                    self.fd.as_raw_fd(),
                    &mut i,
                    dst.fd.as_raw_fd(),
                    &mut o,
                    chunk,
                    0,
                )
            };
            match r {
                0 => break,
                r if r > 0 => done += r as u64,
                _ => {
                    let e = last_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(vfs_err(e));
                    }
                }
            }
        }
        Ok(done)
    }

    /// Sets the modification time (memfs mirrors explicit times here, so that the kernel
    /// file's time is the newer one only after a write memfs did not see).
    pub(crate) fn set_mtime(&self, mtime: SystemTime) {
        // Out of the kernel's range: nothing to mirror (see below).
        let Some((sec, nsec)) = crate::time::to_parts(mtime) else {
            return;
        };
        let ts = libc::timespec {
            tv_sec: sec as libc::time_t,
            tv_nsec: nsec as _,
        };
        let times = [
            libc::timespec {
                tv_sec: 0,
                tv_nsec: libc::UTIME_OMIT,
            },
            ts,
        ];
        // SAFETY: valid descriptor and a two-element array. A failure leaves the old time,
        // which only matters if it is newer than memfs's (it then shows until the next
        // write); nothing to report to the caller.
        let _ = unsafe { libc::futimens(self.fd.as_raw_fd(), times.as_ptr()) };
    }

    /// A new descriptor of the same open file, for a FUSE passthrough registration.
    pub(crate) fn duplicate(&self) -> Option<OwnedFd> {
        self.fd.try_clone().ok()
    }

    /// The kernel's id for this file, if it was registered for FUSE passthrough.
    pub(crate) fn backing_id(&self) -> Option<u32> {
        self.id
    }
}

impl Drop for HostStore {
    /// Ends the registrations of the files still held, and wakes the helper so that it
    /// sees the store gone and ends.
    fn drop(&mut self) {
        if let Some(spares) = &self.spares {
            let ready = std::mem::take(&mut spares.ready.lock().fds);
            let closing = std::mem::take(&mut *spares.closing.lock());
            for h in ready.into_iter().chain(closing) {
                self.unregister(h.id);
            }
        }
        self.wake_helper();
    }
}

impl Drop for HostFile {
    /// An empty file is handed to the helper to close; one holding data is closed here,
    /// so that its space is back when the unlink that dropped it returns (unregistered
    /// first: the kernel's reference would keep it).
    fn drop(&mut self) {
        // With a helper, an empty file is closed by it (fstat: passthrough writes that
        // memfs never saw may have given it blocks).
        let closer = self
            .store
            .spares
            .as_ref()
            .filter(|s| s.helper.get().is_some())
            .filter(|_| self.stat().is_ok_and(|st| st.blocks == 0));
        // SAFETY: `fd` is taken once, here, and never used again.
        let fd = unsafe { ManuallyDrop::take(&mut self.fd) };
        match closer {
            Some(spares) => {
                let first = {
                    let mut closing = spares.closing.lock();
                    closing.push(Held { fd, id: self.id });
                    closing.len() == 1
                };
                if first {
                    self.store.wake_helper();
                }
            }
            None => {
                self.store.unregister(self.id);
                drop(fd);
                self.store.budget.fetch_add(1, Ordering::AcqRel);
            }
        }
    }
}

/// The helper thread of a store: closes emptied files in batches and keeps [`SPARES`]
/// fresh files ready. Sleeps (parked) when there is nothing to do; ends with the store.
fn helper(store: std::sync::Weak<HostStore>) {
    loop {
        std::thread::park();
        let Some(s) = store.upgrade() else { return };
        let Some(spares) = &s.spares else { return };
        if s.register_spares.swap(false, Ordering::AcqRel) {
            // Once, when a registry comes: the spares made before it. Under the lock, a
            // few hundred ioctls (well under 1 ms) before the mount serves anything.
            let mut ready = spares.ready.lock();
            for h in ready.fds.iter_mut().filter(|h| h.id.is_none()) {
                h.id = s.register(&h.fd);
            }
        }
        if !spares.closing.lock().is_empty() {
            std::thread::sleep(CLOSE_BATCH_WAIT);
            let batch = {
                let mut closing = spares.closing.lock();
                #[cfg(test)]
                spares
                    .closing_now
                    .store(closing.len() as u64, Ordering::Release);
                std::mem::take(&mut *closing)
            };
            let n = batch.len() as u64;
            for h in batch {
                s.unregister(h.id);
                drop(h.fd);
            }
            s.budget.fetch_add(n, Ordering::AcqRel);
            #[cfg(test)]
            spares.closing_now.store(0, Ordering::Release);
        }
        loop {
            // Budget becomes a file being made, then a spare, under the lock, so the three
            // always add up; the file itself is made outside it (see [`Ready`]).
            {
                let mut ready = spares.ready.lock();
                if ready.fds.len() >= SPARES || !s.take_budget() {
                    break;
                }
                ready.making = true;
            }
            #[cfg(test)]
            std::thread::sleep(std::time::Duration::from_millis(
                s.helper_delay_ms.load(Ordering::Relaxed),
            ));
            let made = s.make().map(|fd| {
                let id = s.register(&fd);
                Held { fd, id }
            });
            let mut ready = spares.ready.lock();
            ready.making = false;
            let failed = match made {
                Some(h) => {
                    ready.fds.push(h);
                    false
                }
                None => {
                    s.budget.fetch_add(1, Ordering::AcqRel);
                    true
                }
            };
            drop(ready);
            spares.made.notify_all();
            if failed {
                break;
            }
        }
    }
}
