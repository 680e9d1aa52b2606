//! Hostile input and other users: the server must neither crash, hang, nor allocate at
//! a client's word, and must refuse local users it does not serve.

mod server_common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use server_common::{Args, Client, MOUNT, NFS, Reply};
use vmount_backend_nfs::{NfsServer, ServeOptions, serve};
use vmount_core::memfs::{MemFs, MemFsOptions};

fn start() -> NfsServer {
    serve(
        Arc::new(MemFs::new(MemFsOptions::default())),
        &ServeOptions::default(),
    )
    .unwrap()
}

/// True when the server closes `s` (EOF or reset) within a few seconds, without sending
/// anything.
fn closed_without_answer(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 64];
    matches!(s.read(&mut buf), Ok(0) | Err(_))
        && {
            // A timeout is an error too: tell it apart from a close.
            s.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
            !matches!(s.read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut)
        }
}

fn still_serves(srv: &NfsServer) {
    let mut c = Client::connect(srv.port());
    assert_eq!(c.call(NFS, 3, 0, &Args::new()), Reply::Ok(vec![]));
}

#[test]
fn garbage_bytes_drop_the_connection() {
    let srv = start();
    let mut s = TcpStream::connect(("127.0.0.1", srv.port())).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(closed_without_answer(&mut s));
    still_serves(&srv);
}

#[test]
fn a_record_claiming_2_gib_is_refused_at_once() {
    let srv = start();
    let mut s = TcpStream::connect(("127.0.0.1", srv.port())).unwrap();
    s.write_all(&0xffff_ffffu32.to_be_bytes()).unwrap();
    let t = Instant::now();
    assert!(closed_without_answer(&mut s));
    assert!(t.elapsed() < Duration::from_secs(4));
    // Fragments adding up past the limit are refused too.
    let mut s = TcpStream::connect(("127.0.0.1", srv.port())).unwrap();
    let frag = vec![0u8; 600 * 1024];
    s.write_all(&(frag.len() as u32).to_be_bytes()).unwrap();
    s.write_all(&frag).unwrap();
    s.write_all(&(0x8000_0000u32 | frag.len() as u32).to_be_bytes())
        .unwrap();
    let _ = s.write_all(&frag);
    assert!(closed_without_answer(&mut s));
    still_serves(&srv);
}

#[test]
fn truncated_records_do_not_hang_the_server() {
    let srv = start();
    // A header announcing 100 bytes, 10 sent, then the client stops writing.
    let mut s = TcpStream::connect(("127.0.0.1", srv.port())).unwrap();
    s.write_all(&(0x8000_0000u32 | 100).to_be_bytes()).unwrap();
    s.write_all(&[7u8; 10]).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert!(closed_without_answer(&mut s));
    // One that just stalls mid-record holds only its own connection.
    let mut stalled = TcpStream::connect(("127.0.0.1", srv.port())).unwrap();
    stalled
        .write_all(&(0x8000_0000u32 | 100).to_be_bytes())
        .unwrap();
    still_serves(&srv);
    // A well-framed call truncated inside its RPC header is garbage: dropped.
    let mut c = Client::connect(srv.port());
    let rec = c.call_record(NFS, 3, 0, &[]);
    let body = &rec[4..20];
    let mut cut = (0x8000_0000u32 | body.len() as u32).to_be_bytes().to_vec();
    cut.extend_from_slice(body);
    c.send_raw(&cut);
    assert!(closed_without_answer(&mut c.s));
    still_serves(&srv);
}

