//! oidcgate-core: the framework-free heart of oidcgate.
//!
//! - [`jose`]: compact JWS parsing, JWK/JWKS, signature verification (and, with the `signing`
//!   feature, signing) on aws-lc-rs.
//! - [`provider`]: OpenID Provider discovery metadata and the per-issuer key cache.
//! - [`validate`]: access-token and ID-token validation producing [`validate::VerifiedClaims`],
//!   and the validated-token cache.
//! - [`client`]: the relying-party client: authorization request with PKCE, callback, grants.
//! - [`session`]: the encrypted session-cookie codec.
//! - [`http`]: the one injected HTTP client trait every outbound call goes through.
//! - [`clock`]: the injected clock, so tests control time.

pub mod client;
pub mod clock;
pub mod http;
pub mod jose;
pub mod provider;
pub mod session;
pub mod validate;
