//! RFC 6750 §3 error responses: status, `WWW-Authenticate: Bearer …` challenge and a JSON body
//! `{"error","error_description"}` (DESIGN §3).

use std::sync::Arc;
use std::time::Duration;

use axum_core::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};
use oidcgate_core::validate::ValidationError;
use serde_json::json;

/// The realm in challenges unless configured otherwise.
pub const DEFAULT_REALM: &str = "oidcgate";

/// Why a request was refused.
#[derive(Debug, Clone)]
pub enum BearerError {
    /// No bearer token: 401 without an error code.
    Missing,
    /// More than one `Authorization` header: 400 `invalid_request`.
    InvalidRequest(&'static str),
    /// The token failed validation: 401 `invalid_token`, or 503 when keys are unavailable.
    Invalid(ValidationError),
    /// Authenticated but lacking scopes: 403 `insufficient_scope`.
    InsufficientScope(Arc<[String]>),
}

impl BearerError {
    /// The response for this error with the given realm.
    pub fn into_response_with_realm(self, realm: &str) -> Response {
        let (status, code, description, scope, retry_after) = match &self {
            Self::Missing => (
                StatusCode::UNAUTHORIZED,
                None,
                "bearer token required".to_owned(),
                None,
                None,
            ),
            Self::InvalidRequest(why) => (
                StatusCode::BAD_REQUEST,
                Some("invalid_request"),
                (*why).to_owned(),
                None,
                None,
            ),
            Self::Invalid(e) => match e.retry_after() {
                Some(retry) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Some("temporarily_unavailable"),
                    "the token issuer's signing keys are not available yet".to_owned(),
                    None,
                    Some(retry),
                ),
                None => (
                    StatusCode::UNAUTHORIZED,
                    Some("invalid_token"),
                    e.to_string(),
                    None,
                    None,
                ),
            },
            Self::InsufficientScope(scopes) => (
                StatusCode::FORBIDDEN,
                Some("insufficient_scope"),
                "the token lacks a required scope".to_owned(),
                Some(scopes.join(" ")),
                None,
            ),
        };
        let description = sanitize(&description);
        let mut body = json!({
            "error": code.unwrap_or("unauthorized"),
            "error_description": description,
        });
        if let Some(scope) = &scope {
            body["scope"] = json!(scope);
        }
        let mut response = (status, body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if status != StatusCode::SERVICE_UNAVAILABLE {
            let mut challenge = format!("Bearer realm=\"{}\"", sanitize(realm));
            if let Some(code) = code {
                challenge.push_str(&format!(
                    ", error=\"{code}\", error_description=\"{description}\""
                ));
            }
            if let Some(scope) = &scope {
                challenge.push_str(&format!(", scope=\"{}\"", sanitize(scope)));
            }
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                headers.insert(WWW_AUTHENTICATE, value);
            }
        }
        if let Some(retry) = retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(retry_secs(retry)));
        }
        response
    }
}

impl IntoResponse for BearerError {
    fn into_response(self) -> Response {
        self.into_response_with_realm(DEFAULT_REALM)
    }
}

fn retry_secs(d: Duration) -> u64 {
    d.as_secs().max(1)
}

/// RFC 6750 §3: `error_description` and `scope` use only %x20-21 / %x23-5B / %x5D-7E (no `"`
/// or `\`, printable ASCII). Anything else becomes a space; length is bounded.
fn sanitize(s: &str) -> String {
    s.chars()
        .take(200)
        .map(|c| {
            if (' '..='~').contains(&c) && c != '"' && c != '\\' {
                c
            } else {
                ' '
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_are_header_safe() {
        assert_eq!(sanitize("a\"b\\c\nd é"), "a b c d  ");
        let r = BearerError::InvalidRequest("x\"y").into_response_with_realm("r\"");
        let challenge = r.headers()[WWW_AUTHENTICATE].to_str().unwrap();
        assert_eq!(
            challenge,
            "Bearer realm=\"r \", error=\"invalid_request\", error_description=\"x y\""
        );
    }
}
