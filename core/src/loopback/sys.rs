//! Thin, safe wrappers around the host calls loopback makes. Every function takes
//! descriptors and single name components (already checked with `check_name`), never
//! paths; the only path ever built is `/proc/self/fd/N` on Linux, and only to reopen a
//! regular file or directory (see [`reopen`]).

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use crate::{FileType, SetTime, VfsError, VfsResult};

/// The host's `struct stat`.
pub(super) type Stat = libc::stat;

/// Turns a `-1` return into the thread's `errno`.
fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Like [`cvt`] for `ssize_t` results.
fn cvt_size(r: libc::ssize_t) -> io::Result<usize> {
    usize::try_from(r).map_err(|_| io::Error::last_os_error())
}

/// Retries a call interrupted by a signal.
fn retry<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// A name component as a C string. Names reach here only after `check_name`, so an
/// interior NUL cannot occur; it is reported as `InvalidArgument` all the same.
pub(super) fn cname(name: &OsStr) -> VfsResult<CString> {
    CString::new(name.as_bytes()).map_err(|_| VfsError::InvalidArgument)
}

/// Arbitrary bytes (a symlink target) as a C string; NUL bytes are invalid.
pub(super) fn cbytes(bytes: &[u8]) -> VfsResult<CString> {
    CString::new(bytes).map_err(|_| VfsError::InvalidArgument)
}

/// Wraps a descriptor number a successful call just returned.
fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful open-like call and is owned by no
    // one else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// An empty C string, for the `AT_EMPTY_PATH` calls.
#[cfg(target_os = "linux")]
const EMPTY: &CStr = c"";

