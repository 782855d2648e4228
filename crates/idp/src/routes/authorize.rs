//! The authorization endpoint (OIDC Core §3.1.2, RFC 6749 §4.1, RFC 7636, RFC 9207) and the
//! login page. Requests that cannot be trusted to redirect (unknown client, unregistered
//! redirect URI) get an HTML error page; every other error goes back to the client's
//! redirect URI with `state` and `iss`.

use std::collections::HashMap;
use std::net::SocketAddr;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use axum::Form;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::pages::{error_page, escape, page};
use super::{AppState, CSRF_COOKIE, SESSION_COOKIE, cookie, cookie_attributes, now};
use crate::store::{
    AfterLogin, CodeGrant, IdpSession, PendingAuthorization, ResponseMode, hash_token,
};
use crate::tokens::random_token;

type Params = HashMap<String, String>;

/// The one inline script the IdP serves (auto-submitting the form_post page) and its CSP hash:
/// `sha256-` + base64 of SHA-256 of the script text.
const AUTO_SUBMIT_SCRIPT: &str = "document.getElementById('f').submit()";
const AUTO_SUBMIT_HASH: &str = "sha256-hhRCBeGskDqsYiPBwe9KjsHm7JB5QiWnQI8/BRQk/7E=";

/// Failed logins per username and address before a lockout, the window they count in, and the
/// lockout (DESIGN §5: 5 in 5 minutes → 30 s).
const MAX_FAILURES: usize = 5;
const FAILURE_WINDOW: i64 = 300;
const LOCKOUT: i64 = 30;

pub async fn authorize_get(
    State(idp): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
    let state = idp.clone();
    super::blocking(&idp, move || authorize(state, headers, params)).await
}

pub async fn authorize_post(
    State(idp): State<AppState>,
    headers: HeaderMap,
    Form(params): Form<Params>,
) -> Response {
    let state = idp.clone();
    super::blocking(&idp, move || authorize(state, headers, params)).await
}

/// Where and how to answer the client.
struct Reply<'a> {
    idp: &'a crate::Idp,
    redirect_uri: String,
    state: Option<String>,
    mode: ResponseMode,
}

impl Reply<'_> {
    fn send(&self, params: &[(&str, &str)]) -> Response {
        let mut all: Vec<(&str, &str)> = params.to_vec();
        if let Some(state) = &self.state {
            all.push(("state", state));
        }
        all.push(("iss", &self.idp.issuer));
        match self.mode {
            ResponseMode::Query => {
                let Ok(mut url) = url::Url::parse(&self.redirect_uri) else {
                    return error_page(
                        StatusCode::BAD_REQUEST,
                        "The redirect URI is not a valid URL.",
                    );
                };
                url.query_pairs_mut().extend_pairs(all);
                Redirect::to(url.as_str()).into_response()
            }
            ResponseMode::FormPost => {
                let fields: String = all
                    .iter()
                    .map(|(k, v)| {
                        format!(
                            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                            escape(k),
                            escape(v)
                        )
                    })
                    .collect();
                let body = format!(
                    "<form method=\"post\" action=\"{}\" id=\"f\">{fields}<noscript><button type=\"submit\">Continue</button></noscript></form>\
                     <script>{AUTO_SUBMIT_SCRIPT}</script>",
                    escape(&self.redirect_uri)
                );
                let mut r = page(StatusCode::OK, "Signing in", &body);
                // The auto-submit script is the one inline script this page has.
                r.headers_mut().insert(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_str(&format!(
                        "default-src 'none'; style-src 'unsafe-inline'; script-src '{AUTO_SUBMIT_HASH}'; form-action *; frame-ancestors 'none'"
                    ))
                    .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'")),
                );
                r
            }
        }
    }

    fn error(&self, error: &str, description: &str) -> Response {
        self.send(&[("error", error), ("error_description", description)])
    }
}

