//! The Device Defender lab of README.md's section "The lab, by hand", run end to end with real
//! processes. The test runs the README's commands, and at the end checks that the README still
//! shows every command it ran (with the test's names, addresses and ports written as the README
//! writes them), so that the walkthrough cannot drift from what is tested.
//!
//! Three devices, each in its own network namespace on a private bridge, as on separate
//! hardware: each runs the real `warden-agent` (2 s interval), which counts only its namespace's
//! traffic, and an application (`mosquitto_pub`, client id `{thing}/app`) that publishes telemetry
//! on its own connection from the same namespace. The real `warden server` listens for MQTT on
//! the bridge's address only. One device sends large payloads: the webhook receives its in-alarm
//! alert, the automatic mitigation moves it to the Quarantine group whose policy denies its
//! telemetry, its metrics reports are still accepted, and when it calms down the alarm clears.
//! The two other devices never alarm.
//!
//! Needs root (network namespaces), `ip`, `mosquitto_pub`, `curl` and the `warden-agent` binary
//! next to the test's own target directory (`cargo test --workspace` builds it). Without them the
//! test is skipped, or fails when `WARDEN_REQUIRE_EXTERNAL=1` (CI).

use std::cell::RefCell;
use std::fs;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const WARDEN: &str = env!("CARGO_BIN_EXE_warden");
/// How long any one expected event may take: several 2 s report periods on a loaded machine.
const WAIT: Duration = Duration::from_secs(30);
const DEVICES: [&str; 3] = ["dev-1", "dev-2", "dev-3"];
/// The device that misbehaves.
const BAD: &str = "dev-2";
const README_SECTION: &str = "## The lab, by hand";
/// The README's fixed names for what the test makes unique per run.
const README_PREFIX: &str = "lab-";
const README_SUBNET: &str = "10.99.0";
const README_MQTT_PORT: &str = "8883";
const README_HTTP: &str = "127.0.0.1:8080";
const README_WEBHOOK: &str = "127.0.0.1:9000";
const README_AGENT: &str = "target/release/warden-agent";
/// `ListMetricValues` over every datapoint the run makes, on one page.
const RANGE: &str = "startTime=2020-01-01T00:00:00Z&endTime=2100-01-01T00:00:00Z&maxResults=250";
const RULE: &str = "OutboundBytesBehavior: alarm when aws:all-bytes-out > 35000 over 300s";
const TELEMETRY: &str = r#"{"temperature": 21.5}"#;
const QUARANTINE_POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    { "Effect": "Deny", "Action": "iot:Publish",
      "Resource": "arn:aws:iot:*:*:topic/things/${iot:Connection.Thing.ThingName}/*" }
  ]
}
"#;

