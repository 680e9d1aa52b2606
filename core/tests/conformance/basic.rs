//! Attributes, namespace operations, names, timestamps, inode lifetime, statfs.

use std::collections::HashSet;
use std::time::{Duration, UNIX_EPOCH};

use super::*;

/// The fresh root: an empty directory with nlink 2.
pub fn root_is_an_empty_directory(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let root = getattr(fs, Ino::ROOT);
    assert_eq!(root.ino, Ino::ROOT);
    assert_eq!(root.kind, FileType::Directory);
    assert_eq!(root.nlink, 2);
    assert!(list(fs, Ino::ROOT).is_empty());
    ok!(fs.access(&Ctx::root(), Ino::ROOT, AccessMask::empty()));
}

/// `lookup` finds what `create` made with the same attributes `getattr` reports, and
/// fails with `NotFound` / `NotDir` as POSIX does.
pub fn lookup_returns_created_attributes(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let created = touch(fs, Ino::ROOT, "f");
    let found = lookup(fs, Ino::ROOT, "f");
    assert_same_inode(&created, &found);
    assert_same_inode(&found, &getattr(fs, found.ino));
    assert_eq!(found.kind, FileType::RegularFile);
    assert_eq!(
        (found.perm, found.nlink, found.size, found.uid, found.gid),
        (0o644, 1, 0, 0, 0)
    );
    assert_ne!(found.ino, Ino::ROOT);
    assert_ne!(found.ino, Ino(0));
    assert!(found.blksize > 0);
    expect_err!(
        fs.lookup(&Ctx::root(), Ino::ROOT, os("missing")),
        VfsError::NotFound
    );
    expect_err!(
        fs.lookup(&Ctx::root(), found.ino, os("x")),
        VfsError::NotDir
    );
}

/// An inode number that was never handed out is `Stale` (or `NotFound`), never a panic.
pub fn unknown_inode_is_stale(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let ghost = Ino(u64::MAX / 3);
    let root = Ctx::root();
    expect_err!(
        fs.getattr(&root, ghost, None),
        VfsError::Stale | VfsError::NotFound
    );
    expect_err!(
        fs.lookup(&root, ghost, os("x")),
        VfsError::Stale | VfsError::NotFound
    );
    expect_err!(
        fs.open(&root, ghost, OpenFlags::READ),
        VfsError::Stale | VfsError::NotFound
    );
    let mut buf = [0u8; 4];
    expect_err!(
        fs.read(&root, ghost, None, 0, &mut buf),
        VfsError::Stale | VfsError::NotFound
    );
    expect_err!(
        fs.write(&root, ghost, None, 0, b"x"),
        VfsError::Stale | VfsError::NotFound
    );
}

/// chmod: each permission bit (setuid/setgid/sticky included) as given, type bits in the
/// argument ignored, ctime moved, mtime not.
pub fn setattr_mode(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let root = Ctx::root();
    let f = touch(fs, Ino::ROOT, "f");
    tick();
    let set = SetAttr {
        mode: Some(0o600),
        ..SetAttr::default()
    };
    let a = ok!(fs.setattr(&root, f.ino, &set, None));
    assert_eq!((a.perm, a.kind), (0o600, FileType::RegularFile));
    assert!(a.ctime > f.ctime, "chmod must move ctime");
    assert_eq!(a.mtime, f.mtime, "chmod must not move mtime");
    assert_same_inode(&a, &getattr(fs, f.ino));
    for mode in [0o7777, 0o4755, 0o2710, 0o1000, 0o000, 0o100640] {
        let a = ok!(fs.setattr(
            &root,
            f.ino,
            &SetAttr {
                mode: Some(mode),
                ..SetAttr::default()
            },
            None
        ));
        assert_eq!(u32::from(a.perm), mode & 0o7777, "mode {mode:o}");
        assert_eq!(a.kind, FileType::RegularFile);
    }
    let d = mkdir(fs, Ino::ROOT, "d", 0o755);
    let a = ok!(fs.setattr(
        &root,
        d,
        &SetAttr {
            mode: Some(0o1700),
            ..SetAttr::default()
        },
        None
    ));
    assert_eq!((a.perm, a.kind), (0o1700, FileType::Directory));
}

/// chown by root changes uid and gid independently and moves ctime.
pub fn setattr_owner_as_root(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let root = Ctx::root();
    let f = touch(fs, Ino::ROOT, "f");
    tick();
    let a = ok!(fs.setattr(
        &root,
        f.ino,
        &SetAttr {
            uid: Some(1000),
            ..SetAttr::default()
        },
        None
    ));
    assert_eq!((a.uid, a.gid), (1000, 0));
    assert!(a.ctime > f.ctime);
    let a = ok!(fs.setattr(
        &root,
        f.ino,
        &SetAttr {
            gid: Some(2000),
            ..SetAttr::default()
        },
        None
    ));
    assert_eq!((a.uid, a.gid), (1000, 2000));
    let set = SetAttr {
        uid: Some(7),
        gid: Some(8),
        ..SetAttr::default()
    };
    let a = ok!(fs.setattr(&root, f.ino, &set, None));
    assert_eq!((a.uid, a.gid), (7, 8));
    assert_same_inode(&a, &getattr(fs, f.ino));
}

