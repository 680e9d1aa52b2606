//! Tier-1 conformance suite: every [`Vfs`] operation called directly, with no mount.
//!
//! Each case is a plain `pub fn case(fx: &dyn Fixture)` that gets a fresh, empty
//! filesystem; [`conformance_tests!`] turns the list of cases into one `#[test]` per case
//! for a given filesystem, so that a failure names the case and the filesystem.
//!
//! # Decisions
//! - **POSIX/Linux is the reference.** Where the trait's docs are silent, a case expects
//!   what ext4 or tmpfs does on Linux (errno for errno), because that is what FUSE and
//!   NFS clients expect to see.
//! - **Capabilities gate cases, nothing else.** A case is skipped (with a printed reason)
//!   only when [`Vfs::capabilities`] says the feature is absent; an `Unimplemented` from a
//!   filesystem that claims the feature is a failure.
//! - **Fixtures, not filesystems.** A [`Fixture`] owns whatever must outlive the test (a
//!   temp dir for loopback) and hands out an `Arc<dyn Vfs>` that threads can share.
//! - **Adding a case**: write the function in the matching submodule and add its name to
//!   the list in [`conformance_tests!`]. A case missing from that list is dead code and
//!   fails `clippy -D warnings`.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use vmount_core::*;

/// `expect_err!(expr, Pattern)`: the call fails with a `VfsError` matching `Pattern`
/// (alternatives with `|` allowed); anything else panics with the expression and result.
macro_rules! expect_err {
    ($e:expr, $pat:pat) => {
        match $e {
            Err($pat) => {}
            other => panic!(
                "{}:{}: `{}` should fail with {}, got {:?}",
                file!(),
                line!(),
                stringify!($e),
                stringify!($pat),
                other
            ),
        }
    };
}

/// `require!(fx, capability)`: return early (skipping the case, with a message) when the
/// filesystem reports the boolean capability as absent.
macro_rules! require {
    ($fx:expr, $cap:ident) => {
        if !$fx.vfs().capabilities().$cap {
            println!(
                "skipped: the filesystem's capabilities() report `{}` = false",
                stringify!($cap)
            );
            return;
        }
    };
}

/// `ok!(expr)`: unwraps a `VfsResult`, panicking with the expression on error.
macro_rules! ok {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => panic!(
                "{}:{}: `{}` failed: {e:?}",
                file!(),
                line!(),
                stringify!($e)
            ),
        }
    };
}

mod basic;
mod concurrency;
mod dirs;
mod io;
mod perms;
mod rename;
mod xattr;

pub use basic::*;
pub use concurrency::*;
pub use dirs::*;
pub use io::*;
pub use perms::*;
pub use rename::*;
pub use xattr::*;

/// A filesystem under test plus whatever keeps it alive.
///
/// Every case gets a fresh fixture whose root directory is empty, owned by root (0:0),
/// searchable by everyone (mode 0o755 or wider) and writable.
pub trait Fixture {
    /// The filesystem, shareable with threads.
    fn vfs(&self) -> &Arc<dyn Vfs>;

    /// Number of live inodes, root included, when the filesystem can report it (memfs);
    /// `None` skips the "freed after release" checks.
    fn inode_count(&self) -> Option<u64> {
        None
    }

    /// A fresh fixture of the same filesystem mounted read-only, when it has that mode.
    fn read_only_variant(&self) -> Option<Box<dyn Fixture>> {
        None
    }

    /// Why an inode whose lookup count `forget` brought to zero is no longer usable by
    /// number on this filesystem (loopback frees the entry and its host descriptor, as
    /// FUSE intends), or `None` when forgotten inodes keep being served (memfs). Cases
    /// that use an inode after forgetting it are skipped with this reason.
    fn forget_frees_inodes(&self) -> Option<&'static str> {
        None
    }
}

