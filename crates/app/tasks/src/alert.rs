//! Alerts from the monitors: each route's checks (fairness per protected group, drift
//! per feature and of the predictions, the protected features' share of the
//! attributions, surrogate fidelity) are `ok` or `firing` per subject. An alert goes out
//! when a check starts firing and once when it stops (`resolved`); staying on either side
//! sends nothing, and a computation without enough data for a verdict changes nothing.
//!
//! The monitor thread decides and logs; delivery happens off it. Alerts go through a
//! bounded queue to a task on the admin runtime that writes each one to the audit log
//! (`_alert` events) and hands it to a second bounded queue for the webhook, which is
//! retried with doubling waits. A full queue drops the alert and counts it, so that a
//! webhook that is down never blocks a monitor or a request, nor grows memory without end.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};

use hmac::{Hmac, Mac};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;
use sha2::Sha256;
use tokio::sync::mpsc;

use crate::audit::AuditLog;
use crate::config::{ALERT_SECRET_VARIABLE, AlertsConfig, ConfigError};
use sidelight_core::monitor::RouteMonitor;

/// How many transitions each route keeps for `GET /api/v1/alerts`.
const RECENT: usize = 50;

/// What is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    DisparateImpact,
    StatisticalParity,
    EqualOpportunity,
    FeaturePsi,
    PredictionPsi,
    ProtectedShare,
    FidelityR2,
    /// A ranking route's exposure difference for one customer group and item group.
    Exposure,
}

impl Check {
    /// As in the alert's JSON and the metrics' labels.
    pub fn name(self) -> &'static str {
        match self {
            Check::DisparateImpact => "disparate_impact",
            Check::StatisticalParity => "statistical_parity",
            Check::EqualOpportunity => "equal_opportunity",
            Check::FeaturePsi => "feature_psi",
            Check::PredictionPsi => "prediction_psi",
            Check::ProtectedShare => "protected_share",
            Check::FidelityR2 => "fidelity_r2",
            Check::Exposure => "exposure",
        }
    }

    /// The figure's name in a sentence.
    fn figure(self) -> &'static str {
        match self {
            Check::DisparateImpact => "Disparate impact",
            Check::StatisticalParity => "Statistical parity difference",
            Check::EqualOpportunity => "Equal opportunity difference",
            Check::FeaturePsi => "Drift (PSI)",
            Check::PredictionPsi => "Prediction drift (PSI)",
            Check::ProtectedShare => "The protected features' share of the attributions",
            Check::FidelityR2 => "Surrogate fidelity (R²)",
            Check::Exposure => "Exposure difference",
        }
    }

    /// How a firing value stands against its bound.
    fn breach(self) -> &'static str {
        match self {
            Check::DisparateImpact => "below the four-fifths bound of",
            Check::StatisticalParity | Check::EqualOpportunity | Check::Exposure => {
                "beyond the allowed difference of ±"
            }
            Check::FeaturePsi | Check::PredictionPsi | Check::ProtectedShare => {
                "above the bound of"
            }
            Check::FidelityR2 => "below the bound of",
        }
    }
}

/// Whether an alert starts or ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Firing,
    Resolved,
}

/// One transition, as logged, written to the audit log and posted to the webhook. The
/// field names and values are a fixed format that readers of the audit log rely on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    pub route: String,
    pub check: Check,
    /// `attribute=group`, a feature's name, or empty (route-wide checks).
    pub subject: String,
    pub state: AlertState,
    pub value: Option<f64>,
    pub bound: Option<f64>,
    pub message: String,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
}

/// One check of one subject in a computation.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub check: Check,
    pub subject: String,
    /// `Some(true)`: the bound is broken; `Some(false)`: within it; `None`: not enough
    /// data to say, which neither fires nor resolves.
    pub breaking: Option<bool>,
    pub value: Option<f64>,
    pub bound: Option<f64>,
}

/// A route's firing alerts and recent transitions.
#[derive(Debug, Default)]
pub struct AlertBook {
    firing: BTreeMap<(Check, String), Alert>,
    recent: VecDeque<Alert>,
}

