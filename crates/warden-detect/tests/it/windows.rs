//! Counter windows (`durationSeconds`), partial windows, gaps, and the latest-value rule for
//! gauges and sets.

use std::time::Duration;

use crate::support::{Counter, PERIOD_MS, behavior, criteria, dp, dp_dim, profile_of};
use warden_detect::{
    DimensionOperator, Engine, EngineConfig, MetricDimension, MetricValue, ViolationEventKind, aws,
};

const OUT: &str = "aws:all-bytes-out";

fn bytes_out(op: &str, threshold: u64, duration: Option<i64>) -> aws::Behavior {
    let mut c = criteria(op, MetricValue::count(threshold));
    c.duration_seconds = duration;
    behavior("B", OUT, c)
}

/// Feeds `(timestamp_ms, amount)` datapoints one by one; returns, per datapoint, the event it
/// caused as `(kind, metric value)`, or `None`.
fn run(
    engine_config: EngineConfig,
    b: aws::Behavior,
    points: &[(i64, u64)],
) -> Vec<Option<(&'static str, u64)>> {
    let mut engine = Engine::new(engine_config);
    engine.put_profile(profile_of("P", vec![b]).unwrap(), 0);
    let mut ids = Counter::default();
    points
        .iter()
        .map(|&(t, amount)| {
            let events =
                engine.observe("dev", &["P"], &[dp(OUT, t, MetricValue::count(amount))], t, &mut ids);
            assert!(events.len() <= 1, "{events:?}");
            events.first().map(|e| (e.kind.as_str(), e.metric_value.count.unwrap()))
        })
        .collect()
}

/// Regularly spaced datapoints, one per period.
fn every_period(amounts: &[u64]) -> Vec<(i64, u64)> {
    amounts.iter().enumerate().map(|(i, a)| ((i as i64 + 1) * PERIOD_MS, *a)).collect()
}

const ALARM: &str = "in-alarm";
const CLEAR: &str = "alarm-cleared";

#[test]
fn one_period_window_judges_each_datapoint_alone() {
    let got = run(
        EngineConfig::default(),
        bytes_out("less-than-equals", 100, None),
        &every_period(&[100, 101, 60, 60]),
    );
    assert_eq!(got, [None, Some((ALARM, 101)), Some((CLEAR, 60)), None]);
    let got = run(
        EngineConfig::default(),
        bytes_out("less-than-equals", 100, Some(300)),
        &every_period(&[100, 101, 60]),
    );
    assert_eq!(got, [None, Some((ALARM, 101)), Some((CLEAR, 60))]);
}

#[test]
fn counters_are_summed_over_the_window() {
    // 900 s = 3 periods: the value is the sum of the datapoint and the two periods before it.
    let got = run(
        EngineConfig::default(),
        bytes_out("less-than-equals", 100, Some(900)),
        &every_period(&[40, 40, 20, 41, 10, 10, 80, 0, 0]),
    );
    // Sums: 40 (partial), 80 (partial), 100, 101, 71, 61, 100, 90, 80.
    assert_eq!(got, [None, None, None, Some((ALARM, 101)), Some((CLEAR, 71)), None, None, None, None]);

    // 3600 s = 12 periods.
    let mut amounts = vec![10; 12];
    amounts.push(11);
    amounts.push(0);
    let got = run(EngineConfig::default(), bytes_out("less-than", 121, Some(3600)), &every_period(&amounts));
    // Sum after 12 = 120 (complete, conforms), after 13 = 121 (violates), after 14 = 111.
    assert_eq!(got[11], None);
    assert_eq!(got[12], Some((ALARM, 121)));
    assert_eq!(got[13], Some((CLEAR, 111)));
}

#[test]
fn partial_windows_of_an_upper_bound() {
    // 150 in the first period exceeds the bound whatever came before: alarm at once. The sum
    // stays 150 until the 150 leaves the window, and the window is complete from the third
    // datapoint on.
    let got = run(
        EngineConfig::default(),
        bytes_out("less-than-equals", 100, Some(900)),
        &every_period(&[150, 0, 0, 0]),
    );
    assert_eq!(got, [Some((ALARM, 150)), None, None, Some((CLEAR, 0))]);
}

