//! Token validation: turning a bearer access token into [`VerifiedClaims`].
//!
//! - [`claims`]: `VerifiedClaims`, constructible only by the validators in this module.
//! - [`access_token`]: the access-token validator (one or several trusted issuers).
//! - [`id_token`]: ID-token validation (OpenID Connect Core §3.1.3.7) for relying parties.
//! - [`logout_token`]: back-channel logout tokens (Back-Channel Logout 1.0 §2.6).
//! - [`token_cache`]: the bounded validated-token cache.
//! - [`error`]: why a token was refused.

pub mod access_token;
pub mod claims;
pub mod error;
pub mod id_token;
pub mod logout_token;
pub mod token_cache;

pub use access_token::{AccessTokenValidator, IssuerPolicy, ValidatorBuilder};
pub use claims::VerifiedClaims;
pub use error::ValidationError;
pub use id_token::{IdTokenChecks, IdTokenValidator};
pub use logout_token::{LogoutRequest, LogoutTokenValidator};
pub use token_cache::TokenCacheConfig;
