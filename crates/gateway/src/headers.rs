//! Header rules of the proxy (DESIGN §3): identity headers sent upstream — and any incoming
//! header that could be mistaken for one, including variants with `_` for `-` that CGI/WSGI
//! servers merge — removed first; the gateway's own cookies removed from `Cookie`; hop-by-hop
//! headers dropped (RFC 9110 §7.6.1); `X-Forwarded-*` set.

use axum::http::header::{
    CONNECTION, COOKIE, HOST, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use oidcgate_axum::login::session::cookie_pairs;

/// The identity headers the upstream receives.
pub const USER: &str = "x-auth-request-user";
pub const EMAIL: &str = "x-auth-request-email";
pub const PREFERRED_USERNAME: &str = "x-auth-request-preferred-username";
pub const GROUPS: &str = "x-auth-request-groups";
pub const ACCESS_TOKEN: &str = "x-forwarded-access-token";

const IDENTITY: [&str; 5] = [USER, EMAIL, PREFERRED_USERNAME, GROUPS, ACCESS_TOKEN];

/// Hop-by-hop headers, never forwarded.
static HOP_BY_HOP: [HeaderName; 8] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
];

/// Whether a header name is an identity header once `_` is read as `-` (header names are
/// stored lower-case). Runs for every header of every request, so it compares in place.
fn is_identity_spelling(name: &HeaderName) -> bool {
    spelled_as(name, &IDENTITY)
}

/// Forwarding and routing headers the gateway does not set itself, which a client could use
/// to mislead the app about where a request came from (`Forwarded`, `X-Real-IP`,
/// `X-Forwarded-Port/-Prefix/-Server`) or which path it is for: some frameworks route by
/// `X-Original-URL`/`X-Rewrite-URL`, which would sidestep path rules such as
/// `SKIP_AUTH_ROUTES`.
const SPOOFABLE: [&str; 7] = [
    "forwarded",
    "x-real-ip",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-server",
    "x-original-url",
    "x-rewrite-url",
];

/// Whether a header name is one of `list` once `_` is read as `-` (names are lower case).
fn spelled_as(name: &HeaderName, list: &[&str]) -> bool {
    let name = name.as_str().as_bytes();
    list.iter().any(|wanted| {
        wanted.len() == name.len()
            && wanted
                .bytes()
                .zip(name)
                .all(|(w, &n)| w == if n == b'_' { b'-' } else { n })
    })
}

/// Removes the [`SPOOFABLE`] forwarding and routing headers, in every `_`/`-` spelling.
pub fn strip_spoofable_forwarding(headers: &mut HeaderMap) {
    strip_spelled_as(headers, &SPOOFABLE);
}

/// Removes every header whose name is one of `list` once `_` is read as `-`. Runs on every
/// request: nothing is collected unless one is there.
fn strip_spelled_as(headers: &mut HeaderMap, list: &[&str]) {
    if !headers.keys().any(|name| spelled_as(name, list)) {
        return;
    }
    let found: Vec<HeaderName> = headers
        .keys()
        .filter(|name| spelled_as(name, list))
        .cloned()
        .collect();
    for name in found {
        headers.remove(&name);
    }
}

/// Whether the request names an identity header with `_` for `-` (only a forger does): in
/// forward-auth mode the front proxy replaces the dashed names from the gateway's answer but
/// passes these on, and CGI-style apps read them as the real ones.
pub fn has_underscore_identity(headers: &HeaderMap) -> bool {
    headers
        .keys()
        .any(|name| name.as_str().contains('_') && is_identity_spelling(name))
}

/// Removes identity headers and every spelling a CGI server would merge with them.
pub fn strip_identity(headers: &mut HeaderMap) {
    strip_spelled_as(headers, &IDENTITY);
}

/// The position of a name in [`HOP_BY_HOP`] (names are lower case; a string match is cheaper
/// than eight `HeaderName` comparisons for every header of every message).
fn hop_by_hop_index(name: &HeaderName) -> Option<usize> {
    match name.as_str() {
        "connection" => Some(0),
        "keep-alive" => Some(1),
        "proxy-authenticate" => Some(2),
        "proxy-authorization" => Some(3),
        "te" => Some(4),
        "trailer" => Some(5),
        "transfer-encoding" => Some(6),
        "upgrade" => Some(7),
        _ => None,
    }
}

