//! Free functions between vmount's types and NFSv3's (the orphan rule forbids `From`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nfsserve::nfs::{
    fattr3, ftype3, nfsstat3, nfstime3, pre_op_attr, sattr3, set_atime, set_gid3, set_mode3,
    set_mtime, set_size3, set_uid3, specdata3, wcc_attr,
};
use vmount_core::{Attr, FileType, SetAttr, SetTime, VfsError};

/// The NFSv3 status for a filesystem error: one exhaustive match, so a new `VfsError`
/// variant does not compile until it has a status here.
pub fn status(e: &VfsError) -> nfsstat3 {
    use nfsstat3::*;
    match e {
        VfsError::NotFound => NFS3ERR_NOENT,
        VfsError::Exists => NFS3ERR_EXIST,
        VfsError::NotDir => NFS3ERR_NOTDIR,
        VfsError::IsDir => NFS3ERR_ISDIR,
        VfsError::NotEmpty => NFS3ERR_NOTEMPTY,
        VfsError::PermissionDenied => NFS3ERR_ACCES,
        VfsError::NotPermitted => NFS3ERR_PERM,
        VfsError::ReadOnly => NFS3ERR_ROFS,
        VfsError::InvalidArgument => NFS3ERR_INVAL,
        VfsError::NameTooLong => NFS3ERR_NAMETOOLONG,
        VfsError::NoSpace => NFS3ERR_NOSPC,
        VfsError::CrossDevice => NFS3ERR_XDEV,
        VfsError::Stale => NFS3ERR_STALE,
        VfsError::BadHandle => NFS3ERR_BADHANDLE,
        VfsError::FileTooLarge => NFS3ERR_FBIG,
        VfsError::TooManyLinks => NFS3ERR_MLINK,
        // NFSv3 has no xattrs; these only arise from calls the server does not make.
        VfsError::NoAttribute => NFS3ERR_NOTSUPP,
        VfsError::Range => NFS3ERR_INVAL,
        // The Linux server answers EBUSY with JUKEBOX ("try again later").
        VfsError::Busy => NFS3ERR_JUKEBOX,
        // The Linux client maps NFS3ERR_INVAL on symlink loops to EINVAL; knfsd sends
        // ELOOP as NFS3ERR_INVAL too, there being no NFSv3 status for it.
        VfsError::Loop => NFS3ERR_INVAL,
        VfsError::NoDataAtOffset => NFS3ERR_NXIO,
        VfsError::Unimplemented | VfsError::NotSupported => NFS3ERR_NOTSUPP,
        VfsError::Io(_) => NFS3ERR_IO,
    }
}

/// The status for an error on an object named by a handle: an inode the filesystem no
/// longer knows is a stale handle, not a missing name.
pub fn handle_status(e: &VfsError) -> nfsstat3 {
    match e {
        VfsError::NotFound | VfsError::Stale => nfsstat3::NFS3ERR_STALE,
        other => status(other),
    }
}

/// Seconds and nanoseconds since the epoch, clamped to what nfstime3 holds (times before
/// 1970 become 1970; NFSv3's unsigned 32-bit seconds end in 2106).
pub fn time(t: SystemTime) -> nfstime3 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => match u32::try_from(d.as_secs()) {
            Ok(seconds) => nfstime3 {
                seconds,
                nseconds: d.subsec_nanos(),
            },
            Err(_) => nfstime3 {
                seconds: u32::MAX,
                nseconds: 999_999_999,
            },
        },
        Err(_) => nfstime3::default(),
    }
}

/// The instant an nfstime3 names (nanoseconds over 10^9 are clamped).
pub fn system_time(t: nfstime3) -> SystemTime {
    UNIX_EPOCH + Duration::new(u64::from(t.seconds), t.nseconds.min(999_999_999))
}

/// NFS's file type for vmount's.
pub fn ftype(kind: FileType) -> ftype3 {
    match kind {
        FileType::RegularFile => ftype3::NF3REG,
        FileType::Directory => ftype3::NF3DIR,
        FileType::Symlink => ftype3::NF3LNK,
        FileType::Fifo => ftype3::NF3FIFO,
        FileType::Socket => ftype3::NF3SOCK,
        FileType::CharDevice => ftype3::NF3CHR,
        FileType::BlockDevice => ftype3::NF3BLK,
    }
}

