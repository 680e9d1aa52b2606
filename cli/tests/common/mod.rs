//! Helpers shared by the binary tests: running `vmount`, writing configs into temp dirs,
//! and [`Daemon`], a running `vmount CONFIG` whose `Drop` kills it and clears its mount
//! even when an assertion fails half-way.
// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The binary under test.
pub const VMOUNT: &str = env!("CARGO_BIN_EXE_vmount");

/// How long a mount may take to come up, or a daemon to exit after a signal.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `vmount ARGS` to completion, with a timeout so that a command that wrongly
/// mounts (and so never returns) fails the test instead of hanging it.
pub fn vmount(args: &[&str]) -> Output {
    vmount_in(args, None)
}

/// Like [`vmount`], in working directory `cwd`.
pub fn vmount_in(args: &[&str], cwd: Option<&Path>) -> Output {
    let mut cmd = Command::new(VMOUNT);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.env_remove("RUST_LOG");
    if let Some(cwd) = cwd {
        cmd.current_dir(cwd);
    }
    let mut child = cmd.spawn().expect("spawn vmount");
    let out = drain(&mut child);
    let status = wait_timeout(&mut child, TIMEOUT);
    let status = match status {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("vmount {args:?} did not finish within {TIMEOUT:?}");
        }
    };
    let (stdout, stderr) = out.finish();
    Output {
        status,
        stdout: stdout.into_bytes(),
        stderr: stderr.into_bytes(),
    }
}

/// Collects a child's stdout and stderr on threads, so that neither pipe can fill up.
pub struct Drained {
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Drained {
    fn finish(self) -> (String, String) {
        for t in self.threads {
            let _ = t.join();
        }
        (lock(&self.stdout), lock(&self.stderr))
    }
}

fn lock(s: &Arc<Mutex<String>>) -> String {
    s.lock().map(|g| g.clone()).unwrap_or_default()
}

fn drain(child: &mut Child) -> Drained {
    let stdout = Arc::new(Mutex::new(String::new()));
    let stderr = Arc::new(Mutex::new(String::new()));
    let mut threads = Vec::new();
    if let Some(mut pipe) = child.stdout.take() {
        let buf = Arc::clone(&stdout);
        threads.push(std::thread::spawn(move || {
            let mut s = String::new();
            let _ = pipe.read_to_string(&mut s);
            if let Ok(mut b) = buf.lock() {
                b.push_str(&s);
            }
        }));
    }
    if let Some(pipe) = child.stderr.take() {
        threads.push(spawn_line_collector(pipe, Arc::clone(&stderr)));
    }
    Drained {
        stdout,
        stderr,
        threads,
    }
}

fn spawn_line_collector(
    pipe: impl std::io::Read + Send + 'static,
    buf: Arc<Mutex<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if let Ok(mut b) = buf.lock() {
                b.push_str(&line);
                b.push('\n');
            }
        }
    })
}

/// Polls `child` until it exits or `timeout` passes.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => return None,
        }
    }
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts exit code `code` and a one-line `error: ...` on stderr containing every
/// string in `needles`; returns the message.
#[track_caller]
pub fn assert_fails(out: &Output, code: i32, needles: &[&str]) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "exit code; stderr: {err}");
    assert!(
        err.starts_with("error: "),
        "stderr should start with `error: `: {err}"
    );
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line of stderr: {err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    for needle in needles {
        assert!(
            err.contains(needle),
            "stderr should contain {needle:?}: {err}"
        );
    }
    err
}

/// A temp dir holding a config file and, usually, its mountpoint.
pub struct Setup {
    pub dir: tempfile::TempDir,
    /// Canonical path of `dir`/mnt (created).
    pub mountpoint: PathBuf,
    pub config: PathBuf,
}

impl Setup {
    /// A temp dir with an empty `mnt` directory and `c.toml` holding `body` after a
    /// `mountpoint` line pointing at `mnt`.
    pub fn memfs() -> Setup {
        Setup::with_body("[filesystem]\ntype = \"memfs\"\n")
    }

    pub fn with_body(body: &str) -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).expect("mkdir mnt");
        let mountpoint = mnt.canonicalize().expect("canonicalize");
        let config = dir.path().join("c.toml");
        let text = format!(
            "mountpoint = {:?}\n{body}",
            mountpoint.display().to_string()
        );
        std::fs::write(&config, text).expect("write config");
        Setup {
            dir,
            mountpoint,
            config,
        }
    }

    pub fn config_str(&self) -> &str {
        self.config.to_str().expect("utf-8 temp path")
    }

    pub fn mountpoint_str(&self) -> &str {
        self.mountpoint.to_str().expect("utf-8 temp path")
    }
}

/// Writes `text` as `c.toml` in a fresh temp dir.
pub fn config_file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.toml");
    std::fs::write(&path, text).expect("write config");
    (dir, path)
}

