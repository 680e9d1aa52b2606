//! The one table from [`VfsError`] to NTSTATUS, plus the NTSTATUS values the adapter
//! answers with itself. Platform-neutral so the table is unit-tested on every host.

use std::io;

use vmount_core::VfsError;

/// An NTSTATUS as the signed 32-bit value WinFsp passes around.
pub(crate) type NtStatus = i32;

/// Reinterprets the documented unsigned spelling of an NTSTATUS.
const fn nt(v: u32) -> NtStatus {
    v as i32
}

#[cfg(test)]
pub(crate) const STATUS_SUCCESS: NtStatus = 0;
pub(crate) const STATUS_INVALID_HANDLE: NtStatus = nt(0xC000_0008);
pub(crate) const STATUS_INVALID_PARAMETER: NtStatus = nt(0xC000_000D);
pub(crate) const STATUS_INVALID_DEVICE_REQUEST: NtStatus = nt(0xC000_0010);
pub(crate) const STATUS_END_OF_FILE: NtStatus = nt(0xC000_0011);
pub(crate) const STATUS_ACCESS_DENIED: NtStatus = nt(0xC000_0022);
pub(crate) const STATUS_BUFFER_TOO_SMALL: NtStatus = nt(0xC000_0023);
pub(crate) const STATUS_OBJECT_NAME_INVALID: NtStatus = nt(0xC000_0033);
pub(crate) const STATUS_OBJECT_NAME_NOT_FOUND: NtStatus = nt(0xC000_0034);
pub(crate) const STATUS_OBJECT_NAME_COLLISION: NtStatus = nt(0xC000_0035);
pub(crate) const STATUS_OBJECT_PATH_NOT_FOUND: NtStatus = nt(0xC000_003A);
pub(crate) const STATUS_SHARING_VIOLATION: NtStatus = nt(0xC000_0043);
pub(crate) const STATUS_NONEXISTENT_EA_ENTRY: NtStatus = nt(0xC000_0051);
pub(crate) const STATUS_INVALID_OWNER: NtStatus = nt(0xC000_005A);
pub(crate) const STATUS_INVALID_PRIMARY_GROUP: NtStatus = nt(0xC000_005B);
pub(crate) const STATUS_DELETE_PENDING: NtStatus = nt(0xC000_0056);
pub(crate) const STATUS_DISK_FULL: NtStatus = nt(0xC000_007F);
pub(crate) const STATUS_MEDIA_WRITE_PROTECTED: NtStatus = nt(0xC000_00A2);
pub(crate) const STATUS_FILE_IS_A_DIRECTORY: NtStatus = nt(0xC000_00BA);
pub(crate) const STATUS_NOT_SUPPORTED: NtStatus = nt(0xC000_00BB);
pub(crate) const STATUS_NOT_SAME_DEVICE: NtStatus = nt(0xC000_00D4);
pub(crate) const STATUS_UNEXPECTED_IO_ERROR: NtStatus = nt(0xC000_00E9);
pub(crate) const STATUS_DIRECTORY_NOT_EMPTY: NtStatus = nt(0xC000_0101);
pub(crate) const STATUS_NOT_A_DIRECTORY: NtStatus = nt(0xC000_0103);
pub(crate) const STATUS_CANNOT_DELETE: NtStatus = nt(0xC000_0121);
pub(crate) const STATUS_TOO_MANY_LINKS: NtStatus = nt(0xC000_0265);
pub(crate) const STATUS_NOT_A_REPARSE_POINT: NtStatus = nt(0xC000_0275);
pub(crate) const STATUS_IO_REPARSE_DATA_INVALID: NtStatus = nt(0xC000_0278);
pub(crate) const STATUS_REPARSE_POINT_NOT_RESOLVED: NtStatus = nt(0xC000_0280);
pub(crate) const STATUS_FILE_TOO_LARGE: NtStatus = nt(0xC000_0904);

/// What an operation answers WinFsp with when it fails: an NTSTATUS, or a Win32 error
/// code that WinFsp itself translates (`FspNtStatusFromWin32`) because only it knows the
/// full Win32-to-NTSTATUS table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WinError {
    /// A ready NTSTATUS.
    Status(NtStatus),
    /// A Win32 error code (`GetLastError`), e.g. from the Windows loopback filesystem.
    Win32(u32),
}

impl WinError {
    /// The NTSTATUS, when it is one (tests and logging).
    #[cfg(test)]
    pub(crate) fn status(self) -> Option<NtStatus> {
        match self {
            WinError::Status(s) => Some(s),
            WinError::Win32(_) => None,
        }
    }
}

impl From<NtStatus> for WinError {
    fn from(s: NtStatus) -> Self {
        WinError::Status(s)
    }
}

impl From<VfsError> for WinError {
    fn from(e: VfsError) -> Self {
        to_win_error(&e)
    }
}

/// The result type of the neutral operation layer.
pub(crate) type WinResult<T> = Result<T, WinError>;

