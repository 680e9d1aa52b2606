//! FUSE-over-io_uring (Linux 6.14+): one request queue per CPU, served by a vmount
//! thread pinned to that CPU.
//!
//! # How it works
//! After the INIT handshake (done by fuser, which asked for `FUSE_OVER_IO_URING`), every
//! queue thread makes an io_uring with 128-byte submission entries and registers a few
//! ring entries with the kernel (`FUSE_IO_URING_CMD_REGISTER`): each is a header area
//! (`struct fuse_uring_req_header`) and a payload buffer as large as the biggest request.
//! Once every CPU's queue has an entry, the kernel stops queueing requests for
//! `/dev/fuse` readers and instead writes each one into a free entry of the queue of the
//! CPU the caller runs on, completing that entry's command. The thread decodes it
//! ([`crate::wire`]), calls [`Ops`] (the same code fuser's transport calls), writes the
//! reply into the same buffers and submits `FUSE_IO_URING_CMD_COMMIT_AND_FETCH`, which
//! hands the reply over and waits for the next request in one system call.
//!
//! FORGET and INTERRUPT still arrive on `/dev/fuse`, where fuser's threads keep reading.
//!
//! # Why
//! The caller and the thread answering it share a CPU, so a round trip is two context
//! switches instead of two cross-CPU wakeups: 8-9 µs against 15-35 µs over `/dev/fuse` on
//! the 2-CPU VM this was measured on (a getxattr loop: 7-8 µs against a trivial server, 8-9 µs against memfs). A queue
//! handles its requests one at a time, like one fuser worker; vmount's filesystems never
//! block a request on another (no FUSE locks are negotiated), so that is safe. The queue
//! threads run in the `SCHED_IDLE` class so that a woken caller stays on its CPU, and are
//! moved to the normal class while that would starve them ([`crate::idle_class`] has the
//! figures).
//!
//! # Ending
//! When the connection ends (unmount, abort) the kernel completes every outstanding
//! command with an error and the threads return. A thread that fails while the
//! connection lives would leave its CPU's requests waiting forever, so it aborts the
//! connection (fusectl) and, failing that, detaches the mount, making every caller see
//! an error instead of hanging.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use fuser::Errno;
use io_uring::{IoUring as Ring, cqueue, opcode, squeue, types};

use crate::idle_class;
use crate::ops::{self, MAX_READAHEAD, MAX_WRITE, OpResult, Ops, XattrOut};
use crate::wire::{self, InHeader, Out};

/// `FUSE_IO_URING_CMD_REGISTER`: give the kernel a ring entry and wait for a request.
const CMD_REGISTER: u32 = 1;
/// `FUSE_IO_URING_CMD_COMMIT_AND_FETCH`: hand over a reply and wait for the next request.
const CMD_COMMIT_AND_FETCH: u32 = 2;
/// Ring entries per queue. A queue's thread answers one request at a time; more entries
/// let it take a burst (readahead, background releases) in one system call.
const ENTRIES: usize = 4;
/// How long a new queue waits for the kernel to refuse its registration before it is
/// taken as accepted (a refusal comes back at once; an accepted entry completes only
/// when a request arrives).
const REGISTER_GRACE: Duration = Duration::from_millis(50);

/// `struct fuse_uring_req_header`: the request's (and reply's) header, the operation's
/// fixed header, and `struct fuse_uring_ent_in_out`.
#[repr(C, align(64))]
struct Header {
    in_out: [u8; 128],
    op_in: [u8; 128],
    flags: u64,
    commit_id: u64,
    payload_sz: u32,
    padding: u32,
    reserved: u64,
}

/// A queue thread's report once set up (or not): its queue, and its thread id if it runs
/// in the idle class (see [`idle_class`]).
type Ready = (usize, io::Result<Option<libc::pid_t>>);

/// The running queues of one mount.
pub(crate) struct Queues {
    threads: Vec<JoinHandle<()>>,
    /// Watches the idle-class queue threads for starvation; stopped once they all ended.
    watcher: Option<idle_class::Watcher>,
}

impl Queues {
    /// Joins the threads that have ended; returns whether all have.
    pub(crate) fn join_finished(&mut self) -> bool {
        let (done, running): (Vec<_>, Vec<_>) =
            self.threads.drain(..).partition(JoinHandle::is_finished);
        for t in done {
            let _ = t.join();
        }
        self.threads = running;
        if self.threads.is_empty() {
            self.watcher = None;
        }
        self.threads.is_empty()
    }
}

/// Who may use the mount beyond what the kernel already checks: fuser refuses requests
/// of other users unless the mount allows others, and this transport does the same.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Access {
    /// `Some(uid)`: only this user's requests (and the kernel's own) are served.
    pub(crate) owner_only: Option<u32>,
}

