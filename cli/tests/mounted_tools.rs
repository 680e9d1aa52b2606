//! Tier 3: a filesystem mounted through the real `vmount` binary and FUSE, used the way
//! people use a filesystem: std::fs, coreutils (cp, mv, ln, chmod, touch, dd, df), tar round
//! trips, git, a python3 script of os calls, large files, big directories and another user
//! through `allow_other`. Every case runs against memfs and against loopback (a fresh 0755
//! source dir on /tmp): `both!` generates `memfs::<case>` and `loopback::<case>` tests from
//! one function taking a [`Kind`]. The configured size limit is memfs-only.
//!
//! Every mount is held by a `Daemon` guard that kills the daemon and clears the mount on
//! drop, even when an assertion fails.
#![cfg(target_os = "linux")]

mod common;

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;
use std::process::Command;

use common::{Extra, Kind, Mounted, as_nobody, settled_counts, sh, tools_or_skip};

/// Generates, for each case function `f(Kind)`, the tests `memfs::f` and `loopback::f`.
macro_rules! both {
    ($($case:ident),* $(,)?) => {
        mod memfs {
            $(#[test] fn $case() { super::$case(super::Kind::Memfs) })*
        }
        mod loopback {
            $(#[test] fn $case() { super::$case(super::Kind::Loopback) })*
        }
    };
}

both!(
    coreutils_cp_mv_ln_chmod_touch,
    tar_round_trip,
    git_init_commit_clone_fsck,
    python_os_calls,
    large_file_checksum,
    many_files_list_and_remove,
    other_user_with_allow_other,
    other_user_refused_by_default,
    writes_drop_setuid_and_file_capabilities,
    acls_are_enforced_or_refused,
    ioctls_and_polls_are_answered_quietly,
);

fn mount(test: &str, kind: Kind, extra: Extra<'_>) -> Option<Mounted> {
    Mounted::new(&format!("{}::{test}", kind.name()), kind, extra)
}

fn coreutils_cp_mv_ln_chmod_touch(kind: Kind) {
    let Some(m) = mount("coreutils_cp_mv_ln_chmod_touch", kind, Extra::default()) else {
        return;
    };
    let mnt = m.path();
    sh(
        mnt,
        "printf 'alpha\\n' > a
         cp a b
         mv b c
         ln c hard
         ln -s c soft
         chmod 640 c
         touch -d '2001-02-03 04:05:06' a
         mkdir -p d/e/f
         cp -r d d2
         mv d2 d/e/f/",
    );
    assert_eq!(std::fs::read_to_string(mnt.join("c")).unwrap(), "alpha\n");
    assert!(!mnt.join("b").exists());
    let c = std::fs::metadata(mnt.join("c")).unwrap();
    let hard = std::fs::metadata(mnt.join("hard")).unwrap();
    assert_eq!(c.ino(), hard.ino(), "hard link shares the inode");
    assert_eq!(c.nlink(), 2);
    assert_eq!(c.mode() & 0o7777, 0o640);
    assert_eq!(
        std::fs::read_link(mnt.join("soft")).unwrap(),
        Path::new("c")
    );
    assert_eq!(
        std::fs::read_to_string(mnt.join("soft")).unwrap(),
        "alpha\n"
    );
    let a = std::fs::metadata(mnt.join("a")).unwrap();
    let out = sh(mnt, "date -u -d @$(stat -c %Y a) +%Y || true");
    assert!(a.mtime() > 0 && !out.is_empty());
    assert!(mnt.join("d/e/f/d2/e/f").is_dir());
    // A directory's nlink counts its subdirectories.
    assert_eq!(std::fs::metadata(mnt.join("d/e/f")).unwrap().nlink(), 3);
    sh(mnt, "rm -r d c hard soft a && test -z \"$(ls -A)\"");
    m.finish();
}

/// A tree with every kind of entry, tarred on the host, extracted onto the mount, tarred
/// from the mount and extracted back: contents, modes, mtimes, symlinks and hard links survive.
fn tar_round_trip(kind: Kind) {
    if !tools_or_skip("tar_round_trip", &["tar", "sha256sum"]) {
        return;
    }
    let Some(m) = mount("tar_round_trip", kind, Extra::default()) else {
        return;
    };
    let mnt = m.path();
    let host = tempfile::tempdir().unwrap();
    let h = host.path();
    sh(
        h,
        "mkdir -p src/sub/deeper src/empty
         head -c 3000000 /dev/urandom > src/big.bin
         printf 'small' > src/sub/small.txt
         : > src/sub/deeper/zero
         ln src/big.bin src/big.hard
         ln -s sub/small.txt src/link
         mkfifo src/fifo
         truncate -s 10M src/sparse
         printf 'tail' >> src/sparse
         chmod 751 src/sub; chmod 604 src/sub/small.txt; chmod 4755 src/big.bin
         touch -h -d '2010-01-01 00:00:00' src/link
         find src -exec touch -h -d '2012-06-01 12:00:00' {} +
         tar --numeric-owner -cf in.tar src
         (cd src && find . -type f -exec sha256sum {} + | sort -k2) > sums.txt",
    );
    let tar_in = h.join("in.tar");
    sh(
        mnt,
        &format!("tar --numeric-owner -xpf {}", tar_in.display()),
    );
    sh(
        mnt,
        &format!("tar --numeric-owner -cf {}/out.tar src", h.display()),
    );
    sh(
        h,
        "mkdir back && tar --numeric-owner -xpf out.tar -C back
         (cd back/src && find . -type f -exec sha256sum {} + | sort -k2) > back-sums.txt
         cmp sums.txt back-sums.txt",
    );
    // Metadata the way ls shows it must be identical on the host and through the mount.
    let listing = "find src -printf '%p %y %m %n %s %TY-%Tm-%Td %l\\n' | sort";
    let on_host = sh(h, listing);
    let on_mount = sh(mnt, listing);
    let back = sh(&h.join("back"), listing);
    assert_eq!(
        on_host, on_mount,
        "host tree vs the tree extracted on the mount"
    );
    assert_eq!(
        on_host, back,
        "host tree vs the tree tarred back from the mount"
    );
    let big = std::fs::metadata(mnt.join("src/big.bin")).unwrap();
    assert_eq!(
        big.ino(),
        std::fs::metadata(mnt.join("src/big.hard")).unwrap().ino()
    );
    let sparse = std::fs::metadata(mnt.join("src/sparse")).unwrap();
    assert_eq!(sparse.len(), 10 * 1024 * 1024 + 4);
    m.finish();
}

fn git_init_commit_clone_fsck(kind: Kind) {
    if !tools_or_skip("git_init_commit_clone_fsck", &["git"]) {
        return;
    }
    let Some(m) = mount("git_init_commit_clone_fsck", kind, Extra::default()) else {
        return;
    };
    let mnt = m.path();
    let git = "git -c user.name=t -c user.email=t@example.invalid -c init.defaultBranch=main \
               -c safe.directory=*";
    sh(
        mnt,
        &format!(
            "{git} init -q repo
             cd repo
             for i in $(seq 1 200); do mkdir -p d$((i % 7)); echo line $i > d$((i % 7))/f$i.txt; done
             head -c 2000000 /dev/urandom > blob.bin
             {git} add -A
             {git} commit -qm first
             echo more >> d1/f1.txt
             {git} mv blob.bin moved.bin
             {git} commit -qam second
             {git} gc -q
             {git} fsck --strict
             cd ..
             {git} clone -q --no-local repo clone
             cd clone
             {git} fsck --strict
             test \"$({git} rev-parse HEAD)\" = \"$(cd ../repo && {git} rev-parse HEAD)\"
             test $({git} ls-files | wc -l) -eq 201
             {git} status --porcelain | wc -l | grep -qx 0"
        ),
    );
    m.finish();
}

/// The os-level calls programs make, each checked in Python (the script exits non-zero on
/// the first mismatch and says which).
fn python_os_calls(kind: Kind) {
    if !tools_or_skip("python_os_calls", &["python3"]) {
        return;
    }
    let Some(m) = mount("python_os_calls", kind, Extra::default()) else {
        return;
    };
    let script = r#"
import errno, os, stat, sys, threading
root = sys.argv[1]
os.chdir(root)
def expect_errno(code, fn, *a):
    try:
        fn(*a)
    except OSError as e:
        assert e.errno == code, (fn.__name__, a, e)
        return
    raise AssertionError(f"{fn.__name__}{a} did not fail with {errno.errorcode[code]}")

# O_APPEND, pread/pwrite, truncate, fstat sizes
fd = os.open("f", os.O_CREAT | os.O_RDWR | os.O_EXCL, 0o644)
assert os.write(fd, b"hello") == 5
assert os.pwrite(fd, b"J", 0) == 1
assert os.pread(fd, 10, 0) == b"Jello"
os.close(fd)
expect_errno(errno.EEXIST, os.open, "f", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
fd = os.open("f", os.O_WRONLY | os.O_APPEND)
os.lseek(fd, 0, os.SEEK_SET)
os.write(fd, b"!")
os.close(fd)
assert open("f", "rb").read() == b"Jello!"
os.truncate("f", 2)
assert os.stat("f").st_size == 2
os.truncate("f", 100000)
st = os.stat("f")
assert st.st_size == 100000 and open("f", "rb").read()[2:] == bytes(99998)

# sparse files, SEEK_DATA/SEEK_HOLE, fallocate, copy_file_range
fd = os.open("sparse", os.O_CREAT | os.O_RDWR, 0o600)
os.pwrite(fd, b"x" * 4096, 8 << 20)
st = os.fstat(fd)
assert st.st_size == (8 << 20) + 4096, st
assert st.st_blocks * 512 < (1 << 20), ("holes must not use space", st.st_blocks)
data = os.lseek(fd, 0, os.SEEK_DATA)
assert 0 < data <= 8 << 20, data
assert os.lseek(fd, data, os.SEEK_HOLE) >= (8 << 20) + 4096
os.posix_fallocate(fd, 0, 65536)
assert os.fstat(fd).st_blocks * 512 >= 65536
dst = os.open("copy", os.O_CREAT | os.O_RDWR, 0o600)
n = os.copy_file_range(fd, dst, 4096, 8 << 20, 0)
assert n == 4096 and os.pread(dst, 4096, 0) == b"x" * 4096, n
os.close(dst); os.close(fd)

# links, symlinks, rename, replace, utime, chmod
os.link("f", "f2")
assert os.stat("f").st_nlink == 2 and os.stat("f").st_ino == os.stat("f2").st_ino
os.symlink("f", "sl")
assert os.readlink("sl") == "f" and stat.S_ISLNK(os.lstat("sl").st_mode)
os.mkdir("dir", 0o750)
assert stat.S_IMODE(os.stat("dir").st_mode) == 0o750
os.rename("f2", "dir/moved")
os.replace("copy", "dir/moved")
assert os.stat("f").st_nlink == 1
expect_errno(errno.ENOTEMPTY, os.rmdir, "dir")
expect_errno(errno.EISDIR, os.rename, "f", "dir")
os.utime("f", ns=(1_000_000_123, 2_000_000_456))
st = os.stat("f")
assert (st.st_atime_ns, st.st_mtime_ns) == (1_000_000_123, 2_000_000_456), st
os.chmod("f", 0o4711)
assert stat.S_IMODE(os.stat("f").st_mode) == 0o4711
os.mkfifo("fifo")
assert stat.S_ISFIFO(os.stat("fifo").st_mode)
expect_errno(errno.ENOENT, os.stat, "nope")
expect_errno(errno.ENOTDIR, os.stat, "f/x")
expect_errno(errno.ENAMETOOLONG, os.open, "n" * 256, os.O_CREAT | os.O_WRONLY)
open("n" * 255, "w").close()

# xattrs
os.setxattr("f", "user.k", b"v\x00w")
assert os.getxattr("f", "user.k") == b"v\x00w"
assert "user.k" in os.listxattr("f")
expect_errno(errno.EEXIST, os.setxattr, "f", "user.k", b"", os.XATTR_CREATE)
expect_errno(errno.ENODATA, os.setxattr, "f", "user.none", b"", os.XATTR_REPLACE)
os.removexattr("f", "user.k")
expect_errno(errno.ENODATA, os.getxattr, "f", "user.k")

# unlink while open, rename over an open file
fd = os.open("gone", os.O_CREAT | os.O_RDWR, 0o600)
os.write(fd, b"still here")
os.unlink("gone")
assert os.fstat(fd).st_nlink == 0
os.pwrite(fd, b"STILL", 0)
assert os.pread(fd, 100, 0) == b"STILL here"
os.close(fd)
fd = os.open("victim", os.O_CREAT | os.O_RDWR, 0o600)
os.write(fd, b"old")
open("newer", "w").write("new")
os.rename("newer", "victim")
assert os.pread(fd, 10, 0) == b"old" and open("victim").read() == "new"
os.close(fd)

# listing and statvfs
names = sorted(os.listdir("."))
assert names == sorted(["f", "sl", "dir", "fifo", "sparse", "n" * 255, "victim"]), names
assert [e.name for e in os.scandir("dir")] == ["moved"]
sv = os.statvfs(".")
assert sv.f_namemax == 255 and sv.f_bsize > 0 and sv.f_bfree <= sv.f_blocks, sv

# concurrent writers to one file
fd = os.open("shared", os.O_CREAT | os.O_RDWR, 0o600)
def writer(k):
    for i in range(64):
        os.pwrite(fd, bytes([k]) * 4096, (i * 8 + k) * 4096)
ts = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
[t.start() for t in ts]; [t.join() for t in ts]
blob = os.pread(fd, 64 * 8 * 4096, 0)
for i in range(64 * 8):
    assert blob[i * 4096:(i + 1) * 4096] == bytes([i % 8]) * 4096, i
os.close(fd)
print("ok")
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(m.path())
        .output()
        .expect("run python3");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok",
        "python os calls failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    m.finish();
}

/// Big sequential I/O through the kernel: 64 MiB with dd in 1 MiB blocks, checksummed,
/// with and without the kernel writeback cache; for loopback also with FUSE passthrough
/// off and on (then data bypasses the daemon), and the file must land on the host intact.
fn large_file_checksum(kind: Kind) {
    if !tools_or_skip("large_file_checksum", &["dd", "sha256sum"]) {
        return;
    }
    let test = format!("{}::large_file_checksum", kind.name());
    let configs: &[&str] = match kind {
        Kind::Memfs => &["writeback_cache = false", "writeback_cache = true"],
        Kind::Loopback => &[
            "passthrough = \"off\"\nwriteback_cache = false",
            "passthrough = \"off\"\nwriteback_cache = true",
            "passthrough = \"on\"",
        ],
    };
    let host = tempfile::tempdir().unwrap();
    let src = host.path().join("src.bin");
    sh(host.path(), "head -c 67108864 /dev/urandom > src.bin");
    for fuse in configs {
        let m = if let Some(rest) = fuse.strip_prefix("passthrough = \"on\"") {
            common::mount_passthrough_on(&test, rest, None)
        } else {
            Mounted::new(&test, kind, Extra::fuse(fuse))
        };
        let Some(m) = m else {
            continue;
        };
        sh(
            m.path(),
            &format!(
                "dd if={} of=big bs=1M status=none conv=fsync
                 test \"$(sha256sum < big)\" = \"$(sha256sum < {})\"
                 dd if=big of=/dev/null bs=4k status=none
                 test $(stat -c %s big) -eq 67108864",
                src.display(),
                src.display()
            ),
        );
        if kind == Kind::Loopback {
            let on_host = std::fs::read(m.source().join("big")).unwrap();
            assert!(
                on_host == std::fs::read(&src).unwrap(),
                "{fuse}: the file in the source differs from what was written"
            );
        }
        m.finish();
    }
}

/// A 5,000-entry directory lists completely through readdirplus paging and removes cleanly.
fn many_files_list_and_remove(kind: Kind) {
    let Some(m) = mount("many_files_list_and_remove", kind, Extra::default()) else {
        return;
    };
    let out = sh(
        m.path(),
        "mkdir big && cd big && seq -f 'file-%05g' 1 5000 | xargs touch
         ls -l | tail -n +2 | wc -l
         ls -U | sort | uniq -d | wc -l",
    );
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["5000", "0"]);
    sh(m.path(), "rm -r big && test ! -e big");
    m.finish();
}

/// `size_limit` reaches the mount: df reports it, and writing past it fails with ENOSPC
/// while what was written before stays intact.
#[test]
fn memfs_size_limit_enospc_and_statfs() {
    let extra = Extra {
        filesystem: "size_limit = \"8MiB\"",
        ..Extra::default()
    };
    let Some(m) = Mounted::new("memfs_size_limit_enospc_and_statfs", Kind::Memfs, extra) else {
        return;
    };
    let mnt = m.path();
    let total = sh(
        mnt,
        "stat -f -c '%b*%S' . | bc 2>/dev/null || stat -f -c '%b %S' .",
    );
    let nums: Vec<u64> = total
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    let bytes = match nums.as_slice() {
        [b] => *b,
        [b, s] => b * s,
        _ => panic!("unexpected stat -f output {total:?}"),
    };
    assert_eq!(
        bytes,
        8 << 20,
        "statfs total size must be the configured limit"
    );
    std::fs::write(mnt.join("keep"), vec![7u8; 1 << 20]).unwrap();
    let err = std::fs::write(mnt.join("too-big"), vec![1u8; 9 << 20]).expect_err("over the limit");
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    assert_eq!(std::fs::read(mnt.join("keep")).unwrap(), vec![7u8; 1 << 20]);
    std::fs::remove_file(mnt.join("too-big")).unwrap();
    // Space is given back: the same amount fits again after the delete.
    std::fs::write(mnt.join("again"), vec![2u8; 6 << 20]).unwrap();
    m.finish();
}

/// With `allow_other`, another user sees the mount but the permission bits hold: `nobody`
/// reads a 0644 file, cannot write it, cannot create in a 0755 root-owned directory, and can
/// write in a directory it owns.
fn other_user_with_allow_other(kind: Kind) {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping other_user_with_allow_other: needs root to switch users");
        return;
    }
    if !tools_or_skip("other_user_with_allow_other", &["setpriv"]) {
        return;
    }
    let Some(m) = mount(
        "other_user_with_allow_other",
        kind,
        Extra::fuse("allow_other = true"),
    ) else {
        return;
    };
    // (Mounted makes the dir above the mountpoint 0755, so nobody can walk to the mount.)
    let mnt = m.path();
    std::fs::write(mnt.join("public"), b"read me").unwrap();
    std::fs::set_permissions(mnt.join("public"), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::create_dir(mnt.join("nobodys")).unwrap();
    std::os::unix::fs::chown(mnt.join("nobodys"), Some(65534), Some(65534)).unwrap();
    let as_nobody = |script: &str| {
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "sh",
                "-c",
                script,
            ])
            .current_dir(mnt)
            .output()
            .expect("setpriv")
    };
    let out = as_nobody("cat public");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "read me", "{out:?}");
    let out = as_nobody("echo x >> public");
    assert!(
        !out.status.success(),
        "nobody must not write a 0644 root file"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{out:?}"
    );
    let out = as_nobody("touch newfile");
    assert!(
        !out.status.success(),
        "nobody must not create in a 0755 root dir"
    );
    let out = as_nobody("echo mine > nobodys/file && stat -c '%u:%g' nobodys/file");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "65534:65534",
        "{out:?}"
    );
    m.finish();
}

