//! The device authorization grant (RFC 8628): the device authorization endpoint, the
//! verification page where a signed-in user enters (or confirms) the user code and approves
//! or denies, and the device-code polling rules used by the token endpoint.

use std::collections::HashMap;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use axum::Form;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::{Value, json};

use super::authorize::login_page;
use super::pages::{OAuthError, error_page, escape, page};
use super::token::{authenticate_client, parse_form};
use super::{AppState, CSRF_COOKIE, SESSION_COOKIE, cookie, cookie_attributes, now};
use crate::config::Client;
use crate::store::{AfterLogin, DeviceGrant, DeviceStatus, hash_token};
use crate::tokens::random_token;

/// The grant type URN.
pub const GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// Seconds a device code lives, and the polling interval (DESIGN §5: 5 s).
const LIFETIME: i64 = 600;
const INTERVAL: i64 = 5;
/// User-code alphabet without vowels or look-alikes (RFC 8628 §6.1): 20^8 ≈ 2^34.6 codes.
const USER_CODE_CHARS: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";

fn user_code() -> String {
    let mut bytes = [0u8; 8];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        panic!("the system random number generator is unavailable");
    }
    // 256 is not a multiple of 20: reject the top of the range to keep the choice uniform.
    let mut out = String::with_capacity(9);
    let mut pool = bytes.to_vec();
    while out.len() < 9 {
        let Some(b) = pool.pop() else {
            let mut more = [0u8; 8];
            if aws_lc_rs::rand::fill(&mut more).is_err() {
                panic!("the system random number generator is unavailable");
            }
            pool.extend_from_slice(&more);
            continue;
        };
        if b >= 240 {
            continue;
        }
        if out.len() == 4 {
            out.push('-');
        }
        out.push(USER_CODE_CHARS[(b % 20) as usize] as char);
    }
    out
}

/// Accepts user codes typed in any case, with or without the dash or spaces.
fn normalize_user_code(input: &str) -> Option<String> {
    let letters: String = input
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (letters.len() == 8 && letters.bytes().all(|b| USER_CODE_CHARS.contains(&b)))
        .then(|| format!("{}-{}", &letters[..4], &letters[4..]))
}

/// `POST /device_authorization`.
pub async fn device_authorization(
    State(idp): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let state = idp.clone();
    super::blocking(&idp, move || {
        device_authorization_inner(state, headers, body)
    })
    .await
}

