//! `warden demo`: the lab in one command. A server in-process (a temporary data dir unless
//! `--data-dir`), the AWS workshop's set-up made through the REST API ([`warden_sim::lab`]),
//! a virtual fleet ([`warden_sim::fleet`]) with a short report period, and one device told to
//! misbehave once every device has a normal baseline; then the story, narrated as it is
//! observed: the report over the threshold, the violation, the alert (received by a webhook of
//! the demo), the move to `Quarantine`, the refused telemetry and the metrics reports still
//! accepted.
//!
//! Every observation goes through a user's boundary: the API (metric values, violations, group
//! membership, mitigation executions), the alert webhook, and what the devices' MQTT clients
//! see (PUBACK 0x87 on telemetry). The story's steps are printed in their causal order (a
//! quarantine polled before its violation waits for it), each stamped with the time since the
//! demo started.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use serde_json::Value;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;
use warden_server::config::ServerConfig;
use warden_server::server::RunningServer;
use warden_server::state::SystemClock;
use warden_sim::api::Api;
use warden_sim::class::{ClassMix, DeviceClass};
use warden_sim::control::ControlServer;
use warden_sim::fleet::{DeviceEvent, Fleet, FleetConfig, Link, SimDevice};
use warden_sim::identity::{ProvisionProgress, StateDir, Wanted, provision};
use warden_sim::lab::{self, Alert, AlertReceiver};
use warden_sim::misbehaviour::Misbehaviour;
use warden_sim::model::Timing;
use warden_sim::summary::{self, Display};
use warden_sim::traffic::DeviceTraits;

const EXAMPLES: &str = "\
Examples:
  # The lab, watched live, until Ctrl-C
  warden demo
  # Unattended (CI): exit 0 once the device is quarantined, 1 with the reason otherwise
  warden demo --headless --exit-after-quarantine --timeout 180s
  # Keep the server's data, on fixed ports, with 50 devices and a UDP flood
  warden demo --data-dir ./demo-data --mqtt-port 18883 --http-port 18080 --devices 50 --misbehave flood";

/// The lab in one command: a server, a virtual fleet, and one device that misbehaves.
///
/// Starts a Warden server in this process (MQTT/TLS and the API on 127.0.0.1), sets up the AWS
/// workshop's lab through the REST API (thing group Quarantine whose policy denies application
/// topics, QuarantineAction, alert topic DDD_Alerts with a webhook of the demo, and
/// OutboundBytesSecProfile: at most 35,000 bytes out per 5 minutes, on all things, quarantining
/// automatically), runs --devices virtual devices (each a real MQTT/TLS client with its own
/// certificate), and once every device has a normal baseline makes --thing misbehave. It
/// narrates what follows: the report over the threshold, the violation, the alert, the move to
/// Quarantine, the refused telemetry, and the metrics reports still accepted. Then it keeps
/// running until Ctrl-C or SIGTERM (or exits, with --exit-after-quarantine).
#[derive(Debug, Args)]
#[command(after_long_help = EXAMPLES)]
pub struct DemoArgs {
    /// Keep the server's data (database, CA, API token, the devices' certificates) in DIR, and
    /// reuse it on the next run [default: a temporary directory, removed at exit].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// MQTT/TLS port, on 127.0.0.1 [default: a free port].
    #[arg(long, value_name = "PORT")]
    mqtt_port: Option<u16>,
    /// HTTP port of the API and the dashboard, on 127.0.0.1 [default: a free port].
    #[arg(long, value_name = "PORT")]
    http_port: Option<u16>,
    /// How many virtual devices (meters, cameras, gateways, kiosks): things dev-01, dev-02, ...
    #[arg(long, value_name = "N", default_value_t = 20)]
    devices: u64,
    /// Time between two reports of a device. Each report stands for 5 simulated minutes (the
    /// profile's window), and the server's detection period is set to it.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    period: Duration,
    /// Seed of the fleet's random choices (classes, traffic, bursts).
    #[arg(long, value_name = "N", default_value_t = 1)]
    seed: u64,
    /// What the device does: large-payload (the workshop's attack), scan, flood, flood-syn or
    /// exfil (slowly): those raise the bytes out the lab's profile watches.
    #[arg(long, value_name = "KIND", default_value = "large-payload", value_parser = parse_misbehaviour)]
    misbehave: Misbehaviour,
    /// The device that misbehaves [default: dev-07, or the last device of a smaller fleet].
    #[arg(long, value_name = "NAME")]
    thing: Option<String>,
    /// Accepted reports every device sends, with no violation anywhere, before the misbehaviour
    /// starts.
    #[arg(long, value_name = "N", default_value_t = 3)]
    baseline: u64,
    /// No live status line: plain narrated lines only, for logs and CI.
    #[arg(long)]
    headless: bool,
    /// Exit once the device is quarantined, its telemetry refused and a later report accepted
    /// (exit 0), instead of running until Ctrl-C.
    #[arg(long)]
    exit_after_quarantine: bool,
    /// Give up when the story has not come to the quarantine this long after the start: stop,
    /// and exit 1 naming the step that did not happen.
    #[arg(long, value_name = "DURATION", default_value = "180s", value_parser = parse_duration)]
    timeout: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration like 5s, 2m or 1h ({e})"))
}

