//! access(2) and permission checks against unprivileged callers, as Linux makes them
//! (each expectation below was checked against ext4 on Linux 6.x).

use super::*;

const R: AccessMask = AccessMask::READ;
const W: AccessMask = AccessMask::WRITE;
const X: AccessMask = AccessMask::EXEC;
const RW: OpenFlags = OpenFlags::READ.union(OpenFlags::WRITE);

/// A world-writable directory for unprivileged callers to work in.
fn public_dir(fs: &dyn Vfs) -> Ino {
    mkdir(fs, Ino::ROOT, "pub", 0o777)
}

/// A file made by root and handed to `uid:gid` with `mode`.
fn owned_file(fs: &dyn Vfs, dir: Ino, name: &str, uid: u32, gid: u32, mode: u32) -> Ino {
    let ino = file_with(fs, dir, name, b"secret");
    chown_mode(fs, ino, uid, gid, mode);
    ino
}

/// access: owner, group (primary and supplementary) and other classes, the owner class
/// taking precedence, and the empty mask testing existence only.
pub fn access_checks_owner_group_other(fx: &dyn Fixture) {
    require!(fx, enforces_permissions);
    let fs = &**fx.vfs();
    let d = public_dir(fs);
    let f = owned_file(fs, d, "f", 1000, 1000, 0o640);
    let owner = user(1000);
    let member = Ctx::with_groups(1001, 1001, &[1000]);
    let primary = Ctx::with_groups(1002, 1000, &[]);
    let other = Ctx::with_groups(1003, 1003, &[5, 6]);
    ok!(fs.access(&owner, f, R | W));
    expect_err!(fs.access(&owner, f, X), VfsError::PermissionDenied);
    ok!(fs.access(&member, f, R));
    expect_err!(fs.access(&member, f, W), VfsError::PermissionDenied);
    expect_err!(fs.access(&member, f, R | W), VfsError::PermissionDenied);
    ok!(fs.access(&primary, f, R));
    expect_err!(fs.access(&other, f, R), VfsError::PermissionDenied);
    for ctx in [&owner, &member, &primary, &other] {
        ok!(fs.access(ctx, f, AccessMask::empty()));
    }
    // The owner class decides for the owner even when group/other would allow.
    chown_mode(fs, f, 1000, 1000, 0o077);
    expect_err!(fs.access(&owner, f, R), VfsError::PermissionDenied);
    ok!(fs.access(&member, f, R | W | X));
    ok!(fs.access(&other, f, R | W | X));
    chown_mode(fs, f, 1000, 1000, 0o705);
    expect_err!(fs.access(&member, f, R), VfsError::PermissionDenied); // group class decides
    ok!(fs.access(&other, f, R | X));
    // Directories: search is X.
    let sub = mkdir(fs, d, "sub", 0o710);
    chown_mode(fs, sub, 1000, 1000, 0o710);
    ok!(fs.access(&member, sub, X));
    expect_err!(fs.access(&member, sub, R), VfsError::PermissionDenied);
    expect_err!(fs.access(&other, sub, X), VfsError::PermissionDenied);
}

/// Root passes read and write checks always, execute on a file only if some x bit is
/// set, and search on any directory.
pub fn access_as_root(fx: &dyn Fixture) {
    require!(fx, enforces_permissions);
    let fs = &**fx.vfs();
    let root = Ctx::root();
    let f = owned_file(fs, Ino::ROOT, "f", 1000, 1000, 0o000);
    ok!(fs.access(&root, f, R | W));
    expect_err!(fs.access(&root, f, X), VfsError::PermissionDenied);
    chown_mode(fs, f, 1000, 1000, 0o001);
    ok!(fs.access(&root, f, R | W | X));
    let d = mkdir(fs, Ino::ROOT, "d", 0o000);
    ok!(fs.access(&root, d, R | W | X));
    // And root really gets in: create inside a 0o000 directory, open a 0o000 file.
    touch(fs, d, "inside");
    chown_mode(fs, f, 1000, 1000, 0o000);
    let opened = ok!(fs.open(&root, f, RW));
    ok!(fs.release(&root, f, opened.fh));
}

