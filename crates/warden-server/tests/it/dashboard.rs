//! The dashboard's server side, through HTTP on a real server: its files, the browser sign-in
//! and session cookie (and its CSRF guard), the fleet summary, and the live-event stream fed by
//! a real device's MQTT/TLS report. The page itself is tested in a real browser by the `warden`
//! crate's `dashboard` test.

use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use warden_server::state::LiveEvent;
use warden_wire::{Format, ReplyStatus};

use crate::devices::{Lab, lab};

const WAIT: Duration = Duration::from_secs(15);

/// A response with its headers, read whole.
struct Reply {
    status: u16,
    headers: hyper::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
    /// The AWS error code of a refusal.
    fn error(&self) -> (u16, &str) {
        (self.status, self.header("x-amzn-errortype").unwrap_or_default())
    }
}

/// Sends a request and returns the response with its body still streaming.
async fn open(
    lab: &Lab,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> hyper::Response<Incoming> {
    let addr = lab.server.http_addr;
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let mut request = hyper::Request::builder().method(method).uri(target).header("host", addr.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    sender.send_request(request.body(Full::new(Bytes::from(body.to_owned()))).unwrap()).await.unwrap()
}

async fn call(lab: &Lab, method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let response = open(lab, method, target, headers, body).await;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes().to_vec();
    Reply { status, headers, body }
}

/// Signs in with the API token; the `cookie` header value to send back.
async fn sign_in(lab: &Lab) -> String {
    let body = json!({ "token": lab.server.api_token }).to_string();
    let reply = call(lab, "POST", "/dashboard/session", &[("x-warden-csrf", "1")], &body).await;
    assert_eq!(reply.status, 200, "{:?}", String::from_utf8_lossy(&reply.body));
    let set_cookie = reply.header("set-cookie").expect("a session cookie").to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(!set_cookie.contains(&lab.server.api_token), "the cookie is not the token: {set_cookie}");
    set_cookie.split(';').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_its_files_are_served_with_their_content_types() {
    let lab = lab(Duration::ZERO).await;
    for (path, content_type, needle) in [
        ("/", "text/html; charset=utf-8", "<title>Warden</title>"),
        ("/dashboard/assets/app.js", "text/javascript; charset=utf-8", "EventSource"),
        ("/dashboard/assets/app.css", "text/css; charset=utf-8", "@media"),
        ("/dashboard/assets/vendor/uPlot.iife.min.js", "text/javascript; charset=utf-8", "uPlot"),
        ("/dashboard/assets/vendor/uPlot.min.css", "text/css; charset=utf-8", ".uplot"),
    ] {
        let reply = call(&lab, "GET", path, &[], "").await;
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.header("content-type"), Some(content_type), "{path}");
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"), "{path}");
        assert!(String::from_utf8_lossy(&reply.body).contains(needle), "{path} lacks {needle}");
    }
    // The page and its files need no credentials; a missing file is an AWS-shaped 404.
    let reply = call(&lab, "GET", "/dashboard/assets/../Cargo.toml", &[], "").await;
    assert_eq!(reply.status, 404);
    let reply = call(&lab, "GET", "/dashboard/assets/nothing.js", &[], "").await;
    assert_eq!(reply.error(), (404, "ResourceNotFoundException"));
    lab.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_cookie_authenticates_the_api_and_changes_need_the_csrf_header() {
    let lab = lab(Duration::ZERO).await;
    lab.device("dev-1").await;

    // Not signed in: the API refuses, and the page is told to show its sign-in form.
    let reply = call(&lab, "GET", "/dashboard/session", &[], "").await;
    assert_eq!(reply.json(), json!({ "signedIn": false }));
    assert_eq!(
        call(&lab, "GET", "/things", &[], "").await.error(),
        (401, "MissingAuthenticationTokenException")
    );

    // A wrong token, or no CSRF header, signs nobody in.
    let wrong = json!({ "token": "wdn_not-the-token" }).to_string();
    let reply = call(&lab, "POST", "/dashboard/session", &[("x-warden-csrf", "1")], &wrong).await;
    assert_eq!(reply.error(), (403, "UnrecognizedClientException"));
    assert!(reply.header("set-cookie").is_none());
    let right = json!({ "token": lab.server.api_token }).to_string();
    let reply = call(&lab, "POST", "/dashboard/session", &[], &right).await;
    assert_eq!(reply.error(), (403, "AccessDeniedException"));

    let cookie = sign_in(&lab).await;
    let reply = call(&lab, "GET", "/dashboard/session", &[("cookie", &cookie)], "").await;
    assert_eq!(reply.json(), json!({ "signedIn": true }));
    // Reads need only the cookie.
    let reply = call(&lab, "GET", "/things", &[("cookie", &cookie)], "").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["things"][0]["thingName"], "dev-1");

    // A change with the cookie alone is refused (CSRF), and nothing changed.
    let reply = call(&lab, "POST", "/thing-groups/Quarantine", &[("cookie", &cookie)], "").await;
    assert_eq!(reply.error(), (403, "AccessDeniedException"));
    let reply = call(&lab, "GET", "/thing-groups/Quarantine", &[("cookie", &cookie)], "").await;
    assert_eq!(reply.status, 404);
    // With the header it goes through; from another site's page (Origin) it does not.
    let evil = [("cookie", cookie.as_str()), ("x-warden-csrf", "1"), ("origin", "http://evil.example")];
    let reply = call(&lab, "POST", "/thing-groups/Quarantine", &evil, "").await;
    assert_eq!(reply.error(), (403, "AccessDeniedException"));
    let origin = format!("http://{}", lab.server.http_addr);
    let ok = [("cookie", cookie.as_str()), ("x-warden-csrf", "1"), ("origin", origin.as_str())];
    let reply = call(&lab, "POST", "/thing-groups/Quarantine", &ok, "").await;
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));

    // A made-up cookie is refused.
    let forged = "warden_session=00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    let reply = call(&lab, "GET", "/things", &[("cookie", forged)], "").await;
    assert_eq!(reply.error(), (403, "UnrecognizedClientException"));

    // Signing out ends the session on the server, not only in the browser.
    let reply =
        call(&lab, "DELETE", "/dashboard/session", &[("cookie", &cookie), ("x-warden-csrf", "1")], "").await;
    assert_eq!(reply.status, 200);
    assert!(reply.header("set-cookie").unwrap().contains("Max-Age=0"));
    let reply = call(&lab, "GET", "/things", &[("cookie", &cookie)], "").await;
    assert_eq!(reply.error(), (403, "UnrecognizedClientException"));
    lab.server.shutdown().await;
}

