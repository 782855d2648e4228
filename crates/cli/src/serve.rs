//! `oidcgate serve`: checks the gateway settings (exit 2 naming the bad one) and runs it.

use oidcgate_gateway::{ServeArgs, StartError};

use crate::Outcome;

pub async fn run(args: ServeArgs) -> Outcome {
    let config = match args.check() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Outcome::Usage;
        }
    };
    if config.allow_http {
        tracing::warn!(
            "OIDC_ALLOW_HTTP=true: plain http to non-loopback issuers is allowed (development only)"
        );
    }
    match oidcgate_gateway::serve(config).await {
        Ok(()) => Outcome::Ok,
        Err(StartError::Config(e)) => {
            eprintln!("error: {e}");
            Outcome::Usage
        }
        Err(e) => {
            eprintln!("error: {e}");
            Outcome::Failed
        }
    }
}