/// Without `allow_other` (the default), another user cannot even look at the mount.
fn other_user_refused_by_default(kind: Kind) {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping other_user_refused_by_default: needs root to switch users");
        return;
    }
    if !tools_or_skip("other_user_refused_by_default", &["setpriv"]) {
        return;
    }
    let Some(m) = mount("other_user_refused_by_default", kind, Extra::default()) else {
        return;
    };
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "ls"])
        .arg(m.path())
        .output()
        .expect("setpriv");
    assert!(
        !out.status.success(),
        "allow_other is off by default: {out:?}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{out:?}"
    );
    m.finish();
}

/// What Linux's `file_remove_privs` promises, through the mount: a write by root keeps
/// setuid/setgid, a write by another user drops both (setgid because group-exec is set),
/// and any write drops `security.capability`. Both filesystems take this job from the
/// kernel (FUSE_HANDLE_KILLPRIV_V2): memfs does it itself; loopback writes as the caller
/// and lets the host do it, so a non-root writer's handle on a setuid/setgid file must
/// not be passed through (passthrough writes carry the daemon's root credentials).
fn writes_drop_setuid_and_file_capabilities(kind: Kind) {
    let test = "writes_drop_setuid_and_file_capabilities";
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping {test}: needs root to switch users and set file capabilities");
        return;
    }
    if !tools_or_skip(test, &["setpriv", "python3"]) {
        return;
    }
    let Some(m) = mount(test, kind, Extra::fuse("allow_other = true")) else {
        return;
    };
    let mnt = m.path();
    let script = r#"
