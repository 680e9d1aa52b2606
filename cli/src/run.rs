//! Carrying out a [`MountPlan`]: build the filesystem, mount it in the foreground, wait
//! for a signal or for the mount to vanish, unmount. Also `vmount unmount`.
//!
//! The signal handlers only set a flag and wake the main thread ([`crate::stop`]), which
//! owns the mount guard and does the unmounting. That keeps all real work out of signal
//! context, and the same wait notices a mount removed from outside (`fusermount3 -u`,
//! `umount`): FUSE reports the end of its session, and for NFS on Linux the wait watches
//! the mount table. While nothing happens the daemon's main thread does not wake at all
//! (measured: 10 wake-ups a second before, when it looked every [`POLL`]).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use vmount_core::Vfs;
use vmount_core::memfs::{MemFs, MemFsOptions};

use crate::config::DataStore;
use crate::plan::{FsPlan, MountPlan};
use crate::platform::{self, Backend, MountFailure};
use crate::stop::{MountTable, Stop};

/// How often the foreground daemon looks for signals and for a vanished mount where
/// nothing can wake it (Windows).
pub const POLL: Duration = Duration::from_millis(100);

/// How often it looks for a vanished mount that nothing reports (an NFS mount off Linux).
const UNREPORTED_POLL: Duration = Duration::from_secs(1);

/// The longest the wait sleeps when every end is reported: a safety net only.
const REPORTED_POLL: Duration = Duration::from_secs(60);

/// Mounts as planned and serves until SIGINT, SIGTERM or SIGHUP (then unmounts), or
/// until the mount is removed from outside. Returns once unmounted. With `auto`, a
/// backend that fails to mount for a reason of its own hands over to the next usable one.
pub fn mount_and_wait(plan: &MountPlan) -> anyhow::Result<()> {
    if let Some(note) = &plan.fallback {
        let _ = writeln!(std::io::stderr(), "vmount: {note}");
    }
    raise_fd_limit();
    #[cfg(target_os = "linux")]
    presize_fd_table(FD_TABLE_SLOTS);
    // Bound before mounting, so that a busy port fails with nothing mounted.
    let metrics = crate::metrics::bind(plan.metrics)?;
    let fs = build_fs(plan)?;
    // Before mounting: a signal during mount setup must unmount, not kill us with the
    // mount left behind.
    let stop = Arc::new(Stop::install()?);
    let (backend, active) = mount_vfs(plan, fs, |note| {
        tracing::warn!("{note}");
        let _ = writeln!(std::io::stderr(), "vmount: {note}");
    })?;
    active.announce(plan, backend);
    // Listed by `vmount status` (and the metrics served) until dropped after the unmount.
    let _registered = crate::daemon::serving(plan, backend, &stop, metrics);
    match wait_for_end(&*active, &stop, &plan.mountpoint) {
        End::Signal => active.unmount(),
        End::Vanished => {
            drop(active);
            Ok(())
        }
    }
}

/// Mounts `fs` as `plan` says (backend, options, and with `auto` the fallback to the next
/// usable backend, each hand-over reported through `notes`). Returns the backend that
/// mounted and the guard of the mount, which unmounts when dropped. Shared by the CLI and
/// the embedding API ([`crate::mount`]), so both choose backends the same way.
pub(crate) fn mount_vfs(
    plan: &MountPlan,
    fs: Arc<dyn Vfs>,
    notes: impl FnMut(String),
) -> anyhow::Result<(Backend, Box<dyn Active>)> {
    platform::mount_with_fallback(
        plan.backend,
        &plan.alternatives,
        |backend| match backend {
            Backend::Fuse => fuse::mount(plan, Arc::clone(&fs)),
            Backend::Nfs => nfs::mount(plan, Arc::clone(&fs)),
            Backend::Winfsp => winfsp::mount(plan, Arc::clone(&fs)),
        },
        notes,
    )
}

/// Why [`wait_for_end`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// `stop` was set (a signal): the caller unmounts.
    Signal,
    /// The mount was removed from outside (`umount`, `fusermount3 -u`).
    Vanished,
}

