//! Device classes: what a meter, a camera, a gateway and a kiosk normally do on the network,
//! and the mix of classes in a fleet.
//!
//! Volumes are per simulated second at the class's daily mean; a report multiplies them by the
//! simulated time it covers. They are calibrated against the AWS workshop's profile (at most
//! 35,000 bytes out per 5 minutes, spec §7.2): in every benign 5 minutes, bursts included, each
//! class stays below 25,000 bytes out, which leaves 10,000 bytes for the simulator's own MQTT
//! traffic (a report, and telemetry every 5 s), so a fleet watched by that profile raises no
//! alarm until a device misbehaves. [`ClassProfile::max_benign_bytes_out`] is that bound,
//! checked by tests.

use std::fmt;
use std::str::FromStr;

/// The kinds of device a fleet is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeviceClass {
    /// A smart meter: a trickle of readings, flat over the day, a CoAP port.
    Meter,
    /// An IP camera uploading event thumbnails: busier by day, HTTP and RTSP ports.
    Camera,
    /// A site gateway: local sensors connect to its broker port, SSH and DNS/DHCP for the LAN.
    Gateway,
    /// A retail kiosk: busy during opening hours, idle at night, content updates.
    Kiosk,
}

/// An occasional large transfer (firmware download, log upload) with its own connection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Burst {
    pub name: &'static str,
    /// Chance per 5 simulated minutes.
    pub chance_per_5min: f64,
    /// Bytes in and out of the whole transfer (each scaled by a draw in [0.5, 1]).
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// The server it talks to (port 443), one of the fleet's own endpoints.
    pub endpoint: [u8; 4],
}

/// What a class does on a normal day.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassProfile {
    pub class: DeviceClass,
    /// Mean bytes per simulated second, as the interface counts them (headers included).
    pub bytes_in_per_s: f64,
    pub bytes_out_per_s: f64,
    /// Mean packet sizes (headers included), which turn bytes into packets.
    pub packet_in_bytes: f64,
    pub packet_out_bytes: f64,
    /// Relative amplitude of the daily cycle (0 = flat) and the local hour of its peak.
    pub daily_amplitude: f64,
    pub peak_hour: f64,
    /// Relative spread of the per-report noise (triangular, bounded).
    pub noise: f64,
    pub listening_tcp: &'static [u16],
    pub listening_udp: &'static [u16],
    /// Cloud endpoints every device of the class keeps a connection to (besides the MQTT
    /// endpoint): one is picked per device from each list.
    pub endpoints: &'static [&'static [([u8; 4], u16)]],
    /// Inbound LAN connections to a local port: (local port, fewest, most) per report.
    pub lan_clients: Option<(u16, u64, u64)>,
    pub bursts: &'static [Burst],
    /// Typical telemetry: the mean temperature reading and its daily swing.
    pub temperature: (f64, f64),
}

/// The fleet's update server and log collector (TEST-NET-3, the fleet's own address range).
const UPDATES: [u8; 4] = [203, 0, 113, 50];
const LOGS: [u8; 4] = [203, 0, 113, 60];

/// A download: the device's bytes out are its TCP acknowledgements, one 52-byte segment per
/// two full 1,448-byte segments in, about 1.8% of the bytes in.
const fn download(name: &'static str, bytes_in: u64, chance_per_5min: f64) -> Burst {
    Burst { name, chance_per_5min, bytes_in, bytes_out: bytes_in * 18 / 1000, endpoint: UPDATES }
}

const fn log_upload(bytes_out: u64, chance_per_5min: f64) -> Burst {
    Burst { name: "log upload", chance_per_5min, bytes_in: bytes_out / 20, bytes_out, endpoint: LOGS }
}

/// About once a week per device.
const WEEKLY: f64 = 1.0 / 2016.0;

impl Burst {
    /// Whether the device mostly receives (a download) rather than sends (an upload).
    pub fn is_download(&self) -> bool {
        self.bytes_in >= self.bytes_out
    }

    /// The most bytes out the burst puts on the interface: an upload's bytes with a header per
    /// full segment, a download's acknowledgements as they are.
    pub fn max_wire_bytes_out(&self) -> u64 {
        if self.is_download() {
            self.bytes_out
        } else {
            self.bytes_out
                + self.bytes_out.div_ceil(crate::traffic::SEGMENT_PAYLOAD) * crate::traffic::SEGMENT_HEADERS
        }
    }
}

impl DeviceClass {
    pub const ALL: [DeviceClass; 4] =
        [DeviceClass::Meter, DeviceClass::Camera, DeviceClass::Gateway, DeviceClass::Kiosk];

