//! Userinfo (OIDC Core §5.3), token introspection (RFC 7662) and revocation (RFC 7009).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::pages::OAuthError;
use super::token::{authenticate_client, parse_form};
use super::{AppState, now};
use crate::store::{RefreshState, hash_token};
use crate::tokens::{user_claims, verify_own_access_token};

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn userinfo_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut r = (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response();
    let challenge = format!(
        "Bearer realm=\"oidcgate-idp\", error=\"{error}\", error_description=\"{description}\""
    );
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

fn userinfo(idp: &crate::Idp, token: Option<&str>) -> Response {
    let Some(token) = token else {
        let mut r = (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_token", "error_description": "bearer token required"})),
        )
            .into_response();
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"oidcgate-idp\""),
        );
        return r;
    };
    // The IdP's userinfo accepts its own access tokens whatever their audience (DESIGN §5).
    let Some(claims) = verify_own_access_token(&idp.keys, &idp.issuer, token, now()) else {
        return userinfo_error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the access token is invalid or expired",
        );
    };
    if claims
        .get("jti")
        .and_then(Value::as_str)
        .is_some_and(|j| idp.store.is_jti_revoked(j))
    {
        return userinfo_error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the access token was revoked",
        );
    }
    let scope = claims.get("scope").and_then(Value::as_str).unwrap_or("");
    if !scope.split(' ').any(|s| s == "openid") {
        return userinfo_error(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            "userinfo needs the openid scope",
        );
    }
    let sub = claims.get("sub").and_then(Value::as_str).unwrap_or("");
    let Some(user) = idp.directory.user_by_sub(sub) else {
        return userinfo_error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the token's user no longer exists",
        );
    };
    let mut r = Json(Value::Object(user_claims(user, scope))).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `GET /userinfo` with `Authorization: Bearer`.
pub async fn userinfo_get(State(idp): State<AppState>, headers: HeaderMap) -> Response {
    let state = idp.clone();
    super::blocking(&idp, move || userinfo(&state, bearer(&headers))).await
}

/// `POST /userinfo`: the token in the header or as `access_token` in the form body.
pub async fn userinfo_post(
    State(idp): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let state = idp.clone();
    super::blocking(&idp, move || userinfo_post_inner(&state, &headers, &body)).await
}

fn userinfo_post_inner(idp: &crate::Idp, headers: &HeaderMap, body: &[u8]) -> Response {
    let form = match parse_form(body) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    match (bearer(headers), form.get("access_token")) {
        (Some(_), Some(_)) => userinfo_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "use one way to send the token",
        ),
        (Some(t), None) => userinfo(idp, Some(t)),
        (None, t) => userinfo(idp, t.map(String::as_str)),
    }
}

/// `POST /introspect` (client authenticated; public clients may not introspect).
pub async fn introspect(State(idp): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let state = idp.clone();
    super::blocking(&idp, move || introspect_inner(state, headers, body)).await
}

fn introspect_inner(idp: AppState, headers: HeaderMap, body: Bytes) -> Response {
    let result = (|| -> Result<Value, OAuthError> {
        let params = parse_form(&body)?;
        let client = authenticate_client(&idp, &headers, &params, false)?;
        let token = params
            .get("token")
            .ok_or_else(|| OAuthError::new("invalid_request", "token is required"))?;
        Ok(introspection(
            &idp,
            &client.client_id,
            token,
            params.get("token_type_hint").map(String::as_str),
        ))
    })();
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

fn introspection(idp: &crate::Idp, caller: &str, token: &str, _hint: Option<&str>) -> Value {
    let now = now();
    if let Some(claims) = verify_own_access_token(&idp.keys, &idp.issuer, token, now) {
        let revoked = claims
            .get("jti")
            .and_then(Value::as_str)
            .is_some_and(|j| idp.store.is_jti_revoked(j));
        // RFC 7662 §4: only the client the token was issued to, or the API it is for (a client
        // whose id is the audience), learns about it.
        let issued_to = claims.get("client_id").and_then(Value::as_str) == Some(caller);
        let audience = match claims.get("aud") {
            Some(Value::String(a)) => a == caller,
            Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(caller)),
            _ => false,
        };
        if !revoked && (issued_to || audience) {
            let mut out = json!({"active": true, "token_type": "Bearer"});
            for name in [
                "scope",
                "client_id",
                "sub",
                "aud",
                "iss",
                "exp",
                "iat",
                "jti",
                "sid",
            ] {
                if let Some(v) = claims.get(name) {
                    out[name] = v.clone();
                }
            }
            return out;
        }
        return json!({"active": false});
    }
    match idp.store.refresh(&hash_token(token)) {
        Some(r)
            if r.state == RefreshState::Active && r.expires_at > now && r.client_id == caller =>
        {
            json!({
                "active": true,
                "token_type": "refresh_token",
                "scope": r.scope,
                "client_id": r.client_id,
                "sub": r.sub,
                "iss": idp.issuer,
                "exp": r.expires_at,
            })
        }
        _ => json!({"active": false}),
    }
}

/// `POST /revoke`: always 200 for a well-formed request (RFC 7009 §2.2), even for unknown
/// tokens; a client may revoke only its own tokens. Revoking a refresh token revokes its
/// family and the access tokens issued with it.
pub async fn revoke(State(idp): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let state = idp.clone();
    super::blocking(&idp, move || revoke_inner(state, headers, body)).await
}

fn revoke_inner(idp: AppState, headers: HeaderMap, body: Bytes) -> Response {
    let result = (|| -> Result<(), OAuthError> {
        let params = parse_form(&body)?;
        let client = authenticate_client(&idp, &headers, &params, true)?;
        let token = params
            .get("token")
            .ok_or_else(|| OAuthError::new("invalid_request", "token is required"))?;
        if let Some(record) = idp.store.refresh(&hash_token(token)) {
            if record.client_id == client.client_id {
                idp.store.revoke_family(&record.family);
            }
            return Ok(());
        }
        if let Some(claims) = verify_own_access_token(&idp.keys, &idp.issuer, token, now())
            && claims.get("client_id").and_then(Value::as_str) == Some(client.client_id.as_str())
            && let (Some(jti), Some(exp)) = (
                claims.get("jti").and_then(Value::as_str),
                claims.get("exp").and_then(Value::as_i64),
            )
        {
            idp.store.revoke_jti(jti, exp);
        }
        Ok(())
    })();
    match result {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => e.into_response(),
    }
}
