//! The validated-token cache (DESIGN §2): a verified token's claims, keyed by the exact token
//! string, kept until `min(exp, now + ttl)` in a bounded cache with LRU-like eviction
//! (quick_cache's CLOCK-Pro). Only successes are cached, so attackers cannot fill it with junk
//! without valid tokens, and expiry is re-checked on every hit.

use std::sync::Arc;
use std::time::Duration;

use quick_cache::sync::Cache;

use super::claims::VerifiedClaims;

/// Size and lifetime bounds.
#[derive(Debug, Clone, Copy)]
pub struct TokenCacheConfig {
    /// Most entries kept (`TOKEN_CACHE_ENTRIES`).
    pub max_entries: usize,
    /// Longest an entry is trusted without re-verification.
    pub ttl: Duration,
}

impl Default for TokenCacheConfig {
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            ttl: Duration::from_secs(300),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Entry {
    pub claims: Arc<VerifiedClaims>,
    /// Unix seconds after which the entry is a miss.
    pub valid_until: i64,
    /// Which issuer (index in the validator) and that key cache's removal epoch at insert.
    pub issuer_index: usize,
    pub epoch: u64,
}

pub(crate) struct TokenCache {
    cache: Cache<String, Entry>,
    ttl_secs: i64,
}

impl TokenCache {
    pub(crate) fn new(config: TokenCacheConfig) -> Self {
        Self {
            cache: Cache::new(config.max_entries.max(1)),
            ttl_secs: i64::try_from(config.ttl.as_secs()).unwrap_or(i64::MAX),
        }
    }

    pub(crate) fn get(&self, token: &str, now: i64) -> Option<Entry> {
        let entry = self.cache.get(token)?;
        if now >= entry.valid_until {
            self.cache.remove(token);
            return None;
        }
        Some(entry)
    }

    pub(crate) fn insert(
        &self,
        token: &str,
        claims: Arc<VerifiedClaims>,
        expires: i64,
        now: i64,
        issuer_index: usize,
        epoch: u64,
    ) {
        let valid_until = expires.min(now.saturating_add(self.ttl_secs));
        if valid_until > now {
            self.cache.insert(
                token.to_owned(),
                Entry {
                    claims,
                    valid_until,
                    issuer_index,
                    epoch,
                },
            );
        }
    }

    pub(crate) fn remove(&self, token: &str) {
        self.cache.remove(token);
    }

    pub(crate) fn len(&self) -> usize {
        self.cache.len()
    }
}
