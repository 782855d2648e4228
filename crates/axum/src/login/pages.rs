//! Error answers of the login routes: HTML for browsers (`Accept` lists `text/html`), JSON
//! `{error, error_description}` otherwise; everything from outside is escaped.

use axum_core::body::Body;
use axum_core::response::Response;
use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::json;

/// Whether the client is a browser (its `Accept` lists `text/html`).
pub fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().starts_with("text/html")))
}

/// Escapes text for HTML.
pub fn escape(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

/// An error page or JSON error.
/// What a login route says while the identity provider cannot be reached.
pub const PROVIDER_UNREACHABLE: &str =
    "sign-in is unavailable: the identity provider cannot be reached; try again shortly";

/// A 503 `temporarily_unavailable` answer (HTML or JSON, as [`error_response`]) with
/// `Retry-After: {retry_after}` seconds.
pub fn unavailable(request: &HeaderMap, description: &str, retry_after: &'static str) -> Response {
    let mut response = error_response(
        request,
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        description,
    );
    response.headers_mut().insert(
        http::header::RETRY_AFTER,
        HeaderValue::from_static(retry_after),
    );
    response
}

/// The answer to a sign-out that another site started (a link, an image or a form on a foreign
/// page): browsers get a page whose button posts the sign-out from this origin; other clients
/// a 403. Nothing is signed out until the user confirms.
pub fn confirm_logout(request: &HeaderMap, logout_path: &str) -> Response {
    if !wants_html(request) {
        return error_response(
            request,
            StatusCode::FORBIDDEN,
            "cross_site_logout",
            "a sign-out started by another site is not carried out; POST it from this site",
        );
    }
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sign out?</title></head>\
         <body><h1>Sign out?</h1><p>Another site asked to sign you out of this one.</p>\
         <form method=\"post\" action=\"{}\"><button type=\"submit\">Sign out</button></form>\
         <p><a href=\"/\">Stay signed in</a></p></body></html>",
        escape(logout_path)
    );
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The button must not be clickable inside another site's frame.
    headers.insert(
        http::header::X_FRAME_OPTIONS,
        HeaderValue::from_static("DENY"),
    );
    headers.insert(
        http::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("frame-ancestors 'none'"),
    );
    response
}

pub fn error_response(
    request: &HeaderMap,
    status: StatusCode,
    error: &str,
    description: &str,
) -> Response {
    let (content_type, body) = if wants_html(request) {
        (
            "text/html; charset=utf-8",
            format!(
                "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sign-in error</title></head>\
                 <body><h1>Sign-in error</h1><p>{}</p><p><a href=\"/\">Back to the start page</a></p></body></html>",
                escape(description)
            ),
        )
    } else {
        (
            "application/json",
            json!({"error": error, "error_description": description}).to_string(),
        )
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
