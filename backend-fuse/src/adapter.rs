//! `impl fuser::Filesystem`: fuser's `/dev/fuse` transport over [`Ops`].
//!
//! Every handler decodes fuser's arguments, calls the matching [`Ops`] method and turns
//! its result into fuser's reply. `init` negotiates the kernel features for both
//! transports (fuser owns the handshake), including FUSE-over-io_uring, whose queues
//! [`crate::mount`] starts once the handshake is done.

use std::cell::RefCell;
use std::ffi::OsStr;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, CopyFileRangeFlags, FileAttr, FileHandle, Filesystem, Generation, INodeNo,
    InitFlags, IoctlFlags, KernelConfig, LockOwner, PollEvents, PollFlags, PollNotifier, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyIoctl,
    ReplyLseek, ReplyOpen, ReplyPoll, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow,
    WriteFlags,
};
use vmount_core::Ctx;

use crate::IoUring;
use crate::convert;
use crate::ops::{
    self, DirOut, DirPlusOut, MAX_BACKGROUND, MAX_READAHEAD, MAX_STACK_DEPTH, MAX_WRITE, OpResult,
    OpenOut, Ops, XattrOut, negotiate,
};

/// Inode generations: vmount never reuses an inode number while mounted, so 0 always.
pub(crate) const GENERATION: Generation = Generation(0);