#[test]
fn a_misbehaving_device_is_alerted_quarantined_and_cleared_while_the_others_stay_quiet() {
    let Some(tools) = Tools::find() else { return };
    let mut lab = Lab::new(tools);
    let mut network = Network::create(&lab);
    lab.choose_mqtt_port();
    let mut processes = Processes { dir: lab.dir.path().to_owned(), running: Vec::new() };

    // The server, with report, detection and cloud-metric periods of 2 s.
    lab.write("lab.toml", &lab.server_config());
    let server = lab.spawn_server();
    processes.running.push(("server".into(), server));
    lab.read_token();

    // The devices: a thing and a certificate each, and an agent in each namespace.
    for (n, device) in DEVICES.iter().enumerate() {
        lab.warden_each(n + 1, &["things", "create", device, "--cert-dir", device]);
    }
    for (n, device) in DEVICES.iter().enumerate() {
        let agent = lab.spawn_agent(n + 1, device);
        processes.running.push((format!("agent-{device}"), agent));
    }
    // Each agent reports from its own namespace: the server sees each thing connect from its
    // device's address, and gets its traffic datapoints (from the second report on).
    for (n, device) in DEVICES.iter().enumerate() {
        let address = lab.device_address(n + 1);
        eventually(&format!("{device} connecting from {address}"), || {
            let points = lab.metric_values(device, "aws:source-ip-address", false);
            points.iter().any(|p| p["value"]["cidrs"] == json!([address])).then_some(())
        });
        eventually(&format!("{device}'s traffic datapoints"), || {
            (!lab.metric_values(device, "aws:all-bytes-out", false).is_empty()).then_some(())
        });
    }

    // The quarantine: a group whose policy denies the device's telemetry.
    lab.warden(&["groups", "create", "Quarantine"]);
    lab.write("quarantine-policy.json", QUARANTINE_POLICY);
    lab.warden(&["policies", "create", "QuarantinePolicy", "--document", "quarantine-policy.json"]);
    lab.warden(&["policies", "attach", "QuarantinePolicy", "--group", "Quarantine"]);
    lab.warden(&["actions", "create", "QuarantineAction", "--add-to-group", "Quarantine"]);
    // Alerts go to a topic with a webhook subscriber.
    let webhook = Webhook::start();
    lab.transcript.borrow_mut().replace.push((webhook.address.clone(), README_WEBHOOK.into()));
    lab.warden(&["topics", "create", "DeviceAlerts"]);
    lab.warden(&["topics", "subscribe", "DeviceAlerts", &webhook.url]);
    lab.warden(&[
        "profiles",
        "create",
        "OutboundBytesSecProfile",
        "--rule",
        RULE,
        "--alert-topic",
        "DeviceAlerts",
        "--mitigate",
        "QuarantineAction",
        "--attach",
        "all",
    ]);
    let profile = lab.warden(&["profiles", "show", "OutboundBytesSecProfile"]);
    assert!(profile.contains("OutboundBytesBehavior: alarm when aws:all-bytes-out > 35000"), "{profile}");
    let quiet_before: Vec<usize> =
        ["dev-1", "dev-3"].iter().map(|d| lab.metric_values(d, "aws:all-bytes-out", false).len()).collect();

    // Every application may publish telemetry.
    for (n, device) in DEVICES.iter().enumerate() {
        let out = lab.run_each(n + 1, &lab.ip, &lab.telemetry(device, &["-m", TELEMETRY]));
        assert!(out.status.success(), "{device}'s telemetry is allowed: {}", text(&out.stderr));
    }

    // dev-2 misbehaves: 100 KB payloads (the README's `head -c 100000 /dev/urandom > big.bin`),
    // one connection after another, until told to stop.
    let mut big = Vec::new();
    fs::File::open("/dev/urandom").unwrap().take(100_000).read_to_end(&mut big).unwrap();
    lab.write_bytes("big.bin", &big);
    let misbehaviour = Misbehaviour::start(&lab, lab.telemetry(BAD, &["-f", "big.bin"]));

    let alarm = webhook.next();
    assert_eq!(alarm["violationEventType"], "in-alarm", "{alarm}");
    assert_eq!(alarm["thingName"], BAD, "only the misbehaving device alarms: {alarm}");
    assert_eq!(alarm["securityProfileName"], "OutboundBytesSecProfile");
    assert_eq!(
        alarm["behavior"],
        json!({
            "name": "OutboundBytesBehavior",
            "metric": "aws:all-bytes-out",
            "criteria": { "comparisonOperator": "less-than-equals", "value": { "count": 35000 }, "durationSeconds": 300 },
        })
    );
    assert!(alarm["metricValue"]["count"].as_u64().unwrap() > 35_000, "{alarm}");
    let violation = alarm["violationId"].as_str().unwrap().to_owned();

    // The automatic mitigation moves it to Quarantine; the violation is active while the device
    // keeps misbehaving.
    eventually("dev-2 in Quarantine", || {
        lab.warden(&["groups", "things", "Quarantine"]).lines().any(|l| l.trim() == BAD).then_some(())
    });
    let members = lab.warden(&["groups", "things", "Quarantine"]);
    assert!(!members.contains("dev-1") && !members.contains("dev-3"), "{members}");
    let active = lab.warden(&["violations", "list"]);
    assert!(active.contains(&violation) && active.contains(BAD), "{active}");

    // It calms down.
    let attempts = misbehaviour.stop();
    assert!(attempts > 0);

    // Its telemetry is denied: MQTT 3.1.1 has no refusal code, so the server closes the
    // connection and mosquitto_pub fails; the refusal is counted.
    let failures = lab.publish_authorization_failures();
    let out = lab.run(&lab.ip, &lab.telemetry(BAD, &["-m", TELEMETRY]));
    assert!(!out.status.success(), "quarantined telemetry must be refused");
    eventually("the refused publish counted", || {
        (lab.publish_authorization_failures() > failures).then_some(())
    });

    // Its metrics reports are still accepted: new datapoints keep arriving.
    let points = lab.metric_values(BAD, "aws:all-bytes-out", true).len();
    eventually("new dev-2 datapoints", || {
        (lab.metric_values(BAD, "aws:all-bytes-out", true).len() >= points + 2).then_some(())
    });

    // The alarm clears.
    let cleared = webhook.next();
    assert_eq!(
        (&cleared["violationEventType"], &cleared["thingName"], &cleared["violationId"]),
        (&json!("alarm-cleared"), &json!(BAD), &json!(violation)),
        "{cleared}"
    );
    assert!(cleared["metricValue"]["count"].as_u64().unwrap() <= 35_000, "{cleared}");
    let active = lab.warden(&["violations", "list"]);
    assert!(!active.contains(&violation), "{active}");
    let delivered = eventually("both alerts counted as delivered", || {
        let topic = lab.warden(&["topics", "show", "DeviceAlerts"]);
        let row = topic.lines().find(|l| l.contains(&webhook.url)).map(str::to_owned);
        row.filter(|r| r.split_whitespace().skip_while(|w| *w != webhook.url).nth(1) == Some("2"))
    });
    let failed = delivered.split_whitespace().skip_while(|w| *w != webhook.url).nth(2);
    assert_eq!(failed, Some("0"), "{delivered}");
    let history = lab.warden(&["violations", "history", "--thing", BAD]);
    for event in ["in-alarm", "alarm-cleared"] {
        assert!(history.lines().any(|l| l.contains(event) && l.contains(&violation)), "{history}");
    }

    // Out of quarantine, its telemetry is allowed again.
    lab.warden(&["groups", "remove-thing", "Quarantine", BAD]);
    let out = lab.run(&lab.ip, &lab.telemetry(BAD, &["-m", TELEMETRY]));
    assert!(out.status.success(), "released telemetry is allowed: {}", text(&out.stderr));

    // The two others were judged all along, and never alarmed.
    for (device, before) in ["dev-1", "dev-3"].iter().zip(quiet_before) {
        let points = lab.metric_values(device, "aws:all-bytes-out", false);
        assert!(points.len() >= before + 3, "{device} kept reporting: {points:?}");
        assert!(points.iter().all(|p| p["value"]["count"].as_u64().unwrap() <= 35_000), "{points:?}");
    }
    let all = lab.warden(&["violations", "history"]);
    assert!(!all.contains("dev-1") && !all.contains("dev-3"), "{all}");
    webhook.assert_no_more();

    // Tear down as the README does; the guards would do the same on a panic.
    processes.stop_all();
    network.delete(&lab);
    lab.transcript.borrow().check_readme();
}

