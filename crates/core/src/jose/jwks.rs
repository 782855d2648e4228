//! JWK Sets (RFC 7517 §5) and key selection for a token header.
//!
//! Loading skips keys that cannot verify signatures (encryption keys, unsupported curves...) and
//! records why, so one odd key in an IdP's set does not break every token.
//!
//! Selection policy: with a `kid`, only keys with that `kid` are considered, and the one that
//! fits the token's `alg` is used. Without a `kid`, every key that fits `alg` is a candidate:
//! one is used directly, up to [`MAX_KIDLESS_CANDIDATES`] are each tried (an IdP that omits
//! `kid` while rotating has two), more is refused as ambiguous, which bounds the verification
//! work a forged token can cause.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use super::alg::truncate;
use super::error::JoseError;
use super::header::Header;
use super::json::{parse_object, to_jose_error};
use super::jwk::VerifyingKey;

/// Keys beyond this many in one set are ignored (real sets hold a handful).
pub const MAX_KEYS: usize = 100;

/// How many kid-less candidates are tried before the token is refused as ambiguous.
pub const MAX_KIDLESS_CANDIDATES: usize = 3;

/// A parsed JWK Set: signing keys only, indexed by `kid`.
#[derive(Debug, Default)]
pub struct JwkSet {
    keys: Vec<Arc<VerifyingKey>>,
    by_kid: HashMap<String, Vec<usize>>,
    skipped: Vec<String>,
}

