//! Mounting, unmounting, and telling what is mounted where.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use fuser::{Config, MountOption, Session, SessionACL, SessionUnmounter};
use vmount_core::{ChangeSink, Vfs};

use crate::adapter::Adapter;
use crate::ops::{Ops, StartupFailure};
use crate::{FuseError, FuseOptions, IoUring, MountState, Passthrough, Unavailable};

/// How long [`mount`] waits for the new mount to answer `stat` from its own device.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long unmounting waits for the session threads to end. They end at once after a
/// normal unmount; after a lazy one they keep serving files that are still open, and are
/// then left to finish in the background.
const JOIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the fusermount3 auto_unmount watcher gets before we unmount ourselves.
const AUTO_UNMOUNT_GRACE: Duration = Duration::from_millis(300);
const POLL: Duration = Duration::from_millis(5);

/// A live FUSE mount. Dropping it unmounts (lazily if the mount is busy) and joins the
/// session threads; [`FuseMount::unmount`] does the same and reports errors.
pub struct FuseMount {
    mountpoint: PathBuf,
    unmounter: SessionUnmounter,
    /// The thread running `Session::run`, which owns fuser's worker threads. `None` once
    /// shut down.
    thread: Option<JoinHandle<io::Result<()>>>,
    /// Told when the session thread ends (see [`FuseMount::notify_end`]).
    end: Arc<EndNotice>,
    /// The FUSE-over-io_uring queue threads, when the connection uses them.
    #[cfg(target_os = "linux")]
    queues: Option<crate::uring::Queues>,
}

impl std::fmt::Debug for FuseMount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FuseMount")
            .field("mountpoint", &self.mountpoint)
            .field("alive", &self.is_alive())
            .finish()
    }
}

impl FuseMount {
    /// Where the filesystem is mounted (canonical form, as the mount table shows it).
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// False once the session has ended, e.g. because the mount was removed from outside
    /// with `fusermount3 -u` or `umount`.
    pub fn is_alive(&self) -> bool {
        // The end notice fires as the session thread's last act, so it also covers a
        // finished thread.
        self.thread.is_some() && !self.end.has_ended()
    }

    /// Calls `f` once the session has ended ([`FuseMount::is_alive`] false), on the
    /// session's thread, or at once if it already has; a later call replaces an earlier
    /// `f` not yet called. Lets a caller sleep until the mount goes away instead of
    /// polling.
    pub fn notify_end(&self, f: impl FnOnce() + Send + 'static) {
        self.end.set(Box::new(f));
    }

