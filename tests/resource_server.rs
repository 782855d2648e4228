//! End-to-end tests of bearer access-token validation over real sockets: a discovery + JWKS
//! server started by each test, tokens minted with freshly generated keys, the core validator,
//! the axum layer, and the `resource_server` example as a separate process.

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use oidcgate_axum::bearer::{BearerAuthLayer, Principal};
use oidcgate_core::clock::ManualClock;
use oidcgate_core::jose::sign::SigningKey;
use oidcgate_core::jose::{Algorithm, JoseError, b64};
use oidcgate_core::provider::KeyCacheConfig;
use oidcgate_core::validate::{
    AccessTokenValidator, IssuerPolicy, TokenCacheConfig, ValidationError,
};
use serde_json::{Value, json};
use support::{TestIssuer, claims, mint, unix};

const AUD: &str = "my-api";

fn build(
    issuer: &TestIssuer,
    clock: &Arc<ManualClock>,
    policy: impl FnOnce(IssuerPolicy) -> IssuerPolicy,
    cache: bool,
) -> AccessTokenValidator {
    let mut b = AccessTokenValidator::builder()
        .issuer(policy(IssuerPolicy::new(&issuer.issuer, AUD)))
        .clock(clock.clone());
    if cache {
        b = b.token_cache(TokenCacheConfig::default());
    }
    b.build().unwrap()
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::starting_now())
}

#[tokio::test]
async fn every_algorithm_verifies() {
    for alg in [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::ES512,
        Algorithm::EdDSA,
    ] {
        let key = SigningKey::generate(alg).unwrap();
        let idp = TestIssuer::start(&[&key]).await;
        let clock = clock();
        let v = build(&idp, &clock, |p| p, false);
        let token = mint(&key, &claims(&idp.issuer, AUD, clock.now_time()));
        let verified = v
            .validate(&token)
            .await
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(verified.subject(), Some("user-123"));
        assert_eq!(verified.alg(), alg);
        assert!(verified.has_scope("profile"));
        assert_eq!(idp.discovery_hits(), 1);
        assert_eq!(idp.jwks_hits(), 1);
    }
}

trait NowTime {
    fn now_time(&self) -> SystemTime;
}
impl NowTime for ManualClock {
    fn now_time(&self) -> SystemTime {
        oidcgate_core::clock::Clock::now(self)
    }
}

/// Builds a token from arbitrary header and claims, signed by `key`.
fn forge(key: &SigningKey, header: Value, claims: &Value) -> String {
    key.sign_with_header(&header, claims.to_string().as_bytes())
        .unwrap()
}

