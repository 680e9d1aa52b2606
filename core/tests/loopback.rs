//! Loopback-specific behaviour beyond the conformance suite: identity, table lifetime,
//! read-only, ownership through credential switching, and live host changes.
#![cfg(target_os = "linux")]

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use vmount_core::loopback::{Loopback, LoopbackOptions};
use vmount_core::*;

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// A loopback over a fresh 0o755 temp dir.
fn setup(read_only: bool) -> (tempfile::TempDir, Arc<Loopback>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let fs = open(dir.path(), read_only);
    (dir, fs)
}

fn open(path: &Path, read_only: bool) -> Arc<Loopback> {
    Arc::new(
        Loopback::new(LoopbackOptions {
            source: path.to_path_buf(),
            read_only,
        })
        .unwrap(),
    )
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

const RW: OpenFlags = OpenFlags::READ.union(OpenFlags::WRITE);

#[test]
fn source_must_be_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), b"x").unwrap();
    let opts = |p: &Path| LoopbackOptions {
        source: p.to_path_buf(),
        read_only: false,
    };
    assert!(matches!(
        Loopback::new(opts(&dir.path().join("f"))),
        Err(VfsError::NotDir)
    ));
    assert!(matches!(
        Loopback::new(opts(&dir.path().join("missing"))),
        Err(VfsError::NotFound)
    ));
}

#[test]
fn hard_links_share_one_inode_and_the_host_nlink() {
    let (dir, fs) = setup(false);
    let root = Ctx::root();
    let (a, o) = fs.create(&root, Ino::ROOT, os("a"), 0o644, RW).unwrap();
    fs.release(&root, a.ino, o.fh).unwrap();
    let b = fs.link(&root, a.ino, Ino::ROOT, os("b")).unwrap();
    assert_eq!((b.ino, b.nlink), (a.ino, 2));
    // A link made directly on the host is the same inode too.
    std::fs::hard_link(dir.path().join("a"), dir.path().join("c")).unwrap();
    let c = fs.lookup(&root, Ino::ROOT, os("c")).unwrap();
    assert_eq!((c.ino, c.nlink), (a.ino, 3));
    assert_eq!(fs.getattr(&root, a.ino, None).unwrap().nlink, 3);
    assert_eq!(std::fs::metadata(dir.path().join("b")).unwrap().nlink(), 3);
    // One table entry for all three names (root + a).
    assert_eq!(fs.inode_count(), 2);
}

/// A removed object leaves the table, and so the host frees it, when the call that
/// removed it returns, or at its last close while it is open: not at the kernel's forget,
/// which comes a moment later, so that a write right after `rm` on a full source finds
/// the space free. Whatever the adapters attached say about forgetting, and whether or
/// not the source is watched. Each case removes a file by unlink, a directory by rmdir,
/// a file replaced by rename, and a file unlinked while open whose forget comes before
/// its release and one whose forget comes after; no forget is sent before the checks.
#[test]
fn removed_objects_leave_at_the_removal_or_the_last_release() {
    let root = Ctx::root();
    let cases: &[(&[bool], bool)] = &[
        (&[], false),
        (&[true], false),
        (&[true], true),
        (&[false], false),
        (&[true, false], false),
    ];
    for &(attached, watched) in cases {
        if watched && !is_root() {
            eprintln!("skipping the watched case: the watcher needs root");
            continue;
        }
        let (dir, fs) = setup(false);
        if watched {
            assert!(fs.watch_changes(Arc::new(Recorded::default())));
        }
        for &forgets in attached {
            fs.attach(forgets);
        }
        let case = format!("{attached:?}, watched: {watched}");
        let base = fs.inode_count();
        let file = |name: &str| {
            let (a, o) = fs.create(&root, Ino::ROOT, os(name), 0o644, RW).unwrap();
            (a.ino, o.fh)
        };
        let (f, fh) = file("f");
        fs.release(&root, f, fh).unwrap();
        let d = fs.mkdir(&root, Ino::ROOT, os("d"), 0o755).unwrap().ino;
        let (t, th) = file("t");
        fs.release(&root, t, th).unwrap();
        let (g, gh) = file("g");
        fs.release(&root, g, gh).unwrap();
        let (early, early_h) = file("early");
        let (late, late_h) = file("late");
        assert_eq!(fs.inode_count(), base + 6);
        fs.unlink(&root, Ino::ROOT, os("f")).unwrap();
        fs.rmdir(&root, Ino::ROOT, os("d")).unwrap();
        fs.rename(
            &root,
            Ino::ROOT,
            os("g"),
            Ino::ROOT,
            os("t"),
            RenameFlags::empty(),
        )
        .unwrap();
        fs.unlink(&root, Ino::ROOT, os("early")).unwrap();
        fs.unlink(&root, Ino::ROOT, os("late")).unwrap();
        // g lives on as t; the open ones stay while open.
        assert_eq!(fs.inode_count(), base + 3, "after the removals, {case}");
        for ino in [f, d, t] {
            fs.forget(ino, 1);
        }
        assert_eq!(fs.inode_count(), base + 3, "after their forgets, {case}");
        fs.forget(early, 1);
        fs.release(&root, early, early_h).unwrap();
        fs.release(&root, late, late_h).unwrap();
        assert_eq!(fs.inode_count(), base + 1, "after the releases, {case}");
        fs.forget(late, 1);
        assert_eq!(fs.inode_count(), base + 1, "after the last forget, {case}");
        assert_eq!(fs.getattr(&root, g, None).unwrap().ino, g);
        let mut left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        left.sort();
        assert_eq!(left, ["t"]);
    }
}

/// A read-only open of a file or directory opens nothing on the host until the daemon
/// needs a descriptor: the kernel reads a passthrough file through a backing file made
/// from the entry's own `O_PATH` descriptor. The caller's permission is still checked at
/// the open, as the host open did; afterwards the handle reads as the daemon (POSIX:
/// access is decided at open). Reads, lseek, fsync, getattr by handle and readdir work
/// on deferred handles.
#[test]
fn read_only_opens_defer_the_host_open() {
    let (dir, fs) = setup(false);
    let root = Ctx::root();
    std::fs::write(dir.path().join("f"), b"hello").unwrap();
    std::fs::create_dir(dir.path().join("d")).unwrap();
    std::fs::write(dir.path().join("d/x"), b"").unwrap();
    let f = fs.lookup(&root, Ino::ROOT, os("f")).unwrap().ino;
    let d = fs.lookup(&root, Ino::ROOT, os("d")).unwrap().ino;

    let o = fs.open(&root, f, OpenFlags::READ).unwrap();
    // Not yet known to take an O_PATH backing file (no registry said so): the handle's
    // own descriptor, opened now.
    let backing = fs
        .passthrough_fd(f, o.fh)
        .expect("a read-only file is passed through");
    assert_eq!(open_mode(&backing) & libc::O_PATH, 0);
    assert_eq!(fs.getattr(&root, f, Some(o.fh)).unwrap().size, 5);
    let mut buf = [0u8; 16];
    assert_eq!(fs.read(&root, f, Some(o.fh), 1, &mut buf).unwrap(), 4);
    assert_eq!(&buf[..4], b"ello");
    assert_eq!(fs.lseek(&root, f, Some(o.fh), 0, Whence::Data).unwrap(), 0);
    fs.fsync(&root, f, Some(o.fh), false).unwrap();
    fs.release(&root, f, o.fh).unwrap();

    let dh = fs.opendir(&root, d, OpenFlags::READ).unwrap();
    let mut sink = VecSink::default();
    fs.readdir(&root, d, Some(dh), 0, &mut sink).unwrap();
    assert!(sink.entries.iter().any(|e| e.name == "x"));
    fs.fsyncdir(&root, d, Some(dh), false).unwrap();
    fs.releasedir(&root, d, dh).unwrap();
    // A directory handle never read is simply released.
    let dh = fs.opendir(&root, d, OpenFlags::READ).unwrap();
    fs.releasedir(&root, d, dh).unwrap();

    if !is_root() {
        eprintln!("skipping the permission checks: they switch credentials, which needs root");
        return;
    }
    let nobody = Ctx::new(65534, 65534, 0);
    let mode = |p: &str, m: u32| {
        std::fs::set_permissions(dir.path().join(p), std::fs::Permissions::from_mode(m)).unwrap()
    };
    mode("f", 0o600);
    mode("d", 0o700);
    assert!(matches!(
        fs.open(&nobody, f, OpenFlags::READ),
        Err(VfsError::PermissionDenied)
    ));
    assert!(matches!(
        fs.opendir(&nobody, d, OpenFlags::READ),
        Err(VfsError::PermissionDenied)
    ));
    mode("f", 0o644);
    mode("d", 0o755);
    let o = fs.open(&nobody, f, OpenFlags::READ).unwrap();
    let dh = fs.opendir(&nobody, d, OpenFlags::READ).unwrap();
    // Taken away after the open: the handles read on, as a host descriptor would.
    mode("f", 0o600);
    mode("d", 0o700);
    assert_eq!(fs.read(&nobody, f, Some(o.fh), 0, &mut buf).unwrap(), 5);
    let mut sink = VecSink::default();
    fs.readdir(&nobody, d, Some(dh), 0, &mut sink).unwrap();
    assert!(sink.entries.iter().any(|e| e.name == "x"));
    fs.release(&nobody, f, o.fh).unwrap();
    fs.releasedir(&nobody, d, dh).unwrap();
}