    /// Unmounts and waits for the session to end, reporting what went wrong.
    pub fn unmount(mut self) -> Result<(), FuseError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), FuseError> {
        let res = self.shutdown_session();
        self.join_queues();
        res
    }

    /// Joins the io_uring queue threads, which end with the connection; after a lazy
    /// unmount they keep serving open files and are left to finish in the background.
    fn join_queues(&mut self) {
        #[cfg(target_os = "linux")]
        if let Some(mut q) = self.queues.take() {
            let deadline = Instant::now() + JOIN_TIMEOUT;
            let mut all = q.join_finished();
            while !all && Instant::now() < deadline {
                thread::sleep(POLL);
                all = q.join_finished();
            }
            if !all {
                tracing::debug!(
                    "io_uring queues of {} still serve open files",
                    self.mountpoint.display()
                );
            }
        }
    }

    fn shutdown_session(&mut self) -> Result<(), FuseError> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        if !thread.is_finished()
            && let Err(e) = self.unmounter.unmount().and_then(|()| {
                // With auto_unmount, fuser only closes its socket to the fusermount3
                // watcher and leaves the unmount to it; that watcher reliably unmounts
                // when the daemon dies, but on a graceful shutdown the mount was seen to
                // stay. So if the session has not ended shortly after, unmount it here.
                let grace = Instant::now() + AUTO_UNMOUNT_GRACE;
                while !thread.is_finished() && Instant::now() < grace {
                    thread::sleep(POLL);
                }
                match mount_state(&self.mountpoint) {
                    MountState::Mounted { .. } if !thread.is_finished() => {
                        direct_unmount(&self.mountpoint)
                    }
                    _ => Ok(()),
                }
            })
        {
            // EBUSY: files are open or a process has its cwd inside. Detach the mount
            // from the namespace; the session serves the open files until they close.
            tracing::debug!(
                "unmounting {} failed ({e}); detaching it lazily",
                self.mountpoint.display()
            );
            if let Err(lazy) = lazy_unmount(&self.mountpoint) {
                return Err(FuseError::Io {
                    context: format!(
                        "cannot unmount {} (`{e}`, then a lazy unmount failed too); close \
                         the programs using it and run `vmount unmount {}`",
                        self.mountpoint.display(),
                        self.mountpoint.display()
                    ),
                    source: lazy,
                });
            }
        }
        let deadline = Instant::now() + JOIN_TIMEOUT;
        while !thread.is_finished() {
            if Instant::now() >= deadline {
                if let MountState::Mounted { .. } | MountState::Dead = mount_state(&self.mountpoint)
                {
                    return Err(FuseError::Io {
                        context: format!(
                            "{} is still mounted after unmounting it; close the programs \
                             using it and run `vmount unmount {}`",
                            self.mountpoint.display(),
                            self.mountpoint.display()
                        ),
                        source: io::Error::from_raw_os_error(libc::EBUSY),
                    });
                }
                tracing::warn!(
                    "{} is unmounted but files opened before are still in use; they are \
                     served until closed",
                    self.mountpoint.display()
                );
                return Ok(());
            }
            thread::sleep(POLL);
        }
        match thread.join() {
            Ok(Ok(())) => Ok(()),
            // A worker that was reading a request from /dev/fuse while the unmount tore
            // the connection down gets ECONNABORTED instead of ENODEV (the kernel's
            // fuse_dev_do_read), and fuser passes it on. Under load the race is common;
            // the unmount asked for above is what happened, so it is a clean end.
            Ok(Err(e)) if e.raw_os_error() == Some(libc::ECONNABORTED) => {
                tracing::debug!(
                    "the FUSE session for {} ended with ECONNABORTED: a request was in \
                     flight during the unmount",
                    self.mountpoint.display()
                );
                Ok(())
            }
            Ok(Err(e)) => Err(FuseError::Io {
                context: format!(
                    "the FUSE session for {} ended with an error (it is unmounted now)",
                    self.mountpoint.display()
                ),
                source: e,
            }),
            Err(_) => Err(FuseError::Io {
                context: format!(
                    "the FUSE session for {} crashed (it is unmounted now); please report this",
                    self.mountpoint.display()
                ),
                source: io::Error::other("session thread panicked"),
            }),
        }
    }

    /// Waits until the mountpoint answers `stat` from a device other than its parent's,
    /// i.e. the kernel routes it to us and the session serves requests.
    fn wait_ready(&mut self) -> Result<(), FuseError> {
        let parent = self.mountpoint.parent().unwrap_or(Path::new("/"));
        let parent_dev = fs::metadata(parent).map_err(|e| FuseError::Io {
            context: format!(
                "cannot stat {}, the parent of the mountpoint",
                parent.display()
            ),
            source: e,
        })?;
        let parent_dev = parent_dev.dev();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if self.thread.as_ref().is_none_or(|t| t.is_finished()) {
                let detail = match self.thread.take().map(JoinHandle::join) {
                    Some(Ok(Err(e))) => format!("the FUSE session ended during startup: {e}"),
                    Some(Err(_)) => "the FUSE session thread panicked during startup".to_owned(),
                    _ => "the FUSE session ended during startup".to_owned(),
                };
                return Err(FuseError::NotReady {
                    path: self.mountpoint.clone(),
                    detail,
                });
            }
            let seen = match fs::metadata(&self.mountpoint) {
                Ok(m) if m.dev() != parent_dev => return Ok(()),
                Ok(_) => "the mountpoint still shows the directory underneath".to_owned(),
                Err(e) => format!("stat failed: {e}"),
            };
            if Instant::now() >= deadline {
                return Err(FuseError::NotReady {
                    path: self.mountpoint.clone(),
                    detail: format!("after {} s, {seen}", READY_TIMEOUT.as_secs()),
                });
            }
            thread::sleep(POLL);
        }
    }
}

impl Drop for FuseMount {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::warn!("{e}");
        }
    }
}

/// Passes changes a filesystem reports ([`Vfs::watch_changes`]) to the kernel as FUSE
/// invalidations. Errors are ignored: ENOENT means the kernel had nothing cached for it.
#[derive(Default)]
struct Invalidate {
    notifier: std::sync::OnceLock<fuser::Notifier>,
}

impl ChangeSink for Invalidate {
    fn entry_changed(&self, parent: vmount_core::Ino, name: &std::ffi::OsStr) {
        if let Some(n) = self.notifier.get() {
            let _ = n.inval_entry(fuser::INodeNo(parent.0), name);
        }
    }

    fn inode_changed(&self, ino: vmount_core::Ino) {
        if let Some(n) = self.notifier.get() {
            let _ = n.inval_inode(fuser::INodeNo(ino.0), 0, 0);
        }
    }
}

