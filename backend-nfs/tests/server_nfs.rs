//! Every NFSv3 procedure, MOUNT and PORTMAP against memfs and loopback, through a real
//! TCP connection and the test client in `server_common`.

mod server_common;

use std::collections::HashSet;
use std::ffi::OsStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

use server_common::{Args, Client, MOUNT, NFS, PORTMAP, R, Reply};
use vmount_backend_nfs::{NfsServer, ServeOptions, WRITE_BEHIND_MAX, serve};
use vmount_core::memfs::{MemFs, MemFsOptions};
use vmount_core::{Ctx, Ino, Vfs, VfsError};

const OK: u32 = 0;
const ERR_NOENT: u32 = 2;
const ERR_ACCES: u32 = 13;
const ERR_NOSPC: u32 = 28;
const ERR_STALE: u32 = 70;
const ERR_NOT_SYNC: u32 = 10002;
const UNSTABLE: u32 = 0;
const FILE_SYNC: u32 = 2;

fn memfs() -> Arc<MemFs> {
    Arc::new(MemFs::new(MemFsOptions {
        root_mode: 0o777,
        ..MemFsOptions::default()
    }))
}

fn start(fs: Arc<dyn Vfs>, allowed: &[u32]) -> NfsServer {
    serve(
        fs,
        &ServeOptions {
            allowed_uids: allowed.to_vec(),
            ..ServeOptions::default()
        },
    )
    .unwrap()
}

fn connect(srv: &NfsServer) -> (Client, Vec<u8>) {
    let mut c = Client::connect(srv.port());
    let root = c.mnt(&srv.export_path());
    (c, root)
}

#[test]
fn null_mount_and_root_getattr() {
    let srv = start(memfs(), &[]);
    assert_eq!(srv.export_path(), "/vmount");
    let mut c = Client::connect(srv.port());
    assert_eq!(c.call(NFS, 3, 0, &Args::new()), Reply::Ok(vec![]));
    assert_eq!(c.call(MOUNT, 3, 0, &Args::new()), Reply::Ok(vec![]));
    // Wrong version / program / procedure.
    assert_eq!(c.call(NFS, 2, 0, &Args::new()), Reply::AcceptErr(2));
    assert_eq!(c.call(100021, 4, 0, &Args::new()), Reply::AcceptErr(1));
    assert_eq!(c.call(NFS, 3, 22, &Args::new()), Reply::AcceptErr(3));
    // Unknown export.
    let b = c.call(MOUNT, 3, 1, &Args::new().opaque(b"/other"));
    assert_eq!(R(b.body()).u32(), 2);
    let root = c.mnt("/vmount/");
    assert_eq!(root.len(), 16);
    let a = c.getattr(&root).unwrap();
    assert_eq!(a.fileid, 1);
    assert_eq!(a.mode, 0o777);
    assert!(matches!(a.ftype, nfsserve::nfs::ftype3::NF3DIR));
    // EXPORT lists the one export; DUMP lists the mount.
    let b = c.call(MOUNT, 3, 5, &Args::new());
    let mut r = R(b.body());
    assert!(r.bool());
    assert_eq!(r.opaque(), b"/vmount");
    let b = c.call(MOUNT, 3, 2, &Args::new());
    let mut r = R(b.body());
    assert!(r.bool());
    // PORTMAP GETPORT answers our port for NFS v3 / TCP, 0 for others.
    let b = c.call(PORTMAP, 2, 3, &Args::new().u32(NFS).u32(3).u32(6).u32(0));
    assert_eq!(R(b.body()).u32(), u32::from(srv.port()));
    let b = c.call(PORTMAP, 2, 3, &Args::new().u32(MOUNT).u32(3).u32(6).u32(0));
    assert_eq!(R(b.body()).u32(), u32::from(srv.port()));
    let b = c.call(PORTMAP, 2, 3, &Args::new().u32(100021).u32(4).u32(6).u32(0));
    assert_eq!(R(b.body()).u32(), 0);
    // A handle from another server instance is stale; a malformed one is BADHANDLE.
    let mut foreign = root.clone();
    foreign[0] ^= 0xff;
    assert_eq!(c.getattr(&foreign).unwrap_err(), ERR_STALE);
    assert_eq!(c.getattr(&root[..10]).unwrap_err(), 10001);
}

fn io_round_trip(fs: Arc<dyn Vfs>) {
    let srv = start(fs, &[]);
    let (mut c, root) = connect(&srv);
    let (fh, a) = c.create(&root, "f", 0o644).unwrap();
    assert_eq!(a.mode, 0o644);
    assert_eq!(a.size, 0);
    let data: Vec<u8> = (0..(1 << 20) + 100).map(|i| (i % 251) as u8).collect();
    // UNSTABLE writes are acknowledged as UNSTABLE, then COMMITted with the same verifier.
    let (n, committed, verf) = c.write(&fh, 0, &data[..1 << 20], UNSTABLE).unwrap();
    assert_eq!((n, committed), (1 << 20, UNSTABLE));
    let (n, committed, verf2) = c.write(&fh, 1 << 20, &data[1 << 20..], FILE_SYNC).unwrap();
    assert_eq!((n, committed), (100, FILE_SYNC));
    assert_eq!(verf, verf2);
    let b = c.nfs(21, Args::new().opaque(&fh).u64(0).u32(0));
    let mut r = R(&b);
    assert_eq!(r.u32(), OK);
    assert_eq!(r.wcc().unwrap().size, data.len() as u64);
    assert_eq!(r.fixed(8), verf);
    // READ in pieces; a huge count is clamped to 1 MiB.
    let (first, eof) = c.read(&fh, 0, u32::MAX).unwrap();
    assert_eq!(first.len(), 1 << 20);
    assert!(!eof);
    let (rest, eof) = c.read(&fh, 1 << 20, 4096).unwrap();
    assert!(eof);
    assert_eq!([first, rest].concat(), data);
    let (none, eof) = c.read(&fh, 10 << 20, 10).unwrap();
    assert!(none.is_empty() && eof);
    // WRITE past i64::MAX is FBIG, not a wrap.
    assert_eq!(c.write(&fh, u64::MAX - 1, b"xy", UNSTABLE).unwrap_err(), 27);
    // LOOKUP finds it with the same handle.
    let (fh2, a) = c.lookup(&root, "f").unwrap();
    assert_eq!(fh2, fh);
    assert_eq!(a.size, data.len() as u64);
    assert_eq!(c.lookup(&root, "missing").unwrap_err(), 2);
    // GUARDED create of an existing name fails; UNCHECKED with size 0 truncates.
    assert_eq!(c.create(&root, "f", 0o600).unwrap_err(), 17);
    let b = c.nfs(
        8,
        Args::new().opaque(&root).opaque(b"f").u32(0).sattr_size(0),
    );
    let (_, a) = Client::new_obj(&b).unwrap();
    assert_eq!(a.size, 0);
}

