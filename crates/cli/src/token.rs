//! `oidcgate token`: get, refresh, revoke and introspect tokens from a terminal or script, on
//! the core relying-party client. Only the token (or, with `--json`, the response) goes to
//! stdout; URLs, codes, the QR code and the spinner go to stderr. Tokens from the
//! client-credentials, device and login grants are cached per issuer, client, grant and scope
//! in `$XDG_CACHE_HOME/oidcgate` (mode 0600) until a minute before they expire; `--no-cache`
//! bypasses the cache.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use oidcgate_core::client::{
    CallbackParams, ClientAuth, ClientConfig, ClientError, ClientSecret, OidcClient, TokenResponse,
};
use oidcgate_core::http::{ReqwestClient, UrlPolicy};
use serde_json::{Value, json};

use crate::Outcome;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    grant: Grant,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, clap::Args)]
struct Common {
    /// The provider's issuer URL.
    #[arg(long, env = "OIDC_ISSUER", global = true)]
    issuer: Option<String>,
    /// This client's id.
    #[arg(long, env = "OIDC_CLIENT_ID", global = true)]
    client_id: Option<String>,
    /// The client secret (absent: a public client).
    #[arg(
        long,
        env = "OIDC_CLIENT_SECRET",
        global = true,
        hide_env_values = true
    )]
    client_secret: Option<String>,
    /// Send the secret in the form body (client_secret_post) instead of HTTP Basic.
    #[arg(long, global = true)]
    secret_post: bool,
    /// Authenticate with private_key_jwt: a PEM private key or a private JWK file.
    #[arg(
        long,
        env = "OIDC_CLIENT_PRIVATE_KEY_FILE",
        global = true,
        conflicts_with = "client_secret"
    )]
    client_key: Option<String>,
    /// The `kid` of --client-key as registered (default: the JWK's, else its RFC 7638
    /// thumbprint).
    #[arg(long, env = "OIDC_CLIENT_PRIVATE_KEY_KID", global = true)]
    client_key_kid: Option<String>,
    /// Print the whole token response as JSON.
    #[arg(long, global = true)]
    json: bool,
    /// Do not read or write the token cache.
    #[arg(long, global = true)]
    no_cache: bool,
    /// Allow plain http to a non-loopback issuer (development only).
    #[arg(long, env = "OIDC_ALLOW_HTTP", global = true)]
    allow_http: bool,
}

#[derive(Debug, clap::Subcommand)]
enum Grant {
    /// Client credentials grant: a token for this client itself.
    ClientCredentials {
        #[arg(long)]
        scope: Option<String>,
        /// `audience` parameter (Auth0 and others).
        #[arg(long, conflicts_with = "resource")]
        audience: Option<String>,
        /// RFC 8707 resource indicator.
        #[arg(long)]
        resource: Option<String>,
    },
    /// Device authorization grant (RFC 8628): approve on another device.
    Device {
        #[arg(long, default_value = "openid profile email")]
        scope: String,
    },
    /// Authorization code + PKCE with a loopback redirect (RFC 8252), for a public client.
    Login {
        #[arg(long, default_value = "openid profile email")]
        scope: String,
        /// Do not try to open a browser; only print the URL.
        #[arg(long)]
        no_browser: bool,
    },
    /// Redeem a refresh token.
    Refresh {
        #[arg(long)]
        refresh_token: String,
    },
    /// Revoke a token (RFC 7009).
    Revoke {
        #[arg(long)]
        token: String,
        #[arg(long)]
        token_type_hint: Option<String>,
    },
    /// Introspect a token (RFC 7662).
    Introspect {
        #[arg(long)]
        token: String,
        #[arg(long)]
        token_type_hint: Option<String>,
    },
}

fn fail(e: impl std::fmt::Display) -> Outcome {
    eprintln!("error: {e}");
    Outcome::Failed
}

fn usage(setting: &str, problem: &str) -> Outcome {
    eprintln!("error: {setting}: {problem}");
    Outcome::Usage
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The cache file for one (issuer, client, grant, scope), under `$XDG_CACHE_HOME/oidcgate`.
fn cache_path(parts: &[&str]) -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, parts.join("\n").as_bytes());
    let name: String = digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Some(
        base.join("oidcgate")
            .join("tokens")
            .join(format!("{name}.json")),
    )
}

fn cache_read(path: &PathBuf) -> Option<Value> {
    let entry: Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    // Reuse only while at least a minute of validity is left.
    (entry["expires_at"].as_i64()? > now() + 60).then(|| entry["response"].clone())
}

