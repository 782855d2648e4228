//! oidcgate-axum: tower layers and axum extractors on top of `oidcgate-core`.
//!
//! - [`bearer`]: bearer access-token authentication for resource servers — a layer that
//!   validates `Authorization: Bearer` tokens and attaches a [`bearer::Principal`], per-route
//!   scope requirements, and RFC 6750 error responses.
//!
//! - [`login`]: relying-party login with encrypted cookie sessions — routes, "login required",
//!   the [`login::SessionUser`] extractor.
//!
//! - [`identity`]: [`Identity`], "no identity" or "subject = sub" for an app's authorizer (seed
//!   002's Topaz `identity_provider`), from the session or the bearer token.
//!
//! The public API uses only `http`, `tower-layer`/`tower-service` and `axum-core` types, so an
//! axum upgrade is not a breaking change here.

pub mod bearer;
pub mod identity;
pub mod login;

pub use bearer::{BearerAuth, BearerAuthLayer, Principal, RequireScope, RequireScopeLayer};
pub use identity::Identity;