/// utimens: `At` stores the exact time (nanoseconds included), `Now` the current time;
/// either moves ctime; a field left `None` is untouched.
pub fn setattr_explicit_and_now_times(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let root = Ctx::root();
    let f = touch(fs, Ino::ROOT, "f");
    let t1 = UNIX_EPOCH + Duration::new(1_000_000_000, 123_456_789);
    let t2 = UNIX_EPOCH + Duration::new(1_500_000_000, 987_654_321);
    tick();
    let set = SetAttr {
        atime: Some(SetTime::At(t1)),
        mtime: Some(SetTime::At(t2)),
        ..SetAttr::default()
    };
    let a = ok!(fs.setattr(&root, f.ino, &set, None));
    assert_eq!((a.atime, a.mtime), (t1, t2));
    assert!(a.ctime > f.ctime, "utimens must move ctime");
    let g = getattr(fs, f.ino);
    assert_eq!((g.atime, g.mtime), (t1, t2));

    let a = ok!(fs.setattr(
        &root,
        f.ino,
        &SetAttr {
            mtime: Some(SetTime::At(t1)),
            ..SetAttr::default()
        },
        None
    ));
    assert_eq!(
        (a.atime, a.mtime),
        (t1, t1),
        "setting mtime alone must leave atime"
    );

    let set = SetAttr {
        atime: Some(SetTime::Now),
        mtime: Some(SetTime::Now),
        ..SetAttr::default()
    };
    let a = ok!(fs.setattr(&root, f.ino, &set, None));
    assert_recent(a.atime, "atime after SetTime::Now");
    assert_recent(a.mtime, "mtime after SetTime::Now");
    assert_recent(a.ctime, "ctime after SetTime::Now");

    let a = ok!(fs.setattr(
        &root,
        f.ino,
        &SetAttr {
            atime: Some(SetTime::At(t2)),
            ..SetAttr::default()
        },
        None
    ));
    assert_eq!(a.atime, t2);
    assert_recent(a.mtime, "mtime left alone");

    // Times before the epoch are representable too (ext4 and tmpfs keep them).
    let old = UNIX_EPOCH - Duration::from_secs(86_400);
    let a = ok!(fs.setattr(
        &root,
        f.ino,
        &SetAttr {
            mtime: Some(SetTime::At(old)),
            ..SetAttr::default()
        },
        None
    ));
    assert_eq!(a.mtime, old);
}

/// truncate: shrinking drops data for good (re-extending reads zeros), extending reads
/// zeros; both move mtime and ctime; truncating a directory is `IsDir`; a writable handle
/// may truncate.
pub fn truncate_shrinks_and_extends(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let root = Ctx::root();
    let ino = file_with(fs, Ino::ROOT, "f", b"hello world");
    let before = getattr(fs, ino);
    tick();
    let a = ok!(fs.setattr(
        &root,
        ino,
        &SetAttr {
            size: Some(5),
            ..SetAttr::default()
        },
        None
    ));
    assert_eq!(a.size, 5);
    assert!(
        a.mtime > before.mtime && a.ctime > before.ctime,
        "truncate must move mtime/ctime"
    );
    assert_eq!(contents(fs, ino), b"hello");
    let a = ok!(fs.setattr(
        &root,
        ino,
        &SetAttr {
            size: Some(11),
            ..SetAttr::default()
        },
        None
    ));
    assert_eq!(a.size, 11);
    assert_eq!(contents(fs, ino), b"hello\0\0\0\0\0\0");
    let big = 3 * 1024 * 1024 + 17;
    ok!(fs.setattr(
        &root,
        ino,
        &SetAttr {
            size: Some(big),
            ..SetAttr::default()
        },
        None
    ));
    let data = contents(fs, ino);
    assert_eq!(data.len() as u64, big);
    assert!(data[5..].iter().all(|&b| b == 0));
    let a = ok!(fs.setattr(
        &root,
        ino,
        &SetAttr {
            size: Some(0),
            ..SetAttr::default()
        },
        None
    ));
    assert_eq!((a.size, a.blocks), (0, 0));
    assert!(contents(fs, ino).is_empty());

    // Through a writable handle.
    write_at(fs, ino, None, 0, b"abcdef");
    let opened = ok!(fs.open(&root, ino, OpenFlags::WRITE));
    let set = SetAttr {
        size: Some(3),
        ..SetAttr::default()
    };
    assert_eq!(ok!(fs.setattr(&root, ino, &set, Some(opened.fh))).size, 3);
    ok!(fs.release(&root, ino, opened.fh));
    assert_eq!(contents(fs, ino), b"abc");

    let d = mkdir(fs, Ino::ROOT, "d", 0o755);
    expect_err!(fs.setattr(&root, d, &set, None), VfsError::IsDir);
}

/// symlink stores the target verbatim (any bytes, dangling is fine), readlink returns
/// it, lookup does not follow it, and readlink of a non-symlink is `InvalidArgument`.
pub fn symlink_and_readlink(fx: &dyn Fixture) {
    require!(fx, symlinks);
    let fs = &**fx.vfs();
    let root = Ctx::root();
    let target = "../does/not/../exist//x";
    let l = ok!(fs.symlink(&root, Ino::ROOT, os("l"), os(target)));
    assert_eq!(l.kind, FileType::Symlink);
    assert_eq!((l.size, l.nlink), (target.len() as u64, 1));
    assert_eq!(ok!(fs.readlink(&root, l.ino)), target.as_bytes());
    let found = lookup(fs, Ino::ROOT, "l");
    assert_eq!((found.ino, found.kind), (l.ino, FileType::Symlink));
    assert_eq!(
        getattr(fs, Ino::ROOT).nlink,
        2,
        "a symlink is not a subdirectory"
    );

    let long = "x/".repeat(500);
    let l2 = ok!(fs.symlink(&root, Ino::ROOT, os("long"), os(&long)));
    assert_eq!(ok!(fs.readlink(&root, l2.ino)), long.as_bytes());
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let raw = OsStr::from_bytes(b"\xff\xfe/caf\xe9");
        let l3 = ok!(fs.symlink(&root, Ino::ROOT, os("raw"), raw));
        assert_eq!(ok!(fs.readlink(&root, l3.ino)), raw.as_bytes());
    }

    expect_err!(
        fs.symlink(&root, Ino::ROOT, os("l"), os("elsewhere")),
        VfsError::Exists
    );
    assert_eq!(ok!(fs.readlink(&root, l.ino)), target.as_bytes());
    let f = touch(fs, Ino::ROOT, "f");
    expect_err!(fs.readlink(&root, f.ino), VfsError::InvalidArgument);
    expect_err!(fs.symlink(&root, f.ino, os("x"), os("y")), VfsError::NotDir);
}

