//! The cookie store's byte budget (3 cookies of 3,800 bytes) with Keycloak/Entra-sized token
//! sets from the built-in IdP, whose ID tokens carry the user's groups, and a gateway that keeps
//! the tokens (`PASS_ACCESS_TOKEN`): 60 groups fit in chunks with everything kept; 150 groups
//! fit once the ID token (needed only as the logout hint) is left out; 250 groups do not fit at
//! all, which is a clear error naming the Redis store, and the Redis store then holds them.

mod support;

use reqwest::StatusCode;
use serde_json::Value;
use support::browser::{Jar, app_callback};
use support::gateway::{BIN, client, echo_upstream, free_addr, start_gateway};
use support::redis::{Redis, TempDir};
use support::{Running, start_server};

const BUDGET: usize = 3800;

fn groups(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("/org/department-{i:03}/team-role-reader"))
        .collect()
}

/// An IdP configuration with users of 60, 150 and 250 groups and a confidential client.
fn idp_config(dir: &std::path::Path) -> std::path::PathBuf {
    let mut toml = String::new();
    for (user, n) in [("kc", 60), ("big", 150), ("huge", 250)] {
        toml.push_str(&format!(
            "[[users]]\nusername = \"{user}\"\npassword = \"pw-{user}\"\nemail = \"{user}@example.com\"\nname = \"User {user}\"\ngroups = {:?}\n\n",
            groups(n)
        ));
    }
    toml.push_str(
        "[[clients]]\nclient_id = \"app\"\nclient_secret = \"app-secret\"\nredirect_uris = [\"http://127.0.0.1/auth/callback\"]\npost_logout_redirect_uris = [\"http://127.0.0.1/\"]\n",
    );
    let path = dir.join("idp.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

async fn gateway(issuer: &str, upstream: &str, extra: &[(&str, &str)]) -> Running {
    let mut settings = vec![
        ("OIDC_CLIENT_ID", "app"),
        ("OIDC_CLIENT_SECRET", "app-secret"),
        ("PASS_ACCESS_TOKEN", "true"),
    ];
    settings.extend_from_slice(extra);
    start_gateway(issuer, upstream, &settings).await
}

/// Signs `user` in; returns the jar and the callback's status and body.
async fn sign_in(base: &str, user: &str) -> (Jar, StatusCode, String) {
    let mut jar = Jar::default();
    let r = app_callback(
        &client(),
        &mut jar,
        base,
        "/app",
        user,
        &format!("pw-{user}"),
    )
    .await;
    let status = r.status();
    jar.absorb(r.headers());
    (jar, status, r.text().await.unwrap_or_default())
}

/// The session cookies in the jar (non-empty ones), by name.
fn session_chunks(jar: &Jar) -> Vec<(String, usize)> {
    let mut out: Vec<(String, usize)> = jar
        .0
        .iter()
        .filter(|(k, v)| k.starts_with("oidcgate_session") && !v.is_empty())
        .map(|(k, v)| (k.clone(), v.len()))
        .collect();
    out.sort();
    out
}

/// The groups and access token the upstream saw for this jar's session.
async fn upstream_view(base: &str, jar: &Jar) -> (usize, bool) {
    let r = client()
        .get(format!("{base}/app"))
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let seen: Value = r.json().await.unwrap();
    let h = &seen["headers"];
    let groups = h["x-auth-request-groups"]
        .as_str()
        .map_or(0, |g| g.split(',').count());
    (groups, h["x-forwarded-access-token"].as_str().is_some())
}

async fn logout_location(base: &str, jar: &Jar) -> String {
    let r = client()
        .get(format!("{base}/logout"))
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    r.headers()["location"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn large_token_sets_in_cookies_and_in_redis() {
    let port = free_addr().port();
    let dir = TempDir::new(port);
    let config = idp_config(dir.path());
    let idp = start_server(
        std::path::Path::new(BIN),
        &[
            "idp",
            "--listen",
            "127.0.0.1:0",
            "--config",
            config.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    let (upstream, _task) = echo_upstream().await;
    let gw = gateway(&idp.base_url, &upstream, &[]).await;
    let base = &gw.base_url;

    // Keycloak-sized: everything kept, in several chunks each within the budget.
    let (jar, status, body) = sign_in(base, "kc").await;
    assert_eq!(status, StatusCode::FOUND, "{body}");
    let chunks = session_chunks(&jar);
    assert!(chunks.len() >= 2, "chunked: {chunks:?}");
    assert!(chunks.iter().all(|(_, n)| *n <= BUDGET), "{chunks:?}");
    assert_eq!(upstream_view(base, &jar).await, (60, true));
    assert!(logout_location(base, &jar).await.contains("id_token_hint="));

    // Larger: the ID token is left out to fit; the identity, groups and tokens stay.
    let (jar, status, body) = sign_in(base, "big").await;
    assert_eq!(status, StatusCode::FOUND, "{body}");
    let chunks = session_chunks(&jar);
    assert!(chunks.iter().all(|(_, n)| *n <= BUDGET), "{chunks:?}");
    assert_eq!(upstream_view(base, &jar).await, (150, true));
    let location = logout_location(base, &jar).await;
    assert!(
        !location.contains("id_token_hint=") && location.contains("client_id=app"),
        "{location}"
    );

    // Too large even so: a clear error that names the Redis store, and no session.
    let (jar, status, body) = sign_in(base, "huge").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(body.contains("SESSION_STORE=redis"), "{body}");
    assert!(
        session_chunks(&jar).is_empty(),
        "{:?}",
        session_chunks(&jar)
    );

    // The Redis store keeps it: the cookie is a small ticket.
    let redis = Redis::start(port, dir.path(), false);
    let redis_url = format!("redis://127.0.0.1:{}/0", redis.port);
    let gw = gateway(
        &idp.base_url,
        &upstream,
        &[
            ("SESSION_STORE", "redis"),
            ("REDIS_URL", redis_url.as_str()),
        ],
    )
    .await;
    let (jar, status, body) = sign_in(&gw.base_url, "huge").await;
    assert_eq!(status, StatusCode::FOUND, "{body}");
    let chunks = session_chunks(&jar);
    assert!(chunks.len() == 1 && chunks[0].1 < 200, "{chunks:?}");
    assert_eq!(upstream_view(&gw.base_url, &jar).await, (250, true));
}
