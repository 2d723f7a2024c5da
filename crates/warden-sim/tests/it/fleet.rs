//! A small fleet end to end: registered through the API, connected with its own certificates,
//! every report accepted and stored, telemetry flowing; identities reused on the next start;
//! a deactivated certificate seen by its device as a refused connection.

use std::sync::atomic::Ordering::Relaxed;

use serde_json::json;
use warden_sim::fleet::{DeviceEvent, Link, LinkState};

use crate::harness::{Shape, eventually, lab, next_event};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_fleet_registers_through_the_api_and_every_report_is_accepted() {
    let lab = lab().await;
    let shape = Shape::default();
    let (fleet, progress) = lab.fleet(&shape).await;
    assert_eq!((progress.registered.load(Relaxed), progress.reused.load(Relaxed)), (5, 0));

    // Every device reports three times, all accepted, and its telemetry flows.
    eventually("three accepted reports from every device", || async {
        fleet.devices().iter().all(|d| d.reports_accepted >= 3 && d.telemetry_sent >= 3).then_some(())
    })
    .await;
    let totals = fleet.totals();
    assert_eq!(totals.reports_rejected, 0, "{totals:?}");
    assert_eq!((totals.agent_connected, totals.app_connected, totals.app_links), (5, 5, 5), "{totals:?}");
    for d in fleet.devices() {
        assert_eq!(
            (d.agent.state, d.app.as_ref().map(|a| a.state)),
            (LinkState::Connected, Some(LinkState::Connected))
        );
        assert!(!d.contained);
        // The server stored each accepted report's traffic, and counted the telemetry.
        let bytes_out = lab.counts(&d.thing, "aws:all-bytes-out").await;
        assert!(bytes_out.len() >= 3, "{}: {bytes_out:?}", d.thing);
        assert!(bytes_out.iter().all(|&b| b > 0 && b < 35_000), "benign: {bytes_out:?}");
        let sent = eventually("cloud-side message counts", || async {
            let total: u64 = lab.counts(&d.thing, "aws:num-messages-sent").await.iter().sum();
            (total >= 3).then_some(total)
        })
        .await;
        assert!(sent >= 3);
        // The thing carries its class, for grouping fleets by kind.
        let thing = lab.ok("GET", &format!("/things/{}", d.thing), None).await;
        assert_eq!(thing["attributes"], json!({ "simulated": "true", "deviceClass": d.class.as_str() }));
    }
    fleet.shutdown().await;

    // The next start reuses the identities in the state directory: no new certificate.
    let certificates =
        lab.ok("GET", "/certificates?pageSize=250", None).await["certificates"].as_array().unwrap().len();
    assert_eq!(certificates, 5);
    let (fleet, progress) = lab.fleet(&shape).await;
    assert_eq!((progress.registered.load(Relaxed), progress.reused.load(Relaxed)), (0, 5));
    // Report ids go on increasing: the server accepts the restarted devices' reports.
    eventually("accepted reports after the restart", || async {
        fleet.devices().iter().all(|d| d.reports_accepted >= 2).then_some(())
    })
    .await;
    assert_eq!(fleet.totals().reports_rejected, 0);
    let certificates =
        lab.ok("GET", "/certificates?pageSize=250", None).await["certificates"].as_array().unwrap().len();
    assert_eq!(certificates, 5);
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_whose_certificate_is_deactivated_sees_its_connection_refused() {
    let lab = lab().await;
    let shape = Shape { devices: 2, telemetry: None, ..Shape::default() };
    let (fleet, _) = lab.fleet(&shape).await;
    let mut events = fleet.events();
    eventually("both devices connected", || async { (fleet.totals().agent_connected == 2).then_some(()) })
        .await;

    let principals = lab.ok("GET", "/things/sim-00001/principals", None).await;
    let arn = principals["principals"][0].as_str().unwrap().to_owned();
    let id = arn.rsplit_once("/").unwrap().1.to_owned();
    lab.ok("PUT", &format!("/certificates/{id}?newStatus=INACTIVE"), None).await;

    // The live session is dropped, and every new CONNECT is refused.
    next_event(&mut events, "the closed connection", |e| match e {
        DeviceEvent::ConnectionClosed { thing, link: Link::Agent, .. } if thing == "sim-00001" => Some(()),
        _ => None,
    })
    .await;
    let reason = next_event(&mut events, "the refused CONNECT", |e| match e {
        DeviceEvent::ConnectionRefused { thing, link: Link::Agent, reason } if thing == "sim-00001" => {
            Some(reason.clone())
        }
        _ => None,
    })
    .await;
    assert!(reason.to_lowercase().contains("not authorized") || reason.contains("NotAuthorized"), "{reason}");
    let d = fleet.device("sim-00001").unwrap();
    assert_eq!(d.agent.state, LinkState::Refused);
    assert!(d.contained);
    assert!(d.agent.refusals >= 1);
    // The other device goes on reporting.
    let before = fleet.device("sim-00000").unwrap().reports_accepted;
    eventually("the other device's next report", || async {
        (fleet.device("sim-00000").unwrap().reports_accepted > before).then_some(())
    })
    .await;
    assert_eq!(fleet.totals().contained, 1);
    fleet.shutdown().await;
}
