//! Custom metrics: values read from a file or a command's output at report time.
//!
//! A metric that cannot be read this time (command failed, timed out, printed nonsense) is left
//! out of the report with a warning; the rest of the report still goes out.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::process::Stdio;

use tokio::io::AsyncReadExt;
use warden_wire::CustomMetricValue;

use crate::config::{CommandSpec, CustomMetricConfig, CustomMetricSource, CustomMetricType};

/// More output than this is not a metric value; reading stops there.
const MAX_OUTPUT: u64 = 64 * 1024;

/// Reads every configured metric; `None` when none is configured or none could be read.
pub async fn read_all(metrics: &[CustomMetricConfig]) -> Option<BTreeMap<String, CustomMetricValue>> {
    let mut out = BTreeMap::new();
    for m in metrics {
        match read(m).await {
            Ok(v) => {
                out.insert(m.name.clone(), v);
            }
            Err(e) => tracing::warn!(metric = %m.name, error = %e, "custom metric left out of this report"),
        }
    }
    (!out.is_empty()).then_some(out)
}

async fn read(m: &CustomMetricConfig) -> Result<CustomMetricValue, String> {
    let text = match &m.source {
        CustomMetricSource::File(path) => {
            let mut buf = String::new();
            tokio::fs::File::open(path)
                .await
                .map_err(|e| format!("cannot open {}: {e}", path.display()))?
                .take(MAX_OUTPUT)
                .read_to_string(&mut buf)
                .await
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            buf
        }
        CustomMetricSource::Command(spec) => tokio::time::timeout(m.timeout, run(spec))
            .await
            .map_err(|_| format!("command timed out after {}", humantime::format_duration(m.timeout)))??,
    };
    parse(m.kind, &text)
}

async fn run(spec: &CommandSpec) -> Result<String, String> {
    let mut cmd = match spec {
        CommandSpec::Shell(line) => {
            let mut c = tokio::process::Command::new("/bin/sh");
            c.arg("-c").arg(line);
            c
        }
        CommandSpec::Argv(argv) => {
            let mut c = tokio::process::Command::new(&argv[0]);
            c.args(&argv[1..]);
            c
        }
    };
    // kill_on_drop: a timed-out command is killed rather than left running.
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start command: {e}"))?;
    let mut out = String::new();
    if let Some(stdout) = child.stdout.take() {
        stdout
            .take(MAX_OUTPUT)
            .read_to_string(&mut out)
            .await
            .map_err(|e| format!("cannot read command output: {e}"))?;
    }
    let status = child.wait().await.map_err(|e| format!("command failed: {e}"))?;
    if !status.success() {
        return Err(format!("command exited with {status}"));
    }
    Ok(out)
}

/// Parses a value: `number` is one number; lists are separated by whitespace or commas
/// (`string-list` by lines, since a string may not be split further).
pub fn parse(kind: CustomMetricType, text: &str) -> Result<CustomMetricValue, String> {
    let words = || text.split(|c: char| c.is_whitespace() || c == ',').filter(|w| !w.is_empty());
    let number = |w: &str| match w.parse::<f64>() {
        Ok(n) if n.is_finite() => Ok(n),
        _ => Err(format!("\"{w}\" is not a finite number")),
    };
    match kind {
        CustomMetricType::Number => {
            let mut ws = words();
            match (ws.next(), ws.next()) {
                (Some(w), None) => number(w).map(CustomMetricValue::Number),
                (None, _) => Err("no value (empty output)".to_owned()),
                (Some(_), Some(_)) => Err("expected one number, got several words".to_owned()),
            }
        }
        CustomMetricType::NumberList => {
            words().map(number).collect::<Result<_, _>>().map(CustomMetricValue::NumberList)
        }
        CustomMetricType::StringList => Ok(CustomMetricValue::StringList(
            text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect(),
        )),
        CustomMetricType::IpAddressList => words()
            .map(|w| w.parse::<IpAddr>().map_err(|_| format!("\"{w}\" is not an IP address")))
            .collect::<Result<_, _>>()
            .map(CustomMetricValue::IpList),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn metric(kind: CustomMetricType, source: CustomMetricSource) -> CustomMetricConfig {
        CustomMetricConfig { name: "m".into(), kind, source, timeout: Duration::from_secs(5) }
    }

    #[test]
    fn parses_each_type() {
        use CustomMetricType::*;
        assert_eq!(parse(Number, " 76.5\n"), Ok(CustomMetricValue::Number(76.5)));
        assert_eq!(parse(NumberList, "1, 2\n3"), Ok(CustomMetricValue::NumberList(vec![1.0, 2.0, 3.0])));
        assert_eq!(
            parse(StringList, "dropbear\n\n wpa_supplicant \n"),
            Ok(CustomMetricValue::StringList(vec!["dropbear".into(), "wpa_supplicant".into()]))
        );
        assert_eq!(
            parse(IpAddressList, "10.0.0.1 2001:db8::1"),
            Ok(CustomMetricValue::IpList(vec!["10.0.0.1".parse().unwrap(), "2001:db8::1".parse().unwrap()]))
        );
        assert!(parse(Number, "").unwrap_err().contains("empty"));
        assert!(parse(Number, "NaN").unwrap_err().contains("finite"));
        assert!(parse(Number, "1 2").unwrap_err().contains("several"));
        assert!(parse(IpAddressList, "10.0.0.300").unwrap_err().contains("not an IP"));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn reads_commands_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("battery");
        std::fs::write(&file, "42\n").unwrap();
        let metrics = vec![
            CustomMetricConfig {
                name: "battery".into(),
                ..metric(CustomMetricType::Number, CustomMetricSource::File(file))
            },
            CustomMetricConfig {
                name: "peers".into(),
                ..metric(
                    CustomMetricType::IpAddressList,
                    CustomMetricSource::Command(CommandSpec::Shell("echo 10.0.0.1; echo 10.0.0.2".into())),
                )
            },
            CustomMetricConfig {
                name: "broken".into(),
                ..metric(
                    CustomMetricType::Number,
                    CustomMetricSource::Command(CommandSpec::Argv(vec!["/bin/false".into()])),
                )
            },
        ];
        let values = read_all(&metrics).await.unwrap();
        assert_eq!(values.get("battery"), Some(&CustomMetricValue::Number(42.0)));
        assert_eq!(
            values.get("peers").map(|v| matches!(v, CustomMetricValue::IpList(l) if l.len() == 2)),
            Some(true)
        );
        assert!(!values.contains_key("broken"), "a failing command is left out");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn slow_command_times_out() {
        let m = CustomMetricConfig {
            timeout: Duration::from_millis(100),
            ..metric(
                CustomMetricType::Number,
                CustomMetricSource::Command(CommandSpec::Shell("sleep 5; echo 1".into())),
            )
        };
        assert!(read(&m).await.unwrap_err().contains("timed out"));
    }
}
