//! Mount a filesystem of your own through FUSE, NFS or WinFsp with one call.
//!
//! Implement [`Vfs`] (see its docs for the contract), describe the mount with
//! [`MountPlan::builder`], and call [`mount`]: the backend is chosen as `vmount CONFIG`
//! chooses it (`auto`: FUSE then NFS on Linux and macOS, WinFsp then NFS on Windows, the
//! next one taking over when a backend fails to mount). The returned [`Mount`] unmounts
//! when dropped.
//!
//! ```no_run
//! # fn demo(my_fs: impl vmount::Vfs) -> anyhow::Result<()> {
//! let plan = vmount::MountPlan::builder("/mnt/mine").read_only(true).build()?;
//! let mount = vmount::mount(my_fs, &plan)?;
//! mount.wait() // until Ctrl-C, SIGTERM, or `umount /mnt/mine`
//! # }
//! ```
//!
//! `vmount_core` is re-exported as [`core`], so this crate is the only dependency a
//! filesystem needs; `cargo run --example hello_vfs -- /mnt/x` and `--example notes_vfs`
//! show a read-only and a writable filesystem.
//!
//! The modules `config`, `plan`, `platform` and `run` are the `vmount` binary's own (the
//! fuzz targets use them too); they are public but hidden, and change with the binary.

#[doc(hidden)]
pub mod config;
#[doc(hidden)]
pub mod daemon;
mod embed;
#[doc(hidden)]
pub mod init;
#[doc(hidden)]
pub mod logging;
#[doc(hidden)]
pub mod metrics;
#[doc(hidden)]
pub mod plan;
#[doc(hidden)]
pub mod platform;
#[doc(hidden)]
pub mod run;
#[doc(hidden)]
pub mod service;
#[doc(hidden)]
pub mod state;
mod stop;

pub use vmount_core as core;
pub use vmount_core::{
    AccessMask, Attr, Capabilities, Ctx, DirEntry, DirSink, Fh, FileType, Ino, OpenFlags, Opened,
    RenameFlags, SetAttr, StatFs, Vfs, VfsError, VfsResult,
};

pub use crate::config::BackendChoice;
pub use crate::embed::{Mount, MountPlanBuilder, mount, mount_shared};
pub use crate::plan::MountPlan;
pub use crate::platform::Backend;
