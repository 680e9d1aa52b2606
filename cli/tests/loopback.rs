//! Tier 3, loopback only: what a mirror of a host directory must get right beyond the
//! shared cases in `mounted_tools.rs`.
//! - Both directions: changes made directly in `source` show through the mount (at once
//!   with zero cache timeouts; as root within 1 s even with hour-long caches, which the
//!   change watcher invalidates, and known names are then served by the kernel), and what is
//!   written through the mount lands on the host with the same bytes, modes and mtimes;
//!   hard links share the host inode, symlinks are host symlinks the daemon never follows.
//! - Ownership: as root, files made through the mount by another user belong to that user.
//! - Confinement: while `source/d` flips between a directory and a symlink that points
//!   out of `source`, nothing outside `source` is created, changed or read.
//! - `read_only = true`: every modifying call fails with EROFS and the source is unchanged.
//! - Locks: flock(1) and POSIX locks exclude each other on the mount; two sqlite writers.
//!
//! Every mount is held by a `Daemon` guard (inside [`Mounted`]) that kills the daemon and
//! clears the mount on drop, even when an assertion fails.
#![cfg(target_os = "linux")]

mod common;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use common::{Extra, Kind, Mounted, root_or_skip, sh, tools_or_skip};

fn mount(test: &str, fuse: &str) -> Option<Mounted> {
    Mounted::new(test, Kind::Loopback, Extra::fuse(fuse))
}

/// mtime in nanoseconds since the epoch.
fn mtime_ns(md: &std::fs::Metadata) -> i128 {
    i128::from(md.mtime()) * 1_000_000_000 + i128::from(md.mtime_nsec())
}

/// Everything about one entry that a leak or a write would change (not atime, which reads
/// may update).
#[derive(Debug, PartialEq, Eq)]
struct EntryState {
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    /// File contents, or a symlink's target.
    content: Vec<u8>,
    xattrs: BTreeMap<String, Vec<u8>>,
}

/// The state of `root` and everything below it, without following symlinks.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, EntryState> {
    fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, EntryState>) {
        let path = root.join(rel);
        let md = std::fs::symlink_metadata(&path)
            .unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()));
        let ft = md.file_type();
        let content = if ft.is_file() {
            std::fs::read(&path).unwrap()
        } else if ft.is_symlink() {
            std::fs::read_link(&path)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec()
        } else {
            Vec::new()
        };
        out.insert(
            rel.to_path_buf(),
            EntryState {
                mode: md.mode(),
                uid: md.uid(),
                gid: md.gid(),
                nlink: md.nlink(),
                size: if ft.is_dir() { 0 } else { md.len() },
                mtime_ns: mtime_ns(&md),
                ctime_ns: i128::from(md.ctime()) * 1_000_000_000 + i128::from(md.ctime_nsec()),
                content,
                xattrs: if ft.is_symlink() {
                    BTreeMap::new()
                } else {
                    user_xattrs(&path)
                },
            },
        );
        if ft.is_dir() {
            let mut names: Vec<_> = std::fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            for name in names {
                walk(root, &rel.join(name), out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, Path::new(""), &mut out);
    out
}

fn cpath(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).expect("no NUL in a temp path")
}

/// The `user.*` extended attributes of `path` (following nothing: `path` is not a link).
fn user_xattrs(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let c = cpath(path);
    let mut names = vec![0u8; 4096];
    // SAFETY: `c` is NUL-terminated; the buffer pointer and length describe `names`.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    let Ok(n) = usize::try_from(n) else {
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    for name in names[..n].split(|b| *b == 0).filter(|s| !s.is_empty()) {
        if !name.starts_with(b"user.") {
            continue;
        }
        let cname = CString::new(name).unwrap();
        let mut value = vec![0u8; 65536];
        // SAFETY: both strings are NUL-terminated; the buffer describes `value`.
        let len = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                cname.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        if let Ok(len) = usize::try_from(len) {
            value.truncate(len);
            out.insert(String::from_utf8_lossy(name).into_owned(), value);
        }
    }
    out
}

/// Polls `check` every 20 ms until it returns true or `limit` passes; returns how long it
/// took, or None.
fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if check() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What the mount shows about `rel`: None if absent, else (mode, size, contents if a file).
fn view(mnt: &Path, rel: &str) -> Option<(u32, u64, Option<Vec<u8>>)> {
    let p = mnt.join(rel);
    let md = std::fs::symlink_metadata(&p).ok()?;
    let content = md.is_file().then(|| std::fs::read(&p).ok()).flatten();
    Some((md.mode(), md.len(), content))
}

/// The host changes made directly in the source, each with what the mount must show
/// afterwards. Steps run in order on one source.
fn host_change_steps() -> Vec<(&'static str, HostStep, Expect)> {
    vec![
        (
            "create",
            HostStep::Write("f", b"one\n"),
            ("f", Some(b"one\n")),
        ),
        (
            "append",
            HostStep::Append("f", b"two\n"),
            ("f", Some(b"one\ntwo\n")),
        ),
        ("rename away", HostStep::Rename("f", "g"), ("f", None)),
        ("rename to", HostStep::Nop, ("g", Some(b"one\ntwo\n"))),
        (
            "chmod",
            HostStep::Chmod("g", 0o604),
            ("g", Some(b"one\ntwo\n")),
        ),
        ("mkdir", HostStep::Mkdir("dir"), ("dir", Some(b""))),
        (
            "create in new dir",
            HostStep::Write("dir/inner", b"in"),
            ("dir/inner", Some(b"in")),
        ),
        ("delete", HostStep::Remove("g"), ("g", None)),
    ]
}