fn authorize(idp: AppState, headers: HeaderMap, params: Params) -> Response {
    let get = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let Some(client) = get("client_id").and_then(|id| idp.directory.client(id)) else {
        return error_page(StatusCode::BAD_REQUEST, "Unknown client_id.");
    };
    let Some(redirect_uri) = get("redirect_uri").filter(|r| client.redirect_uri_allowed(r)) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "The redirect_uri is missing or not registered for this client.",
        );
    };
    let mode = match get("response_mode") {
        None | Some("query") => Some(ResponseMode::Query),
        Some("form_post") => Some(ResponseMode::FormPost),
        Some(_) => None,
    };
    let reply = Reply {
        idp: &idp,
        redirect_uri: redirect_uri.to_owned(),
        state: get("state").map(str::to_owned),
        mode: mode.unwrap_or(ResponseMode::Query),
    };
    if mode.is_none() {
        return reply.error("invalid_request", "unsupported response_mode");
    }
    if get("request").is_some() || get("request_uri").is_some() {
        return reply.error("request_not_supported", "request objects are not supported");
    }
    if get("response_type") != Some("code") {
        return reply.error(
            "unsupported_response_type",
            "only response_type=code is supported",
        );
    }
    if !client.allows_grant("authorization_code") {
        return reply.error(
            "unauthorized_client",
            "the client may not use the authorization code grant",
        );
    }
    let scope = get("scope").unwrap_or("openid");
    if let Some(bad) = scope
        .split(' ')
        .find(|s| !s.is_empty() && !client.allows_scope(s))
    {
        return reply.error(
            "invalid_scope",
            &format!("scope {bad} is not allowed for this client"),
        );
    }
    let scope = scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let code_challenge = get("code_challenge");
    match (get("code_challenge_method"), code_challenge) {
        (Some("S256"), Some(c)) if is_pkce_value(c) => {}
        (None, None) if !client.is_public() => {}
        (None, None) => {
            return reply.error(
                "invalid_request",
                "public clients must use PKCE (code_challenge with S256)",
            );
        }
        (Some("plain") | None, Some(_)) => {
            return reply.error("invalid_request", "code_challenge_method must be S256");
        }
        _ => {
            return reply.error(
                "invalid_request",
                "invalid code_challenge or code_challenge_method",
            );
        }
    }
    let max_age = match get("max_age").map(str::parse::<i64>) {
        None => None,
        Some(Ok(v)) if v >= 0 => Some(v),
        Some(_) => return reply.error("invalid_request", "max_age must be a non-negative integer"),
    };
    let prompts: Vec<&str> = get("prompt")
        .map(|p| p.split(' ').collect())
        .unwrap_or_default();
    if prompts.contains(&"none") && prompts.len() > 1 {
        return reply.error("invalid_request", "prompt=none cannot be combined");
    }
    let now = now();
    let session = cookie(&headers, SESSION_COOKIE)
        .map(hash_token)
        .and_then(|key| Some((key, idp.store.session(&key)?)));
    let fresh_enough = |s: &IdpSession| max_age.is_none_or(|age| s.auth_time + age >= now);
    let pending = PendingAuthorization {
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.to_owned(),
        scope,
        state: reply.state.clone(),
        nonce: get("nonce").map(str::to_owned),
        code_challenge: code_challenge.map(str::to_owned),
        response_mode: reply.mode,
        max_age,
        prompt_consent: prompts.contains(&"consent"),
        expires_at: now + idp.lifetimes.login_request.as_secs() as i64,
    };
    match session {
        Some((_, s)) if !prompts.contains(&"login") && fresh_enough(&s) => {
            let ask = prompts.contains(&"consent");
            continue_signed_in(&idp, pending, &s, ask, prompts.contains(&"none"))
        }
        _ if prompts.contains(&"none") => {
            reply.error("login_required", "the user is not signed in")
        }
        _ => {
            let id = random_token();
            idp.store
                .put_pending(id.clone(), AfterLogin::Authorize(pending));
            login_page(&idp.issuer, &id, None, StatusCode::OK)
        }
    }
}

/// Issues the code, or first asks for consent when the client requires it and this session has
/// not consented to every requested scope (or `prompt=consent`).
fn continue_signed_in(
    idp: &AppState,
    pending: PendingAuthorization,
    session: &IdpSession,
    ask: bool,
    no_prompt: bool,
) -> Response {
    let needs = idp
        .directory
        .client(&pending.client_id)
        .is_some_and(|c| c.require_consent);
    let granted = |scope: &str| {
        session
            .consents
            .iter()
            .any(|(c, s)| *c == pending.client_id && s == scope)
    };
    let missing = pending
        .scope
        .split(' ')
        .any(|s| !s.is_empty() && !granted(s));
    if !(ask || needs && missing) {
        return issue_code(idp, &pending, session);
    }
    if no_prompt {
        // OIDC Core §3.1.2.1: with prompt=none no page may be shown.
        let reply = Reply {
            idp,
            redirect_uri: pending.redirect_uri.clone(),
            state: pending.state.clone(),
            mode: pending.response_mode,
        };
        return reply.error(
            "consent_required",
            "the user has not consented to this client",
        );
    }
    let id = random_token();
    let csrf = random_token();
    let scopes: String = pending
        .scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(|s| format!("<li>{}</li>", escape(s)))
        .collect();
    let body = format!(
        "<p><strong>{client}</strong> asks for:</p><ul>{scopes}</ul>\
         <form method=\"post\" action=\"{issuer}/consent\">\
         <input type=\"hidden\" name=\"request\" value=\"{id}\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <button type=\"submit\" name=\"approve\" value=\"1\">Allow</button> \
         <button type=\"submit\" name=\"deny\" value=\"1\">Deny</button></form>",
        client = escape(&pending.client_id),
        issuer = escape(&idp.issuer),
    );
    idp.store.put_pending(id, AfterLogin::Authorize(pending));
    let mut r = page(StatusCode::OK, "Allow access", &body);
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{CSRF_COOKIE}={csrf}{}",
        cookie_attributes(&idp.issuer, Some(600))
    )) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

