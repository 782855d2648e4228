//! ID-token validation for relying parties (OpenID Connect Core §3.1.3.7, §12.2): signature with
//! the issuer's cached keys under an algorithm allow-list; `iss` exact; `aud` contains the client
//! id and no untrusted audience; `azp` names the client when present (and is required with
//! several audiences); `exp`, `iat` with leeway; `sub` required; `nonce` compared in constant
//! time; `auth_time` when `max_age` was sent; `at_hash` when present; and, for refreshed ID
//! tokens, the same `sub` as before. A token without `kid` is refused when several of the
//! issuer's keys fit its algorithm (OIDC Core §10.1 requires the `kid` then).

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest;
use serde_json::Value;

use super::access_token::{audiences, numeric_date, verify_with_key_policy};
use super::claims::VerifiedClaims;
use super::error::ValidationError;
use crate::clock::Clock;
use crate::jose::json::{scan_object, to_jose_error};
use crate::jose::{Algorithm, AlgorithmSet, UnverifiedJwt, b64};
use crate::provider::KeyCache;

/// What one ID token must match beyond the registered claims.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdTokenChecks<'a> {
    /// The nonce sent in the authorization request; when set, the token must carry it. When not
    /// set (a refreshed ID token), a `nonce` in the token is ignored.
    pub nonce: Option<&'a str>,
    /// The `max_age` sent, which makes `auth_time` required and bounded.
    pub max_age: Option<Duration>,
    /// The access token issued with it, checked against `at_hash` when the token has one.
    pub access_token: Option<&'a str>,
    /// For a refreshed ID token: the `sub` of the session it replaces.
    pub expected_sub: Option<&'a str>,
    /// For a refreshed ID token: the nonce of the original login. A refreshed token may lack
    /// `nonce`, but one it carries must equal this (OIDC Core §12.2).
    pub original_nonce: Option<&'a str>,
}

/// Validates ID tokens for one client of one issuer.
#[derive(Debug, Clone)]
pub struct IdTokenValidator {
    issuer: String,
    client_id: String,
    trusted_audiences: Vec<String>,
    algorithms: AlgorithmSet,
    leeway: Duration,
    keys: KeyCache,
    clock: Arc<dyn Clock>,
}

const READ: [&str; 9] = [
    "iss",
    "aud",
    "azp",
    "exp",
    "iat",
    "sub",
    "nonce",
    "auth_time",
    "at_hash",
];

