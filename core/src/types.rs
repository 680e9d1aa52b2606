//! The plain data types of the [`crate::Vfs`] trait.
//!
//! They are vmount's own, not any protocol's: FUSE's `FileAttr`, NFS's `fattr3` and
//! WinFsp's `FileInfo` are each produced from [`Attr`] by a free function in the adapter.

use std::ffi::OsStr;
use std::sync::OnceLock;
use std::time::SystemTime;

use bitflags::bitflags;

/// An inode number: the stable identity of a file for the life of a mount.
///
/// `0` is never a valid inode (NFS reserves fileid 0), the root is always [`Ino::ROOT`],
/// and a filesystem never hands out the same number to two different files while it
/// is mounted, so NFS handles built from it need no generation counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ino(pub u64);

impl Ino {
    /// The root directory; FUSE fixes it at 1.
    pub const ROOT: Ino = Ino(1);
}

/// A file or directory handle returned by `open`/`create`/`opendir`.
///
/// Opaque to adapters: they hand it back unchanged. Protocols without open/close (NFSv3)
/// pass `None` wherever the trait takes `Option<Fh>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fh(pub u64);

/// The kind of a filesystem object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileType {
    /// A regular file.
    RegularFile,
    /// A directory.
    Directory,
    /// A symbolic link.
    Symlink,
    /// A named pipe.
    Fifo,
    /// A unix domain socket node.
    Socket,
    /// A character device node.
    CharDevice,
    /// A block device node.
    BlockDevice,
}

impl FileType {
    /// The `S_IFMT` bits of this kind, as POSIX numbers them (identical on Linux, macOS
    /// and in NFS/WinFsp's POSIX layer).
    pub const fn mode_bits(self) -> u32 {
        match self {
            FileType::RegularFile => 0o100000,
            FileType::Directory => 0o040000,
            FileType::Symlink => 0o120000,
            FileType::Fifo => 0o010000,
            FileType::Socket => 0o140000,
            FileType::CharDevice => 0o020000,
            FileType::BlockDevice => 0o060000,
        }
    }

    /// The kind encoded in the `S_IFMT` bits of a full mode, if any.
    pub const fn from_mode(mode: u32) -> Option<FileType> {
        Some(match mode & 0o170000 {
            0o100000 => FileType::RegularFile,
            0o040000 => FileType::Directory,
            0o120000 => FileType::Symlink,
            0o010000 => FileType::Fifo,
            0o140000 => FileType::Socket,
            0o020000 => FileType::CharDevice,
            0o060000 => FileType::BlockDevice,
            _ => return None,
        })
    }
}

/// The attributes of one inode, as `stat(2)` would report them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    /// The inode number.
    pub ino: Ino,
    /// What kind of object this is.
    pub kind: FileType,
    /// Permission bits including setuid, setgid and sticky (`mode & 0o7777`).
    pub perm: u16,
    /// Number of hard links (directories: 2 + number of subdirectories).
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes (symlinks: length of the target).
    pub size: u64,
    /// Storage actually used, in 512-byte units (sparse files use less than `size`).
    pub blocks: u64,
    /// Preferred I/O size.
    pub blksize: u32,
    /// Device number for character and block devices, else 0.
    pub rdev: u64,
    /// Last access.
    pub atime: SystemTime,
    /// Last modification of the contents.
    pub mtime: SystemTime,
    /// Last change of the inode (contents, attributes, links).
    pub ctime: SystemTime,
    /// Creation (birth) time, where the filesystem knows it; else equal to `ctime`.
    pub crtime: SystemTime,
}

impl Attr {
    /// The full `st_mode`: file type bits plus permission bits.
    pub fn mode(&self) -> u32 {
        self.kind.mode_bits() | u32::from(self.perm)
    }
}

