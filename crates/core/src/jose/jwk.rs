//! JSON Web Keys (RFC 7517, RFC 7518 §6, RFC 8037) parsed once into aws-lc-rs public keys.
//!
//! A [`VerifyingKey`] is built when a JWK Set is loaded, with one pre-parsed aws-lc-rs key per
//! algorithm it may verify, so no request ever parses key material. Shared secrets
//! ([`HmacKey`]) come only from configuration, never from a JWK.

use std::fmt;

use aws_lc_rs::hmac;
use aws_lc_rs::signature::{ParsedPublicKey, RsaParameters, RsaPublicKeyComponents};
use serde_json::{Map, Value};

use super::alg::{Algorithm, truncate};
use super::b64;
use super::error::JoseError;

/// Smallest RSA modulus accepted (RFC 7518 §3.3) and largest aws-lc-rs verifies.
const RSA_MIN_BITS: usize = 2048;
const RSA_MAX_BITS: usize = 8192;

/// The key type, for matching and display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA with its modulus size in bits.
    Rsa { bits: usize },
    /// EC on a NIST curve (`P-256`, `P-384`, `P-521`).
    Ec { crv: &'static str },
    /// OKP Ed25519.
    Ed25519,
}

/// A public signing key from a JWKS, pre-parsed for every algorithm it may verify.
pub struct VerifyingKey {
    kid: Option<String>,
    kind: KeyKind,
    /// The JWK's `alg` when it named one: then this is the only algorithm it verifies.
    alg: Option<Algorithm>,
    parsed: Vec<(Algorithm, ParsedPublicKey)>,
    /// SHA-256 over `kid` and the public key (SubjectPublicKeyInfo): identifies the key itself,
    /// so a key replaced under the same `kid` is a different key.
    fingerprint: [u8; 32],
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("kind", &self.kind)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// Private members that must never appear in a published key set.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

impl VerifyingKey {
    /// Parses one JWK. Fails (and the key set loader skips the key, saying why) for encryption
    /// keys (`use` other than `sig`, `key_ops` without `verify`), symmetric keys, private keys,
    /// unsupported types or curves, RSA moduli outside 2048..=8192 bits, points not on the curve,
    /// and a JWK `alg` that does not fit its key type.
    pub fn from_jwk(jwk: &Map<String, Value>) -> Result<Self, JoseError> {
        let kty = string_member(jwk, "kty")?.ok_or_else(|| invalid("missing kty"))?;
        if let Some(use_) = string_member(jwk, "use")?
            && use_ != "sig"
        {
            return Err(invalid(format!(
                "use {:?} is not a signing key",
                truncate(use_)
            )));
        }
        if let Some(ops) = jwk.get("key_ops") {
            let ops = ops
                .as_array()
                .ok_or_else(|| invalid("key_ops is not an array"))?;
            if !ops.iter().any(|op| op.as_str() == Some("verify")) {
                return Err(invalid("key_ops does not allow verify"));
            }
        }
        if let Some(member) = PRIVATE_MEMBERS.iter().find(|m| jwk.contains_key(**m)) {
            return Err(invalid(format!(
                "contains private or secret member {member:?}"
            )));
        }
        let kid = string_member(jwk, "kid")?.map(str::to_owned);
        let alg = match string_member(jwk, "alg")? {
            None => None,
            Some(name) => Some(name.parse::<Algorithm>().map_err(|_| {
                invalid(format!(
                    "alg {:?} is not a supported signature algorithm",
                    truncate(name)
                ))
            })?),
        };
        let (kind, candidates, material) = match kty {
            "RSA" => {
                let n = strip_leading_zeros(bytes_member(jwk, "n")?);
                let e = strip_leading_zeros(bytes_member(jwk, "e")?);
                if n.is_empty() || e.is_empty() {
                    return Err(invalid("RSA n or e is zero"));
                }
                // Public exponents are odd and at least 3 (65537 in practice); 1 makes every
                // signature trivially forgeable, so such a key is refused at load.
                if e.len() > 8 || e.last().is_some_and(|b| b & 1 == 0) || (e.len() == 1 && e[0] < 3)
                {
                    return Err(invalid(
                        "RSA public exponent is not an odd number of at least 3",
                    ));
                }
                let bits = n.len() * 8 - n[0].leading_zeros() as usize;
                if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
                    return Err(invalid(format!(
                        "RSA modulus of {bits} bits (need 2048 to 8192)"
                    )));
                }
                let algs = [
                    Algorithm::RS256,
                    Algorithm::RS384,
                    Algorithm::RS512,
                    Algorithm::PS256,
                    Algorithm::PS384,
                    Algorithm::PS512,
                ];
                (KeyKind::Rsa { bits }, algs.to_vec(), Material::Rsa { n, e })
            }
            "EC" => {
                let crv = string_member(jwk, "crv")?.ok_or_else(|| invalid("missing crv"))?;
                let (crv, len, alg) = match crv {
                    "P-256" => ("P-256", 32, Algorithm::ES256),
                    "P-384" => ("P-384", 48, Algorithm::ES384),
                    "P-521" => ("P-521", 66, Algorithm::ES512),
                    other => {
                        return Err(invalid(format!(
                            "unsupported EC curve {:?}",
                            truncate(other)
                        )));
                    }
                };
                let x = bytes_member(jwk, "x")?;
                let y = bytes_member(jwk, "y")?;
                if x.len() != len || y.len() != len {
                    return Err(invalid(format!("{crv} coordinates must be {len} bytes")));
                }
                let mut point = Vec::with_capacity(1 + 2 * len);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                (KeyKind::Ec { crv }, vec![alg], Material::Raw(point))
            }
            "OKP" => {
                let crv = string_member(jwk, "crv")?.ok_or_else(|| invalid("missing crv"))?;
                if crv != "Ed25519" {
                    return Err(invalid(format!(
                        "unsupported OKP curve {:?}",
                        truncate(crv)
                    )));
                }
                let x = bytes_member(jwk, "x")?;
                if x.len() != 32 {
                    return Err(invalid("Ed25519 x must be 32 bytes"));
                }
                (
                    KeyKind::Ed25519,
                    vec![Algorithm::EdDSA, Algorithm::Ed25519],
                    Material::Raw(x),
                )
            }
            "oct" => return Err(invalid("symmetric keys are never taken from a JWK Set")),
            other => return Err(invalid(format!("unsupported kty {:?}", truncate(other)))),
        };
        let algs: Vec<Algorithm> = match alg {
            Some(alg) if candidates.contains(&alg) => vec![alg],
            Some(alg) => return Err(invalid(format!("alg {alg} does not fit kty {kty}"))),
            None => candidates,
        };
        let mut parsed = Vec::with_capacity(algs.len());
        for alg in algs {
            let key = material
                .parse(alg)
                .map_err(|()| invalid(format!("key rejected for {alg}")))?;
            parsed.push((alg, key));
        }
        let mut material = kid.clone().unwrap_or_default().into_bytes();
        material.push(0);
        material.extend_from_slice(parsed.first().map(|(_, k)| k.as_ref()).unwrap_or_default());
        let mut fingerprint = [0u8; 32];
        fingerprint.copy_from_slice(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &material).as_ref(),
        );
        Ok(Self {
            kid,
            kind,
            alg,
            parsed,
            fingerprint,
        })
    }

    /// A fingerprint of `kid` and the public key.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// The key id.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The key type.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The JWK's declared algorithm, if any.
    pub fn declared_alg(&self) -> Option<Algorithm> {
        self.alg
    }

    /// Whether this key may verify `alg` (key type, curve and declared `alg` all fit).
    pub fn fits(&self, alg: Algorithm) -> bool {
        self.parsed.iter().any(|(a, _)| *a == alg)
    }

    /// Verifies `signature` over `message` with `alg`.
    pub fn verify(
        &self,
        alg: Algorithm,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), JoseError> {
        let (_, key) = self.parsed.iter().find(|(a, _)| *a == alg).ok_or_else(|| {
            JoseError::KeyAlgorithmMismatch {
                kid: self.kid.clone().unwrap_or_default(),
                alg: alg.name(),
            }
        })?;
        key.verify_sig(message, signature)
            .map_err(|_| JoseError::BadSignature)
    }
}

