//! vmount-core: the backend-neutral filesystem contract and the filesystems behind it.
//!
//! To write a filesystem of your own, implement [`Vfs`]: its docs are the complete
//! contract (threads, inode numbers and lookup counts, handles, readdir cookies, rename
//! flags, which error means what, permissions and [`Capabilities`]). The `vmount` crate
//! mounts it with one call (`vmount::mount`) and re-exports this crate as `vmount::core`.
//!
//! # Design decisions
//! - **One trait, [`Vfs`], inode-based and synchronous.** FUSE and NFSv3 address files by
//!   id, so ids are the natural currency; WinFsp's paths resolve to ids with
//!   [`walk_path`]. Synchronous `&self` methods fit the thread pools of fuser and WinFsp
//!   directly; the async NFS server bridges with `spawn_blocking`. There is no async twin.
//! - **Own types only.** [`Attr`], [`SetAttr`], [`Ctx`], [`StatFs`], [`DirEntry`] and the
//!   flag sets are vmount's; protocol types stay in the adapters, which convert with free
//!   functions (the orphan rule forbids `From` impls there anyway).
//! - **One error enum, [`VfsError`], not `#[non_exhaustive]`,** so that each adapter's
//!   exhaustive mapping breaks at compile time when a variant is added.
//! - **Push-model directory listing** through [`DirSink`], with stable resume cookies, so
//!   that a 100,000-entry directory is never copied into an intermediate list.
//! - **No platform or protocol crate in the public API.** `libc` is used internally on
//!   unix for errno numbers and the loopback filesystem.
//!
//! - **A panic costs one operation, not the mount.** Backends serve every filesystem
//!   through [`PanicGuard`], which turns a panic into an EIO reply.
//! - **Layers around every call share one forwarding implementation**,
//!   [`wrap::Wrapped`]: a layer ([`PanicGuard`], the counters of [`stats::Recorded`], or
//!   your own) is a small [`wrap::Around`] hook, and a method added to [`Vfs`] is
//!   forwarded in one place.
//!
//! # Filesystems
//! - [`memfs::MemFs`]: in memory, POSIX semantics, chunked sparse storage, size limit.
//! - `loopback::Loopback` (unix and Windows): a live, confined mirror of a host directory.
//!
//! [`stats`] holds the live per-operation counters that `vmount status` and the metrics
//! endpoint show.
#![deny(missing_docs)]

mod error;
mod guard;
#[cfg(any(unix, windows))]
mod handle_table;
#[cfg(any(unix, windows))]
mod io_cache;
#[cfg(unix)]
pub mod loopback;
#[cfg(windows)]
#[path = "loopback/windows.rs"]
pub mod loopback;
pub mod memfs;
pub mod mounts;
pub mod stats;
pub mod time;
mod types;
mod vfs;
#[cfg(any(windows, test))]
#[path = "loopback/winpure.rs"]
mod winpure;
pub mod wrap;

use std::ffi::OsStr;

pub use error::{Unavailable, VfsError, VfsResult};
pub use guard::{CatchPanics, PanicGuard};
pub use types::*;
#[cfg(unix)]
pub use vfs::BackingRegistry;
pub use vfs::Vfs;

/// Longest single name, in bytes, that vmount's own filesystems accept (the POSIX
/// `NAME_MAX` of Linux and macOS).
pub const NAME_MAX: usize = 255;

/// Checks that `name` is a valid single path component: not empty, not `.` or `..`, no
/// `/` or NUL byte, at most [`NAME_MAX`] bytes.
pub fn check_name(name: &OsStr) -> VfsResult<()> {
    let bytes = name.as_encoded_bytes();
    if bytes.len() > NAME_MAX {
        return Err(VfsError::NameTooLong);
    }
    if bytes.is_empty() || bytes == b"." || bytes == b".." || bytes.contains(&b'/') {
        return Err(VfsError::InvalidArgument);
    }
    if bytes.contains(&0) {
        return Err(VfsError::InvalidArgument);
    }
    Ok(())
}

/// Resolves a `/`-separated path (relative to the root; leading and repeated slashes
/// ignored) to attributes by walking [`Vfs::lookup`] one component at a time, as the
/// WinFsp adapter and tests need. Symlinks are not followed; `.` is skipped and `..` is
/// rejected with `InvalidArgument` (callers normalise paths first).
///
/// Each successful intermediate lookup counts a lookup reference, which the walk drops
/// again with [`Vfs::forget`]; the final one is kept for the caller.
pub fn walk_path(fs: &dyn Vfs, ctx: &Ctx, path: &OsStr) -> VfsResult<Attr> {
    let mut attr = fs.getattr(ctx, Ino::ROOT, None)?;
    let mut counted = false;
    for comp in path.as_encoded_bytes().split(|b| *b == b'/') {
        if comp.is_empty() || comp == b"." {
            continue;
        }
        if comp == b".." {
            return Err(VfsError::InvalidArgument);
        }
        // SAFETY: `comp` is a sub-slice of an `OsStr`'s encoded bytes split on an ASCII
        // byte, which is exactly what `from_encoded_bytes_unchecked` permits.
        let name = unsafe { OsStr::from_encoded_bytes_unchecked(comp) };
        let next = fs.lookup(ctx, attr.ino, name)?;
        if counted {
            fs.forget(attr.ino, 1);
        }
        attr = next;
        counted = true;
    }
    Ok(attr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name(OsStr::new("a")).is_ok());
        assert!(check_name(OsStr::new(&"x".repeat(255))).is_ok());
        assert!(matches!(
            check_name(OsStr::new(&"x".repeat(256))),
            Err(VfsError::NameTooLong)
        ));
        for bad in ["", ".", "..", "a/b", "a\0b"] {
            assert!(
                matches!(check_name(OsStr::new(bad)), Err(VfsError::InvalidArgument)),
                "{bad:?}"
            );
        }
    }
}
