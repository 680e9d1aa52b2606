//! The [`NfsMount`] guard in serve-only mode (`mount: false`), which needs no kernel NFS
//! client: it serves, gives this OS's commands, answers a real client (libnfs's `nfs-ls`
//! and `nfs-cat`, when installed; required under `CI=true` on Linux), and stops listening
//! when unmounted or dropped.
#![cfg(unix)]

use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use vmount_backend_nfs::{NfsError, NfsMount, NfsOptions, mount};
use vmount_core::memfs::{MemFs, MemFsOptions};

fn memfs() -> Arc<MemFs> {
    Arc::new(MemFs::new(MemFsOptions {
        // SAFETY: geteuid and getegid have no preconditions and cannot fail.
        root_uid: unsafe { libc::geteuid() },
        // SAFETY: as above.
        root_gid: unsafe { libc::getegid() },
        ..MemFsOptions::default()
    }))
}

fn serve_only(mp: &Path, port: u16) -> Result<NfsMount, NfsError> {
    let opts = NfsOptions {
        port,
        mount: false,
        ..NfsOptions::default()
    };
    mount(memfs(), mp, &opts)
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

fn libnfs_present(test: &str) -> bool {
    if have("nfs-ls") && have("nfs-cat") {
        return true;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(
        !(ci && cfg!(target_os = "linux")),
        "{test}: libnfs-utils (nfs-ls, nfs-cat) is missing on CI"
    );
    eprintln!("skipping the libnfs part of {test}: libnfs-utils is not installed");
    false
}

#[test]
fn serves_gives_the_commands_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let guard = serve_only(dir.path(), 0).unwrap();
    let port = guard.port();
    assert_ne!(port, 0);
    assert!(!guard.is_mounted_by_us());
    assert!(guard.is_alive(), "serve-only has no mount to lose");
    assert_eq!(guard.export_path(), "/vmount");
    assert_eq!(guard.mountpoint(), dir.path().canonicalize().unwrap());
    let mount_cmd = guard.mount_command();
    let unmount_cmd = guard.unmount_command();
    let mp = guard.mountpoint().to_str().unwrap().to_owned();
    assert!(
        mount_cmd.contains(&format!("port={port},mountport={port}"))
            && mount_cmd.ends_with(&format!("127.0.0.1:/vmount {mp}")),
        "{mount_cmd}"
    );
    assert!(
        unmount_cmd.ends_with(&format!("umount {mp}")),
        "{unmount_cmd}"
    );

    if libnfs_present("serves_gives_the_commands_and_stops") {
        let url = format!("nfs://127.0.0.1/vmount?nfsport={port}&mountport={port}&version=3");
        let out = Command::new("nfs-ls").arg(&url).output().unwrap();
        assert!(
            out.status.success(),
            "nfs-ls: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let missing =
            format!("nfs://127.0.0.1/vmount/absent?nfsport={port}&mountport={port}&version=3");
        let out = Command::new("nfs-cat").arg(&missing).output().unwrap();
        assert!(!out.status.success(), "reading a missing file must fail");
    }

    assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
    guard.unmount().unwrap();
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the server still listens after unmount"
    );
}

#[test]
fn drop_stops_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let guard = serve_only(dir.path(), 0).unwrap();
    let port = guard.port();
    drop(guard);
    // Another test in this binary may bind the freed ephemeral port for a moment (it asks
    // the kernel for any free port), so allow a short window before the port must refuse.
    let refused = (0..100).any(|_| {
        let gone = TcpStream::connect(("127.0.0.1", port)).is_err();
        if !gone {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        gone
    });
    assert!(
        refused,
        "port {port} still accepts connections after the server was dropped"
    );
}

#[test]
fn a_busy_port_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let e = serve_only(dir.path(), port).unwrap_err();
    assert!(
        matches!(e, NfsError::PortInUse { port: p } if p == port),
        "{e}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("port {port} on 127.0.0.1 is in use")) && msg.contains("port = 0"),
        "{msg}"
    );
}

#[test]
fn bad_mountpoints_are_refused_before_serving() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let e = serve_only(&missing, 0).unwrap_err();
    assert!(matches!(e, NfsError::MountpointMissing(_)), "{e}");
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let e = serve_only(&file, 0).unwrap_err();
    assert!(matches!(e, NfsError::NotADirectory(_)), "{e}");
    if cfg!(target_os = "linux") {
        let e = serve_only(Path::new("/proc"), 0).unwrap_err();
        assert!(matches!(e, NfsError::AlreadyMounted(_)), "{e}");
    }
}

#[test]
fn unmount_path_refuses_what_is_not_ours() {
    let dir = tempfile::tempdir().unwrap();
    let e = vmount_backend_nfs::unmount_path(dir.path()).unwrap_err();
    assert!(matches!(e, NfsError::NotMounted(_)), "{e}");
    if cfg!(target_os = "linux") {
        let e = vmount_backend_nfs::unmount_path(Path::new("/proc")).unwrap_err();
        assert!(
            matches!(e, NfsError::NotMounted(_)),
            "a procfs is not ours: {e}"
        );
    }
}
