//! `oidcgate serve` in front of an app with npm `oidc-provider` (an OpenID Certified OP) as the
//! IdP instead of the built-in one: browser sign-in through the provider's own login form, the
//! identity headers the app receives (groups from the `groups` scope), forward auth, a JWT
//! access token for the API resource accepted as a bearer token while the provider's opaque
//! tokens are refused, and logout sending the browser to the provider's end-session endpoint.
//! A second gateway signs in as a `private_key_jwt` client and refreshes its sessions' tokens
//! against the provider's rotation and reuse detection.

mod support;

use reqwest::StatusCode;
use serde_json::Value;
use support::browser::Jar;
use support::gateway::{BIN, client, echo_upstream, free_addr, start_gateway};
use support::oidc_provider::{API_RESOURCE, provider_login, start_oidc_provider};
use support::start_server;

const SECRET: &str = "a-gateway-session-secret-of-32-bytes-or-more";

async fn provider_token(issuer: &str, resource: Option<&str>) -> String {
    let mut form = vec![("grant_type", "client_credentials"), ("scope", "api:read")];
    if let Some(r) = resource {
        form.push(("resource", r));
    }
    let r: Value = client()
        .post(format!("{issuer}/token"))
        .basic_auth("demo-service", Some("demo-service-secret"))
        .form(&form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access token: {r}"))
        .to_owned()
}

/// Signs alice in through the gateway at `base` (`/login?rd=<rd_encoded>` → the provider's
/// form → the callback); returns the gateway's cookies, the authorization URL, the callback
/// URL and where the callback redirected.
async fn sign_in(base: &str, rd_encoded: &str) -> (Jar, String, String, String) {
    let http = client();
    let mut jar = Jar::default();
    let start = http
        .get(format!("{base}/login?rd={rd_encoded}"))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), StatusCode::FOUND);
    jar.absorb(start.headers());
    let authorize = start.headers()["location"].to_str().unwrap().to_owned();
    let mut provider_jar = Jar::default();
    let callback =
        provider_login(&http, &mut provider_jar, &authorize, "alice", "wonderland").await;
    let done = http
        .get(&callback)
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    assert_eq!(
        done.status(),
        StatusCode::FOUND,
        "{}",
        done.text().await.unwrap_or_default()
    );
    jar.absorb(done.headers());
    assert!(jar.0.contains_key("oidcgate_session"));
    let landed = done.headers()["location"].to_str().unwrap().to_owned();
    (jar, authorize, callback, landed)
}

#[tokio::test]
async fn gateway_with_oidc_provider_as_the_idp() {
    let addr = free_addr();
    let base = format!("http://{addr}");
    let redirect = format!("{base}/auth/callback");
    let home = format!("{base}/");
    let peer = start_oidc_provider(&[
        ("EXTRA_REDIRECT_URIS", redirect.as_str()),
        ("EXTRA_POST_LOGOUT_REDIRECT_URIS", home.as_str()),
    ])
    .await;
    let issuer = peer.base_url.clone();
    let (upstream, _task) = echo_upstream().await;
    let listen = addr.to_string();
    let _gw = start_server(
        std::path::Path::new(BIN),
        &["serve"],
        &[
            ("OIDC_ISSUER", issuer.as_str()),
            ("OIDC_CLIENT_ID", "demo"),
            ("OIDC_CLIENT_SECRET", "demo-secret"),
            ("OIDC_REDIRECT_URI", redirect.as_str()),
            ("OIDC_SCOPES", "openid email profile groups"),
            ("OIDC_AUDIENCE", "demo-api"),
            ("SESSION_SECRET", SECRET),
            ("COOKIE_SECURE", "false"),
            ("UPSTREAM_URL", upstream.as_str()),
            ("LISTEN_ADDR", listen.as_str()),
        ],
    )
    .await;
    let http = client();

    // Sign in: the gateway's /login → the provider's form → the gateway's callback → /app.
    let (jar, authorize, callback, landed) = sign_in(&base, "%2Fapp%3Fx%3D1%26y%3D2").await;
    assert!(authorize.starts_with(&format!("{issuer}/")), "{authorize}");
    assert!(
        authorize.contains("code_challenge_method=S256"),
        "{authorize}"
    );
    assert!(callback.starts_with(&redirect), "{callback}");
    assert!(
        callback.contains("iss="),
        "RFC 9207 iss from the provider: {callback}"
    );
    assert_eq!(landed, "/app?x=1&y=2");

    // The app sees the identity; forged identity headers never reach it.
    let seen: Value = http
        .get(format!("{base}/app?x=1"))
        .header("cookie", jar.header())
        .header("x-auth-request-groups", "evil")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let h = &seen["headers"];
    assert_eq!(h["x-auth-request-user"], "alice");
    assert_eq!(h["x-auth-request-email"], "alice@example.com");
    assert_eq!(h["x-auth-request-groups"], "admins,users");
    let r = http
        .get(format!("{base}/auth/verify"))
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    // Bearer tokens: the provider's JWT for the API resource passes; its opaque tokens do not.
    let jwt = provider_token(&issuer, Some(API_RESOURCE)).await;
    let seen: Value = http
        .get(format!("{base}/api"))
        .bearer_auth(&jwt)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["headers"]["x-auth-request-user"], "demo-service");
    let opaque = provider_token(&issuer, None).await;
    let r = http
        .get(format!("{base}/api"))
        .bearer_auth(&opaque)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("invalid_token"), "{challenge}");

    // Logout: the session ends here and the browser goes to the provider's end-session endpoint.
    let r = http
        .get(format!("{base}/logout"))
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let end = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        end.starts_with(&format!("{issuer}/")) && end.contains("id_token_hint="),
        "{end}"
    );
    let r = http
        .get(format!("{base}/api"))
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

