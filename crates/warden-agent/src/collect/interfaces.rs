//! Which network interface owns a local IP address, for the `interface` and `local_interface`
//! fields of the report.
//!
//! The socket tables in `/proc/net` only know addresses; the interface names come from
//! `getifaddrs(3)` (through `if-addrs`). Addresses change (DHCP, links going up and down), so the
//! agent builds a fresh map for every sample.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::CollectError;

/// Local IP address to interface name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceMap {
    /// Keys are canonical: IPv4-mapped IPv6 addresses are stored as IPv4.
    by_ip: BTreeMap<IpAddr, String>,
}

impl InterfaceMap {
    /// The addresses of this host's interfaces right now.
    pub fn current() -> Result<InterfaceMap, CollectError> {
        let interfaces = if_addrs::get_if_addrs().map_err(CollectError::Interfaces)?;
        Ok(InterfaceMap::from_pairs(interfaces.into_iter().map(|i| (i.ip(), i.name))))
    }

    /// A map from `(address, interface name)` pairs, as `current` builds it; for tests and for
    /// callers that learn addresses another way.
    ///
    /// An address held by several interfaces (the same IPv6 link-local address on two links,
    /// say) maps to the first name in alphabetical order, so the report does not depend on the
    /// order the kernel listed them in. Unspecified addresses are ignored: they belong to no
    /// interface.
    pub fn from_pairs<I, S>(pairs: I) -> InterfaceMap
    where
        I: IntoIterator<Item = (IpAddr, S)>,
        S: Into<String>,
    {
        let mut by_ip = BTreeMap::<IpAddr, String>::new();
        for (ip, name) in pairs {
            let ip = ip.to_canonical();
            if ip.is_unspecified() {
                continue;
            }
            let name = name.into();
            match by_ip.get_mut(&ip) {
                Some(existing) if *existing <= name => {}
                Some(existing) => *existing = name,
                None => {
                    by_ip.insert(ip, name);
                }
            }
        }
        InterfaceMap { by_ip }
    }

    /// The interface that owns `ip`, if any.
    ///
    /// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, seen on dual-stack sockets) are looked up as
    /// their IPv4 form. Wildcard addresses (`0.0.0.0`, `::`) belong to no single interface and
    /// give `None`. Any address in `127.0.0.0/8` is local to the loopback interface even though
    /// only `127.0.0.1` is assigned to it (systemd-resolved listens on `127.0.0.53`), so such
    /// addresses map to whatever interface owns `127.0.0.1`.
    pub fn interface_of(&self, ip: IpAddr) -> Option<&str> {
        let ip = ip.to_canonical();
        if ip.is_unspecified() {
            return None;
        }
        if let Some(name) = self.by_ip.get(&ip) {
            return Some(name);
        }
        let loopback = match ip {
            IpAddr::V4(v4) if v4.is_loopback() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(v6) if v6.is_loopback() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            _ => return None,
        };
        self.by_ip.get(&loopback).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> InterfaceMap {
        InterfaceMap::from_pairs(
            [
                ("127.0.0.1", "lo"),
                ("::1", "lo"),
                ("192.168.1.23", "eth0"),
                ("2001:db8:1::23", "eth0"),
                ("fe80::1", "wlan0"),
                ("fe80::1", "eth0"),
                ("0.0.0.0", "bogus"),
            ]
            .map(|(ip, name)| (ip.parse::<IpAddr>().unwrap(), name)),
        )
    }

    #[track_caller]
    fn check(ip: &str, expect: Option<&str>) {
        assert_eq!(map().interface_of(ip.parse().unwrap()), expect, "{ip}");
    }

    #[test]
    fn exact_addresses() {
        check("192.168.1.23", Some("eth0"));
        check("2001:db8:1::23", Some("eth0"));
        check("127.0.0.1", Some("lo"));
        check("::1", Some("lo"));
        check("192.168.1.24", None);
        check("2001:db8:1::24", None);
    }

    #[test]
    fn ipv4_mapped_addresses_map_like_ipv4() {
        check("::ffff:192.168.1.23", Some("eth0"));
        check("::ffff:127.0.0.1", Some("lo"));
        check("::ffff:10.9.9.9", None);
    }

    #[test]
    fn wildcards_have_no_interface() {
        check("0.0.0.0", None);
        check("::", None);
        check("::ffff:0.0.0.0", None);
    }

    #[test]
    fn the_whole_loopback_net_is_on_loopback() {
        check("127.0.0.53", Some("lo"));
        check("127.1.2.3", Some("lo"));
        assert_eq!(InterfaceMap::default().interface_of("127.0.0.53".parse().unwrap()), None);
    }

    #[test]
    fn a_shared_address_goes_to_the_first_name() {
        check("fe80::1", Some("eth0"));
    }
}
