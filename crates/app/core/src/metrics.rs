//! Prometheus metrics, served on the admin listener at `/metrics`.
//!
//! Labels hold only route names, methods, statuses and outcomes from a closed set: never
//! a path, a header or a payload value, so cardinality stays bounded and nothing private
//! leaks into a monitoring system.

use sidelight_audit::Consent;
use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// A route name shared by every label set that carries it, so that labelling a request
/// costs a reference count, not a string copy.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct RouteName(pub Arc<str>);

impl EncodeLabelValue for RouteName {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, &self.0)
    }
}

/// Labels of `sidelight_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Route name from the config, or `other`.
    pub route: RouteName,
    /// HTTP method, upper case; unusual methods are folded into `OTHER`.
    pub method: &'static str,
    /// The status the client received.
    pub status: u16,
}

/// A label set holding only the route.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Route name from the config, or `other`.
    pub route: RouteName,
}

/// Labels of `sidelight_body_bytes_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BytesLabels {
    /// Route name from the config, or `other`.
    pub route: RouteName,
    /// `request` or `response`.
    pub direction: &'static str,
}

/// Labels of `sidelight_inspected_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InspectLabels {
    /// Route name from the config.
    pub route: RouteName,
    /// `complete`, `over_limit` or `skipped`.
    pub outcome: &'static str,
}

/// Labels of `sidelight_upstream_errors_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// Route name from the config, or `other`.
    pub route: RouteName,
    /// The error code from the JSON error body.
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsentLabels {
    pub route: RouteName,
    /// `full`, `explain_only` or `none`.
    pub consent: &'static str,
    /// Where it came from: `header` (x-sidelight-consent), `gpc` (Sec-GPC) or `default`.
    pub source: &'static str,
}

/// Labels of `sidelight_unexplained_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UnexplainedLabels {
    pub route: RouteName,
    /// The code of `x-sidelight-status` (the part before any `;`), made by Sidelight,
    /// never from a payload: a closed set.
    pub reason: String,
}

/// Labels of `sidelight_limit_hits_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    /// Which limit: the config key's last part (`max_rows`, `budget`, …) or a
    /// trust rule (`untrusted_probe`, …).
    pub limit: &'static str,
}

/// Where a request's consent came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentSource {
    Header,
    Gpc,
    Default,
}

/// All of the proxy's metrics, cheap to clone (each metric is reference counted).
#[derive(Clone, Debug)]
pub struct Metrics {
    pub requests: Family<RequestLabels, Counter>,
    pub upstream_latency: Family<RouteLabels, Histogram>,
    pub in_flight: Gauge,
    pub body_bytes: Family<BytesLabels, Counter>,
    pub inspected: Family<InspectLabels, Counter>,
    pub errors: Family<ErrorLabels, Counter>,
    pub consent: Family<ConsentLabels, Counter>,
    pub limits: Family<LimitLabels, Counter>,
    pub unexplained: Family<UnexplainedLabels, Counter>,
}

