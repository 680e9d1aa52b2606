//! The one error type every filesystem returns and every adapter maps.
//!
//! `VfsError` is deliberately *not* `#[non_exhaustive]`: each adapter maps it with one
//! exhaustive `match`, so adding a variant breaks every adapter's build until the new
//! case has been given its errno / NFS status / NTSTATUS. That is the point.

use std::io;

/// What went wrong, in terms every protocol can express.
///
/// The variants are the POSIX error conditions a filesystem reports to its callers.
/// [`VfsError::Io`] keeps the original `io::Error` (and so its raw OS error code) for
/// host failures that have no variant of their own; [`VfsError::from`] on an `io::Error`
/// classifies the common ones into their variants so that callers can match on them.
#[derive(Debug, thiserror::Error)]
pub enum VfsError {
    /// The name or inode does not exist (ENOENT).
    #[error("no such file or directory")]
    NotFound,
    /// The name already exists (EEXIST).
    #[error("file exists")]
    Exists,
    /// A path component or target that must be a directory is not one (ENOTDIR).
    #[error("not a directory")]
    NotDir,
    /// The operation needs a non-directory but got a directory (EISDIR).
    #[error("is a directory")]
    IsDir,
    /// The directory to remove or replace is not empty (ENOTEMPTY).
    #[error("directory not empty")]
    NotEmpty,
    /// Permission bits forbid the access (EACCES).
    #[error("permission denied")]
    PermissionDenied,
    /// The caller lacks the ownership or privilege the operation needs (EPERM), e.g.
    /// chown by a non-root user, or unlinking someone else's file in a sticky directory.
    #[error("operation not permitted")]
    NotPermitted,
    /// The filesystem is mounted read-only (EROFS).
    #[error("read-only filesystem")]
    ReadOnly,
    /// An argument is invalid (EINVAL).
    #[error("invalid argument")]
    InvalidArgument,
    /// A name is longer than the filesystem allows (ENAMETOOLONG).
    #[error("file name too long")]
    NameTooLong,
    /// No space is left, or the configured size limit was reached (ENOSPC).
    #[error("no space left on device")]
    NoSpace,
    /// A rename or link across filesystems (EXDEV).
    #[error("cross-device link")]
    CrossDevice,
    /// The inode no longer exists (ESTALE).
    #[error("stale file handle")]
    Stale,
    /// The file handle is not (or no longer) open, or not open for this access (EBADF).
    #[error("bad file handle")]
    BadHandle,
    /// The file would exceed the maximum file size (EFBIG).
    #[error("file too large")]
    FileTooLarge,
    /// Too many hard links to one inode (EMLINK).
    #[error("too many links")]
    TooManyLinks,
    /// The extended attribute does not exist (ENODATA / ENOATTR).
    #[error("no such attribute")]
    NoAttribute,
    /// The result does not fit the caller's buffer (ERANGE).
    #[error("result too large")]
    Range,
    /// The object is busy (EBUSY), e.g. renaming a directory into itself.
    #[error("resource busy")]
    Busy,
    /// Too many levels of symbolic links, or a symlink where none may be followed (ELOOP).
    #[error("too many levels of symbolic links")]
    Loop,
    /// `lseek` SEEK_DATA at or past end of file (ENXIO).
    #[error("no data past this offset")]
    NoDataAtOffset,
    /// This filesystem does not implement the operation at all (ENOSYS). Adapters may
    /// remember this and stop asking.
    #[error("operation not implemented by this filesystem")]
    Unimplemented,
    /// The operation exists but this particular case is unsupported (ENOTSUP / EOPNOTSUPP),
    /// e.g. an fallocate mode the filesystem lacks.
    #[error("operation not supported")]
    NotSupported,
    /// A host I/O error without a variant of its own; the raw OS code is kept.
    #[error("I/O error: {0}")]
    Io(#[source] io::Error),
}

/// The result type of every [`crate::Vfs`] method.
pub type VfsResult<T> = Result<T, VfsError>;

impl From<io::Error> for VfsError {
    /// Classifies a host error into the matching variant where there is one, so that
    /// loopback reports `NotFound` exactly like memfs does; anything else stays `Io` with
    /// its OS code intact.
    fn from(e: io::Error) -> Self {
        #[cfg(unix)]
        if let Some(code) = e.raw_os_error() {
            return Self::from_errno(code);
        }
        use io::ErrorKind as K;
        match e.kind() {
            K::NotFound => Self::NotFound,
            K::AlreadyExists => Self::Exists,
            K::NotADirectory => Self::NotDir,
            K::IsADirectory => Self::IsDir,
            K::DirectoryNotEmpty => Self::NotEmpty,
            K::PermissionDenied => Self::PermissionDenied,
            K::ReadOnlyFilesystem => Self::ReadOnly,
            K::InvalidInput => Self::InvalidArgument,
            K::InvalidFilename => Self::NameTooLong,
            K::StorageFull | K::QuotaExceeded => Self::NoSpace,
            K::CrossesDevices => Self::CrossDevice,
            K::StaleNetworkFileHandle => Self::Stale,
            K::FileTooLarge => Self::FileTooLarge,
            K::TooManyLinks => Self::TooManyLinks,
            K::ResourceBusy => Self::Busy,
            K::Unsupported => Self::NotSupported,
            _ => Self::Io(e),
        }
    }
}

impl VfsError {
    /// Builds the error for a raw POSIX errno, using a variant where one exists.
    #[cfg(unix)]
    pub fn from_errno(code: i32) -> Self {
        match code {
            libc::ENOENT => Self::NotFound,
            libc::EEXIST => Self::Exists,
            libc::ENOTDIR => Self::NotDir,
            libc::EISDIR => Self::IsDir,
            libc::ENOTEMPTY => Self::NotEmpty,
            libc::EACCES => Self::PermissionDenied,
            libc::EPERM => Self::NotPermitted,
            libc::EROFS => Self::ReadOnly,
            libc::EINVAL => Self::InvalidArgument,
            libc::ENAMETOOLONG => Self::NameTooLong,
            libc::ENOSPC | libc::EDQUOT => Self::NoSpace,
            libc::EXDEV => Self::CrossDevice,
            libc::ESTALE => Self::Stale,
            libc::EBADF => Self::BadHandle,
            libc::EFBIG => Self::FileTooLarge,
            libc::EMLINK => Self::TooManyLinks,
            #[cfg(any(target_os = "linux", target_os = "android"))]
            libc::ENODATA => Self::NoAttribute,
            #[cfg(not(any(target_os = "linux", target_os = "android")))]
            libc::ENOATTR => Self::NoAttribute,
            libc::ERANGE => Self::Range,
            libc::EBUSY => Self::Busy,
            libc::ELOOP => Self::Loop,
            libc::ENXIO => Self::NoDataAtOffset,
            libc::ENOSYS => Self::Unimplemented,
            libc::EOPNOTSUPP => Self::NotSupported,
            #[allow(unreachable_patterns)] // ENOTSUP == EOPNOTSUPP on Linux, not on macOS
            libc::ENOTSUP => Self::NotSupported,
            other => Self::Io(io::Error::from_raw_os_error(other)),
        }
    }

