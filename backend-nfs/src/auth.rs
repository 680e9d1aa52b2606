//! Who may talk to the server, and as whom each request acts.
//!
//! Two checks, because a kernel NFS mount multiplexes every local user over sockets
//! owned by root (or the kernel):
//! 1. **The socket's owner**, on accept, before a byte is read ([`peer_allowed`]). The
//!    peer's socket is the one whose local endpoint is the peer's address and port and
//!    whose remote endpoint is our listening address. Per OS:
//!    - **Linux**: an exact `NETLINK_SOCK_DIAG` lookup ([`crate::peer_linux`]; its line
//!      in `/proc/net/tcp(6)` where that fails) gives the uid that created it. Root (the kernel client and `mount.nfs`), the daemon's own user and
//!      the allowed users pass; any other user, and a socket that cannot be found, is
//!      closed.
//!    - **Windows**: `GetExtendedTcpTable` (`TCP_TABLE_OWNER_PID_CONNECTIONS`) gives the
//!      owning PID ([`crate::peer_windows`]). PIDs 0 and 4 are the kernel, where Client
//!      for NFS runs: allowed. Otherwise the process's token user must be the daemon's
//!      own SID or LocalSystem (`S-1-5-18`). A process we cannot open (another user's, or
//!      an elevated one), any other SID, or no live row: closed, logged with the PID.
//!      Windows has no uids, so `allowed_uids` plays no part; other users reach the
//!      files through the kernel client (PID 4), never with their own sockets.
//!    - **macOS**: the public `net.inet.tcp.pcblist64` sysctl, which any user may read
//!      (`netstat` does), lists every TCP socket as an SDK `struct xtcpcb64` whose
//!      embedded `struct xsocket64` carries `so_uid`, the creator's uid
//!      ([`crate::peer_macos`]). The private `pcblist_n` variant (`xsocket_n`) is not
//!      used: its structures are `#ifdef PRIVATE`. Kernel client sockets are created in
//!      the context of `mount_nfs` (the mounting user) or of the NFS socket thread
//!      (root), both allowed. The uid is judged exactly as on Linux, with one
//!      difference: the structures' length fields are checked against the SDK sizes
//!      and, because this lookup cannot be exercised on our Linux CI, a list that does
//!      not parse or lacks the socket only logs a warning and lets check 2 decide,
//!      instead of locking every client out.
//!    - **Other systems**: no lookup; check 2 and the loopback-only bind apply.
//! 2. **The AUTH_SYS uid of every request** must be root, the daemon's euid or an allowed
//!    uid; the kernel client sends the uid of the process using the mount, so another
//!    user reaching the mount through the kernel is refused with an RPC AUTH_ERROR
//!    (`AUTH_TOOWEAK`; the client reports EACCES). AUTH_NULL acts as `nobody` (65534).
//!    On Windows, Client for NFS sends configured or anonymous uids that name no Windows
//!    account, so the uid check is not applied there; check 1 and the loopback bind are
//!    the boundary, and the `Vfs` still checks permissions against the uid sent.

use std::net::SocketAddr;

use vmount_core::Ctx;

use crate::rpc::{AUTH_NULL, AUTH_SYS, Cred, Dec};

/// The uid and gid AUTH_NULL callers act as.
pub const NOBODY: u32 = 65534;

/// Most supplementary groups AUTH_SYS carries (RFC 5531).
const MAX_GROUPS: usize = 16;
/// Longest machine name in AUTH_SYS.
const MAX_MACHINE_NAME: usize = 255;

/// The identity of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups.
    pub gids: Vec<u32>,
}

impl Caller {
    /// The anonymous caller.
    pub fn nobody() -> Caller {
        Caller {
            uid: NOBODY,
            gid: NOBODY,
            gids: Vec::new(),
        }
    }

    /// The filesystem credentials of this caller.
    pub fn ctx(&self) -> Ctx {
        Ctx::with_groups(self.uid, self.gid, &self.gids)
    }
}

/// Decodes the caller from a call's credentials; `None` for malformed AUTH_SYS or an
/// unsupported flavor (answered with AUTH_BADCRED).
pub fn caller(cred: &Cred<'_>) -> Option<Caller> {
    match cred.flavor {
        AUTH_NULL => Some(Caller::nobody()),
        AUTH_SYS => {
            let mut d = Dec::new(cred.body);
            let _stamp = d.u32().ok()?;
            let _machine = d.opaque(MAX_MACHINE_NAME).ok()?;
            let uid = d.u32().ok()?;
            let gid = d.u32().ok()?;
            let n = d.u32().ok()? as usize;
            if n > MAX_GROUPS {
                return None;
            }
            let mut gids = Vec::with_capacity(n);
            for _ in 0..n {
                gids.push(d.u32().ok()?);
            }
            Some(Caller { uid, gid, gids })
        }
        _ => None,
    }
}