/// Starts one queue per possible CPU on the connection `ops` holds. Fails (with every
/// started queue torn down by the caller's unmount) when a queue cannot be set up; the
/// kernel then keeps using `/dev/fuse`, which fuser serves.
pub(crate) fn start(ops: Arc<Ops>, access: Access, mountpoint: &Path) -> io::Result<Queues> {
    let device = Arc::clone(
        ops.device()
            .ok_or_else(|| io::Error::other("the FUSE device is not set up"))?,
    );
    let cpus = possible_cpus();
    let payload = payload_size();
    let mut threads = Vec::with_capacity(cpus);
    let (ready_tx, ready_rx) = mpsc::channel::<Ready>();
    let pulse = Arc::new(idle_class::Pulse::default());
    for qid in 0..cpus {
        let ops = Arc::clone(&ops);
        let pulse = Arc::clone(&pulse);
        let device = Arc::clone(&device);
        let ready = ready_tx.clone();
        let mountpoint = mountpoint.to_owned();
        let t = thread::Builder::new()
            .name(format!("vmount-uring-{qid}"))
            .spawn(move || {
                let queue = Queue {
                    ops,
                    device,
                    qid,
                    access,
                    mountpoint,
                    pulse,
                };
                queue.run(payload, ready);
            })?;
        threads.push(t);
    }
    drop(ready_tx);
    let mut idle = Vec::new();
    for _ in 0..cpus {
        match ready_rx.recv() {
            Ok((qid, Ok(tid))) => idle.extend(tid.map(|t| (qid, t))),
            Ok((qid, Err(e))) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("io_uring queue {qid} could not be set up: {e}"),
                ));
            }
            Err(_) => return Err(io::Error::other("an io_uring queue thread ended early")),
        }
    }
    tracing::debug!(
        queues = cpus,
        payload,
        "FUSE-over-io_uring queues registered"
    );
    let watcher = idle_class::Watcher::start(idle, pulse)?;
    Ok(Queues { threads, watcher })
}

/// The number of queues the kernel expects: one per possible CPU (`nr_cpu_ids`), the
/// highest number in `/sys/devices/system/cpu/possible` plus one.
fn possible_cpus() -> usize {
    std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .ok()
        .and_then(|s| parse_cpu_list_max(&s))
        .map(|max| max + 1)
        .unwrap_or_else(|| thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The highest CPU number of a list such as `0-3,5,8-9`.
fn parse_cpu_list_max(s: &str) -> Option<usize> {
    s.trim()
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|part| {
            part.rsplit('-')
                .next()
                .and_then(|n| n.trim().parse::<usize>().ok())
        })
        .try_fold(0usize, |acc, n| n.map(|n| acc.max(n)))
}

/// The payload buffer every entry needs: the kernel requires one as large as its biggest
/// request or reply (`max_write`, or `max_pages` pages, at least 8 KiB).
fn payload_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
        .ok()
        .filter(|&p| p > 0)
        .unwrap_or(4096);
    let largest = MAX_WRITE.max(MAX_READAHEAD) as usize;
    largest.div_ceil(page).max(1) * page
}

struct Queue {
    ops: Arc<Ops>,
    device: Arc<OwnedFd>,
    qid: usize,
    access: Access,
    mountpoint: PathBuf,
    /// Wakes the idle-class watcher when it parked while nothing happened.
    pulse: Arc<idle_class::Pulse>,
}

/// One ring entry: its header area, payload buffer and the iovec pair naming them, which
/// the kernel keeps using until the connection ends.
struct Entry {
    header: Box<Header>,
    payload: Vec<u8>,
    iov: Box<[libc::iovec; 2]>,
}

