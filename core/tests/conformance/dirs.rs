//! readdir: completeness, attributes, cookies and their stability under change.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::*;

/// Checks the invariants every entry must keep: real name, valid cookie.
fn check_entry(e: &OwnedDirEntry) {
    assert!(
        e.name != "." && e.name != "..",
        "readdir returned {:?}",
        e.name
    );
    assert!(!e.name.is_empty(), "readdir returned an empty name");
    assert!(
        e.cookie != 0 && e.cookie < 1 << 63,
        "{:?}: cookie {:#x}",
        e.name,
        e.cookie
    );
    assert_ne!(e.ino, Ino(0));
}

/// Lists `dir` in pages of at most `page` entries, optionally through a handle, calling
/// `between` after each page; returns every entry in order.
fn paged(
    fs: &dyn Vfs,
    dir: Ino,
    fh: Option<Fh>,
    page: usize,
    mut between: impl FnMut(usize),
) -> Vec<OwnedDirEntry> {
    let mut all = Vec::new();
    let mut after = 0;
    for round in 0.. {
        let mut sink = VecSink {
            limit: Some(page),
            plus: round % 2 == 0,
            ..VecSink::default()
        };
        ok!(fs.readdir(&Ctx::root(), dir, fh, after, &mut sink));
        assert!(sink.entries.len() <= page);
        let Some(last) = sink.entries.last() else {
            break;
        };
        after = last.cookie;
        for e in &sink.entries {
            check_entry(e);
        }
        all.extend(sink.entries);
        between(round);
        assert!(round < 1_000_000, "readdir never ends");
    }
    all
}

/// Builds a directory with files, subdirectories and (if supported) symlinks and fifos.
fn populated(fx: &dyn Fixture, n: usize) -> (Ino, BTreeMap<OsString, Attr>) {
    let fs = &**fx.vfs();
    let root = Ctx::root();
    let caps = fx.vfs().capabilities();
    let dir = mkdir(fs, Ino::ROOT, "dir", 0o755);
    let mut expected = BTreeMap::new();
    for i in 0..n {
        let name = format!("entry-{i:04}");
        let attr = match i % 4 {
            0 => ok!(fs.mkdir(&root, dir, os(&name), 0o700)),
            1 if caps.symlinks => ok!(fs.symlink(&root, dir, os(&name), os("target"))),
            2 if caps.special_files => {
                ok!(fs.mknod(&root, dir, os(&name), FileType::Fifo, 0o600, 0))
            }
            _ => {
                let ino = file_with(fs, dir, &name, &vec![b'x'; i]);
                getattr(fs, ino)
            }
        };
        expected.insert(OsString::from(name), attr);
    }
    (dir, expected)
}

/// One listing returns every entry exactly once, with attributes equal to `getattr`'s
/// when the sink wants them, through a handle or without.
pub fn readdir_lists_every_entry_once_with_attrs(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let root = Ctx::root();
    let (dir, expected) = populated(fx, 40);
    let dh = ok!(fs.opendir(&root, dir, OpenFlags::READ));
    for fh in [Some(dh), None] {
        let mut sink = VecSink {
            plus: true,
            ..VecSink::default()
        };
        ok!(fs.readdir(&root, dir, fh, 0, &mut sink));
        assert_eq!(sink.entries.len(), expected.len());
        let mut seen = HashSet::new();
        let mut cookies = HashSet::new();
        for e in &sink.entries {
            check_entry(e);
            assert!(seen.insert(e.name.clone()), "{:?} listed twice", e.name);
            assert!(cookies.insert(e.cookie), "cookie {} given twice", e.cookie);
            let want = expected
                .get(&e.name)
                .unwrap_or_else(|| panic!("unexpected {:?}", e.name));
            assert_eq!((e.ino, e.kind), (want.ino, want.kind), "{:?}", e.name);
            let attr = e
                .attr
                .unwrap_or_else(|| panic!("{:?} has no attributes", e.name));
            assert_same_inode(&attr, &getattr(fs, e.ino));
        }
        let mut plain = VecSink::default();
        ok!(fs.readdir(&root, dir, fh, 0, &mut plain));
        let a: Vec<_> = sink
            .entries
            .iter()
            .map(|e| (&e.name, e.ino, e.kind, e.cookie))
            .collect();
        let b: Vec<_> = plain
            .entries
            .iter()
            .map(|e| (&e.name, e.ino, e.kind, e.cookie))
            .collect();
        assert_eq!(
            a, b,
            "a listing without attributes has the same entries and cookies"
        );
    }
    ok!(fs.releasedir(&root, dir, dh));
    // An empty directory lists nothing, from any cookie.
    let empty = mkdir(fs, Ino::ROOT, "empty", 0o755);
    assert!(list(fs, empty).is_empty());
}