/// Blocks until `stop` is requested or the mount is gone. Sleeps while nothing happens:
/// woken by signals, by the stop request, by the backend's report of its end, or (when
/// the backend has none) by a change of the mount table or a slow poll.
pub(crate) fn wait_for_end(active: &dyn Active, stop: &Stop, mp: &Path) -> End {
    let reported = stop.waker().is_some_and(|w| active.notify_end(w));
    let table = if reported {
        MountTable::default()
    } else {
        MountTable::open()
    };
    let quiet = if reported || table.reports_changes() {
        REPORTED_POLL
    } else {
        UNREPORTED_POLL
    };
    loop {
        if stop.is_requested() {
            tracing::info!("signal received; unmounting {}", mp.display());
            return End::Signal;
        }
        if !active.is_alive() {
            tracing::warn!("{} was unmounted from outside; exiting", mp.display());
            return End::Vanished;
        }
        // A change of the mount table wakes it too; `is_alive` then reads the table.
        stop.sleep(quiet, &table);
    }
}

/// Returns the allocator's free memory to the system (glibc's `malloc_trim`). A daemon
/// that frees a lot (memfs after deletes; the blocking pool's per-thread arenas under NFS
/// load) otherwise keeps it mapped: glibc returns heap memory only from the top of each
/// arena, so after a burst the RSS stays high although nothing is in use, which looks like
/// a leak to anyone watching. The state thread calls it once a second while the
/// filesystem is called and once after, which is cheap: it walks the free lists.
pub(crate) fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; it only returns unused pages to the OS.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A mount made by one backend, as the wait loop sees it. Dropping it unmounts.
pub(crate) trait Active {
    /// Whether the mount is still in place.
    fn is_alive(&self) -> bool;
    /// Arranges for `wake` to be called when the mount ends by itself (at once if it
    /// already has), so that the wait need not look; false if this mount cannot report
    /// its end, and the wait watches for it.
    fn notify_end(&self, wake: Box<dyn FnOnce() + Send>) -> bool {
        let _ = wake;
        false
    }
    /// Unmounts, reporting failure.
    fn unmount(self: Box<Self>) -> anyhow::Result<()>;
    /// Tells the user the mount is ready (the line scripts and tests wait for).
    fn announce(&self, plan: &MountPlan, backend: Backend) {
        announce(plan, backend);
    }
}

/// A backend's typed error as a [`MountFailure`].
fn failure(error: impl std::fmt::Display, backend_failed: bool) -> MountFailure {
    MountFailure {
        error: anyhow!("{error}"),
        backend_failed,
    }
}

/// Raises the open-file limit as far as allowed: the loopback filesystem holds a
/// descriptor for every inode a client knows, and NFS clients never say when they forget
/// one, so a listing of 100,000 files needs 100,000 descriptors. The soft limit goes up
/// to the hard one; as root the hard limit goes up to the kernel's `fs.nr_open` too.
fn raise_fd_limit() {
    #[cfg(unix)]
    {
        // SAFETY: an all-zero rlimit is a valid value of this plain C struct.
        let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
        // SAFETY: `lim` is a valid, writable rlimit.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return;
        }
        let before = lim.rlim_cur;
        #[cfg(target_os = "linux")]
        if let Some(max) = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|t| t.trim().parse::<libc::rlim_t>().ok())
            && max > lim.rlim_max
        {
            let raised = libc::rlimit {
                rlim_cur: max,
                rlim_max: max,
            };
            // SAFETY: `raised` is a valid rlimit; without CAP_SYS_RESOURCE this fails
            // with EPERM and changes nothing.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                tracing::debug!("open-file limit raised from {before} to {max}");
                return;
            }
        }
        // macOS refuses a soft limit above OPEN_MAX even when the hard limit is unlimited.
        let cap: libc::rlim_t = if cfg!(target_os = "macos") {
            10_240
        } else {
            lim.rlim_max
        };
        if lim.rlim_cur < cap.min(lim.rlim_max) {
            lim.rlim_cur = cap.min(lim.rlim_max);
            // SAFETY: `lim` is a valid rlimit whose soft limit does not exceed its hard one.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } == 0 {
                tracing::debug!("open-file limit raised from {before} to {}", lim.rlim_cur);
            }
        }
    }
}

/// Descriptor slots made ready at start (Linux): the loopback's descriptor cache (at
/// most 8,192) with its open files, or memfs's first 16,000 files.
#[cfg(target_os = "linux")]
const FD_TABLE_SLOTS: usize = 16_384;