impl AlertBook {
    /// Applies a computation's readings; returns the transitions (once per crossing).
    pub fn update(&mut self, route: &str, readings: Vec<Reading>, now: i64) -> Vec<Alert> {
        let mut out = Vec::new();
        for r in readings {
            let key = (r.check, r.subject);
            let was_firing = self.firing.contains_key(&key);
            let state = match r.breaking {
                Some(true) if !was_firing => AlertState::Firing,
                Some(false) if was_firing => AlertState::Resolved,
                _ => continue,
            };
            let alert = Alert {
                route: route.to_owned(),
                check: key.0,
                message: message(route, key.0, &key.1, state, r.value, r.bound),
                subject: key.1.clone(),
                state,
                value: r.value,
                bound: r.bound,
                at: now,
            };
            match state {
                AlertState::Firing => {
                    self.firing.insert(key, alert.clone());
                }
                AlertState::Resolved => {
                    self.firing.remove(&key);
                }
            }
            if self.recent.len() == RECENT {
                self.recent.pop_back();
            }
            self.recent.push_front(alert.clone());
            out.push(alert);
        }
        out
    }

    pub fn firing_count(&self) -> usize {
        self.firing.len()
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "firing": self.firing.values().collect::<Vec<_>>(),
            "recent": self.recent,
        })
    }
}

