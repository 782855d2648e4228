//! `oidcgate demo`: the built-in IdP, a small sample app that shows the identity headers it
//! receives, and the gateway in front of it — all on loopback, plain http, no settings needed
//! (§3 variables and `.env` are ignored). Ports: gateway 4180, app 4181, IdP 9000, or N, N+1,
//! N+2 with `--port-base N`.

use std::time::Duration;

use axum::http::HeaderMap;
use axum::response::Html;
use axum::routing::get;
use oidcgate_gateway::GatewayConfig;
use oidcgate_idp::{Directory, Idp};
use serde_json::{Value, json};

use crate::Outcome;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Gateway on N, sample app on N+1, IdP on N+2 (default: 4180, 4181, 9000).
    #[arg(long)]
    port_base: Option<u16>,
}

const IDENTITY: [&str; 4] = [
    "x-auth-request-user",
    "x-auth-request-email",
    "x-auth-request-preferred-username",
    "x-auth-request-groups",
];

fn identity(headers: &HeaderMap) -> Value {
    let mut out = serde_json::Map::new();
    for name in IDENTITY {
        if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) {
            out.insert(name.to_owned(), json!(v));
        }
    }
    Value::Object(out)
}

fn escape(s: &str) -> String {
    oidcgate_axum::login::pages::escape(s)
}

/// The sample app: what the gateway told it about the user.
fn sample_app() -> axum::Router {
    axum::Router::new()
        .route(
            "/api/whoami",
            get(|headers: HeaderMap| async move { axum::Json(identity(&headers)) }),
        )
        .fallback(|headers: HeaderMap| async move {
            let rows: String = IDENTITY
                .iter()
                .filter_map(|n| headers.get(*n).and_then(|v| v.to_str().ok()).map(|v| (n, v)))
                .map(|(n, v)| format!("<tr><th>{}</th><td>{}</td></tr>", escape(n), escape(v)))
                .collect();
            let user = headers.get("x-auth-request-preferred-username").and_then(|v| v.to_str().ok()).unwrap_or("?");
            Html(format!(
                "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>oidcgate demo app</title></head>\
                 <body><h1>Hello, {}!</h1><p>This page is the sample app behind the oidcgate gateway. \
                 It did no authentication itself; the gateway sent these headers:</p>\
                 <table id=\"identity\">{rows}</table><p><a href=\"/api/whoami\">JSON</a> · <a href=\"/logout\">Sign out</a></p></body></html>",
                escape(user)
            ))
        })
}

fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        panic!("the system random number generator is unavailable");
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub async fn run(args: Args) -> Outcome {
    let (gw_port, app_port, idp_port) = match args.port_base {
        Some(n) if n <= u16::MAX - 2 => (n, n + 1, n + 2),
        Some(_) => {
            eprintln!("error: --port-base: must leave room for two more ports");
            return Outcome::Usage;
        }
        None => (4180, 4181, 9000),
    };
    let gateway_url = format!("http://127.0.0.1:{gw_port}");
    let issuer = format!("http://127.0.0.1:{idp_port}");

    // The IdP, with the demo client registered for this gateway's actual redirect URI.
    let mut directory = Directory::demo();
    for client in directory
        .clients
        .iter_mut()
        .filter(|c| c.client_id == "demo" || c.client_id == "demo-public")
    {
        client
            .redirect_uris
            .push(format!("{gateway_url}/auth/callback"));
        client
            .redirect_uris
            .push(format!("http://localhost:{gw_port}/auth/callback"));
        client
            .post_logout_redirect_uris
            .push(format!("{gateway_url}/"));
    }
    let idp = match Idp::new(&issuer, directory) {
        Ok(i) => i,
        Err(e) => return fail(format!("starting the IdP: {e}")),
    };
    let idp_listener = match tokio::net::TcpListener::bind(("127.0.0.1", idp_port)).await {
        Ok(l) => l,
        Err(e) => {
            return fail(format!(
                "cannot listen on 127.0.0.1:{idp_port} for the IdP: {e}"
            ));
        }
    };
    tokio::spawn(async move {
        let _ = idp.serve(idp_listener, std::future::pending()).await;
    });

    let app_listener = match tokio::net::TcpListener::bind(("127.0.0.1", app_port)).await {
        Ok(l) => l,
        Err(e) => {
            return fail(format!(
                "cannot listen on 127.0.0.1:{app_port} for the sample app: {e}"
            ));
        }
    };
    tokio::spawn(async move {
        let _ = axum::serve(app_listener, sample_app()).await;
    });

    let config = GatewayConfig {
        issuer: issuer.clone(),
        client_id: Some("demo".into()),
        endpoints: None,
        redis_sessions: false,
        max_pending_logins: 5,
        client_auth: oidcgate_core::client::ClientAuth::SecretBasic(
            oidcgate_core::client::ClientSecret::new("demo-secret"),
        ),
        redirect_uri: url::Url::parse(&format!("{gateway_url}/auth/callback")).ok(),
        scopes: "openid email profile".into(),
        audience: Some("demo-api".into()),
        required_claims: ["exp", "iat", "iss", "sub"].map(String::from).to_vec(),
        groups_claim: "groups".into(),
        allow_http: false,
        refetch_cooldown: Duration::from_secs(5),
        session_secret: Some(random_secret()),
        session_secret_previous: Vec::new(),
        session_max_age: Duration::from_secs(86_400),
        cookie_secure: false,
        upstream: match url::Url::parse(&format!("http://127.0.0.1:{app_port}")) {
            Ok(u) => u,
            Err(e) => return fail(e),
        },
        listen: format!("127.0.0.1:{gw_port}"),
        pass_access_token: false,
        pass_authorization_header: false,
        allowed_email_domains: Vec::new(),
        allowed_emails: Vec::new(),
        allowed_groups: Vec::new(),
        required_scopes: Vec::new(),
        upstream_timeout: Duration::from_secs(30),
        token_cache_entries: 10_000,
        skip_auth: Default::default(),
        max_header_bytes: 32 * 1024,
        max_body_bytes: 0,
        header_read_timeout: Duration::from_secs(10),
        upstream_max_connections: 512,
        redis_url: None,
        redis_key_prefix: "oidcgate:".into(),
        session_cache_ttl: Duration::from_secs(1),
    };
    eprintln!("oidcgate demo");
    eprintln!("  open {gateway_url}/ and sign in as alice / wonderland (or bob / builder)");
    eprintln!(
        "  gateway {gateway_url}  ·  sample app http://127.0.0.1:{app_port}  ·  IdP {issuer}"
    );
    eprintln!(
        "  a token for the API: oidcgate token client-credentials --issuer {issuer} --client-id demo-service --client-secret demo-service-secret"
    );
    match oidcgate_gateway::serve(config).await {
        Ok(()) => Outcome::Ok,
        Err(e) => fail(e),
    }
}

fn fail(e: impl std::fmt::Display) -> Outcome {
    eprintln!("error: {e}");
    Outcome::Failed
}
