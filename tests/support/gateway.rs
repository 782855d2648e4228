//! Pieces shared by the tests that run `oidcgate serve` and `oidcgate idp` as processes: a free
//! loopback address, the built-in IdP, a gateway in front of an upstream, an HTTP client that
//! does not follow redirects, and a client-credentials token from the IdP's demo service client.

use std::net::SocketAddr;

use serde_json::Value;

use super::{Running, start_server};

/// The `oidcgate` binary of this build.
pub const BIN: &str = env!("CARGO_BIN_EXE_oidcgate");

/// A loopback address that was free a moment ago (for servers that need it before they start).
///
/// Taken below the kernel's ephemeral port range: a port the kernel hands out for `:0` could
/// be given to an outgoing connection or another `:0` listener between this check and the
/// server's own bind (a test failed that way with "Address already in use"). Each process
/// walks its own stretch of the range and never hands out a port twice.
pub fn free_addr() -> SocketAddr {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    const LOW: u32 = 10_000;
    if ephemeral_start > LOW + 1_000 {
        let span = ephemeral_start - LOW;
        let start = std::process::id().wrapping_mul(7919) % span;
        for _ in 0..span {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let port = LOW + (start + n) % span;
            if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port as u16)) {
                return listener.local_addr().unwrap();
            }
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// The built-in development IdP on a free port.
pub async fn start_idp() -> Running {
    start_server(
        std::path::Path::new(BIN),
        &["idp", "--listen", "127.0.0.1:0"],
        &[],
    )
    .await
}

/// The session secret of the test gateways.
pub const SECRET: &str = "a-gateway-session-secret-of-32-bytes-or-more";

/// `oidcgate serve` on a free port in front of `upstream`, as the IdP's `demo` client with the
/// redirect URI on its own address and plain-http cookies; `extra` settings are added, and
/// replace a default of the same name.
pub async fn start_gateway(issuer: &str, upstream: &str, extra: &[(&str, &str)]) -> Running {
    let addr = free_addr();
    let listen = addr.to_string();
    let redirect = format!("http://{addr}/auth/callback");
    let mut envs = vec![
        ("OIDC_ISSUER", issuer),
        ("OIDC_CLIENT_ID", "demo"),
        ("OIDC_CLIENT_SECRET", "demo-secret"),
        ("OIDC_REDIRECT_URI", redirect.as_str()),
        ("SESSION_SECRET", SECRET),
        ("COOKIE_SECURE", "false"),
        ("UPSTREAM_URL", upstream),
        ("LISTEN_ADDR", listen.as_str()),
    ];
    for (name, value) in extra {
        envs.retain(|(n, _)| n != name);
        envs.push((name, value));
    }
    start_server(std::path::Path::new(BIN), &["serve"], &envs).await
}

/// A client that shows redirects instead of following them.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// An access token for `demo-service` (client credentials, scope `read`).
pub async fn service_token(issuer: &str) -> String {
    let r: Value = client()
        .post(format!("{issuer}/token"))
        .basic_auth("demo-service", Some("demo-service-secret"))
        .form(&[("grant_type", "client_credentials"), ("scope", "read")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["access_token"].as_str().unwrap().to_owned()
}

/// An upstream app that answers every request with what it saw: `{"path", "query", "headers"}`.
pub async fn echo_upstream() -> (String, tokio::task::JoinHandle<()>) {
    async fn echo(headers: axum::http::HeaderMap, uri: axum::http::Uri) -> axum::Json<Value> {
        let mut h = serde_json::Map::new();
        for (k, v) in &headers {
            h.insert(
                k.as_str().to_owned(),
                serde_json::json!(v.to_str().unwrap_or("")),
            );
        }
        axum::Json(serde_json::json!({"path": uri.path(), "query": uri.query(), "headers": h}))
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, axum::Router::new().fallback(echo))
            .await
            .unwrap();
    });
    (url, task)
}
