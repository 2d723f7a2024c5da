//! Configuration: a TOML file, command-line flags and `WARDEN_AGENT_*` environment variables,
//! merged (flag > environment > file > default) and compiled into a validated [`Config`].
//!
//! Every problem is reported at once with the key that caused it (`interval: ...`,
//! `custom_metrics[1].type: ...`), so a device owner fixes a file in one round trip.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;
use warden_wire::{Format, Names, is_valid_metric_name, is_valid_thing_name};

/// AWS IoT throttles devices that report more often than this (spec §1.9).
pub const AWS_MIN_INTERVAL: Duration = Duration::from_secs(300);
/// AWS IoT's largest MQTT keepalive; our default never exceeds it.
const AWS_MAX_KEEPALIVE: Duration = Duration::from_secs(1200);

#[derive(Debug, Parser)]
#[command(
    name = "warden-agent",
    version,
    about = "Warden device agent: publishes AWS IoT Device Defender metrics reports over MQTT/TLS.",
    long_about = "Warden device agent: reads network metrics from Linux (/proc/net) and publishes an AWS IoT \
Device Defender metrics report every interval to $aws/things/THING/defender/metrics/{json,cbor} over \
MQTT with TLS client-certificate authentication. Works with a Warden server or AWS IoT Core.\n\n\
Settings come from flags, then WARDEN_AGENT_* environment variables, then the TOML file given with \
--config, then defaults. Every flag has a TOML key of the same name with '_' for '-' \
(e.g. --client-id / client_id / WARDEN_AGENT_CLIENT_ID). Custom metrics are set in the file only.",
    after_help = "Try it without a broker or certificates:\n  warden-agent --dry-run --interval 1s --format json --names long"
)]
pub struct Cli {
    /// TOML configuration file.
    #[arg(long, env = "WARDEN_AGENT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Take a baseline sample, wait one interval, write one report to stdout and exit.
    /// Needs no broker or certificates. JSON is written as text, CBOR as raw bytes.
    #[arg(long)]
    pub dry_run: bool,

    /// Thing name (1-128 of a-z A-Z 0-9 : _ -); the report topic is $aws/things/THING/....
    #[arg(long, env = "WARDEN_AGENT_THING")]
    pub thing: Option<String>,

    /// MQTT client id; "{thing}" is replaced by the thing name. Default "{thing}". Use
    /// "{thing}/agent" when the device's application holds its own connection as the thing (Warden).
    #[arg(long, env = "WARDEN_AGENT_CLIENT_ID")]
    pub client_id: Option<String>,

    /// MQTT broker host name or IP address.
    #[arg(long, env = "WARDEN_AGENT_ENDPOINT")]
    pub endpoint: Option<String>,

    /// MQTT/TLS port. Default 8883 (use 443 with --alpn x-amzn-mqtt-ca on AWS IoT if 8883 is blocked).
    #[arg(long, env = "WARDEN_AGENT_PORT")]
    pub port: Option<u16>,

    /// CA certificate(s) (PEM) that the server certificate must chain to.
    #[arg(long, env = "WARDEN_AGENT_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,

    /// Device certificate (PEM), presented for TLS client authentication.
    #[arg(long, env = "WARDEN_AGENT_CERT", value_name = "FILE")]
    pub cert: Option<PathBuf>,

    /// Device private key (PEM: PKCS#8, PKCS#1 RSA or SEC1 EC).
    #[arg(long, env = "WARDEN_AGENT_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,

    /// Name the server certificate must carry. Default: the endpoint.
    #[arg(long, env = "WARDEN_AGENT_SERVER_NAME")]
    pub server_name: Option<String>,

    /// TLS ALPN protocol to offer, e.g. x-amzn-mqtt-ca for AWS IoT on port 443. Default: none.
    #[arg(long, env = "WARDEN_AGENT_ALPN")]
    pub alpn: Option<String>,

    /// Report encoding: json or cbor. Default cbor (smallest).
    #[arg(long, env = "WARDEN_AGENT_FORMAT")]
    pub format: Option<String>,

    /// Report key names: long or short. Default short (smallest).
    #[arg(long, env = "WARDEN_AGENT_NAMES")]
    pub names: Option<String>,

    /// Time between reports, e.g. 300s or 5m. Default 300s; shorter is allowed but AWS IoT throttles it.
    #[arg(long, env = "WARDEN_AGENT_INTERVAL")]
    pub interval: Option<String>,

