//! vmount-backend-fuse: serves any [`vmount_core::Vfs`] through FUSE with fuser 0.18
//! (the Linux kernel module, or macFUSE on macOS).
//!
//! # Design decisions
//! - **A mount is a value.** [`mount`] checks the mountpoint, mounts, and returns only
//!   once the kernel has the mount and the INIT handshake is done *and* the root answers
//!   `stat` from its own device; the [`FuseMount`] guard unmounts and joins the session
//!   threads when dropped, so a failing test or a `?` never leaves a mount behind.
//! - **Never stack mounts.** Mounting on an existing mount (live or dead) is refused with
//!   an error naming the fix; [`unmount_path`] clears a mount this process does not own,
//!   including the dead one a SIGKILLed daemon leaves ("Transport endpoint is not
//!   connected").
//! - **One errno table.** [`VfsError`](vmount_core::VfsError) maps to errno in one
//!   exhaustive `match` (`convert.rs`), so a new variant breaks the build here until it
//!   is mapped. `Unimplemented` (ENOSYS) is logged once per operation; the kernel
//!   remembers it for most operations and stops asking.
//! - **Kernel features are opt-in and negotiated in `init`:** readdirplus (with
//!   READDIRPLUS_AUTO), parallel directory operations, async reads, 1 MiB writes and
//!   readahead, automatic page-cache invalidation on mtime change, cached symlinks, and
//!   the writeback cache only when asked for.
//! - **Directory offsets:** 0 is the start, 1 and 2 follow the synthesized `.` and `..`,
//!   and the filesystem's cookie `c` (below 2^63 by contract) is offset `c + 2`.
//! - **Every FORGET goes to the filesystem unchanged.** The kernel counts one lookup for
//!   each READDIRPLUS entry it receives, and so does the filesystem for each entry a
//!   [`DirSink`](vmount_core::DirSink) with attributes accepts (the trait's "Lookup
//!   counts" contract), so the counts match without any bookkeeping here.
//! - **FUSE passthrough for file data** (Linux 6.9+, `FUSE_PASSTHROUGH`): when the
//!   filesystem hands out a host descriptor for an open file
//!   ([`Vfs::passthrough_fd`](vmount_core::Vfs::passthrough_fd)), it is registered with the
//!   kernel as a backing file and reads, writes and mmap of that open file bypass the
//!   daemon. The kernel allows one backing file per FUSE inode, so the `BackingId` is
//!   shared by all opens of an inode and kept until the last of them is released. The
//!   kernel refuses passthrough on a mount with the writeback cache, so the two are never
//!   asked for together: in [`Passthrough::Auto`] passthrough wins (with a logged note),
//!   and [`Passthrough::On`] with `writeback_cache` is refused before mounting.
//! - **Multi-threaded on Linux:** `threads` fuser workers (0 = one per CPU), each with its
//!   own cloned `/dev/fuse` descriptor; macOS runs one worker.
//! - **No panic reaches fuser:** client input is validated and converted with checked
//!   arithmetic; reads go into a per-thread reusable buffer.
#![cfg(unix)]
#![deny(missing_docs)]

mod adapter;
mod convert;
#[cfg(target_os = "linux")]
mod idle_class;
mod mount;
mod ops;
#[cfg(target_os = "linux")]
mod uring;
#[cfg(target_os = "linux")]
mod wire;

use std::io;
use std::path::PathBuf;
use std::time::Duration;

pub use mount::{FuseMount, is_dead_mount_error, mount, mount_state, probe, unmount_path};

/// `as_str` (the config spelling: `auto`, `on` or `off`) and `Display` for the
/// three-way switches [`Passthrough`] and [`IoUring`].
macro_rules! auto_on_off {
    ($t:ident) => {
        impl $t {
            /// The config spelling: `auto`, `on` or `off`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $t::Auto => "auto",
                    $t::On => "on",
                    $t::Off => "off",
                }
            }
        }

        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }
    };
}

