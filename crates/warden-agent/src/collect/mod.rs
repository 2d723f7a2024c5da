//! The device's network metrics: read from `/proc/net` and the kernel's sock_diag interface,
//! and turned into the report's `metrics` block (spec §1.3).
//!
//! Collection is split so that the logic runs without a live system: [`Collector::sample`] takes
//! a snapshot of the kernel's tables (the only I/O), and [`metrics`] is a pure function of the
//! current sample and the one taken for the previous report. The agent's loop keeps that
//! previous sample as the baseline for traffic deltas.
//!
//! - `interfaces`: which interface owns a local IP address.
//! - `proc_net`: reading `/proc/net/{dev,tcp,tcp6,udp,udp6}` with procfs-core's parsers.
//! - `sock_diag`: the running system's TCP sockets from the kernel's netlink interface, which
//!   costs a fraction of reading `/proc/net/tcp`; [`Collector`] falls back to the file.
//! - `traffic`: interface counters and the deltas of `network_stats`.
//! - `sockets`: listening ports and established connections as capped report snapshots.

mod interfaces;
mod proc_net;
mod sock_diag;
mod sockets;
#[cfg(test)]
mod tests;
mod traffic;

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use procfs::net::TcpState;

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
    /// What a sample is kept for as the next report's baseline: its traffic counters. Its
    /// sockets are dropped, as [`metrics`] never reads them from the baseline, and on a host
    /// with thousands of connections they would double the agent's memory.
    pub fn into_baseline(self) -> Sample {
        Sample { interfaces: self.interfaces, ..Sample::default() }
    }

    /// Files a TCP socket as a listener or a connection by its state; other states are not
    /// reported.
    fn add_tcp(&mut self, state: TcpState, local: SocketAddr, remote: SocketAddr, interfaces: &InterfaceMap) {
        let local = canonical(local);
        let interface = || interfaces.interface_of(local.ip()).map(str::to_owned);
        match state {
            TcpState::Listen => self.tcp_listeners.push(LocalSocket { addr: local, interface: interface() }),
            TcpState::Established => self.tcp_established.push(TcpConnection {
                remote: canonical(remote),
                local,
                local_interface: interface(),
            }),
            _ => {}
        }
    }
}

/// Takes samples of the kernel's network tables: interface counters and UDP sockets from a
/// directory laid out like `/proc/net`, TCP sockets from the kernel's sock_diag interface while
/// it works, else from the same directory.
///
/// Both sources give the same sample (one test checks it on the running system); sock_diag only
/// costs the kernel far less. The `collect` tests read fixture directories without sock_diag.
#[derive(Debug)]
pub struct Collector {
    /// `/proc/net` for the running system.
    dir: PathBuf,
    /// The byte order of the machine that wrote the socket tables, which print addresses as
    /// native-endian words.
    little_endian: bool,
    /// Whether TCP sockets are asked of sock_diag rather than read from `tcp` and `tcp6`. Only
    /// for the running system; cleared for good after its first failure, since a kernel or
    /// sandbox that refuses it once will refuse it again, and a warning per report would be
    /// noise.
    sock_diag: bool,
}

impl Collector {
    /// The running system. `/proc/net` shows the tables of the reader's network namespace, and
    /// so does sock_diag: an agent in a container must share the host's network namespace to
    /// see the device's sockets.
    pub fn system() -> Collector {
        Collector { dir: "/proc/net".into(), little_endian: cfg!(target_endian = "little"), sock_diag: true }
    }

    /// Files only: `dev`, `tcp`, `tcp6`, `udp` and `udp6` in `dir`, written by a machine of the
    /// given byte order (the fixtures are little-endian, as x86 or ARM would write them).
    #[cfg(test)]
    pub fn files(dir: impl Into<PathBuf>, little_endian: bool) -> Collector {
        Collector { dir: dir.into(), little_endian, sock_diag: false }
    }

    /// A sample, naming local addresses with `interfaces`.
    ///
    /// Build `interfaces` fresh for each sample ([`InterfaceMap::current`]): addresses change.
    /// Missing socket tables count as empty (no IPv6 in the kernel); a socket line that does not
    /// parse is skipped with a warning; a missing or malformed `dev` is an error, and the caller
    /// should then keep its old baseline.
    pub fn sample(&mut self, interfaces: &InterfaceMap) -> Result<Sample, CollectError> {
        let mut sample = proc_net::read_dev_and_udp(&self.dir, interfaces, self.little_endian)?;
        if self.sock_diag {
            match sock_diag::tcp_sockets() {
                Ok(sockets) => {
                    for s in sockets {
                        sample.add_tcp(s.state, s.local, s.remote, interfaces);
                    }
                    return Ok(sample);
                }
                Err(e) => {
                    tracing::info!(
                        error = %e,
                        "the kernel offers no TCP socket dump (sock_diag): reading /proc/net/tcp and tcp6 instead, which costs more CPU"
                    );
                    self.sock_diag = false;
                }
            }
        }
        proc_net::read_tcp(&self.dir, interfaces, self.little_endian, &mut sample)?;
        Ok(sample)
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

/// The address as the report shows it: dual-stack sockets see IPv4 peers as `::ffff:a.b.c.d`,
/// which is the same peer as `a.b.c.d` and must compare, dedupe and print like it.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}
