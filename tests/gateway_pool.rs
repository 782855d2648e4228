//! The gateway's upstream connection pool (`crates/gateway/src/pool.rs`) and request framing,
//! over real sockets: connections are reused across requests and body kinds (length, chunked,
//! empty, HEAD); an app closing idle keep-alive connections (as uvicorn and gunicorn do after a
//! few seconds) or answering `Connection: close` is not seen as a 502 (a close racing a request
//! being written still is: a written request is never resent, which is checked too); a
//! response the client abandons halfway does not poison the next request; concurrent requests
//! open no more connections than they need; `CONNECT` is refused; a client's `Connection`
//! header cannot name away the gateway's headers; HTTP/1.1 without `Host` is refused, HTTP/1.0
//! goes upstream as HTTP/1.1 without the client's `X-Forwarded-Host`; an unasked 101 is a 502.

mod support;

use support::faults;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use axum::body::{Body, Bytes};
use faults::Settings;
use oidcgate_core::jose::Algorithm;
use oidcgate_core::jose::sign::SigningKey;
use reqwest::StatusCode;
use support::gateway::client;
use support::{TestIssuer, claims, mint};

/// How long the app keeps an idle connection open.
const APP_IDLE: Duration = Duration::from_millis(300);

/// An app on hyper that closes connections idle for `APP_IDLE`; counts accepted connections.
async fn counting_app() -> (String, Arc<AtomicUsize>) {
    let accepted = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(answer);
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(APP_IDLE)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, accepted)
}

async fn answer(
    request: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Body>, Infallible> {
    let response = match request.uri().path() {
        "/chunked" => {
            let chunks = ["one ", "two ", "three"].map(|c| Ok::<_, Infallible>(Bytes::from(c)));
            hyper::Response::new(Body::from_stream(futures_util::stream::iter(chunks)))
        }
        "/empty" => hyper::Response::builder()
            .status(204)
            .body(Body::empty())
            .unwrap(),
        "/close" => hyper::Response::builder()
            .header("connection", "close")
            .body(Body::from("closing"))
            .unwrap(),
        "/big" => hyper::Response::new(Body::from(vec![b'b'; 4 << 20])),
        // 256 MiB made as it is read: more than any socket buffer holds.
        "/huge" => {
            let chunk = Bytes::from(vec![b'h'; 64 << 10]);
            let chunks = std::iter::repeat_n(chunk, 4096).map(Ok::<_, Infallible>);
            hyper::Response::new(Body::from_stream(futures_util::stream::iter(chunks)))
        }
        "/echo" => {
            let headers: serde_json::Map<String, serde_json::Value> = request
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
                .collect();
            let seen = serde_json::json!({
                "version": format!("{:?}", request.version()),
                "headers": headers,
            });
            hyper::Response::new(Body::from(seen.to_string()))
        }
        _ => hyper::Response::new(Body::from("ok")),
    };
    Ok(response)
}

/// An issuer publishing one key, and a token it signed for the gateway's audience.
async fn issuer_and_token() -> (TestIssuer, String) {
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let issuer = TestIssuer::start(&[&key]).await;
    let token = mint(&key, &claims(&issuer.issuer, "demo-api", SystemTime::now()));
    (issuer, token)
}

async fn setup() -> (TestIssuer, String, faults::Proc, String, Arc<AtomicUsize>) {
    let (issuer, token) = issuer_and_token().await;
    let (app, accepted) = counting_app().await;
    let gw = Settings::bearer(&issuer.issuer, &app).serve().await;
    let base = gw.base_url.clone();
    (issuer, token, gw, base, accepted)
}

async fn get(http: &reqwest::Client, base: &str, path: &str, token: &str) -> (StatusCode, String) {
    let r = http
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("the gateway answers");
    let status = r.status();
    (status, r.text().await.unwrap_or_default())
}

#[tokio::test]
async fn upstream_connections_are_reused_across_body_kinds() {
    let (_issuer, token, mut gw, base, accepted) = setup().await;
    let http = client();
    for i in 0..200 {
        let (path, want) = match i % 4 {
            0 => ("/ok", "ok"),
            1 => ("/chunked", "one two three"),
            2 => ("/empty", ""),
            _ => ("/ok?x=1", "ok"),
        };
        let (status, body) = get(&http, &base, path, &token).await;
        assert!(status.is_success(), "request {i} {path}: {status} {body}");
        assert_eq!(body, want, "request {i} {path}");
    }
    let head = http
        .head(format!("{base}/ok"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(get(&http, &base, "/ok", &token).await.1, "ok");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "202 sequential requests of every kind share one upstream connection"
    );

    // Concurrent clients: no more connections than requests in flight.
    let before = accepted.load(Ordering::SeqCst);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (base, token) = (base.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let http = client();
            for _ in 0..25 {
                let (status, body) = get(&http, &base, "/ok", &token).await;
                assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let opened = accepted.load(Ordering::SeqCst) - before;
    assert!(
        opened <= 8,
        "8 concurrent clients opened {opened} more connections"
    );
    gw.assert_alive_without_panic();
}

#[tokio::test]
async fn an_app_closing_idle_connections_is_not_a_502() {
    let (_issuer, token, mut gw, base, accepted) = setup().await;
    let http = client();
    for round in 0..3 {
        for _ in 0..10 {
            let (status, body) = get(&http, &base, "/ok", &token).await;
            assert_eq!(
                (status, body.as_str()),
                (StatusCode::OK, "ok"),
                "round {round}"
            );
        }
        // The app closes the idle connection; the gateway notices and opens a new one.
        tokio::time::sleep(APP_IDLE * 3).await;
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        3,
        "one connection per round"
    );

    // `Connection: close` answers: each connection is used once, every request succeeds.
    for i in 0..20 {
        let (status, body) = get(&http, &base, "/close", &token).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "closing"), "{i}");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 3 + 20);
    gw.assert_alive_without_panic();
}

#[tokio::test]
async fn an_abandoned_response_does_not_poison_the_next_request() {
    let (_issuer, token, mut gw, base, accepted) = setup().await;
    let http = client();
    for _ in 0..3 {
        let r = http
            .get(format!("{base}/big"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        // Read a little of the 4 MiB and hang up.
        let mut r = r;
        let first = r.chunk().await.unwrap().expect("a first chunk");
        assert!(!first.is_empty());
        drop(r);
        let (status, body) = get(&client(), &base, "/ok", &token).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    }
    // Whole big answers still come through whole, and their connection is reused.
    let before = accepted.load(Ordering::SeqCst);
    for _ in 0..3 {
        let (status, body) = get(&http, &base, "/big", &token).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body.len(), 4 << 20);
    }
    assert!(accepted.load(Ordering::SeqCst) - before <= 1);
    gw.assert_alive_without_panic();
}

#[tokio::test]
async fn connect_is_refused_not_tunnelled() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (_issuer, token, mut gw, base, accepted) = setup().await;
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer))
        .await
        .expect("an answer")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "the app was never asked"
    );
    gw.assert_alive_without_panic();
}