/// The comma-separated tokens of a `Connection` value, trimmed, as bytes.
pub fn connection_tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// Removes hop-by-hop headers, including those the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names finds which are present (most messages carry one or none,
    // typically `Connection: keep-alive`); only those are removed.
    let mut present = [false; 8];
    for name in headers.keys() {
        if let Some(i) = hop_by_hop_index(name) {
            present[i] = true;
        }
    }
    if present[0] {
        // `Connection` names more headers to drop; `close` and `keep-alive` are options, not
        // other headers (keep-alive is in the list anyway).
        // Tokens are read as bytes: a value with a non-ASCII byte somewhere still names the
        // headers its valid tokens name.
        let named: Vec<HeaderName> = headers
            .get_all(CONNECTION)
            .iter()
            .flat_map(|v| connection_tokens(v.as_bytes()))
            .filter(|t| !t.eq_ignore_ascii_case(b"close") && !t.eq_ignore_ascii_case(b"keep-alive"))
            .filter_map(|t| HeaderName::from_bytes(t).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for (name, present) in HOP_BY_HOP.iter().zip(present) {
        if present {
            headers.remove(name);
        }
    }
}

/// Whether a cookie belongs to the gateway (its session, its chunks, its pending logins).
pub fn is_gateway_cookie(name: &str) -> bool {
    is_gateway_cookie_bytes(name.as_bytes())
}

fn is_gateway_cookie_bytes(name: &[u8]) -> bool {
    name.starts_with(b"oidcgate_session")
        || name.starts_with(b"__Host-oidcgate_session")
        || name.starts_with(b"oidcgate_login.")
}

/// Drops the gateway's cookies from `Cookie`, keeping the application's (one pass over the
/// header; rebuilt only when it mixes both).
pub fn strip_gateway_cookies(headers: &mut HeaderMap) {
    let (mut ours, mut theirs) = (false, false);
    for value in headers.get_all(COOKIE) {
        for (name, _) in cookie_pairs(value.as_bytes()) {
            if is_gateway_cookie_bytes(name) {
                ours = true;
            } else {
                theirs = true;
            }
        }
    }
    if !ours {
        return;
    }
    let kept = theirs.then(|| {
        let mut kept = Vec::new();
        for value in headers.get_all(COOKIE) {
            for (name, value) in cookie_pairs(value.as_bytes()) {
                if !is_gateway_cookie_bytes(name) {
                    if !kept.is_empty() {
                        kept.extend_from_slice(b"; ");
                    }
                    kept.extend_from_slice(name);
                    kept.push(b'=');
                    kept.extend_from_slice(value);
                }
            }
        }
        kept
    });
    headers.remove(COOKIE);
    if let Some(v) = kept.and_then(|kept| HeaderValue::from_bytes(&kept).ok()) {
        headers.insert(COOKIE, v);
    }
}

/// The client end of a connection, its address already in header form (made once per
/// connection, used on every request of it).
#[derive(Clone, Debug)]
pub struct Peer {
    pub addr: std::net::SocketAddr,
    ip: HeaderValue,
}

impl Peer {
    pub fn new(addr: std::net::SocketAddr) -> Self {
        // An IP address in text form is always a valid header value.
        let ip = HeaderValue::from_str(&addr.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Self { addr, ip }
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Sets `X-Forwarded-For` (appending the peer), `-Proto` and `-Host`.
pub fn set_forwarded(headers: &mut HeaderMap, peer: &Peer, proto: &'static str) {
    // Every incoming value in order (a chain may arrive split over several headers), then the
    // peer; values that are not text or empty are left out.
    let mut chain = String::new();
    for prev in headers.get_all(X_FORWARDED_FOR) {
        if let Ok(prev) = prev.to_str()
            && !prev.trim().is_empty()
        {
            chain.push_str(prev.trim());
            chain.push_str(", ");
        }
    }
    let value = if chain.is_empty() {
        peer.ip.clone()
    } else {
        chain.push_str(&peer.addr.ip().to_string());
        HeaderValue::from_str(&chain).unwrap_or_else(|_| peer.ip.clone())
    };
    headers.insert(X_FORWARDED_FOR, value);
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    // Never the client's own value: apps build absolute URLs from it.
    match headers.get(HOST).cloned() {
        Some(host) => headers.insert(X_FORWARDED_HOST, host),
        None => headers.remove(X_FORWARDED_HOST),
    };
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
    fn spoofable_forwarding_headers_are_removed_in_any_spelling() {
        let mut h = HeaderMap::new();
        for name in [
            "forwarded",
            "x-real-ip",
            "X_Original_URL",
            "x-rewrite-url",
            "x-forwarded-prefix",
            "x-forwarded-for",
            "x-other",
        ] {
            h.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static("v"),
            );
        }
        strip_spoofable_forwarding(&mut h);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["x-forwarded-for", "x-other"]);
    }

    #[test]
    fn underscore_identity_spellings() {
        let mut h = HeaderMap::new();
        h.insert("x-auth-request-user", HeaderValue::from_static("a"));
        h.insert("x_other", HeaderValue::from_static("b"));
        assert!(!has_underscore_identity(&h));
        h.insert("x_auth-request_email", HeaderValue::from_static("c"));
        assert!(has_underscore_identity(&h));
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

    #[test]
    fn connection_with_a_non_ascii_byte_still_names_its_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            CONNECTION,
            HeaderValue::from_bytes(b"close, x-secret, \xff").unwrap(),
        );
        h.insert("x-secret", HeaderValue::from_static("s"));
        h.insert("x-kept", HeaderValue::from_static("k"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn hop_by_hop_index_matches_the_list() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_by_hop_index(name), Some(i), "{name}");
        }
        assert_eq!(hop_by_hop_index(&HOST), None);
    }

    #[test]
    fn hop_by_hop_without_connection_header_and_untouched_cookies() {
        let mut h = HeaderMap::new();
        h.insert(TE, HeaderValue::from_static("trailers"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(PROXY_AUTHORIZATION, HeaderValue::from_static("Basic eA=="));
        h.insert(COOKIE, HeaderValue::from_static("app=1; theme=dark"));
        strip_hop_by_hop(&mut h);
        strip_gateway_cookies(&mut h);
        assert_eq!(h.len(), 1);
        assert_eq!(h[COOKIE], "app=1; theme=dark");
        let mut not_text = HeaderMap::new();
        not_text.insert(
            COOKIE,
            HeaderValue::from_bytes(b"oidcgate_session=\xff").unwrap(),
        );
        strip_gateway_cookies(&mut not_text);
        assert!(!not_text.contains_key(COOKIE));
    }

    #[test]
    fn forwarded_chain() {
        let peer = Peer::new("192.0.2.7:5555".parse().unwrap());
        let mut h = HeaderMap::new();
        h.insert(HOST, HeaderValue::from_static("app.example"));
        set_forwarded(&mut h, &peer, "https");
        assert_eq!(h[X_FORWARDED_FOR], "192.0.2.7");
        assert_eq!(h[X_FORWARDED_PROTO], "https");
        assert_eq!(h[X_FORWARDED_HOST], "app.example");
        h.insert(X_FORWARDED_FOR, HeaderValue::from_static("203.0.113.1"));
        h.append(X_FORWARDED_FOR, HeaderValue::from_static(" 198.51.100.2 "));
        h.append(X_FORWARDED_FOR, HeaderValue::from_static(""));
        set_forwarded(&mut h, &peer, "http");
        assert_eq!(h[X_FORWARDED_FOR], "203.0.113.1, 198.51.100.2, 192.0.2.7");
        assert_eq!(h.get_all(X_FORWARDED_FOR).iter().count(), 1);
        assert_eq!(h[X_FORWARDED_PROTO], "http");
        // Without Host (HTTP/1.0), a client's X-Forwarded-Host does not survive.
        h.remove(HOST);
        h.insert(X_FORWARDED_HOST, HeaderValue::from_static("evil.example"));
        set_forwarded(&mut h, &peer, "http");
        assert!(!h.contains_key(X_FORWARDED_HOST));
    }
}
