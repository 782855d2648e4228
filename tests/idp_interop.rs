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

use std::time::Duration;

use support::peers;

/// How long the whole Node script may take (its own watchdog is 90 s; the device flow steps
/// wait openid-client's 5 s polling interval).
const NODE_TIMEOUT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openid_client_drives_the_idp() {
    let dir = peers::peers_dir();
    peers::require_tool("node");
    peers::ensure_node_modules(&dir, &[]);

    let idp = peers::start_idp().await;
    let issuer = idp.base_url.clone();

    let output = peers::run_script(&dir, "openid_client_interop.mjs", &issuer, NODE_TIMEOUT).await;
    output.assert_success("openid-client interop");
    // Every line is a passed step, and the script got to the end.
    let steps = output.passed_steps();
    let (stdout, stderr) = (&output.stdout, &output.stderr);
    assert!(
        steps.len() > 20 && steps.last().is_some_and(|l| l.contains("\"done\"")),
        "the script stopped early:\n{stdout}\n--- stderr\n{stderr}"
    );
    drop(idp);
}
