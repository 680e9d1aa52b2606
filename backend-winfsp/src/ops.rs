//! The WinFsp operations over a [`Vfs`], in platform-neutral form: everything the
//! `FileSystemContext` shim does except touching WinFsp's own types. Tested on every
//! host against memfs.
//!
//! Decisions:
//! - **One caller identity.** WinFsp gives no uid, so every request runs with one
//!   [`Ctx`] (the `uid`/`gid` options): the mounting Windows user *is* that uid to the
//!   filesystem; new files get it as owner. Windows checks the synthesized descriptors
//!   (see `security.rs`) before a request gets here; the filesystem then checks its mode
//!   bits against this uid as well.
//! - **Data handles only for data access.** A file is opened on the filesystem (`open`
//!   with READ and/or WRITE) only when the granted access includes reading, executing,
//!   writing or appending data, and a directory (`opendir`) only for listing; opens for
//!   attributes, security or deletion use stateless calls by inode, so they never fail
//!   on mode bits Windows already judged.
//! - **Delete on close.** `set_delete` only records the request in the open table after
//!   checking it can succeed (not the root, volume writable, directory empty); the
//!   unlink/rmdir happens in `cleanup` when WinFsp passes `FspCleanupDelete`, under the
//!   name WinFsp reports then, and only if that name still refers to the handle's inode.
//!   Opening a file with a pending delete fails with DELETE_PENDING. WinFsp enforces the
//!   sharing rules (no delete while open without FILE_SHARE_DELETE).
//! - **Rename** replaces only when asked and never replaces a directory (Windows
//!   semantics); it is one atomic `Vfs::rename`, except that replacing a target whose
//!   on-disk name differs in case takes a second, case-only rename.
//! - **Listings** are produced whole on each (re)start of a directory enumeration into
//!   WinFsp's DirBuffer, which sorts them and resumes after the marker name; `.` and
//!   `..` are listed except in the root. Entries Windows cannot name are skipped.
//! - **New files** get mode 0o644 (0o444 with FILE_ATTRIBUTE_READONLY) and directories
//!   0o755; the security descriptor a program passes to create is not stored.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use vmount_core::{
    Attr, Ctx, Fh, FileType, Ino, OpenFlags, RenameFlags, SetAttr, SetTime, Vfs, VfsError,
};

use crate::attrs::{self, FileMeta, INVALID_FILE_ATTRIBUTES};
use crate::names::{WinPath, is_presentable};
use crate::resolve::{Resolved, Resolver};
use crate::security::{self, FILE_APPEND_DATA, FILE_EXECUTE, FILE_READ_DATA, FILE_WRITE_DATA};
use crate::status::*;
use crate::time::from_filetime;

/// `CreateOptions` bits.
pub(crate) const FILE_DIRECTORY_FILE: u32 = 0x0000_0001;
pub(crate) const FILE_NON_DIRECTORY_FILE: u32 = 0x0000_0040;
/// Mode of new files and directories.
const FILE_MODE: u32 = 0o644;
const DIR_MODE: u32 = 0o755;
/// Symlinks followed to decide whether a link points at a directory.
const MAX_LINK_HOPS: usize = 8;
/// Entries fetched per `readdir` call while producing a listing.
const LIST_BATCH: usize = 512;

/// Everything fixed at mount time.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) case_insensitive: bool,
    pub(crate) hide_dotfiles: bool,
    pub(crate) read_only: bool,
    /// Symlinks are exposed as reparse points (the filesystem has them).
    pub(crate) symlinks: bool,
    pub(crate) identity: security::Identity,
    /// Path cache time-to-live.
    pub(crate) cache_ttl: Duration,
}

/// The mutable part of an open handle.
#[derive(Debug)]
struct HandleState {
    ino: Ino,
    kind: FileType,
    /// On-disk path at open time, updated by renames through this handle.
    path: WinPath,
    /// Filesystem handle from `open`/`create`, for data access.
    fh: Option<Fh>,
    /// Filesystem handle from `opendir`, for listing.
    dir_fh: Option<Fh>,
}

