//! Keeps the io_uring queue threads in `SCHED_IDLE` only while that starves nobody.
//!
//! # Why the idle class
//! A queue thread shares its CPU with the caller it answers. When the reply wakes the
//! caller, the scheduler puts it on an idle CPU rather than on its own, which is still
//! busy with the queue thread for the last microseconds of the request; every round
//! trip then pays a cross-CPU wakeup. A CPU that runs only `SCHED_IDLE` threads counts as
//! idle, so in that class the caller stays. Measured on the 2-CPU VM with the daemon in
//! its own session (as `vmount start` and the bench run it), memfs create+close and
//! unlink: 15.9 and 9.7 µs in the idle class, 18.5-27 and 32-36 µs in the normal class.
//! Worse, in the normal class a caller that was once moved keeps hopping between CPUs.
//! It goes to whichever CPU is idle, so its next request lands on that CPU's queue, and
//! the queue thread there is busy when the reply comes, so it moves again. An
//! unprivileged daemon (normal class, see below) served 3,000 creates, chmods and
//! unlinks at 66-101, 44-60 and 39-45 µs per call this way, against 15, 6 and 8 µs for
//! root (README, Limitations).
//!
//! # Why not always
//! An idle-class thread runs only when no normal thread wants its CPU. With every CPU
//! busy (a build beside the mount) a queue thread waits for minutes' worth of ticks: the
//! same creates took 2.7-8.3 ms each with a busy loop per CPU in the daemon's session,
//! against 2.6 µs on tmpfs, and the starved thread spent 73-94% of the time waiting to
//! run. So a watcher thread (normal class) reads each queue thread's wait time
//! (`/proc/self/task/TID/schedstat`, the second field): a thread that waited for more than
//! a quarter of a [`TICK`] is moved to the normal class at once. It goes back to the idle
//! class once it has been normal for [`HOLD`] and its CPU was idle for at least
//! [`CALM`] of the last second (`/proc/stat`: in the normal class the wait time no
//! longer shows the contention, the CPU's idle time does), or to try the idle class
//! after a hold that doubles with every try that starves (see [`consider_demotion`]).
//!
//! # Why it parks
//! Looking four times a second at threads that serve nothing would wake an idle daemon
//! four times a second for good. So after [`PARK_AFTER`] without a request the watcher
//! moves the idle-class threads to the normal class, where nothing can starve them, and
//! sleeps until the first request after that wakes it ([`Pulse::touch`], one relaxed
//! load per batch of completions on the queue threads). It then moves them back and
//! watches again. The requests served in between pay what the normal class costs (a
//! few µs each), and a first request that meets busy CPUs is seen after one [`TICK`]
//! instead of one quiet tick.
//!
//! A thread that may not leave the idle class again (an unprivileged user whose
//! `RLIMIT_NICE` does not allow nice 0, which is the default) never enters it, and
//! neither do the threads where the wait times cannot be read: there the normal class
//! is the safe one.

use std::fs;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How often the watcher looks while any queue thread ran or waited since its last look.
pub(crate) const TICK: Duration = Duration::from_millis(25);
/// How often it looks while every queue thread sleeps (no requests): the longest a first
/// request after a quiet spell can starve before its thread is moved.
const QUIET_TICK: Duration = Duration::from_millis(250);
/// The least time a thread stays in the normal class once moved there, before it may go
/// back: at once if its CPU is calm, else to try ([`PROBE`]).
const HOLD: Duration = Duration::from_millis(500);
/// The longest a thread that keeps starving in its tries waits before the next one.
const HOLD_MAX: Duration = Duration::from_secs(32);
/// A thread moved back to try the idle class that starves again within this long failed
/// the try: its hold doubles.
const PROBE: Duration = Duration::from_secs(1);
/// CPUs beyond this are not looked at (the kernel's own limit is 8,192).
const MAX_CPUS: usize = 8192;
/// The share of the last second its CPU must have been idle for a thread to go back.
const CALM: f64 = 0.3;
/// How long every queue thread must have been without work before the watcher parks.
const PARK_AFTER: Duration = Duration::from_secs(2);

/// Moves the calling thread into the idle class if it may also leave it again; returns
/// whether it is there.
pub(crate) fn enter() -> bool {
    if !schedstat_readable() {
        tracing::debug!(
            "io_uring queue threads stay in the normal class: their wait times cannot be \
             read (/proc/thread-self/schedstat)"
        );
        return false;
    }
    if !may_leave_idle() {
        tracing::debug!(
            "io_uring queue threads stay in the normal class: this user may not leave \
             SCHED_IDLE again (RLIMIT_NICE), and a thread there starves while the CPUs \
             are busy"
        );
        return false;
    }
    set_policy(0, libc::SCHED_IDLE).is_ok()
}