/// The key(s) to verify a token with.
#[derive(Debug)]
pub enum KeySelection<'a> {
    /// Exactly one key fits.
    One(&'a VerifyingKey),
    /// A bounded list of keys to try in turn (no `kid`, or a `kid` shared by several keys).
    Candidates(Vec<&'a VerifyingKey>),
}

impl JwkSet {
    /// Parses a JWK Set document. Fails when it is not `{"keys":[...]}` or holds no usable
    /// signing key at all (every key skipped); otherwise unusable keys are skipped.
    pub fn from_json(bytes: &[u8]) -> Result<Self, JoseError> {
        let object = parse_object(bytes).map_err(|e| to_jose_error("JWK Set", e))?;
        let Some(Value::Array(entries)) = object.get("keys") else {
            return Err(JoseError::InvalidJwkSet("no \"keys\" array".into()));
        };
        let mut set = Self::default();
        for (index, entry) in entries.iter().enumerate() {
            if index >= MAX_KEYS {
                set.skipped.push(format!(
                    "{} keys beyond the first {MAX_KEYS} ignored",
                    entries.len() - MAX_KEYS
                ));
                break;
            }
            let parsed = match entry {
                Value::Object(jwk) => VerifyingKey::from_jwk(jwk),
                _ => Err(JoseError::InvalidJwk("not an object".into())),
            };
            match parsed {
                Ok(key) => set.push(key),
                Err(e) => {
                    let kid = entry.get("kid").and_then(Value::as_str).map(truncate);
                    set.skipped.push(format!("key #{index} (kid {kid:?}): {e}"));
                }
            }
        }
        if set.keys.is_empty() {
            // Name a few reasons; a hostile set of 100 odd keys must not make a huge message.
            let why = match set.skipped.len() {
                0 => "it is empty".to_owned(),
                n if n <= 3 => set.skipped.join("; "),
                n => format!("{}; and {} more", set.skipped[..3].join("; "), n - 3),
            };
            return Err(JoseError::InvalidJwkSet(format!(
                "no usable signing key: {why}"
            )));
        }
        Ok(set)
    }

    /// A set of already-parsed keys.
    pub fn from_keys(keys: impl IntoIterator<Item = VerifyingKey>) -> Self {
        let mut set = Self::default();
        for key in keys {
            set.push(key);
        }
        set
    }

    fn push(&mut self, key: VerifyingKey) {
        if let Some(kid) = key.kid() {
            self.by_kid
                .entry(kid.to_owned())
                .or_default()
                .push(self.keys.len());
        }
        self.keys.push(Arc::new(key));
    }

    /// The usable keys.
    pub fn keys(&self) -> &[Arc<VerifyingKey>] {
        &self.keys
    }

    /// Why keys were skipped while loading (for logs).
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    /// Whether a key with this `kid` is present.
    pub fn contains_kid(&self, kid: &str) -> bool {
        self.by_kid.contains_key(kid)
    }

    /// The `kid`s present.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.by_kid.keys().map(String::as_str)
    }

    /// Selects the key(s) for a token header per the module's policy.
    pub fn select(&self, header: &Header) -> Result<KeySelection<'_>, JoseError> {
        let alg = header.alg();
        if let Some(kid) = header.kid() {
            let indexes = self
                .by_kid
                .get(kid)
                .ok_or_else(|| JoseError::UnknownKid(truncate(kid)))?;
            if let [only] = indexes.as_slice() {
                // The common case: one key per kid, no allocation.
                let key = self.keys[*only].as_ref();
                return if key.fits(alg) {
                    Ok(KeySelection::One(key))
                } else {
                    Err(JoseError::KeyAlgorithmMismatch {
                        kid: truncate(kid),
                        alg: alg.name(),
                    })
                };
            }
            let fitting: Vec<_> = indexes
                .iter()
                .map(|i| self.keys[*i].as_ref())
                .filter(|k| k.fits(alg))
                .collect();
            if fitting.is_empty() {
                return Err(JoseError::KeyAlgorithmMismatch {
                    kid: truncate(kid),
                    alg: alg.name(),
                });
            }
            return Self::bounded(fitting, alg);
        }
        Self::bounded(
            self.keys
                .iter()
                .map(Arc::as_ref)
                .filter(|k| k.fits(alg))
                .collect(),
            alg,
        )
    }

    fn bounded(
        fitting: Vec<&VerifyingKey>,
        alg: crate::jose::Algorithm,
    ) -> Result<KeySelection<'_>, JoseError> {
        match fitting.len() {
            0 => Err(JoseError::NoMatchingKey(alg.name())),
            1 => Ok(KeySelection::One(fitting[0])),
            n if n <= MAX_KIDLESS_CANDIDATES => Ok(KeySelection::Candidates(fitting)),
            n => Err(JoseError::AmbiguousKey(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::Algorithm;

    const P256_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    const P256_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

    fn ec(kid: &str) -> String {
        format!(r#"{{"kty":"EC","crv":"P-256","x":"{P256_X}","y":"{P256_Y}","kid":"{kid}"}}"#)
    }

    #[test]
    fn loads_skipping_unusable_keys() {
        let doc = format!(
            r#"{{"keys":[{},{{"kty":"RSA","use":"enc","n":"AQAB","e":"AQAB"}},7]}}"#,
            ec("a")
        );
        let set = JwkSet::from_json(doc.as_bytes()).unwrap();
        assert_eq!(set.keys().len(), 1);
        assert_eq!(set.skipped().len(), 2);
        assert!(JwkSet::from_json(br#"{"keys":[]}"#).is_err());
        assert!(JwkSet::from_json(br#"{"keys":{}}"#).is_err());
        assert!(JwkSet::from_json(br#"[]"#).is_err());
    }

    #[test]
    fn selection_policy() {
        let doc = format!(
            r#"{{"keys":[{},{},{},{},{}]}}"#,
            ec("a"),
            ec("b"),
            ec("b"),
            ec("c"),
            ec("d")
        );
        let set = JwkSet::from_json(doc.as_bytes()).unwrap();
        let h = |kid: Option<&str>, alg| Header::new(alg, kid.map(str::to_owned), None);
        assert!(matches!(
            set.select(&h(Some("a"), Algorithm::ES256)),
            Ok(KeySelection::One(_))
        ));
        assert!(
            matches!(set.select(&h(Some("b"), Algorithm::ES256)), Ok(KeySelection::Candidates(c)) if c.len() == 2)
        );
        assert!(matches!(
            set.select(&h(Some("z"), Algorithm::ES256)),
            Err(JoseError::UnknownKid(_))
        ));
        assert!(matches!(
            set.select(&h(Some("a"), Algorithm::RS256)),
            Err(JoseError::KeyAlgorithmMismatch { .. })
        ));
        assert!(matches!(
            set.select(&h(None, Algorithm::ES256)),
            Err(JoseError::AmbiguousKey(5))
        ));
        assert!(matches!(
            set.select(&h(None, Algorithm::ES384)),
            Err(JoseError::NoMatchingKey(_))
        ));
    }
}
