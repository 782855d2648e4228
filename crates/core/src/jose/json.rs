//! JSON objects with unique member names. serde_json keeps the last of duplicate members, but
//! two parsers disagreeing on which `iss` or `alg` counts is a classic JWT bypass, so duplicates
//! in a header or claims set are an error (RFC 7515 §4, RFC 7519 §4).

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

/// Where the object came from, for error messages.
pub(crate) type Part = &'static str;

/// Why [`parse_object`] failed.
#[derive(Debug)]
pub(crate) enum ObjectError {
    NotObject,
    Duplicate(String),
}

/// Parses `bytes` as a JSON object whose top-level member names are unique.
pub(crate) fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, ObjectError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let mut duplicate = None;
    let object = match de.deserialize_map(UniqueMapVisitor {
        duplicate: &mut duplicate,
    }) {
        Ok(map) => map,
        Err(_) => {
            return Err(match duplicate {
                Some(name) => ObjectError::Duplicate(name),
                None => ObjectError::NotObject,
            });
        }
    };
    de.end().map_err(|_| ObjectError::NotObject)?;
    Ok(object)
}

/// Converts an [`ObjectError`] into the JOSE error for `part`.
pub(crate) fn to_jose_error(part: Part, e: ObjectError) -> super::JoseError {
    match e {
        ObjectError::NotObject => super::JoseError::NotJsonObject(part),
        ObjectError::Duplicate(name) => super::JoseError::DuplicateMember(part, name),
    }
}

struct UniqueMapVisitor<'a> {
    /// The offending name, kept out of serde's error string so the message stays ours.
    duplicate: &'a mut Option<String>,
}

impl<'de> Visitor<'de> for UniqueMapVisitor<'_> {
    type Value = Map<String, Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let value: Value = access.next_value()?;
            if map.contains_key(&key) {
                *self.duplicate = Some(key.chars().take(64).collect());
                return Err(de::Error::custom("duplicate member"));
            }
            map.insert(key, value);
        }
        Ok(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_duplicates_and_non_objects() {
        assert!(
            parse_object(br#"{"a":1,"b":{"c":1,"c":2}}"#).is_ok(),
            "nested is not top level"
        );
        assert!(matches!(
            parse_object(br#"{"iss":"a","iss":"b"}"#),
            Err(ObjectError::Duplicate(n)) if n == "iss"
        ));
        for bad in [&b"[]"[..], b"1", b"\"s\"", b"{", b"{} x", b"null", b""] {
            assert!(
                matches!(parse_object(bad), Err(ObjectError::NotObject)),
                "{bad:?}"
            );
        }
    }
}
