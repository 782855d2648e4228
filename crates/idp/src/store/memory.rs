//! The in-memory [`Store`]: one mutex over hash maps, bounded, pruned of expired entries every
//! 1,024 operations. Nothing survives a restart.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{
    AfterLogin, CodeGrant, DeviceGrant, IdpSession, RefreshRecord, RefreshState, Store, Timestamp,
    TokenHash,
};

#[derive(Default)]
struct Inner {
    codes: HashMap<TokenHash, CodeGrant>,
    refresh: HashMap<TokenHash, RefreshRecord>,
    family_jtis: HashMap<String, Vec<(String, Timestamp)>>,
    /// Revoked families (tombstones), so tokens a racing request adds later are born revoked.
    revoked_families: HashMap<String, Timestamp>,
    revoked_jtis: HashMap<String, Timestamp>,
    sessions: HashMap<TokenHash, IdpSession>,
    pending: HashMap<String, AfterLogin>,
    devices: HashMap<TokenHash, DeviceGrant>,
    failures: HashMap<String, Vec<Timestamp>>,
    ops: u64,
}

/// Largest number of pending authorization requests kept (oldest expire first).
pub(crate) const MAX_PENDING: usize = 10_000;

/// Largest number of (username, address) failed-login counters kept.
const MAX_FAILURE_KEYS: usize = 100_000;

/// In-memory [`Store`].
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.ops += 1;
        if inner.ops.is_multiple_of(1024) {
            prune(&mut inner, now());
        }
        f(&mut inner)
    }
}

