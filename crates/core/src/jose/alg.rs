//! JWS algorithms (RFC 7518 §3, RFC 8037, RFC 9864) and the allow-list policy.

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::signature::{self, VerificationAlgorithm};

use super::error::JoseError;

/// A JWS signature algorithm oidcgate can verify. `none` is deliberately not representable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    ES512,
    /// EdDSA; only the Ed25519 curve is supported (Ed448 keys are skipped).
    EdDSA,
    /// The fully-specified Ed25519 name of RFC 9864.
    Ed25519,
    HS256,
    HS384,
    HS512,
}

/// The key family an algorithm needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    Rsa,
    /// An EC key on the named curve (`crv`).
    Ec(&'static str),
    /// An OKP key on Ed25519.
    Ed25519,
    /// A shared secret configured for the issuer.
    Hmac,
}

impl Algorithm {
    /// Every algorithm, for iteration.
    pub const ALL: [Algorithm; 14] = [
        Self::RS256,
        Self::RS384,
        Self::RS512,
        Self::PS256,
        Self::PS384,
        Self::PS512,
        Self::ES256,
        Self::ES384,
        Self::ES512,
        Self::EdDSA,
        Self::Ed25519,
        Self::HS256,
        Self::HS384,
        Self::HS512,
    ];

    /// The asymmetric algorithms accepted by default (DESIGN §2).
    pub const DEFAULT_ALLOWED: [Algorithm; 10] = [
        Self::RS256,
        Self::RS384,
        Self::RS512,
        Self::PS256,
        Self::PS384,
        Self::PS512,
        Self::ES256,
        Self::ES384,
        Self::ES512,
        Self::EdDSA,
    ];

    /// The registered name.
    pub fn name(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::PS256 => "PS256",
            Self::PS384 => "PS384",
            Self::PS512 => "PS512",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::ES512 => "ES512",
            Self::EdDSA => "EdDSA",
            Self::Ed25519 => "Ed25519",
            Self::HS256 => "HS256",
            Self::HS384 => "HS384",
            Self::HS512 => "HS512",
        }
    }

    /// Which kind of key verifies this algorithm.
    pub fn key_family(self) -> KeyFamily {
        match self {
            Self::RS256 | Self::RS384 | Self::RS512 | Self::PS256 | Self::PS384 | Self::PS512 => {
                KeyFamily::Rsa
            }
            Self::ES256 => KeyFamily::Ec("P-256"),
            Self::ES384 => KeyFamily::Ec("P-384"),
            Self::ES512 => KeyFamily::Ec("P-521"),
            Self::EdDSA | Self::Ed25519 => KeyFamily::Ed25519,
            Self::HS256 | Self::HS384 | Self::HS512 => KeyFamily::Hmac,
        }
    }

    /// True for HS256/384/512.
    pub fn is_hmac(self) -> bool {
        self.key_family() == KeyFamily::Hmac
    }

    /// The aws-lc-rs verification algorithm for asymmetric algorithms. RSA keys must be at least
    /// 2048 bits (RFC 7518 §3.3); JWS ECDSA signatures are the fixed-width `r || s` form.
    pub(crate) fn verification(self) -> Option<&'static dyn VerificationAlgorithm> {
        Some(match self {
            Self::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Self::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            Self::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            Self::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
            Self::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
            Self::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
            Self::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
            Self::ES384 => &signature::ECDSA_P384_SHA384_FIXED,
            Self::ES512 => &signature::ECDSA_P521_SHA512_FIXED,
            Self::EdDSA | Self::Ed25519 => &signature::ED25519,
            Self::HS256 | Self::HS384 | Self::HS512 => return None,
        })
    }

    /// Index into per-algorithm tables.
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Algorithm {
    type Err = JoseError;

    /// Exact, case-sensitive names (RFC 7515 §4.1.1). `none` in any spelling is its own error.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(alg) = Self::ALL.into_iter().find(|a| a.name() == s) {
            return Ok(alg);
        }
        if s.trim().eq_ignore_ascii_case("none") {
            return Err(JoseError::AlgNone);
        }
        Err(JoseError::UnsupportedAlgorithm(truncate(s)))
    }
}

/// A set of allowed algorithms (a bit set: cheap to copy and test).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AlgorithmSet(u16);

impl AlgorithmSet {
    /// The empty set.
    pub const fn empty() -> Self {
        Self(0)
    }

    /// The default allow-list: every asymmetric algorithm, no HMAC.
    pub fn default_asymmetric() -> Self {
        Algorithm::DEFAULT_ALLOWED.into_iter().collect()
    }

    /// Adds an algorithm.
    pub fn insert(&mut self, alg: Algorithm) {
        self.0 |= 1 << alg.index();
    }

    /// Removes an algorithm.
    pub fn remove(&mut self, alg: Algorithm) {
        self.0 &= !(1 << alg.index());
    }

    /// Membership.
    pub fn contains(self, alg: Algorithm) -> bool {
        self.0 & (1 << alg.index()) != 0
    }

    /// The members, in declaration order.
    pub fn iter(self) -> impl Iterator<Item = Algorithm> {
        Algorithm::ALL
            .into_iter()
            .filter(move |a| self.contains(*a))
    }

    /// True when no algorithm is allowed.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl Default for AlgorithmSet {
    fn default() -> Self {
        Self::default_asymmetric()
    }
}

impl FromIterator<Algorithm> for AlgorithmSet {
    fn from_iter<I: IntoIterator<Item = Algorithm>>(iter: I) -> Self {
        let mut set = Self::empty();
        for alg in iter {
            set.insert(alg);
        }
        set
    }
}

impl fmt::Debug for AlgorithmSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// Bounds attacker-chosen text before it goes into an error message.
pub(crate) fn truncate(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_in_any_spelling_is_rejected() {
        for s in ["none", "None", "NONE", "nOnE", " none"] {
            assert_eq!(s.parse::<Algorithm>(), Err(JoseError::AlgNone), "{s}");
        }
        assert!(matches!(
            "rs256".parse::<Algorithm>(),
            Err(JoseError::UnsupportedAlgorithm(_))
        ));
        assert_eq!("PS384".parse::<Algorithm>(), Ok(Algorithm::PS384));
    }

    #[test]
    fn default_set_has_no_hmac() {
        let set = AlgorithmSet::default();
        assert!(set.contains(Algorithm::ES512));
        assert!(!set.contains(Algorithm::HS256));
        assert_eq!(set.iter().count(), 10);
    }
}