pub(super) fn fstat(fd: BorrowedFd<'_>) -> io::Result<Stat> {
    let mut st = std::mem::MaybeUninit::<Stat>::uninit();
    // SAFETY: `st` is a valid out pointer for one `struct stat`.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: fstat succeeded and filled the whole struct.
    Ok(unsafe { st.assume_init() })
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`.
pub(super) fn fstatat(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Stat> {
    let mut st = std::mem::MaybeUninit::<Stat>::uninit();
    // SAFETY: valid descriptor, NUL-terminated name and an out pointer for one stat.
    cvt(unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    // SAFETY: fstatat succeeded and filled the whole struct.
    Ok(unsafe { st.assume_init() })
}

/// The (st_dev, st_ino) identity of a host object.
#[allow(clippy::unnecessary_cast)] // the field types differ between Linux and macOS
pub(super) fn key(st: &Stat) -> (u64, u64) {
    (st.st_dev as u64, st.st_ino as u64)
}

/// The kind encoded in a stat's mode.
#[allow(clippy::unnecessary_cast)]
pub(super) fn kind(st: &Stat) -> Option<FileType> {
    FileType::from_mode(st.st_mode as u32)
}

/// A seconds + nanoseconds timestamp as a `SystemTime`, before the epoch included.
pub(super) use crate::time::from_parts as time;

/// A `SystemTime` as a `timespec`, or `InvalidArgument` when out of range.
fn timespec(t: SetTime) -> VfsResult<libc::timespec> {
    let (sec, nsec) = match t {
        SetTime::Now => {
            return Ok(libc::timespec {
                tv_sec: 0,
                tv_nsec: libc::UTIME_NOW,
            });
        }
        SetTime::At(t) => {
            let (sec, nsec) = crate::time::to_parts(t).ok_or(VfsError::InvalidArgument)?;
            (sec, i64::from(nsec))
        }
    };
    #[allow(clippy::useless_conversion)] // time_t / c_long differ by platform
    Ok(libc::timespec {
        tv_sec: sec.try_into().map_err(|_| VfsError::InvalidArgument)?,
        tv_nsec: nsec.try_into().map_err(|_| VfsError::InvalidArgument)?,
    })
}

/// The pair `utimensat` takes: `UTIME_OMIT` for a time left alone.
pub(super) fn utimes_pair(
    atime: Option<SetTime>,
    mtime: Option<SetTime>,
) -> VfsResult<[libc::timespec; 2]> {
    let omit = libc::timespec {
        tv_sec: 0,
        tv_nsec: libc::UTIME_OMIT,
    };
    Ok([
        atime.map(timespec).transpose()?.unwrap_or(omit),
        mtime.map(timespec).transpose()?.unwrap_or(omit),
    ])
}

/// An offset as `off_t`, `InvalidArgument` when it does not fit.
pub(super) fn off(v: u64) -> VfsResult<libc::off_t> {
    libc::off_t::try_from(v).map_err(|_| VfsError::InvalidArgument)
}

// ---------------------------------------------------------------------------------------
// Opening.

/// Whether `openat2` is known to be missing (ENOSYS once seen).
#[cfg(target_os = "linux")]
static NO_OPENAT2: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Opens the single component `name` beneath directory `dir`, never following a symlink
/// anywhere: `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)`
/// where the kernel has it, else `openat` with `O_NOFOLLOW` (equivalent for a single
/// component). A trailing symlink with `O_PATH | O_NOFOLLOW` yields the link itself.
pub(super) fn open_beneath(
    dir: BorrowedFd<'_>,
    name: &CStr,
    flags: libc::c_int,
    mode: u32,
) -> io::Result<OwnedFd> {
    let flags = flags | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    #[cfg(target_os = "linux")]
    if !NO_OPENAT2.load(std::sync::atomic::Ordering::Relaxed) {
        let mut how: libc::open_how =
            // SAFETY: open_how is a plain C struct for which all-zero is valid.
            unsafe { std::mem::zeroed() };
        how.flags = flags as u64;
        how.mode = if flags & (libc::O_CREAT | libc::O_TMPFILE) != 0 {
            u64::from(mode)
        } else {
            0
        };
        how.resolve =
            libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
        let r = retry(|| {
            // SAFETY: valid descriptor, NUL-terminated name and a pointer to an
            // initialised open_how of the size passed.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_openat2,
                    dir.as_raw_fd(),
                    name.as_ptr(),
                    &how as *const libc::open_how,
                    std::mem::size_of::<libc::open_how>(),
                )
            };
            if r < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(r)
            }
        });
        match r {
            Ok(fd) => return Ok(owned(fd as RawFd)),
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                NO_OPENAT2.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            Err(e) => return Err(e),
        }
    }
    let fd = retry(|| {
        // SAFETY: valid descriptor and NUL-terminated name; the mode is passed as the
        // variadic argument open(2) expects.
        cvt(unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags, mode as libc::c_uint) })
    })?;
    Ok(owned(fd))
}

/// The flags of the descriptor a table entry holds for `name` in `dir`.
#[cfg(target_os = "linux")]
pub(super) const ENTRY_FLAGS: libc::c_int = libc::O_PATH;

/// Opens the table descriptor for `name` in `dir`: `O_PATH | O_NOFOLLOW` on Linux.
#[cfg(target_os = "linux")]
pub(super) fn open_entry(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    open_beneath(dir, name, ENTRY_FLAGS, 0)
}

/// Opens the table descriptor for `name` in `dir`. macOS has no `O_PATH`: directories
/// are held `O_RDONLY`, everything else `O_EVTONLY | O_SYMLINK` (no read permission
/// needed, symlinks opened as themselves, fifos not waited on). Sockets cannot be opened
/// at all there, so they cannot be looked up (`NotSupported`).
#[cfg(not(target_os = "linux"))]
pub(super) fn open_entry(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    match open_beneath(dir, name, libc::O_RDONLY | libc::O_DIRECTORY, 0) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {}
        other => return other,
    }
    let flags = libc::O_EVTONLY | libc::O_SYMLINK | libc::O_NONBLOCK | libc::O_CLOEXEC;
    // SAFETY: valid descriptor and NUL-terminated name.
    let fd = cvt(unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags) })?;
    Ok(owned(fd))
}

/// Opens the source directory itself as the root entry.
pub(super) fn open_root(path: &std::path::Path) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    #[cfg(target_os = "linux")]
    let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;
    #[cfg(not(target_os = "linux"))]
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC;
    // SAFETY: NUL-terminated path.
    let fd = cvt(unsafe { libc::open(c.as_ptr(), flags) })?;
    Ok(owned(fd))
}

/// `/proc/self/fd/N` for a table descriptor.
#[cfg(target_os = "linux")]
fn proc_path(fd: BorrowedFd<'_>) -> CString {
    let s = format!("/proc/self/fd/{}", fd.as_raw_fd());
    // A formatted number has no NUL byte.
    CString::new(s).unwrap_or_default()
}

/// Reopens a table descriptor of a regular file or directory for I/O with `flags`
/// (`O_RDONLY`/`O_WRONLY`/`O_RDWR` plus `O_APPEND`, `O_TRUNC`, `O_SYNC`...), checked
/// against the calling thread's credentials, through `/proc/self/fd/N`, which names
/// exactly the held inode (and, unlike `openat(fd, ".")`, needs no search permission on
/// a directory, only read). Anything else (symlinks above all, which this would follow)
/// is refused.
///
/// A directory is first reopened as `openat(fd, ".")`, the held directory itself too,
/// which skips procfs's path walk (1.1-1.6 against 2.5-3.2 us); only a caller without
/// search permission on it (EACCES) takes the `/proc` way.
#[cfg(target_os = "linux")]
pub(super) fn reopen(
    fd: BorrowedFd<'_>,
    kind: FileType,
    flags: libc::c_int,
) -> io::Result<OwnedFd> {
    match kind {
        FileType::Directory | FileType::RegularFile => {
            let mut flags = (flags | libc::O_CLOEXEC) & !(libc::O_CREAT | libc::O_NOFOLLOW);
            if kind == FileType::Directory {
                flags |= libc::O_DIRECTORY;
                // SAFETY: valid descriptor and NUL-terminated path; no O_CREAT.
                match retry(|| cvt(unsafe { libc::openat(fd.as_raw_fd(), c".".as_ptr(), flags) })) {
                    Ok(r) => return Ok(owned(r)),
                    Err(e) if e.raw_os_error() == Some(libc::EACCES) => {}
                    Err(e) => return Err(e),
                }
            }
            let p = proc_path(fd);
            // SAFETY: NUL-terminated path; no O_CREAT, so no mode argument.
            let r = retry(|| cvt(unsafe { libc::open(p.as_ptr(), flags) }))?;
            Ok(owned(r))
        }
        FileType::Symlink => Err(io::Error::from_raw_os_error(libc::ELOOP)),
        _ => Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP)),
    }
}

/// Reopens a table descriptor for I/O. macOS has no `/proc`: a directory reopens as
/// `"."`; a regular file through the path `F_GETPATH` reports, opened with
/// `O_NOFOLLOW` and then checked to be the very same (st_dev, st_ino), so a path that
/// changed meanwhile fails with `Stale` instead of touching another file. `O_TRUNC` is
/// applied only after that check.
#[cfg(not(target_os = "linux"))]
pub(super) fn reopen(
    fd: BorrowedFd<'_>,
    kind: FileType,
    flags: libc::c_int,
) -> io::Result<OwnedFd> {
    match kind {
        FileType::Directory => open_beneath(fd, c".", flags | libc::O_DIRECTORY, 0),
        FileType::RegularFile => {
            let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
            // SAFETY: F_GETPATH writes at most PATH_MAX bytes plus NUL into `buf`.
            cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETPATH, buf.as_mut_ptr()) })?;
            let path = CStr::from_bytes_until_nul(&buf)
                .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
            let trunc = flags & libc::O_TRUNC != 0;
            let flags =
                (flags | libc::O_CLOEXEC | libc::O_NOFOLLOW) & !(libc::O_CREAT | libc::O_TRUNC);
            // SAFETY: NUL-terminated path; no O_CREAT, so no mode argument.
            let new = owned(retry(|| cvt(unsafe { libc::open(path.as_ptr(), flags) }))?);
            if key(&fstat(new.as_fd())?) != key(&fstat(fd)?) {
                return Err(io::Error::from_raw_os_error(libc::ESTALE));
            }
            if trunc {
                ftruncate(new.as_fd(), 0)?;
            }
            Ok(new)
        }
        FileType::Symlink => Err(io::Error::from_raw_os_error(libc::ELOOP)),
        _ => Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP)),
    }
}

/// Reopens the file an I/O descriptor refers to as a table descriptor: `open_tree(fd,
/// "", AT_EMPTY_PATH)` (Linux 5.2+), which without `OPEN_TREE_CLONE` is an `O_PATH` open
/// of the descriptor's own path and needs no privilege, in about half the time of
/// resolving `/proc/self/fd/N` (0.8 against 1.3 us); the `/proc` path where the call is
/// missing or filtered.
#[cfg(target_os = "linux")]
pub(super) fn entry_from_io(fd: BorrowedFd<'_>, kind: FileType) -> io::Result<OwnedFd> {
    // SAFETY: valid descriptor, a NUL-terminated empty path and plain flag bits.
    let r = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            fd.as_raw_fd(),
            c"".as_ptr(),
            (libc::AT_EMPTY_PATH | libc::O_CLOEXEC) as libc::c_uint,
        )
    };
    match cvt(r as libc::c_int) {
        Ok(new) => Ok(owned(new)),
        Err(_) => reopen(fd, kind, libc::O_PATH),
    }
}

