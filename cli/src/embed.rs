//! The embedding API: mount a filesystem of your own with one call.
//!
//! [`mount`] takes any [`Vfs`] and a [`MountPlan`] and returns a [`Mount`] guard. The
//! backend is chosen exactly as `vmount CONFIG` chooses it (the same code: `auto` takes
//! the first usable backend for this OS and falls over to the next one when a backend
//! fails to mount for a reason of its own). A plan comes from [`MountPlan::builder`] in
//! code, or from a config file with [`MountPlan::from_config_file`].
//!
//! Decisions:
//! - **The guard owns the mount.** Dropping it unmounts (errors are logged with
//!   `tracing`, since `drop` cannot return them); [`Mount::unmount`] reports them.
//! - **No output, no process-wide side effects at mount time.** The library prints
//!   nothing (the CLI's `mounted ...` line and NFS hints are the binary's), and installs
//!   signal handlers only when [`Mount::wait`] is called.
//! - **The `[filesystem]` part of a plan is ignored**: the filesystem is yours. A plan
//!   from the builder describes it as having no host files, so FUSE passthrough stays off
//!   (filesystems of your own serve data through `read`/`write`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use vmount_core::Vfs;

use crate::config::{BackendChoice, Source, Switch};
use crate::plan::{FsPlan, FusePlan, MountPlan, NfsPlan, WinfspPlan};
use crate::platform::{self, Backend};
use crate::run::{self, Active, End};

/// Mounts `fs` as `plan` says and returns the guard of the mount, once it is usable.
///
/// ```no_run
/// # fn demo() -> anyhow::Result<()> {
/// use vmount::core::memfs::{MemFs, MemFsOptions};
/// use vmount::{BackendChoice, MountPlan};
///
/// let plan = MountPlan::builder("/tmp/mnt")
///     .backend(BackendChoice::Auto)
///     .name("scratch")
///     .build()?;
/// let mount = vmount::mount(MemFs::new(MemFsOptions::default()), &plan)?;
/// println!("mounted at {} via {}", mount.mountpoint().display(), mount.backend());
/// mount.wait()?; // until Ctrl-C or `umount /tmp/mnt`
/// # Ok(())
/// # }
/// ```
pub fn mount(fs: impl Vfs, plan: &MountPlan) -> anyhow::Result<Mount> {
    mount_shared(Arc::new(fs), plan)
}

/// [`mount`] for a filesystem that is already shared (the caller keeps a handle to it,
/// for example to inspect its state while it is mounted).
pub fn mount_shared(fs: Arc<dyn Vfs>, plan: &MountPlan) -> anyhow::Result<Mount> {
    if let Some(note) = &plan.fallback {
        tracing::info!("{note}");
    }
    let (backend, active) = run::mount_vfs(plan, fs, |note| tracing::warn!("{note}"))?;
    tracing::info!(
        "mounted {} at {} via {backend}",
        plan.name,
        plan.mountpoint.display()
    );
    Ok(Mount {
        active: Some(active),
        backend,
        mountpoint: plan.mountpoint.clone(),
    })
}

/// A mounted filesystem. Dropping it unmounts.
#[must_use = "dropping the guard unmounts at once"]
pub struct Mount {
    /// `None` once unmounted or found gone.
    active: Option<Box<dyn Active>>,
    backend: Backend,
    mountpoint: PathBuf,
}

