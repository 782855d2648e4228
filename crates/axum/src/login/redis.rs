//! The Redis session store (DESIGN §2): the cookie carries only a sealed ticket — a 16-byte
//! session id and a 32-byte key — and Redis holds the session encrypted with that key
//! (AES-256-GCM, the id as associated data), so Redis alone reveals no tokens or profiles.
//! Keys: `{prefix}session:{id}` with a TTL of the remaining session age, `{prefix}refresh-lease:{id}`
//! (one replica refreshes a session's tokens at a time), and index sets
//! `{prefix}idx-sid:{idp sid}` / `{prefix}idx-sub:{sub}` (sorted by start time) so a back-channel
//! logout can end every session of an IdP session, or a user's sessions that started before it. A bounded in-process cache keeps decoded sessions for
//! `SESSION_CACHE_TTL` (other replicas see a logout within it).
//!
//! With the cookie store, the same connection holds the server state that replicas share
//! (DESIGN §2): the revocation list `{prefix}revoked:{id|sid|sub}:{hex}` (checked on every
//! request, cached for `SESSION_CACHE_TTL`), refresh leases, and refresh results
//! `{prefix}refresh-result:{hex SHA-256(old refresh token)}`, encrypted with a key derived from
//! the old refresh token, so only a holder of that token can read the new ones.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{AES_256_GCM, Aad, Nonce, RandomizedNonceKey};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use super::session::SessionData;

/// The store could not be reached or answered nonsense (requests get 503, never another
/// user's session).
#[derive(Debug, thiserror::Error)]
#[error("session store: {0}")]
pub struct StoreError(pub String);

const ID_LEN: usize = 16;
const KEY_LEN: usize = 32;
/// Ticket = id ‖ key.
pub const TICKET_LEN: usize = ID_LEN + KEY_LEN;
const MAX_CACHED: usize = 10_000;

/// Decoded sessions by id, with the time they were read from Redis and the ticket key that
/// opened them (a cache hit needs the same key, as a Redis read would).
type Cache = HashMap<[u8; ID_LEN], (Instant, [u8; KEY_LEN], Arc<SessionData>)>;

/// Revocation answers by session id, with the time they were read.
type RevokedCache = HashMap<String, (Instant, bool)>;

/// What a revocation entry names.
#[derive(Debug, Clone, Copy)]
pub enum RevokedKind {
    /// One session (its id), ended by `/logout` or a refused refresh.
    Session,
    /// Every session of an IdP session (`sid`), by back-channel logout.
    IdpSession,
    /// Every session of a user (`sub`) that started before the given time.
    Subject,
}

impl RevokedKind {
    fn tag(self) -> &'static str {
        match self {
            Self::Session => "id",
            Self::IdpSession => "sid",
            Self::Subject => "sub",
        }
    }
}

/// A held refresh lease (`{prefix}refresh-lease:{id}`), released with
/// [`RedisSessions::release`] or by its expiry.
pub struct RefreshLease {
    key: String,
    token: String,
}

/// Sessions in Redis.
pub struct RedisSessions {
    manager: ConnectionManager,
    prefix: String,
    cache_ttl: Duration,
    cache: Mutex<Cache>,
    revoked_cache: Mutex<RevokedCache>,
    /// Failed Redis operations since start (for `/metrics`).
    errors: AtomicU64,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn store_err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

impl RedisSessions {
    /// Connects (the manager reconnects by itself after Redis restarts).
    pub async fn connect(url: &str, prefix: &str, cache_ttl: Duration) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(store_err)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(Duration::from_secs(2))
            .set_number_of_retries(1);
        let manager = tokio::time::timeout(
            Duration::from_secs(5),
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| StoreError("timed out connecting to Redis".into()))?
        .map_err(store_err)?;
        Ok(Self {
            manager,
            prefix: prefix.to_owned(),
            cache_ttl,
            cache: Mutex::new(HashMap::new()),
            revoked_cache: Mutex::new(HashMap::new()),
            errors: AtomicU64::new(0),
        })
    }

