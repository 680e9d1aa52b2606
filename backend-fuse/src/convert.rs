//! Free conversion functions between vmount's core types and fuser's.
//!
//! The orphan rule forbids `From` impls between two foreign crates' types, and free
//! functions keep every translation in one place where the unit tests can walk it.
//! Raw numbers (`open(2)` flags, `renameat2(2)` flags, `fallocate(2)` modes, `lseek(2)`
//! whence) are the Linux values the FUSE protocol carries; unknown bits are refused with
//! the errno the system call itself would give rather than silently dropped.

use std::time::Duration;

use fuser::{Errno, FileAttr, INodeNo};
use vmount_core::{
    AccessMask, Attr, FallocateFlags, FileType, OpenFlags, RenameFlags, StatFs, VfsError, Whence,
    XattrFlags,
};

/// The errno FUSE returns to the caller for `e`.
///
/// One exhaustive `match`: adding a `VfsError` variant breaks this build until it is
/// given its number here (and in the test table below).
pub(crate) fn errno_of(e: &VfsError) -> i32 {
    match e {
        VfsError::NotFound => libc::ENOENT,
        VfsError::Exists => libc::EEXIST,
        VfsError::NotDir => libc::ENOTDIR,
        VfsError::IsDir => libc::EISDIR,
        VfsError::NotEmpty => libc::ENOTEMPTY,
        VfsError::PermissionDenied => libc::EACCES,
        VfsError::NotPermitted => libc::EPERM,
        VfsError::ReadOnly => libc::EROFS,
        VfsError::InvalidArgument => libc::EINVAL,
        VfsError::NameTooLong => libc::ENAMETOOLONG,
        VfsError::NoSpace => libc::ENOSPC,
        VfsError::CrossDevice => libc::EXDEV,
        VfsError::Stale => libc::ESTALE,
        VfsError::BadHandle => libc::EBADF,
        VfsError::FileTooLarge => libc::EFBIG,
        VfsError::TooManyLinks => libc::EMLINK,
        VfsError::NoAttribute => ENOATTR,
        VfsError::Range => libc::ERANGE,
        VfsError::Busy => libc::EBUSY,
        VfsError::Loop => libc::ELOOP,
        VfsError::NoDataAtOffset => libc::ENXIO,
        VfsError::Unimplemented => libc::ENOSYS,
        VfsError::NotSupported => libc::EOPNOTSUPP,
        // A host error keeps its own number; one without a (positive) number is EIO.
        VfsError::Io(io) => io.raw_os_error().filter(|&n| n > 0).unwrap_or(libc::EIO),
    }
}

/// [`errno_of`] as fuser's reply type.
pub(crate) fn errno(e: &VfsError) -> Errno {
    Errno::from_i32(errno_of(e))
}

/// "No such attribute": `ENODATA` on Linux, `ENOATTR` on macOS and the BSDs.
#[cfg(any(target_os = "linux", target_os = "android"))]
const ENOATTR: i32 = libc::ENODATA;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const ENOATTR: i32 = libc::ENOATTR;

/// vmount's file kind as fuser's.
pub(crate) fn file_type(kind: FileType) -> fuser::FileType {
    match kind {
        FileType::RegularFile => fuser::FileType::RegularFile,
        FileType::Directory => fuser::FileType::Directory,
        FileType::Symlink => fuser::FileType::Symlink,
        FileType::Fifo => fuser::FileType::NamedPipe,
        FileType::Socket => fuser::FileType::Socket,
        FileType::CharDevice => fuser::FileType::CharDevice,
        FileType::BlockDevice => fuser::FileType::BlockDevice,
    }
}

/// The attributes FUSE sends for `a`.
///
/// `rdev` travels as 32 bits in FUSE (the kernel's `new_encode_dev`, which equals glibc's
/// 64-bit `makedev` for every major < 4096 and minor < 2^20); a device number outside
/// that range cannot be expressed and is sent as 0 rather than truncated into a
/// different device.
pub(crate) fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino.0),
        size: a.size,
        blocks: a.blocks,
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.crtime,
        kind: file_type(a.kind),
        perm: a.perm & 0o7777,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: u32::try_from(a.rdev).unwrap_or(0),
        blksize: if a.blksize == 0 { 4096 } else { a.blksize },
        flags: 0,
    }
}