/// mknod makes fifos, sockets, regular files and (as root) devices with their rdev; a
/// directory or symlink cannot be made this way.
pub fn mknod_special_files(fx: &dyn Fixture) {
    require!(fx, special_files);
    let fs = &**fx.vfs();
    let root = Ctx::root();
    let cases = [
        ("fifo", FileType::Fifo, 0o640, 0),
        ("sock", FileType::Socket, 0o600, 0),
        ("reg", FileType::RegularFile, 0o644, 0),
        ("null", FileType::CharDevice, 0o666, 0x0103),
        ("blk", FileType::BlockDevice, 0o660, 0x0801),
    ];
    for (name, kind, mode, rdev) in cases {
        let a = ok!(fs.mknod(&root, Ino::ROOT, os(name), kind, mode, rdev));
        assert_eq!(
            (a.kind, u32::from(a.perm), a.nlink, a.size),
            (kind, mode, 1, 0),
            "{name}"
        );
        assert_eq!(a.rdev, rdev, "{name}: rdev");
        let found = lookup(fs, Ino::ROOT, name);
        assert_eq!(
            (found.ino, found.kind, found.rdev),
            (a.ino, kind, rdev),
            "{name}"
        );
    }
    let listed = list(fs, Ino::ROOT);
    for (name, kind, _, _) in cases {
        let e = listed
            .iter()
            .find(|e| e.name == name)
            .expect("mknod'ed entry listed");
        assert_eq!(e.kind, kind, "{name}: readdir kind");
    }
    expect_err!(
        fs.mknod(&root, Ino::ROOT, os("fifo"), FileType::Fifo, 0o644, 0),
        VfsError::Exists
    );
    expect_err!(
        fs.mknod(&root, Ino::ROOT, os("dir"), FileType::Directory, 0o755, 0),
        VfsError::NotPermitted | VfsError::InvalidArgument
    );
    expect_err!(
        fs.mknod(&root, Ino::ROOT, os("sym"), FileType::Symlink, 0o777, 0),
        VfsError::NotPermitted | VfsError::InvalidArgument
    );
    assert!(!exists(fs, Ino::ROOT, "dir") && !exists(fs, Ino::ROOT, "sym"));
    assert_eq!(getattr(fs, Ino::ROOT).nlink, 2);
}

/// A non-root caller may make fifos and sockets where it can write, but not devices.
pub fn mknod_devices_need_root(fx: &dyn Fixture) {
    require!(fx, special_files);
    require!(fx, enforces_permissions);
    let fs = &**fx.vfs();
    let u = user(1000);
    let d = mkdir(fs, Ino::ROOT, "pub", 0o777);
    let a = ok!(fs.mknod(&u, d, os("fifo"), FileType::Fifo, 0o644, 0));
    assert_eq!((a.kind, a.uid, a.gid), (FileType::Fifo, 1000, 1000));
    ok!(fs.mknod(&u, d, os("sock"), FileType::Socket, 0o644, 0));
    expect_err!(
        fs.mknod(&u, d, os("c"), FileType::CharDevice, 0o644, 0x0103),
        VfsError::NotPermitted
    );
    expect_err!(
        fs.mknod(&u, d, os("b"), FileType::BlockDevice, 0o644, 0x0801),
        VfsError::NotPermitted
    );
    assert!(!exists(fs, d, "c") && !exists(fs, d, "b"));
}

/// mkdir/rmdir: attributes, `Exists`, `NotEmpty`, `NotDir`, `NotFound`, parent nlink,
/// and a removed directory's inode is gone.
pub fn mkdir_and_rmdir(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let root = Ctx::root();
    let d = ok!(fs.mkdir(&root, Ino::ROOT, os("d"), 0o751));
    assert_eq!(
        (d.kind, d.perm, d.nlink, d.uid, d.gid),
        (FileType::Directory, 0o751, 2, 0, 0)
    );
    assert_same_inode(&d, &lookup(fs, Ino::ROOT, "d"));
    assert_eq!(getattr(fs, Ino::ROOT).nlink, 3);
    expect_err!(fs.mkdir(&root, Ino::ROOT, os("d"), 0o755), VfsError::Exists);
    let f = touch(fs, Ino::ROOT, "f");
    expect_err!(fs.mkdir(&root, Ino::ROOT, os("f"), 0o755), VfsError::Exists);
    expect_err!(fs.mkdir(&root, f.ino, os("x"), 0o755), VfsError::NotDir);

    mkdir(fs, d.ino, "e", 0o755);
    touch(fs, d.ino, "g");
    expect_err!(fs.rmdir(&root, Ino::ROOT, os("d")), VfsError::NotEmpty);
    expect_err!(fs.rmdir(&root, d.ino, os("g")), VfsError::NotDir);
    expect_err!(fs.rmdir(&root, d.ino, os("missing")), VfsError::NotFound);
    expect_err!(fs.rmdir(&root, f.ino, os("x")), VfsError::NotDir);
    ok!(fs.rmdir(&root, d.ino, os("e")));
    expect_err!(fs.rmdir(&root, Ino::ROOT, os("d")), VfsError::NotEmpty);
    ok!(fs.unlink(&root, d.ino, os("g")));
    assert_eq!(getattr(fs, d.ino).nlink, 2);
    ok!(fs.rmdir(&root, Ino::ROOT, os("d")));
    assert_eq!(getattr(fs, Ino::ROOT).nlink, 2);
    assert!(!exists(fs, Ino::ROOT, "d"));
    expect_err!(
        fs.getattr(&root, d.ino, None),
        VfsError::Stale | VfsError::NotFound
    );
    assert_eq!(name_list(fs, Ino::ROOT), ["f"]);
}