/// One open file or directory (WinFsp's file context).
#[derive(Debug)]
pub(crate) struct Handle {
    state: Mutex<HandleState>,
}

impl Handle {
    fn new(ino: Ino, kind: FileType, path: WinPath) -> Handle {
        Handle {
            state: Mutex::new(HandleState {
                ino,
                kind,
                path,
                fh: None,
                dir_fh: None,
            }),
        }
    }

    /// The inode and filesystem handle for I/O.
    fn io(&self) -> (Ino, Option<Fh>) {
        let s = self.state.lock();
        (s.ino, s.fh)
    }

    pub(crate) fn is_dir(&self) -> bool {
        self.state.lock().kind == FileType::Directory
    }
}

/// Per-inode bookkeeping of open handles and pending deletes.
#[derive(Debug, Default)]
pub(crate) struct OpenTable {
    map: Mutex<HashMap<Ino, OpenEntry>>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct OpenEntry {
    opens: u32,
    delete_pending: bool,
}

impl OpenTable {
    /// Counts an open; refused while a delete is pending.
    fn open(&self, ino: Ino) -> WinResult<()> {
        let mut map = self.map.lock();
        let e = map.entry(ino).or_default();
        if e.delete_pending {
            return Err(STATUS_DELETE_PENDING.into());
        }
        e.opens = e.opens.saturating_add(1);
        Ok(())
    }

    /// Drops an open; the entry goes with the last one.
    fn close(&self, ino: Ino) {
        let mut map = self.map.lock();
        if let Some(e) = map.get_mut(&ino) {
            e.opens = e.opens.saturating_sub(1);
            if e.opens == 0 {
                map.remove(&ino);
            }
        }
    }

    fn set_delete(&self, ino: Ino, pending: bool) {
        if let Some(e) = self.map.lock().get_mut(&ino) {
            e.delete_pending = pending;
        }
    }

    /// The inode was deleted: a later inode can never reuse the number, but clear the
    /// flag so that the remaining handles close normally.
    fn deleted(&self, ino: Ino) {
        self.set_delete(ino, false);
    }