/// Resuming from the cookie of entry i yields exactly entries i+1.. of the full listing.
pub fn readdir_resumes_from_every_cookie(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let root = Ctx::root();
    let (dir, _) = populated(fx, 50);
    let full = list(fs, dir);
    assert_eq!(full.len(), 50);
    for (i, e) in full.iter().enumerate() {
        let mut sink = VecSink::default();
        ok!(fs.readdir(&root, dir, None, e.cookie, &mut sink));
        let got: Vec<_> = sink.entries.iter().map(|x| (&x.name, x.cookie)).collect();
        let want: Vec<_> = full[i + 1..].iter().map(|x| (&x.name, x.cookie)).collect();
        assert_eq!(got, want, "resuming after entry {i} ({:?})", e.name);
    }
    // Resuming after the last cookie gives nothing.
    let last = full.last().map(|e| e.cookie).unwrap_or(0);
    let mut sink = VecSink::default();
    ok!(fs.readdir(&root, dir, None, last, &mut sink));
    assert!(sink.entries.is_empty());
}

/// Pages of 7 through 1,000 entries return each exactly once.
pub fn readdir_pages_of_seven_through_1000_entries(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let root = Ctx::root();
    let dir = mkdir(fs, Ino::ROOT, "big", 0o755);
    for i in 0..1000 {
        touch(fs, dir, &format!("{i}"));
    }
    let dh = ok!(fs.opendir(&root, dir, OpenFlags::READ));
    for fh in [Some(dh), None] {
        let mut pages = 0;
        let all = paged(fs, dir, fh, 7, |_| pages += 1);
        assert_eq!(pages, 1000usize.div_ceil(7));
        let mut seen = HashSet::new();
        for e in &all {
            assert!(seen.insert(e.name.clone()), "{:?} returned twice", e.name);
        }
        assert_eq!(seen.len(), 1000);
        for i in 0..1000 {
            assert!(
                seen.contains(&OsString::from(format!("{i}"))),
                "{i} missing"
            );
        }
    }
    ok!(fs.releasedir(&root, dir, dh));
}

