//! Signals and the embedding API, alone in this test binary: the tests raise SIGTERM in
//! their own process, which would end any other test's wait.
#![cfg(unix)]

mod common;
#[allow(dead_code)]
#[path = "../examples/hello_vfs.rs"]
mod hello_vfs;

use vmount::{BackendChoice, MountPlan};

/// One mount after another waited on in one process, each wait ended by SIGTERM: each
/// unmounts and returns. The first wait's handlers, left behind with their flag set,
/// used to take the second wait's first signal for a repeat and exit the process with
/// code 1 (which fails this test binary).
#[test]
fn each_wait_gets_its_own_signal_handlers() {
    let test = "each_wait_gets_its_own_signal_handlers";
    if !common::fuse_or_skip(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mp = dir.path().canonicalize().unwrap();
    struct Cleanup<'a>(&'a std::path::Path);
    impl Drop for Cleanup<'_> {
        fn drop(&mut self) {
            common::force_unmount(self.0);
        }
    }
    let _cleanup = Cleanup(&mp);
    for round in 1..=3 {
        let plan = MountPlan::builder(&mp)
            .backend(BackendChoice::Fuse)
            .name("hello")
            .build()
            .expect("plan");
        let mount = vmount::mount(hello_vfs::HelloFs::default(), &plan).unwrap();
        assert_eq!(common::mounted_fstype(&mp).as_deref(), Some("fuse.vmount"));
        let signaller = std::thread::spawn(|| {
            std::thread::sleep(std::time::Duration::from_millis(300));
            // SAFETY: raise(2) has no memory-safety preconditions.
            unsafe { libc::raise(libc::SIGTERM) };
        });
        let t = std::time::Instant::now();
        let result = mount.wait();
        signaller.join().unwrap();
        assert!(result.is_ok(), "round {round}: {result:?}");
        assert!(
            t.elapsed() < std::time::Duration::from_secs(3),
            "round {round}: the wait took {:?} to see SIGTERM",
            t.elapsed()
        );
        assert_eq!(common::mounted_fstype(&mp), None, "round {round}");
    }
}
