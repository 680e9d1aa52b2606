//! File attributes and file information from [`Attr`], and symlink reparse data.
//!
//! Decisions:
//! - FILE_ATTRIBUTE_READONLY is shown on a non-directory without the owner `w` bit.
//!   Directories never show it: on Windows it does not stop changes inside a directory
//!   (POSIX `w` does) and it would only make Windows refuse to delete the directory.
//!   Setting READONLY clears all three `w` bits; clearing it sets the owner's `w` bit.
//! - FILE_ATTRIBUTE_HIDDEN for names starting with `.` when `hide_dotfiles` is on.
//! - HIDDEN, SYSTEM, ARCHIVE and the other attributes a program sets are not stored
//!   (the trait has no slot for them) and are silently dropped.
//! - Symlinks carry FILE_ATTRIBUTE_REPARSE_POINT with IO_REPARSE_TAG_SYMLINK, plus
//!   FILE_ATTRIBUTE_DIRECTORY when the target resolves to a directory (Windows needs
//!   that to follow a directory link). Fifos, sockets and devices show as SYSTEM files.
//! - The allocation size is the size rounded up to [`ALLOC_UNIT`] (the volume's
//!   cluster size): the trait's `blocks` describe sparse storage that Windows programs
//!   misread as a truncated file.
//! - Absolute POSIX symlink targets (`/a/b`) are shown as root-relative Windows links
//!   (`\a\b`), i.e. relative to the mount's drive root; relative targets keep their
//!   meaning. A link Windows creates with an absolute target (`C:\x`, `\??\C:\x`) is
//!   refused with NOT_SUPPORTED: it has no meaning inside the mounted filesystem.

use vmount_core::{Attr, FileType};

use crate::status::{
    STATUS_BUFFER_TOO_SMALL, STATUS_IO_REPARSE_DATA_INVALID, STATUS_NOT_A_REPARSE_POINT,
    STATUS_NOT_SUPPORTED, WinResult,
};
use crate::time::to_filetime;

pub(crate) const FILE_ATTRIBUTE_READONLY: u32 = 0x1;
pub(crate) const FILE_ATTRIBUTE_HIDDEN: u32 = 0x2;
pub(crate) const FILE_ATTRIBUTE_SYSTEM: u32 = 0x4;
pub(crate) const FILE_ATTRIBUTE_DIRECTORY: u32 = 0x10;
pub(crate) const FILE_ATTRIBUTE_NORMAL: u32 = 0x80;
pub(crate) const FILE_ATTRIBUTE_REPARSE_POINT: u32 = 0x400;
/// "Do not change the attributes" in set_basic_info.
pub(crate) const INVALID_FILE_ATTRIBUTES: u32 = u32::MAX;
pub(crate) const IO_REPARSE_TAG_SYMLINK: u32 = 0xA000_000C;
const SYMLINK_FLAG_RELATIVE: u32 = 1;

/// The cluster size the volume reports and allocation sizes are rounded to.
pub(crate) const ALLOC_UNIT: u64 = 4096;

/// WinFsp's `FileInfo`, in neutral form; the Windows shim copies it field by field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct FileMeta {
    pub(crate) attributes: u32,
    pub(crate) reparse_tag: u32,
    pub(crate) allocation_size: u64,
    pub(crate) file_size: u64,
    pub(crate) creation_time: u64,
    pub(crate) last_access_time: u64,
    pub(crate) last_write_time: u64,
    pub(crate) change_time: u64,
    pub(crate) index_number: u64,
}

/// The attribute flags of a file named `name`. `link_is_dir` says whether a symlink's
/// target is a directory (ignored for other kinds).
pub(crate) fn attributes(attr: &Attr, name: &str, hide_dotfiles: bool, link_is_dir: bool) -> u32 {
    let mut a = match attr.kind {
        FileType::Directory => FILE_ATTRIBUTE_DIRECTORY,
        FileType::Symlink if link_is_dir => FILE_ATTRIBUTE_REPARSE_POINT | FILE_ATTRIBUTE_DIRECTORY,
        FileType::Symlink => FILE_ATTRIBUTE_REPARSE_POINT,
        FileType::RegularFile => 0,
        FileType::Fifo | FileType::Socket | FileType::CharDevice | FileType::BlockDevice => {
            FILE_ATTRIBUTE_SYSTEM
        }
    };
    if attr.kind != FileType::Directory && attr.perm & 0o200 == 0 {
        a |= FILE_ATTRIBUTE_READONLY;
    }
    if hide_dotfiles && name.starts_with('.') {
        a |= FILE_ATTRIBUTE_HIDDEN;
    }
    if a == 0 {
        a = FILE_ATTRIBUTE_NORMAL;
    }
    a
}