/// An open `/warden/events` stream of a signed-in session, read past its `hello`.
struct EventStream {
    body: Incoming,
    /// Received text not yet split into events.
    buffer: String,
}

impl EventStream {
    async fn open(lab: &Lab, cookie: &str) -> EventStream {
        let response = open(lab, "GET", "/warden/events", &[("cookie", cookie)], "").await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let mut stream = EventStream { body: response.into_body(), buffer: String::new() };
        stream.next(|e| e["type"] == "hello").await;
        stream
    }

    /// Reads on until an event for which `f` holds.
    async fn next(&mut self, f: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let message: String = self.buffer.drain(..end + 2).collect();
                for line in message.lines() {
                    if let Some(data) = line.strip_prefix("data: ") {
                        let event: Value = serde_json::from_str(data).unwrap();
                        if f(&event) {
                            return event;
                        }
                    }
                }
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let frame =
                tokio::time::timeout(left, self.body.frame()).await.expect("timed out waiting for an event");
            let frame = frame.expect("the stream ended").unwrap();
            if let Ok(data) = frame.into_data() {
                self.buffer.push_str(std::str::from_utf8(&data).unwrap());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_carries_sessions_reports_and_memberships_and_the_fleet_shows_them() {
    let lab = lab(Duration::ZERO).await;
    let device = lab.device("dev-1").await;
    lab.device("dev-2").await;
    let cookie = sign_in(&lab).await;

    // The stream needs credentials like any API call.
    let refused = call(&lab, "GET", "/warden/events", &[], "").await;
    assert_eq!(refused.error(), (401, "MissingAuthenticationTokenException"));
    let mut events = EventStream::open(&lab, &cookie).await;

    // A device connects and reports over MQTT/TLS.
    let mut client = lab.client(&device, "dev-1");
    client.connect().await.unwrap();
    let session = events.next(|e| e["type"] == "session").await;
    assert_eq!(session, json!({ "type": "session", "thing": "dev-1", "connected": true }));
    client.subscribe("$aws/things/dev-1/defender/metrics/+/+").await;
    let report = json!({
        "header": { "report_id": 1, "version": "1.0" },
        "metrics": {
            "network_stats": { "bytes_in": 100, "bytes_out": 4200, "packets_in": 3, "packets_out": 7 },
            "listening_tcp_ports": { "ports": [{ "port": 22 }, { "port": 443 }], "total": 2 },
        },
    });
    let reply = client.report("dev-1", Format::Json, report.to_string().as_bytes()).await;
    assert_eq!(reply.status, ReplyStatus::Accepted);
    let event = events.next(|e| e["type"] == "report").await;
    assert_eq!(event["thing"], "dev-1");
    assert!(event["timestamp"].as_f64().unwrap() > 1.7e9, "{event}");
    assert_eq!(event["metrics"]["aws:all-bytes-out"], json!({ "count": 4200 }));
    assert_eq!(event["metrics"]["aws:listening-tcp-ports"], json!({ "ports": [22, 443] }));
    assert_eq!(event["metrics"]["aws:num-listening-tcp-ports"], json!({ "count": 2 }));

    // Quarantine: the group a mitigation action moves things to.
    lab.api("POST", "/thing-groups/Quarantine", None).await;
    lab.api(
        "POST",
        "/mitigationactions/actions/QuarantineAction",
        Some(json!({
            "roleArn": "arn:aws:iam::123456789012:role/Mitigation",
            "actionParams": { "addThingsToThingGroupParams": { "thingGroupNames": ["Quarantine"] } },
        })),
    )
    .await;
    lab.api(
        "PUT",
        "/thing-groups/addThingToThingGroup",
        Some(json!({ "thingGroupName": "Quarantine", "thingName": "dev-1" })),
    )
    .await;
    let groups = events.next(|e| e["type"] == "groups").await;
    assert_eq!(groups, json!({ "type": "groups", "thing": "dev-1" }));

    // The fleet: one row per thing, with what the stream told.
    let reply = call(&lab, "GET", "/warden/fleet?maxResults=1", &[("cookie", &cookie)], "").await;
    assert_eq!(reply.status, 200);
    let page = reply.json();
    let row = &page["things"][0];
    assert_eq!(row["thingName"], "dev-1");
    assert_eq!(row["groups"], json!(["Quarantine"]));
    assert_eq!(
        (&row["connected"], &row["quarantined"], &row["inAlarm"]),
        (&json!(true), &json!(true), &json!(0))
    );
    assert_eq!(row["lastReportTime"], event["timestamp"]);
    assert_eq!(page["quarantineGroups"], json!(["Quarantine"]));
    let token = page["nextToken"].as_str().expect("a second page");
    let reply = call(
        &lab,
        "GET",
        &format!("/warden/fleet?maxResults=1&nextToken={token}"),
        &[("cookie", &cookie)],
        "",
    )
    .await;
    let page = reply.json();
    assert_eq!(page["things"][0]["thingName"], "dev-2");
    assert_eq!(
        (
            &page["things"][0]["connected"],
            &page["things"][0]["lastReportTime"],
            &page["things"][0]["quarantined"]
        ),
        (&json!(false), &Value::Null, &json!(false))
    );
    assert!(page.get("nextToken").is_none());
    // One row by name; an unknown thing is an AWS-shaped 404; bad input a 400.
    let one = call(&lab, "GET", "/warden/fleet?thingName=dev-2", &[("cookie", &cookie)], "").await.json();
    assert_eq!(one["things"].as_array().unwrap().len(), 1);
    // Both on one page (their states are read together): each row has its own thing's.
    let both = call(&lab, "GET", "/warden/fleet?maxResults=2", &[("cookie", &cookie)], "").await.json();
    assert_eq!(
        (&both["things"][0]["lastReportTime"], &both["things"][1]["lastReportTime"]),
        (&event["timestamp"], &Value::Null)
    );
    let missing = call(&lab, "GET", "/warden/fleet?thingName=nobody", &[("cookie", &cookie)], "").await;
    assert_eq!(missing.error(), (404, "ResourceNotFoundException"));
    let bad = call(&lab, "GET", "/warden/fleet?maxResults=0", &[("cookie", &cookie)], "").await;
    assert_eq!(bad.error(), (400, "InvalidRequestException"));

    // The device view's summary.
    let overview =
        call(&lab, "GET", "/warden/things/dev-1/overview", &[("cookie", &cookie)], "").await.json();
    assert_eq!(overview["certificates"][0]["certificateId"], device.certificate_id);
    assert_eq!(overview["certificates"][0]["status"], "ACTIVE");
    assert_eq!(overview["sessions"][0]["clientId"], "dev-1");
    assert_eq!(overview["effectiveGroups"], json!(["Quarantine"]));

    // Disconnecting is an event too.
    drop(client);
    let session = events.next(|e| e["type"] == "session").await;
    assert_eq!(session, json!({ "type": "session", "thing": "dev-1", "connected": false }));

    // Shutdown ends the stream (HTTP would otherwise wait for it forever).
    let shutdown = tokio::spawn(lab.server.shutdown());
    tokio::time::timeout(WAIT, async {
        while let Some(frame) = events.body.frame().await {
            if frame.is_err() {
                break;
            }
        }
    })
    .await
    .expect("the stream ends at shutdown");
    tokio::time::timeout(WAIT, shutdown).await.expect("shutdown finishes").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_falls_behind_is_told_to_resync_and_never_holds_up_publishers() {
    let lab = lab(Duration::ZERO).await;
    let cookie = sign_in(&lab).await;
    let mut events = EventStream::open(&lab, &cookie).await;

    // A reader that reads nothing while far more than the bus holds is published: 20,000
    // events of 2 KB, more than the socket buffers take. Publishing never waits for it.
    let metrics: serde_json::Map<String, Value> = (0..40)
        .map(|i| (format!("custom-metric-{i:02}-{}", "x".repeat(20)), json!({ "count": i })))
        .collect();
    for n in 0..20_000 {
        lab.server.state.emit(LiveEvent::Report {
            thing: format!("dev-{n}"),
            timestamp: n as f64,
            metrics: metrics.clone(),
        });
    }
    // It is told it missed some, and then sees new events again.
    events.next(|e| e["type"] == "resync").await;
    lab.server.state.emit(LiveEvent::Groups { thing: Some("after".into()) });
    let after = events.next(|e| e["type"] == "groups").await;
    assert_eq!(after["thing"], "after");
    lab.server.shutdown().await;
}

/// A stream opened with the session cookie ends once that session does (here, sign-out), at its
/// next keep-alive, so a signed-out tab or a stolen cookie stops receiving the fleet's events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_out_ends_the_sessions_event_streams() {
    let lab = lab(Duration::ZERO).await;
    let cookie = sign_in(&lab).await;
    let mut events = EventStream::open(&lab, &cookie).await;
    let out =
        call(&lab, "DELETE", "/dashboard/session", &[("cookie", &cookie), ("x-warden-csrf", "1")], "").await;
    assert_eq!(out.status, 200);
    // The stream ends (no more frames) within a keep-alive period.
    let deadline = tokio::time::Instant::now() + warden_server::dashboard::KEEPALIVE + WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, events.body.frame()).await.expect("the stream outlived its session")
        {
            None => break,
            Some(frame) => drop(frame.unwrap()),
        }
    }
    lab.server.shutdown().await;
}