    /// Failed Redis operations since start.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    fn failed(&self, e: redis::RedisError) -> StoreError {
        self.errors.fetch_add(1, Ordering::Relaxed);
        store_err(e)
    }

    fn key(&self, id: &[u8]) -> String {
        format!("{}session:{}", self.prefix, hex(id))
    }

    /// Whether Redis answers (readiness).
    pub async fn ping(&self) -> bool {
        let mut conn = self.manager.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .is_ok()
    }

    /// The stored form of a session: nonce ‖ AES-256-GCM(ticket key, JSON), AAD = id.
    fn seal(ticket: &[u8], data: &SessionData) -> Result<Vec<u8>, StoreError> {
        let (id, key) = ticket.split_at(ID_LEN);
        let sealing =
            RandomizedNonceKey::new(&AES_256_GCM, key).map_err(|_| StoreError("bad key".into()))?;
        let mut value = serde_json::to_vec(data).map_err(store_err)?;
        let nonce = sealing
            .seal_in_place_append_tag(Aad::from(id), &mut value)
            .map_err(|_| StoreError("seal failed".into()))?;
        let mut stored = nonce.as_ref().to_vec();
        stored.extend_from_slice(&value);
        Ok(stored)
    }

    /// Stores a new session; returns the ticket for the cookie.
    pub async fn save(&self, data: &SessionData) -> Result<[u8; TICKET_LEN], StoreError> {
        let mut ticket = [0u8; TICKET_LEN];
        aws_lc_rs::rand::fill(&mut ticket).map_err(|_| StoreError("no randomness".into()))?;
        let id = &ticket[..ID_LEN];
        let stored = Self::seal(&ticket, data)?;
        let ttl = u64::try_from(data.expires_at - now()).unwrap_or(1).max(1);
        let mut conn = self.manager.clone();
        let key = self.key(id);
        let mut pipe = redis::pipe();
        pipe.atomic().set_ex(&key, stored, ttl);
        // Sorted by start time; members whose sessions have surely expired are dropped as new
        // ones come in, so a user who signs in every day does not grow the index forever.
        let max_age = data.expires_at.saturating_sub(data.created_at);
        for index in self.indexes(data) {
            pipe.zadd(&index, &key, data.created_at)
                .zrembyscore(
                    &index,
                    "-inf",
                    format!("({}", now().saturating_sub(max_age)),
                )
                .expire(&index, i64::try_from(ttl).unwrap_or(i64::MAX));
        }
        pipe.query_async::<()>(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(ticket)
    }

    fn indexes(&self, data: &SessionData) -> Vec<String> {
        let mut out = vec![self.sub_index(&data.sub)];
        if let Some(sid) = &data.idp_sid {
            out.push(self.sid_index(sid));
        }
        out
    }

    fn sub_index(&self, sub: &str) -> String {
        format!("{}idx-sub:{}", self.prefix, hex(sub.as_bytes()))
    }

    fn sid_index(&self, sid: &str) -> String {
        format!("{}idx-sid:{}", self.prefix, hex(sid.as_bytes()))
    }

    /// The session of a ticket: `Ok(None)` when it ended or never existed.
    pub async fn load(&self, ticket: &[u8]) -> Result<Option<Arc<SessionData>>, StoreError> {
        self.read(ticket, true).await
    }

    /// Like [`Self::load`], but always from Redis (a refresh must see another replica's
    /// write, not this process's cached copy).
    pub async fn load_fresh(&self, ticket: &[u8]) -> Result<Option<Arc<SessionData>>, StoreError> {
        self.read(ticket, false).await
    }

    async fn read(
        &self,
        ticket: &[u8],
        use_cache: bool,
    ) -> Result<Option<Arc<SessionData>>, StoreError> {
        if ticket.len() != TICKET_LEN {
            return Ok(None);
        }
        let (id, key) = ticket.split_at(ID_LEN);
        let mut id_arr = [0u8; ID_LEN];
        id_arr.copy_from_slice(id);
        if use_cache
            && !self.cache_ttl.is_zero()
            && let Some((at, cached_key, data)) = self
                .cache
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&id_arr)
            && at.elapsed() < self.cache_ttl
            && aws_lc_rs::constant_time::verify_slices_are_equal(cached_key, key).is_ok()
        {
            return Ok(Some(data.clone()));
        }
        let mut conn = self.manager.clone();
        let stored: Option<Vec<u8>> = conn.get(self.key(id)).await.map_err(|e| self.failed(e))?;
        let Some(mut stored) = stored else {
            return Ok(None);
        };
        if stored.len() < 12 + 16 {
            return Ok(None);
        }
        let opening =
            RandomizedNonceKey::new(&AES_256_GCM, key).map_err(|_| StoreError("bad key".into()))?;
        let mut sealed = stored.split_off(12);
        let Ok(nonce) = Nonce::try_assume_unique_for_key(&stored) else {
            return Ok(None);
        };
        // A wrong key (a forged or stale ticket) opens nothing: no session, never another's.
        let Ok(plain) = opening.open_in_place(nonce, Aad::from(id), &mut sealed) else {
            return Ok(None);
        };
        let Ok(data) = serde_json::from_slice::<SessionData>(plain) else {
            return Ok(None);
        };
        let data = Arc::new(data);
        self.remember(ticket, &data);
        Ok(Some(data))
    }

    fn remember(&self, ticket: &[u8], data: &Arc<SessionData>) {
        if self.cache_ttl.is_zero() || ticket.len() != TICKET_LEN {
            return;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_CACHED {
            let ttl = self.cache_ttl;
            cache.retain(|_, (at, _, _)| at.elapsed() < ttl);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
        }
        let mut id_arr = [0u8; ID_LEN];
        id_arr.copy_from_slice(&ticket[..ID_LEN]);
        let mut key_arr = [0u8; KEY_LEN];
        key_arr.copy_from_slice(&ticket[ID_LEN..]);
        cache.insert(id_arr, (Instant::now(), key_arr, data.clone()));
    }

    /// Replaces the session of a ticket in place (after a refresh), keeping its TTL; the
    /// ticket, and so the cookie, stay the same. `Ok(false)` when the session has ended.
    pub async fn update(&self, ticket: &[u8], data: &Arc<SessionData>) -> Result<bool, StoreError> {
        if ticket.len() != TICKET_LEN {
            return Ok(false);
        }
        let stored = Self::seal(ticket, data)?;
        let mut conn = self.manager.clone();
        let written: Option<String> = redis::cmd("SET")
            .arg(self.key(&ticket[..ID_LEN]))
            .arg(stored)
            .arg("XX")
            .arg("KEEPTTL")
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        if written.is_some() {
            self.remember(ticket, data);
        }
        Ok(written.is_some())
    }

    /// Takes the cross-replica refresh lease of a session (`SET NX PX`): `Ok(None)` when
    /// another process holds it.
    /// `of` names the session: its ticket id (Redis store) or its session id (cookie store).
    pub async fn try_lease(
        &self,
        of: &[u8],
        hold: Duration,
    ) -> Result<Option<RefreshLease>, StoreError> {
        let mut token = [0u8; 16];
        aws_lc_rs::rand::fill(&mut token).map_err(|_| StoreError("no randomness".into()))?;
        let lease = RefreshLease {
            key: format!("{}refresh-lease:{}", self.prefix, hex(of)),
            token: hex(&token),
        };
        let mut conn = self.manager.clone();
        let taken: Option<String> = redis::cmd("SET")
            .arg(&lease.key)
            .arg(&lease.token)
            .arg("NX")
            .arg("PX")
            .arg(u64::try_from(hold.as_millis()).unwrap_or(u64::MAX).max(1))
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(taken.map(|_| lease))
    }

    /// Whether some replica holds the refresh lease of `of`.
    pub async fn lease_held(&self, of: &[u8]) -> Result<bool, StoreError> {
        let mut conn = self.manager.clone();
        conn.exists(format!("{}refresh-lease:{}", self.prefix, hex(of)))
            .await
            .map_err(|e| self.failed(e))
    }

    /// Gives a lease back, unless it expired and someone else holds it now.
    pub async fn release(&self, lease: RefreshLease) -> Result<(), StoreError> {
        const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";
        let mut conn = self.manager.clone();
        redis::cmd("EVAL")
            .arg(RELEASE)
            .arg(1)
            .arg(&lease.key)
            .arg(&lease.token)
            .query_async::<i64>(&mut conn)
            .await
            .map(|_| ())
            .map_err(|e| self.failed(e))
    }

    /// Adds to the shared revocation list until `until` (unix seconds). For
    /// [`RevokedKind::Subject`], `before` is the time before which that user's sessions end.
    pub async fn revoke(
        &self,
        kind: RevokedKind,
        value: &str,
        before: i64,
        until: i64,
    ) -> Result<(), StoreError> {
        const KEEP_MAX: &str = "local cur = redis.call('GET', KEYS[1]) \
            if cur and tonumber(cur) and tonumber(cur) >= tonumber(ARGV[1]) then \
              if redis.call('TTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('EXPIRE', KEYS[1], ARGV[2]) end \
              return 0 end \
            redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) return 1";
        let ttl = u64::try_from(until - now()).unwrap_or(1).max(1);
        let mut conn = self.manager.clone();
        // The latest cut-off wins: a late or retried logout token with an earlier `iat` never
        // lowers it (which would make sessions started in between valid again).
        redis::cmd("EVAL")
            .arg(KEEP_MAX)
            .arg(1)
            .arg(self.revoked_key(kind, value))
            .arg(before)
            .arg(ttl)
            .query_async::<i64>(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        self.revoked_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        Ok(())
    }

    fn revoked_key(&self, kind: RevokedKind, value: &str) -> String {
        format!(
            "{}revoked:{}:{}",
            self.prefix,
            kind.tag(),
            hex(value.as_bytes())
        )
    }

    /// Whether the shared revocation list ends `session` (one round trip for its id, IdP
    /// session and user; answers cached for `SESSION_CACHE_TTL`).
    pub async fn is_revoked(&self, session: &SessionData) -> Result<bool, StoreError> {
        if !self.cache_ttl.is_zero()
            && let Some((at, revoked)) = self
                .revoked_cache
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&session.id)
            && at.elapsed() < self.cache_ttl
        {
            return Ok(*revoked);
        }
        let mut keys = vec![
            self.revoked_key(RevokedKind::Session, &session.id),
            self.revoked_key(RevokedKind::Subject, &session.sub),
        ];
        if let Some(sid) = &session.idp_sid {
            keys.push(self.revoked_key(RevokedKind::IdpSession, sid));
        }
        let mut conn = self.manager.clone();
        let found: Vec<Option<i64>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        let revoked = found.first().is_some_and(Option::is_some)
            || found
                .get(1)
                .copied()
                .flatten()
                .is_some_and(|before| session.created_at <= before)
            || found.get(2).is_some_and(Option::is_some);
        if !self.cache_ttl.is_zero() {
            let mut cache = self.revoked_cache.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
            cache.insert(session.id.clone(), (Instant::now(), revoked));
        }
        Ok(revoked)
    }

    /// Publishes a refresh result for replicas that still hold `old_refresh_token`, for
    /// `ttl`; sealed with a key derived from that token.
    pub async fn put_refresh_result(
        &self,
        old_refresh_token: &str,
        result: &[u8],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let (name, key) = self.result_key(old_refresh_token)?;
        let sealing = RandomizedNonceKey::new(&AES_256_GCM, &key)
            .map_err(|_| StoreError("bad key".into()))?;
        let mut value = result.to_vec();
        let nonce = sealing
            .seal_in_place_append_tag(Aad::from(name.as_bytes()), &mut value)
            .map_err(|_| StoreError("seal failed".into()))?;
        let mut stored = nonce.as_ref().to_vec();
        stored.extend_from_slice(&value);
        let mut conn = self.manager.clone();
        conn.set_ex::<_, _, ()>(&name, stored, ttl.as_secs().max(1))
            .await
            .map_err(|e| self.failed(e))
    }

    /// The refresh result another replica published for `old_refresh_token`, if any.
    pub async fn refresh_result(
        &self,
        old_refresh_token: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let (name, key) = self.result_key(old_refresh_token)?;
        let mut conn = self.manager.clone();
        let stored: Option<Vec<u8>> = conn.get(&name).await.map_err(|e| self.failed(e))?;
        let Some(mut stored) = stored.filter(|s| s.len() >= 12 + 16) else {
            return Ok(None);
        };
        let opening = RandomizedNonceKey::new(&AES_256_GCM, &key)
            .map_err(|_| StoreError("bad key".into()))?;
        let mut sealed = stored.split_off(12);
        let Ok(nonce) = Nonce::try_assume_unique_for_key(&stored) else {
            return Ok(None);
        };
        Ok(opening
            .open_in_place(nonce, Aad::from(name.as_bytes()), &mut sealed)
            .ok()
            .map(|plain| plain.to_vec()))
    }

    /// The Redis key (SHA-256 of the token) and the AES key (HKDF of the token) of a result.
    fn result_key(&self, old_refresh_token: &str) -> Result<(String, [u8; 32]), StoreError> {
        use aws_lc_rs::hkdf;
        let digest =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, old_refresh_token.as_bytes());
        let name = format!("{}refresh-result:{}", self.prefix, hex(digest.as_ref()));
        let mut key = [0u8; 32];
        hkdf::Salt::new(hkdf::HKDF_SHA256, b"oidcgate")
            .extract(old_refresh_token.as_bytes())
            .expand(&[b"refresh-result-v1"], hkdf::HKDF_SHA256)
            .and_then(|okm| okm.fill(&mut key))
            .map_err(|_| StoreError("key derivation failed".into()))?;
        Ok((name, key))
    }

    /// Ends the session of a ticket.
    pub async fn delete(&self, ticket: &[u8]) -> Result<(), StoreError> {
        if ticket.len() != TICKET_LEN {
            return Ok(());
        }
        let id = &ticket[..ID_LEN];
        let mut id_arr = [0u8; ID_LEN];
        id_arr.copy_from_slice(id);
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id_arr);
        let mut conn = self.manager.clone();
        conn.del::<_, ()>(self.key(id))
            .await
            .map_err(|e| self.failed(e))
    }

    /// Ends every session of an IdP `sid`, or else every session of a `sub` that started at
    /// or before `before` (a back-channel logout token's `iat`: a later sign-in survives it).
    pub async fn delete_indexed(
        &self,
        sid: Option<&str>,
        sub: Option<&str>,
        before: i64,
    ) -> Result<(), StoreError> {
        let (index, upto) = match (sid, sub) {
            (Some(sid), _) => (self.sid_index(sid), "+inf".to_owned()),
            (None, Some(sub)) => (self.sub_index(sub), before.to_string()),
            (None, None) => return Ok(()),
        };
        let mut conn = self.manager.clone();
        let keys: Vec<String> = conn
            .zrangebyscore(&index, "-inf", &upto)
            .await
            .map_err(|e| self.failed(e))?;
        if !keys.is_empty() {
            // Only these members leave the index: a session saved meanwhile stays indexed.
            let mut pipe = redis::pipe();
            pipe.atomic().del(&keys).zrem(&index, &keys);
            pipe.query_async::<()>(&mut conn)
                .await
                .map_err(|e| self.failed(e))?;
        }
        // Cached copies die within SESSION_CACHE_TTL; the local ones now.
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).clear();
        Ok(())
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
