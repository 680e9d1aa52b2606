//! `vmount start`, `vmount stop` and `vmount status`: background mounts and what they
//! are doing, built on the state directory of [`crate::state`].
//!
//! # Design decisions
//! - **`start` re-runs this executable as an ordinary foreground daemon** (`vmount
//!   mount CONFIG`), detached (its own session on unix; `DETACHED_PROCESS` on Windows),
//!   its stderr going to a log file in the state directory. So a background mount is
//!   exactly a foreground one, and everything the foreground daemon does (signals,
//!   fallback, cleanup) needs no second implementation.
//! - **Ready means registered.** The daemon writes its state entry right after its
//!   `mounted ...` line, i.e. once the mount is usable; `start` waits for the entry with
//!   the daemon's pid, or for the daemon to exit (then its `error: ...` line is the
//!   reason), or [`READY_TIMEOUT`] (then the daemon is stopped and its log quoted). The
//!   config is validated first, in `start` itself, so a bad config fails with exit 2 and
//!   nothing spawned or written.
//! - **The daemon's stdout is a pipe to `start`,** which prints what the daemon
//!   announced (the `mounted` line, or NFS's serve-only instructions) as its own output.
//!   After `start` exits, the daemon's writes to it fail quietly (it prints nothing more).

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};

use crate::config::{BackendChoice, Source};
use crate::plan::MountPlan;
use crate::state::{self, Entry, Files};

/// How long `start` waits for the mount to become usable.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `stop` waits for the daemon to unmount and exit.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often `start` and `stop` look.
const TICK: Duration = Duration::from_millis(50);

/// `vmount start CONFIG`: mounts in the background and returns once the mount is usable.
pub fn start(
    config: Option<&Path>,
    backend: Option<BackendChoice>,
    verbose: u8,
) -> anyhow::Result<()> {
    let Some(config) = config else {
        bail!("no config file given");
    };
    let src = Source::read(config)?;
    let raw = src.parse()?;
    let plan = MountPlan::build(raw, &src, backend)?;
    let dir = state::create_dir()?;
    let files = Files::of(&dir, &plan.mountpoint);
    if let Some(entry) = state::read_entry(&dir, &plan.mountpoint) {
        if state::alive(&entry) {
            bail!(
                "{} is already mounted by vmount (pid {}); `vmount stop {}` unmounts it",
                plan.mountpoint.display(),
                entry.pid,
                plan.mountpoint.display()
            );
        }
        files.remove();
    }
    let log = std::fs::File::create(&files.log)
        .with_context(|| format!("cannot create the log file {}", files.log.display()))?;
    let exe = std::env::current_exe().context("cannot find the vmount executable")?;
    let config = std::path::absolute(config).unwrap_or_else(|_| config.to_path_buf());
    let mut cmd = Command::new(exe);
    for _ in 0..verbose {
        cmd.arg("-v");
    }
    cmd.arg("mount");
    if let Some(b) = backend {
        cmd.arg("--backend").arg(b.to_string());
    }
    cmd.arg(&config)
        .env(state::LOG_ENV, &files.log)
        .env(state::STATE_DIR_ENV, &dir)
        // Not the caller's directory, which the daemon would otherwise keep busy.
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    detach(&mut cmd);
    let mut child = cmd.spawn().context("cannot start the daemon")?;
    let announced = Arc::new(Mutex::new(String::new()));
    if let Some(mut out) = child.stdout.take() {
        let announced = Arc::clone(&announced);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut a) = announced.lock() {
                    a.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
    }
    let began = Instant::now();
    let entry = loop {
        if let Some(status) = child.try_wait().context("cannot wait for the daemon")? {
            let text = std::fs::read_to_string(&files.log).unwrap_or_default();
            let _ = std::fs::remove_file(&files.log);
            let reason = text
                .lines()
                .rev()
                .find_map(|l| l.strip_prefix("error: "))
                .map(str::to_owned);
            return Err(match reason {
                Some(r) => anyhow!("{r}"),
                None => anyhow!(
                    "the daemon exited ({status}) before mounting{}",
                    tail_note(&text)
                ),
            });
        }
        if let Some(e) = state::read_entry(&dir, &plan.mountpoint)
            && e.pid == child.id()
        {
            break e;
        }
        if began.elapsed() > READY_TIMEOUT {
            let text = std::fs::read_to_string(&files.log).unwrap_or_default();
            give_up(&mut child);
            bail!(
                "the mount at {} was not ready within {} s, so its daemon was stopped{}",
                plan.mountpoint.display(),
                READY_TIMEOUT.as_secs(),
                tail_note(&text)
            );
        }
        std::thread::sleep(TICK);
    };
    // The daemon flushed its announcement before registering; give the reader a moment.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut text = String::new();
    while Instant::now() < deadline {
        text = announced.lock().map(|a| a.clone()).unwrap_or_default();
        if text.ends_with('\n') {
            break;
        }
        std::thread::sleep(TICK);
    }
    if text.is_empty() {
        text = format!(
            "mounted {} at {} via {}\n",
            entry.name,
            entry.mountpoint.display(),
            entry.backend
        );
    }
    // What the daemon said on stderr while mounting (`auto` falling back, say).
    let log = std::fs::read_to_string(&files.log).unwrap_or_default();
    let mut err = std::io::stderr().lock();
    for note in log.lines().filter(|l| l.starts_with("vmount: ")) {
        let _ = writeln!(err, "{note}");
    }
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("cannot write to stdout")
}

