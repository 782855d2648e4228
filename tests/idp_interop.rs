//! Interop of the development IdP (`oidcgate idp`) with an independent, OpenID Certified relying
//! party: npm `openid-client` 6.x drives discovery, the authorization code flow with PKCE, state,
//! nonce and RFC 9207 `iss` through the real login form, ID token signature checks against the
//! JWKS, userinfo, refresh rotation and reuse detection, client credentials, introspection,
//! revocation, the public client and `form_post` (tests/peers/openid_client_interop.mjs prints
//! one JSON line per step).
//!
//! Needs Node.js 20+ and npm. `tests/peers/node_modules` comes from `npm ci` (scripts/test runs
//! it; this test runs it too when the folder is missing or lacks a pinned version).

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// How long the whole Node script may take (its own watchdog is 90 s; the device flow steps
/// wait openid-client's 5 s polling interval).
const NODE_TIMEOUT: Duration = Duration::from_secs(120);

fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("peers")
}

/// Panics with a clear message when `program` cannot be run at all.
fn require_tool(program: &str) {
    match std::process::Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(status) if status.success() => {}
        Ok(status) => {
            panic!("`{program} --version` failed ({status}): this test needs Node.js 20+ and npm")
        }
        Err(e) => panic!(
            "cannot run `{program}` ({e}): this test needs Node.js 20+ and npm on PATH \
             (Debian: apt-get install nodejs npm)"
        ),
    }
}

/// Whether every dependency pinned in tests/peers/package.json is installed at that version
/// (a folder installed before a dependency was added or bumped is not).
fn node_modules_current(dir: &Path) -> bool {
    let read = |path: PathBuf| -> Option<serde_json::Value> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    };
    let manifest = read(dir.join("package.json")).expect("tests/peers/package.json");
    let Some(deps) = manifest["dependencies"].as_object() else {
        return true;
    };
    deps.iter().all(|(name, version)| {
        let installed = read(dir.join("node_modules").join(name).join("package.json"));
        installed.is_some_and(|p| p["version"] == *version)
    })
}

/// Installs tests/peers' locked dependencies unless they are already there.
fn ensure_node_modules(dir: &Path) {
    if node_modules_current(dir) {
        return;
    }
    require_tool("npm");
    eprintln!("installing {}: npm ci", dir.display());
    let output = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run npm ci in {}: {e}", dir.display()));
    assert!(
        output.status.success(),
        "npm ci in {} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        dir.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openid_client_drives_the_idp() {
    let peers = peers_dir();
    require_tool("node");
    ensure_node_modules(&peers);

    let idp = support::start_server(
        Path::new(env!("CARGO_BIN_EXE_oidcgate")),
        &["idp", "--listen", "127.0.0.1:0"],
        &[],
    )
    .await;
    let issuer = idp.base_url.clone();
    assert!(
        issuer.starts_with("http://127.0.0.1:"),
        "unexpected issuer {issuer}"
    );

    let child = Command::new("node")
        .arg(peers.join("openid_client_interop.mjs"))
        .arg(&issuer)
        .current_dir(&peers)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node: {e}"));
    let output = match tokio::time::timeout(NODE_TIMEOUT, child.wait_with_output()).await {
        Ok(result) => result.expect("waiting for node"),
        // The child is killed when the timed-out future drops it.
        Err(_) => panic!(
            "openid_client_interop.mjs did not finish within {} s",
            NODE_TIMEOUT.as_secs()
        ),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "openid-client interop failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    // Every line is a passed step, and the script got to the end.
    let steps: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    for line in &steps {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON step line ({e}): {line}\n--- stderr\n{stderr}"));
        assert_eq!(v["ok"], true, "failed step: {line}\n--- stderr\n{stderr}");
    }
    assert!(
        steps.len() > 20 && steps.last().is_some_and(|l| l.contains("\"done\"")),
        "the script stopped early:\n{stdout}\n--- stderr\n{stderr}"
    );
    drop(idp);
}
