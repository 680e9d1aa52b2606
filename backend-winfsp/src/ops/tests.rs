//! The neutral operation layer against memfs.

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Duration;

use vmount_core::memfs::{MemFs, MemFsOptions};
use vmount_core::{Ctx, FileType, Ino, Vfs};

use super::*;
use crate::attrs::{
    FILE_ATTRIBUTE_DIRECTORY, FILE_ATTRIBUTE_HIDDEN, FILE_ATTRIBUTE_READONLY,
    FILE_ATTRIBUTE_REPARSE_POINT, IO_REPARSE_TAG_SYMLINK,
};
use crate::names::wide;
use crate::security::{DELETE, FILE_GENERIC_READ, FILE_GENERIC_WRITE, Identity};

const RW: u32 = FILE_GENERIC_READ | FILE_GENERIC_WRITE;

fn settings(ci: bool) -> Settings {
    Settings {
        case_insensitive: ci,
        hide_dotfiles: true,
        read_only: false,
        symlinks: true,
        identity: Identity {
            uid: 1000,
            gid: 1000,
            user_sid: "S-1-5-21-9-9-9-1001".into(),
            group_sid: "S-1-5-21-9-9-9-513".into(),
        },
        cache_ttl: Duration::from_secs(60),
    }
}

fn setup(ci: bool) -> (Arc<MemFs>, Ops) {
    let fs = Arc::new(MemFs::new(MemFsOptions {
        root_uid: 1000,
        root_gid: 1000,
        ..MemFsOptions::default()
    }));
    let ops = Ops::new(
        fs.clone() as Arc<dyn Vfs>,
        Ctx::with_groups(1000, 1000, &[]),
        settings(ci),
    );
    (fs, ops)
}

fn w(s: &str) -> Vec<u16> {
    wide(s)
}

fn status<T>(r: WinResult<T>) -> NtStatus {
    match r {
        Ok(_) => STATUS_SUCCESS,
        Err(WinError::Status(s)) => s,
        Err(WinError::Win32(c)) => panic!("unexpected win32 error {c}"),
    }
}

fn mkfile(ops: &Ops, path: &str, data: &[u8]) {
    let r = ops.create(&w(path), 0, RW, 0, None).unwrap();
    if !data.is_empty() {
        ops.write(&r.handle, data, 0, false, false).unwrap();
    }
    ops.cleanup(&r.handle, None, false);
    ops.close(r.handle);
}

fn mkdir(ops: &Ops, path: &str) {
    let r = ops
        .create(&w(path), FILE_DIRECTORY_FILE, FILE_GENERIC_READ, 0, None)
        .unwrap();
    ops.close(r.handle);
}

fn exists(ops: &Ops, path: &str) -> bool {
    ops.security_by_name(&w(path)).is_ok()
}

fn listing(ops: &Ops, path: &str) -> Vec<(String, u32)> {
    let r = ops
        .open(&w(path), FILE_DIRECTORY_FILE, FILE_GENERIC_READ)
        .unwrap();
    let mut out = Vec::new();
    ops.list_dir(&r.handle, &mut |n, m| {
        out.push((n.to_owned(), m.attributes));
        true
    })
    .unwrap();
    ops.close(r.handle);
    out
}

