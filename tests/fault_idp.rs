//! `oidcgate serve` when its IdP fails, over real sockets and real processes (issue 7, "Fault
//! tests"): the IdP down at start (bearer mode starts and answers 503 until the keys load; login
//! mode stops with a clear error or, once discovery can be deferred, waits for the IdP; with
//! explicit endpoints it starts and signs in once the IdP is up), the IdP going down later
//! (cached keys and sessions keep working, a callback that needs the IdP gets a readable 502), a
//! slow IdP (the 10 s outbound timeout holds) and an IdP serving garbage or a JWKS over the
//! 256 KiB cap. Every case also checks that the gateway stays up and never panics.

mod support;

use support::faults;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode as AxumStatus, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use faults::{Settings, idp_at, poll, readyz};
use oidcgate_core::jose::Algorithm;
use oidcgate_core::jose::sign::SigningKey;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::browser::{Jar, app_sign_in};
use support::gateway::{client, echo_upstream, free_addr, service_token};
use support::{claims, mint};

/// A bearer request to `{base}/api`: status, `Retry-After`, JSON body, time taken.
async fn bearer(base: &str, token: &str) -> (StatusCode, Option<u64>, Value, Duration) {
    let started = Instant::now();
    let r = client()
        .get(format!("{base}/api"))
        .bearer_auth(token)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("the gateway answers");
    let status = r.status();
    let retry = r
        .headers()
        .get(header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().parse().expect("Retry-After in seconds"));
    let body = r.json().await.unwrap_or_default();
    (status, retry, body, started.elapsed())
}

/// Asserts the answer of a bearer request whose issuer keys never loaded: 503 (not 401 or 500)
/// with a `Retry-After` and the RFC 6750-style JSON error.
fn assert_keys_unavailable(answer: &(StatusCode, Option<u64>, Value, Duration)) {
    let (status, retry, body, _) = answer;
    assert_eq!(*status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        retry.is_some_and(|s| (1..=60).contains(&s)),
        "Retry-After: {retry:?}"
    );
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");
}

async fn get_status(url: &str) -> (StatusCode, Duration) {
    let started = Instant::now();
    let r = client()
        .get(url)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    (r.status(), started.elapsed())
}

/// A token signed by a key no IdP publishes, for issuer `issuer` and the gateway's audience.
fn foreign_token(issuer: &str) -> String {
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    mint(&key, &claims(issuer, "demo-api", SystemTime::now()))
}

#[tokio::test]
async fn bearer_gateway_starts_without_its_idp_answers_503_then_recovers() {
    let idp_addr = free_addr();
    let issuer = format!("http://{idp_addr}");
    let (upstream, _upstream) = echo_upstream().await;
    let started = Instant::now();
    let mut gw = Settings::bearer(&issuer, &upstream)
        .set("OIDC_JWKS_REFETCH_COOLDOWN", "1s")
        .serve()
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "start took {:?}",
        started.elapsed()
    );
    let base = gw.base_url.clone();
    assert!(
        gw.stderr_shows("keys not loaded yet", Duration::from_secs(3))
            .await,
        "a clear warning at start:\n{}",
        gw.stderr()
    );

    // Alive, not ready; bearer requests 503 with Retry-After; client errors stay 401.
    assert_eq!(
        get_status(&format!("{base}/healthz")).await.0,
        StatusCode::OK
    );
    let (status, body) = readyz(&base).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["ready"], false);
    assert_eq!(body["checks"]["bearer_keys"], false, "{body}");
    assert_keys_unavailable(&bearer(&base, &foreign_token(&issuer)).await);
    assert_eq!(
        get_status(&format!("{base}/api")).await.0,
        StatusCode::UNAUTHORIZED,
        "no token: still 401"
    );
    assert_eq!(
        bearer(&base, "not.a.jwt").await.0,
        StatusCode::UNAUTHORIZED,
        "a malformed token is the client's fault even while the IdP is down"
    );

    // The IdP comes up on its address: bearer requests work within a bounded wait.
    let _idp = idp_at(idp_addr).await;
    let token = service_token(&issuer).await;
    let up = Instant::now();
    let seen = poll(Duration::from_secs(10), || async {
        let (status, _, body, _) = bearer(&base, &token).await;
        (status == StatusCode::OK).then_some(body)
    })
    .await
    .expect("bearer requests succeed within 10 s of the IdP coming up");
    assert_eq!(seen["headers"]["x-auth-request-user"], "demo-service");
    assert!(up.elapsed() < Duration::from_secs(10));
    let (status, body) = readyz(&base).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ready"], true);
    gw.assert_alive_without_panic();
}

