//! Running one host call as the caller.
//!
//! On Linux a root daemon switches the *calling thread's* filesystem uid, gid and
//! supplementary groups to the caller's for the duration of a host call, so that the
//! host kernel checks permissions (ACLs included) and owns new files to the caller,
//! setgid-directory inheritance and all. Raw syscalls are used on purpose: glibc's
//! `setgroups()`/`setfsuid()` wrappers broadcast the change to every thread of the
//! process (POSIX semantics), while the kernel calls act on one thread only. The guard
//! restores root on drop, so an early return or a panic cannot leave a worker thread
//! running as some user.
//!
//! A non-root fsuid drops the filesystem capabilities (CAP_DAC_OVERRIDE, CAP_FOWNER,
//! CAP_FSETID, CAP_CHOWN, CAP_MKNOD, ...) for the thread; going back to fsuid 0 raises
//! them again from the permitted set.

use std::io;

use crate::Ctx;

/// While alive, the calling thread's filesystem credentials are the caller's.
pub(super) struct CredGuard<'a> {
    #[cfg(target_os = "linux")]
    restore: Option<&'a [libc::gid_t]>,
    #[cfg(not(target_os = "linux"))]
    _groups: std::marker::PhantomData<&'a ()>,
}

#[cfg(target_os = "linux")]
fn set_groups(groups: &[libc::gid_t]) -> io::Result<()> {
    // SAFETY: `groups` is readable for its length; the raw syscall changes this thread
    // only.
    let r = unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(target_os = "linux")]
fn set_fsuid(uid: u32) -> u32 {
    // SAFETY: setfsuid only changes this thread's credentials; it returns the old value.
    unsafe { libc::syscall(libc::SYS_setfsuid, uid) as u32 }
}

#[cfg(target_os = "linux")]
fn set_fsgid(gid: u32) -> u32 {
    // SAFETY: as for setfsuid.
    unsafe { libc::syscall(libc::SYS_setfsgid, gid) as u32 }
}

impl<'a> CredGuard<'a> {
    /// A guard that switches nothing.
    pub(super) fn none() -> CredGuard<'a> {
        CredGuard {
            #[cfg(target_os = "linux")]
            restore: None,
            #[cfg(not(target_os = "linux"))]
            _groups: std::marker::PhantomData,
        }
    }

    /// Switches to `ctx`'s credentials when `switch` (root daemon, non-root caller);
    /// `daemon_groups` are the groups to restore. Fails (and leaves the thread as it
    /// was) if the kernel refuses any step, so nothing ever runs as root by mistake.
    #[cfg(target_os = "linux")]
    pub(super) fn enter(
        ctx: &Ctx,
        switch: bool,
        daemon_groups: &'a [libc::gid_t],
    ) -> io::Result<CredGuard<'a>> {
        if !switch || ctx.is_root() {
            return Ok(CredGuard::none());
        }
        let groups: Vec<libc::gid_t> = ctx.supplementary_groups().to_vec();
        set_groups(&groups)?;
        let mut guard = CredGuard {
            restore: Some(daemon_groups),
        };
        set_fsgid(ctx.gid);
        set_fsuid(ctx.uid);
        // setfsuid/setfsgid report failure only by not changing: verify (u32::MAX is
        // an invalid id, so these calls change nothing and return the current value).
        if set_fsuid(u32::MAX) != ctx.uid || set_fsgid(u32::MAX) != ctx.gid {
            guard.restore_now();
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
        Ok(guard)
    }

    /// No credential switching on this platform (see the module docs of `loopback`).
    #[cfg(not(target_os = "linux"))]
    pub(super) fn enter(
        _ctx: &Ctx,
        _switch: bool,
        _groups: &'a [libc::gid_t],
    ) -> io::Result<CredGuard<'a>> {
        Ok(CredGuard::none())
    }

    #[cfg(target_os = "linux")]
    fn restore_now(&mut self) {
        if let Some(groups) = self.restore.take() {
            set_fsuid(0);
            set_fsgid(0);
            // Restoring as root cannot fail short of a kernel bug; if it ever did, the
            // thread would keep fewer groups, never more privilege.
            let _ = set_groups(groups);
        }
    }
}

impl Drop for CredGuard<'_> {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        self.restore_now();
    }
}

/// Runs `f` with the daemon's own filesystem uid on this thread, restoring the current
/// one afterwards. A switch away from fsuid 0 drops `CAP_DAC_READ_SEARCH` from the
/// effective set, which `open_by_handle_at` needs; reopening an evicted entry
/// descriptor is the daemon's business, not the caller's (the object is the one the
/// entry already held, so nothing is disclosed).
#[cfg(target_os = "linux")]
pub(super) fn as_daemon<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: geteuid cannot fail.
    let daemon = unsafe { libc::geteuid() };
    let old = set_fsuid(daemon);
    let r = f();
    if old != daemon {
        set_fsuid(old);
    }
    r
}

/// No per-thread credentials off Linux.
#[cfg(not(target_os = "linux"))]
pub(super) fn as_daemon<T>(f: impl FnOnce() -> T) -> T {
    f()
}
