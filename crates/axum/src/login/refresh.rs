//! Transparent refresh of a session's tokens (DESIGN §4). When a session keeps tokens and its
//! access token is under [`REFRESH_BEFORE`] seconds from expiry, the next request refreshes it
//! once:
//!
//! - in process, concurrent requests of one session share one refresh (single flight), which
//!   runs in its own task so a client hanging up cannot cancel it half-way (a refresh token
//!   redeemed but never stored would be redeemed again, and IdPs with rotation revoke the whole
//!   family for that);
//! - a **refresh-result cache** maps SHA-256(old refresh token) to the new tokens for 60 s, so a
//!   request that still carries the pre-refresh cookie adopts them instead of redeeming again;
//! - with Redis, a `SET NX PX` lease lets one replica refresh; the others wait for its write
//!   and re-read the session (Redis store) or adopt the result it published, encrypted under
//!   the old refresh token (cookie store with shared state). The lease holder re-reads too
//!   before redeeming, in case another replica finished just before.
//!
//! A refreshed ID token must be for the same `sub`, and a `nonce` in it must be the login's.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oidcgate_core::client::{ClientError, OidcClient};

use super::redis::RedisSessions;
use super::session::{SessionData, SessionTokens};

/// Refresh when the access token has less than this many seconds left.
pub const REFRESH_BEFORE: i64 = 60;
/// How long a refresh result is adopted by requests that carry the old refresh token.
const RESULT_TTL: Duration = Duration::from_secs(60);
/// Longest one refresh may take, all calls included (the token call and a key fetch each have
/// a 10 s HTTP timeout); past it the attempt counts as unavailable.
const REFRESH_DEADLINE: Duration = Duration::from_secs(22);
/// Longest a replica holds the Redis lease: beyond [`REFRESH_DEADLINE`], so a lease never
/// expires while its refresh may still redeem the token.
const LEASE_HOLD: Duration = Duration::from_secs(30);
/// How long a replica that lost the lease waits for the winner's write (it stops early when
/// the lease is released without a result).
const WAIT_FOR_PEER: Duration = Duration::from_secs(25);
const PEER_POLL: Duration = Duration::from_millis(100);
/// After a failure to reach the provider, a session's next attempt waits this long (a down
/// IdP is not hit on every request).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);
/// Bound of the refresh-result cache.
const MAX_RESULTS: usize = 10_000;

/// What a refresh came to.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The session with fresh tokens (already written to Redis when Redis is the store).
    Refreshed(Arc<SessionData>),
    /// The provider refused (e.g. `invalid_grant`, an invalid ID token) or the session is
    /// gone: the session ends and the user signs in again.
    Rejected(String),
    /// The provider or Redis could not be reached; the session keeps its tokens for now.
    Unavailable(String),
}

/// Whether a session's access token is due for a refresh at `now`.
pub fn due(session: &SessionData, now: i64) -> bool {
    session.tokens.as_ref().is_some_and(|t| {
        t.refresh_token.is_some()
            && t.access_expires_at
                .is_some_and(|exp| exp.saturating_sub(now) < REFRESH_BEFORE)
    })
}

/// Whether a session's access token has expired at `now`.
pub fn expired(session: &SessionData, now: i64) -> bool {
    session
        .tokens
        .as_ref()
        .and_then(|t| t.access_expires_at)
        .is_some_and(|exp| exp <= now)
}

struct Flight {
    started: Instant,
    /// SHA-256 of the refresh token this flight redeems: only requests carrying the same token
    /// join it.
    digest: [u8; 32],
    /// `None` while the refresh runs.
    outcome: tokio::sync::watch::Receiver<Option<Outcome>>,
}

impl Flight {
    fn running(&self) -> bool {
        self.outcome.borrow().is_none()
    }

    /// A finished flight that could not reach the provider, within the pause before a retry.
    fn recently_unavailable(&self) -> bool {
        matches!(&*self.outcome.borrow(), Some(Outcome::Unavailable(_)))
            && self.started.elapsed() < RETRY_AFTER_FAILURE
    }
}

