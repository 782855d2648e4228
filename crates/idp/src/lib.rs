//! oidcgate-idp: the development OpenID Provider (DESIGN §5), a real provider for the demo,
//! the tests and local development.
//!
//! - [`config`]: users and clients (TOML or the demo set), lifetimes.
//! - [`store`]: codes, refresh-token families, sessions, pending logins (hashed tokens).
//! - [`keys`]: signing keys and the JWKS.
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
pub use keys::KeyRing;
pub use store::{MemoryStore, Store};

/// Everything a running IdP needs.
pub struct Idp {
    pub issuer: String,
    pub directory: Directory,
    pub keys: KeyRing,
    pub store: Arc<dyn Store>,
    pub lifetimes: Lifetimes,
}

impl Idp {
    /// An IdP with fresh keys and an in-memory store.
    pub fn new(
        issuer: impl Into<String>,
        directory: Directory,
    ) -> Result<Self, oidcgate_core::jose::JoseError> {
        let issuer = issuer.into();
        Ok(Self {
            issuer: issuer.trim_end_matches('/').to_owned(),
            directory,
            keys: KeyRing::generate()?,
            store: Arc::new(MemoryStore::default()),
            lifetimes: Lifetimes::default(),
        })
    }

    /// The axum router of every endpoint.
    pub fn router(self) -> axum::Router {
        routes::router(Arc::new(self))
    }

    /// Serves on `listener` until `shutdown` completes.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = self
            .router()
            .into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    }
}
