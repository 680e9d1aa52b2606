//! Mounted tests: a real FUSE mount in a temporary directory, driven through std::fs and
//! libc. Each mount is held by a `FuseMount` guard declared after its `TempDir`, so it is
//! unmounted (even when an assertion fails) before the directory is removed.

#![cfg(target_os = "linux")]

use std::ffi::CString;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use vmount_backend_fuse::{FuseError, FuseMount, FuseOptions, MountState};
use vmount_core::memfs::{MemFs, MemFsOptions};
use vmount_core::{Ctx, Ino, Vfs};

fn new_fs() -> Arc<dyn Vfs> {
    Arc::new(MemFs::new(MemFsOptions::default()))
}

/// A mount in its own temporary directory; `mount` is dropped (unmounted) before `_dir`.
struct Fixture {
    mount: FuseMount,
    _dir: TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::with(&FuseOptions::default())
    }

    fn with(opts: &FuseOptions) -> Fixture {
        Fixture::with_fs(new_fs(), opts)
    }

    fn with_fs(fs: Arc<dyn Vfs>, opts: &FuseOptions) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let mp = dir.path().join("mnt");
        fs::create_dir(&mp).expect("mkdir mnt");
        let mount = vmount_backend_fuse::mount(fs, &mp, opts).expect("mount");
        Fixture { mount, _dir: dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.mount.mountpoint().join(rel)
    }
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("no NUL in test paths")
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn mountinfo_has(path: &Path) -> bool {
    let table = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let want = path
        .to_str()
        .expect("utf-8 test path")
        .replace(' ', "\\040");
    table
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn write_read_truncate_and_append() {
    let fx = Fixture::new();
    let p = fx.path("hello.txt");
    fs::write(&p, b"hello, world").unwrap();
    assert_eq!(fs::read(&p).unwrap(), b"hello, world");
    let meta = fs::metadata(&p).unwrap();
    assert_eq!(meta.len(), 12);
    assert!(meta.is_file());
    assert_eq!(meta.mode() & 0o7777, 0o644 & !current_umask());

    let mut f = fs::OpenOptions::new().append(true).open(&p).unwrap();
    f.write_all(b"!").unwrap();
    drop(f);
    assert_eq!(fs::read_to_string(&p).unwrap(), "hello, world!");

    // A large write crosses many FUSE requests (max_write 1 MiB) and page boundaries.
    let big: Vec<u8> = (0..3_000_017u32).map(|i| (i % 251) as u8).collect();
    let q = fx.path("big.bin");
    fs::write(&q, &big).unwrap();
    let mut back = Vec::new();
    fs::File::open(&q).unwrap().read_to_end(&mut back).unwrap();
    assert!(back == big, "large file read back differs");

    let f = fs::OpenOptions::new().write(true).open(&q).unwrap();
    f.set_len(10).unwrap();
    drop(f);
    assert_eq!(fs::read(&q).unwrap(), &big[..10]);
    fs::set_permissions(&q, fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(fs::metadata(&q).unwrap().mode() & 0o7777, 0o600);

    fs::create_dir(fx.path("d")).unwrap();
    fs::write(fx.path("d/inner"), b"x").unwrap();
    assert_eq!(
        fs::remove_dir(fx.path("d")).unwrap_err().raw_os_error(),
        Some(libc::ENOTEMPTY)
    );
    fs::remove_file(fx.path("d/inner")).unwrap();
    fs::remove_dir(fx.path("d")).unwrap();
    assert_eq!(
        fs::metadata(fx.path("d")).unwrap_err().raw_os_error(),
        Some(libc::ENOENT)
    );
}

fn current_umask() -> u32 {
    // SAFETY: umask has no preconditions; the old value is restored at once.
    unsafe {
        let old = libc::umask(0o022);
        libc::umask(old);
        old
    }
}

#[test]
fn readdir_of_3000_files_pages_through_readdirplus() {
    let fx = Fixture::new();
    let dir = fx.path("many");
    fs::create_dir(&dir).unwrap();
    for i in 0..3000 {
        fs::File::create(dir.join(format!("file-{i:05}"))).unwrap();
    }
    fs::create_dir(dir.join("sub")).unwrap();
    let mut names: Vec<String> = Vec::new();
    for e in fs::read_dir(&dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        let is_dir = e.file_type().unwrap().is_dir();
        assert_eq!(is_dir, name == "sub", "{name}");
        names.push(name);
    }
    names.sort();
    let mut want: Vec<String> = (0..3000).map(|i| format!("file-{i:05}")).collect();
    want.push("sub".into());
    assert_eq!(names.len(), 3001, "every entry exactly once");
    assert_eq!(names, want);

    // `.` and `..` come from the adapter, via getdents directly.
    let out = Command::new("ls").arg("-a").arg(&dir).output().unwrap();
    let listing = String::from_utf8(out.stdout).unwrap();
    let mut lines = listing.lines();
    assert_eq!((lines.next(), lines.next()), (Some("."), Some("..")));
    assert_eq!(lines.count(), 3001);

    // A second listing (now with cached dentries) and stat of every entry agree.
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 3001);
    for i in (0..3000).step_by(97) {
        assert!(
            fs::metadata(dir.join(format!("file-{i:05}")))
                .unwrap()
                .is_file()
        );
    }
}

#[test]
fn rename_and_symlink() {
    let fx = Fixture::new();
    fs::write(fx.path("a"), b"A").unwrap();
    fs::write(fx.path("b"), b"B").unwrap();
    fs::rename(fx.path("a"), fx.path("c")).unwrap();
    assert!(!fx.path("a").exists());
    assert_eq!(fs::read(fx.path("c")).unwrap(), b"A");
    // Plain rename replaces.
    fs::rename(fx.path("c"), fx.path("b")).unwrap();
    assert_eq!(fs::read(fx.path("b")).unwrap(), b"A");

    fs::write(fx.path("x"), b"X").unwrap();
    let (b, x) = (cstr(&fx.path("b")), cstr(&fx.path("x")));
    // SAFETY: valid NUL-terminated paths, AT_FDCWD for absolute paths.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::AT_FDCWD,
            x.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    assert_eq!((rc, errno()), (-1, libc::EEXIST));
    // SAFETY: as above.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::AT_FDCWD,
            x.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    assert_eq!(rc, 0, "exchange: errno {}", errno());
    assert_eq!(fs::read(fx.path("b")).unwrap(), b"X");
    assert_eq!(fs::read(fx.path("x")).unwrap(), b"A");
    // SAFETY: as above.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::AT_FDCWD,
            x.as_ptr(),
            libc::RENAME_WHITEOUT,
        )
    };
    assert_eq!((rc, errno()), (-1, libc::EINVAL));

    std::os::unix::fs::symlink("x", fx.path("link")).unwrap();
    assert_eq!(fs::read_link(fx.path("link")).unwrap(), Path::new("x"));
    assert!(
        fs::symlink_metadata(fx.path("link"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        fs::read(fx.path("link")).unwrap(),
        b"A",
        "followed through the kernel"
    );
    std::os::unix::fs::symlink("/nowhere/at/all", fx.path("dangling")).unwrap();
    assert_eq!(
        fs::read_link(fx.path("dangling")).unwrap(),
        Path::new("/nowhere/at/all")
    );
}

#[test]
fn xattrs_set_get_list_remove() {
    let fx = Fixture::new();
    let p = fx.path("f");
    fs::write(&p, b"").unwrap();
    let c = cstr(&p);
    let name = CString::new("user.color").unwrap();
    let other = CString::new("user.size").unwrap();
    let value = b"blue-green";
    // SAFETY: all pointers are valid for the lengths passed.
    unsafe {
        assert_eq!(
            libc::setxattr(
                c.as_ptr(),
                name.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0
            ),
            0
        );
        assert_eq!(
            libc::setxattr(c.as_ptr(), other.as_ptr(), b"1".as_ptr().cast(), 1, 0),
            0
        );
        assert_eq!(
            libc::setxattr(
                c.as_ptr(),
                name.as_ptr(),
                b"x".as_ptr().cast(),
                1,
                libc::XATTR_CREATE
            ),
            -1
        );
        assert_eq!(errno(), libc::EEXIST);
        // Size query, short buffer, exact read.
        let n = libc::getxattr(c.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0);
        assert_eq!(n, value.len() as isize);
        let mut small = [0u8; 4];
        let n = libc::getxattr(
            c.as_ptr(),
            name.as_ptr(),
            small.as_mut_ptr().cast(),
            small.len(),
        );
        assert_eq!((n, errno()), (-1, libc::ERANGE));
        let mut buf = [0u8; 64];
        let n = libc::getxattr(
            c.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        );
        assert_eq!(&buf[..n as usize], value);
        let missing = CString::new("user.missing").unwrap();
        let n = libc::getxattr(
            c.as_ptr(),
            missing.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        );
        assert_eq!((n, errno()), (-1, libc::ENODATA));
        // List: NUL-separated names.
        let n = libc::listxattr(c.as_ptr(), std::ptr::null_mut(), 0);
        assert_eq!(n as usize, "user.color\0user.size\0".len());
        let mut list = [0u8; 64];
        let n = libc::listxattr(c.as_ptr(), list.as_mut_ptr().cast(), list.len());
        let mut names: Vec<&[u8]> = list[..n as usize]
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .collect();
        names.sort();
        assert_eq!(names, [&b"user.color"[..], &b"user.size"[..]]);
        assert_eq!(libc::removexattr(c.as_ptr(), name.as_ptr()), 0);
        let n = libc::getxattr(
            c.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        );
        assert_eq!((n, errno()), (-1, libc::ENODATA));
    }
    // The attr tools agree.
    let out = Command::new("getfattr")
        .args(["-n", "user.size", "--only-values"])
        .arg(&p)
        .output();
    if let Ok(out) = out {
        assert_eq!(
            out.stdout,
            b"1",
            "getfattr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn statfs_and_mount_table() {
    let memfs: Arc<dyn Vfs> = Arc::new(MemFs::new(MemFsOptions {
        size_limit: Some(64 << 20),
        max_inodes: Some(1000),
        ..Default::default()
    }));
    let want = memfs.statfs(&Ctx::root(), Ino::ROOT).unwrap();
    let opts = FuseOptions {
        fs_name: "memfs-test".into(),
        ..Default::default()
    };
    let fx = Fixture::with_fs(Arc::clone(&memfs), &opts);
    let c = cstr(fx.mount.mountpoint());
    // SAFETY: an all-zero statvfs is valid; `c` is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `st` is writable.
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    assert_eq!(st.f_bsize, u64::from(want.bsize));
    assert_eq!(st.f_frsize, u64::from(want.frsize));
    assert_eq!(st.f_blocks, want.blocks);
    assert_eq!(st.f_bfree, want.bfree);
    assert_eq!(st.f_files, want.files);
    assert_eq!(st.f_namemax, u64::from(want.namelen));

    assert_eq!(
        vmount_backend_fuse::mount_state(fx.mount.mountpoint()),
        MountState::Mounted {
            fstype: "fuse.vmount".into()
        }
    );
    let mounts = fs::read_to_string("/proc/mounts").unwrap();
    let line = mounts
        .lines()
        .find(|l| l.split(' ').nth(1) == fx.mount.mountpoint().to_str())
        .expect("listed in /proc/mounts");
    assert!(line.starts_with("memfs-test "), "{line}");
    assert!(line.contains(" fuse.vmount "), "{line}");
    assert!(line.contains("default_permissions"), "{line}");
}

/// The readahead window: raised to `readahead_kib` (root writes sysfs), or left at the
/// kernel's 128 KiB with 0.
#[test]
fn readahead_window_follows_the_option() {
    let window = |fx: &Fixture| {
        let dev = fs::metadata(fx.mount.mountpoint()).unwrap().dev();
        let p = format!(
            "/sys/class/bdi/{}:{}/read_ahead_kb",
            libc::major(dev),
            libc::minor(dev)
        );
        fs::read_to_string(&p).unwrap().trim().to_owned()
    };
    let root = unsafe { libc::geteuid() } == 0;
    let fx = Fixture::with(&FuseOptions {
        threads: 1,
        ..Default::default()
    });
    if root {
        assert_eq!(window(&fx), "1024");
    } else {
        eprintln!("not root: sysfs is not writable, the kernel's window stays");
        assert_eq!(window(&fx), "128");
    }
    let fx = Fixture::with(&FuseOptions {
        threads: 1,
        readahead_kib: 0,
        ..Default::default()
    });
    assert_eq!(window(&fx), "128");
}

#[test]
fn read_only_mount_refuses_writes() {
    let fx = Fixture::with(&FuseOptions {
        read_only: true,
        threads: 1,
        ..Default::default()
    });
    let err = fs::write(fx.path("nope"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    assert!(
        fs::read_dir(fx.mount.mountpoint())
            .unwrap()
            .next()
            .is_none()
    );
}

#[test]
fn drop_unmounts_and_leaves_the_table_clean() {
    let dir = tempfile::tempdir().unwrap();
    let mp = dir.path().canonicalize().unwrap().join("mnt");
    fs::create_dir(&mp).unwrap();
    let m = vmount_backend_fuse::mount(new_fs(), &mp, &FuseOptions::default()).unwrap();
    assert!(mountinfo_has(&mp));
    assert!(m.is_alive());
    fs::write(mp.join("f"), b"data").unwrap();
    drop(m);
    assert!(!mountinfo_has(&mp), "still in the mount table after drop");
    assert_eq!(
        vmount_backend_fuse::mount_state(&mp),
        MountState::NotMounted
    );
    assert!(
        !mp.join("f").exists(),
        "the directory underneath is visible again"
    );

    // `unmount()` reports success the same way, and the path can be mounted again.
    let m = vmount_backend_fuse::mount(new_fs(), &mp, &FuseOptions::default()).unwrap();
    m.unmount().unwrap();
    assert!(!mountinfo_has(&mp));
}

#[test]
fn busy_mount_is_detached_on_unmount() {
    let dir = tempfile::tempdir().unwrap();
    let mp = dir.path().canonicalize().unwrap().join("mnt");
    fs::create_dir(&mp).unwrap();
    let m = vmount_backend_fuse::mount(new_fs(), &mp, &FuseOptions::default()).unwrap();
    fs::write(mp.join("f"), b"data").unwrap();
    let mut open = fs::File::open(mp.join("f")).unwrap();
    let started = Instant::now();
    m.unmount().unwrap();
    assert!(!mountinfo_has(&mp));
    assert!(started.elapsed() < Duration::from_secs(30));
    // The open file is still served after the lazy detach.
    let mut s = String::new();
    open.read_to_string(&mut s).unwrap();
    assert_eq!(s, "data");
}

#[test]
fn external_unmount_ends_the_session() {
    let fx = Fixture::new();
    assert!(fx.mount.is_alive());
    let out = Command::new("fusermount3")
        .arg("-u")
        .arg(fx.mount.mountpoint())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fusermount3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until("the session to notice the unmount", || !fx.mount.is_alive());
    assert_eq!(
        vmount_backend_fuse::mount_state(fx.mount.mountpoint()),
        MountState::NotMounted
    );
    // Dropping the guard afterwards is a no-op, not an error or a hang.
}

#[test]
fn mount_refuses_bad_mountpoints() {
    let dir = tempfile::tempdir().unwrap();
    let opts = FuseOptions::default();

    let missing = dir.path().join("missing");
    match vmount_backend_fuse::mount(new_fs(), &missing, &opts) {
        Err(FuseError::MountpointMissing(p)) => assert_eq!(p, missing),
        other => panic!("expected MountpointMissing, got {other:?}"),
    }

    let file = dir.path().join("file");
    fs::write(&file, b"").unwrap();
    match vmount_backend_fuse::mount(new_fs(), &file, &opts) {
        Err(e @ FuseError::NotADirectory(_)) => {
            assert!(e.to_string().contains(&file.display().to_string()), "{e}")
        }
        other => panic!("expected NotADirectory, got {other:?}"),
    }

    let mp = dir.path().join("mnt");
    fs::create_dir(&mp).unwrap();
    let first = vmount_backend_fuse::mount(new_fs(), &mp, &opts).unwrap();
    match vmount_backend_fuse::mount(new_fs(), &mp, &opts) {
        Err(e @ FuseError::AlreadyMounted(_)) => {
            assert!(e.to_string().contains("already a mount point"), "{e}")
        }
        other => panic!("expected AlreadyMounted, got {other:?}"),
    }
    assert!(
        first.is_alive(),
        "the refused mount must not disturb the first"
    );
    drop(first);

    match vmount_backend_fuse::unmount_path(&mp) {
        Err(FuseError::NotMounted(p)) => assert_eq!(p, mp),
        other => panic!("expected NotMounted, got {other:?}"),
    }
}

#[test]
fn unmount_path_clears_a_live_mount_we_do_not_own() {
    let fx = Fixture::new();
    vmount_backend_fuse::unmount_path(fx.mount.mountpoint()).unwrap();
    wait_until("the session to end", || !fx.mount.is_alive());
    assert!(!mountinfo_has(fx.mount.mountpoint()));
}

const CHILD_ENV: &str = "VMOUNT_FUSE_TEST_CHILD_MOUNTPOINT";
const CHILD_READY: &str = "VMOUNT-CHILD-READY";

/// Not a test of its own: the child process of `unmount_path_clears_a_dead_mount`, which
/// re-runs this test binary with only this function and the mountpoint in the environment.
#[test]
#[ignore = "helper process for unmount_path_clears_a_dead_mount"]
fn dead_mount_child() {
    let mp = PathBuf::from(std::env::var_os(CHILD_ENV).expect("run by the parent test"));
    let mount = vmount_backend_fuse::mount(new_fs(), &mp, &FuseOptions::default()).unwrap();
    fs::write(mount.mountpoint().join("proof"), b"alive").unwrap();
    println!("{CHILD_READY}");
    std::io::stdout().flush().unwrap();
    // Wait to be killed; the parent gives up (and kills us) after a minute at most.
    std::thread::sleep(Duration::from_secs(120));
}

/// Kills the child and clears its mount even when the test fails half-way.
struct ChildGuard {
    child: Child,
    mountpoint: PathBuf,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = vmount_backend_fuse::unmount_path(&self.mountpoint);
    }
}

#[test]
fn unmount_path_clears_a_dead_mount() {
    let dir = tempfile::tempdir().unwrap();
    let mp = dir.path().canonicalize().unwrap().join("mnt");
    fs::create_dir(&mp).unwrap();
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "dead_mount_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &mp)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut guard = ChildGuard {
        child,
        mountpoint: mp.clone(),
    };
    let stdout = guard.child.stdout.take().unwrap();
    let ready = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|l| l.contains(CHILD_READY));
    assert!(ready, "the child never mounted");
    assert_eq!(fs::read(mp.join("proof")).unwrap(), b"alive");

    // SIGKILL: no destructor runs, the mount stays behind with nobody serving it.
    guard.child.kill().unwrap();
    guard.child.wait().unwrap();
    // Dead at once for statfs (always forwarded) and mount_state, which asks that way.
    assert_eq!(vmount_backend_fuse::mount_state(&mp), MountState::Dead);
    // stat may be answered from attributes cached before the kill, for one attr_timeout.
    wait_until("stat to fail with ENOTCONN", || {
        fs::metadata(&mp).err().and_then(|e| e.raw_os_error()) == Some(libc::ENOTCONN)
    });

    match vmount_backend_fuse::mount(new_fs(), &mp, &FuseOptions::default()) {
        Err(e @ FuseError::DeadMount(_)) => {
            let s = e.to_string();
            assert!(
                s.contains("vmount unmount") && s.contains(mp.to_str().unwrap()),
                "{s}"
            );
        }
        other => panic!("expected DeadMount, got {other:?}"),
    }

    vmount_backend_fuse::unmount_path(&mp).unwrap();
    assert_eq!(
        vmount_backend_fuse::mount_state(&mp),
        MountState::NotMounted
    );
    assert!(fs::metadata(&mp).unwrap().is_dir());
    assert!(!mountinfo_has(&mp));

    // The directory is usable again.
    let m = vmount_backend_fuse::mount(new_fs(), &mp, &FuseOptions::default()).unwrap();
    assert!(!mp.join("proof").exists());
    m.unmount().unwrap();
}

#[test]
fn probe_finds_fuse() {
    vmount_backend_fuse::probe().unwrap();
}

#[test]
fn writeback_cache_keeps_appends_and_overwrites_right() {
    let opts = FuseOptions {
        writeback_cache: true,
        ..Default::default()
    };
    let fx = Fixture::with(&opts);
    let p = fx.path("log");
    for i in 0..50 {
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .unwrap();
        writeln!(f, "line {i}").unwrap();
    }
    let text = fs::read_to_string(&p).unwrap();
    assert_eq!(text.lines().count(), 50);
    assert!(text.ends_with("line 49\n"));
    // A partial-page overwrite through a write-only handle needs the kernel to read the
    // rest of the page through that handle.
    let mut f = fs::OpenOptions::new().write(true).open(&p).unwrap();
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(5)).unwrap();
    f.write_all(b"X").unwrap();
    f.sync_all().unwrap();
    drop(f);
    let text = fs::read_to_string(&p).unwrap();
    assert!(text.starts_with("line X\nline 1\n"), "{:?}", &text[..20]);
    assert_eq!(fs::metadata(&p).unwrap().len(), text.len() as u64);
}
