//! Header rules of the proxy (DESIGN §3): identity headers sent upstream — and any incoming
//! header that could be mistaken for one, including variants with `_` for `-` that CGI/WSGI
//! servers merge — removed first; the gateway's own cookies removed from `Cookie`; hop-by-hop
//! headers dropped (RFC 9110 §7.6.1); `X-Forwarded-*` set.

use axum::http::header::{CONNECTION, COOKIE, HOST};
use axum::http::{HeaderMap, HeaderName, HeaderValue};

/// The identity headers the upstream receives.
pub const USER: &str = "x-auth-request-user";
pub const EMAIL: &str = "x-auth-request-email";
pub const PREFERRED_USERNAME: &str = "x-auth-request-preferred-username";
pub const GROUPS: &str = "x-auth-request-groups";
pub const ACCESS_TOKEN: &str = "x-forwarded-access-token";

const IDENTITY: [&str; 5] = [USER, EMAIL, PREFERRED_USERNAME, GROUPS, ACCESS_TOKEN];

/// Hop-by-hop headers, never forwarded.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes identity headers and every spelling a CGI server would merge with them.
pub fn strip_identity(headers: &mut HeaderMap) {
    let spoofable: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let normalized = name.as_str().replace('_', "-").to_ascii_lowercase();
            IDENTITY.contains(&normalized.as_str())
        })
        .cloned()
        .collect();
    for name in spoofable {
        headers.remove(&name);
    }
}

/// Removes hop-by-hop headers, including those the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<String> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    for name in HOP_BY_HOP.iter().map(|s| (*s).to_owned()).chain(named) {
        headers.remove(name.as_str());
    }
}

/// Whether a cookie belongs to the gateway (its session, its chunks, its pending logins).
pub fn is_gateway_cookie(name: &str) -> bool {
    name.starts_with("oidcgate_session")
        || name.starts_with("__Host-oidcgate_session")
        || name.starts_with("oidcgate_login.")
}

/// Drops the gateway's cookies from `Cookie`, keeping the application's.
pub fn strip_gateway_cookies(headers: &mut HeaderMap) {
    let kept: Vec<String> = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .filter(|pair| !is_gateway_cookie(pair.split('=').next().unwrap_or("")))
        .map(str::to_owned)
        .collect();
    headers.remove(COOKIE);
    if !kept.is_empty()
        && let Ok(v) = HeaderValue::from_str(&kept.join("; "))
    {
        headers.insert(COOKIE, v);
    }
}

/// Sets `X-Forwarded-For` (appending the peer), `-Proto` and `-Host`.
pub fn set_forwarded(headers: &mut HeaderMap, peer: std::net::IpAddr, proto: &str) {
    let xff = HeaderName::from_static("x-forwarded-for");
    let chain = match headers.get(&xff).and_then(|v| v.to_str().ok()) {
        Some(prev) => format!("{prev}, {peer}"),
        None => peer.to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&chain) {
        headers.insert(xff, v);
    }
    if let Ok(v) = HeaderValue::from_str(proto) {
        headers.insert(HeaderName::from_static("x-forwarded-proto"), v);
    }
    if let Some(host) = headers.get(HOST).cloned() {
        headers.insert(HeaderName::from_static("x-forwarded-host"), host);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spoofed_identity_in_any_spelling_is_removed() {
        let mut h = HeaderMap::new();
        for name in [
            "x-auth-request-user",
            "X_Auth_Request_User",
            "x-auth_request-email",
            "X-Forwarded-Access-Token",
            "x-other",
        ] {
            h.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static("evil"),
            );
        }
        strip_identity(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-other"));
    }

    #[test]
    fn cookies_and_hop_by_hop() {
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_static(
                "app=1; oidcgate_session=x; oidcgate_session.1=y; oidcgate_login.abc=z; b=2",
            ),
        );
        h.insert(CONNECTION, HeaderValue::from_static("close, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("s"));
        h.insert("keep-alive", HeaderValue::from_static("5"));
        strip_gateway_cookies(&mut h);
        strip_hop_by_hop(&mut h);
        assert_eq!(h[COOKIE], "app=1; b=2");
        assert!(
            !h.contains_key("x-secret")
                && !h.contains_key(CONNECTION)
                && !h.contains_key("keep-alive")
        );
        let mut only_ours = HeaderMap::new();
        only_ours.insert(COOKIE, HeaderValue::from_static("oidcgate_session=x"));
        strip_gateway_cookies(&mut only_ours);
        assert!(!only_ours.contains_key(COOKIE));
    }
}
