//! The kernel keeps directory listings (FOPEN_CACHE_DIR): listing a directory again does
//! not reach the daemon, and any change made through the mount shows in the next listing
//! at once. (Changes made behind the mount, in a loopback source, are covered by
//! `loopback.rs::host_changes_appear_through_the_mount`, which checks listings too.)
//! Names found missing are remembered the same way (negative entries), and anything made
//! through the mount under such a name shows at once.
#![cfg(target_os = "linux")]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use common::{Extra, Kind, Mounted, settled_counts};

fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

/// Writes a one-byte file under each name in `dir`; returns the names.
fn make_files(dir: &Path, names: impl Iterator<Item = String>) -> BTreeSet<String> {
    names
        .inspect(|n| std::fs::write(dir.join(n), b"x").unwrap())
        .collect()
}

fn listings(c: &HashMap<String, u64>) -> u64 {
    c.get("readdir").copied().unwrap_or(0) + c.get("readdirplus").copied().unwrap_or(0)
}

#[test]
fn listings_are_cached_and_changes_through_the_mount_show_at_once() {
    let test = "listings_are_cached_and_changes_through_the_mount_show_at_once";
    for (fuse, cached) in [("", true), ("attr_timeout = 0", false)] {
        let Some(m) = Mounted::new(test, Kind::Memfs, Extra::fuse(fuse)) else {
            return;
        };
        let dir = m.path().join("d");
        std::fs::create_dir(&dir).unwrap();
        let mut want = make_files(&dir, (0..300).map(|i| format!("file-{i:04}")));
        let marker = m.path().join("marker");
        std::fs::write(&marker, b"").unwrap();
        assert_eq!(names(&dir), want);
        let first = listings(&settled_counts(m.path(), &marker));
        assert_eq!(names(&dir), want);
        assert_eq!(names(&dir), want);
        let again = listings(&settled_counts(m.path(), &marker));
        if cached {
            assert_eq!(
                again, first,
                "with the default caches a listing seen before comes from the kernel"
            );
        } else {
            assert!(
                again > first,
                "with attr_timeout = 0 every listing reaches the daemon ({first} -> {again})"
            );
        }
        // Every kind of change through the mount shows in the very next listing.
        std::fs::write(dir.join("new"), b"n").unwrap();
        want.insert("new".into());
        assert_eq!(names(&dir), want, "after a create ({fuse:?})");
        std::fs::remove_file(dir.join("file-0000")).unwrap();
        want.remove("file-0000");
        assert_eq!(names(&dir), want, "after an unlink ({fuse:?})");
        std::fs::rename(dir.join("file-0001"), dir.join("renamed")).unwrap();
        want.remove("file-0001");
        want.insert("renamed".into());
        assert_eq!(names(&dir), want, "after a rename ({fuse:?})");
        std::fs::create_dir(dir.join("sub")).unwrap();
        want.insert("sub".into());
        assert_eq!(names(&dir), want, "after a mkdir ({fuse:?})");
        std::os::unix::fs::symlink("new", dir.join("link")).unwrap();
        std::fs::hard_link(dir.join("new"), dir.join("hard")).unwrap();
        want.insert("link".into());
        want.insert("hard".into());
        assert_eq!(names(&dir), want, "after symlink and link ({fuse:?})");
        // A rename into another directory changes both listings.
        std::fs::rename(dir.join("file-0002"), dir.join("sub/moved")).unwrap();
        want.remove("file-0002");
        assert_eq!(names(&dir), want, "source of a cross-directory rename");
        assert_eq!(
            names(&dir.join("sub")),
            BTreeSet::from(["moved".to_owned()])
        );
        std::fs::remove_file(dir.join("sub/moved")).unwrap();
        std::fs::remove_dir(dir.join("sub")).unwrap();
        want.remove("sub");
        assert_eq!(names(&dir), want, "after an rmdir ({fuse:?})");
        m.finish();
    }
}

/// One way of making a name through the mount.
type Make = dyn Fn(&Path);

fn lookups(c: &HashMap<String, u64>) -> u64 {
    c.get("lookup").copied().unwrap_or(0)
}

