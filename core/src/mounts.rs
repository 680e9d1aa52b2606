//! The Linux mount table, as the backends need it: what is mounted at a given place.
//!
//! Kept in core (not in a backend) because the FUSE and NFS backends both ask it, and
//! backends never depend on each other. It parses `/proc/self/mountinfo` rather than
//! `/proc/mounts` because mountinfo is per mount namespace and its fields are
//! unambiguous; it never stats the mountpoint, which could hang on a dead NFS server.

use std::path::Path;

/// The topmost mount at a place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Filesystem type, e.g. `fuse.vmount` or `nfs`.
    pub fstype: String,
    /// Mount source, e.g. `memfs` or `127.0.0.1:/vmount`.
    pub source: String,
}

/// The topmost mount at `mountpoint` (an absolute path) in this process's mount
/// namespace, if any.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn lookup(mountpoint: &Path) -> Option<MountEntry> {
    let table = std::fs::read("/proc/self/mountinfo").ok()?;
    parse_mountinfo(&table, mountpoint)
}

/// The topmost mount at `mountpoint` in a mountinfo table.
///
/// Lines read `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [TAGS...] - FSTYPE SOURCE SUPER`,
/// with space, tab, newline and backslash escaped as `\ooo`. Later lines are mounted over
/// earlier ones at the same place, so the last match wins. Malformed lines are skipped.
pub fn parse_mountinfo(table: &[u8], mountpoint: &Path) -> Option<MountEntry> {
    let want = mountpoint.as_os_str().as_encoded_bytes();
    let mut found = None;
    for line in table.split(|&b| b == b'\n') {
        let mut fields = line.split(|&b| b == b' ');
        let Some(mp) = fields.nth(4) else { continue };
        if unescape(mp) != want {
            continue;
        }
        let mut rest = fields.skip_while(|f| *f != b"-");
        if rest.next().is_none() {
            continue;
        }
        let (Some(fstype), Some(source)) = (rest.next(), rest.next()) else {
            continue;
        };
        let text = |f: &[u8]| String::from_utf8_lossy(&unescape(f)).into_owned();
        found = Some(MountEntry {
            fstype: text(fstype),
            source: text(source),
        });
    }
    found
}

/// Undoes mountinfo's `\ooo` escapes; anything that is not a valid escape stays as is.
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while let Some(&b) = field.get(i) {
        let octal = field
            .get(i + 1..i + 4)
            .filter(|d| b == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .and_then(|d| {
                u8::try_from(d.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'))).ok()
            });
        match octal {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(fstype: &str, source: &str) -> Option<MountEntry> {
        Some(MountEntry {
            fstype: fstype.to_owned(),
            source: source.to_owned(),
        })
    }

    #[test]
    fn mountinfo_is_parsed_and_unescaped() {
        let table = b"22 1 0:21 / /proc rw,nosuid - proc proc rw\n\
            40 22 0:50 / /tmp/my\\040dir rw,nosuid,nodev shared:5 - fuse.vmount memfs rw\n\
            41 40 0:51 / /tmp/my\\040dir rw master:1 - tmpfs tmpfs rw\n\
            42 1 0:52 / /a\\134b rw - fuse vmount rw\n\
            43 1 0:53 / /mnt/a\\040b rw,relatime - nfs 127.0.0.1:/vmount rw,vers=3\n\
            44 1 0:54 / /mnt/other rw - nfs4 server:/x rw\n\
            garbage\n";
        assert_eq!(
            parse_mountinfo(table, Path::new("/tmp/my dir")),
            entry("tmpfs", "tmpfs"),
            "the last mount at a place is the visible one"
        );
        assert_eq!(
            parse_mountinfo(table, Path::new("/a\\b")),
            entry("fuse", "vmount")
        );
        assert_eq!(
            parse_mountinfo(table, Path::new("/proc")),
            entry("proc", "proc")
        );
        assert_eq!(
            parse_mountinfo(table, Path::new("/mnt/a b")),
            entry("nfs", "127.0.0.1:/vmount")
        );
        assert_eq!(
            parse_mountinfo(table, Path::new("/mnt/other")),
            entry("nfs4", "server:/x")
        );
        assert_eq!(parse_mountinfo(table, Path::new("/tmp")), None);
        assert_eq!(parse_mountinfo(b"garbage\n\n1 2 3", Path::new("/")), None);
    }

    #[test]
    fn bad_escapes_stay_as_they_are() {
        assert_eq!(unescape(b"x\\04"), b"x\\04");
        assert_eq!(unescape(b"\\011\\012\\999"), b"\t\n\\999");
        assert_eq!(unescape(b"a\\134b\\"), b"a\\b\\");
        assert_eq!(unescape(b"\\777x"), b"\\777x", "out of range stays as is");
    }
}