/// Called by the daemon once its mount is usable: serves the metrics endpoint (bound
/// before mounting) and registers the mount in the state directory, where a stop request
/// ends the wait through `stop`. Dropping the result after the unmount removes the
/// registration.
pub(crate) fn serving(
    plan: &MountPlan,
    backend: crate::platform::Backend,
    stop: &Arc<crate::stop::Stop>,
    metrics: Option<std::net::TcpListener>,
) -> Option<state::Registration> {
    let metrics = metrics.and_then(|listener| {
        let labels = crate::metrics::Labels {
            name: plan.name.clone(),
            mountpoint: plan.mountpoint.display().to_string(),
            backend: backend.to_string(),
            fs: plan.filesystem.kind().as_str().to_owned(),
        };
        crate::metrics::serve(listener, labels)
            .map_err(|e| tracing::warn!("{e:#}; no metrics are served"))
            .ok()
    });
    state::Registration::register(plan, backend, Arc::clone(stop), metrics)
}

/// The last lines of a daemon's log, as a clause for an error message.
fn tail_note(log: &str) -> String {
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return "; it logged nothing".to_owned();
    }
    let tail = &lines[lines.len().saturating_sub(3)..];
    format!("; the end of its log: {}", tail.join(" | "))
}

/// Detaches the daemon from the caller's terminal and process group.
fn detach(cmd: &mut Command) {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt as _;
        // SAFETY: the closure runs in the child between fork and exec, where only
        // async-signal-safe calls are allowed; setsid is one, and nothing is allocated.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    #[cfg(windows)]
    {
        use std::os::windows::process::CommandExt as _;
        use windows_sys::Win32::System::Threading::{CREATE_NEW_PROCESS_GROUP, DETACHED_PROCESS};
        cmd.creation_flags(DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP);
    }
}

/// Stops a daemon that did not become ready: asked nicely first, then killed.
fn give_up(child: &mut std::process::Child) {
    #[cfg(unix)]
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) has no memory-safety preconditions; `pid` is our unreaped
        // child, so it cannot name another process.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(TICK);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A mountpoint as typed, made absolute without resolving a last component that may be
/// a dead mount.
fn absolute(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    if let Ok(c) = std::fs::canonicalize(&abs) {
        return c;
    }
    match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) => std::fs::canonicalize(parent)
            .map(|p| p.join(name))
            .unwrap_or(abs.clone()),
        _ => abs,
    }
}

/// Whether something (live or dead) is still mounted at `mp`.
fn still_mounted(mp: &Path) -> bool {
    cfg_if::cfg_if! {
        if #[cfg(unix)] {
            vmount_backend_fuse::mount_state(mp) != vmount_backend_fuse::MountState::NotMounted
        } else {
            let _ = mp;
            false
        }
    }
}

