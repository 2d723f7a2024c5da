//! `warden server` as a process: first start, `--print-config`, SIGTERM and SIGINT, restart.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WARDEN: &str = env!("CARGO_BIN_EXE_warden");

/// Starts `warden server` on free ports and waits for its "running" banner; returns the API
/// endpoint and the MQTT port.
fn start_with_mqtt(data_dir: &std::path::Path) -> (Child, String, u16) {
    let (mqtt, http) = (warden_testkit::free_port(), warden_testkit::free_port());
    let mut child = Command::new(WARDEN)
        .args(["server", "--data-dir"])
        .arg(data_dir)
        .args(["--mqtt-port", &mqtt.to_string(), "--http-port", &http.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut banner = String::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        banner.push_str(&line);
        banner.push('\n');
        if line.starts_with("  warden-agent") {
            break;
        }
    }
    assert!(banner.contains("Warden is running."), "{banner}");
    (child, format!("http://127.0.0.1:{http}"), mqtt)
}

fn start(data_dir: &std::path::Path) -> (Child, String) {
    let (child, endpoint, _) = start_with_mqtt(data_dir);
    (child, endpoint)
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "server did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, sig: &str) {
    assert!(Command::new("kill").args(["-s", sig, &child.id().to_string()]).status().unwrap().success());
}

#[test]
fn first_start_creates_the_data_dir_and_a_restart_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut server, endpoint) = start(&data);
    for file in ["api-token", "pki/ca.crt", "pki/ca.key", "pki/server.crt", "warden.db"] {
        assert!(data.join(file).exists(), "{file} created at first start");
    }
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(data.join("api-token")).unwrap().permissions().mode() & 0o777, 0o600);
    let cli = |args: &[&str]| {
        Command::new(WARDEN)
            .args(args)
            .args(["--endpoint", &endpoint, "--data-dir"])
            .arg(&data)
            .output()
            .unwrap()
    };
    assert!(cli(&["things", "create", "dev-1"]).status.success());
    let ca = std::fs::read(data.join("pki/ca.crt")).unwrap();
    let token = std::fs::read(data.join("api-token")).unwrap();

    signal(&server, "TERM");
    assert!(wait_exit(&mut server).success(), "SIGTERM stops the server cleanly");

    let (mut server, endpoint) = start(&data);
    let out = Command::new(WARDEN)
        .args(["things", "describe", "dev-1", "--endpoint", &endpoint, "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "the thing survived the restart: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(data.join("pki/ca.crt")).unwrap(), ca, "same CA");
    assert_eq!(std::fs::read(data.join("api-token")).unwrap(), token, "same token");
    signal(&server, "INT");
    assert!(wait_exit(&mut server).success(), "SIGINT stops the server cleanly");
}

#[test]
fn print_config_shows_every_default_and_the_flags() {
    let out =
        Command::new(WARDEN).args(["server", "--print-config", "--mqtt-port", "9883"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for line in [
        "data_dir = \"./warden-data\"",
        "region = \"local\"",
        "account_id = \"000000000000\"",
        "listen = \"0.0.0.0:9883\"",
        "listen = \"127.0.0.1:8080\"",
        "min_report_period = \"5m\"",
        "retention_days = 30",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
}

#[test]
fn bad_config_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("warden.toml");
    std::fs::write(&file, "[ingest]\nmin_report_periode = \"5s\"\n").unwrap();
    let out =
        Command::new(WARDEN).args(["server", "--print-config", "--config"]).arg(&file).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown field `min_report_periode`"), "{err}");
}

/// TLS handshakes that fail reach no broker hook; the server counts them from rmqtt's log.
#[test]
fn failed_tls_handshakes_are_counted_in_metrics() {
    use std::io::{Read as _, Write as _};
    let dir = tempfile::tempdir().unwrap();
    let (mut server, endpoint, mqtt) = start_with_mqtt(&dir.path().join("data"));
    for _ in 0..2 {
        let mut tcp = std::net::TcpStream::connect(("127.0.0.1", mqtt)).unwrap();
        tcp.write_all(b"this is not a TLS ClientHello\r\n\r\n").unwrap();
        let _ = tcp.read(&mut [0u8; 64]);
    }
    let port = endpoint.rsplit(':').next().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut http = std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).unwrap();
        http.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
        let mut text = String::new();
        http.read_to_string(&mut text).unwrap();
        if text.contains("warden_mqtt_tls_handshake_failures_total 2") {
            break;
        }
        assert!(Instant::now() < deadline, "TLS failures not counted:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
    signal(&server, "TERM");
    assert!(wait_exit(&mut server).success());
}