/// Grows this process's descriptor table to `slots` (at most the open-file limit) before
/// it is needed.
///
/// Why: Linux grows a table by doubling, and in a process with more than one thread each
/// growth waits for an RCU grace period (`expand_files` → `synchronize_rcu`), 10-14 ms
/// on the development VM, in whichever request happened to open the descriptor. A fresh
/// memfs daemon's first 10,000 creates took 24.5 µs each against 15 µs once the table
/// had grown; the first cold `find` through a fresh loopback mount waited 5 times, about
/// 60 ms in all. A table never shrinks, so growing it once here, while nothing waits on
/// it, costs one grace period at most and 8 bytes of kernel memory per slot.
#[cfg(target_os = "linux")]
fn presize_fd_table(slots: usize) {
    // SAFETY: an all-zero rlimit is a valid value of this plain C struct.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `lim` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    let top = usize::try_from(lim.rlim_cur)
        .unwrap_or(usize::MAX)
        .min(slots);
    let Ok(highest) = libc::c_int::try_from(top.saturating_sub(1)) else {
        return;
    };
    // SAFETY: a NUL-terminated path; O_PATH opens nothing for I/O.
    let fd = unsafe { libc::open(c"/".as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    if fd < 0 {
        return;
    }
    // The lowest free descriptor at or above `highest`: the table grows to hold it.
    // SAFETY: F_DUPFD_CLOEXEC on the descriptor just opened.
    let high = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, highest) };
    // SAFETY: both descriptors are ours and closed once.
    unsafe {
        if high >= 0 {
            libc::close(high);
        }
        libc::close(fd);
    }
}

/// The filesystem the plan names. Adding a filesystem is one arm here.
fn build_fs(plan: &MountPlan) -> anyhow::Result<Arc<dyn Vfs>> {
    match &plan.filesystem {
        FsPlan::Memfs {
            size_limit,
            max_inodes,
            data,
        } => {
            let (root_uid, root_gid) = owner();
            let fs = MemFs::new(MemFsOptions {
                size_limit: *size_limit,
                max_inodes: *max_inodes,
                read_only: plan.read_only,
                root_uid,
                root_gid,
                root_mode: 0o755,
                kernel_data: *data != DataStore::Heap,
            });
            if *data == DataStore::Kernel && !fs.kernel_data() {
                anyhow::bail!(
                    "memfs cannot keep its data in the kernel: that needs Linux and root (to \
                     make its private tmpfs); set `data = \"auto\"` or `data = \"heap\"` in \
                     [filesystem]"
                );
            }
            tracing::debug!(kernel_data = fs.kernel_data(), "memfs data store");
            Ok(Arc::new(fs))
        }
        FsPlan::Loopback { source } => loopback(source, plan.read_only),
    }
}

/// The loopback filesystem over `source`. Running as root, it creates files as the
/// calling user (from each request's credentials), so nothing more is needed here.
fn loopback(source: &Path, read_only: bool) -> anyhow::Result<Arc<dyn Vfs>> {
    use vmount_core::loopback::{Loopback, LoopbackOptions};
    let fs = Loopback::new(LoopbackOptions {
        source: source.to_owned(),
        read_only,
    })
    .map_err(|e| {
        anyhow!(
            "cannot mirror the loopback source {}: {e}",
            source.display()
        )
    })?;
    Ok(Arc::new(fs))
}

/// Whether FUSE's `default_permissions` (the kernel checks mode bits before calling us)
/// is needed when the config leaves it unset. Not when the filesystem makes the same
/// decisions itself: memfs does (uid, gid, groups, sticky and setgid rules, as pjdfstest
/// confirms), and so does loopback run as root on Linux, where every host call runs with
/// the caller's credentials and the host kernel decides, ACLs included. Leaving the check
/// to the filesystem saves a GETATTR of the parent directory, which the kernel otherwise
/// sends after every change in it before it can check the next path. macOS loopback only
/// approximates the checks, so the kernel keeps them there.
#[cfg_attr(not(unix), allow(dead_code))]
fn kernel_checks_permissions(fs: &dyn Vfs, plan: &MountPlan) -> bool {
    let approximate =
        cfg!(target_os = "macos") && matches!(plan.filesystem, FsPlan::Loopback { .. });
    approximate || !fs.capabilities().enforces_permissions
}

