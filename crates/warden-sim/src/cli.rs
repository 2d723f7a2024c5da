//! `warden sim`: runs a virtual fleet against a Warden server (registering its devices through
//! the REST API), and controls a running one (`misbehave`, `calm`, `status`).
//!
//! The warden binary mounts [`SimCommand`] as its `sim` subcommand and calls [`run`] with the
//! API endpoint and token it resolved; the control subcommands need neither
//! ([`SimCommand::needs_api`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use warden_wire::{Format, Names};

use crate::api::Api;
use crate::class::ClassMix;
use crate::control::{ControlClient, ControlServer};
use crate::fleet::{Fleet, FleetConfig, SimDevice};
use crate::identity::{ProvisionProgress, StateDir, Wanted, provision};
use crate::misbehaviour::Misbehaviour;
use crate::model::Timing;
use crate::summary::{self, Display};
use crate::traffic::DeviceTraits;

const EXAMPLES: &str = "\
Examples:
  # 20 devices reporting every 5 s, each report 5 simulated minutes (set the server's
  # [ingest] min_report_period = \"0s\" and [detect] period = \"5s\" to match)
  warden sim --devices 20 --period 5s --speedup 60
  # In another terminal: make one misbehave for two minutes, look, calm it
  warden sim misbehave sim-00003 large-payload --for 2m
  warden sim status
  warden sim calm sim-00003
  # 10,000 meters and cameras, one MQTT connection each, for ten minutes
  warden sim --devices 10000 --period 60s --classes meter=3,camera=1 --telemetry off --duration 10m

Misbehaviours: large-payload, scan, flood (UDP; also flood-udp), flood-syn, backdoor-port,
beacon, exfil, auth-errors, reconnect-storm.
Device classes: meter, camera, gateway, kiosk.";

/// Run a virtual fleet of devices against the server, or control a running one.
///
/// Without a subcommand, registers --devices things through the API (reusing those whose
/// certificate is already in --state-dir), then runs each as an MQTT/TLS client with its own
/// certificate that publishes Device Defender reports (and, with --telemetry, a temperature on
/// things/THING/telemetry from a second connection), until Ctrl-C or --duration.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, after_long_help = EXAMPLES)]
pub struct SimCommand {
    #[command(subcommand)]
    pub action: Option<SimAction>,
    #[command(flatten)]
    pub run: RunArgs,
}

impl SimCommand {
    /// Whether [`run`] talks to the REST API (running a fleet) rather than only to a running
    /// simulator's control endpoint.
    pub fn needs_api(&self) -> bool {
        self.action.is_none()
    }
}

/// Commands for a running simulator (found through its --state-dir).
#[derive(Debug, Subcommand)]
pub enum SimAction {
    /// Make a device of the running simulator misbehave.
    ///
    /// KIND is one of: large-payload (the application publishes 64 KiB more per report period,
    /// as the AWS workshop's attack), scan (Mirai-like telnet scanning), flood (UDP flood),
    /// flood-syn, backdoor-port (a new listening TCP port), beacon (a new persistent remote
    /// endpoint), exfil (bytes out rising slowly), auth-errors (publishes to forbidden topics),
    /// reconnect-storm (connections dropped every few seconds).
    Misbehave {
        /// The thing name of a device of the running simulator.
        thing: String,
        /// What it starts doing.
        #[arg(value_parser = parse_misbehaviour)]
        kind: Misbehaviour,
        /// Stop by itself after this long (e.g. 90s, 5m) [default: until `warden sim calm`].
        #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
        duration: Option<Duration>,
        #[command(flatten)]
        control: ControlArgs,
    },
    /// Stop a device's misbehaviour (one KIND, or all of them).
    Calm {
        /// The thing name of a device of the running simulator.
        thing: String,
        /// Only this misbehaviour [default: all].
        #[arg(value_parser = parse_misbehaviour)]
        kind: Option<Misbehaviour>,
        #[command(flatten)]
        control: ControlArgs,
    },
    /// Show the running simulator's totals, and its misbehaving and troubled devices; with
    /// THING, that device.
    Status {
        /// One device's status.
        thing: Option<String>,
        /// Print the control endpoint's JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        control: ControlArgs,
    },
}

