//! The duplicate request cache: a retransmitted non-idempotent call gets the reply of
//! the first execution instead of running again.
//!
//! # Why
//! An NFS client retransmits a call whose reply it did not see: after a timeout, or after
//! reconnecting because the connection broke. If the first execution went through, running
//! a REMOVE, RENAME, LINK, MKDIR or GUARDED CREATE again fails (NOENT, EXIST) although the
//! operation succeeded, and the application sees a spurious error. knfsd keeps such a cache
//! for the same reason; nfsserve has none.
//!
//! # Decisions
//! - **Which calls:** the non-idempotent NFSv3 procedures (SETATTR, CREATE, MKDIR,
//!   SYMLINK, MKNOD, REMOVE, RMDIR, RENAME, LINK). READ, WRITE, COMMIT and the lookups are
//!   idempotent and run again at no harm, so caching them would only cost memory.
//! - **The key** is the client's port (every client is on 127.0.0.1), the xid, program,
//!   version and procedure, the caller's uid and gid, and a 64-bit hash of the argument
//!   bytes, as knfsd keys on the client's address and port. The port matters: a client
//!   that starts over on a new connection may count its xids from the same start, and an
//!   identical call it makes again must run again. A retransmission after a reconnect is
//!   still found, because the Linux client reconnects from the same source port for
//!   exactly this reason. The argument hash guards against a client that reuses xids for
//!   different calls.
//! - **In progress:** a duplicate that arrives while the first execution runs waits for
//!   its reply (bounded by [`WAIT_MAX`]) and is answered with it. That is the case a
//!   reconnecting client creates: the first reply went to a dead connection.
//! - **Bounded:** at most [`CAPACITY`] entries and [`MAX_AGE`] old, oldest evicted first.
//!   Replies of these procedures are a few hundred bytes (status and wcc data), so the
//!   cache stays under about 2 MiB.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// Entries kept.
pub const CAPACITY: usize = 4096;
/// Oldest entry kept. Linux retransmits a TCP call after `timeo` (60 s by default, ours
/// is shorter) up to `retrans` times, so ten minutes covers every retransmission.
pub const MAX_AGE: Duration = Duration::from_secs(600);
/// Longest a duplicate waits for the first execution's reply.
pub const WAIT_MAX: Duration = Duration::from_secs(30);

/// NFSv3 procedures whose retransmission must not run again.
const NON_IDEMPOTENT: [u32; 9] = [2, 8, 9, 10, 11, 12, 13, 14, 15];

/// Identifies one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    client_port: u16,
    xid: u32,
    prog: u32,
    vers: u32,
    proc_: u32,
    uid: u32,
    gid: u32,
    args: u64,
}

impl Key {
    /// The key of an NFSv3 call, or `None` when the procedure is idempotent.
    pub fn nfs3(
        client_port: u16,
        xid: u32,
        vers: u32,
        proc_: u32,
        uid: u32,
        gid: u32,
        args: &[u8],
    ) -> Option<Key> {
        if !NON_IDEMPOTENT.contains(&proc_) {
            return None;
        }
        let mut h = DefaultHasher::new();
        args.hash(&mut h);
        Some(Key {
            client_port,
            xid,
            prog: crate::server::PROG_NFS,
            vers,
            proc_,
            uid,
            gid,
            args: h.finish(),
        })
    }
}

/// One execution's reply, once there is one.
#[derive(Default)]
pub struct Slot {
    reply: Mutex<SlotState>,
    done: Condvar,
}

#[derive(Default)]
enum SlotState {
    #[default]
    Running,
    Done(Arc<[u8]>),
    /// The first execution ended without a reply (it panicked or dropped the call).
    Abandoned,
}

/// What a call should do.
pub enum Begin<'a> {
    /// First time seen: execute, then [`Ticket::finish`].
    Execute(Ticket<'a>),
    /// Seen and answered: send this reply again.
    Replay(Arc<[u8]>),
    /// Seen and still running, or abandoned: wait with [`Slot::wait`].
    Wait(Arc<Slot>),
}

/// The right and duty to record the reply of a first execution. Dropped unfinished, the
/// entry is removed and waiters are released, so a later retransmission executes.
pub struct Ticket<'a> {
    cache: &'a Drc,
    key: Key,
    slot: Arc<Slot>,
    finished: bool,
}

