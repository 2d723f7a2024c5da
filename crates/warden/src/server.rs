//! `warden server`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use warden_server::config::ServerConfig;
use warden_server::state::SystemClock;

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Configuration file (TOML). Every key has a default; see --print-config.
    #[arg(long, env = "WARDEN_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory: database, CA and API token [default: ./warden-data].
    #[arg(long, env = "WARDEN_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// MQTT/TLS port [default: 8883, on all interfaces].
    #[arg(long)]
    mqtt_port: Option<u16>,
    /// HTTP port of the API and dashboard [default: 8080, on 127.0.0.1].
    #[arg(long)]
    http_port: Option<u16>,
    /// Print the effective configuration (defaults included) as TOML and exit.
    #[arg(long)]
    print_config: bool,
}

pub fn run(args: ServerArgs) -> anyhow::Result<ExitCode> {
    let mut config = match &args.config {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            ServerConfig::from_toml(&text).with_context(|| format!("{}", path.display()))?
        }
        None => ServerConfig::default(),
    };
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if let Some(port) = args.mqtt_port {
        config.mqtt.listen.set_port(port);
    }
    if let Some(port) = args.http_port {
        config.http.listen.set_port(port);
    }
    if args.print_config {
        print!("{}", config.to_toml());
        return Ok(ExitCode::SUCCESS);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.worker_threads())
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let data_dir = config.data_dir.clone();
        let server = warden_server::server::start(config, Arc::new(SystemClock)).await?;
        println!("Warden is running.");
        println!("  MQTT/TLS  {}  (devices trust {})", server.mqtt_addr, data_dir.join("pki/ca.crt").display());
        println!("  API       http://{}  (token in {})", server.http_addr, data_dir.join("api-token").display());
        println!("Connect a device:");
        println!("  warden things create dev-1 --cert-dir ./dev-1");
        println!(
            "  warden-agent --thing dev-1 --endpoint <this host> --port {} --ca ./dev-1/ca.pem --cert ./dev-1/dev-1.crt --key ./dev-1/dev-1.key",
            server.mqtt_addr.port()
        );
        shutdown_signal().await;
        tracing::info!("shutting down");
        server.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

pub(crate) async fn shutdown_signal() {
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
