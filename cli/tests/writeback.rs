//! Another user under the FUSE writeback cache (`writeback_cache = true`): the kernel then
//! keeps a regular file's mtime and ctime itself and sends them to the daemon as explicit
//! times, in the name of whoever closes, touches or truncates the file (see
//! `SetAttr::ctime`). Such a user, who may write the file, must still be able to do all
//! of that, and still not set an explicit time.
#![cfg(target_os = "linux")]

mod common;

use common::{Extra, Kind, Mounted};

/// As nobody, writes, touches and truncates a root-owned 0666 file, and tries to set an
/// explicit time, which must fail.
fn other_users_write_and_touch(kind: Kind, fuse: &str) {
    let test = format!("other_users_write_and_touch_{}", kind.name());
    let extra = Extra {
        filesystem: if kind == Kind::Memfs {
            "data = \"heap\""
        } else {
            ""
        },
        fuse,
        ..Extra::default()
    };
    if !common::root_or_skip(&test) {
        return;
    }
    let Some(m) = Mounted::new(&test, kind, extra) else {
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
    other_users_write_and_touch(Kind::Memfs, "allow_other = true\nwriteback_cache = true");
}

#[test]
fn other_users_write_and_touch_loopback_with_writeback() {
    other_users_write_and_touch(
        Kind::Loopback,
        "allow_other = true\npassthrough = \"off\"\nwriteback_cache = true",
    );
}

/// Removing closed files leaves `syncfs` working. The kernel hands over the times of each
/// file it unlinks; the filesystem had already freed the file and refused them (ESTALE),
/// and the kernel recorded that refusal against the whole mount, so each `syncfs` after
/// such an unlink failed with ESTALE (50 of 50 before the fix; `stress-ng --io` failed
/// beside any stressor that removes files). Data still on the mount stays intact.
fn syncfs_after_removals(kind: Kind, fuse: &str) {
    use std::os::fd::AsRawFd as _;
    let test = format!("syncfs_after_removals_{}", kind.name());
    let extra = Extra {
        filesystem: if kind == Kind::Memfs {
            "data = \"heap\""
        } else {
            ""
        },
        fuse,
        ..Extra::default()
    };
    let Some(m) = Mounted::new(&test, kind, extra) else {
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
    m.finish();
}

#[test]
fn syncfs_after_removals_heap_memfs() {
    syncfs_after_removals(Kind::Memfs, "writeback_cache = true");
}

#[test]
fn syncfs_after_removals_loopback_with_writeback() {
    syncfs_after_removals(
        Kind::Loopback,
        "passthrough = \"off\"\nwriteback_cache = true",
    );
}
