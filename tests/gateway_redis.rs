//! `SESSION_STORE=redis` end to end with a real `redis-server`: the cookie carries only a small
//! ticket, Redis holds the session encrypted (no profile in clear), a second gateway replica
//! shares the session, logout deletes it, a store outage is a 503 with `Retry-After` (never a
//! login loop or another user's session), and a Redis restart without persistence ends sessions
//! cleanly while an append-only Redis keeps them. Token refresh is shared across replicas
//! (one `SET NX PX` lease, the others re-read), and the cookie never changes for it.

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use support::browser::{Jar, app_sign_in};
use support::gateway::{client, free_addr};
use support::redis::{Redis, TempDir};
use support::{Running, start_server};

const BIN: &str = env!("CARGO_BIN_EXE_oidcgate");
const SECRET: &str = "a-gateway-session-secret-of-32-bytes-or-more";

async fn echo_upstream() -> String {
    async fn echo(headers: axum::http::HeaderMap) -> String {
        headers
            .get("x-auth-request-user")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, axum::Router::new().fallback(echo))
            .await
            .unwrap();
    });
    url
}

/// A gateway replica; every replica uses the same redirect URI, as replicas behind one host do.
async fn gateway(issuer: &str, upstream: &str, redirect: &str, redis_port: u16) -> Running {
    gateway_with(issuer, upstream, redirect, redis_port, &[]).await
}

async fn gateway_with(
    issuer: &str,
    upstream: &str,
    redirect: &str,
    redis_port: u16,
    extra: &[(&str, &str)],
) -> Running {
    let listen = free_addr().to_string();
    let redis_url = format!("redis://127.0.0.1:{redis_port}/0");
    let mut envs = vec![
        ("OIDC_ISSUER", issuer),
        ("OIDC_CLIENT_ID", "demo"),
        ("OIDC_CLIENT_SECRET", "demo-secret"),
        ("OIDC_REDIRECT_URI", redirect),
        ("SESSION_SECRET", SECRET),
        ("COOKIE_SECURE", "false"),
        ("UPSTREAM_URL", upstream),
        ("LISTEN_ADDR", listen.as_str()),
        ("SESSION_STORE", "redis"),
        ("REDIS_URL", redis_url.as_str()),
        ("REDIS_KEY_PREFIX", "test:"),
        // No in-process cache, so every request below really asks Redis.
        ("SESSION_CACHE_TTL", "0s"),
    ];
    envs.extend_from_slice(extra);
    start_server(std::path::Path::new(BIN), &["serve"], &envs).await
}

