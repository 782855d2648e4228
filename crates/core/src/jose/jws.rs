//! Compact JWS parsing and verification (RFC 7515 §3.1, §5.2).
//!
//! [`UnverifiedJwt`] holds a parsed but untrusted token; the only way to a [`VerifiedJws`] is a
//! successful signature check with a caller-supplied key, and the payload JSON is parsed only
//! after that check.

use serde_json::{Map, Value};

use super::alg::{AlgorithmSet, KeyFamily};
use super::b64;
use super::error::JoseError;
use super::header::Header;
use super::json::{parse_object, scan_object, to_jose_error};
use super::jwk::{HmacKey, VerifyingKey};
use super::jwks::{JwkSet, KeySelection};

/// Tokens longer than this are refused before any decoding (DESIGN: 16 KiB).
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 16 * 1024;

/// A syntactically valid compact JWS whose signature has not been checked.
#[derive(Debug)]
pub struct UnverifiedJwt<'a> {
    header: Header,
    signing_input: &'a str,
    payload: Vec<u8>,
    signature: Vec<u8>,
}

/// A JWS whose signature was verified with a trusted key. Its payload is not interpreted here:
/// a JWT's claims are read and validated by `crate::validate`.
#[derive(Debug, Clone)]
pub struct VerifiedJws {
    header: Header,
    payload: Vec<u8>,
}

impl<'a> UnverifiedJwt<'a> {
    /// Parses with the default size bound.
    pub fn parse(token: &'a str) -> Result<Self, JoseError> {
        Self::parse_with_limit(token, DEFAULT_MAX_TOKEN_BYTES)
    }

    /// Parses a compact JWS of at most `max_bytes`: exactly three strict-base64url parts, a
    /// header that is a JSON object with unique members and an acceptable `alg`, and a
    /// non-empty signature. The payload is decoded but not interpreted.
    pub fn parse_with_limit(token: &'a str, max_bytes: usize) -> Result<Self, JoseError> {
        if token.len() > max_bytes {
            return Err(JoseError::TooLarge { max: max_bytes });
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JoseError::Malformed);
        };
        if h.is_empty() {
            return Err(JoseError::Malformed);
        }
        let header_bytes = b64::decode(h).ok_or(JoseError::BadBase64("header"))?;
        let members =
            scan_object(&header_bytes, &Header::MEMBERS).map_err(|e| to_jose_error("header", e))?;
        // The header first, so an unsigned `alg: none` token is named as such.
        let header = Header::from_members(|name| members.get(name))?;
        if s.is_empty() {
            return Err(JoseError::Malformed);
        }
        let payload = b64::decode(p).ok_or(JoseError::BadBase64("payload"))?;
        let signature = b64::decode(s).ok_or(JoseError::BadBase64("signature"))?;
        let signing_input = &token[..h.len() + 1 + p.len()];
        Ok(Self {
            header,
            signing_input,
            payload,
            signature,
        })
    }

    /// The (unverified) header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Reads one string claim from the unverified payload. Only for routing (which issuer's
    /// keys to use); never for a decision that trusts the value.
    pub fn peek_string_claim(&self, name: &str) -> Option<String> {
        let object = parse_object(&self.payload).ok()?;
        match object.get(name) {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        }
    }

    /// The unverified payload, decoded but not parsed (for `oidcgate inspect`).
    pub fn unverified_payload(&self) -> &[u8] {
        &self.payload
    }

    /// Verifies with keys from a JWK Set, under an algorithm allow-list. HMAC algorithms never
    /// verify here: a JWKS key is never used as a shared secret.
    pub fn verify(&self, keys: &JwkSet, allowed: AlgorithmSet) -> Result<VerifiedJws, JoseError> {
        self.check_signature(keys, allowed)?;
        Ok(self.to_verified())
    }

    /// Verifies with one specific key.
    pub fn verify_with(&self, key: &VerifyingKey) -> Result<VerifiedJws, JoseError> {
        key.verify(
            self.header.alg(),
            self.signing_input.as_bytes(),
            &self.signature,
        )?;
        Ok(self.to_verified())
    }

    /// Verifies an HS256/384/512 token with a secret configured for the issuer.
    pub fn verify_hmac(
        &self,
        key: &HmacKey,
        allowed: AlgorithmSet,
    ) -> Result<VerifiedJws, JoseError> {
        self.check_hmac(key, allowed)?;
        Ok(self.to_verified())
    }

    /// The signature check of [`Self::verify`], without producing a [`VerifiedJws`] (the
    /// validator checks, may refetch keys and check again, then moves the payload out).
    pub(crate) fn check_signature(
        &self,
        keys: &JwkSet,
        allowed: AlgorithmSet,
    ) -> Result<(), JoseError> {
        let alg = self.header.alg();
        if !allowed.contains(alg) {
            return Err(JoseError::AlgorithmNotAllowed(alg.name()));
        }
        if alg.key_family() == KeyFamily::Hmac {
            return Err(JoseError::HmacNotConfigured);
        }
        let message = self.signing_input.as_bytes();
        match keys.select(&self.header)? {
            KeySelection::One(key) => key.verify(alg, message, &self.signature),
            // Only kid-less tokens (or a kid shared by several keys) get here; the set is bounded.
            KeySelection::Candidates(candidates) => candidates
                .iter()
                .find_map(|key| key.verify(alg, message, &self.signature).ok())
                .ok_or(JoseError::BadSignature),
        }
    }

    /// The check of [`Self::verify_hmac`].
    pub(crate) fn check_hmac(&self, key: &HmacKey, allowed: AlgorithmSet) -> Result<(), JoseError> {
        let alg = self.header.alg();
        if !allowed.contains(alg) {
            return Err(JoseError::AlgorithmNotAllowed(alg.name()));
        }
        key.verify(alg, self.signing_input.as_bytes(), &self.signature)
    }

    /// Moves header and payload out. Crate-private: call only after a successful check.
    pub(crate) fn into_verified(self) -> VerifiedJws {
        VerifiedJws {
            header: self.header,
            payload: self.payload,
        }
    }

    fn to_verified(&self) -> VerifiedJws {
        VerifiedJws {
            header: self.header.clone(),
            payload: self.payload.clone(),
        }
    }
}

