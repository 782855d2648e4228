//! oidcgate-idp: the development OpenID Provider (DESIGN §5), a real provider for the demo,
//! the tests and local development.
//!
//! - [`config`]: users and clients (TOML or the demo set), lifetimes.
//! - [`store`]: codes, refresh-token families, sessions, pending logins, keys (memory or SQLite).
//! - [`keys`]: signing keys, their rotation and the JWKS.
//! - [`tokens`]: minting access and ID tokens, verifying its own access tokens.
//! - [`routes`]: the HTTP endpoints, advertised by discovery.

pub mod config;
pub mod keys;
pub mod routes;
pub mod store;
pub mod tokens;

use std::net::SocketAddr;
use std::sync::Arc;

pub use config::{ConfigError, Directory, Lifetimes};
pub use keys::{KeyError, KeyRing};
pub use store::{MemoryStore, SqliteStore, Store};

/// Everything a running IdP needs.
pub struct Idp {
    pub issuer: String,
    pub directory: Directory,
    pub keys: KeyRing,
    pub store: Arc<dyn Store>,
    pub lifetimes: Lifetimes,
}

impl Idp {
    /// An IdP with an in-memory store and fresh keys.
    pub fn new(issuer: impl Into<String>, directory: Directory) -> Result<Self, KeyError> {
        Self::with_store(issuer, directory, Arc::new(MemoryStore::default()))
    }

    /// An IdP on `store`, loading its keys (and creating missing ones) from it.
    pub fn with_store(
        issuer: impl Into<String>,
        directory: Directory,
        store: Arc<dyn Store>,
    ) -> Result<Self, KeyError> {
        let issuer = issuer.into();
        let keys = KeyRing::load_or_create(store.as_ref(), routes::now())?;
        Ok(Self {
            issuer: issuer.trim_end_matches('/').to_owned(),
            directory,
            keys,
            store,
            lifetimes: Lifetimes::default(),
        })
    }

    /// The axum router of every endpoint.
    pub fn router(self: Arc<Self>) -> axum::Router {
        routes::router(self)
    }

    /// Serves on `listener` until `shutdown` completes; reloads rotated keys from the store
    /// every [`keys::RELOAD_INTERVAL`].
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let idp = Arc::new(self);
        let reloader = {
            let idp = idp.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(keys::RELOAD_INTERVAL);
                loop {
                    tick.tick().await;
                    let idp = idp.clone();
                    let result = tokio::task::spawn_blocking(move || {
                        idp.keys.reload(idp.store.as_ref(), routes::now())
                    })
                    .await;
                    match result {
                        Ok(Ok(true)) => tracing::info!("signing keys reloaded after a rotation"),
                        Ok(Ok(false)) => {}
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "reloading signing keys failed; keeping the current ones")
                        }
                        Err(e) => tracing::warn!(error = %e, "key reload task failed"),
                    }
                }
            })
        };
        let app = idp
            .router()
            .into_make_service_with_connect_info::<SocketAddr>();
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await;
        reloader.abort();
        served
    }
}
