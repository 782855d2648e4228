//! Fuzzes the gateway's header rules (`oidcgate_gateway::headers`) on any request header set.
//! The input is `name: value` lines (`\n`, an optional `\r` before it; one optional space after
//! the colon); names go through `HeaderName::from_bytes` (so they are lower case), values
//! through `HeaderValue::from_bytes` (any byte but controls, so obs-text is in), and lines that
//! are neither are skipped. Names may repeat: several `Cookie`, `Connection`,
//! `X-Forwarded-For`, `Host`… headers. Each rule runs on its own copy of that map and is
//! checked against a reference written here, independently of the code under test:
//!
//! - `strip_identity` removes exactly the headers whose name, `_` read as `-`, is an identity
//!   header (`x-auth-request-user`, `-email`, `-preferred-username`, `-groups`,
//!   `x-forwarded-access-token`); every other header keeps its values in order;
//! - `has_underscore_identity` is true exactly when such a name holds a `_`;
//! - `cookie_pairs` (on each `Cookie` value and on the raw input) yields the `name=value`
//!   pieces between `;`, ASCII-whitespace trimmed, split at the first `=`, pieces without `=`
//!   left out, as sub-slices of its input;
//! - `strip_gateway_cookies` leaves no pair named `oidcgate_session*`,
//!   `__Host-oidcgate_session*` or `oidcgate_login.*`, keeps every other pair in order, drops
//!   `Cookie` when nothing else is left, leaves `Cookie` as it was when none of ours was in it,
//!   and touches no other header;
//! - `strip_hop_by_hop` removes the eight hop-by-hop headers of RFC 9110 §7.6.1 and every
//!   header named by a `Connection` token (comma-separated, trimmed, a valid header name; not
//!   `close` or `keep-alive`, which are options), and nothing else;
//! - `set_forwarded` (fixed IPv4 and IPv6 peers) leaves one `X-Forwarded-For`: every incoming
//!   one that is text and not blank, trimmed, in order, joined by `, `, then `, ` and the peer
//!   IP; else the peer IP alone; one
//!   `X-Forwarded-Proto` (the proto given); `X-Forwarded-Host` the first `Host` when there is
//!   one, else none (never the client's); nothing else changed.
//!
//! Any difference panics with the input's headers in the message. `proxy_headers` is repeated
//! word for word in `crates/gateway/tests/fuzz_corpus.rs`, which replays this target's seeds on
//! every `cargo test` (the fuzz crate is outside the workspace); keep the two in step.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};

use http::header::{CONNECTION, COOKIE, HOST};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use oidcgate_axum::login::session::cookie_pairs;
use oidcgate_gateway::headers::{
    Peer, has_underscore_identity, set_forwarded, strip_gateway_cookies, strip_hop_by_hop,
    strip_identity,
};

/// What one input exercised; the replay test asserts that the seeds, together, exercise each
/// (only it reads the fields).
#[allow(dead_code)]
#[derive(Debug, Default)]
struct Seen {
    identity_removed: bool,
    underscore_identity: bool,
    gateway_cookies_removed: bool,
    app_cookies_kept: bool,
    connection_named_removed: bool,
    forwarded_for_appended: bool,
    host_forwarded: bool,
}

