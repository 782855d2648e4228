//! The IdP's users and clients: a TOML file (documented in the README) or, without one, the
//! demo set of DESIGN §5. Passwords are argon2 PHC hashes (`$argon2id$…`) or, for
//! development only, plain text.

use std::fmt;
use std::time::Duration;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use serde::Deserialize;
use thiserror::Error;

use oidcgate_core::jose::Algorithm;

/// A problem with the configuration file.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Parse(String),
    #[error("{0}")]
    Invalid(String),
}

/// A password as configured.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Password(String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl Password {
    /// A plain-text development password.
    pub fn plain(p: &str) -> Self {
        Self(p.to_owned())
    }

    /// Checks a candidate: argon2 for PHC strings, a constant-time comparison otherwise.
    pub fn verify(&self, candidate: &str) -> bool {
        if self.0.starts_with("$argon2") {
            use argon2::PasswordVerifier;
            return match argon2::PasswordHash::new(&self.0) {
                Ok(hash) => argon2::Argon2::default()
                    .verify_password(candidate.as_bytes(), &hash)
                    .is_ok(),
                Err(_) => false,
            };
        }
        verify_slices_are_equal(self.0.as_bytes(), candidate.as_bytes()).is_ok()
    }
}

/// A user who can sign in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub username: String,
    pub password: Password,
    /// Defaults to the username.
    pub sub: Option<String>,
    pub email: Option<String>,
    #[serde(default)]
    pub email_verified: bool,
    pub name: Option<String>,
    pub preferred_username: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
}

impl User {
    /// The subject identifier.
    pub fn sub(&self) -> &str {
        self.sub.as_deref().unwrap_or(&self.username)
    }
}

/// How a client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    None,
}

/// A registered client.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Client {
    pub client_id: String,
    /// Absent for public clients.
    pub client_secret: Option<Password>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    #[serde(default = "default_grants")]
    pub grant_types: Vec<String>,
    /// Scopes the client may request; empty allows `openid profile email groups offline_access`.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Defaults to `client_secret_basic` (secret) or `none` (no secret); basic clients also
    /// accept post, as most providers do.
    pub token_endpoint_auth_method: Option<AuthMethod>,
    pub backchannel_logout_uri: Option<String>,
    #[serde(default = "default_audience")]
    pub access_token_audience: String,
    #[serde(default)]
    pub require_consent: bool,
    /// RS256 (default), ES256 or EdDSA.
    pub id_token_signed_response_alg: Option<String>,
}

fn default_grants() -> Vec<String> {
    vec!["authorization_code".into(), "refresh_token".into()]
}

fn default_audience() -> String {
    "demo-api".into()
}

/// Scopes a client without an explicit list may request.
pub const DEFAULT_SCOPES: [&str; 5] = ["openid", "profile", "email", "groups", "offline_access"];

impl Client {
    /// Whether the client has no secret (PKCE is then mandatory).
    pub fn is_public(&self) -> bool {
        self.client_secret.is_none()
    }

    /// The effective authentication method.
    pub fn auth_method(&self) -> AuthMethod {
        self.token_endpoint_auth_method
            .unwrap_or(if self.is_public() {
                AuthMethod::None
            } else {
                AuthMethod::ClientSecretBasic
            })
    }

    /// Whether the client may use a grant type.
    pub fn allows_grant(&self, grant: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant)
    }

    /// Whether the client may request a scope.
    pub fn allows_scope(&self, scope: &str) -> bool {
        if self.scopes.is_empty() {
            DEFAULT_SCOPES.contains(&scope)
        } else {
            self.scopes.iter().any(|s| s == scope)
        }
    }

    /// The ID-token signing algorithm.
    pub fn id_token_alg(&self) -> Algorithm {
        match self.id_token_signed_response_alg.as_deref() {
            Some("ES256") => Algorithm::ES256,
            Some("EdDSA") => Algorithm::EdDSA,
            _ => Algorithm::RS256,
        }
    }

    /// Redirect URIs match exactly, except that for `http` on `127.0.0.1`/`[::1]` the port is
    /// ignored (RFC 8252 §7.3, native apps with an ephemeral loopback port).
    pub fn redirect_uri_allowed(&self, candidate: &str) -> bool {
        self.redirect_uris
            .iter()
            .any(|registered| redirect_matches(registered, candidate))
    }

    /// Post-logout redirect URIs match exactly.
    pub fn post_logout_uri_allowed(&self, candidate: &str) -> bool {
        self.post_logout_redirect_uris
            .iter()
            .any(|u| u == candidate)
    }
}

