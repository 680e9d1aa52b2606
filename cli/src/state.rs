//! The per-user registry of running mounts: one JSON file per mount, written by the
//! daemon itself once it is mounted, which `vmount status`, `stop` and `start` read.
//!
//! # Design decisions
//! - **Files, not a socket.** Each daemon writes `<key>.json` (who it is) when mounted
//!   and rewrites `<key>.counters.json` (its operation counters) at most once a second
//!   when they changed; both are written to a temporary file and renamed, so a reader
//!   never sees half a file. A reader never waits for a daemon (a daemon stuck in a slow
//!   filesystem call still shows up, with counters a moment old), it works the same on
//!   every OS, and there is no listener to secure: the directory is the user's own.
//! - **The files are hints, checked against the process table.** A daemon killed with
//!   SIGKILL cannot remove its entry; an entry whose process is gone (or whose pid now
//!   belongs to another process: on Linux and Windows the process start time is recorded
//!   and compared) is stale, and `status` removes it.
//! - **Stopping works through the entry too:** `vmount stop` sends SIGTERM on unix; on
//!   Windows, where a detached process has no console to send Ctrl-Break to, it creates
//!   `<key>.stop`, which the daemon treats like SIGTERM: a clean unmount. Windows
//!   daemons look for it every [`crate::run::POLL`]; unix daemons, which `vmount stop`
//!   signals instead, look only once a second while they are called (an idle daemon
//!   does not wake at all).
//! - **Where:** `$VMOUNT_STATE_DIR` if set (tests, several independent setups);
//!   otherwise `/run/vmount` for root on Linux, `$XDG_STATE_HOME/vmount` or
//!   `~/.local/state/vmount` for other Linux users, `~/Library/Application Support/vmount`
//!   on macOS and `%LOCALAPPDATA%\vmount` on Windows.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow};
use serde::{Deserialize, Serialize};
use vmount_core::stats::{self, BUCKETS, Op, OpSnapshot, Snapshot};

use crate::plan::{FsPlan, MountPlan};
use crate::platform::Backend;
use crate::stop::Stop;

/// Overrides the state directory.
pub const STATE_DIR_ENV: &str = "VMOUNT_STATE_DIR";
/// Set by `vmount start` for its daemon: the log file its output goes to.
pub const LOG_ENV: &str = "VMOUNT_LOG_FILE";

/// The state directory (not created).
pub fn dir() -> anyhow::Result<PathBuf> {
    if let Some(d) = std::env::var_os(STATE_DIR_ENV).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    let home = || {
        std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .ok_or_else(|| {
                anyhow!("cannot find the state directory: HOME is not set (set {STATE_DIR_ENV})")
            })
    };
    cfg_if::cfg_if! {
        if #[cfg(windows)] {
            let _ = home;
            std::env::var_os("LOCALAPPDATA")
                .filter(|d| !d.is_empty())
                .map(|d| PathBuf::from(d).join("vmount"))
                .ok_or_else(|| anyhow!(
                    "cannot find the state directory: LOCALAPPDATA is not set (set {STATE_DIR_ENV})"
                ))
        } else if #[cfg(target_os = "macos")] {
            Ok(home()?.join("Library/Application Support/vmount"))
        } else {
            // SAFETY: geteuid has no preconditions and cannot fail.
            if unsafe { libc::geteuid() } == 0 {
                return Ok(PathBuf::from("/run/vmount"));
            }
            match std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
                Some(d) => Ok(PathBuf::from(d).join("vmount")),
                None => Ok(home()?.join(".local/state/vmount")),
            }
        }
    }
}

/// The state directory, created (private to the user) if needed.
pub fn create_dir() -> anyhow::Result<PathBuf> {
    let d = dir()?;
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(&d)
        .with_context(|| format!("cannot create the state directory {}", d.display()))?;
    Ok(d)
}

