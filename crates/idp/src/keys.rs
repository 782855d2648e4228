//! The IdP's signing keys: one active key per algorithm it offers (RS256 by default, ES256 and
//! EdDSA per client), kept in the store when the store persists (SQLite), rotated without
//! downtime: `oidcgate idp rotate-keys` adds new keys and retires the old ones, which stay in the
//! JWKS for [`RETIRED_KEY_RETENTION`] so tokens they signed keep verifying; a running IdP picks
//! the change up on its next reload (every [`RELOAD_INTERVAL`]).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use oidcgate_core::jose::sign::SigningKey;
use oidcgate_core::jose::{Algorithm, JwkSet};
use serde_json::{Value, json};

use crate::store::{Store, StoreError, StoredKey, Timestamp};

/// The algorithms the IdP signs with.
pub const ALGORITHMS: [Algorithm; 3] = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

/// How long a retired key stays published: longer than any JWT the IdP issues lives (10 min).
pub const RETIRED_KEY_RETENTION: i64 = 3600;

/// How often a running IdP checks the store for rotated keys (DESIGN: within 60 s).
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(10);

/// One consistent set of keys.
#[derive(Debug)]
pub struct KeySnapshot {
    signers: Vec<Arc<SigningKey>>,
    verify: JwkSet,
    jwks: Value,
    version: i64,
    /// When the next retired key leaves the JWKS (the snapshot must be rebuilt then).
    next_expiry: Option<Timestamp>,
}

impl KeySnapshot {
    /// The keys the IdP verifies its own tokens with (active and recently retired).
    pub fn verification_keys(&self) -> &JwkSet {
        &self.verify
    }
}

/// The current keys, replaceable while the IdP runs.
#[derive(Debug)]
pub struct KeyRing {
    current: RwLock<Arc<KeySnapshot>>,
}

/// Why keys could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("key generation or loading failed: {0}")]
    Jose(#[from] oidcgate_core::jose::JoseError),
}

fn new_stored(alg: Algorithm, now: Timestamp) -> Result<(StoredKey, SigningKey), KeyError> {
    let key = SigningKey::generate(alg)?;
    let stored = StoredKey {
        kid: key.kid().to_owned(),
        alg: alg.name().to_owned(),
        pkcs8: key.to_pkcs8()?,
        created_at: now,
        retired_at: None,
    };
    Ok((stored, key))
}

fn parse_stored(k: &StoredKey) -> Option<SigningKey> {
    let alg = ALGORITHMS.into_iter().find(|a| a.name() == k.alg)?;
    SigningKey::from_pkcs8(alg, &k.pkcs8, Some(k.kid.clone())).ok()
}

/// Builds a snapshot: the newest unretired key per algorithm signs; keys retired less than
/// [`RETIRED_KEY_RETENTION`] ago are still published.
fn snapshot(keys: Vec<(StoredKey, SigningKey)>, now: Timestamp, version: i64) -> KeySnapshot {
    let next_expiry = keys
        .iter()
        .filter_map(|(s, _)| s.retired_at.map(|at| at + RETIRED_KEY_RETENTION))
        .filter(|until| *until > now)
        .min();
    let published: Vec<(StoredKey, Arc<SigningKey>)> = keys
        .into_iter()
        .filter(|(s, _)| {
            s.retired_at
                .is_none_or(|at| at + RETIRED_KEY_RETENTION > now)
        })
        .map(|(s, k)| (s, Arc::new(k)))
        .collect();
    let signers = ALGORITHMS
        .into_iter()
        .filter_map(|alg| {
            published
                .iter()
                .filter(|(s, _)| s.retired_at.is_none() && s.alg == alg.name())
                .max_by_key(|(s, _)| s.created_at)
                .map(|(_, k)| k.clone())
        })
        .collect();
    let jwks =
        json!({"keys": published.iter().filter_map(|(_, k)| k.public_jwk()).collect::<Vec<_>>()});
    let verify = JwkSet::from_keys(published.iter().filter_map(|(_, k)| k.verifying_key()));
    KeySnapshot {
        signers,
        verify,
        jwks,
        version,
        next_expiry,
    }
}

