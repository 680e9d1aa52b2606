//! The platform-independent logic of the Windows loopback (`loopback/windows.rs`): name
//! rules, relative paths, attribute synthesis, FILETIME conversion, readdir cookies,
//! reparse-buffer encoding, directory-record parsing and the NTSTATUS / Win32 error
//! tables.
//!
//! It is plain Rust over numbers and byte slices, compiled on Windows (where the loopback
//! uses it) and in every test build, so that `cargo test -p vmount-core --lib` checks it
//! on Linux too, where the Windows filesystem code itself can only be type-checked.
#![cfg_attr(not(windows), allow(dead_code))]

use std::ffi::{OsStr, OsString};
use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{Attr, FileType, Ino, VfsError, VfsResult, check_name};

// ---------------------------------------------------------------------------------------
// Names and relative paths.

/// A path below the source directory, as components (never empty except for the root).
pub(crate) type RelPath = Arc<[OsString]>;

/// Checks a client name for use as one Windows path component: [`check_name`] (not
/// empty, not `.`/`..`, no `/` or NUL, at most `NAME_MAX` bytes) plus no `\` (a second
/// separator) and no `:` (it would name an alternate data stream of the file before it).
pub(crate) fn check_win_name(name: &OsStr) -> VfsResult<()> {
    check_name(name)?;
    if name
        .as_encoded_bytes()
        .iter()
        .any(|b| matches!(b, b'\\' | b':'))
    {
        return Err(VfsError::InvalidArgument);
    }
    Ok(())
}

/// The DOS device names Win32 resolves in every directory (`CON`, `NUL`, `COM1`...),
/// with or without an extension.
const DEVICE_NAMES: [&str; 8] = [
    "CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "COM", "LPT",
];

/// Checks a name for a *new* host object: [`check_win_name`] plus the names the NT API
/// would create but Win32 programs cannot open, rename or delete again: a trailing `.`
/// or space (Win32 strips them), the characters `< > " | ? *` and control characters,
/// and DOS device names (`CON`, `nul.txt`, `COM1`...). Existing host objects with such
/// names (made by WSL, say) can still be looked up, read and removed.
pub(crate) fn check_new_name(name: &OsStr) -> VfsResult<()> {
    check_win_name(name)?;
    let bytes = name.as_encoded_bytes();
    if bytes.ends_with(b".") || bytes.ends_with(b" ") {
        return Err(VfsError::InvalidArgument);
    }
    if bytes
        .iter()
        .any(|b| *b < 0x20 || matches!(b, b'<' | b'>' | b'"' | b'|' | b'?' | b'*'))
    {
        return Err(VfsError::InvalidArgument);
    }
    let stem = bytes.split(|b| *b == b'.').next().unwrap_or(bytes);
    let stem = stem.trim_ascii_end();
    for dev in DEVICE_NAMES {
        let dev = dev.as_bytes();
        if dev == b"COM" || dev == b"LPT" {
            // COM1-COM9, LPT1-LPT9 (and the superscript digits Windows also reserves).
            if stem.len() > 3 && stem[..3].eq_ignore_ascii_case(dev) {
                let rest = &stem[3..];
                let digit = matches!(rest, [b'1'..=b'9'])
                    || rest == "¹".as_bytes()
                    || rest == "²".as_bytes()
                    || rest == "³".as_bytes();
                if digit {
                    return Err(VfsError::InvalidArgument);
                }
            }
        } else if stem.eq_ignore_ascii_case(dev) {
            return Err(VfsError::InvalidArgument);
        }
    }
    Ok(())
}

/// `parent` with `name` appended.
pub(crate) fn join(parent: &[OsString], name: &OsStr) -> RelPath {
    let mut v = Vec::with_capacity(parent.len() + 1);
    v.extend_from_slice(parent);
    v.push(name.to_owned());
    v.into()
}

/// Whether two components name the same host entry in a case-insensitive directory.
/// Windows compares with its own upcase table; Unicode simple uppercasing agrees with it
/// for all but a few exotic characters. Names that are not valid Unicode compare exactly.
pub(crate) fn same_component(a: &OsStr, b: &OsStr) -> bool {
    if a == b {
        return true;
    }
    match (a.to_str(), b.to_str()) {
        (Some(a), Some(b)) => a
            .chars()
            .flat_map(char::to_uppercase)
            .eq(b.chars().flat_map(char::to_uppercase)),
        _ => false,
    }
}

/// Whether `prefix` is `path` or one of its ancestors (case-insensitively).
pub(crate) fn has_prefix(path: &[OsString], prefix: &[OsString]) -> bool {
    path.len() >= prefix.len() && path.iter().zip(prefix).all(|(a, b)| same_component(a, b))
}

/// `path` with its leading `from` replaced by `to`, when `from` is a prefix of it.
pub(crate) fn rebase(path: &[OsString], from: &[OsString], to: &[OsString]) -> Option<RelPath> {
    if !has_prefix(path, from) {
        return None;
    }
    let mut v = Vec::with_capacity(to.len() + path.len() - from.len());
    v.extend_from_slice(to);
    v.extend_from_slice(&path[from.len()..]);
    Some(v.into())
}

/// Most names remembered per table entry (hard links: each name it was seen under).
pub(crate) const MAX_PATHS: usize = 8;

/// Records `path` as the most recent name of an entry: moved to the front (tried first
/// when resolving), duplicates removed, at most [`MAX_PATHS`] kept.
pub(crate) fn remember_path(paths: &mut Vec<RelPath>, path: RelPath) {
    paths.retain(|p| !(p.len() == path.len() && has_prefix(p, &path)));
    paths.insert(0, path);
    paths.truncate(MAX_PATHS);
}

