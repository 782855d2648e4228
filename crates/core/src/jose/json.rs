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

/// One pass over a JSON object: every top-level member name must be unique, members for which
/// `wanted` says yes are returned as values, and the rest are syntax-checked and skipped
/// without being built. Verifying a token needs a handful of registered claims; building all
/// of them up front was most of the cost of validation beyond the signature itself.
pub(crate) fn scan_object(
    bytes: &[u8],
    wanted: impl Fn(&str) -> bool,
) -> Result<Map<String, Value>, ObjectError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let mut duplicate = None;
    let visitor = ScanVisitor {
        wanted: &wanted,
        duplicate: &mut duplicate,
    };
    let object = match de.deserialize_map(visitor) {
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

struct ScanVisitor<'a, W> {
    wanted: &'a W,
    duplicate: &'a mut Option<String>,
}

/// A member name, borrowed from the input when it has no escapes.
struct NameSeed;

impl<'de> de::DeserializeSeed<'de> for NameSeed {
    type Value = std::borrow::Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(NameVisitor)
    }
}

struct NameVisitor;

impl<'de> Visitor<'de> for NameVisitor {
    type Value = std::borrow::Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(std::borrow::Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(std::borrow::Cow::Owned(v.to_owned()))
    }
}

/// FNV-1a: a cheap fingerprint so the duplicate check compares integers, not strings.
fn fingerprint(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl<'de, W: Fn(&str) -> bool> Visitor<'de> for ScanVisitor<'_, W> {
    type Value = Map<String, Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut kept = Map::new();
        let mut seen: Vec<(u64, std::borrow::Cow<'de, str>)> = Vec::with_capacity(32);
        while let Some(name) = access.next_key_seed(NameSeed)? {
            let print = fingerprint(&name);
            if seen.iter().any(|(p, n)| *p == print && *n == name) {
                *self.duplicate = Some(name.chars().take(64).collect());
                return Err(de::Error::custom("duplicate member"));
            }
            if (self.wanted)(&name) {
                let value: Value = access.next_value()?;
                kept.insert(name.clone().into_owned(), value);
            } else {
                access.next_value::<de::IgnoredAny>()?;
            }
            seen.push((print, name));
        }
        Ok(kept)
    }
}

#[cfg(test)]
mod scan_tests {
    use super::*;

    #[test]
    fn scan_keeps_wanted_and_rejects_duplicates_anywhere() {
        let doc = br#"{"iss":"a","big":{"x":[1,2,{"y":null}]},"n\u0061me":"esc","exp":5}"#;
        let kept = scan_object(doc, |n| n == "iss" || n == "exp" || n == "name").unwrap();
        assert_eq!(kept.len(), 3);
        assert_eq!(kept["name"], "esc");
        assert!(matches!(
            scan_object(br#"{"a":1,"skipped":1,"skipped":2}"#, |n| n == "a"),
            Err(ObjectError::Duplicate(n)) if n == "skipped"
        ));
        // An escaped spelling of the same name is the same name.
        assert!(matches!(
            scan_object(br#"{"iss":1,"\u0069ss":2}"#, |_| false),
            Err(ObjectError::Duplicate(_))
        ));
        for bad in [
            &b"[]"[..],
            b"{\"a\":}",
            b"{\"a\":1,}",
            b"{} {}",
            b"{\"a\":tru}",
        ] {
            assert!(
                matches!(scan_object(bad, |_| true), Err(ObjectError::NotObject)),
                "{bad:?}"
            );
        }
    }
}
