//! `oidcgate token` as a process against an independent OpenID Provider (npm `oidc-provider`,
//! started from tests/peers/oidc_provider.mjs): client credentials for the API resource (the
//! RFC 9068 JWT validates with oidcgate's access-token validator, and the cache serves it
//! again), the device flow approved — or aborted — on the peer's own device pages while the
//! command polls (the peer sends no `interval`, so the command waits the default 5 s), the
//! loopback login of the native public client then refresh with rotation, and revoke then
//! introspect of an opaque client-credentials token.

mod support;

use std::time::Duration;

use oidcgate_core::validate::{AccessTokenValidator, IssuerPolicy};
use serde_json::Value;
use support::browser::Jar;
use support::oidc_provider::{
    API_AUDIENCE, API_RESOURCE, no_redirect_client, provider_device, provider_login,
    start_oidc_provider,
};
use support::token_cli::{run, temp, token_cmd};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;
use tokio::task::JoinHandle;

const SERVICE: [&str; 4] = [
    "--client-id",
    "demo-service",
    "--client-secret",
    "demo-service-secret",
];

/// Reads stderr lines until one contains `marker`; returns the rest of that line after the
/// marker, and the rest of stderr (drained in the background; its text lines, not the QR code,
/// are echoed for the test log).
async fn after_marker(child: &mut Child, marker: &str) -> (String, JoinHandle<String>) {
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some((_, rest)) = line.split_once(marker) {
                return rest.trim().to_owned();
            }
        }
        panic!("no stderr line with {marker:?}");
    })
    .await
    .expect("the stderr line within 30 s");
    let rest = tokio::spawn(async move {
        let mut rest = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            if line.chars().any(|c| c.is_ascii_alphabetic()) {
                eprintln!("[oidcgate token] {line}");
            }
            rest.push_str(&line);
            rest.push('\n');
        }
        rest
    });
    (found, rest)
}

/// Waits for the command to end: exit code and stdout.
async fn finish(child: Child) -> (Option<i32>, String) {
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("finished within 60 s")
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn client_credentials_for_the_api_resource_validate_and_are_cached() {
    let peer = start_oidc_provider(&[]).await;
    let issuer = peer.base_url.clone();
    let cache = temp("op-cc");
    let cc = |extra: &[&str]| {
        let mut args = vec![
            "client-credentials",
            "--resource",
            API_RESOURCE,
            "--scope",
            "api:read",
        ];
        args.extend_from_slice(&SERVICE);
        args.extend_from_slice(extra);
        token_cmd(&issuer, &cache, &args)
    };
    let (code, out, err) = run(cc(&[])).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.lines().count(), 1, "only the token on stdout: {out}");
    let token = out.trim().to_owned();

    let validator = AccessTokenValidator::builder()
        .issuer(IssuerPolicy::new(&issuer, API_AUDIENCE).require_at_jwt(true))
        .build()
        .unwrap();
    let claims = validator.validate(&token).await.unwrap();
    assert_eq!(claims.subject(), Some("demo-service"));
    assert_eq!(claims.string_claim("client_id"), Some("demo-service"));
    assert!(claims.has_scope("api:read"));

    // The cache serves the same unexpired token; --no-cache gets a new one.
    let (code, again, err) = run(cc(&[])).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(again.trim(), token);
    let (code, fresh, err) = run(cc(&["--no-cache", "--json"])).await;
    assert_eq!(code, Some(0), "{err}");
    let fresh: Value = serde_json::from_str(&fresh).unwrap();
    assert_eq!(fresh["token_type"], "Bearer");
    let fresh = fresh["access_token"].as_str().unwrap();
    assert_ne!(fresh, token);
    assert!(validator.validate(fresh).await.is_ok());

    // A resource the peer does not serve: its invalid_target error, exit 1.
    let mut args = vec![
        "client-credentials",
        "--resource",
        "urn:other-api",
        "--no-cache",
    ];
    args.extend_from_slice(&SERVICE);
    let (code, _, err) = run(token_cmd(&issuer, &cache, &args)).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("invalid_target"), "{err}");
}