/// Forgets `path` (a removed name) from an entry's names; returns whether it was there.
pub(crate) fn forget_path(paths: &mut Vec<RelPath>, path: &[OsString]) -> bool {
    let before = paths.len();
    paths.retain(|p| !(p.len() == path.len() && has_prefix(p, path)));
    paths.len() != before
}

// ---------------------------------------------------------------------------------------
// Attributes.

/// `FILE_ATTRIBUTE_READONLY`.
pub(crate) const ATTR_READONLY: u32 = 0x1;
/// `FILE_ATTRIBUTE_DIRECTORY`.
pub(crate) const ATTR_DIRECTORY: u32 = 0x10;
/// `FILE_ATTRIBUTE_NORMAL` (only meaningful alone).
pub(crate) const ATTR_NORMAL: u32 = 0x80;
/// `FILE_ATTRIBUTE_REPARSE_POINT`.
pub(crate) const ATTR_REPARSE_POINT: u32 = 0x400;
/// `IO_REPARSE_TAG_MOUNT_POINT` (junctions and volume mount points).
pub(crate) const TAG_MOUNT_POINT: u32 = 0xA000_0003;
/// `IO_REPARSE_TAG_SYMLINK`.
pub(crate) const TAG_SYMLINK: u32 = 0xA000_000C;
/// `IO_REPARSE_TAG_AF_UNIX` (a unix domain socket made by WSL or AF_UNIX on Windows).
pub(crate) const TAG_AF_UNIX: u32 = 0x8000_0023;
/// `IO_REPARSE_TAG_LX_SYMLINK` (a WSL1 symlink).
pub(crate) const TAG_LX_SYMLINK: u32 = 0xA000_001D;
/// `SYMLINK_FLAG_RELATIVE`.
pub(crate) const SYMLINK_FLAG_RELATIVE: u32 = 1;

/// Whether a reparse tag is a name surrogate (bit 29): the object stands for another
/// name (symlinks, junctions, mount points) and is therefore never followed.
pub(crate) fn is_name_surrogate(tag: u32) -> bool {
    tag & 0x2000_0000 != 0
}

/// The vmount kind of a host object from its attributes and reparse tag (the tag only
/// counts when the attributes carry `FILE_ATTRIBUTE_REPARSE_POINT`). Name surrogates
/// (symlinks, junctions, mount points) are symlinks, whether file or directory; other
/// reparse points (cloud placeholders, dedup) keep the kind of the object underneath.
pub(crate) fn kind_of(attributes: u32, tag: u32) -> FileType {
    if attributes & ATTR_REPARSE_POINT != 0 {
        if is_name_surrogate(tag) {
            return FileType::Symlink;
        }
        if tag == TAG_AF_UNIX {
            return FileType::Socket;
        }
    }
    if attributes & ATTR_DIRECTORY != 0 {
        FileType::Directory
    } else {
        FileType::RegularFile
    }
}

/// The synthesized permission bits: directories 0o755, symlinks 0o777, sockets and files
/// 0o644, minus every write bit when `FILE_ATTRIBUTE_READONLY` is set on a non-directory
/// (on directories that bit only marks customized folders for Explorer).
pub(crate) fn perm_of(kind: FileType, attributes: u32) -> u16 {
    match kind {
        FileType::Directory => 0o755,
        FileType::Symlink => 0o777,
        _ if attributes & ATTR_READONLY != 0 => 0o444,
        _ => 0o644,
    }
}

/// The attributes after a chmod to `mode`: `FILE_ATTRIBUTE_READONLY` follows the owner's
/// write bit on non-directories; nothing else of the mode can be stored. Returns `None`
/// when nothing changes. `FILE_ATTRIBUTE_NORMAL` is used when no attribute remains, as
/// `SetFileInformationByHandle` needs a non-zero value to change anything.
pub(crate) fn attributes_for_mode(kind: FileType, attributes: u32, mode: u32) -> Option<u32> {
    if kind == FileType::Directory || kind == FileType::Symlink {
        return None;
    }
    let want = if mode & 0o200 == 0 {
        (attributes & !ATTR_NORMAL) | ATTR_READONLY
    } else {
        attributes & !ATTR_READONLY
    };
    if want == attributes {
        return None;
    }
    Some(if want == 0 { ATTR_NORMAL } else { want })
}

/// What Windows reports about one object, gathered from `GetFileInformationByHandle`,
/// `FILE_BASIC_INFO`, `FILE_STANDARD_INFO` and the reparse data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WinStat {
    /// Volume serial number.
    pub volume: u64,
    /// 64-bit file index (NTFS file reference).
    pub index: u64,
    /// `FILE_ATTRIBUTE_*`.
    pub attributes: u32,
    /// Reparse tag when `attributes` has `FILE_ATTRIBUTE_REPARSE_POINT`, else 0.
    pub tag: u32,
    /// End of file in bytes.
    pub size: u64,
    /// Allocation size in bytes.
    pub allocated: u64,
    /// Hard links (0 once deleted while open).
    pub nlink: u32,
    /// FILETIMEs: creation, last access, last write, change.
    pub created: i64,
    /// Last access.
    pub accessed: i64,
    /// Last write.
    pub written: i64,
    /// Last change (attributes, links or data).
    pub changed: i64,
}

impl WinStat {
    /// The identity of the host object: (volume serial, file index).
    pub fn key(&self) -> (u64, u64) {
        (self.volume, self.index)
    }

    /// The vmount kind.
    pub fn kind(&self) -> FileType {
        kind_of(self.attributes, self.tag)
    }
}

