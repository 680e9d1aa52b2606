//! Check 1 on Windows: which process, and so which user, owns the peer's end of an
//! accepted loopback connection (see [`crate::auth`] for the policy).
//!
//! `GetExtendedTcpTable(AF_INET, TCP_TABLE_OWNER_PID_CONNECTIONS)` lists every IPv4
//! connection with its owning PID. The peer's row is the one whose local endpoint is the
//! peer's address and whose remote endpoint is our listening address. The owner of that
//! PID is read from its primary token (`OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION)`,
//! `OpenProcessToken(TOKEN_QUERY)`, `GetTokenInformation(TokenUser)`). The row matching
//! is plain data handling and is compiled (and tested) everywhere; the system calls are
//! Windows-only.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

/// `MIB_TCP_STATE_TIME_WAIT`: the socket is gone; the row stays for up to 4 minutes and
/// is attributed to PID 0.
const STATE_TIME_WAIT: u32 = 11;
/// `MIB_TCP_STATE_DELETE_TCB`: being torn down.
const STATE_DELETE_TCB: u32 = 12;

/// PIDs that are the kernel itself: 0 (idle; also what TIME_WAIT rows report) and
/// 4 (System, where Client for NFS's redirector runs).
const KERNEL_PIDS: [u32; 2] = [0, 4];

/// One `MIB_TCPROW_OWNER_PID`, as the API fills it: addresses in network byte order
/// (the memory bytes are the address bytes), ports in network byte order in the low 16
/// bits of their `u32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TcpRow {
    pub state: u32,
    pub local_addr: u32,
    pub local_port: u32,
    pub remote_addr: u32,
    pub remote_port: u32,
    pub pid: u32,
}

impl TcpRow {
    /// Words of one row in the table (`MIB_TCPROW_OWNER_PID` is six `DWORD`s).
    const WORDS: usize = 6;

    fn from_words(w: &[u32]) -> Option<TcpRow> {
        match *w {
            [state, local_addr, local_port, remote_addr, remote_port, pid] => Some(TcpRow {
                state,
                local_addr,
                local_port,
                remote_addr,
                remote_port,
                pid,
            }),
            _ => None,
        }
    }
}

/// The endpoint an address/port pair of a row names: `ntohl`/`ntohs((u_short)port)`.
fn endpoint(addr: u32, port: u32) -> SocketAddrV4 {
    // Truncation is the API's convention: the port is the low 16 bits, the rest is unused.
    let port = u16::from_be(port as u16);
    SocketAddrV4::new(Ipv4Addr::from(u32::from_be(addr)), port)
}

/// The IPv4 form of `a`, also for an IPv4-mapped IPv6 address.
fn as_v4(a: SocketAddr) -> Option<SocketAddrV4> {
    match a {
        SocketAddr::V4(v4) => Some(v4),
        SocketAddr::V6(v6) => v6
            .ip()
            .to_ipv4_mapped()
            .map(|ip| SocketAddrV4::new(ip, v6.port())),
    }
}

/// The PID owning the live socket at `peer` connected to our `local` endpoint, from the
/// rows of a `TCP_TABLE_OWNER_PID_CONNECTIONS` table. Rows in TIME_WAIT or DELETE_TCB
/// are skipped: they are no socket anyone owns, and they report PID 0.
#[cfg_attr(not(windows), allow(dead_code))]
pub(crate) fn find_pid(
    rows: impl IntoIterator<Item = TcpRow>,
    peer: SocketAddr,
    local: SocketAddr,
) -> Option<u32> {
    let (peer, local) = (as_v4(peer)?, as_v4(local)?);
    rows.into_iter()
        .filter(|r| r.state != STATE_TIME_WAIT && r.state != STATE_DELETE_TCB)
        .find(|r| {
            endpoint(r.local_addr, r.local_port) == peer
                && endpoint(r.remote_addr, r.remote_port) == local
        })
        .map(|r| r.pid)
}

/// The rows of a `MIB_TCPTABLE_OWNER_PID` held as `DWORD`s: the entry count, then six
/// words per row. Never reads past `words`, whatever the count says.
#[cfg_attr(not(windows), allow(dead_code))]
pub(crate) fn rows(words: &[u32]) -> impl Iterator<Item = TcpRow> + '_ {
    let (count, body) = match words.split_first() {
        Some((&n, rest)) => (usize::try_from(n).unwrap_or(usize::MAX), rest),
        None => (0, &[][..]),
    };
    body.as_chunks::<{ TcpRow::WORDS }>()
        .0
        .iter()
        .take(count)
        .filter_map(|w| TcpRow::from_words(w))
}

