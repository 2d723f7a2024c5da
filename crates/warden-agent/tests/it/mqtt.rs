//! The agent against a real Mosquitto broker with mTLS: what it publishes, on which topic, with
//! which ids, and how it handles replies and refused certificates.

use std::time::Duration;

use warden_testkit::{KeyKind, Message, Mosquitto, MosquittoOptions, Pki, require_mosquitto, thing_acl};
use warden_wire::{
    ErrorCode, Format, Limits, MetricReport, Reply, ReplyStatus, ReportTopic, TopicKind, decode_report,
    encode_reply,
};

use crate::harness::{Agent, WAIT};

const THING: &str = "dev-1";
const OBSERVER: &str = "observer";

struct Lab {
    pki: Pki,
    broker: Mosquitto,
    state: tempfile::TempDir,
}

fn lab() -> Option<Lab> {
    if !require_mosquitto() {
        return None;
    }
    let pki = Pki::new();
    let broker =
        Mosquitto::start(&pki, MosquittoOptions { acl: Some(thing_acl(OBSERVER)), ..Default::default() })
            .unwrap();
    Some(Lab { pki, broker, state: tempfile::tempdir().unwrap() })
}

impl Lab {
    fn agent(&self, key: KeyKind, extra: &[&str]) -> Agent {
        let cert = self.pki.client(THING, key);
        let mut args = Agent::connection_args(&self.pki, &self.broker, THING, &cert, self.state.path());
        args.extend(extra.iter().map(|s| s.to_string()));
        Agent::spawn(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    fn observe(&self, filter: &str) -> warden_testkit::Subscription {
        self.broker.subscribe(&self.pki.client(OBSERVER, KeyKind::EcdsaP256), filter).unwrap()
    }
}

fn recv(sub: &warden_testkit::Subscription, agent: &Agent) -> Message {
    sub.recv(WAIT).unwrap_or_else(|| panic!("no message from the agent; log:\n{}", agent.log.join("\n")))
}

fn decode(msg: &Message) -> (ReportTopic<'_>, MetricReport) {
    let topic = ReportTopic::parse(&msg.topic).expect("a Device Defender topic");
    assert_eq!(topic.kind, TopicKind::Report);
    let report = decode_report(&msg.payload, topic.format, &Limits::default())
        .unwrap_or_else(|e| panic!("payload on {} does not decode: {e}", msg.topic));
    (topic, report)
}

/// Reports over MQTT 3.1.1, CBOR with short names (the defaults), an ECDSA client certificate.
#[test]
fn publishes_reports_over_mtls_with_the_defaults() {
    let Some(lab) = lab() else { return };
    let reports = lab.observe("$aws/things/dev-1/defender/metrics/+");
    let mut agent = lab.agent(
        KeyKind::EcdsaP256,
        &[
            "--interval",
            "1s",
            "--jitter",
            "0s",
            "--max-reports",
            "3",
            "--replies",
            "false",
            "--client-id",
            "{thing}/agent",
        ],
    );

    let mut ids = Vec::new();
    for i in 0..3 {
        let msg = recv(&reports, &agent);
        assert_eq!(msg.topic, "$aws/things/dev-1/defender/metrics/cbor");
        assert_eq!(msg.payload[..4], [0xa2, 0x63, b'h', b'e'], "CBOR map with the short key \"hed\" first");
        let (topic, report) = decode(&msg);
        assert_eq!((topic.thing, topic.format), (THING, Format::Cbor));
        let metrics = report.metrics.expect("metrics");
        assert_eq!(metrics.network_stats.is_some(), i > 0, "only the first report lacks network_stats");
        ids.push(report.header.report_id);
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "report ids strictly increase: {ids:?}");
    assert!(agent.wait_exit().success());
    assert!(lab.broker.log().contains("as dev-1/agent"), "client id {{thing}}/agent was used");
}

/// MQTT 5 with an RSA key, JSON with long names; the broker acknowledges QoS 1 reports.
#[test]
fn publishes_over_mqtt5_with_an_rsa_key_in_json() {
    let Some(lab) = lab() else { return };
    let reports = lab.observe("$aws/things/dev-1/defender/metrics/+");
    let mut agent = lab.agent(
        KeyKind::Rsa2048,
        &[
            "--mqtt-version",
            "5",
            "--qos",
            "1",
            "--format",
            "json",
            "--names",
            "long",
            "--interval",
            "1s",
            "--max-reports",
            "2",
            "--replies",
            "false",
        ],
    );
    for _ in 0..2 {
        let msg = recv(&reports, &agent);
        assert_eq!(msg.topic, "$aws/things/dev-1/defender/metrics/json");
        assert!(
            msg.payload.starts_with(b"{\"header\":{\"report_id\":"),
            "{}",
            String::from_utf8_lossy(&msg.payload)
        );
        decode(&msg);
    }
    assert!(agent.wait_exit().success(), "exits after the PUBACK of the last report");
}

/// The agent subscribes to its replies, logs a rejection with its code and reason, and exits
/// once the last report is answered.
#[test]
fn logs_rejections_with_their_reason() {
    let Some(lab) = lab() else { return };
    let reports = lab.observe("$aws/things/dev-1/defender/metrics/cbor");
    let mut agent = lab.agent(KeyKind::EcdsaP256, &["--interval", "1s", "--max-reports", "2"]);
    let observer = lab.pki.client(OBSERVER, KeyKind::EcdsaP256);

    for (i, accepted) in [(0, true), (1, false)] {
        let msg = recv(&reports, &agent);
        let (topic, report) = decode(&msg);
        let status = if accepted {
            ReplyStatus::Accepted
        } else {
            ReplyStatus::Rejected {
                code: ErrorCode::InvalidPayload,
                message: "Malformed metrics report: test says no".into(),
            }
        };
        let reply = Reply {
            thing_name: THING.into(),
            report_id: Some(report.header.report_id),
            status,
            timestamp_ms: 1_700_000_000_000 + i,
        };
        // Publishing the reply before the agent subscribed would lose it; the agent subscribes
        // before its first report, so a report in hand means the subscription is in place.
        lab.broker
            .publish(&observer, &topic.reply(accepted).to_string(), &encode_reply(&reply, Format::Cbor))
            .unwrap();
        if accepted {
            agent.wait_for(&["report accepted", &report.header.report_id.to_string()]);
        } else {
            let line = agent.wait_for(&["report rejected"]);
            assert!(line.contains("InvalidPayload"), "{line}");
            assert!(line.contains("test says no"), "{line}");
            assert!(line.contains(&report.header.report_id.to_string()), "{line}");
        }
    }
    assert!(agent.wait_exit().success());
}

/// Report ids keep increasing when the agent restarts, whatever the clock says.
#[test]
fn report_ids_increase_across_restarts() {
    let Some(lab) = lab() else { return };
    let reports = lab.observe("$aws/things/dev-1/defender/metrics/+");
    let mut ids = Vec::new();
    for _ in 0..2 {
        let mut agent = lab.agent(KeyKind::EcdsaP256, &["--max-reports", "1", "--replies", "false"]);
        ids.push(decode(&recv(&reports, &agent)).1.header.report_id);
        assert!(agent.wait_exit().success());
    }
    assert!(ids[1] > ids[0], "{ids:?}");
    let saved: u64 =
        std::fs::read_to_string(lab.state.path().join("report-id")).unwrap().trim().parse().unwrap();
    assert_eq!(saved, ids[1]);
}

/// A certificate the broker does not trust: the agent keeps retrying with backoff.
#[test]
fn retries_with_backoff_when_the_broker_refuses_the_certificate() {
    let Some(lab) = lab() else { return };
    let foreign = lab.pki.foreign_client(THING);
    let mut args = Agent::connection_args(&lab.pki, &lab.broker, THING, &foreign, lab.state.path());
    args.extend(["--interval".into(), "1s".into()]);
    let mut agent = Agent::spawn(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let first = agent.wait_for(&["connection failed", "retry_in"]);
    let second = agent.wait_for(&["connection failed", "retry_in"]);
    assert!(!first.is_empty() && !second.is_empty());
    let started = std::time::Instant::now();
    agent.wait_for(&["connection failed"]);
    assert!(started.elapsed() >= Duration::from_millis(400), "third attempt waited for the backoff");
}
