//! Windows path names as WinFsp passes them (`\dir\file`, UTF-16) and their checks.
//!
//! Decisions:
//! - Names cross into the [`Vfs`](vmount_core::Vfs) as UTF-8. A WinFsp name with an
//!   unpaired surrogate cannot be stored that way and is refused (OBJECT_NAME_INVALID);
//!   an entry whose stored name is not valid Unicode is left out of listings.
//! - Characters Windows forbids in names (`< > : " | ? *`, `/` and controls 1-31) are
//!   refused in every path, and such entries (created through FUSE or NFS) are hidden
//!   from listings, because Windows programs could not open them anyway. `:` is also the
//!   named-stream separator: streams are not supported, so `file:stream` is refused.
//! - `.` and `..` never reach the filesystem (WinFsp normalises paths; anything else
//!   sending them is refused).
//! - Case folding for case-insensitive lookup is `char::to_lowercase` per character, an
//!   approximation of Unicode simple case folding that differs only for a few special
//!   characters (e.g. final sigma, Turkish dotless i).

use crate::status::{STATUS_OBJECT_NAME_INVALID, WinError, WinResult};

/// A parsed path: its components, validated, in order; empty for the root.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct WinPath {
    pub(crate) comps: Vec<String>,
}

impl WinPath {
    /// Parses a WinFsp file name (`\a\b`, without NUL). Leading, trailing and repeated
    /// backslashes are ignored.
    pub(crate) fn parse(wide: &[u16]) -> WinResult<WinPath> {
        let s = String::from_utf16(wide).map_err(|_| invalid())?;
        Self::parse_str(&s)
    }

    /// [`WinPath::parse`] for a path already in UTF-8.
    pub(crate) fn parse_str(s: &str) -> WinResult<WinPath> {
        let mut comps = Vec::new();
        for c in s.split('\\').filter(|c| !c.is_empty()) {
            check_component(c)?;
            comps.push(c.to_owned());
        }
        Ok(WinPath { comps })
    }

    /// The root path.
    pub(crate) fn root() -> WinPath {
        WinPath::default()
    }

    /// True for `\`.
    pub(crate) fn is_root(&self) -> bool {
        self.comps.is_empty()
    }

    /// The parent path and the last name; `None` for the root.
    pub(crate) fn split_last(&self) -> Option<(WinPath, &str)> {
        let (last, parent) = self.comps.split_last()?;
        Some((
            WinPath {
                comps: parent.to_vec(),
            },
            last.as_str(),
        ))
    }

    /// This path with `name` appended.
    pub(crate) fn join(&self, name: &str) -> WinPath {
        let mut comps = self.comps.clone();
        comps.push(name.to_owned());
        WinPath { comps }
    }

    /// The `\`-separated form (`\` for the root).
    pub(crate) fn to_win_string(&self) -> String {
        if self.comps.is_empty() {
            return "\\".to_owned();
        }
        let mut s = String::new();
        for c in &self.comps {
            s.push('\\');
            s.push_str(c);
        }
        s
    }

    /// The case-folded `\`-separated form, used as a cache key in case-insensitive mode.
    pub(crate) fn folded(&self) -> String {
        fold(&self.to_win_string())
    }
}

fn invalid() -> WinError {
    WinError::Status(STATUS_OBJECT_NAME_INVALID)
}

/// Whether `c` may not appear in a Windows file name.
fn forbidden_char(c: char) -> bool {
    matches!(c, '<' | '>' | ':' | '"' | '|' | '?' | '*' | '/' | '\\') || (c as u32) < 0x20
}

/// Checks one component: not `.`/`..`, no forbidden character (which includes the
/// stream separator `:`).
pub(crate) fn check_component(c: &str) -> WinResult<()> {
    if c.is_empty() || c == "." || c == ".." || c.chars().any(forbidden_char) {
        return Err(invalid());
    }
    Ok(())
}

/// Whether a name stored in the filesystem can be shown to Windows programs.
pub(crate) fn is_presentable(name: &str) -> bool {
    check_component(name).is_ok()
}

/// Case-folds for comparison (see the module docs for the approximation made).
pub(crate) fn fold(s: &str) -> String {
    s.chars().flat_map(char::to_lowercase).collect()
}

/// UTF-16 of a string (for names handed back to WinFsp).
pub(crate) fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> WinResult<WinPath> {
        WinPath::parse(&wide(s))
    }

    #[test]
    fn parses_and_prints() {
        assert!(p("\\").unwrap().is_root());
        assert!(p("").unwrap().is_root());
        let path = p("\\dir\\sub\\file.txt").unwrap();
        assert_eq!(path.comps, ["dir", "sub", "file.txt"]);
        assert_eq!(path.to_win_string(), "\\dir\\sub\\file.txt");
        assert_eq!(p("\\a\\\\b\\").unwrap().comps, ["a", "b"]);
        let (parent, last) = path.split_last().unwrap();
        assert_eq!(parent.to_win_string(), "\\dir\\sub");
        assert_eq!(last, "file.txt");
        assert!(WinPath::root().split_last().is_none());
        assert_eq!(WinPath::root().join("x").to_win_string(), "\\x");
        assert_eq!(WinPath::root().to_win_string(), "\\");
    }

    #[test]
    fn refuses_streams_dots_and_forbidden_characters() {
        for bad in [
            "\\file:stream",
            "\\file::$DATA",
            "\\a\\..\\b",
            "\\.",
            "\\a<b",
            "\\a>b",
            "\\a\"b",
            "\\a|b",
            "\\a?b",
            "\\a*b",
            "\\a/b",
            "\\a\u{1}b",
        ] {
            assert_eq!(p(bad), Err(invalid()), "{bad:?}");
        }
        // An unpaired surrogate cannot become UTF-8.
        assert_eq!(WinPath::parse(&[u16::from(b'\\'), 0xD800]), Err(invalid()));
        assert!(p("\\ünïcödé ☃.txt").is_ok());
        assert!(is_presentable(".hidden"));
        assert!(!is_presentable("a:b"));
        assert!(!is_presentable("new\nline"));
    }

    #[test]
    fn folding() {
        assert_eq!(fold("ÄbC.TXT"), "äbc.txt");
        assert_eq!(fold("Readme.MD"), fold("README.md"));
        assert_eq!(p("\\Dir\\Sub\\f").unwrap().folded(), "\\dir\\sub\\f");
    }
}
