//! open/create, read/write, handles, unlink-while-open, fallocate, copy_file_range, lseek.

use super::*;

const RW: OpenFlags = OpenFlags::READ.union(OpenFlags::WRITE);

/// `create` makes an empty regular file with the given mode, owned by the caller, and a
/// handle that reads and writes.
pub fn create_sets_attributes(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let root = Ctx::root();
    let (a, opened) = ok!(fs.create(&root, Ino::ROOT, os("f"), 0o640, RW | OpenFlags::EXCLUSIVE));
    assert_eq!(a.kind, FileType::RegularFile);
    assert_eq!((a.perm, a.nlink, a.size, a.uid, a.gid), (0o640, 1, 0, 0, 0));
    write_at(fs, a.ino, Some(opened.fh), 0, b"via handle");
    assert_eq!(read_at(fs, a.ino, Some(opened.fh), 0, 64), b"via handle");
    assert_eq!(ok!(fs.getattr(&root, a.ino, Some(opened.fh))).size, 10);
    ok!(fs.release(&root, a.ino, opened.fh));
    assert_eq!(contents(fs, a.ino), b"via handle");
    let listed = list(fs, Ino::ROOT);
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].ino, listed[0].kind),
        (a.ino, FileType::RegularFile)
    );
}

/// `EXCLUSIVE` on an existing name is `Exists`; without it the existing file is opened
/// (same inode, data intact); an existing directory is `IsDir`.
pub fn create_exclusive_and_reopen(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let root = Ctx::root();
    let ino = file_with(fs, Ino::ROOT, "f", b"keep me");
    expect_err!(
        fs.create(&root, Ino::ROOT, os("f"), 0o600, RW | OpenFlags::EXCLUSIVE),
        VfsError::Exists
    );
    let (a, opened) = ok!(fs.create(&root, Ino::ROOT, os("f"), 0o600, RW));
    assert_eq!(
        (a.ino, a.perm, a.size),
        (ino, 0o644, 7),
        "reopening keeps mode and data"
    );
    assert_eq!(read_at(fs, ino, Some(opened.fh), 0, 64), b"keep me");
    ok!(fs.release(&root, ino, opened.fh));
    assert_eq!(name_list(fs, Ino::ROOT), ["f"]);
    mkdir(fs, Ino::ROOT, "d", 0o755);
    expect_err!(
        fs.create(&root, Ino::ROOT, os("d"), 0o644, RW),
        VfsError::IsDir
    );
    expect_err!(
        fs.create(&root, Ino::ROOT, os("d"), 0o644, RW | OpenFlags::EXCLUSIVE),
        VfsError::Exists
    );
    let f = getattr(fs, ino);
    expect_err!(
        fs.create(&root, f.ino, os("x"), 0o644, RW),
        VfsError::NotDir
    );
}

/// `open` with `TRUNCATE` empties the file; opening a directory for writing is `IsDir`.
pub fn open_truncate_and_open_dir_for_write(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let root = Ctx::root();
    let ino = file_with(fs, Ino::ROOT, "f", b"some data");
    let opened = ok!(fs.open(&root, ino, OpenFlags::WRITE | OpenFlags::TRUNCATE));
    assert_eq!(ok!(fs.getattr(&root, ino, Some(opened.fh))).size, 0);
    ok!(fs.release(&root, ino, opened.fh));
    assert!(contents(fs, ino).is_empty());
    let d = mkdir(fs, Ino::ROOT, "d", 0o755);
    expect_err!(fs.open(&root, d, OpenFlags::WRITE), VfsError::IsDir);
    expect_err!(fs.open(&root, d, RW), VfsError::IsDir);
    let dh = ok!(fs.opendir(&root, d, OpenFlags::READ));
    ok!(fs.releasedir(&root, d, dh));
    expect_err!(fs.opendir(&root, ino, OpenFlags::READ), VfsError::NotDir);
}