/// The external programs the lab needs, or `None` (after the skip message) when one is missing.
struct Tools {
    ip: PathBuf,
    mosquitto_pub: PathBuf,
    curl: PathBuf,
    agent: PathBuf,
}

impl Tools {
    fn find() -> Option<Tools> {
        if !is_root() {
            return skip("the lab test needs root for network namespaces");
        }
        let ip = warden_testkit::require_external("ip")?;
        let mosquitto_pub = warden_testkit::require_external("mosquitto_pub")?;
        let curl = warden_testkit::require_external("curl")?;
        // The test executable is target/{profile}/deps/it-HASH; workspace binaries are in
        // target/{profile}.
        let exe = std::env::current_exe().unwrap();
        let agent = exe.parent().and_then(Path::parent).unwrap().join("warden-agent");
        if !agent.is_file() {
            return skip(&format!(
                "{} is not built (cargo test --workspace builds it; or cargo build -p warden-agent)",
                agent.display()
            ));
        }
        Some(Tools { ip, mosquitto_pub, curl, agent })
    }
}

/// Skips the test with a message, or fails it when `WARDEN_REQUIRE_EXTERNAL=1`, as
/// `warden_testkit::require_external` does for a missing program.
fn skip<T>(why: &str) -> Option<T> {
    if std::env::var_os("WARDEN_REQUIRE_EXTERNAL").is_some_and(|v| v == "1") {
        panic!("WARDEN_REQUIRE_EXTERNAL=1 but {why}");
    }
    eprintln!("skipping: {why}");
    None
}

/// The effective user id from `/proc/self/status`, which needs no libc binding.
fn is_root() -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .is_some_and(|effective| effective == "0")
}

/// One run of the lab: a scratch dir (the README's working directory), the names and addresses
/// unique to this run, and the transcript of every command run.
struct Lab {
    dir: tempfile::TempDir,
    ip: PathBuf,
    mosquitto_pub: PathBuf,
    curl: PathBuf,
    agent: PathBuf,
    /// `wl{pid}-`: namespaces, veths and the bridge of this run (the README's `lab-`). Short,
    /// because interface names have at most 15 bytes.
    prefix: String,
    /// The first three octets of the bridge's /24, e.g. `10.142.57`.
    subnet: String,
    mqtt_port: u16,
    http_port: u16,
    /// The API token, once the server has written it.
    token: RefCell<String>,
    transcript: RefCell<Transcript>,
}

