//! One RPC record body, as a connection hands it to the server's record handler, against
//! a fresh memfs-backed server state (see `vmount_backend_nfs::fuzz`). Crashes are panics
//! (including arithmetic overflow: fuzz builds keep debug assertions), malformed replies,
//! and any single allocation above `NFS_ALLOC_LIMIT`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmount_fuzz::{Counting, NFS_ALLOC_LIMIT, take_largest};

#[global_allocator]
static ALLOC: Counting = Counting;

fuzz_target!(|data: &[u8]| {
    take_largest();
    vmount_backend_nfs::fuzz::record(data);
    let largest = take_largest();
    assert!(
        largest <= NFS_ALLOC_LIMIT,
        "one allocation of {largest} bytes (limit {NFS_ALLOC_LIMIT})"
    );
});
