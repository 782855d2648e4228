//! Bearer access-token validation (RFC 9068, RFC 8725, RFC 6750 §3 semantics).
//!
//! For each token: size bound and JWS syntax; the issuer is chosen by the *unverified* `iss`
//! when several are trusted, and the token is then verified against that issuer's own keys and
//! policy only; algorithm allow-list (HMAC only with a configured secret); optional `at+jwt`
//! type; signature; `iss` exact; `aud` contains an expected audience; `exp` required; `nbf` and
//! `iat` with leeway; configured required claims; scopes from `scope` / `scp`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use url::Url;

use super::claims::VerifiedClaims;
use super::error::ValidationError;
use super::token_cache::{TokenCache, TokenCacheConfig};
use crate::clock::{Clock, SystemClock};
use crate::http::{HttpClient, HttpError};
use crate::jose::alg::AlgorithmSet;
use crate::jose::json::{Picked, scan_object, to_jose_error};
use crate::jose::{Algorithm, HmacKey, JoseError, UnverifiedJwt, VerifiedJws};
use crate::provider::{KeyCache, KeyCacheConfig, KeySource};

/// What one trusted issuer's tokens must satisfy.
#[derive(Debug)]
pub struct IssuerPolicy {
    issuer: String,
    audiences: Vec<String>,
    algorithms: AlgorithmSet,
    hmac: Option<HmacKey>,
    leeway: Duration,
    required_claims: Vec<String>,
    require_at_jwt: bool,
    max_token_bytes: usize,
    jwks_uri: Option<Url>,
    /// The registered claims plus the required ones: what validation reads from a claims set.
    read_claims: Vec<String>,
}

impl IssuerPolicy {
    /// Tokens from `issuer` (compared byte for byte) whose `aud` contains `audience`.
    /// Defaults: asymmetric algorithms, 60 s leeway, required claims `exp iat iss sub`,
    /// `typ` not enforced, 16 KiB size bound, keys by discovery.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audiences: vec![audience.into()],
            algorithms: AlgorithmSet::default(),
            hmac: None,
            leeway: Duration::from_secs(60),
            required_claims: ["exp", "iat", "iss", "sub"].map(String::from).to_vec(),
            require_at_jwt: false,
            max_token_bytes: crate::jose::DEFAULT_MAX_TOKEN_BYTES,
            jwks_uri: None,
            read_claims: REGISTERED.map(String::from).to_vec(),
        }
    }

    /// Accepts any of these audiences (the token's `aud` must contain at least one).
    pub fn audiences(mut self, audiences: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.audiences = audiences.into_iter().map(Into::into).collect();
        self
    }

    /// Replaces the algorithm allow-list.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// Accepts HS256/384/512 tokens MACed with this shared secret (≥ 32 bytes). HMAC is never
    /// accepted otherwise, and never with a key from the JWKS.
    pub fn hmac_secret(mut self, secret: &[u8]) -> Result<Self, JoseError> {
        self.hmac = Some(HmacKey::new(secret)?);
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            self.algorithms.insert(alg);
        }
        Ok(self)
    }

    /// Clock-skew allowance for `exp`, `nbf` and `iat`.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Claims that must be present (replaces the default `exp iat iss sub`; `exp`, `iss` and
    /// `aud` are checked whatever this says).
    pub fn required_claims(mut self, claims: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.required_claims = claims.into_iter().map(Into::into).collect();
        self.read_claims = REGISTERED.map(String::from).to_vec();
        for claim in &self.required_claims {
            if !self.read_claims.contains(claim) {
                self.read_claims.push(claim.clone());
            }
        }
        self
    }

    /// Requires the RFC 9068 `typ` (`at+jwt` or `application/at+jwt`), which also keeps ID
    /// tokens from passing as access tokens when the audience is the client id.
    pub fn require_at_jwt(mut self, require: bool) -> Self {
        self.require_at_jwt = require;
        self
    }

    /// Size bound for tokens.
    pub fn max_token_bytes(mut self, max: usize) -> Self {
        self.max_token_bytes = max;
        self
    }

    /// Uses this `jwks_uri` instead of discovery.
    pub fn jwks_uri(mut self, uri: Url) -> Self {
        self.jwks_uri = Some(uri);
        self
    }

    /// The issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }
}