impl Lab {
    fn new(tools: Tools) -> Lab {
        let pid = std::process::id();
        sweep_stale(&tools.ip);
        let prefix = format!("wl{pid}-");
        let subnet = free_subnet(&tools.ip, pid);
        let http_port = warden_testkit::free_port();
        let mut transcript = Transcript::default();
        transcript.replace.extend([
            (prefix.clone(), README_PREFIX.to_owned()),
            (format!("{subnet}."), format!("{README_SUBNET}.")),
            (format!("127.0.0.1:{http_port}"), README_HTTP.to_owned()),
        ]);
        transcript.words.extend([
            (WARDEN.to_owned(), "warden".into()),
            (tools.ip.display().to_string(), "ip".into()),
            (tools.mosquitto_pub.display().to_string(), "mosquitto_pub".into()),
            (tools.curl.display().to_string(), "curl".into()),
            (tools.agent.display().to_string(), README_AGENT.into()),
        ]);
        Lab {
            dir: tempfile::tempdir().unwrap(),
            ip: tools.ip,
            mosquitto_pub: tools.mosquitto_pub,
            curl: tools.curl,
            agent: tools.agent,
            prefix,
            subnet,
            mqtt_port: 0,
            http_port,
            token: RefCell::new(String::new()),
            transcript: RefCell::new(transcript),
        }
    }

    /// A free port on the bridge's address, once the bridge has it: the MQTT listener binds
    /// that address only, so a server on 0.0.0.0:8883 elsewhere on the machine would clash.
    fn choose_mqtt_port(&mut self) {
        let listener = TcpListener::bind((self.server_address().parse::<Ipv4Addr>().unwrap(), 0)).unwrap();
        self.mqtt_port = listener.local_addr().unwrap().port();
        let transcript = self.transcript.get_mut();
        transcript.words.push((self.mqtt_port.to_string(), README_MQTT_PORT.into()));
        transcript.replace.push((
            format!("{README_SUBNET}.1:{}", self.mqtt_port),
            format!("{README_SUBNET}.1:{README_MQTT_PORT}"),
        ));
    }

    /// The API token the server wrote at its first start; the README reads it with `cat`.
    fn read_token(&self) {
        let token = fs::read_to_string(self.dir.path().join("warden-data/api-token")).unwrap();
        let token = token.trim().to_owned();
        self.transcript.borrow_mut().replace.push((
            quote(&format!("Authorization: Bearer {token}")),
            "\"Authorization: Bearer $(cat warden-data/api-token)\"".into(),
        ));
        self.token.replace(token);
    }

    fn namespace(&self, device: &str) -> String {
        format!("{}{device}", self.prefix)
    }

    fn server_address(&self) -> String {
        format!("{}.1", self.subnet)
    }

    /// Devices are `.11`, `.12` and `.13`.
    fn device_address(&self, n: usize) -> String {
        format!("{}.1{n}", self.subnet)
    }

    fn server_config(&self) -> String {
        let (mqtt, http, server) = (self.mqtt_port, self.http_port, self.server_address());
        format!(
            "[mqtt]\nlisten = \"{server}:{mqtt}\"\nserver_names = [\"{server}\"]\n\n\
             [http]\nlisten = \"127.0.0.1:{http}\"\n\n\
             [ingest]\nmin_report_period = \"1s\"\n\n\
             [detect]\nperiod = \"2s\"\n\n\
             [cloud_metrics]\nperiod = \"2s\"\n"
        )
    }

    fn write(&self, name: &str, content: &str) {
        self.write_bytes(name, content.as_bytes());
        self.transcript.borrow_mut().file(name, content);
    }

    fn write_bytes(&self, name: &str, content: &[u8]) {
        fs::write(self.dir.path().join(name), content).unwrap();
    }