/// unlink removes names of non-directories only; the inode goes when its last link does.
pub fn unlink_semantics(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let root = Ctx::root();
    let d = mkdir(fs, Ino::ROOT, "d", 0o755);
    expect_err!(fs.unlink(&root, Ino::ROOT, os("d")), VfsError::IsDir);
    expect_err!(
        fs.unlink(&root, Ino::ROOT, os("missing")),
        VfsError::NotFound
    );
    let f = file_with(fs, d, "f", b"data");
    expect_err!(fs.unlink(&root, f, os("x")), VfsError::NotDir);
    ok!(fs.unlink(&root, d, os("f")));
    assert!(!exists(fs, d, "f"));
    expect_err!(fs.getattr(&root, f, None), VfsError::Stale);
    expect_err!(fs.unlink(&root, d, os("f")), VfsError::NotFound);
    assert!(exists(fs, Ino::ROOT, "d"));
    if fx.vfs().capabilities().symlinks {
        ok!(fs.symlink(&root, d, os("l"), os("d")));
        ok!(fs.unlink(&root, d, os("l")));
    }
    assert!(list(fs, d).is_empty());
}

/// link: nlink counts on the file, data shared between names, `Exists`, and linking a
/// directory is `NotPermitted`.
pub fn hard_links_count_and_share_data(fx: &dyn Fixture) {
    require!(fx, hard_links);
    let fs = &**fx.vfs();
    let root = Ctx::root();
    let f = touch(fs, Ino::ROOT, "f");
    let d = mkdir(fs, Ino::ROOT, "d", 0o755);
    tick();
    let g = ok!(fs.link(&root, f.ino, Ino::ROOT, os("g")));
    assert_eq!((g.ino, g.nlink, g.kind), (f.ino, 2, FileType::RegularFile));
    assert!(g.ctime > f.ctime, "link must move the inode's ctime");
    let h = ok!(fs.link(&root, f.ino, d, os("h")));
    assert_eq!(h.nlink, 3);
    assert_eq!(lookup(fs, Ino::ROOT, "f").nlink, 3);
    assert_eq!(lookup(fs, d, "h").ino, f.ino);

    write_at(fs, lookup(fs, d, "h").ino, None, 0, b"shared");
    assert_eq!(contents(fs, lookup(fs, Ino::ROOT, "g").ino), b"shared");

    ok!(fs.unlink(&root, Ino::ROOT, os("f")));
    assert_eq!(lookup(fs, Ino::ROOT, "g").nlink, 2);
    assert_eq!(contents(fs, g.ino), b"shared");
    ok!(fs.unlink(&root, d, os("h")));
    assert_eq!(getattr(fs, g.ino).nlink, 1);

    expect_err!(fs.link(&root, g.ino, Ino::ROOT, os("d")), VfsError::Exists);
    expect_err!(fs.link(&root, g.ino, Ino::ROOT, os("g")), VfsError::Exists);
    expect_err!(
        fs.link(&root, d, Ino::ROOT, os("d2")),
        VfsError::NotPermitted
    );
    expect_err!(fs.link(&root, g.ino, g.ino, os("x")), VfsError::NotDir);
    assert_eq!(getattr(fs, d).nlink, 2);
    assert_eq!(getattr(fs, g.ino).nlink, 1);
    if fx.vfs().capabilities().symlinks {
        // A link to a symlink links the symlink itself (linkat without AT_SYMLINK_FOLLOW).
        let l = ok!(fs.symlink(&root, Ino::ROOT, os("l"), os("g")));
        let l2 = ok!(fs.link(&root, l.ino, Ino::ROOT, os("l2")));
        assert_eq!((l2.ino, l2.kind, l2.nlink), (l.ino, FileType::Symlink, 2));
    }
}

/// A directory's nlink is 2 plus its subdirectories; files and symlinks do not count.
pub fn directory_nlink_is_two_plus_subdirs(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let root = Ctx::root();
    let a = mkdir(fs, Ino::ROOT, "a", 0o755);
    assert_eq!((getattr(fs, Ino::ROOT).nlink, getattr(fs, a).nlink), (3, 2));
    for i in 0..5 {
        mkdir(fs, a, &format!("sub{i}"), 0o755);
    }
    touch(fs, a, "file");
    if fx.vfs().capabilities().symlinks {
        ok!(fs.symlink(&root, a, os("link"), os("sub0")));
    }
    if fx.vfs().capabilities().special_files {
        ok!(fs.mknod(&root, a, os("fifo"), FileType::Fifo, 0o644, 0));
    }
    assert_eq!(getattr(fs, a).nlink, 7);
    assert_eq!(lookup(fs, Ino::ROOT, "a").nlink, 7);
    ok!(fs.rmdir(&root, a, os("sub3")));
    assert_eq!(getattr(fs, a).nlink, 6);
    ok!(fs.unlink(&root, a, os("file")));
    assert_eq!(getattr(fs, a).nlink, 6);
    assert_eq!(getattr(fs, Ino::ROOT).nlink, 3);
}

