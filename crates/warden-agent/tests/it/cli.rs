//! The command line without a broker: `--dry-run`, configuration errors, `--help`.

use std::process::Command;

use warden_wire::{Format, Limits, decode_report};

use crate::harness::AGENT;

fn dry_run(format: &str, names: &str) -> Vec<u8> {
    let out = Command::new(AGENT)
        .args(["--dry-run", "--interval", "1s", "--format", format, "--names", names])
        .output()
        .expect("agent runs");
    assert!(out.status.success(), "dry run failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

#[test]
fn dry_run_writes_one_valid_report_in_each_encoding() {
    for (format, f) in [("json", Format::Json), ("cbor", Format::Cbor)] {
        for names in ["long", "short"] {
            let mut out = dry_run(format, names);
            if f == Format::Json {
                assert_eq!(out.pop(), Some(b'\n'), "JSON ends with one newline");
                assert!(!out.contains(&b'\n'), "exactly one JSON document");
                let text = String::from_utf8(out.clone()).unwrap();
                let marker = if names == "long" { "\"header\"" } else { "\"hed\"" };
                assert!(text.starts_with(&format!("{{{marker}")), "{text}");
            }
            let report = decode_report(&out, f, &Limits::default())
                .unwrap_or_else(|e| panic!("{format}/{names}: {e}"));
            let metrics = report.metrics.expect("metrics block");
            assert!(metrics.network_stats.is_some(), "a dry run measures one interval of traffic");
            assert!(metrics.listening_tcp_ports.is_some());
            assert!(metrics.tcp_connections.is_some());
        }
    }
}

#[test]
fn short_cbor_is_the_smallest_encoding() {
    let sizes: Vec<usize> = [("cbor", "short"), ("cbor", "long"), ("json", "short")]
        .iter()
        .map(|(f, n)| dry_run(f, n).len())
        .collect();
    assert!(sizes[0] < sizes[1] && sizes[0] < sizes[2], "{sizes:?}");
}

#[test]
fn bad_flags_name_the_key_and_exit_2() {
    let out =
        Command::new(AGENT).args(["--dry-run", "--interval", "soon", "--names", "tiny"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("interval: \"soon\" is not a duration"), "{err}");
    assert!(err.contains("names: unknown key names \"tiny\""), "{err}");
}

#[test]
fn bad_config_file_names_the_key_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.toml");
    std::fs::write(&file, "thing = \"dev-1\"\nintervall = \"5m\"\n").unwrap();
    let out = Command::new(AGENT).args(["--dry-run", "--config"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown field `intervall`"), "{err}");

    std::fs::write(&file, "[[custom_metrics]]\nname = \"temp\"\ntype = \"celsius\"\nfile = \"/x\"\n")
        .unwrap();
    let out = Command::new(AGENT).args(["--dry-run", "--config"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("custom_metrics[0].type: \"celsius\""), "{err}");
}

#[test]
fn missing_connection_settings_are_listed_with_their_sources() {
    let out = Command::new(AGENT).env_remove("WARDEN_AGENT_THING").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("thing: required (set `thing` in the config file, --thing or WARDEN_AGENT_THING)"),
        "{err}"
    );
}

#[test]
fn environment_variables_configure_the_agent() {
    let out = Command::new(AGENT)
        .args(["--dry-run"])
        .env("WARDEN_AGENT_INTERVAL", "1s")
        .env("WARDEN_AGENT_FORMAT", "json")
        .env("WARDEN_AGENT_NAMES", "long")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.starts_with(b"{\"header\""));
}

#[test]
fn help_documents_every_option() {
    let out = Command::new(AGENT).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--config",
        "--dry-run",
        "--thing",
        "--client-id",
        "--endpoint",
        "--port",
        "--ca",
        "--cert",
        "--key",
        "--server-name",
        "--alpn",
        "--format",
        "--names",
        "--interval",
        "--jitter",
        "--keepalive",
        "--qos",
        "--mqtt-version",
        "--replies",
        "--max-list-entries",
        "--include-loopback",
        "--state-dir",
        "--log-level",
        "--max-reports",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

/// The agent needs no privileges: as `nobody` it still reads every metric it reports.
#[test]
fn runs_as_an_unprivileged_user() {
    let is_root = std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")));
    if !is_root {
        eprintln!("skipping: needs root to switch to an unprivileged user");
        return;
    }
    let Some(setpriv) = warden_testkit::require_external("setpriv") else { return };
    let out = Command::new(setpriv)
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", AGENT])
        .args(["--dry-run", "--interval", "1s", "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = decode_report(&out.stdout, Format::Json, &Limits::default()).unwrap();
    assert!(report.metrics.is_some_and(|m| m.network_stats.is_some()));
}