/// Mounts `fs` at `mountpoint` and returns once the mount is usable.
///
/// Refuses a missing or non-directory mountpoint, and one that already holds a mount,
/// live or dead, rather than stacking on top of it.
pub fn mount(
    fs: Arc<dyn Vfs>,
    mountpoint: &Path,
    opts: &FuseOptions,
) -> Result<FuseMount, FuseError> {
    probe()?;
    if opts.allow_other && find_fusermount()?.is_none() {
        // allow_other brings auto_unmount, which fuser always mounts through fusermount.
        return Err(FuseError::Unavailable(Unavailable {
            reason: "allow_other needs fusermount3 (for auto_unmount), which is not on PATH"
                .to_owned(),
            fix: "install the fuse3 package, or mount without allow_other".to_owned(),
        }));
    }
    let passthrough = passthrough_mode(opts, mountpoint, may_register_backing_files())?;
    let path = check_mountpoint(mountpoint)?;
    let config = session_config(opts);
    // A panic in the filesystem must cost one request (EIO), not the whole session.
    let fs: Arc<dyn Vfs> = Arc::new(vmount_core::PanicGuard::new(fs));
    // Linux forgets an inode as soon as it is removed and unused. macFUSE forgets a vnode
    // only when macOS reclaims it, which may be long after the removal, so there the
    // filesystem must let go of removed objects itself.
    fs.attach(cfg!(target_os = "linux"));
    // Changes made behind the filesystem's back become kernel invalidations; the
    // notifier exists once the session does, and nothing is cached before that.
    let invalidate = Arc::new(Invalidate::default());
    let watched = fs.watch_changes(Arc::clone(&invalidate) as Arc<dyn ChangeSink>);
    let mut opts = opts.clone();
    if let (true, Some(ttl)) = (watched, opts.watched_timeout) {
        opts.attr_timeout = ttl;
        opts.entry_timeout = ttl;
    }
    tracing::debug!(
        watched,
        attr_timeout = ?opts.attr_timeout,
        "changes behind the filesystem's back {}",
        if watched { "are invalidated as they happen" } else { "show when the caches expire" }
    );
    let opts = &opts;
    prepare_io_uring(opts.io_uring, &path)?;
    let startup = Arc::new(StartupFailure::default());
    let ops = Arc::new(Ops::new(fs, opts, passthrough, Arc::clone(&startup)));
    let adapter = Adapter::new(Arc::clone(&ops));
    let mut session =
        Session::new(adapter, &path, &config).map_err(|e| mount_error(&path, opts, e))?;
    // The connection's descriptor, for backing files and the io_uring queues. Dropping
    // `session` on any error below unmounts.
    let device = session
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| FuseError::Io {
            context: format!(
                "cannot duplicate the FUSE device descriptor of {} (it was unmounted again)",
                path.display()
            ),
            source: e,
        })?;
    ops.set_device(device);
    #[cfg(target_os = "linux")]
    let queues = start_queues(&ops, opts, &path)?;
    #[cfg(not(target_os = "linux"))]
    if opts.io_uring == IoUring::On {
        unreachable!("prepare_io_uring refuses io_uring = on off Linux");
    }
    let _ = invalidate.notifier.set(session.notifier());
    let unmounter = session.unmount_callable();
    let end = Arc::new(EndNotice::default());
    let ended = EndGuard(Arc::clone(&end));
    // If spawning fails, the closure and with it the session are dropped, which unmounts.
    let thread = thread::Builder::new()
        .name("vmount-fuse".to_owned())
        .spawn(move || {
            // Dropped after the session (which `run` consumes), also on a panic.
            let _ended = ended;
            session.run()
        })
        .map_err(|e| FuseError::Io {
            context: format!(
                "cannot start the FUSE session thread for {} (it was unmounted again)",
                path.display()
            ),
            source: e,
        })?;
    let mut mount = FuseMount {
        mountpoint: path,
        unmounter,
        thread: Some(thread),
        end,
        #[cfg(target_os = "linux")]
        queues,
    };
    // On failure `mount` is dropped here, which unmounts.
    if let Err(e) = mount.wait_ready() {
        if startup.passthrough_unsupported.load(Ordering::SeqCst) {
            return Err(FuseError::PassthroughUnsupported(mountpoint.to_owned()));
        }
        return Err(e);
    }
    #[cfg(target_os = "linux")]
    if opts.readahead_kib != 0 {
        set_readahead(&mount.mountpoint, opts.readahead_kib);
    }
    Ok(mount)
}

/// Who to tell when the session thread ends.
#[derive(Default)]
struct EndNotice(std::sync::Mutex<EndState>);

#[derive(Default)]
struct EndState {
    ended: bool,
    notify: Option<Box<dyn FnOnce() + Send>>,
}

impl EndNotice {
    fn set(&self, f: Box<dyn FnOnce() + Send>) {
        let mut st = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if st.ended {
            drop(st);
            f();
        } else {
            st.notify = Some(f);
        }
    }

    fn has_ended(&self) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).ended
    }

    fn fire(&self) {
        let f = {
            let mut st = self.0.lock().unwrap_or_else(|e| e.into_inner());
            st.ended = true;
            st.notify.take()
        };
        if let Some(f) = f {
            f();
        }
    }
}

/// Fires the [`EndNotice`] when the session thread's closure ends, however it ends.
struct EndGuard(Arc<EndNotice>);

impl Drop for EndGuard {
    fn drop(&mut self) {
        self.0.fire();
    }
}

/// The kernel's switch for FUSE-over-io_uring (off by default; Linux 6.14+).
#[cfg(target_os = "linux")]
const ENABLE_URING: &str = "/sys/module/fuse/parameters/enable_uring";

