//! The relying-party client of oidcgate-core (`client` and `validate::id_token`) against real
//! providers over real sockets: the built-in IdP for the flows (code + PKCE through the login
//! form, callback checks, refresh, userinfo, client credentials, introspection, revocation,
//! device flow, logout URL), and a hand-made issuer for every ID-token rejection.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use oidcgate_core::client::{CallbackParams, ClientConfig, ClientError, OidcClient};
use oidcgate_core::clock::ManualClock;
use oidcgate_core::http::ReqwestClient;
use oidcgate_core::jose::Algorithm;
use oidcgate_core::jose::sign::SigningKey;
use oidcgate_core::provider::{KeyCache, KeyCacheConfig, KeySource};
use oidcgate_core::validate::{
    AccessTokenValidator, IdTokenChecks, IdTokenValidator, IssuerPolicy, ValidationError,
};
use serde_json::{Value, json};
use support::browser::{Jar, decide_device, login};
use support::{Running, TestIssuer, start_server, unix};

const REDIRECT: &str = "http://127.0.0.1:4180/auth/callback";

async fn start_idp() -> Running {
    start_server(
        std::path::Path::new(env!("CARGO_BIN_EXE_oidcgate")),
        &["idp", "--listen", "127.0.0.1:0"],
        &[],
    )
    .await
}

fn http() -> Arc<ReqwestClient> {
    Arc::new(ReqwestClient::new(Default::default()).unwrap())
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Signs alice in for `url`; returns the callback parameters.
async fn sign_in(url: &str, jar: &mut Jar) -> HashMap<String, String> {
    let (status, params, body) = login(&browser(), jar, url, "alice", "wonderland").await;
    assert_eq!(status, 303, "{body}");
    params
}

fn callback(params: &HashMap<String, String>) -> CallbackParams {
    CallbackParams::from_pairs(params.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap()
}

#[tokio::test]
async fn code_flow_refresh_userinfo_introspection_revocation() {
    let idp = start_idp().await;
    let issuer = idp.base_url.clone();
    let client = OidcClient::discover(
        ClientConfig::confidential(&issuer, "demo", "demo-secret"),
        http(),
    )
    .await
    .unwrap();
    let (url, pending) = client
        .authorization_request(REDIRECT, "openid profile email")
        .max_age(Duration::from_secs(300))
        .login_hint("alice")
        .param("state", "ignored: reserved parameters cannot be overridden")
        .build()
        .unwrap();
    let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["state"], pending.state);
    assert!(
        pending.state.len() >= 43 && pending.nonce.len() >= 43,
        "≥ 256 bits each"
    );
    assert!(
        !format!("{pending:?}").contains(&pending.state),
        "Debug hides secrets"
    );

    let mut jar = Jar::default();
    let params = sign_in(url.as_str(), &mut jar).await;
    let login = client
        .handle_callback(&pending, &callback(&params))
        .await
        .unwrap();
    assert_eq!(login.id_token.subject(), Some("alice"));
    assert_eq!(
        login.id_token.string_claim("nonce"),
        Some(pending.nonce.as_str())
    );

    let info = client
        .userinfo(&login.tokens.access_token, "alice")
        .await
        .unwrap();
    assert_eq!(info["email"], "alice@example.com");
    assert!(matches!(
        client.userinfo(&login.tokens.access_token, "bob").await,
        Err(ClientError::UserinfoSubjectMismatch)
    ));

    let refresh = login.tokens.refresh_token.clone().unwrap();
    let refreshed = client
        .refresh(&refresh, Some("alice"), Some(&pending.nonce))
        .await
        .unwrap();
    assert_ne!(
        refreshed.refresh_token.as_deref(),
        Some(refresh.as_str()),
        "rotated"
    );
    let err = client
        .refresh(
            refreshed.refresh_token.as_deref().unwrap(),
            Some("bob"),
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::IdToken(ValidationError::SubjectMismatch)),
        "{err:?}"
    );

    let active = client
        .introspect(&refreshed.access_token, Some("access_token"))
        .await
        .unwrap();
    assert_eq!(active["active"], true);
    client
        .revoke(&refreshed.access_token, Some("access_token"))
        .await
        .unwrap();
    assert_eq!(
        client
            .introspect(&refreshed.access_token, None)
            .await
            .unwrap()["active"],
        false
    );
    // The old refresh token was rotated: using it again is refused by the provider.
    let err = client
        .refresh(&refresh, Some("alice"), None)
        .await
        .unwrap_err();
    assert_eq!(err.oauth_error(), Some("invalid_grant"));

    let logout = client
        .end_session_url(
            login.tokens.id_token.as_deref(),
            Some("http://127.0.0.1:4180/"),
            Some("s1"),
        )
        .unwrap();
    let q: HashMap<String, String> = logout.query_pairs().into_owned().collect();
    assert_eq!(q["post_logout_redirect_uri"], "http://127.0.0.1:4180/");
    assert_eq!(q["client_id"], "demo");
}

