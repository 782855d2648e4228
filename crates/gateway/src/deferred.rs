//! Login that can start later. When the IdP cannot be reached at start, the gateway serves
//! anyway — health, metrics, bearer tokens (their keys load on their own) — and retries
//! discovery in the background with backoff (1 s doubling to 30 s). Until it succeeds,
//! `/readyz` says `login_keys: false`, the login routes answer 503 with `Retry-After`, and no
//! session is recognised, so browsers are sent to a login page that explains the outage.
//! Once discovery succeeds, [`DeferredLoginLayer`] hands every request to the real
//! [`OidcLoginLayer`].

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use axum::response::Response;
use oidcgate_axum::login::OidcLoginLayer;
use oidcgate_core::client::OidcClient;
use tower_layer::Layer;
use tower_service::Service;

/// The login side once the IdP has been discovered.
pub struct Ready {
    pub client: Arc<OidcClient>,
    pub layer: OidcLoginLayer,
}

/// Login as configured: ready, or waiting for the IdP.
pub struct LoginState {
    ready: OnceLock<Ready>,
    /// The routes the login layer serves (answered with 503 while waiting).
    routes: Vec<String>,
}

impl LoginState {
    pub fn new(routes: Vec<String>) -> Self {
        Self {
            ready: OnceLock::new(),
            routes,
        }
    }

    /// The login side, once the IdP has been discovered.
    pub fn get(&self) -> Option<&Ready> {
        self.ready.get()
    }

    pub fn set(&self, ready: Ready) {
        let _ = self.ready.set(ready);
    }

    /// Retries `attempt` with backoff until it yields the login side.
    pub fn retry_in_background<F, Fut>(self: &Arc<Self>, mut attempt: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Ready, String>> + Send,
    {
        let state = self.clone();
        tokio::spawn(async move {
            let mut wait = Duration::from_secs(1);
            loop {
                tokio::time::sleep(wait).await;
                match attempt().await {
                    Ok(ready) => {
                        tracing::info!("the identity provider is reachable; login is ready");
                        state.set(ready);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in = ?wait, "identity provider still unreachable; login waits");
                        wait = (wait * 2).min(Duration::from_secs(30));
                    }
                }
            }
        });
    }
}

/// Routes requests through the login layer once it exists.
#[derive(Clone)]
pub struct DeferredLoginLayer {
    pub state: Arc<LoginState>,
}

impl<S> Layer<S> for DeferredLoginLayer {
    type Service = DeferredLogin<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DeferredLogin {
            inner,
            state: self.state.clone(),
        }
    }
}

/// The service of [`DeferredLoginLayer`].
#[derive(Clone)]
pub struct DeferredLogin<S> {
    inner: S,
    state: Arc<LoginState>,
}

fn waiting(request: &Request<Body>) -> Response {
    use oidcgate_axum::login::pages::{PROVIDER_UNREACHABLE, unavailable};
    unavailable(request.headers(), PROVIDER_UNREACHABLE, "5")
}

impl<S> Service<Request<Body>> for DeferredLogin<S>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        match self.state.get() {
            // The login layer's future is boxed already.
            Some(ready) => ready.layer.layer(inner).call(request),
            None if self.state.routes.iter().any(|r| r == request.uri().path()) => {
                let response = waiting(&request);
                Box::pin(async move { Ok(response) })
            }
            None => {
                let mut inner = inner;
                Box::pin(inner.call(request))
            }
        }
    }
}