/// Checks what `io_uring` asks for before mounting: `on` needs a kernel with
/// FUSE-over-io_uring, whose switch root turns on here; `auto` only notes where the
/// switch is off.
fn prepare_io_uring(mode: IoUring, path: &Path) -> Result<(), FuseError> {
    #[cfg(target_os = "linux")]
    {
        let state = fs::read_to_string(ENABLE_URING).map(|s| s.trim().to_owned());
        let enabled = matches!(state.as_deref(), Ok("Y") | Ok("1"));
        match (mode, &state) {
            (IoUring::Off, _) => Ok(()),
            (_, Ok(_)) if enabled => Ok(()),
            (IoUring::Auto, Ok(_)) => {
                tracing::info!(
                    "FUSE-over-io_uring is off in this kernel; `echo Y > {ENABLE_URING}` (as \
                     root) roughly halves the cost of each file operation on this mount"
                );
                Ok(())
            }
            (IoUring::Auto, Err(_)) => Ok(()),
            (IoUring::On, Ok(_)) if is_root() => fs::write(ENABLE_URING, b"Y")
                .map(|()| tracing::info!("turned FUSE-over-io_uring on ({ENABLE_URING})"))
                .map_err(|e| FuseError::IoUringUnavailable {
                    path: path.to_owned(),
                    reason: format!("turning it on through {ENABLE_URING} failed ({e})"),
                    fix: "set io_uring = \"auto\" or \"off\" in [fuse]".to_owned(),
                }),
            (IoUring::On, Ok(_)) => Err(FuseError::IoUringUnavailable {
                path: path.to_owned(),
                reason: "it is off in the kernel".to_owned(),
                fix: format!(
                    "turn it on with `echo Y | sudo tee {ENABLE_URING}`, or set io_uring = \
                     \"auto\" or \"off\" in [fuse]"
                ),
            }),
            (IoUring::On, Err(_)) => Err(FuseError::IoUringUnavailable {
                path: path.to_owned(),
                reason: "this kernel does not have it (it needs Linux 6.14 or later built with \
                         CONFIG_FUSE_IO_URING)"
                    .to_owned(),
                fix: "set io_uring = \"auto\" or \"off\" in [fuse]".to_owned(),
            }),
        }
    }
    #[cfg(not(target_os = "linux"))]
    match mode {
        IoUring::On => Err(FuseError::IoUringUnavailable {
            path: path.to_owned(),
            reason: "it exists only on Linux".to_owned(),
            fix: "set io_uring = \"auto\" or \"off\" in [fuse]".to_owned(),
        }),
        _ => Ok(()),
    }
}

/// Starts the io_uring queues when the handshake negotiated them. With `auto` a queue
/// that cannot be set up leaves the mount on `/dev/fuse` (logged); with `on` it fails
/// the mount, as does a kernel that did not offer io_uring in the handshake.
#[cfg(target_os = "linux")]
fn start_queues(
    ops: &Arc<Ops>,
    opts: &FuseOptions,
    path: &Path,
) -> Result<Option<crate::uring::Queues>, FuseError> {
    let refuse = |reason: String| FuseError::IoUringUnavailable {
        path: path.to_owned(),
        reason,
        fix: "set io_uring = \"auto\" or \"off\" in [fuse]".to_owned(),
    };
    if !ops.uring_negotiated() {
        if opts.io_uring == IoUring::On {
            return Err(refuse(
                "the kernel did not offer it when the mount was set up".to_owned(),
            ));
        }
        return Ok(None);
    }
    let access = crate::uring::Access {
        // SAFETY: geteuid has no preconditions.
        owner_only: (!opts.allow_other).then(|| unsafe { libc::geteuid() }),
    };
    match crate::uring::start(Arc::clone(ops), access, path) {
        Ok(q) => {
            ops.queues_serving();
            Ok(Some(q))
        }
        Err(e) if opts.io_uring == IoUring::On => Err(refuse(e.to_string())),
        Err(e) => {
            tracing::warn!("FUSE-over-io_uring could not be set up ({e}); using /dev/fuse");
            Ok(None)
        }
    }
}

/// Sets the readahead window of the mount at `mountpoint` (see
/// [`FuseOptions::readahead_kib`]) through its bdi in sysfs, named by the mount's device
/// number. Best effort: without root the kernel's window stays.
#[cfg(target_os = "linux")]
fn set_readahead(mountpoint: &Path, kib: u32) {
    use std::os::unix::fs::MetadataExt;
    let dev = match std::fs::metadata(mountpoint) {
        Ok(m) => m.dev(),
        Err(e) => {
            tracing::debug!(
                "readahead left as is: cannot stat {}: {e}",
                mountpoint.display()
            );
            return;
        }
    };
    let path = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        libc::major(dev),
        libc::minor(dev)
    );
    match std::fs::write(&path, kib.to_string()) {
        Ok(()) => tracing::debug!("readahead of {} set to {kib} KiB", mountpoint.display()),
        Err(e) => tracing::debug!("readahead left as is: cannot write {path}: {e}"),
    }
}

/// The passthrough mode the session negotiates, after the checks that need no kernel:
/// `on` with the writeback cache is refused, and so is `on` without the privilege to
/// register backing files; `auto` without it quietly becomes `off` (logged once), so that
/// it neither fails every open nor costs the writeback cache for nothing.
fn passthrough_mode(
    opts: &FuseOptions,
    mountpoint: &Path,
    privileged: bool,
) -> Result<Passthrough, FuseError> {
    match opts.passthrough {
        Passthrough::Off => Ok(Passthrough::Off),
        Passthrough::On if opts.writeback_cache => {
            Err(FuseError::PassthroughWithWriteback(mountpoint.to_owned()))
        }
        Passthrough::On if !cfg!(target_os = "linux") => {
            Err(FuseError::PassthroughUnsupported(mountpoint.to_owned()))
        }
        Passthrough::On if !privileged => {
            Err(FuseError::PassthroughNotPermitted(mountpoint.to_owned()))
        }
        Passthrough::On => Ok(Passthrough::On),
        Passthrough::Auto if !cfg!(target_os = "linux") => Ok(Passthrough::Off),
        Passthrough::Auto if !privileged => {
            tracing::info!(
                "FUSE passthrough needs CAP_SYS_ADMIN, which this process lacks; file data \
                 goes through the daemon"
            );
            Ok(Passthrough::Off)
        }
        Passthrough::Auto => Ok(Passthrough::Auto),
    }
}