/// Issue 7: "IdP down at start (gateway starts, `/readyz` not ready, retries with backoff,
/// becomes ready)" — with no bearer request to load the keys: an orchestrator sends no traffic
/// to an instance that is not ready. (Before 9e35dbd `/readyz` only read the bearer key cache
/// and stayed 503 for good.)
#[tokio::test]
async fn bearer_gateway_becomes_ready_without_traffic_when_the_idp_comes_up() {
    let idp_addr = free_addr();
    let issuer = format!("http://{idp_addr}");
    let (upstream, _upstream) = echo_upstream().await;
    let mut gw = Settings::bearer(&issuer, &upstream)
        .set("OIDC_JWKS_REFETCH_COOLDOWN", "1s")
        .serve()
        .await;
    let base = gw.base_url.clone();
    assert_eq!(readyz(&base).await.0, 503);
    let _idp = idp_at(idp_addr).await;
    let ready = poll(Duration::from_secs(10), || async {
        (readyz(&base).await.0 == 200).then_some(())
    })
    .await;
    let (status, body) = readyz(&base).await;
    assert!(
        ready.is_some(),
        "/readyz still {status} {body} 10 s after the IdP came up"
    );
    gw.assert_alive_without_panic();
}

/// Login mode needs discovery: with the IdP down it starts anyway, not ready, answers the login
/// routes with a 503 page and `Retry-After`, retries discovery with backoff, and signs users in
/// once the IdP is up (before 9e35dbd it stopped with exit 1).
#[tokio::test]
async fn login_gateway_with_idp_down_at_start_waits_for_it_then_signs_in() {
    let idp_addr = free_addr();
    let issuer = format!("http://{idp_addr}");
    let (upstream, _upstream) = echo_upstream().await;
    let started = Instant::now();
    let mut gw = Settings::login(&issuer, &upstream)
        .set("OIDC_JWKS_REFETCH_COOLDOWN", "1s")
        .serve()
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "start took {:?}",
        started.elapsed()
    );
    let base = gw.base_url.clone();
    let http = client();
    let (status, body) = readyz(&base).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["checks"]["login_keys"], false, "{body}");
    let r = http
        .get(format!("{base}/login"))
        .header("accept", "text/html")
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key(header::RETRY_AFTER));
    let page = r.text().await.unwrap();
    assert!(page.contains("<h1>"), "a readable page: {page}");
    // A browser on a protected page: to the login (which explains) or the 503 page, never 500.
    let r = http
        .get(format!("{base}/app"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert!(
        [StatusCode::FOUND, StatusCode::SERVICE_UNAVAILABLE].contains(&r.status()),
        "{}",
        r.status()
    );
    // API clients: 401 without a token, 503 with one (the keys cannot load yet).
    assert_eq!(
        get_status(&format!("{base}/api")).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_keys_unavailable(&bearer(&base, &foreign_token(&issuer)).await);

    let _idp = idp_at(idp_addr).await;
    let ready = poll(Duration::from_secs(20), || async {
        (readyz(&base).await.0 == 200).then_some(())
    })
    .await;
    assert!(
        ready.is_some(),
        "ready within 20 s: {:?}",
        readyz(&base).await
    );
    let mut jar = Jar::default();
    assert_eq!(
        app_sign_in(&http, &mut jar, &base, "/after").await,
        "/after"
    );
    let seen: Value = http
        .get(format!("{base}/after"))
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["headers"]["x-auth-request-user"], "alice");
    let token = service_token(&issuer).await;
    assert_eq!(bearer(&base, &token).await.0, StatusCode::OK);
    gw.assert_alive_without_panic();
}

#[tokio::test]
async fn login_gateway_with_explicit_endpoints_starts_without_its_idp_then_signs_in() {
    let idp_addr = free_addr();
    let issuer = format!("http://{idp_addr}");
    let (upstream, _upstream) = echo_upstream().await;
    let mut gw = Settings::login(&issuer, &upstream)
        .unset("OIDC_AUDIENCE")
        .set("OIDC_JWKS_REFETCH_COOLDOWN", "1s")
        .set(
            "OIDC_OP_AUTHORIZATION_ENDPOINT",
            &format!("{issuer}/authorize"),
        )
        .set("OIDC_OP_TOKEN_ENDPOINT", &format!("{issuer}/token"))
        .set("OIDC_OP_USER_ENDPOINT", &format!("{issuer}/userinfo"))
        .set("OIDC_OP_JWKS_ENDPOINT", &format!("{issuer}/jwks"))
        .serve()
        .await;
    let base = gw.base_url.clone();
    let (status, body) = readyz(&base).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["checks"]["login_keys"], false, "{body}");
    // No discovery is needed, but the IdP does not answer: a clear 503 page, not a redirect to
    // a dead host.
    let r = client()
        .get(format!("{base}/login"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key(header::RETRY_AFTER));

    let _idp = idp_at(idp_addr).await;
    let ready = poll(Duration::from_secs(10), || async {
        (readyz(&base).await.0 == 200).then_some(())
    })
    .await;
    assert!(
        ready.is_some(),
        "ready within 10 s: {:?}",
        readyz(&base).await
    );
    let http = client();
    let mut jar = Jar::default();
    assert_eq!(
        app_sign_in(&http, &mut jar, &base, "/after").await,
        "/after"
    );
    let seen: Value = http
        .get(format!("{base}/after"))
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["headers"]["x-auth-request-user"], "alice");
    gw.assert_alive_without_panic();
}

