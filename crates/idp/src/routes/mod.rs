//! The IdP's HTTP endpoints, one module per job: [`discovery`] (metadata, JWKS),
//! [`authorize`] (authorization endpoint, login page, SSO session), [`device`] (RFC 8628),
//! [`token`] (token endpoint, client authentication), [`resource`] (userinfo, introspection,
//! revocation), [`logout`] (RP-initiated and back-channel logout), [`pages`] (escaped HTML and
//! OAuth error responses).

pub mod authorize;
pub mod device;
pub mod discovery;
pub mod logout;
pub mod pages;
pub mod resource;
pub mod token;

use std::sync::Arc;

use axum::Router;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};

use crate::Idp;

/// Shared state of the handlers.
pub type AppState = Arc<Idp>;

/// Cookie names (DESIGN §3): every face ignores cookies it does not own.
pub const SESSION_COOKIE: &str = "oidcgate_idp_session";
pub const CSRF_COOKIE: &str = "oidcgate_idp_csrf";

/// Form and query bodies larger than this are refused.
pub const MAX_FORM_BYTES: usize = 64 * 1024;

/// Builds the router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(discovery::openid_configuration),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(discovery::openid_configuration),
        )
        .route("/jwks", get(discovery::jwks))
        .route(
            "/authorize",
            get(authorize::authorize_get).post(authorize::authorize_post),
        )
        .route("/login", post(authorize::login))
        .route("/consent", post(authorize::consent))
        .route("/device_authorization", post(device::device_authorization))
        .route(
            "/device",
            get(device::verification_page).post(device::verification_submit),
        )
        .route("/token", post(token::token))
        .route(
            "/userinfo",
            get(resource::userinfo_get).post(resource::userinfo_post),
        )
        .route("/introspect", post(resource::introspect))
        .route("/revoke", post(resource::revoke))
        .route(
            "/logout",
            get(logout::end_session_get).post(logout::end_session_post),
        )
        .layer(axum::extract::DefaultBodyLimit::max(MAX_FORM_BYTES))
        .with_state(state)
}

/// Runs a request's work on tokio's blocking pool when the store may block (SQLite), inline
/// otherwise. A panic in `work` becomes a 500 page, never a hung connection.
pub async fn blocking(
    idp: &AppState,
    work: impl FnOnce() -> Response + Send + 'static,
) -> Response {
    if !idp.store.is_blocking() {
        return work();
    }
    match tokio::task::spawn_blocking(work).await {
        Ok(response) => response,
        Err(e) => {
            tracing::error!(error = %e, "request task failed");
            pages::error_page(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "Internal error.",
            )
        }
    }
}

/// The value of one of our cookies, ignoring everyone else's.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `Set-Cookie` attributes: `Secure` when the issuer is https.
pub fn cookie_attributes(issuer: &str, max_age: Option<i64>) -> String {
    let mut attrs = String::from("; Path=/; HttpOnly; SameSite=Lax");
    if issuer.starts_with("https://") {
        attrs.push_str("; Secure");
    }
    if let Some(age) = max_age {
        attrs.push_str(&format!("; Max-Age={age}"));
    }
    attrs
}
