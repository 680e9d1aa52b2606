//! The FUSE writeback cache left to its default (`writeback_cache` unset): the kernel
//! buffers the small writes of a memfs that keeps its data on the heap and sends them in
//! large pieces, but not where someone could notice: a memfs with a `size_limit` (a write
//! past it must fail at `write(2)`, not at a flush few check) and a loopback (its source
//! changes behind the mount). Counted at the daemon: 1,000 writes of 100 bytes arrive as a
//! handful of WRITE requests when buffered, as 1,000 when not.
#![cfg(target_os = "linux")]

mod common;

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::path::Path;

use common::{Extra, Kind, Mounted, settled_counts};

const WRITES: usize = 1000;
const PIECE: usize = 100;

/// Writes `WRITES` pieces of `PIECE` bytes to `path`, closes it, reads it back; returns
/// the WRITE requests the daemon received for them.
fn small_writes(mnt: &Path, path: &Path) -> u64 {
    File::create(mnt.join("marker")).unwrap();
    let before = settled_counts(mnt, &mnt.join("marker"))
        .get("write")
        .copied()
        .unwrap_or(0);
    let data = common::pattern(3, WRITES * PIECE);
    {
        let mut f = File::create(path).unwrap();
        for piece in data.chunks(PIECE) {
            f.write_all(piece).unwrap();
        }
    }
    let mut back = Vec::new();
    File::open(path).unwrap().read_to_end(&mut back).unwrap();
    assert!(
        back == data,
        "{}: the bytes read back differ",
        path.display()
    );
    let after = settled_counts(mnt, &mnt.join("marker"))
        .get("write")
        .copied()
        .unwrap_or(0);
    after - before
}

#[test]
fn heap_memfs_buffers_small_writes_by_default() {
    let test = "heap_memfs_buffers_small_writes_by_default";
    let extra = Extra {
        filesystem: "data = \"heap\"",
        ..Extra::default()
    };
    let Some(m) = Mounted::new(test, Kind::Memfs, extra) else {
        return;
    };
    let writes = small_writes(m.path(), &m.path().join("f"));
    assert!(
        (1..=10).contains(&writes),
        "{WRITES} small writes reached the daemon as {writes} WRITE requests; buffered, \
         they come as a few large ones"
    );
    // Closed is written: another open sees the size and the bytes at once.
    assert_eq!(
        std::fs::metadata(m.path().join("f")).unwrap().len(),
        (WRITES * PIECE) as u64
    );
    m.finish();
}

#[test]
fn size_limited_memfs_reports_a_full_filesystem_at_the_write() {
    let test = "size_limited_memfs_reports_a_full_filesystem_at_the_write";
    let extra = Extra {
        filesystem: "data = \"heap\"\nsize_limit = \"1MiB\"",
        ..Extra::default()
    };
    let Some(m) = Mounted::new(test, Kind::Memfs, extra) else {
        return;
    };
    let writes = small_writes(m.path(), &m.path().join("f"));
    assert!(
        writes >= WRITES as u64,
        "with a size_limit every write must reach memfs, which checks it: {writes} of \
         {WRITES} did"
    );
    // 2 MiB into a 1 MiB filesystem: the write that crosses the limit fails itself.
    let mut f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(m.path().join("big"))
        .unwrap();
    let chunk = vec![7u8; 64 << 10];
    let err = (0..32)
        .find_map(|_| f.write_all(&chunk).err())
        .expect("writing 2 MiB into 1 MiB must fail");
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    drop(f);
    m.finish();
}

#[test]
fn loopback_never_buffers_writes_by_default() {
    let test = "loopback_never_buffers_writes_by_default";
    // Passthrough off, so that the writes come to the daemon to be counted.
    let Some(m) = Mounted::new(test, Kind::Loopback, Extra::fuse("passthrough = \"off\"")) else {
        return;
    };
    let writes = small_writes(m.path(), &m.path().join("f"));
    assert!(
        writes >= WRITES as u64,
        "loopback's source changes behind the mount, so its writes are not buffered: \
         {writes} of {WRITES} reached the daemon"
    );
    // And what was written is in the source at once.
    assert_eq!(
        std::fs::metadata(m.source().join("f")).unwrap().len(),
        (WRITES * PIECE) as u64
    );
    m.finish();
}

/// With the writeback cache the kernel keeps a regular file's mtime and ctime and sends
/// them to the daemon as times, in the name of whoever closes, touches or truncates the
/// file; another user who may write the file must still be able to do all of that, and
/// still not set an explicit time.
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
    other_users_write_and_touch(Kind::Memfs, "allow_other = true");
}

#[test]
fn other_users_write_and_touch_loopback_with_writeback() {
    other_users_write_and_touch(
        Kind::Loopback,
        "allow_other = true\npassthrough = \"off\"\nwriteback_cache = true",
    );
}