/// One running mount, as its daemon recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The mount's label.
    pub name: String,
    /// `memfs` or `loopback`.
    pub fs: String,
    /// The loopback source.
    pub source: Option<PathBuf>,
    /// The backend serving it.
    pub backend: String,
    /// Where it is mounted.
    pub mountpoint: PathBuf,
    /// Mounted read-only.
    pub read_only: bool,
    /// The daemon.
    pub pid: u32,
    /// The daemon's start, in the OS's own unit (Linux: clock ticks after boot; Windows:
    /// FILETIME), to tell it from a later process that reuses the pid.
    pub proc_start: Option<u64>,
    /// When the mount came up, seconds since the Unix epoch.
    pub started: u64,
    /// The log file of a `vmount start` daemon (foreground daemons log to their stderr).
    pub log: Option<PathBuf>,
    /// The config file.
    pub config: Option<PathBuf>,
    /// The metrics endpoint's address.
    pub metrics: Option<String>,
}

/// A counters file: the [`Snapshot`] of a daemon and when it was taken.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CountersFile {
    written: u64,
    ops: Vec<OpCounters>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct OpCounters {
    op: String,
    count: u64,
    errors: u64,
    bytes: u64,
    total_ns: u64,
    buckets: Vec<u64>,
}

/// Counters read back from a daemon's file.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// When the daemon wrote them (seconds since the epoch); 0: nothing recorded yet.
    pub written: u64,
    /// The counters.
    pub snapshot: Snapshot,
}

/// The file name stem for the mount at `mountpoint`: readable, and unique through a hash
/// of the whole path.
fn key(mountpoint: &Path) -> String {
    let mut readable = String::new();
    for c in mountpoint.to_string_lossy().chars() {
        let c = if c.is_ascii_alphanumeric() { c } else { '-' };
        if !(c == '-' && (readable.is_empty() || readable.ends_with('-'))) {
            readable.push(c);
        }
    }
    // The end of a path tells mounts apart best; all ASCII, so any byte index is a
    // character boundary.
    let readable = readable.trim_end_matches('-');
    let readable = &readable[readable.len().saturating_sub(48)..];
    // FNV-1a over the path's bytes: stable across runs and builds.
    let hash = mountpoint
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        });
    let readable = readable.trim_start_matches('-');
    if readable.is_empty() {
        format!("root-{hash:016x}")
    } else {
        format!("{readable}-{hash:016x}")
    }
}

/// Paths of the files of the mount at `mountpoint` in state directory `dir`.
#[derive(Debug, Clone)]
pub struct Files {
    /// The entry.
    pub entry: PathBuf,
    /// The counters.
    pub counters: PathBuf,
    /// The stop request.
    pub stop: PathBuf,
    /// The log of a background daemon.
    pub log: PathBuf,
}

impl Files {
    /// The files of the mount at `mountpoint`.
    pub fn of(dir: &Path, mountpoint: &Path) -> Files {
        let k = key(mountpoint);
        Files {
            entry: dir.join(format!("{k}.json")),
            counters: dir.join(format!("{k}.counters.json")),
            stop: dir.join(format!("{k}.stop")),
            log: dir.join(format!("{k}.log")),
        }
    }

    /// Removes the entry, counters and stop request (the log stays for post-mortems).
    pub fn remove(&self) {
        for f in [&self.entry, &self.counters, &self.stop] {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let result = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes))
        .and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The entry of the mount at `mountpoint`, if there is a readable one.
pub fn read_entry(dir: &Path, mountpoint: &Path) -> Option<Entry> {
    let text = std::fs::read(Files::of(dir, mountpoint).entry).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Every readable entry in `dir`, sorted by mountpoint. Files that do not parse (being
/// written by a newer version, say) are skipped.
pub fn list(dir: &Path) -> Vec<Entry> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut entries: Vec<Entry> = rd
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.ends_with(".json") && !name.ends_with(".counters.json")
        })
        .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
        .collect();
    entries.sort_by(|a: &Entry, b: &Entry| a.mountpoint.cmp(&b.mountpoint));
    entries
}

/// The counters of the mount at `mountpoint` (empty before its first operation).
pub fn read_counters(dir: &Path, mountpoint: &Path) -> Counters {
    let Some(file) = std::fs::read(Files::of(dir, mountpoint).counters)
        .ok()
        .and_then(|t| serde_json::from_slice::<CountersFile>(&t).ok())
    else {
        return Counters::default();
    };
    let ops = file
        .ops
        .into_iter()
        .filter_map(|o| {
            let mut buckets = [0u64; BUCKETS];
            for (b, n) in buckets.iter_mut().zip(o.buckets) {
                *b = n;
            }
            Some(OpSnapshot {
                op: Op::from_name(&o.op)?,
                count: o.count,
                errors: o.errors,
                bytes: o.bytes,
                total_ns: o.total_ns,
                buckets,
            })
        })
        .collect();
    Counters {
        written: file.written,
        snapshot: Snapshot { ops },
    }
}