import os, stat, struct, sys
os.chdir(sys.argv[1])
mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)
for p in ("f", "g"):
    with open(p, "wb") as f:
        f.write(b"x")
    os.chmod(p, 0o6777)
# Root (CAP_FSETID) keeps the bits.
with open("f", "ab") as f:
    f.write(b"root")
assert mode("f") == 0o6777, oct(mode("f"))
# File capabilities: VFS_CAP_REVISION_2 with the effective flag, CAP_NET_RAW permitted.
caps = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)
os.setxattr("g", "security.capability", caps)
assert os.getxattr("g", "security.capability") == caps
with open("g", "ab") as f:
    f.write(b"any write drops file capabilities")
try:
    os.getxattr("g", "security.capability")
    sys.exit("security.capability survived a write")
except OSError:
    pass
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(mnt)
        .output()
        .expect("python3");
    assert!(out.status.success(), "{out:?}");
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sh",
            "-c",
            "echo nobody >> f",
        ])
        .current_dir(mnt)
        .output()
        .expect("setpriv");
    assert!(out.status.success(), "{out:?}");
    let mode = std::fs::metadata(mnt.join("f"))
        .unwrap()
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(
        mode, 0o777,
        "a write by another user must drop setuid and setgid"
    );
    // While root holds the file open for reading, which gives the inode a passthrough
    // open, another user's write handle cannot be passed through (the kernel takes no
    // other kind beside it) and must not be (its writes must reach the filesystem to drop
    // the bits): the open fails with ETXTBSY and the bits stay; once root closes, the
    // write works and drops them. And while that user holds a write handle, which is not
    // passed through, root's reads must work (the kernel refuses a passthrough open
    // beside a cached one with EIO).
    let nobody = "setpriv --reuid=65534 --regid=65534 --clear-groups sh -c";
    // (The mode is read with stat(2): a statx asking for the mode alone may be answered
    // from the kernel's cache, which a write does not refresh.)
    let out = sh(
        mnt,
        &format!(
            "mode() {{ python3 -c 'import os; print(oct(os.stat(\"f\").st_mode & 0o7777)[2:])'; }}
             chmod 6777 f
             exec 3< f
             {nobody} 'echo again >> f' 2>&1 || true
             mode
             exec 3<&-
             {nobody} 'echo again >> f'
             mode
             chmod 6777 f
             a=$(mktemp -u) b=$(mktemp -u)
             mkfifo -m 666 $a $b
             {nobody} \"exec 4>> f; echo opened > $a; timeout 10 cat $b > /dev/null; echo later >&4\" &
             read x < $a
             if cat f > /dev/null; then r=read; else r=unreadable; fi
             echo go > $b
             wait
             rm $a $b
             echo $r
             mode
             tail -n 1 f"
        ),
    );
    assert_eq!(
        out, "sh: 1: cannot create f: Text file busy\n6777\n777\nread\n777\nlater\n",
        "a write handle that must not be passed through, beside one that is"
    );
    m.finish();
}