    /// (open count, delete pending) for tests.
    #[cfg(test)]
    fn get(&self, ino: Ino) -> Option<(u32, bool)> {
        self.map
            .lock()
            .get(&ino)
            .map(|e| (e.opens, e.delete_pending))
    }
}

/// The result of open/create: the handle, its information, and the case-correct path
/// to report (case-insensitive volumes only).
pub(crate) struct OpenResult {
    pub(crate) handle: Handle,
    pub(crate) meta: FileMeta,
    pub(crate) normalized: Option<String>,
}

/// The neutral operation layer. See the module docs.
pub(crate) struct Ops {
    fs: Arc<dyn Vfs>,
    ctx: Ctx,
    settings: Settings,
    resolver: Resolver,
    table: OpenTable,
}

fn vfs<T>(r: Result<T, VfsError>) -> WinResult<T> {
    r.map_err(WinError::from)
}

/// The filesystem open flags for a granted access mask (empty = no data access).
pub(crate) fn open_flags(granted: u32) -> OpenFlags {
    let mut f = OpenFlags::empty();
    if granted & (FILE_READ_DATA | FILE_EXECUTE) != 0 {
        f |= OpenFlags::READ;
    }
    if granted & (FILE_WRITE_DATA | FILE_APPEND_DATA) != 0 {
        f |= OpenFlags::WRITE;
    }
    f
}

impl Ops {
    pub(crate) fn new(fs: Arc<dyn Vfs>, ctx: Ctx, settings: Settings) -> Ops {
        // WinFsp resolves paths and never forgets a lookup.
        fs.attach(false);
        let resolver = Resolver::new(fs.clone(), settings.case_insensitive, settings.cache_ttl);
        Ops {
            fs,
            ctx,
            settings,
            resolver,
            table: OpenTable::default(),
        }
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    fn resolve_wide(&self, name: &[u16]) -> WinResult<(WinPath, Resolved)> {
        let path = WinPath::parse(name)?;
        let r = self.resolver.resolve(&self.ctx, &path)?;
        Ok((path, r))
    }

    /// File information for `attr` at on-disk path `disk`.
    fn meta(&self, attr: &Attr, disk: &WinPath) -> FileMeta {
        let name = disk.comps.last().map_or("", String::as_str);
        let link_dir = attr.kind == FileType::Symlink && self.link_is_dir(attr, disk);
        attrs::file_meta(attr, name, self.settings.hide_dotfiles, link_dir)
    }

    /// Whether symlink `attr` at `disk` leads to a directory inside this filesystem.
    fn link_is_dir(&self, attr: &Attr, disk: &WinPath) -> bool {
        let mut ino = attr.ino;
        let mut at = disk.clone();
        for _ in 0..MAX_LINK_HOPS {
            let Ok(target) = self.fs.readlink(&self.ctx, ino) else {
                return false;
            };
            let Ok(target) = String::from_utf8(target) else {
                return false;
            };
            let mut comps = if target.starts_with('/') {
                Vec::new()
            } else {
                at.split_last().map(|(p, _)| p.comps).unwrap_or_default()
            };
            for c in target.split('/').filter(|c| !c.is_empty() && *c != ".") {
                if c == ".." {
                    if comps.pop().is_none() {
                        return false;
                    }
                } else {
                    comps.push(c.to_owned());
                }
            }
            let Ok(path) = WinPath::parse_str(&comps.join("\\")) else {
                return false;
            };
            match self.resolver.resolve(&self.ctx, &path) {
                Ok(r) if r.attr.kind == FileType::Symlink => {
                    ino = r.attr.ino;
                    at = r.disk;
                }
                Ok(r) => return r.attr.kind == FileType::Directory,
                Err(_) => return false,
            }
        }
        false
    }

    /// Attributes and SDDL of a path (WinFsp's access check before open/create).
    pub(crate) fn security_by_name(&self, name: &[u16]) -> WinResult<(u32, String)> {
        let (_, r) = self.resolve_wide(name)?;
        let meta = self.meta(&r.attr, &r.disk);
        Ok((
            meta.attributes,
            security::sddl_for(&r.attr, &self.settings.identity),
        ))
    }

    /// The SDDL of an open file.
    pub(crate) fn security(&self, h: &Handle) -> WinResult<String> {
        let (ino, fh) = h.io();
        let attr = vfs(self.fs.getattr(&self.ctx, ino, fh))?;
        Ok(security::sddl_for(&attr, &self.settings.identity))
    }

    /// Applies a set-security request (already merged into the current descriptor and
    /// summarized) as chmod/chown.
    pub(crate) fn set_security(
        &self,
        h: &Handle,
        info: u32,
        sd: &security::SdSummary,
    ) -> WinResult<()> {
        let (ino, fh) = h.io();
        let attr = vfs(self.fs.getattr(&self.ctx, ino, fh))?;
        let set = security::setattr_for_security(&attr, info, sd, &self.settings.identity)?;
        if !set.is_empty() {
            vfs(self.fs.setattr(&self.ctx, ino, &set, fh))?;
        }
        Ok(())
    }

    /// Makes a handle for a resolved object, opening filesystem handles as the granted
    /// access needs (see the module docs).
    fn handle_for(&self, r: &Resolved, granted: u32, fh: Option<Fh>) -> WinResult<Handle> {
        let h = Handle::new(r.attr.ino, r.attr.kind, r.disk.clone());
        self.table.open(r.attr.ino).inspect_err(|_| {
            if let Some(fh) = fh {
                let _ = self.fs.release(&self.ctx, r.attr.ino, fh);
            }
        })?;
        let mut s = h.state.lock();
        s.fh = fh;
        let opened = match r.attr.kind {
            FileType::Directory if granted & FILE_READ_DATA != 0 => self
                .fs
                .opendir(&self.ctx, r.attr.ino, OpenFlags::READ)
                .map(|d| s.dir_fh = Some(d)),
            FileType::RegularFile if fh.is_none() && !open_flags(granted).is_empty() => self
                .fs
                .open(&self.ctx, r.attr.ino, open_flags(granted))
                .map(|o| s.fh = Some(o.fh)),
            _ => Ok(()),
        };
        drop(s);
        if let Err(e) = opened {
            self.table.close(r.attr.ino);
            return Err(e.into());
        }
        Ok(h)
    }

    fn normalized(&self, disk: &WinPath) -> Option<String> {
        self.settings.case_insensitive.then(|| disk.to_win_string())
    }

    /// Opens an existing file or directory.
    pub(crate) fn open(&self, name: &[u16], options: u32, granted: u32) -> WinResult<OpenResult> {
        let (_, r) = self.resolve_wide(name)?;
        match r.attr.kind {
            FileType::Directory if options & FILE_NON_DIRECTORY_FILE != 0 => {
                return Err(STATUS_FILE_IS_A_DIRECTORY.into());
            }
            FileType::RegularFile if options & FILE_DIRECTORY_FILE != 0 => {
                return Err(STATUS_NOT_A_DIRECTORY.into());
            }
            _ => {}
        }
        let handle = self.handle_for(&r, granted, None)?;
        Ok(OpenResult {
            handle,
            meta: self.meta(&r.attr, &r.disk),
            normalized: self.normalized(&r.disk),
        })
    }

    /// Creates a file, a directory (FILE_DIRECTORY_FILE) or, given reparse data, a
    /// symlink.
    pub(crate) fn create(
        &self,
        name: &[u16],
        options: u32,
        granted: u32,
        attributes: u32,
        reparse: Option<&[u8]>,
    ) -> WinResult<OpenResult> {
        let path = WinPath::parse(name)?;
        if path.is_root() {
            return Err(STATUS_OBJECT_NAME_COLLISION.into());
        }
        if self.settings.read_only {
            return Err(STATUS_MEDIA_WRITE_PROTECTED.into());
        }
        let (parent, nm) = self.resolver.resolve_parent(&self.ctx, &path)?;
        if self.settings.case_insensitive
            && self
                .resolver
                .lookup_name(&self.ctx, parent.attr.ino, nm)
                .is_ok()
        {
            return Err(STATUS_OBJECT_NAME_COLLISION.into());
        }
        let ro = attributes != INVALID_FILE_ATTRIBUTES
            && attributes & attrs::FILE_ATTRIBUTE_READONLY != 0;
        let os = OsStr::new(nm);
        let (attr, fh) = if let Some(data) = reparse {
            if !self.settings.symlinks {
                return Err(STATUS_NOT_SUPPORTED.into());
            }
            let target = attrs::target_from_reparse_data(data)?;
            let a = vfs(self
                .fs
                .symlink(&self.ctx, parent.attr.ino, os, OsStr::new(&target)))?;
            (a, None)
        } else if options & FILE_DIRECTORY_FILE != 0 {
            (
                vfs(self.fs.mkdir(&self.ctx, parent.attr.ino, os, DIR_MODE))?,
                None,
            )
        } else {
            let mode = if ro { FILE_MODE & !0o222 } else { FILE_MODE };
            let flags = open_flags(granted).union(OpenFlags::EXCLUSIVE);
            let (a, o) = vfs(self.fs.create(&self.ctx, parent.attr.ino, os, mode, flags))?;
            (a, Some(o.fh))
        };
        self.fs.forget(attr.ino, 1);
        let disk = parent.disk.join(nm);
        self.resolver.invalidate(&path);
        let r = Resolved { attr, disk };
        let handle = self.handle_for(&r, granted, fh)?;
        Ok(OpenResult {
            handle,
            meta: self.meta(&r.attr, &r.disk),
            normalized: self.normalized(&r.disk),
        })
    }

    /// Truncates an open file for CREATE_ALWAYS/TRUNCATE_EXISTING and applies the
    /// requested attributes (replacing or adding to the current ones).
    pub(crate) fn overwrite(
        &self,
        h: &Handle,
        attributes: u32,
        replace: bool,
    ) -> WinResult<FileMeta> {
        let (ino, fh) = h.io();
        let attr = vfs(self.fs.getattr(&self.ctx, ino, fh))?;
        let path = h.state.lock().path.clone();
        let current = self.meta(&attr, &path).attributes;
        let wanted = if replace || attributes == INVALID_FILE_ATTRIBUTES {
            attributes
        } else {
            attributes | current
        };
        let set = SetAttr {
            size: Some(0),
            mode: attrs::perm_for_attributes(&attr, wanted).map(u32::from),
            ..SetAttr::default()
        };
        let attr = vfs(self.fs.setattr(&self.ctx, ino, &set, fh))?;
        Ok(self.meta(&attr, &path))
    }

    /// The information of an open file.
    pub(crate) fn file_info(&self, h: &Handle) -> WinResult<FileMeta> {
        let (ino, fh) = h.io();
        let attr = vfs(self.fs.getattr(&self.ctx, ino, fh))?;
        let path = h.state.lock().path.clone();
        Ok(self.meta(&attr, &path))
    }

    /// Reads at `offset`; END_OF_FILE when nothing is left.
    pub(crate) fn read(&self, h: &Handle, buf: &mut [u8], offset: u64) -> WinResult<u32> {
        let (ino, fh) = h.io();
        let n = vfs(self.fs.read(&self.ctx, ino, fh, offset, buf))?;
        if n == 0 && !buf.is_empty() {
            return Err(STATUS_END_OF_FILE.into());
        }
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// Writes at `offset`, or at the end of file; constrained I/O never extends the file.
    pub(crate) fn write(
        &self,
        h: &Handle,
        data: &[u8],
        offset: u64,
        to_eof: bool,
        constrained: bool,
    ) -> WinResult<(u32, FileMeta)> {
        let (ino, fh) = h.io();
        let mut data = data;
        let mut offset = offset;
        if to_eof || constrained {
            let size = vfs(self.fs.getattr(&self.ctx, ino, fh))?.size;
            if to_eof {
                offset = size;
            }
            if constrained {
                let room = size.saturating_sub(offset);
                let keep = usize::try_from(room).unwrap_or(usize::MAX).min(data.len());
                data = &data[..keep];
            }
        }
        offset
            .checked_add(data.len() as u64)
            .ok_or(STATUS_INVALID_PARAMETER)?;
        let n = if data.is_empty() {
            0
        } else {
            vfs(self.fs.write(&self.ctx, ino, fh, offset, data))?
        };
        Ok((n, self.file_info(h)?))
    }

    /// FlushFileBuffers on a file (fsync) or the volume (nothing to do: the filesystem
    /// has no volume-wide cache this adapter could push).
    pub(crate) fn flush(&self, h: Option<&Handle>) -> WinResult<Option<FileMeta>> {
        let Some(h) = h else {
            return Ok(None);
        };
        let (ino, fh) = h.io();
        if h.is_dir() {
            vfs(self.fs.fsyncdir(&self.ctx, ino, None, false))?;
        } else {
            vfs(self.fs.fsync(&self.ctx, ino, fh, false))?;
        }
        Ok(Some(self.file_info(h)?))
    }

    /// SetFileInformation(FileBasicInfo): READONLY maps to the write bits, times of 0
    /// stay unchanged, the creation time cannot be set (the trait has no slot for it).
    pub(crate) fn set_basic_info(
        &self,
        h: &Handle,
        attributes: u32,
        atime: u64,
        mtime: u64,
        ctime: u64,
    ) -> WinResult<FileMeta> {
        let (ino, fh) = h.io();
        let attr = vfs(self.fs.getattr(&self.ctx, ino, fh))?;
        let at = |t: u64| (t != 0).then(|| SetTime::At(from_filetime(t)));
        let set = SetAttr {
            mode: attrs::perm_for_attributes(&attr, attributes).map(u32::from),
            atime: at(atime),
            mtime: at(mtime),
            ctime: (ctime != 0).then(|| from_filetime(ctime)),
            ..SetAttr::default()
        };
        if !set.is_empty() {
            vfs(self.fs.setattr(&self.ctx, ino, &set, fh))?;
        }
        self.file_info(h)
    }

    /// SetEndOfFile, or an allocation size, which only ever shrinks the file (the trait
    /// has no preallocation that keeps the size; allocation is reported from the size).
    pub(crate) fn set_file_size(
        &self,
        h: &Handle,
        size: u64,
        allocation: bool,
    ) -> WinResult<FileMeta> {
        let (ino, fh) = h.io();
        if allocation {
            let cur = vfs(self.fs.getattr(&self.ctx, ino, fh))?.size;
            if size >= cur {
                return self.file_info(h);
            }
        }
        let set = SetAttr {
            size: Some(size),
            ..SetAttr::default()
        };
        vfs(self.fs.setattr(&self.ctx, ino, &set, fh))?;
        self.file_info(h)
    }

    /// Checks that the file could be deleted and records (or withdraws) the request.
    pub(crate) fn set_delete(&self, h: &Handle, name: &[u16], delete: bool) -> WinResult<()> {
        let ino = h.state.lock().ino;
        if delete {
            self.can_delete(h, name)?;
        }
        self.table.set_delete(ino, delete);
        Ok(())
    }

    /// Whether deleting the file at `name` can succeed now.
    fn can_delete(&self, h: &Handle, name: &[u16]) -> WinResult<()> {
        let path = WinPath::parse(name)?;
        if path.is_root() {
            return Err(STATUS_CANNOT_DELETE.into());
        }
        if self.settings.read_only {
            return Err(STATUS_MEDIA_WRITE_PROTECTED.into());
        }
        let (ino, kind) = {
            let s = h.state.lock();
            (s.ino, s.kind)
        };
        if kind == FileType::Directory {
            let mut probe = vmount_core::VecSink {
                limit: Some(1),
                ..Default::default()
            };
            vfs(self.fs.readdir(&self.ctx, ino, None, 0, &mut probe))?;
            if !probe.entries.is_empty() {
                return Err(STATUS_DIRECTORY_NOT_EMPTY.into());
            }
        }
        Ok(())
    }

    /// Cleanup of one handle: flush (close(2) semantics) and, when WinFsp says so,
    /// delete the file under its current name.
    pub(crate) fn cleanup(&self, h: &Handle, name: Option<&[u16]>, delete: bool) {
        let (ino, kind, fh, stored) = {
            let s = h.state.lock();
            (s.ino, s.kind, s.fh, s.path.clone())
        };
        if let Some(fh) = fh
            && let Err(e) = self.fs.flush(&self.ctx, ino, fh, 0)
        {
            tracing::debug!("flush of inode {} at cleanup failed: {e}", ino.0);
        }
        if !delete {
            return;
        }
        let path = name.and_then(|n| WinPath::parse(n).ok()).unwrap_or(stored);
        if let Err(e) = self.delete_now(ino, kind, &path) {
            tracing::warn!("deleting {} at cleanup failed: {e:?}", path.to_win_string());
        }
        self.table.deleted(ino);
    }

    fn delete_now(&self, ino: Ino, kind: FileType, path: &WinPath) -> WinResult<()> {
        let (parent, nm) = self.resolver.resolve_parent(&self.ctx, path)?;
        let (found, disk) = vfs(self.resolver.lookup_name(&self.ctx, parent.attr.ino, nm))?;
        if found.ino != ino {
            // The name was taken over by another file meanwhile; ours is gone already.
            return Ok(());
        }
        let os = OsStr::new(&disk);
        let r = if kind == FileType::Directory {
            self.fs.rmdir(&self.ctx, parent.attr.ino, os)
        } else {
            self.fs.unlink(&self.ctx, parent.attr.ino, os)
        };
        self.resolver.invalidate(path);
        self.resolver.invalidate(&parent.disk.join(&disk));
        vfs(r)
    }

    /// Releases what the handle holds.
    pub(crate) fn close(&self, h: Handle) {
        let s = h.state.into_inner();
        if let Some(fh) = s.fh
            && let Err(e) = self.fs.release(&self.ctx, s.ino, fh)
        {
            tracing::debug!("release of inode {} failed: {e}", s.ino.0);
        }
        if let Some(fh) = s.dir_fh
            && let Err(e) = self.fs.releasedir(&self.ctx, s.ino, fh)
        {
            tracing::debug!("releasedir of inode {} failed: {e}", s.ino.0);
        }
        self.table.close(s.ino);
    }

    /// Renames the open file `from` to `to`. See the module docs.
    pub(crate) fn rename(
        &self,
        h: &Handle,
        from: &[u16],
        to: &[u16],
        replace: bool,
    ) -> WinResult<()> {
        if self.settings.read_only {
            return Err(STATUS_MEDIA_WRITE_PROTECTED.into());
        }
        let src = WinPath::parse(from)?;
        let dst = WinPath::parse(to)?;
        if src.is_root() || dst.is_root() {
            return Err(STATUS_ACCESS_DENIED.into());
        }
        let (sparent, sname) = self.resolver.resolve_parent(&self.ctx, &src)?;
        let (dparent, dname) = self.resolver.resolve_parent(&self.ctx, &dst)?;
        let (sattr, sdisk) = vfs(self
            .resolver
            .lookup_name(&self.ctx, sparent.attr.ino, sname))?;
        let (sp, dp) = (sparent.attr.ino, dparent.attr.ino);
        let (s_os, d_os) = (OsStr::new(&sdisk), OsStr::new(dname));
        match self.resolver.lookup_name(&self.ctx, dp, dname) {
            Ok((t, _)) if t.ino == sattr.ino => {
                if sdisk != dname {
                    vfs(self
                        .fs
                        .rename(&self.ctx, sp, s_os, dp, d_os, RenameFlags::empty()))?;
                }
            }
            Ok((t, tdisk)) => {
                if !replace {
                    return Err(STATUS_OBJECT_NAME_COLLISION.into());
                }
                if t.kind == FileType::Directory {
                    return Err(STATUS_ACCESS_DENIED.into());
                }
                let t_os = OsStr::new(&tdisk);
                vfs(self
                    .fs
                    .rename(&self.ctx, sp, s_os, dp, t_os, RenameFlags::empty()))?;
                if tdisk != dname {
                    vfs(self
                        .fs
                        .rename(&self.ctx, dp, t_os, dp, d_os, RenameFlags::NOREPLACE))?;
                }
            }
            Err(VfsError::NotFound) => {
                vfs(self
                    .fs
                    .rename(&self.ctx, sp, s_os, dp, d_os, RenameFlags::NOREPLACE))?;
            }
            Err(e) => return Err(e.into()),
        }
        self.resolver.invalidate(&src);
        self.resolver.invalidate(&dst);
        self.resolver.invalidate(&sparent.disk.join(&sdisk));
        let mut s = h.state.lock();
        if s.ino == sattr.ino {
            s.path = dparent.disk.join(dname);
        }
        Ok(())
    }

    /// Produces the whole listing of an open directory: `.` and `..` (not in the root),
    /// then every entry with a Windows-presentable name. `emit` returns false to stop.
    pub(crate) fn list_dir(
        &self,
        h: &Handle,
        emit: &mut dyn FnMut(&str, &FileMeta) -> bool,
    ) -> WinResult<()> {
        let (ino, kind, dir_fh, path) = {
            let s = h.state.lock();
            (s.ino, s.kind, s.dir_fh, s.path.clone())
        };
        if kind != FileType::Directory {
            return Err(STATUS_NOT_A_DIRECTORY.into());
        }
        if let Some((parent, _)) = path.split_last() {
            let me = vfs(self.fs.getattr(&self.ctx, ino, None))?;
            if !emit(".", &self.meta(&me, &path)) {
                return Ok(());
            }
            let up = self
                .resolver
                .resolve(&self.ctx, &parent)
                .map(|r| r.attr)
                .unwrap_or(me);
            if !emit("..", &self.meta(&up, &parent)) {
                return Ok(());
            }
        }
        let mut after = 0;
        loop {
            let mut batch = vmount_core::VecSink {
                limit: Some(LIST_BATCH),
                plus: true,
                ..Default::default()
            };
            vfs(self.fs.readdir(&self.ctx, ino, dir_fh, after, &mut batch))?;
            let full = batch.entries.len() >= LIST_BATCH;
            for e in &batch.entries {
                // Each accepted entry with attributes counted a lookup reference.
                self.fs.forget(e.ino, 1);
            }
            for e in &batch.entries {
                after = e.cookie;
                let Some(name) = e.name.to_str().filter(|n| is_presentable(n)) else {
                    continue;
                };
                let attr = match e.attr {
                    Some(a) => a,
                    None => match self.fs.getattr(&self.ctx, e.ino, None) {
                        Ok(a) => a,
                        Err(_) => continue,
                    },
                };
                if !emit(name, &self.meta(&attr, &path.join(name))) {
                    return Ok(());
                }
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// Total and free bytes.
    pub(crate) fn volume(&self) -> WinResult<(u64, u64)> {
        let s = vfs(self.fs.statfs(&self.ctx, Ino::ROOT))?;
        let unit = u64::from(s.frsize.max(1));
        Ok((s.blocks.saturating_mul(unit), s.bavail.saturating_mul(unit)))
    }

    /// The symlink reparse data of the file at `name`.
    pub(crate) fn reparse_by_name(&self, name: &[u16]) -> WinResult<Vec<u8>> {
        let (_, r) = self.resolve_wide(name)?;
        self.reparse_of(r.attr.ino, r.attr.kind)
    }

    /// The symlink reparse data of an open file.
    pub(crate) fn reparse(&self, h: &Handle) -> WinResult<Vec<u8>> {
        let (ino, kind) = {
            let s = h.state.lock();
            (s.ino, s.kind)
        };
        self.reparse_of(ino, kind)
    }

    fn reparse_of(&self, ino: Ino, kind: FileType) -> WinResult<Vec<u8>> {
        if kind != FileType::Symlink || !self.settings.symlinks {
            return Err(STATUS_NOT_A_REPARSE_POINT.into());
        }
        let target = vfs(self.fs.readlink(&self.ctx, ino))?;
        let target = String::from_utf8(target).map_err(|_| STATUS_IO_REPARSE_DATA_INVALID)?;
        Ok(attrs::symlink_reparse_data(&target))
    }

    /// FSCTL_SET_REPARSE_POINT (how CreateSymbolicLink finishes): the empty file or
    /// directory just created under `name` is replaced by a symlink, and the handle
    /// now refers to the link.
    pub(crate) fn set_reparse(&self, h: &Handle, name: &[u16], data: &[u8]) -> WinResult<()> {
        if !self.settings.symlinks {
            return Err(STATUS_NOT_SUPPORTED.into());
        }
        if self.settings.read_only {
            return Err(STATUS_MEDIA_WRITE_PROTECTED.into());
        }
        let target = attrs::target_from_reparse_data(data)?;
        let path = WinPath::parse(name)?;
        let (parent, nm) = self.resolver.resolve_parent(&self.ctx, &path)?;
        let (ino, kind, fh, dir_fh) = {
            let s = h.state.lock();
            (s.ino, s.kind, s.fh, s.dir_fh)
        };
        let (found, disk) = vfs(self.resolver.lookup_name(&self.ctx, parent.attr.ino, nm))?;
        if found.ino != ino {
            return Err(STATUS_INVALID_HANDLE.into());
        }
        let os = OsStr::new(&disk);
        match kind {
            FileType::RegularFile if found.size == 0 => {
                vfs(self.fs.unlink(&self.ctx, parent.attr.ino, os))?;
            }
            FileType::Directory => vfs(self.fs.rmdir(&self.ctx, parent.attr.ino, os))?,
            // Replacing a file with data (or a link) would lose it: Windows only sets
            // reparse points on fresh objects in practice.
            _ => return Err(STATUS_ACCESS_DENIED.into()),
        }
        self.resolver.invalidate(&path);
        let link = vfs(self
            .fs
            .symlink(&self.ctx, parent.attr.ino, os, OsStr::new(&target)))?;
        self.fs.forget(link.ino, 1);
        if let Some(fh) = fh {
            let _ = self.fs.release(&self.ctx, ino, fh);
        }
        if let Some(fh) = dir_fh {
            let _ = self.fs.releasedir(&self.ctx, ino, fh);
        }
        self.table.close(ino);
        self.table.open(link.ino)?;
        let mut s = h.state.lock();
        s.ino = link.ino;
        s.kind = FileType::Symlink;
        s.fh = None;
        s.dir_fh = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
