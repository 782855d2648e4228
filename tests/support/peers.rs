//! Running the Node.js peers in `tests/peers` against the development IdP: checking that `node`
//! and `npm` can run, installing Debian's Chromium for the browser tests when it is missing,
//! installing the locked npm dependencies (`npm ci`) when they are missing or stale, starting
//! `oidcgate idp` on a free loopback port, and running a peer script with a timeout whose stdout
//! is one JSON line per step (`{"step": …, "ok": true}`).

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::Command;

use super::{Running, start_server};

/// `tests/peers`: the Node scripts, their package.json and their node_modules.
pub fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("peers")
}

/// Panics with a clear message when `program` cannot be run at all.
pub fn require_tool(program: &str) {
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

/// Where Debian's `chromium` package puts the browser (the browser scripts launch exactly this).
pub const CHROMIUM: &str = "/usr/bin/chromium";

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
pub fn ensure_chromium() {
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

/// Whether every dependency pinned in tests/peers/package.json is installed at that version
/// (a folder installed before a dependency was added or bumped is not).
pub fn node_modules_current(dir: &Path) -> bool {
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

/// Installs tests/peers' locked dependencies unless they are already there; after an `npm ci`,
/// asserts that each package in `must_install` is present.
pub fn ensure_node_modules(dir: &Path, must_install: &[&str]) {
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
    for package in must_install {
        assert!(
            dir.join("node_modules")
                .join(package)
                .join("package.json")
                .is_file(),
            "npm ci in {} did not install {package}",
            dir.display()
        );
    }
}

/// Starts `oidcgate idp` on a free loopback port; its issuer is the returned `base_url`.
pub async fn start_idp() -> Running {
    let idp = start_server(
        Path::new(env!("CARGO_BIN_EXE_oidcgate")),
        &["idp", "--listen", "127.0.0.1:0"],
        &[],
    )
    .await;
    let issuer = &idp.base_url;
    assert!(
        issuer.starts_with("http://127.0.0.1:"),
        "unexpected issuer {issuer}"
    );
    idp
}

/// What a finished peer script left behind.
pub struct ScriptOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `node <dir>/<script> <issuer>` in `dir`, panicking when it does not finish within
/// `timeout` (the child is killed then), and prints its stdout.
pub async fn run_script(dir: &Path, script: &str, issuer: &str, timeout: Duration) -> ScriptOutput {
    let child = Command::new("node")
        .arg(dir.join(script))
        .arg(issuer)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node: {e}"));
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(result) => result.expect("waiting for node"),
        // The child is killed when the timed-out future drops it.
        Err(_) => panic!("{script} did not finish within {} s", timeout.as_secs()),
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

impl ScriptOutput {
    /// Asserts that the script exited successfully; `what` names the run in the message.
    pub fn assert_success(&self, what: &str) {
        assert!(
            self.status.success(),
            "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
    }

    /// The non-blank stdout lines, after asserting that each is a JSON step with `"ok": true`.
    pub fn passed_steps(&self) -> Vec<&str> {
        let stderr = &self.stderr;
        let steps: Vec<&str> = self
            .stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        for line in &steps {
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| {
                panic!("not a JSON step line ({e}): {line}\n--- stderr\n{stderr}")
            });
            assert_eq!(v["ok"], true, "failed step: {line}\n--- stderr\n{stderr}");
        }
        steps
    }
}
