//! Misbehaviours: what a compromised or broken device does differently, as effects on its
//! report's metrics (pure) and, where the behaviour involves the device's MQTT traffic, on
//! what the simulator really publishes ([`AppEffect`], carried out by the fleet).
//!
//! Rates are per simulated second, like the classes' volumes, and taken from the behaviours
//! they imitate: Mirai's telnet scanner, a UDP or SYN flood, a reverse shell's listening port,
//! a command-and-control beacon, a slow exfiltration.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::str::FromStr;

use crate::rng::{Rng, Stream};
use crate::traffic::{DeviceTraits, SEGMENT_HEADERS, SEGMENT_PAYLOAD, Span, Traffic, ephemeral_port};

/// A misbehaviour a device can be told to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Misbehaviour {
    /// The AWS workshop's attack: the application publishes large payloads on its telemetry
    /// topic, raising `aws:all-bytes-out` (and the cloud-side message size) by their size.
    LargePayload,
    /// Mirai-like telnet scanning: a flood of small SYNs to random addresses on ports 23 and
    /// 2323, a few sessions that get through, and Mirai's single-instance port 48101 on `lo`.
    Scan,
    /// A UDP flood at one victim from an unconnected UDP socket (a new UDP port).
    Flood,
    /// A SYN flood at one victim: many tiny packets, no established connection.
    FloodSyn,
    /// A new listening TCP port (a bind shell), now and then with an attacker connected.
    BackdoorPort,
    /// A new persistent connection to a command-and-control server with small heartbeats.
    Beacon,
    /// Bytes out rising slowly and steadily, to a storage server outside the fleet's range.
    Exfil,
    /// Publishes to topics the device's policy forbids (another thing's, and the workshop's
    /// `invalid-topic-for-error`), raising `aws:num-authorization-failures`.
    AuthErrors,
    /// The device drops and re-opens its MQTT connections every few seconds.
    ReconnectStorm,
}

impl Misbehaviour {
    pub const ALL: [Misbehaviour; 9] = [
        Misbehaviour::LargePayload,
        Misbehaviour::Scan,
        Misbehaviour::Flood,
        Misbehaviour::FloodSyn,
        Misbehaviour::BackdoorPort,
        Misbehaviour::Beacon,
        Misbehaviour::Exfil,
        Misbehaviour::AuthErrors,
        Misbehaviour::ReconnectStorm,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Misbehaviour::LargePayload => "large-payload",
            Misbehaviour::Scan => "scan",
            Misbehaviour::Flood => "flood",
            Misbehaviour::FloodSyn => "flood-syn",
            Misbehaviour::BackdoorPort => "backdoor-port",
            Misbehaviour::Beacon => "beacon",
            Misbehaviour::Exfil => "exfil",
            Misbehaviour::AuthErrors => "auth-errors",
            Misbehaviour::ReconnectStorm => "reconnect-storm",
        }
    }

    /// What the behaviour does to the device's own MQTT traffic, if anything.
    pub fn app_effect(self) -> Option<AppEffect> {
        match self {
            Misbehaviour::LargePayload => Some(AppEffect::LargePayload),
            Misbehaviour::AuthErrors => Some(AppEffect::ForbiddenPublishes),
            Misbehaviour::ReconnectStorm => Some(AppEffect::Reconnects),
            _ => None,
        }
    }
}

impl fmt::Display for Misbehaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Misbehaviour {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "flood-udp" {
            return Ok(Misbehaviour::Flood);
        }
        Misbehaviour::ALL.into_iter().find(|m| m.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = Misbehaviour::ALL.iter().map(|m| m.as_str()).collect();
            format!("unknown misbehaviour {s:?}; expected one of {}", names.join(", "))
        })
    }
}

/// A change to the device's real MQTT traffic, which the fleet carries out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEffect {
    /// Telemetry messages carry [`large_payload_padding`] extra bytes.
    LargePayload,
    /// Every telemetry reading (or report, without telemetry) also publishes to
    /// [`forbidden_topics`].
    ForbiddenPublishes,
    /// Connections are dropped a few seconds after they open.
    Reconnects,
}