/// A miss is remembered (`negative_timeout`, an hour for memfs): asking again for a
/// missing name, or creating it, costs no LOOKUP. Every way of making the name through the
/// mount shows at once, and with `negative_timeout = 0` every miss reaches the daemon.
#[test]
fn missing_names_are_remembered_and_made_names_show_at_once() {
    let test = "missing_names_are_remembered_and_made_names_show_at_once";
    for (fuse, remembered) in [("", true), ("negative_timeout = 0", false)] {
        let Some(m) = Mounted::new(test, Kind::Memfs, Extra::fuse(fuse)) else {
            return;
        };
        let mnt = m.path();
        let marker = mnt.join("marker");
        std::fs::write(&marker, b"").unwrap();
        std::fs::write(mnt.join("src"), b"s").unwrap();
        let ways: [(&str, &Make); 5] = [
            ("create", &|p| std::fs::write(p, b"x").unwrap()),
            ("mkdir", &|p| std::fs::create_dir(p).unwrap()),
            ("symlink", &|p| {
                std::os::unix::fs::symlink("src", p).unwrap()
            }),
            ("link", &|p| {
                std::fs::hard_link(p.parent().unwrap().join("src"), p).unwrap()
            }),
            ("rename", &|p| {
                let tmp = p.with_extension("tmp");
                std::fs::write(&tmp, b"r").unwrap();
                std::fs::rename(tmp, p).unwrap();
            }),
        ];
        for (what, make) in ways {
            let ghost = mnt.join(format!("ghost-{what}"));
            let before = lookups(&settled_counts(mnt, &marker));
            for _ in 0..20 {
                assert!(std::fs::symlink_metadata(&ghost).is_err());
            }
            let asked = lookups(&settled_counts(mnt, &marker)) - before;
            if remembered {
                assert!(
                    asked <= 1,
                    "{what}: 20 misses of one name asked {asked} times"
                );
            } else {
                assert!(
                    asked >= 20,
                    "{what}: uncached misses asked only {asked} times"
                );
            }
            make(&ghost);
            assert!(
                std::fs::symlink_metadata(&ghost).is_ok(),
                "{what} of a name remembered missing must show at once ({fuse:?})"
            );
            assert!(names(mnt).contains(ghost.file_name().unwrap().to_str().unwrap()));
        }
        // Removing the name makes it missing again, at once.
        std::fs::remove_file(mnt.join("ghost-create")).unwrap();
        assert!(std::fs::symlink_metadata(mnt.join("ghost-create")).is_err());
        m.finish();
    }
}

/// Reads `dir` with libc's stream: `first` names, then `telldir`, the rest, a `seekdir`
/// back and the rest again, then `rewinddir` and everything.
fn stream_walk(dir: &Path, first: usize) -> (Vec<String>, Vec<String>, Vec<String>, Vec<String>) {
    let c = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string; the stream is closed below and used only meanwhile.
    let d = unsafe { libc::opendir(c.as_ptr()) };
    assert!(!d.is_null(), "opendir {}", dir.display());
    let next = || -> Option<String> {
        loop {
            // SAFETY: `d` is an open stream.
            let e = unsafe { libc::readdir(d) };
            if e.is_null() {
                return None;
            }
            // SAFETY: readdir returned a valid entry with a NUL-terminated name.
            let name = unsafe { std::ffi::CStr::from_ptr((*e).d_name.as_ptr()) };
            let name = name.to_string_lossy().into_owned();
            if name != "." && name != ".." {
                return Some(name);
            }
        }
    };
    let head: Vec<String> = (0..first).map_while(|_| next()).collect();
    // SAFETY: `d` is an open stream.
    let at = unsafe { libc::telldir(d) };
    let rest: Vec<String> = std::iter::from_fn(next).collect();
    // SAFETY: `at` came from telldir on this stream.
    unsafe { libc::seekdir(d, at) };
    let again: Vec<String> = std::iter::from_fn(next).collect();
    // SAFETY: `d` is an open stream.
    unsafe { libc::rewinddir(d) };
    let all: Vec<String> = std::iter::from_fn(next).collect();
    // SAFETY: `d` is an open stream, closed once.
    unsafe { libc::closedir(d) };
    (head, rest, again, all)
}

