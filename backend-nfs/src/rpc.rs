//! ONC RPC (RFC 5531) over TCP: record marking, the call header, reply framing, and a
//! bounded XDR reader.
//!
//! Replies are encoded with nfsserve's [`XDR`] trait and types; requests are decoded with
//! [`Dec`], not with nfsserve's `deserialize`, because its variable-length decoders
//! resize a `Vec` to whatever length the client wrote before reading a byte, so a 4-byte
//! length of 0xffffffff would allocate 4 GiB. `Dec` checks every length against the bytes
//! actually left in the record (itself bounded by [`MAX_RECORD`]) and against the
//! protocol's own limit for that field.

use std::io;

use nfsserve::xdr::XDR;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The largest record accepted: a 1 MiB WRITE plus room for RPC and NFS headers. A client
/// announcing more is dropped before anything is allocated.
pub const MAX_RECORD: usize = (1 << 20) + 4096;

/// Largest opaque credential or verifier body (RFC 5531).
const MAX_AUTH_BODY: usize = 400;

/// The RPC message types.
const CALL: u32 = 0;
const REPLY: u32 = 1;
/// reply_stat.
const MSG_ACCEPTED: u32 = 0;
const MSG_DENIED: u32 = 1;
/// reject_stat.
const RPC_MISMATCH: u32 = 0;
const AUTH_ERROR: u32 = 1;

/// Authentication flavors.
pub const AUTH_NULL: u32 = 0;
/// AUTH_SYS (a.k.a. AUTH_UNIX).
pub const AUTH_SYS: u32 = 1;

/// accept_stat values other than SUCCESS that the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptError {
    /// The program is not served here.
    ProgUnavail,
    /// The program is served, but not this version; carries the supported range.
    ProgMismatch {
        /// Lowest supported version.
        low: u32,
        /// Highest supported version.
        high: u32,
    },
    /// The procedure number is unknown.
    ProcUnavail,
    /// The arguments could not be decoded.
    GarbageArgs,
    /// The server failed internally (a panic or a lost worker).
    SystemErr,
}

/// auth_stat values used in AUTH_ERROR replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum AuthStat {
    /// The credentials are malformed or of an unknown flavor.
    BadCred = 1,
    /// The credentials are valid but not good enough: the uid is not allowed.
    TooWeak = 5,
}

/// A malformed request: the connection carrying it cannot be trusted any further.
#[derive(Debug)]
pub struct Garbage;

impl From<Garbage> for io::Error {
    fn from(_: Garbage) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, "malformed XDR")
    }
}

/// A bounded XDR reader over one record.
pub struct Dec<'a> {
    buf: &'a [u8],
}

impl<'a> Dec<'a> {
    /// Reads from `buf`.
    pub fn new(buf: &'a [u8]) -> Dec<'a> {
        Dec { buf }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Garbage> {
        if n > self.buf.len() {
            return Err(Garbage);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// An unsigned 32-bit integer.
    pub fn u32(&mut self) -> Result<u32, Garbage> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// An unsigned 64-bit integer.
    pub fn u64(&mut self) -> Result<u64, Garbage> {
        let hi = self.u32()?;
        let lo = self.u32()?;
        Ok((u64::from(hi) << 32) | u64::from(lo))
    }

    /// An XDR bool: 0 or 1, anything else is garbage.
    pub fn bool(&mut self) -> Result<bool, Garbage> {
        match self.u32()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Garbage),
        }
    }

    /// Fixed-length opaque data of `N` bytes (multiple of 4 in every use here).
    pub fn fixed<const N: usize>(&mut self) -> Result<[u8; N], Garbage> {
        let b = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        self.skip_pad(N)?;
        Ok(out)
    }

    /// Variable-length opaque data of at most `max` bytes, borrowed from the record.
    pub fn opaque(&mut self, max: usize) -> Result<&'a [u8], Garbage> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(Garbage);
        }
        let data = self.take(len)?;
        self.skip_pad(len)?;
        Ok(data)
    }

    fn skip_pad(&mut self, len: usize) -> Result<(), Garbage> {
        let pad = (4 - len % 4) % 4;
        self.take(pad).map(|_| ())
    }

    /// Decodes a fixed-size nfsserve type (no variable-length member, so its own
    /// `deserialize` cannot allocate) from the record.
    pub fn fixed_xdr<T: XDR + Default>(&mut self) -> Result<T, Garbage> {
        let mut cursor = io::Cursor::new(self.buf);
        let mut v = T::default();
        v.deserialize(&mut cursor).map_err(|_| Garbage)?;
        let used = usize::try_from(cursor.position()).map_err(|_| Garbage)?;
        self.take(used)?;
        Ok(v)
    }

    /// The bytes not consumed yet.
    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }
}

