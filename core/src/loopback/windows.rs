//! loopback (Windows): a live mirror of a host directory, confined to it.
//!
//! The public API is the unix loopback's ([`Loopback::new`], [`LoopbackOptions`],
//! [`Loopback::inode_count`]), so the CLI builds either unchanged. The pure logic (name
//! rules, attribute synthesis, FILETIME, cookies, reparse and directory-record formats,
//! error tables) lives in `winpure.rs`, which the Linux test build runs.
//!
//! # Design decisions
//! - **Identity.** One vmount [`Ino`] per host `(volume serial, 64-bit file index)` from
//!   `GetFileInformationByHandle`, as `std`'s `same-file` logic uses; the source is
//!   [`Ino::ROOT`]; numbers are allocated from 2 and never reused. A table entry holds
//!   the object's kind, its lookup count and the *relative paths* (components below the
//!   source) it was last seen under: the names of its hard links, most recent first, at
//!   most 8. Unlike unix loopback no host handle is held per entry: on Windows an open
//!   handle inside a directory makes renaming that directory fail, so holding one per
//!   known object would break `mv` of any directory the client had looked into.
//! - **Hard links** share one entry (same file index). Each name an object was looked
//!   up, created or linked under is remembered; removing a name forgets it. When the
//!   last remembered name goes, the entry is dropped once nothing holds it open, even if
//!   the host still has other (never looked up) links to the object; a later lookup
//!   through such a name gives it a fresh number.
//! - **Confinement.** No path string is ever handed to Windows for an object inside the
//!   source (the one exception is the symlink fallback below). Every object is reached
//!   from the held handle of the source directory, one component at a time, with
//!   `NtCreateFile(RootDirectory = parent handle, ObjectName = one name)` and
//!   `FILE_OPEN_REPARSE_POINT`, so symlinks and junctions are opened as themselves and
//!   never followed; an intermediate component that is a name-surrogate reparse point
//!   ends the walk with `Stale`. Names are checked first: no `\`, `/`, `:` (alternate
//!   data streams), NUL, `.` or `..`. The object reached is then compared with the
//!   table: a different `(volume, index)` (the host swapped it) is `Stale`, never the
//!   wrong file. Renames and hard links are made with `NtSetInformationFile`
//!   (`FileRenameInformation[Ex]`, `FileLinkInformation`) on the opened object with the
//!   *handle* of the target directory as `RootDirectory` plus one name; deletes set the
//!   disposition on the opened object. Remaining window: a directory the walk already
//!   holds a handle to can be moved *out of* the source by a host process meanwhile;
//!   the operation then happens at the directory's new place (as with unix loopback's
//!   held descriptors). Each walk is short (one operation), and nothing is ever created
//!   through a path that could have been redirected.
//! - **Symlinks** are `IO_REPARSE_TAG_SYMLINK` reparse points made on a placeholder file
//!   created through the parent handle (`FSCTL_SET_REPARSE_POINT`), so creation is
//!   confined too. The target is stored verbatim (`/` kept) as both substitute and print
//!   name, flagged relative unless it is an absolute Windows path; since loopback never
//!   follows links, only clients interpret them. Setting the reparse point needs
//!   `SeCreateSymbolicLinkPrivilege`; without it loopback retries with
//!   `CreateSymbolicLinkW(SYMBOLIC_LINK_FLAG_ALLOW_UNPRIVILEGED_CREATE)` (Developer
//!   Mode) on the parent's final path (`GetFinalPathNameByHandleW`, checked to be
//!   inside the source) and verifies afterwards, through the parent handle, that the
//!   link landed there; this fallback is path-based, so a host-side swap of an ancestor
//!   between the two calls could place the *link* (never data) elsewhere. Without either
//!   privilege `symlink` is `NotPermitted`, logged once. Junctions, mount points and
//!   WSL symlinks on the host are listed as symlinks too (`readlink` gives the print
//!   name); other reparse points (cloud placeholders, dedup) keep their kind.
//! - **Attributes.** Windows has no uid, gid or mode: directories are 0o755, files
//!   0o644, or 0o444 with `FILE_ATTRIBUTE_READONLY`, symlinks 0o777. The owner is the
//!   *caller*: every `Ctx` sees its own uid and gid (like rclone's `uid=-1`), because
//!   the host decides every access with the daemon's token anyway, and this makes a
//!   client's mode-bit checks agree with what the host will allow. [`Loopback::with_owner`]
//!   reports a fixed owner instead. chmod toggles `FILE_ATTRIBUTE_READONLY` with the
//!   owner write bit on files (other bits are not stored); chown is `NotPermitted`
//!   unless it names the reported owner. `nlink` is the host's for files and 1 for
//!   directories (NTFS does not count subdirectories); times come from FILETIMEs,
//!   ctime is the host's change time and may be set (WinFsp sets it). `access` checks
//!   the synthesized mode. [`Capabilities::enforces_permissions`] is false: the host's
//!   ACLs apply to the daemon, not to each caller.
//! - **I/O.** `open` maps a handle to one host handle (shared read/write/delete, so the
//!   file can be renamed or deleted while open, as POSIX allows); reads and writes use
//!   positioned I/O (`seek_read`/`seek_write`), appends the documented end-of-file
//!   offset `0xFFFF_FFFF_FFFF_FFFF`, which makes concurrent appends atomic. Stateless
//!   I/O (NFS) uses a small bounded cache of host handles (64, least recently used out);
//!   because open handles inside a directory block its rename on Windows, the cache is
//!   emptied before a directory is renamed, and a file's cached handles are closed
//!   before it is removed or replaced.
//! - **Deletion** uses `FILE_DISPOSITION_POSIX_SEMANTICS` (the name disappears at once,
//!   open handles keep working, read-only files may be removed), falling back to the
//!   classic delete-on-close on filesystems without it (FAT), where the name lingers
//!   until the last handle closes.
//! - **Rename** uses `FILE_RENAME_POSIX_SEMANTICS` (replacing an open target) and falls
//!   back to the classic rename. `NOREPLACE` is honoured by the host atomically;
//!   `EXCHANGE` is `NotSupported` (Windows has no atomic swap). Replacing an empty
//!   directory is done by removing it first, then renaming: **not atomic**, the only
//!   case where the target name can briefly be missing. A case-only rename (`a` to `A`)
//!   is performed although both names reach the same object. Renames are serialized
//!   against every path walk by one reader-writer lock, so no walk sees a half-updated
//!   table; the table update of a directory rename is linear in the table size.
//!   Renames made by host processes behind loopback's back make the moved entries
//!   `Stale` until the client looks them up again.
//! - **readdir** lists through the directory handle (`FileIdBothDirectoryInfo`) into a
//!   snapshot sorted by cookie; the cookie of an entry is a 63-bit hash of its name, so
//!   it depends on nothing else and is the same in every listing. Resuming after cookie
//!   `c` continues with the next greater cookie, so an entry that exists for the whole
//!   listing is returned exactly once whatever else changes. An open directory handle
//!   keeps its snapshot until the listing restarts from 0; stateless listings share a
//!   per-directory snapshot for a second. Two names of one directory whose hashes
//!   collide (odds about n²/2^64) could lose the second one at a page boundary. Host
//!   names over 255 bytes (possible with long non-ASCII names) are not listed.
//! - **Not supported:** xattrs and mknod of anything but regular files (`NotSupported`),
//!   fallocate, lseek data/hole and copy_file_range (`Unimplemented`: adapters fall
//!   back). Case-insensitive like the host (`OBJ_CASE_INSENSITIVE`). New names that
//!   Win32 programs could not open again (trailing dot or space, `<>"|?*`, control
//!   characters, `CON`, `NUL.txt`...) are refused; existing ones can be used.
//! - **fsync** flushes the file (`FlushFileBuffers`); `fsyncdir` does nothing: NTFS
//!   journals metadata, and flushing a directory needs write access to it.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString, c_void};
use std::fs::File;
use std::io;
use std::mem::{offset_of, size_of};
use std::os::windows::ffi::{OsStrExt, OsStringExt};
use std::os::windows::fs::{FileExt, OpenOptionsExt};
use std::os::windows::io::{AsHandle, AsRawHandle, BorrowedHandle, FromRawHandle, OwnedHandle};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::{Mutex, RwLock};
use windows_sys::Wdk::Foundation::OBJECT_ATTRIBUTES;
use windows_sys::Wdk::Storage::FileSystem::{
    FILE_CREATE, FILE_DIRECTORY_FILE, FILE_LINK_INFORMATION, FILE_NON_DIRECTORY_FILE, FILE_OPEN,
    FILE_OPEN_FOR_BACKUP_INTENT, FILE_OPEN_IF, FILE_OPEN_REPARSE_POINT,
    FILE_RENAME_IGNORE_READONLY_ATTRIBUTE, FILE_RENAME_INFORMATION, FILE_RENAME_POSIX_SEMANTICS,
    FILE_RENAME_REPLACE_IF_EXISTS, FILE_SYNCHRONOUS_IO_NONALERT, FileLinkInformation,
    FileRenameInformation, FileRenameInformationEx, NTCREATEFILE_CREATE_DISPOSITION,
    NTCREATEFILE_CREATE_OPTIONS, NtCreateFile, NtSetInformationFile,
};
use windows_sys::Win32::Foundation::{
    ERROR_NO_MORE_FILES, HANDLE, NTSTATUS, OBJ_CASE_INSENSITIVE, RtlNtStatusToDosError,
    UNICODE_STRING,
};
use windows_sys::Win32::Storage::FileSystem::{
    BY_HANDLE_FILE_INFORMATION, CreateSymbolicLinkW, DELETE, FILE_ATTRIBUTE_TAG_INFO,
    FILE_BASIC_INFO, FILE_DISPOSITION_FLAG_DELETE, FILE_DISPOSITION_FLAG_IGNORE_READONLY_ATTRIBUTE,
    FILE_DISPOSITION_FLAG_POSIX_SEMANTICS, FILE_DISPOSITION_INFO, FILE_DISPOSITION_INFO_EX,
    FILE_END_OF_FILE_INFO, FILE_FLAG_BACKUP_SEMANTICS, FILE_GENERIC_READ, FILE_GENERIC_WRITE,
    FILE_ID_BOTH_DIR_INFO, FILE_INFO_BY_HANDLE_CLASS, FILE_LIST_DIRECTORY, FILE_NAME_NORMALIZED,
    FILE_READ_ATTRIBUTES, FILE_SHARE_DELETE, FILE_SHARE_READ, FILE_SHARE_WRITE, FILE_STANDARD_INFO,
    FILE_TRAVERSE, FILE_WRITE_ATTRIBUTES, FILE_WRITE_DATA, FileAttributeTagInfo, FileBasicInfo,
    FileDispositionInfo, FileDispositionInfoEx, FileEndOfFileInfo, FileIdBothDirectoryInfo,
    FileIdBothDirectoryRestartInfo, FileStandardInfo, GetDiskFreeSpaceExW,
    GetFileInformationByHandle, GetFileInformationByHandleEx, GetFinalPathNameByHandleW,
    SYMBOLIC_LINK_FLAG_ALLOW_UNPRIVILEGED_CREATE, SYNCHRONIZE, SetFileInformationByHandle,
};
use windows_sys::Win32::System::IO::{DeviceIoControl, IO_STATUS_BLOCK};
use windows_sys::Win32::System::Ioctl::{FSCTL_GET_REPARSE_POINT, FSCTL_SET_REPARSE_POINT};

