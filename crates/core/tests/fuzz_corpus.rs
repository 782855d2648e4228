//! Replays the fuzz corpora (`fuzz/corpus/<target>/`, and `fuzz/artifacts/<target>/` when a
//! local fuzz run left crash inputs there) through the same calls as the cargo-fuzz targets in
//! `fuzz/fuzz_targets/`, so every seed and every fixed crash stays panic-free on the stable
//! toolchain, without cargo-fuzz. The few lines of each target are repeated here on purpose:
//! the fuzz crate is outside the workspace and shares nothing with the tests.
//!
//! Each replay also checks that its corpus is not empty and that some seeds get all the way
//! through (a token that verifies, a key set that loads, a document that parses, a callback
//! query that parses, a logout token that is accepted), so the test cannot pass vacuously.
//! The `return_path` and `gateway_config` targets are replayed by the `fuzz_corpus` tests of
//! oidcgate-axum and oidcgate-gateway.

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, UNIX_EPOCH};

use oidcgate_core::client::CallbackParams;
use oidcgate_core::clock::ManualClock;
use oidcgate_core::http::{BoxFuture, HttpClient, HttpError, HttpRequest, HttpResponse};
use oidcgate_core::jose::sign::SigningKey;
use oidcgate_core::jose::{Algorithm, AlgorithmSet, Header, JwkSet, UnverifiedJwt};
use oidcgate_core::provider::{
    KeyCache, KeyCacheConfig, KeySource, ProviderMetadata, discovery_url,
};
use oidcgate_core::session::{CookieChunks, Purpose, SessionKeys};
use oidcgate_core::validate::{LogoutTokenValidator, ValidationError};
use serde_json::{Value, json};

/// The same fixed set as `fuzz/fuzz_targets/jws_parse.rs`: the RFC 7515 A.3 P-256 key with and
/// without a `kid`, and the RFC 8037 A.2 Ed25519 key.
const FIXED_JWKS: &str = r#"{"keys":[
    {"kty":"EC","crv":"P-256","kid":"ec-1","use":"sig","alg":"ES256",
     "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
    {"kty":"EC","crv":"P-256",
     "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
    {"kty":"OKP","crv":"Ed25519","kid":"ed-1","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
]}"#;

static KEYS: LazyLock<JwkSet> =
    LazyLock::new(|| JwkSet::from_json(FIXED_JWKS.as_bytes()).expect("fixed JWK Set parses"));

/// `fuzz_targets/jws_parse.rs`; true when the token verified under some allow-list.
fn jws_parse(data: &[u8]) -> bool {
    let Ok(token) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(jwt) = UnverifiedJwt::parse(token) else {
        return false;
    };
    let header = jwt.header();
    let _ = (header.alg().name(), header.kid(), header.typ_is("at+jwt"));
    let _ = jwt.peek_string_claim("iss");
    let all: AlgorithmSet = Algorithm::ALL.into_iter().collect();
    let mut verified_any = false;
    for allowed in [AlgorithmSet::default(), all] {
        if let Ok(verified) = jwt.verify(&KEYS, allowed) {
            let _ = verified.claims();
            verified_any = true;
        }
    }
    verified_any
}

/// `fuzz_targets/jwks_parse.rs`; true when the set loaded.
fn jwks_parse(data: &[u8]) -> bool {
    let Ok(set) = JwkSet::from_json(data) else {
        return false;
    };
    let _ = set.skipped().len();
    let mut kids: Vec<String> = set.kids().map(str::to_owned).collect();
    kids.truncate(4);
    for key in set.keys() {
        let _ = (key.kid(), key.kind(), key.declared_alg());
    }
    for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
        let _ = set.select(&Header::new(alg, None, None));
        for kid in &kids {
            let _ = set.contains_kid(kid);
            let _ = set.select(&Header::new(alg, Some(kid.clone()), None));
        }
    }
    true
}

/// `fuzz_targets/discovery_parse.rs`; true when the document parsed.
fn discovery_parse(data: &[u8]) -> bool {
    let Ok(metadata) = ProviderMetadata::from_json(data) else {
        return false;
    };
    let _ = metadata.endpoints().count();
    let _ = discovery_url(&metadata.issuer);
    true
}