thread_local! {
    /// One read buffer per fuser worker thread, grown to the largest read seen and
    /// reused, so that reads do not allocate.
    static READ_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The fuser filesystem serving one mount's [`Ops`].
pub(crate) struct Adapter {
    ops: Arc<Ops>,
}

impl Adapter {
    pub(crate) fn new(ops: Arc<Ops>) -> Adapter {
        Adapter { ops }
    }

    fn reply_entry(&self, reply: ReplyEntry, res: OpResult<FileAttr>) {
        match res {
            Ok(a) => reply.entry_with_ttls(&self.ops.attr_ttl, &self.ops.entry_ttl, &a, GENERATION),
            Err(e) => reply.error(e),
        }
    }
}

fn ctx(req: &Request) -> Ctx {
    ops::ctx(req.uid(), req.gid(), req.pid())
}

fn reply_empty(reply: ReplyEmpty, res: OpResult<()>) {
    match res {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

fn reply_attr(reply: ReplyAttr, ttl: Duration, res: OpResult<FileAttr>) {
    match res {
        Ok(a) => reply.attr(&ttl, &a),
        Err(e) => reply.error(e),
    }
}

fn reply_xattr(reply: ReplyXattr, res: OpResult<XattrOut>) {
    match res {
        Ok(XattrOut::Size(n)) => reply.size(n),
        Ok(XattrOut::Data(v)) => reply.data(&v),
        Err(e) => reply.error(e),
    }
}

fn reply_open(reply: ReplyOpen, res: OpResult<OpenOut>) {
    match res {
        Ok(OpenOut {
            fh,
            flags,
            backing_id: Some(id),
        }) => {
            // SAFETY: `id` is open on this session's connection and stays open while the
            // handle holds its `Backing`; `into_raw` keeps fuser's wrapper from closing it.
            let wrapped = unsafe { reply.wrap_backing(id) };
            reply.opened_passthrough(FileHandle(fh), flags, &wrapped);
            wrapped.into_raw();
        }
        Ok(o) => reply.opened(FileHandle(o.fh), o.flags),
        Err(e) => reply.error(e),
    }
}

impl DirOut for ReplyDirectory {
    fn add(&mut self, ino: u64, offset: u64, kind: fuser::FileType, name: &OsStr) -> bool {
        ReplyDirectory::add(self, INodeNo(ino), offset, kind, name)
    }
}

impl DirPlusOut for ReplyDirectoryPlus {
    fn add(&mut self, offset: u64, name: &OsStr, ttl: Duration, attr: &FileAttr) -> bool {
        ReplyDirectoryPlus::add(self, attr.ino, offset, name, &ttl, attr, GENERATION)
    }
}

impl Filesystem for Adapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        let ops = &self.ops;
        let optional = [
            ("readdirplus", InitFlags::FUSE_DO_READDIRPLUS),
            ("readdirplus_auto", InitFlags::FUSE_READDIRPLUS_AUTO),
            ("parallel_dirops", InitFlags::FUSE_PARALLEL_DIROPS),
            ("async_read", InitFlags::FUSE_ASYNC_READ),
            ("big_writes", InitFlags::FUSE_BIG_WRITES),
            ("auto_inval_data", InitFlags::FUSE_AUTO_INVAL_DATA),
            ("cache_symlinks", InitFlags::FUSE_CACHE_SYMLINKS),
            ("max_pages", InitFlags::FUSE_MAX_PAGES),
        ];
        for (name, flag) in optional {
            if config.add_capabilities(flag).is_err() {
                tracing::debug!("the kernel does not offer FUSE capability {name}");
            }
        }
        // A filesystem that clears setuid/setgid and file capabilities itself takes that
        // job from the kernel, which otherwise reads `security.capability` before every
        // write (a GETXATTR round trip per write(2)) and sets SB_NOSEC only with this.
        if ops.kills_privileges()
            && config
                .add_capabilities(InitFlags::FUSE_HANDLE_KILLPRIV_V2)
                .is_err()
        {
            tracing::debug!("the kernel does not offer FUSE capability handle_killpriv_v2");
        }
        let kernel = config.capabilities();
        // Passthrough also needs a stacking depth the kernel accepts.
        let kernel_passthrough = kernel.contains(InitFlags::FUSE_PASSTHROUGH)
            && config.set_max_stack_depth(MAX_STACK_DEPTH).is_ok();
        let kernel_writeback = kernel.contains(InitFlags::FUSE_WRITEBACK_CACHE);
        let Ok(plan) = negotiate(
            ops.want_passthrough,
            ops.want_writeback,
            kernel_passthrough,
            kernel_writeback,
        ) else {
            ops.startup
                .passthrough_unsupported
                .store(true, Ordering::SeqCst);
            // The session ends here and `mount` reports why.
            return Err(io::Error::from_raw_os_error(libc::ENOTSUP));
        };
        if plan.passthrough {
            // Offered by the kernel (checked above), so this cannot fail.
            let _ = config.add_capabilities(InitFlags::FUSE_PASSTHROUGH);
        } else {
            // The depth is only sent with FUSE_PASSTHROUGH; reset it anyway for clarity.
            let _ = config.set_max_stack_depth(0);
        }
        if plan.passthrough_missing {
            tracing::info!(
                "the kernel does not support FUSE passthrough (Linux 6.9+); file data goes \
                 through the daemon"
            );
        }
        if plan.writeback_dropped {
            tracing::info!(
                "writeback_cache is off for this mount: FUSE passthrough is on, and the kernel \
                 does not combine the two (set passthrough = \"off\" to get the writeback cache)"
            );
        }
        if plan.writeback {
            let _ = config.add_capabilities(InitFlags::FUSE_WRITEBACK_CACHE);
        } else if ops.want_writeback && !kernel_writeback {
            tracing::warn!(
                "the kernel does not support the FUSE writeback cache; writes go through uncached"
            );
        }
        // FUSE-over-io_uring: the kernel offers it only where it is built in and
        // enabled (`enable_uring`); `mount` has already refused `on` where it is not.
        let uring = cfg!(target_os = "linux")
            && ops.want_uring != IoUring::Off
            && kernel.contains(InitFlags::FUSE_OVER_IO_URING)
            && config
                .add_capabilities(InitFlags::FUSE_OVER_IO_URING)
                .is_ok();
        if ops.want_uring == IoUring::On && !uring {
            tracing::warn!(
                "the kernel did not offer FUSE-over-io_uring; requests go through /dev/fuse"
            );
        }
        // Asked for above whenever the kernel offers it.
        let auto_inval = kernel.contains(InitFlags::FUSE_AUTO_INVAL_DATA);
        let no_opendir = kernel.contains(InitFlags::FUSE_NO_OPENDIR_SUPPORT);
        ops.negotiated(&plan, uring, auto_inval, no_opendir);
        // Each setter returns the nearest allowed value when ours is out of range.
        if let Err(nearest) = config.set_max_write(MAX_WRITE) {
            let _ = config.set_max_write(nearest);
        }
        if let Err(nearest) = config.set_max_readahead(MAX_READAHEAD) {
            let _ = config.set_max_readahead(nearest);
        }
        let _ = config.set_max_background(MAX_BACKGROUND);
        tracing::debug!(
            abi = %config.kernel_abi(),
            writeback = plan.writeback,
            passthrough = plan.passthrough,
            io_uring = uring,
            "FUSE session initialised"
        );
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.ops.lookup(&ctx(req), parent.0, name) {
            Ok(looked) => {
                let (a, attr_ttl, entry_ttl) = looked.reply(&self.ops);
                reply.entry_with_ttls(&attr_ttl, &entry_ttl, &a, GENERATION);
            }
            Err(e) => reply.error(e),
        }
    }

    fn forget(&self, _req: &Request, i: INodeNo, nlookup: u64) {
        let arrived = std::time::Instant::now();
        self.ops.forget(i.0, nlookup);
        self.ops.pace_forgets(arrived);
    }

    // `batch_forget` keeps fuser's default, which calls `forget` for each node: its
    // `ForgetOne` argument type is not exported by fuser 0.18, so it cannot be overridden.

    fn getattr(&self, req: &Request, i: INodeNo, h: Option<FileHandle>, reply: ReplyAttr) {
        let res = self.ops.getattr(&ctx(req), i.0, h.map(|h| h.0));
        reply_attr(reply, self.ops.attr_ttl, res);
    }

    fn setattr(
        &self,
        req: &Request,
        i: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        h: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let set = ops::set_attr(mode, uid, gid, size, atime, mtime, ctime);
        let res = self.ops.setattr(&ctx(req), i.0, &set, h.map(|h| h.0));
        reply_attr(reply, self.ops.attr_ttl, res);
    }

    fn readlink(&self, req: &Request, i: INodeNo, reply: ReplyData) {
        match self.ops.readlink(&ctx(req), i.0) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let res = self.ops.mknod(&ctx(req), parent.0, name, mode, umask, rdev);
        self.reply_entry(reply, res);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let res = self.ops.mkdir(&ctx(req), parent.0, name, mode, umask);
        self.reply_entry(reply, res);
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, self.ops.unlink(&ctx(req), parent.0, name));
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, self.ops.rmdir(&ctx(req), parent.0, name));
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let res = self
            .ops
            .symlink(&ctx(req), parent.0, link_name, target.as_os_str());
        self.reply_entry(reply, res);
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        let res = self.ops.rename(
            &ctx(req),
            parent.0,
            name,
            newparent.0,
            newname,
            flags.bits(),
        );
        reply_empty(reply, res);
    }

    fn link(
        &self,
        req: &Request,
        i: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let res = self.ops.link(&ctx(req), i.0, newparent.0, newname);
        self.reply_entry(reply, res);
    }

    fn open(&self, req: &Request, i: INodeNo, flags: fuser::OpenFlags, reply: ReplyOpen) {
        reply_open(reply, self.ops.open(&ctx(req), i.0, flags.0));
    }

    fn read(
        &self,
        req: &Request,
        i: INodeNo,
        h: FileHandle,
        offset: u64,
        size: u32,
        _flags: fuser::OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let size = size as usize;
        READ_BUF.with_borrow_mut(|buf| {
            if buf.len() < size {
                buf.resize(size, 0);
            }
            let buf = &mut buf[..size];
            match self.ops.read(&ctx(req), i.0, h.0, offset, buf) {
                Ok(n) => reply.data(&buf[..n]),
                Err(e) => reply.error(e),
            }
        });
    }

    fn write(
        &self,
        req: &Request,
        i: INodeNo,
        h: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: fuser::OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.ops.write(&ctx(req), i.0, h.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        req: &Request,
        i: INodeNo,
        h: FileHandle,
        lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.ops.flush(&ctx(req), i.0, h.0, lock_owner.0));
    }

    fn release(
        &self,
        req: &Request,
        i: INodeNo,
        h: FileHandle,
        _flags: fuser::OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.ops.release(&ctx(req), i.0, h.0));
    }

    fn fsync(&self, req: &Request, i: INodeNo, h: FileHandle, datasync: bool, reply: ReplyEmpty) {
        reply_empty(reply, self.ops.fsync(&ctx(req), i.0, h.0, datasync));
    }

    fn opendir(&self, req: &Request, i: INodeNo, flags: fuser::OpenFlags, reply: ReplyOpen) {
        reply_open(reply, self.ops.opendir(&ctx(req), i.0, flags.0));
    }

    fn readdir(
        &self,
        req: &Request,
        i: INodeNo,
        h: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        match self.ops.readdir(&ctx(req), i.0, h.0, offset, &mut reply) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn readdirplus(
        &self,
        req: &Request,
        i: INodeNo,
        h: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        match self
            .ops
            .readdirplus(&ctx(req), i.0, h.0, offset, &mut reply)
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn releasedir(
        &self,
        req: &Request,
        i: INodeNo,
        h: FileHandle,
        _flags: fuser::OpenFlags,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.ops.releasedir(&ctx(req), i.0, h.0));
    }

    fn fsyncdir(
        &self,
        req: &Request,
        i: INodeNo,
        h: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.ops.fsyncdir(&ctx(req), i.0, h.0, datasync));
    }

    fn statfs(&self, req: &Request, i: INodeNo, reply: ReplyStatfs) {
        match self.ops.statfs(&ctx(req), i.0) {
            Ok(s) => {
                let (blocks, bfree, bavail, files, ffree, bsize, namelen, frsize) =
                    convert::statfs_args(&s);
                reply.statfs(blocks, bfree, bavail, files, ffree, bsize, namelen, frsize);
            }
            Err(e) => reply.error(e),
        }
    }

    fn setxattr(
        &self,
        req: &Request,
        i: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        position: u32,
        reply: ReplyEmpty,
    ) {
        let res = self
            .ops
            .setxattr(&ctx(req), i.0, name, value, flags, position);
        reply_empty(reply, res);
    }

    fn getxattr(&self, req: &Request, i: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        reply_xattr(reply, self.ops.getxattr(&ctx(req), i.0, name, size));
    }

    fn listxattr(&self, req: &Request, i: INodeNo, size: u32, reply: ReplyXattr) {
        reply_xattr(reply, self.ops.listxattr(&ctx(req), i.0, size));
    }

    fn removexattr(&self, req: &Request, i: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, self.ops.removexattr(&ctx(req), i.0, name));
    }

    fn access(&self, req: &Request, i: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        reply_empty(reply, self.ops.access(&ctx(req), i.0, mask.bits()));
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let ttl = self.ops.single_ttl();
        match self
            .ops
            .create(&ctx(req), parent.0, name, mode, umask, flags)
        {
            Ok((
                attr,
                OpenOut {
                    fh,
                    flags,
                    backing_id: Some(id),
                },
            )) => {
                // SAFETY: as in `reply_open`.
                let wrapped = unsafe { reply.wrap_backing(id) };
                reply.created_passthrough(&ttl, &attr, GENERATION, FileHandle(fh), flags, &wrapped);
                wrapped.into_raw();
            }
            Ok((attr, o)) => reply.created(&ttl, &attr, GENERATION, FileHandle(o.fh), o.flags),
            Err(e) => reply.error(e),
        }
    }

    fn fallocate(
        &self,
        req: &Request,
        i: INodeNo,
        h: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let res = self
            .ops
            .fallocate(&ctx(req), i.0, h.0, offset, length, mode);
        reply_empty(reply, res);
    }

    fn lseek(
        &self,
        req: &Request,
        i: INodeNo,
        h: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        match self.ops.lseek(&ctx(req), i.0, h.0, offset, whence) {
            Ok(found) => reply.offset(found),
            Err(e) => reply.error(e),
        }
    }

    fn copy_file_range(
        &self,
        req: &Request,
        ino_in: INodeNo,
        fh_in: FileHandle,
        offset_in: u64,
        ino_out: INodeNo,
        fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        let res = self.ops.copy_file_range(
            &ctx(req),
            ino_in.0,
            fh_in.0,
            offset_in,
            ino_out.0,
            fh_out.0,
            offset_out,
            len,
            flags.bits(),
        );
        match res {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }

    /// No ioctl is served: ENOSYS, which the kernel turns into ENOTTY, what a filesystem
    /// without ioctls answers (`lsattr` reports it as "Operation not supported"). Said
    /// here, not logged: the kernel does not remember the answer and asks again for every
    /// call, and fuser's default logged a warning line for each (1,197 in one 15 s
    /// `stress-ng --file-ioctl` run). The io_uring transport answers the same (`uring.rs`).
    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        reply.error(fuser::Errno::ENOSYS);
    }

    /// Not served: ENOSYS, after which the kernel reports every file of the mount as
    /// always ready (right for files whose reads and writes never wait for an event) and
    /// stops asking. fuser's default said so in a warning line (`stress-ng --io-uring`
    /// polls its files).
    fn poll(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _ph: PollNotifier,
        _events: PollEvents,
        _flags: PollFlags,
        reply: ReplyPoll,
    ) {
        reply.error(fuser::Errno::ENOSYS);
    }
}
