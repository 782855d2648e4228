//! Gateway settings (DESIGN §3): every setting is a flag and an environment variable, checked at
//! start; a bad or missing one is a [`ConfigError`] naming it.

use std::sync::Arc;
use std::time::Duration;

use oidcgate_core::client::{ClientAuth, ClientSecret};
use oidcgate_core::jose::sign::SigningKey;

use thiserror::Error;
use url::Url;

/// A setting that is missing or wrong.
#[derive(Debug, Error)]
#[error("{setting}: {problem}")]
pub struct ConfigError {
    pub setting: &'static str,
    pub problem: String,
}

fn err(setting: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        problem: problem.into(),
    }
}

/// The `oidcgate serve` flags (each also an environment variable).
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// IdP issuer URL.
    #[arg(long, env = "OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,
    /// OAuth2 client id (required for login).
    #[arg(long, env = "OIDC_CLIENT_ID")]
    pub oidc_client_id: Option<String>,
    /// Client secret (absent: a public client, PKCE only).
    #[arg(long, env = "OIDC_CLIENT_SECRET", hide_env_values = true)]
    pub oidc_client_secret: Option<String>,
    /// client_secret_basic (default with a secret), client_secret_post, client_secret_jwt,
    /// private_key_jwt (default with a private key), or none (default otherwise).
    #[arg(long, env = "OIDC_TOKEN_ENDPOINT_AUTH_METHOD")]
    pub oidc_token_endpoint_auth_method: Option<String>,
    /// Private key for private_key_jwt: a PEM file (PKCS#8, PKCS#1 RSA or SEC1 EC) or a
    /// private JWK (JSON).
    #[arg(long, env = "OIDC_CLIENT_PRIVATE_KEY_FILE")]
    pub oidc_client_private_key_file: Option<String>,
    /// `kid` of the private key as registered (default: the JWK's `kid`, else its RFC 7638
    /// thumbprint).
    #[arg(long, env = "OIDC_CLIENT_PRIVATE_KEY_KID")]
    pub oidc_client_private_key_kid: Option<String>,
    /// Callback URL registered at the IdP; the callback route is its path.
    #[arg(long, env = "OIDC_REDIRECT_URI")]
    pub oidc_redirect_uri: Option<String>,
    /// Space-separated scopes.
    #[arg(long, env = "OIDC_SCOPES", default_value = "openid email profile")]
    pub oidc_scopes: String,
    /// Expected `aud` of bearer access tokens; unset: no bearer tokens (sessions only).
    #[arg(long, env = "OIDC_AUDIENCE")]
    pub oidc_audience: Option<String>,
    /// Space-separated claims a bearer token must carry.
    #[arg(long, env = "OIDC_REQUIRED_CLAIMS", default_value = "exp iat iss sub")]
    pub oidc_required_claims: String,
    /// Claim holding the user's groups.
    #[arg(long, env = "OIDC_GROUPS_CLAIM", default_value = "groups")]
    pub oidc_groups_claim: String,
    /// Allow plain http to non-loopback issuers (development only).
    #[arg(long, env = "OIDC_ALLOW_HTTP", default_value_t = false, action = clap::ArgAction::Set)]
    pub oidc_allow_http: bool,
    /// Explicit authorization endpoint (seed 003); any OIDC_OP_* setting skips discovery.
    #[arg(long, env = "OIDC_OP_AUTHORIZATION_ENDPOINT")]
    pub oidc_op_authorization_endpoint: Option<String>,
    /// Explicit token endpoint.
    #[arg(long, env = "OIDC_OP_TOKEN_ENDPOINT")]
    pub oidc_op_token_endpoint: Option<String>,
    /// Explicit userinfo endpoint.
    #[arg(long, env = "OIDC_OP_USER_ENDPOINT")]
    pub oidc_op_user_endpoint: Option<String>,
    /// Explicit JWKS URI.
    #[arg(long, env = "OIDC_OP_JWKS_ENDPOINT")]
    pub oidc_op_jwks_endpoint: Option<String>,
    /// Explicit end-session endpoint.
    #[arg(long, env = "OIDC_OP_END_SESSION_ENDPOINT")]
    pub oidc_op_end_session_endpoint: Option<String>,
    /// Unknown-kid refetch bound per issuer.
    #[arg(long, env = "OIDC_JWKS_REFETCH_COOLDOWN", default_value = "5s")]
    pub oidc_jwks_refetch_cooldown: String,
    /// At least 32 bytes (required for login).
    #[arg(long, env = "SESSION_SECRET", hide_env_values = true)]
    pub session_secret: Option<String>,
    /// Old secrets, space-separated; decryption only.
    #[arg(long, env = "SESSION_SECRET_PREVIOUS", hide_env_values = true)]
    pub session_secret_previous: Option<String>,
    /// `cookie` or `redis`.
    #[arg(long, env = "SESSION_STORE", default_value = "cookie")]
    pub session_store: String,
    /// Redis URL for SESSION_STORE=redis, e.g. redis://127.0.0.1:6379/0.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Prefix of every Redis key.
    #[arg(long, env = "REDIS_KEY_PREFIX", default_value = "oidcgate:")]
    pub redis_key_prefix: String,
    /// In-process cache of Redis sessions; 0 disables it.
    #[arg(long, env = "SESSION_CACHE_TTL", default_value = "1s")]
    pub session_cache_ttl: String,
    /// Absolute session lifetime in seconds.
    #[arg(long, env = "SESSION_MAX_AGE", default_value_t = 86_400)]
    pub session_max_age: u64,
    /// `false` only for plain-http development.
    #[arg(long, env = "COOKIE_SECURE", default_value_t = true, action = clap::ArgAction::Set)]
    pub cookie_secure: bool,
    /// The protected application.
    #[arg(long, env = "UPSTREAM_URL")]
    pub upstream_url: Option<String>,
    /// Where the gateway listens.
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:4180")]
    pub listen_addr: String,
    /// Send `X-Forwarded-Access-Token` upstream (needs the token in the session: not built yet
    /// for sessions; bearer requests forward their own token).
    #[arg(long, env = "PASS_ACCESS_TOKEN", default_value_t = false, action = clap::ArgAction::Set)]
    pub pass_access_token: bool,
    /// Send `Authorization: Bearer <access token>` upstream (bearer requests keep theirs).
    #[arg(long, env = "PASS_AUTHORIZATION_HEADER", default_value_t = false, action = clap::ArgAction::Set)]
    pub pass_authorization_header: bool,
    /// Comma-separated allowed email domains.
    #[arg(long, env = "ALLOWED_EMAIL_DOMAINS")]
    pub allowed_email_domains: Option<String>,
    /// Comma-separated allowed emails.
    #[arg(long, env = "ALLOWED_EMAILS")]
    pub allowed_emails: Option<String>,
    /// Comma-separated allowed groups.
    #[arg(long, env = "ALLOWED_GROUPS")]
    pub allowed_groups: Option<String>,
    /// Space-separated scopes bearer tokens need.
    #[arg(long, env = "REQUIRED_SCOPES")]
    pub required_scopes: Option<String>,
    /// Comma-separated `[METHOD=]regex` routes that need no authentication.
    #[arg(long, env = "SKIP_AUTH_ROUTES")]
    pub skip_auth_routes: Option<String>,
    /// Upstream request timeout.
    #[arg(long, env = "UPSTREAM_TIMEOUT", default_value = "30s")]
    pub upstream_timeout: String,
    /// Largest request head (request line + headers) in bytes; larger → 431.
    #[arg(long, env = "MAX_HEADER_BYTES", default_value_t = 32 * 1024)]
    pub max_header_bytes: usize,
    /// Largest request body in bytes (0 = no limit); larger → 413.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 0)]
    pub max_body_bytes: u64,
    /// Time a client has to send its request headers (slowloris defence).
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value = "10s")]
    pub header_read_timeout: String,
    /// Most concurrent upstream requests; beyond, requests wait up to UPSTREAM_TIMEOUT.
    #[arg(long, env = "UPSTREAM_MAX_CONNECTIONS", default_value_t = 512)]
    pub upstream_max_connections: usize,
    /// Validated-token cache size (0 disables it).
    #[arg(long, env = "TOKEN_CACHE_ENTRIES", default_value_t = 10_000)]
    pub token_cache_entries: usize,
    /// Pending logins one browser may have at once (1–20); the oldest is dropped beyond.
    #[arg(long, env = "MAX_PENDING_LOGINS", default_value_t = 5)]
    pub max_pending_logins: usize,
}

