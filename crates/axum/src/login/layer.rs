//! [`OidcLoginLayer`]: serves `/login`, the callback (the path of the redirect URI) and
//! `/logout`, and attaches a [`SessionUser`] to every other request that carries a valid
//! session cookie.
//!
//! - `/login[?rd=/path]` seals a [`PendingLogin`] into its own short-lived cookie
//!   `oidcgate_login.<first 12 chars of base64url(SHA-256(state))>` (so two tabs can sign in at
//!   once; at most five, oldest dropped) and redirects to the provider.
//! - The callback finds that cookie by the returned `state`, checks it, exchanges the code,
//!   verifies the ID token, fills missing profile claims from userinfo once, seals the session
//!   into `oidcgate_session` (`__Host-oidcgate_session` when secure, chunked), and redirects to
//!   `rd`. Failures are never a redirect: 400 for the browser's or IdP's side, 401 for a bad ID
//!   token, 502 when the provider fails.
//! - `/logout` revokes the session id in process, clears the cookies and sends the browser to
//!   the provider's end-session endpoint when it has one.
//! - `POST /auth/backchannel-logout` validates the provider's logout token and ends the
//!   sessions of that IdP `sid` (or of that `sub` started before the token).
//! - With [`LoginConfig::keep_tokens`], a session whose access token is about to expire is
//!   refreshed on its way through ([`super::refresh`]); the cookie store's response then
//!   carries the resealed cookie, and a refused refresh ends the session and clears it.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum_core::body::Body;
use axum_core::response::Response;
use http::header::{LOCATION, SET_COOKIE};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use oidcgate_core::client::{CallbackParams, ClientError, OidcClient, PendingLogin};
use oidcgate_core::jose::b64;
use oidcgate_core::session::{CookieChunks, Purpose, SessionKeys};
use oidcgate_core::validate::LogoutTokenValidator;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tower_layer::Layer;
use tower_service::Service;

use super::pages::{PROVIDER_UNREACHABLE, confirm_logout, error_response, unavailable};
use super::redirect::safe_return_path;
use super::redis::{RedisSessions, RevokedKind, StoreError};
use super::refresh::{self, Coordination, Job, Outcome, Refresher};
use super::session::{SessionData, SessionTokens, SessionUser, cookie_pairs, request_cookies};

/// Login cookies live this long (DESIGN §3: `Max-Age=600`).
const LOGIN_MAX_AGE: i64 = 600;
const LOGIN_COOKIE_PREFIX: &str = "oidcgate_login.";
/// Largest form body read (back-channel logout tokens are a few KiB).
const MAX_FORM_BYTES: usize = 64 * 1024;

/// How the login layer behaves.
#[derive(Clone)]
pub struct LoginConfig {
    pub client: Arc<OidcClient>,
    /// The registered redirect URI; its path is the callback route.
    pub redirect_uri: String,
    pub scopes: String,
    pub keys: Arc<SessionKeys>,
    /// `Secure` cookies with the `__Host-` prefix (true unless plain-http development).
    pub cookie_secure: bool,
    pub session_max_age: Duration,
    pub login_path: String,
    pub logout_path: String,
    /// OIDC Back-Channel Logout endpoint (register it at the provider).
    pub backchannel_logout_path: String,
    /// Where the provider sends the browser after logout (must be registered there).
    pub post_logout_redirect_uri: Option<String>,
    /// Keep sessions in Redis (the cookie then carries only a ticket).
    pub redis: Option<Arc<RedisSessions>>,
    /// Ask for `response_mode=form_post` (used only with secure cookies: the pending-login
    /// cookie must then be `SameSite=None`, which browsers accept only with `Secure`).
    pub form_post: bool,
    /// With the cookie store: Redis for the server state replicas share (DESIGN §2) — the
    /// revocation list, refresh leases and refresh results. Without it that state is per
    /// process. (With the Redis store, [`Self::redis`] already shares everything.)
    pub shared_state: Option<Arc<RedisSessions>>,
    /// Keep the access and refresh tokens in the session (for [`SessionData::access_token`],
    /// e.g. passed upstream) and refresh them transparently before they expire. Off by
    /// default: the session then holds only the identity and stays small.
    pub keep_tokens: bool,
    /// The claim holding the user's groups, in the ID token or userinfo (default `groups`).
    pub groups_claim: String,
    /// Pending logins one browser may have at once (default 5); starting another drops the
    /// oldest, so the login cookies stay bounded.
    pub max_pending_logins: usize,
}

impl LoginConfig {
    /// Defaults: scopes `openid email profile`, secure cookies, 24 h sessions, `/login`,
    /// `/logout`.
    pub fn new(
        client: Arc<OidcClient>,
        redirect_uri: impl Into<String>,
        keys: Arc<SessionKeys>,
    ) -> Self {
        Self {
            client,
            redirect_uri: redirect_uri.into(),
            scopes: "openid email profile".into(),
            keys,
            cookie_secure: true,
            session_max_age: Duration::from_secs(86_400),
            login_path: "/login".into(),
            logout_path: "/logout".into(),
            backchannel_logout_path: "/auth/backchannel-logout".into(),
            post_logout_redirect_uri: None,
            redis: None,
            shared_state: None,
            form_post: false,
            keep_tokens: false,
            max_pending_logins: 5,
            groups_claim: "groups".into(),
        }
    }