#[tokio::test]
async fn callback_checks() {
    let idp = start_idp().await;
    let issuer = idp.base_url.clone();
    let client = OidcClient::discover(ClientConfig::public(&issuer, "demo-public"), http())
        .await
        .unwrap();
    let fresh = || {
        client
            .authorization_request(REDIRECT, "openid")
            .build()
            .unwrap()
    };

    let (url, pending) = fresh();
    let mut jar = Jar::default();
    let good = sign_in(url.as_str(), &mut jar).await;
    let mut tampered = good.clone();
    tampered.insert("state".into(), "forged".into());
    assert!(matches!(
        client.handle_callback(&pending, &callback(&tampered)).await,
        Err(ClientError::StateMismatch)
    ));
    let mut no_iss = good.clone();
    no_iss.remove("iss");
    assert!(
        matches!(
            client.handle_callback(&pending, &callback(&no_iss)).await,
            Err(ClientError::IssuerMismatch)
        ),
        "the IdP advertises RFC 9207, so iss is required"
    );
    let mut wrong_iss = good.clone();
    wrong_iss.insert("iss".into(), "https://evil.example".into());
    assert!(matches!(
        client
            .handle_callback(&pending, &callback(&wrong_iss))
            .await,
        Err(ClientError::IssuerMismatch)
    ));
    // A login for another browser's pending state is refused even with a valid code.
    let (_, other_pending) = fresh();
    assert!(matches!(
        client
            .handle_callback(&other_pending, &callback(&good))
            .await,
        Err(ClientError::StateMismatch)
    ));
    // The untampered callback works (and only once).
    assert!(
        client
            .handle_callback(&pending, &callback(&good))
            .await
            .is_ok()
    );
    let again = client
        .handle_callback(&pending, &callback(&good))
        .await
        .unwrap_err();
    assert_eq!(again.oauth_error(), Some("invalid_grant"));

    let error = CallbackParams::from_query(&format!(
        "error=access_denied&error_description=nope&state=x&iss={}",
        url::form_urlencoded::byte_serialize(issuer.as_bytes()).collect::<String>()
    ))
    .unwrap();
    assert!(matches!(
        client.handle_callback(&pending, &error).await,
        Err(ClientError::Authorization { .. })
    ));
    // RFC 9207 §2.4: an error response without the advertised iss is refused as a mix-up.
    let error = CallbackParams::from_query("error=access_denied&state=x").unwrap();
    assert!(matches!(
        client.handle_callback(&pending, &error).await,
        Err(ClientError::IssuerMismatch)
    ));
    assert!(
        CallbackParams::from_query("code=a&code=b").is_err(),
        "repeated code"
    );
}