/// Why a validator could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("no trusted issuer configured")]
    NoIssuer,
    #[error("issuer {0:?} is configured twice")]
    DuplicateIssuer(String),
    #[error("issuer {0:?} has no expected audience")]
    NoAudience(String),
    #[error("issuer {0:?} allows no algorithm")]
    NoAlgorithm(String),
    #[error("issuer {issuer:?}: {source}")]
    BadIssuerUrl { issuer: String, source: HttpError },
    #[error("creating the HTTP client failed: {0}")]
    Http(HttpError),
}

/// Builds an [`AccessTokenValidator`].
#[derive(Default)]
pub struct ValidatorBuilder {
    issuers: Vec<IssuerPolicy>,
    http: Option<Arc<dyn HttpClient>>,
    clock: Option<Arc<dyn Clock>>,
    key_cache: KeyCacheConfig,
    token_cache: Option<TokenCacheConfig>,
}

impl ValidatorBuilder {
    /// Trusts one more issuer.
    pub fn issuer(mut self, policy: IssuerPolicy) -> Self {
        self.issuers.push(policy);
        self
    }

    /// The HTTP client for discovery and JWKS (default: reqwest with DESIGN limits).
    pub fn http_client(mut self, http: Arc<dyn HttpClient>) -> Self {
        self.http = Some(http);
        self
    }

    /// The clock (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Key-cache timing and URL policy.
    pub fn key_cache(mut self, config: KeyCacheConfig) -> Self {
        self.key_cache = config;
        self
    }

    /// Enables the validated-token cache.
    pub fn token_cache(mut self, config: TokenCacheConfig) -> Self {
        self.token_cache = Some(config);
        self
    }

    /// Checks the configuration and builds the validator (no network yet).
    pub fn build(self) -> Result<AccessTokenValidator, BuildError> {
        if self.issuers.is_empty() {
            return Err(BuildError::NoIssuer);
        }
        let http: Arc<dyn HttpClient> = match self.http {
            Some(http) => http,
            #[cfg(feature = "reqwest")]
            None => Arc::new(
                crate::http::ReqwestClient::new(Default::default()).map_err(BuildError::Http)?,
            ),
            #[cfg(not(feature = "reqwest"))]
            None => {
                return Err(BuildError::Http(HttpError::Other(
                    String::new(),
                    "no HTTP client configured".into(),
                )));
            }
        };
        let clock: Arc<dyn Clock> = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let mut issuers: Vec<IssuerEntry> = Vec::with_capacity(self.issuers.len());
        for policy in self.issuers {
            if issuers.iter().any(|e| e.policy.issuer == policy.issuer) {
                return Err(BuildError::DuplicateIssuer(policy.issuer));
            }
            if policy.audiences.is_empty() || policy.audiences.iter().any(String::is_empty) {
                return Err(BuildError::NoAudience(policy.issuer));
            }
            if policy.algorithms.is_empty() {
                return Err(BuildError::NoAlgorithm(policy.issuer));
            }
            let bad_url = |source| BuildError::BadIssuerUrl {
                issuer: policy.issuer.clone(),
                source,
            };
            let issuer_url = Url::parse(&policy.issuer).map_err(|_| {
                bad_url(HttpError::UrlNotAllowed(policy.issuer.clone(), "not a URL"))
            })?;
            self.key_cache
                .url_policy
                .check(&issuer_url)
                .map_err(bad_url)?;
            let source = match &policy.jwks_uri {
                Some(uri) => {
                    self.key_cache.url_policy.check(uri).map_err(bad_url)?;
                    KeySource::JwksUri(uri.clone())
                }
                None => KeySource::Discovery,
            };
            let keys = KeyCache::new(
                policy.issuer.clone(),
                source,
                http.clone(),
                clock.clone(),
                self.key_cache,
            );
            issuers.push(IssuerEntry { policy, keys });
        }
        Ok(AccessTokenValidator {
            issuers,
            clock,
            cache: self.token_cache.map(TokenCache::new),
        })
    }
}

