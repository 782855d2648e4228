//! Human-readable times for terminal output: RFC 3339 dates and "expires in 4m12s" /
//! "expired 3h ago" relative to now.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `2026-12-01T20:44:08Z`, or the raw number when out of range.
pub fn date(unix: i64) -> String {
    match u64::try_from(unix) {
        Ok(secs) if secs < 253_402_300_800 => {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
        }
        _ => unix.to_string(),
    }
}

/// A coarse duration: the two largest units, e.g. `4m12s`, `3h5m`, `2d4h`.
pub fn span(secs: u64) -> String {
    let units = [(86_400, "d"), (3600, "h"), (60, "m"), (1, "s")];
    let mut out = String::new();
    let mut rest = secs;
    let mut parts = 0;
    for (size, name) in units {
        if rest >= size && parts < 2 {
            out.push_str(&format!("{}{name}", rest / size));
            rest %= size;
            parts += 1;
        } else if parts > 0 {
            break;
        }
    }
    if out.is_empty() { "0s".into() } else { out }
}

/// "in 4m12s" or "3h ago".
pub fn relative(unix: i64, now: SystemTime) -> String {
    let now = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    if unix >= now {
        format!("in {}", span(unix.abs_diff(now)))
    } else {
        format!("{} ago", span(unix.abs_diff(now)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(date(0), "1970-01-01T00:00:00Z");
        assert_eq!(date(-1), "-1");
        assert_eq!(span(252), "4m12s");
        assert_eq!(span(3 * 3600 + 7), "3h");
        assert_eq!(span(0), "0s");
        let now = UNIX_EPOCH + Duration::from_secs(1000);
        assert_eq!(relative(1252, now), "in 4m12s");
        assert_eq!(relative(1000 - 10_800, now), "3h ago");
    }
}