#[test]
fn create_write_read_commit_memfs() {
    io_round_trip(memfs());
}

#[cfg(unix)]
#[test]
fn create_write_read_commit_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let fs = vmount_core::loopback::Loopback::new(vmount_core::loopback::LoopbackOptions {
        source: dir.path().to_owned(),
        read_only: false,
    })
    .unwrap();
    io_round_trip(Arc::new(fs));
    let on_disk = std::fs::metadata(dir.path().join("f")).unwrap();
    assert_eq!(on_disk.len(), 0);
}

#[test]
fn exclusive_create_is_idempotent() {
    let srv = start(memfs(), &[]);
    let (mut c, root) = connect(&srv);
    let verf = [1u8, 2, 3, 4, 5, 6, 7, 8];
    let args = Args::new().opaque(&root).opaque(b"x").u32(2).fixed(&verf);
    let (fh, _) = Client::new_obj(&c.nfs(8, args.clone())).unwrap();
    // The retransmission succeeds with the same file; another verifier is EXIST.
    let (fh2, _) = Client::new_obj(&c.nfs(8, args)).unwrap();
    assert_eq!(fh, fh2);
    let other = Args::new().opaque(&root).opaque(b"x").u32(2).fixed(&[9; 8]);
    assert_eq!(Client::new_obj(&c.nfs(8, other)).unwrap_err(), 17);
}

/// A retransmitted REMOVE, RENAME or GUARDED CREATE (same xid, same client port) gets the
/// first reply again instead of running twice and failing. The same xid from another
/// client port is another call (as in knfsd).
#[test]
fn retransmissions_are_answered_from_the_duplicate_request_cache() {
    let srv = start(memfs(), &[]);
    let (mut c, root) = connect(&srv);
    let (_, _) = c.create(&root, "victim", 0o644).unwrap();
    let remove = c.call_record(NFS, 3, 12, &Args::new().opaque(&root).opaque(b"victim").0);
    c.send_raw(&remove);
    let first = c.read_reply().unwrap();
    assert_eq!(Client::status(first_body(&first)), OK);
    c.send_raw(&remove);
    let again = c.read_reply().unwrap();
    assert_eq!(again, first, "a retransmission must get the same reply");
    // The same xid from another client (port) runs: the file is gone by now.
    let (mut c2, _) = connect(&srv);
    c2.send_raw(&remove);
    let other = c2.read_reply().unwrap();
    assert_eq!(Client::status(first_body(&other)), ERR_NOENT);
    // A new call (new xid) runs: the file is gone.
    let b = c.nfs(12, Args::new().opaque(&root).opaque(b"victim"));
    assert_eq!(Client::status(&b), ERR_NOENT);

    // GUARDED CREATE (mode 1): the retransmission is not EXIST.
    let create = c.call_record(
        NFS,
        3,
        8,
        &Args::new()
            .opaque(&root)
            .opaque(b"new")
            .u32(1)
            .sattr_mode(Some(0o600))
            .0,
    );
    c.send_raw(&create);
    let first = c.read_reply().unwrap();
    assert_eq!(Client::status(first_body(&first)), OK);
    c.send_raw(&create);
    assert_eq!(c.read_reply().unwrap(), first);

    // RENAME twice: the second is not NOENT, and the file is where the first put it.
    let rename = c.call_record(
        NFS,
        3,
        14,
        &Args::new()
            .opaque(&root)
            .opaque(b"new")
            .opaque(&root)
            .opaque(b"moved")
            .0,
    );
    c.send_raw(&rename);
    let first = c.read_reply().unwrap();
    assert_eq!(Client::status(first_body(&first)), OK);
    c.send_raw(&rename);
    assert_eq!(c.read_reply().unwrap(), first);
    assert!(c.lookup(&root, "moved").is_ok());
    assert_eq!(c.lookup(&root, "new").unwrap_err(), ERR_NOENT);
}

/// The procedure results of a raw reply record (after the accepted-SUCCESS header).
fn first_body(reply: &[u8]) -> &[u8] {
    // xid, REPLY, MSG_ACCEPTED, verifier flavor, verifier length 0, SUCCESS.
    &reply[24..]
}

#[test]
fn setattr_guard() {
    let srv = start(memfs(), &[]);
    let (mut c, root) = connect(&srv);
    let (fh, a) = c.create(&root, "g", 0o644).unwrap();
    // Wrong ctime guard -> NOT_SYNC, nothing changed.
    let wrong = Args::new()
        .opaque(&fh)
        .sattr_mode(Some(0o600))
        .u32(1)
        .u32(a.ctime.seconds.wrapping_add(7))
        .u32(a.ctime.nseconds);
    let b = c.nfs(2, wrong);
    assert_eq!(Client::status(&b), ERR_NOT_SYNC);
    assert_eq!(c.getattr(&fh).unwrap().mode, 0o644);
    let right = Args::new()
        .opaque(&fh)
        .sattr_mode(Some(0o600))
        .u32(1)
        .u32(a.ctime.seconds)
        .u32(a.ctime.nseconds);
    let b = c.nfs(2, right);
    let mut r = R(&b);
    assert_eq!(r.u32(), OK);
    assert_eq!(r.wcc().unwrap().mode, 0o600);
    // Truncate through SETATTR size.
    c.write(&fh, 0, b"hello", FILE_SYNC).unwrap();
    let b = c.nfs(2, Args::new().opaque(&fh).sattr_size(2).u32(0));
    assert_eq!(Client::status(&b), OK);
    assert_eq!(c.getattr(&fh).unwrap().size, 2);
}

