//! FUSE passthrough, mounted: with the loopback filesystem on a temporary source
//! directory, file data of open files must bypass the daemon when passthrough is on, and
//! go through it when off. A thin wrapper counts the `read`/`write` calls that reach the
//! filesystem, which is the proof.
//!
//! Passthrough needs Linux 6.9+ with CONFIG_FUSE_PASSTHROUGH and CAP_SYS_ADMIN; where
//! that is missing the "on" tests check the refusal instead and the rest still run.

#![cfg(target_os = "linux")]

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tempfile::TempDir;
use vmount_backend_fuse::{FuseError, FuseMount, FuseOptions, Passthrough};
use vmount_core::{
    AccessMask, Attr, Capabilities, Ctx, DirSink, FallocateFlags, Fh, FileType, Ino, OpenFlags,
    Opened, RenameFlags, SetAttr, StatFs, Vfs, VfsResult, Whence, XattrFlags,
};

/// Forwards every call to `inner`, counting the data calls and passthrough descriptors.
struct Counted {
    inner: Arc<dyn Vfs>,
    reads: AtomicU64,
    writes: AtomicU64,
    fds: AtomicU64,
    flushes: AtomicU64,
    /// Hand out handles that want `flush` on every close, whatever `inner` says.
    want_flush: std::sync::atomic::AtomicBool,
}

