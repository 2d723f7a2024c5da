//! Deterministic randomness: every random draw of the simulation comes from a stream keyed by
//! the fleet's seed and by what the draw is for (a device, a report, a telemetry reading).
//!
//! Keyed streams rather than one generator per device: whether a device misbehaves, is calmed,
//! or misses a report while offline never shifts the draws of any other report, so the same
//! seed gives the same traffic report for report. The generator is SplitMix64 (Steele, Lea and
//! Flood, 2014), written out here rather than borrowed from a crate so that a seed means the
//! same fleet in every version of the simulator.

/// What a stream of draws is for; part of its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum Stream {
    /// A device's fixed traits: class, time zone, ports, endpoints, report phase.
    Traits = 1,
    /// The benign traffic of one report.
    Traffic = 2,
    /// The effects of misbehaviours on one report.
    Misbehaviour = 3,
    /// One application telemetry reading.
    Telemetry = 4,
}

/// A SplitMix64 generator.
#[derive(Debug, Clone)]
pub struct Rng(u64);

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// SplitMix64's output function: a bijection that spreads every input bit over the output.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Rng {
    /// The stream for `stream` of device `device`, draw set `n` (a report number, a reading).
    pub fn keyed(seed: u64, stream: Stream, device: u64, n: u64) -> Rng {
        let mut key = mix(seed ^ GOLDEN);
        for part in [stream as u64, device, n] {
            key = mix(key ^ part.wrapping_add(GOLDEN));
        }
        Rng(key)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix(self.0)
    }

    /// Uniform in `[0, 1)`, with 53 bits.
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[lo, hi)`.
    pub fn range_f64(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }

    /// Uniform in `lo..=hi` (`lo` when `hi < lo`).
    pub fn range_u64(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        // Lemire's multiply-shift: bias below 2^-64 per draw, far below anything observable.
        let span = u128::from(hi - lo) + 1;
        lo + ((u128::from(self.next_u64()) * span) >> 64) as u64
    }

    /// `true` with probability `p` (clamped to `[0, 1]`).
    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    /// Noise around 1: a triangular draw in `[1 - spread, 1 + spread]`. Bounded on purpose, so
    /// that a class's largest benign volume is known (see `DeviceClass::max_benign_bytes_out`).
    pub fn noise(&mut self, spread: f64) -> f64 {
        1.0 + spread * (self.f64() - self.f64())
    }

    /// One item of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.range_u64(0, items.len() as u64 - 1) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_independent() {
        let draws = |seed, stream, device, n| {
            let mut r = Rng::keyed(seed, stream, device, n);
            (0..4).map(|_| r.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(draws(7, Stream::Traffic, 3, 10), draws(7, Stream::Traffic, 3, 10));
        let base = draws(7, Stream::Traffic, 3, 10);
        for other in [
            draws(8, Stream::Traffic, 3, 10),
            draws(7, Stream::Telemetry, 3, 10),
            draws(7, Stream::Traffic, 4, 10),
            draws(7, Stream::Traffic, 3, 11),
            // Swapping device and draw number must not give the same stream.
            draws(7, Stream::Traffic, 10, 3),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn the_generator_is_splitmix64() {
        // Reference outputs of SplitMix64 seeded with 1234567 (from the published C code), so
        // that a seed keeps meaning the same fleet.
        let mut r = Rng(1_234_567);
        let out: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
        assert_eq!(out, [6_457_827_717_110_365_317, 3_203_168_211_198_807_973, 9_817_491_932_198_370_423]);
    }

    #[test]
    fn ranges_stay_in_bounds() {
        let mut r = Rng::keyed(1, Stream::Traits, 0, 0);
        for _ in 0..10_000 {
            let x = r.range_u64(3, 5);
            assert!((3..=5).contains(&x));
            let f = r.f64();
            assert!((0.0..1.0).contains(&f));
            let n = r.noise(0.2);
            assert!((0.8..=1.2).contains(&n));
        }
        assert_eq!(r.range_u64(9, 9), 9);
        assert_eq!(r.range_u64(9, 2), 9);
        let _whole_range = r.range_u64(0, u64::MAX);
    }

    #[test]
    fn ranges_cover_every_value() {
        let mut r = Rng::keyed(2, Stream::Traits, 0, 0);
        let mut seen = [0u32; 6];
        for _ in 0..6_000 {
            seen[r.range_u64(0, 5) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
    }
}
