//! The daemon's life through FUSE: mount, serve, and every way it ends (SIGTERM, SIGINT,
//! SIGHUP, an unmount from outside, SIGKILL followed by `vmount unmount`). Each test
//! holds its daemon in a [`Daemon`] guard, which kills it and clears its mount on drop.
#![cfg(unix)]

mod common;

use std::path::Path;

use common::{Daemon, Setup, force_unmount, mounted_fstype, signal, vmount};

/// Writes, reads back and lists a file on a live mount.
#[track_caller]
fn exercise(mountpoint: &Path) {
    let file = mountpoint.join("hello.txt");
    std::fs::write(&file, b"hello through vmount\n").expect("write on the mount");
    assert_eq!(
        std::fs::read(&file).expect("read back"),
        b"hello through vmount\n"
    );
    std::fs::create_dir(mountpoint.join("sub")).expect("mkdir on the mount");
    let mut names: Vec<_> = std::fs::read_dir(mountpoint)
        .expect("list the mount")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .collect();
    names.sort();
    assert_eq!(names, ["hello.txt", "sub"]);
}

/// Mounts, uses the mount, sends `sig`, expects exit 0 and a clean mount table.
fn stops_cleanly_on(sig: libc::c_int, test: &str) {
    if !common::fuse_or_skip(test) {
        return;
    }
    let setup = Setup::memfs();
    let mut daemon = Daemon::spawn(&[setup.config_str()], &setup.mountpoint);
    daemon.wait_mounted("memfs");
    assert_eq!(
        mounted_fstype(&setup.mountpoint).as_deref(),
        Some("fuse.vmount")
    );
    exercise(&setup.mountpoint);
    signal(&daemon.child, sig);
    let status = daemon.wait_exit();
    assert_eq!(
        status.code(),
        Some(0),
        "exit after signal {sig}; stderr: {}",
        daemon.stderr()
    );
    assert_eq!(
        mounted_fstype(&setup.mountpoint),
        None,
        "/proc/mounts still lists the mount"
    );
    // The directory is an ordinary empty directory again.
    assert_eq!(std::fs::read_dir(&setup.mountpoint).unwrap().count(), 0);
    assert!(!daemon.stderr().contains("panicked"), "{}", daemon.stderr());
}

#[test]
fn sigterm_unmounts_and_exits_0() {
    stops_cleanly_on(libc::SIGTERM, "sigterm_unmounts_and_exits_0");
}

#[test]
fn sigint_unmounts_and_exits_0() {
    stops_cleanly_on(libc::SIGINT, "sigint_unmounts_and_exits_0");
}

#[test]
fn sighup_unmounts_and_exits_0() {
    stops_cleanly_on(libc::SIGHUP, "sighup_unmounts_and_exits_0");
}

/// `vmount mount CONFIG` is the same as `vmount CONFIG`; `name` and `--backend fuse`
/// are honoured, and `read_only` reaches the mount.
#[test]
fn mount_subcommand_with_name_and_read_only() {
    if !common::fuse_or_skip("mount_subcommand_with_name_and_read_only") {
        return;
    }
    let setup = Setup::with_body(
        "name = \"scratch\"\nread_only = true\nbackend = \"auto\"\n[filesystem]\ntype = \"memfs\"\n",
    );
    let mut daemon = Daemon::spawn(
        &["mount", "--backend", "fuse", setup.config_str()],
        &setup.mountpoint,
    );
    daemon.wait_mounted("scratch");
    let err = std::fs::write(setup.mountpoint.join("x"), b"x").expect_err("read-only mount");
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    signal(&daemon.child, libc::SIGTERM);
    assert_eq!(
        daemon.wait_exit().code(),
        Some(0),
        "stderr: {}",
        daemon.stderr()
    );
    assert_eq!(mounted_fstype(&setup.mountpoint), None);
}

