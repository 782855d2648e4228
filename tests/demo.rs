//! `oidcgate demo` as a process: the IdP, the sample app and the gateway start together on
//! `--port-base N`; signing in through the gateway shows alice's identity on the sample app.

mod support;

use reqwest::StatusCode;
use serde_json::Value;
use support::browser::{Jar, app_sign_in};
use support::start_server;

/// A base port with the next two ports free too.
fn free_base() -> u16 {
    for _ in 0..50 {
        let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = first.local_addr().unwrap().port();
        if base > u16::MAX - 3 {
            continue;
        }
        drop(first);
        if (0..3).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no three consecutive free ports");
}

#[tokio::test]
async fn demo_signs_alice_in_and_shows_her_identity() {
    let base = free_base();
    let demo = start_server(
        std::path::Path::new(env!("CARGO_BIN_EXE_oidcgate")),
        &["demo", "--port-base", &base.to_string()],
        &[],
    )
    .await;
    assert_eq!(demo.base_url, format!("http://127.0.0.1:{base}"));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut jar = Jar::default();
    assert_eq!(app_sign_in(&http, &mut jar, &demo.base_url, "/").await, "/");
    let page = http
        .get(format!("{}/", demo.base_url))
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Hello, alice!")
            && html.contains("alice@example.com")
            && html.contains("admins,users"),
        "{html}"
    );
    let me: Value = http
        .get(format!("{}/api/whoami", demo.base_url))
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["x-auth-request-user"], "alice");
    // The API accepts the IdP's access tokens for demo-api too (OIDC_AUDIENCE is set).
    let token: Value = http
        .post(format!("http://127.0.0.1:{}/token", base + 2))
        .basic_auth("demo-service", Some("demo-service-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let me: Value = http
        .get(format!("{}/api/whoami", demo.base_url))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["x-auth-request-user"], "demo-service");
    // Logout leads to the IdP's end-session with the ID token.
    let r = http
        .get(format!("{}/logout", demo.base_url))
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with(&format!("http://127.0.0.1:{}/logout?", base + 2))
    );
}