/// Whether `pid` is the kernel, whose connections (Client for NFS) are always allowed.
#[cfg_attr(not(windows), allow(dead_code))]
pub(crate) fn is_kernel(pid: u32) -> bool {
    KERNEL_PIDS.contains(&pid)
}

/// Who owns a connection, as far as check 1 cares.
#[cfg(windows)]
#[derive(Debug)]
pub(crate) enum Owner {
    /// The kernel (PID 0 or 4).
    Kernel(u32),
    /// A process running as the daemon's own user.
    SameUser(u32),
    /// A process running as LocalSystem.
    LocalSystem(u32),
    /// A process of another user.
    OtherUser(u32),
    /// A process whose token we may not read (another user's elevated process, or one
    /// that exited meanwhile).
    Unreadable(u32, std::io::Error),
    /// No live row for this connection (the peer already closed it).
    NotFound,
    /// The TCP table itself could not be read.
    TableFailed(std::io::Error),
}

#[cfg(windows)]
impl Owner {
    /// Whether check 1 lets this connection through.
    pub(crate) fn allowed(&self) -> bool {
        matches!(
            self,
            Owner::Kernel(_) | Owner::SameUser(_) | Owner::LocalSystem(_)
        )
    }
}

/// The owner of the socket at `peer` connected to our `local` endpoint.
#[cfg(windows)]
pub(crate) fn owner(peer: SocketAddr, local: SocketAddr) -> Owner {
    let table = match sys::tcp_table() {
        Ok(t) => t,
        Err(e) => return Owner::TableFailed(e),
    };
    let Some(pid) = find_pid(rows(&table), peer, local) else {
        return Owner::NotFound;
    };
    if is_kernel(pid) {
        return Owner::Kernel(pid);
    }
    match sys::same_user_or_system(pid) {
        Ok(sys::Match::Same) => Owner::SameUser(pid),
        Ok(sys::Match::LocalSystem) => Owner::LocalSystem(pid),
        Ok(sys::Match::Other) => Owner::OtherUser(pid),
        Err(e) => Owner::Unreadable(pid, e),
    }
}

#[cfg(windows)]
mod sys {
    use std::io;
    use std::mem::{offset_of, size_of};

    use windows_sys::Win32::Foundation::{
        CloseHandle, ERROR_INSUFFICIENT_BUFFER, GetLastError, HANDLE, NO_ERROR,
    };
    use windows_sys::Win32::NetworkManagement::IpHelper::{
        GetExtendedTcpTable, MIB_TCPROW_OWNER_PID, MIB_TCPTABLE_OWNER_PID,
        TCP_TABLE_OWNER_PID_CONNECTIONS,
    };
    use windows_sys::Win32::Networking::WinSock::AF_INET;
    use windows_sys::Win32::Security::{
        EqualSid, GetTokenInformation, IsWellKnownSid, PSID, TOKEN_QUERY, TOKEN_USER, TokenUser,
        WinLocalSystemSid,
    };
    use windows_sys::Win32::System::Threading::{
        GetCurrentProcess, OpenProcess, OpenProcessToken, PROCESS_QUERY_LIMITED_INFORMATION,
    };

    use super::TcpRow;

    // The table is read as DWORDs: a count, then rows of six DWORDs with no padding.
    const _: () = assert!(offset_of!(MIB_TCPTABLE_OWNER_PID, table) == size_of::<u32>());
    const _: () = assert!(size_of::<MIB_TCPROW_OWNER_PID>() == TcpRow::WORDS * size_of::<u32>());

    /// Tries before giving up on a table or token that keeps growing between calls.
    const ATTEMPTS: usize = 8;

    /// The IPv4 connection table with owning PIDs, as `DWORD`s (see [`super::rows`]).
    pub(super) fn tcp_table() -> io::Result<Vec<u32>> {
        let mut size: u32 = 0;
        for _ in 0..ATTEMPTS {
            // Room for what the API asked for plus some connections opened meanwhile.
            let want = (size as usize)
                .saturating_add(16 * size_of::<MIB_TCPROW_OWNER_PID>())
                .div_ceil(size_of::<u32>());
            let mut buf = vec![0u32; want];
            let mut len = u32::try_from(buf.len() * size_of::<u32>()).unwrap_or(u32::MAX);
            // SAFETY: `buf` is a live, writable, 4-byte-aligned allocation of at least
            // `len` bytes (MIB_TCPTABLE_OWNER_PID needs 4-byte alignment), and `len` is a
            // valid u32 out-parameter; the API writes at most `len` bytes.
            let rc = unsafe {
                GetExtendedTcpTable(
                    buf.as_mut_ptr().cast(),
                    &mut len,
                    0,
                    u32::from(AF_INET),
                    TCP_TABLE_OWNER_PID_CONNECTIONS,
                    0,
                )
            };
            match rc {
                NO_ERROR => return Ok(buf),
                ERROR_INSUFFICIENT_BUFFER => size = len,
                err => return Err(io::Error::from_raw_os_error(err as i32)),
            }
        }
        Err(io::Error::other("the TCP table kept growing"))
    }

