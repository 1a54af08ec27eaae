//! Live explanations' moving parts: the explanation layer on the request path, the
//! upstream caller and probe check, and the background trainer, distiller and fleet
//! tasks. The shared state they work on is `sidelight_core::live`.

mod distill;
mod fleet;
mod trainer;

use std::sync::Arc;

pub(crate) use sidelight_core::live::*;

pub(crate) use fleet::{FleetGauges, FleetTasks};
pub(crate) use sidelight_data::probe::{Prober, UpstreamCaller};

/// Starts one trainer thread per explained route. In a fleet (`fleet`), the trainers
/// are the fleet's: each trains only while this replica holds the route's trainer lock,
/// and a poller loads the fleet's surrogates and erasures.
pub(crate) fn start_trainers(
    routes: &[Arc<RouteLive>],
    fleet: Option<FleetTasks>,
) -> Vec<std::thread::JoinHandle<()>> {
    let mut handles = Vec::new();
    if let Some(tasks) = fleet {
        handles.extend(fleet::start(routes, tasks));
    }
    handles.extend(routes.iter().filter_map(|live| {
        if live.is_shared() {
            return None;
        }
        let live = live.clone();
        std::thread::Builder::new()
            .name(format!("sidelight-trainer-{}", live.route))
            .spawn(move || trainer::run(&live))
            .map_err(|e| tracing::error!(error = %e, "cannot start a trainer"))
            .ok()
    }));
    handles
}

/// Starts active distillation for a route, if it is enabled (not for a fleet's shared
/// surrogate, whose trainer learns from the fleet's table).
pub(crate) fn start_distiller(live: &Arc<RouteLive>, caller: Arc<UpstreamCaller>) {
    if !live.config.distill.enabled || live.is_shared() {
        return;
    }
    let Some(metrics) = live.metrics().cloned() else {
        return;
    };
    distill::start(live.clone(), caller, metrics);
}
