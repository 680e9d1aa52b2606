//! READ data that never enters this process (Linux).
//!
//! # Decisions
//! - **File → pipe → socket with `splice(2)`.** A large READ of a file whose bytes live in
//!   a host file ([`Vfs::read_fd`](vmount_core::Vfs::read_fd): loopback's source, memfs's
//!   kernel-held data) is spliced from the page cache into a pipe by the call's handler,
//!   and from the pipe into the socket by the connection's writer. The pipe holds page
//!   references, not copies: serving a copy out of memfs lost its two copies (page cache
//!   to a buffer, buffer to the socket), which with the buffer's zeroing were more than
//!   half of the server's perf samples.
//! - **The file is read into the pipe before the reply's head is written**, so the count
//!   and EOF flag in the head are those of the bytes actually taken, however the file
//!   changes meanwhile (sendfile from the file straight to the socket could not promise a
//!   count up front).
//! - **Only for READs of [`SPLICE_MIN`] or more.** Below that, a pipe's set-up and three
//!   more system calls cost more than the copies saved.
//! - **Whole or not at all.** A pipe holds a number of pages, and a READ at an offset
//!   that is not page-aligned spans one page more than its length. When the pipe cannot
//!   be made big enough for the pages spanned (1 MiB at an unaligned offset needs 2 MiB
//!   of pipe, over the default `pipe-max-size` without CAP_SYS_RESOURCE), or the splice
//!   fails before its first byte, the READ is served by `read` instead: replies never
//!   come back short for the server's own reasons. Clients read at page-aligned offsets
//!   (the Linux client from its page cache; libnfs in whole blocks), so that is rare.

use std::io;
#[cfg(target_os = "linux")]
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Smallest READ served by splicing.
pub(crate) const SPLICE_MIN: u32 = 64 * 1024;

/// The data of a READ reply, waiting in a pipe: it follows the reply's head on the wire,
/// then its XDR padding.
#[cfg(target_os = "linux")]
pub(crate) struct Tail {
    pipe: OwnedFd,
    len: usize,
}

/// No splicing off Linux: no tail is ever made.
#[cfg(not(target_os = "linux"))]
pub(crate) enum Tail {}

#[cfg(target_os = "linux")]
impl Tail {
    /// Takes up to `count` bytes at `offset` of `file`, whose size the caller just read
    /// as `size`, into a new pipe. `None` when nothing could be taken (the caller reads
    /// instead); a tail shorter than `count` ends at EOF.
    pub(crate) fn from_file(
        file: BorrowedFd<'_>,
        offset: u64,
        count: usize,
        size: u64,
    ) -> Option<Tail> {
        const PAGE: u64 = 4096;
        // Only the pages up to EOF need room (a READ may ask past it). A file that grew
        // since gives a READ without EOF, which the client continues; one that shrank
        // ends the splice early.
        let count = usize::try_from(size.saturating_sub(offset)).map_or(count, |n| n.min(count));
        if count == 0 {
            return None;
        }
        let first = offset / PAGE;
        let end = offset.checked_add(count as u64)?;
        let pages = usize::try_from(end.div_ceil(PAGE) - first).ok()?;
        let pipe = Pipe::new(pages * PAGE as usize)?;
        let mut off = i64::try_from(offset).ok()?;
        let mut len = 0;
        while len < count {
            // SAFETY: both descriptors are open for the call; `off` is a valid i64.
            let n = unsafe {
                libc::splice(
                    file.as_raw_fd(),
                    &mut off,
                    pipe.w.as_raw_fd(),
                    std::ptr::null_mut(),
                    count - len,
                    libc::SPLICE_F_NONBLOCK,
                )
            };
            match n {
                0 => break,
                n if n > 0 => len += n as usize,
                _ => {
                    let e = io::Error::last_os_error();
                    if e.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    // Before the first byte (a file system without splice), the caller
                    // reads instead; after it, whatever stopped the splice ends the
                    // READ's data early, as a short read(2) would.
                    if len == 0 {
                        tracing::debug!(error = %e, "READ not spliced");
                        return None;
                    }
                    break;
                }
            }
        }
        (len > 0).then_some(Tail { pipe: pipe.r, len })
    }

    /// The bytes of file data.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The bytes on the wire: the data and its XDR padding.
    pub(crate) fn wire_len(&self) -> usize {
        self.len.next_multiple_of(4)
    }

    /// The data and its padding as bytes, for callers without a socket (the duplicate
    /// request cache, fuzzing).
    pub(crate) fn into_bytes(self) -> io::Result<Vec<u8>> {
        use std::io::Read;
        let mut out = vec![0; self.wire_len()];
        // The pipe already holds all of it: non-blocking reads do not run dry.
        std::fs::File::from(self.pipe).read_exact(&mut out[..self.len])?;
        Ok(out)
    }