/// Whether this process may register FUSE passthrough backing files, which the kernel
/// allows only with CAP_SYS_ADMIN (in the user namespace of the mount, which is ours):
/// read from the effective capability set in /proc/self/status.
#[cfg(target_os = "linux")]
fn may_register_backing_files() -> bool {
    const CAP_SYS_ADMIN: u32 = 21;
    let Ok(status) = fs::read_to_string("/proc/self/status") else {
        return is_root();
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_SYS_ADMIN) != 0)
}

#[cfg(not(target_os = "linux"))]
fn may_register_backing_files() -> bool {
    false
}

/// Checks the mountpoint and returns its canonical path.
fn check_mountpoint(path: &Path) -> Result<PathBuf, FuseError> {
    match fs::metadata(path) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(FuseError::NotADirectory(path.to_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(FuseError::MountpointMissing(path.to_owned()));
        }
        Err(e) if is_dead_mount_error(&e) => return Err(FuseError::DeadMount(path.to_owned())),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return Err(FuseError::PermissionDenied {
                path: path.to_owned(),
                reason: e.to_string(),
                fix: "you need search permission on every directory leading to it".to_owned(),
            });
        }
        Err(e) => {
            return Err(FuseError::Io {
                context: format!("cannot inspect mountpoint {}", path.display()),
                source: e,
            });
        }
    }
    let canonical = path.canonicalize().map_err(|e| FuseError::Io {
        context: format!("cannot resolve mountpoint {}", path.display()),
        source: e,
    })?;
    match mount_state(&canonical) {
        MountState::NotMounted => Ok(canonical),
        MountState::Mounted { .. } => Err(FuseError::AlreadyMounted(path.to_owned())),
        MountState::Dead => Err(FuseError::DeadMount(path.to_owned())),
    }
}

