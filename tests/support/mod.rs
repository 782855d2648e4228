//! Shared test support: a real discovery + JWKS server on 127.0.0.1 whose behaviour tests can
//! change (rotate keys, go down, serve junk), token minting with freshly generated keys, and a
//! runner for the example and the `oidcgate` binary.

#![allow(dead_code)]

pub mod browser;
pub mod faults;
pub mod gateway;
pub mod hostile_op;
pub mod oidc_provider;
pub mod peers;
pub mod redis;
pub mod token_cli;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use oidcgate_core::jose::sign::SigningKey;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// What the test issuer serves.
#[derive(Default)]
struct Behaviour {
    jwks: Value,
    raw_jwks: Option<Vec<u8>>,
    cache_control: Option<String>,
    issuer_override: Option<String>,
}

struct IssuerState {
    issuer: String,
    behaviour: Mutex<Behaviour>,
    /// Non-zero: every response is this status (the IdP is "down").
    down_status: AtomicU16,
    /// Delay JWKS responses (slow IdP).
    slow: AtomicBool,
    discovery_hits: AtomicUsize,
    jwks_hits: AtomicUsize,
}

/// A discovery + JWKS server on a free loopback port.
pub struct TestIssuer {
    pub issuer: String,
    pub addr: SocketAddr,
    state: Arc<IssuerState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn discovery(State(state): State<Arc<IssuerState>>) -> Response {
    state.discovery_hits.fetch_add(1, Ordering::SeqCst);
    let down = state.down_status.load(Ordering::SeqCst);
    if down != 0 {
        return StatusCode::from_u16(down)
            .unwrap_or(StatusCode::BAD_GATEWAY)
            .into_response();
    }
    let issuer = state
        .behaviour
        .lock()
        .unwrap()
        .issuer_override
        .clone()
        .unwrap_or_else(|| state.issuer.clone());
    axum::Json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{}/jwks", state.issuer),
        "authorization_endpoint": format!("{}/authorize", state.issuer),
        "token_endpoint": format!("{}/token", state.issuer),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
    }))
    .into_response()
}

async fn jwks(State(state): State<Arc<IssuerState>>) -> Response {
    state.jwks_hits.fetch_add(1, Ordering::SeqCst);
    if state.slow.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let down = state.down_status.load(Ordering::SeqCst);
    if down != 0 {
        return StatusCode::from_u16(down)
            .unwrap_or(StatusCode::BAD_GATEWAY)
            .into_response();
    }
    let behaviour = state.behaviour.lock().unwrap();
    let body = match &behaviour.raw_jwks {
        Some(raw) => raw.clone(),
        None => behaviour.jwks.to_string().into_bytes(),
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(cc) = &behaviour.cache_control {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_str(cc).unwrap());
    }
    (headers, body).into_response()
}

