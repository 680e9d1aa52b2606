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

/// A state directory (`vmount status`'s registry) private to this test process, so that
/// daemons started by the tests never appear in, or leave entries in, the machine's own
/// (`/run/vmount` as root).
pub fn state_dir() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("vmount-test-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the test state directory");
        dir
    })
}

/// Runs `vmount ARGS` to completion, with a timeout so that a command that wrongly
/// mounts (and so never returns) fails the test instead of hanging it.
pub fn vmount(args: &[&str]) -> Output {
    vmount_in(args, None)
}

/// Like [`vmount`], in working directory `cwd`.
pub fn vmount_in(args: &[&str], cwd: Option<&Path>) -> Output {
    let mut cmd = Command::new(VMOUNT);
    cmd.args(args)
        .env("VMOUNT_STATE_DIR", state_dir())
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
    stderr_thread: Option<std::thread::JoinHandle<()>>,
    stdout_lines: mpsc::Receiver<String>,
    /// Whether dropping this guard unmounts whatever is at `mountpoint`.
    owns_mount: bool,
}

impl Daemon {
    /// Stops this guard from unmounting `mountpoint` when dropped: for a dead daemon whose
    /// mount was cleared and whose place a new daemon takes (the guard is dropped after
    /// the new daemon starts, and would race its mount).
    pub fn disown_mount(&mut self) {
        self.owns_mount = false;
    }

    /// Starts `vmount ARGS` expected to mount at `mountpoint`.
    pub fn spawn(args: &[&str], mountpoint: &Path) -> Daemon {
        let mut child = Command::new(VMOUNT)
            .args(args)
            .env("VMOUNT_STATE_DIR", state_dir())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vmount");
        let stderr = Arc::new(Mutex::new(String::new()));
        let stderr_thread = child
            .stderr
            .take()
            .map(|pipe| spawn_line_collector(pipe, Arc::clone(&stderr)));
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
            stderr_thread,
            stdout_lines: rx,
            owns_mount: true,
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

    /// Like [`Daemon::wait_mounted`], but a daemon that exits (or prints something else)
    /// instead of mounting is an `Err` with its exit status and complete stderr.
    pub fn try_wait_mounted(&mut self, name: &str) -> Result<(), String> {
        let want = format!("mounted {name} at {} via fuse", self.mountpoint.display());
        match self.stdout_lines.recv_timeout(TIMEOUT) {
            Ok(line) if line == want => {}
            Ok(line) => {
                return Err(format!(
                    "expected `{want}`, got `{line}`; stderr: {}",
                    self.stderr()
                ));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(format!(
                    "no `mounted` line within {TIMEOUT:?}; stderr: {}",
                    self.stderr()
                ));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // stdout closed: the daemon is exiting. Collect all of its stderr.
                let status = wait_timeout(&mut self.child, TIMEOUT);
                if let Some(t) = self.stderr_thread.take() {
                    let _ = t.join();
                }
                return Err(format!(
                    "vmount exited ({status:?}) without mounting; stderr: {}",
                    self.stderr()
                ));
            }
        }
        if mounted_fstype(&self.mountpoint).is_some_and(|t| t.starts_with("fuse")) {
            Ok(())
        } else {
            Err(format!(
                "{} is not a FUSE mount after `{want}`",
                self.mountpoint.display()
            ))
        }
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
        if self.owns_mount {
            force_unmount(&self.mountpoint);
        }
    }
}

/// The filesystems the shared tier-3 cases run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `type = "memfs"`.
    Memfs,
    /// `type = "loopback"` over a fresh 0755 temp dir on /tmp.
    Loopback,
}

impl Kind {
    /// The `type` value, which is also the default name in the `mounted ...` line.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Memfs => "memfs",
            Kind::Loopback => "loopback",
        }
    }
}

/// Extra TOML for a [`Mounted`] config: `top` goes before any table (e.g. `read_only`),
/// `filesystem` into `[filesystem]` after `type` (and `source`), `fuse` into `[fuse]`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Extra<'a> {
    pub top: &'a str,
    pub filesystem: &'a str,
    pub fuse: &'a str,
}