#[test]
fn create_write_read_and_info() {
    let (_fs, ops) = setup(true);
    let r = ops.create(&w("\\a.txt"), 0, RW, 0, None).unwrap();
    assert_eq!(r.normalized.as_deref(), Some("\\a.txt"));
    let (n, meta) = ops
        .write(&r.handle, b"hello world", 0, false, false)
        .unwrap();
    assert_eq!(n, 11);
    assert_eq!(meta.file_size, 11);
    assert_eq!(meta.allocation_size, 4096);
    let mut buf = [0u8; 32];
    assert_eq!(ops.read(&r.handle, &mut buf, 6).unwrap(), 5);
    assert_eq!(&buf[..5], b"world");
    assert_eq!(
        status(ops.read(&r.handle, &mut buf, 11)),
        STATUS_END_OF_FILE
    );
    // Write to end of file ignores the offset.
    let (_, meta) = ops.write(&r.handle, b"!", 0, true, false).unwrap();
    assert_eq!(meta.file_size, 12);
    // Constrained I/O never extends: 3 bytes at 10 keep only 2.
    let (n, meta) = ops.write(&r.handle, b"XYZ", 10, false, true).unwrap();
    assert_eq!((n, meta.file_size), (2, 12));
    let (n, _) = ops.write(&r.handle, b"XYZ", 50, false, true).unwrap();
    assert_eq!(n, 0);
    assert_eq!(ops.read(&r.handle, &mut buf, 0).unwrap(), 12);
    assert_eq!(&buf[..12], b"hello worlXY");
    // Offsets that would overflow are refused, not wrapped.
    assert_eq!(
        status(ops.write(&r.handle, b"x", u64::MAX, false, false)),
        STATUS_INVALID_PARAMETER
    );
    assert!(ops.flush(Some(&r.handle)).unwrap().is_some());
    assert!(ops.flush(None).unwrap().is_none());
    ops.cleanup(&r.handle, None, false);
    ops.close(r.handle);
    // Creating it again collides, in any case.
    assert_eq!(
        status(ops.create(&w("\\A.TXT"), 0, RW, 0, None)),
        STATUS_OBJECT_NAME_COLLISION
    );
    assert_eq!(
        status(ops.create(&w("\\missing\\b.txt"), 0, RW, 0, None)),
        STATUS_OBJECT_PATH_NOT_FOUND
    );
    assert_eq!(
        status(ops.create(&w("\\a.txt:stream"), 0, RW, 0, None)),
        STATUS_OBJECT_NAME_INVALID
    );
}

#[test]
fn open_checks_kind_and_normalizes_case() {
    let (_fs, ops) = setup(true);
    mkdir(&ops, "\\Dir");
    mkfile(&ops, "\\Dir\\File.TXT", b"x");
    let r = ops
        .open(&w("\\dir\\file.txt"), 0, FILE_GENERIC_READ)
        .unwrap();
    assert_eq!(r.normalized.as_deref(), Some("\\Dir\\File.TXT"));
    assert_eq!(r.meta.file_size, 1);
    ops.close(r.handle);
    assert_eq!(
        status(ops.open(&w("\\Dir"), FILE_NON_DIRECTORY_FILE, 0)),
        STATUS_FILE_IS_A_DIRECTORY
    );
    assert_eq!(
        status(ops.open(&w("\\Dir\\File.TXT"), FILE_DIRECTORY_FILE, 0)),
        STATUS_NOT_A_DIRECTORY
    );
    assert_eq!(
        status(ops.open(&w("\\Dir\\nope"), 0, 0)),
        STATUS_OBJECT_NAME_NOT_FOUND
    );
    assert_eq!(
        status(ops.open(&w("\\nope\\x"), 0, 0)),
        STATUS_OBJECT_PATH_NOT_FOUND
    );
    let (_, cs) = setup(false);
    mkfile(&cs, "\\File", b"");
    assert_eq!(
        status(cs.open(&w("\\file"), 0, 0)),
        STATUS_OBJECT_NAME_NOT_FOUND
    );
    let r = cs.open(&w("\\File"), 0, 0).unwrap();
    assert_eq!(r.normalized, None);
    cs.close(r.handle);
}

#[test]
fn attribute_only_opens_need_no_permission() {
    let (fs, ops) = setup(false);
    let ctx = Ctx::root();
    let (a, o) = fs
        .create(
            &ctx,
            Ino::ROOT,
            OsStr::new("secret"),
            0o000,
            OpenFlags::WRITE,
        )
        .unwrap();
    fs.release(&ctx, a.ino, o.fh).unwrap();
    fs.setattr(
        &ctx,
        a.ino,
        &SetAttr {
            uid: Some(7),
            ..SetAttr::default()
        },
        None,
    )
    .unwrap();
    // Reading attributes works; reading data is refused by the filesystem.
    let r = ops
        .open(&w("\\secret"), 0, crate::security::FILE_READ_ATTRIBUTES)
        .unwrap();
    assert_eq!(r.meta.attributes, FILE_ATTRIBUTE_READONLY);
    ops.close(r.handle);
    assert_eq!(
        status(ops.open(&w("\\secret"), 0, FILE_GENERIC_READ)),
        STATUS_ACCESS_DENIED
    );
    let (_, sddl) = ops.security_by_name(&w("\\secret")).unwrap();
    assert!(sddl.starts_with("O:S-1-22-1-7G:S-1-22-2-0D:P"), "{sddl}");
    assert!(sddl.ends_with("(A;;0x120080;;;S-1-1-0)"), "{sddl}");
}

