//! Replays the gateway's fuzz corpora (`fuzz/corpus/<target>/`, and `fuzz/artifacts/<target>/`
//! when a local fuzz run left crash inputs there) through the same calls and checks as the fuzz
//! targets, so every seed and every fixed crash keeps passing on the stable toolchain, without
//! cargo-fuzz. The targets' lines are repeated here on purpose: the fuzz crate is outside the
//! workspace.
//!
//! - `gateway_config` (`fuzz/fuzz_targets/gateway_config.rs`): `NAME=VALUE` lines become
//!   `serve` flags, clap parses them into `ServeArgs` (environment switched off) and
//!   `ServeArgs::check` must answer `Ok` or `Err` without panicking.
//!   `OIDC_CLIENT_PRIVATE_KEY_FILE` is replaced by fixed key files, as in the target.
//! - `proxy_headers` (`fuzz/fuzz_targets/proxy_headers.rs`): `name: value` lines become a
//!   `HeaderMap`, and `strip_identity`, `has_underscore_identity`, `cookie_pairs`,
//!   `strip_gateway_cookies`, `strip_hop_by_hop` and `set_forwarded` are checked against
//!   reference rules; [`proxy_headers`] is the target's function word for word.
//!
//! Each replay also checks that its corpus is not empty and that the seeds reach the outcomes
//! that matter (some configurations accepted and some refused; identity headers, gateway
//! cookies and `Connection`-named headers removed…), so it cannot pass vacuously.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use axum::http::header::{CONNECTION, COOKIE, HOST};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use clap::{Args, FromArgMatches};
use oidcgate_axum::login::session::cookie_pairs;
use oidcgate_gateway::ServeArgs;
use oidcgate_gateway::headers::{
    Peer, has_underscore_identity, set_forwarded, strip_gateway_cookies, strip_hop_by_hop,
    strip_identity,
};

/// The RFC 8037 A.1 Ed25519 key as a private JWK.
const KEY_JWK: &str = r#"{"kty":"OKP","crv":"Ed25519","kid":"fuzz-client-key",
  "d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;
/// The same key as PKCS#8 PEM.
const KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----\n\
MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n\
-----END PRIVATE KEY-----\n";

/// The two key files, written once: (JWK, PEM).
static KEY_FILES: LazyLock<(String, String)> = LazyLock::new(|| {
    let write = |ext: &str, text: &str| {
        let path: PathBuf = std::env::temp_dir().join(format!(
            "oidcgate-fuzz-gateway-config-{}.{ext}",
            std::process::id()
        ));
        std::fs::write(&path, text).expect("write the fixed key file");
        path.to_str().expect("UTF-8 temp path").to_owned()
    };
    (write("jwk", KEY_JWK), write("pem", KEY_PEM))
});

/// The `serve` command with every environment fallback removed, built once.
static COMMAND: LazyLock<clap::Command> = LazyLock::new(|| {
    let mut command = ServeArgs::augment_args(clap::Command::new("serve").no_binary_name(true))
        .mut_args(|arg| arg.env(Option::<&'static str>::None));
    command.build();
    command
});

/// What happened to one input.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    NotParsed,
    Refused,
    Accepted,
}

/// `fuzz_targets/gateway_config.rs`.
fn gateway_config(data: &[u8]) -> Outcome {
    let Ok(text) = std::str::from_utf8(data) else {
        return Outcome::NotParsed;
    };
    let mut argv = Vec::new();
    for line in text.split('\n').filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once('=').unwrap_or((line, ""));
        let flag = name.to_ascii_lowercase().replace('_', "-");
        let value = if flag == "oidc-client-private-key-file" && !value.is_empty() {
            let (jwk, pem) = &*KEY_FILES;
            if value.ends_with(".pem") { pem } else { jwk }
        } else {
            value
        };
        argv.push(format!("--{flag}={value}"));
    }
    let Ok(matches) = COMMAND.clone().try_get_matches_from(argv) else {
        return Outcome::NotParsed;
    };
    let Ok(args) = ServeArgs::from_arg_matches(&matches) else {
        return Outcome::NotParsed;
    };
    let Ok(config) = args.check() else {
        return Outcome::Refused;
    };
    assert_eq!(config.upstream.scheme(), "http");
    assert!((1..=20).contains(&config.max_pending_logins));
    assert!(config.max_header_bytes >= 8192);
    assert!(config.upstream_max_connections > 0);
    assert!(!config.session_max_age.is_zero());
    if config.client_id.is_some() {
        let secret = config.session_secret.as_deref().unwrap_or_default();
        assert!(
            secret.len() >= 32,
            "login accepted with a short session secret"
        );
        assert!(config.redirect_uri.is_some());
    } else {
        assert!(
            args.oidc_audience.is_some(),
            "neither login nor bearer tokens configured"
        );
    }
    Outcome::Accepted
}