/// The uid and gid that own the root directory: whoever runs the daemon.
fn owner() -> (u32, u32) {
    cfg_if::cfg_if! {
        if #[cfg(unix)] {
            // SAFETY: geteuid and getegid have no preconditions and cannot fail.
            unsafe { (libc::geteuid(), libc::getegid()) }
        } else {
            (0, 0)
        }
    }
}

/// Prints the one line scripts and tests wait for. A closed stdout is not an error: the
/// mount is up either way, and the daemon must keep serving it.
fn announce(plan: &MountPlan, backend: Backend) {
    let line = format!(
        "mounted {} at {} via {backend}",
        plan.name,
        plan.mountpoint.display(),
    );
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
        tracing::debug!("could not print to stdout ({e}); {line}");
    }
    tracing::info!("{line}");
}

/// A path the user typed as a mountpoint, made absolute without resolving the last
/// component, which may be a dead mount that cannot be stat'ed.
fn mountpoint_arg(path: &Path) -> anyhow::Result<PathBuf> {
    let abs = std::path::absolute(path)
        .map_err(|e| anyhow!("cannot make {} an absolute path: {e}", path.display()))?;
    if let Ok(canon) = std::fs::canonicalize(&abs) {
        return Ok(canon);
    }
    match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) => match std::fs::canonicalize(parent) {
            Ok(parent) => Ok(parent.join(name)),
            Err(_) => Ok(abs.clone()),
        },
        _ => Ok(abs),
    }
}

/// `vmount unmount MOUNTPOINT`: a FUSE mount, or an NFS mount of vmount's export.
pub fn unmount(path: &Path) -> anyhow::Result<()> {
    let mountpoint = mountpoint_arg(path)?;
    if nfs::is_nfs_mount(&mountpoint) {
        vmount_backend_nfs::unmount_path(&mountpoint).map_err(|e| anyhow!("{e}"))?;
    } else {
        fuse::unmount(&mountpoint)?;
    }
    crate::daemon::await_daemon_after_unmount(&mountpoint);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "unmounted {}", mountpoint.display()).and_then(|()| out.flush());
    Ok(())
}

#[cfg(unix)]
mod fuse {
    use std::path::Path;
    use std::sync::Arc;

    use anyhow::{anyhow, bail};
    use vmount_backend_fuse::{FuseMount, FuseOptions, IoUring, MountState, Passthrough};
    use vmount_core::Vfs;

    use super::{Active, failure};
    use crate::config::Switch;
    use crate::plan::MountPlan;
    use crate::platform::MountFailure;

    impl Active for FuseMount {
        fn is_alive(&self) -> bool {
            FuseMount::is_alive(self)
        }
        fn notify_end(&self, wake: Box<dyn FnOnce() + Send>) -> bool {
            FuseMount::notify_end(self, wake);
            true
        }
        fn unmount(self: Box<Self>) -> anyhow::Result<()> {
            FuseMount::unmount(*self).map_err(|e| anyhow!("{e}"))
        }
    }

    pub(super) fn mount(
        plan: &MountPlan,
        fs: Arc<dyn Vfs>,
    ) -> Result<Box<dyn Active>, MountFailure> {
        let mp = &plan.mountpoint;
        // `mount` itself refuses a mountpoint that is already mounted (live or dead) and
        // names the fix; the state is read here only to warn about hidden files, and not
        // to read a mounted filesystem's listing as if it were the directory's own.
        let free = vmount_backend_fuse::mount_state(mp) == MountState::NotMounted;
        if free && std::fs::read_dir(mp).is_ok_and(|mut d| d.next().is_some()) {
            tracing::warn!(
                "{} is not empty; its contents are hidden while mounted",
                mp.display()
            );
        }
        let opts = FuseOptions {
            threads: plan.fuse.threads,
            attr_timeout: plan.fuse.attr_timeout,
            entry_timeout: plan.fuse.entry_timeout,
            negative_timeout: plan.fuse.negative_timeout,
            watched_timeout: plan.fuse.watched_timeout,
            writeback_cache: plan.fuse.writeback_cache,
            allow_other: plan.fuse.allow_other,
            default_permissions: plan
                .fuse
                .default_permissions
                .unwrap_or_else(|| super::kernel_checks_permissions(&*fs, plan)),
            read_only: plan.read_only,
            fs_name: plan.name.clone(),
            // The mount table then says `fuse.vmount`, which is how cleanup scripts and
            // `vmount unmount` recognise vmount's mounts.
            subtype: "vmount".to_owned(),
            passthrough: match plan.fuse.effective_passthrough(&plan.filesystem) {
                Switch::Auto => Passthrough::Auto,
                Switch::On => Passthrough::On,
                Switch::Off => Passthrough::Off,
            },
            io_uring: match plan.fuse.io_uring {
                Switch::Auto => IoUring::Auto,
                Switch::On => IoUring::On,
                Switch::Off => IoUring::Off,
            },
            volume_name: plan.fuse.volume_name.clone(),
            no_apple_double: plan.fuse.noappledouble,
            no_apple_xattr: plan.fuse.noapplexattr,
            ..FuseOptions::default()
        };
        match vmount_backend_fuse::mount(fs, mp, &opts) {
            Ok(m) => Ok(Box::new(m)),
            Err(e) => {
                let backend_failed = e.is_backend_failure();
                Err(failure(e, backend_failed))
            }
        }
    }

