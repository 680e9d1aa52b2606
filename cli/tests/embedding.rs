//! The embedding API: the two example filesystems mounted through FUSE with
//! `vmount::mount`, used with std::fs, and unmounted through the guard (unix: the checks
//! use errno values and umount(8); `common::fuse_or_skip` limits them to Linux).
#![cfg(unix)]

mod common;
#[allow(dead_code)]
#[path = "../examples/hello_vfs.rs"]
mod hello_vfs;
#[allow(dead_code)]
#[path = "../examples/notes_vfs.rs"]
mod notes_vfs;

use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::Path;

use vmount::{Backend, BackendChoice, MountPlan};

/// Unmounts whatever is left at the mountpoint when a test fails half-way (the guard's
/// own Drop unmounts too; this is for a guard that was leaked or a panic in drop).
struct Cleanup<'a>(&'a Path);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        common::force_unmount(self.0);
    }
}

fn plan(mp: &Path, name: &str) -> MountPlan {
    MountPlan::builder(mp)
        .backend(BackendChoice::Fuse)
        .name(name)
        .build()
        .expect("plan")
}

#[test]
fn hello_vfs_mounts_reads_and_unmounts() {
    if !common::fuse_or_skip("hello_vfs_mounts_reads_and_unmounts") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mp = dir.path().canonicalize().unwrap();
    let _cleanup = Cleanup(&mp);
    let mount = vmount::mount(hello_vfs::HelloFs::default(), &plan(&mp, "hello")).unwrap();
    assert_eq!(mount.backend(), Backend::Fuse);
    assert_eq!(mount.mountpoint(), mp);
    assert!(mount.is_mounted());
    assert_eq!(common::mounted_fstype(&mp).as_deref(), Some("fuse.vmount"));

    let text = std::fs::read(mp.join("hello.txt")).unwrap();
    assert_eq!(text, hello_vfs::HELLO);
    let out = common::sh(&mp, "cat hello.txt && ls");
    assert_eq!(
        out,
        format!("{}hello.txt\n", String::from_utf8_lossy(hello_vfs::HELLO))
    );
    let e = std::fs::write(mp.join("new"), "x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
    let e = std::fs::read(mp.join("missing")).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound);

    mount.unmount().unwrap();
    assert_eq!(common::mounted_fstype(&mp), None);
}

#[test]
fn notes_vfs_supports_the_file_lifecycle() {
    if !common::fuse_or_skip("notes_vfs_supports_the_file_lifecycle") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mp = dir.path().canonicalize().unwrap();
    let _cleanup = Cleanup(&mp);
    let mount = vmount::mount(notes_vfs::NotesFs::new(0, 0), &plan(&mp, "notes")).unwrap();

    let a = mp.join("a");
    std::fs::write(&a, "first note\n").unwrap();
    assert_eq!(std::fs::read_to_string(&a).unwrap(), "first note\n");
    // Overwrite in the middle, append, truncate.
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&a)
        .unwrap();
    f.seek(SeekFrom::Start(6)).unwrap();
    f.write_all(b"NOTE").unwrap();
    drop(f);
    assert_eq!(std::fs::read_to_string(&a).unwrap(), "first NOTE\n");
    let mut f = std::fs::OpenOptions::new().append(true).open(&a).unwrap();
    f.write_all(b"more\n").unwrap();
    drop(f);
    assert_eq!(std::fs::read_to_string(&a).unwrap(), "first NOTE\nmore\n");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&a)
        .unwrap()
        .set_len(5)
        .unwrap();
    assert_eq!(std::fs::read_to_string(&a).unwrap(), "first");

    // Rename, replacing an existing note; listings follow.
    std::fs::write(mp.join("b"), "to be replaced").unwrap();
    std::fs::rename(&a, mp.join("b")).unwrap();
    assert!(!a.exists());
    assert_eq!(std::fs::read_to_string(mp.join("b")).unwrap(), "first");
    std::fs::write(mp.join("c"), "third").unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&mp)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["b", "c"]);

    // A note unlinked while open stays readable through its handle.
    let mut open = std::fs::File::open(mp.join("c")).unwrap();
    std::fs::remove_file(mp.join("c")).unwrap();
    let mut s = String::new();
    open.read_to_string(&mut s).unwrap();
    assert_eq!(s, "third");
    drop(open);

    // The same through shell tools, and what a flat directory refuses.
    let out = common::sh(
        &mp,
        "echo hi > d && mv d e && cat e && rm e b && ls | wc -l",
    );
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["hi", "0"]);
    assert!(std::fs::create_dir(mp.join("sub")).is_err());

    mount.unmount().unwrap();
    assert_eq!(common::mounted_fstype(&mp), None);
}