    fn session_cookie(&self) -> &'static str {
        if self.cookie_secure {
            "__Host-oidcgate_session"
        } else {
            "oidcgate_session"
        }
    }

    fn cookie_attributes(&self, max_age: i64) -> String {
        let secure = if self.cookie_secure { "; Secure" } else { "" };
        format!("; Path=/; HttpOnly; SameSite=Lax{secure}; Max-Age={max_age}")
    }

    fn uses_form_post(&self) -> bool {
        self.form_post && self.cookie_secure
    }

    /// Pending-login cookies: `SameSite=None` with form_post, whose callback is a cross-site
    /// POST that a `Lax` cookie would not accompany.
    fn login_cookie_attributes(&self, max_age: i64) -> String {
        if self.uses_form_post() {
            format!("; Path=/; HttpOnly; SameSite=None; Secure; Max-Age={max_age}")
        } else {
            self.cookie_attributes(max_age)
        }
    }

    fn callback_path(&self) -> String {
        url::Url::parse(&self.redirect_uri)
            .map(|u| u.path().to_owned())
            .unwrap_or_else(|_| "/auth/callback".into())
    }
}

/// Sessions ended by `/logout` (by session id) and by back-channel logout (by IdP `sid`, or by
/// `sub` for sessions that started before the logout), kept until such sessions would have
/// expired anyway. In process; DESIGN: shared through Redis when configured.
#[derive(Default)]
struct Revoked {
    ids: Mutex<HashMap<String, i64>>,
    idp_sids: Mutex<HashMap<String, i64>>,
    subs: Mutex<HashMap<String, (i64, i64)>>,
}

impl Revoked {
    fn revoke(&self, id: &str, until: i64) {
        let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        let now = now();
        if ids.len() > 100_000 {
            ids.retain(|_, t| *t > now);
        }
        ids.insert(id.to_owned(), until);
    }

    fn revoke_idp_session(&self, sid: &str, until: i64) {
        let mut sids = self.idp_sids.lock().unwrap_or_else(|p| p.into_inner());
        let now = now();
        if sids.len() > 100_000 {
            sids.retain(|_, t| *t > now);
        }
        sids.insert(sid.to_owned(), until);
    }

    fn revoke_subject(&self, sub: &str, before: i64, until: i64) {
        let mut subs = self.subs.lock().unwrap_or_else(|p| p.into_inner());
        let now = now();
        if subs.len() > 100_000 {
            subs.retain(|_, (_, t)| *t > now);
        }
        // The latest cut-off wins (a late logout token must not lower it).
        let entry = subs.entry(sub.to_owned()).or_insert((before, until));
        entry.0 = entry.0.max(before);
        entry.1 = entry.1.max(until);
    }

    fn is_revoked(&self, session: &SessionData) -> bool {
        let has = |m: &Mutex<HashMap<String, i64>>, k: &str| {
            m.lock().unwrap_or_else(|p| p.into_inner()).contains_key(k)
        };
        has(&self.ids, &session.id)
            || session
                .idp_sid
                .as_deref()
                .is_some_and(|sid| has(&self.idp_sids, sid))
            || self
                .subs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&session.sub)
                .is_some_and(|(before, _)| session.created_at <= *before)
    }
}

/// The layer.
#[derive(Clone)]
pub struct OidcLoginLayer {
    shared: Arc<Shared>,
}

struct Shared {
    config: LoginConfig,
    callback_path: String,
    /// The site's origin (`scheme://host[:port]` of the redirect URI), for sign-out requests.
    origin: String,
    revoked: Revoked,
    chunks: CookieChunks,
    /// The session cookie's chunk names, made once.
    session_chunk_names: Vec<String>,
    logout_tokens: LogoutTokenValidator,
    refresher: Refresher,
    /// The last check that the provider answers, and when (see [`Shared::provider_up`]).
    provider_seen: Mutex<Option<(std::time::Instant, bool)>>,
    /// Decoded cookie sessions keyed by the whole sealed cookie value: a hit means these exact
    /// bytes already passed AES-GCM authentication here, so decryption and JSON parsing are
    /// skipped. Expiry and revocation are still checked on every request.
    opened: quick_cache::sync::Cache<Sealed, Arc<SessionData>>,
}

/// A sealed cookie value as a key of the decoded-session cache. Equality compares every byte;
/// the hash reads only the last 32 (the end of the ciphertext and the AES-GCM tag, different
/// for every seal), so a request does not hash a cookie of several KB. Only values that passed
/// decryption are inserted, so nobody without the secret can fill a bucket with colliding
/// entries.
#[derive(PartialEq, Eq)]
struct Sealed(Vec<u8>);