use crate::handle_table::{HandleOwner, HandleTable};
use crate::io_cache::IoCache;
use crate::winpure::{
    self, ATTR_READONLY, MAX_REPARSE, RelPath, WinStat, attr_from_stat, attributes_for_mode,
    check_new_name, check_win_name, dir_info, error_from_io, forget_path, has_prefix, join,
    kind_of, name_cookie, parse_dir_records, parse_link_target, rebase, remember_path,
    resume_index, same_component, symlink_reparse_buffer, system_to_filetime,
};
use crate::{
    AccessMask, Attr, Capabilities, Ctx, DirEntry, DirSink, Fh, FileType, Ino, NAME_MAX, OpenFlags,
    Opened, RenameFlags, SetAttr, SetTime, StatFs, Vfs, VfsError, VfsResult, XattrFlags,
};

// The record layout `winpure` parses, checked against the real struct.
const _: () = {
    assert!(offset_of!(FILE_ID_BOTH_DIR_INFO, NextEntryOffset) == dir_info::NEXT);
    assert!(offset_of!(FILE_ID_BOTH_DIR_INFO, FileAttributes) == dir_info::ATTRIBUTES);
    assert!(offset_of!(FILE_ID_BOTH_DIR_INFO, FileNameLength) == dir_info::NAME_LEN);
    assert!(offset_of!(FILE_ID_BOTH_DIR_INFO, EaSize) == dir_info::EA_SIZE);
    assert!(offset_of!(FILE_ID_BOTH_DIR_INFO, FileId) == dir_info::FILE_ID);
    assert!(offset_of!(FILE_ID_BOTH_DIR_INFO, FileName) == dir_info::NAME);
};

/// Host handles kept for stateless I/O.
/// Stateless directory snapshots kept, and for how long.
const DIR_SNAPSHOTS: usize = 16;
const DIR_SNAPSHOT_AGE: Duration = Duration::from_secs(1);
/// Bit set on the synthetic inode numbers of entries listed without attributes.
const SYNTHETIC_INO: u64 = 1 << 63;
/// `IO_STATUS_BLOCK.Information` after `NtCreateFile` made a new object.
const FILE_CREATED: usize = 2;
/// Every host open shares everything: POSIX lets others read, write, rename and delete
/// a file while it is open.
const SHARE_ALL: u32 = FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE;

/// Settings of a [`Loopback`]: the same fields as on unix.
#[derive(Debug, Clone, Default)]
pub struct LoopbackOptions {
    /// The host directory to mirror (`C:\data`).
    pub source: PathBuf,
    /// Every modifying call fails with `ReadOnly`; nothing on the host changes.
    pub read_only: bool,
}

/// A host object's identity: (volume serial, file index).
type Key = (u64, u64);

/// One host object the filesystem has handed out a number for.
#[derive(Debug)]
struct Inode {
    ino: Ino,
    key: Key,
    kind: FileType,
    /// The names it is known under, most recent first (see the module docs); empty:
    /// unreachable, dropped once no handle holds it.
    paths: Mutex<Vec<RelPath>>,
    /// Lookup references (FUSE's count).
    lookups: AtomicU64,
    /// Open handles.
    opens: AtomicU64,
}

#[derive(Debug, Default)]
struct Table {
    by_ino: HashMap<u64, Arc<Inode>>,
    by_key: HashMap<Key, u64>,
}

/// One entry of a directory snapshot.
#[derive(Debug)]
struct SnapEntry {
    cookie: u64,
    name: OsString,
    attributes: u32,
    tag: u32,
    file_id: u64,
}

/// A directory listing sorted by cookie.
type Snapshot = Arc<Vec<SnapEntry>>;

/// What an open handle holds.
enum HandleData {
    File(File),
    Dir {
        dir: OwnedHandle,
        snap: Mutex<Option<Snapshot>>,
    },
}

/// An open file or directory.
struct Handle {
    inode: Arc<Inode>,
    flags: OpenFlags,
    data: HandleData,
}

impl HandleOwner for Handle {
    fn owner(&self) -> Ino {
        self.inode.ino
    }
}

/// A stateless-I/O host file, with the host object it is for.
struct CachedFile {
    key: Key,
    file: File,
}

/// A host file to do I/O on: a handle's or a cached one.
enum IoFile {
    Handle(Arc<Handle>),
    Cached(Arc<CachedFile>),
}

impl IoFile {
    fn file(&self) -> VfsResult<&File> {
        match self {
            IoFile::Handle(h) => match &h.data {
                HandleData::File(f) => Ok(f),
                HandleData::Dir { .. } => Err(VfsError::IsDir),
            },
            IoFile::Cached(f) => Ok(&f.file),
        }
    }
}

/// The loopback filesystem. See the [module docs](self) for its design.
pub struct Loopback {
    opts: LoopbackOptions,
    /// Fixed owner, or `None`: each caller is shown as the owner.
    owner: Option<(u32, u32)>,
    root: OwnedHandle,
    /// `GetFinalPathNameByHandleW` of the source, for the symlink fallback's check.
    root_final: Vec<u16>,
    table: RwLock<Table>,
    /// Path walks (read) against renames (write); see the module docs.
    ns: RwLock<()>,
    next_ino: AtomicU64,
    handles: HandleTable<Handle>,
    cache: IoCache<CachedFile>,
    dir_snaps: Mutex<Vec<(u64, Instant, Snapshot)>>,
}

impl std::fmt::Debug for Loopback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loopback")
            .field("opts", &self.opts)
            .field("owner", &self.owner)
            .field("inodes", &self.inode_count())
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------------------
// Host calls.

/// The `VfsError` of a failed NTSTATUS.
fn nt_err(status: NTSTATUS) -> VfsError {
    winpure::error_from_ntstatus(status).unwrap_or_else(|| {
        // SAFETY: a pure table lookup on a status code.
        let code = unsafe { RtlNtStatusToDosError(status) };
        winpure::error_from_win32(code)
    })
}

/// The `VfsError` of the calling thread's last Win32 error.
fn last_err() -> VfsError {
    error_from_io(io::Error::last_os_error())
}

fn wide(s: &OsStr) -> Vec<u16> {
    s.encode_wide().collect()
}

/// Opens `name` (one component, or empty to reopen `dir` itself) relative to the
/// directory handle `dir`, never following a reparse point, case-insensitively. Returns
/// the handle and whether the object was created.
fn nt_open(
    dir: BorrowedHandle<'_>,
    name: &[u16],
    access: u32,
    disposition: NTCREATEFILE_CREATE_DISPOSITION,
    options: NTCREATEFILE_CREATE_OPTIONS,
    attributes: u32,
) -> VfsResult<(OwnedHandle, bool)> {
    let len = u16::try_from(name.len() * 2).map_err(|_| VfsError::NameTooLong)?;
    let uname = UNICODE_STRING {
        Length: len,
        MaximumLength: len,
        Buffer: name.as_ptr().cast_mut(),
    };
    let oa = OBJECT_ATTRIBUTES {
        Length: size_of::<OBJECT_ATTRIBUTES>() as u32,
        RootDirectory: dir.as_raw_handle(),
        ObjectName: &uname,
        Attributes: OBJ_CASE_INSENSITIVE,
        SecurityDescriptor: std::ptr::null(),
        SecurityQualityOfService: std::ptr::null(),
    };
    let mut h: HANDLE = std::ptr::null_mut();
    let mut iosb = IO_STATUS_BLOCK::default();
    // SAFETY: every pointer refers to a live local (the name outlives the call); the
    // handle is written only on success.
    let status = unsafe {
        NtCreateFile(
            &mut h,
            access | SYNCHRONIZE | FILE_READ_ATTRIBUTES,
            &oa,
            &mut iosb,
            std::ptr::null(),
            attributes,
            SHARE_ALL,
            disposition,
            options
                | FILE_OPEN_REPARSE_POINT
                | FILE_SYNCHRONOUS_IO_NONALERT
                | FILE_OPEN_FOR_BACKUP_INTENT,
            std::ptr::null(),
            0,
        )
    };
    if status < 0 {
        return Err(nt_err(status));
    }
    // SAFETY: NtCreateFile succeeded, so `h` is a new handle that we own.
    let owned = unsafe { OwnedHandle::from_raw_handle(h) };
    Ok((owned, iosb.Information == FILE_CREATED))
}

