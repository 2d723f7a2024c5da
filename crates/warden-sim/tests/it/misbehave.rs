//! Each misbehaviour, started at run time, changes what the server stores the way the real
//! behaviour would: the device-side metrics of its reports, and the cloud-side metrics of its
//! MQTT traffic where it involves that traffic.

use std::collections::BTreeSet;
use std::time::Duration;

use warden_sim::class::{ClassMix, DeviceClass};
use warden_sim::fleet::{DeviceEvent, Fleet};
use warden_sim::misbehaviour::Misbehaviour;

use crate::harness::{Lab, Shape, eventually, lab, next_event};

/// Waits until `thing` has `n` more accepted reports than it had when called.
async fn more_reports(fleet: &Fleet, thing: &str, n: u64) {
    let start = fleet.device(thing).unwrap().reports_accepted;
    eventually(&format!("{n} more reports from {thing}"), || async {
        (fleet.device(thing).unwrap().reports_accepted >= start + n).then_some(())
    })
    .await;
}

/// The value sets (ports, addresses) of the thing's datapoints of `metric`, oldest first.
async fn sets(lab: &Lab, thing: &str, metric: &str) -> Vec<BTreeSet<String>> {
    lab.datapoints(thing, metric)
        .await
        .into_iter()
        .map(|d| {
            let ports = d.value.ports.unwrap_or_default().into_iter().map(|p| p.to_string());
            ports.chain(d.value.cidrs.unwrap_or_default()).collect()
        })
        .collect()
}

