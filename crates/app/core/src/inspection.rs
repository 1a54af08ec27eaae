//! What reading a request body for inspection found (the reading itself is the data
//! plane's).

use bytes::Bytes;

/// What an inspection found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inspection {
    /// The whole body, which fit within the limit.
    Complete(Bytes),
    /// The body is longer than the limit; it was streamed on uninspected.
    OverLimit,
    /// The route or the content type does not call for inspection.
    Skipped,
}

impl Inspection {
    /// The label used in the `sidelight_inspected_requests_total` metric.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Complete(_) => "complete",
            Self::OverLimit => "over_limit",
            Self::Skipped => "skipped",
        }
    }
}
