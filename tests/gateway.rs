//! `oidcgate serve` end to end over real sockets: the built-in IdP, a test upstream that echoes
//! what it received, and the gateway between them — browser login with a cookie jar, identity
//! headers upstream, spoofed identity headers stripped, the gateway's cookies kept from the
//! app, bearer tokens, forward-auth, userinfo, group rules, health, upstream down, bad settings.

mod support;

use axum::http::HeaderMap;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::browser::{Jar, app_sign_in};
use support::gateway::{
    SECRET, client, echo_upstream, free_addr, service_token, start_gateway, start_idp,
};
use support::{Running, start_server};

const BIN: &str = env!("CARGO_BIN_EXE_oidcgate");

async fn gateway(issuer: &str, upstream: &str, extra: &[(&str, &str)]) -> Running {
    let mut settings = vec![("OIDC_AUDIENCE", "demo-api")];
    settings.extend_from_slice(extra);
    start_gateway(issuer, upstream, &settings).await
}

#[tokio::test]
async fn login_identity_headers_and_spoofing() {
    let idp = start_server(
        std::path::Path::new(BIN),
        &["idp", "--listen", "127.0.0.1:0"],
        &[],
    )
    .await;
    let (upstream, _task) = echo_upstream().await;
    let gw = gateway(&idp.base_url, &upstream, &[]).await;
    let base = &gw.base_url;
    let http = client();

    // Unauthenticated: browsers to the login, API clients 401 with a Bearer challenge.
    let r = http
        .get(format!("{base}/app/page?x=1"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(r.headers()["location"], "/login?rd=%2Fapp%2Fpage%3Fx%3D1");
    let r = http.get(format!("{base}/api")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"oidcgate\"");

    let mut jar = Jar::default();
    assert_eq!(
        app_sign_in(&http, &mut jar, base, "/app/page").await,
        "/app/page"
    );
    let seen: Value = http
        .get(format!("{base}/app/page?q=2"))
        .header("cookie", format!("{}; app_cookie=keep", jar.header()))
        .header("x-auth-request-user", "evil")
        .header("X_Auth_Request_Email", "evil@example.com")
        .header("x-forwarded-access-token", "forged")
        .header("authorization", "Bearer forged")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let h = &seen["headers"];
    assert_eq!(seen["path"], "/app/page");
    assert_eq!(seen["query"], "q=2");
    assert_eq!(h["x-auth-request-user"], "alice");
    assert_eq!(h["x-auth-request-email"], "alice@example.com");
    assert_eq!(h["x-auth-request-groups"], "admins,users");
    assert!(
        h.get("x_auth_request_email").is_none(),
        "underscore variant stripped: {h}"
    );
    assert!(h.get("x-forwarded-access-token").is_none());
    assert!(
        h.get("authorization").is_none(),
        "an unvalidated Authorization header never goes upstream: {h}"
    );
    let cookie = h["cookie"].as_str().unwrap_or_default();
    assert!(
        cookie.contains("app_cookie=keep") && !cookie.contains("oidcgate_session"),
        "{cookie}"
    );
    assert!(h["x-forwarded-for"].as_str().unwrap().contains("127.0.0.1"));

    // Forward auth and userinfo with the session.
    let r = http
        .get(format!("{base}/auth/verify"))
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(r.headers()["x-auth-request-user"], "alice");
    let r = http
        .get(format!("{base}/auth/verify"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Traefik/Caddy style: the browser gets the answer, so it is a login redirect keeping the
    // original URL named by X-Forwarded-Uri; without Accept: text/html it stays 401.
    let r = http
        .get(format!("{base}/auth/verify"))
        .header("accept", "text/html")
        .header("x-forwarded-uri", "/app?a=1&b=2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(r.headers()["location"], "/login?rd=%2Fapp%3Fa%3D1%26b%3D2");
    let r = http
        .get(format!("{base}/auth/verify"))
        .header("x-forwarded-uri", "/app")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A 202 always carries all four identity headers, empty when unknown, so a proxy copying
    // them replaces a client's forged value (a service token has no email or groups).
    let token = service_token(&idp.base_url).await;
    let r = http
        .get(format!("{base}/auth/verify"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(r.headers()["x-auth-request-user"], "demo-service");
    assert_eq!(r.headers()["x-auth-request-groups"], "");
    assert_eq!(r.headers()["x-auth-request-email"], "");
    // A forged identity header spelled with underscores is not replaced by the front proxy's
    // copy of the answer (Traefik, Caddy) and CGI-style apps read it as the dashed one: such a
    // request is refused outright.
    for forged in [
        "X_Auth_Request_User",
        "x-auth_request-groups",
        "X_FORWARDED_ACCESS_TOKEN",
    ] {
        let r = http
            .get(format!("{base}/auth/verify"))
            .bearer_auth(&token)
            .header(forged, "mallory")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{forged}");
    }
    let me: Value = http
        .get(format!("{base}/auth/userinfo"))
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["sub"], "alice");
    assert_eq!(me["groups"], json!(["admins", "users"]));

    // Bearer tokens: accepted, identity from the token, the token itself not forwarded.
    let token = service_token(&idp.base_url).await;
    let seen: Value = http
        .get(format!("{base}/api"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["headers"]["x-auth-request-user"], "demo-service");
    assert!(seen["headers"].get("authorization").is_none());
    let r = http
        .get(format!("{base}/api"))
        .bearer_auth("not.a.jwt")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );

    // Health.
    assert_eq!(
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(ready.json::<Value>().await.unwrap()["ready"], true);

    // Metrics count what happened above.
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "oidcgate_requests_total{outcome=\"proxied\"}",
        "oidcgate_requests_total{outcome=\"unauthenticated\"}",
        "oidcgate_requests_total{outcome=\"refused\"}",
        "oidcgate_proxied_request_duration_seconds_count",
        "oidcgate_jwks_fetches",
    ] {
        assert!(metrics.contains(needle), "{needle} in\n{metrics}");
    }
}

#[tokio::test]
async fn group_rules_and_upstream_down() {
    let idp = start_server(
        std::path::Path::new(BIN),
        &["idp", "--listen", "127.0.0.1:0"],
        &[],
    )
    .await;
    let (upstream, task) = echo_upstream().await;
    let gw = gateway(&idp.base_url, &upstream, &[("ALLOWED_GROUPS", "admins")]).await;
    let base = &gw.base_url;
    let http = client();
    // alice is an admin: allowed. The service token has no groups: 403.
    let mut jar = Jar::default();
    app_sign_in(&http, &mut jar, base, "/").await;
    assert_eq!(
        http.get(format!("{base}/x"))
            .header("cookie", jar.header())
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let token = service_token(&idp.base_url).await;
    let r = http
        .get(format!("{base}/x"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // The upstream goes away: a clear 502, not a hang.
    task.abort();
    let _ = task.await;
    let r = http
        .get(format!("{base}/x"))
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("oidcgate_requests_total{outcome=\"upstream_error\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("oidcgate_requests_total{outcome=\"forbidden\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn bad_settings_exit_2_naming_the_setting() {
    let login = |extra: &[(&'static str, &str)]| {
        let mut envs: Vec<(&str, String)> = [
            ("OIDC_ISSUER", "http://127.0.0.1:1"),
            ("UPSTREAM_URL", "http://127.0.0.1:2"),
            ("OIDC_CLIENT_ID", "x"),
            ("OIDC_REDIRECT_URI", "http://127.0.0.1:3/cb"),
            ("SESSION_SECRET", SECRET),
        ]
        .map(|(k, v)| (k, v.to_owned()))
        .to_vec();
        for (k, v) in extra {
            envs.retain(|(name, _)| name != k);
            envs.push((k, (*v).to_owned()));
        }
        envs
    };
    let dir = std::env::temp_dir().join(format!("oidcgate-key-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("client.pem");
    let signing =
        oidcgate_core::jose::sign::SigningKey::generate(oidcgate_core::jose::Algorithm::ES256)
            .unwrap();
    std::fs::write(&key, signing.to_pkcs8_pem().unwrap()).unwrap();
    let key = key.to_string_lossy().into_owned();
    let junk = dir.join("junk.pem");
    std::fs::write(
        &junk,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let junk = junk.to_string_lossy().into_owned();
    // A JWK that is a shared secret, not a private key.
    let jwk_oct = dir.join("oct.json");
    std::fs::write(&jwk_oct, r#"{"kty":"oct","k":"c2VjcmV0"}"#).unwrap();
    let jwk_oct = jwk_oct.to_string_lossy().into_owned();
    let plain = |envs: &[(&'static str, &'static str)]| {
        envs.iter()
            .map(|(k, v)| (*k, (*v).to_owned()))
            .collect::<Vec<_>>()
    };
    for (envs, setting) in [
        (plain(&[]), "OIDC_ISSUER"),
        (
            plain(&[("OIDC_ISSUER", "http://127.0.0.1:1")]),
            "UPSTREAM_URL",
        ),
        (login(&[("SESSION_SECRET", "short")]), "SESSION_SECRET"),
        (
            login(&[("OIDC_REDIRECT_URI", "http://app.example.com/cb")]),
            "COOKIE_SECURE",
        ),
        (
            login(&[
                ("OIDC_TOKEN_ENDPOINT_AUTH_METHOD", "private_key_jwt"),
                ("OIDC_CLIENT_PRIVATE_KEY_FILE", key.as_str()),
                ("OIDC_CLIENT_SECRET", "s"),
            ]),
            "OIDC_CLIENT_SECRET",
        ),
        (
            login(&[("OIDC_OP_TOKEN_ENDPOINT", "http://127.0.0.1:1/token")]),
            "OIDC_OP_JWKS_ENDPOINT",
        ),
        (
            login(&[("OIDC_OP_JWKS_ENDPOINT", "not a url")]),
            "OIDC_OP_JWKS_ENDPOINT",
        ),
        (
            login(&[("OIDC_OP_JWKS_ENDPOINT", "http://127.0.0.1:1/jwks")]),
            "OIDC_OP_AUTHORIZATION_ENDPOINT",
        ),
        (
            login(&[("OIDC_OP_JWKS_ENDPOINT", "http://idp.example.com/jwks")]),
            "OIDC_OP_JWKS_ENDPOINT",
        ),
        (login(&[("MAX_PENDING_LOGINS", "0")]), "MAX_PENDING_LOGINS"),
        (
            login(&[("OIDC_TOKEN_ENDPOINT_AUTH_METHOD", "tls_client_auth")]),
            "OIDC_TOKEN_ENDPOINT_AUTH_METHOD",
        ),
        (
            // client_secret_jwt signs with the secret: 32 bytes at least.
            login(&[
                ("OIDC_TOKEN_ENDPOINT_AUTH_METHOD", "client_secret_jwt"),
                ("OIDC_CLIENT_SECRET", "short"),
            ]),
            "OIDC_CLIENT_SECRET",
        ),
        (
            login(&[("OIDC_TOKEN_ENDPOINT_AUTH_METHOD", "client_secret_post")]),
            "OIDC_CLIENT_SECRET",
        ),
        (
            login(&[("OIDC_TOKEN_ENDPOINT_AUTH_METHOD", "private_key_jwt")]),
            "OIDC_CLIENT_PRIVATE_KEY_FILE",
        ),
        (
            login(&[("OIDC_CLIENT_PRIVATE_KEY_FILE", "/nonexistent/key.pem")]),
            "OIDC_CLIENT_PRIVATE_KEY_FILE",
        ),
        (
            login(&[("OIDC_CLIENT_PRIVATE_KEY_FILE", junk.as_str())]),
            "OIDC_CLIENT_PRIVATE_KEY_FILE",
        ),
        (
            login(&[("OIDC_CLIENT_PRIVATE_KEY_FILE", "/dev/zero")]),
            "OIDC_CLIENT_PRIVATE_KEY_FILE",
        ),
        (
            login(&[("OIDC_CLIENT_PRIVATE_KEY_FILE", jwk_oct.as_str())]),
            "OIDC_CLIENT_PRIVATE_KEY_FILE",
        ),
        (
            login(&[
                ("OIDC_TOKEN_ENDPOINT_AUTH_METHOD", "client_secret_basic"),
                ("OIDC_CLIENT_PRIVATE_KEY_FILE", key.as_str()),
            ]),
            "OIDC_CLIENT_PRIVATE_KEY_FILE",
        ),
        (
            login(&[
                ("OIDC_CLIENT_PRIVATE_KEY_FILE", key.as_str()),
                ("OIDC_CLIENT_SECRET", "s"),
            ]),
            "OIDC_TOKEN_ENDPOINT_AUTH_METHOD",
        ),
    ] {
        let out = tokio::process::Command::new(BIN)
            .arg("serve")
            .env_clear()
            .envs(envs)
            .current_dir(std::env::temp_dir())
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{setting}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(setting) && err.trim().lines().count() == 1,
            "{setting}: {err}"
        );
    }
}

/// Sends a request line exactly as written (clients normalize `..` away) and returns the status.
async fn raw_status(base: &str, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response);
    text.split(' ').nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn skip_auth_routes_match_the_normalized_path() {
    let idp = start_server(
        std::path::Path::new(BIN),
        &["idp", "--listen", "127.0.0.1:0"],
        &[],
    )
    .await;
    let (upstream, _task) = echo_upstream().await;
    let gw = gateway(
        &idp.base_url,
        &upstream,
        &[("SKIP_AUTH_ROUTES", "GET=^/public/.*, /health")],
    )
    .await;
    let base = &gw.base_url;
    let http = client();
    let seen: Value = http
        .get(format!("{base}/public/app.css?v=1"))
        .header("x-auth-request-user", "evil")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["path"], "/public/app.css");
    assert!(
        seen["headers"].get("x-auth-request-user").is_none(),
        "no identity on public routes, spoofed or not"
    );
    assert_eq!(
        http.post(format!("{base}/public/x"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED,
        "GET only"
    );
    assert_eq!(
        http.get(format!("{base}/health"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        http.get(format!("{base}/healthcheck"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED,
        "anchored"
    );
    // Dot segments, plain or percent-encoded, are resolved before matching.
    assert_eq!(raw_status(base, "/public/../admin").await, 401);
    assert_eq!(raw_status(base, "/public/%2e%2e/admin").await, 401);
    assert_eq!(raw_status(base, "/public/./ok").await, 200);
    // The query is never matched.
    assert_eq!(
        http.get(format!("{base}/admin?x=/public/y"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn websocket_through_the_gateway() {
    use axum::extract::ws::{Message, WebSocketUpgrade};
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    // An upstream that echoes WebSocket text frames and reports the identity it saw.
    let app = axum::Router::new().route(
        "/ws",
        axum::routing::get(|ws: WebSocketUpgrade, headers: HeaderMap| async move {
            let user = headers
                .get("x-auth-request-user")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            ws.on_upgrade(move |mut socket| async move {
                let _ = socket
                    .send(Message::Text(format!("hello {user}").into()))
                    .await;
                while let Some(Ok(Message::Text(t))) = socket.recv().await {
                    let _ = socket.send(Message::Text(format!("echo {t}").into())).await;
                }
            })
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let idp = start_server(
        std::path::Path::new(BIN),
        &["idp", "--listen", "127.0.0.1:0"],
        &[],
    )
    .await;
    let gw = gateway(&idp.base_url, &upstream, &[]).await;
    let token = service_token(&idp.base_url).await;

    let url = gw.base_url.replace("http://", "ws://") + "/ws";
    let mut request = url.as_str().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut socket, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("upgrade through the gateway");
    assert_eq!(response.status(), 101);
    let first = socket.next().await.unwrap().unwrap();
    assert_eq!(first.into_text().unwrap().as_str(), "hello demo-service");
    socket
        .send(tokio_tungstenite::tungstenite::Message::Text("ping".into()))
        .await
        .unwrap();
    let echoed = socket.next().await.unwrap().unwrap();
    assert_eq!(echoed.into_text().unwrap().as_str(), "echo ping");
    // Without credentials the upgrade is refused before reaching the app.
    let anonymous = tokio_tungstenite::connect_async(url.as_str()).await;
    assert!(anonymous.is_err());
}

#[tokio::test]
async fn request_limits() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let idp = start_server(
        std::path::Path::new(BIN),
        &["idp", "--listen", "127.0.0.1:0"],
        &[],
    )
    .await;
    let (upstream, _task) = echo_upstream().await;
    let gw = gateway(
        &idp.base_url,
        &upstream,
        &[
            ("MAX_HEADER_BYTES", "8192"),
            ("HEADER_READ_TIMEOUT", "1s"),
            ("MAX_BODY_BYTES", "1000"),
            ("SKIP_AUTH_ROUTES", "/open"),
        ],
    )
    .await;
    let base = &gw.base_url;
    let http = client();
    // A request head over MAX_HEADER_BYTES: 431.
    let r = http
        .get(format!("{base}/open"))
        .header("x-big", "a".repeat(10_000))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    // A body over MAX_BODY_BYTES: 413 before anything reaches the app.
    let r = http
        .post(format!("{base}/open"))
        .body(vec![b'x'; 2000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let r = http
        .post(format!("{base}/open"))
        .body(vec![b'x'; 500])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Slowloris: headers that never finish are cut off after HEADER_READ_TIMEOUT.
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /open HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut buf),
    )
    .await;
    assert!(read.is_ok(), "the gateway closed the slow connection");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// The IdP is down when the gateway starts: it serves anyway, says it is not ready, answers
/// the login routes with 503 (browsers are not sent into a dead end silently), and becomes
/// ready by itself once the IdP answers — sign-in then works.
#[tokio::test]
async fn login_waits_for_an_idp_that_is_down_at_start() {
    let idp_addr = free_addr();
    let issuer = format!("http://{idp_addr}");
    let (upstream, _task) = echo_upstream().await;
    let gw = gateway(&issuer, &upstream, &[]).await;
    let base = &gw.base_url;
    let http = client();
    let r = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let checks: Value = r.json().await.unwrap();
    assert_eq!(checks["checks"]["login_keys"], false, "{checks}");
    let r = http
        .get(format!("{base}/login?rd=/app"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key("retry-after"));
    assert!(r.text().await.unwrap().contains("identity provider"));
    // Unauthenticated browsers still go to the login (which explains the outage).
    let r = http
        .get(format!("{base}/app"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);

    let listen = idp_addr.to_string();
    let _idp = start_server(
        std::path::Path::new(BIN),
        &["idp", "--listen", listen.as_str()],
        &[],
    )
    .await;
    let mut ready = false;
    for _ in 0..100 {
        let r = http.get(format!("{base}/readyz")).send().await.unwrap();
        if r.status() == StatusCode::OK {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ready, "the gateway became ready once the IdP answered");
    let mut jar = Jar::default();
    assert_eq!(app_sign_in(&http, &mut jar, base, "/app").await, "/app");
}

/// The IdP goes down after the gateway has discovered it: sessions and cached keys go on, and
/// a new sign-in gets a clear 503 page instead of a redirect to a dead host.
#[tokio::test]
async fn login_while_the_idp_is_down_is_a_clear_503() {
    let idp = start_idp().await;
    let (upstream, _task) = echo_upstream().await;
    let gw = gateway(&idp.base_url, &upstream, &[]).await;
    let base = &gw.base_url;
    let http = client();
    let mut jar = Jar::default();
    assert_eq!(app_sign_in(&http, &mut jar, base, "/app").await, "/app");
    drop(idp);
    // The last check that the IdP answered is trusted for 5 s.
    tokio::time::sleep(std::time::Duration::from_millis(5_500)).await;
    let r = http
        .get(format!("{base}/login?rd=/app"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key("retry-after"));
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("identity provider cannot be reached")
    );
    // The existing session goes on.
    let r = http
        .get(format!("{base}/app"))
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}