async fn get(base: &str, path: &str, cookie: &str) -> reqwest::Response {
    client()
        .get(format!("{base}{path}"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
}

fn session_keys(redis: &Redis) -> Vec<String> {
    redis
        .cli(&["--scan", "--pattern", "test:session:*"])
        .lines()
        .map(str::to_owned)
        .filter(|l| !l.is_empty())
        .collect()
}

#[tokio::test]
async fn sessions_live_in_redis() {
    let port = free_addr().port();
    let dir = TempDir::new(port);
    let redis = Redis::start(port, dir.path(), false);
    let idp = start_server(
        std::path::Path::new(BIN),
        &["idp", "--listen", "127.0.0.1:0"],
        &[],
    )
    .await;
    let upstream = echo_upstream().await;
    // The IdP's demo client allows any loopback redirect; one replica's address is the
    // public one, as a load balancer in front of both would be.
    let first_addr = free_addr();
    let redirect = format!("http://{first_addr}/auth/callback");
    let a = gateway(&idp.base_url, &upstream, &redirect, port).await;
    let b = gateway(&idp.base_url, &upstream, &redirect, port).await;
    let http = client();

    // Sign in through replica A.
    let mut jar = Jar::default();
    assert_eq!(
        app_sign_in(&http, &mut jar, &a.base_url, "/app").await,
        "/app"
    );
    let ticket = jar.0["oidcgate_session"].clone();
    assert!(
        ticket.len() < 200,
        "the cookie is a ticket, not the session: {} bytes",
        ticket.len()
    );
    let cookie = format!("oidcgate_session={ticket}");
    let keys = session_keys(&redis);
    assert_eq!(keys.len(), 1, "{keys:?}");
    let stored = redis.cli(&["GET", &keys[0]]);
    assert!(
        !stored.contains("alice") && !stored.contains("eyJ"),
        "sessions are encrypted at rest: {stored}"
    );
    let ttl: i64 = redis.cli(&["TTL", &keys[0]]).trim().parse().unwrap();
    assert!(ttl > 0 && ttl <= 86_400, "ttl {ttl}");

    // Both replicas know the user.
    for base in [&a.base_url, &b.base_url] {
        let r = get(base, "/app", &cookie).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.text().await.unwrap(), "alice");
    }
    // A tampered ticket opens nothing.
    let mut forged = ticket.clone().into_bytes();
    let last = forged.len() - 3;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let r = get(
        &b.base_url,
        "/api",
        &format!("oidcgate_session={}", String::from_utf8(forged).unwrap()),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Logout on B ends the session everywhere.
    let r = get(&b.base_url, "/logout", &cookie).await;
    assert!(r.status().is_redirection(), "{}", r.status());
    assert!(session_keys(&redis).is_empty());
    let r = get(&a.base_url, "/api", &cookie).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Store outage: 503 with Retry-After for session holders, readiness fails, and the
    // gateway comes back by itself when Redis does (a fresh Redis has lost the session).
    let mut jar = Jar::default();
    app_sign_in(&http, &mut jar, &a.base_url, "/app").await;
    let cookie = format!("oidcgate_session={}", jar.0["oidcgate_session"]);
    redis.stop();
    let r = get(&a.base_url, "/app", &cookie).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["retry-after"], "2");
    // Signing out cannot be confirmed: a 503 that keeps the cookie (so signing out again works
    // once the store is back), never a silent success.
    let r = get(&a.base_url, "/logout", &cookie).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().get("set-cookie").is_none());
    let r = get(&a.base_url, "/readyz", "").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = r.json().await.unwrap_or_default();
    assert_eq!(body["checks"]["session_store"], false, "{body}");
    let metrics = get(&a.base_url, "/metrics", "").await.text().await.unwrap();
    let errors: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("oidcgate_session_store_errors "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no session-store error gauge in {metrics}"));
    assert!(errors >= 1, "{metrics}");

    let redis = Redis::start(port, dir.path(), false);
    let mut status = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..50 {
        status = get(&a.base_url, "/api", &cookie).await.status();
        if status != StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, StatusCode::UNAUTHORIZED, "session gone, cleanly");
    drop(redis);
}

#[tokio::test]
async fn append_only_redis_keeps_sessions_across_restarts() {
    let port = free_addr().port();
    let dir = TempDir::new(port);
    let redis = Redis::start(port, dir.path(), true);
    let idp = start_server(
        std::path::Path::new(BIN),
        &["idp", "--listen", "127.0.0.1:0"],
        &[],
    )
    .await;
    let upstream = echo_upstream().await;
    let addr = free_addr();
    let gw = gateway(
        &idp.base_url,
        &upstream,
        &format!("http://{addr}/auth/callback"),
        port,
    )
    .await;
    let http = client();
    let mut jar = Jar::default();
    app_sign_in(&http, &mut jar, &gw.base_url, "/app").await;
    let cookie = format!("oidcgate_session={}", jar.0["oidcgate_session"]);
    assert_eq!(get(&gw.base_url, "/app", &cookie).await.status(), 200);

    redis.stop();
    let _redis = Redis::start(port, dir.path(), true);
    let mut r = None;
    for _ in 0..50 {
        let resp = get(&gw.base_url, "/app", &cookie).await;
        if resp.status() != StatusCode::SERVICE_UNAVAILABLE {
            r = Some(resp);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = r.expect("the gateway reconnects to Redis");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "alice");
}

#[tokio::test]
async fn unreachable_redis_at_start_names_the_setting() {
    let port = free_addr().port();
    let idp = start_server(
        std::path::Path::new(BIN),
        &["idp", "--listen", "127.0.0.1:0"],
        &[],
    )
    .await;
    let addr = free_addr().to_string();
    let redirect = format!("http://{addr}/auth/callback");
    let redis_url = format!("redis://127.0.0.1:{port}/0");
    let base = [
        ("OIDC_ISSUER", idp.base_url.as_str()),
        ("OIDC_CLIENT_ID", "demo"),
        ("OIDC_CLIENT_SECRET", "demo-secret"),
        ("OIDC_REDIRECT_URI", redirect.as_str()),
        ("SESSION_SECRET", SECRET),
        ("UPSTREAM_URL", "http://127.0.0.1:9"),
        ("LISTEN_ADDR", addr.as_str()),
        ("SESSION_STORE", "redis"),
    ];
    let run = |extra: &[(&'static str, &str)]| {
        let mut cmd = std::process::Command::new(BIN);
        cmd.arg("serve").env_clear();
        for (k, v) in base.iter().chain(extra.iter()) {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("REDIS_URL"));
    let out = run(&[("REDIS_URL", "http://example.com")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("REDIS_URL"));
    let out = run(&[("REDIS_URL", redis_url.as_str())]);
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("REDIS_URL"), "{err}");
}

/// The access token the JSON echo upstream saw, or the status when it was not reached.
async fn token_through(
    http: &reqwest::Client,
    base: &str,
    cookie: &str,
) -> Result<String, StatusCode> {
    let r = http
        .get(format!("{base}/app"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    if r.status() != StatusCode::OK {
        return Err(r.status());
    }
    assert!(
        r.headers().get("set-cookie").is_none(),
        "with Redis a refresh rewrites the store, not the cookie"
    );
    let seen: Value = r.json().await.unwrap();
    Ok(seen["headers"]["x-forwarded-access-token"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

#[tokio::test]
async fn replicas_share_one_refresh() {
    let port = free_addr().port();
    let dir = TempDir::new(port);
    let redis = Redis::start(port, dir.path(), false);
    // 64-second access tokens: due (under 60 s left) 4 s after they are issued, so each round
    // below waits 5 s and then finds the token due, while the token its refresh brings is not
    // due for the next 4 s (every request of the round sees it as fresh).
    let idp = start_server(
        std::path::Path::new(BIN),
        &["idp", "--listen", "127.0.0.1:0", "--access-token-ttl", "64"],
        &[],
    )
    .await;
    let (upstream, _task) = support::gateway::echo_upstream().await;
    let redirect = format!("http://{}/auth/callback", free_addr());
    let pass = [("PASS_ACCESS_TOKEN", "true")];
    let a = gateway_with(&idp.base_url, &upstream, &redirect, port, &pass).await;
    let b = gateway_with(&idp.base_url, &upstream, &redirect, port, &pass).await;
    let http = client();
    let mut jar = Jar::default();
    assert_eq!(
        app_sign_in(&http, &mut jar, &a.base_url, "/app").await,
        "/app"
    );
    let cookie = format!("oidcgate_session={}", jar.0["oidcgate_session"]);

    let mut previous = std::collections::HashSet::new();
    for round in 0..2 {
        // Concurrent requests (1,000 in the first round) split over both replicas: one refresh
        // for all of them (a second redemption of the rotated refresh token would make the IdP
        // revoke the family and end the session in the next round).
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        let n = if round == 0 {
            support::concurrency(1000)
        } else {
            10
        };
        let requests = (0..n).map(|i| {
            let base = if i % 2 == 0 { &a.base_url } else { &b.base_url };
            token_through(&http, base, &cookie)
        });
        let tokens: std::collections::HashSet<String> = futures_util::future::join_all(requests)
            .await
            .into_iter()
            .map(|t| t.unwrap_or_else(|s| panic!("round {round}: HTTP {s}")))
            .collect();
        assert_eq!(tokens.len(), 1, "round {round}: {tokens:?}");
        let token = tokens.into_iter().next().unwrap_or_default();
        assert!(previous.insert(token.clone()), "round {round} refreshed");
        let info = client()
            .get(format!("{}/userinfo", idp.base_url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(info.status(), StatusCode::OK, "round {round}");
    }
    let leases = redis.cli(&["--scan", "--pattern", "test:refresh-lease:*"]);
    assert_eq!(leases.trim(), "", "leases are released");
}

#[tokio::test]
async fn cookie_sessions_share_revocations_and_refreshes_through_redis() {
    let port = free_addr().port();
    let dir = TempDir::new(port);
    let redis = Redis::start(port, dir.path(), false);
    let idp = start_server(
        std::path::Path::new(BIN),
        &["idp", "--listen", "127.0.0.1:0", "--access-token-ttl", "30"],
        &[],
    )
    .await;
    let (upstream, _task) = support::gateway::echo_upstream().await;
    let redirect = format!("http://{}/auth/callback", free_addr());
    // Sessions stay in the cookie; REDIS_URL only carries the state replicas share.
    let cookie_store = [("PASS_ACCESS_TOKEN", "true"), ("SESSION_STORE", "cookie")];
    let a = gateway_with(&idp.base_url, &upstream, &redirect, port, &cookie_store).await;
    let b = gateway_with(&idp.base_url, &upstream, &redirect, port, &cookie_store).await;
    let http = client();
    let mut jar = Jar::default();
    assert_eq!(
        app_sign_in(&http, &mut jar, &a.base_url, "/app").await,
        "/app"
    );
    let cookie = format!("oidcgate_session={}", jar.0["oidcgate_session"]);
    assert!(cookie.len() > 500, "the session is in the cookie");
    assert!(session_keys(&redis).is_empty(), "no session in Redis");

    // Concurrent requests of one session on both replicas: one refresh between them (a second
    // redemption of the rotated refresh token would make the IdP revoke the family).
    let answers = futures_util::future::join_all((0..10).map(|i| {
        let base = if i % 2 == 0 { &a.base_url } else { &b.base_url };
        let http = http.clone();
        let cookie = cookie.clone();
        async move {
            let r = http
                .get(format!("{base}/app"))
                .header("cookie", &cookie)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            let seen: Value = r.json().await.unwrap();
            seen["headers"]["x-forwarded-access-token"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        }
    }))
    .await;
    let tokens: std::collections::HashSet<String> = answers.into_iter().collect();
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    let results = redis.cli(&["--scan", "--pattern", "test:refresh-result:*"]);
    assert_eq!(
        results.lines().count(),
        1,
        "one published result: {results}"
    );
    let stored = redis.cli(&["GET", results.trim()]);
    let token = tokens.into_iter().next().unwrap_or_default();
    assert!(
        !stored.contains(&token[..20]),
        "results are encrypted at rest"
    );

    // Logout on A ends the session on B too.
    let r = get(&a.base_url, "/logout", &cookie).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(
        get(&b.base_url, "/app", &cookie).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let revoked = redis.cli(&["--scan", "--pattern", "test:revoked:id:*"]);
    assert_eq!(revoked.lines().count(), 1, "{revoked}");
}
