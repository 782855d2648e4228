//! The authorization request (OIDC Core §3.1.2.1, RFC 7636, RFC 9207) and its callback.
//!
//! [`AuthorizationRequest`] builds the URL — `response_type=code`, PKCE S256 always (also for
//! confidential clients), `state` and `nonce` of 256 bits from the CSPRNG, every parameter
//! form-encoded — and the [`PendingLogin`] the caller keeps, bound to the browser, until the
//! callback. [`OidcClient::handle_callback`] then checks the IdP's `error`, `state` (constant
//! time), `iss` (required when the provider advertises RFC 9207), exchanges the code and
//! verifies the ID token.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use serde::{Deserialize, Serialize};
use url::Url;

use super::grants::TokenResponse;
use super::{ClientError, OidcClient};
use crate::jose::b64;
use crate::validate::{IdTokenChecks, VerifiedClaims};

/// 256 random bits, base64url.
pub fn random_value() -> String {
    let mut bytes = [0u8; 32];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        // No entropy source at all: refusing is the only safe answer.
        panic!("the system random number generator is unavailable");
    }
    b64::encode(bytes)
}

/// The PKCE S256 challenge of a verifier (RFC 7636 §4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    b64::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        verifier.as_bytes(),
    ))
}

/// What the relying party remembers between the redirect and the callback. Serializable so it
/// can live in an encrypted cookie; `Debug` hides the secrets.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PendingLogin {
    pub state: String,
    pub nonce: String,
    pub code_verifier: String,
    pub redirect_uri: String,
    /// `max_age` sent, in seconds.
    pub max_age: Option<u64>,
    /// Where the application wants the user to land afterwards (validated by the caller).
    pub return_to: Option<String>,
}

impl fmt::Debug for PendingLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingLogin")
            .field("redirect_uri", &self.redirect_uri)
            .field("max_age", &self.max_age)
            .field("return_to", &self.return_to)
            .finish_non_exhaustive()
    }
}

/// Builds an authorization request.
#[derive(Debug, Clone)]
pub struct AuthorizationRequest<'c> {
    client: &'c OidcClient,
    redirect_uri: String,
    scope: String,
    prompt: Option<String>,
    max_age: Option<u64>,
    login_hint: Option<String>,
    acr_values: Option<String>,
    resources: Vec<String>,
    response_mode: Option<String>,
    extra: Vec<(String, String)>,
    return_to: Option<String>,
}

/// Parameters the builder sets itself; `extra` may not override them.
const RESERVED: [&str; 9] = [
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "response_mode",
];

impl<'c> AuthorizationRequest<'c> {
    pub fn prompt(mut self, prompt: impl Into<String>) -> Self {
        self.prompt = Some(prompt.into());
        self
    }
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(max_age.as_secs());
        self
    }
    pub fn login_hint(mut self, hint: impl Into<String>) -> Self {
        self.login_hint = Some(hint.into());
        self
    }
    pub fn acr_values(mut self, acr: impl Into<String>) -> Self {
        self.acr_values = Some(acr.into());
        self
    }
    /// RFC 8707 resource indicator (may be repeated).
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resources.push(resource.into());
        self
    }
    /// `form_post` (the callback then arrives as a POST).
    pub fn form_post(mut self) -> Self {
        self.response_mode = Some("form_post".into());
        self
    }
    /// Any other parameter (the reserved ones are ignored here).
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        if !RESERVED.contains(&name.as_str()) {
            self.extra.push((name, value.into()));
        }
        self
    }
    pub fn return_to(mut self, path: impl Into<String>) -> Self {
        self.return_to = Some(path.into());
        self
    }

    /// The URL to send the browser to, and the login to remember.
    pub fn build(self) -> Result<(Url, PendingLogin), ClientError> {
        let mut url = self.client.endpoint(
            self.client.metadata.authorization_endpoint.as_ref(),
            "authorization",
        )?;
        let pending = PendingLogin {
            state: random_value(),
            nonce: random_value(),
            code_verifier: random_value(),
            redirect_uri: self.redirect_uri,
            max_age: self.max_age,
            return_to: self.return_to,
        };
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", self.client.client_id())
                .append_pair("redirect_uri", &pending.redirect_uri)
                .append_pair("scope", &self.scope)
                .append_pair("state", &pending.state)
                .append_pair("nonce", &pending.nonce)
                .append_pair("code_challenge", &pkce_challenge(&pending.code_verifier))
                .append_pair("code_challenge_method", "S256");
            if let Some(mode) = &self.response_mode {
                q.append_pair("response_mode", mode);
            }
            if let Some(p) = &self.prompt {
                q.append_pair("prompt", p);
            }
            if let Some(age) = self.max_age {
                q.append_pair("max_age", &age.to_string());
            }
            if let Some(h) = &self.login_hint {
                q.append_pair("login_hint", h);
            }
            if let Some(a) = &self.acr_values {
                q.append_pair("acr_values", a);
            }
            for r in &self.resources {
                q.append_pair("resource", r);
            }
            for (k, v) in &self.extra {
                q.append_pair(k, v);
            }
        }
        Ok((url, pending))
    }
}

