//! Minting the IdP's tokens — RFC 9068 `at+jwt` access tokens, ID tokens (OIDC Core §2) with
//! `at_hash`, opaque random codes and refresh tokens — and verifying its own access tokens.

use oidcgate_core::jose::{Algorithm, AlgorithmSet, JoseError, UnverifiedJwt, b64};
use serde_json::{Map, Value, json};

use crate::config::{Client, User};
use crate::keys::KeyRing;
use crate::store::Timestamp;

/// 256 bits from the system CSPRNG, base64url: codes, refresh tokens, session ids, CSRF tokens.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    // Fails only when the OS has no entropy source at all; handing out a predictable secret
    // would be worse than stopping, and no request input can cause it.
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        panic!("the system random number generator is unavailable");
    }
    b64::encode(bytes)
}

/// The claims a user's scopes release (OIDC Core §5.4; `groups` with `profile` or `groups`).
pub fn user_claims(user: &User, scope: &str) -> Map<String, Value> {
    let has = |s: &str| scope.split(' ').any(|x| x == s);
    let mut claims = Map::new();
    claims.insert("sub".into(), json!(user.sub()));
    if has("profile") {
        if let Some(name) = &user.name {
            claims.insert("name".into(), json!(name));
        }
        claims.insert(
            "preferred_username".into(),
            json!(user.preferred_username.as_deref().unwrap_or(&user.username)),
        );
    }
    if has("email")
        && let Some(email) = &user.email
    {
        claims.insert("email".into(), json!(email));
        claims.insert("email_verified".into(), json!(user.email_verified));
    }
    if (has("groups") || has("profile")) && !user.groups.is_empty() {
        claims.insert("groups".into(), json!(user.groups));
    }
    claims
}

/// What an access token is issued for.
pub struct AccessGrant<'a> {
    pub client: &'a Client,
    /// The user's subject, or the client id for client credentials.
    pub sub: &'a str,
    pub scope: &'a str,
    pub auth_time: Option<Timestamp>,
    pub sid: Option<&'a str>,
}

/// Signs an RFC 9068 access token with the client's algorithm (`id_token_signed_response_alg`,
/// RS256 by default); returns it with its `jti` and `exp`.
pub fn access_token(
    keys: &KeyRing,
    issuer: &str,
    grant: &AccessGrant<'_>,
    now: Timestamp,
    lifetime: i64,
) -> Result<(String, String, Timestamp), JoseError> {
    let jti = random_token();
    let exp = now + lifetime;
    let mut claims = json!({
        "iss": issuer,
        "sub": grant.sub,
        "aud": grant.client.access_token_audience,
        "client_id": grant.client.client_id,
        "scope": grant.scope,
        "iat": now,
        "exp": exp,
        "jti": jti,
    });
    if let Some(t) = grant.auth_time {
        claims["auth_time"] = json!(t);
    }
    if let Some(sid) = grant.sid {
        claims["sid"] = json!(sid);
    }
    let signer = keys
        .signer(grant.client.id_token_alg())
        .ok_or(JoseError::SigningFailed)?;
    Ok((signer.sign_jwt(Some("at+jwt"), &claims)?, jti, exp))
}

/// `at_hash` (OIDC Core §3.1.3.6), computed the way relying parties check it.
pub use oidcgate_core::validate::id_token::at_hash;

/// What an ID token says.
pub struct IdClaims<'a> {
    pub client: &'a Client,
    pub user: &'a User,
    pub scope: &'a str,
    pub nonce: Option<&'a str>,
    pub auth_time: Timestamp,
    pub sid: &'a str,
    pub access_token: Option<&'a str>,
}

/// Signs an ID token with the client's algorithm.
pub fn id_token(
    keys: &KeyRing,
    issuer: &str,
    c: &IdClaims<'_>,
    now: Timestamp,
    lifetime: i64,
) -> Result<String, JoseError> {
    let alg = c.client.id_token_alg();
    let signer = keys.signer(alg).ok_or(JoseError::SigningFailed)?;
    let mut claims = user_claims(c.user, c.scope);
    claims.insert("iss".into(), json!(issuer));
    claims.insert("aud".into(), json!(c.client.client_id));
    claims.insert("azp".into(), json!(c.client.client_id));
    claims.insert("iat".into(), json!(now));
    claims.insert("exp".into(), json!(now + lifetime));
    claims.insert("auth_time".into(), json!(c.auth_time));
    claims.insert("sid".into(), json!(c.sid));
    if let Some(nonce) = c.nonce {
        claims.insert("nonce".into(), json!(nonce));
    }
    if let Some(at) = c.access_token {
        claims.insert("at_hash".into(), json!(at_hash(alg, at)));
    }
    signer.sign_jwt(Some("JWT"), &Value::Object(claims))
}

/// The claims of one of this IdP's own access tokens, when it is valid.
pub fn verify_own_access_token(
    keys: &KeyRing,
    issuer: &str,
    token: &str,
    now: Timestamp,
) -> Option<Map<String, Value>> {
    let jwt = UnverifiedJwt::parse(token).ok()?;
    if !jwt.header().typ_is("at+jwt") {
        return None;
    }
    let allowed: AlgorithmSet = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA]
        .into_iter()
        .collect();
    let claims = jwt
        .verify(keys.snapshot().verification_keys(), allowed)
        .ok()?
        .claims()
        .ok()?;
    let valid = claims.get("iss").and_then(Value::as_str) == Some(issuer)
        && claims
            .get("exp")
            .and_then(Value::as_i64)
            .is_some_and(|exp| exp > now)
        && claims.get("sub").and_then(Value::as_str).is_some()
        && claims.get("jti").and_then(Value::as_str).is_some();
    valid.then_some(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_hash_matches_the_oidc_example() {
        // OpenID Connect Core A.3: access token "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"
        // gives at_hash "77QmUPtjPfzWtF2AnpK9RQ" with RS256.
        assert_eq!(
            at_hash(
                Algorithm::RS256,
                "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"
            ),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
    }

    #[test]
    fn random_tokens_differ() {
        assert_ne!(random_token(), random_token());
        assert_eq!(random_token().len(), 43);
    }
}
