//! Live per-operation counters: how many calls, how many failed, how many bytes moved and
//! how long they took, kept cheaply enough to stay on for every request.
//!
//! # Design decisions
//! - **Atomics only, fixed size.** Each [`Op`] has a count, an error count, a byte count,
//!   a nanosecond total and a histogram of [`BUCKETS`] log2 buckets, all `AtomicU64`
//!   updated with `Relaxed` adds: no lock, no allocation, a few uncontended cache lines
//!   per request. A snapshot is not an atomic cut across counters, which monitoring does
//!   not need.
//! - **log2 latency buckets** (bucket *i* holds durations of *i* significant bits of
//!   nanoseconds): 40 buckets span 1 ns to minutes with a bounded relative error; the
//!   percentiles interpolate inside a bucket.
//! - **One registry per process, [`global`].** A vmount daemon serves one mount, so the
//!   process's counters are the mount's; the backends record into it without any option
//!   plumbing, and the CLI reads it for `vmount status` and the metrics endpoint.
//! - **Operation names are shared by all backends**, so dashboards work whichever bridge
//!   serves the mount: NFS procedures map onto the POSIX names (REMOVE is `unlink`,
//!   FSSTAT `statfs`, COMMIT `fsync`); only `null`, `fsinfo` and `pathconf` are NFS's own.
//!   FUSE and WinFsp requests map one-to-one onto [`Vfs`] calls and are recorded by the
//!   [`Recorded`] wrapper; an NFS procedure makes several trait calls (READ is GETATTR,
//!   read, GETATTR), so the NFS server records per procedure instead, and the counts
//!   match what clients asked for.

use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::wrap::{Around, Wrapped};
use crate::{Vfs, VfsResult};

/// Number of latency buckets per operation. Bucket `i` counts durations whose nanosecond
/// value has `i` significant bits (`[2^(i-1), 2^i)`; bucket 0 is exactly 0 ns); the last
/// bucket also takes everything longer (2^38 ns is about 4.6 minutes).
pub const BUCKETS: usize = 40;

macro_rules! ops {
    ($($variant:ident => $name:literal),* $(,)?) => {
        /// An operation as counted: the union of the FUSE, NFSv3 and WinFsp requests,
        /// named as POSIX and the [`Vfs`] trait name them.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[allow(missing_docs)]
        pub enum Op { $($variant),* }

        impl Op {
            /// Every operation, in index order.
            pub const ALL: &'static [Op] = &[$(Op::$variant),*];

            /// The lower-case name shown by `vmount status` and in metrics labels.
            pub fn name(self) -> &'static str {
                match self { $(Op::$variant => $name),* }
            }
        }
    };
}

ops! {
    Null => "null",
    Lookup => "lookup",
    Forget => "forget",
    Getattr => "getattr",
    Setattr => "setattr",
    Readlink => "readlink",
    Mknod => "mknod",
    Mkdir => "mkdir",
    Unlink => "unlink",
    Rmdir => "rmdir",
    Symlink => "symlink",
    Rename => "rename",
    Link => "link",
    Open => "open",
    Create => "create",
    Read => "read",
    Write => "write",
    Flush => "flush",
    Release => "release",
    Fsync => "fsync",
    Opendir => "opendir",
    Readdir => "readdir",
    Readdirplus => "readdirplus",
    Releasedir => "releasedir",
    Fsyncdir => "fsyncdir",
    Statfs => "statfs",
    Fsinfo => "fsinfo",
    Pathconf => "pathconf",
    Access => "access",
    Setxattr => "setxattr",
    Getxattr => "getxattr",
    Listxattr => "listxattr",
    Removexattr => "removexattr",
    Fallocate => "fallocate",
    CopyFileRange => "copy_file_range",
    Lseek => "lseek",
}

impl Op {
    /// The operation named `name`, as [`Op::name`] spells it.
    pub fn from_name(name: &str) -> Option<Op> {
        Op::ALL.iter().copied().find(|op| op.name() == name)
    }

    fn index(self) -> usize {
        self as usize
    }
}

const OP_COUNT: usize = Op::ALL.len();

/// The counters of one operation.
struct Cell {
    count: AtomicU64,
    errors: AtomicU64,
    bytes: AtomicU64,
    total_ns: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
}