fn redirect_matches(registered: &str, candidate: &str) -> bool {
    if registered == candidate {
        return true;
    }
    let (Ok(r), Ok(c)) = (url::Url::parse(registered), url::Url::parse(candidate)) else {
        return false;
    };
    let loopback_ip = |u: &url::Url| {
        u.scheme() == "http"
            && (matches!(u.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
                || matches!(u.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback()))
    };
    // Credentials in a redirect URI are never legitimate.
    if !c.username().is_empty() || c.password().is_some() {
        return false;
    }
    loopback_ip(&r)
        && r.scheme() == c.scheme()
        && r.host() == c.host()
        && r.path() == c.path()
        && r.query() == c.query()
        && c.fragment().is_none()
}

/// Token and session lifetimes.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    pub code: Duration,
    pub access_token: Duration,
    pub id_token: Duration,
    pub refresh_token: Duration,
    pub session: Duration,
    pub login_request: Duration,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Self {
            code: Duration::from_secs(60),
            access_token: Duration::from_secs(600),
            id_token: Duration::from_secs(600),
            refresh_token: Duration::from_secs(30 * 86_400),
            session: Duration::from_secs(8 * 3600),
            login_request: Duration::from_secs(600),
        }
    }
}

/// Users and clients.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Directory {
    #[serde(default)]
    pub users: Vec<User>,
    #[serde(default)]
    pub clients: Vec<Client>,
}