/// How to mount: kernel caching, threads, and mount options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FuseOptions {
    /// fuser worker threads; 0 = one per CPU. Only Linux runs more than one.
    pub threads: usize,
    /// How long the kernel may cache attributes.
    pub attr_timeout: Duration,
    /// How long the kernel may cache name lookups.
    pub entry_timeout: Duration,
    /// Linux: how long the kernel may remember that a name does not exist (a negative
    /// dentry), saving the LOOKUP of a create that follows a failed `stat` and of paths
    /// probed repeatedly; zero answers every miss with ENOENT, uncached. Unlike the two
    /// above it is not raised by [`FuseOptions::watched_timeout`]: a name created behind
    /// the filesystem's back is normally reported at once, and this bounds how long it
    /// could stay hidden if the report raced with the lookup.
    pub negative_timeout: Duration,
    /// Ask for FUSE_WRITEBACK_CACHE: the kernel buffers writes and sends them in large
    /// batches (faster; other writers of the same filesystem may see data later).
    pub writeback_cache: bool,
    /// Let users other than the one mounting access the mount (`allow_other`; a non-root
    /// user needs `user_allow_other` in /etc/fuse.conf). Also enables `auto_unmount`.
    pub allow_other: bool,
    /// Let the kernel check permission bits too (`default_permissions`).
    pub default_permissions: bool,
    /// Mount read-only.
    pub read_only: bool,
    /// The source shown in /proc/mounts and `df`.
    pub fs_name: String,
    /// The subtype: the mount table then says `fuse.<subtype>`.
    pub subtype: String,
    /// Whether file data may bypass the daemon through FUSE passthrough. Set it to
    /// [`Passthrough::Off`] for a filesystem without host files (memfs with its data on the
    /// heap) when the writeback cache is wanted: in `Auto` the kernel's passthrough would
    /// win over it for nothing.
    pub passthrough: Passthrough,
    /// macOS: the name Finder shows for the volume (`volname`); `None` = `fs_name`.
    /// Ignored elsewhere.
    pub volume_name: Option<String>,
    /// macOS: refuse Apple Double `._*` files (`noappledouble`), which Finder otherwise
    /// scatters next to every file it touches. Ignored elsewhere.
    pub no_apple_double: bool,
    /// macOS: refuse `com.apple.*` extended attributes (`noapplexattr`). Ignored elsewhere.
    pub no_apple_xattr: bool,
    /// Linux: the mount's readahead window in KiB (its bdi's `read_ahead_kb`), set after
    /// mounting; 0 keeps the kernel's. The kernel starts every FUSE mount at 128 KiB and
    /// the INIT reply can only lower that, so sequential reads would arrive as 128 KiB
    /// READs although `max_pages` allows 1 MiB: at 1024, a cold 1 GiB read of memfs took
    /// 0.34 s instead of 0.45 s here (random reads unchanged). Needs root (sysfs); for
    /// anyone else the kernel's window stays, noted in the debug log.
    pub readahead_kib: u32,
    /// The attribute and entry timeouts to use instead of `attr_timeout` and
    /// `entry_timeout` when the filesystem reports changes made behind its back
    /// ([`Vfs::watch_changes`](vmount_core::Vfs::watch_changes): loopback as root on
    /// Linux), which the mount then passes on to the kernel as invalidations. `None`
    /// keeps the configured timeouts either way (the CLI sets it only when the config
    /// leaves the timeouts at their defaults).
    pub watched_timeout: Option<Duration>,
    /// Linux: whether requests travel over FUSE-over-io_uring (Linux 6.14+, enabled with
    /// the `fuse` module's `enable_uring` parameter) instead of `/dev/fuse` reads and
    /// writes. See [`IoUring`].
    pub io_uring: IoUring,
}

/// FUSE-over-io_uring: the kernel hands each request to a queue of the CPU it was made
/// on, where a vmount thread pinned to that CPU answers it through shared memory.
///
/// Why: on `/dev/fuse` every request wakes a daemon thread on whichever CPU it sleeps,
/// and the reply wakes the caller back; across CPUs (on a VM, an inter-processor
/// interrupt each way) that cost 15-35 µs per round trip on the 2-CPU machine vmount
/// is developed on, against 8-9 µs through the per-CPU queues. Metadata-heavy work
/// (creating, listing, deleting files) is nothing but such round trips.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoUring {
    /// Use io_uring when the kernel offers it (its `enable_uring` parameter is on),
    /// else `/dev/fuse`.
    #[default]
    Auto,
    /// Require io_uring: as root, turn the kernel's `enable_uring` parameter on if it is
    /// off; mounting fails where the kernel cannot do it.
    On,
    /// Always `/dev/fuse`.
    Off,
}

