//! Setup shared by the benches: a Keycloak-shaped token, a validator whose keys come from an
//! in-memory IdP (pure logic: the benches measure validation, not sockets), and the same key
//! pre-parsed for a raw aws-lc-rs verify.

#![allow(dead_code)]

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::ParsedPublicKey;
use oidcgate_core::http::{BoxFuture, HttpClient, HttpError, HttpRequest, HttpResponse};
use oidcgate_core::jose::sign::SigningKey;
use oidcgate_core::jose::{Algorithm, b64};
use oidcgate_core::validate::{AccessTokenValidator, IssuerPolicy, TokenCacheConfig};
use serde_json::json;

pub const ISSUER: &str = "https://idp.example.com/realms/demo";

/// Serves discovery and one JWKS from memory (pure logic: the bench measures validation, not
/// sockets; the end-to-end numbers come from bench/load_resource_server.sh).
#[derive(Debug)]
struct StaticIdp {
    jwks: String,
}

impl HttpClient for StaticIdp {
    fn execute(&self, request: HttpRequest) -> BoxFuture<'_, Result<HttpResponse, HttpError>> {
        let body = if request.url.path().ends_with("openid-configuration") {
            json!({"issuer": ISSUER, "jwks_uri": format!("{ISSUER}/certs")}).to_string()
        } else {
            self.jwks.clone()
        };
        Box::pin(async move {
            Ok(HttpResponse {
                status: 200,
                headers: vec![],
                body: body.into_bytes(),
            })
        })
    }
}

/// Polls a future that completes without waiting (keys are loaded, so validation never does).
pub fn run_ready<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

/// Claims shaped like a Keycloak access token (~900 bytes once signed with RS256).
pub fn claims() -> serde_json::Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    json!({
        "exp": now + 3600, "iat": now, "auth_time": now, "jti": "4f2c1d0e-7a8b-4c3d-9e1f-0a1b2c3d4e5f",
        "iss": ISSUER, "aud": ["my-api", "account"], "sub": "f1e2d3c4-b5a6-4978-8695-a4b3c2d1e0f9",
        "typ": "Bearer", "azp": "web-app", "sid": "0a9b8c7d-6e5f-4a3b-2c1d-0e9f8a7b6c5d",
        "acr": "1", "allowed-origins": ["https://app.example.com"],
        "realm_access": {"roles": ["offline_access", "uma_authorization", "default-roles-demo"]},
        "scope": "openid email profile", "email_verified": true, "name": "Alice Liddell",
        "preferred_username": "alice", "given_name": "Alice", "family_name": "Liddell",
        "email": "alice@example.com", "groups": ["admins", "users"]
    })
}

pub fn validator(key: &SigningKey, cache: bool) -> AccessTokenValidator {
    let jwks = json!({"keys": [key.public_jwk().unwrap()]}).to_string();
    let mut builder = AccessTokenValidator::builder()
        .issuer(IssuerPolicy::new(ISSUER, "my-api").algorithms([key.alg()]))
        .http_client(Arc::new(StaticIdp { jwks }));
    if cache {
        builder = builder.token_cache(TokenCacheConfig::default());
    }
    let v = builder.build().unwrap();
    assert!(run_until_done(v.warm_up()).is_empty());
    v
}

/// The warm-up future completes immediately too (the static client never waits).
pub fn run_until_done<F: Future>(f: F) -> F::Output {
    run_ready(f)
}

pub fn raw_key(alg: Algorithm, jwk: &serde_json::Value) -> ParsedPublicKey {
    use aws_lc_rs::signature as s;
    let bytes = |name: &str| b64::decode(jwk[name].as_str().unwrap()).unwrap();
    match alg {
        Algorithm::RS256 | Algorithm::PS256 => {
            let params = if alg == Algorithm::RS256 {
                &s::RSA_PKCS1_2048_8192_SHA256
            } else {
                &s::RSA_PSS_2048_8192_SHA256
            };
            s::RsaPublicKeyComponents {
                n: bytes("n"),
                e: bytes("e"),
            }
            .to_parsed_public_key(params)
            .unwrap()
        }
        Algorithm::ES256 => {
            let mut point = vec![4u8];
            point.extend(bytes("x"));
            point.extend(bytes("y"));
            ParsedPublicKey::new(&s::ECDSA_P256_SHA256_FIXED, point).unwrap()
        }
        _ => ParsedPublicKey::new(&s::ED25519, bytes("x")).unwrap(),
    }
}

/// One algorithm's bench subjects.
pub struct Subject {
    pub token: String,
    pub validator: AccessTokenValidator,
    pub raw: ParsedPublicKey,
    pub signing_input: String,
    pub signature: Vec<u8>,
}

impl Subject {
    pub fn new(alg: Algorithm, cache: bool) -> Self {
        let key = SigningKey::generate(alg).unwrap();
        let token = key.sign_jwt(Some("at+jwt"), &claims()).unwrap();
        let validator = validator(&key, cache);
        assert!(run_ready(validator.validate(&token)).is_ok());
        let (signing_input, sig) = token.rsplit_once('.').unwrap();
        let signature = b64::decode(sig).unwrap();
        let raw = raw_key(alg, &key.public_jwk().unwrap());
        assert!(raw.verify_sig(signing_input.as_bytes(), &signature).is_ok());
        let signing_input = signing_input.to_owned();
        Self {
            token,
            validator,
            raw,
            signing_input,
            signature,
        }
    }

    #[inline(never)]
    pub fn raw_verify(&self) -> bool {
        self.raw
            .verify_sig(
                std::hint::black_box(self.signing_input.as_bytes()),
                &self.signature,
            )
            .is_ok()
    }

    #[inline(never)]
    pub fn validate(&self) -> bool {
        run_ready(self.validator.validate(std::hint::black_box(&self.token))).is_ok()
    }
}
