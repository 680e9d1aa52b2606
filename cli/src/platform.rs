//! Which backends this machine can use, and how `auto` chooses.
//!
//! Every backend has a status function on every OS: where the OS lacks the backend, the
//! function is an explicit "not on this platform" arm rather than a missing symbol, so
//! every config parses and `vmount backends` reports the same three rows everywhere.

use std::fmt;

use anyhow::bail;

use crate::config::BackendChoice;

/// A backend that can serve a mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// FUSE (Linux kernel module, macFUSE).
    Fuse,
    /// Localhost NFSv3 server.
    Nfs,
    /// WinFsp.
    Winfsp,
}

impl Backend {
    /// Every backend, in the order `vmount backends` lists them.
    pub const ALL: [Backend; 3] = [Backend::Fuse, Backend::Nfs, Backend::Winfsp];
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, so that `{:<8}` aligns the names in `vmount backends`.
        f.pad(match self {
            Self::Fuse => "fuse",
            Self::Nfs => "nfs",
            Self::Winfsp => "winfsp",
        })
    }
}

/// Why a backend cannot be used here, and what would fix it.
#[derive(Debug, Clone)]
pub struct Unavailable {
    /// What is missing or wrong.
    pub reason: String,
    /// What the user can do, when there is something.
    pub fix: Option<String>,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason.trim_end_matches('.'))?;
        if let Some(fix) = &self.fix {
            write!(f, "; {}", fix.trim_end_matches('.'))?;
        }
        Ok(())
    }
}

/// The order `auto` tries backends in on this OS.
pub fn auto_order() -> &'static [Backend] {
    cfg_if::cfg_if! {
        if #[cfg(windows)] {
            &[Backend::Winfsp, Backend::Nfs]
        } else if #[cfg(unix)] {
            // Linux, macOS (macFUSE) and the BSDs: the kernel bridge first; NFS needs no
            // driver but has weaker semantics (no locks, attribute caching).
            &[Backend::Fuse, Backend::Nfs]
        } else {
            &[Backend::Nfs]
        }
    }
}

/// Whether `backend` can mount on this machine now.
pub fn status(backend: Backend) -> Result<(), Unavailable> {
    match backend {
        Backend::Fuse => fuse_status(),
        Backend::Nfs => vmount_backend_nfs::available().map_err(|u| Unavailable {
            reason: u.reason,
            fix: Some(format!(
                "{}; or set [nfs] mount = false to serve only and mount by hand",
                u.fix
            )),
        }),
        Backend::Winfsp => winfsp_status(),
    }
}

/// Like [`status`], for a plan: NFS that only serves (`[nfs] mount = false`) needs no
/// client, so it is usable everywhere.
pub fn status_for(backend: Backend, nfs_mount: bool) -> Result<(), Unavailable> {
    match backend {
        Backend::Nfs if !nfs_mount => Ok(()),
        _ => status(backend),
    }
}

fn fuse_status() -> Result<(), Unavailable> {
    cfg_if::cfg_if! {
        if #[cfg(unix)] {
            vmount_backend_fuse::probe()
                .map_err(|u| Unavailable { reason: u.reason, fix: Some(u.fix) })
        } else {
            Err(Unavailable {
                reason: "FUSE is only available on Linux and macOS".into(),
                fix: Some("use backend = \"winfsp\" (or \"auto\") on Windows".into()),
            })
        }
    }
}

fn winfsp_status() -> Result<(), Unavailable> {
    cfg_if::cfg_if! {
        if #[cfg(windows)] {
            vmount_backend_winfsp::available()
                .map_err(|u| Unavailable { reason: u.reason, fix: Some(u.fix) })
        } else {
            Err(Unavailable {
                reason: "WinFsp is only available on Windows".into(),
                fix: Some("use backend = \"fuse\" (or \"auto\") here".into()),
            })
        }
    }
}

/// Turns the requested backend into a usable one, or explains why there is none.
pub fn resolve(choice: BackendChoice) -> anyhow::Result<Backend> {
    resolve_for(choice, true).map(|r| r.backend)
}