    /// A handle closed on drop.
    struct Handle(HANDLE);

    impl Drop for Handle {
        fn drop(&mut self) {
            // SAFETY: `self.0` is a handle we opened and own; it is closed exactly once.
            unsafe { CloseHandle(self.0) };
        }
    }

    /// A `TOKEN_USER` and the SID it points into, kept in one pointer-aligned buffer.
    struct TokenUserBuf(Vec<usize>);

    impl TokenUserBuf {
        /// Reads the user of `token`.
        fn of(token: HANDLE) -> io::Result<TokenUserBuf> {
            // A TOKEN_USER and the largest SID (SECURITY_MAX_SID_SIZE, 68 bytes) usually fit
            // at once; otherwise the API says how much it needs.
            let mut len: u32 = u32::try_from(size_of::<TOKEN_USER>() + 68).unwrap_or(0);
            for _ in 0..ATTEMPTS {
                let mut buf = vec![0usize; (len as usize).div_ceil(size_of::<usize>())];
                let cap = u32::try_from(buf.len() * size_of::<usize>()).unwrap_or(u32::MAX);
                // SAFETY: `token` is an open token handle with TOKEN_QUERY access; `buf`
                // is a live, writable, pointer-aligned allocation of `cap` bytes (enough
                // alignment for TOKEN_USER), and `len` is a valid out-parameter.
                let ok = unsafe {
                    GetTokenInformation(token, TokenUser, buf.as_mut_ptr().cast(), cap, &mut len)
                };
                if ok != 0 {
                    if (cap as usize) < size_of::<TOKEN_USER>() {
                        return Err(io::Error::other("short TOKEN_USER"));
                    }
                    return Ok(TokenUserBuf(buf));
                }
                // SAFETY: GetLastError has no preconditions.
                let err = unsafe { GetLastError() };
                if err != ERROR_INSUFFICIENT_BUFFER {
                    return Err(io::Error::from_raw_os_error(err as i32));
                }
            }
            Err(io::Error::other("TOKEN_USER kept growing"))
        }

        /// The user's SID; valid while `self` lives.
        fn sid(&self) -> PSID {
            // SAFETY: `of` checked that the buffer holds at least a TOKEN_USER, which
            // GetTokenInformation wrote at its start; the buffer is pointer-aligned.
            unsafe { (*self.0.as_ptr().cast::<TOKEN_USER>()).User.Sid }
        }
    }

    /// The user of the process behind `process` (a handle with query access).
    fn process_user(process: HANDLE) -> io::Result<TokenUserBuf> {
        let mut token: HANDLE = std::ptr::null_mut();
        // SAFETY: `process` is a valid process handle (or the current-process
        // pseudo-handle) and `token` a valid out-parameter.
        if unsafe { OpenProcessToken(process, TOKEN_QUERY, &mut token) } == 0 {
            return Err(io::Error::last_os_error());
        }
        let token = Handle(token);
        TokenUserBuf::of(token.0)
    }

    /// How a process's user compares with ours.
    pub(super) enum Match {
        Same,
        LocalSystem,
        Other,
    }

