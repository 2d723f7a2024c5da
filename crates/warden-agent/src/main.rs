//! `warden-agent`: the Warden device agent. See `warden-agent --help` and the README.
//!
//! It reads network metrics from Linux (`collect`), builds Device Defender reports with
//! `warden-wire`, and publishes them over MQTT/TLS (`mqtt`) on a schedule (`run`). It runs on a
//! single-threaded runtime: one report every few minutes needs no more, and every thread is
//! memory a small device does not have.

mod collect;
mod config;
mod custom;
mod mqtt;
mod report_id;
mod run;

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser as _;
use config::{AWS_MIN_INTERVAL, Cli, Config};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli) {
        Ok(config) => config,
        Err(e) => {
            eprint!("warden-agent: {e}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_max_level(config.log_level)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .init();

    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("warden-agent: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        if config.dry_run {
            let report = run::dry_run(&config).await?;
            std::io::stdout().lock().write_all(&report)?;
            return Ok(());
        }
        if config.interval < AWS_MIN_INTERVAL {
            tracing::warn!(
                interval = %humantime::format_duration(config.interval),
                "interval is below 300s: AWS IoT throttles such devices (a Warden server's minimum period is configurable)"
            );
        }
        run::run(&config, shutdown_signal()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Completes on SIGINT or SIGTERM (systemd's stop), so the agent sends DISCONNECT on the way out.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
