//! The alarm state machine through the engine: consecutive datapoints, violation ids,
//! suppressed alerts, and every way an alarm is invalidated.

use std::time::Duration;

use crate::support::{Counter, PERIOD_MS, behavior, criteria, dp, engine_with, id, profile_of, summary};
use warden_detect::{
    Engine, EngineConfig, InvalidationReason, MetricValue, RestoreError, RestoredAlarm, ViolationEventKind,
    ViolationId, aws,
};

use InvalidationReason::*;
use ViolationEventKind::*;

const CONNS: &str = "aws:num-established-tcp-connections";
const DAY_MS: i64 = 24 * 3600 * 1000;

/// A gauge behavior `name`: at most 5 connections is normal.
fn conns(name: &str, to_alarm: i64, to_clear: i64) -> aws::Behavior {
    let mut c = criteria("less-than-equals", MetricValue::count(5));
    c.consecutive_datapoints_to_alarm = Some(to_alarm);
    c.consecutive_datapoints_to_clear = Some(to_clear);
    behavior(name, CONNS, c)
}

/// Feeds verdicts (`V` violating, `c` conforming), one datapoint per period, and returns the
/// event kind each one caused.
fn verdicts(
    engine: &mut Engine,
    ids: &mut Counter,
    start: i64,
    pattern: &str,
) -> Vec<Option<ViolationEventKind>> {
    pattern
        .chars()
        .enumerate()
        .map(|(i, v)| {
            let t = start + i as i64 * PERIOD_MS;
            let value = if v == 'V' { 9 } else { 1 };
            let events = engine.observe("dev", &["P"], &[dp(CONNS, t, MetricValue::count(value))], t, ids);
            assert!(events.len() <= 1);
            events.first().map(|e| e.kind)
        })
        .collect()
}

#[test]
fn alarm_after_m_consecutive_violations() {
    let mut engine = engine_with(vec![conns("B", 3, 1)]);
    let got = verdicts(&mut engine, &mut Counter::default(), PERIOD_MS, "VVcVVVVc");
    assert_eq!(got, [None, None, None, None, None, Some(InAlarm), None, Some(AlarmCleared)]);
}

#[test]
fn clear_after_n_consecutive_conforming() {
    let mut engine = engine_with(vec![conns("B", 1, 3)]);
    let got = verdicts(&mut engine, &mut Counter::default(), PERIOD_MS, "VccVcccc");
    assert_eq!(got, [Some(InAlarm), None, None, None, None, None, Some(AlarmCleared), None]);
}

#[test]
fn violation_ids_span_one_alarm() {
    let mut engine = engine_with(vec![conns("B", 1, 1)]);
    let mut ids = Counter::default();
    let mut events = Vec::new();
    for (i, v) in [9, 9, 1, 9, 1].into_iter().enumerate() {
        let t = (i as i64 + 1) * PERIOD_MS;
        events.extend(engine.observe("dev", &["P"], &[dp(CONNS, t, MetricValue::count(v))], t, &mut ids));
    }
    let b = || "B".to_owned();
    assert_eq!(
        summary(&events),
        [(InAlarm, b(), 1), (AlarmCleared, b(), 1), (InAlarm, b(), 2), (AlarmCleared, b(), 2)]
    );
    let first = &events[0];
    assert_eq!((first.thing.as_str(), first.profile.as_str(), first.metric.as_str()), ("dev", "P", CONNS));
    assert_eq!((first.violation_start_ms, first.at_ms), (PERIOD_MS, PERIOD_MS));
    assert_eq!(first.metric_value, MetricValue::count(9));
    let cleared = &events[1];
    assert_eq!((cleared.violation_start_ms, cleared.at_ms), (PERIOD_MS, 3 * PERIOD_MS));
    assert_eq!(cleared.metric_value, MetricValue::count(1));
}

#[test]
fn active_violations_track_the_last_violating_value() {
    let mut engine = engine_with(vec![conns("B", 1, 2)]);
    let mut ids = Counter::default();
    for (t, v) in [(1, 9), (2, 7), (3, 1)] {
        engine.observe("dev", &["P"], &[dp(CONNS, t, MetricValue::count(v))], t, &mut ids);
    }
    let active = engine.active_violations("dev");
    assert_eq!(active.len(), 1);
    let a = active[0];
    assert_eq!((a.thing, a.profile.name.as_str(), a.behavior.name.as_str()), ("dev", "P", "B"));
    assert_eq!((a.violation_id, a.violation_start_ms, a.last_violation_ms), (id(1), 1, 2));
    assert_eq!(a.last_violation_value, &MetricValue::count(7));
    engine.observe("dev", &["P"], &[dp(CONNS, 4, MetricValue::count(1))], 4, &mut ids);
    assert!(engine.active_violations("dev").is_empty());
    assert!(engine.active_violations("nobody").is_empty());
}