/// A borrowed [`Sealed`] for lookups.
struct SealedRef<'a>(&'a [u8]);

fn sealed_tail(value: &[u8]) -> &[u8] {
    &value[value.len().saturating_sub(32)..]
}

impl std::hash::Hash for Sealed {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        sealed_tail(&self.0).hash(state);
    }
}

impl std::hash::Hash for SealedRef<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        sealed_tail(self.0).hash(state);
    }
}

impl quick_cache::Equivalent<Sealed> for SealedRef<'_> {
    fn equivalent(&self, key: &Sealed) -> bool {
        self.0 == key.0.as_slice()
    }
}

/// Entries of the decoded-cookie cache (a sealed session is at most ~11 KB: ≤ ~45 MB).
const OPENED_SESSIONS: usize = 4096;

impl OidcLoginLayer {
    pub fn new(config: LoginConfig) -> Self {
        let callback_path = config.callback_path();
        let client = &config.client;
        let logout_tokens = LogoutTokenValidator::new(
            client.issuer(),
            client.client_id(),
            client.id_token_validator().keys().clone(),
            Arc::new(oidcgate_core::clock::SystemClock),
        );
        let origin = url::Url::parse(&config.redirect_uri)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_default();
        let session_chunk_names = CookieChunks::default().names(config.session_cookie());
        let shared = Shared {
            config,
            callback_path,
            origin,
            revoked: Revoked::default(),
            session_chunk_names,
            chunks: CookieChunks::default(),
            logout_tokens,
            refresher: Refresher::default(),
            provider_seen: Mutex::new(None),
            opened: quick_cache::sync::Cache::new(OPENED_SESSIONS),
        };
        Self {
            shared: Arc::new(shared),
        }
    }
}

impl OidcLoginLayer {
    /// How the session refreshes went since start.
    pub fn refresh_counts(&self) -> &super::refresh::RefreshCounts {
        self.shared.refresher.counts()
    }
}

impl<S> Layer<S> for OidcLoginLayer {
    type Service = OidcLogin<S>;