fn device_authorization_inner(idp: AppState, headers: HeaderMap, body: Bytes) -> Response {
    let result = (|| -> Result<Value, OAuthError> {
        let params = parse_form(&body)?;
        let client = authenticate_client(&idp, &headers, &params, true)?;
        if !client.allows_grant(GRANT) {
            return Err(OAuthError::new(
                "unauthorized_client",
                "the client may not use the device grant",
            ));
        }
        let scope = params.get("scope").map(String::as_str).unwrap_or("openid");
        if let Some(bad) = scope
            .split(' ')
            .find(|s| !s.is_empty() && !client.allows_scope(s))
        {
            return Err(OAuthError::new(
                "invalid_scope",
                format!("scope {bad} is not allowed"),
            ));
        }
        let device_code = random_token();
        let user_code = user_code();
        let stored = idp.store.put_device(
            hash_token(&device_code),
            DeviceGrant {
                client_id: client.client_id.clone(),
                scope: scope
                    .split(' ')
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join(" "),
                user_code: user_code.clone(),
                expires_at: now() + LIFETIME,
                interval: INTERVAL,
                last_poll: None,
                status: DeviceStatus::Pending,
            },
        );
        if !stored {
            return Err(OAuthError {
                status: axum::http::StatusCode::SERVICE_UNAVAILABLE,
                error: "temporarily_unavailable",
                description: "too many device authorizations are pending; try again later".into(),
                basic_challenge: false,
            });
        }
        let verification_uri = format!("{}/device", idp.issuer);
        Ok(json!({
            "device_code": device_code,
            "user_code": user_code,
            "verification_uri": verification_uri,
            "verification_uri_complete": format!("{verification_uri}?user_code={user_code}"),
            "expires_in": LIFETIME,
            "interval": INTERVAL,
        }))
    })();
    match result {
        Ok(v) => {
            let mut r = Json(v).into_response();
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => e.into_response(),
    }
}

/// The token endpoint's handling of a device-code poll.
pub fn poll(
    idp: &crate::Idp,
    client: &Client,
    params: &HashMap<String, String>,
) -> Result<DevicePoll, OAuthError> {
    let code = params
        .get("device_code")
        .ok_or_else(|| OAuthError::new("invalid_request", "device_code is required"))?;
    let hash = hash_token(code);
    let grant = idp
        .store
        .device(&hash)
        .ok_or_else(|| OAuthError::new("invalid_grant", "unknown device_code"))?;
    if grant.client_id != client.client_id {
        return Err(OAuthError::new(
            "invalid_grant",
            "the device_code belongs to another client",
        ));
    }
    let now = now();
    if grant.expires_at <= now {
        return Err(OAuthError::new(
            "expired_token",
            "the device code has expired; start again",
        ));
    }
    // Decide inside the store's update (a compare-and-set), so two polls racing on an approved
    // code cannot both redeem it.
    let mut too_fast = false;
    let mut status = DeviceStatus::Used;
    idp.store.update_device(&hash, &mut |d| {
        too_fast = d.last_poll.is_some_and(|last| now - last < d.interval);
        d.last_poll = Some(now);
        if too_fast {
            d.interval += 5;
            return;
        }
        status = d.status.clone();
        if matches!(d.status, DeviceStatus::Approved { .. }) {
            d.status = DeviceStatus::Used;
        }
    });
    if too_fast {
        return Err(OAuthError::new(
            "slow_down",
            "polling too fast; the interval grew by 5 seconds",
        ));
    }
    match status {
        DeviceStatus::Pending => Err(OAuthError::new(
            "authorization_pending",
            "the user has not approved yet",
        )),
        DeviceStatus::Denied => Err(OAuthError::new(
            "access_denied",
            "the user denied the request",
        )),
        DeviceStatus::Used => Err(OAuthError::new(
            "invalid_grant",
            "the device code was already used",
        )),
        DeviceStatus::Approved {
            sub,
            auth_time,
            sid,
        } => Ok(DevicePoll {
            sub,
            auth_time,
            sid,
            scope: grant.scope,
        }),
    }
}

/// An approved device grant, ready for tokens.
pub struct DevicePoll {
    pub sub: String,
    pub auth_time: i64,
    pub sid: String,
    pub scope: String,
}

/// After signing in from the verification page, back to it with the code.
pub fn after_login(idp: &crate::Idp, user_code: &str) -> Response {
    let mut url = match url::Url::parse(&format!("{}/device", idp.issuer)) {
        Ok(u) => u,
        Err(_) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, "Bad issuer URL."),
    };
    url.query_pairs_mut().append_pair("user_code", user_code);
    Redirect::to(url.as_str()).into_response()
}

/// `GET /device[?user_code=…]`: sign in if needed, then confirm.
pub async fn verification_page(
    State(idp): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let state = idp.clone();
    super::blocking(&idp, move || {
        verification_page_inner(state, headers, params)
    })
    .await
}

fn verification_page_inner(
    idp: AppState,
    headers: HeaderMap,
    params: HashMap<String, String>,
) -> Response {
    let Some(code) = params.get("user_code").filter(|c| !c.is_empty()) else {
        return enter_code_page(&idp.issuer, None);
    };
    let Some(user_code) = normalize_user_code(code) else {
        return enter_code_page(
            &idp.issuer,
            Some("That code is not valid. Check it and try again."),
        );
    };
    let Some((_, grant)) = idp.store.device_by_user_code(&user_code) else {
        return enter_code_page(&idp.issuer, Some("That code is unknown or has expired."));
    };
    let session =
        cookie(&headers, SESSION_COOKIE).and_then(|secret| idp.store.session(&hash_token(secret)));
    if session.is_none() {
        let id = random_token();
        idp.store.put_pending(
            id.clone(),
            AfterLogin::Device {
                user_code,
                expires_at: grant.expires_at,
            },
        );
        return login_page(&idp.issuer, &id, None, StatusCode::OK);
    }
    if grant.status != DeviceStatus::Pending {
        return page(
            StatusCode::OK,
            "Device",
            "<p>This code was already used.</p>",
        );
    }
    let csrf = random_token();
    let body = format!(
        "<p>The application <strong>{client}</strong> asks for access ({scope}) with code <strong>{code}</strong>.</p>\
         <form method=\"post\" action=\"{issuer}/device\">\
         <input type=\"hidden\" name=\"user_code\" value=\"{code}\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <button type=\"submit\" name=\"approve\" value=\"1\">Approve</button> \
         <button type=\"submit\" name=\"deny\" value=\"1\">Deny</button></form>",
        client = escape(&grant.client_id),
        scope = escape(&grant.scope),
        code = escape(&user_code),
        issuer = escape(&idp.issuer),
    );
    let mut r = page(StatusCode::OK, "Connect a device", &body);
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{CSRF_COOKIE}={csrf}{}",
        cookie_attributes(&idp.issuer, Some(600))
    )) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