/// Expands to a module `$prefix` holding one `#[test]` per conformance case, each
/// calling `$factory()` (which returns a `Box<dyn Fixture>`) for a fresh filesystem.
///
/// The calling test crate must declare `#[macro_use] mod conformance;` at its root.
macro_rules! conformance_tests {
    ($prefix:ident, $factory:expr) => {
        conformance_tests!(@cases $prefix, $factory, [
            // basic.rs
            root_is_an_empty_directory,
            lookup_returns_created_attributes,
            unknown_inode_is_stale,
            setattr_mode,
            setattr_owner_as_root,
            setattr_explicit_and_now_times,
            truncate_shrinks_and_extends,
            symlink_and_readlink,
            mknod_special_files,
            mknod_devices_need_root,
            mkdir_and_rmdir,
            unlink_semantics,
            hard_links_count_and_share_data,
            directory_nlink_is_two_plus_subdirs,
            size_and_blocks_after_writes,
            sparse_write_at_large_offset,
            invalid_names_are_rejected,
            name_length_limit,
            non_utf8_names_round_trip,
            case_sensitivity_matches_capabilities,
            umask_from_ctx_is_applied,
            new_objects_are_owned_by_the_caller,
            setgid_directory_is_inherited,
            namespace_changes_update_parent_times,
            write_updates_mtime_and_ctime,
            forget_keeps_linked_inodes,
            inode_numbers_are_never_reused,
            fsync_flush_and_fsyncdir_succeed,
            statfs_is_sane,
            read_only_filesystem_rejects_changes,
            // rename.rs
            rename_file_within_and_across_dirs,
            rename_file_over_file_keeps_open_target,
            rename_file_over_dir_is_isdir,
            rename_dir_over_file_is_notdir,
            rename_dir_over_empty_dir,
            rename_dir_over_non_empty_dir_is_notempty,
            rename_into_own_subtree_is_invalid,
            rename_between_links_of_one_inode_is_a_noop,
            rename_noreplace,
            rename_exchange_file_and_dir_across_dirs,
            rename_exchange_needs_both_names,
            rename_dir_across_parents_updates_nlink,
            // io.rs
            create_sets_attributes,
            create_exclusive_and_reopen,
            open_truncate_and_open_dir_for_write,
            read_write_at_offsets,
            append_handle_writes_at_eof,
            handle_modes_are_enforced,
            unknown_handle_is_bad_handle,
            stateless_io_without_handle,
            unlink_while_open,
            fallocate_extends_and_keeps_size,
            fallocate_punch_hole,
            fallocate_zero_range,
            copy_file_range_between_files,
            copy_file_range_within_one_file,
            lseek_data_and_hole,
            huge_offsets_fail_cleanly,
            // dirs.rs
            readdir_lists_every_entry_once_with_attrs,
            readdir_resumes_from_every_cookie,
            readdir_pages_of_seven_through_1000_entries,
            readdir_cookies_survive_interleaved_changes,
            readdir_cookies_survive_concurrent_changes,
            readdir_on_a_file_is_notdir,
            // xattr.rs
            xattr_set_get_list_remove,
            xattr_create_and_replace_flags,
            xattr_binary_and_empty_values,
            // perms.rs
            access_checks_owner_group_other,
            access_as_root,
            cannot_create_without_write_permission,
            cannot_lookup_without_search_permission,
            cannot_open_another_users_private_file,
            chmod_by_non_owner_is_not_permitted,
            chmod_clears_setgid_when_not_in_group,
            chown_by_non_root_is_not_permitted,
            chown_clears_setuid,
            sticky_directory_protects_other_users_files,
            non_root_write_clears_setuid,
            utimens_permissions,
            truncate_needs_write_permission,
            // concurrency.rs
            concurrent_writes_to_disjoint_ranges,
            concurrent_appends_do_not_interleave,
            concurrent_create_unlink_while_listing,
            concurrent_renames_between_two_dirs,
            concurrent_cross_renames_never_make_a_cycle,
        ]);
    };
    (@cases $prefix:ident, $factory:expr, [$($case:ident),* $(,)?]) => {
        mod $prefix {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $case() {
                    let make = $factory;
                    let fixture: Box<dyn $crate::conformance::Fixture> = make();
                    $crate::conformance::$case(&*fixture);
                }
            )*
        }
    };
}