/// Reads and writes land at their offsets; gaps read as zeros; a read across EOF is
/// short and a read at or past EOF returns 0.
pub fn read_write_at_offsets(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let root = Ctx::root();
    let (a, opened) = ok!(fs.create(&root, Ino::ROOT, os("f"), 0o644, RW));
    let fh = Some(opened.fh);
    write_at(fs, a.ino, fh, 0, b"hello");
    write_at(fs, a.ino, fh, 10, b"world");
    assert_eq!(ok!(fs.getattr(&root, a.ino, fh)).size, 15);
    assert_eq!(read_at(fs, a.ino, fh, 0, 15), b"hello\0\0\0\0\0world");
    assert_eq!(read_at(fs, a.ino, fh, 3, 4), b"lo\0\0");
    assert_eq!(read_at(fs, a.ino, fh, 12, 100), b"rld", "short read at EOF");
    assert!(read_at(fs, a.ino, fh, 15, 10).is_empty(), "read at EOF");
    assert!(read_at(fs, a.ino, fh, 1000, 10).is_empty(), "read past EOF");
    assert!(read_at(fs, a.ino, fh, 0, 0).is_empty(), "zero-length read");
    assert_eq!(ok!(fs.write(&root, a.ino, fh, 100, b"")), 0);
    assert_eq!(
        getattr(fs, a.ino).size,
        15,
        "an empty write does not extend"
    );
    write_at(fs, a.ino, fh, 2, b"LLO WO");
    assert_eq!(read_at(fs, a.ino, fh, 0, 64), b"heLLO WO\0\0world");
    // Writes that straddle any internal chunking.
    let big = pattern(1, 0, 300_000);
    write_at(fs, a.ino, fh, 65_000, &big);
    let back = read_at(fs, a.ino, fh, 65_000, 300_000);
    assert!(back == big, "300 KB unaligned write reads back byte-exact");
    assert_eq!(getattr(fs, a.ino).size, 365_000);
    ok!(fs.release(&root, a.ino, opened.fh));
}

/// With an `APPEND` handle every write goes to the current end, whatever the offset.
pub fn append_handle_writes_at_eof(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let root = Ctx::root();
    let ino = file_with(fs, Ino::ROOT, "f", b"abc");
    let opened = ok!(fs.open(&root, ino, OpenFlags::WRITE | OpenFlags::APPEND));
    write_at(fs, ino, Some(opened.fh), 0, b"def");
    write_at(fs, ino, Some(opened.fh), 1, b"g");
    write_at(fs, ino, None, 100, b"!");
    write_at(fs, ino, Some(opened.fh), 0, b"h");
    ok!(fs.release(&root, ino, opened.fh));
    let mut expected = b"abcdefg".to_vec();
    expected.resize(100, 0);
    expected.extend_from_slice(b"!h");
    assert_eq!(contents(fs, ino), expected);
}

/// Writing through a read-only handle, or reading through a write-only one, is
/// `BadHandle` and changes nothing.
pub fn handle_modes_are_enforced(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let root = Ctx::root();
    let ino = file_with(fs, Ino::ROOT, "f", b"original");
    let ro = ok!(fs.open(&root, ino, OpenFlags::READ));
    expect_err!(
        fs.write(&root, ino, Some(ro.fh), 0, b"x"),
        VfsError::BadHandle
    );
    let set = SetAttr {
        size: Some(1),
        ..SetAttr::default()
    };
    expect_err!(
        fs.fallocate(&root, ino, Some(ro.fh), 0, 100, FallocateFlags::empty()),
        VfsError::BadHandle
    );
    ok!(fs.release(&root, ino, ro.fh));
    let wo = ok!(fs.open(&root, ino, OpenFlags::WRITE));
    let mut buf = [0u8; 8];
    expect_err!(
        fs.read(&root, ino, Some(wo.fh), 0, &mut buf),
        VfsError::BadHandle
    );
    ok!(fs.setattr(&root, ino, &set, Some(wo.fh)));
    ok!(fs.release(&root, ino, wo.fh));
    assert_eq!(contents(fs, ino), b"o");
}

/// A handle that was never issued, or was released, is `BadHandle`.
pub fn unknown_handle_is_bad_handle(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let root = Ctx::root();
    let ino = file_with(fs, Ino::ROOT, "f", b"data");
    let bogus = Some(Fh(0xDEAD_BEEF_0000_0001));
    let mut buf = [0u8; 4];
    expect_err!(fs.read(&root, ino, bogus, 0, &mut buf), VfsError::BadHandle);
    expect_err!(fs.write(&root, ino, bogus, 0, b"x"), VfsError::BadHandle);
    let opened = ok!(fs.open(&root, ino, RW));
    ok!(fs.release(&root, ino, opened.fh));
    expect_err!(
        fs.read(&root, ino, Some(opened.fh), 0, &mut buf),
        VfsError::BadHandle
    );
    expect_err!(
        fs.write(&root, ino, Some(opened.fh), 0, b"x"),
        VfsError::BadHandle
    );
    assert_eq!(contents(fs, ino), b"data");
}

