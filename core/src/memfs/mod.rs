//! memfs: an in-memory filesystem with POSIX semantics.
//!
//! # Design decisions
//! - **Storage.** File data lives in 64 KiB chunks in a `BTreeMap<chunk index, Vec<u8>>`
//!   (see `data.rs`): holes cost nothing and read as zeros, a write touches at most the
//!   chunks it covers (so writing a file in 4107-byte pieces is linear), and the memory
//!   held is the sum of the chunks' capacities, counted exactly in [`MemFs::used_bytes`].
//!   A chunk being appended to may grow geometrically; flush, fsync and release cut it back
//!   to the next 64-byte multiple, so a 100-byte file pins 128 bytes, not 64 KiB (nor a
//!   4 KiB page, which the heap has no reason to hand out). A file of one chunk keeps it
//!   without a tree (`chunks.rs`): a one-entry `BTreeMap` costs a 368-byte node.
//! - **Kernel-held contents** (Linux, root; [`MemFsOptions::kernel_data`]). Regular
//!   files may keep their bytes in unnamed files of a private tmpfs instead (see
//!   `host.rs`), so FUSE can pass reads and writes through to the kernel. Names,
//!   attributes, xattrs and permission checks stay here; the host file is the authority
//!   on size and allocation. A file that cannot get a host file (descriptor budget spent)
//!   keeps its bytes on the heap, so both kinds coexist.
//! - **Size limit.** Every allocating call (write, fallocate, copy_file_range, setxattr,
//!   symlink) first computes what it will allocate and reserves that against the limit
//!   with one atomic update; if the reservation fails nothing has been changed (NoSpace,
//!   never a partial write). Without `size_limit` the limit is the machine's memory
//!   (`MemTotal`, else 1 TiB), so that an absurd fallocate fails with NoSpace instead of
//!   aborting the process, and `statfs` reports the same number.
//! - **Inode table.** 64 shards of `RwLock<HashMap<ino, Arc<Inode>>>`; numbers are
//!   allocated monotonically from 2 and never reused. An inode leaves the table (and its
//!   data is freed) as soon as it has no links and no open handles, independent of FUSE
//!   lookup counts: NFS never forgets, so [`Vfs::forget`] is a no-op here.
//! - **Locks, outermost first:** the rename mutex (only for renames that move a directory
//!   to another parent, so the loop check can walk parent pointers safely); directory
//!   entry locks, several at once only in inode-number order (taken after an unlocked
//!   peek and revalidated, retrying if the names changed meanwhile); file data locks (two
//!   at once only in copy_file_range, in inode-number order); an inode's metadata mutex,
//!   one at a time; and the table and handle shards, which are leaves. There is no global
//!   lock around data I/O: writes to different files run in parallel, reads of one file
//!   share its lock.
//! - **Directories** map names to entries and keep a `BTreeMap<cookie, name>` with a
//!   per-directory counter starting at 1, so readdir resumes with a range query and is
//!   stable under concurrent change; a rename onto an existing name keeps that name's
//!   cookie, EXCHANGE keeps both.
//! - **Permissions** are checked here against [`Ctx`], as Linux does (root bypasses the
//!   read/write bits and needs some x bit to execute a file). Stateless I/O (`fh` None) is
//!   not permission-checked: the protocol adapter does that. Unknown xattr namespaces
//!   (macOS has none) are treated like `user.` but allowed on every kind of file.
//! - **No POSIX ACLs.** memfs enforces mode bits only, so the `system.` namespace (on
//!   Linux, `system.posix_acl_access`/`_default` and nothing else a filesystem stores) is
//!   `NotSupported` (EOPNOTSUPP), as on any filesystem without ACLs. Storing an ACL as an
//!   opaque value would let `setfacl` report success for an ACL nothing enforces. It is
//!   also what tools key on: `ls -l` stops asking a device for ACLs after its first
//!   EOPNOTSUPP, where ENODATA made it ask (one FUSE round trip each) for every file.
//! - **No SELinux label** (`security.selinux` is `NotSupported`), as for loopback: see
//!   [`is_selinux_label`].

mod chunks;
mod data;
#[cfg(target_os = "linux")]
mod host;
#[cfg(not(target_os = "linux"))]
#[path = "host_none.rs"]
mod host;
mod inode;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use parking_lot::{Mutex, RwLock, RwLockWriteGuard};

use self::data::{FileData, MAX_FILE_SIZE};
use self::host::{HostFile, HostStore};
use self::inode::{Content, DIR_SIZE, DirData, Inode, Meta, S_ISGID, S_ISUID, S_ISVTX};
use crate::{
    AccessMask, Attr, Capabilities, Ctx, DirEntry, DirSink, FallocateFlags, Fh, FileType, Ino,
    OpenFlags, Opened, RenameFlags, SetAttr, SetTime, StatFs, Vfs, VfsError, VfsResult, Whence,
    XattrFlags, check_name, is_selinux_label,
};

/// What `fstat` says about a kernel-held file (see `host.rs`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct HostStat {
    pub size: u64,
    pub blocks: u64,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
}

/// Number of inode table shards (a power of two).
const SHARDS: usize = 64;
/// Number of handle table shards.
const HANDLE_SHARDS: usize = 16;
/// Block size reported by statfs.
const BSIZE: u64 = 4096;
/// The most links one inode may have.
const LINK_MAX: u32 = u32::MAX - 1;
/// The largest xattr value accepted (Linux's `XATTR_SIZE_MAX`).
const XATTR_VALUE_MAX: usize = 64 * 1024;
/// The longest xattr name accepted (Linux's `XATTR_NAME_MAX`).
const XATTR_NAME_MAX: usize = 255;

/// One shard of the inode table.
type Shard = HashMap<u64, Arc<Inode>>;

/// Settings of a [`MemFs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemFsOptions {
    /// Most bytes of memory the filesystem may hold for file data, xattrs and symlink
    /// targets; `None` = the machine's memory.
    pub size_limit: Option<u64>,
    /// Most inodes (root included); `None` = unlimited.
    pub max_inodes: Option<u64>,
    /// Every modifying call fails with `ReadOnly`.
    pub read_only: bool,
    /// Owner of the root directory.
    pub root_uid: u32,
    /// Group of the root directory.
    pub root_gid: u32,
    /// Permission bits of the root directory.
    pub root_mode: u32,
    /// Keep regular files' bytes in the kernel (a private tmpfs) when this process may
    /// make one (Linux, CAP_SYS_ADMIN); else, and by default, on the heap. See
    /// [`MemFs::kernel_data`] for whether it took.
    pub kernel_data: bool,
}

impl Default for MemFsOptions {
    fn default() -> Self {
        MemFsOptions {
            size_limit: None,
            max_inodes: None,
            read_only: false,
            root_uid: 0,
            root_gid: 0,
            root_mode: 0o755,
            kernel_data: false,
        }
    }
}

/// An open file or directory.
#[derive(Debug)]
struct Handle {
    inode: Arc<Inode>,
    flags: OpenFlags,
    /// The kernel may do this handle's I/O on the host file itself (FUSE passthrough).
    /// False for a writer whose writes must drop privileges memfs keeps (setuid/setgid
    /// for non-root writers, `security.capability` for all): passthrough writes never
    /// reach memfs, so it could not drop them.
    #[cfg_attr(not(unix), allow(dead_code))] // passthrough is a unix (FUSE) thing
    passthrough: bool,
}

/// The in-memory filesystem. See the [module docs](self) for its design.
#[derive(Debug)]
pub struct MemFs {
    opts: MemFsOptions,
    /// Bytes the filesystem may hold: `size_limit`, else the machine's memory.
    capacity: u64,
    table: Box<[RwLock<Shard>]>,
    handles: Box<[Mutex<HashMap<u64, Handle>>]>,
    next_ino: AtomicU64,
    next_fh: AtomicU64,
    used: AtomicU64,
    count: AtomicU64,
    rename_lock: Mutex<()>,
    /// The private tmpfs, when contents are kernel-held.
    host: Option<Arc<HostStore>>,
}

/// What kind of node [`MemFs::make`] creates.
enum NewNode<'a> {
    File,
    Dir,
    Symlink(&'a [u8]),
    Node(FileType, u64),
}

