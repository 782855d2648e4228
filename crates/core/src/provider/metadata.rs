//! OpenID Provider metadata (OpenID Connect Discovery 1.0 §3, RFC 8414 §2) and discovery.

use serde::Deserialize;
use serde_json::{Map, Value};
use thiserror::Error;
use url::Url;

use crate::http::{HttpClient, HttpError, HttpRequest, UrlPolicy};

/// The discovery document fields oidcgate uses; everything else is kept in `other`.
#[derive(Debug, Clone, Deserialize)]
pub struct ProviderMetadata {
    pub issuer: String,
    pub jwks_uri: Url,
    pub authorization_endpoint: Option<Url>,
    pub token_endpoint: Option<Url>,
    pub userinfo_endpoint: Option<Url>,
    pub end_session_endpoint: Option<Url>,
    pub introspection_endpoint: Option<Url>,
    pub revocation_endpoint: Option<Url>,
    pub device_authorization_endpoint: Option<Url>,
    #[serde(default)]
    pub scopes_supported: Vec<String>,
    #[serde(default)]
    pub response_types_supported: Vec<String>,
    #[serde(default)]
    pub id_token_signing_alg_values_supported: Vec<String>,
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Vec<String>,
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
    #[serde(default)]
    pub backchannel_logout_supported: bool,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// Why discovery failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DiscoveryError {
    #[error("issuer {0:?} is not a valid URL")]
    BadIssuer(String),
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("discovery document at {url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("discovery document at {url} is not valid provider metadata: {reason}")]
    Invalid { url: String, reason: String },
    #[error("discovery document names issuer {found:?}, expected exactly {expected:?}")]
    IssuerMismatch { expected: String, found: String },
}

/// `{issuer}/.well-known/openid-configuration`, dropping one trailing `/` from the issuer
/// (Auth0's issuer ends with one).
pub fn discovery_url(issuer: &str) -> Result<Url, DiscoveryError> {
    let base = issuer.strip_suffix('/').unwrap_or(issuer);
    let url = Url::parse(&format!("{base}/.well-known/openid-configuration"))
        .map_err(|_| DiscoveryError::BadIssuer(issuer.to_owned()))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(DiscoveryError::BadIssuer(issuer.to_owned()));
    }
    Ok(url)
}

impl ProviderMetadata {
    /// Fetches and checks the discovery document: `issuer` must equal the configured issuer byte
    /// for byte, and every endpoint must pass the URL policy.
    pub async fn discover(
        http: &dyn HttpClient,
        issuer: &str,
        policy: UrlPolicy,
    ) -> Result<Self, DiscoveryError> {
        let url = discovery_url(issuer)?;
        policy.check(&url)?;
        let response = http.execute(HttpRequest::get_json(url.clone())).await?;
        if response.status != 200 {
            return Err(DiscoveryError::Status {
                url: url.to_string(),
                status: response.status,
            });
        }
        let metadata =
            Self::from_json(&response.body).map_err(|reason| DiscoveryError::Invalid {
                url: url.to_string(),
                reason,
            })?;
        if metadata.issuer != issuer {
            return Err(DiscoveryError::IssuerMismatch {
                expected: issuer.to_owned(),
                found: metadata.issuer,
            });
        }
        for endpoint in metadata.endpoints() {
            policy.check(endpoint)?;
        }
        Ok(metadata)
    }

    /// Parses a discovery document (no network; also used by the fuzz target).
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        // serde's message may quote the hostile document: keep it short, on a char boundary.
        serde_json::from_slice::<Self>(bytes).map_err(|e| e.to_string().chars().take(200).collect())
    }

    /// Every endpoint URL in the document.
    pub fn endpoints(&self) -> impl Iterator<Item = &Url> {
        [
            Some(&self.jwks_uri),
            self.authorization_endpoint.as_ref(),
            self.token_endpoint.as_ref(),
            self.userinfo_endpoint.as_ref(),
            self.end_session_endpoint.as_ref(),
            self.introspection_endpoint.as_ref(),
            self.revocation_endpoint.as_ref(),
            self.device_authorization_endpoint.as_ref(),
        ]
        .into_iter()
        .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_url_drops_one_trailing_slash() {
        assert_eq!(
            discovery_url("https://tenant.auth0.com/").unwrap().as_str(),
            "https://tenant.auth0.com/.well-known/openid-configuration"
        );
        assert_eq!(
            discovery_url("https://kc.example/realms/demo")
                .unwrap()
                .as_str(),
            "https://kc.example/realms/demo/.well-known/openid-configuration"
        );
        assert!(discovery_url("not a url").is_err());
        assert!(discovery_url("https://x/?a=b").is_err());
    }

    #[test]
    fn parses_minimal_and_rejects_bad_documents() {
        let doc = br#"{"issuer":"https://i","jwks_uri":"https://i/jwks","extra":1}"#;
        let m = ProviderMetadata::from_json(doc).unwrap();
        assert_eq!(m.jwks_uri.as_str(), "https://i/jwks");
        assert_eq!(m.other["extra"], 1);
        assert!(ProviderMetadata::from_json(br#"{"issuer":"https://i"}"#).is_err());
        assert!(ProviderMetadata::from_json(br#"{"issuer":"https://i","jwks_uri":"::"}"#).is_err());
        assert!(ProviderMetadata::from_json(b"[]").is_err());
    }
}
