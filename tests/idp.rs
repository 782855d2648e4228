//! The development IdP (`oidcgate idp`) over real sockets: discovery, the authorization code
//! flow with PKCE through the real login form, SSO, token exchange, refresh rotation, client
//! credentials, userinfo, introspection, revocation, and the negative cases of issue 3 — with
//! the IdP's tokens checked by oidcgate-core's own validator.

mod support;

use std::sync::Arc;

use oidcgate_core::jose::{AlgorithmSet, JwkSet, UnverifiedJwt, b64};
use oidcgate_core::validate::{AccessTokenValidator, IssuerPolicy};
use reqwest::StatusCode;
use reqwest::header::LOCATION;
use serde_json::Value;
use support::browser::{Jar, decide_device, field, login, query};
use support::{Running, start_server};

const REDIRECT: &str = "http://127.0.0.1:4180/auth/callback";

async fn start_idp() -> Running {
    start_server(
        std::path::Path::new(env!("CARGO_BIN_EXE_oidcgate")),
        &["idp", "--listen", "127.0.0.1:0"],
        &[],
    )
    .await
}

/// Starts an IdP with this TOML configuration (written to a temporary file kept by the caller).
async fn start_idp_with(name: &str, toml: &str) -> (Running, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("oidcgate-idp-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("idp.toml");
    std::fs::write(&config, toml).unwrap();
    let args = [
        "idp",
        "--listen",
        "127.0.0.1:0",
        "--config",
        config.to_str().unwrap(),
    ];
    (
        start_server(
            std::path::Path::new(env!("CARGO_BIN_EXE_oidcgate")),
            &args,
            &[],
        )
        .await,
        dir,
    )
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn pkce() -> (String, String) {
    let verifier = oidcgate_core::jose::b64::encode([7u8; 32]) + "-verifier-material";
    let challenge = b64::encode(sha256(&verifier));
    (verifier, challenge)
}

fn sha256(s: &str) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes())
        .as_ref()
        .to_vec()
}

fn authorize_url(
    issuer: &str,
    client: &str,
    challenge: Option<&str>,
    extra: &[(&str, &str)],
) -> String {
    let mut url = url::Url::parse(&format!("{issuer}/authorize")).unwrap();
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", client)
            .append_pair("redirect_uri", REDIRECT)
            .append_pair("scope", "openid profile email")
            .append_pair("state", "st-123")
            .append_pair("nonce", "n-456");
        if let Some(c) = challenge {
            q.append_pair("code_challenge", c)
                .append_pair("code_challenge_method", "S256");
        }
        for (k, v) in extra {
            q.append_pair(k, v);
        }
    }
    url.to_string()
}

async fn token(
    http: &reqwest::Client,
    issuer: &str,
    client: (&str, Option<&str>),
    form: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut req = http.post(format!("{issuer}/token")).form(form);
    req = match client.1 {
        Some(secret) => req.basic_auth(client.0, Some(secret)),
        None => req,
    };
    let r = req.send().await.unwrap();
    (r.status(), r.json().await.unwrap())
}

