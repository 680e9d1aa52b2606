//! Check 1 on macOS: the uid owning the peer's end of an accepted loopback connection,
//! from the `net.inet.tcp.pcblist64` sysctl (see [`crate::auth`] for the policy and why
//! this one).
//!
//! The sysctl is readable by any user (it is what `netstat` reads) and returns, between
//! two `struct xinpgen` headers, one `struct xtcpcb64` per TCP socket. Those structures
//! are in the public SDK (`<netinet/tcp_var.h>`, `<netinet/in_pcb.h>`,
//! `<sys/socketvar.h>`, all `#pragma pack(4)`); the record embeds a `struct xinpcb64`
//! whose `xi_socket` is a `struct xsocket64` carrying `so_uid`, the uid of the
//! credential that created the socket. The kernel sets `xt_len`, `xi_len` and `xso_len`
//! to the sizes of the structures it wrote, so the parser checks all three against the
//! sizes the offsets below were derived from and gives up (rather than guess) if any
//! differs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// `sizeof(struct xinpgen)`: u32 len, u32 count, u64 gen, u64 sogen.
const XINPGEN_LEN: usize = 24;
/// `sizeof(struct xinpcb64)` under pack(4).
const XINPCB64_LEN: usize = 260;
/// `sizeof(struct xsocket64)` under pack(4).
const XSOCKET64_LEN: usize = 108;

/// Offsets inside `struct xtcpcb64`; the `xinpcb64` starts after the u32 `xt_len`.
const INPCB: usize = 4;
/// `xi_len` (u64).
const XI_LEN: usize = INPCB;
/// `inp_fport`, `inp_lport` (u16, network order).
const FPORT: usize = INPCB + 16;
const LPORT: usize = INPCB + 18;
/// `inp_vflag` (u8): INP_IPV4 0x1, INP_IPV6 0x2.
const VFLAG: usize = INPCB + 92;
/// `inp_dependfaddr`, `inp_dependladdr`: 16-byte unions of an `in6_addr` and an
/// `in_addr_4in6` (12 pad bytes, then the IPv4 address).
const FADDR: usize = INPCB + 96;
const LADDR: usize = INPCB + 112;
/// `xi_socket` (struct xsocket64), and in it `xso_len` (u32) and `so_uid` (u32).
const XSOCKET: usize = INPCB + 144;
const XSO_LEN: usize = XSOCKET;
const SO_UID: usize = XSOCKET + 104;

const INP_IPV4: u8 = 0x1;
const INP_IPV6: u8 = 0x2;

/// Why a `pcblist64` buffer was not understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LayoutError(pub &'static str);

/// Finds in a `net.inet.tcp.pcblist64` buffer the uid owning the socket whose local
/// endpoint is `peer` and whose foreign endpoint is `local`. `Ok(None)`: not listed.
#[cfg_attr(not(target_os = "macos"), allow(dead_code))]
pub(crate) fn find_owner(
    buf: &[u8],
    peer: SocketAddr,
    local: SocketAddr,
) -> Result<Option<u32>, LayoutError> {
    let u32_at = |at: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(
            buf.get(at..at.checked_add(4)?)?.try_into().ok()?,
        ))
    };
    if u32_at(0) != Some(XINPGEN_LEN as u32) {
        return Err(LayoutError("unexpected xinpgen header"));
    }
    let mut at = XINPGEN_LEN;
    while let Some(len) = u32_at(at) {
        let len = len as usize;
        if len == XINPGEN_LEN {
            // The closing xinpgen.
            return Ok(None);
        }
        let rec = at
            .checked_add(len)
            .and_then(|end| buf.get(at..end))
            .ok_or(LayoutError("record runs past the buffer"))?;
        if rec.len() < SO_UID + 4 {
            return Err(LayoutError("record shorter than xtcpcb64"));
        }
        let u32_in =
            |off: usize| u32::from_ne_bytes([rec[off], rec[off + 1], rec[off + 2], rec[off + 3]]);
        let xi_len = u64::from_ne_bytes(
            rec[XI_LEN..XI_LEN + 8]
                .try_into()
                .map_err(|_| LayoutError("xi_len"))?,
        );
        if xi_len != XINPCB64_LEN as u64 || u32_in(XSO_LEN) != XSOCKET64_LEN as u32 {
            return Err(LayoutError(
                "xinpcb64/xsocket64 sizes differ from the SDK's",
            ));
        }
        let port = |off: usize| u16::from_be_bytes([rec[off], rec[off + 1]]);
        let addr = |off: usize| -> Option<IpAddr> {
            let vflag = rec[VFLAG];
            if vflag & INP_IPV4 != 0 {
                let b = &rec[off + 12..off + 16];
                Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])))
            } else if vflag & INP_IPV6 != 0 {
                let b: [u8; 16] = rec[off..off + 16].try_into().ok()?;
                Some(IpAddr::V6(Ipv6Addr::from(b)))
            } else {
                None
            }
        };
        if let (Some(l), Some(f)) = (addr(LADDR), addr(FADDR)) {
            let l = SocketAddr::new(l, port(LPORT));
            let f = SocketAddr::new(f, port(FPORT));
            if crate::auth::same_addr(l, peer) && crate::auth::same_addr(f, local) {
                return Ok(Some(u32_in(SO_UID)));
            }
        }
        at += len;
    }
    // No closing header: the list was cut short, so absence proves nothing.
    Err(LayoutError("list not terminated"))
}

