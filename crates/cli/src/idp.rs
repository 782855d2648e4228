//! `oidcgate idp`: runs the development OpenID Provider (DESIGN §5). Reads its own flags or
//! `IDP_LISTEN`, `IDP_ISSUER`, `IDP_CONFIG` — never the gateway's `OIDC_*` settings.

use oidcgate_idp::{Directory, Idp};

use crate::Outcome;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "IDP_LISTEN", default_value = "127.0.0.1:9000")]
    listen: String,
    /// The issuer URL (default: http://<listen address>).
    #[arg(long, env = "IDP_ISSUER")]
    issuer: Option<String>,
    /// TOML file with [[users]] and [[clients]] (default: the demo users and clients).
    #[arg(long, env = "IDP_CONFIG")]
    config: Option<String>,
}

pub async fn run(args: Args) -> Outcome {
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
    let idp = match Idp::new(&issuer, directory) {
        Ok(idp) => idp,
        Err(e) => {
            eprintln!("error: generating signing keys failed: {e}");
            return Outcome::Failed;
        }
    };
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