pub(crate) fn now() -> Timestamp {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn prune(inner: &mut Inner, now: Timestamp) {
    inner.codes.retain(|_, c| c.expires_at + 3600 > now);
    inner.refresh.retain(|_, r| r.expires_at > now);
    inner.revoked_jtis.retain(|_, exp| *exp > now);
    inner.revoked_families.retain(|_, until| *until > now);
    inner.sessions.retain(|_, s| s.expires_at > now);
    inner.pending.retain(|_, p| p.expires_at() > now);
    inner.devices.retain(|_, d| d.expires_at > now);
    inner
        .failures
        .retain(|_, f| f.iter().any(|t| *t + 3600 > now));
    for jtis in inner.family_jtis.values_mut() {
        jtis.retain(|(_, exp)| *exp > now);
    }
    inner.family_jtis.retain(|_, j| !j.is_empty());
}

impl Store for MemoryStore {
    fn put_code(&self, hash: TokenHash, grant: CodeGrant) {
        self.with(|i| i.codes.insert(hash, grant));
    }

    fn code(&self, hash: &TokenHash) -> Option<CodeGrant> {
        self.with(|i| i.codes.get(hash).cloned())
    }

    fn mark_code_compromised(&self, hash: &TokenHash) {
        self.with(|i| {
            if let Some(c) = i.codes.get_mut(hash) {
                c.compromised = true;
            }
        });
    }

    fn use_code(&self, hash: &TokenHash) -> Option<CodeGrant> {
        self.with(|i| {
            let grant = i.codes.get_mut(hash)?;
            let before = grant.clone();
            grant.used = true;
            Some(before)
        })
    }

    fn record_code_issue(
        &self,
        hash: &TokenHash,
        family: Option<String>,
        jtis: Vec<(String, Timestamp)>,
    ) -> bool {
        self.with(|i| match i.codes.get_mut(hash) {
            Some(grant) if !grant.compromised => {
                grant.issued_family = family;
                grant.issued_jtis = jtis;
                true
            }
            _ => false,
        })
    }

    fn put_refresh(&self, hash: TokenHash, mut record: RefreshRecord) {
        self.with(|i| {
            if i.revoked_families.contains_key(&record.family) {
                record.state = RefreshState::Revoked;
            }
            i.refresh.insert(hash, record)
        });
    }

    fn refresh(&self, hash: &TokenHash) -> Option<RefreshRecord> {
        self.with(|i| i.refresh.get(hash).cloned())
    }

    fn rotate_refresh(&self, hash: &TokenHash) -> bool {
        self.with(|i| match i.refresh.get_mut(hash) {
            Some(r) if r.state == RefreshState::Active => {
                r.state = RefreshState::Rotated;
                true
            }
            _ => false,
        })
    }

    fn revoke_family(&self, family: &str) {
        self.with(|i| {
            // Kept as long as any refresh token of the family could live.
            i.revoked_families
                .insert(family.to_owned(), now() + 31 * 86_400);
            for r in i.refresh.values_mut().filter(|r| r.family == family) {
                r.state = RefreshState::Revoked;
            }
            if let Some(jtis) = i.family_jtis.remove(family) {
                for (jti, exp) in jtis {
                    i.revoked_jtis.insert(jti, exp);
                }
            }
        });
    }

    fn revoke_for_subject(&self, sub: &str, client_id: Option<&str>) {
        let families: Vec<String> = self.with(|i| {
            i.refresh
                .values()
                .filter(|r| r.sub == sub && client_id.is_none_or(|c| r.client_id == c))
                .map(|r| r.family.clone())
                .collect()
        });
        for family in families {
            self.revoke_family(&family);
        }
    }

    fn revoke_for_session(&self, sid: &str) {
        let families: Vec<String> = self.with(|i| {
            i.refresh
                .values()
                .filter(|r| r.sid == sid && !super::is_offline(&r.scope))
                .map(|r| r.family.clone())
                .collect()
        });
        for family in families {
            self.revoke_family(&family);
        }
    }

    fn record_family_jti(&self, family: &str, jti: String, exp: Timestamp) {
        self.with(|i| {
            if i.revoked_families.contains_key(family) {
                i.revoked_jtis.insert(jti, exp);
            } else {
                i.family_jtis
                    .entry(family.to_owned())
                    .or_default()
                    .push((jti, exp));
            }
        });
    }

    fn revoke_jti(&self, jti: &str, exp: Timestamp) {
        self.with(|i| i.revoked_jtis.insert(jti.to_owned(), exp));
    }

    fn is_jti_revoked(&self, jti: &str) -> bool {
        self.with(|i| i.revoked_jtis.contains_key(jti))
    }

    fn put_session(&self, key: TokenHash, session: IdpSession) {
        self.with(|i| i.sessions.insert(key, session));
    }

    fn session(&self, key: &TokenHash) -> Option<IdpSession> {
        let now = now();
        self.with(|i| i.sessions.get(key).filter(|s| s.expires_at > now).cloned())
    }

    fn end_session(&self, key: &TokenHash) -> Option<IdpSession> {
        self.with(|i| i.sessions.remove(key))
    }

    fn add_session_client(&self, sid: &str, client_id: &str) {
        self.with(|i| {
            if let Some(s) = i.sessions.values_mut().find(|s| s.sid == sid)
                && !s.clients.iter().any(|c| c == client_id)
            {
                s.clients.push(client_id.to_owned());
            }
        });
    }

    fn add_session_consent(&self, key: &TokenHash, client_id: &str, scope: &str) {
        self.with(|i| {
            if let Some(s) = i.sessions.get_mut(key) {
                for one in scope.split(' ').filter(|x| !x.is_empty()) {
                    let entry = (client_id.to_owned(), one.to_owned());
                    if !s.consents.contains(&entry) {
                        s.consents.push(entry);
                    }
                }
            }
        });
    }

    fn put_pending(&self, id: String, pending: AfterLogin) {
        self.with(|i| {
            if i.pending.len() >= MAX_PENDING {
                prune(i, now());
                // Still full: drop the request closest to expiry.
                if i.pending.len() >= MAX_PENDING
                    && let Some(oldest) = i
                        .pending
                        .iter()
                        .min_by_key(|(_, p)| p.expires_at())
                        .map(|(k, _)| k.clone())
                {
                    i.pending.remove(&oldest);
                }
            }
            i.pending.insert(id, pending);
        });
    }

    fn take_pending(&self, id: &str) -> Option<AfterLogin> {
        let now = now();
        self.with(|i| i.pending.remove(id).filter(|p| p.expires_at() > now))
    }

    fn pending(&self, id: &str) -> Option<AfterLogin> {
        let now = now();
        self.with(|i| i.pending.get(id).filter(|p| p.expires_at() > now).cloned())
    }

    fn put_device(&self, hash: TokenHash, grant: DeviceGrant) -> bool {
        self.with(|i| {
            if i.devices.len() >= MAX_PENDING {
                prune(i, now());
            }
            if i.devices.len() >= MAX_PENDING {
                return false;
            }
            i.devices.insert(hash, grant);
            true
        })
    }

    fn device(&self, hash: &TokenHash) -> Option<DeviceGrant> {
        self.with(|i| i.devices.get(hash).cloned())
    }

    fn device_by_user_code(&self, user_code: &str) -> Option<(TokenHash, DeviceGrant)> {
        let now = now();
        self.with(|i| {
            i.devices
                .iter()
                .find(|(_, d)| d.user_code == user_code && d.expires_at > now)
                .map(|(h, d)| (*h, d.clone()))
        })
    }

    fn update_device(&self, hash: &TokenHash, update: &mut dyn FnMut(&mut DeviceGrant)) {
        self.with(|i| {
            if let Some(d) = i.devices.get_mut(hash) {
                update(d);
            }
        });
    }

    fn login_failed(&self, key: &str, now: Timestamp, window: i64) -> usize {
        self.with(|i| {
            // Every distinct username tried adds a counter: bound them so a spray of names
            // cannot grow memory without limit (the oldest counters go first).
            if i.failures.len() >= MAX_FAILURE_KEYS && !i.failures.contains_key(key) {
                i.failures
                    .retain(|_, f| f.iter().any(|t| *t + window > now));
                if i.failures.len() >= MAX_FAILURE_KEYS {
                    // Evict the older half at once: amortized, not a scan per new name.
                    let mut by_age: Vec<(Timestamp, String)> = i
                        .failures
                        .iter()
                        .map(|(k, f)| (f.last().copied().unwrap_or(0), k.clone()))
                        .collect();
                    by_age.sort_unstable();
                    for (_, k) in by_age.into_iter().take(MAX_FAILURE_KEYS / 2) {
                        i.failures.remove(&k);
                    }
                }
            }
            let f = i.failures.entry(key.to_owned()).or_default();
            f.retain(|t| *t + window > now);
            f.push(now);
            f.len()
        })
    }

    fn login_failures(&self, key: &str, now: Timestamp, window: i64) -> Vec<Timestamp> {
        self.with(|i| {
            i.failures
                .get(key)
                .map(|f| f.iter().copied().filter(|t| *t + window > now).collect())
                .unwrap_or_default()
        })
    }

    fn login_succeeded(&self, key: &str) {
        self.with(|i| i.failures.remove(key));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::{RefreshRecord, RefreshState, hash_token};

    fn record(family: &str, sub: &str, client: &str, sid: &str, scope: &str) -> RefreshRecord {
        RefreshRecord {
            family: family.into(),
            client_id: client.into(),
            sub: sub.into(),
            scope: scope.into(),
            sid: sid.into(),
            auth_time: 0,
            expires_at: now() + 60,
            state: RefreshState::Active,
        }
    }

    /// The revocation rules, shared by both stores' tests.
    pub(crate) fn check_revocations(store: &dyn Store) {
        store.put_refresh(
            hash_token("a1"),
            record("fa", "alice", "app", "s1", "openid"),
        );
        store.put_refresh(
            hash_token("a2"),
            record("fb", "alice", "other", "s1", "openid offline_access"),
        );
        store.put_refresh(hash_token("b1"), record("fc", "bob", "app", "s2", "openid"));
        store.record_family_jti("fa", "ja".into(), now() + 60);
        let state = |t: &str| store.refresh(&hash_token(t)).map(|r| r.state);
        store.revoke_for_session("s1");
        assert_eq!(
            state("a1"),
            Some(RefreshState::Revoked),
            "session family revoked"
        );
        assert!(store.is_jti_revoked("ja"), "with its access tokens");
        assert_eq!(
            state("a2"),
            Some(RefreshState::Active),
            "offline_access outlives the session"
        );
        store.revoke_for_subject("alice", Some("app"));
        assert_eq!(
            state("a2"),
            Some(RefreshState::Active),
            "other client untouched"
        );
        store.revoke_for_subject("alice", None);
        assert_eq!(state("a2"), Some(RefreshState::Revoked));
        assert_eq!(
            state("b1"),
            Some(RefreshState::Active),
            "other user untouched"
        );
    }

    #[test]
    fn revocation_rules() {
        check_revocations(&MemoryStore::default());
    }
}
