//! A web app with OpenID Connect login (seeds 002/003's FastAPI and Flask apps): `/` is public,
//! `/profile` and `/api/me` need a signed-in user, `/identity` answers what seed 002's Topaz
//! `identity_provider` would (no identity, or subject = sub); `/login`, `/auth/callback` and
//! `/logout` come from oidcgate's login layer with an encrypted cookie session (or Redis).
//!
//! ```text
//! OIDC_ISSUER=http://127.0.0.1:9000 OIDC_CLIENT_ID=demo OIDC_CLIENT_SECRET=demo-secret \
//! OIDC_REDIRECT_URI=http://127.0.0.1:4180/auth/callback SESSION_SECRET=$(openssl rand -hex 32) \
//! COOKIE_SECURE=false LISTEN_ADDR=127.0.0.1:4180 cargo run --release --example login_app
//! ```
//! (with `cargo run --release -- idp` running for the issuer). Settings from the environment or
//! `.env`: `OIDC_ISSUER`, `OIDC_CLIENT_ID`, `OIDC_CLIENT_SECRET` (absent: public client),
//! `OIDC_REDIRECT_URI`, `SESSION_SECRET` (≥ 32 bytes), `SESSION_SECRET_PREVIOUS`, `OIDC_SCOPES`
//! (default `openid email profile`), `SESSION_MAX_AGE` (seconds, default 86400), `COOKIE_SECURE`
//! (default true), `OIDC_ALLOW_HTTP`, `SESSION_STORE` (`cookie`, the default, or `redis`),
//! `REDIS_URL` (required for `redis`; with cookies it shares logouts and refreshes between
//! replicas), `REDIS_KEY_PREFIX`, `LISTEN_ADDR` (default 127.0.0.1:4180). It prints
//! `listening on http://ADDR` when ready.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::response::Html;
use axum::routing::get;
use axum::{Json, Router};
use oidcgate_axum::Identity;
use oidcgate_axum::login::redis::RedisSessions;
use oidcgate_axum::login::{LoginConfig, OidcLoginLayer, RequireLoginLayer, SessionUser};
use oidcgate_core::client::{ClientAuth, ClientConfig, ClientSecret, OidcClient};
use oidcgate_core::http::{ReqwestClient, UrlPolicy};
use oidcgate_core::session::SessionKeys;
use serde_json::{Value, json};

fn escape(s: &str) -> String {
    oidcgate_axum::login::pages::escape(s)
}

async fn home(user: Option<SessionUser>) -> Html<String> {
    Html(match user {
        Some(u) => format!(
            "<h1>Hello, {}</h1><p><a href=\"/profile\">Profile</a> · <a href=\"/logout\">Sign out</a></p>",
            escape(u.name.as_deref().unwrap_or(&u.sub))
        ),
        None => "<h1>Welcome</h1><p><a href=\"/login\">Sign in</a></p>".to_owned(),
    })
}

fn identity(u: &SessionUser) -> Value {
    json!({
        "sub": u.sub,
        "email": u.email,
        "email_verified": u.email_verified,
        "name": u.name,
        "preferred_username": u.preferred_username,
        "groups": u.groups,
    })
}

async fn profile(user: SessionUser) -> Html<String> {
    let pretty = serde_json::to_string_pretty(&identity(&user)).unwrap_or_default();
    Html(format!(
        "<h1>Profile</h1><pre>{}</pre><p><a href=\"/logout\">Sign out</a></p>",
        escape(&pretty)
    ))
}

async fn me(user: SessionUser) -> Json<Value> {
    Json(identity(&user))
}

