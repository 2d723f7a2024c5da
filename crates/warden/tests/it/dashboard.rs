//! The dashboard in a real browser: Debian's chromium, driven headless by Playwright
//! (`tests/browser/dashboard.mjs`), against a real server with a simulated fleet of real
//! MQTT/TLS devices (`warden-sim`).
//!
//! The script signs in by the sign-in link, sees the fleet, opens the device that will
//! misbehave, and says `misbehave` on its stdout; this test then makes that device send large
//! payloads. The script must see, without reloading the page, the alarm appear and the device
//! quarantined by the profile's automatic mitigation; it then marks the violation a true
//! positive on the violations page, reads the profile's rule on the profiles page, releases the
//! device from quarantine, deactivates another device's certificate, and signs out. This test
//! checks through the API that the page's changes were made. Screenshots of each page land in
//! `target/test-output/dashboard/`.
//!
//! Needs `node`, `/usr/bin/chromium` and `npm ci --prefix crates/warden/tests/browser`
//! (`.ci/run` installs all three); without them the test is skipped, or fails when
//! `WARDEN_REQUIRE_EXTERNAL=1`.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use warden_sim::api::Api;
use warden_sim::class::ClassMix;
use warden_sim::fleet::{Fleet, FleetConfig, SimDevice};
use warden_sim::identity::{ProvisionProgress, StateDir, Wanted, provision};
use warden_sim::misbehaviour::Misbehaviour;
use warden_sim::model::Timing;
use warden_sim::traffic::DeviceTraits;

use crate::TestServer;

const DEVICES: u64 = 4;
const SEED: u64 = 11;
/// How long the whole browser session may take on a loaded 2-core machine.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(300);
const CHROMIUM: &str = "/usr/bin/chromium";

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Where the screenshots go: the workspace's `target/test-output/dashboard/`.
fn output_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-output/dashboard")
}

/// `node`, chromium and the script's packages, or `None` (skip) when one is missing and
/// `WARDEN_REQUIRE_EXTERNAL` is not `1`.
fn browser_tools() -> Option<PathBuf> {
    let node = warden_testkit::require_external("node")?;
    warden_testkit::require_external(CHROMIUM)?;
    if !browser_dir().join("node_modules/playwright-core").is_dir() {
        if std::env::var_os("WARDEN_REQUIRE_EXTERNAL").is_some_and(|v| v == "1") {
            panic!(
                "WARDEN_REQUIRE_EXTERNAL=1 but playwright-core is not installed: npm ci --prefix crates/warden/tests/browser"
            );
        }
        eprintln!("skipping: playwright-core not installed (npm ci --prefix crates/warden/tests/browser)");
        return None;
    }
    Some(node)
}

/// Registers the fleet's devices through the API, as `warden sim` does, and starts them as
/// MQTT/TLS clients: one report a second, each five simulated minutes.
fn start_fleet(server: &TestServer) -> Fleet {
    let api = Api::new(&server.endpoint, &server.token);
    let ca_pem = api.ca_pem().unwrap();
    let identities = StateDir::new(server.path("sim")).identities(&ca_pem).unwrap();
    let wanted: Vec<Wanted> = (0..DEVICES)
        .map(|i| Wanted {
            thing: format!("sim-{i:05}"),
            class: DeviceTraits::draw(SEED, i, &ClassMix::default()).class,
        })
        .collect();
    let progress = ProvisionProgress::default();
    let ids = provision(&api, &identities, &wanted, "WardenThingPolicy", 2, &progress).unwrap();
    let mqtt_port = server.server.as_ref().expect("running").mqtt_addr.port();
    let mut config = FleetConfig::new("127.0.0.1", mqtt_port, &ca_pem);
    config.seed = SEED;
    config.timing = Timing {
        period: Duration::from_secs(1),
        speedup: 300.0,
        start_epoch_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
    };
    config.telemetry = Some(Duration::from_millis(500));
    let devices =
        ids.into_iter().zip(0u64..).map(|(identity, index)| SimDevice { index, identity }).collect();
    server.block_on(Fleet::start(config, devices)).unwrap()
}