/// Reopens the file an I/O descriptor refers to as a table descriptor.
#[cfg(not(target_os = "linux"))]
pub(super) fn entry_from_io(fd: BorrowedFd<'_>, _kind: FileType) -> io::Result<OwnedFd> {
    fd.try_clone_to_owned()
}

#[cfg(not(target_os = "linux"))]
use std::os::fd::AsFd;

// ---------------------------------------------------------------------------------------
// Namespace calls, all relative to a directory descriptor.

pub(super) fn mkdirat(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> io::Result<()> {
    // SAFETY: valid descriptor and NUL-terminated name.
    cvt(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode as libc::mode_t) })?;
    Ok(())
}

pub(super) fn mknodat(dir: BorrowedFd<'_>, name: &CStr, mode: u32, rdev: u64) -> io::Result<()> {
    let dev =
        libc::dev_t::try_from(rdev).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: valid descriptor and NUL-terminated name.
    cvt(unsafe { libc::mknodat(dir.as_raw_fd(), name.as_ptr(), mode as libc::mode_t, dev) })?;
    Ok(())
}

pub(super) fn symlinkat(target: &CStr, dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    // SAFETY: NUL-terminated strings and a valid descriptor.
    cvt(unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) })?;
    Ok(())
}

pub(super) fn unlinkat(dir: BorrowedFd<'_>, name: &CStr, rmdir: bool) -> io::Result<()> {
    let flags = if rmdir { libc::AT_REMOVEDIR } else { 0 };
    // SAFETY: valid descriptor and NUL-terminated name.
    cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags) })?;
    Ok(())
}

/// `renameat2` with `RENAME_NOREPLACE` / `RENAME_EXCHANGE` on Linux.
#[cfg(target_os = "linux")]
pub(super) fn renameat(
    old_dir: BorrowedFd<'_>,
    old: &CStr,
    new_dir: BorrowedFd<'_>,
    new: &CStr,
    noreplace: bool,
    exchange: bool,
) -> io::Result<()> {
    let mut flags: libc::c_uint = 0;
    if noreplace {
        flags |= libc::RENAME_NOREPLACE;
    }
    if exchange {
        flags |= libc::RENAME_EXCHANGE;
    }
    // SAFETY: valid descriptors and NUL-terminated names.
    let r = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            old_dir.as_raw_fd(),
            old.as_ptr(),
            new_dir.as_raw_fd(),
            new.as_ptr(),
            flags,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `renameatx_np` with `RENAME_EXCL` / `RENAME_SWAP` on macOS.
#[cfg(target_os = "macos")]
pub(super) fn renameat(
    old_dir: BorrowedFd<'_>,
    old: &CStr,
    new_dir: BorrowedFd<'_>,
    new: &CStr,
    noreplace: bool,
    exchange: bool,
) -> io::Result<()> {
    let mut flags: libc::c_uint = 0;
    if noreplace {
        flags |= libc::RENAME_EXCL;
    }
    if exchange {
        flags |= libc::RENAME_SWAP;
    }
    // SAFETY: valid descriptors and NUL-terminated names.
    cvt(unsafe {
        libc::renameatx_np(
            old_dir.as_raw_fd(),
            old.as_ptr(),
            new_dir.as_raw_fd(),
            new.as_ptr(),
            flags,
        )
    })?;
    Ok(())
}

/// Plain `renameat`; flags are not supported on this platform.
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
pub(super) fn renameat(
    old_dir: BorrowedFd<'_>,
    old: &CStr,
    new_dir: BorrowedFd<'_>,
    new: &CStr,
    noreplace: bool,
    exchange: bool,
) -> io::Result<()> {
    if noreplace || exchange {
        return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
    }
    // SAFETY: valid descriptors and NUL-terminated names.
    cvt(unsafe {
        libc::renameat(
            old_dir.as_raw_fd(),
            old.as_ptr(),
            new_dir.as_raw_fd(),
            new.as_ptr(),
        )
    })?;
    Ok(())
}

/// Hard-links the object held by table descriptor `fd` as `new_dir/new`.
///
/// Linux: `linkat(fd, "", AT_EMPTY_PATH)` needs CAP_DAC_READ_SEARCH, which a thread
/// running with a caller's fsuid has dropped, so that case goes through
/// `/proc/self/fd/N` with `AT_SYMLINK_FOLLOW`: following a magic link lands on the held
/// inode itself (a held symlink is linked, not its target).
#[cfg(target_os = "linux")]
pub(super) fn link_entry(
    fd: BorrowedFd<'_>,
    new_dir: BorrowedFd<'_>,
    new: &CStr,
) -> io::Result<()> {
    // SAFETY: valid descriptors and NUL-terminated names.
    let r = cvt(unsafe {
        libc::linkat(
            fd.as_raw_fd(),
            EMPTY.as_ptr(),
            new_dir.as_raw_fd(),
            new.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    });
    match r {
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOENT | libc::EPERM | libc::EINVAL)
            ) =>
        {
            let p = proc_path(fd);
            // SAFETY: valid descriptor and NUL-terminated names.
            cvt(unsafe {
                libc::linkat(
                    libc::AT_FDCWD,
                    p.as_ptr(),
                    new_dir.as_raw_fd(),
                    new.as_ptr(),
                    libc::AT_SYMLINK_FOLLOW,
                )
            })?;
            Ok(())
        }
        other => other.map(drop),
    }
}

