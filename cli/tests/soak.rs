//! Soak: 16 threads of mixed operations against one daemon, checked against models.
//!
//! Targets: memfs and loopback mounted through FUSE (driven with std::fs and libc), and
//! memfs and loopback served over NFS (serve only, driven by raw NFSv3 RPC, one TCP
//! connection per thread). Each thread owns a directory `t<N>` and keeps a model of it
//! (names, hard links, contents, modes, mtimes, xattrs); every read, listing and `stat`
//! is compared with the model as it happens, and the whole tree once more at the end.
//! A shared directory holds tokens that all threads rename back and forth (`a<k>` <->
//! `b<k>`); at the end each token exists under exactly one of its names, intact.
//! NFSv3 has no extended attributes, so the NFS targets skip the xattr operations.
//!
//! Duration: `VMOUNT_SOAK_SECS` seconds per target (e.g. 600 for a real soak); by
//! default 20 s, so the four targets take about 1.5 minutes with `--test-threads=2`.
//! A watchdog fails the test, and SIGKILLs the daemon so that blocked threads return,
//! when any single operation takes longer than 30 s.
//!
//! Memory: the daemon's VmRSS after everything is deleted must be within 10% plus
//! 8 MiB of its VmRSS after mounting, a warm-up round of the same workload, and deleting
//! that round's files. The slack absorbs allocator arenas that stay mapped after the
//! first use by each worker thread and kernel-driven batching of FUSE FORGETs; a leak
//! proportional to the work done (per file, per operation) exceeds it within a soak.
#![cfg(target_os = "linux")]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{FileExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::rpc::{Fh, Nfs};
use common::{Extra, Kind, Mounted, NfsServed, pattern, signal, vm_rss_kib};

const THREADS: usize = 16;
/// Tokens in the shared directory.
const TOKENS: usize = 32;
/// One operation taking longer than this is a hang.
const OP_LIMIT: Duration = Duration::from_secs(30);
/// Names a thread keeps at most (it unlinks more often above this).
const MAX_NAMES: usize = 48;
/// Memory tolerance after deleting everything: 10% plus this.
const RSS_SLACK_KIB: u64 = 8 << 10;

fn soak_duration() -> Duration {
    let secs = std::env::var("VMOUNT_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(20);
    Duration::from_secs(secs.max(1))
}

type Res<T> = Result<T, i32>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    size: u64,
    mode: u32,
    nlink: u32,
    mtime: i64,
}

/// The operations, by path relative to the root (`t3/n17`, `shared/a5`).
trait Target: Send {
    fn create(&mut self, rel: &str, data: &[u8]) -> Res<()>;
    fn write_at(&mut self, rel: &str, off: u64, data: &[u8]) -> Res<()>;
    fn read(&mut self, rel: &str) -> Res<Vec<u8>>;
    fn rename(&mut self, from: &str, to: &str) -> Res<()>;
    fn link(&mut self, from: &str, to: &str) -> Res<()>;
    fn unlink(&mut self, rel: &str) -> Res<()>;
    fn mkdir(&mut self, rel: &str) -> Res<()>;
    fn rmdir(&mut self, rel: &str) -> Res<()>;
    fn list(&mut self, rel: &str) -> Res<Vec<String>>;
    fn stat(&mut self, rel: &str) -> Res<Stat>;
    fn chmod(&mut self, rel: &str, mode: u32) -> Res<()>;
    fn truncate(&mut self, rel: &str, size: u64) -> Res<()>;
    fn set_mtime(&mut self, rel: &str, secs: i64) -> Res<()>;
    /// Whether the xattr operations are available.
    fn xattrs(&self) -> bool;
    fn setxattr(&mut self, rel: &str, name: &str, value: &[u8]) -> Res<()>;
    fn getxattr(&mut self, rel: &str, name: &str) -> Res<Vec<u8>>;
    fn removexattr(&mut self, rel: &str, name: &str) -> Res<()>;
}

// ---------------------------------------------------------------------------------------
// Through a FUSE mount.

struct Posix {
    root: PathBuf,
}

fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

