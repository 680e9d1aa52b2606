//! Security descriptors synthesized from mode, uid and gid, and mode bits recovered from
//! a descriptor a Windows program sets.
//!
//! # Mapping
//! - **Owner.** A file whose uid is the mount's uid ([`Identity::uid`], the uid every
//!   request runs as) is owned by the mounting Windows user's SID. Any other uid `n`
//!   maps to `S-1-22-1-n` and gid `n` to `S-1-22-2-n` (the "Unix User"/"Unix Group"
//!   SIDs Samba, Cygwin and WinFsp's FUSE layer use), except the mount's gid, which maps
//!   to the user's primary group. So the mounting user gets owner rights on its own
//!   files, group rights where the gid is its own, and otherwise the "others" rights,
//!   which go to Everyone.
//! - **DACL** (protected, so nothing is inherited): the owner gets full control (POSIX
//!   owners may always chmod, and Explorer and Office need DELETE, WRITE_DAC and the
//!   attribute rights to save by rename-and-replace; a missing owner `w` bit shows up as
//!   FILE_ATTRIBUTE_READONLY instead). Group and Everyone get, per mode bit:
//!   `r` -> FILE_GENERIC_READ, `w` -> FILE_GENERIC_WRITE (+ FILE_DELETE_CHILD on
//!   directories), `x` -> FILE_GENERIC_EXECUTE (traverse on directories); plus always
//!   READ_CONTROL, SYNCHRONIZE and FILE_READ_ATTRIBUTES so that properties can be shown.
//! - **Setting security** is mapped to chmod/chown as far as mode bits can express it:
//!   a new owner or group must be a SID that maps back to a uid/gid (else
//!   INVALID_OWNER / INVALID_PRIMARY_GROUP); a new DACL gives group bits from the ACEs
//!   for the group SID and others bits from the ACEs for Everyone (allow minus deny,
//!   inherit-only ACEs ignored). Owner bits are derived only when the owner's ACE is not
//!   full control, because full control is what this module itself hands out. A NULL
//!   DACL leaves the mode alone. Everything else a DACL can say is dropped: the
//!   descriptor is always re-synthesized from the mode.

use vmount_core::{Attr, FileType, SetAttr};

use crate::status::{STATUS_INVALID_OWNER, STATUS_INVALID_PRIMARY_GROUP, WinResult};

/// Everyone (World).
pub(crate) const SID_EVERYONE: &str = "S-1-1-0";

pub(crate) const FILE_READ_DATA: u32 = 0x0001;
pub(crate) const FILE_WRITE_DATA: u32 = 0x0002;
pub(crate) const FILE_APPEND_DATA: u32 = 0x0004;
pub(crate) const FILE_EXECUTE: u32 = 0x0020;
pub(crate) const FILE_DELETE_CHILD: u32 = 0x0040;
pub(crate) const FILE_READ_ATTRIBUTES: u32 = 0x0080;
#[cfg(test)]
pub(crate) const DELETE: u32 = 0x0001_0000;
pub(crate) const READ_CONTROL: u32 = 0x0002_0000;
pub(crate) const SYNCHRONIZE: u32 = 0x0010_0000;
pub(crate) const FILE_GENERIC_READ: u32 = 0x0012_0089;
pub(crate) const FILE_GENERIC_WRITE: u32 = 0x0012_0116;
pub(crate) const FILE_GENERIC_EXECUTE: u32 = 0x0012_00A0;
pub(crate) const FILE_ALL_ACCESS: u32 = 0x001F_01FF;
const GENERIC_ALL: u32 = 0x1000_0000;
const GENERIC_EXECUTE: u32 = 0x2000_0000;
const GENERIC_WRITE: u32 = 0x4000_0000;
const GENERIC_READ: u32 = 0x8000_0000;
/// Rights everyone gets so that a file's properties can always be displayed.
const BASELINE: u32 = READ_CONTROL | SYNCHRONIZE | FILE_READ_ATTRIBUTES;

/// `SECURITY_INFORMATION` bits of a set-security request.
pub(crate) const OWNER_SECURITY_INFORMATION: u32 = 0x1;
pub(crate) const GROUP_SECURITY_INFORMATION: u32 = 0x2;
pub(crate) const DACL_SECURITY_INFORMATION: u32 = 0x4;

/// Who the mount runs as, on both sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    /// The uid every request runs as; files with this uid belong to `user_sid`.
    pub(crate) uid: u32,
    /// The gid every request runs as; files with this gid belong to `group_sid`.
    pub(crate) gid: u32,
    /// The mounting user's SID, `S-1-5-...` form.
    pub(crate) user_sid: String,
    /// The mounting user's primary group SID.
    pub(crate) group_sid: String,
}