/// The users that may connect and act.
#[derive(Debug, Clone)]
pub struct Policy {
    allowed: Vec<u32>,
    /// False where uids mean nothing (Windows): every uid is accepted.
    enforce: bool,
}

impl Policy {
    /// Root, the daemon's effective uid and `extra`.
    pub fn new(extra: &[u32]) -> Policy {
        let mut allowed = vec![0];
        if let Some(me) = daemon_euid() {
            allowed.push(me);
        }
        allowed.extend_from_slice(extra);
        allowed.sort_unstable();
        allowed.dedup();
        Policy {
            allowed,
            enforce: cfg!(unix),
        }
    }

    /// Whether `uid` may act.
    pub fn allows(&self, uid: u32) -> bool {
        !self.enforce || self.allowed.contains(&uid)
    }
}

/// The effective uid of this process, where the OS has one.
pub fn daemon_euid() -> Option<u32> {
    #[cfg(unix)]
    {
        // SAFETY: geteuid has no preconditions and cannot fail.
        Some(unsafe { libc::geteuid() })
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Check 1: whether the connection from `peer` to our listening `local` address may be
/// served (see the module docs for each OS). Blocking: it reads kernel tables. Every
/// refusal is logged with the peer and the owner found (uid or PID), never data.
pub fn peer_allowed(policy: &Policy, peer: SocketAddr, local: SocketAddr) -> bool {
    check_peer(policy, peer, local)
}

#[cfg(target_os = "linux")]
fn check_peer(policy: &Policy, peer: SocketAddr, local: SocketAddr) -> bool {
    match peer_uid(peer, local) {
        Some(uid) if policy.allows(uid) => true,
        Some(uid) => {
            tracing::info!(%peer, uid, "NFS connection refused: user {uid} is not allowed");
            false
        }
        None => {
            tracing::info!(%peer, "NFS connection refused: its owner could not be determined");
            false
        }
    }
}

#[cfg(target_os = "macos")]
fn check_peer(policy: &Policy, peer: SocketAddr, local: SocketAddr) -> bool {
    match crate::peer_macos::peer_uid(peer, local) {
        Ok(Some(uid)) if policy.allows(uid) => true,
        Ok(Some(uid)) => {
            tracing::info!(%peer, uid, "NFS connection refused: user {uid} is not allowed");
            false
        }
        Ok(None) => {
            tracing::warn!(
                %peer,
                "NFS connection's owner not found in net.inet.tcp.pcblist64; relying on \
                 the AUTH_SYS uid check only"
            );
            true
        }
        Err(e) => {
            tracing::warn!(
                %peer,
                error = %e,
                "NFS connection's owner could not be looked up; relying on the AUTH_SYS uid \
                 check only"
            );
            true
        }
    }
}

#[cfg(windows)]
fn check_peer(_policy: &Policy, peer: SocketAddr, local: SocketAddr) -> bool {
    use crate::peer_windows::Owner;
    let owner = crate::peer_windows::owner(peer, local);
    match &owner {
        Owner::Kernel(pid) | Owner::SameUser(pid) | Owner::LocalSystem(pid) => {
            tracing::debug!(%peer, pid, ?owner, "NFS connection accepted");
        }
        Owner::OtherUser(pid) => {
            tracing::warn!(%peer, pid, "NFS connection refused: process {pid} runs as another user");
        }
        Owner::Unreadable(pid, e) => {
            tracing::warn!(
                %peer,
                pid,
                error = %e,
                "NFS connection refused: the user of process {pid} cannot be read"
            );
        }
        Owner::NotFound => {
            tracing::warn!(%peer, "NFS connection refused: its socket is not in the TCP table");
        }
        Owner::TableFailed(e) => {
            tracing::warn!(%peer, error = %e, "NFS connection refused: the TCP table could not be read");
        }
    }
    owner.allowed()
}

#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
fn check_peer(_policy: &Policy, _peer: SocketAddr, _local: SocketAddr) -> bool {
    true
}

/// The uid owning the socket at `peer` that is connected to `local`: asked of the kernel
/// by exact address ([`crate::peer_linux`]), or where that cannot be asked, found in its
/// TCP tables. `None` when not found.
#[cfg(target_os = "linux")]
pub fn peer_uid(peer: SocketAddr, local: SocketAddr) -> Option<u32> {
    match crate::peer_linux::socket_uid(peer, local) {
        Ok(uid) => return uid,
        Err(e) => tracing::debug!("sock_diag lookup failed ({e}); scanning /proc/net/tcp"),
    }
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        if let Some(uid) = find_owner(&text, peer, local) {
            return Some(uid);
        }
    }
    None
}

/// Finds in a `/proc/net/tcp(6)` table the uid of the socket whose local address is
/// `peer` and whose remote address is `local`.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn find_owner(table: &str, peer: std::net::SocketAddr, local: std::net::SocketAddr) -> Option<u32> {
    for line in table.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        // sl local rem st tx:rx tr:when retrnsmt uid ...
        if cols.len() < 8 {
            continue;
        }
        let (Some(l), Some(r)) = (parse_proc_addr(cols[1]), parse_proc_addr(cols[2])) else {
            continue;
        };
        if same_addr(l, peer) && same_addr(r, local) {
            return cols[7].parse().ok();
        }
    }
    None
}

