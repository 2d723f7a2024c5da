//! `warden sim`: the virtual fleet of `warden-sim`, with the API endpoint and token resolved as
//! for every other client command.

use clap::Args;
use warden_sim::cli::SimCommand;

use crate::client::ApiArgs;

#[derive(Debug, Args)]
pub struct SimArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(flatten)]
    sim: SimCommand,
}

pub fn run(args: SimArgs) -> anyhow::Result<()> {
    if !args.sim.needs_api() {
        // misbehave, calm, status: they talk to the running simulator only.
        return warden_sim::cli::run_blocking(args.sim, "", "");
    }
    let api = args.api.connect()?;
    warden_sim::cli::run_blocking(args.sim, api.endpoint(), api.token())
}
