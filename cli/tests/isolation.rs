//! Isolation through the binary: other local users are kept out of NFS and FUSE unless
//! `allow_other` says otherwise, and trace logs never carry file contents.
//!
//! Already covered elsewhere, and not repeated here: the NFS server closing a direct
//! socket connection from another user (backend-nfs/tests/server_hostile.rs,
//! `other_users_connection_is_closed`), and `ls` of a FUSE mount root by another user
//! with and without `allow_other` (mounted_tools.rs). Here the same rules are checked on
//! file contents and through the served path with libnfs.
#![cfg(target_os = "linux")]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Extra, Kind, Mounted, NfsServed, as_nobody, output_timeout, signal};

const LIMIT: Duration = Duration::from_secs(30);

fn nfs_tools_or_skip(test: &str) -> bool {
    common::root_or_skip(test) && common::tools_or_skip(test, &["nfs-cp", "nfs-cat", "setpriv"])
}

/// libnfs reconnects forever by default; a refused client must report, not retry.
fn url(served: &NfsServed, path: &str) -> String {
    format!("{}&autoreconnect=0", served.url(path))
}

/// Runs `cmd` bounded by [`LIMIT`] (a hang fails the test).
#[track_caller]
fn run(cmd: &mut Command) -> std::process::Output {
    output_timeout(cmd, LIMIT).unwrap_or_else(|| panic!("{cmd:?} hung for {LIMIT:?}"))
}

fn stop(mut served: NfsServed) -> String {
    signal(&served.daemon.child, libc::SIGTERM);
    let status = served.daemon.wait_exit();
    let stderr = served.daemon.stderr();
    assert_eq!(status.code(), Some(0), "{stderr}");
    stderr
}

/// Through the served path: root copies a file in and reads it; `nobody` can neither
/// read it nor write, unless `[nfs] allow_other = true`.
#[test]
fn nfs_other_user_is_refused_through_libnfs() {
    let test = "nfs_other_user_is_refused_through_libnfs";
    if !nfs_tools_or_skip(test) {
        return;
    }
    let work = common::open_tempdir_on_tmp("vmount-iso-");
    let local = work.path().join("local");
    std::fs::write(&local, b"served file\n").unwrap();
    common::set_mode(&local, 0o644);
    for allow_other in [false, true] {
        let served = NfsServed::start(
            "iso",
            "type = \"memfs\"",
            &format!("allow_other = {allow_other}"),
            &[],
        );
        let out = run(Command::new("nfs-cp").arg(&local).arg(url(&served, "/f")));
        assert!(
            out.status.success(),
            "root's nfs-cp: {}",
            common::stderr(&out)
        );
        let out = run(Command::new("nfs-cat").arg(url(&served, "/f")));
        assert_eq!(common::stdout(&out), "served file\n", "root reads");
        // nfs-cp creates files without read access for others; open it up, so that only
        // the connection check can keep nobody out.
        let mut c = common::rpc::Nfs::connect(served.port).expect("connect");
        let root = c.mount("/vmount").expect("MNT");
        let (fh, _) = c.lookup(&root, "f").expect("LOOKUP f");
        c.setattr(&fh, Some(0o644), None, None)
            .expect("SETATTR mode 0644");

        let read = run(as_nobody("nfs-cat").arg(url(&served, "/f")));
        let write = run(as_nobody("nfs-cp").arg(&local).arg(url(&served, "/g")));
        if allow_other {
            assert_eq!(
                common::stdout(&read),
                "served file\n",
                "allow_other: {read:?}"
            );
            // Writing into the 0755 root-owned root is refused by the permission bits,
            // not by the connection check: the server answered.
            assert!(!write.status.success());
        } else {
            assert!(!read.status.success(), "nobody read through NFS: {read:?}");
            assert!(
                !common::stdout(&read).contains("served file"),
                "nobody got the contents: {read:?}"
            );
            assert!(
                !write.status.success(),
                "nobody wrote through NFS: {write:?}"
            );
        }
        // Either way the server serves root on.
        let out = run(Command::new("nfs-cat").arg(url(&served, "/f")));
        assert_eq!(common::stdout(&out), "served file\n");
        stop(served);
        println!(
            "isolation[{test}]: allow_other = {allow_other}: nobody's nfs-cat {} ({}), \
             nfs-cp {}",
            if read.status.success() {
                "read the file"
            } else {
                "was refused"
            },
            common::stderr(&read).lines().next().unwrap_or("").trim(),
            if write.status.success() {
                "wrote"
            } else {
                "failed"
            },
        );
    }
}