/// The example file `examples/NAME`.
pub fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Whether a FUSE mount can be tested here (and `check` can resolve `auto` to FUSE). On
/// Linux with `CI=true` a missing FUSE is a test failure (the README promises those tests
/// run); elsewhere the test is skipped with the reason printed.
pub fn fuse_or_skip(test: &str) -> bool {
    if !cfg!(target_os = "linux") {
        eprintln!("skipping {test}: the mounted tests read /proc/mounts, which only Linux has");
        return false;
    }
    let out = vmount(&["backends"]);
    let report = stdout(&out);
    if report
        .lines()
        .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["fuse", "usable"])
    {
        return true;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    if cfg!(target_os = "linux") && ci {
        panic!("{test}: FUSE must be usable on Linux CI, but `vmount backends` says:\n{report}");
    }
    eprintln!("skipping {test}: FUSE is not usable here:\n{report}");
    false
}

/// The mount table entries (mountpoint, fstype) of this machine, from /proc/mounts.
pub fn mounts() -> Vec<(PathBuf, String)> {
    let Ok(table) = std::fs::read_to_string("/proc/mounts") else {
        return Vec::new();
    };
    table
        .lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let _source = f.next()?;
            let target = f.next()?;
            let fstype = f.next()?;
            Some((
                PathBuf::from(unescape_mount_path(target)),
                fstype.to_owned(),
            ))
        })
        .collect()
}

/// /proc/mounts writes space, tab, newline and backslash as `\ooo` octal escapes.
fn unescape_mount_path(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        if let Some(d) = octal {
            let v = d.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
            out.push(u8::try_from(v).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The fstype mounted at `path`, if any (the last, topmost entry).
pub fn mounted_fstype(path: &Path) -> Option<String> {
    mounts()
        .into_iter()
        .rev()
        .find(|(p, _)| p == path)
        .map(|(_, t)| t)
}

/// Detaches every mount at `path` (lazily, so a busy mount cannot block the cleanup).
pub fn force_unmount(path: &Path) {
    for _ in 0..8 {
        if mounted_fstype(path).is_none() {
            return;
        }
        let quiet = |cmd: &mut Command| {
            cmd.stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !quiet(Command::new("fusermount3").arg("-uz").arg(path)) {
            quiet(Command::new("umount").arg("-l").arg(path));
        }
    }
}

/// Sends `signal` to `child`.
#[cfg(unix)]
pub fn signal(child: &Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
    // SAFETY: kill(2) has no memory-safety preconditions; `pid` is our own child, which
    // has not been reaped yet (the Child is still held), so the pid cannot be reused.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {signal}): {}",
        std::io::Error::last_os_error()
    );
}

/// A running `vmount CONFIG`. `Drop` kills it if it still runs and lazily unmounts
/// whatever is left at its mountpoint, so a failed assertion leaves nothing behind.
pub struct Daemon {
    pub child: Child,
    pub mountpoint: PathBuf,
    stderr: Arc<Mutex<String>>,
    stdout_lines: mpsc::Receiver<String>,
}

impl Daemon {
    /// Starts `vmount ARGS` expected to mount at `mountpoint`.
    pub fn spawn(args: &[&str], mountpoint: &Path) -> Daemon {
        let mut child = Command::new(VMOUNT)
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vmount");
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(pipe) = child.stderr.take() {
            spawn_line_collector(pipe, Arc::clone(&stderr));
        }
        let (tx, rx) = mpsc::channel();
        if let Some(pipe) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Daemon {
            child,
            mountpoint: mountpoint.to_path_buf(),
            stderr,
            stdout_lines: rx,
        }
    }

    /// What the daemon wrote to stderr so far.
    pub fn stderr(&self) -> String {
        lock(&self.stderr)
    }

    /// Waits for the first stdout line (the `mounted ...` line).
    #[track_caller]
    pub fn first_line(&mut self) -> String {
        match self.stdout_lines.recv_timeout(TIMEOUT) {
            Ok(line) => line,
            Err(e) => {
                let status = self.child.try_wait().ok().flatten();
                panic!(
                    "no line from vmount within {TIMEOUT:?} ({e}); exit status {status:?}; \
                     stderr: {}",
                    self.stderr()
                )
            }
        }
    }

    /// Waits for the `mounted <name> at <mountpoint> via fuse` line.
    #[track_caller]
    pub fn wait_mounted(&mut self, name: &str) {
        let line = self.first_line();
        let want = format!("mounted {name} at {} via fuse", self.mountpoint.display());
        assert_eq!(line, want, "stderr: {}", self.stderr());
        assert!(
            mounted_fstype(&self.mountpoint).is_some_and(|t| t.starts_with("fuse")),
            "{} should be a FUSE mount once announced; mounts: {:?}",
            self.mountpoint.display(),
            mounted_fstype(&self.mountpoint)
        );
    }

    /// Waits for the daemon to exit.
    #[track_caller]
    pub fn wait_exit(&mut self) -> ExitStatus {
        match wait_timeout(&mut self.child, TIMEOUT) {
            Some(status) => status,
            None => panic!(
                "vmount did not exit within {TIMEOUT:?}; stderr: {}",
                self.stderr()
            ),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        force_unmount(&self.mountpoint);
    }
}