/// The GETXATTR requests of `ls -l d` (300 files) in a fresh `ls` process.
fn getxattrs_of_ls(mnt: &Path) -> u64 {
    let marker = mnt.join("public");
    let before = settled_counts(mnt, &marker)["getxattr"];
    let listed = sh(mnt, "ls -l d | tail -n +2 | wc -l");
    assert_eq!(listed.trim(), "300");
    settled_counts(mnt, &marker)["getxattr"] - before
}

/// POSIX ACLs are either real or refused, never stored and ignored. Loopback mirrors the
/// host's: an ACL set through the mount denies `nobody` a file its mode lets it read, and
/// removing it gives access back. memfs has none: setfacl fails with "Operation not
/// supported". Neither carries an SELinux label (`vmount_core::is_selinux_label`). `ls -l`
/// learns from the first file what a device does not support, so listing 300 files costs
/// loopback one GETXATTR each (the ACL), not two, and memfs none.
fn acls_are_enforced_or_refused(kind: Kind) {
    let test = "acls_are_enforced_or_refused";
    if !common::root_or_skip(test) || !tools_or_skip(test, &["setpriv", "setfacl", "getfacl"]) {
        return;
    }
    let Some(m) = mount(test, kind, Extra::fuse("allow_other = true")) else {
        return;
    };
    let mnt = m.path();
    sh(
        mnt,
        "printf 'read me' > public && chmod 644 public
         mkdir d && cd d && seq -f 'f%03g' 1 300 | xargs touch",
    );
    let cat = || as_nobody("cat").arg(mnt.join("public")).output().unwrap();
    assert_eq!(cat().stdout, b"read me", "{:?}", cat());
    let set = Command::new("setfacl")
        .args(["-m", "u:nobody:---"])
        .arg(mnt.join("public"))
        .output()
        .unwrap();
    match kind {
        Kind::Loopback => {
            assert!(set.status.success(), "{set:?}");
            let asked = getxattrs_of_ls(mnt);
            // 300 ACL queries, the one that found the label unsupported, the marker.
            assert!(
                (300..=305).contains(&asked),
                "ls -l of 300 files asked {asked} GETXATTRs: the label must be asked for once"
            );
            let acl = sh(mnt, "getfacl -c public");
            assert!(acl.contains("user:nobody:---"), "{acl}");
            let out = cat();
            assert!(!out.status.success(), "the ACL must deny nobody: {out:?}");
            assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"));
            sh(mnt, "setfacl -b public");
            assert_eq!(cat().stdout, b"read me", "{:?}", cat());
        }
        Kind::Memfs => {
            assert!(!set.status.success(), "memfs has no ACLs: {set:?}");
            assert!(
                String::from_utf8_lossy(&set.stderr).contains("Operation not supported"),
                "{set:?}"
            );
            assert_eq!(cat().stdout, b"read me", "{:?}", cat());
            let asked = getxattrs_of_ls(mnt);
            // The queries that found the label and ACLs unsupported, the marker.
            assert!(
                asked <= 5,
                "ls -l of 300 files asked {asked} GETXATTRs: label and ACLs must be asked for once"
            );
        }
    }
    m.finish();
}