    pub fn as_str(self) -> &'static str {
        match self {
            DeviceClass::Meter => "meter",
            DeviceClass::Camera => "camera",
            DeviceClass::Gateway => "gateway",
            DeviceClass::Kiosk => "kiosk",
        }
    }

    /// The class's normal behaviour.
    pub fn profile(self) -> ClassProfile {
        match self {
            DeviceClass::Meter => ClassProfile {
                class: self,
                bytes_in_per_s: 6.0,
                bytes_out_per_s: 12.0,
                packet_in_bytes: 120.0,
                packet_out_bytes: 180.0,
                daily_amplitude: 0.15,
                peak_hour: 19.0,
                noise: 0.1,
                listening_tcp: &[],
                listening_udp: &[5683],
                endpoints: &[],
                lan_clients: None,
                bursts: const { &[download("firmware download", 300_000, WEEKLY), log_upload(4_000, 1.0 / 288.0)] },
                temperature: (24.0, 1.5),
            },
            DeviceClass::Camera => ClassProfile {
                class: self,
                bytes_in_per_s: 15.0,
                bytes_out_per_s: 25.0,
                packet_in_bytes: 90.0,
                packet_out_bytes: 900.0,
                daily_amplitude: 0.5,
                peak_hour: 14.0,
                noise: 0.2,
                listening_tcp: &[80, 554],
                listening_udp: &[3702],
                endpoints: &[&[([203, 0, 113, 10], 443), ([203, 0, 113, 11], 443)]],
                lan_clients: None,
                bursts: const { &[download("firmware download", 600_000, WEEKLY), log_upload(7_000, 1.0 / 144.0)] },
                temperature: (38.0, 6.0),
            },
            DeviceClass::Gateway => ClassProfile {
                class: self,
                bytes_in_per_s: 35.0,
                bytes_out_per_s: 35.0,
                packet_in_bytes: 150.0,
                packet_out_bytes: 200.0,
                daily_amplitude: 0.25,
                peak_hour: 20.0,
                noise: 0.15,
                listening_tcp: &[22, 443, 1883],
                listening_udp: &[53, 67, 5353],
                endpoints: &[&[([203, 0, 113, 20], 443)]],
                lan_clients: Some((1883, 3, 6)),
                bursts: const { &[download("firmware download", 500_000, WEEKLY), log_upload(6_000, 1.0 / 48.0)] },
                temperature: (45.0, 4.0),
            },
            DeviceClass::Kiosk => ClassProfile {
                class: self,
                bytes_in_per_s: 80.0,
                bytes_out_per_s: 25.0,
                packet_in_bytes: 1_100.0,
                packet_out_bytes: 160.0,
                daily_amplitude: 0.8,
                peak_hour: 13.0,
                noise: 0.15,
                listening_tcp: &[22],
                listening_udp: &[68],
                endpoints: &[
                    &[([203, 0, 113, 30], 443), ([203, 0, 113, 31], 443)],
                    &[([198, 51, 100, 40], 443), ([198, 51, 100, 41], 443), ([198, 51, 100, 42], 443)],
                ],
                lan_clients: None,
                bursts: const {
                    &[download("content update", 500_000, 1.0 / 288.0), log_upload(5_000, 1.0 / 96.0)]
                },
                temperature: (31.0, 5.0),
            },
        }
    }
}

impl ClassProfile {
    /// The daily-cycle factor at a local hour (0–24): `1 ± amplitude`, highest at the peak.
    pub fn daily_factor(&self, local_hour: f64) -> f64 {
        let phase = (local_hour - self.peak_hour) / 24.0 * std::f64::consts::TAU;
        1.0 + self.daily_amplitude * phase.cos()
    }

    /// The most bytes out a device of this class sends in `seconds` of benign traffic (peak of
    /// the day, highest noise, the largest burst: a report has at most one), not counting the
    /// simulator's real MQTT traffic. Bounded because the noise is.
    pub fn max_benign_bytes_out(&self, seconds: f64) -> f64 {
        let steady = self.bytes_out_per_s * (1.0 + self.daily_amplitude) * (1.0 + self.noise) * seconds;
        steady.round() + self.bursts.iter().map(Burst::max_wire_bytes_out).max().unwrap_or(0) as f64
    }
}

impl fmt::Display for DeviceClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeviceClass {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        DeviceClass::ALL.into_iter().find(|c| c.as_str() == s).ok_or_else(|| {
            format!("unknown device class {s:?}; expected one of {}", names(&DeviceClass::ALL))
        })
    }
}

fn names(classes: &[DeviceClass]) -> String {
    classes.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")
}

/// The classes of a fleet with their weights, as `--classes` gives them:
/// `meter,camera` (equal shares) or `meter=6,camera=2,gateway=1,kiosk=1`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassMix(Vec<(DeviceClass, u32)>);

impl Default for ClassMix {
    /// Mostly meters, as utility fleets are, with some of each other class.
    fn default() -> Self {
        ClassMix(vec![
            (DeviceClass::Meter, 5),
            (DeviceClass::Camera, 2),
            (DeviceClass::Gateway, 1),
            (DeviceClass::Kiosk, 2),
        ])
    }
}

impl ClassMix {
    /// One class only.
    pub fn only(class: DeviceClass) -> ClassMix {
        ClassMix(vec![(class, 1)])
    }