/// Extra bytes the application sends per report period while `large-payload` is on: above the
/// workshop's 35,000 bytes per 5 minutes in any single report.
pub const LARGE_PAYLOAD_PER_PERIOD: u64 = 64 * 1024;
/// The workshop's large payload: 500 random letters.
pub const LARGE_PAYLOAD_MIN: u64 = 500;
/// Kept well below the server's default 128 KiB payload limit.
pub const LARGE_PAYLOAD_MAX: u64 = 96 * 1024;

/// Padding per telemetry message while `large-payload` is on: [`LARGE_PAYLOAD_PER_PERIOD`]
/// spread over the messages of a report period, at least the workshop's 500 bytes each.
pub fn large_payload_padding(period_s: f64, telemetry_every_s: f64) -> u64 {
    let messages = (period_s / telemetry_every_s.max(0.001)).max(1.0);
    ((LARGE_PAYLOAD_PER_PERIOD as f64 / messages).ceil() as u64).clamp(LARGE_PAYLOAD_MIN, LARGE_PAYLOAD_MAX)
}

/// The topics `auth-errors` publishes to: the workshop's, and another thing's shadow.
pub fn forbidden_topics(thing: &str) -> [String; 2] {
    ["invalid-topic-for-error".to_owned(), format!("$aws/things/{thing}-peer/shadow/update")]
}

// Rates per simulated second.
/// Mirai's scanner: SYN probes of 60 bytes, and the RSTs and SYN-ACKs that come back.
const SCAN_SYNS_PER_S: f64 = 150.0;
const SCAN_REPLY_SHARE: f64 = 0.2;
/// A UDP flood: 512-byte datagrams with their 28 bytes of headers.
const UDP_FLOOD_PPS: f64 = 2_000.0;
const UDP_FLOOD_PACKET: u64 = 540;
/// A SYN flood: 60-byte SYNs.
const SYN_FLOOD_PPS: f64 = 5_000.0;
const SYN_PACKET: u64 = 60;
/// A beacon's heartbeat: one small request and answer a minute.
const BEACON_EVERY_S: f64 = 60.0;
const BEACON_OUT: u64 = 310;
const BEACON_IN: u64 = 190;
/// Exfiltration: bytes out per second rise by this much per simulated minute, up to the cap.
const EXFIL_SLOPE_PER_MIN: f64 = 1.0;
const EXFIL_MAX_PER_S: f64 = 2_000.0;
/// Ports a bind shell picks.
const BACKDOOR_PORTS: [u16; 5] = [4444, 31337, 1337, 6666, 5555];
/// Mirai binds 127.0.0.1:48101 so that only one copy of it runs.
const MIRAI_LOCK_PORT: u16 = 48101;

/// An active misbehaviour of a device: what, and since which report number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Active {
    pub kind: Misbehaviour,
    /// The first report it affects.
    pub since: u64,
}