/// Where the running simulator is.
#[derive(Debug, Args)]
pub struct ControlArgs {
    /// The state directory of the running simulator (its sim.addr and sim.token).
    #[arg(long, value_name = "DIR", default_value = "./warden-sim")]
    pub state_dir: PathBuf,
}

/// Telemetry of the application connection: every D, or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Telemetry {
    /// Every 5 s up to 1,000 devices, off above (two connections per device would exceed
    /// common open-file limits).
    Auto,
    Every(Duration),
    Off,
}

/// Above this many devices, `--telemetry auto` is off.
const AUTO_TELEMETRY_MAX_DEVICES: usize = 1_000;

impl Telemetry {
    pub fn resolve(self, devices: usize) -> Option<Duration> {
        match self {
            Telemetry::Every(d) => Some(d),
            Telemetry::Off => None,
            Telemetry::Auto => (devices <= AUTO_TELEMETRY_MAX_DEVICES).then_some(Duration::from_secs(5)),
        }
    }
}

fn parse_telemetry(s: &str) -> Result<Telemetry, String> {
    match s.trim() {
        "auto" => Ok(Telemetry::Auto),
        "off" => Ok(Telemetry::Off),
        other => {
            let d = parse_duration(other.strip_prefix("every").unwrap_or(other).trim())?;
            if d < Duration::from_millis(100) {
                return Err("telemetry: at most every 100ms".into());
            }
            Ok(Telemetry::Every(d))
        }
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration like 5s, 2m or 1h ({e})"))
}

fn parse_misbehaviour(s: &str) -> Result<Misbehaviour, String> {
    s.parse()
}

/// The options of a fleet run.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// How many devices: things PREFIX00000, PREFIX00001, ... (registered if new).
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub devices: usize,
    /// Time between two reports of a device. The default is just over the server's default
    /// ingest.min_report_period (300s), as the AWS C agent's 301 s: at exactly 300 s, timing
    /// jitter would get every other report rejected as Throttled.
    #[arg(long, value_name = "DURATION", default_value = "301s", value_parser = parse_duration)]
    pub period: Duration,
    /// Device classes and their weights: meter, camera, gateway, kiosk, as `meter,camera`
    /// (equal shares) or `meter=5,camera=2`.
    #[arg(long, value_name = "LIST", default_value_t = ClassMix::default())]
    pub classes: ClassMix,
    /// Seed of every random choice (classes, sites, endpoints, traffic, bursts): the same seed
    /// and options give the same fleet, report for report.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub seed: u64,
    /// Application telemetry on a second connection ({THING}/app): `every 5s` (or `5s`), `off`,
    /// or `auto`: every 5 s up to 1,000 devices, off above.
    #[arg(long, value_name = "every D|off|auto", default_value = "auto", value_parser = parse_telemetry)]
    pub telemetry: Telemetry,
    /// Simulated seconds per real second: each report covers PERIOD x SPEEDUP of traffic and the
    /// daily cycle runs that much faster (with --period 5s, 60 makes each report 5 minutes).
    #[arg(long, value_name = "X", default_value_t = 1.0)]
    pub speedup: f64,
    /// Thing name prefix.
    #[arg(long, value_name = "TEXT", default_value = "sim-")]
    pub prefix: String,
    /// Where the devices' certificates and the control endpoint's address are kept.
    #[arg(long, value_name = "DIR", default_value = "./warden-sim")]
    pub state_dir: PathBuf,
    /// The server's MQTT endpoint [default: the API's host, port 8883].
    #[arg(long, value_name = "HOST:PORT")]
    pub mqtt: Option<String>,
    /// Report encoding.
    #[arg(long, value_name = "cbor|json", default_value = "cbor")]
    pub format: Format,
    /// Long key names in reports (header, report_id, ...) instead of the short ones.
    #[arg(long)]
    pub long_names: bool,
    /// The policy attached to new devices' certificates.
    #[arg(long, value_name = "NAME", default_value = "WardenThingPolicy")]
    pub policy: String,
    /// The thing group whose members the summary counts as quarantined.
    #[arg(long, value_name = "GROUP", default_value = "Quarantine")]
    pub quarantine_group: String,
    /// Registrations through the API at once.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub register_concurrency: usize,
    /// TLS handshakes in flight at once.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub connect_concurrency: usize,
    /// Interval of the summary line when the output is not a terminal (on a terminal it is
    /// redrawn every second).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub summary_every: Duration,
    /// Stop after this long [default: at Ctrl-C or SIGTERM].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
}