    /// Up to this much random delay is added to each interval so a fleet does not report in
    /// lockstep. Default: 2% of the interval, at most 10s.
    #[arg(long, env = "WARDEN_AGENT_JITTER")]
    pub jitter: Option<String>,

    /// MQTT keepalive. Default: interval + 2 x jitter + 30s, at most 1200s (the AWS IoT maximum),
    /// so reports alone keep the connection alive and no PINGREQ is sent between them.
    #[arg(long, env = "WARDEN_AGENT_KEEPALIVE")]
    pub keepalive: Option<String>,

    /// MQTT QoS of reports: 0 (default, fewest bytes) or 1 (acknowledged by the broker).
    #[arg(long, env = "WARDEN_AGENT_QOS")]
    pub qos: Option<u8>,

    /// MQTT protocol version: 3.1.1 (default) or 5.
    #[arg(long, env = "WARDEN_AGENT_MQTT_VERSION")]
    pub mqtt_version: Option<String>,

    /// Subscribe to the /accepted and /rejected replies and log rejections: true (default) or
    /// false (saves the reply bytes on very constrained links).
    #[arg(long, env = "WARDEN_AGENT_REPLIES")]
    pub replies: Option<bool>,

    /// Most entries listed per port or connection list; `total` still counts all. Default 50.
    #[arg(long, env = "WARDEN_AGENT_MAX_LIST_ENTRIES")]
    pub max_list_entries: Option<usize>,

    /// Count loopback traffic and connections too. Default false.
    #[arg(long, env = "WARDEN_AGENT_INCLUDE_LOOPBACK")]
    pub include_loopback: Option<bool>,

    /// Directory for the agent's state (the last report id). Default /var/lib/warden-agent.
    #[arg(long, env = "WARDEN_AGENT_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Log level: error, warn, info (default), debug or trace.
    #[arg(long, env = "WARDEN_AGENT_LOG_LEVEL")]
    pub log_level: Option<String>,

    /// Exit after publishing this many reports (for tests and benchmarks). Default: run forever.
    #[arg(long, env = "WARDEN_AGENT_MAX_REPORTS")]
    pub max_reports: Option<u64>,
}

/// The TOML file. Unknown keys are errors: a misspelt key silently ignored is a bug waiting.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    thing: Option<String>,
    client_id: Option<String>,
    endpoint: Option<String>,
    port: Option<u16>,
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    server_name: Option<String>,
    alpn: Option<String>,
    format: Option<String>,
    names: Option<String>,
    interval: Option<String>,
    jitter: Option<String>,
    keepalive: Option<String>,
    qos: Option<u8>,
    mqtt_version: Option<String>,
    replies: Option<bool>,
    max_list_entries: Option<usize>,
    include_loopback: Option<bool>,
    state_dir: Option<PathBuf>,
    log_level: Option<String>,
    max_reports: Option<u64>,
    #[serde(default)]
    custom_metrics: Vec<FileCustomMetric>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCustomMetric {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    command: Option<CommandSpec>,
    file: Option<PathBuf>,
    timeout: Option<String>,
}

/// A command as a shell line (`"cat /sys/..."`, run with `/bin/sh -c`) or an argv array.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum CommandSpec {
    Shell(String),
    Argv(Vec<String>),
}

/// The validated configuration the agent runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub dry_run: bool,
    pub mqtt: Option<MqttConfig>,
    pub format: Format,
    pub names: Names,
    pub interval: Duration,
    pub jitter: Duration,
    pub max_list_entries: usize,
    pub include_loopback: bool,
    pub state_dir: PathBuf,
    pub log_level: tracing::Level,
    pub max_reports: Option<u64>,
    pub custom_metrics: Vec<CustomMetricConfig>,
}

