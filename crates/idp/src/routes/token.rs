//! The token endpoint (RFC 6749 §3.2, §4.1.3, §4.4, §6; RFC 7636 §4.6) and client
//! authentication (`client_secret_basic` with form-urlencoded id and secret per RFC 6749
//! §2.3.1, `client_secret_post`, `none` for public clients).

use std::collections::HashMap;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};

use super::pages::OAuthError;
use super::{AppState, now};
use crate::config::{AuthMethod, Client};
use crate::store::{RefreshRecord, RefreshState, hash_token};
use crate::tokens::{self, AccessGrant, IdClaims, random_token};

type Params = HashMap<String, String>;

/// Reads the form body, refusing repeated parameters (RFC 6749 §3.2: parameters must not be
/// included more than once).
pub fn parse_form(body: &[u8]) -> Result<Params, OAuthError> {
    let mut params = Params::new();
    for (k, v) in url::form_urlencoded::parse(body) {
        if params
            .insert(k.clone().into_owned(), v.into_owned())
            .is_some()
        {
            return Err(OAuthError::new(
                "invalid_request",
                format!("parameter {k} is repeated"),
            ));
        }
    }
    Ok(params)
}

fn form_decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// Authenticates the client of a token, introspection or revocation request.
pub fn authenticate_client<'a>(
    idp: &'a crate::Idp,
    headers: &HeaderMap,
    params: &Params,
    allow_public: bool,
) -> Result<&'a Client, OAuthError> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .map(|(_, creds)| creds.trim());
    let (client_id, secret, via_basic) = match (basic, params.get("client_secret")) {
        (Some(_), Some(_)) => {
            return Err(OAuthError::new(
                "invalid_request",
                "use one client authentication method",
            ));
        }
        (Some(creds), None) => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(creds)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| OAuthError::invalid_client(true))?;
            let (id, secret) = decoded
                .split_once(':')
                .ok_or_else(|| OAuthError::invalid_client(true))?;
            let id = form_decode(id).ok_or_else(|| OAuthError::invalid_client(true))?;
            let secret = form_decode(secret).ok_or_else(|| OAuthError::invalid_client(true))?;
            if params
                .get("client_id")
                .is_some_and(|form_id| *form_id != id)
            {
                return Err(OAuthError::new(
                    "invalid_request",
                    "client_id differs from the authenticated client",
                ));
            }
            (id, Some(secret), true)
        }
        (None, secret) => {
            let id = params
                .get("client_id")
                .cloned()
                .ok_or_else(|| OAuthError::invalid_client(false))?;
            (id, secret.cloned(), false)
        }
    };
    let client = idp
        .directory
        .client(&client_id)
        .ok_or_else(|| OAuthError::invalid_client(via_basic))?;
    match (&client.client_secret, secret) {
        (Some(expected), Some(given)) if expected.verify(&given) => {
            // Secret clients accept basic and post alike (as most providers do).
            debug_assert!(client.auth_method() != AuthMethod::None);
            Ok(client)
        }
        (None, None) if allow_public && client.auth_method() == AuthMethod::None => Ok(client),
        _ => Err(OAuthError::invalid_client(via_basic)),
    }
}

/// `POST /token`.
pub async fn token(
    State(idp): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    // Signing (RSA ~250 µs) and a SQLite store both run off the async workers.
    let state = idp.clone();
    super::blocking(&idp, move || token_response(&state, &headers, &body)).await
}

fn token_response(idp: &crate::Idp, headers: &HeaderMap, body: &[u8]) -> Response {
    match token_inner(idp, headers, body) {
        Ok(v) => {
            let mut r = Json(v).into_response();
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r.headers_mut()
                .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            r
        }
        Err(e) => e.into_response(),
    }
}

fn token_inner(idp: &crate::Idp, headers: &HeaderMap, body: &[u8]) -> Result<Value, OAuthError> {
    let params = parse_form(body)?;
    let client = authenticate_client(idp, headers, &params, true)?;
    let grant = params
        .get("grant_type")
        .map(String::as_str)
        .unwrap_or_default();
    if !client.allows_grant(grant)
        && matches!(
            grant,
            "authorization_code" | "refresh_token" | "client_credentials"
        )
    {
        return Err(OAuthError::new(
            "unauthorized_client",
            format!("the client may not use {grant}"),
        ));
    }
    match grant {
        "authorization_code" => authorization_code(idp, client, &params),
        "refresh_token" => refresh(idp, client, &params),
        "client_credentials" => client_credentials(idp, client, &params),
        super::device::GRANT => {
            if !client.allows_grant(grant) {
                return Err(OAuthError::new(
                    "unauthorized_client",
                    "the client may not use the device grant",
                ));
            }
            let approved = super::device::poll(idp, client, &params)?;
            let issued = issue_user_tokens(
                idp,
                client,
                &approved.sub,
                &approved.scope,
                None,
                approved.auth_time,
                &approved.sid,
                None,
            )?;
            Ok(issued.response)
        }
        "" => Err(OAuthError::new("invalid_request", "grant_type is required")),
        _ => Err(OAuthError::new(
            "unsupported_grant_type",
            "unsupported grant_type",
        )),
    }
}

