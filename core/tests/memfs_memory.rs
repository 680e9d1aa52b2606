//! memfs memory use and write cost, measured with a counting global allocator.
//!
//! The tests in this binary share the allocator's counters, so each takes `SERIAL`
//! first; measurements are live-heap differences taken around the work.
//!
//! Documented per-inode overhead: an empty regular file costs at most
//! [`PER_INODE_OVERHEAD`] bytes of heap besides its data (the `Inode` with its
//! metadata, the `Arc`, its slot in the inode table and its name in the directory's two
//! maps); the test below checks it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::OsStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use vmount_core::memfs::{MemFs, MemFsOptions};
use vmount_core::*;

/// Upper bound of the heap an inode costs besides its data, names of up to 16 bytes.
/// Measured 497 bytes (of which the `Arc<Inode>` is 296); the bound is low enough that a
/// per-file tree node (368 bytes, which a one-chunk file used to cost) would break it.
const PER_INODE_OVERHEAD: u64 = 640;

struct Counting;

static LIVE: AtomicU64 = AtomicU64::new(0);
static ALLOCATED: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the counters are
// only statistics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as u64, Ordering::Relaxed);
        ALLOCATED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as u64, Ordering::Relaxed);
        ALLOCATED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: `ptr` came from this allocator (so from `System`) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        LIVE.fetch_add(new_size as u64, Ordering::Relaxed);
        // A realloc may copy the old contents: count the new block as allocated.
        ALLOCATED.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: as for `dealloc`, and `new_size` is the caller's valid new size.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

static SERIAL: Mutex<()> = Mutex::new(());

fn live() -> u64 {
    LIVE.load(Ordering::Relaxed)
}

fn allocated() -> u64 {
    ALLOCATED.load(Ordering::Relaxed)
}

const PIECE: usize = 4107;

/// Writes `total` bytes to a new file in `PIECE`-byte writes through a handle; returns
/// the file's inode and the handle (still open).
fn write_pieces(fs: &MemFs, name: &str, total: u64, piece: &[u8]) -> (Ino, Fh) {
    let root = Ctx::root();
    let flags = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::EXCLUSIVE;
    let (attr, opened) = fs
        .create(&root, Ino::ROOT, OsStr::new(name), 0o644, flags)
        .unwrap();
    let mut off = 0u64;
    while off < total {
        let n = (total - off).min(piece.len() as u64) as usize;
        assert_eq!(
            fs.write(&root, attr.ino, Some(opened.fh), off, &piece[..n])
                .unwrap() as usize,
            n
        );
        off += n as u64;
    }
    (attr.ino, opened.fh)
}

#[test]
fn sixty_four_mib_in_small_writes_costs_at_most_ten_percent_more() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let piece: Vec<u8> = (0..PIECE).map(|i| (i % 251) as u8).collect();
    let fs = MemFs::new(MemFsOptions::default());
    let total = 64u64 << 20;
    let base = live();
    let (ino, fh) = write_pieces(&fs, "big", total, &piece);
    let while_open = live().saturating_sub(base);
    // Before trimming only the tail chunk may carry spare capacity (< 64 KiB).
    assert!(
        while_open as f64 <= total as f64 * 1.10 + 65536.0,
        "{while_open} bytes live for {total} stored while open"
    );
    fs.release(&Ctx::root(), ino, fh).unwrap();
    let grown = live().saturating_sub(base);
    println!(
        "64 MiB in {PIECE}-byte writes: heap grew by {grown} bytes ({:.4}x)",
        grown as f64 / total as f64
    );
    assert!(
        grown as f64 <= total as f64 * 1.10,
        "{grown} bytes live for {total} stored"
    );
    assert_eq!(fs.used_bytes(), total);
    // The data is intact.
    let mut buf = vec![0u8; PIECE];
    let n = fs
        .read(&Ctx::root(), ino, None, total - PIECE as u64, &mut buf)
        .unwrap();
    assert_eq!(n, PIECE);
    let start = (total as usize - PIECE) % PIECE;
    assert_eq!(&buf[..PIECE - start], &piece[start..]);

    // Unlinking gives it all back.
    drop(buf);
    fs.unlink(&Ctx::root(), Ino::ROOT, OsStr::new("big"))
        .unwrap();
    assert_eq!(fs.used_bytes(), 0);
    assert!(
        live().saturating_sub(base) < 64 * 1024,
        "memory not returned after unlink"
    );
}

#[test]
fn small_files_pin_their_bytes_not_a_page() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let fs = MemFs::new(MemFsOptions::default());
    let root = Ctx::root();
    let data = [7u8; 100];
    let names: Vec<String> = (0..2000).map(|i| format!("small-{i:05}")).collect();
    let flags = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::EXCLUSIVE;
    let base = live();
    for name in &names {
        let (attr, opened) = fs
            .create(&root, Ino::ROOT, OsStr::new(name), 0o644, flags)
            .unwrap();
        fs.write(&root, attr.ino, Some(opened.fh), 0, &data)
            .unwrap();
        fs.release(&root, attr.ino, opened.fh).unwrap();
    }
    let grown = live().saturating_sub(base);
    let per_file = grown / 2000;
    println!(
        "2,000 files of 100 bytes: {per_file} bytes each ({} overhead)",
        per_file.saturating_sub(128)
    );
    // 100 bytes are held as 128 (the 64-byte grain), with no tree node around them.
    assert_eq!(fs.used_bytes(), 2000 * 128);
    assert!(
        grown <= 2000 * (128 + PER_INODE_OVERHEAD),
        "{grown} bytes for 2,000 small files"
    );
}

#[test]
fn small_writes_cost_linear_time_and_copying() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let piece: Vec<u8> = (0..PIECE).map(|i| (i % 13) as u8).collect();
    let measure = |total: u64| {
        let fs = MemFs::new(MemFsOptions::default());
        let before = allocated();
        let started = std::time::Instant::now();
        let (ino, fh) = write_pieces(&fs, "f", total, &piece);
        let took = started.elapsed();
        let bytes = allocated() - before;
        fs.release(&Ctx::root(), ino, fh).unwrap();
        (bytes, took)
    };
    measure(1 << 20); // warm up
    let (small_bytes, small_time) = measure(8 << 20);
    let (big_bytes, big_time) = measure(32 << 20);
    println!(
        "8 MiB: {small_bytes} bytes allocated in {small_time:?}; 32 MiB: {big_bytes} in {big_time:?}"
    );
    // Allocation (and realloc copying) volume is deterministic: it must scale linearly.
    assert!(
        big_bytes <= small_bytes * 4 + small_bytes / 8,
        "allocation grows superlinearly: {small_bytes} for 8 MiB, {big_bytes} for 32 MiB"
    );
    assert!(
        big_bytes <= (32 << 20) * 2,
        "{big_bytes} bytes allocated to store 32 MiB"
    );
    // Time is noisy on a shared machine, so the bound is generous: quadratic behaviour
    // would show as 16x.
    assert!(
        big_time <= small_time * 10 + std::time::Duration::from_millis(200),
        "{small_time:?} vs {big_time:?}"
    );
}