#[test]
fn partial_windows_of_a_lower_bound() {
    // "At least 100 bytes per 15 minutes is normal": a partial sum that is already 100 conforms
    // for sure; a smaller one may still grow, so it is not judged until the window is complete.
    let got = run(
        EngineConfig::default(),
        bytes_out("greater-than-equals", 100, Some(900)),
        &every_period(&[10, 20, 30, 0, 0]),
    );
    // Sums: 10 (partial, skipped), 30 (skipped), 60 (complete: violates), 50, 30.
    assert_eq!(got, [None, None, Some((ALARM, 60)), None, None]);
    let got = run(
        EngineConfig::default(),
        bytes_out("greater-than-equals", 100, Some(900)),
        &every_period(&[100, 0, 0, 0]),
    );
    // 100 conforms at once; then 100, 100, and 0 once the 100 has left the window.
    assert_eq!(got, [None, None, None, Some((ALARM, 0))]);
}

#[test]
fn skipped_partial_datapoints_do_not_break_a_run() {
    // consecutiveDatapointsToAlarm 2 on a lower bound: the skipped partial datapoints neither
    // count nor reset the run.
    let mut b = bytes_out("greater-than", 50, Some(900));
    b.criteria.as_mut().unwrap().consecutive_datapoints_to_alarm = Some(2);
    let got = run(EngineConfig::default(), b, &every_period(&[10, 10, 10, 10]));
    assert_eq!(got, [None, None, None, Some((ALARM, 30))]);
}

#[test]
fn periods_without_datapoints_count_as_zero() {
    // 900 s window; datapoints in periods 1, 2 and 4 (period 3 missing): the window of period 4
    // is periods 2, 3, 4 = 50 + 0 + 60.
    let cfg = EngineConfig::default();
    let p = PERIOD_MS;
    let got =
        run(cfg.clone(), bytes_out("less-than-equals", 100, Some(900)), &[(p, 30), (2 * p, 50), (4 * p, 60)]);
    assert_eq!(got, [None, None, Some((ALARM, 110))]);
    // A gap longer than the window leaves only the new datapoint, and the window is complete.
    let got = run(cfg.clone(), bytes_out("greater-than", 100, Some(900)), &[(p, 500), (10 * p, 50)]);
    assert_eq!(got, [None, Some((ALARM, 50))]);
    // Reports a little late or early stay in consecutive periods (rounding to whole periods).
    let got =
        run(cfg.clone(), bytes_out("less-than-equals", 100, Some(600)), &[(p, 60), (p + p * 14 / 10, 50)]);
    assert_eq!(got, [None, Some((ALARM, 110))]);
    let got = run(cfg, bytes_out("less-than-equals", 100, Some(600)), &[(p, 60), (p + p * 16 / 10, 50)]);
    assert_eq!(got, [None, None], "1.6 periods later is two periods later: 0 + 50");
}

#[test]
fn durations_scale_to_the_configured_period() {
    // A demo with 2 s periods: 600 s means two periods of 2 s.
    let cfg = EngineConfig { period: Duration::from_secs(2), ..EngineConfig::default() };
    let got = run(
        cfg,
        bytes_out("less-than-equals", 100, Some(600)),
        &[(2_000, 60), (4_000, 50), (6_000, 10), (10_000, 10)],
    );
    assert_eq!(got, [None, Some((ALARM, 110)), Some((CLEAR, 60)), None]);
}

#[test]
fn old_and_repeated_datapoints_are_ignored() {
    let p = PERIOD_MS;
    let got = run(
        EngineConfig::default(),
        bytes_out("less-than-equals", 100, Some(600)),
        &[(2 * p, 60), (2 * p, 60), (p, 1000), (3 * p, 30)],
    );
    // The repeated and the older datapoint change nothing: 60 + 30 conforms.
    assert_eq!(got, [None, None, None, None]);
}

#[test]
fn sums_saturate() {
    let got = run(
        EngineConfig::default(),
        bytes_out("less-than-equals", u64::MAX - 1, Some(600)),
        &every_period(&[u64::MAX, u64::MAX, 0]),
    );
    assert_eq!(got, [Some((ALARM, u64::MAX)), None, None]);
}