#[tokio::test]
async fn client_credentials_and_device_flow() {
    let idp = start_idp().await;
    let issuer = idp.base_url.clone();
    let service = OidcClient::discover(
        ClientConfig::confidential(&issuer, "demo-service", "demo-service-secret"),
        http(),
    )
    .await
    .unwrap();
    let tokens = service.client_credentials(Some("read"), &[]).await.unwrap();
    let validator = AccessTokenValidator::builder()
        .issuer(IssuerPolicy::new(&issuer, "demo-api"))
        .build()
        .unwrap();
    assert!(
        validator
            .validate(&tokens.access_token)
            .await
            .unwrap()
            .has_scope("read")
    );
    let wrong = OidcClient::discover(
        ClientConfig::confidential(&issuer, "demo-service", "nope"),
        http(),
    )
    .await
    .unwrap();
    assert_eq!(
        wrong
            .client_credentials(None, &[])
            .await
            .unwrap_err()
            .oauth_error(),
        Some("invalid_client")
    );

    // Device flow: the client polls while a user approves on the verification page.
    let device_client = OidcClient::discover(ClientConfig::public(&issuer, "demo-public"), http())
        .await
        .unwrap();
    let device = device_client
        .device_authorization(Some("openid profile"))
        .await
        .unwrap();
    assert_eq!(device.interval, 5);
    let approve = async {
        let page = decide_device(
            &browser(),
            &issuer,
            device.verification_uri_complete.as_deref().unwrap(),
            false,
        )
        .await;
        assert!(page.contains("Device connected"));
    };
    let mut waits = 0;
    let (tokens, ()) = tokio::join!(device_client.poll_device(&device, |_| waits += 1), approve);
    let tokens = tokens.unwrap();
    assert!(tokens.id_token.is_some());
    assert!(waits >= 1);
}

/// ID-token rejections, with tokens minted by hand against a test issuer.
#[tokio::test]
async fn id_token_rejections() {
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let idp = TestIssuer::start(&[&key]).await;
    let clock = Arc::new(ManualClock::starting_now());
    let keys = KeyCache::new(
        &idp.issuer,
        KeySource::Discovery,
        http(),
        clock.clone(),
        KeyCacheConfig::default(),
    );
    let v = IdTokenValidator::new(&idp.issuer, "app", keys, clock.clone());
    let now = unix(SystemTime::now());
    let base = json!({"iss": idp.issuer, "aud": "app", "sub": "alice", "iat": now, "exp": now + 300,
        "nonce": "n1", "auth_time": now - 10});
    let checks = IdTokenChecks {
        nonce: Some("n1"),
        ..Default::default()
    };
    let sign = |claims: &Value| key.sign_jwt(None, claims).unwrap();
    assert!(v.validate(&sign(&base), checks).await.is_ok());
    // A refreshed ID token may lack `nonce` (OIDC Core §12.2) or repeat the original one.
    let refreshed = IdTokenChecks {
        nonce: None,
        expected_sub: Some("alice"),
        original_nonce: Some("n1"),
        ..checks
    };
    assert!(v.validate(&sign(&base), refreshed).await.is_ok());
    let mut without_nonce = base.clone();
    without_nonce.as_object_mut().unwrap().remove("nonce");
    assert!(v.validate(&sign(&without_nonce), refreshed).await.is_ok());

    let with = |k: &str, val: Value| {
        let mut c = base.clone();
        c[k] = val;
        c
    };
    type Expect = fn(&ValidationError) -> bool;
    let cases: Vec<(&str, Value, IdTokenChecks<'_>, Expect)> = vec![
        ("nonce mismatch", with("nonce", json!("n2")), checks, |e| {
            *e == ValidationError::NonceMismatch
        }),
        (
            "nonce missing",
            {
                let mut c = base.clone();
                c.as_object_mut().unwrap().remove("nonce");
                c
            },
            checks,
            |e| matches!(e, ValidationError::MissingClaim(c) if c == "nonce"),
        ),
        ("other audience", with("aud", json!("other")), checks, |e| {
            *e == ValidationError::AudienceMismatch
        }),
        (
            "untrusted extra audience",
            with("aud", json!(["app", "evil"])),
            checks,
            |e| *e == ValidationError::UntrustedAudience,
        ),
        (
            "azp of another client",
            with("azp", json!("other")),
            checks,
            |e| *e == ValidationError::AzpMismatch,
        ),
        ("expired", with("exp", json!(now - 120)), checks, |e| {
            *e == ValidationError::Expired
        }),
        (
            "issued in the future",
            with("iat", json!(now + 600)),
            checks,
            |e| *e == ValidationError::IssuedInFuture,
        ),
        (
            "wrong issuer",
            with("iss", json!("https://evil.example")),
            checks,
            |e| *e == ValidationError::IssuerMismatch,
        ),
        (
            "no sub",
            {
                let mut c = base.clone();
                c.as_object_mut().unwrap().remove("sub");
                c
            },
            checks,
            |e| matches!(e, ValidationError::MissingClaim(c) if c == "sub"),
        ),
        (
            "auth_time too old for max_age",
            with("auth_time", json!(now - 1000)),
            IdTokenChecks {
                max_age: Some(Duration::from_secs(300)),
                ..checks
            },
            |e| *e == ValidationError::AuthTimeTooOld,
        ),
        (
            "at_hash mismatch",
            with("at_hash", json!("AAAAAAAAAAAAAAAAAAAAAA")),
            IdTokenChecks {
                access_token: Some("the-access-token"),
                ..checks
            },
            |e| *e == ValidationError::AtHashMismatch,
        ),
        (
            "refreshed for another user",
            base.clone(),
            IdTokenChecks {
                expected_sub: Some("bob"),
                ..checks
            },
            |e| *e == ValidationError::SubjectMismatch,
        ),
        (
            "refreshed with another login's nonce",
            base.clone(),
            IdTokenChecks {
                nonce: None,
                expected_sub: Some("alice"),
                original_nonce: Some("n0"),
                ..checks
            },
            |e| *e == ValidationError::NonceMismatch,
        ),
    ];
    for (name, claims, checks, expected) in cases {
        let err = v.validate(&sign(&claims), checks).await.expect_err(name);
        assert!(expected(&err), "{name}: {err:?}");
    }
    // Several audiences need azp; HMAC "signed" with anything is refused.
    let trusted = v.clone().trusted_audiences(["api"]);
    let err = trusted
        .validate(&sign(&with("aud", json!(["app", "api"]))), checks)
        .await
        .unwrap_err();
    assert_eq!(err, ValidationError::MissingClaim("azp".into()));
    let hs = SigningKey::hmac(Algorithm::HS256, &[1; 32], key.kid()).unwrap();
    assert!(
        v.validate(&hs.sign_jwt(None, &base).unwrap(), checks)
            .await
            .is_err()
    );
}