fn message(
    route: &str,
    check: Check,
    subject: &str,
    state: AlertState,
    value: Option<f64>,
    bound: Option<f64>,
) -> String {
    let of = if subject.is_empty() {
        String::new()
    } else {
        format!(" of {subject}")
    };
    let value = value.map_or_else(|| "unknown".to_owned(), |v| format!("{v:.3}"));
    match state {
        AlertState::Firing => {
            let bound = bound.map_or_else(String::new, |b| format!(" {b:.3}"));
            format!(
                "{}{of} on route {route} is {value}, {}{bound}.",
                check.figure(),
                check.breach()
            )
        }
        AlertState::Resolved => format!(
            "{}{of} on route {route} is back within bounds at {value}.",
            check.figure()
        ),
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabels {
    route: String,
    check: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    /// `delivered`, `failed` (after every retry) or `dropped` (queue full).
    outcome: String,
}

/// The alert delivery, as a background job: it ends at shutdown (alerts still queued
/// then are in the log already, and counted).
pub struct AlertDelivery {
    alerter: Arc<Alerter>,
    audit: Option<Arc<AuditLog>>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl AlertDelivery {
    /// Delivers `alerter`'s alerts to the audit log (if any) and the webhook (if any).
    pub fn new(alerter: Arc<Alerter>, audit: Option<Arc<AuditLog>>) -> Self {
        Self {
            alerter,
            audit,
            stop: tokio::sync::watch::Sender::new(false),
        }
    }
}

impl crate::job::Job for AlertDelivery {
    fn name(&self) -> String {
        "alerts".to_owned()
    }

    fn run(&self) {
        let mut stopped = self.stop.subscribe();
        let deliver = self.alerter.clone().run_delivery(self.audit.clone());
        crate::job::block_on(&self.name(), async move {
            tokio::select! {
                () = deliver => {}
                _ = stopped.wait_for(|stop| *stop) => {}
            }
        });
    }

    fn stop(&self) {
        self.stop.send_replace(true);
    }
}

/// Publishes the monitors' alerts: logs and counts them, and queues them for the audit
/// log and the webhook.
pub struct Alerter {
    config: AlertsConfig,
    secret: Option<Vec<u8>>,
    queue: mpsc::Sender<Alert>,
    receiver: Mutex<Option<mpsc::Receiver<Alert>>>,
    total: Family<AlertLabels, Counter>,
    firing: Family<RouteLabels, Gauge<i64, std::sync::atomic::AtomicI64>>,
    deliveries: Family<DeliveryLabels, Counter<u64, AtomicU64>>,
}

impl std::fmt::Debug for Alerter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerter").finish_non_exhaustive()
    }
}

impl Alerter {
    /// Reads the signing secret and registers the metrics. Errors name the key.
    pub fn new(config: &AlertsConfig, registry: &mut Registry) -> Result<Arc<Self>, ConfigError> {
        let secret = config
            .secret(std::env::var(ALERT_SECRET_VARIABLE).ok())
            .map_err(|(key, message)| ConfigError::Invalid { key, message })?;
        let (queue, receiver) = mpsc::channel(config.queue);
        let alerter = Self {
            config: config.clone(),
            secret,
            queue,
            receiver: Mutex::new(Some(receiver)),
            total: Family::default(),
            firing: Family::default(),
            deliveries: Family::default(),
        };
        registry.register(
            "sidelight_alerts",
            "Alert transitions, by route, check and state (firing or resolved)",
            alerter.total.clone(),
        );
        registry.register(
            "sidelight_alerts_firing",
            "Alerts of a route that are firing now",
            alerter.firing.clone(),
        );
        registry.register(
            "sidelight_alert_deliveries",
            "Alerts delivered to the webhook, failed after every retry, or dropped on a full queue",
            alerter.deliveries.clone(),
        );
        Ok(Arc::new(alerter))
    }

    /// Logs, counts and queues a route's transitions; `firing` is how many of its alerts
    /// fire now. Never waits.
    pub fn publish(&self, route: &str, alerts: Vec<Alert>, firing: usize) {
        self.firing
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .set(i64::try_from(firing).unwrap_or(i64::MAX));
        for alert in alerts {
            let check = alert.check.name();
            match alert.state {
                AlertState::Firing => tracing::warn!(
                    route, check, subject = %alert.subject, message = %alert.message, "alert firing"
                ),
                AlertState::Resolved => tracing::info!(
                    route, check, subject = %alert.subject, message = %alert.message, "alert resolved"
                ),
            }
            self.total
                .get_or_create(&AlertLabels {
                    route: route.to_owned(),
                    check: check.to_owned(),
                    state: match alert.state {
                        AlertState::Firing => "firing",
                        AlertState::Resolved => "resolved",
                    }
                    .to_owned(),
                })
                .inc();
            if self.queue.try_send(alert).is_err() {
                self.dropped();
            }
        }
    }

    fn dropped(&self) {
        self.deliveries
            .get_or_create(&DeliveryLabels {
                outcome: "dropped".to_owned(),
            })
            .inc();
        tracing::warn!("alert queue full; an alert was dropped (still logged above)");
    }

    /// Delivers the queued alerts: to the audit log (if any), then the webhook (if
    /// any), until the alerter is dropped. Does nothing the second time.
    async fn run_delivery(self: Arc<Self>, audit: Option<Arc<AuditLog>>) {
        let Some(mut receiver) = self
            .receiver
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return;
        };
        let (webhook, webhook_queue) = match self.config.webhook.clone() {
            Some(url) => {
                let (tx, rx) = mpsc::channel::<Alert>(self.config.queue);
                (Some(tx), Some(self.clone().deliver_all(url, rx)))
            }
            None => (None, None),
        };
        let this = self.clone();
        let audit_side = async move {
            while let Some(alert) = receiver.recv().await {
                if let Some(audit) = &audit {
                    let event = serde_json::to_value(&alert).unwrap_or_default();
                    if let Err(error) = audit.record_event("_alert", event).await {
                        tracing::warn!(%error, "alert not written to the audit log");
                    }
                }
                if let Some(webhook) = &webhook {
                    if webhook.try_send(alert).is_err() {
                        this.dropped();
                    }
                }
            }
        };
        match webhook_queue {
            Some(webhook_side) => {
                futures_util::future::join(audit_side, webhook_side).await;
            }
            None => audit_side.await,
        }
    }

    async fn deliver_all(self: Arc<Self>, url: String, mut queue: mpsc::Receiver<Alert>) {
        while let Some(alert) = queue.recv().await {
            let outcome = if self.deliver(&url, &alert).await {
                "delivered"
            } else {
                "failed"
            }
            .to_owned();
            self.deliveries
                .get_or_create(&DeliveryLabels { outcome })
                .inc();
        }
    }

    /// Posts one alert, retrying with doubling waits; whether the webhook took it.
    async fn deliver(&self, url: &str, alert: &Alert) -> bool {
        let Ok(body) = serde_json::to_string(alert) else {
            return false;
        };
        let mut wait = self.config.backoff;
        let attempts = self.config.retries.saturating_add(1);
        for attempt in 1..=attempts {
            if attempt > 1 {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(self.config.max_backoff);
            }
            // Signed afresh for each attempt: a retry after a long backoff carries the
            // time it was sent, which a receiver compares with its clock.
            let signature = self
                .secret
                .as_deref()
                .map(|s| sign(s, unix_seconds(), body.as_bytes()));
            let headers: Vec<(&str, &str)> = signature
                .as_deref()
                .map(|s| vec![(SIGNATURE_HEADER, s)])
                .unwrap_or_default();
            // The URL is left out of the log: webhook URLs often carry a token.
            match sidelight_core::client::post_json(
                url,
                &headers,
                body.clone(),
                self.config.timeout,
            )
            .await
            {
                Ok((status, _)) if (200..300).contains(&status) => return true,
                Ok((status, _)) => {
                    tracing::debug!(status, attempt, "the alert webhook refused an alert");
                }
                Err(sidelight_core::client::AdminClientError::Timeout { .. }) => {
                    tracing::debug!(attempt, "the alert webhook did not answer in time");
                }
                Err(sidelight_core::client::AdminClientError::Unreachable { reason, .. }) => {
                    tracing::debug!(attempt, %reason, "the alert webhook is unreachable");
                }
                Err(sidelight_core::client::AdminClientError::Url { .. }) => break,
            }
        }
        tracing::warn!(
            attempts,
            route = %alert.route,
            "alert not delivered to the webhook after every attempt"
        );
        false
    }
}