/// The shipped memfs example runs as is, with only its mountpoint moved to a temp dir.
#[test]
fn memfs_example_mounts() {
    if !common::fuse_or_skip("memfs_example_mounts") {
        return;
    }
    let setup = Setup::memfs();
    let text = common::example("memfs.toml")
        .replace("\"/tmp/vmount\"", &format!("{:?}", setup.mountpoint_str()));
    std::fs::write(&setup.config, text).unwrap();
    let mut daemon = Daemon::spawn(&[setup.config_str()], &setup.mountpoint);
    daemon.wait_mounted("memfs");
    exercise(&setup.mountpoint);
    signal(&daemon.child, libc::SIGINT);
    assert_eq!(
        daemon.wait_exit().code(),
        Some(0),
        "stderr: {}",
        daemon.stderr()
    );
    assert_eq!(mounted_fstype(&setup.mountpoint), None);
}

/// An unmount from outside (`fusermount3 -u`) ends the daemon with exit 0.
#[test]
fn external_unmount_ends_the_daemon() {
    if !common::fuse_or_skip("external_unmount_ends_the_daemon") {
        return;
    }
    let setup = Setup::memfs();
    let mut daemon = Daemon::spawn(&[setup.config_str()], &setup.mountpoint);
    daemon.wait_mounted("memfs");
    exercise(&setup.mountpoint);
    let out = std::process::Command::new("fusermount3")
        .arg("-u")
        .arg(&setup.mountpoint)
        .output()
        .expect("run fusermount3 (package fuse3)");
    assert!(
        out.status.success(),
        "fusermount3 -u: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = daemon.wait_exit();
    assert_eq!(status.code(), Some(0), "stderr: {}", daemon.stderr());
    assert_eq!(mounted_fstype(&setup.mountpoint), None);
}

/// After SIGKILL the kernel keeps a dead mount (ENOTCONN); `vmount unmount` clears it,
/// the directory is usable again, and a new mount on it works.
#[test]
fn sigkill_then_vmount_unmount() {
    if !common::fuse_or_skip("sigkill_then_vmount_unmount") {
        return;
    }
    let setup = Setup::memfs();
    let mut daemon = Daemon::spawn(&[setup.config_str()], &setup.mountpoint);
    daemon.wait_mounted("memfs");
    exercise(&setup.mountpoint);
    signal(&daemon.child, libc::SIGKILL);
    let status = daemon.wait_exit();
    assert_eq!(status.code(), None, "killed by a signal");

    if mounted_fstype(&setup.mountpoint).is_some() {
        // A dead mount: opening it fails with ENOTCONN (stat may still be answered from
        // the attribute cache for a moment), and mounting over it, or even checking a
        // config that names it, is refused with the fix named.
        // A request that meets the kernel's abort still in progress gets ECONNABORTED,
        // or ECANCELED over FUSE-over-io_uring (see is_dead_error in backend-fuse).
        let err = std::fs::read_dir(&setup.mountpoint).expect_err("dead mount");
        assert!(
            matches!(
                err.raw_os_error(),
                Some(libc::ENOTCONN | libc::ECONNABORTED | libc::ECANCELED)
            ),
            "{err}"
        );
        for args in [vec![setup.config_str()], vec!["check", setup.config_str()]] {
            let out = vmount(&args);
            common::assert_fails(&out, 1, &["dead FUSE mount", "vmount unmount"]);
        }
    }
    let out = vmount(&["unmount", setup.mountpoint_str()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "vmount unmount: {}",
        common::stderr(&out)
    );
    assert_eq!(
        mounted_fstype(&setup.mountpoint),
        None,
        "the dead mount is gone"
    );
    assert!(
        std::fs::metadata(&setup.mountpoint)
            .expect("usable again")
            .is_dir()
    );

    // A second `vmount unmount` has nothing to do.
    let out = vmount(&["unmount", setup.mountpoint_str()]);
    common::assert_fails(&out, 1, &["nothing is mounted at"]);

    // And a fresh mount works, starting empty.
    let mut again = Daemon::spawn(&[setup.config_str()], &setup.mountpoint);
    again.wait_mounted("memfs");
    assert_eq!(
        std::fs::read_dir(&setup.mountpoint).unwrap().count(),
        0,
        "a new memfs"
    );
    exercise(&setup.mountpoint);
    signal(&again.child, libc::SIGTERM);
    assert_eq!(
        again.wait_exit().code(),
        Some(0),
        "stderr: {}",
        again.stderr()
    );
    force_unmount(&setup.mountpoint);
}

/// `vmount unmount` also unmounts a live mount; the daemon then exits 0 by itself.
#[test]
fn vmount_unmount_of_a_live_mount() {
    if !common::fuse_or_skip("vmount_unmount_of_a_live_mount") {
        return;
    }
    let setup = Setup::memfs();
    let mut daemon = Daemon::spawn(&[setup.config_str()], &setup.mountpoint);
    daemon.wait_mounted("memfs");
    let out = vmount(&["unmount", setup.mountpoint_str()]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert_eq!(
        common::stdout(&out).trim(),
        format!("unmounted {}", setup.mountpoint.display())
    );
    assert_eq!(
        daemon.wait_exit().code(),
        Some(0),
        "stderr: {}",
        daemon.stderr()
    );
    assert_eq!(mounted_fstype(&setup.mountpoint), None);
}

/// An idle daemon sleeps: none of its threads wakes while nothing calls the mount (it
/// woke 24 times a second before: polls for signals, for a stop request, and of the
/// io_uring queues), so an idle laptop's CPU may stay in its deep sleep states. It still
/// answers at once: calls after the sleep are served, and SIGTERM unmounts promptly.
#[cfg(target_os = "linux")]
#[test]
fn an_idle_daemon_sleeps_and_still_answers() {
    let test = "an_idle_daemon_sleeps_and_still_answers";
    for kind in [common::Kind::Memfs, common::Kind::Loopback] {
        let Some(m) = common::Mounted::new(test, kind, common::Extra::default()) else {
            return;
        };
        exercise(m.path());
        common::assert_daemon_falls_asleep(
            &format!("{test} ({})", kind.name()),
            m.daemon.child.id(),
        );
        let file = m.path().join("after-sleep.txt");
        std::fs::write(&file, b"awake\n").expect("write after the sleep");
        assert_eq!(
            std::fs::read(&file).expect("read after the sleep"),
            b"awake\n"
        );
        let t = std::time::Instant::now();
        m.finish();
        assert!(
            t.elapsed() < std::time::Duration::from_secs(2),
            "{test} ({}): SIGTERM took {:?} to unmount an idle daemon",
            kind.name(),
            t.elapsed()
        );
    }
}

/// Signals that reach processes while they wait on the mount leave no error in the log.
/// Each makes the kernel send an INTERRUPT, which fuser refuses with ENOSYS after vmount
/// has already answered the request; the kernel rejects that late refusal with ENOENT and
/// fuser logged "Failed to send FUSE reply" at error level: 41-48 times for these 20,000
/// creates and unlinks under a 200 µs interval timer, before the log filtered it
/// (`vmount::logging`). The files are all made and removed all the same.
#[test]
fn signals_during_requests_leave_no_error_in_the_log() {
    let test = "signals_during_requests_leave_no_error_in_the_log";
    if !common::tools_or_skip(test, &["python3"]) {
        return;
    }
    let Some(m) = common::Mounted::new(test, common::Kind::Memfs, common::Extra::default()) else {
        return;
    };
    let script = r#"
import os, signal, sys
d = sys.argv[1]
signal.signal(signal.SIGALRM, lambda *a: None)
signal.setitimer(signal.ITIMER_REAL, 0.0002, 0.0002)
for i in range(20000):
    p = os.path.join(d, "f%d" % i)
    os.close(os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    os.unlink(p)
signal.setitimer(signal.ITIMER_REAL, 0)
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(m.path())
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{test}: the creates under signals failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_dir(m.path()).expect("list").count(), 0);
    let log = m.daemon.stderr();
    assert!(
        !log.contains("ERROR"),
        "{test}: the daemon logged errors under signals:\n{log}"
    );
    m.finish();
}
