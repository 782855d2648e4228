//! The encrypted cookie format (DESIGN §2):
//!
//! `v1.` + base64url(key id ‖ 96-bit random nonce ‖ ciphertext ‖ tag), AES-256-GCM, AAD = the
//! cookie name, so a value cannot be replayed under another cookie. Keys come from
//! HKDF-SHA256(secret, salt `oidcgate`, info `session-v1` | `login-v1` | `ticket-v1`): one key
//! per purpose, so a pending-login cookie can never be read as a session. `SESSION_SECRET`
//! encrypts; each `SESSION_SECRET_PREVIOUS` only decrypts, for rotation. The 4-byte key id picks
//! the key without trial decryption. Random 96-bit nonces are safe for far more cookies than a
//! secret should ever seal (NIST SP 800-38D's 2^32 bound) — rotate the secret long before.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, Nonce, RandomizedNonceKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};
use thiserror::Error;

use crate::jose::b64;

/// What a sealed value is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The session cookie (or its chunks).
    Session,
    /// A pending login (state, nonce, PKCE verifier, return URL).
    Login,
    /// A Redis session ticket.
    Ticket,
}

impl Purpose {
    fn info(self) -> &'static [u8] {
        match self {
            Self::Session => b"session-v1",
            Self::Login => b"login-v1",
            Self::Ticket => b"ticket-v1",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Why a cookie value could not be opened (all mean "treat as absent").
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CodecError {
    #[error("SESSION_SECRET must be at least {min} bytes (got {got})")]
    SecretTooShort { min: usize, got: usize },
    #[error("the cookie value is not in the v1 format")]
    Format,
    #[error("the cookie was sealed with a key this server does not have")]
    UnknownKey,
    #[error("the cookie value failed authentication")]
    Tampered,
    #[error(
        "the value does not fit in {max_chunks} cookies of {budget} bytes; use the Redis session store"
    )]
    TooLarge { budget: usize, max_chunks: usize },
    #[error("sealing failed")]
    Seal,
}

/// Shortest secret accepted (DESIGN §3: ≥ 32 bytes).
pub const MIN_SECRET_BYTES: usize = 32;
const VERSION: &str = "v1.";
const KEY_ID_LEN: usize = 4;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Largest sealed value accepted for opening (3 chunks of a 4 KiB cookie).
const MAX_VALUE_LEN: usize = 3 * 4096;

struct KeySet {
    id: [u8; KEY_ID_LEN],
    keys: [RandomizedNonceKey; 3],
}

/// The key ring: the current secret's keys, then the previous secrets' (decrypt only).
pub struct SessionKeys {
    sets: Vec<KeySet>,
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionKeys")
            .field("secrets", &self.sets.len())
            .finish_non_exhaustive()
    }
}

fn derive(secret: &[u8]) -> Result<KeySet, CodecError> {
    if secret.len() < MIN_SECRET_BYTES {
        return Err(CodecError::SecretTooShort {
            min: MIN_SECRET_BYTES,
            got: secret.len(),
        });
    }
    let prk = Salt::new(HKDF_SHA256, b"oidcgate").extract(secret);
    let key = |info: &[u8]| -> Result<RandomizedNonceKey, CodecError> {
        let mut bytes = [0u8; 32];
        let infos = [info];
        prk.expand(&infos, &AES_256_GCM)
            .and_then(|okm| okm.fill(&mut bytes))
            .map_err(|_| CodecError::Seal)?;
        RandomizedNonceKey::new(&AES_256_GCM, &bytes).map_err(|_| CodecError::Seal)
    };
    let mut id = [0u8; KEY_ID_LEN];
    let infos: [&[u8]; 1] = [b"key-id-v1"];
    prk.expand(&infos, IdLen)
        .and_then(|okm| okm.fill(&mut id))
        .map_err(|_| CodecError::Seal)?;
    Ok(KeySet {
        id,
        keys: [
            key(Purpose::Session.info())?,
            key(Purpose::Login.info())?,
            key(Purpose::Ticket.info())?,
        ],
    })
}

/// HKDF output length for the key id.
struct IdLen;

impl aws_lc_rs::hkdf::KeyType for IdLen {
    fn len(&self) -> usize {
        KEY_ID_LEN
    }
}

