//! Background mounts: `vmount start` returns once the mount is usable, `status` lists it
//! with counters that move, the metrics endpoint answers, `stop` unmounts, failures leave
//! nothing behind, and a SIGKILLed daemon is cleaned from `status`. Every test uses its
//! own state directory (`VMOUNT_STATE_DIR`), and a [`Guard`] kills whatever daemons it
//! recorded and clears their mounts even when an assertion fails.
#![cfg(target_os = "linux")]

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Setup, TIMEOUT, assert_fails, force_unmount, mounted_fstype, stderr, stdout};

/// A private state directory, and the cleanup of everything started with it.
struct Guard {
    state: tempfile::TempDir,
    mountpoints: Vec<PathBuf>,
    children: Vec<Child>,
}

impl Guard {
    fn new() -> Guard {
        Guard {
            state: tempfile::tempdir().expect("state dir"),
            mountpoints: Vec::new(),
            children: Vec::new(),
        }
    }

    fn dir(&self) -> &Path {
        self.state.path()
    }

    /// `vmount ARGS` with this state directory, to completion (bounded).
    fn run(&self, args: &[&str]) -> Output {
        let mut child = Command::new(common::VMOUNT)
            .args(args)
            .env("VMOUNT_STATE_DIR", self.dir())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vmount");
        // `start` returns while its daemon keeps the log open, never our pipes: reading
        // to EOF is safe.
        let mut out = String::new();
        let mut err = String::new();
        let (mut o, mut e) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let t = std::thread::spawn(move || {
            let _ = e.read_to_string(&mut err);
            err
        });
        let _ = o.read_to_string(&mut out);
        let err = t.join().unwrap_or_default();
        let status = match common::wait_timeout(&mut child, TIMEOUT * 2) {
            Some(s) => s,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("vmount {args:?} did not finish; stderr: {err}");
            }
        };
        Output {
            status,
            stdout: out.into_bytes(),
            stderr: err.into_bytes(),
        }
    }

    /// `vmount start CONFIG`, expected to succeed with the `mounted` line.
    #[track_caller]
    fn start(&mut self, setup: &Setup, name: &str) -> u32 {
        self.mountpoints.push(setup.mountpoint.clone());
        let out = self.run(&["start", setup.config_str()]);
        assert_eq!(out.status.code(), Some(0), "start: {}", stderr(&out));
        assert_eq!(
            stdout(&out),
            format!(
                "mounted {name} at {} via fuse\n",
                setup.mountpoint.display()
            )
        );
        let entry = self
            .entry(&setup.mountpoint)
            .expect("a state entry once started");
        u32::try_from(entry["pid"].as_u64().expect("pid")).expect("pid fits")
    }

    /// A foreground `vmount CONFIG` with this state directory, once mounted.
    fn foreground(&mut self, setup: &Setup) {
        self.mountpoints.push(setup.mountpoint.clone());
        let mut child = Command::new(common::VMOUNT)
            .arg(setup.config_str())
            .env("VMOUNT_STATE_DIR", self.dir())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn vmount");
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        self.children.push(child);
        out.read_line(&mut line).expect("mounted line");
        assert!(line.starts_with("mounted "), "{line}");
        // Registered right after the line.
        wait_until("the foreground mount is registered", || {
            self.entry(&setup.mountpoint).is_some()
        });
    }

    /// The state entry (JSON) for `mountpoint`.
    fn entry(&self, mountpoint: &Path) -> Option<serde_json::Value> {
        self.entries()
            .into_iter()
            .find(|e| e["mountpoint"].as_str() == mountpoint.to_str())
    }

    fn entries(&self) -> Vec<serde_json::Value> {
        state_files(self.dir())
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .filter(|p| !p.to_string_lossy().ends_with(".counters.json"))
            .filter_map(|p| serde_json::from_slice(&std::fs::read(p).ok()?).ok())
            .collect()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        for e in self.entries() {
            if let Some(pid) = e["pid"].as_u64().and_then(|p| i32::try_from(p).ok())
                && running(pid as u32)
            {
                // SAFETY: kill(2) has no memory-safety preconditions; the pid is a daemon
                // this test started (checked running just now).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for mp in &self.mountpoints {
            force_unmount(mp);
        }
    }
}