fn parse_misbehaviour(s: &str) -> Result<Misbehaviour, String> {
    s.parse()
}

/// The misbehaviours that raise `aws:all-bytes-out` over the lab's threshold.
const DETECTED: [Misbehaviour; 5] = [
    Misbehaviour::LargePayload,
    Misbehaviour::Scan,
    Misbehaviour::Flood,
    Misbehaviour::FloodSyn,
    Misbehaviour::Exfil,
];

impl DemoArgs {
    /// Every bad value at once, each naming its flag.
    fn check(&self) -> anyhow::Result<()> {
        let mut problems = Vec::new();
        if !(1..=1_000).contains(&self.devices) {
            problems.push("--devices: between 1 and 1000".to_owned());
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(300)).contains(&self.period) {
            problems.push("--period: between 1s and 300s".to_owned());
        }
        if !(1..=100).contains(&self.baseline) {
            problems.push("--baseline: between 1 and 100 reports".to_owned());
        }
        if self.timeout < Duration::from_secs(1) {
            problems.push("--timeout: at least 1s".to_owned());
        }
        if !DETECTED.contains(&self.misbehave) {
            let names: Vec<&str> = DETECTED.iter().map(|m| m.as_str()).collect();
            problems.push(format!(
                "--misbehave: {} does not raise aws:all-bytes-out, which the lab's profile watches; use one of {}",
                self.misbehave,
                names.join(", ")
            ));
        }
        if let Some(thing) = &self.thing
            && (1..=1_000).contains(&self.devices)
            && !(0..self.devices).any(|i| thing_name(i, self.devices) == *thing)
        {
            problems.push(format!(
                "--thing: {thing:?} is not a device of the fleet ({} to {})",
                thing_name(0, self.devices),
                thing_name(self.devices - 1, self.devices)
            ));
        }
        if problems.is_empty() { Ok(()) } else { bail!("{}", problems.join("\n")) }
    }

    fn misbehaving_thing(&self) -> String {
        match &self.thing {
            Some(thing) => thing.clone(),
            None => thing_name(6.min(self.devices - 1), self.devices),
        }
    }
}

/// The thing name of device `index` (0-based) of a fleet of `devices`: `dev-01`, numbered from
/// 1 with at least two digits, as many as the largest number needs.
fn thing_name(index: u64, devices: u64) -> String {
    let width = devices.to_string().len().max(2);
    format!("dev-{:0width$}", index + 1)
}

/// `12345` as `12,345`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A duration in seconds, as short as it gets: `5s`, `2.5s`.
fn seconds(d: Duration) -> String {
    let s = format!("{:.3}", d.as_secs_f64());
    format!("{}s", s.trim_end_matches('0').trim_end_matches('.'))
}

/// A line of the story: the time since the start, then what happened.
fn narration(elapsed: Duration, text: &str) -> String {
    format!("[{:>6.1}s] {text}", elapsed.as_secs_f64())
}

/// A metric value as the API gives it (`{"count": 70123}`), for people.
fn metric_value(value: &Value) -> String {
    if let Some(count) = value["count"].as_u64() {
        return thousands(count);
    }
    if let Some(n) = value["number"].as_f64() {
        return n.to_string();
    }
    value.to_string()
}

/// What the misbehaviour does, as the story tells it.
fn misbehaviour_story(kind: Misbehaviour) -> &'static str {
    match kind {
        Misbehaviour::LargePayload => {
            "starts sending large payloads (64 KiB more telemetry per report period)"
        }
        Misbehaviour::Scan => "starts scanning for telnet servers, as Mirai does",
        Misbehaviour::Flood => "starts a UDP flood",
        Misbehaviour::FloodSyn => "starts a SYN flood",
        Misbehaviour::Exfil => "starts exfiltrating data, a little more every minute",
        other => other.as_str(),
    }
}

/// The story's steps, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Server,
    Setup,
    Fleet,
    Baseline,
    Breach,
    Violation,
    Alert,
    Quarantine,
    Denied,
    StillReporting,
    Done,
}

impl Step {
    /// What did not happen when the story stops at this step.
    fn waiting_for(self, thing: &str) -> String {
        match self {
            Step::Server => "the server to start".to_owned(),
            Step::Setup => "the lab's set-up through the API".to_owned(),
            Step::Fleet => "the devices to be registered and connected".to_owned(),
            Step::Baseline => "a normal baseline from every device".to_owned(),
            Step::Breach => format!("a report of {thing} over {} bytes out", thousands(lab::THRESHOLD_BYTES)),
            Step::Violation => format!("the in-alarm violation of {thing}"),
            Step::Alert => format!("the alert about {thing} on the demo's webhook"),
            Step::Quarantine => {
                format!("{thing} in thing group {} (automatic mitigation)", lab::QUARANTINE_GROUP)
            }
            Step::Denied => format!("a telemetry publish of {thing} refused"),
            Step::StillReporting => format!("a metrics report of {thing} accepted after its quarantine"),
            Step::Done => "nothing".to_owned(),
        }
    }
}

