//! Matching a request path to a configured route.

use std::sync::Arc;

use crate::config::{OTHER_ROUTE, RouteConfig};

/// The route a request belongs to, attached to the request as an extension.
#[derive(Debug, Clone)]
pub struct Route {
    /// The route's name, for metrics and logs.
    pub name: Arc<str>,
    /// How much of a JSON body may be read for inspection; `None` for unmatched requests,
    /// which are never inspected.
    pub inspect_limit: Option<u64>,
}

/// The routes of one config, longest prefix first.
#[derive(Debug, Clone)]
pub(crate) struct RouteTable {
    routes: Vec<(String, Route)>,
    other: Route,
}

impl RouteTable {
    pub(crate) fn new(configs: &[RouteConfig]) -> Self {
        let mut routes: Vec<(String, Route)> = configs
            .iter()
            .map(|c| {
                (
                    c.path_prefix.clone(),
                    Route {
                        name: Arc::from(c.name.as_str()),
                        inspect_limit: Some(c.inspect_limit_bytes),
                    },
                )
            })
            .collect();
        routes.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        Self {
            routes,
            other: Route {
                name: Arc::from(OTHER_ROUTE),
                inspect_limit: None,
            },
        }
    }

    pub(crate) fn lookup(&self, path: &str) -> &Route {
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
        }
    }

    #[test]
    fn the_longest_prefix_wins_and_unmatched_paths_go_to_other() {
        let table = RouteTable::new(&[
            route("models", "/v1/models"),
            route("credit", "/v1/models/credit"),
        ]);
        assert_eq!(&*table.lookup("/v1/models/credit:predict").name, "credit");
        assert_eq!(&*table.lookup("/v1/models/other:predict").name, "models");
        let other = table.lookup("/healthz");
        assert_eq!(&*other.name, "other");
        assert_eq!(other.inspect_limit, None);
    }
}