impl IdTokenValidator {
    /// A validator using `keys` (the issuer's key cache) and the default asymmetric algorithms.
    pub fn new(
        issuer: impl Into<String>,
        client_id: impl Into<String>,
        keys: KeyCache,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            client_id: client_id.into(),
            trusted_audiences: Vec::new(),
            algorithms: AlgorithmSet::default(),
            leeway: Duration::from_secs(60),
            keys,
            clock,
        }
    }

    /// Other audiences that may appear beside the client id.
    pub fn trusted_audiences(
        mut self,
        audiences: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.trusted_audiences = audiences.into_iter().map(Into::into).collect();
        self
    }

    /// Replaces the algorithm allow-list (HMAC algorithms are never accepted here).
    pub fn algorithms(mut self, algorithms: AlgorithmSet) -> Self {
        let mut set = algorithms;
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            set.remove(alg);
        }
        self.algorithms = set;
        self
    }

    /// Clock-skew allowance.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// The key cache (shared with other validators of the issuer).
    pub fn keys(&self) -> &KeyCache {
        &self.keys
    }

    /// The header and payload of a JWT signed with the issuer's keys under the allow-list. An
    /// access or logout token is never accepted here, whatever its claims.
    async fn verified_parts(
        &self,
        token: &str,
    ) -> Result<(crate::jose::Header, Vec<u8>), ValidationError> {
        let jwt = UnverifiedJwt::parse(token)?;
        if jwt.header().typ_is("at+jwt") || jwt.header().typ_is("logout+jwt") {
            return Err(ValidationError::WrongType);
        }
        let alg = jwt.header().alg();
        if !self.algorithms.contains(alg) {
            return Err(crate::jose::JoseError::AlgorithmNotAllowed(alg.name()).into());
        }
        let verified = verify_with_key_policy(&self.keys, jwt, self.algorithms, true).await?;
        Ok(verified.into_parts())
    }

    /// Verifies a JWT the issuer signed that is not an ID token — a signed userinfo response
    /// (OIDC Core §5.3.2) or an aggregated or distributed claims JWT (§5.6.2) — and returns its
    /// claims: signature with the issuer's keys under the allow-list; `iss` equal to the issuer
    /// (required when `require_iss`, else checked when present); `aud`, when present, naming
    /// this client and no untrusted audience; `exp`, when present, not passed.
    pub async fn verify_issuer_jwt(
        &self,
        token: &str,
        require_iss: bool,
    ) -> Result<serde_json::Map<String, Value>, ValidationError> {
        let (_, payload) = self.verified_parts(token).await?;
        // Strict, as for every token: duplicate member names are refused.
        let claims =
            crate::jose::json::parse_object(&payload).map_err(|e| to_jose_error("payload", e))?;
        match claims.get("iss") {
            Some(Value::String(iss)) if *iss == self.issuer => {}
            Some(_) => return Err(ValidationError::IssuerMismatch),
            None if require_iss => return Err(ValidationError::MissingClaim("iss".into())),
            None => {}
        }
        match claims.get("aud") {
            None => {}
            Some(Value::String(a)) if *a == self.client_id => {}
            Some(Value::Array(list)) => {
                let list: Vec<&str> = list
                    .iter()
                    .map(|a| {
                        a.as_str()
                            .ok_or_else(|| ValidationError::InvalidClaim("aud".into()))
                    })
                    .collect::<Result<_, _>>()?;
                if !list.contains(&self.client_id.as_str()) {
                    return Err(ValidationError::AudienceMismatch);
                }
                if list
                    .iter()
                    .any(|a| *a != self.client_id && !self.trusted_audiences.iter().any(|t| t == a))
                {
                    return Err(ValidationError::UntrustedAudience);
                }
            }
            Some(_) => return Err(ValidationError::AudienceMismatch),
        }
        if let Some(exp) = claims.get("exp") {
            let exp = exp
                .as_i64()
                .or_else(|| exp.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
                .ok_or_else(|| ValidationError::InvalidClaim("exp".into()))?;
            let leeway = i64::try_from(self.leeway.as_secs()).unwrap_or(i64::MAX);
            if self.clock.unix_seconds() > exp.saturating_add(leeway) {
                return Err(ValidationError::Expired);
            }
        }
        Ok(claims)
    }

    /// Validates an ID token.
    pub async fn validate(
        &self,
        token: &str,
        checks: IdTokenChecks<'_>,
    ) -> Result<VerifiedClaims, ValidationError> {
        let (header, payload) = self.verified_parts(token).await?;
        let alg = header.alg();
        let names = READ.map(String::from);
        let claims = scan_object(&payload, &names).map_err(|e| to_jose_error("payload", e))?;
        let string = |name: &str| -> Result<Option<&str>, ValidationError> {
            match claims.get(name) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(_) => Err(ValidationError::InvalidClaim(name.into())),
            }
        };
        match string("iss")? {
            Some(iss) if iss == self.issuer => {}
            Some(_) => return Err(ValidationError::IssuerMismatch),
            None => return Err(ValidationError::MissingClaim("iss".into())),
        }
        let aud = audiences(&claims)?;
        if !aud.contains(&self.client_id) {
            return Err(ValidationError::AudienceMismatch);
        }
        if aud
            .iter()
            .any(|a| *a != self.client_id && !self.trusted_audiences.contains(a))
        {
            return Err(ValidationError::UntrustedAudience);
        }
        match string("azp")? {
            Some(azp) if azp != self.client_id => return Err(ValidationError::AzpMismatch),
            None if aud.len() > 1 => return Err(ValidationError::MissingClaim("azp".into())),
            _ => {}
        }
        let now = self.clock.unix_seconds();
        let leeway = i64::try_from(self.leeway.as_secs()).unwrap_or(i64::MAX);
        let exp = numeric_date(&claims, "exp")?
            .ok_or_else(|| ValidationError::MissingClaim("exp".into()))?;
        if now > exp.saturating_add(leeway) {
            return Err(ValidationError::Expired);
        }
        let iat = numeric_date(&claims, "iat")?
            .ok_or_else(|| ValidationError::MissingClaim("iat".into()))?;
        if iat > now.saturating_add(leeway) {
            return Err(ValidationError::IssuedInFuture);
        }
        let sub = string("sub")?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ValidationError::MissingClaim("sub".into()))?;
        if let Some(expected) = checks.expected_sub
            && expected != sub
        {
            return Err(ValidationError::SubjectMismatch);
        }
        if let Some(expected) = checks.nonce {
            let got =
                string("nonce")?.ok_or_else(|| ValidationError::MissingClaim("nonce".into()))?;
            if verify_slices_are_equal(got.as_bytes(), expected.as_bytes()).is_err() {
                return Err(ValidationError::NonceMismatch);
            }
        }
        if let Some(original) = checks.original_nonce
            && let Some(got) = string("nonce")?
            && verify_slices_are_equal(got.as_bytes(), original.as_bytes()).is_err()
        {
            return Err(ValidationError::NonceMismatch);
        }
        if let Some(max_age) = checks.max_age {
            let auth_time = numeric_date(&claims, "auth_time")?
                .ok_or_else(|| ValidationError::MissingClaim("auth_time".into()))?;
            let max_age = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
            if now > auth_time.saturating_add(max_age).saturating_add(leeway) {
                return Err(ValidationError::AuthTimeTooOld);
            }
        }
        if let (Some(at_hash), Some(access_token)) = (string("at_hash")?, checks.access_token)
            && !at_hash_matches(alg, access_token, at_hash)
        {
            return Err(ValidationError::AtHashMismatch);
        }
        Ok(VerifiedClaims::new(
            self.issuer.clone(),
            Some(sub.to_owned()),
            aud,
            exp,
            Vec::new(),
            alg,
            header.kid().map(str::to_owned),
            payload,
        ))
    }
}

