//! Fuzzes the gateway's settings: the input is `NAME=VALUE` lines (`OIDC_ISSUER=https://…`),
//! each turned into the flag `--oidc-issuer=https://…` and parsed by clap into `ServeArgs`
//! (the `oidcgate serve` flags, with the environment switched off so only the input counts),
//! then checked by `ServeArgs::check`. `OIDC_CLIENT_PRIVATE_KEY_FILE` never reaches the file
//! system as given: an empty value stays empty, a value ending in `.pem` becomes a fixed PEM
//! key file and any other value a fixed private-JWK file (both written once to the temporary
//! directory), so the fuzzer cannot make the target read arbitrary files. Parsing and checking
//! must return `Ok` or `Err`, never panic; an accepted configuration must meet the limits
//! `check` promises.
#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;

use clap::{Args, FromArgMatches};
use libfuzzer_sys::fuzz_target;
use oidcgate_gateway::ServeArgs;

/// The RFC 8037 A.1 Ed25519 key as a private JWK.
const KEY_JWK: &str = r#"{"kty":"OKP","crv":"Ed25519","kid":"fuzz-client-key",
  "d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;
/// The same key as PKCS#8 PEM.
const KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----\n\
MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n\
-----END PRIVATE KEY-----\n";

/// The two key files, written once per process: (JWK, PEM). The names are fixed, so repeated
/// runs overwrite the same two files (same content) instead of leaving one pair per run.
static KEY_FILES: LazyLock<(String, String)> = LazyLock::new(|| {
    let write = |ext: &str, text: &str| {
        let path: PathBuf =
            std::env::temp_dir().join(format!("oidcgate-fuzz-gateway-config-key.{ext}"));
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

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
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
        return;
    };
    let Ok(args) = ServeArgs::from_arg_matches(&matches) else {
        return;
    };
    let Ok(config) = args.check() else {
        return;
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
});
