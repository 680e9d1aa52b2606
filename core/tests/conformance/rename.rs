//! rename and renameat2 semantics.

use super::*;

fn mv(fs: &dyn Vfs, from: (Ino, &str), to: (Ino, &str), flags: RenameFlags) -> VfsResult<()> {
    fs.rename(&Ctx::root(), from.0, os(from.1), to.0, os(to.1), flags)
}

const PLAIN: RenameFlags = RenameFlags::empty();

/// A file moves within and across directories keeping its inode and data.
pub fn rename_file_within_and_across_dirs(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let f = file_with(fs, Ino::ROOT, "f", b"payload");
    let d = mkdir(fs, Ino::ROOT, "d", 0o755);
    ok!(mv(fs, (Ino::ROOT, "f"), (Ino::ROOT, "g"), PLAIN));
    assert!(!exists(fs, Ino::ROOT, "f"));
    assert_eq!(lookup(fs, Ino::ROOT, "g").ino, f);
    ok!(mv(fs, (Ino::ROOT, "g"), (d, "h"), PLAIN));
    assert_eq!(name_list(fs, Ino::ROOT), ["d"]);
    assert_eq!(names(fs, d).get(os("h")), Some(&f));
    assert_eq!(contents(fs, f), b"payload");
    assert_eq!(getattr(fs, f).nlink, 1);
    assert_eq!(
        getattr(fs, d).nlink,
        2,
        "moving a file does not change directory nlink"
    );
    expect_err!(
        mv(fs, (Ino::ROOT, "missing"), (d, "x"), PLAIN),
        VfsError::NotFound
    );
    expect_err!(mv(fs, (f, "x"), (d, "y"), PLAIN), VfsError::NotDir);
    expect_err!(mv(fs, (d, "h"), (f, "y"), PLAIN), VfsError::NotDir);
    assert_eq!(names(fs, d).get(os("h")), Some(&f));
}

/// Replacing a file: the target name points at the source inode at once, the old target
/// loses its link but stays readable through an open handle, and is freed on release.
pub fn rename_file_over_file_keeps_open_target(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let root = Ctx::root();
    let src = file_with(fs, Ino::ROOT, "src", b"new contents");
    let dst = file_with(fs, Ino::ROOT, "dst", b"old contents");
    let count_before = fx.inode_count();
    let opened = ok!(fs.open(&root, dst, OpenFlags::READ | OpenFlags::WRITE));
    ok!(mv(fs, (Ino::ROOT, "src"), (Ino::ROOT, "dst"), PLAIN));
    assert_eq!(name_list(fs, Ino::ROOT), ["dst"]);
    let now = lookup(fs, Ino::ROOT, "dst");
    assert_eq!((now.ino, now.nlink), (src, 1));
    assert_eq!(contents(fs, src), b"new contents");
    assert_eq!(read_at(fs, dst, Some(opened.fh), 0, 100), b"old contents");
    write_at(fs, dst, Some(opened.fh), 0, b"OLD");
    assert_eq!(read_at(fs, dst, Some(opened.fh), 0, 100), b"OLD contents");
    assert_eq!(ok!(fs.getattr(&root, dst, Some(opened.fh))).nlink, 0);
    assert_eq!(contents(fs, src), b"new contents");
    ok!(fs.release(&root, dst, opened.fh));
    expect_err!(fs.getattr(&root, dst, None), VfsError::Stale);
    if let (Some(before), Some(after)) = (count_before, fx.inode_count()) {
        assert_eq!(
            after,
            before - 1,
            "the replaced inode must be freed on release"
        );
    }
}

/// A file cannot replace a directory (`IsDir`); nothing changes.
pub fn rename_file_over_dir_is_isdir(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let f = touch(fs, Ino::ROOT, "f");
    let d = mkdir(fs, Ino::ROOT, "d", 0o755);
    expect_err!(
        mv(fs, (Ino::ROOT, "f"), (Ino::ROOT, "d"), PLAIN),
        VfsError::IsDir
    );
    assert_eq!(
        (
            lookup(fs, Ino::ROOT, "f").ino,
            lookup(fs, Ino::ROOT, "d").ino
        ),
        (f.ino, d)
    );
}

