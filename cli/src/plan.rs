//! The validated mount plan: what `vmount` will do, with every default filled in, every
//! path resolved and checked, and the backend chosen.
//!
//! [`MountPlan::build`] is the only way from a [`RawConfig`] to something the run code
//! accepts, so "the mountpoint exists" and "the backend is usable" are facts by the time
//! anything is mounted. Errors here are about the machine, not the file (a missing
//! directory, no FUSE), so they are plain runtime errors (exit 1) that name the path or
//! the backend and say how to fix it.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::config::{
    self, BackendChoice, DataStore, FsType, RawConfig, Source, Switch, expand_tilde, format_size,
    io_reason,
};
use crate::platform::{self, Backend};

/// Everything needed to mount, validated.
#[derive(Debug, Clone)]
pub struct MountPlan {
    /// The config file the plan came from, as named on the command line.
    pub config: Option<PathBuf>,
    /// Label for the mount table and messages.
    pub name: String,
    /// Absolute, symlink-free path of an existing directory.
    pub mountpoint: PathBuf,
    /// Mount read-only.
    pub read_only: bool,
    /// The filesystem to serve.
    pub filesystem: FsPlan,
    /// The backend that will serve it.
    pub backend: Backend,
    /// What was asked for, and where: `auto` or a backend, from the config or the CLI.
    pub requested: (BackendChoice, &'static str),
    /// Why `auto` passed over the backends it prefers, when it did (printed on stderr
    /// before mounting).
    pub fallback: Option<String>,
    /// With `auto`, the usable backends to try, in order, when `backend` fails to mount.
    pub alternatives: Vec<Backend>,
    /// FUSE settings (used when `backend` is FUSE).
    pub fuse: FusePlan,
    /// NFS settings (used when `backend` is NFS).
    pub nfs: NfsPlan,
    /// WinFsp settings (used when `backend` is WinFsp).
    pub winfsp: WinfspPlan,
    /// Where the Prometheus endpoint listens (a loopback address), if anywhere.
    pub metrics: Option<SocketAddr>,
}

/// The `[winfsp]` settings, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WinfspPlan {
    /// Volume label (`None`: the mount's name).
    pub volume_name: Option<String>,
    /// Case-insensitive name lookup.
    pub case_insensitive: bool,
    /// Dot-files carry the hidden attribute.
    pub hide_dotfiles: bool,
    /// How long Windows caches file information.
    pub file_info_timeout: Duration,
}

/// The filesystem to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsPlan {
    /// In memory.
    Memfs {
        /// Most bytes of file data.
        size_limit: Option<u64>,
        /// Most inodes.
        max_inodes: Option<u64>,
        /// Where file contents live.
        data: DataStore,
    },
    /// A mirror of `source`, an absolute, symlink-free path of an existing directory.
    Loopback {
        /// The host directory.
        source: PathBuf,
    },
}

impl FsPlan {
    /// The config name of the filesystem type.
    pub fn kind(&self) -> FsType {
        match self {
            Self::Memfs { .. } => FsType::Memfs,
            Self::Loopback { .. } => FsType::Loopback,
        }
    }
}

/// The `[fuse]` settings, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FusePlan {
    /// Worker threads; 0 = the number of CPUs.
    pub threads: usize,
    /// Kernel attribute cache lifetime.
    pub attr_timeout: Duration,
    /// Kernel name-lookup cache lifetime.
    pub entry_timeout: Duration,
    /// Kernel lifetime of a name found missing (Linux).
    pub negative_timeout: Duration,
    /// The lifetime of both when the filesystem reports outside changes; `None` when the
    /// config sets either timeout.
    pub watched_timeout: Option<Duration>,
    /// Kernel write-back caching.
    pub writeback_cache: bool,
    /// Other users may use the mount.
    pub allow_other: bool,
    /// The kernel checks permission bits; `None`: decided by the filesystem (see
    /// `run::kernel_checks_permissions`).
    pub default_permissions: Option<bool>,
    /// FUSE passthrough as configured (see [`FusePlan::effective_passthrough`]).
    pub passthrough: Switch,
    /// FUSE-over-io_uring (Linux).
    pub io_uring: Switch,
    /// macOS: the volume name Finder shows (`None`: the mount's name).
    pub volume_name: Option<String>,
    /// macOS: refuse `._*` Apple Double files.
    pub noappledouble: bool,
    /// macOS: refuse `com.apple.*` xattrs.
    pub noapplexattr: bool,
}

