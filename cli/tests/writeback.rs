//! The FUSE writeback cache (`writeback_cache = true`), where the kernel keeps written data
//! and a regular file's mtime and ctime itself and hands them to the daemon later:
//! - another user who may write a root-owned file must still be able to write, touch and
//!   truncate it, though the kernel sends explicit times in that user's name (see
//!   `SetAttr::ctime`), and still not set an explicit time;
//! - `syncfs` keeps working after closed files are removed;
//! - SEEK_DATA and SEEK_HOLE see data still in the kernel's cache.
#![cfg(target_os = "linux")]

mod common;

use common::{Extra, Kind, Mounted};

/// Mounts `kind` with the writeback cache.
fn mount(test: &str, kind: Kind, allow_other: bool) -> Option<Mounted> {
    Mounted::new(test, kind, Extra::writeback(kind, allow_other))
}

/// As nobody, writes, touches and truncates a root-owned 0666 file, and tries to set an
/// explicit time, which must fail.
fn other_users_write_and_touch(kind: Kind) {
    let test = format!("other_users_write_and_touch_{}", kind.name());
    if !common::root_or_skip(&test) {
        return;
    }
    let Some(m) = mount(&test, kind, true) else {
        return;
    };
    let dir = m.path().join("shared");
    std::fs::create_dir(&dir).unwrap();
    common::set_mode(&dir, 0o777);
    std::fs::write(dir.join("f"), b"root\n").unwrap();
    common::set_mode(&dir.join("f"), 0o666);
    let run = |script: &str| {
        let out = common::as_nobody("sh")
            .arg("-c")
            .arg(script)
            .current_dir(&dir)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, err) = run("printf 'nobody\\n' >> f");
    assert!(ok, "{test}: another user's write and close failed: {err}");
    let (ok, err) = run("touch f");
    assert!(ok, "{test}: another user's touch failed: {err}");
    let (ok, err) = run("truncate -s 3 f");
    assert!(ok, "{test}: another user's truncate failed: {err}");
    let (ok, _) = run("touch -d @5 f");
    assert!(!ok, "{test}: another user set an explicit time");
    assert_eq!(std::fs::read(dir.join("f")).unwrap(), b"roo");
    m.finish();
}

#[test]
fn other_users_write_and_touch_heap_memfs() {
    other_users_write_and_touch(Kind::Memfs);
}

#[test]
fn other_users_write_and_touch_loopback_with_writeback() {
    other_users_write_and_touch(Kind::Loopback);
}

/// Removing closed files leaves `syncfs` working. The kernel hands over the times of each
/// file it unlinks; the filesystem had already freed the file and refused them (ESTALE),
/// and the kernel recorded that refusal against the whole mount, so each `syncfs` after
/// such an unlink failed with ESTALE (50 of 50 before the fix; `stress-ng --io` failed
/// beside any stressor that removes files). Data still on the mount stays intact.
fn syncfs_after_removals(kind: Kind) {
    use std::os::fd::AsRawFd as _;
    let test = format!("syncfs_after_removals_{}", kind.name());
    let Some(m) = mount(&test, kind, false) else {
        return;
    };
    let dir = std::fs::File::open(m.path()).unwrap();
    std::fs::write(m.path().join("kept"), b"kept\n").unwrap();
    let mut failures = Vec::new();
    for i in 0..20 {
        let f = m.path().join(format!("gone-{i}"));
        std::fs::write(&f, b"written, closed, then removed\n").unwrap();
        std::fs::remove_file(&f).unwrap();
        // SAFETY: syncfs on a descriptor this function owns.
        if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
            failures.push(std::io::Error::last_os_error());
        }
    }
    assert!(failures.is_empty(), "{test}: syncfs failed: {failures:?}");
    assert_eq!(std::fs::read(m.path().join("kept")).unwrap(), b"kept\n");
    let log = m.daemon.stderr();
    assert!(
        !log.contains("WARN") && !log.contains("ERROR"),
        "{test}: {log}"
    );
    drop(dir); // an open directory would hold the unmount up
    m.finish();
}

#[test]
fn syncfs_after_removals_heap_memfs() {
    syncfs_after_removals(Kind::Memfs);
}

#[test]
fn syncfs_after_removals_loopback_with_writeback() {
    syncfs_after_removals(Kind::Loopback);
}

/// SEEK_DATA and SEEK_HOLE see what is still in the kernel's cache. The kernel asks them
/// without writing its cached data back, so the filesystem's own answer said ENXIO for
/// SEEK_DATA at 0 of a file whose data it had not yet received (`stress-ng --seek` failed
/// every run). The kernel now answers from its own size: data from 0 to the end.
fn seek_sees_cached_writes(kind: Kind) {
    use std::os::unix::fs::FileExt as _;
    let test = format!("seek_sees_cached_writes_{}", kind.name());
    let Some(m) = mount(&test, kind, false) else {
        return;
    };
    let path = m.path().join("sparse");
    let w = std::fs::File::create(&path).unwrap();
    w.write_all_at(&[b'a'; 5000], 0).unwrap();
    w.write_all_at(&[b'b'; 5000], 1 << 20).unwrap();
    let end = (1 << 20) + 5000;
    let r = std::fs::File::open(&path).unwrap();
    let seek = |offset: i64, whence| {
        use std::os::fd::AsRawFd as _;
        // SAFETY: lseek on a descriptor this function owns.
        let at = unsafe { libc::lseek(r.as_raw_fd(), offset, whence) };
        if at < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(at)
        }
    };
    assert_eq!(
        seek(0, libc::SEEK_DATA).unwrap(),
        0,
        "{test}: SEEK_DATA at 0"
    );
    let hole = seek(0, libc::SEEK_HOLE).unwrap();
    assert!(
        (5000..=end).contains(&hole),
        "{test}: SEEK_HOLE at 0 gave {hole}"
    );
    let data = seek(8192, libc::SEEK_DATA).unwrap();
    assert!(
        (8192..=1 << 20).contains(&data),
        "{test}: SEEK_DATA at 8192 gave {data}"
    );
    assert_eq!(
        seek(end, libc::SEEK_DATA).unwrap_err().raw_os_error(),
        Some(libc::ENXIO),
        "{test}: SEEK_DATA at the end"
    );
    drop((w, r));
    let back = std::fs::read(&path).unwrap();
    assert_eq!(back.len() as i64, end);
    assert!(back[..5000].iter().all(|&b| b == b'a') && back[1 << 20..].iter().all(|&b| b == b'b'));
    m.finish();
}

#[test]
fn seek_sees_cached_writes_heap_memfs() {
    seek_sees_cached_writes(Kind::Memfs);
}

#[test]
fn seek_sees_cached_writes_loopback_with_writeback() {
    seek_sees_cached_writes(Kind::Loopback);
}