/// `vmount stop MOUNTPOINT|NAME`.
pub fn stop(target: &str) -> anyhow::Result<()> {
    let dir = state::dir()?;
    let mp = absolute(Path::new(target));
    let found: Vec<Entry> = state::list(&dir)
        .into_iter()
        .filter(|e| e.name == target || e.mountpoint == mp)
        .collect();
    let entry = match found.as_slice() {
        [] => bail!(
            "no vmount mount is named {target} or mounted at {}; `vmount status` lists them",
            mp.display()
        ),
        [one] => one.clone(),
        many => {
            let at: Vec<String> = many
                .iter()
                .map(|e| e.mountpoint.display().to_string())
                .collect();
            bail!(
                "{} mounts are named {target} (at {}); name the one to stop by its mountpoint",
                many.len(),
                at.join(", ")
            )
        }
    };
    let files = Files::of(&dir, &entry.mountpoint);
    let shown = entry.mountpoint.display();
    if !state::alive(&entry) {
        files.remove();
        if still_mounted(&entry.mountpoint) {
            crate::run::unmount(&entry.mountpoint).with_context(|| {
                format!(
                    "the daemon of {} (pid {}) had died and left its mount at {shown}",
                    entry.name, entry.pid
                )
            })?;
        }
        println!(
            "the daemon of {} at {shown} (pid {}) was no longer running; its entry is removed",
            entry.name, entry.pid
        );
        return Ok(());
    }
    state::request_stop(&dir, &entry)?;
    let began = Instant::now();
    while state::alive(&entry) {
        if began.elapsed() > STOP_TIMEOUT {
            let kill = if cfg!(windows) {
                format!("taskkill /F /PID {}", entry.pid)
            } else {
                format!("kill -9 {}", entry.pid)
            };
            bail!(
                "the daemon of {} (pid {}) did not exit within {} s (is the mount busy? `fuser \
                 -m {shown}` shows who uses it); `{kill}` ends it, then `vmount unmount {shown}` \
                 clears the mount",
                entry.name,
                entry.pid,
                STOP_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(TICK);
    }
    // A daemon that died while unmounting could not remove its entry.
    files.remove();
    println!("stopped {} at {shown} (pid {})", entry.name, entry.pid);
    Ok(())
}

/// After `vmount unmount` took away a mount that a daemon serves, waits for that daemon
/// to notice (it polls every [`crate::run::POLL`]) and exit, so that when `unmount`
/// returns no vmount process is left for the mountpoint and an immediate `vmount start`
/// of it is not refused as "already mounted". A daemon that does not exit in
/// [`STOP_TIMEOUT`] gets a warning naming how to end it; the unmount itself succeeded.
pub fn await_daemon_after_unmount(mountpoint: &Path) {
    let Ok(dir) = state::dir() else {
        return;
    };
    let Some(entry) = state::read_entry(&dir, mountpoint) else {
        return;
    };
    let began = Instant::now();
    while state::alive(&entry) {
        if began.elapsed() > STOP_TIMEOUT {
            eprintln!(
                "warning: the daemon of {} (pid {}) is still running {} s after its mount was \
                 taken away; `vmount stop {}` ends it",
                entry.name,
                entry.pid,
                STOP_TIMEOUT.as_secs(),
                mountpoint.display()
            );
            return;
        }
        std::thread::sleep(TICK);
    }
}

/// `vmount status [--verbose]`.
pub fn status(verbose: bool) -> anyhow::Result<()> {
    let dir = state::dir()?;
    let mut live = Vec::new();
    for entry in state::list(&dir) {
        if state::alive(&entry) {
            live.push(entry);
            continue;
        }
        Files::of(&dir, &entry.mountpoint).remove();
        let shown = entry.mountpoint.display();
        let hint = if still_mounted(&entry.mountpoint) {
            format!("; its mount is dead: `vmount unmount {shown}` clears it")
        } else {
            String::new()
        };
        eprintln!(
            "vmount: removed the entry of {} at {shown}: its daemon (pid {}) is gone{hint}",
            entry.name, entry.pid
        );
    }
    let mut out = String::new();
    if live.is_empty() {
        out.push_str("no vmount mounts are running\n");
    } else {
        out.push_str(&table(&dir, &live));
        if verbose {
            for e in &live {
                out.push('\n');
                out.push_str(&details(&dir, e));
            }
        }
    }
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")
}

/// One row per mount.
fn table(dir: &Path, live: &[Entry]) -> String {
    let header = [
        "NAME",
        "FS",
        "SOURCE",
        "BACKEND",
        "MOUNTPOINT",
        "PID",
        "UPTIME",
        "OPS",
        "ERRORS",
        "READ",
        "WRITTEN",
    ];
    let now = state::now_secs();
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_owned()).collect()];
    for e in live {
        let c = state::read_counters(dir, &e.mountpoint).snapshot;
        rows.push(vec![
            e.name.clone(),
            e.fs.clone(),
            e.source
                .as_ref()
                .map_or("-".to_owned(), |s| s.display().to_string()),
            e.backend.clone(),
            e.mountpoint.display().to_string(),
            e.pid.to_string(),
            uptime(now.saturating_sub(e.started)),
            c.total_ops().to_string(),
            c.total_errors().to_string(),
            bytes(c.bytes_read()),
            bytes(c.bytes_written()),
        ]);
    }
    columns(&rows)
}