/// FUSE without `allow_other` (the default): `nobody` gets EACCES reading a 0644 file;
/// with `allow_other = true` it reads it.
fn fuse_other_user_reads(kind: Kind, test: &str) {
    if !common::root_or_skip(test) || !common::tools_or_skip(test, &["setpriv"]) {
        return;
    }
    for allow_other in [false, true] {
        let fuse = format!("allow_other = {allow_other}");
        let Some(m) = Mounted::new(test, kind, Extra::fuse(&fuse)) else {
            return;
        };
        let file = m.path().join("public");
        std::fs::write(&file, b"public contents\n").unwrap();
        common::set_mode(&file, 0o644);
        let out = run(as_nobody("cat").arg(&file));
        if allow_other {
            assert_eq!(common::stdout(&out), "public contents\n", "{out:?}");
        } else {
            assert!(!out.status.success(), "nobody read the mount: {out:?}");
            assert!(
                common::stderr(&out).contains("Permission denied"),
                "EACCES expected: {out:?}"
            );
        }
        m.finish();
    }
}

#[test]
fn fuse_other_user_reads_memfs() {
    fuse_other_user_reads(Kind::Memfs, "fuse_other_user_reads_memfs");
}

#[test]
fn fuse_other_user_reads_loopback() {
    fuse_other_user_reads(Kind::Loopback, "fuse_other_user_reads_loopback");
}

