//! The small cache of host files that the loopback filesystems (unix and Windows) use for
//! stateless I/O (`fh = None`, NFS): one open file per inode, reused across calls, so a
//! 1 GiB copy is not a million opens. Least recently used out; a read-write entry serves
//! reads too, and replaces a read-only one for the same inode.
//!
//! A linear scan of a short vector under one lock: at [`CAPACITY`] entries this is
//! cheaper than a map plus an LRU list, and the lock is held for the scan only, never
//! for the I/O.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

/// Entries kept.
pub(crate) const CAPACITY: usize = 64;

struct Slot<T> {
    ino: u64,
    value: Arc<T>,
    writable: bool,
    used: u64,
}

/// Cached host files by inode number.
pub(crate) struct IoCache<T> {
    slots: Mutex<Vec<Slot<T>>>,
    clock: AtomicU64,
}

impl<T> IoCache<T> {
    pub(crate) fn new() -> Self {
        IoCache {
            slots: Mutex::new(Vec::with_capacity(CAPACITY)),
            clock: AtomicU64::new(0),
        }
    }

    /// A cached file for `ino` that allows writing if `write`.
    pub(crate) fn get(&self, ino: u64, write: bool) -> Option<Arc<T>> {
        let tick = self.clock.fetch_add(1, Ordering::Relaxed);
        let mut slots = self.slots.lock();
        let s = slots
            .iter_mut()
            .find(|s| s.ino == ino && (s.writable || !write))?;
        s.used = tick;
        Some(s.value.clone())
    }

    /// Caches `value` for `ino` if `still_wanted()` (checked under the cache's lock, so
    /// that an inode dropped meanwhile leaves nothing behind), evicting the least
    /// recently used entry when full.
    pub(crate) fn insert(
        &self,
        ino: u64,
        writable: bool,
        value: Arc<T>,
        still_wanted: impl FnOnce() -> bool,
    ) {
        let tick = self.clock.fetch_add(1, Ordering::Relaxed);
        let mut slots = self.slots.lock();
        if !still_wanted() {
            return;
        }
        if slots.len() >= CAPACITY
            && let Some(oldest) = slots
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| s.used)
                .map(|(i, _)| i)
        {
            slots.swap_remove(oldest);
        }
        slots.retain(|s| s.ino != ino || s.writable);
        slots.push(Slot {
            ino,
            value,
            writable,
            used: tick,
        });
    }

    /// Keeps only the entries `keep` accepts.
    pub(crate) fn retain(&self, mut keep: impl FnMut(u64, &T) -> bool) {
        self.slots.lock().retain(|s| keep(s.ino, &s.value));
    }

    /// Forgets every entry of `ino`.
    pub(crate) fn remove(&self, ino: u64) {
        self.retain(|i, _| i != ino);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_recently_used_goes_and_writable_entries_serve_reads() {
        let c = IoCache::new();
        for ino in 0..CAPACITY as u64 {
            c.insert(ino, false, Arc::new(ino), || true);
        }
        assert_eq!(c.get(0, false).as_deref(), Some(&0));
        assert!(
            c.get(0, true).is_none(),
            "read-only entry must not serve a write"
        );
        // Full: the next insert evicts the least recently used (1; 0 was just used).
        c.insert(1000, true, Arc::new(1000), || true);
        assert!(c.get(1, false).is_none());
        assert!(c.get(0, false).is_some());
        // A writable entry replaces the read-only one of the same inode.
        c.insert(0, true, Arc::new(7), || true);
        assert_eq!(c.get(0, false).as_deref(), Some(&7));
        assert_eq!(c.get(0, true).as_deref(), Some(&7));
        c.remove(0);
        assert!(c.get(0, false).is_none());
        c.insert(5000, true, Arc::new(5000), || false);
        assert!(
            c.get(5000, false).is_none(),
            "not cached when no longer wanted"
        );
    }
}