fn counters_json(snap: &Snapshot) -> Vec<u8> {
    let file = CountersFile {
        written: now_secs(),
        ops: snap
            .ops
            .iter()
            .map(|o| OpCounters {
                op: o.op.name().to_owned(),
                count: o.count,
                errors: o.errors,
                bytes: o.bytes,
                total_ns: o.total_ns,
                buckets: o.buckets.to_vec(),
            })
            .collect(),
    };
    serde_json::to_vec(&file).unwrap_or_default()
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether the daemon that wrote `entry` still runs.
pub fn alive(entry: &Entry) -> bool {
    match process::start_of(entry.pid) {
        process::Probe::Gone => false,
        process::Probe::Running(start) => match (start, entry.proc_start) {
            (Some(now), Some(recorded)) => now == recorded,
            _ => true,
        },
    }
}

/// A mount registered in the state directory while its daemon serves it: the entry, a
/// thread that keeps the counters file current, hands freed heap memory back and
/// watches for a stop request. Dropping it (after the unmount) removes the files.
pub struct Registration {
    files: Files,
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How often the state thread wakes while the filesystem is called: to rewrite changed
/// counters, and on Windows, where `vmount stop` asks through the stop file, to look for
/// it (unix sends SIGTERM, so the file is only looked for once a second there, and not
/// while the daemon idles).
#[cfg(unix)]
const TICK: Duration = Duration::from_secs(1);
#[cfg(not(unix))]
const TICK: Duration = crate::run::POLL;

/// How often the counters file is rewritten (when they changed).
const WRITE_EVERY: Duration = Duration::from_secs(1);

impl Registration {
    /// Registers the mount of `plan`, served by `backend`, with its metrics endpoint at
    /// `metrics`; a stop request ends the wait through `stop`. Failing to write the state
    /// only costs `vmount status` its view of this mount, so it is a warning, not an error.
    pub(crate) fn register(
        plan: &MountPlan,
        backend: Backend,
        stop: Arc<Stop>,
        metrics: Option<SocketAddr>,
    ) -> Option<Registration> {
        match Self::try_register(plan, backend, stop, metrics) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!("{e:#}; `vmount status` will not list this mount");
                None
            }
        }
    }

    fn try_register(
        plan: &MountPlan,
        backend: Backend,
        stop: Arc<Stop>,
        metrics: Option<SocketAddr>,
    ) -> anyhow::Result<Registration> {
        let dir = create_dir()?;
        let files = Files::of(&dir, &plan.mountpoint);
        // A request left for an earlier daemon on this mountpoint is not for us.
        let _ = std::fs::remove_file(&files.stop);
        let pid = std::process::id();
        let entry = Entry {
            name: plan.name.clone(),
            fs: plan.filesystem.kind().as_str().to_owned(),
            source: match &plan.filesystem {
                FsPlan::Loopback { source } => Some(source.clone()),
                FsPlan::Memfs { .. } => None,
            },
            backend: backend.to_string(),
            mountpoint: plan.mountpoint.clone(),
            read_only: plan.read_only,
            pid,
            proc_start: match process::start_of(pid) {
                process::Probe::Running(start) => start,
                process::Probe::Gone => None,
            },
            started: now_secs(),
            log: std::env::var_os(LOG_ENV)
                .filter(|l| !l.is_empty())
                .map(PathBuf::from),
            config: plan
                .config
                .as_ref()
                .map(|c| std::path::absolute(c).unwrap_or_else(|_| c.clone())),
            metrics: metrics.map(|a| a.to_string()),
        };
        let json = serde_json::to_vec_pretty(&entry).context("cannot encode the state entry")?;
        let _ = std::fs::remove_file(&files.counters);
        write_atomic(&files.entry, &json)
            .with_context(|| format!("cannot write {}", files.entry.display()))?;
        let done = Arc::new(AtomicBool::new(false));
        let thread = {
            let files = files.clone();
            let done = Arc::clone(&done);
            std::thread::Builder::new()
                .name("vmount-state".into())
                .spawn(move || tick(&files, &done, &stop))
                .context("cannot start the state thread")?
        };
        Ok(Registration {
            files,
            done,
            thread: Some(thread),
        })
    }
}

