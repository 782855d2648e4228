//! The `oidcgate` command line (DESIGN §4). Subcommands land with their issues; this release
//! has `serve`, `demo`, `idp`, `token` and `inspect`. Exit codes: 0 ok; 2 bad configuration, usage, or input that is not a JWS;
//! 1 runtime failure or a failed check.

mod demo;
mod idp;
mod inspect;
mod serve;
mod timefmt;
mod token;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// OpenID Connect authentication for web applications and APIs.
#[derive(Debug, Parser)]
#[command(name = "oidcgate", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway: an authenticating reverse proxy and forward-auth endpoint (reads .env).
    Serve(Box<oidcgate_gateway::ServeArgs>),
    /// Run the IdP, a sample app and the gateway in front of it (no settings needed).
    Demo(demo::Args),
    /// Run the development OpenID Provider (demo users and clients unless --config).
    Idp(idp::Args),
    /// Get, refresh, revoke or introspect tokens (client credentials, device, login).
    Token(token::Args),
    /// Decode a JWT, and with --issuer verify it against the issuer's keys.
    Inspect(inspect::Args),
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Ok,
    /// Exit 1: a runtime failure, or (inspect with `--issuer`) a failed check.
    Failed,
    /// Exit 2: bad configuration, usage or input.
    Usage,
}

impl From<Outcome> for ExitCode {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Ok => ExitCode::SUCCESS,
            Outcome::Failed => ExitCode::from(1),
            Outcome::Usage => ExitCode::from(2),
        }
    }
}

/// Parses arguments, runs the subcommand, and maps the outcome onto exit codes.
pub fn main() -> ExitCode {
    // `serve` reads a .env in the working directory; the real environment wins (dotenvy never
    // overrides). Other commands read only the environment.
    if std::env::args().nth(1).as_deref() == Some("serve") {
        let _ = dotenvy::dotenv();
    }
    let cli = Cli::parse(); // clap exits 2 on usage errors and 0 for --help/--version
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // LOG_FORMAT=json: one JSON object per line, for log shippers; anything else is text.
    if std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        logs.json().init();
    } else {
        logs.init();
    }
    // One worker per core unless TOKIO_WORKER_THREADS says otherwise (tokio reads it). With
    // one, a current-thread runtime: every task runs on the thread that accepts, with no
    // hand-off between threads (the event-loop shape of an nginx worker).
    let workers = std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let built = if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    };
    let runtime = match built {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(*args).await,
            Command::Demo(args) => demo::run(args).await,
            Command::Idp(args) => idp::run(args).await,
            Command::Inspect(args) => inspect::run(args).await,
            Command::Token(args) => token::run(args).await,
        }
    });
    outcome.into()
}
