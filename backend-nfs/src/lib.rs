//! vmount-backend-nfs: serves any [`vmount_core::Vfs`] as an NFSv3 server on the loopback
//! interface and mounts it with the operating system's own NFS client. This is the
//! kextless path: macOS without macFUSE, Linux without FUSE, Windows with Client for NFS.
//!
//! # Design decisions
//! - **Our own RPC layer over nfsserve's XDR types.** nfsserve 0.11's `xdr` and `nfs`
//!   modules are public and correct, but its dispatch (`rpcwire`, `nfs_handlers`) is
//!   private and lacks LINK, MKNOD and COMMIT, answers ACCESS without checking anything,
//!   acknowledges every WRITE as FILE_SYNC and never passes the caller's AUTH_SYS
//!   credentials to the filesystem. So the record marking, the program dispatch (NFS v3,
//!   MOUNT v3 and a PORTMAP v2 that answers for both, all on one port) and every procedure
//!   are ours, and the [`Vfs`](vmount_core::Vfs) sees each caller's uid, gid and groups.
//! - **Loopback only.** The listener binds 127.0.0.1 and nothing else; there is no option
//!   to widen it. Records are bounded (1 MiB of payload plus headers) and a connection
//!   that sends more is dropped, so a client cannot make the server allocate at will.
//! - **Other local users are kept out at two levels.** On accept, the owner of the
//!   connecting socket is looked up (Linux `/proc/net/tcp(6)`, macOS the
//!   `net.inet.tcp.pcblist64` sysctl, Windows `GetExtendedTcpTable` and the process
//!   token) and connections of any user other than root or the kernel client, the
//!   daemon's own user and `[nfs] allow_other`'s users are closed before a byte is read.
//!   Then every request's AUTH_SYS uid must be allowed too, which is what stops another
//!   user from acting through a kernel mount. The per-OS details are in `auth.rs`.
//! - **Retransmissions do not run twice.** A duplicate request cache (see `drc.rs`)
//!   answers a retransmitted non-idempotent call (REMOVE, RENAME, CREATE, ...) with the
//!   first execution's reply, as knfsd does, so a reply lost to a broken connection does
//!   not turn a successful REMOVE into ENOENT.
//! - **The server listens before the OS mounts.** [`mount`] starts the server, then runs
//!   the OS's mount command (`mount -t nfs` on Linux, `mount_nfs` on macOS, `mount.exe`
//!   on Windows); mount.nfs talking to nobody fails with a bare EIO.
//! - **Per-OS mount options that fit a server in the same process:** NFSv3 over TCP on
//!   one port for NFS and MOUNT (`port=P,mountport=P`), no lock manager (`nolock`,
//!   `locallocks`), soft mounts with short timeouts so that a dead daemon gives EIO rather
//!   than hung processes, and a one-second attribute cache, like FUSE's default.
//! - **A mount is a value.** [`NfsMount`] unmounts (lazily or forcibly if the mount is
//!   busy) and then stops the server when dropped, so nothing is left mounted on a server
//!   that no longer exists. A mount removed from outside is noticed by
//!   [`NfsMount::is_alive`], which reads the mount table (`/proc/self/mountinfo` on Linux,
//!   `statfs` on macOS).
//! - **Serve-only mode** (`[nfs] mount = false`) runs no command and gives the exact mount
//!   and unmount commands for this OS instead ([`NfsMount::mount_command`]), for machines
//!   where vmount may not mount but a user or script can.
#![deny(missing_docs)]

mod mount;
mod os;
// server
mod auth;
mod behind;
mod convert;
mod drc;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz;
mod handles;
mod mountd;
mod nfs3;
#[cfg(target_os = "linux")]
mod peer_linux;
mod peer_macos;
mod peer_windows;
mod rpc;
mod server;
mod splice;

use std::io;
use std::path::PathBuf;

pub use behind::WRITE_BEHIND_MAX;
pub use mount::{NfsMount, mount, unmount_path};
pub use os::available;
// server
pub use server::{NfsServer, ServeOptions, serve};

/// The export name: clients mount `127.0.0.1:/vmount`.
pub const EXPORT_NAME: &str = "vmount";

/// How to serve and mount, as validated by the CLI.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NfsOptions {
    /// TCP port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Run the OS mount command; false serves only, and [`NfsMount::mount_command`] says
    /// what to run.
    pub mount: bool,
    /// Let local users other than root and the daemon's own user use the mount.
    pub allow_other: bool,
    /// Serve read-only.
    pub read_only: bool,
    /// Refuse to create `._*` (Apple Double) names and answer their lookups with
    /// NFS3ERR_NOENT, so that macOS Finder does not scatter them over the filesystem.
    pub no_apple_double: bool,
}

