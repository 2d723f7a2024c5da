//! From a [`MetricReport`] to a document tree with the chosen key names.
//!
//! Absent optional fields are left out rather than written as `null`: every byte costs on a
//! metered link. Custom `number` values without a fraction are written as integers (`75`, not
//! `75.0`), which is shorter in JSON and in CBOR and decodes to the same value. The tree borrows
//! key names and the report's text, so only containers and formatted addresses are allocated.

use crate::codec::Names;
use crate::keys::{self, Key};
use crate::model::*;
use crate::value::Value;
use std::borrow::Cow;
use std::net::SocketAddr;

struct MapBuilder<'r> {
    names: Names,
    entries: Vec<(Cow<'r, str>, Value<'r>)>,
}

impl<'r> MapBuilder<'r> {
    fn new(names: Names) -> Self {
        MapBuilder { names, entries: Vec::new() }
    }

    fn put(&mut self, key: Key, value: Value<'r>) -> &mut Self {
        let name = match self.names {
            Names::Long => key.long,
            Names::Short => key.short,
        };
        self.entries.push((Cow::Borrowed(name), value));
        self
    }

    fn put_opt(&mut self, key: Key, value: Option<Value<'r>>) -> &mut Self {
        if let Some(value) = value {
            self.put(key, value);
        }
        self
    }

    fn build(&mut self) -> Value<'r> {
        Value::Map(std::mem::take(&mut self.entries))
    }
}

pub(crate) fn report_to_value(r: &MetricReport, names: Names) -> Value<'_> {
    let header = MapBuilder::new(names)
        .put(keys::REPORT_ID, Value::Int(r.header.report_id.into()))
        .put(keys::VERSION, text(&r.header.version))
        .build();
    MapBuilder::new(names)
        .put(keys::HEADER, header)
        .put_opt(keys::METRICS, r.metrics.as_ref().map(|m| metrics(m, names)))
        .put_opt(
            keys::CUSTOM_METRICS,
            r.custom_metrics.as_ref().map(|cm| {
                Value::Map(
                    cm.iter().map(|(name, v)| (Cow::Borrowed(name.as_str()), custom_metric(v))).collect(),
                )
            }),
        )
        .build()
}

fn metrics(m: &Metrics, names: Names) -> Value<'_> {
    MapBuilder::new(names)
        .put_opt(keys::LISTENING_TCP_PORTS, m.listening_tcp_ports.as_ref().map(|l| ports(l, names)))
        .put_opt(keys::LISTENING_UDP_PORTS, m.listening_udp_ports.as_ref().map(|l| ports(l, names)))
        .put_opt(
            keys::NETWORK_STATS,
            m.network_stats.as_ref().map(|ns| {
                MapBuilder::new(names)
                    .put_opt(keys::BYTES_IN, ns.bytes_in.map(count))
                    .put_opt(keys::BYTES_OUT, ns.bytes_out.map(count))
                    .put_opt(keys::PACKETS_IN, ns.packets_in.map(count))
                    .put_opt(keys::PACKETS_OUT, ns.packets_out.map(count))
                    .build()
            }),
        )
        .put_opt(
            keys::TCP_CONNECTIONS,
            m.tcp_connections.as_ref().map(|tc| {
                MapBuilder::new(names)
                    .put_opt(
                        keys::ESTABLISHED_CONNECTIONS,
                        tc.established_connections.as_ref().map(|ec| {
                            MapBuilder::new(names)
                                .put_opt(
                                    keys::CONNECTIONS,
                                    ec.connections.as_ref().map(|cs| {
                                        Value::Array(cs.iter().map(|c| connection(c, names)).collect())
                                    }),
                                )
                                .put_opt(keys::TOTAL, ec.total.map(count))
                                .build()
                        }),
                    )
                    .build()
            }),
        )
        .build()
}

fn ports(l: &ListeningPorts, names: Names) -> Value<'_> {
    MapBuilder::new(names)
        .put_opt(
            keys::PORTS,
            l.ports.as_ref().map(|ports| {
                Value::Array(
                    ports
                        .iter()
                        .map(|p| {
                            MapBuilder::new(names)
                                .put(keys::PORT, count(p.port.into()))
                                .put_opt(keys::INTERFACE, p.interface.as_deref().map(text))
                                .build()
                        })
                        .collect(),
                )
            }),
        )
        .put_opt(keys::TOTAL, l.total.map(count))
        .build()
}

fn connection(c: &Connection, names: Names) -> Value<'_> {
    MapBuilder::new(names)
        .put(keys::REMOTE_ADDR, Value::Text(Cow::Owned(remote_addr(&c.remote_addr))))
        .put_opt(keys::LOCAL_PORT, c.local_port.map(|p| count(p.into())))
        .put_opt(keys::LOCAL_INTERFACE, c.local_interface.as_deref().map(text))
        .build()
}

/// `ip:port`, with IPv6 bracketed (`[2001:db8::1]:443`), which is unambiguous. Not
/// `SocketAddr`'s display: it would add an IPv6 scope id (`%3`), which no decoder accepts and
/// which means nothing off the device.
fn remote_addr(addr: &SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => a.to_string(),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

fn custom_metric(v: &CustomMetricValue) -> Value<'_> {
    let (key, value) = match v {
        CustomMetricValue::Number(n) => (keys::NUMBER, number(*n)),
        CustomMetricValue::NumberList(ns) => {
            (keys::NUMBER_LIST, Value::Array(ns.iter().copied().map(number).collect()))
        }
        CustomMetricValue::StringList(ss) => {
            (keys::STRING_LIST, Value::Array(ss.iter().map(|s| text(s)).collect()))
        }
        CustomMetricValue::IpList(ips) => (
            keys::IP_LIST,
            Value::Array(ips.iter().map(|ip| Value::Text(Cow::Owned(ip.to_string()))).collect()),
        ),
    };
    Value::Array(vec![Value::Map(vec![(Cow::Borrowed(key.long), value)])])
}

fn text(s: &str) -> Value<'_> {
    Value::Text(Cow::Borrowed(s))
}

fn count(n: u64) -> Value<'static> {
    Value::Int(n.into())
}

/// Integral values within ±2^53 (exact in a double) are written as integers.
fn number(n: f64) -> Value<'static> {
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if n.fract() == 0.0 && n.abs() <= EXACT && !(n == 0.0 && n.is_sign_negative()) {
        Value::Int(n as i128)
    } else {
        Value::Float(n)
    }
}
