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
    opts: MemFsOptions,
}

impl MemFixture {
    fn boxed(opts: MemFsOptions) -> Box<dyn Fixture> {
        let mem = Arc::new(MemFs::new(opts.clone()));
        let vfs: Arc<dyn Vfs> = mem.clone();
        Box::new(MemFixture { mem, vfs, opts })
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
            ..self.opts.clone()
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

/// memfs with kernel-held contents (Linux, root): the same suite. Elsewhere the fixture is
/// the heap memfs again, and says so.
fn kernel_fixture() -> Box<dyn Fixture> {
    let opts = MemFsOptions {
        kernel_data: true,
        ..options()
    };
    if !MemFs::new(opts.clone()).kernel_data() {
        #[cfg(unix)]
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        #[cfg(not(unix))]
        let root = false;
        let must = cfg!(target_os = "linux") && std::env::var_os("CI").is_some() && root;
        assert!(
            !must,
            "CI runs as root on Linux: memfs must get its private tmpfs"
        );
        eprintln!("memfs_kernel: kernel-held contents need Linux and root; testing heap memfs");
    }
    MemFixture::boxed(opts)
}

conformance_tests!(memfs_kernel, kernel_fixture);
