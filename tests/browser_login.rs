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

use std::time::{Duration, Instant};

use support::peers;

/// How long the whole Node script may take (it has its own 60 s watchdog).
const NODE_TIMEOUT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_signs_in_through_the_login_page() {
    let dir = peers::peers_dir();
    peers::require_tool("node");
    peers::ensure_chromium();
    peers::ensure_node_modules(&dir, &["playwright-core"]);

    let idp = peers::start_idp().await;
    let issuer = idp.base_url.clone();

    let started = Instant::now();
    let output = peers::run_script(&dir, "browser_login.mjs", &issuer, NODE_TIMEOUT).await;
    println!(
        "browser_login.mjs took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    output.assert_success("the browser login");
    // Every line is a passed step, and the script got to the end.
    let steps = output.passed_steps();
    let (stdout, stderr) = (&output.stdout, &output.stderr);
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