/// A new timestamp in [`SetAttr`]: either "now" on the filesystem's clock (what
/// `utimensat(UTIME_NOW)` and NFS `SET_TO_SERVER_TIME` mean) or an exact time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetTime {
    /// The filesystem's current time.
    Now,
    /// This exact time.
    At(SystemTime),
}

/// The changes of one `setattr` call; `None` leaves a field alone.
///
/// One struct rather than many arguments so that every protocol (FUSE SETATTR, NFS sattr3,
/// WinFsp set_basic_info/set_file_size) fills the same thing. Filesystems apply the whole
/// change atomically and check permissions as POSIX does for chmod/chown/truncate/utimens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetAttr {
    /// New permission bits (`& 0o7777`; type bits are ignored).
    pub mode: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size: truncate or extend with a hole.
    pub size: Option<u64>,
    /// New access time.
    pub atime: Option<SetTime>,
    /// New modification time.
    pub mtime: Option<SetTime>,
    /// New change time, for protocols that may set it (macOS FUSE, WinFsp); POSIX
    /// callers leave it `None` and the filesystem sets ctime to now on any change.
    ///
    /// Linux FUSE with the writeback cache also sends it: the kernel then keeps mtime and
    /// ctime of regular files itself and hands them over, both from one reading of its
    /// clock. So with a `ctime`, an `mtime` of [`SetTime::At`] equal to it means "now"
    /// (a `touch`, a truncate, or the times of a write being flushed) and needs only what
    /// [`SetTime::Now`] needs, while its value is the one given; an `mtime` equal to the
    /// current one changes nothing; and the `ctime` itself records a change that was
    /// already permitted. See [`SetAttr::mtime_is_now`].
    pub ctime: Option<SystemTime>,
}

impl SetAttr {
    /// True when the call changes nothing (a plain "touch ctime" is not a change either).
    pub fn is_empty(&self) -> bool {
        *self == SetAttr::default()
    }

    /// Whether `mtime` asks for the current time: [`SetTime::Now`], or a time equal to
    /// the `ctime` sent with it (see [`SetAttr::ctime`]).
    pub fn mtime_is_now(&self) -> bool {
        match self.mtime {
            Some(SetTime::Now) => true,
            Some(SetTime::At(t)) => self.ctime == Some(t),
            None => false,
        }
    }

    /// Whether `mtime` is the file's `current` one, sent back by a kernel that keeps the
    /// times itself (with a `ctime`, see [`SetAttr::ctime`]): no change, so no permission
    /// is needed for it.
    pub fn mtime_is_kept(&self, current: SystemTime) -> bool {
        self.ctime.is_some() && self.mtime == Some(SetTime::At(current))
    }
}

/// Who is asking: the credentials every permission check uses.
///
/// Supplementary groups are resolved lazily: most checks are decided by owner or primary
/// group alone, and reading them costs a `/proc` read on Linux (FUSE does not send them).
#[derive(Debug)]
pub struct Ctx {
    /// Effective user id of the caller.
    pub uid: u32,
    /// Effective group id of the caller.
    pub gid: u32,
    /// Process id of the caller, 0 when unknown (NFS, internal calls).
    pub pid: u32,
    /// File mode creation mask to apply to new objects, when the adapter has not already
    /// applied it (0 = the mode given is final).
    pub umask: u32,
    groups: OnceLock<Box<[u32]>>,
}

impl Clone for Ctx {
    fn clone(&self) -> Self {
        let groups = OnceLock::new();
        if let Some(g) = self.groups.get() {
            let _ = groups.set(g.clone());
        }
        Ctx {
            uid: self.uid,
            gid: self.gid,
            pid: self.pid,
            umask: self.umask,
            groups,
        }
    }
}

impl Ctx {
    /// Credentials of a caller whose supplementary groups, if needed, are looked up from
    /// its pid (Linux `/proc/PID/status`; none elsewhere or when pid is 0).
    pub fn new(uid: u32, gid: u32, pid: u32) -> Ctx {
        Ctx {
            uid,
            gid,
            pid,
            umask: 0,
            groups: OnceLock::new(),
        }
    }