auto_on_off!(IoUring);

/// FUSE passthrough: the kernel reads and writes an open file's host file directly.
///
/// It needs Linux 6.9 or later built with `CONFIG_FUSE_PASSTHROUGH`, a daemon with
/// `CAP_SYS_ADMIN` (root), and a filesystem that returns host descriptors from
/// [`Vfs::passthrough_fd`](vmount_core::Vfs::passthrough_fd) (loopback does, and memfs
/// with its data in the kernel). The kernel does not combine it with the writeback cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Passthrough {
    /// Use passthrough when the kernel and privileges allow it, otherwise serve file data
    /// through the daemon (noted once in the log). With `writeback_cache` also asked for,
    /// passthrough wins and the writeback cache stays off.
    #[default]
    Auto,
    /// Require passthrough: mounting fails if the kernel or privileges do not allow it, and
    /// combining it with `writeback_cache` is an error.
    On,
    /// Never use passthrough.
    Off,
}

auto_on_off!(Passthrough);

impl Default for FuseOptions {
    fn default() -> Self {
        FuseOptions {
            threads: 0,
            attr_timeout: Duration::from_secs(1),
            entry_timeout: Duration::from_secs(1),
            negative_timeout: Duration::from_secs(1),
            writeback_cache: false,
            allow_other: false,
            default_permissions: true,
            read_only: false,
            fs_name: "vmount".to_owned(),
            subtype: "vmount".to_owned(),
            passthrough: Passthrough::Auto,
            volume_name: None,
            no_apple_double: true,
            no_apple_xattr: false,
            readahead_kib: 1024,
            watched_timeout: None,
            io_uring: IoUring::Auto,
        }
    }
}

impl FuseError {
    /// Whether the failure is FUSE's own (missing or refused driver, a mount that never
    /// became usable, a failing system call), so that another backend might mount where
    /// this one could not; false for problems with the mountpoint or the FUSE settings,
    /// which would fail the same way with any backend or are the user's explicit choice.
    pub fn is_backend_failure(&self) -> bool {
        match self {
            Self::Unavailable(_)
            | Self::PermissionDenied { .. }
            | Self::NotReady { .. }
            | Self::Io { .. } => true,
            Self::MountpointMissing(_)
            | Self::NotADirectory(_)
            | Self::AlreadyMounted(_)
            | Self::DeadMount(_)
            | Self::NotMounted(_)
            | Self::PassthroughUnsupported(_)
            | Self::PassthroughNotPermitted(_)
            | Self::PassthroughWithWriteback(_)
            | Self::IoUringUnavailable { .. } => false,
        }
    }
}

pub use vmount_core::Unavailable;

/// Whether a log message is fuser's report of a reply the kernel no longer wanted, which
/// says nothing is wrong and should not reach a user's log as an error.
///
/// A signal that reaches a process waiting on this mount makes the kernel send an
/// INTERRUPT for its request. fuser answers every INTERRUPT with ENOSYS, meant to make the
/// kernel stop sending them; but vmount has nearly always answered the interrupted request
/// itself by then, so the kernel finds no request for the ENOSYS, refuses it with ENOENT,
/// and keeps sending INTERRUPTs. fuser logs each refusal as "Failed to send FUSE reply"
/// at error level: 41-48 such lines for 20,000 creates under a 200 µs interval timer,
/// and a few per `git clone` (git's progress timer). A refusal with any other errno is a
/// real fault and is not matched. `(os error 2)` is how Rust prints ENOENT in every
/// locale.
pub fn is_stale_reply_report(message: &str) -> bool {
    message.starts_with("Failed to send FUSE reply: ") && message.ends_with("(os error 2)")
}

/// What is at a path, as far as mounts go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountState {
    /// The path is not a mount point.
    NotMounted,
    /// A live mount of this type (`fuse.vmount`, `tmpfs`, ...).
    Mounted {
        /// The filesystem type from the mount table.
        fstype: String,
    },
    /// A FUSE mount whose daemon is gone: every access fails with ENOTCONN.
    Dead,
}

