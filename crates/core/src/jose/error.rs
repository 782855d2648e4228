//! Errors of the JOSE layer. Messages are safe to show to a client: they never contain key
//! material, and attacker-supplied text in them is truncated.

use thiserror::Error;

/// Why a token, header, key or key set was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JoseError {
    #[error("token is larger than {max} bytes")]
    TooLarge { max: usize },
    #[error("token is not a compact JWS (expected three base64url parts separated by dots)")]
    Malformed,
    #[error("token {0} is not valid base64url")]
    BadBase64(&'static str),
    #[error("{0} is not a JSON object")]
    NotJsonObject(&'static str),
    #[error("{0} has a duplicate member {1:?}")]
    DuplicateMember(&'static str, String),
    #[error("header has no \"alg\"")]
    MissingAlg,
    #[error("unsigned tokens (alg \"none\") are never accepted")]
    AlgNone,
    #[error("algorithm {0:?} is not supported")]
    UnsupportedAlgorithm(String),
    #[error("algorithm {0} is not allowed for this issuer")]
    AlgorithmNotAllowed(&'static str),
    #[error("critical header parameter {0:?} is not understood")]
    UnsupportedCritical(String),
    #[error("header parameter {0:?} has the wrong type")]
    BadHeaderParameter(&'static str),
    #[error("no key with kid {0:?}")]
    UnknownKid(String),
    #[error("no key fits algorithm {0}")]
    NoMatchingKey(&'static str),
    #[error("token has no kid and {0} keys fit its algorithm")]
    AmbiguousKey(usize),
    #[error("key {kid:?} cannot verify {alg}")]
    KeyAlgorithmMismatch { kid: String, alg: &'static str },
    #[error("HMAC algorithms need a shared secret configured for the issuer")]
    HmacNotConfigured,
    #[error("signature verification failed")]
    BadSignature,
    #[error("invalid JWK: {0}")]
    InvalidJwk(String),
    #[error("invalid JWK Set: {0}")]
    InvalidJwkSet(String),
    #[error("signing failed")]
    SigningFailed,
}