impl Counted {
    fn new(inner: Arc<dyn Vfs>) -> Arc<Counted> {
        Arc::new(Counted {
            inner,
            reads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            fds: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            want_flush: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn data_calls(&self) -> (u64, u64) {
        (
            self.reads.load(Ordering::SeqCst),
            self.writes.load(Ordering::SeqCst),
        )
    }
}

impl Vfs for Counted {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn lookup(&self, ctx: &Ctx, parent: Ino, name: &OsStr) -> VfsResult<Attr> {
        self.inner.lookup(ctx, parent, name)
    }
    fn forget(&self, ino: Ino, nlookup: u64) {
        self.inner.forget(ino, nlookup)
    }
    fn getattr(&self, ctx: &Ctx, ino: Ino, fh: Option<Fh>) -> VfsResult<Attr> {
        self.inner.getattr(ctx, ino, fh)
    }
    fn setattr(&self, ctx: &Ctx, ino: Ino, set: &SetAttr, fh: Option<Fh>) -> VfsResult<Attr> {
        self.inner.setattr(ctx, ino, set, fh)
    }
    fn readlink(&self, ctx: &Ctx, ino: Ino) -> VfsResult<Vec<u8>> {
        self.inner.readlink(ctx, ino)
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
        self.inner.mknod(ctx, parent, name, kind, mode, rdev)
    }
    fn mkdir(&self, ctx: &Ctx, parent: Ino, name: &OsStr, mode: u32) -> VfsResult<Attr> {
        self.inner.mkdir(ctx, parent, name, mode)
    }
    fn unlink(&self, ctx: &Ctx, parent: Ino, name: &OsStr) -> VfsResult<()> {
        self.inner.unlink(ctx, parent, name)
    }
    fn rmdir(&self, ctx: &Ctx, parent: Ino, name: &OsStr) -> VfsResult<()> {
        self.inner.rmdir(ctx, parent, name)
    }
    fn symlink(&self, ctx: &Ctx, parent: Ino, name: &OsStr, target: &OsStr) -> VfsResult<Attr> {
        self.inner.symlink(ctx, parent, name, target)
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
        self.inner
            .rename(ctx, parent, name, new_parent, new_name, flags)
    }
    fn link(&self, ctx: &Ctx, ino: Ino, new_parent: Ino, new_name: &OsStr) -> VfsResult<Attr> {
        self.inner.link(ctx, ino, new_parent, new_name)
    }
    fn open(&self, ctx: &Ctx, ino: Ino, flags: OpenFlags) -> VfsResult<Opened> {
        let mut o = self.inner.open(ctx, ino, flags)?;
        o.no_flush &= !self.want_flush.load(Ordering::SeqCst);
        Ok(o)
    }
    fn create(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        flags: OpenFlags,
    ) -> VfsResult<(Attr, Opened)> {
        let (a, mut o) = self.inner.create(ctx, parent, name, mode, flags)?;
        o.no_flush &= !self.want_flush.load(Ordering::SeqCst);
        Ok((a, o))
    }
    fn read(
        &self,
        ctx: &Ctx,
        ino: Ino,
        fh: Option<Fh>,
        offset: u64,
        buf: &mut [u8],
    ) -> VfsResult<usize> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.read(ctx, ino, fh, offset, buf)
    }
    fn write(
        &self,
        ctx: &Ctx,
        ino: Ino,
        fh: Option<Fh>,
        offset: u64,
        data: &[u8],
    ) -> VfsResult<u32> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.write(ctx, ino, fh, offset, data)
    }
    fn flush(&self, ctx: &Ctx, ino: Ino, fh: Fh, lock_owner: u64) -> VfsResult<()> {
        self.flushes.fetch_add(1, Ordering::SeqCst);
        self.inner.flush(ctx, ino, fh, lock_owner)
    }
    fn release(&self, ctx: &Ctx, ino: Ino, fh: Fh) -> VfsResult<()> {
        self.inner.release(ctx, ino, fh)
    }
    fn fsync(&self, ctx: &Ctx, ino: Ino, fh: Option<Fh>, datasync: bool) -> VfsResult<()> {
        self.inner.fsync(ctx, ino, fh, datasync)
    }
    fn opendir(&self, ctx: &Ctx, ino: Ino, flags: OpenFlags) -> VfsResult<Fh> {
        self.inner.opendir(ctx, ino, flags)
    }
    fn readdir(
        &self,
        ctx: &Ctx,
        ino: Ino,
        fh: Option<Fh>,
        after: u64,
        sink: &mut dyn DirSink,
    ) -> VfsResult<()> {
        self.inner.readdir(ctx, ino, fh, after, sink)
    }
    fn releasedir(&self, ctx: &Ctx, ino: Ino, fh: Fh) -> VfsResult<()> {
        self.inner.releasedir(ctx, ino, fh)
    }
    fn fsyncdir(&self, ctx: &Ctx, ino: Ino, fh: Option<Fh>, datasync: bool) -> VfsResult<()> {
        self.inner.fsyncdir(ctx, ino, fh, datasync)
    }
    fn statfs(&self, ctx: &Ctx, ino: Ino) -> VfsResult<StatFs> {
        self.inner.statfs(ctx, ino)
    }
    fn access(&self, ctx: &Ctx, ino: Ino, mask: AccessMask) -> VfsResult<()> {
        self.inner.access(ctx, ino, mask)
    }
    fn setxattr(
        &self,
        ctx: &Ctx,
        ino: Ino,
        name: &OsStr,
        value: &[u8],
        flags: XattrFlags,
    ) -> VfsResult<()> {
        self.inner.setxattr(ctx, ino, name, value, flags)
    }
    fn getxattr(&self, ctx: &Ctx, ino: Ino, name: &OsStr) -> VfsResult<Vec<u8>> {
        self.inner.getxattr(ctx, ino, name)
    }
    fn listxattr(&self, ctx: &Ctx, ino: Ino) -> VfsResult<Vec<OsString>> {
        self.inner.listxattr(ctx, ino)
    }
    fn removexattr(&self, ctx: &Ctx, ino: Ino, name: &OsStr) -> VfsResult<()> {
        self.inner.removexattr(ctx, ino, name)
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
        self.inner.fallocate(ctx, ino, fh, offset, len, mode)
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
        self.inner.copy_file_range(
            ctx, ino_in, fh_in, offset_in, ino_out, fh_out, offset_out, len,
        )
    }
    fn passthrough_fd(&self, ino: Ino, fh: Fh) -> Option<OwnedFd> {
        let fd = self.inner.passthrough_fd(ino, fh);
        if fd.is_some() {
            self.fds.fetch_add(1, Ordering::SeqCst);
        }
        fd
    }
    fn lseek(
        &self,
        ctx: &Ctx,
        ino: Ino,
        fh: Option<Fh>,
        offset: u64,
        whence: Whence,
    ) -> VfsResult<u64> {
        self.inner.lseek(ctx, ino, fh, offset, whence)
    }
}

/// A loopback mount of a temporary source directory; the mount is dropped (unmounted)
/// before the directories are removed.
struct Fixture {
    mount: FuseMount,
    fs: Arc<Counted>,
    src: PathBuf,
    _dir: TempDir,
}

fn mount(opts: &FuseOptions) -> Result<Fixture, FuseError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    let mp = dir.path().join("mnt");
    fs::create_dir(&src).expect("mkdir src");
    fs::create_dir(&mp).expect("mkdir mnt");
    let fs = Counted::new(loopback(&src));
    let mount = vmount_backend_fuse::mount(fs.clone(), &mp, opts)?;
    Ok(Fixture {
        mount,
        fs,
        src,
        _dir: dir,
    })
}