    /// Sends the data and its padding down `sock`, after the head the caller wrote.
    pub(crate) async fn send(self, sock: &mut tokio::net::tcp::OwnedWriteHalf) -> io::Result<()> {
        use tokio::io::{AsyncWriteExt, Interest};
        let stream: &tokio::net::TcpStream = sock.as_ref();
        let mut left = self.len;
        while left > 0 {
            stream.writable().await?;
            let sent = stream.try_io(Interest::WRITABLE, || {
                // SAFETY: both descriptors are open for the call; no offsets (pipe, socket).
                let n = unsafe {
                    libc::splice(
                        self.pipe.as_raw_fd(),
                        std::ptr::null_mut(),
                        stream.as_raw_fd(),
                        std::ptr::null_mut(),
                        left,
                        libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE,
                    )
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match sent {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => left -= n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e),
            }
        }
        let pad = self.wire_len() - self.len;
        sock.write_all(&[0; 3][..pad]).await
    }
}

#[cfg(not(target_os = "linux"))]
impl Tail {
    pub(crate) fn len(&self) -> usize {
        match *self {}
    }

    pub(crate) fn wire_len(&self) -> usize {
        match *self {}
    }

    pub(crate) fn into_bytes(self) -> io::Result<Vec<u8>> {
        match self {}
    }

    pub(crate) async fn send(self, _sock: &mut tokio::net::tcp::OwnedWriteHalf) -> io::Result<()> {
        match self {}
    }
}

/// Takes up to `count` bytes at `offset` of `ino`, `size` bytes long, into a tail, if
/// the filesystem has a host file for it and the READ is large enough to be worth it.
pub(crate) fn read(
    fs: &dyn vmount_core::Vfs,
    ino: vmount_core::Ino,
    offset: u64,
    count: u32,
    size: u64,
) -> Option<Tail> {
    if count < SPLICE_MIN {
        return None;
    }
    #[cfg(target_os = "linux")]
    {
        let fd = fs.read_fd(ino)?;
        Tail::from_file(std::os::fd::AsFd::as_fd(&fd), offset, count as usize, size)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (fs, ino, offset, size);
        None
    }
}

/// A pipe with room for a READ.
#[cfg(target_os = "linux")]
struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
}

#[cfg(target_os = "linux")]
impl Pipe {
    /// A non-blocking pipe of at least `room` bytes; `None` if the system will not make
    /// one that large.
    fn new(room: usize) -> Option<Pipe> {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return None;
        }
        // SAFETY: pipe2 just opened both; they are owned here only.
        let pipe = unsafe {
            Pipe {
                r: OwnedFd::from_raw_fd(fds[0]),
                w: OwnedFd::from_raw_fd(fds[1]),
            }
        };
        let want = libc::c_int::try_from(room).ok()?;
        // SAFETY: F_SETPIPE_SZ takes an int and changes only the pipe's capacity.
        let got = unsafe { libc::fcntl(pipe.w.as_raw_fd(), libc::F_SETPIPE_SZ, want) };
        (usize::try_from(got).ok()? >= room).then_some(pipe)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;

    fn file(data: &[u8]) -> std::fs::File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(data).unwrap();
        f
    }

    #[test]
    fn tails_hold_the_bytes_asked_for_up_to_eof() {
        let data: Vec<u8> = (0..3_000_001u32).map(|i| (i % 251) as u8).collect();
        let (f, size) = (file(&data), data.len() as u64);
        for (off, count) in [
            (0usize, 1usize << 20),
            (1 << 20, 1 << 20),
            (1, 65_536),
            (4095, 500_000),
            (data.len() - 10, 1 << 20),
            (data.len() - 65_537, 65_536),
        ] {
            let t = Tail::from_file(f.as_fd(), off as u64, count, size).expect("a tail");
            let end = (off + count).min(data.len());
            assert_eq!(t.len(), end - off, "{off}+{count}");
            assert_eq!(t.wire_len() % 4, 0);
            let b = t.into_bytes().unwrap();
            assert_eq!(&b[..end - off], &data[off..end], "{off}+{count}");
            assert!(b[end - off..].iter().all(|&x| x == 0), "zero padding");
        }
    }

    /// 1 MiB at an unaligned offset spans 257 pages: whole (where a 2 MiB pipe may be
    /// made) or not spliced at all, never short.
    #[test]
    fn reads_are_whole_or_not_spliced() {
        let data: Vec<u8> = (0..(3u32 << 20)).map(|i| (i % 249) as u8).collect();
        let f = file(&data);
        let t = Tail::from_file(f.as_fd(), 4095, 1 << 20, data.len() as u64);
        let two_mib = Pipe::new(2 << 20).is_some();
        assert_eq!(
            t.is_some(),
            two_mib,
            "spliced exactly when the pipe holds it"
        );
        if let Some(t) = t {
            assert_eq!(t.into_bytes().unwrap(), &data[4095..4095 + (1 << 20)]);
        }
    }

    #[test]
    fn nothing_to_take_gives_no_tail() {
        let f = file(b"abc");
        assert!(Tail::from_file(f.as_fd(), 3, 65_536, 3).is_none(), "at EOF");
        assert!(
            Tail::from_file(f.as_fd(), 1 << 40, 65_536, 3).is_none(),
            "past EOF"
        );
        assert!(
            Tail::from_file(f.as_fd(), u64::MAX, 65_536, u64::MAX).is_none(),
            "offset beyond i64"
        );
    }
}
