//! Timestamps as the kernel exchanges them (seconds since the epoch, negative before it,
//! and nanoseconds below one second) and `SystemTime`, both ways, in one place: the
//! loopback's `stat`, memfs's kernel-held files and the FUSE wire format all convert.
//!
//! Conversions never panic on client or host input: nanoseconds are clamped to
//! 0..=999,999,999 and seconds that `SystemTime` cannot hold saturate.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `secs` + `nsec` as a `SystemTime`: `(-2, 500_000_000)` is 1.5 s before the epoch, as in
/// `struct timespec`.
pub fn from_parts(secs: i64, nsec: i64) -> SystemTime {
    let nanos = Duration::from_nanos(nsec.clamp(0, 999_999_999) as u64);
    let at = |s: i64| {
        let whole = if s >= 0 {
            UNIX_EPOCH.checked_add(Duration::from_secs(s.unsigned_abs()))
        } else {
            UNIX_EPOCH.checked_sub(Duration::from_secs(s.unsigned_abs()))
        };
        whole.and_then(|t| t.checked_add(nanos))
    };
    if let Some(t) = at(secs) {
        return t;
    }
    // Out of `SystemTime`'s range (only at the extremes of i64): the nearest second it
    // holds, found by halving towards the epoch.
    let mut s = secs;
    loop {
        s /= 2;
        if let Some(t) = at(s) {
            return t;
        }
    }
}

/// `t` as seconds and nanoseconds (`struct timespec`), or `None` when the seconds do not
/// fit an i64.
pub fn to_parts(t: SystemTime) -> Option<(i64, u32)> {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => Some((i64::try_from(d.as_secs()).ok()?, d.subsec_nanos())),
        Err(e) => {
            let d = e.duration();
            let secs = i64::try_from(d.as_secs()).ok()?;
            Some(match d.subsec_nanos() {
                0 => (-secs, 0),
                n => (-secs - 1, 1_000_000_000 - n),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_including_before_the_epoch() {
        for t in [
            UNIX_EPOCH,
            UNIX_EPOCH + Duration::new(1_700_000_000, 999_999_999),
            UNIX_EPOCH - Duration::new(1, 250_000_000),
            UNIX_EPOCH - Duration::new(86_400, 0),
        ] {
            let (s, n) = to_parts(t).unwrap();
            assert_eq!(from_parts(s, i64::from(n)), t);
        }
        assert_eq!(
            to_parts(UNIX_EPOCH - Duration::new(1, 250_000_000)),
            Some((-2, 750_000_000))
        );
        assert_eq!(
            from_parts(-2, 500_000_000),
            UNIX_EPOCH - Duration::from_millis(1500)
        );
    }

    #[test]
    fn extremes_saturate_instead_of_panicking() {
        let _ = from_parts(i64::MAX, i64::MAX);
        let _ = from_parts(i64::MIN, -1);
        assert_eq!(from_parts(0, -5), UNIX_EPOCH);
        assert_eq!(
            from_parts(0, 5_000_000_000),
            UNIX_EPOCH + Duration::new(0, 999_999_999)
        );
    }
}
