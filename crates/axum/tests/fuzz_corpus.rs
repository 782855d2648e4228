//! Replays the `return_path` fuzz corpus (`fuzz/corpus/return_path/`, and
//! `fuzz/artifacts/return_path/` when a local fuzz run left crash inputs there) through the same
//! calls and invariants as `fuzz/fuzz_targets/return_path.rs`, so every seed and every fixed
//! crash stays a safe relative path on the stable toolchain, without cargo-fuzz. The target's
//! lines are repeated here on purpose: the fuzz crate is outside the workspace.
//!
//! The replay also checks that the corpus is not empty and that some seeds are kept as they are
//! (accepted as safe), and some replaced by `/`, so it cannot pass vacuously.

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

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

/// The invariants every answer must meet (as in the target).
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

/// `fuzz_targets/return_path.rs`; `Some(true)` when the input was kept, `Some(false)` when it
/// became `/`, `None` when it is not UTF-8.
fn return_path(data: &[u8]) -> Option<bool> {
    let rd = std::str::from_utf8(data).ok()?;
    let out = safe_return_path(rd);
    assert_safe(rd, &out);
    assert_eq!(safe_return_path(&out), out, "not idempotent for {rd:?}");
    Some(out == rd)
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The regular files directly in `dir`, sorted; none when `dir` does not exist.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("read corpus directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn return_path_corpus() {
    let seeds = files_in(&fuzz_dir().join("corpus/return_path"));
    assert!(
        !seeds.is_empty(),
        "fuzz/corpus/return_path/ has no seed files: the replay would pass vacuously"
    );
    let artifacts = files_in(&fuzz_dir().join("artifacts/return_path"));
    let (mut kept, mut replaced, mut panicked) = (0, 0, Vec::new());
    for path in seeds.iter().chain(&artifacts) {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        match panic::catch_unwind(AssertUnwindSafe(|| return_path(&data))) {
            Ok(Some(true)) => kept += 1,
            Ok(Some(false)) => replaced += 1,
            Ok(None) => {}
            Err(_) => panicked.push(path.display().to_string()),
        }
    }
    assert!(
        panicked.is_empty(),
        "return_path: {} of {} inputs panicked:\n{}",
        panicked.len(),
        seeds.len() + artifacts.len(),
        panicked.join("\n")
    );
    assert!(kept > 0, "return_path: no seed was accepted as a safe path");
    assert!(replaced > 0, "return_path: no seed was replaced by /");
}
