//! The FUSE wire format, for the requests vmount's io_uring queues receive and the
//! replies they send ([`crate::uring`]).
//!
//! fuser decodes `/dev/fuse` requests itself but keeps that code private, so the io_uring
//! transport has its own decoder here, written from the kernel's `include/uapi/linux/
//! fuse.h` (protocol 7.45) and checked against fuser's encoding by the tests below. Only
//! what [`crate::ops::Ops`] serves is decoded; every other opcode is ENOSYS, which is
//! what fuser answers for them too.
//!
//! On an io_uring queue a request arrives in three parts: the `fuse_in_header`, the
//! operation's fixed header (its first argument, e.g. `fuse_read_in`) in a separate
//! 128-byte area, and the remaining arguments (names, write data) in the payload buffer.
//! A reply is the `fuse_out_header` in the header area and its arguments in the payload.
//! Every read of client bytes is bounds-checked: a short or malformed request is EINVAL
//! (EIO for a name without its NUL), never a panic.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{Errno, FileAttr, FileType, TimeOrNow};

use crate::ops::OpenOut;

pub(crate) const FUSE_LOOKUP: u32 = 1;
pub(crate) const FUSE_FORGET: u32 = 2;
pub(crate) const FUSE_GETATTR: u32 = 3;
pub(crate) const FUSE_SETATTR: u32 = 4;
pub(crate) const FUSE_READLINK: u32 = 5;
pub(crate) const FUSE_SYMLINK: u32 = 6;
pub(crate) const FUSE_MKNOD: u32 = 8;
pub(crate) const FUSE_MKDIR: u32 = 9;
pub(crate) const FUSE_UNLINK: u32 = 10;
pub(crate) const FUSE_RMDIR: u32 = 11;
pub(crate) const FUSE_RENAME: u32 = 12;
pub(crate) const FUSE_LINK: u32 = 13;
pub(crate) const FUSE_OPEN: u32 = 14;
pub(crate) const FUSE_READ: u32 = 15;
pub(crate) const FUSE_WRITE: u32 = 16;
pub(crate) const FUSE_STATFS: u32 = 17;
pub(crate) const FUSE_RELEASE: u32 = 18;
pub(crate) const FUSE_FSYNC: u32 = 20;
pub(crate) const FUSE_SETXATTR: u32 = 21;
pub(crate) const FUSE_GETXATTR: u32 = 22;
pub(crate) const FUSE_LISTXATTR: u32 = 23;
pub(crate) const FUSE_REMOVEXATTR: u32 = 24;
pub(crate) const FUSE_FLUSH: u32 = 25;
pub(crate) const FUSE_INIT: u32 = 26;
pub(crate) const FUSE_OPENDIR: u32 = 27;
pub(crate) const FUSE_READDIR: u32 = 28;
pub(crate) const FUSE_RELEASEDIR: u32 = 29;
pub(crate) const FUSE_FSYNCDIR: u32 = 30;
pub(crate) const FUSE_ACCESS: u32 = 34;
pub(crate) const FUSE_CREATE: u32 = 35;
pub(crate) const FUSE_DESTROY: u32 = 38;
pub(crate) const FUSE_BATCH_FORGET: u32 = 42;
pub(crate) const FUSE_FALLOCATE: u32 = 43;
pub(crate) const FUSE_READDIRPLUS: u32 = 44;
pub(crate) const FUSE_RENAME2: u32 = 45;
pub(crate) const FUSE_LSEEK: u32 = 46;
pub(crate) const FUSE_COPY_FILE_RANGE: u32 = 47;