/// Decoded key material, kept only until the per-algorithm keys are parsed.
enum Material {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    Raw(Vec<u8>),
}

impl Material {
    fn parse(&self, alg: Algorithm) -> Result<ParsedPublicKey, ()> {
        match self {
            Material::Rsa { n, e } => {
                let params: &'static RsaParameters = rsa_parameters(alg).ok_or(())?;
                RsaPublicKeyComponents {
                    n: n.as_slice(),
                    e: e.as_slice(),
                }
                .to_parsed_public_key(params)
                .map_err(|_| ())
            }
            Material::Raw(bytes) => {
                let verification = alg.verification().ok_or(())?;
                ParsedPublicKey::new(verification, bytes).map_err(|_| ())
            }
        }
    }
}

fn rsa_parameters(alg: Algorithm) -> Option<&'static RsaParameters> {
    use aws_lc_rs::signature as s;
    Some(match alg {
        Algorithm::RS256 => &s::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &s::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &s::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &s::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &s::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &s::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

/// Some IdPs pad `n` with a zero byte (two's complement habit); the value is the same.
fn strip_leading_zeros(mut bytes: Vec<u8>) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|b| **b == 0).count();
    bytes.drain(..zeros);
    bytes
}

fn invalid(msg: impl Into<String>) -> JoseError {
    JoseError::InvalidJwk(msg.into())
}

fn string_member<'a>(
    jwk: &'a Map<String, Value>,
    name: &'static str,
) -> Result<Option<&'a str>, JoseError> {
    match jwk.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(format!("{name} is not a string"))),
    }
}

