//! The control endpoint of a running simulator: what `warden sim misbehave|calm|status` use,
//! and how it refuses what it cannot do.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use warden_sim::control::{ControlClient, ControlError, ControlServer};
use warden_sim::misbehaviour::Misbehaviour;

use crate::harness::{Shape, lab};

/// A raw request to the control endpoint: status, `x-amzn-ErrorType`, JSON body.
async fn raw(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, Option<String>, Value) {
    let (method, url, token, body) =
        (method.to_owned(), format!("http://{addr}{path}"), token.map(str::to_owned), body.to_owned());
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut request = ureq::http::Request::builder().method(method.as_str()).uri(url);
        if let Some(t) = token {
            request = request.header("authorization", format!("Bearer {t}"));
        }
        let mut response = agent.run(request.body(body).unwrap()).unwrap();
        let code = response.headers().get("x-amzn-errortype").map(|v| v.to_str().unwrap().to_owned());
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        (status, code, serde_json::from_str(&text).unwrap_or(Value::Null))
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_endpoint_starts_and_stops_misbehaviours() {
    let lab = lab().await;
    let (fleet, _) = lab.fleet(&Shape { devices: 2, telemetry: None, ..Shape::default() }).await;
    let fleet = Arc::new(fleet);
    let state = lab.state_dir();
    let server = ControlServer::start(fleet.clone(), &state).await.unwrap();

    let client_state = state.clone();
    let (started, status, calmed) = tokio::task::spawn_blocking(move || {
        let client = ControlClient::find(&client_state).unwrap();
        let started =
            client.misbehave("sim-00001", Misbehaviour::Scan, Some(Duration::from_secs(60))).unwrap();
        let status = client.status().unwrap();
        let calmed = client.calm("sim-00001", Some(Misbehaviour::Scan)).unwrap();
        (started, status, calmed)
    })
    .await
    .unwrap();
    assert_eq!(started["thing"], "sim-00001");
    assert_eq!(started["misbehaving"][0]["kind"], "scan");
    assert!(started["misbehaving"][0]["remainingS"].as_f64().unwrap() > 50.0, "{started}");
    assert_eq!(status["totals"]["devices"], 2);
    assert_eq!(status["totals"]["misbehaving"], 1);
    assert_eq!(status["misbehaving"][0]["thing"], "sim-00001");
    assert_eq!(calmed["misbehaving"], serde_json::json!([]));
    assert!(fleet.device("sim-00001").unwrap().misbehaving.is_empty());

    // Refusals, in AWS's error shape.
    let token = std::fs::read_to_string(state.control_token()).unwrap();
    let addr = server.addr;
    let (status, code, body) = raw(addr, "GET", "/status", None, "").await;
    assert_eq!((status, code.as_deref()), (401, Some("UnauthorizedException")), "{body}");
    let (status, code, body) =
        raw(addr, "POST", "/devices/nobody/misbehave", Some(&token), r#"{"kind":"scan"}"#).await;
    assert_eq!((status, code.as_deref()), (404, Some("ResourceNotFoundException")));
    assert_eq!(body["message"], "no device nobody in this fleet");
    let (status, code, body) =
        raw(addr, "POST", "/devices/sim-00000/misbehave", Some(&token), r#"{"kind":"dance"}"#).await;
    assert_eq!((status, code.as_deref()), (400, Some("InvalidRequestException")));
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("unknown misbehaviour \"dance\"; expected one of large-payload"),
        "{body}"
    );
    for (body, message) in [
        ("{", "the body must be a JSON object"),
        ("{}", "kind: required"),
        (
            r#"{"kind":"scan","forSeconds":-1}"#,
            "forSeconds: must be a number of seconds above 0, at most a year",
        ),
        (r#"{"kind":"scan","for":60}"#, "unknown field \"for\"; expected kind, forSeconds"),
        (r#"{"kind":7}"#, "kind: must be a string such as \"scan\""),
    ] {
        let (status, code, reply) =
            raw(addr, "POST", "/devices/sim-00000/misbehave", Some(&token), body).await;
        assert_eq!(
            (status, code.as_deref(), reply["message"].as_str()),
            (400, Some("InvalidRequestException"), Some(message)),
            "{body}"
        );
    }
    let big = "x".repeat(3 << 20);
    let (status, code, _) = raw(addr, "POST", "/devices/sim-00000/misbehave", Some(&token), &big).await;
    assert_eq!((status, code.as_deref()), (413, Some("InvalidRequestException")));
    let (status, code, _) = raw(addr, "GET", "/devices/%FF", Some(&token), "").await;
    assert_eq!((status, code.as_deref()), (400, Some("InvalidRequestException")));
    let (status, code, _) = raw(addr, "GET", "/nowhere", Some(&token), "").await;
    assert_eq!((status, code.as_deref()), (404, Some("ResourceNotFoundException")));
    assert!(fleet.device("sim-00000").unwrap().misbehaving.is_empty(), "nothing refused was applied");

    // Stopped: the address file is gone, and the commands say so.
    server.stop().await;
    assert!(!state.control_addr().exists() && !state.control_token().exists());
    let missing = ControlClient::find(&state).unwrap_err();
    assert!(matches!(missing, ControlError::NotRunning(_)), "{missing}");
    fleet.shutdown().await;
}