/// `FUSE_GETATTR_FH`: the GETATTR names an open handle.
const FUSE_GETATTR_FH: u32 = 1 << 0;
const FATTR_MODE: u32 = 1 << 0;
const FATTR_UID: u32 = 1 << 1;
const FATTR_GID: u32 = 1 << 2;
const FATTR_SIZE: u32 = 1 << 3;
const FATTR_ATIME: u32 = 1 << 4;
const FATTR_MTIME: u32 = 1 << 5;
const FATTR_FH: u32 = 1 << 6;
const FATTR_ATIME_NOW: u32 = 1 << 7;
const FATTR_MTIME_NOW: u32 = 1 << 8;
const FATTR_CTIME: u32 = 1 << 10;
/// `FUSE_FSYNC_FDATASYNC`.
const FSYNC_FDATASYNC: u32 = 1 << 0;

/// `sizeof(struct fuse_out_header)`.
pub(crate) const OUT_HEADER_LEN: usize = 16;
/// `sizeof(struct fuse_attr)`.
const ATTR_LEN: usize = 88;
/// `sizeof(struct fuse_entry_out)`.
pub(crate) const ENTRY_OUT_LEN: usize = 40 + ATTR_LEN;
/// `sizeof(struct fuse_dirent)` without the name.
const DIRENT_LEN: usize = 24;

/// The caller and target of a request (`struct fuse_in_header`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InHeader {
    pub(crate) len: u32,
    pub(crate) opcode: u32,
    pub(crate) unique: u64,
    pub(crate) nodeid: u64,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) pid: u32,
    /// Length of the extensions after the arguments, in units of 8 bytes.
    pub(crate) total_extlen: u16,
}

impl InHeader {
    pub(crate) fn parse(b: &[u8]) -> Option<InHeader> {
        Some(InHeader {
            len: u32_at(b, 0)?,
            opcode: u32_at(b, 4)?,
            unique: u64_at(b, 8)?,
            nodeid: u64_at(b, 16)?,
            uid: u32_at(b, 24)?,
            gid: u32_at(b, 28)?,
            pid: u32_at(b, 32)?,
            total_extlen: u16::from_ne_bytes(b.get(36..38)?.try_into().ok()?),
        })
    }
}

/// The little-endian-agnostic (native order, as the kernel writes it) field readers.
pub(crate) fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

pub(crate) fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

fn i32_at(b: &[u8], off: usize) -> Option<i32> {
    u32_at(b, off).map(|v| v as i32)
}

fn i64_at(b: &[u8], off: usize) -> Option<i64> {
    u64_at(b, off).map(|v| v as i64)
}

/// A short fixed header: the request is malformed.
pub(crate) fn short<T>(v: Option<T>) -> Result<T, Errno> {
    v.ok_or(Errno::EINVAL)
}

/// Splits a NUL-terminated name off the front of `b`.
pub(crate) fn name(b: &[u8]) -> Result<(&OsStr, &[u8]), Errno> {
    let end = b.iter().position(|&c| c == 0).ok_or(Errno::EIO)?;
    Ok((OsStr::from_bytes(&b[..end]), &b[end + 1..]))
}

/// A time as the kernel sends it (seconds since the epoch, possibly negative, and
/// nanoseconds below one second), saturating where `SystemTime` cannot hold it.
pub(crate) fn time(secs: i64, nsecs: u32) -> SystemTime {
    vmount_core::time::from_parts(secs, i64::from(nsecs))
}

/// A time as the kernel takes it, saturated to what an i64 of seconds holds.
fn time_parts(t: SystemTime) -> (i64, u32) {
    vmount_core::time::to_parts(t).unwrap_or(if t > UNIX_EPOCH {
        (i64::MAX, 999_999_999)
    } else {
        (i64::MIN, 0)
    })
}

/// The SETATTR changes (`struct fuse_setattr_in`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SetattrIn {
    pub(crate) fh: Option<u64>,
    pub(crate) mode: Option<u32>,
    pub(crate) uid: Option<u32>,
    pub(crate) gid: Option<u32>,
    pub(crate) size: Option<u64>,
    pub(crate) atime: Option<TimeOrNow>,
    pub(crate) mtime: Option<TimeOrNow>,
    pub(crate) ctime: Option<SystemTime>,
}

