//! The independent suites, run against a memfs mounted by the real `vmount` binary:
//! - pjdfstest (crates.io 0.2.2), POSIX semantics. It is judged against a native tmpfs run
//!   of the same suite in the same job: the mount may fail only what native fails too
//!   (on some kernels native tmpfs fails the `*::enametoolong_path` cases).
//! - fsx (crates.io 0.3.2), data integrity under random reads, writes, mmap, truncate,
//!   fallocate, hole punching, copy_file_range and sendfile, with and without the kernel
//!   writeback cache.
//!
//! Both are installed by `.ci/test`. Without them (or without root, which pjdfstest needs
//! to switch users) the tests skip with the reason, except on Linux CI, where they fail.
#![cfg(target_os = "linux")]

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Daemon, Setup};

fn on_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Finds `tool` on PATH or in ~/.cargo/bin; None means skip (or fail on CI).
fn find_tool(test: &str, tool: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".cargo/bin"));
    }
    if let Some(found) = dirs.into_iter().map(|d| d.join(tool)).find(|p| p.is_file()) {
        return Some(found);
    }
    let why = format!("{test}: `{tool}` is not installed (cargo install --locked {tool})");
    if on_ci() {
        panic!("{why}; .ci/test installs it, so on CI this is a failure");
    }
    eprintln!("skipping {why}");
    None
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A temp dir other users can walk into (pjdfstest switches to `nobody` and `daemon`).
fn open_tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn mount_memfs(test: &str, fuse: &str) -> Option<(Daemon, Setup)> {
    if !common::fuse_or_skip(test) {
        return None;
    }
    let setup = Setup::with_body(&format!("[filesystem]\ntype = \"memfs\"\n[fuse]\n{fuse}\n"));
    std::fs::set_permissions(setup.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut daemon = Daemon::spawn(&[setup.config_str()], &setup.mountpoint);
    daemon.wait_mounted("memfs");
    Some((daemon, setup))
}

fn stop(mut daemon: Daemon) {
    common::signal(&daemon.child, libc::SIGTERM);
    let status = daemon.wait_exit();
    let stderr = daemon.stderr();
    assert_eq!(status.code(), Some(0), "daemon exit; stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "daemon panicked: {stderr}");
}

const PJDFSTEST_CONFIG: &str = r#"
[features]
posix_fallocate = {}
utimensat = {}
utime_now = {}
rename_ctime = {}

[settings]
naptime = 0.05
allow_remount = false

[dummy_auth]
entries = [["nobody", "nogroup"], ["daemon", "daemon"]]
"#;

/// The outcome of one pjdfstest run.
#[derive(Debug)]
struct PjdRun {
    passed: usize,
    failed: BTreeSet<String>,
    skipped: usize,
    summary: String,
    log: String,
}

fn run_pjdfstest(bin: &Path, config: &Path, dir: &Path, secondary: &Path) -> PjdRun {
    let out = Command::new(bin)
        .arg("-c")
        .arg(config)
        .arg("-p")
        .arg(dir)
        .arg("-s")
        .arg(secondary)
        .current_dir(dir)
        .output()
        .expect("run pjdfstest");
    let log =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let mut run = PjdRun {
        passed: 0,
        failed: BTreeSet::new(),
        skipped: 0,
        summary: String::new(),
        log: String::new(),
    };
    for line in log.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [_, "ok"] => run.passed += 1,
            [_, "skipped"] => run.skipped += 1,
            [name, "FAILED", ..] | [name, "failed", ..] => {
                run.failed.insert((*name).to_owned());
            }
            _ if line.starts_with("Summary:") => run.summary = line.to_owned(),
            _ => {}
        }
    }
    assert!(
        !run.summary.is_empty(),
        "pjdfstest printed no summary (exit {}):\n{log}",
        out.status
    );
    run.log = log;
    run
}