/// Applies `active` to the traffic of report `n`, which covers `span`; `elapsed_s` is the
/// simulated time from the misbehaviour's start to the end of the span. Draws come from the
/// report's misbehaviour stream, so benign traffic is the same with or without it.
pub fn apply(
    seed: u64,
    traits: &DeviceTraits,
    active: Active,
    n: u64,
    span: Span,
    elapsed_s: f64,
    t: &mut Traffic,
) {
    // Per-misbehaviour constants (victim, port, C2) come from a stream keyed by its start, so
    // they stay the same for as long as it lasts, and change when it starts again.
    let mut fixed =
        Rng::keyed(seed, Stream::Misbehaviour, traits.index, active.since ^ ((active.kind as u64) << 56));
    let mut r = Rng::keyed(seed, Stream::Misbehaviour, traits.index, n.wrapping_add(1 << 40));
    let secs = span.seconds;
    let iface = traits.interface;
    match active.kind {
        // Real traffic: the fleet publishes it and counts it in the device's bytes.
        Misbehaviour::LargePayload | Misbehaviour::AuthErrors | Misbehaviour::ReconnectStorm => {}
        Misbehaviour::Scan => {
            let syns = (SCAN_SYNS_PER_S * secs * r.noise(0.1)).round() as u64;
            t.send_packets(syns, SYN_PACKET);
            t.receive_packets((syns as f64 * SCAN_REPLY_SHARE) as u64, SEGMENT_HEADERS + 2);
            for _ in 0..r.range_u64(1, 3) {
                let port = if r.chance(0.9) { 23 } else { 2323 };
                let remote = SocketAddr::V4(SocketAddrV4::new(public_ipv4(&mut r), port));
                t.connect(remote, ephemeral_port(&mut r), iface);
                // Each session tries a few credentials.
                t.send(r.range_u64(200, 600), SEGMENT_PAYLOAD);
                t.receive(r.range_u64(100, 400), SEGMENT_PAYLOAD);
            }
            t.listen_tcp(MIRAI_LOCK_PORT, "lo");
        }
        Misbehaviour::Flood => {
            let packets = (UDP_FLOOD_PPS * secs * r.noise(0.1)).round() as u64;
            t.send_packets(packets, UDP_FLOOD_PACKET);
            t.listen_udp(ephemeral_port(&mut fixed), iface);
        }
        Misbehaviour::FloodSyn => {
            let packets = (SYN_FLOOD_PPS * secs * r.noise(0.1)).round() as u64;
            t.send_packets(packets, SYN_PACKET);
            // A few RSTs from the victim's firewall.
            t.receive_packets(packets / 100, SEGMENT_HEADERS);
        }
        Misbehaviour::BackdoorPort => {
            let port = *fixed.pick(&BACKDOOR_PORTS);
            t.listen_tcp(port, iface);
            if r.chance(0.5) {
                let attacker = public_ipv4(&mut fixed);
                let remote = SocketAddr::V4(SocketAddrV4::new(attacker, ephemeral_port(&mut r)));
                t.connect(remote, port, iface);
                t.receive(r.range_u64(500, 3_000), SEGMENT_PAYLOAD);
                t.send(r.range_u64(2_000, 20_000), SEGMENT_PAYLOAD);
            }
        }
        Misbehaviour::Beacon => {
            let c2 = public_ipv4(&mut fixed);
            let port = *fixed.pick(&[443, 8443, 6667, 8080]);
            let local = ephemeral_port(&mut fixed);
            t.connect(SocketAddr::V4(SocketAddrV4::new(c2, port)), local, iface);
            let beats = (secs / BEACON_EVERY_S).ceil() as u64;
            for _ in 0..beats {
                t.send(BEACON_OUT, SEGMENT_PAYLOAD);
                t.receive(BEACON_IN, SEGMENT_PAYLOAD);
            }
        }
        Misbehaviour::Exfil => {
            let minutes = (elapsed_s - secs / 2.0).max(0.0) / 60.0;
            let rate = (EXFIL_SLOPE_PER_MIN * minutes).min(EXFIL_MAX_PER_S);
            let bytes = (rate * secs).round() as u64;
            let sink = public_ipv4(&mut fixed);
            t.connect(SocketAddr::V4(SocketAddrV4::new(sink, 443)), ephemeral_port(&mut fixed), iface);
            t.send(bytes, SEGMENT_PAYLOAD);
            t.receive_packets(bytes.div_ceil(2 * SEGMENT_PAYLOAD), SEGMENT_HEADERS);
        }
    }
}

