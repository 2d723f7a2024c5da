//! Validation: from a decoded document to a [`MetricReport`], or the list of problems.
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

use crate::document::{Item, Node};
use crate::keys::{self, Key};
use crate::model::*;
use crate::topic::is_valid_metric_name;

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
pub(crate) fn report_from_value(doc: Node) -> Result<MetricReport, (Vec<String>, Option<u64>)> {
    let mut p = Problems::default();
    let root = Path::Root;
    let Some([header, metrics, custom_metrics]) =
        fields(doc, [&keys::HEADER, &keys::METRICS, &keys::CUSTOM_METRICS], &root, &mut p)
    else {
        return Err((p.into_list(), None));
    };
    // Only an absent block is reported below; a block that is present but invalid has its own
    // problem already.
    let has_a_block = metrics.is_present() || custom_metrics.is_present();

    let (report_id, version) = match header.required(&root, &mut p) {
        Some((name, v)) => self::header(v, &Path::Key(&root, name), &mut p),
        None => (None, None),
    };
    let metrics = metrics.read(&root, &mut p, self::metrics);
    let custom_metrics = custom_metrics.read(&root, &mut p, self::custom_metrics);
    if !has_a_block {
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

/// The fields `keys` of the map `v`, found in one pass over its entries: a pass per field made
/// comparing keys the largest cost of validation.
fn fields<'v, const N: usize>(
    v: Node<'v>,
    keys: [&'static Key; N],
    path: &Path,
    p: &mut Problems,
) -> Option<[Field<'v>; N]> {
    if !matches!(v.item(), Item::Map { .. }) {
        p.add(path, format_args!("must be a map, found {}", v.item().kind()));
        return None;
    }
    let mut fields = keys.map(|key| Field { key, found: Found::Absent });
    for (name, value) in v.entries() {
        if value.is_null() {
            continue;
        }
        let Some(field) = fields.iter_mut().find(|f| f.key.matches(name)) else {
            continue;
        };
        field.found = match field.found {
            Found::Absent => Found::Once(name, value),
            Found::Once(first, _) => Found::Twice(first, name),
            twice @ Found::Twice(..) => twice,
        };
    }
    Some(fields)
}

/// One field of a map, under any of its names; `null` counts as absent. A field given twice is
/// reported when it is read, so that problems come in the order the report is read.
#[derive(Clone, Copy)]
struct Field<'v> {
    key: &'static Key,
    found: Found<'v>,
}

#[derive(Clone, Copy)]
enum Found<'v> {
    Absent,
    /// The name as sent, for the path, and the value.
    Once(&'v str, Node<'v>),
    /// The first two names it was sent under.
    Twice(&'v str, &'v str),
}

impl<'v> Field<'v> {
    fn is_present(&self) -> bool {
        !matches!(self.found, Found::Absent)
    }

    /// The name as sent and the value, if given once. `path` is the map's.
    fn get(self, path: &Path, p: &mut Problems) -> Option<(&'v str, Node<'v>)> {
        match self.found {
            Found::Absent => None,
            Found::Once(name, v) => Some((name, v)),
            Found::Twice(first, second) => {
                p.add(&Path::Key(path, first), format_args!("given twice (as {first:?} and {second:?})"));
                None
            }
        }
    }

    /// Like [`Field::get`], adding a problem when the field is absent.
    fn required(self, path: &Path, p: &mut Problems) -> Option<(&'v str, Node<'v>)> {
        if !self.is_present() {
            p.add(path, format_args!("missing {:?} ({:?})", self.key.long, self.key.short));
        }
        self.get(path, p)
    }

