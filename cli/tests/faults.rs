//! Faults injected into a running daemon and into what it mirrors: SIGKILL in the middle
//! of heavy writes (FUSE and NFS), a dead mount left in the way, SIGINT/SIGTERM during
//! writes, and a loopback source that vanishes, turns read-only or fills up.
//!
//! What must hold after each fault: nothing hangs (every wait is bounded), the caller
//! gets a precise errno rather than EIO, the daemon stays up where it should (and its
//! mount still answers `stat`), every file whose close or fsync returned before the fault
//! is intact, and cleanup (`vmount unmount`, a free port) makes room for a new daemon.
//! Each test prints one `faults[...]` summary line (`cargo test -- --show-output`).
//!
//! What the loopback source faults give the caller (FUSE, asserted below):
//!
//! | fault | operation | errno |
//! |---|---|---|
//! | source removed (`rm -rf`) | create, mkdir, lookup of a removed name | ENOENT |
//! | | listing the (removed) root | succeeds, empty |
//! | | `stat` of the root, I/O on files already open | succeed |
//! | source remounted read-only | create, mkdir, open for writing, unlink, rename, chmod, truncate, setxattr | EROFS |
//! | | reads, `stat` | succeed |
//! | source full | write (or the fsync/close that flushes it) | ENOSPC, statfs shows 0 free |
//!
//! A removed source cannot be "fixed" under a live mount: the daemon keeps the removed
//! directory (like a shell whose working directory was deleted), so recreating the path
//! does not reattach it; the fix is a restart, which is tested. A read-only source
//! recovers with `remount,rw`, and a full one as soon as space is freed.
#![cfg(target_os = "linux")]

mod common;

use std::io::{Read as _, Write as _};
use std::os::fd::IntoRawFd as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{
    Daemon, Extra, Kind, Mounted, NfsServed, Tmpfs, fnv64, mountinfo_count, output_timeout,
    pattern, signal, vmount,
};

/// How long the writers run before the fault.
const WRITE_PHASE: Duration = Duration::from_millis(2500);
/// How long a writer may take to notice the fault and stop: longer is a hang.
const STOP_LIMIT: Duration = Duration::from_secs(20);
/// In-process writer threads and `cp`/`dd` writer processes per FUSE test.
const THREADS: usize = 4;
const PROCESSES: usize = 2;

/// A file whose close (and for some, fsync) returned success before the fault.
#[derive(Debug, Clone)]
struct Completed {
    /// Relative to the mount root.
    rel: PathBuf,
    len: usize,
    sum: u64,
    fsynced: bool,
}

/// What one writer thread achieved and how it stopped.
#[derive(Debug, Default)]
struct WriterLog {
    completed: Vec<Completed>,
    /// Files read back through the mount right after close, matching their checksum.
    read_back: usize,
    /// The error that stopped the writer (None: stopped by the flag).
    error: Option<std::io::Error>,
}

fn errno_name(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOTCONN) => "ENOTCONN".into(),
        Some(libc::ENOENT) => "ENOENT".into(),
        Some(libc::EIO) => "EIO".into(),
        Some(libc::ECONNABORTED) => "ECONNABORTED".into(),
        Some(libc::ESTALE) => "ESTALE".into(),
        Some(libc::EROFS) => "EROFS".into(),
        Some(libc::ENOSPC) => "ENOSPC".into(),
        Some(libc::EACCES) => "EACCES".into(),
        Some(n) => format!("errno {n}"),
        None => format!("{e}"),
    }
}

