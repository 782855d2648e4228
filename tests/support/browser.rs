//! A scripted browser for the development IdP's pages: a cookie jar, form-field extraction, and
//! signing in through the real login form.

use std::collections::HashMap;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};

/// A tiny cookie jar for one browser.
#[derive(Default)]
pub struct Jar(pub HashMap<String, String>);

impl Jar {
    pub fn absorb(&mut self, headers: &HeaderMap) {
        for v in headers.get_all(SET_COOKIE) {
            let pair = v.to_str().unwrap().split(';').next().unwrap();
            let (n, v) = pair.split_once('=').unwrap();
            self.0.insert(n.to_owned(), v.to_owned());
        }
    }
    pub fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

pub fn field(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no field {name} in {html}"))
        + marker.len();
    html[start..start + html[start..].find('"').unwrap()].to_owned()
}

/// Signs in through the login page; returns the redirect's query parameters.
pub async fn login(
    http: &reqwest::Client,
    jar: &mut Jar,
    url: &str,
    user: &str,
    password: &str,
) -> (StatusCode, HashMap<String, String>, String) {
    let page = http
        .get(url)
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    jar.absorb(page.headers());
    let base = url.split("/authorize").next().unwrap().to_owned();
    let html = page.text().await.unwrap();
    let form = [
        ("request", field(&html, "request")),
        ("csrf", field(&html, "csrf")),
        ("username", user.to_owned()),
        ("password", password.to_owned()),
    ];
    let r = http
        .post(format!("{base}/login"))
        .header("cookie", jar.header())
        .form(&form)
        .send()
        .await
        .unwrap();
    jar.absorb(r.headers());
    let status = r.status();
    let location = r
        .headers()
        .get(LOCATION)
        .map(|l| l.to_str().unwrap().to_owned());
    let body = r.text().await.unwrap();
    let params = location.map(|l| query(l.as_str())).unwrap_or_default();
    (status, params, body)
}

pub fn query(location: &str) -> HashMap<String, String> {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// Signs alice in on a device verification page and approves (or denies) the code; returns the
/// final page. Checks the sign-in returns to the verification page for the same code.
pub async fn decide_device(
    http: &reqwest::Client,
    issuer: &str,
    verification_uri_complete: &str,
    deny: bool,
) -> String {
    let mut jar = Jar::default();
    let page = http.get(verification_uri_complete).send().await.unwrap();
    jar.absorb(page.headers());
    let html = page.text().await.unwrap();
    let form = [
        ("request", field(&html, "request")),
        ("csrf", field(&html, "csrf")),
        ("username", "alice".into()),
        ("password", "wonderland".into()),
    ];
    let r = http
        .post(format!("{issuer}/login"))
        .header("cookie", jar.header())
        .form(&form)
        .send()
        .await
        .unwrap();
    jar.absorb(r.headers());
    let back = r.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(
        back.starts_with(&format!("{issuer}/device?user_code=")),
        "{back}"
    );
    let confirm = http
        .get(&back)
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    jar.absorb(confirm.headers());
    let html = confirm.text().await.unwrap();
    assert!(html.contains("asks for access"), "{html}");
    let decision = if deny {
        ("deny", "1".to_owned())
    } else {
        ("approve", "1".to_owned())
    };
    let form = [
        ("user_code", field(&html, "user_code")),
        ("csrf", field(&html, "csrf")),
        decision,
    ];
    let done = http
        .post(format!("{issuer}/device"))
        .header("cookie", jar.header())
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200);
    done.text().await.unwrap()
}

fn location(r: &reqwest::Response) -> String {
    r.headers()[LOCATION].to_str().unwrap().to_owned()
}

/// Runs a whole sign-in as alice starting at `{app}/login?rd=…`; returns the app's final
/// redirect.
pub async fn app_sign_in(http: &reqwest::Client, jar: &mut Jar, app: &str, rd: &str) -> String {
    let done = app_callback(http, jar, app, rd, "alice", "wonderland").await;
    assert_eq!(
        done.status(),
        StatusCode::FOUND,
        "{}",
        done.text().await.unwrap_or_default()
    );
    jar.absorb(done.headers());
    location(&done)
}

/// Runs a sign-in as `user` up to the app's callback and returns the callback's answer (not yet
/// absorbed into the jar).
pub async fn app_callback(
    http: &reqwest::Client,
    jar: &mut Jar,
    app: &str,
    rd: &str,
    user: &str,
    password: &str,
) -> reqwest::Response {
    let start = http
        .get(format!("{app}/login?rd={}", urlencode(rd)))
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), StatusCode::FOUND);
    jar.absorb(start.headers());
    let authorize = location(&start);
    let callback = if jar.0.contains_key("oidcgate_idp_session") {
        // SSO at the IdP: straight back to the app.
        let r = http
            .get(&authorize)
            .header("cookie", jar.header())
            .send()
            .await
            .unwrap();
        location(&r)
    } else {
        let (status, params, body) = login(http, jar, &authorize, user, password).await;
        assert_eq!(status, 303, "{body}");
        let mut url = url::Url::parse(&format!("{app}/auth/callback")).unwrap();
        url.query_pairs_mut().extend_pairs(params.iter());
        url.to_string()
    };
    let done = http
        .get(&callback)
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    jar.0.insert("last_callback".into(), callback);
    done
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
