//! [`RequireScopeLayer`]: a per-route scope requirement (seed 001's
//! `@requires(scopes=["profile"])`). Put it inside a [`super::BearerAuthLayer`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum_core::response::{IntoResponse, Response};
use http::Request;
use tower_layer::Layer;
use tower_service::Service;

use super::principal::Principal;
use super::response::BearerError;

/// Requires every listed scope; 401 without a principal, 403 `insufficient_scope` otherwise.
#[derive(Debug, Clone)]
pub struct RequireScopeLayer {
    scopes: Arc<[String]>,
}

impl RequireScopeLayer {
    /// All of `scopes` are required (`authenticated` is held by every authenticated caller).
    pub fn new(scopes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            scopes: scopes.into_iter().map(Into::into).collect(),
        }
    }
}

impl<S> Layer<S> for RequireScopeLayer {
    type Service = RequireScope<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireScope {
            inner,
            scopes: self.scopes.clone(),
        }
    }
}

/// The service [`RequireScopeLayer`] produces.
#[derive(Debug, Clone)]
pub struct RequireScope<S> {
    inner: S,
    scopes: Arc<[String]>,
}

impl<S, ReqBody> Service<Request<ReqBody>> for RequireScope<S>
where
    S: Service<Request<ReqBody>, Response = Response>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let refusal = match request.extensions().get::<Principal>() {
            None => Some(BearerError::Missing),
            Some(p) if self.scopes.iter().all(|s| p.has_scope(s)) => None,
            Some(_) => Some(BearerError::InsufficientScope(self.scopes.clone())),
        };
        match refusal {
            None => Box::pin(self.inner.call(request)),
            Some(e) => Box::pin(std::future::ready(Ok(e.into_response()))),
        }
    }
}
