//! `sidelight demo`: filled in once the demo model crate lands.
use std::process::ExitCode;

#[derive(clap::Args)]
pub(crate) struct DemoArgs {}

pub(crate) fn run(_args: DemoArgs) -> ExitCode {
    ExitCode::FAILURE
}
