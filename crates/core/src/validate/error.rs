//! Why a token was refused, and how each reason maps onto RFC 6750.

use std::time::Duration;

use thiserror::Error;

use crate::jose::JoseError;
use crate::provider::KeyCacheError;

/// A refused token. Every variant except [`ValidationError::KeysUnavailable`] is the client's
/// problem (`invalid_token`); that one is the server's (503, retry later).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ValidationError {
    #[error("{0}")]
    Jose(#[from] JoseError),
    #[error("token issuer is not trusted")]
    UntrustedIssuer,
    #[error("token issuer does not match")]
    IssuerMismatch,
    #[error("token audience does not match")]
    AudienceMismatch,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token was issued in the future")]
    IssuedInFuture,
    #[error("token lacks required claim {0:?}")]
    MissingClaim(String),
    #[error("token claim {0:?} has an invalid value")]
    InvalidClaim(String),
    #[error("token type must be at+jwt (RFC 9068)")]
    WrongType,
    #[error("ID token nonce does not match the login request")]
    NonceMismatch,
    #[error("ID token at_hash does not match the access token")]
    AtHashMismatch,
    #[error("ID token azp does not name this client")]
    AzpMismatch,
    #[error("ID token has an audience this client does not trust")]
    UntrustedAudience,
    #[error("ID token auth_time is older than the requested max_age")]
    AuthTimeTooOld,
    #[error("ID token is for another subject than the session")]
    SubjectMismatch,
    #[error("token was already used (replay)")]
    Replayed,
    #[error("{0}")]
    KeysUnavailable(#[from] KeyCacheError),
}

impl ValidationError {
    /// For `Retry-After` when the server, not the token, is at fault.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::KeysUnavailable(e) => Some(e.retry_after()),
            _ => None,
        }
    }

    /// A short name of the failed check (logs, metrics, `oidcgate inspect`).
    pub fn check(&self) -> &'static str {
        match self {
            Self::Jose(JoseError::BadSignature) => "signature",
            Self::Jose(JoseError::UnknownKid(_)) => "kid",
            Self::Jose(
                JoseError::AlgorithmNotAllowed(_)
                | JoseError::AlgNone
                | JoseError::UnsupportedAlgorithm(_),
            ) => "alg",
            Self::Jose(_) => "format",
            Self::UntrustedIssuer | Self::IssuerMismatch => "iss",
            Self::AudienceMismatch => "aud",
            Self::Expired => "exp",
            Self::NotYetValid => "nbf",
            Self::IssuedInFuture => "iat",
            Self::MissingClaim(_) | Self::InvalidClaim(_) => "claims",
            Self::WrongType => "typ",
            Self::NonceMismatch => "nonce",
            Self::AtHashMismatch => "at_hash",
            Self::AzpMismatch | Self::UntrustedAudience => "aud",
            Self::AuthTimeTooOld => "auth_time",
            Self::SubjectMismatch => "sub",
            Self::Replayed => "jti",
            Self::KeysUnavailable(_) => "keys",
        }
    }
}
