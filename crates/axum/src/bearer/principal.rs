//! [`Principal`]: the authenticated caller of a request, as handlers see it, and its axum
//! extractors (`Principal` refuses anonymous requests; `Option<Principal>` accepts them).

use std::ops::Deref;
use std::sync::Arc;

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use http::request::Parts;
use oidcgate_core::validate::VerifiedClaims;

use super::response::BearerError;

/// The pseudo-scope every authenticated request holds (seed 001's Starlette convention).
pub const AUTHENTICATED_SCOPE: &str = "authenticated";

/// The verified identity behind a request. Cheap to clone; derefs to [`VerifiedClaims`].
#[derive(Debug, Clone)]
pub struct Principal {
    claims: Arc<VerifiedClaims>,
}

impl Principal {
    /// Wraps verified claims (only verified claims exist, so this cannot forge an identity).
    pub fn new(claims: Arc<VerifiedClaims>) -> Self {
        Self { claims }
    }

    /// The verified claims.
    pub fn claims(&self) -> &VerifiedClaims {
        &self.claims
    }

    /// A display name for the caller: `email`, else `sub` (seed 001 shows the email).
    pub fn username(&self) -> Option<&str> {
        self.claims.email().or(self.claims.subject())
    }

    /// Whether the caller holds `scope` (`authenticated` always holds).
    pub fn has_scope(&self, scope: &str) -> bool {
        scope == AUTHENTICATED_SCOPE || self.claims.has_scope(scope)
    }

    /// The granted scopes followed by `authenticated`.
    pub fn scopes(&self) -> Vec<&str> {
        self.claims
            .scopes()
            .iter()
            .map(String::as_str)
            .chain([AUTHENTICATED_SCOPE])
            .collect()
    }
}

impl Deref for Principal {
    type Target = VerifiedClaims;

    fn deref(&self) -> &VerifiedClaims {
        &self.claims
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = BearerError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or(BearerError::Missing)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Principal {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Principal>().cloned())
    }
}