impl KeyRing {
    /// Loads the store's keys and creates (and stores) an active key for every algorithm that
    /// has none.
    pub fn load_or_create(store: &dyn Store, now: Timestamp) -> Result<Self, KeyError> {
        let version = store.keys_version()?;
        let mut keys: Vec<(StoredKey, SigningKey)> = store
            .load_keys()?
            .into_iter()
            .filter_map(|s| parse_stored(&s).map(|k| (s, k)))
            .collect();
        for alg in ALGORITHMS {
            if !keys
                .iter()
                .any(|(s, _)| s.alg == alg.name() && s.retired_at.is_none())
            {
                let (stored, key) = new_stored(alg, now)?;
                store.save_key(&stored)?;
                keys.push((stored, key));
            }
        }
        let version = if version == 0 {
            version
        } else {
            store.keys_version()?
        };
        Ok(Self {
            current: RwLock::new(Arc::new(snapshot(keys, now, version))),
        })
    }

    /// Fresh keys, not stored anywhere.
    pub fn generate() -> Result<Self, KeyError> {
        let now = crate::routes::now();
        let keys = ALGORITHMS
            .into_iter()
            .map(|alg| new_stored(alg, now))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            current: RwLock::new(Arc::new(snapshot(keys, now, 0))),
        })
    }

    /// Reloads from the store when its keys changed since the last load or a retired key's
    /// retention ended; true if the published keys were rebuilt.
    pub fn reload(&self, store: &dyn Store, now: Timestamp) -> Result<bool, KeyError> {
        let version = store.keys_version()?;
        let current = self.snapshot();
        // Rebuild when the stored keys changed, or when a retired key's retention ran out.
        if version == current.version && current.next_expiry.is_none_or(|at| now < at) {
            return Ok(false);
        }
        let keys = store
            .load_keys()?
            .into_iter()
            .filter_map(|s| parse_stored(&s).map(|k| (s, k)))
            .collect();
        let next = snapshot(keys, now, version);
        if next.signers.len() < ALGORITHMS.len() {
            return Err(KeyError::Store(StoreError(
                "the stored keys lack an active key for some algorithm".into(),
            )));
        }
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
        Ok(true)
    }

    /// Adds a new key per algorithm to the store and retires the previous ones.
    pub fn rotate(store: &dyn Store, now: Timestamp) -> Result<Vec<String>, KeyError> {
        let mut kids = Vec::new();
        for alg in ALGORITHMS {
            let (stored, _) = new_stored(alg, now)?;
            store.save_key(&stored)?;
            store.retire_keys(alg.name(), &stored.kid, now)?;
            kids.push(format!("{} {}", alg.name(), stored.kid));
        }
        Ok(kids)
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<KeySnapshot> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The key that signs with `alg`.
    pub fn signer(&self, alg: Algorithm) -> Option<Arc<SigningKey>> {
        self.snapshot()
            .signers
            .iter()
            .find(|k| k.alg() == alg)
            .cloned()
    }

    /// The public JWK Set document.
    pub fn jwks(&self) -> Value {
        self.snapshot().jwks.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    #[test]
    fn retired_keys_leave_the_jwks_after_their_retention() {
        let dir = std::env::temp_dir().join(format!("oidcgate-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = SqliteStore::open(dir.join("k.db").to_str().unwrap()).unwrap();
        let t0 = 1_000_000;
        let ring = KeyRing::load_or_create(&store, t0).unwrap();
        assert_eq!(ring.jwks()["keys"].as_array().unwrap().len(), 3);
        KeyRing::rotate(&store, t0 + 10).unwrap();
        assert!(ring.reload(&store, t0 + 20).unwrap());
        assert_eq!(
            ring.jwks()["keys"].as_array().unwrap().len(),
            6,
            "old keys still published"
        );
        assert!(!ring.reload(&store, t0 + 30).unwrap(), "nothing changed");
        assert!(
            ring.reload(&store, t0 + 10 + RETIRED_KEY_RETENTION)
                .unwrap(),
            "retention ended"
        );
        assert_eq!(
            ring.jwks()["keys"].as_array().unwrap().len(),
            3,
            "retired keys gone"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