/// The complete file information of a file named `name` (empty for the root).
pub(crate) fn file_meta(
    attr: &Attr,
    name: &str,
    hide_dotfiles: bool,
    link_is_dir: bool,
) -> FileMeta {
    let symlink = attr.kind == FileType::Symlink;
    FileMeta {
        attributes: attributes(attr, name, hide_dotfiles, link_is_dir),
        reparse_tag: if symlink { IO_REPARSE_TAG_SYMLINK } else { 0 },
        allocation_size: round_up(attr.size),
        file_size: attr.size,
        creation_time: to_filetime(attr.crtime),
        last_access_time: to_filetime(attr.atime),
        last_write_time: to_filetime(attr.mtime),
        change_time: to_filetime(attr.ctime),
        index_number: attr.ino.0,
    }
}

/// `size` rounded up to [`ALLOC_UNIT`], saturating.
pub(crate) fn round_up(size: u64) -> u64 {
    size.div_ceil(ALLOC_UNIT).saturating_mul(ALLOC_UNIT)
}

/// The new permission bits after set_basic_info asked for `attributes`, or `None` when
/// the READONLY state does not change.
pub(crate) fn perm_for_attributes(attr: &Attr, attributes: u32) -> Option<u16> {
    if attributes == INVALID_FILE_ATTRIBUTES || attr.kind == FileType::Directory {
        return None;
    }
    let want_ro = attributes & FILE_ATTRIBUTE_READONLY != 0;
    let is_ro = attr.perm & 0o200 == 0;
    match (want_ro, is_ro) {
        (true, false) => Some(attr.perm & !0o222),
        (false, true) => Some(attr.perm | 0o200),
        _ => None,
    }
}

/// A POSIX symlink target as a symlink REPARSE_DATA_BUFFER (tag, length, substitute name
/// and print name, both the Windows form of the target).
pub(crate) fn symlink_reparse_data(target: &str) -> Vec<u8> {
    let win: Vec<u16> = target.replace('/', "\\").encode_utf16().collect();
    let name_bytes = win.len() * 2;
    // 12 bytes of offsets/lengths/flags, then the substitute and the print name.
    let data_len = 12 + 2 * name_bytes;
    let mut b = Vec::with_capacity(8 + data_len);
    b.extend_from_slice(&IO_REPARSE_TAG_SYMLINK.to_le_bytes());
    b.extend_from_slice(&(data_len as u16).to_le_bytes());
    b.extend_from_slice(&0u16.to_le_bytes());
    b.extend_from_slice(&0u16.to_le_bytes()); // substitute offset
    b.extend_from_slice(&(name_bytes as u16).to_le_bytes());
    b.extend_from_slice(&(name_bytes as u16).to_le_bytes()); // print offset
    b.extend_from_slice(&(name_bytes as u16).to_le_bytes());
    b.extend_from_slice(&SYMLINK_FLAG_RELATIVE.to_le_bytes());
    for _ in 0..2 {
        for u in &win {
            b.extend_from_slice(&u.to_le_bytes());
        }
    }
    b
}

/// Copies reparse data into `out`, returning the length, or BUFFER_TOO_SMALL.
pub(crate) fn copy_out(data: &[u8], out: &mut [u8]) -> WinResult<u64> {
    let dst = out.get_mut(..data.len()).ok_or(STATUS_BUFFER_TOO_SMALL)?;
    dst.copy_from_slice(data);
    Ok(data.len() as u64)
}

/// Longest symlink name a reparse buffer can describe (its lengths are u16 bytes).
const MAX_TARGET_UNITS: usize = (u16::MAX as usize - 12) / 4;