impl FusePlan {
    /// The passthrough mode to mount with: a memfs keeping its data on the heap never
    /// hands out a descriptor, so `auto` becomes `off` there rather than costing the
    /// writeback cache for nothing (`on` with it is a config error).
    pub fn effective_passthrough(&self, fs: &FsPlan) -> Switch {
        match fs {
            FsPlan::Memfs {
                data: DataStore::Heap,
                ..
            } => Switch::Off,
            _ => self.passthrough,
        }
    }
}

/// The `[nfs]` settings, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NfsPlan {
    /// TCP port on 127.0.0.1; 0 = any free port.
    pub port: u16,
    /// Run the OS mount command.
    pub mount: bool,
    /// Other local users may use the mount.
    pub allow_other: bool,
    /// Refuse and hide `._*` Apple Double names.
    pub noappledouble: bool,
}

impl MountPlan {
    /// Validates `raw` (parsed from `src`) against this machine. `backend` is the
    /// command line's `--backend`, which wins over the config's.
    pub fn build(
        raw: RawConfig,
        src: &Source,
        backend: Option<BackendChoice>,
    ) -> anyhow::Result<MountPlan> {
        let base = src.path().and_then(Path::parent).unwrap_or(Path::new(""));
        let mountpoint = match drive_letter(raw.mountpoint.get_ref()) {
            // Windows' NFS client maps a drive, which does not exist before the mount,
            // and WinFsp mounts on a drive letter or creates the folder it mounts on.
            Some(drive) if cfg!(windows) => drive,
            _ if cfg!(windows) => windows_folder(base, raw.mountpoint.get_ref())?,
            _ => existing_dir(base, raw.mountpoint.get_ref(), "mountpoint")?,
        };
        let filesystem = match raw.filesystem.kind.get_ref() {
            FsType::Memfs => FsPlan::Memfs {
                size_limit: raw.filesystem.size_limit.map(|s| s.into_inner().0),
                max_inodes: raw.filesystem.max_inodes.map(|n| n.into_inner().0),
                data: raw
                    .filesystem
                    .data
                    .map(|d| d.into_inner())
                    .unwrap_or_default(),
            },
            FsType::Loopback => {
                // `Source::parse` guarantees a source for loopback.
                let Some(source) = &raw.filesystem.source else {
                    bail!("a loopback filesystem needs `source` in [filesystem]");
                };
                let source = existing_dir(base, source.get_ref(), "source")?;
                if source == mountpoint || mountpoint.starts_with(&source) {
                    bail!(
                        "the mountpoint {} lies inside the loopback source {}; the mount would \
                         loop into itself, so choose a mountpoint outside the source",
                        mountpoint.display(),
                        source.display()
                    );
                }
                FsPlan::Loopback { source }
            }
        };
        let requested = match (backend, &raw.backend) {
            (Some(b), _) => (b, "--backend"),
            (None, Some(b)) => (*b.get_ref(), "config"),
            (None, None) => (BackendChoice::Auto, "default"),
        };
        let resolved = platform::resolve_for(requested.0, raw.nfs.mount)?;
        let fs_type = filesystem.kind();
        let entry_timeout = raw
            .fuse
            .entry_timeout
            .map_or_else(|| config::default_timeout(fs_type), |s| s.0);
        let metrics = raw.metrics.address();
        Ok(MountPlan {
            config: src.path().map(Path::to_path_buf),
            name: raw
                .name
                .map_or_else(|| filesystem.kind().as_str().to_owned(), |l| l.0),
            mountpoint,
            read_only: raw.read_only,
            filesystem,
            backend: resolved.backend,
            requested,
            fallback: resolved.note,
            alternatives: resolved.alternatives,
            fuse: FusePlan {
                threads: raw.fuse.threads.0,
                attr_timeout: raw
                    .fuse
                    .attr_timeout
                    .map_or_else(|| config::default_timeout(fs_type), |s| s.0),
                entry_timeout,
                negative_timeout: raw.fuse.negative_timeout.map_or_else(
                    || config::default_negative_timeout(fs_type, entry_timeout),
                    |s| s.0,
                ),
                watched_timeout: (raw.fuse.attr_timeout.is_none()
                    && raw.fuse.entry_timeout.is_none())
                .then(config::watched_timeout),
                writeback_cache: raw.fuse.writeback_cache,
                allow_other: raw.fuse.allow_other,
                default_permissions: raw.fuse.default_permissions,
                passthrough: raw
                    .fuse
                    .passthrough
                    .map(|p| p.into_inner())
                    .unwrap_or_default(),
                io_uring: raw.fuse.io_uring,
                volume_name: raw.fuse.volume_name,
                noappledouble: raw.fuse.noappledouble,
                noapplexattr: raw.fuse.noapplexattr,
            },
            nfs: NfsPlan {
                port: raw.nfs.port.0,
                mount: raw.nfs.mount,
                allow_other: raw.nfs.allow_other,
                noappledouble: raw.nfs.noappledouble.unwrap_or(cfg!(target_os = "macos")),
            },
            winfsp: WinfspPlan {
                volume_name: raw.winfsp.volume_name,
                case_insensitive: raw.winfsp.case_insensitive,
                hide_dotfiles: raw.winfsp.hide_dotfiles,
                file_info_timeout: raw
                    .winfsp
                    .file_info_timeout
                    .map_or_else(|| config::default_timeout(fs_type), |s| s.0),
            },
            metrics,
        })
    }
}