impl Ticket<'_> {
    /// Records `reply` for retransmissions and wakes waiting duplicates.
    pub fn finish(mut self, reply: &[u8]) {
        let reply: Arc<[u8]> = Arc::from(reply);
        *self.slot.reply.lock() = SlotState::Done(reply);
        self.slot.done.notify_all();
        self.finished = true;
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        *self.slot.reply.lock() = SlotState::Abandoned;
        self.slot.done.notify_all();
        let mut inner = self.cache.inner.lock();
        if inner
            .map
            .get(&self.key)
            .is_some_and(|(_, s)| Arc::ptr_eq(s, &self.slot))
        {
            inner.map.remove(&self.key);
        }
    }
}

impl Slot {
    /// Waits up to `timeout` for the first execution's reply; `None` if it did not come
    /// (the duplicate is then dropped unanswered, and the client retransmits again).
    pub fn wait(&self, timeout: Duration) -> Option<Arc<[u8]>> {
        let deadline = Instant::now() + timeout;
        let mut state = self.reply.lock();
        loop {
            match &*state {
                SlotState::Done(r) => return Some(Arc::clone(r)),
                SlotState::Abandoned => return None,
                SlotState::Running => {
                    if self.done.wait_until(&mut state, deadline).timed_out() {
                        return match &*state {
                            SlotState::Done(r) => Some(Arc::clone(r)),
                            _ => None,
                        };
                    }
                }
            }
        }
    }
}

/// The cache.
pub struct Drc {
    inner: Mutex<Inner>,
    capacity: usize,
    max_age: Duration,
}

struct Inner {
    map: HashMap<Key, (Instant, Arc<Slot>)>,
    /// Insertion order, for eviction. May hold keys already removed (abandoned).
    order: VecDeque<(Instant, Key)>,
}

impl Default for Drc {
    fn default() -> Self {
        Drc::new(CAPACITY, MAX_AGE)
    }
}

impl Drc {
    /// A cache of at most `capacity` entries, none older than `max_age`.
    pub fn new(capacity: usize, max_age: Duration) -> Drc {
        Drc {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                order: VecDeque::new(),
            }),
            capacity: capacity.max(1),
            max_age,
        }
    }

    /// Looks `key` up, registering it as running when it is new.
    pub fn begin(&self, key: Key) -> Begin<'_> {
        let now = Instant::now();
        let mut inner = self.inner.lock();
        inner.expire(now, self.capacity, self.max_age);
        if let Some((_, slot)) = inner.map.get(&key) {
            let slot = Arc::clone(slot);
            drop(inner);
            if let SlotState::Done(r) = &*slot.reply.lock() {
                return Begin::Replay(Arc::clone(r));
            }
            return Begin::Wait(slot);
        }
        let slot = Arc::new(Slot::default());
        inner.map.insert(key, (now, Arc::clone(&slot)));
        inner.order.push_back((now, key));
        Begin::Execute(Ticket {
            cache: self,
            key,
            slot,
            finished: false,
        })
    }

    /// Entries held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().map.len()
    }
}