impl<'a> Extra<'a> {
    /// Only `[fuse]` keys.
    pub fn fuse(fuse: &'a str) -> Extra<'a> {
        Extra {
            fuse,
            ..Extra::default()
        }
    }

    /// A mount of `kind` with the kernel's writeback cache, reachable by other users if
    /// `allow_other` (pjdfstest switches users). Passthrough would rule the cache out, so
    /// it is off, and memfs keeps its data on the heap (kernel-held data means
    /// passthrough): the non-root and macOS case.
    pub fn writeback(kind: Kind, allow_other: bool) -> Extra<'static> {
        Extra {
            filesystem: if kind == Kind::Memfs {
                "data = \"heap\""
            } else {
                ""
            },
            fuse: if allow_other {
                "allow_other = true\npassthrough = \"off\"\nwriteback_cache = true"
            } else {
                "passthrough = \"off\"\nwriteback_cache = true"
            },
            ..Extra::default()
        }
    }
}

/// A fresh 0755 directory on /tmp that other users can walk into. Loopback sources live
/// on /tmp (ext4 on the CI machines) rather than `$TMPDIR`, so the native reference runs
/// and the mirrored source are on the same kind of filesystem.
pub fn open_tempdir_on_tmp(prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .expect("tempdir on /tmp");
    set_mode(dir.path(), 0o755);
    dir
}

#[cfg(unix)]
pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

#[cfg(not(unix))]
pub fn set_mode(_path: &Path, _mode: u32) {}

/// A filesystem mounted by a running `vmount`. Fields drop in order: the daemon (killed,
/// mount cleared) before the config dir and the loopback source it mirrors.
#[cfg(unix)]
pub struct Mounted {
    pub daemon: Daemon,
    pub setup: Setup,
    /// For loopback, the host directory the mount mirrors.
    pub source: Option<tempfile::TempDir>,
    pub kind: Kind,
}

#[cfg(unix)]
impl Mounted {
    /// Mounts `kind` configured by `extra`; `None` (test skipped) when FUSE is unusable
    /// here, which on Linux CI is a failure instead. The config dir is 0755 so that other
    /// users (pjdfstest, allow_other tests) can reach the mountpoint.
    #[track_caller]
    pub fn new(test: &str, kind: Kind, extra: Extra<'_>) -> Option<Mounted> {
        if !fuse_or_skip(test) {
            return None;
        }
        match Mounted::try_new(kind, extra, None) {
            Ok(m) => Some(m),
            Err(e) => panic!("{test}: {kind:?} did not mount: {e}"),
        }
    }

    /// Mounts `kind`; for loopback, mirrors `source` when given (the caller keeps it
    /// alive), else a fresh 0755 dir on /tmp. `Err` holds the daemon's exit status and
    /// stderr when it exits without mounting; nothing is left mounted then.
    pub fn try_new(kind: Kind, extra: Extra<'_>, source: Option<&Path>) -> Result<Mounted, String> {
        let (owned, source_line) = match kind {
            Kind::Memfs => (None, String::new()),
            Kind::Loopback => {
                let owned = match source {
                    Some(_) => None,
                    None => Some(open_tempdir_on_tmp("vmount-src-")),
                };
                let path = source
                    .map(Path::to_path_buf)
                    .or_else(|| owned.as_ref().map(|d| d.path().to_path_buf()))
                    .expect("a source");
                let line = format!("source = {:?}\n", path.to_str().expect("utf-8 temp path"));
                (owned, line)
            }
        };
        let setup = Setup::with_body(&format!(
            "{}\n[filesystem]\ntype = \"{}\"\n{source_line}{}\n[fuse]\n{}\n",
            extra.top,
            kind.name(),
            extra.filesystem,
            extra.fuse
        ));
        set_mode(setup.dir.path(), 0o755);
        let mut daemon = Daemon::spawn(&[setup.config_str()], &setup.mountpoint);
        daemon.try_wait_mounted(kind.name())?;
        Ok(Mounted {
            daemon,
            setup,
            source: owned,
            kind,
        })
    }

    pub fn path(&self) -> &Path {
        &self.daemon.mountpoint
    }

    /// The loopback source (panics for memfs).
    pub fn source(&self) -> &Path {
        self.source
            .as_ref()
            .map(tempfile::TempDir::path)
            .expect("only a loopback mount created by Mounted has a source")
    }

    /// Stops the daemon with SIGTERM and checks it exits 0 without having panicked.
    #[track_caller]
    pub fn finish(mut self) {
        signal(&self.daemon.child, libc::SIGTERM);
        let status = self.daemon.wait_exit();
        let stderr = self.daemon.stderr();
        assert_eq!(status.code(), Some(0), "daemon exit; stderr: {stderr}");
        assert!(!stderr.contains("panicked"), "daemon panicked: {stderr}");
        assert!(
            mounted_fstype(&self.daemon.mountpoint).is_none(),
            "still mounted after the daemon exited"
        );
    }
}

/// The kernel's version as (major, minor), from uname.
#[cfg(unix)]
pub fn kernel_version() -> Option<(u32, u32)> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??))
}