/// Write guards on a set of directories, taken in inode order.
struct Locked<'a> {
    guards: Vec<(u64, RwLockWriteGuard<'a, DirData>)>,
}

impl<'a> Locked<'a> {
    fn new(inodes: &[&'a Arc<Inode>]) -> VfsResult<Locked<'a>> {
        let mut sorted: Vec<&'a Arc<Inode>> = inodes.to_vec();
        sorted.sort_by_key(|i| i.ino);
        sorted.dedup_by_key(|i| i.ino);
        let mut guards = Vec::with_capacity(sorted.len());
        for i in sorted {
            guards.push((i.ino, i.dir()?.write()));
        }
        Ok(Locked { guards })
    }

    fn get(&mut self, ino: u64) -> &mut DirData {
        let pos = self.guards.iter().position(|(i, _)| *i == ino);
        // Callers only ask for directories they passed to `new`.
        let pos = pos.unwrap_or_else(|| unreachable!("directory {ino} was not locked"));
        &mut self.guards[pos].1
    }
}

/// The machine's memory in bytes (Linux `MemTotal`), else 1 TiB.
fn memory_total() -> u64 {
    #[cfg(target_os = "linux")]
    if let Ok(info) = std::fs::read_to_string("/proc/meminfo") {
        let kb = info
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
        if let Some(kb) = kb {
            return kb.saturating_mul(1024);
        }
    }
    1 << 40
}

/// The access mask an open with `flags` needs.
fn open_mask(flags: OpenFlags) -> AccessMask {
    let mut mask = AccessMask::empty();
    if flags.contains(OpenFlags::READ) || !flags.contains(OpenFlags::WRITE) {
        mask |= AccessMask::READ;
    }
    if flags.intersects(OpenFlags::WRITE | OpenFlags::TRUNCATE) {
        mask |= AccessMask::WRITE;
    }
    mask
}

/// Whether a handle opened with `flags` may read.
fn can_read(flags: OpenFlags) -> bool {
    flags.contains(OpenFlags::READ) || !flags.contains(OpenFlags::WRITE)
}

impl MemFs {
    /// `f` of the host file of `ino` for handle `fh`, if the handle may pass through.
    #[cfg(unix)]
    fn passthrough_host<T>(
        &self,
        ino: Ino,
        fh: Fh,
        f: impl FnOnce(&HostFile) -> Option<T>,
    ) -> Option<T> {
        let shard = self.handle_shard(fh.0).lock();
        let h = shard.get(&fh.0).filter(|h| h.inode.ino == ino.0)?;
        if !h.passthrough {
            return None;
        }
        f(h.inode.host.as_ref()?)
    }
    /// A fresh filesystem holding only its root directory.
    pub fn new(opts: MemFsOptions) -> MemFs {
        let capacity = opts.size_limit.unwrap_or_else(memory_total);
        let table: Box<[_]> = (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect();
        let handles: Box<[_]> = (0..HANDLE_SHARDS)
            .map(|_| Mutex::new(HashMap::new()))
            .collect();
        let perm = (opts.root_mode & 0o7777) as u16;
        let root = Arc::new(Inode {
            ino: Ino::ROOT.0,
            kind: FileType::Directory,
            parent: AtomicU64::new(Ino::ROOT.0),
            meta: Mutex::new(Meta::new(
                perm,
                opts.root_uid,
                opts.root_gid,
                2,
                DIR_SIZE,
                0,
            )),
            content: Content::Dir(RwLock::new(DirData::new())),
            host: None,
        });
        table[(Ino::ROOT.0 as usize) % SHARDS]
            .write()
            .insert(Ino::ROOT.0, root);
        let host = if opts.kernel_data {
            HostStore::new(Some(capacity), opts.max_inodes).ok()
        } else {
            None
        };
        MemFs {
            opts,
            capacity,
            host,
            table,
            handles,
            next_ino: AtomicU64::new(2),
            next_fh: AtomicU64::new(1),
            used: AtomicU64::new(0),
            count: AtomicU64::new(1),
            rename_lock: Mutex::new(()),
        }
    }

    /// Bytes of memory currently held for file data, xattrs and symlink targets (the
    /// kernel-held contents included).
    pub fn used_bytes(&self) -> u64 {
        self.used.load(Ordering::Relaxed) + self.host_used()
    }

    /// Whether regular files' contents are kernel-held (see [`MemFsOptions::kernel_data`]).
    pub fn kernel_data(&self) -> bool {
        self.host.is_some()
    }

    /// Bytes the kernel holds for file contents.
    fn host_used(&self) -> u64 {
        self.host.as_ref().map_or(0, |h| h.used())
    }

    /// Number of live inodes, the root included.
    pub fn inode_count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn shard(&self, ino: u64) -> &RwLock<Shard> {
        &self.table[(ino as usize) % SHARDS]
    }

    fn handle_shard(&self, fh: u64) -> &Mutex<HashMap<u64, Handle>> {
        &self.handles[(fh as usize) % HANDLE_SHARDS]
    }

    /// The live inode `ino`, or `Stale`.
    fn get(&self, ino: Ino) -> VfsResult<Arc<Inode>> {
        self.shard(ino.0)
            .read()
            .get(&ino.0)
            .cloned()
            .ok_or(VfsError::Stale)
    }

    /// The inode and open flags of handle `fh`, which must belong to `ino`.
    fn handle(&self, ino: Ino, fh: Fh) -> VfsResult<(Arc<Inode>, OpenFlags)> {
        let shard = self.handle_shard(fh.0).lock();
        let h = shard.get(&fh.0).ok_or(VfsError::BadHandle)?;
        if h.inode.ino != ino.0 {
            return Err(VfsError::BadHandle);
        }
        Ok((Arc::clone(&h.inode), h.flags))
    }

    /// The inode to act on: the handle's (which may be unlinked) or the table's.
    fn resolve(&self, ino: Ino, fh: Option<Fh>) -> VfsResult<(Arc<Inode>, Option<OpenFlags>)> {
        match fh {
            Some(fh) => self.handle(ino, fh).map(|(i, f)| (i, Some(f))),
            None => self.get(ino).map(|i| (i, None)),
        }
    }

    fn writable(&self) -> VfsResult<()> {
        if self.opts.read_only {
            Err(VfsError::ReadOnly)
        } else {
            Ok(())
        }
    }

    /// Memory still available below the limit.
    fn available(&self) -> u64 {
        self.capacity
            .saturating_sub(self.used.load(Ordering::Relaxed))
            .saturating_sub(self.host_used())
    }

    /// Reserves `bytes` against the limit, all or nothing.
    fn reserve(&self, bytes: u64) -> VfsResult<()> {
        if bytes == 0 {
            return Ok(());
        }
        // Kernel-held contents count against the same limit (read once: the tmpfs
        // enforces its own side, so this only keeps heap bytes from adding to a full one).
        let capacity = self.capacity.saturating_sub(self.host_used());
        try_update(&self.used, |u| {
            u.checked_add(bytes).filter(|&n| n <= capacity)
        })
    }

    /// Replaces a reservation of `reserved` bytes by the real change of a file's held
    /// bytes from `before` to `after`.
    fn settle(&self, reserved: u64, before: u64, after: u64) {
        let grew = after.saturating_sub(before);
        let shrank = before.saturating_sub(after);
        if grew > reserved {
            self.used.fetch_add(grew - reserved, Ordering::AcqRel);
        } else {
            self.used
                .fetch_sub(reserved - grew + shrank, Ordering::AcqRel);
        }
    }

    /// What Linux's `file_remove_privs` does on a write, truncate or fallocate: drop
    /// setuid/setgid for callers other than root ([`inode::Meta::kill_suid`]), and the
    /// file capabilities (`security.capability`) for every caller. memfs does this itself
    /// (and says so with `Capabilities::kills_privileges`), so the FUSE kernel need not
    /// ask for `security.capability` before every write.
    fn kill_privs(&self, m: &mut inode::Meta, ctx: &Ctx) {
        m.kill_suid(ctx);
        self.drop_file_caps(m);
    }

    /// Removes `security.capability`, giving back its bytes.
    fn drop_file_caps(&self, m: &mut inode::Meta) {
        let Some(x) = m.xattrs.as_mut() else {
            return;
        };
        if let Some(v) = x.remove(&b"security.capability"[..]) {
            self.used.fetch_sub(
                (b"security.capability".len() + v.len()) as u64,
                Ordering::AcqRel,
            );
            if x.is_empty() {
                m.xattrs = None;
            }
        }
    }

    /// Counts one more inode against `max_inodes`.
    fn reserve_inode(&self) -> VfsResult<()> {
        let max = self.opts.max_inodes.unwrap_or(u64::MAX);
        try_update(&self.count, |c| (c < max).then_some(c + 1))
    }

    /// Frees `node` if it has neither links nor open handles: drops it from the table
    /// and gives back its memory. Safe to call any number of times.
    fn maybe_free(&self, node: &Arc<Inode>) {
        let data = match &node.content {
            Content::File(f) => Some(f.write()),
            _ => None,
        };
        let mut m = node.meta.lock();
        if m.dead || m.nlink > 0 || m.open > 0 {
            return;
        }
        m.dead = true;
        let mut freed = m.xattr_bytes();
        m.xattrs = None;
        if let Some(mut fd) = data {
            freed += fd.clear();
            m.held = 0;
        }
        if let Content::Symlink(t) = &node.content {
            freed += t.len() as u64;
        }
        drop(m);
        self.shard(node.ino).write().remove(&node.ino);
        self.used.fetch_sub(freed, Ordering::AcqRel);
        self.count.fetch_sub(1, Ordering::AcqRel);
    }

    /// Gives back the spare capacity of a file's growing chunks.
    fn trim(&self, node: &Inode) {
        if let Content::File(f) = &node.content {
            let mut fd = f.write();
            let before = fd.held();
            fd.trim();
            let after = fd.held();
            if after != before {
                self.settle(0, before, after);
                node.meta.lock().held = after;
            }
        }
    }

    /// Registers a handle for `inode` (whose open count the caller already raised).
    fn add_handle(&self, ctx: &Ctx, inode: Arc<Inode>, flags: OpenFlags) -> Fh {
        let passthrough = inode.host.is_some() && {
            let m = inode.meta.lock();
            !(flags.intersects(OpenFlags::WRITE | OpenFlags::TRUNCATE)
                && ((!ctx.is_root() && m.perm & (S_ISUID | S_ISGID) != 0)
                    || m.xattrs
                        .as_ref()
                        .is_some_and(|x| x.contains_key(&b"security.capability"[..]))))
        };
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handle_shard(fh).lock().insert(
            fh,
            Handle {
                inode,
                flags,
                passthrough,
            },
        );
        Fh(fh)
    }

    /// Drops handle `fh` of `ino`, freeing the inode if that was its last reference.
    fn drop_handle(&self, ino: Ino, fh: Fh) -> VfsResult<()> {
        let handle = {
            let mut shard = self.handle_shard(fh.0).lock();
            match shard.get(&fh.0) {
                Some(h) if h.inode.ino == ino.0 => shard.remove(&fh.0),
                _ => None,
            }
        };
        let handle = handle.ok_or(VfsError::BadHandle)?;
        self.trim(&handle.inode);
        handle.inode.meta.lock().open -= 1;
        self.maybe_free(&handle.inode);
        Ok(())
    }

    /// Whether directory `anc` is `start` or one of its ancestors. Only meaningful while
    /// holding the rename mutex (parent pointers are stable then).
    fn is_ancestor(&self, anc: u64, start: u64) -> bool {
        let mut cur = start;
        // A bound on the walk, in case of a corrupt tree: never more steps than inodes.
        for _ in 0..=self.inode_count() {
            if cur == anc {
                return true;
            }
            let Ok(node) = self.get(Ino(cur)) else {
                return false;
            };
            let up = node.parent.load(Ordering::Acquire);
            if up == cur {
                return false;
            }
            cur = up;
        }
        false
    }

    /// Creates `name` in `parent` (the common part of mknod, mkdir, symlink and create).
    /// With `open`, the new inode starts with one open reference for the caller's handle.
    fn make(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        what: NewNode<'_>,
        open: bool,
    ) -> VfsResult<(Arc<Inode>, Attr)> {
        self.writable()?;
        check_name(name)?;
        let p = self.get(parent)?;
        let mut d = p.dir()?.write();
        if d.removed {
            return Err(VfsError::NotFound);
        }
        let (pgid, psetgid) = {
            let m = p.meta.lock();
            m.check(p.kind, ctx, AccessMask::EXEC)?;
            if d.get(name).is_some() {
                return Err(VfsError::Exists);
            }
            m.check(p.kind, ctx, AccessMask::WRITE | AccessMask::EXEC)?;
            if matches!(what, NewNode::Dir) && m.nlink >= LINK_MAX {
                return Err(VfsError::TooManyLinks);
            }
            (m.gid, m.perm & S_ISGID != 0)
        };
        let umask = ctx.umask & 0o777;
        let (kind, mut perm, size, rdev, content, bytes) = match what {
            NewNode::File => (
                FileType::RegularFile,
                mode & 0o7777,
                0,
                0,
                Content::File(RwLock::new(FileData::default())),
                0,
            ),
            NewNode::Dir => (
                FileType::Directory,
                mode & 0o7777,
                DIR_SIZE,
                0,
                Content::Dir(RwLock::new(DirData::new())),
                0,
            ),
            NewNode::Symlink(t) => (
                FileType::Symlink,
                0o777,
                t.len() as u64,
                0,
                Content::Symlink(t.into()),
                t.len(),
            ),
            NewNode::Node(kind, rdev) => (kind, mode & 0o7777, 0, rdev, Content::Node, 0),
        };
        if kind != FileType::Symlink {
            perm &= !umask;
        }
        let gid = if psetgid { pgid } else { ctx.gid };
        if kind == FileType::Directory && psetgid {
            perm |= u32::from(S_ISGID);
        } else if kind != FileType::Directory
            && perm & u32::from(S_ISGID) != 0
            && !ctx.is_root()
            && !ctx.in_group(gid)
        {
            perm &= !u32::from(S_ISGID);
        }
        self.reserve_inode()?;
        if let Err(e) = self.reserve(bytes as u64) {
            self.count.fetch_sub(1, Ordering::AcqRel);
            return Err(e);
        }
        let ino = self.next_ino.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = d.insert(name, ino, kind) {
            self.count.fetch_sub(1, Ordering::AcqRel);
            self.used.fetch_sub(bytes as u64, Ordering::AcqRel);
            return Err(e);
        }
        let nlink = if kind == FileType::Directory { 2 } else { 1 };
        let mut meta = Meta::new(perm as u16, ctx.uid, gid, nlink, size, rdev);
        meta.open = u32::from(open);
        let node = Arc::new(Inode {
            ino,
            kind,
            parent: AtomicU64::new(if kind == FileType::Directory {
                parent.0
            } else {
                0
            }),
            meta: Mutex::new(meta),
            content,
            host: match (kind, &self.host) {
                (FileType::RegularFile, Some(store)) => store.file(),
                _ => None,
            },
        });
        self.shard(ino).write().insert(ino, Arc::clone(&node));
        {
            let mut pm = p.meta.lock();
            pm.touch_mc();
            if kind == FileType::Directory {
                pm.nlink += 1;
            }
        }
        drop(d);
        // A new regular file's host file was made empty, and before the times memfs just
        // set, so its fstat would change nothing. (A write through another open of the
        // name just linked may race this reply; it is then ordered after the create.)
        let attr = node.heap_attr(&node.meta.lock());
        Ok((node, attr))
    }

    /// POSIX `may_delete`: write and search permission on the directory, the sticky
    /// bit's ownership rule, and the kind of the victim.
    fn may_delete(&self, ctx: &Ctx, dir: &Inode, victim: &Inode, want_dir: bool) -> VfsResult<()> {
        let (dir_uid, sticky) = {
            let m = dir.meta.lock();
            m.check(dir.kind, ctx, AccessMask::WRITE | AccessMask::EXEC)?;
            (m.uid, m.perm & S_ISVTX != 0)
        };
        if sticky && !ctx.is_root() && ctx.uid != dir_uid && ctx.uid != victim.meta.lock().uid {
            return Err(VfsError::NotPermitted);
        }
        match (want_dir, victim.kind == FileType::Directory) {
            (true, false) => Err(VfsError::NotDir),
            (false, true) => Err(VfsError::IsDir),
            _ => Ok(()),
        }
    }

    /// Checks search permission on directory `p`.
    fn search(&self, ctx: &Ctx, p: &Inode) -> VfsResult<()> {
        p.meta.lock().check(p.kind, ctx, AccessMask::EXEC)
    }

    /// Opens `node` (the part of open shared with create on an existing file).
    fn open_node(&self, ctx: &Ctx, node: Arc<Inode>, flags: OpenFlags) -> VfsResult<Opened> {
        let wants_write = flags.intersects(OpenFlags::WRITE | OpenFlags::TRUNCATE);
        match node.kind {
            FileType::Directory if wants_write => return Err(VfsError::IsDir),
            FileType::Symlink => return Err(VfsError::Loop),
            FileType::RegularFile | FileType::Directory if wants_write => self.writable()?,
            _ => {}
        }
        let truncate = flags.contains(OpenFlags::TRUNCATE) && node.kind == FileType::RegularFile;
        let mut data = match (&node.content, truncate) {
            (Content::File(f), true) => Some(f.write()),
            _ => None,
        };
        {
            let mut m = node.meta.lock();
            if m.dead {
                return Err(VfsError::Stale);
            }
            m.check(node.kind, ctx, open_mask(flags))?;
            if let Some(fd) = data.as_mut() {
                if let Some(h) = &node.host {
                    h.set_len(0)?;
                }
                let before = fd.held();
                fd.truncate(0);
                self.settle(0, before, fd.held());
                m.size = 0;
                m.held = fd.held();
                m.touch_mc();
                self.kill_privs(&mut m, ctx);
            }
            m.open += 1;
        }
        drop(data);
        Ok(Opened {
            no_flush: true,
            ..Opened::cached(self.add_handle(ctx, node, flags))
        })
    }

    /// The xattr namespace rules of Linux for `name` on `node`; `write` for set/remove.
    fn xattr_allowed(
        &self,
        ctx: &Ctx,
        node: &Inode,
        m: &Meta,
        name: &[u8],
        write: bool,
    ) -> VfsResult<()> {
        if name.is_empty() || name.len() > XATTR_NAME_MAX {
            return Err(VfsError::Range);
        }
        if name.starts_with(b"system.") || is_selinux_label(name) {
            return Err(VfsError::NotSupported);
        }
        let hidden = if write {
            VfsError::NotPermitted
        } else {
            VfsError::NoAttribute
        };
        if name.starts_with(b"trusted.") {
            return if ctx.is_root() { Ok(()) } else { Err(hidden) };
        }
        if name.starts_with(b"security.") || name.starts_with(b"system.") {
            return if write && !m.owned_by(ctx) {
                Err(VfsError::NotPermitted)
            } else {
                Ok(())
            };
        }
        let user = name.starts_with(b"user.");
        if user && !matches!(node.kind, FileType::RegularFile | FileType::Directory) {
            return Err(hidden);
        }
        if write && node.kind == FileType::Directory && m.perm & S_ISVTX != 0 && !m.owned_by(ctx) {
            return Err(VfsError::NotPermitted);
        }
        let mask = if write {
            AccessMask::WRITE
        } else {
            AccessMask::READ
        };
        m.check(node.kind, ctx, mask)
    }
}

impl Vfs for MemFs {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            xattrs: true,
            hard_links: true,
            symlinks: true,
            special_files: true,
            case_sensitive: true,
            read_only: self.opts.read_only,
            sparse_files: true,
            enforces_permissions: true,
            kills_privileges: true,
            max_name_len: crate::NAME_MAX as u32,
        }
    }

    fn lookup(&self, ctx: &Ctx, parent: Ino, name: &OsStr) -> VfsResult<Attr> {
        check_name(name)?;
        let p = self.get(parent)?;
        let dir = p.dir()?;
        self.search(ctx, &p)?;
        let ent = dir.read().get(name).ok_or(VfsError::NotFound)?;
        let child = self.get(Ino(ent.ino)).map_err(|_| VfsError::NotFound)?;
        let m = child.meta.lock();
        Ok(child.attr(&m))
    }

    /// Lookup counts are not tracked: inodes are freed by links and handles alone (see
    /// the module docs), so there is nothing to do.
    fn forget(&self, _ino: Ino, _nlookup: u64) {}

    fn getattr(&self, _ctx: &Ctx, ino: Ino, fh: Option<Fh>) -> VfsResult<Attr> {
        let (node, _) = self.resolve(ino, fh)?;
        let m = node.meta.lock();
        if m.dead {
            return Err(VfsError::Stale);
        }
        Ok(node.attr(&m))
    }

    fn setattr(&self, ctx: &Ctx, ino: Ino, set: &SetAttr, fh: Option<Fh>) -> VfsResult<Attr> {
        let (node, flags) = self.resolve(ino, fh)?;
        if set.is_empty() {
            let m = node.meta.lock();
            return if m.dead {
                Err(VfsError::Stale)
            } else {
                Ok(node.attr(&m))
            };
        }
        self.writable()?;
        let mut data = match set.size {
            Some(size) => {
                let f = node.file()?;
                if size > MAX_FILE_SIZE {
                    return Err(VfsError::FileTooLarge);
                }
                Some(f.write())
            }
            None => None,
        };
        let mut m = node.meta.lock();
        if m.dead {
            return Err(VfsError::Stale);
        }
        let owner = m.owned_by(ctx);
        let is_owner = ctx.uid == m.uid;
        let writing = flags.is_some_and(|f| f.contains(OpenFlags::WRITE));
        if set.size.is_some() && !writing {
            m.check(node.kind, ctx, AccessMask::WRITE)?;
        }
        if set.mode.is_some() && !owner {
            return Err(VfsError::NotPermitted);
        }
        if let Some(uid) = set.uid
            && !ctx.is_root()
            && !(is_owner && uid == m.uid)
        {
            return Err(VfsError::NotPermitted);
        }
        if let Some(gid) = set.gid
            && !ctx.is_root()
            && !(is_owner && (gid == m.gid || ctx.in_group(gid)))
        {
            return Err(VfsError::NotPermitted);
        }
        // Explicit times need the owner; times set to now, write access (or a handle open
        // for writing, whose writes the kernel is reporting). See `SetAttr::ctime` for
        // the times a kernel keeping them itself sends.
        let mtime_now = set.mtime_is_now();
        let explicit = matches!(set.atime, Some(SetTime::At(_)))
            || (matches!(set.mtime, Some(SetTime::At(_)))
                && !mtime_now
                && !set.mtime_is_kept(m.mtime));
        if explicit && !owner {
            return Err(VfsError::NotPermitted);
        }
        let to_now = matches!(set.atime, Some(SetTime::Now)) || mtime_now;
        if to_now
            && !explicit
            && !owner
            && !writing
            && !m.permits(node.kind, ctx, AccessMask::WRITE)
        {
            return Err(VfsError::PermissionDenied);
        }

        let now = SystemTime::now();
        if let (Some(size), Some(fd)) = (set.size, data.as_mut()) {
            m.size = node.size(&m);
            if let Some(h) = &node.host
                && size != m.size
            {
                h.set_len(size)?;
            }
            if size < m.size {
                let before = fd.held();
                fd.truncate(size);
                self.settle(0, before, fd.held());
                m.held = fd.held();
            }
            if size != m.size {
                m.size = size;
                m.mtime = now;
            }
            self.kill_privs(&mut m, ctx);
        }
        drop(data);
        // chown drops setuid/setgid (judged by the group before the change), even for
        // root, unless the same call sets the mode explicitly.
        let chown = set.uid.is_some() || set.gid.is_some();
        if chown && node.kind != FileType::Directory && set.mode.is_none() {
            m.drop_suid_bits(ctx);
        }
        if chown {
            self.drop_file_caps(&mut m);
        }
        if let Some(uid) = set.uid {
            m.uid = uid;
        }
        if let Some(gid) = set.gid {
            m.gid = gid;
        }
        if let Some(mode) = set.mode {
            let mut perm = (mode & 0o7777) as u16;
            if !ctx.is_root() && !ctx.in_group(m.gid) {
                perm &= !S_ISGID;
            }
            m.perm = perm;
        }
        match set.atime {
            Some(SetTime::At(t)) => m.atime = t,
            Some(SetTime::Now) => m.atime = now,
            None => {}
        }
        match set.mtime {
            Some(SetTime::At(t)) => m.mtime = t,
            Some(SetTime::Now) => m.mtime = now,
            None => {}
        }
        if let (Some(h), Some(_)) = (&node.host, set.mtime) {
            h.set_mtime(m.mtime);
        }
        m.ctime = set.ctime.unwrap_or(now);
        Ok(node.attr(&m))
    }

    fn readlink(&self, _ctx: &Ctx, ino: Ino) -> VfsResult<Vec<u8>> {
        match &self.get(ino)?.content {
            Content::Symlink(t) => Ok(t.to_vec()),
            _ => Err(VfsError::InvalidArgument),
        }
    }

    fn mknod(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &OsStr,
        kind: FileType,
        mode: u32,
        rdev: u64,
    ) -> VfsResult<Attr> {
        self.writable()?;
        let what = match kind {
            FileType::RegularFile => NewNode::File,
            FileType::Fifo | FileType::Socket => NewNode::Node(kind, 0),
            FileType::CharDevice | FileType::BlockDevice => {
                if !ctx.is_root() {
                    return Err(VfsError::NotPermitted);
                }
                NewNode::Node(kind, rdev)
            }
            FileType::Directory | FileType::Symlink => return Err(VfsError::InvalidArgument),
        };
        self.make(ctx, parent, name, mode, what, false)
            .map(|(_, a)| a)
    }

    fn mkdir(&self, ctx: &Ctx, parent: Ino, name: &OsStr, mode: u32) -> VfsResult<Attr> {
        self.make(ctx, parent, name, mode, NewNode::Dir, false)
            .map(|(_, a)| a)
    }

    fn unlink(&self, ctx: &Ctx, parent: Ino, name: &OsStr) -> VfsResult<()> {
        self.writable()?;
        check_name(name)?;
        let p = self.get(parent)?;
        let victim = {
            let mut d = p.dir()?.write();
            self.search(ctx, &p)?;
            let ent = d.get(name).ok_or(VfsError::NotFound)?;
            let victim = self.get(Ino(ent.ino))?;
            self.may_delete(ctx, &p, &victim, false)?;
            d.remove(name);
            p.meta.lock().touch_mc();
            let mut vm = victim.meta.lock();
            vm.nlink = vm.nlink.saturating_sub(1);
            vm.ctime = SystemTime::now();
            drop(vm);
            victim
        };
        self.maybe_free(&victim);
        Ok(())
    }

    fn rmdir(&self, ctx: &Ctx, parent: Ino, name: &OsStr) -> VfsResult<()> {
        self.writable()?;
        check_name(name)?;
        let p = self.get(parent)?;
        let pdir = p.dir()?;
        self.search(ctx, &p)?;
        let victim = loop {
            let ent = pdir.read().get(name).ok_or(VfsError::NotFound)?;
            let Ok(child) = self.get(Ino(ent.ino)) else {
                continue;
            };
            // A non-directory is not locked: may_delete rejects it with NotDir.
            let set = if child.kind == FileType::Directory {
                vec![&p, &child]
            } else {
                vec![&p]
            };
            let mut locked = Locked::new(&set)?;
            if locked.get(p.ino).get(name).map(|e| e.ino) != Some(child.ino) {
                continue;
            }
            self.may_delete(ctx, &p, &child, true)?;
            if !locked.get(child.ino).entries.is_empty() {
                return Err(VfsError::NotEmpty);
            }
            locked.get(child.ino).removed = true;
            locked.get(p.ino).remove(name);
            {
                let mut pm = p.meta.lock();
                pm.nlink -= 1;
                pm.touch_mc();
            }
            let mut cm = child.meta.lock();
            cm.nlink = 0;
            cm.ctime = SystemTime::now();
            break Arc::clone(&child);
        };
        self.maybe_free(&victim);
        Ok(())
    }

    fn symlink(&self, ctx: &Ctx, parent: Ino, name: &OsStr, target: &OsStr) -> VfsResult<Attr> {
        let target = target.as_encoded_bytes();
        if target.is_empty() {
            return Err(VfsError::NotFound);
        }
        if target.len() > 4095 {
            return Err(VfsError::NameTooLong);
        }
        self.make(ctx, parent, name, 0o777, NewNode::Symlink(target), false)
            .map(|(_, a)| a)
    }

    fn rename(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        flags: RenameFlags,
    ) -> VfsResult<()> {
        self.writable()?;
        check_name(name)?;
        check_name(new_name)?;
        let exchange = flags.contains(RenameFlags::EXCHANGE);
        if exchange && flags.contains(RenameFlags::NOREPLACE) {
            return Err(VfsError::InvalidArgument);
        }
        let sp = self.get(parent)?;
        let dp = self.get(new_parent)?;
        let (sdir, ddir) = (sp.dir()?, dp.dir()?);
        self.search(ctx, &sp)?;
        self.search(ctx, &dp)?;
        let cross = sp.ino != dp.ino;

        let victim = loop {
            let src = sdir.read().get(name).ok_or(VfsError::NotFound)?;
            let dst = ddir.read().get(new_name);
            if flags.contains(RenameFlags::NOREPLACE) && dst.is_some() {
                return Err(VfsError::Exists);
            }
            if exchange && dst.is_none() {
                return Err(VfsError::NotFound);
            }
            let Ok(src_node) = self.get(Ino(src.ino)) else {
                continue;
            };
            let dst_node = match dst.map(|d| self.get(Ino(d.ino))) {
                Some(Ok(n)) => Some(n),
                Some(Err(_)) => continue,
                None => None,
            };
            let src_dir = src.kind == FileType::Directory;
            let dst_dir = dst.is_some_and(|d| d.kind == FileType::Directory);
            let moves_dir = cross && (src_dir || (exchange && dst_dir));
            let _moving = moves_dir.then(|| self.rename_lock.lock());
            let mut set = vec![&sp, &dp];
            if src_dir {
                set.push(&src_node);
            }
            if let Some(n) = dst_node.as_ref().filter(|_| dst_dir) {
                set.push(n);
            }
            let mut locked = Locked::new(&set)?;
            if locked.get(sp.ino).get(name).map(|e| e.ino) != Some(src.ino)
                || locked.get(dp.ino).get(new_name).map(|e| e.ino) != dst.map(|d| d.ino)
            {
                continue;
            }
            if locked.get(dp.ino).removed {
                return Err(VfsError::NotFound);
            }
            if dst.is_some_and(|d| d.ino == src.ino) {
                return Ok(());
            }
            if cross && src_dir && self.is_ancestor(src.ino, dp.ino) {
                return Err(VfsError::InvalidArgument);
            }
            if cross && exchange && dst_dir && self.is_ancestor(dst.map_or(0, |d| d.ino), sp.ino) {
                return Err(VfsError::InvalidArgument);
            }
            // Replacing an ancestor of the source: Linux answers ENOTEMPTY before looking
            // at the kinds, so a file renamed over it gets that too, not EISDIR.
            if cross && !exchange && dst_dir && self.is_ancestor(dst.map_or(0, |d| d.ino), sp.ino) {
                return Err(VfsError::NotEmpty);
            }
            self.may_delete(ctx, &sp, &src_node, src_dir)?;
            match &dst_node {
                Some(d) => {
                    self.may_delete(ctx, &dp, d, if exchange { dst_dir } else { src_dir })?
                }
                None => dp
                    .meta
                    .lock()
                    .check(dp.kind, ctx, AccessMask::WRITE | AccessMask::EXEC)?,
            }
            if cross {
                if src_dir {
                    src_node
                        .meta
                        .lock()
                        .check(src_node.kind, ctx, AccessMask::WRITE)?;
                }
                if let Some(d) = dst_node.as_ref().filter(|_| exchange && dst_dir) {
                    d.meta.lock().check(d.kind, ctx, AccessMask::WRITE)?;
                }
            }
            if !exchange
                && dst_dir
                && let Some(d) = &dst_node
                && !locked.get(d.ino).entries.is_empty()
            {
                return Err(VfsError::NotEmpty);
            }

            // Every check passed: change the names, then the counts and times.
            let now = SystemTime::now();
            let mut victim = None;
            if exchange {
                let d = dst.unwrap_or(src);
                locked.get(sp.ino).repoint(name, d.ino, d.kind);
                locked.get(dp.ino).repoint(new_name, src.ino, src.kind);
                if cross {
                    let delta = i64::from(dst_dir) - i64::from(src_dir);
                    let mut sm = sp.meta.lock();
                    sm.nlink = (i64::from(sm.nlink) + delta) as u32;
                    drop(sm);
                    let mut dm = dp.meta.lock();
                    dm.nlink = (i64::from(dm.nlink) - delta) as u32;
                    drop(dm);
                    if src_dir {
                        src_node.parent.store(dp.ino, Ordering::Release);
                    }
                    if let Some(d) = dst_node.as_ref().filter(|_| dst_dir) {
                        d.parent.store(sp.ino, Ordering::Release);
                    }
                }
                if let Some(d) = &dst_node {
                    d.meta.lock().ctime = now;
                }
            } else {
                match dst {
                    Some(_) => locked.get(dp.ino).repoint(new_name, src.ino, src.kind),
                    None => locked.get(dp.ino).insert(new_name, src.ino, src.kind)?,
                }
                locked.get(sp.ino).remove(name);
                if src_dir {
                    sp.meta.lock().nlink -= 1;
                    dp.meta.lock().nlink += 1;
                    if cross {
                        src_node.parent.store(dp.ino, Ordering::Release);
                    }
                }
                if let Some(d) = &dst_node {
                    let mut vm = d.meta.lock();
                    if dst_dir {
                        vm.nlink = 0;
                        drop(vm);
                        locked.get(d.ino).removed = true;
                        dp.meta.lock().nlink -= 1;
                    } else {
                        vm.nlink = vm.nlink.saturating_sub(1);
                        vm.ctime = now;
                        drop(vm);
                    }
                    victim = Some(Arc::clone(d));
                }
            }
            src_node.meta.lock().ctime = now;
            for dir in [&sp, &dp] {
                let mut m = dir.meta.lock();
                m.mtime = now;
                m.ctime = now;
            }
            break victim;
        };
        if let Some(v) = victim {
            self.maybe_free(&v);
        }
        Ok(())
    }

    fn link(&self, ctx: &Ctx, ino: Ino, new_parent: Ino, new_name: &OsStr) -> VfsResult<Attr> {
        self.writable()?;
        let node = self.get(ino)?;
        if node.kind == FileType::Directory {
            return Err(VfsError::NotPermitted);
        }
        check_name(new_name)?;
        let p = self.get(new_parent)?;
        let mut d = p.dir()?.write();
        if d.removed {
            return Err(VfsError::NotFound);
        }
        self.search(ctx, &p)?;
        if d.get(new_name).is_some() {
            return Err(VfsError::Exists);
        }
        p.meta
            .lock()
            .check(p.kind, ctx, AccessMask::WRITE | AccessMask::EXEC)?;
        let mut m = node.meta.lock();
        if m.nlink == 0 || m.dead {
            return Err(VfsError::NotFound);
        }
        if m.nlink >= LINK_MAX {
            return Err(VfsError::TooManyLinks);
        }
        d.insert(new_name, node.ino, node.kind)?;
        m.nlink += 1;
        m.ctime = SystemTime::now();
        let attr = node.attr(&m);
        drop(m);
        p.meta.lock().touch_mc();
        Ok(attr)
    }

    fn open(&self, ctx: &Ctx, ino: Ino, flags: OpenFlags) -> VfsResult<Opened> {
        let node = self.get(ino)?;
        self.open_node(ctx, node, flags)
    }

    fn create(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        flags: OpenFlags,
    ) -> VfsResult<(Attr, Opened)> {
        loop {
            match self.make(ctx, parent, name, mode, NewNode::File, true) {
                Ok((node, attr)) => {
                    let fh = self.add_handle(ctx, node, flags - OpenFlags::EXCLUSIVE);
                    return Ok((
                        attr,
                        Opened {
                            no_flush: true,
                            ..Opened::cached(fh)
                        },
                    ));
                }
                // An existing name is opened instead, also on a read-only filesystem (as
                // Linux's open(O_CREAT) does when nothing needs creating).
                Err(e @ (VfsError::Exists | VfsError::ReadOnly))
                    if !flags.contains(OpenFlags::EXCLUSIVE) =>
                {
                    check_name(name)?;
                    let p = self.get(parent)?;
                    let dir = p.dir()?;
                    self.search(ctx, &p)?;
                    let Some(ent) = dir.read().get(name) else {
                        match e {
                            VfsError::Exists => continue,
                            e => return Err(e),
                        }
                    };
                    let Ok(node) = self.get(Ino(ent.ino)) else {
                        continue;
                    };
                    if node.kind == FileType::Directory {
                        return Err(VfsError::IsDir);
                    }
                    let opened = self.open_node(ctx, Arc::clone(&node), flags)?;
                    let attr = node.attr(&node.meta.lock());
                    return Ok((attr, opened));
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn read(
        &self,
        _ctx: &Ctx,
        ino: Ino,
        fh: Option<Fh>,
        offset: u64,
        buf: &mut [u8],
    ) -> VfsResult<usize> {
        let (node, flags) = self.resolve(ino, fh)?;
        if flags.is_some_and(|f| !can_read(f)) {
            return Err(VfsError::BadHandle);
        }
        let file = node.file()?;
        let fd = file.read();
        let size = {
            let m = node.meta.lock();
            if m.dead {
                return Err(VfsError::Stale);
            }
            // A host file's read stops at its own EOF: no fstat on the read path.
            if node.host.is_some() {
                u64::MAX
            } else {
                m.size
            }
        };
        if offset >= size || buf.is_empty() {
            return Ok(0);
        }
        let n = (size - offset).min(buf.len() as u64) as usize;
        let n = match &node.host {
            Some(h) => h.read(offset, &mut buf[..n])?,
            None => {
                fd.read(offset, &mut buf[..n]);
                n
            }
        };
        drop(fd);
        if !self.opts.read_only && !flags.is_some_and(|f| f.contains(OpenFlags::NOATIME)) {
            node.meta.lock().touch_atime();
        }
        Ok(n)
    }

    fn write(
        &self,
        ctx: &Ctx,
        ino: Ino,
        fh: Option<Fh>,
        offset: u64,
        data: &[u8],
    ) -> VfsResult<u32> {
        self.writable()?;
        let (node, flags) = self.resolve(ino, fh)?;
        if flags.is_some_and(|f| !f.contains(OpenFlags::WRITE)) {
            return Err(VfsError::BadHandle);
        }
        let file = node.file()?;
        let len = u32::try_from(data.len()).map_err(|_| VfsError::InvalidArgument)?;
        let mut fd = file.write();
        let append = flags.is_some_and(|f| f.contains(OpenFlags::APPEND));
        let size = {
            let m = node.meta.lock();
            if m.dead {
                return Err(VfsError::Stale);
            }
            // Only an append needs a host file's size now (an fstat); otherwise the
            // host file keeps its own.
            if append { node.size(&m) } else { m.size }
        };
        if len == 0 {
            return Ok(0);
        }
        let off = if append { size } else { offset };
        let end = off
            .checked_add(u64::from(len))
            .filter(|&e| e <= MAX_FILE_SIZE)
            .ok_or(VfsError::FileTooLarge)?;
        if let Some(h) = &node.host {
            // The tmpfs enforces the size limit itself.
            let n = h.write(off, data)?;
            let mut m = node.meta.lock();
            m.size = m.size.max(off + n as u64);
            m.touch_mc();
            self.kill_privs(&mut m, ctx);
            return Ok(n as u32);
        }
        // Grow geometrically when the limit allows, else allocate exactly.
        let mut geometric = true;
        let mut cost = fd.write_cost(off, u64::from(len), true);
        if self.reserve(cost).is_err() {
            geometric = false;
            cost = fd.write_cost(off, u64::from(len), false);
            self.reserve(cost)?;
        }
        let before = fd.held();
        fd.write(off, data, geometric);
        self.settle(cost, before, fd.held());
        let mut m = node.meta.lock();
        m.size = m.size.max(end);
        m.held = fd.held();
        m.touch_mc();
        self.kill_privs(&mut m, ctx);
        Ok(len)
    }

    fn release(&self, _ctx: &Ctx, ino: Ino, fh: Fh) -> VfsResult<()> {
        self.drop_handle(ino, fh)
    }

    /// The host file of a kernel-held file, for handles that may pass through (see
    /// `Handle::passthrough`).
    #[cfg(unix)]
    fn passthrough_fd(&self, ino: Ino, fh: Fh) -> Option<std::os::fd::OwnedFd> {
        self.passthrough_host(ino, fh, |host| host.duplicate())
    }

    /// Its registration, made ahead when the file was made (kept while the handle is open:
    /// a host file is dropped only with its last handle).
    #[cfg(unix)]
    fn backing_id(&self, ino: Ino, fh: Fh) -> Option<u32> {
        self.passthrough_host(ino, fh, |host| host.backing_id())
    }

    #[cfg(unix)]
    fn use_backing_registry(&self, registry: Arc<dyn crate::BackingRegistry>) -> bool {
        self.host
            .as_ref()
            .is_some_and(|store| store.use_registry(registry))
    }

    /// The host file of a kernel-held file. The read it stands for happens now, so the
    /// access time is marked here, as `read` would.
    #[cfg(unix)]
    fn read_fd(&self, ino: Ino) -> Option<std::os::fd::OwnedFd> {
        let node = self.get(ino).ok()?;
        let host = node.host.as_ref()?;
        let mut m = node.meta.lock();
        if m.dead {
            return None;
        }
        if !self.opts.read_only {
            m.touch_atime();
        }
        host.duplicate()
    }

    fn fsync(&self, _ctx: &Ctx, ino: Ino, fh: Option<Fh>, _datasync: bool) -> VfsResult<()> {
        let (node, _) = self.resolve(ino, fh)?;
        self.trim(&node);
        Ok(())
    }

    fn opendir(&self, ctx: &Ctx, ino: Ino, _flags: OpenFlags) -> VfsResult<Fh> {
        let node = self.get(ino)?;
        node.dir()?;
        {
            let mut m = node.meta.lock();
            if m.dead {
                return Err(VfsError::Stale);
            }
            m.check(node.kind, ctx, AccessMask::READ)?;
            m.open += 1;
        }
        Ok(self.add_handle(ctx, node, OpenFlags::READ))
    }

    fn readdir(
        &self,
        _ctx: &Ctx,
        ino: Ino,
        fh: Option<Fh>,
        after: u64,
        sink: &mut dyn DirSink,
    ) -> VfsResult<()> {
        let (node, _) = self.resolve(ino, fh)?;
        let d = node.dir()?.read();
        let Some(start) = after.checked_add(1) else {
            return Ok(());
        };
        let plus = sink.wants_attr();
        for (&cookie, name) in d.order.range(start..) {
            let Some(ent) = d.get(name) else { continue };
            let attr = if plus {
                // An entry's inode is in the table while the entry exists (both change
                // under this directory's lock), so a miss cannot happen; skip it if it
                // ever did rather than fail the listing.
                let Ok(child) = self.get(Ino(ent.ino)) else {
                    continue;
                };
                let m = child.meta.lock();
                Some(child.attr(&m))
            } else {
                None
            };
            let entry = DirEntry {
                name,
                ino: Ino(ent.ino),
                kind: ent.kind,
                cookie,
                attr,
            };
            if sink.add(&entry) {
                break;
            }
        }
        Ok(())
    }

    fn releasedir(&self, _ctx: &Ctx, ino: Ino, fh: Fh) -> VfsResult<()> {
        self.drop_handle(ino, fh)
    }

    fn fsyncdir(&self, _ctx: &Ctx, ino: Ino, fh: Option<Fh>, _datasync: bool) -> VfsResult<()> {
        self.resolve(ino, fh)?.0.dir()?;
        Ok(())
    }

    fn statfs(&self, _ctx: &Ctx, _ino: Ino) -> VfsResult<StatFs> {
        let blocks = self.capacity / BSIZE;
        let free = self.available() / BSIZE;
        let files = self.opts.max_inodes.unwrap_or(u64::from(u32::MAX));
        Ok(StatFs {
            blocks,
            bfree: free,
            bavail: free,
            files,
            ffree: files.saturating_sub(self.inode_count()),
            bsize: BSIZE as u32,
            frsize: BSIZE as u32,
            namelen: crate::NAME_MAX as u32,
        })
    }

    fn access(&self, ctx: &Ctx, ino: Ino, mask: AccessMask) -> VfsResult<()> {
        let node = self.get(ino)?;
        let m = node.meta.lock();
        if m.dead {
            return Err(VfsError::Stale);
        }
        let on_fs = matches!(
            node.kind,
            FileType::RegularFile | FileType::Directory | FileType::Symlink
        );
        if mask.contains(AccessMask::WRITE) && self.opts.read_only && on_fs {
            return Err(VfsError::ReadOnly);
        }
        m.check(node.kind, ctx, mask)
    }

    fn setxattr(
        &self,
        ctx: &Ctx,
        ino: Ino,
        name: &OsStr,
        value: &[u8],
        flags: XattrFlags,
    ) -> VfsResult<()> {
        self.writable()?;
        if flags.contains(XattrFlags::CREATE | XattrFlags::REPLACE) {
            return Err(VfsError::InvalidArgument);
        }
        if value.len() > XATTR_VALUE_MAX {
            return Err(VfsError::Range);
        }
        let node = self.get(ino)?;
        let key = name.as_encoded_bytes();
        let mut m = node.meta.lock();
        if m.dead {
            return Err(VfsError::Stale);
        }
        self.xattr_allowed(ctx, &node, &m, key, true)?;
        let old = m.xattrs.as_ref().and_then(|x| x.get(key)).map(|v| v.len());
        match old {
            Some(_) if flags.contains(XattrFlags::CREATE) => return Err(VfsError::Exists),
            None if flags.contains(XattrFlags::REPLACE) => return Err(VfsError::NoAttribute),
            _ => {}
        }
        let new_bytes = (key.len() + value.len()) as u64;
        let old_bytes = old.map_or(0, |v| (key.len() + v) as u64);
        self.reserve(new_bytes.saturating_sub(old_bytes))?;
        if old_bytes > new_bytes {
            self.used.fetch_sub(old_bytes - new_bytes, Ordering::AcqRel);
        }
        m.xattrs
            .get_or_insert_with(Default::default)
            .insert(key.into(), value.into());
        m.ctime = SystemTime::now();
        Ok(())
    }

    fn getxattr(&self, ctx: &Ctx, ino: Ino, name: &OsStr) -> VfsResult<Vec<u8>> {
        let node = self.get(ino)?;
        let key = name.as_encoded_bytes();
        let m = node.meta.lock();
        self.xattr_allowed(ctx, &node, &m, key, false)?;
        m.xattrs
            .as_ref()
            .and_then(|x| x.get(key))
            .map(|v| v.to_vec())
            .ok_or(VfsError::NoAttribute)
    }

    fn listxattr(&self, ctx: &Ctx, ino: Ino) -> VfsResult<Vec<OsString>> {
        let node = self.get(ino)?;
        let m = node.meta.lock();
        let Some(x) = m.xattrs.as_ref() else {
            return Ok(Vec::new());
        };
        Ok(x.keys()
            .filter(|k| ctx.is_root() || !k.starts_with(b"trusted."))
            // SAFETY: every key was stored from an `OsStr`'s encoded bytes, unchanged.
            .map(|k| unsafe { OsStr::from_encoded_bytes_unchecked(k) }.to_owned())
            .collect())
    }

    fn removexattr(&self, ctx: &Ctx, ino: Ino, name: &OsStr) -> VfsResult<()> {
        self.writable()?;
        let node = self.get(ino)?;
        let key = name.as_encoded_bytes();
        let mut m = node.meta.lock();
        if m.dead {
            return Err(VfsError::Stale);
        }
        self.xattr_allowed(ctx, &node, &m, key, true)?;
        let removed = m
            .xattrs
            .as_mut()
            .and_then(|x| x.remove(key))
            .ok_or(VfsError::NoAttribute)?;
        self.used
            .fetch_sub((key.len() + removed.len()) as u64, Ordering::AcqRel);
        if m.xattrs.as_ref().is_some_and(|x| x.is_empty()) {
            m.xattrs = None;
        }
        m.ctime = SystemTime::now();
        Ok(())
    }

    fn fallocate(
        &self,
        ctx: &Ctx,
        ino: Ino,
        fh: Option<Fh>,
        offset: u64,
        len: u64,
        mode: FallocateFlags,
    ) -> VfsResult<()> {
        self.writable()?;
        let (node, flags) = self.resolve(ino, fh)?;
        if flags.is_some_and(|f| !f.contains(OpenFlags::WRITE)) {
            return Err(VfsError::BadHandle);
        }
        let file = node.file()?;
        let punch = mode.contains(FallocateFlags::PUNCH_HOLE);
        let zero = mode.contains(FallocateFlags::ZERO_RANGE);
        let keep = mode.contains(FallocateFlags::KEEP_SIZE);
        // Linux's vfs_fallocate: a punch must keep the size (EOPNOTSUPP), punch and zero
        // exclude each other, and an empty range is invalid.
        if punch && !keep {
            return Err(VfsError::NotSupported);
        }
        if (punch && zero) || len == 0 {
            return Err(VfsError::InvalidArgument);
        }
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= MAX_FILE_SIZE)
            .ok_or(VfsError::FileTooLarge)?;
        let mut fd = file.write();
        let size = {
            let m = node.meta.lock();
            if m.dead {
                return Err(VfsError::Stale);
            }
            node.size(&m)
        };
        if let Some(h) = &node.host {
            host_fallocate(h, punch, zero, keep, offset, len)?;
            let mut m = node.meta.lock();
            if !keep && end > size {
                m.size = end;
            }
            m.touch_mc();
            self.kill_privs(&mut m, ctx);
            return Ok(());
        }
        let before = fd.held();
        let mut reserved = 0;
        if punch || zero {
            fd.punch(offset, end);
        } else {
            reserved = fd
                .allocate_cost(offset, end, self.available())
                .ok_or(VfsError::NoSpace)?;
            self.reserve(reserved)?;
            fd.allocate(offset, end);
        }
        self.settle(reserved, before, fd.held());
        let mut m = node.meta.lock();
        m.held = fd.held();
        if !keep && end > size {
            m.size = end;
        }
        m.touch_mc();
        self.kill_privs(&mut m, ctx);
        Ok(())
    }

    fn copy_file_range(
        &self,
        ctx: &Ctx,
        ino_in: Ino,
        fh_in: Option<Fh>,
        offset_in: u64,
        ino_out: Ino,
        fh_out: Option<Fh>,
        offset_out: u64,
        len: u64,
    ) -> VfsResult<u64> {
        self.writable()?;
        let (src, fin) = self.resolve(ino_in, fh_in)?;
        let (dst, fout) = self.resolve(ino_out, fh_out)?;
        if fin.is_some_and(|f| !can_read(f))
            || fout.is_some_and(|f| !f.contains(OpenFlags::WRITE) || f.contains(OpenFlags::APPEND))
        {
            return Err(VfsError::BadHandle);
        }
        let (sfile, dfile) = (src.file()?, dst.file()?);
        if len == 0 {
            return Ok(0);
        }
        let same = src.ino == dst.ino;
        // Data locks of two files in inode order; one lock when copying within a file.
        let (mut dguard, sguard) = if same {
            (dfile.write(), None)
        } else if src.ino < dst.ino {
            let s = sfile.read();
            (dfile.write(), Some(s))
        } else {
            let d = dfile.write();
            (d, Some(sfile.read()))
        };
        let (size_in, size_out) = {
            let sm = src.meta.lock();
            let size_in = src.size(&sm);
            let dead = sm.dead;
            drop(sm);
            let dm = dst.meta.lock();
            if dead || dm.dead {
                return Err(VfsError::Stale);
            }
            (size_in, dst.size(&dm))
        };
        if offset_in >= size_in {
            return Ok(0);
        }
        let n = len.min(size_in - offset_in);
        let end_out = offset_out
            .checked_add(n)
            .filter(|&e| e <= MAX_FILE_SIZE)
            .ok_or(VfsError::FileTooLarge)?;
        if same && offset_in < end_out && offset_out < offset_in + n {
            return Err(VfsError::InvalidArgument);
        }
        match (&src.host, &dst.host) {
            (Some(hs), Some(hd)) => {
                let n = hs.copy_to(offset_in, hd, offset_out, n)?;
                let mut m = dst.meta.lock();
                m.size = size_out.max(offset_out + n);
                m.touch_mc();
                self.kill_privs(&mut m, ctx);
                drop(m);
                drop(dguard);
                drop(sguard);
                if !same {
                    src.meta.lock().touch_atime();
                }
                return Ok(n);
            }
            // One file on the heap and one in the kernel (the descriptor budget ran out
            // between them): as between filesystems, callers copy by reading and writing.
            (Some(_), None) | (None, Some(_)) => return Err(VfsError::CrossDevice),
            (None, None) => {}
        }
        let cost = data::copy_cost(sguard.as_deref(), &dguard, offset_in, offset_out, n);
        self.reserve(cost)?;
        let before = dguard.held();
        data::copy_range(sguard.as_deref(), &mut dguard, offset_in, offset_out, n);
        self.settle(cost, before, dguard.held());
        {
            let mut m = dst.meta.lock();
            m.size = size_out.max(end_out);
            m.held = dguard.held();
            m.touch_mc();
            self.kill_privs(&mut m, ctx);
        }
        drop(dguard);
        drop(sguard);
        if !same {
            src.meta.lock().touch_atime();
        }
        Ok(n)
    }

    fn lseek(
        &self,
        _ctx: &Ctx,
        ino: Ino,
        fh: Option<Fh>,
        offset: u64,
        whence: Whence,
    ) -> VfsResult<u64> {
        let (node, _) = self.resolve(ino, fh)?;
        let file = node.file().map_err(|_| VfsError::InvalidArgument)?;
        let fd = file.read();
        let size = {
            let m = node.meta.lock();
            if m.dead {
                return Err(VfsError::Stale);
            }
            node.size(&m)
        };
        match &node.host {
            Some(_) if offset >= size => Err(VfsError::NoDataAtOffset),
            Some(h) => h.seek(offset, whence),
            None => fd.seek(offset, size, whence),
        }
    }
}

/// Sets `counter` to `f(current)` atomically, or leaves it and fails with `NoSpace` when
/// `f` says no. (`AtomicU64::fetch_update`, spelled out: it is being renamed upstream.)
fn try_update(counter: &AtomicU64, f: impl Fn(u64) -> Option<u64>) -> VfsResult<()> {
    let mut current = counter.load(Ordering::Acquire);
    loop {
        let next = f(current).ok_or(VfsError::NoSpace)?;
        match counter.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Ok(()),
            Err(actual) => current = actual,
        }
    }
}

/// A memfs fallocate on a kernel-held file: the same mode, checked already.
fn host_fallocate(
    h: &HostFile,
    punch: bool,
    zero: bool,
    keep: bool,
    offset: u64,
    len: u64,
) -> VfsResult<()> {
    #[cfg(target_os = "linux")]
    {
        let keep_size = if keep { libc::FALLOC_FL_KEEP_SIZE } else { 0 };
        if punch || zero {
            h.fallocate(
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                offset,
                len,
            )?;
        }
        if punch {
            return Ok(());
        }
        // tmpfs has no FALLOC_FL_ZERO_RANGE: a zeroed range is a punched one allocated
        // again, which is what heap memfs does too.
        h.fallocate(keep_size, offset, len)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (punch, zero, keep, offset, len);
        match *h {}
    }
}