/// Closes `f` and reports close's own result (std's `Drop` ignores it, and a FUSE close
/// sends a FLUSH that can fail).
fn close(f: std::fs::File) -> std::io::Result<()> {
    let fd = f.into_raw_fd();
    // SAFETY: `fd` was just taken from a File, so it is open and owned by nobody else.
    if unsafe { libc::close(fd) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// One file: create, write in 64 KiB pieces, fsync every third, close, and (when asked)
/// read back through the mount.
fn write_one(root: &Path, rel: &Path, seed: u64, read_back: bool) -> std::io::Result<Completed> {
    let len = 4096 + usize::try_from(seed % (384 << 10)).unwrap_or(0);
    let data = pattern(seed, len);
    let path = root.join(rel);
    let mut f = std::fs::File::create(&path)?;
    for piece in data.chunks(64 << 10) {
        f.write_all(piece)?;
    }
    let fsynced = seed.is_multiple_of(3);
    if fsynced {
        f.sync_all()?;
    }
    close(f)?;
    let sum = fnv64(&data);
    if read_back {
        let back = std::fs::read(&path)?;
        assert_eq!(
            (back.len(), fnv64(&back)),
            (len, sum),
            "{} read back different data through the mount",
            rel.display()
        );
    }
    Ok(Completed {
        rel: rel.to_path_buf(),
        len,
        sum,
        fsynced,
    })
}

/// Starts `THREADS` writer threads, each in its own (existing) directory `w<t>`, until an
/// error or `stop`. Each sends its log on `tx` when it ends, so the caller can wait with
/// a deadline instead of joining a possibly hung thread.
fn start_writers(
    root: &Path,
    stop: &Arc<AtomicBool>,
    read_back: bool,
) -> (Vec<JoinHandle<()>>, mpsc::Receiver<WriterLog>) {
    let (tx, rx) = mpsc::channel();
    let mut handles = Vec::new();
    for t in 0..THREADS {
        std::fs::create_dir(root.join(format!("w{t}"))).expect("mkdir writer dir");
        let (root, stop, tx) = (root.to_path_buf(), Arc::clone(stop), tx.clone());
        handles.push(std::thread::spawn(move || {
            let mut log = WriterLog::default();
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let rel = PathBuf::from(format!("w{t}/f{i:05}"));
                match write_one(&root, &rel, (t as u64) << 32 | i, read_back) {
                    Ok(c) => {
                        log.read_back += usize::from(read_back);
                        log.completed.push(c);
                    }
                    Err(e) => {
                        log.error = Some(e);
                        break;
                    }
                }
                i += 1;
            }
            let _ = tx.send(log);
        }));
    }
    (handles, rx)
}

/// Collects every writer's log, failing the test if one has not stopped within
/// [`STOP_LIMIT`] (a hang).
#[track_caller]
fn collect_writers(handles: Vec<JoinHandle<()>>, rx: &mpsc::Receiver<WriterLog>) -> Vec<WriterLog> {
    let deadline = Instant::now() + STOP_LIMIT;
    let mut logs = Vec::new();
    for _ in 0..handles.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(log) => logs.push(log),
            Err(_) => panic!(
                "a writer thread was still blocked {STOP_LIMIT:?} after the fault ({} of {} \
                 stopped): a hang",
                logs.len(),
                handles.len()
            ),
        }
    }
    for h in handles {
        h.join().expect("writer thread panicked");
    }
    logs
}

/// Writer processes: each generates a file outside the mount, copies it in with `cp` (or
/// `dd conv=fsync`), and logs the name only after the copy exits 0.
struct ProcessWriters {
    children: Vec<std::process::Child>,
    /// Originals and logs, outside the mount.
    work: tempfile::TempDir,
}

impl ProcessWriters {
    fn start(root: &Path) -> ProcessWriters {
        let work = tempfile::tempdir().expect("tempdir");
        let mut children = Vec::new();
        for p in 0..PROCESSES {
            let dest = root.join(format!("p{p}"));
            std::fs::create_dir(&dest).expect("mkdir process writer dir");
            let orig = work.path().join(format!("orig{p}"));
            std::fs::create_dir(&orig).unwrap();
            let copy = if p % 2 == 0 {
                r#"cp "$ORIG/$n" "$DEST/$n""#
            } else {
                r#"dd if="$ORIG/$n" of="$DEST/$n" bs=64k conv=fsync status=none"#
            };
            let script = format!(
                r#"i=0
while [ $i -lt 1000000 ]; do
  n=f$i
  head -c $(( (i % 40 + 1) * 8192 )) /dev/urandom > "$ORIG/$n"
  {copy} 2>/dev/null || exit 0
  echo "$n" >> "$LOG"
  i=$((i+1))
done"#
            );
            let child = Command::new("sh")
                .arg("-c")
                .arg(script)
                .env("ORIG", &orig)
                .env("DEST", &dest)
                .env("LOG", work.path().join(format!("log{p}")))
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("spawn writer process");
            children.push(child);
        }
        ProcessWriters { children, work }
    }

    /// Waits for every writer process to stop by itself (the copy failed), bounded by
    /// [`STOP_LIMIT`]; returns the originals of the copies that completed.
    #[track_caller]
    fn finish(&mut self) -> Vec<(PathBuf, PathBuf)> {
        for child in &mut self.children {
            let status = common::wait_timeout(child, STOP_LIMIT);
            assert!(
                status.is_some(),
                "a cp/dd writer process was still running {STOP_LIMIT:?} after the fault"
            );
        }
        let mut done = Vec::new();
        for p in 0..PROCESSES {
            let log = std::fs::read_to_string(self.work.path().join(format!("log{p}")))
                .unwrap_or_default();
            for name in log.lines() {
                done.push((
                    self.work.path().join(format!("orig{p}/{name}")),
                    PathBuf::from(format!("p{p}/{name}")),
                ));
            }
        }
        done
    }
}