impl RunArgs {
    fn check(&self) -> anyhow::Result<()> {
        let mut problems = Vec::new();
        if !(1..=1_000_000).contains(&self.devices) {
            problems.push("--devices: between 1 and 1000000".to_owned());
        }
        if self.period < Duration::from_millis(100) {
            problems.push("--period: at least 100ms".to_owned());
        }
        if !(self.speedup > 0.0 && self.speedup <= 100_000.0) {
            problems.push("--speedup: above 0, at most 100000".to_owned());
        }
        if !self.prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b":_-".contains(&b))
            || self.prefix.len() > 100
        {
            problems.push("--prefix: at most 100 of a-z A-Z 0-9 : _ - (thing names)".to_owned());
        }
        if self.register_concurrency == 0 || self.connect_concurrency == 0 {
            problems.push("--register-concurrency and --connect-concurrency: at least 1".to_owned());
        }
        if problems.is_empty() { Ok(()) } else { bail!("{}", problems.join("\n")) }
    }
}

/// The thing name of device `index`: the prefix and at least five digits.
pub fn thing_name(prefix: &str, index: u64) -> String {
    format!("{prefix}{index:05}")
}

/// Runs `cmd`: a fleet against the API at `endpoint` with `token`, or a control command.
pub async fn run(cmd: SimCommand, endpoint: &str, token: &str) -> anyhow::Result<()> {
    match cmd.action {
        None => run_fleet(cmd.run, endpoint, token).await,
        Some(action) => tokio::task::spawn_blocking(move || control(action)).await?,
    }
}

/// [`run`] on a runtime of its own, for a synchronous `main`.
pub fn run_blocking(cmd: SimCommand, endpoint: &str, token: &str) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run(cmd, endpoint, token))
}

fn control(action: SimAction) -> anyhow::Result<()> {
    match action {
        SimAction::Misbehave { thing, kind, duration, control } => {
            let client = ControlClient::find(&StateDir::new(control.state_dir))?;
            client.misbehave(&thing, kind, duration)?;
            match duration {
                Some(d) => println!("{thing}: {kind} for {}.", humantime::format_duration(d)),
                None => println!("{thing}: {kind} until `warden sim calm {thing}`."),
            }
        }
        SimAction::Calm { thing, kind, control } => {
            let client = ControlClient::find(&StateDir::new(control.state_dir))?;
            let device = client.calm(&thing, kind)?;
            let left: Vec<&str> = device["misbehaving"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a["kind"].as_str())
                .collect();
            match (kind, left.is_empty()) {
                (Some(k), true) => println!("{thing}: {k} stopped; it behaves."),
                (Some(k), false) => println!("{thing}: {k} stopped; still on: {}.", left.join(", ")),
                (None, _) => println!("{thing}: behaves."),
            }
        }
        SimAction::Status { thing, json, control } => {
            let client = ControlClient::find(&StateDir::new(control.state_dir))?;
            let reply = match &thing {
                Some(thing) => client.device(thing)?,
                None => client.status()?,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&reply)?);
            } else if thing.is_some() {
                println!("{}", render_device(&reply));
            } else {
                println!("{}", render_status(&reply));
            }
        }
    }
    Ok(())
}

