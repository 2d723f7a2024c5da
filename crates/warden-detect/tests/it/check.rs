//! One observed value against one behavior's criteria, operator by operator. Criteria describe
//! normal behavior: `Conforms` means no violation.

use crate::support::{behavior, compile_one, criteria};
use warden_detect::MetricValue;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Conforms,
    Violates,
    /// The value lacks what the criteria compare (or is unreadable): not evaluated.
    Unjudged,
}
use Expect::*;

/// Compiles `metric OP threshold` and checks `observed` against it.
#[track_caller]
fn check(metric: &str, op: &str, threshold: MetricValue, observed: MetricValue, expect: Expect) {
    let b = compile_one(behavior("B", metric, criteria(op, threshold.clone())))
        .unwrap_or_else(|e| panic!("{metric} {op} {threshold:?} does not compile: {e}"));
    let got = match b.check(&observed) {
        Some(true) => Conforms,
        Some(false) => Violates,
        None => Unjudged,
    };
    assert_eq!(got, expect, "{metric} {op} {threshold:?}, observed {observed:?}");
}

fn count(n: u64) -> MetricValue {
    MetricValue::count(n)
}

fn ports(p: &[u16]) -> MetricValue {
    MetricValue::ports(p.to_vec())
}

fn cidrs(c: &[&str]) -> MetricValue {
    MetricValue::cidrs(c.iter().copied())
}

fn numbers(n: &[f64]) -> MetricValue {
    MetricValue::numbers(n.to_vec())
}

fn strings(s: &[&str]) -> MetricValue {
    MetricValue::strings(s.iter().copied())
}

const TCP_PORTS: &str = "aws:num-listening-tcp-ports";

#[test]
fn less_than() {
    check(TCP_PORTS, "less-than", count(5), count(4), Conforms);
    check(TCP_PORTS, "less-than", count(5), count(0), Conforms);
    check(TCP_PORTS, "less-than", count(5), count(5), Violates);
    check(TCP_PORTS, "less-than", count(5), count(6), Violates);
    check(TCP_PORTS, "less-than", count(0), count(0), Violates);
    check(TCP_PORTS, "less-than", count(u64::MAX), count(u64::MAX - 1), Conforms);
    check("aws:message-byte-size", "less-than", count(1024), count(1023), Conforms);
    check("aws:disconnect-duration", "less-than", count(30), count(31), Violates);
    check("battery_pct", "less-than", MetricValue::number(-1.5), MetricValue::number(-2.0), Conforms);
    check("battery_pct", "less-than", MetricValue::number(-1.5), MetricValue::number(-1.5), Violates);
}

#[test]
fn less_than_equals() {
    check(TCP_PORTS, "less-than-equals", count(5), count(5), Conforms);
    check(TCP_PORTS, "less-than-equals", count(5), count(6), Violates);
    check(TCP_PORTS, "less-than-equals", count(0), count(0), Conforms);
    check(TCP_PORTS, "less-than-equals", count(u64::MAX), count(u64::MAX), Conforms);
    check("aws:all-bytes-out", "less-than-equals", count(35_000), count(35_001), Violates);
    check("battery_pct", "less-than-equals", MetricValue::number(75.0), MetricValue::number(75.0), Conforms);
    check(
        "battery_pct",
        "less-than-equals",
        MetricValue::number(75.0),
        MetricValue::number(75.000001),
        Violates,
    );
}

#[test]
fn greater_than() {
    check(TCP_PORTS, "greater-than", count(5), count(6), Conforms);
    check(TCP_PORTS, "greater-than", count(5), count(5), Violates);
    check(TCP_PORTS, "greater-than", count(0), count(0), Violates);
    check("aws:num-messages-sent", "greater-than", count(0), count(1), Conforms);
    check("battery_pct", "greater-than", MetricValue::number(75.0), MetricValue::number(76.5), Conforms);
    check("battery_pct", "greater-than", MetricValue::number(75.0), MetricValue::number(75.0), Violates);
}

