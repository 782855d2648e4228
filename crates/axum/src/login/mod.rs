//! Relying-party login for axum/tower apps (seeds 002–004): `/login` → provider (code + PKCE +
//! state + nonce) → callback → verified ID token → encrypted cookie session → `/logout`.
//!
//! - [`layer`]: [`OidcLoginLayer`], the routes and the session check.
//! - [`require`]: [`RequireLoginLayer`], "login required" (browsers redirected, APIs 401).
//! - [`session`]: [`SessionData`] and the [`SessionUser`] extractor.
//! - [`redirect`]: the `rd` return-path check (no open redirect).
//! - [`redis`]: the Redis session store (the cookie carries only a ticket).
//! - [`refresh`]: transparent refresh of the session's tokens (single flight, Redis lease).
//! - [`pages`]: HTML/JSON error answers.

pub mod layer;
pub mod pages;
pub mod redirect;
pub mod redis;
pub mod refresh;
pub mod require;
pub mod session;

pub use layer::{LoginConfig, OidcLoginLayer};
pub use redirect::safe_return_path;
pub use require::RequireLoginLayer;
pub use session::{SessionData, SessionTokens, SessionUser};
