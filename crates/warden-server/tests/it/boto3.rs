//! The API driven by boto3 itself, signing with SigV4 like any AWS user with an `endpoint_url`:
//! the registry (`tests/boto3/registry.py`) and Detect (`tests/boto3/defender.py`, over
//! violations recorded straight into the store as the detection engine records them).
//!
//! It needs a Python with boto3, named by `WARDEN_PYTHON`. Without one the tests are skipped,
//! unless `WARDEN_REQUIRE_EXTERNAL=1` (CI), where they fail so that CI cannot pass by skipping.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;

use serde_json::json;
use warden_store::{NewViolationEvent, ViolationChange, ViolationEventType};

use crate::support::{ACCESS_KEY_ID, SECRET_ACCESS_KEY, TestServer};

/// The Python to run, or `None` (after saying why) when the test should be skipped.
fn python() -> Option<OsString> {
    let python = std::env::var_os("WARDEN_PYTHON");
    if python.is_none() {
        if std::env::var_os("WARDEN_REQUIRE_EXTERNAL").is_some_and(|v| v == "1") {
            panic!("WARDEN_REQUIRE_EXTERNAL=1 but WARDEN_PYTHON (a python with boto3) is not set");
        }
        eprintln!("skipping: WARDEN_PYTHON not set");
    }
    python
}

/// Runs `tests/boto3/{script}` against `server`; asserts it succeeded and printed `done`.
async fn run_script(python: OsString, server: &TestServer, script: &str, done: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/boto3").join(script);
    let endpoint = format!("http://{}", server.addr);
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(path)
            .env("WARDEN_ENDPOINT", endpoint)
            .env("WARDEN_ACCESS_KEY_ID", ACCESS_KEY_ID)
            .env("WARDEN_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
            // Nothing from the developer's AWS setup may leak in.
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .output()
    })
    .await
    .unwrap()
    .expect("WARDEN_PYTHON runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{script} failed ({}):\n{stdout}\n{stderr}", output.status);
    assert!(stdout.contains(done), "{stdout}");
}

#[tokio::test]
async fn boto3_drives_the_registry() {
    let Some(python) = python() else { return };
    // boto3 signs with the wall-clock time.
    let server = TestServer::start_on_system_clock().await;
    run_script(python, &server, "registry.py", "ok: everything is deleted: certificates").await;
}

fn event(id: &str, kind: ViolationEventType, thing: &str, count: u64, at_ms: i64) -> ViolationChange {
    ViolationChange::Event(NewViolationEvent {
        violation_id: id.into(),
        event_type: kind,
        thing: thing.into(),
        security_profile: "MySecProfile".into(),
        behavior: "MessagesPub".into(),
        behavior_json: json!({
            "name": "MessagesPub",
            "metric": "aws:num-messages-sent",
            "criteria": { "comparisonOperator": "less-than", "value": { "count": 10 }, "durationSeconds": 300 },
        })
        .to_string(),
        metric_value: json!({ "count": count }).to_string(),
        event_time_ms: at_ms,
        suppress_alerts: false,
    })
}

#[tokio::test]
async fn boto3_drives_detect() {
    let Some(python) = python() else { return };
    // boto3 signs with the wall-clock time; the script lists events of the last hour.
    let server = TestServer::start_on_system_clock().await;
    let now = server.state.now_ms();
    server
        .state
        .store
        .record_violation_events(vec![
            event("37e18651d207bbc74236c13faf146127", ViolationEventType::InAlarm, "dev-1", 54, now - 3000),
            event("00000000000000000000000000000002", ViolationEventType::InAlarm, "dev-2", 12, now - 2000),
            event(
                "00000000000000000000000000000002",
                ViolationEventType::AlarmCleared,
                "dev-2",
                3,
                now - 1000,
            ),
        ])
        .await
        .unwrap();
    run_script(python, &server, "defender.py", "ok: everything is deleted: dimensions").await;
}
