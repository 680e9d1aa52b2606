//! Write-behind for large UNSTABLE WRITEs.
//!
//! # Decisions
//! - **Reply first, apply right after.** An UNSTABLE WRITE promises nothing about the
//!   data until a COMMIT, so a large one is checked (handle, type, permission, bounds),
//!   queued and answered; one worker thread applies the queue in order. A client that
//!   waits for each reply before reading its next block (libnfs's `nfs-cp`) then reads
//!   while the server writes, instead of taking turns: the copy in was the two copies on
//!   the server (socket to buffer, buffer to file) plus the client's, one after another.
//! - **Every other call waits for the writes queued before it** ([`WriteBehind::barrier`]):
//!   a READ, GETATTR, COMMIT or a stable WRITE sent after a WRITE's reply sees its data,
//!   exactly as if it had been applied before the reply. Only writes queued before the
//!   call began are waited for, so a busy writer cannot starve a reader.
//! - **A failed write is reported at the file's next WRITE or COMMIT** (the first failure
//!   per file, once), as the client's own write-back reports errors at `fsync`/`close`.
//!   The Linux and libnfs clients COMMIT on close, so `close(2)` still fails.
//! - **Bounded.** At most [`WRITE_BEHIND_MAX`] bytes wait; a WRITE that finds the queue full
//!   waits for room. Stopping the server drains the queue before the filesystem is
//!   released, so a replied write is never lost by an unmount.
//! - **Only WRITEs of [`BEHIND_MIN`] bytes or more.** Smaller ones cost less to apply
//!   than to hand over to another thread.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::Arc;
use std::thread::JoinHandle;

use nfsserve::nfs::nfsstat3;
use parking_lot::{Condvar, Mutex};
use vmount_core::{Ino, Vfs};

use crate::auth::Caller;

/// Smallest WRITE applied behind its reply.
pub(crate) const BEHIND_MIN: usize = 32 * 1024;

/// Most bytes of WRITE data waiting to be applied behind their replies; a WRITE that
/// would pass it waits for room before it is answered.
pub const WRITE_BEHIND_MAX: usize = 32 << 20;

/// One queued WRITE: its data is `record[range]`, the call's own buffer (no copy).
pub(crate) struct Job {
    pub caller: Caller,
    pub ino: Ino,
    pub offset: u64,
    pub record: Arc<Vec<u8>>,
    pub range: Range<usize>,
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    /// Writes ever queued, and ever applied (failed ones included).
    queued: u64,
    applied: u64,
    /// Bytes in `jobs` and in the worker's hands.
    bytes: usize,
    /// The first failure of a queued write, per file, until reported.
    failed: HashMap<Ino, nfsstat3>,
    stop: bool,
}

struct Inner {
    fs: Arc<dyn Vfs>,
    state: Mutex<State>,
    /// Signalled when a job is queued or the worker should stop.
    work: Condvar,
    /// Signalled when a job is applied.
    done: Condvar,
}

/// The queue and its worker.
pub(crate) struct WriteBehind {
    inner: Arc<Inner>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl WriteBehind {
    /// A queue applying writes to `fs`; its worker starts with the first write queued.
    pub(crate) fn new(fs: Arc<dyn Vfs>) -> WriteBehind {
        WriteBehind {
            inner: Arc::new(Inner {
                fs,
                state: Mutex::new(State::default()),
                work: Condvar::new(),
                done: Condvar::new(),
            }),
            worker: Mutex::new(None),
        }
    }

    /// Queues `job`, waiting for room first. Gives it back when the queue has stopped
    /// or its worker cannot be started: the caller then writes it itself.
    pub(crate) fn queue(&self, job: Job) -> Result<(), Job> {
        if !self.start_worker() {
            return Err(job);
        }
        let len = job.range.len();
        let mut st = self.inner.state.lock();
        while !st.stop && st.bytes > 0 && st.bytes + len > WRITE_BEHIND_MAX {
            self.inner.done.wait(&mut st);
        }
        if st.stop {
            return Err(job);
        }
        st.bytes += len;
        st.queued += 1;
        st.jobs.push_back(job);
        drop(st);
        self.inner.work.notify_one();
        Ok(())
    }

    /// Waits until every write queued before this call is applied.
    pub(crate) fn barrier(&self) {
        let mut st = self.inner.state.lock();
        let target = st.queued;
        while st.applied < target {
            self.inner.done.wait(&mut st);
        }
    }

    /// The first failure of a queued write to `ino` not yet reported; reporting it
    /// clears it. Call after [`WriteBehind::barrier`] to see every earlier write's.
    pub(crate) fn take_failure(&self, ino: Ino) -> Option<nfsstat3> {
        self.inner.state.lock().failed.remove(&ino)
    }

    /// Applies what is queued, then stops the worker; later writes are the callers'.
    pub(crate) fn finish(&self) {
        self.inner.state.lock().stop = true;
        self.inner.work.notify_all();
        self.inner.done.notify_all();
        if let Some(w) = self.worker.lock().take() {
            let _ = w.join();
        }
    }

    /// Starts the worker if it is not running; false if it could not be started.
    fn start_worker(&self) -> bool {
        let mut w = self.worker.lock();
        if w.is_some() {
            return true;
        }
        let inner = Arc::clone(&self.inner);
        match std::thread::Builder::new()
            .name("vmount-nfs-wb".into())
            .spawn(move || inner.run())
        {
            Ok(h) => {
                *w = Some(h);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "NFS write-behind unavailable: writes are applied before their replies");
                false
            }
        }
    }
}

impl Drop for WriteBehind {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Inner {
    fn run(&self) {
        loop {
            let job = {
                let mut st = self.state.lock();
                loop {
                    if let Some(j) = st.jobs.pop_front() {
                        break j;
                    }
                    if st.stop {
                        return;
                    }
                    self.work.wait(&mut st);
                }
            };
            let data = &job.record[job.range.clone()];
            let r = self
                .fs
                .write(&job.caller.ctx(), job.ino, None, job.offset, data);
            let failure = match r {
                Ok(n) if n as usize == data.len() => None,
                // The Vfs writes all or fails; anything short is out of space.
                Ok(_) => Some(nfsstat3::NFS3ERR_NOSPC),
                Err(e) => Some(crate::convert::handle_status(&e)),
            };
            if let Some(s) = failure {
                tracing::debug!(ino = job.ino.0, status = ?s, "NFS write applied behind its reply failed");
            }
            let mut st = self.state.lock();
            st.applied += 1;
            st.bytes -= data.len();
            if let Some(s) = failure {
                st.failed.entry(job.ino).or_insert(s);
            }
            drop(st);
            self.done.notify_all();
        }
    }
}
