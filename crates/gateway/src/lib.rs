//! oidcgate-gateway: `oidcgate serve` — an authenticating reverse proxy and forward-auth
//! endpoint that protects any web application with no code change (DESIGN §3).
//!
//! - [`config`]: the settings (flags and environment variables), checked at start.
//! - [`headers`]: identity headers, spoofing defence, cookie filtering, hop-by-hop rules.
//! - [`proxy`]: forwarding to `UPSTREAM_URL` with streamed bodies.
//! - This file: authentication per request (session from the login layer, or a bearer token),
//!   authorization rules, and the gateway's own routes (`/auth/verify`, `/auth/userinfo`,
//!   `/healthz`, `/readyz`).

pub mod config;
pub mod deferred;
pub mod headers;
pub mod metrics;
pub mod pool;
pub mod proxy;
pub mod skip;

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, LOCATION};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use oidcgate_axum::bearer::BearerError;
use oidcgate_axum::login::redis::RedisSessions;
use oidcgate_axum::login::{LoginConfig, OidcLoginLayer, SessionUser};
use oidcgate_core::client::{ClientConfig, OidcClient};
use oidcgate_core::http::{HttpClient, ReqwestClient, UrlPolicy};
use oidcgate_core::provider::{KeyCacheConfig, ProviderMetadata};
use oidcgate_core::session::SessionKeys;
use oidcgate_core::validate::{
    AccessTokenValidator, IssuerPolicy, TokenCacheConfig, VerifiedClaims,
};
use serde_json::json;

pub use config::{ConfigError, GatewayConfig, ServeArgs};

/// Who a request is from: its session, or the verified claims of its bearer token (shared,
/// not copied: a request reads a few fields once). `Debug` hides the token.
#[derive(Clone)]
enum Identity {
    Session(SessionUser),
    Bearer {
        claims: Arc<VerifiedClaims>,
        /// The token itself, kept only when it is to be passed upstream.
        token: Option<String>,
    },
}

impl Identity {
    fn sub(&self) -> &str {
        match self {
            Self::Session(user) => &user.sub,
            Self::Bearer { claims, .. } => claims.subject().unwrap_or_default(),
        }
    }

    fn email(&self) -> Option<&str> {
        match self {
            Self::Session(user) => user.email.as_deref(),
            Self::Bearer { claims, .. } => claims.email(),
        }
    }

    /// The IdP's `email_verified`, when it sent one.
    fn email_verified(&self) -> Option<bool> {
        match self {
            Self::Session(user) => user.email_verified,
            Self::Bearer { claims, .. } => claims
                .claim("email_verified")
                .and_then(serde_json::Value::as_bool),
        }
    }

    fn preferred_username(&self) -> Option<&str> {
        match self {
            Self::Session(user) => user.preferred_username.as_deref(),
            Self::Bearer { claims, .. } => claims.preferred_username(),
        }
    }

    fn groups<'a>(&'a self, claim: &str) -> Vec<&'a str> {
        match self {
            Self::Session(user) => user.groups.iter().map(String::as_str).collect(),
            Self::Bearer { claims, .. } => claims.string_list_claim(claim),
        }
    }

    /// The request's bearer token, or the session's access token when the session keeps one.
    fn token(&self) -> Option<&str> {
        match self {
            Self::Session(user) => user.access_token(),
            Self::Bearer { token, .. } => token.as_deref(),
        }
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("sub", &self.sub())
            .field("email", &self.email())
            .field("email_verified", &self.email_verified())
            .field("preferred_username", &self.preferred_username())
            .field("has_token", &self.token().is_some())
            .finish()
    }
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("OIDC_ISSUER: discovery failed: {0}")]
    Discovery(String),
    #[error("LISTEN_ADDR: {0}")]
    Listen(String),
    #[error("REDIS_URL: {0}")]
    Store(String),
}

struct Gateway {
    metrics: metrics::Metrics,
    /// Identity header values by session id ([`identity_headers`]).
    identity_values: quick_cache::sync::Cache<String, Arc<CachedIdentity>>,
    redis: Option<Arc<RedisSessions>>,
    config: GatewayConfig,
    bearer: Option<AccessTokenValidator>,
    /// Login, when configured (ready once the IdP has been discovered).
    login: Option<Arc<deferred::LoginState>>,
    /// A key warm-up started by `/readyz` is running (at most one at a time).
    warming: std::sync::atomic::AtomicBool,
    upstream: proxy::Upstream,
}

