//! Entry points for the cargo-fuzz targets in `fuzz/` (feature `fuzzing` only; not API).
//!
//! # Decisions
//! - **A fresh server state per input**, built the way [`crate::serve`] builds it but over
//!   a small pre-populated memfs and without the socket, so that every crash replays from
//!   its input alone. The tree is fixed: root (inode 1), directory `d` (2), file `f` (3,
//!   5 bytes), symlink `l` (4) and file `d/g` (5), so one record can reach GETATTR, READ,
//!   WRITE, LOOKUP, READLINK or READDIR of a real object.
//! - **Handles a fuzzer can write.** The server's instance id is random, so the 8-byte
//!   marker [`HANDLE_MARK`] anywhere in the input is replaced by this instance's id before
//!   the record is handled: `HANDLE_MARK ++ ino (8 bytes, big-endian)` is a valid handle.
//! - **No [`vmount_core::PanicGuard`].** `serve` wraps the filesystem in one, which would
//!   turn a panic in memfs into an EIO reply; here any panic must reach the fuzzer.
//! - **Checked replies.** Every reply must be one well-formed record (last-fragment mark,
//!   length matching, echoing the call's xid) no larger than [`MAX_REPLY`].

use std::ffi::OsStr;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use parking_lot::Mutex;
use vmount_core::memfs::{MemFs, MemFsOptions};
use vmount_core::{Ctx, FileType, Ino, OpenFlags, Vfs};

use crate::auth::Policy;
use crate::drc::Drc;
use crate::handles::Handles;
use crate::rpc;
use crate::server::{Answer, Shared, handle_record};

/// The client port fuzzed records come from (part of the duplicate request cache key).
const FUZZ_CLIENT_PORT: u16 = 40_000;

/// Replaced by the server's instance id wherever it occurs in an input.
pub const HANDLE_MARK: [u8; 8] = *b"vmFH\x00\x00\x00\x01";

/// The largest reply any call may produce: a full READ (1 MiB) or directory listing
/// (1 MiB) plus headers.
pub const MAX_REPLY: usize = rpc::MAX_RECORD + 4096;

/// The largest record [`stream`] may hand to the server ([`rpc::MAX_RECORD`]).
pub const MAX_RECORD: usize = rpc::MAX_RECORD;

/// Bytes memfs may hold per input, so that SETATTR to a huge size or many WRITEs stay
/// cheap and hit ENOSPC rather than the fuzzer's memory limit.
const FS_LIMIT: u64 = 8 << 20;

/// The inode numbers of the pre-populated tree.
pub mod ino {
    /// The export root.
    pub const ROOT: u64 = 1;
    /// Directory `d`.
    pub const DIR: u64 = 2;
    /// File `f`, holding `hello`.
    pub const FILE: u64 = 3;
    /// Symlink `l` -> `f`.
    pub const SYMLINK: u64 = 4;
    /// File `d/g`, empty.
    pub const NESTED: u64 = 5;
}

/// The handle the fuzz entry points accept for inode `ino` (before marker replacement).
pub fn handle(ino: u64) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[..8].copy_from_slice(&HANDLE_MARK);
    h[8..].copy_from_slice(&ino.to_be_bytes());
    h
}

fn shared() -> Shared {
    let fs = MemFs::new(MemFsOptions {
        size_limit: Some(FS_LIMIT),
        max_inodes: Some(1024),
        ..MemFsOptions::default()
    });
    populate(&fs);
    let handles = Handles::new();
    let fs: Arc<dyn vmount_core::Vfs> = Arc::new(fs);
    Shared {
        behind: Arc::new(crate::behind::WriteBehind::new(Arc::clone(&fs))),
        fs,
        fsid: handles.instance() >> 1,
        handles,
        policy: Policy::new(&[]),
        port: 2049,
        export_path: format!("/{}", crate::EXPORT_NAME),
        read_only: false,
        // On: the fuzzer then also reaches the Apple Double refusals.
        no_apple_double: true,
        mounts: Mutex::new(Vec::new()),
        drc: Drc::default(),
    }
}

/// Builds the fixed tree. A failure here is a memfs bug, and panics like one.
fn populate(fs: &MemFs) {
    let ctx = Ctx::root();
    let root = Ino::ROOT;
    let d = fs
        .mkdir(&ctx, root, OsStr::new("d"), 0o755)
        .expect("mkdir d");
    let (f, opened) = fs
        .create(&ctx, root, OsStr::new("f"), 0o644, OpenFlags::WRITE)
        .expect("create f");
    fs.write(&ctx, f.ino, Some(opened.fh), 0, b"hello")
        .expect("write f");
    fs.release(&ctx, f.ino, opened.fh).expect("release f");
    let l = fs
        .symlink(&ctx, root, OsStr::new("l"), OsStr::new("f"))
        .expect("symlink l");
    let g = fs
        .mknod(
            &ctx,
            d.ino,
            OsStr::new("g"),
            FileType::RegularFile,
            0o600,
            0,
        )
        .expect("mknod d/g");
    assert_eq!(
        [d.ino.0, f.ino.0, l.ino.0, g.ino.0],
        [ino::DIR, ino::FILE, ino::SYMLINK, ino::NESTED],
        "memfs numbers inodes in creation order"
    );
}

