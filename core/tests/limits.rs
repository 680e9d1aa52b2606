//! The edges of the trait's number and name space, against memfs and loopback: sizes and
//! offsets at and past 2^63, reads past the end, zero-length I/O, and every kind of bad
//! name. Each case must give the exact error (or the exact short result) and must not
//! allocate anything near the size asked for: memfs's held bytes are checked after every
//! huge request, loopback's host blocks likewise.

use std::ffi::OsStr;
use std::sync::Arc;

use vmount_core::memfs::{MemFs, MemFsOptions};
use vmount_core::{Attr, Ctx, FileType, Ino, OpenFlags, RenameFlags, SetAttr, Vfs, VfsError};

/// The largest size and end offset a file may have (`off_t`'s maximum).
const MAX_SIZE: u64 = i64::MAX as u64;

/// At most this much may be held after any single request below (a few chunks/pages).
const SMALL: u64 = 1 << 20;

/// One filesystem under test.
struct Fs {
    vfs: Arc<dyn Vfs>,
    mem: Option<Arc<MemFs>>,
    /// For loopback: the host directory, whose used blocks are checked instead.
    _dir: Option<tempfile::TempDir>,
    name: &'static str,
}

impl Fs {
    fn memfs() -> Fs {
        let mem = Arc::new(MemFs::new(MemFsOptions::default()));
        Fs {
            vfs: mem.clone(),
            mem: Some(mem),
            _dir: None,
            name: "memfs",
        }
    }

    #[cfg(unix)]
    fn loopback() -> Fs {
        use vmount_core::loopback::{Loopback, LoopbackOptions};
        let dir = tempfile::tempdir().expect("temp dir");
        let lo = Loopback::new(LoopbackOptions {
            source: dir.path().to_path_buf(),
            read_only: false,
        })
        .expect("loopback");
        Fs {
            vfs: Arc::new(lo),
            mem: None,
            _dir: Some(dir),
            name: "loopback",
        }
    }

    /// Bytes the filesystem holds for file data: memfs's count, or the blocks the host
    /// allocated to the files of the test (attr.blocks, 512-byte units).
    fn held(&self, files: &[Ino]) -> u64 {
        match &self.mem {
            Some(m) => m.used_bytes(),
            None => files
                .iter()
                .map(|&i| {
                    self.vfs
                        .getattr(&ctx(), i, None)
                        .map_or(0, |a| a.blocks * 512)
                })
                .sum(),
        }
    }

    fn file(&self, name: &str, content: &[u8]) -> Attr {
        let (a, o) = self
            .vfs
            .create(
                &ctx(),
                Ino::ROOT,
                OsStr::new(name),
                0o644,
                OpenFlags::READ | OpenFlags::WRITE,
            )
            .unwrap_or_else(|e| panic!("{}: create {name}: {e}", self.name));
        if !content.is_empty() {
            assert_eq!(
                self.vfs
                    .write(&ctx(), a.ino, Some(o.fh), 0, content)
                    .unwrap(),
                content.len() as u32
            );
        }
        self.vfs.release(&ctx(), a.ino, o.fh).unwrap();
        self.vfs.getattr(&ctx(), a.ino, None).unwrap()
    }

    fn size(&self, ino: Ino) -> u64 {
        self.vfs.getattr(&ctx(), ino, None).unwrap().size
    }

    fn truncate(&self, ino: Ino, size: u64) -> Result<Attr, VfsError> {
        let set = SetAttr {
            size: Some(size),
            ..SetAttr::default()
        };
        self.vfs.setattr(&ctx(), ino, &set, None)
    }

    fn read(&self, ino: Ino, offset: u64, len: usize) -> Result<Vec<u8>, VfsError> {
        let mut buf = vec![0xAAu8; len];
        let n = self.vfs.read(&ctx(), ino, None, offset, &mut buf)?;
        assert!(
            n <= len,
            "{}: read returned {n} for a {len}-byte buffer",
            self.name
        );
        buf.truncate(n);
        Ok(buf)
    }
}

fn ctx() -> Ctx {
    Ctx::root()
}

