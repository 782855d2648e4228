//! Reading a JWKS response's freshness from `Cache-Control` (RFC 9111 §5.2).

use std::time::Duration;

/// The response's `max-age`, if any. `no-store` and `no-cache` count as zero (the caller clamps
/// it up to its minimum refresh interval). Malformed values are ignored.
pub fn max_age(header: Option<&str>) -> Option<Duration> {
    let header = header?;
    let mut found = None;
    for directive in header.split(',') {
        let directive = directive.trim();
        let (name, value) = match directive.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (directive, None),
        };
        if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
            return Some(Duration::ZERO);
        }
        if name.eq_ignore_ascii_case("max-age")
            && let Some(seconds) = value.and_then(|v| v.parse::<u64>().ok())
        {
            found = Some(Duration::from_secs(seconds));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_directives() {
        assert_eq!(max_age(None), None);
        assert_eq!(
            max_age(Some("public, max-age=600")),
            Some(Duration::from_secs(600))
        );
        assert_eq!(
            max_age(Some("Max-Age=\"30\"")),
            Some(Duration::from_secs(30))
        );
        assert_eq!(max_age(Some("no-cache")), Some(Duration::ZERO));
        assert_eq!(max_age(Some("max-age=abc, public")), None);
        assert_eq!(max_age(Some("max-age=-5")), None);
    }
}