fn loopback(src: &Path) -> Arc<dyn Vfs> {
    use vmount_core::loopback::{Loopback, LoopbackOptions};
    Arc::new(
        Loopback::new(LoopbackOptions {
            source: src.to_owned(),
            read_only: false,
        })
        .expect("loopback on a temp dir"),
    )
}

fn opts(passthrough: Passthrough) -> FuseOptions {
    FuseOptions {
        passthrough,
        ..Default::default()
    }
}

/// Whether this machine can do passthrough: `on` mounts, or is refused for a reason we
/// accept (old kernel, no privilege). Anything else fails the test.
fn passthrough_mount() -> Option<Fixture> {
    match mount(&opts(Passthrough::On)) {
        Ok(fx) => Some(fx),
        Err(e @ (FuseError::PassthroughUnsupported(_) | FuseError::PassthroughNotPermitted(_))) => {
            let msg = e.to_string();
            assert!(msg.contains("passthrough = \"auto\" or \"off\""), "{msg}");
            eprintln!("skipping: {msg}");
            None
        }
        Err(e) => panic!("mount with passthrough = on: {e}"),
    }
}

const SIZE: usize = 16 << 20;

fn pattern(seed: u32) -> Vec<u8> {
    (0..SIZE as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8)
        .collect()
}

/// Writes a 16 MiB file through the mount (create), rewrites part of it through a second
/// open, reads it back through the mount, and checks the host file.
fn write_and_read_16_mib(fx: &Fixture) {
    let p = fx.mount.mountpoint().join("big.bin");
    let data = pattern(7);
    let mut f = fs::File::create(&p).unwrap();
    for chunk in data.chunks(1 << 20) {
        f.write_all(chunk).unwrap();
    }
    f.sync_all().unwrap();
    drop(f);
    // A second open (not create) writing in the middle, while a reader is open too.
    let reader = fs::File::open(&p).unwrap();
    let mut w = fs::OpenOptions::new().write(true).open(&p).unwrap();
    w.seek(SeekFrom::Start(5 << 20)).unwrap();
    w.write_all(&[0xAB; 4096]).unwrap();
    drop(w);
    drop(reader);
    let mut want = data;
    want[5 << 20..(5 << 20) + 4096].fill(0xAB);

    let mut back = Vec::with_capacity(SIZE);
    fs::File::open(&p).unwrap().read_to_end(&mut back).unwrap();
    assert!(back == want, "read through the mount differs");
    let host = fs::read(fx.src.join("big.bin")).unwrap();
    assert!(host == want, "host file differs");
}

#[test]
fn passthrough_on_keeps_file_data_out_of_the_daemon() {
    let Some(fx) = passthrough_mount() else {
        return;
    };
    write_and_read_16_mib(&fx);
    assert_eq!(
        fx.fs.data_calls(),
        (0, 0),
        "with passthrough no read or write may reach the daemon"
    );
    assert!(fx.fs.fds.load(Ordering::SeqCst) >= 1);
    // Changes made directly in the source are read through the backing file too.
    fs::write(fx.src.join("host.txt"), b"from the host").unwrap();
    let through = fs::read(fx.mount.mountpoint().join("host.txt")).unwrap();
    assert_eq!(through, b"from the host");
    assert_eq!(fx.fs.data_calls(), (0, 0));
}

