//! Many threads on one filesystem: data, directory and rename races.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::*;

const THREADS: u64 = 8;
const LIMIT: Duration = Duration::from_secs(120);

/// 8 threads write disjoint ranges of one file, some 64 KiB-aligned, some unaligned,
/// interleaved, half through handles and half without; the result is byte-exact.
pub fn concurrent_writes_to_disjoint_ranges(fx: &dyn Fixture) {
    let fs = fx.vfs().clone();
    let ino = touch(&*fs, Ino::ROOT, "f").ino;
    const BLOCK: u64 = 64 * 1024;
    const ODD: u64 = 10_007;
    let odd_base = THREADS * BLOCK + 1_234;
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let fs = fs.clone();
            std::thread::spawn(move || {
                let root = Ctx::root();
                let fh = if t % 2 == 0 {
                    Some(ok!(fs.open(&root, ino, OpenFlags::WRITE)).fh)
                } else {
                    None
                };
                for round in 0..5u64 {
                    let seed = t + round * THREADS;
                    // Aligned block in 16 KiB pieces, unaligned range in 997-byte pieces,
                    // alternating so that threads overlap in time as much as possible.
                    let mut a = t * BLOCK;
                    let mut b = odd_base + t * ODD;
                    while a < (t + 1) * BLOCK || b < odd_base + (t + 1) * ODD {
                        if a < (t + 1) * BLOCK {
                            write_at(&*fs, ino, fh, a, &pattern(seed, a, 16 * 1024));
                            a += 16 * 1024;
                        }
                        if b < odd_base + (t + 1) * ODD {
                            let n = 997.min(odd_base + (t + 1) * ODD - b);
                            write_at(&*fs, ino, fh, b, &pattern(seed, b, n as usize));
                            b += n;
                        }
                    }
                }
                if let Some(fh) = fh {
                    ok!(fs.release(&root, ino, fh));
                }
            })
        })
        .collect();
    join_all(handles, LIMIT);
    let data = contents(&*fs, ino);
    assert_eq!(data.len() as u64, odd_base + THREADS * ODD);
    let last = 4 * THREADS;
    for t in 0..THREADS {
        let (a, b) = ((t * BLOCK) as usize, (odd_base + t * ODD) as usize);
        let want_a = pattern(t + last, a as u64, BLOCK as usize);
        let want_b = pattern(t + last, b as u64, ODD as usize);
        assert!(
            data[a..a + BLOCK as usize] == want_a[..],
            "aligned range of thread {t}"
        );
        assert!(
            data[b..b + ODD as usize] == want_b[..],
            "unaligned range of thread {t}"
        );
    }
    let gap = &data[(THREADS * BLOCK) as usize..odd_base as usize];
    assert!(
        gap.iter().all(|&x| x == 0),
        "the unwritten gap reads as zeros"
    );
}

/// 8 threads append fixed-size records through `APPEND` handles at once: no record is
/// lost, torn or overwritten.
pub fn concurrent_appends_do_not_interleave(fx: &dyn Fixture) {
    let fs = fx.vfs().clone();
    let ino = touch(&*fs, Ino::ROOT, "log").ino;
    const RECORDS: usize = 200;
    const LEN: usize = 100;
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let fs = fs.clone();
            std::thread::spawn(move || {
                let root = Ctx::root();
                let opened = ok!(fs.open(&root, ino, OpenFlags::WRITE | OpenFlags::APPEND));
                for i in 0..RECORDS {
                    let mut rec = format!("thread {t} record {i:04} ").into_bytes();
                    rec.resize(LEN - 1, b'.');
                    rec.push(b'\n');
                    write_at(&*fs, ino, Some(opened.fh), 0, &rec);
                }
                ok!(fs.release(&root, ino, opened.fh));
            })
        })
        .collect();
    join_all(handles, LIMIT);
    let data = contents(&*fs, ino);
    assert_eq!(data.len(), THREADS as usize * RECORDS * LEN);
    let mut next = vec![0usize; THREADS as usize];
    for rec in data.chunks(LEN) {
        let text = String::from_utf8_lossy(rec);
        let mut words = text.split(' ');
        assert_eq!(words.next(), Some("thread"), "torn record {text:?}");
        let t: usize = words
            .next()
            .and_then(|w| w.parse().ok())
            .expect("thread number");
        assert_eq!(words.next(), Some("record"), "torn record {text:?}");
        let i: usize = words
            .next()
            .and_then(|w| w.parse().ok())
            .expect("record number");
        assert_eq!(i, next[t], "thread {t}'s records out of order or lost");
        next[t] += 1;
        assert!(rec.ends_with(b".\n"));
    }
    assert!(next.iter().all(|&n| n == RECORDS));
}

