//! Everything a client sent on one connection: record marks and fragments read by the
//! server's record reader, each record then handled in order (see
//! `vmount_backend_nfs::fuzz::stream`). Besides panics and malformed replies, a crash is
//! any single allocation above `NFS_ALLOC_LIMIT`, whatever lengths the marks announce.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmount_fuzz::{Counting, NFS_ALLOC_LIMIT, take_largest};

#[global_allocator]
static ALLOC: Counting = Counting;

fuzz_target!(|data: &[u8]| {
    take_largest();
    vmount_backend_nfs::fuzz::stream(data);
    let largest = take_largest();
    assert!(
        largest <= NFS_ALLOC_LIMIT,
        "one allocation of {largest} bytes (limit {NFS_ALLOC_LIMIT})"
    );
});
