//! Metrics of live explanations that the request metrics do not show: requests whose
//! columns could not be read as the route's features, and what active distillation asks
//! of the model.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProblemLabels {
    pub route: String,
    /// `column_count_mismatch` or `features_unmatched`.
    pub problem: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub route: String,
    /// `ok`, `rejected` (the model refused the rows), `failed` (an error, a timeout or an
    /// unreadable answer); for calls also `faithfulness` (the check's KernelSHAP calls).
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: String,
}

/// Registered once; every route holds a clone.
#[derive(Clone, Debug, Default)]
pub struct LiveMetrics {
    pub unmapped: Family<ProblemLabels, Counter>,
    pub distill_calls: Family<OutcomeLabels, Counter>,
    pub distill_rows: Family<OutcomeLabels, Counter>,
    pub distill_share: Family<RouteLabel, Gauge<f64, AtomicU64>>,
    pub distill_backoff: Family<RouteLabel, Gauge<f64, AtomicU64>>,
}

impl LiveMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "sidelight_unmapped_requests",
            "Requests on explained routes whose columns could not be read as the route's \
             configured features, by problem; they pass through unexplained",
            metrics.unmapped.clone(),
        );
        registry.register(
            "sidelight_distill_calls",
            "Calls active distillation made to the upstream, by outcome",
            metrics.distill_calls.clone(),
        );
        registry.register(
            "sidelight_distill_rows",
            "Synthetic rows active distillation sent to the upstream, by outcome",
            metrics.distill_rows.clone(),
        );
        registry.register(
            "sidelight_distill_upstream_share",
            "Synthetic rows as a share of all rows the route sent upstream since start",
            metrics.distill_share.clone(),
        );
        registry.register(
            "sidelight_distill_backoff_seconds",
            "How long active distillation waits before its next call (0 when running freely)",
            metrics.distill_backoff.clone(),
        );
        metrics
    }

    pub fn unmapped(&self, route: &str, problem: &'static str) {
        self.unmapped
            .get_or_create(&ProblemLabels {
                route: route.to_owned(),
                problem,
            })
            .inc();
    }

    pub fn distilled(&self, route: &str, outcome: &'static str, rows: u64) {
        let labels = OutcomeLabels {
            route: route.to_owned(),
            outcome,
        };
        self.distill_calls.get_or_create(&labels).inc();
        self.distill_rows.get_or_create(&labels).inc_by(rows);
    }

    /// Calls the faithfulness check made (KernelSHAP against the model).
    pub fn checked(&self, route: &str, calls: u64) {
        self.distill_calls
            .get_or_create(&OutcomeLabels {
                route: route.to_owned(),
                outcome: "faithfulness",
            })
            .inc_by(calls);
    }

    pub fn set_share(&self, route: &str, share: f64) {
        self.distill_share
            .get_or_create(&RouteLabel {
                route: route.to_owned(),
            })
            .set(share);
    }

    pub fn set_backoff(&self, route: &str, seconds: f64) {
        self.distill_backoff
            .get_or_create(&RouteLabel {
                route: route.to_owned(),
            })
            .set(seconds);
    }
}
