//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0) and back-channel logout
//! (OpenID Connect Back-Channel Logout 1.0 §2.4–2.5): ending the IdP session tells every
//! client that received tokens in it and registered a `backchannel_logout_uri`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use oidcgate_core::http::{HttpClient, HttpLimits, HttpRequest, Method, ReqwestClient};
use oidcgate_core::jose::{Algorithm, AlgorithmSet, UnverifiedJwt};
use serde_json::{Value, json};

use super::pages::{error_page, escape, page};
use super::{AppState, CSRF_COOKIE, SESSION_COOKIE, cookie, cookie_attributes, now};
use crate::store::{IdpSession, hash_token};
use crate::tokens::random_token;

type Params = HashMap<String, String>;

/// The event that marks a logout token (Back-Channel Logout §2.4).
pub const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// What an `id_token_hint` says about whom to sign out.
struct Hint {
    client_id: String,
    sid: Option<String>,
    sub: Option<String>,
}

/// Reads an `id_token_hint`: an ID token of ours (our signature and issuer, not an access or
/// logout token, issued to a registered client); expiry is not required (the RP may log out
/// long after the token expired).
fn read_hint(idp: &crate::Idp, hint: &str) -> Option<Hint> {
    let jwt = UnverifiedJwt::parse(hint).ok()?;
    if jwt
        .header()
        .typ()
        .is_some_and(|t| !t.eq_ignore_ascii_case("JWT"))
    {
        return None;
    }
    let allowed: AlgorithmSet = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA]
        .into_iter()
        .collect();
    let claims = jwt
        .verify(idp.keys.snapshot().verification_keys(), allowed)
        .ok()?
        .claims()
        .ok()?;
    if claims.get("iss").and_then(Value::as_str) != Some(idp.issuer.as_str()) {
        return None;
    }
    let client_id = match claims.get("aud") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a.first()?.as_str()?.to_owned(),
        _ => return None,
    };
    idp.directory.client(&client_id)?;
    let text = |k: &str| claims.get(k).and_then(Value::as_str).map(str::to_owned);
    Some(Hint {
        client_id,
        sid: text("sid"),
        sub: text("sub"),
    })
}

/// Where to send the user afterwards: a registered `post_logout_redirect_uri`, with `state`.
fn destination(
    idp: &crate::Idp,
    client_id: Option<&str>,
    params: &Params,
) -> Result<Option<String>, &'static str> {
    let Some(uri) = params
        .get("post_logout_redirect_uri")
        .filter(|u| !u.is_empty())
    else {
        return Ok(None);
    };
    let client = client_id.and_then(|id| idp.directory.client(id));
    match client {
        Some(c) if c.post_logout_uri_allowed(uri) => {
            let Ok(mut url) = url::Url::parse(uri) else {
                return Err("post_logout_redirect_uri is not a URL.");
            };
            if let Some(state) = params.get("state") {
                url.query_pairs_mut().append_pair("state", state);
            }
            Ok(Some(url.to_string()))
        }
        _ => Err(
            "post_logout_redirect_uri is not registered for this client (send id_token_hint or client_id).",
        ),
    }
}

/// `GET|POST /logout` (the `end_session_endpoint`). With a valid `id_token_hint` the session
/// ends at once; without one the user confirms on a page (so a third-party page cannot log
/// them out).
pub async fn end_session_get(
    State(idp): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
    let state = idp.clone();
    super::blocking(&idp, move || end_session(state, headers, params)).await
}

pub async fn end_session_post(
    State(idp): State<AppState>,
    headers: HeaderMap,
    Form(params): Form<Params>,
) -> Response {
    let state = idp.clone();
    super::blocking(&idp, move || end_session(state, headers, params)).await
}