/// Without write permission on a directory, nothing can be created in, removed from or
/// renamed into or out of it (`PermissionDenied`); root still can.
pub fn cannot_create_without_write_permission(fx: &dyn Fixture) {
    require!(fx, enforces_permissions);
    let fs = &**fx.vfs();
    let caps = fx.vfs().capabilities();
    let u = user(1000);
    let p = public_dir(fs);
    let ro = mkdir(fs, Ino::ROOT, "ro", 0o755);
    touch(fs, ro, "existing");
    mkdir(fs, ro, "subdir", 0o777);
    chown_mode(fs, ro, 1000, 1000, 0o555);
    let mine = touch_as(fs, &u, p, "mine", 0o644).ino;
    let denied = |r: VfsResult<Attr>| expect_err!(r, VfsError::PermissionDenied);
    expect_err!(
        fs.create(&u, ro, os("new"), 0o644, RW),
        VfsError::PermissionDenied
    );
    denied(fs.mkdir(&u, ro, os("new"), 0o755));
    if caps.special_files {
        denied(fs.mknod(&u, ro, os("new"), FileType::Fifo, 0o644, 0));
    }
    if caps.symlinks {
        denied(fs.symlink(&u, ro, os("new"), os("t")));
    }
    if caps.hard_links {
        denied(fs.link(&u, mine, ro, os("new")));
    }
    expect_err!(
        fs.unlink(&u, ro, os("existing")),
        VfsError::PermissionDenied
    );
    expect_err!(fs.rmdir(&u, ro, os("subdir")), VfsError::PermissionDenied);
    let plain = RenameFlags::empty();
    expect_err!(
        fs.rename(&u, p, os("mine"), ro, os("new"), plain),
        VfsError::PermissionDenied
    );
    expect_err!(
        fs.rename(&u, ro, os("existing"), p, os("x"), plain),
        VfsError::PermissionDenied
    );
    expect_err!(
        fs.rename(&u, ro, os("existing"), ro, os("x"), plain),
        VfsError::PermissionDenied
    );
    assert_eq!(name_list(fs, ro), ["existing", "subdir"]);
    // Root is not bound by the bits.
    touch(fs, ro, "by-root");
    // Creating over an existing name needs no write permission on the directory
    // (open(O_CREAT) of an existing file is just an open).
    let e = lookup(fs, ro, "existing").ino;
    chown_mode(fs, e, 1000, 1000, 0o644);
    let (a, opened) = ok!(fs.create(&u, ro, os("existing"), 0o644, RW));
    assert_eq!(a.ino, e);
    ok!(fs.release(&u, e, opened.fh));
}

/// Without search (x) permission on a directory its names cannot be looked up; read
/// permission alone still lists them; without read, listing is denied.
pub fn cannot_lookup_without_search_permission(fx: &dyn Fixture) {
    require!(fx, enforces_permissions);
    let fs = &**fx.vfs();
    let root = Ctx::root();
    let u = user(1000);
    let nox = mkdir(fs, Ino::ROOT, "nox", 0o755);
    touch(fs, nox, "f");
    chown_mode(fs, nox, 1000, 1000, 0o666);
    expect_err!(fs.lookup(&u, nox, os("f")), VfsError::PermissionDenied);
    expect_err!(
        fs.lookup(&u, nox, os("missing")),
        VfsError::PermissionDenied
    );
    expect_err!(
        fs.create(&u, nox, os("g"), 0o644, RW),
        VfsError::PermissionDenied
    );
    let dh = ok!(fs.opendir(&u, nox, OpenFlags::READ));
    let mut sink = VecSink::default();
    ok!(fs.readdir(&u, nox, Some(dh), 0, &mut sink));
    assert_eq!(sink.entries.len(), 1);
    ok!(fs.releasedir(&u, nox, dh));
    assert_eq!(
        lookup(fs, nox, "f").kind,
        FileType::RegularFile,
        "root may search anything"
    );

    let nor = mkdir(fs, Ino::ROOT, "nor", 0o755);
    touch(fs, nor, "f");
    chown_mode(fs, nor, 1000, 1000, 0o333);
    expect_err!(
        fs.opendir(&u, nor, OpenFlags::READ),
        VfsError::PermissionDenied
    );
    ok!(fs.lookup(&u, nor, os("f")));
    let dh = ok!(fs.opendir(&root, nor, OpenFlags::READ));
    ok!(fs.releasedir(&root, nor, dh));

    // A private directory owned by root blocks others from everything below it.
    let private = mkdir(fs, Ino::ROOT, "private", 0o700);
    let inner = mkdir(fs, private, "inner", 0o777);
    expect_err!(
        fs.lookup(&u, private, os("inner")),
        VfsError::PermissionDenied
    );
    expect_err!(
        fs.opendir(&u, private, OpenFlags::READ),
        VfsError::PermissionDenied
    );
    let _ = inner;
}

