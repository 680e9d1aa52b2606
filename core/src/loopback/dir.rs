//! Reading host directories with resumable cookies.
//!
//! Linux: raw `getdents64` on a descriptor opened for reading; an entry's cookie is the
//! host's `d_off` (the position just after it), which ext4, xfs, btrfs and tmpfs keep
//! stable while entries come and go, and resuming is `lseek(fd, cookie, SEEK_SET)`.
//! Cookies must stay below 2^63 (adapters reserve the rest); a host offset that is not
//! (negative as `off_t`) is reported as `EOVERFLOW` rather than mangled.
//!
//! macOS: `readdir` on a `fdopendir` stream, with the entry's ordinal as its cookie
//! (`telldir` values are private to one stream), resumed by skipping that many entries.
//! Such cookies shift when earlier entries are removed: a documented limitation of the
//! macOS build.

use std::io;
use std::os::fd::OwnedFd;

/// One raw entry.
pub(super) struct RawEntry {
    pub(super) name: Vec<u8>,
    /// The host's `d_type` (`DT_UNKNOWN` when the filesystem does not say).
    pub(super) d_type: u8,
    /// The host's inode number (`d_ino`).
    pub(super) d_ino: u64,
    /// The resume cookie: passing it to [`DirStream::seek`] continues after this entry.
    pub(super) cookie: u64,
}

/// An open host directory stream.
#[cfg(target_os = "linux")]
pub(super) struct DirStream {
    fd: OwnedFd,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    /// Cookie the next entry read follows (0 = start), or `None` when unknown.
    at: Option<u64>,
    /// Where the last entry returned starts in `buf`, and the cookie before it, for
    /// [`DirStream::unread`].
    last: Option<(usize, Option<u64>)>,
}

#[cfg(target_os = "linux")]
impl DirStream {
    pub(super) fn new(fd: OwnedFd) -> DirStream {
        DirStream {
            fd,
            buf: vec![0; 32 * 1024],
            pos: 0,
            len: 0,
            at: Some(0),
            last: None,
        }
    }

    /// The descriptor (for fsyncdir).
    pub(super) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }

    /// The cookie a [`DirStream::seek`] to would not move the stream, if known.
    pub(super) fn resumes_at(&self) -> Option<u64> {
        self.at
    }

    /// Positions the stream so that the next entry is the one after `cookie`.
    pub(super) fn seek(&mut self, cookie: u64) -> io::Result<()> {
        if self.at == Some(cookie) {
            return Ok(());
        }
        use std::os::fd::AsRawFd;
        let off = libc::off_t::try_from(cookie)
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: valid descriptor.
        let r = unsafe { libc::lseek(self.fd.as_raw_fd(), off, libc::SEEK_SET) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        self.pos = 0;
        self.len = 0;
        self.at = Some(cookie);
        self.last = None;
        Ok(())
    }

    /// Puts back the last entry read (a listing that had no room for it): the next read
    /// returns it again, from the buffer.
    ///
    /// Why not reposition: a reply takes far fewer entries than one `getdents64` buffer
    /// holds (a FUSE or NFS READDIRPLUS reply about 200, the buffer about 1,000 short
    /// names), and seeking dropped the rest, so every reply read the host directory again
    /// from its cookie: about 5 times the entries it returned (a FUSE `ls -l` of 10,000
    /// names made 52 `getdents64` calls and 49 `lseek`s; now 12 and none).
    pub(super) fn unread(&mut self) {
        match self.last.take() {
            Some((pos, at)) => {
                self.pos = pos;
                self.at = at;
            }
            None => self.at = None,
        }
    }

    /// The next entry, `.` and `..` included (callers skip them).
    pub(super) fn next_entry(&mut self) -> io::Result<Option<RawEntry>> {
        use std::os::fd::AsRawFd;
        self.last = None;
        let at = self.at;
        if self.pos >= self.len {
            // SAFETY: `buf` is writable for its length.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_getdents64,
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr(),
                    self.buf.len(),
                )
            };
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
            self.len = usize::try_from(r).unwrap_or(0);
            self.pos = 0;
            if self.len == 0 {
                return Ok(None);
            }
        }
        // struct linux_dirent64 { u64 d_ino; i64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
        let rec = &self.buf[self.pos..self.len];
        let bad = || io::Error::from_raw_os_error(libc::EIO);
        if rec.len() < 19 {
            return Err(bad());
        }
        let d_ino = u64::from_ne_bytes(rec[0..8].try_into().map_err(|_| bad())?);
        let d_off = i64::from_ne_bytes(rec[8..16].try_into().map_err(|_| bad())?);
        let reclen = usize::from(u16::from_ne_bytes(
            rec[16..18].try_into().map_err(|_| bad())?,
        ));
        if reclen < 19 || reclen > rec.len() {
            return Err(bad());
        }
        let d_type = rec[18];
        let raw_name = &rec[19..reclen];
        let end = raw_name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(raw_name.len());
        let name = raw_name[..end].to_vec();
        self.last = Some((self.pos, at));
        self.pos += reclen;
        let cookie = u64::try_from(d_off)
            .ok()
            .filter(|&c| c != 0)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EOVERFLOW))?;
        self.at = Some(cookie);
        Ok(Some(RawEntry {
            name,
            d_type,
            d_ino,
            cookie,
        }))
    }
}