/// `F_GETFL` of a descriptor.
fn open_mode(fd: &impl std::os::fd::AsRawFd) -> libc::c_int {
    // SAFETY: F_GETFL on a descriptor the caller owns.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) }
}

/// Stands in for a FUSE connection's backing registry: holds each registered file, as
/// the kernel does, until its id is ended. `refuse` refuses everything (no privilege);
/// `no_o_path` refuses `O_PATH` descriptors with EBADF, as Linux 6.9-6.11 do.
#[derive(Default)]
struct Registry {
    held: parking_lot::Mutex<std::collections::HashMap<u32, std::os::fd::OwnedFd>>,
    registered: std::sync::atomic::AtomicU32,
    refuse: bool,
    no_o_path: bool,
}

impl BackingRegistry for Registry {
    fn register(&self, fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<u32> {
        let n = 1 + self
            .registered
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.refuse {
            return Err(std::io::Error::from_raw_os_error(libc::EPERM));
        }
        if self.no_o_path && open_mode(&fd) & libc::O_PATH != 0 {
            return Err(std::io::Error::from_raw_os_error(libc::EBADF));
        }
        self.held.lock().insert(n, fd.try_clone_to_owned()?);
        Ok(n)
    }

    fn unregister(&self, id: u32) {
        assert!(
            self.held.lock().remove(&id).is_some(),
            "id {id} ended twice"
        );
    }
}

/// Under a registry, an object is registered once, at its first passthrough open, and
/// stays registered across opens (readers and writers alike) until its entry leaves the
/// table: by its forget, or at once by its removal, so that the registration never keeps
/// a removed file's space. A create's handle, a directory, and every open after a refused
/// registration are left to the adapter's per-open registration.
#[test]
fn a_backing_registration_lasts_as_long_as_its_entry() {
    use std::sync::atomic::Ordering::Relaxed;
    let (dir, fs) = setup(false);
    let root = Ctx::root();
    let reg = Arc::new(Registry::default());
    assert!(fs.use_backing_registry(reg.clone()));
    assert!(!fs.use_backing_registry(Arc::new(Registry::default())));
    std::fs::write(dir.path().join("f"), b"data").unwrap();
    std::fs::write(dir.path().join("g"), b"data").unwrap();
    let f = fs.lookup(&root, Ino::ROOT, os("f")).unwrap().ino;
    let g = fs.lookup(&root, Ino::ROOT, os("g")).unwrap().ino;
    let mut ids = Vec::new();
    for flags in [OpenFlags::READ, OpenFlags::READ, RW, OpenFlags::READ] {
        let o = fs.open(&root, f, flags).unwrap();
        ids.push(fs.backing_id(f, o.fh).expect("an id"));
        fs.release(&root, f, o.fh).unwrap();
    }
    assert!(ids.iter().all(|&i| i == ids[0]), "{ids:?}");
    assert_eq!(reg.registered.load(Relaxed), 1);
    // Known now to take an O_PATH backing file: a handle offered per open (a second
    // mount's) gets the entry's own descriptor.
    let o = fs.open(&root, f, OpenFlags::READ).unwrap();
    let own = fs.passthrough_fd(f, o.fh).unwrap();
    assert_ne!(open_mode(&own) & libc::O_PATH, 0);
    drop(own);
    fs.release(&root, f, o.fh).unwrap();
    let o = fs.open(&root, g, OpenFlags::READ).unwrap();
    let gid = fs.backing_id(g, o.fh).unwrap();
    fs.release(&root, g, o.fh).unwrap();
    assert_eq!(reg.held.lock().len(), 2);
    let dh = fs.opendir(&root, Ino::ROOT, OpenFlags::READ).unwrap();
    assert_eq!(fs.backing_id(Ino::ROOT, dh), None);
    fs.releasedir(&root, Ino::ROOT, dh).unwrap();

    // Removed while open: ended at the last release, not before.
    let o = fs.open(&root, f, OpenFlags::READ).unwrap();
    fs.unlink(&root, Ino::ROOT, os("f")).unwrap();
    assert!(reg.held.lock().contains_key(&ids[0]));
    fs.release(&root, f, o.fh).unwrap();
    assert!(
        !reg.held.lock().contains_key(&ids[0]),
        "the removed file stays registered"
    );
    // A create's handle is passed through with a registration for that open alone.
    let (h, o) = fs.create(&root, Ino::ROOT, os("h"), 0o644, RW).unwrap();
    assert_eq!(fs.backing_id(h.ino, o.fh), None);
    assert!(fs.passthrough_fd(h.ino, o.fh).is_some());
    fs.release(&root, h.ino, o.fh).unwrap();
    // Removed while closed: ended by the removal.
    let o = fs.open(&root, h.ino, OpenFlags::READ).unwrap();
    let hid = fs.backing_id(h.ino, o.fh).unwrap();
    fs.release(&root, h.ino, o.fh).unwrap();
    assert!(reg.held.lock().contains_key(&hid));
    fs.unlink(&root, Ino::ROOT, os("h")).unwrap();
    assert!(
        !reg.held.lock().contains_key(&hid),
        "a removal left the registration"
    );
    // Forgotten: ended then.
    fs.forget(g, 1);
    assert!(!reg.held.lock().contains_key(&gid));
    assert!(reg.held.lock().is_empty());

    // A registry that refuses everything (no privilege), and a kernel that takes no
    // O_PATH backing file: asked once, then each open offers its own read descriptor.
    for registry in [
        Registry {
            refuse: true,
            ..Registry::default()
        },
        Registry {
            no_o_path: true,
            ..Registry::default()
        },
    ] {
        let (dir, fs) = setup(false);
        let registry = Arc::new(registry);
        assert!(fs.use_backing_registry(registry.clone()));
        std::fs::write(dir.path().join("f"), b"data").unwrap();
        let f = fs.lookup(&root, Ino::ROOT, os("f")).unwrap().ino;
        for _ in 0..3 {
            let o = fs.open(&root, f, OpenFlags::READ).unwrap();
            assert_eq!(fs.backing_id(f, o.fh), None);
            let own = fs
                .passthrough_fd(f, o.fh)
                .expect("offered per open instead");
            assert_eq!(
                open_mode(&own) & (libc::O_PATH | libc::O_ACCMODE),
                libc::O_RDONLY
            );
            let mut buf = [0u8; 8];
            assert_eq!(fs.read(&root, f, Some(o.fh), 0, &mut buf).unwrap(), 4);
            fs.release(&root, f, o.fh).unwrap();
        }
        assert_eq!(registry.registered.load(Relaxed), 1, "asked again");
    }
}

#[test]
fn forget_frees_entries_but_an_open_handle_keeps_its_inode() {
    let (dir, fs) = setup(false);
    let root = Ctx::root();
    let base = fs.inode_count();
    for i in 0..50 {
        std::fs::write(dir.path().join(format!("f{i}")), b"x").unwrap();
    }
    let mut inos = Vec::new();
    for i in 0..50 {
        inos.push(
            fs.lookup(&root, Ino::ROOT, os(&format!("f{i}")))
                .unwrap()
                .ino,
        );
        fs.lookup(&root, Ino::ROOT, os(&format!("f{i}"))).unwrap();
    }
    assert_eq!(fs.inode_count(), base + 50);
    for ino in &inos {
        fs.forget(*ino, 1);
    }
    assert_eq!(fs.inode_count(), base + 50, "one lookup left on each");
    for ino in &inos {
        fs.forget(*ino, 1);
    }
    assert_eq!(fs.inode_count(), base, "entries freed at zero lookups");
    assert!(matches!(
        fs.getattr(&root, inos[0], None),
        Err(VfsError::Stale)
    ));
    // Looked up again: a new number (numbers are never reused).
    let again = fs.lookup(&root, Ino::ROOT, os("f0")).unwrap();
    assert!(again.ino > inos[49]);
    fs.forget(again.ino, 1);

    // An open handle keeps the inode usable after its last forget.
    let (a, o) = fs.create(&root, Ino::ROOT, os("open"), 0o644, RW).unwrap();
    fs.forget(a.ino, 1);
    assert_eq!(fs.inode_count(), base + 1);
    assert_eq!(fs.write(&root, a.ino, Some(o.fh), 0, b"kept").unwrap(), 4);
    assert_eq!(fs.getattr(&root, a.ino, None).unwrap().size, 4);
    let mut buf = [0u8; 8];
    assert_eq!(fs.read(&root, a.ino, None, 0, &mut buf).unwrap(), 4);
    assert_eq!(&buf[..4], b"kept");
    fs.release(&root, a.ino, o.fh).unwrap();
    assert_eq!(fs.inode_count(), base, "freed on the last release");
    assert!(matches!(
        fs.getattr(&root, a.ino, None),
        Err(VfsError::Stale)
    ));
    assert_eq!(std::fs::read(dir.path().join("open")).unwrap(), b"kept");
    // Root is never dropped.
    fs.forget(Ino::ROOT, u64::MAX);
    assert!(fs.getattr(&root, Ino::ROOT, None).is_ok());
}

#[test]
fn readdirplus_counts_a_lookup_only_for_accepted_entries() {
    let (dir, fs) = setup(false);
    let root = Ctx::root();
    for i in 0..10 {
        std::fs::write(dir.path().join(format!("f{i}")), b"x").unwrap();
    }
    let base = fs.inode_count();
    let mut sink = VecSink {
        plus: true,
        limit: Some(3),
        ..VecSink::default()
    };
    fs.readdir(&root, Ino::ROOT, None, 0, &mut sink).unwrap();
    assert_eq!(sink.entries.len(), 3);
    assert_eq!(
        fs.inode_count(),
        base + 3,
        "the refused fourth entry is not kept"
    );
    // Resume through a handle from the last cookie: the rest, each once.
    let dh = fs.opendir(&root, Ino::ROOT, OpenFlags::READ).unwrap();
    let mut rest = VecSink {
        plus: true,
        ..VecSink::default()
    };
    let after = sink.entries[2].cookie;
    fs.readdir(&root, Ino::ROOT, Some(dh), after, &mut rest)
        .unwrap();
    fs.releasedir(&root, Ino::ROOT, dh).unwrap();
    assert_eq!(rest.entries.len(), 7);
    assert_eq!(fs.inode_count(), base + 10);
    for e in sink.entries.iter().chain(&rest.entries) {
        let a = e.attr.expect("attributes");
        assert_eq!((a.ino, a.kind, a.size), (e.ino, FileType::RegularFile, 1));
        fs.forget(e.ino, 1);
    }
    assert_eq!(fs.inode_count(), base);
}

/// Path, mode, uid, size, mtime (s, ns) and contents of one host object.
type Observed = (String, u32, u32, u64, i64, i64, Vec<u8>);

/// Every file, directory and link under `p`, with contents and times.
fn tree(p: &Path) -> Vec<Observed> {
    let mut out = Vec::new();
    let mut stack = vec![p.to_path_buf()];
    while let Some(x) = stack.pop() {
        let md = std::fs::symlink_metadata(&x).unwrap();
        let data = if md.is_file() {
            std::fs::read(&x).unwrap()
        } else {
            Vec::new()
        };
        out.push((
            x.to_string_lossy().into_owned(),
            md.mode(),
            md.uid(),
            md.len(),
            md.mtime(),
            md.mtime_nsec(),
            data,
        ));
        if md.is_dir() {
            for e in std::fs::read_dir(&x).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn read_only_leaves_the_host_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::write(p.join("f"), b"data").unwrap();
    std::fs::create_dir(p.join("d")).unwrap();
    std::fs::write(p.join("d/g"), b"more").unwrap();
    std::os::unix::fs::symlink("f", p.join("l")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let before = tree(p);
    let fs = open(p, true);
    let root = Ctx::root();
    assert!(fs.capabilities().read_only);
    let f = fs.lookup(&root, Ino::ROOT, os("f")).unwrap();
    let d = fs.lookup(&root, Ino::ROOT, os("d")).unwrap();
    let ro = |r: VfsResult<()>, what: &str| {
        assert!(matches!(r, Err(VfsError::ReadOnly)), "{what}: {r:?}");
    };
    ro(
        fs.create(&root, Ino::ROOT, os("n"), 0o644, RW).map(drop),
        "create",
    );
    ro(
        fs.create(&root, Ino::ROOT, os("f"), 0o644, OpenFlags::READ)
            .map(drop),
        "create existing",
    );
    ro(fs.open(&root, f.ino, RW).map(drop), "open rw");
    ro(
        fs.open(&root, f.ino, OpenFlags::READ | OpenFlags::TRUNCATE)
            .map(drop),
        "open trunc",
    );
    ro(fs.write(&root, f.ino, None, 0, b"x").map(drop), "write");
    ro(
        fs.mkdir(&root, Ino::ROOT, os("n"), 0o755).map(drop),
        "mkdir",
    );
    ro(
        fs.mknod(&root, Ino::ROOT, os("n"), FileType::Fifo, 0o644, 0)
            .map(drop),
        "mknod",
    );
    ro(
        fs.symlink(&root, Ino::ROOT, os("n"), os("t")).map(drop),
        "symlink",
    );
    ro(fs.link(&root, f.ino, Ino::ROOT, os("n")).map(drop), "link");
    ro(fs.unlink(&root, Ino::ROOT, os("f")), "unlink");
    ro(fs.unlink(&root, Ino::ROOT, os("l")), "unlink symlink");
    ro(fs.rmdir(&root, d.ino, os("g")), "rmdir");
    ro(
        fs.rename(
            &root,
            Ino::ROOT,
            os("f"),
            Ino::ROOT,
            os("n"),
            RenameFlags::empty(),
        ),
        "rename",
    );
    for set in [
        SetAttr {
            mode: Some(0o600),
            ..SetAttr::default()
        },
        SetAttr {
            uid: Some(5),
            ..SetAttr::default()
        },
        SetAttr {
            size: Some(0),
            ..SetAttr::default()
        },
        SetAttr {
            mtime: Some(SetTime::Now),
            ..SetAttr::default()
        },
    ] {
        ro(fs.setattr(&root, f.ino, &set, None).map(drop), "setattr");
    }
    ro(
        fs.setxattr(&root, f.ino, os("user.x"), b"v", XattrFlags::empty()),
        "setxattr",
    );
    ro(fs.removexattr(&root, f.ino, os("user.x")), "removexattr");
    ro(
        fs.fallocate(&root, f.ino, None, 0, 100, FallocateFlags::empty()),
        "fallocate",
    );
    let g = fs.lookup(&root, d.ino, os("g")).unwrap();
    ro(
        fs.copy_file_range(&root, f.ino, None, 0, g.ino, None, 0, 4)
            .map(drop),
        "copy_file_range",
    );
    ro(fs.access(&root, f.ino, AccessMask::WRITE), "access W");
    // Reads still work.
    let o = fs.open(&root, f.ino, OpenFlags::READ).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(fs.read(&root, f.ino, Some(o.fh), 0, &mut buf).unwrap(), 4);
    fs.release(&root, f.ino, o.fh).unwrap();
    assert_eq!(fs.read(&root, g.ino, None, 0, &mut buf).unwrap(), 4);
    assert_eq!(tree(p), before, "the host changed");
}

#[test]
fn objects_created_for_a_user_belong_to_that_user() {
    if !is_root() {
        println!("skipped: needs a root daemon to create files as another user");
        return;
    }
    let (dir, fs) = setup(false);
    let root = Ctx::root();
    let d = fs.mkdir(&root, Ino::ROOT, os("pub"), 0o777).unwrap();
    let u = Ctx::with_groups(1000, 1000, &[]);
    let (f, o) = fs.create(&u, d.ino, os("file"), 0o644, RW).unwrap();
    fs.release(&u, f.ino, o.fh).unwrap();
    fs.mkdir(&u, d.ino, os("dir"), 0o755).unwrap();
    fs.symlink(&u, d.ino, os("link"), os("file")).unwrap();
    fs.mknod(&u, d.ino, os("fifo"), FileType::Fifo, 0o644, 0)
        .unwrap();
    for name in ["file", "dir", "link", "fifo"] {
        let md = std::fs::symlink_metadata(dir.path().join("pub").join(name)).unwrap();
        assert_eq!((md.uid(), md.gid()), (1000, 1000), "{name}");
    }
    // The worker thread is root again afterwards.
    let (r, o) = fs.create(&root, d.ino, os("rootfile"), 0o644, RW).unwrap();
    fs.release(&root, r.ino, o.fh).unwrap();
    assert_eq!((r.uid, r.gid), (0, 0));
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    let uids = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uids.split_whitespace().skip(1).all(|v| v == "0"),
        "credentials not restored: {uids}"
    );
}

#[test]
fn a_user_cannot_create_in_a_root_owned_0755_directory() {
    if !is_root() {
        println!("skipped: needs a root daemon to act as another user");
        return;
    }
    let (dir, fs) = setup(false);
    let u = Ctx::with_groups(1000, 1000, &[]);
    let denied = |r: VfsResult<()>, what: &str| {
        assert!(
            matches!(r, Err(VfsError::PermissionDenied)),
            "{what}: {r:?}"
        );
    };
    denied(
        fs.create(&u, Ino::ROOT, os("f"), 0o644, RW).map(drop),
        "create",
    );
    denied(fs.mkdir(&u, Ino::ROOT, os("d"), 0o755).map(drop), "mkdir");
    denied(
        fs.symlink(&u, Ino::ROOT, os("l"), os("t")).map(drop),
        "symlink",
    );
    denied(
        fs.mknod(&u, Ino::ROOT, os("p"), FileType::Fifo, 0o644, 0)
            .map(drop),
        "mknod",
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    // Root may.
    fs.mkdir(&Ctx::root(), Ino::ROOT, os("d"), 0o755).unwrap();
}

#[test]
fn changes_made_in_the_source_are_visible() {
    let (dir, fs) = setup(false);
    let root = Ctx::root();
    let p = dir.path();
    std::fs::write(p.join("f"), b"hello").unwrap();
    let f = fs.lookup(&root, Ino::ROOT, os("f")).unwrap();
    assert_eq!(f.size, 5);
    let o = fs.open(&root, f.ino, OpenFlags::READ).unwrap();
    std::fs::write(p.join("f"), b"changed on the host").unwrap();
    assert_eq!(fs.getattr(&root, f.ino, None).unwrap().size, 19);
    let mut buf = [0u8; 64];
    let n = fs.read(&root, f.ino, Some(o.fh), 0, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"changed on the host");
    fs.release(&root, f.ino, o.fh).unwrap();
    std::fs::create_dir(p.join("newdir")).unwrap();
    std::fs::write(p.join("newdir/inner"), b"x").unwrap();
    let mut sink = VecSink::default();
    fs.readdir(&root, Ino::ROOT, None, 0, &mut sink).unwrap();
    let mut names: Vec<_> = sink.entries.iter().map(|e| e.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["f", "newdir"]);
    let nd = fs.lookup(&root, Ino::ROOT, os("newdir")).unwrap();
    assert_eq!(nd.kind, FileType::Directory);
    assert_eq!(fs.lookup(&root, nd.ino, os("inner")).unwrap().size, 1);
    std::fs::remove_file(p.join("f")).unwrap();
    assert!(matches!(
        fs.lookup(&root, Ino::ROOT, os("f")),
        Err(VfsError::NotFound)
    ));
    assert!(matches!(
        fs.getattr(&root, f.ino, None),
        Err(VfsError::Stale)
    ));
    std::fs::set_permissions(p.join("newdir"), std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(fs.getattr(&root, nd.ino, None).unwrap().perm, 0o700);
}

#[test]
fn symlinks_are_returned_as_links_and_never_followed() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"secret").unwrap();
    let (dir, fs) = setup(false);
    let root = Ctx::root();
    let target = outside.path().join("secret");
    std::os::unix::fs::symlink(&target, dir.path().join("l")).unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("ld")).unwrap();
    let l = fs.lookup(&root, Ino::ROOT, os("l")).unwrap();
    assert_eq!(l.kind, FileType::Symlink);
    assert_eq!(
        fs.readlink(&root, l.ino).unwrap(),
        target.as_os_str().as_encoded_bytes()
    );
    assert!(matches!(fs.open(&root, l.ino, RW), Err(VfsError::Loop)));
    assert!(fs.write(&root, l.ino, None, 0, b"x").is_err());
    assert!(
        fs.create(&root, Ino::ROOT, os("l"), 0o644, RW).is_err(),
        "create through a symlink"
    );
    let size = SetAttr {
        size: Some(0),
        ..SetAttr::default()
    };
    assert!(fs.setattr(&root, l.ino, &size, None).is_err());
    assert!(
        fs.setxattr(&root, l.ino, os("user.x"), b"1", XattrFlags::empty())
            .is_err()
    );
    let ld = fs.lookup(&root, Ino::ROOT, os("ld")).unwrap();
    assert!(matches!(
        fs.lookup(&root, ld.ino, os("secret")),
        Err(VfsError::NotDir)
    ));
    assert!(matches!(
        fs.mkdir(&root, ld.ino, os("x"), 0o755),
        Err(VfsError::NotDir)
    ));
    assert!(matches!(
        fs.opendir(&root, ld.ino, OpenFlags::READ),
        Err(VfsError::NotDir)
    ));
    assert_eq!(std::fs::read(&target).unwrap(), b"secret");
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 1);
}

#[test]
fn passthrough_fd_is_a_dup_of_an_open_file_only() {
    use std::io::{Read, Seek};
    let (_dir, fs) = setup(false);
    let root = Ctx::root();
    let (a, o) = fs.create(&root, Ino::ROOT, os("f"), 0o644, RW).unwrap();
    fs.write(&root, a.ino, Some(o.fh), 0, b"through the fd")
        .unwrap();
    let fd = fs.passthrough_fd(a.ino, o.fh).expect("a descriptor");
    let mut file = std::fs::File::from(fd);
    file.rewind().unwrap();
    let mut s = String::new();
    file.read_to_string(&mut s).unwrap();
    assert_eq!(s, "through the fd");
    fs.release(&root, a.ino, o.fh).unwrap();
    assert!(fs.passthrough_fd(a.ino, o.fh).is_none(), "released handle");
    let dh = fs.opendir(&root, Ino::ROOT, OpenFlags::READ).unwrap();
    assert!(
        fs.passthrough_fd(Ino::ROOT, dh).is_none(),
        "directory handle"
    );
    fs.releasedir(&root, Ino::ROOT, dh).unwrap();
}

#[test]
fn read_fd_reads_the_source_file() {
    let (_dir, fs) = setup(false);
    let root = Ctx::root();
    let (a, o) = fs.create(&root, Ino::ROOT, os("f"), 0o644, RW).unwrap();
    fs.write(&root, a.ino, Some(o.fh), 0, b"from the host")
        .unwrap();
    fs.release(&root, a.ino, o.fh).unwrap();
    let f = std::fs::File::from(fs.read_fd(a.ino).expect("a descriptor"));
    let mut buf = [0u8; 4];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut buf, 9).unwrap();
    assert_eq!(&buf, b"host");
    assert!(fs.read_fd(Ino::ROOT).is_none(), "a directory");
}

