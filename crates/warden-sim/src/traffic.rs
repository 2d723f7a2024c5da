//! The network traffic of one device over one report period: a device's fixed traits (class,
//! time zone, endpoints, ports), drawn once from the seed, and the benign traffic of each
//! period, drawn from the report's own stream (see `rng`).
//!
//! Pure: time is an argument (simulated epoch seconds), every draw comes from a keyed stream.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use crate::class::{ClassMix, ClassProfile, DeviceClass};
use crate::rng::{Rng, Stream};

/// A TCP segment's IP and TCP headers, counted in interface bytes as a device's agent reads
/// them from `/proc/net/dev`.
pub const SEGMENT_HEADERS: u64 = 52;
/// The payload of a full TCP segment on a 1,500-byte MTU.
pub const SEGMENT_PAYLOAD: u64 = 1_448;

/// Local UTC offsets of the fleet's sites, in hours.
const UTC_OFFSETS: [i32; 6] = [-8, -5, 0, 1, 2, 8];

/// A device's fixed traits, the same every time the fleet starts with the same seed.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceTraits {
    /// The device's number in the fleet (its thing name is the prefix and this number).
    pub index: u64,
    pub class: DeviceClass,
    pub profile: ClassProfile,
    /// The site's UTC offset in hours, for the daily cycle.
    pub utc_offset_h: i32,
    pub interface: &'static str,
    /// Cloud endpoints this device keeps connections to, with the local port of each.
    pub endpoints: Vec<(SocketAddr, u16)>,
    /// The device's LAN, `192.168.x.0/24`.
    pub lan: [u8; 3],
    /// When in each period the device reports, and reads its sensor, as a fraction of the
    /// period: spreads a fleet's reports evenly instead of all at once.
    pub report_phase: f64,
    pub telemetry_phase: f64,
    /// This device's offset from its class's mean temperature.
    pub temperature_offset: f64,
}

impl DeviceTraits {
    /// Device `index` of a fleet with `seed` and class `mix`.
    pub fn draw(seed: u64, index: u64, mix: &ClassMix) -> DeviceTraits {
        let mut r = Rng::keyed(seed, Stream::Traits, index, 0);
        let class = mix.pick(r.f64());
        let profile = class.profile();
        let utc_offset_h = *r.pick(&UTC_OFFSETS);
        // Cameras and kiosks are often on Wi-Fi; meters on their own radio's IP interface.
        let interface = match class {
            DeviceClass::Camera | DeviceClass::Kiosk if r.chance(0.4) => "wlan0",
            _ => "eth0",
        };
        let endpoints = profile
            .endpoints
            .iter()
            .map(|choices| {
                let (ip, port) = *r.pick(choices);
                (SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port)), ephemeral_port(&mut r))
            })
            .collect();
        let lan = [192, 168, r.range_u64(0, 254) as u8];
        DeviceTraits {
            index,
            class,
            utc_offset_h,
            interface,
            endpoints,
            lan,
            report_phase: r.f64(),
            telemetry_phase: r.f64(),
            temperature_offset: r.range_f64(-2.0, 2.0),
            profile,
        }
    }

    /// The local hour (0–24) at simulated epoch second `epoch_s`.
    pub fn local_hour(&self, epoch_s: f64) -> f64 {
        let local = epoch_s + f64::from(self.utc_offset_h) * 3600.0;
        local.rem_euclid(86_400.0) / 3600.0
    }
}

/// A local port from Linux's default ephemeral range.
pub fn ephemeral_port(r: &mut Rng) -> u16 {
    r.range_u64(32_768, 60_999) as u16
}

/// One established TCP connection as a report lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conn {
    pub remote: SocketAddr,
    pub local_port: u16,
    pub interface: &'static str,
}

/// A listening socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    pub port: u16,
    pub interface: &'static str,
}

