//! The memory audit behind the budget "≤ 1 KB detection state per device with 10 behaviors"
//! (DESIGN.md): the heap the engine holds per monitored thing, as [`Engine::state_size`]
//! computes it from the sizes of its parts (map table share, names, profile and behavior
//! states, counter windows, alarms). Run with `--nocapture` to see the figures:
//! `cargo test -p warden-detect --test it state_size -- --nocapture`.
//!
//! (A counting global allocator would measure instead of compute, but it needs `unsafe`, which
//! the workspace forbids.)

use crate::support::{Counter, PERIOD_MS, behavior, criteria, dp, profile_of};
use warden_detect::{Datapoint, Engine, MetricValue, aws};

/// What the allocator itself adds to each allocation (glibc malloc: 8 to 16 bytes).
const ALLOCATOR_OVERHEAD: f64 = 16.0;

const THINGS: usize = 1000;

fn counter(name: &str, metric: &str, duration: i64) -> aws::Behavior {
    let mut c = criteria("less-than-equals", MetricValue::count(1_000_000_000));
    c.duration_seconds = Some(duration);
    behavior(name, metric, c)
}

fn gauge(name: &str, metric: &str) -> aws::Behavior {
    behavior(name, metric, criteria("less-than-equals", MetricValue::count(1000)))
}

/// Ten behaviors as a typical fleet profile mixes them: device and cloud counters over one and
/// three periods, gauges, sets and a custom number.
fn typical() -> Vec<aws::Behavior> {
    vec![
        counter("BytesOut", "aws:all-bytes-out", 300),
        counter("BytesIn", "aws:all-bytes-in", 900),
        counter("PacketsOut", "aws:all-packets-out", 300),
        counter("MessagesSent", "aws:num-messages-sent", 300),
        counter("AuthFailures", "aws:num-authorization-failures", 900),
        gauge("TcpPorts", "aws:num-listening-tcp-ports"),
        gauge("Connections", "aws:num-established-tcp-connections"),
        behavior(
            "Listeners",
            "aws:listening-tcp-ports",
            criteria("in-port-set", MetricValue::ports(vec![22, 443, 8883])),
        ),
        behavior(
            "Destinations",
            "aws:destination-ip-addresses",
            criteria("not-in-cidr-set", MetricValue::cidrs(["203.0.113.0/24"])),
        ),
        behavior("Battery", "battery_pct", criteria("greater-than", MetricValue::number(5.0))),
    ]
}

/// The most a profile of ten behaviors can ask for: ten counters over 3600 s.
fn worst() -> Vec<aws::Behavior> {
    [
        "aws:all-bytes-out",
        "aws:all-bytes-in",
        "aws:all-packets-out",
        "aws:all-packets-in",
        "aws:num-messages-sent",
        "aws:num-messages-received",
        "aws:num-authorization-failures",
        "aws:num-connection-attempts",
        "aws:num-disconnects",
        "aws:all-bytes-out",
    ]
    .iter()
    .enumerate()
    .map(|(i, m)| counter(&format!("B{i}"), m, 3600))
    .collect()
}

/// One report's worth of datapoints for every behavior of the profile.
fn datapoints(t: i64, value: u64) -> Vec<Datapoint> {
    let count = |m: &str| dp(m, t, MetricValue::count(value));
    vec![
        count("aws:all-bytes-out"),
        count("aws:all-bytes-in"),
        count("aws:all-packets-out"),
        count("aws:all-packets-in"),
        count("aws:num-messages-sent"),
        count("aws:num-messages-received"),
        count("aws:num-authorization-failures"),
        count("aws:num-connection-attempts"),
        count("aws:num-disconnects"),
        count("aws:num-listening-tcp-ports"),
        count("aws:num-established-tcp-connections"),
        dp("aws:listening-tcp-ports", t, MetricValue::ports(vec![22])),
        dp("aws:destination-ip-addresses", t, MetricValue::cidrs(["198.51.100.7"])),
        dp("battery_pct", t, MetricValue::number(50.0)),
    ]
}

/// Heap bytes and allocations per thing after `THINGS` things with names like
/// `sensor-000123` sent two reports of value `value`.
fn per_thing(behaviors: Vec<aws::Behavior>, value: u64) -> (f64, f64) {
    let mut engine = Engine::default();
    engine.put_profile(profile_of("P", behaviors).unwrap(), 0);
    let mut ids = Counter::default();
    let batches = [datapoints(PERIOD_MS, value), datapoints(2 * PERIOD_MS, value)];
    for i in 0..THINGS {
        let name = format!("sensor-{i:06}");
        for batch in &batches {
            engine.observe(&name, &["P"], batch, 0, &mut ids);
        }
    }
    let size = engine.state_size();
    assert_eq!(size.things, THINGS);
    let n = THINGS as f64;
    (size.bytes as f64 / n, size.allocations as f64 / n)
}

#[test]
fn detection_state_per_device() {
    let (typical_bytes, typical_blocks) = per_thing(typical(), 1);
    let (alarm_bytes, alarm_blocks) = per_thing(typical(), 2_000_000_000);
    let (worst_bytes, worst_blocks) = per_thing(worst(), 1);
    eprintln!("detection state per device, 10 behaviors, {THINGS} devices:");
    let with_overhead = |bytes: f64, blocks: f64| bytes + ALLOCATOR_OVERHEAD * blocks;
    for (what, bytes, blocks) in [
        ("typical mix, no alarm", typical_bytes, typical_blocks),
        ("typical mix, 7 alarms active", alarm_bytes, alarm_blocks),
        ("10 counters over 3600 s", worst_bytes, worst_blocks),
    ] {
        eprintln!(
            "  {what:30} {bytes:6.0} B in {blocks:4.1} allocations, ~{:.0} B with allocator overhead",
            with_overhead(bytes, blocks)
        );
    }
    // The budget holds for the typical profile, allocator overhead included.
    assert!(
        with_overhead(typical_bytes, typical_blocks) <= 1024.0,
        "{typical_bytes} B in {typical_blocks} blocks"
    );
}