impl SessionKeys {
    /// Keys from the current secret and any previous ones (each ≥ 32 bytes).
    pub fn new(secret: &[u8], previous: &[&[u8]]) -> Result<Self, CodecError> {
        let mut sets = vec![derive(secret)?];
        for old in previous {
            sets.push(derive(old)?);
        }
        Ok(Self { sets })
    }

    /// Encrypts `plaintext` for the cookie `name`.
    pub fn seal(
        &self,
        purpose: Purpose,
        name: &str,
        plaintext: &[u8],
    ) -> Result<String, CodecError> {
        let set = &self.sets[0];
        let mut in_out = plaintext.to_vec();
        let nonce = set.keys[purpose.index()]
            .seal_in_place_append_tag(Aad::from(name.as_bytes()), &mut in_out)
            .map_err(|_| CodecError::Seal)?;
        let mut raw = Vec::with_capacity(KEY_ID_LEN + NONCE_LEN + in_out.len());
        raw.extend_from_slice(&set.id);
        raw.extend_from_slice(nonce.as_ref());
        raw.extend_from_slice(&in_out);
        Ok(format!("{VERSION}{}", b64::encode(raw)))
    }

    /// Decrypts a value sealed for the cookie `name` with any key of the ring.
    pub fn open(&self, purpose: Purpose, name: &str, value: &str) -> Result<Vec<u8>, CodecError> {
        if value.len() > MAX_VALUE_LEN {
            return Err(CodecError::Format);
        }
        let encoded = value.strip_prefix(VERSION).ok_or(CodecError::Format)?;
        let raw = b64::decode(encoded).ok_or(CodecError::Format)?;
        if raw.len() < KEY_ID_LEN + NONCE_LEN + TAG_LEN {
            return Err(CodecError::Format);
        }
        let (id, rest) = raw.split_at(KEY_ID_LEN);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        // Key ids are 4 bytes: two secrets could share one, so every matching set is tried.
        let mut matched = false;
        for set in self.sets.iter().filter(|s| s.id == id) {
            matched = true;
            let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CodecError::Format)?;
            let mut in_out = sealed.to_vec();
            let aad = Aad::from(name.as_bytes());
            if let Ok(plaintext) = set.keys[purpose.index()].open_in_place(nonce, aad, &mut in_out)
            {
                return Ok(plaintext.to_vec());
            }
        }
        Err(if matched {
            CodecError::Tampered
        } else {
            CodecError::UnknownKey
        })
    }
}

/// Splits a sealed value across cookies `name`, `name.1`, `name.2` (DESIGN §3) and joins them.
#[derive(Debug, Clone, Copy)]
pub struct CookieChunks {
    /// Bytes per cookie value (DESIGN: 3,800, under browsers' 4 KiB per cookie with attributes).
    pub budget: usize,
    /// Most cookies (DESIGN: 3).
    pub max_chunks: usize,
}

impl Default for CookieChunks {
    fn default() -> Self {
        Self {
            budget: 3800,
            max_chunks: 3,
        }
    }
}

impl CookieChunks {
    /// The chunk cookie names for `name`.
    pub fn names(&self, name: &str) -> Vec<String> {
        (0..self.max_chunks)
            .map(|i| {
                if i == 0 {
                    name.to_owned()
                } else {
                    format!("{name}.{i}")
                }
            })
            .collect()
    }

    /// (name, value) pairs for `value`; names of unused chunks are for the caller to expire.
    pub fn split(&self, name: &str, value: &str) -> Result<Vec<(String, String)>, CodecError> {
        let too_large = CodecError::TooLarge {
            budget: self.budget,
            max_chunks: self.max_chunks,
        };
        if value.len() > self.budget * self.max_chunks {
            return Err(too_large);
        }
        // The sealed value is ASCII (base64url), so byte chunks are char chunks.
        Ok(value
            .as_bytes()
            .chunks(self.budget)
            .zip(self.names(name))
            .map(|(chunk, n)| (n, String::from_utf8_lossy(chunk).into_owned()))
            .collect())
    }

    /// Rejoins chunks found by `get(name)`; `None` when the first chunk is absent.
    pub fn join<'a>(&self, name: &str, get: impl Fn(&str) -> Option<&'a str>) -> Option<String> {
        let joined = join_named(&self.names(name), |n| get(n).map(str::as_bytes))?;
        String::from_utf8(joined.into_owned()).ok()
    }
}

