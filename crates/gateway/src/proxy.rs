//! Forwarding to `UPSTREAM_URL` on hyper (reqwest is a user agent, not a forwarder): pooled
//! connections, request and response bodies streamed in both directions (never buffered),
//! hop-by-hop headers dropped, a timeout on the upstream's answer, and clear 502/504 pages
//! when the upstream is down or slow.

use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::HeaderMap;
use axum::http::header::{CONNECTION, HOST, UPGRADE};
use axum::http::uri::Authority;
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::response::Response;
use url::Url;

/// The protected application.
#[derive(Clone)]
pub struct Upstream {
    /// `UPSTREAM_URL`'s authority with the same as a `Host` value, split once (`None`: not
    /// usable, every request gets 502 — the configuration check prevents it).
    authority: Option<(Authority, HeaderValue)>,
    /// `UPSTREAM_URL`'s path, without its final `/`, put before every request path.
    prefix: String,
    pool: std::sync::Arc<crate::pool::Pool>,
    timeout: Duration,
    /// Bounds concurrent upstream requests (UPSTREAM_MAX_CONNECTIONS).
    permits: std::sync::Arc<tokio::sync::Semaphore>,
    /// MAX_BODY_BYTES (0: unlimited).
    max_body: u64,
}

impl Upstream {
    pub fn new(base: Url, timeout: Duration, max_connections: usize, max_body: u64) -> Self {
        let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(max_connections));
        let (address, authority) = upstream_address(&base).unzip();
        // Idle connections: as many as may be busy at once (UPSTREAM_MAX_CONNECTIONS).
        let pool = crate::pool::Pool::new(
            address.unwrap_or_default(),
            Duration::from_secs(5),
            Duration::from_secs(60),
            max_connections,
        );
        let authority = authority.and_then(|authority| {
            let host = HeaderValue::from_str(authority.as_str()).ok()?;
            Some((authority, host))
        });
        Self {
            authority,
            pool,
            prefix: base.path().trim_end_matches('/').to_owned(),
            timeout,
            permits,
            max_body,
        }
    }

    /// The request target sent upstream, in origin form (the upstream's path prefix, then the
    /// request's path and query), and the `Host` header that goes with it.
    fn target(&self, original: &Uri) -> Option<(Uri, HeaderValue)> {
        let (_, host) = self.authority.as_ref()?;
        let path_and_query = match original.path_and_query() {
            // The common case: no prefix, the request's own path (a cheap clone of its bytes);
            // `OPTIONS *` (the only method the asterisk form is for, checked before) names the
            // server, not a path, and gets no prefix.
            Some(pq) if self.prefix.is_empty() || pq.as_str() == "*" => pq.clone(),
            Some(pq) => format!("{}{}", self.prefix, pq.as_str()).parse().ok()?,
            None => format!("{}/", self.prefix).parse().ok()?,
        };
        Some((Uri::from(path_and_query), host.clone()))
    }

    /// Sends the request upstream and streams the answer back. The caller has already removed
    /// the client's hop-by-hop headers (before adding its own, so a client's `Connection` cannot
    /// name them away) and passes the protocol of an HTTP/1.1 `Upgrade` request, if any: the
    /// upgrade headers are put back, and when the upstream switches protocols the two upgraded
    /// connections are joined and bytes copied both ways until either side closes.
    pub async fn forward(&self, mut request: Request, upgrade: Option<HeaderValue>) -> Response {
        let Some((target, host)) = self.target(request.uri()) else {
            return page(
                StatusCode::BAD_GATEWAY,
                "The gateway's upstream URL is not usable.",
            );
        };
        request.headers_mut().insert(HOST, host);
        *request.uri_mut() = target;
        // HTTP/1.1 upstream whatever the client spoke (as nginx's `proxy_http_version 1.1`): an
        // HTTP/1.0 request would end the pooled connection.
        *request.version_mut() = axum::http::Version::HTTP_11;
        if self.max_body > 0 {
            let declared = request
                .headers()
                .get(axum::http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|len| len > self.max_body) {
                return page(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "The request body is larger than this gateway accepts.",
                );
            }
            // Streamed bodies without a length are cut off at the limit.
            let limit = usize::try_from(self.max_body).unwrap_or(usize::MAX);
            request = request.map(|body| Body::new(http_body_util::Limited::new(body, limit)));
        }
        // Held until the response headers arrive. Holding it through the body would count
        // streamed downloads, SSE and long polls too, but would let clients that stop reading
        // (no write timeout here) take every permit and lock everyone out.
        let Ok(Ok(_permit)) =
            tokio::time::timeout(self.timeout, self.permits.clone().acquire_owned()).await
        else {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "The gateway is at its limit of upstream connections; try again.",
            );
        };
        let client_upgrade = match &upgrade {
            Some(protocol) => {
                request.headers_mut().insert(UPGRADE, protocol.clone());
                request
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("upgrade"));
                Some(hyper::upgrade::on(&mut request))
            }
            None => None,
        };
        match tokio::time::timeout(self.timeout, self.pool.send(request)).await {
            Ok(Ok((mut response, lease))) => {
                if response.status() == StatusCode::SWITCHING_PROTOCOLS && client_upgrade.is_none()
                {
                    // A switch nobody asked for: the client could not follow it.
                    tracing::warn!("the upstream switched protocols on a request without Upgrade");
                    return page(
                        StatusCode::BAD_GATEWAY,
                        "The application behind the gateway answered in a way the gateway cannot pass on.",
                    );
                }
                if response.status() == StatusCode::SWITCHING_PROTOCOLS
                    && let Some(client_side) = client_upgrade
                {
                    let upstream_side = hyper::upgrade::on(&mut response);
                    tokio::spawn(async move {
                        match (client_side.await, upstream_side.await) {
                            (Ok(client), Ok(upstream)) => {
                                let mut client = hyper_util::rt::TokioIo::new(client);
                                let mut upstream = hyper_util::rt::TokioIo::new(upstream);
                                let _ =
                                    tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                            }
                            (Err(e), _) | (_, Err(e)) => {
                                tracing::debug!(error = %e, "upgrade failed")
                            }
                        }
                    });
                    let (parts, _) = response.into_parts();
                    return Response::from_parts(parts, Body::empty());
                }
                let (mut parts, body) = response.into_parts();
                crate::headers::strip_hop_by_hop(&mut parts.headers);
                Response::from_parts(parts, Body::new(crate::pool::PooledBody::new(body, lease)))
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "upstream request failed");
                page(
                    StatusCode::BAD_GATEWAY,
                    "The application behind the gateway is not answering.",
                )
            }
            Err(_) => page(
                StatusCode::GATEWAY_TIMEOUT,
                "The application behind the gateway took too long to answer.",
            ),
        }
    }
}

