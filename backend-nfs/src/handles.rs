//! NFS file handles: 16 bytes, the server instance then the inode number.
//!
//! Inode numbers are stable and never reused while a filesystem lives (the `Vfs`
//! contract), so `(instance, ino)` needs no generation counter: a handle of a removed file
//! asks the filesystem for an inode it no longer has and gets `Stale`. The instance is
//! random per server, so handles a client kept from an earlier run of vmount (whose inode
//! numbers mean something else now) are refused with NFS3ERR_STALE instead of silently
//! naming other files.
//!
//! The table also remembers each directory's parent as handles are handed out, because
//! the `Vfs` has no `..` lookup and NFS clients do ask for `..` (LOOKUP and READDIR).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

use nfsserve::nfs::nfsstat3;
use parking_lot::Mutex;
use vmount_core::Ino;

/// Length of every handle this server issues.
pub const HANDLE_LEN: usize = 16;

/// Issues and checks handles for one server instance.
pub struct Handles {
    instance: u64,
    parents: Mutex<HashMap<u64, u64>>,
}

impl Handles {
    /// A table with a fresh random instance id.
    pub fn new() -> Handles {
        // RandomState is seeded from the OS's randomness; mixing in the time keeps two
        // servers in one process apart even if that seed were reused.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        h.write_u128(now);
        h.write_u32(std::process::id());
        Handles {
            instance: h.finish() | 1,
            parents: Mutex::new(HashMap::new()),
        }
    }

    /// This server's instance id (also the write verifier).
    pub fn instance(&self) -> u64 {
        self.instance
    }

    /// The handle of `ino`.
    pub fn encode(&self, ino: Ino) -> Vec<u8> {
        let mut out = Vec::with_capacity(HANDLE_LEN);
        out.extend_from_slice(&self.instance.to_be_bytes());
        out.extend_from_slice(&ino.0.to_be_bytes());
        out
    }

    /// The inode a handle names: BADHANDLE when it is not one of ours in shape,
    /// STALE when it is from another server instance.
    pub fn decode(&self, fh: &[u8]) -> Result<Ino, nfsstat3> {
        if fh.len() != HANDLE_LEN {
            return Err(nfsstat3::NFS3ERR_BADHANDLE);
        }
        let mut inst = [0u8; 8];
        inst.copy_from_slice(&fh[..8]);
        let mut ino = [0u8; 8];
        ino.copy_from_slice(&fh[8..]);
        if u64::from_be_bytes(inst) != self.instance {
            return Err(nfsstat3::NFS3ERR_STALE);
        }
        match u64::from_be_bytes(ino) {
            0 => Err(nfsstat3::NFS3ERR_BADHANDLE),
            n => Ok(Ino(n)),
        }
    }

    /// Records that directory `dir` lives in `parent`.
    pub fn set_parent(&self, dir: Ino, parent: Ino) {
        if dir != parent && dir != Ino::ROOT {
            self.parents.lock().insert(dir.0, parent.0);
        }
    }

    /// Forgets a removed directory.
    pub fn remove_dir(&self, dir: Ino) {
        self.parents.lock().remove(&dir.0);
    }

    /// The parent of `dir` if known (the root is its own parent).
    pub fn parent(&self, dir: Ino) -> Option<Ino> {
        if dir == Ino::ROOT {
            return Some(Ino::ROOT);
        }
        self.parents.lock().get(&dir.0).map(|p| Ino(*p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_round_trip_and_reject_strangers() {
        let a = Handles::new();
        let b = Handles::new();
        assert_ne!(a.instance(), b.instance());
        let fh = a.encode(Ino(42));
        assert_eq!(fh.len(), HANDLE_LEN);
        assert_eq!(a.decode(&fh).unwrap(), Ino(42));
        assert!(matches!(b.decode(&fh), Err(nfsstat3::NFS3ERR_STALE)));
        assert!(matches!(
            a.decode(&fh[..15]),
            Err(nfsstat3::NFS3ERR_BADHANDLE)
        ));
        assert!(matches!(a.decode(&[]), Err(nfsstat3::NFS3ERR_BADHANDLE)));
        assert!(matches!(
            a.decode(&a.encode(Ino(0))),
            Err(nfsstat3::NFS3ERR_BADHANDLE)
        ));
    }

    #[test]
    fn parents_are_remembered() {
        let h = Handles::new();
        assert_eq!(h.parent(Ino::ROOT), Some(Ino::ROOT));
        assert_eq!(h.parent(Ino(5)), None);
        h.set_parent(Ino(5), Ino(3));
        assert_eq!(h.parent(Ino(5)), Some(Ino(3)));
        h.remove_dir(Ino(5));
        assert_eq!(h.parent(Ino(5)), None);
    }
}
