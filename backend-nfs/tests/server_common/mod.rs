//! A small synchronous ONC RPC client for the server tests: enough XDR to drive every
//! NFSv3, MOUNT and PORTMAP procedure and to read the replies, over std TCP.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use nfsserve::nfs::{fattr3, post_op_attr};
use nfsserve::xdr::XDR;

pub const NFS: u32 = 100003;
pub const MOUNT: u32 = 100005;
pub const PORTMAP: u32 = 100000;

/// XDR argument builder.
#[derive(Default, Clone)]
pub struct Args(pub Vec<u8>);

impl Args {
    pub fn new() -> Args {
        Args(Vec::new())
    }
    pub fn u32(mut self, v: u32) -> Args {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u64(mut self, v: u64) -> Args {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn opaque(mut self, d: &[u8]) -> Args {
        self = self.u32(d.len() as u32);
        self.0.extend_from_slice(d);
        self.0
            .extend(std::iter::repeat_n(0u8, (4 - d.len() % 4) % 4));
        self
    }
    pub fn fixed(mut self, d: &[u8]) -> Args {
        self.0.extend_from_slice(d);
        self
    }
    /// An sattr3 setting only the mode (or nothing).
    pub fn sattr_mode(self, mode: Option<u32>) -> Args {
        let a = match mode {
            Some(m) => self.u32(1).u32(m),
            None => self.u32(0),
        };
        a.u32(0).u32(0).u32(0).u32(0).u32(0)
    }
    pub fn sattr_size(self, size: u64) -> Args {
        self.u32(0).u32(0).u32(0).u32(1).u64(size).u32(0).u32(0)
    }
}

/// Reply reader.
pub struct R<'a>(pub &'a [u8]);

impl R<'_> {
    pub fn u32(&mut self) -> u32 {
        let v = u32::from_be_bytes(self.0[..4].try_into().unwrap());
        self.0 = &self.0[4..];
        v
    }
    pub fn u64(&mut self) -> u64 {
        let v = u64::from_be_bytes(self.0[..8].try_into().unwrap());
        self.0 = &self.0[8..];
        v
    }
    pub fn bool(&mut self) -> bool {
        self.u32() != 0
    }
    pub fn opaque(&mut self) -> Vec<u8> {
        let n = self.u32() as usize;
        let v = self.0[..n].to_vec();
        self.0 = &self.0[n + (4 - n % 4) % 4..];
        v
    }
    pub fn fixed(&mut self, n: usize) -> Vec<u8> {
        let v = self.0[..n].to_vec();
        self.0 = &self.0[n..];
        v
    }
    pub fn fattr(&mut self) -> fattr3 {
        let mut c = std::io::Cursor::new(self.0);
        let mut f = fattr3::default();
        f.deserialize(&mut c).unwrap();
        self.0 = &self.0[c.position() as usize..];
        f
    }
    pub fn post_op(&mut self) -> Option<fattr3> {
        let mut c = std::io::Cursor::new(self.0);
        let mut p = post_op_attr::default();
        p.deserialize(&mut c).unwrap();
        self.0 = &self.0[c.position() as usize..];
        match p {
            post_op_attr::attributes(a) => Some(a),
            post_op_attr::Void => None,
        }
    }
    /// Skips pre_op_attr + post_op_attr.
    pub fn wcc(&mut self) -> Option<fattr3> {
        if self.bool() {
            self.fixed(24);
        }
        self.post_op()
    }
    pub fn post_op_fh(&mut self) -> Option<Vec<u8>> {
        if self.bool() {
            Some(self.opaque())
        } else {
            None
        }
    }
}

/// What an RPC call got back.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// MSG_ACCEPTED / SUCCESS with these result bytes.
    Ok(Vec<u8>),
    /// MSG_ACCEPTED with another accept_stat.
    AcceptErr(u32),
    /// MSG_DENIED: (reject_stat, detail).
    Denied(u32, u32),
}

impl Reply {
    pub fn body(&self) -> &[u8] {
        match self {
            Reply::Ok(b) => b,
            other => panic!("call failed: {other:?}"),
        }
    }
}

pub struct Client {
    pub s: TcpStream,
    xid: u32,
    pub flavor: u32,
    pub cred: Vec<u8>,
}

pub fn auth_sys(uid: u32, gid: u32, gids: &[u32]) -> Vec<u8> {
    let mut a = Args::new()
        .u32(0)
        .opaque(b"test")
        .u32(uid)
        .u32(gid)
        .u32(gids.len() as u32);
    for g in gids {
        a = a.u32(*g);
    }
    a.0
}

impl Client {
    /// Connects as root (AUTH_SYS uid 0).
    pub fn connect(port: u16) -> Client {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Client {
            s,
            xid: 1,
            flavor: 1,
            cred: auth_sys(0, 0, &[]),
        }
    }

    pub fn with_user(mut self, uid: u32, gid: u32) -> Client {
        self.cred = auth_sys(uid, gid, &[]);
        self
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
    }

