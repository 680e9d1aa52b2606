//! Windows paths to inodes: a walk over [`Vfs::lookup`] from the root, with a cache and
//! optional case-insensitive matching.
//!
//! Decisions:
//! - **Cache.** Keyed by the path exactly as requested; each entry remembers the inode
//!   and the on-disk spelling of every component. Renames and deletes through this mount
//!   drop the entries at and below the changed path (compared case-folded in
//!   case-insensitive mode, so every spelling goes). Changes made behind the mount's back
//!   (the loopback's host directory) are caught by a time-to-live (the file-info
//!   timeout, at least one second) and by re-walking when a cached inode no longer
//!   answers `getattr`. At [`CACHE_MAX`] entries the cache is emptied.
//! - **Lookup counts.** Each `lookup` reference is dropped again right away with
//!   `forget`: the trait requires filesystems to keep serving inodes that still have
//!   links or open handles, and open files here hold handles.
//! - **Case-insensitive lookup** tries the exact name first, then scans the directory
//!   for a name that is equal after case folding (the first in listing order wins), so
//!   names that differ only in case (made through FUSE or NFS) stay reachable by their
//!   exact spelling.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use vmount_core::{Attr, Ctx, DirEntry, DirSink, Ino, Vfs, VfsError};

use crate::names::{WinPath, fold};
use crate::status::{STATUS_OBJECT_PATH_NOT_FOUND, WinError, WinResult};

/// Most cached paths before the cache is emptied.
pub(crate) const CACHE_MAX: usize = 4096;

/// A path resolved to attributes, with its on-disk spelling.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub(crate) attr: Attr,
    pub(crate) disk: WinPath,
}

struct Entry {
    ino: Ino,
    disk: WinPath,
    /// The key, folded when matching is case-insensitive (for invalidation).
    cmp_key: String,
    at: Instant,
}

/// See the module docs.
pub(crate) struct Resolver {
    fs: Arc<dyn Vfs>,
    case_insensitive: bool,
    ttl: Duration,
    cache: Mutex<HashMap<String, Entry>>,
}

