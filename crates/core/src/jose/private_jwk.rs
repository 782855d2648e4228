//! The one piece of DER the signing side writes: a PKCS#1 `RSAPrivateKey` (RFC 8017 §A.1.2)
//! from a private RSA JWK's members, because aws-lc-rs loads RSA private keys only from DER.
//! It is plain serialization — a SEQUENCE of unsigned INTEGERs — and aws-lc-rs then checks that
//! the numbers form a consistent key.

/// DER of `RSAPrivateKey { version 0, n, e, d, p, q, dp, dq, qi }` from the members' big-endian
/// bytes, in that order.
pub(crate) fn rsa_pkcs1_der(members: &[Vec<u8>]) -> Vec<u8> {
    let mut body = integer(&[0]);
    for m in members {
        body.extend(integer(m));
    }
    tagged(0x30, &body)
}

/// A DER INTEGER holding the unsigned big-endian `value`: minimal, with a leading zero byte
/// when the top bit is set (so it stays positive).
fn integer(value: &[u8]) -> Vec<u8> {
    let first = value.iter().position(|b| *b != 0).unwrap_or(value.len());
    let digits = &value[first..];
    let mut content = Vec::with_capacity(digits.len() + 1);
    if digits.first().is_none_or(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(digits);
    tagged(0x02, &content)
}

fn tagged(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes
            .iter()
            .position(|b| *b != 0)
            .unwrap_or(bytes.len() - 1);
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_minimal_and_positive() {
        assert_eq!(integer(&[0]), [0x02, 0x01, 0x00]);
        assert_eq!(integer(&[]), [0x02, 0x01, 0x00]);
        assert_eq!(integer(&[0, 0, 0x7f]), [0x02, 0x01, 0x7f]);
        assert_eq!(integer(&[0x80]), [0x02, 0x02, 0x00, 0x80]);
        assert_eq!(integer(&[0x01, 0x00, 0x01]), [0x02, 0x03, 0x01, 0x00, 0x01]);
    }

    #[test]
    fn long_lengths_use_the_long_form() {
        let long = tagged(0x04, &[7u8; 200]);
        assert_eq!(&long[..3], &[0x04, 0x81, 200]);
        let longer = tagged(0x04, &[7u8; 300]);
        assert_eq!(&longer[..4], &[0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(longer.len(), 304);
    }
}