fn io<T>(r: std::io::Result<T>) -> Res<T> {
    r.map_err(|e| errno(&e))
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("no NUL in test paths")
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// Closes `f`, reporting close's result (a FUSE FLUSH can fail).
fn close(f: std::fs::File) -> Res<()> {
    use std::os::fd::IntoRawFd as _;
    let fd = f.into_raw_fd();
    // SAFETY: `fd` was just taken from a File: open, and owned by nobody else.
    if unsafe { libc::close(fd) } == 0 {
        Ok(())
    } else {
        Err(last_errno())
    }
}

impl Posix {
    fn p(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
}

impl Target for Posix {
    fn create(&mut self, rel: &str, data: &[u8]) -> Res<()> {
        let mut f = io(std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode_0644()
            .open(self.p(rel)))?;
        io(f.write_all(data))?;
        close(f)
    }
    fn write_at(&mut self, rel: &str, off: u64, data: &[u8]) -> Res<()> {
        let f = io(std::fs::OpenOptions::new().write(true).open(self.p(rel)))?;
        io(f.write_all_at(data, off))?;
        close(f)
    }
    fn read(&mut self, rel: &str) -> Res<Vec<u8>> {
        io(std::fs::read(self.p(rel)))
    }
    fn rename(&mut self, from: &str, to: &str) -> Res<()> {
        io(std::fs::rename(self.p(from), self.p(to)))
    }
    fn link(&mut self, from: &str, to: &str) -> Res<()> {
        io(std::fs::hard_link(self.p(from), self.p(to)))
    }
    fn unlink(&mut self, rel: &str) -> Res<()> {
        io(std::fs::remove_file(self.p(rel)))
    }
    fn mkdir(&mut self, rel: &str) -> Res<()> {
        io(std::fs::create_dir(self.p(rel)))
    }
    fn rmdir(&mut self, rel: &str) -> Res<()> {
        io(std::fs::remove_dir(self.p(rel)))
    }
    fn list(&mut self, rel: &str) -> Res<Vec<String>> {
        let mut out = Vec::new();
        for e in io(std::fs::read_dir(self.p(rel)))? {
            let e = io(e)?;
            out.push(e.file_name().to_string_lossy().into_owned());
        }
        Ok(out)
    }
    fn stat(&mut self, rel: &str) -> Res<Stat> {
        let md = io(std::fs::symlink_metadata(self.p(rel)))?;
        Ok(Stat {
            size: md.len(),
            mode: md.mode() & 0o7777,
            nlink: u32::try_from(md.nlink()).unwrap_or(u32::MAX),
            mtime: md.mtime(),
        })
    }
    fn chmod(&mut self, rel: &str, mode: u32) -> Res<()> {
        io(std::fs::set_permissions(
            self.p(rel),
            std::fs::Permissions::from_mode(mode),
        ))
    }
    fn truncate(&mut self, rel: &str, size: u64) -> Res<()> {
        let f = io(std::fs::OpenOptions::new().write(true).open(self.p(rel)))?;
        io(f.set_len(size))?;
        close(f)
    }
    fn set_mtime(&mut self, rel: &str, secs: i64) -> Res<()> {
        let p = cpath(&self.p(rel));
        let times = [
            libc::timespec {
                tv_sec: 0,
                tv_nsec: libc::UTIME_OMIT,
            },
            libc::timespec {
                tv_sec: secs,
                tv_nsec: 0,
            },
        ];
        // SAFETY: `p` is NUL-terminated and `times` holds the two timespecs utimensat reads.
        let rc = unsafe { libc::utimensat(libc::AT_FDCWD, p.as_ptr(), times.as_ptr(), 0) };
        if rc == 0 { Ok(()) } else { Err(last_errno()) }
    }
    fn xattrs(&self) -> bool {
        true
    }
    fn setxattr(&mut self, rel: &str, name: &str, value: &[u8]) -> Res<()> {
        let (p, n) = (cpath(&self.p(rel)), CString::new(name).unwrap());
        // SAFETY: both strings are NUL-terminated; `value` is valid for its length.
        let rc = unsafe {
            libc::setxattr(
                p.as_ptr(),
                n.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        if rc == 0 { Ok(()) } else { Err(last_errno()) }
    }
    fn getxattr(&mut self, rel: &str, name: &str) -> Res<Vec<u8>> {
        let (p, n) = (cpath(&self.p(rel)), CString::new(name).unwrap());
        let mut buf = vec![0u8; 4096];
        // SAFETY: both strings are NUL-terminated; `buf` is writable for its length.
        let rc =
            unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        match usize::try_from(rc) {
            Ok(len) => {
                buf.truncate(len);
                Ok(buf)
            }
            Err(_) => Err(last_errno()),
        }
    }
    fn removexattr(&mut self, rel: &str, name: &str) -> Res<()> {
        let (p, n) = (cpath(&self.p(rel)), CString::new(name).unwrap());
        // SAFETY: both strings are NUL-terminated.
        let rc = unsafe { libc::removexattr(p.as_ptr(), n.as_ptr()) };
        if rc == 0 { Ok(()) } else { Err(last_errno()) }
    }
}

/// `OpenOptions::mode(0o644)` without importing the trait at every call.
trait Mode0644 {
    fn mode_0644(&mut self) -> &mut Self;
}

impl Mode0644 for std::fs::OpenOptions {
    fn mode_0644(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt as _;
        self.mode(0o644)
    }
}

// ---------------------------------------------------------------------------------------
// Over NFS, by raw RPC.

struct NfsTarget {
    c: Nfs,
    root: Fh,
}

/// NFS status to errno: the same numbers except these.
fn nfs_errno(s: u32) -> i32 {
    match s {
        66 => libc::ENOTEMPTY,
        63 => libc::ENAMETOOLONG,
        70 => libc::ESTALE,
        10004 => libc::ENOTSUP,
        s => i32::try_from(s).unwrap_or(libc::EIO),
    }
}

impl NfsTarget {
    fn connect(port: u16) -> NfsTarget {
        let mut c = Nfs::connect(port).expect("connect to the NFS server");
        let root = c.mount("/vmount").expect("MNT /vmount");
        NfsTarget { c, root }
    }

    /// The handle of `rel`'s parent and `rel`'s last name.
    fn parent<'a>(&mut self, rel: &'a str) -> Res<(Fh, &'a str)> {
        match rel.rsplit_once('/') {
            Some((dir, name)) => Ok((self.resolve(dir)?, name)),
            None => Ok((self.root.clone(), rel)),
        }
    }

    fn resolve(&mut self, rel: &str) -> Res<Fh> {
        let mut fh = self.root.clone();
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            fh = self.c.lookup(&fh, part).map_err(nfs_errno)?.0;
        }
        Ok(fh)
    }
}

impl Target for NfsTarget {
    fn create(&mut self, rel: &str, data: &[u8]) -> Res<()> {
        let (dir, name) = self.parent(rel)?;
        let fh = self.c.create(&dir, name, 0o644, true).map_err(nfs_errno)?;
        self.c.write(&fh, 0, data).map_err(nfs_errno)
    }
    fn write_at(&mut self, rel: &str, off: u64, data: &[u8]) -> Res<()> {
        let fh = self.resolve(rel)?;
        self.c.write(&fh, off, data).map_err(nfs_errno)
    }
    fn read(&mut self, rel: &str) -> Res<Vec<u8>> {
        let fh = self.resolve(rel)?;
        self.c.read_all(&fh).map_err(nfs_errno)
    }
    fn rename(&mut self, from: &str, to: &str) -> Res<()> {
        let (fd, fname) = self.parent(from)?;
        let (td, tname) = self.parent(to)?;
        self.c.rename(&fd, fname, &td, tname).map_err(nfs_errno)
    }
    fn link(&mut self, from: &str, to: &str) -> Res<()> {
        let fh = self.resolve(from)?;
        let (td, tname) = self.parent(to)?;
        self.c.link(&fh, &td, tname).map_err(nfs_errno)
    }
    fn unlink(&mut self, rel: &str) -> Res<()> {
        let (dir, name) = self.parent(rel)?;
        self.c.remove(&dir, name).map_err(nfs_errno)
    }
    fn mkdir(&mut self, rel: &str) -> Res<()> {
        let (dir, name) = self.parent(rel)?;
        self.c
            .mkdir(&dir, name, 0o755)
            .map(|_| ())
            .map_err(nfs_errno)
    }
    fn rmdir(&mut self, rel: &str) -> Res<()> {
        let (dir, name) = self.parent(rel)?;
        self.c.rmdir(&dir, name).map_err(nfs_errno)
    }
    fn list(&mut self, rel: &str) -> Res<Vec<String>> {
        let fh = self.resolve(rel)?;
        self.c.readdir(&fh).map_err(nfs_errno)
    }
    fn stat(&mut self, rel: &str) -> Res<Stat> {
        let fh = self.resolve(rel)?;
        let a = self.c.getattr(&fh).map_err(nfs_errno)?;
        Ok(Stat {
            size: a.size,
            mode: a.mode & 0o7777,
            nlink: a.nlink,
            mtime: i64::from(a.mtime.0),
        })
    }
    fn chmod(&mut self, rel: &str, mode: u32) -> Res<()> {
        let fh = self.resolve(rel)?;
        self.c
            .setattr(&fh, Some(mode), None, None)
            .map_err(nfs_errno)
    }
    fn truncate(&mut self, rel: &str, size: u64) -> Res<()> {
        let fh = self.resolve(rel)?;
        self.c
            .setattr(&fh, None, Some(size), None)
            .map_err(nfs_errno)
    }
    fn set_mtime(&mut self, rel: &str, secs: i64) -> Res<()> {
        let fh = self.resolve(rel)?;
        let secs = u32::try_from(secs).map_err(|_| libc::EINVAL)?;
        self.c
            .setattr(&fh, None, None, Some((secs, 0)))
            .map_err(nfs_errno)
    }
    fn xattrs(&self) -> bool {
        false
    }
    fn setxattr(&mut self, _: &str, _: &str, _: &[u8]) -> Res<()> {
        Err(libc::ENOTSUP)
    }
    fn getxattr(&mut self, _: &str, _: &str) -> Res<Vec<u8>> {
        Err(libc::ENOTSUP)
    }
    fn removexattr(&mut self, _: &str, _: &str) -> Res<()> {
        Err(libc::ENOTSUP)
    }
}

// ---------------------------------------------------------------------------------------
// The workload and its model.

#[derive(Debug, Clone)]
struct FileModel {
    data: Vec<u8>,
    mode: u32,
    xattrs: BTreeMap<String, Vec<u8>>,
}

#[derive(Default)]
struct Model {
    names: BTreeMap<String, u64>,
    files: HashMap<u64, FileModel>,
    next_id: u64,
    next_name: u64,
}

impl Model {
    fn nlink(&self, id: u64) -> u32 {
        u32::try_from(self.names.values().filter(|v| **v == id).count()).unwrap_or(u32::MAX)
    }
    fn fresh_name(&mut self) -> String {
        self.next_name += 1;
        format!("n{}", self.next_name)
    }
    fn drop_name(&mut self, name: &str) {
        if let Some(id) = self.names.remove(name)
            && !self.names.values().any(|v| *v == id)
        {
            self.files.remove(&id);
        }
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<'a>(&mut self, names: &'a BTreeMap<String, u64>) -> Option<(&'a String, u64)> {
        if names.is_empty() {
            return None;
        }
        let i = usize::try_from(self.below(names.len() as u64)).unwrap_or(0);
        names.iter().nth(i).map(|(k, v)| (k, *v))
    }
}

/// What each thread is doing, for the watchdog: (started, operation).
type Slot = Mutex<Option<(Instant, &'static str)>>;

struct Shared {
    stop: AtomicBool,
    failure: Mutex<Option<String>>,
    slots: Vec<Slot>,
    ops: AtomicU64,
}

impl Shared {
    fn fail(&self, msg: String) {
        if let Ok(mut f) = self.failure.lock()
            && f.is_none()
        {
            *f = Some(msg);
        }
        self.stop.store(true, Ordering::SeqCst);
    }
}

macro_rules! check {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

/// Expects `r` to be Ok, else an error naming the operation.
fn ok<T>(what: &str, r: Res<T>) -> Result<T, String> {
    r.map_err(|e| {
        format!(
            "{what}: errno {e} ({})",
            std::io::Error::from_raw_os_error(e)
        )
    })
}

const OPS: &[&str] = &[
    "create",
    "write",
    "read",
    "rename",
    "link",
    "unlink",
    "readdir",
    "chmod",
    "truncate",
    "utimes",
    "setxattr",
    "getxattr",
    "removexattr",
    "shared-rename",
];

/// One thread's run until `shared.stop` or `deadline`; returns its operation count.
fn worker(
    t: usize,
    target: &mut dyn Target,
    shared: &Shared,
    deadline: Instant,
) -> Result<(u64, Model), String> {
    let dir = format!("t{t}");
    let mut m = Model::default();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d
        ^ ((t as u64 + 1) << 20)
        ^ deadline.elapsed().as_nanos() as u64
        | 1);
    let mut ops = 0u64;
    let xattrs = target.xattrs();
    while !shared.stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let mut op = usize::try_from(rng.below(OPS.len() as u64)).unwrap_or(0);
        if m.names.len() >= MAX_NAMES && op == 0 {
            op = 5;
        }
        if !xattrs && (10..=12).contains(&op) {
            op = 2;
        }
        if let Ok(mut s) = shared.slots[t].lock() {
            *s = Some((Instant::now(), OPS[op]));
        }
        let picked = rng.pick(&m.names).map(|(n, id)| (n.clone(), id));
        match (op, picked) {
            (0, _) | (1..=12, None) => {
                let name = m.fresh_name();
                let data = pattern(
                    rng.next(),
                    usize::try_from(rng.below(16 << 10)).unwrap_or(0),
                );
                ok(
                    &format!("create {dir}/{name}"),
                    target.create(&format!("{dir}/{name}"), &data),
                )?;
                m.next_id += 1;
                m.names.insert(name, m.next_id);
                m.files.insert(
                    m.next_id,
                    FileModel {
                        data,
                        mode: 0o644,
                        xattrs: BTreeMap::new(),
                    },
                );
            }
            (1, Some((name, id))) => {
                let f = m.files.get_mut(&id).expect("model");
                let off = rng.below(f.data.len() as u64 + 4096);
                let data = pattern(
                    rng.next(),
                    1 + usize::try_from(rng.below(8 << 10)).unwrap_or(0),
                );
                ok(
                    &format!("write {dir}/{name}"),
                    target.write_at(&format!("{dir}/{name}"), off, &data),
                )?;
                let off = usize::try_from(off).expect("small offset");
                if f.data.len() < off + data.len() {
                    f.data.resize(off + data.len(), 0);
                }
                f.data[off..off + data.len()].copy_from_slice(&data);
            }
            (2, Some((name, id))) => {
                let got = ok(
                    &format!("read {dir}/{name}"),
                    target.read(&format!("{dir}/{name}")),
                )?;
                let want = &m.files[&id].data;
                check!(
                    got == *want,
                    "{dir}/{name}: read {} bytes, the model has {} (contents differ)",
                    got.len(),
                    want.len()
                );
            }
            (3, Some((name, id))) => {
                // Onto a fresh name, or over another file (not a link of the same one).
                let to = match rng.pick(&m.names) {
                    Some((other, oid)) if oid != id && rng.below(3) == 0 => other.clone(),
                    _ => m.fresh_name(),
                };
                ok(
                    &format!("rename {dir}/{name} -> {to}"),
                    target.rename(&format!("{dir}/{name}"), &format!("{dir}/{to}")),
                )?;
                m.drop_name(&to);
                m.names.remove(&name);
                m.names.insert(to, id);
            }
            (4, Some((name, id))) => {
                let to = m.fresh_name();
                ok(
                    &format!("link {dir}/{name} -> {to}"),
                    target.link(&format!("{dir}/{name}"), &format!("{dir}/{to}")),
                )?;
                m.names.insert(to.clone(), id);
                let st = ok(
                    &format!("stat {dir}/{to}"),
                    target.stat(&format!("{dir}/{to}")),
                )?;
                check!(
                    st.nlink == m.nlink(id),
                    "{dir}/{to}: nlink {} after link, model {}",
                    st.nlink,
                    m.nlink(id)
                );
            }
            (5, Some((name, _))) => {
                ok(
                    &format!("unlink {dir}/{name}"),
                    target.unlink(&format!("{dir}/{name}")),
                )?;
                m.drop_name(&name);
            }
            (6, Some(_)) => {
                let mut got = ok(&format!("readdir {dir}"), target.list(&dir))?;
                got.sort();
                let want: Vec<&String> = m.names.keys().collect();
                check!(
                    got.iter().collect::<Vec<_>>() == want,
                    "{dir} lists {got:?}, the model has {want:?}"
                );
            }
            (7, Some((name, id))) => {
                let mode = 0o600 | (rng.next() as u32 & 0o077);
                ok(
                    &format!("chmod {dir}/{name}"),
                    target.chmod(&format!("{dir}/{name}"), mode),
                )?;
                m.files.get_mut(&id).expect("model").mode = mode;
                let st = ok(
                    &format!("stat {dir}/{name}"),
                    target.stat(&format!("{dir}/{name}")),
                )?;
                check!(
                    st.mode == mode,
                    "{dir}/{name}: mode {:o} after chmod {mode:o}",
                    st.mode
                );
            }
            (8, Some((name, id))) => {
                let size = rng.below(20 << 10);
                ok(
                    &format!("truncate {dir}/{name}"),
                    target.truncate(&format!("{dir}/{name}"), size),
                )?;
                m.files
                    .get_mut(&id)
                    .expect("model")
                    .data
                    .resize(usize::try_from(size).unwrap_or(0), 0);
                let st = ok(
                    &format!("stat {dir}/{name}"),
                    target.stat(&format!("{dir}/{name}")),
                )?;
                check!(
                    st.size == size,
                    "{dir}/{name}: size {} after truncate to {size}",
                    st.size
                );
            }
            (9, Some((name, _))) => {
                let secs = 1_000_000_000 + i64::try_from(rng.below(1_000_000_000)).unwrap_or(0);
                ok(
                    &format!("utimes {dir}/{name}"),
                    target.set_mtime(&format!("{dir}/{name}"), secs),
                )?;
                let st = ok(
                    &format!("stat {dir}/{name}"),
                    target.stat(&format!("{dir}/{name}")),
                )?;
                check!(
                    st.mtime == secs,
                    "{dir}/{name}: mtime {} after utimes {secs}",
                    st.mtime
                );
            }
            (10, Some((name, id))) => {
                let key = format!("user.k{}", rng.below(4));
                let value = pattern(rng.next(), 1 + usize::try_from(rng.below(200)).unwrap_or(0));
                ok(
                    &format!("setxattr {dir}/{name} {key}"),
                    target.setxattr(&format!("{dir}/{name}"), &key, &value),
                )?;
                m.files
                    .get_mut(&id)
                    .expect("model")
                    .xattrs
                    .insert(key, value);
            }
            (11, Some((name, id))) => {
                let key = format!("user.k{}", rng.below(4));
                let got = target.getxattr(&format!("{dir}/{name}"), &key);
                match m.files[&id].xattrs.get(&key) {
                    Some(v) => check!(
                        got.as_ref() == Ok(v),
                        "{dir}/{name}: getxattr {key} gave {got:?}"
                    ),
                    None => check!(
                        got == Err(libc::ENODATA),
                        "{dir}/{name}: getxattr of absent {key} gave {got:?}"
                    ),
                }
            }
            (12, Some((name, id))) => {
                let key = format!("user.k{}", rng.below(4));
                let got = target.removexattr(&format!("{dir}/{name}"), &key);
                let had = m
                    .files
                    .get_mut(&id)
                    .expect("model")
                    .xattrs
                    .remove(&key)
                    .is_some();
                let want = if had { Ok(()) } else { Err(libc::ENODATA) };
                check!(
                    got == want,
                    "{dir}/{name}: removexattr {key} gave {got:?}, expected {want:?}"
                );
            }
            (_, _) => {
                let k = rng.below(TOKENS as u64);
                let (from, to) = if rng.below(2) == 0 {
                    ("a", "b")
                } else {
                    ("b", "a")
                };
                match target.rename(&format!("shared/{from}{k}"), &format!("shared/{to}{k}")) {
                    Ok(()) | Err(libc::ENOENT) => {}
                    Err(e) => return Err(format!("shared rename {from}{k} -> {to}{k}: errno {e}")),
                }
            }
        }
        if let Ok(mut s) = shared.slots[t].lock() {
            *s = None;
        }
        ops += 1;
        shared.ops.fetch_add(1, Ordering::Relaxed);
    }
    Ok((ops, m))
}

/// The whole of `t<N>` against its model.
fn verify_tree(t: usize, target: &mut dyn Target, m: &Model) -> Result<(), String> {
    let dir = format!("t{t}");
    let mut names = ok(&format!("readdir {dir}"), target.list(&dir))?;
    names.sort();
    let want: Vec<&String> = m.names.keys().collect();
    check!(
        names.iter().collect::<Vec<_>>() == want,
        "final {dir} lists {names:?}, model {want:?}"
    );
    for (name, id) in &m.names {
        let rel = format!("{dir}/{name}");
        let f = &m.files[id];
        let data = ok(&format!("read {rel}"), target.read(&rel))?;
        check!(
            data == f.data,
            "final {rel}: contents differ from the model"
        );
        let st = ok(&format!("stat {rel}"), target.stat(&rel))?;
        check!(
            st.mode == f.mode && st.nlink == m.nlink(*id) && st.size == f.data.len() as u64,
            "final {rel}: {st:?}, model mode {:o} nlink {} size {}",
            f.mode,
            m.nlink(*id),
            f.data.len()
        );
        if target.xattrs() {
            for (k, v) in &f.xattrs {
                let got = target.getxattr(&rel, k);
                check!(got.as_ref() == Ok(v), "final {rel}: xattr {k} is {got:?}");
            }
        }
    }
    Ok(())
}

/// Removes `t<N>` and everything in it.
fn remove_tree(t: usize, target: &mut dyn Target, m: &Model) -> Result<(), String> {
    let dir = format!("t{t}");
    for name in m.names.keys() {
        ok(
            &format!("unlink {dir}/{name}"),
            target.unlink(&format!("{dir}/{name}")),
        )?;
    }
    ok(&format!("rmdir {dir}"), target.rmdir(&dir))
}

/// Figures of one round.
struct Round {
    ops: u64,
    secs: f64,
}

/// One round: 16 threads for `duration`, the final check, and removal of everything.
fn round(
    make: &(dyn Fn() -> Box<dyn Target> + Sync),
    daemon_pid: u32,
    duration: Duration,
) -> Round {
    let mut setup = make();
    for t in 0..THREADS {
        ok("mkdir", setup.mkdir(&format!("t{t}"))).unwrap();
    }
    ok("mkdir shared", setup.mkdir("shared")).unwrap();
    for k in 0..TOKENS {
        ok(
            "create token",
            setup.create(&format!("shared/a{k}"), format!("token {k}").as_bytes()),
        )
        .unwrap();
    }
    let shared = Shared {
        stop: AtomicBool::new(false),
        failure: Mutex::new(None),
        slots: (0..THREADS).map(|_| Mutex::new(None)).collect(),
        ops: AtomicU64::new(0),
    };
    let started = Instant::now();
    let deadline = started + duration;
    let done = AtomicBool::new(false);
    let mut ops = 0;
    std::thread::scope(|s| {
        // The watchdog: an operation running past OP_LIMIT fails the round and kills the
        // daemon, which makes every blocked call return (ENOTCONN, or a closed socket).
        s.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(250));
                for (t, slot) in shared.slots.iter().enumerate() {
                    let stuck = slot
                        .lock()
                        .ok()
                        .and_then(|g| *g)
                        .filter(|(at, _)| at.elapsed() > OP_LIMIT);
                    if let Some((at, op)) = stuck {
                        shared.fail(format!(
                            "watchdog: thread {t}'s {op} has run for {:?}",
                            at.elapsed()
                        ));
                        let pid = libc::pid_t::try_from(daemon_pid).expect("pid");
                        // SAFETY: kill has no memory-safety preconditions; the daemon is
                        // our unreaped child, so the pid names it.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                        return;
                    }
                }
            }
        });
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let shared = &shared;
                s.spawn(move || {
                    let mut target = make();
                    let result = worker(t, &mut *target, shared, deadline).and_then(|(n, m)| {
                        verify_tree(t, &mut *target, &m)?;
                        remove_tree(t, &mut *target, &m)?;
                        Ok(n)
                    });
                    match result {
                        Ok(n) => n,
                        Err(e) => {
                            shared.fail(format!("thread {t}: {e}"));
                            0
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            match h.join() {
                Ok(n) => ops += n,
                Err(_) => shared.fail("a worker thread panicked".into()),
            }
        }
        done.store(true, Ordering::SeqCst);
    });
    let secs = started.elapsed().as_secs_f64();
    if let Some(f) = shared.failure.lock().ok().and_then(|g| g.clone()) {
        panic!("{f}");
    }
    // The shared tokens: each under exactly one name, intact.
    let mut names = ok("readdir shared", setup.list("shared")).unwrap();
    names.sort();
    assert_eq!(names.len(), TOKENS, "shared holds {names:?}");
    for k in 0..TOKENS {
        let (a, b) = (format!("a{k}"), format!("b{k}"));
        let here: Vec<_> = names.iter().filter(|n| **n == a || **n == b).collect();
        assert_eq!(here.len(), 1, "token {k} is under {here:?}");
        let data = setup.read(&format!("shared/{}", here[0])).unwrap();
        assert_eq!(
            data,
            format!("token {k}").as_bytes(),
            "token {k}'s contents"
        );
        setup.unlink(&format!("shared/{}", here[0])).unwrap();
    }
    setup.rmdir("shared").unwrap();
    assert_eq!(
        setup.list("").unwrap(),
        Vec::<String>::new(),
        "the root is empty again"
    );
    Round { ops, secs }
}

/// Warm-up round, baseline VmRSS, the soak round, VmRSS after deleting everything.
fn soak(test: &str, daemon_pid: u32, make: &(dyn Fn() -> Box<dyn Target> + Sync)) {
    let warm = round(make, daemon_pid, Duration::from_secs(3));
    settle();
    let base = vm_rss_kib(daemon_pid).expect("VmRSS of the daemon");
    let main = round(make, daemon_pid, soak_duration());
    settle();
    let after = vm_rss_kib(daemon_pid).expect("VmRSS of the daemon");
    let limit = base + base / 10 + RSS_SLACK_KIB;
    println!(
        "soak[{test}]: {} ops in {:.1} s = {:.0} ops/s with {THREADS} threads (warm-up {} ops); \
         daemon VmRSS {} KiB after warm-up, {} KiB after deleting everything (limit {} KiB)",
        main.ops,
        main.secs,
        main.ops as f64 / main.secs,
        warm.ops,
        base,
        after,
        limit
    );
    assert!(main.ops > 0);
    assert!(
        after <= limit,
        "{test}: daemon VmRSS grew from {base} KiB to {after} KiB after everything was deleted \
         (limit {limit} KiB)"
    );
}

/// Lets the kernel send its pending FUSE FORGETs and the daemon drop what it freed.
fn settle() {
    std::thread::sleep(Duration::from_millis(1500));
}

fn soak_fuse(kind: Kind, test: &str) {
    let Some(m) = Mounted::new(test, kind, Extra::default()) else {
        return;
    };
    let root = m.path().to_path_buf();
    let make = move || -> Box<dyn Target> { Box::new(Posix { root: root.clone() }) };
    soak(test, m.daemon.child.id(), &make);
    m.finish();
}

fn soak_nfs(kind: Kind, test: &str) {
    let source = common::open_tempdir_on_tmp("vmount-soak-src-");
    let fs = match kind {
        Kind::Memfs => "type = \"memfs\"".to_owned(),
        Kind::Loopback => format!(
            "type = \"loopback\"\nsource = {:?}",
            source.path().to_str().unwrap()
        ),
    };
    let mut served = NfsServed::start(kind.name(), &fs, "", &[]);
    let port = served.port;
    let make = move || -> Box<dyn Target> { Box::new(NfsTarget::connect(port)) };
    soak(test, served.daemon.child.id(), &make);
    signal(&served.daemon.child, libc::SIGTERM);
    let status = served.daemon.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", served.daemon.stderr());
}

#[test]
fn soak_fuse_memfs() {
    soak_fuse(Kind::Memfs, "soak_fuse_memfs");
}

#[test]
fn soak_fuse_loopback() {
    soak_fuse(Kind::Loopback, "soak_fuse_loopback");
}

#[test]
fn soak_nfs_memfs() {
    soak_nfs(Kind::Memfs, "soak_nfs_memfs");
}

#[test]
fn soak_nfs_loopback() {
    soak_nfs(Kind::Loopback, "soak_nfs_loopback");
}