impl Queue {
    fn run(self, payload: usize, ready: mpsc::Sender<Ready>) {
        pin_to_cpu(self.qid);
        let idle = idle_class::enter().then(idle_class::gettid);
        let mut ring = match make_ring() {
            Ok(r) => r,
            Err(e) => {
                let _ = ready.send((self.qid, Err(e)));
                return;
            }
        };
        let mut entries: Vec<Entry> = (0..ENTRIES).map(|_| Entry::new(payload)).collect();
        for (i, e) in entries.iter().enumerate() {
            let sqe = self.command(CMD_REGISTER, 0, e, i);
            // SAFETY: the entry's buffers and iovecs live in `entries` until this thread
            // returns, which is after the kernel let go of them (the connection ended or
            // the ring is dropped, cancelling the commands).
            if unsafe { ring.submission().push(&sqe) }.is_err() {
                let _ = ready.send((self.qid, Err(io::Error::other("submission queue full"))));
                return;
            }
        }
        if let Err(e) = ring.submit() {
            let _ = ready.send((self.qid, Err(e)));
            return;
        }
        // A refused registration completes at once with an error.
        let ts = types::Timespec::from(REGISTER_GRACE);
        let args = types::SubmitArgs::new().timespec(&ts);
        let _ = ring.submitter().submit_with_args(1, &args);
        let mut pending: Vec<(u64, i32)> = ring
            .completion()
            .map(|c| (c.user_data(), c.result()))
            .collect();
        if let Some(&(_, res)) = pending.iter().find(|(_, r)| *r < 0) {
            let _ = ready.send((self.qid, Err(io::Error::from_raw_os_error(-res))));
            return;
        }
        let _ = ready.send((self.qid, Ok(idle)));
        drop(ready);
        let wait = Wait::new(&ring);
        loop {
            for (user_data, res) in pending.drain(..) {
                if res < 0 {
                    self.ended(res);
                    return;
                }
                let Some(entry) = entries.get_mut(user_data as usize) else {
                    continue;
                };
                let commit_id = entry.header.commit_id;
                entry.serve(&self.ops, self.access);
                let sqe = self.command(CMD_COMMIT_AND_FETCH, commit_id, entry, user_data as usize);
                // SAFETY: as for the registrations; the queue has room for every entry.
                if unsafe { ring.submission().push(&sqe) }.is_err() {
                    self.ended(-libc::EOVERFLOW);
                    return;
                }
            }
            match wait.submit_and_wait(&ring) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => {
                    self.ended(-e.raw_os_error().unwrap_or(libc::EIO));
                    return;
                }
            }
            pending.extend(ring.completion().map(|c| (c.user_data(), c.result())));
            self.pulse.touch();
        }
    }

    /// The command for entry `i`: register it, or commit its reply and fetch again.
    fn command(&self, op: u32, commit_id: u64, e: &Entry, i: usize) -> squeue::Entry128 {
        // struct fuse_uring_cmd_req: flags, commit_id, qid.
        let mut cmd = [0u8; 80];
        cmd[8..16].copy_from_slice(&commit_id.to_ne_bytes());
        cmd[16..18].copy_from_slice(&(self.qid as u16).to_ne_bytes());
        let sqe = opcode::UringCmd80::new(types::Fd(self.device.as_raw_fd()), op)
            .cmd(cmd)
            .addr(Some(e.iov.as_ptr() as u64))
            .build()
            .user_data(i as u64);
        with_iov_count(sqe, 2)
    }

    /// The queue's command failed: the end of the connection, or a fault that would leave
    /// this CPU's requests unanswered.
    fn ended(&self, res: i32) {
        let errno = -res;
        if [
            libc::ENOTCONN,
            libc::ECONNABORTED,
            libc::ENODEV,
            libc::ECANCELED,
        ]
        .contains(&errno)
        {
            tracing::debug!(queue = self.qid, "io_uring queue ends with its connection");
            return;
        }
        let e = io::Error::from_raw_os_error(errno);
        tracing::error!(
            queue = self.qid,
            error = %e,
            "an io_uring FUSE queue failed; aborting the mount at {} so that no request waits \
             forever",
            self.mountpoint.display()
        );
        abort_connection(&self.mountpoint);
    }
}

impl Entry {
    fn new(payload: usize) -> Entry {
        // SAFETY: `Header` is plain bytes and integers; all zeroes is a valid value.
        let mut header: Box<Header> = Box::new(unsafe { std::mem::zeroed() });
        let mut payload = vec![0u8; payload];
        let iov = Box::new([
            libc::iovec {
                iov_base: (&mut *header as *mut Header).cast(),
                iov_len: std::mem::size_of::<Header>(),
            },
            libc::iovec {
                iov_base: payload.as_mut_ptr().cast(),
                iov_len: payload.len(),
            },
        ]);
        Entry {
            header,
            payload,
            iov,
        }
    }

    /// Answers the request in this entry, leaving the reply in its buffers.
    fn serve(&mut self, ops: &Ops, access: Access) {
        let Some(req) = InHeader::parse(&self.header.in_out) else {
            // Cannot happen (the area is 128 bytes); answer nothing we cannot address.
            return;
        };
        let len = (self.header.payload_sz as usize).min(self.payload.len());
        // Extensions (supplementary groups, security context) follow the arguments; none
        // is negotiated, but skip whatever the kernel sent rather than read it as data.
        let ext = usize::from(req.total_extlen) * 8;
        let args_len = len.saturating_sub(ext);
        let (op_in, payload) = (&self.header.op_in, &mut self.payload);
        let result = catch_unwind(AssertUnwindSafe(|| {
            dispatch(ops, access, &req, op_in, payload, args_len)
        }))
        .unwrap_or_else(|_| {
            tracing::error!(
                opcode = req.opcode,
                "a FUSE request handler panicked; replying EIO"
            );
            Err(Errno::EIO)
        });
        let (error, reply_len) = match result {
            Ok(Reply::InPlace(n)) => (0, n),
            Ok(Reply::Fixed(out)) => {
                let b = out.bytes();
                self.payload[..b.len()].copy_from_slice(b);
                (0, b.len())
            }
            Ok(Reply::Bytes(v)) if v.len() <= self.payload.len() => {
                self.payload[..v.len()].copy_from_slice(&v);
                (0, v.len())
            }
            Ok(Reply::Bytes(_)) => (-libc::ERANGE, 0),
            Err(e) => (-e.code(), 0),
        };
        let h = &mut *self.header;
        h.payload_sz = reply_len as u32;
        wire::out_header(
            &mut h.in_out,
            (wire::OUT_HEADER_LEN + reply_len) as u32,
            error,
            req.unique,
        );
    }
}

