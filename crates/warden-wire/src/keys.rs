//! Key names of the report: every field has a long and a short name (spec §1.3).
//!
//! Custom-metric value keys (`number`, `number_list`, ...) have one name in both schemes.

/// A field's two names.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Key {
    pub long: &'static str,
    pub short: &'static str,
    /// A third name accepted on decode, never emitted.
    pub alias: Option<&'static str>,
}

const fn key(long: &'static str, short: &'static str) -> Key {
    Key { long, short, alias: None }
}

impl Key {
    /// Whether a device sent this field as `name`.
    pub(crate) fn matches(&self, name: &str) -> bool {
        name == self.long || name == self.short || self.alias == Some(name)
    }
}

/// The official C agent names the header `h` in short mode (spec §1.3 quirk); accepted on
/// decode so those devices are not rejected.
pub(crate) const HEADER: Key = Key { long: "header", short: "hed", alias: Some("h") };
pub(crate) const REPORT_ID: Key = key("report_id", "rid");
pub(crate) const VERSION: Key = key("version", "v");
pub(crate) const METRICS: Key = key("metrics", "met");
pub(crate) const CUSTOM_METRICS: Key = key("custom_metrics", "cmet");
pub(crate) const TCP_CONNECTIONS: Key = key("tcp_connections", "tc");
pub(crate) const ESTABLISHED_CONNECTIONS: Key = key("established_connections", "ec");
pub(crate) const CONNECTIONS: Key = key("connections", "cs");
pub(crate) const REMOTE_ADDR: Key = key("remote_addr", "rad");
pub(crate) const LOCAL_PORT: Key = key("local_port", "lp");
pub(crate) const LOCAL_INTERFACE: Key = key("local_interface", "li");
pub(crate) const TOTAL: Key = key("total", "t");
pub(crate) const LISTENING_TCP_PORTS: Key = key("listening_tcp_ports", "tp");
pub(crate) const LISTENING_UDP_PORTS: Key = key("listening_udp_ports", "up");
pub(crate) const PORTS: Key = key("ports", "pts");
pub(crate) const PORT: Key = key("port", "pt");
pub(crate) const INTERFACE: Key = key("interface", "if");
pub(crate) const NETWORK_STATS: Key = key("network_stats", "ns");
pub(crate) const BYTES_IN: Key = key("bytes_in", "bi");
pub(crate) const BYTES_OUT: Key = key("bytes_out", "bo");
pub(crate) const PACKETS_IN: Key = key("packets_in", "pi");
pub(crate) const PACKETS_OUT: Key = key("packets_out", "po");

pub(crate) const NUMBER: Key = key("number", "number");
pub(crate) const NUMBER_LIST: Key = key("number_list", "number_list");
pub(crate) const STRING_LIST: Key = key("string_list", "string_list");
pub(crate) const IP_LIST: Key = key("ip_list", "ip_list");
