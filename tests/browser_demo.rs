//! A real browser walks through `oidcgate demo`: headless Chromium (Debian's `/usr/bin/chromium`,
//! driven by npm `playwright-core`) opens the gateway, is sent to the IdP's login page, signs in
//! as alice / wonderland, lands on the sample app and sees "Hello, alice!" with her identity
//! headers (alice@example.com, group admins), saves a full-page screenshot of that page to
//! `target/browser-demo.png`, then follows the app's "Sign out" link through the IdP's
//! end-session endpoint and back to the login form, after which the gateway refuses both the
//! browser and the old session cookie (tests/peers/browser_demo.mjs prints one JSON line per
//! step).
//!
//! Needs Node.js 20+, npm and Debian's `chromium` package, like tests/browser_login.rs: a missing
//! `/usr/bin/chromium` is installed with apt-get (the test fails if it still is not there), and
//! `tests/peers/node_modules` comes from `npm ci` when it is missing or stale.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::peers::{self, ScriptOutput};
use support::start_server;

/// How long the whole Node script may take (it has its own 60 s watchdog).
const NODE_TIMEOUT: Duration = Duration::from_secs(90);

/// A PNG of the signed-in page is well above this; a blank or broken one is not.
const MIN_SCREENSHOT_BYTES: u64 = 4 * 1024;

/// A base port with the next two ports free too (the demo takes N, N+1 and N+2).
fn free_base() -> u16 {
    for _ in 0..50 {
        let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = first.local_addr().unwrap().port();
        if base > u16::MAX - 3 {
            continue;
        }
        drop(first);
        if (0..3).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no three consecutive free ports");
}

/// Where the screenshot goes: `target/browser-demo.png` of this package.
fn screenshot_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("browser-demo.png")
}

/// Runs `node <dir>/browser_demo.mjs <gateway> <screenshot>` in `dir`, panicking when it does
/// not finish within `timeout` (the child is killed then), and prints its stdout.
async fn run_browser_demo(dir: &Path, gateway: &str, screenshot: &Path) -> ScriptOutput {
    let child = tokio::process::Command::new("node")
        .arg(dir.join("browser_demo.mjs"))
        .arg(gateway)
        .arg(screenshot)
        .current_dir(dir)
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
            "browser_demo.mjs did not finish within {} s",
            NODE_TIMEOUT.as_secs()
        ),
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    println!("{stdout}");
    ScriptOutput {
        status: output.status,
        stdout,
        stderr,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_signs_in_to_the_demo_sees_alice_and_signs_out() {
    let dir = peers::peers_dir();
    peers::require_tool("node");
    peers::ensure_chromium();
    peers::ensure_node_modules(&dir, &["playwright-core"]);

    let screenshot = screenshot_path();
    std::fs::create_dir_all(screenshot.parent().unwrap()).expect("creating target/");
    // A screenshot left by an earlier run must not pass for this one.
    match std::fs::remove_file(&screenshot) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("removing the old {}: {e}", screenshot.display()),
    }

    let base = free_base();
    let demo = start_server(
        Path::new(env!("CARGO_BIN_EXE_oidcgate")),
        &["demo", "--port-base", &base.to_string()],
        &[],
    )
    .await;
    assert_eq!(demo.base_url, format!("http://127.0.0.1:{base}"));

    let started = Instant::now();
    let output = run_browser_demo(&dir, &demo.base_url, &screenshot).await;
    println!(
        "browser_demo.mjs took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    output.assert_success("the browser walk through the demo");
    // Every line is a passed step, and the script got to the end.
    let steps = output.passed_steps();
    let (stdout, stderr) = (&output.stdout, &output.stderr);
    for expected in [
        "gateway sends to the login page",
        "sign in as alice",
        "identity shown",
        "screenshot",
        "session cookie opens the app",
        "sign out",
        "signed out at the gateway",
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
    drop(demo);

    let png = std::fs::read(&screenshot)
        .unwrap_or_else(|e| panic!("no screenshot at {}: {e}", screenshot.display()));
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        screenshot.display()
    );
    assert!(
        png.len() as u64 > MIN_SCREENSHOT_BYTES,
        "{} is only {} bytes",
        screenshot.display(),
        png.len()
    );
    println!(
        "screenshot of the signed-in page: {} ({} bytes)",
        screenshot.display(),
        png.len()
    );
}
