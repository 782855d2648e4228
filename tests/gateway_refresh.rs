//! Transparent session refresh through `oidcgate serve` with the cookie store, against the
//! built-in IdP issuing 30-second access tokens (so every request finds its token due): the
//! upstream gets a current access token, 1,000 concurrent requests of one session share one
//! refresh,
//! a request still carrying the pre-refresh cookie adopts the new tokens instead of redeeming
//! the rotated refresh token again (the IdP would revoke the whole family), an IdP outage keeps
//! the session while its token lasts, and a refused refresh ends the session cleanly.

mod support;

use reqwest::StatusCode;
use serde_json::Value;
use support::browser::{Jar, app_sign_in};
use support::gateway::{BIN, client, echo_upstream, free_addr, start_gateway};
use support::{Running, start_server};

async fn idp(listen: &str) -> Running {
    start_server(
        std::path::Path::new(BIN),
        &["idp", "--listen", listen, "--access-token-ttl", "30"],
        &[],
    )
    .await
}

/// One request through the gateway (one shared client: building a client per request would
/// make the test's own process the bottleneck): status, the access token the upstream saw, and the
/// session cookie the response set (`Some("")` when it cleared it).
async fn through(
    http: &reqwest::Client,
    base: &str,
    cookie: &str,
) -> (StatusCode, Option<String>, Option<String>) {
    let r = http
        .get(format!("{base}/app"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let set = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("oidcgate_session="))
        .map(|v| {
            v.trim_start_matches("oidcgate_session=")
                .split(';')
                .next()
                .unwrap_or_default()
                .to_owned()
        });
    let token = if status == StatusCode::OK {
        let seen: Value = r.json().await.unwrap();
        seen["headers"]["x-forwarded-access-token"]
            .as_str()
            .map(str::to_owned)
    } else {
        None
    };
    (status, token, set)
}

/// Whether the IdP's userinfo accepts `token` as alice's.
async fn valid_for_alice(issuer: &str, token: &str) -> bool {
    let r = client()
        .get(format!("{issuer}/userinfo"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    r.status() == StatusCode::OK && r.json::<Value>().await.unwrap()["sub"] == "alice"
}

#[tokio::test]
async fn cookie_sessions_refresh_once_and_end_cleanly() {
    let idp_addr = free_addr().to_string();
    let provider = idp(&idp_addr).await;
    let issuer = provider.base_url.clone();
    let (upstream, _task) = echo_upstream().await;
    let gw = start_gateway(&issuer, &upstream, &[("PASS_ACCESS_TOKEN", "true")]).await;
    let base = &gw.base_url;
    let http = client();
    let mut jar = Jar::default();
    assert_eq!(app_sign_in(&http, &mut jar, base, "/app").await, "/app");
    let first = format!("oidcgate_session={}", jar.0["oidcgate_session"]);

    // The token is due: this request refreshes it, passes the new one on and reseals the cookie.
    let (status, t1, set) = through(&http, base, &first).await;
    assert_eq!(status, StatusCode::OK);
    let t1 = t1.expect("the session's access token goes upstream");
    assert!(valid_for_alice(&issuer, &t1).await);
    let second = format!("oidcgate_session={}", set.expect("a resealed cookie"));
    assert_ne!(second, first);

    // A thousand concurrent requests of one session at its token's expiry: one refresh, one
    // new token for all (a second redemption of the rotated refresh token would make the IdP
    // revoke the family, and the requests after it would fail).
    let n = support::concurrency(1000);
    let answers =
        futures_util::future::join_all((0..n).map(|_| through(&http, base, &second))).await;
    let mut seen = std::collections::HashSet::new();
    let mut third = None;
    for (status, token, set) in answers {
        assert_eq!(status, StatusCode::OK);
        seen.insert(token.expect("a token upstream"));
        third = set.or(third);
    }
    assert_eq!(
        seen.len(),
        1,
        "one refresh shared by every request: {seen:?}"
    );
    let t2 = seen.into_iter().next().unwrap_or_default();
    assert_ne!(t2, t1);
    assert!(valid_for_alice(&issuer, &t2).await);
    let third = format!("oidcgate_session={}", third.expect("a resealed cookie"));

    // A late request with the pre-refresh cookie adopts the same tokens (no second redemption:
    // the IdP would revoke the family, and the newest cookie's refresh below would fail).
    let (status, adopted, _) = through(&http, base, &second).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(adopted.as_deref(), Some(t2.as_str()));
    let (status, t3, set) = through(&http, base, &third).await;
    assert_eq!(status, StatusCode::OK);
    let t3 = t3.unwrap_or_default();
    assert!(t3 != t2 && valid_for_alice(&issuer, &t3).await);
    let fourth = format!("oidcgate_session={}", set.expect("a resealed cookie"));

    // The IdP goes down: the session goes on with its still-valid token, cookie untouched.
    drop(provider);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (status, kept, set) = through(&http, base, &fourth).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(kept.as_deref(), Some(t3.as_str()));
    assert_eq!(set, None);

    // A new IdP on the same address knows nothing of the refresh token: the refresh is refused
    // (after the 5 s pause that spares a down IdP), the session ends, the cookie is cleared,
    // and the API client gets a 401, never a 500.
    let _provider = idp(&idp_addr).await;
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    let (status, _, set) = through(&http, base, &fourth).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(set.as_deref(), Some(""), "the session cookie is cleared");
    // The ended session stays ended, with the old cookie too.
    let (status, _, _) = through(&http, base, &third).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // One count per refresh attempt, not per request that shared or adopted it.
    let metrics = client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "oidcgate_session_refreshes{outcome=\"refreshed\"} 3",
        "oidcgate_session_refreshes{outcome=\"rejected\"} 1",
        "oidcgate_session_refreshes{outcome=\"unavailable\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
    }
}