/// A reply's arguments: built in a fixed buffer, a value to copy, or already written
/// into the payload (READ data, directory listings).
enum Reply {
    Fixed(Out),
    Bytes(Vec<u8>),
    InPlace(usize),
}

fn empty(res: OpResult<()>) -> OpResult<Reply> {
    res.map(|()| Reply::InPlace(0))
}

fn entry(ops: &Ops, res: OpResult<fuser::FileAttr>) -> OpResult<Reply> {
    let a = res?;
    let mut out = Out::new();
    out.entry(&a, ops.attr_ttl, ops.entry_ttl);
    Ok(Reply::Fixed(out))
}

fn attr(ops: &Ops, res: OpResult<fuser::FileAttr>) -> OpResult<Reply> {
    let a = res?;
    let mut out = Out::new();
    out.attr(ops.attr_ttl, &a);
    Ok(Reply::Fixed(out))
}

fn xattr(res: OpResult<XattrOut>) -> OpResult<Reply> {
    Ok(match res? {
        XattrOut::Size(n) => {
            let mut out = Out::new();
            out.xattr_size(n);
            Reply::Fixed(out)
        }
        XattrOut::Data(v) => Reply::Bytes(v),
    })
}

/// The operations the kernel may send for a user other than the mount's owner even on a
/// mount that only serves its owner (fuser's list: I/O on already open files, and
/// housekeeping the kernel issues itself).
fn kernel_may_issue(opcode: u32) -> bool {
    use wire::*;
    matches!(
        opcode,
        FUSE_INIT
            | FUSE_DESTROY
            | FUSE_READ
            | FUSE_READDIR
            | FUSE_READDIRPLUS
            | FUSE_BATCH_FORGET
            | FUSE_FORGET
            | FUSE_WRITE
            | FUSE_FSYNC
            | FUSE_FSYNCDIR
            | FUSE_RELEASE
            | FUSE_RELEASEDIR
    )
}