struct IssuerEntry {
    policy: IssuerPolicy,
    keys: KeyCache,
}

/// Validates bearer access tokens from one or more trusted issuers. Cheap to share in an `Arc`.
pub struct AccessTokenValidator {
    issuers: Vec<IssuerEntry>,
    clock: Arc<dyn Clock>,
    cache: Option<TokenCache>,
}

impl std::fmt::Debug for AccessTokenValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessTokenValidator")
            .field(
                "issuers",
                &self
                    .issuers
                    .iter()
                    .map(|e| &e.policy.issuer)
                    .collect::<Vec<_>>(),
            )
            .field("token_cache", &self.cache.is_some())
            .finish()
    }
}

impl AccessTokenValidator {
    /// Starts a builder.
    pub fn builder() -> ValidatorBuilder {
        ValidatorBuilder::default()
    }

    /// The key cache of each trusted issuer (readiness checks, warm-up, metrics).
    pub fn key_caches(&self) -> impl Iterator<Item = &KeyCache> {
        self.issuers.iter().map(|e| &e.keys)
    }

    /// Loads every issuer's keys; returns the failures (the validator stays usable).
    pub async fn warm_up(&self) -> Vec<ValidationError> {
        let mut errors = Vec::new();
        for entry in &self.issuers {
            if let Err(e) = entry.keys.warm_up().await {
                errors.push(e.into());
            }
        }
        errors
    }

    /// Entries in the validated-token cache (0 when disabled).
    pub fn cached_tokens(&self) -> usize {
        self.cache.as_ref().map_or(0, TokenCache::len)
    }

    /// Validates a bearer token.
    pub async fn validate(&self, token: &str) -> Result<Arc<VerifiedClaims>, ValidationError> {
        let now = self.clock.unix_seconds();
        if let Some(cache) = &self.cache
            && let Some(hit) = cache.get(token, now)
        {
            // The entry is trusted only while the verifying issuer has withdrawn no key since.
            match self.issuers.get(hit.issuer_index) {
                Some(entry) if entry.keys.removal_epoch() == hit.epoch => return Ok(hit.claims),
                _ => cache.remove(token),
            }
        }
        // Boxed: the full check may fetch keys, and its future is large; a cache hit then
        // stays a small future that callers move around cheaply.
        Box::pin(self.validate_uncached(token, now)).await
    }

    /// The full check of a token not found in the cache.
    async fn validate_uncached(
        &self,
        token: &str,
        now: i64,
    ) -> Result<Arc<VerifiedClaims>, ValidationError> {
        let max_bytes = self
            .issuers
            .iter()
            .map(|e| e.policy.max_token_bytes)
            .max()
            .unwrap_or(0);
        let jwt = UnverifiedJwt::parse_with_limit(token, max_bytes)?;
        let index = self.route(&jwt)?;
        let entry = &self.issuers[index];
        let policy = &entry.policy;
        if token.len() > policy.max_token_bytes {
            return Err(JoseError::TooLarge {
                max: policy.max_token_bytes,
            }
            .into());
        }
        // RFC 9068 §4: with the profile required, only at+jwt; without it, still refuse a typ
        // that says the token is something else (an ID token, a logout token...).
        let typ_ok = match jwt.header().typ() {
            _ if jwt.header().typ_is("at+jwt") => true,
            None => !policy.require_at_jwt,
            Some(typ) => !policy.require_at_jwt && typ.eq_ignore_ascii_case("JWT"),
        };
        if !typ_ok {
            return Err(ValidationError::WrongType);
        }
        let epoch = entry.keys.removal_epoch();
        let verified = self.verify_signature(entry, jwt).await?;
        let claims = Arc::new(check_claims(policy, verified, self.clock.unix_seconds())?);
        if let Some(cache) = &self.cache {
            cache.insert(
                token,
                claims.clone(),
                claims.expires_at(),
                now,
                index,
                epoch,
            );
        }
        Ok(claims)
    }