/// size and blocks follow writes; a sparse extension adds size but (on a filesystem with
/// sparse files) next to no blocks.
pub fn size_and_blocks_after_writes(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let root = Ctx::root();
    let f = touch(fs, Ino::ROOT, "f");
    assert_eq!((f.size, f.blocks), (0, 0));
    write_at(fs, f.ino, None, 0, b"0123456789");
    let a = getattr(fs, f.ino);
    assert_eq!(a.size, 10);
    assert!(a.blocks > 0, "a file with data has blocks");
    write_at(fs, f.ino, None, 0, &[7u8; 100 * 1024]);
    let a = getattr(fs, f.ino);
    assert_eq!(a.size, 100 * 1024);
    assert!(
        a.blocks * 512 >= 100 * 1024,
        "blocks {} cover 100 KiB",
        a.blocks
    );
    write_at(fs, f.ino, None, 4, b"xy");
    assert_eq!(getattr(fs, f.ino).size, 100 * 1024, "overwrite keeps size");

    let s = touch(fs, Ino::ROOT, "sparse");
    let off = 10 * 1024 * 1024;
    write_at(fs, s.ino, None, off, b"z");
    let a = getattr(fs, s.ino);
    assert_eq!(a.size, off + 1);
    let sparse = fx.vfs().capabilities().sparse_files;
    if sparse {
        assert!(
            a.blocks > 0 && a.blocks * 512 <= 1024 * 1024,
            "10 MiB hole uses {} blocks",
            a.blocks
        );
    }
    ok!(fs.setattr(
        &root,
        s.ino,
        &SetAttr {
            size: Some(100 << 20),
            ..SetAttr::default()
        },
        None
    ));
    let b = getattr(fs, s.ino);
    assert_eq!(b.size, 100 << 20);
    if sparse {
        assert_eq!(
            b.blocks, a.blocks,
            "extending with truncate allocates nothing"
        );
    }
    assert_eq!(read_at(fs, s.ino, None, off - 2, 4), b"\0\0z\0");
}

/// A write far beyond EOF (1 TiB) works on sparse storage and reads back around the hole.
pub fn sparse_write_at_large_offset(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let f = touch(fs, Ino::ROOT, "f");
    let off = 1u64 << 40;
    write_at(fs, f.ino, None, off, b"x");
    let a = getattr(fs, f.ino);
    assert_eq!(a.size, off + 1);
    assert_eq!(read_at(fs, f.ino, None, off - 4, 8), b"\0\0\0\0x");
    assert!(
        read_at(fs, f.ino, None, off / 2, 4096)
            .iter()
            .all(|&b| b == 0)
    );
    assert!(read_at(fs, f.ino, None, off + 1, 10).is_empty());
    if fx.vfs().capabilities().sparse_files {
        assert!(
            a.blocks * 512 <= 1024 * 1024,
            "1 TiB hole uses {} blocks",
            a.blocks
        );
    }
}

/// Empty, `.`, `..`, names with `/` or NUL are `InvalidArgument` for every call taking a
/// name, and nothing gets created.
pub fn invalid_names_are_rejected(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let root = Ctx::root();
    let caps = fx.vfs().capabilities();
    let f = touch(fs, Ino::ROOT, "f");
    let rw = OpenFlags::READ | OpenFlags::WRITE;
    for bad in ["", ".", "..", "a/b", "/", "a\0b", "\0"] {
        let n = os(bad);
        expect_err!(fs.lookup(&root, Ino::ROOT, n), VfsError::InvalidArgument);
        expect_err!(
            fs.create(&root, Ino::ROOT, n, 0o644, rw),
            VfsError::InvalidArgument
        );
        expect_err!(
            fs.mkdir(&root, Ino::ROOT, n, 0o755),
            VfsError::InvalidArgument
        );
        expect_err!(fs.unlink(&root, Ino::ROOT, n), VfsError::InvalidArgument);
        expect_err!(fs.rmdir(&root, Ino::ROOT, n), VfsError::InvalidArgument);
        expect_err!(
            fs.rename(
                &root,
                Ino::ROOT,
                os("f"),
                Ino::ROOT,
                n,
                RenameFlags::empty()
            ),
            VfsError::InvalidArgument
        );
        expect_err!(
            fs.rename(
                &root,
                Ino::ROOT,
                n,
                Ino::ROOT,
                os("g"),
                RenameFlags::empty()
            ),
            VfsError::InvalidArgument
        );
        if caps.special_files {
            expect_err!(
                fs.mknod(&root, Ino::ROOT, n, FileType::Fifo, 0o644, 0),
                VfsError::InvalidArgument
            );
        }
        if caps.symlinks {
            expect_err!(
                fs.symlink(&root, Ino::ROOT, n, os("t")),
                VfsError::InvalidArgument
            );
        }
        if caps.hard_links {
            expect_err!(
                fs.link(&root, f.ino, Ino::ROOT, n),
                VfsError::InvalidArgument
            );
        }
    }
    assert_eq!(name_list(fs, Ino::ROOT), ["f"]);
    assert_eq!(getattr(fs, f.ino).nlink, 1);
    assert_eq!(getattr(fs, Ino::ROOT).nlink, 2);
}