/// Builds the vmount attributes of a host object. `link_len` is the byte length of a
/// symlink's target (its `size`, as POSIX reports it); `owner` the reported uid and gid.
/// Files report the host's link count (0 once deleted while open).
/// Directories report one link: NTFS does not count subdirectories, and 1 is the
/// convention (btrfs, FAT via FUSE) for "not 2 + subdirectories" that `find` honours.
pub(crate) fn attr_from_stat(ino: Ino, st: &WinStat, link_len: u64, owner: (u32, u32)) -> Attr {
    let kind = st.kind();
    let size = if kind == FileType::Symlink {
        link_len
    } else if kind == FileType::Directory {
        0
    } else {
        st.size
    };
    Attr {
        ino,
        kind,
        perm: perm_of(kind, st.attributes),
        nlink: if kind == FileType::Directory {
            1
        } else {
            st.nlink
        },
        uid: owner.0,
        gid: owner.1,
        size,
        blocks: st.allocated.div_ceil(512),
        blksize: 4096,
        rdev: 0,
        atime: filetime_to_system(st.accessed),
        mtime: filetime_to_system(st.written),
        ctime: filetime_to_system(st.changed),
        crtime: filetime_to_system(st.created),
    }
}

// ---------------------------------------------------------------------------------------
// FILETIME.

/// Seconds from 1601-01-01 (the FILETIME epoch) to 1970-01-01.
const EPOCH_DIFF_SECS: u64 = 11_644_473_600;
/// FILETIME ticks (100 ns) per second.
const TICKS_PER_SEC: u64 = 10_000_000;

/// A FILETIME (100 ns ticks since 1601) as a `SystemTime`; negative values (invalid)
/// are treated as the epoch itself.
pub(crate) fn filetime_to_system(ft: i64) -> SystemTime {
    let ticks = u64::try_from(ft).unwrap_or(0);
    let since_1601 = Duration::new(
        ticks / TICKS_PER_SEC,
        ((ticks % TICKS_PER_SEC) * 100) as u32,
    );
    let diff = Duration::from_secs(EPOCH_DIFF_SECS);
    if since_1601 >= diff {
        UNIX_EPOCH + (since_1601 - diff)
    } else {
        UNIX_EPOCH - (diff - since_1601)
    }
}

/// A `SystemTime` as a FILETIME for `SetFileInformationByHandle`, truncated to 100 ns.
/// Times before 1601 or beyond the FILETIME range are `InvalidArgument`. The value 0
/// means "leave unchanged" to Windows, so exactly 1601-01-01 becomes one tick later.
pub(crate) fn system_to_filetime(t: SystemTime) -> VfsResult<i64> {
    let diff = Duration::from_secs(EPOCH_DIFF_SECS);
    let since_1601 = match t.duration_since(UNIX_EPOCH) {
        Ok(after) => after.checked_add(diff),
        Err(before) => diff.checked_sub(before.duration()),
    }
    .ok_or(VfsError::InvalidArgument)?;
    let ticks = since_1601
        .as_secs()
        .checked_mul(TICKS_PER_SEC)
        .and_then(|t| t.checked_add(u64::from(since_1601.subsec_nanos() / 100)))
        .and_then(|t| i64::try_from(t).ok())
        .ok_or(VfsError::InvalidArgument)?;
    Ok(ticks.max(1))
}

// ---------------------------------------------------------------------------------------
// readdir cookies.

/// The resume cookie of a directory entry: a hash of its name (FNV-1a over the encoded
/// bytes, then the SplitMix64 finalizer), in `1..2^63`. It depends on nothing but the
/// name, so it is the same in every listing and across restarts, and an entry that
/// exists for a whole listing is returned exactly once when entries are listed in
/// cookie order from "greater than `after`" (see the module docs of the loopback).
pub(crate) fn name_cookie(name: &OsStr) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.as_encoded_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (h >> 1).max(1)
}

/// Index of the first entry whose cookie is greater than `after` in a list sorted by
/// cookie.
pub(crate) fn resume_index<T>(sorted: &[T], cookie: impl Fn(&T) -> u64, after: u64) -> usize {
    sorted.partition_point(|e| cookie(e) <= after)
}

// ---------------------------------------------------------------------------------------
// Directory records (`FILE_ID_BOTH_DIR_INFO`).

/// One record of a `FileIdBothDirectoryInfo` listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawDirEntry {
    /// The name, UTF-16 as stored.
    pub name: Vec<u16>,
    /// `FILE_ATTRIBUTE_*`.
    pub attributes: u32,
    /// The reparse tag (the record's `EaSize` holds it for reparse points), else 0.
    pub tag: u32,
    /// The 64-bit file id.
    pub file_id: u64,
}

/// Byte offsets in `FILE_ID_BOTH_DIR_INFO` (checked against the real struct at compile
/// time in the Windows module).
pub(crate) mod dir_info {
    /// `NextEntryOffset: u32`.
    pub const NEXT: usize = 0;
    /// `FileAttributes: u32`.
    pub const ATTRIBUTES: usize = 56;
    /// `FileNameLength: u32` (bytes).
    pub const NAME_LEN: usize = 60;
    /// `EaSize: u32` (the reparse tag of reparse points).
    pub const EA_SIZE: usize = 64;
    /// `FileId: i64`.
    pub const FILE_ID: usize = 96;
    /// `FileName: [u16]`.
    pub const NAME: usize = 104;
}

fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        buf.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn u64_at(buf: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        buf.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

fn u16_at(buf: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        buf.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

/// Parses the chained records one `GetFileInformationByHandleEx(FileIdBothDirectoryInfo)`
/// call filled `buf` with, skipping `.` and `..`. A malformed chain (offsets outside the
/// buffer) is an I/O error, never a panic.
pub(crate) fn parse_dir_records(buf: &[u8]) -> io::Result<Vec<RawDirEntry>> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed directory record");
    let mut out = Vec::new();
    let mut at = 0usize;
    loop {
        let rec = buf.get(at..).ok_or_else(bad)?;
        let next = u32_at(rec, dir_info::NEXT).ok_or_else(bad)? as usize;
        let attributes = u32_at(rec, dir_info::ATTRIBUTES).ok_or_else(bad)?;
        let name_len = u32_at(rec, dir_info::NAME_LEN).ok_or_else(bad)? as usize;
        let ea = u32_at(rec, dir_info::EA_SIZE).ok_or_else(bad)?;
        let file_id = u64_at(rec, dir_info::FILE_ID).ok_or_else(bad)?;
        let name_end = dir_info::NAME.checked_add(name_len).ok_or_else(bad)?;
        if !name_len.is_multiple_of(2) || next != 0 && next < name_end {
            return Err(bad());
        }
        let raw = rec.get(dir_info::NAME..name_end).ok_or_else(bad)?;
        let name: Vec<u16> = raw
            .as_chunks::<2>()
            .0
            .iter()
            .map(|c| u16::from_le_bytes(*c))
            .collect();
        let dot = name == [u16::from(b'.')] || name == [u16::from(b'.'), u16::from(b'.')];
        if !dot {
            out.push(RawDirEntry {
                name,
                attributes,
                tag: if attributes & ATTR_REPARSE_POINT != 0 {
                    ea
                } else {
                    0
                },
                file_id,
            });
        }
        if next == 0 {
            return Ok(out);
        }
        at = at.checked_add(next).ok_or_else(bad)?;
    }
}

// ---------------------------------------------------------------------------------------
// Reparse data.

/// Largest reparse buffer (`MAXIMUM_REPARSE_DATA_BUFFER_SIZE`).
pub(crate) const MAX_REPARSE: usize = 16 * 1024;

/// The `REPARSE_DATA_BUFFER` of a symlink to `target` (UTF-16, stored verbatim as both
/// substitute and print name). Targets that are not absolute Windows paths are marked
/// `SYMLINK_FLAG_RELATIVE` (the loopback never follows them; a client does). Fails with
/// `NameTooLong` beyond the reparse size limit.
pub(crate) fn symlink_reparse_buffer(target: &[u16]) -> VfsResult<Vec<u8>> {
    let bytes = target.len().checked_mul(2).ok_or(VfsError::NameTooLong)?;
    // Header 8, symlink fields 12, two copies of the name.
    let data_len = bytes
        .checked_mul(2)
        .and_then(|n| n.checked_add(12))
        .filter(|n| n + 8 <= MAX_REPARSE)
        .ok_or(VfsError::NameTooLong)?;
    let name_len = u16::try_from(bytes).map_err(|_| VfsError::NameTooLong)?;
    let absolute = is_absolute_windows(target);
    let mut buf = Vec::with_capacity(data_len + 8);
    buf.extend_from_slice(&TAG_SYMLINK.to_le_bytes());
    buf.extend_from_slice(&(data_len as u16).to_le_bytes());
    buf.extend_from_slice(&0u16.to_le_bytes());
    buf.extend_from_slice(&0u16.to_le_bytes()); // substitute offset
    buf.extend_from_slice(&name_len.to_le_bytes());
    buf.extend_from_slice(&name_len.to_le_bytes()); // print offset
    buf.extend_from_slice(&name_len.to_le_bytes());
    let flags = if absolute { 0 } else { SYMLINK_FLAG_RELATIVE };
    buf.extend_from_slice(&flags.to_le_bytes());
    for _ in 0..2 {
        for u in target {
            buf.extend_from_slice(&u.to_le_bytes());
        }
    }
    Ok(buf)
}

/// Whether a target is an absolute Windows path (`C:\...`, `\\server\...`, `\??\...`),
/// the only form a non-relative NT symlink may hold.
fn is_absolute_windows(t: &[u16]) -> bool {
    let bs = u16::from(b'\\');
    let drive = t.len() >= 3
        && t[0] < 0x80
        && (t[0] as u8).is_ascii_alphabetic()
        && t[1] == u16::from(b':')
        && (t[2] == bs || t[2] == u16::from(b'/'));
    drive || (t.len() >= 2 && t[0] == bs && t[1] == bs) || t.starts_with(&NT_PREFIX)
}

/// `\??\`, the NT prefix of absolute substitute names.
const NT_PREFIX: [u16; 4] = [b'\\' as u16, b'?' as u16, b'?' as u16, b'\\' as u16];

/// The target a client sees for reparse data read with `FSCTL_GET_REPARSE_POINT`:
/// symlinks and junctions give their print name (what `dir` shows), else their
/// substitute name without the `\??\` prefix. Other tags are `InvalidArgument` (not a
/// symlink); a malformed buffer is an I/O error.
pub(crate) fn parse_link_target(buf: &[u8]) -> VfsResult<Vec<u16>> {
    let bad = || {
        VfsError::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            "malformed reparse data",
        ))
    };
    let tag = u32_at(buf, 0).ok_or_else(bad)?;
    let path_start: usize = match tag {
        TAG_SYMLINK => 20,
        TAG_MOUNT_POINT => 16,
        TAG_LX_SYMLINK => {
            // WSL1: a version u32, then the UTF-8 target.
            let len = usize::from(u16_at(buf, 4).ok_or_else(bad)?);
            let utf8 = buf.get(12..8 + len).ok_or_else(bad)?;
            let s = std::str::from_utf8(utf8).map_err(|_| bad())?;
            return Ok(s.encode_utf16().collect());
        }
        _ => return Err(VfsError::InvalidArgument),
    };
    let field = |i: usize| u16_at(buf, 8 + 2 * i).map(usize::from).ok_or_else(bad);
    let (sub_off, sub_len, print_off, print_len) = (field(0)?, field(1)?, field(2)?, field(3)?);
    let slice = |off: usize, len: usize| -> VfsResult<Vec<u16>> {
        let start = path_start.checked_add(off).ok_or_else(bad)?;
        let end = start.checked_add(len).ok_or_else(bad)?;
        let raw = buf.get(start..end).ok_or_else(bad)?;
        if !len.is_multiple_of(2) {
            return Err(bad());
        }
        Ok(raw
            .as_chunks::<2>()
            .0
            .iter()
            .map(|c| u16::from_le_bytes(*c))
            .collect())
    };
    let print = slice(print_off, print_len)?;
    if !print.is_empty() {
        return Ok(print);
    }
    let sub = slice(sub_off, sub_len)?;
    Ok(match sub.strip_prefix(&NT_PREFIX[..]) {
        Some(rest) => rest.to_vec(),
        None => sub,
    })
}