    fn layer(&self, inner: S) -> Self::Service {
        OidcLogin {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service of [`OidcLoginLayer`].
#[derive(Clone)]
pub struct OidcLogin<S> {
    inner: S,
    shared: Arc<Shared>,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A pending login as sealed into its cookie.
#[derive(Serialize, Deserialize)]
struct SealedLogin {
    login: PendingLogin,
    created_at: i64,
}

fn login_cookie_name(state: &str) -> String {
    let digest = aws_lc_rs_sha256(state.as_bytes());
    let encoded = b64::encode(digest);
    format!("{LOGIN_COOKIE_PREFIX}{}", &encoded[..12])
}

fn aws_lc_rs_sha256(data: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

fn redirect(location: &str) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::FOUND;
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(LOCATION, v);
    }
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    r
}

fn set_cookie(response: &mut Response, cookie: String) {
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(SET_COOKIE, v);
    }
}

fn query_param(uri: &http::Uri, name: &str) -> Option<String> {
    let query = uri.query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A session as read from a request.
struct Loaded {
    data: Arc<SessionData>,
    /// The Redis ticket of the cookie (Redis store only).
    ticket: Option<Vec<u8>>,
}

/// What the session check leaves for the response.
enum CookieUpdate {
    None,
    /// The tokens were refreshed: the cookie store seals the session anew.
    Rewrite(Arc<SessionData>),
    /// The session ended (refresh refused): clear the cookies.
    Clear,
}

impl Shared {
    /// The valid session of a request: `Ok(None)` without one, `Err` when the Redis store is
    /// unreachable (the request then gets 503, never someone else's session).
    async fn session(&self, headers: &HeaderMap) -> Result<Option<Loaded>, StoreError> {
        let name = self.config.session_cookie();
        let Some(value) = self.sealed_session(headers) else {
            return Ok(None);
        };
        let mut ticket = None;
        let data = match &self.config.redis {
            Some(redis) => {
                let Some(opened) = std::str::from_utf8(&value)
                    .ok()
                    .and_then(|value| self.config.keys.open(Purpose::Ticket, name, value).ok())
                else {
                    return Ok(None);
                };
                let loaded = redis.load(&opened).await?;
                ticket = Some(opened);
                match loaded {
                    Some(data) => data,
                    None => return Ok(None),
                }
            }
            None => match self.open_cookie_session(&value) {
                Some(data) => data,
                None => return Ok(None),
            },
        };
        if data.expires_at <= now() || self.revoked.is_revoked(&data) {
            return Ok(None);
        }
        if let Some(shared) = self.shared()
            && shared.is_revoked(&data).await?
        {
            return Ok(None);
        }
        Ok(Some(Loaded { data, ticket }))
    }

    /// The sealed session value of a request (its chunks joined), as sent.
    fn sealed_session<'a>(&self, headers: &'a HeaderMap) -> Option<std::borrow::Cow<'a, [u8]>> {
        let cookies: Vec<(&[u8], &[u8])> = headers
            .get_all(http::header::COOKIE)
            .iter()
            .flat_map(|v| cookie_pairs(v.as_bytes()))
            .collect();
        oidcgate_core::session::join_named(&self.session_chunk_names, |n| {
            cookies
                .iter()
                .find(|(k, _)| *k == n.as_bytes())
                .map(|(_, v)| *v)
        })
    }

    /// A sealed cookie session, opened (no expiry or revocation check). A hit in the decoded
    /// cache means these exact bytes already passed AES-GCM authentication here; the lookup
    /// needs neither a copy nor a UTF-8 check of the (several KB) value.
    fn open_cookie_session(&self, value: &[u8]) -> Option<Arc<SessionData>> {
        if let Some(data) = self.opened.get(&SealedRef(value)) {
            return Some(data);
        }
        let name = self.config.session_cookie();
        let text = std::str::from_utf8(value).ok()?;
        let plaintext = self.config.keys.open(Purpose::Session, name, text).ok()?;
        let data = Arc::new(serde_json::from_slice::<SessionData>(&plaintext).ok()?);
        self.opened.insert(Sealed(value.to_vec()), data.clone());
        Some(data)
    }

    /// Redis for shared state when sessions live in cookies.
    fn shared(&self) -> Option<&Arc<RedisSessions>> {
        self.config
            .shared_state
            .as_ref()
            .filter(|_| self.config.redis.is_none())
    }

    /// Puts a revocation on the shared list, when there is one.
    async fn share_revocation(
        &self,
        kind: RevokedKind,
        value: &str,
        before: i64,
        until: i64,
    ) -> Result<(), StoreError> {
        match self.shared() {
            Some(shared) => shared.revoke(kind, value, before, until).await,
            None => Ok(()),
        }
    }

    /// The session of a request with its tokens refreshed when they are due, and what the
    /// response must do to the cookie.
    async fn current_session(
        &self,
        headers: &HeaderMap,
    ) -> Result<(Option<Arc<SessionData>>, CookieUpdate), StoreError> {
        let Some(loaded) = self.session(headers).await? else {
            return Ok((None, CookieUpdate::None));
        };
        let now = now();
        if !refresh::due(&loaded.data, now) {
            return Ok((Some(loaded.data), CookieUpdate::None));
        }
        let redis_ticket = loaded.ticket.clone();
        let job = Job {
            client: self.config.client.clone(),
            coordination: match (&self.config.redis, loaded.ticket, &self.config.shared_state) {
                (Some(redis), Some(ticket), _) => Coordination::Store(redis.clone(), ticket),
                (None, _, Some(shared)) => Coordination::Shared(shared.clone()),
                _ => Coordination::Local,
            },
            session: loaded.data.clone(),
        };
        // Boxed: refreshing is rare and its future large.
        match Box::pin(self.refresher.refresh(job)).await {
            Outcome::Refreshed(next) => {
                // Redis already holds the new session under the same ticket.
                let update = if self.config.redis.is_some() {
                    CookieUpdate::None
                } else {
                    CookieUpdate::Rewrite(next.clone())
                };
                Ok((Some(next), update))
            }
            Outcome::Rejected(why) => {
                tracing::info!(reason = %why, "session ended: its tokens could not be refreshed");
                self.revoked.revoke(&loaded.data.id, loaded.data.expires_at);
                let data = &loaded.data;
                if let Err(e) = self
                    .share_revocation(RevokedKind::Session, &data.id, 0, data.expires_at)
                    .await
                {
                    tracing::warn!(error = %e, "could not share the ended session's revocation; it is revoked in this process");
                }
                if let (Some(redis), Some(ticket)) = (&self.config.redis, redis_ticket)
                    && let Err(e) = redis.delete(&ticket).await
                {
                    tracing::warn!(error = %e, "could not delete the ended session from Redis; it is revoked in this process");
                }
                Ok((None, CookieUpdate::Clear))
            }
            // The provider is unreachable: keep the session while its access token lasts;
            // past that, this request is anonymous and a later one tries again.
            Outcome::Unavailable(_) if refresh::expired(&loaded.data, now) => {
                Ok((None, CookieUpdate::None))
            }
            Outcome::Unavailable(_) => Ok((Some(loaded.data), CookieUpdate::None)),
        }
    }

    /// Whether the provider answers (a GET of its authorization endpoint, 2 s timeout; an
    /// answer is trusted for 5 s, a failure for 1 s so a recovery shows quickly): a login while
    /// it is down gets a clear 503 page rather than a redirect to a dead host.
    async fn provider_up(&self) -> bool {
        if let Some((at, up)) = *self.provider_seen.lock().unwrap_or_else(|p| p.into_inner())
            && at.elapsed() < Duration::from_secs(if up { 5 } else { 1 })
        {
            return up;
        }
        let up = self
            .config
            .client
            .authorization_endpoint_reachable(Duration::from_secs(2))
            .await;
        if !up {
            tracing::warn!(
                "the identity provider's authorization endpoint does not answer; logins get 503"
            );
        }
        *self.provider_seen.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((std::time::Instant::now(), up));
        up
    }

    fn login(&self, headers: &HeaderMap, uri: &http::Uri) -> Response {
        let rd = safe_return_path(&query_param(uri, "rd").unwrap_or_default());
        let built = self
            .config
            .client
            .authorization_request(self.config.redirect_uri.clone(), self.config.scopes.clone())
            .return_to(rd);
        let built = if self.config.uses_form_post() {
            built.form_post()
        } else {
            built
        }
        .build();
        let (url, pending) = match built {
            Ok(v) => v,
            Err(e) => {
                return error_response(
                    headers,
                    StatusCode::BAD_GATEWAY,
                    "server_error",
                    &e.to_string(),
                );
            }
        };
        let name = login_cookie_name(&pending.state);
        let sealed = serde_json::to_vec(&SealedLogin {
            login: pending,
            created_at: now(),
        })
        .ok()
        .and_then(|json| self.config.keys.seal(Purpose::Login, &name, &json).ok());
        let Some(sealed) = sealed else {
            return error_response(
                headers,
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "could not start the login",
            );
        };
        let mut response = redirect(url.as_str());
        // Bound the pending logins of this browser: drop the oldest beyond the limit.
        let existing: Vec<&str> = request_cookies(headers)
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| k.starts_with(LOGIN_COOKIE_PREFIX))
            .collect();
        let most = self.config.max_pending_logins.max(1);
        if existing.len() >= most {
            for old in &existing[..existing.len() + 1 - most] {
                set_cookie(
                    &mut response,
                    format!("{old}={}", self.config.cookie_attributes(0)),
                );
            }
        }
        set_cookie(
            &mut response,
            format!(
                "{name}={sealed}{}",
                self.config.login_cookie_attributes(LOGIN_MAX_AGE)
            ),
        );
        response
    }