#[test]
fn suppressed_alerts_still_raise_violations() {
    let mut quiet = conns("Quiet", 1, 1);
    quiet.suppress_alerts = Some(true);
    let mut engine = engine_with(vec![quiet, conns("Loud", 1, 1)]);
    let mut ids = Counter::default();
    let flags = |events: &[warden_detect::ViolationEvent]| {
        events.iter().map(|e| (e.behavior.clone(), e.kind, e.suppress_alerts)).collect::<Vec<_>>()
    };
    let e = engine.observe("dev", &["P"], &[dp(CONNS, 1, MetricValue::count(9))], 1, &mut ids);
    assert_eq!(flags(&e), [("Quiet".into(), InAlarm, true), ("Loud".into(), InAlarm, false)]);
    let e = engine.observe("dev", &["P"], &[dp(CONNS, 2, MetricValue::count(1))], 2, &mut ids);
    assert_eq!(flags(&e), [("Quiet".into(), AlarmCleared, true), ("Loud".into(), AlarmCleared, false)]);
    engine.observe("dev", &["P"], &[dp(CONNS, 3, MetricValue::count(9))], 3, &mut ids);
    let e = engine.remove_thing("dev", 4);
    assert_eq!(
        flags(&e),
        [
            ("Quiet".into(), AlarmInvalidated(ThingDeleted), true),
            ("Loud".into(), AlarmInvalidated(ThingDeleted), false)
        ]
    );
}

#[test]
fn several_profiles_are_independent() {
    let mut engine = Engine::default();
    engine.put_profile(profile_of("Strict", vec![conns("B", 1, 1)]).unwrap(), 0);
    let mut lax = criteria("less-than-equals", MetricValue::count(50));
    lax.consecutive_datapoints_to_alarm = Some(1);
    engine.put_profile(profile_of("Lax", vec![behavior("B", CONNS, lax)]).unwrap(), 0);
    let mut ids = Counter::default();
    let e = engine.observe("dev", &["Strict", "Lax"], &[dp(CONNS, 1, MetricValue::count(9))], 1, &mut ids);
    assert_eq!(e.iter().map(|e| e.profile.as_str()).collect::<Vec<_>>(), ["Strict"]);
    let e = engine.observe("dev", &["Strict", "Lax"], &[dp(CONNS, 2, MetricValue::count(90))], 2, &mut ids);
    assert_eq!(e.iter().map(|e| (e.profile.as_str(), e.kind)).collect::<Vec<_>>(), [("Lax", InAlarm)]);
    let e = engine.observe("other", &["Lax"], &[dp(CONNS, 2, MetricValue::count(90))], 2, &mut ids);
    assert_eq!(e.iter().map(|e| (e.thing.as_str(), e.kind)).collect::<Vec<_>>(), [("other", InAlarm)]);
}

#[test]
fn unknown_profiles_keep_no_state() {
    let mut engine = engine_with(vec![conns("B", 1, 1)]);
    let e =
        engine.observe("dev", &["Nope"], &[dp(CONNS, 1, MetricValue::count(9))], 1, &mut Counter::default());
    assert!(e.is_empty());
    assert_eq!(engine.thing_count(), 0);
    assert_eq!(engine.state_size(), warden_detect::StateSize::default());
}

#[test]
fn silence_invalidates_after_max_silence() {
    let mut engine = engine_with(vec![conns("B", 1, 1), conns("Other", 1, 1)]);
    let mut ids = Counter::default();
    engine.observe("dev", &["P"], &[dp(CONNS, 1_000, MetricValue::count(9))], 1_000, &mut ids);
    // Exactly two days of silence is still fine; a millisecond more is not.
    assert!(engine.invalidate_stale(1_000 + 2 * DAY_MS).is_empty());
    let e = engine.invalidate_stale(1_000 + 2 * DAY_MS + 1);
    assert_eq!(
        summary(&e),
        [(AlarmInvalidated(NoData), "B".into(), 1), (AlarmInvalidated(NoData), "Other".into(), 2)]
    );
    assert_eq!(e[0].at_ms, 1_000 + 2 * DAY_MS + 1);
    assert_eq!(e[0].violation_start_ms, 1_000);
    assert_eq!(e[0].metric_value, MetricValue::count(9), "the last violating value");
    assert_eq!(engine.thing_count(), 0, "a thing silent that long is forgotten");
    // Later data starts afresh, with a new violation id.
    let e =
        engine.observe("dev", &["P"], &[dp(CONNS, 3 * DAY_MS, MetricValue::count(9))], 3 * DAY_MS, &mut ids);
    assert_eq!(summary(&e), [(InAlarm, "B".into(), 3), (InAlarm, "Other".into(), 4)]);
}

