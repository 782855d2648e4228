//! A real browser signs in through the development IdP's own login page: headless Chromium
//! (Debian's `/usr/bin/chromium`, driven by npm `playwright-core`) opens an authorization request
//! of client `demo` (state, nonce, PKCE S256), is refused with a wrong password, signs in as
//! alice, lands on the relying party's redirect URI with code, state and RFC 9207 `iss`; the code
//! is redeemed for an ID token of alice with the request's nonce, and a second authorization
//! request in the same browser is answered from the IdP's SSO session without the login form
//! (tests/peers/browser_login.mjs prints one JSON line per step).
//!
//! Needs Node.js 20+, npm and Debian's `chromium` package. When `/usr/bin/chromium` is missing
//! this test installs it with apt-get and fails if it still is not there; `tests/peers/node_modules`
//! comes from `npm ci` (scripts/test runs it; this test runs it too when it is missing or stale).

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Command;

/// Where Debian's `chromium` package puts the browser (the script launches exactly this).
const CHROMIUM: &str = "/usr/bin/chromium";

/// How long the whole Node script may take (it has its own 60 s watchdog).
const NODE_TIMEOUT: Duration = Duration::from_secs(90);

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

/// Runs `apt-get ARGS` without a terminal; returns whether it succeeded, echoing its output.
fn apt_get(args: &[&str]) -> bool {
    eprintln!("running apt-get {}", args.join(" "));
    match std::process::Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output()
    {
        Ok(output) => {
            if !output.status.success() {
                eprintln!(
                    "apt-get {} failed ({}):\n{}{}",
                    args.join(" "),
                    output.status,
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            output.status.success()
        }
        Err(e) => {
            eprintln!("cannot run apt-get: {e}");
            false
        }
    }
}

/// Makes sure Debian's Chromium is installed: installs it when missing, and fails (never skips)
/// when that does not work.
fn ensure_chromium() {
    if Path::new(CHROMIUM).exists() {
        return;
    }
    eprintln!("{CHROMIUM} is missing: installing Debian's chromium package");
    if !apt_get(&["install", "-y", "chromium"]) {
        // The package lists may be missing or stale on a fresh machine.
        apt_get(&["update"]);
        apt_get(&["install", "-y", "chromium"]);
    }
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing and installing it failed: this test needs Debian's chromium \
         package (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)"
    );
}

/// Whether every dependency pinned in tests/peers/package.json is installed at that version.
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
    assert!(
        dir.join("node_modules")
            .join("playwright-core")
            .join("package.json")
            .is_file(),
        "npm ci in {} did not install playwright-core",
        dir.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_signs_in_through_the_login_page() {
    let peers = peers_dir();
    require_tool("node");
    ensure_chromium();
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

    let started = Instant::now();
    let child = Command::new("node")
        .arg(peers.join("browser_login.mjs"))
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
            "browser_login.mjs did not finish within {} s",
            NODE_TIMEOUT.as_secs()
        ),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    println!(
        "browser_login.mjs took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        output.status.success(),
        "the browser login failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    // Every line is a passed step, and the script got to the end.
    let steps: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    for line in &steps {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON step line ({e}): {line}\n--- stderr\n{stderr}"));
        assert_eq!(v["ok"], true, "failed step: {line}\n--- stderr\n{stderr}");
    }
    for expected in [
        "wrong password refused",
        "sign in as alice",
        "redeem the code",
        "sso without the login form",
    ] {
        assert!(
            stdout.contains(&format!("\"step\":\"{expected}\"")),
            "step {expected:?} is missing:\n{stdout}\n--- stderr\n{stderr}"
        );
    }
    assert!(
        steps.last().is_some_and(|l| l.contains("\"done\"")),
        "the script stopped early:\n{stdout}\n--- stderr\n{stderr}"
    );
    drop(idp);
}
