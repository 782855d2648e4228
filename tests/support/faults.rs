//! Pieces for the fault tests (`tests/fault_idp.rs`, `tests/fault_upstream.rs`): `oidcgate serve`
//! started with exactly the given settings and its stderr kept (to show the errors it logged and
//! that it never panicked) — or its exit code when it stops instead —, settings for bearer and
//! login mode, the built-in IdP on a chosen port, and polling with a deadline.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

use super::gateway::BIN;

/// A running `oidcgate` process, killed on drop, whose stderr is collected.
pub struct Proc {
    pub child: Child,
    pub base_url: String,
    stderr: Arc<Mutex<String>>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

impl Proc {
    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits up to `limit` for `needle` to appear in stderr (the reader runs behind the process).
    pub async fn stderr_shows(&self, needle: &str, limit: Duration) -> bool {
        poll(limit, || async {
            self.stderr().contains(needle).then_some(())
        })
        .await
        .is_some()
    }

    /// Fails when the process has exited or has written a panic message.
    pub fn assert_alive_without_panic(&mut self) {
        let stderr = self.stderr();
        assert!(
            !stderr.contains("panicked"),
            "the process panicked:\n{stderr}"
        );
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "the process exited:\n{stderr}"
        );
    }

    /// Stops the process and waits for it to exit.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }
}

fn collect(mut reader: impl tokio::io::AsyncRead + Unpin + Send + 'static) -> Arc<Mutex<String>> {
    let buffer = Arc::new(Mutex::new(String::new()));
    let sink = buffer.clone();
    tokio::spawn(async move {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = reader.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    });
    buffer
}

fn command(args: &[&str], envs: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .envs(envs.iter().copied())
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Starts `oidcgate ARGS` with exactly `envs` (plus `PATH` and `RUST_LOG=warn`) and waits up to
/// `wait` for its `listening on http://ADDR` line; panics with its stderr when it does not come.
pub async fn spawn(args: &[&str], envs: &[(&str, &str)], wait: Duration) -> Proc {
    match spawn_or_exit(args, envs, wait).await {
        Ok(proc) => proc,
        Err((code, stderr)) => panic!("oidcgate {args:?} exited with {code}; stderr:\n{stderr}"),
    }
}

/// Like [`spawn`], but a process that exits before listening is `Err((exit code, stderr))`.
pub async fn spawn_or_exit(
    args: &[&str],
    envs: &[(&str, &str)],
    wait: Duration,
) -> Result<Proc, (i32, String)> {
    let mut child = command(args, envs).spawn().expect("starting oidcgate");
    let stderr = collect(child.stderr.take().unwrap());
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = match tokio::time::timeout(wait, lines.next_line()).await {
        Ok(Ok(Some(line))) => line,
        Ok(Ok(None)) => {
            // stdout closed: the process is exiting.
            let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            let text = stderr.lock().unwrap().clone();
            let code = match status {
                Ok(Ok(status)) => status.code().unwrap_or(-1),
                _ => panic!("oidcgate {args:?} closed stdout but did not exit; stderr:\n{text}"),
            };
            return Err((code, text));
        }
        other => {
            let _ = child.start_kill();
            tokio::time::sleep(Duration::from_millis(100)).await;
            panic!(
                "oidcgate {args:?} did not print its listening line within {wait:?} ({other:?}); stderr:\n{}",
                stderr.lock().unwrap()
            );
        }
    };
    let base_url = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .trim()
        .to_owned();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(Proc {
        child,
        base_url,
        stderr,
    })
}

/// `oidcgate serve` with exactly these settings.
pub async fn serve(envs: &[(&str, &str)]) -> Proc {
    spawn(&["serve"], envs, Duration::from_secs(30)).await
}

/// The built-in development IdP listening on `addr` (issuer `http://ADDR`).
pub async fn idp_at(addr: std::net::SocketAddr) -> Proc {
    let listen = addr.to_string();
    spawn(
        &["idp", "--listen", listen.as_str()],
        &[],
        Duration::from_secs(30),
    )
    .await
}

/// Polls `check` every 100 ms until it returns `Some`, for at most `limit`; `None` on timeout.
pub async fn poll<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `GET {base}/readyz`: the status and the JSON body.
pub async fn readyz(base: &str) -> (u16, serde_json::Value) {
    let r = super::gateway::client()
        .get(format!("{base}/readyz"))
        .timeout(Duration::from_secs(40))
        .send()
        .await
        .expect("/readyz answers within 40 s");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

/// The value of one Prometheus sample line (`name{labels} value`), if present.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// `oidcgate serve` settings, starting from bearer-only or login mode; `LISTEN_ADDR` is a free
/// loopback port.
#[derive(Clone)]
pub struct Settings {
    vars: Vec<(String, String)>,
    pub listen: std::net::SocketAddr,
}

impl Settings {
    /// Bearer tokens only (`OIDC_AUDIENCE=demo-api`, the built-in IdP's API audience), no login.
    pub fn bearer(issuer: &str, upstream: &str) -> Self {
        let listen = super::gateway::free_addr();
        Self {
            vars: [
                ("OIDC_ISSUER", issuer.to_owned()),
                ("OIDC_AUDIENCE", "demo-api".to_owned()),
                ("UPSTREAM_URL", upstream.to_owned()),
                ("LISTEN_ADDR", listen.to_string()),
            ]
            .map(|(k, v)| (k.to_owned(), v))
            .to_vec(),
            listen,
        }
    }

    /// Bearer tokens and login as the built-in IdP's `demo` client, plain-http cookies.
    pub fn login(issuer: &str, upstream: &str) -> Self {
        let this = Self::bearer(issuer, upstream);
        let redirect = format!("http://{}/auth/callback", this.listen);
        this.set("OIDC_CLIENT_ID", "demo")
            .set("OIDC_CLIENT_SECRET", "demo-secret")
            .set("OIDC_REDIRECT_URI", &redirect)
            .set("SESSION_SECRET", super::gateway::SECRET)
            .set("COOKIE_SECURE", "false")
    }

    /// Sets (or replaces) one setting.
    pub fn set(mut self, name: &str, value: &str) -> Self {
        self.vars.retain(|(n, _)| n != name);
        self.vars.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Removes one setting.
    pub fn unset(mut self, name: &str) -> Self {
        self.vars.retain(|(n, _)| n != name);
        self
    }

    /// As environment variables.
    pub fn env(&self) -> Vec<(&str, &str)> {
        self.vars
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// Starts `oidcgate serve` with these settings.
    pub async fn serve(&self) -> Proc {
        serve(&self.env()).await
    }
}
