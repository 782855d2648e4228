//! A resource server protected by oidcgate bearer-token validation: seed 001's FastAPI app
//! (anonymous homepage, scope-protected `/profile/`) plus seed 004's `/public` and `/protected`.
//!
//! ```text
//! OIDC_ISSUER=https://idp.example.com/realms/demo OIDC_AUDIENCE=my-api \
//!     cargo run --release --example resource_server
//! ```
//!
//! Settings (environment or `.env`; the environment wins): `OIDC_ISSUER` and `OIDC_AUDIENCE`
//! (required), `LISTEN_ADDR` (default `127.0.0.1:8000`; port 0 picks a free one),
//! `OIDC_REQUIRED_CLAIMS` (default `exp iat iss sub`), `OIDC_ALLOW_HTTP` (plain http to a
//! non-loopback issuer), `OIDC_OP_JWKS_ENDPOINT` (skip discovery), `OIDC_JWKS_REFETCH_COOLDOWN`
//! (seconds, default 5), `TOKEN_CACHE_ENTRIES` (default 10000; 0 disables the cache).
//! It prints `listening on http://ADDR` once it accepts connections.
//!
//! Without `OIDC_ISSUER` it starts a *development issuer* in the same process (discovery and
//! JWKS on a free loopback port, a fresh Ed25519 key that never leaves the process) and prints
//! a one-hour token for it, so `cargo run --release --example resource_server` works offline.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use oidcgate_axum::bearer::{AUTHENTICATED_SCOPE, BearerAuthLayer, Principal, RequireScopeLayer};
use oidcgate_core::http::UrlPolicy;
use oidcgate_core::provider::KeyCacheConfig;
use oidcgate_core::validate::{AccessTokenValidator, IssuerPolicy, TokenCacheConfig};
use serde_json::{Value, json};

/// `GET /`: who is calling, or that nobody is (seed 001's homepage).
async fn homepage(principal: Option<Principal>) -> Json<Value> {
    match principal {
        Some(p) => Json(json!({"username": p.username(), "anonymous": false})),
        None => Json(json!({"anonymous": true})),
    }
}

/// `GET /profile/`: needs scope `profile`.
async fn profile(principal: Principal) -> Json<Value> {
    Json(json!({"user": principal.username(), "scopes": principal.scopes()}))
}

/// `GET /protected`: any authenticated caller (seed 004).
async fn protected(principal: Principal) -> Json<Value> {
    let name = principal.name().or(principal.subject()).unwrap_or("");
    Json(json!({
        "message": format!("Hello, {name}!"),
        "user": {
            "sub": principal.subject(),
            "name": principal.name(),
            "email": principal.email(),
            "picture": principal.string_claim("picture"),
        },
    }))
}

