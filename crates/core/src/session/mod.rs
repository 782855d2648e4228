//! Sessions for relying parties (DESIGN §2 "Sessions"). [`codec`]: the encrypted-cookie format —
//! AES-256-GCM on aws-lc-rs with keys derived by HKDF-SHA256 from `SESSION_SECRET`, a key ring
//! for rotation, the cookie name as associated data, and chunking within the cookie budget.

pub mod codec;

pub use codec::{CodecError, CookieChunks, Purpose, SessionKeys, join_named};