#[test]
fn stateless_io_reuses_a_bounded_set_of_descriptors() {
    let _fds = FD_COUNTING.lock().unwrap_or_else(|e| e.into_inner());
    let (dir, fs) = setup(false);
    let root = Ctx::root();
    let mut inos = Vec::new();
    for i in 0..200 {
        std::fs::write(dir.path().join(format!("f{i}")), b"").unwrap();
        inos.push(
            fs.lookup(&root, Ino::ROOT, os(&format!("f{i}")))
                .unwrap()
                .ino,
        );
    }
    let before = open_fds();
    for round in 0..3u64 {
        for (i, ino) in inos.iter().enumerate() {
            let data = format!("{round}:{i}");
            fs.write(&root, *ino, None, 0, data.as_bytes()).unwrap();
        }
    }
    // At most 64 cached descriptors were added, not one per file (other tests run in
    // parallel threads of this process, hence the slack).
    let grown = open_fds().saturating_sub(before);
    assert!(grown < 64 + 60, "{grown} descriptors added for 200 files");
    let mut buf = [0u8; 16];
    let n = fs.read(&root, inos[7], None, 0, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"2:7");
    for ino in &inos {
        fs.forget(*ino, 1);
    }
    assert_eq!(fs.inode_count(), 1);
}

/// Taken by the tests that count this process's descriptors, which are also the ones
/// that open hundreds: run beside each other, one's cache (500 descriptors) landed in
/// the other's count ("567 descriptors added for 200 files").
static FD_COUNTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Open descriptors of this process.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// A read-write loopback of `source` keeping at most `cache` entry descriptors.
fn small_cache(source: &Path, cache: usize) -> Loopback {
    let opts = LoopbackOptions {
        source: source.to_path_buf(),
        read_only: false,
    };
    Loopback::with_entry_fd_cache(opts, cache).unwrap()
}