/// Names of exactly `max_name_len` (255) bytes work everywhere; one byte more is
/// `NameTooLong`, also for lookup.
pub fn name_length_limit(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let root = Ctx::root();
    let caps = fx.vfs().capabilities();
    assert_eq!(caps.max_name_len, 255);
    let max = "x".repeat(255);
    let too_long = "y".repeat(256);
    let f = touch(fs, Ino::ROOT, &max);
    assert_eq!(lookup(fs, Ino::ROOT, &max).ino, f.ino);
    assert_eq!(name_list(fs, Ino::ROOT), std::slice::from_ref(&max));
    mkdir(fs, Ino::ROOT, &"d".repeat(255), 0o755);
    let rw = OpenFlags::READ | OpenFlags::WRITE;
    let n = os(&too_long);
    expect_err!(fs.lookup(&root, Ino::ROOT, n), VfsError::NameTooLong);
    expect_err!(
        fs.create(&root, Ino::ROOT, n, 0o644, rw),
        VfsError::NameTooLong
    );
    expect_err!(fs.mkdir(&root, Ino::ROOT, n, 0o755), VfsError::NameTooLong);
    expect_err!(
        fs.rename(
            &root,
            Ino::ROOT,
            os(&max),
            Ino::ROOT,
            n,
            RenameFlags::empty()
        ),
        VfsError::NameTooLong
    );
    if caps.symlinks {
        expect_err!(
            fs.symlink(&root, Ino::ROOT, n, os("t")),
            VfsError::NameTooLong
        );
        ok!(fs.symlink(&root, Ino::ROOT, os(&"s".repeat(255)), os("t")));
    }
    if caps.hard_links {
        expect_err!(fs.link(&root, f.ino, Ino::ROOT, n), VfsError::NameTooLong);
        ok!(fs.link(&root, f.ino, Ino::ROOT, os(&"h".repeat(255))));
    }
    if caps.special_files {
        expect_err!(
            fs.mknod(&root, Ino::ROOT, n, FileType::Fifo, 0o644, 0),
            VfsError::NameTooLong
        );
    }
    let renamed = "r".repeat(255);
    ok!(fs.rename(
        &root,
        Ino::ROOT,
        os(&max),
        Ino::ROOT,
        os(&renamed),
        RenameFlags::empty()
    ));
    assert_eq!(lookup(fs, Ino::ROOT, &renamed).ino, f.ino);
    assert!(!name_list(fs, Ino::ROOT).contains(&too_long));
}

/// Names are bytes: non-UTF-8 names are created, found, listed and renamed exactly.
pub fn non_utf8_names_round_trip(fx: &dyn Fixture) {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let fs = &**fx.vfs();
        let root = Ctx::root();
        let a = OsStr::from_bytes(b"caf\xe9-\xff\xfe");
        let b = OsStr::from_bytes(b"\x80\x81 \xc3\x28");
        let rw = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::EXCLUSIVE;
        let (attr, opened) = ok!(fs.create(&root, Ino::ROOT, a, 0o644, rw));
        ok!(fs.release(&root, attr.ino, opened.fh));
        assert_eq!(ok!(fs.lookup(&root, Ino::ROOT, a)).ino, attr.ino);
        let d = ok!(fs.mkdir(&root, Ino::ROOT, b, 0o755));
        let listed = names(fs, Ino::ROOT);
        assert_eq!(listed.get(a), Some(&attr.ino));
        assert_eq!(listed.get(b), Some(&d.ino));
        let c = OsStr::from_bytes(b"\xf0\x28\x8c\x28");
        ok!(fs.rename(&root, Ino::ROOT, a, d.ino, c, RenameFlags::empty()));
        assert_eq!(ok!(fs.lookup(&root, d.ino, c)).ino, attr.ino);
        expect_err!(fs.lookup(&root, Ino::ROOT, a), VfsError::NotFound);
        assert_eq!(list(fs, d.ino)[0].name, c);
        ok!(fs.unlink(&root, d.ino, c));
        ok!(fs.rmdir(&root, Ino::ROOT, b));
        assert!(list(fs, Ino::ROOT).is_empty());
    }
    #[cfg(not(unix))]
    {
        let _ = fx;
        println!("skipped: names are UTF-16 on this platform; there are no non-UTF-8 names");
    }
}

/// Lookup is case-sensitive exactly when the capabilities say so.
pub fn case_sensitivity_matches_capabilities(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let root = Ctx::root();
    let upper = touch(fs, Ino::ROOT, "Case");
    let flags = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::EXCLUSIVE;
    if fx.vfs().capabilities().case_sensitive {
        expect_err!(fs.lookup(&root, Ino::ROOT, os("case")), VfsError::NotFound);
        let lower = touch(fs, Ino::ROOT, "case");
        assert_ne!(lower.ino, upper.ino);
        assert_eq!(name_list(fs, Ino::ROOT), ["Case", "case"]);
    } else {
        assert_eq!(lookup(fs, Ino::ROOT, "cASE").ino, upper.ino);
        expect_err!(
            fs.create(&root, Ino::ROOT, os("case"), 0o644, flags),
            VfsError::Exists
        );
        assert_eq!(name_list(fs, Ino::ROOT), ["Case"]);
    }
}

/// A non-zero `Ctx::umask` is applied to the modes of new files, directories and nodes.
pub fn umask_from_ctx_is_applied(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let mut ctx = Ctx::root();
    ctx.umask = 0o027;
    let flags = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::EXCLUSIVE;
    let (f, opened) = ok!(fs.create(&ctx, Ino::ROOT, os("f"), 0o666, flags));
    ok!(fs.release(&ctx, f.ino, opened.fh));
    assert_eq!(f.perm, 0o640);
    assert_eq!(getattr(fs, f.ino).perm, 0o640);
    let d = ok!(fs.mkdir(&ctx, Ino::ROOT, os("d"), 0o777));
    assert_eq!(d.perm, 0o750);
    if fx.vfs().capabilities().special_files {
        let n = ok!(fs.mknod(&ctx, Ino::ROOT, os("p"), FileType::Fifo, 0o666, 0));
        assert_eq!(n.perm, 0o640);
    }
}