    /// A command in the lab's directory, recorded in the transcript; `each` is the device
    /// number of a command the README runs in a loop over the devices.
    fn command(&self, program: &Path, args: &[String], each: Option<usize>) -> Command {
        self.record(program, args, each);
        let mut command = Command::new(program);
        command.args(args).current_dir(self.dir.path()).env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            command.env("PATH", path);
        }
        // Plain logs, to print when the test fails.
        command.env("NO_COLOR", "1");
        command
    }

    fn record(&self, program: &Path, args: &[String], each: Option<usize>) {
        let mut argv = vec![program.display().to_string()];
        argv.extend(args.iter().cloned());
        self.transcript.borrow_mut().record(&argv, each);
    }

    fn run(&self, program: &Path, args: &[String]) -> Output {
        self.command(program, args, None).stdin(Stdio::null()).output().unwrap()
    }

    fn run_each(&self, n: usize, program: &Path, args: &[String]) -> Output {
        self.command(program, args, Some(n)).stdin(Stdio::null()).output().unwrap()
    }

    /// Runs `ip ARGS` and checks it succeeded.
    fn ip(&self, args: &[&str], each: Option<usize>) {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let out = self.command(&self.ip, &args, each).stdin(Stdio::null()).output().unwrap();
        assert!(out.status.success(), "ip {}: {}", args.join(" "), text(&out.stderr));
    }

    /// Runs `warden ARGS` as the README does: in the lab's directory, where the CLI finds the
    /// token in `./warden-data`; only the endpoint (a free port, not 8080) comes from the
    /// environment. Returns stdout.
    fn warden(&self, args: &[&str]) -> String {
        self.warden_run(args, None)
    }

    fn warden_each(&self, n: usize, args: &[&str]) -> String {
        self.warden_run(args, Some(n))
    }

    fn warden_run(&self, args: &[&str], each: Option<usize>) -> String {
        let mut argv = vec![WARDEN.to_owned()];
        argv.extend(args.iter().map(|a| a.to_string()));
        self.transcript.borrow_mut().record(&argv, each);
        let endpoint = format!("http://127.0.0.1:{}", self.http_port);
        let run = crate::warden_with(args, None, Some(self.dir.path()), &[("WARDEN_ENDPOINT", &endpoint)]);
        run.success().stdout
    }

    /// `warden server --config lab.toml`, once its banner says it is running.
    fn spawn_server(&self) -> Child {
        let args = ["server", "--config", "lab.toml"].map(String::from);
        let log = fs::File::create(self.dir.path().join("server.log")).unwrap();
        let mut child =
            self.command(Path::new(WARDEN), &args, None).stdout(Stdio::piped()).stderr(log).spawn().unwrap();
        // Read the banner on a thread, so that a server that hangs fails the test after WAIT.
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let deadline = Instant::now() + WAIT;
        let mut banner = String::new();
        loop {
            match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line.starts_with("  warden-agent") => break,
                Ok(line) => banner.push_str(&format!("{line}\n")),
                Err(_) => {
                    let _ = child.kill();
                    let log = fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
                    panic!("the server did not start:\n{banner}\nserver.log:\n{log}");
                }
            }
        }
        let listening = format!("MQTT/TLS  {}:{}", self.server_address(), self.mqtt_port);
        assert!(banner.contains(&listening), "{banner}");
        child
    }

    /// The agent of device `n`, in its namespace, logging to `agent-{device}.log`.
    fn spawn_agent(&self, n: usize, device: &str) -> Child {
        let ns = self.namespace(device);
        let (server, port) = (self.server_address(), self.mqtt_port.to_string());
        let (ca, cert, key, state) = (
            format!("{device}/ca.pem"),
            format!("{device}/{device}.crt"),
            format!("{device}/{device}.key"),
            format!("{device}/state"),
        );
        let agent = self.agent.display().to_string();
        let args: Vec<String> = [
            "netns",
            "exec",
            &ns,
            &agent,
            "--thing",
            device,
            "--endpoint",
            &server,
            "--port",
            &port,
            "--ca",
            &ca,
            "--cert",
            &cert,
            "--key",
            &key,
            "--state-dir",
            &state,
            "--interval",
            "2s",
        ]
        .map(String::from)
        .into();
        let log = fs::File::create(self.dir.path().join(format!("agent-{device}.log"))).unwrap();
        self.command(&self.ip, &args, Some(n))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    /// `ip netns exec NS mosquitto_pub ...` for `device`'s application: its own connection
    /// (client id `{thing}/app`) with the device's certificate, QoS 1, then `payload`.
    fn telemetry(&self, device: &str, payload: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = [
            "netns".into(),
            "exec".into(),
            self.namespace(device),
            self.mosquitto_pub.display().to_string(),
            "--cafile".into(),
            format!("{device}/ca.pem"),
            "--cert".into(),
            format!("{device}/{device}.crt"),
            "--key".into(),
            format!("{device}/{device}.key"),
            "-h".into(),
            self.server_address(),
            "-p".into(),
            self.mqtt_port.to_string(),
            "-i".into(),
            format!("{device}/app"),
            "-t".into(),
            format!("things/{device}/telemetry"),
            "-q".into(),
            "1".into(),
        ]
        .into();
        args.extend(payload.iter().map(|p| p.to_string()));
        args
    }

    /// `curl -s [-H 'Authorization: Bearer TOKEN'] URL`; only recorded when the README shows it.
    fn curl(&self, path: &str, authorized: bool, record: bool) -> String {
        let mut args = vec!["-s".to_owned()];
        if authorized {
            args.extend(["-H".into(), format!("Authorization: Bearer {}", self.token.borrow())]);
        }
        args.push(format!("http://127.0.0.1:{}{path}", self.http_port));
        let out = if record {
            self.run(&self.curl, &args)
        } else {
            Command::new(&self.curl).args(&args).stdin(Stdio::null()).output().unwrap()
        };
        assert!(out.status.success(), "curl {path}: {}", text(&out.stderr));
        text(&out.stdout)
    }

    /// `ListMetricValues` of `thing`'s `metric`: every datapoint, oldest first.
    fn metric_values(&self, thing: &str, metric: &str, record: bool) -> Vec<Value> {
        let reply =
            self.curl(&format!("/metric-values?thingName={thing}&metricName={metric}&{RANGE}"), true, record);
        let reply: Value = serde_json::from_str(&reply).unwrap_or_else(|e| panic!("{e}: {reply}"));
        reply["metricDatumList"].as_array().unwrap_or_else(|| panic!("{reply}")).clone()
    }

    /// `warden_mqtt_authorization_failures_total{kind="publish"}` from `/metrics`.
    fn publish_authorization_failures(&self) -> u64 {
        let metrics = self.curl("/metrics", false, true);
        let name = "warden_mqtt_authorization_failures_total{kind=\"publish\"} ";
        let line = metrics.lines().find_map(|l| l.strip_prefix(name));
        line.and_then(|n| n.trim().parse().ok()).unwrap_or_else(|| panic!("no {name}in\n{metrics}"))
    }
}

