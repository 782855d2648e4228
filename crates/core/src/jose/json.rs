//! JSON objects with unique member names. serde_json keeps the last of duplicate members, but
//! two parsers disagreeing on which `iss` or `alg` counts is a classic JWT bypass, so duplicates
//! in a header or claims set are an error (RFC 7515 §4, RFC 7519 §4).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};
use smallvec::SmallVec;

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

/// Values of chosen top-level members of a JSON object, in the order of the chosen names.
#[derive(Debug)]
pub(crate) struct Picked<'n, S> {
    names: &'n [S],
    values: SmallVec<[Option<Value>; 12]>,
}

impl<S: AsRef<str>> Picked<'_, S> {
    /// The value of a chosen member, if the object had it.
    pub(crate) fn get(&self, name: &str) -> Option<&Value> {
        let index = self.names.iter().position(|n| n.as_ref() == name)?;
        self.values.get(index)?.as_ref()
    }
}

/// One strict pass over a JSON object: every top-level member name must be unique, the members
/// named in `names` are kept as values, and the rest are syntax-checked and skipped without
/// being built. Verifying a token needs a handful of registered claims; building all of them
/// (and a map to hold them) was most of the cost of validation beyond the signature itself.
pub(crate) fn scan_object<'n, S: AsRef<str>>(
    bytes: &[u8],
    names: &'n [S],
) -> Result<Picked<'n, S>, ObjectError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let mut duplicate = None;
    let visitor = ScanVisitor {
        names,
        duplicate: &mut duplicate,
    };
    let values = match de.deserialize_map(visitor) {
        Ok(values) => values,
        Err(_) => {
            return Err(match duplicate {
                Some(name) => ObjectError::Duplicate(name),
                None => ObjectError::NotObject,
            });
        }
    };
    de.end().map_err(|_| ObjectError::NotObject)?;
    Ok(Picked { names, values })
}

struct ScanVisitor<'a, S> {
    names: &'a [S],
    duplicate: &'a mut Option<String>,
}

/// A member name, borrowed from the input when it has no escapes.
struct NameSeed;

impl<'de> de::DeserializeSeed<'de> for NameSeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(NameVisitor)
    }
}

struct NameVisitor;

impl<'de> Visitor<'de> for NameVisitor {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

/// Skips a value as strictly as building it would check it: strings are decoded (UTF-8, no
/// lone surrogates), numbers parsed (in range) and nesting counted by serde_json's depth
/// limit. serde's `IgnoredAny` checks none of these, which would let a signed token validate
/// while its full claim map later failed to build.
struct Strict;

impl<'de> de::DeserializeSeed<'de> for Strict {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        if v.is_finite() {
            Ok(())
        } else {
            Err(E::custom("number out of range"))
        }
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Strict)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(Strict)?.is_some() {
            map.next_value_seed(Strict)?;
        }
        Ok(())
    }
}

/// FNV-1a: a cheap fingerprint so the duplicate check mostly compares integers.
fn fingerprint(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl<'de, S: AsRef<str>> Visitor<'de> for ScanVisitor<'_, S> {
    type Value = SmallVec<[Option<Value>; 12]>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut values: Self::Value = SmallVec::from_elem(None, self.names.len());
        // Names seen so far, on the stack for ordinary claims sets.
        let mut seen: SmallVec<[(u64, Cow<'de, str>); 32]> = SmallVec::new();
        while let Some(name) = access.next_key_seed(NameSeed)? {
            let print = fingerprint(&name);
            if seen.iter().any(|(p, n)| *p == print && *n == name) {
                *self.duplicate = Some(name.chars().take(64).collect());
                return Err(de::Error::custom("duplicate member"));
            }
            match self.names.iter().position(|n| n.as_ref() == name) {
                Some(index) => values[index] = Some(access.next_value()?),
                None => {
                    access.next_value_seed(Strict)?;
                }
            }
            seen.push((print, name));
        }
        Ok(values)
    }
}

#[cfg(test)]
mod scan_tests {
    use super::*;

    #[test]
    fn scan_keeps_chosen_members_and_rejects_duplicates_anywhere() {
        let doc = br#"{"iss":"a","big":{"x":[1,2,{"y":null}]},"n\u0061me":"esc","exp":5}"#;
        let picked = scan_object(doc, &["iss", "exp", "name", "absent"]).unwrap();
        assert_eq!(picked.get("iss"), Some(&Value::from("a")));
        assert_eq!(picked.get("name"), Some(&Value::from("esc")));
        assert_eq!(picked.get("exp"), Some(&Value::from(5)));
        assert_eq!(picked.get("absent"), None);
        assert_eq!(picked.get("big"), None, "not chosen");
        assert!(matches!(
            scan_object(br#"{"a":1,"skipped":1,"skipped":2}"#, &["a"]),
            Err(ObjectError::Duplicate(n)) if n == "skipped"
        ));
        // An escaped spelling of the same name is the same name.
        assert!(matches!(
            scan_object(br#"{"iss":1,"\u0069ss":2}"#, &[""; 0]),
            Err(ObjectError::Duplicate(_))
        ));
        // More members than the inline capacity of the duplicate check.
        let many: String = (0..100)
            .map(|i| format!("\"m{i}\":{i},"))
            .collect::<String>()
            + "\"m7\":0";
        assert!(matches!(
            scan_object(format!("{{{many}}}").as_bytes(), &["m1"]),
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
                matches!(scan_object(bad, &["a"]), Err(ObjectError::NotObject)),
                "{bad:?}"
            );
        }
    }
}

#[cfg(test)]
mod strict_tests {
    use super::*;

    #[test]
    fn skipped_members_are_checked_as_strictly_as_the_full_parse() {
        let deep = format!("{{\"x\":{}1{}}}", "[".repeat(200), "]".repeat(200));
        let cases: [Vec<u8>; 4] = [
            br#"{"a":1,"x":1e400}"#.to_vec(),
            br#"{"a":1,"x":"\ud800"}"#.to_vec(),
            b"{\"a\":1,\"x\":\"\xff\"}".to_vec(),
            deep.into_bytes(),
        ];
        for hostile in cases {
            let shown = String::from_utf8_lossy(&hostile).into_owned();
            assert!(scan_object(&hostile, &["a"]).is_err(), "{shown}");
            assert!(parse_object(&hostile).is_err(), "{shown}");
        }
        // Ordinary nested values still pass, and the full parse agrees.
        let fine = br#"{"a":1,"x":{"y":[1,2.5,"s",null,true,{"z":"\u00e9"}]}}"#;
        assert!(scan_object(fine, &["a"]).is_ok());
        assert!(parse_object(fine).is_ok());
    }
}