/// Whether this kernel claims FUSE passthrough (FUSE_PASSTHROUGH, Linux 6.9+): a
/// `*passthrough*` parameter of the fuse module that is on, or else the kernel version.
/// A kernel built without CONFIG_FUSE_PASSTHROUGH is not detectable from here without its
/// config, so on CI a missing passthrough on a 6.9+ kernel is reported as a failure.
#[cfg(unix)]
pub fn kernel_claims_passthrough() -> bool {
    if let Ok(dir) = std::fs::read_dir("/sys/module/fuse/parameters") {
        for entry in dir.flatten() {
            if entry.file_name().to_string_lossy().contains("passthrough") {
                let v = std::fs::read_to_string(entry.path()).unwrap_or_default();
                return matches!(v.trim(), "Y" | "y" | "1");
            }
        }
    }
    kernel_version().is_some_and(|v| v >= (6, 9))
}

/// Mounts a loopback with `[fuse] passthrough = "on"` plus `fuse`. When the kernel lacks
/// passthrough, asserts that the daemon refused to mount with a message naming
/// passthrough (on CI, a kernel that claims passthrough must mount) and returns `None`.
#[cfg(unix)]
#[track_caller]
pub fn mount_passthrough_on(test: &str, fuse: &str, source: Option<&Path>) -> Option<Mounted> {
    if !fuse_or_skip(test) {
        return None;
    }
    let fuse = format!("passthrough = \"on\"\n{fuse}");
    match Mounted::try_new(Kind::Loopback, Extra::fuse(&fuse), source) {
        Ok(m) => Some(m),
        Err(e) => {
            assert!(
                e.contains("passthrough"),
                "{test}: passthrough = \"on\" failed to mount without naming passthrough: {e}"
            );
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(
                !(ci && kernel_claims_passthrough()),
                "{test}: kernel {:?} should support FUSE passthrough, but mounting with \
                 passthrough = \"on\" failed: {e}",
                kernel_version()
            );
            eprintln!("skipping {test} with passthrough on: the kernel refused it: {e}");
            None
        }
    }
}

/// A memfs mount with its data in the kernel and FUSE passthrough required, or `None`
/// (saying why) where that cannot be had: not root (the private tmpfs and passthrough
/// both need CAP_SYS_ADMIN) or a kernel without passthrough. On CI as root with a kernel
/// that claims passthrough, failing to mount is a failure.
#[cfg(unix)]
#[allow(dead_code)]
pub fn mount_memfs_kernel_passthrough(test: &str, filesystem: &str, fuse: &str) -> Option<Mounted> {
    if !fuse_or_skip(test) {
        return None;
    }
    if !is_root() {
        assert!(
            !on_ci() || !cfg!(target_os = "linux"),
            "{test}: CI must run as root"
        );
        eprintln!("skipping {test}: memfs data in the kernel needs root");
        return None;
    }
    let fuse = format!("passthrough = \"on\"\n{fuse}");
    let filesystem = format!("data = \"kernel\"\n{filesystem}");
    let extra = Extra {
        filesystem: &filesystem,
        fuse: &fuse,
        ..Extra::default()
    };
    match Mounted::try_new(Kind::Memfs, extra, None) {
        Ok(m) => Some(m),
        Err(e) => {
            assert!(
                !(on_ci() && kernel_claims_passthrough()),
                "{test}: kernel {:?} should support FUSE passthrough and memfs data in the \
                 kernel, but mounting failed: {e}",
                kernel_version()
            );
            eprintln!("skipping {test}: the kernel refused passthrough: {e}");
            None
        }
    }
}