/// `GetFileInformationByHandleEx` into a `T`.
fn info<T: Default>(h: BorrowedHandle<'_>, class: FILE_INFO_BY_HANDLE_CLASS) -> VfsResult<T> {
    let mut v = T::default();
    // SAFETY: the buffer is a valid, writable `T` of the size passed, and `class`
    // is the information class whose structure `T` is.
    let ok = unsafe {
        GetFileInformationByHandleEx(
            h.as_raw_handle(),
            class,
            (&raw mut v).cast::<c_void>(),
            size_of::<T>() as u32,
        )
    };
    if ok == 0 {
        return Err(last_err());
    }
    Ok(v)
}

/// `SetFileInformationByHandle` from a `T`.
fn set_info<T>(h: BorrowedHandle<'_>, class: FILE_INFO_BY_HANDLE_CLASS, v: &T) -> VfsResult<()> {
    // SAFETY: the buffer is a valid `T` of the size passed, the structure of `class`.
    let ok = unsafe {
        SetFileInformationByHandle(
            h.as_raw_handle(),
            class,
            (v as *const T).cast::<c_void>(),
            size_of::<T>() as u32,
        )
    };
    if ok == 0 {
        return Err(last_err());
    }
    Ok(())
}

/// The identity of the object behind `h`.
fn key_of(h: BorrowedHandle<'_>) -> VfsResult<Key> {
    let mut bh = BY_HANDLE_FILE_INFORMATION::default();
    // SAFETY: `bh` is a valid, writable structure for the call.
    if unsafe { GetFileInformationByHandle(h.as_raw_handle(), &mut bh) } == 0 {
        return Err(last_err());
    }
    Ok((
        u64::from(bh.dwVolumeSerialNumber),
        (u64::from(bh.nFileIndexHigh) << 32) | u64::from(bh.nFileIndexLow),
    ))
}

/// Everything loopback reports about the object behind `h`.
fn stat(h: BorrowedHandle<'_>) -> VfsResult<WinStat> {
    let mut bh = BY_HANDLE_FILE_INFORMATION::default();
    // SAFETY: `bh` is a valid, writable structure for the call.
    if unsafe { GetFileInformationByHandle(h.as_raw_handle(), &mut bh) } == 0 {
        return Err(last_err());
    }
    let basic: FILE_BASIC_INFO = info(h, FileBasicInfo)?;
    let standard: FILE_STANDARD_INFO = info(h, FileStandardInfo)?;
    let tag = if basic.FileAttributes & winpure::ATTR_REPARSE_POINT != 0 {
        info::<FILE_ATTRIBUTE_TAG_INFO>(h, FileAttributeTagInfo)?.ReparseTag
    } else {
        0
    };
    Ok(WinStat {
        volume: u64::from(bh.dwVolumeSerialNumber),
        index: (u64::from(bh.nFileIndexHigh) << 32) | u64::from(bh.nFileIndexLow),
        attributes: basic.FileAttributes,
        tag,
        size: u64::try_from(standard.EndOfFile).unwrap_or(0),
        allocated: u64::try_from(standard.AllocationSize).unwrap_or(0),
        // A file deleted while open (classic semantics) still counts its link.
        nlink: if standard.DeletePending {
            0
        } else {
            standard.NumberOfLinks
        },
        created: basic.CreationTime,
        accessed: basic.LastAccessTime,
        written: basic.LastWriteTime,
        changed: basic.ChangeTime,
    })
}

/// The reparse data of the object behind `h`.
fn read_reparse(h: BorrowedHandle<'_>) -> VfsResult<Vec<u8>> {
    let mut buf = vec![0u8; MAX_REPARSE];
    let mut got = 0u32;
    // SAFETY: the output buffer is writable for the length passed; no overlapped I/O.
    let ok = unsafe {
        DeviceIoControl(
            h.as_raw_handle(),
            FSCTL_GET_REPARSE_POINT,
            std::ptr::null(),
            0,
            buf.as_mut_ptr().cast::<c_void>(),
            buf.len() as u32,
            &mut got,
            std::ptr::null_mut(),
        )
    };
    if ok == 0 {
        return Err(last_err());
    }
    buf.truncate(got as usize);
    Ok(buf)
}

/// Makes the (empty) file behind `h` a reparse point with `data`.
fn set_reparse(h: BorrowedHandle<'_>, data: &[u8]) -> VfsResult<()> {
    let mut got = 0u32;
    // SAFETY: the input buffer is readable for the length passed; no output buffer;
    // no overlapped I/O.
    let ok = unsafe {
        DeviceIoControl(
            h.as_raw_handle(),
            FSCTL_SET_REPARSE_POINT,
            data.as_ptr().cast::<c_void>(),
            data.len() as u32,
            std::ptr::null_mut(),
            0,
            &mut got,
            std::ptr::null_mut(),
        )
    };
    if ok == 0 {
        return Err(last_err());
    }
    Ok(())
}

/// The target of the symlink behind `h`, UTF-16.
fn link_target(h: BorrowedHandle<'_>) -> VfsResult<Vec<u16>> {
    parse_link_target(&read_reparse(h)?)
}

/// Deletes the object behind `h` (opened with `DELETE`): POSIX semantics where the
/// filesystem has them, else classic delete-on-close (clearing a read-only attribute
/// first, as POSIX unlink ignores it).
fn delete(h: BorrowedHandle<'_>) -> VfsResult<()> {
    let ex = FILE_DISPOSITION_INFO_EX {
        Flags: FILE_DISPOSITION_FLAG_DELETE
            | FILE_DISPOSITION_FLAG_POSIX_SEMANTICS
            | FILE_DISPOSITION_FLAG_IGNORE_READONLY_ATTRIBUTE,
    };
    match set_info(h, FileDispositionInfoEx, &ex) {
        Ok(()) => return Ok(()),
        Err(VfsError::InvalidArgument | VfsError::NotSupported) => {}
        Err(VfsError::Io(e)) if e.raw_os_error() == Some(1) => {} // ERROR_INVALID_FUNCTION
        Err(e) => return Err(e),
    }
    let basic: FILE_BASIC_INFO = info(h, FileBasicInfo)?;
    if basic.FileAttributes & ATTR_READONLY != 0 {
        let attrs = basic.FileAttributes & !ATTR_READONLY;
        let clear = FILE_BASIC_INFO {
            FileAttributes: if attrs == 0 {
                winpure::ATTR_NORMAL
            } else {
                attrs
            },
            ..FILE_BASIC_INFO::default()
        };
        set_info(h, FileBasicInfo, &clear)?;
    }
    set_info(
        h,
        FileDispositionInfo,
        &FILE_DISPOSITION_INFO { DeleteFile: true },
    )
}

/// A `FILE_RENAME_INFORMATION`/`FILE_LINK_INFORMATION` buffer (same layout): the flags
/// word, the target directory handle and one name. `u64`s keep it aligned.
fn name_info_buffer(flags: u32, dir: BorrowedHandle<'_>, name: &[u16]) -> VfsResult<Vec<u64>> {
    const _: () = assert!(
        offset_of!(FILE_RENAME_INFORMATION, FileName)
            == offset_of!(FILE_LINK_INFORMATION, FileName)
            && offset_of!(FILE_RENAME_INFORMATION, RootDirectory)
                == offset_of!(FILE_LINK_INFORMATION, RootDirectory)
    );
    let name_at = offset_of!(FILE_RENAME_INFORMATION, FileName);
    let bytes = name.len() * 2;
    let total = (name_at + bytes).max(size_of::<FILE_RENAME_INFORMATION>());
    let mut buf = vec![0u64; total.div_ceil(8)];
    let base = buf.as_mut_ptr().cast::<u8>();
    let name_len = u32::try_from(bytes).map_err(|_| VfsError::NameTooLong)?;
    // SAFETY: `buf` is zeroed, 8-aligned and at least `total` bytes long, which covers
    // the header fields written at their offsets and the name copied after them.
    unsafe {
        base.cast::<u32>().write(flags);
        base.add(offset_of!(FILE_RENAME_INFORMATION, RootDirectory))
            .cast::<HANDLE>()
            .write(dir.as_raw_handle());
        base.add(offset_of!(FILE_RENAME_INFORMATION, FileNameLength))
            .cast::<u32>()
            .write(name_len);
        std::ptr::copy_nonoverlapping(name.as_ptr().cast::<u8>(), base.add(name_at), bytes);
    }
    Ok(buf)
}

/// `NtSetInformationFile` with a name buffer from [`name_info_buffer`].
fn set_name_info(h: BorrowedHandle<'_>, buf: &[u64], class: i32) -> Result<(), NTSTATUS> {
    let mut iosb = IO_STATUS_BLOCK::default();
    // SAFETY: `buf` is a complete FILE_RENAME/LINK_INFORMATION of the length passed.
    let status = unsafe {
        NtSetInformationFile(
            h.as_raw_handle(),
            &mut iosb,
            buf.as_ptr().cast::<c_void>(),
            (buf.len() * 8) as u32,
            class,
        )
    };
    if status < 0 { Err(status) } else { Ok(()) }
}

