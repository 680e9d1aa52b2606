//! Extended attributes.

use std::collections::BTreeSet;
use std::ffi::OsString;

use super::*;

fn xattr_names(fs: &dyn Vfs, ino: Ino) -> BTreeSet<OsString> {
    let listed = ok!(fs.listxattr(&Ctx::root(), ino));
    let set: BTreeSet<_> = listed.iter().cloned().collect();
    assert_eq!(
        set.len(),
        listed.len(),
        "listxattr repeats a name: {listed:?}"
    );
    set
}

/// set/get/list/remove on files and directories; missing attributes are `NoAttribute`;
/// setting an attribute moves ctime.
pub fn xattr_set_get_list_remove(fx: &dyn Fixture) {
    require!(fx, xattrs);
    let fs = &**fx.vfs();
    let root = Ctx::root();
    let f = touch(fs, Ino::ROOT, "f");
    let d = mkdir(fs, Ino::ROOT, "d", 0o755);
    for ino in [f.ino, d] {
        assert!(xattr_names(fs, ino).is_empty());
        expect_err!(
            fs.getxattr(&root, ino, os("user.missing")),
            VfsError::NoAttribute
        );
        expect_err!(
            fs.removexattr(&root, ino, os("user.missing")),
            VfsError::NoAttribute
        );
        ok!(fs.setxattr(&root, ino, os("user.one"), b"1", XattrFlags::empty()));
        ok!(fs.setxattr(
            &root,
            ino,
            os("user.two"),
            b"second value",
            XattrFlags::empty()
        ));
        assert_eq!(ok!(fs.getxattr(&root, ino, os("user.one"))), b"1");
        assert_eq!(
            ok!(fs.getxattr(&root, ino, os("user.two"))),
            b"second value"
        );
        let want: BTreeSet<OsString> = ["user.one", "user.two"].map(OsString::from).into();
        assert_eq!(xattr_names(fs, ino), want);
        ok!(fs.setxattr(
            &root,
            ino,
            os("user.one"),
            b"overwritten",
            XattrFlags::empty()
        ));
        assert_eq!(ok!(fs.getxattr(&root, ino, os("user.one"))), b"overwritten");
        ok!(fs.removexattr(&root, ino, os("user.one")));
        expect_err!(
            fs.getxattr(&root, ino, os("user.one")),
            VfsError::NoAttribute
        );
        expect_err!(
            fs.removexattr(&root, ino, os("user.one")),
            VfsError::NoAttribute
        );
        assert_eq!(xattr_names(fs, ino), [OsString::from("user.two")].into());
    }
    // Attributes belong to the inode: visible through a hard link, gone with the file.
    let before = getattr(fs, f.ino);
    tick();
    ok!(fs.setxattr(&root, f.ino, os("user.ctime"), b"x", XattrFlags::empty()));
    assert!(
        getattr(fs, f.ino).ctime > before.ctime,
        "setxattr must move ctime"
    );
    if fx.vfs().capabilities().hard_links {
        ok!(fs.link(&root, f.ino, Ino::ROOT, os("g")));
        let g = lookup(fs, Ino::ROOT, "g");
        assert_eq!(
            ok!(fs.getxattr(&root, g.ino, os("user.two"))),
            b"second value"
        );
    }
    let other = touch(fs, Ino::ROOT, "other");
    assert!(
        xattr_names(fs, other.ino).is_empty(),
        "attributes do not leak between files"
    );
}

/// `CREATE` on an existing attribute is `Exists`, `REPLACE` on a missing one is
/// `NoAttribute`; neither changes anything when it fails.
pub fn xattr_create_and_replace_flags(fx: &dyn Fixture) {
    require!(fx, xattrs);
    let fs = &**fx.vfs();
    let root = Ctx::root();
    let ino = touch(fs, Ino::ROOT, "f").ino;
    ok!(fs.setxattr(&root, ino, os("user.a"), b"first", XattrFlags::CREATE));
    expect_err!(
        fs.setxattr(&root, ino, os("user.a"), b"second", XattrFlags::CREATE),
        VfsError::Exists
    );
    assert_eq!(ok!(fs.getxattr(&root, ino, os("user.a"))), b"first");
    expect_err!(
        fs.setxattr(&root, ino, os("user.b"), b"x", XattrFlags::REPLACE),
        VfsError::NoAttribute
    );
    expect_err!(fs.getxattr(&root, ino, os("user.b")), VfsError::NoAttribute);
    ok!(fs.setxattr(&root, ino, os("user.a"), b"replaced", XattrFlags::REPLACE));
    assert_eq!(ok!(fs.getxattr(&root, ino, os("user.a"))), b"replaced");
    assert_eq!(xattr_names(fs, ino), [OsString::from("user.a")].into());
}

/// Values are bytes: NUL bytes inside and empty values survive exactly.
pub fn xattr_binary_and_empty_values(fx: &dyn Fixture) {
    require!(fx, xattrs);
    let fs = &**fx.vfs();
    let root = Ctx::root();
    let ino = touch(fs, Ino::ROOT, "f").ino;
    let binary = b"\0a\0\xff\xfe\0\0end\0".to_vec();
    ok!(fs.setxattr(&root, ino, os("user.bin"), &binary, XattrFlags::empty()));
    assert_eq!(ok!(fs.getxattr(&root, ino, os("user.bin"))), binary);
    ok!(fs.setxattr(&root, ino, os("user.empty"), b"", XattrFlags::CREATE));
    assert_eq!(ok!(fs.getxattr(&root, ino, os("user.empty"))), b"");
    let all: Vec<u8> = (0..=255u8).collect();
    ok!(fs.setxattr(&root, ino, os("user.all"), &all, XattrFlags::empty()));
    assert_eq!(ok!(fs.getxattr(&root, ino, os("user.all"))), all);
    let want: BTreeSet<OsString> = ["user.bin", "user.empty", "user.all"]
        .map(OsString::from)
        .into();
    assert_eq!(xattr_names(fs, ino), want);
    ok!(fs.setxattr(&root, ino, os("user.bin"), b"", XattrFlags::REPLACE));
    assert_eq!(ok!(fs.getxattr(&root, ino, os("user.bin"))), b"");
}