/// Asserts that `r` is exactly error `want` (by variant).
#[track_caller]
fn assert_err<T: std::fmt::Debug>(fs: &Fs, what: &str, r: Result<T, VfsError>, want: VfsError) {
    match r {
        Err(e) if std::mem::discriminant(&e) == std::mem::discriminant(&want) => {}
        other => panic!("{}: {what}: expected {want:?}, got {other:?}", fs.name),
    }
}

/// Every filesystem this platform can test.
fn all() -> Vec<Fs> {
    #[cfg_attr(not(unix), allow(unused_mut))] // loopback is pushed on unix only
    let mut v = vec![Fs::memfs()];
    #[cfg(unix)]
    v.push(Fs::loopback());
    // memfs with kernel-held contents, where this process may make its tmpfs (root).
    let kernel = Arc::new(MemFs::new(MemFsOptions {
        kernel_data: true,
        ..MemFsOptions::default()
    }));
    if kernel.kernel_data() {
        v.push(Fs {
            vfs: kernel.clone(),
            mem: Some(kernel),
            _dir: None,
            name: "memfs-kernel",
        });
    }
    v
}

#[test]
fn truncate_to_the_largest_sizes() {
    for fs in all() {
        let f = fs.file("f", b"hello");
        // 2^63 - 1 is the largest size there is. memfs holds it as one sparse file;
        // a host filesystem may have a smaller limit (ext4: 16 TiB) and then says EFBIG.
        match fs.truncate(f.ino, MAX_SIZE) {
            Ok(a) => {
                assert_eq!(a.size, MAX_SIZE, "{}", fs.name);
                assert_eq!(fs.size(f.ino), MAX_SIZE, "{}", fs.name);
                // The old data stays; the hole reads as zeros, up to the very end.
                assert_eq!(fs.read(f.ino, 0, 8).unwrap(), b"hello\0\0\0");
                assert_eq!(fs.read(f.ino, MAX_SIZE - 3, 100).unwrap(), [0, 0, 0]);
                assert_eq!(fs.read(f.ino, MAX_SIZE, 100).unwrap(), b"");
            }
            Err(VfsError::FileTooLarge) if fs.mem.is_none() => {
                assert_eq!(
                    fs.size(f.ino),
                    5,
                    "{}: a refused truncate changed the size",
                    fs.name
                );
            }
            Err(e) => panic!("{}: truncate to 2^63-1: {e:?}", fs.name),
        }
        assert!(
            fs.held(&[f.ino]) < SMALL,
            "{}: {} bytes held",
            fs.name,
            fs.held(&[f.ino])
        );
        // Past 2^63 - 1 is EFBIG, whatever the size was before, and changes nothing.
        let before = fs.size(f.ino);
        for size in [MAX_SIZE + 1, u64::MAX - 1, u64::MAX] {
            assert_err(
                &fs,
                &format!("truncate to {size}"),
                fs.truncate(f.ino, size),
                VfsError::FileTooLarge,
            );
            assert_eq!(fs.size(f.ino), before, "{}", fs.name);
        }
        // And back down: the data below the new size survives.
        assert_eq!(fs.truncate(f.ino, 3).unwrap().size, 3);
        assert_eq!(fs.read(f.ino, 0, 10).unwrap(), b"hel");
        assert!(fs.held(&[f.ino]) < SMALL, "{}", fs.name);
        // Truncating a directory or symlink is not a file operation.
        assert_err(
            &fs,
            "truncate the root",
            fs.truncate(Ino::ROOT, 0),
            VfsError::IsDir,
        );
    }
}