/// Translates `open(2)` flags as FUSE forwards them (`O_CREAT`, `O_EXCL` of `create` too).
///
/// An impossible access mode (`O_ACCMODE` = 3) is read as read-only, which is what Linux
/// does for it as well.
pub(crate) fn open_flags(flags: i32) -> OpenFlags {
    let mut out = match flags & libc::O_ACCMODE {
        libc::O_WRONLY => OpenFlags::WRITE,
        libc::O_RDWR => OpenFlags::READ | OpenFlags::WRITE,
        _ => OpenFlags::READ,
    };
    let map = [
        (libc::O_APPEND, OpenFlags::APPEND),
        (libc::O_TRUNC, OpenFlags::TRUNCATE),
        (libc::O_EXCL, OpenFlags::EXCLUSIVE),
        // O_SYNC is O_DSYNC plus a bit on Linux; either asks for durable writes.
        (libc::O_SYNC | libc::O_DSYNC, OpenFlags::SYNC),
        (libc::O_NOFOLLOW, OpenFlags::NOFOLLOW),
        #[cfg(any(target_os = "linux", target_os = "android"))]
        (libc::O_DIRECT, OpenFlags::DIRECT),
        #[cfg(any(target_os = "linux", target_os = "android"))]
        (libc::O_NOATIME, OpenFlags::NOATIME),
    ];
    for (bits, flag) in map {
        if flags & bits != 0 {
            out |= flag;
        }
    }
    out
}

/// `renameat2(2)` flag values (Linux numbering, as FUSE_RENAME2 carries them).
pub(crate) const RENAME_NOREPLACE: u32 = 1 << 0;
/// See [`RENAME_NOREPLACE`].
pub(crate) const RENAME_EXCHANGE: u32 = 1 << 1;

/// Translates `renameat2(2)` flags; anything but NOREPLACE and EXCHANGE (e.g.
/// RENAME_WHITEOUT, which only overlay filesystems implement) is `EINVAL`, as is asking
/// for both at once.
pub(crate) fn rename_flags(bits: u32) -> Result<RenameFlags, Errno> {
    if bits & !(RENAME_NOREPLACE | RENAME_EXCHANGE) != 0
        || bits == RENAME_NOREPLACE | RENAME_EXCHANGE
    {
        return Err(Errno::EINVAL);
    }
    let mut out = RenameFlags::empty();
    if bits & RENAME_NOREPLACE != 0 {
        out |= RenameFlags::NOREPLACE;
    }
    if bits & RENAME_EXCHANGE != 0 {
        out |= RenameFlags::EXCHANGE;
    }
    Ok(out)
}

/// `fallocate(2)` mode bits (Linux numbering, as FUSE_FALLOCATE carries them).
pub(crate) const FALLOC_FL_KEEP_SIZE: i32 = 0x01;
/// See [`FALLOC_FL_KEEP_SIZE`].
pub(crate) const FALLOC_FL_PUNCH_HOLE: i32 = 0x02;
/// See [`FALLOC_FL_KEEP_SIZE`].
pub(crate) const FALLOC_FL_ZERO_RANGE: i32 = 0x10;

/// Translates an `fallocate(2)` mode. Modes vmount has no flag for (COLLAPSE_RANGE,
/// INSERT_RANGE, UNSHARE_RANGE, ...) are `EOPNOTSUPP`, the errno a filesystem without
/// them gives.
pub(crate) fn fallocate_flags(mode: i32) -> Result<FallocateFlags, Errno> {
    if mode & !(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE) != 0 {
        return Err(Errno::from_i32(libc::EOPNOTSUPP));
    }
    let mut out = FallocateFlags::empty();
    if mode & FALLOC_FL_KEEP_SIZE != 0 {
        out |= FallocateFlags::KEEP_SIZE;
    }
    if mode & FALLOC_FL_PUNCH_HOLE != 0 {
        out |= FallocateFlags::PUNCH_HOLE;
    }
    if mode & FALLOC_FL_ZERO_RANGE != 0 {
        out |= FallocateFlags::ZERO_RANGE;
    }
    Ok(out)
}

