//! Validation: from a decoded document tree to a [`MetricReport`], or the list of problems.
//!
//! Every rule of spec §1 is checked here, for both encodings and both naming schemes at once.
//! Each problem names the offending field by the path of keys the device sent
//! (`met.tp.pts[2].pt`), so a device owner can find it in their own payload. Unknown keys are
//! ignored: minor format versions may add fields. `null` counts as absent, since real agents
//! send `"interface": null`. A field given twice, under one name or both, is ambiguous and
//! refused. Text echoed back from the device is escaped and clipped, so a rejection stays small.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use crate::keys::{self, Key};
use crate::model::*;
use crate::topic::is_valid_metric_name;
use crate::value::Value;

/// Reporting more than this many problems helps nobody and bounds the reply size.
const MAX_PROBLEMS: usize = 10;

/// Where a value sits in the document, built on the stack while walking it.
#[derive(Clone, Copy)]
enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => f.write_str("report"),
            Path::Key(Path::Root, k) => write!(f, "{}", echo(k, false)),
            Path::Key(parent, k) => write!(f, "{parent}.{}", echo(k, false)),
            Path::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

/// Longest piece of device-sent text echoed in a message, so a rejection stays small.
const MAX_ECHO: usize = 64;

/// The first [`MAX_ECHO`] bytes of `s`, cut at a character boundary.
fn clip(s: &str) -> &str {
    if s.len() <= MAX_ECHO {
        return s;
    }
    let mut end = MAX_ECHO;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Device-sent text in a message, clipped with `...` when long; `quoted` also escapes it, as
/// values may hold quotes or control characters.
fn echo(s: &str, quoted: bool) -> impl fmt::Display + '_ {
    fmt::from_fn(move |f| {
        let clipped = clip(s);
        if quoted {
            write!(f, "{clipped:?}")?;
        } else {
            f.write_str(clipped)?;
        }
        if clipped.len() < s.len() {
            f.write_str("...")?;
        }
        Ok(())
    })
}

/// Collects problems while the walk goes on, so one rejection lists all of them.
#[derive(Default)]
struct Problems(Vec<String>, usize);

impl Problems {
    fn add(&mut self, path: &Path, what: impl fmt::Display) {
        if self.0.len() < MAX_PROBLEMS {
            self.0.push(format!("{path}: {what}"));
        } else {
            self.1 += 1;
        }
    }

    /// The list for the rejection, saying how many were left out.
    fn into_list(mut self) -> Vec<String> {
        if self.1 > 0 {
            self.0.push(format!("and {} more", self.1));
        }
        self.0
    }
}

/// Result of validation: the report, or the problems and the report id if it was readable.
pub(crate) fn report_from_value(doc: &Value) -> Result<MetricReport, (Vec<String>, Option<u64>)> {
    let mut p = Problems::default();
    let root = Path::Root;
    let Some(top) = object(doc, &root, &mut p) else {
        return Err((p.into_list(), None));
    };

    let (report_id, version) = match top.required_any(HEADER_NAMES, &root, &mut p) {
        Some((name, v)) => header(v, &Path::Key(&root, name), &mut p),
        None => (None, None),
    };
    let metrics = top.read(keys::METRICS, &root, &mut p, metrics);
    let custom_metrics = top.read(keys::CUSTOM_METRICS, &root, &mut p, custom_metrics);
    // Only an absent block is reported here; a block that is present but invalid has its own
    // problem already.
    if !top.has(keys::METRICS) && !top.has(keys::CUSTOM_METRICS) {
        p.add(&root, "needs \"metrics\" (\"met\"), \"custom_metrics\" (\"cmet\") or both");
    }

    match (report_id, version) {
        (Some(report_id), Some(version)) if p.0.is_empty() => {
            Ok(MetricReport { header: Header { report_id, version }, metrics, custom_metrics })
        }
        // The id is echoed whenever it could be read, even if the rest of the header is bad,
        // so that the device can correlate the rejection.
        _ => Err((p.into_list(), report_id)),
    }
}

/// The header's names: long, short, and the official C agent's `h` (spec §1.3 quirk).
const HEADER_NAMES: &[&str] = &[keys::HEADER.long, keys::HEADER.short, keys::HEADER_C_AGENT_ALIAS];

/// A map being read: lookups by long or short name, with duplicates detected.
struct Object<'v> {
    entries: &'v [(String, Value)],
}

fn object<'v>(v: &'v Value, path: &Path, p: &mut Problems) -> Option<Object<'v>> {
    match v {
        Value::Map(entries) => Some(Object { entries }),
        other => {
            p.add(path, format_args!("must be a map, found {}", other.kind()));
            None
        }
    }
}

