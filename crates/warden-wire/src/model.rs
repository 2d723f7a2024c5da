//! The metrics report as plain data, independent of encoding and key names.
//!
//! Optional fields are `Option`s so that a decoded report re-encodes to the same document: an
//! absent `network_stats` (the agent's first report) and one with zeros mean different things.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

/// The only report format version this crate emits; decode accepts any `1.x`.
pub const REPORT_VERSION: &str = "1.0";

/// A Device Defender metrics report (spec §1), as published by a device.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricReport {
    pub header: Header,
    pub metrics: Option<Metrics>,
    /// Custom metrics by name. A `BTreeMap` keeps encoding deterministic.
    pub custom_metrics: Option<BTreeMap<String, CustomMetricValue>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Strictly increasing per thing; positive. Epoch seconds are the convention.
    pub report_id: u64,
    pub version: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metrics {
    pub listening_tcp_ports: Option<ListeningPorts>,
    pub listening_udp_ports: Option<ListeningPorts>,
    pub network_stats: Option<NetworkStats>,
    pub tcp_connections: Option<TcpConnections>,
}

/// A snapshot of listening sockets. `total` counts all of them even when `ports` was capped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListeningPorts {
    pub ports: Option<Vec<ListeningPort>>,
    pub total: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListeningPort {
    /// 1–65535.
    pub port: u16,
    /// Interface name. Real agents also send `"0.0.0.0"`/`"::"` for wildcard binds, or `null`.
    pub interface: Option<String>,
}

/// Traffic since the previous report (deltas, not interface counters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetworkStats {
    pub bytes_in: Option<u64>,
    pub bytes_out: Option<u64>,
    pub packets_in: Option<u64>,
    pub packets_out: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TcpConnections {
    pub established_connections: Option<EstablishedConnections>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EstablishedConnections {
    pub connections: Option<Vec<Connection>>,
    pub total: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub remote_addr: SocketAddr,
    pub local_port: Option<u16>,
    pub local_interface: Option<String>,
}

/// The value of one custom metric; the variant is the metric's type.
#[derive(Debug, Clone, PartialEq)]
pub enum CustomMetricValue {
    /// `number`: a finite double.
    Number(f64),
    /// `number-list`.
    NumberList(Vec<f64>),
    /// `string-list`.
    StringList(Vec<String>),
    /// `ip-address-list`.
    IpList(Vec<IpAddr>),
}

impl MetricReport {
    /// A report with only a header; fill in `metrics` and `custom_metrics` before encoding.
    pub fn new(report_id: u64) -> Self {
        MetricReport {
            header: Header { report_id, version: REPORT_VERSION.to_owned() },
            metrics: None,
            custom_metrics: None,
        }
    }
}