/// Translates an `lseek(2)` whence; the kernel answers SEEK_SET/CUR/END itself and only
/// forwards SEEK_DATA and SEEK_HOLE, so anything else is `EINVAL`.
pub(crate) fn whence(w: i32) -> Result<Whence, Errno> {
    match w {
        libc::SEEK_DATA => Ok(Whence::Data),
        libc::SEEK_HOLE => Ok(Whence::Hole),
        _ => Err(Errno::EINVAL),
    }
}

/// `setxattr(2)` flags (values shared by Linux and macOS).
pub(crate) const XATTR_CREATE: i32 = 1;
/// See [`XATTR_CREATE`].
pub(crate) const XATTR_REPLACE: i32 = 2;

/// Translates `setxattr(2)` flags; unknown bits are `EINVAL` like the system call.
pub(crate) fn xattr_flags(flags: i32) -> Result<XattrFlags, Errno> {
    if flags & !(XATTR_CREATE | XATTR_REPLACE) != 0 {
        return Err(Errno::EINVAL);
    }
    let mut out = XattrFlags::empty();
    if flags & XATTR_CREATE != 0 {
        out |= XattrFlags::CREATE;
    }
    if flags & XATTR_REPLACE != 0 {
        out |= XattrFlags::REPLACE;
    }
    Ok(out)
}

/// Translates an `access(2)` mask (F_OK = 0 is the empty mask).
pub(crate) fn access_mask(mask: i32) -> AccessMask {
    let mut out = AccessMask::empty();
    if mask & libc::R_OK != 0 {
        out |= AccessMask::READ;
    }
    if mask & libc::W_OK != 0 {
        out |= AccessMask::WRITE;
    }
    if mask & libc::X_OK != 0 {
        out |= AccessMask::EXEC;
    }
    out
}

/// Applies the caller's umask to a requested mode and keeps only the permission bits
/// (the kernel already masked it unless the filesystem asked for FUSE_DONT_MASK, which
/// vmount never does, so this is idempotent and safe).
pub(crate) fn masked_mode(mode: u32, umask: u32) -> u32 {
    mode & !umask & 0o7777
}

/// Where a FUSE directory offset says to continue a listing.
///
/// Offsets 1 and 2 are the synthesized `.` and `..`; the filesystem's resume cookie `c`
/// (non-zero, below 2^63) becomes offset `c + 2`. Offset 0 is the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DirPos {
    /// Emit `.`, then `..`, then the filesystem's entries from the start.
    Start,
    /// `.` was returned; emit `..`, then the entries from the start.
    AfterDot,
    /// Resume the filesystem's listing after this cookie (0 = from its first entry).
    After(u64),
}

/// The offset the kernel hands back after `.`.
pub(crate) const OFFSET_AFTER_DOT: u64 = 1;
/// The offset the kernel hands back after `..`.
pub(crate) const OFFSET_AFTER_DOTDOT: u64 = 2;

/// Decodes a FUSE readdir offset.
pub(crate) fn dir_pos(offset: u64) -> DirPos {
    match offset {
        0 => DirPos::Start,
        OFFSET_AFTER_DOT => DirPos::AfterDot,
        n => DirPos::After(n - OFFSET_AFTER_DOTDOT),
    }
}

/// Encodes a filesystem cookie as the FUSE offset of its entry. `None` for a cookie the
/// trait forbids (0, which would restart the listing forever, or one that overflows).
pub(crate) fn cookie_offset(cookie: u64) -> Option<u64> {
    if cookie == 0 {
        return None;
    }
    cookie.checked_add(OFFSET_AFTER_DOTDOT)
}

/// The longest name the kernel accepts in a directory entry (`FUSE_NAME_MAX`); longer
/// ones make it fail the whole listing with EIO.
pub(crate) const FUSE_NAME_MAX: usize = 1024;