impl VerifiedJws {
    /// The verified header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The verified payload bytes.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The payload as a JSON object with unique member names (a JWT claims set).
    pub fn claims(&self) -> Result<Map<String, Value>, JoseError> {
        parse_object(&self.payload).map_err(|e| to_jose_error("payload", e))
    }

    /// Takes the header and payload bytes.
    pub fn into_parts(self) -> (Header, Vec<u8>) {
        (self.header, self.payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(s: &str) -> String {
        b64::encode(s)
    }

    #[test]
    fn structural_rejections() {
        let h = enc(r#"{"alg":"RS256"}"#);
        let p = enc(r#"{"sub":"a"}"#);
        let ok = format!("{h}.{p}.AAAA");
        assert!(UnverifiedJwt::parse(&ok).is_ok());
        for bad in [
            String::new(),
            "a.b".into(),
            format!("{h}.{p}.AAAA.AAAA"),
            format!("{h}.{p}."),
            format!(".{p}.AAAA"),
            format!("{h} .{p}.AAAA"),
            format!("{h}.{p}.AAAA="),
        ] {
            assert!(UnverifiedJwt::parse(&bad).is_err(), "{bad}");
        }
        let none = format!("{}.{p}.AAAA", enc(r#"{"alg":"none"}"#));
        assert_eq!(UnverifiedJwt::parse(&none).err(), Some(JoseError::AlgNone));
        let array = format!("{}.{p}.AAAA", enc(r#"["alg"]"#));
        assert_eq!(
            UnverifiedJwt::parse(&array).err(),
            Some(JoseError::NotJsonObject("header"))
        );
        let dup = format!("{}.{p}.AAAA", enc(r#"{"alg":"RS256","alg":"HS256"}"#));
        assert!(matches!(
            UnverifiedJwt::parse(&dup),
            Err(JoseError::DuplicateMember("header", _))
        ));
        let big = format!("{h}.{}.AAAA", "A".repeat(DEFAULT_MAX_TOKEN_BYTES));
        assert!(matches!(
            UnverifiedJwt::parse(&big),
            Err(JoseError::TooLarge { .. })
        ));
    }

    #[test]
    fn peek_reads_only_strings() {
        let token = format!(
            "{}.{}.AAAA",
            enc(r#"{"alg":"ES256"}"#),
            enc(r#"{"iss":"https://i","n":1}"#)
        );
        let jwt = UnverifiedJwt::parse(&token).unwrap();
        assert_eq!(jwt.peek_string_claim("iss").as_deref(), Some("https://i"));
        assert_eq!(jwt.peek_string_claim("n"), None);
    }
}