enum HostStep {
    Nop,
    Write(&'static str, &'static [u8]),
    Append(&'static str, &'static [u8]),
    Rename(&'static str, &'static str),
    Chmod(&'static str, u32),
    Mkdir(&'static str),
    Remove(&'static str),
}

/// The path the mount is checked at, and its expected contents (None: must be absent;
/// `Some(b"")` for a directory: must exist).
type Expect = (&'static str, Option<&'static [u8]>);

impl HostStep {
    fn apply(&self, src: &Path) {
        match self {
            HostStep::Nop => {}
            HostStep::Write(p, data) => std::fs::write(src.join(p), data).unwrap(),
            HostStep::Append(p, data) => {
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(src.join(p))
                    .unwrap();
                f.write_all(data).unwrap();
            }
            HostStep::Rename(a, b) => std::fs::rename(src.join(a), src.join(b)).unwrap(),
            HostStep::Chmod(p, mode) => common::set_mode(&src.join(p), *mode),
            HostStep::Mkdir(p) => std::fs::create_dir(src.join(p)).unwrap(),
            HostStep::Remove(p) => std::fs::remove_file(src.join(p)).unwrap(),
        }
    }
}

/// Whether `rel` is in the listing of its directory through the mount (which the kernel
/// may serve from its cache of the listing).
fn listed(mnt: &Path, rel: &str) -> bool {
    let p = Path::new(rel);
    let dir = mnt.join(p.parent().unwrap_or(Path::new("")));
    let name = p.file_name().unwrap();
    std::fs::read_dir(dir).is_ok_and(|d| d.filter_map(Result::ok).any(|e| e.file_name() == name))
}

/// Whether the mount shows what `expect` says, in its directory's listing too, and (for
/// chmod steps) the host's mode.
fn shows(mnt: &Path, src: &Path, expect: &Expect) -> bool {
    let (rel, want) = expect;
    if listed(mnt, rel) != want.is_some() {
        return false;
    }
    match (view(mnt, rel), want) {
        (None, None) => true,
        (Some((mode, _, content)), Some(want)) => {
            let host_mode = std::fs::symlink_metadata(src.join(rel)).map(|m| m.mode());
            let content_ok = match content {
                Some(c) => c == *want,
                None => want.is_empty(),
            };
            content_ok && host_mode.is_ok_and(|h| h == mode)
        }
        _ => false,
    }
}

/// Changes made directly in the source appear through the mount: at once with
/// `attr_timeout = 0` and `entry_timeout = 0`; with the default caches within 4 s (1 s
/// caches, or as root on Linux hour-long caches invalidated as changes happen); and with
/// hour-long caches set explicitly, as root on Linux, within 1 s, which only the change
/// watcher (fanotify) can do. The entries are looked at through the mount before each
/// change, so the kernel has something cached that it must drop or revalidate.
#[test]
fn host_changes_appear_through_the_mount() {
    let test = "host_changes_appear_through_the_mount";
    let cases = [
        ("attr_timeout = 0\nentry_timeout = 0", Some(Duration::ZERO)),
        ("", None),
        (
            "attr_timeout = 3600\nentry_timeout = 3600",
            Some(Duration::from_secs(1)),
        ),
    ];
    for (fuse, within) in cases {
        let watched_case = within.is_some_and(|d| !d.is_zero());
        if watched_case && !common::is_root() {
            assert!(!common::on_ci(), "{test}: CI runs as root");
            eprintln!("{test}: skipping the hour-long-cache case: the change watcher needs root");
            continue;
        }
        let Some(m) = mount(test, fuse) else {
            return;
        };
        let (mnt, src) = (m.path(), m.source());
        let mut slowest = Duration::ZERO;
        for (what, step, expect) in host_change_steps() {
            // Prime the kernel's caches (attributes, names, listings) with the state
            // before the change.
            let _ = view(mnt, expect.0);
            let _ = std::fs::read_dir(mnt).map(|d| d.count());
            let _ = listed(mnt, expect.0);
            step.apply(src);
            if within == Some(Duration::ZERO) {
                assert!(
                    shows(mnt, src, &expect),
                    "with zero timeouts, {what} must show at once: mount shows {:?}",
                    view(mnt, expect.0)
                );
            } else {
                let limit = within.unwrap_or(Duration::from_secs(4));
                let took = eventually(limit, || shows(mnt, src, &expect)).unwrap_or_else(|| {
                    panic!(
                        "with {fuse:?}, {what} did not show within {limit:?}: mount shows {:?}",
                        view(mnt, expect.0)
                    )
                });
                slowest = slowest.max(took);
            }
        }
        // A listing reflects the host's directory as it is now.
        let mut names: Vec<_> = std::fs::read_dir(mnt)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["dir"], "{fuse:?}");
        if within != Some(Duration::ZERO) {
            eprintln!("{test}: with {fuse:?} the slowest change took {slowest:?} to show");
        }
        m.finish();
    }
}

/// What is written through the mount is on the host with the same bytes, mode and mtime;
/// a hard link made through the mount is a host hard link; symlinks are host symlinks.
#[test]
fn writes_through_the_mount_land_in_source() {
    let Some(m) = mount("writes_through_the_mount_land_in_source", "") else {
        return;
    };
    let (mnt, src) = (m.path(), m.source());
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(mnt.join("data"), &data).unwrap();
    common::set_mode(&mnt.join("data"), 0o640);
    sh(mnt, "touch -m -d @1299215167.123456789 data");
    std::fs::create_dir(mnt.join("sub")).unwrap();
    common::set_mode(&mnt.join("sub"), 0o711);
    std::fs::write(mnt.join("sub/small"), b"small").unwrap();

    let host = std::fs::metadata(src.join("data")).unwrap();
    let through = std::fs::metadata(mnt.join("data")).unwrap();
    assert_eq!(std::fs::read(src.join("data")).unwrap(), data);
    assert_eq!(host.mode(), 0o100640);
    assert_eq!(through.mode(), host.mode());
    assert_eq!(mtime_ns(&host), 1_299_215_167_123_456_789);
    assert_eq!(mtime_ns(&through), mtime_ns(&host));
    assert_eq!(through.len(), host.len());
    assert_eq!(std::fs::metadata(src.join("sub")).unwrap().mode(), 0o040711);
    assert_eq!(std::fs::read(src.join("sub/small")).unwrap(), b"small");

    // Hard links: one host inode, nlink 2, and the mount agrees.
    std::fs::hard_link(mnt.join("data"), mnt.join("sub/hard")).unwrap();
    let a = std::fs::metadata(src.join("data")).unwrap();
    let b = std::fs::metadata(src.join("sub/hard")).unwrap();
    assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()), "host hard link");
    assert_eq!(a.nlink(), 2);
    let ma = std::fs::metadata(mnt.join("data")).unwrap();
    let mb = std::fs::metadata(mnt.join("sub/hard")).unwrap();
    assert_eq!(ma.ino(), mb.ino(), "one vmount inode for one host inode");
    assert_eq!((ma.nlink(), mb.nlink()), (2, 2));
    std::fs::remove_file(mnt.join("data")).unwrap();
    assert_eq!(std::fs::metadata(src.join("sub/hard")).unwrap().nlink(), 1);
    assert_eq!(std::fs::metadata(mnt.join("sub/hard")).unwrap().nlink(), 1);