#[test]
fn silence_is_per_behavior() {
    // Two metrics: the device keeps sending one; the alarm on the other still expires.
    let bytes = behavior("Bytes", "aws:all-bytes-out", criteria("less-than", MetricValue::count(100)));
    let mut engine = engine_with(vec![conns("Conns", 1, 1), bytes]);
    let mut ids = Counter::default();
    engine.observe("dev", &["P"], &[dp(CONNS, 1, MetricValue::count(9))], 1, &mut ids);
    for day in 1..=3 {
        let t = day * DAY_MS;
        engine.observe("dev", &["P"], &[dp("aws:all-bytes-out", t, MetricValue::count(1))], t, &mut ids);
    }
    let e = engine.invalidate_stale(3 * DAY_MS);
    assert_eq!(summary(&e), [(AlarmInvalidated(NoData), "Conns".into(), 1)]);
    assert_eq!(engine.thing_count(), 1, "the thing still reports");
}

#[test]
fn max_silence_is_configurable() {
    let mut engine =
        Engine::new(EngineConfig { max_silence: Duration::from_secs(60), ..EngineConfig::default() });
    engine.put_profile(profile_of("P", vec![conns("B", 1, 1)]).unwrap(), 0);
    engine.observe("dev", &["P"], &[dp(CONNS, 0, MetricValue::count(9))], 0, &mut Counter::default());
    assert!(engine.invalidate_stale(60_000).is_empty());
    assert_eq!(engine.invalidate_stale(60_001).len(), 1);
}

#[test]
fn removing_or_changing_a_behavior() {
    let mut engine = engine_with(vec![
        conns("Kept", 1, 2),
        conns("Changed", 1, 2),
        conns("Removed", 1, 2),
        conns("Moved", 1, 2),
    ]);
    let mut ids = Counter::default();
    engine.observe("dev", &["P"], &[dp(CONNS, 1, MetricValue::count(9))], 1, &mut ids);
    // One conforming datapoint: all are half-way to clearing.
    engine.observe("dev", &["P"], &[dp(CONNS, 2, MetricValue::count(1))], 2, &mut ids);

    let mut changed = criteria("less-than-equals", MetricValue::count(6));
    changed.consecutive_datapoints_to_clear = Some(2);
    let moved =
        behavior("Moved", "aws:num-listening-tcp-ports", criteria("less-than", MetricValue::count(5)));
    let events = engine.put_profile(
        profile_of(
            "P",
            vec![conns("Kept", 1, 2), behavior("Changed", CONNS, changed), moved, conns("New", 1, 1)],
        )
        .unwrap(),
        10,
    );
    assert_eq!(
        summary(&events),
        [
            (AlarmInvalidated(BehaviorRemoved), "Removed".into(), 3),
            (AlarmInvalidated(BehaviorRemoved), "Moved".into(), 4)
        ]
    );
    assert!(events.iter().all(|e| e.at_ms == 10));
    let active: Vec<_> =
        engine.active_violations("dev").iter().map(|a| (a.behavior.name.clone(), a.violation_id)).collect();
    assert_eq!(active, [("Kept".to_owned(), id(1)), ("Changed".to_owned(), id(2))]);

    // "Kept" was unchanged and keeps its run: one more conforming datapoint clears it.
    // "Changed" restarted its run under the new criteria and needs two.
    let e = engine.observe("dev", &["P"], &[dp(CONNS, 3, MetricValue::count(1))], 3, &mut ids);
    assert_eq!(summary(&e), [(AlarmCleared, "Kept".into(), 1)]);
    let e = engine.observe("dev", &["P"], &[dp(CONNS, 4, MetricValue::count(1))], 4, &mut ids);
    assert_eq!(summary(&e), [(AlarmCleared, "Changed".into(), 2)]);
}

#[test]
fn removing_a_profile() {
    let mut engine = engine_with(vec![conns("B", 1, 1)]);
    engine.put_profile(profile_of("Q", vec![conns("B", 1, 1)]).unwrap(), 0);
    let mut ids = Counter::default();
    for thing in ["a", "b"] {
        engine.observe(thing, &["P", "Q"], &[dp(CONNS, 1, MetricValue::count(9))], 1, &mut ids);
    }
    let mut e = engine.remove_profile("P", 5);
    e.sort_by(|x, y| x.thing.cmp(&y.thing));
    assert_eq!(
        e.iter().map(|e| (e.thing.as_str(), e.profile.as_str(), e.kind)).collect::<Vec<_>>(),
        [("a", "P", AlarmInvalidated(ProfileRemoved)), ("b", "P", AlarmInvalidated(ProfileRemoved)),]
    );
    assert!(engine.profile("P").is_none());
    assert_eq!(engine.active_violations("a").len(), 1, "Q's alarm stays");
    assert!(engine.remove_profile("P", 6).is_empty());
    engine.remove_profile("Q", 7);
    assert_eq!(engine.thing_count(), 0);
}

