//! The NFS backend through the binary, tested with an independent userspace client: this
//! machine's kernel may have no NFS client, so `[nfs] mount = false` serves only and
//! libnfs's `nfs-ls` and `nfs-cp` (package libnfs-utils) talk to the server. On Linux with
//! `CI=true` a missing libnfs-utils fails the tests instead of skipping them.
//!
//! libnfs binds a privileged source port only as root, and the server's peer check admits
//! root and the daemon's own user, so these pass as root and as an ordinary user alike.
#![cfg(unix)]

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Daemon, config_file, signal, stdout, tools_or_skip, vmount};

/// A `vmount --backend nfs` serving (not mounting) one filesystem, and the port it printed.
struct Served {
    daemon: Daemon,
    port: u16,
    /// The temp dir holding the config and the mountpoint.
    _dir: tempfile::TempDir,
}

impl Served {
    /// Starts serving `[filesystem]` body `fs` and reads the three lines vmount prints.
    #[track_caller]
    fn start(name: &str, fs: &str) -> Served {
        let text = format!(
            "mountpoint = \"mp\"\nname = \"{name}\"\n[filesystem]\n{fs}\n[nfs]\nmount = false\n"
        );
        let (dir, config) = config_file(&text);
        let mp = dir.path().join("mp");
        std::fs::create_dir(&mp).unwrap();
        let mp = mp.canonicalize().unwrap();
        let config = config.to_str().unwrap().to_owned();
        let mut daemon = Daemon::spawn(&["--backend", "nfs", &config], &mp);
        let first = daemon.first_line();
        let port = parse_serving_line(&first, name)
            .unwrap_or_else(|| panic!("unexpected first line `{first}`; {}", daemon.stderr()));
        let mount = daemon.first_line();
        let unmount = daemon.first_line();
        let mp_str = mp.to_str().unwrap();
        assert!(mount.starts_with("mount with:   "), "{mount}");
        assert!(unmount.starts_with("unmount with: "), "{unmount}");
        if cfg!(target_os = "linux") {
            for want in [
                "mount -t nfs -o vers=3,proto=tcp,".to_owned(),
                format!(",port={port},mountport={port},"),
                ",nolock,".to_owned(),
                format!(" 127.0.0.1:/vmount {mp_str}"),
            ] {
                assert!(mount.contains(&want), "`{mount}` lacks `{want}`");
            }
            assert!(unmount.ends_with(&format!("umount {mp_str}")), "{unmount}");
        } else if cfg!(target_os = "macos") {
            let want = format!("port={port},mountport={port},locallocks");
            assert!(mount.contains("/sbin/mount_nfs -o vers=3,tcp,") && mount.contains(&want));
        }
        Served {
            daemon,
            port,
            _dir: dir,
        }
    }

    /// `nfs://127.0.0.1/vmount/PATH?...` for this server.
    fn url(&self, path: &str) -> String {
        let p = self.port;
        format!("nfs://127.0.0.1/vmount{path}?nfsport={p}&mountport={p}&version=3")
    }

    /// SIGTERM, and the exit status must be 0.
    #[track_caller]
    fn stop(mut self) {
        signal(&self.daemon.child, libc::SIGTERM);
        let status = self.daemon.wait_exit();
        assert!(
            status.success(),
            "{status}; stderr: {}",
            self.daemon.stderr()
        );
    }
}

/// The port from `serving NAME over NFS on 127.0.0.1:PORT, export /vmount`.
fn parse_serving_line(line: &str, name: &str) -> Option<u16> {
    let rest = line.strip_prefix(&format!("serving {name} over NFS on 127.0.0.1:"))?;
    let port = rest.strip_suffix(", export /vmount")?.parse().ok()?;
    (port != 0).then_some(port)
}

/// libnfs-utils must be there; .ci/setup installs it, so on CI its absence fails the test.
fn libnfs_or_skip(test: &str) -> bool {
    tools_or_skip(test, &["nfs-ls", "nfs-cp", "sha256sum"])
}