    // Symlinks made through the mount are symlinks on the host, targets verbatim.
    let targets = ["sub/small", "../../outside/x", "/etc/passwd", "dangling"];
    for (i, target) in targets.iter().enumerate() {
        std::os::unix::fs::symlink(target, mnt.join(format!("l{i}"))).unwrap();
        let host = std::fs::symlink_metadata(src.join(format!("l{i}"))).unwrap();
        assert!(host.file_type().is_symlink(), "l{i} -> {target}");
        assert_eq!(
            std::fs::read_link(src.join(format!("l{i}"))).unwrap(),
            Path::new(target)
        );
        assert_eq!(
            std::fs::read_link(mnt.join(format!("l{i}"))).unwrap(),
            Path::new(target)
        );
    }
    m.finish();
}

/// The daemon never follows a symlink in the source: a link pointing out of the source
/// shows as a link, and no-follow operations on it through the mount (lchown, utimensat
/// with AT_SYMLINK_NOFOLLOW, rename, unlink, creating over it with O_EXCL) change the link
/// or fail, never its target.
#[test]
fn symlinks_in_source_are_never_followed_by_the_daemon() {
    let test = "symlinks_in_source_are_never_followed_by_the_daemon";
    let outside = common::open_tempdir_on_tmp("vmount-outside-");
    std::fs::write(outside.path().join("target"), b"outside data").unwrap();
    std::fs::create_dir(outside.path().join("dir")).unwrap();
    let before = snapshot(outside.path());
    let Some(m) = mount(test, "attr_timeout = 0\nentry_timeout = 0") else {
        return;
    };
    let (mnt, src) = (m.path(), m.source());
    let abs_file = outside.path().join("target");
    let abs_dir = outside.path().join("dir");
    std::os::unix::fs::symlink(&abs_file, src.join("to_file")).unwrap();
    std::os::unix::fs::symlink(&abs_dir, src.join("to_dir")).unwrap();

    let md = std::fs::symlink_metadata(mnt.join("to_file")).unwrap();
    assert!(md.file_type().is_symlink(), "shown as a link: {md:?}");
    assert_eq!(std::fs::read_link(mnt.join("to_file")).unwrap(), abs_file);
    // lchown and utimensat(AT_SYMLINK_NOFOLLOW) act on the link itself.
    std::os::unix::fs::lchown(mnt.join("to_file"), Some(4321), Some(4321)).unwrap();
    let link = std::fs::symlink_metadata(src.join("to_file")).unwrap();
    assert_eq!((link.uid(), link.gid()), (4321, 4321));
    let c = cpath(&mnt.join("to_dir"));
    let times = [libc::timespec {
        tv_sec: 1_000_000,
        tv_nsec: 0,
    }; 2];
    // SAFETY: `c` is NUL-terminated and `times` holds the two timespecs utimensat reads.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(rc, 0, "lutimes: {}", std::io::Error::last_os_error());
    assert_eq!(
        std::fs::symlink_metadata(src.join("to_dir"))
            .unwrap()
            .mtime(),
        1_000_000
    );
    // O_CREAT|O_EXCL on a name that is a link fails; it must not create the target.
    std::fs::remove_file(outside.path().join("target")).unwrap();
    let err = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(mnt.join("to_file"))
        .expect_err("O_EXCL over a symlink");
    assert_eq!(err.raw_os_error(), Some(libc::EEXIST), "{err}");
    assert!(!outside.path().join("target").exists(), "target created");
    std::fs::write(outside.path().join("target"), b"outside data").unwrap();
    let restored = std::fs::metadata(outside.path().join("target")).unwrap();
    // Rename and unlink move and remove the link, not the target.
    std::fs::rename(mnt.join("to_file"), mnt.join("moved")).unwrap();
    std::fs::remove_file(mnt.join("moved")).unwrap();
    std::fs::remove_file(mnt.join("to_dir")).unwrap();
    assert!(
        std::fs::read_dir(src).unwrap().next().is_none(),
        "source should be empty"
    );
    let mut after = snapshot(outside.path());
    // The target was deliberately removed and rewritten above; compare the rest, and the
    // rewritten file against its state right after the rewrite.
    let target = after.remove(Path::new("target")).unwrap();
    assert_eq!(target.content, b"outside data");
    assert_eq!(target.mtime_ns, mtime_ns(&restored));
    let mut before = before;
    before.remove(Path::new("target"));
    before.remove(Path::new(""));
    after.remove(Path::new(""));
    assert_eq!(before, after, "outside dir changed through the mount");
    m.finish();
}