/// Mount option values must not contain the separators of the option string.
fn option_value(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c == ',' || c == '=' || c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

fn worker_threads(requested: usize) -> usize {
    if !cfg!(target_os = "linux") {
        return 1;
    }
    match requested {
        0 => thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

fn session_config(opts: &FuseOptions) -> Config {
    let mut options = vec![
        MountOption::FSName(option_value(&opts.fs_name)),
        // As a kernel option (not `Subtype`, which fuser only hands to fusermount) so that
        // a mount made directly by root is also listed as `fuse.<subtype>`; fusermount
        // understands the same option when it does the mounting.
        MountOption::CUSTOM(format!("subtype={}", option_value(&opts.subtype))),
    ];
    if opts.default_permissions {
        options.push(MountOption::DefaultPermissions);
    }
    if opts.read_only {
        options.push(MountOption::RO);
    }
    if cfg!(target_os = "macos") {
        options.extend(macos_options(opts).into_iter().map(MountOption::CUSTOM));
    }
    let mut config = Config::default();
    if opts.allow_other {
        config.acl = SessionACL::All;
        // fuser accepts auto_unmount only together with allow_other/allow_root.
        options.push(MountOption::AutoUnmount);
    }
    config.mount_options = options;
    let threads = worker_threads(opts.threads);
    config.n_threads = Some(threads);
    // A descriptor per worker lets the kernel hand requests to them in parallel.
    config.clone_fd = cfg!(target_os = "linux") && threads > 1;
    config
}

/// macFUSE's own mount options: the volume name Finder shows, and the Apple Double and
/// `com.apple.*` xattr filters. Built on every OS (and tested here); used on macOS only.
fn macos_options(opts: &FuseOptions) -> Vec<String> {
    let name = opts.volume_name.as_deref().unwrap_or(&opts.fs_name);
    // Finder names may hold spaces; only a comma would split the option list.
    let name: String = name
        .chars()
        .map(|c| if c == ',' || c.is_control() { '_' } else { c })
        .collect();
    let mut out = vec![format!("volname={name}")];
    if opts.no_apple_double {
        out.push("noappledouble".to_owned());
    }
    if opts.no_apple_xattr {
        out.push("noapplexattr".to_owned());
    }
    out
}

fn mount_error(path: &Path, opts: &FuseOptions, e: io::Error) -> FuseError {
    if e.kind() == io::ErrorKind::PermissionDenied {
        let fix = if opts.allow_other {
            "add `user_allow_other` to /etc/fuse.conf, or mount without allow_other"
        } else {
            "run as root, or make sure fusermount3 is installed setuid root and you own the \
             mountpoint"
        };
        return FuseError::PermissionDenied {
            path: path.to_owned(),
            reason: e.to_string().trim().to_owned(),
            fix: fix.to_owned(),
        };
    }
    FuseError::Io {
        context: format!(
            "could not mount FUSE at {} (`dmesg` may show the kernel's reason)",
            path.display()
        ),
        source: e,
    }
}

/// Whether FUSE can be used here: the device (or macFUSE) is present, and either we are
/// root or the setuid `fusermount3`/`fusermount` helper is available.
pub fn probe() -> Result<(), Unavailable> {
    platform_probe()?;
    if !is_root() && find_fusermount()?.is_none() {
        return Err(Unavailable {
            reason: "you are not root and neither fusermount3 nor fusermount is on PATH".to_owned(),
            fix: "install the fuse3 package (`apt install fuse3`, `dnf install fuse3`), set \
                  FUSERMOUNT_PATH, or run as root"
                .to_owned(),
        });
    }
    Ok(())
}

#[cfg(not(target_os = "macos"))]
fn platform_probe() -> Result<(), Unavailable> {
    const DEV: &str = "/dev/fuse";
    match fs::OpenOptions::new().read(true).write(true).open(DEV) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Unavailable {
            reason: format!("{DEV} does not exist"),
            fix: "load the kernel module with `modprobe fuse` (in a container, pass \
                  `--device /dev/fuse --cap-add SYS_ADMIN`)"
                .to_owned(),
        }),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Err(Unavailable {
            reason: format!("{DEV} cannot be opened for reading and writing ({e})"),
            fix: format!("make {DEV} accessible to you (it is normally mode 0666)"),
        }),
        Err(e) => Err(Unavailable {
            reason: format!("{DEV} cannot be opened ({e})"),
            fix: "check that the fuse kernel module is loaded (`modprobe fuse`)".to_owned(),
        }),
    }
}

#[cfg(target_os = "macos")]
fn platform_probe() -> Result<(), Unavailable> {
    if cfg!(feature = "macos-no-mount") {
        return Err(Unavailable {
            reason: "this vmount was built without macFUSE support".to_owned(),
            fix: "use the NFS backend, or rebuild without the `macos-no-mount` feature".to_owned(),
        });
    }
    let installed = [
        "/Library/Filesystems/macfuse.fs",
        "/Library/Filesystems/osxfuse.fs",
    ]
    .iter()
    .any(|p| Path::new(p).exists());
    if installed {
        Ok(())
    } else {
        Err(Unavailable {
            reason: "macFUSE is not installed".to_owned(),
            fix: "install it (`brew install --cask macfuse`, then allow its system extension) \
                  or use the NFS backend"
                .to_owned(),
        })
    }
}

pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The fusermount helper fuser will use: `$FUSERMOUNT_PATH`, else `fusermount3` or
/// `fusermount` on PATH or in /bin, /sbin, /usr/bin, /usr/sbin. Errors when
/// `$FUSERMOUNT_PATH` is set to something unusable (fuser would fail on it, or panic on
/// a non-UTF-8 value).
fn find_fusermount() -> Result<Option<PathBuf>, Unavailable> {
    if let Some(p) = std::env::var_os("FUSERMOUNT_PATH") {
        if p.to_str().is_none() {
            return Err(Unavailable {
                reason: "FUSERMOUNT_PATH is not valid UTF-8".to_owned(),
                fix: "point FUSERMOUNT_PATH at the fusermount3 binary with a UTF-8 path, or unset \
                      it"
                .to_owned(),
            });
        }
        let found = if Path::new(&p).components().count() > 1 {
            Some(PathBuf::from(&p)).filter(|p| is_executable(p))
        } else {
            search_path(&p)
        };
        return match found {
            Some(f) => Ok(Some(f)),
            None => Err(Unavailable {
                reason: format!(
                    "FUSERMOUNT_PATH is set to {}, which is not an executable file",
                    Path::new(&p).display()
                ),
                fix: "point FUSERMOUNT_PATH at the fusermount3 binary, or unset it".to_owned(),
            }),
        };
    }
    for name in ["fusermount3", "fusermount"] {
        if let Some(found) = search_path(name.as_ref()) {
            return Ok(Some(found));
        }
        for dir in ["/bin", "/sbin", "/usr/bin", "/usr/sbin"] {
            let p = Path::new(dir).join(name);
            if is_executable(&p) {
                return Ok(Some(p));
            }
        }
    }
    Ok(None)
}

fn search_path(name: &std::ffi::OsStr) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Unmounts whatever FUSE mount is at `mountpoint`, including one this process does not
/// own and a dead one left by a killed daemon.
///
/// As root: `umount2(path, 0)`, then a lazy `MNT_DETACH` if that fails (busy). Otherwise:
/// `fusermount3 -u`, then `fusermount3 -u -z`. Errors with [`FuseError::NotMounted`] when
/// nothing is mounted there.
pub fn unmount_path(mountpoint: &Path) -> Result<(), FuseError> {
    let abs = absolute(mountpoint);
    if mount_state(&abs) == MountState::NotMounted {
        return Err(FuseError::NotMounted(mountpoint.to_owned()));
    }
    let result = if is_root() {
        sys_unmount(&abs, false).or_else(|e| {
            tracing::debug!("umount {} failed ({e}); detaching lazily", abs.display());
            sys_unmount(&abs, true)
        })
    } else {
        helper_unmount(&abs, false).or_else(|e| {
            tracing::debug!(
                "unmounting {} failed ({e}); detaching lazily",
                abs.display()
            );
            helper_unmount(&abs, true)
        })
    };
    result.map_err(|e| {
        if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES)) {
            FuseError::PermissionDenied {
                path: mountpoint.to_owned(),
                reason: e.to_string(),
                fix: "run the unmount as the user who mounted it, or as root".to_owned(),
            }
        } else {
            FuseError::Io {
                context: format!(
                    "cannot unmount {}; close the programs using it (`fuser -vm {}` lists \
                     them) and retry",
                    mountpoint.display(),
                    mountpoint.display()
                ),
                source: e,
            }
        }
    })
}