/// A directory cannot replace a file (`NotDir`); nothing changes.
pub fn rename_dir_over_file_is_notdir(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let f = touch(fs, Ino::ROOT, "f");
    let d = mkdir(fs, Ino::ROOT, "d", 0o755);
    expect_err!(
        mv(fs, (Ino::ROOT, "d"), (Ino::ROOT, "f"), PLAIN),
        VfsError::NotDir
    );
    assert_eq!(
        (
            lookup(fs, Ino::ROOT, "f").ino,
            lookup(fs, Ino::ROOT, "d").ino
        ),
        (f.ino, d)
    );
    assert_eq!(getattr(fs, Ino::ROOT).nlink, 3);
}

/// A directory replaces an empty directory: contents travel, the old one is gone, the
/// parent loses one link.
pub fn rename_dir_over_empty_dir(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let a = mkdir(fs, Ino::ROOT, "a", 0o755);
    let b = mkdir(fs, Ino::ROOT, "b", 0o700);
    let x = touch(fs, a, "x");
    mkdir(fs, a, "sub", 0o755);
    assert_eq!(getattr(fs, Ino::ROOT).nlink, 4);
    ok!(mv(fs, (Ino::ROOT, "a"), (Ino::ROOT, "b"), PLAIN));
    assert_eq!(name_list(fs, Ino::ROOT), ["b"]);
    let now = lookup(fs, Ino::ROOT, "b");
    assert_eq!((now.ino, now.perm, now.nlink), (a, 0o755, 3));
    assert_eq!(lookup(fs, a, "x").ino, x.ino);
    assert_eq!(getattr(fs, Ino::ROOT).nlink, 3);
    expect_err!(fs.getattr(&Ctx::root(), b, None), VfsError::Stale);
}

/// A directory cannot replace a non-empty directory (`NotEmpty`).
pub fn rename_dir_over_non_empty_dir_is_notempty(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let a = mkdir(fs, Ino::ROOT, "a", 0o755);
    let b = mkdir(fs, Ino::ROOT, "b", 0o755);
    touch(fs, b, "occupant");
    expect_err!(
        mv(fs, (Ino::ROOT, "a"), (Ino::ROOT, "b"), PLAIN),
        VfsError::NotEmpty
    );
    let sub = mkdir(fs, a, "sub", 0o755);
    let c = mkdir(fs, Ino::ROOT, "c", 0o755);
    mkdir(fs, c, "inner", 0o755);
    expect_err!(
        mv(fs, (a, "sub"), (Ino::ROOT, "c"), PLAIN),
        VfsError::NotEmpty
    );
    assert_eq!(name_list(fs, Ino::ROOT), ["a", "b", "c"]);
    assert_eq!(name_list(fs, b), ["occupant"]);
    assert_eq!(lookup(fs, a, "sub").ino, sub);
    assert_eq!(getattr(fs, Ino::ROOT).nlink, 5);
}

/// Moving a directory into itself or its own subtree is `InvalidArgument`.
pub fn rename_into_own_subtree_is_invalid(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let a = mkdir(fs, Ino::ROOT, "a", 0o755);
    let b = mkdir(fs, a, "b", 0o755);
    let c = mkdir(fs, b, "c", 0o755);
    expect_err!(
        mv(fs, (Ino::ROOT, "a"), (a, "z"), PLAIN),
        VfsError::InvalidArgument
    );
    expect_err!(
        mv(fs, (Ino::ROOT, "a"), (b, "z"), PLAIN),
        VfsError::InvalidArgument
    );
    expect_err!(
        mv(fs, (Ino::ROOT, "a"), (c, "z"), PLAIN),
        VfsError::InvalidArgument
    );
    expect_err!(mv(fs, (a, "b"), (c, "z"), PLAIN), VfsError::InvalidArgument);
    expect_err!(
        mv(fs, (Ino::ROOT, "a"), (c, "z"), RenameFlags::NOREPLACE),
        VfsError::InvalidArgument
    );
    assert_eq!(name_list(fs, Ino::ROOT), ["a"]);
    assert_eq!(name_list(fs, a), ["b"]);
    assert_eq!(name_list(fs, b), ["c"]);
    assert!(list(fs, c).is_empty());
    // Renaming onto itself is a no-op, not a cycle.
    ok!(mv(fs, (Ino::ROOT, "a"), (Ino::ROOT, "a"), PLAIN));
    assert_eq!(lookup(fs, Ino::ROOT, "a").ino, a);
    // Moving a directory up, out of its parent, is fine.
    ok!(mv(fs, (b, "c"), (Ino::ROOT, "c"), PLAIN));
    assert_eq!(getattr(fs, b).nlink, 2);
    assert_eq!(getattr(fs, Ino::ROOT).nlink, 4);
}

