//! Inodes, directories and the permission rules, without the filesystem around them.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, RwLock};

use super::data::FileData;
use super::host::HostFile;
use crate::{AccessMask, Attr, Ctx, FileType, Ino, VfsError, VfsResult};

/// The preferred I/O size reported in `blksize`.
pub(super) const BLKSIZE: u32 = 4096;

/// The size reported for every directory (as ext4 does for small ones).
pub(super) const DIR_SIZE: u64 = 4096;

pub(super) const S_ISUID: u16 = 0o4000;
pub(super) const S_ISGID: u16 = 0o2000;
pub(super) const S_ISVTX: u16 = 0o1000;
const S_IXGRP: u16 = 0o010;

/// One file, directory, symlink or special node.
///
/// Lock order (outer first): a directory's `Content::Dir` lock, a file's `Content::File`
/// lock, then `meta`. `meta` is a leaf: nothing else is locked while it is held except
/// the inode table and handle table shards, which are leaves themselves.
#[derive(Debug)]
pub(super) struct Inode {
    pub ino: u64,
    pub kind: FileType,
    /// Directories only: the inode number of the parent directory (the root's is
    /// itself). Changed only by renames that move a directory to another parent, which
    /// hold the filesystem's rename mutex, so a walk up the tree under that mutex sees a
    /// consistent picture without taking any directory lock.
    pub parent: AtomicU64,
    pub meta: Mutex<Meta>,
    pub content: Content,
    /// Regular files whose bytes the kernel holds (see `host.rs`); `None` keeps them in
    /// `Content::File`. When set, the host file is the authority on size, allocation and
    /// (when newer) times, because passthrough writes change them behind memfs's back;
    /// `Content::File`'s lock still serialises memfs's own data calls.
    pub host: Option<HostFile>,
}

/// What an inode holds besides its attributes.
#[derive(Debug)]
pub(super) enum Content {
    File(RwLock<FileData>),
    Dir(RwLock<DirData>),
    Symlink(Box<[u8]>),
    /// Fifos, sockets and devices: attributes only.
    Node,
}

/// Extended attributes: name bytes to value bytes, ordered so listings are stable.
pub(super) type Xattrs = BTreeMap<Box<[u8]>, Box<[u8]>>;

/// The attributes of an inode. `size` and `held` of a regular file change only while its
/// data lock is held for writing too, so a reader holding the data lock sees them stable.
#[derive(Debug)]
pub(super) struct Meta {
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub size: u64,
    /// Bytes of file data held (mirrors `FileData::held`), for `blocks`.
    pub held: u64,
    pub rdev: u64,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    pub crtime: SystemTime,
    /// Open handles (file and directory) referring to this inode.
    pub open: u32,
    /// Set once the inode has been removed from the table and its data freed; any call
    /// that still holds an `Arc` to it then fails with `Stale`.
    pub dead: bool,
    /// Extended attributes, names stored verbatim. Boxed and optional: most files have
    /// none, and an empty map should not cost every inode its size.
    pub xattrs: Option<Box<Xattrs>>,
}

impl Meta {
    pub(super) fn new(perm: u16, uid: u32, gid: u32, nlink: u32, size: u64, rdev: u64) -> Meta {
        let now = SystemTime::now();
        Meta {
            perm,
            uid,
            gid,
            nlink,
            size,
            held: 0,
            rdev,
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
            open: 0,
            dead: false,
            xattrs: None,
        }
    }

    /// Bytes used by the extended attributes (names plus values).
    pub(super) fn xattr_bytes(&self) -> u64 {
        self.xattrs.as_ref().map_or(0, |m| {
            m.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum()
        })
    }

    /// Marks a content change: mtime and ctime to now.
    pub(super) fn touch_mc(&mut self) {
        let now = SystemTime::now();
        self.mtime = now;
        self.ctime = now;
    }

    /// relatime: atime moves on a read only if it is not newer than mtime or ctime, or
    /// is a day old. Keeps reads from writing metadata all the time.
    pub(super) fn touch_atime(&mut self) {
        let now = SystemTime::now();
        let stale = now
            .duration_since(self.atime)
            .is_ok_and(|d| d >= Duration::from_secs(86_400));
        if self.atime <= self.mtime || self.atime <= self.ctime || stale {
            self.atime = now;
        }
    }

    /// What Linux does to a regular file's mode when a non-root caller writes or
    /// truncates it: see [`Meta::drop_suid_bits`]; root's writes keep the bits.
    pub(super) fn kill_suid(&mut self, ctx: &Ctx) {
        if !ctx.is_root() {
            self.drop_suid_bits(ctx);
        }
    }

    /// Linux's `setattr_should_drop_suidgid`: setuid goes; setgid goes when group-exec
    /// is set, or when the caller is neither root nor in the file's group (without
    /// group-exec it otherwise marks mandatory locking and stays).
    pub(super) fn drop_suid_bits(&mut self, ctx: &Ctx) {
        self.perm &= !S_ISUID;
        if self.perm & S_ISGID != 0
            && (self.perm & S_IXGRP != 0 || (!ctx.is_root() && !ctx.in_group(self.gid)))
        {
            self.perm &= !S_ISGID;
        }
    }