/// Hard-links the object held by `fd` as `new_dir/new`. macOS cannot link by
/// descriptor: the path `F_GETPATH` reports is linked with `linkat` (no following), and
/// the new name is checked to be the same inode; a mismatch is undone and fails `Stale`.
#[cfg(not(target_os = "linux"))]
pub(super) fn link_entry(
    fd: BorrowedFd<'_>,
    new_dir: BorrowedFd<'_>,
    new: &CStr,
) -> io::Result<()> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: F_GETPATH writes at most PATH_MAX bytes plus NUL into `buf`.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETPATH, buf.as_mut_ptr()) })?;
    let path =
        CStr::from_bytes_until_nul(&buf).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: valid descriptor and NUL-terminated names.
    cvt(unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            path.as_ptr(),
            new_dir.as_raw_fd(),
            new.as_ptr(),
            0,
        )
    })?;
    if key(&fstatat(new_dir, new)?) != key(&fstat(fd)?) {
        let _ = unlinkat(new_dir, new, false);
        return Err(io::Error::from_raw_os_error(libc::ESTALE));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Calls on a table descriptor.

/// Reads the target of the symlink held by `fd`.
pub(super) fn readlink_entry(fd: BorrowedFd<'_>) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 4096];
    loop {
        #[cfg(target_os = "linux")]
        // SAFETY: `buf` is writable for its length; "" with an O_PATH symlink
        // descriptor reads that link (Linux >= 2.6.39).
        let r = unsafe {
            libc::readlinkat(
                fd.as_raw_fd(),
                EMPTY.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        #[cfg(not(target_os = "linux"))]
        // SAFETY: `buf` is writable for its length.
        let r = unsafe { libc::freadlink(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) }
            as libc::ssize_t;
        let n = cvt_size(r)?;
        if n < buf.len() {
            buf.truncate(n);
            return Ok(buf);
        }
        let bigger = buf.len() * 2;
        buf.resize(bigger, 0);
    }
}

/// chown of the object held by `fd` (a symlink itself, not its target).
pub(super) fn chown_entry(
    fd: BorrowedFd<'_>,
    uid: Option<u32>,
    gid: Option<u32>,
) -> io::Result<()> {
    let u = uid.map_or(libc::uid_t::MAX, |u| u as libc::uid_t);
    let g = gid.map_or(libc::gid_t::MAX, |g| g as libc::gid_t);
    #[cfg(target_os = "linux")]
    // SAFETY: valid descriptor and the empty path with AT_EMPTY_PATH.
    cvt(unsafe { libc::fchownat(fd.as_raw_fd(), EMPTY.as_ptr(), u, g, libc::AT_EMPTY_PATH) })?;
    #[cfg(not(target_os = "linux"))]
    // SAFETY: valid descriptor.
    cvt(unsafe { libc::fchown(fd.as_raw_fd(), u, g) })?;
    Ok(())
}

/// chmod of the object held by `fd`. Linux cannot chmod a symlink (EOPNOTSUPP, as
/// `fchmodat(AT_SYMLINK_NOFOLLOW)` reports); anything else goes through
/// `/proc/self/fd/N`, which changes the held inode without opening it.
pub(super) fn chmod_entry(fd: BorrowedFd<'_>, kind: FileType, mode: u32) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        if kind == FileType::Symlink {
            return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
        }
        let p = proc_path(fd);
        // SAFETY: NUL-terminated path.
        cvt(unsafe { libc::chmod(p.as_ptr(), mode as libc::mode_t) })?;
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = kind;
        // SAFETY: valid descriptor.
        cvt(unsafe { libc::fchmod(fd.as_raw_fd(), mode as libc::mode_t) })?;
    }
    Ok(())
}

/// utimensat on the object held by `fd`.
pub(super) fn utimens_entry(
    fd: BorrowedFd<'_>,
    kind: FileType,
    ts: &[libc::timespec; 2],
) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: valid descriptor, empty path with AT_EMPTY_PATH, two timespecs.
        let r = cvt(unsafe {
            libc::utimensat(
                fd.as_raw_fd(),
                EMPTY.as_ptr(),
                ts.as_ptr(),
                libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
            )
        });
        match r {
            // Kernels before AT_EMPTY_PATH support in utimensat.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && kind != FileType::Symlink => {
                let p = proc_path(fd);
                // SAFETY: NUL-terminated path and two timespecs.
                cvt(unsafe { libc::utimensat(libc::AT_FDCWD, p.as_ptr(), ts.as_ptr(), 0) })?;
                Ok(())
            }
            other => other.map(drop),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = kind;
        // SAFETY: valid descriptor and two timespecs.
        cvt(unsafe { libc::futimens(fd.as_raw_fd(), ts.as_ptr()) })?;
        Ok(())
    }
}

