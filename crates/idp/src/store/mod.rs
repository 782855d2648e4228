//! What the IdP remembers between requests, behind the [`Store`] trait: authorization codes and
//! refresh tokens (stored by SHA-256 hash, never in plain text), revoked access-token ids, SSO
//! sessions (by hash of the cookie secret), pending logins, device grants, failed-login
//! counters and signing keys. [`memory::MemoryStore`] keeps it in process; [`sqlite::SqliteStore`]
//! in a SQLite file, so tokens, sessions and keys survive restarts.

pub mod memory;
pub mod sqlite;

use serde::{Deserialize, Serialize};

pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

/// Seconds since the Unix epoch.
pub type Timestamp = i64;

/// SHA-256 of a code or token: the only form in which codes and tokens are stored.
pub type TokenHash = [u8; 32];

/// Hashes a code or token for storage.
pub fn hash_token(token: &str) -> TokenHash {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Whether a space-separated scope string contains `offline_access`.
pub fn is_offline(scope: &str) -> bool {
    scope.split(' ').any(|s| s == "offline_access")
}

/// What an authorization code grants.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CodeGrant {
    pub client_id: String,
    pub redirect_uri: String,
    pub sub: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub auth_time: Timestamp,
    pub sid: String,
    pub expires_at: Timestamp,
    /// The refresh family and access-token ids issued from this code (revoked on reuse).
    pub issued_family: Option<String>,
    pub issued_jtis: Vec<(String, Timestamp)>,
    pub used: bool,
    /// Presented again before its first exchange finished: what that exchange issues is
    /// revoked as soon as it is recorded.
    #[serde(default)]
    pub compromised: bool,
}

/// The state of one refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefreshState {
    Active,
    /// Exchanged for a newer one; presenting it again is reuse.
    Rotated,
    Revoked,
}

/// One refresh token of a rotation family.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshRecord {
    pub family: String,
    pub client_id: String,
    pub sub: String,
    pub scope: String,
    pub sid: String,
    pub auth_time: Timestamp,
    pub expires_at: Timestamp,
    pub state: RefreshState,
}

/// An SSO session at the IdP. It is stored under the SHA-256 of the cookie secret; `sid` is a
/// separate public id that goes into tokens (a token must never reveal the cookie).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdpSession {
    pub sid: String,
    pub sub: String,
    pub auth_time: Timestamp,
    pub expires_at: Timestamp,
    /// Clients that received tokens in this session (for back-channel logout).
    pub clients: Vec<String>,
    /// Consent given in this session: (client id, scope).
    pub consents: Vec<(String, String)>,
}

/// The state of a device authorization (RFC 8628).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceStatus {
    Pending,
    Approved {
        sub: String,
        auth_time: Timestamp,
        sid: String,
    },
    Denied,
    /// Tokens were issued; the device code is spent.
    Used,
}

/// A device authorization request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceGrant {
    pub client_id: String,
    pub scope: String,
    pub user_code: String,
    pub expires_at: Timestamp,
    pub interval: i64,
    pub last_poll: Option<Timestamp>,
    pub status: DeviceStatus,
}

/// What a sign-in continues with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AfterLogin {
    /// Finish an authorization request.
    Authorize(PendingAuthorization),
    /// Return to the device verification page for this user code.
    Device {
        user_code: String,
        expires_at: Timestamp,
    },
}

impl AfterLogin {
    pub(crate) fn expires_at(&self) -> Timestamp {
        match self {
            Self::Authorize(p) => p.expires_at,
            Self::Device { expires_at, .. } => *expires_at,
        }
    }
}

/// An authorization request waiting for the user to sign in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingAuthorization {
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub response_mode: ResponseMode,
    pub max_age: Option<i64>,
    /// `prompt` values that still matter after a sign-in (`consent`).
    #[serde(default)]
    pub prompt_consent: bool,
    pub expires_at: Timestamp,
}

/// How the authorization response is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResponseMode {
    Query,
    FormPost,
}

/// A signing key as stored: PKCS#8 DER, retired keys stay published for a while.
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub kid: String,
    pub alg: String,
    pub pkcs8: Vec<u8>,
    pub created_at: Timestamp,
    pub retired_at: Option<Timestamp>,
}

/// Why the store failed (SQLite only; the memory store cannot fail).
#[derive(Debug, thiserror::Error)]
#[error("store: {0}")]
pub struct StoreError(pub String);