impl SetattrIn {
    pub(crate) fn parse(b: &[u8]) -> Option<SetattrIn> {
        let valid = u32_at(b, 0)?;
        let has = |f: u32| valid & f != 0;
        let when = |now: u32, secs: usize, nsecs: usize| -> Option<TimeOrNow> {
            Some(if has(now) {
                TimeOrNow::Now
            } else {
                TimeOrNow::SpecificTime(time(i64_at(b, secs)?, u32_at(b, nsecs)?))
            })
        };
        Some(SetattrIn {
            fh: if has(FATTR_FH) {
                Some(u64_at(b, 8)?)
            } else {
                None
            },
            size: if has(FATTR_SIZE) {
                Some(u64_at(b, 16)?)
            } else {
                None
            },
            atime: if has(FATTR_ATIME) {
                Some(when(FATTR_ATIME_NOW, 32, 56)?)
            } else {
                None
            },
            mtime: if has(FATTR_MTIME) {
                Some(when(FATTR_MTIME_NOW, 40, 60)?)
            } else {
                None
            },
            ctime: if has(FATTR_CTIME) {
                Some(time(i64_at(b, 48)?, u32_at(b, 64)?))
            } else {
                None
            },
            mode: if has(FATTR_MODE) {
                Some(u32_at(b, 68)?)
            } else {
                None
            },
            uid: if has(FATTR_UID) {
                Some(u32_at(b, 76)?)
            } else {
                None
            },
            gid: if has(FATTR_GID) {
                Some(u32_at(b, 80)?)
            } else {
                None
            },
        })
    }
}

/// `fuse_getattr_in`: the handle, when the GETATTR names one.
pub(crate) fn getattr_fh(b: &[u8]) -> Option<Option<u64>> {
    let flags = u32_at(b, 0)?;
    Some(if flags & FUSE_GETATTR_FH != 0 {
        Some(u64_at(b, 8)?)
    } else {
        None
    })
}

/// `fuse_read_in` (READ, READDIR, READDIRPLUS): handle, offset, size.
pub(crate) fn read_in(b: &[u8]) -> Option<(u64, u64, u32)> {
    Some((u64_at(b, 0)?, u64_at(b, 8)?, u32_at(b, 16)?))
}

/// `fuse_write_in`: handle, offset, size.
pub(crate) fn write_in(b: &[u8]) -> Option<(u64, u64, u32)> {
    read_in(b)
}

/// `fuse_release_in` (RELEASE, RELEASEDIR): the handle.
pub(crate) fn release_in(b: &[u8]) -> Option<u64> {
    u64_at(b, 0)
}

/// `fuse_flush_in`: handle and lock owner.
pub(crate) fn flush_in(b: &[u8]) -> Option<(u64, u64)> {
    Some((u64_at(b, 0)?, u64_at(b, 16)?))
}

/// `fuse_fsync_in` (FSYNC, FSYNCDIR): handle and whether only data is to be synced.
pub(crate) fn fsync_in(b: &[u8]) -> Option<(u64, bool)> {
    Some((u64_at(b, 0)?, u32_at(b, 8)? & FSYNC_FDATASYNC != 0))
}

/// `fuse_open_in` (OPEN, OPENDIR): the `open(2)` flags.
pub(crate) fn open_in(b: &[u8]) -> Option<i32> {
    i32_at(b, 0)
}

/// `fuse_create_in`: flags, mode, umask.
pub(crate) fn create_in(b: &[u8]) -> Option<(i32, u32, u32)> {
    Some((i32_at(b, 0)?, u32_at(b, 4)?, u32_at(b, 8)?))
}

/// `fuse_mknod_in`: mode, rdev, umask.
pub(crate) fn mknod_in(b: &[u8]) -> Option<(u32, u32, u32)> {
    Some((u32_at(b, 0)?, u32_at(b, 4)?, u32_at(b, 8)?))
}