#[test]
fn in_a_real_browser_a_misbehaving_device_alarms_and_is_quarantined_live() {
    let Some(node) = browser_tools() else { return };
    let server = TestServer::start_with(|c| {
        c.ingest.min_report_period = Duration::ZERO;
        c.detect.period = Duration::from_secs(1);
        c.cloud_metrics.period = Duration::from_secs(2);
        c.alerts.retry_delay = Duration::from_millis(100);
    });
    // The workshop's set-up, as `warden demo` makes it (no webhook: the page shows the alerts'
    // effects, not the alerts).
    warden_sim::lab::set_up(&Api::new(&server.endpoint, &server.token), None).unwrap();
    let fleet = Arc::new(start_fleet(&server));
    let bad = "sim-00002";
    // The device whose certificate the page deactivates.
    let other = "sim-00001";
    // Every device has reported before the browser looks, so the fleet page shows them all.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !fleet.devices().iter().all(|d| d.reports_accepted >= 2) {
        assert!(Instant::now() < deadline, "the fleet did not report: {:?}", fleet.devices());
        std::thread::sleep(Duration::from_millis(100));
    }

    let out = output_dir();
    std::fs::create_dir_all(&out).unwrap();
    let mut child = Command::new(node)
        .arg(browser_dir().join("dashboard.mjs"))
        .env("WARDEN_URL", &server.endpoint)
        .env("WARDEN_TOKEN", &server.token)
        .env("WARDEN_BAD", bad)
        .env("WARDEN_OTHER", other)
        .env("WARDEN_DEVICES", DEVICES.to_string())
        .env("WARDEN_SCREENSHOTS", &out)
        .env("WARDEN_CHROMIUM", CHROMIUM)
        .env("WARDEN_USER_DATA", server.path("chromium-profile"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run node");
    let (lines_tx, lines) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let deadline = Instant::now() + BROWSER_TIMEOUT;
    let mut verified = None;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                eprintln!("browser: {line}");
                if line == "misbehave" {
                    server.block_on(fleet.misbehave(bad, Misbehaviour::LargePayload, None)).unwrap();
                } else if let Some(id) = line.strip_prefix("verified ") {
                    verified = Some(id.to_owned());
                }
                seen.push(line);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                panic!("the browser script did not finish in {BROWSER_TIMEOUT:?}; it said: {seen:?}");
            }
        }
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "the browser script failed ({status}); it said: {seen:?}");
    assert_eq!(seen.last().map(String::as_str), Some("ok"), "{seen:?}");

    // What the page changed, through the API: the violation's verification state, and the
    // release from quarantine.
    let verified = verified.expect("the script set a verification state");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let events = server.api(
        "GET",
        &format!("/violation-events?thingName={bad}&startTime={}&endTime={}", now - 3600, now + 60),
        json!({}),
    );
    let states: Vec<&Value> = events["violationEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["violationId"] == verified.as_str())
        .map(|e| &e["verificationState"])
        .collect();
    assert!(!states.is_empty() && states.iter().all(|s| *s == "TRUE_POSITIVE"), "{events}");
    let groups = server.api("GET", &format!("/things/{bad}/thing-groups"), json!({}));
    assert_eq!(groups["thingGroups"], json!([]), "released from Quarantine: {groups}");
    let principals = server.api("GET", &format!("/things/{other}/principals"), json!({}));
    let arn = principals["principals"][0].as_str().unwrap();
    let certificate =
        server.api("GET", &format!("/certificates/{}", arn.rsplit('/').next().unwrap()), json!({}));
    assert_eq!(certificate["certificateDescription"]["status"], "INACTIVE", "{certificate}");
    assert!(seen.iter().any(|l| *l == format!("deactivated {other}")), "{seen:?}");
    for shot in [
        "sign-in",
        "fleet",
        "device",
        "fleet-quarantined",
        "violations",
        "profiles",
        "narrow",
        "narrow-device",
    ] {
        assert!(out.join(format!("{shot}.png")).is_file(), "no screenshot {shot}.png");
    }
    server.block_on(fleet.shutdown());
}