    pub fn call_record(&mut self, prog: u32, vers: u32, proc_: u32, args: &[u8]) -> Vec<u8> {
        self.xid += 1;
        let msg = Args::new()
            .u32(self.xid)
            .u32(0)
            .u32(2)
            .u32(prog)
            .u32(vers)
            .u32(proc_)
            .u32(self.flavor)
            .opaque(&self.cred.clone())
            .u32(0)
            .u32(0)
            .fixed(args);
        let mut rec = (0x8000_0000u32 | msg.0.len() as u32).to_be_bytes().to_vec();
        rec.extend_from_slice(&msg.0);
        rec
    }

    /// Reads one reply record; None on EOF or error.
    pub fn read_reply(&mut self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let mut m = [0u8; 4];
            self.s.read_exact(&mut m).ok()?;
            let m = u32::from_be_bytes(m);
            let start = out.len();
            out.resize(start + (m & 0x7fff_ffff) as usize, 0);
            self.s.read_exact(&mut out[start..]).ok()?;
            if m & 0x8000_0000 != 0 {
                return Some(out);
            }
        }
    }

    pub fn call(&mut self, prog: u32, vers: u32, proc_: u32, args: &Args) -> Reply {
        let rec = self.call_record(prog, vers, proc_, &args.0);
        self.send_raw(&rec);
        let reply = self.read_reply().expect("no reply");
        let mut r = R(&reply);
        assert_eq!(r.u32(), self.xid, "xid");
        assert_eq!(r.u32(), 1, "REPLY");
        match r.u32() {
            0 => {
                let _flavor = r.u32();
                let _verf = r.opaque();
                match r.u32() {
                    0 => Reply::Ok(r.0.to_vec()),
                    s => Reply::AcceptErr(s),
                }
            }
            _ => {
                let a = r.u32();
                let b = r.u32();
                Reply::Denied(a, b)
            }
        }
    }

    pub fn nfs(&mut self, proc_: u32, args: Args) -> Vec<u8> {
        self.call(NFS, 3, proc_, &args).body().to_vec()
    }

    /// MNT of `path`: the root handle.
    pub fn mnt(&mut self, path: &str) -> Vec<u8> {
        let b = self.call(MOUNT, 3, 1, &Args::new().opaque(path.as_bytes()));
        let mut r = R(b.body());
        assert_eq!(r.u32(), 0, "MNT status");
        r.opaque()
    }

    pub fn getattr(&mut self, fh: &[u8]) -> Result<fattr3, u32> {
        let b = self.nfs(1, Args::new().opaque(fh));
        let mut r = R(&b);
        match r.u32() {
            0 => Ok(r.fattr()),
            s => Err(s),
        }
    }

    pub fn lookup(&mut self, dir: &[u8], name: &str) -> Result<(Vec<u8>, fattr3), u32> {
        let b = self.nfs(3, Args::new().opaque(dir).opaque(name.as_bytes()));
        let mut r = R(&b);
        match r.u32() {
            0 => {
                let fh = r.opaque();
                let a = r.post_op().unwrap();
                Ok((fh, a))
            }
            s => Err(s),
        }
    }

    /// Parses a CREATE/MKDIR/SYMLINK/MKNOD result.
    pub fn new_obj(b: &[u8]) -> Result<(Vec<u8>, fattr3), u32> {
        let mut r = R(b);
        match r.u32() {
            0 => {
                let fh = r.post_op_fh().unwrap();
                let a = r.post_op().unwrap();
                Ok((fh, a))
            }
            s => Err(s),
        }
    }

    pub fn create(&mut self, dir: &[u8], name: &str, mode: u32) -> Result<(Vec<u8>, fattr3), u32> {
        let b = self.nfs(
            8,
            Args::new()
                .opaque(dir)
                .opaque(name.as_bytes())
                .u32(1)
                .sattr_mode(Some(mode)),
        );
        Self::new_obj(&b)
    }

    pub fn mkdir(&mut self, dir: &[u8], name: &str, mode: u32) -> Result<(Vec<u8>, fattr3), u32> {
        let b = self.nfs(
            9,
            Args::new()
                .opaque(dir)
                .opaque(name.as_bytes())
                .sattr_mode(Some(mode)),
        );
        Self::new_obj(&b)
    }

    /// WRITE: (count, committed, verifier).
    pub fn write(
        &mut self,
        fh: &[u8],
        off: u64,
        data: &[u8],
        stable: u32,
    ) -> Result<(u32, u32, Vec<u8>), u32> {
        let b = self.nfs(
            7,
            Args::new()
                .opaque(fh)
                .u64(off)
                .u32(data.len() as u32)
                .u32(stable)
                .opaque(data),
        );
        let mut r = R(&b);
        let s = r.u32();
        r.wcc();
        if s != 0 {
            return Err(s);
        }
        Ok((r.u32(), r.u32(), r.fixed(8)))
    }

    /// READ: (data, eof).
    pub fn read(&mut self, fh: &[u8], off: u64, count: u32) -> Result<(Vec<u8>, bool), u32> {
        let b = self.nfs(6, Args::new().opaque(fh).u64(off).u32(count));
        let mut r = R(&b);
        let s = r.u32();
        r.post_op();
        if s != 0 {
            return Err(s);
        }
        let n = r.u32();
        let eof = r.bool();
        let data = r.opaque();
        assert_eq!(n as usize, data.len());
        Ok((data, eof))
    }

    /// Status of a call whose failure and success both start with the status only.
    pub fn status(b: &[u8]) -> u32 {
        R(b).u32()
    }
}