#[test]
fn a_dropped_guard_unmounts_and_an_external_unmount_ends_wait() {
    if !common::fuse_or_skip("a_dropped_guard_unmounts_and_an_external_unmount_ends_wait") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mp = dir.path().canonicalize().unwrap();
    let _cleanup = Cleanup(&mp);
    let mount = vmount::mount(hello_vfs::HelloFs::default(), &plan(&mp, "hello")).unwrap();
    drop(mount);
    assert_eq!(common::mounted_fstype(&mp), None);

    // `Mount` is not `Send` (WinFsp's host is not), so `wait` runs here and the
    // unmount from outside on another thread.
    let mount = vmount::mount(hello_vfs::HelloFs::default(), &plan(&mp, "hello")).unwrap();
    let target = mp.clone();
    let unmounter = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        let ok = std::process::Command::new("umount")
            .arg(&target)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Never leave `wait` blocked: a signal ends it too.
            // SAFETY: raise(2) has no memory-safety preconditions.
            unsafe { libc::raise(libc::SIGTERM) };
        }
        ok
    });
    let result = mount.wait();
    assert!(unmounter.join().unwrap(), "umount failed");
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(common::mounted_fstype(&mp), None);
}

/// One kernel-held memfs mounted twice (`mount_shared`): its host files are registered
/// for passthrough on the first mount's connection, whose ids mean nothing on the
/// second's, so the second must register descriptors per open. Files made through either
/// mount are written, read and seen through both.
#[test]
fn one_memfs_mounted_twice_serves_both_mounts() {
    let test = "one_memfs_mounted_twice_serves_both_mounts";
    if !common::fuse_or_skip(test) || !common::root_or_skip(test) {
        return;
    }
    use vmount::core::memfs::{MemFs, MemFsOptions};
    let fs = MemFs::new(MemFsOptions {
        kernel_data: true,
        ..MemFsOptions::default()
    });
    assert!(fs.kernel_data(), "root on Linux gets memfs's private tmpfs");
    let fs: std::sync::Arc<dyn vmount::core::Vfs> = std::sync::Arc::new(fs);
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (mp1, mp2) = (
        d1.path().canonicalize().unwrap(),
        d2.path().canonicalize().unwrap(),
    );
    let (_c1, _c2) = (Cleanup(&mp1), Cleanup(&mp2));
    let passthrough = |mp: &Path, name: &str| {
        MountPlan::builder(mp)
            .backend(BackendChoice::Fuse)
            .name(name)
            .passthrough(true)
            .build()
            .unwrap()
    };
    let m1 = vmount::mount_shared(fs.clone(), &passthrough(&mp1, "twice-1")).unwrap();
    let m2 = vmount::mount_shared(fs, &passthrough(&mp2, "twice-2")).unwrap();
    // Let the helper register its spares on the first connection.
    std::thread::sleep(std::time::Duration::from_millis(100));
    for i in 0..20 {
        let (a, b) = (format!("one{i}"), format!("two{i}"));
        std::fs::write(mp1.join(&a), format!("first {i}")).unwrap();
        std::fs::write(mp2.join(&b), format!("second {i}")).unwrap();
        for mp in [&mp1, &mp2] {
            assert_eq!(
                std::fs::read_to_string(mp.join(&a)).unwrap(),
                format!("first {i}")
            );
            assert_eq!(
                std::fs::read_to_string(mp.join(&b)).unwrap(),
                format!("second {i}")
            );
        }
    }
    drop(m2);
    drop(m1);
}