/// New objects belong to the caller's uid and primary gid.
pub fn new_objects_are_owned_by_the_caller(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let d = mkdir(fs, Ino::ROOT, "pub", 0o777);
    let u = Ctx::with_groups(1000, 1500, &[]);
    let f = touch_as(fs, &u, d, "f", 0o644);
    assert_eq!((f.uid, f.gid), (1000, 1500));
    assert_eq!(
        (getattr(fs, f.ino).uid, getattr(fs, f.ino).gid),
        (1000, 1500)
    );
    let sub = ok!(fs.mkdir(&u, d, os("sub"), 0o755));
    assert_eq!((sub.uid, sub.gid), (1000, 1500));
    if fx.vfs().capabilities().symlinks {
        let l = ok!(fs.symlink(&u, d, os("l"), os("f")));
        assert_eq!((l.uid, l.gid), (1000, 1500));
    }
}

/// In a setgid directory new entries take the directory's group, and new subdirectories
/// inherit the setgid bit.
pub fn setgid_directory_is_inherited(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let d = mkdir(fs, Ino::ROOT, "shared", 0o777);
    chown_mode(fs, d, 0, 3000, 0o2777);
    let u = user(1000);
    let f = touch_as(fs, &u, d, "f", 0o644);
    assert_eq!((f.uid, f.gid), (1000, 3000));
    let sub = ok!(fs.mkdir(&u, d, os("sub"), 0o755));
    assert_eq!((sub.uid, sub.gid), (1000, 3000));
    assert_eq!(sub.perm & 0o2000, 0o2000, "a subdirectory inherits setgid");
    let f2 = touch_as(fs, &u, sub.ino, "f2", 0o644);
    assert_eq!(f2.gid, 3000);
}

/// Creating, removing and renaming entries moves the parent's mtime and ctime; a new
/// object's own times are now.
pub fn namespace_changes_update_parent_times(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let root = Ctx::root();
    let d = mkdir(fs, Ino::ROOT, "d", 0o755);
    let e = mkdir(fs, Ino::ROOT, "e", 0o755);
    let mut last = getattr(fs, d);
    let mut check = |what: &str| {
        let now = getattr(fs, d);
        assert!(
            now.mtime > last.mtime,
            "{what} must move the parent's mtime"
        );
        assert!(
            now.ctime > last.ctime,
            "{what} must move the parent's ctime"
        );
        last = now;
        tick();
    };
    tick();
    let f = touch(fs, d, "f");
    assert_recent(f.mtime, "new file mtime");
    assert_recent(f.ctime, "new file ctime");
    assert_recent(f.atime, "new file atime");
    assert!(f.crtime <= f.ctime);
    check("create");
    mkdir(fs, d, "sub", 0o755);
    check("mkdir");
    ok!(fs.rename(&root, d, os("f"), d, os("g"), RenameFlags::empty()));
    check("rename within");
    ok!(fs.rmdir(&root, d, os("sub")));
    check("rmdir");
    let e_before = getattr(fs, e);
    ok!(fs.rename(&root, d, os("g"), e, os("g"), RenameFlags::empty()));
    check("rename out");
    assert!(
        getattr(fs, e).mtime > e_before.mtime,
        "rename in must move the target dir's mtime"
    );
    ok!(fs.rename(&root, e, os("g"), d, os("g"), RenameFlags::empty()));
    check("rename in");
    ok!(fs.unlink(&root, d, os("g")));
    check("unlink");
    if fx.vfs().capabilities().symlinks {
        ok!(fs.symlink(&root, d, os("l"), os("x")));
        check("symlink");
    }
}

/// A write moves mtime and ctime; a read moves neither.
pub fn write_updates_mtime_and_ctime(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let f = touch(fs, Ino::ROOT, "f");
    tick();
    write_at(fs, f.ino, None, 0, b"abc");
    let a = getattr(fs, f.ino);
    assert!(
        a.mtime > f.mtime && a.ctime > f.ctime,
        "write must move mtime and ctime"
    );
    tick();
    assert_eq!(read_at(fs, f.ino, None, 0, 3), b"abc");
    let b = getattr(fs, f.ino);
    assert_eq!(
        (b.mtime, b.ctime),
        (a.mtime, a.ctime),
        "read must not move mtime or ctime"
    );
}

/// `forget` drops lookup references, but an inode with links stays fully usable; bogus
/// counts and unknown inodes do not panic.
pub fn forget_keeps_linked_inodes(fx: &dyn Fixture) {
    if let Some(reason) = fx.forget_frees_inodes() {
        println!("skipped: {reason}");
        return;
    }
    let fs = &**fx.vfs();
    let root = Ctx::root();
    let f = touch(fs, Ino::ROOT, "f");
    for _ in 0..3 {
        lookup(fs, Ino::ROOT, "f");
    }
    fs.forget(f.ino, 4);
    assert_eq!(getattr(fs, f.ino).ino, f.ino);
    write_at(fs, f.ino, None, 0, b"still here");
    assert_eq!(contents(fs, f.ino), b"still here");
    let d = mkdir(fs, Ino::ROOT, "d", 0o755);
    fs.forget(d, 1);
    touch(fs, d, "child");
    assert_eq!(name_list(fs, d), ["child"]);
    fs.forget(f.ino, u64::MAX);
    fs.forget(Ino(u64::MAX / 3), 7);
    fs.forget(Ino::ROOT, 1);
    assert_eq!(lookup(fs, Ino::ROOT, "f").ino, f.ino);
    assert_eq!(getattr(fs, Ino::ROOT).kind, FileType::Directory);
    ok!(fs.unlink(&root, Ino::ROOT, os("f")));
    expect_err!(fs.getattr(&root, f.ino, None), VfsError::Stale);
}

