//! Validation of the mountpoint string: a drive letter or a folder WinFsp will create.

use std::path::Path;

use crate::WinfspError;

/// A validated mountpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mountpoint {
    /// `X:` (upper case).
    Drive(char),
    /// A folder path that does not exist yet and whose parent does.
    Folder(String),
}

impl Mountpoint {
    /// The string WinFsp is given.
    pub(crate) fn as_winfsp(&self) -> String {
        match self {
            Mountpoint::Drive(c) => format!("{c}:"),
            Mountpoint::Folder(f) => f.clone(),
        }
    }
}

/// Checks a mountpoint as given in the options.
pub(crate) fn parse(mountpoint: &str) -> Result<Mountpoint, WinfspError> {
    let invalid = |reason: &str| WinfspError::InvalidMountpoint {
        mountpoint: mountpoint.to_owned(),
        reason: reason.to_owned(),
    };
    let s = mountpoint.trim();
    if s.is_empty() {
        return Err(invalid("it is empty"));
    }
    let b = s.as_bytes();
    let drive_like = b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic();
    if drive_like && (b.len() == 2 || (b.len() == 3 && (b[2] == b'\\' || b[2] == b'/'))) {
        return Ok(Mountpoint::Drive(char::from(b[0].to_ascii_uppercase())));
    }
    if s.contains(['*', '?', '"', '<', '>', '|']) {
        return Err(invalid("it contains a character Windows forbids in paths"));
    }
    let path = Path::new(s);
    if path.symlink_metadata().is_ok() {
        return Err(WinfspError::MountpointExists(s.to_owned()));
    }
    match path.parent() {
        Some(p) if p.as_os_str().is_empty() || p.is_dir() => Ok(Mountpoint::Folder(s.to_owned())),
        Some(_) => Err(WinfspError::MountpointParentMissing(s.to_owned())),
        None => Err(invalid("it names a root, which cannot be a mount folder")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drive_letters() {
        assert_eq!(parse("x:").unwrap(), Mountpoint::Drive('X'));
        assert_eq!(parse(" Z:\\ ").unwrap(), Mountpoint::Drive('Z'));
        assert_eq!(parse("Q:").unwrap().as_winfsp(), "Q:");
        assert!(matches!(
            parse(""),
            Err(WinfspError::InvalidMountpoint { .. })
        ));
        assert!(matches!(
            parse("1:"),
            Err(WinfspError::MountpointParentMissing(_))
                | Err(WinfspError::InvalidMountpoint { .. })
                | Ok(Mountpoint::Folder(_))
        ));
        assert!(matches!(
            parse("a*b"),
            Err(WinfspError::InvalidMountpoint { .. })
        ));
    }

    #[test]
    fn folders_must_not_exist_but_their_parent_must() {
        let base = std::env::temp_dir().join(format!("vmount-winfsp-mp-{}", std::process::id()));
        std::fs::create_dir_all(&base).unwrap();
        let existing = base.to_string_lossy().into_owned();
        let e = parse(&existing).unwrap_err();
        assert!(matches!(e, WinfspError::MountpointExists(_)), "{e}");
        assert!(e.to_string().contains("already exists"));
        let fresh = base.join("mnt").to_string_lossy().into_owned();
        assert_eq!(parse(&fresh).unwrap(), Mountpoint::Folder(fresh.clone()));
        let orphan = base.join("no").join("mnt").to_string_lossy().into_owned();
        assert!(matches!(
            parse(&orphan),
            Err(WinfspError::MountpointParentMissing(_))
        ));
        std::fs::remove_dir_all(&base).unwrap();
    }
}