fn render_device(d: &serde_json::Value) -> String {
    let link = |l: &serde_json::Value| {
        if l.is_null() {
            return "off".to_owned();
        }
        let mut s = format!("{} ({} connects", l["state"].as_str().unwrap_or("?"), l["connects"]);
        if l["refusals"].as_u64().unwrap_or(0) > 0 {
            s.push_str(&format!(", {} refused", l["refusals"]));
        }
        if l["publishDenied"].as_u64().unwrap_or(0) > 0 {
            s.push_str(&format!(", {} publishes denied", l["publishDenied"]));
        }
        s.push(')');
        if let Some(e) = l["lastError"].as_str() {
            s.push_str(&format!("; last error: {e}"));
        }
        s
    };
    let misbehaving: Vec<String> = d["misbehaving"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| match a["remainingS"].as_f64() {
            Some(s) => format!("{} ({s:.0}s left)", a["kind"].as_str().unwrap_or("?")),
            None => a["kind"].as_str().unwrap_or("?").to_owned(),
        })
        .collect();
    let mut out = format!(
        "{} ({})\n  agent: {}\n  app: {}\n  reports: {} sent, {} accepted, {} rejected, {} skipped\n  telemetry: {} sent, {} skipped",
        d["thing"].as_str().unwrap_or("?"),
        d["class"].as_str().unwrap_or("?"),
        link(&d["agent"]),
        link(&d["app"]),
        d["reportsSent"],
        d["reportsAccepted"],
        d["reportsRejected"],
        d["reportsSkipped"],
        d["telemetrySent"],
        d["telemetrySkipped"],
    );
    if let Some(r) = d["lastRejection"].as_str() {
        out.push_str(&format!("\n  last rejection: {r}"));
    }
    if d["contained"] == true {
        out.push_str("\n  contained: telemetry refused or connection refused");
    }
    out.push_str(&format!(
        "\n  misbehaving: {}",
        if misbehaving.is_empty() { "no".to_owned() } else { misbehaving.join(", ") }
    ));
    out
}

fn render_status(s: &serde_json::Value) -> String {
    let t = &s["totals"];
    let n = |k: &str| t[k].as_u64().unwrap_or(0);
    let mut out = format!(
        "up {}: {} devices, {} connected",
        summary::clock(Duration::from_secs_f64(s["uptimeS"].as_f64().unwrap_or(0.0))).trim(),
        n("devices"),
        n("agentConnected")
    );
    if n("appLinks") > 0 {
        out.push_str(&format!(" (app {}/{})", n("appConnected"), n("appLinks")));
    }
    out.push_str(&format!(
        "\nreports: {} sent, {} accepted, {} rejected, {} skipped\ntelemetry: {} sent; publishes denied: {}; refused connects: {}\nmisbehaving: {}; contained: {}",
        n("reportsSent"),
        n("reportsAccepted"),
        n("reportsRejected"),
        n("reportsSkipped"),
        n("telemetrySent"),
        n("publishDenied"),
        n("refusals"),
        n("misbehaving"),
        n("contained"),
    ));
    for (title, key) in [("Misbehaving", "misbehaving"), ("Troubled", "troubled")] {
        let list = s[key].as_array().cloned().unwrap_or_default();
        if !list.is_empty() {
            out.push_str(&format!("\n\n{title}:"));
            for d in &list {
                out.push_str(&format!("\n{}", render_device(d)));
            }
        }
    }
    out
}

/// The MQTT endpoint: `--mqtt HOST:PORT`, or the API's host and port 8883.
fn mqtt_endpoint(mqtt: Option<&str>, api_endpoint: &str) -> anyhow::Result<(String, u16)> {
    if let Some(m) = mqtt {
        let (host, port) = m.rsplit_once(':').with_context(|| format!("--mqtt {m:?}: expected HOST:PORT"))?;
        let port: u16 = port.parse().with_context(|| format!("--mqtt {m:?}: the port is not a number"))?;
        return Ok((host.trim_matches(['[', ']']).to_owned(), port));
    }
    let rest = api_endpoint.split_once("://").map_or(api_endpoint, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => authority.split(':').next().unwrap_or(authority),
    };
    Ok((host.to_owned(), 8883))
}

/// The soft limit of open files of this process, from `/proc/self/limits`.
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