/// `access(2)` on the object held by `fd` with the thread's effective (fs) credentials:
/// `faccessat2(AT_EACCESS | AT_EMPTY_PATH)`. `Ok(None)` when the kernel lacks it.
#[cfg(target_os = "linux")]
pub(super) fn access_entry(fd: BorrowedFd<'_>, mask: libc::c_int) -> io::Result<Option<()>> {
    // SAFETY: valid descriptor and the empty path with AT_EMPTY_PATH.
    let r = unsafe {
        libc::syscall(
            libc::SYS_faccessat2,
            fd.as_raw_fd(),
            EMPTY.as_ptr(),
            mask,
            libc::AT_EACCESS | libc::AT_EMPTY_PATH,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EINVAL)) {
            return Ok(None);
        }
        return Err(e);
    }
    Ok(Some(()))
}

/// `fstatvfs` of the filesystem holding `fd`.
pub(super) fn fstatvfs(fd: BorrowedFd<'_>) -> io::Result<libc::statvfs> {
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: valid descriptor and an out pointer for one statvfs.
    cvt(unsafe { libc::fstatvfs(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: fstatvfs succeeded and filled the struct.
    Ok(unsafe { st.assume_init() })
}

// ---------------------------------------------------------------------------------------
// Extended attributes. Linux addresses the held inode as `/proc/self/fd/N` (xattr calls
// never open the file); symlinks are refused there because the path would follow them.
// macOS uses the f*xattr calls on the held descriptor.

/// Where an xattr call goes.
pub(super) struct XattrTarget<'a> {
    fd: BorrowedFd<'a>,
    #[cfg(target_os = "linux")]
    path: CString,
}

impl<'a> XattrTarget<'a> {
    pub(super) fn new(fd: BorrowedFd<'a>, kind: FileType) -> io::Result<XattrTarget<'a>> {
        #[cfg(target_os = "linux")]
        {
            if kind == FileType::Symlink {
                return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
            }
            Ok(XattrTarget {
                fd,
                path: proc_path(fd),
            })
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = kind;
            Ok(XattrTarget { fd })
        }
    }

    /// One get call; `buf` empty asks for the size.
    fn get_raw(&self, name: &CStr, buf: &mut [u8]) -> io::Result<usize> {
        let (ptr, len) = if buf.is_empty() {
            (std::ptr::null_mut(), 0)
        } else {
            (buf.as_mut_ptr().cast(), buf.len())
        };
        let _ = self.fd;
        #[cfg(target_os = "linux")]
        // SAFETY: NUL-terminated strings; `ptr` is null or writable for `len` bytes.
        let r = unsafe { libc::getxattr(self.path.as_ptr(), name.as_ptr(), ptr, len) };
        #[cfg(not(target_os = "linux"))]
        // SAFETY: valid descriptor, NUL-terminated name; `ptr` null or writable for `len`.
        let r = unsafe {
            libc::fgetxattr(
                self.fd.as_raw_fd(),
                name.as_ptr(),
                ptr,
                len,
                0,
                libc::XATTR_NOFOLLOW,
            )
        };
        cvt_size(r)
    }

    pub(super) fn get(&self, name: &CStr) -> io::Result<Vec<u8>> {
        loop {
            let size = self.get_raw(name, &mut [])?;
            let mut buf = vec![0u8; size];
            if size == 0 {
                return Ok(buf);
            }
            match self.get_raw(name, &mut buf) {
                Ok(n) => {
                    buf.truncate(n);
                    return Ok(buf);
                }
                Err(e) if e.raw_os_error() == Some(libc::ERANGE) => continue, // grew meanwhile
                Err(e) => return Err(e),
            }
        }
    }

    pub(super) fn set(
        &self,
        name: &CStr,
        value: &[u8],
        create: bool,
        replace: bool,
    ) -> io::Result<()> {
        let mut flags = 0;
        if create {
            flags |= libc::XATTR_CREATE;
        }
        if replace {
            flags |= libc::XATTR_REPLACE;
        }
        #[cfg(target_os = "linux")]
        // SAFETY: NUL-terminated strings and a value readable for its length.
        cvt(unsafe {
            libc::setxattr(
                self.path.as_ptr(),
                name.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                flags,
            )
        })?;
        #[cfg(not(target_os = "linux"))]
        // SAFETY: valid descriptor, NUL-terminated name, value readable for its length.
        cvt(unsafe {
            libc::fsetxattr(
                self.fd.as_raw_fd(),
                name.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
                flags | libc::XATTR_NOFOLLOW,
            )
        })?;
        Ok(())
    }

    fn list_raw(&self, buf: &mut [u8]) -> io::Result<usize> {
        let (ptr, len) = if buf.is_empty() {
            (std::ptr::null_mut(), 0)
        } else {
            (buf.as_mut_ptr().cast(), buf.len())
        };
        #[cfg(target_os = "linux")]
        // SAFETY: NUL-terminated path; `ptr` null or writable for `len` bytes.
        let r = unsafe { libc::listxattr(self.path.as_ptr(), ptr, len) };
        #[cfg(not(target_os = "linux"))]
        // SAFETY: valid descriptor; `ptr` null or writable for `len` bytes.
        let r = unsafe { libc::flistxattr(self.fd.as_raw_fd(), ptr, len, libc::XATTR_NOFOLLOW) };
        cvt_size(r)
    }

    pub(super) fn list(&self) -> io::Result<Vec<u8>> {
        list_names(|buf| self.list_raw(buf))
    }

    pub(super) fn remove(&self, name: &CStr) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        // SAFETY: NUL-terminated strings.
        cvt(unsafe { libc::removexattr(self.path.as_ptr(), name.as_ptr()) })?;
        #[cfg(not(target_os = "linux"))]
        // SAFETY: valid descriptor and NUL-terminated name.
        cvt(unsafe {
            libc::fremovexattr(self.fd.as_raw_fd(), name.as_ptr(), libc::XATTR_NOFOLLOW)
        })?;
        Ok(())
    }
}

/// A NUL-separated name list read with `raw` (which, given an empty buffer, returns the
/// size it needs), asking again while the list grows between the two calls.
fn list_names(raw: impl Fn(&mut [u8]) -> io::Result<usize>) -> io::Result<Vec<u8>> {
    loop {
        let size = raw(&mut [])?;
        let mut buf = vec![0u8; size];
        if size == 0 {
            return Ok(buf);
        }
        match raw(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(e) if e.raw_os_error() == Some(libc::ERANGE) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The xattr names of the file `fd` is open for I/O on (`flistxattr`, which an `O_PATH`
/// descriptor cannot do), NUL-separated.
#[cfg(target_os = "linux")]
pub(super) fn list_xattrs_of_open(fd: BorrowedFd<'_>) -> io::Result<Vec<u8>> {
    list_names(|buf| {
        let (ptr, len) = if buf.is_empty() {
            (std::ptr::null_mut(), 0)
        } else {
            (buf.as_mut_ptr().cast(), buf.len())
        };
        // SAFETY: valid descriptor; `ptr` null or writable for `len` bytes.
        cvt_size(unsafe { libc::flistxattr(fd.as_raw_fd(), ptr, len) })
    })
}

// ---------------------------------------------------------------------------------------
// Data I/O on open descriptors.

pub(super) fn pread(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let at = offset
            .checked_add(done as u64)
            .and_then(|o| libc::off_t::try_from(o).ok())
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        let rest = &mut buf[done..];
        // SAFETY: `rest` is writable for its length.
        let r = retry(|| {
            cvt_size(unsafe {
                libc::pread(fd.as_raw_fd(), rest.as_mut_ptr().cast(), rest.len(), at)
            })
        })?;
        if r == 0 {
            break;
        }
        done += r;
    }
    Ok(done)
}

/// Writes all of `data` at `offset` (or appends, for an `O_APPEND` descriptor); an
/// error after some bytes were written returns the count written so far.
pub(super) fn pwrite(fd: BorrowedFd<'_>, data: &[u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < data.len() {
        let at = offset
            .checked_add(done as u64)
            .and_then(|o| libc::off_t::try_from(o).ok())
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EFBIG))?;
        let rest = &data[done..];
        // SAFETY: `rest` is readable for its length.
        match retry(|| {
            cvt_size(unsafe { libc::pwrite(fd.as_raw_fd(), rest.as_ptr().cast(), rest.len(), at) })
        }) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(done)
}

pub(super) fn ftruncate(fd: BorrowedFd<'_>, size: u64) -> io::Result<()> {
    let size =
        libc::off_t::try_from(size).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    // SAFETY: valid descriptor.
    retry(|| cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), size) }))?;
    Ok(())
}

