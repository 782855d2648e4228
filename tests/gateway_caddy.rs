//! The README's Caddy `forward_auth` recipe run through a real Caddy (Debian `caddy`): the
//! Caddyfile block is read from README.md, its site address and its two backends pointed at a
//! running `oidcgate serve` and an echo upstream. Checked: an anonymous browser is sent to the
//! login with the whole URL in `rd`, an API client gets 401, a bearer token passes with the
//! identity the gateway gave (forged identity headers replaced, also those the identity has no
//! value for), and a browser sign-in through Caddy ends with the app seeing alice.

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use support::browser::{Jar, app_sign_in};
use support::gateway::{BIN, client, echo_upstream, free_addr, service_token, start_idp};
use support::start_server;

const SECRET: &str = "a-gateway-session-secret-of-32-bytes-or-more";
const README: &str = include_str!("../README.md");

/// The Caddyfile block of the README's Traefik/Caddy section, verbatim.
fn readme_caddyfile() -> String {
    let start = README
        .find("```caddyfile\n")
        .expect("a caddyfile block in README.md")
        + "```caddyfile\n".len();
    let len = README[start..].find("```").expect("the block's end");
    README[start..start + len].to_owned()
}

/// Caddy, installed from Debian when missing.
fn caddy_binary() -> PathBuf {
    for p in ["/usr/bin/caddy", "/usr/local/bin/caddy"] {
        if std::path::Path::new(p).exists() {
            return p.into();
        }
    }
    let ok = |c: &mut Command| c.status().is_ok_and(|s| s.success());
    assert!(ok(Command::new("apt-get").arg("update")), "apt-get update");
    assert!(
        ok(Command::new("apt-get")
            .args(["install", "-y", "caddy"])
            .env("DEBIAN_FRONTEND", "noninteractive")),
        "apt-get install -y caddy"
    );
    "/usr/bin/caddy".into()
}

/// A running Caddy, stopped when dropped.
struct Caddy {
    child: std::process::Child,
    dir: PathBuf,
}

impl Drop for Caddy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_caddy(config: &str, listen: std::net::SocketAddr) -> Caddy {
    let dir = std::env::temp_dir().join(format!(
        "oidcgate-caddy-{}-{}",
        std::process::id(),
        listen.port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("Caddyfile");
    // No admin endpoint (its fixed port could clash) and Caddy's state in the scratch directory.
    std::fs::write(&file, format!("{{\n    admin off\n}}\n{config}")).unwrap();
    let child = Command::new(caddy_binary())
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&file)
        .env("XDG_DATA_HOME", &dir)
        .env("XDG_CONFIG_HOME", &dir)
        .env("HOME", &dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("caddy.log")).unwrap())
        .spawn()
        .expect("start caddy");
    let mut caddy = Caddy { child, dir };
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(listen).is_err() {
        if let Some(status) = caddy.child.try_wait().unwrap() {
            let log = std::fs::read_to_string(caddy.dir.join("caddy.log")).unwrap_or_default();
            panic!("caddy exited: {status}\n{log}");
        }
        assert!(Instant::now() < deadline, "caddy not listening on {listen}");
        std::thread::sleep(Duration::from_millis(50));
    }
    caddy
}

#[tokio::test]
async fn readme_caddy_recipe_through_a_real_caddy() {
    let idp = start_idp().await;
    let (upstream, _task) = echo_upstream().await;
    let caddy_addr = free_addr();
    let base = format!("http://{caddy_addr}");
    let gateway_addr = free_addr();
    let redirect = format!("{base}/auth/callback");
    let listen = gateway_addr.to_string();
    let _gw = start_server(
        std::path::Path::new(BIN),
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
    let recipe = readme_caddyfile();
    assert!(
        recipe.contains("app.example.com")
            && recipe.contains("127.0.0.1:4180")
            && recipe.contains("127.0.0.1:8000"),
        "{recipe}"
    );
    let config = recipe
        .replace("app.example.com", &base)
        .replace("127.0.0.1:4180", &listen)
        .replace("127.0.0.1:8000", upstream.trim_start_matches("http://"));
    let _caddy = tokio::task::spawn_blocking(move || start_caddy(&config, caddy_addr))
        .await
        .unwrap();
    let http = client();
    // Caddy listens before every route is wired: wait until a request reaches the gateway
    // through it (its userinfo answers 401 without a session).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = http
            .get(format!("{base}/auth/userinfo"))
            .send()
            .await
            .map(|r| r.status());
        if matches!(status, Ok(StatusCode::UNAUTHORIZED)) {
            break;
        }
        assert!(Instant::now() < deadline, "Caddy never proxied: {status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Anonymous: browsers to the login with the whole URL, API clients 401.
    let r = http
        .get(format!("{base}/app/page?x=1&y=2"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(
        r.headers()["location"],
        "/login?rd=%2Fapp%2Fpage%3Fx%3D1%26y%3D2"
    );
    let r = http.get(format!("{base}/api")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Bearer: the app sees the gateway's identity, never the client's forged headers.
    let token = service_token(&idp.base_url).await;
    let seen: Value = http
        .get(format!("{base}/api/items"))
        .bearer_auth(&token)
        .header("x-auth-request-user", "evil")
        .header("x-auth-request-groups", "admins")
        .header("x-auth-request-email", "evil@example.com")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let h = &seen["headers"];
    assert_eq!(seen["path"], "/api/items");
    assert_eq!(h["x-auth-request-user"], "demo-service");
    for name in ["x-auth-request-groups", "x-auth-request-email"] {
        let v = h.get(name).and_then(Value::as_str).unwrap_or("");
        assert!(v.is_empty(), "{name} forged through Caddy: {v}");
    }

    // A browser sign-in through Caddy (login and callback go to the gateway).
    let mut jar = Jar::default();
    assert_eq!(
        app_sign_in(&http, &mut jar, &base, "/app/page?x=1&y=2").await,
        "/app/page?x=1&y=2"
    );
    let seen: Value = http
        .get(format!("{base}/app/page"))
        .header("cookie", jar.header())
        .header("x-auth-request-groups", "evil")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let h = &seen["headers"];
    assert_eq!(h["x-auth-request-user"], "alice");
    assert_eq!(h["x-auth-request-email"], "alice@example.com");
    assert_eq!(h["x-auth-request-groups"], "admins,users");
}