    async fn callback(
        &self,
        headers: &HeaderMap,
        params: Result<CallbackParams, ClientError>,
    ) -> Response {
        let params = match params {
            Ok(p) => p,
            Err(e) => {
                return error_response(
                    headers,
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    &e.to_string(),
                );
            }
        };
        // An IdP error comes back with our state: show it (escaped), never redirect.
        let Some(state) = params.state.as_deref().filter(|s| !s.is_empty()) else {
            let description = match &params.error {
                Some(e) => format!("the provider answered {e}"),
                None => "the callback has no state".into(),
            };
            return error_response(
                headers,
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &description,
            );
        };
        let name = login_cookie_name(state);
        let cookies = request_cookies(headers);
        let sealed = cookies.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
        let pending = sealed
            .and_then(|v| self.config.keys.open(Purpose::Login, &name, v).ok())
            .and_then(|json| serde_json::from_slice::<SealedLogin>(&json).ok())
            .filter(|s| s.created_at + LOGIN_MAX_AGE > now());
        let Some(pending) = pending else {
            return error_response(
                headers,
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "this sign-in expired, was already used, or started in another browser; please sign in again",
            );
        };
        let login = match self
            .config
            .client
            .handle_callback(&pending.login, &params)
            .await
        {
            Ok(login) => login,
            Err(e) => {
                let status = match &e {
                    ClientError::IdToken(_) => StatusCode::UNAUTHORIZED,
                    ClientError::OAuth { .. }
                    | ClientError::Http(_)
                    | ClientError::BadResponse(_)
                    | ClientError::NoEndpoint(_) => StatusCode::BAD_GATEWAY,
                    _ => StatusCode::BAD_REQUEST,
                };
                tracing::info!(error = %e, "login callback refused");
                if matches!(e, ClientError::Http(_)) {
                    // The provider did not answer: the next login shows the outage page.
                    *self.provider_seen.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some((std::time::Instant::now(), false));
                }
                let mut r = error_response(headers, status, "login_failed", &e.to_string());
                set_cookie(
                    &mut r,
                    format!("{name}={}", self.config.cookie_attributes(0)),
                );
                return r;
            }
        };
        let claims = login.id_token.claims();
        let text = |c: &serde_json::Map<String, Value>, k: &str| {
            c.get(k).and_then(Value::as_str).map(str::to_owned)
        };
        let mut data = SessionData {
            id: oidcgate_core::client::authorize::random_value(),
            sub: login.id_token.subject().unwrap_or_default().to_owned(),
            idp_sid: text(claims, "sid"),
            email: text(claims, "email"),
            email_verified: claims.get("email_verified").and_then(Value::as_bool),
            name: text(claims, "name"),
            preferred_username: text(claims, "preferred_username"),
            groups: login
                .id_token
                .string_list_claim(&self.config.groups_claim)
                .into_iter()
                .map(str::to_owned)
                .collect(),
            id_token: login.tokens.id_token.clone(),
            created_at: now(),
            expires_at: now()
                + i64::try_from(self.config.session_max_age.as_secs()).unwrap_or(86_400),
            tokens: self.config.keep_tokens.then(|| SessionTokens {
                access_token: login.tokens.access_token.clone(),
                access_expires_at: login
                    .tokens
                    .expires_in
                    .map(|s| now().saturating_add(i64::try_from(s).unwrap_or(i64::MAX))),
                refresh_token: login.tokens.refresh_token.clone(),
                nonce: pending.login.nonce.clone(),
            }),
        };
        // DESIGN: when the ID token lacks profile claims, userinfo fills them in once.
        let lacking = data.email.is_none()
            || data.name.is_none()
            || data.preferred_username.is_none()
            || data.groups.is_empty();
        if lacking && self.config.client.metadata().userinfo_endpoint.is_some() {
            match self
                .config
                .client
                .userinfo(&login.tokens.access_token, &data.sub)
                .await
            {
                Ok(info) => {
                    data.email = data.email.or_else(|| text(&info, "email"));
                    data.email_verified = data
                        .email_verified
                        .or_else(|| info.get("email_verified").and_then(Value::as_bool));
                    data.name = data.name.or_else(|| text(&info, "name"));
                    data.preferred_username = data
                        .preferred_username
                        .or_else(|| text(&info, "preferred_username"));
                    if data.groups.is_empty()
                        && let Some(Value::Array(groups)) = info.get(&self.config.groups_claim)
                    {
                        data.groups = groups
                            .iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect();
                    }
                }
                // Userinfo about someone else, or a forged signed response: no session.
                Err(
                    e @ (ClientError::UserinfoSubjectMismatch | ClientError::SignedUserinfo(_)),
                ) => {
                    tracing::warn!(error = %e, "login refused: userinfo does not match the ID token");
                    let mut r = error_response(
                        headers,
                        StatusCode::UNAUTHORIZED,
                        "login_failed",
                        &e.to_string(),
                    );
                    set_cookie(
                        &mut r,
                        format!("{name}={}", self.config.cookie_attributes(0)),
                    );
                    return r;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "userinfo failed; the session keeps the ID token's claims")
                }
            }
        }
        let rd = safe_return_path(pending.login.return_to.as_deref().unwrap_or("/"));
        let mut response = redirect(&rd);
        set_cookie(
            &mut response,
            format!("{name}={}", self.config.cookie_attributes(0)),
        );
        if let Err(e) = self.write_session(&mut response, &data).await {
            return error_response(
                headers,
                StatusCode::INTERNAL_SERVER_ERROR,
                "session_too_large",
                &e,
            );
        }
        response
    }

    async fn write_session(
        &self,
        response: &mut Response,
        data: &SessionData,
    ) -> Result<(), String> {
        let name = self.config.session_cookie();
        let sealed = match &self.config.redis {
            // Redis: the cookie holds only the ticket.
            Some(redis) => {
                let ticket = redis.save(data).await.map_err(|e| e.to_string())?;
                self.config
                    .keys
                    .seal(Purpose::Ticket, name, &ticket)
                    .map_err(|e| e.to_string())?
            }
            None => self.seal_cookie_session(data)?,
        };
        self.write_cookie(response, &sealed, data.expires_at)
    }

    /// Seals a session for the cookie store within the chunk budget (3 × 3,800 bytes). Over
    /// it, the ID token is dropped first (it only serves as `id_token_hint` at logout, where
    /// `client_id` goes along anyway); still over it, a clear error that recommends Redis.
    fn seal_cookie_session(&self, data: &SessionData) -> Result<String, String> {
        let name = self.config.session_cookie();
        let seal = |d: &SessionData| {
            let json = serde_json::to_vec(d).map_err(|e| e.to_string())?;
            self.config
                .keys
                .seal(Purpose::Session, name, &json)
                .map_err(|e| e.to_string())
        };
        let limit = self.chunks.budget * self.chunks.max_chunks;
        let mut sealed = seal(data)?;
        if sealed.len() > limit && data.id_token.is_some() {
            let slim = SessionData {
                id_token: None,
                ..data.clone()
            };
            let smaller = seal(&slim)?;
            tracing::info!(
                full = sealed.len(),
                without_id_token = smaller.len(),
                "session over the cookie budget: the ID token is not kept (logout goes without id_token_hint)"
            );
            sealed = smaller;
        }
        if sealed.len() > limit {
            return Err(format!(
                "the session is {} bytes sealed, more than the cookie store holds ({} cookies of {} bytes), even without the ID token; use the Redis session store (SESSION_STORE=redis, or LoginConfig::redis), whose cookie is a small ticket",
                sealed.len(),
                self.chunks.max_chunks,
                self.chunks.budget
            ));
        }
        Ok(sealed)
    }

    /// Sets the (chunked) session cookie to `sealed` and expires chunks left over from a
    /// larger one.
    fn write_cookie(
        &self,
        response: &mut Response,
        sealed: &str,
        expires_at: i64,
    ) -> Result<(), String> {
        let name = self.config.session_cookie();
        let parts = self.chunks.split(name, sealed).map_err(|e| e.to_string())?;
        let max_age = expires_at - now();
        let used = parts.len();
        for (n, v) in parts {
            set_cookie(
                response,
                format!("{n}={v}{}", self.config.cookie_attributes(max_age)),
            );
        }
        // Expire chunks a previous, larger session left behind.
        for n in self.chunks.names(name).into_iter().skip(used) {
            set_cookie(
                response,
                format!("{n}={}", self.config.cookie_attributes(0)),
            );
        }
        Ok(())
    }

    /// Applies the session check's cookie change to a response.
    fn update_cookie(&self, response: &mut Response, update: CookieUpdate) {
        match update {
            CookieUpdate::None => {}
            CookieUpdate::Rewrite(data) => {
                let sealed = self.seal_cookie_session(&data);
                if let Err(e) =
                    sealed.and_then(|v| self.write_cookie(response, &v, data.expires_at))
                {
                    // The request succeeded; the next one adopts the cached refresh result.
                    tracing::warn!(error = %e, "could not rewrite the refreshed session cookie");
                }
            }
            CookieUpdate::Clear => {
                for n in self.chunks.names(self.config.session_cookie()) {
                    set_cookie(
                        response,
                        format!("{n}={}", self.config.cookie_attributes(0)),
                    );
                }
            }
        }
    }

    /// OIDC Back-Channel Logout §2.5/§2.8: 200 on success, 400 with a JSON error otherwise.
    async fn backchannel_logout(&self, body: &[u8]) -> Response {
        let json = HeaderMap::new();
        let token = url::form_urlencoded::parse(body)
            .find(|(k, _)| k == "logout_token")
            .map(|(_, v)| v.into_owned());
        let Some(token) = token else {
            return error_response(
                &json,
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "logout_token is required",
            );
        };
        match self.logout_tokens.validate(&token).await {
            Ok(request) => {
                let until =
                    now() + i64::try_from(self.config.session_max_age.as_secs()).unwrap_or(86_400);
                let shared = if let Some(sid) = &request.sid {
                    self.revoked.revoke_idp_session(sid, until);
                    self.share_revocation(RevokedKind::IdpSession, sid, 0, until)
                        .await
                } else if let Some(sub) = &request.sub {
                    self.revoked.revoke_subject(sub, request.iat, until);
                    self.share_revocation(RevokedKind::Subject, sub, request.iat, until)
                        .await
                } else {
                    Ok(())
                };
                let deleted = match &self.config.redis {
                    Some(redis) => {
                        redis
                            .delete_indexed(
                                request.sid.as_deref(),
                                request.sub.as_deref(),
                                request.iat,
                            )
                            .await
                    }
                    None => Ok(()),
                };
                if let Err(e) = shared.and(deleted) {
                    // The provider retries a failed delivery; other replicas must hear of it.
                    tracing::warn!(error = %e, "back-channel logout could not reach Redis");
                    return error_response(
                        &json,
                        StatusCode::SERVICE_UNAVAILABLE,
                        "temporarily_unavailable",
                        "session store unavailable",
                    );
                }
                tracing::info!(sid = ?request.sid, "back-channel logout");
                let mut r = Response::new(Body::empty());
                r.headers_mut().insert(
                    http::header::CACHE_CONTROL,
                    HeaderValue::from_static("no-store"),
                );
                r
            }
            Err(e) => {
                tracing::info!(error = %e, "back-channel logout token refused");
                error_response(
                    &json,
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    &e.to_string(),
                )
            }
        }
    }

    /// Whether a sign-out request comes from this site rather than from a link, image or form
    /// on another one (login CSRF's twin: signing a user out against their will). Browsers say
    /// where a request comes from in `Sec-Fetch-Site`: `same-origin`, or `none` for an address
    /// typed or bookmarked. Without it (older browsers, non-browser clients) a POST naming an
    /// `Origin` must name this one; a request with neither is let through, as before.
    fn same_site_logout(&self, method: &Method, headers: &HeaderMap) -> bool {
        if let Some(site) = headers.get("sec-fetch-site") {
            return site == "same-origin" || site == "none";
        }
        match headers.get(http::header::ORIGIN) {
            Some(origin) if method == Method::POST => origin.as_bytes() == self.origin.as_bytes(),
            _ => true,
        }
    }

    async fn logout(&self, headers: &HeaderMap) -> Response {
        // The session to end: a cookie session is opened locally (ending it needs no store); a
        // Redis session needs Redis.
        let name = self.config.session_cookie();
        let found = match &self.config.redis {
            None => Ok(self
                .sealed_session(headers)
                .and_then(|value| self.open_cookie_session(&value))),
            Some(_) => self.session(headers).await.map(|l| l.map(|l| l.data)),
        };
        let mut failed = None;
        let session = match found {
            Ok(session) => session,
            Err(e) => {
                failed = Some(e);
                None
            }
        };
        if let Some(s) = &session {
            self.revoked.revoke(&s.id, s.expires_at);
            if let Err(e) = self
                .share_revocation(RevokedKind::Session, &s.id, 0, s.expires_at)
                .await
            {
                failed = Some(e);
            }
        }
        if let Some(redis) = &self.config.redis {
            let cookies = request_cookies(headers);
            if let Some(value) = cookies.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
                && let Ok(ticket) = self.config.keys.open(Purpose::Ticket, name, value)
                && let Err(e) = redis.delete(&ticket).await
            {
                failed = Some(e);
            }
        }
        if let Some(e) = failed {
            // Not a silent success: other replicas could still accept the session. The cookies
            // stay, so signing out again works once the store is back.
            tracing::warn!(error = %e, "logout could not reach the session store; revoked in this process only");
            return unavailable(
                headers,
                "sign-out could not be completed: the session store is unavailable; please try again shortly",
                "2",
            );
        }
        let target = self
            .config
            .client
            .end_session_url(
                session.as_ref().and_then(|s| s.id_token.as_deref()),
                self.config.post_logout_redirect_uri.as_deref(),
                None,
            )
            .map(|u| u.to_string())
            .unwrap_or_else(|| "/".into());
        let mut response = redirect(&target);
        for n in self.chunks.names(self.config.session_cookie()) {
            set_cookie(
                &mut response,
                format!("{n}={}", self.config.cookie_attributes(0)),
            );
        }
        response
    }
}