/// Joins the chunks named `names` (from [`CookieChunks::names`], made once by a caller that
/// joins on every request); `None` when the first is absent or empty.
pub fn join_named<'a>(
    names: &[String],
    get: impl Fn(&str) -> Option<&'a [u8]>,
) -> Option<std::borrow::Cow<'a, [u8]>> {
    let (first_name, rest) = names.split_first()?;
    let first = get(first_name).filter(|v| !v.is_empty())?;
    let mut joined: Option<Vec<u8>> = None;
    for name in rest {
        match get(name) {
            Some(part) => joined
                .get_or_insert_with(|| first.to_vec())
                .extend_from_slice(part),
            None => break,
        }
    }
    Some(match joined {
        Some(all) => std::borrow::Cow::Owned(all),
        None => std::borrow::Cow::Borrowed(first),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const OLD: &[u8] = b"an-old-secret-that-is-32-bytes-long";

    #[test]
    fn seal_open_and_refusals() {
        let keys = SessionKeys::new(SECRET, &[]).unwrap();
        let v = keys
            .seal(Purpose::Session, "oidcgate_session", b"hello")
            .unwrap();
        assert!(v.starts_with("v1."));
        assert_eq!(
            keys.open(Purpose::Session, "oidcgate_session", &v).unwrap(),
            b"hello"
        );
        assert_ne!(
            v,
            keys.seal(Purpose::Session, "oidcgate_session", b"hello")
                .unwrap(),
            "random nonce"
        );
        assert_eq!(
            keys.open(Purpose::Session, "other_cookie", &v),
            Err(CodecError::Tampered),
            "AAD binds the name"
        );
        assert_eq!(
            keys.open(Purpose::Login, "oidcgate_session", &v),
            Err(CodecError::Tampered),
            "purpose keys differ"
        );
        let mut raw = b64::decode(&v[3..]).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        assert_eq!(
            keys.open(
                Purpose::Session,
                "oidcgate_session",
                &format!("v1.{}", b64::encode(&raw))
            ),
            Err(CodecError::Tampered)
        );
        for bad in [
            "",
            "v1.",
            "v2.AAAA",
            "v1.!!!",
            "v1.AAAA",
            &"v1.".repeat(5000),
        ] {
            assert!(
                keys.open(Purpose::Session, "oidcgate_session", bad)
                    .is_err(),
                "{bad:.10}"
            );
        }
        assert!(matches!(
            SessionKeys::new(b"short", &[]),
            Err(CodecError::SecretTooShort { got: 5, .. })
        ));
        assert_eq!(format!("{keys:?}"), "SessionKeys { secrets: 1, .. }");
    }

    #[test]
    fn rotation_with_previous_secrets() {
        let old = SessionKeys::new(OLD, &[]).unwrap();
        let sealed_before = old.seal(Purpose::Session, "s", b"kept").unwrap();
        let rotated = SessionKeys::new(SECRET, &[OLD]).unwrap();
        assert_eq!(
            rotated.open(Purpose::Session, "s", &sealed_before).unwrap(),
            b"kept",
            "old cookies still open"
        );
        let sealed_after = rotated.seal(Purpose::Session, "s", b"new").unwrap();
        assert_eq!(
            old.open(Purpose::Session, "s", &sealed_after),
            Err(CodecError::UnknownKey),
            "new cookies use the new key"
        );
        let dropped = SessionKeys::new(SECRET, &[]).unwrap();
        assert_eq!(
            dropped.open(Purpose::Session, "s", &sealed_before),
            Err(CodecError::UnknownKey)
        );
    }

    #[test]
    fn chunking() {
        let c = CookieChunks {
            budget: 10,
            max_chunks: 3,
        };
        let parts = c.split("s", "abcdefghijklmnopqrstu").unwrap();
        assert_eq!(
            parts.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            ["s", "s.1", "s.2"]
        );
        let joined = c
            .join("s", |n| {
                parts.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str())
            })
            .unwrap();
        assert_eq!(joined, "abcdefghijklmnopqrstu");
        assert!(matches!(
            c.split("s", &"x".repeat(31)),
            Err(CodecError::TooLarge { .. })
        ));
        assert_eq!(c.join("s", |_| None), None);
    }
}