async fn run_fleet(args: RunArgs, endpoint: &str, token: &str) -> anyhow::Result<()> {
    args.check()?;
    let telemetry = args.telemetry.resolve(args.devices);
    let links = if telemetry.is_some() { 2 } else { 1 };
    if let Some(limit) = open_file_limit() {
        let needed = (args.devices * links) as u64 + 256;
        if needed > limit {
            bail!(
                "{} devices with {links} connection(s) each need about {needed} open files, but this process may open {limit}: \
                 raise it (ulimit -n), use fewer devices{}",
                args.devices,
                if telemetry.is_some() { ", or --telemetry off" } else { "" }
            );
        }
    }
    let state = StateDir::new(&args.state_dir);
    if let Ok(client) = ControlClient::find(&state)
        && client.status().is_ok()
    {
        bail!(
            "a simulator is already running with state directory {}; stop it first, or use another --state-dir",
            args.state_dir.display()
        );
    }
    let display = Arc::new(Display::stdout());
    let api = Api::new(endpoint, token);
    let ca_pem = {
        let api = api.clone();
        tokio::task::spawn_blocking(move || api.ca_pem()).await?.context("fetching the server's CA")?
    };
    let identities = state.identities(&ca_pem)?;

    // Identities: reused, or registered through the API with a progress line.
    let wanted: Vec<Wanted> = (0..args.devices as u64)
        .map(|i| Wanted {
            thing: thing_name(&args.prefix, i),
            class: DeviceTraits::draw(args.seed, i, &args.classes).class,
        })
        .collect();
    let progress = Arc::new(ProvisionProgress::default());
    let started = tokio::time::Instant::now();
    let registering = {
        let (api, identities, wanted, policy, progress) =
            (api.clone(), identities.clone(), wanted.clone(), args.policy.clone(), progress.clone());
        let workers = args.register_concurrency;
        tokio::task::spawn_blocking(move || {
            provision(&api, &identities, &wanted, &policy, workers, &progress)
        })
    };
    tokio::pin!(registering);
    let mut tick = tokio::time::interval(display.interval(args.summary_every));
    let identities = loop {
        tokio::select! {
            done = &mut registering => break done?,
            _ = tick.tick() => display.status(&summary::provision_line(&progress, started.elapsed())),
        }
    };
    display.status(&summary::provision_line(&progress, started.elapsed()));
    display.finish();
    let identities = identities?;

    let (mqtt_host, mqtt_port) = mqtt_endpoint(args.mqtt.as_deref(), endpoint)?;
    let config = FleetConfig {
        mqtt_host: mqtt_host.clone(),
        mqtt_port,
        ca_pem,
        seed: args.seed,
        mix: args.classes.clone(),
        timing: Timing {
            period: args.period,
            speedup: args.speedup,
            start_epoch_ms: crate::fleet::now_epoch_ms(),
        },
        telemetry,
        format: args.format,
        names: if args.long_names { Names::Long } else { Names::Short },
        connect_concurrency: args.connect_concurrency,
    };
    let devices =
        identities.into_iter().zip(0u64..).map(|(identity, index)| SimDevice { index, identity }).collect();
    let fleet = Arc::new(Fleet::start(config, devices).await?);
    let control = ControlServer::start(fleet.clone(), &state).await?;
    display.message(&format!(
        "{} devices ({}) against mqtts://{mqtt_host}:{mqtt_port}, a report every {}{}{}; control on {} (warden sim misbehave|calm|status --state-dir {})",
        args.devices,
        args.classes,
        humantime::format_duration(args.period),
        if args.speedup == 1.0 { String::new() } else { format!(" ({}x simulated time)", args.speedup) },
        match telemetry {
            Some(d) => format!(", telemetry every {}", humantime::format_duration(d)),
            None => ", no telemetry connection".to_owned(),
        },
        control.addr,
        args.state_dir.display(),
    ));

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let summary = tokio::spawn(summary::run(
        fleet.clone(),
        display.clone(),
        Some((api, Some(args.quarantine_group.clone()))),
        args.summary_every,
        args.summary_every.max(Duration::from_secs(5)),
        true,
        stopped,
    ));
    wait_for_end(args.duration).await;
    let _ = stop.send(true);
    let _ = summary.await;
    control.stop().await;
    fleet.shutdown().await;
    display.message("stopped: every device said DISCONNECT");
    Ok(())
}