/// Renames the object behind `h` (opened with `DELETE`) to `name` in directory `dir`.
fn rename_to(
    h: BorrowedHandle<'_>,
    dir: BorrowedHandle<'_>,
    name: &[u16],
    replace: bool,
) -> VfsResult<()> {
    let mut flags = FILE_RENAME_POSIX_SEMANTICS | FILE_RENAME_IGNORE_READONLY_ATTRIBUTE;
    if replace {
        flags |= FILE_RENAME_REPLACE_IF_EXISTS;
    }
    let ex = name_info_buffer(flags, dir, name)?;
    match set_name_info(h, &ex, FileRenameInformationEx) {
        Ok(()) => return Ok(()),
        // INVALID_PARAMETER, INVALID_INFO_CLASS, NOT_SUPPORTED: no Ex class here.
        Err(s) if matches!(s as u32, 0xC000_000D | 0xC000_0003 | 0xC000_00BB) => {}
        Err(s) => return Err(nt_err(s)),
    }
    // The classic class: its first byte is the ReplaceIfExists BOOLEAN.
    let classic = name_info_buffer(u32::from(replace), dir, name)?;
    set_name_info(h, &classic, FileRenameInformation).map_err(nt_err)
}

/// Adds hard link `name` in directory `dir` to the object behind `h`.
fn link_to(h: BorrowedHandle<'_>, dir: BorrowedHandle<'_>, name: &[u16]) -> VfsResult<()> {
    let buf = name_info_buffer(0, dir, name)?;
    set_name_info(h, &buf, FileLinkInformation).map_err(nt_err)
}

/// `GetFinalPathNameByHandleW` (`\\?\C:\...`).
fn final_path(h: BorrowedHandle<'_>) -> VfsResult<Vec<u16>> {
    let mut buf = vec![0u16; 512];
    loop {
        // SAFETY: the buffer is writable for the length passed.
        let n = unsafe {
            GetFinalPathNameByHandleW(
                h.as_raw_handle(),
                buf.as_mut_ptr(),
                buf.len() as u32,
                FILE_NAME_NORMALIZED,
            )
        } as usize;
        if n == 0 {
            return Err(last_err());
        }
        if n < buf.len() {
            buf.truncate(n);
            return Ok(buf);
        }
        if n > 32 * 1024 {
            return Err(VfsError::NameTooLong);
        }
        buf.resize(n + 1, 0);
    }
}

/// Lists a directory handle (opened with `FILE_LIST_DIRECTORY`) into a snapshot sorted
/// by cookie.
fn snapshot(dir: BorrowedHandle<'_>) -> VfsResult<Snapshot> {
    let mut buf = vec![0u64; 8 * 1024];
    let mut out = Vec::new();
    let mut class = FileIdBothDirectoryRestartInfo;
    loop {
        // SAFETY: the buffer is writable, 8-aligned, for the length passed.
        let ok = unsafe {
            GetFileInformationByHandleEx(
                dir.as_raw_handle(),
                class,
                buf.as_mut_ptr().cast::<c_void>(),
                (buf.len() * 8) as u32,
            )
        };
        if ok == 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(ERROR_NO_MORE_FILES as i32) {
                break;
            }
            return Err(error_from_io(e));
        }
        class = FileIdBothDirectoryInfo;
        // SAFETY: viewing the initialized `u64` buffer as bytes.
        let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), buf.len() * 8) };
        for r in parse_dir_records(bytes).map_err(VfsError::Io)? {
            let name = OsString::from_wide(&r.name);
            if check_win_name(&name).is_err() {
                continue; // unusable by clients (see the module docs)
            }
            out.push(SnapEntry {
                cookie: name_cookie(&name),
                name,
                attributes: r.attributes,
                tag: r.tag,
                file_id: r.file_id,
            });
        }
    }
    out.sort_by(|a, b| a.cookie.cmp(&b.cookie).then_with(|| a.name.cmp(&b.name)));
    Ok(Arc::new(out))
}

/// Whether a handle opened with `flags` may read.
fn can_read(flags: OpenFlags) -> bool {
    flags.contains(OpenFlags::READ) || !flags.contains(OpenFlags::WRITE)
}

/// Whether `flags` would modify the file.
fn writes(flags: OpenFlags) -> bool {
    flags.intersects(OpenFlags::WRITE | OpenFlags::TRUNCATE | OpenFlags::APPEND)
}

/// The host access rights for `flags`.
fn host_access(flags: OpenFlags) -> u32 {
    let mut a = 0;
    if can_read(flags) {
        a |= FILE_GENERIC_READ;
    }
    if flags.intersects(OpenFlags::WRITE | OpenFlags::APPEND) {
        a |= FILE_GENERIC_WRITE;
    }
    if flags.contains(OpenFlags::TRUNCATE) {
        a |= FILE_WRITE_DATA;
    }
    a
}

/// Logs once that symlinks cannot be created here.
fn warn_no_symlink_privilege() {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "loopback: creating symlinks needs SeCreateSymbolicLinkPrivilege (an elevated \
             process) or Windows Developer Mode; symlink requests fail with EPERM"
        );
    }
}

impl Loopback {
    /// Mirrors `opts.source`, which must be an existing directory (a symlink or junction
    /// given as the source itself is followed once, here). Every object is reported as
    /// owned by its caller; see [`with_owner`](Self::with_owner).
    pub fn new(opts: LoopbackOptions) -> VfsResult<Loopback> {
        Self::build(opts, None)
    }

    /// Like [`new`](Self::new), but every object is reported as owned by `uid`/`gid`,
    /// whoever asks.
    pub fn with_owner(opts: LoopbackOptions, uid: u32, gid: u32) -> VfsResult<Loopback> {
        Self::build(opts, Some((uid, gid)))
    }

    fn build(opts: LoopbackOptions, owner: Option<(u32, u32)>) -> VfsResult<Loopback> {
        let file = std::fs::OpenOptions::new()
            .access_mode(FILE_LIST_DIRECTORY | FILE_TRAVERSE | FILE_READ_ATTRIBUTES | SYNCHRONIZE)
            .share_mode(SHARE_ALL)
            .custom_flags(FILE_FLAG_BACKUP_SEMANTICS)
            .open(&opts.source)
            .map_err(error_from_io)?;
        let root = OwnedHandle::from(file);
        let st = stat(root.as_handle())?;
        if st.kind() != FileType::Directory {
            return Err(VfsError::NotDir);
        }
        let root_final = final_path(root.as_handle())?;
        let inode = Arc::new(Inode {
            ino: Ino::ROOT,
            key: st.key(),
            kind: FileType::Directory,
            paths: Mutex::new(vec![RelPath::from(Vec::new())]),
            lookups: AtomicU64::new(1),
            opens: AtomicU64::new(0),
        });
        let mut table = Table::default();
        table.by_key.insert(st.key(), Ino::ROOT.0);
        table.by_ino.insert(Ino::ROOT.0, inode);
        Ok(Loopback {
            opts,
            owner,
            root,
            root_final,
            table: RwLock::new(table),
            ns: RwLock::new(()),
            next_ino: AtomicU64::new(2),
            handles: HandleTable::new(),
            cache: IoCache::new(),
            dir_snaps: Mutex::new(Vec::new()),
        })
    }

    /// Number of live table entries, root included (for tests and diagnostics).
    pub fn inode_count(&self) -> u64 {
        self.table.read().by_ino.len() as u64
    }

    // -----------------------------------------------------------------------------------
    // Table.

    fn owner_of(&self, ctx: &Ctx) -> (u32, u32) {
        self.owner.unwrap_or((ctx.uid, ctx.gid))
    }

    fn writable(&self) -> VfsResult<()> {
        if self.opts.read_only {
            return Err(VfsError::ReadOnly);
        }
        Ok(())
    }

    fn inode(&self, ino: Ino) -> VfsResult<Arc<Inode>> {
        self.table
            .read()
            .by_ino
            .get(&ino.0)
            .cloned()
            .ok_or(VfsError::Stale)
    }

    /// Registers the object `key` found at `path`, counting one lookup.
    fn register(&self, key: Key, kind: FileType, path: RelPath) -> Arc<Inode> {
        let mut t = self.table.write();
        if let Some(inode) = t.by_key.get(&key).and_then(|i| t.by_ino.get(i)) {
            inode.lookups.fetch_add(1, Ordering::Relaxed);
            remember_path(&mut inode.paths.lock(), path);
            return inode.clone();
        }
        let ino = Ino(self.next_ino.fetch_add(1, Ordering::Relaxed));
        let inode = Arc::new(Inode {
            ino,
            key,
            kind,
            paths: Mutex::new(vec![path]),
            lookups: AtomicU64::new(1),
            opens: AtomicU64::new(0),
        });
        t.by_key.insert(key, ino.0);
        t.by_ino.insert(ino.0, inode.clone());
        inode
    }

    /// Removes `inode` from the table when nothing holds it open and either no lookups
    /// remain or it has no known name left.
    fn maybe_drop(&self, inode: &Arc<Inode>) {
        if inode.ino == Ino::ROOT || inode.opens.load(Ordering::Acquire) != 0 {
            return;
        }
        let removed = {
            let mut t = self.table.write();
            let current = t
                .by_ino
                .get(&inode.ino.0)
                .is_some_and(|i| Arc::ptr_eq(i, inode));
            if current
                && inode.opens.load(Ordering::Acquire) == 0
                && (inode.lookups.load(Ordering::Acquire) == 0 || inode.paths.lock().is_empty())
            {
                t.by_ino.remove(&inode.ino.0);
                if t.by_key.get(&inode.key) == Some(&inode.ino.0) {
                    t.by_key.remove(&inode.key);
                }
                true
            } else {
                false
            }
        };
        if removed {
            self.cache.remove(inode.ino.0);
        }
    }

    /// The name `path` of object `key` is gone from the host.
    fn forget_name(&self, key: Key, path: &[OsString]) {
        let inode = {
            let t = self.table.read();
            t.by_key.get(&key).and_then(|i| t.by_ino.get(i)).cloned()
        };
        if let Some(inode) = inode {
            forget_path(&mut inode.paths.lock(), path);
            self.maybe_drop(&inode);
        }
    }