/// The single TTL of replies that carry one for both the entry and its attributes.
pub(crate) fn combined_ttl(attr: Duration, entry: Duration) -> Duration {
    attr.min(entry)
}

/// Filesystem numbers in the order `ReplyStatfs::statfs` takes them.
pub(crate) fn statfs_args(s: &StatFs) -> (u64, u64, u64, u64, u64, u32, u32, u32) {
    let bsize = if s.bsize == 0 { 4096 } else { s.bsize };
    let frsize = if s.frsize == 0 { bsize } else { s.frsize };
    (
        s.blocks, s.bfree, s.bavail, s.files, s.ffree, bsize, s.namelen, frsize,
    )
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::time::SystemTime;

    use vmount_core::Ino;

    use super::*;

    /// Every variant with the errno it must give. `exhaustive` below fails to compile
    /// when a variant is added, pointing here.
    #[test]
    fn errno_table_covers_every_variant() {
        let table: Vec<(VfsError, i32)> = vec![
            (VfsError::NotFound, libc::ENOENT),
            (VfsError::Exists, libc::EEXIST),
            (VfsError::NotDir, libc::ENOTDIR),
            (VfsError::IsDir, libc::EISDIR),
            (VfsError::NotEmpty, libc::ENOTEMPTY),
            (VfsError::PermissionDenied, libc::EACCES),
            (VfsError::NotPermitted, libc::EPERM),
            (VfsError::ReadOnly, libc::EROFS),
            (VfsError::InvalidArgument, libc::EINVAL),
            (VfsError::NameTooLong, libc::ENAMETOOLONG),
            (VfsError::NoSpace, libc::ENOSPC),
            (VfsError::CrossDevice, libc::EXDEV),
            (VfsError::Stale, libc::ESTALE),
            (VfsError::BadHandle, libc::EBADF),
            (VfsError::FileTooLarge, libc::EFBIG),
            (VfsError::TooManyLinks, libc::EMLINK),
            #[cfg(target_os = "linux")]
            (VfsError::NoAttribute, libc::ENODATA),
            #[cfg(not(target_os = "linux"))]
            (VfsError::NoAttribute, libc::ENOATTR),
            (VfsError::Range, libc::ERANGE),
            (VfsError::Busy, libc::EBUSY),
            (VfsError::Loop, libc::ELOOP),
            (VfsError::NoDataAtOffset, libc::ENXIO),
            (VfsError::Unimplemented, libc::ENOSYS),
            (VfsError::NotSupported, libc::EOPNOTSUPP),
            (
                VfsError::Io(io::Error::from_raw_os_error(libc::EMFILE)),
                libc::EMFILE,
            ),
            (VfsError::Io(io::Error::other("no os code")), libc::EIO),
        ];
        let mut seen = std::collections::HashSet::new();
        for (e, want) in &table {
            assert_eq!(errno_of(e), *want, "{e:?}");
            assert_eq!(i32::from(errno(e)), *want, "{e:?}");
            assert_eq!(e.errno(), *want, "core and adapter disagree on {e:?}");
            seen.insert(exhaustive(e));
        }
        assert_eq!(seen.len(), 24, "the table must name every VfsError variant");
    }

    /// Numbers each variant; a new variant makes this `match` non-exhaustive.
    fn exhaustive(e: &VfsError) -> u8 {
        match e {
            VfsError::NotFound => 0,
            VfsError::Exists => 1,
            VfsError::NotDir => 2,
            VfsError::IsDir => 3,
            VfsError::NotEmpty => 4,
            VfsError::PermissionDenied => 5,
            VfsError::NotPermitted => 6,
            VfsError::ReadOnly => 7,
            VfsError::InvalidArgument => 8,
            VfsError::NameTooLong => 9,
            VfsError::NoSpace => 10,
            VfsError::CrossDevice => 11,
            VfsError::Stale => 12,
            VfsError::BadHandle => 13,
            VfsError::FileTooLarge => 14,
            VfsError::TooManyLinks => 15,
            VfsError::NoAttribute => 16,
            VfsError::Range => 17,
            VfsError::Busy => 18,
            VfsError::Loop => 19,
            VfsError::NoDataAtOffset => 20,
            VfsError::Unimplemented => 21,
            VfsError::NotSupported => 22,
            VfsError::Io(_) => 23,
        }
    }

    #[test]
    fn open_flags_translate() {
        assert_eq!(open_flags(libc::O_RDONLY), OpenFlags::READ);
        assert_eq!(open_flags(libc::O_WRONLY), OpenFlags::WRITE);
        assert_eq!(open_flags(libc::O_RDWR), OpenFlags::READ | OpenFlags::WRITE);
        assert_eq!(open_flags(libc::O_ACCMODE), OpenFlags::READ);
        assert_eq!(
            open_flags(libc::O_WRONLY | libc::O_APPEND | libc::O_TRUNC),
            OpenFlags::WRITE | OpenFlags::APPEND | OpenFlags::TRUNCATE
        );
        assert_eq!(
            open_flags(libc::O_RDWR | libc::O_CREAT | libc::O_EXCL),
            OpenFlags::READ | OpenFlags::WRITE | OpenFlags::EXCLUSIVE
        );
        assert_eq!(open_flags(libc::O_SYNC), OpenFlags::READ | OpenFlags::SYNC);
        assert_eq!(open_flags(libc::O_DSYNC), OpenFlags::READ | OpenFlags::SYNC);
        assert_eq!(
            open_flags(libc::O_NOFOLLOW),
            OpenFlags::READ | OpenFlags::NOFOLLOW
        );
        // Flags with no vmount meaning are ignored, not refused.
        assert_eq!(
            open_flags(libc::O_CLOEXEC | libc::O_NONBLOCK),
            OpenFlags::READ
        );
        #[cfg(target_os = "linux")]
        {
            assert_eq!(
                open_flags(libc::O_DIRECT),
                OpenFlags::READ | OpenFlags::DIRECT
            );
            assert_eq!(
                open_flags(libc::O_NOATIME),
                OpenFlags::READ | OpenFlags::NOATIME
            );
        }
    }

    #[test]
    fn rename_flags_translate() {
        #[cfg(target_os = "linux")]
        {
            assert_eq!(RENAME_NOREPLACE, libc::RENAME_NOREPLACE);
            assert_eq!(RENAME_EXCHANGE, libc::RENAME_EXCHANGE);
        }
        assert_eq!(rename_flags(0), Ok(RenameFlags::empty()));
        assert_eq!(rename_flags(RENAME_NOREPLACE), Ok(RenameFlags::NOREPLACE));
        assert_eq!(rename_flags(RENAME_EXCHANGE), Ok(RenameFlags::EXCHANGE));
        assert_eq!(
            rename_flags(RENAME_NOREPLACE | RENAME_EXCHANGE),
            Err(Errno::EINVAL)
        );
        assert_eq!(rename_flags(1 << 2), Err(Errno::EINVAL)); // RENAME_WHITEOUT
        assert_eq!(rename_flags(u32::MAX), Err(Errno::EINVAL));
    }

    #[test]
    fn fallocate_flags_translate() {
        #[cfg(target_os = "linux")]
        {
            assert_eq!(FALLOC_FL_KEEP_SIZE, libc::FALLOC_FL_KEEP_SIZE);
            assert_eq!(FALLOC_FL_PUNCH_HOLE, libc::FALLOC_FL_PUNCH_HOLE);
            assert_eq!(FALLOC_FL_ZERO_RANGE, libc::FALLOC_FL_ZERO_RANGE);
        }
        assert_eq!(fallocate_flags(0), Ok(FallocateFlags::empty()));
        assert_eq!(
            fallocate_flags(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE),
            Ok(FallocateFlags::KEEP_SIZE | FallocateFlags::PUNCH_HOLE)
        );
        assert_eq!(
            fallocate_flags(FALLOC_FL_ZERO_RANGE),
            Ok(FallocateFlags::ZERO_RANGE)
        );
        let eopnotsupp = Errno::from_i32(libc::EOPNOTSUPP);
        for unknown in [0x04, 0x08, 0x20, 0x40, i32::MIN] {
            assert_eq!(fallocate_flags(unknown), Err(eopnotsupp), "{unknown:#x}");
        }
    }

    #[test]
    fn whence_and_xattr_and_access_translate() {
        assert_eq!(whence(libc::SEEK_DATA), Ok(Whence::Data));
        assert_eq!(whence(libc::SEEK_HOLE), Ok(Whence::Hole));
        for w in [libc::SEEK_SET, libc::SEEK_CUR, libc::SEEK_END, 99, -1] {
            assert_eq!(whence(w), Err(Errno::EINVAL));
        }
        #[cfg(target_os = "linux")]
        {
            assert_eq!(XATTR_CREATE, libc::XATTR_CREATE);
            assert_eq!(XATTR_REPLACE, libc::XATTR_REPLACE);
        }
        assert_eq!(xattr_flags(0), Ok(XattrFlags::empty()));
        assert_eq!(xattr_flags(XATTR_CREATE), Ok(XattrFlags::CREATE));
        assert_eq!(xattr_flags(XATTR_REPLACE), Ok(XattrFlags::REPLACE));
        assert_eq!(xattr_flags(4), Err(Errno::EINVAL));
        assert_eq!(access_mask(libc::F_OK), AccessMask::empty());
        assert_eq!(
            access_mask(libc::R_OK | libc::W_OK | libc::X_OK),
            AccessMask::READ | AccessMask::WRITE | AccessMask::EXEC
        );
        assert_eq!(masked_mode(0o100666, 0o022), 0o644);
        assert_eq!(masked_mode(0o41777, 0o077), 0o1700);
    }

    #[test]
    fn dir_offsets_round_trip() {
        assert_eq!(dir_pos(0), DirPos::Start);
        assert_eq!(dir_pos(1), DirPos::AfterDot);
        assert_eq!(dir_pos(2), DirPos::After(0));
        assert_eq!(dir_pos(3), DirPos::After(1));
        assert_eq!(dir_pos(u64::MAX), DirPos::After(u64::MAX - 2));
        for cookie in [1, 2, 77, (1 << 63) - 1] {
            let off = cookie_offset(cookie).unwrap();
            assert!(off > OFFSET_AFTER_DOTDOT);
            assert_eq!(dir_pos(off), DirPos::After(cookie));
        }
        assert_eq!(cookie_offset(0), None);
        assert_eq!(cookie_offset(u64::MAX - 1), None);
    }

    #[test]
    fn attrs_translate() {
        let t = SystemTime::UNIX_EPOCH;
        let a = Attr {
            ino: Ino(42),
            kind: FileType::CharDevice,
            perm: 0o4755,
            nlink: 1,
            uid: 7,
            gid: 8,
            size: 9,
            blocks: 1,
            blksize: 0,
            rdev: (1 << 8) | 3,
            atime: t,
            mtime: t,
            ctime: t,
            crtime: t,
        };
        let f = file_attr(&a);
        assert_eq!(f.ino, INodeNo(42));
        assert_eq!(f.kind, fuser::FileType::CharDevice);
        assert_eq!(f.perm, 0o4755);
        assert_eq!(f.rdev, 0x103);
        assert_eq!(f.blksize, 4096);
        let huge = Attr { rdev: 1 << 40, ..a };
        assert_eq!(file_attr(&huge).rdev, 0);
        let kinds = [
            (FileType::RegularFile, fuser::FileType::RegularFile),
            (FileType::Directory, fuser::FileType::Directory),
            (FileType::Symlink, fuser::FileType::Symlink),
            (FileType::Fifo, fuser::FileType::NamedPipe),
            (FileType::Socket, fuser::FileType::Socket),
            (FileType::CharDevice, fuser::FileType::CharDevice),
            (FileType::BlockDevice, fuser::FileType::BlockDevice),
        ];
        for (ours, theirs) in kinds {
            assert_eq!(file_type(ours), theirs);
        }
        assert_eq!(
            combined_ttl(Duration::from_secs(1), Duration::from_secs(2)).as_secs(),
            1
        );
    }
}