/// Everything that can go wrong mounting or unmounting. Each message is one sentence
/// naming the path, what is wrong, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum FuseError {
    /// The mountpoint does not exist.
    #[error("mountpoint {} does not exist; create it with `mkdir -p {}`", .0.display(), .0.display())]
    MountpointMissing(PathBuf),
    /// The mountpoint is not a directory.
    #[error(
        "mountpoint {} is not a directory; mount on a directory instead (e.g. `mkdir -p DIR`)",
        .0.display()
    )]
    NotADirectory(PathBuf),
    /// Something is already mounted there.
    #[error(
        "{} is already a mount point; unmount it first (`vmount unmount {}` for a FUSE mount) \
         or choose another directory",
        .0.display(), .0.display()
    )]
    AlreadyMounted(PathBuf),
    /// A dead FUSE mount (its daemon was killed) is in the way.
    #[error(
        "{} already holds a dead FUSE mount (transport endpoint not connected); clear it with \
         `vmount unmount {}`",
        .0.display(), .0.display()
    )]
    DeadMount(PathBuf),
    /// FUSE is not usable on this machine.
    #[error("FUSE is not available: {0}")]
    Unavailable(#[from] Unavailable),
    /// The kernel or fusermount refused us.
    #[error("permission denied mounting at {}: {reason}; {fix}", .path.display())]
    PermissionDenied {
        /// The mountpoint.
        path: PathBuf,
        /// What refused, in the system's words.
        reason: String,
        /// What to do about it.
        fix: String,
    },
    /// Nothing is mounted at the path given to unmount.
    #[error(
        "nothing is mounted at {}; check the path against `grep fuse /proc/mounts`",
        .0.display()
    )]
    NotMounted(PathBuf),
    /// The mount was made but never answered.
    #[error(
        "the FUSE mount at {} did not become usable ({detail}); see the log above, and clear \
         any leftover with `vmount unmount {}`",
        .path.display(), .path.display()
    )]
    NotReady {
        /// The mountpoint.
        path: PathBuf,
        /// What was observed instead.
        detail: String,
    },
    /// `passthrough = on`, but the kernel does not offer FUSE passthrough.
    #[error(
        "{} was not mounted because the kernel does not support FUSE passthrough (it needs \
         Linux 6.9 or later built with CONFIG_FUSE_PASSTHROUGH); set passthrough = \"auto\" or \
         \"off\" in [fuse]",
        .0.display()
    )]
    PassthroughUnsupported(PathBuf),
    /// `passthrough = on`, but the daemon lacks the privilege to register backing files.
    #[error(
        "{} was not mounted because FUSE passthrough needs CAP_SYS_ADMIN, which this process \
         lacks; run vmount as root or set passthrough = \"auto\" or \"off\" in [fuse]",
        .0.display()
    )]
    PassthroughNotPermitted(PathBuf),
    /// `passthrough = on` together with `writeback_cache`, which the kernel does not combine.
    #[error(
        "{} was not mounted because passthrough = \"on\" cannot be combined with \
         writeback_cache (the kernel disables passthrough on a mount with the writeback cache); \
         turn writeback_cache off or set passthrough = \"auto\" or \"off\"",
        .0.display()
    )]
    PassthroughWithWriteback(PathBuf),
    /// `io_uring = on`, but FUSE-over-io_uring cannot be used.
    #[error(
        "{} was not mounted because FUSE-over-io_uring is not available: {reason}; {fix}",
        .path.display()
    )]
    IoUringUnavailable {
        /// The mountpoint.
        path: PathBuf,
        /// Why not.
        reason: String,
        /// What to do about it.
        fix: String,
    },
    /// A system call or helper failed; `context` says what was being done and what to do.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, and the next step for the user.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::is_stale_reply_report;

    #[test]
    fn only_enoent_reply_refusals_are_stale() {
        // The message as fuser 0.18 formats it (`reply.rs`: "Failed to send FUSE reply: {err}").
        let refused = |errno| format!("Failed to send FUSE reply: {}", io_error(errno));
        assert!(is_stale_reply_report(&refused(libc::ENOENT)));
        // A malformed reply or a dead connection is a fault, and stays an error.
        assert!(!is_stale_reply_report(&refused(libc::EINVAL)));
        assert!(!is_stale_reply_report(&refused(libc::ENODEV)));
        assert!(!is_stale_reply_report(&format!(
            "lookup failed: {}",
            io_error(libc::ENOENT)
        )));
    }

    fn io_error(errno: i32) -> std::io::Error {
        std::io::Error::from_raw_os_error(errno)
    }
}