#[tokio::test]
async fn device_flow_approved_on_the_peer_pages_while_polling() {
    let peer = start_oidc_provider(&[]).await;
    let issuer = peer.base_url.clone();
    let cache = temp("op-device");
    let mut child = token_cmd(
        &issuer,
        &cache,
        &["device", "--client-id", "demo-public", "--no-cache"],
    )
    .spawn()
    .unwrap();
    let (url, _) = after_marker(&mut child, "or open ").await;
    assert!(
        url.starts_with(&format!("{issuer}/device?user_code=")),
        "{url}"
    );
    let page = provider_device(
        &no_redirect_client(),
        &mut Jar::default(),
        &url,
        "alice",
        "wonderland",
        true,
    )
    .await;
    assert!(page.contains("Sign-in Success"), "{page}");
    let (code, out) = finish(child).await;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(out.lines().count(), 1, "only the token on stdout: {out}");
    // No resource was asked for: an opaque access token (not a JWT).
    let token = out.trim();
    assert!(!token.is_empty() && !token.contains('.'), "{token}");
}

#[tokio::test]
async fn device_flow_aborted_on_the_peer_pages_fails() {
    let peer = start_oidc_provider(&[]).await;
    let issuer = peer.base_url.clone();
    let cache = temp("op-device-abort");
    let mut child = token_cmd(
        &issuer,
        &cache,
        &["device", "--client-id", "demo-public", "--no-cache"],
    )
    .spawn()
    .unwrap();
    let (url, stderr) = after_marker(&mut child, "or open ").await;
    let page = provider_device(
        &no_redirect_client(),
        &mut Jar::default(),
        &url,
        "alice",
        "wonderland",
        false,
    )
    .await;
    assert!(
        page.contains("interrupted"),
        "the code input page again: {page}"
    );
    let (code, out) = finish(child).await;
    assert_eq!(code, Some(1), "denied: exit 1 ({out})");
    assert!(out.is_empty(), "no token on stdout: {out}");
    let stderr = stderr.await.unwrap();
    assert!(stderr.contains("denied"), "{stderr}");
}

#[tokio::test]
async fn loopback_login_then_refresh_with_rotation() {
    let peer = start_oidc_provider(&[]).await;
    let issuer = peer.base_url.clone();
    let cache = temp("op-login");
    let mut child = token_cmd(
        &issuer,
        &cache,
        &[
            "login",
            "--client-id",
            "demo-public",
            "--no-browser",
            "--json",
            "--no-cache",
        ],
    )
    .spawn()
    .unwrap();
    let (url, _) = after_marker(&mut child, "Open this URL to sign in: ").await;
    assert!(url.starts_with(&format!("{issuer}/auth?")), "{url}");
    assert!(url.contains("code_challenge_method=S256"), "{url}");

    let browser = no_redirect_client();
    let mut jar = Jar::default();
    let callback = provider_login(&browser, &mut jar, &url, "alice", "wonderland").await;
    let callback_url = url::Url::parse(&callback).unwrap();
    assert_eq!(callback_url.host_str(), Some("127.0.0.1"), "{callback}");
    assert_eq!(callback_url.path(), "/callback", "{callback}");
    assert!(callback.contains("code="), "{callback}");
    let page = browser
        .get(&callback)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Signed in"), "{page}");
    let (code, out) = finish(child).await;
    assert_eq!(code, Some(0), "{out}");
    let tokens: Value = serde_json::from_str(&out).unwrap();
    assert!(tokens["id_token"].is_string(), "{tokens}");
    let access = tokens["access_token"].as_str().unwrap();
    let refresh = tokens["refresh_token"].as_str().expect("a refresh token");

    let refresh_cmd = |token: &str| {
        token_cmd(
            &issuer,
            &cache,
            &[
                "refresh",
                "--client-id",
                "demo-public",
                "--json",
                "--refresh-token",
                token,
            ],
        )
    };
    let (code, out, err) = run(refresh_cmd(refresh)).await;
    assert_eq!(code, Some(0), "{err}");
    let refreshed: Value = serde_json::from_str(&out).unwrap();
    assert_ne!(refreshed["access_token"].as_str().unwrap(), access);
    assert!(refreshed["id_token"].is_string(), "{refreshed}");
    let rotated = refreshed["refresh_token"].as_str().expect("rotated");
    assert_ne!(rotated, refresh);

    // The rotated-out refresh token is refused by the peer.
    let (code, _, err) = run(refresh_cmd(refresh)).await;
    assert_eq!(code, Some(1));
    assert!(err.contains("invalid_grant"), "{err}");
}