/// Splits a device number into (major, minor) as this OS's `dev_t` encodes it.
pub fn split_rdev(rdev: u64) -> (u32, u32) {
    if cfg!(target_os = "macos") {
        (((rdev >> 24) & 0xff) as u32, (rdev & 0xff_ffff) as u32)
    } else {
        // glibc's encoding (also used on Windows, where there is no dev_t to match).
        let major = ((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0xfff);
        let minor = ((rdev >> 12) & 0xffff_ff00) | (rdev & 0xff);
        (major as u32, minor as u32)
    }
}

/// Joins (major, minor) into this OS's `dev_t` encoding.
pub fn make_rdev(major: u32, minor: u32) -> u64 {
    let (major, minor) = (u64::from(major), u64::from(minor));
    if cfg!(target_os = "macos") {
        ((major & 0xff) << 24) | (minor & 0xff_ffff)
    } else {
        ((major & 0xffff_f000) << 32)
            | ((major & 0xfff) << 8)
            | ((minor & 0xffff_ff00) << 12)
            | (minor & 0xff)
    }
}

/// The NFS attributes of `a`; `fsid` identifies this export.
pub fn fattr(a: &Attr, fsid: u64) -> fattr3 {
    let (specdata1, specdata2) = split_rdev(a.rdev);
    fattr3 {
        ftype: ftype(a.kind),
        mode: u32::from(a.perm) & 0o7777,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        size: a.size,
        used: a.blocks.saturating_mul(512),
        rdev: specdata3 {
            specdata1,
            specdata2,
        },
        fsid,
        fileid: a.ino.0,
        atime: time(a.atime),
        mtime: time(a.mtime),
        ctime: time(a.ctime),
    }
}

/// The pre-operation attributes of weak cache consistency data.
pub fn pre_op(a: Option<&Attr>) -> pre_op_attr {
    match a {
        Some(a) => pre_op_attr::attributes(wcc_attr {
            size: a.size,
            mtime: time(a.mtime),
            ctime: time(a.ctime),
        }),
        None => pre_op_attr::Void,
    }
}

/// The changes an sattr3 asks for. Modes keep only permission bits.
pub fn set_attr(s: &sattr3) -> SetAttr {
    SetAttr {
        mode: match s.mode {
            set_mode3::mode(m) => Some(m & 0o7777),
            set_mode3::Void => None,
        },
        uid: match s.uid {
            set_uid3::uid(u) => Some(u),
            set_uid3::Void => None,
        },
        gid: match s.gid {
            set_gid3::gid(g) => Some(g),
            set_gid3::Void => None,
        },
        size: match s.size {
            set_size3::size(n) => Some(n),
            set_size3::Void => None,
        },
        atime: match s.atime {
            set_atime::DONT_CHANGE => None,
            set_atime::SET_TO_SERVER_TIME => Some(SetTime::Now),
            set_atime::SET_TO_CLIENT_TIME(t) => Some(SetTime::At(system_time(t))),
        },
        mtime: match s.mtime {
            set_mtime::DONT_CHANGE => None,
            set_mtime::SET_TO_SERVER_TIME => Some(SetTime::Now),
            set_mtime::SET_TO_CLIENT_TIME(t) => Some(SetTime::At(system_time(t))),
        },
        ctime: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_a_status() {
        let cases = [
            (VfsError::NotFound, 2),
            (VfsError::Exists, 17),
            (VfsError::NotDir, 20),
            (VfsError::IsDir, 21),
            (VfsError::NotEmpty, 66),
            (VfsError::PermissionDenied, 13),
            (VfsError::NotPermitted, 1),
            (VfsError::ReadOnly, 30),
            (VfsError::InvalidArgument, 22),
            (VfsError::NameTooLong, 63),
            (VfsError::NoSpace, 28),
            (VfsError::CrossDevice, 18),
            (VfsError::Stale, 70),
            (VfsError::BadHandle, 10001),
            (VfsError::FileTooLarge, 27),
            (VfsError::TooManyLinks, 31),
            (VfsError::NoAttribute, 10004),
            (VfsError::Range, 22),
            (VfsError::Busy, 10008),
            (VfsError::Loop, 22),
            (VfsError::NoDataAtOffset, 6),
            (VfsError::Unimplemented, 10004),
            (VfsError::NotSupported, 10004),
            (VfsError::Io(std::io::Error::other("disk")), 5),
        ];
        for (e, code) in cases {
            // Keep this list complete: the match below fails to compile on a new variant.
            match e {
                VfsError::NotFound
                | VfsError::Exists
                | VfsError::NotDir
                | VfsError::IsDir
                | VfsError::NotEmpty
                | VfsError::PermissionDenied
                | VfsError::NotPermitted
                | VfsError::ReadOnly
                | VfsError::InvalidArgument
                | VfsError::NameTooLong
                | VfsError::NoSpace
                | VfsError::CrossDevice
                | VfsError::Stale
                | VfsError::BadHandle
                | VfsError::FileTooLarge
                | VfsError::TooManyLinks
                | VfsError::NoAttribute
                | VfsError::Range
                | VfsError::Busy
                | VfsError::Loop
                | VfsError::NoDataAtOffset
                | VfsError::Unimplemented
                | VfsError::NotSupported
                | VfsError::Io(_) => {}
            }
            assert_eq!(status(&e) as u32, code, "{e:?}");
        }
        assert_eq!(handle_status(&VfsError::NotFound) as u32, 70);
        assert_eq!(handle_status(&VfsError::Exists) as u32, 17);
    }

    #[test]
    fn times_clamp() {
        let t = UNIX_EPOCH + Duration::new(5, 7);
        let n = time(t);
        assert_eq!((n.seconds, n.nseconds), (5, 7));
        assert_eq!(system_time(n), t);
        assert_eq!(time(UNIX_EPOCH - Duration::from_secs(1)).seconds, 0);
        assert_eq!(
            time(UNIX_EPOCH + Duration::from_secs(1 << 40)).seconds,
            u32::MAX
        );
        let big = system_time(nfstime3 {
            seconds: 1,
            nseconds: u32::MAX,
        });
        assert_eq!(big, UNIX_EPOCH + Duration::new(1, 999_999_999));
    }

    #[test]
    fn rdev_round_trips() {
        for (ma, mi) in [(0, 0), (1, 3), (8, 17), (259, 65536), (4095, 255)] {
            let (ma, mi) = if cfg!(target_os = "macos") {
                (ma & 0xff, mi)
            } else {
                (ma, mi)
            };
            assert_eq!(split_rdev(make_rdev(ma, mi)), (ma, mi));
        }
        #[cfg(target_os = "linux")]
        assert_eq!(make_rdev(8, 17), libc::makedev(8, 17));
    }
}