    /// Credentials with an explicit list of supplementary groups (NFS AUTH_SYS sends them;
    /// tests use it).
    pub fn with_groups(uid: u32, gid: u32, groups: &[u32]) -> Ctx {
        let ctx = Ctx::new(uid, gid, 0);
        let _ = ctx.groups.set(groups.into());
        ctx
    }

    /// The superuser, for internal and administrative calls.
    pub fn root() -> Ctx {
        Ctx::with_groups(0, 0, &[])
    }

    /// True for uid 0, which bypasses read/write permission bits.
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// True when `gid` is the caller's primary or one of its supplementary groups.
    pub fn in_group(&self, gid: u32) -> bool {
        gid == self.gid || self.supplementary_groups().contains(&gid)
    }

    /// The caller's supplementary groups (looked up once, on first use).
    pub fn supplementary_groups(&self) -> &[u32] {
        self.groups.get_or_init(|| lookup_groups(self.pid))
    }
}

#[cfg(target_os = "linux")]
fn lookup_groups(pid: u32) -> Box<[u32]> {
    if pid == 0 {
        return Box::new([]);
    }
    // The thread's own status: supplementary groups are per thread on Linux.
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/status"))
        .or_else(|_| std::fs::read_to_string(format!("/proc/{pid}/status")))
    else {
        return Box::new([]);
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| {
            g.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(not(target_os = "linux"))]
fn lookup_groups(_pid: u32) -> Box<[u32]> {
    Box::new([])
}

/// Filesystem-wide numbers for `statfs(2)` / NFS FSSTAT / WinFsp volume info.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFs {
    /// Total blocks of `frsize` bytes.
    pub blocks: u64,
    /// Free blocks.
    pub bfree: u64,
    /// Free blocks available to unprivileged users.
    pub bavail: u64,
    /// Total inodes.
    pub files: u64,
    /// Free inodes.
    pub ffree: u64,
    /// Preferred block size.
    pub bsize: u32,
    /// Fundamental block size (the unit of `blocks`).
    pub frsize: u32,
    /// Maximum name length in bytes.
    pub namelen: u32,
}

bitflags! {
    /// How a file is opened; the platform-neutral subset adapters translate `open(2)`
    /// flags (or NTCreateFile options) into.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct OpenFlags: u32 {
        /// Open for reading.
        const READ = 1 << 0;
        /// Open for writing.
        const WRITE = 1 << 1;
        /// Every write goes to the end of the file.
        const APPEND = 1 << 2;
        /// Truncate to zero on open (adapters usually send a setattr instead).
        const TRUNCATE = 1 << 3;
        /// With create: fail if the name exists.
        const EXCLUSIVE = 1 << 4;
        /// Bypass caches (O_DIRECT).
        const DIRECT = 1 << 5;
        /// Writes are durable on return (O_SYNC/O_DSYNC).
        const SYNC = 1 << 6;
        /// Do not update atime.
        const NOATIME = 1 << 7;
        /// Do not follow a symlink in the last component.
        const NOFOLLOW = 1 << 8;
    }
}

bitflags! {
    /// `renameat2(2)` flags.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct RenameFlags: u32 {
        /// Fail with `Exists` instead of replacing the target.
        const NOREPLACE = 1 << 0;
        /// Atomically swap source and target; both must exist.
        const EXCHANGE = 1 << 1;
    }
}

bitflags! {
    /// `setxattr(2)` flags.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct XattrFlags: u32 {
        /// Fail with `Exists` if the attribute exists.
        const CREATE = 1 << 0;
        /// Fail with `NoAttribute` if the attribute does not exist.
        const REPLACE = 1 << 1;
    }
}