#[tokio::test]
async fn idp_down_later_cached_keys_and_sessions_keep_working_logins_fail_clearly() {
    let idp_addr = free_addr();
    let mut idp = idp_at(idp_addr).await;
    let issuer = idp.base_url.clone();
    let (upstream, _upstream) = echo_upstream().await;
    // No validated-token cache: every bearer request below is verified with the cached keys.
    let mut gw = Settings::login(&issuer, &upstream)
        .set("TOKEN_CACHE_ENTRIES", "0")
        .set("OIDC_JWKS_REFETCH_COOLDOWN", "1s")
        .serve()
        .await;
    let base = gw.base_url.clone();
    let http = client();

    let first = service_token(&issuer).await;
    let second = service_token(&issuer).await;
    assert_ne!(first, second);
    assert_eq!(bearer(&base, &first).await.0, StatusCode::OK);
    let mut jar = Jar::default();
    assert_eq!(app_sign_in(&http, &mut jar, &base, "/").await, "/");
    // A second sign-in, stopped just before its callback reaches the gateway.
    let start = http
        .get(format!("{base}/login?rd=%2Flater"))
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), StatusCode::FOUND);
    jar.absorb(start.headers());
    let authorize = start.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    let at_idp = http
        .get(&authorize)
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    let callback = at_idp.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        callback.starts_with(&format!("{base}/auth/callback?")),
        "{callback}"
    );

    idp.kill().await;
    assert!(
        tokio::net::TcpStream::connect(idp_addr).await.is_err(),
        "the IdP is down"
    );

    // Bearer tokens keep validating with the cached keys, including one never seen before.
    for token in [&second, &first] {
        let (status, _, body, elapsed) = bearer(&base, token).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["headers"]["x-auth-request-user"], "demo-service");
        assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    }
    // The session is not lost.
    let seen: Value = http
        .get(format!("{base}/page"))
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["headers"]["x-auth-request-user"], "alice");
    // Cached keys count as ready.
    let (status, body) = readyz(&base).await;
    assert_eq!(status, 200, "{body}");

    // The callback cannot reach the token endpoint: a readable 502 page, never a redirect.
    let started = Instant::now();
    let r = http
        .get(&callback)
        .header("cookie", jar.header())
        .header("accept", "text/html")
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(12));
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert!(r.headers().get(header::LOCATION).is_none());
    assert!(
        r.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = r.text().await.unwrap();
    assert!(page.contains("Sign-in error"), "{page}");

    // A new login: answered at once with a clear 503 page (the authorization endpoint does not
    // answer), never a redirect to the dead IdP, a 500 or a hang.
    let started = Instant::now();
    let r = http
        .get(format!("{base}/login"))
        .header("accept", "text/html")
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key(header::RETRY_AFTER));
    let page = r.text().await.unwrap();
    assert!(
        page.contains("identity provider cannot be reached"),
        "{page}"
    );
    gw.assert_alive_without_panic();
}

