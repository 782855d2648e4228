//! `SKIP_AUTH_ROUTES`: comma-separated `[METHOD=]regex` rules for routes that need no
//! authentication (health checks, public assets). Each regex is anchored and matched on the
//! normalized path only — never the query — after dot segments (also percent-encoded ones) are
//! resolved, and the request that goes upstream carries that normalized path, so what was
//! matched is what is forwarded (`/public/../admin` cannot ride on a `^/public/.*` rule). Paths
//! that servers interpret in their own ways (`;`, backslashes, encoded `/`, `\`, `;`, `%`) never
//! skip authentication.

use axum::http::Method;
use regex::Regex;

use crate::config::ConfigError;

/// One rule.
#[derive(Debug, Clone)]
struct Rule {
    method: Option<Method>,
    path: Regex,
}

/// The parsed rules.
#[derive(Debug, Clone, Default)]
pub struct SkipAuth {
    rules: Vec<Rule>,
}

impl SkipAuth {
    /// Parses `SKIP_AUTH_ROUTES`.
    pub fn parse(spec: Option<&str>) -> Result<Self, ConfigError> {
        let mut rules = Vec::new();
        for item in spec
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let (method, pattern) =
                match item.split_once('=') {
                    Some((m, p)) if !m.is_empty() && m.chars().all(|c| c.is_ascii_alphabetic()) => {
                        let method = Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                            .map_err(|_| ConfigError {
                                setting: "SKIP_AUTH_ROUTES",
                                problem: format!("{m:?} is not an HTTP method"),
                            })?;
                        (Some(method), p)
                    }
                    _ => (None, item),
                };
            let pattern = pattern.trim_start_matches('^').trim_end_matches('$');
            // The pattern must stand on its own: one with an unbalanced `)` could otherwise
            // close the anchoring group (`/health)|(.*` would match every path).
            Regex::new(pattern).map_err(|e| ConfigError {
                setting: "SKIP_AUTH_ROUTES",
                problem: format!("{item:?}: {e}"),
            })?;
            let path = Regex::new(&format!("^(?:{pattern})$")).map_err(|e| ConfigError {
                setting: "SKIP_AUTH_ROUTES",
                problem: format!("{item:?}: {e}"),
            })?;
            rules.push(Rule { method, path });
        }
        Ok(Self { rules })
    }

    /// Whether a request (with its normalized path) needs no authentication. A path that
    /// servers read differently (see [`ambiguous`]) never matches: it needs authentication.
    pub fn matches(&self, method: &Method, normalized_path: &str) -> bool {
        if ambiguous(normalized_path) {
            return false;
        }
        self.rules.iter().any(|r| {
            r.method.as_ref().is_none_or(|m| m == method) && r.path.is_match(normalized_path)
        })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// Whether a path holds what application servers interpret in their own ways, so the path the
/// rule saw may not be the path the app serves: `;` (path parameters: Tomcat reads
/// `/public/..;/admin` as `/admin`), a backslash, or an encoded `/`, `\`, `;` or `%`.
pub fn ambiguous(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    lower.contains(';')
        || lower.contains('\\')
        || ["%2f", "%5c", "%3b", "%25"]
            .iter()
            .any(|e| lower.contains(e))
}

/// Resolves dot segments (RFC 3986 §5.2.4), treating `%2e`/`%2E` as `.`; other bytes are kept
/// as they are. Always starts with `/`.
pub fn normalize_path(path: &str) -> std::borrow::Cow<'_, str> {
    // Most paths have nothing to resolve: no `.`/`..` segment and no encoded dot.
    let plain = path.starts_with('/')
        && !path.split('/').any(|seg| seg == "." || seg == "..")
        && !path
            .as_bytes()
            .windows(3)
            .any(|w| w[0] == b'%' && w[1] == b'2' && (w[2] | 0x20) == b'e');
    if plain {
        return std::borrow::Cow::Borrowed(path);
    }
    let decoded_dots = path.replace("%2e", ".").replace("%2E", ".");
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = decoded_dots.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => {
                if i == last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if i == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    std::borrow::Cow::Owned(format!("/{}", out.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization() {
        assert_eq!(normalize_path("/a/b"), "/a/b");
        assert_eq!(normalize_path("/public/../admin"), "/admin");
        assert_eq!(normalize_path("/public/%2e%2e/admin"), "/admin");
        assert_eq!(normalize_path("/public/%2E%2E/admin"), "/admin");
        assert_eq!(normalize_path("/a/./b/"), "/a/b/");
        assert_eq!(normalize_path("/../../x"), "/x");
        assert_eq!(normalize_path("/a/.."), "/");
        assert_eq!(normalize_path("/"), "/");
    }

    #[test]
    fn rules() {
        let s = SkipAuth::parse(Some("GET=^/health$, /public/.*")).unwrap();
        assert!(s.matches(&Method::GET, "/health"));
        assert!(!s.matches(&Method::POST, "/health"));
        assert!(!s.matches(&Method::GET, "/healthz"), "anchored");
        assert!(s.matches(&Method::POST, "/public/a.css"));
        assert!(!s.matches(&Method::GET, &normalize_path("/public/../admin")));
        for tricky in [
            "/public/..;/admin",
            "/public;x=1/a.css",
            "/public/%2e%2e%2fadmin",
            "/public/..%2Fadmin",
            "/public\\..\\admin",
            "/public/%5c../admin",
            "/public/%252e%252e/admin",
        ] {
            assert!(
                !s.matches(&Method::GET, &normalize_path(tricky)),
                "{tricky} needs authentication"
            );
        }
        assert!(s.matches(&Method::GET, "/public/a%20b.css"));
        assert!(SkipAuth::parse(Some("GET=(")).is_err());
        assert!(
            SkipAuth::parse(Some("/health)|(.*")).is_err(),
            "a pattern cannot escape its anchors"
        );
        assert!(
            SkipAuth::parse(Some("G3T=/x")).is_ok(),
            "not a method name: the whole item is the regex"
        );
    }
}