#[test]
fn bad_arguments_get_garbage_args() {
    let srv = start();
    let mut c = Client::connect(srv.port());
    // GETATTR without a handle; a handle longer than 64 bytes; a length of 4 GiB.
    assert_eq!(c.call(NFS, 3, 1, &Args::new()), Reply::AcceptErr(4));
    assert_eq!(
        c.call(NFS, 3, 1, &Args::new().opaque(&[0u8; 65])),
        Reply::AcceptErr(4)
    );
    assert_eq!(
        c.call(NFS, 3, 1, &Args::new().u32(u32::MAX)),
        Reply::AcceptErr(4)
    );
    assert_eq!(
        c.call(MOUNT, 3, 1, &Args::new().u32(u32::MAX).u32(1)),
        Reply::AcceptErr(4)
    );
    let root = c.mnt("/vmount");
    // A name claiming 1 GiB; a WRITE whose data claims 4 GiB; a READ for 4 GiB is
    // clamped, not allocated.
    assert_eq!(
        c.call(NFS, 3, 3, &Args::new().opaque(&root).u32(1 << 30)),
        Reply::AcceptErr(4)
    );
    let (fh, _) = c.create(&root, "f", 0o644).unwrap();
    let w = Args::new()
        .opaque(&fh)
        .u64(0)
        .u32(u32::MAX)
        .u32(0)
        .u32(u32::MAX);
    assert_eq!(c.call(NFS, 3, 7, &w), Reply::AcceptErr(4));
    assert_eq!(c.read(&fh, 0, u32::MAX).unwrap().0.len(), 0);
    // A WRITE whose count exceeds its data is INVAL; a bad stable_how is garbage.
    let w = Args::new().opaque(&fh).u64(0).u32(10).u32(0).opaque(b"abc");
    assert_eq!(server_common::R(c.call(NFS, 3, 7, &w).body()).u32(), 22);
    let w = Args::new().opaque(&fh).u64(0).u32(3).u32(9).opaque(b"abc");
    assert_eq!(c.call(NFS, 3, 7, &w), Reply::AcceptErr(4));
    // An RPC version other than 2 is RPC_MISMATCH, and the connection lives on.
    let mut rec = c.call_record(NFS, 3, 0, &[]);
    rec[12..16].copy_from_slice(&3u32.to_be_bytes());
    c.send_raw(&rec);
    let reply = c.read_reply().unwrap();
    assert_eq!(&reply[8..16], &[0, 0, 0, 1, 0, 0, 0, 0]);
    assert_eq!(c.call(NFS, 3, 0, &Args::new()), Reply::Ok(vec![]));
}

#[test]
fn random_records_never_crash_the_server() {
    let srv = start();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut c = Client::connect(srv.port());
    let root = c.mnt("/vmount");
    for i in 0..400 {
        // A valid header for a random procedure with random argument bytes, sometimes
        // starting with a real handle so the handlers get past the first field.
        let proc_ = (next() % 23) as u32;
        let len = (next() % 200) as usize;
        let mut args: Vec<u8> = if i % 2 == 0 {
            Args::new().opaque(&root).0
        } else {
            Vec::new()
        };
        args.extend((0..len).map(|_| next() as u8));
        let prog = if i % 7 == 0 { MOUNT } else { NFS };
        let rec = c.call_record(prog, 3, proc_, &args);
        c.send_raw(&rec);
        if c.read_reply().is_none() {
            c = Client::connect(srv.port());
        }
    }
    // Entirely random bytes on fresh connections.
    for _ in 0..50 {
        let mut s = TcpStream::connect(("127.0.0.1", srv.port())).unwrap();
        let junk: Vec<u8> = (0..(next() % 512)).map(|_| next() as u8).collect();
        let _ = s.write_all(&junk);
    }
    still_serves(&srv);
}

const HELPER_ENV: &str = "VMOUNT_NFS_TEST_PORT";

/// Run by `other_users_connection_is_closed` as uid 65534: connects, sends a NULL call and
/// reports whether the server answered.
#[test]
#[ignore = "helper, run as another user by other_users_connection_is_closed"]
fn helper_connect_as_other_user() {
    let port: u16 = std::env::var(HELPER_ENV).unwrap().parse().unwrap();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap_or("");
    println!("HELPER {uid_line}");
    let mut c = Client::connect(port);
    let rec = c.call_record(NFS, 3, 0, &[]);
    let _ = c.s.write_all(&rec);
    c.s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 4];
    match c.s.read(&mut buf) {
        Ok(0) => println!("RESULT:closed"),
        Ok(_) => println!("RESULT:answered"),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => println!("RESULT:closed"),
        Err(e) => println!("RESULT:error {e}"),
    }
}