/// What [`resolve_for`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The backend to mount with first.
    pub backend: Backend,
    /// With `auto`, why the backends preferred to it were passed over, when they were.
    pub note: Option<String>,
    /// With `auto`, the usable backends after it, tried in order when mounting with
    /// `backend` fails for a reason of its own (not a bad mountpoint).
    pub alternatives: Vec<Backend>,
}

/// [`resolve`] for a plan whose NFS backend mounts (`nfs_mount`) or only serves. With
/// `auto`, also says why the backends tried first were passed over, when one was: the
/// fallback deserves a line on stderr, since NFS behaves differently from FUSE.
pub fn resolve_for(choice: BackendChoice, nfs_mount: bool) -> anyhow::Result<Resolved> {
    let explicit = match choice {
        BackendChoice::Auto => None,
        BackendChoice::Fuse => Some(Backend::Fuse),
        BackendChoice::Nfs => Some(Backend::Nfs),
        BackendChoice::Winfsp => Some(Backend::Winfsp),
    };
    if let Some(backend) = explicit {
        return match status_for(backend, nfs_mount) {
            Ok(()) => Ok(Resolved {
                backend,
                note: None,
                alternatives: Vec::new(),
            }),
            Err(why) => bail!("the {backend} backend cannot be used here: {why}"),
        };
    }
    // Short reasons for the fallback note, full ones (with fixes) for the error.
    let (mut reasons, mut full) = (Vec::new(), Vec::new());
    let mut usable = Vec::new();
    for &backend in auto_order() {
        match status_for(backend, nfs_mount) {
            Ok(()) => usable.push(backend),
            Err(why) if usable.is_empty() => {
                reasons.push(format!("{backend} is not usable ({})", why.reason));
                full.push(format!("{backend}: {why}"));
            }
            Err(_) => {}
        }
    }
    if usable.is_empty() {
        bail!("no backend is usable here ({})", full.join("; also "));
    }
    let backend = usable.remove(0);
    let note = (!reasons.is_empty()).then(|| {
        format!(
            "using the {backend} backend because {}",
            reasons.join(", and ")
        )
    });
    Ok(Resolved {
        backend,
        note,
        alternatives: usable,
    })
}

/// Why a mount attempt failed, and whether another backend might do better.
#[derive(Debug)]
pub struct MountFailure {
    /// The error, one sentence with its fix.
    pub error: anyhow::Error,
    /// True when the failure belongs to the backend (driver missing, mount command
    /// refused, mount never became usable), so `auto` may try the next one; false when it
    /// is the user's to fix and would fail the same way anywhere (a missing mountpoint,
    /// a busy port, a setting only this backend has).
    pub backend_failed: bool,
}