/// Decodes one request and calls [`Ops`]; `payload[..args_len]` holds its arguments
/// after the fixed header `op_in`.
fn dispatch(
    ops: &Ops,
    access: Access,
    req: &InHeader,
    op_in: &[u8],
    payload: &mut [u8],
    args_len: usize,
) -> OpResult<Reply> {
    use wire::*;
    if let Some(owner) = access.owner_only
        && req.uid != owner
        && !kernel_may_issue(req.opcode)
    {
        return Err(Errno::EACCES);
    }
    let ctx = ops::ctx(req.uid, req.gid, req.pid);
    let node = req.nodeid;
    let args = &payload[..args_len];
    match req.opcode {
        FUSE_LOOKUP => {
            let (n, _) = name(args)?;
            let (a, attr_ttl, entry_ttl) = ops.lookup(&ctx, node, n)?.reply(ops);
            let mut out = Out::new();
            out.entry(&a, attr_ttl, entry_ttl);
            Ok(Reply::Fixed(out))
        }
        FUSE_GETATTR => {
            let fh = short(getattr_fh(op_in))?;
            attr(ops, ops.getattr(&ctx, node, fh))
        }
        FUSE_SETATTR => {
            let s = short(SetattrIn::parse(op_in))?;
            let set = ops::set_attr(s.mode, s.uid, s.gid, s.size, s.atime, s.mtime, s.ctime);
            attr(ops, ops.setattr(&ctx, node, &set, s.fh))
        }
        FUSE_READLINK => ops.readlink(&ctx, node).map(Reply::Bytes),
        FUSE_SYMLINK => {
            let (n, rest) = name(args)?;
            let (target, _) = name(rest)?;
            entry(ops, ops.symlink(&ctx, node, n, target))
        }
        FUSE_MKNOD => {
            let (mode, rdev, umask) = short(mknod_in(op_in))?;
            let (n, _) = name(args)?;
            entry(ops, ops.mknod(&ctx, node, n, mode, umask, rdev))
        }
        FUSE_MKDIR => {
            let (mode, umask) = short(mkdir_in(op_in))?;
            let (n, _) = name(args)?;
            entry(ops, ops.mkdir(&ctx, node, n, mode, umask))
        }
        FUSE_UNLINK => empty(ops.unlink(&ctx, node, name(args)?.0)),
        FUSE_RMDIR => empty(ops.rmdir(&ctx, node, name(args)?.0)),
        FUSE_RENAME | FUSE_RENAME2 => {
            let (new_parent, flags) = short(rename_in(op_in, req.opcode == FUSE_RENAME2))?;
            let (old, rest) = name(args)?;
            let (new, _) = name(rest)?;
            empty(ops.rename(&ctx, node, old, new_parent, new, flags))
        }
        FUSE_LINK => {
            let target = short(link_in(op_in))?;
            let (n, _) = name(args)?;
            entry(ops, ops.link(&ctx, target, node, n))
        }
        FUSE_OPEN => {
            let flags = short(open_in(op_in))?;
            let o = ops.open(&ctx, node, flags)?;
            let mut out = Out::new();
            out.open(&o);
            Ok(Reply::Fixed(out))
        }
        FUSE_READ => {
            let (fh, offset, size) = short(read_in(op_in))?;
            let size = (size as usize).min(payload.len());
            let n = ops.read(&ctx, node, fh, offset, &mut payload[..size])?;
            Ok(Reply::InPlace(n))
        }
        FUSE_WRITE => {
            let (fh, offset, size) = short(write_in(op_in))?;
            let data = args.get(..size as usize).ok_or(Errno::EINVAL)?;
            let n = ops.write(&ctx, node, fh, offset, data)?;
            let mut out = Out::new();
            out.written(n);
            Ok(Reply::Fixed(out))
        }
        FUSE_STATFS => {
            let s = ops.statfs(&ctx, node)?;
            let (blocks, bfree, bavail, files, ffree, bsize, namelen, frsize) =
                crate::convert::statfs_args(&s);
            let mut out = Out::new();
            out.statfs(blocks, bfree, bavail, files, ffree, bsize, namelen, frsize);
            Ok(Reply::Fixed(out))
        }
        FUSE_RELEASE => empty(ops.release(&ctx, node, short(release_in(op_in))?)),
        FUSE_FSYNC => {
            let (fh, datasync) = short(fsync_in(op_in))?;
            empty(ops.fsync(&ctx, node, fh, datasync))
        }
        FUSE_SETXATTR => {
            let (size, flags) = short(setxattr_in(op_in))?;
            let (n, rest) = name(args)?;
            let value = rest.get(..size as usize).ok_or(Errno::EINVAL)?;
            empty(ops.setxattr(&ctx, node, n, value, flags, 0))
        }
        FUSE_GETXATTR => {
            let size = short(getxattr_in(op_in))?;
            let (n, _) = name(args)?;
            xattr(ops.getxattr(&ctx, node, n, size))
        }
        FUSE_LISTXATTR => {
            let size = short(getxattr_in(op_in))?;
            xattr(ops.listxattr(&ctx, node, size))
        }
        FUSE_REMOVEXATTR => empty(ops.removexattr(&ctx, node, name(args)?.0)),
        FUSE_FLUSH => {
            let (fh, owner) = short(flush_in(op_in))?;
            empty(ops.flush(&ctx, node, fh, owner))
        }
        FUSE_OPENDIR => {
            let flags = short(open_in(op_in))?;
            let o = ops.opendir(&ctx, node, flags)?;
            let mut out = Out::new();
            out.open(&o);
            Ok(Reply::Fixed(out))
        }
        FUSE_READDIR | FUSE_READDIRPLUS => {
            let (fh, offset, size) = short(read_in(op_in))?;
            let mut buf = DirBuf::new(payload, size);
            if req.opcode == FUSE_READDIR {
                ops.readdir(&ctx, node, fh, offset, &mut buf)?;
            } else {
                ops.readdirplus(&ctx, node, fh, offset, &mut buf)?;
            }
            Ok(Reply::InPlace(buf.len()))
        }
        FUSE_RELEASEDIR => empty(ops.releasedir(&ctx, node, short(release_in(op_in))?)),
        FUSE_FSYNCDIR => {
            let (fh, datasync) = short(fsync_in(op_in))?;
            empty(ops.fsyncdir(&ctx, node, fh, datasync))
        }
        FUSE_ACCESS => empty(ops.access(&ctx, node, short(access_in(op_in))?)),
        FUSE_CREATE => {
            let (flags, mode, umask) = short(create_in(op_in))?;
            let (n, _) = name(args)?;
            let (a, o) = ops.create(&ctx, node, n, mode, umask, flags)?;
            let ttl = ops.single_ttl();
            let mut out = Out::new();
            out.entry(&a, ttl, ttl).open(&o);
            Ok(Reply::Fixed(out))
        }
        FUSE_FALLOCATE => {
            let (fh, offset, length, mode) = short(fallocate_in(op_in))?;
            empty(ops.fallocate(&ctx, node, fh, offset, length, mode))
        }
        FUSE_LSEEK => {
            let (fh, offset, whence) = short(lseek_in(op_in))?;
            let found = ops.lseek(&ctx, node, fh, offset, whence)?;
            let mut out = Out::new();
            out.offset(found);
            Ok(Reply::Fixed(out))
        }
        FUSE_COPY_FILE_RANGE => {
            let c = short(copy_in(op_in))?;
            let n = ops.copy_file_range(
                &ctx,
                node,
                c.fh_in,
                c.off_in,
                c.nodeid_out,
                c.fh_out,
                c.off_out,
                c.len,
                c.flags,
            )?;
            let mut out = Out::new();
            out.written(n);
            Ok(Reply::Fixed(out))
        }
        // DESTROY needs nothing of us: the mount's teardown closes the filesystem.
        FUSE_DESTROY => Ok(Reply::InPlace(0)),
        // Everything else (locks, ioctl, poll, bmap, statx, tmpfile, syncfs, ...) is what
        // fuser answers ENOSYS for too; the kernel stops asking for most of them.
        _ => Err(Errno::ENOSYS),
    }
}