    pub fn weights(&self) -> &[(DeviceClass, u32)] {
        &self.0
    }

    /// The class a uniform draw in `[0, 1)` falls on.
    pub fn pick(&self, u: f64) -> DeviceClass {
        let total: u32 = self.0.iter().map(|(_, w)| w).sum();
        let mut at = u * f64::from(total);
        for &(class, weight) in &self.0 {
            if at < f64::from(weight) {
                return class;
            }
            at -= f64::from(weight);
        }
        // Only reached through rounding at u ≈ 1: the last class.
        self.0.last().map(|(c, _)| *c).unwrap_or(DeviceClass::Meter)
    }
}

impl fmt::Display for ClassMix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(c, w)| format!("{c}={w}")).collect();
        f.write_str(&parts.join(","))
    }
}

impl FromStr for ClassMix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut mix: Vec<(DeviceClass, u32)> = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = match part.split_once('=') {
                Some((name, w)) => {
                    let w: u32 = w.trim().parse().map_err(|_| {
                        format!("{part:?}: the weight must be a whole number, as in camera=2")
                    })?;
                    (name.trim(), w)
                }
                None => (part, 1),
            };
            let class: DeviceClass = name.parse()?;
            if mix.iter().any(|(c, _)| *c == class) {
                return Err(format!("{class} is given twice"));
            }
            if weight > 0 {
                mix.push((class, weight));
            }
        }
        if mix.is_empty() {
            return Err(format!(
                "no device class with a weight above 0; choose from {}",
                names(&DeviceClass::ALL)
            ));
        }
        Ok(ClassMix(mix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AWS workshop's threshold: 35,000 bytes out per 5 minutes.
    const LAB_THRESHOLD: f64 = 35_000.0;

    #[test]
    fn no_class_can_reach_the_lab_threshold_in_a_benign_period() {
        for class in DeviceClass::ALL {
            let max = class.profile().max_benign_bytes_out(300.0);
            assert!(max <= LAB_THRESHOLD - 10_000.0, "{class}: {max}");
        }
    }

    #[test]
    fn the_daily_cycle_peaks_at_the_peak_hour() {
        for class in DeviceClass::ALL {
            let p = class.profile();
            let at = |h: f64| p.daily_factor(h);
            assert!((at(p.peak_hour) - (1.0 + p.daily_amplitude)).abs() < 1e-9, "{class}");
            assert!((at(p.peak_hour + 12.0) - (1.0 - p.daily_amplitude)).abs() < 1e-9, "{class}");
            for h in 0..24 {
                assert!(at(f64::from(h)) > 0.0, "{class} at {h}h");
            }
        }
    }

    #[test]
    fn class_names_round_trip() {
        for class in DeviceClass::ALL {
            assert_eq!(class.as_str().parse::<DeviceClass>(), Ok(class));
        }
        assert_eq!(
            "toaster".parse::<DeviceClass>().unwrap_err(),
            "unknown device class \"toaster\"; expected one of meter, camera, gateway, kiosk"
        );
    }

    #[test]
    fn mixes_parse_with_and_without_weights() {
        let check = |input: &str, expect: Result<&str, &str>| {
            let got = input.parse::<ClassMix>().map(|m| m.to_string());
            assert_eq!(got.as_deref().map_err(String::as_str), expect, "{input:?}");
        };
        check("meter,camera", Ok("meter=1,camera=1"));
        check(" kiosk = 3 , gateway ", Ok("kiosk=3,gateway=1"));
        check("meter=0,camera=2", Ok("camera=2"));
        check("meter=6,camera=2,gateway=1,kiosk=1", Ok("meter=6,camera=2,gateway=1,kiosk=1"));
        check("meter,meter=2", Err("meter is given twice"));
        check("camera=x", Err("\"camera=x\": the weight must be a whole number, as in camera=2"));
        check("", Err("no device class with a weight above 0; choose from meter, camera, gateway, kiosk"));
        check(
            "meter=0",
            Err("no device class with a weight above 0; choose from meter, camera, gateway, kiosk"),
        );
        check(
            "fridge",
            Err("unknown device class \"fridge\"; expected one of meter, camera, gateway, kiosk"),
        );
        assert_eq!(ClassMix::default().to_string(), "meter=5,camera=2,gateway=1,kiosk=2");
    }

    #[test]
    fn a_mix_picks_classes_in_proportion_to_their_weights() {
        let mix: ClassMix = "meter=3,camera=1".parse().unwrap();
        let n = 10_000;
        let meters = (0..n).filter(|i| mix.pick(f64::from(*i) / f64::from(n)) == DeviceClass::Meter).count();
        assert_eq!(meters, 7_500);
        assert_eq!(mix.pick(0.999_999_999), DeviceClass::Camera);
        assert_eq!(ClassMix::only(DeviceClass::Kiosk).pick(0.5), DeviceClass::Kiosk);
    }
}
