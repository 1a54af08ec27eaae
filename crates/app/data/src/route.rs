//! Matching a request path to a configured route.

use std::sync::Arc;

use crate::config::{OTHER_ROUTE, RouteConfig};
use crate::live::RouteLive;
use crate::metrics::{Metrics, RouteMetrics, RouteName};

/// The route a request belongs to, attached to the request as an extension.
#[derive(Debug, Clone)]
pub struct Route {
    /// The route's name, for metrics and logs.
    pub name: Arc<str>,
    /// How much of a JSON body may be read for inspection; `None` for unmatched requests,
    /// which are never inspected.
    pub inspect_limit: Option<u64>,
    pub label: RouteName,
    pub metrics: Arc<RouteMetrics>,
    /// Live explanations, on routes that have them.
    pub live: Option<Arc<RouteLive>>,
}

impl Route {
    fn new(name: &str, inspect_limit: Option<u64>, metrics: &Metrics) -> Self {
        let label = RouteName(Arc::from(name));
        Self {
            name: label.0.clone(),
            inspect_limit,
            metrics: Arc::new(RouteMetrics::new(metrics, &label)),
            label,
            live: None,
        }
    }
}

/// The routes of one config, longest prefix first.
#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Vec<(String, Route)>,
    other: Route,
    metrics: Metrics,
}

impl RouteTable {
    /// Builds the table; routes with live explanations restore their surrogate from
    /// `state_dir`. The error names the route and what could not be loaded.
    pub fn new(
        configs: &[RouteConfig],
        metrics: Metrics,
        state_dir: &std::path::Path,
        wording: &mut crate::narration::Wording,
        audit: Option<&crate::audit::AuditLog>,
    ) -> Result<Self, crate::config::ConfigError> {
        let mut routes = Vec::with_capacity(configs.len());
        for c in configs {
            let mut route = Route::new(&c.name, Some(c.inspect_limit_bytes), &metrics);
            if c.explain.is_some() {
                let overrides = wording.routes.remove(&c.name).unwrap_or_default();
                let live = RouteLive::new(c, state_dir, wording.narrator.clone(), overrides, audit)
                    .map_err(|e| crate::config::ConfigError::Invalid {
                        key: "routes".to_owned(),
                        message: format!("route `{}`: {e}", c.name),
                    })?;
                route.live = Some(live);
            }
            routes.push((c.path_prefix.clone(), route));
        }
        routes.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        Ok(Self {
            routes,
            other: Route::new(OTHER_ROUTE, None, &metrics),
            metrics,
        })
    }

    /// The routes that explain their predictions.
    pub fn live_routes(&self) -> Vec<Arc<RouteLive>> {
        self.routes
            .iter()
            .filter_map(|(_, r)| r.live.clone())
            .collect()
    }

    /// The metrics the routes' handles belong to.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn lookup(&self, path: &str) -> &Route {
        self.routes
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix.as_str()))
            .map_or(&self.other, |(_, route)| route)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, prefix: &str) -> RouteConfig {
        RouteConfig {
            name: name.to_owned(),
            path_prefix: prefix.to_owned(),
            inspect_limit_bytes: 10,
            explain: None,
            privacy: Default::default(),
            review: Default::default(),
            monitor: None,
        }
    }

    #[test]
    fn the_longest_prefix_wins_and_unmatched_paths_go_to_other() {
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = Metrics::register(&mut registry);
        let table = RouteTable::new(
            &[
                route("models", "/v1/models"),
                route("credit", "/v1/models/credit"),
            ],
            metrics,
            std::path::Path::new("unused"),
            &mut crate::narration::prepare(&sidelight_config::Config::default(), Vec::new())
                .unwrap(),
            None,
        )
        .unwrap();
        assert_eq!(&*table.lookup("/v1/models/credit:predict").name, "credit");
        assert_eq!(&*table.lookup("/v1/models/other:predict").name, "models");
        let other = table.lookup("/healthz");
        assert_eq!(&*other.name, "other");
        assert_eq!(other.inspect_limit, None);
    }
}