fn enter_code_page(issuer: &str, message: Option<&str>) -> Response {
    let error = message
        .map(|m| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(m)))
        .unwrap_or_default();
    let body = format!(
        "{error}<form method=\"get\" action=\"{}/device\"><label for=\"user_code\">Code shown on your device</label>\
         <input id=\"user_code\" name=\"user_code\" autocomplete=\"off\" required autofocus>\
         <button type=\"submit\">Continue</button></form>",
        escape(issuer)
    );
    page(
        if message.is_some() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        },
        "Connect a device",
        &body,
    )
}

#[derive(serde::Deserialize)]
pub struct Decision {
    #[serde(default)]
    user_code: String,
    #[serde(default)]
    csrf: String,
    deny: Option<String>,
}

/// `POST /device`: approve (the first button) or deny (`name="deny"`).
pub async fn verification_submit(
    State(idp): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<Decision>,
) -> Response {
    let state = idp.clone();
    super::blocking(&idp, move || {
        verification_submit_inner(state, headers, form)
    })
    .await
}

fn verification_submit_inner(idp: AppState, headers: HeaderMap, form: Decision) -> Response {
    let csrf_ok = cookie(&headers, CSRF_COOKIE).is_some_and(|c| {
        !form.csrf.is_empty() && verify_slices_are_equal(c.as_bytes(), form.csrf.as_bytes()).is_ok()
    });
    if !csrf_ok {
        return error_page(
            StatusCode::FORBIDDEN,
            "This form expired. Open the device page again.",
        );
    }
    let Some(session) =
        cookie(&headers, SESSION_COOKIE).and_then(|secret| idp.store.session(&hash_token(secret)))
    else {
        return error_page(StatusCode::UNAUTHORIZED, "Sign in first.");
    };
    let Some((hash, grant)) =
        normalize_user_code(&form.user_code).and_then(|c| idp.store.device_by_user_code(&c))
    else {
        return enter_code_page(&idp.issuer, Some("That code is unknown or has expired."));
    };
    if grant.status != DeviceStatus::Pending {
        return page(
            StatusCode::OK,
            "Device",
            "<p>This code was already used.</p>",
        );
    }
    let denied = form.deny.is_some();
    idp.store.update_device(&hash, &mut |d| {
        if d.status == DeviceStatus::Pending {
            d.status = if denied {
                DeviceStatus::Denied
            } else {
                DeviceStatus::Approved {
                    sub: session.sub.clone(),
                    auth_time: session.auth_time,
                    sid: session.sid.clone(),
                }
            };
        }
    });
    let message = if denied {
        "Access denied. You can close this page."
    } else {
        "Device connected. You can close this page and return to your device."
    };
    page(
        StatusCode::OK,
        "Connect a device",
        &format!("<p>{message}</p>"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes() {
        let c = user_code();
        assert_eq!(c.len(), 9);
        assert_eq!(
            normalize_user_code(&c.to_lowercase().replace('-', " ")),
            Some(c)
        );
        assert_eq!(
            normalize_user_code("AAAA-AAAA"),
            None,
            "vowels are not in the alphabet"
        );
        assert_eq!(normalize_user_code("BCDF-GHJ"), None);
    }
}

#[cfg(test)]
mod poll_tests {
    use super::*;
    use crate::Directory;

    #[test]
    fn expired_and_foreign_device_codes() {
        let idp = crate::Idp::new("http://127.0.0.1:1", Directory::demo()).unwrap();
        let client = idp.directory.client("demo-public").unwrap().clone();
        let grant = |expires_at| DeviceGrant {
            client_id: "demo-public".into(),
            scope: "openid".into(),
            user_code: "BCDF-GHJK".into(),
            expires_at,
            interval: INTERVAL,
            last_poll: None,
            status: DeviceStatus::Pending,
        };
        assert!(idp.store.put_device(hash_token("old"), grant(now() - 1)));
        assert!(idp.store.put_device(hash_token("live"), grant(now() + 60)));
        let params = |code: &str| HashMap::from([("device_code".to_owned(), code.to_owned())]);
        assert_eq!(
            poll(&idp, &client, &params("old")).err().unwrap().error,
            "expired_token"
        );
        let other = idp.directory.client("demo").unwrap().clone();
        assert_eq!(
            poll(&idp, &other, &params("live")).err().unwrap().error,
            "invalid_grant"
        );
        assert_eq!(
            poll(&idp, &client, &params("nope")).err().unwrap().error,
            "invalid_grant"
        );
    }
}
