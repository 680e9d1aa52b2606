//! Unit tests of memfs behaviour that the shared conformance suite does not pin down:
//! the size limit, memory accounting, sparse extremes, inode limits, xattr namespaces,
//! handle lifetimes and concurrency.

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Duration;

use super::data::{CHUNK, MAX_FILE_SIZE, round_grain};
use super::{MemFs, MemFsOptions};
use crate::*;

const RW: OpenFlags = OpenFlags::READ.union(OpenFlags::WRITE);

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn fs_with(opts: MemFsOptions) -> MemFs {
    MemFs::new(opts)
}

fn fs() -> MemFs {
    fs_with(MemFsOptions::default())
}

fn root() -> Ctx {
    Ctx::root()
}

/// Creates `name` in the root and returns its inode and an open read-write handle.
fn create(fs: &MemFs, name: &str) -> (Ino, Fh) {
    let (a, o) = fs
        .create(
            &root(),
            Ino::ROOT,
            os(name),
            0o644,
            RW | OpenFlags::EXCLUSIVE,
        )
        .unwrap();
    (a.ino, o.fh)
}

fn read_all(fs: &MemFs, ino: Ino) -> Vec<u8> {
    let size = fs.getattr(&root(), ino, None).unwrap().size as usize;
    let mut buf = vec![0xEE; size + 10];
    let n = fs.read(&root(), ino, None, 0, &mut buf).unwrap();
    buf.truncate(n);
    buf
}

#[test]
fn size_limit_fails_without_changing_anything() {
    let fs = fs_with(MemFsOptions {
        size_limit: Some(256 * 1024),
        ..Default::default()
    });
    let (ino, fh) = create(&fs, "f");
    let data: Vec<u8> = (0..200 * 1024u32).map(|i| (i % 253) as u8).collect();
    fs.write(&root(), ino, Some(fh), 0, &data).unwrap();
    fs.flush(&root(), ino, fh, 0).unwrap();
    let used = fs.used_bytes();
    let before = fs.getattr(&root(), ino, None).unwrap();

    // An appending write, an fallocate and an extending copy that do not fit.
    let big = vec![7u8; 100 * 1024];
    assert!(matches!(
        fs.write(&root(), ino, Some(fh), 200 * 1024, &big),
        Err(VfsError::NoSpace)
    ));
    assert!(matches!(
        fs.fallocate(&root(), ino, None, 0, 1 << 20, FallocateFlags::empty()),
        Err(VfsError::NoSpace)
    ));
    assert!(matches!(
        fs.fallocate(
            &root(),
            ino,
            None,
            1 << 40,
            1 << 40,
            FallocateFlags::empty()
        ),
        Err(VfsError::NoSpace)
    ));
    let (g, gh) = create(&fs, "g");
    assert!(matches!(
        fs.copy_file_range(&root(), ino, None, 0, g, Some(gh), 0, 200 * 1024),
        Err(VfsError::NoSpace)
    ));
    assert_eq!(fs.getattr(&root(), g, None).unwrap().size, 0);
    assert!(matches!(
        fs.setxattr(
            &root(),
            ino,
            os("user.big"),
            &vec![1; 60 * 1024],
            XattrFlags::empty()
        ),
        Err(VfsError::NoSpace)
    ));
    let after = fs.getattr(&root(), ino, None).unwrap();
    assert_eq!(
        (after.size, after.blocks, after.mtime),
        (before.size, before.blocks, before.mtime)
    );
    assert_eq!(read_all(&fs, ino), data);
    assert_eq!(fs.used_bytes(), used);

    // Overwriting in place needs no memory; extending with a hole needs none either.
    fs.write(&root(), ino, Some(fh), 1000, &big[..50 * 1024])
        .unwrap();
    let set = SetAttr {
        size: Some(1 << 40),
        ..SetAttr::default()
    };
    fs.setattr(&root(), ino, &set, None).unwrap();
    assert_eq!(fs.used_bytes(), used);
    // statfs reports the limit.
    let st = fs.statfs(&root(), Ino::ROOT).unwrap();
    assert_eq!(st.blocks, 64);
    assert_eq!(st.bfree, (256 * 1024 - used) / 4096);
    // Freeing makes room again.
    fs.release(&root(), ino, fh).unwrap();
    fs.unlink(&root(), Ino::ROOT, os("f")).unwrap();
    fs.write(&root(), g, Some(gh), 0, &big).unwrap();
    fs.release(&root(), g, gh).unwrap();
}

#[test]
fn geometric_growth_falls_back_to_exact_at_the_limit() {
    let limit = 10 * 4096;
    let fs = fs_with(MemFsOptions {
        size_limit: Some(limit),
        ..Default::default()
    });
    let (ino, fh) = create(&fs, "f");
    // Doubling would want a 64 KiB chunk long before the limit is reached; exact
    // allocation must still let every byte that fits be written.
    let piece = [3u8; 4107];
    let mut off = 0u64;
    while off + 4107 <= limit {
        fs.write(&root(), ino, Some(fh), off, &piece).unwrap();
        off += 4107;
    }
    assert_eq!(off, 9 * 4107);
    assert!(fs.used_bytes() <= limit);
    assert!(matches!(
        fs.write(&root(), ino, Some(fh), off, &piece),
        Err(VfsError::NoSpace)
    ));
    assert_eq!(fs.getattr(&root(), ino, None).unwrap().size, off);
    fs.release(&root(), ino, fh).unwrap();
    assert_eq!(fs.used_bytes(), round_grain(off));
}

#[test]
fn sparse_extremes_cost_nothing() {
    let fs = fs();
    let (ino, fh) = create(&fs, "f");
    let set = SetAttr {
        size: Some(MAX_FILE_SIZE),
        ..SetAttr::default()
    };
    let a = fs.setattr(&root(), ino, &set, Some(fh)).unwrap();
    assert_eq!((a.size, a.blocks), (i64::MAX as u64, 0));
    assert_eq!(fs.used_bytes(), 0);
    let mut buf = [0xFFu8; 4096];
    assert_eq!(
        fs.read(&root(), ino, Some(fh), 1 << 62, &mut buf).unwrap(),
        4096
    );
    assert!(buf.iter().all(|&b| b == 0));
    let too_big = SetAttr {
        size: Some(MAX_FILE_SIZE + 1),
        ..SetAttr::default()
    };
    assert!(matches!(
        fs.setattr(&root(), ino, &too_big, None),
        Err(VfsError::FileTooLarge)
    ));

    let edge = MAX_FILE_SIZE - 1;
    assert!(matches!(
        fs.write(&root(), ino, Some(fh), edge, b"ab"),
        Err(VfsError::FileTooLarge)
    ));
    assert!(matches!(
        fs.write(&root(), ino, None, u64::MAX, b"a"),
        Err(VfsError::FileTooLarge)
    ));
    assert_eq!(fs.write(&root(), ino, Some(fh), edge, b"a").unwrap(), 1);
    let mut one = [0u8; 4];
    assert_eq!(fs.read(&root(), ino, None, edge, &mut one).unwrap(), 1);
    assert_eq!(one[0], b'a');
    assert_eq!(fs.read(&root(), ino, None, u64::MAX, &mut one).unwrap(), 0);
    assert!(fs.used_bytes() <= CHUNK);
    assert!(matches!(
        fs.fallocate(&root(), ino, None, edge, 2, FallocateFlags::KEEP_SIZE),
        Err(VfsError::FileTooLarge)
    ));
    assert!(
        matches!(fs.lseek(&root(), ino, None, 0, Whence::Data), Ok(o) if o == edge / CHUNK * CHUNK)
    );
    assert_eq!(fs.lseek(&root(), ino, None, 5, Whence::Hole).unwrap(), 5);
    assert!(matches!(
        fs.lseek(&root(), ino, None, MAX_FILE_SIZE, Whence::Hole),
        Err(VfsError::NoDataAtOffset)
    ));
    // Truncating back frees everything.
    let set = SetAttr {
        size: Some(0),
        ..SetAttr::default()
    };
    fs.setattr(&root(), ino, &set, None).unwrap();
    assert_eq!(fs.used_bytes(), 0);
    fs.release(&root(), ino, fh).unwrap();
}