/// Until Ctrl-C, SIGTERM, or `duration`.
async fn wait_for_end(duration: Option<Duration>) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let term = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    let timeout = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
        _ = timeout => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimCommand,
    }

    fn parse(args: &[&str]) -> Result<SimCommand, String> {
        let mut all = vec!["sim"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).map(|c| c.sim).map_err(|e| e.to_string())
    }

    #[test]
    fn a_run_takes_its_options() {
        let cmd = parse(&[
            "--devices",
            "20",
            "--period",
            "5s",
            "--speedup",
            "60",
            "--classes",
            "meter=3,kiosk",
            "--seed",
            "7",
            "--telemetry",
            "every 2s",
        ])
        .unwrap();
        assert!(cmd.needs_api());
        let r = cmd.run;
        assert_eq!((r.devices, r.period, r.speedup, r.seed), (20, Duration::from_secs(5), 60.0, 7));
        assert_eq!(r.classes.to_string(), "meter=3,kiosk=1");
        assert_eq!(r.telemetry, Telemetry::Every(Duration::from_secs(2)));
        let defaults = parse(&[]).unwrap().run;
        assert_eq!(
            (defaults.devices, defaults.period, defaults.telemetry),
            (10, Duration::from_secs(301), Telemetry::Auto)
        );
        defaults.check().unwrap();
    }

    #[test]
    fn telemetry_is_every_d_off_or_auto() {
        assert_eq!(parse_telemetry("every 5s"), Ok(Telemetry::Every(Duration::from_secs(5))));
        assert_eq!(parse_telemetry("10s"), Ok(Telemetry::Every(Duration::from_secs(10))));
        assert_eq!(parse_telemetry("off"), Ok(Telemetry::Off));
        assert!(parse_telemetry("every 1ms").is_err());
        assert!(parse_telemetry("sometimes").is_err());
        assert_eq!(Telemetry::Auto.resolve(1_000), Some(Duration::from_secs(5)));
        assert_eq!(Telemetry::Auto.resolve(1_001), None);
        assert_eq!(Telemetry::Off.resolve(1), None);
    }

    #[test]
    fn control_commands_parse() {
        let cmd =
            parse(&["misbehave", "sim-00003", "scan", "--for", "90s", "--state-dir", "/tmp/x"]).unwrap();
        assert!(!cmd.needs_api());
        let Some(SimAction::Misbehave { thing, kind, duration, control }) = cmd.action else { panic!() };
        assert_eq!(
            (thing.as_str(), kind, duration),
            ("sim-00003", Misbehaviour::Scan, Some(Duration::from_secs(90)))
        );
        assert_eq!(control.state_dir, PathBuf::from("/tmp/x"));
        let cmd = parse(&["calm", "sim-00003"]).unwrap();
        assert!(matches!(cmd.action, Some(SimAction::Calm { kind: None, .. })));
        let err = parse(&["misbehave", "sim-00003", "dance"]).unwrap_err();
        assert!(err.contains("unknown misbehaviour \"dance\""), "{err}");
        assert!(parse(&["--devices", "3", "status"]).is_err(), "run options do not mix with a subcommand");
    }

    #[test]
    fn bad_run_options_are_reported_together() {
        let r = parse(&["--devices", "0", "--period", "1ms", "--prefix", "a/b"]).unwrap().run;
        let e = r.check().unwrap_err().to_string();
        assert_eq!(
            e,
            "--devices: between 1 and 1000000\n--period: at least 100ms\n--prefix: at most 100 of a-z A-Z 0-9 : _ - (thing names)"
        );
    }

    #[test]
    fn the_mqtt_endpoint_defaults_to_the_api_host() {
        let check = |mqtt: Option<&str>, api: &str, expect: (&str, u16)| {
            assert_eq!(mqtt_endpoint(mqtt, api).unwrap(), (expect.0.to_owned(), expect.1), "{mqtt:?} {api}");
        };
        check(None, "http://127.0.0.1:8080", ("127.0.0.1", 8883));
        check(None, "https://iot.example.com/", ("iot.example.com", 8883));
        check(None, "http://[::1]:8080", ("::1", 8883));
        check(Some("localhost:18883"), "http://127.0.0.1:8080", ("localhost", 18883));
        assert!(mqtt_endpoint(Some("nohost"), "").is_err());
        assert_eq!(thing_name("sim-", 3), "sim-00003");
        assert_eq!(thing_name("x", 123_456), "x123456");
    }

    #[test]
    fn the_open_file_limit_is_read() {
        assert!(open_file_limit().is_some_and(|n| n > 0));
    }
}
