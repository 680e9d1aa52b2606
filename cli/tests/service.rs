//! `vmount service install|uninstall` (the systemd unit, without calling systemctl) and
//! the `mount.vmount` helper that /etc/fstab uses. Both are Linux's.
#![cfg(target_os = "linux")]

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{Setup, assert_fails, stderr, stdout};

/// `vmount ARGS` with HOME set to `home` and no XDG_CONFIG_HOME.
fn vmount_home(args: &[&str], home: &Path, cwd: &Path) -> Output {
    Command::new(common::VMOUNT)
        .args(args)
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("RUST_LOG")
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .expect("run vmount")
}

fn exe() -> String {
    Path::new(common::VMOUNT)
        .canonicalize()
        .unwrap()
        .display()
        .to_string()
}

#[test]
fn print_shows_a_unit_with_absolute_paths() {
    let s = Setup::memfs();
    let home = tempfile::tempdir().unwrap();
    // A relative config path, from the config's directory.
    let out = vmount_home(
        &["service", "install", "c.toml", "--print"],
        home.path(),
        s.dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let unit = stdout(&out);
    let config = s.config.canonicalize().unwrap();
    let want = format!("\nExecStart={} {}\n", exe(), config.display());
    assert!(unit.contains(&want), "want {want:?} in:\n{unit}");
    let stop = format!("\nExecStop={} unmount {}\n", exe(), s.mountpoint.display());
    assert!(unit.contains(&stop), "want {stop:?} in:\n{unit}");
    assert!(unit.contains("\nRestart=on-failure\n"), "{unit}");
    assert!(unit.contains("vmount service uninstall c"), "{unit}");
    // --print installs nothing.
    assert!(std::fs::read_dir(home.path()).unwrap().next().is_none());
}

#[test]
fn install_and_uninstall_in_a_home() {
    let s = Setup::memfs();
    let home = tempfile::tempdir().unwrap();
    let config = s.config_str();
    let out = vmount_home(
        &["service", "install", config, "--name", "data"],
        home.path(),
        s.dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let unit_path = home.path().join(".config/systemd/user/vmount-data.service");
    let unit = std::fs::read_to_string(&unit_path).unwrap();
    let config = s.config.canonicalize().unwrap();
    assert!(
        unit.contains(&format!("\nExecStart={} {}\n", exe(), config.display())),
        "{unit}"
    );
    let said = stdout(&out);
    assert!(
        said.contains("systemctl --user enable --now vmount-data.service")
            && said.contains("vmount service uninstall data"),
        "{said}"
    );

    // Never replaced silently.
    let out = vmount_home(
        &["service", "install", s.config_str(), "--name", "data"],
        home.path(),
        s.dir.path(),
    );
    assert_fails(&out, 1, &["already exists", "--force"]);
    let out = vmount_home(
        &[
            "service",
            "install",
            s.config_str(),
            "--name",
            "data",
            "--force",
        ],
        home.path(),
        s.dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));

    // What `systemctl --user enable` would link, removed along with the unit.
    let wants = home
        .path()
        .join(".config/systemd/user/default.target.wants");
    std::fs::create_dir_all(&wants).unwrap();
    std::os::unix::fs::symlink(&unit_path, wants.join("vmount-data.service")).unwrap();
    let out = vmount_home(&["service", "uninstall", "data"], home.path(), s.dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!unit_path.exists());
    assert!(std::fs::symlink_metadata(wants.join("vmount-data.service")).is_err());
    let out = vmount_home(&["service", "uninstall", "data"], home.path(), s.dir.path());
    assert_fails(&out, 1, &["no vmount service named data"]);

    // A config with mistakes is refused at install time, not at login.
    let bad = s.dir.path().join("bad.toml");
    std::fs::write(&bad, "mountpoint = 5\n").unwrap();
    let out = vmount_home(
        &["service", "install", bad.to_str().unwrap()],
        home.path(),
        s.dir.path(),
    );
    assert_fails(&out, 2, &["bad.toml:1:14"]);
    let out = vmount_home(
        &["service", "install", s.config_str(), "--name", "a/b"],
        home.path(),
        s.dir.path(),
    );
    assert_fails(&out, 1, &["not a valid service name"]);
}

/// The mount(8) helper, run as mount(8) runs it for the fstab line
/// `CONFIG MOUNTPOINT vmount ro,defaults,_netdev 0 0`.
#[test]
fn mount_helper_mounts_in_the_background_until_umount() {
    if !common::fuse_or_skip("mount_helper_mounts_in_the_background_until_umount") {
        return;
    }
    let helper = env!("CARGO_BIN_EXE_mount_vmount");
    // The config names another mountpoint: fstab's wins.
    let s =
        Setup::with_body("backend = \"fuse\"\nname = \"fstab\"\n[filesystem]\ntype = \"memfs\"\n");
    let elsewhere = s.dir.path().join("elsewhere");
    let text = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(
        &s.config,
        text.replace(s.mountpoint_str(), elsewhere.to_str().unwrap()),
    )
    .unwrap();
    let mp = s.mountpoint.clone();
    struct Cleanup<'a>(&'a Path);
    impl Drop for Cleanup<'_> {
        fn drop(&mut self) {
            common::force_unmount(self.0);
        }
    }
    let _cleanup = Cleanup(&mp);

    let run = |args: &[&str]| {
        let mut cmd = Command::new(helper);
        cmd.args(args).stdin(Stdio::null());
        common::output_timeout(&mut cmd, common::TIMEOUT).expect("mount.vmount returned")
    };
    // -f checks without mounting; bad options and configs are refused.
    let out = run(&[s.config_str(), s.mountpoint_str(), "-f", "-o", "defaults"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(common::mounted_fstype(&mp), None);
    let out = run(&[s.config_str(), s.mountpoint_str(), "-o", "exec"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("mount.vmount: unsupported mount option exec"));

    let out = run(&[
        s.config_str(),
        s.mountpoint_str(),
        "-o",
        "ro,defaults,_netdev,nofail,x-systemd.requires=a",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(common::mounted_fstype(&mp).as_deref(), Some("fuse.vmount"));
    let e = std::fs::write(mp.join("x"), "x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "-o ro: {e}");
    assert!(
        daemon_running(&mp),
        "the daemon should run in the background"
    );

    // umount(8) ends the daemon, which sees its mount gone.
    let st = Command::new("umount").arg(&mp).status().unwrap();
    assert!(st.success());
    assert!(
        wait_until(|| !daemon_running(&mp)),
        "the daemon did not exit after umount"
    );

    // And `vmount unmount` does too, on a read-write mount.
    let out = run(&[s.config_str(), s.mountpoint_str()]);
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::write(mp.join("x"), "x").unwrap();
    let out = common::vmount(&["unmount", s.mountpoint_str()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        wait_until(|| !daemon_running(&mp)),
        "the daemon did not exit after vmount unmount"
    );
    assert_eq!(common::mounted_fstype(&mp), None);

    // A mount failure is reported by the helper itself, with mount(8)'s code 32.
    std::fs::remove_dir(&mp).unwrap();
    std::fs::create_dir(&mp).unwrap();
    let missing = s.dir.path().join("missing");
    let out = run(&[s.config_str(), missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
}

/// Whether a `mount_vmount --foreground` daemon for `mp` is alive.
fn daemon_running(mp: &Path) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    let mp = mp.as_os_str().as_encoded_bytes();
    dir.flatten().any(|e| {
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            return false;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        args.contains(&b"--foreground".as_slice()) && args.contains(&mp)
        // A zombie has an empty cmdline, so whatever matched is alive.
    })
}

fn wait_until(mut cond: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < common::TIMEOUT {
        if cond() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}
