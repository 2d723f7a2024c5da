//! One simulated device, without I/O: its reports (benign traffic, misbehaviours and the MQTT
//! traffic the fleet really sent, as a `MetricReport`) and its telemetry readings.
//!
//! Time is counted in report numbers: report `n` is due at `phase + n` report periods after the
//! fleet's start, and covers the simulated time since the device's previous report. A device
//! that misses reports (offline, or a stalled process) covers the whole gap with its next one,
//! as an agent's traffic baseline does. The fleet's shell turns the clock into report numbers.

use std::net::SocketAddr;
use std::time::Duration;

use warden_wire::{
    Connection, EstablishedConnections, ListeningPort, ListeningPorts, MetricReport, Metrics, NetworkStats,
    TcpConnections,
};

use crate::class::ClassMix;
use crate::misbehaviour::{self, Active, Misbehaviour, large_payload_padding};
use crate::rng::{Rng, Stream};
use crate::traffic::{self, DeviceTraits, SEGMENT_HEADERS, SEGMENT_PAYLOAD, Span, Traffic};

/// How simulated time relates to the clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    /// Time between two reports of a device.
    pub period: Duration,
    /// Simulated seconds per real second: each report covers `period × speedup` of simulated
    /// traffic, and the daily cycle turns that much faster. 1 is real time; 60 makes every
    /// 5-second report a 5-minute one, as when the server's `detect.period` is 5 s.
    pub speedup: f64,
    /// The fleet's start in epoch milliseconds; simulated time starts there too.
    pub start_epoch_ms: i64,
}

impl Timing {
    pub fn period_s(&self) -> f64 {
        self.period.as_secs_f64()
    }

    /// Simulated epoch seconds at report `n` of a device with report phase `phase`.
    pub fn sim_epoch_s(&self, phase: f64, n: u64) -> f64 {
        self.start_epoch_ms as f64 / 1000.0 + (phase + n as f64) * self.period_s() * self.speedup
    }

    /// Time from the start to report `n` of a device with report phase `phase`.
    pub fn due(&self, phase: f64, n: u64) -> Duration {
        self.period.mul_f64(phase + n as f64)
    }

    /// The number of the first report due at or after `elapsed` since the start.
    pub fn next_report(&self, phase: f64, elapsed: Duration) -> u64 {
        let periods = elapsed.as_secs_f64() / self.period_s() - phase;
        if periods <= 0.0 { 0 } else { periods.ceil() as u64 }
    }
}

/// MQTT traffic the fleet really sent and received for a device since its previous report,
/// which its report counts like any other traffic on the device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WireTraffic {
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub packets_in: u64,
    pub packets_out: u64,
}

/// Bytes of a TLS 1.3 handshake with client certificate (ECDSA P-256), MQTT CONNECT/CONNACK
/// and the reply SUBSCRIBE, as the agent benchmark measured them (bench/RESULTS.md): 976 bytes
/// up and 2,644 down, in about 8 segments each way.
const CONNECT_OUT: u64 = 976;
const CONNECT_IN: u64 = 2_644;
const CONNECT_SEGMENTS: u64 = 8;

/// Per-publish bytes on top of topic and payload: MQTT 5 fixed header, topic length, packet id
/// and property length (about 8), and TLS 1.3's 22-byte record overhead.
const PUBLISH_OVERHEAD: u64 = 30;

impl WireTraffic {
    /// One connection set-up: handshake, CONNECT, SUBSCRIBE.
    pub fn connect(&mut self) {
        self.bytes_out += CONNECT_OUT + CONNECT_SEGMENTS * SEGMENT_HEADERS;
        self.bytes_in += CONNECT_IN + CONNECT_SEGMENTS * SEGMENT_HEADERS;
        self.packets_out += CONNECT_SEGMENTS;
        self.packets_in += CONNECT_SEGMENTS;
    }

    /// One PUBLISH sent.
    pub fn publish(&mut self, topic: &str, payload: usize) {
        let bytes = topic.len() as u64 + payload as u64 + PUBLISH_OVERHEAD;
        let segments = bytes.div_ceil(SEGMENT_PAYLOAD);
        self.bytes_out += bytes + segments * SEGMENT_HEADERS;
        self.packets_out += segments;
    }

    /// One PUBLISH received (a reply).
    pub fn receive(&mut self, topic: &str, payload: usize) {
        let bytes = topic.len() as u64 + payload as u64 + PUBLISH_OVERHEAD;
        let segments = bytes.div_ceil(SEGMENT_PAYLOAD);
        self.bytes_in += bytes + segments * SEGMENT_HEADERS;
        self.packets_in += segments;
    }

    pub fn add(&mut self, other: WireTraffic) {
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.packets_in += other.packets_in;
        self.packets_out += other.packets_out;
    }
}

