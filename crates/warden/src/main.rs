//! `warden`: runs the server (`warden server`) and talks to its API from the command line
//! (`warden things|groups|certs|policies|profiles|violations|actions|topics ...`), and runs a
//! virtual fleet (`warden sim`, from `warden-sim`), and shows them all at work (`warden demo`). Business
//! logic lives in `warden-server` (and the rule language in `warden-detect`); this crate only
//! parses arguments, calls the REST API ([`client`]) and prints ([`output`]).

mod actions;
mod behaviors;
mod certs;
mod client;
mod demo;
mod groups;
mod output;
mod policies;
mod profiles;
mod server;
mod sim;
mod things;
mod times;
mod topics;
mod violations;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::Layer as _;

/// See the dependency's note in Cargo.toml: glibc's allocator was a tenth of the server's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "warden", version, about = "Warden: self-hosted AWS IoT Device Defender Detect")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: MQTT/TLS endpoint, registry, ingest and REST API.
    Server(server::ServerArgs),
    /// Things: create (and onboard with a certificate), list, describe, update, delete.
    Things(things::ThingsArgs),
    /// Thing groups and their members.
    Groups(groups::GroupsArgs),
    /// Certificates: issue, register, activate, revoke, attach to things, delete.
    Certs(certs::CertsArgs),
    /// Policies and their attachment to certificates and thing groups.
    Policies(policies::PoliciesArgs),
    /// Security profiles: behaviors written as rules, alerts, mitigation, targets.
    Profiles(profiles::ProfilesArgs),
    /// Violations: in alarm now, their history, and verification states.
    Violations(violations::ViolationsArgs),
    /// Mitigation actions, and tasks that run them on violations.
    Actions(actions::ActionsArgs),
    /// Alert topics and their subscriptions (webhooks, MQTT topics).
    Topics(topics::TopicsArgs),
    /// A virtual fleet of devices against the server; make one misbehave while it runs.
    Sim(sim::SimArgs),
    /// The lab in one command: a server, a virtual fleet, and one device that misbehaves,
    /// detected, alerted and quarantined.
    Demo(demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Server(args) => {
            init_tracing();
            server::run(args)
        }
        // The client subcommands log nothing; their output is what they print.
        Command::Things(args) => things::run(args).map(|()| ExitCode::SUCCESS),
        Command::Groups(args) => groups::run(args).map(|()| ExitCode::SUCCESS),
        Command::Certs(args) => certs::run(args).map(|()| ExitCode::SUCCESS),
        Command::Policies(args) => policies::run(args).map(|()| ExitCode::SUCCESS),
        Command::Profiles(args) => profiles::run(args).map(|()| ExitCode::SUCCESS),
        Command::Violations(args) => violations::run(args).map(|()| ExitCode::SUCCESS),
        Command::Actions(args) => actions::run(args).map(|()| ExitCode::SUCCESS),
        Command::Topics(args) => topics::run(args).map(|()| ExitCode::SUCCESS),
        Command::Sim(args) => sim::run(args).map(|()| ExitCode::SUCCESS),
        Command::Demo(args) => {
            // Its output is the story; the log shows only what went wrong. The refused publishes
            // are the story, not a problem: their warnings (broker and device side) are left out.
            init_logging("warn,rmqtt=error,rmqtt_net=error,rumqttc=error,warden_broker::hooks=error");
            demo::run(args)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("warden: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    init_logging("info,rmqtt=warn,rmqtt_net=warn");
}

/// Logs to stderr (`RUST_LOG` filters, else `default`). rmqtt logs through `log`: its records are
/// bridged into `tracing`, where [`TlsFailureLayer`] counts the TLS handshake failures that no
/// broker hook reports.
fn init_logging(default: &str) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::registry()
        .with(warden_server::metrics::TlsFailureLayer::filtered())
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_filter(filter))
        .init();
}