/// `X:` for a mountpoint written `X:`, `X:\\` or `X:/` (a Windows drive).
fn drive_letter(text: &str) -> Option<PathBuf> {
    let t = text.trim_end_matches(['\\', '/']);
    let b = t.as_bytes();
    (b.len() == 2 && b[0].is_ascii_alphabetic() && b[1] == b':').then(|| PathBuf::from(t))
}

/// A Windows folder mountpoint: WinFsp creates the folder itself and refuses one that
/// exists, so only its parent must exist (the backend repeats the check with its own
/// message).
fn windows_folder(base: &Path, configured: &str) -> anyhow::Result<PathBuf> {
    let expanded = expand_tilde(configured).unwrap_or_else(|| PathBuf::from(configured));
    let joined = base.join(&expanded);
    let path = std::path::absolute(&joined).unwrap_or(joined);
    match path.parent() {
        Some(parent) if parent.is_dir() => Ok(path),
        _ => bail!(
            "the folder holding the mountpoint {} does not exist; create it, or mount on a \
             drive letter such as mountpoint = \"X:\"",
            path.display()
        ),
    }
}

/// Resolves a config path (`~` expanded, relative to `base`, the config file's
/// directory) to the canonical path of an existing directory. `key` names the setting in
/// errors.
fn existing_dir(base: &Path, configured: &str, key: &str) -> anyhow::Result<PathBuf> {
    // `Source::parse` rejected the `~` forms that do not expand.
    let expanded = expand_tilde(configured).unwrap_or_else(|| PathBuf::from(configured));
    let joined = base.join(&expanded);
    let path = std::path::absolute(&joined).unwrap_or(joined);
    let shown = path.display();
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => bail!("the {key} {shown} is not a directory; point `{key}` at a directory"),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            bail!(
                "the {key} {shown} does not exist; create it (mkdir -p {shown}) or change `{key}`"
            )
        }
        Err(e) if crate::config::is_dead_mount_error(&e) => bail!(
            "the {key} {shown} is a dead FUSE mount left by a daemon that exited; clear it with \
             `vmount unmount {shown}`"
        ),
        Err(e) => bail!("cannot use the {key} {shown}: {}", io_reason(&e)),
    }
    // A dead FUSE mount may still answer `stat` from the kernel's attribute cache for
    // `attr_timeout` after its daemon died; opening it always needs the daemon.
    if let Err(e) = std::fs::read_dir(&path)
        && crate::config::is_dead_mount_error(&e)
    {
        bail!(
            "the {key} {shown} is a dead FUSE mount left by a daemon that exited; clear it \
                 with `vmount unmount {shown}`"
        );
    }
    std::fs::canonicalize(&path).with_context(|| format!("cannot resolve the {key} {shown}"))
}