/// Whether a thread of this process that enters `SCHED_IDLE` may leave it again, which
/// needs `RLIMIT_NICE` >= 20 or `CAP_SYS_NICE`: tried once, on a thread of its own, since
/// a thread that finds out the hard way stays idle.
fn may_leave_idle() -> bool {
    static MAY: OnceLock<bool> = OnceLock::new();
    *MAY.get_or_init(|| {
        thread::Builder::new()
            .name("vmount-sched-probe".to_owned())
            .spawn(|| {
                set_policy(0, libc::SCHED_IDLE).is_ok() && set_policy(0, libc::SCHED_OTHER).is_ok()
            })
            .ok()
            .and_then(|t| t.join().ok())
            .unwrap_or(false)
    })
}

fn schedstat_readable() -> bool {
    fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| parse_schedstat(&s))
        .is_some()
}

/// `sched_setscheduler(tid, policy)`; 0 is the calling thread.
fn set_policy(tid: libc::pid_t, policy: libc::c_int) -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: a valid parameter block; `tid` is a thread of this process or 0.
    if unsafe { libc::sched_setscheduler(tid, policy, &param) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `run_ns wait_ns timeslices` -> (run, wait).
fn parse_schedstat(s: &str) -> Option<(u64, u64)> {
    let mut it = s.split_ascii_whitespace().map(|f| f.parse::<u64>().ok());
    Some((it.next()??, it.next()??))
}

/// Per CPU from `/proc/stat`: (idle + iowait, all) in clock ticks.
fn cpu_times() -> Vec<Option<(u64, u64)>> {
    fs::read_to_string("/proc/stat")
        .map(|s| parse_cpu_times(&s))
        .unwrap_or_default()
}

fn parse_cpu_times(stat: &str) -> Vec<Option<(u64, u64)>> {
    let mut out = Vec::new();
    for line in stat.lines() {
        // "cpuN ..." lines only: the total line is "cpu  ...", whose first number is
        // the user time, not a CPU.
        let Some(rest) = line
            .strip_prefix("cpu")
            .filter(|r| r.starts_with(|c: char| c.is_ascii_digit()))
        else {
            continue;
        };
        let mut fields = rest.split_ascii_whitespace();
        let Some(Ok(cpu)) = fields.next().map(str::parse::<usize>) else {
            continue;
        };
        if cpu >= MAX_CPUS {
            continue;
        }
        let v: Vec<u64> = fields.filter_map(|f| f.parse().ok()).collect();
        if out.len() <= cpu {
            out.resize(cpu + 1, None);
        }
        // user nice system idle iowait irq softirq steal [guest guest_nice], where guest
        // time is already counted in user.
        if v.len() >= 5 {
            let all = v.iter().take(8).sum();
            out[cpu] = Some((v[3] + v[4], all));
        }
    }
    out
}

/// One queue thread as the watcher sees it.
struct Watched {
    cpu: usize,
    tid: libc::pid_t,
    /// `/proc/self/task/TID/schedstat`, open (reread every tick).
    schedstat: Option<fs::File>,
    last: Option<(u64, u64)>,
    normal_since: Option<Instant>,
    /// The CPU's times when the last one-second window began (normal class only).
    window: Option<(Instant, (u64, u64))>,
    /// How long it stays in the normal class before it tries the idle class again.
    hold: Duration,
    /// When it last went back to try, without its CPU being calm.
    probed: Option<Instant>,
}

/// What the watcher and the queue threads share: the watcher's sleep and the flag that
/// says it parked.
#[derive(Default)]
pub(crate) struct Pulse {
    parked: AtomicBool,
    state: Mutex<PulseState>,
    wake: Condvar,
}

#[derive(Default)]
struct PulseState {
    stop: bool,
    woken: bool,
}

impl Pulse {
    /// Called by a queue thread that got work: wakes a parked watcher.
    #[inline]
    pub(crate) fn touch(&self) {
        if self.parked.load(Ordering::Relaxed) {
            self.unpark();
        }
    }

    #[cold]
    fn unpark(&self) {
        if self.parked.swap(false, Ordering::AcqRel) {
            self.lock().woken = true;
            self.wake.notify_all();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PulseState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Watched {
    /// The thread's (run, wait) times now; `None` once it has ended.
    fn read(&self) -> Option<(u64, u64)> {
        use std::os::unix::fs::FileExt as _;
        let mut buf = [0u8; 96];
        let n = self.schedstat.as_ref()?.read_at(&mut buf, 0).ok()?;
        parse_schedstat(std::str::from_utf8(buf.get(..n)?).ok()?)
    }
}

/// The watcher of one mount's queue threads; stops (and is joined) on drop.
pub(crate) struct Watcher {
    shared: Arc<Pulse>,
    thread: Option<JoinHandle<()>>,
}

/// This thread's id, for [`Watcher::start`].
pub(crate) fn gettid() -> libc::pid_t {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::gettid() }
}

impl Watcher {
    /// Watches the idle-class queue threads `idle`, given as (CPU it is pinned to, thread
    /// id), which touch `pulse` when they get work; none if there are none.
    pub(crate) fn start(
        idle: Vec<(usize, libc::pid_t)>,
        pulse: Arc<Pulse>,
    ) -> io::Result<Option<Watcher>> {
        let watched: Vec<Watched> = idle
            .into_iter()
            .map(|(cpu, tid)| Watched {
                cpu,
                tid,
                schedstat: fs::File::open(format!("/proc/self/task/{tid}/schedstat")).ok(),
                last: None,
                normal_since: None,
                window: None,
                hold: HOLD,
                probed: None,
            })
            .collect();
        if watched.is_empty() {
            return Ok(None);
        }
        let shared = Arc::clone(&pulse);
        let thread = thread::Builder::new()
            .name("vmount-sched".to_owned())
            .spawn(move || watch(watched, &pulse))?;
        Ok(Some(Watcher {
            shared,
            thread: Some(thread),
        }))
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn watch(mut threads: Vec<Watched>, shared: &Pulse) {
    let mut tick = TICK;
    let mut looked = Instant::now();
    let mut quiet_since = None;
    loop {
        {
            let st = shared.lock();
            let (st, _) = shared
                .wake
                .wait_timeout_while(st, tick, |s| !s.stop)
                .unwrap_or_else(|e| e.into_inner());
            if st.stop {
                return;
            }
        }
        let now = Instant::now();
        let elapsed = now.duration_since(looked).as_nanos() as u64;
        looked = now;
        let cpus = if threads.iter().any(|t| t.normal_since.is_some()) {
            cpu_times()
        } else {
            Vec::new()
        };
        let mut busy = false;
        threads.retain_mut(|t| {
            let Some(now_stat) = t.read() else {
                return false; // the thread has ended
            };
            let waited = t.last.map_or(0, |(_, w)| now_stat.1.saturating_sub(w));
            busy |= t.last != Some(now_stat);
            t.last = Some(now_stat);
            match t.normal_since {
                None if waited.saturating_mul(4) > elapsed => promote(t, now),
                None => {}
                Some(since) => consider_demotion(t, since, now, cpus.get(t.cpu).copied().flatten()),
            }
            true
        });
        if threads.is_empty() {
            return;
        }
        tick = if busy { TICK } else { QUIET_TICK };
        if busy || threads.iter().any(|t| t.normal_since.is_some()) {
            quiet_since = None;
            continue;
        }
        let since = *quiet_since.get_or_insert(now);
        if now.duration_since(since) < PARK_AFTER {
            continue;
        }
        if !park(&mut threads, shared) {
            return;
        }
        looked = Instant::now();
        quiet_since = None;
        tick = TICK;
    }
}

/// Moves every thread to the normal class and sleeps until a queue thread gets work,
/// then moves them back (see the module docs). Returns false when told to stop.
fn park(threads: &mut [Watched], shared: &Pulse) -> bool {
    let mut moved = 0;
    for t in threads.iter() {
        if set_policy(t.tid, libc::SCHED_OTHER).is_err() {
            break;
        }
        moved += 1;
    }
    if moved == threads.len() {
        // Set after the move: a thread that sees it is already safe from starving, and
        // one that got work just before it stays safe until the next work wakes us.
        shared.parked.store(true, Ordering::SeqCst);
        let st = shared.lock();
        let mut st = shared
            .wake
            .wait_while(st, |s| !s.stop && !s.woken)
            .unwrap_or_else(|e| e.into_inner());
        st.woken = false;
        if st.stop {
            return false;
        }
    }
    shared.parked.store(false, Ordering::SeqCst);
    for t in threads.iter_mut().take(moved) {
        let _ = set_policy(t.tid, libc::SCHED_IDLE);
        t.last = t.read();
    }
    true
}

fn promote(t: &mut Watched, now: Instant) {
    match set_policy(t.tid, libc::SCHED_OTHER) {
        Ok(()) => {
            tracing::debug!(
                cpu = t.cpu,
                "io_uring queue thread starved in SCHED_IDLE; it runs in the normal class \
                 while its CPU is busy"
            );
            if t.probed
                .take()
                .is_some_and(|p| now.duration_since(p) < PROBE)
            {
                t.hold = (t.hold * 2).min(HOLD_MAX);
            }
            t.normal_since = Some(now);
            t.window = None;
        }
        Err(e) => tracing::debug!(cpu = t.cpu, error = %e, "cannot move a starved queue thread"),
    }
}

/// Moves a thread in the normal class back to the idle class once it has been there for
/// [`HOLD`] and its CPU was idle for [`CALM`] of the last second, or, calm or not, once
/// it has been there for its own hold: a try. In the normal class a thread's wait no
/// longer shows whether the idle class would starve it, and a CPU kept busy by the
/// thread's own callers never looks calm: a caller that reads ahead (`dd` of a file,
/// whose readahead keeps requests queued while it copies) once starved its queue thread
/// by running, and then a caller that waits for each reply (4 KiB appends) was served
/// in the normal class for good, at twice the cost (1.9 s for 256 MiB instead of
/// 0.9 s). A try that starves again within [`PROBE`] doubles the hold, up to
/// [`HOLD_MAX`], so that under CPUs that stay busy the tries (each one at most a
/// [`TICK`] of starvation) soon come rarely; a calm CPU resets it.
fn consider_demotion(t: &mut Watched, since: Instant, now: Instant, cpu: Option<(u64, u64)>) {
    let held = now.duration_since(since);
    let mut calm = false;
    if let Some(cpu) = cpu {
        match t.window {
            None => t.window = Some((now, cpu)),
            Some((began, at)) if now.duration_since(began) >= Duration::from_secs(1) => {
                t.window = Some((now, cpu));
                let (idle, all) = (cpu.0.saturating_sub(at.0), cpu.1.saturating_sub(at.1));
                calm = all != 0 && idle as f64 >= CALM * all as f64;
            }
            Some(_) => {}
        }
    }
    let probe = held >= t.hold;
    if !(probe || calm && held >= HOLD) {
        return;
    }
    if set_policy(t.tid, libc::SCHED_IDLE).is_ok() {
        tracing::debug!(
            cpu = t.cpu,
            calm,
            "io_uring queue thread back in SCHED_IDLE"
        );
        t.normal_since = None;
        t.window = None;
        if calm {
            t.hold = HOLD;
            t.probed = None;
        } else {
            t.probed = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedstat_lines_are_read() {
        assert_eq!(parse_schedstat("123 456 7\n"), Some((123, 456)));
        assert_eq!(parse_schedstat("123\n"), None);
        assert_eq!(parse_schedstat(""), None);
        assert!(
            schedstat_readable(),
            "this kernel has /proc/thread-self/schedstat"
        );
    }

    #[test]
    fn the_way_back_from_the_idle_class_is_known_before_entering_it() {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            assert!(may_leave_idle(), "root may leave SCHED_IDLE");
        }
        let (entered, policy) = thread::spawn(|| {
            let entered = enter();
            // SAFETY: 0 is the calling thread.
            (entered, unsafe { libc::sched_getscheduler(0) })
        })
        .join()
        .unwrap();
        assert_eq!(
            entered,
            may_leave_idle(),
            "enters exactly when it may leave"
        );
        let want = if entered {
            libc::SCHED_IDLE
        } else {
            libc::SCHED_OTHER
        };
        assert_eq!(policy, want);
    }

    #[test]
    fn cpu_lines_give_idle_and_all_per_cpu() {
        let stat = "cpu  10 0 10 100 5 0 0 0 0 0\n\
                    cpu0 1 2 3 40 5 6 7 8 9 10\n\
                    cpu2 1 1 1 1 1 1 1 1 0 0\n\
                    intr 1 2 3\n";
        let t = parse_cpu_times(stat);
        assert_eq!(t, vec![Some((45, 72)), None, Some((2, 8))]);
        assert!(!cpu_times().is_empty());
    }
}
