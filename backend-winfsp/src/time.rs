//! FILETIME (100 ns ticks since 1601-01-01 UTC) <-> `SystemTime`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// FILETIME ticks between 1601-01-01 and the Unix epoch.
const EPOCH_DIFF_TICKS: u64 = 116_444_736_000_000_000;
/// Ticks per second.
const TICKS_PER_SEC: u64 = 10_000_000;
/// NT stores times as signed 64-bit values; larger ones are clamped to this.
const MAX_FILETIME: u64 = i64::MAX as u64;

/// Converts a `SystemTime` to FILETIME ticks, truncating to 100 ns. Times before 1601
/// become 0 and times past the largest NT time are clamped, so no input can overflow.
pub(crate) fn to_filetime(t: SystemTime) -> u64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(after) => ticks(after)
            .and_then(|t| t.checked_add(EPOCH_DIFF_TICKS))
            .map_or(MAX_FILETIME, |t| t.min(MAX_FILETIME)),
        Err(before) => ticks(before.duration()).map_or(0, |t| EPOCH_DIFF_TICKS.saturating_sub(t)),
    }
}

/// Converts FILETIME ticks to a `SystemTime`. Values above the NT maximum are clamped
/// to it.
pub(crate) fn from_filetime(ft: u64) -> SystemTime {
    let ft = ft.min(MAX_FILETIME);
    let dur = |t: u64| Duration::new(t / TICKS_PER_SEC, ((t % TICKS_PER_SEC) * 100) as u32);
    if ft >= EPOCH_DIFF_TICKS {
        UNIX_EPOCH + dur(ft - EPOCH_DIFF_TICKS)
    } else {
        UNIX_EPOCH - dur(EPOCH_DIFF_TICKS - ft)
    }
}

/// Whole 100 ns ticks in `d`, `None` on overflow.
fn ticks(d: Duration) -> Option<u64> {
    d.as_secs()
        .checked_mul(TICKS_PER_SEC)?
        .checked_add(u64::from(d.subsec_nanos() / 100))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_epoch_and_known_dates() {
        assert_eq!(to_filetime(UNIX_EPOCH), EPOCH_DIFF_TICKS);
        assert_eq!(from_filetime(EPOCH_DIFF_TICKS), UNIX_EPOCH);
        // 2000-01-01T00:00:00Z = 946684800 s after the Unix epoch.
        let y2k = UNIX_EPOCH + Duration::from_secs(946_684_800);
        assert_eq!(to_filetime(y2k), 125_911_584_000_000_000);
        assert_eq!(from_filetime(125_911_584_000_000_000), y2k);
    }

    #[test]
    fn round_trips_at_100ns_precision() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_700);
        assert_eq!(from_filetime(to_filetime(t)), t);
        // Sub-100 ns digits are truncated.
        let t2 = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        assert_eq!(from_filetime(to_filetime(t2)), t);
        // Before the Unix epoch, after 1601.
        let old = UNIX_EPOCH - Duration::new(86_400 * 365 * 100, 500);
        assert_eq!(from_filetime(to_filetime(old)), old);
    }

    #[test]
    fn extremes_are_clamped_not_overflowed() {
        assert_eq!(
            from_filetime(0),
            UNIX_EPOCH - Duration::from_secs(11_644_473_600)
        );
        assert_eq!(to_filetime(from_filetime(0)), 0);
        let before_1601 = UNIX_EPOCH - Duration::from_secs(11_644_473_600 + 10);
        assert_eq!(to_filetime(before_1601), 0);
        assert_eq!(to_filetime(from_filetime(u64::MAX)), MAX_FILETIME);
        if let Some(far) = UNIX_EPOCH.checked_add(Duration::from_secs(u64::MAX / 2)) {
            assert_eq!(to_filetime(far), MAX_FILETIME);
        }
    }
}
