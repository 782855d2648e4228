//! The OpenID Connect / OAuth 2.0 client (relying party side): discovery or explicit endpoints,
//! the authorization request with PKCE S256, `state` and `nonce` ([`authorize`]), the callback
//! with its mix-up and CSRF checks, the token-endpoint grants, introspection, revocation, device
//! authorization and the end-session URL ([`grants`]), and userinfo with signed responses and
//! aggregated/distributed claims ([`userinfo`]). Every call goes through
//! the injected [`HttpClient`]; ID tokens are verified with the issuer's [`KeyCache`].

pub mod authorize;
pub mod grants;
pub mod userinfo;

use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};
use thiserror::Error;
use url::Url;

use crate::clock::{Clock, SystemClock};
use crate::http::{HttpClient, HttpError, UrlPolicy};
use crate::provider::{DiscoveryError, KeyCache, KeyCacheConfig, KeySource, ProviderMetadata};
use crate::validate::{IdTokenValidator, ValidationError};

pub use authorize::{AuthorizationRequest, CallbackParams, PendingLogin};
pub use grants::{DeviceAuthorization, TokenResponse};

/// A client secret; never shown in logs.
#[derive(Clone)]
pub struct ClientSecret(String);

impl ClientSecret {
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(<redacted>)")
    }
}

/// How the client authenticates at the token, introspection and revocation endpoints.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// A public client: `client_id` in the form, PKCE protects the code.
    None,
    /// `client_secret_basic`: id and secret form-urlencoded, then HTTP Basic (RFC 6749 §2.3.1).
    SecretBasic(ClientSecret),
    /// `client_secret_post`: id and secret in the form body.
    SecretPost(ClientSecret),
    /// `private_key_jwt` (OIDC Core §9, RFC 7523 §2.2): each request carries a fresh JWT
    /// (`iss` = `sub` = client id, unique `jti`, 60 s lifetime) signed with the client's private
    /// key, whose public half is registered at the provider. Its `aud` is the URL of the
    /// endpoint it is sent to, a single string, so an assertion can never be replayed at another
    /// endpoint or provider (the "audience injection" attack on `private_key_jwt` relies on an
    /// `aud` taken from metadata that a malicious provider controls).
    #[cfg(feature = "signing")]
    PrivateKeyJwt(std::sync::Arc<crate::jose::sign::SigningKey>),
    /// `client_secret_jwt` (OIDC Core §9): the same assertion, HS256 with the client secret
    /// (at least 32 bytes) as the key; build it with [`ClientAuth::secret_jwt`].
    #[cfg(feature = "signing")]
    SecretJwt(std::sync::Arc<crate::jose::sign::SigningKey>),
}

#[cfg(feature = "signing")]
impl ClientAuth {
    /// `client_secret_jwt` with `secret`; fails for secrets shorter than 32 bytes.
    pub fn secret_jwt(secret: &str) -> Result<Self, crate::jose::JoseError> {
        let key = crate::jose::sign::SigningKey::hmac(
            crate::jose::Algorithm::HS256,
            secret.as_bytes(),
            "",
        )?;
        Ok(Self::SecretJwt(std::sync::Arc::new(key)))
    }
}

/// Everything that can go wrong talking to the provider.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("the provider has no {0} endpoint")]
    NoEndpoint(&'static str),
    #[error("the provider answered {error}: {description}")]
    OAuth {
        status: u16,
        error: String,
        description: String,
    },
    #[error("the provider's response is not valid: {0}")]
    BadResponse(String),
    #[error("the sign-in failed at the provider: {error}{}", .description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Authorization {
        error: String,
        description: Option<String>,
    },
    #[error("the callback's state does not match this browser's login")]
    StateMismatch,
    #[error("the callback's iss does not name the expected issuer (mix-up defence, RFC 9207)")]
    IssuerMismatch,
    #[error("the callback has no code")]
    MissingCode,
    #[error("the ID token is invalid: {0}")]
    IdToken(#[from] ValidationError),
    #[error("userinfo is for another subject than the ID token")]
    UserinfoSubjectMismatch,
    #[error("the signed userinfo response is invalid: {0}")]
    SignedUserinfo(ValidationError),
    #[error("the device code expired before the user approved")]
    DeviceExpired,
    #[error("the user denied the request")]
    AccessDenied,
    #[error("could not sign the client assertion: {0}")]
    Signing(String),
}