#[derive(serde::Deserialize)]
pub struct ConsentForm {
    #[serde(default)]
    request: String,
    #[serde(default)]
    csrf: String,
    deny: Option<String>,
}

/// `POST /consent`: Allow (the first button) or Deny (`name="deny"`).
pub async fn consent(
    State(idp): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<ConsentForm>,
) -> Response {
    let state = idp.clone();
    super::blocking(&idp, move || consent_inner(state, headers, form)).await
}

fn consent_inner(idp: AppState, headers: HeaderMap, form: ConsentForm) -> Response {
    let csrf_ok = cookie(&headers, CSRF_COOKIE).is_some_and(|c| {
        !form.csrf.is_empty() && verify_slices_are_equal(c.as_bytes(), form.csrf.as_bytes()).is_ok()
    });
    if !csrf_ok {
        return error_page(
            StatusCode::FORBIDDEN,
            "This form expired. Go back to the application and start again.",
        );
    }
    let Some((key, session)) = cookie(&headers, SESSION_COOKIE)
        .map(hash_token)
        .and_then(|key| Some((key, idp.store.session(&key)?)))
    else {
        return error_page(StatusCode::UNAUTHORIZED, "Sign in first.");
    };
    let Some(AfterLogin::Authorize(pending)) = idp.store.take_pending(&form.request) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "This request has expired. Go back to the application and start again.",
        );
    };
    if form.deny.is_some() {
        let reply = Reply {
            idp: &idp,
            redirect_uri: pending.redirect_uri.clone(),
            state: pending.state.clone(),
            mode: pending.response_mode,
        };
        return reply.error("access_denied", "the user denied access");
    }
    idp.store
        .add_session_consent(&key, &pending.client_id, &pending.scope);
    issue_code(&idp, &pending, &session)
}

/// RFC 7636 §4.2: 43–128 characters of `[A-Za-z0-9-._~]`.
fn is_pkce_value(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// Issues a code for a signed-in user and answers the client.
fn issue_code(idp: &crate::Idp, p: &PendingAuthorization, session: &IdpSession) -> Response {
    let reply = Reply {
        idp,
        redirect_uri: p.redirect_uri.clone(),
        state: p.state.clone(),
        mode: p.response_mode,
    };
    let code = random_token();
    idp.store.put_code(
        hash_token(&code),
        CodeGrant {
            client_id: p.client_id.clone(),
            redirect_uri: p.redirect_uri.clone(),
            sub: session.sub.clone(),
            scope: p.scope.clone(),
            nonce: p.nonce.clone(),
            code_challenge: p.code_challenge.clone(),
            auth_time: session.auth_time,
            sid: session.sid.clone(),
            expires_at: now() + idp.lifetimes.code.as_secs() as i64,
            issued_family: None,
            issued_jtis: Vec::new(),
            used: false,
            compromised: false,
        },
    );
    reply.send(&[("code", &code)])
}

/// The login form; a fresh CSRF token goes into a cookie and the form.
pub(crate) fn login_page(
    issuer: &str,
    request_id: &str,
    message: Option<&str>,
    status: StatusCode,
) -> Response {
    let csrf = random_token();
    let error = message
        .map(|m| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(m)))
        .unwrap_or_default();
    let body = format!(
        "{error}<form method=\"post\" action=\"{issuer}/login\">\
         <input type=\"hidden\" name=\"request\" value=\"{request}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <label for=\"username\">Username</label><input id=\"username\" name=\"username\" autocomplete=\"username\" required autofocus>\
         <label for=\"password\">Password</label><input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\">Sign in</button></form>",
        issuer = escape(issuer),
        request = escape(request_id),
    );
    let mut response = page(status, "Sign in", &body);
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{CSRF_COOKIE}={csrf}{}",
        cookie_attributes(issuer, Some(600))
    )) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