pub(super) fn fsync(fd: BorrowedFd<'_>, datasync: bool) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    if datasync {
        // SAFETY: valid descriptor.
        retry(|| cvt(unsafe { libc::fdatasync(fd.as_raw_fd()) }))?;
        return Ok(());
    }
    let _ = datasync;
    // SAFETY: valid descriptor.
    retry(|| cvt(unsafe { libc::fsync(fd.as_raw_fd()) }))?;
    Ok(())
}

/// `lseek` with SEEK_DATA (`data`) or SEEK_HOLE.
pub(super) fn seek_data_hole(fd: BorrowedFd<'_>, offset: u64, data: bool) -> io::Result<u64> {
    let at =
        libc::off_t::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::ENXIO))?;
    let whence = if data {
        libc::SEEK_DATA
    } else {
        libc::SEEK_HOLE
    };
    // SAFETY: valid descriptor.
    let r = unsafe { libc::lseek(fd.as_raw_fd(), at, whence) };
    u64::try_from(r).map_err(|_| io::Error::last_os_error())
}

/// `fallocate(2)`. Linux passes the mode through; macOS supports only plain allocation
/// (`F_PREALLOCATE` plus `ftruncate` to extend).
pub(super) fn fallocate(
    fd: BorrowedFd<'_>,
    offset: u64,
    len: u64,
    keep_size: bool,
    punch: bool,
    zero: bool,
) -> VfsResult<()> {
    let o = off(offset)?;
    let l = off(len)?;
    #[cfg(target_os = "linux")]
    {
        let mut mode = 0;
        if keep_size {
            mode |= libc::FALLOC_FL_KEEP_SIZE;
        }
        if punch {
            mode |= libc::FALLOC_FL_PUNCH_HOLE;
        }
        if zero {
            mode |= libc::FALLOC_FL_ZERO_RANGE;
        }
        // SAFETY: valid descriptor.
        retry(|| cvt(unsafe { libc::fallocate(fd.as_raw_fd(), mode, o, l) }))?;
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        if punch || zero {
            return Err(VfsError::NotSupported);
        }
        if len == 0 {
            return Err(VfsError::InvalidArgument);
        }
        let end = o.checked_add(l).ok_or(VfsError::FileTooLarge)?;
        let mut store = libc::fstore_t {
            fst_flags: libc::F_ALLOCATEALL,
            fst_posmode: libc::F_PEOFPOSMODE,
            fst_offset: 0,
            fst_length: end,
            fst_bytesalloc: 0,
        };
        // SAFETY: valid descriptor and a pointer to an initialised fstore_t.
        let _ = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_PREALLOCATE, &mut store) };
        let st = fstat(fd)?;
        if !keep_size && st.st_size < end {
            ftruncate(fd, end as u64)?;
        }
        Ok(())
    }
}