#[test]
fn gauges_and_sets_judge_the_latest_datapoint() {
    let mut c = criteria("less-than-equals", MetricValue::count(5));
    c.duration_seconds = Some(900);
    let mut engine = Engine::default();
    engine.put_profile(
        profile_of(
            "P",
            vec![
                behavior("Conns", "aws:num-established-tcp-connections", c),
                behavior(
                    "Ports",
                    "aws:listening-tcp-ports",
                    criteria("in-port-set", MetricValue::ports(vec![22])),
                ),
            ],
        )
        .unwrap(),
        0,
    );
    let mut ids = Counter::default();
    let mut step = |t: i64, conns: u64, ports: &[u16]| {
        let points = [
            dp("aws:num-established-tcp-connections", t, MetricValue::count(conns)),
            dp("aws:listening-tcp-ports", t, MetricValue::ports(ports.to_vec())),
        ];
        engine
            .observe("dev", &["P"], &points, t, &mut ids)
            .iter()
            .map(|e| format!("{} {}", e.behavior, e.kind))
            .collect::<Vec<_>>()
    };
    assert_eq!(step(PERIOD_MS, 10, &[22, 23]), ["Conns in-alarm", "Ports in-alarm"]);
    // Not a sum: 0 connections now conforms although 10 + 0 would not.
    assert_eq!(step(2 * PERIOD_MS, 0, &[22]), ["Conns alarm-cleared", "Ports alarm-cleared"]);
    assert_eq!(step(3 * PERIOD_MS, 5, &[]), Vec::<String>::new());
}

#[test]
fn an_empty_list_clears() {
    let mut engine = Engine::default();
    engine.put_profile(
        profile_of(
            "P",
            vec![behavior(
                "Dest",
                "aws:destination-ip-addresses",
                criteria("not-in-cidr-set", MetricValue::cidrs(["203.0.113.0/24"])),
            )],
        )
        .unwrap(),
        0,
    );
    let mut ids = Counter::default();
    let m = "aws:destination-ip-addresses";
    let e = engine.observe("dev", &["P"], &[dp(m, 1, MetricValue::cidrs(["203.0.113.5"]))], 1, &mut ids);
    assert_eq!(e[0].kind, ViolationEventKind::InAlarm);
    let e = engine.observe("dev", &["P"], &[dp(m, 2, MetricValue::cidrs(Vec::<String>::new()))], 2, &mut ids);
    assert_eq!(e[0].kind, ViolationEventKind::AlarmCleared);
    assert_eq!(e[0].metric_value, MetricValue::cidrs(Vec::<String>::new()));
}

#[test]
fn dimensions_select_their_own_series() {
    let with = |name: &str, op: Option<&str>| {
        let mut b = behavior(name, "aws:num-messages-sent", criteria("less-than", MetricValue::count(10)));
        b.metric_dimension = op
            .map(|op| aws::MetricDimension { dimension_name: "telemetry".into(), operator: Some(op.into()) });
        b
    };
    let behaviors = vec![with("All", None), with("In", Some("IN")), with("NotIn", Some("NOT_IN"))];
    let mut engine = Engine::default();
    engine.put_profile(profile_of("P", behaviors).unwrap(), 0);
    let mut ids = Counter::default();
    let telemetry_in = MetricDimension { name: "telemetry".into(), operator: DimensionOperator::In };
    let telemetry_not_in = MetricDimension { name: "telemetry".into(), operator: DimensionOperator::NotIn };
    let m = "aws:num-messages-sent";
    let points = [
        dp(m, PERIOD_MS, MetricValue::count(50)),
        dp_dim(m, &telemetry_in, PERIOD_MS, MetricValue::count(40)),
        dp_dim(m, &telemetry_not_in, PERIOD_MS, MetricValue::count(10)),
    ];
    let events = engine.observe("dev", &["P"], &points, PERIOD_MS, &mut ids);
    let got: Vec<(&str, u64)> =
        events.iter().map(|e| (e.behavior.as_str(), e.metric_value.count.unwrap())).collect();
    assert_eq!(got, [("All", 50), ("In", 40), ("NotIn", 10)]);
    assert_eq!(engine.dimensioned_series(), [(m, &telemetry_in), (m, &telemetry_not_in)]);
}

#[test]
fn undivided_metrics_are_those_of_behaviors_without_a_dimension() {
    let mut sent =
        behavior("Telemetry", "aws:num-messages-sent", criteria("less-than", MetricValue::count(10)));
    sent.metric_dimension =
        Some(aws::MetricDimension { dimension_name: "telemetry".into(), operator: Some("IN".into()) });
    let out = |name: &str, n: u64| {
        behavior(name, "aws:all-bytes-out", criteria("less-than", MetricValue::count(n)))
    };
    let mut engine = Engine::default();
    assert!(engine.undivided_metrics().is_empty());
    engine.put_profile(profile_of("A", vec![sent, out("Out", 35_000)]).unwrap(), 0);
    engine.put_profile(profile_of("B", vec![out("OutToo", 1_000)]).unwrap(), 0);
    // Each metric once; the dimensioned behavior's metric is not one of a report's series.
    assert_eq!(engine.undivided_metrics(), ["aws:all-bytes-out"]);
}