    /// Closes the stateless-I/O handles of host object `key` (they would keep a
    /// delete-on-close file's name around, or block a rename).
    fn uncache_key(&self, key: Key) {
        self.cache.retain(|_, c| c.key != key);
    }

    // -----------------------------------------------------------------------------------
    // Path walks. Callers hold `ns` (read, or write for rename) around them.

    /// Opens the object at `path` below the source: every directory on the way through
    /// its parent's handle, never following reparse points.
    fn walk(
        &self,
        path: &[OsString],
        access: u32,
        options: NTCREATEFILE_CREATE_OPTIONS,
    ) -> VfsResult<OwnedHandle> {
        let Some((last, dirs)) = path.split_last() else {
            return Ok(nt_open(self.root.as_handle(), &[], access, FILE_OPEN, options, 0)?.0);
        };
        let mut cur: Option<OwnedHandle> = None;
        for comp in dirs {
            let parent = cur
                .as_ref()
                .map_or(self.root.as_handle(), |h| h.as_handle());
            let (h, _) = nt_open(
                parent,
                &wide(comp),
                FILE_TRAVERSE,
                FILE_OPEN,
                FILE_DIRECTORY_FILE,
                0,
            )?;
            let tag: FILE_ATTRIBUTE_TAG_INFO = info(h.as_handle(), FileAttributeTagInfo)?;
            if tag.FileAttributes & winpure::ATTR_REPARSE_POINT != 0
                && winpure::is_name_surrogate(tag.ReparseTag)
            {
                return Err(VfsError::Stale); // swapped for a link: never followed
            }
            cur = Some(h);
        }
        let parent = cur
            .as_ref()
            .map_or(self.root.as_handle(), |h| h.as_handle());
        Ok(nt_open(parent, &wide(last), access, FILE_OPEN, options, 0)?.0)
    }

    /// Opens the host object of `inode` with `access` through one of its known names,
    /// checking that it is still the same object; returns the handle and the name used.
    fn resolve(
        &self,
        inode: &Inode,
        access: u32,
        options: NTCREATEFILE_CREATE_OPTIONS,
    ) -> VfsResult<(OwnedHandle, RelPath)> {
        let paths = inode.paths.lock().clone();
        for path in paths {
            match self.walk(&path, access, options) {
                Ok(h) => {
                    if inode.ino == Ino::ROOT || key_of(h.as_handle())? == inode.key {
                        return Ok((h, path));
                    }
                }
                Err(VfsError::NotFound | VfsError::NotDir | VfsError::Stale | VfsError::Loop) => {}
                Err(e) => return Err(e),
            }
        }
        Err(VfsError::Stale)
    }

    /// The entry and an open handle of directory `ino`.
    fn dir_handle(&self, ino: Ino, access: u32) -> VfsResult<(Arc<Inode>, OwnedHandle, RelPath)> {
        let inode = self.inode(ino)?;
        if inode.kind != FileType::Directory {
            return Err(VfsError::NotDir);
        }
        let (h, path) = self.resolve(&inode, access, FILE_DIRECTORY_FILE)?;
        Ok((inode, h, path))
    }

    /// Attributes of the object behind `h`, which is `inode`.
    fn attr(&self, ctx: &Ctx, inode: &Inode, h: BorrowedHandle<'_>) -> VfsResult<Attr> {
        let st = stat(h)?;
        self.attr_of(ctx, inode.ino, &st, h)
    }

    fn attr_of(&self, ctx: &Ctx, ino: Ino, st: &WinStat, h: BorrowedHandle<'_>) -> VfsResult<Attr> {
        let link_len = if st.kind() == FileType::Symlink {
            link_target(h)
                .map(|t| OsString::from_wide(&t).as_encoded_bytes().len() as u64)
                .unwrap_or(0)
        } else {
            0
        };
        Ok(attr_from_stat(ino, st, link_len, self.owner_of(ctx)))
    }

    /// Finds (registering if needed) `name` in the directory open as `dir` (at `dir_path`),
    /// counting one lookup.
    fn lookup_name(
        &self,
        ctx: &Ctx,
        dir: BorrowedHandle<'_>,
        dir_path: &[OsString],
        name: &OsStr,
    ) -> VfsResult<(Arc<Inode>, Attr)> {
        let (h, _) = nt_open(dir, &wide(name), 0, FILE_OPEN, 0, 0)?;
        let st = stat(h.as_handle())?;
        let inode = self.register(st.key(), st.kind(), join(dir_path, name));
        match self.attr_of(ctx, inode.ino, &st, h.as_handle()) {
            Ok(attr) => Ok((inode, attr)),
            Err(e) => {
                self.unlookup(&inode);
                Err(e)
            }
        }
    }

    /// Takes back the lookup just counted on `inode`.
    fn unlookup(&self, inode: &Arc<Inode>) {
        inode.lookups.fetch_sub(1, Ordering::AcqRel);
        self.maybe_drop(inode);
    }

    // -----------------------------------------------------------------------------------
    // Handles.

    fn add_handle(&self, inode: Arc<Inode>, flags: OpenFlags, data: HandleData) -> Fh {
        inode.opens.fetch_add(1, Ordering::AcqRel);
        self.handles.insert(Handle { inode, flags, data })
    }

    fn handle(&self, ino: Ino, fh: Fh) -> VfsResult<Arc<Handle>> {
        self.handles.get(ino, fh)
    }

    fn remove_handle(&self, ino: Ino, fh: Fh) -> VfsResult<()> {
        let h = self.handles.remove(ino, fh)?;
        let inode = h.inode.clone();
        drop(h); // closes the host handle before the entry may go
        if inode.opens.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.maybe_drop(&inode);
        }
        Ok(())
    }

    /// The host file for I/O on `ino`: the handle's (checked for the access) or, without
    /// a handle, a cached one.
    fn io_file(&self, ino: Ino, fh: Option<Fh>, write: bool) -> VfsResult<IoFile> {
        if let Some(fh) = fh {
            let h = self.handle(ino, fh)?;
            if matches!(h.data, HandleData::Dir { .. }) {
                return Err(VfsError::IsDir);
            }
            let ok = if write {
                h.flags.intersects(OpenFlags::WRITE | OpenFlags::APPEND)
            } else {
                can_read(h.flags)
            };
            if !ok {
                return Err(VfsError::BadHandle);
            }
            return Ok(IoFile::Handle(h));
        }
        let inode = self.inode(ino)?;
        match inode.kind {
            FileType::RegularFile => {}
            FileType::Directory => return Err(VfsError::IsDir),
            _ => return Err(VfsError::InvalidArgument),
        }
        if write {
            self.writable()?;
        }
        if let Some(f) = self.cache.get(ino.0, write) {
            return Ok(IoFile::Cached(f));
        }
        let (h, writable) = {
            let _ns = self.ns.read();
            let rw = FILE_GENERIC_READ | FILE_GENERIC_WRITE;
            if self.opts.read_only {
                (
                    self.resolve(&inode, FILE_GENERIC_READ, FILE_NON_DIRECTORY_FILE)?
                        .0,
                    false,
                )
            } else {
                match self.resolve(&inode, rw, FILE_NON_DIRECTORY_FILE) {
                    Ok((h, _)) => (h, true),
                    Err(VfsError::PermissionDenied) if !write => (
                        self.resolve(&inode, FILE_GENERIC_READ, FILE_NON_DIRECTORY_FILE)?
                            .0,
                        false,
                    ),
                    Err(e) => return Err(e),
                }
            }
        };
        let file = Arc::new(CachedFile {
            key: inode.key,
            file: File::from(h),
        });
        // Still registered? (A concurrent drop must not leave a handle behind.)
        self.cache.insert(ino.0, writable, file.clone(), || {
            self.table.read().by_ino.contains_key(&ino.0)
        });
        Ok(IoFile::Cached(file))
    }

    /// Lists `snap` after `after` into `sink`, for directory `dir` (open as `dir_h`).
    #[allow(clippy::too_many_arguments)]
    fn fill(
        &self,
        ctx: &Ctx,
        dir: &Inode,
        dir_h: BorrowedHandle<'_>,
        dir_path: &[OsString],
        snap: &[SnapEntry],
        after: u64,
        sink: &mut dyn DirSink,
    ) -> VfsResult<()> {
        let plus = sink.wants_attr();
        for e in &snap[resume_index(snap, |e| e.cookie, after)..] {
            if plus {
                let (inode, attr) = match self.lookup_name(ctx, dir_h, dir_path, &e.name) {
                    Ok(x) => x,
                    Err(VfsError::NotFound) => continue, // removed meanwhile
                    Err(err) => return Err(err),
                };
                let full = sink.add(&DirEntry {
                    name: &e.name,
                    ino: inode.ino,
                    kind: attr.kind,
                    cookie: e.cookie,
                    attr: Some(attr),
                });
                if full {
                    self.unlookup(&inode);
                    break;
                }
            } else {
                let key = (dir.key.0, e.file_id);
                let ino = self
                    .table
                    .read()
                    .by_key
                    .get(&key)
                    .copied()
                    .unwrap_or(SYNTHETIC_INO | (e.file_id & !SYNTHETIC_INO));
                let full = sink.add(&DirEntry {
                    name: &e.name,
                    ino: Ino(ino),
                    kind: kind_of(e.attributes, e.tag),
                    cookie: e.cookie,
                    attr: None,
                });
                if full {
                    break;
                }
            }
        }
        Ok(())
    }

    /// The stateless snapshot of directory `ino` (open as `dir`): reused for a second
    /// while a listing continues, taken afresh when one starts.
    fn stateless_snapshot(
        &self,
        ino: Ino,
        dir: BorrowedHandle<'_>,
        after: u64,
    ) -> VfsResult<Snapshot> {
        let now = Instant::now();
        if after != 0 {
            let snaps = self.dir_snaps.lock();
            if let Some((_, _, s)) = snaps
                .iter()
                .find(|(i, t, _)| *i == ino.0 && now.duration_since(*t) < DIR_SNAPSHOT_AGE)
            {
                return Ok(s.clone());
            }
        }
        let snap = snapshot(dir)?;
        let mut snaps = self.dir_snaps.lock();
        snaps.retain(|(i, t, _)| *i != ino.0 && now.duration_since(*t) < DIR_SNAPSHOT_AGE);
        if snaps.len() >= DIR_SNAPSHOTS {
            snaps.remove(0);
        }
        snaps.push((ino.0, now, snap.clone()));
        Ok(snap)
    }

    /// Removes `parent/name`: a directory (`rmdir`) or anything else (`unlink`).
    fn remove(&self, parent: Ino, name: &OsStr, dir: bool) -> VfsResult<()> {
        check_win_name(name)?;
        let _ns = self.ns.read();
        let (_, dh, dpath) = self.dir_handle(parent, FILE_TRAVERSE)?;
        self.writable()?;
        let options = if dir { FILE_DIRECTORY_FILE } else { 0 };
        let (h, _) = nt_open(
            dh.as_handle(),
            &wide(name),
            DELETE | FILE_WRITE_ATTRIBUTES,
            FILE_OPEN,
            options,
            0,
        )?;
        let st = stat(h.as_handle())?;
        match (st.kind(), dir) {
            (FileType::Directory, false) => return Err(VfsError::IsDir),
            (FileType::Directory, true) | (_, false) => {}
            (_, true) => return Err(VfsError::NotDir),
        }
        self.uncache_key(st.key());
        delete(h.as_handle())?;
        drop(h);
        self.forget_name(st.key(), &join(&dpath, name));
        Ok(())
    }

    /// The path-based symlink fallback (Developer Mode); see the module docs.
    fn symlink_by_path(
        &self,
        dir: BorrowedHandle<'_>,
        name: &OsStr,
        target: &[u16],
    ) -> VfsResult<()> {
        let mut path = final_path(dir)?;
        let inside = path.len() >= self.root_final.len()
            && OsString::from_wide(&path[..self.root_final.len()])
                .eq_ignore_ascii_case(OsString::from_wide(&self.root_final))
            && (path.len() == self.root_final.len()
                || path[self.root_final.len()] == u16::from(b'\\'));
        if !inside {
            return Err(VfsError::Stale);
        }
        path.push(u16::from(b'\\'));
        path.extend(name.encode_wide());
        path.push(0);
        let mut t = target.to_vec();
        t.push(0);
        // SAFETY: both strings are NUL-terminated and live across the call.
        let ok = unsafe {
            CreateSymbolicLinkW(
                path.as_ptr(),
                t.as_ptr(),
                SYMBOLIC_LINK_FLAG_ALLOW_UNPRIVILEGED_CREATE,
            )
        };
        if !ok {
            let e = last_err();
            if matches!(e, VfsError::NotPermitted) {
                warn_no_symlink_privilege();
            }
            return Err(e);
        }
        // Verify that the link landed in the directory we hold.
        let (h, _) = nt_open(dir, &wide(name), 0, FILE_OPEN, 0, 0)?;
        if link_target(h.as_handle())? != target {
            return Err(VfsError::Io(io::Error::other(
                "the new symlink changed under loopback",
            )));
        }
        Ok(())
    }
}

