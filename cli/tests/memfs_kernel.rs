//! memfs with its contents in the kernel (`[filesystem] data = "kernel"`, Linux, root),
//! mounted through FUSE with passthrough: reads and writes never reach the daemon, yet
//! sizes, times, the size limit and statfs stay right, and the bytes are the ones written.
#![cfg(target_os = "linux")]

mod common;

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::op_counts;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 12) as u8)
        .collect()
}

fn statvfs(path: &Path) -> libc::statvfs {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: all-zero is a valid statvfs.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and out pointer.
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    st
}

#[test]
fn kernel_data_is_passed_through_and_stays_coherent() {
    let test = "kernel_data_is_passed_through_and_stays_coherent";
    let Some(m) = common::mount_memfs_kernel_passthrough(test, "size_limit = \"8MiB\"", "") else {
        return;
    };
    let dir = m.path();
    let path = dir.join("data");

    // 4 MiB in 128 KiB writes, read back whole after reopening.
    let data = pattern(4 << 20, 7);
    {
        let mut f = File::create(&path).unwrap();
        for piece in data.chunks(128 << 10) {
            f.write_all(piece).unwrap();
        }
        f.sync_all().unwrap();
    }
    let mut back = Vec::new();
    File::open(&path).unwrap().read_to_end(&mut back).unwrap();
    assert!(
        back == data,
        "the bytes read back differ from those written"
    );
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.len(), data.len() as u64);
    assert!(
        meta.blocks() * 512 >= data.len() as u64,
        "blocks {}",
        meta.blocks()
    );

    // The daemon counted the create but not one read or write: the kernel did them.
    let deadline = Instant::now() + Duration::from_secs(20);
    let counts = loop {
        let c = op_counts(dir);
        if c.get("create").copied().unwrap_or(0) >= 1 || Instant::now() > deadline {
            break c;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        counts.get("create").copied().unwrap_or(0) >= 1,
        "{counts:?}"
    );
    assert_eq!(counts.get("write").copied().unwrap_or(0), 0, "{counts:?}");
    assert_eq!(counts.get("read").copied().unwrap_or(0), 0, "{counts:?}");

    // statfs is the size limit, and shows the data.
    let st = statvfs(dir);
    let total = st.f_blocks * st.f_frsize;
    assert_eq!(total, 8 << 20, "statfs total");
    let used = (st.f_blocks - st.f_bfree) * st.f_frsize;
    assert!(used >= 4 << 20, "statfs used {used}");

    // The limit holds for writes the daemon never sees.
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    let more = pattern(8 << 20, 9);
    let err = f.write_all(&more).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    drop(f);
    std::fs::remove_file(&path).unwrap();
    let st = statvfs(dir);
    assert!(
        (st.f_blocks - st.f_bfree) * st.f_frsize < 1 << 20,
        "the space comes back after the unlink"
    );
    std::fs::write(&path, &more[..6 << 20]).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), &more[..6 << 20]);

    // Times: an explicit mtime shows; a later passthrough write moves it to now.
    let past = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(past)
        .unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), past);
    let before = SystemTime::now() - Duration::from_secs(5);
    OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(b"tail")
        .unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.len(), (6 << 20) + 4);
    assert!(
        meta.modified().unwrap() > before,
        "mtime after a passthrough write"
    );
    // Truncation through the daemon and reading through the kernel agree.
    File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(10)
        .unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), &more[..10]);
    m.finish();
}