/// A text for messages.
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Polls `check` until it returns a value, or fails naming `what` after [`WAIT`]. The events
/// happen in other processes, so there is nothing to wait on but their effects.
fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(200));
    }
}

/// Deletes the namespaces and bridges of earlier runs whose process is gone: a run killed with
/// SIGKILL (a CI timeout) never ran its guard. Runs that are alive are left alone.
fn sweep_stale(ip: &Path) {
    let list = |args: &[&str]| text(&Command::new(ip).args(args).output().unwrap().stdout);
    let stale = |name: &str| {
        let pid = name.strip_prefix("wl").and_then(|rest| rest.split_once('-')).map(|(pid, _)| pid);
        pid.is_some_and(|pid| pid.parse::<u32>().is_ok() && !Path::new(&format!("/proc/{pid}")).exists())
    };
    for ns in list(&["netns", "list"]).lines().filter_map(|l| l.split_whitespace().next()) {
        if stale(ns) {
            let _ = Command::new(ip).args(["netns", "del", ns]).status();
        }
    }
    // `ip -o link show type bridge`: "7: wl123-br: <BROADCAST,...".
    for line in list(&["-o", "link", "show", "type", "bridge"]).lines() {
        let name = line.split(": ").nth(1).unwrap_or_default();
        if stale(name) {
            let _ = Command::new(ip).args(["link", "del", name]).status();
        }
    }
}

/// A private /24 for this run, `10.X.Y`, derived from the pid so that concurrent runs differ,
/// and not overlapping an address or route the machine already has.
fn free_subnet(ip: &Path, pid: u32) -> String {
    let used = text(&Command::new(ip).args(["-4", "-o", "addr"]).output().unwrap().stdout)
        + &text(&Command::new(ip).args(["-4", "route"]).output().unwrap().stdout);
    (0..64)
        .map(|i| format!("10.{}.{}", 100 + (pid / 256) % 100, (pid + i) % 256))
        .find(|subnet| !used.contains(&format!("{subnet}.")))
        .expect("a free 10.x.y.0/24")
}

/// The bridge and the devices' namespaces; deleted on drop, also when the test panics.
struct Network {
    ip: PathBuf,
    bridge: String,
    namespaces: Vec<String>,
}