/// Renaming one hard link of an inode onto another does nothing: both names remain.
pub fn rename_between_links_of_one_inode_is_a_noop(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let f = file_with(fs, Ino::ROOT, "f", b"x");
    ok!(mv(fs, (Ino::ROOT, "f"), (Ino::ROOT, "f"), PLAIN));
    assert_eq!(name_list(fs, Ino::ROOT), ["f"]);
    assert_eq!(contents(fs, f), b"x");
    if !fx.vfs().capabilities().hard_links {
        println!("skipped the hard-link half: capabilities() report `hard_links` = false");
        return;
    }
    let d = mkdir(fs, Ino::ROOT, "d", 0o755);
    ok!(fx.vfs().link(&Ctx::root(), f, Ino::ROOT, os("g")));
    ok!(fx.vfs().link(&Ctx::root(), f, d, os("h")));
    ok!(mv(fs, (Ino::ROOT, "f"), (Ino::ROOT, "g"), PLAIN));
    ok!(mv(fs, (d, "h"), (Ino::ROOT, "f"), PLAIN));
    assert_eq!(name_list(fs, Ino::ROOT), ["d", "f", "g"]);
    assert_eq!(name_list(fs, d), ["h"]);
    assert_eq!(getattr(fs, f).nlink, 3);
    assert_eq!(contents(fs, f), b"x");
}

/// `NOREPLACE` fails with `Exists` on an existing target and renames otherwise; with
/// `EXCHANGE` too it is `InvalidArgument`.
pub fn rename_noreplace(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let f = file_with(fs, Ino::ROOT, "f", b"f");
    let g = file_with(fs, Ino::ROOT, "g", b"g");
    mkdir(fs, Ino::ROOT, "d", 0o755);
    mkdir(fs, Ino::ROOT, "e", 0o755);
    let nr = RenameFlags::NOREPLACE;
    expect_err!(
        mv(fs, (Ino::ROOT, "f"), (Ino::ROOT, "g"), nr),
        VfsError::Exists
    );
    expect_err!(
        mv(fs, (Ino::ROOT, "d"), (Ino::ROOT, "e"), nr),
        VfsError::Exists
    );
    expect_err!(
        mv(fs, (Ino::ROOT, "f"), (Ino::ROOT, "d"), nr),
        VfsError::Exists
    );
    assert_eq!(
        (contents(fs, f), contents(fs, g)),
        (b"f".to_vec(), b"g".to_vec())
    );
    ok!(mv(fs, (Ino::ROOT, "f"), (Ino::ROOT, "h"), nr));
    assert_eq!(lookup(fs, Ino::ROOT, "h").ino, f);
    expect_err!(
        mv(
            fs,
            (Ino::ROOT, "h"),
            (Ino::ROOT, "g"),
            nr | RenameFlags::EXCHANGE
        ),
        VfsError::InvalidArgument
    );
    assert_eq!(name_list(fs, Ino::ROOT), ["d", "e", "g", "h"]);
}