#[test]
fn greater_than_equals() {
    check(TCP_PORTS, "greater-than-equals", count(5), count(5), Conforms);
    check(TCP_PORTS, "greater-than-equals", count(5), count(4), Violates);
    check(TCP_PORTS, "greater-than-equals", count(0), count(0), Conforms);
    check("battery_pct", "greater-than-equals", MetricValue::number(0.5), MetricValue::number(0.5), Conforms);
    check(
        "battery_pct",
        "greater-than-equals",
        MetricValue::number(0.5),
        MetricValue::number(0.49),
        Violates,
    );
}

#[test]
fn numeric_values_of_the_wrong_type_are_not_judged() {
    check(TCP_PORTS, "less-than", count(5), MetricValue::number(1.0), Unjudged);
    check(TCP_PORTS, "less-than", count(5), MetricValue::default(), Unjudged);
    check("battery_pct", "less-than", MetricValue::number(5.0), count(1), Unjudged);
    check("battery_pct", "less-than", MetricValue::number(5.0), MetricValue::number(f64::NAN), Unjudged);
    check(
        "battery_pct",
        "greater-than",
        MetricValue::number(5.0),
        MetricValue::number(f64::INFINITY),
        Unjudged,
    );
}

#[test]
fn in_port_set() {
    let m = "aws:listening-tcp-ports";
    check(m, "in-port-set", ports(&[22, 443]), ports(&[22]), Conforms);
    check(m, "in-port-set", ports(&[22, 443]), ports(&[443, 22, 22]), Conforms);
    check(m, "in-port-set", ports(&[22, 443]), ports(&[22, 80]), Violates);
    check(m, "in-port-set", ports(&[22, 443]), ports(&[23]), Violates);
    check(m, "in-port-set", ports(&[0, 65535]), ports(&[65535, 0]), Conforms);
    check(m, "in-port-set", ports(&[]), ports(&[22]), Violates);
    // An empty list always conforms (DG-TS), whatever the set.
    check(m, "in-port-set", ports(&[22]), ports(&[]), Conforms);
    check(m, "in-port-set", ports(&[]), ports(&[]), Conforms);
    check("aws:listening-udp-ports", "in-port-set", ports(&[68]), ports(&[68, 5353]), Violates);
    check(m, "in-port-set", ports(&[22]), count(1), Unjudged);
}

#[test]
fn not_in_port_set() {
    let m = "aws:listening-udp-ports";
    check(m, "not-in-port-set", ports(&[23, 2323]), ports(&[68]), Conforms);
    check(m, "not-in-port-set", ports(&[23, 2323]), ports(&[68, 2323]), Violates);
    check(m, "not-in-port-set", ports(&[23]), ports(&[23]), Violates);
    check(m, "not-in-port-set", ports(&[23]), ports(&[]), Conforms);
    check(m, "not-in-port-set", ports(&[]), ports(&[1, 2, 3]), Conforms);
    check(m, "not-in-port-set", ports(&[23]), cidrs(&["10.0.0.1"]), Unjudged);
}

#[test]
fn in_cidr_set_ipv4() {
    let m = "aws:destination-ip-addresses";
    let ten = cidrs(&["10.0.0.0/8"]);
    check(m, "in-cidr-set", ten.clone(), cidrs(&["10.1.2.3"]), Conforms);
    check(m, "in-cidr-set", ten.clone(), cidrs(&["10.0.0.0", "10.255.255.255"]), Conforms);
    check(m, "in-cidr-set", ten.clone(), cidrs(&["9.255.255.255"]), Violates);
    check(m, "in-cidr-set", ten.clone(), cidrs(&["11.0.0.0"]), Violates);
    check(m, "in-cidr-set", ten.clone(), cidrs(&["10.1.2.3", "8.8.8.8"]), Violates);
    check(m, "in-cidr-set", ten.clone(), cidrs(&[]), Conforms);
    // Blocks inside the set are inside; blocks larger than it are not.
    check(m, "in-cidr-set", ten.clone(), cidrs(&["10.1.0.0/16"]), Conforms);
    check(m, "in-cidr-set", ten.clone(), cidrs(&["10.0.0.0/7"]), Violates);
    // Several blocks: each address needs one of them.
    let two = cidrs(&["192.168.0.0/16", "172.16.0.0/12"]);
    check(m, "in-cidr-set", two.clone(), cidrs(&["192.168.1.1", "172.31.255.255"]), Conforms);
    check(m, "in-cidr-set", two, cidrs(&["172.32.0.0"]), Violates);
    // A bare address is a /32; host bits of a configured block are ignored.
    check(m, "in-cidr-set", cidrs(&["198.51.100.7"]), cidrs(&["198.51.100.7"]), Conforms);
    check(m, "in-cidr-set", cidrs(&["198.51.100.7"]), cidrs(&["198.51.100.8"]), Violates);
    check(m, "in-cidr-set", cidrs(&["10.1.2.3/8"]), cidrs(&["10.200.0.1"]), Conforms);
    // /0 holds every IPv4 address and no IPv6 one.
    check(m, "in-cidr-set", cidrs(&["0.0.0.0/0"]), cidrs(&["255.255.255.255", "0.0.0.0"]), Conforms);
    check(m, "in-cidr-set", cidrs(&["0.0.0.0/0"]), cidrs(&["2001:db8::1"]), Violates);
}

