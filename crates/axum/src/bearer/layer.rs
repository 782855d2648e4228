//! [`BearerAuthLayer`]: validates `Authorization: Bearer` tokens with an
//! [`AccessTokenValidator`] and attaches a [`Principal`] to the request.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum_core::response::Response;
use http::header::AUTHORIZATION;
use http::{HeaderMap, Request};
use oidcgate_core::validate::AccessTokenValidator;
use tower_layer::Layer;
use tower_service::Service;

use super::principal::Principal;
use super::response::{BearerError, DEFAULT_REALM};

/// Whether requests without a token may pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Required,
    Optional,
}

/// A tower layer that authenticates bearer tokens.
#[derive(Debug, Clone)]
pub struct BearerAuthLayer {
    validator: Arc<AccessTokenValidator>,
    mode: Mode,
    realm: Arc<str>,
}

impl BearerAuthLayer {
    /// Every request needs a valid token (401 otherwise).
    pub fn required(validator: Arc<AccessTokenValidator>) -> Self {
        Self {
            validator,
            mode: Mode::Required,
            realm: DEFAULT_REALM.into(),
        }
    }

    /// Requests without a token pass anonymously (no [`Principal`]); a presented token must
    /// still be valid.
    pub fn optional(validator: Arc<AccessTokenValidator>) -> Self {
        Self {
            validator,
            mode: Mode::Optional,
            realm: DEFAULT_REALM.into(),
        }
    }

    /// The realm named in `WWW-Authenticate` challenges.
    pub fn realm(mut self, realm: impl Into<Arc<str>>) -> Self {
        self.realm = realm.into();
        self
    }
}

impl<S> Layer<S> for BearerAuthLayer {
    type Service = BearerAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BearerAuth {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`BearerAuthLayer`] produces.
#[derive(Debug, Clone)]
pub struct BearerAuth<S> {
    inner: S,
    layer: BearerAuthLayer,
}

/// What the `Authorization` header says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Credentials<'a> {
    None,
    Bearer(&'a str),
}

/// Reads a bearer token: scheme `Bearer` in any case, then the token (RFC 6750 §2.1). Another
/// scheme counts as no bearer token; two `Authorization` headers are an invalid request.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Result<Credentials<'_>, BearerError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(Credentials::None);
    };
    if values.next().is_some() {
        return Err(BearerError::InvalidRequest(
            "more than one Authorization header",
        ));
    }
    let Ok(value) = value.to_str() else {
        return Err(BearerError::InvalidRequest(
            "Authorization header is not visible ASCII",
        ));
    };
    let Some((scheme, rest)) = value.split_once(' ') else {
        return Ok(if value.eq_ignore_ascii_case("bearer") {
            Credentials::Bearer("")
        } else {
            Credentials::None
        });
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(Credentials::None);
    }
    Ok(Credentials::Bearer(rest.trim_matches(' ')))
}

impl<S, ReqBody> Service<Request<ReqBody>> for BearerAuth<S>
where
    S: Service<Request<ReqBody>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // The clone that was polled ready handles this request (tower's usual pattern).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let outcome = match bearer_token(request.headers()) {
                Err(e) => Err(e),
                Ok(Credentials::None) if layer.mode == Mode::Optional => Ok(None),
                Ok(Credentials::None) => Err(BearerError::Missing),
                Ok(Credentials::Bearer(token)) => match layer.validator.validate(token).await {
                    Ok(claims) => Ok(Some(Principal::new(claims))),
                    Err(e) => {
                        tracing::debug!(check = e.check(), error = %e, "bearer token refused");
                        Err(BearerError::Invalid(e))
                    }
                },
            };
            match outcome {
                Ok(principal) => {
                    if let Some(principal) = principal {
                        request.extensions_mut().insert(principal);
                    }
                    inner.call(request).await
                }
                Err(e) => Ok(e.into_response_with_realm(&layer.realm)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn parse(values: &[&str]) -> Result<Credentials<'static>, ()> {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        let headers: &'static HeaderMap = Box::leak(Box::new(headers));
        bearer_token(headers).map_err(|_| ())
    }

    #[test]
    fn header_parsing() {
        assert_eq!(parse(&[]), Ok(Credentials::None));
        assert_eq!(parse(&["Bearer abc"]), Ok(Credentials::Bearer("abc")));
        assert_eq!(parse(&["bEaReR  abc "]), Ok(Credentials::Bearer("abc")));
        assert_eq!(parse(&["Bearer"]), Ok(Credentials::Bearer("")));
        assert_eq!(parse(&["Basic dXNlcjpwdw=="]), Ok(Credentials::None));
        assert_eq!(parse(&["Bearer a", "Bearer b"]), Err(()));
    }
}