    /// Reads an optional field with `read`, giving it its own path.
    fn read<T>(
        self,
        path: &Path,
        p: &mut Problems,
        read: impl FnOnce(Node<'v>, &Path, &mut Problems) -> Option<T>,
    ) -> Option<T> {
        let (name, v) = self.get(path, p)?;
        read(v, &Path::Key(path, name), p)
    }
}

/// The report id and version; each is `None` if missing or invalid (a problem is added).
fn header(v: Node, path: &Path, p: &mut Problems) -> (Option<u64>, Option<String>) {
    let Some([report_id, version]) = fields(v, [&keys::REPORT_ID, &keys::VERSION], path, p) else {
        return (None, None);
    };
    let report_id = report_id
        .required(path, p)
        .and_then(|(name, v)| unsigned(v, &Path::Key(path, name), p, 1, "a positive integer"));
    let version = version.required(path, p).and_then(|(name, v)| {
        let path = Path::Key(path, name);
        match v.item() {
            Item::Text(s) if is_supported_version(s) => Some(String::from(&**s)),
            Item::Text(s) => {
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

fn metrics(v: Node, path: &Path, p: &mut Problems) -> Option<Metrics> {
    let [tcp_ports, udp_ports, network_stats, tcp_connections] = fields(
        v,
        [
            &keys::LISTENING_TCP_PORTS,
            &keys::LISTENING_UDP_PORTS,
            &keys::NETWORK_STATS,
            &keys::TCP_CONNECTIONS,
        ],
        path,
        p,
    )?;
    Some(Metrics {
        listening_tcp_ports: tcp_ports.read(path, p, listening_ports),
        listening_udp_ports: udp_ports.read(path, p, listening_ports),
        network_stats: network_stats.read(path, p, self::network_stats),
        tcp_connections: tcp_connections.read(path, p, self::tcp_connections),
    })
}

fn listening_ports(v: Node, path: &Path, p: &mut Problems) -> Option<ListeningPorts> {
    let [ports, total] = fields(v, [&keys::PORTS, &keys::TOTAL], path, p)?;
    let ports = ports.read(path, p, |v, path, p| {
        list(v, path, p, |v, path, p| {
            let [port, interface] = fields(v, [&keys::PORT, &keys::INTERFACE], path, p)?;
            let port = port.required(path, p).and_then(|(name, v)| self::port(v, &Path::Key(path, name), p));
            let interface = interface.read(path, p, text);
            Some(ListeningPort { port: port?, interface })
        })
    });
    let total = self::total(total, ports.as_ref().map(Vec::len), path, p);
    Some(ListeningPorts { ports, total })
}

fn network_stats(v: Node, path: &Path, p: &mut Problems) -> Option<NetworkStats> {
    let [bytes_in, bytes_out, packets_in, packets_out] =
        fields(v, [&keys::BYTES_IN, &keys::BYTES_OUT, &keys::PACKETS_IN, &keys::PACKETS_OUT], path, p)?;
    Some(NetworkStats {
        bytes_in: bytes_in.read(path, p, count),
        bytes_out: bytes_out.read(path, p, count),
        packets_in: packets_in.read(path, p, count),
        packets_out: packets_out.read(path, p, count),
    })
}

fn tcp_connections(v: Node, path: &Path, p: &mut Problems) -> Option<TcpConnections> {
    let [established] = fields(v, [&keys::ESTABLISHED_CONNECTIONS], path, p)?;
    Some(TcpConnections { established_connections: established.read(path, p, established_connections) })
}

fn established_connections(v: Node, path: &Path, p: &mut Problems) -> Option<EstablishedConnections> {
    let [connections, total] = fields(v, [&keys::CONNECTIONS, &keys::TOTAL], path, p)?;
    let connections = connections.read(path, p, |v, path, p| {
        list(v, path, p, |v, path, p| {
            let [remote_addr, local_port, local_interface] =
                fields(v, [&keys::REMOTE_ADDR, &keys::LOCAL_PORT, &keys::LOCAL_INTERFACE], path, p)?;
            let remote_addr = remote_addr.required(path, p).and_then(|(name, v)| {
                let path = Path::Key(path, name);
                match v.item() {
                    Item::Text(s) => match parse_remote_addr(s) {
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
            let local_port = local_port.read(path, p, port);
            let local_interface = local_interface.read(path, p, text);
            Some(Connection { remote_addr: remote_addr?, local_port, local_interface })
        })
    });
    let total = self::total(total, connections.as_ref().map(Vec::len), path, p);
    Some(EstablishedConnections { connections, total })
}

/// Reads `total`. It counts every entry while lists may be capped (the Python agent sends at
/// most 50), so it can exceed the list length but never fall short of it.
fn total(total: Field, listed: Option<usize>, path: &Path, p: &mut Problems) -> Option<u64> {
    total.read(path, p, |v, path, p| {
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

fn custom_metrics(v: Node, path: &Path, p: &mut Problems) -> Option<BTreeMap<String, CustomMetricValue>> {
    if !matches!(v.item(), Item::Map { .. }) {
        p.add(path, format_args!("must be a map of metric name to value, found {}", v.item().kind()));
        return None;
    }
    let mut out = BTreeMap::new();
    // Names seen whose value was refused; accepted ones are in `out`. Together they detect a
    // name given twice, without a second set on the path of a valid report.
    let mut refused = BTreeSet::new();
    for (name, v) in v.entries() {
        // `null` counts as absent here too: the metric was not measured this time.
        if v.is_null() {
            continue;
        }
        let path = Path::Key(path, name);
        if out.contains_key(name) || refused.contains(name) {
            p.add(&path, "given twice");
            continue;
        }
        if !is_valid_metric_name(name) {
            p.add(
                &path,
                "metric name must be 1-128 characters of a-z, A-Z, 0-9, ':', '_', '-' and not start with \"aws:\"",
            );
            refused.insert(name);
            continue;
        }
        match custom_metric_value(v, &path, p) {
            Some(value) => {
                out.insert(name.to_owned(), value);
            }
            None => {
                refused.insert(name);
            }
        }
    }
    Some(out)
}

/// A custom metric value is an array holding exactly one object with exactly one key naming
/// its type (spec §1.5); a bare object is the documented `InvalidPayload` case.
fn custom_metric_value(v: Node, path: &Path, p: &mut Problems) -> Option<CustomMetricValue> {
    const SHAPE: &str = "must be an array of one object such as [{\"number\": 1}]";
    let inner = match (v.item(), v.elements().next()) {
        (Item::Array { len: 1, .. }, Some(inner)) => inner,
        (Item::Array { len, .. }, _) => {
            p.add(path, format_args!("{SHAPE}, found {len} elements"));
            return None;
        }
        (other, _) => {
            p.add(path, format_args!("{SHAPE}, found {}", other.kind()));
            return None;
        }
    };
    let path = &Path::Index(path, 0);
    let (kind, v) = match (inner.item(), inner.entries().next()) {
        (Item::Map { len: 1, .. }, Some(entry)) => entry,
        _ => {
            p.add(path, "must be an object with exactly one of \"number\", \"number_list\", \"string_list\", \"ip_list\"");
            return None;
        }
    };
    let path = &Path::Key(path, kind);
    match kind {
        k if k == keys::NUMBER.long => number(v, path, p).map(CustomMetricValue::Number),
        k if k == keys::NUMBER_LIST.long => list(v, path, p, number).map(CustomMetricValue::NumberList),
        k if k == keys::STRING_LIST.long => list(v, path, p, text).map(CustomMetricValue::StringList),
        k if k == keys::IP_LIST.long => list(v, path, p, |v, path, p| match v.item() {
            Item::Text(s) => match s.parse::<IpAddr>() {
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
    v: Node<'v>,
    path: &Path,
    p: &mut Problems,
    item: impl Fn(Node<'v>, &Path, &mut Problems) -> Option<T>,
) -> Option<Vec<T>> {
    let Item::Array { len, .. } = v.item() else {
        p.add(path, format_args!("must be an array, found {}", v.item().kind()));
        return None;
    };
    let mut out = Vec::with_capacity(*len);
    let mut ok = true;
    for (i, v) in v.elements().enumerate() {
        match item(v, &Path::Index(path, i), p) {
            Some(x) => out.push(x),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// An integer, also from a float without fraction (some encoders write every number as one).
fn integer(v: Node) -> Option<i128> {
    match v.item() {
        Item::Int(i) => Some(*i),
        Item::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e18 => Some(*f as i128),
        _ => None,
    }
}

fn count(v: Node, path: &Path, p: &mut Problems) -> Option<u64> {
    unsigned(v, path, p, 0, "a non-negative integer")
}

/// An integer from `min` to `u64::MAX`; `what` describes the range in messages.
fn unsigned(v: Node, path: &Path, p: &mut Problems, min: u64, what: &str) -> Option<u64> {
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
            p.add(path, format_args!("must be {what}, found {}", v.item().kind()));
            None
        }
    }
}

/// A port number 1–65535. The official C agent writes `local_port` as a text string in CBOR
/// (spec §1.3), so digit strings are accepted too.
fn port(v: Node, path: &Path, p: &mut Problems) -> Option<u16> {
    let n = match v.item() {
        Item::Text(s) if !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse::<i128>().ok()
        }
        _ => integer(v),
    };
    match n {
        Some(n) if (1..=65535).contains(&n) => Some(n as u16),
        Some(n) => {
            p.add(path, format_args!("must be a port number 1-65535, got {n}"));
            None
        }
        None => {
            p.add(path, format_args!("must be a port number 1-65535, found {}", v.item().kind()));
            None
        }
    }
}

fn number(v: Node, path: &Path, p: &mut Problems) -> Option<f64> {
    match v.item() {
        Item::Int(i) => Some(*i as f64),
        Item::Float(f) if f.is_finite() => Some(*f),
        Item::Float(f) => {
            p.add(path, format_args!("must be a finite number, got {f}"));
            None
        }
        other => {
            p.add(path, format_args!("must be a number, found {}", other.kind()));
            None
        }
    }
}

fn text(v: Node, path: &Path, p: &mut Problems) -> Option<String> {
    match v.item() {
        Item::Text(s) => Some(String::from(&**s)),
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