/// The access token the echo upstream saw for one request, or the status when refused.
async fn upstream_token(base: &str, jar: &Jar) -> Result<String, StatusCode> {
    let r = client()
        .get(format!("{base}/app"))
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    if r.status() != StatusCode::OK {
        return Err(r.status());
    }
    let seen: Value = r.json().await.unwrap();
    Ok(seen["headers"]["x-forwarded-access-token"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

#[tokio::test]
async fn private_key_jwt_client_signs_in_and_refreshes_with_rotation() {
    // The gateway authenticates as `demo-jwt` with an ES256 key from a PEM file; the provider
    // knows only its public half, rotates refresh tokens and revokes the grant on reuse, and
    // issues 30-second access tokens, so every request below refreshes.
    let key =
        oidcgate_core::jose::sign::SigningKey::generate(oidcgate_core::jose::Algorithm::ES256)
            .unwrap();
    let dir = std::env::temp_dir().join(format!("oidcgate-pkjwt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("client.pem");
    std::fs::write(&key_file, key.to_pkcs8_pem().unwrap()).unwrap();
    let jwks = serde_json::json!({"keys": [key.public_jwk().unwrap()]}).to_string();
    let addr = free_addr();
    let base = format!("http://{addr}");
    let redirect = format!("{base}/auth/callback");
    let peer = start_oidc_provider(&[
        ("EXTRA_REDIRECT_URIS", redirect.as_str()),
        ("JWT_CLIENT_JWKS", jwks.as_str()),
        ("ACCESS_TOKEN_TTL", "30"),
    ])
    .await;
    let issuer = peer.base_url.clone();
    let (upstream, _task) = echo_upstream().await;
    let listen = addr.to_string();
    let key_path = key_file.to_string_lossy().into_owned();
    let _gw = start_gateway(
        &issuer,
        &upstream,
        &[
            ("OIDC_CLIENT_ID", "demo-jwt"),
            ("OIDC_CLIENT_SECRET", ""),
            ("OIDC_CLIENT_PRIVATE_KEY_FILE", key_path.as_str()),
            ("OIDC_REDIRECT_URI", redirect.as_str()),
            ("LISTEN_ADDR", listen.as_str()),
            ("PASS_ACCESS_TOKEN", "true"),
        ],
    )
    .await;
    let http = client();
    let (mut jar, ..) = sign_in(&base, "%2Fapp").await;

    let mut seen = std::collections::HashSet::new();
    for round in 0..3 {
        // Concurrent requests share one refresh; each round's cookie is the newest.
        let answers =
            futures_util::future::join_all((0..5).map(|_| upstream_token(&base, &jar))).await;
        let tokens: std::collections::HashSet<String> = answers
            .into_iter()
            .map(|t| t.unwrap_or_else(|s| panic!("round {round}: HTTP {s}")))
            .collect();
        assert_eq!(tokens.len(), 1, "round {round}: {tokens:?}");
        let token = tokens.into_iter().next().unwrap_or_default();
        assert!(
            !token.is_empty() && seen.insert(token),
            "round {round} refreshed"
        );
        // Take the resealed cookie of one more request (the refresh result is cached).
        let r = http
            .get(format!("{base}/app"))
            .header("cookie", jar.header())
            .send()
            .await
            .unwrap();
        jar.absorb(r.headers());
    }
    let _ = std::fs::remove_dir_all(&dir);
}