#[test]
fn delete_happens_at_cleanup_only() {
    let (_fs, ops) = setup(true);
    mkfile(&ops, "\\f", b"data");
    let r = ops.open(&w("\\F"), 0, DELETE).unwrap();
    ops.set_delete(&r.handle, &w("\\F"), true).unwrap();
    assert!(exists(&ops, "\\f"), "set_delete must not delete");
    // A second open while the delete is pending fails.
    assert_eq!(status(ops.open(&w("\\f"), 0, 0)), STATUS_DELETE_PENDING);
    // Withdrawing and setting again is allowed.
    ops.set_delete(&r.handle, &w("\\F"), false).unwrap();
    let again = ops.open(&w("\\f"), 0, 0).unwrap();
    ops.close(again.handle);
    ops.set_delete(&r.handle, &w("\\F"), true).unwrap();
    ops.cleanup(&r.handle, Some(&w("\\F")), true);
    assert!(!exists(&ops, "\\f"));
    let ino = r.handle.state.lock().ino;
    ops.close(r.handle);
    assert_eq!(ops.table.get(ino), None);
}

#[test]
fn cleanup_without_delete_flag_keeps_the_file() {
    let (_fs, ops) = setup(false);
    mkfile(&ops, "\\keep", b"");
    let r = ops.open(&w("\\keep"), 0, DELETE).unwrap();
    let ino = r.handle.state.lock().ino;
    assert_eq!(ops.table.get(ino), Some((1, false)));
    ops.cleanup(&r.handle, Some(&w("\\keep")), false);
    ops.close(r.handle);
    assert!(exists(&ops, "\\keep"));
}

#[test]
fn directories_must_be_empty_to_be_deleted() {
    let (_fs, ops) = setup(false);
    mkdir(&ops, "\\d");
    mkfile(&ops, "\\d\\x", b"");
    let d = ops.open(&w("\\d"), FILE_DIRECTORY_FILE, DELETE).unwrap();
    assert_eq!(
        status(ops.set_delete(&d.handle, &w("\\d"), true)),
        STATUS_DIRECTORY_NOT_EMPTY
    );
    let f = ops.open(&w("\\d\\x"), 0, DELETE).unwrap();
    ops.set_delete(&f.handle, &w("\\d\\x"), true).unwrap();
    ops.cleanup(&f.handle, None, true);
    ops.close(f.handle);
    ops.set_delete(&d.handle, &w("\\d"), true).unwrap();
    ops.cleanup(&d.handle, Some(&w("\\d")), true);
    ops.close(d.handle);
    assert!(!exists(&ops, "\\d"));
    let root = ops.open(&w("\\"), FILE_DIRECTORY_FILE, 0).unwrap();
    assert_eq!(
        status(ops.set_delete(&root.handle, &w("\\"), true)),
        STATUS_CANNOT_DELETE
    );
    ops.close(root.handle);
}

#[test]
fn cleanup_delete_uses_the_current_name_and_checks_the_inode() {
    let (_fs, ops) = setup(false);
    mkfile(&ops, "\\old", b"");
    let r = ops.open(&w("\\old"), 0, DELETE).unwrap();
    ops.rename(&r.handle, &w("\\old"), &w("\\new"), false)
        .unwrap();
    // No name from WinFsp: the handle's own (renamed) path is used.
    ops.cleanup(&r.handle, None, true);
    ops.close(r.handle);
    assert!(!exists(&ops, "\\new"));
    // A name now taken by another file is left alone.
    mkfile(&ops, "\\a", b"");
    let r = ops.open(&w("\\a"), 0, DELETE).unwrap();
    let other = ops.open(&w("\\a"), 0, DELETE).unwrap();
    ops.rename(&other.handle, &w("\\a"), &w("\\b"), false)
        .unwrap();
    mkfile(&ops, "\\a", b"new");
    ops.cleanup(&r.handle, Some(&w("\\a")), true);
    assert!(exists(&ops, "\\a"));
    ops.close(r.handle);
    ops.close(other.handle);
}