impl NfsError {
    /// Whether the failure is the NFS backend's own (no client, no root, the mount
    /// command refused, a mount that never appeared), so that another backend might
    /// mount where this one could not; false for problems with the mountpoint or the
    /// `[nfs]` settings, which would fail the same way however often they are tried.
    pub fn is_backend_failure(&self) -> bool {
        match self {
            Self::NoClient(_)
            | Self::NotRoot
            | Self::MountFailed { .. }
            | Self::NotReady { .. }
            | Self::WindowsNeedsPort111 { .. }
            | Self::Io { .. } => true,
            Self::PortInUse { .. }
            | Self::PortNeedsRoot { .. }
            | Self::MountpointMissing(_)
            | Self::NotADirectory(_)
            | Self::AlreadyMounted(_)
            | Self::NeedsDriveLetter(_)
            | Self::UnmountFailed { .. }
            | Self::NotMounted(_) => false,
        }
    }
}

pub use vmount_core::Unavailable;

/// Everything that can go wrong serving, mounting or unmounting. Each message is one
/// sentence naming what is wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum NfsError {
    /// The configured port is taken.
    #[error(
        "port {port} on 127.0.0.1 is in use; set [nfs] port = 0 to pick a free port, or stop \
         whatever listens there"
    )]
    PortInUse {
        /// The port asked for.
        port: u16,
    },
    /// A port below 1024 needs privileges we lack.
    #[error(
        "port {port} on 127.0.0.1 needs root (ports below 1024 are privileged); run vmount as \
         root or set [nfs] port = 0"
    )]
    PortNeedsRoot {
        /// The port asked for.
        port: u16,
    },
    /// This machine cannot mount NFS.
    #[error(
        "NFS cannot be mounted here: {0}; or set [nfs] mount = false to serve only and mount \
         by hand"
    )]
    NoClient(#[from] Unavailable),
    /// Linux NFS mounts need root, and passwordless sudo is not available either.
    #[error(
        "mounting NFS on Linux needs root and passwordless sudo is not available; run vmount \
         as root, or set [nfs] mount = false and run the printed mount command as root"
    )]
    NotRoot,
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
        "{} is already a mount point; unmount it first (`vmount unmount {}` for a vmount \
         mount) or choose another directory",
        .0.display(), .0.display()
    )]
    AlreadyMounted(PathBuf),
    /// Windows' Client for NFS mounts on drive letters only.
    #[error(
        "Client for NFS mounts on a drive letter, not on {}; set mountpoint = \"X:\" (any free \
         letter)",
        .0.display()
    )]
    NeedsDriveLetter(PathBuf),
    /// Windows' Client for NFS asks the portmapper on port 111 and nowhere else.
    #[error(
        "Client for NFS on Windows only talks to an NFS server whose portmapper is on port 111, \
         but this server is on port {port}; set [nfs] port = 111 and run vmount as an \
         administrator (with nothing else on port 111, e.g. stop the Windows NFS server), or \
         use backend = \"winfsp\""
    )]
    WindowsNeedsPort111 {
        /// The port the server would use.
        port: u16,
    },
    /// The OS mount command failed.
    #[error(
        "mounting failed: `{cmd}` said: {stderr}; check the message above, or set [nfs] mount \
         = false and mount by hand"
    )]
    MountFailed {
        /// The command that was run.
        cmd: String,
        /// What it printed (trimmed), or how it ended.
        stderr: String,
    },
    /// The OS unmount command failed, also in its forced or lazy form.
    #[error(
        "unmounting failed: `{cmd}` said: {stderr}; close the programs using the mount (see \
         `lsof` or `fuser -m`) and try `vmount unmount` again"
    )]
    UnmountFailed {
        /// The last command that was run.
        cmd: String,
        /// What it printed (trimmed), or how it ended.
        stderr: String,
    },
    /// Nothing vmount mounted over NFS is at the path given to unmount.
    #[error(
        "no vmount NFS mount is at {}; check the path against the output of `mount`",
        .0.display()
    )]
    NotMounted(PathBuf),
    /// The mount command reported success but the mount never showed up.
    #[error(
        "the NFS mount at {} did not appear in the mount table ({detail}); see the log above, \
         and clear any leftover with `vmount unmount {}`",
        .path.display(), .path.display()
    )]
    NotReady {
        /// The mountpoint.
        path: PathBuf,
        /// What was observed instead.
        detail: String,
    },
    /// A system call or command failed; `context` says what was being done and what to do.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, and the next step for the user.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}
