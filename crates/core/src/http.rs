//! The one HTTP client every outbound control-plane call goes through (discovery, JWKS, and
//! later token, userinfo, introspection). It is a trait so tests and embedders can inject their
//! own; [`ReqwestClient`] is the default: redirects off, connect and total timeouts, and a
//! response-size cap enforced while streaming.
//!
//! [`UrlPolicy`] decides which URLs may be called at all: https, or plain http to loopback.

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::Duration;

use thiserror::Error;
use url::Url;

/// A boxed, sendable future (keeps the trait object-safe without an extra crate).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// HTTP methods the control plane uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

/// An outbound request.
#[derive(Clone)]
pub struct HttpRequest {
    pub method: Method,
    pub url: Url,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

impl fmt::Debug for HttpRequest {
    /// Headers and body may hold credentials: only the method and URL are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

impl HttpRequest {
    /// A GET that accepts JSON.
    pub fn get_json(url: Url) -> Self {
        Self {
            method: Method::Get,
            url,
            headers: vec![("accept".into(), "application/json".into())],
            body: None,
        }
    }
}

/// A response with its whole (size-capped) body.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first value of a header (name in lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request produced no response.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HttpError {
    #[error("URL {0} is not allowed: {1}")]
    UrlNotAllowed(String, &'static str),
    #[error("connecting to {0} failed or timed out")]
    Connect(String),
    #[error("request to {0} timed out")]
    Timeout(String),
    #[error("response from {url} is larger than {max} bytes")]
    TooLarge { url: String, max: usize },
    #[error("request to {0} failed: {1}")]
    Other(String, String),
}

/// The injected HTTP client.
pub trait HttpClient: Send + Sync + fmt::Debug + 'static {
    /// Sends a request and reads the whole response body.
    fn execute(&self, request: HttpRequest) -> BoxFuture<'_, Result<HttpResponse, HttpError>>;
}

/// Limits for outbound calls (DESIGN §2 defaults).
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub connect_timeout: Duration,
    pub total_timeout: Duration,
    pub max_body_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(10),
            max_body_bytes: 256 * 1024,
        }
    }
}

/// Which URLs outbound calls may use.
#[derive(Debug, Clone, Copy, Default)]
pub struct UrlPolicy {
    /// Allow plain http to non-loopback hosts (development only).
    pub allow_http: bool,
}

impl UrlPolicy {
    /// https always; http only for loopback hosts (127.0.0.0/8, `[::1]`, `localhost`) unless
    /// `allow_http`. No credentials in the URL, no other schemes.
    pub fn check(&self, url: &Url) -> Result<(), HttpError> {
        let deny = |why| Err(HttpError::UrlNotAllowed(url.as_str().to_owned(), why));
        if !url.username().is_empty() || url.password().is_some() {
            return deny("credentials in URLs are not allowed");
        }
        match url.scheme() {
            "https" => Ok(()),
            "http" if self.allow_http || is_loopback(url) => Ok(()),
            "http" => deny(
                "plain http is only allowed for loopback hosts (set OIDC_ALLOW_HTTP=true for development)",
            ),
            _ => deny("only https (or http to loopback) is allowed"),
        }
    }
}

/// True for `localhost`, 127.0.0.0/8 and `[::1]`.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

#[cfg(feature = "reqwest")]
pub use reqwest_client::ReqwestClient;

#[cfg(feature = "reqwest")]
mod reqwest_client {
    use super::*;

    /// [`HttpClient`] on reqwest (rustls on aws-lc-rs): redirects off, timeouts, body cap.
    #[derive(Debug, Clone)]
    pub struct ReqwestClient {
        client: reqwest::Client,
        limits: HttpLimits,
    }

    impl ReqwestClient {
        /// Builds a client with these limits.
        pub fn new(limits: HttpLimits) -> Result<Self, HttpError> {
            let client = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(limits.connect_timeout)
                .timeout(limits.total_timeout)
                .user_agent(concat!("oidcgate/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| HttpError::Other(String::new(), e.to_string()))?;
            Ok(Self { client, limits })
        }

        async fn run(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
            let url = request.url.as_str().to_owned();
            let method = match request.method {
                Method::Get => reqwest::Method::GET,
                Method::Post => reqwest::Method::POST,
            };
            let mut builder = self.client.request(method, request.url);
            for (name, value) in &request.headers {
                builder = builder.header(name.as_str(), value.as_str());
            }
            if let Some(body) = request.body {
                builder = builder.body(body);
            }
            let classify = |e: reqwest::Error| {
                if e.is_timeout() {
                    HttpError::Timeout(url.clone())
                } else if e.is_connect() {
                    HttpError::Connect(url.clone())
                } else {
                    HttpError::Other(url.clone(), e.to_string())
                }
            };
            let mut response = builder.send().await.map_err(classify)?;
            let max = self.limits.max_body_bytes;
            if response
                .content_length()
                .is_some_and(|len| len > max as u64)
            {
                return Err(HttpError::TooLarge { url, max });
            }
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
                .collect();
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(classify)? {
                if body.len() + chunk.len() > max {
                    return Err(HttpError::TooLarge { url, max });
                }
                body.extend_from_slice(&chunk);
            }
            Ok(HttpResponse {
                status,
                headers,
                body,
            })
        }
    }

    impl HttpClient for ReqwestClient {
        fn execute(&self, request: HttpRequest) -> BoxFuture<'_, Result<HttpResponse, HttpError>> {
            Box::pin(self.run(request))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_policy() {
        let strict = UrlPolicy::default();
        let ok = |s: &str| strict.check(&Url::parse(s).unwrap()).is_ok();
        assert!(ok("https://idp.example.com/"));
        assert!(ok("http://127.0.0.1:9000/"));
        assert!(ok("http://127.5.0.1/"));
        assert!(ok("http://localhost:8080/x"));
        assert!(ok("http://[::1]:9000/"));
        assert!(!ok("http://idp.example.com/"));
        assert!(!ok("http://localhost.evil.com/"));
        assert!(!ok("ftp://127.0.0.1/"));
        assert!(!ok("https://user:pw@idp.example.com/"));
        let lax = UrlPolicy { allow_http: true };
        assert!(
            lax.check(&Url::parse("http://idp.internal/").unwrap())
                .is_ok()
        );
    }
}