// ---------------------------------------------------------------------------------------------
// A scriptable IdP for the slow and garbage cases.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DiscoveryMode {
    Good,
    /// An HTML page with status 200.
    Garbage,
    /// A valid document naming another issuer.
    OtherIssuer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JwksMode {
    Good,
    Status500,
    /// Never answers.
    Hang,
    Garbage,
    /// JSON, but `keys` is not an array.
    WrongShape,
    /// 300 KiB with a `Content-Length`.
    HugeWithLength,
    /// 300 KiB, chunked (no length known in advance).
    HugeChunked,
}

const HUGE: usize = 300 * 1024;

struct ScriptState {
    issuer: String,
    keys: Mutex<Vec<Value>>,
    discovery: Mutex<DiscoveryMode>,
    jwks: Mutex<JwksMode>,
    discovery_hits: AtomicUsize,
    jwks_hits: AtomicUsize,
}

/// Discovery (with authorization and token endpoints, for login mode) and a JWKS, each failing
/// in the way its mode says; stopped on drop.
struct ScriptedIdp {
    issuer: String,
    state: Arc<ScriptState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ScriptedIdp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn scripted_discovery(State(s): State<Arc<ScriptState>>) -> Response {
    s.discovery_hits.fetch_add(1, Ordering::SeqCst);
    let mode = *s.discovery.lock().unwrap();
    let issuer = match mode {
        DiscoveryMode::Garbage => {
            return (
                [(header::CONTENT_TYPE, "text/html")],
                "<html><body>Welcome to nginx!</body></html>",
            )
                .into_response();
        }
        DiscoveryMode::OtherIssuer => "http://127.0.0.1:1".to_owned(),
        DiscoveryMode::Good => s.issuer.clone(),
    };
    axum::Json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{}/jwks", s.issuer),
        "authorization_endpoint": format!("{}/authorize", s.issuer),
        "token_endpoint": format!("{}/token", s.issuer),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "code_challenge_methods_supported": ["S256"],
    }))
    .into_response()
}

