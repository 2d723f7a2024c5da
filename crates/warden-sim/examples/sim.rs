//! `warden sim` as a program of its own, for `bench/sim.sh` until the warden binary mounts
//! `warden_sim::cli::SimCommand`:
//!
//! ```text
//! cargo run --release -p warden-sim --example sim -- --endpoint http://127.0.0.1:8080 \
//!     --data-dir ./warden-data --devices 100 --period 10s
//! cargo run --release -p warden-sim --example sim -- misbehave sim-00003 scan --for 1m
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use warden_sim::cli::SimCommand;

#[derive(Debug, Parser)]
#[command(name = "sim", about = "A virtual fleet against a Warden server")]
struct Cli {
    /// URL of the Warden API.
    #[arg(long, env = "WARDEN_ENDPOINT", default_value = "http://127.0.0.1:8080")]
    endpoint: String,
    /// API token [default: the one in DATA_DIR/api-token].
    #[arg(long, env = "WARDEN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Data directory of a local server, read for its API token.
    #[arg(long, env = "WARDEN_DATA_DIR", default_value = "./warden-data")]
    data_dir: PathBuf,
    #[command(flatten)]
    sim: SimCommand,
}

fn main() -> ExitCode {
    tracing_subscriber_init();
    let cli = Cli::parse();
    let result = (|| {
        let token = match (&cli.token, cli.sim.needs_api()) {
            (Some(t), _) => t.clone(),
            (None, true) => {
                let path = cli.data_dir.join("api-token");
                std::fs::read_to_string(&path)
                    .with_context(|| format!("no --token, and cannot read {}", path.display()))?
            }
            (None, false) => String::new(),
        };
        warden_sim::cli::run_blocking(cli.sim, &cli.endpoint, token.trim())
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Warnings and errors to stderr.
fn tracing_subscriber_init() {
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_max_level(tracing::Level::WARN).init();
}
