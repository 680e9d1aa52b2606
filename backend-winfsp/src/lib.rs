//! vmount-backend-winfsp: serves any [`vmount_core::Vfs`] on Windows through WinFsp
//! (winfsp-rs 0.13).
//!
//! # Licensing
//! This crate is **GPL-3.0-only** because winfsp-rs is GPL-3.0 with no linking
//! exception. The rest of vmount stays MIT OR Apache-2.0; a Windows binary that includes
//! this crate is a combined work distributed under GPL-3.0. WinFsp itself (the driver
//! and DLL, installed separately) is GPLv3 with a FLOSS exception.
//!
//! # Design decisions
//! - **Most of the adapter is platform-neutral and tested on every host** against
//!   memfs: path parsing and Windows name rules (`names`), the path -> inode walk with
//!   its cache and case-insensitive matching (`resolve`), the operations themselves
//!   including delete-on-close, rename and listing (`ops`), security descriptors from
//!   mode bits and back (`security`), attributes and reparse data (`attrs`), the
//!   NTSTATUS table (`status`) and FILETIME conversion (`time`). Only the
//!   `FileSystemContext` shim and the host lifecycle are `#[cfg(windows)]`.
//! - **One identity.** WinFsp passes no caller uid: every request runs as
//!   [`WinfspOptions::uid`]/[`WinfspOptions::gid`] (default 0/0, which owns memfs's
//!   root), and files of that uid belong to the mounting Windows user's SID. Other uids
//!   appear as "Unix User" SIDs (`S-1-22-1-<uid>`) and grant the mounting user the
//!   group or "others" rights, which go to Everyone.
//! - **A mount is a value.** [`mount`] (Windows only) returns a [`WinfspMount`] guard
//!   whose `Drop` unmounts and stops the dispatcher. The filesystem is served through
//!   [`vmount_core::PanicGuard`], so a panic costs one request, never an exception
//!   inside WinFsp's dispatcher.
//! - **Finding WinFsp.** winfsp-rs's `system` feature (registry lookup) cannot be
//!   combined with the Linux type-check build, so [`available`] reads
//!   `HKLM\SOFTWARE\WOW6432Node\WinFsp\InstallDir` (then `HKLM\SOFTWARE\WinFsp`) itself
//!   and loads `bin\winfsp-<arch>.dll` from there when the DLL is not next to the
//!   executable; the delay-loaded imports then bind to it.
//! - **Linking.** `build.rs` emits `delayimp` and `/DELAYLOAD:winfsp-<arch>.dll` for MSVC
//!   targets only, without build-depending on winfsp (which would compile winfsp-sys and
//!   its bindgen a second time for the host). Cargo applies `rustc-link-arg` only to this
//!   package's own binaries and tests, so **the `vmount` binary's build script must emit
//!   `/DELAYLOAD:winfsp-<arch>.dll` as well** (`delayimp` propagates).
//! - **Not supported:** named streams (`file:stream` is refused), extended attributes,
//!   hard links (WinFsp has none), reserved device names are passed through as
//!   ordinary names.
#![deny(missing_docs)]

// The neutral layer is used by the Windows shim; elsewhere only its tests use it.
#[cfg_attr(not(windows), allow(dead_code))]
mod attrs;
#[cfg_attr(not(windows), allow(dead_code))]
mod mountpoint;
#[cfg_attr(not(windows), allow(dead_code))]
mod names;
#[cfg_attr(not(windows), allow(dead_code))]
mod ops;
#[cfg_attr(not(windows), allow(dead_code))]
mod resolve;
#[cfg_attr(not(windows), allow(dead_code))]
mod security;
#[cfg_attr(not(windows), allow(dead_code))]
mod status;
#[cfg_attr(not(windows), allow(dead_code))]
mod time;
#[cfg(windows)]
mod windows;

#[cfg(windows)]
pub use windows::{WinfspMount, mount};