fn state_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

/// Whether `pid` runs (a zombie does not).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

#[track_caller]
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The OPS column of `status` for `mountpoint`.
fn ops_in_status(g: &Guard, mountpoint: &Path) -> u64 {
    let out = g.run(&["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let header: Vec<&str> = text.lines().next().unwrap().split_whitespace().collect();
    let col = header.iter().position(|h| *h == "OPS").expect("OPS column");
    let row = text
        .lines()
        .find(|l| l.split_whitespace().nth(4) == mountpoint.to_str())
        .unwrap_or_else(|| panic!("no row for {}: {text}", mountpoint.display()));
    row.split_whitespace().nth(col).unwrap().parse().unwrap()
}

/// `GET /metrics` from `addr`: the body.
fn scrape(addr: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.0 200 OK"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    body.to_owned()
}

/// The value of the sample `series` (name with labels) in an exposition.
fn sample(body: &str, series: &str) -> u64 {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in:\n{body}"))
        .parse()
        .unwrap()
}

fn do_files(mp: &Path, n: usize) -> u64 {
    let mut bytes = 0;
    for i in 0..n {
        let data = vec![b'x'; 1000 + i];
        std::fs::write(mp.join(format!("f{i}")), &data).unwrap();
        assert_eq!(std::fs::read(mp.join(format!("f{i}"))).unwrap(), data);
        bytes += data.len() as u64;
    }
    bytes
}

#[test]
fn start_status_metrics_and_stop() {
    if !common::fuse_or_skip("start_status_metrics_and_stop") {
        return;
    }
    let mut g = Guard::new();
    let setup = Setup::with_body(
        // Heap data: with memfs data in the kernel, FUSE passthrough does the writes this
        // test counts without the daemon seeing them.
        "name = \"bg\"\n[filesystem]\ntype = \"memfs\"\ndata = \"heap\"\n[metrics]\n\
         listen = \"127.0.0.1:0\"\n",
    );
    let pid = g.start(&setup, "bg");
    // Usable the moment `start` returns.
    assert_eq!(
        mounted_fstype(&setup.mountpoint).as_deref(),
        Some("fuse.vmount")
    );
    std::fs::write(setup.mountpoint.join("first"), b"1").expect("write right after start");
    assert!(running(pid), "the daemon runs in the background");

    let out = g.run(&["status"]);
    let text = stdout(&out);
    assert!(
        text.lines().any(|l| l.contains(setup.mountpoint_str())
            && l.split_whitespace().any(|w| w == pid.to_string())
            && l.starts_with("bg ")),
        "{text}"
    );
    let before = ops_in_status(&g, &setup.mountpoint);
    let written = do_files(&setup.mountpoint, 20);
    wait_until("the counters move", || {
        ops_in_status(&g, &setup.mountpoint) >= before + 40
    });

    let out = g.run(&["status", "--verbose"]);
    let text = stdout(&out);
    assert!(text.contains("p50") && text.contains("p99"), "{text}");
    let write_line = text
        .lines()
        .find(|l| l.trim_start().starts_with("write "))
        .unwrap_or_else(|| panic!("no write line: {text}"));
    let count: u64 = write_line
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(count >= 20, "{write_line}");
    assert!(text.contains("log:"), "{text}");
    let addr = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("metrics:"))
        .and_then(|v| v.trim().strip_prefix("http://"))
        .and_then(|v| v.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("no metrics address: {text}"))
        .to_owned();

    let body = scrape(&addr);
    for name in [
        "vmount_up{",
        "vmount_ops_total{op=\"write\"}",
        "vmount_op_errors_total{op=\"lookup\"}",
        "vmount_op_duration_seconds_bucket{op=\"read\",le=\"+Inf\"}",
        "vmount_op_duration_seconds_sum{op=\"write\"}",
        "vmount_bytes_read_total",
        "vmount_bytes_written_total",
    ] {
        assert!(body.contains(name), "{name} missing:\n{body}");
    }
    let writes = sample(&body, "vmount_ops_total{op=\"write\"}");
    assert!(writes >= 20, "{writes}");
    assert!(sample(&body, "vmount_bytes_written_total") >= written);
    do_files(&setup.mountpoint, 5);
    let body = scrape(&addr);
    assert!(sample(&body, "vmount_ops_total{op=\"write\"}") > writes);

    let out = g.run(&["stop", "bg"]);
    assert_eq!(out.status.code(), Some(0), "stop: {}", stderr(&out));
    assert!(
        stdout(&out).starts_with("stopped bg at "),
        "{}",
        stdout(&out)
    );
    assert_eq!(mounted_fstype(&setup.mountpoint), None, "unmounted by stop");
    assert!(!running(pid), "the daemon exited");
    assert!(g.entries().is_empty(), "the entry is removed");
    assert!(stdout(&g.run(&["status"])).contains("no vmount mounts are running"));
}

#[test]
fn failed_starts_say_why_and_leave_nothing_behind() {
    if !common::fuse_or_skip("failed_starts_say_why_and_leave_nothing_behind") {
        return;
    }
    let g = Guard::new();
    let bad = Setup::with_body("[filesystem]\ntype = \"memfs\"\ncolour = 1\n");
    let out = g.run(&["start", bad.config_str()]);
    assert_fails(&out, 2, &["unknown key `colour`"]);

    let missing = Setup::memfs();
    std::fs::remove_dir(&missing.mountpoint).unwrap();
    let out = g.run(&["start", missing.config_str()]);
    assert_fails(&out, 1, &["does not exist", missing.mountpoint_str()]);

    // The daemon itself fails: the port is taken. Its reason comes back through `start`.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = Setup::with_body(&format!(
        "[filesystem]\ntype = \"memfs\"\n[metrics]\nlisten = \"{}\"\n",
        taken.local_addr().unwrap()
    ));
    let out = g.run(&["start", busy.config_str()]);
    assert_fails(&out, 1, &["already in use"]);
    assert_eq!(mounted_fstype(&busy.mountpoint), None);

    assert_eq!(state_files(g.dir()), Vec::<PathBuf>::new());
    assert!(stdout(&g.run(&["status"])).contains("no vmount mounts are running"));
}

