//! [`Wrapped`]: one forwarding [`Vfs`] implementation for every layer that must run around
//! each call of a filesystem ([`crate::PanicGuard`] catching panics,
//! [`crate::stats::Recorded`] counting), so that a method added to the trait is forwarded
//! in one place, and a layer is only its [`Around`] hook.

use std::ffi::{OsStr, OsString};
use std::sync::Arc;

use crate::stats::Op;
use crate::{
    AccessMask, Attr, Capabilities, Ctx, DirSink, FallocateFlags, Fh, FileType, Ino, OpenFlags,
    Opened, RenameFlags, SetAttr, StatFs, Vfs, VfsResult, Whence, XattrFlags,
};

/// What a [`Wrapped`] filesystem does around each call.
pub trait Around: Send + Sync + 'static {
    /// Runs `f`, the operation `op`; `bytes` tells how much file data a successful
    /// result moved (0 for all but reads, writes and copies).
    fn call<T>(
        &self,
        op: Op,
        bytes: fn(&T) -> u64,
        f: impl FnOnce() -> VfsResult<T>,
    ) -> VfsResult<T>;

    /// Runs `f`, a helper call that is no operation of its own (`passthrough_fd`, part of
    /// an open); `None` when the layer stopped it.
    fn helper<T>(&self, name: &'static str, f: impl FnOnce() -> T) -> Option<T>;
}

/// `inner`, with `around` run around every call.
pub struct Wrapped<A> {
    inner: Arc<dyn Vfs>,
    around: A,
}

impl<A: Around> Wrapped<A> {
    /// Wraps `inner` in the layer `around`.
    pub fn with(inner: Arc<dyn Vfs>, around: A) -> Self {
        Wrapped { inner, around }
    }

    fn call<T>(
        &self,
        op: Op,
        bytes: fn(&T) -> u64,
        f: impl FnOnce(&dyn Vfs) -> VfsResult<T>,
    ) -> VfsResult<T> {
        self.around.call(op, bytes, || f(&*self.inner))
    }
}

fn none<T>(_: &T) -> u64 {
    0
}

