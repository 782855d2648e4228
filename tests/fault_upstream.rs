//! `oidcgate serve` when the protected application fails, over real sockets (issue 7, "Fault
//! tests"): an app that is not there yet (502, then recovery when it starts), an app slower than
//! `UPSTREAM_TIMEOUT` (504 without holding up other requests; the connection limit answers 503),
//! and an app that resets or cuts connections before or during its response (a clean 502, or a
//! body the client can tell is truncated). `tests/gateway.rs` already covers an app that goes
//! away after serving (a session request gets 502, counted as `upstream_error`).
//!
//! Requests are authenticated with bearer tokens from an in-process issuer.

mod support;

use support::faults;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use faults::{Proc, Settings, metric, poll};
use oidcgate_core::jose::Algorithm;
use oidcgate_core::jose::sign::SigningKey;
use reqwest::StatusCode;
use serde_json::Value;
use support::gateway::{client, free_addr};
use support::{TestIssuer, claims, mint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An issuer publishing one key, and a token it signed for the gateway's audience.
async fn issuer_and_token() -> (TestIssuer, String) {
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let issuer = TestIssuer::start(&[&key]).await;
    let token = mint(&key, &claims(&issuer.issuer, "demo-api", SystemTime::now()));
    (issuer, token)
}

/// A bearer-authenticated GET of `{base}{path}` (30 s client timeout): status, the gateway's
/// error marker, body, time taken.
async fn get(base: &str, path: &str, token: &str) -> (StatusCode, bool, String, Duration) {
    let started = Instant::now();
    let r = client()
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("the gateway answers");
    let status = r.status();
    let marked = r.headers().contains_key("x-oidcgate-upstream-error");
    let html = r
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap().starts_with("text/html"));
    let body = r.text().await.unwrap_or_default();
    assert!(
        !marked || html,
        "the gateway's own error pages are HTML: {body}"
    );
    (status, marked, body, started.elapsed())
}

async fn metrics(base: &str) -> String {
    client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// An app on `listener` answering every request with what it saw (path and identity).
fn serve_echo(listener: tokio::net::TcpListener) -> tokio::task::JoinHandle<()> {
    async fn echo(headers: axum::http::HeaderMap, uri: axum::http::Uri) -> axum::Json<Value> {
        let user = headers
            .get("x-auth-request-user")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        axum::Json(serde_json::json!({"path": uri.path(), "user": user}))
    }
    tokio::spawn(async move {
        let _ = axum::serve(listener, axum::Router::new().fallback(echo)).await;
    })
}

#[tokio::test]
async fn upstream_not_listening_gets_502_then_recovers_when_it_starts() {
    let (issuer, token) = issuer_and_token().await;
    let app_addr = free_addr();
    let mut gw = Settings::bearer(&issuer.issuer, &format!("http://{app_addr}"))
        .serve()
        .await;
    let base = gw.base_url.clone();

    let (status, marked, body, elapsed) = get(&base, "/api/items", &token).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(marked);
    assert!(body.contains("not answering"), "{body}");
    assert!(
        elapsed < Duration::from_secs(3),
        "refused at once: {elapsed:?}"
    );
    // A request with a body is refused as cleanly (the body is not waited for, nothing hangs).
    let r = client()
        .post(format!("{base}/api/upload"))
        .bearer_auth(&token)
        .body(vec![b'x'; 256 * 1024])
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    // Authentication still comes first: no token, 401 (the app is never asked).
    let r = client().get(format!("{base}/api")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // The app starts on its address: the next request goes through.
    let _app = serve_echo(tokio::net::TcpListener::bind(app_addr).await.unwrap());
    let seen = poll(Duration::from_secs(5), || async {
        let (status, _, body, _) = get(&base, "/api/items", &token).await;
        (status == StatusCode::OK).then_some(body)
    })
    .await
    .expect("proxied once the app is up");
    let seen: Value = serde_json::from_str(&seen).unwrap();
    assert_eq!(seen["path"], "/api/items");
    assert_eq!(seen["user"], "user-123");
    let text = metrics(&base).await;
    assert_eq!(
        metric(&text, "oidcgate_requests_total{outcome=\"upstream_error\"}"),
        Some(2.0),
        "{text}"
    );
    gw.assert_alive_without_panic();
}

/// An app whose `/slow` answers after 10 s and everything else at once; counts `/slow` calls.
async fn slow_app() -> (String, Arc<AtomicUsize>) {
    let slow_calls = Arc::new(AtomicUsize::new(0));
    let calls = slow_calls.clone();
    let app = axum::Router::new()
        .route(
            "/slow",
            axum::routing::get(move || {
                let calls = calls.clone();
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    "late"
                }
            }),
        )
        .fallback(|| async { "fast" });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, slow_calls)
}