/// OIDC Core §3.1.3.6 `at_hash`: base64url of the left half of the hash of the access token,
/// with the hash of the ID token's algorithm (SHA-512 for EdDSA with Ed25519).
pub fn at_hash(alg: Algorithm, access_token: &str) -> String {
    let algorithm = match alg {
        Algorithm::RS384 | Algorithm::PS384 | Algorithm::ES384 | Algorithm::HS384 => {
            &digest::SHA384
        }
        Algorithm::RS512
        | Algorithm::PS512
        | Algorithm::ES512
        | Algorithm::HS512
        | Algorithm::EdDSA
        | Algorithm::Ed25519 => &digest::SHA512,
        _ => &digest::SHA256,
    };
    let d = digest::digest(algorithm, access_token.as_bytes());
    b64::encode(&d.as_ref()[..d.as_ref().len() / 2])
}

/// Compares an `at_hash` claim with the access token, in constant time.
pub fn at_hash_matches(alg: Algorithm, access_token: &str, claimed: &str) -> bool {
    verify_slices_are_equal(at_hash(alg, access_token).as_bytes(), claimed.as_bytes()).is_ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn at_hash_example() {
        // OpenID Connect Core A.3.
        assert!(super::at_hash_matches(
            crate::jose::Algorithm::RS256,
            "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y",
            "77QmUPtjPfzWtF2AnpK9RQ"
        ));
    }
}
