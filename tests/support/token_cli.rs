//! Running `oidcgate token` as a process in tests: the command with a private cache folder,
//! running it to the end with a time bound, and fresh cache folders.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use super::gateway::BIN;

/// `oidcgate token ARGS` against `issuer`, caching under `cache`, stdout/stderr piped.
pub fn token_cmd(issuer: &str, cache: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("token")
        .args(args)
        .env_clear()
        .env("OIDC_ISSUER", issuer)
        .env("XDG_CACHE_HOME", cache)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs to the end: exit code, stdout, stderr.
pub async fn run(mut cmd: Command) -> (Option<i32>, String, String) {
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("finished within 60 s")
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A fresh, empty cache folder `oidcgate-token-{name}-{pid}` for one test.
pub fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("oidcgate-token-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