/// 8 threads create and remove distinct files and directories in one directory while
/// another thread keeps listing it: listings never repeat a name nor miss a stable
/// entry, and the end state (names and nlink) is exact.
pub fn concurrent_create_unlink_while_listing(fx: &dyn Fixture) {
    let fs = fx.vfs().clone();
    let dir = mkdir(&*fs, Ino::ROOT, "dir", 0o755);
    for i in 0..100 {
        touch(&*fs, dir, &format!("stable-{i:03}"));
    }
    let done = Arc::new(AtomicBool::new(false));
    let lister = {
        let (fs, done) = (fs.clone(), done.clone());
        std::thread::spawn(move || {
            let mut passes = 0;
            while !done.load(Ordering::Relaxed) || passes < 3 {
                let mut after = 0;
                let mut seen = HashSet::new();
                loop {
                    let mut sink = VecSink {
                        limit: Some(7),
                        plus: passes % 2 == 0,
                        ..VecSink::default()
                    };
                    ok!(fs.readdir(&Ctx::root(), dir, None, after, &mut sink));
                    let Some(last) = sink.entries.last() else {
                        break;
                    };
                    after = last.cookie;
                    for e in &sink.entries {
                        assert!(seen.insert(e.name.clone()), "{:?} listed twice", e.name);
                    }
                }
                for i in 0..100 {
                    let name = OsString::from(format!("stable-{i:03}"));
                    assert!(seen.contains(&name), "pass {passes}: {name:?} missing");
                }
                passes += 1;
            }
            passes
        })
    };
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let fs = fs.clone();
            std::thread::spawn(move || {
                let root = Ctx::root();
                for i in 0..150 {
                    let name = format!("t{t}-f{i:03}");
                    touch(&*fs, dir, &name);
                    if i % 2 == 1 {
                        ok!(fs.unlink(&root, dir, os(&name)));
                    }
                    if i % 5 == 0 {
                        let d = format!("t{t}-d{i:03}");
                        ok!(fs.mkdir(&root, dir, os(&d), 0o755));
                        if i % 10 == 0 {
                            ok!(fs.rmdir(&root, dir, os(&d)));
                        }
                    }
                }
            })
        })
        .collect();
    join_all(workers, LIMIT);
    done.store(true, Ordering::Relaxed);
    let passes = join_all(vec![lister], LIMIT)[0];
    assert!(passes >= 3);
    let now = names(&*fs, dir);
    let mut want: HashSet<String> = (0..100).map(|i| format!("stable-{i:03}")).collect();
    for t in 0..THREADS {
        for i in (0..150).step_by(2) {
            want.insert(format!("t{t}-f{i:03}"));
        }
        for i in (5..150).step_by(10) {
            want.insert(format!("t{t}-d{i:03}"));
        }
    }
    let got: HashSet<String> = now
        .keys()
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    assert_eq!(got, want);
    assert_eq!(getattr(&*fs, dir).nlink, 2 + 15 * THREADS as u32);
}

