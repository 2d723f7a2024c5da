//! Cloud-side metrics (spec §3.2): what the MQTT endpoint sees of each thing, aggregated per
//! period and stored as datapoints like the device-side ones.
//!
//! Per thing and period: `aws:num-connection-attempts` (accepted and refused CONNECTs),
//! `aws:num-disconnects`, `aws:num-authorization-failures` (refused CONNECTs, PUBLISHes and
//! SUBSCRIBEs), `aws:num-messages-sent` (allowed PUBLISHes, reports included),
//! `aws:num-messages-received` (deliveries to the thing), `aws:message-byte-size` (the largest
//! message the thing sent in the period; AWS evaluates each message, and a rule "size > N" holds
//! for some message exactly when it holds for the largest) and `aws:source-ip-address` (the
//! addresses it connected from). Things that were connected during the period but quiet get
//! zero counts, because "no messages" is a measurement. Pure: events and `now` in, datapoints out.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use warden_broker::{BrokerEvent, Identity, is_valid_thing_name};
use warden_store::{Datapoint, MetricValue};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Counters {
    connection_attempts: u64,
    disconnects: u64,
    authorization_failures: u64,
    messages_sent: u64,
    messages_received: u64,
    max_message_bytes: Option<u64>,
    source_ips: BTreeSet<IpAddr>,
}

/// The aggregation of the current period.
#[derive(Debug, Default)]
pub struct CloudMetrics {
    things: HashMap<String, Counters>,
}

impl CloudMetrics {
    pub fn new() -> Self {
        CloudMetrics::default()
    }

    fn thing(&mut self, thing: &str) -> &mut Counters {
        self.things.entry(thing.to_owned()).or_default()
    }

    /// Counts one broker event. `thing_of` names the thing a session acts as (its certificate
    /// CN, or the attached thing its client id names).
    pub fn observe(&mut self, event: &BrokerEvent, thing_of: impl Fn(&Identity) -> String) {
        match event {
            BrokerEvent::Connected(id) => {
                let c = self.thing(&thing_of(id));
                c.connection_attempts += 1;
                c.source_ips.insert(id.remote_addr.ip());
            }
            BrokerEvent::ConnectRefused { common_name: Some(cn), remote_addr, .. }
                if is_valid_thing_name(cn) =>
            {
                let c = self.thing(cn);
                c.connection_attempts += 1;
                c.authorization_failures += 1;
                c.source_ips.extend(remote_addr.map(|a| a.ip()));
            }
            BrokerEvent::ConnectRefused { .. } => {}
            BrokerEvent::Disconnected { identity, .. } => self.thing(&thing_of(identity)).disconnects += 1,
            BrokerEvent::Published { identity, payload, .. } => {
                let c = self.thing(&thing_of(identity));
                c.messages_sent += 1;
                c.max_message_bytes = c.max_message_bytes.max(Some(payload.len() as u64));
            }
            BrokerEvent::PublishDenied { identity, .. } | BrokerEvent::SubscribeDenied { identity, .. } => {
                self.thing(&thing_of(identity)).authorization_failures += 1
            }
            // The server refused a delivery: not a request the device made.
            BrokerEvent::ReceiveDenied { .. } => {}
            BrokerEvent::Delivered { identity, .. } => self.thing(&thing_of(identity)).messages_received += 1,
        }
    }

