//! Fuzzes the claims of back-channel logout tokens: the input is used as-is as the JWT payload,
//! signed with a fixed Ed25519 key (RFC 8037 A.1) under a fixed `{"alg":"EdDSA","kid",
//! "typ":"logout+jwt"}` header, and checked by `LogoutTokenValidator` for a fixed issuer and
//! client. Its keys come from a `KeyCache` whose HTTP client serves the matching JWK Set from
//! memory; a manual clock that never moves keeps the keys fresh and the seeds' `iat`/`exp`
//! valid. Each input gets a new validator (so `jti`s do not leak between inputs); a token it
//! accepts must name `sub` or `sid` and must be refused as a replay the second time. Nothing may
//! panic, whatever the payload.
#![no_main]

use std::sync::{Arc, LazyLock};
use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use oidcgate_core::clock::ManualClock;
use oidcgate_core::http::{BoxFuture, HttpClient, HttpError, HttpRequest, HttpResponse};
use oidcgate_core::jose::sign::SigningKey;
use oidcgate_core::provider::{KeyCache, KeyCacheConfig, KeySource};
use oidcgate_core::validate::{LogoutTokenValidator, ValidationError};
use serde_json::{Value, json};

const ISSUER: &str = "https://op.example";
const CLIENT_ID: &str = "fuzz-client";
/// 2026-01-01T00:00:00Z; the valid seeds have `iat` and `exp` around it.
const NOW: u64 = 1_767_225_600;

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

struct Fixture {
    runtime: tokio::runtime::Runtime,
    key: SigningKey,
    header: Value,
    keys: KeyCache,
    clock: Arc<ManualClock>,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
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
    let clock = Arc::new(ManualClock::new(UNIX_EPOCH + Duration::from_secs(NOW)));
    let keys = KeyCache::new(
        ISSUER,
        KeySource::JwksUri(url::Url::parse("https://op.example/jwks").expect("fixed URL")),
        Arc::new(StaticJwks(jwks.into_bytes())),
        clock.clone(),
        KeyCacheConfig::default(),
    );
    runtime
        .block_on(keys.warm_up())
        .expect("the in-memory JWK Set loads");
    let header = json!({"alg": "EdDSA", "kid": "logout-1", "typ": "logout+jwt"});
    Fixture {
        runtime,
        key,
        header,
        keys,
        clock,
    }
});

fuzz_target!(|payload: &[u8]| {
    let f = &*FIXTURE;
    let token = f
        .key
        .sign_with_header(&f.header, payload)
        .expect("Ed25519 signing does not fail");
    let validator = LogoutTokenValidator::new(ISSUER, CLIENT_ID, f.keys.clone(), f.clock.clone());
    let Ok(request) = f.runtime.block_on(validator.validate(&token)) else {
        return;
    };
    assert!(request.sub.is_some() || request.sid.is_some());
    let again = f.runtime.block_on(validator.validate(&token));
    assert!(
        matches!(again, Err(ValidationError::Replayed)),
        "an accepted logout token was not refused as a replay: {again:?}"
    );
});