/// The fixed secrets of `fuzz_targets/session_cookie.rs`.
static SESSION_KEYS: LazyLock<SessionKeys> = LazyLock::new(|| {
    SessionKeys::new(
        b"fuzz-session-secret-of-32-bytes-or-more",
        &[b"fuzz-previous-secret-of-32-bytes-or-more"],
    )
    .expect("fixed secrets are long enough")
});

/// `fuzz_targets/session_cookie.rs`; true when some purpose opened the rejoined value.
fn session_cookie(data: &[u8]) -> bool {
    const NAME: &str = "oidcgate_session";
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let parts: Vec<&str> = text.split('\n').collect();
    let chunks = CookieChunks::default();
    let names = chunks.names(NAME);
    let Some(value) = chunks.join(NAME, |n| {
        let i = names.iter().position(|x| x == n)?;
        parts.get(i).copied().filter(|p| !p.is_empty())
    }) else {
        return false;
    };
    let mut opened = false;
    for purpose in [Purpose::Session, Purpose::Login, Purpose::Ticket] {
        if let Ok(plain) = SESSION_KEYS.open(purpose, NAME, &value) {
            let sealed = SESSION_KEYS.seal(purpose, NAME, &plain).expect("reseal");
            assert_eq!(
                SESSION_KEYS.open(purpose, NAME, &sealed).expect("reopen"),
                plain
            );
            opened = true;
        }
    }
    opened
}

/// The five fields of a callback, by name.
fn callback_fields(p: &CallbackParams) -> [(&'static str, Option<&str>); 5] {
    [
        ("code", p.code.as_deref()),
        ("state", p.state.as_deref()),
        ("iss", p.iss.as_deref()),
        ("error", p.error.as_deref()),
        ("error_description", p.error_description.as_deref()),
    ]
}

/// `fuzz_targets/callback_query.rs`; true when the query parsed (and survived the round trip).
fn callback_query(data: &[u8]) -> bool {
    let Ok(query) = std::str::from_utf8(data) else {
        return false;
    };
    let raw_pairs = query
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")));
    let _ = CallbackParams::from_pairs(raw_pairs);
    let Ok(params) = CallbackParams::from_query(query) else {
        return false;
    };
    let mut encoded = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in callback_fields(&params) {
        if let Some(value) = value {
            encoded.append_pair(name, value);
        }
    }
    let again = CallbackParams::from_query(&encoded.finish()).expect("re-encoded callback parses");
    assert_eq!(callback_fields(&again), callback_fields(&params));
    true
}

/// The fixed issuer, client and time of `fuzz_targets/logout_token.rs`.
const LOGOUT_ISSUER: &str = "https://op.example";
const LOGOUT_CLIENT_ID: &str = "fuzz-client";
const LOGOUT_NOW: u64 = 1_767_225_600;

/// Serves the fixed JWK Set for any request.
#[derive(Debug)]
struct StaticJwks(Vec<u8>);

impl HttpClient for StaticJwks {
    fn execute(&self, _request: HttpRequest) -> BoxFuture<'_, Result<HttpResponse, HttpError>> {
        let body = self.0.clone();
        Box::pin(async move {
            Ok(HttpResponse {
                status: 200,
                headers: vec![],
                body,
            })
        })
    }
}

/// The fixture of `fuzz_targets/logout_token.rs`: runtime, RFC 8037 A.1 Ed25519 key, header,
/// warmed-up key cache serving that key from memory, and a clock that never moves.
struct LogoutFixture {
    runtime: tokio::runtime::Runtime,
    key: SigningKey,
    header: Value,
    keys: KeyCache,
    clock: Arc<ManualClock>,
}