fn bytes_member(jwk: &Map<String, Value>, name: &'static str) -> Result<Vec<u8>, JoseError> {
    let s = string_member(jwk, name)?.ok_or_else(|| invalid(format!("missing {name}")))?;
    b64::decode(s).ok_or_else(|| invalid(format!("{name} is not base64url")))
}

/// A shared secret for HS256/384/512, configured explicitly for one issuer.
pub struct HmacKey {
    sha256: hmac::Key,
    sha384: hmac::Key,
    sha512: hmac::Key,
}

impl fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HmacKey(<redacted>)")
    }
}

impl HmacKey {
    /// Smallest secret accepted: RFC 7518 §3.2 wants at least the hash size; 32 bytes for all
    /// three keeps one secret usable with each.
    pub const MIN_SECRET_BYTES: usize = 32;

    /// Builds the key; fails for secrets shorter than [`Self::MIN_SECRET_BYTES`].
    pub fn new(secret: &[u8]) -> Result<Self, JoseError> {
        if secret.len() < Self::MIN_SECRET_BYTES {
            return Err(JoseError::InvalidJwk(format!(
                "HMAC secret must be at least {} bytes",
                Self::MIN_SECRET_BYTES
            )));
        }
        Ok(Self {
            sha256: hmac::Key::new(hmac::HMAC_SHA256, secret),
            sha384: hmac::Key::new(hmac::HMAC_SHA384, secret),
            sha512: hmac::Key::new(hmac::HMAC_SHA512, secret),
        })
    }

    fn key(&self, alg: Algorithm) -> Option<&hmac::Key> {
        match alg {
            Algorithm::HS256 => Some(&self.sha256),
            Algorithm::HS384 => Some(&self.sha384),
            Algorithm::HS512 => Some(&self.sha512),
            _ => None,
        }
    }

    /// Verifies a MAC in constant time.
    pub fn verify(&self, alg: Algorithm, message: &[u8], tag: &[u8]) -> Result<(), JoseError> {
        let key = self.key(alg).ok_or(JoseError::KeyAlgorithmMismatch {
            kid: String::new(),
            alg: alg.name(),
        })?;
        hmac::verify(key, message, tag).map_err(|_| JoseError::BadSignature)
    }

    /// Computes a MAC (signing tokens in tests and tools).
    pub fn sign(&self, alg: Algorithm, message: &[u8]) -> Result<Vec<u8>, JoseError> {
        let key = self.key(alg).ok_or(JoseError::SigningFailed)?;
        Ok(hmac::sign(key, message).as_ref().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn jwk(v: Value) -> Result<VerifyingKey, JoseError> {
        VerifyingKey::from_jwk(v.as_object().expect("object"))
    }

    const P256_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    const P256_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

    #[test]
    fn ec_key_parses_and_fits_only_its_curve() {
        let key = jwk(json!({"kty":"EC","crv":"P-256","x":P256_X,"y":P256_Y,"kid":"1"})).unwrap();
        assert!(key.fits(Algorithm::ES256));
        assert!(!key.fits(Algorithm::ES384));
        assert!(!key.fits(Algorithm::RS256));
        assert_eq!(key.kind(), KeyKind::Ec { crv: "P-256" });
    }

    #[test]
    fn refusals() {
        let base = json!({"kty":"EC","crv":"P-256","x":P256_X,"y":P256_Y});
        let with = |k: &str, v: Value| {
            let mut o = base.clone();
            o[k] = v;
            jwk(o)
        };
        assert!(with("use", json!("enc")).is_err());
        assert!(with("use", json!("sig")).is_ok());
        assert!(with("key_ops", json!(["encrypt"])).is_err());
        assert!(with("key_ops", json!(["verify"])).is_ok());
        assert!(
            with("alg", json!("ES384")).is_err(),
            "alg must fit the curve"
        );
        assert!(with("alg", json!("RSA-OAEP")).is_err());
        assert!(with("d", json!("AAAA")).is_err(), "private key published");
        assert!(with("crv", json!("secp256k1")).is_err());
        assert!(with("x", json!("AAAA")).is_err(), "short coordinate");
        // A point that is not on the curve.
        assert!(with("y", json!(P256_X)).is_err());
        assert!(jwk(json!({"kty":"oct","k":"AAAA"})).is_err());
        assert!(
            jwk(json!({"kty":"RSA","n":"AQAB","e":"AQAB"})).is_err(),
            "tiny modulus"
        );
        assert!(jwk(json!({"crv":"P-256"})).is_err());
        assert!(jwk(json!({"kty":"OKP","crv":"Ed448","x":"AAAA"})).is_err());
    }

    #[test]
    fn hmac_needs_a_long_secret() {
        assert!(HmacKey::new(&[7; 31]).is_err());
        let key = HmacKey::new(&[7; 32]).unwrap();
        let tag = key.sign(Algorithm::HS384, b"m").unwrap();
        assert!(key.verify(Algorithm::HS384, b"m", &tag).is_ok());
        assert!(key.verify(Algorithm::HS256, b"m", &tag).is_err());
        assert_eq!(format!("{key:?}"), "HmacKey(<redacted>)");
    }
}