impl<'v> Object<'v> {
    /// The field under any of `names` (the name as sent comes back for the path). Giving a
    /// field twice, under one name or two, is ambiguous and refused.
    fn find(&self, names: &[&str], path: &Path, p: &mut Problems) -> Option<(&'v str, &'v Value)> {
        let mut found = self.entries.iter().filter(|(k, v)| names.contains(&k.as_str()) && *v != Value::Null);
        let first = found.next()?;
        if let Some(second) = found.next() {
            p.add(
                &Path::Key(path, &first.0),
                format_args!("given twice (as {:?} and {:?})", first.0, second.0),
            );
            return None;
        }
        Some((first.0.as_str(), &first.1))
    }

    /// The field under its long or short name.
    fn field(&self, key: Key, path: &Path, p: &mut Problems) -> Option<(&'v str, &'v Value)> {
        self.find(&[key.long, key.short], path, p)
    }

    /// Like [`Object::find`], adding a problem when the field is absent. `names[0]` and
    /// `names[1]` are the long and short names shown in the message.
    fn required_any(&self, names: &[&str], path: &Path, p: &mut Problems) -> Option<(&'v str, &'v Value)> {
        let found = self.find(names, path, p);
        if found.is_none() && !self.has_any(names) {
            p.add(path, format_args!("missing {:?} ({:?})", names[0], names[1]));
        }
        found
    }

    fn required(&self, key: Key, path: &Path, p: &mut Problems) -> Option<(&'v str, &'v Value)> {
        self.required_any(&[key.long, key.short], path, p)
    }

    fn has_any(&self, names: &[&str]) -> bool {
        self.entries.iter().any(|(k, v)| names.contains(&k.as_str()) && *v != Value::Null)
    }

    fn has(&self, key: Key) -> bool {
        self.has_any(&[key.long, key.short])
    }

    /// Reads an optional field with `read`, giving it its own path.
    fn read<T>(
        &self,
        key: Key,
        path: &Path,
        p: &mut Problems,
        read: impl FnOnce(&'v Value, &Path, &mut Problems) -> Option<T>,
    ) -> Option<T> {
        let (name, v) = self.field(key, path, p)?;
        read(v, &Path::Key(path, name), p)
    }
}

/// The report id and version; each is `None` if missing or invalid (a problem is added).
fn header(v: &Value, path: &Path, p: &mut Problems) -> (Option<u64>, Option<String>) {
    let Some(obj) = object(v, path, p) else {
        return (None, None);
    };
    let report_id = obj
        .required(keys::REPORT_ID, path, p)
        .and_then(|(name, v)| unsigned(v, &Path::Key(path, name), p, 1, "a positive integer"));
    let version = obj.required(keys::VERSION, path, p).and_then(|(name, v)| {
        let path = Path::Key(path, name);
        match v {
            Value::Text(s) if is_supported_version(s) => Some(s.clone()),
            Value::Text(s) => {
                p.add(&path, format_args!("unsupported version {}, expected \"1.0\"", echo(s, true)));
                None
            }
            other => {
                p.add(&path, format_args!("must be the string \"1.0\", found {}", other.kind()));
                None
            }
        }
    });
    (report_id, version)
}

/// Major version 1 with any minor: minor versions only add fields (spec §1.2).
fn is_supported_version(s: &str) -> bool {
    s.strip_prefix("1.").is_some_and(|minor| !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit()))
}

fn metrics(v: &Value, path: &Path, p: &mut Problems) -> Option<Metrics> {
    let obj = object(v, path, p)?;
    Some(Metrics {
        listening_tcp_ports: obj.read(keys::LISTENING_TCP_PORTS, path, p, listening_ports),
        listening_udp_ports: obj.read(keys::LISTENING_UDP_PORTS, path, p, listening_ports),
        network_stats: obj.read(keys::NETWORK_STATS, path, p, network_stats),
        tcp_connections: obj.read(keys::TCP_CONNECTIONS, path, p, tcp_connections),
    })
}

fn listening_ports(v: &Value, path: &Path, p: &mut Problems) -> Option<ListeningPorts> {
    let obj = object(v, path, p)?;
    let ports = obj.read(keys::PORTS, path, p, |v, path, p| {
        list(v, path, p, |v, path, p| {
            let obj = object(v, path, p)?;
            let port =
                obj.required(keys::PORT, path, p).and_then(|(name, v)| port(v, &Path::Key(path, name), p));
            let interface = obj.read(keys::INTERFACE, path, p, text);
            Some(ListeningPort { port: port?, interface })
        })
    });
    let total = total(&obj, ports.as_ref().map(Vec::len), path, p);
    Some(ListeningPorts { ports, total })
}