type Shared = Arc<Gateway>;

/// The gateway's routes (`/healthz`, `/readyz`, `/metrics`, `/auth/verify`, `/auth/userinfo`);
/// every other path is the proxy's (login routes included: the login layer answers those).
const OWN_ROUTES: [&str; 5] = [
    "/healthz",
    "/readyz",
    "/metrics",
    "/auth/verify",
    "/auth/userinfo",
];

/// The gateway's request handling. Its own few routes go through an axum router; everything
/// else, the hot path, goes straight to the login layer and the proxy: no route table, no
/// per-request extensions, one boxed future per layer.
#[derive(Clone)]
pub struct App {
    gw: Shared,
    routes: Router,
    login: Option<deferred::DeferredLoginLayer>,
}

impl App {
    /// The service for one client connection.
    pub fn connection(&self, peer: std::net::SocketAddr) -> ConnectionService {
        ConnectionService {
            app: self.clone(),
            peer: headers::Peer::new(peer),
        }
    }
}

type BoxedResponse =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response, Infallible>> + Send>>;

/// [`App`] serving one connection (hyper's service trait).
#[derive(Clone)]
pub struct ConnectionService {
    app: App,
    peer: headers::Peer,
}

impl hyper::service::Service<axum::http::Request<hyper::body::Incoming>> for ConnectionService {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxedResponse;

    fn call(&self, request: axum::http::Request<hyper::body::Incoming>) -> Self::Future {
        use tower_layer::Layer as _;
        use tower_service::Service as _;
        let request = request.map(axum::body::Body::new);
        // RFC 9112 §3.2: an HTTP/1.1 request without `Host` is refused (HTTP/1.0 may omit it).
        if request.version() == axum::http::Version::HTTP_11
            && !request.headers().contains_key(axum::http::header::HOST)
        {
            let response = oidcgate_axum::login::pages::error_response(
                request.headers(),
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "an HTTP/1.1 request needs a Host header",
            );
            return Box::pin(async move { Ok(response) });
        }
        if OWN_ROUTES.contains(&request.uri().path()) {
            // The router is always ready (axum's contract), so no poll_ready first.
            let mut routes = self.app.routes.clone();
            return Box::pin(routes.call(request));
        }
        let mut proxy = Proxy {
            gw: self.app.gw.clone(),
            peer: self.peer.clone(),
        };
        match &self.app.login {
            Some(layer) => layer.layer(proxy).call(request),
            None => proxy.call(request),
        }
    }
}

/// The proxy path as a tower service, for the login layer to wrap.
#[derive(Clone)]
struct Proxy {
    gw: Shared,
    peer: headers::Peer,
}

impl tower_service::Service<Request> for Proxy {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxedResponse;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let (gw, peer) = (self.gw.clone(), self.peer.clone());
        Box::pin(async move { Ok(forward(gw, peer, request).await) })
    }
}