/// Checked settings.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub issuer: String,
    pub client_id: Option<String>,
    /// How the client authenticates at the token endpoint (secrets redacted in `Debug`).
    pub client_auth: ClientAuth,
    /// Explicit endpoints (discovery skipped), when any `OIDC_OP_*` is set.
    pub endpoints: Option<Endpoints>,
    pub redirect_uri: Option<Url>,
    pub scopes: String,
    pub audience: Option<String>,
    pub required_claims: Vec<String>,
    pub groups_claim: String,
    pub allow_http: bool,
    pub refetch_cooldown: Duration,
    pub session_secret: Option<String>,
    pub session_secret_previous: Vec<String>,
    pub session_max_age: Duration,
    pub cookie_secure: bool,
    pub upstream: Url,
    pub listen: String,
    pub pass_access_token: bool,
    pub pass_authorization_header: bool,
    pub allowed_email_domains: Vec<String>,
    pub allowed_emails: Vec<String>,
    pub allowed_groups: Vec<String>,
    pub required_scopes: Vec<String>,
    pub upstream_timeout: Duration,
    pub token_cache_entries: usize,
    pub max_pending_logins: usize,
    pub skip_auth: crate::skip::SkipAuth,
    pub max_header_bytes: usize,
    pub max_body_bytes: u64,
    pub header_read_timeout: Duration,
    pub upstream_max_connections: usize,
    pub redis_url: Option<String>,
    /// SESSION_STORE=redis (else cookies, with `redis_url` only for shared state).
    pub redis_sessions: bool,
    pub redis_key_prefix: String,
    pub session_cache_ttl: Duration,
}