/// Seed 002's Topaz `identity_provider`: "no identity", or "subject = sub", for an authorizer.
async fn topaz_identity(who: Identity) -> Json<Value> {
    Json(match who.subject() {
        None => json!({"type": "IDENTITY_TYPE_NONE"}),
        Some(sub) => json!({"type": "IDENTITY_TYPE_SUB", "value": sub}),
    })
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn config_error(setting: &str, problem: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {setting}: {problem}");
    ExitCode::from(2)
}

fn flag(name: &str, default: bool) -> Result<bool, ExitCode> {
    match env(name).as_deref() {
        None => Ok(default),
        Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(other) => Err(config_error(
            name,
            format!("{other:?} is not true or false"),
        )),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let _ = dotenvy::dotenv();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let required = |name: &str| env(name).ok_or_else(|| config_error(name, "required"));
    let (issuer, client_id, redirect_uri, secret) = match (
        required("OIDC_ISSUER"),
        required("OIDC_CLIENT_ID"),
        required("OIDC_REDIRECT_URI"),
        required("SESSION_SECRET"),
    ) {
        (Ok(a), Ok(b), Ok(c), Ok(d)) => (a, b, c, d),
        (Err(e), ..) | (_, Err(e), ..) | (_, _, Err(e), _) | (.., Err(e)) => return e,
    };
    let previous: Vec<String> = env("SESSION_SECRET_PREVIOUS")
        .map(|p| p.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let previous_refs: Vec<&[u8]> = previous.iter().map(|p| p.as_bytes()).collect();
    let keys = match SessionKeys::new(secret.as_bytes(), &previous_refs) {
        Ok(k) => Arc::new(k),
        Err(e) => return config_error("SESSION_SECRET", e),
    };
    let (cookie_secure, allow_http) =
        match (flag("COOKIE_SECURE", true), flag("OIDC_ALLOW_HTTP", false)) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => return e,
        };
    let redirect = match url::Url::parse(&redirect_uri) {
        Ok(u) => u,
        Err(e) => return config_error("OIDC_REDIRECT_URI", e),
    };
    if cookie_secure && redirect.scheme() == "http" && !oidcgate_core::http::is_loopback(&redirect)
    {
        return config_error(
            "COOKIE_SECURE",
            "true with a plain-http redirect URI: browsers would drop the cookies",
        );
    }
    let max_age = match env("SESSION_MAX_AGE").map(|v| v.parse::<u64>()) {
        None => 86_400,
        Some(Ok(v)) if v > 0 => v,
        Some(_) => return config_error("SESSION_MAX_AGE", "expected a positive number of seconds"),
    };
    let auth = match env("OIDC_CLIENT_SECRET") {
        Some(s) => ClientAuth::SecretBasic(ClientSecret::new(s)),
        None => ClientAuth::None,
    };
    let config = ClientConfig {
        auth,
        url_policy: UrlPolicy { allow_http },
        ..ClientConfig::public(&issuer, &client_id)
    };
    let http = match ReqwestClient::new(Default::default()) {
        Ok(h) => Arc::new(h),
        Err(e) => return config_error("OIDC_ISSUER", e),
    };
    let client = match OidcClient::discover(config, http).await {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("error: OIDC_ISSUER: discovery failed: {e}");
            return ExitCode::from(1);
        }
    };
    let mut login = LoginConfig::new(client, redirect_uri.clone(), keys);
    // SESSION_STORE=redis keeps sessions in Redis (the cookie holds a ticket); with cookie
    // sessions, a REDIS_URL still shares logouts and refreshes between replicas.
    let redis_sessions = match env("SESSION_STORE").as_deref() {
        None | Some("cookie") => false,
        Some("redis") => true,
        Some(other) => {
            return config_error(
                "SESSION_STORE",
                format!("{other:?}: expected cookie or redis"),
            );
        }
    };
    match env("REDIS_URL") {
        None if redis_sessions => {
            return config_error("REDIS_URL", "required when SESSION_STORE=redis");
        }
        None => {}
        Some(url) => {
            let prefix = env("REDIS_KEY_PREFIX").unwrap_or_else(|| "oidcgate:".into());
            let redis = match RedisSessions::connect(&url, &prefix, Duration::from_secs(1)).await {
                Ok(r) => Arc::new(r),
                Err(e) => {
                    eprintln!("error: REDIS_URL: {e}");
                    return ExitCode::from(1);
                }
            };
            if redis_sessions {
                login.redis = Some(redis);
            } else {
                login.shared_state = Some(redis);
            }
        }
    }
    login.cookie_secure = cookie_secure;
    login.session_max_age = Duration::from_secs(max_age);
    if let Some(scopes) = env("OIDC_SCOPES") {
        login.scopes = scopes;
    }
    let base = format!(
        "{}://{}/",
        redirect.scheme(),
        redirect.host_str().unwrap_or("127.0.0.1")
    );
    let base = match redirect.port() {
        Some(p) => base.trim_end_matches('/').to_owned() + &format!(":{p}/"),
        None => base,
    };
    login.post_logout_redirect_uri = Some(base);

    let protected = Router::new()
        .route("/profile", get(profile))
        .route("/api/me", get(me))
        .layer(RequireLoginLayer::new("/login"));
    let app = Router::new()
        .route("/", get(home))
        .route("/identity", get(topaz_identity))
        .merge(protected)
        .layer(OidcLoginLayer::new(login));
    let listen = env("LISTEN_ADDR").unwrap_or_else(|| "127.0.0.1:4180".into());
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(l) => l,
        Err(e) => return config_error("LISTEN_ADDR", format!("cannot listen on {listen}: {e}")),
    };
    match listener.local_addr() {
        Ok(addr) => println!("listening on http://{addr}"),
        Err(e) => return config_error("LISTEN_ADDR", e),
    }
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        eprintln!("error: server failed: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