fn cache_write(path: &PathBuf, tokens: &TokenResponse) {
    let Some(expires_in) = tokens.expires_in else {
        return;
    };
    let Some(dir) = path.parent() else { return };
    let entry = json!({"expires_at": now() + expires_in as i64, "response": Value::Object(tokens.raw.clone())});
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
            options.mode(0o600);
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        options.open(path)?.write_all(entry.to_string().as_bytes())
    };
    if let Err(e) = write() {
        tracing::warn!(error = %e, "could not write the token cache");
    }
}

fn print_tokens(response: &Value, json: bool) -> Outcome {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(response).unwrap_or_default()
        );
    } else {
        match response["access_token"].as_str() {
            Some(t) => println!("{t}"),
            None => return fail("the response has no access_token"),
        }
    }
    Outcome::Ok
}

pub async fn run(args: Args) -> Outcome {
    let c = &args.common;
    let Some(issuer) = c.issuer.clone() else {
        return usage("--issuer", "required (or OIDC_ISSUER)");
    };
    let Some(client_id) = c.client_id.clone() else {
        return usage("--client-id", "required (or OIDC_CLIENT_ID)");
    };
    let auth = match (&c.client_secret, c.secret_post, &c.client_key) {
        (_, _, Some(path)) => {
            // Key files are small: a device or a huge file is refused.
            let text = match std::fs::File::open(path).and_then(|f| {
                use std::io::Read as _;
                let mut bytes = Vec::new();
                f.take(64 * 1024 + 1).read_to_end(&mut bytes).map(|_| bytes)
            }) {
                Ok(t) if t.len() <= 64 * 1024 => t,
                Ok(_) => return usage("--client-key", &format!("{path}: larger than 64 KiB")),
                Err(e) => return usage("--client-key", &format!("{path}: {e}")),
            };
            let kid = c.client_key_kid.clone().filter(|k| !k.is_empty());
            match oidcgate_core::jose::sign::SigningKey::from_pem_or_jwk(&text, kid) {
                Ok(key) => ClientAuth::PrivateKeyJwt(std::sync::Arc::new(key)),
                Err(e) => return usage("--client-key", &format!("{path}: {e}")),
            }
        }
        (Some(s), false, None) => ClientAuth::SecretBasic(ClientSecret::new(s.clone())),
        (Some(s), true, None) => ClientAuth::SecretPost(ClientSecret::new(s.clone())),
        (None, _, None) => ClientAuth::None,
    };
    let config = ClientConfig {
        auth,
        url_policy: UrlPolicy {
            allow_http: c.allow_http,
        },
        ..ClientConfig::public(&issuer, &client_id)
    };
    if let Err(e) = config.url_policy.check(&match url::Url::parse(&issuer) {
        Ok(u) => u,
        Err(_) => return usage("--issuer", "not a URL"),
    }) {
        return usage("--issuer", &e.to_string());
    }
    let http = match ReqwestClient::new(Default::default()) {
        Ok(h) => Arc::new(h),
        Err(e) => return fail(e),
    };
    let client = match OidcClient::discover(config, http).await {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let secret_tag = if c.client_key.is_some() {
        "private_key_jwt"
    } else if c.client_secret.is_some() {
        "confidential"
    } else {
        "public"
    };
    match args.grant {
        Grant::ClientCredentials {
            scope,
            audience,
            resource,
        } => {
            let key = [
                issuer.as_str(),
                &client_id,
                secret_tag,
                "client_credentials",
                scope.as_deref().unwrap_or(""),
                audience.as_deref().unwrap_or(""),
                resource.as_deref().unwrap_or(""),
            ];
            let cache = (!c.no_cache).then(|| cache_path(&key)).flatten();
            if let Some(hit) = cache.as_ref().and_then(cache_read) {
                return print_tokens(&hit, c.json);
            }
            let mut extra = Vec::new();
            if let Some(a) = &audience {
                extra.push(("audience", a.as_str()));
            }
            if let Some(r) = &resource {
                extra.push(("resource", r.as_str()));
            }
            match client.client_credentials(scope.as_deref(), &extra).await {
                Ok(tokens) => {
                    if let Some(path) = &cache {
                        cache_write(path, &tokens);
                    }
                    print_tokens(&Value::Object(tokens.raw), c.json)
                }
                Err(e) => fail(e),
            }
        }
        Grant::Device { scope } => {
            let key = [issuer.as_str(), &client_id, secret_tag, "device", &scope];
            let cache = (!c.no_cache).then(|| cache_path(&key)).flatten();
            if let Some(hit) = cache.as_ref().and_then(cache_read) {
                return print_tokens(&hit, c.json);
            }
            let device = match client.device_authorization(Some(&scope)).await {
                Ok(d) => d,
                Err(e) => return fail(e),
            };
            eprintln!(
                "To sign in, open {} and enter the code {}",
                device.verification_uri, device.user_code
            );
            if let Some(complete) = &device.verification_uri_complete {
                eprintln!("or open {complete}");
                if let Ok(code) = qrcode::QrCode::new(complete.as_bytes()) {
                    let art = code
                        .render::<qrcode::render::unicode::Dense1x2>()
                        .quiet_zone(true)
                        .build();
                    eprintln!("{art}");
                }
            }
            let tty = std::io::stderr().is_terminal();
            let mut frame = 0usize;
            let result = client
                .poll_device(&device, |wait| {
                    if tty {
                        let spin = ['|', '/', '-', '\\'][frame % 4];
                        frame += 1;
                        eprint!(
                            "\r{spin} waiting for approval (next check in {}s)",
                            wait.as_secs()
                        );
                    }
                })
                .await;
            if tty {
                eprintln!();
            }
            match result {
                Ok(tokens) => {
                    if let Some(path) = &cache {
                        cache_write(path, &tokens);
                    }
                    print_tokens(&Value::Object(tokens.raw), c.json)
                }
                Err(ClientError::AccessDenied) => {
                    fail("the request was denied on the verification page")
                }
                Err(ClientError::DeviceExpired) => {
                    fail("the code expired before it was approved; run the command again")
                }
                Err(e) => fail(e),
            }
        }
        Grant::Login { scope, no_browser } => {
            let key = [issuer.as_str(), &client_id, secret_tag, "login", &scope];
            let cache = (!c.no_cache).then(|| cache_path(&key)).flatten();
            if let Some(hit) = cache.as_ref().and_then(cache_read) {
                return print_tokens(&hit, c.json);
            }
            match loopback_login(&client, &scope, no_browser).await {
                Ok(tokens) => {
                    if let Some(path) = &cache {
                        cache_write(path, &tokens);
                    }
                    print_tokens(&Value::Object(tokens.raw), c.json)
                }
                Err(e) => fail(e),
            }
        }
        Grant::Refresh { refresh_token } => {
            match client.refresh(&refresh_token, None, None).await {
                Ok(tokens) => print_tokens(&Value::Object(tokens.raw), c.json),
                Err(e) => fail(e),
            }
        }
        Grant::Revoke {
            token,
            token_type_hint,
        } => match client.revoke(&token, token_type_hint.as_deref()).await {
            Ok(()) => {
                eprintln!("revoked");
                Outcome::Ok
            }
            Err(e) => fail(e),
        },
        Grant::Introspect {
            token,
            token_type_hint,
        } => match client.introspect(&token, token_type_hint.as_deref()).await {
            Ok(result) => {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&Value::Object(result)).unwrap_or_default()
                );
                Outcome::Ok
            }
            Err(e) => fail(e),
        },
    }
}