/// Another user's 0o600 file can be neither read nor written; a file's own bits bind
/// its owner too; root opens anything.
pub fn cannot_open_another_users_private_file(fx: &dyn Fixture) {
    require!(fx, enforces_permissions);
    let fs = &**fx.vfs();
    let root = Ctx::root();
    let d = public_dir(fs);
    let f = owned_file(fs, d, "f", 1000, 1000, 0o600);
    let (owner, other) = (user(1000), user(1001));
    expect_err!(
        fs.open(&other, f, OpenFlags::READ),
        VfsError::PermissionDenied
    );
    expect_err!(
        fs.open(&other, f, OpenFlags::WRITE),
        VfsError::PermissionDenied
    );
    expect_err!(
        fs.create(&other, d, os("f"), 0o644, OpenFlags::READ),
        VfsError::PermissionDenied
    );
    let opened = ok!(fs.open(&owner, f, RW));
    ok!(fs.release(&owner, f, opened.fh));
    let opened = ok!(fs.open(&root, f, RW));
    ok!(fs.release(&root, f, opened.fh));
    chown_mode(fs, f, 1000, 1000, 0o444);
    expect_err!(
        fs.open(&owner, f, OpenFlags::WRITE),
        VfsError::PermissionDenied
    );
    expect_err!(fs.open(&owner, f, RW), VfsError::PermissionDenied);
    let opened = ok!(fs.open(&other, f, OpenFlags::READ));
    ok!(fs.release(&other, f, opened.fh));
    chown_mode(fs, f, 1000, 1000, 0o200);
    expect_err!(
        fs.open(&owner, f, OpenFlags::READ),
        VfsError::PermissionDenied
    );
    let opened = ok!(fs.open(&owner, f, OpenFlags::WRITE));
    ok!(fs.release(&owner, f, opened.fh));
}

/// Only the owner (or root) may chmod, whatever the permission bits say.
pub fn chmod_by_non_owner_is_not_permitted(fx: &dyn Fixture) {
    require!(fx, enforces_permissions);
    let fs = &**fx.vfs();
    let d = public_dir(fs);
    let f = owned_file(fs, d, "f", 1000, 1000, 0o666);
    let set = SetAttr {
        mode: Some(0o600),
        ..SetAttr::default()
    };
    expect_err!(
        fs.setattr(&user(1001), f, &set, None),
        VfsError::NotPermitted
    );
    expect_err!(
        fs.setattr(&Ctx::with_groups(1001, 1000, &[]), f, &set, None),
        VfsError::NotPermitted
    );
    assert_eq!(getattr(fs, f).perm, 0o666);
    assert_eq!(ok!(fs.setattr(&user(1000), f, &set, None)).perm, 0o600);
    let set = SetAttr {
        mode: Some(0o640),
        ..SetAttr::default()
    };
    assert_eq!(ok!(fs.setattr(&Ctx::root(), f, &set, None)).perm, 0o640);
}

/// An owner who is not in the file's group may chmod, but the setgid bit is dropped.
pub fn chmod_clears_setgid_when_not_in_group(fx: &dyn Fixture) {
    require!(fx, enforces_permissions);
    let fs = &**fx.vfs();
    let d = public_dir(fs);
    let f = owned_file(fs, d, "f", 1000, 3000, 0o644);
    let set = SetAttr {
        mode: Some(0o2755),
        ..SetAttr::default()
    };
    assert_eq!(ok!(fs.setattr(&user(1000), f, &set, None)).perm, 0o755);
    let member = Ctx::with_groups(1000, 1000, &[3000]);
    assert_eq!(ok!(fs.setattr(&member, f, &set, None)).perm, 0o2755);
    // Likewise at creation: a non-member asking for setgid in a setgid directory.
    let sg = mkdir(fs, Ino::ROOT, "sg", 0o777);
    chown_mode(fs, sg, 0, 3000, 0o2777);
    let created = touch_as(fs, &user(1000), sg, "f", 0o2755);
    assert_eq!((created.gid, created.perm), (3000, 0o755));
}

