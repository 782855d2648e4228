//! Replays the `gateway_config` fuzz corpus (`fuzz/corpus/gateway_config/`, and
//! `fuzz/artifacts/gateway_config/` when a local fuzz run left crash inputs there) through the
//! same calls and checks as `fuzz/fuzz_targets/gateway_config.rs`: `NAME=VALUE` lines become
//! `serve` flags, clap parses them into `ServeArgs` (environment switched off) and
//! `ServeArgs::check` must answer `Ok` or `Err` without panicking. `OIDC_CLIENT_PRIVATE_KEY_FILE`
//! is replaced by fixed key files, as in the target. The target's lines are repeated here on
//! purpose: the fuzz crate is outside the workspace.
//!
//! The replay also checks that the corpus is not empty and that some seeds are accepted by
//! `check` and some refused, so it cannot pass vacuously.

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use clap::{Args, FromArgMatches};
use oidcgate_gateway::ServeArgs;

/// The RFC 8037 A.1 Ed25519 key as a private JWK.
const KEY_JWK: &str = r#"{"kty":"OKP","crv":"Ed25519","kid":"fuzz-client-key",
  "d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;
/// The same key as PKCS#8 PEM.
const KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----\n\
MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n\
-----END PRIVATE KEY-----\n";

/// The two key files, written once: (JWK, PEM).
static KEY_FILES: LazyLock<(String, String)> = LazyLock::new(|| {
    let write = |ext: &str, text: &str| {
        let path: PathBuf = std::env::temp_dir().join(format!(
            "oidcgate-fuzz-gateway-config-{}.{ext}",
            std::process::id()
        ));
        std::fs::write(&path, text).expect("write the fixed key file");
        path.to_str().expect("UTF-8 temp path").to_owned()
    };
    (write("jwk", KEY_JWK), write("pem", KEY_PEM))
});

/// The `serve` command with every environment fallback removed, built once.
static COMMAND: LazyLock<clap::Command> = LazyLock::new(|| {
    let mut command = ServeArgs::augment_args(clap::Command::new("serve").no_binary_name(true))
        .mut_args(|arg| arg.env(Option::<&'static str>::None));
    command.build();
    command
});

/// What happened to one input.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    NotParsed,
    Refused,
    Accepted,
}

/// `fuzz_targets/gateway_config.rs`.
fn gateway_config(data: &[u8]) -> Outcome {
    let Ok(text) = std::str::from_utf8(data) else {
        return Outcome::NotParsed;
    };
    let mut argv = Vec::new();
    for line in text.split('\n').filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once('=').unwrap_or((line, ""));
        let flag = name.to_ascii_lowercase().replace('_', "-");
        let value = if flag == "oidc-client-private-key-file" && !value.is_empty() {
            let (jwk, pem) = &*KEY_FILES;
            if value.ends_with(".pem") { pem } else { jwk }
        } else {
            value
        };
        argv.push(format!("--{flag}={value}"));
    }
    let Ok(matches) = COMMAND.clone().try_get_matches_from(argv) else {
        return Outcome::NotParsed;
    };
    let Ok(args) = ServeArgs::from_arg_matches(&matches) else {
        return Outcome::NotParsed;
    };
    let Ok(config) = args.check() else {
        return Outcome::Refused;
    };
    assert_eq!(config.upstream.scheme(), "http");
    assert!((1..=20).contains(&config.max_pending_logins));
    assert!(config.max_header_bytes >= 8192);
    assert!(config.upstream_max_connections > 0);
    assert!(!config.session_max_age.is_zero());
    if config.client_id.is_some() {
        let secret = config.session_secret.as_deref().unwrap_or_default();
        assert!(
            secret.len() >= 32,
            "login accepted with a short session secret"
        );
        assert!(config.redirect_uri.is_some());
    } else {
        assert!(
            args.oidc_audience.is_some(),
            "neither login nor bearer tokens configured"
        );
    }
    Outcome::Accepted
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
fn gateway_config_corpus() {
    let seeds = files_in(&fuzz_dir().join("corpus/gateway_config"));
    assert!(
        !seeds.is_empty(),
        "fuzz/corpus/gateway_config/ has no seed files: the replay would pass vacuously"
    );
    let artifacts = files_in(&fuzz_dir().join("artifacts/gateway_config"));
    let (mut accepted, mut refused, mut panicked) = (0, 0, Vec::new());
    for path in seeds.iter().chain(&artifacts) {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        match panic::catch_unwind(AssertUnwindSafe(|| gateway_config(&data))) {
            Ok(Outcome::Accepted) => accepted += 1,
            Ok(Outcome::Refused) => refused += 1,
            Ok(Outcome::NotParsed) => {}
            Err(_) => panicked.push(path.display().to_string()),
        }
    }
    let (jwk, pem) = &*KEY_FILES;
    let _ = (std::fs::remove_file(jwk), std::fs::remove_file(pem));
    assert!(
        panicked.is_empty(),
        "gateway_config: {} of {} inputs panicked:\n{}",
        panicked.len(),
        seeds.len() + artifacts.len(),
        panicked.join("\n")
    );
    assert!(
        accepted > 0,
        "gateway_config: no seed was accepted by check()"
    );
    assert!(
        refused > 0,
        "gateway_config: no seed was refused by check()"
    );
}