/// Builds the ring: 128-byte entries (the FUSE command lives in the second half), one
/// issuer, completions run only when this thread waits (fewer interruptions).
fn make_ring() -> io::Result<Ring<squeue::Entry128, cqueue::Entry>> {
    let depth = (ENTRIES as u32).next_power_of_two() * 2;
    Ring::builder()
        .setup_single_issuer()
        .setup_coop_taskrun()
        .setup_defer_taskrun()
        .build(depth)
        .or_else(|_| Ring::builder().build(depth))
}

/// How a queue thread hands over its replies and waits for the next request.
///
/// A thread waits in the kernel almost all the time, and an io_uring wait counts as
/// I/O wait unless told otherwise: with no `NO_IOWAIT`, an idle mount showed as one
/// blocked task per CPU (`vmstat`'s `b` column) and the idle CPU time as 99-100 % iowait
/// in `top` and `vmstat`, which monitoring reads as a stalled disk. Kernels 6.15+ take
/// `IORING_ENTER_NO_IOWAIT`; older ones keep the plain wait. The ring descriptor is also
/// registered (5.18+), which spares the kernel a descriptor lookup on every wait.
struct Wait {
    no_iowait: bool,
}

impl Wait {
    fn new(ring: &Ring<squeue::Entry128, cqueue::Entry>) -> Wait {
        if let Err(e) = ring.submitter().register_ring_fd() {
            tracing::debug!(error = %e, "cannot register an io_uring queue's ring descriptor");
        }
        Wait {
            no_iowait: ring.params().is_feature_no_iowait(),
        }
    }

    /// Submits what is queued and waits for at least one completion.
    fn submit_and_wait(&self, ring: &Ring<squeue::Entry128, cqueue::Entry>) -> io::Result<usize> {
        if self.no_iowait {
            ring.submitter().submit_with_args_and_flags(
                1,
                &types::SubmitArgs::new(),
                io_uring::EnterFlags::NO_IOWAIT,
            )
        } else {
            ring.submit_and_wait(1)
        }
    }
}

/// Sets the `len` field (the iovec count FUSE expects: 2) of a built command. The
/// io-uring crate's `UringCmd80` sets `addr` but not `len`; the submission entry is the
/// kernel's `struct io_uring_sqe`, where `len` is the u32 at byte 24, followed by the
/// 64-byte command tail.
fn with_iov_count(sqe: squeue::Entry128, n: u32) -> squeue::Entry128 {
    const _: () = assert!(std::mem::size_of::<squeue::Entry128>() == 128);
    // SAFETY: `Entry128` is `#[repr(C)]` over the 64-byte `io_uring_sqe` and 64 bytes,
    // so it has exactly the layout of 128 bytes; every byte pattern is a valid entry.
    let mut raw: [u8; 128] = unsafe { std::mem::transmute(sqe) };
    raw[24..28].copy_from_slice(&n.to_ne_bytes());
    // SAFETY: as above.
    unsafe { std::mem::transmute::<[u8; 128], squeue::Entry128>(raw) }
}

/// Runs this thread on `cpu` only, so that it answers the requests of that CPU without
/// migrating (best effort: an offline CPU leaves the thread unpinned).
fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET stays inside it for any cpu
    // below CPU_SETSIZE, which is checked.
    unsafe {
        if cpu >= libc::CPU_SETSIZE as usize {
            return;
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            tracing::debug!(
                cpu,
                error = %io::Error::last_os_error(),
                "cannot pin an io_uring queue thread to its CPU"
            );
        }
    }
}

