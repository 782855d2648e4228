//! Bearer-token authentication for resource servers (RFC 6750).
//!
//! - [`layer`]: [`BearerAuthLayer`] validates the token and inserts a [`Principal`]; in
//!   *required* mode a request without a token gets 401, in *optional* mode it passes as
//!   anonymous. A presented but invalid token is always refused.
//! - [`scope`]: [`RequireScopeLayer`], a per-route scope requirement (403 `insufficient_scope`).
//! - [`principal`]: the identity handlers receive, and its extractors.
//! - [`response`]: the RFC 6750 error responses (`WWW-Authenticate` plus a JSON body).

pub mod layer;
pub mod principal;
pub mod response;
pub mod scope;

pub use layer::{BearerAuth, BearerAuthLayer};
pub use principal::{AUTHENTICATED_SCOPE, Principal};
pub use response::{BearerError, DEFAULT_REALM};
pub use scope::{RequireScope, RequireScopeLayer};