/// ioctls on files are refused as a filesystem without them refuses them (ENOTTY, for an
/// unknown command and for `lsattr`'s FS_IOC_GETFLAGS alike), and `poll` finds a file
/// ready to read and write at once, over `/dev/fuse` and over io_uring, all without a log
/// line: fuser's defaults logged a warning per ioctl, which the kernel asks again every
/// time (1,197 lines in one 15 s `stress-ng --file-ioctl`), and one for the first poll.
fn ioctls_and_polls_are_answered_quietly(kind: Kind) {
    use std::os::fd::AsRawFd as _;
    for fuse in ["io_uring = \"off\"", ""] {
        let Some(m) = mount(
            "ioctls_and_polls_are_answered_quietly",
            kind,
            Extra::fuse(fuse),
        ) else {
            return;
        };
        let path = m.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        let f = std::fs::File::open(&path).unwrap();
        let ioctl = |cmd: libc::c_ulong| {
            let mut out = 0u64;
            // SAFETY: both commands write at most 8 bytes through the pointer given.
            let r = unsafe { libc::ioctl(f.as_raw_fd(), cmd as _, &mut out) };
            if r == 0 {
                0
            } else {
                std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
            }
        };
        const FS_IOC_GETFLAGS: libc::c_ulong = 0x8008_6601;
        for _ in 0..50 {
            assert_eq!(ioctl(0x8008_66ee), libc::ENOTTY, "{fuse}: an unknown ioctl");
            assert_eq!(
                ioctl(FS_IOC_GETFLAGS),
                libc::ENOTTY,
                "{fuse}: FS_IOC_GETFLAGS"
            );
        }
        let mut fds = [libc::pollfd {
            fd: f.as_raw_fd(),
            events: libc::POLLIN | libc::POLLOUT,
            revents: 0,
        }];
        for _ in 0..3 {
            // SAFETY: one pollfd, owned here; a timeout of 0 never blocks.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, 0) };
            assert_eq!(n, 1, "{fuse}: poll found the file not ready");
            assert_eq!(
                fds[0].revents & (libc::POLLIN | libc::POLLOUT),
                libc::POLLIN | libc::POLLOUT,
                "{fuse}: poll revents"
            );
        }
        let log = m.daemon.stderr();
        assert!(
            !log.contains("WARN"),
            "{fuse}: ioctls or polls were logged: {log}"
        );
        drop(f); // an open file would hold the unmount up
        m.finish();
    }
}
