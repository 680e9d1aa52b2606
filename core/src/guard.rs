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

use std::ffi::{OsStr, OsString};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use crate::{
    AccessMask, Attr, Capabilities, Ctx, DirSink, FallocateFlags, Fh, FileType, Ino, OpenFlags,
    Opened, RenameFlags, SetAttr, StatFs, Vfs, VfsError, VfsResult, Whence, XattrFlags,
};

/// Serves `inner`, converting panics into `VfsError::Io` errors. See the module docs.
pub struct PanicGuard {
    inner: Arc<dyn Vfs>,
}

impl PanicGuard {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Vfs>) -> PanicGuard {
        PanicGuard { inner }
    }

    fn call<T>(&self, op: &'static str, f: impl FnOnce(&dyn Vfs) -> VfsResult<T>) -> VfsResult<T> {
        match catch_unwind(AssertUnwindSafe(|| f(&*self.inner))) {
            Ok(r) => r,
            Err(payload) => {
                let msg = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_owned());
                eprintln!("vmount: the filesystem panicked in {op}: {msg}; answering EIO");
                Err(VfsError::Io(std::io::Error::other(format!(
                    "filesystem panicked in {op}"
                ))))
            }
        }
    }
}

impl Vfs for PanicGuard {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn lookup(&self, ctx: &Ctx, parent: Ino, name: &OsStr) -> VfsResult<Attr> {
        self.call("lookup", |fs| fs.lookup(ctx, parent, name))
    }
    fn forget(&self, ino: Ino, nlookup: u64) {
        let _ = self.call("forget", |fs| {
            fs.forget(ino, nlookup);
            Ok(())
        });
    }
    fn getattr(&self, ctx: &Ctx, ino: Ino, fh: Option<Fh>) -> VfsResult<Attr> {
        self.call("getattr", |fs| fs.getattr(ctx, ino, fh))
    }
    fn setattr(&self, ctx: &Ctx, ino: Ino, set: &SetAttr, fh: Option<Fh>) -> VfsResult<Attr> {
        self.call("setattr", |fs| fs.setattr(ctx, ino, set, fh))
    }
    fn readlink(&self, ctx: &Ctx, ino: Ino) -> VfsResult<Vec<u8>> {
        self.call("readlink", |fs| fs.readlink(ctx, ino))
    }
    fn mknod(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &OsStr,
        kind: FileType,
        mode: u32,
        rdev: u64,
    ) -> VfsResult<Attr> {
        self.call("mknod", |fs| fs.mknod(ctx, parent, name, kind, mode, rdev))
    }
    fn mkdir(&self, ctx: &Ctx, parent: Ino, name: &OsStr, mode: u32) -> VfsResult<Attr> {
        self.call("mkdir", |fs| fs.mkdir(ctx, parent, name, mode))
    }
    fn unlink(&self, ctx: &Ctx, parent: Ino, name: &OsStr) -> VfsResult<()> {
        self.call("unlink", |fs| fs.unlink(ctx, parent, name))
    }
    fn rmdir(&self, ctx: &Ctx, parent: Ino, name: &OsStr) -> VfsResult<()> {
        self.call("rmdir", |fs| fs.rmdir(ctx, parent, name))
    }
    fn symlink(&self, ctx: &Ctx, parent: Ino, name: &OsStr, target: &OsStr) -> VfsResult<Attr> {
        self.call("symlink", |fs| fs.symlink(ctx, parent, name, target))
    }
    fn rename(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        flags: RenameFlags,
    ) -> VfsResult<()> {
        self.call("rename", |fs| {
            fs.rename(ctx, parent, name, new_parent, new_name, flags)
        })
    }
    fn link(&self, ctx: &Ctx, ino: Ino, new_parent: Ino, new_name: &OsStr) -> VfsResult<Attr> {
        self.call("link", |fs| fs.link(ctx, ino, new_parent, new_name))
    }
    fn open(&self, ctx: &Ctx, ino: Ino, flags: OpenFlags) -> VfsResult<Opened> {
        self.call("open", |fs| fs.open(ctx, ino, flags))
    }
    fn create(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        flags: OpenFlags,
    ) -> VfsResult<(Attr, Opened)> {
        self.call("create", |fs| fs.create(ctx, parent, name, mode, flags))
    }
    fn read(
        &self,
        ctx: &Ctx,
        ino: Ino,
        fh: Option<Fh>,
        offset: u64,
        buf: &mut [u8],
    ) -> VfsResult<usize> {
        self.call("read", |fs| fs.read(ctx, ino, fh, offset, buf))
    }
    fn write(
        &self,
        ctx: &Ctx,
        ino: Ino,
        fh: Option<Fh>,
        offset: u64,
        data: &[u8],
    ) -> VfsResult<u32> {
        self.call("write", |fs| fs.write(ctx, ino, fh, offset, data))
    }
    fn flush(&self, ctx: &Ctx, ino: Ino, fh: Fh, lock_owner: u64) -> VfsResult<()> {
        self.call("flush", |fs| fs.flush(ctx, ino, fh, lock_owner))
    }
    fn release(&self, ctx: &Ctx, ino: Ino, fh: Fh) -> VfsResult<()> {
        self.call("release", |fs| fs.release(ctx, ino, fh))
    }
    fn fsync(&self, ctx: &Ctx, ino: Ino, fh: Option<Fh>, datasync: bool) -> VfsResult<()> {
        self.call("fsync", |fs| fs.fsync(ctx, ino, fh, datasync))
    }
    fn opendir(&self, ctx: &Ctx, ino: Ino, flags: OpenFlags) -> VfsResult<Fh> {
        self.call("opendir", |fs| fs.opendir(ctx, ino, flags))
    }
    fn readdir(
        &self,
        ctx: &Ctx,
        ino: Ino,
        fh: Option<Fh>,
        after: u64,
        sink: &mut dyn DirSink,
    ) -> VfsResult<()> {
        self.call("readdir", |fs| fs.readdir(ctx, ino, fh, after, sink))
    }
    fn releasedir(&self, ctx: &Ctx, ino: Ino, fh: Fh) -> VfsResult<()> {
        self.call("releasedir", |fs| fs.releasedir(ctx, ino, fh))
    }
    fn fsyncdir(&self, ctx: &Ctx, ino: Ino, fh: Option<Fh>, datasync: bool) -> VfsResult<()> {
        self.call("fsyncdir", |fs| fs.fsyncdir(ctx, ino, fh, datasync))
    }
    fn statfs(&self, ctx: &Ctx, ino: Ino) -> VfsResult<StatFs> {
        self.call("statfs", |fs| fs.statfs(ctx, ino))
    }
    fn access(&self, ctx: &Ctx, ino: Ino, mask: AccessMask) -> VfsResult<()> {
        self.call("access", |fs| fs.access(ctx, ino, mask))
    }
    fn setxattr(
        &self,
        ctx: &Ctx,
        ino: Ino,
        name: &OsStr,
        value: &[u8],
        flags: XattrFlags,
    ) -> VfsResult<()> {
        self.call("setxattr", |fs| fs.setxattr(ctx, ino, name, value, flags))
    }
    fn getxattr(&self, ctx: &Ctx, ino: Ino, name: &OsStr) -> VfsResult<Vec<u8>> {
        self.call("getxattr", |fs| fs.getxattr(ctx, ino, name))
    }
    fn listxattr(&self, ctx: &Ctx, ino: Ino) -> VfsResult<Vec<OsString>> {
        self.call("listxattr", |fs| fs.listxattr(ctx, ino))
    }
    fn removexattr(&self, ctx: &Ctx, ino: Ino, name: &OsStr) -> VfsResult<()> {
        self.call("removexattr", |fs| fs.removexattr(ctx, ino, name))
    }
    fn fallocate(
        &self,
        ctx: &Ctx,
        ino: Ino,
        fh: Option<Fh>,
        offset: u64,
        len: u64,
        mode: FallocateFlags,
    ) -> VfsResult<()> {
        self.call("fallocate", |fs| {
            fs.fallocate(ctx, ino, fh, offset, len, mode)
        })
    }
    fn copy_file_range(
        &self,
        ctx: &Ctx,
        ino_in: Ino,
        fh_in: Option<Fh>,
        offset_in: u64,
        ino_out: Ino,
        fh_out: Option<Fh>,
        offset_out: u64,
        len: u64,
    ) -> VfsResult<u64> {
        self.call("copy_file_range", |fs| {
            fs.copy_file_range(
                ctx, ino_in, fh_in, offset_in, ino_out, fh_out, offset_out, len,
            )
        })
    }
    fn lseek(
        &self,
        ctx: &Ctx,
        ino: Ino,
        fh: Option<Fh>,
        offset: u64,
        whence: Whence,
    ) -> VfsResult<u64> {
        self.call("lseek", |fs| fs.lseek(ctx, ino, fh, offset, whence))
    }
    #[cfg(unix)]
    fn passthrough_fd(&self, ino: Ino, fh: Fh) -> Option<std::os::fd::OwnedFd> {
        self.call("passthrough_fd", |fs| Ok(fs.passthrough_fd(ino, fh)))
            .ok()
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memfs::{MemFs, MemFsOptions};

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