#[tokio::test]
async fn revoke_then_introspect_an_opaque_token() {
    let peer = start_oidc_provider(&[]).await;
    let issuer = peer.base_url.clone();
    let cache = temp("op-revoke");
    // Without a resource indicator the peer issues an opaque access token, which its
    // introspection and revocation endpoints handle (its JWT access tokens they do not).
    let mut args = vec!["client-credentials", "--no-cache"];
    args.extend_from_slice(&SERVICE);
    let (code, out, err) = run(token_cmd(&issuer, &cache, &args)).await;
    assert_eq!(code, Some(0), "{err}");
    let token = out.trim().to_owned();
    assert!(!token.contains('.'), "opaque: {token}");

    let introspect = || {
        let mut args = vec!["introspect", "--token", token.as_str()];
        args.extend_from_slice(&SERVICE);
        token_cmd(&issuer, &cache, &args)
    };
    let (code, out, err) = run(introspect()).await;
    assert_eq!(code, Some(0), "{err}");
    let active: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(active["active"], true, "{active}");
    assert_eq!(active["client_id"], "demo-service", "{active}");

    let mut args = vec![
        "revoke",
        "--token",
        token.as_str(),
        "--token-type-hint",
        "access_token",
    ];
    args.extend_from_slice(&SERVICE);
    let (code, _, err) = run(token_cmd(&issuer, &cache, &args)).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("revoked"), "{err}");

    let (code, out, err) = run(introspect()).await;
    assert_eq!(code, Some(0), "{err}");
    let inactive: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(inactive["active"], false, "{inactive}");

    // Introspection needs the client's credentials: a wrong secret is invalid_client (exit 1).
    let (code, _, err) = run(token_cmd(
        &issuer,
        &cache,
        &[
            "introspect",
            "--token",
            token.as_str(),
            "--client-id",
            "demo-service",
            "--client-secret",
            "wrong",
        ],
    ))
    .await;
    assert_eq!(code, Some(1));
    assert!(err.contains("invalid_client"), "{err}");
}

#[tokio::test]
async fn client_credentials_with_a_private_key() {
    // The peer's `demo-jwt` client knows the public half of this key (private_key_jwt).
    let key =
        oidcgate_core::jose::sign::SigningKey::generate(oidcgate_core::jose::Algorithm::ES256)
            .unwrap();
    let jwks = serde_json::json!({"keys": [key.public_jwk().unwrap()]}).to_string();
    let peer = start_oidc_provider(&[("JWT_CLIENT_JWKS", jwks.as_str())]).await;
    let cache = temp("op-pkjwt");
    let file = cache.join("client.pem");
    std::fs::write(&file, key.to_pkcs8_pem().unwrap()).unwrap();
    let file = file.to_string_lossy().into_owned();
    let args = [
        "client-credentials",
        "--client-id",
        "demo-jwt",
        "--client-key",
        file.as_str(),
        "--json",
    ];
    let (code, out, err) = run(token_cmd(&peer.base_url, &cache, &args)).await;
    assert_eq!(code, Some(0), "{err}");
    let response: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(response["token_type"], "Bearer", "{out}");

    // A key file that is not a key: exit 2, naming the flag.
    let (code, _, err) = run(token_cmd(
        &peer.base_url,
        &cache,
        &[
            "client-credentials",
            "--client-id",
            "demo-jwt",
            "--client-key",
            "/dev/null",
        ],
    ))
    .await;
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--client-key"), "{err}");
}
