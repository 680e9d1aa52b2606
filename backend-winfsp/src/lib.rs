//! vmount-backend-winfsp: **placeholder.**
//!
//! The WinFsp adapter (path-to-inode walk, DirBuffer listings, delete at cleanup,
//! security descriptors from mode bits) is built in its own issue. It will link
//! winfsp-rs, which is GPL-3.0, which is why this crate alone carries that licence.
//! Until then it compiles on every platform and reports that it is unavailable.

/// Whether WinFsp can be used by this build on this machine.
pub fn available() -> Result<(), String> {
    Err("the WinFsp backend is not available in this build of vmount yet".into())
}