/// Builds the gateway (discovery happens here; without the IdP it fails with a clear error).
pub async fn build(config: GatewayConfig) -> Result<App, StartError> {
    let url_policy = UrlPolicy {
        allow_http: config.allow_http,
    };
    let http: Arc<dyn HttpClient> = Arc::new(
        ReqwestClient::new(Default::default()).map_err(|e| StartError::Discovery(e.to_string()))?,
    );
    let key_cache = KeyCacheConfig {
        refetch_cooldown: config.refetch_cooldown,
        url_policy,
        ..Default::default()
    };
    let bearer = match &config.audience {
        Some(audience) => {
            let mut policy = IssuerPolicy::new(&config.issuer, audience)
                .required_claims(config.required_claims.clone());
            // DESIGN §3: when the audience is the client id, only at+jwt tokens, or an ID token
            // would pass as an access token.
            if config.client_id.as_deref() == Some(audience.as_str()) {
                policy = policy.require_at_jwt(true);
            }
            if let Some(endpoints) = &config.endpoints {
                policy = policy.jwks_uri(endpoints.jwks.clone());
            }
            let mut builder = AccessTokenValidator::builder()
                .issuer(policy)
                .http_client(http.clone())
                .key_cache(key_cache);
            if config.token_cache_entries > 0 {
                builder = builder.token_cache(TokenCacheConfig {
                    max_entries: config.token_cache_entries,
                    ..Default::default()
                });
            }
            let validator = builder.build().map_err(|e| ConfigError {
                setting: "OIDC_AUDIENCE",
                problem: e.to_string(),
            })?;
            for e in validator.warm_up().await {
                tracing::warn!(error = %e, "bearer-token keys not loaded yet; requests get 503 until they are");
            }
            Some(validator)
        }
        None => None,
    };
    let mut redis_store = None;
    let mut login_state = None;
    if let (Some(client_id), Some(redirect), Some(secret)) = (
        &config.client_id,
        &config.redirect_uri,
        &config.session_secret,
    ) {
        let client_config = ClientConfig {
            auth: config.client_auth.clone(),
            url_policy,
            key_cache,
            ..ClientConfig::public(&config.issuer, client_id)
        };
        let previous: Vec<&[u8]> = config
            .session_secret_previous
            .iter()
            .map(|s| s.as_bytes())
            .collect();
        let keys =
            Arc::new(
                SessionKeys::new(secret.as_bytes(), &previous).map_err(|e| ConfigError {
                    setting: "SESSION_SECRET",
                    problem: e.to_string(),
                })?,
            );
        let redis = match &config.redis_url {
            Some(url) => Some(Arc::new(
                RedisSessions::connect(url, &config.redis_key_prefix, config.session_cache_ttl)
                    .await
                    .map_err(|e| StartError::Store(e.to_string()))?,
            )),
            None => None,
        };
        redis_store = redis.clone();
        let settings = LoginSettings {
            redirect: redirect.clone(),
            keys,
            redis,
            redis_sessions: config.redis_sessions,
            scopes: config.scopes.clone(),
            cookie_secure: config.cookie_secure,
            session_max_age: config.session_max_age,
            max_pending_logins: config.max_pending_logins,
            groups_claim: config.groups_claim.clone(),
            keep_tokens: config.pass_access_token || config.pass_authorization_header,
        };
        let state = Arc::new(deferred::LoginState::new(vec![
            "/login".into(),
            redirect.path().to_owned(),
            "/logout".into(),
            "/auth/backchannel-logout".into(),
        ]));
        match &config.endpoints {
            // Seed 003's explicit endpoints: no discovery.
            Some(e) => {
                let client = Arc::new(OidcClient::from_metadata(
                    client_config,
                    explicit_metadata(&config.issuer, e),
                    http.clone(),
                    Arc::new(oidcgate_core::clock::SystemClock),
                ));
                state.set(settings.ready(client));
            }
            None => match OidcClient::discover(client_config.clone(), http.clone()).await {
                Ok(client) => state.set(settings.ready(Arc::new(client))),
                Err(e) => {
                    // Serve anyway; login becomes ready when the IdP answers.
                    tracing::warn!(error = %e, "identity provider unreachable at start; login waits for it");
                    let http = http.clone();
                    state.retry_in_background(move || {
                        let (config, http, settings) =
                            (client_config.clone(), http.clone(), settings.clone());
                        async move {
                            let client = OidcClient::discover(config, http)
                                .await
                                .map_err(|e| e.to_string())?;
                            Ok(settings.ready(Arc::new(client)))
                        }
                    });
                }
            },
        }
        login_state = Some(state);
    }
    let upstream = proxy::Upstream::new(
        config.upstream.clone(),
        config.upstream_timeout,
        config.upstream_max_connections,
        config.max_body_bytes,
    );
    let gateway = Arc::new(Gateway {
        metrics: metrics::Metrics::default(),
        identity_values: quick_cache::sync::Cache::new(IDENTITY_VALUES),
        redis: redis_store,
        config,
        bearer,
        login: login_state.clone(),
        warming: std::sync::atomic::AtomicBool::new(false),
        upstream,
    });
    let router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/auth/verify", get(verify))
        .route("/auth/userinfo", get(userinfo))
        .with_state(gateway.clone());
    let login = login_state.map(|state| deferred::DeferredLoginLayer { state });
    Ok(App {
        gw: gateway,
        routes: match &login {
            Some(layer) => router.layer(layer.clone()),
            None => router,
        },
        login,
    })
}

/// Everything the login layer needs besides the discovered client.
#[derive(Clone)]
struct LoginSettings {
    redirect: url::Url,
    keys: Arc<SessionKeys>,
    redis: Option<Arc<RedisSessions>>,
    redis_sessions: bool,
    scopes: String,
    cookie_secure: bool,
    session_max_age: std::time::Duration,
    max_pending_logins: usize,
    groups_claim: String,
    keep_tokens: bool,
}