    /// Picks the issuer entry: the only one, or the one named by the unverified `iss`.
    fn route(&self, jwt: &UnverifiedJwt<'_>) -> Result<usize, ValidationError> {
        if self.issuers.len() == 1 {
            return Ok(0);
        }
        let iss = jwt
            .peek_string_claim("iss")
            .ok_or(ValidationError::UntrustedIssuer)?;
        self.issuers
            .iter()
            .position(|e| e.policy.issuer == iss)
            .ok_or(ValidationError::UntrustedIssuer)
    }

    /// Checks the signature with the issuer's keys (refetching once for an unknown `kid`), then
    /// moves the verified header and payload out of the token.
    async fn verify_signature(
        &self,
        entry: &IssuerEntry,
        jwt: UnverifiedJwt<'_>,
    ) -> Result<VerifiedJws, ValidationError> {
        let policy = &entry.policy;
        let alg = jwt.header().alg();
        if !policy.algorithms.contains(alg) {
            return Err(JoseError::AlgorithmNotAllowed(alg.name()).into());
        }
        if alg.is_hmac() {
            let key = policy.hmac.as_ref().ok_or(JoseError::HmacNotConfigured)?;
            jwt.check_hmac(key, policy.algorithms)?;
            return Ok(jwt.into_verified());
        }
        verify_with_keys(&entry.keys, jwt, policy.algorithms).await
    }
}

/// Checks an asymmetric signature with an issuer's cached keys, refetching once (within the
/// cooldown) for an unknown `kid`, then moves the verified header and payload out.
pub(crate) async fn verify_with_keys(
    keys: &KeyCache,
    jwt: UnverifiedJwt<'_>,
    algorithms: AlgorithmSet,
) -> Result<VerifiedJws, ValidationError> {
    verify_with_key_policy(keys, jwt, algorithms, false).await
}

/// Like [`verify_with_keys`]; with `kid_required_when_several`, a token without `kid` is
/// refused when more than one key fits its algorithm (OpenID Connect Core §10.1 requires a
/// `kid` then, so an OpenID Provider's tokens are held to it).
pub(crate) async fn verify_with_key_policy(
    keys: &KeyCache,
    jwt: UnverifiedJwt<'_>,
    algorithms: AlgorithmSet,
    kid_required_when_several: bool,
) -> Result<VerifiedJws, ValidationError> {
    let snapshot = keys.keys().await?;
    if kid_required_when_several
        && jwt.header().kid().is_none()
        && let Ok(crate::jose::KeySelection::Candidates(fitting)) =
            snapshot.keys.select(jwt.header())
    {
        return Err(JoseError::AmbiguousKey(fitting.len()).into());
    }
    match jwt.check_signature(&snapshot.keys, algorithms) {
        Err(JoseError::UnknownKid(_)) => {
            let newer = keys.refresh_for_unknown_kid(&snapshot).await;
            jwt.check_signature(&newer.keys, algorithms)?;
        }
        other => other?,
    }
    Ok(jwt.into_verified())
}

/// NumericDate (RFC 7519 §2): a JSON number, possibly fractional; rounded down.
pub(crate) fn numeric_date(
    claims: &Claims<'_>,
    name: &str,
) -> Result<Option<i64>, ValidationError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                return Ok(Some(i));
            }
            match n.as_f64() {
                Some(f) if f.is_finite() && f.abs() < 1e15 => Ok(Some(f.floor() as i64)),
                _ => Err(ValidationError::InvalidClaim(name.to_owned())),
            }
        }
        Some(_) => Err(ValidationError::InvalidClaim(name.to_owned())),
    }
}