#[derive(serde::Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    request: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

/// `POST /login`: checks CSRF, the lockout and the password, starts the SSO session, then
/// finishes the pending authorization request.
pub async fn login(
    State(idp): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let state = idp.clone();
    super::blocking(&idp, move || login_inner(state, peer, headers, form)).await
}

fn login_inner(idp: AppState, peer: SocketAddr, headers: HeaderMap, form: LoginForm) -> Response {
    const EXPIRED: &str =
        "This sign-in request has expired. Go back to the application and start again.";
    if idp.store.pending(&form.request).is_none() {
        return error_page(StatusCode::BAD_REQUEST, EXPIRED);
    }
    let csrf_ok = cookie(&headers, CSRF_COOKIE).is_some_and(|c| {
        !form.csrf.is_empty() && verify_slices_are_equal(c.as_bytes(), form.csrf.as_bytes()).is_ok()
    });
    if !csrf_ok {
        return login_page(
            &idp.issuer,
            &form.request,
            Some("Your session form expired; please sign in again."),
            StatusCode::FORBIDDEN,
        );
    }
    let now = now();
    // Usernames are bounded in the counter key; nobody has a 256-byte login name.
    let username: String = form.username.chars().take(256).collect();
    let key = format!("{username}|{}", peer.ip());
    let locked = || {
        login_page(
            &idp.issuer,
            &form.request,
            Some("Too many failed attempts. Wait 30 seconds and try again."),
            StatusCode::TOO_MANY_REQUESTS,
        )
    };
    let failures = idp.store.login_failures(&key, now, FAILURE_WINDOW);
    if failures.len() >= MAX_FAILURES
        && failures
            .iter()
            .max()
            .is_some_and(|last| last + LOCKOUT > now)
    {
        return locked();
    }
    // Count the attempt before checking the password, so parallel guesses cannot all slip
    // under the limit; a success clears the count again.
    let attempts = idp.store.login_failed(&key, now, FAILURE_WINDOW);
    if failures.len() < MAX_FAILURES && attempts > MAX_FAILURES {
        return locked();
    }
    let user = idp
        .directory
        .user(&form.username)
        .filter(|u| u.password.verify(&form.password));
    let Some(user) = user else {
        tracing::info!(username = %form.username.chars().take(64).collect::<String>(), "failed login");
        return login_page(
            &idp.issuer,
            &form.request,
            Some("Wrong username or password."),
            StatusCode::UNAUTHORIZED,
        );
    };
    idp.store.login_succeeded(&key);
    // Taken, not read: one sign-in completes a request once.
    let Some(pending) = idp.store.take_pending(&form.request) else {
        return error_page(StatusCode::BAD_REQUEST, EXPIRED);
    };
    // The cookie carries a secret; tokens carry a separate public session id.
    let secret = random_token();
    let key = hash_token(&secret);
    let session = IdpSession {
        sid: random_token(),
        sub: user.sub().to_owned(),
        auth_time: now,
        expires_at: now + idp.lifetimes.session.as_secs() as i64,
        clients: Vec::new(),
        consents: Vec::new(),
    };
    idp.store.put_session(key, session.clone());
    let mut response = match &pending {
        AfterLogin::Authorize(p) => {
            continue_signed_in(&idp, p.clone(), &session, p.prompt_consent, false)
        }
        AfterLogin::Device { user_code, .. } => super::device::after_login(&idp, user_code),
    };
    let cookie = format!(
        "{SESSION_COOKIE}={secret}{}",
        cookie_attributes(&idp.issuer, None)
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

#[cfg(test)]
mod tests {
    #[test]
    fn auto_submit_hash_matches_the_script() {
        use base64::Engine as _;
        let digest = aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            super::AUTO_SUBMIT_SCRIPT.as_bytes(),
        );
        let expected = format!(
            "sha256-{}",
            base64::engine::general_purpose::STANDARD.encode(digest)
        );
        assert_eq!(super::AUTO_SUBMIT_HASH, expected);
    }

    #[test]
    fn pkce_values() {
        assert!(super::is_pkce_value(&"a".repeat(43)));
        assert!(!super::is_pkce_value(&"a".repeat(42)));
        assert!(!super::is_pkce_value(&format!("{}+", "a".repeat(43))));
    }
}