/// The MQTT connection a report lists among the device's established connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MqttLink {
    pub remote: SocketAddr,
    /// How many times the device has connected, which picks its local port.
    pub connects: u64,
}

/// One simulated device's state.
#[derive(Debug, Clone)]
pub struct DeviceModel {
    seed: u64,
    pub traits: DeviceTraits,
    timing: Timing,
    /// The last report made, if any.
    last_report: Option<u64>,
    last_report_id: u64,
    active: Vec<Active>,
}

impl DeviceModel {
    pub fn new(seed: u64, index: u64, mix: &ClassMix, timing: Timing) -> DeviceModel {
        DeviceModel::with_traits(seed, DeviceTraits::draw(seed, index, mix), timing)
    }

    pub fn with_traits(seed: u64, traits: DeviceTraits, timing: Timing) -> DeviceModel {
        DeviceModel { seed, traits, timing, last_report: None, last_report_id: 0, active: Vec::new() }
    }

    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// Starts `kind` from report `from` on (again, if it was already on: a restart moves a
    /// backdoor's port and an exfiltration's ramp back to the start).
    pub fn misbehave(&mut self, kind: Misbehaviour, from: u64) {
        self.active.retain(|a| a.kind != kind);
        self.active.push(Active { kind, since: from });
        self.active.sort_by_key(|a| a.kind);
    }

    /// Stops `kind`, or every misbehaviour; whether anything stopped.
    pub fn calm(&mut self, kind: Option<Misbehaviour>) -> bool {
        let before = self.active.len();
        self.active.retain(|a| kind.is_some_and(|k| k != a.kind));
        self.active.len() != before
    }

    pub fn active(&self) -> impl Iterator<Item = Misbehaviour> + '_ {
        self.active.iter().map(|a| a.kind)
    }

    pub fn is_active(&self, kind: Misbehaviour) -> bool {
        self.active.iter().any(|a| a.kind == kind)
    }

    /// The traffic of report `n`: benign, then each active misbehaviour, then the real MQTT
    /// traffic, and the MQTT connection if there is one.
    pub fn traffic(&self, n: u64, wire: WireTraffic, mqtt: Option<MqttLink>) -> Traffic {
        let covered = match self.last_report {
            Some(last) if last < n => n - last,
            _ => 1,
        };
        let span = Span {
            end_s: self.timing.sim_epoch_s(self.traits.report_phase, n),
            seconds: covered as f64 * self.timing.period_s() * self.timing.speedup,
        };
        let mut t = traffic::benign(self.seed, &self.traits, n, span);
        for active in self.active.iter().filter(|a| a.since <= n) {
            let elapsed = (n - active.since + 1) as f64 * self.timing.period_s() * self.timing.speedup;
            misbehaviour::apply(self.seed, &self.traits, *active, n, span, elapsed, &mut t);
        }
        t.bytes_in += wire.bytes_in;
        t.bytes_out += wire.bytes_out;
        t.packets_in += wire.packets_in;
        t.packets_out += wire.packets_out;
        if let Some(link) = mqtt {
            let mut r =
                Rng::keyed(self.seed, Stream::Traits, self.traits.index, link.connects.wrapping_add(1));
            t.connect(link.remote, traffic::ephemeral_port(&mut r), self.traits.interface);
        }
        t
    }

    /// Makes report `n` at `epoch_ms` (the wall clock, for its id: epoch milliseconds, or one
    /// more than the previous id, so that ids strictly increase even if the clock steps back).
    pub fn report(
        &mut self,
        n: u64,
        epoch_ms: i64,
        wire: WireTraffic,
        mqtt: Option<MqttLink>,
    ) -> MetricReport {
        let traffic = self.traffic(n, wire, mqtt);
        self.last_report = Some(n);
        let id = u64::try_from(epoch_ms).unwrap_or(0).max(self.last_report_id + 1);
        self.last_report_id = id;
        let mut report = MetricReport::new(id);
        report.metrics = Some(metrics(&traffic));
        report
    }

    /// Telemetry reading `k` at simulated epoch second `sim_epoch_s`: `{"temperature":..}`,
    /// padded while `large-payload` is on.
    pub fn telemetry(&self, k: u64, sim_epoch_s: f64, telemetry_every: Duration) -> Vec<u8> {
        let (mean, swing) = self.traits.profile.temperature;
        let hour = self.traits.local_hour(sim_epoch_s);
        // Warmest mid-afternoon.
        let daily = ((hour - 15.0) / 24.0 * std::f64::consts::TAU).cos();
        let mut r = Rng::keyed(self.seed, Stream::Telemetry, self.traits.index, k);
        let value = mean + self.traits.temperature_offset + swing * daily + r.range_f64(-0.3, 0.3);
        let value = (value * 10.0).round() / 10.0;
        if !self.is_active(Misbehaviour::LargePayload) {
            return format!("{{\"temperature\":{value}}}").into_bytes();
        }
        let padding = large_payload_padding(self.timing.period_s(), telemetry_every.as_secs_f64());
        let letters: String = (0..padding).map(|_| char::from(b'a' + r.range_u64(0, 25) as u8)).collect();
        format!("{{\"temperature\":{value},\"payload\":\"{letters}\"}}").into_bytes()
    }

    /// The modelled application bytes of `large-payload` when the device has no telemetry
    /// connection: what its application would have sent in one report period.
    pub fn offline_large_payload(&self) -> WireTraffic {
        let mut w = WireTraffic::default();
        if self.is_active(Misbehaviour::LargePayload) {
            let padding = misbehaviour::LARGE_PAYLOAD_PER_PERIOD as usize;
            w.publish("things/telemetry", padding);
        }
        w
    }
}