/// An XDR writer: appends to a `Vec`.
pub trait Enc {
    /// Appends a u32.
    fn put_u32(&mut self, v: u32);
    /// Appends a u64.
    fn put_u64(&mut self, v: u64);
    /// Appends a bool.
    fn put_bool(&mut self, v: bool);
    /// Appends variable-length opaque data with its length and padding.
    fn put_opaque(&mut self, data: &[u8]);
    /// Appends an nfsserve value. Writing to a `Vec` cannot fail.
    fn put<T: XDR>(&mut self, v: &T);
}

impl Enc for Vec<u8> {
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_bool(&mut self, v: bool) {
        self.put_u32(u32::from(v));
    }
    fn put_opaque(&mut self, data: &[u8]) {
        // Every opaque the server writes is bounded far below 4 GiB (names, paths,
        // handles, reads clamped to 1 MiB); saturate rather than wrap regardless.
        self.put_u32(u32::try_from(data.len()).unwrap_or(u32::MAX));
        self.extend_from_slice(data);
        let pad = (4 - data.len() % 4) % 4;
        self.extend_from_slice(&[0u8; 3][..pad]);
    }
    fn put<T: XDR>(&mut self, v: &T) {
        // `Write for Vec<u8>` never fails, and nfsserve's serializers only fail when the
        // writer does.
        let _ = v.serialize(self);
    }
}

/// The credentials of a call, as sent.
#[derive(Debug, Clone)]
pub struct Cred<'a> {
    /// The flavor (AUTH_NULL, AUTH_SYS, ...).
    pub flavor: u32,
    /// The flavor's body, at most 400 bytes.
    pub body: &'a [u8],
}

/// A decoded call header; the procedure's arguments follow in `args`.
#[derive(Debug)]
pub struct Call<'a> {
    /// Transaction id, echoed in the reply.
    pub xid: u32,
    /// Program number.
    pub prog: u32,
    /// Program version.
    pub vers: u32,
    /// Procedure number.
    pub proc_: u32,
    /// The caller's credentials.
    pub cred: Cred<'a>,
    /// The argument bytes.
    pub args: &'a [u8],
}

/// What parsing a record's header gave.
#[derive(Debug)]
pub enum Header<'a> {
    /// A well-formed call.
    Call(Call<'a>),
    /// An RPC version other than 2: answer RPC_MISMATCH with this xid.
    RpcMismatch(u32),
}

/// Parses the call header of one record. `Err` means the record is not an RPC call at
/// all (garbage, a reply, a truncated header): the connection is dropped.
pub fn parse_call(record: &[u8]) -> Result<Header<'_>, Garbage> {
    let mut d = Dec::new(record);
    let xid = d.u32()?;
    if d.u32()? != CALL {
        return Err(Garbage);
    }
    if d.u32()? != 2 {
        return Ok(Header::RpcMismatch(xid));
    }
    let prog = d.u32()?;
    let vers = d.u32()?;
    let proc_ = d.u32()?;
    let flavor = d.u32()?;
    let body = d.opaque(MAX_AUTH_BODY)?;
    let _verf_flavor = d.u32()?;
    let _verf_body = d.opaque(MAX_AUTH_BODY)?;
    Ok(Header::Call(Call {
        xid,
        prog,
        vers,
        proc_,
        cred: Cred { flavor, body },
        args: d.rest(),
    }))
}

/// Starts a record: 4 bytes of record mark (filled by [`finish_record`]) then the
/// accepted-SUCCESS reply header. The procedure's results are appended after it.
pub fn success_header(xid: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.put_u32(0); // record mark placeholder
    accepted_header(&mut out, xid);
    out.put_u32(0); // SUCCESS
    out
}

fn accepted_header(out: &mut Vec<u8>, xid: u32) {
    out.put_u32(xid);
    out.put_u32(REPLY);
    out.put_u32(MSG_ACCEPTED);
    out.put_u32(AUTH_NULL); // verifier flavor
    out.put_u32(0); // verifier length
}

/// A whole record answering `xid` with an accept_stat error.
pub fn accept_error(xid: u32, err: AcceptError) -> Vec<u8> {
    let mut out = Vec::with_capacity(40);
    out.put_u32(0);
    accepted_header(&mut out, xid);
    match err {
        AcceptError::ProgUnavail => out.put_u32(1),
        AcceptError::ProgMismatch { low, high } => {
            out.put_u32(2);
            out.put_u32(low);
            out.put_u32(high);
        }
        AcceptError::ProcUnavail => out.put_u32(3),
        AcceptError::GarbageArgs => out.put_u32(4),
        AcceptError::SystemErr => out.put_u32(5),
    }
    finish_record(out, 0)
}