/// What a device did on the network over one report period: the report's `metrics` block
/// before encoding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Traffic {
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub packets_in: u64,
    pub packets_out: u64,
    pub listening_tcp: Vec<Listen>,
    pub listening_udp: Vec<Listen>,
    pub connections: Vec<Conn>,
    /// The burst of this period, if any (for logs and tests).
    pub burst: Option<&'static str>,
}

impl Traffic {
    /// Adds `bytes` sent in segments of at most `segment` payload bytes, with their headers.
    pub fn send(&mut self, bytes: u64, segment: u64) {
        let packets = bytes.div_ceil(segment.max(1));
        self.bytes_out += bytes + packets * SEGMENT_HEADERS;
        self.packets_out += packets;
    }

    /// Adds `bytes` received in segments of at most `segment` payload bytes, with their headers.
    pub fn receive(&mut self, bytes: u64, segment: u64) {
        let packets = bytes.div_ceil(segment.max(1));
        self.bytes_in += bytes + packets * SEGMENT_HEADERS;
        self.packets_in += packets;
    }

    /// Adds whole packets of `size` bytes each (headers included), out.
    pub fn send_packets(&mut self, packets: u64, size: u64) {
        self.send_packets_of(packets, packets * size);
    }

    /// Adds whole packets of `size` bytes each (headers included), in.
    pub fn receive_packets(&mut self, packets: u64, size: u64) {
        self.receive_packets_of(packets, packets * size);
    }

    /// Adds `packets` carrying `bytes` in all (headers included), out.
    pub fn send_packets_of(&mut self, packets: u64, bytes: u64) {
        self.packets_out += packets;
        self.bytes_out += bytes;
    }

    /// Adds `packets` carrying `bytes` in all (headers included), in.
    pub fn receive_packets_of(&mut self, packets: u64, bytes: u64) {
        self.packets_in += packets;
        self.bytes_in += bytes;
    }

    pub fn listen_tcp(&mut self, port: u16, interface: &'static str) {
        if !self.listening_tcp.iter().any(|l| l.port == port) {
            self.listening_tcp.push(Listen { port, interface });
        }
    }

    pub fn listen_udp(&mut self, port: u16, interface: &'static str) {
        if !self.listening_udp.iter().any(|l| l.port == port) {
            self.listening_udp.push(Listen { port, interface });
        }
    }

    pub fn connect(&mut self, remote: SocketAddr, local_port: u16, interface: &'static str) {
        self.connections.push(Conn { remote, local_port, interface });
    }
}

/// The simulated stretch of time a report covers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    /// Simulated epoch seconds at the end of the span (when the report is made).
    pub end_s: f64,
    /// Its length in simulated seconds.
    pub seconds: f64,
}

impl Span {
    pub fn middle_s(&self) -> f64 {
        self.end_s - self.seconds / 2.0
    }
}

