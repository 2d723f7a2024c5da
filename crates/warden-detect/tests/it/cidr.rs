//! CIDR blocks: parsing and normalisation, and containment at every prefix length.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use warden_detect::Cidr;

#[track_caller]
fn parses_as(text: &str, expect: &str) {
    let c: Cidr = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
    assert_eq!(c.to_string(), expect, "{text}");
}

#[track_caller]
fn refused(text: &str) {
    let e = text.parse::<Cidr>().expect_err(text);
    assert_eq!(e.to_string(), format!("{text:?} is not an IP address or CIDR block"));
}

#[test]
fn parsing_and_normalisation() {
    parses_as("10.0.0.0/8", "10.0.0.0/8");
    parses_as("10.1.2.3/8", "10.0.0.0/8");
    parses_as("10.1.2.3", "10.1.2.3/32");
    parses_as("10.1.2.3/32", "10.1.2.3/32");
    parses_as("10.1.2.3/0", "0.0.0.0/0");
    parses_as("255.255.255.255/31", "255.255.255.254/31");
    parses_as("2001:db8::1", "2001:db8::1/128");
    parses_as("2001:DB8:0:0:0:0:0:1/64", "2001:db8::/64");
    parses_as("::/0", "::/0");
    parses_as("ffff::1/1", "8000::/1");
    parses_as("::ffff:10.1.2.3", "10.1.2.3/32");
    parses_as("::ffff:10.1.2.3/104", "10.0.0.0/8");
    parses_as("::ffff:10.1.2.3/96", "0.0.0.0/0");
    // Below /96 a mapped block is not an IPv4 block: it stays IPv6.
    parses_as("::ffff:10.1.2.3/95", "::fffe:0:0/95");
    parses_as("10.0.0.0/08", "10.0.0.0/8");
}

#[test]
fn refusals() {
    for text in [
        "",
        "/8",
        "10.0.0.0/",
        "10.0.0.0/33",
        "10.0.0.0/-1",
        "10.0.0.0/+8",
        "10.0.0.0/8/8",
        "10.0.0.0/0008",
        "10.0.0.0/ 8",
        " 10.0.0.0/8",
        "10.0.0/8",
        "10.0.0.256",
        "010.0.0.1",
        "2001:db8::/129",
        "2001:db8:::1",
        "fe80::1%eth0",
        "[2001:db8::1]",
        "10.0.0.1:80",
        "localhost",
    ] {
        refused(text);
    }
}

#[test]
fn new_checks_the_prefix_length() {
    assert!(Cidr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 33).is_none());
    assert!(Cidr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 129).is_none());
    let c = Cidr::new(IpAddr::V4(Ipv4Addr::new(192, 168, 7, 9)), 20).unwrap();
    assert_eq!((c.network(), c.prefix()), (IpAddr::V4(Ipv4Addr::new(192, 168, 0, 0)), 20));
}

/// For every prefix length, the first and last address of the block are inside, and the
/// addresses just outside it are not.
#[test]
fn ipv4_block_edges_at_every_prefix() {
    let base = u32::from(Ipv4Addr::new(172, 16, 200, 77));
    for prefix in 0..=32u8 {
        let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
        let first = base & mask;
        let last = first | !mask;
        let net = Cidr::new(IpAddr::V4(Ipv4Addr::from(base)), prefix).unwrap();
        let v4 = |n: u32| IpAddr::V4(Ipv4Addr::from(n));
        assert!(net.contains_addr(v4(first)), "/{prefix} first");
        assert!(net.contains_addr(v4(last)), "/{prefix} last");
        assert!(net.contains_addr(v4(base)), "/{prefix} base");
        if let Some(before) = first.checked_sub(1) {
            assert!(!net.contains_addr(v4(before)), "/{prefix} before");
        }
        if let Some(after) = last.checked_add(1) {
            assert!(!net.contains_addr(v4(after)), "/{prefix} after");
        }
        let mapped = IpAddr::V6(Ipv4Addr::from(base).to_ipv6_mapped());
        assert!(net.contains_addr(mapped), "/{prefix} mapped");
        assert!(!net.contains_addr(IpAddr::V6(Ipv6Addr::from(u128::from(base)))), "/{prefix} compatible");
    }
}

#[test]
fn ipv6_block_edges_at_every_prefix() {
    let base: u128 = u128::from("2001:db8:85a3:8d3:1319:8a2e:370:7348".parse::<Ipv6Addr>().unwrap());
    for prefix in 0..=128u8 {
        let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(prefix)) };
        let first = base & mask;
        let last = first | !mask;
        let net = Cidr::new(IpAddr::V6(Ipv6Addr::from(base)), prefix).unwrap();
        let v6 = |n: u128| IpAddr::V6(Ipv6Addr::from(n));
        assert!(net.contains_addr(v6(first)), "/{prefix} first");
        assert!(net.contains_addr(v6(last)), "/{prefix} last");
        if let Some(before) = first.checked_sub(1) {
            assert!(!net.contains_addr(v6(before)), "/{prefix} before");
        }
        if let Some(after) = last.checked_add(1) {
            assert!(!net.contains_addr(v6(after)), "/{prefix} after");
        }
        assert!(!net.contains_addr(IpAddr::V4(Ipv4Addr::new(32, 1, 13, 184))), "/{prefix} v4");
    }
}

#[test]
fn block_containment() {
    let c = |s: &str| s.parse::<Cidr>().unwrap();
    assert!(c("10.0.0.0/8").contains(&c("10.0.0.0/8")));
    assert!(c("10.0.0.0/8").contains(&c("10.128.0.0/9")));
    assert!(!c("10.128.0.0/9").contains(&c("10.0.0.0/8")));
    assert!(!c("10.0.0.0/9").contains(&c("10.128.0.0/9")));
    assert!(c("0.0.0.0/0").contains(&c("255.0.0.0/8")));
    assert!(!c("::/0").contains(&c("0.0.0.0/0")));
    assert!(!c("0.0.0.0/0").contains(&c("::/0")));
    assert!(c("2001:db8::/32").contains(&c("2001:db8:1::/48")));
}