fn fleet_address(ip: &str) -> bool {
    ip.starts_with("203.0.113.")
        || ip.starts_with("198.51.100.")
        || ip.starts_with("192.168.")
        || ip == "127.0.0.1"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_misbehaviour_changes_the_stored_metrics_as_the_real_behaviour_would() {
    let lab = lab().await;
    // Meters: the quietest class, so every change stands out. Each report is 5 minutes.
    let shape = Shape { devices: 10, mix: ClassMix::only(DeviceClass::Meter), ..Shape::default() };
    let (fleet, _) = lab.fleet(&shape).await;
    let mut events = fleet.events();
    let thing = |i: usize| format!("sim-{i:05}");
    eventually("one accepted report from every device", || async {
        fleet.devices().iter().all(|d| d.reports_accepted >= 1).then_some(())
    })
    .await;
    for (i, kind) in Misbehaviour::ALL.into_iter().enumerate() {
        fleet.misbehave(&thing(i), kind, None).await.unwrap();
    }
    let calm = thing(9);
    for i in 0..10 {
        more_reports(&fleet, &thing(i), 3).await;
    }

    let last = |v: &[u64]| *v.last().unwrap();
    let first = |v: &[u64]| v[0];

    // large-payload: 64 KiB more per report period (two 32 KiB telemetry messages here),
    // really published: over the workshop's threshold, and the server sees the message size.
    let t = thing(0);
    let out = lab.counts(&t, "aws:all-bytes-out").await;
    assert!(first(&out) < 35_000 && last(&out) > 35_000, "{out:?}");
    let sizes = lab.counts(&t, "aws:message-byte-size").await;
    assert!(sizes.iter().any(|&s| s > 30_000), "cloud-side message size: {sizes:?}");

    // scan: a flood of small packets, Mirai's lock port, telnet sessions to new hosts.
    let t = thing(1);
    let packets = lab.counts(&t, "aws:all-packets-out").await;
    assert!(first(&packets) < 1_000 && last(&packets) > 30_000, "{packets:?}");
    let tcp = sets(&lab, &t, "aws:listening-tcp-ports").await;
    assert!(!tcp[0].contains("48101") && tcp.last().unwrap().contains("48101"), "{tcp:?}");
    let conns = lab.counts(&t, "aws:num-established-tcp-connections").await;
    assert!(last(&conns) > first(&conns), "{conns:?}");

    // flood (UDP): volume, and the sending socket's UDP port.
    let t = thing(2);
    let out = lab.counts(&t, "aws:all-bytes-out").await;
    assert!(last(&out) > 100_000_000, "{out:?}");
    let udp = lab.counts(&t, "aws:num-listening-udp-ports").await;
    assert_eq!(last(&udp), first(&udp) + 1, "{udp:?}");

    // flood-syn: packets of 60 bytes, no new port.
    let t = thing(3);
    let (out, packets) =
        (lab.counts(&t, "aws:all-bytes-out").await, lab.counts(&t, "aws:all-packets-out").await);
    assert!(last(&packets) > 1_000_000, "{packets:?}");
    assert!((55..=65).contains(&(last(&out) / last(&packets))), "{out:?} {packets:?}");

    // backdoor-port: a bind shell's port.
    let t = thing(4);
    let tcp = sets(&lab, &t, "aws:listening-tcp-ports").await;
    let new: Vec<&String> = tcp.last().unwrap().difference(&tcp[0]).collect();
    assert_eq!(new.len(), 1, "{tcp:?}");
    assert!(["4444", "31337", "1337", "6666", "5555"].contains(&new[0].as_str()), "{new:?}");

    // beacon: one new remote address, outside the fleet's ranges, in every later report.
    let t = thing(5);
    let ips = sets(&lab, &t, "aws:destination-ip-addresses").await;
    let (before, after) = (&ips[0], &ips[ips.len() - 2..]);
    let c2: Vec<&String> = after[0].difference(before).filter(|ip| !fleet_address(ip)).collect();
    assert_eq!(c2.len(), 1, "{ips:?}");
    assert!(!fleet_address(c2[0]) && after[1].contains(c2[0]), "{ips:?}");

    // exfil: bytes out rising report after report.
    let t = thing(6);
    more_reports(&fleet, &t, 4).await;
    let out = lab.counts(&t, "aws:all-bytes-out").await;
    // Against the smaller of the first two: one of them may carry a (rare) benign burst.
    assert!(last(&out) > out[0].min(out[1]) + 5_000, "{out:?}");

    // auth-errors: PUBACK 0x87 for the forbidden topics, counted by the server as
    // authorization failures; the session stays up.
    let t = thing(7);
    let topic = next_event(&mut events, "a denied publish", |e| match e {
        DeviceEvent::PublishDenied { thing, topic, .. } if *thing == t => topic.clone(),
        _ => None,
    })
    .await;
    assert!(
        topic == "invalid-topic-for-error" || topic == format!("$aws/things/{t}-peer/shadow/update"),
        "{topic}"
    );
    let failures = eventually("authorization failures", || async {
        let total: u64 = lab.counts(&t, "aws:num-authorization-failures").await.iter().sum();
        (total >= 2).then_some(total)
    })
    .await;
    assert!(failures >= 2);
    let d = fleet.device(&t).unwrap();
    assert!(d.app.unwrap().publish_denied >= 2 && !d.contained, "telemetry itself is still allowed");

    // reconnect-storm: connections dropped and re-opened, seen by the server.
    let t = thing(8);
    let disconnects = eventually("disconnects", || async {
        let total: u64 = lab.counts(&t, "aws:num-disconnects").await.iter().sum();
        (total >= 3).then_some(total)
    })
    .await;
    assert!(disconnects >= 3);
    assert!(fleet.device(&t).unwrap().agent.connects >= 3);

    // The calm device looks as it did.
    let tcp = sets(&lab, &calm, "aws:listening-tcp-ports").await;
    assert!(tcp.iter().all(|s| s.is_empty()), "meters listen on no TCP port: {tcp:?}");
    let out = lab.counts(&calm, "aws:all-bytes-out").await;
    assert!(out.iter().all(|&b| b < 20_000), "{out:?}");
    assert_eq!(fleet.totals().reports_rejected, 0);
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misbehaviour_for_a_while_stops_by_itself_and_calm_stops_the_rest() {
    let lab = lab().await;
    let shape = Shape { devices: 1, telemetry: None, ..Shape::default() };
    let (fleet, _) = lab.fleet(&shape).await;
    let mut events = fleet.events();
    let t = "sim-00000";
    fleet.misbehave(t, Misbehaviour::Beacon, Some(Duration::from_millis(1500))).await.unwrap();
    fleet.misbehave(t, Misbehaviour::BackdoorPort, None).await.unwrap();
    let d = fleet.device(t).unwrap();
    let kinds: Vec<_> = d.misbehaving.iter().map(|a| (a.kind, a.remaining_s.is_some())).collect();
    assert_eq!(kinds, [(Misbehaviour::Beacon, true), (Misbehaviour::BackdoorPort, false)]);
    let stopped = next_event(&mut events, "the beacon's end", |e| match e {
        DeviceEvent::MisbehaviourStopped { kind, .. } => Some(*kind),
        _ => None,
    })
    .await;
    assert_eq!(stopped, Misbehaviour::Beacon);
    assert_eq!(fleet.device(t).unwrap().misbehaving.len(), 1);
    assert!(fleet.calm(t, None).await.unwrap());
    assert!(!fleet.calm(t, None).await.unwrap(), "nothing left to stop");
    assert!(fleet.device(t).unwrap().misbehaving.is_empty());
    assert!(matches!(
        fleet.misbehave("sim-99999", Misbehaviour::Scan, None).await,
        Err(warden_sim::fleet::FleetError::UnknownThing(_))
    ));
    fleet.shutdown().await;
}