#[test]
fn writes_at_the_largest_offsets() {
    for fs in all() {
        let f = fs.file("f", b"");
        let w = |off: u64, data: &[u8]| fs.vfs.write(&ctx(), f.ino, None, off, data);
        // One byte ending exactly at 2^63 - 1: allowed (memfs; ext4 says EFBIG).
        match w(MAX_SIZE - 1, b"z") {
            Ok(1) => {
                assert_eq!(fs.size(f.ino), MAX_SIZE, "{}", fs.name);
                assert_eq!(fs.read(f.ino, MAX_SIZE - 2, 10).unwrap(), b"\0z");
            }
            Err(VfsError::FileTooLarge) if fs.mem.is_none() => {
                assert_eq!(fs.size(f.ino), 0, "{}", fs.name);
            }
            other => panic!("{}: write at 2^63-2: {other:?}", fs.name),
        }
        let size = fs.size(f.ino);
        // Anything ending past it is EFBIG and writes nothing, even where the sum of
        // offset and length overflows a u64.
        for (off, len) in [
            (MAX_SIZE - 1, 2usize),
            (MAX_SIZE, 1),
            (MAX_SIZE + 1, 1),
            (u64::MAX - 1, 1),
            (u64::MAX - 1, 4),
            (u64::MAX, 1),
        ] {
            let data = vec![b'x'; len];
            assert_err(
                &fs,
                &format!("write {len} at {off}"),
                w(off, &data),
                VfsError::FileTooLarge,
            );
            assert_eq!(
                fs.size(f.ino),
                size,
                "{}: a refused write changed the size",
                fs.name
            );
        }
        assert!(
            fs.held(&[f.ino]) < SMALL,
            "{}: {} bytes held",
            fs.name,
            fs.held(&[f.ino])
        );
    }
}

#[test]
fn reads_past_the_end_and_empty_io() {
    for fs in all() {
        let f = fs.file("f", b"hello");
        // Short reads at the end, nothing at or past it, whatever the offset.
        assert_eq!(fs.read(f.ino, 2, 10).unwrap(), b"llo");
        assert_eq!(fs.read(f.ino, 0, 1 << 20).unwrap(), b"hello");
        for off in [
            5,
            6,
            4096,
            1 << 40,
            MAX_SIZE,
            MAX_SIZE + 1,
            u64::MAX - 1,
            u64::MAX,
        ] {
            assert_eq!(
                fs.read(f.ino, off, 16).unwrap(),
                b"",
                "{}: read at {off}",
                fs.name
            );
        }
        // Zero-length reads and writes do nothing and succeed.
        for off in [0, 3, 5, 1 << 40, MAX_SIZE] {
            assert_eq!(fs.read(f.ino, off, 0).unwrap(), b"", "{}", fs.name);
            assert_eq!(
                fs.vfs.write(&ctx(), f.ino, None, off, b"").unwrap(),
                0,
                "{}",
                fs.name
            );
            assert_eq!(
                fs.size(f.ino),
                5,
                "{}: an empty write at {off} changed the size",
                fs.name
            );
        }
        // At offsets no file can reach, an empty write may succeed or say EFBIG/EINVAL,
        // but never changes the file.
        for off in [MAX_SIZE + 1, u64::MAX] {
            match fs.vfs.write(&ctx(), f.ino, None, off, b"") {
                Ok(0) | Err(VfsError::FileTooLarge | VfsError::InvalidArgument) => {}
                other => panic!("{}: empty write at {off}: {other:?}", fs.name),
            }
            assert_eq!(fs.size(f.ino), 5, "{}", fs.name);
        }
        assert_eq!(fs.read(f.ino, 0, 10).unwrap(), b"hello");
        // Reading a directory is IsDir, not a short read.
        let mut buf = [0u8; 4];
        assert_err(
            &fs,
            "read the root",
            fs.vfs.read(&ctx(), Ino::ROOT, None, 0, &mut buf),
            VfsError::IsDir,
        );
    }
}

/// Names every name-taking call must refuse, with the error it must give.
fn bad_names() -> Vec<(Vec<u8>, VfsError)> {
    vec![
        (b"".to_vec(), VfsError::InvalidArgument),
        (b".".to_vec(), VfsError::InvalidArgument),
        (b"..".to_vec(), VfsError::InvalidArgument),
        (b"a/b".to_vec(), VfsError::InvalidArgument),
        (b"/".to_vec(), VfsError::InvalidArgument),
        (b"a\0b".to_vec(), VfsError::InvalidArgument),
        (b"\0".to_vec(), VfsError::InvalidArgument),
        (vec![b'n'; 256], VfsError::NameTooLong),
        (vec![b'n'; 4096], VfsError::NameTooLong),
        // Too long wins over a slash inside, as on Linux.
        (
            [vec![b'n'; 300], b"/x".to_vec()].concat(),
            VfsError::NameTooLong,
        ),
    ]
}

