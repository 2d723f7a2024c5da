//! The device's network metrics: read from `/proc/net` and turned into the report's `metrics`
//! block (spec §1.3).
//!
//! Collection is split so that the logic runs without a live system: [`Sample::read`] takes a
//! snapshot of the kernel's tables (the only I/O), and [`metrics`] is a pure function of the
//! current sample and the one taken for the previous report. The agent's loop keeps that
//! previous sample as the baseline for traffic deltas.
//!
//! - `interfaces`: which interface owns a local IP address.
//! - `proc_net`: reading `/proc/net/{dev,tcp,tcp6,udp,udp6}` with procfs-core's parsers.
//! - `traffic`: interface counters and the deltas of `network_stats`.
//! - `sockets`: listening ports and established connections as capped report snapshots.

mod interfaces;
mod proc_net;
mod sockets;
#[cfg(test)]
mod tests;
mod traffic;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

pub use interfaces::InterfaceMap;
pub use sockets::{LocalSocket, TcpConnection};
pub use traffic::Counters;

/// How many ports or connections a list in the report holds by default; `total` still counts
/// all of them. Fifty is what the official Python agent sends.
pub const DEFAULT_MAX_LIST_ENTRIES: usize = 50;

/// What goes into the metrics block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectOptions {
    /// Count loopback traffic (interface `lo`) in `network_stats` and list connections
    /// whose peer is a loopback address. Off by default: that traffic never leaves the device.
    pub include_loopback: bool,
    /// The most entries any one list (TCP ports, UDP ports, connections) carries; default
    /// [`DEFAULT_MAX_LIST_ENTRIES`]. Keeps reports small on hosts with many sockets.
    pub max_list_entries: usize,
}

impl Default for CollectOptions {
    fn default() -> Self {
        CollectOptions { include_loopback: false, max_list_entries: DEFAULT_MAX_LIST_ENTRIES }
    }
}

/// Why a sample could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("cannot read {}", .path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{}, line {line}: {reason}", .path.display())]
    Malformed { path: PathBuf, line: usize, reason: String },
    #[error("cannot list the network interfaces")]
    Interfaces(#[source] io::Error),
}

/// One reading of the kernel's network tables, as plain data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sample {
    /// Traffic counters by interface name, loopback included (the options decide later).
    pub interfaces: BTreeMap<String, Counters>,
    /// TCP sockets in state LISTEN, IPv4 and IPv6, in table order.
    pub tcp_listeners: Vec<LocalSocket>,
    /// UDP sockets not connected to a peer, IPv4 and IPv6, in table order.
    pub udp_listeners: Vec<LocalSocket>,
    /// TCP connections in state ESTABLISHED, IPv4 and IPv6, in table order.
    pub tcp_established: Vec<TcpConnection>,
}

impl Sample {
    /// Reads `dev`, `tcp`, `tcp6`, `udp` and `udp6` from `proc_net`, a directory laid out like
    /// `/proc/net` (which production reads), naming local addresses with `interfaces`.
    ///
    /// Build `interfaces` fresh for each sample ([`InterfaceMap::current`]): addresses change.
    /// `/proc/net` shows the tables of the reader's network namespace, so an agent in a
    /// container must share the host's network namespace to see the device's sockets.
    /// Missing socket tables count as empty (no IPv6 in the kernel); a socket line that does not
    /// parse is skipped with a warning; a missing or malformed `dev` is an error, and the caller
    /// should then keep its old baseline.
    pub fn read(proc_net: &Path, interfaces: &InterfaceMap) -> Result<Sample, CollectError> {
        proc_net::read(proc_net, interfaces, cfg!(target_endian = "little"))
    }
}

/// The report's metrics block: traffic since `baseline`, sockets as of `current`.
///
/// `network_stats` is absent when there is no baseline (the first report after start): a delta
/// needs two readings, and sending the lifetime counters instead is what made the Python agent
/// raise false alarms after every restart (spec §1.8). The three socket blocks are always
/// present, with `total: 0` and no list when empty: an empty set is a measurement, and it is
/// what clears a port or connection violation.
pub fn metrics(current: &Sample, baseline: Option<&Sample>, opts: &CollectOptions) -> warden_wire::Metrics {
    warden_wire::Metrics {
        listening_tcp_ports: Some(sockets::listening_ports(&current.tcp_listeners, opts)),
        listening_udp_ports: Some(sockets::listening_ports(&current.udp_listeners, opts)),
        network_stats: baseline
            .map(|b| traffic::network_stats(&current.interfaces, &b.interfaces, opts.include_loopback)),
        tcp_connections: Some(sockets::tcp_connections(&current.tcp_established, opts)),
    }
}
