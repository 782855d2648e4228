//! Return URLs (`rd`): only a relative path on this site is accepted; anything else becomes `/`
//! (no open redirect). Refused: absolute URLs, scheme-relative `//host`, `/\host` (browsers
//! read `\` as `/`), the same with percent-encoding, control characters and very long values.

/// Longest return path kept.
const MAX_LEN: usize = 2048;

/// `rd` if it is a safe relative path, else `/`.
pub fn safe_return_path(rd: &str) -> String {
    if is_safe(rd) {
        rd.to_owned()
    } else {
        "/".to_owned()
    }
}

fn is_safe(rd: &str) -> bool {
    if rd.is_empty() || rd.len() > MAX_LEN || !rd.starts_with('/') {
        return false;
    }
    if rd.bytes().any(|b| b < 0x20 || b == 0x7f || b == b'\\') {
        return false;
    }
    // Check the path as written and as decoded (once and twice), so `/%2F%2Fevil` or
    // `/%5Cevil` cannot become `//evil` or `/\evil` anywhere downstream.
    let mut current = rd.to_owned();
    for _ in 0..3 {
        let bytes = current.as_bytes();
        if bytes.len() > 1 && (bytes[1] == b'/' || bytes[1] == b'\\') {
            return false;
        }
        if current.bytes().any(|b| b < 0x20 || b == 0x7f || b == b'\\') {
            return false;
        }
        let decoded = percent_decode(&current);
        if decoded == current {
            break;
        }
        current = decoded;
    }
    true
}

/// Percent-decodes `%XX` sequences (lossy for invalid UTF-8); other bytes are kept.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_relative_paths_pass() {
        for ok in ["/", "/a/b?x=1#f", "/dashboard", "/a%20b", "/a//b"] {
            assert_eq!(safe_return_path(ok), ok, "{ok}");
        }
        for bad in [
            "",
            "a",
            "https://evil.example/",
            "//evil.example",
            "/\\evil.example",
            "\\\\evil",
            "/%2Fevil.example",
            "/%2F%2Fevil",
            "/%5Cevil",
            "/%252F%252Fevil",
            "javascript:alert(1)",
            "/\n/evil",
            " /x",
            "http:/evil",
        ] {
            assert_eq!(safe_return_path(bad), "/", "{bad:?}");
        }
        assert_eq!(safe_return_path(&format!("/{}", "a".repeat(3000))), "/");
    }
}
