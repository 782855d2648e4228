//! `oidcgate inspect` as a process: decoding without verification, verification against a real
//! discovery + JWKS server, the named failed check, and exit codes (DESIGN §4).

mod support;

use std::process::Stdio;
use std::time::SystemTime;

use oidcgate_core::jose::Algorithm;
use oidcgate_core::jose::sign::SigningKey;
use serde_json::json;
use support::{TestIssuer, claims, mint, unix};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

async fn inspect(args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_oidcgate"));
    cmd.arg("inspect")
        .args(args)
        .env_clear()
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).await.unwrap();
    }
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test]
async fn garbage_is_a_one_line_usage_error() {
    for bad in ["hello", "a.b.c", "", "e30.e30"] {
        let out = inspect(&[bad], None).await;
        assert_eq!(out.code, Some(2), "{bad:?}");
        assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
        assert!(out.stderr.contains("not a JWS"), "{}", out.stderr);
    }
}

#[tokio::test]
async fn decodes_without_verifying_even_when_expired() {
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let mut c = claims("https://idp.example.com", "api", SystemTime::now());
    c["exp"] = json!(unix(SystemTime::now()) - 3 * 3600);
    let token = mint(&key, &c);
    let out = inspect(&["-"], Some(&format!("Bearer {token}\n"))).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("\"alg\": \"ES256\""), "{}", out.stdout);
    assert!(out.stdout.contains("\"sub\": \"user-123\""));
    assert!(out.stdout.contains("expired 3h ago"), "{}", out.stdout);
    assert!(out.stdout.contains("not verified"));
}

#[tokio::test]
async fn verifies_and_names_the_failed_check() {
    let key = SigningKey::generate(Algorithm::RS256).unwrap();
    let idp = TestIssuer::start(&[&key]).await;
    let now = SystemTime::now();
    let good = mint(&key, &claims(&idp.issuer, "api", now));
    let out = inspect(&["--issuer", &idp.issuer, "--audience", "api", &good], None).await;
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("VALID"), "{}", out.stdout);

    let mut expired = claims(&idp.issuer, "api", now);
    expired["exp"] = json!(unix(now) - 3600);
    let stranger = SigningKey::generate(Algorithm::RS256).unwrap();
    let (head, rest) = good.split_once('.').unwrap();
    let (_, sig) = rest.split_once('.').unwrap();
    let tampered = format!(
        "{head}.{}.{sig}",
        oidcgate_core::jose::b64::encode(claims(&idp.issuer, "api", now).to_string())
    );
    for (token, audience, check) in [
        (mint(&key, &expired), "api", "exp"),
        (good.clone(), "other", "aud"),
        (tampered, "api", "signature"),
        (
            mint(&stranger, &claims(&idp.issuer, "api", now)),
            "api",
            "kid unknown",
        ),
    ] {
        let out = inspect(
            &["--issuer", &idp.issuer, "--audience", audience, &token],
            None,
        )
        .await;
        assert_eq!(out.code, Some(1), "{check}: {}{}", out.stdout, out.stderr);
        assert!(
            out.stdout.contains(&format!("INVALID: {check}")),
            "{check}: {}",
            out.stdout
        );
    }
}