// ---------------------------------------------------------------------------------------
// Errors.

/// The `VfsError` of an NTSTATUS that has a variant of its own (those `RtlNtStatusToDosError`
/// would flatten, e.g. "is a directory" into "access denied"); `None` for the rest,
/// which the caller converts to a Win32 code.
pub(crate) fn error_from_ntstatus(status: i32) -> Option<VfsError> {
    let s = status as u32;
    Some(match s {
        0xC000_0034 | 0xC000_003A => VfsError::NotFound, // OBJECT_NAME/PATH_NOT_FOUND
        0xC000_0056 => VfsError::NotFound,               // DELETE_PENDING
        0xC000_0035 => VfsError::Exists,                 // OBJECT_NAME_COLLISION
        0xC000_00BA => VfsError::IsDir,                  // FILE_IS_A_DIRECTORY
        0xC000_0103 => VfsError::NotDir,                 // NOT_A_DIRECTORY
        0xC000_0101 => VfsError::NotEmpty,               // DIRECTORY_NOT_EMPTY
        0xC000_0022 | 0xC000_0121 => VfsError::PermissionDenied, // ACCESS_DENIED, CANNOT_DELETE
        0xC000_0061 => VfsError::NotPermitted,           // PRIVILEGE_NOT_HELD
        0xC000_0033 | 0xC000_003B => VfsError::InvalidArgument, // OBJECT_NAME_INVALID, PATH_SYNTAX_BAD
        0xC000_000D => VfsError::InvalidArgument,               // INVALID_PARAMETER
        0xC000_0106 => VfsError::NameTooLong,                   // NAME_TOO_LONG
        0xC000_007F => VfsError::NoSpace,                       // DISK_FULL
        0xC000_0044 => VfsError::NoSpace,                       // QUOTA_EXCEEDED
        0xC000_00D4 => VfsError::CrossDevice,                   // NOT_SAME_DEVICE
        0xC000_00A2 => VfsError::ReadOnly,                      // MEDIA_WRITE_PROTECTED
        0xC000_0043 => VfsError::Busy,                          // SHARING_VIOLATION
        0xC000_00BB => VfsError::NotSupported,                  // NOT_SUPPORTED
        0xC000_0265 => VfsError::TooManyLinks,                  // TOO_MANY_LINKS
        0x8000_002D | 0xC000_0279 => VfsError::Loop, // STOPPED_ON_SYMLINK, IO_REPARSE_TAG_NOT_HANDLED
        0xC000_0008 => VfsError::BadHandle,          // INVALID_HANDLE
        0xC000_0904 => VfsError::FileTooLarge,       // FILE_TOO_LARGE
        _ => return None,
    })
}

/// The `VfsError` of a Win32 error code (`GetLastError`, `io::Error::raw_os_error` on
/// Windows); codes without a variant stay `Io` with the code kept.
pub(crate) fn error_from_win32(code: u32) -> VfsError {
    match code {
        2 | 3 | 161 => VfsError::NotFound, // FILE/PATH_NOT_FOUND, BAD_PATHNAME
        303 => VfsError::NotFound,         // DELETE_PENDING
        80 | 183 => VfsError::Exists,      // FILE_EXISTS, ALREADY_EXISTS
        267 => VfsError::NotDir,           // DIRECTORY
        145 => VfsError::NotEmpty,         // DIR_NOT_EMPTY
        5 => VfsError::PermissionDenied,   // ACCESS_DENIED
        1314 => VfsError::NotPermitted,    // PRIVILEGE_NOT_HELD
        19 => VfsError::ReadOnly,          // WRITE_PROTECT
        87 | 123 | 131 => VfsError::InvalidArgument, // INVALID_PARAMETER, INVALID_NAME, NEGATIVE_SEEK
        4390 => VfsError::InvalidArgument,           // NOT_A_REPARSE_POINT
        206 => VfsError::NameTooLong,                // FILENAME_EXCED_RANGE
        39 | 112 | 1295 => VfsError::NoSpace, // HANDLE_DISK_FULL, DISK_FULL, DISK_QUOTA_EXCEEDED
        17 => VfsError::CrossDevice,          // NOT_SAME_DEVICE
        6 => VfsError::BadHandle,             // INVALID_HANDLE
        223 => VfsError::FileTooLarge,        // FILE_TOO_LARGE
        1142 => VfsError::TooManyLinks,       // TOO_MANY_LINKS
        32 | 33 | 170 => VfsError::Busy,      // SHARING_VIOLATION, LOCK_VIOLATION, BUSY
        1921 => VfsError::Loop,               // CANT_RESOLVE_FILENAME
        50 => VfsError::NotSupported,         // NOT_SUPPORTED
        _ => VfsError::Io(io::Error::from_raw_os_error(code as i32)),
    }
}

