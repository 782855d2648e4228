//! [`RequireLoginLayer`]: without a [`SessionUser`], browsers (`Accept` lists `text/html`) are
//! sent to `/login?rd=<this path>` and API clients get 401.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum_core::body::Body;
use axum_core::response::Response;
use http::header::LOCATION;
use http::{HeaderValue, Request, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use super::pages::{error_response, wants_html};
use super::session::SessionUser;

/// Requires a signed-in user.
#[derive(Debug, Clone)]
pub struct RequireLoginLayer {
    login_path: Arc<str>,
}

impl RequireLoginLayer {
    /// Browsers are redirected to `login_path` (normally `/login`).
    pub fn new(login_path: impl Into<Arc<str>>) -> Self {
        Self {
            login_path: login_path.into(),
        }
    }
}

impl<S> Layer<S> for RequireLoginLayer {
    type Service = RequireLogin<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireLogin {
            inner,
            login_path: self.login_path.clone(),
        }
    }
}

/// The service of [`RequireLoginLayer`].
#[derive(Debug, Clone)]
pub struct RequireLogin<S> {
    inner: S,
    login_path: Arc<str>,
}

impl<S, B> Service<Request<B>> for RequireLogin<S>
where
    S: Service<Request<B>, Response = Response>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if request.extensions().get::<SessionUser>().is_some() {
            return Box::pin(self.inner.call(request));
        }
        let response = if wants_html(request.headers()) {
            let here = request.uri().path_and_query().map_or("/", |p| p.as_str());
            let rd: String = url::form_urlencoded::byte_serialize(here.as_bytes()).collect();
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::FOUND;
            if let Ok(v) = HeaderValue::from_str(&format!("{}?rd={rd}", self.login_path)) {
                r.headers_mut().insert(LOCATION, v);
            }
            r
        } else {
            error_response(
                request.headers(),
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "login required",
            )
        };
        Box::pin(std::future::ready(Ok(response)))
    }
}