/// Runs the helper as uid 65534 against `srv` and returns its output.
#[cfg(target_os = "linux")]
fn run_as_nobody(srv: &NfsServer) -> String {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&exe)
        .args([
            "--exact",
            "helper_connect_as_other_user",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, srv.port().to_string())
        .output()
        .expect("setpriv runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        stdout.contains("Uid:\t65534"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[cfg(target_os = "linux")]
#[test]
fn other_users_connection_is_closed() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to run a client as nobody");
        return;
    }
    let srv = start();
    let stdout = run_as_nobody(&srv);
    assert!(stdout.contains("RESULT:closed"), "{stdout}");
    // Root's connection is served.
    still_serves(&srv);
    // The same user, once allowed, is answered: the check tells users apart.
    let allowed = serve(
        Arc::new(MemFs::new(MemFsOptions::default())),
        &ServeOptions {
            allowed_uids: vec![65534],
            ..ServeOptions::default()
        },
    )
    .unwrap();
    let stdout = run_as_nobody(&allowed);
    assert!(stdout.contains("RESULT:answered"), "{stdout}");
}

/// `max_connections` bounds the connections served at once: one more is closed on
/// accept without an answer, and a slot freed by a client that leaves is reused.
#[test]
fn connections_beyond_the_limit_are_closed() {
    let srv = serve(
        Arc::new(MemFs::new(MemFsOptions::default())),
        &ServeOptions {
            max_connections: 4,
            ..ServeOptions::default()
        },
    )
    .unwrap();
    let mut held: Vec<Client> = (0..4)
        .map(|_| {
            let mut c = Client::connect(srv.port());
            assert_eq!(c.call(NFS, 3, 0, &Args::new()), Reply::Ok(vec![]));
            c
        })
        .collect();
    let mut extra = TcpStream::connect(("127.0.0.1", srv.port())).unwrap();
    let mut c = Client::connect(srv.port());
    let rec = c.call_record(NFS, 3, 0, &[]);
    extra.write_all(&rec).unwrap_or(());
    assert!(
        closed_without_answer(&mut extra),
        "a fifth connection must be closed"
    );
    drop(c);
    held.pop();
    // The freed slot serves a newcomer (the server notices the close shortly after).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut s = TcpStream::connect(("127.0.0.1", srv.port())).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.write_all(&rec).unwrap_or(());
        let mut buf = [0u8; 4];
        if s.read_exact(&mut buf).is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "a freed slot was never reused");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Names a client may send but no filesystem accepts get a status, never a panic, and
/// nothing is created: empty, `.`/`..` as new names, `/` or NUL inside, 256 bytes.
#[test]
fn bad_names_get_an_error_and_create_nothing() {
    let srv = start();
    let mut c = Client::connect(srv.port());
    let root = c.mnt("/vmount");
    let long = "x".repeat(256);
    // NFS3ERR_ values: INVAL 22, NAMETOOLONG 63.
    let cases: [(&[u8], u32); 6] = [
        (b"", 22),
        (b".", 22),
        (b"..", 22),
        (b"a/b", 22),
        (b"a\0b", 22),
        (long.as_bytes(), 63),
    ];
    for (name, want) in cases {
        for proc_ in [8u32, 9] {
            // CREATE (UNCHECKED, no attributes) and MKDIR (no attributes).
            let args = match proc_ {
                8 => Args::new()
                    .opaque(&root)
                    .opaque(name)
                    .u32(0)
                    .sattr_mode(None),
                _ => Args::new().opaque(&root).opaque(name).sattr_mode(None),
            };
            let b = c.nfs(proc_, args);
            assert_eq!(Client::status(&b), want, "proc {proc_} with name {name:?}");
        }
    }
    // Nothing was created: the root lists no entries (READDIR, cookie 0).
    let b = c.nfs(16, Args::new().opaque(&root).u64(0).u64(0).u32(4096));
    let mut r = server_common::R(&b);
    assert_eq!(r.u32(), 0, "READDIR status");
    let _dir_attr = r.post_op();
    let _verf = r.u64();
    let mut names = Vec::new();
    while r.bool() {
        let _fileid = r.u64();
        names.push(String::from_utf8_lossy(&r.opaque()).into_owned());
        let _cookie = r.u64();
    }
    names.retain(|n| n != "." && n != "..");
    assert!(names.is_empty(), "created: {names:?}");
    still_serves(&srv);
}
