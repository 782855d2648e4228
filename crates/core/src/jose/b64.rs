//! Strict base64url (RFC 7515 §2): URL-safe alphabet, no padding, no whitespace, no stray bits.

use base64::Engine as _;
use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// Rejects padding and non-canonical trailing bits, so each value has exactly one encoding.
const STRICT: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// Decodes strict base64url; `None` for anything else.
pub fn decode(input: &str) -> Option<Vec<u8>> {
    STRICT.decode(input.as_bytes()).ok()
}

/// Encodes as base64url without padding.
pub fn encode(input: impl AsRef<[u8]>) -> String {
    STRICT.encode(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_strictness() {
        assert_eq!(encode(b"\xfb\xff"), "-_8");
        assert_eq!(decode("-_8").as_deref(), Some(&b"\xfb\xff"[..]));
        assert_eq!(decode("-_8="), None, "padding");
        assert_eq!(decode("+/8"), None, "standard alphabet");
        assert_eq!(decode("-_ 8"), None, "whitespace");
        assert_eq!(decode("-_9"), None, "non-zero trailing bits");
        assert_eq!(decode("a"), None, "impossible length");
        assert_eq!(decode("").as_deref(), Some(&b""[..]));
    }
}