impl Cell {
    const fn new() -> Cell {
        Cell {
            count: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            total_ns: AtomicU64::new(0),
            buckets: [const { AtomicU64::new(0) }; BUCKETS],
        }
    }
}

/// The histogram bucket of a duration of `ns` nanoseconds.
fn bucket(ns: u64) -> usize {
    let bits = (u64::BITS - ns.leading_zeros()) as usize;
    bits.min(BUCKETS - 1)
}

/// Lower and upper bound in nanoseconds of the durations bucket `i` holds.
fn bucket_bounds(i: usize) -> (u64, u64) {
    match i {
        0 => (0, 1),
        _ => (1u64 << (i - 1), 1u64 << i),
    }
}

/// The live counters of every operation, updated concurrently by the serving threads.
pub struct OpStats {
    ops: [Cell; OP_COUNT],
    /// Whether a thread sleeps in [`OpStats::sleep_until_called`].
    sleeping: AtomicBool,
    /// That thread.
    sleeper: Mutex<Option<std::thread::Thread>>,
}

impl Default for OpStats {
    fn default() -> Self {
        Self::new()
    }
}

impl OpStats {
    /// All counters at zero.
    pub const fn new() -> OpStats {
        OpStats {
            ops: [const { Cell::new() }; OP_COUNT],
            sleeping: AtomicBool::new(false),
            sleeper: Mutex::new(None),
        }
    }

    /// Counts one `op` that took `dur`, failed unless `ok`, and moved `bytes` bytes of
    /// file data (reads and writes; 0 for the rest).
    pub fn record(&self, op: Op, dur: Duration, ok: bool, bytes: u64) {
        let cell = &self.ops[op.index()];
        let ns = u64::try_from(dur.as_nanos()).unwrap_or(u64::MAX);
        cell.count.fetch_add(1, Relaxed);
        if !ok {
            cell.errors.fetch_add(1, Relaxed);
        }
        if bytes != 0 {
            cell.bytes.fetch_add(bytes, Relaxed);
        }
        cell.total_ns.fetch_add(ns, Relaxed);
        cell.buckets[bucket(ns)].fetch_add(1, Relaxed);
        if self.sleeping.load(Relaxed) {
            self.wake_sleeper();
        }
    }

    #[cold]
    fn wake_sleeper(&self) {
        if self.sleeping.swap(false, SeqCst)
            && let Some(t) = &*self.sleeper.lock().unwrap_or_else(|e| e.into_inner())
        {
            t.unpark();
        }
    }

    /// Calls of every operation so far.
    pub fn total_calls(&self) -> u64 {
        self.ops
            .iter()
            .map(|c| c.count.load(Relaxed))
            .fold(0, u64::saturating_add)
    }

    /// Parks the calling thread until a call is recorded after the first `seen`, it is
    /// unparked, or `timeout` passes; returns at once if one already was. For a thread
    /// that publishes the counters, so that it need not wake while nothing is called:
    /// recording costs one more relaxed load while nobody sleeps. One sleeper at a time
    /// (a second one takes the place of the first, which then wakes at its timeout),
    /// and a call that races with falling asleep may be noticed only at the timeout.
    pub fn sleep_until_called(&self, seen: u64, timeout: Duration) {
        *self.sleeper.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::thread::current());
        self.sleeping.store(true, SeqCst);
        if self.total_calls() == seen {
            std::thread::park_timeout(timeout);
        }
        self.sleeping.store(false, SeqCst);
    }

    /// Counts `op` as [`OpStats::record`] does, timed from `started` to now.
    pub fn record_since(&self, op: Op, started: Instant, ok: bool, bytes: u64) {
        self.record(op, started.elapsed(), ok, bytes);
    }

    /// A copy of the counters of every operation called at least once.
    pub fn snapshot(&self) -> Snapshot {
        let ops = Op::ALL
            .iter()
            .filter_map(|&op| {
                let c = &self.ops[op.index()];
                let count = c.count.load(Relaxed);
                (count != 0).then(|| OpSnapshot {
                    op,
                    count,
                    errors: c.errors.load(Relaxed),
                    bytes: c.bytes.load(Relaxed),
                    total_ns: c.total_ns.load(Relaxed),
                    buckets: std::array::from_fn(|i| c.buckets[i].load(Relaxed)),
                })
            })
            .collect();
        Snapshot { ops }
    }
}