/// What one input exercised; the replay asserts that the seeds, together, exercise each.
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

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The regular files directly in `dir`, sorted; none when `dir` does not exist.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("read corpus directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `check` on every seed in `fuzz/corpus/<target>/` and every crash input in
/// `fuzz/artifacts/<target>/`, and returns its answers; `Err` names the inputs that panicked.
/// Panics when there is no seed (the replay would pass vacuously).
fn replay<T>(target: &str, check: impl Fn(&[u8]) -> T) -> Result<Vec<T>, String> {
    let seeds = files_in(&fuzz_dir().join("corpus").join(target));
    assert!(
        !seeds.is_empty(),
        "fuzz/corpus/{target}/ has no seed files: the replay would pass vacuously"
    );
    let artifacts = files_in(&fuzz_dir().join("artifacts").join(target));
    let (mut answers, mut panicked) = (Vec::new(), Vec::new());
    for path in seeds.iter().chain(&artifacts) {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        match panic::catch_unwind(AssertUnwindSafe(|| check(&data))) {
            Ok(answer) => answers.push(answer),
            Err(_) => panicked.push(path.display().to_string()),
        }
    }
    if panicked.is_empty() {
        Ok(answers)
    } else {
        Err(format!(
            "{target}: {} of {} inputs panicked:\n{}",
            panicked.len(),
            seeds.len() + artifacts.len(),
            panicked.join("\n")
        ))
    }
}

#[test]
fn gateway_config_corpus() {
    let outcomes = replay("gateway_config", gateway_config);
    let (jwk, pem) = &*KEY_FILES;
    let _ = (std::fs::remove_file(jwk), std::fs::remove_file(pem));
    let outcomes = outcomes.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        outcomes.contains(&Outcome::Accepted),
        "gateway_config: no seed was accepted by check()"
    );
    assert!(
        outcomes.contains(&Outcome::Refused),
        "gateway_config: no seed was refused by check()"
    );
}

#[test]
fn proxy_headers_corpus() {
    let seen = replay("proxy_headers", proxy_headers).unwrap_or_else(|e| panic!("{e}"));
    let missing: Vec<&str> = [
        (
            "identity headers removed",
            seen.iter().any(|s| s.identity_removed),
        ),
        (
            "underscore identity",
            seen.iter().any(|s| s.underscore_identity),
        ),
        (
            "gateway cookies removed",
            seen.iter().any(|s| s.gateway_cookies_removed),
        ),
        ("app cookies kept", seen.iter().any(|s| s.app_cookies_kept)),
        (
            "Connection-named header removed",
            seen.iter().any(|s| s.connection_named_removed),
        ),
        (
            "X-Forwarded-For appended",
            seen.iter().any(|s| s.forwarded_for_appended),
        ),
        ("Host forwarded", seen.iter().any(|s| s.host_forwarded)),
    ]
    .into_iter()
    .filter(|(_, reached)| !reached)
    .map(|(what, _)| what)
    .collect();
    assert!(
        missing.is_empty(),
        "proxy_headers: no seed reaches {missing:?}"
    );
}