#[test]
fn rename_with_and_without_replace() {
    let (_fs, ops) = setup(true);
    mkfile(&ops, "\\src", b"new");
    mkfile(&ops, "\\Dst", b"old");
    mkdir(&ops, "\\dir");
    let h = ops.open(&w("\\src"), 0, DELETE).unwrap();
    assert_eq!(
        status(ops.rename(&h.handle, &w("\\src"), &w("\\dst"), false)),
        STATUS_OBJECT_NAME_COLLISION
    );
    assert_eq!(
        status(ops.rename(&h.handle, &w("\\src"), &w("\\DIR"), true)),
        STATUS_ACCESS_DENIED
    );
    // Replacing "Dst" through the spelling "dst" leaves one file named "dst".
    ops.rename(&h.handle, &w("\\src"), &w("\\dst"), true)
        .unwrap();
    let names: Vec<String> = listing(&ops, "\\").into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["dir", "dst"]);
    let mut buf = [0u8; 8];
    assert_eq!(ops.read(&h.handle, &mut buf, 0).unwrap(), 3);
    assert_eq!(&buf[..3], b"new");
    // A case-only rename of the file itself.
    ops.rename(&h.handle, &w("\\dst"), &w("\\DST"), false)
        .unwrap();
    let names: Vec<String> = listing(&ops, "\\").into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["dir", "DST"]);
    assert_eq!(h.handle.state.lock().path.to_win_string(), "\\DST");
    // Moving into a directory; the cache forgets the old path.
    assert!(exists(&ops, "\\dst"));
    ops.rename(&h.handle, &w("\\DST"), &w("\\dir\\moved"), false)
        .unwrap();
    assert!(!exists(&ops, "\\dst"));
    assert!(exists(&ops, "\\DIR\\MOVED"));
    ops.close(h.handle);
}

#[test]
fn renaming_a_directory_invalidates_paths_below_it() {
    let (_fs, ops) = setup(false);
    mkdir(&ops, "\\d");
    mkfile(&ops, "\\d\\f", b"");
    assert!(exists(&ops, "\\d\\f"));
    let h = ops.open(&w("\\d"), FILE_DIRECTORY_FILE, DELETE).unwrap();
    ops.rename(&h.handle, &w("\\d"), &w("\\e"), false).unwrap();
    ops.close(h.handle);
    assert!(!exists(&ops, "\\d\\f"));
    assert!(exists(&ops, "\\e\\f"));
}

#[test]
fn listing_has_dots_attributes_and_hides_unnameable_entries() {
    let (fs, ops) = setup(true);
    mkdir(&ops, "\\d");
    mkfile(&ops, "\\d\\.hidden", b"");
    mkfile(&ops, "\\d\\plain", b"");
    let ctx = Ctx::root();
    let d = fs.lookup(&ctx, Ino::ROOT, OsStr::new("d")).unwrap();
    fs.create(&ctx, d.ino, OsStr::new("what?"), 0o644, OpenFlags::WRITE)
        .unwrap();
    let list = listing(&ops, "\\d");
    let names: Vec<&str> = list.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, [".", "..", ".hidden", "plain"]);
    assert_eq!(list[0].1, FILE_ATTRIBUTE_DIRECTORY);
    assert_eq!(list[2].1 & FILE_ATTRIBUTE_HIDDEN, FILE_ATTRIBUTE_HIDDEN);
    // The root has no dot entries; stopping early is honoured.
    let root = listing(&ops, "\\");
    assert_eq!(root.len(), 1);
    let r = ops
        .open(&w("\\d"), FILE_DIRECTORY_FILE, FILE_GENERIC_READ)
        .unwrap();
    let mut seen = 0;
    ops.list_dir(&r.handle, &mut |_, _| {
        seen += 1;
        seen < 3
    })
    .unwrap();
    assert_eq!(seen, 3);
    ops.close(r.handle);
}