/// Host `copy_file_range`, looping until `len` bytes are copied or the source ends.
/// `Ok(None)` when the host cannot do it for these files (the caller then copies with
/// pread/pwrite).
#[cfg(target_os = "linux")]
pub(super) fn copy_file_range(
    fd_in: BorrowedFd<'_>,
    off_in: u64,
    fd_out: BorrowedFd<'_>,
    off_out: u64,
    len: u64,
) -> VfsResult<Option<u64>> {
    let mut oi = off(off_in)?;
    let mut oo = off(off_out)?;
    off(off_in.checked_add(len).ok_or(VfsError::InvalidArgument)?)?;
    off(off_out.checked_add(len).ok_or(VfsError::FileTooLarge)?)?;
    let mut done: u64 = 0;
    while done < len {
        let chunk = usize::try_from(len - done)
            .unwrap_or(usize::MAX)
            .min(1 << 30);
        // SAFETY: valid descriptors and pointers to two live off_t values.
        let r = unsafe {
            libc::syscall(
                libc::SYS_copy_file_range,
                fd_in.as_raw_fd(),
                &mut oi as *mut libc::off_t,
                fd_out.as_raw_fd(),
                &mut oo as *mut libc::off_t,
                chunk,
                0u32,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EXDEV | libc::ENOSYS | libc::EOPNOTSUPP) if done == 0 => {
                    return Ok(None);
                }
                _ if done > 0 => break,
                _ => return Err(e.into()),
            }
        }
        if r == 0 {
            break;
        }
        done += r as u64;
    }
    Ok(Some(done))
}

/// No host `copy_file_range`: the caller copies with pread/pwrite.
#[cfg(not(target_os = "linux"))]
pub(super) fn copy_file_range(
    _fd_in: BorrowedFd<'_>,
    _off_in: u64,
    _fd_out: BorrowedFd<'_>,
    _off_out: u64,
    _len: u64,
) -> VfsResult<Option<u64>> {
    Ok(None)
}

/// Whether the calling thread's filesystem credentials may read the object `fd` (an
/// `O_PATH` one will do) refers to: `faccessat2(fd, "", R_OK, AT_EMPTY_PATH |
/// AT_EACCESS)` (Linux 5.8+), the permission check of an open for reading (modes, ACLs,
/// security modules) without the open. 0.18 us against 2.5-3 us for a reopen through
/// `/proc/self/fd` and its close. A kernel without the call (ENOSYS) falls back to that
/// reopen.
#[cfg(target_os = "linux")]
pub(super) fn may_read(fd: BorrowedFd<'_>, kind: FileType) -> io::Result<()> {
    // SAFETY: valid descriptor, a NUL-terminated empty path and plain flag bits.
    let r = unsafe {
        libc::syscall(
            libc::SYS_faccessat2,
            fd.as_raw_fd(),
            EMPTY.as_ptr(),
            libc::R_OK,
            libc::AT_EMPTY_PATH | libc::AT_EACCESS,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::ENOSYS) {
        return Err(e);
    }
    reopen(fd, kind, libc::O_RDONLY).map(drop)
}

/// Off Linux: a reopen for reading, closed again.
#[cfg(not(target_os = "linux"))]
pub(super) fn may_read(fd: BorrowedFd<'_>, kind: FileType) -> io::Result<()> {
    reopen(fd, kind, libc::O_RDONLY).map(drop)
}

/// Duplicates a descriptor (close-on-exec).
pub(super) fn dup(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    fd.try_clone_to_owned()
}

/// Clears `O_NONBLOCK` on a descriptor.
pub(super) fn clear_nonblock(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: valid descriptor; F_GETFL/F_SETFL take and return plain ints.
    let fl = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl & !libc::O_NONBLOCK) })?;
    Ok(())
}

/// Raises the soft limit on open descriptors to the hard limit (best effort): pinned
/// table entries hold one descriptor each.
pub(super) fn raise_nofile_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    #[allow(unused_mut)]
    let mut max = lim.rlim_max;
    #[cfg(target_os = "macos")]
    {
        // macOS rejects anything above OPEN_MAX (10240) for the soft limit.
        max = max.min(10240);
    }
    if lim.rlim_cur < max {
        lim.rlim_cur = max;
        // SAFETY: pointer to an initialised rlimit.
        let _ = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    }
}

/// The daemon's supplementary groups, restored after a credential switch.
pub(super) fn getgroups() -> Vec<libc::gid_t> {
    // SAFETY: a zero-size query writes nothing.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    let Ok(n) = usize::try_from(n) else {
        return Vec::new();
    };
    let mut v = vec![0 as libc::gid_t; n];
    // SAFETY: `v` is writable for `n` gids.
    let got = unsafe { libc::getgroups(n as libc::c_int, v.as_mut_ptr()) };
    v.truncate(usize::try_from(got).unwrap_or(0));
    v
}

