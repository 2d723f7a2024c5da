//! Property tests: every valid report survives all four encodings, decoding never panics, and
//! validation does not depend on the encoding.

use crate::support::{Doc, Lengths};
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use std::net::{IpAddr, SocketAddr};
use warden_wire::{
    Connection, CustomMetricValue, ErrorCode, EstablishedConnections, Format, Limits, ListeningPort,
    ListeningPorts, MetricReport, Metrics, Names, NetworkStats, Rejection, TcpConnections, decode_reply,
    decode_report, encode_report,
};

const ENCODINGS: [(Format, Names); 4] = [
    (Format::Json, Names::Long),
    (Format::Json, Names::Short),
    (Format::Cbor, Names::Long),
    (Format::Cbor, Names::Short),
];

fn decode(bytes: &[u8], format: Format) -> Result<MetricReport, Rejection> {
    decode_report(bytes, format, &Limits::default())
}

// Strategies for valid reports.

/// Any text, control characters and non-ASCII included.
fn text() -> impl Strategy<Value = String> {
    vec(any::<char>(), 0..12).prop_map(String::from_iter)
}

fn port() -> impl Strategy<Value = u16> {
    1..=u16::MAX
}

/// Finite doubles of any magnitude, and integral ones, which are encoded as integers.
fn finite() -> impl Strategy<Value = f64> {
    use proptest::num::f64::{NEGATIVE, NORMAL, POSITIVE, SUBNORMAL, ZERO};
    prop_oneof![
        POSITIVE | NEGATIVE | NORMAL | SUBNORMAL | ZERO,
        any::<i64>().prop_map(|i| i as f64),
        (-1000i32..1000).prop_map(f64::from),
    ]
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<std::net::Ipv4Addr>().prop_map(IpAddr::V4),
        any::<std::net::Ipv6Addr>().prop_map(IpAddr::V6),
    ]
}

/// `total` counts at least the entries listed.
fn total(listed: usize) -> impl Strategy<Value = Option<u64>> {
    option::of(
        prop_oneof![Just(0u64), 0..100u64, any::<u64>()]
            .prop_map(move |extra| (listed as u64).saturating_add(extra)),
    )
}

fn listening_ports() -> impl Strategy<Value = ListeningPorts> {
    option::of(vec((port(), option::of(text())), 0..6))
        .prop_flat_map(|ports| {
            let listed = ports.as_ref().map_or(0, Vec::len);
            (Just(ports), total(listed))
        })
        .prop_map(|(ports, total)| ListeningPorts {
            ports: ports.map(|ports| {
                ports.into_iter().map(|(port, interface)| ListeningPort { port, interface }).collect()
            }),
            total,
        })
}

fn connection() -> impl Strategy<Value = Connection> {
    (ip(), port(), option::of(port()), option::of(text())).prop_map(
        |(ip, remote_port, local_port, local_interface)| Connection {
            remote_addr: SocketAddr::new(ip, remote_port),
            local_port,
            local_interface,
        },
    )
}

fn tcp_connections() -> impl Strategy<Value = TcpConnections> {
    option::of(
        option::of(vec(connection(), 0..6))
            .prop_flat_map(|connections| {
                let listed = connections.as_ref().map_or(0, Vec::len);
                (Just(connections), total(listed))
            })
            .prop_map(|(connections, total)| EstablishedConnections { connections, total }),
    )
    .prop_map(|established_connections| TcpConnections { established_connections })
}

fn network_stats() -> impl Strategy<Value = NetworkStats> {
    let counter = || option::of(prop_oneof![0..10_000u64, any::<u64>()]);
    (counter(), counter(), counter(), counter()).prop_map(|(bytes_in, bytes_out, packets_in, packets_out)| {
        NetworkStats { bytes_in, bytes_out, packets_in, packets_out }
    })
}

