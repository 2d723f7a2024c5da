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
//! zero counts, because "no messages" is a measurement.
//!
//! Behaviors may narrow a message metric to the topics of a `TOPIC_FILTER` dimension (`IN`: topics
//! matching one of its filters; `NOT_IN`: matching none). Only the series some behavior uses are
//! counted, [`DimensionSeries`] set by detection at each period's start. Pure: events and `now`
//! in, datapoints out.
//!
//! The server's own messages to a thing (one reply per report) are not events unless a series
//! needs their topics ([`CloudMetrics::needs_delivery_topics`]): the broker counts them per
//! session and the server adds the counts at the period's end ([`CloudMetrics::count_received`]).
//! Every report was otherwise two events for the one task that consumes them all.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use warden_broker::{BrokerEvent, Identity, is_valid_thing_name};
use warden_detect::{DimensionOperator, MetricDimension};
use warden_store::{Datapoint, MetricValue};

/// The message metrics a `TOPIC_FILTER` dimension can narrow.
const DIMENSIONED_METRICS: [&str; 4] = [
    "aws:num-messages-sent",
    "aws:num-messages-received",
    "aws:message-byte-size",
    "aws:num-authorization-failures",
];

/// A message metric counted only for topics that a dimension selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DimensionSeries {
    pub metric: String,
    pub dimension: MetricDimension,
    /// The dimension's topic filters (`stringValues`).
    pub filters: Vec<String>,
}

impl DimensionSeries {
    /// Whether a message on `topic` counts for this series.
    fn selects(&self, topic: &str) -> bool {
        let matched = self.filters.iter().any(|f| topic_matches(f, topic));
        matched == (self.dimension.operator == DimensionOperator::In)
    }

    /// Whether the metric can be narrowed by a topic dimension at all.
    pub fn supported(metric: &str) -> bool {
        DIMENSIONED_METRICS.contains(&metric)
    }
}

/// MQTT topic filter matching: `+` is one level, a trailing `#` any number (also none).
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    let mut levels = topic.split('/');
    for f in filter.split('/') {
        match (f, levels.next()) {
            ("#", _) => return true,
            ("+", Some(_)) => {}
            (f, Some(t)) if f == t => {}
            _ => return false,
        }
    }
    levels.next().is_none()
}

/// One thing's count (or largest size) in one dimension series.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct SeriesCounter {
    count: u64,
    max_bytes: Option<u64>,
}

/// A period's datapoints: the undivided series, stored and evaluated, and the dimensioned ones.
#[derive(Debug, Default)]
pub struct Period {
    pub points: Vec<Datapoint>,
    /// Per thing, the dimensioned datapoints for detection. Those of `IN` dimensions are also
    /// in `points` (with the dimension's name), for `ListMetricValues`.
    pub dimensioned: Vec<(String, warden_detect::Datapoint)>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Counters {
    connection_attempts: u64,
    disconnects: u64,
    authorization_failures: u64,
    messages_sent: u64,
    messages_received: u64,
    max_message_bytes: Option<u64>,
    source_ips: BTreeSet<IpAddr>,
    /// By index into the period's dimension series.
    series: HashMap<usize, SeriesCounter>,
}

/// The aggregation of the current period.
#[derive(Debug, Default)]
pub struct CloudMetrics {
    things: HashMap<String, Counters>,
    series: Arc<Vec<DimensionSeries>>,
}

impl CloudMetrics {
    pub fn new() -> Self {
        CloudMetrics::default()
    }

    fn thing(&mut self, thing: &str) -> &mut Counters {
        // Looked up before inserting: a thing seen before (the common case, twice per report)
        // costs no allocation.
        if !self.things.contains_key(thing) {
            self.things.insert(thing.to_owned(), Counters::default());
        }
        self.things.get_mut(thing).expect("inserted above")
    }

    /// The dimension series to count from now on. Counts of the series before are dropped:
    /// a behavior added mid-period sees a partial first period, as after a restart.
    /// `true` if they changed.
    pub fn set_series(&mut self, series: Arc<Vec<DimensionSeries>>) -> bool {
        if Arc::ptr_eq(&self.series, &series) {
            return false;
        }
        self.things.values_mut().for_each(|c| c.series.clear());
        self.series = series;
        true
    }

    /// Whether some series counts `aws:num-messages-received` by topic, so that every delivery
    /// must be observed as a `Delivered` event; otherwise the broker may count the server's own
    /// deliveries per session ([`CloudMetrics::count_received`]).
    pub fn needs_delivery_topics(&self) -> bool {
        self.series.iter().any(|s| s.metric == "aws:num-messages-received")
    }