impl TestIssuer {
    /// Starts an issuer publishing `keys`.
    pub async fn start(keys: &[&SigningKey]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let issuer = format!("http://{addr}");
        let state = Arc::new(IssuerState {
            issuer: issuer.clone(),
            behaviour: Mutex::new(Behaviour::default()),
            down_status: AtomicU16::new(0),
            slow: AtomicBool::new(false),
            discovery_hits: AtomicUsize::new(0),
            jwks_hits: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let this = Self {
            issuer,
            addr,
            state,
            task,
        };
        this.set_keys(keys);
        this
    }

    /// Publishes exactly these keys.
    pub fn set_keys(&self, keys: &[&SigningKey]) {
        let jwks = json!({"keys": keys.iter().filter_map(|k| k.public_jwk()).collect::<Vec<_>>()});
        self.set_jwks(jwks);
    }

    /// Publishes this JWKS document.
    pub fn set_jwks(&self, jwks: Value) {
        let mut b = self.state.behaviour.lock().unwrap();
        b.jwks = jwks;
        b.raw_jwks = None;
    }

    /// Serves these bytes as the JWKS.
    pub fn set_raw_jwks(&self, raw: Vec<u8>) {
        self.state.behaviour.lock().unwrap().raw_jwks = Some(raw);
    }

    /// Sets the JWKS `Cache-Control` header.
    pub fn set_cache_control(&self, value: Option<&str>) {
        self.state.behaviour.lock().unwrap().cache_control = value.map(str::to_owned);
    }

    /// Makes discovery claim another issuer.
    pub fn set_discovery_issuer(&self, issuer: &str) {
        self.state.behaviour.lock().unwrap().issuer_override = Some(issuer.to_owned());
    }

    /// `Some(status)`: every response fails with it; `None`: back up.
    pub fn set_down(&self, status: Option<u16>) {
        self.state
            .down_status
            .store(status.unwrap_or(0), Ordering::SeqCst);
    }

    /// Delays JWKS responses by 300 ms.
    pub fn set_slow(&self, slow: bool) {
        self.state.slow.store(slow, Ordering::SeqCst);
    }

    pub fn jwks_hits(&self) -> usize {
        self.state.jwks_hits.load(Ordering::SeqCst)
    }

    pub fn discovery_hits(&self) -> usize {
        self.state.discovery_hits.load(Ordering::SeqCst)
    }
}

/// Seconds since the epoch of `t`.
pub fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Typical access-token claims, valid for 5 minutes from `now`.
pub fn claims(issuer: &str, audience: &str, now: SystemTime) -> Value {
    let now = unix(now);
    json!({
        "iss": issuer,
        "aud": audience,
        "sub": "user-123",
        "email": "alice@example.com",
        "name": "Alice",
        "scope": "openid profile email",
        "iat": now,
        "exp": now + 300,
        "jti": format!("{now}-{}", rand_u64()),
    })
}

fn rand_u64() -> u64 {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    COUNTER.fetch_add(1, Ordering::SeqCst) as u64
}

/// Signs `claims` with `key` (typ `at+jwt`).
pub fn mint(key: &SigningKey, claims: &Value) -> String {
    key.sign_jwt(Some("at+jwt"), claims).unwrap()
}

/// A running example or binary, killed on drop.
pub struct Running {
    pub child: Child,
    pub base_url: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// The path of a built example: examples sit in `target/<profile>/examples`, beside the `deps`
/// folder that holds this test binary.
pub fn example_path(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    profile_dir.join("examples").join(name)
}

/// Starts a program that prints `listening on http://ADDR` and waits for that line.
pub async fn start_server(
    program: &std::path::Path,
    args: &[&str],
    envs: &[(&str, &str)],
) -> Running {
    start_server_reading(program, args, envs, 0).await.0
}

/// Like [`start_server`], and also returns the `extra` stdout lines after the listening line.
pub async fn start_server_reading(
    program: &std::path::Path,
    args: &[&str],
    envs: &[(&str, &str)],
    extra: usize,
) -> (Running, Vec<String>) {
    try_start_server_reading(program, args, envs, extra, Duration::from_secs(60))
        .await
        .expect("server did not start within 60 s")
}

/// Like [`start_server_reading`], but `None` (the child killed) when no listening line came
/// within `wait`.
pub async fn try_start_server_reading(
    program: &std::path::Path,
    args: &[&str],
    envs: &[(&str, &str)],
    extra: usize,
    wait: Duration,
) -> Option<(Running, Vec<String>)> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let Ok(line) = tokio::time::timeout(wait, lines.next_line()).await else {
        let _ = child.start_kill();
        return None;
    };
    let line = line.unwrap().expect("server exited before listening");
    let base_url = line
        .strip_prefix("listening on ")
        .expect("listening line")
        .trim()
        .to_owned();
    let mut more = Vec::with_capacity(extra);
    for _ in 0..extra {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await;
        more.push(line.expect("more output").unwrap().expect("more output"));
    }
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Some((Running { child, base_url }, more))
}

/// `wanted` concurrent connections, or fewer when this process may not open enough files
/// (each request here holds a client socket and, through an in-process upstream, a server
/// socket); says so on stderr when it cuts.
pub fn concurrency(wanted: usize) -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|n| n.parse::<usize>().ok())
        })
        .unwrap_or(1024);
    let fits = soft.saturating_sub(200) / 3;
    if fits < wanted {
        eprintln!("open-file limit {soft}: {fits} concurrent requests instead of {wanted}");
    }
    wanted.min(fits).max(10)
}