#[test]
fn passthrough_off_serves_data_through_the_daemon() {
    let fx = mount(&opts(Passthrough::Off)).expect("mount");
    write_and_read_16_mib(&fx);
    let (reads, writes) = fx.fs.data_calls();
    assert!(writes >= 16, "16 MiB in at most 1 MiB writes: {writes}");
    assert!(reads >= 1, "reads must reach the daemon: {reads}");
    assert_eq!(
        fx.fs.fds.load(Ordering::SeqCst),
        0,
        "no descriptor asked for"
    );
}

#[test]
fn passthrough_auto_uses_it_where_available() {
    let available = passthrough_mount().is_some();
    let fx = mount(&opts(Passthrough::Auto)).expect("mount");
    write_and_read_16_mib(&fx);
    let (reads, writes) = fx.fs.data_calls();
    if available {
        assert_eq!((reads, writes), (0, 0));
    } else {
        assert!(reads > 0 && writes > 0);
    }
}

#[test]
fn auto_with_writeback_cache_still_reads_and_writes_correctly() {
    // Passthrough wins where available; either way the data must be right.
    let available = passthrough_mount().is_some();
    let o = FuseOptions {
        writeback_cache: true,
        ..opts(Passthrough::Auto)
    };
    let fx = mount(&o).expect("mount");
    write_and_read_16_mib(&fx);
    if available {
        assert_eq!(fx.fs.data_calls(), (0, 0));
    }
}

#[test]
fn on_with_writeback_cache_is_refused_before_mounting() {
    let o = FuseOptions {
        writeback_cache: true,
        ..opts(Passthrough::On)
    };
    let e = mount(&o).err().expect("must be refused");
    assert!(matches!(e, FuseError::PassthroughWithWriteback(_)), "{e}");
}

#[test]
fn open_handles_share_one_backing_file_and_release_it() {
    let Some(fx) = passthrough_mount() else {
        return;
    };
    let p = fx.mount.mountpoint().join("f");
    fs::write(&p, b"0123456789").unwrap();
    // Many concurrent opens of one inode must all succeed (the kernel refuses a second,
    // different backing file with EBUSY), in every access mode.
    let files: Vec<fs::File> = (0..8)
        .map(|i| {
            let mut o = fs::OpenOptions::new();
            match i % 3 {
                0 => o.read(true),
                1 => o.write(true),
                _ => o.read(true).write(true),
            };
            o.open(&p).unwrap()
        })
        .collect();
    drop(files);
    // After all handles are gone, a new open registers afresh and still works.
    fs::OpenOptions::new()
        .append(true)
        .open(&p)
        .unwrap()
        .write_all(b"!")
        .unwrap();
    assert_eq!(fs::read(&p).unwrap(), b"0123456789!");
    assert_eq!(fs::read(fx.src.join("f")).unwrap(), b"0123456789!");
    assert_eq!(fx.fs.data_calls(), (0, 0));
}

/// A handle whose `flush` does nothing (`Opened::no_flush`, FOPEN_NOFLUSH) costs no FLUSH
/// round trip on close, with and without passthrough; one that wants it gets one per
/// close. Data written before each close is there either way.
#[test]
fn no_flush_handles_are_closed_without_a_flush() {
    for passthrough in [Passthrough::Off, Passthrough::Auto] {
        let fx = mount(&opts(passthrough)).expect("mount");
        let p = fx.mount.mountpoint().join("f");
        for want_flush in [false, true] {
            fx.fs.want_flush.store(want_flush, Ordering::SeqCst);
            let before = fx.fs.flushes.load(Ordering::SeqCst);
            for i in 0..20u8 {
                let mut f = fs::OpenOptions::new()
                    .create(true)
                    .write(true)
                    .truncate(true)
                    .open(&p)
                    .unwrap();
                f.write_all(&[i; 100]).unwrap();
                drop(f);
                assert_eq!(fs::read(fx.src.join("f")).unwrap(), [i; 100]);
            }
            let flushes = fx.fs.flushes.load(Ordering::SeqCst) - before;
            if want_flush {
                assert!(
                    flushes >= 20,
                    "{passthrough:?}: {flushes} flushes for 20 closes"
                );
            } else {
                assert_eq!(
                    flushes, 0,
                    "{passthrough:?}: FLUSH sent for no_flush handles"
                );
            }
        }
    }
}