impl fmt::Display for MountPlan {
    /// The plan as `vmount check` prints it: every resolved value, one per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn row(f: &mut fmt::Formatter<'_>, key: &str, value: impl fmt::Display) -> fmt::Result {
            writeln!(f, "{:<24}{value}", format!("{key}:"))
        }
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        let secs = |d: Duration| format!("{} s", d.as_secs_f64());
        if let Some(config) = &self.config {
            row(f, "config", config.display())?;
        }
        row(f, "name", &self.name)?;
        row(f, "mountpoint", self.mountpoint.display())?;
        let why = match self.requested {
            (BackendChoice::Auto, "default") => "chosen by auto, the default".to_owned(),
            (BackendChoice::Auto, origin) => format!("chosen by auto, from {origin}"),
            (_, origin) => format!("from {origin}"),
        };
        row(f, "backend", format!("{} ({why})", self.backend))?;
        if let Some(note) = &self.fallback {
            row(f, "  why", note)?;
        }
        if !self.alternatives.is_empty() {
            let list: Vec<String> = self.alternatives.iter().map(|b| b.to_string()).collect();
            row(f, "  if it fails", format!("then {}", list.join(", then ")))?;
        }
        row(f, "read_only", yes_no(self.read_only))?;
        match self.metrics {
            Some(addr) if addr.port() == 0 => row(
                f,
                "metrics",
                format!("http://{}:<any free port>/metrics", addr.ip()),
            )?,
            Some(addr) => row(f, "metrics", format!("http://{addr}/metrics"))?,
            None => row(f, "metrics", "off")?,
        }
        match &self.filesystem {
            FsPlan::Memfs {
                size_limit,
                max_inodes,
                data,
            } => {
                row(f, "filesystem", "memfs (in memory)")?;
                row(f, "  data", data)?;
                row(
                    f,
                    "  size_limit",
                    size_limit.map_or("none".to_owned(), format_size),
                )?;
                row(
                    f,
                    "  max_inodes",
                    max_inodes.map_or("none".to_owned(), |n| n.to_string()),
                )?;
            }
            FsPlan::Loopback { source } => {
                row(f, "filesystem", "loopback (mirrors a host directory)")?;
                row(f, "  source", source.display())?;
            }
        }
        let used = |b: Backend| {
            if self.backend == b {
                ""
            } else {
                " (not used by this backend)"
            }
        };
        writeln!(f, "fuse:{}", used(Backend::Fuse))?;
        let fuse = &self.fuse;
        if fuse.threads == 0 {
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
            row(f, "  threads", format!("0 (the number of CPUs: {cpus})"))?;
        } else {
            row(f, "  threads", fuse.threads)?;
        }
        let watched = match (&self.filesystem, fuse.watched_timeout) {
            (FsPlan::Loopback { .. }, Some(t)) => format!(
                " ({} where changes in the source are reported: Linux, as root)",
                secs(t)
            ),
            _ => String::new(),
        };
        row(
            f,
            "  attr_timeout",
            format!("{}{watched}", secs(fuse.attr_timeout)),
        )?;
        row(
            f,
            "  entry_timeout",
            format!("{}{watched}", secs(fuse.entry_timeout)),
        )?;
        row(f, "  negative_timeout", secs(fuse.negative_timeout))?;
        row(f, "  writeback_cache", yes_no(fuse.writeback_cache))?;
        row(f, "  allow_other", yes_no(fuse.allow_other))?;
        let dp = match (fuse.default_permissions, &self.filesystem) {
            (Some(on), _) => yes_no(on).to_owned(),
            (None, FsPlan::Memfs { .. }) => "auto (no: memfs checks permissions itself)".into(),
            (None, FsPlan::Loopback { .. }) => {
                "auto (no when run as root on Linux: the host checks as the caller)".into()
            }
        };
        row(f, "  default_permissions", dp)?;
        let passthrough = fuse.effective_passthrough(&self.filesystem);
        let note = match (&self.filesystem, passthrough) {
            (
                FsPlan::Memfs {
                    data: DataStore::Heap,
                    ..
                },
                _,
            ) => " (not used: memfs keeps its data on the heap)",
            (FsPlan::Memfs { .. }, Switch::Auto) => {
                " (where memfs keeps its data in the kernel and the kernel has it: Linux 6.9+, root)"
            }
            (_, Switch::Auto) if fuse.writeback_cache => {
                " (where the kernel has it, instead of writeback_cache)"
            }
            (_, Switch::Auto) => " (where the kernel has it: Linux 6.9+, root)",
            _ => "",
        };
        row(f, "  passthrough", format!("{}{note}", fuse.passthrough))?;
        let uring = match fuse.io_uring {
            Switch::Auto if cfg!(target_os = "linux") => {
                " (where the kernel has it turned on: Linux 6.14+, fuse.enable_uring)"
            }
            Switch::Auto => " (not used: Linux only)",
            _ => "",
        };
        row(f, "  io_uring", format!("{}{uring}", fuse.io_uring))?;
        let mac = if cfg!(target_os = "macos") {
            ""
        } else {
            " (macOS only)"
        };
        let volname = fuse.volume_name.as_deref().unwrap_or(&self.name);
        row(f, "  volume_name", format!("{volname}{mac}"))?;
        row(
            f,
            "  noappledouble",
            format!("{}{mac}", yes_no(fuse.noappledouble)),
        )?;
        row(
            f,
            "  noapplexattr",
            format!("{}{mac}", yes_no(fuse.noapplexattr)),
        )?;
        writeln!(f, "nfs:{}", used(Backend::Nfs))?;
        if self.nfs.port == 0 {
            row(f, "  port", "0 (any free port on 127.0.0.1)")?;
        } else {
            row(f, "  port", format!("{} on 127.0.0.1", self.nfs.port))?;
        }
        row(
            f,
            "  mount",
            if self.nfs.mount {
                "yes"
            } else {
                "no (serve only, print the command)"
            },
        )?;
        row(f, "  allow_other", yes_no(self.nfs.allow_other))?;
        row(f, "  noappledouble", yes_no(self.nfs.noappledouble))?;
        writeln!(f, "winfsp:{}", used(Backend::Winfsp))?;
        let label = self.winfsp.volume_name.as_deref().unwrap_or(&self.name);
        row(f, "  volume_name", label)?;
        row(
            f,
            "  case_insensitive",
            yes_no(self.winfsp.case_insensitive),
        )?;
        row(f, "  hide_dotfiles", yes_no(self.winfsp.hide_dotfiles))?;
        row(
            f,
            "  file_info_timeout",
            secs(self.winfsp.file_info_timeout),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(text: &str, dir: &Path) -> anyhow::Result<MountPlan> {
        let path = dir.join("c.toml");
        std::fs::write(&path, text).unwrap();
        let src = Source::read(&path)?;
        let raw = src.parse()?;
        MountPlan::build(raw, &src, None)
    }

    #[test]
    fn relative_paths_are_relative_to_the_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("mp")).unwrap();
        std::fs::create_dir(dir.path().join("src")).unwrap();
        let text = "mountpoint = \"mp\"\nbackend = \"fuse\"\n[filesystem]\ntype = \"loopback\"\n\
                    source = \"src\"\n";
        match plan(text, dir.path()) {
            Ok(p) => {
                let canon = dir.path().canonicalize().unwrap();
                assert_eq!(p.mountpoint, canon.join("mp"));
                assert_eq!(
                    p.filesystem,
                    FsPlan::Loopback {
                        source: canon.join("src")
                    }
                );
                assert_eq!(p.name, "loopback");
                assert_eq!(p.backend, Backend::Fuse);
                let shown = p.to_string();
                assert!(
                    shown.contains("source:") && shown.contains("from config"),
                    "{shown}"
                );
                assert_eq!(p.fuse.passthrough, Switch::Auto);
                assert_eq!(p.fuse.effective_passthrough(&p.filesystem), Switch::Auto);
                assert!(
                    shown.contains("  passthrough:          auto (where the kernel has it"),
                    "{shown}"
                );
            }
            // Without FUSE, the backend is the only thing allowed to fail.
            Err(e) => assert!(platform::status(Backend::Fuse).is_err(), "{e:#}"),
        }
    }

    #[test]
    fn missing_and_wrong_paths_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = plan(
            "mountpoint = \"nope\"\n[filesystem]\ntype = \"memfs\"\n",
            dir.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("mountpoint") && e.contains("nope") && e.contains("does not exist"));
        std::fs::write(dir.path().join("file"), "").unwrap();
        let e = plan(
            "mountpoint = \"file\"\n[filesystem]\ntype = \"memfs\"\n",
            dir.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("file") && e.contains("not a directory"), "{e}");
        std::fs::create_dir(dir.path().join("mp")).unwrap();
        let text = "mountpoint = \"mp\"\n[filesystem]\ntype = \"loopback\"\nsource = \"gone\"\n";
        let e = plan(text, dir.path()).unwrap_err().to_string();
        assert!(e.contains("source") && e.contains("gone") && e.contains("does not exist"));
        let text = "mountpoint = \"mp\"\n[filesystem]\ntype = \"loopback\"\nsource = \".\"\n";
        let e = plan(text, dir.path()).unwrap_err().to_string();
        assert!(e.contains("inside the loopback source"), "{e}");
    }

    #[test]
    fn heap_memfs_never_asks_for_passthrough() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("mp")).unwrap();
        let text = "mountpoint = \"mp\"\nbackend = \"fuse\"\n[filesystem]\ntype = \"memfs\"\n\
                    data = \"heap\"\n[fuse]\nwriteback_cache = true\n";
        let p = match plan(text, dir.path()) {
            Ok(p) => p,
            // Without FUSE, the backend is the only thing allowed to fail.
            Err(e) => return assert!(platform::status(Backend::Fuse).is_err(), "{e:#}"),
        };
        assert_eq!(p.fuse.passthrough, Switch::Auto);
        assert_eq!(p.fuse.effective_passthrough(&p.filesystem), Switch::Off);
        let shown = p.to_string();
        assert!(
            shown.contains(
                "passthrough:          auto (not used: memfs keeps its data on the heap)"
            ),
            "{shown}"
        );
    }

    #[test]
    fn drive_letters() {
        assert_eq!(drive_letter("X:"), Some(PathBuf::from("X:")));
        assert_eq!(drive_letter("z:\\"), Some(PathBuf::from("z:")));
        assert_eq!(drive_letter("X:/"), Some(PathBuf::from("X:")));
        assert_eq!(drive_letter("XY:"), None);
        assert_eq!(drive_letter("/mnt"), None);
        assert_eq!(drive_letter("C:\\mnt"), None);
    }

    #[test]
    fn winfsp_is_refused_off_windows() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("mp")).unwrap();
        let text = "mountpoint = \"mp\"\nbackend = \"winfsp\"\n[filesystem]\ntype = \"memfs\"\n";
        let r = plan(text, dir.path());
        if cfg!(windows) {
            return;
        }
        let e = r.unwrap_err().to_string();
        assert!(e.contains("WinFsp is only available on Windows"), "{e}");
    }

    #[test]
    fn winfsp_settings_and_their_defaults() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("mp")).unwrap();
        std::fs::create_dir(dir.path().join("src")).unwrap();
        // Serve-only NFS is usable everywhere, so these plans build on every OS.
        let base = "mountpoint = \"mp\"\nbackend = \"nfs\"\n[nfs]\nmount = false\n";
        let p = plan(
            &format!("{base}[filesystem]\ntype = \"memfs\"\n"),
            dir.path(),
        )
        .unwrap();
        assert_eq!(
            p.winfsp,
            WinfspPlan {
                volume_name: None,
                case_insensitive: true,
                hide_dotfiles: false,
                file_info_timeout: Duration::from_secs(3600),
            }
        );
        let p = plan(
            &format!(
                "{base}[filesystem]\ntype = \"loopback\"\nsource = \"src\"\n[winfsp]\n\
                 volume_name = \"Data\"\ncase_insensitive = false\nhide_dotfiles = true\n"
            ),
            dir.path(),
        )
        .unwrap();
        assert_eq!(p.winfsp.volume_name.as_deref(), Some("Data"));
        assert!(!p.winfsp.case_insensitive && p.winfsp.hide_dotfiles);
        // Loopback sources change behind the cache's back: a short default.
        assert_eq!(p.winfsp.file_info_timeout, Duration::from_secs(1));
        assert_eq!(p.fuse.attr_timeout, Duration::from_secs(1));
        let e = plan(
            &format!("{base}[filesystem]\ntype = \"memfs\"\n[winfsp]\ncase_sensitive = 1\n"),
            dir.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("unknown key `case_sensitive` in [winfsp]"),
            "{e}"
        );
    }
}