/// Parses `0100007F:1F90` (IPv4) or 32 hex digits `:port` (IPv6). Each 32-bit word is
/// printed as the host reads it, i.e. the network bytes in native order.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parse_proc_addr(s: &str) -> Option<std::net::SocketAddr> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    let (addr, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |hex: &str| u32::from_str_radix(hex, 16).ok().map(u32::to_ne_bytes);
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(addr)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(addr.get(i * 8..i * 8 + 8)?)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Address equality that treats IPv4-mapped IPv6 addresses as their IPv4 form.
#[cfg_attr(not(any(target_os = "linux", target_os = "macos")), allow(dead_code))]
pub(crate) fn same_addr(a: std::net::SocketAddr, b: std::net::SocketAddr) -> bool {
    use std::net::IpAddr;
    let canon = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    a.port() == b.port() && canon(a.ip()) == canon(b.ip())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::Enc;

    #[test]
    fn auth_sys_is_decoded_and_bounded() {
        let mut body = Vec::new();
        body.put_u32(1);
        body.put_opaque(b"host");
        body.put_u32(1000);
        body.put_u32(100);
        body.put_u32(2);
        body.put_u32(4);
        body.put_u32(27);
        let c = caller(&Cred {
            flavor: AUTH_SYS,
            body: &body,
        })
        .unwrap();
        assert_eq!(
            c,
            Caller {
                uid: 1000,
                gid: 100,
                gids: vec![4, 27]
            }
        );
        for cut in 0..body.len() {
            assert!(
                caller(&Cred {
                    flavor: AUTH_SYS,
                    body: &body[..cut]
                })
                .is_none()
            );
        }
        let mut many = body[..body.len() - 12].to_vec();
        many.put_u32(17);
        many.extend(std::iter::repeat_n(0u8, 17 * 4));
        assert!(
            caller(&Cred {
                flavor: AUTH_SYS,
                body: &many
            })
            .is_none()
        );
        assert_eq!(
            caller(&Cred {
                flavor: AUTH_NULL,
                body: &[]
            }),
            Some(Caller::nobody())
        );
        assert!(
            caller(&Cred {
                flavor: 6,
                body: &[]
            })
            .is_none()
        );
    }

    #[test]
    fn policy_always_allows_root() {
        let p = Policy::new(&[1234]);
        assert!(p.allows(0));
        assert!(p.allows(1234));
        if cfg!(unix) {
            assert!(p.allows(daemon_euid().unwrap()));
            if daemon_euid() != Some(4321) {
                assert!(!p.allows(4321));
            }
        }
    }

    #[test]
    fn proc_net_tcp_lines_are_matched() {
        let peer: std::net::SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let local: std::net::SocketAddr = "127.0.0.1:2049".parse().unwrap();
        let lo = u32::from_ne_bytes([127, 0, 0, 1]);
        let table = format!(
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
             0: {lo:08X}:0801 {lo:08X}:9C40 01 00000000:00000000 00:00000000 00000000     0        0 1\n\
             1: {lo:08X}:9C40 {lo:08X}:0801 01 00000000:00000000 00:00000000 00000000  1000        0 2\n"
        );
        assert_eq!(find_owner(&table, peer, local), Some(1000));
        assert_eq!(find_owner(&table, local, peer), Some(0));
        let other: std::net::SocketAddr = "127.0.0.1:40001".parse().unwrap();
        assert_eq!(find_owner(&table, other, local), None);
        // IPv4-mapped IPv6 in tcp6.
        let w = |b: [u8; 4]| u32::from_ne_bytes(b);
        let v6 = format!("{:08X}{:08X}{:08X}{:08X}", 0, 0, w([0, 0, 0xff, 0xff]), lo);
        let table6 = format!("header\n 0: {v6}:9C40 {v6}:0801 01 0:0 0:0 0 33 0 3\n");
        assert_eq!(find_owner(&table6, peer, local), Some(33));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn own_socket_is_found() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (_s, peer) = l.accept().unwrap();
        assert_eq!(peer, c.local_addr().unwrap());
        assert_eq!(peer_uid(peer, l.local_addr().unwrap()), daemon_euid());
    }
}
