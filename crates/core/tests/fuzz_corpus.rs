//! Replays the fuzz corpora (`fuzz/corpus/<target>/`, and `fuzz/artifacts/<target>/` when a
//! local fuzz run left crash inputs there) through the same calls as the cargo-fuzz targets in
//! `fuzz/fuzz_targets/`, so every seed and every fixed crash stays panic-free on the stable
//! toolchain, without cargo-fuzz. The few lines of each target are repeated here on purpose:
//! the fuzz crate is outside the workspace and shares nothing with the tests.
//!
//! Each replay also checks that its corpus is not empty and that some seeds get all the way
//! through (a token that verifies, a key set that loads, a document that parses), so the test
//! cannot pass vacuously.

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use oidcgate_core::jose::{Algorithm, AlgorithmSet, Header, JwkSet, UnverifiedJwt};
use oidcgate_core::provider::{ProviderMetadata, discovery_url};
use oidcgate_core::session::{CookieChunks, Purpose, SessionKeys};

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