/// The state thread: every [`TICK`], look for a stop request; every [`WRITE_EVERY`],
/// rewrite the counters if they changed, and hand freed heap memory back to the system
/// if the filesystem was called since the last look or the one before (so once more
/// after the calls stop). On unix, after [`SLEEP_AFTER`] without calls it sleeps until
/// the next call, so that an idle daemon does not wake at all.
fn tick(files: &Files, done: &AtomicBool, stop: &Stop) {
    let mut last = (0u64, 0u64);
    let mut since_write = Duration::ZERO;
    let mut trim_pending = false;
    let mut quiet = Duration::ZERO;
    while !done.load(Ordering::SeqCst) {
        if cfg!(unix) && quiet >= SLEEP_AFTER && !trim_pending {
            // Woken by the next call, or early by the drop of the registration.
            stats::global().sleep_until_called(last.0, IDLE_CHECK);
            quiet = Duration::ZERO;
            since_write = WRITE_EVERY; // publish what woke us now
        } else {
            std::thread::park_timeout(TICK);
            since_write += TICK;
        }
        if done.load(Ordering::SeqCst) {
            break;
        }
        if files.stop.exists() {
            tracing::info!("stop requested through {}", files.stop.display());
            let _ = std::fs::remove_file(&files.stop);
            stop.request();
        }
        if since_write >= WRITE_EVERY {
            since_write = Duration::ZERO;
            let snap = stats::global().snapshot();
            let now = (snap.total_ops(), snap.total_errors());
            let called = now != last;
            if called {
                last = now;
                quiet = Duration::ZERO;
                if let Err(e) = write_atomic(&files.counters, &counters_json(&snap)) {
                    tracing::debug!("cannot write {}: {e}", files.counters.display());
                }
            } else {
                quiet += WRITE_EVERY;
            }
            if called || trim_pending {
                crate::run::release_free_memory();
            }
            trim_pending = called;
        }
    }
}

/// How long without calls before the state thread sleeps until the next one.
const SLEEP_AFTER: Duration = Duration::from_secs(5);

/// The longest that sleep lasts: a safety net for a call that raced with falling asleep.
const IDLE_CHECK: Duration = Duration::from_secs(60);

impl Drop for Registration {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
        self.files.remove();
    }
}

/// Asks the daemon of `entry` to unmount and exit: SIGTERM on unix, a stop request file
/// elsewhere (see the module docs).
pub fn request_stop(dir: &Path, entry: &Entry) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let _ = dir;
        let pid = libc::pid_t::try_from(entry.pid)
            .map_err(|_| anyhow!("the recorded pid {} is not a valid pid", entry.pid))?;
        // SAFETY: kill(2) has no memory-safety preconditions. The pid was just checked
        // to be the recorded daemon (same start time), and a pid cannot be reused before
        // its process is reaped.
        if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
            let e = std::io::Error::last_os_error();
            anyhow::bail!(
                "cannot signal the daemon (pid {}): {}",
                entry.pid,
                crate::config::io_reason(&e)
            );
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        let files = Files::of(dir, &entry.mountpoint);
        std::fs::write(&files.stop, b"stop\n")
            .with_context(|| format!("cannot write {}", files.stop.display()))
    }
}