#[test]
fn namespace_procedures() {
    let srv = start(memfs(), &[]);
    let (mut c, root) = connect(&srv);
    let (d, da) = c.mkdir(&root, "d", 0o750).unwrap();
    assert_eq!(da.mode, 0o750);
    assert!(matches!(da.ftype, nfsserve::nfs::ftype3::NF3DIR));
    // LOOKUP of . and ..
    assert_eq!(c.lookup(&d, ".").unwrap().0, d);
    assert_eq!(c.lookup(&d, "..").unwrap().0, root);
    assert_eq!(c.lookup(&root, "..").unwrap().0, root);
    // SYMLINK + READLINK.
    let b = c.nfs(
        10,
        Args::new()
            .opaque(&d)
            .opaque(b"ln")
            .sattr_mode(None)
            .opaque(b"../target/x"),
    );
    let (ln, la) = Client::new_obj(&b).unwrap();
    assert!(matches!(la.ftype, nfsserve::nfs::ftype3::NF3LNK));
    let b = c.nfs(5, Args::new().opaque(&ln));
    let mut r = R(&b);
    assert_eq!(r.u32(), OK);
    r.post_op();
    assert_eq!(r.opaque(), b"../target/x");
    // LINK: nlink 2.
    let (f, _) = c.create(&d, "file", 0o644).unwrap();
    let b = c.nfs(15, Args::new().opaque(&f).opaque(&root).opaque(b"hard"));
    let mut r = R(&b);
    assert_eq!(r.u32(), OK);
    assert_eq!(r.post_op().unwrap().nlink, 2);
    assert_eq!(c.lookup(&root, "hard").unwrap().0, f);
    // MKNOD fifo; MKNOD of a regular file type is BADTYPE.
    let b = c.nfs(
        11,
        Args::new()
            .opaque(&d)
            .opaque(b"fifo")
            .u32(7)
            .sattr_mode(Some(0o640)),
    );
    let (_, fa) = Client::new_obj(&b).unwrap();
    assert!(matches!(fa.ftype, nfsserve::nfs::ftype3::NF3FIFO));
    assert_eq!(fa.mode, 0o640);
    let b = c.nfs(11, Args::new().opaque(&d).opaque(b"reg").u32(1));
    assert_eq!(Client::status(&b), 10007);
    // RENAME.
    let b = c.nfs(
        14,
        Args::new()
            .opaque(&d)
            .opaque(b"file")
            .opaque(&root)
            .opaque(b"moved"),
    );
    assert_eq!(Client::status(&b), OK);
    assert_eq!(c.lookup(&root, "moved").unwrap().0, f);
    assert_eq!(c.lookup(&d, "file").unwrap_err(), 2);
    // Renaming a directory keeps `..` right.
    let (sub, _) = c.mkdir(&d, "sub", 0o755).unwrap();
    let b = c.nfs(
        14,
        Args::new()
            .opaque(&d)
            .opaque(b"sub")
            .opaque(&root)
            .opaque(b"sub2"),
    );
    assert_eq!(Client::status(&b), OK);
    assert_eq!(c.lookup(&sub, "..").unwrap().0, root);
    // REMOVE both names; then the old handle is STALE.
    for (dir, name) in [(&root, "moved"), (&root, "hard")] {
        let b = c.nfs(12, Args::new().opaque(dir).opaque(name.as_bytes()));
        assert_eq!(Client::status(&b), OK);
    }
    assert_eq!(c.getattr(&f).unwrap_err(), ERR_STALE);
    assert_eq!(c.read(&f, 0, 10).unwrap_err(), ERR_STALE);
    // RMDIR: not empty, then empty; the handle goes stale.
    let b = c.nfs(13, Args::new().opaque(&root).opaque(b"d"));
    assert_eq!(Client::status(&b), 66);
    for name in ["ln", "fifo"] {
        let b = c.nfs(12, Args::new().opaque(&d).opaque(name.as_bytes()));
        assert_eq!(Client::status(&b), OK);
    }
    let b = c.nfs(13, Args::new().opaque(&root).opaque(b"d"));
    assert_eq!(Client::status(&b), OK);
    assert_eq!(c.getattr(&d).unwrap_err(), ERR_STALE);
    assert_eq!(c.lookup(&d, "x").unwrap_err(), ERR_STALE);
    // Names over 255 bytes.
    assert_eq!(c.create(&root, &"n".repeat(256), 0o644).unwrap_err(), 63);
}

/// Lists a directory with READDIRPLUS (or READDIR) in pages of `maxcount` bytes.
fn list(c: &mut Client, dir: &[u8], plus: bool, maxcount: u32) -> (Vec<String>, usize) {
    let mut names = Vec::new();
    let mut cookie = 0u64;
    let mut verf = vec![0u8; 8];
    let mut pages = 0;
    loop {
        let args = Args::new().opaque(dir).u64(cookie).fixed(&verf);
        let b = if plus {
            c.nfs(17, args.u32(maxcount / 4).u32(maxcount))
        } else {
            c.nfs(16, args.u32(maxcount))
        };
        pages += 1;
        let mut r = R(&b);
        assert_eq!(r.u32(), OK);
        r.post_op().unwrap();
        verf = r.fixed(8);
        while r.bool() {
            let fileid = r.u64();
            let name = String::from_utf8(r.opaque()).unwrap();
            cookie = r.u64();
            if plus {
                let a = r.post_op();
                let fh = r.post_op_fh();
                if name != ".." {
                    assert_eq!(a.unwrap().fileid, fileid);
                    assert!(fh.is_some());
                }
            }
            names.push(name);
        }
        if r.bool() {
            return (names, pages);
        }
    }
}

#[test]
fn readdirplus_pages_100k_entries() {
    let fs = memfs();
    let ctx = Ctx::root();
    let d = fs.mkdir(&ctx, Ino::ROOT, OsStr::new("big"), 0o755).unwrap();
    const N: usize = 100_000;
    for i in 0..N {
        let (a, o) = fs
            .create(
                &ctx,
                d.ino,
                OsStr::new(&format!("entry-{i:06}")),
                0o644,
                Default::default(),
            )
            .unwrap();
        fs.release(&ctx, a.ino, o.fh).unwrap();
    }
    let srv = start(fs, &[]);
    let (mut c, root) = connect(&srv);
    let (big, _) = c.lookup(&root, "big").unwrap();
    for (plus, maxcount) in [(true, 32 * 1024), (false, 16 * 1024)] {
        let (names, pages) = list(&mut c, &big, plus, maxcount);
        assert!(pages > 10, "{pages} pages");
        assert_eq!(&names[..2], &[".", ".."]);
        let set: HashSet<&String> = names[2..].iter().collect();
        assert_eq!(names.len() - 2, N, "plus={plus}");
        assert_eq!(set.len(), N, "duplicates (plus={plus})");
        for i in [0, 1, N / 2, N - 1] {
            assert!(set.contains(&format!("entry-{i:06}")));
        }
    }
    // A page too small for even one entry is TOOSMALL.
    let b = c.nfs(16, Args::new().opaque(&big).u64(0).fixed(&[0; 8]).u32(50));
    assert_eq!(Client::status(&b), 10005);
    // Reserved-but-unknown cookies are BAD_COOKIE.
    let b = c.nfs(
        16,
        Args::new()
            .opaque(&big)
            .u64(1 << 63 | 9)
            .fixed(&[0; 8])
            .u32(4096),
    );
    assert_eq!(Client::status(&b), 10003);
}