    /// The POSIX errno for this error: the one number FUSE and the loopback host speak.
    /// `Io` errors give their own OS code, or EIO when they have none.
    #[cfg(unix)]
    pub fn errno(&self) -> i32 {
        match self {
            Self::NotFound => libc::ENOENT,
            Self::Exists => libc::EEXIST,
            Self::NotDir => libc::ENOTDIR,
            Self::IsDir => libc::EISDIR,
            Self::NotEmpty => libc::ENOTEMPTY,
            Self::PermissionDenied => libc::EACCES,
            Self::NotPermitted => libc::EPERM,
            Self::ReadOnly => libc::EROFS,
            Self::InvalidArgument => libc::EINVAL,
            Self::NameTooLong => libc::ENAMETOOLONG,
            Self::NoSpace => libc::ENOSPC,
            Self::CrossDevice => libc::EXDEV,
            Self::Stale => libc::ESTALE,
            Self::BadHandle => libc::EBADF,
            Self::FileTooLarge => libc::EFBIG,
            Self::TooManyLinks => libc::EMLINK,
            #[cfg(any(target_os = "linux", target_os = "android"))]
            Self::NoAttribute => libc::ENODATA,
            #[cfg(not(any(target_os = "linux", target_os = "android")))]
            Self::NoAttribute => libc::ENOATTR,
            Self::Range => libc::ERANGE,
            Self::Busy => libc::EBUSY,
            Self::Loop => libc::ELOOP,
            Self::NoDataAtOffset => libc::ENXIO,
            Self::Unimplemented => libc::ENOSYS,
            Self::NotSupported => libc::EOPNOTSUPP,
            Self::Io(e) => e.raw_os_error().unwrap_or(libc::EIO),
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn errno_round_trips_for_every_unit_variant() {
        let all = [
            VfsError::NotFound,
            VfsError::Exists,
            VfsError::NotDir,
            VfsError::IsDir,
            VfsError::NotEmpty,
            VfsError::PermissionDenied,
            VfsError::NotPermitted,
            VfsError::ReadOnly,
            VfsError::InvalidArgument,
            VfsError::NameTooLong,
            VfsError::NoSpace,
            VfsError::CrossDevice,
            VfsError::Stale,
            VfsError::BadHandle,
            VfsError::FileTooLarge,
            VfsError::TooManyLinks,
            VfsError::NoAttribute,
            VfsError::Range,
            VfsError::Busy,
            VfsError::Loop,
            VfsError::NoDataAtOffset,
            VfsError::Unimplemented,
            VfsError::NotSupported,
        ];
        for e in all {
            let code = e.errno();
            let back = VfsError::from(io::Error::from_raw_os_error(code));
            assert_eq!(back.errno(), code, "{e:?}");
            assert_eq!(
                std::mem::discriminant(&back),
                std::mem::discriminant(&e),
                "{e:?}"
            );
        }
    }

    #[test]
    fn unknown_errno_keeps_its_code() {
        let e = VfsError::from(io::Error::from_raw_os_error(libc::EMFILE));
        assert!(matches!(e, VfsError::Io(_)));
        assert_eq!(e.errno(), libc::EMFILE);
        let e = VfsError::Io(io::Error::other("no code"));
        assert_eq!(e.errno(), libc::EIO);
    }
}

/// Why a backend cannot be used on this machine, and what fixes it. Every backend reports
/// its availability with this one type, so the CLI can show them side by side.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}; {fix}")]
pub struct Unavailable {
    /// What is missing, e.g. "/dev/fuse does not exist".
    pub reason: String,
    /// What to do about it, e.g. "load the module with `modprobe fuse`".
    pub fix: String,
}
