//! The tier-1 conformance suite run against loopback on a fresh temporary directory.
//!
//! Linux only for now: the macOS loopback is type-checked (`.ci/test` lints the macOS
//! targets) but has not run on a Mac; its runtime tests join the macOS matrix with the
//! platform issue.
#![cfg(target_os = "linux")]

#[macro_use]
mod conformance;

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use conformance::Fixture;
use vmount_core::Vfs;
use vmount_core::loopback::{Loopback, LoopbackOptions};

/// A loopback filesystem over its own temporary directory (mode 0o755), which lives as
/// long as the fixture.
struct LoopFixture {
    lo: Arc<Loopback>,
    vfs: Arc<dyn Vfs>,
    _dir: tempfile::TempDir,
}

impl LoopFixture {
    fn boxed(read_only: bool) -> Box<dyn Fixture> {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod temp dir");
        let lo = Arc::new(
            Loopback::new(LoopbackOptions {
                source: dir.path().to_path_buf(),
                read_only,
            })
            .expect("loopback"),
        );
        let vfs: Arc<dyn Vfs> = lo.clone();
        Box::new(LoopFixture { lo, vfs, _dir: dir })
    }
}

impl Fixture for LoopFixture {
    fn vfs(&self) -> &Arc<dyn Vfs> {
        &self.vfs
    }

    /// Live table entries. They match memfs's live inodes in every case that counts:
    /// each object there was created through the Vfs (one lookup, never forgotten), and
    /// an entry leaves the table as soon as its host object is gone and not open.
    fn inode_count(&self) -> Option<u64> {
        Some(self.lo.inode_count())
    }

    fn read_only_variant(&self) -> Option<Box<dyn Fixture>> {
        Some(LoopFixture::boxed(true))
    }

    fn forget_frees_inodes(&self) -> Option<&'static str> {
        Some(
            "loopback drops a table entry (and its host descriptor) when forget brings \
             its lookup count to zero, so the number is Stale afterwards",
        )
    }
}

conformance_tests!(loopback, || LoopFixture::boxed(false));