fn metrics() -> impl Strategy<Value = Metrics> {
    (
        option::of(listening_ports()),
        option::of(listening_ports()),
        option::of(network_stats()),
        option::of(tcp_connections()),
    )
        .prop_map(|(listening_tcp_ports, listening_udp_ports, network_stats, tcp_connections)| Metrics {
            listening_tcp_ports,
            listening_udp_ports,
            network_stats,
            tcp_connections,
        })
}

fn metric_name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9:_-]{1,128}".prop_filter("reserved prefix", |name| !name.starts_with("aws:"))
}

fn custom_metric() -> impl Strategy<Value = CustomMetricValue> {
    prop_oneof![
        finite().prop_map(CustomMetricValue::Number),
        vec(finite(), 0..5).prop_map(CustomMetricValue::NumberList),
        vec(text(), 0..5).prop_map(CustomMetricValue::StringList),
        vec(ip(), 0..5).prop_map(CustomMetricValue::IpList),
    ]
}

fn version() -> impl Strategy<Value = String> {
    prop_oneof![Just("1.0".to_owned()), "1\\.[0-9]{1,3}"]
}

fn report() -> impl Strategy<Value = MetricReport> {
    let custom_metrics = || btree_map(metric_name(), custom_metric(), 0..5);
    (
        1..=u64::MAX,
        version(),
        prop_oneof![
            (metrics(), custom_metrics()).prop_map(|(m, c)| (Some(m), Some(c))),
            metrics().prop_map(|m| (Some(m), None)),
            custom_metrics().prop_map(|c| (None, Some(c))),
        ],
    )
        .prop_map(|(report_id, version, (metrics, custom_metrics))| {
            let mut report = MetricReport::new(report_id);
            report.header.version = version;
            report.metrics = metrics;
            report.custom_metrics = custom_metrics;
            report
        })
}

// Strategies for documents that are mostly wrong in interesting ways.

/// Keys a report may hold, some wrong, so that random trees reach deep into validation.
const KEYS: &[&str] = &[
    "header",
    "hed",
    "h",
    "report_id",
    "rid",
    "version",
    "v",
    "metrics",
    "met",
    "custom_metrics",
    "cmet",
    "tcp_connections",
    "tc",
    "established_connections",
    "ec",
    "connections",
    "cs",
    "remote_addr",
    "rad",
    "local_port",
    "lp",
    "local_interface",
    "li",
    "total",
    "t",
    "listening_tcp_ports",
    "tp",
    "listening_udp_ports",
    "up",
    "ports",
    "pts",
    "port",
    "pt",
    "interface",
    "if",
    "network_stats",
    "ns",
    "bytes_in",
    "bi",
    "bytes_out",
    "bo",
    "packets_in",
    "pi",
    "packets_out",
    "po",
    "number",
    "number_list",
    "string_list",
    "ip_list",
    "m",
    "aws:m",
    "",
];

fn doc() -> impl Strategy<Value = Doc> {
    let leaf = prop_oneof![
        Just(Doc::Null),
        any::<bool>().prop_map(Doc::Bool),
        prop_oneof![-3i128..70000, any::<i64>().prop_map(i128::from), any::<u64>().prop_map(i128::from)]
            .prop_map(Doc::Int),
        finite().prop_map(Doc::Float),
        prop_oneof![
            Just("1.0"),
            Just("1.7"),
            Just("2.0"),
            Just("10.0.0.1:80"),
            Just("[::1]:443"),
            Just("2001:db8::1:22"),
            Just("10.0.0.1"),
            Just("22"),
            Just("0"),
            Just("eth0"),
        ]
        .prop_map(|s| Doc::Text(s.to_owned())),
        text().prop_map(Doc::Text),
    ];
    leaf.prop_recursive(7, 64, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Doc::Array),
            vec((proptest::sample::select(KEYS).prop_map(str::to_owned), inner), 0..6).prop_map(Doc::Map),
        ]
    })
}