/// Between pages, other entries are added and removed, including the entry whose cookie
/// the listing resumes from; entries present throughout come exactly once and nothing
/// comes twice.
pub fn readdir_cookies_survive_interleaved_changes(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let root = Ctx::root();
    let dir = mkdir(fs, Ino::ROOT, "dir", 0o755);
    // Stable entries interleaved with churn entries, so removals hit every position.
    for i in 0..300 {
        touch(fs, dir, &format!("stable-{i:03}"));
        touch(fs, dir, &format!("churn-{i:03}"));
    }
    let mut churn: Vec<String> = (0..300).map(|i| format!("churn-{i:03}")).collect();
    let mut next_new = 0;
    let mut pages = 0usize;
    let mut all: Vec<OwnedDirEntry> = Vec::new();
    let mut after = 0;
    loop {
        let mut sink = VecSink {
            limit: Some(7),
            ..VecSink::default()
        };
        ok!(fs.readdir(&root, dir, None, after, &mut sink));
        let Some(last) = sink.entries.last().cloned() else {
            break;
        };
        after = last.cookie;
        all.extend(sink.entries);
        // Remove the entry we resume from, if it is a churn entry.
        let last_name = last.name.to_string_lossy().into_owned();
        if let Some(pos) = churn.iter().position(|n| *n == last_name) {
            ok!(fs.unlink(&root, dir, os(&churn.swap_remove(pos))));
        }
        // Remove two more churn entries and add three new ones (names never reused).
        // Additions stop after 100 pages: a listing that keeps meeting fresh entries at
        // its tail legitimately never ends.
        pages += 1;
        for _ in 0..2 {
            if !churn.is_empty() {
                let victim = churn.swap_remove((pages * 7919) % churn.len());
                ok!(fs.unlink(&root, dir, os(&victim)));
            }
        }
        for _ in 0..if pages <= 100 { 3 } else { 0 } {
            let name = format!("new-{next_new:05}");
            next_new += 1;
            touch(fs, dir, &name);
            churn.push(name);
        }
        assert!(all.len() < 100_000, "listing does not terminate");
    }
    let mut seen = HashMap::new();
    for e in &all {
        check_entry(e);
        *seen.entry(e.name.clone()).or_insert(0) += 1;
    }
    for (name, count) in &seen {
        assert_eq!(*count, 1, "{name:?} returned {count} times");
    }
    for i in 0..300 {
        let name = OsString::from(format!("stable-{i:03}"));
        assert!(
            seen.contains_key(&name),
            "{name:?} (present throughout) missing"
        );
    }
    // Afterwards the directory lists exactly what is there.
    let now = names(fs, dir);
    assert_eq!(now.len(), 300 + churn.len());
}

/// While one thread pages through a directory, others create and remove other entries
/// (names never reused); entries present throughout appear exactly once per pass.
///
/// The writers make a fixed number of entries rather than run until told to stop: a
/// pass that keeps meeting fresh entries at its tail may legitimately never end.
pub fn readdir_cookies_survive_concurrent_changes(fx: &dyn Fixture) {
    let fs = fx.vfs().clone();
    let dir = mkdir(&*fs, Ino::ROOT, "dir", 0o755);
    for i in 0..400 {
        touch(&*fs, dir, &format!("stable-{i:03}"));
    }
    let finished = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..2)
        .map(|t| {
            let (fs, finished) = (fs.clone(), finished.clone());
            std::thread::spawn(move || {
                let root = Ctx::root();
                let mut live = Vec::new();
                for n in 0..2000usize {
                    let name = format!("w{t}-{n:06}");
                    touch(&*fs, dir, &name);
                    live.push(name);
                    if live.len() > 50 {
                        let victim = live.swap_remove((n * 31) % live.len());
                        ok!(fs.unlink(&root, dir, os(&victim)));
                    }
                }
                finished.fetch_add(1, Ordering::SeqCst);
                live.len()
            })
        })
        .collect();
    let mut pass = 0;
    while pass < 3 || finished.load(Ordering::SeqCst) < 2 {
        let all = paged(&*fs, dir, None, 7, |_| {});
        let mut seen = HashSet::new();
        for e in &all {
            assert!(
                seen.insert(e.name.clone()),
                "pass {pass}: {:?} returned twice",
                e.name
            );
        }
        for i in 0..400 {
            let name = OsString::from(format!("stable-{i:03}"));
            assert!(seen.contains(&name), "pass {pass}: {name:?} missing");
        }
        pass += 1;
    }
    let live: usize = join_all(writers, Duration::from_secs(120))
        .into_iter()
        .sum();
    assert_eq!(names(&*fs, dir).len(), 400 + live);
}

/// readdir and opendir on a non-directory are `NotDir`.
pub fn readdir_on_a_file_is_notdir(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let root = Ctx::root();
    let f = touch(fs, Ino::ROOT, "f").ino;
    let mut sink = VecSink::default();
    expect_err!(fs.readdir(&root, f, None, 0, &mut sink), VfsError::NotDir);
    expect_err!(fs.opendir(&root, f, OpenFlags::READ), VfsError::NotDir);
    assert!(sink.entries.is_empty());
}
