//! Interface traffic counters (`/proc/net/dev`) and the per-report deltas of `network_stats`.
//!
//! Device Defender wants the traffic *since the previous report* (spec §1.8), while the kernel
//! keeps ever-growing counters per interface. This module owns the arithmetic between the two:
//! counters that wrap at 32 bits, counters that restart at zero, and interfaces that come and go
//! between two reports.

use std::collections::BTreeMap;

use warden_wire::NetworkStats;

/// The name of the loopback interface, whose traffic never leaves the host.
///
/// Only the name is checked: Linux always calls it `lo`, and a name test needs no extra
/// system call. Other virtual interfaces (bridges, veth pairs, tunnels) are counted like physical
/// ones, because telling them apart reliably would need netlink and is not worth it on a device.
pub const LOOPBACK: &str = "lo";

/// The four traffic counters of one interface, as the kernel reports them, or the traffic of a
/// period when it is the result of [`Counters::since`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub packets_in: u64,
    pub packets_out: u64,
}

/// Width of the counters that wrap: drivers on 32-bit kernels keep `unsigned long` statistics,
/// which `/proc/net/dev` prints as they are.
const WRAP: u64 = 1 << 32;

impl Counters {
    /// The traffic counted between an earlier reading `prev` of the same interface and `self`.
    ///
    /// Each counter may have gone up (the delta is the difference) or down. Going down has two
    /// causes that the numbers alone cannot always tell apart, so the rule is:
    ///
    /// - A 32-bit wrap: both readings fit in 32 bits and the wrapped delta
    ///   (`cur + 2^32 - prev`) is below 2^31. Half the range is the usual serial-number bound
    ///   (RFC 1982): a counter that really wrapped moved forward by less than half its range,
    ///   2 GiB in one report interval, which is far beyond what these devices send.
    /// - Otherwise the interface was reset (driver reload, link recreated under the same name),
    ///   and its counters restarted from zero: the delta of *every* counter is then its current
    ///   value. Deciding per interface rather than per counter matters: after a reset, a byte
    ///   counter that was high may look like a plausible wrap, but the packet counter, which
    ///   rarely gets anywhere near 2^31, gives the reset away, and all four are then counted
    ///   from zero consistently.
    ///
    /// A reset followed by more traffic than before is indistinguishable from normal growth; the
    /// delta then under-counts, which is the safe direction for an anomaly detector.
    pub fn since(&self, prev: &Counters) -> Counters {
        let steps = [
            step(prev.bytes_in, self.bytes_in),
            step(prev.bytes_out, self.bytes_out),
            step(prev.packets_in, self.packets_in),
            step(prev.packets_out, self.packets_out),
        ];
        match steps {
            [Some(bytes_in), Some(bytes_out), Some(packets_in), Some(packets_out)] => {
                Counters { bytes_in, bytes_out, packets_in, packets_out }
            }
            _ => *self,
        }
    }

    fn saturating_add(self, other: Counters) -> Counters {
        Counters {
            bytes_in: self.bytes_in.saturating_add(other.bytes_in),
            bytes_out: self.bytes_out.saturating_add(other.bytes_out),
            packets_in: self.packets_in.saturating_add(other.packets_in),
            packets_out: self.packets_out.saturating_add(other.packets_out),
        }
    }
}

/// How far one counter moved from `prev` to `cur`, or `None` when it went down in a way that is
/// not a plausible 32-bit wrap (see [`Counters::since`]).
fn step(prev: u64, cur: u64) -> Option<u64> {
    if cur >= prev {
        return Some(cur - prev);
    }
    // Here cur < prev, so prev < WRAP implies both fit in 32 bits.
    if prev < WRAP {
        let wrapped = WRAP - prev + cur;
        if wrapped < WRAP / 2 {
            return Some(wrapped);
        }
    }
    None
}