/// A report's `metrics` block for `t`.
pub fn metrics(t: &Traffic) -> Metrics {
    let ports = |list: &[traffic::Listen]| ListeningPorts {
        ports: Some(
            list.iter()
                .map(|l| ListeningPort { port: l.port, interface: Some(l.interface.to_owned()) })
                .collect(),
        ),
        total: Some(list.len() as u64),
    };
    Metrics {
        listening_tcp_ports: Some(ports(&t.listening_tcp)),
        listening_udp_ports: Some(ports(&t.listening_udp)),
        network_stats: Some(NetworkStats {
            bytes_in: Some(t.bytes_in),
            bytes_out: Some(t.bytes_out),
            packets_in: Some(t.packets_in),
            packets_out: Some(t.packets_out),
        }),
        tcp_connections: Some(TcpConnections {
            established_connections: Some(EstablishedConnections {
                connections: Some(
                    t.connections
                        .iter()
                        .map(|c| Connection {
                            remote_addr: c.remote,
                            local_port: Some(c.local_port),
                            local_interface: Some(c.interface.to_owned()),
                        })
                        .collect(),
                ),
                total: Some(t.connections.len() as u64),
            }),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::class::DeviceClass;
    use warden_wire::{Format, Limits, Names, decode_report, encode_report};

    const SEED: u64 = 5;
    const START_MS: i64 = 1_795_737_600_000;

    fn timing() -> Timing {
        Timing { period: Duration::from_secs(5), speedup: 60.0, start_epoch_ms: START_MS }
    }

    fn model(class: DeviceClass) -> DeviceModel {
        DeviceModel::new(SEED, 7, &ClassMix::only(class), timing())
    }

    fn broker() -> MqttLink {
        MqttLink { remote: "127.0.0.1:8883".parse().unwrap(), connects: 1 }
    }

    fn bytes_out(r: &MetricReport) -> u64 {
        r.metrics.as_ref().unwrap().network_stats.unwrap().bytes_out.unwrap()
    }

    #[test]
    fn report_numbers_follow_the_clock_and_the_phase() {
        let t = timing();
        assert_eq!(t.next_report(0.5, Duration::ZERO), 0);
        assert_eq!(t.next_report(0.5, Duration::from_millis(2_500)), 0);
        assert_eq!(t.next_report(0.5, Duration::from_millis(2_501)), 1);
        assert_eq!(t.next_report(0.5, Duration::from_millis(7_500)), 1);
        assert_eq!(t.due(0.5, 1), Duration::from_millis(7_500));
        // 5 s of real time is 5 simulated minutes at 60x.
        assert_eq!(t.sim_epoch_s(0.0, 1) - t.sim_epoch_s(0.0, 0), 300.0);
    }

    #[test]
    fn the_same_seed_gives_the_same_reports() {
        let run = || {
            let mut m = model(DeviceClass::Kiosk);
            let mut out = Vec::new();
            for n in 0..30 {
                if n == 10 {
                    m.misbehave(Misbehaviour::Exfil, 11);
                }
                if n == 20 {
                    m.calm(None);
                }
                let r = m.report(n, START_MS + n as i64 * 5_000, WireTraffic::default(), Some(broker()));
                out.push(encode_report(&r, Format::Cbor, Names::Short));
            }
            out
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn a_misbehaviour_leaves_the_benign_part_of_other_reports_alone() {
        let mut calm = model(DeviceClass::Meter);
        let mut bad = model(DeviceClass::Meter);
        bad.misbehave(Misbehaviour::Scan, 3);
        bad.calm(Some(Misbehaviour::Scan));
        bad.misbehave(Misbehaviour::Scan, 3);
        for n in 0..8 {
            let a = calm.report(n, START_MS, WireTraffic::default(), None);
            let b = bad.report(n, START_MS, WireTraffic::default(), None);
            if n < 3 {
                assert_eq!(a.metrics, b.metrics, "report {n}");
            } else {
                assert!(bytes_out(&b) > bytes_out(&a), "report {n}");
            }
        }
    }

    #[test]
    fn report_ids_strictly_increase_even_when_the_clock_steps_back() {
        let mut m = model(DeviceClass::Camera);
        let ids: Vec<u64> = [1_000, 2_000, 1_500, 1_500, 9_000]
            .into_iter()
            .enumerate()
            .map(|(n, ms)| m.report(n as u64, ms, WireTraffic::default(), None).header.report_id)
            .collect();
        assert_eq!(ids, [1_000, 2_000, 2_001, 2_002, 9_000]);
    }

    #[test]
    fn a_missed_report_is_covered_by_the_next() {
        let mut gap = model(DeviceClass::Gateway);
        let mut steady = model(DeviceClass::Gateway);
        gap.report(0, START_MS, WireTraffic::default(), None);
        steady.report(0, START_MS, WireTraffic::default(), None);
        let after_gap: u64 = bytes_out(&gap.report(10, START_MS, WireTraffic::default(), None));
        let one: u64 = bytes_out(&steady.report(1, START_MS, WireTraffic::default(), None));
        assert!(after_gap > 5 * one, "{after_gap} vs {one}");
    }

    #[test]
    fn real_mqtt_traffic_is_counted_and_the_link_listed() {
        let mut m = model(DeviceClass::Meter);
        let quiet = m.clone().report(4, START_MS, WireTraffic::default(), None);
        let mut wire = WireTraffic::default();
        wire.connect();
        wire.publish("things/sim-00007/telemetry", 65_536);
        let busy = m.report(4, START_MS, wire, Some(broker()));
        assert_eq!(bytes_out(&busy) - bytes_out(&quiet), wire.bytes_out);
        assert!(wire.bytes_out > 65_536 + 976, "{wire:?}");
        let conns = busy.metrics.unwrap().tcp_connections.unwrap().established_connections.unwrap();
        assert!(conns.connections.unwrap().iter().any(|c| c.remote_addr == broker().remote));
    }

    #[test]
    fn reports_are_valid_in_every_encoding_and_keep_their_totals() {
        let mut m = model(DeviceClass::Gateway);
        for kind in Misbehaviour::ALL {
            m.misbehave(kind, 0);
        }
        let report = m.report(3, START_MS, WireTraffic::default(), Some(broker()));
        for format in [Format::Json, Format::Cbor] {
            for names in [Names::Long, Names::Short] {
                let bytes = encode_report(&report, format, names);
                assert_eq!(decode_report(&bytes, format, &Limits::default()), Ok(report.clone()));
            }
        }
        let metrics = report.metrics.unwrap();
        let tcp = metrics.listening_tcp_ports.unwrap();
        assert_eq!(tcp.total, Some(tcp.ports.unwrap().len() as u64));
    }

    #[test]
    fn telemetry_is_a_plausible_temperature_and_large_while_misbehaving() {
        let mut m = model(DeviceClass::Camera);
        let read = |m: &DeviceModel, k| -> serde_json::Value {
            serde_json::from_slice(&m.telemetry(k, 1_795_737_600.0, Duration::from_secs(5))).unwrap()
        };
        let t = read(&m, 1)["temperature"].as_f64().unwrap();
        assert!((20.0..60.0).contains(&t), "{t}");
        assert_eq!(read(&m, 1), read(&m, 1));
        assert!(m.telemetry(1, 0.0, Duration::from_secs(5)).len() < 40);
        m.misbehave(Misbehaviour::LargePayload, 0);
        let big = m.telemetry(1, 0.0, Duration::from_secs(5));
        assert!(big.len() > 65_536, "{}", big.len());
        let v: serde_json::Value = serde_json::from_slice(&big).unwrap();
        assert!(v["payload"].as_str().unwrap().bytes().all(|b| b.is_ascii_lowercase()));
    }

    #[test]
    fn large_payload_without_telemetry_is_modelled_in_the_report() {
        let mut m = model(DeviceClass::Meter);
        assert_eq!(m.offline_large_payload(), WireTraffic::default());
        m.misbehave(Misbehaviour::LargePayload, 0);
        assert!(m.offline_large_payload().bytes_out > 35_000);
    }

    #[test]
    fn calm_stops_one_or_all() {
        let mut m = model(DeviceClass::Meter);
        m.misbehave(Misbehaviour::Beacon, 0);
        m.misbehave(Misbehaviour::Scan, 0);
        assert!(m.calm(Some(Misbehaviour::Beacon)));
        assert!(!m.calm(Some(Misbehaviour::Beacon)));
        assert_eq!(m.active().collect::<Vec<_>>(), [Misbehaviour::Scan]);
        assert!(m.calm(None));
        assert!(!m.calm(None));
    }
}
