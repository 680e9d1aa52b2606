//! Changes made to the source by other processes (Linux, root): fanotify.
//!
//! Why: a kernel that caches loopback's names and attributes for a second still serves
//! stale ones for up to a second, and one that caches them for an hour is fast (a `stat`
//! of a known file never reaches the daemon) but would serve them for an hour. Told of
//! every change made behind its back, the backend can drop exactly what went stale and
//! cache the rest for as long as it likes.
//!
//! How: one fanotify group reporting directory file handles and names
//! (`FAN_REPORT_DFID_NAME`), with an inode mark on every directory the kernel has looked
//! into (the source root, then each directory as it is registered; removed when its entry
//! is dropped). Marks cover only those directories, so nothing else on the host
//! filesystem pays for events, and each mark is removed when the entry is. Events caused
//! by this process (every change made through the mount: the daemon does them) are
//! skipped by pid; the rest are resolved through loopback's own table (file handle ->
//! `(st_dev, st_ino)` -> inode number) and passed to the sink. Objects the table does not
//! know were never handed out, so there is nothing to drop for them.
//!
//! Needs CAP_SYS_ADMIN for `fanotify_init` with these flags on some kernels and
//! CAP_DAC_READ_SEARCH for `open_by_handle_at`, i.e. a root daemon; without them
//! `watch_changes` says no and the backend keeps its short caches.

