//! Bodies stream through `oidcgate serve`, never buffered: 100 MiB uploads (with a
//! `Content-Length` and chunked) and a 100 MiB download, bearer-authenticated, against an
//! upstream that counts what it receives and produces its answer chunk by chunk. The byte
//! counts must match and the gateway process's peak resident set (`VmHWM`) must stay far below
//! the body size.

mod support;

use std::path::Path;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::http::HeaderMap;
use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::gateway::{client, service_token, start_gateway};
use support::{Running, start_server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_oidcgate");
const CHUNK: usize = 64 * 1024;
const CHUNKS: usize = 1600;
/// 100 MiB.
const TOTAL: u64 = (CHUNK * CHUNKS) as u64;
/// The gateway's peak resident set must stay under this.
const MAX_PEAK_RSS_KIB: u64 = 50 * 1024;
static PATTERN: [u8; CHUNK] = [b'x'; CHUNK];

/// An upstream that counts uploaded bytes as they arrive (`POST /upload` answers
/// `{"bytes": n, "user": …}`) and streams `TOTAL` bytes for `GET /download`.
async fn streaming_upstream() -> String {
    async fn upload(headers: HeaderMap, body: Body) -> axum::Json<Value> {
        let mut stream = body.into_data_stream();
        let mut bytes = 0u64;
        while let Some(chunk) = stream.next().await {
            bytes += chunk.expect("upload body").len() as u64;
        }
        let user = headers
            .get("x-auth-request-user")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        axum::Json(json!({"bytes": bytes, "user": user}))
    }
    async fn download() -> Body {
        let chunks = futures_util::stream::iter(0..CHUNKS)
            .map(|_| Ok::<_, std::io::Error>(Bytes::from_static(&PATTERN)));
        Body::from_stream(chunks)
    }
    let app = axum::Router::new()
        .route("/upload", axum::routing::post(upload))
        .route("/download", axum::routing::get(download));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

async fn gateway(issuer: &str, upstream: &str) -> Running {
    start_gateway(issuer, upstream, &[("OIDC_AUDIENCE", "demo-api")]).await
}

/// A `/proc/<pid>/status` field in KiB (`VmHWM`: peak resident set; `VmRSS`: current).
fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn mib(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / seconds
}

/// Uploads `TOTAL` bytes written chunk by chunk over a plain socket (so the client never holds
/// the body either), with a `Content-Length` or `Transfer-Encoding: chunked`; returns the status
/// and the response body.
async fn upload(base: &str, token: &str, chunked: bool) -> (u16, String) {
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_owned()
    } else {
        format!("Content-Length: {TOTAL}")
    };
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/octet-stream\r\n{framing}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for _ in 0..CHUNKS {
        if chunked {
            stream
                .write_all(format!("{CHUNK:x}\r\n").as_bytes())
                .await
                .unwrap();
        }
        stream
            .write_all(&PATTERN)
            .await
            .expect("the gateway kept reading the upload");
        if chunked {
            stream.write_all(b"\r\n").await.unwrap();
        }
    }
    if chunked {
        stream.write_all(b"0\r\n\r\n").await.unwrap();
    }
    stream.flush().await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Uploads with the given framing; checks the upstream counted every byte; returns the seconds.
async fn checked_upload(base: &str, token: &str, chunked: bool) -> f64 {
    let started = Instant::now();
    let (status, body) = upload(base, token, chunked).await;
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(status, 200, "{body}");
    let start = body.find('{').expect("a JSON answer");
    let end = body.rfind('}').expect("a JSON answer") + 1;
    let seen: Value = serde_json::from_str(&body[start..end]).unwrap();
    assert_eq!(
        seen["bytes"], TOTAL,
        "bytes the upstream received (chunked: {chunked})"
    );
    assert_eq!(seen["user"], "demo-service");
    secs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_mib_up_and_down_without_buffering() {
    let idp = start_server(Path::new(BIN), &["idp", "--listen", "127.0.0.1:0"], &[]).await;
    let upstream = streaming_upstream().await;
    let gw = gateway(&idp.base_url, &upstream).await;
    let pid = gw.child.id().expect("gateway pid");
    let base = &gw.base_url;
    let token = service_token(&idp.base_url).await;
    let http = client();

    // Warm up (keys fetched, token validated and cached, upstream pool) before the baseline.
    let r = http
        .get(format!("{base}/upload"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    let baseline = proc_status_kib(pid, "VmHWM");

    // Uploads: with a Content-Length, then chunked.
    let up_secs = checked_upload(base, &token, false).await;
    let up_chunked_secs = checked_upload(base, &token, true).await;
    let after_upload = proc_status_kib(pid, "VmHWM");

    // Download.
    let started = Instant::now();
    let mut r = http
        .get(format!("{base}/download"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let mut received = 0u64;
    while let Some(chunk) = r.chunk().await.unwrap() {
        assert!(chunk.iter().all(|&b| b == b'x'), "body content intact");
        received += chunk.len() as u64;
    }
    let down_secs = started.elapsed().as_secs_f64();
    assert_eq!(received, TOTAL, "bytes the client received");

    let peak = proc_status_kib(pid, "VmHWM");
    let now = proc_status_kib(pid, "VmRSS");
    println!(
        "gateway VmHWM: {baseline} KiB before, {after_upload} KiB after the upload, {peak} KiB \
         after the download (VmRSS now {now} KiB); upload {up_secs:.2} s ({:.0} MiB/s), \
         chunked upload {up_chunked_secs:.2} s ({:.0} MiB/s), download {down_secs:.2} s \
         ({:.0} MiB/s)",
        mib(TOTAL, up_secs),
        mib(TOTAL, up_chunked_secs),
        mib(TOTAL, down_secs),
    );
    assert!(
        peak < MAX_PEAK_RSS_KIB,
        "gateway peak RSS {peak} KiB ≥ {MAX_PEAK_RSS_KIB} KiB: a body was buffered"
    );
}