static LOGOUT: LazyLock<LogoutFixture> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("current-thread runtime");
    let key = SigningKey::from_private_jwk(
        &json!({"kty": "OKP", "crv": "Ed25519",
                "d": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
                "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}),
        Some("logout-1".into()),
    )
    .expect("RFC 8037 A.1 key loads");
    let jwks = json!({"keys": [key.public_jwk().expect("public JWK")]}).to_string();
    let clock = Arc::new(ManualClock::new(
        UNIX_EPOCH + Duration::from_secs(LOGOUT_NOW),
    ));
    let keys = KeyCache::new(
        LOGOUT_ISSUER,
        KeySource::JwksUri(url::Url::parse("https://op.example/jwks").expect("fixed URL")),
        Arc::new(StaticJwks(jwks.into_bytes())),
        clock.clone(),
        KeyCacheConfig::default(),
    );
    runtime
        .block_on(keys.warm_up())
        .expect("the in-memory JWK Set loads");
    let header = json!({"alg": "EdDSA", "kid": "logout-1", "typ": "logout+jwt"});
    LogoutFixture {
        runtime,
        key,
        header,
        keys,
        clock,
    }
});

/// `fuzz_targets/logout_token.rs`; true when the signed payload was accepted as a logout token.
fn logout_token(payload: &[u8]) -> bool {
    let f = &*LOGOUT;
    let token = f
        .key
        .sign_with_header(&f.header, payload)
        .expect("Ed25519 signing does not fail");
    let validator = LogoutTokenValidator::new(
        LOGOUT_ISSUER,
        LOGOUT_CLIENT_ID,
        f.keys.clone(),
        f.clock.clone(),
    );
    let Ok(request) = f.runtime.block_on(validator.validate(&token)) else {
        return false;
    };
    assert!(request.sub.is_some() || request.sid.is_some());
    let again = f.runtime.block_on(validator.validate(&token));
    assert!(
        matches!(again, Err(ValidationError::Replayed)),
        "an accepted logout token was not refused as a replay: {again:?}"
    );
    true
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

/// Feeds every seed of `corpus/<target>/` and every input in `artifacts/<target>/` (optional,
/// git-ignored) to `run`. Fails naming each input that panicked, if the seed corpus is empty,
/// or if no seed reached the end of the target (`run` returned true).
fn replay(target: &str, run: fn(&[u8]) -> bool) {
    let seeds = files_in(&fuzz_dir().join("corpus").join(target));
    assert!(
        !seeds.is_empty(),
        "fuzz/corpus/{target}/ has no seed files: the replay would pass vacuously"
    );
    let artifacts = files_in(&fuzz_dir().join("artifacts").join(target));
    let mut panicked = Vec::new();
    let mut succeeded = 0;
    for path in seeds.iter().chain(&artifacts) {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        match panic::catch_unwind(AssertUnwindSafe(|| run(&data))) {
            Ok(true) => succeeded += 1,
            Ok(false) => {}
            Err(_) => panicked.push(path.display().to_string()),
        }
    }
    assert!(
        panicked.is_empty(),
        "{target}: {} of {} inputs panicked:\n{}",
        panicked.len(),
        seeds.len() + artifacts.len(),
        panicked.join("\n")
    );
    assert!(
        succeeded > 0,
        "{target}: none of {} seeds got through the target",
        seeds.len()
    );
}

#[test]
fn jws_parse_corpus() {
    replay("jws_parse", jws_parse);
}

#[test]
fn jwks_parse_corpus() {
    replay("jwks_parse", jwks_parse);
}

#[test]
fn discovery_parse_corpus() {
    replay("discovery_parse", discovery_parse);
}

#[test]
fn session_cookie_corpus() {
    replay("session_cookie", session_cookie);
}

#[test]
fn callback_query_corpus() {
    replay("callback_query", callback_query);
}

#[test]
fn logout_token_corpus() {
    replay("logout_token", logout_token);
}

/// The logout-token seeds named `valid_*` are correct logout tokens for the fixed issuer,
/// client and time, and every other seed breaks one rule: exactly the former must pass.
#[test]
fn logout_token_valid_seeds_are_exactly_the_accepted_ones() {
    let seeds = files_in(&fuzz_dir().join("corpus").join("logout_token"));
    let mut valid = 0;
    for path in &seeds {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let expected = name.starts_with("valid");
        valid += usize::from(expected);
        assert_eq!(logout_token(&data), expected, "{name}");
    }
    assert!(valid >= 3, "only {valid} valid logout-token seeds");
}
