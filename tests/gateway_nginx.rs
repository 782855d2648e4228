//! The README's nginx `auth_request` recipe ("Behind nginx") run through a real nginx: the
//! recipe is read from README.md itself, its two addresses pointed at a running `oidcgate serve`
//! and an echo upstream, and nginx (the Debian package, installed when missing) started on a
//! free loopback port from a config in a temporary directory. Checked: anonymous browsers are
//! sent to `/login?rd=…`, the internal verify location is not reachable from outside, bearer
//! tokens pass with the identity headers set by `auth_request_set`, identity headers sent by the
//! client never reach the upstream, and a whole browser sign-in through nginx ends with the
//! upstream seeing alice.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use support::browser::{Jar, app_sign_in};
use support::gateway::{client, echo_upstream, free_addr, service_token};
use support::{Running, start_server};

const BIN: &str = env!("CARGO_BIN_EXE_oidcgate");
const SECRET: &str = "a-gateway-session-secret-of-32-bytes-or-more";
const README: &str = include_str!("../README.md");
/// The addresses the README's recipe uses for the gateway and the app.
const RECIPE_GATEWAY: &str = "127.0.0.1:4180";
const RECIPE_APP: &str = "127.0.0.1:8000";

/// The gateway on `listen`, its callback on the nginx origin so that login works through nginx.
async fn gateway(issuer: &str, upstream: &str, listen: SocketAddr, public_origin: &str) -> Running {
    let listen = listen.to_string();
    let redirect = format!("{public_origin}/auth/callback");
    let envs = [
        ("OIDC_ISSUER", issuer),
        ("OIDC_CLIENT_ID", "demo"),
        ("OIDC_CLIENT_SECRET", "demo-secret"),
        ("OIDC_REDIRECT_URI", redirect.as_str()),
        ("OIDC_AUDIENCE", "demo-api"),
        ("SESSION_SECRET", SECRET),
        ("COOKIE_SECURE", "false"),
        ("UPSTREAM_URL", upstream),
        ("LISTEN_ADDR", listen.as_str()),
    ];
    start_server(Path::new(BIN), &["serve"], &envs).await
}

// ---------------------------------------------------------------------------------------------
// nginx: found or installed, configured in a temporary directory, stopped by PID.

fn find_nginx() -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join("nginx"))
        .find(|candidate| candidate.is_file())
}

fn run_or_panic(program: &str, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("running {program} {args:?}: {e}"));
    assert!(status.success(), "{program} {args:?} failed: {status}");
}

/// The nginx binary; installs the Debian package when it is missing. Never skips: a machine
/// without nginx that cannot install it fails this test.
fn nginx_binary() -> PathBuf {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _one_at_a_time = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(found) = find_nginx() {
        return found;
    }
    eprintln!("nginx is not installed: apt-get update && apt-get install -y nginx");
    run_or_panic("apt-get", &["update"]);
    run_or_panic("apt-get", &["install", "-y", "nginx"]);
    find_nginx().expect("nginx is still missing after `apt-get install -y nginx`")
}

/// The `nginx` block of the README's "Behind nginx (`auth_request`)" section, verbatim.
fn readme_recipe() -> &'static str {
    let section = README
        .split("### Behind nginx (`auth_request`)")
        .nth(1)
        .expect("README section \"Behind nginx (`auth_request`)\"");
    let start = section.find("```nginx\n").expect("an nginx block") + "```nginx\n".len();
    let len = section[start..].find("```").expect("the block's end");
    &section[start..start + len]
}

/// A running nginx, stopped by its PID (SIGTERM, then SIGKILL) when dropped — also when the test
/// panics, in which case its error log is printed.
struct Nginx {
    child: std::process::Child,
    dir: PathBuf,
    base_url: String,
}

