//! The per-issuer signing-key cache (DESIGN §2).
//!
//! - Keys come from the issuer's `jwks_uri`, found by discovery or configured explicitly.
//! - A loaded set is used until its refresh time (`Cache-Control: max-age` clamped to
//!   [`KeyCacheConfig::min_refresh`, `max_refresh`], `default_refresh` when absent); after that
//!   requests keep using it while one background task refreshes.
//! - An unknown `kid` triggers at most one refetch per `refetch_cooldown`; failed fetches are
//!   also retried at most once per cooldown, so an outage does not turn into a request storm.
//! - Every fetch is single-flight: all waiters share one HTTP exchange (a `tokio` mutex that
//!   the fetcher holds; waiters then see the new generation and do not fetch again).
//! - When the IdP is down, the last good keys are served for up to `max_stale`; an issuer whose
//!   keys never loaded answers [`KeyCacheError::Unavailable`] with a retry hint (HTTP 503).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use thiserror::Error;
use url::Url;

use super::cache_control;
use super::metadata::{DiscoveryError, ProviderMetadata};
use crate::clock::Clock;
use crate::http::{HttpClient, HttpRequest, UrlPolicy};
use crate::jose::JwkSet;

/// Where an issuer's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// OIDC discovery: `{issuer}/.well-known/openid-configuration` → `jwks_uri`.
    Discovery,
    /// A configured `jwks_uri` (seed 003's explicit endpoints); discovery is skipped.
    JwksUri(Url),
}

/// Timing and policy knobs, with DESIGN §2 defaults.
#[derive(Debug, Clone, Copy)]
pub struct KeyCacheConfig {
    pub min_refresh: Duration,
    pub max_refresh: Duration,
    pub default_refresh: Duration,
    pub refetch_cooldown: Duration,
    pub max_stale: Duration,
    pub url_policy: UrlPolicy,
}

impl Default for KeyCacheConfig {
    fn default() -> Self {
        Self {
            min_refresh: Duration::from_secs(5 * 60),
            max_refresh: Duration::from_secs(24 * 3600),
            default_refresh: Duration::from_secs(3600),
            refetch_cooldown: Duration::from_secs(5),
            max_stale: Duration::from_secs(24 * 3600),
            url_policy: UrlPolicy::default(),
        }
    }
}

/// Keys could not be provided.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyCacheError {
    #[error("signing keys of {issuer} are unavailable: {reason}")]
    Unavailable {
        issuer: String,
        reason: String,
        retry_after: Duration,
    },
}

impl KeyCacheError {
    /// How long a client should wait before retrying.
    pub fn retry_after(&self) -> Duration {
        match self {
            Self::Unavailable { retry_after, .. } => *retry_after,
        }
    }
}

/// One loaded key set.
#[derive(Debug)]
pub struct KeySnapshot {
    pub keys: JwkSet,
    pub fetched_at: SystemTime,
    pub refresh_at: SystemTime,
    /// Increases with every successful fetch.
    pub generation: u64,
}

/// Cheap-to-clone handle to one issuer's key cache.
#[derive(Clone)]
pub struct KeyCache {
    inner: Arc<Inner>,
}

struct Inner {
    issuer: String,
    source: KeySource,
    http: Arc<dyn HttpClient>,
    clock: Arc<dyn Clock>,
    config: KeyCacheConfig,
    current: RwLock<Option<Arc<KeySnapshot>>>,
    fetch: tokio::sync::Mutex<FetchState>,
    refreshing: AtomicBool,
    jwks_fetches: AtomicU64,
    discovery_fetches: AtomicU64,
    removal_epoch: AtomicU64,
}

#[derive(Default)]
struct FetchState {
    jwks_uri: Option<Url>,
    metadata: Option<Arc<ProviderMetadata>>,
    last_attempt: Option<SystemTime>,
    last_error: Option<String>,
}

impl fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyCache")
            .field("issuer", &self.inner.issuer)
            .field("source", &self.inner.source)
            .finish_non_exhaustive()
    }
}

/// Why one fetch failed (internal; surfaced as text in errors and logs).
#[derive(Debug, Error)]
enum FetchError {
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    #[error("JWKS at {url}: {reason}")]
    Jwks { url: String, reason: String },
}

