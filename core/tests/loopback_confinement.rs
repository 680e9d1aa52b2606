//! Confinement under attack: while threads work through the Vfs on names under `d`,
//! another thread keeps swapping `source/d` between a real directory and a symlink to a
//! directory outside `source`. Nothing outside may change.
#![cfg(target_os = "linux")]

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use vmount_core::loopback::{Loopback, LoopbackOptions};
use vmount_core::*;

/// Mode, uid, size, mtime (s, ns), contents and xattr names of one path.
type Observed = (u32, u32, u64, i64, i64, Vec<u8>, Vec<String>);

/// Everything observable about a directory tree: per path, its kind, mode, owner, size,
/// mtime and (for files) contents and xattrs.
fn snapshot(root: &Path) -> BTreeMap<String, Observed> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = std::fs::symlink_metadata(&p).expect("stat");
        let data = if md.is_file() {
            std::fs::read(&p).expect("read")
        } else {
            Vec::new()
        };
        let xattrs = list_xattrs(&p);
        out.insert(
            p.strip_prefix(root).unwrap().to_string_lossy().into_owned(),
            (
                md.mode(),
                md.uid(),
                md.len(),
                md.mtime(),
                md.mtime_nsec(),
                data,
                xattrs,
            ),
        );
        if md.is_dir() {
            for e in std::fs::read_dir(&p).expect("readdir") {
                stack.push(e.expect("entry").path());
            }
        }
    }
    out
}

