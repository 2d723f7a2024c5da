//! The registry API driven by boto3 itself (`tests/boto3/registry.py`), signing with SigV4 like
//! any AWS user with an `endpoint_url`.
//!
//! It needs a Python with boto3, named by `WARDEN_PYTHON`. Without one the test is skipped,
//! unless `WARDEN_REQUIRE_EXTERNAL=1` (CI), where it fails so that CI cannot pass by skipping.

use std::path::PathBuf;
use std::process::Command;

use crate::support::{ACCESS_KEY_ID, SECRET_ACCESS_KEY, TestServer};

#[tokio::test]
async fn boto3_drives_the_registry() {
    let Some(python) = std::env::var_os("WARDEN_PYTHON") else {
        if std::env::var_os("WARDEN_REQUIRE_EXTERNAL").is_some_and(|v| v == "1") {
            panic!("WARDEN_REQUIRE_EXTERNAL=1 but WARDEN_PYTHON (a python with boto3) is not set");
        }
        eprintln!("skipping: WARDEN_PYTHON not set");
        return;
    };
    // boto3 signs with the wall-clock time.
    let server = TestServer::start_on_system_clock().await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/boto3/registry.py");
    let endpoint = format!("http://{}", server.addr);
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
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
    assert!(output.status.success(), "registry.py failed ({}):\n{stdout}\n{stderr}", output.status);
    assert!(stdout.contains("ok: everything is deleted: certificates"), "{stdout}");
}