impl KeyCache {
    /// A cache for `issuer`. Nothing is fetched until the first use (or [`Self::warm_up`]).
    pub fn new(
        issuer: impl Into<String>,
        source: KeySource,
        http: Arc<dyn HttpClient>,
        clock: Arc<dyn Clock>,
        config: KeyCacheConfig,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                issuer: issuer.into(),
                source,
                http,
                clock,
                config,
                current: RwLock::new(None),
                fetch: tokio::sync::Mutex::new(FetchState::default()),
                refreshing: AtomicBool::new(false),
                jwks_fetches: AtomicU64::new(0),
                discovery_fetches: AtomicU64::new(0),
                removal_epoch: AtomicU64::new(0),
            }),
        }
    }

    /// The issuer this cache serves.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// JWKS fetch attempts so far (metrics, tests).
    pub fn jwks_fetches(&self) -> u64 {
        self.inner.jwks_fetches.load(Ordering::Relaxed)
    }

    /// Discovery fetch attempts so far.
    pub fn discovery_fetches(&self) -> u64 {
        self.inner.discovery_fetches.load(Ordering::Relaxed)
    }

    /// Increases whenever a refresh drops a `kid` that was present, so caches of results
    /// verified with a withdrawn key can tell they are outdated.
    pub fn removal_epoch(&self) -> u64 {
        self.inner.removal_epoch.load(Ordering::Acquire)
    }

    /// The current snapshot, whatever its age.
    pub fn current(&self) -> Option<Arc<KeySnapshot>> {
        self.inner
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// True when keys are loaded and not older than `max_stale` (readiness).
    pub fn is_ready(&self) -> bool {
        self.current()
            .is_some_and(|s| self.usable(&s, self.inner.clock.now()))
    }

    /// The discovery metadata, once discovery has run (None with an explicit `jwks_uri`).
    pub async fn metadata(&self) -> Option<Arc<ProviderMetadata>> {
        self.inner.fetch.lock().await.metadata.clone()
    }

    /// The last fetch error, if the last attempt failed.
    pub async fn last_error(&self) -> Option<String> {
        self.inner.fetch.lock().await.last_error.clone()
    }

    /// Loads keys now (at start-up); errors are returned but the cache stays usable and retries
    /// on demand.
    pub async fn warm_up(&self) -> Result<Arc<KeySnapshot>, KeyCacheError> {
        self.keys().await
    }

    fn usable(&self, snapshot: &KeySnapshot, now: SystemTime) -> bool {
        now < snapshot.fetched_at + self.inner.config.max_stale
    }

    /// The keys to verify with: the current set when fresh; the current set plus a background
    /// refresh when due; a (single-flight) fetch when none is usable.
    pub async fn keys(&self) -> Result<Arc<KeySnapshot>, KeyCacheError> {
        let now = self.inner.clock.now();
        if let Some(snapshot) = self.current() {
            if now < snapshot.refresh_at {
                return Ok(snapshot);
            }
            if self.usable(&snapshot, now) {
                self.spawn_refresh();
                return Ok(snapshot);
            }
        }
        let mut state = self.inner.fetch.lock().await;
        let now = self.inner.clock.now();
        if let Some(snapshot) = self.current()
            && self.usable(&snapshot, now)
        {
            return Ok(snapshot); // loaded by someone else while we waited
        }
        if let Some(wait) = self.cooling_down(&state, now)
            && state.last_error.is_some()
        {
            return Err(self.unavailable(&state, wait));
        }
        match self.fetch(&mut state).await {
            Ok(snapshot) => Ok(snapshot),
            Err(_) => Err(self.unavailable(&state, self.inner.config.refetch_cooldown)),
        }
    }

    /// Called when a token names a `kid` that `seen` lacks: refetches unless another task already
    /// did since `seen` was taken or the cooldown has not passed. Returns the newest snapshot
    /// (which may still lack the `kid`).
    pub async fn refresh_for_unknown_kid(&self, seen: &KeySnapshot) -> Arc<KeySnapshot> {
        let mut state = self.inner.fetch.lock().await;
        let current = self.current();
        if let Some(current) = &current
            && current.generation != seen.generation
        {
            return current.clone();
        }
        let now = self.inner.clock.now();
        if self.cooling_down(&state, now).is_none()
            && let Ok(snapshot) = self.fetch(&mut state).await
        {
            return snapshot;
        }
        current.unwrap_or_else(|| {
            Arc::new(KeySnapshot {
                keys: JwkSet::default(),
                fetched_at: now,
                refresh_at: now,
                generation: seen.generation,
            })
        })
    }

    /// Time left before another fetch may start, if the last attempt was within the cooldown.
    fn cooling_down(&self, state: &FetchState, now: SystemTime) -> Option<Duration> {
        let last = state.last_attempt?;
        let since = now.duration_since(last).unwrap_or(Duration::ZERO);
        self.inner
            .config
            .refetch_cooldown
            .checked_sub(since)
            .filter(|d| !d.is_zero())
    }

    fn unavailable(&self, state: &FetchState, retry_after: Duration) -> KeyCacheError {
        KeyCacheError::Unavailable {
            issuer: self.inner.issuer.clone(),
            reason: state
                .last_error
                .clone()
                .unwrap_or_else(|| "not loaded yet".into()),
            retry_after: retry_after.max(Duration::from_secs(1)),
        }
    }

    /// Starts one background refresh unless one is running (needs a tokio runtime).
    fn spawn_refresh(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.inner.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        runtime.spawn(async move {
            let mut state = this.inner.fetch.lock().await;
            let now = this.inner.clock.now();
            let due = this.current().is_none_or(|s| now >= s.refresh_at);
            if due && this.cooling_down(&state, now).is_none() {
                let _ = this.fetch(&mut state).await;
            }
            drop(state);
            this.inner.refreshing.store(false, Ordering::Release);
        });
    }

    /// One fetch (discovery when needed, then the JWKS). Caller holds the fetch lock.
    async fn fetch(&self, state: &mut FetchState) -> Result<Arc<KeySnapshot>, ()> {
        let started = self.inner.clock.now();
        state.last_attempt = Some(started);
        let fetched = self.fetch_inner(state).await;
        // The cooldown runs from the end of the attempt: after a fetch that hung until the
        // HTTP timeout, the requests that queued behind it get the cached answer (or 503) at
        // once instead of each starting another slow fetch.
        state.last_attempt = Some(self.inner.clock.now());
        match fetched {
            Ok((keys, max_age)) => {
                let config = &self.inner.config;
                let refresh_in = max_age.unwrap_or(config.default_refresh).clamp(
                    config.min_refresh,
                    config.max_refresh.max(config.min_refresh),
                );
                let previous = self.current();
                // A key withdrawn, or replaced under the same kid, makes cached results stale.
                let withdrawn = previous.as_ref().is_some_and(|p| {
                    let now: std::collections::HashSet<[u8; 32]> =
                        keys.keys().iter().map(|k| k.fingerprint()).collect();
                    p.keys
                        .keys()
                        .iter()
                        .any(|k| !now.contains(&k.fingerprint()))
                });
                for skipped in keys.skipped() {
                    tracing::warn!(issuer = %self.inner.issuer, "JWKS key skipped: {skipped}");
                }
                let snapshot = Arc::new(KeySnapshot {
                    keys,
                    fetched_at: started,
                    refresh_at: started + refresh_in,
                    generation: previous.map_or(1, |p| p.generation + 1),
                });
                tracing::info!(
                    issuer = %self.inner.issuer,
                    keys = snapshot.keys.keys().len(),
                    refresh_in_secs = refresh_in.as_secs(),
                    "signing keys loaded"
                );
                *self
                    .inner
                    .current
                    .write()
                    .unwrap_or_else(|p| p.into_inner()) = Some(snapshot.clone());
                // After publishing: whoever sees the new epoch also sees the new keys.
                if withdrawn {
                    self.inner.removal_epoch.fetch_add(1, Ordering::AcqRel);
                }
                state.last_error = None;
                Ok(snapshot)
            }
            Err(e) => {
                tracing::warn!(issuer = %self.inner.issuer, error = %e, "fetching signing keys failed");
                if self.inner.source == KeySource::Discovery && matches!(e, FetchError::Jwks { .. })
                {
                    // The jwks_uri may have moved: rediscover on the next attempt.
                    state.jwks_uri = None;
                }
                state.last_error = Some(e.to_string());
                Err(())
            }
        }
    }

    async fn fetch_inner(
        &self,
        state: &mut FetchState,
    ) -> Result<(JwkSet, Option<Duration>), FetchError> {
        let policy = self.inner.config.url_policy;
        let jwks_uri = match (&self.inner.source, &state.jwks_uri) {
            (KeySource::JwksUri(uri), _) => uri.clone(),
            (KeySource::Discovery, Some(uri)) => uri.clone(),
            (KeySource::Discovery, None) => {
                self.inner.discovery_fetches.fetch_add(1, Ordering::Relaxed);
                let metadata = ProviderMetadata::discover(
                    self.inner.http.as_ref(),
                    &self.inner.issuer,
                    policy,
                )
                .await?;
                let uri = metadata.jwks_uri.clone();
                state.metadata = Some(Arc::new(metadata));
                state.jwks_uri = Some(uri.clone());
                uri
            }
        };
        let jwks_error = |reason: String| FetchError::Jwks {
            url: jwks_uri.to_string(),
            reason,
        };
        policy
            .check(&jwks_uri)
            .map_err(|e| jwks_error(e.to_string()))?;
        self.inner.jwks_fetches.fetch_add(1, Ordering::Relaxed);
        let response = self
            .inner
            .http
            .execute(HttpRequest::get_json(jwks_uri.clone()))
            .await
            .map_err(|e| jwks_error(e.to_string()))?;
        if response.status != 200 {
            return Err(jwks_error(format!("HTTP {}", response.status)));
        }
        let keys = JwkSet::from_json(&response.body).map_err(|e| jwks_error(e.to_string()))?;
        Ok((
            keys,
            cache_control::max_age(response.header("cache-control")),
        ))
    }
}