/// With no handle (NFS) reads, writes, getattr, setattr and fsync work on the inode.
pub fn stateless_io_without_handle(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let root = Ctx::root();
    let ino = touch(fs, Ino::ROOT, "f").ino;
    for i in 0..10u64 {
        write_at(fs, ino, None, i * 1000, &pattern(i, 0, 1000));
    }
    for i in 0..10u64 {
        assert_eq!(read_at(fs, ino, None, i * 1000, 1000), pattern(i, 0, 1000));
    }
    assert_eq!(ok!(fs.getattr(&root, ino, None)).size, 10_000);
    ok!(fs.setattr(
        &root,
        ino,
        &SetAttr {
            size: Some(500),
            ..SetAttr::default()
        },
        None
    ));
    ok!(fs.fsync(&root, ino, None, true));
    assert_eq!(contents(fs, ino), pattern(0, 0, 500));
}

/// A file unlinked while open stays readable and writable through its handle, shows
/// nlink 0 there, and is freed when the last handle is released.
pub fn unlink_while_open(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let root = Ctx::root();
    let before = fx.inode_count();
    let (a, h1) = ok!(fs.create(&root, Ino::ROOT, os("f"), 0o644, RW));
    write_at(fs, a.ino, Some(h1.fh), 0, b"before unlink");
    let h2 = ok!(fs.open(&root, a.ino, OpenFlags::READ));
    ok!(fs.unlink(&root, Ino::ROOT, os("f")));
    expect_err!(fs.lookup(&root, Ino::ROOT, os("f")), VfsError::NotFound);
    assert!(list(fs, Ino::ROOT).is_empty());
    assert_eq!(read_at(fs, a.ino, Some(h1.fh), 0, 64), b"before unlink");
    write_at(fs, a.ino, Some(h1.fh), 13, b", after");
    assert_eq!(
        read_at(fs, a.ino, Some(h2.fh), 0, 64),
        b"before unlink, after"
    );
    let attr = ok!(fs.getattr(&root, a.ino, Some(h1.fh)));
    assert_eq!((attr.nlink, attr.size), (0, 20));
    let set = SetAttr {
        size: Some(6),
        ..SetAttr::default()
    };
    assert_eq!(ok!(fs.setattr(&root, a.ino, &set, Some(h1.fh))).size, 6);
    ok!(fs.release(&root, a.ino, h1.fh));
    assert_eq!(
        read_at(fs, a.ino, Some(h2.fh), 0, 64),
        b"before",
        "second handle keeps it"
    );
    if let (Some(b), Some(now)) = (before, fx.inode_count()) {
        assert_eq!(now, b + 1, "still pinned by a handle");
    }
    ok!(fs.release(&root, a.ino, h2.fh));
    expect_err!(fs.getattr(&root, a.ino, None), VfsError::Stale);
    let mut buf = [0u8; 4];
    expect_err!(fs.read(&root, a.ino, None, 0, &mut buf), VfsError::Stale);
    if let (Some(b), Some(now)) = (before, fx.inode_count()) {
        assert_eq!(now, b, "freed after the last release");
    }
    // A name created afterwards is a new inode.
    assert_ne!(touch(fs, Ino::ROOT, "f").ino, a.ino);
}

/// fallocate with no flags extends the size (reading zeros); with `KEEP_SIZE` it does
/// not; a zero length is `InvalidArgument`.
pub fn fallocate_extends_and_keeps_size(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let root = Ctx::root();
    let ino = file_with(fs, Ino::ROOT, "f", b"head");
    ok!(fs.fallocate(&root, ino, None, 0, 10_000, FallocateFlags::empty()));
    assert_eq!(getattr(fs, ino).size, 10_000);
    let data = contents(fs, ino);
    assert_eq!(&data[..4], b"head", "allocation keeps data");
    assert!(data[4..].iter().all(|&b| b == 0));
    ok!(fs.fallocate(&root, ino, None, 20_000, 5_000, FallocateFlags::KEEP_SIZE));
    assert_eq!(getattr(fs, ino).size, 10_000);
    ok!(fs.fallocate(&root, ino, None, 100, 50, FallocateFlags::empty()));
    assert_eq!(
        getattr(fs, ino).size,
        10_000,
        "allocating inside never shrinks"
    );
    let opened = ok!(fs.open(&root, ino, OpenFlags::WRITE));
    ok!(fs.fallocate(
        &root,
        ino,
        Some(opened.fh),
        10_000,
        2_000,
        FallocateFlags::empty()
    ));
    ok!(fs.release(&root, ino, opened.fh));
    assert_eq!(getattr(fs, ino).size, 12_000);
    expect_err!(
        fs.fallocate(&root, ino, None, 0, 0, FallocateFlags::empty()),
        VfsError::InvalidArgument
    );
    let d = mkdir(fs, Ino::ROOT, "d", 0o755);
    expect_err!(
        fs.fallocate(&root, d, None, 0, 10, FallocateFlags::empty()),
        VfsError::IsDir
    );
}