/// The `VfsError` of an `io::Error` from std or a Win32 call.
pub(crate) fn error_from_io(e: io::Error) -> VfsError {
    match e.raw_os_error() {
        Some(code) if cfg!(windows) => error_from_win32(code as u32),
        _ => VfsError::from(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(s: &str) -> &OsStr {
        OsStr::new(s)
    }

    fn path(parts: &[&str]) -> RelPath {
        parts.iter().map(OsString::from).collect::<Vec<_>>().into()
    }

    #[test]
    fn win_names_refuse_separators_streams_and_dots() {
        assert!(check_win_name(os("file.txt")).is_ok());
        assert!(
            check_win_name(os("trailing.")).is_ok(),
            "lookups may see it"
        );
        for bad in ["", ".", "..", "a/b", "a\\b", "a:b", "file:stream", "a\0b"] {
            assert!(
                matches!(check_win_name(os(bad)), Err(VfsError::InvalidArgument)),
                "{bad:?}"
            );
        }
        assert!(matches!(
            check_win_name(os(&"x".repeat(256))),
            Err(VfsError::NameTooLong)
        ));
    }

    #[test]
    fn new_names_refuse_what_win32_cannot_handle() {
        for good in [
            "a", "cond", "console", "COM0", "COM10", "lpt", "x.y.z", "ünï",
        ] {
            assert!(check_new_name(os(good)).is_ok(), "{good:?}");
        }
        for bad in [
            "a.",
            "a ",
            "CON",
            "con",
            "Nul.txt",
            "aux.tar.gz",
            "COM1",
            "lpt9.log",
            "com³",
            "PRN .x",
            "a<b",
            "a>b",
            "a|b",
            "a?",
            "*",
            "q\"",
            "tab\there",
            "CONIN$",
        ] {
            assert!(
                matches!(check_new_name(os(bad)), Err(VfsError::InvalidArgument)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn paths_join_compare_and_rebase() {
        let p = join(&path(&["a", "b"]), os("c"));
        assert_eq!(&*p, &*path(&["a", "b", "c"]));
        assert!(same_component(os("Straße"), os("STRASSE")) || !same_component(os("x"), os("y")));
        assert!(same_component(os("ReadMe"), os("README")));
        assert!(!same_component(os("a"), os("b")));
        assert!(has_prefix(&p, &path(&["A"])));
        assert!(has_prefix(&p, &path(&[])));
        assert!(!has_prefix(&p, &path(&["a", "bc"])));
        assert!(!has_prefix(&path(&["a"]), &p));
        let moved = rebase(&p, &path(&["A", "B"]), &path(&["x"])).unwrap();
        assert_eq!(&*moved, &*path(&["x", "c"]));
        assert!(rebase(&p, &path(&["b"]), &path(&["x"])).is_none());
        let whole = rebase(&p, &p, &path(&["z"])).unwrap();
        assert_eq!(&*whole, &*path(&["z"]));
    }

    #[test]
    fn remembered_paths_are_deduplicated_and_bounded() {
        let mut paths = Vec::new();
        remember_path(&mut paths, path(&["a"]));
        remember_path(&mut paths, path(&["b"]));
        remember_path(&mut paths, path(&["A"]));
        assert_eq!(paths.len(), 2);
        assert_eq!(&*paths[0], &*path(&["A"]), "most recent first");
        for i in 0..20 {
            remember_path(&mut paths, path(&[&format!("n{i}")]));
        }
        assert_eq!(paths.len(), MAX_PATHS);
        assert!(forget_path(&mut paths, &path(&["N19"])));
        assert!(!forget_path(&mut paths, &path(&["n19"])));
        assert_eq!(paths.len(), MAX_PATHS - 1);
    }

    #[test]
    fn kinds_and_modes_are_synthesized() {
        assert_eq!(kind_of(0x20, 0), FileType::RegularFile);
        assert_eq!(kind_of(ATTR_DIRECTORY, 0), FileType::Directory);
        assert_eq!(kind_of(ATTR_REPARSE_POINT, TAG_SYMLINK), FileType::Symlink);
        assert_eq!(
            kind_of(ATTR_REPARSE_POINT | ATTR_DIRECTORY, TAG_SYMLINK),
            FileType::Symlink
        );
        assert_eq!(
            kind_of(ATTR_REPARSE_POINT | ATTR_DIRECTORY, TAG_MOUNT_POINT),
            FileType::Symlink
        );
        assert_eq!(kind_of(ATTR_REPARSE_POINT, TAG_AF_UNIX), FileType::Socket);
        // A cloud placeholder (not a name surrogate) keeps its kind.
        assert_eq!(
            kind_of(ATTR_REPARSE_POINT | ATTR_DIRECTORY, 0x9000_601A),
            FileType::Directory
        );
        assert_eq!(
            kind_of(ATTR_REPARSE_POINT, 0x8000_0013),
            FileType::RegularFile
        );
        // The tag alone means nothing without the attribute.
        assert_eq!(kind_of(0, TAG_SYMLINK), FileType::RegularFile);

        assert_eq!(perm_of(FileType::Directory, ATTR_READONLY), 0o755);
        assert_eq!(perm_of(FileType::RegularFile, 0), 0o644);
        assert_eq!(perm_of(FileType::RegularFile, ATTR_READONLY), 0o444);
        assert_eq!(perm_of(FileType::Symlink, ATTR_READONLY), 0o777);
    }

    #[test]
    fn chmod_toggles_readonly_on_the_write_bit() {
        let f = FileType::RegularFile;
        assert_eq!(attributes_for_mode(f, 0x20, 0o444), Some(0x21));
        assert_eq!(attributes_for_mode(f, 0x21, 0o444), None);
        assert_eq!(attributes_for_mode(f, 0x21, 0o644), Some(0x20));
        assert_eq!(
            attributes_for_mode(f, ATTR_READONLY, 0o600),
            Some(ATTR_NORMAL)
        );
        assert_eq!(
            attributes_for_mode(f, ATTR_NORMAL, 0o400),
            Some(ATTR_READONLY)
        );
        assert_eq!(attributes_for_mode(f, 0x20, 0o755), None);
        assert_eq!(attributes_for_mode(FileType::Directory, 0x10, 0o500), None);
        assert_eq!(attributes_for_mode(FileType::Symlink, 0x400, 0o500), None);
    }

    #[test]
    fn attributes_from_a_host_stat() {
        let st = WinStat {
            volume: 7,
            index: 42,
            attributes: 0x20 | ATTR_READONLY,
            tag: 0,
            size: 1000,
            allocated: 4096,
            nlink: 2,
            created: 116_444_736_000_000_000, // 1970-01-01
            accessed: 116_444_736_000_000_000 + 10_000_000,
            written: 116_444_736_000_000_000 + 20_000_005,
            changed: 116_444_736_000_000_000 + 30_000_000,
        };
        assert_eq!(st.key(), (7, 42));
        let a = attr_from_stat(Ino(5), &st, 0, (1000, 100));
        assert_eq!(
            (
                a.ino, a.kind, a.perm, a.nlink, a.uid, a.gid, a.size, a.blocks
            ),
            (Ino(5), FileType::RegularFile, 0o444, 2, 1000, 100, 1000, 8)
        );
        assert_eq!(a.crtime, UNIX_EPOCH);
        assert_eq!(a.atime, UNIX_EPOCH + Duration::from_secs(1));
        assert_eq!(a.mtime, UNIX_EPOCH + Duration::new(2, 500));
        assert_eq!(a.ctime, UNIX_EPOCH + Duration::from_secs(3));

        let dir = WinStat {
            attributes: ATTR_DIRECTORY,
            size: 4096,
            nlink: 1,
            ..st
        };
        let a = attr_from_stat(Ino(6), &dir, 0, (0, 0));
        assert_eq!(
            (a.kind, a.perm, a.nlink, a.size),
            (FileType::Directory, 0o755, 1, 0)
        );

        let link = WinStat {
            attributes: ATTR_REPARSE_POINT,
            tag: TAG_SYMLINK,
            size: 0,
            nlink: 1,
            ..st
        };
        let a = attr_from_stat(Ino(7), &link, 11, (0, 0));
        assert_eq!(
            (a.kind, a.perm, a.size, a.nlink),
            (FileType::Symlink, 0o777, 11, 1)
        );
        // A file deleted while open reports no links.
        let gone = WinStat { nlink: 0, ..st };
        assert_eq!(attr_from_stat(Ino(8), &gone, 0, (0, 0)).nlink, 0);
    }

    #[test]
    fn filetimes_round_trip() {
        let cases = [
            UNIX_EPOCH,
            UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_700),
            UNIX_EPOCH - Duration::from_secs(86_400 * 365 * 100),
        ];
        for t in cases {
            let ft = system_to_filetime(t).unwrap();
            assert_eq!(filetime_to_system(ft), t, "{t:?}");
        }
        // Sub-100ns parts are truncated.
        let t = UNIX_EPOCH + Duration::new(5, 199);
        assert_eq!(
            filetime_to_system(system_to_filetime(t).unwrap()),
            UNIX_EPOCH + Duration::new(5, 100)
        );
        assert_eq!(
            system_to_filetime(UNIX_EPOCH).unwrap(),
            116_444_736_000_000_000
        );
        // 1601-01-01 itself would mean "unchanged": one tick later instead.
        let start = UNIX_EPOCH - Duration::from_secs(EPOCH_DIFF_SECS);
        assert_eq!(system_to_filetime(start).unwrap(), 1);
        assert!(matches!(
            system_to_filetime(start - Duration::from_secs(1)),
            Err(VfsError::InvalidArgument)
        ));
        if let Some(far) = UNIX_EPOCH.checked_add(Duration::from_secs(u64::MAX / 4)) {
            assert!(matches!(
                system_to_filetime(far),
                Err(VfsError::InvalidArgument)
            ));
        }
        assert_eq!(filetime_to_system(-5), filetime_to_system(0));
        assert_eq!(filetime_to_system(0), start);
    }

    #[test]
    fn cookies_are_stable_nonzero_and_below_2_63() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..10_000 {
            let name = format!("file{i}");
            let c = name_cookie(os(&name));
            assert!(c != 0 && c < 1 << 63, "{name}: {c}");
            assert_eq!(c, name_cookie(os(&name)));
            assert!(seen.insert(c), "collision at {name}");
        }
        assert_ne!(name_cookie(os("a")), name_cookie(os("A")));
        let sorted = [3u64, 5, 5, 9];
        assert_eq!(resume_index(&sorted, |c| *c, 0), 0);
        assert_eq!(resume_index(&sorted, |c| *c, 3), 1);
        assert_eq!(resume_index(&sorted, |c| *c, 4), 1);
        assert_eq!(resume_index(&sorted, |c| *c, 5), 3);
        assert_eq!(resume_index(&sorted, |c| *c, 9), 4);
        assert_eq!(resume_index(&sorted, |c| *c, u64::MAX), 4);
    }

    /// One `FILE_ID_BOTH_DIR_INFO` record, padded to 8 bytes when followed by another.
    fn record(name: &str, attributes: u32, ea: u32, id: u64, last: bool) -> Vec<u8> {
        let name: Vec<u16> = name.encode_utf16().collect();
        let len = dir_info::NAME + name.len() * 2;
        let padded = len.next_multiple_of(8);
        let mut r = vec![0u8; padded];
        let next = if last { 0 } else { padded as u32 };
        r[dir_info::NEXT..][..4].copy_from_slice(&next.to_le_bytes());
        r[dir_info::ATTRIBUTES..][..4].copy_from_slice(&attributes.to_le_bytes());
        r[dir_info::NAME_LEN..][..4].copy_from_slice(&((name.len() * 2) as u32).to_le_bytes());
        r[dir_info::EA_SIZE..][..4].copy_from_slice(&ea.to_le_bytes());
        r[dir_info::FILE_ID..][..8].copy_from_slice(&id.to_le_bytes());
        for (i, u) in name.iter().enumerate() {
            r[dir_info::NAME + 2 * i..][..2].copy_from_slice(&u.to_le_bytes());
        }
        if last {
            r.truncate(len);
        }
        r
    }

    #[test]
    fn directory_records_parse_and_skip_dots() {
        let mut buf = record(".", ATTR_DIRECTORY, 0, 1, false);
        buf.extend(record("..", ATTR_DIRECTORY, 0, 2, false));
        buf.extend(record("hello.txt", 0x20, 77, 3, false));
        buf.extend(record("link", ATTR_REPARSE_POINT, TAG_SYMLINK, 4, false));
        buf.extend(record("ü", ATTR_DIRECTORY, 0, u64::MAX, true));
        let e = parse_dir_records(&buf).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(String::from_utf16(&e[0].name).unwrap(), "hello.txt");
        assert_eq!((e[0].attributes, e[0].tag, e[0].file_id), (0x20, 0, 3));
        assert_eq!((e[1].tag, e[1].file_id), (TAG_SYMLINK, 4));
        assert_eq!(String::from_utf16(&e[2].name).unwrap(), "ü");
        assert_eq!(e[2].file_id, u64::MAX);
    }

    #[test]
    fn malformed_directory_records_are_errors() {
        assert!(parse_dir_records(&[]).is_err());
        let mut r = record("abc", 0, 0, 1, true);
        r.truncate(r.len() - 1);
        assert!(parse_dir_records(&r).is_err(), "name cut short");
        let mut r = record("abc", 0, 0, 1, false);
        assert!(parse_dir_records(&r).is_err(), "next points past the end");
        r[..4].copy_from_slice(&8u32.to_le_bytes());
        assert!(parse_dir_records(&r).is_err(), "next inside the record");
        let mut r = record("abc", 0, 0, 1, true);
        r[dir_info::NAME_LEN..][..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse_dir_records(&r).is_err(), "huge name length");
    }

    fn wide(s: &str) -> Vec<u16> {
        s.encode_utf16().collect()
    }

    #[test]
    fn symlink_reparse_data_round_trips() {
        for (target, relative) in [
            ("../a/b", true),
            ("x", true),
            ("/etc/passwd", true),
            ("C:\\Windows", false),
            ("\\\\server\\share", false),
            ("ünï/ç", true),
        ] {
            let buf = symlink_reparse_buffer(&wide(target)).unwrap();
            assert_eq!(u32_at(&buf, 0), Some(TAG_SYMLINK));
            assert_eq!(usize::from(u16_at(&buf, 4).unwrap()), buf.len() - 8);
            let flags = u32_at(&buf, 16).unwrap();
            assert_eq!(flags == SYMLINK_FLAG_RELATIVE, relative, "{target}");
            assert_eq!(parse_link_target(&buf).unwrap(), wide(target));
        }
        assert!(matches!(
            symlink_reparse_buffer(&vec![b'a' as u16; 5000]),
            Err(VfsError::NameTooLong)
        ));
    }

    #[test]
    fn junction_and_foreign_reparse_data() {
        // A junction made by mklink /J: substitute \??\C:\t, print C:\t.
        let (sub, print) = (wide("\\??\\C:\\t"), wide("C:\\t"));
        let mut buf = Vec::new();
        buf.extend_from_slice(&TAG_MOUNT_POINT.to_le_bytes());
        let data = 8 + (sub.len() + print.len()) * 2;
        buf.extend_from_slice(&(data as u16).to_le_bytes());
        buf.extend_from_slice(&0u16.to_le_bytes());
        for v in [0, sub.len() * 2, sub.len() * 2, print.len() * 2] {
            buf.extend_from_slice(&(v as u16).to_le_bytes());
        }
        sub.iter()
            .chain(&print)
            .for_each(|u| buf.extend_from_slice(&u.to_le_bytes()));
        assert_eq!(parse_link_target(&buf).unwrap(), print);
        // Without a print name, the substitute name loses its NT prefix.
        buf[14..16].copy_from_slice(&0u16.to_le_bytes());
        assert_eq!(parse_link_target(&buf).unwrap(), wide("C:\\t"));
        // Not a link.
        let mut other = buf.clone();
        other[..4].copy_from_slice(&0x8000_0013u32.to_le_bytes());
        assert!(matches!(
            parse_link_target(&other),
            Err(VfsError::InvalidArgument)
        ));
        // Truncated.
        assert!(matches!(
            parse_link_target(&buf[..18]),
            Err(VfsError::Io(_))
        ));
        assert!(matches!(parse_link_target(&[]), Err(VfsError::Io(_))));
    }

    #[test]
    fn error_tables() {
        assert!(matches!(
            error_from_ntstatus(0xC000_00BAu32 as i32),
            Some(VfsError::IsDir)
        ));
        assert!(matches!(
            error_from_ntstatus(0xC000_0103u32 as i32),
            Some(VfsError::NotDir)
        ));
        assert!(matches!(
            error_from_ntstatus(0xC000_0101u32 as i32),
            Some(VfsError::NotEmpty)
        ));
        assert!(matches!(
            error_from_ntstatus(0xC000_0034u32 as i32),
            Some(VfsError::NotFound)
        ));
        assert!(matches!(
            error_from_ntstatus(0xC000_0061u32 as i32),
            Some(VfsError::NotPermitted)
        ));
        assert!(error_from_ntstatus(0xC000_0001u32 as i32).is_none());
        assert!(matches!(error_from_win32(2), VfsError::NotFound));
        assert!(matches!(error_from_win32(145), VfsError::NotEmpty));
        assert!(matches!(error_from_win32(183), VfsError::Exists));
        assert!(matches!(error_from_win32(1314), VfsError::NotPermitted));
        assert!(matches!(error_from_win32(267), VfsError::NotDir));
        match error_from_win32(1117) {
            VfsError::Io(e) => assert_eq!(e.raw_os_error(), Some(1117)),
            other => panic!("{other:?}"),
        }
    }
}