impl std::fmt::Debug for Mount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mount")
            .field("mountpoint", &self.mountpoint)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl Mount {
    /// Where the filesystem is mounted (absolute, symlinks resolved; on Windows a drive
    /// such as `X:` or a folder).
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// The backend that mounted it.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether the mount is still in place (false after `umount` from outside).
    pub fn is_mounted(&self) -> bool {
        self.active.as_ref().is_some_and(|a| a.is_alive())
    }

    /// Unmounts and waits for the backend to stop, reporting a failure (a busy mount, a
    /// failing unmount command).
    pub fn unmount(mut self) -> anyhow::Result<()> {
        match self.active.take() {
            Some(active) => active.unmount(),
            None => Ok(()),
        }
    }

    /// Blocks until SIGINT, SIGTERM or SIGHUP (Ctrl-C or Ctrl-Break on Windows), then
    /// unmounts; or until the mount is removed from outside, then returns `Ok`.
    ///
    /// Installs process-wide signal handlers (`signal-hook`) for those signals; a second
    /// signal while the unmount hangs exits the process with code 1, as `vmount` does.
    /// They are removed when it returns, leaving a handler that ends the process with
    /// code 1 on such a signal until the next `wait` installs its own. Sleeps while
    /// nothing happens: on Linux, and for FUSE on macOS, nothing wakes it periodically
    /// (an NFS mount on macOS is looked for once a second, Windows every 100 ms).
    pub fn wait(mut self) -> anyhow::Result<()> {
        let Some(active) = self.active.take() else {
            return Ok(());
        };
        let stop = crate::stop::Stop::install()?;
        match run::wait_for_end(&*active, &stop, &self.mountpoint) {
            End::Signal => active.unmount(),
            End::Vanished => {
                drop(active);
                Ok(())
            }
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(active) = self.active.take()
            && let Err(e) = active.unmount()
        {
            tracing::warn!("unmounting {}: {e:#}", self.mountpoint.display());
        }
    }
}

impl MountPlan {
    /// Starts a plan for mounting on `mountpoint`, with the defaults of a config file that
    /// sets only `mountpoint` (backend `auto`, read-write, FUSE caches of one second).
    pub fn builder(mountpoint: impl Into<PathBuf>) -> MountPlanBuilder {
        MountPlanBuilder {
            mountpoint: mountpoint.into(),
            backend: BackendChoice::Auto,
            read_only: false,
            name: "vmount".to_owned(),
            threads: 0,
            cache_timeout: Duration::from_secs(1),
            writeback_cache: false,
            passthrough: false,
            allow_other: false,
            default_permissions: None,
            nfs_port: 0,
            nfs_mount: true,
            winfsp_case_insensitive: true,
        }
    }

    /// Reads and validates a config file exactly as `vmount check CONFIG` does, with
    /// `backend` (when given) overriding the config's, as `--backend` does.
    pub fn from_config_file(
        path: &Path,
        backend: Option<BackendChoice>,
    ) -> anyhow::Result<MountPlan> {
        let src = Source::read(path)?;
        let raw = src.parse()?;
        MountPlan::build(raw, &src, backend)
    }
}

/// Builds a [`MountPlan`] in code; see [`MountPlan::builder`]. Every setting has the
/// meaning of the config key of the same name (see `vmount init`).
#[derive(Debug, Clone)]
pub struct MountPlanBuilder {
    mountpoint: PathBuf,
    backend: BackendChoice,
    read_only: bool,
    name: String,
    threads: usize,
    cache_timeout: Duration,
    writeback_cache: bool,
    passthrough: bool,
    allow_other: bool,
    default_permissions: Option<bool>,
    nfs_port: u16,
    nfs_mount: bool,
    winfsp_case_insensitive: bool,
}

impl MountPlanBuilder {
    /// `auto` (the default) or one backend; an explicit backend has no fallback.
    pub fn backend(mut self, backend: BackendChoice) -> Self {
        self.backend = backend;
        self
    }

    /// Mount read-only: the kernel refuses changes before they reach the filesystem.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// The label in the mount table (1 to 64 of `A-Z a-z 0-9 . _ + -`; default `vmount`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// FUSE worker threads; 0 (the default) = the number of CPUs.
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// How long the kernel may cache attributes and names, and that a name does not exist
    /// (FUSE `attr_timeout`, `entry_timeout` and `negative_timeout`, WinFsp
    /// `file_info_timeout`). Default 1 s; a filesystem that
    /// changes only through its mount can use much longer, as memfs does (an hour).
    pub fn cache_timeout(mut self, timeout: Duration) -> Self {
        self.cache_timeout = timeout;
        self
    }

    /// FUSE: let the kernel buffer writes (default false).
    pub fn writeback_cache(mut self, on: bool) -> Self {
        self.writeback_cache = on;
        self
    }

    /// FUSE (Linux 6.9+, mounted as root): let the kernel read and write open files
    /// straight through the host files the filesystem offers
    /// ([`Vfs::passthrough_fd`](vmount_core::Vfs::passthrough_fd),
    /// [`Vfs::backing_id`](vmount_core::Vfs::backing_id)), where the kernel allows it, as
    /// the config's `passthrough = "auto"` does. Default false: a filesystem without host
    /// files gains nothing, and passthrough rules out the writeback cache.
    pub fn passthrough(mut self, on: bool) -> Self {
        self.passthrough = on;
        self
    }

    /// FUSE and NFS: let other users use the mount (default false).
    pub fn allow_other(mut self, on: bool) -> Self {
        self.allow_other = on;
        self
    }

    /// FUSE: let the kernel check permission bits first. Default: on unless the
    /// filesystem's [`Capabilities::enforces_permissions`](vmount_core::Capabilities) says
    /// it checks them itself.
    pub fn default_permissions(mut self, on: bool) -> Self {
        self.default_permissions = Some(on);
        self
    }

    /// NFS: the server's port on 127.0.0.1 (default 0: any free port).
    pub fn nfs_port(mut self, port: u16) -> Self {
        self.nfs_port = port;
        self
    }

    /// NFS: run the OS mount command (default true); false serves only.
    pub fn nfs_mount(mut self, mount: bool) -> Self {
        self.nfs_mount = mount;
        self
    }

    /// WinFsp: find names regardless of case (default true).
    pub fn case_insensitive(mut self, on: bool) -> Self {
        self.winfsp_case_insensitive = on;
        self
    }

    /// Validates the plan against this machine: the mountpoint exists (on Windows: is a
    /// drive letter, or a folder whose parent exists) and the backend is usable.
    pub fn build(self) -> anyhow::Result<MountPlan> {
        let ok_name = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b));
        if !ok_name {
            bail!(
                "\"{}\" is not a valid mount name: use 1 to 64 characters from A-Z, a-z, 0-9, \
                 '.', '_', '+', '-'",
                self.name
            );
        }
        if self.threads > crate::config::MAX_THREADS {
            bail!(
                "threads must be from 0 to {} (0 = the number of CPUs)",
                crate::config::MAX_THREADS
            );
        }
        if self.cache_timeout > crate::config::MAX_TIMEOUT {
            bail!("a cache timeout of more than a day is almost certainly a mistake");
        }
        let mountpoint = checked_mountpoint(&self.mountpoint)?;
        let resolved = platform::resolve_for(self.backend, self.nfs_mount)?;
        Ok(MountPlan {
            config: None,
            name: self.name,
            mountpoint,
            read_only: self.read_only,
            // A placeholder, read only by `FusePlan::effective_passthrough`: a data store
            // other than the heap leaves the choice to `fuse.passthrough` below.
            filesystem: FsPlan::Memfs {
                size_limit: None,
                max_inodes: None,
                data: crate::config::DataStore::Kernel,
            },
            backend: resolved.backend,
            requested: (self.backend, "code"),
            fallback: resolved.note,
            alternatives: resolved.alternatives,
            fuse: FusePlan {
                threads: self.threads,
                attr_timeout: self.cache_timeout,
                entry_timeout: self.cache_timeout,
                negative_timeout: self.cache_timeout,
                watched_timeout: None,
                writeback_cache: self.writeback_cache,
                allow_other: self.allow_other,
                default_permissions: self.default_permissions,
                passthrough: if self.passthrough {
                    Switch::Auto
                } else {
                    Switch::Off
                },
                io_uring: Switch::Auto,
                volume_name: None,
                noappledouble: true,
                noapplexattr: false,
            },
            nfs: NfsPlan {
                port: self.nfs_port,
                mount: self.nfs_mount,
                allow_other: self.allow_other,
                noappledouble: cfg!(target_os = "macos"),
            },
            winfsp: WinfspPlan {
                volume_name: None,
                case_insensitive: self.winfsp_case_insensitive,
                hide_dotfiles: false,
                file_info_timeout: self.cache_timeout,
            },
            metrics: None,
        })
    }
}