/// The counters of the process's mount (see the module docs).
pub fn global() -> &'static OpStats {
    static GLOBAL: OpStats = OpStats::new();
    &GLOBAL
}

/// The counters at one moment: the operations called at least once.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// In [`Op::ALL`] order.
    pub ops: Vec<OpSnapshot>,
}

impl Snapshot {
    /// Operations of every kind.
    pub fn total_ops(&self) -> u64 {
        self.ops
            .iter()
            .map(|o| o.count)
            .fold(0, u64::saturating_add)
    }

    /// Failed operations of every kind.
    pub fn total_errors(&self) -> u64 {
        self.ops
            .iter()
            .map(|o| o.errors)
            .fold(0, u64::saturating_add)
    }

    /// Bytes of file data read by clients.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_of(&[Op::Read])
    }

    /// Bytes of file data written by clients (writes and server-side copies).
    pub fn bytes_written(&self) -> u64 {
        self.bytes_of(&[Op::Write, Op::CopyFileRange])
    }

    fn bytes_of(&self, which: &[Op]) -> u64 {
        self.ops
            .iter()
            .filter(|o| which.contains(&o.op))
            .map(|o| o.bytes)
            .fold(0, u64::saturating_add)
    }
}

/// The counters of one operation at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpSnapshot {
    /// Which operation.
    pub op: Op,
    /// Calls.
    pub count: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Bytes of file data moved.
    pub bytes: u64,
    /// Sum of the durations, in nanoseconds.
    pub total_ns: u64,
    /// Calls per latency bucket (see [`BUCKETS`]).
    pub buckets: [u64; BUCKETS],
}

impl OpSnapshot {
    /// The `q` quantile (0.0..=1.0) of the durations, interpolated linearly inside its
    /// log2 bucket (the calls of a bucket taken as spread evenly over it); `None` without
    /// calls.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total: u64 = self.buckets.iter().fold(0, |a, b| a.saturating_add(*b));
        if total == 0 {
            return None;
        }
        // The rank of the wanted call, 1-based; a float is exact enough for counts.
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut below = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            if n == 0 {
                continue;
            }
            if below.saturating_add(n) >= rank {
                let (lo, hi) = bucket_bounds(i);
                // The middle of the wanted call's share of the bucket.
                let frac = ((rank - below) as f64 - 0.5) / n as f64;
                let ns = lo as f64 + (hi - lo) as f64 * frac;
                return Some(Duration::from_nanos(ns as u64));
            }
            below = below.saturating_add(n);
        }
        None
    }

    /// How many calls took at most `2^bits` nanoseconds (the cumulative count of a
    /// Prometheus histogram bucket with that upper bound).
    pub fn count_within_pow2(&self, bits: u32) -> u64 {
        self.buckets
            .iter()
            .enumerate()
            .take_while(|(i, _)| *i < BUCKETS - 1 && *i as u32 <= bits)
            .map(|(_, n)| *n)
            .fold(0, u64::saturating_add)
    }
}

/// Counts every call into an [`OpStats`]: the hook of [`Recorded`].
pub struct Count {
    stats: &'static OpStats,
}

impl Around for Count {
    fn call<T>(
        &self,
        op: Op,
        bytes: fn(&T) -> u64,
        f: impl FnOnce() -> VfsResult<T>,
    ) -> VfsResult<T> {
        let mut timer = Timer {
            stats: self.stats,
            op,
            started: Instant::now(),
            done: false,
        };
        let r = f();
        timer.done = true;
        let (ok, n) = match &r {
            Ok(v) => (true, bytes(v)),
            Err(_) => (false, 0),
        };
        self.stats.record_since(op, timer.started, ok, n);
        r
    }

    fn helper<T>(&self, _name: &'static str, f: impl FnOnce() -> T) -> Option<T> {
        Some(f())
    }
}

/// Serves `inner` and counts every call in `stats` (see the module docs for why FUSE and
/// WinFsp are measured here and NFS per procedure).
pub type Recorded = Wrapped<Count>;

impl Wrapped<Count> {
    /// Wraps `inner`, counting into `stats` (usually [`global`]).
    pub fn new(inner: Arc<dyn Vfs>, stats: &'static OpStats) -> Recorded {
        Wrapped::with(inner, Count { stats })
    }
}

