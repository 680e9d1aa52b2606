//! What ends a foreground mount's wait: SIGINT, SIGTERM or SIGHUP (Ctrl-C or Ctrl-Break
//! on Windows), a stop request from another thread, or the end of the mount itself.
//!
//! # Design decisions
//! - **The signal handlers only set a flag and write a byte.** All real work (the
//!   unmount) stays on the thread that owns the mount guard, out of signal context.
//! - **The wait sleeps until something happens** instead of polling. A daemon that
//!   looked ten times a second for a signal and again for a vanished mount woke 20 times
//!   a second while nothing happened, which keeps an idle laptop's CPU out of its deep
//!   sleep states for no purpose. On unix the handlers write to a socket pair, as do
//!   [`Stop::request`] and the backends' end-of-mount notices ([`Stop::waker`]), and
//!   the wait blocks in `poll` on it (plus, where a backend cannot report its end, the
//!   mount table, which Linux reports changes of). Windows has no such descriptor for
//!   its console handlers, so there the wait still looks every
//!   [`crate::run::POLL`].
//! - **The handlers go with the `Stop`.** An embedding program that waits on one mount
//!   after another gets a fresh set each time: the first wait's handlers, left behind
//!   with their flag set, used to take the second wait's first Ctrl-C for a repeat and
//!   exit the process. What a wait leaves behind is only what the process did after a
//!   wait before: a signal ends it with code 1 ([`AFTER`]), until the next wait
//!   replaces that with its own handlers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;

/// The handlers the last ended wait left: a signal exits with code 1.
static AFTER: std::sync::Mutex<Vec<signal_hook::SigId>> = std::sync::Mutex::new(Vec::new());

/// The signals a wait ends on.
#[cfg(unix)]
const SIGNALS: [std::ffi::c_int; 3] = {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    [SIGINT, SIGTERM, SIGHUP]
};
#[cfg(windows)]
const SIGNALS: [std::ffi::c_int; 2] = {
    use signal_hook::consts::{SIGINT, SIGTERM};
    [SIGINT, SIGTERM]
};

/// The stop flag of one wait, with its signal handlers (removed on drop).
pub(crate) struct Stop {
    flag: Arc<AtomicBool>,
    handlers: Vec<signal_hook::SigId>,
    #[cfg(unix)]
    wake: Wake,
}

/// The socket pair the wait sleeps on: anything written to `tx` wakes it.
#[cfg(unix)]
struct Wake {
    rx: std::os::unix::net::UnixStream,
    tx: Arc<std::os::unix::net::UnixStream>,
}

