//! Reports that must be accepted, including the quirks of real agents (spec §1.3 and the
//! captures' README): the C agent's `h` header and text `local_port`, `null` interfaces,
//! unbracketed IPv6 remote addresses, tinycbor's indefinite-length containers.

use crate::support::{Doc, Lengths, cbor, decode};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use warden_wire::{
    Connection, CustomMetricValue, EstablishedConnections, Format, ListeningPort, ListeningPorts,
    MetricReport, Metrics, NetworkStats, TcpConnections,
};

/// Checks that `json` decodes to `expect` as JSON and as CBOR with definite and indefinite
/// lengths.
#[track_caller]
fn check(json: &str, expect: &MetricReport) {
    let doc = Doc::from_json(json);
    let encodings = [
        ("JSON", doc.to_json(), Format::Json),
        ("CBOR", doc.to_cbor(Lengths::Definite), Format::Cbor),
        ("CBOR indefinite", doc.to_cbor(Lengths::Indefinite), Format::Cbor),
    ];
    for (what, bytes, format) in encodings {
        match decode(&bytes, format) {
            Ok(report) => assert_eq!(&report, expect, "{what}"),
            Err(rejection) => panic!("{what}: rejected: {}", rejection.message),
        }
    }
}

fn with_metrics(metrics: Metrics) -> MetricReport {
    let mut report = MetricReport::new(7);
    report.metrics = Some(metrics);
    report
}

fn with_custom(name: &str, value: CustomMetricValue) -> MetricReport {
    let mut report = MetricReport::new(7);
    report.custom_metrics = Some(BTreeMap::from([(name.to_owned(), value)]));
    report
}

fn tcp_ports(ports: Option<Vec<ListeningPort>>, total: Option<u64>) -> MetricReport {
    with_metrics(Metrics { listening_tcp_ports: Some(ListeningPorts { ports, total }), ..Metrics::default() })
}

fn connections(connections: Vec<Connection>) -> MetricReport {
    with_metrics(Metrics {
        tcp_connections: Some(TcpConnections {
            established_connections: Some(EstablishedConnections {
                connections: Some(connections),
                total: None,
            }),
        }),
        ..Metrics::default()
    })
}

fn connection(remote_addr: &str) -> Connection {
    Connection { remote_addr: remote_addr.parse().unwrap(), local_port: None, local_interface: None }
}