impl LoginSettings {
    fn ready(&self, client: Arc<OidcClient>) -> deferred::Ready {
        let mut login =
            LoginConfig::new(client.clone(), self.redirect.to_string(), self.keys.clone());
        if self.redis_sessions {
            login.redis = self.redis.clone();
        } else {
            login.shared_state = self.redis.clone();
        }
        login.scopes = self.scopes.clone();
        login.cookie_secure = self.cookie_secure;
        login.session_max_age = self.session_max_age;
        login.max_pending_logins = self.max_pending_logins;
        login.groups_claim = self.groups_claim.clone();
        // A token passed upstream must be current: keep the tokens and refresh them.
        login.keep_tokens = self.keep_tokens;
        let mut home = self.redirect.clone();
        home.set_path("/");
        home.set_query(None);
        login.post_logout_redirect_uri = Some(home.to_string());
        deferred::Ready {
            client,
            layer: OidcLoginLayer::new(login),
        }
    }
}

/// Provider metadata from seed 003's explicit endpoints.
fn explicit_metadata(issuer: &str, e: &config::Endpoints) -> ProviderMetadata {
    ProviderMetadata {
        issuer: issuer.to_owned(),
        jwks_uri: e.jwks.clone(),
        authorization_endpoint: e.authorization.clone(),
        token_endpoint: e.token.clone(),
        userinfo_endpoint: e.userinfo.clone(),
        end_session_endpoint: e.end_session.clone(),
        introspection_endpoint: None,
        revocation_endpoint: None,
        device_authorization_endpoint: None,
        scopes_supported: Vec::new(),
        response_types_supported: vec!["code".into()],
        id_token_signing_alg_values_supported: Vec::new(),
        code_challenge_methods_supported: vec!["S256".into()],
        token_endpoint_auth_methods_supported: Vec::new(),
        authorization_response_iss_parameter_supported: false,
        backchannel_logout_supported: false,
        other: Default::default(),
    }
}

/// Serves until SIGTERM or Ctrl-C; prints `listening on http://ADDR` once it accepts
/// connections. In-flight requests finish before it returns.
pub async fn serve(config: GatewayConfig) -> Result<(), StartError> {
    let listen = config.listen.clone();
    let (max_header_bytes, header_read_timeout) =
        (config.max_header_bytes, config.header_read_timeout);
    let app = build(config).await?;
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| StartError::Listen(format!("cannot listen on {listen}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| StartError::Listen(e.to_string()))?;
    println!("listening on http://{addr}");
    // hyper directly (not axum::serve) for the limits DESIGN §3 asks for: the request head is
    // bounded (431 beyond MAX_HEADER_BYTES) and must arrive within HEADER_READ_TIMEOUT.
    // Graceful shutdown by hand (hyper-util's helper does not take upgradeable connections):
    // a watch channel tells every connection to finish its in-flight request and close.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let active = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut shutdown = std::pin::pin!(shutdown_signal());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let service = app.connection(peer);
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(header_read_timeout)
                    .max_buf_size(max_header_bytes);
                let mut connection = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service).with_upgrades();
                let mut stop = stop_rx.clone();
                let active = active.clone();
                active.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut connection = std::pin::Pin::new(&mut connection);
                    tokio::select! {
                        result = connection.as_mut() => {
                            if let Err(e) = result {
                                tracing::debug!(error = %e, "connection ended with an error");
                            }
                        }
                        stopped = async { stop.wait_for(|stop| *stop).await.is_ok() } => {
                            let _ = stopped;
                            connection.as_mut().graceful_shutdown();
                            let _ = connection.await;
                        }
                    }
                    active.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // In-flight requests finish (bounded wait).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while active.load(std::sync::atomic::Ordering::SeqCst) > 0
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

fn wants_html(headers: &HeaderMap) -> bool {
    oidcgate_axum::login::pages::wants_html(headers)
}

/// The identity of a request: its session, else its bearer token. `Err` is the answer to send
/// (invalid token, keys unavailable, two Authorization headers...).
async fn identify(
    gw: &Gateway,
    headers: &HeaderMap,
    session: Option<&SessionUser>,
) -> Result<Option<Identity>, Response> {
    if let Some(user) = session {
        return Ok(Some(Identity::Session(user.clone())));
    }
    let Some(validator) = &gw.bearer else {
        return Ok(None);
    };
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return match headers.get_all(AUTHORIZATION).iter().count() {
            0 => Ok(None),
            _ => Err(
                BearerError::InvalidRequest("more than one Authorization header").into_response(),
            ),
        };
    };
    let Some(token) = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(s, _)| s.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
    else {
        return Ok(None);
    };
    let claims = validator
        .validate(token)
        .await
        .map_err(|e| BearerError::Invalid(e).into_response())?;
    let missing: Vec<String> = gw
        .config
        .required_scopes
        .iter()
        .filter(|s| !claims.has_scope(s))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(BearerError::InsufficientScope(missing.into()).into_response());
    }
    let pass_token = gw.config.pass_access_token || gw.config.pass_authorization_header;
    Ok(Some(Identity::Bearer {
        claims,
        token: pass_token.then(|| token.to_owned()),
    }))
}

