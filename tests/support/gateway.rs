//! Pieces shared by the tests that run `oidcgate serve` and `oidcgate idp` as processes: a free
//! loopback address, the built-in IdP, an HTTP client that does not follow redirects, and a
//! client-credentials token from the IdP's demo service client.

use std::net::SocketAddr;

use serde_json::Value;

use super::{Running, start_server};

/// The `oidcgate` binary of this build.
pub const BIN: &str = env!("CARGO_BIN_EXE_oidcgate");

/// A loopback address that was free a moment ago (for servers that need it before they start).
pub fn free_addr() -> SocketAddr {
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