/// The mountpoint as the backends need it: on unix an existing directory, canonical; on
/// Windows a drive letter or a folder whose parent exists (WinFsp creates the folder).
fn checked_mountpoint(path: &Path) -> anyhow::Result<PathBuf> {
    let shown = path.display();
    if cfg!(windows) {
        let text = path.to_string_lossy();
        let t = text.trim_end_matches(['\\', '/']);
        let b = t.as_bytes();
        if b.len() == 2 && b[0].is_ascii_alphabetic() && b[1] == b':' {
            return Ok(PathBuf::from(t));
        }
        let abs = std::path::absolute(path)
            .with_context(|| format!("cannot make the mountpoint {shown} absolute"))?;
        return match abs.parent() {
            Some(parent) if parent.is_dir() => Ok(abs),
            _ => Err(anyhow!(
                "the folder holding the mountpoint {shown} does not exist; create it, or mount \
                 on a drive letter such as X:"
            )),
        };
    }
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => bail!("the mountpoint {shown} is not a directory"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("the mountpoint {shown} does not exist; create it (mkdir -p {shown})")
        }
        Err(e) if crate::config::is_dead_mount_error(&e) => bail!(
            "the mountpoint {shown} is a dead FUSE mount; clear it with `vmount unmount {shown}`"
        ),
        Err(e) => bail!(
            "cannot use the mountpoint {shown}: {}",
            crate::config::io_reason(&e)
        ),
    }
    std::fs::canonicalize(path).with_context(|| format!("cannot resolve the mountpoint {shown}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_validates() {
        let dir = tempfile::tempdir().unwrap();
        let e = MountPlan::builder(dir.path().join("nope"))
            .build()
            .unwrap_err()
            .to_string();
        if !cfg!(windows) {
            assert!(e.contains("does not exist"), "{e}");
        }
        let e = MountPlan::builder(dir.path())
            .name("a b")
            .build()
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a valid mount name"), "{e}");
        // Serving NFS needs nothing from the machine, so this plan builds everywhere.
        let p = MountPlan::builder(dir.path())
            .backend(BackendChoice::Nfs)
            .nfs_mount(false)
            .read_only(true)
            .name("mine")
            .cache_timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        assert_eq!(p.backend, Backend::Nfs);
        assert!(p.read_only && !p.nfs.mount);
        assert_eq!(p.name, "mine");
        assert_eq!(p.fuse.attr_timeout, Duration::from_secs(5));
        assert_eq!(p.winfsp.file_info_timeout, Duration::from_secs(5));
        assert!(p.alternatives.is_empty());
        let shown = p.to_string();
        assert!(shown.contains("from code"), "{shown}");
    }
}
