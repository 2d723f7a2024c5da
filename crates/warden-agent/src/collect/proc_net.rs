//! Reading the kernel's network tables from a directory laid out like `/proc/net` into a
//! [`Sample`]. The socket tables print addresses as native-endian words, so the byte order of the
//! machine that wrote them is an argument: the running system's for `/proc`, little-endian for
//! the checked-in fixtures.
//!
//! Parsing is procfs-core's, fed one line at a time. That costs a little per line, but lets one
//! malformed socket entry be skipped instead of losing the whole table: the kernel appends
//! fields and TCP states over the years, and a report with one socket missing beats no report.
//! Traffic counters are stricter (see [`read_dev`]).
//!
//! Files are read through `BufReader`'s 8 KiB buffer. A bigger buffer would not save system
//! calls: the kernel's `seq_file` answers at most one page per `read()`, so a small table costs
//! one read with data and one empty read at the end however it is read. On the running system,
//! TCP sockets come from `sock_diag` instead whenever it works, since each of those reads of
//! `tcp` and `tcp6` walks the kernel's whole TCP hash table.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use procfs::net::{InterfaceDeviceStatus, TcpNetEntries, UdpNetEntries};
use procfs::{ExplicitSystemInfo, FromBufRead, FromBufReadSI};
use tracing::{debug, warn};

use super::{CollectError, InterfaceMap, LocalSocket, Sample, canonical, traffic::Counters};

/// Reads `dev`, `udp` and `udp6` from `dir`: a sample without TCP sockets.
pub(crate) fn read_dev_and_udp(
    dir: &Path,
    interfaces: &InterfaceMap,
    little_endian: bool,
) -> Result<Sample, CollectError> {
    let mut sample = Sample { interfaces: read_dev(&dir.join("dev"))?, ..Sample::default() };
    for table in ["udp", "udp6"] {
        for entries in read_table::<UdpNetEntries>(&dir.join(table), &system(little_endian))? {
            for entry in entries.0 {
                // UDP has no listen state: a socket waits for anyone's datagrams exactly when it
                // is not connected to one peer. The kernel then shows the remote as `0.0.0.0:0`.
                let remote = entry.remote_address;
                if !(remote.ip().is_unspecified() && remote.port() == 0) {
                    continue;
                }
                let local = canonical(entry.local_address);
                sample.udp_listeners.push(LocalSocket {
                    addr: local,
                    interface: interfaces.interface_of(local.ip()).map(str::to_owned),
                });
            }
        }
    }
    Ok(sample)
}

/// Adds the listening and established sockets of `tcp` and `tcp6` in `dir` to `sample`.
pub(crate) fn read_tcp(
    dir: &Path,
    interfaces: &InterfaceMap,
    little_endian: bool,
    sample: &mut Sample,
) -> Result<(), CollectError> {
    for table in ["tcp", "tcp6"] {
        for entries in read_table::<TcpNetEntries>(&dir.join(table), &system(little_endian))? {
            for entry in entries.0 {
                sample.add_tcp(entry.state, entry.local_address, entry.remote_address, interfaces);
            }
        }
    }
    Ok(())
}

/// What the net-table parsers need to know of the system: only the byte order; the other
/// fields are never read.
fn system(little_endian: bool) -> ExplicitSystemInfo {
    ExplicitSystemInfo {
        boot_time_secs: 0,
        ticks_per_second: 0,
        page_size: 0,
        is_little_endian: little_endian,
    }
}

/// Per-interface counters from `/proc/net/dev`.
///
/// Unlike a socket entry, an interface line that does not parse fails the whole read: leaving
/// the interface out would make it look new in the next sample, whose delta would then count
/// its whole lifetime counter as one period's traffic. The format has not changed in decades, so
/// this is a real fault worth an error.
fn read_dev(path: &Path) -> Result<BTreeMap<String, Counters>, CollectError> {
    let file = File::open(path).map_err(|source| CollectError::Read { path: path.to_owned(), source })?;
    let mut counters = BTreeMap::new();
    // Two header lines: the receive/transmit banner and the column names.
    for (index, line) in BufReader::new(file).split(b'\n').enumerate().skip(2) {
        let line = line.map_err(|source| CollectError::Read { path: path.to_owned(), source })?;
        if is_blank(&line) {
            continue;
        }
        let parsed = InterfaceDeviceStatus::from_buf_read(table_of(b"\n\n", &line)).map_err(|e| {
            CollectError::Malformed { path: path.to_owned(), line: index + 1, reason: e.to_string() }
        })?;
        for (name, dev) in parsed.0 {
            let c = Counters {
                bytes_in: dev.recv_bytes,
                bytes_out: dev.sent_bytes,
                packets_in: dev.recv_packets,
                packets_out: dev.sent_packets,
            };
            counters.insert(name, c);
        }
    }
    Ok(counters)
}

/// The entries of one socket table, each line parsed on its own (hence a `Vec` of one-entry
/// tables).
///
/// A missing table means no sockets of that family: a kernel without IPv6 has no `tcp6`. Lines
/// that do not parse are skipped, with one warning per table naming the first bad line.
fn read_table<T: FromBufReadSI>(path: &Path, system: &ExplicitSystemInfo) -> Result<Vec<T>, CollectError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            debug!(file = %path.display(), "no such socket table, so no sockets of its family");
            return Ok(Vec::new());
        }
        Err(source) => return Err(CollectError::Read { path: path.to_owned(), source }),
    };
    let mut parsed = Vec::new();
    let mut skipped = 0usize;
    let mut first_bad = None;
    // One header line with the column names.
    for (index, line) in BufReader::new(file).split(b'\n').enumerate().skip(1) {
        let line = line.map_err(|source| CollectError::Read { path: path.to_owned(), source })?;
        if is_blank(&line) {
            continue;
        }
        match T::from_buf_read(table_of(b"\n", &line), system) {
            Ok(entries) => parsed.push(entries),
            Err(e) => {
                skipped += 1;
                first_bad.get_or_insert((index + 1, e.to_string()));
            }
        }
    }
    if let Some((line, error)) = first_bad {
        warn!(file = %path.display(), skipped, first_line = line, %error, "skipped socket entries that do not parse");
    }
    Ok(parsed)
}

/// One line as a table of its own: procfs-core parses whole tables and skips their header
/// lines, so empty header lines go in front of it.
fn table_of<'a>(empty_headers: &'static [u8], line: &'a [u8]) -> io::Chain<&'a [u8], &'a [u8]> {
    empty_headers.chain(line)
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}