/// Whether xattr `name` is `security.selinux`, the SELinux label, which memfs and loopback
/// do not carry: get, set and remove are `NotSupported` (EOPNOTSUPP) and listings leave it
/// out.
///
/// Why: on a host running SELinux the kernel labels a FUSE mount itself (`genfscon`): it
/// answers a read of this name without asking the filesystem and refuses a write with
/// EOPNOTSUPP. So the filesystem is asked only on hosts without SELinux, where a label
/// means nothing. There, answering ENODATA made `ls -l` ask every file (GNU `ls` stops
/// asking a device after its first EOPNOTSUPP): a FUSE round trip per file, one of the
/// two `ls -l` makes on loopback (10,000 cached files: 117 -> 70 ms, ext4 35 ms).
/// Refusing the name makes the mount behave as on an SELinux host, everywhere.
pub fn is_selinux_label(name: &[u8]) -> bool {
    name == b"security.selinux"
}

bitflags! {
    /// `fallocate(2)` modes. No flags = allocate and extend the size if needed.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct FallocateFlags: u32 {
        /// Do not change the file size.
        const KEEP_SIZE = 1 << 0;
        /// Deallocate the range (must come with KEEP_SIZE); it reads as zeros.
        const PUNCH_HOLE = 1 << 1;
        /// Make the range read as zeros, extending the size unless KEEP_SIZE.
        const ZERO_RANGE = 1 << 2;
    }
}

bitflags! {
    /// `access(2)` mask. The empty mask asks only whether the file exists.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct AccessMask: u32 {
        /// Read permission.
        const READ = 1 << 0;
        /// Write permission.
        const WRITE = 1 << 1;
        /// Execute (files) or search (directories) permission.
        const EXEC = 1 << 2;
    }
}

/// The `lseek(2)` modes a filesystem must answer itself; SEEK_SET/CUR/END are the
/// caller's arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whence {
    /// The first offset at or after the given one that holds data (ENXIO past EOF).
    Data,
    /// The first offset at or after the given one inside a hole; EOF counts as a hole.
    Hole,
}

/// The answer to `open`/`create`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    /// The handle later calls carry.
    pub fh: Fh,
    /// Ask the kernel not to cache this file's pages (contents change behind its back).
    pub direct_io: bool,
    /// Let the kernel keep cached pages from earlier opens (contents did not change).
    pub keep_cache: bool,
    /// [`Vfs::flush`](crate::Vfs::flush) does nothing for this handle, so the adapter may
    /// ask the kernel not to send one on every `close(2)` (FUSE `FOPEN_NOFLUSH`): one
    /// round trip less per open-write-close, which is most of the cost of small files.
    /// Leave it false when `flush` reports deferred write errors or does work.
    pub no_flush: bool,
}

impl Opened {
    /// A handle with default caching: the kernel's page cache is kept across opens, and
    /// `flush` is called on every close.
    pub fn cached(fh: Fh) -> Opened {
        Opened {
            fh,
            direct_io: false,
            keep_cache: true,
            no_flush: false,
        }
    }
}

/// One directory entry passed to a [`DirSink`].
#[derive(Debug, Clone, Copy)]
pub struct DirEntry<'a> {
    /// The entry's name (never `.` or `..`: adapters synthesize those).
    pub name: &'a OsStr,
    /// The entry's inode.
    pub ino: Ino,
    /// The entry's kind.
    pub kind: FileType,
    /// Resume cookie: passing it back as `after` continues with the next entry. Non-zero,
    /// below 2^63 (adapters reserve the rest), and stable while the entry exists.
    pub cookie: u64,
    /// Full attributes; present whenever [`DirSink::wants_attr`] is true.
    pub attr: Option<Attr>,
}

/// Where `readdir` pushes entries: a FUSE reply buffer, an NFS READDIRPLUS reply, a
/// WinFsp directory buffer. Push model so that no intermediate `Vec` of a 100,000-entry
/// directory is ever built.
pub trait DirSink {
    /// Whether entries must carry attributes (READDIRPLUS and friends). When false, a
    /// filesystem may skip the work of fetching them.
    fn wants_attr(&self) -> bool;