#[test]
fn fsstat_fsinfo_pathconf() {
    let srv = start(memfs(), &[]);
    let (mut c, root) = connect(&srv);
    let b = c.nfs(18, Args::new().opaque(&root));
    let mut r = R(&b);
    assert_eq!(r.u32(), OK);
    r.post_op().unwrap();
    let (tbytes, fbytes, abytes) = (r.u64(), r.u64(), r.u64());
    assert!(tbytes >= fbytes && fbytes >= abytes && tbytes > 0);
    let b = c.nfs(19, Args::new().opaque(&root));
    let mut r = R(&b);
    assert_eq!(r.u32(), OK);
    r.post_op().unwrap();
    let (rtmax, rtpref, _rtmult, wtmax, wtpref) = (r.u32(), r.u32(), r.u32(), r.u32(), r.u32());
    assert_eq!(
        (rtmax, rtpref, wtmax, wtpref),
        (1 << 20, 1 << 20, 1 << 20, 1 << 20)
    );
    let _wtmult = r.u32();
    let _dtpref = r.u32();
    assert_eq!(r.u64(), i64::MAX as u64);
    assert_eq!((r.u32(), r.u32()), (0, 1));
    assert_eq!(r.u32(), 0x1 | 0x2 | 0x8 | 0x10);
    let b = c.nfs(20, Args::new().opaque(&root));
    let mut r = R(&b);
    assert_eq!(r.u32(), OK);
    r.post_op().unwrap();
    assert_eq!(r.u32(), 65000);
    assert_eq!(r.u32(), 255);
    assert!(r.bool()); // no_trunc
    assert!(r.bool()); // chown_restricted
    assert!(!r.bool()); // case_insensitive
    assert!(r.bool()); // case_preserving
}

#[test]
fn access_reflects_the_callers_permissions() {
    let srv = start(memfs(), &[1000, 1001]);
    let (mut root_c, root) = connect(&srv);
    let (fh, _) = root_c.create(&root, "secret", 0o600).unwrap();
    let (pub_fh, _) = root_c.create(&root, "public", 0o644).unwrap();
    // chown "mine" to 1000.
    let (mine, _) = root_c.create(&root, "mine", 0o600).unwrap();
    let b = root_c.nfs(
        2,
        Args::new()
            .opaque(&mine)
            .u32(0)
            .u32(1)
            .u32(1000)
            .u32(0)
            .u32(0)
            .u32(0)
            .u32(0)
            .u32(0),
    );
    assert_eq!(Client::status(&b), OK);
    let mut u = Client::connect(srv.port()).with_user(1000, 1000);
    let access = |c: &mut Client, fh: &[u8]| {
        let b = c.nfs(4, Args::new().opaque(fh).u32(0x3f));
        let mut r = R(&b);
        assert_eq!(r.u32(), OK);
        r.post_op().unwrap();
        r.u32()
    };
    assert_eq!(access(&mut u, &fh), 0);
    assert_eq!(access(&mut u, &pub_fh), 0x01);
    assert_eq!(access(&mut u, &mine), 0x01 | 0x04 | 0x08);
    assert_eq!(access(&mut root_c, &fh) & 0x0d, 0x0d);
    // The root directory (0777): everything a directory offers.
    assert_eq!(access(&mut u, &root), 0x01 | 0x02 | 0x04 | 0x08 | 0x10);
    // Stateless READ and WRITE are checked too; the owner may always write.
    assert_eq!(u.read(&fh, 0, 10).unwrap_err(), ERR_ACCES);
    assert_eq!(u.write(&fh, 0, b"x", FILE_SYNC).unwrap_err(), ERR_ACCES);
    assert_eq!(u.write(&pub_fh, 0, b"x", FILE_SYNC).unwrap_err(), ERR_ACCES);
    assert!(u.read(&pub_fh, 0, 10).is_ok());
    assert!(u.write(&mine, 0, b"x", FILE_SYNC).is_ok());
    // Namespace changes are the filesystem's to refuse: uid 1001 cannot remove 1000's
    // file from a sticky directory, nor create in a 0755 root-owned one.
    let (d, _) = root_c.mkdir(&root, "ro", 0o755).unwrap();
    let mut v = Client::connect(srv.port()).with_user(1001, 1001);
    assert_eq!(v.create(&d, "x", 0o644).unwrap_err(), ERR_ACCES);
    // chown by a non-root user is PERM.
    let b = u.nfs(
        2,
        Args::new()
            .opaque(&mine)
            .u32(0)
            .u32(1)
            .u32(1001)
            .u32(0)
            .u32(0)
            .u32(0)
            .u32(0)
            .u32(0),
    );
    assert_eq!(Client::status(&b), 1);
}

/// Unix only: on Windows the AUTH_SYS uid names no account and is not checked (the
/// socket owner's SID is; see auth.rs).
#[cfg(unix)]
#[test]
fn unlisted_uid_is_refused() {
    let srv = start(memfs(), &[1000]);
    let mut c = Client::connect(srv.port()).with_user(4242, 4242);
    // NULL still answers; MNT and NFS calls are denied with AUTH_ERROR / AUTH_TOOWEAK.
    assert_eq!(c.call(NFS, 3, 0, &Args::new()), Reply::Ok(vec![]));
    assert_eq!(
        c.call(MOUNT, 3, 1, &Args::new().opaque(b"/vmount")),
        Reply::Denied(1, 5)
    );
    let mut root_c = Client::connect(srv.port());
    let root = root_c.mnt("/vmount");
    assert_eq!(
        c.call(NFS, 3, 1, &Args::new().opaque(&root)),
        Reply::Denied(1, 5)
    );
    // AUTH_NULL acts as nobody, who is not allowed either.
    c.flavor = 0;
    c.cred = Vec::new();
    assert_eq!(
        c.call(NFS, 3, 1, &Args::new().opaque(&root)),
        Reply::Denied(1, 5)
    );
    // An unknown flavor is BADCRED.
    c.flavor = 6;
    assert_eq!(
        c.call(NFS, 3, 1, &Args::new().opaque(&root)),
        Reply::Denied(1, 1)
    );
}

