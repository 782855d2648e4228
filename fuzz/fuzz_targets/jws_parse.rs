//! Fuzzes compact JWS parsing: `UnverifiedJwt::parse` on any UTF-8 input and, when a token
//! parses, `verify` against a small fixed JWK Set (the RFC 7515 A.3 P-256 key with and without a
//! `kid`, and the RFC 8037 A.2 Ed25519 key), so key selection (one key, kid-less candidates,
//! unknown kid, key/algorithm mismatch), signature checks and the post-verification payload
//! parse are all reached. Nothing here may panic, whatever the input.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use oidcgate_core::jose::{Algorithm, AlgorithmSet, JwkSet, UnverifiedJwt};

/// The seeds in corpus/jws_parse/ that verify are signed with the private halves of these keys.
const FIXED_JWKS: &str = r#"{"keys":[
    {"kty":"EC","crv":"P-256","kid":"ec-1","use":"sig","alg":"ES256",
     "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
    {"kty":"EC","crv":"P-256",
     "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
    {"kty":"OKP","crv":"Ed25519","kid":"ed-1","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
]}"#;

static KEYS: LazyLock<JwkSet> =
    LazyLock::new(|| JwkSet::from_json(FIXED_JWKS.as_bytes()).expect("fixed JWK Set parses"));

/// Every algorithm, HMAC included, so the HMAC refusal path is reached too.
static ALL: LazyLock<AlgorithmSet> = LazyLock::new(|| Algorithm::ALL.into_iter().collect());

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(jwt) = UnverifiedJwt::parse(token) else {
        return;
    };
    let header = jwt.header();
    let _ = (header.alg().name(), header.kid(), header.typ_is("at+jwt"));
    let _ = jwt.peek_string_claim("iss");
    for allowed in [AlgorithmSet::default(), *ALL] {
        if let Ok(verified) = jwt.verify(&KEYS, allowed) {
            let _ = verified.claims();
        }
    }
});
