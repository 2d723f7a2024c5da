//! The AWS workshop end to end with simulated devices: a benign fleet under the workshop's
//! profile raises no alarm; a device told `large-payload` goes in alarm, is quarantined
//! automatically, and sees its telemetry refused while its reports are still accepted.

use serde_json::json;
use warden_sim::fleet::{DeviceEvent, Link};
use warden_sim::lab::{Alert, AlertReceiver};
use warden_sim::misbehaviour::Misbehaviour;

use crate::harness::{Lab, Shape, eventually, lab, next_event};

/// The workshop's set-up through the API ([`warden_sim::lab`]), alerting to a webhook of the
/// test.
async fn workshop(lab: &Lab) -> (AlertReceiver, tokio::sync::mpsc::Receiver<Alert>) {
    let (receiver, alerts) = AlertReceiver::start().await.unwrap();
    let (api, url) = (lab.api.clone(), receiver.url());
    tokio::task::spawn_blocking(move || warden_sim::lab::set_up(&api, Some(&url))).await.unwrap().unwrap();
    (receiver, alerts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_payload_device_is_alarmed_quarantined_and_still_reports() {
    let lab = lab().await;
    let (receiver, mut alerts) = workshop(&lab).await;
    // Every class, each report five simulated minutes, telemetry twice a report.
    let (fleet, _) = lab.fleet(&Shape { devices: 6, ..Shape::default() }).await;
    let mut events = fleet.events();
    eventually("three accepted reports from every device", || async {
        fleet.devices().iter().all(|d| d.reports_accepted >= 3).then_some(())
    })
    .await;
    let active = lab.ok("GET", "/active-violations", None).await;
    assert_eq!(active["activeViolations"], json!([]), "a benign fleet raises no alarm");

    let bad = "sim-00002";
    fleet.misbehave(bad, Misbehaviour::LargePayload, None).await.unwrap();
    let violation = eventually("the in-alarm violation", || async {
        let active = lab.ok("GET", "/active-violations", None).await;
        active["activeViolations"].as_array().unwrap().first().cloned()
    })
    .await;
    assert_eq!(violation["thingName"], bad);
    assert_eq!(violation["behavior"]["name"], "OutboundBytesBehavior");
    assert!(violation["lastViolationValue"]["count"].as_u64().unwrap() > 35_000, "{violation}");
    let alert = tokio::time::timeout(crate::harness::WAIT, alerts.recv()).await.unwrap().unwrap();
    assert_eq!((alert.thing.as_str(), alert.event_type.as_str()), (bad, "in-alarm"));
    assert_eq!(alert.violation_id, violation["violationId"].as_str().unwrap());

    // Quarantined: its application's telemetry is refused (PUBACK 0x87, the session stays up),
    next_event(&mut events, "the refused telemetry", |e| match e {
        DeviceEvent::PublishDenied { thing, link: Link::App, topic: Some(topic) }
            if thing == bad && *topic == format!("things/{bad}/telemetry") =>
        {
            Some(())
        }
        _ => None,
    })
    .await;
    let groups = lab.ok("GET", &format!("/things/{bad}/thing-groups"), None).await;
    assert_eq!(groups["thingGroups"][0]["groupName"], "Quarantine", "{groups}");
    let d = fleet.device(bad).unwrap();
    assert!(d.contained, "{d:?}");
    // while its metrics reports are still accepted.
    let accepted = d.reports_accepted;
    eventually("a report accepted after the quarantine", || async {
        (fleet.device(bad).unwrap().reports_accepted > accepted).then_some(())
    })
    .await;
    assert_eq!(fleet.device(bad).unwrap().app.unwrap().state, warden_sim::fleet::LinkState::Connected);

    // Nobody else is in alarm or contained.
    let active = lab.ok("GET", "/active-violations", None).await;
    let alarmed: Vec<&str> = active["activeViolations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["thingName"].as_str().unwrap())
        .collect();
    assert_eq!(alarmed, [bad]);
    assert_eq!(fleet.totals().contained, 1);
    assert_eq!(fleet.totals().reports_rejected, 0);
    fleet.shutdown().await;
    receiver.stop().await;
}