/// `PUNCH_HOLE | KEEP_SIZE` zeroes exactly the range, keeps the size and frees blocks;
/// `PUNCH_HOLE` alone is `NotSupported` (as Linux's vfs_fallocate answers).
pub fn fallocate_punch_hole(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let root = Ctx::root();
    let chunk = 64 * 1024;
    let ino = file_with(fs, Ino::ROOT, "f", &vec![0xAA; 3 * chunk]);
    let punch = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
    ok!(fs.fallocate(&root, ino, None, chunk as u64, chunk as u64, punch));
    let data = contents(fs, ino);
    assert_eq!(data.len(), 3 * chunk);
    assert!(data[..chunk].iter().all(|&b| b == 0xAA));
    assert!(data[chunk..2 * chunk].iter().all(|&b| b == 0));
    assert!(data[2 * chunk..].iter().all(|&b| b == 0xAA));
    // Unaligned range.
    ok!(fs.fallocate(&root, ino, None, 100, 4_900, punch));
    let data = contents(fs, ino);
    assert!(data[..100].iter().all(|&b| b == 0xAA));
    assert!(data[100..5_000].iter().all(|&b| b == 0));
    assert_eq!(data[5_000], 0xAA);
    // Beyond EOF: size unchanged.
    ok!(fs.fallocate(&root, ino, None, 2 * chunk as u64, 10 * chunk as u64, punch));
    assert_eq!(getattr(fs, ino).size, 3 * chunk as u64);
    assert!(contents(fs, ino)[2 * chunk..].iter().all(|&b| b == 0));
    expect_err!(
        fs.fallocate(&root, ino, None, 0, 10, FallocateFlags::PUNCH_HOLE),
        VfsError::NotSupported
    );

    // Punching a whole 1 MiB file frees its storage.
    let big = file_with(fs, Ino::ROOT, "big", &vec![0x55; 1 << 20]);
    let full = getattr(fs, big).blocks;
    ok!(fs.fallocate(&root, big, None, 0, 1 << 20, punch));
    let after = getattr(fs, big);
    assert_eq!(after.size, 1 << 20);
    assert!(
        after.blocks < full,
        "punching everything frees blocks ({} -> {})",
        full,
        after.blocks
    );
    assert!(contents(fs, big).iter().all(|&b| b == 0));
}

/// `ZERO_RANGE` zeroes the range, extending the size unless `KEEP_SIZE`.
pub fn fallocate_zero_range(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let root = Ctx::root();
    let ino = file_with(fs, Ino::ROOT, "f", &[0xBB; 8192]);
    match fs.fallocate(&root, ino, None, 1000, 2000, FallocateFlags::ZERO_RANGE) {
        Ok(()) => {}
        Err(VfsError::NotSupported) => {
            // The trait's documented answer for an fallocate mode a filesystem lacks
            // (tmpfs under loopback has no ZERO_RANGE).
            println!("skipped: fallocate ZERO_RANGE reports NotSupported");
            return;
        }
        Err(e) => panic!("ZERO_RANGE failed: {e:?}"),
    }
    let data = contents(fs, ino);
    assert_eq!(data.len(), 8192);
    assert!(data[..1000].iter().all(|&b| b == 0xBB));
    assert!(data[1000..3000].iter().all(|&b| b == 0));
    assert!(data[3000..].iter().all(|&b| b == 0xBB));
    ok!(fs.fallocate(&root, ino, None, 8000, 2000, FallocateFlags::ZERO_RANGE));
    let data = contents(fs, ino);
    assert_eq!(data.len(), 10_000);
    assert!(data[3000..8000].iter().all(|&b| b == 0xBB));
    assert!(data[8000..].iter().all(|&b| b == 0));
    let keep = FallocateFlags::ZERO_RANGE | FallocateFlags::KEEP_SIZE;
    ok!(fs.fallocate(&root, ino, None, 9_500, 5_000, keep));
    assert_eq!(getattr(fs, ino).size, 10_000);
}