#[tokio::test]
async fn rejections() {
    let key = SigningKey::generate(Algorithm::RS256).unwrap();
    let other = SigningKey::generate(Algorithm::RS256).unwrap();
    let idp = TestIssuer::start(&[&key]).await;
    let clock = clock();
    let now = clock.now_time();
    let t = unix(now);
    let v = build(&idp, &clock, |p| p, false);
    let good = claims(&idp.issuer, AUD, now);
    let with = |k: &str, val: Value| {
        let mut c = good.clone();
        c[k] = val;
        c
    };
    let without = |k: &str| {
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove(k);
        c
    };
    let kid = key.kid().to_owned();
    let rs256 = json!({"alg": "RS256", "kid": kid});

    type Expect = fn(&ValidationError) -> bool;
    let cases: Vec<(&str, String, Expect)> = vec![
        ("expired", mint(&key, &with("exp", json!(t - 61))), |e| {
            *e == ValidationError::Expired
        }),
        (
            "not yet valid",
            mint(&key, &with("nbf", json!(t + 120))),
            |e| *e == ValidationError::NotYetValid,
        ),
        (
            "issued in future",
            mint(&key, &with("iat", json!(t + 120))),
            |e| *e == ValidationError::IssuedInFuture,
        ),
        (
            "wrong issuer",
            mint(&key, &with("iss", json!("https://evil.example"))),
            |e| *e == ValidationError::IssuerMismatch,
        ),
        (
            "issuer with trailing slash",
            mint(&key, &with("iss", json!(format!("{}/", idp.issuer)))),
            |e| *e == ValidationError::IssuerMismatch,
        ),
        (
            "wrong audience",
            mint(&key, &with("aud", json!(["other-api", "x"]))),
            |e| *e == ValidationError::AudienceMismatch,
        ),
        (
            "no audience",
            mint(&key, &without("aud")),
            |e| matches!(e, ValidationError::MissingClaim(c) if c == "aud"),
        ),
        (
            "no exp",
            mint(&key, &without("exp")),
            |e| matches!(e, ValidationError::MissingClaim(c) if c == "exp"),
        ),
        (
            "no sub",
            mint(&key, &without("sub")),
            |e| matches!(e, ValidationError::MissingClaim(c) if c == "sub"),
        ),
        (
            "exp is a string",
            mint(&key, &with("exp", json!("99999999999"))),
            |e| matches!(e, ValidationError::InvalidClaim(c) if c == "exp"),
        ),
        (
            "signed by another key with our kid",
            forge(&other, rs256.clone(), &good),
            |e| *e == ValidationError::Jose(JoseError::BadSignature),
        ),
        ("unknown kid", mint(&other, &good), |e| {
            matches!(e, ValidationError::Jose(JoseError::UnknownKid(_)))
        }),
        (
            "crit header",
            forge(
                &key,
                json!({"alg":"RS256","kid":kid,"crit":["exp"],"exp":1}),
                &good,
            ),
            |e| matches!(e, ValidationError::Jose(JoseError::UnsupportedCritical(_))),
        ),
        (
            "duplicate claim",
            {
                let payload = format!(
                    r#"{{"iss":"{}","iss":"x","aud":"{AUD}","sub":"a","iat":{t},"exp":{}}}"#,
                    idp.issuer,
                    t + 60
                );
                key.sign_with_header(&rs256, payload.as_bytes()).unwrap()
            },
            |e| {
                matches!(
                    e,
                    ValidationError::Jose(JoseError::DuplicateMember("payload", _))
                )
            },
        ),
    ];
    for (name, token, expected) in cases {
        let err = v.validate(&token).await.expect_err(name);
        assert!(expected(&err), "{name}: got {err:?}");
    }

    // Tampering with any part breaks the signature.
    let token = mint(&key, &good);
    let (head, rest) = token.split_once('.').unwrap();
    let (payload, sig) = rest.split_once('.').unwrap();
    let mut evil = good.clone();
    evil["sub"] = json!("admin");
    let swapped = format!("{head}.{}.{sig}", b64::encode(evil.to_string()));
    assert_eq!(
        v.validate(&swapped).await.unwrap_err(),
        ValidationError::Jose(JoseError::BadSignature)
    );
    let mut sig_bytes = b64::decode(sig).unwrap();
    sig_bytes[10] ^= 1;
    let flipped = format!("{head}.{payload}.{}", b64::encode(&sig_bytes));
    assert_eq!(
        v.validate(&flipped).await.unwrap_err(),
        ValidationError::Jose(JoseError::BadSignature)
    );
    assert!(
        v.validate(&token).await.is_ok(),
        "the untampered token is fine"
    );
}