/// As root with allow_other, a file another user creates through the mount belongs to
/// that user on the host, and a setgid directory's group is inherited.
#[test]
fn files_created_by_another_user_belong_to_that_user() {
    let test = "files_created_by_another_user_belong_to_that_user";
    if !root_or_skip(test) || !tools_or_skip(test, &["setpriv"]) {
        return;
    }
    let Some(m) = mount(test, "allow_other = true") else {
        return;
    };
    let (mnt, src) = (m.path(), m.source());
    std::fs::write(mnt.join("by-root"), b"r").unwrap();
    let md = std::fs::metadata(src.join("by-root")).unwrap();
    assert_eq!((md.uid(), md.gid()), (0, 0));
    std::fs::create_dir(mnt.join("u")).unwrap();
    std::os::unix::fs::chown(mnt.join("u"), Some(1000), Some(1000)).unwrap();
    std::fs::create_dir(mnt.join("shared")).unwrap();
    std::os::unix::fs::chown(mnt.join("shared"), Some(1000), Some(2345)).unwrap();
    common::set_mode(&mnt.join("shared"), 0o2775);
    let out = Command::new("setpriv")
        .args([
            "--reuid=1000",
            "--regid=1000",
            "--clear-groups",
            "sh",
            "-ec",
            "echo hi > u/file; mkdir u/dir; ln -s file u/link; mkfifo u/fifo; ln u/file u/hard
             echo s > shared/file; mkdir shared/dir",
        ])
        .current_dir(mnt)
        .output()
        .expect("setpriv");
    assert!(out.status.success(), "{out:?}");
    for name in ["u/file", "u/dir", "u/link", "u/fifo", "u/hard"] {
        let md = std::fs::symlink_metadata(src.join(name)).unwrap();
        assert_eq!((md.uid(), md.gid()), (1000, 1000), "{name} on the host");
        let through = std::fs::symlink_metadata(mnt.join(name)).unwrap();
        assert_eq!(
            (through.uid(), through.gid()),
            (1000, 1000),
            "{name} on the mount"
        );
    }
    for name in ["shared/file", "shared/dir"] {
        let md = std::fs::metadata(src.join(name)).unwrap();
        assert_eq!(
            (md.uid(), md.gid()),
            (1000, 2345),
            "{name}: setgid dir group"
        );
    }
    assert_ne!(
        std::fs::metadata(src.join("shared/dir")).unwrap().mode() & 0o2000,
        0,
        "a subdirectory of a setgid directory is setgid"
    );
    // The host's permission checks apply to that user: a root-owned 0755 dir is closed.
    let out = Command::new("setpriv")
        .args([
            "--reuid=1000",
            "--regid=1000",
            "--clear-groups",
            "touch",
            "denied",
        ])
        .current_dir(mnt)
        .output()
        .expect("setpriv");
    assert!(
        !out.status.success(),
        "user 1000 created in a 0755 root dir"
    );
    assert!(!src.join("denied").exists());
    m.finish();
}

/// The outside directory of the confinement test: `secret` holds bytes that must never be
/// read through the mount; `inner` is a directory a symlink may point into.
const SECRET: &[u8] = b"outside-secret-0123456789";