#[test]
fn in_cidr_set_ipv6() {
    let m = "aws:source-ip-address";
    let doc = cidrs(&["2001:db8::/32"]);
    check(
        m,
        "in-cidr-set",
        doc.clone(),
        cidrs(&["2001:db8::1", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"]),
        Conforms,
    );
    check(m, "in-cidr-set", doc.clone(), cidrs(&["2001:db9::1"]), Violates);
    check(m, "in-cidr-set", doc.clone(), cidrs(&["2001:db7:ffff::1"]), Violates);
    check(m, "in-cidr-set", doc.clone(), cidrs(&["10.0.0.1"]), Violates);
    check(m, "in-cidr-set", cidrs(&["::/0"]), cidrs(&["::1", "ffff::"]), Conforms);
    check(m, "in-cidr-set", cidrs(&["::/0"]), cidrs(&["10.0.0.1"]), Violates);
    check(m, "in-cidr-set", cidrs(&["2001:db8::5"]), cidrs(&["2001:db8::5"]), Conforms);
    check(m, "in-cidr-set", cidrs(&["2001:db8::5/128"]), cidrs(&["2001:db8::6"]), Violates);
    check(m, "in-cidr-set", cidrs(&["2001:DB8::/32"]), cidrs(&["2001:db8::1"]), Conforms);
}

#[test]
fn ipv4_mapped_addresses_are_ipv4() {
    let m = "aws:source-ip-address";
    // What a dual-stack socket reports for an IPv4 peer matches IPv4 rules...
    check(m, "in-cidr-set", cidrs(&["10.0.0.0/8"]), cidrs(&["::ffff:10.0.0.1"]), Conforms);
    check(m, "not-in-cidr-set", cidrs(&["10.0.0.0/8"]), cidrs(&["::ffff:10.0.0.1"]), Violates);
    // ...and an IPv4 block written in the mapped form is the IPv4 block.
    check(m, "in-cidr-set", cidrs(&["::ffff:10.0.0.0/104"]), cidrs(&["10.9.9.9"]), Conforms);
    check(m, "in-cidr-set", cidrs(&["::ffff:10.0.0.0/104"]), cidrs(&["11.0.0.1"]), Violates);
    // Other IPv6 forms of IPv4 (compatible, NAT64) are IPv6.
    check(m, "in-cidr-set", cidrs(&["10.0.0.0/8"]), cidrs(&["::10.0.0.1"]), Violates);
    check(m, "in-cidr-set", cidrs(&["10.0.0.0/8"]), cidrs(&["64:ff9b::10.0.0.1"]), Violates);
}

#[test]
fn not_in_cidr_set() {
    let m = "aws:destination-ip-addresses";
    let bad = cidrs(&["203.0.113.0/24", "2001:db8:bad::/48"]);
    check(m, "not-in-cidr-set", bad.clone(), cidrs(&["198.51.100.7", "2001:db8::5"]), Conforms);
    check(m, "not-in-cidr-set", bad.clone(), cidrs(&["198.51.100.7", "203.0.113.9"]), Violates);
    check(m, "not-in-cidr-set", bad.clone(), cidrs(&["2001:db8:bad:1::1"]), Violates);
    check(m, "not-in-cidr-set", bad.clone(), cidrs(&["203.0.112.255", "203.0.114.0"]), Conforms);
    check(m, "not-in-cidr-set", bad.clone(), cidrs(&[]), Conforms);
    check(m, "not-in-cidr-set", cidrs(&[]), cidrs(&["203.0.113.9"]), Conforms);
}

#[test]
fn unreadable_addresses_are_not_judged() {
    let m = "aws:destination-ip-addresses";
    check(m, "in-cidr-set", cidrs(&["10.0.0.0/8"]), cidrs(&["10.0.0.1", "not-an-ip"]), Unjudged);
    check(m, "not-in-cidr-set", cidrs(&["10.0.0.0/8"]), cidrs(&["10.0.0.256"]), Unjudged);
    check(m, "in-cidr-set", cidrs(&["10.0.0.0/8"]), ports(&[1]), Unjudged);
}

#[test]
fn custom_ip_address_lists() {
    check("peers", "in-cidr-set", cidrs(&["198.51.100.0/24"]), cidrs(&["198.51.100.7"]), Conforms);
    check(
        "peers",
        "in-cidr-set",
        cidrs(&["198.51.100.0/24"]),
        cidrs(&["198.51.100.7", "2001:db8::5"]),
        Violates,
    );
    check("peers", "not-in-cidr-set", cidrs(&["198.51.100.0/24"]), cidrs(&["2001:db8::5"]), Conforms);
}

#[test]
fn in_set_numbers() {
    let set = numbers(&[41.0, 43.5]);
    check("cpu_temps", "in-set", set.clone(), numbers(&[41.0, 43.5, 41.0]), Conforms);
    check("cpu_temps", "in-set", set.clone(), numbers(&[41.0, 42.0]), Violates);
    check("cpu_temps", "in-set", set.clone(), numbers(&[43.500001]), Violates);
    check("cpu_temps", "in-set", set.clone(), numbers(&[]), Conforms);
    // -0 and 0 are the same number, as in JSON.
    check("cpu_temps", "in-set", numbers(&[0.0]), numbers(&[-0.0]), Conforms);
    check("cpu_temps", "in-set", numbers(&[-0.0]), numbers(&[0.0]), Conforms);
    check("cpu_temps", "in-set", numbers(&[-1.0, 1e300]), numbers(&[1e300, -1.0]), Conforms);
    check("cpu_temps", "in-set", set.clone(), numbers(&[41.0, f64::NAN]), Unjudged);
    check("cpu_temps", "in-set", set, strings(&["41"]), Unjudged);
}

#[test]
fn not_in_set_numbers() {
    let set = numbers(&[100.0, -40.0]);
    check("cpu_temps", "not-in-set", set.clone(), numbers(&[41.0, 99.99]), Conforms);
    check("cpu_temps", "not-in-set", set.clone(), numbers(&[41.0, -40.0]), Violates);
    check("cpu_temps", "not-in-set", set.clone(), numbers(&[]), Conforms);
    check("cpu_temps", "not-in-set", numbers(&[]), numbers(&[1.0]), Conforms);
}

#[test]
fn in_set_strings() {
    let set = strings(&["dropbear", "wpa_supplicant"]);
    check("daemons", "in-set", set.clone(), strings(&["wpa_supplicant", "dropbear"]), Conforms);
    check("daemons", "in-set", set.clone(), strings(&["dropbear", "telnetd"]), Violates);
    check("daemons", "in-set", set.clone(), strings(&["Dropbear"]), Violates);
    check("daemons", "in-set", set.clone(), strings(&["dropbear "]), Violates);
    check("daemons", "in-set", set.clone(), strings(&[]), Conforms);
    check("daemons", "in-set", strings(&[]), strings(&["dropbear"]), Violates);
    check("daemons", "in-set", set, numbers(&[1.0]), Unjudged);
}

#[test]
fn not_in_set_strings() {
    let set = strings(&["telnetd", "nc"]);
    check("daemons", "not-in-set", set.clone(), strings(&["dropbear"]), Conforms);
    check("daemons", "not-in-set", set.clone(), strings(&["dropbear", "nc"]), Violates);
    check("daemons", "not-in-set", set.clone(), strings(&["NC", "netcat"]), Conforms);
    check("daemons", "not-in-set", set, strings(&[]), Conforms);
}