#[test]
fn read_only_server() {
    let fs = memfs();
    let (a, o) = fs
        .create(
            &Ctx::root(),
            Ino::ROOT,
            OsStr::new("f"),
            0o644,
            Default::default(),
        )
        .unwrap();
    fs.release(&Ctx::root(), a.ino, o.fh).unwrap();
    let srv = serve(
        fs,
        &ServeOptions {
            read_only: true,
            ..ServeOptions::default()
        },
    )
    .unwrap();
    let (mut c, root) = connect(&srv);
    assert_eq!(c.create(&root, "x", 0o644).unwrap_err(), 30);
    let (f, _) = c.lookup(&root, "f").unwrap();
    assert_eq!(c.write(&f, 0, b"x", FILE_SYNC).unwrap_err(), 30);
    let b = c.nfs(4, Args::new().opaque(&f).u32(0x3f));
    let mut r = R(&b);
    assert_eq!(r.u32(), OK);
    r.post_op();
    assert_eq!(r.u32(), 0x01);
}

#[test]
fn busy_port_is_reported() {
    let srv = start(memfs(), &[]);
    let err = serve(
        memfs(),
        &ServeOptions {
            port: srv.port(),
            ..ServeOptions::default()
        },
    )
    .unwrap_err();
    assert!(matches!(err, vmount_backend_nfs::NfsError::PortInUse { port } if port == srv.port()));
    assert!(err.to_string().contains("port = 0"), "{err}");
    // Stopping frees the port.
    let port = srv.port();
    srv.stop();
    let again = serve(
        memfs(),
        &ServeOptions {
            port,
            ..ServeOptions::default()
        },
    )
    .unwrap();
    assert_eq!(again.port(), port);
}

/// An independent client: libnfs's `nfs-ls` and `nfs-cp` (when installed) list, write
/// and read back through this server.
#[test]
fn libnfs_tools_interoperate() {
    if std::process::Command::new("nfs-ls")
        .arg("--help")
        .output()
        .is_err()
    {
        eprintln!("skipped: libnfs-utils is not installed");
        return;
    }
    let fs = memfs();
    fs.mkdir(&Ctx::root(), Ino::ROOT, OsStr::new("sub"), 0o755)
        .unwrap();
    let srv = start(fs, &[]);
    let url = |path: &str| {
        format!(
            "nfs://127.0.0.1/vmount{path}?version=3&nfsport={p}&mountport={p}",
            p = srv.port()
        )
    };
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src.bin");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 253) as u8).collect();
    std::fs::write(&src, &data).unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(args[0])
            .args(&args[1..])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&["nfs-cp", src.to_str().unwrap(), &url("/sub/copy.bin")]);
    let back = tmp.path().join("back.bin");
    run(&["nfs-cp", &url("/sub/copy.bin"), back.to_str().unwrap()]);
    assert_eq!(std::fs::read(&back).unwrap(), data);
    let listing = run(&["nfs-ls", &url("/sub")]);
    assert!(listing.contains("copy.bin"), "{listing}");
}

/// With the Apple Double filter (`[nfs] noappledouble`, the default on macOS), `._*` names
/// cannot be created (CREATE, MKDIR, SYMLINK, RENAME, LINK: ACCES) and existing ones are
/// not found (NOENT), while other names work; without it they are ordinary names.
#[test]
fn apple_double_filter() {
    let fs = memfs();
    // One `._` file made behind the server's back, as a loopback source might hold.
    fs.create(
        &Ctx::root(),
        Ino::ROOT,
        OsStr::new("._old"),
        0o644,
        vmount_core::OpenFlags::WRITE,
    )
    .map(|(a, o)| fs.release(&Ctx::root(), a.ino, o.fh))
    .unwrap()
    .unwrap();
    let srv = serve(
        fs.clone(),
        &ServeOptions {
            no_apple_double: true,
            ..ServeOptions::default()
        },
    )
    .unwrap();
    let (mut c, root) = connect(&srv);
    assert_eq!(c.lookup(&root, "._old").unwrap_err(), ERR_NOENT);
    assert_eq!(c.create(&root, "._new", 0o644).unwrap_err(), ERR_ACCES);
    assert_eq!(c.mkdir(&root, "._dir", 0o755).unwrap_err(), ERR_ACCES);
    let (fh, _) = c.create(&root, "plain", 0o644).unwrap();
    let symlink = c.nfs(
        10,
        Args::new()
            .opaque(&root)
            .opaque(b"._link")
            .sattr_mode(None)
            .opaque(b"plain"),
    );
    assert_eq!(Client::status(&symlink), ERR_ACCES);
    let rename = c.nfs(
        14,
        Args::new()
            .opaque(&root)
            .opaque(b"plain")
            .opaque(&root)
            .opaque(b"._plain"),
    );
    assert_eq!(Client::status(&rename), ERR_ACCES);
    let link = c.nfs(15, Args::new().opaque(&fh).opaque(&root).opaque(b"._hard"));
    assert_eq!(Client::status(&link), ERR_ACCES);
    assert!(c.lookup(&root, "plain").is_ok());
    drop(c);
    drop(srv);

    // Off (the default elsewhere): `._` is a name like any other.
    let srv = start(fs, &[]);
    let (mut c, root) = connect(&srv);
    assert!(c.lookup(&root, "._old").is_ok());
    assert!(c.create(&root, "._new", 0o644).is_ok());
}

type OpFn<R> = Box<dyn Fn(vmount_core::stats::Op) -> R + Send + Sync>;

/// A layer under the server for tests: `before` runs ahead of every operation (an error
/// it gives is the operation's result), `after` once it returned, and `helper` for every
/// helper call, by name.
#[derive(Clone)]
struct Hook(Arc<(OpFn<Option<VfsError>>, OpFn<()>, HelperFn)>);