fn page(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{0}</title></head><body><h1>{0}</h1><p>{message}</p></body></html>",
        status
    );
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    // Marks the gateway's own error pages (the metrics tell them from the app's 502s).
    r.headers_mut()
        .insert("x-oidcgate-upstream-error", HeaderValue::from_static("1"));
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

/// Where to connect for `UPSTREAM_URL` (`host:port`, the scheme's port when none is written)
/// and the authority for the `Host` header (the port only when written).
fn upstream_address(base: &Url) -> Option<(String, Authority)> {
    let host = base.host_str()?;
    let port = base.port_or_known_default()?;
    let authority = match base.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    Some((format!("{host}:{port}"), authority.parse().ok()?))
}

/// The protocol of an HTTP/1.1 upgrade request (`Connection: upgrade` + `Upgrade: …`).
pub fn requested_upgrade(headers: &HeaderMap) -> Option<HeaderValue> {
    let connection_upgrade = headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|v| crate::headers::connection_tokens(v.as_bytes()))
        .any(|t| t.eq_ignore_ascii_case(b"upgrade"));
    connection_upgrade
        .then(|| headers.get(UPGRADE).cloned())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_addresses() {
        let cases = [
            ("http://127.0.0.1:8000", "127.0.0.1:8000", "127.0.0.1:8000"),
            ("http://app", "app:80", "app"),
            ("http://localhost/", "localhost:80", "localhost"),
            ("http://app:80/prefix", "app:80", "app"),
            ("http://[::1]/", "[::1]:80", "[::1]"),
            ("http://[::1]:9000", "[::1]:9000", "[::1]:9000"),
        ];
        for (url, connect, host) in cases {
            let (address, authority) = upstream_address(&Url::parse(url).unwrap()).unwrap();
            assert_eq!(
                (address.as_str(), authority.as_str()),
                (connect, host),
                "{url}"
            );
        }
    }
}
