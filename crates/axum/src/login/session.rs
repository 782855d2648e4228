//! What a signed-in session holds, how it is stored in the encrypted cookie, and the
//! [`SessionUser`] extractor.

use std::sync::Arc;

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};

/// The session payload (inside the encrypted cookie). Keep it small: the cookie budget is
/// 3 × 3,800 bytes.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionData {
    /// Random session id (for revocation at logout).
    pub id: String,
    pub sub: String,
    /// The IdP's `sid`, for back-channel logout.
    pub idp_sid: Option<String>,
    pub email: Option<String>,
    pub email_verified: Option<bool>,
    pub name: Option<String>,
    pub preferred_username: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// The ID token, sent back as `id_token_hint` at logout.
    pub id_token: Option<String>,
    pub created_at: i64,
    /// Absolute end (`SESSION_MAX_AGE` after login).
    pub expires_at: i64,
    /// The provider's tokens, kept only when something uses them
    /// ([`super::LoginConfig::keep_tokens`]: passing the access token on, refresh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<SessionTokens>,
}

/// The tokens a session keeps. `Debug` hides them.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionTokens {
    pub access_token: String,
    /// When the access token expires (from `expires_in`; unknown: never refreshed).
    pub access_expires_at: Option<i64>,
    pub refresh_token: Option<String>,
    /// The login's nonce: a refreshed ID token that carries one must repeat it (OIDC Core
    /// §12.2).
    pub nonce: String,
}

impl std::fmt::Debug for SessionTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionTokens")
            .field("access_expires_at", &self.access_expires_at)
            .field("has_refresh_token", &self.refresh_token.is_some())
            .finish_non_exhaustive()
    }
}

impl SessionData {
    /// The access token, when the session keeps one.
    pub fn access_token(&self) -> Option<&str> {
        self.tokens.as_ref().map(|t| t.access_token.as_str())
    }
}

impl std::fmt::Debug for SessionData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionData")
            .field("sub", &self.sub)
            .field("email", &self.email)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// The signed-in user of a request (inserted by the login layer when the session is valid).
#[derive(Debug, Clone)]
pub struct SessionUser(pub Arc<SessionData>);

impl std::ops::Deref for SessionUser {
    type Target = SessionData;

    fn deref(&self) -> &SessionData {
        &self.0
    }
}

/// Refusal of the [`SessionUser`] extractor: 401 (the layer that redirects browsers is
/// [`super::RequireLoginLayer`]).
#[derive(Debug)]
pub struct LoginRequired;

impl IntoResponse for LoginRequired {
    fn into_response(self) -> Response {
        super::pages::error_response(
            &HeaderMap::new(),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "login required",
        )
    }
}

impl<S: Send + Sync> FromRequestParts<S> for SessionUser {
    type Rejection = LoginRequired;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<SessionUser>()
            .cloned()
            .ok_or(LoginRequired)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for SessionUser {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<SessionUser>().cloned())
    }
}

/// Every `name=value` pair of the request's `Cookie` headers (pairs that are not UTF-8 are
/// left out).
pub fn request_cookies(headers: &HeaderMap) -> Vec<(&str, &str)> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|v| cookie_pairs(v.as_bytes()))
        .filter_map(|(name, value)| {
            Some((
                std::str::from_utf8(name).ok()?,
                std::str::from_utf8(value).ok()?,
            ))
        })
        .collect()
}

/// The `name=value` pairs of one `Cookie` header value, as bytes, whitespace around each pair
/// trimmed; pieces without `=` are skipped. Runs on every request over cookies of several KB,
/// so it splits with `memchr` (vectorised) instead of validating and splitting a `str`.
pub fn cookie_pairs(value: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut rest = Some(value);
    std::iter::from_fn(move || {
        loop {
            let current = rest?;
            let (pair, next) = match memchr::memchr(b';', current) {
                Some(i) => (&current[..i], Some(&current[i + 1..])),
                None => (current, None),
            };
            rest = next;
            let pair = pair.trim_ascii();
            if let Some(eq) = memchr::memchr(b'=', pair) {
                return Some((&pair[..eq], &pair[eq + 1..]));
            }
        }
    })
}