/// One raw HTTP/1.x exchange with the gateway: the request as written, the whole answer.
async fn raw(base: &str, request: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    if String::from_utf8_lossy(&answer).contains("\r\n\r\n")
                        && answer.ends_with(b"}")
                        || answer.starts_with(b"HTTP/1.1 4")
                    {
                        break;
                    }
                }
            }
        }
    })
    .await
    .expect("an answer within 10 s");
    String::from_utf8_lossy(&answer).into_owned()
}

/// The JSON body of a raw answer.
fn json_body(answer: &str) -> serde_json::Value {
    let body = answer.split_once("\r\n\r\n").expect("a head and a body").1;
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"))
}

#[tokio::test]
async fn a_clients_connection_header_cannot_remove_what_the_gateway_sets() {
    let (_issuer, token, mut gw, base, _accepted) = setup().await;
    // `Connection` names headers to drop at the next hop: the client's own, never the Host,
    // identity and forwarding headers the gateway adds.
    let answer = raw(
        &base,
        &format!(
            "GET /echo HTTP/1.1\r\nHost: gw.example\r\nAuthorization: Bearer {token}\r\n\
             Connection: host, x-forwarded-for, x-auth-request-user, x-forwarded-proto, x-drop\r\n\
             X-Drop: 1\r\nX-Keep: 1\r\nX-Original-URL: /admin\r\nForwarded: for=203.0.113.9\r\n\
             X-Real-IP: 203.0.113.9\r\n\r\n"
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = json_body(&answer);
    let h = &seen["headers"];
    assert!(
        h["host"]
            .as_str()
            .is_some_and(|v| v.starts_with("127.0.0.1:")),
        "{seen}"
    );
    assert_eq!(h["x-auth-request-user"], "user-123", "{seen}");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1", "{seen}");
    // COOKIE_SECURE is on (the default), so the gateway says https.
    assert_eq!(h["x-forwarded-proto"], "https", "{seen}");
    assert!(
        h.get("x-drop").is_none() && h.get("connection").is_none(),
        "{seen}"
    );
    assert_eq!(h["x-keep"], "1", "{seen}");
    // Forwarding and routing headers the gateway does not set never come from the client.
    for name in ["x-original-url", "forwarded", "x-real-ip"] {
        assert!(h.get(name).is_none(), "{name}: {seen}");
    }
    assert_eq!(seen["version"], "HTTP/1.1");
    gw.assert_alive_without_panic();
}

#[tokio::test]
async fn host_rules_http10_and_forwarded_host() {
    let (_issuer, token, mut gw, base, accepted) = setup().await;
    // HTTP/1.1 without Host: 400 (RFC 9112 §3.2), the app is not asked.
    let answer = raw(
        &base,
        &format!("GET /echo HTTP/1.1\r\nAuthorization: Bearer {token}\r\n\r\n"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
    // The asterisk form is for OPTIONS only.
    let answer = raw(
        &base,
        &format!("GET * HTTP/1.1\r\nHost: gw.example\r\nAuthorization: Bearer {token}\r\n\r\n"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
    // HTTP/1.0 may omit Host; its X-Forwarded-Host is the client's word and is dropped, and the
    // request goes upstream as HTTP/1.1 on a pooled connection.
    let answer = raw(
        &base,
        &format!(
            "GET /echo HTTP/1.0\r\nAuthorization: Bearer {token}\r\nX-Forwarded-Host: evil.example\r\n\r\n"
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    let seen = json_body(&answer);
    assert!(seen["headers"].get("x-forwarded-host").is_none(), "{seen}");
    assert_eq!(seen["version"], "HTTP/1.1", "{seen}");
    gw.assert_alive_without_panic();
}

/// An app speaking raw HTTP that, by path, reads the request and hangs up without answering
/// (`/swallow`), or switches protocols unasked (`/switch`); counts requests per path.
async fn rude_app() -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !String::from_utf8_lossy(&head).contains("\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let line = head.lines().next().unwrap_or_default().to_owned();
                log.lock().unwrap().push(line.clone());
                if line.contains("/switch") {
                    let _ = stream
                        .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: evil\r\nConnection: upgrade\r\n\r\nraw bytes")
                        .await;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                // /swallow (and anything else): hang up without an answer.
            });
        }
    });
    (url, seen)
}

#[tokio::test]
async fn a_written_request_is_never_sent_twice_and_unasked_switches_are_refused() {
    let (issuer, token) = issuer_and_token().await;
    let (app, seen) = rude_app().await;
    let mut gw = Settings::bearer(&issuer.issuer, &app).serve().await;
    let base = gw.base_url.clone();
    let http = client();
    let r = http
        .post(format!("{base}/swallow"))
        .bearer_auth(&token)
        .body("pay once")
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    let (status, _) = get(&http, &base, "/swallow-get", &token).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    let lines = seen.lock().unwrap().clone();
    assert_eq!(
        lines,
        ["POST /swallow HTTP/1.1", "GET /swallow-get HTTP/1.1"],
        "each request reached the app exactly once"
    );
    // A 101 the client did not ask for cannot be passed on: 502.
    let (status, body) = get(&http, &base, "/switch", &token).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    gw.assert_alive_without_panic();
}

#[tokio::test]
async fn a_client_that_stops_reading_does_not_hold_a_connection_slot() {
    let (issuer, token) = issuer_and_token().await;
    let (app, _accepted) = counting_app().await;
    let mut gw = Settings::bearer(&issuer.issuer, &app)
        .set("UPSTREAM_MAX_CONNECTIONS", "1")
        .set("UPSTREAM_TIMEOUT", "1s")
        .serve()
        .await;
    let base = gw.base_url.clone();
    let http = client();
    // A 256 MiB answer read only in part (a client that stopped reading) ...
    let mut big = http
        .get(format!("{base}/huge"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), StatusCode::OK);
    assert!(
        !big.chunk()
            .await
            .unwrap()
            .expect("a first chunk")
            .is_empty()
    );
    // ... does not keep the only slot: UPSTREAM_MAX_CONNECTIONS bounds requests waiting for
    // their response headers, so others go on (on a second upstream connection).
    let (status, body) = get(&client(), &base, "/ok", &token).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    drop(big);
    gw.assert_alive_without_panic();
}