impl<A: Around> Vfs for Wrapped<A> {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    // Not an operation: set up once at mount.
    fn watch_changes(&self, sink: Arc<dyn crate::ChangeSink>) -> bool {
        self.inner.watch_changes(sink)
    }
    fn attach(&self, forgets: bool) {
        self.inner.attach(forgets)
    }
    fn lookup(&self, ctx: &Ctx, parent: Ino, name: &OsStr) -> VfsResult<Attr> {
        self.call(Op::Lookup, none, |fs| fs.lookup(ctx, parent, name))
    }
    fn forget(&self, ino: Ino, nlookup: u64) {
        let _ = self.call(Op::Forget, none, |fs| {
            fs.forget(ino, nlookup);
            Ok(())
        });
    }
    fn getattr(&self, ctx: &Ctx, ino: Ino, fh: Option<Fh>) -> VfsResult<Attr> {
        self.call(Op::Getattr, none, |fs| fs.getattr(ctx, ino, fh))
    }
    fn setattr(&self, ctx: &Ctx, ino: Ino, set: &SetAttr, fh: Option<Fh>) -> VfsResult<Attr> {
        self.call(Op::Setattr, none, |fs| fs.setattr(ctx, ino, set, fh))
    }
    fn readlink(&self, ctx: &Ctx, ino: Ino) -> VfsResult<Vec<u8>> {
        self.call(Op::Readlink, none, |fs| fs.readlink(ctx, ino))
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
        self.call(Op::Mknod, none, |fs| {
            fs.mknod(ctx, parent, name, kind, mode, rdev)
        })
    }
    fn mkdir(&self, ctx: &Ctx, parent: Ino, name: &OsStr, mode: u32) -> VfsResult<Attr> {
        self.call(Op::Mkdir, none, |fs| fs.mkdir(ctx, parent, name, mode))
    }
    fn unlink(&self, ctx: &Ctx, parent: Ino, name: &OsStr) -> VfsResult<()> {
        self.call(Op::Unlink, none, |fs| fs.unlink(ctx, parent, name))
    }
    fn rmdir(&self, ctx: &Ctx, parent: Ino, name: &OsStr) -> VfsResult<()> {
        self.call(Op::Rmdir, none, |fs| fs.rmdir(ctx, parent, name))
    }
    fn symlink(&self, ctx: &Ctx, parent: Ino, name: &OsStr, target: &OsStr) -> VfsResult<Attr> {
        self.call(Op::Symlink, none, |fs| {
            fs.symlink(ctx, parent, name, target)
        })
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
        self.call(Op::Rename, none, |fs| {
            fs.rename(ctx, parent, name, new_parent, new_name, flags)
        })
    }
    fn link(&self, ctx: &Ctx, ino: Ino, new_parent: Ino, new_name: &OsStr) -> VfsResult<Attr> {
        self.call(Op::Link, none, |fs| fs.link(ctx, ino, new_parent, new_name))
    }
    fn open(&self, ctx: &Ctx, ino: Ino, flags: OpenFlags) -> VfsResult<Opened> {
        self.call(Op::Open, none, |fs| fs.open(ctx, ino, flags))
    }
    fn create(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        flags: OpenFlags,
    ) -> VfsResult<(Attr, Opened)> {
        self.call(Op::Create, none, |fs| {
            fs.create(ctx, parent, name, mode, flags)
        })
    }
    fn read(
        &self,
        ctx: &Ctx,
        ino: Ino,
        fh: Option<Fh>,
        offset: u64,
        buf: &mut [u8],
    ) -> VfsResult<usize> {
        self.call(
            Op::Read,
            |n| *n as u64,
            |fs| fs.read(ctx, ino, fh, offset, buf),
        )
    }
    fn write(
        &self,
        ctx: &Ctx,
        ino: Ino,
        fh: Option<Fh>,
        offset: u64,
        data: &[u8],
    ) -> VfsResult<u32> {
        self.call(
            Op::Write,
            |n| u64::from(*n),
            |fs| fs.write(ctx, ino, fh, offset, data),
        )
    }
    fn flush(&self, ctx: &Ctx, ino: Ino, fh: Fh, lock_owner: u64) -> VfsResult<()> {
        self.call(Op::Flush, none, |fs| fs.flush(ctx, ino, fh, lock_owner))
    }
    fn release(&self, ctx: &Ctx, ino: Ino, fh: Fh) -> VfsResult<()> {
        self.call(Op::Release, none, |fs| fs.release(ctx, ino, fh))
    }
    fn fsync(&self, ctx: &Ctx, ino: Ino, fh: Option<Fh>, datasync: bool) -> VfsResult<()> {
        self.call(Op::Fsync, none, |fs| fs.fsync(ctx, ino, fh, datasync))
    }
    fn opendir(&self, ctx: &Ctx, ino: Ino, flags: OpenFlags) -> VfsResult<Fh> {
        self.call(Op::Opendir, none, |fs| fs.opendir(ctx, ino, flags))
    }
    fn readdir(
        &self,
        ctx: &Ctx,
        ino: Ino,
        fh: Option<Fh>,
        after: u64,
        sink: &mut dyn DirSink,
    ) -> VfsResult<()> {
        let op = if sink.wants_attr() {
            Op::Readdirplus
        } else {
            Op::Readdir
        };
        self.call(op, none, |fs| fs.readdir(ctx, ino, fh, after, sink))
    }
    fn releasedir(&self, ctx: &Ctx, ino: Ino, fh: Fh) -> VfsResult<()> {
        self.call(Op::Releasedir, none, |fs| fs.releasedir(ctx, ino, fh))
    }
    fn fsyncdir(&self, ctx: &Ctx, ino: Ino, fh: Option<Fh>, datasync: bool) -> VfsResult<()> {
        self.call(Op::Fsyncdir, none, |fs| fs.fsyncdir(ctx, ino, fh, datasync))
    }
    fn statfs(&self, ctx: &Ctx, ino: Ino) -> VfsResult<StatFs> {
        self.call(Op::Statfs, none, |fs| fs.statfs(ctx, ino))
    }
    fn access(&self, ctx: &Ctx, ino: Ino, mask: AccessMask) -> VfsResult<()> {
        self.call(Op::Access, none, |fs| fs.access(ctx, ino, mask))
    }
    fn setxattr(
        &self,
        ctx: &Ctx,
        ino: Ino,
        name: &OsStr,
        value: &[u8],
        flags: XattrFlags,
    ) -> VfsResult<()> {
        self.call(Op::Setxattr, none, |fs| {
            fs.setxattr(ctx, ino, name, value, flags)
        })
    }
    fn getxattr(&self, ctx: &Ctx, ino: Ino, name: &OsStr) -> VfsResult<Vec<u8>> {
        self.call(Op::Getxattr, none, |fs| fs.getxattr(ctx, ino, name))
    }
    fn listxattr(&self, ctx: &Ctx, ino: Ino) -> VfsResult<Vec<OsString>> {
        self.call(Op::Listxattr, none, |fs| fs.listxattr(ctx, ino))
    }
    fn removexattr(&self, ctx: &Ctx, ino: Ino, name: &OsStr) -> VfsResult<()> {
        self.call(Op::Removexattr, none, |fs| fs.removexattr(ctx, ino, name))
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
        self.call(Op::Fallocate, none, |fs| {
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
        self.call(
            Op::CopyFileRange,
            |n| *n,
            |fs| {
                fs.copy_file_range(
                    ctx, ino_in, fh_in, offset_in, ino_out, fh_out, offset_out, len,
                )
            },
        )
    }
    fn lseek(
        &self,
        ctx: &Ctx,
        ino: Ino,
        fh: Option<Fh>,
        offset: u64,
        whence: Whence,
    ) -> VfsResult<u64> {
        self.call(Op::Lseek, none, |fs| fs.lseek(ctx, ino, fh, offset, whence))
    }
    // Not an operation of its own: part of an open.
    #[cfg(unix)]
    fn passthrough_fd(&self, ino: Ino, fh: Fh) -> Option<std::os::fd::OwnedFd> {
        self.around
            .helper("passthrough_fd", || self.inner.passthrough_fd(ino, fh))
            .flatten()
    }
    // Not an operation of its own: part of an open.
    #[cfg(unix)]
    fn backing_id(&self, ino: Ino, fh: Fh) -> Option<u32> {
        self.around
            .helper("backing_id", || self.inner.backing_id(ino, fh))
            .flatten()
    }
    #[cfg(unix)]
    fn use_backing_registry(&self, registry: std::sync::Arc<dyn crate::BackingRegistry>) -> bool {
        self.inner.use_backing_registry(registry)
    }
    // Not an operation of its own: the caller's read, counted by the caller.
    #[cfg(unix)]
    fn read_fd(&self, ino: Ino) -> Option<std::os::fd::OwnedFd> {
        self.around
            .helper("read_fd", || self.inner.read_fd(ino))
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memfs::{MemFs, MemFsOptions};
    use crate::{VecSink, VfsError};
    use parking_lot::Mutex;

    /// Logs the name of every call that reaches the hook.
    #[derive(Default)]
    struct Log(Mutex<Vec<&'static str>>);

    impl Around for Arc<Log> {
        fn call<T>(
            &self,
            op: Op,
            _bytes: fn(&T) -> u64,
            f: impl FnOnce() -> VfsResult<T>,
        ) -> VfsResult<T> {
            self.0.lock().push(op.name());
            f()
        }
        fn helper<T>(&self, name: &'static str, f: impl FnOnce() -> T) -> Option<T> {
            self.0.lock().push(name);
            Some(f())
        }
    }

    /// Every trait method goes through the hook to the inner filesystem: a method the
    /// wrapper forgot would run the trait's default instead, and be missing here.
    #[test]
    fn every_method_goes_through_the_hook() {
        let log = Arc::new(Log::default());
        let fs = Wrapped::with(
            Arc::new(MemFs::new(MemFsOptions::default())),
            Arc::clone(&log),
        );
        let c = Ctx::root();
        let n = OsStr::new;
        let rw = OpenFlags::READ | OpenFlags::WRITE;
        let (a, o) = fs.create(&c, Ino::ROOT, n("f"), 0o644, rw).unwrap();
        let (f, fh) = (a.ino, o.fh);
        fs.lookup(&c, Ino::ROOT, n("f")).unwrap();
        fs.forget(f, 1);
        fs.getattr(&c, f, None).unwrap();
        fs.setattr(&c, f, &SetAttr::default(), None).unwrap();
        let l = fs.symlink(&c, Ino::ROOT, n("l"), n("f")).unwrap();
        fs.readlink(&c, l.ino).unwrap();
        fs.mknod(&c, Ino::ROOT, n("p"), FileType::Fifo, 0o644, 0)
            .unwrap();
        let d = fs.mkdir(&c, Ino::ROOT, n("d"), 0o755).unwrap();
        fs.unlink(&c, Ino::ROOT, n("p")).unwrap();
        fs.rename(&c, Ino::ROOT, n("l"), d.ino, n("l"), RenameFlags::empty())
            .unwrap();
        fs.link(&c, f, d.ino, n("g")).unwrap();
        let o2 = fs.open(&c, f, rw).unwrap();
        assert_eq!(fs.write(&c, f, Some(fh), 0, b"abc").unwrap(), 3);
        let mut buf = [0u8; 8];
        assert_eq!(fs.read(&c, f, Some(fh), 0, &mut buf).unwrap(), 3);
        fs.flush(&c, f, fh, 0).unwrap();
        fs.fsync(&c, f, Some(fh), false).unwrap();
        fs.release(&c, f, o2.fh).unwrap();
        let dh = fs.opendir(&c, Ino::ROOT, OpenFlags::READ).unwrap();
        fs.readdir(&c, Ino::ROOT, Some(dh), 0, &mut VecSink::default())
            .unwrap();
        let mut plus = VecSink {
            plus: true,
            ..VecSink::default()
        };
        fs.readdir(&c, Ino::ROOT, Some(dh), 0, &mut plus).unwrap();
        fs.fsyncdir(&c, Ino::ROOT, Some(dh), false).unwrap();
        fs.releasedir(&c, Ino::ROOT, dh).unwrap();
        fs.statfs(&c, Ino::ROOT).unwrap();
        fs.access(&c, f, AccessMask::READ).unwrap();
        fs.setxattr(&c, f, n("user.x"), b"1", XattrFlags::empty())
            .unwrap();
        fs.getxattr(&c, f, n("user.x")).unwrap();
        fs.listxattr(&c, f).unwrap();
        fs.removexattr(&c, f, n("user.x")).unwrap();
        fs.fallocate(&c, f, Some(fh), 0, 10, FallocateFlags::empty())
            .unwrap();
        fs.copy_file_range(&c, f, Some(fh), 0, f, Some(fh), 16, 3)
            .unwrap();
        fs.lseek(&c, f, Some(fh), 0, Whence::Data).unwrap();
        #[cfg(unix)]
        assert!(
            fs.passthrough_fd(f, fh).is_none(),
            "memfs has no host files"
        );
        #[cfg(unix)]
        assert!(fs.read_fd(f).is_none(), "memfs has no host files");
        fs.release(&c, f, fh).unwrap();
        assert!(matches!(
            fs.rmdir(&c, Ino::ROOT, n("d")),
            Err(VfsError::NotEmpty)
        ));
        // Forwarded without the hook: not an operation.
        assert!(fs.capabilities().kills_privileges, "memfs's capabilities");
        let mut want = vec![
            "create",
            "lookup",
            "forget",
            "getattr",
            "setattr",
            "symlink",
            "readlink",
            "mknod",
            "mkdir",
            "unlink",
            "rename",
            "link",
            "open",
            "write",
            "read",
            "flush",
            "fsync",
            "release",
            "opendir",
            "readdir",
            "readdirplus",
            "fsyncdir",
            "releasedir",
            "statfs",
            "access",
            "setxattr",
            "getxattr",
            "listxattr",
            "removexattr",
            "fallocate",
            "copy_file_range",
            "lseek",
        ];
        if cfg!(unix) {
            want.extend(["passthrough_fd", "read_fd"]);
        }
        want.extend(["release", "rmdir"]);
        assert_eq!(*log.0.lock(), want);
    }
}