type Flights = Mutex<HashMap<String, Flight>>;

/// New tokens by SHA-256 of the refresh token they replaced.
type Results = quick_cache::sync::Cache<[u8; 32], (Instant, SessionTokens, Option<String>)>;

/// How the refreshes of a login layer went since start (for `/metrics`): one count per
/// refresh attempt, not per request that shared it.
#[derive(Debug, Default)]
pub struct RefreshCounts {
    /// New tokens from the provider, or adopted from another replica's refresh.
    pub refreshed: AtomicU64,
    /// Refused by the provider (or the session was gone): sessions ended.
    pub rejected: AtomicU64,
    /// The provider or Redis could not be reached.
    pub unavailable: AtomicU64,
}

impl RefreshCounts {
    fn record(&self, outcome: &Outcome) {
        let counter = match outcome {
            Outcome::Refreshed(_) => &self.refreshed,
            Outcome::Rejected(_) => &self.rejected,
            Outcome::Unavailable(_) => &self.unavailable,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The refreshes of one login layer.
pub struct Refresher {
    in_flight: Arc<Flights>,
    results: Arc<Results>,
    counts: Arc<RefreshCounts>,
}

impl Default for Refresher {
    fn default() -> Self {
        Self {
            in_flight: Arc::default(),
            results: Arc::new(quick_cache::sync::Cache::new(MAX_RESULTS)),
            counts: Arc::default(),
        }
    }
}

fn digest(token: &str) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn with_tokens(
    session: &SessionData,
    tokens: SessionTokens,
    id_token: Option<String>,
) -> Arc<SessionData> {
    let mut next = session.clone();
    next.tokens = Some(tokens);
    if id_token.is_some() {
        next.id_token = id_token;
    }
    Arc::new(next)
}

/// Where replicas coordinate a refresh.
pub enum Coordination {
    /// One process: the single flight and the result cache are enough.
    Local,
    /// The Redis session store: a lease by ticket id; the winner rewrites the session in place
    /// and the others re-read it.
    Store(Arc<RedisSessions>, Vec<u8>),
    /// Cookie sessions with Redis for shared state: a lease by session id; the winner publishes
    /// the new tokens (encrypted, by SHA-256 of the old refresh token) and the others adopt them.
    Shared(Arc<RedisSessions>),
}

/// Everything one refresh needs, owned (it runs in its own task).
pub struct Job {
    pub client: Arc<OidcClient>,
    pub coordination: Coordination,
    pub session: Arc<SessionData>,
}

/// A refresh result as replicas exchange it.
#[derive(serde::Serialize, serde::Deserialize)]
struct Published {
    tokens: SessionTokens,
    id_token: Option<String>,
}

/// The result another replica published for `old`, if any.
async fn published(
    redis: &RedisSessions,
    session: &SessionData,
    old: &str,
) -> Result<Option<Arc<SessionData>>, String> {
    let found = redis.refresh_result(old).await.map_err(|e| e.to_string())?;
    Ok(found
        .and_then(|bytes| serde_json::from_slice::<Published>(&bytes).ok())
        .map(|p| with_tokens(session, p.tokens, p.id_token)))
}

impl Refresher {
    /// The counts since start.
    pub fn counts(&self) -> &RefreshCounts {
        &self.counts
    }

    /// Refreshes `job.session`'s tokens, sharing the work with concurrent requests of the same
    /// session and adopting a result another request already got for the same refresh token.
    pub async fn refresh(&self, job: Job) -> Outcome {
        let Some(old) = job
            .session
            .tokens
            .as_ref()
            .and_then(|t| t.refresh_token.as_deref())
        else {
            return Outcome::Rejected("the session has no refresh token".into());
        };
        let key = digest(old);
        if let Some((at, tokens, id_token)) = self.results.get(&key)
            && at.elapsed() < RESULT_TTL
        {
            return Outcome::Refreshed(with_tokens(&job.session, tokens, id_token));
        }
        let id = job.session.id.clone();
        let receiver = {
            let mut flights = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            if flights.len() > MAX_RESULTS {
                // Finished flights past the retry pause only: a running one must stay, or a
                // second refresh of its token could start beside it.
                flights.retain(|_, f| f.running() || f.started.elapsed() < RETRY_AFTER_FAILURE);
            }
            match flights.get(&id) {
                // Join the running refresh of this same token, or a failure moments ago.
                Some(f) if f.digest == key && (f.running() || f.recently_unavailable()) => {
                    f.outcome.clone()
                }
                _ => {
                    let (sender, receiver) = tokio::sync::watch::channel(None);
                    let results = self.results.clone();
                    let counts = self.counts.clone();
                    let registry = self.in_flight.clone();
                    let job_id = id.clone();
                    let (id, mine) = (id.clone(), receiver.clone());
                    // Its own task: the caller's request may be dropped, the refresh is not.
                    tokio::spawn(async move {
                        let outcome =
                            match tokio::time::timeout(REFRESH_DEADLINE, run(job, key, results))
                                .await
                            {
                                Ok(outcome) => outcome,
                                Err(_) => Outcome::Unavailable("the refresh took too long".into()),
                            };
                        counts.record(&outcome);
                        let failed = matches!(outcome, Outcome::Unavailable(_));
                        let _ = sender.send(Some(outcome));
                        // Done: later requests use the result cache (or, after a failure to
                        // reach the provider, wait out the retry pause on this entry).
                        if !failed {
                            let mut flights = registry.lock().unwrap_or_else(|p| p.into_inner());
                            if flights
                                .get(&id)
                                .is_some_and(|f| f.outcome.same_channel(&mine))
                            {
                                flights.remove(&id);
                            }
                        }
                    });
                    flights.insert(
                        job_id,
                        Flight {
                            started: Instant::now(),
                            digest: key,
                            outcome: receiver.clone(),
                        },
                    );
                    receiver
                }
            }
        };
        let mut receiver = receiver;
        match receiver.wait_for(Option::is_some).await {
            Ok(done) => done
                .clone()
                .unwrap_or_else(|| Outcome::Unavailable("no refresh result".into())),
            Err(_) => Outcome::Unavailable("the refresh task failed".into()),
        }
    }
}

/// Whether the session read back from Redis already carries other tokens than `old` (another
/// replica refreshed it).
fn moved_on(current: &SessionData, old: &str) -> bool {
    current
        .tokens
        .as_ref()
        .and_then(|t| t.refresh_token.as_deref())
        != Some(old)
}

async fn run(job: Job, key: [u8; 32], results: Arc<Results>) -> Outcome {
    let session = &job.session;
    // A flight that finished just before this one started may have left its result.
    if let Some((at, tokens, id_token)) = results.get(&key)
        && at.elapsed() < RESULT_TTL
    {
        return Outcome::Refreshed(with_tokens(session, tokens, id_token));
    }
    let Some(tokens) = session.tokens.as_ref() else {
        return Outcome::Rejected("the session keeps no tokens".into());
    };
    let Some(old) = tokens.refresh_token.as_deref() else {
        return Outcome::Rejected("the session has no refresh token".into());
    };
    let lease = match &job.coordination {
        Coordination::Local => None,
        Coordination::Shared(redis) => {
            match published(redis, session, old).await {
                Err(e) => return Outcome::Unavailable(e),
                Ok(Some(next)) => return Outcome::Refreshed(next),
                Ok(None) => {}
            }
            match redis.try_lease(session.id.as_bytes(), LEASE_HOLD).await {
                Err(e) => return Outcome::Unavailable(e.to_string()),
                Ok(None) => return wait_for_result(redis, session, old).await,

                // Re-read: the previous holder may have published just before.
                Ok(Some(lease)) => match published(redis, session, old).await {
                    Ok(Some(next)) => {
                        let _ = redis.release(lease).await;
                        return Outcome::Refreshed(next);
                    }
                    Ok(None) => Some(lease),
                    Err(e) => {
                        let _ = redis.release(lease).await;
                        return Outcome::Unavailable(e);
                    }
                },
            }
        }
        Coordination::Store(redis, ticket) => match redis
            .try_lease(&ticket[..ticket.len().min(16)], LEASE_HOLD)
            .await
        {
            Err(e) => return Outcome::Unavailable(e.to_string()),
            Ok(None) => {
                let of = &ticket[..ticket.len().min(16)];
                return wait_for_peer(redis, ticket, of, old).await;
            }
            Ok(Some(lease)) => match redis.load_fresh(ticket).await {
                Err(e) => {
                    let _ = redis.release(lease).await;
                    return Outcome::Unavailable(e.to_string());
                }
                Ok(None) => {
                    let _ = redis.release(lease).await;
                    return Outcome::Rejected("the session has ended".into());
                }
                Ok(Some(current)) if moved_on(&current, old) => {
                    let _ = redis.release(lease).await;
                    return Outcome::Refreshed(current);
                }
                Ok(Some(_)) => Some(lease),
            },
        },
    };
    let result = job
        .client
        .refresh(old, Some(&session.sub), Some(&tokens.nonce))
        .await;
    let outcome = match result {
        Ok(response) => {
            let now = now();
            let fresh = SessionTokens {
                access_token: response.access_token,
                access_expires_at: response
                    .expires_in
                    .map(|s| now.saturating_add(i64::try_from(s).unwrap_or(i64::MAX))),
                // Without rotation the old refresh token stays valid.
                refresh_token: response.refresh_token.or_else(|| Some(old.to_owned())),
                nonce: tokens.nonce.clone(),
            };
            results.insert(
                key,
                (Instant::now(), fresh.clone(), response.id_token.clone()),
            );
            let mut ended = false;
            let published = serde_json::to_vec(&Published {
                tokens: fresh.clone(),
                id_token: response.id_token.clone(),
            });
            let next = with_tokens(session, fresh, response.id_token);
            match &job.coordination {
                Coordination::Local => {}
                Coordination::Store(redis, ticket) => match redis.update(ticket, &next).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::info!("the session ended during its refresh");
                        ended = true;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "refreshed tokens could not be written to Redis; other replicas may refresh again")
                    }
                },
                Coordination::Shared(redis) => {
                    let put = match &published {
                        Ok(bytes) => redis
                            .put_refresh_result(old, bytes, RESULT_TTL)
                            .await
                            .map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    if let Err(e) = put {
                        tracing::warn!(error = %e, "the refresh result could not be shared through Redis; other replicas may refresh again");
                    }
                }
            }
            tracing::debug!("session tokens refreshed");
            if ended {
                Outcome::Rejected("the session ended during its refresh".into())
            } else {
                Outcome::Refreshed(next)
            }
        }
        Err(e) => classify(e),
    };
    let holder = match &job.coordination {
        Coordination::Local => None,
        Coordination::Store(redis, _) | Coordination::Shared(redis) => Some(redis),
    };
    if let (Some(redis), Some(lease)) = (holder, lease)
        && let Err(e) = redis.release(lease).await
    {
        tracing::warn!(error = %e, "could not release the refresh lease; it expires by itself");
    }
    outcome
}

/// A provider's refusal ends the session; a failure to reach it does not.
fn classify(e: ClientError) -> Outcome {
    match &e {
        ClientError::OAuth { status, .. } if (400..500).contains(status) => {
            tracing::info!(error = %e, "refresh refused; the session ends");
            Outcome::Rejected(e.to_string())
        }
        ClientError::IdToken(_) => {
            tracing::warn!(error = %e, "refreshed ID token refused; the session ends");
            Outcome::Rejected(e.to_string())
        }
        _ => {
            tracing::warn!(error = %e, "refresh failed; retrying later");
            Outcome::Unavailable(e.to_string())
        }
    }
}

/// Another replica holds the lease: wait for its write and adopt it.
async fn wait_for_peer(redis: &RedisSessions, ticket: &[u8], of: &[u8], old: &str) -> Outcome {
    let deadline = Instant::now() + WAIT_FOR_PEER;
    while Instant::now() < deadline {
        tokio::time::sleep(PEER_POLL).await;
        // Read the lease first: released after the last read means the session is final.
        let held = redis.lease_held(of).await;
        match redis.load_fresh(ticket).await {
            Ok(None) => return Outcome::Rejected("the session has ended".into()),
            Ok(Some(current)) if moved_on(&current, old) => return Outcome::Refreshed(current),
            Ok(Some(_)) => {}
            Err(e) => return Outcome::Unavailable(e.to_string()),
        }
        if let Ok(false) = held {
            return Outcome::Unavailable(
                "another replica's refresh ended without new tokens".into(),
            );
        }
    }
    Outcome::Unavailable("another replica's refresh did not finish in time".into())
}

/// Another replica holds the lease of a cookie session: wait for its published result.
async fn wait_for_result(redis: &RedisSessions, session: &SessionData, old: &str) -> Outcome {
    let deadline = Instant::now() + WAIT_FOR_PEER;
    while Instant::now() < deadline {
        tokio::time::sleep(PEER_POLL).await;
        let held = redis.lease_held(session.id.as_bytes()).await;
        match published(redis, session, old).await {
            Ok(Some(next)) => return Outcome::Refreshed(next),
            Ok(None) => {}
            Err(e) => return Outcome::Unavailable(e),
        }
        if let Ok(false) = held {
            // Refused (the session is then on the revocation list) or failed: no new tokens.
            return Outcome::Unavailable(
                "another replica's refresh ended without new tokens".into(),
            );
        }
    }
    Outcome::Unavailable("another replica's refresh did not finish in time".into())
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(exp: Option<i64>, refresh: Option<&str>) -> SessionData {
        SessionData {
            id: "s".into(),
            sub: "alice".into(),
            idp_sid: None,
            email: None,
            email_verified: None,
            name: None,
            preferred_username: None,
            groups: vec![],
            id_token: None,
            created_at: 0,
            expires_at: 10_000,
            tokens: Some(SessionTokens {
                access_token: "at".into(),
                access_expires_at: exp,
                refresh_token: refresh.map(str::to_owned),
                nonce: "n".into(),
            }),
        }
    }

    #[test]
    fn due_only_near_expiry_with_a_refresh_token() {
        assert!(due(&session(Some(1_059), Some("rt")), 1_000));
        assert!(!due(&session(Some(1_060), Some("rt")), 1_000));
        assert!(due(&session(Some(900), Some("rt")), 1_000));
        assert!(!due(&session(Some(900), None), 1_000));
        assert!(!due(&session(None, Some("rt")), 1_000));
        let mut none = session(Some(900), Some("rt"));
        none.tokens = None;
        assert!(!due(&none, 1_000));
        assert!(expired(&session(Some(1_000), None), 1_000));
        assert!(!expired(&session(Some(1_001), None), 1_000));
        assert!(!expired(&session(None, None), 1_000));
    }

    #[test]
    fn provider_refusals_end_the_session_outages_do_not() {
        let refused = ClientError::OAuth {
            status: 400,
            error: "invalid_grant".into(),
            description: String::new(),
        };
        assert!(matches!(classify(refused), Outcome::Rejected(_)));
        let down = ClientError::OAuth {
            status: 503,
            error: "temporarily_unavailable".into(),
            description: String::new(),
        };
        assert!(matches!(classify(down), Outcome::Unavailable(_)));
        let forged = ClientError::IdToken(oidcgate_core::validate::ValidationError::Expired);
        assert!(matches!(classify(forged), Outcome::Rejected(_)));
    }

    #[test]
    fn moved_on_compares_refresh_tokens() {
        assert!(!moved_on(&session(Some(1), Some("rt")), "rt"));
        assert!(moved_on(&session(Some(1), Some("rt2")), "rt"));
        assert!(moved_on(&session(Some(1), None), "rt"));
    }
}