fn end_session(idp: AppState, headers: HeaderMap, params: Params) -> Response {
    let hint = params.get("id_token_hint").filter(|h| !h.is_empty());
    let hinted = match hint.map(|h| read_hint(&idp, h)) {
        Some(None) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "The id_token_hint is not a valid ID token from this provider.",
            );
        }
        Some(Some(h)) => Some(h),
        None => None,
    };
    let client_id = match (&hinted, params.get("client_id")) {
        (Some(h), Some(id)) if h.client_id != *id => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "client_id does not match the id_token_hint.",
            );
        }
        (Some(h), _) => Some(h.client_id.clone()),
        (None, id) => id.cloned(),
    };
    let target = match destination(&idp, client_id.as_deref(), &params) {
        Ok(t) => t,
        Err(why) => return error_page(StatusCode::BAD_REQUEST, why),
    };
    let confirmed = params.contains_key("confirm")
        && cookie(&headers, CSRF_COOKIE)
            .zip(params.get("csrf"))
            .is_some_and(|(c, f)| {
                !f.is_empty() && verify_slices_are_equal(c.as_bytes(), f.as_bytes()).is_ok()
            });
    let key = cookie(&headers, SESSION_COOKIE).map(hash_token);
    let session = key.and_then(|k| idp.store.session(&k));
    // Sign out without asking only when the hint names this very session (RP-Initiated
    // Logout §2): anyone can hold *some* ID token of this IdP, and a third-party page must not
    // be able to end the user's session with it.
    let hint_is_this_session = match (&hinted, &session) {
        (Some(h), Some(s)) => match &h.sid {
            Some(sid) => *sid == s.sid,
            None => h.sub.as_deref() == Some(s.sub.as_str()),
        },
        _ => false,
    };
    if session.is_some() && !hint_is_this_session && !confirmed {
        return confirm_page(&idp.issuer, &params);
    }
    if let Some(key) = key
        && let Some(session) = idp.store.end_session(&key)
    {
        idp.store.revoke_for_session(&session.sid);
        notify_clients(&idp, &session.sid, &session);
    }
    let mut response = match target {
        Some(url) => Redirect::to(&url).into_response(),
        None => page(StatusCode::OK, "Signed out", "<p>You are signed out.</p>"),
    };
    let expired = format!(
        "{SESSION_COOKIE}={}",
        cookie_attributes(&idp.issuer, Some(0))
    );
    if let Ok(v) = HeaderValue::from_str(&expired) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

fn confirm_page(issuer: &str, params: &Params) -> Response {
    let csrf = random_token();
    let keep: String = [
        "post_logout_redirect_uri",
        "state",
        "client_id",
        "id_token_hint",
    ]
    .iter()
    .filter_map(|k| params.get(*k).map(|v| (k, v)))
    .map(|(k, v)| {
        format!(
            "<input type=\"hidden\" name=\"{k}\" value=\"{}\">",
            escape(v)
        )
    })
    .collect();
    let body = format!(
        "<p>Sign out of the oidcgate development IdP?</p><form method=\"post\" action=\"{}/logout\">{keep}\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button type=\"submit\" name=\"confirm\" value=\"1\">Sign out</button></form>",
        escape(issuer)
    );
    let mut r = page(StatusCode::OK, "Sign out", &body);
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{CSRF_COOKIE}={csrf}{}",
        cookie_attributes(issuer, Some(600))
    )) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

/// A logout token for one client (Back-Channel Logout §2.4): no `nonce`, an `events` claim,
/// `sid` and `sub`, `typ` `logout+jwt`.
pub fn logout_token(idp: &crate::Idp, client_id: &str, sid: &str, sub: &str) -> Option<String> {
    let now = now();
    let claims = json!({
        "iss": idp.issuer,
        "aud": client_id,
        "iat": now,
        "exp": now + 120,
        "jti": random_token(),
        "sub": sub,
        "sid": sid,
        "events": { LOGOUT_EVENT: {} },
    });
    idp.keys
        .signer(Algorithm::RS256)?
        .sign_jwt(Some("logout+jwt"), &claims)
        .ok()
}

/// POSTs logout tokens to every client of the session that registered a back-channel URI.
/// Runs in the background with short timeouts; failures are logged (the user is signed out at
/// the IdP either way).
fn notify_clients(idp: &AppState, sid: &str, session: &IdpSession) {
    let targets: Vec<(String, String)> = session
        .clients
        .iter()
        .filter_map(|id| idp.directory.client(id))
        .filter_map(|c| Some((c.client_id.clone(), c.backchannel_logout_uri.clone()?)))
        .collect();
    if targets.is_empty() {
        return;
    }
    let limits = HttpLimits {
        connect_timeout: Duration::from_secs(2),
        total_timeout: Duration::from_secs(5),
        max_body_bytes: 16 * 1024,
    };
    let Ok(http) = ReqwestClient::new(limits) else {
        tracing::warn!("back-channel logout: no HTTP client");
        return;
    };
    let http = Arc::new(http);
    for (client_id, uri) in targets {
        let Some(token) = logout_token(idp, &client_id, sid, &session.sub) else {
            continue;
        };
        let Ok(url) = url::Url::parse(&uri) else {
            continue;
        };
        let http = http.clone();
        tokio::spawn(async move {
            let body = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("logout_token", &token)
                .finish();
            let request = HttpRequest {
                method: Method::Post,
                url,
                headers: vec![(
                    "content-type".into(),
                    "application/x-www-form-urlencoded".into(),
                )],
                body: Some(body.into_bytes()),
            };
            match http.execute(request).await {
                Ok(r) if (200..300).contains(&r.status) => {
                    tracing::info!(client = %client_id, "back-channel logout delivered")
                }
                Ok(r) => {
                    tracing::warn!(client = %client_id, status = r.status, "back-channel logout refused")
                }
                Err(e) => {
                    tracing::warn!(client = %client_id, error = %e, "back-channel logout failed")
                }
            }
        });
    }
}