/// More entries than the entry-descriptor cache holds, never forgotten (as NFS does):
/// evicted descriptors are reopened by file handle, the descriptor count stays bounded,
/// and a file deleted on the host is `Stale` by number.
#[test]
fn entries_beyond_the_descriptor_cache_reopen_by_handle() {
    if !is_root() {
        eprintln!("skipped: open_by_handle_at needs CAP_DAC_READ_SEARCH");
        return;
    }
    let _fds = FD_COUNTING.lock().unwrap_or_else(|e| e.into_inner());
    const FILES: usize = 30_000;
    const CACHE: usize = 500;
    let dir = tempfile::tempdir().unwrap();
    for i in 0..FILES {
        std::fs::write(dir.path().join(format!("f{i}")), format!("content {i}")).unwrap();
    }
    let fs = small_cache(dir.path(), CACHE);
    let root = Ctx::root();
    let baseline = open_fds();
    let mut inos = Vec::with_capacity(FILES);
    for i in 0..FILES {
        let a = fs.lookup(&root, Ino::ROOT, os(&format!("f{i}"))).unwrap();
        inos.push(a.ino);
    }
    assert_eq!(fs.inode_count(), FILES as u64 + 1);
    assert!(
        open_fds() < baseline + CACHE + 200,
        "{} descriptors open after lookups",
        open_fds()
    );
    for (i, ino) in inos.iter().enumerate() {
        let a = fs.getattr(&root, *ino, None).unwrap();
        let want = format!("content {i}");
        assert_eq!(a.ino, *ino);
        assert_eq!(a.size, want.len() as u64);
        let mut buf = [0u8; 64];
        let n = fs.read(&root, *ino, None, 0, &mut buf).unwrap();
        assert_eq!(&buf[..n], want.as_bytes(), "file {i}");
    }
    assert!(
        open_fds() < baseline + CACHE + 200,
        "{} descriptors open after reads",
        open_fds()
    );
    // An evicted entry pins nothing: once its file is deleted, the host may give the
    // inode number to a new file, which must get a number of its own (not the dead
    // entry's, which would be `Stale` or, worse, name the wrong file).
    use std::os::unix::fs::MetadataExt;
    let old_ino = std::fs::metadata(dir.path().join("f2")).unwrap().ino();
    std::fs::remove_file(dir.path().join("f2")).unwrap();
    let reuser = (0..200).find(|i| {
        let p = dir.path().join(format!("new{i}"));
        std::fs::write(&p, format!("new {i}")).unwrap();
        std::fs::metadata(&p).unwrap().ino() == old_ino
    });
    match reuser {
        Some(i) => {
            let a = fs.lookup(&root, Ino::ROOT, os(&format!("new{i}"))).unwrap();
            assert_ne!(
                a.ino, inos[2],
                "a recycled host inode got the dead entry's number"
            );
            let mut buf = [0u8; 64];
            let n = fs.read(&root, a.ino, None, 0, &mut buf).unwrap();
            assert_eq!(&buf[..n], format!("new {i}").as_bytes());
            assert!(matches!(
                fs.getattr(&root, inos[2], None),
                Err(VfsError::Stale)
            ));
        }
        // Not every host filesystem recycles a freed number at once (ext4 and tmpfs do).
        None => eprintln!("note: the host did not recycle inode {old_ino}; case not exercised"),
    }
    // The first file's descriptor was evicted long ago.
    std::fs::remove_file(dir.path().join("f0")).unwrap();
    assert!(matches!(
        fs.getattr(&root, inos[0], None),
        Err(VfsError::Stale)
    ));
    assert!(matches!(
        fs.read(&root, inos[0], None, 0, &mut [0u8; 8]),
        Err(VfsError::Stale)
    ));
    // A file looked up again by name keeps its number.
    let a = fs.lookup(&root, Ino::ROOT, os("f1")).unwrap();
    assert_eq!(a.ino, inos[1]);
}