/// Mounts with `first`, and on a backend's own failure with each of `alternatives` in
/// turn, saying on `notes` which failed and what comes next. Returns the backend that
/// mounted and what `attempt` gave for it, or the last failure.
pub fn mount_with_fallback<T>(
    first: Backend,
    alternatives: &[Backend],
    mut attempt: impl FnMut(Backend) -> Result<T, MountFailure>,
    mut notes: impl FnMut(String),
) -> anyhow::Result<(Backend, T)> {
    let mut backend = first;
    let mut rest = alternatives.iter().copied();
    loop {
        match attempt(backend) {
            Ok(t) => return Ok((backend, t)),
            Err(f) if f.backend_failed => match rest.next() {
                Some(next) => {
                    notes(format!(
                        "the {backend} backend could not mount ({:#}); trying {next}",
                        f.error
                    ));
                    backend = next;
                }
                None => return Err(f.error),
            },
            Err(f) => return Err(f.error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_choices_report_their_reason() {
        if !cfg!(windows) {
            let e = resolve(BackendChoice::Winfsp).unwrap_err().to_string();
            assert!(e.contains("WinFsp is only available on Windows"), "{e}");
        }
        match resolve(BackendChoice::Nfs) {
            Ok(b) => assert!(b == Backend::Nfs && status(Backend::Nfs).is_ok()),
            Err(e) => {
                let e = e.to_string();
                assert!(
                    e.starts_with("the nfs backend cannot be used here: ")
                        && e.contains("[nfs] mount = false"),
                    "{e}"
                );
            }
        }
        // Serving needs no client.
        let r = resolve_for(BackendChoice::Nfs, false).unwrap();
        assert_eq!((r.backend, r.note), (Backend::Nfs, None));
        assert!(
            r.alternatives.is_empty(),
            "an explicit backend has no fallback"
        );
    }

    #[test]
    fn auto_says_why_it_fell_back() {
        match resolve_for(BackendChoice::Auto, true).map(|r| (r.backend, r.note)) {
            Ok((b, None)) => assert_eq!(Some(&b), auto_order().first()),
            Ok((b, Some(note))) => {
                assert_ne!(Some(&b), auto_order().first());
                assert!(
                    note.starts_with(&format!("using the {b} backend because ")),
                    "{note}"
                );
                let first = auto_order()[0];
                assert!(note.contains(&format!("{first} is not usable (")), "{note}");
            }
            Err(e) => assert!(
                e.to_string().starts_with("no backend is usable here"),
                "{e}"
            ),
        }
    }

    #[test]
    fn auto_agrees_with_the_statuses() {
        let first = auto_order().iter().copied().find(|&b| status(b).is_ok());
        match (resolve(BackendChoice::Auto), first) {
            (Ok(b), Some(f)) => assert_eq!(b, f),
            (Err(e), None) => {
                let e = e.to_string();
                for b in auto_order() {
                    assert!(e.contains(&format!("{b}: ")), "{e}");
                }
            }
            (got, want) => panic!("auto gave {got:?}, statuses say {want:?}"),
        }
    }

    #[test]
    fn auto_lists_the_usable_backends_after_its_choice() {
        if let Ok(r) = resolve_for(BackendChoice::Auto, false) {
            let order = auto_order();
            let pos = |b: Backend| order.iter().position(|&o| o == b).unwrap();
            let mut last = pos(r.backend);
            for &b in &r.alternatives {
                assert!(status_for(b, false).is_ok(), "{b} is listed but not usable");
                assert!(pos(b) > last, "alternatives keep auto's order");
                last = pos(b);
            }
            // Serving NFS needs nothing, so it is always among them unless it was chosen.
            assert!(r.backend == Backend::Nfs || r.alternatives.contains(&Backend::Nfs));
        }
    }

    fn fail(backend_failed: bool, what: &str) -> MountFailure {
        MountFailure {
            error: anyhow::anyhow!("{what}"),
            backend_failed,
        }
    }

    #[test]
    fn a_backend_failure_moves_on_and_says_so() {
        let mut tried = Vec::new();
        let mut notes = Vec::new();
        let r = mount_with_fallback(
            Backend::Fuse,
            &[Backend::Nfs],
            |b| {
                tried.push(b);
                match b {
                    Backend::Fuse => Err(fail(true, "fusermount3: permission denied")),
                    _ => Ok(42),
                }
            },
            |n| notes.push(n),
        )
        .unwrap();
        assert_eq!(r, (Backend::Nfs, 42));
        assert_eq!(tried, [Backend::Fuse, Backend::Nfs]);
        assert_eq!(
            notes,
            ["the fuse backend could not mount (fusermount3: permission denied); trying nfs"]
        );
    }

    #[test]
    fn a_users_mistake_does_not_move_on() {
        let mut tried = Vec::new();
        let e = mount_with_fallback(
            Backend::Fuse,
            &[Backend::Nfs],
            |b| -> Result<(), _> {
                tried.push(b);
                Err(fail(false, "mountpoint /x does not exist"))
            },
            |n| panic!("no fallback expected, got {n}"),
        )
        .unwrap_err();
        assert_eq!(tried, [Backend::Fuse]);
        assert_eq!(e.to_string(), "mountpoint /x does not exist");
    }

    #[test]
    fn the_last_failure_is_reported_when_every_backend_fails() {
        let mut notes = 0;
        let e = mount_with_fallback(
            Backend::Winfsp,
            &[Backend::Nfs],
            |b| -> Result<(), _> { Err(fail(true, &format!("{b} broke"))) },
            |_| notes += 1,
        )
        .unwrap_err();
        assert_eq!((notes, e.to_string()), (1, "nfs broke".to_owned()));
    }
}