    pub(super) fn unmount(mp: &Path) -> anyhow::Result<()> {
        match vmount_backend_fuse::mount_state(mp) {
            MountState::NotMounted => bail!("nothing is mounted at {}", mp.display()),
            MountState::Mounted { fstype } if !fstype.starts_with("fuse") => bail!(
                "{} is a {fstype} mount, not a FUSE or vmount NFS mount; vmount only unmounts \
                 its own kinds (use umount for this one)",
                mp.display()
            ),
            MountState::Mounted { .. } | MountState::Dead => {
                vmount_backend_fuse::unmount_path(mp).map_err(|e| anyhow!("{e}"))
            }
        }
    }
}

#[cfg(not(unix))]
mod fuse {
    use std::path::Path;
    use std::sync::Arc;

    use anyhow::bail;
    use vmount_core::Vfs;

    use super::{Active, failure};
    use crate::plan::MountPlan;
    use crate::platform::MountFailure;

    pub(super) fn mount(
        _plan: &MountPlan,
        _fs: Arc<dyn Vfs>,
    ) -> Result<Box<dyn Active>, MountFailure> {
        Err(failure("FUSE is only available on Linux and macOS", true))
    }

    pub(super) fn unmount(mp: &Path) -> anyhow::Result<()> {
        bail!(
            "vmount cannot unmount {} on this platform: only FUSE mounts can be unmounted, and \
             FUSE is only available on Linux and macOS",
            mp.display()
        )
    }
}

/// The NFS backend: serve, and mount or print how to.
mod nfs {
    use std::io::Write as _;
    use std::path::Path;
    use std::sync::Arc;

    use anyhow::anyhow;
    use vmount_backend_nfs::{NfsMount, NfsOptions};
    use vmount_core::Vfs;

    use super::{Active, announce, failure};
    use crate::plan::MountPlan;
    use crate::platform::{Backend, MountFailure};

    impl Active for NfsMount {
        fn is_alive(&self) -> bool {
            NfsMount::is_alive(self)
        }
        /// Serving only, nothing of ours can vanish: the wait need not look. A mount
        /// reports nothing; the wait watches the mount table.
        fn notify_end(&self, _wake: Box<dyn FnOnce() + Send>) -> bool {
            !self.is_mounted_by_us()
        }
        fn unmount(self: Box<Self>) -> anyhow::Result<()> {
            NfsMount::unmount(*self).map_err(|e| anyhow!("{e}"))
        }
        /// Serving only: say where, and the exact commands to mount and unmount.
        fn announce(&self, plan: &MountPlan, backend: Backend) {
            if self.is_mounted_by_us() {
                return announce(plan, backend);
            }
            let text = format!(
                "serving {} over NFS on 127.0.0.1:{}, export {}\nmount with:   {}\nunmount with: \
                 {}\n",
                plan.name,
                self.port(),
                self.export_path(),
                self.mount_command(),
                self.unmount_command()
            );
            let mut out = std::io::stdout().lock();
            if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                tracing::debug!("could not print to stdout ({e}); {text}");
            }
        }
    }

    pub(super) fn mount(
        plan: &MountPlan,
        fs: Arc<dyn Vfs>,
    ) -> Result<Box<dyn Active>, MountFailure> {
        let opts = NfsOptions {
            port: plan.nfs.port,
            mount: plan.nfs.mount,
            allow_other: plan.nfs.allow_other,
            read_only: plan.read_only,
            no_apple_double: plan.nfs.noappledouble,
        };
        match vmount_backend_nfs::mount(fs, &plan.mountpoint, &opts) {
            Ok(m) => Ok(Box::new(m)),
            Err(e) => {
                let backend_failed = e.is_backend_failure();
                Err(failure(e, backend_failed))
            }
        }
    }

    /// Whether `mp` holds an NFS mount (then `vmount unmount` hands it to the NFS backend,
    /// which checks that it is vmount's export).
    pub(super) fn is_nfs_mount(mp: &Path) -> bool {
        cfg_if::cfg_if! {
            if #[cfg(unix)] {
                matches!(
                    vmount_backend_fuse::mount_state(mp),
                    vmount_backend_fuse::MountState::Mounted { fstype } if fstype.starts_with("nfs")
                )
            } else {
                // Windows: the only kind vmount maps to a drive letter.
                let _ = mp;
                true
            }
        }
    }
}