/// RFC 8252: a one-shot HTTP server on 127.0.0.1 receives the redirect.
async fn loopback_login(
    client: &OidcClient,
    scope: &str,
    no_browser: bool,
) -> Result<TokenResponse, String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let redirect_uri = format!("http://127.0.0.1:{port}/callback");
    let (url, pending) = client
        .authorization_request(&redirect_uri, scope)
        .build()
        .map_err(|e| e.to_string())?;
    eprintln!("Open this URL to sign in: {url}");
    if !no_browser {
        open_browser(url.as_str());
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(1);
    let app = axum::Router::new().route(
        "/callback",
        axum::routing::get(move |uri: axum::http::Uri| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(uri.query().unwrap_or("").to_owned()).await;
                axum::response::Html("<!doctype html><p>Signed in. You can close this window and return to the terminal.</p>")
            }
        }),
    );
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let query = tokio::time::timeout(Duration::from_secs(300), rx.recv()).await;
    server.abort();
    let query = query
        .map_err(|_| "no sign-in within 5 minutes".to_owned())?
        .ok_or("the callback server stopped")?;
    let params = CallbackParams::from_query(&query).map_err(|e| e.to_string())?;
    let login = client
        .handle_callback(&pending, &params)
        .await
        .map_err(|e| e.to_string())?;
    Ok(login.tokens)
}

/// Opens the system browser when there is one; failing quietly is fine (the URL is printed).
fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let _ = std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}
