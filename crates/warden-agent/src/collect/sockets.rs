//! Listening ports and established TCP connections: from the sockets of a sample to the
//! report's snapshot blocks (`listening_tcp_ports`, `listening_udp_ports`, `tcp_connections`).
//!
//! Lists are capped and sorted so that a report stays small and two reports of an unchanged
//! device are identical; `total` always counts everything (spec §1.8).

use std::collections::BTreeSet;
use std::net::SocketAddr;

use warden_wire::{Connection, EstablishedConnections, ListeningPort, ListeningPorts, TcpConnections};

use super::CollectOptions;

/// A socket bound to a local address and waiting for peers: a TCP listener or an unconnected
/// UDP socket.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LocalSocket {
    /// The bound address; IPv4-mapped IPv6 addresses are given as IPv4.
    pub addr: SocketAddr,
    /// The interface owning the bound address; `None` for wildcard binds (`0.0.0.0`, `::`) and
    /// for addresses no interface holds.
    pub interface: Option<String>,
}

/// An established TCP connection.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TcpConnection {
    /// The peer; IPv4-mapped IPv6 addresses are given as IPv4. First field, so that the derived
    /// order sorts connections by peer.
    pub remote: SocketAddr,
    /// This host's end; IPv4-mapped IPv6 addresses are given as IPv4.
    pub local: SocketAddr,
    /// The interface owning the local address, if any.
    pub local_interface: Option<String>,
}

/// A `listening_*_ports` block.
///
/// Entries are distinct `(port, interface)` pairs: a daemon listening on `0.0.0.0:22` and on
/// `[::]:22` is one wildcard listener on port 22, since both have no interface. Wildcard binds
/// have no `interface` on the wire rather than the `"0.0.0.0"`/`"::"` the Python agent sends:
/// those are not interface names, and merging them is what makes the dual-stack case one entry.
/// The list is sorted by port, then interface, and keeps the first `max_list_entries`: a
/// deterministic choice, so a device whose ports do not change sends the same list every time.
///
/// The block is present even when nothing listens, with `total: 0` and no `ports` (a list must
/// not be empty, spec §1.3). The Python agent omits an empty UDP block instead; but "nothing
/// listens" is a measurement, and an empty set is what clears a port violation (DG-TS), so it is
/// reported, at the cost of a dozen bytes.
pub(crate) fn listening_ports(sockets: &[LocalSocket], opts: &CollectOptions) -> ListeningPorts {
    let distinct: BTreeSet<(u16, Option<&str>)> = sockets
        .iter()
        .filter(|s| s.addr.port() != 0)
        .map(|s| (s.addr.port(), s.interface.as_deref()))
        .collect();
    let total = distinct.len() as u64;
    let ports: Vec<ListeningPort> = distinct
        .into_iter()
        .take(opts.max_list_entries)
        .map(|(port, interface)| ListeningPort { port, interface: interface.map(str::to_owned) })
        .collect();
    ListeningPorts { ports: non_empty(ports), total: Some(total) }
}

/// The `tcp_connections` block.
///
/// Connections to a loopback peer are left out unless `include_loopback`: both ends are on this
/// host, so they say nothing about what the device talks to (and their traffic is left out of
/// `network_stats` for the same reason). `connections` are sorted by remote address, then local
/// address, and capped at `max_list_entries`; `total` counts every connection kept. Like the
/// port blocks, the block is present with `total: 0` when there are none.
pub(crate) fn tcp_connections(connections: &[TcpConnection], opts: &CollectOptions) -> TcpConnections {
    let mut kept: Vec<&TcpConnection> =
        connections.iter().filter(|c| opts.include_loopback || !c.remote.ip().is_loopback()).collect();
    kept.sort_unstable();
    kept.dedup();
    let total = kept.len() as u64;
    let listed: Vec<Connection> = kept
        .into_iter()
        .take(opts.max_list_entries)
        .map(|c| Connection {
            remote_addr: c.remote,
            local_port: Some(c.local.port()).filter(|&port| port != 0),
            local_interface: c.local_interface.clone(),
        })
        .collect();
    TcpConnections {
        established_connections: Some(EstablishedConnections {
            connections: non_empty(listed),
            total: Some(total),
        }),
    }
}