    /// Ends the period: the datapoints of every thing that was active or connected (`connected`
    /// lists the things with a live session and their addresses), stamped `now_ms`.
    pub fn flush(
        &mut self,
        connected: impl IntoIterator<Item = (String, IpAddr)>,
        now_ms: i64,
    ) -> Vec<Datapoint> {
        for (thing, ip) in connected {
            self.thing(&thing).source_ips.insert(ip);
        }
        let mut things: Vec<(String, Counters)> = self.things.drain().collect();
        things.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = Vec::new();
        for (thing, c) in things {
            let mut push = |metric: &str, value: MetricValue| {
                out.push(Datapoint {
                    thing: thing.clone(),
                    metric: metric.to_owned(),
                    dimension: None,
                    timestamp_ms: now_ms,
                    value,
                });
            };
            let count = MetricValue::count;
            push("aws:num-connection-attempts", count(c.connection_attempts));
            push("aws:num-disconnects", count(c.disconnects));
            push("aws:num-authorization-failures", count(c.authorization_failures));
            push("aws:num-messages-sent", count(c.messages_sent));
            push("aws:num-messages-received", count(c.messages_received));
            if let Some(max) = c.max_message_bytes {
                push("aws:message-byte-size", count(max));
            }
            if !c.source_ips.is_empty() {
                let cidrs = c.source_ips.iter().map(IpAddr::to_string);
                push("aws:source-ip-address", MetricValue::cidrs(cidrs));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use warden_broker::RefusalReason;

    fn id(thing: &str, ip: &str) -> Arc<Identity> {
        Arc::new(Identity {
            thing: thing.into(),
            client_id: thing.into(),
            cert_serial: "1".into(),
            remote_addr: format!("{ip}:40000").parse().unwrap(),
            mqtt5: false,
        })
    }

    fn value(points: &[Datapoint], thing: &str, metric: &str) -> Option<MetricValue> {
        points.iter().find(|d| d.thing == thing && d.metric == metric).map(|d| d.value.clone())
    }

    fn count(points: &[Datapoint], thing: &str, metric: &str) -> Option<u64> {
        value(points, thing, metric).and_then(|v| v.count)
    }

    #[test]
    fn aggregates_a_period_per_thing() {
        let a = id("dev-1", "10.0.0.1");
        let mut m = CloudMetrics::new();
        for e in [
            BrokerEvent::Connected(a.clone()),
            BrokerEvent::Published {
                identity: a.clone(),
                topic: "t".into(),
                payload: vec![0; 300].into(),
                qos: 0,
            },
            BrokerEvent::Published {
                identity: a.clone(),
                topic: "t".into(),
                payload: vec![0; 40].into(),
                qos: 0,
            },
            BrokerEvent::PublishDenied { identity: a.clone(), topic: "x".into() },
            BrokerEvent::SubscribeDenied { identity: a.clone(), filter: "#".into() },
            BrokerEvent::ReceiveDenied { identity: a.clone(), topic: "y".into() },
            BrokerEvent::Delivered { identity: a.clone(), topic: "r".into(), bytes: 90 },
            BrokerEvent::Disconnected { identity: a.clone(), reason: "gone".into() },
            BrokerEvent::ConnectRefused {
                client_id: "dev-1".into(),
                common_name: Some("dev-1".into()),
                remote_addr: Some("10.0.0.2:1".parse().unwrap()),
                reason: RefusalReason::Denied("certificate is INACTIVE".into()),
            },
            BrokerEvent::ConnectRefused {
                client_id: "x".into(),
                common_name: None,
                remote_addr: None,
                reason: RefusalReason::MissingCommonName,
            },
        ] {
            m.observe(&e, |id| id.thing.clone());
        }
        let points = m.flush([], 1_000);
        assert_eq!(count(&points, "dev-1", "aws:num-connection-attempts"), Some(2));
        assert_eq!(count(&points, "dev-1", "aws:num-disconnects"), Some(1));
        assert_eq!(count(&points, "dev-1", "aws:num-authorization-failures"), Some(3));
        assert_eq!(count(&points, "dev-1", "aws:num-messages-sent"), Some(2));
        assert_eq!(count(&points, "dev-1", "aws:num-messages-received"), Some(1));
        assert_eq!(count(&points, "dev-1", "aws:message-byte-size"), Some(300));
        assert_eq!(
            value(&points, "dev-1", "aws:source-ip-address").and_then(|v| v.cidrs),
            Some(vec!["10.0.0.1".to_owned(), "10.0.0.2".to_owned()])
        );
        assert!(points.iter().all(|d| d.timestamp_ms == 1_000 && d.thing == "dev-1"));
        assert!(m.flush([], 2_000).is_empty(), "a flush starts a new period");
    }

    #[test]
    fn connected_but_quiet_things_get_zero_counts() {
        let mut m = CloudMetrics::new();
        let points = m.flush([("dev-2".to_owned(), "10.0.0.9".parse().unwrap())], 5);
        assert_eq!(count(&points, "dev-2", "aws:num-messages-sent"), Some(0));
        assert_eq!(value(&points, "dev-2", "aws:message-byte-size"), None, "no message, no size");
        assert_eq!(
            value(&points, "dev-2", "aws:source-ip-address").and_then(|v| v.cidrs),
            Some(vec!["10.0.0.9".to_owned()])
        );
    }
}