    /// Whether `ctx` may access this inode with `mask`, by the permission bits alone.
    /// Root may read and write anything, and execute a non-directory if any x bit is set.
    pub(super) fn permits(&self, kind: FileType, ctx: &Ctx, mask: AccessMask) -> bool {
        if ctx.is_root() {
            return !mask.contains(AccessMask::EXEC)
                || kind == FileType::Directory
                || self.perm & 0o111 != 0;
        }
        let class = if ctx.uid == self.uid {
            (self.perm >> 6) & 7
        } else if ctx.in_group(self.gid) {
            (self.perm >> 3) & 7
        } else {
            self.perm & 7
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
        class & need == need
    }

    /// [`Meta::permits`] as a result: `PermissionDenied` when refused.
    pub(super) fn check(&self, kind: FileType, ctx: &Ctx, mask: AccessMask) -> VfsResult<()> {
        if self.permits(kind, ctx, mask) {
            Ok(())
        } else {
            Err(VfsError::PermissionDenied)
        }
    }

    /// Owner or root: who may chmod, set explicit times, and so on.
    pub(super) fn owned_by(&self, ctx: &Ctx) -> bool {
        ctx.is_root() || ctx.uid == self.uid
    }
}

impl Inode {
    /// The attributes as `stat(2)` reports them.
    pub(super) fn attr(&self, m: &Meta) -> Attr {
        let mut a = self.heap_attr(m);
        if let Some(st) = self.host.as_ref().and_then(|h| h.stat().ok()) {
            a.size = st.size;
            a.blocks = st.blocks;
            a.mtime = a.mtime.max(st.mtime);
            a.ctime = a.ctime.max(st.ctime);
        }
        a
    }

    /// The size now: the host file's when there is one.
    pub(super) fn size(&self, m: &Meta) -> u64 {
        match self.host.as_ref().map(HostFile::stat) {
            Some(Ok(st)) => st.size,
            _ => m.size,
        }
    }

    /// The attributes from memfs's own records alone: exact for a node whose host file,
    /// if any, nobody has had a chance to write yet (see `MemFs::make`).
    pub(super) fn heap_attr(&self, m: &Meta) -> Attr {
        Attr {
            ino: Ino(self.ino),
            kind: self.kind,
            perm: m.perm,
            nlink: m.nlink,
            uid: m.uid,
            gid: m.gid,
            size: m.size,
            blocks: m.held.div_ceil(512),
            blksize: BLKSIZE,
            rdev: m.rdev,
            atime: m.atime,
            mtime: m.mtime,
            ctime: m.ctime,
            crtime: m.crtime,
        }
    }

    /// The directory contents, or `NotDir`.
    pub(super) fn dir(&self) -> VfsResult<&RwLock<DirData>> {
        match &self.content {
            Content::Dir(d) => Ok(d),
            _ => Err(VfsError::NotDir),
        }
    }

    /// The file contents, or `IsDir` for a directory and `InvalidArgument` for anything
    /// else that has no data.
    pub(super) fn file(&self) -> VfsResult<&RwLock<FileData>> {
        match &self.content {
            Content::File(f) => Ok(f),
            Content::Dir(_) => Err(VfsError::IsDir),
            _ => Err(VfsError::InvalidArgument),
        }
    }
}

/// One name in a directory.
#[derive(Debug, Clone, Copy)]
pub(super) struct DirEnt {
    pub ino: u64,
    pub kind: FileType,
    /// The resume cookie of this name, fixed for as long as the name exists (a rename
    /// that replaces the name keeps it; EXCHANGE keeps both).
    pub cookie: u64,
}

/// The entries of a directory.
///
/// `entries` answers lookups; `order` lists names by cookie, so readdir resumes with a
/// range query after the last cookie it returned: O(log n) per page, and stable while
/// other names come and go because cookies are never reused within a directory.
#[derive(Debug)]
pub(super) struct DirData {
    pub entries: HashMap<Arc<OsStr>, DirEnt>,
    pub order: BTreeMap<u64, Arc<OsStr>>,
    pub next_cookie: u64,
    /// Set by rmdir (and by a rename replacing this directory): nothing may be created
    /// in it any more.
    pub removed: bool,
}

/// Cookies stay below 2^63 (adapters reserve the upper half).
const COOKIE_LIMIT: u64 = 1 << 63;

impl DirData {
    pub(super) fn new() -> DirData {
        DirData {
            entries: HashMap::new(),
            order: BTreeMap::new(),
            next_cookie: 1,
            removed: false,
        }
    }

    /// Adds a name that is not present yet.
    pub(super) fn insert(&mut self, name: &OsStr, ino: u64, kind: FileType) -> VfsResult<()> {
        let cookie = self.next_cookie;
        if cookie >= COOKIE_LIMIT {
            return Err(VfsError::NoSpace);
        }
        self.next_cookie += 1;
        let name: Arc<OsStr> = Arc::from(name);
        self.order.insert(cookie, Arc::clone(&name));
        self.entries.insert(name, DirEnt { ino, kind, cookie });
        Ok(())
    }

    /// Removes a name, returning its entry.
    pub(super) fn remove(&mut self, name: &OsStr) -> Option<DirEnt> {
        let ent = self.entries.remove(name)?;
        self.order.remove(&ent.cookie);
        Some(ent)
    }

    /// Points an existing name at another inode, keeping its cookie.
    pub(super) fn repoint(&mut self, name: &OsStr, ino: u64, kind: FileType) {
        if let Some(e) = self.entries.get_mut(name) {
            e.ino = ino;
            e.kind = kind;
        }
    }

    pub(super) fn get(&self, name: &OsStr) -> Option<DirEnt> {
        self.entries.get(name).copied()
    }
}