/// Counts a call that unwound (a panicking filesystem) as a failure.
struct Timer {
    stats: &'static OpStats,
    op: Op,
    started: Instant,
    done: bool,
}

impl Drop for Timer {
    fn drop(&mut self) {
        if !self.done {
            self.stats.record_since(self.op, self.started, false, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memfs::{MemFs, MemFsOptions};
    use crate::{Ctx, Ino};
    use crate::{OpenFlags, VfsError};
    use std::ffi::OsStr;

    #[test]
    fn names_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for (i, op) in Op::ALL.iter().enumerate() {
            assert_eq!(op.index(), i);
            assert!(seen.insert(op.name()), "{}", op.name());
            assert_eq!(Op::from_name(op.name()), Some(*op));
        }
        assert_eq!(Op::from_name("nope"), None);
    }

    #[test]
    fn buckets_cover_every_duration() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(1), 1);
        assert_eq!(bucket(2), 2);
        assert_eq!(bucket(3), 2);
        assert_eq!(bucket(1024), 11);
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
        for ns in [1u64, 5, 999, 1 << 20, (1 << 30) + 7] {
            let (lo, hi) = bucket_bounds(bucket(ns));
            assert!(lo <= ns && ns < hi, "{ns} in [{lo}, {hi})");
        }
    }

    #[test]
    fn records_counts_errors_bytes_and_quantiles() {
        let s = OpStats::new();
        for i in 0..90u64 {
            s.record(Op::Read, Duration::from_nanos(1000 + i), true, 10);
        }
        for _ in 0..10 {
            s.record(Op::Read, Duration::from_millis(5), false, 0);
        }
        s.record(Op::Write, Duration::from_micros(3), true, 7);
        s.record(Op::CopyFileRange, Duration::from_micros(3), true, 5);
        let snap = s.snapshot();
        assert_eq!(snap.ops.len(), 3);
        assert_eq!(snap.total_ops(), 102);
        assert_eq!(snap.total_errors(), 10);
        assert_eq!(snap.bytes_read(), 900);
        assert_eq!(snap.bytes_written(), 12);
        let read = &snap.ops[0];
        assert_eq!(read.op, Op::Read);
        let p50 = read.quantile(0.5).unwrap();
        assert!(
            p50 >= Duration::from_nanos(512) && p50 <= Duration::from_nanos(2048),
            "{p50:?}"
        );
        let p99 = read.quantile(0.99).unwrap();
        assert!(
            p99 >= Duration::from_millis(4) && p99 <= Duration::from_millis(9),
            "{p99:?}"
        );
        assert!(read.quantile(0.0).unwrap() <= p50);
        assert_eq!(read.count_within_pow2(11), 90);
        assert_eq!(read.count_within_pow2(40), 100);
        assert_eq!(
            read.total_ns,
            (0..90).map(|i| 1000 + i).sum::<u64>() + 10 * 5_000_000
        );
    }

    #[test]
    fn the_wrapper_counts_calls_and_bytes() {
        let stats: &'static OpStats = Box::leak(Box::new(OpStats::new()));
        let fs = Recorded::new(Arc::new(MemFs::new(MemFsOptions::default())), stats);
        let ctx = Ctx::root();
        let (a, o) = fs
            .create(
                &ctx,
                Ino::ROOT,
                OsStr::new("f"),
                0o644,
                OpenFlags::READ | OpenFlags::WRITE,
            )
            .unwrap();
        assert_eq!(fs.write(&ctx, a.ino, Some(o.fh), 0, b"hello").unwrap(), 5);
        let mut buf = [0u8; 16];
        assert_eq!(fs.read(&ctx, a.ino, Some(o.fh), 0, &mut buf).unwrap(), 5);
        assert!(matches!(
            fs.lookup(&ctx, Ino::ROOT, OsStr::new("missing")),
            Err(VfsError::NotFound)
        ));
        let snap = stats.snapshot();
        let by = |op| snap.ops.iter().find(|o| o.op == op).cloned().unwrap();
        assert_eq!(by(Op::Create).count, 1);
        assert_eq!(by(Op::Lookup).errors, 1);
        assert_eq!(snap.bytes_written(), 5);
        assert_eq!(snap.bytes_read(), 5);
    }
}