/// The WinFsp backend (Windows).
mod winfsp {
    use std::sync::Arc;

    use vmount_core::Vfs;

    use super::{Active, failure};
    use crate::plan::MountPlan;
    use crate::platform::MountFailure;

    #[cfg(windows)]
    impl Active for vmount_backend_winfsp::WinfspMount {
        fn is_alive(&self) -> bool {
            // WinFsp mounts end only with the process (or our own unmount); Explorer's
            // "disconnect" is not offered for them.
            true
        }
        fn unmount(self: Box<Self>) -> anyhow::Result<()> {
            vmount_backend_winfsp::WinfspMount::unmount(*self).map_err(|e| anyhow::anyhow!("{e}"))
        }
    }

    #[cfg(windows)]
    pub(super) fn mount(
        plan: &MountPlan,
        fs: Arc<dyn Vfs>,
    ) -> Result<Box<dyn Active>, MountFailure> {
        use vmount_backend_winfsp::{WinfspError, WinfspOptions};
        let w = &plan.winfsp;
        let opts = WinfspOptions {
            mountpoint: plan.mountpoint.to_string_lossy().into_owned(),
            volume_name: w.volume_name.clone().unwrap_or_else(|| plan.name.clone()),
            case_insensitive: w.case_insensitive,
            hide_dotfiles: w.hide_dotfiles,
            read_only: plan.read_only,
            file_info_timeout_ms: u32::try_from(w.file_info_timeout.as_millis())
                .unwrap_or(u32::MAX),
            ..WinfspOptions::default()
        };
        // Counted for `vmount status` (see `vmount_core::stats`).
        let fs = Arc::new(vmount_core::stats::Recorded::new(
            fs,
            vmount_core::stats::global(),
        ));
        match vmount_backend_winfsp::mount(fs, &opts) {
            Ok(m) => Ok(Box::new(m)),
            Err(e) => {
                // A bad mountpoint fails the same way with any backend; the rest is WinFsp's.
                let backend_failed = !matches!(
                    e,
                    WinfspError::InvalidMountpoint { .. }
                        | WinfspError::MountpointExists(_)
                        | WinfspError::MountpointParentMissing(_)
                );
                Err(failure(e, backend_failed))
            }
        }
    }

    #[cfg(not(windows))]
    pub(super) fn mount(
        _plan: &MountPlan,
        _fs: Arc<dyn Vfs>,
    ) -> Result<Box<dyn Active>, MountFailure> {
        Err(failure("WinFsp is only available on Windows", true))
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn fd_slots() -> usize {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("FDSize:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("FDSize in /proc/self/status")
    }

    #[test]
    fn the_descriptor_table_is_grown_before_it_is_needed() {
        raise_fd_limit();
        let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        let want = usize::try_from(lim.rlim_cur).unwrap().min(FD_TABLE_SLOTS);
        assert!(
            want >= 4096,
            "open-file limit {} too low for this test",
            lim.rlim_cur
        );
        presize_fd_table(FD_TABLE_SLOTS);
        let slots = fd_slots();
        assert!(slots >= want, "{slots} descriptor slots, wanted {want}");
        // Nothing is left open: the next descriptor is a low one.
        let fd = unsafe { libc::open(c"/".as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
        assert!(fd >= 0 && (fd as usize) < want - 1, "descriptor {fd}");
        unsafe { libc::close(fd) };
    }
}