impl Network {
    /// `lab-br` with the server's address, and per device a namespace whose `eth0` is one end
    /// of a veth pair whose other end is on the bridge.
    fn create(lab: &Lab) -> Network {
        let bridge = format!("{}br", lab.prefix);
        let mut network = Network { ip: lab.ip.clone(), bridge: bridge.clone(), namespaces: Vec::new() };
        lab.ip(&["link", "add", &bridge, "type", "bridge"], None);
        lab.ip(&["addr", "add", &format!("{}/24", lab.server_address()), "dev", &bridge], None);
        lab.ip(&["link", "set", &bridge, "up"], None);
        for (i, device) in DEVICES.iter().enumerate() {
            let (n, ns) = (i + 1, lab.namespace(device));
            let veth = format!("{}veth{n}", lab.prefix);
            lab.ip(&["netns", "add", &ns], Some(n));
            network.namespaces.push(ns.clone());
            lab.ip(&["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns], Some(n));
            lab.ip(&["link", "set", &veth, "master", &bridge, "up"], Some(n));
            let address = format!("{}/24", lab.device_address(n));
            lab.ip(&["-n", &ns, "addr", "add", &address, "dev", "eth0"], Some(n));
            lab.ip(&["-n", &ns, "link", "set", "eth0", "up"], Some(n));
        }
        network
    }

    /// Deletes everything, as the README's last step does.
    fn delete(&mut self, lab: &Lab) {
        for (i, ns) in self.namespaces.drain(..).enumerate() {
            lab.ip(&["netns", "del", &ns], Some(i + 1));
        }
        lab.ip(&["link", "del", &self.bridge], None);
        self.bridge.clear();
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // Deleting a namespace also deletes the veth pair in it.
        for ns in &self.namespaces {
            let _ = Command::new(&self.ip).args(["netns", "del", ns]).stderr(Stdio::null()).status();
        }
        if !self.bridge.is_empty() {
            let _ = Command::new(&self.ip).args(["link", "del", &self.bridge]).stderr(Stdio::null()).status();
        }
    }
}

/// The lab's long-running processes (server, agents), with their logs in the lab's directory.
/// Dropping kills them; when the test failed, the end of each log is printed first.
struct Processes {
    dir: PathBuf,
    running: Vec<(String, Child)>,
}

impl Processes {
    /// Stops the agents, then the server with SIGTERM, as a user would; the server must exit
    /// cleanly.
    fn stop_all(&mut self) {
        for (name, mut child) in self.running.drain(..).rev() {
            if name == "server" {
                let status = terminate(&mut child);
                assert!(status.success(), "the server exited with {status}");
            } else {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for (name, child) in &mut self.running {
            let _ = child.kill();
            let _ = child.wait();
            if thread::panicking() {
                let log = fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("--- {name}.log (end) ---");
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}

/// SIGTERM, then the exit status (SIGKILL after [`WAIT`]).
fn terminate(child: &mut Child) -> ExitStatus {
    let _ = Command::new("kill").args(["-s", "TERM", &child.id().to_string()]).status();
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return child.wait().unwrap();
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// The misbehaving application: `mosquitto_pub -f big.bin` again and again on a thread, until
/// stopped (dropping stops it too). Once the device is quarantined each publish is refused and
/// its connection closed, but its 100 KB have been sent by then, so the device stays in alarm
/// for as long as this runs.
struct Misbehaviour {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<u32>>,
}

impl Misbehaviour {
    fn start(lab: &Lab, args: Vec<String>) -> Misbehaviour {
        // Recorded once; the thread repeats the same command.
        lab.record(&lab.ip, &args, None);
        let (ip, dir) = (lab.ip.clone(), lab.dir.path().to_owned());
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = thread::spawn(move || {
            let mut attempts = 0;
            while !stopped.load(Ordering::Relaxed) {
                let _ = Command::new(&ip)
                    .args(&args)
                    .current_dir(&dir)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
                attempts += 1;
                // As the README's loop does: a pause that leaves the machine's cores to the
                // server and agents, while still sending far more than 35,000 bytes a period.
                thread::sleep(Duration::from_millis(250));
            }
            attempts
        });
        Misbehaviour { stop, thread: Some(thread) }
    }

    /// Stops, and returns how many payloads were attempted.
    fn stop(mut self) -> u32 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Misbehaviour {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A webhook receiver on 127.0.0.1: each POST's SNS envelope, whose `Message` is the alert.
struct Webhook {
    /// `127.0.0.1:PORT`, the README's `127.0.0.1:9000`.
    address: String,
    url: String,
    alerts: mpsc::Receiver<Value>,
}

impl Webhook {
    /// Serves on a thread that ends at the first request after the receiver is dropped.
    fn start() -> Webhook {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let (tx, alerts) = mpsc::channel();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Some(body) = stream.ok().and_then(|s| receive(s).ok()) else { continue };
                let message = serde_json::from_str::<Value>(&body)
                    .ok()
                    .and_then(|envelope| serde_json::from_str(envelope["Message"].as_str()?).ok())
                    .unwrap_or_else(|| json!({ "unreadable": body }));
                if tx.send(message).is_err() {
                    return;
                }
            }
        });
        Webhook { url: format!("http://{address}/alerts"), address, alerts }
    }

    /// The next alert.
    fn next(&self) -> Value {
        self.alerts.recv_timeout(WAIT).expect("no alert arrived")
    }

    fn assert_no_more(&self) {
        if let Ok(alert) = self.alerts.try_recv() {
            panic!("unexpected alert: {alert}");
        }
    }
}

/// Reads one HTTP request and answers 200; returns its body.
fn receive(stream: TcpStream) -> std::io::Result<String> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream);
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    reader.get_mut().write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Every command the test ran and file it wrote, as the README writes them: the run's unique
/// names, addresses and ports replaced by the README's, program paths by their names, and in
/// commands the README runs in a `for i in 1 2 3` loop, the device's number by `$i`.
#[derive(Default)]
struct Transcript {
    /// Text replaced in the rendered command line, in order.
    replace: Vec<(String, String)>,
    /// Whole arguments replaced (program paths).
    words: Vec<(String, String)>,
    lines: Vec<String>,
    files: Vec<(String, String)>,
}

impl Transcript {
    fn record(&mut self, argv: &[String], each: Option<usize>) {
        let words: Vec<String> = argv
            .iter()
            .map(|arg| match self.words.iter().find(|(from, _)| from == arg) {
                Some((_, to)) => to.clone(),
                None => quote(arg),
            })
            .collect();
        let mut line = self.rewrite(&words.join(" "));
        if let Some(n) = each {
            for (from, to) in [
                (format!("dev-{n}"), "dev-$i".to_owned()),
                (format!("veth{n}"), "veth$i".to_owned()),
                (format!("{README_SUBNET}.1{n}/"), format!("{README_SUBNET}.1$i/")),
            ] {
                line = line.replace(&from, &to);
            }
        }
        if !self.lines.contains(&line) {
            self.lines.push(line);
        }
    }

    fn file(&mut self, name: &str, content: &str) {
        let content = self.rewrite(content);
        self.files.push((name.to_owned(), content));
    }

    fn rewrite(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for (from, to) in &self.replace {
            text = text.replace(from, to);
        }
        text
    }

    /// Checks that README.md's section shows every command (a line that starts with it, after
    /// an optional `sudo`, and goes on with nothing or a shell operator) and every file.
    fn check_readme(&self) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
        let readme = fs::read_to_string(&path).unwrap();
        // Without the section, everything is reported missing.
        let start = readme.find(&format!("\n{README_SECTION}\n")).map_or(readme.len(), |at| at + 1);
        let section = &readme[start..];
        let section =
            &section[..section.get(1..).and_then(|s| s.find("\n## ")).map_or(section.len(), |end| end + 1)];
        let joined = section.replace("\\\n", " ");
        let readme_lines: Vec<String> = joined
            .lines()
            .map(collapse)
            .map(|l| l.strip_prefix("sudo ").map(str::to_owned).unwrap_or(l))
            .collect();
        let shows = |command: &str| {
            readme_lines.iter().any(|line| {
                line.strip_prefix(command).is_some_and(|rest| {
                    rest.is_empty()
                        || [" &", " >", " 2>", " |", " ;", ";", " #"].iter().any(|op| rest.starts_with(op))
                })
            })
        };
        let mut missing: Vec<String> = self.lines.iter().map(|l| collapse(l)).filter(|l| !shows(l)).collect();
        let whole = collapse(&joined);
        for (name, content) in &self.files {
            if !whole.contains(&collapse(content)) {
                missing.push(format!("the file {name}:\n{content}"));
            }
        }
        assert!(
            missing.is_empty(),
            "README.md's \"{}\" does not show what the test ran; update one or the other:\n{}",
            &README_SECTION[3..],
            missing.join("\n")
        );
    }
}

/// Whitespace runs as one space, trimmed.
fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// An argument as a shell user types it: bare when that is safe, else in single quotes.
fn quote(arg: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c);
    if !arg.is_empty() && arg.chars().all(safe) {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}