/// ALLOWED_EMAILS / ALLOWED_EMAIL_DOMAINS / ALLOWED_GROUPS. An address the IdP marks
/// `email_verified: false` matches no email rule (anyone can claim an unverified address at an
/// IdP that allows self-registration); IdPs that send no `email_verified` are trusted.
fn allowed(config: &GatewayConfig, id: &Identity) -> bool {
    let by_email = config.allowed_emails.is_empty() && config.allowed_email_domains.is_empty()
        || id
            .email()
            .filter(|_| id.email_verified() != Some(false))
            .map(str::to_ascii_lowercase)
            .is_some_and(|e| {
                config.allowed_emails.contains(&e)
                    || e.rsplit_once('@').is_some_and(|(_, domain)| {
                        config.allowed_email_domains.iter().any(|d| d == domain)
                    })
            });
    let by_group = config.allowed_groups.is_empty()
        || id
            .groups(&config.groups_claim)
            .iter()
            .any(|g| config.allowed_groups.iter().any(|a| a == g));
    by_email && by_group
}

fn denied(headers: &HeaderMap) -> Response {
    oidcgate_axum::login::pages::error_response(
        headers,
        StatusCode::FORBIDDEN,
        "access_denied",
        "you are signed in but not allowed here",
    )
}

/// Browsers go to `/login?rd=…` when login is configured; API clients get 401.
fn unauthenticated(gw: &Gateway, headers: &HeaderMap, rd: &str) -> Response {
    if gw.login.is_some() && wants_html(headers) {
        let rd: String = url::form_urlencoded::byte_serialize(rd.as_bytes()).collect();
        let mut r = StatusCode::FOUND.into_response();
        if let Ok(v) = HeaderValue::from_str(&format!("/login?rd={rd}")) {
            r.headers_mut().insert(LOCATION, v);
        }
        return r;
    }
    BearerError::Missing.into_response()
}

const USER: HeaderName = HeaderName::from_static(headers::USER);
const EMAIL: HeaderName = HeaderName::from_static(headers::EMAIL);
const PREFERRED_USERNAME: HeaderName = HeaderName::from_static(headers::PREFERRED_USERNAME);
const GROUPS: HeaderName = HeaderName::from_static(headers::GROUPS);
const ACCESS_TOKEN: HeaderName = HeaderName::from_static(headers::ACCESS_TOKEN);

/// The identity headers of one identity, ready to insert (a clone of a value is a reference
/// count, not a copy), with the fields they were made from.
struct IdentityValues {
    user: Option<HeaderValue>,
    email: Option<HeaderValue>,
    preferred_username: Option<HeaderValue>,
    groups: Option<HeaderValue>,
}

/// [`IdentityValues`] of a session, cached by session id, with the fields they were made
/// from: an entry is used only for a session that still says exactly this.
struct CachedIdentity {
    values: IdentityValues,
    made_from: (String, Option<String>, Option<String>, Vec<String>),
}

impl IdentityValues {
    fn of(id: &Identity, groups_claim: &str) -> Self {
        let value = |v: &str| HeaderValue::from_str(v).ok();
        let groups = id.groups(groups_claim);
        Self {
            user: value(id.sub()),
            email: id.email().and_then(value),
            preferred_username: id.preferred_username().and_then(value),
            groups: (!groups.is_empty())
                .then(|| groups.join(","))
                .and_then(|g| value(&g)),
        }
    }
}

impl CachedIdentity {
    fn of(user: &SessionUser, groups_claim: &str) -> Self {
        Self {
            values: IdentityValues::of(&Identity::Session(user.clone()), groups_claim),
            made_from: (
                user.sub.clone(),
                user.email.clone(),
                user.preferred_username.clone(),
                user.groups.clone(),
            ),
        }
    }

