//! vmount-backend-nfs: **placeholder.**
//!
//! The localhost NFSv3 server (nfsserve-based, loopback-only, mounted with the OS's own
//! NFS client) is built in its own issue. Until then this crate compiles, exposes the
//! function the CLI calls, and that function reports clearly that the backend is not
//! available yet, so configs naming `backend = "nfs"` parse everywhere and fail with a
//! sentence rather than a panic.

use std::path::Path;

/// Why the NFS backend cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum NfsError {
    /// This build has no NFS server yet.
    #[error(
        "the NFS backend is not available in this build of vmount yet; use backend = \"fuse\" (or \"auto\")"
    )]
    NotAvailable,
}

/// Whether this build can serve NFS at all.
pub fn available() -> Result<(), NfsError> {
    Err(NfsError::NotAvailable)
}

/// Options of an NFS mount, as validated by the CLI.
#[derive(Debug, Clone, Default)]
pub struct NfsOptions {
    /// TCP port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Whether to run the OS mount command (false = serve only and print it).
    pub mount: bool,
}

/// Serves `fs` at `mountpoint`. Not available in this build.
pub fn mount(
    _fs: std::sync::Arc<dyn vmount_core::Vfs>,
    _mountpoint: &Path,
    _options: &NfsOptions,
) -> Result<(), NfsError> {
    Err(NfsError::NotAvailable)
}