#[test]
fn a_killed_daemon_is_cleaned_from_status() {
    if !common::fuse_or_skip("a_killed_daemon_is_cleaned_from_status") {
        return;
    }
    let mut g = Guard::new();
    let setup = Setup::memfs();
    let pid = g.start(&setup, "memfs");
    // SAFETY: kill(2) has no memory-safety preconditions; `pid` is our running daemon.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    wait_until("the daemon is gone", || !running(pid));
    let out = g.run(&["status"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("no vmount mounts are running"));
    let err = stderr(&out);
    assert!(
        err.contains("is gone") && err.contains("vmount unmount"),
        "{err}"
    );
    assert!(g.entries().is_empty(), "the stale entry is removed");
    // The dead FUSE mount stays until cleared.
    let out = g.run(&["unmount", setup.mountpoint_str()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(mounted_fstype(&setup.mountpoint), None);
}

/// `vmount unmount` of a mount that a `start`ed daemon serves returns only once that
/// daemon has exited, so the mountpoint can be started again at once. (Before, `start`
/// right after `unmount` was refused as "already mounted by vmount" while the daemon was
/// still noticing the unmount.)
#[test]
fn unmounting_a_started_mount_ends_its_daemon_first() {
    if !common::fuse_or_skip("unmounting_a_started_mount_ends_its_daemon_first") {
        return;
    }
    let mut g = Guard::new();
    let setup = Setup::memfs();
    for round in 0..2 {
        let pid = g.start(&setup, "memfs");
        let out = g.run(&["unmount", setup.mountpoint_str()]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(mounted_fstype(&setup.mountpoint), None);
        assert!(
            !running(pid),
            "round {round}: the daemon (pid {pid}) still runs after unmount returned"
        );
        assert!(
            g.entries().is_empty(),
            "round {round}: the entry is removed"
        );
    }
}

#[test]
fn stop_names_exactly_one_mount() {
    if !common::fuse_or_skip("stop_names_exactly_one_mount") {
        return;
    }
    let mut g = Guard::new();
    let out = g.run(&["stop", "nothing"]);
    assert_fails(&out, 1, &["no vmount mount is named nothing"]);
    // Foreground mounts register too; two of them share the default name.
    let a = Setup::memfs();
    let b = Setup::memfs();
    g.foreground(&a);
    g.foreground(&b);
    let listed = stdout(&g.run(&["status"]));
    assert!(
        listed.contains(a.mountpoint_str()) && listed.contains(b.mountpoint_str()),
        "{listed}"
    );
    let out = g.run(&["stop", "memfs"]);
    assert_fails(&out, 1, &["2 mounts are named memfs", "by its mountpoint"]);
    let out = g.run(&["stop", a.mountpoint_str()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(mounted_fstype(&a.mountpoint), None);
    assert!(mounted_fstype(&b.mountpoint).is_some());
    let out = g.run(&["stop", "memfs"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(mounted_fstype(&b.mountpoint), None);
    for c in &mut g.children {
        let status = common::wait_timeout(c, TIMEOUT).expect("foreground daemon exits");
        assert_eq!(status.code(), Some(0));
    }
    assert!(g.entries().is_empty());
}

/// NFS counts per procedure: a serve-only NFS daemon started in the background, used
/// through the test's own RPC client, shows its READs and WRITEs in `status`.
#[test]
fn nfs_procedures_are_counted() {
    let mut g = Guard::new();
    let setup = Setup::with_body(
        "name = \"served\"\nbackend = \"nfs\"\n[filesystem]\ntype = \"memfs\"\n[nfs]\nmount = false\n",
    );
    g.mountpoints.push(setup.mountpoint.clone());
    let out = g.run(&["start", setup.config_str()]);
    assert_eq!(out.status.code(), Some(0), "start: {}", stderr(&out));
    let text = stdout(&out);
    // `serving served over NFS on 127.0.0.1:PORT, export PATH`
    let first = text.lines().next().unwrap_or_default();
    let rest = first
        .strip_prefix("serving served over NFS on 127.0.0.1:")
        .unwrap_or_else(|| panic!("{text}"));
    let (port, export) = rest.split_once(", export ").expect("port and export");
    let port: u16 = port.parse().unwrap();
    let mut nfs = common::rpc::Nfs::connect(port).expect("connect");
    let root = nfs.mount(export).expect("MNT");
    let fh = nfs.create(&root, "f", 0o644, false).expect("CREATE");
    nfs.write(&fh, 0, &[7u8; 3000]).expect("WRITE");
    assert_eq!(nfs.read_all(&fh).expect("READ"), vec![7u8; 3000]);
    assert!(nfs.lookup(&root, "missing").is_err());
    wait_until("the NFS counters reach status", || {
        let text = stdout(&g.run(&["status", "-v"]));
        let line = |op: &str| {
            text.lines()
                .find(|l| l.trim_start().starts_with(&format!("{op} ")))
                .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        };
        // op, count, errors, bytes...
        line("write").is_some_and(|w| w[1] == "1" && w[3] == "2.9" && w[4] == "KiB")
            && line("read").is_some_and(|r| r[1] == "1")
            && line("lookup").is_some_and(|l| l[2] == "1")
            && line("create").is_some()
    });
    let out = g.run(&["stop", "served"]);
    assert_eq!(out.status.code(), Some(0), "stop: {}", stderr(&out));
    assert!(g.entries().is_empty());
}