fn renameat2(from: &Path, to: &Path, flags: libc::c_uint) -> std::io::Result<()> {
    let (a, b) = (cpath(from), cpath(to));
    // SAFETY: both paths are NUL-terminated C strings that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            flags,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// For about 3 s one thread swaps `source/d` between a directory and a symlink pointing
/// out of the source (RENAME_EXCHANGE with a prepared link, and plain renames of the link
/// over the name and back) while other threads create, write, truncate, chmod, unlink,
/// mkdir, rename, link, setxattr, list and read `mnt/d/...`. Afterwards the outside
/// directory is exactly as before, nothing read or listed through the mount ever came from
/// it, and the daemon is still healthy.
///
/// The links are relative (`../outside`): on the host they lead out of the source, while
/// through the mount the client kernel resolves them next to the mountpoint, where no
/// `outside` exists, so anything that reaches the outside directory went through the daemon.
#[test]
fn confinement_under_directory_symlink_swaps() {
    let test = "confinement_under_directory_symlink_swaps";
    let root = common::open_tempdir_on_tmp("vmount-confine-");
    let src = root.path().join("src");
    let outside = root.path().join("outside");
    std::fs::create_dir(&src).unwrap();
    common::set_mode(&src, 0o755);
    std::fs::create_dir_all(outside.join("inner")).unwrap();
    std::fs::write(outside.join("secret"), SECRET).unwrap();
    std::fs::write(outside.join("inner/secret"), SECRET).unwrap();
    common::set_mode(&outside.join("secret"), 0o640);
    sh(&outside, "touch -d @1115269505 secret inner/secret inner .");
    let before = snapshot(&outside);
    let inner_mtime = before.get(Path::new("inner")).unwrap().mtime_ns;

    std::fs::create_dir(src.join("d")).unwrap();
    std::fs::write(src.join("d/secret"), b"inside").unwrap();
    std::fs::create_dir(src.join("d/inner")).unwrap();
    std::os::unix::fs::symlink("../outside", src.join("link1")).unwrap();
    std::os::unix::fs::symlink("../outside/inner", src.join("link2")).unwrap();
    std::os::unix::fs::symlink("../outside", src.join("link3")).unwrap();

    if !common::fuse_or_skip(test) {
        return;
    }
    let m = Mounted::try_new(
        Kind::Loopback,
        Extra::fuse("attr_timeout = 0\nentry_timeout = 0"),
        Some(&src),
    )
    .unwrap_or_else(|e| panic!("{test}: {e}"));
    let mnt = m.path().to_path_buf();
    assert!(
        !m.path().parent().unwrap().join("outside").exists(),
        "the mount's parent must not have an `outside` for this test to mean anything"
    );

    let stop = AtomicBool::new(false);
    let swaps = AtomicU64::new(0);
    let ops = AtomicU64::new(0);
    let leaks = std::sync::Mutex::new(Vec::<String>::new());
    let leak = |what: String| leaks.lock().unwrap().push(what);
    std::thread::scope(|s| {
        // The swapper, directly on the host.
        s.spawn(|| {
            let d = src.join("d");
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                match i % 3 {
                    // Atomic exchange: `d` becomes the link, `link1` the directory; then back.
                    0 => {
                        let l = src.join("link1");
                        if renameat2(&l, &d, libc::RENAME_EXCHANGE).is_ok() {
                            std::thread::yield_now();
                            renameat2(&l, &d, libc::RENAME_EXCHANGE).expect("exchange back");
                        }
                    }
                    1 => {
                        let l = src.join("link2");
                        if renameat2(&l, &d, libc::RENAME_EXCHANGE).is_ok() {
                            std::thread::yield_now();
                            renameat2(&l, &d, libc::RENAME_EXCHANGE).expect("exchange back");
                        }
                    }
                    // Non-atomic: move the directory aside, rename the link over the name,
                    // then move the link back (it keeps its name) and the directory too.
                    _ => {
                        let aside = src.join("d.aside");
                        std::fs::rename(&d, &aside).expect("move d aside");
                        std::fs::rename(src.join("link3"), &d).expect("link over d");
                        std::thread::yield_now();
                        std::fs::rename(&d, src.join("link3")).expect("link back");
                        std::fs::rename(&aside, &d).expect("d back");
                    }
                }
                swaps.fetch_add(1, Ordering::Relaxed);
            }
        });
        for t in 0..4u32 {
            let (mnt, stop, ops, leak) = (&mnt, &stop, &ops, &leak);
            let inner_mtime = &inner_mtime;
            s.spawn(move || {
                let d = mnt.join("d");
                let mut i = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    i = i.wrapping_add(1);
                    let f = d.join(format!("w{t}-{}", i % 8));
                    let g = d.join(format!("r{t}-{}", i % 8));
                    let sub = d.join(format!("m{t}-{}", i % 4));
                    match (i + t) % 12 {
                        0 => {
                            let _ = std::fs::write(&f, b"through the mount");
                        }
                        1 => {
                            if let Ok(mut h) = std::fs::OpenOptions::new()
                                .create(true)
                                .append(true)
                                .mode(0o600)
                                .open(&f)
                            {
                                let _ = h.write_all(b"more");
                                let _ = h.set_len(2);
                                let _ = h.sync_all();
                            }
                        }
                        2 => {
                            let _ = std::fs::OpenOptions::new()
                                .write(true)
                                .truncate(true)
                                .open(d.join("secret"));
                            let _ = std::fs::OpenOptions::new()
                                .write(true)
                                .truncate(true)
                                .open(d.join("inner/secret"));
                        }
                        3 => {
                            let _ = std::fs::set_permissions(
                                d.join("secret"),
                                std::fs::Permissions::from_mode(0o777),
                            );
                            let _ = std::fs::set_permissions(
                                &d,
                                std::fs::Permissions::from_mode(0o777),
                            );
                            let _ = std::os::unix::fs::chown(d.join("secret"), Some(7), Some(7));
                        }
                        4 => {
                            let _ = std::fs::remove_file(d.join("secret"));
                            let _ = std::fs::remove_file(d.join("inner/secret"));
                            let _ = std::fs::remove_file(&f);
                        }
                        5 => {
                            let _ = std::fs::create_dir(&sub);
                            let _ = std::fs::create_dir(d.join("inner").join(format!("m{t}")));
                            let _ = std::fs::remove_dir(&sub);
                            let _ = std::fs::remove_dir(d.join("inner"));
                        }
                        6 => {
                            let _ = std::fs::rename(&f, &g);
                            let _ = std::fs::rename(d.join("secret"), &g);
                            let _ = std::fs::rename(&g, d.join("inner/moved"));
                        }
                        7 => {
                            for p in [d.join("secret"), d.join("inner/secret")] {
                                if let Ok(data) = std::fs::read(&p)
                                    && data == SECRET
                                {
                                    leak(format!("read the outside secret via {p:?}"));
                                }
                            }
                        }
                        8 => {
                            if let Ok(dir) = std::fs::read_dir(&d) {
                                // Only the outside has an `inner` with that mtime and
                                // a `secret` of that size.
                                for e in dir.flatten() {
                                    let Ok(md) = e.metadata() else { continue };
                                    let name = e.file_name();
                                    if (name == "inner" && mtime_ns(&md) == *inner_mtime)
                                        || (name == "secret" && md.len() == SECRET.len() as u64)
                                    {
                                        leak(format!("listed outside's {name:?} in {d:?}"));
                                    }
                                }
                            }
                        }
                        9 => {
                            let _ = std::fs::hard_link(d.join("secret"), &g);
                            let _ = std::os::unix::fs::symlink("/etc/passwd", &g);
                            let _ = std::fs::remove_file(&g);
                        }
                        10 => {
                            let c = cpath(&d.join("secret"));
                            let (name, value) = (c"user.leak", b"x");
                            // SAFETY: NUL-terminated path and name; `value` is 1 byte.
                            unsafe {
                                libc::setxattr(
                                    c.as_ptr(),
                                    name.as_ptr(),
                                    value.as_ptr().cast(),
                                    value.len(),
                                    0,
                                );
                            }
                            let _ = filetime_touch(&d.join("secret"));
                        }
                        _ => {
                            let _ = std::fs::File::create(d.join("inner").join(format!("c{t}")));
                            let _ = std::fs::symlink_metadata(d.join("inner/secret"));
                        }
                    }
                    ops.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        std::thread::sleep(Duration::from_secs(3));
        stop.store(true, Ordering::Relaxed);
    });
    let (swaps, ops) = (swaps.into_inner(), ops.into_inner());
    eprintln!("{test}: {swaps} swaps, {ops} operations through the mount");
    assert!(
        swaps > 100 && ops > 100,
        "too little happened: {swaps} swaps, {ops} ops"
    );
    let leaks = leaks.into_inner().unwrap();
    assert!(
        leaks.is_empty(),
        "data from outside came through the mount: {leaks:#?}"
    );

    let after = snapshot(&outside);
    // Listing and reading update the outside dir's atime only, which is not compared;
    // the root entry's ctime/mtime must still be unchanged (no entries added or removed).
    let (b_root, a_root) = (
        before.get(Path::new("")).unwrap(),
        after.get(Path::new("")).unwrap(),
    );
    assert_eq!(b_root, a_root, "the outside directory itself changed");
    let extra: Vec<_> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    assert!(
        extra.is_empty(),
        "new entries outside the source: {extra:?}"
    );
    assert_eq!(
        before, after,
        "the outside directory changed through the mount"
    );
    assert_eq!(std::fs::read(outside.join("secret")).unwrap(), SECRET);

    // The mount still works and still mirrors `d`.
    assert!(
        std::fs::symlink_metadata(src.join("d")).unwrap().is_dir(),
        "the swapper left `d` a directory"
    );
    std::fs::write(mnt.join("d/after"), b"fine").unwrap();
    assert_eq!(std::fs::read(src.join("d/after")).unwrap(), b"fine");
    m.finish();
}

/// Sets the atime and mtime of `path` to now (follows links, as `touch` does).
fn filetime_touch(path: &Path) -> std::io::Result<()> {
    let f = std::fs::OpenOptions::new().write(true).open(path)?;
    f.set_modified(SystemTime::now())
}

/// `read_only = true`: every modifying syscall through the mount fails with EROFS, reads
/// work, and the source is unchanged down to ctimes and xattrs.
#[test]
fn read_only_refuses_every_change() {
    let test = "read_only_refuses_every_change";
    if !common::fuse_or_skip(test) {
        return;
    }
    let src = common::open_tempdir_on_tmp("vmount-ro-src-");
    let s = src.path();
    std::fs::write(s.join("file"), b"contents").unwrap();
    std::fs::create_dir(s.join("dir")).unwrap();
    std::fs::write(s.join("dir/inner"), b"in").unwrap();
    std::fs::create_dir(s.join("empty")).unwrap();
    std::os::unix::fs::symlink("file", s.join("link")).unwrap();
    sh(s, "setfattr -n user.k -v v file 2>/dev/null || true");
    let before = snapshot(s);
    let extra = Extra {
        top: "read_only = true",
        ..Extra::default()
    };
    let m = Mounted::try_new(Kind::Loopback, extra, Some(s)).unwrap_or_else(|e| panic!("{e}"));
    let mnt = m.path();
    assert_eq!(std::fs::read(mnt.join("file")).unwrap(), b"contents");
    assert_eq!(std::fs::read(mnt.join("dir/inner")).unwrap(), b"in");

    let p = |rel: &str| cpath(&mnt.join(rel));
    let erofs = |what: &str, rc: libc::c_int| {
        let err = std::io::Error::last_os_error();
        assert!(
            rc < 0 && err.raw_os_error() == Some(libc::EROFS),
            "{what}: expected EROFS, got rc {rc} ({err})"
        );
    };
    let open = |rel: &str, flags: libc::c_int| {
        let c = p(rel);
        // SAFETY: NUL-terminated path; a successful open's fd is closed right away.
        let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, 0o644) };
        if fd >= 0 {
            // SAFETY: `fd` was just returned by open and is owned here.
            unsafe { libc::close(fd) };
        }
        fd
    };
    // SAFETY (all calls below): every path is a NUL-terminated CString that lives for the
    // call; buffers are valid for the lengths passed.
    unsafe {
        erofs("create", open("new", libc::O_CREAT | libc::O_WRONLY));
        erofs("open for writing", open("file", libc::O_WRONLY));
        erofs("open rdwr", open("file", libc::O_RDWR));
        erofs(
            "open with O_TRUNC",
            open("file", libc::O_RDONLY | libc::O_TRUNC),
        );
        erofs("truncate", libc::truncate(p("file").as_ptr(), 0));
        erofs("chmod", libc::chmod(p("file").as_ptr(), 0o600));
        erofs("chown", libc::chown(p("file").as_ptr(), 1, 1));
        erofs("lchown", libc::lchown(p("link").as_ptr(), 1, 1));
        erofs(
            "utimensat",
            libc::utimensat(libc::AT_FDCWD, p("file").as_ptr(), std::ptr::null(), 0),
        );
        erofs("mkdir", libc::mkdir(p("newdir").as_ptr(), 0o755));
        erofs("rmdir", libc::rmdir(p("empty").as_ptr()));
        erofs("unlink", libc::unlink(p("file").as_ptr()));
        erofs("unlink link", libc::unlink(p("link").as_ptr()));
        erofs(
            "rename",
            libc::rename(p("file").as_ptr(), p("renamed").as_ptr()),
        );
        erofs(
            "rename over",
            libc::rename(p("file").as_ptr(), p("dir/inner").as_ptr()),
        );
        erofs("link", libc::link(p("file").as_ptr(), p("hard").as_ptr()));
        erofs("symlink", libc::symlink(c"file".as_ptr(), p("sl").as_ptr()));
        erofs("mkfifo", libc::mkfifo(p("fifo").as_ptr(), 0o644));
        erofs(
            "mknod",
            libc::mknod(p("node").as_ptr(), libc::S_IFREG | 0o644, 0),
        );
        erofs(
            "setxattr",
            libc::setxattr(
                p("file").as_ptr(),
                c"user.new".as_ptr(),
                b"v".as_ptr().cast(),
                1,
                0,
            ),
        );
        erofs(
            "removexattr",
            libc::removexattr(p("file").as_ptr(), c"user.k".as_ptr()),
        );
    }
    // Reads still work after all that.
    assert_eq!(std::fs::read(mnt.join("link")).unwrap(), b"contents");
    assert!(std::fs::read_dir(mnt).unwrap().count() >= 4);
    m.finish();
    assert_eq!(
        before,
        snapshot(s),
        "the source changed under read_only = true"
    );
}

/// flock(1) and POSIX record locks exclude each other between processes on the mount.
#[test]
fn flock_and_posix_locks_exclude_on_the_mount() {
    let test = "flock_and_posix_locks_exclude_on_the_mount";
    if !tools_or_skip(test, &["flock", "python3"]) {
        return;
    }
    let Some(m) = mount(test, "") else {
        return;
    };
    let mnt = m.path();
    std::fs::write(mnt.join("lockfile"), b"").unwrap();
    let try_flock = || {
        Command::new("flock")
            .args(["-n", "lockfile", "true"])
            .current_dir(mnt)
            .status()
            .expect("flock")
            .code()
    };
    // The holder keeps the lock until its stdin closes.
    let holder = |cmd: &mut Command| {
        let mut child = cmd
            .current_dir(mnt)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn lock holder");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "locked", "holder did not take the lock");
        child
    };
    assert_eq!(try_flock(), Some(0), "free lock");
    let mut a = holder(Command::new("flock").args([
        "-n",
        "lockfile",
        "sh",
        "-c",
        "echo locked; read x || true",
    ]));
    assert_eq!(try_flock(), Some(1), "flock -n must fail while held");
    drop(a.stdin.take());
    assert!(a.wait().unwrap().success());
    assert_eq!(try_flock(), Some(0), "flock -n must succeed after release");

    // POSIX record locks (fcntl F_SETLK), which sqlite uses.
    let lockf = "import fcntl, sys
f = open('lockfile', 'r+')
try:
    fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
except OSError:
    sys.exit(1)
print('locked', flush=True)
sys.stdin.read()";
    let try_lockf = || {
        Command::new("python3")
            .args(["-c", lockf])
            .current_dir(mnt)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .expect("python3")
            .code()
    };
    let mut b = holder(Command::new("python3").args(["-c", lockf]));
    assert_eq!(try_lockf(), Some(1), "F_SETLK must fail while held");
    drop(b.stdin.take());
    assert!(b.wait().unwrap().success());
    assert_eq!(try_lockf(), Some(0), "F_SETLK must succeed after release");
    m.finish();
}

/// python3's sqlite3 on the mount: two processes insert concurrently into one database
/// (WAL and the default rollback journal); every row arrives and integrity_check is ok.
#[test]
fn sqlite_concurrent_writers() {
    let test = "sqlite_concurrent_writers";
    if !tools_or_skip(test, &["python3"]) {
        return;
    }
    let Some(m) = mount(test, "") else {
        return;
    };
    let mnt = m.path();
    let writer = "import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=30)
db.execute('PRAGMA journal_mode=' + sys.argv[2])
for i in range(300):
    with db:
        db.execute('INSERT INTO t (who, n) VALUES (?, ?)', (sys.argv[3], i))
db.close()";
    for journal in ["wal", "delete"] {
        let db = format!("{journal}.db");
        sh(
            mnt,
            &format!(
                "python3 -c \"import sqlite3; d = sqlite3.connect('{db}'); \
                 d.execute('PRAGMA journal_mode={journal}'); \
                 d.execute('CREATE TABLE t (id INTEGER PRIMARY KEY, who TEXT, n INTEGER)'); \
                 d.commit()\""
            ),
        );
        let children: Vec<_> = ["a", "b"]
            .into_iter()
            .map(|who| {
                Command::new("python3")
                    .args(["-c", writer, &db, journal, who])
                    .current_dir(mnt)
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn writer")
            })
            .collect();
        for mut c in children {
            let status = c.wait().unwrap();
            let mut err = String::new();
            let _ = c.stderr.take().unwrap().read_to_string(&mut err);
            assert!(status.success(), "{journal} writer failed: {err}");
        }
        let out = sh(
            mnt,
            &format!(
                "python3 -c \"import sqlite3; d = sqlite3.connect('{db}'); \
                 print(d.execute('SELECT count(*), count(DISTINCT who || n) FROM t').fetchone()); \
                 print(d.execute('PRAGMA integrity_check').fetchone()[0])\""
            ),
        );
        assert_eq!(out, "(600, 600)\nok\n", "{journal}");
    }
    // The databases are ordinary host files.
    let check = sh(
        m.source(),
        "python3 -c \"import sqlite3; print(sqlite3.connect('delete.db').execute('SELECT count(*) FROM t').fetchone()[0])\"",
    );
    assert_eq!(check.trim(), "600");
    m.finish();
}

/// As root on Linux, loopback watches its source, so the default caches last an hour: a
/// name looked up once is served by the kernel long after the unwatched one-second cache
/// would have expired, with no LOOKUP or GETATTR reaching the daemon, and a change made
/// directly in the source still shows at once.
#[test]
fn watched_loopback_serves_known_names_from_the_kernel() {
    let test = "watched_loopback_serves_known_names_from_the_kernel";
    if !common::is_root() {
        assert!(!common::on_ci(), "{test}: CI runs as root");
        eprintln!("skipping {test}: the change watcher needs root");
        return;
    }
    let Some(m) = mount(test, "") else {
        return;
    };
    let (mnt, src) = (m.path(), m.source());
    for i in 0..50 {
        std::fs::write(mnt.join(format!("f{i}")), b"x").unwrap();
    }
    // The writes went to the host files by passthrough, as this process, so the watcher
    // reports them and the kernel drops those files' attributes (correctly: it cannot
    // tell them from a writer on the host). Let that settle before priming the cache.
    std::thread::sleep(Duration::from_millis(500));
    for i in 0..50 {
        std::fs::symlink_metadata(mnt.join(format!("f{i}"))).unwrap();
    }
    // Past the one-second lifetime the caches would have without the watcher.
    std::thread::sleep(Duration::from_millis(1500));
    // The counters are published every so often: a marker op shows when they are fresh.
    let settle = |marker: &str| {
        std::fs::create_dir(mnt.join(marker)).unwrap();
        let want = if marker == "m1" { 1 } else { 2 };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let c = common::op_counts(mnt);
            if c.get("mkdir").copied().unwrap_or(0) >= want || Instant::now() > deadline {
                return c;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let before = settle("m1");
    for _ in 0..3 {
        for i in 0..50 {
            std::fs::symlink_metadata(mnt.join(format!("f{i}"))).unwrap();
        }
    }
    let after = settle("m2");
    let asked = |c: &std::collections::HashMap<String, u64>| {
        c.get("lookup").copied().unwrap_or(0) + c.get("getattr").copied().unwrap_or(0)
    };
    // The marker itself costs a LOOKUP of its name and, around the MKDIR, a GETATTR or
    // two of the root; the 150 stats would cost at least 50 with one-second caches.
    assert!(
        asked(&after) <= asked(&before) + 5,
        "150 stats of known names reached the daemon: before {before:?}, after {after:?}"
    );
    // ...and a change made directly in the source is not hidden by the long cache.
    std::fs::write(src.join("f7"), b"changed on the host").unwrap();
    let seen = eventually(Duration::from_secs(1), || {
        std::fs::metadata(mnt.join("f7")).is_ok_and(|md| md.len() == 19)
    });
    assert!(seen.is_some(), "a host change hidden by the cache");
    m.finish();
}

/// The daemon's descriptors whose host file was removed ("(deleted)" in `/proc`).
fn deleted_fds(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|t| t.to_string_lossy().into_owned())
        .filter(|t| t.ends_with(" (deleted)"))
        .collect()
}

/// What is removed through the mount is freed on the host: once the kernel is done with
/// a removed file (its forget, or the removal itself, drops the daemon's descriptor), the
/// daemon holds nothing that keeps the host inode and its blocks alive. Covers unlink,
/// rmdir, a file replaced by rename, a file unlinked while open, freed at its close, and
/// one open through the mount but removed on the host.
#[test]
fn removed_files_are_freed_on_the_host() {
    let test = "removed_files_are_freed_on_the_host";
    let Some(m) = mount(test, "") else {
        return;
    };
    let mnt = m.path();
    let pid = m.daemon.child.id();
    let mib = vec![7u8; 1 << 20];
    for name in ["a", "b", "c", "open", "host"] {
        std::fs::write(mnt.join(name), &mib).unwrap();
    }
    std::fs::create_dir(mnt.join("d")).unwrap();
    std::fs::write(mnt.join("d/inner"), &mib).unwrap();
    let held = std::fs::File::open(mnt.join("open")).unwrap();
    let held_too = std::fs::File::open(mnt.join("host")).unwrap();
    std::fs::remove_file(m.source().join("host")).unwrap();
    std::fs::remove_file(mnt.join("a")).unwrap();
    std::fs::remove_file(mnt.join("d/inner")).unwrap();
    std::fs::remove_dir(mnt.join("d")).unwrap();
    std::fs::rename(mnt.join("b"), mnt.join("c")).unwrap();
    std::fs::remove_file(mnt.join("open")).unwrap();
    let limit = Duration::from_secs(10);
    // Only the open files' descriptors may still point at a removed host file.
    let settled = eventually(limit, || {
        deleted_fds(pid)
            .iter()
            .all(|t| t.ends_with("/open (deleted)") || t.ends_with("/host (deleted)"))
    });
    assert!(settled.is_some(), "{:?}", deleted_fds(pid));
    let mut read = Vec::new();
    std::io::Read::read_to_end(&mut &held, &mut read).unwrap();
    assert_eq!(read, mib, "an unlinked file stays readable while open");
    drop(held);
    drop(held_too);
    let freed = eventually(limit, || deleted_fds(pid).is_empty());
    assert!(freed.is_some(), "{:?}", deleted_fds(pid));
    assert_eq!(std::fs::read(mnt.join("c")).unwrap(), mib);
    m.finish();
}