/// Builds the header map from the input, runs every rule and checks it (see the module docs).
fn proxy_headers(data: &[u8]) -> Seen {
    /// More lines are ignored (a `HeaderMap` holds at most 32,768 entries).
    const MAX_HEADERS: usize = 1000;
    const IDENTITY: [&str; 5] = [
        "x-auth-request-user",
        "x-auth-request-email",
        "x-auth-request-preferred-username",
        "x-auth-request-groups",
        "x-forwarded-access-token",
    ];
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
    /// ASCII whitespace as `u8::is_ascii_whitespace` has it (no vertical tab, nothing
    /// beyond ASCII).
    const WHITESPACE: &[u8] = b" \t\n\x0c\r";
    const PEERS: [&str; 2] = ["192.0.2.7:5555", "[2001:db8::7]:443"];

    type Snapshot = BTreeMap<String, Vec<String>>;
    type Pairs<'a> = Vec<(&'a [u8], &'a [u8])>;

    /// Every name with its values in order (bytes escaped, so a panic message is readable).
    fn snapshot(headers: &HeaderMap) -> Snapshot {
        headers
            .keys()
            .map(|name| {
                let values = headers.get_all(name).iter();
                let values = values.map(|v| v.as_bytes().escape_ascii().to_string());
                (name.as_str().to_owned(), values.collect())
            })
            .collect()
    }
    fn without(mut snapshot: Snapshot, names: &[&str]) -> Snapshot {
        snapshot.retain(|name, _| !names.contains(&name.as_str()));
        snapshot
    }
    fn is_identity(name: &str) -> bool {
        IDENTITY.contains(&name.replace('_', "-").as_str())
    }
    fn is_gateway_cookie(name: &[u8]) -> bool {
        name.starts_with(b"oidcgate_session")
            || name.starts_with(b"__Host-oidcgate_session")
            || name.starts_with(b"oidcgate_login.")
    }
    fn trim(mut s: &[u8]) -> &[u8] {
        while let [first, rest @ ..] = s
            && WHITESPACE.contains(first)
        {
            s = rest;
        }
        while let [rest @ .., last] = s
            && WHITESPACE.contains(last)
        {
            s = rest;
        }
        s
    }
    /// The reference cookie splitter.
    fn pairs(value: &[u8]) -> Pairs<'_> {
        value
            .split(|&b| b == b';')
            .filter_map(|piece| {
                let piece = trim(piece);
                let eq = piece.iter().position(|&b| b == b'=')?;
                Some((&piece[..eq], &piece[eq + 1..]))
            })
            .collect()
    }
    /// `cookie_pairs` against the reference and its own promises.
    fn check_cookie_pairs(input: &[u8]) {
        let got: Pairs<'_> = cookie_pairs(input).collect();
        let range = input.as_ptr_range();
        let inside = |s: &[u8]| {
            let r = s.as_ptr_range();
            range.start <= r.start && r.end <= range.end
        };
        for &(name, value) in &got {
            let shown = (name.escape_ascii(), value.escape_ascii());
            assert!(
                inside(name) && inside(value),
                "cookie_pairs({:?}): {shown:?} is not a sub-slice of the input",
                input.escape_ascii().to_string()
            );
            assert!(
                !name.contains(&b';') && !name.contains(&b'=') && !value.contains(&b';'),
                "cookie_pairs({:?}): {shown:?} holds a separator",
                input.escape_ascii().to_string()
            );
            let eq = name.as_ptr() as usize - range.start as usize + name.len();
            assert!(
                value.as_ptr() as usize - range.start as usize == eq + 1 && input[eq] == b'=',
                "cookie_pairs({:?}): {shown:?} are not the two sides of one `=`",
                input.escape_ascii().to_string()
            );
        }
        let expected = pairs(input);
        assert!(
            got == expected,
            "cookie_pairs({:?}): got {:?}, expected {:?}",
            input.escape_ascii().to_string(),
            got.iter()
                .map(|(n, v)| (n.escape_ascii().to_string(), v.escape_ascii().to_string()))
                .collect::<Vec<_>>(),
            expected
                .iter()
                .map(|(n, v)| (n.escape_ascii().to_string(), v.escape_ascii().to_string()))
                .collect::<Vec<_>>()
        );
    }
    fn is_text(value: &HeaderValue) -> bool {
        value
            .as_bytes()
            .iter()
            .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
    }

    let mut input = HeaderMap::new();
    for line in data.split(|&b| b == b'\n').take(MAX_HEADERS) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let value = &line[colon + 1..];
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(value),
        ) {
            input.append(name, value);
        }
    }
    let before = snapshot(&input);
    let mut seen = Seen::default();

    // Identity headers, in every spelling.
    let mut headers = input.clone();
    strip_identity(&mut headers);
    let mut expected = before.clone();
    expected.retain(|name, _| !is_identity(name));
    seen.identity_removed = expected.len() < before.len();
    assert_eq!(
        snapshot(&headers),
        expected,
        "strip_identity: wrong headers left of {before:?}"
    );
    let underscore = input
        .keys()
        .any(|name| name.as_str().contains('_') && is_identity(name.as_str()));
    seen.underscore_identity = underscore;
    assert_eq!(
        has_underscore_identity(&input),
        underscore,
        "has_underscore_identity: wrong answer for {before:?}"
    );

    // Cookies.
    check_cookie_pairs(data);
    for value in input.get_all(COOKIE) {
        check_cookie_pairs(value.as_bytes());
    }
    let all: Pairs<'_> = input
        .get_all(COOKIE)
        .iter()
        .flat_map(|v| pairs(v.as_bytes()))
        .collect();
    let theirs: Vec<(Vec<u8>, Vec<u8>)> = all
        .iter()
        .filter(|(name, _)| !is_gateway_cookie(name))
        .map(|(name, value)| (name.to_vec(), value.to_vec()))
        .collect();
    let ours = theirs.len() < all.len();
    let mut headers = input.clone();
    strip_gateway_cookies(&mut headers);
    assert_eq!(
        without(snapshot(&headers), &["cookie"]),
        without(before.clone(), &["cookie"]),
        "strip_gateway_cookies: a header other than Cookie changed in {before:?}"
    );
    let kept: Vec<(Vec<u8>, Vec<u8>)> = headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|v| pairs(v.as_bytes()))
        .map(|(name, value)| (name.to_vec(), value.to_vec()))
        .collect();
    assert!(
        !kept.iter().any(|(name, _)| is_gateway_cookie(name)),
        "strip_gateway_cookies: a gateway cookie is left in {:?} (from {before:?})",
        snapshot(&headers).get("cookie")
    );
    assert!(
        kept == theirs,
        "strip_gateway_cookies: the application's cookies of {before:?} became {:?}",
        snapshot(&headers).get("cookie")
    );
    if !ours {
        assert_eq!(
            snapshot(&headers),
            before,
            "strip_gateway_cookies: changed a Cookie header without gateway cookies"
        );
    } else if theirs.is_empty() {
        assert!(
            !headers.contains_key(COOKIE),
            "strip_gateway_cookies: Cookie left with nothing in it, from {before:?}"
        );
    } else {
        assert_eq!(
            headers.get_all(COOKIE).iter().count(),
            1,
            "strip_gateway_cookies: the kept cookies of {before:?} are not one Cookie header"
        );
        seen.gateway_cookies_removed = true;
        seen.app_cookies_kept = true;
    }

    // Hop-by-hop headers and those `Connection` names.
    let mut dropped: BTreeSet<String> = HOP_BY_HOP.iter().map(|&n| n.to_owned()).collect();
    for value in input.get_all(CONNECTION) {
        for token in value.as_bytes().split(|&b| b == b',') {
            let token = trim(token);
            if token.eq_ignore_ascii_case(b"close") || token.eq_ignore_ascii_case(b"keep-alive") {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(token) {
                seen.connection_named_removed |=
                    input.contains_key(&name) && !HOP_BY_HOP.contains(&name.as_str());
                dropped.insert(name.as_str().to_owned());
            }
        }
    }
    let mut headers = input.clone();
    strip_hop_by_hop(&mut headers);
    let dropped: Vec<&str> = dropped.iter().map(String::as_str).collect();
    assert_eq!(
        snapshot(&headers),
        without(before.clone(), &dropped),
        "strip_hop_by_hop: wrong headers left of {before:?} (to drop: {dropped:?})"
    );

    // X-Forwarded-*.
    let forwarded = ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"];
    for (i, addr) in PEERS.iter().enumerate() {
        let peer = Peer::new(addr.parse().expect("fixed peer address"));
        let ip = peer.addr.ip().to_string();
        let proto = if (data.len() + i).is_multiple_of(2) {
            "https"
        } else {
            "http"
        };
        let mut headers = input.clone();
        set_forwarded(&mut headers, &peer, proto);
        let after = snapshot(&headers);
        let values = |name: &str| after.get(name).cloned().unwrap_or_default();
        let prev: Vec<&str> = input
            .get_all("x-forwarded-for")
            .iter()
            .filter(|v| is_text(v))
            .map(|v| v.to_str().expect("text").trim())
            .filter(|v| !v.is_empty())
            .collect();
        let chain = if prev.is_empty() {
            ip
        } else {
            seen.forwarded_for_appended = true;
            format!("{}, {ip}", prev.join(", "))
        };
        assert_eq!(
            values("x-forwarded-for"),
            [chain.as_bytes().escape_ascii().to_string()],
            "set_forwarded: X-Forwarded-For of {before:?}"
        );
        assert_eq!(
            values("x-forwarded-proto"),
            [proto],
            "set_forwarded: X-Forwarded-Proto of {before:?}"
        );
        let host = match input.get(HOST) {
            Some(host) => {
                seen.host_forwarded = true;
                vec![host.as_bytes().escape_ascii().to_string()]
            }
            // Never the client's own.
            None => Vec::new(),
        };
        assert_eq!(
            values("x-forwarded-host"),
            host,
            "set_forwarded: X-Forwarded-Host of {before:?}"
        );
        assert_eq!(
            without(after.clone(), &forwarded),
            without(before.clone(), &forwarded),
            "set_forwarded: changed other headers of {before:?}"
        );
    }
    seen
}

fuzz_target!(|data: &[u8]| {
    proxy_headers(data);
});
