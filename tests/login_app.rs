//! The `login_app` example (relying-party login with encrypted cookie sessions) against the
//! built-in IdP, as separate processes over real sockets: login required, the full sign-in,
//! the session, hostile cookies, single-use pending logins, the `rd` open-redirect defence and
//! logout.

mod support;

use std::collections::HashMap;

use reqwest::StatusCode;
use reqwest::header::LOCATION;
use serde_json::Value;
use support::browser::{Jar, app_sign_in, login};
use support::{Running, example_path, start_server};

const SECRET: &str = "a-session-secret-of-at-least-32-bytes-long";

struct Setup {
    _idp: Running,
    _app: Running,
    app: String,
}

async fn setup() -> Setup {
    setup_with(|_| None).await
}

/// Starts the IdP (with the TOML `idp_config(app_port)` returns, if any) and the app.
async fn setup_with(idp_config: impl Fn(u16) -> Option<String>) -> Setup {
    setup_full(idp_config, &[]).await
}

/// Like [`setup_with`], with `extra` settings for the app.
async fn setup_full(idp_config: impl Fn(u16) -> Option<String>, extra: &[(&str, &str)]) -> Setup {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut args = vec!["idp".to_owned(), "--listen".into(), "127.0.0.1:0".into()];
    if let Some(toml) = idp_config(port) {
        let path = std::env::temp_dir().join(format!("oidcgate-login-app-{port}.toml"));
        std::fs::write(&path, toml).unwrap();
        args.extend(["--config".into(), path.display().to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let idp = start_server(
        std::path::Path::new(env!("CARGO_BIN_EXE_oidcgate")),
        &args,
        &[],
    )
    .await;
    let listen = format!("127.0.0.1:{port}");
    let redirect = format!("http://127.0.0.1:{port}/auth/callback");
    let mut envs = vec![
        ("OIDC_ISSUER", idp.base_url.as_str()),
        ("OIDC_CLIENT_ID", "demo"),
        ("OIDC_CLIENT_SECRET", "demo-secret"),
        ("OIDC_REDIRECT_URI", redirect.as_str()),
        ("SESSION_SECRET", SECRET),
        ("COOKIE_SECURE", "false"),
        ("LISTEN_ADDR", listen.as_str()),
    ];
    envs.extend_from_slice(extra);
    let app = start_server(&example_path("login_app"), &[], &envs).await;
    let base = app.base_url.clone();
    Setup {
        _idp: idp,
        _app: app,
        app: base,
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn location(r: &reqwest::Response) -> String {
    r.headers()[LOCATION].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn sign_in_session_and_logout() {
    let s = setup().await;
    let http = client();

    // Login required: browsers are redirected, API clients get 401.
    let r = http
        .get(format!("{}/profile", s.app))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(location(&r), "/login?rd=%2Fprofile");
    let r = http.get(format!("{}/api/me", s.app)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "unauthorized");

    // Seed 002's Topaz identity_provider: no identity before sign-in, subject = sub after.
    let who: Value = http
        .get(format!("{}/identity", s.app))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(who, serde_json::json!({"type": "IDENTITY_TYPE_NONE"}));

    let mut jar = Jar::default();
    let landed = app_sign_in(&http, &mut jar, &s.app, "/profile").await;
    assert_eq!(landed, "/profile");
    let who: Value = http
        .get(format!("{}/identity", s.app))
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        who,
        serde_json::json!({"type": "IDENTITY_TYPE_SUB", "value": "alice"})
    );
    assert!(jar.0.keys().any(|k| k == "oidcgate_session"));
    let cookie = jar.header();
    let me: Value = http
        .get(format!("{}/api/me", s.app))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["sub"], "alice");
    assert_eq!(me["email"], "alice@example.com");
    assert_eq!(me["groups"], serde_json::json!(["admins", "users"]));

    // The pending login was single-use: replaying the callback is refused (400, no redirect).
    let replay = jar.0["last_callback"].clone();
    let r = http
        .get(&replay)
        .header("cookie", &cookie)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("Sign-in error"));

    // A tampered session cookie is no session.
    let session = jar.0["oidcgate_session"].clone();
    let mut forged = session.clone().into_bytes();
    let i = forged.len() - 5;
    forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let r = http
        .get(format!("{}/api/me", s.app))
        .header("cookie", format!("oidcgate_session={forged}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // A sign-out another site starts (a link, an image, a form) is not carried out: browsers
    // get a page whose button posts it from this site, other clients 403; the session stays.
    for (method, site, origin, html) in [
        ("GET", Some("cross-site"), None, true),
        ("GET", Some("same-site"), None, true),
        (
            "POST",
            Some("cross-site"),
            Some("https://evil.example"),
            false,
        ),
        ("POST", None, Some("https://evil.example"), false),
    ] {
        let mut request = http
            .request(method.parse().unwrap(), format!("{}/logout", s.app))
            .header("cookie", &cookie)
            .header(
                "accept",
                if html {
                    "text/html"
                } else {
                    "application/json"
                },
            );
        if let Some(site) = site {
            request = request.header("sec-fetch-site", site);
        }
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        let r = request.send().await.unwrap();
        let what = format!("{method} {site:?} {origin:?}");
        assert!(
            r.headers().get("set-cookie").is_none(),
            "{what}: no cookie cleared: {:?}",
            r.headers()
        );
        if html {
            assert_eq!(r.status(), StatusCode::OK, "{what}");
            let page = r.text().await.unwrap();
            assert!(
                page.contains("<form method=\"post\" action=\"/logout\">"),
                "{what}: {page}"
            );
        } else {
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{what}");
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(body["error"], "cross_site_logout", "{what}");
        }
        let me = http
            .get(format!("{}/api/me", s.app))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(me.status(), StatusCode::OK, "{what}: still signed in");
    }

    // Logout from the app itself (a browser says same-origin): cookies cleared, the
    // provider's end-session with the ID token, and the old cookie no longer works (the
    // session id is revoked).
    let r = http
        .get(format!("{}/logout", s.app))
        .header("cookie", &cookie)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let end = location(&r);
    assert!(
        end.contains("/logout?") && end.contains("id_token_hint="),
        "{end}"
    );
    let cleared: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert!(
        cleared
            .iter()
            .any(|c| c.starts_with("oidcgate_session=;") && c.contains("Max-Age=0")),
        "{cleared:?}"
    );
    let r = http
        .get(format!("{}/api/me", s.app))
        .header("cookie", format!("oidcgate_session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sign_out_from_this_site_is_carried_out() {
    let s = setup().await;
    let http = client();
    // A typed or bookmarked address (`Sec-Fetch-Site: none`), a POST from the app's own page
    // that names its origin without `Sec-Fetch-Site` (an older browser), and a POST saying
    // same-origin: each signs out.
    let origin = s.app.trim_end_matches('/').to_owned();
    for (method, site, origin) in [
        ("GET", Some("none"), None),
        ("POST", None, Some(origin.as_str())),
        ("POST", Some("same-origin"), Some(origin.as_str())),
    ] {
        let mut jar = Jar::default();
        app_sign_in(&http, &mut jar, &s.app, "/profile").await;
        let cookie = jar.header();
        let mut request = http
            .request(method.parse().unwrap(), format!("{}/logout", s.app))
            .header("cookie", &cookie)
            .header("accept", "text/html");
        if let Some(site) = site {
            request = request.header("sec-fetch-site", site);
        }
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        let r = request.send().await.unwrap();
        let what = format!("{method} {site:?} {origin:?}");
        assert_eq!(r.status(), StatusCode::FOUND, "{what}");
        let me = http
            .get(format!("{}/api/me", s.app))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(me.status(), StatusCode::UNAUTHORIZED, "{what}: signed out");
    }
    // The confirmation page cannot be framed by another site.
    let r = http
        .get(format!("{}/logout", s.app))
        .header("accept", "text/html")
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert_eq!(
        r.headers()["content-security-policy"],
        "frame-ancestors 'none'"
    );
}

#[tokio::test]
async fn return_paths_and_callback_errors() {
    let s = setup().await;
    let http = client();
    let mut jar = Jar::default();
    // An absolute or scheme-relative rd is replaced by "/".
    assert_eq!(
        app_sign_in(&http, &mut jar, &s.app, "//evil.example/x").await,
        "/"
    );
    assert_eq!(
        app_sign_in(&http, &mut jar, &s.app, "https://evil.example/").await,
        "/"
    );
    assert_eq!(
        app_sign_in(&http, &mut jar, &s.app, "/%2F%2Fevil.example").await,
        "/"
    );
    assert_eq!(
        app_sign_in(&http, &mut jar, &s.app, "/profile?tab=1").await,
        "/profile?tab=1"
    );

    // A callback without a pending login, or carrying an IdP error, is a 400 page, escaped.
    let r = http
        .get(format!(
            "{}/auth/callback?error=access_denied&error_description=%3Cscript%3E&state=x",
            s.app
        ))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(!r.text().await.unwrap().contains("<script>"));
    let r = http
        .get(format!("{}/auth/callback?code=abc", s.app))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");

    // Two tabs can sign in at once: each pending login has its own cookie.
    let mut jar = Jar::default();
    let a = http
        .get(format!("{}/login?rd=/a", s.app))
        .send()
        .await
        .unwrap();
    let b = http
        .get(format!("{}/login?rd=/b", s.app))
        .send()
        .await
        .unwrap();
    jar.absorb(a.headers());
    jar.absorb(b.headers());
    let pending: HashMap<&String, &String> = jar
        .0
        .iter()
        .filter(|(k, _)| k.starts_with("oidcgate_login."))
        .collect();
    assert_eq!(pending.len(), 2);
}

#[tokio::test]
async fn missing_settings_exit_2() {
    let out = tokio::process::Command::new(example_path("login_app"))
        .env_clear()
        .env("OIDC_ISSUER", "http://127.0.0.1:1")
        .current_dir(std::env::temp_dir())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("OIDC_CLIENT_ID"));
    let short = tokio::process::Command::new(example_path("login_app"))
        .env_clear()
        .envs([
            ("OIDC_ISSUER", "http://127.0.0.1:1"),
            ("OIDC_CLIENT_ID", "x"),
            ("OIDC_REDIRECT_URI", "http://127.0.0.1:1/cb"),
            ("SESSION_SECRET", "too-short"),
        ])
        .current_dir(std::env::temp_dir())
        .output()
        .await
        .unwrap();
    assert_eq!(short.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&short.stderr).contains("SESSION_SECRET"));
}

#[tokio::test]
async fn back_channel_logout_ends_the_app_session() {
    back_channel_logout(&[]).await;
}

#[tokio::test]
async fn back_channel_logout_ends_a_redis_session() {
    let port = support::gateway::free_addr().port();
    let dir = support::redis::TempDir::new(port);
    let redis = support::redis::Redis::start(port, dir.path(), false);
    let url = format!("redis://127.0.0.1:{port}/0");
    back_channel_logout(&[("SESSION_STORE", "redis"), ("REDIS_URL", url.as_str())]).await;
    let keys = redis.cli(&["--scan", "--pattern", "oidcgate:session:*"]);
    assert_eq!(keys.trim(), "", "the session was deleted from Redis");
}

/// Signs alice in, then signs her out at the IdP, whose back-channel logout must end the app's
/// session (app settings `extra`).
async fn back_channel_logout(extra: &[(&str, &str)]) {
    let s = setup_full(
        |port| {
            Some(format!(
                r#"
[[users]]
username = "alice"
password = "wonderland"
email = "alice@example.com"

[[clients]]
client_id = "demo"
client_secret = "demo-secret"
redirect_uris = ["http://127.0.0.1:4180/auth/callback"]
backchannel_logout_uri = "http://127.0.0.1:{port}/auth/backchannel-logout"
"#
            ))
        },
        extra,
    )
    .await;
    let http = client();
    let mut jar = Jar::default();
    app_sign_in(&http, &mut jar, &s.app, "/").await;
    let me = http
        .get(format!("{}/api/me", s.app))
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);

    // Garbage logout tokens are refused with 400.
    let r = http
        .post(format!("{}/auth/backchannel-logout", s.app))
        .form(&[("logout_token", "a.b.c")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // The user signs out at the IdP (confirming on its page); the IdP tells the app.
    let authorize_base = jar.0["last_callback"].clone();
    let issuer = url::Url::parse(&authorize_base)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "iss")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let page = http
        .get(format!("{issuer}/logout"))
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    jar.absorb(page.headers());
    let html = page.text().await.unwrap();
    let form = [
        ("csrf", support::browser::field(&html, "csrf")),
        ("confirm", "1".into()),
    ];
    let r = http
        .post(format!("{issuer}/logout"))
        .header("cookie", jar.header())
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let mut status = StatusCode::OK;
    for _ in 0..50 {
        status = http
            .get(format!("{}/api/me", s.app))
            .header("cookie", jar.header())
            .send()
            .await
            .unwrap()
            .status();
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the app session ended by back-channel logout"
    );
}

/// `response_mode=form_post` with secure cookies, the layer in process (the library API).
#[tokio::test]
async fn form_post_callback_with_secure_cookies() {
    use std::sync::Arc;

    use axum::routing::get;
    use oidcgate_axum::login::{LoginConfig, OidcLoginLayer, SessionUser};
    use oidcgate_core::client::{ClientConfig, OidcClient};
    use oidcgate_core::http::ReqwestClient;
    use oidcgate_core::session::SessionKeys;

    let idp = start_server(
        std::path::Path::new(env!("CARGO_BIN_EXE_oidcgate")),
        &["idp", "--listen", "127.0.0.1:0"],
        &[],
    )
    .await;
    let http_client = Arc::new(ReqwestClient::new(Default::default()).unwrap());
    let oidc = Arc::new(
        OidcClient::discover(
            ClientConfig::confidential(&idp.base_url, "demo", "demo-secret"),
            http_client,
        )
        .await
        .unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app_url = format!("http://{}", listener.local_addr().unwrap());
    let keys = Arc::new(SessionKeys::new(SECRET.as_bytes(), &[]).unwrap());
    let mut config = LoginConfig::new(oidc, format!("{app_url}/auth/callback"), keys);
    config.form_post = true; // cookie_secure stays true: __Host- cookies, SameSite=None login cookie
    let app = axum::Router::new()
        .route("/me", get(|u: SessionUser| async move { u.sub.clone() }))
        .layer(OidcLoginLayer::new(config));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let http = client();
    let mut jar = Jar::default();
    let start = http
        .get(format!("{app_url}/login?rd=/me"))
        .send()
        .await
        .unwrap();
    let set_cookie = start.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set_cookie.contains("SameSite=None") && set_cookie.contains("Secure"),
        "{set_cookie}"
    );
    jar.absorb(start.headers());
    let authorize = location(&start);
    assert!(authorize.contains("response_mode=form_post"));
    // The IdP answers with an auto-submitting form instead of a redirect.
    let (status, _, page) = login(&http, &mut jar, &authorize, "alice", "wonderland").await;
    assert_eq!(status, StatusCode::OK);
    let form: Vec<(String, String)> = ["code", "state", "iss"]
        .iter()
        .map(|f| ((*f).to_owned(), support::browser::field(&page, f)))
        .collect();
    let done = http
        .post(format!("{app_url}/auth/callback"))
        .header("cookie", jar.header())
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(
        done.status(),
        StatusCode::FOUND,
        "{}",
        done.text().await.unwrap_or_default()
    );
    assert_eq!(location(&done), "/me");
    jar.absorb(done.headers());
    assert!(jar.0.contains_key("__Host-oidcgate_session"));
    let me = http
        .get(format!("{app_url}/me"))
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    assert_eq!(me.text().await.unwrap(), "alice");
}

#[tokio::test]
async fn redis_sessions_in_the_example() {
    let port = support::gateway::free_addr().port();
    let dir = support::redis::TempDir::new(port);
    let redis = support::redis::Redis::start(port, dir.path(), false);
    let url = format!("redis://127.0.0.1:{port}/0");
    let s = setup_full(
        |_| None,
        &[("SESSION_STORE", "redis"), ("REDIS_URL", url.as_str())],
    )
    .await;
    let http = client();
    let mut jar = Jar::default();
    assert_eq!(
        app_sign_in(&http, &mut jar, &s.app, "/profile").await,
        "/profile"
    );
    let ticket = &jar.0["oidcgate_session"];
    assert!(ticket.len() < 200, "the cookie holds a ticket: {ticket}");
    let keys = redis.cli(&["--scan", "--pattern", "oidcgate:session:*"]);
    assert_eq!(keys.lines().count(), 1, "{keys}");
    let me: Value = http
        .get(format!("{}/api/me", s.app))
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["sub"], "alice");
}