/// How to mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WinfspOptions {
    /// A drive letter (`"X:"`) or a folder path that does not exist yet (WinFsp creates
    /// it; its parent must exist).
    pub mountpoint: String,
    /// The volume label Explorer shows (at most 32 UTF-16 units are used).
    pub volume_name: String,
    /// Match names case-insensitively (exact match first), as Windows programs expect.
    pub case_insensitive: bool,
    /// Give names starting with `.` the HIDDEN attribute.
    pub hide_dotfiles: bool,
    /// Mount read-only: WinFsp refuses every change before it reaches the filesystem.
    pub read_only: bool,
    /// How long Windows may cache file information, in milliseconds (also the lifetime
    /// of cached path lookups, at least one second).
    pub file_info_timeout_ms: u32,
    /// The uid every request runs as; files with this uid belong to the mounting user.
    pub uid: u32,
    /// The gid every request runs as; files with this gid belong to the user's primary
    /// group.
    pub gid: u32,
    /// WinFsp dispatcher threads; 0 lets WinFsp choose (one per CPU, at least 2).
    pub threads: u32,
}

impl Default for WinfspOptions {
    fn default() -> Self {
        WinfspOptions {
            mountpoint: "X:".to_owned(),
            volume_name: "vmount".to_owned(),
            case_insensitive: true,
            hide_dotfiles: false,
            read_only: false,
            file_info_timeout_ms: 1000,
            uid: 0,
            gid: 0,
            threads: 0,
        }
    }
}

/// Why WinFsp cannot be used here and what fixes it (the type every backend shares).
pub use vmount_core::Unavailable;

/// Everything that can go wrong mounting or unmounting. Each message is one sentence
/// naming the mountpoint, what is wrong, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum WinfspError {
    /// The mountpoint is neither a drive letter nor a usable folder path.
    #[error(
        "mountpoint {mountpoint:?} is not valid: {reason}; use a free drive letter like \"X:\" or a folder path that does not exist yet"
    )]
    InvalidMountpoint {
        /// The mountpoint as given.
        mountpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A folder mountpoint already exists (WinFsp must create it).
    #[error(
        "mountpoint folder {0} already exists; WinFsp creates the folder itself, so remove it or name one that does not exist yet"
    )]
    MountpointExists(String),
    /// The parent of a folder mountpoint does not exist.
    #[error("the parent folder of mountpoint {0} does not exist; create the parent folder first")]
    MountpointParentMissing(String),
    /// WinFsp is not usable on this machine.
    #[error("WinFsp is not available: {0}")]
    Unavailable(#[from] Unavailable),
    /// WinFsp refused to create or start the filesystem.
    #[error(
        "WinFsp could not start the filesystem for {mountpoint} ({detail}); check that the WinFsp driver is installed and running (`sc query WinFsp`)"
    )]
    Start {
        /// The mountpoint.
        mountpoint: String,
        /// What WinFsp reported.
        detail: String,
    },
    /// WinFsp refused the mountpoint.
    #[error(
        "WinFsp could not mount at {mountpoint} ({detail}); the drive letter may be in use or the folder's parent not writable, so choose another mountpoint"
    )]
    Mount {
        /// The mountpoint.
        mountpoint: String,
        /// What WinFsp reported.
        detail: String,
    },
    /// The mounting user's identity (SID) could not be read.
    #[error(
        "cannot read the current user's security identity to build file permissions: {0}; run vmount as a normal logged-on user"
    )]
    Identity(#[source] std::io::Error),
}

/// Whether WinFsp can be used by this process: on Windows, loads the WinFsp DLL (next to
/// the executable, on PATH, or from WinFsp's install folder); elsewhere, always
/// unavailable.
pub fn available() -> Result<(), Unavailable> {
    #[cfg(windows)]
    {
        windows::load_winfsp()
    }
    #[cfg(not(windows))]
    {
        Err(Unavailable {
            reason: "WinFsp exists only on Windows".to_owned(),
            fix: "use the fuse or nfs backend on this system".to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_messages() {
        let o = WinfspOptions::default();
        assert!(o.case_insensitive && !o.read_only && !o.hide_dotfiles);
        assert_eq!((o.uid, o.gid, o.file_info_timeout_ms), (0, 0, 1000));
        #[cfg(not(windows))]
        {
            let e = available().unwrap_err();
            assert!(e.to_string().contains("only on Windows"), "{e}");
        }
        let e = WinfspError::MountpointExists("C:\\mnt".into());
        assert!(e.to_string().contains("remove it"), "{e}");
    }
}
