//! `oidcgate token` as a process against the built-in IdP: client credentials (the token
//! verifies), the device flow approved on the verification page while the command polls, the
//! loopback login, refresh, revoke then introspect, the token cache, and usage errors.

mod support;

use std::time::Duration;

use oidcgate_core::validate::{AccessTokenValidator, IssuerPolicy};
use serde_json::Value;
use support::browser::{Jar, decide_device, login};
use support::gateway::start_idp;
use support::token_cli::{run, temp, token_cmd};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test]
async fn client_credentials_cache_revoke_and_introspect() {
    let idp = start_idp().await;
    let issuer = &idp.base_url;
    let cache = temp("cc");
    let service = [
        "--client-id",
        "demo-service",
        "--client-secret",
        "demo-service-secret",
    ];
    let cc = |extra: &[&str]| {
        let mut args = vec!["client-credentials", "--scope", "read"];
        args.extend_from_slice(&service);
        args.extend_from_slice(extra);
        token_cmd(issuer, &cache, &args)
    };
    let (code, first, err) = run(cc(&[])).await;
    assert_eq!(code, Some(0), "{err}");
    let token = first.trim().to_owned();
    assert_eq!(first.lines().count(), 1, "only the token on stdout");
    let validator = AccessTokenValidator::builder()
        .issuer(IssuerPolicy::new(issuer, "demo-api"))
        .build()
        .unwrap();
    assert!(validator.validate(&token).await.unwrap().has_scope("read"));

    // The cache serves the same unexpired token; --no-cache gets a new one.
    let (_, second, _) = run(cc(&[])).await;
    assert_eq!(second.trim(), token);
    let (_, fresh, _) = run(cc(&["--no-cache"])).await;
    assert_ne!(fresh.trim(), token);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let dir = cache.join("oidcgate").join("tokens");
        let file = std::fs::read_dir(&dir)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        assert_eq!(
            std::fs::metadata(file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    let (code, json, _) = run(cc(&["--json", "--no-cache"])).await;
    assert_eq!(code, Some(0));
    let json: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["token_type"], "Bearer");

    // Revoke, then introspect as a confidential client: inactive.
    let demo = [
        "--client-id",
        "demo-service",
        "--client-secret",
        "demo-service-secret",
    ];
    let mut args = vec!["revoke", "--token", token.as_str()];
    args.extend_from_slice(&demo);
    assert_eq!(run(token_cmd(issuer, &cache, &args)).await.0, Some(0));
    let mut args = vec!["introspect", "--token", token.as_str()];
    args.extend_from_slice(&demo);
    let (code, out, err) = run(token_cmd(issuer, &cache, &args)).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["active"],
        false
    );

    // Wrong secret: a runtime failure (exit 1) with the provider's error.
    let (code, _, err) = run(token_cmd(
        issuer,
        &cache,
        &[
            "client-credentials",
            "--client-id",
            "demo-service",
            "--client-secret",
            "x",
            "--no-cache",
        ],
    ))
    .await;
    assert_eq!(code, Some(1));
    assert!(err.contains("invalid_client"), "{err}");
}

#[tokio::test]
async fn usage_errors_exit_2() {
    let cache = temp("usage");
    let mut cmd = token_cmd("http://127.0.0.1:1", &cache, &["client-credentials"]);
    cmd.env_remove("OIDC_ISSUER");
    let (code, _, err) = run(cmd).await;
    assert_eq!(code, Some(2));
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("--issuer"));
    let (code, _, err) = run(token_cmd(
        "http://idp.example.com",
        &cache,
        &["client-credentials", "--client-id", "x"],
    ))
    .await;
    assert_eq!(code, Some(2), "plain http to a non-loopback issuer: {err}");
    let (code, _, _) = run(token_cmd("http://127.0.0.1:1", &cache, &["no-such-grant"])).await;
    assert_eq!(code, Some(2));
}

/// Reads stderr lines until one contains `marker`; returns it (the rest keeps draining).
async fn stderr_line(child: &mut tokio::process::Child, marker: &str) -> String {
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains(marker) {
                return line;
            }
        }
        panic!("no line with {marker:?}");
    })
    .await
    .expect("stderr line in time");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    found
}

#[tokio::test]
async fn device_flow_approved_while_polling() {
    let idp = start_idp().await;
    let issuer = idp.base_url.clone();
    let cache = temp("device");
    let mut child = token_cmd(
        &issuer,
        &cache,
        &["device", "--client-id", "demo-public", "--no-cache"],
    )
    .spawn()
    .unwrap();
    let line = stderr_line(&mut child, "or open ").await;
    let url = line.trim().strip_prefix("or open ").unwrap().to_owned();
    let page = decide_device(
        &reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        &issuer,
        &url,
        false,
    )
    .await;
    assert!(page.contains("Device connected"));
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let token = String::from_utf8(out.stdout).unwrap();
    assert_eq!(token.trim().split('.').count(), 3, "a JWT on stdout");
}

#[tokio::test]
async fn loopback_login_then_refresh() {
    let idp = start_idp().await;
    let issuer = idp.base_url.clone();
    let cache = temp("login");
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
    let line = stderr_line(&mut child, "Open this URL to sign in: ").await;
    let url = line
        .split("Open this URL to sign in: ")
        .nth(1)
        .unwrap()
        .trim()
        .to_owned();
    assert!(url.contains("code_challenge_method=S256"));
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut jar = Jar::default();
    let (status, params, _) = login(&browser, &mut jar, &url, "alice", "wonderland").await;
    assert_eq!(status, 303);
    let redirect = url::Url::parse(&url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .unwrap()
        .1
        .into_owned();
    let mut callback = url::Url::parse(&redirect).unwrap();
    callback.query_pairs_mut().extend_pairs(params.iter());
    let page = browser
        .get(callback.as_str())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Signed in"));
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tokens: Value = serde_json::from_slice(&out.stdout).unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap();

    let (code, out, err) = run(token_cmd(
        &issuer,
        &cache,
        &[
            "refresh",
            "--client-id",
            "demo-public",
            "--refresh-token",
            refresh,
        ],
    ))
    .await;
    assert_eq!(code, Some(0), "{err}");
    assert_ne!(out.trim(), tokens["access_token"].as_str().unwrap());
    // The rotated refresh token cannot be used twice.
    let (code, _, err) = run(token_cmd(
        &issuer,
        &cache,
        &[
            "refresh",
            "--client-id",
            "demo-public",
            "--refresh-token",
            refresh,
        ],
    ))
    .await;
    assert_eq!(code, Some(1));
    assert!(err.contains("invalid_grant"), "{err}");
}