fn server_error(e: impl std::fmt::Display) -> OAuthError {
    tracing::error!(error = %e, "token signing failed");
    OAuthError::server("could not sign the token")
}

/// A token response and what it created (for revoking it if its code is reused).
struct Issued {
    response: Value,
    family: Option<String>,
    jtis: Vec<(String, i64)>,
}

/// Issues access (+ ID, + refresh) tokens for a user grant.
#[allow(clippy::too_many_arguments)]
fn issue_user_tokens(
    idp: &crate::Idp,
    client: &Client,
    sub: &str,
    scope: &str,
    nonce: Option<&str>,
    auth_time: i64,
    sid: &str,
    family: Option<String>,
) -> Result<Issued, OAuthError> {
    let user = idp
        .directory
        .user_by_sub(sub)
        .ok_or_else(|| OAuthError::new("invalid_grant", "the user no longer exists"))?;
    let now = now();
    let grant = AccessGrant {
        client,
        sub,
        scope,
        auth_time: Some(auth_time),
        sid: Some(sid),
    };
    let (access, jti, exp) = tokens::access_token(
        &idp.keys,
        &idp.issuer,
        &grant,
        now,
        idp.lifetimes.access_token.as_secs() as i64,
    )
    .map_err(server_error)?;
    idp.store.add_session_client(sid, &client.client_id);
    let mut response = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": idp.lifetimes.access_token.as_secs(),
        "scope": scope,
    });
    let has = |s: &str| scope.split(' ').any(|x| x == s);
    if has("openid") {
        let claims = IdClaims {
            client,
            user,
            scope,
            nonce,
            auth_time,
            sid,
            access_token: Some(&access),
        };
        let id = tokens::id_token(
            &idp.keys,
            &idp.issuer,
            &claims,
            now,
            idp.lifetimes.id_token.as_secs() as i64,
        )
        .map_err(server_error)?;
        response["id_token"] = json!(id);
    }
    let mut family_out = None;
    if client.allows_grant("refresh_token") || has("offline_access") {
        let family = family.unwrap_or_else(random_token);
        let refresh = random_token();
        idp.store.put_refresh(
            hash_token(&refresh),
            RefreshRecord {
                family: family.clone(),
                client_id: client.client_id.clone(),
                sub: sub.to_owned(),
                scope: scope.to_owned(),
                sid: sid.to_owned(),
                auth_time,
                expires_at: now + idp.lifetimes.refresh_token.as_secs() as i64,
                state: RefreshState::Active,
            },
        );
        idp.store.record_family_jti(&family, jti.clone(), exp);
        response["refresh_token"] = json!(refresh);
        family_out = Some(family);
    }
    Ok(Issued {
        response,
        family: family_out,
        jtis: vec![(jti, exp)],
    })
}

fn authorization_code(
    idp: &crate::Idp,
    client: &Client,
    params: &Params,
) -> Result<Value, OAuthError> {
    let code = params
        .get("code")
        .ok_or_else(|| OAuthError::new("invalid_request", "code is required"))?;
    let hash = hash_token(code);
    let invalid = || {
        OAuthError::new(
            "invalid_grant",
            "the authorization code is invalid, expired or used",
        )
    };
    // The bindings first: someone who is not the client, or has the wrong redirect URI or PKCE
    // verifier, must not be able to burn (or trigger revocation through) a code they saw.
    let bound = idp.store.code(&hash).ok_or_else(invalid)?;
    if bound.client_id != client.client_id {
        return Err(invalid());
    }
    if params.get("redirect_uri") != Some(&bound.redirect_uri) {
        return Err(OAuthError::new(
            "invalid_grant",
            "redirect_uri does not match the authorization request",
        ));
    }
    match (&bound.code_challenge, params.get("code_verifier")) {
        (Some(challenge), Some(verifier)) => {
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
            let computed = oidcgate_core::jose::b64::encode(digest);
            if verify_slices_are_equal(computed.as_bytes(), challenge.as_bytes()).is_err() {
                return Err(OAuthError::new("invalid_grant", "PKCE verification failed"));
            }
        }
        (Some(_), None) => {
            return Err(OAuthError::new(
                "invalid_grant",
                "code_verifier is required",
            ));
        }
        (None, Some(_)) => {
            return Err(OAuthError::new(
                "invalid_grant",
                "no code_challenge was sent for this code",
            ));
        }
        (None, None) => {}
    }
    let grant = idp.store.use_code(&hash).ok_or_else(invalid)?;
    if grant.used {
        // RFC 6749 §4.1.2: a reused code revokes what it issued — also what a first exchange
        // still in flight is about to issue (it sees the mark when it records).
        idp.store.mark_code_compromised(&hash);
        revoke_issued(idp, grant.issued_family.as_deref(), &grant.issued_jtis);
        tracing::warn!(client = %client.client_id, "authorization code reused: tokens issued from it revoked");
        return Err(invalid());
    }
    if grant.expires_at <= now() {
        return Err(invalid());
    }
    let issued = issue_user_tokens(
        idp,
        client,
        &grant.sub,
        &grant.scope,
        grant.nonce.as_deref(),
        grant.auth_time,
        &grant.sid,
        None,
    )?;
    if !idp
        .store
        .record_code_issue(&hash, issued.family.clone(), issued.jtis.clone())
    {
        revoke_issued(idp, issued.family.as_deref(), &issued.jtis);
        return Err(invalid());
    }
    Ok(issued.response)
}