/// The benign traffic of report `n` of a device over `span`: its class's volumes at that time
/// of day with noise, perhaps one burst, its listening ports, its endpoint and LAN connections.
pub fn benign(seed: u64, traits: &DeviceTraits, n: u64, span: Span) -> Traffic {
    let p = &traits.profile;
    let mut r = Rng::keyed(seed, Stream::Traffic, traits.index, n);
    let mut t = Traffic::default();
    let day = p.daily_factor(traits.local_hour(span.middle_s()));
    let bytes_out = (p.bytes_out_per_s * span.seconds * day * r.noise(p.noise)).round();
    let bytes_in = (p.bytes_in_per_s * span.seconds * day * r.noise(p.noise)).round();
    t.send_packets_of((bytes_out / p.packet_out_bytes).ceil() as u64, bytes_out as u64);
    t.receive_packets_of((bytes_in / p.packet_in_bytes).ceil() as u64, bytes_in as u64);

    // At most one burst per report: each has its chance over the span, tried in order.
    for burst in p.bursts {
        let chance = 1.0 - (1.0 - burst.chance_per_5min).powf(span.seconds / 300.0);
        if r.chance(chance) {
            let share = r.range_f64(0.5, 1.0);
            let (bytes_in, bytes_out) =
                ((burst.bytes_in as f64 * share) as u64, (burst.bytes_out as f64 * share) as u64);
            // The bulk direction fills whole segments; the other carries acknowledgements.
            if burst.is_download() {
                t.receive(bytes_in, SEGMENT_PAYLOAD);
                t.send_packets(bytes_out / SEGMENT_HEADERS, SEGMENT_HEADERS);
            } else {
                t.send(bytes_out, SEGMENT_PAYLOAD);
                t.receive_packets(bytes_in / SEGMENT_HEADERS, SEGMENT_HEADERS);
            }
            let remote = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(burst.endpoint), 443));
            t.connect(remote, ephemeral_port(&mut r), traits.interface);
            t.burst = Some(burst.name);
            break;
        }
    }

    for &port in p.listening_tcp {
        t.listen_tcp(port, traits.interface);
    }
    for &port in p.listening_udp {
        t.listen_udp(port, traits.interface);
    }
    for &(remote, local_port) in &traits.endpoints {
        t.connect(remote, local_port, traits.interface);
    }
    if let Some((port, fewest, most)) = p.lan_clients {
        for _ in 0..r.range_u64(fewest, most) {
            let [a, b, c] = traits.lan;
            let host = r.range_u64(10, 250) as u8;
            let remote =
                SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(a, b, c, host), ephemeral_port(&mut r)));
            t.connect(remote, port, traits.interface);
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: u64 = 42;
    /// 2026-11-27T00:00:00Z.
    const MIDNIGHT_UTC: f64 = 1_795_737_600.0;

    fn device(class: DeviceClass, index: u64) -> DeviceTraits {
        DeviceTraits::draw(SEED, index, &ClassMix::only(class))
    }

    #[test]
    fn traits_are_a_function_of_seed_and_index() {
        let mix = ClassMix::default();
        for i in 0..50 {
            assert_eq!(DeviceTraits::draw(SEED, i, &mix), DeviceTraits::draw(SEED, i, &mix));
        }
        let classes = |seed| (0..50).map(|i| DeviceTraits::draw(seed, i, &mix).class).collect::<Vec<_>>();
        assert_ne!(classes(1), classes(2), "another seed, another fleet");
    }

    #[test]
    fn a_default_fleet_has_every_class_in_about_its_share() {
        let mix = ClassMix::default();
        let n = 10_000;
        for (class, weight) in mix.weights() {
            let count = (0..n).filter(|i| DeviceTraits::draw(SEED, *i, &mix).class == *class).count() as f64;
            let expected = n as f64 * f64::from(*weight) / 10.0;
            assert!((count - expected).abs() < 0.05 * n as f64, "{class}: {count} vs {expected}");
        }
    }

    #[test]
    fn benign_traffic_is_reproducible_report_by_report() {
        let d = device(DeviceClass::Gateway, 3);
        let span = Span { end_s: MIDNIGHT_UTC + 3600.0, seconds: 300.0 };
        assert_eq!(benign(SEED, &d, 17, span), benign(SEED, &d, 17, span));
        assert_ne!(benign(SEED, &d, 17, span), benign(SEED, &d, 18, span));
        assert_ne!(benign(SEED, &d, 17, span), benign(SEED + 1, &d, 17, span));
    }

    #[test]
    fn volumes_follow_the_class_and_the_time_of_day() {
        for class in DeviceClass::ALL {
            let d = device(class, 0);
            let p = &d.profile;
            // Local peak hour and local trough, averaged over many reports.
            let peak_utc = MIDNIGHT_UTC + (p.peak_hour - f64::from(d.utc_offset_h)) * 3600.0;
            let mean_out = |end_s: f64| {
                let total: u64 = (0..400)
                    .map(|n| benign(SEED, &d, n, Span { end_s: end_s + 150.0, seconds: 300.0 }))
                    .filter(|t| t.burst.is_none())
                    .map(|t| t.bytes_out)
                    .sum();
                total as f64 / 400.0
            };
            let at_peak = mean_out(peak_utc);
            let at_trough = mean_out(peak_utc + 12.0 * 3600.0);
            let expected_peak = p.bytes_out_per_s * 300.0 * (1.0 + p.daily_amplitude);
            assert!(at_peak > 0.9 * expected_peak && at_peak < 1.25 * expected_peak, "{class}: {at_peak}");
            assert!(at_trough < at_peak, "{class}: trough {at_trough}, peak {at_peak}");
        }
    }

    #[test]
    fn benign_bytes_out_never_exceed_the_class_bound() {
        for class in DeviceClass::ALL {
            for index in 0..20 {
                let d = device(class, index);
                let bound = d.profile.max_benign_bytes_out(300.0);
                for n in 0..2_000 {
                    let span = Span { end_s: MIDNIGHT_UTC + n as f64 * 300.0, seconds: 300.0 };
                    let t = benign(SEED, &d, n, span);
                    assert!(t.bytes_out as f64 <= bound, "{class} #{index} report {n}: {t:?}");
                }
            }
        }
    }

    #[test]
    fn bursts_happen_at_about_their_rate_and_bring_their_connection() {
        let d = device(DeviceClass::Gateway, 1);
        let log_upload = d.profile.bursts.iter().find(|b| b.name == "log upload").unwrap();
        let n = 20_000u64;
        let mut seen = 0;
        for i in 0..n {
            let t = benign(SEED, &d, i, Span { end_s: MIDNIGHT_UTC + i as f64 * 300.0, seconds: 300.0 });
            if t.burst == Some("log upload") {
                seen += 1;
                assert!(t.connections.iter().any(|c| c.remote.ip().to_string() == "203.0.113.60"), "{t:?}");
            }
        }
        let expected = n as f64 * log_upload.chance_per_5min;
        assert!((f64::from(seen) - expected).abs() < 0.2 * expected, "{seen} vs {expected}");
    }

    #[test]
    fn ports_and_connections_are_the_class_ones() {
        let d = device(DeviceClass::Camera, 5);
        let t = benign(SEED, &d, 0, Span { end_s: MIDNIGHT_UTC, seconds: 300.0 });
        let tcp: Vec<u16> = t.listening_tcp.iter().map(|l| l.port).collect();
        let udp: Vec<u16> = t.listening_udp.iter().map(|l| l.port).collect();
        assert_eq!((tcp, udp), (vec![80, 554], vec![3702]));
        assert!(
            t.connections
                .iter()
                .any(|c| c.remote.port() == 443 && c.remote.ip().to_string().starts_with("203.0.113.1"))
        );

        let g = device(DeviceClass::Gateway, 5);
        for n in 0..50 {
            let t = benign(SEED, &g, n, Span { end_s: MIDNIGHT_UTC, seconds: 300.0 });
            let lan = t.connections.iter().filter(|c| c.local_port == 1883).count();
            assert!((3..=6).contains(&lan), "{t:?}");
        }
    }

    #[test]
    fn volumes_scale_with_the_span() {
        let d = device(DeviceClass::Meter, 2);
        let total = |seconds: f64| -> u64 {
            (0..200).map(|n| benign(SEED, &d, n, Span { end_s: MIDNIGHT_UTC, seconds }).bytes_out).sum()
        };
        let (short, long) = (total(60.0) as f64, total(600.0) as f64);
        assert!((long / short - 10.0).abs() < 1.5, "{short} {long}");
    }

    #[test]
    fn local_hours_wrap_around_the_day() {
        let mut d = device(DeviceClass::Meter, 0);
        d.utc_offset_h = -5;
        assert!((d.local_hour(MIDNIGHT_UTC) - 19.0).abs() < 1e-9);
        d.utc_offset_h = 8;
        assert!((d.local_hour(MIDNIGHT_UTC + 20.0 * 3600.0) - 4.0).abs() < 1e-9);
    }
}