fn network_stats(v: &Value, path: &Path, p: &mut Problems) -> Option<NetworkStats> {
    let obj = object(v, path, p)?;
    Some(NetworkStats {
        bytes_in: obj.read(keys::BYTES_IN, path, p, count),
        bytes_out: obj.read(keys::BYTES_OUT, path, p, count),
        packets_in: obj.read(keys::PACKETS_IN, path, p, count),
        packets_out: obj.read(keys::PACKETS_OUT, path, p, count),
    })
}

fn tcp_connections(v: &Value, path: &Path, p: &mut Problems) -> Option<TcpConnections> {
    let obj = object(v, path, p)?;
    let established_connections = obj.read(keys::ESTABLISHED_CONNECTIONS, path, p, established_connections);
    Some(TcpConnections { established_connections })
}

fn established_connections(v: &Value, path: &Path, p: &mut Problems) -> Option<EstablishedConnections> {
    let obj = object(v, path, p)?;
    let connections = obj.read(keys::CONNECTIONS, path, p, |v, path, p| {
        list(v, path, p, |v, path, p| {
            let obj = object(v, path, p)?;
            let remote_addr = obj.required(keys::REMOTE_ADDR, path, p).and_then(|(name, v)| {
                let path = Path::Key(path, name);
                match v {
                    Value::Text(s) => match parse_remote_addr(s) {
                        Ok(addr) => Some(addr),
                        Err(why) => {
                            p.add(&path, format_args!("{} {why}", echo(s, true)));
                            None
                        }
                    },
                    other => {
                        p.add(&path, format_args!("must be a string \"ip:port\", found {}", other.kind()));
                        None
                    }
                }
            });
            let local_port = obj.read(keys::LOCAL_PORT, path, p, port);
            let local_interface = obj.read(keys::LOCAL_INTERFACE, path, p, text);
            Some(Connection { remote_addr: remote_addr?, local_port, local_interface })
        })
    });
    let total = total(&obj, connections.as_ref().map(Vec::len), path, p);
    Some(EstablishedConnections { connections, total })
}

/// Reads `total`. It counts every entry while lists may be capped (the Python agent sends at
/// most 50), so it can exceed the list length but never fall short of it.
fn total(obj: &Object, listed: Option<usize>, path: &Path, p: &mut Problems) -> Option<u64> {
    obj.read(keys::TOTAL, path, p, |v, path, p| {
        let total = count(v, path, p)?;
        match listed {
            Some(listed) if total < listed as u64 => {
                p.add(path, format_args!("{total} is less than the {listed} entries listed"));
                None
            }
            _ => Some(total),
        }
    })
}

fn custom_metrics(v: &Value, path: &Path, p: &mut Problems) -> Option<BTreeMap<String, CustomMetricValue>> {
    let Value::Map(entries) = v else {
        p.add(path, format_args!("must be a map of metric name to value, found {}", v.kind()));
        return None;
    };
    let mut out = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for (name, v) in entries {
        // `null` counts as absent here too: the metric was not measured this time.
        if *v == Value::Null {
            continue;
        }
        let path = Path::Key(path, name);
        if !seen.insert(name.as_str()) {
            p.add(&path, "given twice");
            continue;
        }
        if !is_valid_metric_name(name) {
            p.add(
                &path,
                "metric name must be 1-128 characters of a-z, A-Z, 0-9, ':', '_', '-' and not start with \"aws:\"",
            );
            continue;
        }
        if let Some(value) = custom_metric_value(v, &path, p) {
            out.insert(name.clone(), value);
        }
    }
    Some(out)
}

/// A custom metric value is an array holding exactly one object with exactly one key naming
/// its type (spec §1.5); a bare object is the documented `InvalidPayload` case.
fn custom_metric_value(v: &Value, path: &Path, p: &mut Problems) -> Option<CustomMetricValue> {
    const SHAPE: &str = "must be an array of one object such as [{\"number\": 1}]";
    let inner = match v {
        Value::Array(items) if items.len() == 1 => &items[0],
        Value::Array(items) => {
            p.add(path, format_args!("{SHAPE}, found {} elements", items.len()));
            return None;
        }
        other => {
            p.add(path, format_args!("{SHAPE}, found {}", other.kind()));
            return None;
        }
    };
    let path = &Path::Index(path, 0);
    let entries = match inner {
        Value::Map(entries) if entries.len() == 1 => entries,
        _ => {
            p.add(path, "must be an object with exactly one of \"number\", \"number_list\", \"string_list\", \"ip_list\"");
            return None;
        }
    };
    let (kind, v) = &entries[0];
    let path = &Path::Key(path, kind);
    match kind.as_str() {
        k if k == keys::NUMBER.long => number(v, path, p).map(CustomMetricValue::Number),
        k if k == keys::NUMBER_LIST.long => list(v, path, p, number).map(CustomMetricValue::NumberList),
        k if k == keys::STRING_LIST.long => list(v, path, p, text).map(CustomMetricValue::StringList),
        k if k == keys::IP_LIST.long => list(v, path, p, |v, path, p| match v {
            Value::Text(s) => match s.parse::<IpAddr>() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    p.add(path, format_args!("{} is not an IPv4 or IPv6 address", echo(s, true)));
                    None
                }
            },
            other => {
                p.add(path, format_args!("must be an IP address string, found {}", other.kind()));
                None
            }
        })
        .map(CustomMetricValue::IpList),
        other => {
            p.add(path, format_args!("unknown custom metric type {}; expected \"number\", \"number_list\", \"string_list\" or \"ip_list\"", echo(other, true)));
            None
        }
    }
}