/// Maps a [`VfsError`] to what WinFsp is told, following DESIGN.md's error table. One
/// exhaustive `match`: a new variant breaks this build until it is mapped here.
///
/// `NotFound` is answered as OBJECT_NAME_NOT_FOUND here; the path resolver turns a
/// missing *intermediate* component into OBJECT_PATH_NOT_FOUND itself, because only it
/// knows where in the path the walk stopped.
pub(crate) fn to_win_error(e: &VfsError) -> WinError {
    let s = match e {
        VfsError::NotFound => STATUS_OBJECT_NAME_NOT_FOUND,
        VfsError::Exists => STATUS_OBJECT_NAME_COLLISION,
        VfsError::NotDir => STATUS_NOT_A_DIRECTORY,
        VfsError::IsDir => STATUS_FILE_IS_A_DIRECTORY,
        VfsError::NotEmpty => STATUS_DIRECTORY_NOT_EMPTY,
        // Windows has no separate "not the owner" status for file operations.
        VfsError::PermissionDenied | VfsError::NotPermitted => STATUS_ACCESS_DENIED,
        VfsError::ReadOnly => STATUS_MEDIA_WRITE_PROTECTED,
        VfsError::InvalidArgument => STATUS_INVALID_PARAMETER,
        VfsError::NameTooLong => STATUS_OBJECT_NAME_INVALID,
        VfsError::NoSpace => STATUS_DISK_FULL,
        VfsError::CrossDevice => STATUS_NOT_SAME_DEVICE,
        VfsError::Stale | VfsError::BadHandle => STATUS_INVALID_HANDLE,
        VfsError::FileTooLarge => STATUS_FILE_TOO_LARGE,
        VfsError::TooManyLinks => STATUS_TOO_MANY_LINKS,
        VfsError::NoAttribute => STATUS_NONEXISTENT_EA_ENTRY,
        VfsError::Range => STATUS_BUFFER_TOO_SMALL,
        // EBUSY: the object is in use, which Windows reports as a sharing violation.
        VfsError::Busy => STATUS_SHARING_VIOLATION,
        VfsError::Loop => STATUS_REPARSE_POINT_NOT_RESOLVED,
        VfsError::NoDataAtOffset => STATUS_END_OF_FILE,
        VfsError::Unimplemented => STATUS_INVALID_DEVICE_REQUEST,
        VfsError::NotSupported => STATUS_NOT_SUPPORTED,
        VfsError::Io(io) => return io_error(io, cfg!(windows)),
    };
    WinError::Status(s)
}

/// An `Io` error: its raw OS code is a Win32 error on Windows (WinFsp translates it); a
/// raw code from any other OS (an errno) means nothing to Windows, so it and code-less
/// errors become UNEXPECTED_IO_ERROR.
fn io_error(e: &io::Error, raw_is_win32: bool) -> WinError {
    match e.raw_os_error() {
        Some(code) if raw_is_win32 => WinError::Win32(code as u32),
        _ => WinError::Status(STATUS_UNEXPECTED_IO_ERROR),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_its_status() {
        let table = [
            (VfsError::NotFound, STATUS_OBJECT_NAME_NOT_FOUND),
            (VfsError::Exists, STATUS_OBJECT_NAME_COLLISION),
            (VfsError::NotDir, STATUS_NOT_A_DIRECTORY),
            (VfsError::IsDir, STATUS_FILE_IS_A_DIRECTORY),
            (VfsError::NotEmpty, STATUS_DIRECTORY_NOT_EMPTY),
            (VfsError::PermissionDenied, STATUS_ACCESS_DENIED),
            (VfsError::NotPermitted, STATUS_ACCESS_DENIED),
            (VfsError::ReadOnly, STATUS_MEDIA_WRITE_PROTECTED),
            (VfsError::InvalidArgument, STATUS_INVALID_PARAMETER),
            (VfsError::NameTooLong, STATUS_OBJECT_NAME_INVALID),
            (VfsError::NoSpace, STATUS_DISK_FULL),
            (VfsError::CrossDevice, STATUS_NOT_SAME_DEVICE),
            (VfsError::Stale, STATUS_INVALID_HANDLE),
            (VfsError::BadHandle, STATUS_INVALID_HANDLE),
            (VfsError::FileTooLarge, STATUS_FILE_TOO_LARGE),
            (VfsError::TooManyLinks, STATUS_TOO_MANY_LINKS),
            (VfsError::NoAttribute, STATUS_NONEXISTENT_EA_ENTRY),
            (VfsError::Range, STATUS_BUFFER_TOO_SMALL),
            (VfsError::Busy, STATUS_SHARING_VIOLATION),
            (VfsError::Loop, STATUS_REPARSE_POINT_NOT_RESOLVED),
            (VfsError::NoDataAtOffset, STATUS_END_OF_FILE),
            (VfsError::Unimplemented, STATUS_INVALID_DEVICE_REQUEST),
            (VfsError::NotSupported, STATUS_NOT_SUPPORTED),
        ];
        for (e, want) in table {
            assert_eq!(to_win_error(&e), WinError::Status(want), "{e:?}");
            // Every failure status has the error severity (top two bits 11).
            assert_eq!((want as u32) >> 30, 3, "{e:?}");
        }
    }

    #[test]
    fn io_errors_keep_win32_codes_only_on_windows() {
        let e = io::Error::from_raw_os_error(32); // ERROR_SHARING_VIOLATION on Windows
        assert_eq!(io_error(&e, true), WinError::Win32(32));
        assert_eq!(
            io_error(&e, false),
            WinError::Status(STATUS_UNEXPECTED_IO_ERROR)
        );
        let e = io::Error::other("no code");
        assert_eq!(
            io_error(&e, true),
            WinError::Status(STATUS_UNEXPECTED_IO_ERROR)
        );
        assert_eq!(
            to_win_error(&VfsError::Io(io::Error::other("x"))).status(),
            Some(STATUS_UNEXPECTED_IO_ERROR)
        );
    }
}