/// A unique marker, and the renderings a log line could give its bytes: as text, as a
/// Rust `{:?}` byte list, and as hex.
fn marker_forms(test: &str) -> (String, Vec<String>) {
    let marker = format!(
        "SECRET-{}-{}-{test}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    let bytes = marker.as_bytes();
    let list = format!("{:?}", &bytes[..12]);
    let list = list
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let hex: String = bytes[..12].iter().map(|b| format!("{b:02x}")).collect();
    (marker.clone(), vec![marker, list, hex])
}

#[track_caller]
fn assert_no_marker(log: &str, forms: &[String], what: &str) {
    assert!(
        log.lines().count() > 5,
        "{what}: -vv should log plenty; got:\n{log}"
    );
    for form in forms {
        assert!(
            !log.contains(form.as_str()),
            "{what}: the daemon's log contains file contents ({form}):\n{log}"
        );
    }
}

/// `-vv` (trace) logging through FUSE never shows what is written or read.
fn fuse_trace_log(kind: Kind, test: &str) {
    if !common::fuse_or_skip(test) {
        return;
    }
    let (marker, forms) = marker_forms(test);
    let source = common::open_tempdir_on_tmp("vmount-log-src-");
    let body = match kind {
        Kind::Memfs => "[filesystem]\ntype = \"memfs\"\n".to_owned(),
        Kind::Loopback => format!(
            "[filesystem]\ntype = \"loopback\"\nsource = {:?}\n",
            source.path().to_str().unwrap()
        ),
    };
    let setup = common::Setup::with_body(&body);
    let mut daemon = common::Daemon::spawn(&["-vv", setup.config_str()], &setup.mountpoint);
    daemon.wait_mounted(kind.name());
    let file = setup.mountpoint.join("notes.txt");
    std::fs::write(&file, format!("{marker}\n").repeat(100)).unwrap();
    let back = std::fs::read_to_string(&file).unwrap();
    assert!(back.starts_with(&marker));
    signal(&daemon.child, libc::SIGTERM);
    assert_eq!(daemon.wait_exit().code(), Some(0), "{}", daemon.stderr());
    let log = daemon.stderr();
    assert_no_marker(&log, &forms, test);
    println!(
        "isolation[{test}]: {} lines of -vv log, no trace of the contents",
        log.lines().count()
    );
}

#[test]
fn fuse_trace_log_has_no_contents_memfs() {
    fuse_trace_log(Kind::Memfs, "fuse_trace_log_has_no_contents_memfs");
}

#[test]
fn fuse_trace_log_has_no_contents_loopback() {
    fuse_trace_log(Kind::Loopback, "fuse_trace_log_has_no_contents_loopback");
}

/// The same over NFS: WRITE and READ of a marked file with the server at `-vv`.
#[test]
fn nfs_trace_log_has_no_contents() {
    let test = "nfs_trace_log_has_no_contents";
    if !common::tools_or_skip(test, &["nfs-cp", "nfs-cat"]) {
        return;
    }
    let (marker, forms) = marker_forms(test);
    let served = NfsServed::start("logs", "type = \"memfs\"", "", &["-vv"]);
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("local");
    std::fs::write(&local, format!("{marker}\n").repeat(100)).unwrap();
    let out = run(Command::new("nfs-cp")
        .arg(&local)
        .arg(url(&served, "/notes.txt")));
    assert!(out.status.success(), "{}", common::stderr(&out));
    let out = run(Command::new("nfs-cat").arg(url(&served, "/notes.txt")));
    assert!(common::stdout(&out).starts_with(&marker));
    let log = stop(served);
    assert_no_marker(&log, &forms, test);
    println!(
        "isolation[{test}]: {} lines of -vv log, no trace of the contents",
        log.lines().count()
    );
}

/// A non-root user may not mount with `allow_other` unless /etc/fuse.conf has
/// `user_allow_other`: vmount then exits 1 with fusermount3's reason and the fix, and
/// leaves no mount. Run in a private mount namespace where /etc/fuse.conf is empty and
/// /dev/fuse is usable by everyone, so the machine's own files are never touched.
#[test]
fn allow_other_needs_user_allow_other_for_non_root() {
    let test = "allow_other_needs_user_allow_other_for_non_root";
    if !common::root_or_skip(test)
        || !common::fuse_or_skip(test)
        || !common::tools_or_skip(test, &["unshare", "setpriv", "mount", "fusermount3"])
    {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mnt = d.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    std::os::unix::fs::chown(&mnt, Some(65534), Some(65534)).unwrap();
    let config = d.join("c.toml");
    std::fs::write(
        &config,
        format!(
            "mountpoint = {:?}\n[filesystem]\ntype = \"memfs\"\n[fuse]\nallow_other = true\n",
            mnt.display().to_string()
        ),
    )
    .unwrap();
    std::fs::write(d.join("fuse.conf"), "# no user_allow_other\n").unwrap();
    // The test binary's directory may not be searchable by nobody: use a copy.
    let exe = d.join("vmount");
    std::fs::copy(common::VMOUNT, &exe).unwrap();
    let script = format!(
        "mknod {d}/fuse c 10 229 && chmod 666 {d}/fuse && \
         mount --bind {d}/fuse.conf /etc/fuse.conf && mount --bind {d}/fuse /dev/fuse && \
         exec setpriv --reuid=65534 --regid=65534 --clear-groups {exe} {config}",
        d = d.display(),
        exe = exe.display(),
        config = config.display()
    );
    let out = run(Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .stdin(std::process::Stdio::null()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("user_allow_other") && stderr.contains("/etc/fuse.conf"),
        "the reason and the fix: {stderr}"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&mnt.display().to_string()),
        "nothing may stay mounted"
    );
}
