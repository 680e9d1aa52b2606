//! [`PanicGuard`]: a [`Vfs`] wrapper that turns a panic inside a filesystem into an error
//! reply instead of letting it unwind into a backend's event loop.
//!
//! A panicking fuser worker ends the whole FUSE session (every process using the mount
//! then sees "Transport endpoint is not connected"); a panicking WinFsp callback becomes a
//! non-continuable exception. Filesystems must not panic on client input, but one bug in
//! one operation should cost that operation, not the mount: every backend serves its
//! filesystem through this guard. The panic is logged to stderr with the operation name and
//! the caller gets `VfsError::Io` (EIO). State behind `parking_lot` locks (which do not
//! poison) stays usable.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use crate::stats::Op;
use crate::wrap::{Around, Wrapped};
use crate::{Vfs, VfsError, VfsResult};

/// Turns a panic into `VfsError::Io`: the hook of [`PanicGuard`].
pub struct CatchPanics;

impl CatchPanics {
    fn run<T>(name: &str, f: impl FnOnce() -> T) -> Result<T, VfsError> {
        catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            eprintln!("vmount: the filesystem panicked in {name}: {msg}; answering EIO");
            VfsError::Io(std::io::Error::other(format!(
                "filesystem panicked in {name}"
            )))
        })
    }
}

impl Around for CatchPanics {
    fn call<T>(
        &self,
        op: Op,
        _bytes: fn(&T) -> u64,
        f: impl FnOnce() -> VfsResult<T>,
    ) -> VfsResult<T> {
        CatchPanics::run(op.name(), f)?
    }

    fn helper<T>(&self, name: &'static str, f: impl FnOnce() -> T) -> Option<T> {
        CatchPanics::run(name, f).ok()
    }
}

/// Serves `inner`, converting panics into `VfsError::Io` errors. See the module docs.
pub type PanicGuard = Wrapped<CatchPanics>;

impl Wrapped<CatchPanics> {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Vfs>) -> PanicGuard {
        Wrapped::with(inner, CatchPanics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memfs::{MemFs, MemFsOptions};
    use crate::{
        AccessMask, Attr, Capabilities, Ctx, DirSink, Fh, Ino, OpenFlags, Opened, RenameFlags,
        SetAttr, StatFs,
    };
    use std::ffi::OsStr;

    /// A filesystem whose reads panic, as a buggy one might.
    struct Buggy(MemFs);

    impl Vfs for Buggy {
        fn capabilities(&self) -> Capabilities {
            self.0.capabilities()
        }
        fn lookup(&self, ctx: &Ctx, parent: Ino, name: &OsStr) -> VfsResult<Attr> {
            self.0.lookup(ctx, parent, name)
        }
        fn getattr(&self, ctx: &Ctx, ino: Ino, fh: Option<Fh>) -> VfsResult<Attr> {
            self.0.getattr(ctx, ino, fh)
        }
        fn setattr(&self, c: &Ctx, i: Ino, s: &SetAttr, fh: Option<Fh>) -> VfsResult<Attr> {
            self.0.setattr(c, i, s, fh)
        }
        fn mkdir(&self, ctx: &Ctx, parent: Ino, name: &OsStr, mode: u32) -> VfsResult<Attr> {
            self.0.mkdir(ctx, parent, name, mode)
        }
        fn unlink(&self, ctx: &Ctx, parent: Ino, name: &OsStr) -> VfsResult<()> {
            self.0.unlink(ctx, parent, name)
        }
        fn rmdir(&self, ctx: &Ctx, parent: Ino, name: &OsStr) -> VfsResult<()> {
            self.0.rmdir(ctx, parent, name)
        }
        fn rename(
            &self,
            c: &Ctx,
            p: Ino,
            n: &OsStr,
            np: Ino,
            nn: &OsStr,
            f: RenameFlags,
        ) -> VfsResult<()> {
            self.0.rename(c, p, n, np, nn, f)
        }
        fn open(&self, ctx: &Ctx, ino: Ino, flags: OpenFlags) -> VfsResult<Opened> {
            self.0.open(ctx, ino, flags)
        }
        fn create(
            &self,
            c: &Ctx,
            p: Ino,
            n: &OsStr,
            m: u32,
            f: OpenFlags,
        ) -> VfsResult<(Attr, Opened)> {
            self.0.create(c, p, n, m, f)
        }
        fn read(&self, _: &Ctx, _: Ino, _: Option<Fh>, _: u64, _: &mut [u8]) -> VfsResult<usize> {
            panic!("bug in read")
        }
        fn write(&self, c: &Ctx, i: Ino, fh: Option<Fh>, o: u64, d: &[u8]) -> VfsResult<u32> {
            self.0.write(c, i, fh, o, d)
        }
        fn release(&self, ctx: &Ctx, ino: Ino, fh: Fh) -> VfsResult<()> {
            self.0.release(ctx, ino, fh)
        }
        fn opendir(&self, ctx: &Ctx, ino: Ino, flags: OpenFlags) -> VfsResult<Fh> {
            self.0.opendir(ctx, ino, flags)
        }
        fn readdir(
            &self,
            c: &Ctx,
            i: Ino,
            fh: Option<Fh>,
            a: u64,
            s: &mut dyn DirSink,
        ) -> VfsResult<()> {
            self.0.readdir(c, i, fh, a, s)
        }
        fn releasedir(&self, ctx: &Ctx, ino: Ino, fh: Fh) -> VfsResult<()> {
            self.0.releasedir(ctx, ino, fh)
        }
        fn statfs(&self, ctx: &Ctx, ino: Ino) -> VfsResult<StatFs> {
            self.0.statfs(ctx, ino)
        }
        fn access(&self, ctx: &Ctx, ino: Ino, mask: AccessMask) -> VfsResult<()> {
            self.0.access(ctx, ino, mask)
        }
    }

    #[test]
    fn a_panic_becomes_an_io_error_and_the_fs_keeps_working() {
        let fs = PanicGuard::new(Arc::new(Buggy(MemFs::new(MemFsOptions::default()))));
        let ctx = Ctx::root();
        let (attr, _) = fs
            .create(
                &ctx,
                Ino::ROOT,
                OsStr::new("f"),
                0o644,
                OpenFlags::READ | OpenFlags::WRITE,
            )
            .unwrap();
        let mut buf = [0u8; 4];
        let err = fs.read(&ctx, attr.ino, None, 0, &mut buf).unwrap_err();
        assert!(matches!(err, VfsError::Io(_)), "{err:?}");
        assert!(err.to_string().contains("panicked in read"), "{err}");
        // Everything else still works after the panic.
        assert_eq!(fs.write(&ctx, attr.ino, None, 0, b"ok").unwrap(), 2);
        assert_eq!(fs.getattr(&ctx, attr.ino, None).unwrap().size, 2);
    }
}
