//! Golden documents: the reports captured from the official AWS Python agent
//! (`tests/data/captures/`, copied from `shared/spec/captures/`) and the long- and short-name
//! examples of spec §1.6–1.7 (`tests/data/spec/`).

use crate::support::{Doc, data, decode};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use warden_wire::{
    Connection, CustomMetricValue, EstablishedConnections, Format, ListeningPort, ListeningPorts,
    MetricReport, Metrics, Names, NetworkStats, TcpConnections, encode_report,
};

/// Every capture, by file name, with the report id the agent sent.
const CAPTURES: &[(&str, u64)] = &[
    ("report.json", 1795819146),
    ("report1.json", 1795819144),
    ("report2.json", 1795819146),
    ("report3.json", 1795819148),
    ("report4.json", 1795819150),
    ("report.cbor", 1795819157),
    ("report1.cbor", 1795819155),
    ("report2.cbor", 1795819157),
    ("report3.cbor", 1795819159),
    ("report4.cbor", 1795819161),
];

fn format_of(file: &str) -> Format {
    if file.ends_with(".json") { Format::Json } else { Format::Cbor }
}

/// Recursively sorts map keys, so that documents compare regardless of key order.
fn canonical(doc: Doc) -> Doc {
    match doc {
        Doc::Array(items) => Doc::Array(items.into_iter().map(canonical).collect()),
        Doc::Map(entries) => {
            let mut entries: Vec<_> = entries.into_iter().map(|(k, v)| (k, canonical(v))).collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Doc::Map(entries)
        }
        other => other,
    }
}

fn parse_doc(bytes: &[u8], format: Format) -> Doc {
    let doc = match format {
        Format::Json => serde_json::from_slice(bytes).unwrap(),
        Format::Cbor => minicbor_serde::from_slice(bytes).unwrap(),
    };
    canonical(doc)
}