/// The POSIX target of a symlink reparse buffer Windows sets (`CreateSymbolicLink`).
/// Only relative links (including root-relative `\a\b`) are accepted.
pub(crate) fn target_from_reparse_data(b: &[u8]) -> WinResult<String> {
    let u16_at = |o: usize| -> WinResult<u16> {
        let s = b.get(o..o + 2).ok_or(STATUS_IO_REPARSE_DATA_INVALID)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    };
    let u32_at = |o: usize| -> WinResult<u32> {
        let s = b.get(o..o + 4).ok_or(STATUS_IO_REPARSE_DATA_INVALID)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    };
    if u32_at(0)? != IO_REPARSE_TAG_SYMLINK {
        return Err(STATUS_NOT_A_REPARSE_POINT.into());
    }
    let data_len = usize::from(u16_at(4)?);
    if b.len() < 8 + data_len || data_len < 12 {
        return Err(STATUS_IO_REPARSE_DATA_INVALID.into());
    }
    let sub_off = usize::from(u16_at(8)?);
    let sub_len = usize::from(u16_at(10)?);
    let flags = u32_at(16)?;
    let start = 20 + sub_off;
    let names = b
        .get(start..start + sub_len)
        .filter(|n| n.len() % 2 == 0 && 20 + sub_off + sub_len <= 8 + data_len)
        .ok_or(STATUS_IO_REPARSE_DATA_INVALID)?;
    let units: Vec<u16> = names
        .as_chunks::<2>()
        .0
        .iter()
        .map(|c| u16::from_le_bytes(*c))
        .collect();
    if units.is_empty() || units.len() > MAX_TARGET_UNITS {
        return Err(STATUS_IO_REPARSE_DATA_INVALID.into());
    }
    if flags & SYMLINK_FLAG_RELATIVE == 0 {
        return Err(STATUS_NOT_SUPPORTED.into());
    }
    let s = String::from_utf16(&units).map_err(|_| STATUS_IO_REPARSE_DATA_INVALID)?;
    if s.contains(':') || s.contains('\0') {
        return Err(STATUS_NOT_SUPPORTED.into());
    }
    Ok(s.replace('\\', "/"))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use vmount_core::Ino;

    use super::*;
    use crate::status::WinError;

    fn attr(kind: FileType, perm: u16, size: u64) -> Attr {
        Attr {
            ino: Ino(42),
            kind,
            perm,
            nlink: 1,
            uid: 0,
            gid: 0,
            size,
            blocks: 0,
            blksize: 4096,
            rdev: 0,
            atime: UNIX_EPOCH + Duration::from_secs(1),
            mtime: UNIX_EPOCH + Duration::from_secs(2),
            ctime: UNIX_EPOCH + Duration::from_secs(3),
            crtime: UNIX_EPOCH + Duration::from_secs(4),
        }
    }

    #[test]
    fn attribute_flags() {
        let f = attr(FileType::RegularFile, 0o644, 0);
        assert_eq!(attributes(&f, "a.txt", true, false), FILE_ATTRIBUTE_NORMAL);
        assert_eq!(
            attributes(&attr(FileType::RegularFile, 0o444, 0), "a", false, false),
            FILE_ATTRIBUTE_READONLY
        );
        assert_eq!(attributes(&f, ".git", true, false), FILE_ATTRIBUTE_HIDDEN);
        assert_eq!(attributes(&f, ".git", false, false), FILE_ATTRIBUTE_NORMAL);
        let d = attr(FileType::Directory, 0o555, 0);
        assert_eq!(attributes(&d, "d", true, false), FILE_ATTRIBUTE_DIRECTORY);
        let l = attr(FileType::Symlink, 0o777, 3);
        assert_eq!(
            attributes(&l, "l", true, false),
            FILE_ATTRIBUTE_REPARSE_POINT
        );
        assert_eq!(
            attributes(&l, "l", true, true),
            FILE_ATTRIBUTE_REPARSE_POINT | FILE_ATTRIBUTE_DIRECTORY
        );
        assert_eq!(
            attributes(&attr(FileType::Fifo, 0o644, 0), "p", true, false),
            FILE_ATTRIBUTE_SYSTEM
        );
    }

    #[test]
    fn file_info_fields() {
        let m = file_meta(&attr(FileType::RegularFile, 0o644, 5000), "f", false, false);
        assert_eq!(m.file_size, 5000);
        assert_eq!(m.allocation_size, 8192);
        assert_eq!(m.index_number, 42);
        assert_eq!(m.reparse_tag, 0);
        assert_eq!(m.last_access_time, 116_444_736_010_000_000);
        assert_eq!(m.last_write_time, 116_444_736_020_000_000);
        assert_eq!(m.change_time, 116_444_736_030_000_000);
        assert_eq!(m.creation_time, 116_444_736_040_000_000);
        assert_eq!(round_up(0), 0);
        assert_eq!(round_up(4096), 4096);
        assert_eq!(round_up(u64::MAX), u64::MAX);
        let l = file_meta(&attr(FileType::Symlink, 0o777, 3), "l", false, false);
        assert_eq!(l.reparse_tag, IO_REPARSE_TAG_SYMLINK);
    }

    #[test]
    fn readonly_attribute_sets_and_clears_write_bits() {
        let f = attr(FileType::RegularFile, 0o664, 0);
        assert_eq!(
            perm_for_attributes(&f, FILE_ATTRIBUTE_READONLY),
            Some(0o444)
        );
        assert_eq!(perm_for_attributes(&f, FILE_ATTRIBUTE_NORMAL), None);
        assert_eq!(perm_for_attributes(&f, INVALID_FILE_ATTRIBUTES), None);
        let ro = attr(FileType::RegularFile, 0o4444, 0);
        assert_eq!(perm_for_attributes(&ro, 0), Some(0o4644));
        assert_eq!(
            perm_for_attributes(&ro, FILE_ATTRIBUTE_READONLY | FILE_ATTRIBUTE_HIDDEN),
            None
        );
        let d = attr(FileType::Directory, 0o755, 0);
        assert_eq!(perm_for_attributes(&d, FILE_ATTRIBUTE_READONLY), None);
    }

    #[test]
    fn symlink_reparse_round_trip() {
        let data = symlink_reparse_data("../dir/target.txt");
        assert_eq!(&data[..4], &IO_REPARSE_TAG_SYMLINK.to_le_bytes());
        assert_eq!(
            usize::from(u16::from_le_bytes([data[4], data[5]])) + 8,
            data.len()
        );
        assert_eq!(
            target_from_reparse_data(&data).unwrap(),
            "../dir/target.txt"
        );
        // An absolute POSIX target becomes root-relative and comes back the same.
        let data = symlink_reparse_data("/etc/hosts");
        assert_eq!(target_from_reparse_data(&data).unwrap(), "/etc/hosts");
        let mut out = [0u8; 8];
        assert_eq!(
            copy_out(&data, &mut out),
            Err(WinError::Status(STATUS_BUFFER_TOO_SMALL))
        );
        let mut out = vec![0u8; 200];
        assert_eq!(copy_out(&data, &mut out).unwrap(), data.len() as u64);
    }

    #[test]
    fn bad_reparse_buffers_are_refused() {
        let good = symlink_reparse_data("a");
        assert!(target_from_reparse_data(&good[..10]).is_err());
        let mut absolute = good.clone();
        absolute[16] = 0; // clear SYMLINK_FLAG_RELATIVE
        assert_eq!(
            target_from_reparse_data(&absolute),
            Err(WinError::Status(STATUS_NOT_SUPPORTED))
        );
        let mut other_tag = good.clone();
        other_tag[0] = 3;
        assert_eq!(
            target_from_reparse_data(&other_tag),
            Err(WinError::Status(STATUS_NOT_A_REPARSE_POINT))
        );
        let mut long_name = good.clone();
        long_name[10] = 0xF0; // substitute length past the buffer
        assert!(target_from_reparse_data(&long_name).is_err());
        assert!(target_from_reparse_data(&symlink_reparse_data("C:/x")).is_err());
        for len in 0..good.len() {
            let _ = target_from_reparse_data(&good[..len]);
        }
    }
}