#[cfg(unix)]
fn os(b: &[u8]) -> &OsStr {
    std::os::unix::ffi::OsStrExt::from_bytes(b)
}

#[cfg(not(unix))]
fn os(b: &[u8]) -> &OsStr {
    // SAFETY: the names used here are ASCII or the invalid-UTF-8 case, which is only
    // built on unix; ASCII bytes are valid encoded OsStr bytes everywhere.
    unsafe { OsStr::from_encoded_bytes_unchecked(b) }
}

#[test]
fn bad_names_are_refused_by_every_call() {
    for fs in all() {
        let v = &fs.vfs;
        let c = ctx();
        let f = fs.file("f", b"x");
        let d = v.mkdir(&c, Ino::ROOT, OsStr::new("d"), 0o755).unwrap();
        let caps = v.capabilities();
        for (name, want) in bad_names() {
            let n = os(&name);
            let what = |op: &str| format!("{op} {:?}", String::from_utf8_lossy(&name));
            let want = || match want {
                VfsError::NameTooLong => VfsError::NameTooLong,
                _ => VfsError::InvalidArgument,
            };
            assert_err(&fs, &what("lookup"), v.lookup(&c, Ino::ROOT, n), want());
            assert_err(
                &fs,
                &what("mkdir"),
                v.mkdir(&c, Ino::ROOT, n, 0o755),
                want(),
            );
            assert_err(
                &fs,
                &what("create"),
                v.create(&c, Ino::ROOT, n, 0o644, OpenFlags::WRITE)
                    .map(|_| ()),
                want(),
            );
            assert_err(
                &fs,
                &what("mknod"),
                v.mknod(&c, Ino::ROOT, n, FileType::Fifo, 0o644, 0),
                want(),
            );
            if caps.symlinks {
                assert_err(
                    &fs,
                    &what("symlink"),
                    v.symlink(&c, Ino::ROOT, n, OsStr::new("t")),
                    want(),
                );
            }
            if caps.hard_links {
                assert_err(&fs, &what("link"), v.link(&c, f.ino, Ino::ROOT, n), want());
            }
            assert_err(&fs, &what("unlink"), v.unlink(&c, Ino::ROOT, n), want());
            assert_err(&fs, &what("rmdir"), v.rmdir(&c, Ino::ROOT, n), want());
            let none = RenameFlags::empty();
            assert_err(
                &fs,
                &what("rename from"),
                v.rename(&c, Ino::ROOT, n, d.ino, OsStr::new("t"), none),
                want(),
            );
            assert_err(
                &fs,
                &what("rename to"),
                v.rename(&c, Ino::ROOT, OsStr::new("f"), d.ino, n, none),
                want(),
            );
        }
        // Nothing was created or moved by any of it.
        let mut sink = vmount_core::VecSink::default();
        v.readdir(&c, Ino::ROOT, None, 0, &mut sink).unwrap();
        let mut names: Vec<_> = sink.entries.iter().map(|e| e.name.clone()).collect();
        names.sort();
        assert_eq!(names, ["d", "f"], "{}", fs.name);
        assert_eq!(fs.read(f.ino, 0, 4).unwrap(), b"x");
    }
}