/// copy_file_range copies between files (returning the count), short at the source's
/// EOF, 0 at it, extending the destination.
pub fn copy_file_range_between_files(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let root = Ctx::root();
    let len = 100 * 1024;
    let data = pattern(7, 0, len);
    let src = file_with(fs, Ino::ROOT, "src", &data);
    let dst = touch(fs, Ino::ROOT, "dst").ino;
    let n = ok!(fs.copy_file_range(&root, src, None, 0, dst, None, 0, len as u64));
    assert_eq!(n, len as u64);
    assert!(contents(fs, dst) == data, "copied data equals the source");
    let n = ok!(fs.copy_file_range(
        &root,
        src,
        None,
        len as u64 - 10,
        dst,
        None,
        5_000_000,
        1000
    ));
    assert_eq!(n, 10, "short copy at the source's EOF");
    assert_eq!(getattr(fs, dst).size, 5_000_010);
    assert_eq!(read_at(fs, dst, None, 5_000_000, 100), &data[len - 10..]);
    assert_eq!(
        ok!(fs.copy_file_range(&root, src, None, len as u64, dst, None, 0, 10)),
        0
    );
    assert_eq!(
        ok!(fs.copy_file_range(&root, src, None, 10 * len as u64, dst, None, 0, 10)),
        0
    );
    // Through handles, at unaligned offsets.
    let hin = ok!(fs.open(&root, src, OpenFlags::READ));
    let hout = ok!(fs.open(&root, dst, OpenFlags::WRITE));
    let n = ok!(fs.copy_file_range(&root, src, Some(hin.fh), 3, dst, Some(hout.fh), 7, 4099));
    assert_eq!(n, 4099);
    assert_eq!(read_at(fs, dst, None, 7, 4099), &data[3..4102]);
    let dst_ro = ok!(fs.open(&root, dst, OpenFlags::READ));
    expect_err!(
        fs.copy_file_range(&root, src, Some(hin.fh), 0, dst, Some(dst_ro.fh), 0, 10),
        VfsError::BadHandle
    );
    ok!(fs.release(&root, dst, dst_ro.fh));
    ok!(fs.release(&root, src, hin.fh));
    ok!(fs.release(&root, dst, hout.fh));
    assert!(contents(fs, src) == data, "the source is untouched");
}

/// copy_file_range within one file between non-overlapping ranges; overlapping ranges
/// are `InvalidArgument`.
pub fn copy_file_range_within_one_file(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let root = Ctx::root();
    let head = pattern(3, 0, 1000);
    let ino = file_with(fs, Ino::ROOT, "f", &head);
    assert_eq!(
        ok!(fs.copy_file_range(&root, ino, None, 0, ino, None, 200_000, 1000)),
        1000
    );
    let data = contents(fs, ino);
    assert_eq!(data.len(), 201_000);
    assert!(data[..1000] == head[..] && data[200_000..] == head[..]);
    assert!(data[1000..200_000].iter().all(|&b| b == 0));
    assert_eq!(
        ok!(fs.copy_file_range(&root, ino, None, 0, ino, None, 1000, 1000)),
        1000
    );
    assert_eq!(read_at(fs, ino, None, 1000, 1000), head);
    expect_err!(
        fs.copy_file_range(&root, ino, None, 0, ino, None, 500, 1000),
        VfsError::InvalidArgument
    );
    assert_eq!(
        read_at(fs, ino, None, 0, 2000),
        [&head[..], &head[..]].concat()
    );
}