/// `aud` as a list: a string or an array of strings (RFC 7519 §4.1.3).
pub(crate) fn audiences(claims: &Claims<'_>) -> Result<Vec<String>, ValidationError> {
    match claims.get("aud") {
        None => Err(ValidationError::MissingClaim("aud".into())),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| ValidationError::InvalidClaim("aud".into()))
            })
            .collect(),
        Some(_) => Err(ValidationError::InvalidClaim("aud".into())),
    }
}

/// Scopes from `scope` (RFC 8693 §4.2: space-separated string) and `scp` (array, or a
/// space-separated string as Entra ID sends it).
fn scopes(claims: &Claims<'_>) -> Result<Vec<String>, ValidationError> {
    let mut out: Vec<String> = Vec::new();
    for name in ["scope", "scp"] {
        match claims.get(name) {
            None => {}
            Some(Value::String(s)) => out.extend(s.split_whitespace().map(str::to_owned)),
            Some(Value::Array(items)) => {
                for item in items {
                    let s = item
                        .as_str()
                        .ok_or_else(|| ValidationError::InvalidClaim(name.into()))?;
                    out.extend(s.split_whitespace().map(str::to_owned));
                }
            }
            Some(_) => return Err(ValidationError::InvalidClaim(name.into())),
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The claims validation reads; the rest are only syntax-checked until someone asks.
const REGISTERED: [&str; 8] = ["iss", "aud", "exp", "nbf", "iat", "sub", "scope", "scp"];

/// The claims a validation picked out of a claims set.
pub(crate) type Claims<'n> = Picked<'n, String>;

/// The registered-claim checks, after the signature.
pub(crate) fn check_claims(
    policy: &IssuerPolicy,
    verified: VerifiedJws,
    now: i64,
) -> Result<VerifiedClaims, ValidationError> {
    let (header, payload) = verified.into_parts();
    let claims =
        scan_object(&payload, &policy.read_claims).map_err(|e| to_jose_error("payload", e))?;
    let leeway = i64::try_from(policy.leeway.as_secs()).unwrap_or(i64::MAX);
    match claims.get("iss") {
        Some(Value::String(iss)) if *iss == policy.issuer => {}
        Some(Value::String(_)) => return Err(ValidationError::IssuerMismatch),
        Some(_) => return Err(ValidationError::InvalidClaim("iss".into())),
        None => return Err(ValidationError::MissingClaim("iss".into())),
    }
    let aud = audiences(&claims)?;
    if !aud.iter().any(|a| policy.audiences.contains(a)) {
        return Err(ValidationError::AudienceMismatch);
    }
    let exp =
        numeric_date(&claims, "exp")?.ok_or_else(|| ValidationError::MissingClaim("exp".into()))?;
    if now > exp.saturating_add(leeway) {
        return Err(ValidationError::Expired);
    }
    if let Some(nbf) = numeric_date(&claims, "nbf")?
        && nbf > now.saturating_add(leeway)
    {
        return Err(ValidationError::NotYetValid);
    }
    if let Some(iat) = numeric_date(&claims, "iat")?
        && iat > now.saturating_add(leeway)
    {
        return Err(ValidationError::IssuedInFuture);
    }
    for name in &policy.required_claims {
        if claims.get(name).is_none_or(Value::is_null) {
            return Err(ValidationError::MissingClaim(name.clone()));
        }
    }
    let subject = match claims.get("sub") {
        None => None,
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(_) => return Err(ValidationError::InvalidClaim("sub".into())),
    };
    let scopes = scopes(&claims)?;
    Ok(VerifiedClaims::new(
        policy.issuer.clone(),
        subject,
        aud,
        exp,
        scopes,
        header.alg(),
        header.kid().map(str::to_owned),
        payload,
    ))
}