#[allow(dead_code)]
/// Per-operation counts of the mount at `mountpoint`, from `vmount status -v`.
pub fn op_counts(mountpoint: &Path) -> std::collections::HashMap<String, u64> {
    let out = vmount(&["status", "--verbose"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let head = format!(" at {} (pid", mountpoint.display());
    let mut counts = std::collections::HashMap::new();
    let mut inside = false;
    let mut in_table = false;
    for line in text.lines() {
        if !line.starts_with(' ') {
            inside = line.contains(&head);
            in_table = false;
            continue;
        }
        if !inside {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"op") {
            in_table = true;
            continue;
        }
        if in_table
            && words.len() >= 2
            && let Ok(n) = words[1].parse()
        {
            counts.insert(words[0].to_owned(), n);
        }
    }
    counts
}

/// The daemon's counters once they include everything done so far: a getxattr of a
/// missing name is made as a marker and the counters are read until they show it.
#[cfg(target_os = "linux")]
#[allow(dead_code)]
pub fn settled_counts(mnt: &Path, marker: &Path) -> std::collections::HashMap<String, u64> {
    let before = op_counts(mnt).get("getxattr").copied().unwrap_or(0);
    let c = std::ffi::CString::new(marker.to_str().unwrap()).unwrap();
    // SAFETY: valid C strings; a zero-size query.
    unsafe { libc::getxattr(c.as_ptr(), c"user.marker".as_ptr(), std::ptr::null_mut(), 0) };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let counts = op_counts(mnt);
        if counts.get("getxattr").copied().unwrap_or(0) > before || Instant::now() > deadline {
            return counts;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether this run is CI (`CI=true`), where a test that cannot run is a failure.
pub fn on_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Whether the tests run as root (needed to switch users and mount tmpfs).
pub fn is_root() -> bool {
    #[cfg(unix)]
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() == 0 };
    #[cfg(not(unix))]
    let root = false;
    root
}

/// Whether `tool` is on PATH.
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Tools a test needs must exist; on CI their absence is a failure, not a skip.
pub fn tools_or_skip(test: &str, tools: &[&str]) -> bool {
    let missing: Vec<_> = tools.iter().filter(|t| !have(t)).collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        !on_ci(),
        "{test}: required tools missing on CI: {missing:?}"
    );
    eprintln!("skipping {test}: tools missing: {missing:?}");
    false
}

/// Tests that switch users need root; elsewhere they skip with the reason.
pub fn root_or_skip(test: &str) -> bool {
    if is_root() {
        return true;
    }
    eprintln!("skipping {test}: needs root to switch users");
    false
}

/// Runs `sh -ec script` in `dir`, returning stdout; fails the test on a non-zero exit.
#[track_caller]
pub fn sh(dir: &Path, script: &str) -> String {
    let out = Command::new("sh")
        .arg("-ec")
        .arg(script)
        .current_dir(dir)
        .env("LC_ALL", "C")
        .output()
        .expect("spawn sh");
    assert!(
        out.status.success(),
        "`{script}` failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ---------------------------------------------------------------------------------------
// Helpers for the fault, soak and isolation tests (faults.rs, soak.rs, isolation.rs).

/// Runs `cmd` with piped output, killing it after `timeout`: `None` means it hung.
pub fn output_timeout(cmd: &mut Command, timeout: Duration) -> Option<Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let out = drain(&mut child);
    let status = wait_timeout(&mut child, timeout);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let (stdout, stderr) = out.finish();
    status.map(|status| Output {
        status,
        stdout: stdout.into_bytes(),
        stderr: stderr.into_bytes(),
    })
}

/// A command run as uid/gid 65534 (`nobody`) with no supplementary groups, via setpriv.
pub fn as_nobody(program: &str) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", program]);
    cmd
}

/// How many entries /proc/self/mountinfo has for exactly `path` (stacked mounts count
/// separately, which /proc/mounts' last-entry view would hide).
pub fn mountinfo_count(path: &Path) -> usize {
    let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return 0;
    };
    table
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|target| Path::new(&unescape_mount_path(target)) == path)
        .count()
}