impl<S, B> Service<Request<B>> for OidcLogin<S>
where
    S: Service<Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        Box::pin(async move {
            let path = request.uri().path();
            let method = request.method().clone();
            let config = &shared.config;
            if path == config.login_path && method == Method::GET {
                if !Box::pin(shared.provider_up()).await {
                    return Ok(unavailable(request.headers(), PROVIDER_UNREACHABLE, "5"));
                }
                return Ok(shared.login(request.headers(), request.uri()));
            }
            if path == shared.callback_path && method == Method::GET {
                let params = CallbackParams::from_query(request.uri().query().unwrap_or(""));
                return Ok(Box::pin(shared.callback(request.headers(), params)).await);
            }
            if path == shared.callback_path && method == Method::POST {
                // response_mode=form_post: the same parameters in a form body.
                use http_body_util::BodyExt as _;
                let headers = request.headers().clone();
                let limited = http_body_util::Limited::new(request.into_body(), MAX_FORM_BYTES);
                let params = match limited.collect().await {
                    Ok(collected) => {
                        let body = collected.to_bytes();
                        let pairs: Vec<(String, String)> =
                            url::form_urlencoded::parse(&body).into_owned().collect();
                        CallbackParams::from_pairs(
                            pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                        )
                    }
                    Err(_) => Err(ClientError::BadResponse(
                        "the callback body is too large".into(),
                    )),
                };
                return Ok(Box::pin(shared.callback(&headers, params)).await);
            }
            if path == config.logout_path && (method == Method::GET || method == Method::POST) {
                if !shared.same_site_logout(&method, request.headers()) {
                    return Ok(confirm_logout(request.headers(), &config.logout_path));
                }
                return Ok(Box::pin(shared.logout(request.headers())).await);
            }
            if path == config.backchannel_logout_path && method == Method::POST {
                use http_body_util::BodyExt as _;
                let limited = http_body_util::Limited::new(request.into_body(), MAX_FORM_BYTES);
                return Ok(match limited.collect().await {
                    Ok(collected) => {
                        Box::pin(shared.backchannel_logout(&collected.to_bytes())).await
                    }
                    Err(_) => error_response(
                        &HeaderMap::new(),
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "invalid_request",
                        "body too large",
                    ),
                });
            }
            let update = match shared.current_session(request.headers()).await {
                Ok((session, update)) => {
                    if let Some(session) = session {
                        request.extensions_mut().insert(SessionUser(session));
                    }
                    update
                }
                Err(e) => {
                    tracing::warn!(error = %e, "session store unavailable");
                    return Ok(unavailable(
                        request.headers(),
                        "the session store is unavailable; try again shortly",
                        "2",
                    ));
                }
            };
            let mut response = inner.call(request).await?;
            shared.update_cookie(&mut response, update);
            Ok(response)
        })
    }
}

#[cfg(test)]
mod sealed_key_tests {
    use super::*;

    #[test]
    fn a_shared_tail_is_not_a_match() {
        let cache: quick_cache::sync::Cache<Sealed, u32> = quick_cache::sync::Cache::new(16);
        let tail = [b'T'; 32];
        let victim = [b"v1.victim-".as_slice(), &tail].concat();
        let forged = [b"v1.forged-".as_slice(), &tail].concat();
        cache.insert(Sealed(victim.clone()), 1);
        assert_eq!(cache.get(&SealedRef(&victim)), Some(1));
        assert_eq!(
            cache.get(&SealedRef(&forged)),
            None,
            "same hash, other bytes"
        );
        assert_eq!(cache.get(&SealedRef(&tail)), None, "the tail alone");
        let short = b"v1.x";
        cache.insert(Sealed(short.to_vec()), 2);
        assert_eq!(cache.get(&SealedRef(short)), Some(2));
    }
}
