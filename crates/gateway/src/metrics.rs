//! `/metrics` (Prometheus text format, prometheus-client): requests by outcome, the latency of
//! proxied requests, and the signing-key fetches of the gateway's key caches.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Authenticated and sent upstream.
    Proxied,
    /// A `SKIP_AUTH_ROUTES` route sent upstream without authentication.
    Public,
    /// No credentials (302 to login or 401).
    Unauthenticated,
    /// Invalid token, bad request or keys unavailable.
    Refused,
    /// Authenticated but not allowed (403).
    Forbidden,
    /// The upstream failed (502/504).
    UpstreamError,
}

impl Outcome {
    const ALL: [Self; 6] = [
        Self::Proxied,
        Self::Public,
        Self::Unauthenticated,
        Self::Refused,
        Self::Forbidden,
        Self::UpstreamError,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Proxied => "proxied",
            Self::Public => "public",
            Self::Unauthenticated => "unauthenticated",
            Self::Refused => "refused",
            Self::Forbidden => "forbidden",
            Self::UpstreamError => "upstream_error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// The gateway's metrics.
pub struct Metrics {
    registry: Registry,
    /// The family's counters, one per outcome in `Outcome::ALL` order, made at start so a
    /// request increments one without a label lookup.
    requests: [Counter; 6],
    latency: Histogram,
    jwks_fetches: Gauge<u64, AtomicU64>,
    session_store_errors: Gauge<u64, AtomicU64>,
    session_refreshes: Family<OutcomeLabel, Gauge<u64, AtomicU64>>,
}

/// Session token refreshes since start, by outcome.
#[derive(Debug, Default, Clone, Copy)]
pub struct Refreshes {
    pub refreshed: u64,
    pub rejected: u64,
    pub unavailable: u64,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("oidcgate");
        let family = Family::<OutcomeLabel, Counter>::default();
        registry.register("requests", "Requests by outcome", family.clone());
        let requests = Outcome::ALL.map(|outcome| {
            family
                .get_or_create(&OutcomeLabel {
                    outcome: outcome.label(),
                })
                .clone()
        });
        // 100 µs .. ~3.3 s.
        let latency = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "proxied_request_duration_seconds",
            "Time to the upstream's response headers",
            latency.clone(),
        );
        let jwks_fetches = Gauge::<u64, AtomicU64>::default();
        registry.register(
            "jwks_fetches",
            "JWKS fetch attempts by the gateway's key caches",
            jwks_fetches.clone(),
        );
        let session_store_errors = Gauge::<u64, AtomicU64>::default();
        registry.register(
            "session_store_errors",
            "Failed session-store (Redis) operations since start",
            session_store_errors.clone(),
        );
        let session_refreshes = Family::<OutcomeLabel, Gauge<u64, AtomicU64>>::default();
        registry.register(
            "session_refreshes",
            "Session token refreshes since start by outcome (refreshed, rejected: the session ended, unavailable: the IdP or Redis could not be reached)",
            session_refreshes.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            jwks_fetches,
            session_store_errors,
            session_refreshes,
        }
    }
}

impl Metrics {
    pub fn record(&self, outcome: Outcome) {
        self.requests[outcome as usize].inc();
    }

    pub fn observe_latency(&self, seconds: f64) {
        self.latency.observe(seconds);
    }

    /// The text exposition, with the JWKS fetch, session-store error and refresh counts set
    /// first.
    pub fn render(&self, fetches: u64, store_errors: u64, refreshes: Refreshes) -> String {
        self.jwks_fetches.set(fetches);
        self.session_store_errors.set(store_errors);
        for (outcome, n) in [
            ("refreshed", refreshes.refreshed),
            ("rejected", refreshes.rejected),
            ("unavailable", refreshes.unavailable),
        ] {
            self.session_refreshes
                .get_or_create(&OutcomeLabel { outcome })
                .set(n);
        }
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_counters_are_indexed_by_discriminant() {
        for (i, outcome) in Outcome::ALL.into_iter().enumerate() {
            assert_eq!(outcome as usize, i);
        }
        let m = Metrics::default();
        m.record(Outcome::Forbidden);
        m.record(Outcome::Forbidden);
        m.record(Outcome::Public);
        let text = m.render(0, 0, Refreshes::default());
        assert!(
            text.contains("oidcgate_requests_total{outcome=\"forbidden\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("oidcgate_requests_total{outcome=\"public\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("oidcgate_requests_total{outcome=\"proxied\"} 0"),
            "{text}"
        );
    }
}