/// Threads move files and directories back and forth between two directories, racing
/// for the same names: at the end every object is in exactly one place with its inode,
/// and both parents' nlink match their subdirectories.
pub fn concurrent_renames_between_two_dirs(fx: &dyn Fixture) {
    let fs = fx.vfs().clone();
    let a = mkdir(&*fs, Ino::ROOT, "a", 0o755);
    let b = mkdir(&*fs, Ino::ROOT, "b", 0o755);
    let mut objects = BTreeMap::new();
    for i in 0..40 {
        let name = format!("obj-{i:02}");
        let ino = if i % 5 == 0 {
            let d = mkdir(&*fs, a, &name, 0o755);
            touch(&*fs, d, "inside");
            d
        } else {
            file_with(&*fs, a, &name, name.as_bytes())
        };
        objects.insert(name, ino);
    }
    let count_before = fx.inode_count();
    let names: Arc<Vec<String>> = Arc::new(objects.keys().cloned().collect());
    let handles: Vec<_> = (0..THREADS as usize)
        .map(|t| {
            let (fs, names) = (fs.clone(), names.clone());
            std::thread::spawn(move || {
                let root = Ctx::root();
                let plain = RenameFlags::empty();
                let mut moved = 0;
                for i in 0..400 {
                    let name = os(&names[(t * 7919 + i * 31) % names.len()]);
                    let (from, to) = if (t + i) % 2 == 0 { (a, b) } else { (b, a) };
                    for (x, y) in [(from, to), (to, from)] {
                        match fs.rename(&root, x, name, y, name, plain) {
                            Ok(()) => {
                                moved += 1;
                                break;
                            }
                            Err(VfsError::NotFound) => {} // another thread moved it first
                            Err(e) => panic!("rename {name:?}: {e:?}"),
                        }
                    }
                }
                moved
            })
        })
        .collect();
    let moved: usize = join_all(handles, LIMIT).into_iter().sum();
    assert!(moved > 0);
    let in_a = names_of(&*fs, a);
    let in_b = names_of(&*fs, b);
    for (name, ino) in &objects {
        let name = OsString::from(name);
        let places = [in_a.get(&name), in_b.get(&name)];
        let found: Vec<_> = places.iter().flatten().collect();
        assert_eq!(found.len(), 1, "{name:?} is in {} places", found.len());
        assert_eq!(found[0].0, *ino, "{name:?} changed inode");
    }
    assert_eq!(
        in_a.len() + in_b.len(),
        objects.len(),
        "no extra names appeared"
    );
    for (dir, listed) in [(a, &in_a), (b, &in_b)] {
        let subdirs = listed
            .values()
            .filter(|(_, k)| *k == FileType::Directory)
            .count();
        assert_eq!(
            getattr(&*fs, dir).nlink,
            2 + subdirs as u32,
            "nlink of {dir:?}"
        );
    }
    for (name, ino) in &objects {
        if name.ends_with('0') || name.ends_with('5') {
            assert_eq!(name_list(&*fs, *ino), ["inside"]);
        } else {
            assert_eq!(contents(&*fs, *ino), name.as_bytes());
        }
    }
    if let (Some(before), Some(after)) = (count_before, fx.inode_count()) {
        assert_eq!(before, after, "renames neither create nor free inodes");
    }
}

/// Two threads each try to move one of two sibling directories into the other, over
/// and over: a filesystem without a proper rename lock can end with each inside the
/// other, detached from the root. Both must stay reachable.
pub fn concurrent_cross_renames_never_make_a_cycle(fx: &dyn Fixture) {
    let fs = fx.vfs().clone();
    let x = mkdir(&*fs, Ino::ROOT, "x", 0o755);
    let y = mkdir(&*fs, Ino::ROOT, "y", 0o755);
    let handles: Vec<_> = [(y, "x"), (x, "y")]
        .into_iter()
        .map(|(other, name)| {
            let fs = fs.clone();
            std::thread::spawn(move || {
                let root = Ctx::root();
                let plain = RenameFlags::empty();
                for _ in 0..2000 {
                    // Into the other directory, then back to the root.
                    match fs.rename(&root, Ino::ROOT, os(name), other, os(name), plain) {
                        Ok(()) => {
                            ok!(fs.rename(&root, other, os(name), Ino::ROOT, os(name), plain))
                        }
                        Err(VfsError::InvalidArgument | VfsError::NotFound) => {}
                        Err(e) => panic!("rename {name}: {e:?}"),
                    }
                }
            })
        })
        .collect();
    join_all(handles, LIMIT);
    assert_eq!(name_list(&*fs, Ino::ROOT), ["x", "y"]);
    assert!(list(&*fs, x).is_empty() && list(&*fs, y).is_empty());
    assert_eq!(getattr(&*fs, Ino::ROOT).nlink, 4);
    assert_eq!((getattr(&*fs, x).nlink, getattr(&*fs, y).nlink), (2, 2));
}

fn names_of(fs: &dyn Vfs, dir: Ino) -> BTreeMap<OsString, (Ino, FileType)> {
    list(fs, dir)
        .into_iter()
        .map(|e| (e.name, (e.ino, e.kind)))
        .collect()
}