/// Only root changes a file's owner; the owner may change the group only to one of its
/// own groups; a no-op chown by the owner is allowed.
pub fn chown_by_non_root_is_not_permitted(fx: &dyn Fixture) {
    require!(fx, enforces_permissions);
    let fs = &**fx.vfs();
    let d = public_dir(fs);
    let f = owned_file(fs, d, "f", 1000, 1000, 0o666);
    let owner = Ctx::with_groups(1000, 1000, &[3000]);
    let other = user(1001);
    let uid = |u| SetAttr {
        uid: Some(u),
        ..SetAttr::default()
    };
    let gid = |g| SetAttr {
        gid: Some(g),
        ..SetAttr::default()
    };
    expect_err!(
        fs.setattr(&owner, f, &uid(1001), None),
        VfsError::NotPermitted
    );
    expect_err!(
        fs.setattr(&other, f, &uid(1001), None),
        VfsError::NotPermitted
    );
    expect_err!(
        fs.setattr(&other, f, &uid(1000), None),
        VfsError::NotPermitted
    );
    expect_err!(
        fs.setattr(&owner, f, &gid(4000), None),
        VfsError::NotPermitted
    );
    expect_err!(
        fs.setattr(&other, f, &gid(1001), None),
        VfsError::NotPermitted
    );
    let a = getattr(fs, f);
    assert_eq!((a.uid, a.gid), (1000, 1000));
    ok!(fs.setattr(&owner, f, &uid(1000), None));
    let a = ok!(fs.setattr(&owner, f, &gid(3000), None));
    assert_eq!((a.uid, a.gid), (1000, 3000));
    let a = ok!(fs.setattr(&owner, f, &gid(1000), None));
    assert_eq!(a.gid, 1000);
}

/// chown of a regular file (even by root) clears setuid, and setgid when group-exec is
/// set (Linux's ATTR_KILL_SUID/SGID).
pub fn chown_clears_setuid(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let root = Ctx::root();
    let a = owned_file(fs, Ino::ROOT, "a", 1000, 1000, 0o6755);
    let b = owned_file(fs, Ino::ROOT, "b", 1000, 1000, 0o6745);
    let set = SetAttr {
        uid: Some(1001),
        ..SetAttr::default()
    };
    assert_eq!(ok!(fs.setattr(&root, a, &set, None)).perm, 0o755);
    assert_eq!(ok!(fs.setattr(&root, b, &set, None)).perm, 0o2745);
    // Directories keep their setgid bit across chown.
    let d = mkdir(fs, Ino::ROOT, "d", 0o2775);
    assert_eq!(ok!(fs.setattr(&root, d, &set, None)).perm, 0o2775);
}

/// In a sticky directory only the file's owner, the directory's owner and root may
/// unlink or rename a file (others get `NotPermitted`).
pub fn sticky_directory_protects_other_users_files(fx: &dyn Fixture) {
    require!(fx, enforces_permissions);
    let fs = &**fx.vfs();
    let tmp = mkdir(fs, Ino::ROOT, "tmp", 0o777);
    chown_mode(fs, tmp, 2000, 2000, 0o1777);
    let (alice, bob, dir_owner) = (user(1000), user(1001), user(2000));
    touch_as(fs, &alice, tmp, "alice1", 0o666);
    touch_as(fs, &alice, tmp, "alice2", 0o666);
    touch_as(fs, &alice, tmp, "alice3", 0o666);
    touch_as(fs, &bob, tmp, "bob", 0o666);
    ok!(fs.mkdir(&alice, tmp, os("alicedir"), 0o777));
    let plain = RenameFlags::empty();
    expect_err!(fs.unlink(&bob, tmp, os("alice1")), VfsError::NotPermitted);
    expect_err!(
        fs.rename(&bob, tmp, os("alice1"), tmp, os("mine"), plain),
        VfsError::NotPermitted
    );
    expect_err!(
        fs.rename(&bob, tmp, os("bob"), tmp, os("alice1"), plain),
        VfsError::NotPermitted
    );
    expect_err!(fs.rmdir(&bob, tmp, os("alicedir")), VfsError::NotPermitted);
    assert_eq!(
        name_list(fs, tmp),
        ["alice1", "alice2", "alice3", "alicedir", "bob"]
    );
    ok!(fs.unlink(&alice, tmp, os("alice1")));
    ok!(fs.unlink(&dir_owner, tmp, os("alice2")));
    ok!(fs.unlink(&Ctx::root(), tmp, os("alice3")));
    ok!(fs.rmdir(&alice, tmp, os("alicedir")));
    ok!(fs.rename(&bob, tmp, os("bob"), tmp, os("bob2"), plain));
    assert_eq!(name_list(fs, tmp), ["bob2"]);
}

