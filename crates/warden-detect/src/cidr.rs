//! CIDR blocks for the `in-cidr-set` and `not-in-cidr-set` operators, IPv4 and IPv6.
//!
//! Written here rather than taken from a crate because the rules that matter are ours and need
//! stating anyway, and the arithmetic is a mask over a `u32` or `u128`:
//! - a bare address is a block of one host (`10.0.0.1` = `10.0.0.1/32`), since devices report
//!   addresses and profiles may list single hosts;
//! - host bits below the prefix are cleared (`10.1.2.3/8` = `10.0.0.0/8`): AWS documents only a
//!   character pattern for `cidrs`, so a profile written with host bits must keep working, and
//!   the block it can only mean is the masked one;
//! - an IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, what a dual-stack socket reports for an
//!   IPv4 peer) is the IPv4 address, and a block inside `::ffff:0:0/96` is the IPv4 block, so a
//!   rule on `10.0.0.0/8` holds whichever socket family saw the peer;
//! - otherwise the families never match each other (`::/0` holds no IPv4 address).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// A network: an address with its host bits cleared and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// Why a text is not a CIDR block or an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IP address or CIDR block")]
pub struct CidrError(pub String);

impl Cidr {
    /// The block `addr/prefix` with host bits cleared; `None` if the prefix is longer than the
    /// address (32 or 128 bits).
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Cidr> {
        match addr {
            IpAddr::V4(a) => (prefix <= 32).then(|| Cidr::v4(a, prefix)),
            IpAddr::V6(a) => {
                if prefix > 128 {
                    return None;
                }
                match a.to_ipv4_mapped() {
                    Some(v4) if prefix >= 96 => Some(Cidr::v4(v4, prefix - 96)),
                    _ => {
                        let bits = u128::from(a) & mask128(prefix);
                        Some(Cidr { network: IpAddr::V6(Ipv6Addr::from(bits)), prefix })
                    }
                }
            }
        }
    }

    /// The block of exactly one address.
    pub fn host(addr: IpAddr) -> Cidr {
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        Cidr::new(addr, prefix).expect("a full-length prefix is always valid")
    }

    fn v4(a: Ipv4Addr, prefix: u8) -> Cidr {
        let bits = u32::from(a) & mask32(prefix);
        Cidr { network: IpAddr::V4(Ipv4Addr::from(bits)), prefix }
    }

    /// The network address (host bits cleared; IPv4 for IPv4-mapped input).
    pub fn network(&self) -> IpAddr {
        self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether every address of `inner` is in this block.
    pub fn contains(&self, inner: &Cidr) -> bool {
        if inner.prefix < self.prefix {
            return false;
        }
        match (self.network, inner.network) {
            (IpAddr::V4(outer), IpAddr::V4(a)) => u32::from(a) & mask32(self.prefix) == u32::from(outer),
            (IpAddr::V6(outer), IpAddr::V6(a)) => u128::from(a) & mask128(self.prefix) == u128::from(outer),
            _ => false,
        }
    }

    /// Whether `addr` is in this block.
    pub fn contains_addr(&self, addr: IpAddr) -> bool {
        self.contains(&Cidr::host(addr))
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// `address` or `address/prefix`, where the prefix is 1 to 3 decimal digits and at most the
    /// address length. Addresses follow `std::net` (no leading zeros in IPv4 octets, no zone).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || CidrError(s.to_owned());
        let (addr, prefix) = match s.split_once('/') {
            None => (s, None),
            Some((addr, prefix)) => (addr, Some(prefix)),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let Some(prefix) = prefix else {
            return Ok(Cidr::host(addr));
        };
        if prefix.is_empty() || prefix.len() > 3 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        Cidr::new(addr, prefix).ok_or_else(bad)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}