use std::ffi::{CStr, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::RwLock;

use super::{EntryFds, Table, sys};
use crate::{ChangeSink, FileType, Ino};

/// What a directory mark reports: names created, removed or moved in it, and changes to
/// it or to its children's attributes and contents.
const MASK: u64 = libc::FAN_CREATE
    | libc::FAN_DELETE
    | libc::FAN_MOVED_FROM
    | libc::FAN_MOVED_TO
    | libc::FAN_ATTRIB
    | libc::FAN_MODIFY
    | libc::FAN_ONDIR
    | libc::FAN_EVENT_ON_CHILD;

/// Events that change a directory's entries (and so its size, times, link count).
const DIRENT: u64 = libc::FAN_CREATE | libc::FAN_DELETE | libc::FAN_MOVED_FROM | libc::FAN_MOVED_TO;

/// The fanotify group, and the eventfd that tells its reader the filesystem is gone
/// (so that the reader sleeps until something happens instead of looking every second).
#[derive(Debug)]
pub(super) struct Watcher {
    fan: OwnedFd,
    gone: OwnedFd,
}

impl Watcher {
    pub(super) fn new() -> io::Result<Watcher> {
        // SAFETY: plain flags; the result is checked.
        let fd = unsafe {
            libc::fanotify_init(
                // Unlimited queue and marks (root): a lost event would be a stale cache.
                libc::FAN_CLASS_NOTIF
                    | libc::FAN_CLOEXEC
                    | libc::FAN_NONBLOCK
                    | libc::FAN_UNLIMITED_QUEUE
                    | libc::FAN_UNLIMITED_MARKS
                    | libc::FAN_REPORT_DFID_NAME,
                (libc::O_RDONLY | libc::O_CLOEXEC) as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor we just got and own.
        let fan = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: plain flags; the result is checked.
        let gone = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if gone < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Watcher {
            fan,
            // SAFETY: a descriptor we just got and own.
            gone: unsafe { OwnedFd::from_raw_fd(gone) },
        })
    }

    /// Tells the reader ([`Watcher::run`]) to end: the filesystem is being dropped.
    pub(super) fn finish(&self) {
        let one: u64 = 1;
        // SAFETY: eight readable bytes, as an eventfd write takes.
        let _ = unsafe { libc::write(self.gone.as_raw_fd(), (&raw const one).cast(), 8) };
    }

    fn mark_op(&self, op: libc::c_uint, dir: BorrowedFd<'_>) -> io::Result<()> {
        // SAFETY: valid descriptors and a NUL-terminated path (the directory itself:
        // `dir` may be an O_PATH descriptor, which fanotify takes as a dirfd only).
        let r = unsafe {
            libc::fanotify_mark(
                self.fan.as_raw_fd(),
                op | libc::FAN_MARK_ONLYDIR,
                MASK,
                dir.as_raw_fd(),
                c".".as_ptr(),
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Starts reporting changes in directory `dir`.
    pub(super) fn mark(&self, dir: BorrowedFd<'_>) -> io::Result<()> {
        self.mark_op(libc::FAN_MARK_ADD, dir)
    }

    /// Stops reporting changes in directory `dir` (best effort: a directory gone from the
    /// host took its mark with it).
    pub(super) fn unmark(&self, dir: BorrowedFd<'_>) {
        let _ = self.mark_op(libc::FAN_MARK_REMOVE, dir);
    }

    /// Reads events until the filesystem is gone ([`Watcher::finish`], or `table` no
    /// longer upgrades), passing the changes of known objects to `sink`.
    /// `xattr_epoch` is bumped for every batch read, before its events are handled (see
    /// `Loopback::getxattr`).
    pub(super) fn run(
        self: Arc<Self>,
        table: Weak<RwLock<Table>>,
        fds: Arc<EntryFds>,
        xattr_epoch: Arc<AtomicU64>,
        sink: Arc<dyn ChangeSink>,
    ) {
        let me = std::process::id() as i32;
        // u64 words: the kernel writes whole, aligned event records.
        let mut buf = vec![0u64; 8192];
        loop {
            let mut pfds = [self.fan.as_raw_fd(), self.gone.as_raw_fd()].map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            });
            // SAFETY: two valid pollfds.
            let r = unsafe { libc::poll(pfds.as_mut_ptr(), 2, -1) };
            if pfds[1].revents != 0 {
                return;
            }
            let Some(table) = table.upgrade() else { return };
            if r <= 0 {
                continue;
            }
            // SAFETY: `buf` is writable for its whole length in bytes.
            let n =
                unsafe { libc::read(self.fan.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len() * 8) };
            let Ok(n) = usize::try_from(n) else {
                // EINTR, or EAGAIN after a spurious wakeup; nothing else is expected from
                // a buffer this large.
                continue;
            };
            xattr_epoch.fetch_add(1, Ordering::SeqCst);
            // SAFETY: the kernel wrote `n` bytes at the start of `buf`.
            let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n) };
            // A burst of writes to one file is one change to report.
            let mut seen = std::collections::HashSet::new();
            for ev in events(bytes) {
                if ev.pid == me || !seen.insert((ev.mask & DIRENT != 0, ev.dir, ev.name)) {
                    continue;
                }
                resolve(&ev, &table, &fds, &*sink);
            }
            drop(seen);
            // Let events gather: the kernel merges repeats of one change while they wait
            // in the queue, and a few milliseconds is still far below any cache lifetime.
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

/// One event: who caused it, what happened, and the directory handle and name it names.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Event<'a> {
    pub mask: u64,
    pub pid: i32,
    /// A `struct file_handle` (header and bytes), as `sys::open_by_handle` takes it.
    pub dir: &'a [u8],
    /// The name in `dir`; `.` for an event on the directory itself.
    pub name: &'a [u8],
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The events in a buffer read from the group, skipping any record it cannot parse
/// (overflow events, info types it does not ask for).
pub(super) fn events(bytes: &[u8]) -> impl Iterator<Item = Event<'_>> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        loop {
            let rest = bytes.get(at..)?;
            // struct fanotify_event_metadata: event_len u32, vers u8, reserved u8,
            // metadata_len u16, mask u64, fd i32, pid i32.
            let len = u32_at(rest, 0)? as usize;
            let meta_len = u16_at(rest, 6)? as usize;
            if len < 24 || len > rest.len() || meta_len < 24 || meta_len > len {
                return None;
            }
            at += len;
            let mask = u64_at(rest, 8)?;
            let pid = u32_at(rest, 20)? as i32;
            if let Some((dir, name)) = dfid_name(&rest[meta_len..len]) {
                return Some(Event {
                    mask,
                    pid,
                    dir,
                    name,
                });
            }
        }
    })
}

/// The first `FAN_EVENT_INFO_TYPE_DFID_NAME` record in an event's info records: the
/// directory's file handle and the name.
fn dfid_name(mut info: &[u8]) -> Option<(&[u8], &[u8])> {
    while info.len() >= 4 {
        // struct fanotify_event_info_header: info_type u8, pad u8, len u16.
        let kind = info[0];
        let len = u16_at(info, 2)? as usize;
        if len < 4 || len > info.len() {
            return None;
        }
        let rec = &info[..len];
        info = &info[len..];
        if kind != libc::FAN_EVENT_INFO_TYPE_DFID_NAME {
            continue;
        }
        // After the header: __kernel_fsid_t (8 bytes), then struct file_handle
        // (handle_bytes u32, handle_type i32, f_handle[handle_bytes]), then the name.
        let fh = rec.get(12..)?;
        let hlen = 8 + u32_at(fh, 0)? as usize;
        let handle = fh.get(..hlen)?;
        let name = fh.get(hlen..)?;
        let name = CStr::from_bytes_until_nul(name).ok()?.to_bytes();
        return Some((handle, name));
    }
    None
}