/// `EXCHANGE` swaps a file and a directory living in different directories: kinds follow
/// the names and both parents' nlink change by one.
pub fn rename_exchange_file_and_dir_across_dirs(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let a = mkdir(fs, Ino::ROOT, "a", 0o755);
    let b = mkdir(fs, Ino::ROOT, "b", 0o755);
    let x = file_with(fs, a, "x", b"file");
    let y = mkdir(fs, b, "y", 0o755);
    let child = touch(fs, y, "child").ino;
    assert_eq!((getattr(fs, a).nlink, getattr(fs, b).nlink), (2, 3));
    ok!(mv(fs, (a, "x"), (b, "y"), RenameFlags::EXCHANGE));
    let ax = lookup(fs, a, "x");
    let by = lookup(fs, b, "y");
    assert_eq!((ax.ino, ax.kind), (y, FileType::Directory));
    assert_eq!((by.ino, by.kind), (x, FileType::RegularFile));
    assert_eq!((getattr(fs, a).nlink, getattr(fs, b).nlink), (3, 2));
    assert_eq!(lookup(fs, y, "child").ino, child);
    assert_eq!(contents(fs, x), b"file");
    let listed_a = list(fs, a);
    assert_eq!(listed_a.len(), 1);
    assert_eq!(
        (listed_a[0].ino, listed_a[0].kind),
        (y, FileType::Directory)
    );

    // Two files in one directory: names swap.
    let p = file_with(fs, Ino::ROOT, "p", b"p");
    let q = file_with(fs, Ino::ROOT, "q", b"q");
    ok!(mv(
        fs,
        (Ino::ROOT, "p"),
        (Ino::ROOT, "q"),
        RenameFlags::EXCHANGE
    ));
    assert_eq!(
        (
            lookup(fs, Ino::ROOT, "p").ino,
            lookup(fs, Ino::ROOT, "q").ino
        ),
        (q, p)
    );

    // Two directories across parents: nlink unchanged.
    let d1 = mkdir(fs, a, "d1", 0o755);
    let d2 = mkdir(fs, b, "d2", 0o755);
    let (na, nb) = (getattr(fs, a).nlink, getattr(fs, b).nlink);
    ok!(mv(fs, (a, "d1"), (b, "d2"), RenameFlags::EXCHANGE));
    assert_eq!((lookup(fs, a, "d1").ino, lookup(fs, b, "d2").ino), (d2, d1));
    assert_eq!((getattr(fs, a).nlink, getattr(fs, b).nlink), (na, nb));

    // Exchanging a directory with something inside itself would make a cycle.
    expect_err!(
        mv(fs, (Ino::ROOT, "a"), (y, "child"), RenameFlags::EXCHANGE),
        VfsError::InvalidArgument
    );
    assert_eq!(lookup(fs, Ino::ROOT, "a").ino, a);
}

/// `EXCHANGE` with a missing target or source is `NotFound` and changes nothing.
pub fn rename_exchange_needs_both_names(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let f = touch(fs, Ino::ROOT, "f").ino;
    let d = mkdir(fs, Ino::ROOT, "d", 0o755);
    let ex = RenameFlags::EXCHANGE;
    expect_err!(
        mv(fs, (Ino::ROOT, "f"), (d, "missing"), ex),
        VfsError::NotFound
    );
    expect_err!(
        mv(fs, (d, "missing"), (Ino::ROOT, "f"), ex),
        VfsError::NotFound
    );
    assert_eq!(lookup(fs, Ino::ROOT, "f").ino, f);
    assert!(list(fs, d).is_empty());
    // Exchanging a name with itself is a no-op.
    ok!(mv(fs, (Ino::ROOT, "f"), (Ino::ROOT, "f"), ex));
    assert_eq!(name_list(fs, Ino::ROOT), ["d", "f"]);
}

/// Moving a directory to another parent moves one link from the old parent to the new.
pub fn rename_dir_across_parents_updates_nlink(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let p = mkdir(fs, Ino::ROOT, "p", 0o755);
    let q = mkdir(fs, Ino::ROOT, "q", 0o755);
    let d = mkdir(fs, p, "d", 0o755);
    let inner = touch(fs, d, "inner").ino;
    mkdir(fs, d, "sub", 0o755);
    assert_eq!((getattr(fs, p).nlink, getattr(fs, q).nlink), (3, 2));
    ok!(mv(fs, (p, "d"), (q, "moved"), PLAIN));
    assert_eq!((getattr(fs, p).nlink, getattr(fs, q).nlink), (2, 3));
    assert_eq!(getattr(fs, d).nlink, 3);
    assert_eq!(lookup(fs, d, "inner").ino, inner);
    assert!(list(fs, p).is_empty());
    // Over an empty directory in a third parent: the third loses the replaced one's link.
    let r = mkdir(fs, Ino::ROOT, "r", 0o755);
    mkdir(fs, r, "victim", 0o755);
    ok!(mv(fs, (q, "moved"), (r, "victim"), PLAIN));
    assert_eq!((getattr(fs, q).nlink, getattr(fs, r).nlink), (2, 3));
    assert_eq!(lookup(fs, r, "victim").ino, d);
    assert_eq!(getattr(fs, Ino::ROOT).nlink, 5);
}