/// Unlinking through a forgetting adapter (FUSE) an entry whose descriptor was evicted:
/// the host frees the object at the unlink (nothing of the entry pins it, so no reopen by
/// handle is needed to learn it is gone), the number is `Stale` from then on, and the
/// kernel's forget drops the entry. An entry that still holds its descriptor goes at the
/// unlink, as before, and so does every removed entry under NFS, which never forgets.
#[test]
fn unlinking_evicted_entries_leaves_them_to_the_forget() {
    if !is_root() {
        eprintln!("skipped: open_by_handle_at needs CAP_DAC_READ_SEARCH");
        return;
    }
    const FILES: usize = 64;
    const CACHE: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let fs = small_cache(dir.path(), CACHE);
    fs.attach(true);
    let root = Ctx::root();
    let mut inos = Vec::new();
    for i in 0..FILES {
        let (a, o) = fs
            .create(&root, Ino::ROOT, os(&format!("f{i}")), 0o644, RW)
            .unwrap();
        fs.write(&root, a.ino, Some(o.fh), 0, &[7u8; 4096]).unwrap();
        fs.release(&root, a.ino, o.fh).unwrap();
        inos.push(a.ino);
    }
    assert_eq!(fs.inode_count(), FILES as u64 + 1);
    // The first entries' descriptors went long ago; the last one's is held.
    fs.unlink(&root, Ino::ROOT, os("f0")).unwrap();
    assert!(!dir.path().join("f0").exists());
    assert_eq!(
        fs.inode_count(),
        FILES as u64 + 1,
        "an evicted entry stays until the forget"
    );
    let r = fs.getattr(&root, inos[0], None);
    assert!(
        matches!(r, Err(VfsError::Stale)),
        "getattr after unlink: {r:?}"
    );
    fs.forget(inos[0], 1);
    assert_eq!(fs.inode_count(), FILES as u64);
    let last = FILES - 1;
    fs.unlink(&root, Ino::ROOT, os(&format!("f{last}")))
        .unwrap();
    assert_eq!(
        fs.inode_count(),
        FILES as u64 - 1,
        "an entry holding its descriptor goes at the unlink"
    );
    // The others are still there and intact.
    let mut buf = [0u8; 4096];
    assert_eq!(fs.read(&root, inos[1], None, 0, &mut buf).unwrap(), 4096);
    assert!(buf.iter().all(|&b| b == 7));
    // Once a never-forgetting adapter (NFS) is attached too, an evicted entry goes at
    // the unlink: no forget would ever come for it.
    fs.attach(false);
    fs.unlink(&root, Ino::ROOT, os("f2")).unwrap();
    assert_eq!(fs.inode_count(), FILES as u64 - 2);
}