/// An array whose every element is read by `item`; `None` if any element is bad.
fn list<'v, T>(
    v: &'v Value,
    path: &Path,
    p: &mut Problems,
    item: impl Fn(&'v Value, &Path, &mut Problems) -> Option<T>,
) -> Option<Vec<T>> {
    let Value::Array(items) = v else {
        p.add(path, format_args!("must be an array, found {}", v.kind()));
        return None;
    };
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, v) in items.iter().enumerate() {
        match item(v, &Path::Index(path, i), p) {
            Some(x) => out.push(x),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// An integer, also from a float without fraction (some encoders write every number as one).
fn integer(v: &Value) -> Option<i128> {
    match v {
        Value::Int(i) => Some(*i),
        Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e18 => Some(*f as i128),
        _ => None,
    }
}

fn count(v: &Value, path: &Path, p: &mut Problems) -> Option<u64> {
    unsigned(v, path, p, 0, "a non-negative integer")
}

/// An integer from `min` to `u64::MAX`; `what` describes the range in messages.
fn unsigned(v: &Value, path: &Path, p: &mut Problems, min: u64, what: &str) -> Option<u64> {
    match integer(v) {
        Some(n) if n < i128::from(min) => {
            p.add(path, format_args!("must be {what}, got {n}"));
            None
        }
        Some(n) => match u64::try_from(n) {
            Ok(n) => Some(n),
            Err(_) => {
                p.add(path, format_args!("must be at most {}, got {n}", u64::MAX));
                None
            }
        },
        None => {
            p.add(path, format_args!("must be {what}, found {}", v.kind()));
            None
        }
    }
}

/// A port number 1–65535. The official C agent writes `local_port` as a text string in CBOR
/// (spec §1.3), so digit strings are accepted too.
fn port(v: &Value, path: &Path, p: &mut Problems) -> Option<u16> {
    let n = match v {
        Value::Text(s) if !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse::<i128>().ok()
        }
        v => integer(v),
    };
    match n {
        Some(n) if (1..=65535).contains(&n) => Some(n as u16),
        Some(n) => {
            p.add(path, format_args!("must be a port number 1-65535, got {n}"));
            None
        }
        None => {
            p.add(path, format_args!("must be a port number 1-65535, found {}", v.kind()));
            None
        }
    }
}

fn number(v: &Value, path: &Path, p: &mut Problems) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) if f.is_finite() => Some(*f),
        Value::Float(f) => {
            p.add(path, format_args!("must be a finite number, got {f}"));
            None
        }
        other => {
            p.add(path, format_args!("must be a number, found {}", other.kind()));
            None
        }
    }
}

fn text(v: &Value, path: &Path, p: &mut Problems) -> Option<String> {
    match v {
        Value::Text(s) => Some(s.clone()),
        other => {
            p.add(path, format_args!("must be a string, found {}", other.kind()));
            None
        }
    }
}

/// Parses `ip:port`: IPv4, bracketed IPv6, or unbracketed IPv6 where the last `:` separates
/// the port (the official Python agent writes `2001:db8::1:443`).
pub(crate) fn parse_remote_addr(s: &str) -> Result<SocketAddr, &'static str> {
    const NOT_ADDR: &str = "is not an address of the form ip:port";
    let (ip, port) = match s.strip_prefix('[') {
        Some(rest) => {
            let (ip, port) = rest.split_once("]:").ok_or(NOT_ADDR)?;
            (ip.parse::<Ipv6Addr>().map(IpAddr::V6).map_err(|_| NOT_ADDR)?, port)
        }
        None => {
            let (ip, port) = s.rsplit_once(':').ok_or(NOT_ADDR)?;
            (ip.parse::<IpAddr>().map_err(|_| NOT_ADDR)?, port)
        }
    };
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NOT_ADDR);
    }
    match port.parse::<u32>() {
        Ok(port @ 1..=65535) => Ok(SocketAddr::new(ip, port as u16)),
        _ => Err("has a port outside 1-65535"),
    }
}
