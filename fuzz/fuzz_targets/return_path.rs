//! Fuzzes the `rd` return-URL check of the login layer: `safe_return_path` on any UTF-8 input.
//! Its answer must always be a safe relative path on this site: it starts with exactly one `/`
//! (never `//` or `/\`, as written or once or twice percent-decoded), holds no backslash and no
//! control character, has no scheme, is at most 2048 bytes, and is either the input unchanged
//! or `/`; feeding the answer back in returns it unchanged. Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oidcgate_axum::login::safe_return_path;

/// Percent-decodes `%XX` (lossy for invalid UTF-8), independently of the crate's own decoder.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = bytes.get(i + 1..i + 3)
            && let Ok(hex) = std::str::from_utf8(hex)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
            && hex.bytes().all(|b| b.is_ascii_hexdigit())
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The invariants every answer must meet.
fn assert_safe(input: &str, out: &str) {
    assert!(out == input || out == "/", "{input:?} became {out:?}");
    assert!(
        out.len() <= 2048,
        "{input:?}: answer longer than 2048 bytes"
    );
    assert!(out.starts_with('/'), "{input:?}: {out:?} is not a path");
    assert!(
        !out.bytes().any(|b| b < 0x20 || b == 0x7f || b == b'\\'),
        "{input:?}: {out:?} holds a control character or a backslash"
    );
    let once = decode(out);
    let twice = decode(&once);
    for form in [out, once.as_str(), twice.as_str()] {
        assert!(
            !form.starts_with("//") && !form.starts_with("/\\"),
            "{input:?}: {out:?} reads as a scheme-relative URL ({form:?})"
        );
    }
    assert!(
        url::Url::parse(out).is_err(),
        "{input:?}: {out:?} parses as an absolute URL"
    );
    let base = url::Url::parse("https://app.example/base/").expect("fixed base URL");
    let joined = base.join(out).expect("a relative path joins onto the base");
    assert_eq!(
        joined.origin(),
        base.origin(),
        "{input:?}: {out:?} leaves the site"
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(rd) = std::str::from_utf8(data) else {
        return;
    };
    let out = safe_return_path(rd);
    assert_safe(rd, &out);
    assert_eq!(safe_return_path(&out), out, "not idempotent for {rd:?}");
});