/// Connection settings; absent in dry-run mode, which needs none.
#[derive(Debug, Clone)]
pub struct MqttConfig {
    pub thing: String,
    pub client_id: String,
    pub endpoint: String,
    pub port: u16,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub server_name: String,
    pub alpn: Option<String>,
    pub keepalive: Duration,
    pub qos: u8,
    pub mqtt5: bool,
    pub replies: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustomMetricType {
    Number,
    NumberList,
    StringList,
    IpAddressList,
}

#[derive(Debug, Clone)]
pub enum CustomMetricSource {
    Command(CommandSpec),
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct CustomMetricConfig {
    pub name: String,
    pub kind: CustomMetricType,
    pub source: CustomMetricSource,
    pub timeout: Duration,
}

/// All configuration problems, one per line, each starting with its key.
#[derive(Debug)]
pub struct ConfigError(pub Vec<String>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration:")?;
        for problem in &self.0 {
            writeln!(f, "  {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Merges the flags and environment (already in `cli`) with the file they name.
    pub fn load(cli: Cli) -> Result<Config, ConfigError> {
        let file = match &cli.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        compile(cli, file)
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(vec![format!("config: cannot read {}: {e}", path.display())]))?;
    // toml's message names the key and shows the line: "unknown field `intervall`, expected ...".
    toml::from_str(&text).map_err(|e| ConfigError(vec![format!("config: {}: {e}", path.display())]))
}

/// Takes the flag/env value if set, else the file's.
macro_rules! merge {
    ($cli:ident, $file:ident, $($field:ident),+) => {
        $( let $field = $cli.$field.clone().or($file.$field.clone()); )+
    };
}

fn compile(cli: Cli, file: FileConfig) -> Result<Config, ConfigError> {
    let mut problems = Vec::new();
    merge!(
        cli,
        file,
        thing,
        client_id,
        endpoint,
        port,
        ca,
        cert,
        key,
        server_name,
        alpn,
        format,
        names,
        interval,
        jitter,
        keepalive,
        qos,
        mqtt_version,
        replies,
        max_list_entries,
        include_loopback,
        state_dir,
        log_level,
        max_reports
    );

    let format = parse_or(&mut problems, "format", format, Format::Cbor, |s| s.parse());
    let names = parse_or(&mut problems, "names", names, Names::Short, |s| s.parse());
    let interval = parse_or(&mut problems, "interval", interval, AWS_MIN_INTERVAL, duration);
    if interval < Duration::from_secs(1) {
        problems.push(format!("interval: must be at least 1s, got {}", humantime::format_duration(interval)));
    }
    let default_jitter = (interval / 50).min(Duration::from_secs(10));
    let jitter = parse_or(&mut problems, "jitter", jitter, default_jitter, duration);
    if jitter >= interval {
        problems.push("jitter: must be shorter than the interval".to_owned());
    }
    let default_keepalive = (interval + 2 * jitter + Duration::from_secs(30)).min(AWS_MAX_KEEPALIVE);
    let keepalive = parse_or(&mut problems, "keepalive", keepalive, default_keepalive, duration);
    if !(Duration::from_secs(5)..=Duration::from_secs(65535)).contains(&keepalive) {
        problems.push("keepalive: must be between 5s and 65535s".to_owned());
    }
    let qos = qos.unwrap_or(0);
    if qos > 1 {
        problems.push(format!("qos: must be 0 or 1, got {qos}"));
    }
    let mqtt5 = match mqtt_version.as_deref() {
        None | Some("3.1.1") | Some("3") | Some("4") => false,
        Some("5") | Some("5.0") => true,
        Some(other) => {
            problems.push(format!("mqtt_version: must be \"3.1.1\" or \"5\", got \"{other}\""));
            false
        }
    };
    let max_list_entries = max_list_entries.unwrap_or(50);
    if max_list_entries == 0 {
        problems.push("max_list_entries: must be at least 1".to_owned());
    }
    let log_level = parse_or(&mut problems, "log_level", log_level, tracing::Level::INFO, |s| {
        s.parse::<tracing::Level>().map_err(|_| "must be error, warn, info, debug or trace".to_owned())
    });

    let mqtt = if cli.dry_run {
        None
    } else {
        let mut require = |key: &str, flag: &str, v: Option<String>| {
            if v.is_none() {
                problems.push(format!(
                    "{key}: required (set `{key}` in the config file, --{flag} or WARDEN_AGENT_{})",
                    key.to_uppercase()
                ));
            }
            v.unwrap_or_default()
        };
        let thing = require("thing", "thing", thing);
        let endpoint = require("endpoint", "endpoint", endpoint);
        let path = |p: Option<PathBuf>| p.map(|p| p.to_string_lossy().into_owned());
        let ca = PathBuf::from(require("ca", "ca", path(ca)));
        let cert = PathBuf::from(require("cert", "cert", path(cert)));
        let key = PathBuf::from(require("key", "key", path(key)));
        if !thing.is_empty() && !is_valid_thing_name(&thing) {
            problems
                .push(format!("thing: \"{thing}\" is not a valid thing name (1-128 of a-z A-Z 0-9 : _ -)"));
        }
        let explicit_client_id = client_id.is_some();
        let client_id = client_id.unwrap_or_else(|| "{thing}".to_owned()).replace("{thing}", &thing);
        if (explicit_client_id || !thing.is_empty()) && (client_id.is_empty() || client_id.len() > 128) {
            problems.push("client_id: must be 1-128 bytes".to_owned());
        }
        for (key_name, p) in [("ca", &ca), ("cert", &cert), ("key", &key)] {
            if !p.as_os_str().is_empty() && !p.is_file() {
                problems.push(format!("{key_name}: {} is not a readable file", p.display()));
            }
        }
        Some(MqttConfig {
            server_name: server_name.unwrap_or_else(|| endpoint.clone()),
            thing,
            client_id,
            endpoint,
            port: port.unwrap_or(8883),
            ca,
            cert,
            key,
            alpn,
            keepalive,
            qos,
            mqtt5,
            replies: replies.unwrap_or(true),
        })
    };

    let custom_metrics = file
        .custom_metrics
        .into_iter()
        .enumerate()
        .filter_map(|(i, m)| custom_metric(i, m, &mut problems))
        .collect::<Vec<_>>();
    for (i, m) in custom_metrics.iter().enumerate() {
        if custom_metrics[..i].iter().any(|other| other.name == m.name) {
            problems.push(format!("custom_metrics[{i}].name: \"{}\" is defined twice", m.name));
        }
    }

    if !problems.is_empty() {
        return Err(ConfigError(problems));
    }
    Ok(Config {
        dry_run: cli.dry_run,
        mqtt,
        format,
        names,
        interval,
        jitter,
        max_list_entries,
        include_loopback: include_loopback.unwrap_or(false),
        state_dir: state_dir.unwrap_or_else(|| PathBuf::from("/var/lib/warden-agent")),
        log_level,
        max_reports,
        custom_metrics,
    })
}

fn custom_metric(i: usize, m: FileCustomMetric, problems: &mut Vec<String>) -> Option<CustomMetricConfig> {
    let key = format!("custom_metrics[{i}]");
    let before = problems.len();
    if !is_valid_metric_name(&m.name) {
        problems.push(format!(
            "{key}.name: \"{}\" is not a valid metric name (1-128 of a-z A-Z 0-9 : _ -, not starting with aws:)",
            m.name
        ));
    }
    let kind = match m.kind.as_str() {
        "number" => CustomMetricType::Number,
        "number-list" => CustomMetricType::NumberList,
        "string-list" => CustomMetricType::StringList,
        "ip-address-list" => CustomMetricType::IpAddressList,
        other => {
            problems.push(format!(
                "{key}.type: \"{other}\" is not one of number, number-list, string-list, ip-address-list"
            ));
            CustomMetricType::Number
        }
    };
    let source = match (m.command, m.file) {
        (Some(CommandSpec::Argv(argv)), None) if argv.is_empty() => {
            problems.push(format!("{key}.command: must not be empty"));
            None
        }
        (Some(command), None) => Some(CustomMetricSource::Command(command)),
        (None, Some(file)) => Some(CustomMetricSource::File(file)),
        (Some(_), Some(_)) => {
            problems.push(format!("{key}: set either `command` or `file`, not both"));
            None
        }
        (None, None) => {
            problems.push(format!("{key}: needs a `command` or a `file` to read the value from"));
            None
        }
    };
    let timeout = parse_or(problems, &format!("{key}.timeout"), m.timeout, Duration::from_secs(5), duration);
    if problems.len() > before {
        return None;
    }
    Some(CustomMetricConfig { name: m.name, kind, source: source?, timeout })
}

/// Parses an optional setting, recording a problem under `key` and using `default` if bad.
fn parse_or<T, E: fmt::Display>(
    problems: &mut Vec<String>,
    key: &str,
    value: Option<String>,
    default: T,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> T {
    match value {
        None => default,
        Some(s) => parse(&s).unwrap_or_else(|e| {
            problems.push(format!("{key}: {e}"));
            default
        }),
    }
}

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("\"{s}\" is not a duration like 300s or 5m ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(args: &[&str], toml: &str) -> Result<Config, ConfigError> {
        let mut argv = vec!["warden-agent"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).expect("flags parse");
        let file: FileConfig = toml::from_str(toml).map_err(|e| ConfigError(vec![e.to_string()]))?;
        compile(cli, file)
    }

    fn problems(args: &[&str], toml: &str) -> Vec<String> {
        load(args, toml).expect_err("config should be refused").0
    }

    #[test]
    fn dry_run_needs_no_connection_settings() {
        let c = load(&["--dry-run", "--interval", "1s"], "").unwrap();
        assert!(c.mqtt.is_none());
        assert_eq!(c.interval, Duration::from_secs(1));
        assert_eq!((c.format, c.names), (Format::Cbor, Names::Short));
    }

    #[test]
    fn defaults_suit_a_metered_link() {
        let c = load(&["--dry-run"], "").unwrap();
        assert_eq!(c.interval, Duration::from_secs(300));
        assert_eq!(c.jitter, Duration::from_secs(6));
        assert_eq!(c.max_list_entries, 50);
        assert!(!c.include_loopback);
    }

    #[test]
    fn missing_connection_settings_are_named() {
        let p = problems(&[], "");
        for key in ["thing", "endpoint", "ca", "cert", "key"] {
            assert!(p.iter().any(|l| l.starts_with(&format!("{key}: required"))), "{key} not in {p:?}");
        }
    }

    #[test]
    fn bad_values_name_their_key() {
        let p = problems(&["--dry-run", "--interval", "soon", "--qos", "2", "--format", "xml"], "");
        assert!(p.iter().any(|l| l.starts_with("interval: \"soon\" is not a duration")), "{p:?}");
        assert!(p.contains(&"qos: must be 0 or 1, got 2".to_owned()), "{p:?}");
        assert!(p.iter().any(|l| l.starts_with("format: unknown format \"xml\"")), "{p:?}");
    }

    #[test]
    fn unknown_file_key_is_named() {
        let e = toml::from_str::<FileConfig>("intervall = \"5m\"").unwrap_err().to_string();
        assert!(e.contains("unknown field `intervall`"), "{e}");
    }

    #[test]
    fn flags_override_file() {
        let c = load(&["--dry-run", "--interval", "2s"], "interval = \"10m\"\nnames = \"long\"").unwrap();
        assert_eq!(c.interval, Duration::from_secs(2));
        assert_eq!(c.names, Names::Long);
    }

    #[test]
    fn keepalive_covers_the_interval_but_respects_aws_maximum() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.pem");
        std::fs::write(&f, "x").unwrap();
        let f = f.to_str().unwrap();
        let args = ["--thing", "dev-1", "--endpoint", "localhost", "--ca", f, "--cert", f, "--key", f];
        let c = load(&args, "").unwrap();
        let m = c.mqtt.unwrap();
        assert_eq!(m.keepalive, Duration::from_secs(300 + 12 + 30));
        assert_eq!(m.client_id, "dev-1");
        assert_eq!(m.server_name, "localhost");
        let c = load(&args, "interval = \"30m\"\nclient_id = \"{thing}/agent\"").unwrap();
        let m = c.mqtt.unwrap();
        assert_eq!(m.keepalive, Duration::from_secs(1200));
        assert_eq!(m.client_id, "dev-1/agent");
    }

    #[test]
    fn custom_metric_problems_are_indexed() {
        let toml = r#"
            [[custom_metrics]]
            name = "battery"
            type = "number"
            file = "/sys/class/power_supply/BAT0/capacity"

            [[custom_metrics]]
            name = "aws:cpu"
            type = "percent"
        "#;
        let p = problems(&["--dry-run"], toml);
        assert!(p.iter().any(|l| l.starts_with("custom_metrics[1].name:")), "{p:?}");
        assert!(p.iter().any(|l| l.starts_with("custom_metrics[1].type: \"percent\"")), "{p:?}");
        assert!(p.iter().any(|l| l.starts_with("custom_metrics[1]: needs a `command` or a `file`")), "{p:?}");
        assert!(!p.iter().any(|l| l.starts_with("custom_metrics[0]")), "{p:?}");
    }

    #[test]
    fn invalid_thing_name_is_refused() {
        let p = problems(&["--thing", "a/b"], "");
        assert!(p.iter().any(|l| l.starts_with("thing: \"a/b\" is not a valid thing name")), "{p:?}");
    }
}