    /// Whether these values were made from this session's identity.
    fn made_from(&self, user: &SessionUser) -> bool {
        let (sub, email, preferred_username, groups) = &self.made_from;
        *sub == user.sub
            && *email == user.email
            && *preferred_username == user.preferred_username
            && *groups == user.groups
    }
}

/// Entries of the per-session identity-header cache.
const IDENTITY_VALUES: usize = 4096;

fn identity_headers(gw: &Gateway, id: &Identity, into: &mut HeaderMap) {
    // A session's identity does not change (a refresh replaces its tokens only) and its id is
    // random, so its header values are built once per session id, not per request; an entry
    // is used only while the session's fields are still the ones it was made from.
    let cached;
    let built;
    let values = match id {
        Identity::Session(user) => {
            cached = match gw
                .identity_values
                .get(user.id.as_str())
                .filter(|values| values.made_from(user))
            {
                Some(values) => values,
                None => {
                    let values = Arc::new(CachedIdentity::of(user, &gw.config.groups_claim));
                    gw.identity_values.insert(user.id.clone(), values.clone());
                    values
                }
            };
            &cached.values
        }
        Identity::Bearer { .. } => {
            built = IdentityValues::of(id, &gw.config.groups_claim);
            &built
        }
    };
    for (name, value) in [
        (USER, &values.user),
        (EMAIL, &values.email),
        (PREFERRED_USERNAME, &values.preferred_username),
        (GROUPS, &values.groups),
    ] {
        if let Some(value) = value {
            into.insert(name, value.clone());
        }
    }
    if let Some(token) = id.token() {
        if gw.config.pass_access_token
            && let Ok(v) = HeaderValue::from_str(token)
        {
            into.insert(ACCESS_TOKEN, v);
        }
        if gw.config.pass_authorization_header
            && let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}"))
        {
            into.insert(AUTHORIZATION, v);
        }
    }
}

/// Everything that is not a gateway route: authenticate, authorize, proxy.
async fn forward(gw: Shared, peer: headers::Peer, mut request: Request) -> Response {
    // A reverse proxy is no tunnel: CONNECT would ask the upstream to open one.
    if request.method() == axum::http::Method::CONNECT {
        let mut r = StatusCode::METHOD_NOT_ALLOWED.into_response();
        r.headers_mut().insert(
            axum::http::header::ALLOW,
            HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
        );
        return r;
    }
    // The asterisk form names the server, not a resource: OPTIONS only (RFC 9112 §3.2.4).
    if request.uri().path() == "*" && request.method() != axum::http::Method::OPTIONS {
        return StatusCode::BAD_REQUEST.into_response();
    }
    // The client's hop-by-hop headers go first, before the gateway adds its own: a client's
    // `Connection` may name its own headers away, never the gateway's.
    let upgrade = proxy::requested_upgrade(request.headers());
    headers::strip_hop_by_hop(request.headers_mut());
    if !gw.config.skip_auth.is_empty() {
        // Match and forward the same, normalized path (never the query).
        if request.uri().path() != "*"
            && let std::borrow::Cow::Owned(normalized) = skip::normalize_path(request.uri().path())
            && normalized != request.uri().path()
        {
            let pq = match request.uri().query() {
                Some(q) => format!("{normalized}?{q}"),
                None => normalized,
            };
            let mut parts = request.uri().clone().into_parts();
            parts.path_and_query = pq.parse::<axum::http::uri::PathAndQuery>().ok();
            let Some(uri) = parts
                .path_and_query
                .is_some()
                .then(|| axum::http::Uri::from_parts(parts).ok())
                .flatten()
            else {
                return StatusCode::BAD_REQUEST.into_response();
            };
            *request.uri_mut() = uri;
        }
        if gw
            .config
            .skip_auth
            .matches(request.method(), request.uri().path())
        {
            upstream_headers(&gw, &peer, request.headers_mut(), None);
            return proxy_timed(&gw, request, upgrade, metrics::Outcome::Public).await;
        }
    }
    let rd = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let session = request.extensions().get::<SessionUser>().cloned();
    let id = match identify(&gw, request.headers(), session.as_ref()).await {
        Ok(Some(id)) => id,
        Ok(None) => {
            gw.metrics.record(metrics::Outcome::Unauthenticated);
            return unauthenticated(&gw, request.headers(), &rd);
        }
        Err(response) => {
            gw.metrics.record(metrics::Outcome::Refused);
            return response;
        }
    };
    if !allowed(&gw.config, &id) {
        gw.metrics.record(metrics::Outcome::Forbidden);
        return denied(request.headers());
    }
    upstream_headers(&gw, &peer, request.headers_mut(), Some(&id));
    proxy_timed(&gw, request, upgrade, metrics::Outcome::Proxied).await
}