fn list_xattrs(p: &Path) -> Vec<String> {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid path and a buffer writable for its length.
    let n = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n <= 0 {
        return Vec::new();
    }
    buf.truncate(n as usize);
    buf.split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// `renameat2(a, b, RENAME_EXCHANGE)` by path (the attacker is a host process).
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    let (ca, cb) = (
        CString::new(a.as_os_str().as_bytes()).unwrap(),
        CString::new(b.as_os_str().as_bytes()).unwrap(),
    );
    // SAFETY: valid NUL-terminated paths.
    let r = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// One worker's round of operations on names under `d`, as `ctx`. Errors are expected
/// (the directory may be a symlink at lookup time, or swapped away meanwhile); only a
/// change outside counts as failure, which the caller checks at the end.
fn round(fs: &Loopback, ctx: &Ctx, t: u64, i: u64, ops: &AtomicU64) {
    let Ok(d) = fs.lookup(ctx, Ino::ROOT, OsStr::new("d")) else {
        return;
    };
    let name = format!("f{t}_{i}");
    let n = OsStr::new(&name);
    let rw = OpenFlags::READ | OpenFlags::WRITE;
    let mut done = 0;
    // Names that exist outside: a successful traversal would hit them.
    for target in ["canary", "sub", &name] {
        let target = OsStr::new(target);
        if let Ok((a, o)) = fs.create(ctx, d.ino, target, 0o666, rw) {
            let _ = fs.write(ctx, a.ino, Some(o.fh), 0, b"pwned");
            let _ = fs.setattr(
                ctx,
                a.ino,
                &SetAttr {
                    size: Some(1),
                    mode: Some(0o777),
                    mtime: Some(SetTime::Now),
                    ..SetAttr::default()
                },
                Some(o.fh),
            );
            let _ = fs.setxattr(
                ctx,
                a.ino,
                OsStr::new("user.pwned"),
                b"1",
                XattrFlags::empty(),
            );
            let _ = fs.release(ctx, a.ino, o.fh);
            fs.forget(a.ino, 1);
            done += 1;
        }
        if let Ok(a) = fs.lookup(ctx, d.ino, target) {
            let _ = fs.write(ctx, a.ino, None, 0, b"pwned");
            let _ = fs.setxattr(
                ctx,
                a.ino,
                OsStr::new("user.pwned"),
                b"1",
                XattrFlags::empty(),
            );
            let _ = fs.removexattr(ctx, a.ino, OsStr::new("user.keep"));
            let _ = fs.setattr(
                ctx,
                a.ino,
                &SetAttr {
                    mode: Some(0o600),
                    atime: Some(SetTime::Now),
                    ..SetAttr::default()
                },
                None,
            );
            fs.forget(a.ino, 1);
        }
    }
    if let Ok(sub) = fs.mkdir(ctx, d.ino, OsStr::new(&format!("dir{t}_{i}")), 0o777) {
        let _ = fs.mknod(ctx, sub.ino, OsStr::new("p"), FileType::Fifo, 0o644, 0);
        let _ = fs.symlink(ctx, sub.ino, OsStr::new("l"), OsStr::new("/etc/passwd"));
        fs.forget(sub.ino, 1);
        done += 1;
    }
    let _ = fs.rename(
        ctx,
        d.ino,
        n,
        d.ino,
        OsStr::new(&format!("g{t}_{i}")),
        RenameFlags::empty(),
    );
    let _ = fs.rename(
        ctx,
        d.ino,
        OsStr::new("canary"),
        Ino::ROOT,
        OsStr::new("stolen"),
        RenameFlags::empty(),
    );
    let mut sink = VecSink {
        plus: true,
        ..VecSink::default()
    };
    if fs.readdir(ctx, d.ino, None, 0, &mut sink).is_ok() {
        for e in &sink.entries {
            let _ = fs.unlink(ctx, d.ino, &e.name);
            let _ = fs.rmdir(ctx, d.ino, &e.name);
            fs.forget(e.ino, 1);
        }
    }
    let _ = fs.unlink(ctx, d.ino, OsStr::new("canary"));
    let _ = fs.rmdir(ctx, d.ino, OsStr::new("sub"));
    let _ = fs.link(ctx, d.ino, d.ino, OsStr::new("hl"));
    fs.forget(d.ino, 1);
    ops.fetch_add(done, Ordering::Relaxed);
}

#[test]
fn swapping_a_directory_for_a_symlink_never_reaches_outside() {
    let base = tempfile::tempdir().unwrap();
    let source = base.path().join("source");
    let outside = base.path().join("outside");
    std::fs::create_dir(&source).unwrap();
    std::fs::set_permissions(&source, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::create_dir(&outside).unwrap();
    std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::write(outside.join("canary"), b"canary contents").unwrap();
    std::fs::set_permissions(
        outside.join("canary"),
        std::fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    std::fs::create_dir(outside.join("sub")).unwrap();
    std::fs::set_permissions(outside.join("sub"), std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::create_dir(source.join("d")).unwrap();
    std::fs::set_permissions(source.join("d"), std::fs::Permissions::from_mode(0o777)).unwrap();
    std::os::unix::fs::symlink(&outside, source.join("d_link")).unwrap();
    // Timestamps are compared exactly: make sure any change would show.
    std::thread::sleep(Duration::from_millis(20));
    let before = snapshot(&outside);

    let fs = Arc::new(
        Loopback::new(LoopbackOptions {
            source: source.clone(),
            read_only: false,
        })
        .unwrap(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let swaps = Arc::new(AtomicU64::new(0));
    let swapper = {
        let (stop, swaps, source) = (stop.clone(), swaps.clone(), source.clone());
        std::thread::spawn(move || {
            let (d, l) = (source.join("d"), source.join("d_link"));
            while !stop.load(Ordering::Relaxed) {
                exchange(&d, &l).expect("swap d and d_link");
                swaps.fetch_add(1, Ordering::Relaxed);
                std::thread::yield_now();
            }
        })
    };
    let workers: Vec<_> = (0..4u64)
        .map(|t| {
            let (fs, stop, ops) = (fs.clone(), stop.clone(), ops.clone());
            std::thread::spawn(move || {
                // Half the workers act as root, half as an ordinary user (credential
                // switching path).
                let ctx = if t % 2 == 0 {
                    Ctx::root()
                } else {
                    Ctx::with_groups(1000, 1000, &[])
                };
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    round(&fs, &ctx, t, i, &ops);
                    i += 1;
                }
            })
        })
        .collect();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("worker panicked");
    }
    swapper.join().expect("swapper panicked");

    let after = snapshot(&outside);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "entries appeared or vanished outside source"
    );
    assert_eq!(before, after, "something outside source changed");
    assert_eq!(
        std::fs::read(outside.join("canary")).unwrap(),
        b"canary contents"
    );
    let (ops, swaps) = (ops.load(Ordering::Relaxed), swaps.load(Ordering::Relaxed));
    println!("{ops} successful creations inside source while {swaps} swaps ran");
    assert!(swaps > 100, "the attacker barely ran ({swaps} swaps)");
    assert!(
        ops > 0,
        "no operation ever succeeded: the test exercised nothing"
    );
}