/// The `network_stats` block: traffic of all interfaces between two samples.
///
/// An interface that appeared since the baseline contributes its whole counter (it started from
/// zero within the period); one that vanished contributes nothing, since its last traffic cannot
/// be read any more. Loopback is left out unless `include_loopback`: its traffic never leaves the
/// device, and local chatter (the agent talking to a local broker, say) would otherwise drown the
/// numbers a security profile is about.
pub(crate) fn network_stats(
    current: &BTreeMap<String, Counters>,
    baseline: &BTreeMap<String, Counters>,
    include_loopback: bool,
) -> NetworkStats {
    let total = current
        .iter()
        .filter(|(name, _)| include_loopback || name.as_str() != LOOPBACK)
        .map(|(name, cur)| match baseline.get(name) {
            Some(prev) => cur.since(prev),
            None => *cur,
        })
        .fold(Counters::default(), Counters::saturating_add);
    NetworkStats {
        bytes_in: Some(total.bytes_in),
        bytes_out: Some(total.bytes_out),
        packets_in: Some(total.packets_in),
        packets_out: Some(total.packets_out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(bytes_in: u64, bytes_out: u64, packets_in: u64, packets_out: u64) -> Counters {
        Counters { bytes_in, bytes_out, packets_in, packets_out }
    }

    #[track_caller]
    fn check(prev: Counters, cur: Counters, expect: Counters) {
        assert_eq!(cur.since(&prev), expect, "from {prev:?} to {cur:?}");
    }

    #[test]
    fn growth_is_the_difference() {
        check(c(0, 0, 0, 0), c(0, 0, 0, 0), c(0, 0, 0, 0));
        check(c(100, 200, 3, 4), c(150, 260, 5, 9), c(50, 60, 2, 5));
        check(c(10, 10, 1, 1), c(10, 10, 1, 1), c(0, 0, 0, 0));
        // 64-bit counters far beyond 32 bits grow normally.
        check(c(1 << 40, 7 << 33, 9, 9), c((1 << 40) + 5, 7 << 33, 10, 9), c(5, 0, 1, 0));
        check(c(u64::MAX - 1, 0, 0, 0), c(u64::MAX, 0, 0, 0), c(1, 0, 0, 0));
    }

    #[test]
    fn a_32_bit_wrap_counts_across_the_wrap() {
        let near = u32::MAX as u64 - 99;
        check(c(near, 500, 10, 10), c(50, 600, 20, 11), c(150, 100, 10, 1));
        // At the top of the 32-bit range to exactly zero.
        check(c(u32::MAX as u64, 0, 0, 0), c(0, 0, 0, 0), c(1, 0, 0, 0));
        // Both directions and packets wrapping together.
        check(c(near, near, near, near), c(0, 1, 2, 3), c(100, 101, 102, 103));
        // The largest plausible wrap is just below 2^31.
        let top = u32::MAX as u64;
        check(c(top, 0, 0, 0), c((1 << 31) - 2, 0, 0, 0), c((1 << 31) - 1, 0, 0, 0));
        check(c((1 << 31) + 1, 0, 5, 5), c(0, 0, 6, 6), c((1 << 31) - 1, 0, 1, 1));
    }

    #[test]
    fn a_reset_counts_from_zero_for_the_whole_interface() {
        // A drop from a low value cannot be a wrap.
        check(c(5000, 8000, 50, 60), c(100, 9000, 2, 70), c(100, 9000, 2, 70));
        // Exactly half the range is not a plausible wrap.
        check(c(u32::MAX as u64, 0, 0, 0), c((1 << 31) - 1, 0, 0, 0), c((1 << 31) - 1, 0, 0, 0));
        check(c(1 << 31, 0, 0, 0), c(0, 0, 0, 0), c(0, 0, 0, 0));
        // The byte counter alone would pass for a wrap; the packet counter gives the reset away,
        // and the whole interface is counted from zero.
        let high = 3_500_000_000;
        check(c(high, high, 2_500_000, 2_400_000), c(5000, 4000, 40, 30), c(5000, 4000, 40, 30));
        // A counter that was ever beyond 32 bits is 64-bit: any drop is a reset.
        check(c((1 << 32) + 10, 0, 0, 0), c(5, 0, 0, 0), c(5, 0, 0, 0));
        check(c(u64::MAX, 1, 1, 1), c(0, 2, 2, 2), c(0, 2, 2, 2));
    }

    fn table(entries: &[(&str, Counters)]) -> BTreeMap<String, Counters> {
        entries.iter().map(|(name, c)| (name.to_string(), *c)).collect()
    }

    #[test]
    fn stats_sum_interfaces_that_appear_vanish_and_skip_loopback() {
        let baseline = table(&[
            ("lo", c(1000, 1000, 10, 10)),
            ("eth0", c(100, 100, 1, 1)),
            ("usb0", c(7777, 7777, 77, 77)),
        ]);
        let current =
            table(&[("lo", c(5000, 5000, 50, 50)), ("eth0", c(300, 150, 4, 2)), ("wwan0", c(40, 30, 2, 1))]);
        let stats = network_stats(&current, &baseline, false);
        assert_eq!(
            stats,
            NetworkStats {
                bytes_in: Some(200 + 40),
                bytes_out: Some(50 + 30),
                packets_in: Some(3 + 2),
                packets_out: Some(1 + 1),
            }
        );
        let with_lo = network_stats(&current, &baseline, true);
        assert_eq!(with_lo.bytes_in, Some(200 + 40 + 4000));
        assert_eq!(with_lo.packets_out, Some(1 + 1 + 40));
    }

    #[test]
    fn stats_of_no_interfaces_are_zero_not_absent() {
        let stats = network_stats(&BTreeMap::new(), &BTreeMap::new(), false);
        assert_eq!(
            stats,
            NetworkStats { bytes_in: Some(0), bytes_out: Some(0), packets_in: Some(0), packets_out: Some(0) }
        );
    }

    #[test]
    fn sums_saturate_instead_of_overflowing() {
        let current = table(&[("a", c(u64::MAX, 0, 0, 0)), ("b", c(u64::MAX, 0, 0, 0))]);
        let stats = network_stats(&current, &BTreeMap::new(), false);
        assert_eq!(stats.bytes_in, Some(u64::MAX));
    }
}