/// The IdP's persistent and ephemeral state. Methods are synchronous; a store whose calls can
/// block says so with [`Store::is_blocking`], and the HTTP layer then runs requests that use it
/// on tokio's blocking pool.
pub trait Store: Send + Sync + 'static {
    /// Whether calls may block (file I/O).
    fn is_blocking(&self) -> bool {
        false
    }

    /// Signing keys that persist across restarts (none for the memory store).
    fn load_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        Ok(Vec::new())
    }
    fn save_key(&self, _key: &StoredKey) -> Result<(), StoreError> {
        Ok(())
    }
    /// Marks every active key of `alg` except `keep` retired at `at`.
    fn retire_keys(&self, _alg: &str, _keep: &str, _at: Timestamp) -> Result<(), StoreError> {
        Ok(())
    }
    /// Changes whenever the stored keys change (another process may rotate them).
    fn keys_version(&self) -> Result<i64, StoreError> {
        Ok(0)
    }

    fn put_code(&self, hash: TokenHash, grant: CodeGrant);
    /// The code's grant without using it (to check its bindings first).
    fn code(&self, hash: &TokenHash) -> Option<CodeGrant>;
    /// Marks a reused code whose first exchange may still be in flight.
    fn mark_code_compromised(&self, hash: &TokenHash);
    /// Marks the code used and returns it as it was (so reuse can be detected).
    fn use_code(&self, hash: &TokenHash) -> Option<CodeGrant>;
    /// Records what a code issued; false when the code was found compromised meanwhile (the
    /// caller then revokes what it issued).
    fn record_code_issue(
        &self,
        hash: &TokenHash,
        family: Option<String>,
        jtis: Vec<(String, Timestamp)>,
    ) -> bool;

    fn put_refresh(&self, hash: TokenHash, record: RefreshRecord);
    fn refresh(&self, hash: &TokenHash) -> Option<RefreshRecord>;
    /// Active → Rotated; returns false when it was not active (a concurrent or repeated use).
    fn rotate_refresh(&self, hash: &TokenHash) -> bool;
    fn revoke_family(&self, family: &str);
    /// Revokes every refresh-token family of `sub` (and the access tokens issued with them), or
    /// only those of one client (seed 004's "revoke all for a user / for a user and client").
    fn revoke_for_subject(&self, sub: &str, client_id: Option<&str>);
    /// Revokes the families issued in one IdP session (public `sid`) unless they were granted
    /// `offline_access`, which outlives the session by definition (OIDC Core §11).
    fn revoke_for_session(&self, sid: &str);
    fn record_family_jti(&self, family: &str, jti: String, exp: Timestamp);

    fn revoke_jti(&self, jti: &str, exp: Timestamp);
    fn is_jti_revoked(&self, jti: &str) -> bool;

    fn put_session(&self, key: TokenHash, session: IdpSession);
    fn session(&self, key: &TokenHash) -> Option<IdpSession>;
    /// Removes the session and returns it.
    fn end_session(&self, key: &TokenHash) -> Option<IdpSession>;
    /// Records that a client received tokens in the session with this public `sid`.
    fn add_session_client(&self, sid: &str, client_id: &str);
    fn add_session_consent(&self, key: &TokenHash, client_id: &str, scope: &str);

    fn put_pending(&self, id: String, pending: AfterLogin);
    fn take_pending(&self, id: &str) -> Option<AfterLogin>;
    fn pending(&self, id: &str) -> Option<AfterLogin>;

    /// Stores a device grant; false when the store is full (bounded: unauthenticated public
    /// clients can start these).
    fn put_device(&self, hash: TokenHash, grant: DeviceGrant) -> bool;
    fn device(&self, hash: &TokenHash) -> Option<DeviceGrant>;
    /// The device grant with this user code, with its device-code hash.
    fn device_by_user_code(&self, user_code: &str) -> Option<(TokenHash, DeviceGrant)>;
    fn update_device(&self, hash: &TokenHash, update: &mut dyn FnMut(&mut DeviceGrant));

    /// Records a failed login; returns the failures within the window.
    fn login_failed(&self, key: &str, now: Timestamp, window: i64) -> usize;
    fn login_failures(&self, key: &str, now: Timestamp, window: i64) -> Vec<Timestamp>;
    fn login_succeeded(&self, key: &str);
}