impl Directory {
    /// Parses and checks a TOML configuration.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let dir: Self = toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        dir.check()?;
        Ok(dir)
    }

    /// Reads a TOML configuration file.
    pub fn from_file(path: &str) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Self::from_toml(&text)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        for (i, u) in self.users.iter().enumerate() {
            if self.users[..i].iter().any(|o| o.username == u.username) {
                return invalid(format!("user {:?} is defined twice", u.username));
            }
        }
        for (i, c) in self.clients.iter().enumerate() {
            if self.clients[..i].iter().any(|o| o.client_id == c.client_id) {
                return invalid(format!("client {:?} is defined twice", c.client_id));
            }
            if c.is_public() && c.auth_method() != AuthMethod::None {
                return invalid(format!(
                    "client {:?} has no client_secret but a secret auth method",
                    c.client_id
                ));
            }
            if !c.is_public() && c.auth_method() == AuthMethod::None {
                return invalid(format!(
                    "client {:?} has a client_secret but token_endpoint_auth_method none",
                    c.client_id
                ));
            }
            for uri in c.redirect_uris.iter().chain(&c.post_logout_redirect_uris) {
                match url::Url::parse(uri) {
                    Ok(u) if u.fragment().is_none() => {}
                    _ => {
                        return invalid(format!(
                            "client {:?}: {uri:?} is not an absolute URL without fragment",
                            c.client_id
                        ));
                    }
                }
            }
            if let Some(alg) = &c.id_token_signed_response_alg
                && !matches!(alg.as_str(), "RS256" | "ES256" | "EdDSA")
            {
                return invalid(format!(
                    "client {:?}: id_token_signed_response_alg must be RS256, ES256 or EdDSA",
                    c.client_id
                ));
            }
        }
        Ok(())
    }

    /// DESIGN §5's demo users and clients.
    pub fn demo() -> Self {
        let gateway = [
            "http://127.0.0.1:4180/auth/callback",
            "http://localhost:4180/auth/callback",
        ];
        let post_logout = vec![
            "http://127.0.0.1:4180/".to_owned(),
            "http://localhost:4180/".to_owned(),
        ];
        let client = |id: &str, secret: Option<&str>, grants: &[&str], uris: Vec<String>| Client {
            client_id: id.into(),
            client_secret: secret.map(Password::plain),
            redirect_uris: uris,
            post_logout_redirect_uris: if grants.contains(&"authorization_code") {
                post_logout.clone()
            } else {
                vec![]
            },
            grant_types: grants.iter().map(|g| (*g).to_owned()).collect(),
            scopes: vec![],
            token_endpoint_auth_method: None,
            backchannel_logout_uri: None,
            access_token_audience: default_audience(),
            require_consent: false,
            id_token_signed_response_alg: None,
        };
        let interactive = [
            "authorization_code",
            "refresh_token",
            "urn:ietf:params:oauth:grant-type:device_code",
        ];
        let mut public_uris: Vec<String> = gateway.iter().map(|s| (*s).to_owned()).collect();
        public_uris.push("http://127.0.0.1/callback".into());
        Self {
            users: vec![
                User {
                    username: "alice".into(),
                    password: Password::plain("wonderland"),
                    sub: Some("alice".into()),
                    email: Some("alice@example.com".into()),
                    email_verified: true,
                    name: Some("Alice Liddell".into()),
                    preferred_username: Some("alice".into()),
                    groups: vec!["admins".into(), "users".into()],
                },
                User {
                    username: "bob".into(),
                    password: Password::plain("builder"),
                    sub: Some("bob".into()),
                    email: Some("bob@example.com".into()),
                    email_verified: true,
                    name: Some("Bob the Builder".into()),
                    preferred_username: Some("bob".into()),
                    groups: vec!["users".into()],
                },
            ],
            clients: vec![
                client(
                    "demo",
                    Some("demo-secret"),
                    &interactive,
                    gateway.iter().map(|s| (*s).to_owned()).collect(),
                ),
                client("demo-public", None, &interactive, public_uris),
                client(
                    "demo-service",
                    Some("demo-service-secret"),
                    &["client_credentials"],
                    vec![],
                ),
            ],
        }
    }

    /// A user by login name.
    pub fn user(&self, username: &str) -> Option<&User> {
        self.users.iter().find(|u| u.username == username)
    }

    /// A user by subject.
    pub fn user_by_sub(&self, sub: &str) -> Option<&User> {
        self.users.iter().find(|u| u.sub() == sub)
    }

    /// A client by id.
    pub fn client(&self, client_id: &str) -> Option<&Client> {
        self.clients.iter().find(|c| c.client_id == client_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_and_redirect_matching() {
        let d = Directory::demo();
        d.check().unwrap();
        let public = d.client("demo-public").unwrap();
        assert!(public.is_public());
        assert!(
            public.redirect_uri_allowed("http://127.0.0.1:55123/callback"),
            "RFC 8252 port"
        );
        assert!(!public.redirect_uri_allowed("http://127.0.0.1:55123/callback/x"));
        assert!(!public.redirect_uri_allowed("http://localhost:55123/callback"));
        let demo = d.client("demo").unwrap();
        assert!(demo.redirect_uri_allowed("http://127.0.0.1:4180/auth/callback"));
        assert!(
            demo.redirect_uri_allowed("http://127.0.0.1:9999/auth/callback"),
            "loopback IP port ignored"
        );
        assert!(
            !demo.redirect_uri_allowed("http://localhost:9999/auth/callback"),
            "exact for names"
        );
        assert!(!demo.redirect_uri_allowed("https://evil.example/auth/callback"));
        assert!(!demo.redirect_uri_allowed("http://user:pw@127.0.0.1:9999/auth/callback"));
        let https_loopback = Client {
            redirect_uris: vec!["https://[::1]:8443/cb".into()],
            ..demo.clone()
        };
        assert!(
            !https_loopback.redirect_uri_allowed("https://[::1]:9999/cb"),
            "only http loopback ignores the port"
        );
        assert!(d.user("alice").unwrap().password.verify("wonderland"));
        assert!(!d.user("alice").unwrap().password.verify("wonderlan"));
    }

    #[test]
    fn argon2_passwords() {
        use argon2::PasswordHasher;
        let salt = argon2::password_hash::SaltString::encode_b64(b"a-fixed-test-salt").unwrap();
        let hash = argon2::Argon2::default()
            .hash_password(b"correct horse", &salt)
            .unwrap()
            .to_string();
        assert!(hash.starts_with("$argon2id$"));
        let password = Password(hash);
        assert!(password.verify("correct horse"));
        assert!(!password.verify("correct horse "));
        assert!(!Password("$argon2id$garbage".into()).verify("x"));
        assert_eq!(format!("{password:?}"), "Password(<redacted>)");
    }

    #[test]
    fn toml_config() {
        let text = r#"
            [[users]]
            username = "carol"
            password = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0b2fL2D5h2YJrS8KeEItmldLq1b9pj8dNUnVZtZkgqk"
            email = "carol@example.com"
            groups = ["ops"]

            [[clients]]
            client_id = "app"
            client_secret = "s3cret"
            redirect_uris = ["https://app.example.com/cb"]
        "#;
        let d = Directory::from_toml(text).unwrap();
        assert_eq!(d.user("carol").unwrap().sub(), "carol");
        assert_eq!(
            d.client("app").unwrap().auth_method(),
            AuthMethod::ClientSecretBasic
        );
        assert!(Directory::from_toml("[[users]]\nusername = 1").is_err());
        assert!(
            Directory::from_toml("[[clients]]\nclient_id = \"a\"\nredirect_uris = [\"/relative\"]")
                .is_err()
        );
        assert!(Directory::from_toml("[[clients]]\nclient_id = \"a\"\nbogus = 1").is_err());
    }
}