/// An open host directory stream (macOS: `fdopendir`).
#[cfg(not(target_os = "linux"))]
pub(super) struct DirStream {
    dir: *mut libc::DIR,
    /// Ordinal of the next entry (entries read so far).
    index: u64,
    /// The stream's position before the last entry returned (`telldir`).
    last: Option<libc::c_long>,
}

// SAFETY: a DIR stream may be used from any thread as long as only one uses it at a
// time; loopback keeps each stream behind a Mutex.
#[cfg(not(target_os = "linux"))]
unsafe impl Send for DirStream {}

#[cfg(not(target_os = "linux"))]
impl Drop for DirStream {
    fn drop(&mut self) {
        // SAFETY: `dir` came from fdopendir and is closed exactly once, here.
        unsafe { libc::closedir(self.dir) };
    }
}

#[cfg(not(target_os = "linux"))]
impl DirStream {
    pub(super) fn open(fd: OwnedFd) -> io::Result<DirStream> {
        use std::os::fd::IntoRawFd;
        let raw = fd.into_raw_fd();
        // SAFETY: `raw` is an owned directory descriptor; fdopendir takes it over.
        let dir = unsafe { libc::fdopendir(raw) };
        if dir.is_null() {
            let e = io::Error::last_os_error();
            // SAFETY: fdopendir failed, so `raw` is still ours to close.
            unsafe { libc::close(raw) };
            return Err(e);
        }
        Ok(DirStream {
            dir,
            index: 0,
            last: None,
        })
    }

    /// The descriptor (for fsyncdir).
    pub(super) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        // SAFETY: `dir` is a live stream; its descriptor lives as long as `self`.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(libc::dirfd(self.dir)) }
    }

    /// The cookie a [`DirStream::seek`] to would not move the stream, if known.
    pub(super) fn resumes_at(&self) -> Option<u64> {
        (self.index != u64::MAX).then_some(self.index)
    }

    pub(super) fn seek(&mut self, cookie: u64) -> io::Result<()> {
        if cookie < self.index {
            // SAFETY: live stream.
            unsafe { libc::rewinddir(self.dir) };
            self.index = 0;
            self.last = None;
        }
        while self.index < cookie {
            if self.next_entry()?.is_none() {
                break;
            }
        }
        Ok(())
    }

    /// Puts back the last entry read: back to where the stream was before it
    /// (`seekdir` to the `telldir` taken then), else a rewind on the next seek.
    pub(super) fn unread(&mut self) {
        match self.last.take() {
            Some(loc) => {
                // SAFETY: live stream; `loc` came from telldir on this stream.
                unsafe { libc::seekdir(self.dir, loc) };
                self.index = self.index.wrapping_sub(1);
            }
            None => self.index = u64::MAX,
        }
    }

    pub(super) fn next_entry(&mut self) -> io::Result<Option<RawEntry>> {
        // SAFETY: live stream.
        let before = unsafe { libc::telldir(self.dir) };
        self.last = None;
        // SAFETY: live stream; errno is cleared first to tell end from error.
        unsafe { *libc::__error() = 0 };
        // SAFETY: live stream.
        let ent = unsafe { libc::readdir(self.dir) };
        if ent.is_null() {
            let e = io::Error::last_os_error();
            if e.raw_os_error().unwrap_or(0) != 0 {
                return Err(e);
            }
            return Ok(None);
        }
        // SAFETY: readdir returned a valid entry that stays valid until the next call.
        let ent = unsafe { &*ent };
        // SAFETY: d_name is NUL-terminated.
        let name = unsafe { std::ffi::CStr::from_ptr(ent.d_name.as_ptr()) }
            .to_bytes()
            .to_vec();
        self.index = self.index.wrapping_add(1);
        self.last = (before >= 0).then_some(before);
        Ok(Some(RawEntry {
            name,
            d_type: ent.d_type,
            #[allow(clippy::unnecessary_cast)]
            d_ino: ent.d_ino as u64,
            cookie: self.index,
        }))
    }
}

/// Opens a stream on a directory descriptor opened for reading.
#[cfg(target_os = "linux")]
pub(super) fn open_stream(fd: OwnedFd) -> io::Result<DirStream> {
    Ok(DirStream::new(fd))
}

/// Opens a stream on a directory descriptor opened for reading.
#[cfg(not(target_os = "linux"))]
pub(super) fn open_stream(fd: OwnedFd) -> io::Result<DirStream> {
    DirStream::open(fd)
}