#[tokio::test]
async fn algorithm_attacks_are_refused() {
    let key = SigningKey::generate(Algorithm::RS256).unwrap();
    let idp = TestIssuer::start(&[&key]).await;
    let clock = clock();
    let good = claims(&idp.issuer, AUD, clock.now_time());
    let v = build(&idp, &clock, |p| p, false);
    let enc = |v: &Value| b64::encode(v.to_string());

    // alg none, in several spellings, with and without a signature.
    for alg in ["none", "None", "NONE"] {
        let unsigned = format!("{}.{}.", enc(&json!({"alg": alg})), enc(&good));
        assert!(
            v.validate(&unsigned).await.is_err(),
            "{alg} without signature"
        );
        let with_sig = format!("{}.{}.AAAA", enc(&json!({"alg": alg})), enc(&good));
        assert_eq!(
            v.validate(&with_sig).await.unwrap_err(),
            ValidationError::Jose(JoseError::AlgNone)
        );
    }

    // HS256 "signed" with the RSA public key as the secret (key confusion): no secret is
    // configured, so HMAC is refused before any key is considered.
    let jwk = key.public_jwk().unwrap();
    let n = b64::decode(jwk["n"].as_str().unwrap()).unwrap();
    for secret in [jwk.to_string().into_bytes(), n] {
        let hs = SigningKey::hmac(Algorithm::HS256, &secret, key.kid()).unwrap();
        let err = v
            .validate(&hs.sign_jwt(None, &good).unwrap())
            .await
            .unwrap_err();
        assert_eq!(
            err,
            ValidationError::Jose(JoseError::AlgorithmNotAllowed("HS256"))
        );
    }

    // An embedded `jwk` (and `jku`/`x5u`) naming the attacker's own key is never used.
    let attacker = SigningKey::generate(Algorithm::RS256).unwrap();
    let header = json!({
        "alg": "RS256",
        "kid": key.kid(),
        "jwk": attacker.public_jwk(),
        "jku": format!("{}/jwks", idp.issuer),
        "x5u": "https://evil.example/cert.pem",
    });
    let err = v
        .validate(&forge(&attacker, header, &good))
        .await
        .unwrap_err();
    assert_eq!(err, ValidationError::Jose(JoseError::BadSignature));

    // An allow-list without RS256 refuses RS256 tokens even with the right key.
    let es_only = build(&idp, &clock, |p| p.algorithms([Algorithm::ES256]), false);
    let err = es_only.validate(&mint(&key, &good)).await.unwrap_err();
    assert_eq!(
        err,
        ValidationError::Jose(JoseError::AlgorithmNotAllowed("RS256"))
    );

    // A JWK that declares another alg cannot verify: PS256 with a key published as RS256.
    let ps = SigningKey::from_pkcs8(
        Algorithm::PS256,
        &key.to_pkcs8().unwrap(),
        Some(key.kid().into()),
    )
    .unwrap();
    let err = v.validate(&mint(&ps, &good)).await.unwrap_err();
    assert!(
        matches!(
            err,
            ValidationError::Jose(JoseError::KeyAlgorithmMismatch { .. })
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn hmac_only_with_a_configured_secret() {
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let idp = TestIssuer::start(&[&key]).await;
    let clock = clock();
    let secret = b"a-shared-secret-of-at-least-32-bytes!!";
    let v = build(&idp, &clock, |p| p.hmac_secret(secret).unwrap(), false);
    let good = claims(&idp.issuer, AUD, clock.now_time());
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let hs = SigningKey::hmac(alg, secret, "shared").unwrap();
        assert!(
            v.validate(&hs.sign_jwt(None, &good).unwrap()).await.is_ok(),
            "{alg}"
        );
    }
    let wrong = SigningKey::hmac(
        Algorithm::HS256,
        b"another-shared-secret-of-32-bytes!!!",
        "shared",
    )
    .unwrap();
    assert_eq!(
        v.validate(&wrong.sign_jwt(None, &good).unwrap())
            .await
            .unwrap_err(),
        ValidationError::Jose(JoseError::BadSignature)
    );
    assert!(
        v.validate(&mint(&key, &good)).await.is_ok(),
        "asymmetric still works"
    );
    assert!(
        IssuerPolicy::new("https://i", "a")
            .hmac_secret(b"short")
            .is_err()
    );
}

#[tokio::test]
async fn at_jwt_profile_and_scopes() {
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let idp = TestIssuer::start(&[&key]).await;
    let clock = clock();
    let v = build(&idp, &clock, |p| p.require_at_jwt(true), false);
    let mut c = claims(&idp.issuer, AUD, clock.now_time());
    c.as_object_mut().unwrap().remove("scope");
    c["scp"] = json!(["read", "write"]);
    let ok = v
        .validate(&key.sign_jwt(Some("application/at+JWT"), &c).unwrap())
        .await
        .unwrap();
    assert_eq!(ok.scopes(), ["read", "write"]);
    for typ in [None, Some("JWT"), Some("id_token+jwt")] {
        let token = key.sign_jwt(typ, &c).unwrap();
        assert_eq!(
            v.validate(&token).await.unwrap_err(),
            ValidationError::WrongType,
            "{typ:?}"
        );
    }
    // Entra ID sends `scp` as a space-separated string.
    c["scp"] = json!("a b");
    assert_eq!(
        v.validate(&mint(&key, &c)).await.unwrap().scopes(),
        ["a", "b"]
    );
    c["scp"] = json!(7);
    assert_eq!(
        v.validate(&mint(&key, &c)).await.unwrap_err(),
        ValidationError::InvalidClaim("scp".into())
    );
    // Without the profile required, a typ that names another kind of token is still refused.
    let lax = build(&idp, &clock, |p| p, false);
    let c = claims(&idp.issuer, AUD, clock.now_time());
    for typ in ["logout+jwt", "id_token+jwt", "secevent+jwt"] {
        assert_eq!(
            lax.validate(&key.sign_jwt(Some(typ), &c).unwrap())
                .await
                .unwrap_err(),
            ValidationError::WrongType,
            "{typ}"
        );
    }
    assert!(
        lax.validate(&key.sign_jwt(Some("JWT"), &c).unwrap())
            .await
            .is_ok()
    );
    assert!(lax.validate(&key.sign_jwt(None, &c).unwrap()).await.is_ok());
    // Required claims are configurable.
    let strict = build(
        &idp,
        &clock,
        |p| p.required_claims(["exp", "sub", "email_verified"]),
        false,
    );
    let err = strict
        .validate(&mint(&key, &claims(&idp.issuer, AUD, clock.now_time())))
        .await
        .unwrap_err();
    assert_eq!(err, ValidationError::MissingClaim("email_verified".into()));
}

#[tokio::test]
async fn leeway_is_configurable() {
    let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let idp = TestIssuer::start(&[&key]).await;
    let clock = clock();
    let t = unix(clock.now_time());
    let mut c = claims(&idp.issuer, AUD, clock.now_time());
    c["exp"] = json!(t - 30);
    let default = build(&idp, &clock, |p| p, false);
    assert!(
        default.validate(&mint(&key, &c)).await.is_ok(),
        "within the 60 s default leeway"
    );
    let tight = build(&idp, &clock, |p| p.leeway(Duration::from_secs(10)), false);
    assert_eq!(
        tight.validate(&mint(&key, &c)).await.unwrap_err(),
        ValidationError::Expired
    );
    c["exp"] = json!(t as f64 + 100.5);
    assert!(
        tight.validate(&mint(&key, &c)).await.is_ok(),
        "fractional NumericDate"
    );
}

#[tokio::test]
async fn key_rotation_refetches_once() {
    let old = SigningKey::generate(Algorithm::RS256).unwrap();
    let new = SigningKey::generate(Algorithm::ES256).unwrap();
    let idp = TestIssuer::start(&[&old]).await;
    let clock = clock();
    let v = build(&idp, &clock, |p| p, false);
    assert!(
        v.validate(&mint(&old, &claims(&idp.issuer, AUD, clock.now_time())))
            .await
            .is_ok()
    );
    assert_eq!(idp.jwks_hits(), 1);
    idp.set_keys(&[&old, &new]);
    let token = mint(&new, &claims(&idp.issuer, AUD, clock.now_time()));
    // Within the 5 s cooldown of the start-up fetch the new kid is not looked up yet...
    assert!(matches!(
        v.validate(&token).await,
        Err(ValidationError::Jose(JoseError::UnknownKid(_)))
    ));
    assert_eq!(idp.jwks_hits(), 1);
    // ...after it, one refetch finds it.
    clock.advance(Duration::from_secs(6));
    assert!(
        v.validate(&token).await.is_ok(),
        "new kid accepted after one refetch"
    );
    assert_eq!(idp.jwks_hits(), 2);
    assert_eq!(idp.discovery_hits(), 1, "discovery is not repeated");
    assert!(v.validate(&token).await.is_ok());
    assert_eq!(idp.jwks_hits(), 2, "known kid: no fetch");

    // Unknown kids within the cooldown do not fetch again; after it, one more fetch.
    let stranger = SigningKey::generate(Algorithm::ES256).unwrap();
    let unknown = mint(&stranger, &claims(&idp.issuer, AUD, clock.now_time()));
    assert!(matches!(
        v.validate(&unknown).await,
        Err(ValidationError::Jose(JoseError::UnknownKid(_)))
    ));
    assert_eq!(
        idp.jwks_hits(),
        2,
        "within the 5 s cooldown of the last fetch"
    );
    clock.advance(Duration::from_secs(6));
    assert!(v.validate(&unknown).await.is_err());
    assert_eq!(idp.jwks_hits(), 3);
    assert!(v.validate(&unknown).await.is_err());
    assert_eq!(idp.jwks_hits(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kid_storm_in_process_fetches_at_most_once() {
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let idp = TestIssuer::start(&[&key]).await;
    idp.set_slow(true); // the fetch is in flight while every task arrives
    let clock = clock();
    let v = Arc::new(build(&idp, &clock, |p| p, false));
    v.warm_up().await;
    assert_eq!(idp.jwks_hits(), 1);
    clock.advance(Duration::from_secs(6)); // past the cooldown of the warm-up fetch
    let stranger = SigningKey::generate(Algorithm::ES256).unwrap();
    let token = Arc::new(mint(&stranger, &claims(&idp.issuer, AUD, clock.now_time())));
    let tasks: Vec<_> = (0..10_000)
        .map(|_| {
            let (v, token) = (v.clone(), token.clone());
            tokio::spawn(async move { v.validate(&token).await })
        })
        .collect();
    for t in tasks {
        assert!(matches!(
            t.await.unwrap(),
            Err(ValidationError::Jose(JoseError::UnknownKid(_)))
        ));
    }
    assert_eq!(
        idp.jwks_hits(),
        2,
        "10,000 concurrent unknown-kid lookups: one fetch"
    );
}

/// An axum app with the bearer layer on a free port.
async fn serve_layer(v: Arc<AccessTokenValidator>) -> (String, tokio::task::JoinHandle<()>) {
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/",
            get(|p: Principal| async move { p.subject().unwrap_or_default().to_owned() }),
        )
        .layer(BearerAuthLayer::required(v));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kid_storm_over_sockets_fetches_at_most_once() {
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let idp = TestIssuer::start(&[&key]).await;
    idp.set_slow(true);
    let clock = clock();
    let v = Arc::new(build(&idp, &clock, |p| p, false));
    v.warm_up().await;
    clock.advance(Duration::from_secs(6));
    let (url, _server) = serve_layer(v).await;
    let stranger = SigningKey::generate(Algorithm::ES256).unwrap();
    let token = mint(&stranger, &claims(&idp.issuer, AUD, clock.now_time()));
    let client = reqwest::Client::new();
    let requests: Vec<_> = (0..1_000)
        .map(|_| {
            let req = client.get(&url).bearer_auth(&token);
            tokio::spawn(async move { req.send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    for r in requests {
        assert_eq!(r.await.unwrap().unwrap(), 401);
    }
    assert_eq!(idp.jwks_hits(), 2, "1,000 concurrent requests: one fetch");
}

#[tokio::test]
async fn idp_down_after_start_keeps_cached_keys() {
    let key = SigningKey::generate(Algorithm::RS256).unwrap();
    let idp = TestIssuer::start(&[&key]).await;
    let clock = clock();
    let v = build(&idp, &clock, |p| p, false);
    assert!(v.warm_up().await.is_empty());
    idp.set_down(Some(503));
    // Past the 1 h default refresh: the refresh fails in the background, old keys still serve.
    clock.advance(Duration::from_secs(2 * 3600));
    for _ in 0..3 {
        let token = mint(&key, &claims(&idp.issuer, AUD, clock.now_time()));
        assert!(v.validate(&token).await.is_ok());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let fetches = idp.jwks_hits();
    assert!(
        (2..=3).contains(&fetches),
        "background refresh attempted, bounded: {fetches}"
    );
    assert!(
        v.key_caches()
            .next()
            .unwrap()
            .last_error()
            .await
            .unwrap()
            .contains("HTTP 503")
    );
    // Beyond 24 h of staleness, the keys are no longer trusted: 503, not 401.
    clock.advance(Duration::from_secs(23 * 3600));
    let token = mint(&key, &claims(&idp.issuer, AUD, clock.now_time()));
    let err = v.validate(&token).await.unwrap_err();
    assert!(
        matches!(err, ValidationError::KeysUnavailable(_)),
        "{err:?}"
    );
    // The IdP comes back: keys load again.
    idp.set_down(None);
    clock.advance(Duration::from_secs(6));
    assert!(v.validate(&token).await.is_ok());
}

#[tokio::test]
async fn keys_never_loaded_means_503_with_retry_after() {
    let key = SigningKey::generate(Algorithm::RS256).unwrap();
    let idp = TestIssuer::start(&[&key]).await;
    idp.set_down(Some(500));
    let clock = clock();
    let v = Arc::new(build(&idp, &clock, |p| p, false));
    let token = mint(&key, &claims(&idp.issuer, AUD, clock.now_time()));
    let err = v.validate(&token).await.unwrap_err();
    assert!(err.retry_after().is_some());
    let hits = idp.discovery_hits();
    // Within the cooldown no new attempt is made: an outage is not a request storm.
    assert!(v.validate(&token).await.is_err());
    assert_eq!(idp.discovery_hits(), hits);

    let (url, _server) = serve_layer(v.clone()).await;
    let response = reqwest::Client::new()
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");

    idp.set_down(None);
    clock.advance(Duration::from_secs(6));
    assert!(
        v.validate(&token).await.is_ok(),
        "recovers once the IdP is back"
    );
}

#[tokio::test]
async fn oversized_or_broken_jwks_is_a_clear_error() {
    let key = SigningKey::generate(Algorithm::RS256).unwrap();
    let idp = TestIssuer::start(&[&key]).await;
    let mut big = key.public_jwk().unwrap();
    big["padding"] = json!("x".repeat(300 * 1024));
    idp.set_jwks(json!({"keys": [big]}));
    let clock = clock();
    let v = build(&idp, &clock, |p| p, false);
    let errors = v.warm_up().await;
    assert!(
        errors[0].to_string().contains("larger than 262144 bytes"),
        "{}",
        errors[0]
    );

    idp.set_raw_jwks(b"<html>oops</html>".to_vec());
    clock.advance(Duration::from_secs(6));
    let errors = v.warm_up().await;
    assert!(
        errors[0].to_string().contains("not a JSON object"),
        "{}",
        errors[0]
    );

    idp.set_jwks(json!({"keys": [{"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"}]}));
    clock.advance(Duration::from_secs(6));
    let errors = v.warm_up().await;
    assert!(
        errors[0].to_string().contains("no usable signing key"),
        "{}",
        errors[0]
    );
}

#[tokio::test]
async fn discovery_issuer_must_match_exactly() {
    let key = SigningKey::generate(Algorithm::RS256).unwrap();
    let idp = TestIssuer::start(&[&key]).await;
    idp.set_discovery_issuer(&format!("{}/", idp.issuer));
    let clock = clock();
    let v = build(&idp, &clock, |p| p, false);
    let errors = v.warm_up().await;
    assert!(
        errors[0].to_string().contains("expected exactly"),
        "{}",
        errors[0]
    );
    assert_eq!(idp.jwks_hits(), 0, "no keys from a mismatched document");
}

#[tokio::test]
async fn explicit_jwks_uri_skips_discovery() {
    let key = SigningKey::generate(Algorithm::ES384).unwrap();
    let idp = TestIssuer::start(&[&key]).await;
    let clock = clock();
    let uri = url::Url::parse(&format!("{}/jwks", idp.issuer)).unwrap();
    let v = build(&idp, &clock, |p| p.jwks_uri(uri), false);
    assert!(
        v.validate(&mint(&key, &claims(&idp.issuer, AUD, clock.now_time())))
            .await
            .is_ok()
    );
    assert_eq!(idp.discovery_hits(), 0);
}

#[tokio::test]
async fn plain_http_needs_loopback_or_opt_in() {
    let policy = IssuerPolicy::new("http://idp.example.com", AUD);
    let err = AccessTokenValidator::builder()
        .issuer(policy)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("loopback"), "{err}");
    let policy = IssuerPolicy::new("http://idp.example.com", AUD);
    let lax = KeyCacheConfig {
        url_policy: oidcgate_core::http::UrlPolicy { allow_http: true },
        ..Default::default()
    };
    assert!(
        AccessTokenValidator::builder()
            .issuer(policy)
            .key_cache(lax)
            .build()
            .is_ok()
    );
}

#[tokio::test]
async fn kidless_tokens() {
    let a = SigningKey::generate(Algorithm::ES256).unwrap();
    let b = SigningKey::generate(Algorithm::ES256).unwrap();
    let strip_kid = |k: &SigningKey| {
        let mut jwk = k.public_jwk().unwrap();
        jwk.as_object_mut().unwrap().remove("kid");
        jwk
    };
    let idp = TestIssuer::start(&[]).await;
    idp.set_jwks(json!({"keys": [strip_kid(&a)]}));
    let clock = clock();
    let v = build(&idp, &clock, |p| p, false);
    let c = claims(&idp.issuer, AUD, clock.now_time());
    let kidless = |k: &SigningKey| forge(k, json!({"alg": "ES256"}), &c);
    assert!(v.validate(&kidless(&a)).await.is_ok(), "one key fits");

    // Two keys fit (rotation without kids): each is tried.
    idp.set_jwks(json!({"keys": [strip_kid(&a), strip_kid(&b)]}));
    let v = build(&idp, &clock, |p| p, false);
    assert!(v.validate(&kidless(&a)).await.is_ok());
    assert!(v.validate(&kidless(&b)).await.is_ok());
    let stranger = SigningKey::generate(Algorithm::ES256).unwrap();
    assert_eq!(
        v.validate(&kidless(&stranger)).await.unwrap_err(),
        ValidationError::Jose(JoseError::BadSignature)
    );

    // More than three fit: refused as ambiguous instead of trying them all.
    let keys: Vec<_> = (0..4)
        .map(|_| SigningKey::generate(Algorithm::ES256).unwrap())
        .collect();
    idp.set_jwks(json!({"keys": keys.iter().map(strip_kid).collect::<Vec<_>>()}));
    let v = build(&idp, &clock, |p| p, false);
    assert_eq!(
        v.validate(&kidless(&keys[0])).await.unwrap_err(),
        ValidationError::Jose(JoseError::AmbiguousKey(4))
    );
}

#[tokio::test]
async fn several_issuers_each_with_its_own_keys() {
    let ka = SigningKey::generate(Algorithm::RS256).unwrap();
    let kb = SigningKey::generate(Algorithm::ES256).unwrap();
    let a = TestIssuer::start(&[&ka]).await;
    let b = TestIssuer::start(&[&kb]).await;
    let clock = clock();
    let v = AccessTokenValidator::builder()
        .issuer(IssuerPolicy::new(&a.issuer, AUD))
        .issuer(IssuerPolicy::new(&b.issuer, "api-b"))
        .clock(clock.clone())
        .build()
        .unwrap();
    let now = clock.now_time();
    assert!(
        v.validate(&mint(&ka, &claims(&a.issuer, AUD, now)))
            .await
            .is_ok()
    );
    assert!(
        v.validate(&mint(&kb, &claims(&b.issuer, "api-b", now)))
            .await
            .is_ok()
    );
    // B's key cannot vouch for a token claiming A, even if B publishes A's kid.
    let impostor = kb
        .sign_with_header(
            &json!({"alg":"ES256","kid":ka.kid()}),
            claims(&a.issuer, AUD, now).to_string().as_bytes(),
        )
        .unwrap();
    assert!(v.validate(&impostor).await.is_err());
    assert_eq!(
        v.validate(&mint(&kb, &claims("https://unknown.example", AUD, now)))
            .await
            .unwrap_err(),
        ValidationError::UntrustedIssuer
    );
    assert_eq!(
        v.validate(&mint(&kb, &claims(&b.issuer, AUD, now)))
            .await
            .unwrap_err(),
        ValidationError::AudienceMismatch
    );
    assert_eq!(a.jwks_hits(), 1);
    assert_eq!(b.jwks_hits(), 1);
}

#[tokio::test]
async fn token_cache_hits_and_still_checks_expiry() {
    let key = SigningKey::generate(Algorithm::RS256).unwrap();
    let idp = TestIssuer::start(&[&key]).await;
    let clock = clock();
    let v = build(&idp, &clock, |p| p, true);
    let token = mint(&key, &claims(&idp.issuer, AUD, clock.now_time()));
    let first = v.validate(&token).await.unwrap();
    let second = v.validate(&token).await.unwrap();
    assert!(Arc::ptr_eq(&first, &second), "served from the cache");
    assert_eq!(v.cached_tokens(), 1);
    clock.advance(Duration::from_secs(301));
    // Past exp: the cached entry is not used; the cold path applies the leeway.
    let again = v.validate(&token).await.unwrap();
    assert!(!Arc::ptr_eq(&first, &again));
    clock.advance(Duration::from_secs(60));
    assert_eq!(
        v.validate(&token).await.unwrap_err(),
        ValidationError::Expired
    );
}

#[tokio::test]
async fn withdrawn_key_invalidates_cached_tokens() {
    let old = SigningKey::generate(Algorithm::RS256).unwrap();
    let new = SigningKey::generate(Algorithm::RS256).unwrap();
    let idp = TestIssuer::start(&[&old, &new]).await;
    let clock = clock();
    let v = build(&idp, &clock, |p| p, true);
    let token = mint(&old, &claims(&idp.issuer, AUD, clock.now_time()));
    assert!(v.validate(&token).await.is_ok());
    // The IdP withdraws the old key; a token with an unknown kid triggers the refetch.
    idp.set_keys(&[&new]);
    clock.advance(Duration::from_secs(6));
    let stranger = SigningKey::generate(Algorithm::RS256).unwrap();
    let _ = v
        .validate(&mint(
            &stranger,
            &claims(&idp.issuer, AUD, clock.now_time()),
        ))
        .await;
    let err = v.validate(&token).await.unwrap_err();
    assert!(
        matches!(err, ValidationError::Jose(JoseError::UnknownKid(_))),
        "{err:?}"
    );
}

#[tokio::test]
async fn cache_control_max_age_sets_the_refresh_within_bounds() {
    let key = SigningKey::generate(Algorithm::RS256).unwrap();
    let idp = TestIssuer::start(&[&key]).await;
    let clock = clock();
    let v = build(&idp, &clock, |p| p, false);
    for (header, expected_secs) in [
        (Some("max-age=600"), 600),
        (Some("max-age=5"), 300),
        (Some("max-age=999999"), 86_400),
        (None, 3600),
    ] {
        idp.set_cache_control(header);
        clock.advance(Duration::from_secs(6));
        let cache = v.key_caches().next().unwrap();
        let seen = cache.current();
        // Force a fetch through an unknown kid (past the cooldown).
        let stranger = SigningKey::generate(Algorithm::ES256).unwrap();
        let _ = v
            .validate(&mint(
                &stranger,
                &claims(&idp.issuer, AUD, clock.now_time()),
            ))
            .await;
        let snap = cache.current().unwrap();
        assert_ne!(seen.map(|s| s.generation), Some(snap.generation));
        let secs = snap
            .refresh_at
            .duration_since(snap.fetched_at)
            .unwrap()
            .as_secs();
        assert_eq!(secs, expected_secs, "{header:?}");
    }
}

mod example {
    //! The `resource_server` example as its own process.
    use super::*;
    use support::{example_path, start_server};

    #[tokio::test]
    async fn routes_behave_as_documented() {
        let key = SigningKey::generate(Algorithm::RS256).unwrap();
        let idp = TestIssuer::start(&[&key]).await;
        let server = start_server(
            &example_path("resource_server"),
            &[],
            &[
                ("OIDC_ISSUER", &idp.issuer),
                ("OIDC_AUDIENCE", AUD),
                ("LISTEN_ADDR", "127.0.0.1:0"),
            ],
        )
        .await;
        let base = &server.base_url;
        let http = reqwest::Client::new();
        let now = SystemTime::now();
        let token = mint(&key, &claims(&idp.issuer, AUD, now));
        let mut no_profile = claims(&idp.issuer, AUD, now);
        no_profile["scope"] = json!("openid email");
        let no_profile = mint(&key, &no_profile);

        let get = |path: &str, token: Option<&str>| {
            let mut req = http.get(format!("{base}{path}"));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            req.send()
        };
        let r = get("/", None).await.unwrap();
        assert_eq!(r.json::<Value>().await.unwrap(), json!({"anonymous": true}));
        let r = get("/", Some(&token)).await.unwrap();
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            json!({"anonymous": false, "username": "alice@example.com"})
        );

        let r = get("/profile/", Some(&token)).await.unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["user"], "alice@example.com");
        assert!(
            body["scopes"]
                .as_array()
                .unwrap()
                .contains(&json!("authenticated"))
        );

        let r = get("/profile/", Some(&no_profile)).await.unwrap();
        assert_eq!(r.status(), 403);
        let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(
            challenge.contains("error=\"insufficient_scope\"")
                && challenge.contains("scope=\"profile\""),
            "{challenge}"
        );
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"],
            "insufficient_scope"
        );

        let r = get("/profile/", None).await.unwrap();
        assert_eq!(r.status(), 401);

        let r = get("/protected", None).await.unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"oidcgate\"");
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            json!({"error": "unauthorized", "error_description": "bearer token required"})
        );
        let r = get("/protected", Some(&token)).await.unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["message"], "Hello, Alice!");
        assert_eq!(body["user"]["sub"], "user-123");

        let r = get("/protected", Some("not.a.jwt")).await.unwrap();
        assert_eq!(r.status(), 401);
        assert!(
            r.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("error=\"invalid_token\"")
        );

        let r = get("/public", Some("garbage")).await.unwrap();
        assert_eq!(r.status(), 200, "public ignores tokens");

        let r = http
            .get(format!("{base}/protected"))
            .header("authorization", format!("Bearer {token}"))
            .header("authorization", "Bearer second")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);

        // Hostile input never produces a 5xx.
        for hostile in [
            "",
            ".",
            "..",
            "a.b.c",
            &"A".repeat(20_000),
            "e30.e30.e30",
            "\u{7f}",
        ] {
            let r = http
                .get(format!("{base}/protected"))
                .header("authorization", format!("Bearer {hostile}"))
                .send()
                .await;
            if let Ok(r) = r {
                assert!(
                    r.status().is_client_error(),
                    "{hostile:.20}: {}",
                    r.status()
                );
            }
        }
    }

    #[tokio::test]
    async fn without_an_issuer_it_runs_a_development_issuer() {
        let (server, lines) = support::start_server_reading(
            &example_path("resource_server"),
            &[],
            &[("LISTEN_ADDR", "127.0.0.1:0")],
            2,
        )
        .await;
        assert!(lines[0].contains("development issuer"), "{lines:?}");
        let token = lines[1].strip_prefix("token: ").expect("token line");
        let http = reqwest::Client::new();
        let r = http
            .get(format!("{}/protected", server.base_url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.unwrap()["message"], "Hello, Alice!");
        let forged = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let c = claims("http://127.0.0.1:1", "demo-api", SystemTime::now());
        let r = http
            .get(format!("{}/protected", server.base_url))
            .bearer_auth(mint(&forged, &c))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }

    #[tokio::test]
    async fn missing_settings_exit_2_naming_the_setting() {
        let out = tokio::process::Command::new(example_path("resource_server"))
            .env_clear()
            .env("OIDC_ISSUER", "https://idp.example.com")
            .current_dir(std::env::temp_dir())
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("OIDC_AUDIENCE"));
    }
}

#[tokio::test]
async fn key_replaced_under_the_same_kid_invalidates_cached_tokens() {
    let old = SigningKey::generate(Algorithm::ES256)
        .unwrap()
        .with_kid("main");
    let new = SigningKey::generate(Algorithm::ES256)
        .unwrap()
        .with_kid("main");
    let idp = TestIssuer::start(&[&old]).await;
    let clock = clock();
    let v = build(&idp, &clock, |p| p, true);
    let token = mint(&old, &claims(&idp.issuer, AUD, clock.now_time()));
    assert!(v.validate(&token).await.is_ok());
    idp.set_keys(&[&new]);
    clock.advance(Duration::from_secs(6));
    let stranger = SigningKey::generate(Algorithm::ES256).unwrap();
    let _ = v
        .validate(&mint(
            &stranger,
            &claims(&idp.issuer, AUD, clock.now_time()),
        ))
        .await;
    assert_eq!(idp.jwks_hits(), 2, "refetched");
    assert_eq!(
        v.validate(&token).await.unwrap_err(),
        ValidationError::Jose(JoseError::BadSignature)
    );
}