#[test]
fn every_capture_is_listed() {
    let mut on_disk: Vec<String> =
        std::fs::read_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/captures"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.ends_with(".json") || name.ends_with(".cbor"))
            .collect();
    on_disk.sort();
    let mut listed: Vec<String> = CAPTURES.iter().map(|(f, _)| f.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
}

#[test]
fn every_capture_decodes_and_validates() {
    for &(file, report_id) in CAPTURES {
        let report = decode(&data(&format!("captures/{file}")), format_of(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(report.header.report_id, report_id, "{file}");
        assert_eq!(report.header.version, "1.0", "{file}");
        assert_eq!(report.custom_metrics, None, "{file}");
        let metrics = report.metrics.unwrap();
        let stats = metrics.network_stats.unwrap();
        assert!(stats.bytes_in.is_some() && stats.packets_out.is_some(), "{file}");
        let tcp = metrics.listening_tcp_ports.unwrap();
        assert_eq!(tcp.total, Some(5), "{file}");
        assert_eq!(tcp.ports.unwrap().len(), 5, "{file}");
        let established = metrics.tcp_connections.unwrap().established_connections.unwrap();
        assert_eq!(established.total, Some(4), "{file}");
        assert_eq!(established.connections.unwrap().len(), 4, "{file}");
    }
}

/// Warden's long-name encoding carries exactly the agent's document (key order aside), and
/// every encoding of a capture decodes back to the same report.
#[test]
fn every_capture_reencodes() {
    for &(file, _) in CAPTURES {
        let format = format_of(file);
        let original = data(&format!("captures/{file}"));
        let report = decode(&original, format).unwrap();
        let ours = encode_report(&report, format, Names::Long);
        assert_eq!(parse_doc(&ours, format), parse_doc(&original, format), "{file}");
        for format in [Format::Json, Format::Cbor] {
            for names in [Names::Long, Names::Short] {
                let bytes = encode_report(&report, format, names);
                assert_eq!(decode(&bytes, format).unwrap(), report, "{file} {format:?} {names:?}");
            }
        }
    }
}

#[test]
fn first_json_capture_in_full() {
    let report = decode(&data("captures/report.json"), Format::Json).unwrap();
    let conn = |remote: &str, local_port| Connection {
        remote_addr: remote.parse().unwrap(),
        local_port: Some(local_port),
        local_interface: Some("lo".to_owned()),
    };
    let port = |port, interface: &str| ListeningPort { port, interface: Some(interface.to_owned()) };
    let mut expected = MetricReport::new(1795819146);
    expected.metrics = Some(Metrics {
        listening_tcp_ports: Some(ListeningPorts {
            ports: Some(vec![
                port(18883, "lo"),
                port(2024, "0.0.0.0"),
                port(28883, "lo"),
                port(18885, "lo"),
                port(443, "lo"),
            ]),
            total: Some(5),
        }),
        listening_udp_ports: None,
        network_stats: Some(NetworkStats {
            bytes_in: Some(1786),
            bytes_out: Some(1786),
            packets_in: Some(4),
            packets_out: Some(4),
        }),
        tcp_connections: Some(TcpConnections {
            established_connections: Some(EstablishedConnections {
                connections: Some(vec![
                    conn("127.0.0.1:44536", 18883),
                    conn("127.0.0.1:18883", 44536),
                    conn("127.0.0.1:443", 38738),
                    conn("127.0.0.1:38738", 443),
                ]),
                total: Some(4),
            }),
        }),
    });
    assert_eq!(report, expected);
}

/// The report of spec §1.6 and §1.7, built by hand.
fn spec_example() -> MetricReport {
    let eth0 = || Some("eth0".to_owned());
    let conn = |remote: &str, local_port| Connection {
        remote_addr: remote.parse::<SocketAddr>().unwrap(),
        local_port: Some(local_port),
        local_interface: eth0(),
    };
    let mut report = MetricReport::new(1718000100);
    report.metrics = Some(Metrics {
        listening_tcp_ports: Some(ListeningPorts {
            ports: Some(vec![
                ListeningPort { port: 22, interface: eth0() },
                ListeningPort { port: 8080, interface: eth0() },
            ]),
            total: Some(2),
        }),
        listening_udp_ports: Some(ListeningPorts {
            ports: Some(vec![ListeningPort { port: 68, interface: eth0() }]),
            total: Some(1),
        }),
        network_stats: Some(NetworkStats {
            bytes_in: Some(18244),
            bytes_out: Some(9120),
            packets_in: Some(131),
            packets_out: Some(97),
        }),
        tcp_connections: Some(TcpConnections {
            established_connections: Some(EstablishedConnections {
                connections: Some(vec![conn("198.51.100.7:8883", 51234), conn("[2001:db8::5]:50022", 22)]),
                total: Some(2),
            }),
        }),
    });
    report.custom_metrics = Some(BTreeMap::from([
        ("battery_pct".to_owned(), CustomMetricValue::Number(76.5)),
        ("cpu_temps".to_owned(), CustomMetricValue::NumberList(vec![41.0, 43.5])),
        (
            "daemons".to_owned(),
            CustomMetricValue::StringList(vec!["dropbear".to_owned(), "wpa_supplicant".to_owned()]),
        ),
        (
            "peers".to_owned(),
            CustomMetricValue::IpList(vec!["198.51.100.7".parse().unwrap(), "2001:db8::5".parse().unwrap()]),
        ),
    ]));
    report
}

#[test]
fn spec_long_and_short_examples_decode_to_the_same_report() {
    let long = decode(&data("spec/long.json"), Format::Json).unwrap();
    let short = decode(&data("spec/short.json"), Format::Json).unwrap();
    assert_eq!(long, spec_example());
    assert_eq!(short, spec_example());
}

/// Encoding the example gives the spec's documents, up to key order and whitespace.
#[test]
fn spec_examples_are_what_warden_encodes() {
    for (file, names) in [("spec/long.json", Names::Long), ("spec/short.json", Names::Short)] {
        let ours = encode_report(&spec_example(), Format::Json, names);
        assert_eq!(parse_doc(&ours, Format::Json), parse_doc(&data(file), Format::Json), "{file}");
    }
}