#[tokio::test]
async fn slow_upstream_gets_504_after_upstream_timeout_without_blocking_others() {
    let (issuer, token) = issuer_and_token().await;
    let (app, slow_calls) = slow_app().await;
    let mut gw = Settings::bearer(&issuer.issuer, &app)
        .set("UPSTREAM_TIMEOUT", "1s")
        .serve()
        .await;
    let base = gw.base_url.clone();

    let slow = get(&base, "/slow", &token);
    let fast = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        get(&base, "/fast", &token).await
    };
    let ((status, marked, body, elapsed), fast) = tokio::join!(slow, fast);
    assert_eq!(slow_calls.load(Ordering::SeqCst), 1);
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert!(marked);
    assert!(body.contains("took too long"), "{body}");
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(4),
        "UPSTREAM_TIMEOUT=1s: {elapsed:?}"
    );
    assert_eq!(fast.0, StatusCode::OK, "{}", fast.2);
    assert_eq!(fast.2, "fast");
    assert!(
        fast.3 < Duration::from_millis(800),
        "not held up: {:?}",
        fast.3
    );
    // The gateway serves on.
    let (status, _, body, _) = get(&base, "/after", &token).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "fast"));
    let text = metrics(&base).await;
    assert_eq!(
        metric(&text, "oidcgate_requests_total{outcome=\"upstream_error\"}"),
        Some(1.0),
        "{text}"
    );
    gw.assert_alive_without_panic();
}

#[tokio::test]
async fn slow_upstream_filling_the_connection_limit_gets_503_not_a_pile_up() {
    let (issuer, token) = issuer_and_token().await;
    let (app, _) = slow_app().await;
    let mut gw = Settings::bearer(&issuer.issuer, &app)
        .set("UPSTREAM_TIMEOUT", "2s")
        .set("UPSTREAM_MAX_CONNECTIONS", "1")
        .serve()
        .await;
    let base = gw.base_url.clone();
    // A holds the only slot for 2 s; B (300 ms later) waits for it and gets it at 2 s; C
    // (600 ms later) waits until 2.6 s while B holds it: 503.
    let later = |delay: u64, path: &'static str| {
        let base = base.clone();
        let token = token.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            get(&base, path, &token).await
        }
    };
    let (a, b, c) = tokio::join!(later(0, "/slow"), later(300, "/slow"), later(600, "/fast"));
    assert_eq!(a.0, StatusCode::GATEWAY_TIMEOUT, "{}", a.2);
    for (name, answer) in [("B", &b), ("C", &c)] {
        assert!(
            [StatusCode::GATEWAY_TIMEOUT, StatusCode::SERVICE_UNAVAILABLE].contains(&answer.0),
            "{name}: {} {}",
            answer.0,
            answer.2
        );
        assert!(answer.3 < Duration::from_secs(6), "{name}: {:?}", answer.3);
    }
    let refused = [&b, &c]
        .into_iter()
        .find(|x| x.0 == StatusCode::SERVICE_UNAVAILABLE)
        .expect("a request beyond UPSTREAM_MAX_CONNECTIONS gets 503");
    assert!(refused.1, "the gateway's own page");
    assert!(
        refused.2.contains("limit of upstream connections"),
        "{}",
        refused.2
    );
    // Once the slow requests are gone, the slot is free again.
    let (status, _, body, _) = get(&base, "/fast", &token).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "fast"));
    gw.assert_alive_without_panic();
}