#[test]
fn no_longer_monitored() {
    let mut engine = engine_with(vec![conns("B", 1, 1)]);
    engine.put_profile(profile_of("Q", vec![conns("B", 1, 1)]).unwrap(), 0);
    let mut ids = Counter::default();
    engine.observe("dev", &["P", "Q"], &[dp(CONNS, 1, MetricValue::count(9))], 1, &mut ids);
    // Detached explicitly...
    let e = engine.detach("dev", "P", 2);
    assert_eq!(
        e.iter().map(|e| (e.profile.as_str(), e.kind)).collect::<Vec<_>>(),
        [("P", AlarmInvalidated(NotMonitored))]
    );
    assert!(engine.detach("dev", "P", 2).is_empty());
    // ...or by leaving the list of profiles that monitor the thing.
    let e = engine.observe("dev", &[], &[dp(CONNS, 3, MetricValue::count(9))], 3, &mut ids);
    assert_eq!(
        e.iter().map(|e| (e.profile.as_str(), e.kind)).collect::<Vec<_>>(),
        [("Q", AlarmInvalidated(NotMonitored))]
    );
    assert_eq!(engine.thing_count(), 0);
}

#[test]
fn deleting_a_thing() {
    let mut engine = engine_with(vec![conns("B", 1, 1)]);
    engine.observe("dev", &["P"], &[dp(CONNS, 1, MetricValue::count(9))], 1, &mut Counter::default());
    let e = engine.remove_thing("dev", 2);
    assert_eq!(summary(&e), [(AlarmInvalidated(ThingDeleted), "B".into(), 1)]);
    assert!(engine.remove_thing("dev", 3).is_empty());
    assert_eq!(engine.thing_count(), 0);
}

#[test]
fn restored_alarms_continue() {
    let mut engine = engine_with(vec![conns("B", 1, 1)]);
    let restored = RestoredAlarm {
        violation_id: "37e18651d207bbc74236c13faf146127".parse().unwrap(),
        violation_start_ms: 100,
        last_violation_ms: 200,
        last_violation_value: MetricValue::count(9),
    };
    engine.restore_alarm("dev", "P", "B", restored.clone()).unwrap();
    assert_eq!(engine.active_violations("dev")[0].violation_id, restored.violation_id);
    let mut ids = Counter::default();
    // No second alarm while it is active, and older datapoints are ignored.
    assert!(
        engine.observe("dev", &["P"], &[dp(CONNS, 150, MetricValue::count(1))], 300, &mut ids).is_empty()
    );
    assert!(
        engine.observe("dev", &["P"], &[dp(CONNS, 300, MetricValue::count(9))], 300, &mut ids).is_empty()
    );
    let e = engine.observe("dev", &["P"], &[dp(CONNS, 400, MetricValue::count(1))], 400, &mut ids);
    assert_eq!(e[0].kind, AlarmCleared);
    assert_eq!(e[0].violation_id.to_string(), "37e18651d207bbc74236c13faf146127");
    assert_eq!(e[0].violation_start_ms, 100);

    assert_eq!(
        engine.restore_alarm("dev", "Nope", "B", restored.clone()),
        Err(RestoreError::UnknownProfile("Nope".into()))
    );
    assert_eq!(
        engine.restore_alarm("dev", "P", "Nope", restored).unwrap_err().to_string(),
        r#"security profile "P" has no behavior "Nope""#
    );
}

#[test]
fn violation_ids() {
    let id: ViolationId = "37E18651d207bbc74236c13faf146127".parse().unwrap();
    assert_eq!(id.to_string(), "37e18651d207bbc74236c13faf146127");
    assert_eq!(ViolationId::from_u128(0).to_string(), "0".repeat(32));
    assert_eq!(ViolationId::from_bytes([0xab; 16]).to_string(), "ab".repeat(16));
    for bad in [
        "",
        "37e18651d207bbc74236c13faf14612",
        "37e18651d207bbc74236c13faf1461277",
        "+7e18651d207bbc74236c13faf146127",
        "37e18651-207b-bc74-236c-13faf1461",
    ] {
        assert_eq!(
            bad.parse::<ViolationId>().unwrap_err().to_string(),
            format!("{bad:?} is not a violation id (32 hex digits)")
        );
    }
    // Closures are id sources too.
    let mut next = 7u128;
    let mut engine = engine_with(vec![conns("B", 1, 1)]);
    let e = engine.observe("dev", &["P"], &[dp(CONNS, 1, MetricValue::count(9))], 1, &mut || {
        next += 1;
        ViolationId::from_u128(next)
    });
    assert_eq!(e[0].violation_id, ViolationId::from_u128(8));
}