/// The resident set size of process `pid` in KiB (VmRSS in /proc/PID/status).
pub fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `len` bytes of a xorshift sequence seeded by `seed`: a shifted, repeated or zeroed
/// block never matches.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// FNV-1a over `data`: a cheap checksum for the writers' logs.
pub fn fnv64(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A tmpfs of a given size mounted on a fresh 0755 directory on /tmp; `Drop` unmounts it
/// (lazily, so a daemon still holding files there cannot keep it) and removes the dir.
/// Needs root.
#[cfg(unix)]
pub struct Tmpfs {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

#[cfg(unix)]
impl Tmpfs {
    #[track_caller]
    pub fn new(size: &str) -> Tmpfs {
        let dir = open_tempdir_on_tmp("vmount-tmpfs-");
        let path = dir.path().canonicalize().expect("canonicalize");
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(&path)
            .output()
            .expect("spawn mount");
        assert!(
            out.status.success(),
            "mount tmpfs at {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs {
            dir: Some(dir),
            path,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `mount -o remount,ro` or `remount,rw`; the result is returned so that a busy
    /// remount can be reported.
    pub fn remount(&self, read_only: bool) -> Result<(), String> {
        let opt = if read_only {
            "remount,ro"
        } else {
            "remount,rw"
        };
        let out = Command::new("mount")
            .args(["-o", opt])
            .arg(&self.path)
            .output()
            .map_err(|e| format!("spawn mount: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

#[cfg(unix)]
impl Drop for Tmpfs {
    fn drop(&mut self) {
        while mounted_fstype(&self.path).is_some_and(|t| t == "tmpfs") {
            let ok = Command::new("umount")
                .arg("-l")
                .arg(&self.path)
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                break;
            }
        }
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}

/// A `vmount --backend nfs` with `[nfs] mount = false` (serve only) and its port.
pub struct NfsServed {
    pub daemon: Daemon,
    pub port: u16,
    /// The temp dir holding the config and the (unused) mountpoint.
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl NfsServed {
    /// Serves `[filesystem]` body `fs` with `[nfs]` extras `nfs` (e.g. `port = 1234`),
    /// passing `flags` (e.g. `-vv`) before the config; waits for the `serving` line.
    #[track_caller]
    pub fn start(name: &str, fs: &str, nfs: &str, flags: &[&str]) -> NfsServed {
        let text = format!(
            "mountpoint = \"mp\"\nname = \"{name}\"\n[filesystem]\n{fs}\n[nfs]\nmount = false\n{nfs}\n"
        );
        let (dir, config) = config_file(&text);
        set_mode(dir.path(), 0o755);
        let mp = dir.path().join("mp");
        std::fs::create_dir(&mp).expect("mkdir mp");
        let mp = mp.canonicalize().expect("canonicalize");
        let config_s = config.to_str().expect("utf-8 temp path").to_owned();
        let mut args: Vec<&str> = flags.to_vec();
        args.extend(["--backend", "nfs", &config_s]);
        let mut daemon = Daemon::spawn(&args, &mp);
        let first = daemon.first_line();
        let port = first
            .strip_prefix(&format!("serving {name} over NFS on 127.0.0.1:"))
            .and_then(|r| r.strip_suffix(", export /vmount"))
            .and_then(|p| p.parse::<u16>().ok())
            .unwrap_or_else(|| panic!("unexpected first line `{first}`; {}", daemon.stderr()));
        // The `mount with:` and `unmount with:` lines.
        daemon.first_line();
        daemon.first_line();
        NfsServed {
            daemon,
            port,
            dir,
            config,
        }
    }

    /// `nfs://127.0.0.1/vmount/PATH?...` for libnfs's tools.
    pub fn url(&self, path: &str) -> String {
        nfs_url(self.port, path)
    }
}

/// The libnfs URL of `path` (starting with `/`, or empty for the root) on vmount's export.
pub fn nfs_url(port: u16, path: &str) -> String {
    format!("nfs://127.0.0.1/vmount{path}?nfsport={port}&mountport={port}&version=3")
}

/// A small synchronous NFSv3 client over one TCP connection (AUTH_SYS as root), enough to
/// drive the server from many threads without a kernel NFS client. Transport failures
/// and malformed replies panic (they fail the test); NFS errors are `Err(status)`, whose
/// values equal the errno numbers (NFS3ERR_NOENT = 2, NFS3ERR_NOSPC = 28, ...).
pub mod rpc {
    use std::io::{Read as _, Write as _};
    use std::net::TcpStream;
    use std::time::Duration;

    pub type Fh = Vec<u8>;
    pub type Res<T> = Result<T, u32>;

    const NFS: u32 = 100_003;
    const MOUNT: u32 = 100_005;

    /// The attributes the tests look at.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Fattr {
        pub ftype: u32,
        pub mode: u32,
        pub nlink: u32,
        pub size: u64,
        pub fileid: u64,
        pub mtime: (u32, u32),
    }

    #[derive(Default)]
    struct Xdr(Vec<u8>);

    impl Xdr {
        fn u32(mut self, v: u32) -> Xdr {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn u64(mut self, v: u64) -> Xdr {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn opaque(mut self, d: &[u8]) -> Xdr {
            self = self.u32(u32::try_from(d.len()).expect("opaque fits u32"));
            self.0.extend_from_slice(d);
            self.0.resize(self.0.len() + (4 - d.len() % 4) % 4, 0);
            self
        }
        /// sattr3 with mode, size and mtime optionally set (uid, gid, atime left alone).
        fn sattr(self, mode: Option<u32>, size: Option<u64>, mtime: Option<(u32, u32)>) -> Xdr {
            let x = match mode {
                Some(m) => self.u32(1).u32(m),
                None => self.u32(0),
            };
            let x = x.u32(0).u32(0);
            let x = match size {
                Some(s) => x.u32(1).u64(s),
                None => x.u32(0),
            };
            let x = x.u32(0);
            match mtime {
                Some((s, ns)) => x.u32(2).u32(s).u32(ns),
                None => x.u32(0),
            }
        }
    }

    struct Rd<'a>(&'a [u8]);

    impl Rd<'_> {
        fn take(&mut self, n: usize) -> &[u8] {
            assert!(self.0.len() >= n, "short NFS reply");
            let (a, b) = self.0.split_at(n);
            self.0 = b;
            a
        }
        fn u32(&mut self) -> u32 {
            u32::from_be_bytes(self.take(4).try_into().expect("4 bytes"))
        }
        fn u64(&mut self) -> u64 {
            u64::from_be_bytes(self.take(8).try_into().expect("8 bytes"))
        }
        fn bool(&mut self) -> bool {
            self.u32() != 0
        }
        fn opaque(&mut self) -> Vec<u8> {
            let n = self.u32() as usize;
            let v = self.take(n).to_vec();
            self.take((4 - n % 4) % 4);
            v
        }
        fn fattr(&mut self) -> Fattr {
            let ftype = self.u32();
            let mode = self.u32();
            let nlink = self.u32();
            let _uid = self.u32();
            let _gid = self.u32();
            let size = self.u64();
            let _used = self.u64();
            let _rdev = self.u64();
            let _fsid = self.u64();
            let fileid = self.u64();
            let _atime = self.u64();
            let mtime = (self.u32(), self.u32());
            let _ctime = self.u64();
            Fattr {
                ftype,
                mode,
                nlink,
                size,
                fileid,
                mtime,
            }
        }
        fn post_op_attr(&mut self) -> Option<Fattr> {
            self.bool().then(|| self.fattr())
        }
        fn wcc(&mut self) {
            if self.bool() {
                self.take(24);
            }
            self.post_op_attr();
        }
    }

    pub struct Nfs {
        s: TcpStream,
        xid: u32,
        cred: Vec<u8>,
    }

    impl Nfs {
        /// Connects to the server on 127.0.0.1:`port` as AUTH_SYS uid 0.
        pub fn connect(port: u16) -> std::io::Result<Nfs> {
            let s = TcpStream::connect(("127.0.0.1", port))?;
            s.set_read_timeout(Some(Duration::from_secs(60)))?;
            s.set_nodelay(true)?;
            let cred = Xdr::default()
                .u32(0)
                .opaque(b"vmount-test")
                .u32(0)
                .u32(0)
                .u32(0)
                .0;
            // Each connection starts its xids at a different value, as real clients do
            // (Linux and libnfs seed them randomly): the server's duplicate request cache
            // does not key on the connection, so two connections both counting from 1
            // would have an identical later call answered from the cache.
            static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let xid = nanos ^ seq.wrapping_mul(0x9e37_79b9) ^ std::process::id().rotate_left(16);
            Ok(Nfs { s, xid, cred })
        }

        /// One call; the result bytes after a SUCCESS accept_stat.
        fn call(&mut self, prog: u32, proc_: u32, args: Xdr) -> Vec<u8> {
            self.xid = self.xid.wrapping_add(1);
            let msg = Xdr::default()
                .u32(self.xid)
                .u32(0)
                .u32(2)
                .u32(prog)
                .u32(3)
                .u32(proc_)
                .u32(1)
                .opaque(&self.cred)
                .u32(0)
                .u32(0);
            let mut body = msg.0;
            body.extend_from_slice(&args.0);
            let mark = 0x8000_0000u32 | u32::try_from(body.len()).expect("record fits");
            let mut rec = mark.to_be_bytes().to_vec();
            rec.extend_from_slice(&body);
            self.s
                .write_all(&rec)
                .unwrap_or_else(|e| panic!("NFS call {prog}/{proc_}: send: {e}"));
            let mut reply = Vec::new();
            loop {
                let mut m = [0u8; 4];
                self.s
                    .read_exact(&mut m)
                    .unwrap_or_else(|e| panic!("NFS call {prog}/{proc_}: no reply: {e}"));
                let m = u32::from_be_bytes(m);
                let start = reply.len();
                reply.resize(start + (m & 0x7fff_ffff) as usize, 0);
                self.s
                    .read_exact(&mut reply[start..])
                    .unwrap_or_else(|e| panic!("NFS call {prog}/{proc_}: short reply: {e}"));
                if m & 0x8000_0000 != 0 {
                    break;
                }
            }
            let mut r = Rd(&reply);
            assert_eq!(r.u32(), self.xid, "reply xid");
            assert_eq!(r.u32(), 1, "REPLY");
            assert_eq!(r.u32(), 0, "MSG_ACCEPTED for {prog}/{proc_}");
            let _verf_flavor = r.u32();
            let _verf = r.opaque();
            assert_eq!(r.u32(), 0, "accept_stat SUCCESS for {prog}/{proc_}");
            r.0.to_vec()
        }

        /// MNT of the export: its root handle.
        pub fn mount(&mut self, export: &str) -> Res<Fh> {
            let b = self.call(MOUNT, 1, Xdr::default().opaque(export.as_bytes()));
            let mut r = Rd(&b);
            match r.u32() {
                0 => Ok(r.opaque()),
                s => Err(s),
            }
        }

        pub fn getattr(&mut self, fh: &[u8]) -> Res<Fattr> {
            let b = self.call(NFS, 1, Xdr::default().opaque(fh));
            let mut r = Rd(&b);
            match r.u32() {
                0 => Ok(r.fattr()),
                s => Err(s),
            }
        }

        pub fn setattr(
            &mut self,
            fh: &[u8],
            mode: Option<u32>,
            size: Option<u64>,
            mtime: Option<(u32, u32)>,
        ) -> Res<()> {
            let args = Xdr::default().opaque(fh).sattr(mode, size, mtime).u32(0);
            status(&self.call(NFS, 2, args))
        }

        pub fn lookup(&mut self, dir: &[u8], name: &str) -> Res<(Fh, Fattr)> {
            let b = self.call(NFS, 3, Xdr::default().opaque(dir).opaque(name.as_bytes()));
            let mut r = Rd(&b);
            match r.u32() {
                0 => {
                    let fh = r.opaque();
                    let attr = r.post_op_attr();
                    match attr {
                        Some(a) => Ok((fh, a)),
                        None => {
                            let a = self.getattr(&fh)?;
                            Ok((fh, a))
                        }
                    }
                }
                s => Err(s),
            }
        }

        /// READ of up to `count` bytes: (data, eof).
        pub fn read(&mut self, fh: &[u8], offset: u64, count: u32) -> Res<(Vec<u8>, bool)> {
            let b = self.call(NFS, 6, Xdr::default().opaque(fh).u64(offset).u32(count));
            let mut r = Rd(&b);
            let s = r.u32();
            r.post_op_attr();
            if s != 0 {
                return Err(s);
            }
            let _count = r.u32();
            let eof = r.bool();
            Ok((r.opaque(), eof))
        }

        /// The whole file, in 64 KiB READs.
        pub fn read_all(&mut self, fh: &[u8]) -> Res<Vec<u8>> {
            let mut out = Vec::new();
            loop {
                let (data, eof) = self.read(fh, out.len() as u64, 64 << 10)?;
                let empty = data.is_empty();
                out.extend_from_slice(&data);
                if eof || empty {
                    return Ok(out);
                }
            }
        }

        /// FILE_SYNC WRITE of all of `data` at `offset`, in 64 KiB pieces.
        pub fn write(&mut self, fh: &[u8], offset: u64, data: &[u8]) -> Res<()> {
            let mut done = 0usize;
            while done < data.len() {
                let end = data.len().min(done + (64 << 10));
                let args = Xdr::default()
                    .opaque(fh)
                    .u64(offset + done as u64)
                    .u32(u32::try_from(end - done).expect("piece fits"))
                    .u32(2)
                    .opaque(&data[done..end]);
                let b = self.call(NFS, 7, args);
                let mut r = Rd(&b);
                let s = r.u32();
                r.wcc();
                if s != 0 {
                    return Err(s);
                }
                let n = r.u32() as usize;
                assert!(n > 0, "WRITE accepted nothing");
                done += n;
            }
            Ok(())
        }

        /// CREATE (GUARDED when `exclusive`, else UNCHECKED) with `mode`.
        pub fn create(&mut self, dir: &[u8], name: &str, mode: u32, exclusive: bool) -> Res<Fh> {
            let args = Xdr::default()
                .opaque(dir)
                .opaque(name.as_bytes())
                .u32(u32::from(exclusive))
                .sattr(Some(mode), None, None);
            let b = self.call(NFS, 8, args);
            self.new_object(&b, dir, name)
        }

        pub fn mkdir(&mut self, dir: &[u8], name: &str, mode: u32) -> Res<Fh> {
            let args =
                Xdr::default()
                    .opaque(dir)
                    .opaque(name.as_bytes())
                    .sattr(Some(mode), None, None);
            let b = self.call(NFS, 9, args);
            self.new_object(&b, dir, name)
        }

        fn new_object(&mut self, b: &[u8], dir: &[u8], name: &str) -> Res<Fh> {
            let mut r = Rd(b);
            match r.u32() {
                0 if r.bool() => Ok(r.opaque()),
                0 => self.lookup(dir, name).map(|(fh, _)| fh),
                s => Err(s),
            }
        }

        pub fn remove(&mut self, dir: &[u8], name: &str) -> Res<()> {
            status(&self.call(NFS, 12, Xdr::default().opaque(dir).opaque(name.as_bytes())))
        }

        pub fn rmdir(&mut self, dir: &[u8], name: &str) -> Res<()> {
            status(&self.call(NFS, 13, Xdr::default().opaque(dir).opaque(name.as_bytes())))
        }

        pub fn rename(&mut self, from: &[u8], fname: &str, to: &[u8], tname: &str) -> Res<()> {
            let args = Xdr::default()
                .opaque(from)
                .opaque(fname.as_bytes())
                .opaque(to)
                .opaque(tname.as_bytes());
            status(&self.call(NFS, 14, args))
        }

        pub fn link(&mut self, fh: &[u8], dir: &[u8], name: &str) -> Res<()> {
            let args = Xdr::default()
                .opaque(fh)
                .opaque(dir)
                .opaque(name.as_bytes());
            status(&self.call(NFS, 15, args))
        }

        /// Every name in `dir` (READDIR, paged), without `.` and `..`.
        pub fn readdir(&mut self, dir: &[u8]) -> Res<Vec<String>> {
            let mut names = Vec::new();
            let (mut cookie, mut verf) = (0u64, [0u8; 8]);
            loop {
                let mut args = Xdr::default().opaque(dir).u64(cookie);
                args.0.extend_from_slice(&verf);
                let args = args.u32(32 << 10);
                let b = self.call(NFS, 16, args);
                let mut r = Rd(&b);
                let s = r.u32();
                r.post_op_attr();
                if s != 0 {
                    return Err(s);
                }
                verf.copy_from_slice(r.take(8));
                let mut any = false;
                while r.bool() {
                    any = true;
                    let _fileid = r.u64();
                    let name = String::from_utf8_lossy(&r.opaque()).into_owned();
                    cookie = r.u64();
                    if name != "." && name != ".." {
                        names.push(name);
                    }
                }
                if r.bool() || !any {
                    return Ok(names);
                }
            }
        }
    }

    fn status(b: &[u8]) -> Res<()> {
        match Rd(b).u32() {
            0 => Ok(()),
            s => Err(s),
        }
    }
}

/// Context switches (voluntary and not) of each thread of process `pid`, by thread id,
/// with the thread's name (Linux `/proc`).
#[cfg(target_os = "linux")]
pub fn thread_switches(pid: u32) -> std::collections::BTreeMap<u32, (String, u64)> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        let Some(tid) = t.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(t.path().join("status")) else {
            continue;
        };
        let name = status
            .lines()
            .find_map(|l| l.strip_prefix("Name:"))
            .unwrap_or("?")
            .trim()
            .to_owned();
        let switches = status
            .lines()
            .filter(|l| l.contains("ctxt_switches:"))
            .filter_map(|l| l.split(':').nth(1)?.trim().parse::<u64>().ok())
            .sum();
        out.insert(tid, (name, switches));
    }
    out
}

/// An idle daemon must not wake: once nothing has called the mount for a while, a
/// window of [`IDLE_WINDOW`] must pass with at most one wake-up of all its threads
/// together. Waits up to 15 s for such a window (the daemon's threads fall asleep a
/// few seconds after the last call), else fails naming the threads that kept waking.
#[cfg(target_os = "linux")]
#[track_caller]
pub fn assert_daemon_falls_asleep(test: &str, pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut before = thread_switches(pid);
    loop {
        std::thread::sleep(IDLE_WINDOW);
        let after = thread_switches(pid);
        let woke: Vec<(String, u64)> = after
            .iter()
            .map(|(tid, (name, n))| {
                let was = before.get(tid).map_or(0, |(_, b)| *b);
                (name.clone(), n.saturating_sub(was))
            })
            .filter(|(_, d)| *d > 0)
            .collect();
        let total: u64 = woke.iter().map(|(_, d)| d).sum();
        if total <= 1 {
            eprintln!("{test}: the idle daemon slept through {IDLE_WINDOW:?} ({total} wake-ups)");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{test}: the idle daemon still woke {total} times in {IDLE_WINDOW:?} 15 s after \
             the last call: {woke:?}"
        );
        before = after;
    }
}

/// See [`assert_daemon_falls_asleep`].
pub const IDLE_WINDOW: Duration = Duration::from_secs(3);