async fn scripted_jwks(State(s): State<Arc<ScriptState>>) -> Response {
    s.jwks_hits.fetch_add(1, Ordering::SeqCst);
    let mode = *s.jwks.lock().unwrap();
    let json = |body: Body| {
        let mut r = Response::new(body);
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        r
    };
    match mode {
        JwksMode::Good => {
            let keys = s.keys.lock().unwrap().clone();
            json(Body::from(json!({ "keys": keys }).to_string()))
        }
        JwksMode::Status500 => AxumStatus::INTERNAL_SERVER_ERROR.into_response(),
        JwksMode::Hang => {
            tokio::time::sleep(Duration::from_secs(120)).await;
            AxumStatus::GATEWAY_TIMEOUT.into_response()
        }
        JwksMode::Garbage => json(Body::from(&b"\x00\xffnot json at all{{{"[..])),
        JwksMode::WrongShape => json(Body::from(r#"{"keys":"none here"}"#)),
        JwksMode::HugeWithLength => json(Body::from(huge_jwks())),
        JwksMode::HugeChunked => {
            let chunks: Vec<Result<Bytes, std::io::Error>> = huge_jwks()
                .chunks(16 * 1024)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            json(Body::from_stream(futures_util::stream::iter(chunks)))
        }
    }
}

/// A syntactically valid JWKS of more than 256 KiB.
fn huge_jwks() -> Vec<u8> {
    let padding = "A".repeat(HUGE);
    json!({"keys": [], "padding": padding})
        .to_string()
        .into_bytes()
}

impl ScriptedIdp {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(ScriptState {
            issuer: issuer.clone(),
            keys: Mutex::new(Vec::new()),
            discovery: Mutex::new(DiscoveryMode::Good),
            jwks: Mutex::new(JwksMode::Good),
            discovery_hits: AtomicUsize::new(0),
            jwks_hits: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(scripted_discovery))
            .route("/jwks", get(scripted_jwks))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            issuer,
            state,
            task,
        }
    }

    fn publish(&self, keys: &[&SigningKey]) {
        *self.state.keys.lock().unwrap() = keys.iter().filter_map(|k| k.public_jwk()).collect();
    }

    fn discovery(&self, mode: DiscoveryMode) {
        *self.state.discovery.lock().unwrap() = mode;
    }

    fn jwks(&self, mode: JwksMode) {
        *self.state.jwks.lock().unwrap() = mode;
    }

    fn hits(&self) -> (usize, usize) {
        (
            self.state.discovery_hits.load(Ordering::SeqCst),
            self.state.jwks_hits.load(Ordering::SeqCst),
        )
    }
}

/// A scripted IdP and a gateway (bearer tokens; with `login`, sign-in too) whose first key
/// fetch failed fast at start, past the refetch cooldown, with the IdP's JWKS now hanging: the
/// next key fetch hangs until the 10 s outbound timeout.
struct Hanging {
    idp: ScriptedIdp,
    key: SigningKey,
    gw: faults::Proc,
    base: String,
    _upstream: tokio::task::JoinHandle<()>,
}

async fn hanging_idp(login: bool) -> Hanging {
    let idp = ScriptedIdp::start().await;
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    idp.publish(&[&key]);
    // Fails fast at start (so start-up is quick), then hangs.
    idp.jwks(JwksMode::Status500);
    let (upstream, task) = echo_upstream().await;
    let settings = if login {
        Settings::login(&idp.issuer, &upstream)
    } else {
        Settings::bearer(&idp.issuer, &upstream)
    };
    let gw = settings
        .set("OIDC_JWKS_REFETCH_COOLDOWN", COOLDOWN)
        .serve()
        .await;
    let base = gw.base_url.clone();
    idp.jwks(JwksMode::Hang);
    tokio::time::sleep(PAST_COOLDOWN).await;
    Hanging {
        idp,
        key,
        gw,
        base,
        _upstream: task,
    }
}

/// The refetch cooldown of the scripted-IdP tests, and a wait just past it.
const COOLDOWN: &str = "300ms";
const PAST_COOLDOWN: Duration = Duration::from_millis(500);

#[tokio::test]
async fn slow_idp_requests_answered_within_the_outbound_timeout() {
    let Hanging {
        idp,
        key,
        mut gw,
        base,
        _upstream,
    } = hanging_idp(true).await;
    let token = mint(&key, &claims(&idp.issuer, "demo-api", SystemTime::now()));

    let (_, jwks_before) = idp.hits();
    let bearer_request = bearer(&base, &token);
    // While the key fetch hangs, the gateway's other routes answer at once.
    let meanwhile = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let health = get_status(&format!("{base}/healthz")).await;
        let started = Instant::now();
        let login = client()
            .get(format!("{base}/login"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .unwrap()
            .status();
        (health, (login, started.elapsed()))
    };
    let (answer, (health, login)) = tokio::join!(bearer_request, meanwhile);

    assert_eq!(
        idp.hits().1,
        jwks_before + 1,
        "the JWKS endpoint was asked once (and hung)"
    );
    assert_keys_unavailable(&answer);
    // It waited for the hanging fetch, which the 10 s total timeout ended.
    assert!(
        answer.3 > Duration::from_secs(8) && answer.3 < Duration::from_secs(14),
        "bounded by the 10 s total timeout: {:?}",
        answer.3
    );
    assert_eq!(health.0, StatusCode::OK);
    assert!(health.1 < Duration::from_secs(1), "/healthz {:?}", health.1);
    assert_eq!(login.0, StatusCode::FOUND);
    assert!(login.1 < Duration::from_secs(1), "/login {:?}", login.1);
    assert!(
        gw.stderr_shows("timed out", Duration::from_secs(3)).await,
        "the timeout is logged:\n{}",
        gw.stderr()
    );

    // The IdP recovers: so does the gateway.
    idp.jwks(JwksMode::Good);
    let ok = poll(Duration::from_secs(5), || async {
        (bearer(&base, &token).await.0 == StatusCode::OK).then_some(())
    })
    .await;
    assert!(ok.is_some(), "bearer requests work again");
    let ready = poll(Duration::from_secs(5), || async {
        (readyz(&base).await.0 == 200).then_some(())
    })
    .await;
    assert!(ready.is_some(), "ready again: {:?}", readyz(&base).await);
    gw.assert_alive_without_panic();
}

/// DESIGN §2: "a single in-flight fetch shared by all waiters"; failed fetches are retried at
/// most once per cooldown. When the IdP hangs, the requests (and readiness probes) that queued
/// behind the fetch should all get their 503 when it times out. The cooldown is counted from
/// the end of the failed attempt, so the waiters do not each start their own fetch in turn (they
/// did when it was counted from the start: the n-th request waited n × 10 s).
#[tokio::test]
async fn slow_idp_waiters_share_one_timed_out_fetch() {
    let Hanging {
        idp,
        key,
        mut gw,
        base,
        _upstream,
    } = hanging_idp(false).await;
    let token = mint(&key, &claims(&idp.issuer, "demo-api", SystemTime::now()));
    let (_, jwks_before) = idp.hits();
    // Three requests and a readiness probe arrive while the first fetch hangs. Each may wait
    // 16 s (one timeout and slack) before it counts as stuck.
    let one = |delay: u64, path: &'static str| {
        let url = format!("{base}{path}");
        let token = token.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            let started = Instant::now();
            let r = client()
                .get(&url)
                .bearer_auth(&token)
                .timeout(Duration::from_secs(16))
                .send()
                .await;
            (path, delay, r.map(|r| r.status()), started.elapsed())
        }
    };
    let answers = tokio::join!(
        one(0, "/api"),
        one(200, "/api"),
        one(400, "/api"),
        one(600, "/readyz")
    );
    let answers = [answers.0, answers.1, answers.2, answers.3];
    for (path, delay, status, elapsed) in &answers {
        match status {
            Ok(status) => assert_eq!(
                *status,
                StatusCode::SERVICE_UNAVAILABLE,
                "{path} at +{delay} ms"
            ),
            Err(e) => panic!("{path} at +{delay} ms: no answer after {elapsed:?} ({e})"),
        }
        assert!(
            *elapsed < Duration::from_secs(14),
            "{path} at +{delay} ms took {elapsed:?}"
        );
    }
    assert_eq!(
        idp.hits().1,
        jwks_before + 1,
        "one JWKS fetch for all waiters"
    );
    gw.assert_alive_without_panic();
}