type HelperFn = Box<dyn Fn(&'static str) + Send + Sync>;

impl Hook {
    fn new(
        before: impl Fn(vmount_core::stats::Op) -> Option<VfsError> + Send + Sync + 'static,
        after: impl Fn(vmount_core::stats::Op) + Send + Sync + 'static,
        helper: impl Fn(&'static str) + Send + Sync + 'static,
    ) -> Hook {
        Hook(Arc::new((
            Box::new(before),
            Box::new(after),
            Box::new(helper),
        )))
    }

    /// `fs` under this layer.
    fn over(&self, fs: Arc<dyn Vfs>) -> Arc<dyn Vfs> {
        Arc::new(vmount_core::wrap::Wrapped::with(fs, self.clone()))
    }
}

impl vmount_core::wrap::Around for Hook {
    fn call<T>(
        &self,
        op: vmount_core::stats::Op,
        _bytes: fn(&T) -> u64,
        f: impl FnOnce() -> vmount_core::VfsResult<T>,
    ) -> vmount_core::VfsResult<T> {
        if let Some(e) = (self.0.0)(op) {
            return Err(e);
        }
        let r = f();
        (self.0.1)(op);
        r
    }

    fn helper<T>(&self, name: &'static str, f: impl FnOnce() -> T) -> Option<T> {
        (self.0.2)(name);
        Some(f())
    }
}

/// READ replies are built around data read in place, with room for the post-op
/// attributes: a reply without them (the file's attributes gone after the read) still
/// carries exactly the bytes read, and short, odd-length and empty reads keep their
/// length and padding.
#[test]
fn read_replies_with_and_without_attributes() {
    use vmount_core::stats::Op;
    // While armed (`.1`), every GETATTR fails once a READ has run (`.0`), as for a file
    // removed during the read.
    let flag = Arc::new((AtomicBool::new(false), AtomicBool::new(true)));
    let (f1, f2) = (Arc::clone(&flag), Arc::clone(&flag));
    let hook = Hook::new(
        move |op| (op == Op::Getattr && f1.0.load(SeqCst)).then_some(VfsError::Stale),
        move |op| {
            if op == Op::Read && f2.1.load(SeqCst) {
                f2.0.store(true, SeqCst);
            }
        },
        |_| {},
    );
    let srv = start(hook.over(memfs()), &[]);
    let (mut c, root) = connect(&srv);
    let (fh, _) = c.create(&root, "f", 0o644).unwrap();
    let data: Vec<u8> = (0..10_007u32).map(|i| (i % 253) as u8).collect();
    c.write(&fh, 0, &data, FILE_SYNC).unwrap();
    for (off, count) in [(0u64, 4096u32), (4095, 3), (10_000, 100), (20_000, 10)] {
        flag.0.store(false, SeqCst);
        let b = c.nfs(6, Args::new().opaque(&fh).u64(off).u32(count));
        let mut r = R(&b);
        assert_eq!(r.u32(), OK);
        assert!(r.post_op().is_none(), "attributes gone after the read");
        let n = r.u32() as usize;
        let eof = r.bool();
        let got = r.opaque();
        let start = (off as usize).min(data.len());
        let end = (off as usize + count as usize).min(data.len());
        assert_eq!(got, &data[start..end], "read at {off}+{count}");
        assert_eq!(n, got.len());
        assert_eq!(eof, end == data.len());
        assert!(r.0.is_empty(), "nothing after the data and its padding");
        // With attributes, the same read.
        flag.1.store(false, SeqCst);
        flag.0.store(false, SeqCst);
        let b = c.nfs(6, Args::new().opaque(&fh).u64(off).u32(count));
        let mut r = R(&b);
        assert_eq!(r.u32(), OK);
        assert_eq!(r.post_op().unwrap().size, data.len() as u64);
        assert_eq!((r.u32() as usize, r.bool()), (n, eof));
        assert_eq!(r.opaque(), got);
        assert!(r.0.is_empty());
        flag.1.store(true, SeqCst);
    }
}

/// Large READs of a file with a host file (loopback; memfs with kernel-held data) are
/// spliced from it: the reply carries exactly the file's bytes, the count, EOF, the
/// attributes and the padding, and the filesystem's `read` is not called. Small READs,
/// and files without a host file, are read.
#[cfg(target_os = "linux")]
#[test]
fn large_reads_of_host_files_are_spliced() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let loopback = vmount_core::loopback::Loopback::new(vmount_core::loopback::LoopbackOptions {
        source: dir.path().to_owned(),
        read_only: false,
    })
    .unwrap();
    let kernel = MemFs::new(MemFsOptions {
        root_mode: 0o777,
        kernel_data: true,
        ..MemFsOptions::default()
    });
    let mut targets: Vec<(&str, Arc<dyn Vfs>, bool)> = vec![
        ("loopback", Arc::new(loopback), true),
        ("heap memfs", memfs(), false),
    ];
    if kernel.kernel_data() {
        targets.push(("kernel memfs", Arc::new(kernel), true));
    } else {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        assert!(
            !(root && std::env::var_os("CI").is_some()),
            "root on Linux CI must get memfs's private tmpfs"
        );
        eprintln!("SKIP kernel memfs: its data needs root and a private tmpfs");
    }
    let data: Vec<u8> = (0..(3u32 << 20) + 5).map(|i| (i % 247) as u8).collect();
    for (name, fs, host) in targets {
        // The filesystem's `read` calls and `read_fd` helpers.
        let counts = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
        let (c1, c2) = (Arc::clone(&counts), Arc::clone(&counts));
        let hook = Hook::new(
            move |op| {
                if op == vmount_core::stats::Op::Read {
                    c1.0.fetch_add(1, SeqCst);
                }
                None
            },
            |_| {},
            move |name| {
                if name == "read_fd" {
                    c2.1.fetch_add(1, SeqCst);
                }
            },
        );
        let srv = start(hook.over(fs), &[]);
        let (mut c, root) = connect(&srv);
        let (fh, _) = c.create(&root, "f", 0o644).unwrap();
        for (i, chunk) in data.chunks(1 << 20).enumerate() {
            c.write(&fh, (i as u64) << 20, chunk, FILE_SYNC).unwrap();
        }
        let large = [
            (0u64, 1u32 << 20),
            (1 << 20, 1 << 20),
            (3 << 20, 1 << 20),
            (2 << 20, 65_536),
            (3 << 20, 65_536),
        ];
        let small = [(4096u64, 65_535u32), (5, 100)];
        let read_calls = counts.0.load(SeqCst);
        for (off, count) in large.iter().chain(&small).copied() {
            let b = c.nfs(6, Args::new().opaque(&fh).u64(off).u32(count));
            let mut r = R(&b);
            assert_eq!(r.u32(), OK, "{name}: READ {off}+{count}");
            assert_eq!(r.post_op().unwrap().size, data.len() as u64);
            let n = r.u32() as usize;
            let eof = r.bool();
            let got = r.opaque();
            let start = off as usize;
            let end = (start + count as usize).min(data.len());
            assert_eq!(n, end - start, "{name}: READ {off}+{count}");
            assert!(got == data[start..end], "{name}: READ {off}+{count} bytes");
            assert_eq!(eof, end == data.len(), "{name}: READ {off}+{count}");
            assert!(
                r.0.is_empty(),
                "{name}: nothing after the data and its padding"
            );
        }
        let reads = counts.0.load(SeqCst) - read_calls;
        let spliced = counts.1.load(SeqCst);
        if host {
            assert_eq!(
                spliced,
                large.len(),
                "{name}: large READs take the host file"
            );
            assert_eq!(reads, small.len(), "{name}: only small READs are read");
        } else {
            assert_eq!(
                reads,
                large.len() + small.len(),
                "{name}: every READ is read"
            );
        }
    }
}

/// `fs` with a slow `write`, so that a write applied behind its reply is still being
/// applied when the next call arrives, and the count of writes done.
fn slow(fs: Arc<dyn Vfs>) -> (Arc<dyn Vfs>, Arc<AtomicUsize>) {
    use vmount_core::stats::Op;
    let done = Arc::new(AtomicUsize::new(0));
    let d = Arc::clone(&done);
    let hook = Hook::new(
        |op| {
            if op == Op::Write {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            None
        },
        move |op| {
            if op == Op::Write {
                d.fetch_add(1, SeqCst);
            }
        },
        |_| {},
    );
    (hook.over(fs), done)
}

/// COMMIT of `fh`: its status.
fn commit(c: &mut Client, fh: &[u8]) -> u32 {
    R(&c.nfs(21, Args::new().opaque(fh).u64(0).u32(0))).u32()
}

/// A large UNSTABLE WRITE is answered before it is applied, and whatever is sent after
/// its reply (READ, GETATTR, a stable WRITE over it, SETATTR, COMMIT) sees it applied.
#[test]
fn writes_behind_their_replies_are_seen_by_every_later_call() {
    let (fs, writes) = slow(memfs());
    let srv = start(fs, &[]);
    let (mut c, root) = connect(&srv);
    let (fh, _) = c.create(&root, "f", 0o644).unwrap();
    let block: Vec<u8> = (0..1u32 << 20).map(|i| (i % 241) as u8).collect();
    let t = std::time::Instant::now();
    let (n, committed, _) = c.write(&fh, 0, &block, UNSTABLE).unwrap();
    assert_eq!((n as usize, committed), (block.len(), UNSTABLE));
    assert_eq!(
        writes.load(SeqCst),
        0,
        "answered before the write was applied"
    );
    assert!(t.elapsed() < std::time::Duration::from_millis(100));
    let (got, eof) = c.read(&fh, 0, 1 << 20).unwrap();
    assert!(got == block && eof, "READ sees the write");
    assert_eq!(writes.load(SeqCst), 1);

    c.write(&fh, 1 << 20, &block, UNSTABLE).unwrap();
    assert_eq!(c.getattr(&fh).unwrap().size, 2 << 20, "GETATTR sees it");
    // A small stable write over a queued one lands after it.
    c.write(&fh, 2 << 20, &block, UNSTABLE).unwrap();
    c.write(&fh, 2 << 20, b"over", FILE_SYNC).unwrap();
    let (got, _) = c.read(&fh, 2 << 20, 8).unwrap();
    assert_eq!(got, [b"over".as_slice(), &block[4..8]].concat());
    // SETATTR's truncate comes after the queued write it follows.
    c.write(&fh, 3 << 20, &block, UNSTABLE).unwrap();
    // sattr3: no mode, uid or gid; size 10; times unchanged; no guard.
    let sattr = Args::new().opaque(&fh).u32(0).u32(0).u32(0).u32(1).u64(10);
    let b = c.nfs(2, sattr.u32(0).u32(0).u32(0));
    assert_eq!(R(&b).u32(), OK);
    assert_eq!(c.getattr(&fh).unwrap().size, 10);
    assert_eq!(commit(&mut c, &fh), OK);
    // Small UNSTABLE writes are applied before their replies.
    let before = writes.load(SeqCst);
    c.write(&fh, 0, &block[..1000], UNSTABLE).unwrap();
    assert_eq!(writes.load(SeqCst), before + 1);
}

/// A write that fails after its reply is reported by the file's next COMMIT (once), or
/// by its next WRITE; other files are not blamed.
#[test]
fn failures_behind_replies_are_reported_at_commit_or_the_next_write() {
    let limited = Arc::new(MemFs::new(MemFsOptions {
        root_mode: 0o777,
        size_limit: Some(3 << 20),
        ..MemFsOptions::default()
    }));
    let srv = start(limited, &[]);
    let (mut c, root) = connect(&srv);
    let (f, _) = c.create(&root, "f", 0o644).unwrap();
    let (g, _) = c.create(&root, "g", 0o644).unwrap();
    let mb = vec![7u8; 1 << 20];
    for i in 0..3u64 {
        c.write(&f, i << 20, &mb, UNSTABLE).unwrap();
    }
    // Over the limit: answered, then failed.
    c.write(&f, 3 << 20, &mb, UNSTABLE).unwrap();
    assert_eq!(commit(&mut c, &g), OK, "another file's COMMIT");
    assert_eq!(commit(&mut c, &f), ERR_NOSPC, "the failure, at COMMIT");
    assert_eq!(commit(&mut c, &f), OK, "reported once");
    assert_eq!(c.getattr(&f).unwrap().size, 3 << 20);
    // At the next WRITE: that WRITE fails and is not applied.
    c.write(&f, 4 << 20, &mb, UNSTABLE).unwrap();
    assert_eq!(c.write(&f, 0, b"x", FILE_SYNC).unwrap_err(), ERR_NOSPC);
    let (got, _) = c.read(&f, 0, 1).unwrap();
    assert_eq!(got, [7]);
}

/// Stopping the server applies every write it answered before the filesystem is
/// released.
#[test]
fn stopping_the_server_applies_the_writes_it_answered() {
    let mem = memfs();
    let (fs, writes) = slow(mem.clone());
    let srv = start(fs, &[]);
    let (mut c, root) = connect(&srv);
    let (fh, attr) = c.create(&root, "f", 0o644).unwrap();
    let block = vec![3u8; 1 << 20];
    for i in 0..3u64 {
        c.write(&fh, i << 20, &block, UNSTABLE).unwrap();
    }
    assert!(writes.load(SeqCst) < 3, "some writes still queued");
    srv.stop();
    assert_eq!(writes.load(SeqCst), 3);
    let size = mem
        .getattr(&Ctx::root(), Ino(attr.fileid), None)
        .unwrap()
        .size;
    assert_eq!(size, 3 << 20);
}

/// A write applied behind its reply is the caller's: checked before the reply (a
/// refused one fails at once) and applied with the caller's credentials, so a non-owner's
/// write still clears setuid.
#[test]
fn writes_behind_their_replies_are_the_callers() {
    let srv = start(memfs(), &[1000]);
    let (mut root_c, root) = connect(&srv);
    let (fh, _) = root_c.create(&root, "suid", 0o644).unwrap();
    // SETATTR: mode only (no uid, gid or size; times unchanged; no guard).
    let chmod = |c: &mut Client, mode: u32| {
        let sattr = Args::new().opaque(&fh).u32(1).u32(mode).u32(0).u32(0);
        let b = c.nfs(2, sattr.u32(0).u32(0).u32(0).u32(0));
        assert_eq!(R(&b).u32(), OK);
    };
    let block = vec![5u8; 1 << 20];
    let mut u = Client::connect(srv.port()).with_user(1000, 1000);
    assert_eq!(
        u.write(&fh, 0, &block, UNSTABLE).unwrap_err(),
        ERR_ACCES,
        "refused in the reply"
    );
    chmod(&mut root_c, 0o4777);
    u.write(&fh, 0, &block, UNSTABLE).unwrap();
    assert_eq!(commit(&mut u, &fh), OK);
    let a = root_c.getattr(&fh).unwrap();
    assert_eq!(
        (a.size, a.mode & 0o7777),
        (1 << 20, 0o777),
        "setuid cleared"
    );
}

/// Opens a gate (a flag and its condition variable) when dropped, so that a failed
/// assertion does not leave the server's writes waiting on it forever.
struct OpenOnDrop(Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        *self.0.0.lock().unwrap() = true;
        self.0.1.notify_all();
    }
}

/// At most `WRITE_BEHIND_MAX` bytes wait to be applied: while the filesystem's writes
/// are held, that much is answered, and the WRITE past it is answered only once there
/// is room. Nothing is lost on the way.
#[test]
fn a_full_write_behind_queue_makes_the_next_write_wait() {
    let gate = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
    let g = Arc::clone(&gate);
    let hook = Hook::new(
        move |op| {
            if op == vmount_core::stats::Op::Write {
                let mut open = g.0.lock().unwrap();
                while !*open {
                    open = g.1.wait(open).unwrap();
                }
            }
            None
        },
        |_| {},
        |_| {},
    );
    let srv = start(hook.over(memfs()), &[]);
    let opener = OpenOnDrop(gate);
    let (mut c, root) = connect(&srv);
    let (fh, _) = c.create(&root, "f", 0o644).unwrap();
    let block = vec![1u8; 1 << 20];
    let n = (WRITE_BEHIND_MAX >> 20) as u64;
    for i in 0..n {
        c.write(&fh, i << 20, &block, UNSTABLE).unwrap();
    }
    let answered = Arc::new(AtomicBool::new(false));
    let t = {
        let (answered, port, fh) = (Arc::clone(&answered), srv.port(), fh.clone());
        std::thread::spawn(move || {
            let mut c = Client::connect(port);
            c.write(&fh, n << 20, &vec![1u8; 1 << 20], UNSTABLE)
                .unwrap();
            answered.store(true, SeqCst);
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!answered.load(SeqCst), "no room: not answered yet");
    drop(opener);
    t.join().unwrap();
    assert!(answered.load(SeqCst));
    assert_eq!(c.getattr(&fh).unwrap().size, (n + 1) << 20);
}

/// The order in which the replies to `records` (sent as given, `gap` apart) come back,
/// as indexes into `records`.
fn reply_order(c: &mut Client, records: &[(u32, Vec<u8>)], gap: std::time::Duration) -> Vec<usize> {
    for (i, (_, rec)) in records.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(gap);
        }
        c.send_raw(rec);
    }
    (0..records.len())
        .map(|_| {
            let reply = c.read_reply().expect("a reply");
            let xid = R(&reply).u32();
            records
                .iter()
                .position(|(x, _)| *x == xid)
                .expect("a known xid")
        })
        .collect()
}

/// A call that arrives while its connection is idle is answered by the connection's
/// reader (a call sent meanwhile waits for it), but never a COMMIT or a stable WRITE,
/// which flush to storage; and calls that arrive together are answered concurrently.
#[test]
fn a_lone_call_is_answered_by_the_reader_but_never_a_flush() {
    use vmount_core::stats::Op;
    let slow = Arc::new(AtomicBool::new(false));
    let s = Arc::clone(&slow);
    let hook = Hook::new(
        move |op| {
            if s.load(SeqCst) && matches!(op, Op::Getattr | Op::Fsync | Op::Write) {
                std::thread::sleep(std::time::Duration::from_millis(300));
            }
            None
        },
        |_| {},
        |_| {},
    );
    let srv = start(hook.over(memfs()), &[]);
    let (mut c, root) = connect(&srv);
    let (fh, _) = c.create(&root, "f", 0o644).unwrap();
    let record = |c: &mut Client, proc_: u32, args: Args| {
        let rec = c.call_record(NFS, 3, proc_, &args.0);
        (R(&rec[4..]).u32(), rec)
    };
    let getattr = record(&mut c, 1, Args::new().opaque(&fh));
    let null = record(&mut c, 0, Args::new());
    let commit = record(&mut c, 21, Args::new().opaque(&fh).u64(0).u32(0));
    let null2 = record(&mut c, 0, Args::new());
    let stable = record(
        &mut c,
        7,
        Args::new()
            .opaque(&fh)
            .u64(0)
            .u32(1)
            .u32(FILE_SYNC)
            .opaque(b"x"),
    );
    let null3 = record(&mut c, 0, Args::new());
    let getattr2 = record(&mut c, 1, Args::new().opaque(&fh));
    let null4 = record(&mut c, 0, Args::new());
    slow.store(true, SeqCst);
    let gap = std::time::Duration::from_millis(50);
    if cfg!(unix) {
        assert_eq!(
            reply_order(&mut c, &[getattr, null], gap),
            [0, 1],
            "a lone GETATTR holds up the call sent after it"
        );
    }
    assert_eq!(
        reply_order(&mut c, &[commit, null2], gap),
        [1, 0],
        "a COMMIT does not hold up the call sent after it"
    );
    assert_eq!(
        reply_order(&mut c, &[stable, null3], gap),
        [1, 0],
        "a stable WRITE does not hold up the call sent after it"
    );
    let mut both = getattr2.1.clone();
    both.extend_from_slice(&null4.1);
    c.send_raw(&both);
    let first = c.read_reply().unwrap();
    assert_eq!(
        R(&first).u32(),
        null4.0,
        "calls sent together run concurrently"
    );
    assert_eq!(R(&c.read_reply().unwrap()).u32(), getattr2.0);
}