/// A document with a valid header and random metrics, so that the random part is validated.
fn report_doc() -> impl Strategy<Value = Doc> {
    (doc(), doc()).prop_map(|(metrics, custom_metrics)| {
        let header =
            Doc::Map(vec![("rid".to_owned(), Doc::Int(7)), ("v".to_owned(), Doc::Text("1.0".to_owned()))]);
        Doc::Map(vec![
            ("hed".to_owned(), header),
            ("met".to_owned(), metrics),
            ("cmet".to_owned(), custom_metrics),
        ])
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=u8::MAX).prop_map(|(at, mask)| Mutation::Flip(at, mask)),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert(at, byte)),
        any::<usize>().prop_map(Mutation::Remove),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(bytes: &mut Vec<u8>, mutation: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    match *mutation {
        Mutation::Flip(at, mask) => {
            let at = at % bytes.len();
            bytes[at] ^= mask;
        }
        Mutation::Insert(at, byte) => bytes.insert(at % (bytes.len() + 1), byte),
        Mutation::Remove(at) => {
            bytes.remove(at % bytes.len());
        }
        Mutation::Truncate(at) => bytes.truncate(at % bytes.len()),
    }
}

/// What must hold for any decode result: a rejection is `InvalidPayload` with the AWS prefix;
/// an accepted report is valid, so it survives every encoding unchanged.
fn check_outcome(outcome: &Result<MetricReport, Rejection>) -> Result<(), TestCaseError> {
    match outcome {
        Ok(report) => {
            for (format, names) in ENCODINGS {
                let again = decode(&encode_report(report, format, names), format);
                prop_assert_eq!(again.as_ref(), Ok(report), "{:?} {:?}", format, names);
            }
        }
        Err(rejection) => {
            prop_assert_eq!(&rejection.code, &ErrorCode::InvalidPayload);
            prop_assert!(
                rejection.message.starts_with("Malformed metrics report: "),
                "{}",
                rejection.message
            );
        }
    }
    Ok(())
}

// 256 cases each by default; set `PROPTEST_CASES` to search longer.
proptest! {
    #[test]
    fn every_encoding_round_trips(report in report()) {
        for (format, names) in ENCODINGS {
            let bytes = encode_report(&report, format, names);
            let decoded = decode(&bytes, format);
            prop_assert_eq!(decoded.as_ref(), Ok(&report), "{:?} {:?}", format, names);
        }
    }

    #[test]
    fn short_names_are_never_longer(report in report()) {
        for format in [Format::Json, Format::Cbor] {
            let long = encode_report(&report, format, Names::Long).len();
            let short = encode_report(&report, format, Names::Short).len();
            prop_assert!(short <= long, "{:?}: short {} > long {}", format, short, long);
        }
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in vec(any::<u8>(), 0..512)) {
        for format in [Format::Json, Format::Cbor] {
            check_outcome(&decode(&bytes, format))?;
            let _ = decode_reply(&bytes, format);
        }
    }

    #[test]
    fn decoding_mutated_reports_never_panics(
        report in report(),
        encoding in proptest::sample::select(&ENCODINGS[..]),
        mutations in vec(mutation(), 1..6),
    ) {
        let (format, names) = encoding;
        let mut bytes = encode_report(&report, format, names);
        for mutation in &mutations {
            mutate(&mut bytes, mutation);
        }
        check_outcome(&decode(&bytes, format))?;
        let _ = decode_reply(&bytes, format);
    }

    /// The same document gets the same verdict, with the same message, in JSON and in CBOR
    /// with either kind of lengths.
    #[test]
    fn validation_does_not_depend_on_the_encoding(doc in prop_oneof![doc(), report_doc()]) {
        let json = decode(&doc.to_json(), Format::Json);
        check_outcome(&json)?;
        let cbor = decode(&doc.to_cbor(Lengths::Definite), Format::Cbor);
        prop_assert_eq!(&cbor, &json);
        let indefinite = decode(&doc.to_cbor(Lengths::Indefinite), Format::Cbor);
        prop_assert_eq!(&indefinite, &json);
    }
}
