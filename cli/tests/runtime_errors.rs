//! Runtime errors: the config is fine but the machine is not (exit code 1, one sentence
//! that names the path or backend and the fix).

mod common;

use common::{Daemon, Setup, assert_fails, stdout, vmount};

#[test]
fn missing_mountpoint() {
    let setup = Setup::memfs();
    std::fs::remove_dir(&setup.mountpoint).unwrap();
    for args in [vec![setup.config_str()], vec!["check", setup.config_str()]] {
        let out = vmount(&args);
        assert_fails(
            &out,
            1,
            &[setup.mountpoint_str(), "does not exist", "mkdir -p"],
        );
        assert!(stdout(&out).is_empty());
    }
}

#[test]
fn mountpoint_is_a_file() {
    let setup = Setup::memfs();
    std::fs::remove_dir(&setup.mountpoint).unwrap();
    std::fs::write(&setup.mountpoint, "not a dir").unwrap();
    let out = vmount(&[setup.config_str()]);
    assert_fails(&out, 1, &[setup.mountpoint_str(), "is not a directory"]);
}

#[test]
fn loopback_source_missing() {
    let setup = Setup::with_body("[filesystem]\ntype = \"loopback\"\nsource = \"nowhere\"\n");
    let out = vmount(&["check", setup.config_str()]);
    assert_fails(&out, 1, &["source", "nowhere", "does not exist"]);
}

#[cfg(not(windows))]
#[test]
fn winfsp_backend_is_windows_only() {
    let setup = Setup::memfs();
    let out = vmount(&["--backend", "winfsp", setup.config_str()]);
    assert_fails(&out, 1, &["WinFsp is only available on Windows"]);
}

#[test]
fn unmount_of_a_plain_directory() {
    let setup = Setup::memfs();
    let out = vmount(&["unmount", setup.mountpoint_str()]);
    let want = format!("nothing is mounted at {}", setup.mountpoint.display());
    assert_fails(&out, 1, &[&want]);
    let out = vmount(&["unmount", setup.dir.path().join("absent").to_str().unwrap()]);
    assert_fails(&out, 1, &["nothing is mounted at"]);
}

#[test]
fn backends_lists_all_three() {
    let out = vmount(&["backends"]);
    assert_eq!(out.status.code(), Some(0));
    let report = stdout(&out);
    for name in ["fuse", "nfs", "winfsp", "auto"] {
        assert!(
            report.lines().any(|l| l.starts_with(&format!("{name:<8}"))),
            "{name}: {report}"
        );
    }
    // Whether NFS is usable depends on the machine (mount.nfs, a kernel NFS client, root).
    assert!(
        report.contains("nfs     usable") || report.contains("nfs     not usable: "),
        "{report}"
    );
    if cfg!(target_os = "linux") {
        assert!(report.contains("winfsp  not usable: WinFsp is only available on Windows"));
        assert!(report.contains("fix: "), "{report}");
    }
    let order = if cfg!(windows) {
        "winfsp, then nfs"
    } else {
        "fuse, then nfs"
    };
    assert!(
        report.contains(&format!(
            "auto    tries {order} (the next one also when a mount fails)"
        )),
        "{report}"
    );
    let auto = report
        .lines()
        .find(|l| l.starts_with("auto    chooses"))
        .unwrap_or_default();
    if report.contains("fuse    usable") {
        assert_eq!(auto, "auto    chooses fuse");
    }
}

/// A second `vmount` on a mountpoint that is already mounted refuses (exit 1) instead of
/// stacking a second mount on top.
#[test]
fn mountpoint_already_mounted() {
    if !common::fuse_or_skip("mountpoint_already_mounted") {
        return;
    }
    let setup = Setup::memfs();
    let mut first = Daemon::spawn(&[setup.config_str()], &setup.mountpoint);
    first.wait_mounted("memfs");
    let out = vmount(&[setup.config_str()]);
    assert_fails(
        &out,
        1,
        &[
            setup.mountpoint_str(),
            "already a mount point",
            "vmount unmount",
        ],
    );
    // `check` only validates: a running mount does not make the config invalid.
    let out = vmount(&["check", setup.config_str()]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    // The first mount is untouched and still serves.
    std::fs::write(setup.mountpoint.join("still"), b"here").unwrap();
    assert_eq!(
        std::fs::read(setup.mountpoint.join("still")).unwrap(),
        b"here"
    );
    let mounts = common::mounts();
    let count = mounts
        .iter()
        .filter(|(p, _)| *p == setup.mountpoint)
        .count();
    assert_eq!(count, 1, "exactly one mount at the mountpoint: {mounts:?}");
}

/// A loopback `source` must be a directory; `check` says so before anything is mounted.
#[test]
fn loopback_source_is_a_file() {
    let setup = Setup::with_body("[filesystem]\ntype = \"loopback\"\nsource = \"src\"\n");
    std::fs::write(setup.dir.path().join("src"), "a file").unwrap();
    for args in [vec!["check", setup.config_str()], vec![setup.config_str()]] {
        let out = vmount(&args);
        assert_fails(&out, 1, &["source", "is not a directory"]);
    }
    assert!(common::mounted_fstype(&setup.mountpoint).is_none());
}