#[test]
fn names_of_255_bytes_and_any_bytes_work() {
    for fs in all() {
        let v = &fs.vfs;
        let c = ctx();
        let long = vec![b'l'; 255];
        #[cfg_attr(not(unix), allow(unused_mut))] // non-UTF-8 names are added on unix
        let mut names: Vec<Vec<u8>> = vec![
            long.clone(),
            "ünï€ødé".as_bytes().to_vec(),
            b" .x.. ".to_vec(),
        ];
        // Any bytes but `/` and NUL on unix, including ones that are not UTF-8.
        #[cfg(unix)]
        names.push(b"\xff\xfe bad \x80utf8".to_vec());
        for name in &names {
            let n = os(name);
            let (a, o) = v
                .create(&c, Ino::ROOT, n, 0o644, OpenFlags::WRITE)
                .unwrap_or_else(|e| {
                    panic!(
                        "{}: create {:?}: {e}",
                        fs.name,
                        String::from_utf8_lossy(name)
                    )
                });
            v.release(&c, a.ino, o.fh).unwrap();
            assert_eq!(
                v.lookup(&c, Ino::ROOT, n).unwrap().ino,
                a.ino,
                "{}",
                fs.name
            );
        }
        // A 255-byte directory name, and a 255-byte name inside it.
        let d = v.mkdir(&c, Ino::ROOT, os(&[b'd'; 255]), 0o755).unwrap();
        v.mkdir(&c, d.ino, os(&long), 0o755).unwrap();
        // readdir returns exactly the bytes that were given.
        let mut sink = vmount_core::VecSink::default();
        v.readdir(&c, Ino::ROOT, None, 0, &mut sink).unwrap();
        let mut got: Vec<Vec<u8>> = sink
            .entries
            .iter()
            .map(|e| e.name.as_encoded_bytes().to_vec())
            .collect();
        got.sort();
        let mut want = names.clone();
        want.push(vec![b'd'; 255]);
        want.sort();
        assert_eq!(got, want, "{}", fs.name);
        // Renaming to a 255-byte name works; to 256 it does not, and nothing moves.
        v.rename(
            &c,
            Ino::ROOT,
            os(&names[1]),
            d.ino,
            os(&[b'r'; 255]),
            RenameFlags::empty(),
        )
        .unwrap();
        assert_err(
            &fs,
            "rename to 256 bytes",
            v.rename(
                &c,
                d.ino,
                os(&[b'r'; 255]),
                Ino::ROOT,
                os(&[b'r'; 256]),
                RenameFlags::empty(),
            ),
            VfsError::NameTooLong,
        );
        assert!(v.lookup(&c, d.ino, os(&[b'r'; 255])).is_ok(), "{}", fs.name);
    }
}

#[test]
fn huge_requests_do_not_allocate() {
    // memfs with a small limit: a truncate far beyond it is fine (holes cost nothing);
    // data beyond it is ENOSPC, and the accounting ends where it started.
    let mem = Arc::new(MemFs::new(MemFsOptions {
        size_limit: Some(1 << 20),
        ..MemFsOptions::default()
    }));
    let fs = Fs {
        vfs: mem.clone(),
        mem: Some(mem.clone()),
        _dir: None,
        name: "memfs (1 MiB)",
    };
    let f = fs.file("f", b"");
    let free_before = fs.vfs.statfs(&ctx(), Ino::ROOT).unwrap().bfree;
    assert_eq!(fs.truncate(f.ino, MAX_SIZE).unwrap().size, MAX_SIZE);
    assert_eq!(fs.truncate(f.ino, 1 << 40).unwrap().size, 1 << 40);
    assert!(mem.used_bytes() < SMALL);
    assert_eq!(fs.vfs.statfs(&ctx(), Ino::ROOT).unwrap().bfree, free_before);
    // Scattered single bytes each cost an allocation unit (memfs: 64 bytes); the limit
    // stops them with ENOSPC before more than the limit is held.
    let mut saw_enospc = false;
    for i in 0..32_768u64 {
        match fs.vfs.write(&ctx(), f.ino, None, i << 30, b"x") {
            Ok(1) => {}
            Err(VfsError::NoSpace) => {
                saw_enospc = true;
                break;
            }
            other => panic!("scattered write {i}: {other:?}"),
        }
    }
    assert!(saw_enospc, "32,768 scattered bytes fit into 1 MiB");
    assert!(
        mem.used_bytes() <= 1 << 20,
        "{} bytes held",
        mem.used_bytes()
    );
    assert_eq!(fs.truncate(f.ino, 0).unwrap().size, 0);
    assert_eq!(mem.used_bytes(), 0);
    assert_eq!(fs.vfs.statfs(&ctx(), Ino::ROOT).unwrap().bfree, free_before);
}