#[test]
fn copy_of_a_sparse_file_stays_sparse() {
    let fs = fs();
    let (a, ah) = create(&fs, "a");
    fs.write(&root(), a, Some(ah), 10 << 30, b"tail").unwrap();
    fs.write(&root(), a, Some(ah), 0, b"head").unwrap();
    let (b, bh) = create(&fs, "b");
    let n = fs
        .copy_file_range(&root(), a, Some(ah), 0, b, Some(bh), 3, u64::MAX)
        .unwrap();
    assert_eq!(n, (10 << 30) + 4);
    assert_eq!(fs.getattr(&root(), b, None).unwrap().size, (10 << 30) + 7);
    assert!(fs.used_bytes() <= 4 * 4096, "used {}", fs.used_bytes());
    let mut buf = [0u8; 8];
    fs.read(&root(), b, None, 0, &mut buf).unwrap();
    assert_eq!(&buf, b"\0\0\0head\0");
    fs.read(&root(), b, None, (10 << 30) + 3, &mut buf).unwrap();
    assert_eq!(&buf[..4], b"tail");
    // Read-only source handle for output, append output handle: BadHandle.
    let ro = fs.open(&root(), b, OpenFlags::READ).unwrap().fh;
    assert!(matches!(
        fs.copy_file_range(&root(), a, None, 0, b, Some(ro), 0, 4),
        Err(VfsError::BadHandle)
    ));
    for (ino, fh) in [(a, ah), (b, bh), (b, ro)] {
        fs.release(&root(), ino, fh).unwrap();
    }
}

#[test]
fn small_files_are_trimmed_to_the_grain() {
    let fs = fs();
    let (ino, fh) = create(&fs, "f");
    let piece = [1u8; 4107];
    for i in 0..10u64 {
        fs.write(&root(), ino, Some(fh), i * 4107, &piece).unwrap();
    }
    assert!(fs.used_bytes() >= 41_070);
    fs.release(&root(), ino, fh).unwrap();
    assert_eq!(fs.used_bytes(), round_grain(41_070));
    assert_eq!(
        fs.getattr(&root(), ino, None).unwrap().blocks,
        round_grain(41_070).div_ceil(512)
    );

    let (small, sh) = create(&fs, "small");
    fs.write(&root(), small, Some(sh), 0, &[2u8; 100]).unwrap();
    fs.fsync(&root(), small, Some(sh), false).unwrap();
    // A 100-byte file pins 128 bytes (one 512-byte block), not a page.
    assert_eq!(fs.used_bytes(), round_grain(41_070) + 128);
    assert_eq!(fs.getattr(&root(), small, None).unwrap().blocks, 1);
    fs.release(&root(), small, sh).unwrap();
    fs.unlink(&root(), Ino::ROOT, os("f")).unwrap();
    fs.unlink(&root(), Ino::ROOT, os("small")).unwrap();
    assert_eq!(fs.used_bytes(), 0);
}

#[test]
fn unlinked_open_file_lives_until_release() {
    let fs = fs();
    let (ino, fh) = create(&fs, "f");
    fs.write(&root(), ino, Some(fh), 0, &[9u8; 100_000])
        .unwrap();
    fs.setxattr(&root(), ino, os("user.k"), b"v", XattrFlags::empty())
        .unwrap();
    let count = fs.inode_count();
    fs.unlink(&root(), Ino::ROOT, os("f")).unwrap();
    assert_eq!(fs.inode_count(), count);
    fs.write(&root(), ino, Some(fh), 100_000, b"more").unwrap();
    assert_eq!(fs.getattr(&root(), ino, None).unwrap().nlink, 0);
    let mut buf = [0u8; 4];
    fs.read(&root(), ino, Some(fh), 100_000, &mut buf).unwrap();
    assert_eq!(&buf, b"more");
    // Forget does not free it either.
    fs.forget(ino, 100);
    assert_eq!(fs.getattr(&root(), ino, Some(fh)).unwrap().size, 100_004);
    // No new link to an unlinked inode.
    assert!(matches!(
        fs.link(&root(), ino, Ino::ROOT, os("back")),
        Err(VfsError::NotFound)
    ));
    fs.release(&root(), ino, fh).unwrap();
    assert_eq!(fs.inode_count(), count - 1);
    assert_eq!(fs.used_bytes(), 0);
    assert!(matches!(
        fs.getattr(&root(), ino, None),
        Err(VfsError::Stale)
    ));
    assert!(matches!(
        fs.release(&root(), ino, fh),
        Err(VfsError::BadHandle)
    ));
    assert!(matches!(
        fs.write(&root(), ino, Some(fh), 0, b"x"),
        Err(VfsError::BadHandle)
    ));
}

#[test]
fn append_handles_write_at_eof() {
    let fs = fs();
    let (ino, fh) = create(&fs, "f");
    fs.write(&root(), ino, Some(fh), 0, b"0123456789").unwrap();
    let app = fs
        .open(&root(), ino, OpenFlags::WRITE | OpenFlags::APPEND)
        .unwrap()
        .fh;
    fs.write(&root(), ino, Some(app), 0, b"ab").unwrap();
    fs.write(&root(), ino, Some(app), 3, b"cd").unwrap();
    assert_eq!(read_all(&fs, ino), b"0123456789abcd");
    let rd = fs.open(&root(), ino, OpenFlags::READ).unwrap().fh;
    assert!(matches!(
        fs.write(&root(), ino, Some(rd), 0, b"x"),
        Err(VfsError::BadHandle)
    ));
    assert!(matches!(
        fs.write(&root(), ino, Some(Fh(999_999)), 0, b"x"),
        Err(VfsError::BadHandle)
    ));
    // A handle of another inode is not valid for this one.
    let (other, oh) = create(&fs, "g");
    assert!(matches!(
        fs.read(&root(), other, Some(fh), 0, &mut [0; 4]),
        Err(VfsError::BadHandle)
    ));
    for (i, h) in [(ino, fh), (ino, app), (ino, rd), (other, oh)] {
        fs.release(&root(), i, h).unwrap();
    }
}