impl ClientError {
    /// The OAuth error code, when the provider sent one.
    pub fn oauth_error(&self) -> Option<&str> {
        match self {
            Self::OAuth { error, .. } | Self::Authorization { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// How to build an [`OidcClient`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub issuer: String,
    pub client_id: String,
    pub auth: ClientAuth,
    pub url_policy: UrlPolicy,
    pub key_cache: KeyCacheConfig,
}

impl ClientConfig {
    /// A public client (no secret) of `issuer`.
    pub fn public(issuer: impl Into<String>, client_id: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            client_id: client_id.into(),
            auth: ClientAuth::None,
            url_policy: UrlPolicy::default(),
            key_cache: KeyCacheConfig::default(),
        }
    }

    /// A confidential client using `client_secret_basic`.
    pub fn confidential(
        issuer: impl Into<String>,
        client_id: impl Into<String>,
        secret: impl Into<String>,
    ) -> Self {
        Self {
            auth: ClientAuth::SecretBasic(ClientSecret::new(secret)),
            ..Self::public(issuer, client_id)
        }
    }
}

/// An OpenID Connect client bound to one provider.
pub struct OidcClient {
    config: ClientConfig,
    metadata: Arc<ProviderMetadata>,
    http: Arc<dyn HttpClient>,
    clock: Arc<dyn Clock>,
    id_tokens: IdTokenValidator,
}

impl fmt::Debug for OidcClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcClient")
            .field("issuer", &self.config.issuer)
            .field("client_id", &self.config.client_id)
            .finish_non_exhaustive()
    }
}

impl OidcClient {
    /// Discovers the provider (its `issuer` must equal the configured one exactly).
    pub async fn discover(
        config: ClientConfig,
        http: Arc<dyn HttpClient>,
    ) -> Result<Self, ClientError> {
        let metadata =
            ProviderMetadata::discover(http.as_ref(), &config.issuer, config.url_policy).await?;
        Ok(Self::from_metadata(
            config,
            metadata,
            http,
            Arc::new(SystemClock),
        ))
    }

    /// A client for known metadata (explicit endpoints, or tests with an injected clock).
    pub fn from_metadata(
        config: ClientConfig,
        metadata: ProviderMetadata,
        http: Arc<dyn HttpClient>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let keys = KeyCache::new(
            config.issuer.clone(),
            KeySource::JwksUri(metadata.jwks_uri.clone()),
            http.clone(),
            clock.clone(),
            config.key_cache,
        );
        let id_tokens = IdTokenValidator::new(
            config.issuer.clone(),
            config.client_id.clone(),
            keys,
            clock.clone(),
        );
        Self {
            config,
            metadata: Arc::new(metadata),
            http,
            clock,
            id_tokens,
        }
    }

    /// The provider's metadata.
    pub fn metadata(&self) -> &ProviderMetadata {
        &self.metadata
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.config.client_id
    }

    /// The issuer.
    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    /// The ID-token validator (shares the issuer's key cache).
    pub fn id_token_validator(&self) -> &IdTokenValidator {
        &self.id_tokens
    }

    /// Whether the provider's authorization endpoint answers at all (any HTTP status below
    /// 500; a bare GET there is usually a 400), within `timeout`. Lets a login route show a
    /// clear "provider unreachable" page instead of sending the browser to a dead host.
    pub async fn authorization_endpoint_reachable(&self, timeout: std::time::Duration) -> bool {
        let Ok(url) = self.endpoint(
            self.metadata.authorization_endpoint.as_ref(),
            "authorization",
        ) else {
            return false;
        };
        let request = crate::http::HttpRequest {
            method: crate::http::Method::Get,
            url,
            headers: Vec::new(),
            body: None,
        };
        matches!(
            tokio::time::timeout(timeout, self.http.execute(request)).await,
            Ok(Ok(response)) if response.status < 500
        )
    }

    fn endpoint(&self, url: Option<&Url>, name: &'static str) -> Result<Url, ClientError> {
        let url = url.ok_or(ClientError::NoEndpoint(name))?;
        self.config.url_policy.check(url)?;
        Ok(url.clone())
    }
}

/// A JSON object from a response body.
pub(crate) fn json_object(body: &[u8]) -> Result<Map<String, Value>, ClientError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(ClientError::BadResponse(
            "the body is not a JSON object".into(),
        )),
    }
}
