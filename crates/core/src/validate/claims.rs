//! [`VerifiedClaims`]: the claims of a token whose signature and registered claims have been
//! checked. Only this crate's validators construct it.

use std::sync::OnceLock;

use serde_json::{Map, Value};

use crate::jose::Algorithm;

/// The identity and authorization data of a verified token.
#[derive(Debug, Clone)]
pub struct VerifiedClaims {
    issuer: String,
    subject: Option<String>,
    audiences: Vec<String>,
    expires_at: i64,
    scopes: Vec<String>,
    alg: Algorithm,
    kid: Option<String>,
    /// The verified claims set; validation checked it is an object with unique member names.
    payload: Vec<u8>,
    /// Every claim, built on first use: validation itself only reads the registered claims.
    all: OnceLock<Map<String, Value>>,
}

impl VerifiedClaims {
    /// Private to the crate: only validators that have verified the token call it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        issuer: String,
        subject: Option<String>,
        audiences: Vec<String>,
        expires_at: i64,
        scopes: Vec<String>,
        alg: Algorithm,
        kid: Option<String>,
        payload: Vec<u8>,
    ) -> Self {
        Self {
            issuer,
            subject,
            audiences,
            expires_at,
            scopes,
            alg,
            kid,
            payload,
            all: OnceLock::new(),
        }
    }

    /// `iss`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// `sub`, when the token has one.
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    /// `aud` as a list.
    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }

    /// `exp` (seconds since the epoch, rounded down).
    pub fn expires_at(&self) -> i64 {
        self.expires_at
    }

    /// Granted scopes, from `scope` (space-separated) and/or `scp` (array or string).
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// Whether `scope` was granted.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// The algorithm the token was signed with.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The `kid` of the key that verified it, when the token named one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// Every claim.
    pub fn claims(&self) -> &Map<String, Value> {
        // Cannot fail: validation already parsed this payload with the same strict rules.
        self.all
            .get_or_init(|| crate::jose::json::parse_object(&self.payload).unwrap_or_default())
    }

    /// One claim.
    pub fn claim(&self, name: &str) -> Option<&Value> {
        self.claims().get(name)
    }

    /// The raw claims set (JSON), e.g. to deserialize into an application's own type.
    pub fn raw_claims(&self) -> &[u8] {
        &self.payload
    }

    /// One claim, when it is a string.
    pub fn string_claim(&self, name: &str) -> Option<&str> {
        self.claim(name).and_then(Value::as_str)
    }

    /// `email`.
    pub fn email(&self) -> Option<&str> {
        self.string_claim("email")
    }

    /// `name`.
    pub fn name(&self) -> Option<&str> {
        self.string_claim("name")
    }

    /// `preferred_username`.
    pub fn preferred_username(&self) -> Option<&str> {
        self.string_claim("preferred_username")
    }

    /// A list claim such as `groups`: an array of strings, or one string.
    pub fn string_list_claim(&self, name: &str) -> Vec<&str> {
        match self.claim(name) {
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            Some(Value::String(s)) => vec![s.as_str()],
            _ => Vec::new(),
        }
    }
}