/// A whole record denying `xid` for its credentials.
pub fn auth_error(xid: u32, stat: AuthStat) -> Vec<u8> {
    let mut out = Vec::with_capacity(24);
    out.put_u32(0);
    out.put_u32(xid);
    out.put_u32(REPLY);
    out.put_u32(MSG_DENIED);
    out.put_u32(AUTH_ERROR);
    out.put_u32(stat as u32);
    finish_record(out, 0)
}

/// A whole record answering a call of another RPC version.
pub fn rpc_mismatch(xid: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(24);
    out.put_u32(0);
    out.put_u32(xid);
    out.put_u32(REPLY);
    out.put_u32(MSG_DENIED);
    out.put_u32(RPC_MISMATCH);
    out.put_u32(2);
    out.put_u32(2);
    finish_record(out, 0)
}

/// Fills in the record mark of a buffer started by [`success_header`]: one last
/// fragment holding everything after the mark, and the `more` bytes sent after it.
pub fn finish_record(mut out: Vec<u8>, more: usize) -> Vec<u8> {
    let len = out.len().saturating_sub(4) + more;
    // Replies are at most a 1 MiB read plus headers, far below the 2^31 fragment limit.
    let mark = 0x8000_0000u32 | (u32::try_from(len).unwrap_or(0x7fff_ffff) & 0x7fff_ffff);
    out[..4].copy_from_slice(&mark.to_be_bytes());
    out
}

/// Reads one whole record (all its fragments). `Ok(None)` is a clean end of stream
/// between records; a record over [`MAX_RECORD`] or a stream ending inside one is an
/// error, and the caller drops the connection. A client can make the server allocate at
/// most [`MAX_RECORD`] bytes per record in flight, whatever length it announces.
pub async fn read_record<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Option<Vec<u8>>> {
    let mut record = Vec::new();
    loop {
        let mut mark = [0u8; 4];
        if record.is_empty() {
            // A clean EOF is only allowed before the first fragment's mark.
            let n = r.read(&mut mark[..1]).await?;
            if n == 0 {
                return Ok(None);
            }
            r.read_exact(&mut mark[1..]).await?;
        } else {
            r.read_exact(&mut mark).await?;
        }
        let mark = u32::from_be_bytes(mark);
        let last = mark & 0x8000_0000 != 0;
        let len = (mark & 0x7fff_ffff) as usize;
        let total = record.len().checked_add(len).filter(|t| *t <= MAX_RECORD);
        let Some(total) = total else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("RPC record over {MAX_RECORD} bytes"),
            ));
        };
        // Read into the spare capacity: no zeroing of a megabyte per WRITE first.
        record.reserve_exact(len);
        while record.len() < total {
            let want = (total - record.len()) as u64;
            if (&mut *r).take(want).read_buf(&mut record).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        if last {
            return Ok(Some(record));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opaque_lengths_are_bounded_by_the_record() {
        // Claims 4 GiB - 1 but carries 4 bytes: must fail without allocating.
        let buf = [0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4];
        assert!(Dec::new(&buf).opaque(usize::MAX).is_err());
        let buf = [0, 0, 0, 3, 1, 2, 3, 0];
        assert_eq!(Dec::new(&buf).opaque(3).unwrap(), &[1, 2, 3]);
        assert!(Dec::new(&buf).opaque(2).is_err());
        // Missing padding is garbage.
        let buf = [0, 0, 0, 3, 1, 2, 3];
        assert!(Dec::new(&buf).opaque(8).is_err());
    }

    #[test]
    fn bools_are_strict() {
        assert!(Dec::new(&[0, 0, 0, 2]).bool().is_err());
        assert!(Dec::new(&[0, 0, 0, 1]).bool().unwrap());
    }

    #[test]
    fn truncated_headers_are_garbage() {
        let mut call = Vec::new();
        for v in [7u32, CALL, 2, 100003, 3, 0, AUTH_NULL, 0, AUTH_NULL, 0] {
            call.put_u32(v);
        }
        assert!(matches!(parse_call(&call), Ok(Header::Call(_))));
        for cut in 0..call.len() {
            assert!(parse_call(&call[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[tokio::test]
    async fn oversized_records_are_refused() {
        let mut data: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(read_record(&mut data).await.is_err());
        let mut data: &[u8] = &[0x80, 0, 0, 4, 1, 2, 3];
        assert!(read_record(&mut data).await.is_err());
        let mut data: &[u8] = &[0, 0, 0, 1, 9, 0x80, 0, 0, 1, 8];
        assert_eq!(read_record(&mut data).await.unwrap(), Some(vec![9, 8]));
        let mut data: &[u8] = &[];
        assert_eq!(read_record(&mut data).await.unwrap(), None);
    }
}