// ---------------------------------------------------------------------------------------
// Helpers shared by the cases. Unless a name says otherwise they act as root and panic
// (failing the case) on any error.

/// Credentials of an unprivileged user whose primary group equals its uid.
pub fn user(uid: u32) -> Ctx {
    Ctx::with_groups(uid, uid, &[])
}

/// Shorthand for an `&OsStr` from a `&str`.
pub fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// Waits long enough for a timestamp taken afterwards to be strictly later, even on a
/// filesystem stamping with the kernel's coarse (jiffy) clock.
pub fn tick() {
    std::thread::sleep(Duration::from_millis(25));
}

/// Creates regular file `name` in `parent` as `ctx` with `mode`, and releases the handle.
pub fn touch_as(fs: &dyn Vfs, ctx: &Ctx, parent: Ino, name: &str, mode: u32) -> Attr {
    let flags = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::EXCLUSIVE;
    let (attr, opened) = ok!(fs.create(ctx, parent, os(name), mode, flags));
    ok!(fs.release(ctx, attr.ino, opened.fh));
    attr
}

/// Creates an empty 0o644 file as root.
pub fn touch(fs: &dyn Vfs, parent: Ino, name: &str) -> Attr {
    touch_as(fs, &Ctx::root(), parent, name, 0o644)
}

/// Creates a 0o644 file as root holding `data`.
pub fn file_with(fs: &dyn Vfs, parent: Ino, name: &str, data: &[u8]) -> Ino {
    let ino = touch(fs, parent, name).ino;
    write_at(fs, ino, None, 0, data);
    ino
}

/// Creates directory `name` as root with `mode`.
pub fn mkdir(fs: &dyn Vfs, parent: Ino, name: &str, mode: u32) -> Ino {
    ok!(fs.mkdir(&Ctx::root(), parent, os(name), mode)).ino
}

/// Sets owner and group, then mode, as root (two calls, as chown(2) then chmod(2): a
/// chown may clear setuid bits).
pub fn chown_mode(fs: &dyn Vfs, ino: Ino, uid: u32, gid: u32, mode: u32) {
    let set = SetAttr {
        uid: Some(uid),
        gid: Some(gid),
        ..SetAttr::default()
    };
    ok!(fs.setattr(&Ctx::root(), ino, &set, None));
    let set = SetAttr {
        mode: Some(mode),
        ..SetAttr::default()
    };
    let attr = ok!(fs.setattr(&Ctx::root(), ino, &set, None));
    assert_eq!(
        (attr.uid, attr.gid, u32::from(attr.perm)),
        (uid, gid, mode & 0o7777)
    );
}

/// Writes all of `data` at `offset` as root.
pub fn write_at(fs: &dyn Vfs, ino: Ino, fh: Option<Fh>, offset: u64, data: &[u8]) {
    let n = ok!(fs.write(&Ctx::root(), ino, fh, offset, data));
    assert_eq!(n as usize, data.len(), "short write at {offset}");
}

/// Reads up to `len` bytes at `offset` as root.
pub fn read_at(fs: &dyn Vfs, ino: Ino, fh: Option<Fh>, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0xEE; len];
    let n = ok!(fs.read(&Ctx::root(), ino, fh, offset, &mut buf));
    assert!(n <= len, "read returned {n} for a {len}-byte buffer");
    buf.truncate(n);
    buf
}