/// `fuse_mkdir_in`: mode, umask.
pub(crate) fn mkdir_in(b: &[u8]) -> Option<(u32, u32)> {
    Some((u32_at(b, 0)?, u32_at(b, 4)?))
}

/// `fuse_rename2_in` (RENAME2) or `fuse_rename_in` (RENAME, no flags): new parent, flags.
pub(crate) fn rename_in(b: &[u8], with_flags: bool) -> Option<(u64, u32)> {
    Some((u64_at(b, 0)?, if with_flags { u32_at(b, 8)? } else { 0 }))
}

/// `fuse_link_in`: the inode to link.
pub(crate) fn link_in(b: &[u8]) -> Option<u64> {
    u64_at(b, 0)
}

/// `fuse_getxattr_in` (GETXATTR, LISTXATTR): the caller's buffer size.
pub(crate) fn getxattr_in(b: &[u8]) -> Option<u32> {
    u32_at(b, 0)
}

/// `fuse_setxattr_in`: value size and flags (the compat 8-byte form: FUSE_SETXATTR_EXT
/// is never negotiated).
pub(crate) fn setxattr_in(b: &[u8]) -> Option<(u32, i32)> {
    Some((u32_at(b, 0)?, i32_at(b, 4)?))
}

/// `fuse_access_in`: the mask.
pub(crate) fn access_in(b: &[u8]) -> Option<i32> {
    i32_at(b, 0)
}

/// `fuse_fallocate_in`: handle, offset, length, mode.
pub(crate) fn fallocate_in(b: &[u8]) -> Option<(u64, u64, u64, i32)> {
    Some((u64_at(b, 0)?, u64_at(b, 8)?, u64_at(b, 16)?, i32_at(b, 24)?))
}

/// `fuse_lseek_in`: handle, offset, whence.
pub(crate) fn lseek_in(b: &[u8]) -> Option<(u64, i64, i32)> {
    Some((u64_at(b, 0)?, i64_at(b, 8)?, i32_at(b, 16)?))
}

/// `fuse_copy_file_range_in`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CopyIn {
    pub(crate) fh_in: u64,
    pub(crate) off_in: u64,
    pub(crate) nodeid_out: u64,
    pub(crate) fh_out: u64,
    pub(crate) off_out: u64,
    pub(crate) len: u64,
    pub(crate) flags: u64,
}

pub(crate) fn copy_in(b: &[u8]) -> Option<CopyIn> {
    Some(CopyIn {
        fh_in: u64_at(b, 0)?,
        off_in: u64_at(b, 8)?,
        nodeid_out: u64_at(b, 16)?,
        fh_out: u64_at(b, 24)?,
        off_out: u64_at(b, 32)?,
        len: u64_at(b, 40)?,
        flags: u64_at(b, 48)?,
    })
}

/// A reply's arguments, built in a fixed buffer (the largest fixed reply is CREATE's
/// 144 bytes) and copied to the payload once the request's own bytes are no longer read.
pub(crate) struct Out {
    buf: [u8; 160],
    len: usize,
}