/// A random public unicast IPv4 address: not in 0/8, 10/8, 100.64/10, 127/8, 169.254/16,
/// 172.16/12, 192.168/16, the TEST-NETs the fleet itself uses, or 224/3.
pub fn public_ipv4(r: &mut Rng) -> Ipv4Addr {
    loop {
        let ip = Ipv4Addr::from(r.next_u64() as u32);
        let [a, b, c, _] = ip.octets();
        let private = a == 0
            || a == 10
            || a == 127
            || a >= 224
            || (a == 100 && (64..128).contains(&b))
            || (a == 169 && b == 254)
            || (a == 172 && (16..32).contains(&b))
            || (a == 192 && b == 168)
            || (a == 192 && b == 0 && c == 2)
            || (a == 198 && b == 51 && c == 100)
            || (a == 203 && b == 0 && c == 113);
        if !private {
            return ip;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::class::{ClassMix, DeviceClass};
    use crate::traffic::benign;

    const SEED: u64 = 9;
    const SPAN: Span = Span { end_s: 1_795_737_600.0, seconds: 300.0 };

    fn device() -> DeviceTraits {
        DeviceTraits::draw(SEED, 4, &ClassMix::only(DeviceClass::Camera))
    }

    /// The traffic of report 10 with `kind` active since report `since`, and without it.
    fn with(kind: Misbehaviour, since: u64) -> (Traffic, Traffic) {
        at(kind, since, 10)
    }

    /// The traffic of report `n` with `kind` active since report `since`, and without it.
    fn at(kind: Misbehaviour, since: u64, n: u64) -> (Traffic, Traffic) {
        let d = device();
        let calm = benign(SEED, &d, n, SPAN);
        let mut t = calm.clone();
        let elapsed = (n - since + 1) as f64 * SPAN.seconds;
        apply(SEED, &d, Active { kind, since }, n, SPAN, elapsed, &mut t);
        (calm, t)
    }

    fn ips(t: &Traffic) -> Vec<String> {
        t.connections.iter().map(|c| c.remote.to_string()).collect()
    }

    #[test]
    fn names_round_trip_and_flood_udp_is_flood() {
        for m in Misbehaviour::ALL {
            assert_eq!(m.as_str().parse::<Misbehaviour>(), Ok(m));
        }
        assert_eq!("flood-udp".parse::<Misbehaviour>(), Ok(Misbehaviour::Flood));
        assert_eq!(
            "dance".parse::<Misbehaviour>().unwrap_err(),
            "unknown misbehaviour \"dance\"; expected one of large-payload, scan, flood, flood-syn, \
             backdoor-port, beacon, exfil, auth-errors, reconnect-storm"
        );
    }

    #[test]
    fn only_mqtt_behaviours_touch_the_real_traffic() {
        let with_effect: Vec<_> =
            Misbehaviour::ALL.into_iter().filter(|m| m.app_effect().is_some()).collect();
        assert_eq!(
            with_effect,
            [Misbehaviour::LargePayload, Misbehaviour::AuthErrors, Misbehaviour::ReconnectStorm]
        );
        for m in with_effect {
            let (calm, t) = with(m, 10);
            assert_eq!(calm, t, "{m} changes only what the fleet really sends");
        }
    }

    #[test]
    fn scan_floods_small_packets_to_telnet_ports_of_random_hosts() {
        let (calm, t) = with(Misbehaviour::Scan, 8);
        let extra = t.packets_out - calm.packets_out;
        assert!(extra > 40_000, "{extra}");
        let mean = (t.bytes_out - calm.bytes_out) as f64 / extra as f64;
        assert!(mean < 70.0, "small packets: {mean}");
        let telnet: Vec<_> = t.connections.iter().filter(|c| [23, 2323].contains(&c.remote.port())).collect();
        assert!((1..=3).contains(&telnet.len()), "{t:?}");
        assert!(t.listening_tcp.iter().any(|l| l.port == 48101 && l.interface == "lo"));
        // New victims every report.
        let d = device();
        let mut next = benign(SEED, &d, 11, SPAN);
        apply(SEED, &d, Active { kind: Misbehaviour::Scan, since: 8 }, 11, SPAN, 1200.0, &mut next);
        let telnet_ips = |t: &Traffic| -> Vec<String> {
            t.connections
                .iter()
                .filter(|c| c.remote.port() == 23 || c.remote.port() == 2323)
                .map(|c| c.remote.to_string())
                .collect()
        };
        assert_ne!(telnet_ips(&t), telnet_ips(&next));
    }

    #[test]
    fn udp_flood_adds_volume_and_a_udp_port_syn_flood_only_packets() {
        let (calm, udp) = with(Misbehaviour::Flood, 10);
        assert!(udp.bytes_out - calm.bytes_out > 250_000_000, "{}", udp.bytes_out);
        assert_eq!(udp.listening_udp.len(), calm.listening_udp.len() + 1);
        assert_eq!(ips(&udp), ips(&calm));

        let (calm, syn) = with(Misbehaviour::FloodSyn, 10);
        let packets = syn.packets_out - calm.packets_out;
        assert!(packets > 1_000_000, "{packets}");
        assert_eq!((syn.bytes_out - calm.bytes_out) / packets, 60);
        assert_eq!(
            (syn.listening_tcp.clone(), syn.listening_udp.clone()),
            (calm.listening_tcp, calm.listening_udp)
        );
    }

    #[test]
    fn a_backdoor_listens_on_the_same_new_port_for_as_long_as_it_lasts() {
        let d = device();
        let port_at = |n: u64| {
            let mut t = benign(SEED, &d, n, SPAN);
            apply(SEED, &d, Active { kind: Misbehaviour::BackdoorPort, since: 3 }, n, SPAN, 0.0, &mut t);
            let calm: Vec<u16> = d.profile.listening_tcp.to_vec();
            let new: Vec<u16> =
                t.listening_tcp.iter().map(|l| l.port).filter(|p| !calm.contains(p)).collect();
            assert_eq!(new.len(), 1, "{t:?}");
            new[0]
        };
        let port = port_at(3);
        assert!(BACKDOOR_PORTS.contains(&port));
        for n in 4..20 {
            assert_eq!(port_at(n), port);
        }
    }

    #[test]
    fn a_beacon_keeps_one_new_endpoint_with_small_heartbeats() {
        let (calm, t) = with(Misbehaviour::Beacon, 2);
        let new: Vec<_> = ips(&t).into_iter().filter(|ip| !ips(&calm).contains(ip)).collect();
        assert_eq!(new.len(), 1);
        let (calm_later, later) = at(Misbehaviour::Beacon, 2, 11);
        let new_later: Vec<_> = ips(&later).into_iter().filter(|ip| !ips(&calm_later).contains(ip)).collect();
        assert_eq!(new_later, new, "the same endpoint every report");
        let extra = t.bytes_out - calm.bytes_out;
        assert!(extra > 1_000 && extra < 3_000, "5 heartbeats: {extra}");
    }

    #[test]
    fn exfil_rises_slowly_and_steadily() {
        let d = device();
        let extra = |periods: u64| {
            let calm = benign(SEED, &d, 50, SPAN);
            let mut t = calm.clone();
            let active = Active { kind: Misbehaviour::Exfil, since: 50 - periods + 1 };
            apply(SEED, &d, active, 50, SPAN, periods as f64 * SPAN.seconds, &mut t);
            t.bytes_out - calm.bytes_out
        };
        let series: Vec<u64> = (1..=24).map(extra).collect();
        assert!(series.windows(2).all(|w| w[1] > w[0]), "{series:?}");
        // About +1 B/s per minute: after an hour (12 periods), ~60 B/s, ~18 KB per period.
        assert!((15_000..25_000).contains(&series[11]), "{series:?}");
        assert!(series[0] < 1_500, "it starts small: {series:?}");
    }

    #[test]
    fn large_payloads_spread_64_kib_per_period_over_the_telemetry() {
        assert_eq!(large_payload_padding(5.0, 5.0), 65_536);
        assert_eq!(large_payload_padding(300.0, 5.0), 1_093);
        assert_eq!(large_payload_padding(300.0, 0.1), 500, "at least the workshop's 500 letters");
        assert_eq!(large_payload_padding(5.0, 60.0), 65_536, "one message a period at least");
        assert_eq!(large_payload_padding(1.0, 1e-9), 500);
        assert_eq!(forbidden_topics("dev-1")[1], "$aws/things/dev-1-peer/shadow/update");
    }

    #[test]
    fn public_addresses_avoid_private_and_fleet_ranges() {
        let mut r = Rng::keyed(1, Stream::Misbehaviour, 0, 0);
        for _ in 0..100_000 {
            let ip = public_ipv4(&mut r);
            assert!(
                !ip.is_private() && !ip.is_loopback() && !ip.is_multicast() && !ip.is_link_local(),
                "{ip}"
            );
            assert!(
                !ip.to_string().starts_with("203.0.113.") && !ip.to_string().starts_with("198.51.100."),
                "{ip}"
            );
        }
    }
}
