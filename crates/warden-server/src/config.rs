//! Server configuration: a TOML file and flags, compiled into a validated [`ServerConfig`].
//!
//! Every key has a default, so `warden server` runs with no file at all; `--print-config` prints
//! the effective configuration, defaults included, in the same TOML a file would hold. Unknown
//! keys are errors naming the key; all problems are reported at once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The configuration as written in the file (and printed by `--print-config`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Where the database, the CA and the API token live.
    pub data_dir: PathBuf,
    /// Region and account used in ARNs (`arn:aws:iot:{region}:{account_id}:thing/...`).
    pub region: String,
    pub account_id: String,
    /// Threads running the MQTT sessions, ingest, detection, alerts and the API; 0 (the
    /// default) means one per CPU. Fewer leave cores to other services on the machine; twice
    /// the CPUs was measured at 10,000 reports/s on 2 cores and did not reliably lower the
    /// alert latency (bench/RESULTS.md).
    pub worker_threads: usize,
    pub mqtt: MqttSection,
    pub http: HttpSection,
    pub ingest: IngestSection,
    pub cloud_metrics: CloudMetricsSection,
    pub storage: StorageSection,
    pub detect: DetectSection,
    pub alerts: AlertsSection,
    /// AWS access keys accepted for SigV4-signed API requests (boto3, the aws CLI).
    pub access_keys: Vec<AccessKey>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttSection {
    /// MQTT over TLS with client certificates.
    pub listen: SocketAddr,
    /// Extra names for the server certificate besides `localhost` and `127.0.0.1`.
    pub server_names: Vec<String>,
    /// Largest MQTT payload accepted; AWS IoT's limit is 128 KiB.
    pub max_payload_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    /// REST API, dashboard and `/metrics`. Loopback by default: expose it deliberately.
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSection {
    /// Reports from one thing closer together than this are rejected with `Throttled`
    /// (AWS throttles at 300 s). Shorter periods suit tests and demos.
    #[serde(with = "humantime_serde")]
    pub min_report_period: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CloudMetricsSection {
    /// Cloud-side metrics (messages, connections, authorization failures) are aggregated per
    /// thing over this period, as AWS does every 5 minutes.
    #[serde(with = "humantime_serde")]
    pub period: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    /// Datapoints older than this many days are dropped, a day at a time.
    pub retention_days: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectSection {
    /// How often devices report. A behavior's `durationSeconds` window spans
    /// `durationSeconds / 300` of these periods, so with `period = "10s"` a 300 s behavior
    /// judges each 10 s report on its own, as AWS judges each 5-minute report.
    #[serde(with = "humantime_serde")]
    pub period: Duration,
    /// An alarm whose behavior gets no datapoint for this long is invalidated (AWS: two days).
    #[serde(with = "humantime_serde")]
    pub max_silence: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsSection {
    /// Tries per alert and subscriber before the delivery is given up.
    pub attempts: u32,
    /// The wait before the first retry; it doubles for each next one.
    #[serde(with = "humantime_serde")]
    pub retry_delay: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessKey {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            data_dir: PathBuf::from("./warden-data"),
            region: "local".into(),
            account_id: "000000000000".into(),
            worker_threads: 0,
            mqtt: MqttSection::default(),
            http: HttpSection::default(),
            ingest: IngestSection::default(),
            cloud_metrics: CloudMetricsSection::default(),
            storage: StorageSection::default(),
            detect: DetectSection::default(),
            alerts: AlertsSection::default(),
            access_keys: Vec::new(),
        }
    }
}

impl Default for MqttSection {
    fn default() -> Self {
        MqttSection {
            listen: SocketAddr::from(([0, 0, 0, 0], 8883)),
            server_names: Vec::new(),
            max_payload_bytes: 128 * 1024,
        }
    }
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection { listen: SocketAddr::from(([127, 0, 0, 1], 8080)) }
    }
}

impl Default for IngestSection {
    fn default() -> Self {
        IngestSection { min_report_period: Duration::from_secs(300) }
    }
}

impl Default for CloudMetricsSection {
    fn default() -> Self {
        CloudMetricsSection { period: Duration::from_secs(300) }
    }
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection { retention_days: 30 }
    }
}

impl Default for DetectSection {
    fn default() -> Self {
        DetectSection { period: Duration::from_secs(300), max_silence: Duration::from_secs(2 * 24 * 3600) }
    }
}

impl Default for AlertsSection {
    fn default() -> Self {
        AlertsSection { attempts: 5, retry_delay: Duration::from_secs(1) }
    }
}

/// Bad configuration: every problem, each naming its key.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  {}", .0.join("\n  "))]
pub struct ConfigError(pub Vec<String>);

impl ServerConfig {
    /// Parses a TOML file's text; missing keys take their defaults.
    pub fn from_toml(text: &str) -> Result<ServerConfig, ConfigError> {
        let config: ServerConfig = toml::from_str(text).map_err(|e| ConfigError(vec![e.to_string()]))?;
        config.validate()?;
        Ok(config)
    }

    /// [`ServerConfig::worker_threads`] with 0 resolved.
    pub fn worker_threads(&self) -> usize {
        match self.worker_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("the configuration serialises to TOML")
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let name_ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !name_ok(&self.region) {
            problems.push(format!("region: \"{}\" must be letters, digits and '-'", self.region));
        }
        if self.account_id.len() != 12 || !self.account_id.bytes().all(|b| b.is_ascii_digit()) {
            problems.push(format!("account_id: \"{}\" must be 12 digits", self.account_id));
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.mqtt.max_payload_bytes) {
            problems.push("mqtt.max_payload_bytes: must be between 1024 and 16777216".into());
        }
        if self.cloud_metrics.period < Duration::from_secs(1) {
            problems.push("cloud_metrics.period: must be at least 1s".into());
        }
        if self.detect.period < Duration::from_secs(1) {
            problems.push("detect.period: must be at least 1s".into());
        }
        if self.detect.max_silence < self.detect.period {
            problems.push("detect.max_silence: must be at least detect.period".into());
        }
        if !(1..=20).contains(&self.alerts.attempts) {
            problems.push("alerts.attempts: must be 1 to 20".into());
        }
        if self.worker_threads > 1024 {
            problems.push("worker_threads: must be 0 (one per CPU) to 1024".into());
        }
        if self.storage.retention_days == 0 {
            problems.push("storage.retention_days: must be at least 1".into());
        }
        for (i, k) in self.access_keys.iter().enumerate() {
            if k.access_key_id.len() < 16 || !k.access_key_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                problems
                    .push(format!("access_keys[{i}].access_key_id: must be 16 or more letters and digits"));
            }
            if k.secret_access_key.len() < 16 {
                problems.push(format!("access_keys[{i}].secret_access_key: must be at least 16 characters"));
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(ConfigError(problems)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_the_documented_defaults() {
        let c = ServerConfig::from_toml("").unwrap();
        assert_eq!(c, ServerConfig::default());
        assert_eq!(c.mqtt.listen.port(), 8883);
        assert_eq!(c.http.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.ingest.min_report_period, Duration::from_secs(300));
        let cpus = std::thread::available_parallelism().unwrap().get();
        assert_eq!((c.worker_threads, c.worker_threads()), (0, cpus));
    }

    #[test]
    fn printed_config_parses_back() {
        let mut c = ServerConfig::default();
        c.access_keys.push(AccessKey {
            access_key_id: "AKIAWARDENTEST0001".into(),
            secret_access_key: "secret-secret-secret".into(),
        });
        c.ingest.min_report_period = Duration::from_secs(5);
        let text = c.to_toml();
        assert!(text.contains("min_report_period = \"5s\""), "{text}");
        assert_eq!(ServerConfig::from_toml(&text).unwrap(), c);
    }

    #[test]
    fn unknown_and_bad_keys_are_named() {
        let e = ServerConfig::from_toml("[mqtt]\nlisten_port = 1\n").unwrap_err().to_string();
        assert!(e.contains("unknown field `listen_port`"), "{e}");
        let e = ServerConfig::from_toml("account_id = \"12\"\n[storage]\nretention_days = 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("account_id: \"12\" must be 12 digits"), "{e}");
        assert!(e.contains("storage.retention_days: must be at least 1"), "{e}");
        let e = ServerConfig::from_toml("[ingest]\nmin_report_period = \"soon\"\n").unwrap_err().to_string();
        assert!(e.contains("min_report_period"), "{e}");
        let e = ServerConfig::from_toml("worker_threads = 5000\n").unwrap_err().to_string();
        assert!(e.contains("worker_threads: must be 0 (one per CPU) to 1024"), "{e}");
        assert_eq!(ServerConfig::from_toml("worker_threads = 3\n").unwrap().worker_threads(), 3);
    }

    #[test]
    fn detection_and_alert_settings_parse_and_are_checked() {
        let c = ServerConfig::from_toml(
            "[detect]\nperiod = \"10s\"\n[alerts]\nattempts = 2\nretry_delay = \"250ms\"\n",
        )
        .unwrap();
        assert_eq!(c.detect.period, Duration::from_secs(10));
        assert_eq!(c.detect.max_silence, Duration::from_secs(2 * 24 * 3600), "default kept");
        assert_eq!((c.alerts.attempts, c.alerts.retry_delay), (2, Duration::from_millis(250)));
        assert!(ServerConfig::default().to_toml().contains("max_silence = \"2days\""));
        let e = ServerConfig::from_toml("[alerts]\nattempts = 0\n[detect]\nmax_silence = \"1s\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("alerts.attempts: must be 1 to 20"), "{e}");
        assert!(e.contains("detect.max_silence: must be at least detect.period"), "{e}");
    }
}