/// The request headers as the upstream gets them: the client's identity, spoofable forwarding
/// headers and the gateway's cookies removed; for an authenticated request (`id`) the client's
/// `Authorization` too, and the identity headers set; `X-Forwarded-*` set.
fn upstream_headers(
    gw: &Gateway,
    peer: &headers::Peer,
    headers: &mut HeaderMap,
    id: Option<&Identity>,
) {
    // Room for the identity and X-Forwarded-* headers: one growth of the map at most.
    headers.reserve(if id.is_some() { 8 } else { 3 });
    headers::strip_identity(headers);
    headers::strip_spoofable_forwarding(headers);
    headers::strip_gateway_cookies(headers);
    if let Some(id) = id {
        // The client's Authorization header never goes upstream as it came: it was not
        // validated on a session request, and a validated bearer token goes on only when
        // configured (identity_headers sets it then).
        headers.remove(AUTHORIZATION);
        identity_headers(gw, id, headers);
    }
    let proto = if gw.config.cookie_secure {
        "https"
    } else {
        "http"
    };
    headers::set_forwarded(headers, peer, proto);
}

/// Forwards and records the outcome and the time to the upstream's response headers.
async fn proxy_timed(
    gw: &Gateway,
    request: Request,
    upgrade: Option<HeaderValue>,
    outcome: metrics::Outcome,
) -> Response {
    let started = std::time::Instant::now();
    let response = gw.upstream.forward(request, upgrade).await;
    gw.metrics.observe_latency(started.elapsed().as_secs_f64());
    let upstream_failed = matches!(
        response.status(),
        StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT
    ) && response
        .headers()
        .get("x-oidcgate-upstream-error")
        .is_some();
    gw.metrics.record(if upstream_failed {
        metrics::Outcome::UpstreamError
    } else {
        outcome
    });
    response
}