/// Where nobody's permission to read a directory needs checking at its open (the kernel
/// checks them, `default_permissions`, or only root can reach the mount), OPENDIR is
/// answered "not implemented", which tells the kernel that directories need no open:
/// listings then send neither OPENDIR nor RELEASEDIR and are served without a handle,
/// and they stay right, `telldir`/`seekdir`/`rewinddir` across several READDIR calls
/// included. OPENDIR stays where another user's open of a directory they may not read
/// must fail at the open (`allow_other` with the filesystem checking permissions), and
/// where listings are not cached (`attr_timeout = 0`), since the kernel caches the
/// listings of directories it opens without OPENDIR.
#[test]
fn directories_open_without_a_round_trip_where_no_check_is_needed() {
    let test = "directories_open_without_a_round_trip_where_no_check_is_needed";
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut cases = vec![
        (Kind::Memfs, ""),
        (Kind::Loopback, ""),
        (Kind::Memfs, "attr_timeout = 0"),
        (Kind::Loopback, "attr_timeout = 0"),
    ];
    if root {
        // A non-root user needs user_allow_other in /etc/fuse.conf for these.
        cases.extend([
            (Kind::Memfs, "allow_other = true"),
            (Kind::Loopback, "allow_other = true"),
            (
                Kind::Memfs,
                "allow_other = true\ndefault_permissions = true",
            ),
        ]);
    }
    for (kind, fuse) in cases {
        let Some(m) = Mounted::new(test, kind, Extra::fuse(fuse)) else {
            return;
        };
        // Which filesystems check permissions themselves (then the kernel does not,
        // unless told to): memfs always, loopback only under a root daemon.
        let kernel_checks =
            fuse.contains("default_permissions = true") || (kind == Kind::Loopback && !root);
        let cached = !fuse.contains("attr_timeout = 0");
        let only_root = root && !fuse.contains("allow_other");
        let skipped = cached && (kernel_checks || only_root);
        let what = format!("{kind:?} with {fuse:?}");

        let dir = m.path().join("d");
        std::fs::create_dir(&dir).unwrap();
        std::fs::create_dir(dir.join("sub")).unwrap();
        // Enough long names for several READDIR replies.
        let mut want = make_files(
            &dir,
            (0..600).map(|i| format!("a-rather-long-file-name-to-fill-replies-{i:04}")),
        );
        want.insert("sub".to_owned());
        let marker = m.path().join("marker");
        std::fs::write(&marker, b"").unwrap();
        for _ in 0..3 {
            assert_eq!(names(&dir), want, "{what}");
            assert!(names(&dir.join("sub")).is_empty(), "{what}");
        }
        let (head, rest, again, all) = stream_walk(&dir, 250);
        assert_eq!(head.len(), 250, "{what}");
        assert_eq!(rest, again, "seekdir back to telldir's place ({what})");
        let mut walked: Vec<String> = head.into_iter().chain(rest).collect();
        walked.sort();
        assert_eq!(walked, want.iter().cloned().collect::<Vec<_>>(), "{what}");
        let mut all = all;
        all.sort();
        assert_eq!(all, walked, "after rewinddir ({what})");
        // fsync of a directory (FSYNCDIR, without a handle where OPENDIR is skipped).
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .unwrap_or_else(|e| panic!("fsync of a directory ({what}): {e}"));
        // A change shows in the next listing.
        std::fs::remove_file(dir.join("a-rather-long-file-name-to-fill-replies-0007")).unwrap();
        want.remove("a-rather-long-file-name-to-fill-replies-0007");
        assert_eq!(names(&dir), want, "after an unlink ({what})");

        let c = settled_counts(m.path(), &marker);
        let opens = c.get("opendir").copied().unwrap_or(0);
        let releases = c.get("releasedir").copied().unwrap_or(0);
        if skipped {
            assert_eq!(
                (opens, releases),
                (0, 0),
                "no OPENDIR/RELEASEDIR for {what}"
            );
        } else {
            assert!(opens >= 8, "{what}: {opens} OPENDIRs");
            assert!(releases >= 1, "{what}: {releases} RELEASEDIRs");
        }
        assert!(listings(&c) > 0, "{what}");
        m.finish();
    }
}
