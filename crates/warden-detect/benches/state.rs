//! Detection state per device and evaluation cost: `cargo bench -p warden-detect --bench state`.
//!
//! 10,000 things (`THINGS` overrides) are monitored by one profile of ten device-side behaviors:
//! counters with windows of one to twelve periods, gauges and sets, as a fleet's baseline
//! profile would have. Each thing gets 24 reports (two hours at 300 s), enough to fill every
//! window; every 50th thing violates. Prints the engine's own account of its per-thing heap
//! (`Engine::state_size`), the process's resident memory growth (allocator overhead included),
//! and the time per evaluated report.

use std::time::Instant;

use warden_detect::{Datapoint, Definitions, Engine, EngineConfig, MetricValue, ViolationId, aws, compile};

fn behavior(
    name: &str,
    metric: &str,
    operator: &str,
    value: MetricValue,
    duration: Option<i64>,
) -> aws::Behavior {
    aws::Behavior {
        name: name.into(),
        metric: Some(metric.into()),
        criteria: Some(aws::BehaviorCriteria {
            comparison_operator: Some(operator.into()),
            value: Some(value),
            duration_seconds: duration,
            consecutive_datapoints_to_alarm: Some(2),
            consecutive_datapoints_to_clear: Some(2),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn profile() -> aws::SecurityProfile {
    let count = MetricValue::count;
    aws::SecurityProfile {
        name: "FleetBaseline".into(),
        behaviors: vec![
            behavior("BytesOut", "aws:all-bytes-out", "less-than-equals", count(35_000), Some(300)),
            behavior("BytesIn", "aws:all-bytes-in", "less-than-equals", count(1_000_000), Some(900)),
            behavior("PacketsOut", "aws:all-packets-out", "less-than", count(20_000), Some(3600)),
            behavior("PacketsIn", "aws:all-packets-in", "less-than", count(50_000), Some(600)),
            behavior("TcpListeners", "aws:num-listening-tcp-ports", "less-than-equals", count(4), None),
            behavior("UdpListeners", "aws:num-listening-udp-ports", "less-than-equals", count(4), None),
            behavior("Connections", "aws:num-established-tcp-connections", "less-than", count(20), None),
            behavior(
                "TcpPorts",
                "aws:listening-tcp-ports",
                "in-port-set",
                MetricValue::ports(vec![22, 443, 8883]),
                None,
            ),
            behavior(
                "UdpPorts",
                "aws:listening-udp-ports",
                "in-port-set",
                MetricValue::ports(vec![53, 123]),
                None,
            ),
            behavior(
                "Destinations",
                "aws:destination-ip-addresses",
                "in-cidr-set",
                MetricValue::cidrs(["10.0.0.0/8", "192.0.2.0/24"]),
                None,
            ),
        ],
    }
}

fn report(at_ms: i64, misbehaving: bool) -> Vec<Datapoint> {
    let point = |metric: &'static str, value: MetricValue| Datapoint {
        metric: metric.into(),
        dimension: None,
        timestamp_ms: at_ms,
        value,
    };
    let out = if misbehaving { 900_000 } else { 12_000 };
    vec![
        point("aws:all-bytes-out", MetricValue::count(out)),
        point("aws:all-bytes-in", MetricValue::count(40_000)),
        point("aws:all-packets-out", MetricValue::count(300)),
        point("aws:all-packets-in", MetricValue::count(400)),
        point("aws:num-listening-tcp-ports", MetricValue::count(2)),
        point("aws:num-listening-udp-ports", MetricValue::count(1)),
        point("aws:num-established-tcp-connections", MetricValue::count(3)),
        point("aws:listening-tcp-ports", MetricValue::ports(vec![22, 8883])),
        point("aws:listening-udp-ports", MetricValue::ports(vec![123])),
        point("aws:destination-ip-addresses", MetricValue::cidrs(["10.1.2.3"])),
    ]
}

/// Resident memory of this process, in bytes.
fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn main() {
    let things: usize = std::env::var("THINGS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let reports = 24;
    let names: Vec<String> = (0..things).map(|i| format!("device-{i:06}")).collect();
    let mut engine = Engine::new(EngineConfig::default());
    engine.put_profile(compile(&profile(), &Definitions::default()).expect("the profile compiles"), 0);
    let mut next = 0u128;
    let mut ids = || {
        next += 1;
        ViolationId::from_u128(next)
    };
    let batches: Vec<Vec<Datapoint>> =
        (0..reports).flat_map(|r| [report(r * 300_000, false), report(r * 300_000, true)]).collect();

    let rss_before = rss_bytes();
    let started = Instant::now();
    let mut events = 0;
    for r in 0..reports as usize {
        for (i, thing) in names.iter().enumerate() {
            let batch = &batches[r * 2 + usize::from(i % 50 == 0)];
            let at = batch[0].timestamp_ms;
            events += engine.observe(thing, &["FleetBaseline"], batch, at, &mut ids).len();
        }
    }
    let elapsed = started.elapsed();
    let rss_after = rss_bytes();
    let size = engine.state_size();
    let evaluations = things * reports as usize;
    println!("detection state, one profile of 10 behaviors, {things} things, {reports} reports each");
    println!(
        "  engine heap per thing      {:>8.0} B   ({} allocations per thing)",
        size.bytes as f64 / things as f64,
        size.allocations / things.max(1)
    );
    println!(
        "  process RSS growth / thing {:>8.0} B   (allocator overhead and the profile included)",
        (rss_after.saturating_sub(rss_before)) as f64 / things as f64
    );
    println!(
        "  evaluation per report      {:>8.2} us  (10 datapoints; {events} violation events)",
        elapsed.as_secs_f64() * 1e6 / evaluations as f64
    );
}