/// The daemon's effective uid.
pub(super) fn geteuid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// Size of the header of a `struct file_handle` (`handle_bytes`, `handle_type`).
#[cfg(target_os = "linux")]
const HANDLE_HEADER: usize = 8;
/// `MAX_HANDLE_SZ`: the largest handle payload the kernel hands out.
#[cfg(target_os = "linux")]
const MAX_HANDLE_SZ: usize = 128;

/// The file handle of the object `fd` holds (`name_to_handle_at(fd, "", AT_EMPTY_PATH)`),
/// as the bytes of a `struct file_handle`; `None` when the host filesystem has no handles
/// (`EOPNOTSUPP`) or its handles do not fit `MAX_HANDLE_SZ` (`EOVERFLOW`).
#[cfg(target_os = "linux")]
pub(super) fn name_to_handle(fd: BorrowedFd<'_>) -> io::Result<Option<Box<[u8]>>> {
    handle_at(fd, EMPTY, libc::AT_EMPTY_PATH)
}

/// The file handle of `name` in directory `dir`, not following a final symlink: what
/// [`name_to_handle`] gives for a descriptor of it, without opening one.
#[cfg(target_os = "linux")]
pub(super) fn name_to_handle_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Option<Box<[u8]>>> {
    handle_at(dir, name, 0)
}

#[cfg(target_os = "linux")]
fn handle_at(fd: BorrowedFd<'_>, name: &CStr, flags: libc::c_int) -> io::Result<Option<Box<[u8]>>> {
    // u32 words keep the header aligned for the kernel's `struct file_handle`.
    let mut buf = [0u32; (HANDLE_HEADER + MAX_HANDLE_SZ) / 4];
    buf[0] = MAX_HANDLE_SZ as u32;
    let mut mount_id: libc::c_int = 0;
    // SAFETY: `buf` is a `struct file_handle` whose `handle_bytes` says how much room
    // follows the header; the name is a valid C string; `mount_id` is a valid out pointer.
    let r = unsafe {
        libc::syscall(
            libc::SYS_name_to_handle_at,
            fd.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr(),
            &mut mount_id as *mut libc::c_int,
            flags,
        )
    };
    if r == -1 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EOPNOTSUPP | libc::EOVERFLOW) => Ok(None),
            _ => Err(e),
        };
    }
    let len = (buf[0] as usize).min(MAX_HANDLE_SZ);
    let bytes: Vec<u8> = buf.iter().flat_map(|w| w.to_ne_bytes()).collect();
    Ok(Some(bytes[..HANDLE_HEADER + len].into()))
}

/// Opens the object of `handle` (from [`name_to_handle`]) on the filesystem of `mount`
/// as an entry descriptor (`O_PATH | O_NOFOLLOW | O_CLOEXEC`). Needs
/// `CAP_DAC_READ_SEARCH`; a handle of an object gone from the host gives `ESTALE`.
///
/// An object being freed at this very moment gives ENOMEM instead: the host's inode
/// lookup finds the inode mid-eviction and gives up (`iget_locked` returns nothing,
/// which ext4 reports as ENOMEM). Seen right after an unlink, presumably while writeback
/// still held the inode (2 in 11 runs of the core tests). So ENOMEM is asked again a
/// few times over about 11 ms, by when the object is gone (ESTALE) or memory really is
/// short.
#[cfg(target_os = "linux")]
pub(super) fn open_by_handle(mount: BorrowedFd<'_>, handle: &[u8]) -> io::Result<OwnedFd> {
    if handle.len() < HANDLE_HEADER || handle.len() > HANDLE_HEADER + MAX_HANDLE_SZ {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut buf = [0u32; (HANDLE_HEADER + MAX_HANDLE_SZ) / 4];
    for (i, b) in handle.iter().enumerate() {
        let word = &mut buf[i / 4];
        let mut bytes = word.to_ne_bytes();
        bytes[i % 4] = *b;
        *word = u32::from_ne_bytes(bytes);
    }
    let open = || {
        retry(|| {
            // SAFETY: `buf` holds a complete `struct file_handle` the kernel gave us, with
            // its own `handle_bytes` (at most MAX_HANDLE_SZ, checked above by length).
            let r = unsafe {
                libc::syscall(
                    libc::SYS_open_by_handle_at,
                    mount.as_raw_fd(),
                    buf.as_ptr(),
                    libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                )
            };
            if r == -1 {
                return Err(io::Error::last_os_error());
            }
            let fd = RawFd::try_from(r).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
            Ok(owned(fd))
        })
    };
    let mut r = open();
    for pause_us in [0, 100, 1_000, 10_000] {
        if !matches!(&r, Err(e) if e.raw_os_error() == Some(libc::ENOMEM)) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_micros(pause_us));
        r = open();
    }
    r
}

/// No file handles off Linux: entries keep their descriptors.
#[cfg(not(target_os = "linux"))]
pub(super) fn name_to_handle(_fd: BorrowedFd<'_>) -> io::Result<Option<Box<[u8]>>> {
    Ok(None)
}

/// No file handles off Linux (never called: no entry has a handle).
#[cfg(not(target_os = "linux"))]
pub(super) fn name_to_handle_at(
    _dir: BorrowedFd<'_>,
    _name: &CStr,
) -> io::Result<Option<Box<[u8]>>> {
    Ok(None)
}

/// No file handles off Linux (never called: [`name_to_handle`] gives none).
#[cfg(not(target_os = "linux"))]
pub(super) fn open_by_handle(_mount: BorrowedFd<'_>, _handle: &[u8]) -> io::Result<OwnedFd> {
    Err(io::Error::from_raw_os_error(libc::ENOTSUP))
}

/// The current soft limit on open descriptors, if known.
pub(super) fn nofile_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    Some(lim.rlim_cur as u64)
}
