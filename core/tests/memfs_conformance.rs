//! The tier-1 conformance suite run against memfs.

#[macro_use]
mod conformance;

use std::sync::Arc;

use conformance::Fixture;
use vmount_core::Vfs;
use vmount_core::memfs::{MemFs, MemFsOptions};

/// A fresh memfs with a root-owned 0o755 root and no limits.
struct MemFixture {
    mem: Arc<MemFs>,
    vfs: Arc<dyn Vfs>,
}

impl MemFixture {
    fn boxed(opts: MemFsOptions) -> Box<dyn Fixture> {
        let mem = Arc::new(MemFs::new(opts));
        let vfs: Arc<dyn Vfs> = mem.clone();
        Box::new(MemFixture { mem, vfs })
    }
}

impl Fixture for MemFixture {
    fn vfs(&self) -> &Arc<dyn Vfs> {
        &self.vfs
    }

    fn inode_count(&self) -> Option<u64> {
        Some(self.mem.inode_count())
    }

    fn read_only_variant(&self) -> Option<Box<dyn Fixture>> {
        Some(MemFixture::boxed(MemFsOptions {
            read_only: true,
            ..options()
        }))
    }
}

fn options() -> MemFsOptions {
    MemFsOptions {
        root_uid: 0,
        root_gid: 0,
        root_mode: 0o755,
        ..MemFsOptions::default()
    }
}

conformance_tests!(memfs, || MemFixture::boxed(options()));