/// Where the story is: the step it waits for, and how far that step got.
#[derive(Debug)]
struct Progress {
    step: Step,
    since: Duration,
    detail: String,
}

/// The reason a story that stopped at `progress` failed.
fn failure(progress: &Progress, thing: &str, why: &str) -> String {
    let mut out = format!(
        "{why}: still waiting for {} (since {:.1}s)",
        progress.step.waiting_for(thing),
        progress.since.as_secs_f64()
    );
    if !progress.detail.is_empty() {
        out.push_str("; ");
        out.push_str(&progress.detail);
    }
    out
}

/// Prints the story.
#[derive(Debug, Clone)]
struct Narrator {
    start: Instant,
    display: Arc<Display>,
    progress: Arc<Mutex<Progress>>,
}

impl Narrator {
    fn say(&self, text: &str) {
        self.display.message(&narration(self.start.elapsed(), text));
    }

    /// Now waiting for `step`.
    fn step(&self, step: Step) {
        let mut p = self.progress.lock().unwrap_or_else(PoisonError::into_inner);
        *p = Progress { step, since: self.start.elapsed(), detail: String::new() };
    }

    fn detail(&self, detail: String) {
        self.progress.lock().unwrap_or_else(PoisonError::into_inner).detail = detail;
    }
}

/// The parts of the running demo that must be stopped at the end, whichever way it ends.
#[derive(Default)]
struct Parts {
    fleet: Option<Arc<Fleet>>,
    control: Option<ControlServer>,
    /// The live status line (not headless): its stop signal and task.
    summary: Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)>,
}

impl Parts {
    async fn stop(&mut self) {
        if let Some((stop, task)) = self.summary.take() {
            let _ = stop.send(true);
            let _ = task.await;
        }
        if let Some(control) = self.control.take() {
            control.stop().await;
        }
        if let Some(fleet) = self.fleet.take() {
            fleet.shutdown().await;
        }
    }
}

/// What the demo knows about the server it started.
struct Lab {
    server: RunningServer,
    api: Api,
    endpoint: String,
    state: StateDir,
}

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    args.check()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(demo(args))
}

async fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let start = Instant::now();
    let display = Arc::new(if args.headless { Display::plain() } else { Display::stdout() });
    let progress =
        Arc::new(Mutex::new(Progress { step: Step::Server, since: Duration::ZERO, detail: String::new() }));
    let narrator = Narrator { start, display: display.clone(), progress: progress.clone() };
    let thing = args.misbehaving_thing();

    // A temporary data dir lives as long as this guard: removed when the demo returns.
    let (temp, data_dir) = match &args.data_dir {
        Some(dir) => (None, dir.clone()),
        None => {
            let temp =
                tempfile::Builder::new().prefix("warden-demo-").tempdir().context("a temporary data dir")?;
            let dir = temp.path().to_owned();
            (Some(temp), dir)
        }
    };
    // The webhook the lab's alerts go to, first: if it cannot start, no server has to stop.
    let (receiver, mut alerts) = AlertReceiver::start().await.context("starting the alert webhook")?;
    let mut config = ServerConfig { data_dir: data_dir.clone(), ..ServerConfig::default() };
    config.mqtt.listen = ([127, 0, 0, 1], args.mqtt_port.unwrap_or(0)).into();
    config.http.listen = ([127, 0, 0, 1], args.http_port.unwrap_or(0)).into();
    // Every report is accepted and is one detection period; alerts are retried soon.
    config.ingest.min_report_period = Duration::ZERO;
    config.detect.period = args.period;
    config.cloud_metrics.period = args.period;
    config.alerts.retry_delay = Duration::from_millis(250);
    let server = warden_server::server::start(config, Arc::new(SystemClock))
        .await
        .context("starting the server (with --mqtt-port or --http-port, is the port free?)")?;
    let endpoint = format!("http://{}", server.http_addr);
    let api = Api::new(&endpoint, &server.api_token);
    let state = StateDir::new(data_dir.join("sim"));
    narrator.say(&format!(
        "Warden is running: MQTT/TLS on {}, API on {endpoint}, data in {}{}",
        server.mqtt_addr,
        data_dir.display(),
        if temp.is_some() { " (removed at exit)" } else { "" }
    ));
    banner(&display, &server, &endpoint, &data_dir);
    let lab = Lab { server, api, endpoint, state };
    let mut parts = Parts::default();
    let deadline = start + args.timeout;
    enum End {
        Story(anyhow::Result<()>),
        Timeout,
        Signal,
    }
    let end = {
        let story = story(&args, &lab, &receiver, &mut alerts, &narrator, &mut parts, &thing);
        tokio::pin!(story);
        tokio::select! {
            result = &mut story => End::Story(result),
            _ = tokio::time::sleep_until(deadline) => End::Timeout,
            _ = crate::server::shutdown_signal() => End::Signal,
        }
    };
    let outcome = match end {
        End::Story(Ok(())) => {
            if !args.exit_after_quarantine {
                keep_running(&args, &lab, &narrator, &mut alerts).await;
            }
            Ok(ExitCode::SUCCESS)
        }
        End::Story(Err(e)) => Err(e),
        End::Timeout => {
            let p = progress.lock().unwrap_or_else(PoisonError::into_inner);
            Err(anyhow::anyhow!(failure(
                &p,
                &thing,
                &format!(
                    "the demo did not come to the quarantine within {}",
                    humantime::format_duration(args.timeout)
                )
            )))
        }
        End::Signal if args.exit_after_quarantine => {
            let p = progress.lock().unwrap_or_else(PoisonError::into_inner);
            Err(anyhow::anyhow!(failure(&p, &thing, "interrupted")))
        }
        End::Signal => Ok(ExitCode::SUCCESS),
    };
    narrator.say("stopping: devices, then the server");
    parts.stop().await;
    receiver.stop().await;
    lab.server.shutdown().await;
    drop(temp);
    narrator.say("stopped");
    outcome
}