impl Resolver {
    pub(crate) fn new(fs: Arc<dyn Vfs>, case_insensitive: bool, ttl: Duration) -> Resolver {
        Resolver {
            fs,
            case_insensitive,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn cmp_key(&self, path: &WinPath) -> String {
        if self.case_insensitive {
            path.folded()
        } else {
            path.to_win_string()
        }
    }

    /// Resolves `path`; a missing or non-directory intermediate component gives
    /// OBJECT_PATH_NOT_FOUND, a missing last one OBJECT_NAME_NOT_FOUND.
    pub(crate) fn resolve(&self, ctx: &Ctx, path: &WinPath) -> WinResult<Resolved> {
        // Longest cached prefix whose inode still answers.
        let mut start = Resolved {
            attr: self.fs.getattr(ctx, Ino::ROOT, None)?,
            disk: WinPath::root(),
        };
        let mut done = 0;
        for len in (1..=path.comps.len()).rev() {
            let prefix = WinPath {
                comps: path.comps[..len].to_vec(),
            };
            let Some((ino, disk)) = self.cached(&prefix) else {
                continue;
            };
            match self.fs.getattr(ctx, ino, None) {
                Ok(attr) => {
                    start = Resolved { attr, disk };
                    done = len;
                    break;
                }
                Err(_) => self.invalidate(&prefix),
            }
        }
        let mut cur = start;
        for (i, name) in path.comps.iter().enumerate().skip(done) {
            let last = i + 1 == path.comps.len();
            let (attr, disk_name) = match self.lookup_name(ctx, cur.attr.ino, name) {
                Ok(found) => found,
                // A file used as a directory is a missing path, as on NTFS.
                Err(VfsError::NotDir) => return Err(STATUS_OBJECT_PATH_NOT_FOUND.into()),
                Err(VfsError::NotFound) if !last => {
                    return Err(STATUS_OBJECT_PATH_NOT_FOUND.into());
                }
                Err(e) => return Err(e.into()),
            };
            cur.disk.comps.push(disk_name);
            cur.attr = attr;
            self.remember(
                &WinPath {
                    comps: path.comps[..=i].to_vec(),
                },
                &cur,
            );
        }
        Ok(cur)
    }

    /// Resolves the parent of `path` (which must not be the root) and checks that it is
    /// a directory; returns it with the last requested name.
    pub(crate) fn resolve_parent<'p>(
        &self,
        ctx: &Ctx,
        path: &'p WinPath,
    ) -> WinResult<(Resolved, &'p str)> {
        let (parent, name) = path
            .split_last()
            .ok_or(WinError::Status(crate::status::STATUS_ACCESS_DENIED))?;
        let parent = match self.resolve(ctx, &parent) {
            Err(WinError::Status(crate::status::STATUS_OBJECT_NAME_NOT_FOUND)) => {
                return Err(STATUS_OBJECT_PATH_NOT_FOUND.into());
            }
            r => r?,
        };
        if parent.attr.kind != vmount_core::FileType::Directory {
            return Err(STATUS_OBJECT_PATH_NOT_FOUND.into());
        }
        Ok((parent, name))
    }

    /// Looks `name` up in `dir`: exactly, then (case-insensitive mode) by scanning.
    /// Returns the attributes and the on-disk name.
    pub(crate) fn lookup_name(
        &self,
        ctx: &Ctx,
        dir: Ino,
        name: &str,
    ) -> Result<(Attr, String), VfsError> {
        match self.lookup_counted(ctx, dir, name) {
            Err(VfsError::NotFound) if self.case_insensitive => {
                let found = self.scan(ctx, dir, name)?.ok_or(VfsError::NotFound)?;
                let attr = self.lookup_counted(ctx, dir, &found)?;
                Ok((attr, found))
            }
            r => r.map(|a| (a, name.to_owned())),
        }
    }

    /// `lookup` with its reference dropped again (see the module docs).
    fn lookup_counted(&self, ctx: &Ctx, dir: Ino, name: &str) -> Result<Attr, VfsError> {
        let attr = self.fs.lookup(ctx, dir, OsStr::new(name))?;
        self.fs.forget(attr.ino, 1);
        Ok(attr)
    }

    /// The first entry of `dir` equal to `name` after case folding.
    fn scan(&self, ctx: &Ctx, dir: Ino, name: &str) -> Result<Option<String>, VfsError> {
        struct Find {
            want: String,
            found: Option<String>,
        }
        impl DirSink for Find {
            fn wants_attr(&self) -> bool {
                false
            }
            fn add(&mut self, e: &DirEntry<'_>) -> bool {
                if let Some(n) = e.name.to_str()
                    && fold(n) == self.want
                {
                    self.found = Some(n.to_owned());
                    return true;
                }
                false
            }
        }
        let mut sink = Find {
            want: fold(name),
            found: None,
        };
        self.fs.readdir(ctx, dir, None, 0, &mut sink)?;
        Ok(sink.found)
    }

    fn cached(&self, path: &WinPath) -> Option<(Ino, WinPath)> {
        let cache = self.cache.lock();
        let e = cache.get(&path.to_win_string())?;
        (e.at.elapsed() < self.ttl).then(|| (e.ino, e.disk.clone()))
    }

    fn remember(&self, path: &WinPath, r: &Resolved) {
        let mut cache = self.cache.lock();
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(
            path.to_win_string(),
            Entry {
                ino: r.attr.ino,
                disk: r.disk.clone(),
                cmp_key: self.cmp_key(path),
                at: Instant::now(),
            },
        );
    }

    /// Forgets `path` and everything below it, in every spelling.
    pub(crate) fn invalidate(&self, path: &WinPath) {
        let key = self.cmp_key(path);
        let below = if path.is_root() {
            "\\".to_owned()
        } else {
            format!("{key}\\")
        };
        self.cache
            .lock()
            .retain(|_, e| e.cmp_key != key && !e.cmp_key.starts_with(&below));
    }

    /// Number of cached paths (tests).
    #[cfg(test)]
    pub(crate) fn cached_len(&self) -> usize {
        self.cache.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use vmount_core::memfs::{MemFs, MemFsOptions};
    use vmount_core::{FileType, OpenFlags};

    use super::*;
    use crate::names::wide;
    use crate::status::STATUS_OBJECT_NAME_NOT_FOUND;

    fn setup() -> (Arc<dyn Vfs>, Ctx) {
        let fs: Arc<dyn Vfs> = Arc::new(MemFs::new(MemFsOptions::default()));
        let ctx = Ctx::root();
        let d = fs
            .mkdir(&ctx, Ino::ROOT, OsStr::new("Docs"), 0o755)
            .unwrap();
        let (f, o) = fs
            .create(
                &ctx,
                d.ino,
                OsStr::new("Report.TXT"),
                0o644,
                OpenFlags::WRITE,
            )
            .unwrap();
        fs.release(&ctx, f.ino, o.fh).unwrap();
        (fs, ctx)
    }

    fn p(s: &str) -> WinPath {
        WinPath::parse(&wide(s)).unwrap()
    }

    #[test]
    fn exact_and_case_insensitive_resolution() {
        let (fs, ctx) = setup();
        let ci = Resolver::new(fs.clone(), true, Duration::from_secs(5));
        let r = ci.resolve(&ctx, &p("\\docs\\report.txt")).unwrap();
        assert_eq!(r.disk.to_win_string(), "\\Docs\\Report.TXT");
        assert_eq!(r.attr.kind, FileType::RegularFile);
        let cs = Resolver::new(fs.clone(), false, Duration::from_secs(5));
        assert_eq!(
            cs.resolve(&ctx, &p("\\docs\\report.txt")).unwrap_err(),
            WinError::Status(STATUS_OBJECT_PATH_NOT_FOUND)
        );
        assert_eq!(
            cs.resolve(&ctx, &p("\\Docs\\report.txt")).unwrap_err(),
            WinError::Status(STATUS_OBJECT_NAME_NOT_FOUND)
        );
        assert!(cs.resolve(&ctx, &p("\\Docs\\Report.TXT")).is_ok());
        // A file used as a directory is a missing path.
        assert_eq!(
            cs.resolve(&ctx, &p("\\Docs\\Report.TXT\\x")).unwrap_err(),
            WinError::Status(STATUS_OBJECT_PATH_NOT_FOUND)
        );
        assert_eq!(
            cs.resolve(&ctx, &WinPath::root()).unwrap().attr.ino,
            Ino::ROOT
        );
    }

    #[test]
    fn exact_spelling_wins_over_a_case_variant() {
        let (fs, ctx) = setup();
        let d = fs.lookup(&ctx, Ino::ROOT, OsStr::new("Docs")).unwrap();
        let (lower, _) = fs
            .create(
                &ctx,
                d.ino,
                OsStr::new("report.txt"),
                0o644,
                OpenFlags::WRITE,
            )
            .unwrap();
        let ci = Resolver::new(fs.clone(), true, Duration::from_secs(5));
        assert_eq!(
            ci.resolve(&ctx, &p("\\DOCS\\report.txt")).unwrap().attr.ino,
            lower.ino
        );
        let upper = ci.resolve(&ctx, &p("\\DOCS\\Report.TXT")).unwrap();
        assert_ne!(upper.attr.ino, lower.ino);
    }

    #[test]
    fn cache_is_used_and_invalidated() {
        let (fs, ctx) = setup();
        let ci = Resolver::new(fs.clone(), true, Duration::from_secs(60));
        let before = ci.resolve(&ctx, &p("\\DOCS\\REPORT.TXT")).unwrap();
        assert_eq!(ci.cached_len(), 2);
        // Rename behind the resolver's back: the cached entry still answers (by inode).
        let d = fs.lookup(&ctx, Ino::ROOT, OsStr::new("Docs")).unwrap();
        fs.rename(
            &ctx,
            d.ino,
            OsStr::new("Report.TXT"),
            d.ino,
            OsStr::new("Other"),
            vmount_core::RenameFlags::empty(),
        )
        .unwrap();
        assert_eq!(
            ci.resolve(&ctx, &p("\\DOCS\\REPORT.TXT")).unwrap().attr.ino,
            before.attr.ino
        );
        // Invalidating the directory (any spelling) drops it and what is below.
        ci.invalidate(&p("\\docs"));
        assert_eq!(ci.cached_len(), 0);
        assert_eq!(
            ci.resolve(&ctx, &p("\\DOCS\\REPORT.TXT")).unwrap_err(),
            WinError::Status(STATUS_OBJECT_NAME_NOT_FOUND)
        );
        // A deleted inode is noticed without invalidation: the walk is redone.
        let _ = ci.resolve(&ctx, &p("\\Docs\\Other")).unwrap();
        fs.unlink(&ctx, d.ino, OsStr::new("Other")).unwrap();
        assert!(ci.resolve(&ctx, &p("\\Docs\\Other")).is_err());
        // Entries expire.
        let short = Resolver::new(fs.clone(), false, Duration::ZERO);
        short.resolve(&ctx, &p("\\Docs")).unwrap();
        assert!(short.cached(&p("\\Docs")).is_none());
    }

    #[test]
    fn invalidation_spares_siblings_with_a_common_prefix() {
        let (fs, ctx) = setup();
        fs.mkdir(&ctx, Ino::ROOT, OsStr::new("DocsOld"), 0o755)
            .unwrap();
        let cs = Resolver::new(fs, false, Duration::from_secs(60));
        cs.resolve(&ctx, &p("\\Docs\\Report.TXT")).unwrap();
        cs.resolve(&ctx, &p("\\DocsOld")).unwrap();
        assert_eq!(cs.cached_len(), 3);
        cs.invalidate(&p("\\Docs"));
        assert_eq!(cs.cached_len(), 1);
        cs.invalidate(&WinPath::root());
        assert_eq!(cs.cached_len(), 0);
    }
}