/// Which processes run, and since when.
mod process {
    /// What the process table says about a pid.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) enum Probe {
        /// No such process (or a zombie, which serves nothing).
        Gone,
        /// Running; its start time where the OS tells it.
        Running(Option<u64>),
    }

    #[cfg(target_os = "linux")]
    pub(super) fn start_of(pid: u32) -> Probe {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return Probe::Gone;
        };
        // `pid (comm) state ppid ...`: comm may contain anything, so split after the
        // last ')'. The state is field 3 and the start time field 22.
        let Some(rest) = stat.rfind(')').and_then(|i| stat.get(i + 1..)) else {
            return Probe::Running(None);
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if matches!(fields.first(), Some(&"Z") | Some(&"X") | Some(&"x")) {
            return Probe::Gone;
        }
        Probe::Running(fields.get(19).and_then(|s| s.parse().ok()))
    }

    #[cfg(all(unix, not(target_os = "linux")))]
    pub(super) fn start_of(pid: u32) -> Probe {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return Probe::Gone;
        };
        // SAFETY: kill with signal 0 only checks that the process exists.
        let rc = unsafe { libc::kill(pid, 0) };
        if rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM) {
            Probe::Running(None)
        } else {
            Probe::Gone
        }
    }

    #[cfg(windows)]
    pub(super) fn start_of(pid: u32) -> Probe {
        use windows_sys::Win32::Foundation::{CloseHandle, FILETIME, STILL_ACTIVE};
        use windows_sys::Win32::System::Threading::{
            GetExitCodeProcess, GetProcessTimes, OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION,
        };
        // SAFETY: OpenProcess takes plain values and returns a handle or null.
        let handle = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
        if handle.is_null() {
            return Probe::Gone;
        }
        let mut code = 0u32;
        // SAFETY: `handle` is a valid process handle and `code` a writable u32.
        let ok = unsafe { GetExitCodeProcess(handle, &mut code) } != 0;
        let zero = FILETIME {
            dwLowDateTime: 0,
            dwHighDateTime: 0,
        };
        let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
        // SAFETY: `handle` is valid and the four FILETIMEs are writable.
        let timed =
            unsafe { GetProcessTimes(handle, &mut created, &mut exited, &mut kernel, &mut user) }
                != 0;
        // SAFETY: `handle` came from OpenProcess and is closed once.
        unsafe { CloseHandle(handle) };
        if !ok || code != STILL_ACTIVE as u32 {
            return Probe::Gone;
        }
        let start = timed
            .then(|| (u64::from(created.dwHighDateTime) << 32) | u64::from(created.dwLowDateTime));
        Probe::Running(start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_readable_unique_and_safe() {
        let a = key(Path::new("/tmp/vmount"));
        assert!(a.starts_with("tmp-vmount-"), "{a}");
        assert_ne!(a, key(Path::new("/tmp/vmount/")));
        assert_ne!(key(Path::new("/tmp/a-b")), key(Path::new("/tmp/a/b")));
        assert!(key(Path::new("/")).starts_with("root-"));
        let long = key(Path::new(&format!("/{}", "x".repeat(300))));
        assert!(long.len() < 80, "{long}");
        for k in [a, long, key(Path::new("X:"))] {
            assert!(
                k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
                "{k}"
            );
        }
    }

    #[test]
    fn this_process_is_alive_and_a_recycled_pid_is_not() {
        let pid = std::process::id();
        let start = match process::start_of(pid) {
            process::Probe::Running(s) => s,
            process::Probe::Gone => panic!("this process is not running?"),
        };
        let mut entry = Entry {
            name: "t".into(),
            fs: "memfs".into(),
            source: None,
            backend: "fuse".into(),
            mountpoint: PathBuf::from("/x"),
            read_only: false,
            pid,
            proc_start: start,
            started: 0,
            log: None,
            config: None,
            metrics: None,
        };
        assert!(alive(&entry));
        if let Some(s) = start {
            entry.proc_start = Some(s + 1);
            assert!(!alive(&entry), "a different start time is another process");
        }
        entry.pid = u32::MAX - 1;
        assert!(!alive(&entry));
    }

    #[test]
    fn counters_round_trip_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mp = Path::new("/mnt/x");
        let s = vmount_core::stats::OpStats::new();
        s.record(Op::Read, Duration::from_micros(10), true, 4096);
        s.record(Op::Lookup, Duration::from_micros(2), false, 0);
        let snap = s.snapshot();
        write_atomic(&Files::of(dir.path(), mp).counters, &counters_json(&snap)).unwrap();
        let back = read_counters(dir.path(), mp);
        assert!(back.written > 0);
        assert_eq!(back.snapshot, snap);
        assert_eq!(read_counters(dir.path(), Path::new("/other")).written, 0);
    }
}