fn non_empty<T>(list: Vec<T>) -> Option<Vec<T>> {
    (!list.is_empty()).then_some(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(addr: &str, interface: Option<&str>) -> LocalSocket {
        LocalSocket { addr: addr.parse().unwrap(), interface: interface.map(str::to_owned) }
    }

    fn conn(local: &str, remote: &str, interface: Option<&str>) -> TcpConnection {
        TcpConnection {
            remote: remote.parse().unwrap(),
            local: local.parse().unwrap(),
            local_interface: interface.map(str::to_owned),
        }
    }

    fn opts(include_loopback: bool, max_list_entries: usize) -> CollectOptions {
        CollectOptions { include_loopback, max_list_entries }
    }

    fn port(port: u16, interface: Option<&str>) -> ListeningPort {
        ListeningPort { port, interface: interface.map(str::to_owned) }
    }

    #[test]
    fn listeners_are_distinct_sorted_and_capped() {
        let sockets = [
            listener("0.0.0.0:22", None),
            listener("[::]:22", None),
            listener("192.168.1.23:8080", Some("eth0")),
            listener("127.0.0.1:631", Some("lo")),
            listener("[::1]:631", Some("lo")),
            listener("10.0.0.5:8080", Some("wlan0")),
            listener("0.0.0.0:8080", None),
        ];
        let all = listening_ports(&sockets, &opts(false, 50));
        assert_eq!(
            all,
            ListeningPorts {
                ports: Some(vec![
                    port(22, None),
                    port(631, Some("lo")),
                    port(8080, None),
                    port(8080, Some("eth0")),
                    port(8080, Some("wlan0")),
                ]),
                total: Some(5),
            }
        );
        let capped = listening_ports(&sockets, &opts(false, 2));
        assert_eq!(capped.ports, Some(vec![port(22, None), port(631, Some("lo"))]));
        assert_eq!(capped.total, Some(5));
    }

    #[test]
    fn no_listeners_or_a_zero_cap_give_a_total_without_a_list() {
        let none = listening_ports(&[], &opts(false, 50));
        assert_eq!(none, ListeningPorts { ports: None, total: Some(0) });
        let zero_cap = listening_ports(&[listener("0.0.0.0:22", None)], &opts(false, 0));
        assert_eq!(zero_cap, ListeningPorts { ports: None, total: Some(1) });
    }

    #[test]
    fn port_zero_is_never_reported() {
        let ports = listening_ports(&[listener("0.0.0.0:0", None)], &opts(false, 50));
        assert_eq!(ports, ListeningPorts { ports: None, total: Some(0) });
    }

    #[test]
    fn connections_skip_loopback_peers_unless_asked() {
        let connections = [
            conn("192.168.1.23:51234", "198.51.100.7:8883", Some("eth0")),
            conn("127.0.0.1:40000", "127.0.0.1:631", Some("lo")),
            conn("[::1]:40001", "[::1]:631", Some("lo")),
            conn("[2001:db8:1::23]:22", "[2001:db8::5]:50022", Some("eth0")),
        ];
        let remote = |c: &Connection| c.remote_addr.to_string();

        let external = tcp_connections(&connections, &opts(false, 50)).established_connections.unwrap();
        assert_eq!(external.total, Some(2));
        let listed = external.connections.unwrap();
        assert_eq!(
            listed.iter().map(remote).collect::<Vec<_>>(),
            ["198.51.100.7:8883", "[2001:db8::5]:50022"]
        );
        assert_eq!(
            listed[0],
            Connection {
                remote_addr: "198.51.100.7:8883".parse().unwrap(),
                local_port: Some(51234),
                local_interface: Some("eth0".into()),
            }
        );

        let all = tcp_connections(&connections, &opts(true, 50)).established_connections.unwrap();
        assert_eq!(all.total, Some(4));
        assert_eq!(
            all.connections.unwrap().iter().map(remote).collect::<Vec<_>>(),
            ["127.0.0.1:631", "198.51.100.7:8883", "[::1]:631", "[2001:db8::5]:50022"]
        );
    }

    #[test]
    fn connections_are_deduplicated_and_capped() {
        let a = conn("10.0.0.5:1000", "203.0.113.1:443", Some("wlan0"));
        let b = conn("10.0.0.5:1001", "203.0.113.1:443", Some("wlan0"));
        let c = conn("10.0.0.5:1002", "203.0.113.2:443", Some("wlan0"));
        // A socket read twice (the kernel table changed while it was read) counts once.
        let connections = [c.clone(), a.clone(), b.clone(), a];
        let capped = tcp_connections(&connections, &opts(false, 2)).established_connections.unwrap();
        assert_eq!(capped.total, Some(3));
        let ports: Vec<_> = capped.connections.unwrap().iter().map(|c| c.local_port).collect();
        assert_eq!(ports, [Some(1000), Some(1001)]);
    }

    #[test]
    fn no_connections_give_a_zero_total() {
        let none = tcp_connections(&[], &opts(false, 50));
        assert_eq!(
            none,
            TcpConnections {
                established_connections: Some(EstablishedConnections { connections: None, total: Some(0) })
            }
        );
    }
}
