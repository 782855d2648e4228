//! The SQLite [`Store`] (`--store sqlite:PATH`): codes, refresh-token families, sessions,
//! pending logins, device grants, failed logins and signing keys in one file, so a restart keeps
//! users signed in and tokens valid. Records are JSON in a `data` column, with the columns that
//! lookups and expiry need beside them. One connection behind a mutex (WAL mode, 5 s busy
//! timeout so `oidcgate idp rotate-keys` can write while the IdP runs); the HTTP layer calls it
//! on tokio's blocking pool. A failing database fails closed: nothing is found, nothing issued.

use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::memory::{MAX_PENDING, now};
use super::{
    AfterLogin, CodeGrant, DeviceGrant, IdpSession, RefreshRecord, RefreshState, Store, StoreError,
    StoredKey, Timestamp, TokenHash,
};

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS codes (hash BLOB PRIMARY KEY, data TEXT NOT NULL, expires_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS refresh (hash BLOB PRIMARY KEY, family TEXT NOT NULL, state TEXT NOT NULL,
    data TEXT NOT NULL, expires_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS refresh_family ON refresh(family);
CREATE TABLE IF NOT EXISTS family_jtis (family TEXT NOT NULL, jti TEXT NOT NULL, exp INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS family_jtis_family ON family_jtis(family);
CREATE TABLE IF NOT EXISTS revoked_jtis (jti TEXT PRIMARY KEY, exp INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS revoked_families (family TEXT PRIMARY KEY, until INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (key BLOB PRIMARY KEY, sid TEXT NOT NULL, data TEXT NOT NULL,
    expires_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS sessions_sid ON sessions(sid);
CREATE TABLE IF NOT EXISTS pending (id TEXT PRIMARY KEY, data TEXT NOT NULL, expires_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS devices (hash BLOB PRIMARY KEY, user_code TEXT NOT NULL, data TEXT NOT NULL,
    expires_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS devices_user_code ON devices(user_code);
CREATE TABLE IF NOT EXISTS failures (key TEXT NOT NULL, at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS failures_key ON failures(key);
CREATE TABLE IF NOT EXISTS keys (kid TEXT PRIMARY KEY, alg TEXT NOT NULL, pkcs8 BLOB NOT NULL,
    created_at INTEGER NOT NULL, retired_at INTEGER);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (name, value) VALUES ('keys_version', 0);
";

struct Db {
    conn: Connection,
    ops: u64,
}

/// A SQLite-backed [`Store`].
pub struct SqliteStore {
    db: Mutex<Db>,
}

fn state_name(s: RefreshState) -> &'static str {
    match s {
        RefreshState::Active => "active",
        RefreshState::Rotated => "rotated",
        RefreshState::Revoked => "revoked",
    }
}

fn state_from(s: &str) -> RefreshState {
    match s {
        "active" => RefreshState::Active,
        "rotated" => RefreshState::Rotated,
        _ => RefreshState::Revoked,
    }
}

fn to_json<T: Serialize>(v: &T) -> Option<String> {
    serde_json::to_string(v).ok()
}

fn from_json<T: DeserializeOwned>(s: &str) -> Option<T> {
    serde_json::from_str(s).ok()
}

fn log<T>(what: &str, r: rusqlite::Result<T>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!(error = %e, "sqlite store: {what} failed");
            None
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &str) -> Result<Self, StoreError> {
        let conn =
            Connection::open(path).map_err(|e| StoreError(format!("cannot open {path}: {e}")))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| StoreError(e.to_string()))?;
        conn.execute_batch(SCHEMA)
            .map_err(|e| StoreError(format!("cannot initialize {path}: {e}")))?;
        Ok(Self {
            db: Mutex::new(Db { conn, ops: 0 }),
        })
    }

    fn with<R>(&self, f: impl FnOnce(&Connection) -> R) -> R {
        let mut db = self.db.lock().unwrap_or_else(|p| p.into_inner());
        db.ops += 1;
        if db.ops.is_multiple_of(1024) {
            prune(&db.conn, now());
        }
        f(&db.conn)
    }
}

fn prune(conn: &Connection, now: Timestamp) {
    let _ = log(
        "pruning",
        conn.execute_batch(&format!(
            "DELETE FROM codes WHERE expires_at + 3600 <= {now};
             DELETE FROM refresh WHERE expires_at <= {now};
             DELETE FROM family_jtis WHERE exp <= {now};
             DELETE FROM revoked_jtis WHERE exp <= {now};
             DELETE FROM revoked_families WHERE until <= {now};
             DELETE FROM sessions WHERE expires_at <= {now};
             DELETE FROM pending WHERE expires_at <= {now};
             DELETE FROM devices WHERE expires_at <= {now};
             DELETE FROM failures WHERE at + 3600 <= {now};"
        )),
    );
}

impl Store for SqliteStore {
    fn is_blocking(&self) -> bool {
        true
    }

    fn load_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        self.with(|c| {
            let mut stmt = c
                .prepare(
                    "SELECT kid, alg, pkcs8, created_at, retired_at FROM keys ORDER BY created_at",
                )
                .map_err(|e| StoreError(e.to_string()))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(StoredKey {
                        kid: r.get(0)?,
                        alg: r.get(1)?,
                        pkcs8: r.get(2)?,
                        created_at: r.get(3)?,
                        retired_at: r.get(4)?,
                    })
                })
                .map_err(|e| StoreError(e.to_string()))?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(|e| StoreError(e.to_string()))
        })
    }

    fn save_key(&self, key: &StoredKey) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO keys (kid, alg, pkcs8, created_at, retired_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![key.kid, key.alg, key.pkcs8, key.created_at, key.retired_at],
            )
            .and_then(|_| c.execute("UPDATE meta SET value = value + 1 WHERE name = 'keys_version'", []))
            .map(|_| ())
            .map_err(|e| StoreError(e.to_string()))
        })
    }

    fn retire_keys(&self, alg: &str, keep: &str, at: Timestamp) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE keys SET retired_at = ?1 WHERE alg = ?2 AND kid != ?3 AND retired_at IS NULL",
                params![at, alg, keep],
            )
            .and_then(|_| c.execute("UPDATE meta SET value = value + 1 WHERE name = 'keys_version'", []))
            .map(|_| ())
            .map_err(|e| StoreError(e.to_string()))
        })
    }

    fn keys_version(&self) -> Result<i64, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT value FROM meta WHERE name = 'keys_version'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| StoreError(e.to_string()))
        })
    }

    fn put_code(&self, hash: TokenHash, grant: CodeGrant) {
        let Some(data) = to_json(&grant) else { return };
        self.with(|c| {
            log(
                "put_code",
                c.execute(
                    "INSERT OR REPLACE INTO codes (hash, data, expires_at) VALUES (?1, ?2, ?3)",
                    params![&hash[..], data, grant.expires_at],
                ),
            )
        });
    }

    fn code(&self, hash: &TokenHash) -> Option<CodeGrant> {
        self.with(|c| {
            let data: String = log(
                "code",
                c.query_row(
                    "SELECT data FROM codes WHERE hash = ?1",
                    params![&hash[..]],
                    |r| r.get(0),
                )
                .optional(),
            )??;
            from_json(&data)
        })
    }

    fn mark_code_compromised(&self, hash: &TokenHash) {
        self.with(|c| {
            let data: Option<String> = log(
                "mark_code_compromised",
                c.query_row(
                    "SELECT data FROM codes WHERE hash = ?1",
                    params![&hash[..]],
                    |r| r.get(0),
                )
                .optional(),
            )
            .flatten();
            if let Some(mut grant) = data.and_then(|d| from_json::<CodeGrant>(&d)) {
                grant.compromised = true;
                if let Some(d) = to_json(&grant) {
                    log(
                        "mark_code_compromised",
                        c.execute(
                            "UPDATE codes SET data = ?1 WHERE hash = ?2",
                            params![d, &hash[..]],
                        ),
                    );
                }
            }
        });
    }

    fn use_code(&self, hash: &TokenHash) -> Option<CodeGrant> {
        self.with(|c| {
            let data: String = log(
                "use_code",
                c.query_row(
                    "SELECT data FROM codes WHERE hash = ?1",
                    params![&hash[..]],
                    |r| r.get(0),
                )
                .optional(),
            )??;
            let before: CodeGrant = from_json(&data)?;
            let mut used = before.clone();
            used.used = true;
            let after = to_json(&used)?;
            log(
                "use_code",
                c.execute(
                    "UPDATE codes SET data = ?1 WHERE hash = ?2",
                    params![after, &hash[..]],
                ),
            )?;
            Some(before)
        })
    }

    fn record_code_issue(
        &self,
        hash: &TokenHash,
        family: Option<String>,
        jtis: Vec<(String, Timestamp)>,
    ) -> bool {
        self.with(|c| {
            let data: Option<String> = log(
                "record_code_issue",
                c.query_row(
                    "SELECT data FROM codes WHERE hash = ?1",
                    params![&hash[..]],
                    |r| r.get(0),
                )
                .optional(),
            )
            .flatten();
            let Some(mut grant) = data.and_then(|d| from_json::<CodeGrant>(&d)) else {
                return false;
            };
            if grant.compromised {
                return false;
            }
            grant.issued_family = family;
            grant.issued_jtis = jtis;
            if let Some(d) = to_json(&grant) {
                log(
                    "record_code_issue",
                    c.execute(
                        "UPDATE codes SET data = ?1 WHERE hash = ?2",
                        params![d, &hash[..]],
                    ),
                );
            }
            true
        })
    }

    fn put_refresh(&self, hash: TokenHash, mut record: RefreshRecord) {
        self.with(|c| {
            let revoked = log(
                "put_refresh",
                c.query_row("SELECT 1 FROM revoked_families WHERE family = ?1", params![record.family], |_| Ok(())).optional(),
            )
            .is_none_or(|r| r.is_some());
            if revoked {
                record.state = RefreshState::Revoked;
            }
            let Some(data) = to_json(&record) else { return };
            log(
                "put_refresh",
                c.execute(
                    "INSERT OR REPLACE INTO refresh (hash, family, state, data, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![&hash[..], record.family, state_name(record.state), data, record.expires_at],
                ),
            );
        });
    }

    fn refresh(&self, hash: &TokenHash) -> Option<RefreshRecord> {
        self.with(|c| {
            let (state, data): (String, String) = log(
                "refresh",
                c.query_row(
                    "SELECT state, data FROM refresh WHERE hash = ?1",
                    params![&hash[..]],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional(),
            )??;
            let mut record: RefreshRecord = from_json(&data)?;
            record.state = state_from(&state);
            Some(record)
        })
    }

    fn rotate_refresh(&self, hash: &TokenHash) -> bool {
        self.with(|c| {
            log(
                "rotate_refresh",
                c.execute(
                    "UPDATE refresh SET state = 'rotated' WHERE hash = ?1 AND state = 'active'",
                    params![&hash[..]],
                ),
            ) == Some(1)
        })
    }

    fn revoke_family(&self, family: &str) {
        self.with(|c| {
            // A tombstone, so tokens a racing request adds to the family later are born revoked.
            log(
                "revoke_family",
                c.execute(
                    "INSERT OR REPLACE INTO revoked_families (family, until) VALUES (?1, ?2)",
                    params![family, now() + 31 * 86_400],
                ),
            );
            log("revoke_family", c.execute("UPDATE refresh SET state = 'revoked' WHERE family = ?1", params![family]));
            log(
                "revoke_family",
                c.execute(
                    "INSERT OR REPLACE INTO revoked_jtis (jti, exp) SELECT jti, exp FROM family_jtis WHERE family = ?1",
                    params![family],
                ),
            );
            log("revoke_family", c.execute("DELETE FROM family_jtis WHERE family = ?1", params![family]));
        });
    }

    fn revoke_for_subject(&self, sub: &str, client_id: Option<&str>) {
        let families = self.families(
            "json_extract(data, '$.sub') = ?1 AND (?2 IS NULL OR json_extract(data, '$.client_id') = ?2)",
            params![sub, client_id],
        );
        for family in families {
            self.revoke_family(&family);
        }
    }

    fn revoke_for_session(&self, sid: &str) {
        let families = self.families(
            "json_extract(data, '$.sid') = ?1 AND instr(' ' || json_extract(data, '$.scope') || ' ', ' offline_access ') = 0",
            params![sid],
        );
        for family in families {
            self.revoke_family(&family);
        }
    }

    fn record_family_jti(&self, family: &str, jti: String, exp: Timestamp) {
        self.with(|c| {
            let revoked = log(
                "record_family_jti",
                c.query_row(
                    "SELECT 1 FROM revoked_families WHERE family = ?1",
                    params![family],
                    |_| Ok(()),
                )
                .optional(),
            )
            .is_none_or(|r| r.is_some());
            if revoked {
                log(
                    "record_family_jti",
                    c.execute(
                        "INSERT OR REPLACE INTO revoked_jtis (jti, exp) VALUES (?1, ?2)",
                        params![jti, exp],
                    ),
                );
            } else {
                log(
                    "record_family_jti",
                    c.execute(
                        "INSERT INTO family_jtis (family, jti, exp) VALUES (?1, ?2, ?3)",
                        params![family, jti, exp],
                    ),
                );
            }
        });
    }

    fn revoke_jti(&self, jti: &str, exp: Timestamp) {
        self.with(|c| {
            log(
                "revoke_jti",
                c.execute(
                    "INSERT OR REPLACE INTO revoked_jtis (jti, exp) VALUES (?1, ?2)",
                    params![jti, exp],
                ),
            )
        });
    }

    fn is_jti_revoked(&self, jti: &str) -> bool {
        // Fail closed: an unreadable database treats the token as revoked.
        self.with(|c| {
            log(
                "is_jti_revoked",
                c.query_row(
                    "SELECT 1 FROM revoked_jtis WHERE jti = ?1",
                    params![jti],
                    |_| Ok(()),
                )
                .optional(),
            )
            .is_none_or(|found| found.is_some())
        })
    }

    fn put_session(&self, key: TokenHash, session: IdpSession) {
        let Some(data) = to_json(&session) else {
            return;
        };
        self.with(|c| {
            log(
                "put_session",
                c.execute(
                    "INSERT OR REPLACE INTO sessions (key, sid, data, expires_at) VALUES (?1, ?2, ?3, ?4)",
                    params![&key[..], session.sid, data, session.expires_at],
                ),
            )
        });
    }

    fn session(&self, key: &TokenHash) -> Option<IdpSession> {
        let now = now();
        self.with(|c| {
            let data: String = log(
                "session",
                c.query_row(
                    "SELECT data FROM sessions WHERE key = ?1 AND expires_at > ?2",
                    params![&key[..], now],
                    |r| r.get(0),
                )
                .optional(),
            )??;
            from_json(&data)
        })
    }

    fn end_session(&self, key: &TokenHash) -> Option<IdpSession> {
        self.with(|c| {
            let data: String = log(
                "end_session",
                c.query_row(
                    "DELETE FROM sessions WHERE key = ?1 RETURNING data",
                    params![&key[..]],
                    |r| r.get(0),
                )
                .optional(),
            )??;
            from_json(&data)
        })
    }

    fn add_session_client(&self, sid: &str, client_id: &str) {
        self.update_session_where("sid = ?1", sid, &mut |s| {
            if !s.clients.iter().any(|c| c == client_id) {
                s.clients.push(client_id.to_owned());
            }
        });
    }

    fn add_session_consent(&self, key: &TokenHash, client_id: &str, scope: &str) {
        self.update_session_where("key = ?1", &key[..], &mut |s| {
            for one in scope.split(' ').filter(|x| !x.is_empty()) {
                let entry = (client_id.to_owned(), one.to_owned());
                if !s.consents.contains(&entry) {
                    s.consents.push(entry);
                }
            }
        });
    }

    fn put_pending(&self, id: String, pending: AfterLogin) {
        let Some(data) = to_json(&pending) else {
            return;
        };
        let expires_at = pending.expires_at();
        self.with(|c| {
            let count: i64 = c.query_row("SELECT count(*) FROM pending", [], |r| r.get(0)).unwrap_or(0);
            if count as usize >= MAX_PENDING {
                prune(c, now());
                // Still full: drop the request closest to expiry.
                log(
                    "put_pending",
                    c.execute("DELETE FROM pending WHERE id IN (SELECT id FROM pending ORDER BY expires_at LIMIT 1)", []),
                );
            }
            log(
                "put_pending",
                c.execute(
                    "INSERT OR REPLACE INTO pending (id, data, expires_at) VALUES (?1, ?2, ?3)",
                    params![id, data, expires_at],
                ),
            )
        });
    }

    fn take_pending(&self, id: &str) -> Option<AfterLogin> {
        // One statement, so two concurrent sign-ins cannot both take the same request.
        let now = now();
        self.with(|c| {
            let data: String = log(
                "take_pending",
                c.query_row(
                    "DELETE FROM pending WHERE id = ?1 AND expires_at > ?2 RETURNING data",
                    params![id, now],
                    |r| r.get(0),
                )
                .optional(),
            )??;
            from_json(&data)
        })
    }

    fn pending(&self, id: &str) -> Option<AfterLogin> {
        let now = now();
        self.with(|c| {
            let data: String = log(
                "pending",
                c.query_row(
                    "SELECT data FROM pending WHERE id = ?1 AND expires_at > ?2",
                    params![id, now],
                    |r| r.get(0),
                )
                .optional(),
            )??;
            from_json(&data)
        })
    }

    fn put_device(&self, hash: TokenHash, grant: DeviceGrant) -> bool {
        let Some(data) = to_json(&grant) else {
            return false;
        };
        self.with(|c| {
            let count = |c: &Connection| c.query_row("SELECT count(*) FROM devices", [], |r| r.get::<_, i64>(0)).unwrap_or(i64::MAX);
            if count(c) as usize >= MAX_PENDING {
                prune(c, now());
                if count(c) as usize >= MAX_PENDING {
                    return false;
                }
            }
            log(
                "put_device",
                c.execute(
                    "INSERT OR REPLACE INTO devices (hash, user_code, data, expires_at) VALUES (?1, ?2, ?3, ?4)",
                    params![&hash[..], grant.user_code, data, grant.expires_at],
                ),
            )
            .is_some()
        })
    }

    fn device(&self, hash: &TokenHash) -> Option<DeviceGrant> {
        self.with(|c| {
            let data: String = log(
                "device",
                c.query_row(
                    "SELECT data FROM devices WHERE hash = ?1",
                    params![&hash[..]],
                    |r| r.get(0),
                )
                .optional(),
            )??;
            from_json(&data)
        })
    }

    fn device_by_user_code(&self, user_code: &str) -> Option<(TokenHash, DeviceGrant)> {
        let now = now();
        self.with(|c| {
            let (hash, data): (Vec<u8>, String) = log(
                "device_by_user_code",
                c.query_row(
                    "SELECT hash, data FROM devices WHERE user_code = ?1 AND expires_at > ?2",
                    params![user_code, now],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional(),
            )??;
            Some((hash.try_into().ok()?, from_json(&data)?))
        })
    }

    fn update_device(&self, hash: &TokenHash, update: &mut dyn FnMut(&mut DeviceGrant)) {
        self.with(|c| {
            let data: Option<String> = log(
                "update_device",
                c.query_row(
                    "SELECT data FROM devices WHERE hash = ?1",
                    params![&hash[..]],
                    |r| r.get(0),
                )
                .optional(),
            )
            .flatten();
            if let Some(mut grant) = data.and_then(|d| from_json::<DeviceGrant>(&d)) {
                update(&mut grant);
                if let Some(d) = to_json(&grant) {
                    log(
                        "update_device",
                        c.execute(
                            "UPDATE devices SET data = ?1 WHERE hash = ?2",
                            params![d, &hash[..]],
                        ),
                    );
                }
            }
        });
    }

    fn login_failed(&self, key: &str, now: Timestamp, window: i64) -> usize {
        self.with(|c| {
            log(
                "login_failed",
                c.execute(
                    "INSERT INTO failures (key, at) VALUES (?1, ?2)",
                    params![key, now],
                ),
            );
        });
        self.login_failures(key, now, window).len()
    }

    fn login_failures(&self, key: &str, now: Timestamp, window: i64) -> Vec<Timestamp> {
        self.with(|c| {
            let Ok(mut stmt) = c.prepare("SELECT at FROM failures WHERE key = ?1 AND at + ?2 > ?3")
            else {
                return Vec::new();
            };
            stmt.query_map(params![key, window, now], |r| r.get(0))
                .map(|rows| rows.filter_map(Result::ok).collect())
                .unwrap_or_default()
        })
    }

    fn login_succeeded(&self, key: &str) {
        self.with(|c| {
            log(
                "login_succeeded",
                c.execute("DELETE FROM failures WHERE key = ?1", params![key]),
            )
        });
    }
}

impl SqliteStore {
    /// The distinct refresh families matching a condition.
    fn families(&self, condition: &str, values: impl rusqlite::Params) -> Vec<String> {
        self.with(|c| {
            let sql = format!("SELECT DISTINCT family FROM refresh WHERE {condition}");
            let Some(mut stmt) = log("families", c.prepare(&sql)) else {
                return Vec::new();
            };
            stmt.query_map(values, |r| r.get(0))
                .map(|rows| rows.filter_map(Result::ok).collect())
                .unwrap_or_default()
        })
    }

    fn update_session_where(
        &self,
        condition: &str,
        value: impl rusqlite::ToSql,
        update: &mut dyn FnMut(&mut IdpSession),
    ) {
        self.with(|c| {
            let select = format!("SELECT key, data FROM sessions WHERE {condition}");
            let row: Option<(Vec<u8>, String)> = log(
                "session update",
                c.query_row(&select, params![value], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional(),
            )
            .flatten();
            if let Some((key, data)) = row
                && let Some(mut session) = from_json::<IdpSession>(&data)
            {
                update(&mut session);
                if let Some(d) = to_json(&session) {
                    log(
                        "session update",
                        c.execute(
                            "UPDATE sessions SET data = ?1 WHERE key = ?2",
                            params![d, key],
                        ),
                    );
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::hash_token;

    #[test]
    fn round_trips_and_rotation_is_atomic() {
        let dir = std::env::temp_dir().join(format!("oidcgate-sqlite-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("idp.db");
        let store = SqliteStore::open(path.to_str().unwrap()).unwrap();
        let record = RefreshRecord {
            family: "f".into(),
            client_id: "c".into(),
            sub: "s".into(),
            scope: "openid".into(),
            sid: "sid".into(),
            auth_time: 1,
            expires_at: now() + 60,
            state: RefreshState::Active,
        };
        store.put_refresh(hash_token("r1"), record);
        assert!(store.rotate_refresh(&hash_token("r1")));
        assert!(!store.rotate_refresh(&hash_token("r1")), "only once");
        store.record_family_jti("f", "j1".into(), now() + 60);
        store.revoke_family("f");
        assert_eq!(
            store.refresh(&hash_token("r1")).unwrap().state,
            RefreshState::Revoked
        );
        assert!(store.is_jti_revoked("j1"));
        assert!(!store.is_jti_revoked("j2"));
        // A second handle on the same file sees the data (what a restart sees).
        drop(store);
        let again = SqliteStore::open(path.to_str().unwrap()).unwrap();
        assert!(again.is_jti_revoked("j1"));
        assert_eq!(again.keys_version().unwrap(), 0);
        crate::store::memory::tests::check_revocations(&again);
        let session = IdpSession {
            sid: "public".into(),
            sub: "alice".into(),
            auth_time: 1,
            expires_at: now() + 60,
            clients: vec![],
            consents: vec![],
        };
        again.put_session(hash_token("secret"), session);
        assert_eq!(
            again.end_session(&hash_token("secret")).map(|s| s.sid),
            Some("public".into())
        );
        assert!(
            again.end_session(&hash_token("secret")).is_none(),
            "ended once"
        );
        again.put_pending(
            "p1".into(),
            AfterLogin::Device {
                user_code: "BCDF-GHJK".into(),
                expires_at: now() + 60,
            },
        );
        assert!(again.take_pending("p1").is_some());
        assert!(again.take_pending("p1").is_none(), "taken once");
        let _ = std::fs::remove_dir_all(dir);
    }
}