/// What came back to the redirect URI (query string, or form body with `form_post`).
#[derive(Debug, Clone, Default)]
pub struct CallbackParams {
    pub code: Option<String>,
    pub state: Option<String>,
    pub iss: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

impl CallbackParams {
    /// From decoded parameters; a repeated parameter makes the callback invalid.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, ClientError> {
        let mut seen: HashMap<&str, &str> = HashMap::new();
        for (k, v) in pairs {
            if seen.insert(k, v).is_some() && matches!(k, "code" | "state" | "iss" | "error") {
                return Err(ClientError::BadResponse(format!(
                    "callback parameter {k} is repeated"
                )));
            }
        }
        let get = |k: &str| seen.get(k).map(|v| (*v).to_owned());
        Ok(Self {
            code: get("code"),
            state: get("state"),
            iss: get("iss"),
            error: get("error"),
            error_description: get("error_description"),
        })
    }

    /// From a URL's query string.
    pub fn from_query(query: &str) -> Result<Self, ClientError> {
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        Self::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }
}

/// A completed login.
#[derive(Debug)]
pub struct Login {
    pub tokens: TokenResponse,
    pub id_token: VerifiedClaims,
}

impl OidcClient {
    /// Starts an authorization request for `redirect_uri` and `scope`.
    pub fn authorization_request(
        &self,
        redirect_uri: impl Into<String>,
        scope: impl Into<String>,
    ) -> AuthorizationRequest<'_> {
        AuthorizationRequest {
            client: self,
            redirect_uri: redirect_uri.into(),
            scope: scope.into(),
            prompt: None,
            max_age: None,
            login_hint: None,
            acr_values: None,
            resources: Vec::new(),
            response_mode: None,
            extra: Vec::new(),
            return_to: None,
        }
    }

    /// Checks the callback against the pending login, exchanges the code and verifies the ID
    /// token (nonce, `max_age`, `at_hash`).
    pub async fn handle_callback(
        &self,
        pending: &PendingLogin,
        callback: &CallbackParams,
    ) -> Result<Login, ClientError> {
        // RFC 9207 §2.4: the issuer is checked on error responses too.
        match &callback.iss {
            Some(iss) if *iss != self.config.issuer => return Err(ClientError::IssuerMismatch),
            None if self.metadata.authorization_response_iss_parameter_supported => {
                return Err(ClientError::IssuerMismatch);
            }
            _ => {}
        }
        if let Some(error) = &callback.error {
            return Err(ClientError::Authorization {
                error: error.chars().take(100).collect(),
                description: callback
                    .error_description
                    .as_ref()
                    .map(|d| d.chars().take(300).collect()),
            });
        }
        let state = callback.state.as_deref().unwrap_or("");
        if verify_slices_are_equal(state.as_bytes(), pending.state.as_bytes()).is_err() {
            return Err(ClientError::StateMismatch);
        }
        let code = callback
            .code
            .as_deref()
            .filter(|c| !c.is_empty())
            .ok_or(ClientError::MissingCode)?;
        let tokens = self
            .exchange_code(code, &pending.redirect_uri, &pending.code_verifier)
            .await?;
        let id_token = tokens
            .id_token
            .as_deref()
            .ok_or_else(|| ClientError::BadResponse("no id_token in the token response".into()))?;
        let checks = IdTokenChecks {
            nonce: Some(&pending.nonce),
            max_age: pending.max_age.map(Duration::from_secs),
            access_token: Some(&tokens.access_token),
            expected_sub: None,
            original_nonce: None,
        };
        let id_token = self.id_tokens.validate(id_token, checks).await?;
        Ok(Login { tokens, id_token })
    }
}