#[test]
fn large_directories_are_listed_completely() {
    let (_fs, ops) = setup(false);
    mkdir(&ops, "\\big");
    for i in 0..(LIST_BATCH * 2 + 7) {
        mkfile(&ops, &format!("\\big\\f{i:05}"), b"");
    }
    assert_eq!(listing(&ops, "\\big").len(), LIST_BATCH * 2 + 7 + 2);
}

#[test]
fn basic_info_and_sizes() {
    let (_fs, ops) = setup(false);
    let r = ops
        .create(&w("\\f"), 0, RW, FILE_ATTRIBUTE_READONLY, None)
        .unwrap();
    assert_eq!(r.meta.attributes, FILE_ATTRIBUTE_READONLY);
    // Writing through the creating handle still works (POSIX create semantics).
    ops.write(&r.handle, b"abc", 0, false, false).unwrap();
    let m = ops
        .set_basic_info(&r.handle, 0, 0, 125_911_584_000_000_000, 0)
        .unwrap();
    assert_eq!(m.attributes, crate::attrs::FILE_ATTRIBUTE_NORMAL);
    assert_eq!(m.last_write_time, 125_911_584_000_000_000);
    let m = ops
        .set_basic_info(&r.handle, INVALID_FILE_ATTRIBUTES, 0, 0, 0)
        .unwrap();
    assert_eq!(m.last_write_time, 125_911_584_000_000_000);
    let m = ops.set_file_size(&r.handle, 10_000, false).unwrap();
    assert_eq!((m.file_size, m.allocation_size), (10_000, 12_288));
    // An allocation size never grows the file, but can shrink it.
    let m = ops.set_file_size(&r.handle, 20_000, true).unwrap();
    assert_eq!(m.file_size, 10_000);
    let m = ops.set_file_size(&r.handle, 2, true).unwrap();
    assert_eq!(m.file_size, 2);
    let m = ops
        .overwrite(&r.handle, FILE_ATTRIBUTE_READONLY, false)
        .unwrap();
    assert_eq!((m.file_size, m.attributes), (0, FILE_ATTRIBUTE_READONLY));
    ops.close(r.handle);
}

#[test]
fn security_descriptors_and_chmod() {
    let (_fs, ops) = setup(false);
    mkfile(&ops, "\\f", b"");
    let r = ops.open(&w("\\f"), 0, 0).unwrap();
    let sddl = ops.security(&r.handle).unwrap();
    assert!(
        sddl.starts_with("O:S-1-5-21-9-9-9-1001G:S-1-5-21-9-9-9-513D:P"),
        "{sddl}"
    );
    let sd = security::SdSummary {
        owner: None,
        group: None,
        dacl: Some(vec![security::Ace {
            allow: true,
            mask: FILE_GENERIC_READ | FILE_GENERIC_WRITE,
            sid: security::SID_EVERYONE.into(),
            inherit_only: false,
        }]),
    };
    ops.set_security(&r.handle, security::DACL_SECURITY_INFORMATION, &sd)
        .unwrap();
    let sddl = ops.security(&r.handle).unwrap();
    // Owner bits became 0 (no owner entry), group 0, others rw.
    assert!(sddl.ends_with("(A;;0x12019f;;;S-1-1-0)"), "{sddl}");
    assert_eq!(
        ops.file_info(&r.handle).unwrap().attributes,
        FILE_ATTRIBUTE_READONLY
    );
    ops.close(r.handle);
}

