//! The JOSE header of a JWS (RFC 7515 §4): what oidcgate reads from it and what it refuses.

use serde_json::{Map, Value};

use super::alg::{Algorithm, truncate};
use super::error::JoseError;

/// The header members that matter for verification. `jku`, `x5u`, `jwk` and `x5c` are
/// deliberately not kept: a key named by the token itself is never fetched or trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    alg: Algorithm,
    kid: Option<String>,
    typ: Option<String>,
}

/// A `kid` longer than this is not a key id anyone publishes; refusing it bounds lookups.
const MAX_KID_LEN: usize = 256;

impl Header {
    /// Reads a header object. Fails on a missing or unsupported `alg` (`none` in any spelling),
    /// on wrongly typed `kid`/`typ`, and on any `crit` entry: this implementation understands
    /// no extension, so RFC 7515 §4.1.11 requires rejecting a token that marks one critical.
    pub fn from_object(object: &Map<String, Value>) -> Result<Self, JoseError> {
        Self::from_members(|name| object.get(name))
    }

    /// [`Self::from_object`] over any member lookup (the parser passes only the members it
    /// kept, see [`Self::MEMBERS`]).
    pub(crate) fn from_members<'v>(
        get: impl Fn(&str) -> Option<&'v Value>,
    ) -> Result<Self, JoseError> {
        let alg = match get("alg") {
            None => return Err(JoseError::MissingAlg),
            Some(Value::String(s)) => s.parse::<Algorithm>()?,
            Some(Value::Null) => return Err(JoseError::AlgNone),
            Some(_) => return Err(JoseError::BadHeaderParameter("alg")),
        };
        let kid = optional_string(get("kid"), "kid")?;
        if kid.as_ref().is_some_and(|k| k.len() > MAX_KID_LEN) {
            return Err(JoseError::BadHeaderParameter("kid"));
        }
        let typ = optional_string(get("typ"), "typ")?;
        match get("crit") {
            None => {}
            Some(Value::Array(entries)) => {
                let first = entries
                    .first()
                    .ok_or(JoseError::BadHeaderParameter("crit"))?;
                let name = first
                    .as_str()
                    .ok_or(JoseError::BadHeaderParameter("crit"))?;
                return Err(JoseError::UnsupportedCritical(truncate(name)));
            }
            Some(_) => return Err(JoseError::BadHeaderParameter("crit")),
        }
        // RFC 7797 unencoded payloads change what is signed; we never produce or accept them.
        if let Some(b64) = get("b64")
            && b64 != &Value::Bool(true)
        {
            return Err(JoseError::UnsupportedCritical("b64".into()));
        }
        Ok(Self { alg, kid, typ })
    }

    /// The members [`Self::from_object`] reads; the rest of a header is syntax-checked only.
    pub(crate) const MEMBERS: [&'static str; 5] = ["alg", "kid", "typ", "crit", "b64"];

    /// A header for signing (used by the `signing` feature and tests).
    pub fn new(alg: Algorithm, kid: Option<String>, typ: Option<String>) -> Self {
        Self { alg, kid, typ }
    }

    /// The signature algorithm.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The key id, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The media type (`typ`), if any.
    pub fn typ(&self) -> Option<&str> {
        self.typ.as_deref()
    }

    /// RFC 7515 §4.1.9: `typ` compares case-insensitively and `application/` may be omitted.
    pub fn typ_is(&self, media_type: &str) -> bool {
        let Some(typ) = self.typ.as_deref() else {
            return false;
        };
        let bare = |s: &str| -> String {
            let lower = s.to_ascii_lowercase();
            match lower.strip_prefix("application/") {
                Some(rest) => rest.to_owned(),
                None => lower,
            }
        };
        bare(typ) == bare(media_type)
    }
}

fn optional_string(value: Option<&Value>, name: &'static str) -> Result<Option<String>, JoseError> {
    match value {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(JoseError::BadHeaderParameter(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn header(v: Value) -> Result<Header, JoseError> {
        Header::from_object(v.as_object().expect("object"))
    }

    #[test]
    fn reads_and_refuses() {
        let h =
            header(json!({"alg":"ES256","kid":"k1","typ":"at+JWT","jku":"https://evil"})).unwrap();
        assert_eq!((h.alg(), h.kid()), (Algorithm::ES256, Some("k1")));
        assert!(h.typ_is("application/at+jwt"));
        assert!(h.typ_is("at+jwt"));
        assert!(!h.typ_is("jwt"));
        assert_eq!(header(json!({"typ":"JWT"})), Err(JoseError::MissingAlg));
        assert_eq!(header(json!({"alg":"none"})), Err(JoseError::AlgNone));
        assert_eq!(header(json!({"alg":null})), Err(JoseError::AlgNone));
        assert_eq!(
            header(json!({"alg":["RS256"]})),
            Err(JoseError::BadHeaderParameter("alg"))
        );
        assert_eq!(
            header(json!({"alg":"RS256","kid":7})),
            Err(JoseError::BadHeaderParameter("kid"))
        );
        assert_eq!(
            header(json!({"alg":"RS256","crit":["exp"],"exp":1})),
            Err(JoseError::UnsupportedCritical("exp".into()))
        );
        assert_eq!(
            header(json!({"alg":"RS256","crit":[]})),
            Err(JoseError::BadHeaderParameter("crit"))
        );
        assert_eq!(
            header(json!({"alg":"RS256","crit":"b64"})),
            Err(JoseError::BadHeaderParameter("crit"))
        );
        assert!(header(json!({"alg":"RS256","b64":false})).is_err());
        assert!(header(json!({"alg":"RS256","kid":"x".repeat(300)})).is_err());
    }
}