/// The whole contents of a file, read statelessly in 128 KiB pieces until EOF.
pub fn contents(fs: &dyn Vfs, ino: Ino) -> Vec<u8> {
    let size = getattr(fs, ino).size;
    let mut out = Vec::new();
    loop {
        let piece = read_at(fs, ino, None, out.len() as u64, 128 * 1024);
        if piece.is_empty() {
            break;
        }
        out.extend_from_slice(&piece);
    }
    assert_eq!(
        out.len() as u64,
        size,
        "bytes read until EOF differ from the size"
    );
    out
}

/// `getattr` as root, without a handle.
pub fn getattr(fs: &dyn Vfs, ino: Ino) -> Attr {
    ok!(fs.getattr(&Ctx::root(), ino, None))
}

/// `lookup` as root.
pub fn lookup(fs: &dyn Vfs, parent: Ino, name: &str) -> Attr {
    ok!(fs.lookup(&Ctx::root(), parent, os(name)))
}

/// True when `parent/name` exists (as seen by root).
pub fn exists(fs: &dyn Vfs, parent: Ino, name: &str) -> bool {
    match fs.lookup(&Ctx::root(), parent, os(name)) {
        Ok(_) => true,
        Err(VfsError::NotFound) => false,
        Err(e) => panic!("lookup of {name:?} failed: {e:?}"),
    }
}

/// The full listing of a directory in one unlimited `readdir` call, with attributes.
pub fn list(fs: &dyn Vfs, dir: Ino) -> Vec<OwnedDirEntry> {
    let mut sink = VecSink {
        plus: true,
        ..VecSink::default()
    };
    ok!(fs.readdir(&Ctx::root(), dir, None, 0, &mut sink));
    sink.entries
}

/// The names of a directory's entries mapped to their inodes, checking that no name
/// comes twice and that `.` and `..` never appear.
pub fn names(fs: &dyn Vfs, dir: Ino) -> BTreeMap<OsString, Ino> {
    let mut map = BTreeMap::new();
    for e in list(fs, dir) {
        assert!(
            e.name != "." && e.name != "..",
            "readdir returned {:?}",
            e.name
        );
        assert!(
            map.insert(e.name.clone(), e.ino).is_none(),
            "{:?} listed twice",
            e.name
        );
    }
    map
}

/// The listing of a directory as sorted names, for readable assertions.
pub fn name_list(fs: &dyn Vfs, dir: Ino) -> Vec<String> {
    names(fs, dir)
        .into_keys()
        .map(|n| n.to_string_lossy().into_owned())
        .collect()
}

/// Asserts that two attribute sets describe the same unchanged inode (atime aside, which
/// a read may legitimately move).
pub fn assert_same_inode(a: &Attr, b: &Attr) {
    let key = |x: &Attr| {
        (
            x.ino, x.kind, x.perm, x.nlink, x.uid, x.gid, x.size, x.mtime, x.ctime,
        )
    };
    assert_eq!(key(a), key(b), "\n{a:?}\n{b:?}");
}

/// Asserts that `t` is "now" within a tolerance for coarse clocks and slow machines.
pub fn assert_recent(t: SystemTime, what: &str) {
    let now = SystemTime::now();
    let lo = now - Duration::from_secs(5);
    let hi = now + Duration::from_secs(1);
    assert!(
        t >= lo && t <= hi,
        "{what} = {t:?} is not close to now ({now:?})"
    );
}

/// Joins every thread, failing the case if they do not all finish within `limit` (a
/// deadlock) and re-raising the first panic.
pub fn join_all<T>(handles: Vec<JoinHandle<T>>, limit: Duration) -> Vec<T> {
    let deadline = Instant::now() + limit;
    while !handles.iter().all(|h| h.is_finished()) {
        assert!(
            Instant::now() < deadline,
            "threads still running after {limit:?}: deadlock?"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    handles
        .into_iter()
        .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
        .collect()
}

/// A deterministic byte pattern, distinct per `seed`, for verifying data byte-exactly.
pub fn pattern(seed: u64, offset: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| {
            let x =
                (offset + i).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed.wrapping_mul(0xD6E8_FEB8);
            (x >> 29) as u8
        })
        .collect()
}