impl Identity {
    /// The owner SID of a file with `uid`.
    pub(crate) fn owner_sid(&self, uid: u32) -> String {
        if uid == self.uid {
            self.user_sid.clone()
        } else {
            format!("S-1-22-1-{uid}")
        }
    }

    /// The group SID of a file with `gid`.
    pub(crate) fn group_sid(&self, gid: u32) -> String {
        if gid == self.gid {
            self.group_sid.clone()
        } else {
            format!("S-1-22-2-{gid}")
        }
    }

    /// The uid an owner SID stands for, if any.
    pub(crate) fn uid_of(&self, sid: &str) -> Option<u32> {
        if sid.eq_ignore_ascii_case(&self.user_sid) {
            return Some(self.uid);
        }
        sid.strip_prefix("S-1-22-1-")?.parse().ok()
    }

    /// The gid a group SID stands for, if any.
    pub(crate) fn gid_of(&self, sid: &str) -> Option<u32> {
        if sid.eq_ignore_ascii_case(&self.group_sid) {
            return Some(self.gid);
        }
        sid.strip_prefix("S-1-22-2-")?.parse().ok()
    }
}

/// One access-control entry, reduced to what the mode mapping needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ace {
    /// Allow (true) or deny (false).
    pub(crate) allow: bool,
    /// The access mask.
    pub(crate) mask: u32,
    /// The trustee, `S-1-...` form.
    pub(crate) sid: String,
    /// INHERIT_ONLY_ACE: the entry does not apply to this object.
    pub(crate) inherit_only: bool,
}

/// A security descriptor reduced to what the mode mapping needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SdSummary {
    pub(crate) owner: Option<String>,
    pub(crate) group: Option<String>,
    /// `None` for a NULL DACL.
    pub(crate) dacl: Option<Vec<Ace>>,
}

/// The rights one triplet of mode bits grants.
fn rights(bits: u16, dir: bool) -> u32 {
    let mut m = BASELINE;
    if bits & 4 != 0 {
        m |= FILE_GENERIC_READ;
    }
    if bits & 2 != 0 {
        m |= FILE_GENERIC_WRITE;
        if dir {
            m |= FILE_DELETE_CHILD;
        }
    }
    if bits & 1 != 0 {
        m |= FILE_GENERIC_EXECUTE;
    }
    m
}

/// The descriptor of a file, as SDDL (converted to binary on Windows with
/// `ConvertStringSecurityDescriptorToSecurityDescriptorW`).
pub(crate) fn sddl_for(attr: &Attr, id: &Identity) -> String {
    let dir = attr.kind == FileType::Directory;
    let owner = id.owner_sid(attr.uid);
    let group = id.group_sid(attr.gid);
    let g = rights((attr.perm >> 3) & 7, dir);
    let o = rights(attr.perm & 7, dir);
    format!(
        "O:{owner}G:{group}D:P(A;;0x{FILE_ALL_ACCESS:x};;;{owner})(A;;0x{g:x};;;{group})\
         (A;;0x{o:x};;;{SID_EVERYONE})"
    )
}

/// The effective (allowed minus denied) mask for `sid`, ignoring inherit-only entries.
fn effective(aces: &[Ace], sid: &str) -> u32 {
    let mut allow = 0;
    let mut deny = 0;
    for a in aces
        .iter()
        .filter(|a| !a.inherit_only && a.sid.eq_ignore_ascii_case(sid))
    {
        let mut m = a.mask;
        if m & GENERIC_ALL != 0 {
            m |= FILE_ALL_ACCESS;
        }
        if m & GENERIC_READ != 0 {
            m |= FILE_GENERIC_READ;
        }
        if m & GENERIC_WRITE != 0 {
            m |= FILE_GENERIC_WRITE;
        }
        if m & GENERIC_EXECUTE != 0 {
            m |= FILE_GENERIC_EXECUTE;
        }
        if a.allow {
            allow |= m;
        } else {
            deny |= m;
        }
    }
    allow & !deny
}

/// Mode bits (one triplet) a mask grants.
fn bits(mask: u32) -> u16 {
    let mut b = 0;
    if mask & FILE_READ_DATA != 0 {
        b |= 4;
    }
    if mask & FILE_WRITE_DATA != 0 {
        b |= 2;
    }
    if mask & FILE_EXECUTE != 0 {
        b |= 1;
    }
    b
}