/// A plain (not lazy) unmount: `umount2` as root, else the setuid helper.
fn direct_unmount(path: &Path) -> io::Result<()> {
    if is_root() {
        sys_unmount(path, false)
    } else {
        helper_unmount(path, false)
    }
}

/// Detaches our own mount when a normal unmount failed (busy).
fn lazy_unmount(path: &Path) -> io::Result<()> {
    if is_root() {
        sys_unmount(path, true)
    } else {
        helper_unmount(path, true)
    }
}

/// `umount2(2)` (Linux) / `unmount(2)` (macOS, BSD); `lazy` detaches a busy mount
/// (Linux) or forces it (elsewhere).
fn sys_unmount(path: &Path, lazy: bool) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    // SAFETY: `c` is a NUL-terminated string that lives across the call.
    let rc = unsafe { libc::umount2(c.as_ptr(), if lazy { libc::MNT_DETACH } else { 0 }) };
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    // SAFETY: `c` is a NUL-terminated string that lives across the call.
    let rc = unsafe { libc::unmount(c.as_ptr(), if lazy { libc::MNT_FORCE } else { 0 }) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Unmounts through the setuid helper, for a user who may not call `umount2(2)`.
fn helper_unmount(path: &Path, lazy: bool) -> io::Result<()> {
    #[cfg(target_os = "macos")]
    let mut cmd = {
        // macFUSE lets the mounting user unmount with plain unmount(2).
        if sys_unmount(path, lazy).is_ok() {
            return Ok(());
        }
        let mut c = Command::new("diskutil");
        c.arg("unmount");
        if lazy {
            c.arg("force");
        }
        c
    };
    #[cfg(not(target_os = "macos"))]
    let mut cmd = {
        let bin = find_fusermount()
            .map_err(|u| io::Error::new(io::ErrorKind::NotFound, u.to_string()))?
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, "fusermount3 is not installed")
            })?;
        let mut c = Command::new(bin);
        c.arg("-u");
        if lazy {
            c.arg("-z");
        }
        c.arg("--");
        c
    };
    let out = cmd.arg(path).stdin(Stdio::null()).output()?;
    if out.status.success() {
        return Ok(());
    }
    let msg = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    let kind = if msg.contains("ermission") || msg.contains("not permitted") {
        io::ErrorKind::PermissionDenied
    } else {
        io::ErrorKind::Other
    };
    Err(io::Error::new(kind, msg))
}

/// An absolute form of `path` for comparing with the mount table. A dead mount cannot be
/// resolved (stat fails with ENOTCONN), so its parent is resolved and the name kept.
fn absolute(path: &Path) -> PathBuf {
    if let Ok(c) = path.canonicalize() {
        return c;
    }
    if let (Some(parent), Some(name)) = (path.parent(), path.file_name()) {
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        if let Ok(p) = parent.canonicalize() {
            return p.join(name);
        }
    }
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// Whether an error from a path is one a FUSE mount without its daemon gives: ENOTCONN once the kernel has torn the
/// connection down, ECONNABORTED for a request that meets the teardown, and, over
/// FUSE-over-io_uring, ECANCELED for a request handed to a queue of the dead daemon before
/// the teardown (the kernel cancels it when it finds the queue's task gone). The last
/// window is short but real: a CI run once saw `statvfs` fail with it right after the
/// daemon was reaped, and the mount was then reported live.
pub fn is_dead_mount_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOTCONN | libc::ECONNABORTED | libc::ECANCELED)
    )
}

/// Whether the FUSE mount at `path` has lost its daemon. Asked with `statvfs(2)`, which
/// FUSE always forwards to the daemon, whereas `stat(2)` may be answered from attributes
/// the kernel cached before the daemon died.
#[cfg_attr(target_os = "macos", allow(dead_code))]
fn is_dead_mount(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: an all-zero `statvfs` is a valid value of this plain C struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and `st` is a valid, writable buffer.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    rc != 0 && is_dead_mount_error(&io::Error::last_os_error())
}