// === impl Metrics ===

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            requests: Family::default(),
            upstream_latency: Family::new_with_constructor(|| {
                // 0.5 ms to ~33 s: covers a fast in-process model and a slow batch call.
                Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                    0.0005, 2.0, 17,
                ))
            }),
            in_flight: Gauge::default(),
            body_bytes: Family::default(),
            inspected: Family::default(),
            errors: Family::default(),
            consent: Family::default(),
            limits: Family::default(),
            unexplained: Family::default(),
        };
        registry.register(
            "sidelight_requests",
            "Requests answered on the data listener, by route, method and status",
            metrics.requests.clone(),
        );
        registry.register(
            "sidelight_upstream_duration_seconds",
            "Time from sending a request upstream to receiving its response headers",
            metrics.upstream_latency.clone(),
        );
        registry.register(
            "sidelight_in_flight_requests",
            "Requests received and not yet answered",
            metrics.in_flight.clone(),
        );
        registry.register(
            "sidelight_body_bytes",
            "Body bytes forwarded, by route and direction",
            metrics.body_bytes.clone(),
        );
        registry.register(
            "sidelight_inspected_requests",
            "Request bodies read for inspection, by outcome",
            metrics.inspected.clone(),
        );
        registry.register(
            "sidelight_proxy_errors",
            "Requests answered by Sidelight itself with an error, by code",
            metrics.errors.clone(),
        );
        registry.register(
            "sidelight_unexplained",
            "Answers on explained routes that went on without an explanation, by the code of their x-sidelight-status",
            metrics.unexplained.clone(),
        );
        registry.register(
            "sidelight_consent_requests",
            "Requests on explained routes by the consent they were served under and where it came from",
            metrics.consent.clone(),
        );
        registry.register(
            "sidelight_limit_hits",
            "Times a limit or a trust rule of the data port changed what a request got, by limit",
            metrics.limits.clone(),
        );
        metrics
    }

    /// Counts an answer of `route` that went on unexplained, by its status `code`.
    pub fn unexplained(&self, route: &str, code: &str) {
        self.unexplained
            .get_or_create(&UnexplainedLabels {
                route: RouteName(Arc::from(route)),
                reason: code.to_owned(),
            })
            .inc();
    }

    /// Counts one hit of `limit` (a rare event: the label map is looked up each time).
    pub fn limit_hit(&self, limit: &'static str) {
        self.limits.get_or_create(&LimitLabels { limit }).inc();
    }
}

/// The metric handles of one route, resolved once at start-up so that the request path
/// touches no label map for them.
#[derive(Clone, Debug)]
pub struct RouteMetrics {
    pub request_bytes: Counter,
    pub response_bytes: Counter,
    pub upstream_latency: Histogram,
    inspected: [Counter; 3],
    /// By consent (full, explain_only, none) × source (header, gpc, default).
    consent: [[Counter; 3]; 3],
}

impl RouteMetrics {
    pub fn new(metrics: &Metrics, route: &RouteName) -> Self {
        let bytes = |direction| {
            metrics
                .body_bytes
                .get_or_create(&BytesLabels {
                    route: route.clone(),
                    direction,
                })
                .clone()
        };
        let inspected = |outcome| {
            metrics
                .inspected
                .get_or_create(&InspectLabels {
                    route: route.clone(),
                    outcome,
                })
                .clone()
        };
        Self {
            request_bytes: bytes("request"),
            response_bytes: bytes("response"),
            upstream_latency: metrics
                .upstream_latency
                .get_or_create(&RouteLabels {
                    route: route.clone(),
                })
                .clone(),
            inspected: [
                inspected("complete"),
                inspected("over_limit"),
                inspected("skipped"),
            ],
            consent: [Consent::Full, Consent::ExplainOnly, Consent::None].map(|consent| {
                ["header", "gpc", "default"].map(|source| {
                    metrics
                        .consent
                        .get_or_create(&ConsentLabels {
                            route: route.clone(),
                            consent: consent.as_str(),
                            source,
                        })
                        .clone()
                })
            }),
        }
    }

    pub fn consent(&self, consent: Consent, source: ConsentSource) -> &Counter {
        let c = match consent {
            Consent::Full => 0,
            Consent::ExplainOnly => 1,
            Consent::None => 2,
        };
        let s = match source {
            ConsentSource::Header => 0,
            ConsentSource::Gpc => 1,
            ConsentSource::Default => 2,
        };
        &self.consent[c][s]
    }

    pub fn inspected(&self, inspection: &crate::inspection::Inspection) -> &Counter {
        use crate::inspection::Inspection;
        match inspection {
            Inspection::Complete(_) => &self.inspected[0],
            Inspection::OverLimit => &self.inspected[1],
            Inspection::Skipped => &self.inspected[2],
        }
    }
}

/// Folds a method into a bounded label value.
pub fn method_label(method: &http::Method) -> &'static str {
    use http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}