/// What a set-security request means for a file, as a `SetAttr` (empty when nothing
/// changes). `sd` is the descriptor after the request was merged into the current one;
/// `info` says which parts the request set.
pub(crate) fn setattr_for_security(
    attr: &Attr,
    info: u32,
    sd: &SdSummary,
    id: &Identity,
) -> WinResult<SetAttr> {
    let mut set = SetAttr::default();
    let mut owner_sid = id.owner_sid(attr.uid);
    let mut group_sid = id.group_sid(attr.gid);
    if info & OWNER_SECURITY_INFORMATION != 0
        && let Some(sid) = &sd.owner
    {
        let uid = id.uid_of(sid).ok_or(STATUS_INVALID_OWNER)?;
        if uid != attr.uid {
            set.uid = Some(uid);
        }
        owner_sid.clone_from(sid);
    }
    if info & GROUP_SECURITY_INFORMATION != 0
        && let Some(sid) = &sd.group
    {
        let gid = id.gid_of(sid).ok_or(STATUS_INVALID_PRIMARY_GROUP)?;
        if gid != attr.gid {
            set.gid = Some(gid);
        }
        group_sid.clone_from(sid);
    }
    if info & DACL_SECURITY_INFORMATION != 0
        && let Some(aces) = &sd.dacl
    {
        let owner_mask = effective(aces, &owner_sid);
        let owner = if owner_mask & FILE_ALL_ACCESS == FILE_ALL_ACCESS {
            (attr.perm >> 6) & 7
        } else {
            bits(owner_mask)
        };
        let group = bits(effective(aces, &group_sid));
        let others = bits(effective(aces, SID_EVERYONE));
        let perm = (attr.perm & 0o7000) | (owner << 6) | (group << 3) | others;
        if perm != attr.perm {
            set.mode = Some(u32::from(perm));
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use vmount_core::Ino;

    use super::*;
    use crate::status::WinError;

    fn id() -> Identity {
        Identity {
            uid: 1000,
            gid: 100,
            user_sid: "S-1-5-21-1-2-3-1001".into(),
            group_sid: "S-1-5-21-1-2-3-513".into(),
        }
    }

    fn attr(kind: FileType, perm: u16, uid: u32, gid: u32) -> Attr {
        Attr {
            ino: Ino(5),
            kind,
            perm,
            nlink: 1,
            uid,
            gid,
            size: 0,
            blocks: 0,
            blksize: 4096,
            rdev: 0,
            atime: UNIX_EPOCH,
            mtime: UNIX_EPOCH,
            ctime: UNIX_EPOCH,
            crtime: UNIX_EPOCH,
        }
    }

    /// The ACEs of a descriptor this module synthesized (what Windows would report).
    fn aces_of(a: &Attr) -> SdSummary {
        let dir = a.kind == FileType::Directory;
        let ace = |mask, sid: String| Ace {
            allow: true,
            mask,
            sid,
            inherit_only: false,
        };
        SdSummary {
            owner: Some(id().owner_sid(a.uid)),
            group: Some(id().group_sid(a.gid)),
            dacl: Some(vec![
                ace(FILE_ALL_ACCESS, id().owner_sid(a.uid)),
                ace(rights((a.perm >> 3) & 7, dir), id().group_sid(a.gid)),
                ace(rights(a.perm & 7, dir), SID_EVERYONE.into()),
            ]),
        }
    }

    #[test]
    fn sddl_of_a_private_file_and_a_shared_directory() {
        let f = attr(FileType::RegularFile, 0o640, 1000, 100);
        assert_eq!(
            sddl_for(&f, &id()),
            "O:S-1-5-21-1-2-3-1001G:S-1-5-21-1-2-3-513D:P(A;;0x1f01ff;;;S-1-5-21-1-2-3-1001)\
             (A;;0x120089;;;S-1-5-21-1-2-3-513)(A;;0x120080;;;S-1-1-0)"
        );
        let d = attr(FileType::Directory, 0o777, 0, 0);
        let s = sddl_for(&d, &id());
        assert!(s.starts_with("O:S-1-22-1-0G:S-1-22-2-0D:P"), "{s}");
        // rwx on a directory: read | write | execute | delete-child.
        let all = FILE_GENERIC_READ | FILE_GENERIC_WRITE | FILE_GENERIC_EXECUTE | FILE_DELETE_CHILD;
        assert!(s.ends_with(&format!("(A;;0x{all:x};;;S-1-1-0)")), "{s}");
        assert_eq!(
            all & DELETE,
            0,
            "w never grants DELETE on the object itself"
        );
    }

    #[test]
    fn bits_map_to_the_rights_in_the_brief() {
        assert_eq!(rights(0, false), BASELINE);
        assert_eq!(rights(4, false), FILE_GENERIC_READ | BASELINE);
        assert_eq!(rights(2, false), FILE_GENERIC_WRITE | BASELINE);
        assert_eq!(
            rights(2, true),
            FILE_GENERIC_WRITE | FILE_DELETE_CHILD | BASELINE
        );
        assert_eq!(rights(1, true), FILE_GENERIC_EXECUTE | BASELINE);
    }

    #[test]
    fn uid_and_gid_map_both_ways() {
        let id = id();
        assert_eq!(id.owner_sid(1000), id.user_sid);
        assert_eq!(id.owner_sid(7), "S-1-22-1-7");
        assert_eq!(id.group_sid(100), id.group_sid);
        assert_eq!(id.group_sid(7), "S-1-22-2-7");
        assert_eq!(id.uid_of(&id.user_sid), Some(1000));
        assert_eq!(id.uid_of("S-1-22-1-42"), Some(42));
        assert_eq!(id.uid_of("S-1-5-18"), None);
        assert_eq!(id.uid_of("S-1-22-1-x"), None);
        assert_eq!(id.gid_of("S-1-22-2-9"), Some(9));
        assert_eq!(id.gid_of(&id.group_sid), Some(100));
    }

    #[test]
    fn unchanged_descriptor_changes_nothing() {
        for perm in [0o000, 0o644, 0o600, 0o755, 0o751, 0o4711, 0o1777, 0o444] {
            for kind in [FileType::RegularFile, FileType::Directory] {
                let a = attr(kind, perm, 1000, 100);
                let all = OWNER_SECURITY_INFORMATION
                    | GROUP_SECURITY_INFORMATION
                    | DACL_SECURITY_INFORMATION;
                let set = setattr_for_security(&a, all, &aces_of(&a), &id()).unwrap();
                assert!(set.is_empty(), "{perm:o} {kind:?}: {set:?}");
            }
        }
    }

    #[test]
    fn dacl_changes_become_chmod() {
        let a = attr(FileType::RegularFile, 0o644, 1000, 100);
        let mut sd = aces_of(&a);
        let dacl = sd.dacl.as_mut().unwrap();
        // Grant Everyone write, deny the group read, add an inherit-only entry.
        dacl[2].mask |= FILE_GENERIC_WRITE;
        dacl.push(Ace {
            allow: false,
            mask: FILE_READ_DATA,
            sid: id().group_sid,
            inherit_only: false,
        });
        dacl.push(Ace {
            allow: true,
            mask: GENERIC_ALL,
            sid: SID_EVERYONE.into(),
            inherit_only: true,
        });
        let set = setattr_for_security(&a, DACL_SECURITY_INFORMATION, &sd, &id()).unwrap();
        assert_eq!(set.mode, Some(0o606));
        // Without the DACL bit the same descriptor changes nothing.
        let set = setattr_for_security(&a, OWNER_SECURITY_INFORMATION, &sd, &id()).unwrap();
        assert!(set.is_empty());
        // An owner entry that is not full control sets the owner bits; generic rights count.
        let mut sd = aces_of(&a);
        sd.dacl.as_mut().unwrap()[0].mask = GENERIC_READ;
        let set = setattr_for_security(&a, DACL_SECURITY_INFORMATION, &sd, &id()).unwrap();
        assert_eq!(set.mode, Some(0o444));
        // A NULL DACL leaves the mode alone.
        sd.dacl = None;
        let set = setattr_for_security(&a, DACL_SECURITY_INFORMATION, &sd, &id()).unwrap();
        assert!(set.is_empty());
    }

    #[test]
    fn owner_and_group_changes_become_chown_or_are_refused() {
        let a = attr(FileType::RegularFile, 0o644, 1000, 100);
        let mut sd = aces_of(&a);
        sd.owner = Some("S-1-22-1-5".into());
        sd.group = Some("S-1-22-2-6".into());
        let set = setattr_for_security(
            &a,
            OWNER_SECURITY_INFORMATION | GROUP_SECURITY_INFORMATION,
            &sd,
            &id(),
        )
        .unwrap();
        assert_eq!((set.uid, set.gid), (Some(5), Some(6)));
        sd.owner = Some("S-1-5-32-544".into());
        assert_eq!(
            setattr_for_security(&a, OWNER_SECURITY_INFORMATION, &sd, &id()),
            Err(WinError::Status(STATUS_INVALID_OWNER))
        );
        sd.group = Some("S-1-5-32-544".into());
        assert_eq!(
            setattr_for_security(&a, GROUP_SECURITY_INFORMATION, &sd, &id()),
            Err(WinError::Status(STATUS_INVALID_PRIMARY_GROUP))
        );
    }
}