#[test]
fn concurrent_writers_to_disjoint_ranges() {
    let fs = Arc::new(fs());
    let (ino, fh) = create(&fs, "f");
    let per_thread = 1_000_000usize;
    let piece = 4107usize;
    let threads: Vec<_> = (0..8u8)
        .map(|t| {
            let fs = Arc::clone(&fs);
            std::thread::spawn(move || {
                let base = u64::from(t) * per_thread as u64;
                let mut done = 0usize;
                while done < per_thread {
                    let n = piece.min(per_thread - done);
                    let data: Vec<u8> = (0..n)
                        .map(|i| t.wrapping_mul(31).wrapping_add(((done + i) % 251) as u8))
                        .collect();
                    let h = if t % 2 == 0 { Some(fh) } else { None };
                    fs.write(&Ctx::root(), ino, h, base + done as u64, &data)
                        .unwrap();
                    done += n;
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let all = read_all(&fs, ino);
    assert_eq!(all.len(), 8 * per_thread);
    for (t, part) in all.chunks(per_thread).enumerate() {
        for (i, &b) in part.iter().enumerate() {
            let want = (t as u8).wrapping_mul(31).wrapping_add((i % 251) as u8);
            assert_eq!(b, want, "thread {t} byte {i}");
        }
    }
    fs.release(&root(), ino, fh).unwrap();
    assert_eq!(fs.used_bytes(), round_grain(8 * per_thread as u64));
}

#[test]
fn max_inodes_is_enforced() {
    let fs = fs_with(MemFsOptions {
        max_inodes: Some(3),
        ..Default::default()
    });
    fs.mkdir(&root(), Ino::ROOT, os("a"), 0o755).unwrap();
    fs.symlink(&root(), Ino::ROOT, os("b"), os("a")).unwrap();
    assert!(matches!(
        fs.mkdir(&root(), Ino::ROOT, os("c"), 0o755),
        Err(VfsError::NoSpace)
    ));
    assert!(matches!(
        fs.create(&root(), Ino::ROOT, os("c"), 0o644, RW),
        Err(VfsError::NoSpace)
    ));
    let st = fs.statfs(&root(), Ino::ROOT).unwrap();
    assert_eq!((st.files, st.ffree), (3, 0));
    fs.unlink(&root(), Ino::ROOT, os("b")).unwrap();
    fs.mknod(&root(), Ino::ROOT, os("c"), FileType::Fifo, 0o644, 0)
        .unwrap();
    // A hard link is not a new inode.
    let c = fs.lookup(&root(), Ino::ROOT, os("c")).unwrap();
    fs.link(&root(), c.ino, Ino::ROOT, os("d")).unwrap();
}

#[test]
fn inode_numbers_are_monotonic_and_root_options_apply() {
    let fs = fs_with(MemFsOptions {
        root_uid: 7,
        root_gid: 8,
        root_mode: 0o1777,
        ..Default::default()
    });
    let r = fs.getattr(&root(), Ino::ROOT, None).unwrap();
    assert_eq!((r.uid, r.gid, r.perm, r.nlink), (7, 8, 0o1777, 2));
    let a = fs.mkdir(&root(), Ino::ROOT, os("a"), 0o755).unwrap().ino;
    assert_eq!(a, Ino(2));
    fs.rmdir(&root(), Ino::ROOT, os("a")).unwrap();
    let b = fs.mkdir(&root(), Ino::ROOT, os("a"), 0o755).unwrap().ino;
    assert_eq!(b, Ino(3));
}

#[test]
fn read_only_rejects_every_change() {
    let fs = fs_with(MemFsOptions {
        read_only: true,
        ..Default::default()
    });
    let r = root();
    assert!(fs.open(&r, Ino::ROOT, OpenFlags::READ).is_ok());
    assert!(matches!(
        fs.create(&r, Ino::ROOT, os("f"), 0o644, RW),
        Err(VfsError::ReadOnly)
    ));
    assert!(matches!(
        fs.mkdir(&r, Ino::ROOT, os("d"), 0o755),
        Err(VfsError::ReadOnly)
    ));
    assert!(matches!(
        fs.unlink(&r, Ino::ROOT, os("d")),
        Err(VfsError::ReadOnly)
    ));
    assert!(matches!(
        fs.rmdir(&r, Ino::ROOT, os("d")),
        Err(VfsError::ReadOnly)
    ));
    assert!(matches!(
        fs.rename(
            &r,
            Ino::ROOT,
            os("a"),
            Ino::ROOT,
            os("b"),
            RenameFlags::empty()
        ),
        Err(VfsError::ReadOnly)
    ));
    assert!(matches!(
        fs.link(&r, Ino::ROOT, Ino::ROOT, os("x")),
        Err(VfsError::ReadOnly)
    ));
    assert!(matches!(
        fs.removexattr(&r, Ino::ROOT, os("user.x")),
        Err(VfsError::ReadOnly)
    ));
    assert!(matches!(
        fs.write(&r, Ino::ROOT, None, 0, b"x"),
        Err(VfsError::ReadOnly)
    ));
    assert!(matches!(
        fs.fallocate(&r, Ino::ROOT, None, 0, 1, FallocateFlags::empty()),
        Err(VfsError::ReadOnly)
    ));
    assert!(matches!(
        fs.access(&r, Ino::ROOT, AccessMask::WRITE),
        Err(VfsError::ReadOnly)
    ));
}

#[test]
fn xattr_namespaces_follow_linux() {
    let fs = fs();
    let d = fs.mkdir(&root(), Ino::ROOT, os("pub"), 0o777).unwrap().ino;
    let u = Ctx::with_groups(1000, 1000, &[]);
    let other = Ctx::with_groups(1001, 1001, &[]);
    let (f, fh) = fs.create(&u, d, os("f"), 0o644, RW).unwrap();
    fs.release(&u, f.ino, fh.fh).unwrap();
    let f = f.ino;
    let none = XattrFlags::empty();
    fs.setxattr(&u, f, os("user.a"), b"1", none).unwrap();
    assert!(matches!(
        fs.setxattr(&other, f, os("user.a"), b"2", none),
        Err(VfsError::PermissionDenied)
    ));
    assert_eq!(fs.getxattr(&other, f, os("user.a")).unwrap(), b"1");
    assert!(matches!(
        fs.setxattr(&u, f, os("trusted.t"), b"1", none),
        Err(VfsError::NotPermitted)
    ));
    fs.setxattr(&root(), f, os("trusted.t"), b"1", none)
        .unwrap();
    assert!(matches!(
        fs.getxattr(&u, f, os("trusted.t")),
        Err(VfsError::NoAttribute)
    ));
    assert_eq!(
        fs.listxattr(&u, f).unwrap(),
        vec![OsStr::new("user.a").to_owned()]
    );
    assert_eq!(fs.listxattr(&root(), f).unwrap().len(), 2);
    let l = fs.symlink(&u, d, os("l"), os("f")).unwrap().ino;
    assert!(matches!(
        fs.setxattr(&u, l, os("user.a"), b"1", none),
        Err(VfsError::NotPermitted)
    ));
    assert!(matches!(
        fs.getxattr(&u, l, os("user.a")),
        Err(VfsError::NoAttribute)
    ));
    fs.setxattr(&u, l, os("security.vmtest"), b"ctx", none)
        .unwrap();
    // No SELinux label, for anyone (see `is_selinux_label`).
    for who in [&u, &root()] {
        assert!(matches!(
            fs.setxattr(who, f, os("security.selinux"), b"ctx", none),
            Err(VfsError::NotSupported)
        ));
        assert!(matches!(
            fs.getxattr(who, f, os("security.selinux")),
            Err(VfsError::NotSupported)
        ));
        assert!(matches!(
            fs.removexattr(who, f, os("security.selinux")),
            Err(VfsError::NotSupported)
        ));
    }
    // No POSIX ACLs: the system namespace is unsupported for every call, owner or root.
    for name in [
        "system.posix_acl_access",
        "system.posix_acl_default",
        "system.x",
    ] {
        assert!(matches!(
            fs.getxattr(&root(), f, os(name)),
            Err(VfsError::NotSupported)
        ));
        assert!(matches!(
            fs.setxattr(&u, f, os(name), b"\x02\0\0\0", none),
            Err(VfsError::NotSupported)
        ));
        assert!(matches!(
            fs.removexattr(&root(), d, os(name)),
            Err(VfsError::NotSupported)
        ));
    }
    // Names without a Linux namespace (macOS style) are kept verbatim.
    fs.setxattr(&u, f, os("com.apple.FinderInfo"), b"fi", none)
        .unwrap();
    assert_eq!(
        fs.getxattr(&u, f, os("com.apple.FinderInfo")).unwrap(),
        b"fi"
    );
    assert!(matches!(fs.getxattr(&u, f, os("")), Err(VfsError::Range)));
    let used = fs.used_bytes();
    fs.removexattr(&u, f, os("user.a")).unwrap();
    assert_eq!(fs.used_bytes(), used - "user.a1".len() as u64);
    assert!(matches!(
        fs.removexattr(&u, f, os("user.a")),
        Err(VfsError::NoAttribute)
    ));
}

#[test]
fn permissions_on_namespace_and_io() {
    let fs = fs();
    let u = Ctx::with_groups(1000, 1000, &[]);
    let d = fs
        .mkdir(&root(), Ino::ROOT, os("private"), 0o700)
        .unwrap()
        .ino;
    let (f, h) = fs.create(&root(), d, os("f"), 0o600, RW).unwrap();
    fs.release(&root(), f.ino, h.fh).unwrap();
    assert!(matches!(
        fs.lookup(&u, d, os("f")),
        Err(VfsError::PermissionDenied)
    ));
    assert!(matches!(
        fs.create(&u, d, os("g"), 0o644, RW),
        Err(VfsError::PermissionDenied)
    ));
    assert!(matches!(
        fs.unlink(&u, d, os("f")),
        Err(VfsError::PermissionDenied)
    ));
    assert!(matches!(
        fs.opendir(&u, d, OpenFlags::READ),
        Err(VfsError::PermissionDenied)
    ));
    assert!(matches!(
        fs.open(&u, f.ino, OpenFlags::READ),
        Err(VfsError::PermissionDenied)
    ));
    // Root needs an x bit to execute a file, never to search a directory.
    assert!(matches!(
        fs.access(&root(), f.ino, AccessMask::EXEC),
        Err(VfsError::PermissionDenied)
    ));
    fs.access(
        &root(),
        d,
        AccessMask::EXEC | AccessMask::WRITE | AccessMask::READ,
    )
    .unwrap();
    // Group membership through supplementary groups.
    let set = SetAttr {
        gid: Some(50),
        mode: Some(0o750),
        ..SetAttr::default()
    };
    fs.setattr(&root(), d, &set, None).unwrap();
    let member = Ctx::with_groups(1000, 1000, &[50]);
    fs.lookup(&member, d, os("f")).unwrap();
    assert!(matches!(
        fs.lookup(&u, d, os("f")),
        Err(VfsError::PermissionDenied)
    ));
    // The owner may chgrp only to a group it is in.
    let set = SetAttr {
        uid: Some(1000),
        ..SetAttr::default()
    };
    fs.setattr(&root(), f.ino, &set, None).unwrap();
    let chgrp = |g| SetAttr {
        gid: Some(g),
        ..SetAttr::default()
    };
    fs.setattr(&member, f.ino, &chgrp(50), None).unwrap();
    assert!(matches!(
        fs.setattr(&member, f.ino, &chgrp(51), None),
        Err(VfsError::NotPermitted)
    ));
}

#[test]
fn rename_moves_directories_and_refuses_loops() {
    let fs = fs();
    let r = root();
    let a = fs.mkdir(&r, Ino::ROOT, os("a"), 0o755).unwrap().ino;
    let b = fs.mkdir(&r, a, os("b"), 0o755).unwrap().ino;
    let c = fs.mkdir(&r, b, os("c"), 0o755).unwrap().ino;
    let none = RenameFlags::empty();
    assert!(matches!(
        fs.rename(&r, Ino::ROOT, os("a"), c, os("a"), none),
        Err(VfsError::InvalidArgument)
    ));
    assert!(matches!(
        fs.rename(&r, Ino::ROOT, os("a"), a, os("x"), none),
        Err(VfsError::InvalidArgument)
    ));
    // Target an ancestor of the source: not empty.
    assert!(matches!(
        fs.rename(&r, b, os("c"), Ino::ROOT, os("a"), none),
        Err(VfsError::NotEmpty)
    ));
    fs.rename(&r, b, os("c"), Ino::ROOT, os("c"), none).unwrap();
    assert_eq!(fs.getattr(&r, b, None).unwrap().nlink, 2);
    assert_eq!(fs.getattr(&r, Ino::ROOT, None).unwrap().nlink, 4);
    // Now b may move under c, and the exchange of a and c swaps the subtrees.
    fs.rename(&r, a, os("b"), c, os("b"), none).unwrap();
    assert!(matches!(
        fs.rename(&r, Ino::ROOT, os("c"), c, os("b"), RenameFlags::EXCHANGE),
        Err(VfsError::InvalidArgument)
    ));
    let e = fs.mkdir(&r, Ino::ROOT, os("e"), 0o755).unwrap().ino;
    fs.rename(&r, Ino::ROOT, os("e"), c, os("b"), RenameFlags::EXCHANGE)
        .unwrap();
    assert_eq!(fs.lookup(&r, c, os("b")).unwrap().ino, e);
    assert_eq!(fs.lookup(&r, Ino::ROOT, os("e")).unwrap().ino, b);
    // Moved directories have their parent pointers updated: this is not a loop any more.
    fs.rename(&r, Ino::ROOT, os("a"), b, os("a"), none).unwrap();
    assert!(matches!(
        fs.rename(&r, Ino::ROOT, os("e"), a, os("e"), none),
        Err(VfsError::InvalidArgument)
    ));
}

#[test]
fn opposite_directory_renames_do_not_deadlock() {
    let fs = Arc::new(fs());
    let r = root();
    let a = fs.mkdir(&r, Ino::ROOT, os("a"), 0o755).unwrap().ino;
    let b = fs.mkdir(&r, Ino::ROOT, os("b"), 0o755).unwrap().ino;
    for i in 0..8 {
        fs.mkdir(&r, a, os(&format!("d{i}")), 0o755).unwrap();
    }
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let fs = Arc::clone(&fs);
            std::thread::spawn(move || {
                let r = Ctx::root();
                for n in 0..2000 {
                    let name = format!("d{}", (n + t) % 8);
                    let (from, to) = if (n + t) % 2 == 0 { (a, b) } else { (b, a) };
                    let _ = fs.rename(&r, from, os(&name), to, os(&name), RenameFlags::empty());
                    let _ = fs.rename(&r, from, os("a"), to, os(&name), RenameFlags::EXCHANGE);
                    let _ = fs.rmdir(&r, to, os("nonexistent"));
                    let _ = fs.getattr(&r, from, None);
                }
            })
        })
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !threads.iter().all(|t| t.is_finished()) {
        assert!(std::time::Instant::now() < deadline, "renames deadlocked");
        std::thread::sleep(Duration::from_millis(10));
    }
    for t in threads {
        t.join().unwrap();
    }
    let na = fs.getattr(&r, a, None).unwrap().nlink;
    let nb = fs.getattr(&r, b, None).unwrap().nlink;
    assert_eq!(na + nb, 4 + 8, "every subdirectory counted exactly once");
}

#[test]
fn big_directories_page_in_linear_time() {
    let fs = fs();
    let r = root();
    let d = fs.mkdir(&r, Ino::ROOT, os("big"), 0o755).unwrap().ino;
    for i in 0..100_000 {
        fs.mknod(&r, d, os(&format!("n{i}")), FileType::RegularFile, 0o644, 0)
            .unwrap();
    }
    let mut after = 0;
    let mut total = 0;
    loop {
        let mut sink = VecSink {
            limit: Some(100),
            plus: true,
            ..VecSink::default()
        };
        fs.readdir(&r, d, None, after, &mut sink).unwrap();
        let Some(last) = sink.entries.last() else {
            break;
        };
        assert!(
            sink.entries
                .iter()
                .all(|e| e.attr.is_some_and(|a| a.ino == e.ino))
        );
        after = last.cookie;
        total += sink.entries.len();
    }
    assert_eq!(total, 100_000);
    assert!(after < 1 << 63);
    for i in (0..100_000).step_by(3) {
        fs.unlink(&r, d, os(&format!("n{i}"))).unwrap();
    }
    assert_eq!(fs.inode_count(), 2 + 100_000 - 33_334);
}

/// A small xorshift generator: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Some directory reached by a short random walk from the root.
fn random_dir(fs: &MemFs, rng: &mut Rng) -> Ino {
    let r = root();
    let mut dir = Ino::ROOT;
    for _ in 0..rng.next(4) {
        let mut sink = VecSink::default();
        if fs.readdir(&r, dir, None, 0, &mut sink).is_err() {
            break;
        }
        let dirs: Vec<_> = sink
            .entries
            .iter()
            .filter(|e| e.kind == FileType::Directory)
            .collect();
        if dirs.is_empty() {
            break;
        }
        dir = dirs[rng.next(dirs.len() as u64) as usize].ino;
    }
    dir
}

#[test]
fn mixed_concurrent_namespace_changes_keep_invariants() {
    let fs = Arc::new(fs());
    let threads: Vec<_> = (0..6u64)
        .map(|t| {
            let fs = Arc::clone(&fs);
            std::thread::spawn(move || {
                let r = Ctx::root();
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (t + 1));
                for _ in 0..3000 {
                    let a = random_dir(&fs, &mut rng);
                    let b = random_dir(&fs, &mut rng);
                    let n1 = format!("n{}", rng.next(6));
                    let n2 = format!("n{}", rng.next(6));
                    let (n1, n2) = (os(&n1), os(&n2));
                    match rng.next(9) {
                        0 => drop(fs.mkdir(&r, a, n1, 0o755)),
                        1 => drop(fs.rmdir(&r, a, n1)),
                        2 => {
                            if let Ok((attr, o)) = fs.create(&r, a, n1, 0o644, RW) {
                                let _ =
                                    fs.write(&r, attr.ino, Some(o.fh), rng.next(1 << 20), b"data");
                                fs.release(&r, attr.ino, o.fh).unwrap();
                            }
                        }
                        3 => drop(fs.unlink(&r, a, n1)),
                        4 => drop(fs.rename(&r, a, n1, b, n2, RenameFlags::empty())),
                        5 => drop(fs.rename(&r, a, n1, b, n2, RenameFlags::EXCHANGE)),
                        6 => {
                            if let Ok(attr) = fs.lookup(&r, a, n1) {
                                let _ = fs.link(&r, attr.ino, b, n2);
                            }
                        }
                        7 => {
                            let mut sink = VecSink {
                                plus: true,
                                ..VecSink::default()
                            };
                            let _ = fs.readdir(&r, a, None, 0, &mut sink);
                        }
                        _ => drop(fs.rename(&r, a, n1, b, n2, RenameFlags::NOREPLACE)),
                    }
                }
            })
        })
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !threads.iter().all(|t| t.is_finished()) {
        assert!(std::time::Instant::now() < deadline, "deadlock");
        std::thread::sleep(Duration::from_millis(10));
    }
    for t in threads {
        t.join().unwrap();
    }

    // Walk the tree: every directory's nlink is 2 + subdirectories, every file's nlink is
    // its number of names, every live inode is reachable, and the bytes add up.
    let r = root();
    let mut names_of = std::collections::HashMap::<Ino, u32>::new();
    let mut stack = vec![Ino::ROOT];
    let mut dirs = 1u64;
    let mut held = 0u64;
    while let Some(dir) = stack.pop() {
        let mut sink = VecSink {
            plus: true,
            ..VecSink::default()
        };
        fs.readdir(&r, dir, None, 0, &mut sink).unwrap();
        let subdirs = sink
            .entries
            .iter()
            .filter(|e| e.kind == FileType::Directory)
            .count() as u32;
        assert_eq!(
            fs.getattr(&r, dir, None).unwrap().nlink,
            2 + subdirs,
            "{dir:?}"
        );
        for e in sink.entries {
            let attr = e.attr.unwrap();
            if e.kind == FileType::Directory {
                assert_eq!(fs.getattr(&r, e.ino, None).unwrap().ino, e.ino);
                stack.push(e.ino);
                dirs += 1;
            } else {
                let seen = names_of.entry(e.ino).or_insert(0);
                if *seen == 0 {
                    held += attr.blocks * 512;
                }
                *seen += 1;
            }
        }
    }
    for (ino, names) in &names_of {
        assert_eq!(fs.getattr(&r, *ino, None).unwrap().nlink, *names, "{ino:?}");
    }
    println!("{dirs} directories, {} other inodes", names_of.len());
    assert_eq!(fs.inode_count(), dirs + names_of.len() as u64);
    // `blocks` rounds each file's bytes up to 512.
    let files = names_of.len() as u64;
    let used = fs.used_bytes();
    assert!(
        used <= held && held < used + 512 * files.max(1),
        "{used} {held}"
    );
}

/// A read that starts inside a chunk but past the bytes that chunk stores (the rest of
/// the chunk is a hole below EOF) returns zeros; fsx found this panicking.
#[test]
fn read_past_stored_part_of_a_chunk_is_zeros() {
    let fs = fs();
    let (ino, fh) = create(&fs, "f");
    fs.write(&root(), ino, Some(fh), 0, &[7u8; 7045]).unwrap();
    let set = SetAttr {
        size: Some(200 * 1024),
        ..Default::default()
    };
    fs.setattr(&root(), ino, &set, Some(fh)).unwrap();
    let mut buf = vec![0xEE; 8192];
    assert_eq!(
        fs.read(&root(), ino, Some(fh), 61440, &mut buf).unwrap(),
        8192
    );
    assert!(buf.iter().all(|&b| b == 0));
    let mut buf = vec![0xEE; 16];
    assert_eq!(fs.read(&root(), ino, Some(fh), 7040, &mut buf).unwrap(), 16);
    assert_eq!(&buf[..5], &[7u8; 5]);
    assert!(buf[5..].iter().all(|&b| b == 0));
}

/// Random writes, truncates, hole punches and reads against a plain `Vec<u8>` model,
/// around chunk boundaries, checked after every step.
#[test]
fn random_operations_match_a_flat_model() {
    let fs = fs();
    let (ino, fh) = create(&fs, "model");
    let mut model: Vec<u8> = Vec::new();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let span = 3 * CHUNK + 5000;
    for step in 0..3000u32 {
        let off = next(span);
        let len = next(2 * CHUNK / 3) + 1;
        match next(10) {
            0..=3 => {
                let byte = (step % 251) as u8 + 1;
                let data = vec![byte; len as usize];
                fs.write(&root(), ino, Some(fh), off, &data).unwrap();
                let end = (off + len) as usize;
                if model.len() < end {
                    model.resize(end, 0);
                }
                model[off as usize..end].fill(byte);
            }
            4 => {
                let set = SetAttr {
                    size: Some(off),
                    ..Default::default()
                };
                fs.setattr(&root(), ino, &set, Some(fh)).unwrap();
                model.resize(off as usize, 0);
            }
            5 => {
                let mode = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
                fs.fallocate(&root(), ino, Some(fh), off, len, mode)
                    .unwrap();
                let end = ((off + len) as usize).min(model.len());
                if (off as usize) < end {
                    model[off as usize..end].fill(0);
                }
            }
            6 => fs.flush(&root(), ino, fh, 0).unwrap(),
            _ => {
                let mut buf = vec![0xEE; len as usize];
                let n = fs.read(&root(), ino, Some(fh), off, &mut buf).unwrap();
                let want = model
                    .get(off as usize..)
                    .map_or(&[][..], |t| &t[..t.len().min(len as usize)]);
                assert_eq!(&buf[..n], want, "step {step}: read {len} at {off}");
            }
        }
        if next(10) == 0 {
            let mut buf = vec![0xEE; model.len() + 1];
            let n = fs.read(&root(), ino, Some(fh), 0, &mut buf).unwrap();
            assert_eq!(&buf[..n], &model[..], "step {step}: whole file");
        }
    }
}

/// Writes, truncates and chowns drop `security.capability` (as Linux's
/// `file_remove_privs` does for any writer) and give its bytes back; other xattrs stay.
#[test]
fn writes_truncates_and_chowns_drop_file_capabilities() {
    let fs = fs();
    let (ino, fh) = create(&fs, "f");
    let caps = os("security.capability");
    let set_caps = || {
        fs.setxattr(&root(), ino, caps, &[1; 20], XattrFlags::empty())
            .unwrap();
    };
    fs.setxattr(&root(), ino, os("user.keep"), b"v", XattrFlags::empty())
        .unwrap();
    let baseline = fs.used_bytes();
    set_caps();
    assert!(fs.used_bytes() > baseline);
    fs.write(&root(), ino, Some(fh), 0, b"x").unwrap();
    assert!(
        matches!(fs.getxattr(&root(), ino, caps), Err(VfsError::NoAttribute)),
        "a write drops file capabilities, even root's"
    );
    set_caps();
    let trunc = SetAttr {
        size: Some(0),
        ..SetAttr::default()
    };
    fs.setattr(&root(), ino, &trunc, Some(fh)).unwrap();
    assert!(matches!(
        fs.getxattr(&root(), ino, caps),
        Err(VfsError::NoAttribute)
    ));
    set_caps();
    let chown = SetAttr {
        uid: Some(7),
        ..SetAttr::default()
    };
    fs.setattr(&root(), ino, &chown, None).unwrap();
    assert!(matches!(
        fs.getxattr(&root(), ino, caps),
        Err(VfsError::NoAttribute)
    ));
    assert_eq!(fs.getxattr(&root(), ino, os("user.keep")).unwrap(), b"v");
    assert_eq!(
        fs.used_bytes(),
        baseline,
        "the capability's bytes are given back"
    );
    fs.release(&root(), ino, fh).unwrap();
}

#[cfg(target_os = "linux")]
/// A memfs with kernel-held contents, or `None` (saying so) where this process cannot
/// make the private tmpfs (not Linux, not root). On Linux CI as root it must work.
fn kernel_fs(opts: MemFsOptions) -> Option<MemFs> {
    let fs = MemFs::new(MemFsOptions {
        kernel_data: true,
        ..opts
    });
    if fs.kernel_data() {
        return Some(fs);
    }
    #[cfg(unix)]
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    #[cfg(not(unix))]
    let root = false;
    assert!(
        !(cfg!(target_os = "linux") && root && std::env::var_os("CI").is_some()),
        "root on Linux CI must get memfs's private tmpfs"
    );
    eprintln!("skipping: kernel-held memfs contents need Linux and root");
    None
}

#[cfg(target_os = "linux")]
#[test]
fn kernel_data_falls_back_to_the_heap_when_descriptors_run_out() {
    let Some(fs) = kernel_fs(MemFsOptions::default()) else {
        return;
    };
    let store = fs.host.clone().unwrap();
    store.set_budget(1);
    let (a, fa) = create(&fs, "a");
    let (b, fb) = create(&fs, "b");
    assert!(
        fs.get(a).unwrap().host.is_some(),
        "the first file gets a host file"
    );
    assert!(fs.get(b).unwrap().host.is_none(), "past the budget: heap");
    for (ino, fh) in [(a, fa), (b, fb)] {
        assert_eq!(fs.write(&root(), ino, Some(fh), 0, b"hello").unwrap(), 5);
        assert_eq!(fs.write(&root(), ino, Some(fh), 10, b"x").unwrap(), 1);
        let mut want = b"hello".to_vec();
        want.extend_from_slice(&[0; 5]);
        want.push(b'x');
        assert_eq!(read_all(&fs, ino), want);
        assert_eq!(fs.getattr(&root(), ino, None).unwrap().size, 11);
    }
    // Between a heap file and a host file, copies are left to the caller.
    assert!(matches!(
        fs.copy_file_range(&root(), a, Some(fa), 0, b, Some(fb), 0, 5),
        Err(VfsError::CrossDevice)
    ));
    // Both ways of counting memory show up in used_bytes and statfs.
    assert!(fs.used_bytes() >= 4096, "{}", fs.used_bytes());
    let st = fs.statfs(&root(), Ino::ROOT).unwrap();
    assert!(st.bfree < st.blocks);
    // Freeing the host file gives its descriptor back.
    fs.release(&root(), a, fa).unwrap();
    fs.unlink(&root(), Ino::ROOT, os("a")).unwrap();
    assert_eq!(store.budget(), 1);
    let (c, _) = create(&fs, "c");
    assert!(fs.get(c).unwrap().host.is_some());
}

#[cfg(target_os = "linux")]
#[test]
fn kernel_data_keeps_the_size_limit_and_passthrough_rules() {
    let Some(fs) = kernel_fs(MemFsOptions {
        size_limit: Some(1 << 20),
        ..MemFsOptions::default()
    }) else {
        return;
    };
    let (a, fa) = create(&fs, "a");
    let chunk = vec![7u8; 256 << 10];
    let mut written = 0;
    let err = loop {
        match fs.write(&root(), a, Some(fa), written, &chunk) {
            Ok(n) => written += u64::from(n),
            Err(e) => break e,
        }
        assert!(
            written <= 1 << 20,
            "wrote {written} bytes past a 1 MiB limit"
        );
    };
    assert!(matches!(err, VfsError::NoSpace), "{err:?}");
    // Space comes back with the data.
    fs.setattr(
        &root(),
        a,
        &SetAttr {
            size: Some(0),
            ..SetAttr::default()
        },
        Some(fa),
    )
    .unwrap();
    fs.write(&root(), a, Some(fa), 0, &chunk).unwrap();

    // Passthrough: root writers and every reader; not a non-root writer of a setuid file,
    // nor any writer of a file with file capabilities (memfs must drop those itself).
    assert!(fs.passthrough_fd(a, fa).is_some());
    let user = Ctx::new(1000, 1000, 0);
    fs.setattr(
        &root(),
        a,
        &SetAttr {
            mode: Some(0o4777),
            ..SetAttr::default()
        },
        None,
    )
    .unwrap();
    let w = fs.open(&user, a, OpenFlags::WRITE).unwrap().fh;
    assert!(fs.passthrough_fd(a, w).is_none());
    let r = fs.open(&user, a, OpenFlags::READ).unwrap().fh;
    assert!(fs.passthrough_fd(a, r).is_some());
    fs.setxattr(
        &root(),
        a,
        os("security.capability"),
        b"\x01\x00\x00\x02",
        XattrFlags::empty(),
    )
    .unwrap();
    let rw = fs.open(&root(), a, RW).unwrap().fh;
    assert!(fs.passthrough_fd(a, rw).is_none());
}

/// `read_fd` hands out the host file of kernel-held data only, and counts as a read.
#[cfg(target_os = "linux")]
#[test]
fn read_fd_is_the_host_file_and_marks_an_access() {
    assert!(
        fs().read_fd(Ino::ROOT).is_none(),
        "heap memfs has no host files"
    );
    let Some(fs) = kernel_fs(MemFsOptions::default()) else {
        return;
    };
    let (a, fa) = create(&fs, "a");
    fs.write(&root(), a, Some(fa), 0, b"spliced bytes").unwrap();
    let past = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    let at_past = SetAttr {
        atime: Some(SetTime::At(past)),
        ..SetAttr::default()
    };
    fs.setattr(&root(), a, &at_past, None).unwrap();
    let f = std::fs::File::from(fs.read_fd(a).expect("a host file"));
    let mut buf = [0u8; 5];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut buf, 8).unwrap();
    assert_eq!(&buf, b"bytes");
    assert!(
        fs.getattr(&root(), a, None).unwrap().atime > past,
        "atime marked"
    );
    assert!(fs.read_fd(Ino::ROOT).is_none(), "a directory");
    fs.unlink(&root(), Ino::ROOT, os("a")).unwrap();
    fs.release(&root(), a, fa).unwrap();
    fs.forget(a, 1);
    assert!(fs.read_fd(a).is_none(), "a freed inode");
}

#[cfg(target_os = "linux")]
#[test]
fn kernel_data_times_follow_writes_the_daemon_never_saw() {
    let Some(fs) = kernel_fs(MemFsOptions::default()) else {
        return;
    };
    let (a, fa) = create(&fs, "a");
    fs.write(&root(), a, Some(fa), 0, b"abc").unwrap();
    let past = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    fs.setattr(
        &root(),
        a,
        &SetAttr {
            mtime: Some(SetTime::At(past)),
            ..SetAttr::default()
        },
        None,
    )
    .unwrap();
    assert_eq!(fs.getattr(&root(), a, None).unwrap().mtime, past);
    // A write straight to the host file, as FUSE passthrough makes one.
    let fd = fs.passthrough_fd(a, fa).unwrap();
    let f = std::fs::File::from(fd);
    std::os::unix::fs::FileExt::write_all_at(&f, b"0123456789", 100).unwrap();
    let attr = fs.getattr(&root(), a, None).unwrap();
    assert_eq!(attr.size, 110);
    assert!(attr.mtime > past + Duration::from_secs(3600));
    assert!(attr.blocks > 0);
    let mut buf = [0u8; 10];
    assert_eq!(fs.read(&root(), a, Some(fa), 100, &mut buf).unwrap(), 10);
    assert_eq!(&buf, b"0123456789");
    // An append through memfs lands after the passthrough bytes.
    let ap = fs
        .open(&root(), a, OpenFlags::WRITE | OpenFlags::APPEND)
        .unwrap()
        .fh;
    fs.write(&root(), a, Some(ap), 0, b"!").unwrap();
    assert_eq!(fs.getattr(&root(), a, None).unwrap().size, 111);
    assert_eq!(
        fs.lseek(&root(), a, Some(fa), 0, Whence::Data).unwrap(),
        0,
        "data at the start"
    );
}

/// Waits up to 10 s for `done` (the memfs helper thread works asynchronously).
#[cfg(target_os = "linux")]
fn eventually(done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !done() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits for the store's (ready, closing) spare counts to become `want`, then checks them.
#[cfg(target_os = "linux")]
fn settle_spares(store: &super::host::HostStore, want: (usize, usize)) {
    eventually(|| store.spares() == want);
    assert_eq!(store.spares(), want, "(ready, closing)");
}

/// Releases every handle of `made` (files `{prefix}{i}` in the root) and unlinks them.
#[cfg(target_os = "linux")]
fn release_and_unlink(fs: &MemFs, made: &[(Ino, Fh)], prefix: &str) {
    for (i, (ino, fh)) in made.iter().enumerate() {
        fs.release(&root(), *ino, *fh).unwrap();
        fs.unlink(&root(), Ino::ROOT, os(&format!("{prefix}{i}")))
            .unwrap();
    }
}

/// Fresh host files are made ahead by the helper, emptied ones closed by it in batches,
/// and every descriptor comes back to the budget; a file holding data is closed by the
/// unlink itself, so its space is free when the unlink returns.
#[cfg(target_os = "linux")]
#[test]
fn kernel_data_spares_and_batched_closes_keep_the_books() {
    let Some(fs) = kernel_fs(MemFsOptions::default()) else {
        return;
    };
    let store = fs.host.clone().unwrap();
    let settle = |want| settle_spares(&store, want);
    settle((super::host::SPARES, 0));
    let budget = store.budget();
    let made: Vec<_> = (0..1000).map(|i| create(&fs, &format!("e{i}"))).collect();
    assert!(
        made.iter()
            .all(|(ino, _)| fs.get(*ino).unwrap().host.is_some())
    );
    release_and_unlink(&fs, &made, "e");
    settle((super::host::SPARES, 0));
    assert_eq!(store.budget(), budget, "every descriptor is back");
    // Data: the space is free as soon as the unlink returns.
    let (f, fh) = create(&fs, "big");
    fs.write(&root(), f, Some(fh), 0, &vec![7u8; 4 << 20])
        .unwrap();
    fs.release(&root(), f, fh).unwrap();
    assert!(store.used() >= 4 << 20);
    fs.unlink(&root(), Ino::ROOT, os("big")).unwrap();
    assert!(store.used() < 1 << 20, "{} bytes still held", store.used());
    // With max_inodes there are no spares: they would take the limit's inodes.
    let Some(limited) = kernel_fs(MemFsOptions {
        max_inodes: Some(100),
        ..MemFsOptions::default()
    }) else {
        return;
    };
    assert_eq!(limited.host.clone().unwrap().spares(), (0, 0));
}

/// A create that finds no spare file and no budget left while the helper is making a
/// file from the last of it waits for that file instead of keeping its bytes on the heap.
#[cfg(target_os = "linux")]
#[test]
fn kernel_data_create_waits_for_the_spare_being_made() {
    let Some(fs) = kernel_fs(MemFsOptions::default()) else {
        return;
    };
    let store = fs.host.clone().unwrap();
    store.set_budget(1);
    store.slow_helper(300);
    eventually(|| store.making());
    assert!(store.making(), "the helper never started making a spare");
    let (a, _) = create(&fs, "a");
    assert!(
        fs.get(a).unwrap().host.is_some(),
        "the create fell back to the heap while the last descriptor was being made"
    );
    store.slow_helper(0);
    let (b, _) = create(&fs, "b");
    assert!(fs.get(b).unwrap().host.is_none(), "past the budget: heap");
    assert_eq!(store.budget(), 0);
}

/// The helper thread ends with its filesystem.
#[cfg(target_os = "linux")]
#[test]
fn kernel_data_helper_ends_with_the_filesystem() {
    let Some(fs) = kernel_fs(MemFsOptions::default()) else {
        return;
    };
    let helper = fs
        .host
        .as_ref()
        .unwrap()
        .take_helper()
        .expect("a helper thread");
    create(&fs, "f");
    drop(fs);
    eventually(|| helper.is_finished());
    assert!(helper.is_finished(), "the helper outlived its filesystem");
    helper.join().unwrap();
}

/// A registry that, like the kernel, keeps each registered file open until it is
/// unregistered, and fails the test on an id ended twice or never given.
#[cfg(target_os = "linux")]
#[derive(Default)]
struct FakeRegistry {
    live: parking_lot::Mutex<std::collections::HashMap<u32, std::os::fd::OwnedFd>>,
    next: std::sync::atomic::AtomicU32,
    calls: std::sync::atomic::AtomicU32,
    fail: bool,
}

#[cfg(target_os = "linux")]
impl BackingRegistry for FakeRegistry {
    fn register(&self, fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<u32> {
        use std::sync::atomic::Ordering::Relaxed;
        self.calls.fetch_add(1, Relaxed);
        if self.fail {
            return Err(std::io::Error::from_raw_os_error(libc::EPERM));
        }
        let id = self.next.fetch_add(1, Relaxed) + 1;
        self.live.lock().insert(id, fd.try_clone_to_owned()?);
        Ok(id)
    }
    fn unregister(&self, id: u32) {
        assert!(
            self.live.lock().remove(&id).is_some(),
            "id {id} ended twice or never given"
        );
    }
}

/// With a registry (a FUSE mount doing passthrough), the helper registers files before
/// they are handed out: a create's handle has a backing id at once, spares made before the
/// registry came are registered too, deleted files are unregistered (a file holding data
/// before its last descriptor closes, so that its space is back when the unlink returns),
/// and so is every spare when the filesystem goes. A registry that fails is not asked
/// again, and opens fall back to a descriptor.
#[cfg(target_os = "linux")]
#[test]
fn kernel_data_files_are_registered_ahead_and_unregistered_before_close() {
    let Some(fs) = kernel_fs(MemFsOptions::default()) else {
        return;
    };
    let store = fs.host.clone().unwrap();
    let settle = |want| settle_spares(&store, want);
    settle((super::host::SPARES, 0));
    let reg = Arc::new(FakeRegistry::default());
    assert!(fs.use_backing_registry(reg.clone()));
    let second = Arc::new(FakeRegistry::default());
    assert!(
        !fs.use_backing_registry(second.clone()),
        "a second connection's registry is declined"
    );
    let live = || reg.live.lock().len();
    eventually(|| live() == super::host::SPARES);
    assert_eq!(
        live(),
        super::host::SPARES,
        "spares made before the registry"
    );
    let (a, fa) = create(&fs, "a");
    let id = fs.backing_id(a, fa).expect("a registered spare");
    assert!(reg.live.lock().contains_key(&id));
    assert!(fs.passthrough_fd(a, fa).is_some());
    fs.release(&root(), a, fa).unwrap();
    assert_eq!(fs.backing_id(a, fa), None, "released handle");

    // Data: unregistered and closed by the unlink, so the space is back at once (the
    // registry holds the file open like the kernel does).
    let (f, fh) = create(&fs, "big");
    let big = fs.backing_id(f, fh).unwrap();
    fs.write(&root(), f, Some(fh), 0, &vec![7u8; 4 << 20])
        .unwrap();
    fs.release(&root(), f, fh).unwrap();
    fs.unlink(&root(), Ino::ROOT, os("big")).unwrap();
    assert!(store.used() < 1 << 20, "{} bytes still held", store.used());
    assert!(!reg.live.lock().contains_key(&big));

    // Empty files: unregistered by the helper with their batched close. (Creates that
    // outrun the helper get files made on the spot, unregistered.)
    let made: Vec<_> = (0..1000).map(|i| create(&fs, &format!("e{i}"))).collect();
    let registered = made
        .iter()
        .filter(|(ino, fh)| fs.backing_id(*ino, *fh).is_some())
        .count();
    assert!(
        registered >= super::host::SPARES / 2,
        "{registered} registered"
    );
    release_and_unlink(&fs, &made, "e");
    settle((super::host::SPARES, 0));
    // The spares and "a".
    eventually(|| live() == super::host::SPARES + 1);
    assert_eq!(
        live(),
        super::host::SPARES + 1,
        "deleted files still registered"
    );
    drop(store);
    drop(fs);
    // The helper holds the store while it works (a close batch waits a moment), so the
    // store's drop, which ends the registrations, may run on the helper when it lets go.
    eventually(|| live() == 0);
    assert_eq!(live(), 0, "registrations outlived the filesystem");
    assert_eq!(second.calls.load(std::sync::atomic::Ordering::Relaxed), 0);

    let Some(fs) = kernel_fs(MemFsOptions::default()) else {
        return;
    };
    let failing = Arc::new(FakeRegistry {
        fail: true,
        ..FakeRegistry::default()
    });
    assert!(fs.use_backing_registry(failing.clone()));
    let (b, fb) = create(&fs, "b");
    eventually(|| failing.calls.load(std::sync::atomic::Ordering::Relaxed) > 0);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(fs.backing_id(b, fb), None);
    assert!(
        fs.passthrough_fd(b, fb).is_some(),
        "opens register a descriptor"
    );
    assert_eq!(
        failing.calls.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "asked again after failing"
    );
}

/// Linux FUSE with the writeback cache sends the kernel's own mtime and ctime, taken from
/// one clock reading: such an mtime is "now" for permission and kept exactly, an mtime
/// that does not change anything needs nothing, and an explicit one still needs the owner.
#[test]
fn times_kept_by_the_kernel_are_checked_as_now() {
    let fs = fs();
    let (ino, fh) = create(&fs, "f");
    fs.release(&root(), ino, fh).unwrap();
    let set_mode = |mode| SetAttr {
        mode: Some(mode),
        ..SetAttr::default()
    };
    fs.setattr(&root(), ino, &set_mode(0o666), None).unwrap();
    let user = Ctx::new(1000, 1000, 0);
    let t = std::time::UNIX_EPOCH + Duration::new(1_800_000_000, 123_456_789);
    let kernel = |mtime| SetAttr {
        mtime: Some(SetTime::At(mtime)),
        ctime: Some(t),
        ..SetAttr::default()
    };

    // A writer's touch or flushed write: allowed, and the kernel's value is kept.
    let a = fs.setattr(&user, ino, &kernel(t), None).unwrap();
    assert_eq!((a.mtime, a.ctime), (t, t));
    // The same mtime again with a later ctime (a rename's ctime being flushed) changes
    // nothing, so even a reader may send it.
    fs.setattr(&root(), ino, &set_mode(0o644), None).unwrap();
    let later = SetAttr {
        mtime: Some(SetTime::At(t)),
        ctime: Some(t + Duration::from_secs(1)),
        ..SetAttr::default()
    };
    let a = fs.setattr(&user, ino, &later, None).unwrap();
    assert_eq!(a.ctime, t + Duration::from_secs(1));
    // "Now" without write access is refused, unless through a handle open for writing
    // (the file's mode changed after the writer opened it).
    let now = SetAttr {
        mtime: Some(SetTime::At(t + Duration::from_secs(2))),
        ctime: Some(t + Duration::from_secs(2)),
        ..SetAttr::default()
    };
    assert!(matches!(
        fs.setattr(&user, ino, &now, None).unwrap_err(),
        VfsError::PermissionDenied
    ));
    fs.setattr(&root(), ino, &set_mode(0o666), None).unwrap();
    let w = fs.open(&user, ino, OpenFlags::WRITE).unwrap().fh;
    fs.setattr(&root(), ino, &set_mode(0o644), None).unwrap();
    fs.setattr(&user, ino, &now, Some(w)).unwrap();
    fs.release(&user, ino, w).unwrap();
    // An explicit mtime (not the ctime sent with it, not the current one) needs the owner.
    fs.setattr(&root(), ino, &set_mode(0o666), None).unwrap();
    let explicit = kernel(std::time::UNIX_EPOCH + Duration::from_secs(5));
    assert!(matches!(
        fs.setattr(&user, ino, &explicit, None).unwrap_err(),
        VfsError::NotPermitted
    ));
    let a = fs.setattr(&root(), ino, &explicit, None).unwrap();
    assert_eq!(a.mtime, std::time::UNIX_EPOCH + Duration::from_secs(5));
    // Without a ctime nothing changes: an explicit time is the owner's to set.
    let plain = SetAttr {
        mtime: Some(SetTime::At(t)),
        ..SetAttr::default()
    };
    assert!(matches!(
        fs.setattr(&user, ino, &plain, None).unwrap_err(),
        VfsError::NotPermitted
    ));
}