impl Vfs for Loopback {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            xattrs: false,
            hard_links: true,
            symlinks: true,
            special_files: false,
            case_sensitive: false,
            read_only: self.opts.read_only,
            sparse_files: false,
            enforces_permissions: false,
            kills_privileges: false,
            max_name_len: NAME_MAX as u32,
        }
    }

    fn lookup(&self, ctx: &Ctx, parent: Ino, name: &OsStr) -> VfsResult<Attr> {
        check_win_name(name)?;
        let _ns = self.ns.read();
        let (_, dh, dpath) = self.dir_handle(parent, FILE_TRAVERSE)?;
        Ok(self.lookup_name(ctx, dh.as_handle(), &dpath, name)?.1)
    }

    fn forget(&self, ino: Ino, nlookup: u64) {
        let Ok(inode) = self.inode(ino) else { return };
        let mut cur = inode.lookups.load(Ordering::Acquire);
        loop {
            let new = cur.saturating_sub(nlookup);
            match inode
                .lookups
                .compare_exchange(cur, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        self.maybe_drop(&inode);
    }

    fn getattr(&self, ctx: &Ctx, ino: Ino, fh: Option<Fh>) -> VfsResult<Attr> {
        if let Some(fh) = fh {
            let h = self.handle(ino, fh)?;
            return match &h.data {
                HandleData::File(f) => self.attr(ctx, &h.inode, f.as_handle()),
                HandleData::Dir { dir, .. } => self.attr(ctx, &h.inode, dir.as_handle()),
            };
        }
        let inode = self.inode(ino)?;
        let (h, _) = {
            let _ns = self.ns.read();
            self.resolve(&inode, 0, 0)?
        };
        self.attr(ctx, &inode, h.as_handle())
    }

    fn setattr(&self, ctx: &Ctx, ino: Ino, set: &SetAttr, fh: Option<Fh>) -> VfsResult<Attr> {
        let handle = match fh {
            Some(fh) => Some(self.handle(ino, fh)?),
            None => None,
        };
        let inode = match &handle {
            Some(h) => h.inode.clone(),
            None => self.inode(ino)?,
        };
        if set.is_empty() {
            return self.getattr(ctx, ino, fh);
        }
        self.writable()?;
        let owner = self.owner_of(ctx);
        if set.uid.is_some_and(|u| u != owner.0) || set.gid.is_some_and(|g| g != owner.1) {
            return Err(VfsError::NotPermitted);
        }
        if set.size.is_some() {
            match inode.kind {
                FileType::RegularFile => {}
                FileType::Directory => return Err(VfsError::IsDir),
                _ => return Err(VfsError::InvalidArgument),
            }
        }
        let options = if inode.kind == FileType::Directory {
            FILE_DIRECTORY_FILE
        } else {
            0
        };
        // The open handle, when it may write (it then has FILE_WRITE_ATTRIBUTES too).
        let writable_file = handle
            .as_deref()
            .filter(|h| h.flags.intersects(OpenFlags::WRITE | OpenFlags::APPEND))
            .and_then(|h| match &h.data {
                HandleData::File(f) => Some(f),
                HandleData::Dir { .. } => None,
            });
        let _ns = self.ns.read();
        // Attributes and times through a fresh handle (the object's current name), or
        // through the open handle when the file is no longer reachable by name.
        let attr_h = match self.resolve(&inode, FILE_WRITE_ATTRIBUTES, options) {
            Ok((h, _)) => h,
            Err(VfsError::Stale) => match writable_file {
                Some(f) => f.as_handle().try_clone_to_owned().map_err(error_from_io)?,
                None => return Err(VfsError::Stale),
            },
            Err(e) => return Err(e),
        };
        let st = stat(attr_h.as_handle())?;
        let new_attrs = set
            .mode
            .and_then(|m| attributes_for_mode(st.kind(), st.attributes, m));
        let set_attrs = |a: u32| {
            let b = FILE_BASIC_INFO {
                FileAttributes: a,
                ..FILE_BASIC_INFO::default()
            };
            set_info(attr_h.as_handle(), FileBasicInfo, &b)
        };
        // Clearing read-only first lets the size change open the file for writing.
        let clears = new_attrs.is_some_and(|a| a & ATTR_READONLY == 0);
        if clears && let Some(a) = new_attrs {
            set_attrs(a)?;
        }
        if let Some(size) = set.size {
            let eof = FILE_END_OF_FILE_INFO {
                EndOfFile: i64::try_from(size).map_err(|_| VfsError::FileTooLarge)?,
            };
            match writable_file {
                Some(f) => set_info(f.as_handle(), FileEndOfFileInfo, &eof)?,
                None => {
                    let (w, _) = self.resolve(&inode, FILE_WRITE_DATA, FILE_NON_DIRECTORY_FILE)?;
                    set_info(w.as_handle(), FileEndOfFileInfo, &eof)?;
                }
            }
        }
        if set.atime.is_some() || set.mtime.is_some() || set.ctime.is_some() {
            let ft = |t: Option<SetTime>| -> VfsResult<i64> {
                match t {
                    None => Ok(0),
                    Some(SetTime::Now) => system_to_filetime(SystemTime::now()),
                    Some(SetTime::At(t)) => system_to_filetime(t),
                }
            };
            let b = FILE_BASIC_INFO {
                CreationTime: 0,
                LastAccessTime: ft(set.atime)?,
                LastWriteTime: ft(set.mtime)?,
                ChangeTime: ft(set.ctime.map(SetTime::At))?,
                FileAttributes: 0,
            };
            set_info(attr_h.as_handle(), FileBasicInfo, &b)?;
        }
        if !clears && let Some(a) = new_attrs {
            set_attrs(a)?;
        }
        drop(_ns);
        self.attr(ctx, &inode, attr_h.as_handle())
    }

    fn readlink(&self, _ctx: &Ctx, ino: Ino) -> VfsResult<Vec<u8>> {
        let inode = self.inode(ino)?;
        if inode.kind != FileType::Symlink {
            return Err(VfsError::InvalidArgument);
        }
        let (h, _) = {
            let _ns = self.ns.read();
            self.resolve(&inode, 0, 0)?
        };
        Ok(OsString::from_wide(&link_target(h.as_handle())?).into_encoded_bytes())
    }

    fn mknod(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &OsStr,
        kind: FileType,
        mode: u32,
        _rdev: u64,
    ) -> VfsResult<Attr> {
        match kind {
            FileType::RegularFile => {
                let flags = OpenFlags::READ | OpenFlags::EXCLUSIVE;
                let (attr, opened) = self.create(ctx, parent, name, mode, flags)?;
                self.release(ctx, attr.ino, opened.fh)?;
                Ok(attr)
            }
            FileType::Directory | FileType::Symlink => Err(VfsError::InvalidArgument),
            _ => Err(VfsError::NotSupported),
        }
    }

    fn mkdir(&self, ctx: &Ctx, parent: Ino, name: &OsStr, _mode: u32) -> VfsResult<Attr> {
        check_win_name(name)?;
        let _ns = self.ns.read();
        let (_, dh, dpath) = self.dir_handle(parent, FILE_TRAVERSE)?;
        self.writable()?;
        check_new_name(name)?;
        let (h, _) = nt_open(
            dh.as_handle(),
            &wide(name),
            FILE_LIST_DIRECTORY,
            FILE_CREATE,
            FILE_DIRECTORY_FILE,
            0,
        )?;
        let st = stat(h.as_handle())?;
        let inode = self.register(st.key(), st.kind(), join(&dpath, name));
        self.attr_of(ctx, inode.ino, &st, h.as_handle())
    }

    fn unlink(&self, _ctx: &Ctx, parent: Ino, name: &OsStr) -> VfsResult<()> {
        self.remove(parent, name, false)
    }

    fn rmdir(&self, _ctx: &Ctx, parent: Ino, name: &OsStr) -> VfsResult<()> {
        self.remove(parent, name, true)
    }

    fn symlink(&self, ctx: &Ctx, parent: Ino, name: &OsStr, target: &OsStr) -> VfsResult<Attr> {
        check_win_name(name)?;
        let _ns = self.ns.read();
        let (_, dh, dpath) = self.dir_handle(parent, FILE_TRAVERSE)?;
        self.writable()?;
        check_new_name(name)?;
        let wtarget = wide(target);
        if wtarget.is_empty() {
            return Err(VfsError::NotFound); // as symlink(2) with an empty target
        }
        let data = symlink_reparse_buffer(&wtarget)?;
        let (h, _) = nt_open(
            dh.as_handle(),
            &wide(name),
            FILE_WRITE_DATA | FILE_WRITE_ATTRIBUTES | DELETE,
            FILE_CREATE,
            FILE_NON_DIRECTORY_FILE,
            0,
        )?;
        if let Err(e) = set_reparse(h.as_handle(), &data) {
            // Remove the placeholder; nothing else was made.
            let _ = delete(h.as_handle());
            drop(h);
            if !matches!(e, VfsError::NotPermitted) {
                return Err(e);
            }
            self.symlink_by_path(dh.as_handle(), name, &wtarget)?;
        }
        let (inode, attr) = self.lookup_name(ctx, dh.as_handle(), &dpath, name)?;
        if attr.kind != FileType::Symlink {
            self.unlookup(&inode);
            return Err(VfsError::Io(io::Error::other(
                "the new symlink changed under loopback",
            )));
        }
        Ok(attr)
    }

    fn rename(
        &self,
        _ctx: &Ctx,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        flags: RenameFlags,
    ) -> VfsResult<()> {
        check_win_name(name)?;
        check_win_name(new_name)?;
        let noreplace = flags.contains(RenameFlags::NOREPLACE);
        if flags.contains(RenameFlags::EXCHANGE) {
            return Err(if noreplace {
                VfsError::InvalidArgument
            } else {
                VfsError::NotSupported
            });
        }
        let _ns = self.ns.write();
        let (from, from_h, from_path) = self.dir_handle(parent, FILE_TRAVERSE)?;
        let (to, to_h, to_path) = self.dir_handle(new_parent, FILE_TRAVERSE)?;
        self.writable()?;
        let (src, _) = nt_open(from_h.as_handle(), &wide(name), DELETE, FILE_OPEN, 0, 0)?;
        let sst = stat(src.as_handle())?;
        let src_dir = sst.kind() == FileType::Directory;
        let old_path = join(&from_path, name);
        let new_path = join(&to_path, new_name);
        if src_dir && has_prefix(&to_path, &old_path) {
            return Err(VfsError::InvalidArgument);
        }
        let target = match nt_open(to_h.as_handle(), &wide(new_name), 0, FILE_OPEN, 0, 0) {
            Ok((h, _)) => Some((stat(h.as_handle())?, h)),
            Err(VfsError::NotFound) => None,
            Err(e) => return Err(e),
        };
        let case_only = from.ino == to.ino && same_component(name, new_name) && name != new_name;
        let mut replaced = None;
        if let Some((tst, th)) = target {
            if tst.key() == sst.key() {
                if !case_only {
                    return Ok(()); // two names of one object: nothing to do
                }
            } else {
                if noreplace {
                    return Err(VfsError::Exists);
                }
                match (src_dir, tst.kind() == FileType::Directory) {
                    (false, true) => return Err(VfsError::IsDir),
                    (true, false) => return Err(VfsError::NotDir),
                    (true, true) => {
                        // Windows cannot rename over a directory: remove the (empty)
                        // target first. Not atomic; see the module docs.
                        drop(th);
                        let (victim, _) = nt_open(
                            to_h.as_handle(),
                            &wide(new_name),
                            DELETE,
                            FILE_OPEN,
                            FILE_DIRECTORY_FILE,
                            0,
                        )?;
                        if stat(victim.as_handle())?.key() != tst.key() {
                            return Err(VfsError::Busy);
                        }
                        delete(victim.as_handle())?;
                    }
                    (false, false) => self.uncache_key(tst.key()),
                }
                replaced = Some(tst.key());
            }
        }
        if src_dir {
            // Open handles inside a directory block its rename on Windows.
            self.cache.retain(|_, _| false);
        }
        if !case_only {
            check_new_name(new_name)?;
        }
        rename_to(
            src.as_handle(),
            to_h.as_handle(),
            &wide(new_name),
            replaced.is_some() && !noreplace,
        )?;
        drop(src);
        // The table follows the host.
        if let Some(key) = replaced {
            self.forget_name(key, &new_path);
        }
        let moved = {
            let t = self.table.read();
            t.by_key
                .get(&sst.key())
                .and_then(|i| t.by_ino.get(i))
                .cloned()
        };
        let old_prefix = moved
            .as_ref()
            .and_then(|m| {
                m.paths
                    .lock()
                    .iter()
                    .find(|p| p.len() == old_path.len() && has_prefix(p, &old_path))
                    .cloned()
            })
            .unwrap_or_else(|| old_path.clone());
        if let Some(m) = &moved {
            let mut paths = m.paths.lock();
            forget_path(&mut paths, &old_path);
            remember_path(&mut paths, new_path.clone());
        }
        if src_dir {
            let t = self.table.read();
            for inode in t.by_ino.values() {
                if moved.as_ref().is_some_and(|m| Arc::ptr_eq(m, inode)) {
                    continue;
                }
                let mut paths = inode.paths.lock();
                for p in paths.iter_mut() {
                    if let Some(np) = rebase(p, &old_prefix, &new_path) {
                        *p = np;
                    }
                }
            }
        }
        Ok(())
    }

    fn link(&self, ctx: &Ctx, ino: Ino, new_parent: Ino, new_name: &OsStr) -> VfsResult<Attr> {
        check_win_name(new_name)?;
        let inode = self.inode(ino)?;
        let _ns = self.ns.read();
        let (_, dh, dpath) = self.dir_handle(new_parent, FILE_TRAVERSE)?;
        self.writable()?;
        if inode.kind == FileType::Directory {
            return Err(VfsError::NotPermitted);
        }
        check_new_name(new_name)?;
        let (src, _) = self.resolve(&inode, FILE_WRITE_ATTRIBUTES, 0)?;
        link_to(src.as_handle(), dh.as_handle(), &wide(new_name))?;
        Ok(self.lookup_name(ctx, dh.as_handle(), &dpath, new_name)?.1)
    }

    fn open(&self, _ctx: &Ctx, ino: Ino, flags: OpenFlags) -> VfsResult<Opened> {
        let inode = self.inode(ino)?;
        match inode.kind {
            FileType::RegularFile => {}
            FileType::Directory if writes(flags) => return Err(VfsError::IsDir),
            FileType::Directory => {
                let (dir, _) = {
                    let _ns = self.ns.read();
                    self.resolve(&inode, FILE_LIST_DIRECTORY, FILE_DIRECTORY_FILE)?
                };
                let data = HandleData::Dir {
                    dir,
                    snap: Mutex::new(None),
                };
                return Ok(Opened::cached(self.add_handle(inode, flags, data)));
            }
            FileType::Symlink => return Err(VfsError::Loop),
            _ => return Err(VfsError::NotSupported),
        }
        if writes(flags) {
            self.writable()?;
        }
        let (h, _) = {
            let _ns = self.ns.read();
            self.resolve(&inode, host_access(flags), FILE_NON_DIRECTORY_FILE)?
        };
        let file = File::from(h);
        if flags.contains(OpenFlags::TRUNCATE) {
            file.set_len(0).map_err(error_from_io)?;
        }
        let fh = self.add_handle(inode, flags, HandleData::File(file));
        Ok(Opened {
            fh,
            direct_io: flags.contains(OpenFlags::DIRECT),
            // The host may change the file behind the client's back (close-to-open).
            keep_cache: false,
            no_flush: true,
        })
    }

    fn create(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        flags: OpenFlags,
    ) -> VfsResult<(Attr, Opened)> {
        check_win_name(name)?;
        let _ns = self.ns.read();
        let (_, dh, dpath) = self.dir_handle(parent, FILE_TRAVERSE)?;
        self.writable()?;
        // A name Windows programs could not use again may still be opened if it exists.
        let name_err = check_new_name(name).err();
        let exclusive = flags.contains(OpenFlags::EXCLUSIVE);
        if exclusive && let Some(e) = name_err {
            return Err(e);
        }
        let disposition = match (exclusive, name_err.is_some()) {
            (true, _) => FILE_CREATE,
            (false, false) => FILE_OPEN_IF,
            (false, true) => FILE_OPEN,
        };
        let perm = mode & !ctx.umask;
        let attributes = if perm & 0o200 == 0 {
            ATTR_READONLY
        } else {
            winpure::ATTR_NORMAL
        };
        let (h, created) = match nt_open(
            dh.as_handle(),
            &wide(name),
            host_access(flags),
            disposition,
            FILE_NON_DIRECTORY_FILE,
            attributes,
        ) {
            Ok(x) => x,
            Err(VfsError::NotFound) if disposition == FILE_OPEN => {
                return Err(name_err.unwrap_or(VfsError::NotFound));
            }
            Err(e) => return Err(e),
        };
        let st = stat(h.as_handle())?;
        if st.kind() != FileType::RegularFile {
            return Err(VfsError::Exists);
        }
        let file = File::from(h);
        if !created && flags.contains(OpenFlags::TRUNCATE) {
            file.set_len(0).map_err(error_from_io)?;
        }
        let inode = self.register(st.key(), st.kind(), join(&dpath, name));
        let attr = match self.attr(ctx, &inode, file.as_handle()) {
            Ok(a) => a,
            Err(e) => {
                self.unlookup(&inode);
                return Err(e);
            }
        };
        let fh = self.add_handle(inode, flags, HandleData::File(file));
        Ok((
            attr,
            Opened {
                fh,
                direct_io: flags.contains(OpenFlags::DIRECT),
                keep_cache: false,
                no_flush: true,
            },
        ))
    }

    fn read(
        &self,
        _ctx: &Ctx,
        ino: Ino,
        fh: Option<Fh>,
        offset: u64,
        buf: &mut [u8],
    ) -> VfsResult<usize> {
        let io = self.io_file(ino, fh, false)?;
        let file = io.file()?;
        if offset > i64::MAX as u64 {
            return Ok(0);
        }
        let max = (i64::MAX as u64 - offset).min(buf.len() as u64) as usize;
        let buf = &mut buf[..max];
        let mut done = 0;
        while done < buf.len() {
            match file.seek_read(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) if done > 0 => break,
                Err(e) => return Err(error_from_io(e)),
            }
        }
        Ok(done)
    }

    fn write(
        &self,
        _ctx: &Ctx,
        ino: Ino,
        fh: Option<Fh>,
        offset: u64,
        data: &[u8],
    ) -> VfsResult<u32> {
        self.writable()?;
        let io = self.io_file(ino, fh, true)?;
        let append = matches!(&io, IoFile::Handle(h) if h.flags.contains(OpenFlags::APPEND));
        let file = io.file()?;
        let data = &data[..data.len().min(u32::MAX as usize)];
        if !append
            && offset
                .checked_add(data.len() as u64)
                .is_none_or(|end| end > i64::MAX as u64)
        {
            return Err(VfsError::FileTooLarge);
        }
        let mut done = 0;
        while done < data.len() {
            // All ones is WriteFile's "at the end of file" offset.
            let at = if append {
                u64::MAX
            } else {
                offset + done as u64
            };
            match file.seek_write(&data[done..], at) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) if done > 0 => break,
                Err(e) => return Err(error_from_io(e)),
            }
        }
        Ok(done as u32)
    }

    fn release(&self, _ctx: &Ctx, ino: Ino, fh: Fh) -> VfsResult<()> {
        self.remove_handle(ino, fh)
    }

    fn fsync(&self, _ctx: &Ctx, ino: Ino, fh: Option<Fh>, _datasync: bool) -> VfsResult<()> {
        if let Some(fh) = fh {
            let h = self.handle(ino, fh)?;
            if let HandleData::File(f) = &h.data {
                f.sync_all().map_err(error_from_io)?;
            }
            return Ok(());
        }
        let inode = self.inode(ino)?;
        if inode.kind != FileType::RegularFile {
            return Ok(()); // directories: see the module docs
        }
        // Flushing needs write access; a read-only file has nothing of ours to flush.
        match self.io_file(ino, None, true) {
            Ok(io) => io.file()?.sync_all().map_err(error_from_io),
            Err(VfsError::PermissionDenied | VfsError::ReadOnly) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn opendir(&self, _ctx: &Ctx, ino: Ino, flags: OpenFlags) -> VfsResult<Fh> {
        let inode = self.inode(ino)?;
        if inode.kind != FileType::Directory {
            return Err(VfsError::NotDir);
        }
        let (dir, _) = {
            let _ns = self.ns.read();
            self.resolve(&inode, FILE_LIST_DIRECTORY, FILE_DIRECTORY_FILE)?
        };
        let data = HandleData::Dir {
            dir,
            snap: Mutex::new(None),
        };
        Ok(self.add_handle(inode, flags | OpenFlags::READ, data))
    }

    fn readdir(
        &self,
        ctx: &Ctx,
        ino: Ino,
        fh: Option<Fh>,
        after: u64,
        sink: &mut dyn DirSink,
    ) -> VfsResult<()> {
        if let Some(fh) = fh {
            let h = self.handle(ino, fh)?;
            let HandleData::Dir { dir, snap } = &h.data else {
                return Err(VfsError::NotDir);
            };
            let current = {
                let mut slot = snap.lock();
                match &*slot {
                    Some(s) if after != 0 => s.clone(),
                    _ => {
                        let s = snapshot(dir.as_handle())?;
                        *slot = Some(s.clone());
                        s
                    }
                }
            };
            let _ns = self.ns.read();
            let path = h
                .inode
                .paths
                .lock()
                .first()
                .cloned()
                .unwrap_or_else(|| RelPath::from(Vec::new()));
            return self.fill(ctx, &h.inode, dir.as_handle(), &path, &current, after, sink);
        }
        let _ns = self.ns.read();
        let (inode, dh, dpath) = self.dir_handle(ino, FILE_LIST_DIRECTORY)?;
        let snap = self.stateless_snapshot(ino, dh.as_handle(), after)?;
        self.fill(ctx, &inode, dh.as_handle(), &dpath, &snap, after, sink)
    }

    fn releasedir(&self, _ctx: &Ctx, ino: Ino, fh: Fh) -> VfsResult<()> {
        self.remove_handle(ino, fh)
    }

    fn fsyncdir(&self, _ctx: &Ctx, ino: Ino, fh: Option<Fh>, _datasync: bool) -> VfsResult<()> {
        match fh {
            Some(fh) => self.handle(ino, fh).map(|_| ()),
            None => self.inode(ino).map(|_| ()),
        }
    }

    fn statfs(&self, _ctx: &Ctx, _ino: Ino) -> VfsResult<StatFs> {
        let mut path = wide(self.opts.source.as_os_str());
        path.push(0);
        let (mut avail, mut total, mut free) = (0u64, 0u64, 0u64);
        // SAFETY: the path is NUL-terminated; the outputs are valid `u64`s.
        let ok = unsafe { GetDiskFreeSpaceExW(path.as_ptr(), &mut avail, &mut total, &mut free) };
        if ok == 0 {
            return Err(last_err());
        }
        const BLOCK: u64 = 4096;
        let blocks = total / BLOCK;
        // NTFS has no fixed inode table: report as many as blocks could hold.
        Ok(StatFs {
            blocks,
            bfree: free / BLOCK,
            bavail: avail / BLOCK,
            files: blocks,
            ffree: avail / BLOCK,
            bsize: BLOCK as u32,
            frsize: BLOCK as u32,
            namelen: NAME_MAX as u32,
        })
    }

    fn access(&self, ctx: &Ctx, ino: Ino, mask: AccessMask) -> VfsResult<()> {
        let attr = self.getattr(ctx, ino, None)?;
        if mask.contains(AccessMask::WRITE) {
            self.writable()?;
        }
        if mask.is_empty() {
            return Ok(());
        }
        let mode = u32::from(attr.perm);
        let is_dir = attr.kind == FileType::Directory;
        if ctx.is_root() {
            if !mask.contains(AccessMask::EXEC) || is_dir || mode & 0o111 != 0 {
                return Ok(());
            }
            return Err(VfsError::PermissionDenied);
        }
        let bits = if ctx.uid == attr.uid {
            (mode >> 6) & 7
        } else if ctx.in_group(attr.gid) {
            (mode >> 3) & 7
        } else {
            mode & 7
        };
        let mut need = 0;
        if mask.contains(AccessMask::READ) {
            need |= 4;
        }
        if mask.contains(AccessMask::WRITE) {
            need |= 2;
        }
        if mask.contains(AccessMask::EXEC) {
            need |= 1;
        }
        if bits & need == need {
            Ok(())
        } else {
            Err(VfsError::PermissionDenied)
        }
    }

    fn setxattr(
        &self,
        _ctx: &Ctx,
        _ino: Ino,
        _name: &OsStr,
        _value: &[u8],
        _flags: XattrFlags,
    ) -> VfsResult<()> {
        Err(VfsError::NotSupported)
    }

    fn getxattr(&self, _ctx: &Ctx, _ino: Ino, _name: &OsStr) -> VfsResult<Vec<u8>> {
        Err(VfsError::NotSupported)
    }

    fn listxattr(&self, _ctx: &Ctx, _ino: Ino) -> VfsResult<Vec<OsString>> {
        Err(VfsError::NotSupported)
    }

    fn removexattr(&self, _ctx: &Ctx, _ino: Ino, _name: &OsStr) -> VfsResult<()> {
        Err(VfsError::NotSupported)
    }
}