/// Where the dashboard and the API are, and how to use the CLI against them.
fn banner(display: &Display, server: &RunningServer, endpoint: &str, data_dir: &std::path::Path) {
    let token = &server.api_token;
    display.message(&format!(
        "\n  Dashboard  {endpoint}/#token={token}\n  API        {endpoint}  (token in {})\n  CLI        export WARDEN_ENDPOINT={endpoint} WARDEN_TOKEN={token}\n             warden violations list; warden groups things {}\n  Devices    warden sim status --state-dir {}\n",
        data_dir.join("api-token").display(),
        lab::QUARANTINE_GROUP,
        data_dir.join("sim").display(),
    ));
}

/// The story, up to the reports still accepted in quarantine.
async fn story(
    args: &DemoArgs,
    lab: &Lab,
    receiver: &AlertReceiver,
    alerts: &mut mpsc::Receiver<Alert>,
    narrator: &Narrator,
    parts: &mut Parts,
    thing: &str,
) -> anyhow::Result<()> {
    narrator.step(Step::Setup);
    {
        let (api, url) = (lab.api.clone(), receiver.url());
        tokio::task::spawn_blocking(move || lab::set_up(&api, Some(&url)))
            .await?
            .context("the lab's set-up")?;
    }
    narrator.say(&format!(
        "lab set up through the API: thing group {} with {} (denies things/THING/*), {}, alert topic {} -> {}, {} ({}: alarm when {} > {} bytes per report) on all things, quarantining automatically",
        lab::QUARANTINE_GROUP,
        lab::QUARANTINE_POLICY,
        lab::QUARANTINE_ACTION,
        lab::ALERT_TOPIC,
        receiver.url(),
        lab::PROFILE,
        lab::BEHAVIOR,
        lab::METRIC,
        thousands(lab::THRESHOLD_BYTES),
    ));

    narrator.step(Step::Fleet);
    let things: Vec<String> = (0..args.devices).map(|i| thing_name(i, args.devices)).collect();
    let released = {
        let api = lab.api.clone();
        tokio::task::spawn_blocking(move || lab::release(&api, &things))
            .await?
            .context("releasing the fleet from quarantine")?
    };
    if !released.is_empty() {
        narrator.say(&format!(
            "released from {} (left there by an earlier run): {}",
            lab::QUARANTINE_GROUP,
            released.join(", ")
        ));
    }
    let fleet = start_fleet(args, lab, narrator).await?;
    parts.fleet = Some(fleet.clone());
    parts.control = Some(
        ControlServer::start(fleet.clone(), &lab.state).await.context("the simulator's control endpoint")?,
    );
    // The live status line, on a terminal only: elsewhere the story's lines say enough.
    if !args.headless && narrator.display.is_tty() {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(summary::run(
            fleet.clone(),
            narrator.display.clone(),
            Some((lab.api.clone(), Some(lab::QUARANTINE_GROUP.to_owned()))),
            Duration::from_secs(30),
            Duration::from_secs(2),
            false,
            stopped,
        ));
        parts.summary = Some((stop, task));
    }
    let mut events = fleet.events();

    narrator.step(Step::Baseline);
    baseline(args, lab, &fleet, narrator, thing).await?;

    narrator.step(Step::Breach);
    let class = fleet.device(thing)?.class;
    let since_ms = warden_sim::fleet::now_epoch_ms();
    fleet.misbehave(thing, args.misbehave, None).await?;
    narrator.say(&format!("{thing} ({class}) {}", misbehaviour_story(args.misbehave)));
    watch_story(lab, narrator, thing, since_ms, &mut events, alerts).await?;

    // Checked through the API, not only as polled: the thing is in Quarantine.
    let groups =
        api_call(&lab.api, "ListThingGroupsForThing", &format!("/things/{thing}/thing-groups")).await?;
    let quarantined = groups["thingGroups"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|g| g["groupName"] == lab::QUARANTINE_GROUP);
    let contained = fleet.device(thing)?.contained;
    if !quarantined || !contained {
        bail!(
            "{thing} should be quarantined (in {}: {quarantined}; telemetry refused: {contained})",
            lab::QUARANTINE_GROUP
        );
    }
    narrator.step(Step::Done);
    narrator.say(&format!(
        "{thing} is quarantined: {:.1}s from the start of the demo",
        narrator.start.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// Registers the devices through the API (reusing the certificates of an earlier run in the
/// data dir) and starts them.
async fn start_fleet(args: &DemoArgs, lab: &Lab, narrator: &Narrator) -> anyhow::Result<Arc<Fleet>> {
    let mix = ClassMix::default();
    let ca_pem = {
        let api = lab.api.clone();
        tokio::task::spawn_blocking(move || api.ca_pem()).await?.context("fetching the server's CA")?
    };
    let identities = lab.state.identities(&ca_pem)?;
    let wanted: Vec<Wanted> = (0..args.devices)
        .map(|i| Wanted {
            thing: thing_name(i, args.devices),
            class: DeviceTraits::draw(args.seed, i, &mix).class,
        })
        .collect();
    let progress = Arc::new(ProvisionProgress::default());
    let ids = {
        let (api, wanted, progress) = (lab.api.clone(), wanted.clone(), progress.clone());
        tokio::task::spawn_blocking(move || {
            provision(&api, &identities, &wanted, warden_server::server::DEFAULT_THING_POLICY, 4, &progress)
        })
        .await?
        .context("registering the devices")?
    };
    let mut config = FleetConfig::new("127.0.0.1", lab.server.mqtt_addr.port(), &ca_pem);
    config.seed = args.seed;
    config.mix = mix;
    // Each report covers 5 simulated minutes, the cadence the classes and the profile's window
    // are calibrated for; telemetry twice a report, so a quarantine shows within half a period.
    config.timing = Timing {
        period: args.period,
        speedup: 300.0 / args.period.as_secs_f64(),
        start_epoch_ms: warden_sim::fleet::now_epoch_ms(),
    };
    config.telemetry = Some(args.period / 2);
    let devices =
        ids.into_iter().zip(0u64..).map(|(identity, index)| SimDevice { index, identity }).collect();
    let fleet = Arc::new(Fleet::start(config, devices).await?);
    let mut classes: Vec<(DeviceClass, usize)> = Vec::new();
    for w in &wanted {
        match classes.iter_mut().find(|(c, _)| *c == w.class) {
            Some((_, n)) => *n += 1,
            None => classes.push((w.class, 1)),
        }
    }
    classes.sort();
    let classes: Vec<String> = classes.iter().map(|(c, n)| format!("{n} {c}")).collect();
    narrator.say(&format!(
        "{} devices started ({}; {} registered, {} reused), {} to {}: a report every {}, each 5 simulated minutes, telemetry every {}",
        args.devices,
        classes.join(", "),
        progress.registered.load(std::sync::atomic::Ordering::Relaxed),
        progress.reused.load(std::sync::atomic::Ordering::Relaxed),
        thing_name(0, args.devices),
        thing_name(args.devices - 1, args.devices),
        seconds(args.period),
        seconds(args.period / 2),
    ));
    Ok(fleet)
}

async fn api_call(api: &Api, operation: &'static str, path: &str) -> anyhow::Result<Value> {
    let (api, path) = (api.clone(), path.to_owned());
    Ok(tokio::task::spawn_blocking(move || api.call(operation, "GET", &path, None)).await??)
}

/// Waits until every device has `--baseline` accepted reports and nothing is in alarm, then
/// tells the fleet's bytes out per report against the threshold.
async fn baseline(
    args: &DemoArgs,
    lab: &Lab,
    fleet: &Fleet,
    narrator: &Narrator,
    thing: &str,
) -> anyhow::Result<()> {
    let fleet_start_ms = warden_sim::fleet::now_epoch_ms() - fleet.uptime().as_millis() as i64;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let devices = fleet.devices();
        let ready = devices.iter().filter(|d| d.reports_accepted >= args.baseline).count();
        let connected =
            devices.iter().filter(|d| d.agent.state == warden_sim::fleet::LinkState::Connected).count();
        let mut detail = format!(
            "{connected} of {} devices connected, {ready} with {} accepted reports",
            devices.len(),
            args.baseline
        );
        if ready < devices.len() {
            narrator.detail(detail);
            continue;
        }
        let active = api_call(&lab.api, "ListActiveViolations", "/active-violations?maxResults=250").await?;
        let alarmed: BTreeSet<&str> = active["activeViolations"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v["thingName"].as_str())
            .collect();
        if !alarmed.is_empty() {
            let alarmed: Vec<&str> = alarmed.into_iter().collect();
            detail.push_str(&format!("; in alarm: {}", alarmed.join(", ")));
            narrator.detail(detail);
            continue;
        }
        break;
    }
    // The highest bytes out of each device's reports so far.
    let mut highest: Vec<(u64, String)> = Vec::new();
    for t in fleet.things() {
        let values = metric_values(&lab.api, t, fleet_start_ms).await?;
        highest.push((values.iter().map(|(_, v)| *v).max().unwrap_or(0), t.to_owned()));
    }
    highest.sort();
    let reports = fleet.totals().reports_accepted;
    let (top, top_thing) = highest.last().cloned().unwrap_or_default();
    let own = highest.iter().find(|(_, t)| t == thing).map_or(0, |(v, _)| *v);
    narrator.say(&format!(
        "baseline normal: {reports} reports accepted, no violation; bytes out per report at most {} ({top_thing}), {thing} at most {}, the limit {}",
        thousands(top),
        thousands(own),
        thousands(lab::THRESHOLD_BYTES),
    ));
    Ok(())
}

/// The thing's `aws:all-bytes-out` datapoints since `since_ms` (epoch milliseconds), oldest
/// first: (epoch ms, bytes).
async fn metric_values(api: &Api, thing: &str, since_ms: i64) -> anyhow::Result<Vec<(i64, u64)>> {
    let since_s = since_ms.div_euclid(1000);
    let path = format!(
        "/metric-values?thingName={thing}&metricName={}&startTime={since_s}&endTime={}&maxResults=250",
        lab::METRIC,
        since_s + 10 * 365 * 86_400
    );
    let reply = api_call(api, "ListMetricValues", &path).await?;
    let mut out: Vec<(i64, u64)> = reply["metricDatumList"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| {
            let ms = (d["timestamp"].as_f64()? * 1000.0).round() as i64;
            Some((ms, d["value"]["count"].as_u64()?))
        })
        .filter(|(ms, _)| *ms >= since_ms)
        .collect();
    out.sort();
    Ok(out)
}

/// What has been observed since the misbehaviour started; each step is told once, in order.
#[derive(Debug, Default)]
struct Story {
    told: Vec<Step>,
    breach: Option<String>,
    violation_id: Option<String>,
    violation: Option<String>,
    alert: Option<String>,
    quarantine: Option<String>,
    denied: Option<String>,
    still_reporting: Option<String>,
}

impl Story {
    const STEPS: [Step; 6] =
        [Step::Breach, Step::Violation, Step::Alert, Step::Quarantine, Step::Denied, Step::StillReporting];

    fn fact(&self, step: Step) -> Option<&String> {
        match step {
            Step::Breach => self.breach.as_ref(),
            Step::Violation => self.violation.as_ref(),
            Step::Alert => self.alert.as_ref(),
            Step::Quarantine => self.quarantine.as_ref(),
            Step::Denied => self.denied.as_ref(),
            Step::StillReporting => self.still_reporting.as_ref(),
            _ => None,
        }
    }

    /// The lines to tell now: the known steps that follow the last one told, in order, up to the
    /// first one not known yet; and the step waited for next.
    fn tell(&mut self) -> (Vec<String>, Step) {
        let mut lines = Vec::new();
        for step in Story::STEPS {
            if self.told.contains(&step) {
                continue;
            }
            match self.fact(step) {
                Some(line) => {
                    lines.push(line.clone());
                    self.told.push(step);
                }
                None => return (lines, step),
            }
        }
        (lines, Step::Done)
    }
}

/// Observes the story after the misbehaviour started, until a report is accepted after the
/// quarantine: the API every 300 ms, the alert webhook and the devices' events as they come.
async fn watch_story(
    lab: &Lab,
    narrator: &Narrator,
    thing: &str,
    since_ms: i64,
    events: &mut broadcast::Receiver<DeviceEvent>,
    alerts: &mut mpsc::Receiver<Alert>,
) -> anyhow::Result<()> {
    let mut story = Story::default();
    let mut reports_seen: BTreeSet<i64> = BTreeSet::new();
    let telemetry_topic = format!("things/{thing}/telemetry");
    let mut poll = tokio::time::interval(Duration::from_millis(300));
    let mut alerts_open = true;
    loop {
        tokio::select! {
            _ = poll.tick() => {
                poll_api(lab, narrator, thing, since_ms, &mut story, &mut reports_seen).await?;
            }
            alert = alerts.recv(), if alerts_open => match alert {
                Some(alert) if alert.thing == thing && alert.event_type == "in-alarm" && story.alert.is_none() => {
                    story.violation_id.get_or_insert_with(|| alert.violation_id.clone());
                    story.alert = Some(alert_line(&alert));
                }
                Some(alert) => narrator.say(&alert_line(&alert)),
                None => alerts_open = false,
            },
            event = events.recv() => match event {
                Ok(DeviceEvent::PublishDenied { thing: t, link: Link::App, topic: Some(topic) })
                    if t == thing && topic == telemetry_topic && story.denied.is_none() =>
                {
                    story.denied = Some(format!(
                        "{thing}'s telemetry refused: PUBLISH {topic} answered PUBACK 0x87 (not authorized) by the {} policy; its connection stays up",
                        lab::QUARANTINE_GROUP
                    ));
                }
                Ok(DeviceEvent::ReportAccepted { thing: t, report_id })
                    if t == thing && story.denied.is_some() && story.still_reporting.is_none() =>
                {
                    story.still_reporting = Some(format!(
                        "{thing}'s metrics reports still accepted (report id {report_id}): Device Defender keeps watching it in quarantine"
                    ));
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => bail!("the fleet stopped"),
            },
        }
        let (lines, next) = story.tell();
        for line in &lines {
            narrator.say(line);
        }
        if !lines.is_empty() {
            narrator.step(next);
        }
        if next == Step::Done {
            return Ok(());
        }
    }
}

/// One alert, with its essential fields.
fn alert_line(alert: &Alert) -> String {
    let criteria = &alert.message["behavior"]["criteria"];
    let limit = match (criteria["comparisonOperator"].as_str(), criteria.get("value")) {
        (Some(op), Some(v)) => format!(" ({op} {})", metric_value(v)),
        _ => String::new(),
    };
    format!(
        "alert received on the webhook: {} {}, {}/{}, {} = {}{limit}, violation {}",
        alert.event_type,
        alert.thing,
        alert.profile,
        alert.behavior,
        alert.metric,
        alert.value.as_ref().map_or_else(|| "-".to_owned(), metric_value),
        alert.violation_id,
    )
}

/// One look at the API: new reports of the thing, its violation, its groups and the mitigation.
async fn poll_api(
    lab: &Lab,
    narrator: &Narrator,
    thing: &str,
    since_ms: i64,
    story: &mut Story,
    reports_seen: &mut BTreeSet<i64>,
) -> anyhow::Result<()> {
    if story.breach.is_none() {
        for (ms, bytes) in metric_values(&lab.api, thing, since_ms).await? {
            if !reports_seen.insert(ms) {
                continue;
            }
            let over = bytes > lab::THRESHOLD_BYTES;
            let line = format!(
                "report from {thing}: {} = {} bytes, {} the limit of {}",
                lab::METRIC,
                thousands(bytes),
                if over { "over" } else { "within" },
                thousands(lab::THRESHOLD_BYTES)
            );
            if over {
                story.breach = Some(line);
                break;
            }
            narrator.say(&line);
        }
    }
    if story.violation.is_none() {
        let active =
            api_call(&lab.api, "ListActiveViolations", &format!("/active-violations?thingName={thing}"))
                .await?;
        let found = active["activeViolations"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["behavior"]["name"] == lab::BEHAVIOR)
            .cloned();
        if let Some(v) = found {
            let id = v["violationId"].as_str().unwrap_or_default().to_owned();
            story.violation = Some(format!(
                "violation: {thing} is in alarm for {}/{} ({} = {}), violation {id}",
                lab::PROFILE,
                lab::BEHAVIOR,
                lab::METRIC,
                metric_value(&v["lastViolationValue"]),
            ));
            story.violation_id.get_or_insert(id);
        }
    }
    if story.quarantine.is_none()
        && let Some(id) = story.violation_id.clone()
    {
        let groups =
            api_call(&lab.api, "ListThingGroupsForThing", &format!("/things/{thing}/thing-groups")).await?;
        let member = groups["thingGroups"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|g| g["groupName"] == lab::QUARANTINE_GROUP);
        if member {
            let executions = api_call(
                &lab.api,
                "ListDetectMitigationActionsExecutions",
                &format!("/detect/mitigationactions/executions?taskId=auto-{id}"),
            )
            .await?;
            let how = executions["actionsExecutions"]
                .as_array()
                .and_then(|e| e.first())
                .map(|e| {
                    format!(
                        "{} {} ({})",
                        e["actionName"].as_str().unwrap_or("?"),
                        e["status"].as_str().unwrap_or("?"),
                        e["message"].as_str().unwrap_or("")
                    )
                })
                .unwrap_or_else(|| lab::QUARANTINE_ACTION.to_owned());
            story.quarantine = Some(format!(
                "mitigation: {thing} moved to thing group {} by task auto-{id}: {how}",
                lab::QUARANTINE_GROUP
            ));
        }
    }
    Ok(())
}

/// After the story: the fleet and server keep running, alerts are printed, until Ctrl-C or
/// SIGTERM.
async fn keep_running(args: &DemoArgs, lab: &Lab, narrator: &Narrator, alerts: &mut mpsc::Receiver<Alert>) {
    let state = lab.state.root().display();
    narrator.say(&format!(
        "the demo keeps running; in another terminal:\n\
         \x20   export WARDEN_ENDPOINT={} WARDEN_TOKEN={}\n\
         \x20   warden violations list; warden groups things {}\n\
         \x20   warden sim misbehave {} flood --state-dir {state}     # another device\n\
         \x20   warden sim calm {} --state-dir {state}; warden groups remove-thing {} {}   # release it\n\
         \x20 Press Ctrl-C to stop.",
        lab.endpoint,
        lab.server.api_token,
        lab::QUARANTINE_GROUP,
        thing_name(0, args.devices),
        args.misbehaving_thing(),
        lab::QUARANTINE_GROUP,
        args.misbehaving_thing(),
    ));
    let signal = crate::server::shutdown_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            _ = &mut signal => return,
            alert = alerts.recv() => match alert {
                Some(alert) => narrator.say(&alert_line(&alert)),
                None => {
                    (&mut signal).await;
                    return;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        demo: DemoArgs,
    }

    fn parse(args: &[&str]) -> Result<DemoArgs, String> {
        let mut all = vec!["demo"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).map(|c| c.demo).map_err(|e| e.to_string())
    }

    fn check(args: &[&str]) -> Result<DemoArgs, String> {
        let demo = parse(args)?;
        demo.check().map_err(|e| e.to_string())?;
        Ok(demo)
    }

    #[test]
    fn defaults_are_the_lab() {
        let d = check(&[]).unwrap();
        assert_eq!(
            (d.devices, d.period, d.baseline, d.timeout),
            (20, Duration::from_secs(5), 3, Duration::from_secs(180))
        );
        assert_eq!(d.misbehave, Misbehaviour::LargePayload);
        assert_eq!(d.misbehaving_thing(), "dev-07");
        assert!(!d.headless && !d.exit_after_quarantine);
        assert_eq!(check(&["--devices", "3"]).unwrap().misbehaving_thing(), "dev-03");
        assert_eq!(
            check(&["--devices", "150", "--thing", "dev-120"]).unwrap().misbehaving_thing(),
            "dev-120"
        );
    }

    #[test]
    fn bad_values_name_their_flag() {
        let e = check(&[
            "--devices",
            "0",
            "--period",
            "500ms",
            "--baseline",
            "0",
            "--timeout",
            "0s",
            "--misbehave",
            "beacon",
        ])
        .unwrap_err();
        assert_eq!(
            e,
            "--devices: between 1 and 1000\n--period: between 1s and 300s\n--baseline: between 1 and 100 reports\n\
             --timeout: at least 1s\n--misbehave: beacon does not raise aws:all-bytes-out, which the lab's profile \
             watches; use one of large-payload, scan, flood, flood-syn, exfil"
        );
        assert_eq!(
            check(&["--devices", "5", "--thing", "dev-07"]).unwrap_err(),
            "--thing: \"dev-07\" is not a device of the fleet (dev-01 to dev-05)"
        );
        let e = parse(&["--period", "soon"]).unwrap_err();
        assert!(e.contains("--period") && e.contains("\"soon\" is not a duration"), "{e}");
        let e = parse(&["--misbehave", "dance"]).unwrap_err();
        assert!(e.contains("--misbehave") && e.contains("unknown misbehaviour \"dance\""), "{e}");
        let e = parse(&["--mqtt-port", "70000"]).unwrap_err();
        assert!(e.contains("--mqtt-port"), "{e}");
    }

    #[test]
    fn things_are_numbered_from_one() {
        assert_eq!(thing_name(0, 20), "dev-01");
        assert_eq!(thing_name(19, 20), "dev-20");
        assert_eq!(thing_name(0, 5), "dev-01");
        assert_eq!(thing_name(99, 1000), "dev-0100");
    }

    #[test]
    fn lines_are_stamped_with_the_time_since_the_start() {
        assert_eq!(narration(Duration::from_millis(1234), "hello"), "[   1.2s] hello");
        assert_eq!(narration(Duration::from_secs(125), "later"), "[ 125.0s] later");
        assert_eq!(
            (seconds(Duration::from_secs(5)), seconds(Duration::from_millis(2500))),
            ("5s".into(), "2.5s".into())
        );
        assert_eq!(seconds(Duration::from_millis(500)), "0.5s");
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(35_000), "35,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(metric_value(&serde_json::json!({ "count": 70123 })), "70,123");
        assert_eq!(metric_value(&serde_json::json!({ "ports": [23] })), "{\"ports\":[23]}");
    }

    #[test]
    fn the_story_is_told_in_its_order() {
        let mut s = Story::default();
        assert_eq!(s.tell(), (vec![], Step::Breach));
        // Observed out of order: the quarantine and the alert before the breach is polled.
        s.quarantine = Some("quarantine".into());
        s.alert = Some("alert".into());
        assert_eq!(s.tell(), (vec![], Step::Breach));
        s.breach = Some("breach".into());
        s.violation = Some("violation".into());
        assert_eq!(
            s.tell(),
            (vec!["breach".into(), "violation".into(), "alert".into(), "quarantine".into()], Step::Denied)
        );
        assert_eq!(s.tell(), (vec![], Step::Denied), "told once");
        s.denied = Some("denied".into());
        s.still_reporting = Some("accepted".into());
        assert_eq!(s.tell(), (vec!["denied".into(), "accepted".into()], Step::Done));
    }

    #[test]
    fn a_failure_names_the_step_that_did_not_happen() {
        let p = Progress {
            step: Step::Baseline,
            since: Duration::from_millis(4_200),
            detail: "20 of 20 devices connected, 12 with 3 accepted reports".into(),
        };
        assert_eq!(
            failure(&p, "dev-07", "the demo did not come to the quarantine within 1m"),
            "the demo did not come to the quarantine within 1m: still waiting for a normal baseline from every device (since 4.2s); \
             20 of 20 devices connected, 12 with 3 accepted reports"
        );
        let p = Progress { step: Step::Denied, since: Duration::from_secs(30), detail: String::new() };
        assert_eq!(
            failure(&p, "dev-07", "interrupted"),
            "interrupted: still waiting for a telemetry publish of dev-07 refused (since 30.0s)"
        );
    }
}