/// Inode numbers are never handed out twice, even after their inodes are freed.
pub fn inode_numbers_are_never_reused(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let root = Ctx::root();
    let mut seen = HashSet::from([Ino::ROOT]);
    for i in 0..100 {
        let f = touch(fs, Ino::ROOT, "f");
        assert!(
            seen.insert(f.ino),
            "round {i}: file inode {:?} reused",
            f.ino
        );
        ok!(fs.unlink(&root, Ino::ROOT, os("f")));
        let d = mkdir(fs, Ino::ROOT, "d", 0o755);
        assert!(seen.insert(d), "round {i}: directory inode {d:?} reused");
        ok!(fs.rmdir(&root, Ino::ROOT, os("d")));
    }
    assert!(!seen.contains(&Ino(0)));
}

/// fsync, flush and fsyncdir succeed with and without handles.
pub fn fsync_flush_and_fsyncdir_succeed(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let root = Ctx::root();
    let ino = file_with(fs, Ino::ROOT, "f", b"data");
    let opened = ok!(fs.open(&root, ino, OpenFlags::READ | OpenFlags::WRITE));
    write_at(fs, ino, Some(opened.fh), 4, b"more");
    ok!(fs.flush(&root, ino, opened.fh, 42));
    ok!(fs.fsync(&root, ino, Some(opened.fh), false));
    ok!(fs.fsync(&root, ino, Some(opened.fh), true));
    ok!(fs.fsync(&root, ino, None, false));
    ok!(fs.flush(&root, ino, opened.fh, 42));
    ok!(fs.release(&root, ino, opened.fh));
    let dh = ok!(fs.opendir(&root, Ino::ROOT, OpenFlags::READ));
    ok!(fs.fsyncdir(&root, Ino::ROOT, Some(dh), false));
    ok!(fs.fsyncdir(&root, Ino::ROOT, None, true));
    ok!(fs.releasedir(&root, Ino::ROOT, dh));
    assert_eq!(contents(fs, ino), b"datamore");
}

/// statfs numbers are consistent: 255-byte names, non-zero block sizes, free <= total.
pub fn statfs_is_sane(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let st = ok!(fs.statfs(&Ctx::root(), Ino::ROOT));
    assert_eq!(st.namelen, 255);
    assert_eq!(st.namelen, fx.vfs().capabilities().max_name_len);
    assert!(st.bsize > 0 && st.frsize > 0, "{st:?}");
    assert!(st.bfree <= st.blocks && st.bavail <= st.bfree, "{st:?}");
    assert!(st.ffree <= st.files, "{st:?}");
    let f = file_with(fs, Ino::ROOT, "f", &[1u8; 64 * 1024]);
    let st2 = ok!(fs.statfs(&Ctx::root(), f));
    assert!(
        st2.bfree <= st2.blocks && st2.bavail <= st2.bfree,
        "{st2:?}"
    );
    assert!(st2.ffree <= st2.files, "{st2:?}");
}

/// A read-only filesystem serves reads and fails every change with `ReadOnly`.
pub fn read_only_filesystem_rejects_changes(fx: &dyn Fixture) {
    let Some(ro) = fx.read_only_variant() else {
        println!("skipped: this fixture has no read-only variant");
        return;
    };
    let caps = ro.vfs().capabilities();
    assert!(
        caps.read_only,
        "the read-only variant must say so in its capabilities"
    );
    let fs = &**ro.vfs();
    let root = Ctx::root();
    let rw = OpenFlags::READ | OpenFlags::WRITE;
    getattr(fs, Ino::ROOT);
    list(fs, Ino::ROOT);
    ok!(fs.statfs(&root, Ino::ROOT));
    ok!(fs.access(&root, Ino::ROOT, AccessMask::READ | AccessMask::EXEC));
    expect_err!(
        fs.access(&root, Ino::ROOT, AccessMask::WRITE),
        VfsError::ReadOnly
    );
    expect_err!(
        fs.create(&root, Ino::ROOT, os("f"), 0o644, rw),
        VfsError::ReadOnly
    );
    expect_err!(
        fs.mkdir(&root, Ino::ROOT, os("d"), 0o755),
        VfsError::ReadOnly
    );
    let set = SetAttr {
        mode: Some(0o700),
        ..SetAttr::default()
    };
    expect_err!(fs.setattr(&root, Ino::ROOT, &set, None), VfsError::ReadOnly);
    let set = SetAttr {
        mtime: Some(SetTime::Now),
        ..SetAttr::default()
    };
    expect_err!(fs.setattr(&root, Ino::ROOT, &set, None), VfsError::ReadOnly);
    if caps.symlinks {
        expect_err!(
            fs.symlink(&root, Ino::ROOT, os("l"), os("t")),
            VfsError::ReadOnly
        );
    }
    if caps.special_files {
        expect_err!(
            fs.mknod(&root, Ino::ROOT, os("p"), FileType::Fifo, 0o644, 0),
            VfsError::ReadOnly
        );
    }
    if caps.xattrs {
        expect_err!(
            fs.setxattr(&root, Ino::ROOT, os("user.x"), b"v", XattrFlags::empty()),
            VfsError::ReadOnly
        );
    }
    assert!(list(fs, Ino::ROOT).is_empty());
}