impl Nginx {
    /// Starts nginx on `listen` with `locations` as its only server's body.
    fn start(listen: SocketAddr, locations: &str) -> Self {
        let nginx = nginx_binary();
        let dir = std::env::temp_dir().join(format!(
            "oidcgate-nginx-{}-{}",
            std::process::id(),
            listen.port()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.display();
        let conf = format!(
            "pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/client_body_temp;
    proxy_temp_path {d}/proxy_temp;
    fastcgi_temp_path {d}/fastcgi_temp;
    uwsgi_temp_path {d}/uwsgi_temp;
    scgi_temp_path {d}/scgi_temp;
    server {{
        listen {listen};
        server_name localhost;
{locations}
    }}
}}
"
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(&nginx)
            .arg("-p")
            .arg(&dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .args(["-g", "daemon off; worker_processes 1;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", nginx.display()));
        let mut this = Self {
            child,
            dir,
            base_url: format!("http://{listen}"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = this.child.try_wait().unwrap() {
                panic!("nginx exited ({status}):\n{}", this.error_log());
            }
            if std::net::TcpStream::connect(listen).is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "nginx not listening on {listen} after 10 s:\n{}",
                this.error_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        this
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("nginx error log:\n{}", self.error_log());
        }
        // The master process is our child: SIGTERM makes it stop its worker and exit.
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The IdP, the echo upstream, the gateway and nginx running the README recipe in front of both.
struct Stack {
    idp: Running,
    _gateway: Running,
    _upstream: tokio::task::JoinHandle<()>,
    nginx: Nginx,
}

async fn stack() -> Stack {
    let nginx_binary = tokio::task::spawn_blocking(nginx_binary).await.unwrap();
    eprintln!("using {}", nginx_binary.display());
    let idp = start_server(Path::new(BIN), &["idp", "--listen", "127.0.0.1:0"], &[]).await;
    let (upstream, upstream_task) = echo_upstream().await;
    let nginx_addr = free_addr();
    let gateway_addr = free_addr();
    let gw = gateway(
        &idp.base_url,
        &upstream,
        gateway_addr,
        &format!("http://{nginx_addr}"),
    )
    .await;
    let recipe = readme_recipe();
    assert!(
        recipe.contains(RECIPE_GATEWAY) && recipe.contains(RECIPE_APP),
        "{recipe}"
    );
    let locations = recipe
        .replace(RECIPE_GATEWAY, &gateway_addr.to_string())
        .replace(RECIPE_APP, upstream.trim_start_matches("http://"));
    let nginx = Nginx::start(nginx_addr, &locations);
    Stack {
        idp,
        _gateway: gw,
        _upstream: upstream_task,
        nginx,
    }
}

fn location(r: &reqwest::Response) -> String {
    r.headers()["location"].to_str().unwrap().to_owned()
}

/// Identity headers a client might forge, in the forms that reach an upstream.
const SPOOFED: [(&str, &str); 5] = [
    ("x-auth-request-user", "evil"),
    ("x-auth-request-email", "evil@example.com"),
    ("x-auth-request-preferred-username", "evil"),
    ("x-auth-request-groups", "admins,evil-admins"),
    ("X_Auth_Request_User", "evil-underscore"),
];

fn spoof(mut request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    for (name, value) in SPOOFED {
        request = request.header(name, value);
    }
    request
}

/// No header the upstream received carries a forged value.
fn assert_nothing_forged(headers: &Value) {
    for (name, value) in headers.as_object().unwrap() {
        let value = value.as_str().unwrap_or_default();
        assert!(
            !value.contains("evil"),
            "a client-sent identity header reached the upstream: {name}: {value}\n{headers:#}"
        );
    }
}

#[tokio::test]
async fn anonymous_and_bearer_requests_through_nginx() {
    let stack = stack().await;
    let base = &stack.nginx.base_url;
    let http = client();

    // Anonymous: the recipe's `error_page 401 = @login` hands the request to the gateway, which
    // sends browsers to its login with the whole URL percent-encoded in `rd`.
    let r = http
        .get(format!("{base}/app/page?x=1&y=2"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(location(&r), "/login?rd=%2Fapp%2Fpage%3Fx%3D1%26y%3D2");
    // API clients get the gateway's 401 with the Bearer challenge.
    let r = http.get(format!("{base}/api")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"oidcgate\"");
    // Forged identity headers alone do not authenticate.
    let r = spoof(http.get(format!("{base}/app/page")))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    // The verify location is internal: not reachable from outside.
    let r = http
        .get(format!("{base}/auth/verify"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // An invalid bearer token is refused with the RFC 6750 `invalid_token` error.
    let r = http
        .get(format!("{base}/api"))
        .bearer_auth("not.a.jwt")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");

    // A bearer token from the IdP: nginx asks the gateway, which answers 202 with the identity;
    // nginx then proxies to the app with the identity headers from `auth_request_set`.
    let token = service_token(&stack.idp.base_url).await;
    let r = http
        .get(format!("{base}/api/items?page=2"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let seen: Value = r.json().await.unwrap();
    assert_eq!(seen["path"], "/api/items");
    assert_eq!(seen["query"], "page=2");
    assert_eq!(seen["headers"]["x-auth-request-user"], "demo-service");

    // The same with every identity header forged by the client: the app sees only what the
    // gateway said (nginx replaces headers named in `proxy_set_header`, drops `_` names).
    let seen: Value = spoof(http.get(format!("{base}/api")).bearer_auth(&token))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["headers"]["x-auth-request-user"], "demo-service");
    assert_nothing_forged(&seen["headers"]);
    // The service has no email or groups: those headers are absent, not the client's values.
    assert!(seen["headers"].get("x-auth-request-groups").is_none());
    assert!(seen["headers"].get("x-auth-request-email").is_none());
}

#[tokio::test]
async fn browser_sign_in_through_nginx() {
    let stack = stack().await;
    let base = &stack.nginx.base_url;
    let http = client();

    // /login, the IdP's form, and /auth/callback on the nginx origin (the recipe's regex
    // location sends them to the gateway), back to the page asked for.
    let mut jar = Jar::default();
    assert_eq!(
        app_sign_in(&http, &mut jar, base, "/app/page?x=1&y=2").await,
        "/app/page?x=1&y=2"
    );
    assert!(
        jar.0["last_callback"].starts_with(&format!("{base}/auth/callback?")),
        "{}",
        jar.0["last_callback"]
    );
    let r = spoof(http.get(format!("{base}/app/page?x=1")))
        .header("cookie", jar.header())
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let seen: Value = r.json().await.unwrap();
    let h = &seen["headers"];
    assert_eq!(seen["path"], "/app/page");
    assert_eq!(h["x-auth-request-user"], "alice");
    assert_eq!(h["x-auth-request-email"], "alice@example.com");
    assert_eq!(h["x-auth-request-groups"], "admins,users");
    assert_eq!(h["x-auth-request-preferred-username"], "alice");
    assert_nothing_forged(h);

    // The session is what nginx's subrequest carried: without the cookie, back to the login.
    let r = http
        .get(format!("{base}/app/page"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);

    // The gateway's userinfo is reachable through the recipe's `auth/` location.
    let me: Value = http
        .get(format!("{base}/auth/userinfo"))
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["sub"], "alice");
}