/// The uid owning the socket at `peer` connected to our `local` endpoint.
#[cfg(target_os = "macos")]
pub(crate) fn peer_uid(peer: SocketAddr, local: SocketAddr) -> Result<Option<u32>, String> {
    let buf = pcblist64().map_err(|e| format!("sysctl net.inet.tcp.pcblist64: {e}"))?;
    find_owner(&buf, peer, local).map_err(|LayoutError(why)| format!("pcblist64: {why}"))
}

/// Reads `net.inet.tcp.pcblist64`, growing the buffer while connections appear.
#[cfg(target_os = "macos")]
fn pcblist64() -> std::io::Result<Vec<u8>> {
    const NAME: &std::ffi::CStr = c"net.inet.tcp.pcblist64";
    for _ in 0..8 {
        let mut len: libc::size_t = 0;
        // SAFETY: NAME is NUL-terminated; a null old pointer asks only for the size,
        // written to the valid `len`; no new value is passed.
        let rc = unsafe {
            libc::sysctlbyname(
                NAME.as_ptr(),
                std::ptr::null_mut(),
                &mut len,
                std::ptr::null_mut(),
                0,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // The kernel's estimate already has 1/8 slack; add a little more.
        len = len.saturating_add(len / 8).saturating_add(4096);
        let mut buf = vec![0u8; len];
        // SAFETY: `buf` is a live, writable allocation of `len` bytes, and `len` tells
        // the kernel so; it writes at most that and updates `len` to what it wrote.
        let rc = unsafe {
            libc::sysctlbyname(
                NAME.as_ptr(),
                buf.as_mut_ptr().cast(),
                &mut len,
                std::ptr::null_mut(),
                0,
            )
        };
        if rc == 0 {
            buf.truncate(len);
            return Ok(buf);
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ENOMEM) {
            return Err(err);
        }
    }
    Err(std::io::Error::other("the TCP list kept growing"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const XTCPCB64_LEN: usize = 404;

    fn header() -> Vec<u8> {
        let mut h = vec![0u8; XINPGEN_LEN];
        h[..4].copy_from_slice(&(XINPGEN_LEN as u32).to_ne_bytes());
        h
    }

    /// One xtcpcb64 as the kernel writes it.
    fn record(local: SocketAddr, foreign: SocketAddr, uid: u32) -> Vec<u8> {
        let mut r = vec![0u8; XTCPCB64_LEN];
        r[..4].copy_from_slice(&(XTCPCB64_LEN as u32).to_ne_bytes());
        r[XI_LEN..XI_LEN + 8].copy_from_slice(&(XINPCB64_LEN as u64).to_ne_bytes());
        r[FPORT..FPORT + 2].copy_from_slice(&foreign.port().to_be_bytes());
        r[LPORT..LPORT + 2].copy_from_slice(&local.port().to_be_bytes());
        for (off, a) in [(FADDR, foreign), (LADDR, local)] {
            match a.ip() {
                IpAddr::V4(v4) => {
                    r[VFLAG] = INP_IPV4;
                    r[off + 12..off + 16].copy_from_slice(&v4.octets());
                }
                IpAddr::V6(v6) => {
                    r[VFLAG] = INP_IPV6;
                    r[off..off + 16].copy_from_slice(&v6.octets());
                }
            }
        }
        r[XSO_LEN..XSO_LEN + 4].copy_from_slice(&(XSOCKET64_LEN as u32).to_ne_bytes());
        r[SO_UID..SO_UID + 4].copy_from_slice(&uid.to_ne_bytes());
        r
    }

    fn list(records: &[Vec<u8>]) -> Vec<u8> {
        let mut b = header();
        for r in records {
            b.extend_from_slice(r);
        }
        b.extend(header());
        b
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn offsets_follow_the_packed_sdk_layout() {
        // xsocket64 under pack(4): u32 len, u64 so, 4 shorts, u64 pcb, 2 ints, 5 shorts
        // (so_error is a u_short at 44), pid_t at 48, u32 oobmark, 2 xsockbufs of 24,
        // uid_t at 104.
        assert_eq!(4 + 8 + 8 + 8 + 8 + 10 + 2 + 4 + 4 + 24 + 24, 104);
        assert_eq!(104 + 4, XSOCKET64_LEN);
        // xinpcb64: u64 len, u64 inpp, 2 ports, list (16), ppcb, pcbinfo, portlist
        // (16), phd, gencnt, int flags, u32 flow, 3 u8 (+1 pad), 2 x 16-byte unions,
        // u8 tos (+3 pad), 12-byte depend6, xsocket64, u64 alignment hack.
        let xsocket = 8 + 8 + 4 + 16 + 8 + 8 + 16 + 8 + 8 + 4 + 4 + 4 + 16 + 16 + 4 + 12;
        assert_eq!(xsocket, XSOCKET - INPCB);
        assert_eq!(xsocket + XSOCKET64_LEN + 8, XINPCB64_LEN);
        assert_eq!(
            FADDR - INPCB,
            8 + 8 + 4 + 16 + 8 + 8 + 16 + 8 + 8 + 4 + 4 + 4
        );
    }

    #[test]
    fn the_peer_socket_gives_its_uid() {
        let peer = sa("127.0.0.1:50123");
        let ours = sa("127.0.0.1:2049");
        let buf = list(&[
            record(ours, peer, 501),
            record(peer, sa("127.0.0.1:2050"), 502),
            record(peer, ours, 503),
        ]);
        assert_eq!(find_owner(&buf, peer, ours), Ok(Some(503)));
        assert_eq!(find_owner(&buf, ours, peer), Ok(Some(501)));
        assert_eq!(find_owner(&buf, sa("127.0.0.1:1"), ours), Ok(None));
        // A dual-stack socket listed with IPv6 (mapped) addresses.
        let m = sa("[::ffff:127.0.0.1]:50124");
        let buf = list(&[record(m, sa("[::ffff:127.0.0.1]:2049"), 0)]);
        assert_eq!(find_owner(&buf, sa("127.0.0.1:50124"), ours), Ok(Some(0)));
        assert_eq!(find_owner(&list(&[]), peer, ours), Ok(None));
    }

    #[test]
    fn unexpected_layouts_are_errors_not_guesses() {
        let peer = sa("127.0.0.1:50123");
        let ours = sa("127.0.0.1:2049");
        let good = record(peer, ours, 503);
        // A different xi_len or xso_len: the structures changed.
        let mut r = good.clone();
        r[XI_LEN] ^= 1;
        assert!(find_owner(&list(&[r]), peer, ours).is_err());
        let mut r = good.clone();
        r[XSO_LEN] ^= 1;
        assert!(find_owner(&list(&[r]), peer, ours).is_err());
        // A record too short for the fields, or running past the buffer.
        let mut r = good.clone();
        r.truncate(100);
        r[..4].copy_from_slice(&100u32.to_ne_bytes());
        assert!(find_owner(&list(&[r]), peer, ours).is_err());
        let mut buf = list(std::slice::from_ref(&good));
        buf.truncate(XINPGEN_LEN + 50);
        assert!(find_owner(&buf, peer, ours).is_err());
        // No closing header, a zero length, a bad first header, an empty buffer.
        let mut buf = header();
        buf.extend_from_slice(&good);
        assert!(find_owner(&buf, sa("127.0.0.1:9"), ours).is_err());
        let mut buf = header();
        buf.extend_from_slice(&[0; 8]);
        assert!(find_owner(&buf, peer, ours).is_err());
        assert!(find_owner(&good, peer, ours).is_err());
        assert!(find_owner(&[], peer, ours).is_err());
    }
}