#[tokio::test]
async fn authorization_code_flow_end_to_end() {
    let idp = start_idp().await;
    let issuer = idp.base_url.clone();
    let http = http();
    let mut jar = Jar::default();
    let (verifier, challenge) = pkce();

    // Discovery is read by oidcgate-core's own discovery (issuer match, URL policy).
    let metadata = oidcgate_core::provider::ProviderMetadata::discover(
        &oidcgate_core::http::ReqwestClient::new(Default::default()).unwrap(),
        &issuer,
        Default::default(),
    )
    .await
    .unwrap();
    assert!(metadata.authorization_response_iss_parameter_supported);
    assert_eq!(metadata.code_challenge_methods_supported, ["S256"]);

    let url = authorize_url(&issuer, "demo", Some(&challenge), &[]);
    let (status, _, body) = login(&http, &mut jar, &url, "alice", "wrong").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("Wrong username or password"));
    let (status, params, _) = login(&http, &mut jar, &url, "alice", "wonderland").await;
    assert_eq!(status, StatusCode::SEE_OTHER, "redirect to the client");
    assert_eq!(params["state"], "st-123");
    assert_eq!(params["iss"], issuer);
    let code = params["code"].clone();

    let demo = ("demo", Some("demo-secret"));
    let form = [
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", &verifier),
    ];
    let (status, tokens) = token(&http, &issuer, demo, &form).await;
    assert_eq!(status, 200, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();

    // The ID token: signature with the published keys, and OIDC Core §3.1.3.7 claims.
    let jwks = http
        .get(format!("{issuer}/jwks"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let keys = JwkSet::from_json(&jwks).unwrap();
    let id = UnverifiedJwt::parse(tokens["id_token"].as_str().unwrap()).unwrap();
    let id = id
        .verify(&keys, AlgorithmSet::default())
        .unwrap()
        .claims()
        .unwrap();
    assert_eq!(id["iss"], issuer.as_str());
    assert_eq!(id["aud"], "demo");
    assert_eq!(id["nonce"], "n-456");
    assert_eq!(id["sub"], "alice");
    assert_eq!(id["email"], "alice@example.com");
    assert_eq!(id["at_hash"], b64::encode(&sha256(&access)[..16]));
    assert!(id["auth_time"].is_i64() && id["sid"].is_string());
    assert_ne!(
        id["sid"].as_str(),
        jar.0.get("oidcgate_idp_session").map(String::as_str),
        "sid never reveals the SSO cookie"
    );

    // The access token passes oidcgate's own resource-server validation (RFC 9068).
    let validator = AccessTokenValidator::builder()
        .issuer(IssuerPolicy::new(&issuer, "demo-api").require_at_jwt(true))
        .build()
        .unwrap();
    let verified = validator.validate(&access).await.unwrap();
    assert_eq!(verified.subject(), Some("alice"));
    assert!(verified.has_scope("profile"));

    let info: Value = http
        .get(format!("{issuer}/userinfo"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["sub"], "alice");
    assert_eq!(info["groups"], serde_json::json!(["admins", "users"]));

    // SSO: a second authorization with the session cookie needs no password.
    let again = http
        .get(authorize_url(&issuer, "demo", Some(&challenge), &[]))
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::SEE_OTHER);
    assert!(query(again.headers()[LOCATION].to_str().unwrap()).contains_key("code"));
    // prompt=none without a session: login_required back at the client.
    let none = http
        .get(authorize_url(
            &issuer,
            "demo",
            Some(&challenge),
            &[("prompt", "none")],
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        query(none.headers()[LOCATION].to_str().unwrap())["error"],
        "login_required"
    );

    // Code reuse: refused, and what the code issued is revoked.
    let (status, err) = token(&http, &issuer, demo, &form).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let intro: Value = http
        .post(format!("{issuer}/introspect"))
        .basic_auth("demo", Some("demo-secret"))
        .form(&[("token", &access)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        intro["active"], false,
        "access token from a reused code is revoked"
    );
    let (_, err) = token(
        &http,
        &issuer,
        demo,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert_eq!(
        err["error"], "invalid_grant",
        "refresh family from a reused code is revoked"
    );
}

/// A fresh sign-in's token response for `client`.
async fn fresh_tokens(issuer: &str, client: (&str, Option<&str>)) -> Value {
    let http = http();
    let mut jar = Jar::default();
    let (verifier, challenge) = pkce();
    let (_, params, _) = login(
        &http,
        &mut jar,
        &authorize_url(issuer, client.0, Some(&challenge), &[]),
        "bob",
        "builder",
    )
    .await;
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", params["code"].as_str()),
        ("redirect_uri", REDIRECT),
    ];
    form.push(("code_verifier", &verifier));
    if client.1.is_none() {
        form.push(("client_id", client.0));
    }
    let (status, tokens) = token(&http, issuer, client, &form).await;
    assert_eq!(status, 200, "{tokens}");
    tokens
}

#[tokio::test]
async fn refresh_rotation_and_reuse_revokes_the_family() {
    let idp = start_idp().await;
    let issuer = &idp.base_url;
    let http = http();
    let demo = ("demo", Some("demo-secret"));
    let first = fresh_tokens(issuer, demo).await;
    let r1 = first["refresh_token"].as_str().unwrap();
    let (status, second) = token(
        &http,
        issuer,
        demo,
        &[("grant_type", "refresh_token"), ("refresh_token", r1)],
    )
    .await;
    assert_eq!(status, 200, "{second}");
    let r2 = second["refresh_token"].as_str().unwrap();
    assert_ne!(r1, r2, "rotated");
    assert!(second["id_token"].is_string());
    // Reusing r1 revokes the family: r2 stops working too, and its access token.
    let (_, err) = token(
        &http,
        issuer,
        demo,
        &[("grant_type", "refresh_token"), ("refresh_token", r1)],
    )
    .await;
    assert_eq!(err["error"], "invalid_grant");
    let (_, err) = token(
        &http,
        issuer,
        demo,
        &[("grant_type", "refresh_token"), ("refresh_token", r2)],
    )
    .await;
    assert_eq!(err["error"], "invalid_grant");
    let userinfo = http
        .get(format!("{issuer}/userinfo"))
        .bearer_auth(second["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(userinfo.status(), 401);
    // Another client cannot use bob's refresh token.
    let third = fresh_tokens(issuer, demo).await;
    let (_, err) = token(
        &http,
        issuer,
        ("demo-public", None),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", third["refresh_token"].as_str().unwrap()),
            ("client_id", "demo-public"),
        ],
    )
    .await;
    assert_eq!(err["error"], "invalid_grant");
}

#[tokio::test]
async fn public_client_pkce_and_negative_cases() {
    let idp = start_idp().await;
    let issuer = &idp.base_url;
    let http = http();
    let tokens = fresh_tokens(issuer, ("demo-public", None)).await;
    assert!(tokens["access_token"].is_string());

    // Public client without PKCE: error back at the client.
    let r = http
        .get(authorize_url(issuer, "demo-public", None, &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(
        query(r.headers()[LOCATION].to_str().unwrap())["error"],
        "invalid_request"
    );
    // plain is refused.
    let r = http
        .get(authorize_url(
            issuer,
            "demo-public",
            None,
            &[
                ("code_challenge", &"a".repeat(43)),
                ("code_challenge_method", "plain"),
            ],
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        query(r.headers()[LOCATION].to_str().unwrap())["error"],
        "invalid_request"
    );
    // Unregistered redirect URI: an error page, never a redirect.
    let bad = authorize_url(issuer, "demo", None, &[]).replace("127.0.0.1%3A4180", "evil.example");
    let r = http.get(bad).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers().get(LOCATION).is_none());
    // Unknown client.
    let r = http
        .get(authorize_url(issuer, "nobody", None, &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // PKCE verifier mismatch.
    let mut jar = Jar::default();
    let (_, challenge) = pkce();
    let (_, params, _) = login(
        &http,
        &mut jar,
        &authorize_url(issuer, "demo-public", Some(&challenge), &[]),
        "alice",
        "wonderland",
    )
    .await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", params["code"].as_str()),
        ("redirect_uri", REDIRECT),
        ("client_id", "demo-public"),
        (
            "code_verifier",
            "a-wrong-verifier-that-is-long-enough-to-be-valid-0123",
        ),
    ];
    let (status, err) = token(&http, issuer, ("demo-public", None), &form).await;
    assert_eq!(
        (status.as_u16(), err["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // Client authentication failures: 401 invalid_client, with a Basic challenge for Basic.
    let r = http
        .post(format!("{issuer}/token"))
        .basic_auth("demo", Some("wrong"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    let (status, err) = token(
        &http,
        issuer,
        ("demo", Some("demo-secret")),
        &[("grant_type", "password")],
    )
    .await;
    assert_eq!(
        (status.as_u16(), err["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    // Repeated parameters are refused.
    let r = http
        .post(format!("{issuer}/token"))
        .basic_auth("demo-service", Some("demo-service-secret"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn client_credentials_introspection_and_revocation() {
    let idp = start_idp().await;
    let issuer = &idp.base_url;
    let http = http();
    // client_secret_basic with form-urlencoded id and secret (RFC 6749 §2.3.1), and post.
    let (status, tokens) = token(
        &http,
        issuer,
        ("demo-service", Some("demo-service-secret")),
        &[
            ("grant_type", "client_credentials"),
            ("scope", "read write"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let r = http
        .post(format!("{issuer}/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "demo-service"),
            ("client_secret", "demo-service-secret"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let validator = Arc::new(
        AccessTokenValidator::builder()
            .issuer(IssuerPolicy::new(issuer, "demo-api").require_at_jwt(true))
            .build()
            .unwrap(),
    );
    let claims = validator.validate(&access).await.unwrap();
    assert_eq!(claims.subject(), Some("demo-service"));
    assert!(claims.has_scope("write"));

    let introspect = |token: String| {
        let http = http.clone();
        let issuer = issuer.clone();
        async move {
            http.post(format!("{issuer}/introspect"))
                .basic_auth("demo-service", Some("demo-service-secret"))
                .form(&[("token", token)])
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let active = introspect(access.clone()).await;
    assert_eq!(active["active"], true);
    assert_eq!(active["client_id"], "demo-service");
    assert_eq!(introspect("garbage".into()).await["active"], false);
    // Another client learns nothing about this client's token (RFC 7662 §4).
    let other: Value = http
        .post(format!("{issuer}/introspect"))
        .basic_auth("demo", Some("demo-secret"))
        .form(&[("token", access.as_str())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(other["active"], false);
    // Public clients may not introspect.
    let r = http
        .post(format!("{issuer}/introspect"))
        .form(&[("token", access.as_str()), ("client_id", "demo-public")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let r = http
        .post(format!("{issuer}/revoke"))
        .basic_auth("demo-service", Some("demo-service-secret"))
        .form(&[("token", access.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        introspect(access).await["active"],
        false,
        "revoked token introspects inactive"
    );
}

#[tokio::test]
async fn login_lockout_and_csrf() {
    let idp = start_idp().await;
    let issuer = &idp.base_url;
    let http = http();
    let mut jar = Jar::default();
    let (_, challenge) = pkce();
    let url = authorize_url(issuer, "demo", Some(&challenge), &[]);
    for _ in 0..5 {
        let (status, _, _) = login(&http, &mut jar, &url, "alice", "nope").await;
        assert_eq!(status, 401);
    }
    let (status, _, body) = login(&http, &mut jar, &url, "alice", "wonderland").await;
    assert_eq!(
        status, 429,
        "locked out after 5 failures even with the right password"
    );
    assert!(body.contains("Too many failed attempts"));
    // bob is not affected.
    let (status, params, _) = login(&http, &mut jar, &url, "bob", "builder").await;
    assert_eq!(status, 303);
    assert!(params.contains_key("code"));

    // A login POST without the CSRF cookie is refused.
    let page = http.get(&url).send().await.unwrap().text().await.unwrap();
    let form = [
        ("request", field(&page, "request")),
        ("csrf", field(&page, "csrf")),
        ("username", "bob".into()),
        ("password", "builder".into()),
    ];
    let r = http
        .post(format!("{issuer}/login"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn device_flow_with_the_verification_page() {
    let idp = start_idp().await;
    let issuer = &idp.base_url;
    let http = http();
    let start = || async {
        let r = http
            .post(format!("{issuer}/device_authorization"))
            .form(&[("client_id", "demo-public"), ("scope", "openid profile")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()
    };
    let poll = |device_code: String| {
        let http = http.clone();
        let issuer = issuer.clone();
        async move {
            let form = [
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", device_code.as_str()),
                ("client_id", "demo-public"),
            ];
            token(&http, &issuer, ("demo-public", None), &form).await
        }
    };

    // Polling rules: pending, then slow_down when polling faster than the interval.
    let a = start().await;
    assert_eq!(a["interval"], 5);
    assert!(
        a["verification_uri_complete"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{issuer}/device?user_code="))
    );
    let device_a = a["device_code"].as_str().unwrap().to_owned();
    assert_eq!(
        poll(device_a.clone()).await.1["error"],
        "authorization_pending"
    );
    assert_eq!(poll(device_a).await.1["error"], "slow_down");

    // A user approves through the page: sign in, then the first button approves.
    let b = start().await;
    let page = decide_device(
        &http,
        issuer,
        b["verification_uri_complete"].as_str().unwrap(),
        false,
    )
    .await;
    assert!(page.contains("Device connected"));
    let (status, tokens) = poll(b["device_code"].as_str().unwrap().to_owned()).await;
    assert_eq!(status, 200, "{tokens}");
    assert!(tokens["id_token"].is_string() && tokens["access_token"].is_string());
    // The device code is spent.
    tokio::time::sleep(std::time::Duration::from_millis(5100)).await;
    assert_eq!(
        poll(b["device_code"].as_str().unwrap().to_owned()).await.1["error"],
        "invalid_grant"
    );

    let c = start().await;
    let page = decide_device(
        &http,
        issuer,
        c["verification_uri_complete"].as_str().unwrap(),
        true,
    )
    .await;
    assert!(page.contains("Access denied"));
    assert_eq!(
        poll(c["device_code"].as_str().unwrap().to_owned()).await.1["error"],
        "access_denied"
    );

    // Typing a wrong code gives a readable page, not an error status from the server.
    let r = http
        .get(format!("{issuer}/device?user_code=ZZZZ-ZZZZ"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("unknown or has expired"));
}

#[tokio::test]
async fn rp_initiated_and_back_channel_logout() {
    // A receiver for logout tokens, and an IdP configured (TOML) with a client that uses it.
    let received: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/backchannel",
        axum::routing::post(move |body: String| {
            let sink = sink.clone();
            async move {
                let token = url::form_urlencoded::parse(body.as_bytes())
                    .find(|(k, _)| k == "logout_token")
                    .map(|(_, v)| v.into_owned());
                sink.lock().unwrap().push(token.unwrap_or_default());
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver = format!("http://{}/backchannel", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let (idp, dir) = start_idp_with(
        "logout",
        &format!(
            r#"
[[users]]
username = "alice"
password = "wonderland"
email = "alice@example.com"

[[users]]
username = "bob"
password = "builder"

[[clients]]
client_id = "app"
client_secret = "app-secret"
redirect_uris = ["{REDIRECT}"]
post_logout_redirect_uris = ["http://127.0.0.1:4180/"]
backchannel_logout_uri = "{receiver}"
"#
        ),
    )
    .await;
    let issuer = &idp.base_url;
    let http = http();
    let mut jar = Jar::default();
    let (verifier, challenge) = pkce();
    let (_, params, _) = login(
        &http,
        &mut jar,
        &authorize_url(issuer, "app", Some(&challenge), &[]),
        "alice",
        "wonderland",
    )
    .await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", params["code"].as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", &verifier),
    ];
    let (status, tokens) = token(&http, issuer, ("app", Some("app-secret")), &form).await;
    assert_eq!(status, 200, "{tokens}");
    let id_token = tokens["id_token"].as_str().unwrap();

    // Refusals: a forged hint, an unregistered post-logout URI.
    let r = http
        .get(format!("{issuer}/logout?id_token_hint=a.b.c"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .get(format!("{issuer}/logout"))
        .query(&[
            ("id_token_hint", id_token),
            ("post_logout_redirect_uri", "https://evil.example/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Someone else's ID token (bob's) as the hint: the IdP asks instead of signing alice out.
    let mut bob_jar = Jar::default();
    let (bob_verifier, bob_challenge) = pkce();
    let (_, bob_params, _) = login(
        &http,
        &mut bob_jar,
        &authorize_url(issuer, "app", Some(&bob_challenge), &[]),
        "bob",
        "builder",
    )
    .await;
    let bob_form = [
        ("grant_type", "authorization_code"),
        ("code", bob_params["code"].as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", &bob_verifier),
    ];
    let (_, bob_tokens) = token(&http, issuer, ("app", Some("app-secret")), &bob_form).await;
    let r = http
        .get(format!("{issuer}/logout"))
        .query(&[("id_token_hint", bob_tokens["id_token"].as_str().unwrap())])
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Sign out of the oidcgate development IdP?")
    );
    // An access token is no id_token_hint.
    let r = http
        .get(format!("{issuer}/logout"))
        .query(&[("id_token_hint", tokens["access_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Without a hint: a confirmation page, nothing ended yet.
    let r = http
        .get(format!("{issuer}/logout"))
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Sign out of the oidcgate development IdP?")
    );
    assert!(received.lock().unwrap().is_empty());

    // With the hint: signed out, back to the registered URI with state, logout token delivered.
    let r = http
        .get(format!("{issuer}/logout"))
        .query(&[
            ("id_token_hint", id_token),
            ("post_logout_redirect_uri", "http://127.0.0.1:4180/"),
            ("state", "bye"),
        ])
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[LOCATION], "http://127.0.0.1:4180/?state=bye");
    jar.absorb(r.headers());
    let mut waited = 0;
    while received.lock().unwrap().is_empty() && waited < 50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        waited += 1;
    }
    let logout_token = received
        .lock()
        .unwrap()
        .first()
        .cloned()
        .expect("logout token delivered");
    let jwks = http
        .get(format!("{issuer}/jwks"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let keys = JwkSet::from_json(&jwks).unwrap();
    let jwt = UnverifiedJwt::parse(&logout_token).unwrap();
    assert!(jwt.header().typ_is("logout+jwt"));
    let claims = jwt
        .verify(&keys, AlgorithmSet::default())
        .unwrap()
        .claims()
        .unwrap();
    let id = UnverifiedJwt::parse(id_token)
        .unwrap()
        .verify(&keys, AlgorithmSet::default())
        .unwrap()
        .claims()
        .unwrap();
    assert_eq!(claims["aud"], "app");
    assert_eq!(claims["sid"], id["sid"]);
    assert_eq!(claims["sub"], "alice");
    assert!(claims.get("nonce").is_none());
    assert!(
        claims["events"]
            .get("http://schemas.openid.net/event/backchannel-logout")
            .is_some()
    );

    // Refresh tokens issued in the ended session (without offline_access) are revoked.
    let (_, err) = token(
        &http,
        issuer,
        ("app", Some("app-secret")),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(err["error"], "invalid_grant");

    // The SSO session is gone: the next authorization shows the login form again.
    let r = http
        .get(authorize_url(issuer, "app", Some(&challenge), &[]))
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("name=\"password\""));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn consent_and_per_client_signing_algorithm() {
    let (idp, dir) = start_idp_with(
        "consent",
        &format!(
            r#"
[[users]]
username = "alice"
password = "wonderland"

[[clients]]
client_id = "careful"
client_secret = "careful-secret"
redirect_uris = ["{REDIRECT}"]
require_consent = true
id_token_signed_response_alg = "EdDSA"
"#
        ),
    )
    .await;
    let issuer = &idp.base_url;
    let http = http();
    let mut jar = Jar::default();
    let (verifier, challenge) = pkce();
    let url = authorize_url(issuer, "careful", Some(&challenge), &[]);
    // After signing in, a consent page instead of a redirect.
    let (status, _, consent) = login(&http, &mut jar, &url, "alice", "wonderland").await;
    assert_eq!(status, 200);
    assert!(
        consent.contains("asks for") && consent.contains("<li>profile</li>"),
        "{consent}"
    );
    let allow = [
        ("request", field(&consent, "request")),
        ("csrf", field(&consent, "csrf")),
        ("approve", "1".into()),
    ];
    let r = http
        .post(format!("{issuer}/consent"))
        .header("cookie", jar.header())
        .form(&allow)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let code = query(r.headers()[LOCATION].to_str().unwrap())["code"].clone();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", &verifier),
    ];
    let (status, tokens) = token(&http, issuer, ("careful", Some("careful-secret")), &form).await;
    assert_eq!(status, 200, "{tokens}");
    for name in ["id_token", "access_token"] {
        let jwt = UnverifiedJwt::parse(tokens[name].as_str().unwrap()).unwrap();
        assert_eq!(
            jwt.header().alg(),
            oidcgate_core::jose::Algorithm::EdDSA,
            "{name}"
        );
    }
    // Consent is remembered in the session...
    let r = http
        .get(&url)
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    // ...unless prompt=consent, and denying sends access_denied to the client.
    let r = http
        .get(authorize_url(
            issuer,
            "careful",
            Some(&challenge),
            &[("prompt", "consent")],
        ))
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    jar.absorb(r.headers());
    let consent = r.text().await.unwrap();
    let deny = [
        ("request", field(&consent, "request")),
        ("csrf", field(&consent, "csrf")),
        ("deny", "1".into()),
    ];
    let r = http
        .post(format!("{issuer}/consent"))
        .header("cookie", jar.header())
        .form(&deny)
        .send()
        .await
        .unwrap();
    assert_eq!(
        query(r.headers()[LOCATION].to_str().unwrap())["error"],
        "access_denied"
    );
    // prompt=none never shows the consent page: consent_required instead (OIDC Core §3.1.2.1).
    let mut none_url = url::Url::parse(&authorize_url(
        issuer,
        "careful",
        Some(&challenge),
        &[("prompt", "none")],
    ))
    .unwrap();
    let pairs: Vec<(String, String)> = none_url
        .query_pairs()
        .map(|(k, v)| {
            let value = if k == "scope" {
                "openid groups".to_owned()
            } else {
                v.into_owned()
            };
            (k.into_owned(), value)
        })
        .collect();
    none_url.query_pairs_mut().clear().extend_pairs(pairs);
    let r = http
        .get(none_url.as_str())
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    assert_eq!(
        query(r.headers()[LOCATION].to_str().unwrap())["error"],
        "consent_required"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A free loopback port (the IdP restarts on the same one, so its issuer stays the same).
fn free_port() -> u16 {
    support::gateway::free_addr().port()
}

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn sqlite_store_survives_a_restart_and_keys_rotate_without_downtime() {
    let dir = std::env::temp_dir().join(format!("oidcgate-idp-sqlite-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = format!("sqlite:{}", dir.join("idp.db").display());
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let issuer = format!("http://{listen}");
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_oidcgate"));
    let args = [
        "idp",
        "--listen",
        listen.as_str(),
        "--issuer",
        issuer.as_str(),
        "--store",
        store.as_str(),
    ];
    let http = http();
    let demo = ("demo", Some("demo-secret"));

    let first = start_server(bin, &args, &[]).await;
    let mut jar = Jar::default();
    let (verifier, challenge) = pkce();
    let (_, params, _) = login(
        &http,
        &mut jar,
        &authorize_url(&issuer, "demo", Some(&challenge), &[]),
        "alice",
        "wonderland",
    )
    .await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", params["code"].as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", &verifier),
    ];
    let (status, tokens) = token(&http, &issuer, demo, &form).await;
    assert_eq!(status, 200, "{tokens}");
    let jwks_before: Value = http
        .get(format!("{issuer}/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    drop(first);

    // Restart on the same store: keys, refresh tokens and the SSO session are still there.
    let mut second = None;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if std::net::TcpStream::connect(&listen).is_err() {
            second = Some(start_server(bin, &args, &[]).await);
            break;
        }
    }
    let _second = second.expect("the first IdP exited");
    let jwks_after: Value = http
        .get(format!("{issuer}/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        kids(&jwks_before),
        kids(&jwks_after),
        "same keys after a restart"
    );
    let userinfo = http
        .get(format!("{issuer}/userinfo"))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(userinfo.status(), 200);
    let (status, refreshed) = token(
        &http,
        &issuer,
        demo,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(status, 200, "{refreshed}");
    let sso = http
        .get(authorize_url(&issuer, "demo", Some(&challenge), &[]))
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    assert_eq!(sso.status(), 303, "the SSO session survived");

    // Rotation while it runs: new keys appear within the reload interval, old ones stay.
    let out = std::process::Command::new(bin)
        .args(["idp", "rotate-keys", "--store", store.as_str()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rotated = String::from_utf8(out.stdout).unwrap();
    let new_rs256 = rotated
        .lines()
        .find_map(|l| l.strip_prefix("RS256 "))
        .unwrap()
        .to_owned();
    let mut published = Vec::new();
    for _ in 0..60 {
        let jwks: Value = http
            .get(format!("{issuer}/jwks"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        published = kids(&jwks);
        if published.contains(&new_rs256) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert!(
        published.contains(&new_rs256),
        "new key published within 30 s: {published:?}"
    );
    for old in kids(&jwks_before) {
        assert!(
            published.contains(&old),
            "retired key {old} still published"
        );
    }
    let (_, fresh) = token(
        &http,
        &issuer,
        ("demo-service", Some("demo-service-secret")),
        &[("grant_type", "client_credentials")],
    )
    .await;
    let header = UnverifiedJwt::parse(fresh["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(
        header.header().kid(),
        Some(new_rs256.as_str()),
        "new tokens use the new key"
    );
    let userinfo = http
        .get(format!("{issuer}/userinfo"))
        .bearer_auth(refreshed["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        userinfo.status(),
        200,
        "tokens signed by the retired key still verify"
    );
    let _ = std::fs::remove_dir_all(dir);
}