impl Inner {
    /// Drops entries that are too old, then the oldest until one more fits.
    fn expire(&mut self, now: Instant, capacity: usize, max_age: Duration) {
        while let Some(&(at, key)) = self.order.front() {
            let too_old = now.duration_since(at) > max_age;
            if !too_old && self.map.len() < capacity {
                break;
            }
            self.order.pop_front();
            // Only remove the entry this order record was for (the key may have been
            // abandoned and registered again since).
            if self.map.get(&key).is_some_and(|(t, _)| *t == at) {
                self.map.remove(&key);
            }
        }
        // The order queue can only hold stale records of abandoned keys beyond the map;
        // keep it from growing without bound when many calls are abandoned.
        if self.order.len() > capacity.saturating_mul(2) {
            let map = &self.map;
            self.order
                .retain(|(at, key)| map.get(key).is_some_and(|(t, _)| t == at));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(xid: u32, args: &[u8]) -> Key {
        Key::nfs3(700, xid, 3, 12, 1000, 1000, args).unwrap()
    }

    #[test]
    fn idempotent_procedures_are_not_cached() {
        for p in [0, 1, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21] {
            assert!(Key::nfs3(700, 1, 3, p, 0, 0, b"").is_none(), "proc {p}");
        }
        for p in NON_IDEMPOTENT {
            assert!(Key::nfs3(700, 1, 3, p, 0, 0, b"").is_some(), "proc {p}");
        }
    }

    #[test]
    fn a_retransmission_replays_the_first_reply() {
        let drc = Drc::default();
        let Begin::Execute(t) = drc.begin(key(7, b"a")) else {
            panic!("new call must execute")
        };
        t.finish(b"reply-1");
        match drc.begin(key(7, b"a")) {
            Begin::Replay(r) => assert_eq!(&*r, b"reply-1"),
            _ => panic!("must replay"),
        }
        // Another xid, other arguments or another user is another call.
        assert!(matches!(drc.begin(key(8, b"a")), Begin::Execute(_)));
        assert!(matches!(drc.begin(key(7, b"b")), Begin::Execute(_)));
        let other_user = Key::nfs3(700, 7, 3, 12, 1001, 1000, b"a").unwrap();
        assert!(matches!(drc.begin(other_user), Begin::Execute(_)));
        let other_client = Key::nfs3(701, 7, 3, 12, 1000, 1000, b"a").unwrap();
        assert!(matches!(drc.begin(other_client), Begin::Execute(_)));
    }

    #[test]
    fn a_duplicate_in_progress_waits_for_the_reply() {
        let drc = Arc::new(Drc::default());
        let Begin::Execute(t) = drc.begin(key(1, b"x")) else {
            panic!()
        };
        let d2 = Arc::clone(&drc);
        let waiter = std::thread::spawn(move || match d2.begin(key(1, b"x")) {
            Begin::Wait(slot) => slot.wait(Duration::from_secs(10)).map(|r| r.to_vec()),
            _ => panic!("must wait"),
        });
        std::thread::sleep(Duration::from_millis(50));
        t.finish(b"done");
        assert_eq!(waiter.join().unwrap().as_deref(), Some(&b"done"[..]));
    }

    #[test]
    fn an_abandoned_execution_lets_the_next_retransmission_run() {
        let drc = Drc::default();
        let Begin::Execute(t) = drc.begin(key(1, b"x")) else {
            panic!()
        };
        let Begin::Wait(slot) = drc.begin(key(1, b"x")) else {
            panic!()
        };
        drop(t);
        assert!(slot.wait(Duration::from_secs(1)).is_none());
        assert!(matches!(drc.begin(key(1, b"x")), Begin::Execute(_)));
    }

    #[test]
    fn wait_times_out() {
        let drc = Drc::default();
        let _t = drc.begin(key(1, b"x"));
        let Begin::Wait(slot) = drc.begin(key(1, b"x")) else {
            panic!()
        };
        let start = Instant::now();
        assert!(slot.wait(Duration::from_millis(30)).is_none());
        assert!(start.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn capacity_and_age_bound_the_cache() {
        let drc = Drc::new(100, MAX_AGE);
        for xid in 0..1000 {
            if let Begin::Execute(t) = drc.begin(key(xid, b"x")) {
                t.finish(b"r");
            }
        }
        assert!(drc.len() <= 100, "{}", drc.len());
        // The newest are kept, the oldest gone.
        assert!(matches!(drc.begin(key(999, b"x")), Begin::Replay(_)));
        assert!(matches!(drc.begin(key(0, b"x")), Begin::Execute(_)));

        let drc = Drc::new(100, Duration::from_millis(20));
        if let Begin::Execute(t) = drc.begin(key(1, b"x")) {
            t.finish(b"r");
        }
        std::thread::sleep(Duration::from_millis(40));
        assert!(matches!(drc.begin(key(1, b"x")), Begin::Execute(_)));
    }

    #[test]
    fn many_abandoned_calls_do_not_grow_the_order_queue() {
        let drc = Drc::new(10, MAX_AGE);
        for xid in 0..10_000 {
            drop(drc.begin(key(xid, b"x")));
        }
        assert!(drc.inner.lock().order.len() <= 21);
        assert_eq!(drc.len(), 0);
    }
}
