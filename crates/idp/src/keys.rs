//! The IdP's signing keys: one per algorithm it offers (RS256 by default for ID tokens and
//! access tokens, ES256 and EdDSA per client), published in the JWKS.

use std::sync::Arc;

use oidcgate_core::jose::sign::SigningKey;
use oidcgate_core::jose::{Algorithm, JoseError, JwkSet};
use serde_json::{Value, json};

/// The current signing keys.
#[derive(Debug)]
pub struct KeyRing {
    keys: Vec<Arc<SigningKey>>,
    verify: JwkSet,
    jwks: Value,
}

impl KeyRing {
    /// Fresh RS256, ES256 and EdDSA keys.
    pub fn generate() -> Result<Self, JoseError> {
        let keys = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA]
            .into_iter()
            .map(|alg| SigningKey::generate(alg).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::from_keys(keys))
    }

    /// A ring of given keys (the first of each algorithm signs).
    pub fn from_keys(keys: Vec<Arc<SigningKey>>) -> Self {
        let jwks = json!({"keys": keys.iter().filter_map(|k| k.public_jwk()).collect::<Vec<_>>()});
        let verify = JwkSet::from_keys(keys.iter().filter_map(|k| k.verifying_key()));
        Self { keys, verify, jwks }
    }

    /// The key that signs with `alg`.
    pub fn signer(&self, alg: Algorithm) -> Option<&SigningKey> {
        self.keys.iter().find(|k| k.alg() == alg).map(Arc::as_ref)
    }

    /// The public JWK Set document.
    pub fn jwks(&self) -> &Value {
        &self.jwks
    }

    /// The keys the IdP verifies its own tokens with.
    pub fn verification_keys(&self) -> &JwkSet {
        &self.verify
    }
}