/// SEEK_DATA/SEEK_HOLE on a file with a leading hole, data, and a trailing hole.
pub fn lseek_data_and_hole(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let root = Ctx::root();
    let mib = 1u64 << 20;
    let ino = touch(fs, Ino::ROOT, "f").ino;
    write_at(fs, ino, None, mib, &[1u8; 4096]);
    let eof = mib + 4096;
    let seek = |off, w| fs.lseek(&root, ino, None, off, w);
    if fx.vfs().capabilities().sparse_files {
        assert_eq!(ok!(seek(0, Whence::Hole)), 0, "the file starts with a hole");
        assert_eq!(ok!(seek(0, Whence::Data)), mib, "data starts at 1 MiB");
        assert_eq!(ok!(seek(mib / 2, Whence::Data)), mib);
        assert_eq!(ok!(seek(mib, Whence::Data)), mib);
        assert_eq!(ok!(seek(mib + 100, Whence::Data)), mib + 100);
        assert_eq!(ok!(seek(mib, Whence::Hole)), eof, "EOF counts as a hole");
    } else {
        assert_eq!(ok!(seek(0, Whence::Data)), 0, "without holes, all is data");
        assert_eq!(ok!(seek(0, Whence::Hole)), eof);
    }
    expect_err!(seek(eof, Whence::Data), VfsError::NoDataAtOffset);
    expect_err!(seek(eof, Whence::Hole), VfsError::NoDataAtOffset);
    expect_err!(seek(eof + 1, Whence::Data), VfsError::NoDataAtOffset);
    expect_err!(seek(eof + 1, Whence::Hole), VfsError::NoDataAtOffset);

    // A trailing hole after truncate-extend.
    ok!(fs.setattr(
        &root,
        ino,
        &SetAttr {
            size: Some(8 * mib),
            ..SetAttr::default()
        },
        None
    ));
    if fx.vfs().capabilities().sparse_files {
        let hole = ok!(seek(mib, Whence::Hole));
        assert!(
            hole >= eof && hole <= 2 * mib,
            "hole after the data at {hole}"
        );
        expect_err!(seek(3 * mib, Whence::Data), VfsError::NoDataAtOffset);
        assert_eq!(ok!(seek(3 * mib, Whence::Hole)), 3 * mib);
    }
    expect_err!(seek(8 * mib, Whence::Hole), VfsError::NoDataAtOffset);
    let opened = ok!(fs.open(&root, ino, OpenFlags::READ));
    assert!(ok!(fs.lseek(&root, ino, Some(opened.fh), 0, Whence::Data)) <= mib);
    ok!(fs.release(&root, ino, opened.fh));
}

/// Offsets and lengths whose sum overflows (a client can send any u64) fail with an
/// error, never a panic or wrap-around.
pub fn huge_offsets_fail_cleanly(fx: &dyn Fixture) {
    let fs = &**fx.vfs();
    let root = Ctx::root();
    let ino = file_with(fs, Ino::ROOT, "f", b"data");
    let other = touch(fs, Ino::ROOT, "g").ino;
    for off in [u64::MAX, u64::MAX - 2, 1 << 63] {
        expect_err!(
            fs.write(&root, ino, None, off, b"0123456789"),
            VfsError::FileTooLarge | VfsError::InvalidArgument | VfsError::NoSpace
        );
        let mut buf = [0u8; 16];
        match fs.read(&root, ino, None, off, &mut buf) {
            Ok(0) | Err(VfsError::InvalidArgument) => {}
            other => panic!("read at {off}: {other:?}"),
        }
        expect_err!(
            fs.fallocate(&root, ino, None, off, 100, FallocateFlags::empty()),
            VfsError::FileTooLarge | VfsError::InvalidArgument | VfsError::NoSpace
        );
        match fs.copy_file_range(&root, ino, None, 0, other, None, off, 4) {
            Err(VfsError::FileTooLarge | VfsError::InvalidArgument | VfsError::NoSpace) => {}
            other => panic!("copy_file_range to {off}: {other:?}"),
        }
        match fs.copy_file_range(&root, ino, None, off, other, None, 0, u64::MAX) {
            Ok(0) | Err(VfsError::InvalidArgument | VfsError::FileTooLarge) => {}
            other => panic!("copy_file_range from {off}: {other:?}"),
        }
        expect_err!(
            fs.lseek(&root, ino, None, off, Whence::Data),
            VfsError::NoDataAtOffset | VfsError::InvalidArgument
        );
    }
    expect_err!(
        fs.setattr(
            &root,
            ino,
            &SetAttr {
                size: Some(u64::MAX),
                ..SetAttr::default()
            },
            None
        ),
        VfsError::FileTooLarge | VfsError::InvalidArgument | VfsError::NoSpace
    );
    expect_err!(
        fs.fallocate(&root, ino, None, 10, u64::MAX - 5, FallocateFlags::empty()),
        VfsError::FileTooLarge | VfsError::InvalidArgument | VfsError::NoSpace
    );
    assert_eq!(contents(fs, ino), b"data");
    assert_eq!(getattr(fs, other).size, 0);
}
