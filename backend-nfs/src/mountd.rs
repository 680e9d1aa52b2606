//! MOUNT v3 (RFC 1813 appendix I) and PORTMAP v2 (RFC 1833), served on the NFS port.
//!
//! Clients are told the port (`mountport=P`, `port=P`), so the portmapper is only a
//! courtesy for tools that ask it anyway: GETPORT answers this server's port for NFS v3
//! and MOUNT v3 over TCP and 0 for everything else; SET and UNSET are refused.

use std::ffi::OsStr;

use vmount_core::{Attr, FileType, Ino, VfsError};

use crate::auth::Caller;
use crate::rpc::{AUTH_SYS, AcceptError, Dec, Enc};
use crate::server::{PROG_MOUNT, PROG_NFS, Shared};

/// Longest MOUNT path (MNTPATHLEN).
const MNTPATHLEN: usize = 1024;
/// Most clients remembered for DUMP.
const MAX_DUMP: usize = 64;

/// mountstat3 values.
const MNT3_OK: u32 = 0;
const MNT3ERR_NOENT: u32 = 2;
const MNT3ERR_ACCES: u32 = 13;
const MNT3ERR_NOTDIR: u32 = 20;

/// IPPROTO_TCP as the portmapper numbers it.
const IPPROTO_TCP: u32 = 6;

/// The directory a MNT path names: the export itself, or (as knfsd allows) a directory
/// below it, which libnfs asks for when given a URL with a subdirectory.
fn resolve(shared: &Shared, caller: &Caller, path: &[u8]) -> Result<Ino, u32> {
    let export = shared.export_path.as_bytes();
    let rest = path.strip_prefix(export).ok_or(MNT3ERR_NOENT)?;
    if rest.iter().all(|b| *b == b'/') {
        return Ok(Ino::ROOT);
    }
    if rest.first() != Some(&b'/') {
        return Err(MNT3ERR_NOENT);
    }
    let rest = std::str::from_utf8(rest).map_err(|_| MNT3ERR_NOENT)?;
    let attr = walk(shared, caller, rest).map_err(|e| match e {
        VfsError::PermissionDenied | VfsError::NotPermitted => MNT3ERR_ACCES,
        VfsError::NotDir => MNT3ERR_NOTDIR,
        _ => MNT3ERR_NOENT,
    })?;
    if attr.kind != FileType::Directory {
        return Err(MNT3ERR_NOTDIR);
    }
    Ok(attr.ino)
}

/// Looks up `path` below the root like [`vmount_core::walk_path`], but records each
/// directory's parent on the way: the handle MNT returns is the client's root, and its
/// `..` (LOOKUP and READDIR) must resolve although no LOOKUP ever led there. As with NFS
/// LOOKUP, the lookups are kept, not forgotten, because those inodes may now be named by
/// handles.
fn walk(shared: &Shared, caller: &Caller, path: &str) -> Result<Attr, VfsError> {
    let ctx = caller.ctx();
    let mut attr = shared.fs.getattr(&ctx, Ino::ROOT, None)?;
    for comp in path.split('/') {
        if comp.is_empty() || comp == "." {
            continue;
        }
        if comp == ".." {
            return Err(VfsError::InvalidArgument);
        }
        if attr.kind != FileType::Directory {
            return Err(VfsError::NotDir);
        }
        let next = shared.fs.lookup(&ctx, attr.ino, OsStr::new(comp))?;
        if next.kind == FileType::Directory {
            shared.handles.set_parent(next.ino, attr.ino);
        }
        attr = next;
    }
    Ok(attr)
}

/// Handles one MOUNT v3 call, appending its results to `out`.
pub(crate) fn mount(
    shared: &Shared,
    proc_: u32,
    caller: &Caller,
    args: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), AcceptError> {
    let mut d = Dec::new(args);
    match proc_ {
        0 => Ok(()),
        1 => {
            let path = d.opaque(MNTPATHLEN).map_err(|_| AcceptError::GarbageArgs)?;
            let dir = match resolve(shared, caller, path) {
                Ok(dir) => dir,
                Err(stat) => {
                    tracing::info!(path = %String::from_utf8_lossy(path), stat, "MNT refused");
                    out.put_u32(stat);
                    return Ok(());
                }
            };
            {
                let mut mounts = shared.mounts.lock();
                let entry = (
                    "127.0.0.1".to_owned(),
                    String::from_utf8_lossy(path).into_owned(),
                );
                if !mounts.contains(&entry) && mounts.len() < MAX_DUMP {
                    mounts.push(entry);
                }
            }
            out.put_u32(MNT3_OK);
            out.put_opaque(&shared.handles.encode(dir));
            out.put_u32(1); // one flavor
            out.put_u32(AUTH_SYS);
            Ok(())
        }
        2 => {
            for (host, dir) in shared.mounts.lock().iter() {
                out.put_bool(true);
                out.put_opaque(host.as_bytes());
                out.put_opaque(dir.as_bytes());
            }
            out.put_bool(false);
            Ok(())
        }
        3 => {
            let path = d.opaque(MNTPATHLEN).map_err(|_| AcceptError::GarbageArgs)?;
            let path = String::from_utf8_lossy(path).into_owned();
            shared.mounts.lock().retain(|(_, dir)| *dir != path);
            Ok(())
        }
        4 => {
            shared.mounts.lock().clear();
            Ok(())
        }
        5 => {
            out.put_bool(true);
            out.put_opaque(shared.export_path.as_bytes());
            out.put_bool(false); // no group restriction: the peer and uid checks apply
            out.put_bool(false);
            Ok(())
        }
        _ => Err(AcceptError::ProcUnavail),
    }
}

/// Handles one PORTMAP v2 call.
pub(crate) fn portmap(
    shared: &Shared,
    proc_: u32,
    args: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), AcceptError> {
    let mut d = Dec::new(args);
    let garbage = |_| AcceptError::GarbageArgs;
    match proc_ {
        0 => Ok(()),
        // SET, UNSET: nobody registers with this portmapper.
        1 | 2 => {
            for _ in 0..4 {
                d.u32().map_err(garbage)?;
            }
            out.put_bool(false);
            Ok(())
        }
        3 => {
            let prog = d.u32().map_err(garbage)?;
            let vers = d.u32().map_err(garbage)?;
            let prot = d.u32().map_err(garbage)?;
            let _port = d.u32().map_err(garbage)?;
            let served = matches!(prog, PROG_NFS | PROG_MOUNT) && vers == 3 && prot == IPPROTO_TCP;
            out.put_u32(if served { u32::from(shared.port) } else { 0 });
            Ok(())
        }
        4 => {
            for prog in [PROG_NFS, PROG_MOUNT] {
                out.put_bool(true);
                out.put_u32(prog);
                out.put_u32(3);
                out.put_u32(IPPROTO_TCP);
                out.put_u32(u32::from(shared.port));
            }
            out.put_bool(false);
            Ok(())
        }
        _ => Err(AcceptError::ProcUnavail),
    }
}