/// Whether `path` is a mount point, and of what: from /proc/self/mountinfo on Linux,
/// `statfs(2)` on macOS. A FUSE mount whose daemon is gone is [`MountState::Dead`].
pub fn mount_state(path: &Path) -> MountState {
    let abs = absolute(path);
    platform_mount_state(&abs)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn platform_mount_state(abs: &Path) -> MountState {
    match vmount_core::mounts::lookup(abs).map(|e| e.fstype) {
        None => MountState::NotMounted,
        // Only FUSE mounts can be dead; stat'ing others (a hung NFS server) could block.
        Some(fstype) if fstype.starts_with("fuse") && is_dead_mount(abs) => MountState::Dead,
        Some(fstype) => MountState::Mounted { fstype },
    }
}

#[cfg(target_os = "macos")]
fn platform_mount_state(abs: &Path) -> MountState {
    use std::ffi::CStr;

    let Ok(c) = CString::new(abs.as_os_str().as_bytes()) else {
        return MountState::NotMounted;
    };
    // SAFETY: an all-zero `statfs` is a valid value of this plain C struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and `st` is a valid, writable statfs buffer.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return if is_dead_mount_error(&io::Error::last_os_error()) {
            MountState::Dead
        } else {
            MountState::NotMounted
        };
    }
    // SAFETY: the kernel fills both arrays with NUL-terminated strings.
    let (on, fstype) = unsafe {
        (
            CStr::from_ptr(st.f_mntonname.as_ptr()),
            CStr::from_ptr(st.f_fstypename.as_ptr()),
        )
    };
    if on.to_bytes() == abs.as_os_str().as_bytes() {
        MountState::Mounted {
            fstype: fstype.to_string_lossy().into_owned(),
        }
    } else {
        MountState::NotMounted
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "macos")))]
fn platform_mount_state(abs: &Path) -> MountState {
    if is_dead_mount(abs) {
        MountState::Dead
    } else {
        MountState::NotMounted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macos_options_name_the_volume_and_filter_apple_files() {
        let mut o = FuseOptions {
            fs_name: "memfs".into(),
            ..Default::default()
        };
        assert_eq!(macos_options(&o), ["volname=memfs", "noappledouble"]);
        o.volume_name = Some("My Disk, 2".into());
        o.no_apple_double = false;
        o.no_apple_xattr = true;
        assert_eq!(macos_options(&o), ["volname=My Disk_ 2", "noapplexattr"]);
    }

    #[test]
    fn options_are_built_from_fuse_options() {
        let opts = FuseOptions {
            fs_name: "my fs,x".into(),
            threads: 3,
            ..Default::default()
        };
        let c = session_config(&opts);
        assert!(
            c.mount_options
                .contains(&MountOption::FSName("my_fs_x".into()))
        );
        assert!(
            c.mount_options
                .contains(&MountOption::CUSTOM("subtype=vmount".into()))
        );
        assert!(c.mount_options.contains(&MountOption::DefaultPermissions));
        assert!(!c.mount_options.contains(&MountOption::RO));
        assert!(!c.mount_options.contains(&MountOption::AutoUnmount));
        assert_eq!(c.acl, SessionACL::Owner);
        if cfg!(target_os = "linux") {
            assert_eq!(c.n_threads, Some(3));
            assert!(c.clone_fd);
        }
        let opts = FuseOptions {
            allow_other: true,
            read_only: true,
            default_permissions: false,
            threads: 1,
            ..Default::default()
        };
        let c = session_config(&opts);
        assert!(c.mount_options.contains(&MountOption::RO));
        assert!(c.mount_options.contains(&MountOption::AutoUnmount));
        assert!(!c.mount_options.contains(&MountOption::DefaultPermissions));
        assert_eq!(c.acl, SessionACL::All);
        assert_eq!(c.n_threads, Some(1));
        assert!(!c.clone_fd);
        assert!(worker_threads(0) >= 1);
    }

    #[test]
    fn passthrough_mode_checks_conflicts_and_privilege() {
        let p = Path::new("/x");
        let with = |passthrough, writeback_cache| FuseOptions {
            passthrough,
            writeback_cache,
            ..Default::default()
        };
        let mode = |o: &FuseOptions, privileged| passthrough_mode(o, p, privileged);
        assert!(matches!(
            mode(&with(Passthrough::On, true), true),
            Err(FuseError::PassthroughWithWriteback(_))
        ));
        assert_eq!(
            mode(&with(Passthrough::Off, true), false).unwrap(),
            Passthrough::Off
        );
        if cfg!(target_os = "linux") {
            assert!(matches!(
                mode(&with(Passthrough::On, false), false),
                Err(FuseError::PassthroughNotPermitted(_))
            ));
            assert_eq!(
                mode(&with(Passthrough::On, false), true).unwrap(),
                Passthrough::On
            );
            // auto with writeback: left to `init`, where passthrough wins if the kernel has it.
            assert_eq!(
                mode(&with(Passthrough::Auto, true), true).unwrap(),
                Passthrough::Auto
            );
        }
        assert_eq!(
            mode(&with(Passthrough::Auto, true), false).unwrap(),
            Passthrough::Off
        );
        if cfg!(target_os = "linux") && is_root() {
            assert!(may_register_backing_files());
        }
    }

    #[test]
    fn errors_name_the_path_and_the_fix() {
        let p = PathBuf::from("/x");
        let cases = [
            (FuseError::MountpointMissing(p.clone()), "`mkdir -p /x`"),
            (FuseError::NotADirectory(p.clone()), "/x is not a directory"),
            (
                FuseError::AlreadyMounted(p.clone()),
                "/x is already a mount point",
            ),
            (FuseError::DeadMount(p.clone()), "`vmount unmount /x`"),
            (FuseError::NotMounted(p.clone()), "nothing is mounted at /x"),
            (
                FuseError::PassthroughUnsupported(p.clone()),
                "kernel does not support FUSE passthrough",
            ),
            (
                FuseError::PassthroughUnsupported(p.clone()),
                "set passthrough = \"auto\" or \"off\"",
            ),
            (
                FuseError::PassthroughNotPermitted(p.clone()),
                "CAP_SYS_ADMIN",
            ),
            (
                FuseError::PassthroughWithWriteback(p.clone()),
                "cannot be combined with writeback_cache",
            ),
        ];
        for (e, want) in cases {
            let s = e.to_string();
            assert!(s.contains(want), "{s:?} lacks {want:?}");
            assert!(!s.contains('\n'), "{s:?}");
        }
    }
}
