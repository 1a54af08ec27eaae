//! Rows waiting for a fleet's shared training table (PostgreSQL): the request path
//! queues them here, the fleet's uploader (`sidelight-tasks`) sends them.

use std::sync::Arc;

use sidelight_explain::Value;

use super::RouteLive;

/// One request's consented rows, waiting for the fleet's table.
pub struct Pending {
    pub time_ms: i64,
    pub subject: Option<Arc<str>>,
    pub names: Vec<String>,
    pub rows: Vec<Vec<Value>>,
    pub outputs: Vec<Vec<f64>>,
}

impl RouteLive {
    /// Queues a batch of observed rows for the fleet's table; the oldest go first when
    /// the database has been away for longer than a window's worth.
    pub(crate) fn queue_for_fleet(
        &self,
        names: &[String],
        rows: &[Vec<Value>],
        outputs: &[Vec<f64>],
        width: usize,
        subject: Option<&Arc<str>>,
    ) {
        let (rows, outputs): (Vec<_>, Vec<_>) = rows
            .iter()
            .zip(outputs)
            .filter(|(_, o)| o.len() == width && o.iter().all(|v| v.is_finite()))
            .map(|(r, o)| (r.clone(), o.clone()))
            .unzip();
        if rows.is_empty() {
            return;
        }
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        pending.push_back(Pending {
            time_ms: crate::clock::now_ms(),
            subject: subject.cloned(),
            names: names.to_vec(),
            rows,
            outputs,
        });
        // Bounded like the window: by rows and by bytes (names included, which a client
        // chooses).
        let capacity = self.config.surrogate.window_rows;
        let max_bytes = self.config.surrogate.window_bytes;
        let weight = |p: &Pending| {
            p.rows.iter().map(|r| super::row_weight(r)).sum::<usize>()
                + p.names.iter().map(String::len).sum::<usize>()
        };
        while pending.len() > 1
            && (pending.iter().map(|p| p.rows.len()).sum::<usize>() > capacity
                || pending.iter().map(weight).sum::<usize>() > max_bytes)
        {
            pending.pop_front();
        }
    }
}
