//! [`Identity`]: who a request is, for whatever authorizer the app uses — seed 002's Topaz
//! `identity_provider`, which returns "no identity" or "subject = sub". It reads what the
//! layers attached: the session of [`crate::login::OidcLoginLayer`] first, then the
//! [`crate::bearer::Principal`] of a validated bearer token. It never fails: a request with
//! neither is [`Identity::Anonymous`], so the authorizer decides what anonymous may do.

use std::convert::Infallible;

use axum_core::extract::FromRequestParts;
use http::request::Parts;

use crate::bearer::Principal;
use crate::login::SessionUser;

/// The identity of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// No session and no valid bearer token (Topaz `IDENTITY_TYPE_NONE`).
    Anonymous,
    /// The verified `sub` of the session or the bearer token (Topaz `IDENTITY_TYPE_SUB`).
    Subject(String),
}

impl Identity {
    /// The identity the layers attached to a request.
    pub fn of(parts: &Parts) -> Self {
        if let Some(user) = parts.extensions.get::<SessionUser>() {
            return Self::Subject(user.sub.clone());
        }
        match parts
            .extensions
            .get::<Principal>()
            .and_then(|p| p.claims().subject())
        {
            Some(sub) => Self::Subject(sub.to_owned()),
            None => Self::Anonymous,
        }
    }

    /// The subject, when there is one.
    pub fn subject(&self) -> Option<&str> {
        match self {
            Self::Anonymous => None,
            Self::Subject(sub) => Some(sub),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Identity {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        Ok(Self::of(parts))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::login::SessionData;

    fn parts() -> Parts {
        http::Request::new(()).into_parts().0
    }

    #[test]
    fn anonymous_without_a_session_or_token_and_the_subject_with_a_session() {
        let mut p = parts();
        assert_eq!(Identity::of(&p), Identity::Anonymous);
        assert_eq!(Identity::of(&p).subject(), None);
        let session: SessionData = serde_json::from_value(serde_json::json!({
            "id": "s1", "sub": "alice", "idp_sid": null, "email": null, "email_verified": null,
            "name": null, "preferred_username": null, "id_token": null,
            "created_at": 0, "expires_at": 1
        }))
        .unwrap();
        p.extensions.insert(SessionUser(Arc::new(session)));
        assert_eq!(Identity::of(&p), Identity::Subject("alice".into()));
        assert_eq!(Identity::of(&p).subject(), Some("alice"));
    }
}