/// A raw HTTP/1.1 app misbehaving by path: it reads the request head, then
/// - `/close-before-head`: closes (FIN) without a byte,
/// - `/reset-before-head`: resets (RST),
/// - `/partial-head`: sends half a status line's headers, then resets,
/// - `/not-http`: answers something that is not HTTP, then closes,
/// - `/cut-length`: a 200 with `Content-Length: 100000` and 1000 bytes, then resets,
/// - `/cut-chunked`: a chunked 200 with one chunk and no last chunk, then resets,
/// - anything else: a proper `200 ok`.
async fn resetting_app() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(misbehave(stream));
        }
    });
    (url, accepted)
}

async fn misbehave(mut stream: tokio::net::TcpStream) {
    // Each connection serves requests until a fault ends it.
    loop {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte).await {
                Ok(1) => head.push(byte[0]),
                _ => return,
            }
            if head.len() > 64 * 1024 {
                return;
            }
        }
        let head = String::from_utf8_lossy(&head);
        let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
        let reset = |stream: tokio::net::TcpStream| {
            let _ = stream.set_zero_linger();
            drop(stream);
        };
        match path.as_str() {
            "/close-before-head" => return,
            "/reset-before-head" => return reset(stream),
            "/partial-head" => {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/pl")
                    .await;
                let _ = stream.flush().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                return reset(stream);
            }
            "/not-http" => {
                let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.6\r\n\r\n").await;
                return;
            }
            "/cut-length" => {
                let mut response =
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\n"
                        .to_vec();
                response.extend_from_slice(&[b'x'; 1000]);
                let _ = stream.write_all(&response).await;
                let _ = stream.flush().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                return reset(stream);
            }
            "/cut-chunked" => {
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n",
                    )
                    .await;
                let _ = stream.write_all(&[b'y'; 0x400]).await;
                let _ = stream.write_all(b"\r\n").await;
                let _ = stream.flush().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                return reset(stream);
            }
            _ => {
                if stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

/// A bearer GET whose body is read to the end: the status and the body, or the error that cut
/// the body off.
async fn get_whole(
    base: &str,
    path: &str,
    token: &str,
) -> (StatusCode, Result<Vec<u8>, reqwest::Error>, Duration) {
    let started = Instant::now();
    let r = client()
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .expect("the gateway answers with a status");
    let status = r.status();
    let body = r.bytes().await.map(|b| b.to_vec());
    (status, body, started.elapsed())
}

async fn assert_serves_on(gw: &mut Proc, token: &str, after: &str) {
    let (status, body, _) = get_whole(&gw.base_url, "/ok", token).await;
    assert_eq!(status, StatusCode::OK, "after {after}");
    assert_eq!(body.expect("whole body"), b"ok", "after {after}");
    gw.assert_alive_without_panic();
}

#[tokio::test]
async fn upstream_resetting_connections_gets_502_or_a_visibly_cut_body() {
    let (issuer, token) = issuer_and_token().await;
    let (app, accepted) = resetting_app().await;
    let mut gw = Settings::bearer(&issuer.issuer, &app).serve().await;
    let base = gw.base_url.clone();
    assert_serves_on(&mut gw, &token, "start").await;

    // Failures before a complete response head: the gateway's own 502.
    for path in [
        "/close-before-head",
        "/reset-before-head",
        "/partial-head",
        "/not-http",
    ] {
        let (status, marked, body, elapsed) = get(&base, path, &token).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{path}: {body}");
        assert!(marked, "{path}");
        assert!(body.contains("not answering"), "{path}: {body}");
        assert!(elapsed < Duration::from_secs(3), "{path}: {elapsed:?}");
        assert_serves_on(&mut gw, &token, path).await;
    }

    // Cut after the head: the status is already sent, so the client must be able to tell the
    // body is incomplete (an error reading it), never receive a short body that looks whole.
    for path in ["/cut-length", "/cut-chunked"] {
        let (status, body, elapsed) = get_whole(&base, path, &token).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(
            body.is_err(),
            "{path}: a truncated body must not look complete ({} bytes)",
            body.as_ref().map_or(0, Vec::len)
        );
        assert!(elapsed < Duration::from_secs(5), "{path}: {elapsed:?}");
        assert_serves_on(&mut gw, &token, path).await;
    }

    assert!(accepted.load(Ordering::SeqCst) >= 6);
    let text = metrics(&base).await;
    assert_eq!(
        metric(&text, "oidcgate_requests_total{outcome=\"upstream_error\"}"),
        Some(4.0),
        "{text}"
    );
    gw.assert_alive_without_panic();
}
