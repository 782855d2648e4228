//! npm `oidc-provider` (an OpenID Certified OP library) as an independent IdP for tests:
//! starting tests/peers/oidc_provider.mjs and signing in through its login form.
//!
//! The peer has the demo users (`alice` / `wonderland`, `bob` / `builder`) and clients (`demo`,
//! `demo-public`, `demo-service`); see the script's header for its environment settings. Its
//! access tokens are opaque unless the request names the resource indicator [`API_RESOURCE`]
//! (`resource=` in the authorization, device or client-credentials request): then they are
//! RFC 9068 `at+jwt` JWTs whose `aud` is [`API_AUDIENCE`].

use std::path::Path;
use std::time::Duration;

use reqwest::header::{COOKIE, LOCATION};

use super::browser::Jar;
use super::peers::{ensure_node_modules, peers_dir, require_tool};
use super::{Running, try_start_server_reading};

/// The resource indicator (RFC 8707) that yields JWT access tokens.
pub const API_RESOURCE: &str = "urn:demo-api";
/// The `aud` of those JWT access tokens.
pub const API_AUDIENCE: &str = "demo-api";

/// Starts the peer on a free loopback port (installing tests/peers' npm packages first when
/// needed); its issuer is the returned `base_url` (`http://127.0.0.1:PORT`).
pub async fn start_oidc_provider(envs: &[(&str, &str)]) -> Running {
    require_tool("node");
    let dir = peers_dir();
    ensure_node_modules(&dir, &["oidc-provider"]);
    let script = dir.join("oidc_provider.mjs");
    // It starts in about 0.3 s; once in CI it hung before listening (cause not found; not
    // reproduced since), so a start that takes 20 s is abandoned and tried again, twice.
    let mut peer = None;
    for attempt in 1..=3 {
        peer = try_start_server_reading(
            Path::new("node"),
            &[script.to_str().unwrap()],
            envs,
            0,
            Duration::from_secs(20),
        )
        .await
        .map(|(running, _)| running);
        if peer.is_some() {
            break;
        }
        eprintln!("oidc-provider peer did not start within 20 s (attempt {attempt} of 3)");
    }
    let peer = peer.expect("the oidc-provider peer did not start in 3 attempts");
    assert!(
        peer.base_url.starts_with("http://127.0.0.1:"),
        "unexpected issuer {}",
        peer.base_url
    );
    peer
}

/// An HTTP client for [`provider_login`]: it must not follow redirects itself.
pub fn no_redirect_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Follows an authorization (or device) flow from `authorize_url` the way a browser would,
/// signing in as `user` on the peer's login form when it appears, and returns the first redirect
/// that leaves the provider (the client's redirect URI with `code` or `error`). Consent is
/// granted by the peer without a page. `http` must not follow redirects (see
/// [`no_redirect_client`]); `jar` keeps the provider's cookies, so a second call reuses its SSO
/// session. Panics when the password is refused or the flow ends on a page.
pub async fn provider_login(
    http: &reqwest::Client,
    jar: &mut Jar,
    authorize_url: &str,
    user: &str,
    password: &str,
) -> String {
    let origin = url::Url::parse(authorize_url).unwrap().origin();
    let mut url = url::Url::parse(authorize_url).unwrap();
    let mut form: Option<[(&str, &str); 2]> = None;
    for _ in 0..12 {
        let request = match form.take() {
            Some(fields) => http.post(url.clone()).form(&fields),
            None => http.get(url.clone()),
        };
        let response = request.header(COOKIE, jar.header()).send().await.unwrap();
        jar.absorb(response.headers());
        let status = response.status();
        if let Some(location) = response.headers().get(LOCATION) {
            url = url.join(location.to_str().unwrap()).unwrap();
            if url.origin() != origin {
                return url.into();
            }
            continue;
        }
        let html = response.text().await.unwrap();
        assert!(
            !html.contains("Wrong username or password"),
            "{user}'s password was refused"
        );
        let action = html
            .split("action=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .filter(|a| a.starts_with("/interaction/"))
            .unwrap_or_else(|| panic!("{status} at {url} is not the login form:\n{html}"));
        url = url.join(action).unwrap();
        form = Some([("username", user), ("password", password)]);
    }
    panic!("too many redirects from {authorize_url}");
}

/// The `value` of the form field `name` (`name="…" value="…"`), when the page has one.
fn form_value(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].to_owned())
}

/// Decides a device authorization on the peer's own pages the way a browser would, from
/// `verification_uri_complete` (`/device?user_code=…`): posts the self-submitting code form
/// (hidden `xsrf` and `user_code`), then the confirmation form with `confirm=yes` (`approve`) or
/// `abort=yes`, signs in as `user` on the login form when it appears (consent is automatic) and
/// returns the page the flow ends on (after an approval, the peer's "Sign-in Success" page).
/// `http` must not follow redirects (see [`no_redirect_client`]). Panics when the password is
/// refused or the flow leaves the provider.
pub async fn provider_device(
    http: &reqwest::Client,
    jar: &mut Jar,
    verification_uri_complete: &str,
    user: &str,
    password: &str,
    approve: bool,
) -> String {
    let mut url = url::Url::parse(verification_uri_complete).unwrap();
    let origin = url.origin();
    let mut form: Option<Vec<(&str, String)>> = None;
    for _ in 0..16 {
        let request = match form.take() {
            Some(fields) => http.post(url.clone()).form(&fields),
            None => http.get(url.clone()),
        };
        let response = request.header(COOKIE, jar.header()).send().await.unwrap();
        jar.absorb(response.headers());
        let status = response.status();
        if let Some(location) = response.headers().get(LOCATION) {
            url = url.join(location.to_str().unwrap()).unwrap();
            assert!(url.origin() == origin, "the device flow left for {url}");
            continue;
        }
        let html = response.text().await.unwrap();
        assert!(
            !html.contains("Wrong username or password"),
            "{user}'s password was refused"
        );
        let action = html
            .split("action=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .map(str::to_owned);
        let (xsrf, user_code) = (form_value(&html, "xsrf"), form_value(&html, "user_code"));
        match (action, xsrf, user_code) {
            // The login form of the interaction that follows the confirmation.
            (Some(action), _, _) if action.starts_with("/interaction/") => {
                url = url.join(&action).unwrap();
                form = Some(vec![
                    ("username", user.to_owned()),
                    ("password", password.to_owned()),
                ]);
            }
            // The confirmation page (`confirm=yes` or `abort=yes`), or the self-submitting form
            // that carries the code from the verification URI.
            (Some(action), Some(xsrf), Some(user_code)) => {
                url = url.join(&action).unwrap();
                let mut fields = vec![("xsrf", xsrf), ("user_code", user_code)];
                if form_value(&html, "confirm").is_some() {
                    fields.push(if approve {
                        ("confirm", "yes".to_owned())
                    } else {
                        ("abort", "yes".to_owned())
                    });
                }
                form = Some(fields);
            }
            _ => {
                assert!(status.is_success(), "{status} at {url}:\n{html}");
                return html;
            }
        }
    }
    panic!("too many steps from {verification_uri_complete}");
}