impl Out {
    pub(crate) fn new() -> Out {
        Out {
            buf: [0; 160],
            len: 0,
        }
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn put(&mut self, b: &[u8]) -> &mut Out {
        self.buf[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
        self
    }

    fn u32(&mut self, v: u32) -> &mut Out {
        self.put(&v.to_ne_bytes())
    }

    fn u64(&mut self, v: u64) -> &mut Out {
        self.put(&v.to_ne_bytes())
    }

    /// `fuse_entry_out`.
    pub(crate) fn entry(
        &mut self,
        attr: &FileAttr,
        attr_ttl: Duration,
        entry_ttl: Duration,
    ) -> &mut Out {
        let mut e = [0u8; ENTRY_OUT_LEN];
        entry_out(&mut e, attr, attr_ttl, entry_ttl);
        self.put(&e)
    }

    /// `fuse_attr_out`.
    pub(crate) fn attr(&mut self, ttl: Duration, attr: &FileAttr) -> &mut Out {
        self.u64(ttl.as_secs()).u32(ttl.subsec_nanos()).u32(0);
        let mut a = [0u8; ATTR_LEN];
        attr_bytes(&mut a, attr);
        self.put(&a)
    }

    /// `fuse_open_out`.
    pub(crate) fn open(&mut self, o: &OpenOut) -> &mut Out {
        self.u64(o.fh)
            .u32(o.flags.bits())
            .u32(o.backing_id.unwrap_or(0))
    }

    /// `fuse_write_out` (WRITE, COPY_FILE_RANGE).
    pub(crate) fn written(&mut self, n: u32) -> &mut Out {
        self.u32(n).u32(0)
    }

    /// `fuse_getxattr_out`: the size of a value or list.
    pub(crate) fn xattr_size(&mut self, n: u32) -> &mut Out {
        self.u32(n).u32(0)
    }

    /// `fuse_lseek_out`.
    pub(crate) fn offset(&mut self, off: i64) -> &mut Out {
        self.u64(off as u64)
    }

    /// `fuse_statfs_out`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn statfs(
        &mut self,
        blocks: u64,
        bfree: u64,
        bavail: u64,
        files: u64,
        ffree: u64,
        bsize: u32,
        namelen: u32,
        frsize: u32,
    ) -> &mut Out {
        self.u64(blocks)
            .u64(bfree)
            .u64(bavail)
            .u64(files)
            .u64(ffree);
        self.u32(bsize).u32(namelen).u32(frsize).u32(0);
        self.put(&[0u8; 24])
    }
}

/// The `st_mode` of a kind and permission bits.
fn mode(kind: FileType, perm: u16) -> u32 {
    let fmt = match kind {
        FileType::NamedPipe => libc::S_IFIFO,
        FileType::CharDevice => libc::S_IFCHR,
        FileType::BlockDevice => libc::S_IFBLK,
        FileType::Directory => libc::S_IFDIR,
        FileType::RegularFile => libc::S_IFREG,
        FileType::Symlink => libc::S_IFLNK,
        FileType::Socket => libc::S_IFSOCK,
    };
    fmt | u32::from(perm)
}

/// `struct fuse_attr` into `b` (88 bytes).
fn attr_bytes(b: &mut [u8; ATTR_LEN], a: &FileAttr) {
    let (asec, ansec) = time_parts(a.atime);
    let (msec, mnsec) = time_parts(a.mtime);
    let (csec, cnsec) = time_parts(a.ctime);
    let fields64 = [
        a.ino.0,
        a.size,
        a.blocks,
        asec as u64,
        msec as u64,
        csec as u64,
    ];
    for (i, v) in fields64.iter().enumerate() {
        b[i * 8..i * 8 + 8].copy_from_slice(&v.to_ne_bytes());
    }
    let fields32 = [
        ansec,
        mnsec,
        cnsec,
        mode(a.kind, a.perm),
        a.nlink,
        a.uid,
        a.gid,
        a.rdev,
        a.blksize,
        // `flags` (FUSE_ATTR_SUBMOUNT, FUSE_ATTR_DAX): none.
        0,
    ];
    for (i, v) in fields32.iter().enumerate() {
        b[48 + i * 4..52 + i * 4].copy_from_slice(&v.to_ne_bytes());
    }
}

/// `struct fuse_entry_out` into `b` (128 bytes), generation 0.
fn entry_out(b: &mut [u8; ENTRY_OUT_LEN], a: &FileAttr, attr_ttl: Duration, entry_ttl: Duration) {
    b[0..8].copy_from_slice(&a.ino.0.to_ne_bytes());
    b[8..16].copy_from_slice(&0u64.to_ne_bytes());
    b[16..24].copy_from_slice(&entry_ttl.as_secs().to_ne_bytes());
    b[24..32].copy_from_slice(&attr_ttl.as_secs().to_ne_bytes());
    b[32..36].copy_from_slice(&entry_ttl.subsec_nanos().to_ne_bytes());
    b[36..40].copy_from_slice(&attr_ttl.subsec_nanos().to_ne_bytes());
    let mut attr = [0u8; ATTR_LEN];
    attr_bytes(&mut attr, a);
    b[40..].copy_from_slice(&attr);
}

/// The `d_type` of a directory entry.
fn dirent_type(kind: FileType) -> u32 {
    mode(kind, 0) >> 12
}

/// A READDIR or READDIRPLUS reply being filled in place, up to the size the kernel
/// asked for (never past the buffer).
pub(crate) struct DirBuf<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> DirBuf<'a> {
    pub(crate) fn new(buf: &'a mut [u8], size: u32) -> DirBuf<'a> {
        let limit = buf.len().min(size as usize);
        DirBuf {
            buf: &mut buf[..limit],
            len: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Appends `fuse_dirent`, preceded by `fuse_entry_out` for READDIRPLUS; `true` when it
    /// does not fit (nothing is written then).
    fn push(
        &mut self,
        plus: Option<(&FileAttr, Duration)>,
        ino: u64,
        offset: u64,
        kind: FileType,
        name: &OsStr,
    ) -> bool {
        let name = name.as_bytes();
        let head = if plus.is_some() { ENTRY_OUT_LEN } else { 0 };
        let entry = DIRENT_LEN + name.len();
        let padded = (entry + 7) & !7;
        let Some(end) = self.len.checked_add(head + padded) else {
            return true;
        };
        if end > self.buf.len() {
            return true;
        }
        let b = &mut self.buf[self.len..end];
        if let Some((attr, ttl)) = plus {
            let mut e = [0u8; ENTRY_OUT_LEN];
            entry_out(&mut e, attr, ttl, ttl);
            b[..ENTRY_OUT_LEN].copy_from_slice(&e);
        }
        let d = &mut b[head..];
        d[0..8].copy_from_slice(&ino.to_ne_bytes());
        d[8..16].copy_from_slice(&offset.to_ne_bytes());
        d[16..20].copy_from_slice(&(name.len() as u32).to_ne_bytes());
        d[20..24].copy_from_slice(&dirent_type(kind).to_ne_bytes());
        d[24..entry].copy_from_slice(name);
        d[entry..padded].fill(0);
        self.len = end;
        false
    }
}

impl crate::ops::DirOut for DirBuf<'_> {
    fn add(&mut self, ino: u64, offset: u64, kind: FileType, name: &OsStr) -> bool {
        self.push(None, ino, offset, kind, name)
    }
}

impl crate::ops::DirPlusOut for DirBuf<'_> {
    fn add(&mut self, offset: u64, name: &OsStr, ttl: Duration, attr: &FileAttr) -> bool {
        self.push(Some((attr, ttl)), attr.ino.0, offset, attr.kind, name)
    }
}

/// `struct fuse_out_header` into the first 16 bytes of `b`.
pub(crate) fn out_header(b: &mut [u8], len: u32, error: i32, unique: u64) {
    b[0..4].copy_from_slice(&len.to_ne_bytes());
    b[4..8].copy_from_slice(&error.to_ne_bytes());
    b[8..16].copy_from_slice(&unique.to_ne_bytes());
}

#[cfg(test)]
mod tests {
    use fuser::INodeNo;