/// Back-channel logout tokens (Back-Channel Logout 1.0 §2.6), minted by hand.
#[tokio::test]
async fn logout_token_rules() {
    use oidcgate_core::validate::LogoutTokenValidator;
    let key = SigningKey::generate(Algorithm::RS256).unwrap();
    let idp = TestIssuer::start(&[&key]).await;
    let clock = Arc::new(ManualClock::starting_now());
    let keys = KeyCache::new(
        &idp.issuer,
        KeySource::Discovery,
        http(),
        clock.clone(),
        KeyCacheConfig::default(),
    );
    let v = LogoutTokenValidator::new(&idp.issuer, "app", keys, clock);
    let now = unix(SystemTime::now());
    let event = json!({"http://schemas.openid.net/event/backchannel-logout": {}});
    let base = json!({"iss": idp.issuer, "aud": "app", "iat": now, "exp": now + 120, "jti": "j1", "sid": "s1", "events": event});
    let sign = |c: &Value| key.sign_jwt(Some("logout+jwt"), c).unwrap();
    let ok = v.validate(&sign(&base)).await.unwrap();
    assert_eq!(ok.sid.as_deref(), Some("s1"));
    assert_eq!(
        v.validate(&sign(&base)).await.unwrap_err(),
        ValidationError::Replayed
    );
    let with = |k: &str, val: Value, jti: &str| {
        let mut c = base.clone();
        c[k] = val;
        c["jti"] = json!(jti);
        c
    };
    let without = |k: &str, jti: &str| {
        let mut c = base.clone();
        c.as_object_mut().unwrap().remove(k);
        c["jti"] = json!(jti);
        c
    };
    for (name, claims) in [
        (
            "nonce present (an ID token)",
            with("nonce", json!("n"), "j2"),
        ),
        ("no events", without("events", "j3")),
        ("wrong event", with("events", json!({"other": {}}), "j4")),
        ("no sid or sub", without("sid", "j5")),
        ("other audience", with("aud", json!("other"), "j6")),
        ("expired", with("exp", json!(now - 600), "j7")),
        ("empty jti", without("jti", "")),
    ] {
        assert!(v.validate(&sign(&claims)).await.is_err(), "{name}");
    }
    let id_typed = key
        .sign_jwt(Some("at+jwt"), &with("jti", json!("j8"), "j8"))
        .unwrap();
    assert_eq!(
        v.validate(&id_typed).await.unwrap_err(),
        ValidationError::WrongType
    );
}