impl Drop for ProcessWriters {
    fn drop(&mut self) {
        for child in &mut self.children {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Checks every completed file against `dir` (the loopback source on the host, or the
/// mount), returning how many were checked.
#[track_caller]
fn verify_completed(dir: &Path, logs: &[WriterLog], copies: &[(PathBuf, PathBuf)]) -> usize {
    let mut n = 0;
    for c in logs.iter().flat_map(|l| &l.completed) {
        let got = std::fs::read(dir.join(&c.rel))
            .unwrap_or_else(|e| panic!("{} (completed before the fault): {e}", c.rel.display()));
        assert_eq!(
            (got.len(), fnv64(&got)),
            (c.len, c.sum),
            "{} (closed{} before the fault) is not intact",
            c.rel.display(),
            if c.fsynced { " and fsynced" } else { "" }
        );
        n += 1;
    }
    for (orig, rel) in copies {
        let want = std::fs::read(orig).expect("original");
        let got = std::fs::read(dir.join(rel))
            .unwrap_or_else(|e| panic!("{} (copied before the fault): {e}", rel.display()));
        assert!(
            want == got,
            "{} (copied before the fault) differs from its original",
            rel.display()
        );
        n += 1;
    }
    n
}

/// How the writers stopped, e.g. `ENOTCONN x4`.
fn stop_reasons(logs: &[WriterLog]) -> String {
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for l in logs {
        let k = l.error.as_ref().map_or("stopped".into(), errno_name);
        *counts.entry(k).or_default() += 1;
    }
    counts
        .iter()
        .map(|(k, n)| format!("{k} x{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether `pid` is alive and not a zombie.
fn alive(daemon: &mut Daemon) -> bool {
    matches!(daemon.child.try_wait(), Ok(None))
}

// ---------------------------------------------------------------------------------------
// SIGKILL during heavy writes through FUSE.

fn sigkill_during_writes(kind: Kind, test: &str) {
    let Some(mut m) = Mounted::new(test, kind, Extra::default()) else {
        return;
    };
    let root = m.path().to_path_buf();
    let stop = Arc::new(AtomicBool::new(false));
    let (handles, rx) = start_writers(&root, &stop, false);
    let mut procs = ProcessWriters::start(&root);
    std::thread::sleep(WRITE_PHASE);
    signal(&m.daemon.child, libc::SIGKILL);
    let killed_at = Instant::now();
    let status = m.daemon.wait_exit();
    assert_eq!(status.code(), None, "killed by SIGKILL");
    let logs = collect_writers(handles, &rx);
    let copies = procs.finish();
    let stopped_in = killed_at.elapsed();
    // Every writer stopped on an error from the dead connection, none on EIO: the kernel
    // fails requests in flight at the kill with ECONNABORTED, later ones with ENOTCONN,
    // and over FUSE-over-io_uring those it had already handed to a queue of the dying
    // daemon with ECANCELED.
    for l in &logs {
        let e = l.error.as_ref().expect("a writer stopped without an error");
        assert!(
            matches!(
                e.raw_os_error(),
                Some(libc::ENOTCONN | libc::ECONNABORTED | libc::ECANCELED)
            ),
            "writers of a killed daemon get ENOTCONN, ECONNABORTED or ECANCELED: {e}"
        );
    }
    let completed: usize = logs.iter().map(|l| l.completed.len()).sum();
    let fsynced = logs
        .iter()
        .flat_map(|l| &l.completed)
        .filter(|c| c.fsynced)
        .count();
    assert!(completed > 0, "no file was completed before the kill");

    // The dead mount is still there; `vmount unmount` clears it.
    assert_eq!(
        mountinfo_count(&root),
        1,
        "one dead mount at {}",
        root.display()
    );
    let out = vmount(&["unmount", m.setup.mountpoint_str()]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert_eq!(mountinfo_count(&root), 0, "the dead mount is gone");

    // Loopback: every completed file is on the host, intact.
    let verified = match kind {
        Kind::Loopback => verify_completed(m.source(), &logs, &copies),
        Kind::Memfs => 0,
    };

    // A new daemon mounts at the same place and works; loopback shows the files again.
    // The killed daemon's guard, dropped once the new one has started, must not unmount
    // the new mount.
    m.daemon.disown_mount();
    m.daemon = Daemon::spawn(&[m.setup.config_str()], &root);
    m.daemon.wait_mounted(kind.name());
    let remounted_ok = match kind {
        Kind::Loopback => verify_completed(&root, &logs, &copies) == verified,
        Kind::Memfs => std::fs::read_dir(&root).unwrap().count() == 0,
    };
    assert!(remounted_ok, "the new mount does not show what it should");
    std::fs::write(root.join("after"), b"after the crash").expect("write on the new mount");
    assert_eq!(
        std::fs::read(root.join("after")).unwrap(),
        b"after the crash"
    );
    m.finish();
    println!(
        "faults[{test}]: 1 injected (SIGKILL), 1 survived; {completed} files closed \
         ({fsynced} fsynced) + {} copies before the kill, {verified} verified on the host; \
         writers stopped in {stopped_in:.1?} with {}",
        copies.len(),
        stop_reasons(&logs)
    );
}

#[test]
fn sigkill_during_writes_memfs() {
    sigkill_during_writes(Kind::Memfs, "sigkill_during_writes_memfs");
}

#[test]
fn sigkill_during_writes_loopback() {
    sigkill_during_writes(Kind::Loopback, "sigkill_during_writes_loopback");
}

// ---------------------------------------------------------------------------------------
// SIGKILL of an NFS server (serve only) while libnfs clients copy in.

/// How long one `nfs-cp` may take before it counts as hung.
const NFS_CP_LIMIT: Duration = Duration::from_secs(30);
const NFS_CLIENTS: usize = 4;

fn libnfs_or_skip(test: &str) -> bool {
    common::tools_or_skip(test, &["nfs-cp", "nfs-ls"])
}

/// What one nfs-cp client loop achieved and how it ended.
struct NfsClientLog {
    /// (local original, name in the export, when nfs-cp exited)
    completed: Vec<(PathBuf, String, Instant)>,
    /// The failing copy's exit status and message, or "hung".
    ended: String,
    hung: bool,
}

fn sigkill_nfs(kind: Kind, test: &str) {
    if !libnfs_or_skip(test) {
        return;
    }
    let source = common::open_tempdir_on_tmp("vmount-nfs-src-");
    let fs = match kind {
        Kind::Memfs => "type = \"memfs\"".to_owned(),
        Kind::Loopback => format!(
            "type = \"loopback\"\nsource = {:?}",
            source.path().to_str().unwrap()
        ),
    };
    let mut served = NfsServed::start(kind.name(), &fs, "", &[]);
    let port = served.port;
    let work = tempfile::tempdir().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..NFS_CLIENTS {
        let work = work.path().to_path_buf();
        let stop = Arc::clone(&stop);
        clients.push(std::thread::spawn(move || {
            let mut log = NfsClientLog {
                completed: Vec::new(),
                ended: String::new(),
                hung: false,
            };
            for i in 0u64.. {
                if stop.load(Ordering::SeqCst) {
                    log.ended = "stopped".into();
                    break;
                }
                let name = format!("c{c}-{i:04}");
                let orig = work.join(&name);
                let len = (64 << 10) + usize::try_from((i * 7919) % (1 << 20)).unwrap();
                std::fs::write(&orig, pattern((c as u64) << 40 | i, len)).unwrap();
                // libnfs reconnects forever by default (a hard mount's semantics), so a
                // copy in flight when the server dies would wait for a server that never
                // returns; autoreconnect=0 makes it report the lost connection instead.
                let url = format!(
                    "{}&autoreconnect=0",
                    common::nfs_url(port, &format!("/{name}"))
                );
                let out = output_timeout(Command::new("nfs-cp").arg(&orig).arg(&url), NFS_CP_LIMIT);
                match out {
                    Some(o) if o.status.success() => {
                        log.completed.push((orig, name, Instant::now()));
                    }
                    Some(o) => {
                        log.ended = format!(
                            "{}: {}",
                            o.status,
                            String::from_utf8_lossy(&o.stderr)
                                .lines()
                                .next()
                                .unwrap_or("")
                        );
                        break;
                    }
                    None => {
                        log.ended = "hung".into();
                        log.hung = true;
                        break;
                    }
                }
            }
            log
        }));
    }
    std::thread::sleep(WRITE_PHASE);
    let killed_at = Instant::now();
    signal(&served.daemon.child, libc::SIGKILL);
    assert_eq!(served.daemon.wait_exit().code(), None, "killed");
    let logs: Vec<NfsClientLog> = clients
        .into_iter()
        .map(|h| h.join().expect("client thread"))
        .collect();
    let stopped_in = killed_at.elapsed();
    for l in &logs {
        assert!(
            !l.hung,
            "an nfs-cp hung for {NFS_CP_LIMIT:?} after the server was killed"
        );
        assert_ne!(l.ended, "stopped", "a client ended without an error");
    }
    let completed: Vec<_> = logs.iter().flat_map(|l| &l.completed).collect();
    assert!(
        completed.iter().any(|c| c.2 < killed_at),
        "no copy completed before the kill"
    );

    // A client started now fails at once rather than hanging.
    let t = Instant::now();
    let out = output_timeout(
        Command::new("nfs-ls").arg(common::nfs_url(port, "")),
        NFS_CP_LIMIT,
    )
    .expect("nfs-ls against a killed server hung");
    assert!(
        !out.status.success(),
        "nfs-ls succeeded against a dead server"
    );
    let refused_in = t.elapsed();

    // Loopback: every copy whose nfs-cp exited before the kill is intact in the source.
    // One that exited after it may have lost its COMMIT to the kill: nfs-cp ignores the
    // error of its closing COMMIT and still exits 0, and an UNSTABLE write's data may be
    // lost until a COMMIT succeeds (vmount answers large ones before applying them).
    let mut verified = 0;
    if kind == Kind::Loopback {
        for (orig, name, _) in completed.iter().filter(|c| c.2 < killed_at) {
            let want = std::fs::read(orig).unwrap();
            let got = std::fs::read(source.path().join(name))
                .unwrap_or_else(|e| panic!("{name} (nfs-cp completed): {e}"));
            assert!(want == got, "{name} (nfs-cp completed) is not intact");
            verified += 1;
        }
    }

    // The port is free again: a new daemon serves on it.
    let again = NfsServed::start(kind.name(), &fs, &format!("port = {port}"), &[]);
    assert_eq!(again.port, port);
    let out = output_timeout(Command::new("nfs-ls").arg(again.url("")), NFS_CP_LIMIT)
        .expect("nfs-ls hung");
    assert!(out.status.success(), "{}", common::stderr(&out));
    let listed = common::stdout(&out);
    if kind == Kind::Loopback {
        for (_, name, _) in completed.iter().filter(|c| c.2 < killed_at) {
            assert!(
                listed.contains(name.as_str()),
                "{name} missing from {listed}"
            );
        }
    }
    let mut again = again;
    signal(&again.daemon.child, libc::SIGTERM);
    assert_eq!(
        again.daemon.wait_exit().code(),
        Some(0),
        "{}",
        again.daemon.stderr()
    );
    println!(
        "faults[{test}]: 1 injected (SIGKILL), 1 survived; {} copies completed, {verified} \
         verified in the source; clients stopped in {stopped_in:.1?} ({}); a new client was \
         refused in {refused_in:.1?}; port {port} reused",
        completed.len(),
        logs.first().map_or("", |l| l.ended.as_str())
    );
}

#[test]
fn sigkill_nfs_memfs() {
    sigkill_nfs(Kind::Memfs, "sigkill_nfs_memfs");
}

#[test]
fn sigkill_nfs_loopback() {
    sigkill_nfs(Kind::Loopback, "sigkill_nfs_loopback");
}

// ---------------------------------------------------------------------------------------
// A dead FUSE mount in the way.

/// vmount refuses to start on a dead mount left by a crash, naming the exact command,
/// and never stacks a mount on top of it.
#[test]
fn refuses_to_mount_over_a_dead_mount() {
    let test = "refuses_to_mount_over_a_dead_mount";
    let Some(mut m) = Mounted::new(test, Kind::Memfs, Extra::default()) else {
        return;
    };
    let mp = m.path().to_path_buf();
    std::fs::write(mp.join("x"), b"x").unwrap();
    signal(&m.daemon.child, libc::SIGKILL);
    m.daemon.wait_exit();
    assert_eq!(
        mountinfo_count(&mp),
        1,
        "the killed daemon's mount stays, dead"
    );
    // ECONNABORTED (or ECANCELED over io_uring) while the kernel's abort of the
    // connection is still in progress.
    let err = std::fs::read_dir(&mp).expect_err("a dead mount");
    assert!(
        matches!(
            err.raw_os_error(),
            Some(libc::ENOTCONN | libc::ECONNABORTED | libc::ECANCELED)
        ),
        "{err}"
    );
    let fix = format!("`vmount unmount {}`", mp.display());
    let config = m.setup.config_str().to_owned();
    let mut refusals = 0;
    for args in [
        vec![config.as_str()],
        vec!["--backend", "fuse", config.as_str()],
        vec!["mount", "--backend", "auto", config.as_str()],
    ] {
        let out = vmount(&args);
        common::assert_fails(&out, 1, &["dead FUSE mount", &fix]);
        assert_eq!(
            mountinfo_count(&mp),
            1,
            "`vmount {args:?}` mounted on top of the dead mount"
        );
        refusals += 1;
    }
    let out = vmount(&["unmount", m.setup.mountpoint_str()]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    assert_eq!(mountinfo_count(&mp), 0);
    m.daemon = Daemon::spawn(&[m.setup.config_str()], &mp);
    m.daemon.wait_mounted("memfs");
    assert_eq!(mountinfo_count(&mp), 1);
    m.finish();
    println!(
        "faults[{test}]: 1 injected (SIGKILL), 1 survived; {refusals} starts refused with {fix}"
    );
}

// ---------------------------------------------------------------------------------------
// SIGINT and SIGTERM during heavy writes.

fn signal_during_writes(kind: Kind, sig: libc::c_int, test: &str) {
    let Some(mut m) = Mounted::new(test, kind, Extra::default()) else {
        return;
    };
    let root = m.path().to_path_buf();
    let stop = Arc::new(AtomicBool::new(false));
    // memfs keeps nothing after exit: the writers read each file back through the mount
    // right after closing it, so every file closed before the signal was verified there.
    let (handles, rx) = start_writers(&root, &stop, kind == Kind::Memfs);
    let mut procs = ProcessWriters::start(&root);
    std::thread::sleep(WRITE_PHASE);
    let before_signal = mountinfo_count(&root);
    signal(&m.daemon.child, sig);
    let sent = Instant::now();
    let status = m.daemon.wait_exit();
    let exited_in = sent.elapsed();
    stop.store(true, Ordering::SeqCst);
    let logs = collect_writers(handles, &rx);
    let copies = procs.finish();
    let stderr = m.daemon.stderr();
    assert_eq!(
        status.code(),
        Some(0),
        "exit after signal {sig}; stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(before_signal, 1);
    assert_eq!(mountinfo_count(&root), 0, "still mounted after exit 0");
    for l in &logs {
        if let Some(e) = &l.error {
            assert_ne!(e.raw_os_error(), Some(libc::EIO), "a writer got EIO: {e}");
        }
    }
    let completed: usize = logs.iter().map(|l| l.completed.len()).sum();
    let read_back: usize = logs.iter().map(|l| l.read_back).sum();
    assert!(completed > 0, "no file completed before the signal");
    let verified = match kind {
        Kind::Loopback => verify_completed(m.source(), &logs, &copies),
        Kind::Memfs => {
            assert_eq!(read_back, completed);
            read_back
        }
    };
    // Nothing was written into the bare directory under the mount after it went away.
    let leftovers: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        leftovers.is_empty(),
        "the mountpoint holds {leftovers:?} after exit"
    );
    let name = if sig == libc::SIGINT {
        "SIGINT"
    } else {
        "SIGTERM"
    };
    println!(
        "faults[{test}]: 1 injected ({name}), 1 survived; exit 0 in {exited_in:.1?}; \
         {completed} files + {} copies closed before the signal, {verified} verified ({}); \
         writers stopped with {}",
        copies.len(),
        if kind == Kind::Memfs {
            "read back through the mount"
        } else {
            "on the host"
        },
        stop_reasons(&logs)
    );
}

#[test]
fn sigint_during_writes_memfs() {
    signal_during_writes(Kind::Memfs, libc::SIGINT, "sigint_during_writes_memfs");
}

#[test]
fn sigterm_during_writes_memfs() {
    signal_during_writes(Kind::Memfs, libc::SIGTERM, "sigterm_during_writes_memfs");
}

#[test]
fn sigint_during_writes_loopback() {
    signal_during_writes(
        Kind::Loopback,
        libc::SIGINT,
        "sigint_during_writes_loopback",
    );
}

#[test]
fn sigterm_during_writes_loopback() {
    signal_during_writes(
        Kind::Loopback,
        libc::SIGTERM,
        "sigterm_during_writes_loopback",
    );
}

// ---------------------------------------------------------------------------------------
// Loopback source faults.

/// Counts faults and checks, after each, that the daemon is up and its root answers.
struct Faults {
    test: &'static str,
    injected: usize,
    survived: usize,
    /// (operation, errno name) as the caller saw them.
    seen: Vec<(String, String)>,
}

impl Faults {
    fn new(test: &'static str) -> Faults {
        Faults {
            test,
            injected: 0,
            survived: 0,
            seen: Vec::new(),
        }
    }

    /// Asserts that `result` failed with one of `want` (the first is the expected one).
    #[track_caller]
    fn expect_err<T: std::fmt::Debug>(
        &mut self,
        op: &str,
        result: std::io::Result<T>,
        want: &[i32],
    ) {
        self.injected += 1;
        let e = match result {
            Ok(v) => panic!(
                "{}: {op} succeeded ({v:?}); expected errno {want:?}",
                self.test
            ),
            Err(e) => e,
        };
        assert!(
            e.raw_os_error().is_some_and(|n| want.contains(&n)),
            "{}: {op} failed with {e} ({}), expected errno {want:?}",
            self.test,
            errno_name(&e)
        );
        self.seen.push((op.to_owned(), errno_name(&e)));
    }

    /// The daemon survived the faults so far: alive, and `stat` of the root answers.
    #[track_caller]
    fn still_up(&mut self, m: &mut Mounted) {
        assert!(
            alive(&mut m.daemon),
            "{}: the daemon died: {}",
            self.test,
            m.daemon.stderr()
        );
        std::fs::metadata(m.path())
            .unwrap_or_else(|e| panic!("{}: stat of the mount root failed: {e}", self.test));
        self.survived = self.injected;
    }

    fn summary(&self, extra: &str) {
        let seen: Vec<String> = self
            .seen
            .iter()
            .map(|(op, e)| format!("{op}={e}"))
            .collect();
        println!(
            "faults[{}]: {} injected, {} survived; {}; {extra}",
            self.test,
            self.injected,
            self.survived,
            seen.join(" ")
        );
        assert_eq!(self.injected, self.survived);
    }
}

fn setxattr(path: &Path, name: &str, value: &[u8]) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt as _;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    // SAFETY: both strings are NUL-terminated and live across the call; `value` is a
    // valid buffer of its length.
    let rc = unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// `rm -rf` of the source under a live mount: ENOENT for everything by name, the root
/// and open files keep working, and a restart on a recreated source works.
#[test]
fn loopback_source_removed() {
    let test = "loopback_source_removed";
    let Some(mut m) = Mounted::new(test, Kind::Loopback, Extra::default()) else {
        return;
    };
    let mnt = m.path().to_path_buf();
    std::fs::create_dir(mnt.join("d")).unwrap();
    std::fs::write(mnt.join("d/f"), b"in d").unwrap();
    let mut held = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(mnt.join("held"))
        .unwrap();
    held.write_all(b"open before the removal").unwrap();
    let source = m.source().to_path_buf();
    std::fs::remove_dir_all(&source).expect("rm -rf the source");
    // Let the kernel's 1 s entry and attribute caches for loopback expire, so that every
    // lookup below reaches the daemon.
    std::thread::sleep(Duration::from_millis(1300));
    let mut f = Faults::new(test);
    f.expect_err(
        "create",
        std::fs::write(mnt.join("new"), b"x"),
        &[libc::ENOENT],
    );
    f.still_up(&mut m);
    f.expect_err(
        "mkdir",
        std::fs::create_dir(mnt.join("newdir")),
        &[libc::ENOENT],
    );
    f.expect_err(
        "lookup",
        std::fs::metadata(mnt.join("d/f")),
        &[libc::ENOENT],
    );
    f.expect_err(
        "open",
        std::fs::File::open(mnt.join("held")),
        &[libc::ENOENT],
    );
    // The removed root lists as empty, as a removed working directory does on the host.
    let listing = std::fs::read_dir(&mnt).and_then(|d| d.collect::<Result<Vec<_>, _>>());
    match listing {
        Ok(entries) => assert!(entries.is_empty(), "the removed root lists {entries:?}"),
        Err(e) => panic!("listing the removed root: {e}"),
    }
    f.still_up(&mut m);
    // A file open before the removal still reads and writes (it is unlinked, not gone).
    held.write_all(b", and after").unwrap();
    held.sync_all().unwrap();
    let mut back = String::new();
    use std::io::Seek as _;
    held.seek(std::io::SeekFrom::Start(0)).unwrap();
    held.read_to_string(&mut back).unwrap();
    assert_eq!(back, "open before the removal, and after");
    drop(held);
    f.still_up(&mut m);

    // The fix: recreate the source and restart.
    std::fs::create_dir(&source).unwrap();
    common::set_mode(&source, 0o755);
    signal(&m.daemon.child, libc::SIGTERM);
    assert_eq!(
        m.daemon.wait_exit().code(),
        Some(0),
        "{}",
        m.daemon.stderr()
    );
    m.daemon = Daemon::spawn(&[m.setup.config_str()], &mnt);
    m.daemon.wait_mounted("loopback");
    std::fs::write(mnt.join("new"), b"after the restart").unwrap();
    assert_eq!(
        std::fs::read(source.join("new")).unwrap(),
        b"after the restart"
    );
    f.summary("recovered by a restart on the recreated source");
    m.finish();
}

/// The source filesystem turns read-only under the mount: EROFS for every change,
/// reads go on, and after `remount,rw` changes work again.
#[test]
fn loopback_source_turns_read_only() {
    let test = "loopback_source_turns_read_only";
    if !common::fuse_or_skip(test) || !common::root_or_skip(test) {
        return;
    }
    let tmpfs = Tmpfs::new("8m");
    let mut m = Mounted::try_new(Kind::Loopback, Extra::default(), Some(tmpfs.path()))
        .unwrap_or_else(|e| panic!("{test}: {e}"));
    let mnt = m.path().to_path_buf();
    std::fs::write(mnt.join("f"), b"written while rw").unwrap();
    std::fs::create_dir(mnt.join("d")).unwrap();
    std::fs::write(mnt.join("d/g"), b"g").unwrap();
    // Every file is closed, so the host lets the remount happen (it refuses with EBUSY
    // while a file is open for writing, and so would the daemon be holding one).
    tmpfs
        .remount(true)
        .unwrap_or_else(|e| panic!("remount,ro of the source: {e} (does the daemon keep a file open for writing after close?)"));
    let erofs = &[libc::EROFS];
    let mut f = Faults::new(test);
    f.expect_err("create", std::fs::write(mnt.join("new"), b"x"), erofs);
    f.expect_err(
        "open-write",
        std::fs::OpenOptions::new().write(true).open(mnt.join("f")),
        erofs,
    );
    f.expect_err("mkdir", std::fs::create_dir(mnt.join("newdir")), erofs);
    f.expect_err("unlink", std::fs::remove_file(mnt.join("d/g")), erofs);
    f.expect_err(
        "rename",
        std::fs::rename(mnt.join("f"), mnt.join("f2")),
        erofs,
    );
    f.expect_err(
        "chmod",
        std::fs::set_permissions(mnt.join("f"), std::fs::Permissions::from_mode(0o600)),
        erofs,
    );
    f.expect_err(
        "truncate",
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(mnt.join("f")),
        erofs,
    );
    f.expect_err("setxattr", setxattr(&mnt.join("f"), "user.x", b"1"), erofs);
    f.still_up(&mut m);
    assert_eq!(std::fs::read(mnt.join("f")).unwrap(), b"written while rw");
    assert_eq!(std::fs::read_dir(&mnt).unwrap().count(), 2);

    tmpfs.remount(false).expect("remount,rw");
    std::fs::write(mnt.join("new"), b"after rw").expect("create after remount,rw");
    std::fs::rename(mnt.join("f"), mnt.join("f2")).expect("rename after remount,rw");
    std::fs::remove_file(mnt.join("d/g")).expect("unlink after remount,rw");
    assert_eq!(
        std::fs::read(tmpfs.path().join("new")).unwrap(),
        b"after rw"
    );
    f.summary("recovered after remount,rw");
    m.finish();
    drop(tmpfs);
}

fn statvfs(path: &Path) -> libc::statvfs {
    use std::os::unix::ffi::OsStrExt as _;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: statvfs is plain old data, valid when zeroed.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `p` is NUL-terminated and `st` is a valid, writable statvfs.
    let rc = unsafe { libc::statvfs(p.as_ptr(), &mut st) };
    assert_eq!(
        rc,
        0,
        "statvfs {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
    st
}

/// Writes `len` bytes to `path` in 256 KiB pieces, then fsyncs and closes; the first
/// error of any step is returned with how many bytes the writes had accepted.
fn fill(path: &Path, len: usize) -> (usize, std::io::Result<()>) {
    let mut f = match std::fs::File::create(path) {
        Ok(f) => f,
        Err(e) => return (0, Err(e)),
    };
    let piece = pattern(7, 256 << 10);
    let mut written = 0;
    while written < len {
        match f.write(&piece) {
            Ok(n) => written += n,
            Err(e) => return (written, Err(e)),
        }
    }
    let r = f.sync_all().and_then(|()| close(f));
    (written, r)
}

/// The source fills up (a 16 MiB tmpfs): the writer gets ENOSPC, statfs through the
/// mount shows no space, and once a file is removed writing works again.
#[test]
fn loopback_source_fills_up() {
    let test = "loopback_source_fills_up";
    if !common::fuse_or_skip(test) || !common::root_or_skip(test) {
        return;
    }
    let tmpfs = Tmpfs::new("16m");
    let mut m = Mounted::try_new(Kind::Loopback, Extra::default(), Some(tmpfs.path()))
        .unwrap_or_else(|e| panic!("{test}: {e}"));
    let mnt = m.path().to_path_buf();
    let mut f = Faults::new(test);
    let (written, r) = fill(&mnt.join("big"), 64 << 20);
    f.expect_err("write-until-full", r, &[libc::ENOSPC]);
    assert!(
        written >= 12 << 20,
        "only {written} bytes fit in a 16 MiB tmpfs"
    );
    f.still_up(&mut m);
    let st = statvfs(&mnt);
    assert_eq!(
        st.f_bavail, 0,
        "statfs through the mount shows the source full"
    );
    let (_, r) = fill(&mnt.join("small"), 64 << 10);
    f.expect_err("write-when-full", r, &[libc::ENOSPC]);
    f.still_up(&mut m);
    // Nothing is lost: what was accepted is there.
    let big = std::fs::metadata(mnt.join("big")).unwrap().len();
    assert!(
        big >= 12 << 20 && big <= written as u64,
        "big is {big} bytes"
    );

    // Free the space: writing works again.
    std::fs::remove_file(mnt.join("big")).unwrap();
    std::fs::remove_file(mnt.join("small")).unwrap();
    let (n, r) = fill(&mnt.join("again"), 8 << 20);
    r.expect("writing after space was freed");
    assert_eq!(
        std::fs::metadata(tmpfs.path().join("again")).unwrap().len(),
        n as u64
    );
    assert!(statvfs(&mnt).f_bavail > 0);
    // Again for a file read through the mount first, whose passthrough registration is
    // kept across opens and must end with the removal: a full source, `rm`, a write.
    assert_eq!(std::fs::read(mnt.join("again")).unwrap().len(), n);
    let (_, r) = fill(&mnt.join("pad"), 64 << 20);
    f.expect_err("pad-until-full", r, &[libc::ENOSPC]);
    std::fs::remove_file(mnt.join("again")).unwrap();
    fill(&mnt.join("after"), 4 << 20)
        .1
        .expect("writing right after removing a file read before");
    f.still_up(&mut m);
    f.summary(&format!(
        "{} MiB accepted before ENOSPC; recovered after rm",
        written >> 20
    ));
    m.finish();
    drop(tmpfs);
}

/// The same disk-full fault through NFS: WRITE into a 16 MiB source until it fails with
/// NFS3ERR_NOSPC (not NFS3ERR_IO), recovery after a REMOVE, and the server
/// serving on. (`nfs-cp` only says "Failed to write to dest file", so raw RPC is used.)
#[test]
fn nfs_loopback_source_fills_up() {
    let test = "nfs_loopback_source_fills_up";
    if !common::root_or_skip(test) {
        return;
    }
    let tmpfs = Tmpfs::new("16m");
    let fs = format!(
        "type = \"loopback\"\nsource = {:?}",
        tmpfs.path().to_str().unwrap()
    );
    let mut served = NfsServed::start("full", &fs, "", &[]);
    let mut c = common::rpc::Nfs::connect(served.port).expect("connect");
    let root = c.mount("/vmount").expect("MNT");
    let fh = c.create(&root, "big", 0o644, true).expect("CREATE");
    let piece = pattern(3, 1 << 20);
    let mut written = 0u64;
    let status = loop {
        match c.write(&fh, written, &piece) {
            Ok(()) => written += piece.len() as u64,
            Err(s) => break s,
        }
        assert!(written <= 32 << 20, "32 MiB fitted into a 16 MiB source");
    };
    assert_eq!(
        status, 28,
        "a full source is NFS3ERR_NOSPC (28), got {status}"
    );
    assert!(
        alive(&mut served.daemon),
        "the server died: {}",
        served.daemon.stderr()
    );
    c.getattr(&root)
        .expect("the server still answers GETATTR of the root");
    c.remove(&root, "big").expect("REMOVE");
    let fh = c
        .create(&root, "small", 0o644, true)
        .expect("CREATE after freeing space");
    c.write(&fh, 0, &piece).expect("WRITE after freeing space");
    assert_eq!(std::fs::read(tmpfs.path().join("small")).unwrap(), piece);
    signal(&served.daemon.child, libc::SIGTERM);
    assert_eq!(served.daemon.wait_exit().code(), Some(0));
    println!(
        "faults[{test}]: 1 injected, 1 survived; WRITE got NFS3ERR_NOSPC after {} MiB; \
         recovered after REMOVE",
        written >> 20
    );
    drop(tmpfs);
}