    /// Compares the user of process `pid` with this process's user.
    pub(super) fn same_user_or_system(pid: u32) -> io::Result<Match> {
        // SAFETY: GetCurrentProcess has no preconditions; its pseudo-handle needs no close.
        let me = process_user(unsafe { GetCurrentProcess() })?;
        // SAFETY: OpenProcess has no memory preconditions; a null result is an error.
        let process = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
        if process.is_null() {
            return Err(io::Error::last_os_error());
        }
        let process = Handle(process);
        let them = process_user(process.0)?;
        // SAFETY: both SIDs point into live TOKEN_USER buffers filled by the system.
        if unsafe { EqualSid(me.sid(), them.sid()) } != 0 {
            return Ok(Match::Same);
        }
        // SAFETY: as above.
        if unsafe { IsWellKnownSid(them.sid(), WinLocalSystemSid) } != 0 {
            return Ok(Match::LocalSystem);
        }
        Ok(Match::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row as the API lays it out on a little- or big-endian host alike.
    fn row(state: u32, local: &str, remote: &str, pid: u32) -> TcpRow {
        let l: SocketAddrV4 = local.parse().unwrap();
        let r: SocketAddrV4 = remote.parse().unwrap();
        let addr = |a: &SocketAddrV4| u32::from_ne_bytes(a.ip().octets());
        // The port's network-order bytes in the low 16 bits, high bits garbage.
        let port = |a: &SocketAddrV4| 0xABCD_0000 | u32::from(a.port().to_be());
        TcpRow {
            state,
            local_addr: addr(&l),
            local_port: port(&l),
            remote_addr: addr(&r),
            remote_port: port(&r),
            pid,
        }
    }

    #[test]
    fn peer_row_is_found_by_both_endpoints() {
        let peer: SocketAddr = "127.0.0.1:50123".parse().unwrap();
        let ours: SocketAddr = "127.0.0.1:2049".parse().unwrap();
        let table = [
            // Our accepted socket: the mirror image, owned by us.
            row(5, "127.0.0.1:2049", "127.0.0.1:50123", 1000),
            // Same peer port towards another server.
            row(5, "127.0.0.1:50123", "127.0.0.1:2050", 2000),
            // The peer's socket.
            row(5, "127.0.0.1:50123", "127.0.0.1:2049", 3000),
        ];
        assert_eq!(find_pid(table, peer, ours), Some(3000));
        assert_eq!(find_pid(table, ours, peer), Some(1000));
        let stranger: SocketAddr = "127.0.0.1:50124".parse().unwrap();
        assert_eq!(find_pid(table, stranger, ours), None);
        // An IPv4-mapped form of the same endpoints matches too.
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:50123".parse().unwrap();
        assert_eq!(find_pid(table, mapped, ours), Some(3000));
        // A real IPv6 peer never matches the IPv4 table.
        let v6: SocketAddr = "[::1]:50123".parse().unwrap();
        assert_eq!(find_pid(table, v6, ours), None);
    }

    #[test]
    fn ports_are_network_order_in_the_low_bits() {
        // 2049 = 0x0801: network order bytes 08 01, i.e. 0x0108 read little-endian.
        let r = endpoint(
            u32::from_ne_bytes([127, 0, 0, 1]),
            u32::from(2049u16.to_be()),
        );
        assert_eq!(r, "127.0.0.1:2049".parse().unwrap());
        // A host-order port is not mistaken for the network-order one (Windows hosts are
        // all little-endian).
        if cfg!(target_endian = "little") {
            let swapped = endpoint(u32::from_ne_bytes([127, 0, 0, 1]), 2049);
            assert_ne!(swapped.port(), 2049);
        }
        let a = endpoint(u32::from_ne_bytes([10, 1, 2, 3]), 0);
        assert_eq!(*a.ip(), Ipv4Addr::new(10, 1, 2, 3));
    }

    #[test]
    fn dead_rows_do_not_pass_as_the_kernel() {
        let peer: SocketAddr = "127.0.0.1:50123".parse().unwrap();
        let ours: SocketAddr = "127.0.0.1:2049".parse().unwrap();
        let table = [
            row(STATE_TIME_WAIT, "127.0.0.1:50123", "127.0.0.1:2049", 0),
            row(STATE_DELETE_TCB, "127.0.0.1:50123", "127.0.0.1:2049", 0),
        ];
        assert_eq!(find_pid(table, peer, ours), None);
        let live = [table[0], row(5, "127.0.0.1:50123", "127.0.0.1:2049", 77)];
        assert_eq!(find_pid(live, peer, ours), Some(77));
        assert!(is_kernel(4) && is_kernel(0) && !is_kernel(77));
    }

    #[test]
    fn table_words_are_bounded_by_the_buffer() {
        let r = row(5, "127.0.0.1:50123", "127.0.0.1:2049", 9);
        let words = |n: u32, rows: &[TcpRow]| {
            let mut w = vec![n];
            for r in rows {
                w.extend([
                    r.state,
                    r.local_addr,
                    r.local_port,
                    r.remote_addr,
                    r.remote_port,
                    r.pid,
                ]);
            }
            w
        };
        assert_eq!(rows(&words(1, &[r])).collect::<Vec<_>>(), vec![r]);
        // A count larger than the buffer reads only what is there.
        assert_eq!(rows(&words(u32::MAX, &[r])).count(), 1);
        // A count smaller than the buffer stops at the count.
        assert_eq!(rows(&words(1, &[r, r])).count(), 1);
        // A truncated row is ignored; an empty buffer has no rows.
        let mut cut = words(2, &[r, r]);
        cut.pop();
        assert_eq!(rows(&cut).count(), 1);
        assert_eq!(rows(&[]).count(), 0);
    }
}
