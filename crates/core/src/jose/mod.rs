//! A small, verify-first JOSE layer on aws-lc-rs: compact JWS parsing ([`jws`]), the algorithm
//! policy ([`alg`]), JOSE headers ([`header`]), JWK and JWK Set parsing into pre-parsed public
//! keys ([`jwk`], [`jwks`]) and, with the `signing` feature, signing keys ([`sign`]).
//!
//! Verify-first: a token's payload is not interpreted before its signature has been checked
//! with a key that the caller trusts. Nothing in a token header is ever fetched (`jku`, `x5u`)
//! or trusted as a key (`jwk`, `x5c`).

pub mod alg;
pub mod b64;
pub mod error;
pub mod header;
pub(crate) mod json;
pub mod jwk;
pub mod jwks;
pub mod jws;
#[cfg(feature = "signing")]
mod private_jwk;
#[cfg(feature = "signing")]
pub mod sign;

pub use alg::{Algorithm, AlgorithmSet};
pub use error::JoseError;
pub use header::Header;
pub use jwk::{HmacKey, VerifyingKey};
pub use jwks::{JwkSet, KeySelection};
pub use jws::{DEFAULT_MAX_TOKEN_BYTES, UnverifiedJwt, VerifiedJws};