    /// Offers one entry. Returns `true` when the reply is full and this entry was **not**
    /// taken; the filesystem then stops and the caller resumes later from the previous
    /// entry's cookie.
    fn add(&mut self, entry: &DirEntry<'_>) -> bool;

    /// Whether the caller learns that a listing ended from one more call, from the last
    /// cookie, that returns nothing (FUSE), rather than from a flag in the reply (NFS). A
    /// filesystem that lists statelessly may then keep the stream of a listing that
    /// reached the end for that call instead of opening the directory again for it.
    fn asks_again_at_the_end(&self) -> bool {
        false
    }
}

/// A [`DirSink`] collecting owned entries into a `Vec`, for tests and small listings.
#[derive(Debug, Default)]
pub struct VecSink {
    /// The collected entries: (name, ino, kind, cookie, attr).
    pub entries: Vec<OwnedDirEntry>,
    /// Stop after this many entries (None = unlimited).
    pub limit: Option<usize>,
    /// Whether to ask for attributes.
    pub plus: bool,
}

/// An owned copy of a [`DirEntry`].
#[derive(Debug, Clone)]
pub struct OwnedDirEntry {
    /// Entry name.
    pub name: std::ffi::OsString,
    /// Entry inode.
    pub ino: Ino,
    /// Entry kind.
    pub kind: FileType,
    /// Resume cookie.
    pub cookie: u64,
    /// Attributes, if asked for.
    pub attr: Option<Attr>,
}

impl DirSink for VecSink {
    fn wants_attr(&self) -> bool {
        self.plus
    }

    fn add(&mut self, e: &DirEntry<'_>) -> bool {
        if self.limit.is_some_and(|l| self.entries.len() >= l) {
            return true;
        }
        self.entries.push(OwnedDirEntry {
            name: e.name.to_owned(),
            ino: e.ino,
            kind: e.kind,
            cookie: e.cookie,
            attr: e.attr,
        });
        false
    }
}

/// What a filesystem supports, so adapters and users know before they call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Extended attributes work.
    pub xattrs: bool,
    /// `link` works.
    pub hard_links: bool,
    /// `symlink`/`readlink` work.
    pub symlinks: bool,
    /// `mknod` of fifos and sockets works (devices also need privilege).
    pub special_files: bool,
    /// Names are compared case-sensitively.
    pub case_sensitive: bool,
    /// Every modifying call fails with `ReadOnly`.
    pub read_only: bool,
    /// `lseek` with `Data`/`Hole` reports real holes.
    pub sparse_files: bool,
    /// The filesystem checks permission bits itself against [`Ctx`] (adapters may still
    /// let the kernel check first).
    pub enforces_permissions: bool,
    /// The filesystem itself does what Linux's `file_remove_privs` does on every write,
    /// truncate and chown: it clears setuid/setgid for callers other than root and removes
    /// `security.capability`. The FUSE adapter then hands this job to it
    /// (`FUSE_HANDLE_KILLPRIV_V2`), so the kernel stops asking for `security.capability`
    /// before every write, which otherwise doubles the round trips of small writes.
    pub kills_privileges: bool,
    /// Longest name in bytes.
    pub max_name_len: u32,
}

/// Where [`Vfs::watch_changes`](crate::Vfs::watch_changes) reports changes made behind the
/// filesystem's back. Called from the filesystem's own thread, never from inside a `Vfs`
/// call, so an implementation may block briefly (FUSE's notifications write to the
/// kernel).
pub trait ChangeSink: Send + Sync {
    /// The name `name` in directory `parent` was created, removed, renamed or changed.
    fn entry_changed(&self, parent: Ino, name: &std::ffi::OsStr);
    /// The attributes or contents of `ino` changed.
    fn inode_changed(&self, ino: Ino);
}