/// `GET /metrics`: Prometheus text format.
async fn metrics_text(State(gw): State<Shared>) -> Response {
    let mut fetches = gw
        .bearer
        .as_ref()
        .map_or(0, |v| v.key_caches().map(|k| k.jwks_fetches()).sum());
    let ready = gw.login.as_ref().and_then(|l| l.get());
    if let Some(ready) = ready {
        fetches += ready.client.id_token_validator().keys().jwks_fetches();
    }
    let store_errors = gw.redis.as_ref().map_or(0, |r| r.errors());
    let refreshes = ready.map_or_else(Default::default, |ready| {
        let c = ready.layer.refresh_counts();
        let get = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        metrics::Refreshes {
            refreshed: get(&c.refreshed),
            rejected: get(&c.rejected),
            unavailable: get(&c.unavailable),
        }
    });
    let body = gw.metrics.render(fetches, store_errors, refreshes);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// `GET /auth/verify` (forward auth): 202 with the identity headers, or 401/403.
///
/// All four identity headers are always in a 202 (empty when unknown), so a proxy that copies
/// them onto the request (Traefik `authResponseHeaders`, Caddy `copy_headers`) replaces a
/// client's forged value even for an identity without, say, groups. Without an identity, a
/// browser request that names its original URL in `X-Forwarded-Uri` (Traefik, Caddy) gets 302 to
/// the login with that URL as `rd`, because those proxies hand the answer to the browser; other
/// callers (nginx `auth_request` accepts only 2xx/401/403) get 401.
async fn verify(
    State(gw): State<Shared>,
    headers: HeaderMap,
    session: Option<SessionUser>,
) -> Response {
    if headers::has_underscore_identity(&headers) {
        return oidcgate_axum::login::pages::error_response(
            &headers,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the request carries an identity header spelled with underscores",
        );
    }
    match identify(&gw, &headers, session.as_ref()).await {
        Ok(Some(id)) if allowed(&gw.config, &id) => {
            let mut r = StatusCode::ACCEPTED.into_response();
            for name in [USER, EMAIL, PREFERRED_USERNAME, GROUPS] {
                r.headers_mut().insert(name, HeaderValue::from_static(""));
            }
            identity_headers(&gw, &id, r.headers_mut());
            r
        }
        Ok(Some(_)) => denied(&headers),
        Ok(None) => match headers.get("x-forwarded-uri").and_then(|v| v.to_str().ok()) {
            Some(uri) if gw.login.is_some() && wants_html(&headers) => {
                unauthenticated(&gw, &headers, uri)
            }
            _ => BearerError::Missing.into_response(),
        },
        Err(response) => response,
    }
}

/// `GET /auth/userinfo`: the caller's identity as JSON, 401 without one.
async fn userinfo(
    State(gw): State<Shared>,
    headers: HeaderMap,
    session: Option<SessionUser>,
) -> Response {
    match identify(&gw, &headers, session.as_ref()).await {
        Ok(Some(id)) => {
            let mut body = serde_json::Map::new();
            body.insert("sub".into(), json!(id.sub()));
            if let Some(e) = id.email() {
                body.insert("email".into(), json!(e));
            }
            if let Some(user) = &session
                && let Some(v) = user.email_verified
            {
                body.insert("email_verified".into(), json!(v));
            }
            if let Some(user) = &session
                && let Some(n) = &user.name
            {
                body.insert("name".into(), json!(n));
            }
            if let Some(u) = id.preferred_username() {
                body.insert("preferred_username".into(), json!(u));
            }
            let groups = id.groups(&gw.config.groups_claim);
            if !groups.is_empty() {
                body.insert("groups".into(), json!(groups));
            }
            axum::Json(serde_json::Value::Object(body)).into_response()
        }
        Ok(None) => BearerError::Missing.into_response(),
        Err(response) => response,
    }
}

/// `GET /readyz`: keys loaded for the issuer.
async fn readyz(State(gw): State<Shared>) -> Response {
    // Keys that never loaded (the IdP was down at start) are fetched again, in the background
    // (one warm-up at a time, within the key caches' own rate limit for failed fetches): a probe
    // never waits on the IdP, so it answers at once even while the IdP hangs; the next probe
    // sees the result.
    let bearer_ready = gw
        .bearer
        .as_ref()
        .is_none_or(|v| v.key_caches().all(|k| k.is_ready()));
    let login_keys = gw
        .login
        .as_ref()
        .and_then(|state| state.get())
        .map(|ready| ready.client.id_token_validator().keys().clone());
    // Discovery not done yet counts as not ready (it is retried in the background).
    let login_ready = match (&gw.login, &login_keys) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(_), Some(keys)) => keys.is_ready(),
    };
    if (!bearer_ready || !login_ready)
        && !gw.warming.swap(true, std::sync::atomic::Ordering::AcqRel)
    {
        let gw = gw.clone();
        tokio::spawn(async move {
            if let Some(v) = &gw.bearer {
                let _ = v.warm_up().await;
            }
            if let Some(keys) = login_keys {
                let _ = keys.warm_up().await;
            }
            gw.warming
                .store(false, std::sync::atomic::Ordering::Release);
        });
    }
    let store_ready = match &gw.redis {
        Some(redis) => redis.ping().await,
        None => true,
    };
    let ready = bearer_ready && login_ready && store_ready;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({"ready": ready, "checks": {"bearer_keys": bearer_ready, "login_keys": login_ready, "session_store": store_ready}});
    (status, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use oidcgate_axum::login::session::SessionData;

    fn session(email: &str, groups: &[&str]) -> SessionUser {
        SessionUser(Arc::new(SessionData {
            id: "same-id".into(),
            sub: "alice".into(),
            idp_sid: None,
            email: Some(email.into()),
            email_verified: Some(true),
            name: None,
            preferred_username: Some("alice".into()),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            id_token: None,
            created_at: 0,
            expires_at: i64::MAX,
            tokens: None,
        }))
    }

    #[test]
    fn cached_identity_values_serve_only_the_identity_they_were_made_from() {
        let first = session("alice@example.com", &["users"]);
        let values = CachedIdentity::of(&first, "groups");
        assert!(values.made_from(&first));
        assert_eq!(values.values.groups.as_ref().unwrap(), "users");
        // The same id saying something else (were a future change to update a session's
        // identity in place) does not get the cached headers.
        assert!(!values.made_from(&session("alice@example.com", &["users", "admins"])));
        assert!(!values.made_from(&session("mallory@example.com", &["users"])));
    }
}
