//! The [`Vfs`] trait: one filesystem contract served by every backend.
//!
//! The trait's own docs hold the whole contract, written for implementers.

use std::ffi::OsStr;

use crate::error::{VfsError, VfsResult};
use crate::types::*;

/// A filesystem that vmount can mount through FUSE, NFSv3 or WinFsp.
///
/// # Shape
/// Inode-based (FUSE and NFS are; WinFsp paths are resolved by walking [`Vfs::lookup`]),
/// synchronous and `&self` (the backends call from their own thread pools; the async NFS
/// server uses `spawn_blocking`), and `Send + Sync + 'static`: **any method may be called
/// from many threads at once**, including several writes to one file.
///
/// # Contract every implementation keeps
/// - **Inode numbers** are stable and never reused while the filesystem lives; `0` is
///   never used; the root is [`Ino::ROOT`]. An inode that no longer exists yields
///   [`VfsError::Stale`] (or `NotFound` from name-based calls).
/// - **Names** are single path components: never empty, never `.`/`..`, never containing
///   `/` or NUL; the filesystem rejects such names with `InvalidArgument` and names over
///   [`Capabilities::max_name_len`] with `NameTooLong` (adapters may pre-filter).
/// - **Modes are final**: adapters apply the umask before calling `mkdir`/`create`/`mknod`
///   unless they pass it in [`Ctx::umask`].
/// - **Permissions**: a filesystem whose [`Capabilities::enforces_permissions`] is true
///   checks every call against the caller in [`Ctx`] exactly as a POSIX kernel would
///   (search permission on directories, write permission on the parent for namespace
///   changes, sticky directories, owner-only chmod/utimes, root-only chown).
/// - **File handles are optional on I/O**: `read`, `write`, `fsync`, `getattr`, `setattr`,
///   `fallocate`, `lseek` and `copy_file_range` receive `None` from stateless protocols
///   (NFSv3) and must then serve the inode directly and efficiently. With `Some(fh)` the
///   handle's open mode applies (e.g. `APPEND`; writing through a read-only handle is
///   `BadHandle`), and the handle keeps the inode alive: a file unlinked while open stays
///   readable and writable through its handle until `release`.
/// - **Lookup counts**: every `Ok` from `lookup`, `mknod`, `mkdir`, `symlink`, `link` and
///   `create`, and every entry a [`DirSink`] that [`DirSink::wants_attr`] *accepts* from
///   `readdir` (READDIRPLUS hands out usable inodes too), counts one reference the FUSE
///   kernel module holds; `forget` drops them.
///   A filesystem may use the counts to bound tables, but must keep serving an inode
///   that still has links or open handles even if forgotten (NFS never forgets).
/// - **readdir** pushes entries after cookie `after` (0 = from the start) in a stable
///   order, never `.` or `..`. An entry that exists for the whole listing is returned
///   exactly once, even while other entries are added and removed concurrently.
/// - **rename** is atomic: at no moment can the target name be observed missing when it
///   existed before (replace), and `EXCHANGE` swaps both names in one step.
/// - **Errors** never panic: bad input from a client gets the matching [`VfsError`].
///
/// Optional operations default to [`VfsError::Unimplemented`] (ENOSYS: "this filesystem
/// lacks the operation", which FUSE remembers), not `NotSupported` ("not this case").
///
/// # Implementing it
/// What follows is the whole contract in detail: enough to implement a filesystem that FUSE, NFSv3 and
/// WinFsp all serve correctly, without reading the adapters. Two complete examples live
/// in the `vmount` package: `examples/hello_vfs.rs` (read-only, one file) and
/// `examples/notes_vfs.rs` (writable, one flat directory); `vmount::mount(fs, &plan)`
/// mounts either.
///
/// ## What to implement
/// The required methods are the ones every mount needs: [`Vfs::capabilities`],
/// `lookup`, `getattr`, `setattr`, `mkdir`, `unlink`, `rmdir`, `rename`, `open`,
/// `create`, `read`, `write`, `release`, `opendir`, `readdir`, `releasedir`, `statfs`
/// and `access`. A read-only filesystem answers the modifying ones with
/// [`VfsError::ReadOnly`] and sets [`Capabilities::read_only`]. Everything else
/// (symlinks, hard links, special files, xattrs, `fallocate`, `copy_file_range`,
/// `lseek` for holes, FUSE passthrough) has a default that reports
/// [`VfsError::Unimplemented`] (or does nothing, for `forget`, `flush`, `fsync`,
/// `fsyncdir`), and the backends degrade gracefully: FUSE stops asking after the first
/// ENOSYS, the kernel emulates `copy_file_range` and SEEK_DATA, NFS reports the feature
/// as unsupported.
///
/// ## Threads
/// Every method takes `&self` and may run on many threads at once (FUSE has a worker
/// per CPU, NFS one blocking task per request, WinFsp its own pool), including two
/// writes to the same file or a `readdir` racing an `unlink` in the same directory. Use
/// interior mutability (`Mutex`, `RwLock`, atomics) and keep each operation atomic
/// with respect to the others: a reader must never see half a rename or half a
/// `setattr`. A method that panics costs one request (the backends reply EIO through
/// [`crate::PanicGuard`]), but a poisoned lock stays poisoned, so do not panic while
/// holding one; never panic on anything a client sends (names, offsets, sizes, flags):
/// use checked arithmetic on offsets (`offset + len` may overflow `u64`).
///
/// ## Inodes and lookup counts
/// Every object has an [`Ino`], stable for the life of the mount and never reused for a
/// different object (NFS file handles are built from it). `0` is invalid; the root is
/// [`Ino::ROOT`] (1). An inode the filesystem no longer knows is [`VfsError::Stale`].
///
/// FUSE tells the filesystem how many references the kernel holds: each successful
/// `lookup`, `create`, `mkdir`, `mknod`, `symlink` and `link`, and each `readdir` entry
/// accepted by a sink that [`DirSink::wants_attr`], adds one; `forget(ino, n)` drops
/// `n`. A filesystem that keeps per-inode state (an open host descriptor, a cache) may
/// free it when the count reaches zero *and* the object is gone; one whose inodes are
/// plain numbers can ignore `forget`. NFS never forgets and WinFsp resolves paths with
/// [`crate::walk_path`], so an inode must stay usable by number while it exists, whatever
/// its count.
///
/// ## Handles
/// `open`, `create` and `opendir` return a handle ([`Fh`], any `u64` you choose) that
/// comes back in `read`, `write`, `flush`, `fsync`, `release` (and `readdir`,
/// `releasedir`). Keep the open mode with it: writing through a handle not opened with
/// [`OpenFlags::WRITE`] is [`VfsError::BadHandle`], and `APPEND` handles write at the end
/// whatever `offset` says. A handle keeps its file alive: after `unlink` (or a rename
/// replacing it) an open file stays readable and writable through the handle until
/// `release`, though it has no name and `nlink` 0. `flush` runs on every `close(2)` and
/// `release` once, when the last descriptor is gone. NFSv3 has no opens: it passes `None`
/// for every `Option<Fh>`, and the call then acts on the inode with the caller's
/// permissions. [`Opened`] also carries caching hints (`keep_cache`, `direct_io`,
/// `no_flush`): use `direct_io` when content changes behind the kernel's back.
///
/// ## Listing directories
/// `readdir(ino, fh, after, sink)` pushes entries that follow cookie `after` (0 = from
/// the start) into `sink` until [`DirSink::add`] returns `true` (full: that entry was not
/// taken, and the next call resumes after the previous entry's cookie) or the directory
/// ends. Each entry carries its own cookie: non-zero, below 2^63, and still meaning "this
/// place in the listing" in a later call, even a call on another handle or over NFS,
/// after other entries were added or removed. Never list `.` or `..` (the adapters add
/// them). An entry that exists for the whole listing must appear exactly once; one
/// created or removed meanwhile may or may not. A simple way to get all this is to list
/// in a stable order of a stable key (an inode number, a creation sequence number) and
/// use that key as the cookie. Fill [`DirEntry::attr`] when the sink
/// [`wants_attr`](DirSink::wants_attr) (READDIRPLUS), and count a lookup for it.
///
/// ## Rename
/// `rename` is atomic: no reader may ever see the target name missing when it existed
/// before, nor both names pointing at the moved object. Without flags it replaces the
/// target (a file by a file, a directory by an empty directory; otherwise `IsDir`,
/// `NotDir` or `NotEmpty`). [`RenameFlags::NOREPLACE`] fails with `Exists` when the
/// target exists; [`RenameFlags::EXCHANGE`] swaps two existing objects (`NotFound` when
/// the target is missing); both together are `InvalidArgument`, as is moving a directory
/// into its own subtree. Renaming a name onto another name of the same inode does nothing
/// and succeeds. A filesystem that cannot support a flag returns `InvalidArgument` for it.
///
/// ## Errors
/// Return the [`VfsError`] a POSIX kernel would, since the adapters map each variant to
/// its errno, NFS status and NTSTATUS: `NotFound` for a missing name, `Stale` for an
/// inode that is gone, `Exists`, `NotDir`, `IsDir`, `NotEmpty`, `PermissionDenied`
/// (EACCES: mode bits say no) versus `NotPermitted` (EPERM: only the owner or root may,
/// as for chmod, chown, or deleting in a sticky directory), `ReadOnly`, `NoSpace` (full
/// or over a quota; a `write` that stored nothing), `FileTooLarge`, `NameTooLong`
/// (longer than [`Capabilities::max_name_len`]), `InvalidArgument` (a name with `/`,
/// `.`, `..`, or a bad flag combination; [`crate::check_name`] checks names),
/// `BadHandle`, `NoAttribute` (xattrs). [`VfsError::Unimplemented`] means "this
/// filesystem never does this operation", which FUSE remembers for the whole mount;
/// [`VfsError::NotSupported`] means "not this case" (one fallocate mode, a flat
/// directory refusing `mkdir`). Host failures go in [`VfsError::Io`] with their OS code.
///
/// ## Permissions and capabilities
/// [`Capabilities`] tells the backends what to expect. When
/// [`Capabilities::enforces_permissions`] is true the filesystem checks every call
/// against the caller in [`Ctx`] (uid, gid, supplementary groups) as a POSIX kernel would
/// (search on each directory, write on the parent for namespace changes, the sticky bit,
/// owner-only chmod and utimes, root-only chown), and `access` answers from the same
/// rules. When it is false the FUSE backend mounts with `default_permissions`, so the
/// kernel checks mode bits from your attributes before calling; WinFsp checks the
/// security descriptor it derives from the mode bits; NFS clients decide from what
/// `access` answers, and NFS requests are served as sent, so a filesystem that several
/// users reach over NFS should enforce permissions itself. New objects get the `mode`
/// passed in (the umask is already applied unless [`Ctx::umask`] is non-zero) and the
/// caller's uid and gid (or the parent's gid when it is setgid).
///
/// ## Attributes
/// [`Attr`] is `stat(2)`: keep `size`, `nlink` (directories: 2 + subdirectories),
/// `mtime`/`ctime` (every content change updates both; attribute changes update `ctime`)
/// and `blocks` accurate, since the kernels cache them for the configured timeouts and
/// tools such as `cp`, `tar` and `git` rely on them. `setattr` applies its whole
/// [`SetAttr`] atomically; `size` truncates or extends with zeros.
pub trait Vfs: Send + Sync + 'static {
    /// What this filesystem supports.
    fn capabilities(&self) -> Capabilities;

    /// Starts telling `sink` about changes made to this filesystem other than through its
    /// own calls (loopback: by other processes on the host), so that a backend whose
    /// kernel caches names and attributes can drop what went stale instead of caching
    /// briefly. Returns whether it will: `false` (the default, and memfs, which changes
    /// only through its calls) leaves the backend to cache only as long as it may serve
    /// stale data. Called at most once, before the filesystem is mounted.
    fn watch_changes(&self, sink: std::sync::Arc<dyn ChangeSink>) -> bool {
        let _ = sink;
        false
    }

    /// Tells the filesystem how an adapter about to serve it treats lookup counts: called
    /// once per adapter, before its first request, with `true` from one whose kernel sends
    /// [`forget`](Vfs::forget) for a removed object as soon as nothing uses it (FUSE on
    /// Linux) and `false` from one that forgets late or never (macFUSE, which forgets at
    /// vnode reclaim; NFS; WinFsp). The default ignores it.
    ///
    /// Why: a filesystem that keeps state per object (loopback: an open host descriptor,
    /// which also keeps the host from freeing the file) must let go of it once the object
    /// is removed and unused. Removals through the filesystem let go at once, since the
    /// space must be free when the call returns; but an object removed behind the
    /// filesystem's back while open is only seen gone by asking the host at its last
    /// `release`, unless a `forget` is sure to follow. With only forgetting adapters
    /// attached (and loopback watching its source, so that the kernel hears of the
    /// removal), that ask is spared on every close. Without any call, a filesystem must
    /// assume adapters that never forget.
    fn attach(&self, forgets: bool) {
        let _ = forgets;
    }

    /// Looks up `name` in directory `parent` and returns its attributes; counts one
    /// lookup reference on success.
    fn lookup(&self, ctx: &Ctx, parent: Ino, name: &OsStr) -> VfsResult<Attr>;

    /// Drops `nlookup` lookup references on `ino` (FUSE FORGET). Never fails.
    fn forget(&self, ino: Ino, nlookup: u64) {
        let _ = (ino, nlookup);
    }

    /// Returns the attributes of `ino` (or of the open handle `fh`, which may refer to an
    /// unlinked file).
    fn getattr(&self, ctx: &Ctx, ino: Ino, fh: Option<Fh>) -> VfsResult<Attr>;

    /// Applies `set` atomically and returns the new attributes. Truncation through `fh`
    /// needs only that the handle is writable, not write permission on the file now.
    fn setattr(&self, ctx: &Ctx, ino: Ino, set: &SetAttr, fh: Option<Fh>) -> VfsResult<Attr>;

    /// Returns the target of symlink `ino` as raw bytes.
    fn readlink(&self, ctx: &Ctx, ino: Ino) -> VfsResult<Vec<u8>> {
        let _ = (ctx, ino);
        Err(VfsError::Unimplemented)
    }

    /// Creates a special file: fifo or socket for anyone with write access to `parent`,
    /// character/block devices only for root (else `NotPermitted`). Regular files are
    /// allowed too (mknod(2) with S_IFREG).
    fn mknod(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &OsStr,
        kind: FileType,
        mode: u32,
        rdev: u64,
    ) -> VfsResult<Attr> {
        let _ = (ctx, parent, name, kind, mode, rdev);
        Err(VfsError::Unimplemented)
    }

    /// Creates directory `name` in `parent` with permission bits `mode`.
    fn mkdir(&self, ctx: &Ctx, parent: Ino, name: &OsStr, mode: u32) -> VfsResult<Attr>;

    /// Removes the non-directory `name` from `parent`.
    fn unlink(&self, ctx: &Ctx, parent: Ino, name: &OsStr) -> VfsResult<()>;

    /// Removes the empty directory `name` from `parent`.
    fn rmdir(&self, ctx: &Ctx, parent: Ino, name: &OsStr) -> VfsResult<()>;

    /// Creates symlink `name` in `parent` pointing at `target` (stored verbatim, never
    /// resolved by the filesystem).
    fn symlink(&self, ctx: &Ctx, parent: Ino, name: &OsStr, target: &OsStr) -> VfsResult<Attr> {
        let _ = (ctx, parent, name, target);
        Err(VfsError::Unimplemented)
    }

    /// Renames `parent/name` to `new_parent/new_name`, atomically, with `renameat2(2)`
    /// semantics for `flags`: replacing a file or an empty directory of a compatible kind,
    /// `NOREPLACE` failing with `Exists`, `EXCHANGE` swapping two existing objects,
    /// `InvalidArgument` when a directory would move into its own subtree, and nothing
    /// happening when both names refer to the same inode.
    fn rename(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        flags: RenameFlags,
    ) -> VfsResult<()>;

    /// Creates hard link `new_parent/new_name` to `ino` (not a directory).
    fn link(&self, ctx: &Ctx, ino: Ino, new_parent: Ino, new_name: &OsStr) -> VfsResult<Attr> {
        let _ = (ctx, ino, new_parent, new_name);
        Err(VfsError::Unimplemented)
    }

    /// Opens `ino` with `flags`, checking read/write permission against the caller.
    fn open(&self, ctx: &Ctx, ino: Ino, flags: OpenFlags) -> VfsResult<Opened>;

    /// Creates and opens a regular file in one step (`O_CREAT`). Without
    /// `OpenFlags::EXCLUSIVE`, an existing file of that name is opened instead (after
    /// the same permission check as `open`).
    fn create(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        flags: OpenFlags,
    ) -> VfsResult<(Attr, Opened)>;

    /// Reads up to `buf.len()` bytes at `offset` into `buf` and returns how many were
    /// read. A short count means end of file; reading at or past EOF returns 0; holes
    /// read as zeros.
    fn read(
        &self,
        ctx: &Ctx,
        ino: Ino,
        fh: Option<Fh>,
        offset: u64,
        buf: &mut [u8],
    ) -> VfsResult<usize>;

    /// Writes `data` at `offset` (at the end of file when the handle was opened with
    /// `APPEND`) and returns the number of bytes written, which is all of them unless an
    /// error such as `NoSpace` stopped it before any byte was written. Clears setuid and
    /// setgid as POSIX requires when a non-root caller writes.
    fn write(
        &self,
        ctx: &Ctx,
        ino: Ino,
        fh: Option<Fh>,
        offset: u64,
        data: &[u8],
    ) -> VfsResult<u32>;

    /// Called on every `close(2)` of a descriptor (may be many per open).
    fn flush(&self, ctx: &Ctx, ino: Ino, fh: Fh, lock_owner: u64) -> VfsResult<()> {
        let _ = (ctx, ino, fh, lock_owner);
        Ok(())
    }

    /// The last reference to handle `fh` is gone. Never fails in a way callers can act
    /// on; the filesystem frees what the handle pinned.
    fn release(&self, ctx: &Ctx, ino: Ino, fh: Fh) -> VfsResult<()>;

    /// Makes the file's data (and metadata unless `datasync`) durable.
    fn fsync(&self, ctx: &Ctx, ino: Ino, fh: Option<Fh>, datasync: bool) -> VfsResult<()> {
        let _ = (ctx, ino, fh, datasync);
        Ok(())
    }

    /// Opens directory `ino` for listing (needs read permission).
    fn opendir(&self, ctx: &Ctx, ino: Ino, flags: OpenFlags) -> VfsResult<Fh>;

    /// Pushes the entries of directory `ino` that come after cookie `after` into `sink`
    /// until it is full or the directory ends. See the trait docs for the ordering and
    /// stability guarantees. `fh` is `None` for stateless protocols.
    fn readdir(
        &self,
        ctx: &Ctx,
        ino: Ino,
        fh: Option<Fh>,
        after: u64,
        sink: &mut dyn DirSink,
    ) -> VfsResult<()>;

    /// Releases a directory handle from `opendir`.
    fn releasedir(&self, ctx: &Ctx, ino: Ino, fh: Fh) -> VfsResult<()>;

    /// Makes a directory's entries durable.
    fn fsyncdir(&self, ctx: &Ctx, ino: Ino, fh: Option<Fh>, datasync: bool) -> VfsResult<()> {
        let _ = (ctx, ino, fh, datasync);
        Ok(())
    }

    /// Filesystem-wide numbers.
    fn statfs(&self, ctx: &Ctx, ino: Ino) -> VfsResult<StatFs>;

    /// Checks `mask` against the caller's permissions on `ino` (`access(2)`; the empty
    /// mask tests existence).
    fn access(&self, ctx: &Ctx, ino: Ino, mask: AccessMask) -> VfsResult<()>;

    /// Sets extended attribute `name` to `value`, honouring `CREATE`/`REPLACE`.
    fn setxattr(
        &self,
        ctx: &Ctx,
        ino: Ino,
        name: &OsStr,
        value: &[u8],
        flags: XattrFlags,
    ) -> VfsResult<()> {
        let _ = (ctx, ino, name, value, flags);
        Err(VfsError::Unimplemented)
    }

    /// Returns the value of extended attribute `name` (`NoAttribute` if absent).
    fn getxattr(&self, ctx: &Ctx, ino: Ino, name: &OsStr) -> VfsResult<Vec<u8>> {
        let _ = (ctx, ino, name);
        Err(VfsError::Unimplemented)
    }

    /// Lists the extended attribute names of `ino` visible to the caller.
    fn listxattr(&self, ctx: &Ctx, ino: Ino) -> VfsResult<Vec<std::ffi::OsString>> {
        let _ = (ctx, ino);
        Err(VfsError::Unimplemented)
    }

    /// Removes extended attribute `name` (`NoAttribute` if absent).
    fn removexattr(&self, ctx: &Ctx, ino: Ino, name: &OsStr) -> VfsResult<()> {
        let _ = (ctx, ino, name);
        Err(VfsError::Unimplemented)
    }

    /// Allocates, punches or zeroes `[offset, offset+len)` per `mode`.
    fn fallocate(
        &self,
        ctx: &Ctx,
        ino: Ino,
        fh: Option<Fh>,
        offset: u64,
        len: u64,
        mode: FallocateFlags,
    ) -> VfsResult<()> {
        let _ = (ctx, ino, fh, offset, len, mode);
        Err(VfsError::Unimplemented)
    }

    /// Copies up to `len` bytes from one file to another (or within one, ranges not
    /// overlapping) without passing them through the caller; returns the count copied
    /// (short at the source's EOF).
    #[allow(clippy::too_many_arguments)]
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
        let _ = (
            ctx, ino_in, fh_in, offset_in, ino_out, fh_out, offset_out, len,
        );
        Err(VfsError::Unimplemented)
    }

    /// For FUSE passthrough: a host descriptor, open for the same access as handle `fh`,
    /// whose file holds exactly this file's data. When the adapter gets one it registers it
    /// with the kernel, which then serves reads and writes of this open file directly from
    /// the host file without calling `read`/`write` at all. Returns a duplicate the caller
    /// owns (and closes). `None` (the default) keeps all I/O going through the trait, as
    /// filesystems without a host file (memfs) must.
    #[cfg(unix)]
    fn passthrough_fd(&self, ino: Ino, fh: Fh) -> Option<std::os::fd::OwnedFd> {
        let _ = (ino, fh);
        None
    }

    /// For FUSE passthrough: the kernel's id for a host file this filesystem registered
    /// ahead of time through the [`BackingRegistry`] it was given, to serve handle `fh`
    /// of `ino` (the same file [`passthrough_fd`](Vfs::passthrough_fd) would offer). The
    /// adapter asks this first and, on `None` (the default), `passthrough_fd`.
    ///
    /// Why: registering a descriptor (`FUSE_DEV_IOC_BACKING_OPEN`, and its
    /// `BACKING_CLOSE` after the last release) cost 2.5-3 µs per open on the 2-CPU VM,
    /// about a tenth of a memfs create, on the request path and, for the close, on the
    /// CPU of the process that just closed the file. A filesystem whose host file lives
    /// as long as its file (memfs) registers it once, off the request path. The id must
    /// stay registered while the handle is open.
    #[cfg(unix)]
    fn backing_id(&self, ino: Ino, fh: Fh) -> Option<u32> {
        let _ = (ino, fh);
        None
    }

    /// Offers the filesystem the registry of a FUSE connection that does passthrough, once
    /// the kernel agreed to it (see [`backing_id`](Vfs::backing_id)). Returns whether it
    /// took it: only then does that connection ask `backing_id`, whose ids are valid on
    /// one connection alone (a filesystem mounted twice takes the first registry, and the
    /// second mount registers descriptors per open). The default declines.
    #[cfg(unix)]
    fn use_backing_registry(&self, registry: std::sync::Arc<dyn BackingRegistry>) -> bool {
        let _ = registry;
        false
    }

    /// For servers that move file data without copying it through this process (the NFS
    /// backend splices large READ replies from the host's page cache to its socket): a
    /// host descriptor open for reading whose file holds exactly this file's bytes at the
    /// same offsets. Returns a duplicate the caller owns, for one read made at once;
    /// `None` (the default, and for anything but a regular file) makes the caller use
    /// `read`. It stands for a stateless `read` (`fh` of `None`): permission checks are
    /// the caller's, and a filesystem that keeps access times marks one here.
    #[cfg(unix)]
    fn read_fd(&self, ino: Ino) -> Option<std::os::fd::OwnedFd> {
        let _ = ino;
        None
    }

    /// Finds the next data or hole offset at or after `offset` (SEEK_DATA/SEEK_HOLE).
    /// An offset at or past EOF fails with [`VfsError::NoDataAtOffset`] (ENXIO) for both
    /// modes; EOF itself counts as a hole.
    fn lseek(
        &self,
        ctx: &Ctx,
        ino: Ino,
        fh: Option<Fh>,
        offset: u64,
        whence: Whence,
    ) -> VfsResult<u64> {
        let _ = (ctx, ino, fh, offset, whence);
        Err(VfsError::Unimplemented)
    }
}

/// Kernel registrations of host files for FUSE passthrough, made on the connection of one
/// mount (see [`Vfs::backing_id`]). The kernel holds a reference to each registered open
/// file until it is unregistered, so a file whose space must come back (a deleted file
/// holding data) is unregistered before its last descriptor is closed.
#[cfg(unix)]
pub trait BackingRegistry: Send + Sync {
    /// Registers the open file of `fd`; returns its id. Failing once (no privilege, or the
    /// connection is gone) means later calls fail too.
    fn register(&self, fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<u32>;
    /// Ends registration `id`. Opens the kernel made with it keep their file.
    fn unregister(&self, id: u32);
}