    use super::*;

    fn attr() -> FileAttr {
        FileAttr {
            ino: INodeNo(0x1122_3344_5566_7788),
            size: 4097,
            blocks: 16,
            atime: UNIX_EPOCH + Duration::new(1_700_000_000, 5),
            mtime: UNIX_EPOCH - Duration::new(1, 250_000_000),
            ctime: UNIX_EPOCH + Duration::new(3, 0),
            crtime: UNIX_EPOCH,
            kind: FileType::RegularFile,
            perm: 0o4755,
            nlink: 2,
            uid: 1000,
            gid: 100,
            rdev: 0x0801,
            blksize: 4096,
            flags: 0,
        }
    }

    #[test]
    fn attributes_have_the_kernel_layout() {
        let mut b = [0u8; ATTR_LEN];
        attr_bytes(&mut b, &attr());
        assert_eq!(u64_at(&b, 0), Some(0x1122_3344_5566_7788));
        assert_eq!(u64_at(&b, 8), Some(4097));
        assert_eq!(u64_at(&b, 16), Some(16));
        assert_eq!(i64_at(&b, 24), Some(1_700_000_000));
        // 1.25 s before the epoch: -2 s + 0.75 s, as struct timespec has it.
        assert_eq!(i64_at(&b, 32), Some(-2));
        assert_eq!(u32_at(&b, 52), Some(750_000_000));
        assert_eq!(u32_at(&b, 48), Some(5));
        assert_eq!(u32_at(&b, 60), Some(libc::S_IFREG | 0o4755));
        assert_eq!(u32_at(&b, 64), Some(2));
        assert_eq!((u32_at(&b, 68), u32_at(&b, 72)), (Some(1000), Some(100)));
        assert_eq!((u32_at(&b, 76), u32_at(&b, 80)), (Some(0x0801), Some(4096)));
        assert_eq!(u32_at(&b, 84), Some(0));
    }