/// A readiness probe with a slow IdP answers within one outbound timeout (10 s), not the sum of
/// one per key cache it warms up (it took 20 s when `/readyz` awaited the bearer keys and then
/// the login keys; now it never waits on the IdP).
#[tokio::test]
async fn slow_idp_readyz_answers_within_one_outbound_timeout() {
    let Hanging {
        idp: _idp,
        key: _,
        mut gw,
        base,
        _upstream,
    } = hanging_idp(true).await;
    let started = Instant::now();
    let r = client()
        .get(format!("{base}/readyz"))
        .timeout(Duration::from_secs(25))
        .send()
        .await;
    let elapsed = started.elapsed();
    let status = r.map(|r| r.status());
    assert!(
        matches!(status, Ok(StatusCode::SERVICE_UNAVAILABLE)),
        "{status:?} after {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(14),
        "/readyz took {elapsed:?}"
    );
    gw.assert_alive_without_panic();
}

#[tokio::test]
async fn garbage_and_oversized_idp_answers_keep_the_gateway_up_and_unready() {
    let idp = ScriptedIdp::start().await;
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    idp.publish(&[&key]);
    idp.discovery(DiscoveryMode::Garbage);
    let (upstream, _upstream) = echo_upstream().await;
    let mut gw = Settings::bearer(&idp.issuer, &upstream)
        .set("OIDC_JWKS_REFETCH_COOLDOWN", COOLDOWN)
        .serve()
        .await;
    let base = gw.base_url.clone();
    let token = mint(&key, &claims(&idp.issuer, "demo-api", SystemTime::now()));

    let cases: [(&str, DiscoveryMode, JwksMode); 6] = [
        ("discovery is HTML", DiscoveryMode::Garbage, JwksMode::Good),
        (
            "discovery names another issuer",
            DiscoveryMode::OtherIssuer,
            JwksMode::Good,
        ),
        ("JWKS is not JSON", DiscoveryMode::Good, JwksMode::Garbage),
        (
            "JWKS keys is not an array",
            DiscoveryMode::Good,
            JwksMode::WrongShape,
        ),
        (
            "JWKS over 256 KiB with a length",
            DiscoveryMode::Good,
            JwksMode::HugeWithLength,
        ),
        (
            "JWKS over 256 KiB, chunked",
            DiscoveryMode::Good,
            JwksMode::HugeChunked,
        ),
    ];
    for (what, discovery, jwks) in cases {
        idp.discovery(discovery);
        idp.jwks(jwks);
        tokio::time::sleep(PAST_COOLDOWN).await;
        let (discovery_before, jwks_before) = idp.hits();
        let answer = bearer(&base, &token).await;
        let (discovery_after, jwks_after) = idp.hits();
        if discovery == DiscoveryMode::Good {
            assert!(jwks_after > jwks_before, "{what}: the JWKS was fetched");
        } else {
            assert!(
                discovery_after > discovery_before,
                "{what}: discovery was fetched"
            );
            assert_eq!(jwks_after, jwks_before, "{what}: no JWKS without discovery");
        }
        assert_keys_unavailable(&answer);
        assert!(answer.3 < Duration::from_secs(5), "{what}: {:?}", answer.3);
        let (status, body) = readyz(&base).await;
        assert_eq!(status, 503, "{what}: {body}");
        assert_eq!(
            get_status(&format!("{base}/healthz")).await.0,
            StatusCode::OK,
            "{what}"
        );
        gw.assert_alive_without_panic();
    }
    for needle in [
        "fetching signing keys failed",
        "larger than 262144 bytes",
        "http://127.0.0.1:1",
    ] {
        assert!(
            gw.stderr_shows(needle, Duration::from_secs(3)).await,
            "{needle:?} in the log:\n{}",
            gw.stderr()
        );
    }

    // A good JWKS: the keys load.
    idp.jwks(JwksMode::Good);
    tokio::time::sleep(PAST_COOLDOWN).await;
    let (status, _, body, _) = bearer(&base, &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(readyz(&base).await.0, 200);

    // Garbage after good keys: known keys keep working, an unknown kid (a refetch that fails) is
    // the token's problem (401), and the gateway stays ready.
    for bad in [JwksMode::HugeChunked, JwksMode::Garbage] {
        idp.jwks(bad);
        tokio::time::sleep(PAST_COOLDOWN).await;
        let (_, jwks_before) = idp.hits();
        let rotated = SigningKey::generate(Algorithm::ES256).unwrap();
        let unknown = mint(
            &rotated,
            &claims(&idp.issuer, "demo-api", SystemTime::now()),
        );
        let (status, _, body, _) = bearer(&base, &unknown).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad:?}: {body}");
        assert_eq!(body["error"], "invalid_token", "{body}");
        assert!(
            idp.hits().1 > jwks_before,
            "{bad:?}: the unknown kid refetched"
        );
        let fresh = mint(&key, &claims(&idp.issuer, "demo-api", SystemTime::now()));
        assert_eq!(bearer(&base, &fresh).await.0, StatusCode::OK, "{bad:?}");
        assert_eq!(readyz(&base).await.0, 200, "{bad:?}");
    }
    gw.assert_alive_without_panic();
}