/// Records what `watch_changes` reports.
#[derive(Default)]
struct Recorded(parking_lot::Mutex<Vec<String>>);

impl ChangeSink for Recorded {
    fn entry_changed(&self, parent: Ino, name: &OsStr) {
        self.0
            .lock()
            .push(format!("entry {} {}", parent.0, name.to_string_lossy()));
    }
    fn inode_changed(&self, ino: Ino) {
        self.0.lock().push(format!("inode {}", ino.0));
    }
}

impl Recorded {
    fn wait_for(&self, want: &str) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if self.0.lock().iter().any(|e| e == want) {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        false
    }
}

fn sh(dir: &Path, script: &str) {
    let st = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(st.success(), "{script}");
}

/// As root, changes other processes make in the source are reported for the entries the
/// filesystem has handed out: names in known directories, and attribute or content
/// changes of known files. Changes this process makes (everything done through the
/// mount) are not.
#[test]
fn changes_by_other_processes_are_reported() {
    let (dir, fs) = setup(false);
    let sink = Arc::new(Recorded::default());
    if !is_root() {
        assert!(!fs.watch_changes(sink), "the watcher needs root");
        eprintln!("skipping changes_by_other_processes_are_reported: needs root");
        return;
    }
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/known"), b"1").unwrap();
    assert!(fs.watch_changes(sink.clone()), "root on Linux watches");
    assert!(!fs.watch_changes(sink.clone()), "only once");
    let c = Ctx::root();
    let sub = fs.lookup(&c, Ino::ROOT, os("sub")).unwrap().ino;
    let known = fs.lookup(&c, sub, os("known")).unwrap().ino;

    // This process's own changes are not reported...
    std::fs::write(dir.path().join("mine"), b"x").unwrap();
    std::fs::write(dir.path().join("sub/known"), b"22").unwrap();
    // ...another process's are: a name in the root, one in a registered subdirectory,
    // and a known file's contents and mode.
    sh(
        dir.path(),
        "echo x > theirs && touch sub/new && echo more >> sub/known",
    );
    assert!(sink.wait_for("entry 1 theirs"), "{:?}", sink.0.lock());
    assert!(
        sink.wait_for(&format!("entry {} new", sub.0)),
        "{:?}",
        sink.0.lock()
    );
    assert!(
        sink.wait_for(&format!("inode {}", known.0)),
        "{:?}",
        sink.0.lock()
    );
    sh(
        dir.path(),
        "mv theirs sub/moved && chmod 600 sub/known && rm sub/new",
    );
    assert!(
        sink.wait_for(&format!("entry {} moved", sub.0)),
        "{:?}",
        sink.0.lock()
    );
    assert!(sink.wait_for(&format!("entry {} new", sub.0)));
    let got = sink.0.lock().clone();
    assert!(
        !got.iter().any(|e| e.ends_with(" mine")),
        "this process's changes were reported: {got:?}"
    );
    // A directory the filesystem never handed out is not watched.
    std::fs::create_dir(dir.path().join("unseen")).unwrap();
    sh(dir.path(), "touch unseen/x");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let got = sink.0.lock().clone();
    assert!(!got.iter().any(|e| e.ends_with(" x")), "{got:?}");
}

fn xattr(fs: &Loopback, ino: Ino, name: &str) -> Result<Vec<u8>, VfsError> {
    fs.getxattr(&Ctx::root(), ino, os(name))
}

/// Sets xattr `name` of `path` directly on the host, from this process (whose changes
/// the watcher ignores, as it ignores everything done through the mount).
fn set_host_xattr(path: &Path, name: &str, value: &[u8]) {
    if let Err(e) = try_set_host_xattr(path, name, value) {
        panic!("{} {name}: {e}", path.display());
    }
}

fn try_set_host_xattr(path: &Path, name: &str, value: &[u8]) -> std::io::Result<()> {
    let (p, n) = c_path_and_name(path, name);
    // SAFETY: valid C strings and a value buffer of the given length.
    let r = unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Xattr `name` of `path` read directly on the host (`None`: it has none).
fn host_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let (p, n) = c_path_and_name(path, name);
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid C strings and a buffer of the given length.
    let r = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    let len = usize::try_from(r).ok()?;
    buf.truncate(len);
    Some(buf)
}

fn c_path_and_name(path: &Path, name: &str) -> (std::ffi::CString, std::ffi::CString) {
    use std::os::unix::ffi::OsStrExt as _;
    (
        std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap(),
        std::ffi::CString::new(name).unwrap(),
    )
}