/// `GET /public`: no authentication at all.
async fn public() -> Json<Value> {
    Json(json!({"message": "This endpoint is public."}))
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn config_error(setting: &str, problem: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {setting}: {problem}");
    ExitCode::from(2)
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

    // Without OIDC_ISSUER the example trusts a development issuer of its own, so the quick
    // start works offline; with it, OIDC_AUDIENCE is required as well.
    let dev = match env("OIDC_ISSUER") {
        Some(_) => None,
        None => match dev_issuer::start().await {
            Ok(dev) => Some(dev),
            Err(e) => {
                eprintln!("error: cannot start the development issuer: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let issuer = match &dev {
        Some(dev) => dev.issuer.clone(),
        None => env("OIDC_ISSUER").unwrap_or_default(),
    };
    let Some(audience) =
        env("OIDC_AUDIENCE").or(dev.as_ref().map(|_| dev_issuer::AUDIENCE.to_owned()))
    else {
        return config_error(
            "OIDC_AUDIENCE",
            "required (the expected `aud` of access tokens)",
        );
    };
    let listen = env("LISTEN_ADDR").unwrap_or_else(|| "127.0.0.1:8000".into());
    let allow_http = match env("OIDC_ALLOW_HTTP").as_deref() {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(other) => {
            return config_error("OIDC_ALLOW_HTTP", format!("{other:?} is not true or false"));
        }
    };
    let mut policy = IssuerPolicy::new(issuer, audience);
    if let Some(claims) = env("OIDC_REQUIRED_CLAIMS") {
        policy = policy.required_claims(claims.split_whitespace());
    }
    if let Some(uri) = env("OIDC_OP_JWKS_ENDPOINT") {
        match url::Url::parse(&uri) {
            Ok(uri) => policy = policy.jwks_uri(uri),
            Err(e) => return config_error("OIDC_OP_JWKS_ENDPOINT", e),
        }
    }
    let mut key_cache = KeyCacheConfig {
        url_policy: UrlPolicy { allow_http },
        ..Default::default()
    };
    if let Some(cooldown) = env("OIDC_JWKS_REFETCH_COOLDOWN") {
        // A bare number is seconds; otherwise a duration such as `5s` or `500ms`.
        let parsed = match cooldown.parse::<u64>() {
            Ok(secs) => Ok(Duration::from_secs(secs)),
            Err(_) => humantime::parse_duration(&cooldown),
        };
        match parsed {
            Ok(d) => key_cache.refetch_cooldown = d,
            Err(e) => {
                return config_error("OIDC_JWKS_REFETCH_COOLDOWN", format!("{cooldown:?}: {e}"));
            }
        }
    }
    let cache_entries = match env("TOKEN_CACHE_ENTRIES").map(|v| v.parse::<usize>()) {
        None => 10_000,
        Some(Ok(n)) => n,
        Some(Err(_)) => return config_error("TOKEN_CACHE_ENTRIES", "expected a number"),
    };
    if allow_http {
        tracing::warn!(
            "OIDC_ALLOW_HTTP=true: plain http to non-loopback issuers is allowed (development only)"
        );
    }
    let mut builder = AccessTokenValidator::builder()
        .issuer(policy)
        .key_cache(key_cache);
    if cache_entries > 0 {
        builder = builder.token_cache(TokenCacheConfig {
            max_entries: cache_entries,
            ..Default::default()
        });
    }
    let validator = match builder.build() {
        Ok(v) => Arc::new(v),
        Err(e) => return config_error("OIDC_ISSUER", e),
    };
    // Keys load now when the IdP is up; otherwise requests get 503 until they do.
    for e in validator.warm_up().await {
        tracing::warn!(error = %e, "signing keys not loaded yet; will retry on demand");
    }

    let authenticated = Router::new()
        .route("/", get(homepage))
        .route(
            "/profile/",
            get(profile).route_layer(RequireScopeLayer::new(["profile"])),
        )
        .route(
            "/protected",
            get(protected).route_layer(RequireScopeLayer::new([AUTHENTICATED_SCOPE])),
        )
        .layer(BearerAuthLayer::optional(validator));
    let app = Router::new()
        .route("/public", get(public))
        .merge(authenticated);

    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(l) => l,
        Err(e) => return config_error("LISTEN_ADDR", format!("cannot listen on {listen}: {e}")),
    };
    match listener.local_addr() {
        Ok(addr) => {
            println!("listening on http://{addr}");
            if let Some(dev) = &dev {
                dev.announce(addr);
            }
        }
        Err(e) => return config_error("LISTEN_ADDR", e),
    }
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let shutdown = async {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return shutdown.await,
            };
        tokio::select! {
            () = shutdown => {}
            _ = term.recv() => {}
        }
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

/// The development issuer used when `OIDC_ISSUER` is not set.
mod dev_issuer {
    use std::net::SocketAddr;
    use std::time::{SystemTime, UNIX_EPOCH};

    use axum::routing::get;
    use axum::{Json, Router};
    use oidcgate_core::jose::Algorithm;
    use oidcgate_core::jose::sign::SigningKey;
    use serde_json::json;

    /// The audience of the development tokens.
    pub const AUDIENCE: &str = "demo-api";

    pub struct DevIssuer {
        pub issuer: String,
        token: String,
    }

    /// Serves discovery and JWKS for a fresh key and mints one token.
    pub async fn start() -> Result<DevIssuer, Box<dyn std::error::Error>> {
        let key = SigningKey::generate(Algorithm::EdDSA)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let issuer = format!("http://{}", listener.local_addr()?);
        let jwks = json!({"keys": [key.public_jwk()]});
        let discovery = json!({
            "issuer": issuer,
            "jwks_uri": format!("{issuer}/jwks"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["EdDSA"],
        });
        let app = Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || async move { Json(discovery) }),
            )
            .route("/jwks", get(move || async move { Json(jwks) }));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let claims = json!({
            "iss": issuer, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 3600,
            "scope": "openid profile email", "email": "alice@example.com", "name": "Alice",
        });
        let token = key.sign_jwt(Some("at+jwt"), &claims)?;
        Ok(DevIssuer { issuer, token })
    }

    impl DevIssuer {
        /// Prints the issuer, the token and a curl command (stdout, after the listening line).
        pub fn announce(&self, addr: SocketAddr) {
            println!(
                "OIDC_ISSUER is not set: trusting a development issuer at {}",
                self.issuer
            );
            println!("token: {}", self.token);
            println!(
                "try: curl -H \"Authorization: Bearer {}\" http://{addr}/protected",
                self.token
            );
        }
    }
}
