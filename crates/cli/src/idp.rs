//! `oidcgate idp`: runs the development OpenID Provider (DESIGN §5), and `oidcgate idp
//! rotate-keys`. Reads its own flags or `IDP_LISTEN`, `IDP_ISSUER`, `IDP_CONFIG`, `IDP_STORE`,
//! `IDP_ACCESS_TOKEN_TTL` — never the gateway's `OIDC_*` settings.

use std::sync::Arc;

use oidcgate_idp::{Directory, Idp, KeyRing, MemoryStore, SqliteStore, Store};

use crate::Outcome;

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    action: Option<Action>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Add new signing keys and retire the old ones (they stay published for an hour); a
    /// running IdP on the same store picks the new keys up within 60 s.
    RotateKeys {
        /// The IdP's store: sqlite:PATH.
        #[arg(long, env = "IDP_STORE")]
        store: String,
    },
}

/// Where the IdP keeps its state.
fn open_store(spec: &str) -> Result<Arc<dyn Store>, String> {
    match spec {
        "memory" => Ok(Arc::new(MemoryStore::default())),
        _ => match spec.strip_prefix("sqlite:") {
            Some(path) if !path.is_empty() => SqliteStore::open(path)
                .map(|s| Arc::new(s) as Arc<dyn Store>)
                .map_err(|e| e.to_string()),
            _ => Err(format!("{spec:?} is not memory or sqlite:PATH")),
        },
    }
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "IDP_LISTEN", default_value = "127.0.0.1:9000")]
    listen: String,
    /// The issuer URL (default: http://<listen address>).
    #[arg(long, env = "IDP_ISSUER")]
    issuer: Option<String>,
    /// TOML file with [[users]] and [[clients]] (default: the demo users and clients).
    #[arg(long, env = "IDP_CONFIG")]
    config: Option<String>,
    /// memory (default) or sqlite:PATH (sessions, tokens and keys survive restarts).
    #[arg(long, env = "IDP_STORE", default_value = "memory")]
    store: String,
    /// Lifetime of access tokens in seconds (short ones exercise the relying party's refresh).
    #[arg(long, env = "IDP_ACCESS_TOKEN_TTL", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(5..=86_400))]
    access_token_ttl: u64,
}

pub async fn run(args: Args) -> Outcome {
    match args.action {
        Some(Action::RotateKeys { store }) => rotate(&store),
        None => serve(args.serve).await,
    }
}

fn rotate(spec: &str) -> Outcome {
    if spec == "memory" {
        eprintln!(
            "error: --store: rotate-keys needs a persistent store (sqlite:PATH); a memory store's keys live and die with its process"
        );
        return Outcome::Usage;
    }
    let store = match open_store(spec) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: --store: {e}");
            return Outcome::Usage;
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    match KeyRing::rotate(store.as_ref(), now) {
        Ok(kids) => {
            for kid in kids {
                println!("{kid}");
            }
            Outcome::Ok
        }
        Err(e) => {
            eprintln!("error: rotating keys failed: {e}");
            Outcome::Failed
        }
    }
}

async fn serve(args: ServeArgs) -> Outcome {
    let directory = match &args.config {
        Some(path) => match Directory::from_file(path) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("error: --config: {e}");
                return Outcome::Usage;
            }
        },
        None => Directory::demo(),
    };
    let listener = match tokio::net::TcpListener::bind(&args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: --listen: cannot listen on {}: {e}", args.listen);
            return Outcome::Usage;
        }
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: --listen: {e}");
            return Outcome::Failed;
        }
    };
    let issuer = args.issuer.unwrap_or_else(|| format!("http://{addr}"));
    match url::Url::parse(&issuer) {
        Ok(u)
            if matches!(u.scheme(), "http" | "https")
                && u.query().is_none()
                && u.fragment().is_none() => {}
        _ => {
            eprintln!(
                "error: --issuer: {issuer:?} is not an http(s) URL without query or fragment"
            );
            return Outcome::Usage;
        }
    }
    let store = match open_store(&args.store) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: --store: {e}");
            return Outcome::Usage;
        }
    };
    let mut idp = match Idp::with_store(&issuer, directory, store) {
        Ok(idp) => idp,
        Err(e) => {
            eprintln!("error: loading or creating signing keys failed: {e}");
            return Outcome::Failed;
        }
    };
    idp.lifetimes.access_token = std::time::Duration::from_secs(args.access_token_ttl);
    let demo = args.config.is_none();
    println!("listening on http://{addr}");
    eprintln!("oidcgate idp: issuer {issuer}");
    if demo {
        eprintln!(
            "demo users: alice / wonderland, bob / builder; clients: demo / demo-secret, demo-public, demo-service / demo-service-secret"
        );
    }
    let shutdown = async {
        #[cfg(unix)]
        {
            let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
            match term {
                Ok(mut term) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    };
    match idp.serve(listener, shutdown).await {
        Ok(()) => Outcome::Ok,
        Err(e) => {
            eprintln!("error: server failed: {e}");
            Outcome::Failed
        }
    }
}