/// A write or truncate by a non-root caller clears setuid, and setgid when group-exec is
/// set or the writer is outside the group; root's writes keep them.
pub fn non_root_write_clears_setuid(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let d = public_dir(fs);
    let owner = user(1000);
    let cases = [
        (0o4755, 1000, 0o755),
        (0o2755, 1000, 0o755),
        (0o6777, 1000, 0o777),
        (0o2745, 1000, 0o2745), // setgid without group-exec, writer in the group: kept
        (0o2745, 3000, 0o745),  // ... writer outside the group: cleared
    ];
    for (i, (mode, gid, want)) in cases.into_iter().enumerate() {
        let f = owned_file(fs, d, &format!("f{i}"), 1000, gid, mode);
        let n = ok!(fs.write(&owner, f, None, 0, b"x"));
        assert_eq!(n, 1);
        assert_eq!(
            u32::from(getattr(fs, f).perm),
            want,
            "write to {mode:o} (gid {gid})"
        );
    }
    // Through a handle, and by a non-owner with write permission.
    let f = owned_file(fs, d, "h", 1000, 1000, 0o4777);
    let other = user(1001);
    let opened = ok!(fs.open(&other, f, OpenFlags::WRITE));
    ok!(fs.write(&other, f, Some(opened.fh), 0, b"x"));
    ok!(fs.release(&other, f, opened.fh));
    assert_eq!(getattr(fs, f).perm, 0o777);
    // Truncate by the owner.
    let f = owned_file(fs, d, "t", 1000, 1000, 0o4755);
    let set = SetAttr {
        size: Some(1),
        ..SetAttr::default()
    };
    assert_eq!(ok!(fs.setattr(&owner, f, &set, None)).perm, 0o755);
    // Root keeps them.
    let f = owned_file(fs, d, "r", 1000, 1000, 0o6755);
    write_at(fs, f, None, 0, b"x");
    assert_eq!(getattr(fs, f).perm, 0o6755);
}

/// Setting times to "now" needs write permission (or ownership); setting explicit times
/// needs ownership (`NotPermitted` otherwise).
pub fn utimens_permissions(fx: &dyn Fixture) {
    require!(fx, enforces_permissions);
    let fs = &**fx.vfs();
    let d = public_dir(fs);
    let writable = owned_file(fs, d, "w", 1000, 1000, 0o666);
    let readonly = owned_file(fs, d, "r", 1000, 1000, 0o644);
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_234_567_890);
    let now = SetAttr {
        atime: Some(SetTime::Now),
        mtime: Some(SetTime::Now),
        ..SetAttr::default()
    };
    let at = SetAttr {
        atime: Some(SetTime::At(t)),
        mtime: Some(SetTime::At(t)),
        ..SetAttr::default()
    };
    let mixed = SetAttr {
        atime: Some(SetTime::Now),
        mtime: Some(SetTime::At(t)),
        ..SetAttr::default()
    };
    let other = user(1001);
    ok!(fs.setattr(&other, writable, &now, None));
    expect_err!(
        fs.setattr(&other, writable, &at, None),
        VfsError::NotPermitted
    );
    expect_err!(
        fs.setattr(&other, writable, &mixed, None),
        VfsError::NotPermitted
    );
    expect_err!(
        fs.setattr(&other, readonly, &now, None),
        VfsError::PermissionDenied
    );
    expect_err!(
        fs.setattr(&other, readonly, &at, None),
        VfsError::NotPermitted
    );
    assert_ne!(getattr(fs, readonly).mtime, t);
    let a = ok!(fs.setattr(&user(1000), readonly, &at, None));
    assert_eq!((a.atime, a.mtime), (t, t));
    ok!(fs.setattr(&user(1000), readonly, &now, None));
    let a = ok!(fs.setattr(&Ctx::root(), writable, &at, None));
    assert_eq!(a.mtime, t);
}

/// Truncation needs write permission on the file, even for its owner, unless it goes
/// through a handle opened for writing.
pub fn truncate_needs_write_permission(fx: &dyn Fixture) {
    require!(fx, enforces_permissions);
    let fs = &**fx.vfs();
    let d = public_dir(fs);
    let f = owned_file(fs, d, "f", 1000, 1000, 0o644);
    let set = SetAttr {
        size: Some(2),
        ..SetAttr::default()
    };
    expect_err!(
        fs.setattr(&user(1001), f, &set, None),
        VfsError::PermissionDenied
    );
    let owner = user(1000);
    let opened = ok!(fs.open(&owner, f, OpenFlags::WRITE));
    chown_mode(fs, f, 1000, 1000, 0o444);
    expect_err!(
        fs.setattr(&owner, f, &set, None),
        VfsError::PermissionDenied
    );
    assert_eq!(getattr(fs, f).size, 6);
    assert_eq!(ok!(fs.setattr(&owner, f, &set, Some(opened.fh))).size, 2);
    ok!(fs.release(&owner, f, opened.fh));
    assert_eq!(contents(fs, f), b"se");
}