    /// Counts `n` messages delivered to `thing` that were not observed as events.
    pub fn count_received(&mut self, thing: &str, n: u64) {
        self.thing(thing).messages_received += n;
    }

    /// Counts a message on `topic` of `metric` (with its size) for every series selecting it.
    fn count_series(&mut self, thing: &str, metric: &str, topic: &str, bytes: Option<u64>) {
        if self.series.is_empty() {
            return;
        }
        let series = self.series.clone();
        let counters = &mut self.thing(thing).series;
        for (i, _) in series.iter().enumerate().filter(|(_, s)| s.metric == metric && s.selects(topic)) {
            let c = counters.entry(i).or_default();
            c.count += 1;
            c.max_bytes = c.max_bytes.max(bytes);
        }
    }

    /// Counts one broker event. `thing_of` names the thing a session acts as (its certificate
    /// CN, or the attached thing its client id names).
    pub fn observe(&mut self, event: &BrokerEvent, thing_of: impl for<'a> Fn(&'a Identity) -> Cow<'a, str>) {
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
            BrokerEvent::Published { identity, payload, topic, .. } => {
                let thing = thing_of(identity);
                let bytes = payload.len() as u64;
                let c = self.thing(&thing);
                c.messages_sent += 1;
                c.max_message_bytes = c.max_message_bytes.max(Some(bytes));
                self.count_series(&thing, "aws:num-messages-sent", topic.as_ref(), None);
                self.count_series(&thing, "aws:message-byte-size", topic.as_ref(), Some(bytes));
            }
            BrokerEvent::PublishDenied { identity, topic: name, .. }
            | BrokerEvent::SubscribeDenied { identity, filter: name, .. } => {
                let thing = thing_of(identity);
                self.thing(&thing).authorization_failures += 1;
                self.count_series(&thing, "aws:num-authorization-failures", name.as_ref(), None);
            }
            // The server refused a delivery: not a request the device made.
            BrokerEvent::ReceiveDenied { .. } => {}
            BrokerEvent::Delivered { identity, topic, .. } => {
                let thing = thing_of(identity);
                self.thing(&thing).messages_received += 1;
                self.count_series(&thing, "aws:num-messages-received", topic.as_ref(), None);
            }
        }
    }

    /// Ends the period: the datapoints of every thing that was active or connected (`connected`
    /// lists the things with a live session and their addresses), stamped `now_ms`.
    pub fn flush(&mut self, connected: impl IntoIterator<Item = (String, IpAddr)>, now_ms: i64) -> Period {
        for (thing, ip) in connected {
            self.thing(&thing).source_ips.insert(ip);
        }
        let mut things: Vec<(String, Counters)> = self.things.drain().collect();
        things.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = Vec::new();
        let mut dimensioned = Vec::new();
        for (thing, c) in things {
            let shared: Arc<str> = thing.as_str().into();
            // Every series of the period gets a datapoint, zero when nothing matched.
            for (i, s) in self.series.iter().enumerate() {
                let counted = c.series.get(&i).cloned().unwrap_or_default();
                let value = if s.metric == "aws:message-byte-size" {
                    match counted.max_bytes {
                        Some(max) => MetricValue::count(max),
                        None => continue,
                    }
                } else {
                    MetricValue::count(counted.count)
                };
                if s.dimension.operator == DimensionOperator::In {
                    out.push(Datapoint {
                        thing: shared.clone(),
                        metric: s.metric.clone().into(),
                        dimension: Some(s.dimension.name.clone()),
                        timestamp_ms: now_ms,
                        value: value.clone(),
                    });
                }
                dimensioned.push((
                    thing.clone(),
                    warden_detect::Datapoint {
                        metric: s.metric.clone().into(),
                        dimension: Some(s.dimension.clone()),
                        timestamp_ms: now_ms,
                        value,
                    },
                ));
            }
            let mut push = |metric: &'static str, value: MetricValue| {
                out.push(Datapoint {
                    thing: shared.clone(),
                    metric: metric.into(),
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
        Period { points: out, dimensioned }
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
        points.iter().find(|d| &*d.thing == thing && d.metric == metric).map(|d| d.value.clone())
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
                received: std::time::Instant::now(),
            },
            BrokerEvent::Published {
                identity: a.clone(),
                topic: "t".into(),
                payload: vec![0; 40].into(),
                qos: 0,
                received: std::time::Instant::now(),
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
            m.observe(&e, |id| Cow::Borrowed(&id.thing));
        }
        let points = m.flush([], 1_000).points;
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
        assert!(points.iter().all(|d| d.timestamp_ms == 1_000 && &*d.thing == "dev-1"));
        assert!(m.flush([], 2_000).points.is_empty(), "a flush starts a new period");
    }

    #[test]
    fn connected_but_quiet_things_get_zero_counts() {
        let mut m = CloudMetrics::new();
        let points = m.flush([("dev-2".to_owned(), "10.0.0.9".parse().unwrap())], 5).points;
        assert_eq!(count(&points, "dev-2", "aws:num-messages-sent"), Some(0));
        assert_eq!(value(&points, "dev-2", "aws:message-byte-size"), None, "no message, no size");
        assert_eq!(
            value(&points, "dev-2", "aws:source-ip-address").and_then(|v| v.cidrs),
            Some(vec!["10.0.0.9".to_owned()])
        );
    }

    #[test]
    fn topic_filters_match_like_mqtt() {
        for (filter, topic, matches) in [
            ("things/+/telemetry", "things/dev-1/telemetry", true),
            ("things/+/telemetry", "things/dev-1/logs", false),
            ("things/#", "things", true),
            ("things/#", "things/dev-1/a/b", true),
            ("#", "anything/at/all", true),
            ("things/dev-1", "things/dev-1/more", false),
            ("things/dev-1/+", "things/dev-1", false),
            ("a/+", "a/", true),
        ] {
            assert_eq!(topic_matches(filter, topic), matches, "{filter} vs {topic}");
        }
    }

    #[test]
    fn dimension_series_count_the_topics_they_select() {
        let a = id("dev-1", "10.0.0.1");
        let series = |metric: &str, operator| DimensionSeries {
            metric: metric.into(),
            dimension: MetricDimension { name: "Telemetry".into(), operator },
            filters: vec!["things/+/telemetry".into()],
        };
        let mut m = CloudMetrics::new();
        assert!(!m.needs_delivery_topics());
        let sent_only = Arc::new(vec![series("aws:num-messages-sent", DimensionOperator::In)]);
        assert!(m.set_series(sent_only.clone()));
        assert!(!m.set_series(sent_only), "the same series again is no change");
        assert!(!m.needs_delivery_topics(), "deliveries may be counted without their topics");
        assert!(m.set_series(Arc::new(vec![
            series("aws:num-messages-sent", DimensionOperator::In),
            series("aws:num-messages-sent", DimensionOperator::NotIn),
            series("aws:message-byte-size", DimensionOperator::In),
            series("aws:num-messages-received", DimensionOperator::In),
        ])));
        assert!(m.needs_delivery_topics(), "a series counts deliveries by topic");
        let publish = |topic: &str, size: usize| BrokerEvent::Published {
            identity: a.clone(),
            topic: topic.into(),
            payload: vec![0; size].into(),
            qos: 0,
            received: std::time::Instant::now(),
        };
        for e in [
            publish("things/dev-1/telemetry", 10),
            publish("things/dev-1/telemetry", 70),
            publish("x/y", 500),
        ] {
            m.observe(&e, |id| Cow::Borrowed(&id.thing));
        }
        let period = m.flush([], 9);
        let of = |operator, metric: &str| {
            period
                .dimensioned
                .iter()
                .find(|(t, d)| {
                    t == "dev-1" && d.metric == metric && d.dimension.as_ref().unwrap().operator == operator
                })
                .map(|(_, d)| d.value.count.unwrap())
        };
        assert_eq!(of(DimensionOperator::In, "aws:num-messages-sent"), Some(2));
        assert_eq!(of(DimensionOperator::NotIn, "aws:num-messages-sent"), Some(1));
        assert_eq!(of(DimensionOperator::In, "aws:message-byte-size"), Some(70));
        assert_eq!(of(DimensionOperator::In, "aws:num-messages-received"), Some(0), "zero is a measurement");
        // IN series are stored under the dimension's name; NOT_IN ones only evaluated.
        let stored: Vec<_> = period
            .points
            .iter()
            .filter(|d| d.dimension.is_some())
            .map(|d| (&*d.metric, d.value.count.unwrap()))
            .collect();
        assert_eq!(
            stored,
            [("aws:num-messages-sent", 2), ("aws:message-byte-size", 70), ("aws:num-messages-received", 0)]
        );
    }
}