/// The inode number the table has for the host object `fd` is open on. Any xattr
/// misses remembered for it are forgotten: the event may be a new xattr.
fn known(table: &RwLock<Table>, key: (u64, u64)) -> Option<(Ino, FileType)> {
    let t = table.read();
    let ino = *t.by_key.get(&key)?;
    t.by_ino.get(&ino).map(|i| {
        i.absent_xattrs.lock().clear();
        (i.ino, i.kind)
    })
}

fn resolve(ev: &Event<'_>, table: &RwLock<Table>, fds: &EntryFds, sink: &dyn ChangeSink) {
    let Some(mount) = fds.mount.as_ref() else {
        return;
    };
    // A directory gone since (ESTALE) has no entries left to drop.
    let Ok(dir) = sys::open_by_handle(mount.as_fd(), ev.dir) else {
        return;
    };
    let Ok(st) = sys::fstat(dir.as_fd()) else {
        return;
    };
    let Some((parent, FileType::Directory)) = known(table, sys::key(&st)) else {
        return;
    };
    if ev.name == b"." {
        sink.inode_changed(parent);
        return;
    }
    let name = OsStr::from_bytes(ev.name);
    if ev.mask & DIRENT != 0 {
        sink.inode_changed(parent);
        sink.entry_changed(parent, name);
        return;
    }
    // Attributes or contents of a child: drop what the kernel holds for that object
    // (its attributes and cached pages), wherever it is linked.
    let child = std::ffi::CString::new(ev.name)
        .ok()
        .and_then(|c| sys::fstatat(dir.as_fd(), &c).ok())
        .and_then(|st| known(table, sys::key(&st)));
    match child {
        Some((ino, _)) => sink.inode_changed(ino),
        None => sink.entry_changed(parent, name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(mask: u64, pid: i32, handle: &[u8], name: &[u8]) -> Vec<u8> {
        let mut info = vec![libc::FAN_EVENT_INFO_TYPE_DFID_NAME, 0, 0, 0];
        info.extend_from_slice(&[0; 8]); // fsid
        info.extend_from_slice(handle);
        info.extend_from_slice(name);
        info.push(0);
        while info.len() % 4 != 0 {
            info.push(0);
        }
        let ilen = info.len() as u16;
        info[2..4].copy_from_slice(&ilen.to_ne_bytes());
        let mut ev = Vec::new();
        let total = (24 + info.len()) as u32;
        ev.extend_from_slice(&total.to_ne_bytes());
        ev.extend_from_slice(&[3, 0]);
        ev.extend_from_slice(&24u16.to_ne_bytes());
        ev.extend_from_slice(&mask.to_ne_bytes());
        ev.extend_from_slice(&(-1i32).to_ne_bytes());
        ev.extend_from_slice(&pid.to_ne_bytes());
        ev.extend_from_slice(&info);
        ev
    }

    #[test]
    fn events_parse_and_garbage_stops_the_walk() {
        let mut handle = 8u32.to_ne_bytes().to_vec();
        handle.extend_from_slice(&1i32.to_ne_bytes());
        handle.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        let mut buf = record(libc::FAN_CREATE, 42, &handle, b"new");
        buf.extend(record(libc::FAN_ATTRIB | libc::FAN_ONDIR, 7, &handle, b"."));
        let got: Vec<_> = events(&buf).collect();
        assert_eq!(
            got,
            [
                Event {
                    mask: libc::FAN_CREATE,
                    pid: 42,
                    dir: &handle,
                    name: b"new"
                },
                Event {
                    mask: libc::FAN_ATTRIB | libc::FAN_ONDIR,
                    pid: 7,
                    dir: &handle,
                    name: b"."
                },
            ]
        );
        // Truncated and lying records end the walk without reading past the buffer.
        assert_eq!(events(&buf[..buf.len() - 3]).count(), 1);
        let mut bad = buf.clone();
        bad[0..4].copy_from_slice(&10_000u32.to_ne_bytes());
        assert_eq!(events(&bad).count(), 0);
        let mut bad = buf.clone();
        bad[24 + 2..24 + 4].copy_from_slice(&2u16.to_ne_bytes());
        assert_eq!(
            events(&bad).count(),
            1,
            "a bad info length skips that event"
        );
    }
}