/// Replaces every [`HANDLE_MARK`] in `bytes` by this server's instance id.
fn patch_handles(shared: &Shared, bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let inst = shared.handles.instance().to_be_bytes();
    let mut i = 0;
    while i + HANDLE_MARK.len() <= out.len() {
        if out[i..i + HANDLE_MARK.len()] == HANDLE_MARK {
            out[i..i + HANDLE_MARK.len()].copy_from_slice(&inst);
            i += HANDLE_MARK.len();
        } else {
            i += 1;
        }
    }
    out
}

/// Handles one record and checks the reply's framing. Returns false when the server
/// would drop the connection.
fn answer(shared: &Shared, record: &[u8]) -> bool {
    let record = Arc::new(patch_handles(shared, record));
    match handle_record(shared, &record, FUZZ_CLIENT_PORT) {
        Answer::Reply(reply) => {
            check_reply(&record, &reply);
            true
        }
        Answer::Spliced(mut reply, tail) => {
            reply.extend(tail.into_bytes().expect("the spliced data"));
            check_reply(&record, &reply);
            true
        }
        Answer::Silent => true,
        Answer::Drop => false,
    }
}

fn check_reply(record: &[u8], reply: &[u8]) {
    assert!(
        reply.len() >= 4 + 8,
        "reply too short: {} bytes",
        reply.len()
    );
    assert!(
        reply.len() <= MAX_REPLY,
        "reply of {} bytes exceeds {MAX_REPLY}",
        reply.len()
    );
    let mark = u32::from_be_bytes([reply[0], reply[1], reply[2], reply[3]]);
    assert!(mark & 0x8000_0000 != 0, "reply is not one last fragment");
    assert_eq!(
        (mark & 0x7fff_ffff) as usize,
        reply.len() - 4,
        "record mark does not match the reply's length"
    );
    assert_eq!(&reply[4..8], &record[..4], "reply does not echo the xid");
    assert_eq!(&reply[8..12], &[0, 0, 0, 1], "reply is not a REPLY message");
}

/// Treats `bytes` as one RPC record body (no record mark) and hands it to the server's
/// record handler, as a connection does after reading it.
pub fn record(bytes: &[u8]) {
    if bytes.len() > MAX_RECORD {
        // The record reader never hands over more.
        return;
    }
    let shared = shared();
    answer(&shared, bytes);
}

/// Treats `bytes` as everything a client sent on one connection: records are read with
/// the server's record reader and handled in order until the stream ends, a record is
/// refused, or a call is garbage (where the server drops the connection).
pub fn stream(bytes: &[u8]) {
    let shared = shared();
    let mut input = bytes;
    loop {
        let record = match block_on(rpc::read_record(&mut input)) {
            Ok(Some(r)) => r,
            Ok(None) | Err(_) => return,
        };
        assert!(
            record.len() <= MAX_RECORD,
            "record reader returned {} bytes, over {MAX_RECORD}",
            record.len()
        );
        if !answer(&shared, &record) {
            return;
        }
    }
}

/// Runs a future that never waits (reading from a byte slice is always ready).
fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    // A slice reader returns Ready on the first poll; the bound only guards against a
    // future that would spin.
    for _ in 0..1000 {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
    }
    panic!("a read from memory did not complete");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A call header with AUTH_SYS as root (stamp, empty machine name, uid 0, gid 0,
    /// no groups) and no verifier.
    fn call(xid: u32, proc_: u32) -> Vec<u8> {
        let mut r = Vec::new();
        for v in [
            xid,
            0,
            2,
            crate::server::PROG_NFS,
            3,
            proc_,
            1,
            20,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
        ] {
            r.extend_from_slice(&v.to_be_bytes());
        }
        r
    }

    #[test]
    fn the_fixture_serves_a_marked_handle() {
        let shared = shared();
        // GETATTR of the file through a marked handle.
        let mut rec = call(9, 1);
        rec.extend_from_slice(&16u32.to_be_bytes());
        rec.extend_from_slice(&handle(ino::FILE));
        let rec = Arc::new(patch_handles(&shared, &rec));
        let Answer::Reply(reply) = handle_record(&shared, &rec, FUZZ_CLIENT_PORT) else {
            panic!("no reply");
        };
        // Accepted SUCCESS, NFS3_OK, a regular file (ftype 1) of 5 bytes.
        assert_eq!(&reply[24..36], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(&reply[52..60], &5u64.to_be_bytes());
    }

    #[test]
    fn streams_stop_at_garbage_and_oversized_marks() {
        let mut s = Vec::new();
        for xid in [1, 2] {
            let rec = call(xid, 0);
            s.extend_from_slice(&(0x8000_0000u32 | rec.len() as u32).to_be_bytes());
            s.extend_from_slice(&rec);
        }
        stream(&s);
        s.extend_from_slice(&0xffff_ffffu32.to_be_bytes());
        stream(&s);
        record(&call(3, 0));
        record(b"garbage");
    }
}