/// Aborts the FUSE connection of the mount at `mountpoint` through fusectl
/// (`/sys/fs/fuse/connections/<device>/abort`), or detaches the mount when that is not
/// possible, so that requests fail instead of waiting for a queue that is gone.
fn abort_connection(mountpoint: &Path) {
    use std::os::unix::fs::MetadataExt;
    if let Ok(m) = std::fs::metadata(mountpoint) {
        let minor = libc::minor(m.dev());
        let abort = format!("/sys/fs/fuse/connections/{minor}/abort");
        if std::fs::write(&abort, b"1").is_ok() {
            return;
        }
    }
    if let Ok(p) = std::ffi::CString::new(mountpoint.as_os_str().as_encoded_bytes()) {
        // SAFETY: a valid C string; MNT_DETACH has no other preconditions.
        unsafe { libc::umount2(p.as_ptr(), libc::MNT_DETACH) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_give_the_highest_cpu() {
        assert_eq!(parse_cpu_list_max("0-1\n"), Some(1));
        assert_eq!(parse_cpu_list_max("0"), Some(0));
        assert_eq!(parse_cpu_list_max("0-3,5,8-9"), Some(9));
        assert_eq!(parse_cpu_list_max("x"), None);
    }

    #[test]
    fn payload_covers_the_largest_request() {
        let p = payload_size();
        assert!(p >= MAX_WRITE as usize && p >= 8192);
    }

    #[test]
    fn commands_carry_two_iovecs() {
        let e = opcode::UringCmd80::new(types::Fd(3), CMD_REGISTER)
            .addr(Some(0x1234))
            .build();
        let e = with_iov_count(e, 2);
        // SAFETY: as in `with_iov_count`.
        let raw: [u8; 128] = unsafe { std::mem::transmute(e) };
        assert_eq!(u32::from_ne_bytes(raw[24..28].try_into().unwrap()), 2);
        assert_eq!(u64::from_ne_bytes(raw[16..24].try_into().unwrap()), 0x1234);
        assert_eq!(raw[0], io_uring::opcode::UringCmd80::CODE);
    }

    /// Requests decoded and answered by [`dispatch`] over a heap memfs, without a kernel.
    struct Harness {
        ops: Ops,
        payload: Vec<u8>,
    }

    impl Harness {
        fn new() -> Harness {
            Harness::with(&crate::FuseOptions::default())
        }

        fn with(opts: &crate::FuseOptions) -> Harness {
            let fs = std::sync::Arc::new(vmount_core::memfs::MemFs::new(Default::default()));
            Harness {
                ops: Ops::new(fs, opts, crate::Passthrough::Off, Arc::default()),
                payload: vec![0; 1 << 16],
            }
        }

        /// Sends one request as `uid` to a mount that only serves uid 0.
        fn call(
            &mut self,
            opcode: u32,
            node: u64,
            uid: u32,
            op_in: &[u8],
            args: &[u8],
        ) -> Result<Vec<u8>, Errno> {
            let req = InHeader {
                len: 0,
                opcode,
                unique: 7,
                nodeid: node,
                uid,
                gid: 0,
                pid: 1,
                total_extlen: 0,
            };
            let mut area = [0u8; 128];
            area[..op_in.len()].copy_from_slice(op_in);
            self.payload[..args.len()].copy_from_slice(args);
            let access = Access {
                owner_only: Some(0),
            };
            match dispatch(
                &self.ops,
                access,
                &req,
                &area,
                &mut self.payload,
                args.len(),
            )? {
                Reply::Fixed(out) => Ok(out.bytes().to_vec()),
                Reply::Bytes(v) => Ok(v),
                Reply::InPlace(n) => Ok(self.payload[..n].to_vec()),
            }
        }
    }

    fn le32(v: &[u32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_ne_bytes()).collect()
    }

    fn le64(v: &[u64]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_ne_bytes()).collect()
    }

    #[test]
    fn files_are_made_written_read_and_listed() {
        let mut h = Harness::new();
        // A missing name is a negative entry: node id 0, the entry valid for the negative
        // timeout (1 s by default), no attribute lifetime.
        let absent = h.call(wire::FUSE_LOOKUP, 1, 0, &[], b"nope\0").unwrap();
        let word = |b: &[u8], at: usize| u64::from_ne_bytes(b[at..at + 8].try_into().unwrap());
        assert_eq!(
            (word(&absent, 0), word(&absent, 16), word(&absent, 24)),
            (0, 1, 0)
        );
        let mut strict = Harness::with(&crate::FuseOptions {
            negative_timeout: Duration::ZERO,
            ..Default::default()
        });
        assert_eq!(
            strict.call(wire::FUSE_LOOKUP, 1, 0, &[], b"nope\0"),
            Err(Errno::ENOENT)
        );
        // CREATE: flags O_RDWR, mode 0644 regular, umask 022.
        let created = h
            .call(
                wire::FUSE_CREATE,
                1,
                0,
                &le32(&[2, 0o100644, 0o022, 0]),
                b"f\0",
            )
            .unwrap();
        assert_eq!(created.len(), 144);
        let ino = wire::u64_at(&created, 0).unwrap();
        let fh = wire::u64_at(&created, 128).unwrap();
        assert_eq!(wire::u32_at(&created, 40 + 60), Some(libc::S_IFREG | 0o644));
        // WRITE 5 bytes at 0.
        let mut w = le64(&[fh, 0]);
        w.extend(le32(&[5, 0]));
        let written = h.call(wire::FUSE_WRITE, ino, 0, &w, b"hello").unwrap();
        assert_eq!(wire::u32_at(&written, 0), Some(5));
        // A WRITE claiming more data than it carries is refused, not read past.
        let mut w = le64(&[fh, 0]);
        w.extend(le32(&[500, 0]));
        assert_eq!(
            h.call(wire::FUSE_WRITE, ino, 0, &w, b"hello"),
            Err(Errno::EINVAL)
        );
        // READ 100 bytes at 1: what is there.
        let mut r = le64(&[fh, 1]);
        r.extend(le32(&[100, 0]));
        assert_eq!(h.call(wire::FUSE_READ, ino, 0, &r, &[]).unwrap(), b"ello");
        // GETATTR without a handle: size 5.
        let attr = h.call(wire::FUSE_GETATTR, ino, 0, &[0; 16], &[]).unwrap();
        assert_eq!(wire::u64_at(&attr, 16 + 8), Some(5));
        // SETATTR size 2.
        let mut s = vec![0u8; 88];
        s[0..4].copy_from_slice(&(1u32 << 3).to_ne_bytes());
        s[16..24].copy_from_slice(&2u64.to_ne_bytes());
        let attr = h.call(wire::FUSE_SETATTR, ino, 0, &s, &[]).unwrap();
        assert_eq!(wire::u64_at(&attr, 16 + 8), Some(2));
        // xattrs: size query, value, list.
        let mut sx = le32(&[3, 0]);
        sx.truncate(8);
        h.call(wire::FUSE_SETXATTR, ino, 0, &sx, b"user.k\0abc")
            .unwrap();
        let size = h
            .call(wire::FUSE_GETXATTR, ino, 0, &le32(&[0, 0]), b"user.k\0")
            .unwrap();
        assert_eq!(wire::u32_at(&size, 0), Some(3));
        assert_eq!(
            h.call(wire::FUSE_GETXATTR, ino, 0, &le32(&[64, 0]), b"user.k\0")
                .unwrap(),
            b"abc"
        );
        assert_eq!(
            h.call(wire::FUSE_GETXATTR, ino, 0, &le32(&[2, 0]), b"user.k\0"),
            Err(Errno::from_i32(libc::ERANGE))
        );
        assert_eq!(
            h.call(wire::FUSE_LISTXATTR, ino, 0, &le32(&[64, 0]), &[])
                .unwrap(),
            b"user.k\0"
        );
        // MKDIR, then a READDIRPLUS of the root: ., .., f, d.
        h.call(wire::FUSE_MKDIR, 1, 0, &le32(&[0o755, 0]), b"d\0")
            .unwrap();
        let dfh = wire::u64_at(
            &h.call(wire::FUSE_OPENDIR, 1, 0, &le32(&[0, 0]), &[])
                .unwrap(),
            0,
        )
        .unwrap();
        let mut r = le64(&[dfh, 0]);
        r.extend(le32(&[4096, 0]));
        let listing = h.call(wire::FUSE_READDIRPLUS, 1, 0, &r, &[]).unwrap();
        let mut names = Vec::new();
        let mut off = 0;
        while off < listing.len() {
            let d = &listing[off + 128..];
            let len = wire::u32_at(d, 16).unwrap() as usize;
            names.push(String::from_utf8(d[24..24 + len].to_vec()).unwrap());
            off += 128 + (24 + len).div_ceil(8) * 8;
        }
        names.sort();
        assert_eq!(names, [".", "..", "d", "f"]);
        // RENAME2 with NOREPLACE onto an existing name.
        let mut rn = le64(&[1]);
        rn.extend(le32(&[1, 0]));
        assert_eq!(
            h.call(wire::FUSE_RENAME2, 1, 0, &rn, b"f\0d\0"),
            Err(Errno::EEXIST)
        );
        h.call(wire::FUSE_RELEASE, ino, 0, &le64(&[fh, 0, 0]), &[])
            .unwrap();
        h.call(wire::FUSE_UNLINK, 1, 0, &[], b"f\0").unwrap();
        h.call(wire::FUSE_RMDIR, 1, 0, &[], b"d\0").unwrap();
        let gone = h.call(wire::FUSE_LOOKUP, 1, 0, &[], b"f\0").unwrap();
        assert_eq!(word(&gone, 0), 0, "a removed name is absent");
        let st = h.call(wire::FUSE_STATFS, 1, 0, &[], &[]).unwrap();
        assert_eq!(st.len(), 80);
    }

    #[test]
    fn malformed_unknown_and_foreign_requests_get_errors() {
        let mut h = Harness::new();
        // A name without its NUL.
        assert_eq!(
            h.call(wire::FUSE_LOOKUP, 1, 0, &[], b"abc"),
            Err(Errno::EIO)
        );
        assert_eq!(
            h.call(wire::FUSE_SYMLINK, 1, 0, &[], b"l\0target"),
            Err(Errno::EIO)
        );
        // Locks, ioctl and other opcodes vmount does not serve.
        for op in [31, 32, 33, 39, 40, 37, 50, 51, 52, 999] {
            assert_eq!(
                h.call(op, 1, 0, &[], &[]),
                Err(Errno::ENOSYS),
                "opcode {op}"
            );
        }
        // Another user on an owner-only mount: refused, except I/O the kernel issues on
        // files that are already open.
        assert_eq!(
            h.call(wire::FUSE_LOOKUP, 1, 1000, &[], b"x\0"),
            Err(Errno::EACCES)
        );
        assert_eq!(
            h.call(wire::FUSE_GETATTR, 1, 1000, &[0; 16], &[]),
            Err(Errno::EACCES)
        );
        assert!(kernel_may_issue(wire::FUSE_READ) && kernel_may_issue(wire::FUSE_RELEASE));
        // mknod of a directory is EINVAL, as mknod(2) has it.
        assert_eq!(
            h.call(
                wire::FUSE_MKNOD,
                1,
                0,
                &le32(&[libc::S_IFDIR | 0o755, 0, 0, 0]),
                b"x\0"
            ),
            Err(Errno::EINVAL)
        );
    }
}