    #[test]
    fn times_round_trip_including_before_the_epoch() {
        for t in [
            UNIX_EPOCH,
            UNIX_EPOCH + Duration::new(1_700_000_000, 999_999_999),
            UNIX_EPOCH - Duration::new(1, 250_000_000),
            UNIX_EPOCH - Duration::new(86_400, 0),
        ] {
            let (s, n) = time_parts(t);
            assert_eq!(time(s, n), t);
        }
        // Out-of-range nanoseconds and extreme seconds never panic.
        let _ = time(i64::MAX, u32::MAX);
        let _ = time(i64::MIN, u32::MAX);
    }

    #[test]
    fn entry_and_attr_replies() {
        let mut out = Out::new();
        out.entry(&attr(), Duration::new(7, 9), Duration::new(3600, 1));
        let b = out.bytes();
        assert_eq!(b.len(), 128);
        assert_eq!(u64_at(b, 0), Some(0x1122_3344_5566_7788));
        assert_eq!((u64_at(b, 16), u64_at(b, 24)), (Some(3600), Some(7)));
        assert_eq!((u32_at(b, 32), u32_at(b, 36)), (Some(1), Some(9)));
        let mut out = Out::new();
        out.attr(Duration::new(5, 6), &attr());
        assert_eq!(out.bytes().len(), 104);
        assert_eq!(u64_at(out.bytes(), 0), Some(5));
        assert_eq!(u64_at(out.bytes(), 16), Some(0x1122_3344_5566_7788));
        let mut out = Out::new();
        out.entry(&attr(), Duration::ZERO, Duration::ZERO)
            .open(&OpenOut {
                fh: 42,
                flags: fuser::FopenFlags::FOPEN_PASSTHROUGH,
                backing_id: Some(3),
            });
        let b = out.bytes();
        assert_eq!(b.len(), 144);
        assert_eq!(u64_at(b, 128), Some(42));
        assert_eq!(u32_at(b, 136), Some(1 << 7));
        assert_eq!(u32_at(b, 140), Some(3));
        let mut out = Out::new();
        out.statfs(1, 2, 3, 4, 5, 4096, 255, 512);
        assert_eq!(out.bytes().len(), 80);
        assert_eq!(u32_at(out.bytes(), 44), Some(255));
    }