/// Runs a libnfs tool, failing the test on a non-zero exit; returns stdout.
#[track_caller]
fn libnfs(tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("spawn {tool}: {e}"));
    assert!(
        out.status.success(),
        "{tool} {args:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The names `nfs-ls` prints (its last column), without `.` and `..`.
fn ls_names(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .filter(|n| *n != "." && *n != "..")
        .map(str::to_owned)
        .collect()
}

/// Writes `len` bytes of a fixed pseudo-random sequence (xorshift) to `path`, so that a
/// shifted or repeated block cannot go unnoticed.
fn write_pattern(path: &Path, len: u64, seed: u64) {
    let f = std::fs::File::create(path).unwrap();
    let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
    let mut x = seed | 1;
    let mut left = len;
    let mut block = vec![0u8; 1 << 20];
    while left > 0 {
        for chunk in block.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        let n = usize::try_from(left.min(block.len() as u64)).unwrap();
        w.write_all(&block[..n]).unwrap();
        left -= n as u64;
    }
    w.flush().unwrap();
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success(), "sha256sum {}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// Copies a `len`-byte file into the export and back out, comparing checksums; returns
/// the local original.
#[track_caller]
fn round_trip(served: &Served, work: &Path, name: &str, len: u64) -> PathBuf {
    let orig = work.join(format!("{name}.orig"));
    let back = work.join(format!("{name}.back"));
    write_pattern(&orig, len, len ^ 0x9e37_79b9_7f4a_7c15);
    let remote = served.url(&format!("/{name}"));
    libnfs("nfs-cp", &[orig.to_str().unwrap(), &remote]);
    libnfs("nfs-cp", &[&remote, back.to_str().unwrap()]);
    assert_eq!(std::fs::metadata(&back).unwrap().len(), len);
    assert_eq!(sha256(&orig), sha256(&back), "{name} changed on the way");
    let listing = libnfs("nfs-ls", &[&served.url("")]);
    assert!(ls_names(&listing).contains(&name.to_owned()), "{listing}");
    std::fs::remove_file(&back).unwrap();
    orig
}

#[test]
fn serves_prints_the_commands_lists_and_stops_on_sigterm() {
    let served = Served::start("scratch", "type = \"memfs\"");
    if libnfs_or_skip("serves_prints_the_commands_lists_and_stops_on_sigterm") {
        let listing = libnfs("nfs-ls", &[&served.url("")]);
        assert!(
            ls_names(&listing).is_empty(),
            "a new memfs is empty: {listing}"
        );
    }
    served.stop();
}

/// An idle NFS server sleeps (it woke 20 times a second before) and still serves at once
/// afterwards, and SIGTERM ends it promptly.
#[cfg(target_os = "linux")]
#[test]
fn an_idle_server_sleeps_and_still_answers() {
    let test = "an_idle_server_sleeps_and_still_answers";
    if !libnfs_or_skip(test) {
        return;
    }
    let served = Served::start("idle", "type = \"memfs\"");
    let work = tempfile::tempdir().unwrap();
    round_trip(&served, work.path(), "before.bin", 1 << 20);
    common::assert_daemon_falls_asleep(test, served.daemon.child.id());
    round_trip(&served, work.path(), "after.bin", 1 << 20);
    let t = std::time::Instant::now();
    served.stop();
    assert!(
        t.elapsed() < std::time::Duration::from_secs(2),
        "SIGTERM took {:?} to stop an idle server",
        t.elapsed()
    );
}

#[test]
fn memfs_64_mib_round_trip() {
    if !libnfs_or_skip("memfs_64_mib_round_trip") {
        return;
    }
    let served = Served::start("mem", "type = \"memfs\"");
    let work = tempfile::tempdir().unwrap();
    round_trip(&served, work.path(), "big.bin", 64 << 20);
    served.stop();
}

#[test]
fn loopback_64_mib_round_trip_lands_in_the_source() {
    if !libnfs_or_skip("loopback_64_mib_round_trip_lands_in_the_source") {
        return;
    }
    let source = tempfile::tempdir().unwrap();
    let fs = format!(
        "type = \"loopback\"\nsource = \"{}\"",
        source.path().to_str().unwrap()
    );
    let served = Served::start("lo", &fs);
    let work = tempfile::tempdir().unwrap();
    let orig = round_trip(&served, work.path(), "big.bin", 64 << 20);
    assert_eq!(sha256(&orig), sha256(&source.path().join("big.bin")));
    served.stop();
}

#[test]
fn loopback_big_directory_is_listed_whole() {
    if !libnfs_or_skip("loopback_big_directory_is_listed_whole") {
        return;
    }
    const N: usize = 25_000;
    let source = tempfile::tempdir().unwrap();
    for i in 0..N {
        std::fs::File::create(source.path().join(format!("entry-{i:05}"))).unwrap();
    }
    let fs = format!(
        "type = \"loopback\"\nsource = \"{}\"",
        source.path().to_str().unwrap()
    );
    let served = Served::start("many", &fs);
    let listing = libnfs("nfs-ls", &[&served.url("")]);
    let mut names = ls_names(&listing);
    names.sort();
    let want: Vec<String> = (0..N).map(|i| format!("entry-{i:05}")).collect();
    assert_eq!(names.len(), N, "entries listed");
    assert_eq!(names, want);
    served.stop();
}

#[test]
fn memfs_1_gib_round_trip() {
    if !libnfs_or_skip("memfs_1_gib_round_trip") {
        return;
    }
    let served = Served::start("huge", "type = \"memfs\"");
    let work = tempfile::tempdir().unwrap();
    round_trip(&served, work.path(), "gib.bin", 1 << 30);
    served.stop();
}

#[test]
fn busy_port_is_one_sentence_and_exit_1() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (dir, config) = config_file(&format!(
        "mountpoint = \"mp\"\n[filesystem]\ntype = \"memfs\"\n[nfs]\nport = {port}\nmount = \
         false\n"
    ));
    std::fs::create_dir(dir.path().join("mp")).unwrap();
    let out = vmount(&["--backend", "nfs", config.to_str().unwrap()]);
    common::assert_fails(
        &out,
        1,
        &[
            &format!("port {port} on 127.0.0.1 is in use"),
            "[nfs] port = 0",
        ],
    );
    drop(taken);
}

#[test]
fn backends_reports_nfs() {
    let out = vmount(&["backends"]);
    assert!(out.status.success());
    let text = stdout(&out);
    let row = text
        .lines()
        .find(|l| l.starts_with("nfs "))
        .unwrap_or_else(|| panic!("no nfs row: {text}"));
    if row.contains("not usable") {
        assert!(
            text.contains("[nfs] mount = false"),
            "the fix names serve-only mode: {text}"
        );
        if cfg!(target_os = "linux") {
            assert!(
                row.contains("mount.nfs") || row.contains("root") || row.contains("NFS client"),
                "{row}"
            );
        }
    } else {
        assert!(row.ends_with("usable"), "{row}");
    }
}

#[test]
fn check_shows_the_nfs_settings() {
    let (dir, config) = config_file(
        "mountpoint = \"mp\"\nbackend = \"nfs\"\n[filesystem]\ntype = \"memfs\"\n[nfs]\nport = \
         2049\nmount = false\nallow_other = true\n",
    );
    std::fs::create_dir(dir.path().join("mp")).unwrap();
    let out = vmount(&["check", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let text = stdout(&out);
    for want in [
        "backend:                nfs (from config)",
        "  port:                 2049 on 127.0.0.1",
        "  mount:                no (serve only, print the command)",
        "  allow_other:          yes",
    ] {
        assert!(text.contains(want), "`{want}` missing from:\n{text}");
    }
}

#[test]
fn mounting_without_a_client_says_what_to_do() {
    if vmount_backend_nfs::available().is_ok() {
        eprintln!("skipping mounting_without_a_client_says_what_to_do: this machine can mount NFS");
        return;
    }
    let (dir, config) = config_file("mountpoint = \"mp\"\n[filesystem]\ntype = \"memfs\"\n");
    std::fs::create_dir(dir.path().join("mp")).unwrap();
    let config = config.to_str().unwrap();
    for args in [
        vec!["--backend", "nfs", config],
        vec!["check", "--backend", "nfs", config],
    ] {
        let out = vmount(&args);
        common::assert_fails(
            &out,
            1,
            &[
                "the nfs backend cannot be used here: ",
                "[nfs] mount = false",
            ],
        );
    }
}