/// Revokes a refresh family and access-token ids.
fn revoke_issued(idp: &crate::Idp, family: Option<&str>, jtis: &[(String, i64)]) {
    if let Some(family) = family {
        idp.store.revoke_family(family);
    }
    for (jti, exp) in jtis {
        idp.store.revoke_jti(jti, *exp);
    }
}

fn refresh(idp: &crate::Idp, client: &Client, params: &Params) -> Result<Value, OAuthError> {
    let token = params
        .get("refresh_token")
        .ok_or_else(|| OAuthError::new("invalid_request", "refresh_token is required"))?;
    let hash = hash_token(token);
    let invalid = || {
        OAuthError::new(
            "invalid_grant",
            "the refresh token is invalid, expired or revoked",
        )
    };
    let record = idp.store.refresh(&hash).ok_or_else(invalid)?;
    if record.client_id != client.client_id {
        return Err(invalid());
    }
    // A rotated token presented again means someone holds a copy: revoke the whole family.
    // `rotate_refresh` failing on an active token is the same race, lost by this request.
    let reused = match record.state {
        RefreshState::Active => !idp.store.rotate_refresh(&hash),
        RefreshState::Rotated => true,
        RefreshState::Revoked => return Err(invalid()),
    };
    if reused {
        idp.store.revoke_family(&record.family);
        tracing::warn!(client = %client.client_id, "refresh token reused: family revoked");
        return Err(invalid());
    }
    if record.expires_at <= now() {
        return Err(invalid());
    }
    let scope = match params.get("scope") {
        None => record.scope.clone(),
        Some(requested) => {
            let granted: Vec<&str> = record.scope.split(' ').collect();
            if requested
                .split(' ')
                .any(|s| !s.is_empty() && !granted.contains(&s))
            {
                return Err(OAuthError::new(
                    "invalid_scope",
                    "a refresh cannot widen the scope",
                ));
            }
            requested.clone()
        }
    };
    let issued = issue_user_tokens(
        idp,
        client,
        &record.sub,
        &scope,
        None,
        record.auth_time,
        &record.sid,
        Some(record.family.clone()),
    )?;
    Ok(issued.response)
}

fn client_credentials(
    idp: &crate::Idp,
    client: &Client,
    params: &Params,
) -> Result<Value, OAuthError> {
    if client.is_public() {
        return Err(OAuthError::new(
            "unauthorized_client",
            "public clients cannot use client_credentials",
        ));
    }
    let scope = params.get("scope").map(String::as_str).unwrap_or("");
    // A client without a scope list may ask for any API scope; user scopes make no sense here.
    let allowed = |s: &str| {
        s != "openid" && (client.scopes.is_empty() || client.scopes.iter().any(|c| c == s))
    };
    if let Some(bad) = scope.split(' ').find(|s| !s.is_empty() && !allowed(s)) {
        return Err(OAuthError::new(
            "invalid_scope",
            format!("scope {bad} is not allowed"),
        ));
    }
    let grant = AccessGrant {
        client,
        sub: &client.client_id,
        scope,
        auth_time: None,
        sid: None,
    };
    let (access, _, _) = tokens::access_token(
        &idp.keys,
        &idp.issuer,
        &grant,
        now(),
        idp.lifetimes.access_token.as_secs() as i64,
    )
    .map_err(server_error)?;
    Ok(json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": idp.lifetimes.access_token.as_secs(),
        "scope": scope,
    }))
}