#[test]
fn pjdfstest_memfs_matches_native() {
    let test = "pjdfstest_memfs_matches_native";
    let Some(bin) = find_tool(test, "pjdfstest") else {
        return;
    };
    if !is_root() {
        let why = format!("{test}: pjdfstest must run as root to switch users");
        assert!(!on_ci(), "{why}");
        eprintln!("skipping {why}");
        return;
    }
    let cfg_dir = open_tempdir();
    let config = cfg_dir.path().join("pjdfstest.toml");
    std::fs::write(&config, PJDFSTEST_CONFIG).unwrap();

    // Native reference: a tmpfs mounted for this run (fall back to a plain temp dir).
    let native = open_tempdir();
    let native_dir = native.path().join("tmpfs");
    std::fs::create_dir(&native_dir).unwrap();
    let tmpfs = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "mode=0755,size=256m",
            "vmount-pjd-native",
        ])
        .arg(&native_dir)
        .status()
        .is_ok_and(|s| s.success());
    let native_run = run_pjdfstest(&bin, &config, &native_dir, cfg_dir.path());
    if tmpfs {
        let _ = Command::new("umount").arg("-l").arg(&native_dir).status();
    }

    let Some((daemon, setup)) = mount_memfs(test, "allow_other = true\ndefault_permissions = true")
    else {
        return;
    };
    let mount_run = run_pjdfstest(&bin, &config, &setup.mountpoint, cfg_dir.path());
    eprintln!(
        "pjdfstest native {}: {}\npjdfstest vmount memfs via FUSE: {}",
        if tmpfs { "tmpfs" } else { "temp dir" },
        native_run.summary,
        mount_run.summary
    );
    stop(daemon);
    let extra: Vec<_> = mount_run.failed.difference(&native_run.failed).collect();
    assert!(
        extra.is_empty(),
        "pjdfstest cases that fail on the vmount memfs mount but pass natively: {extra:#?}\n\
         native: {}\nmount: {}\nmount log:\n{}",
        native_run.summary,
        mount_run.summary,
        mount_run
            .log
            .lines()
            .filter(|l| !l.trim_end().ends_with(" ok"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        mount_run.passed + 20 >= native_run.passed,
        "far fewer pjdfstest cases ran on the mount ({}) than natively ({})",
        mount_run.passed,
        native_run.passed
    );
}

const FSX_CONFIG: &str = r#"
flen = 4194304
[opsize]
max = 262144
[weights]
close_open = 2
read = 10
write = 10
mapread = 5
mapwrite = 5
invalidate = 1
truncate = 3
fsync = 1
fdatasync = 1
posix_fallocate = 2
punch_hole = 2
sendfile = 2
posix_fadvise = 1
copy_file_range = 2
"#;

fn run_fsx(test: &str, fuse: &str, ops: u32, seed: u32) {
    let Some(bin) = find_tool(test, "fsx") else {
        return;
    };
    let Some((daemon, setup)) = mount_memfs(test, fuse) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("fsx.toml");
    std::fs::write(&config, FSX_CONFIG).unwrap();
    let out = Command::new(&bin)
        .arg("-N")
        .arg(ops.to_string())
        .arg("-S")
        .arg(seed.to_string())
        .arg("-f")
        .arg(&config)
        .arg("-P")
        .arg(work.path())
        .arg(setup.mountpoint.join("fsx.data"))
        .output()
        .expect("run fsx");
    stop(daemon);
    let log =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "fsx failed ({} ops, seed {seed}, {fuse}):\n{}",
        ops,
        log.lines()
            .rev()
            .take(60)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!("fsx: {ops} ops, seed {seed}, {fuse}: passed");
}

#[test]
fn fsx_memfs_direct() {
    run_fsx("fsx_memfs_direct", "writeback_cache = false", 100_000, 7);
}

#[test]
fn fsx_memfs_writeback_cache() {
    run_fsx(
        "fsx_memfs_writeback_cache",
        "writeback_cache = true",
        100_000,
        11,
    );
}
