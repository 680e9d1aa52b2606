//! The sharded table of open handles that the loopback filesystems (unix and Windows)
//! share: numbers from 1 up, never reused while the table lives, and an owner check so
//! that a handle presented with the wrong inode is `BadHandle` rather than another
//! file's data.
//!
//! Sharded by handle number so that opens, I/O and releases of different files do not
//! meet on one lock; each shard is a plain map behind a short critical section.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::{Fh, Ino, VfsError, VfsResult};

const SHARDS: usize = 16;

/// What a handle table needs to know of its entries: the inode each was opened on.
pub(crate) trait HandleOwner {
    /// The inode the handle belongs to.
    fn owner(&self) -> Ino;
}

/// One shard: handle numbers to handles.
type Shard<H> = Mutex<HashMap<u64, Arc<H>>>;

/// Open handles by number.
pub(crate) struct HandleTable<H> {
    shards: Box<[Shard<H>]>,
    next: AtomicU64,
}

impl<H: HandleOwner> HandleTable<H> {
    pub(crate) fn new() -> Self {
        HandleTable {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            next: AtomicU64::new(1),
        }
    }

    fn shard(&self, fh: u64) -> &Shard<H> {
        &self.shards[(fh % SHARDS as u64) as usize]
    }

    /// Stores `h` under a new number.
    pub(crate) fn insert(&self, h: H) -> Fh {
        let fh = self.next.fetch_add(1, Ordering::Relaxed);
        self.shard(fh).lock().insert(fh, Arc::new(h));
        Fh(fh)
    }

    /// The handle `fh`, which must belong to `ino`.
    pub(crate) fn get(&self, ino: Ino, fh: Fh) -> VfsResult<Arc<H>> {
        let h = self
            .shard(fh.0)
            .lock()
            .get(&fh.0)
            .cloned()
            .ok_or(VfsError::BadHandle)?;
        if h.owner() != ino {
            return Err(VfsError::BadHandle);
        }
        Ok(h)
    }

    /// Takes handle `fh` out of the table, if it belongs to `ino`.
    pub(crate) fn remove(&self, ino: Ino, fh: Fh) -> VfsResult<Arc<H>> {
        let mut shard = self.shard(fh.0).lock();
        match shard.get(&fh.0) {
            Some(h) if h.owner() == ino => shard.remove(&fh.0).ok_or(VfsError::BadHandle),
            _ => Err(VfsError::BadHandle),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct H(u64);
    impl HandleOwner for H {
        fn owner(&self) -> Ino {
            Ino(self.0)
        }
    }

    #[test]
    fn handles_are_numbered_checked_and_removed_once() {
        let t = HandleTable::new();
        let a = t.insert(H(5));
        let b = t.insert(H(6));
        assert_ne!(a, b);
        assert_eq!(t.get(Ino(5), a).unwrap().0, 5);
        assert!(matches!(t.get(Ino(6), a), Err(VfsError::BadHandle)));
        assert!(matches!(t.remove(Ino(6), a), Err(VfsError::BadHandle)));
        assert_eq!(t.remove(Ino(5), a).unwrap().0, 5);
        assert!(matches!(t.remove(Ino(5), a), Err(VfsError::BadHandle)));
        assert!(matches!(t.get(Ino(5), Fh(999)), Err(VfsError::BadHandle)));
        assert_eq!(t.get(Ino(6), b).unwrap().0, 6);
    }
}
