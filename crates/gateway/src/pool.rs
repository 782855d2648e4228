//! The upstream connection pool: HTTP/1.1 connections to the one `UPSTREAM_URL`, kept open and
//! reused (most recently used first), each driven by its own task.
//!
//! hyper-util's general client keys its pool by scheme and host, hashes that key on every
//! request and spawns a task per response to notice when the connection is free again; a
//! gateway talks to exactly one origin, so this pool is a stack behind a mutex, and a connection
//! goes back on it when the response body that came over it has been read to its end (a body
//! dropped before that closes the connection, whose state is then unknown).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::body::Bytes;
use hyper::body::Incoming;
use hyper::body::{Body as _, Frame, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// Why a request could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("cannot connect to the upstream: {0}")]
    Connect(String),
    #[error("the upstream connection failed: {0}")]
    Http(#[from] hyper::Error),
}

/// Idle connections to the upstream.
pub struct Pool {
    /// `host:port` to connect to (resolved at each new connection, so a DNS change is seen).
    address: String,
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_idle: usize,
    /// Oldest at the front, most recently returned at the back.
    idle: Mutex<VecDeque<Idle>>,
}

struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

impl Pool {
    pub fn new(
        address: String,
        connect_timeout: Duration,
        idle_timeout: Duration,
        max_idle: usize,
    ) -> Arc<Self> {
        Arc::new(Self {
            address,
            connect_timeout,
            idle_timeout,
            max_idle: max_idle.max(1),
            idle: Mutex::new(VecDeque::new()),
        })
    }

    /// Sends a request on an idle connection, or on a new one. A request the upstream never
    /// received (the idle connection had just been closed) is sent again on a new connection;
    /// one that was written is never resent.
    pub async fn send(
        self: &Arc<Self>,
        request: axum::http::Request<Body>,
    ) -> Result<(axum::http::Response<Incoming>, Option<Lease>), SendError> {
        let mut request = request;
        if let Some(mut sender) = self.take() {
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(self.lease(response, sender)),
                Err(mut e) => match e.take_message() {
                    Some(unsent) => request = unsent,
                    None => return Err(e.into_error().into()),
                },
            }
        }
        // Boxed: connecting is rare and its future large.
        let mut sender = Box::pin(self.connect()).await?;
        let response = sender.send_request(request).await?;
        Ok(self.lease(response, sender))
    }

    /// The connection comes back with the body unless the response switched protocols (the
    /// connection then belongs to the upgrade).
    fn lease(
        self: &Arc<Self>,
        response: axum::http::Response<Incoming>,
        sender: SendRequest<Body>,
    ) -> (axum::http::Response<Incoming>, Option<Lease>) {
        let lease =
            (response.status() != axum::http::StatusCode::SWITCHING_PROTOCOLS).then(|| Lease {
                sender,
                pool: self.clone(),
            });
        (response, lease)
    }

    /// The most recently used idle connection that can take a request now. Expired ones are
    /// dropped from the old end, closed ones as they are met; one still finishing its previous
    /// exchange (a request body still streaming after the response) stays for later. Only the
    /// connections looked at are touched, however many are idle.
    fn take(&self) -> Option<SendRequest<Body>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while idle
            .front()
            .is_some_and(|c| c.since.elapsed() >= self.idle_timeout)
        {
            idle.pop_front();
        }
        let mut busy = Vec::new();
        let mut found = None;
        while let Some(c) = idle.pop_back() {
            if c.sender.is_ready() {
                found = Some(c.sender);
                break;
            }
            if !c.sender.is_closed() {
                busy.push(c);
            }
        }
        // Still-busy connections go back in their order.
        idle.extend(busy.into_iter().rev());
        found
    }

    fn put(&self, sender: SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() >= self.max_idle {
            idle.pop_front();
        }
        idle.push_back(Idle {
            sender,
            since: Instant::now(),
        });
    }

    async fn connect(&self) -> Result<SendRequest<Body>, SendError> {
        let stream = tokio::time::timeout(
            self.connect_timeout,
            tokio::net::TcpStream::connect(&self.address),
        )
        .await
        .map_err(|_| SendError::Connect(format!("no answer within {:?}", self.connect_timeout)))?
        .map_err(|e| SendError::Connect(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(SendError::Http)?;
        tokio::spawn(async move {
            if let Err(e) = connection.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }
}

/// A connection lent to one response: back to the pool when its body has been read to the end.
pub struct Lease {
    sender: SendRequest<Body>,
    pool: Arc<Pool>,
}

/// A response body that returns its connection to the pool once read to the end.
pub struct PooledBody {
    body: Incoming,
    lease: Option<Lease>,
    done: bool,
}

impl PooledBody {
    pub fn new(body: Incoming, lease: Option<Lease>) -> Self {
        Self {
            body,
            lease,
            done: false,
        }
    }
}

impl hyper::body::Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = std::task::ready!(Pin::new(&mut this.body).poll_frame(cx));
        match &frame {
            None => this.done = true,
            Some(Ok(_)) => this.done = this.body.is_end_stream(),
            // The connection's state is unknown: it is not reused.
            Some(Err(_)) => this.lease = None,
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        if (self.done || self.body.is_end_stream())
            && let Some(lease) = self.lease.take()
        {
            lease.pool.put(lease.sender);
        }
    }
}