fn list(v: &Option<String>, sep: char) -> Vec<String> {
    v.as_deref()
        .map(|s| {
            s.split(sep)
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn duration(setting: &'static str, v: &str) -> Result<Duration, ConfigError> {
    match v.parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => humantime::parse_duration(v).map_err(|e| err(setting, format!("{v:?}: {e}"))),
    }
}

/// The provider's endpoints when configured explicitly (seed 003's `OIDC_OP_*`).
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub authorization: Option<Url>,
    pub token: Option<Url>,
    pub userinfo: Option<Url>,
    pub jwks: Url,
    pub end_session: Option<Url>,
}

impl ServeArgs {
    /// The `OIDC_OP_*` endpoints: none set means discovery; any set means all that are needed
    /// (the JWKS always; authorization and token for login), each an http(s) URL that the
    /// plain-http policy allows.
    fn endpoints(&self, login: bool) -> Result<Option<Endpoints>, ConfigError> {
        let settings = [
            (
                "OIDC_OP_AUTHORIZATION_ENDPOINT",
                &self.oidc_op_authorization_endpoint,
            ),
            ("OIDC_OP_TOKEN_ENDPOINT", &self.oidc_op_token_endpoint),
            ("OIDC_OP_USER_ENDPOINT", &self.oidc_op_user_endpoint),
            ("OIDC_OP_JWKS_ENDPOINT", &self.oidc_op_jwks_endpoint),
            (
                "OIDC_OP_END_SESSION_ENDPOINT",
                &self.oidc_op_end_session_endpoint,
            ),
        ];
        if settings
            .iter()
            .all(|(_, v)| v.as_deref().is_none_or(str::is_empty))
        {
            return Ok(None);
        }
        let policy = oidcgate_core::http::UrlPolicy {
            allow_http: self.oidc_allow_http,
        };
        let mut urls =
            settings.iter().map(
                |(name, value)| match value.as_deref().filter(|v| !v.is_empty()) {
                    None => Ok(None),
                    Some(v) => {
                        let url =
                            Url::parse(v).map_err(|e| err(name, format!("not a URL: {e}")))?;
                        policy.check(&url).map_err(|e| err(name, e.to_string()))?;
                        Ok(Some(url))
                    }
                },
            );
        let mut next = || urls.next().unwrap_or(Ok(None));
        let (authorization, token, userinfo, jwks, end_session) =
            (next()?, next()?, next()?, next()?, next()?);
        let jwks = jwks.ok_or_else(|| {
            err(
                "OIDC_OP_JWKS_ENDPOINT",
                "required when other OIDC_OP_* endpoints are set (discovery is then skipped)",
            )
        })?;
        if login {
            if authorization.is_none() {
                return Err(err(
                    "OIDC_OP_AUTHORIZATION_ENDPOINT",
                    "required for login when discovery is skipped",
                ));
            }
            if token.is_none() {
                return Err(err(
                    "OIDC_OP_TOKEN_ENDPOINT",
                    "required for login when discovery is skipped",
                ));
            }
        }
        Ok(Some(Endpoints {
            authorization,
            token,
            userinfo,
            jwks,
            end_session,
        }))
    }

    /// `OIDC_TOKEN_ENDPOINT_AUTH_METHOD` with its secret or key.
    fn client_auth(&self) -> Result<ClientAuth, ConfigError> {
        let secret = self.oidc_client_secret.clone().filter(|s| !s.is_empty());
        let key_file = self
            .oidc_client_private_key_file
            .as_deref()
            .filter(|f| !f.is_empty());
        let named = self
            .oidc_token_endpoint_auth_method
            .as_deref()
            .filter(|m| !m.is_empty());
        if named.is_none() && secret.is_some() && key_file.is_some() {
            return Err(err(
                "OIDC_TOKEN_ENDPOINT_AUTH_METHOD",
                "OIDC_CLIENT_SECRET and OIDC_CLIENT_PRIVATE_KEY_FILE are both set; say which to use",
            ));
        }
        let method = named.unwrap_or(match (&secret, key_file) {
            (Some(_), _) => "client_secret_basic",
            (None, Some(_)) => "private_key_jwt",
            (None, None) => "none",
        });
        let needs_secret = || {
            secret.clone().ok_or_else(|| {
                err(
                    "OIDC_CLIENT_SECRET",
                    format!("required with OIDC_TOKEN_ENDPOINT_AUTH_METHOD={method}"),
                )
            })
        };
        if method != "private_key_jwt" && key_file.is_some() {
            return Err(err(
                "OIDC_CLIENT_PRIVATE_KEY_FILE",
                format!("is for private_key_jwt, not {method}"),
            ));
        }
        match method {
            "client_secret_basic" => {
                Ok(ClientAuth::SecretBasic(ClientSecret::new(needs_secret()?)))
            }
            "client_secret_post" => Ok(ClientAuth::SecretPost(ClientSecret::new(needs_secret()?))),
            "client_secret_jwt" => ClientAuth::secret_jwt(&needs_secret()?).map_err(|e| {
                err(
                    "OIDC_CLIENT_SECRET",
                    format!("client_secret_jwt signs with the secret: {e}"),
                )
            }),
            "none" if secret.is_some() => Err(err(
                "OIDC_CLIENT_SECRET",
                "set, but OIDC_TOKEN_ENDPOINT_AUTH_METHOD=none never sends it",
            )),
            "none" => Ok(ClientAuth::None),
            "private_key_jwt" => {
                if secret.is_some() {
                    return Err(err(
                        "OIDC_CLIENT_SECRET",
                        "set, but private_key_jwt authenticates with OIDC_CLIENT_PRIVATE_KEY_FILE",
                    ));
                }
                let path = key_file.ok_or_else(|| {
                    err(
                        "OIDC_CLIENT_PRIVATE_KEY_FILE",
                        "required with private_key_jwt",
                    )
                })?;
                let text = read_small_file(path, 64 * 1024)
                    .map_err(|e| err("OIDC_CLIENT_PRIVATE_KEY_FILE", format!("{path}: {e}")))?;
                let kid = self
                    .oidc_client_private_key_kid
                    .clone()
                    .filter(|k| !k.is_empty());
                let key = SigningKey::from_pem_or_jwk(&text, kid)
                    .map_err(|e| err("OIDC_CLIENT_PRIVATE_KEY_FILE", format!("{path}: {e}")))?;
                Ok(ClientAuth::PrivateKeyJwt(Arc::new(key)))
            }
            other => Err(err(
                "OIDC_TOKEN_ENDPOINT_AUTH_METHOD",
                format!(
                    "{other:?} is not client_secret_basic, client_secret_post, client_secret_jwt, private_key_jwt or none"
                ),
            )),
        }
    }

    /// Checks every setting.
    pub fn check(&self) -> Result<GatewayConfig, ConfigError> {
        let issuer = self
            .oidc_issuer
            .clone()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| err("OIDC_ISSUER", "required (the IdP issuer URL)"))?;
        Url::parse(&issuer).map_err(|e| err("OIDC_ISSUER", format!("not a URL: {e}")))?;
        let upstream = self
            .upstream_url
            .as_deref()
            .ok_or_else(|| err("UPSTREAM_URL", "required (the application to protect)"))?;
        let upstream =
            Url::parse(upstream).map_err(|e| err("UPSTREAM_URL", format!("not a URL: {e}")))?;
        if upstream.scheme() != "http" {
            return Err(err(
                "UPSTREAM_URL",
                "only http:// upstreams are supported (the gateway and the app share a host or network)",
            ));
        }
        let redis_sessions = match self.session_store.as_str() {
            "cookie" => false,
            "redis" => true,
            other => {
                return Err(err(
                    "SESSION_STORE",
                    format!("{other:?}: expected `cookie` or `redis`"),
                ));
            }
        };
        // With SESSION_STORE=redis, Redis holds the sessions; with cookies, REDIS_URL (when
        // set) holds the state replicas share: revocations and refresh coordination.
        let redis_url = match self.redis_url.clone().filter(|u| !u.is_empty()) {
            None if redis_sessions => {
                return Err(err("REDIS_URL", "required when SESSION_STORE=redis"));
            }
            None => None,
            Some(url) => {
                if !(url.starts_with("redis://")
                    || url.starts_with("rediss://")
                    || url.starts_with("redis+unix://")
                    || url.starts_with("unix://"))
                {
                    return Err(err(
                        "REDIS_URL",
                        "must start with redis://, rediss:// or unix://",
                    ));
                }
                Some(url)
            }
        };
        let login = self.oidc_client_id.is_some()
            || self.oidc_redirect_uri.is_some()
            || self.session_secret.is_some();
        let redirect_uri = match &self.oidc_redirect_uri {
            Some(r) => Some(
                Url::parse(r).map_err(|e| err("OIDC_REDIRECT_URI", format!("not a URL: {e}")))?,
            ),
            None => None,
        };
        if login {
            if self.oidc_client_id.is_none() {
                return Err(err("OIDC_CLIENT_ID", "required for login"));
            }
            let redirect = redirect_uri
                .as_ref()
                .ok_or_else(|| err("OIDC_REDIRECT_URI", "required for login"))?;
            let secret = self
                .session_secret
                .as_deref()
                .ok_or_else(|| err("SESSION_SECRET", "required for login (at least 32 bytes)"))?;
            if secret.len() < 32 {
                return Err(err(
                    "SESSION_SECRET",
                    format!("must be at least 32 bytes (got {})", secret.len()),
                ));
            }
            if self.cookie_secure
                && redirect.scheme() == "http"
                && !oidcgate_core::http::is_loopback(redirect)
            {
                return Err(err(
                    "COOKIE_SECURE",
                    "true with a plain-http non-loopback redirect URI: browsers would drop the cookies",
                ));
            }
        } else if self.oidc_audience.is_none() {
            return Err(err(
                "OIDC_CLIENT_ID",
                "set the login settings (OIDC_CLIENT_ID, OIDC_REDIRECT_URI, SESSION_SECRET) or OIDC_AUDIENCE for bearer tokens",
            ));
        }
        if self.session_max_age == 0 {
            return Err(err("SESSION_MAX_AGE", "must be positive"));
        }
        Ok(GatewayConfig {
            issuer,
            client_id: self.oidc_client_id.clone(),
            client_auth: self.client_auth()?,
            endpoints: self.endpoints(login)?,
            redirect_uri,
            scopes: self.oidc_scopes.clone(),
            audience: self.oidc_audience.clone().filter(|s| !s.is_empty()),
            required_claims: self
                .oidc_required_claims
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            groups_claim: self.oidc_groups_claim.clone(),
            allow_http: self.oidc_allow_http,
            refetch_cooldown: duration(
                "OIDC_JWKS_REFETCH_COOLDOWN",
                &self.oidc_jwks_refetch_cooldown,
            )?,
            session_secret: self.session_secret.clone(),
            session_secret_previous: list(&self.session_secret_previous, ' '),
            session_max_age: Duration::from_secs(self.session_max_age),
            cookie_secure: self.cookie_secure,
            upstream,
            listen: self.listen_addr.clone(),
            pass_access_token: self.pass_access_token,
            pass_authorization_header: self.pass_authorization_header,
            allowed_email_domains: list(&self.allowed_email_domains, ',')
                .into_iter()
                .map(|d| d.to_ascii_lowercase())
                .collect(),
            allowed_emails: list(&self.allowed_emails, ',')
                .into_iter()
                .map(|d| d.to_ascii_lowercase())
                .collect(),
            allowed_groups: list(&self.allowed_groups, ','),
            required_scopes: self
                .required_scopes
                .as_deref()
                .map(|s| s.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default(),
            upstream_timeout: duration("UPSTREAM_TIMEOUT", &self.upstream_timeout)?,
            token_cache_entries: self.token_cache_entries,
            max_pending_logins: match self.max_pending_logins {
                n @ 1..=20 => n,
                _ => return Err(err("MAX_PENDING_LOGINS", "must be between 1 and 20")),
            },
            skip_auth: crate::skip::SkipAuth::parse(self.skip_auth_routes.as_deref())?,
            max_header_bytes: match self.max_header_bytes {
                n if n >= 8192 => n,
                _ => return Err(err("MAX_HEADER_BYTES", "must be at least 8192")),
            },
            max_body_bytes: self.max_body_bytes,
            header_read_timeout: duration("HEADER_READ_TIMEOUT", &self.header_read_timeout)?,
            redis_url,
            redis_sessions,
            redis_key_prefix: self.redis_key_prefix.clone(),
            session_cache_ttl: duration("SESSION_CACHE_TTL", &self.session_cache_ttl)?,
            upstream_max_connections: match self.upstream_max_connections {
                0 => return Err(err("UPSTREAM_MAX_CONNECTIONS", "must be positive")),
                n => n,
            },
        })
    }
}

/// Reads a file of at most `max` bytes (key files are small; a device or a huge file is refused).
fn read_small_file(path: &str, max: u64) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > max {
        return Err(format!("larger than {max} bytes"));
    }
    Ok(bytes)
}