/// Left-aligned columns, two spaces apart, without trailing blanks.
fn columns(rows: &[Vec<String>]) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (cell, w) in row.iter().zip(&widths) {
            line.push_str(&format!("{cell:<w$}  "));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The `--verbose` block of one mount: where things are, and per-operation counters.
fn details(dir: &Path, e: &Entry) -> String {
    let counters = state::read_counters(dir, &e.mountpoint);
    let mut out = format!("{} at {} (pid {})\n", e.name, e.mountpoint.display(), e.pid);
    let path = |p: &Option<PathBuf>, none: &str| {
        p.as_ref()
            .map_or(none.to_owned(), |p| p.display().to_string())
    };
    out.push_str(&format!("  config:     {}\n", path(&e.config, "-")));
    out.push_str(&format!(
        "  log:        {}\n",
        path(&e.log, "its stderr (a foreground mount)")
    ));
    out.push_str(&format!(
        "  metrics:    {}\n",
        e.metrics
            .as_ref()
            .map_or("off".to_owned(), |a| format!("http://{a}/metrics"))
    ));
    out.push_str(&format!(
        "  read_only:  {}\n",
        if e.read_only { "yes" } else { "no" }
    ));
    if counters.snapshot.ops.is_empty() {
        out.push_str("  no operations yet\n");
        return out;
    }
    out.push_str(&format!(
        "  counters as of {} s ago:\n",
        state::now_secs().saturating_sub(counters.written)
    ));
    let mut rows = vec![
        ["op", "count", "errors", "bytes", "p50", "p90", "p99"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect::<Vec<_>>(),
    ];
    for o in &counters.snapshot.ops {
        let q = |q| o.quantile(q).map_or("-".to_owned(), latency);
        rows.push(vec![
            o.op.name().to_owned(),
            o.count.to_string(),
            o.errors.to_string(),
            if o.bytes == 0 {
                "-".to_owned()
            } else {
                bytes(o.bytes)
            },
            q(0.5),
            q(0.9),
            q(0.99),
        ]);
    }
    for line in columns(&rows).lines() {
        out.push_str("    ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn uptime(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s:02}s"),
        (0, _, _) => format!("{h}h{m:02}m"),
        _ => format!("{d}d{h:02}h"),
    }
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

fn latency(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        format!("{:.1}µs", ns as f64 / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.1}ms", ns as f64 / 1e6)
    } else {
        format!("{:.2}s", ns as f64 / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(uptime(5), "5s");
        assert_eq!(uptime(65), "1m05s");
        assert_eq!(uptime(3 * 3600 + 120), "3h02m");
        assert_eq!(uptime(2 * 86_400 + 3600), "2d01h");
        assert_eq!(bytes(10), "10 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
        assert_eq!(latency(Duration::from_nanos(999)), "999ns");
        assert_eq!(latency(Duration::from_micros(12)), "12.0µs");
        assert_eq!(latency(Duration::from_millis(3)), "3.0ms");
        assert_eq!(latency(Duration::from_secs(2)), "2.00s");
        let t = columns(&[
            vec!["A".into(), "BB".into()],
            vec!["ccc".into(), "d".into()],
        ]);
        assert_eq!(t, "A    BB\nccc  d\n");
        assert_eq!(tail_note(""), "; it logged nothing");
        assert_eq!(tail_note("a\nb\nc\nd\n"), "; the end of its log: b | c | d");
    }
}
