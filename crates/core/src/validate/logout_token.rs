//! Back-channel logout tokens (OpenID Connect Back-Channel Logout 1.0 §2.4, §2.6): signed by
//! the issuer's keys; `iss` exact; `aud` contains the client id; `iat` present and not in the
//! future; `exp` present and not past; `jti` present and never seen before (replays refused
//! while the token could still be valid); an `events` object with the back-channel-logout
//! member; `sid` and/or `sub`; and no `nonce` (so an ID token can never pass as a logout token).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::access_token::{audiences, numeric_date, verify_with_key_policy};
use super::error::ValidationError;
use crate::clock::Clock;
use crate::jose::json::{scan_object, to_jose_error};
use crate::jose::{AlgorithmSet, UnverifiedJwt};
use crate::provider::KeyCache;

/// The `events` member that marks a logout token.
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// Whom a valid logout token logs out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutRequest {
    pub sub: Option<String>,
    pub sid: Option<String>,
    pub iat: i64,
}

/// Remembered `jti`s are bounded; beyond this, the oldest are forgotten.
const MAX_SEEN: usize = 100_000;

/// Validates logout tokens for one client, remembering `jti`s to refuse replays.
#[derive(Debug, Clone)]
pub struct LogoutTokenValidator {
    issuer: String,
    client_id: String,
    keys: KeyCache,
    clock: Arc<dyn Clock>,
    leeway: Duration,
    seen: Arc<Mutex<HashMap<String, i64>>>,
}

const READ: [&str; 9] = [
    "iss", "aud", "iat", "exp", "jti", "events", "sid", "sub", "nonce",
];

impl LogoutTokenValidator {
    pub fn new(
        issuer: impl Into<String>,
        client_id: impl Into<String>,
        keys: KeyCache,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            client_id: client_id.into(),
            keys,
            clock,
            leeway: Duration::from_secs(60),
            seen: Arc::default(),
        }
    }

    /// Validates one logout token.
    pub async fn validate(&self, token: &str) -> Result<LogoutRequest, ValidationError> {
        let jwt = UnverifiedJwt::parse(token)?;
        if let Some(typ) = jwt.header().typ()
            && !jwt.header().typ_is("logout+jwt")
            && !typ.eq_ignore_ascii_case("JWT")
        {
            return Err(ValidationError::WrongType);
        }
        let verified =
            verify_with_key_policy(&self.keys, jwt, AlgorithmSet::default(), true).await?;
        let (_, payload) = verified.into_parts();
        let names = READ.map(String::from);
        let claims = scan_object(&payload, &names).map_err(|e| to_jose_error("payload", e))?;
        let string = |name: &str| -> Result<Option<String>, ValidationError> {
            match claims.get(name) {
                None => Ok(None),
                Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
                Some(_) => Err(ValidationError::InvalidClaim(name.into())),
            }
        };
        if string("iss")?.as_deref() != Some(self.issuer.as_str()) {
            return Err(ValidationError::IssuerMismatch);
        }
        if !audiences(&claims)?.contains(&self.client_id) {
            return Err(ValidationError::AudienceMismatch);
        }
        if claims.get("nonce").is_some() {
            return Err(ValidationError::InvalidClaim("nonce".into()));
        }
        match claims.get("events") {
            Some(Value::Object(events))
                if events
                    .get(BACKCHANNEL_LOGOUT_EVENT)
                    .is_some_and(Value::is_object) => {}
            Some(_) => return Err(ValidationError::InvalidClaim("events".into())),
            None => return Err(ValidationError::MissingClaim("events".into())),
        }
        let now = self.clock.unix_seconds();
        let leeway = i64::try_from(self.leeway.as_secs()).unwrap_or(i64::MAX);
        let iat = numeric_date(&claims, "iat")?
            .ok_or_else(|| ValidationError::MissingClaim("iat".into()))?;
        if iat > now.saturating_add(leeway) {
            return Err(ValidationError::IssuedInFuture);
        }
        let exp = numeric_date(&claims, "exp")?
            .ok_or_else(|| ValidationError::MissingClaim("exp".into()))?;
        if now > exp.saturating_add(leeway) {
            return Err(ValidationError::Expired);
        }
        let (sub, sid) = (string("sub")?, string("sid")?);
        if sub.is_none() && sid.is_none() {
            return Err(ValidationError::MissingClaim("sid or sub".into()));
        }
        let jti = string("jti")?.ok_or_else(|| ValidationError::MissingClaim("jti".into()))?;
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            if seen.contains_key(&jti) {
                return Err(ValidationError::Replayed);
            }
            if seen.len() >= MAX_SEEN {
                seen.retain(|_, until| *until > now);
                if seen.len() >= MAX_SEEN {
                    // Still full of live entries: forget the half that expires first.
                    let mut by_expiry: Vec<(i64, String)> =
                        seen.iter().map(|(k, t)| (*t, k.clone())).collect();
                    by_expiry.sort_unstable();
                    for (_, k) in by_expiry.into_iter().take(MAX_SEEN / 2) {
                        seen.remove(&k);
                    }
                }
            }
            seen.insert(jti, exp.saturating_add(leeway));
        }
        Ok(LogoutRequest { sub, sid, iat })
    }
}