    #[test]
    fn directory_entries_are_padded_and_never_overflow() {
        let mut buf = [0xffu8; 64];
        let mut d = DirBuf::new(&mut buf, 1000);
        assert!(!crate::ops::DirOut::add(
            &mut d,
            5,
            1,
            FileType::Directory,
            OsStr::new(".")
        ));
        assert_eq!(d.len(), 32);
        // 24 + 9 = 33 -> 40 bytes: does not fit in the 32 left.
        assert!(crate::ops::DirOut::add(
            &mut d,
            6,
            2,
            FileType::RegularFile,
            OsStr::new("123456789")
        ));
        assert!(!crate::ops::DirOut::add(
            &mut d,
            6,
            2,
            FileType::Symlink,
            OsStr::new("ab")
        ));
        assert_eq!(d.len(), 64);
        assert_eq!(u64_at(&buf, 0), Some(5));
        assert_eq!(u64_at(&buf, 8), Some(1));
        assert_eq!(u32_at(&buf, 16), Some(1));
        assert_eq!(u32_at(&buf, 20), Some(4)); // DT_DIR
        assert_eq!(&buf[24..32], b".\0\0\0\0\0\0\0");
        assert_eq!(u32_at(&buf, 52), Some(10)); // DT_LNK
        // The kernel's size limit applies even when the buffer is larger.
        let mut big = [0u8; 4096];
        let mut d = DirBuf::new(&mut big, 40);
        assert!(!crate::ops::DirOut::add(
            &mut d,
            1,
            1,
            FileType::RegularFile,
            OsStr::new("x")
        ));
        assert!(crate::ops::DirOut::add(
            &mut d,
            1,
            2,
            FileType::RegularFile,
            OsStr::new("y")
        ));
        let mut d = DirBuf::new(&mut big, 4096);
        assert!(!crate::ops::DirPlusOut::add(
            &mut d,
            3,
            OsStr::new("file"),
            Duration::from_secs(1),
            &attr()
        ));
        assert_eq!(d.len(), 128 + 32);
    }

    #[test]
    fn requests_decode_and_short_ones_are_refused() {
        let mut h = [0u8; 40];
        h[0..4].copy_from_slice(&56u32.to_ne_bytes());
        h[4..8].copy_from_slice(&FUSE_LOOKUP.to_ne_bytes());
        h[8..16].copy_from_slice(&99u64.to_ne_bytes());
        h[16..24].copy_from_slice(&1u64.to_ne_bytes());
        h[24..28].copy_from_slice(&1000u32.to_ne_bytes());
        let got = InHeader::parse(&h).unwrap();
        assert_eq!(
            (got.opcode, got.unique, got.nodeid, got.uid),
            (1, 99, 1, 1000)
        );
        assert!(InHeader::parse(&h[..37]).is_none());
        assert_eq!(name(b"abc\0rest").unwrap().0, OsStr::new("abc"));
        assert_eq!(name(b"abc\0rest").unwrap().1, b"rest");
        assert_eq!(name(b"no-nul").unwrap_err(), Errno::EIO);
        let mut s = [0u8; 88];
        s[0..4].copy_from_slice(
            &(FATTR_MODE | FATTR_SIZE | FATTR_ATIME | FATTR_ATIME_NOW | FATTR_MTIME).to_ne_bytes(),
        );
        s[16..24].copy_from_slice(&77u64.to_ne_bytes());
        s[40..48].copy_from_slice(&(-5i64).to_ne_bytes());
        s[68..72].copy_from_slice(&0o100644u32.to_ne_bytes());
        let set = SetattrIn::parse(&s).unwrap();
        assert_eq!(set.mode, Some(0o100644));
        assert_eq!(set.size, Some(77));
        assert_eq!(set.atime, Some(TimeOrNow::Now));
        assert_eq!(
            set.mtime,
            Some(TimeOrNow::SpecificTime(UNIX_EPOCH - Duration::from_secs(5)))
        );
        assert_eq!(
            (set.uid, set.gid, set.fh, set.ctime),
            (None, None, None, None)
        );
        assert!(SetattrIn::parse(&s[..60]).is_none());
        assert_eq!(short(read_in(&[0u8; 8])), Err(Errno::EINVAL));
    }
}