#[test]
fn symlinks_are_reparse_points() {
    let (fs, ops) = setup(false);
    mkdir(&ops, "\\dir");
    let ctx = Ctx::root();
    fs.symlink(&ctx, Ino::ROOT, OsStr::new("to-dir"), OsStr::new("dir"))
        .unwrap();
    fs.symlink(&ctx, Ino::ROOT, OsStr::new("dangling"), OsStr::new("../x"))
        .unwrap();
    let list = listing(&ops, "\\");
    let attr_of = |n: &str| list.iter().find(|(m, _)| m == n).unwrap().1;
    assert_eq!(
        attr_of("to-dir"),
        FILE_ATTRIBUTE_REPARSE_POINT | FILE_ATTRIBUTE_DIRECTORY
    );
    assert_eq!(attr_of("dangling"), FILE_ATTRIBUTE_REPARSE_POINT);
    let data = ops.reparse_by_name(&w("\\to-dir")).unwrap();
    assert_eq!(attrs::target_from_reparse_data(&data).unwrap(), "dir");
    assert_eq!(
        status(ops.reparse_by_name(&w("\\dir"))),
        STATUS_NOT_A_REPARSE_POINT
    );
    let r = ops.open(&w("\\to-dir"), 0, 0).unwrap();
    assert_eq!(r.meta.reparse_tag, IO_REPARSE_TAG_SYMLINK);
    assert_eq!(ops.reparse(&r.handle).unwrap(), data);
    ops.close(r.handle);
    // CreateSymbolicLink: create an empty file, then set the reparse point on it.
    let r = ops.create(&w("\\link"), 0, RW, 0, None).unwrap();
    ops.set_reparse(&r.handle, &w("\\link"), &attrs::symlink_reparse_data("dir"))
        .unwrap();
    assert_eq!(r.handle.state.lock().kind, FileType::Symlink);
    ops.close(r.handle);
    let l = fs.lookup(&ctx, Ino::ROOT, OsStr::new("link")).unwrap();
    assert_eq!(fs.readlink(&ctx, l.ino).unwrap(), b"dir");
    // Or create it in one step with the reparse data as the extra buffer.
    let data = attrs::symlink_reparse_data("..\\up");
    let r = ops.create(&w("\\link2"), 0, RW, 0, Some(&data)).unwrap();
    assert_eq!(r.meta.attributes, FILE_ATTRIBUTE_REPARSE_POINT);
    ops.close(r.handle);
    let l = fs.lookup(&ctx, Ino::ROOT, OsStr::new("link2")).unwrap();
    assert_eq!(fs.readlink(&ctx, l.ino).unwrap(), b"../up");
    // A file with data is not turned into a link.
    let r = ops.create(&w("\\full"), 0, RW, 0, None).unwrap();
    ops.write(&r.handle, b"x", 0, false, false).unwrap();
    assert_eq!(
        status(ops.set_reparse(&r.handle, &w("\\full"), &attrs::symlink_reparse_data("dir"))),
        STATUS_ACCESS_DENIED
    );
    ops.close(r.handle);
}

#[test]
fn read_only_volume_refuses_changes() {
    let fs: Arc<dyn Vfs> = Arc::new(MemFs::new(MemFsOptions::default()));
    let mut s = settings(false);
    s.read_only = true;
    let ops = Ops::new(fs, Ctx::root(), s);
    assert_eq!(
        status(ops.create(&w("\\x"), 0, RW, 0, None)),
        STATUS_MEDIA_WRITE_PROTECTED
    );
    let r = ops.open(&w("\\"), FILE_DIRECTORY_FILE, 0).unwrap();
    assert_eq!(
        status(ops.rename(&r.handle, &w("\\a"), &w("\\b"), false)),
        STATUS_MEDIA_WRITE_PROTECTED
    );
    ops.close(r.handle);
    let (total, free) = ops.volume().unwrap();
    assert!(total > 0 && free <= total);
}

#[test]
fn open_flags_follow_granted_access() {
    assert_eq!(open_flags(0), OpenFlags::empty());
    assert_eq!(open_flags(DELETE), OpenFlags::empty());
    assert_eq!(open_flags(FILE_GENERIC_READ), OpenFlags::READ);
    assert_eq!(
        open_flags(crate::security::FILE_GENERIC_EXECUTE),
        OpenFlags::READ
    );
    assert_eq!(open_flags(FILE_APPEND_DATA), OpenFlags::WRITE);
    assert_eq!(open_flags(RW), OpenFlags::READ | OpenFlags::WRITE);
}