#[test]
fn smallest_reports() {
    check(r#"{"hed":{"rid":7,"v":"1.0"},"met":{}}"#, &with_metrics(Metrics::default()));
    check(r#"{"header":{"report_id":7,"version":"1.0"},"metrics":{}}"#, &with_metrics(Metrics::default()));
    let mut custom_only = MetricReport::new(7);
    custom_only.custom_metrics = Some(BTreeMap::new());
    check(r#"{"hed":{"rid":7,"v":"1.0"},"cmet":{}}"#, &custom_only);
}

#[test]
fn any_minor_version() {
    for version in ["1.0", "1.1", "1.25", "1.00"] {
        let mut expect = with_metrics(Metrics::default());
        expect.header.version = version.to_owned();
        check(&format!(r#"{{"hed":{{"rid":7,"v":"{version}"}},"met":{{}}}}"#), &expect);
    }
}

#[test]
fn report_id_range() {
    let mut expect = with_metrics(Metrics::default());
    for rid in [1, 1795819146, u64::MAX] {
        expect.header.report_id = rid;
        check(&format!(r#"{{"hed":{{"rid":{rid},"v":"1.0"}},"met":{{}}}}"#), &expect);
    }
}

#[test]
fn header_named_h_as_the_c_agent_does() {
    check(r#"{"h":{"rid":7,"v":"1.0"},"met":{}}"#, &with_metrics(Metrics::default()));
}

/// The C agent writes `local_port` as a CBOR text string; digit strings are accepted for
/// every port field, in both encodings.
#[test]
fn ports_as_digit_strings() {
    let mut expect = connection("10.0.0.1:8883");
    expect.local_port = Some(51234);
    check(
        r#"{"hed":{"rid":7,"v":"1.0"},"met":{"tc":{"ec":{"cs":[{"rad":"10.0.0.1:8883","lp":"51234"}]}}}}"#,
        &connections(vec![expect]),
    );
    check(
        r#"{"hed":{"rid":7,"v":"1.0"},"met":{"tp":{"pts":[{"pt":"00022"}]}}}"#,
        &tcp_ports(Some(vec![ListeningPort { port: 22, interface: None }]), None),
    );
}

#[test]
fn null_is_absent() {
    check(
        r#"{"hed":{"rid":7,"v":"1.0"},"met":{"tp":{"pts":[{"pt":22,"if":null}],"t":null}}}"#,
        &tcp_ports(Some(vec![ListeningPort { port: 22, interface: None }]), None),
    );
    check(
        r#"{"hed":{"rid":7,"v":"1.0"},"met":{"tc":{"ec":{"cs":[{"rad":"10.0.0.1:1","li":null,"lp":null}]}}}}"#,
        &connections(vec![connection("10.0.0.1:1")]),
    );
    check(
        r#"{"hed":{"rid":7,"v":"1.0"},"met":{"ns":null,"tp":null,"up":null,"tc":null},"cmet":null}"#,
        &with_metrics(Metrics::default()),
    );
    // A field given once with a value and once as null is not a duplicate.
    check(r#"{"hed":{"rid":7,"v":"1.0"},"met":{},"metrics":null}"#, &with_metrics(Metrics::default()));
    let mut expect = MetricReport::new(7);
    expect.custom_metrics = Some(BTreeMap::new());
    check(r#"{"hed":{"rid":7,"v":"1.0"},"cmet":{"m":null}}"#, &expect);
}

#[test]
fn remote_addr_forms() {
    let check_rad = |rad: &str, expect: &str| {
        check(
            &format!(
                r#"{{"hed":{{"rid":7,"v":"1.0"}},"met":{{"tc":{{"ec":{{"cs":[{{"rad":"{rad}"}}]}}}}}}}}"#
            ),
            &connections(vec![connection(expect)]),
        )
    };
    check_rad("198.51.100.7:8883", "198.51.100.7:8883");
    check_rad("10.0.0.1:65535", "10.0.0.1:65535");
    check_rad("[2001:db8::5]:50022", "[2001:db8::5]:50022");
    check_rad("[::ffff:10.0.0.1]:80", "[::ffff:10.0.0.1]:80");
    // The Python agent does not bracket IPv6: the last `:` separates the port.
    check_rad("2001:db8::5:50022", "[2001:db8::5]:50022");
    check_rad("::1:443", "[::1]:443");
    check_rad("1:2:3:4:5:6:7:8:22", "[1:2:3:4:5:6:7:8]:22");
    check_rad("::ffff:10.0.0.1:80", "[::ffff:10.0.0.1]:80");
    check_rad("fe80::1:22", "[fe80::1]:22");
}

#[test]
fn interfaces_hold_what_the_agent_saw() {
    // Wildcard binds show up as addresses, not interface names (captures' README).
    let port = |port, interface: &str| ListeningPort { port, interface: Some(interface.to_owned()) };
    check(
        r#"{"hed":{"rid":7,"v":"1.0"},"met":{"tp":{"pts":[{"pt":2024,"if":"0.0.0.0"},{"pt":22,"if":"::"},{"pt":80,"if":""}]}}}"#,
        &tcp_ports(Some(vec![port(2024, "0.0.0.0"), port(22, "::"), port(80, "")]), None),
    );
}

#[test]
fn total_may_exceed_the_entries_listed() {
    // The Python agent lists at most 50 entries while `total` counts all of them.
    check(
        r#"{"hed":{"rid":7,"v":"1.0"},"met":{"tp":{"pts":[{"pt":22}],"t":120}}}"#,
        &tcp_ports(Some(vec![ListeningPort { port: 22, interface: None }]), Some(120)),
    );
    check(r#"{"hed":{"rid":7,"v":"1.0"},"met":{"tp":{"t":3}}}"#, &tcp_ports(None, Some(3)));
}

#[test]
fn empty_lists() {
    check(r#"{"hed":{"rid":7,"v":"1.0"},"met":{"tp":{"pts":[],"t":0}}}"#, &tcp_ports(Some(vec![]), Some(0)));
    check(
        r#"{"hed":{"rid":7,"v":"1.0"},"cmet":{"m":[{"ip_list":[]}]}}"#,
        &with_custom("m", CustomMetricValue::IpList(vec![])),
    );
}

#[test]
fn unknown_keys_are_ignored() {
    check(
        r#"{"hed":{"rid":7,"v":"1.0","agent":"x"},"met":{"ns":{"bi":1,"drops":[1,{}]},"cpu":{}},"extra":null,"more":[[1]]}"#,
        &with_metrics(Metrics {
            network_stats: Some(NetworkStats { bytes_in: Some(1), ..NetworkStats::default() }),
            ..Metrics::default()
        }),
    );
}

#[test]
fn long_and_short_names_mixed() {
    check(
        r#"{"header":{"rid":7,"version":"1.0"},"met":{"network_stats":{"bi":1,"bytes_out":2,"pi":3,"packets_out":4}}}"#,
        &with_metrics(Metrics {
            network_stats: Some(NetworkStats {
                bytes_in: Some(1),
                bytes_out: Some(2),
                packets_in: Some(3),
                packets_out: Some(4),
            }),
            ..Metrics::default()
        }),
    );
}

/// Some encoders write every number as a double; integral ones count as integers.
#[test]
fn integral_floats_as_integers() {
    let mut expect = with_metrics(Metrics {
        network_stats: Some(NetworkStats { bytes_in: Some(1786), ..NetworkStats::default() }),
        ..Metrics::default()
    });
    expect.header.report_id = 1795819146;
    check(r#"{"hed":{"rid":1795819146.0,"v":"1.0"},"met":{"ns":{"bi":1786.0}}}"#, &expect);
    check(
        r#"{"hed":{"rid":7,"v":"1.0"},"met":{"tp":{"pts":[{"pt":22.0}]}}}"#,
        &tcp_ports(Some(vec![ListeningPort { port: 22, interface: None }]), None),
    );
}

#[test]
fn custom_metric_types() {
    let check_value = |value: &str, expect: CustomMetricValue| {
        check(
            &format!(r#"{{"hed":{{"rid":7,"v":"1.0"}},"cmet":{{"m":{value}}}}}"#),
            &with_custom("m", expect),
        )
    };
    use CustomMetricValue::*;
    check_value(r#"[{"number":75}]"#, Number(75.0));
    check_value(r#"[{"number":-0.25}]"#, Number(-0.25));
    check_value(r#"[{"number":1e300}]"#, Number(1e300));
    check_value(r#"[{"number":-9007199254740993}]"#, Number(-9007199254740993.0));
    check_value(r#"[{"number_list":[1,2.5,-3]}]"#, NumberList(vec![1.0, 2.5, -3.0]));
    check_value(r#"[{"number_list":[]}]"#, NumberList(vec![]));
    check_value(r#"[{"string_list":["a","b c",""]}]"#, StringList(vec!["a".into(), "b c".into(), "".into()]));
    check_value(
        r#"[{"ip_list":["172.0.0.10","2001:db8::5","::ffff:1.2.3.4"]}]"#,
        IpList(vec![
            "172.0.0.10".parse().unwrap(),
            "2001:db8::5".parse().unwrap(),
            "::ffff:1.2.3.4".parse().unwrap(),
        ]),
    );
}

#[test]
fn custom_metric_names() {
    let check_name = |name: &str| {
        check(
            &format!(r#"{{"hed":{{"rid":7,"v":"1.0"}},"cmet":{{"{name}":[{{"number":1}}]}}}}"#),
            &with_custom(name, CustomMetricValue::Number(1.0)),
        )
    };
    for name in ["cpu_usage", "a", "AWS:x", "x:aws:y", "with-dash_and:colon09", &"m".repeat(128)] {
        check_name(name);
    }
}

// CBOR forms the JSON text cannot show.

fn cbor_text(s: &str) -> Vec<u8> {
    Doc::Text(s.to_owned()).to_cbor(Lengths::Definite)
}

/// `{"h":{"rid":7,"v":<version>},"met":{}}` with `version` given as raw CBOR.
fn cbor_with_version(version: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0xa2];
    bytes.extend(cbor_text("h"));
    bytes.push(0xa2);
    bytes.extend(cbor_text("rid"));
    bytes.push(0x07);
    bytes.extend(cbor_text("v"));
    bytes.extend_from_slice(version);
    bytes.extend(cbor_text("met"));
    bytes.push(0xa0);
    bytes
}

#[test]
fn cbor_indefinite_length_text() {
    // "1.0" in two chunks, as a streaming encoder may write it.
    let bytes = cbor_with_version(&[0x7f, 0x62, b'1', b'.', 0x61, b'0', 0xff]);
    assert_eq!(decode(&bytes, Format::Cbor).unwrap(), with_metrics(Metrics::default()));
}

#[test]
fn cbor_number_widths() {
    let report = |number: &[u8]| {
        let mut bytes = cbor(r#"{"hed":{"rid":7,"v":"1.0"},"cmet":{"m":[{"number":0}]}}"#);
        bytes.pop();
        bytes.extend_from_slice(number);
        decode(&bytes, Format::Cbor).unwrap()
    };
    let number = |n| with_custom("m", CustomMetricValue::Number(n));
    assert_eq!(report(&[0xf9, 0x3e, 0x00]), number(1.5), "half precision");
    assert_eq!(report(&[0xfa, 0x3f, 0xc0, 0, 0]), number(1.5), "single precision");
    assert_eq!(report(&[0x1b, 0, 0, 0, 0, 0, 0, 1, 0]), number(256.0), "8-byte integer");
    assert_eq!(report(&[0x38, 0x63]), number(-100.0), "negative integer");
    // Counters in non-minimal heads, as some encoders write fixed widths.
    let mut bytes = cbor(r#"{"hed":{"rid":7,"v":"1.0"},"met":{"ns":{"bi":0}}}"#);
    bytes.pop();
    bytes.extend_from_slice(&[0x1a, 0, 0, 0, 5]);
    let expect = with_metrics(Metrics {
        network_stats: Some(NetworkStats { bytes_in: Some(5), ..NetworkStats::default() }),
        ..Metrics::default()
    });
    assert_eq!(decode(&bytes, Format::Cbor).unwrap(), expect);
}

#[test]
fn remote_addr_round_trips_to_the_bracketed_form() {
    let report = connections(vec![connection("[2001:db8::5]:50022")]);
    let json = warden_wire::encode_report(&report, Format::Json, warden_wire::Names::Short);
    assert_eq!(
        String::from_utf8(json).unwrap(),
        r#"{"hed":{"rid":7,"v":"1.0"},"met":{"tc":{"ec":{"cs":[{"rad":"[2001:db8::5]:50022"}]}}}}"#
    );
    // A scope id means nothing off the device and is not written.
    let mut scoped = connection("[fe80::1]:22");
    if let SocketAddr::V6(addr) = &mut scoped.remote_addr {
        addr.set_scope_id(3);
    }
    let json =
        warden_wire::encode_report(&connections(vec![scoped]), Format::Json, warden_wire::Names::Short);
    assert!(String::from_utf8_lossy(&json).contains(r#""rad":"[fe80::1]:22""#));
    assert_eq!(decode(&json, Format::Json).unwrap(), connections(vec![connection("[fe80::1]:22")]));
}