/// The header that carries a delivery's signature.
pub const SIGNATURE_HEADER: &str = "x-sidelight-signature";

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The signature of a delivery sent at `timestamp` (Unix seconds):
/// `t=<timestamp>,v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`. The time is inside the
/// signed bytes, so a receiver that refuses old timestamps refuses a replayed delivery
/// however it was captured (see docs/src/monitoring.md).
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// `GET /api/v1/alerts`: per monitored route, the alerts firing now and the latest
/// transitions, newest first.
pub fn to_json(monitors: &[Arc<RouteMonitor>]) -> serde_json::Value {
    let routes: Vec<serde_json::Value> = monitors
        .iter()
        .map(|m| {
            let mut json = m.alerts_json();
            json["route"] = serde_json::Value::String(m.route.clone());
            json
        })
        .collect();
    serde_json::json!({ "routes": routes })
}

impl AlertBook {
    pub fn json(&self) -> serde_json::Value {
        self.to_json()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn reading(breaking: Option<bool>, value: f64) -> Reading {
        Reading {
            check: Check::DisparateImpact,
            subject: "colour=blue".to_owned(),
            breaking,
            value: Some(value),
            bound: Some(0.8),
        }
    }

    #[test]
    fn an_alert_fires_once_and_resolves_once_per_crossing() {
        let mut book = AlertBook::default();
        let fired = book.update("m", vec![reading(Some(true), 0.4)], 1);
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].state, AlertState::Firing);
        assert_eq!(
            fired[0].message,
            "Disparate impact of colour=blue on route m is 0.400, below the four-fifths bound of 0.800."
        );
        // Still failing, then not enough data: nothing more.
        assert!(
            book.update("m", vec![reading(Some(true), 0.3)], 2)
                .is_empty()
        );
        assert!(book.update("m", vec![reading(None, 0.9)], 3).is_empty());
        assert_eq!(book.firing_count(), 1);
        let resolved = book.update("m", vec![reading(Some(false), 0.95)], 4);
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0].state, AlertState::Resolved);
        assert_eq!(resolved[0].at, 4);
        assert!(
            book.update("m", vec![reading(Some(false), 0.95)], 5)
                .is_empty()
        );
        assert_eq!(book.firing_count(), 0);
        // Insufficient data never fires either.
        assert!(book.update("m", vec![reading(None, 0.1)], 6).is_empty());
        let json = book.json();
        assert_eq!(json["recent"].as_array().unwrap().len(), 2);
        assert_eq!(json["recent"][0]["state"], "resolved");
    }

    #[test]
    fn the_audit_format_is_the_documented_one() {
        let mut book = AlertBook::default();
        let a = book
            .update(
                "m",
                vec![Reading {
                    check: Check::FeaturePsi,
                    subject: "a".to_owned(),
                    breaking: Some(true),
                    value: Some(1.5),
                    bound: Some(0.25),
                }],
                7,
            )
            .remove(0);
        let json = serde_json::to_value(&a).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            [
                "at", "bound", "check", "message", "route", "state", "subject", "value"
            ]
        );
        assert_eq!(json["check"], "feature_psi");
        assert_eq!(json["state"], "firing");
        assert_eq!(json["at"], 7);
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_the_timestamp_a_dot_and_the_body() {
        // Computed independently (Python's hmac module) over "17.what do ya want for nothing?".
        assert_eq!(
            sign(b"Jefe", 17, b"what do ya want for nothing?"),
            "t=17,v1=31441f9046bbd4589513ed5a0fa22dab2a8006f6ce7ee0ac275c3f7e84098a15"
        );
        // The timestamp is signed: the same body at another time signs differently.
        assert_ne!(sign(b"Jefe", 17, b"x"), sign(b"Jefe", 18, b"x"));
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        let config = AlertsConfig {
            queue: 1,
            ..AlertsConfig::default()
        };
        let mut registry = Registry::default();
        let alerter = Alerter::new(&config, &mut registry).unwrap();
        let mut book = AlertBook::default();
        let alerts = book.update(
            "m",
            vec![
                reading(Some(true), 0.4),
                Reading {
                    check: Check::StatisticalParity,
                    ..reading(Some(true), -0.3)
                },
            ],
            1,
        );
        alerter.publish("m", alerts, 2);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("sidelight_alert_deliveries_total{outcome=\"dropped\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("sidelight_alerts_firing{route=\"m\"} 2"),
            "{text}"
        );
    }
}