impl Stop {
    /// Installs the handlers: the first SIGINT/SIGTERM (and SIGHUP on unix) sets the
    /// flag; a second one exits at once (code 1), so that an unmount stuck on a busy
    /// mount can still be abandoned with another Ctrl-C.
    pub(crate) fn install() -> anyhow::Result<Stop> {
        for id in AFTER.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            signal_hook::low_level::unregister(id);
        }
        #[cfg(unix)]
        let wake = {
            let (rx, tx) = std::os::unix::net::UnixStream::pair()
                .context("cannot create the daemon's wake-up socket pair")?;
            rx.set_nonblocking(true)
                .context("cannot set up the daemon's wake-up socket pair")?;
            #[cfg(target_os = "macos")]
            {
                use std::os::fd::AsRawFd as _;
                let one: libc::c_int = 1;
                // SAFETY: a valid socket and a c_int option value that outlives the call.
                unsafe {
                    libc::setsockopt(
                        tx.as_raw_fd(),
                        libc::SOL_SOCKET,
                        libc::SO_NOSIGPIPE,
                        (&raw const one).cast(),
                        std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                    );
                }
            }
            Wake {
                rx,
                tx: Arc::new(tx),
            }
        };
        let mut stop = Stop {
            flag: Arc::new(AtomicBool::new(false)),
            handlers: Vec::new(),
            #[cfg(unix)]
            wake,
        };
        for sig in SIGNALS {
            // Registered first, so it sees the flag as set only on a second signal.
            let id =
                signal_hook::flag::register_conditional_shutdown(sig, 1, Arc::clone(&stop.flag))
                    .context("cannot install the signal handlers")?;
            stop.handlers.push(id);
            let id = signal_hook::flag::register(sig, Arc::clone(&stop.flag))
                .context("cannot install the signal handlers")?;
            stop.handlers.push(id);
            #[cfg(unix)]
            {
                // After the flag, so the woken wait finds it set. The handler owns (and
                // closes on removal) a clone of the sending end.
                let tx = stop
                    .wake
                    .tx
                    .try_clone()
                    .context("cannot install the signal handlers")?;
                let id = signal_hook::low_level::pipe::register(sig, tx)
                    .context("cannot install the signal handlers")?;
                stop.handlers.push(id);
            }
        }
        Ok(stop)
    }

    /// Whether a signal or [`Stop::request`] asked the wait to end.
    pub(crate) fn is_requested(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Asks the wait to end, as SIGTERM does (the state thread's stop request).
    pub(crate) fn request(&self) {
        self.flag.store(true, Ordering::SeqCst);
        #[cfg(unix)]
        wake(&self.wake.tx);
    }

    /// Something that wakes the wait when called, for a backend to call when its mount
    /// ends; `None` where the wait cannot be woken (Windows: it looks every
    /// [`crate::run::POLL`] anyway).
    pub(crate) fn waker(&self) -> Option<Box<dyn FnOnce() + Send>> {
        #[cfg(unix)]
        {
            let tx = Arc::clone(&self.wake.tx);
            Some(Box::new(move || wake(&tx)))
        }
        #[cfg(not(unix))]
        None
    }

    /// Sleeps until woken, until `table` reports a change of the mount table (Linux
    /// reports one as POLLERR|POLLPRI, once to each poll that sees it), or for at most
    /// `timeout`.
    #[cfg(unix)]
    pub(crate) fn sleep(&self, timeout: Duration, table: &MountTable) {
        use std::io::Read as _;
        use std::os::fd::AsRawFd as _;

        let mut fds = [
            libc::pollfd {
                fd: self.wake.rx.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: table.raw_fd(),
                events: libc::POLLPRI,
                revents: 0,
            },
        ];
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // A timeout, or EINTR from a signal whose byte is on its way, returns too.
        // SAFETY: two valid pollfds (poll skips one whose fd is negative).
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
        if n > 0 && fds[0].revents & libc::POLLIN != 0 {
            let mut buf = [0u8; 64];
            while matches!((&self.wake.rx).read(&mut buf), Ok(n) if n > 0) {}
        }
    }

    /// Sleeps for `timeout`, but at most [`crate::run::POLL`]: nothing can wake this wait.
    #[cfg(not(unix))]
    pub(crate) fn sleep(&self, timeout: Duration, _table: &MountTable) {
        std::thread::sleep(timeout.min(crate::run::POLL));
    }
}

/// The mount table as something to wait on: Linux reports its changes to `poll` on an
/// open `/proc/self/mountinfo`; elsewhere there is nothing to wait on.
#[derive(Debug, Default)]
pub(crate) struct MountTable {
    #[cfg(target_os = "linux")]
    file: Option<std::fs::File>,
}

impl MountTable {
    /// The table of this process's mount namespace, if its changes can be waited for.
    pub(crate) fn open() -> MountTable {
        MountTable {
            #[cfg(target_os = "linux")]
            file: std::fs::File::open("/proc/self/mountinfo").ok(),
        }
    }

    /// Whether [`Stop::sleep`] wakes on its changes.
    pub(crate) fn reports_changes(&self) -> bool {
        #[cfg(target_os = "linux")]
        return self.file.is_some();
        #[cfg(not(target_os = "linux"))]
        false
    }

    #[cfg(unix)]
    fn raw_fd(&self) -> std::os::fd::RawFd {
        #[cfg(target_os = "linux")]
        if let Some(f) = &self.file {
            return std::os::fd::AsRawFd::as_raw_fd(f);
        }
        -1
    }
}

/// Writes a byte to wake the wait; a full buffer already holds a wake-up.
#[cfg(unix)]
fn wake(tx: &std::os::unix::net::UnixStream) {
    use std::os::fd::AsRawFd as _;
    // The receiving end may be gone (a backend's notice after the wait returned): no
    // SIGPIPE for that (MSG_NOSIGNAL on Linux, SO_NOSIGPIPE set at creation elsewhere).
    #[cfg(target_os = "linux")]
    let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    #[cfg(not(target_os = "linux"))]
    let flags = libc::MSG_DONTWAIT;
    // SAFETY: a one-byte buffer that lives across the call.
    let _ = unsafe { libc::send(tx.as_raw_fd(), b"w".as_ptr().cast(), 1, flags) };
}

impl Drop for Stop {
    fn drop(&mut self) {
        let mut after = AFTER.lock().unwrap_or_else(|e| e.into_inner());
        let set = Arc::new(AtomicBool::new(true));
        for sig in SIGNALS {
            if let Ok(id) =
                signal_hook::flag::register_conditional_shutdown(sig, 1, Arc::clone(&set))
            {
                after.push(id);
            }
        }
        for id in self.handlers.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

impl std::fmt::Debug for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stop")
            .field("requested", &self.is_requested())
            .finish()
    }
}