/// Xattr `name` of `ino`, waiting up to 5 s for it to appear (a change made by another
/// process reaches the filesystem through the watcher).
fn xattr_soon(fs: &Loopback, ino: Ino, name: &str) -> Result<Vec<u8>, VfsError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let r = xattr(fs, ino, name);
        if r.is_ok() || std::time::Instant::now() >= deadline {
            return r;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Where the source is watched, a missing `security.*`/`system.*` xattr is remembered,
/// and forgotten as soon as one can appear: another process setting it directly in the
/// source is seen within the watcher's delay, a setxattr through the filesystem at once.
#[test]
fn remembered_xattr_misses_follow_changes() {
    let test = "remembered_xattr_misses_follow_changes";
    let (dir, fs) = setup(false);
    if !is_root() {
        eprintln!("skipping {test}: the watcher needs root");
        return;
    }
    std::fs::write(dir.path().join("f"), b"1").unwrap();
    assert!(fs.watch_changes(Arc::new(Recorded::default())));
    let c = Ctx::root();
    let f = fs.lookup(&c, Ino::ROOT, os("f")).unwrap().ino;
    for name in [
        "security.vmtest",
        "security.mine",
        "system.posix_acl_access",
    ] {
        assert!(matches!(xattr(&fs, f, name), Err(VfsError::NoAttribute)));
    }
    // Remembered: this process's own direct change, which the watcher ignores as it
    // ignores everything done through the mount, is not seen.
    set_host_xattr(&dir.path().join("f"), "security.mine", b"m");
    assert!(matches!(
        xattr(&fs, f, "security.mine"),
        Err(VfsError::NoAttribute)
    ));
    // Another process's change is seen.
    sh(
        dir.path(),
        "python3 -c \"import os; os.setxattr('f', 'security.vmtest', b'yes')\" && setfacl -m u:nobody:r f",
    );
    assert_eq!(xattr_soon(&fs, f, "security.vmtest").unwrap(), b"yes");
    assert!(
        xattr(&fs, f, "system.posix_acl_access").is_ok(),
        "the ACL set outside"
    );
    // A setxattr through the filesystem is seen at once.
    assert!(matches!(
        xattr(&fs, f, "security.other"),
        Err(VfsError::NoAttribute)
    ));
    fs.setxattr(&c, f, os("security.other"), b"o", XattrFlags::empty())
        .unwrap();
    assert_eq!(xattr(&fs, f, "security.other").unwrap(), b"o");
    // Other namespaces are never remembered (their reads depend on the caller).
    assert!(matches!(
        xattr(&fs, f, "user.u"),
        Err(VfsError::NoAttribute)
    ));
    set_host_xattr(&dir.path().join("f"), "user.u", b"u");
    assert_eq!(xattr(&fs, f, "user.u").unwrap(), b"u");
}

/// A file created through the filesystem is born knowing which of the xattrs asked of
/// every new file it lacks (no host call for them later), but not those the host gave it
/// at birth: here an ACL inherited from the directory's default ACL.
#[test]
fn xattrs_a_new_file_lacks_are_known_at_creation() {
    let test = "xattrs_a_new_file_lacks_are_known_at_creation";
    let (dir, fs) = setup(false);
    if !is_root() {
        eprintln!("skipping {test}: the watcher needs root");
        return;
    }
    std::fs::create_dir(dir.path().join("inherits")).unwrap();
    sh(dir.path(), "setfacl -d -m u:nobody:r inherits");
    assert!(fs.watch_changes(Arc::new(Recorded::default())));
    let c = Ctx::root();
    let plain = fs
        .create(&c, Ino::ROOT, os("plain"), 0o644, RW)
        .unwrap()
        .0
        .ino;
    let sub = fs.lookup(&c, Ino::ROOT, os("inherits")).unwrap().ino;
    let acl = fs.create(&c, sub, os("acl"), 0o644, RW).unwrap().0.ino;
    // Set directly by this process, which the watcher ignores as it ignores everything
    // done through the mount: a file whose misses were noted at creation does not see
    // them; without that note the host would be asked and answer.
    set_host_xattr(&dir.path().join("plain"), "security.capability", &NO_CAPS);
    for name in ["security.capability", "system.posix_acl_access"] {
        assert!(
            matches!(xattr(&fs, plain, name), Err(VfsError::NoAttribute)),
            "{name} of plain"
        );
    }
    assert!(
        xattr(&fs, acl, "system.posix_acl_access").is_ok(),
        "the ACL the new file inherited"
    );
    // Another process's change is seen as for any remembered miss.
    sh(
        dir.path(),
        "python3 -c \"import os; os.setxattr('plain', 'security.capability', bytes([0,0,0,2] + [0]*16))\"",
    );
    assert_eq!(
        xattr_soon(&fs, plain, "security.capability").unwrap(),
        NO_CAPS
    );
}

/// A valid version 2 capability set that grants nothing (`security.capability`).
const NO_CAPS: [u8; 20] = [0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// The SELinux label is not carried (see `vmount_core::is_selinux_label`): one the host
/// file has is neither shown nor listed, and none can be set or removed, by root either.
#[test]
fn the_selinux_label_is_not_carried() {
    let (dir, fs) = setup(false);
    std::fs::write(dir.path().join("f"), b"1").unwrap();
    // Root on a host without SELinux can give the host file one.
    let labeled = try_set_host_xattr(&dir.path().join("f"), "security.selinux", b"l").is_ok();
    std::fs::write(dir.path().join("g"), b"1").unwrap();
    set_host_xattr(&dir.path().join("g"), "user.kept", b"k");
    let c = Ctx::root();
    for name in ["f", "g"] {
        let ino = fs.lookup(&c, Ino::ROOT, os(name)).unwrap().ino;
        assert!(matches!(
            xattr(&fs, ino, "security.selinux"),
            Err(VfsError::NotSupported)
        ));
        assert!(matches!(
            fs.setxattr(&c, ino, os("security.selinux"), b"x", XattrFlags::empty()),
            Err(VfsError::NotSupported)
        ));
        assert!(matches!(
            fs.removexattr(&c, ino, os("security.selinux")),
            Err(VfsError::NotSupported)
        ));
        let listed = fs.listxattr(&c, ino).unwrap();
        assert!(
            !listed.iter().any(|n| n == "security.selinux"),
            "{name}: {listed:?}"
        );
        if name == "g" {
            assert_eq!(listed, [OsString::from("user.kept")]);
        }
    }
    if labeled {
        assert_eq!(
            host_xattr(&dir.path().join("f"), "security.selinux").as_deref(),
            Some(&b"l"[..]),
            "the host's label stays untouched"
        );
    }
}

/// Stateless listings (NFS READDIR, no handle) that stop part way keep their stream for
/// the call that continues them: every entry comes once, in pieces of any size, with
/// other listings interleaved, plain and with attributes; a listing from the start opens
/// anew; a file removed before the listing reaches it does not show; at most 8 streams
/// are kept and a finished listing keeps none.
/// Stateless listings are named by their cookie alone, so a listing begun after a change
/// could reach the cookie where an older listing's kept stream stopped; that stream's
/// buffer was read before the change and must not be resumed. Changes through the
/// filesystem and on the host both count.
#[test]
fn a_listing_begun_after_a_change_never_resumes_an_older_stream() {
    let (dir, fs) = setup(false);
    let root = Ctx::root();
    std::fs::create_dir(dir.path().join("d")).unwrap();
    for i in 0..20 {
        std::fs::write(dir.path().join("d").join(format!("f{i:02}")), b"x").unwrap();
    }
    let d = fs.lookup(&root, Ino::ROOT, os("d")).unwrap().ino;
    let listing = |fs: &Loopback| {
        let (mut names, mut after) = (Vec::new(), 0);
        loop {
            let mut sink = VecSink {
                limit: Some(3),
                ..VecSink::default()
            };
            fs.readdir(&root, d, None, after, &mut sink).unwrap();
            let Some(last) = sink.entries.last() else {
                break names;
            };
            after = last.cookie;
            names.extend(
                sink.entries
                    .iter()
                    .map(|e| e.name.to_string_lossy().into_owned()),
            );
        }
    };
    for (through_fs, victim) in [(true, "f10"), (false, "f11")] {
        // A listing that stops after its first piece leaves its stream kept.
        let mut sink = VecSink {
            limit: Some(3),
            ..VecSink::default()
        };
        fs.readdir(&root, d, None, 0, &mut sink).unwrap();
        assert!(fs.parked_listings() >= 1);
        if through_fs {
            fs.unlink(&root, d, os(victim)).unwrap();
        } else {
            std::fs::remove_file(dir.path().join("d").join(victim)).unwrap();
        }
        let names = listing(&fs);
        assert!(
            !names.iter().any(|n| n == victim),
            "a listing begun after {victim} was removed ({}) still shows it: {names:?}",
            if through_fs {
                "through the filesystem"
            } else {
                "on the host"
            }
        );
    }
}

#[test]
fn stateless_listings_continue_on_kept_streams() {
    let (dir, fs) = setup(false);
    let root = Ctx::root();
    for d in ["a", "b"] {
        std::fs::create_dir(dir.path().join(d)).unwrap();
        for i in 0..500 {
            std::fs::write(dir.path().join(d).join(format!("f{i:03}")), b"x").unwrap();
        }
    }
    let a = fs.lookup(&root, Ino::ROOT, os("a")).unwrap().ino;
    let b = fs.lookup(&root, Ino::ROOT, os("b")).unwrap().ino;
    // Three listings at once: a in pieces of 37 with attributes, a again in pieces of 50
    // without, b in pieces of 11.
    let mut lists = [(a, 37, true), (a, 50, false), (b, 11, true)]
        .map(|(dir, limit, plus)| (dir, limit, plus, 0u64, Vec::<String>::new(), false));
    let mut removed = false;
    while lists.iter().any(|l| !l.5) {
        for (dir, limit, plus, after, names, done) in lists.iter_mut().filter(|l| !l.5) {
            let mut sink = VecSink {
                plus: *plus,
                limit: Some(*limit),
                ..VecSink::default()
            };
            fs.readdir(&root, *dir, None, *after, &mut sink).unwrap();
            if let Some(last) = sink.entries.last() {
                *after = last.cookie;
            }
            names.extend(
                sink.entries
                    .iter()
                    .map(|e| e.name.to_string_lossy().into_owned()),
            );
            *done = sink.entries.len() < *limit;
        }
        assert!(fs.parked_listings() <= 3, "{}", fs.parked_listings());
        if !removed {
            // After the first pieces: f499 is far past every listing's position.
            std::fs::remove_file(dir.path().join("a").join("f499")).unwrap();
            removed = true;
        }
    }
    assert_eq!(fs.parked_listings(), 0, "finished listings keep nothing");
    for (dir, _, plus, _, names, _) in &lists {
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "an entry came twice");
        let gone = usize::from(names.iter().any(|n| n == "f499"));
        if *dir == a && *plus {
            // Its attributes are looked up, which fails.
            assert_eq!(gone, 0, "a removed file showed with attributes");
        }
        // Without attributes it may show, as in any directory stream opened before the
        // removal (POSIX leaves it unspecified; the stream's buffer may hold it).
        let want = if *dir == a { 499 + gone } else { 500 };
        assert_eq!(names.len(), want, "listing of {dir:?}");
    }
    // Many listings stopped part way: the oldest go.
    for _ in 0..20 {
        let mut sink = VecSink {
            limit: Some(5),
            ..VecSink::default()
        };
        fs.readdir(&root, a, None, 0, &mut sink).unwrap();
    }
    assert_eq!(fs.parked_listings(), 8);
}

/// A [`VecSink`] that, like FUSE, learns that a listing ended from one more call that
/// returns nothing.
struct AsksAgain(VecSink);

impl DirSink for AsksAgain {
    fn wants_attr(&self) -> bool {
        self.0.wants_attr()
    }
    fn add(&mut self, entry: &DirEntry<'_>) -> bool {
        self.0.add(entry)
    }
    fn asks_again_at_the_end(&self) -> bool {
        true
    }
}

/// A stateless listing that reaches the end in one call keeps its stream only for a
/// caller that asks once more to learn so (FUSE without OPENDIR), and that empty call
/// takes it; NFS, which is told the end in the reply, leaves nothing behind. What each
/// call returns is the same either way.
#[test]
fn listings_that_end_keep_their_stream_only_for_a_caller_that_asks_again() {
    let (dir, fs) = setup(false);
    let root = Ctx::root();
    std::fs::create_dir(dir.path().join("d")).unwrap();
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    for i in 0..10 {
        std::fs::write(dir.path().join("d").join(format!("f{i}")), b"x").unwrap();
    }
    let d = fs.lookup(&root, Ino::ROOT, os("d")).unwrap().ino;
    let empty = fs.lookup(&root, Ino::ROOT, os("empty")).unwrap().ino;
    for plus in [true, false] {
        let mut nfs = VecSink {
            plus,
            ..VecSink::default()
        };
        fs.readdir(&root, d, None, 0, &mut nfs).unwrap();
        assert_eq!(nfs.entries.len(), 10);
        assert_eq!(
            fs.parked_listings(),
            0,
            "a listing told its end keeps nothing"
        );

        let mut fuse = AsksAgain(VecSink {
            plus,
            ..VecSink::default()
        });
        fs.readdir(&root, d, None, 0, &mut fuse).unwrap();
        assert_eq!(fuse.0.entries.len(), 10);
        assert_eq!(
            fs.parked_listings(),
            1,
            "kept for the call that learns the end"
        );
        let last = fuse.0.entries.last().unwrap().cookie;
        let mut again = AsksAgain(VecSink {
            plus,
            ..VecSink::default()
        });
        fs.readdir(&root, d, None, last, &mut again).unwrap();
        assert!(again.0.entries.is_empty(), "{:?}", again.0.entries);
        assert_eq!(fs.parked_listings(), 0, "the empty call took the stream");

        // Nothing listed, nothing kept.
        let mut none = AsksAgain(VecSink {
            plus,
            ..VecSink::default()
        });
        fs.readdir(&root, empty, None, 0, &mut none).unwrap();
        assert!(none.0.entries.is_empty());
        assert_eq!(fs.parked_listings(), 0);
    }
    // A stream kept at the end is not resumed once the directory changed: the last call
    // reopens and sees the name made meanwhile if it sorts after the last cookie, and
    // never a removed one.
    let mut fuse = AsksAgain(VecSink::default());
    fs.readdir(&root, d, None, 0, &mut fuse).unwrap();
    let last = fuse.0.entries.last().unwrap().cookie;
    fs.unlink(&root, d, os("f3")).unwrap();
    let mut again = AsksAgain(VecSink::default());
    fs.readdir(&root, d, None, last, &mut again).unwrap();
    assert!(!again.0.entries.iter().any(|e| e.name == "f3"));
    assert_eq!(fs.parked_listings(), 0);
}

/// Listings feed the directory read-ahead (see `loopback/ahead.rs`): with and without
/// attributes, only listings that had to wait for the disk, and what is read ahead is
/// counted as used once a caller lists it. Nothing a listing returns depends on it.
#[test]
fn listings_that_waited_for_the_disk_read_the_subdirectories_ahead() {
    use std::time::Duration;
    let (dir, fs) = setup(false);
    let root = Ctx::root();
    for i in 0..6 {
        for j in 0..3 {
            std::fs::create_dir_all(dir.path().join(format!("d/s{i}/t{j}"))).unwrap();
        }
        std::fs::write(dir.path().join(format!("d/s{i}/f")), b"x").unwrap();
    }
    let d = fs.lookup(&root, Ino::ROOT, os("d")).unwrap().ino;
    let list = |ino: Ino, plus: bool| {
        let mut sink = VecSink {
            plus,
            ..VecSink::default()
        };
        fs.readdir(&root, ino, None, 0, &mut sink).unwrap();
        let mut names: Vec<_> = sink.entries.into_iter().map(|e| e.name).collect();
        names.sort();
        names
    };
    let want: Vec<OsString> = (0..6).map(|i| format!("s{i}").into()).collect();

    // Just made: in the host's caches, so listing reads nothing ahead.
    for plus in [true, false] {
        assert_eq!(list(d, plus), want);
    }
    assert!(fs.read_ahead_settle(Duration::from_secs(10)));
    assert_eq!(fs.read_ahead_counts(), (0, 0));

    // As if cold: the 6 subdirectories and their 18 are read ahead, once, whichever
    // kind of listing asked.
    fs.read_ahead_as_if_cold();
    for plus in [false, true] {
        assert_eq!(list(d, plus), want);
        assert!(fs.read_ahead_settle(Duration::from_secs(10)));
        assert_eq!(fs.read_ahead_counts(), (24, 0), "plus {plus}");
    }
    // A caller walking in uses what was read.
    let s0 = fs.lookup(&root, d, os("s0")).unwrap().ino;
    assert_eq!(list(s0, true), ["f", "t0", "t1", "t2"].map(OsString::from));
    assert_eq!(fs.read_ahead_counts(), (24, 1));
}

/// The read-ahead races a tree that changes under it (directories renamed, removed and
/// made again from the host) without failing a listing, hanging, or keeping the
/// filesystem from being dropped.
#[test]
fn read_ahead_keeps_up_with_a_tree_changing_under_it() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};
    let (dir, fs) = setup(false);
    let root = Ctx::root();
    let top = dir.path().join("top");
    for i in 0..40 {
        for j in 0..4 {
            std::fs::create_dir_all(top.join(format!("d{i}/e{j}/f"))).unwrap();
        }
    }
    fs.read_ahead_as_if_cold();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let i = n % 40;
                let d = top.join(format!("d{i}"));
                let moved = top.join(format!("m{i}"));
                let _ = std::fs::rename(&d, &moved);
                let _ = std::fs::remove_dir_all(moved.join("e0"));
                let _ = std::fs::rename(&moved, &d);
                let _ = std::fs::create_dir_all(d.join("e0/f"));
                n += 1;
            }
        });
        let end = Instant::now() + Duration::from_millis(600);
        while Instant::now() < end {
            let t = fs.lookup(&root, Ino::ROOT, os("top")).unwrap().ino;
            let mut sink = VecSink {
                plus: true,
                ..VecSink::default()
            };
            fs.readdir(&root, t, None, 0, &mut sink).unwrap();
            for e in sink.entries {
                let Ok(sub) = fs.lookup(&root, t, &e.name) else {
                    continue; // renamed away meanwhile
                };
                let mut inner = VecSink {
                    plus: true,
                    ..VecSink::default()
                };
                match fs.readdir(&root, sub.ino, None, 0, &mut inner) {
                    Ok(()) | Err(VfsError::NotFound) | Err(VfsError::Stale) => {}
                    Err(err) => panic!("listing {:?}: {err:?}", e.name),
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert!(fs.read_ahead_settle(Duration::from_secs(10)));
    assert!(fs.read_ahead_counts().0 > 0, "nothing was read ahead");
    let started = Instant::now();
    drop(fs);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}
