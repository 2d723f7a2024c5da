//! Properties of the alarm state machine, counter windows and CIDR matching on random input.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use proptest::sample::select;

use crate::support::{Counter, PERIOD_MS, behavior, criteria, dp, profile_of};
use warden_detect::{Cidr, Engine, MetricValue, ViolationEventKind, aws};

const CONNS: &str = "aws:num-established-tcp-connections";
const OUT: &str = "aws:all-bytes-out";

fn conns(name: &str, threshold: u64, to_alarm: u8, to_clear: u8) -> aws::Behavior {
    let mut c = criteria("less-than-equals", MetricValue::count(threshold));
    c.consecutive_datapoints_to_alarm = Some(to_alarm.into());
    c.consecutive_datapoints_to_clear = Some(to_clear.into());
    behavior(name, CONNS, c)
}

/// The first index `e >= from + len - 1` where the `len` datapoints ending at `e` all have the
/// verdict `violating`.
fn first_run(stream: &[bool], from: usize, len: usize, violating: bool) -> Option<usize> {
    (from + len - 1..stream.len()).find(|&e| stream[e + 1 - len..=e].iter().all(|v| *v == violating))
}

proptest! {
    /// The spec's rule, stated directly: out of alarm, the alarm rises at the first datapoint
    /// that ends a run of `consecutiveDatapointsToAlarm` violating ones counted since the last
    /// change; in alarm, it clears at the first that ends a run of `consecutiveDatapointsToClear`
    /// conforming ones. So events alternate, never two in-alarm without a clear between, each
    /// clear carries its alarm's id, and nothing else happens.
    #[test]
    fn alarms_follow_the_consecutive_rules(
        to_alarm in 1u8..=10,
        to_clear in 1u8..=10,
        stream in prop::collection::vec(any::<bool>(), 0..150),
    ) {
        let mut engine = Engine::default();
        engine.put_profile(profile_of("P", vec![conns("B", 5, to_alarm, to_clear)]).unwrap(), 0);
        let mut ids = Counter::default();
        let mut got = Vec::new();
        for (i, violating) in stream.iter().enumerate() {
            let t = (i as i64 + 1) * PERIOD_MS;
            let value = MetricValue::count(if *violating { 6 } else { 5 });
            for e in engine.observe("dev", &["P"], &[dp(CONNS, t, value)], t, &mut ids) {
                got.push((i, e.kind, e.violation_id.as_u128()));
            }
        }
        let mut expected = Vec::new();
        let (mut from, mut in_alarm, mut alarms) = (0, false, 0);
        loop {
            let (len, want) = if in_alarm { (to_clear, false) } else { (to_alarm, true) };
            let Some(e) = first_run(&stream, from, len.into(), want) else { break };
            if !in_alarm {
                alarms += 1;
            }
            let kind = if in_alarm { ViolationEventKind::AlarmCleared } else { ViolationEventKind::InAlarm };
            expected.push((e, kind, alarms));
            in_alarm = !in_alarm;
            from = e + 1;
        }
        prop_assert_eq!(got, expected);
        prop_assert_eq!(engine.active_violations("dev").len(), usize::from(in_alarm));
    }

    /// Counter windows against a direct computation: the value judged is the sum of the last
    /// `k` amounts (fewer at the start), and a partial window decides only when more periods
    /// could not change the verdict.
    #[test]
    fn counter_windows_sum_the_last_periods(
        duration in select(vec![300i64, 600, 900, 1800, 3600]),
        upper in any::<bool>(),
        threshold in 0u64..600,
        amounts in prop::collection::vec(0u64..200, 1..40),
    ) {
        let op = if upper { "less-than-equals" } else { "greater-than" };
        let mut c = criteria(op, MetricValue::count(threshold));
        c.duration_seconds = Some(duration);
        let mut engine = Engine::default();
        engine.put_profile(profile_of("P", vec![behavior("B", OUT, c)]).unwrap(), 0);
        let mut ids = Counter::default();
        let k = (duration / 300) as usize;
        let mut in_alarm = false;
        for (i, amount) in amounts.iter().enumerate() {
            let t = (i as i64 + 1) * PERIOD_MS;
            let events = engine.observe("dev", &["P"], &[dp(OUT, t, MetricValue::count(*amount))], t, &mut ids);
            let sum: u64 = amounts[(i + 1).saturating_sub(k)..=i].iter().sum();
            let conforms = if upper { sum <= threshold } else { sum > threshold };
            let complete = i + 1 >= k;
            let verdict = match (complete, upper) {
                (true, _) => Some(conforms),
                (false, true) => (!conforms).then_some(false),
                (false, false) => conforms.then_some(true),
            };
            let expected = match verdict {
                Some(false) if !in_alarm => Some(ViolationEventKind::InAlarm),
                Some(true) if in_alarm => Some(ViolationEventKind::AlarmCleared),
                _ => None,
            };
            if expected.is_some() {
                in_alarm = !in_alarm;
            }
            let got: Vec<_> = events.iter().map(|e| (e.kind, e.metric_value.count)).collect();
            let want: Vec<_> = expected.into_iter().map(|kind| (kind, Some(sum))).collect();
            prop_assert_eq!(got, want, "datapoint {}", i);
        }
    }

    /// Whatever happens (datapoints, profile changes, detaching, deleting, silence), every
    /// alarm is raised once with a fresh id and ended once with the same id, and the engine's
    /// active violations are exactly the alarms raised and not yet ended.
    #[test]
    fn every_alarm_ends_exactly_once(ops in prop::collection::vec(op(), 0..80)) {
        let mut engine = Engine::default();
        engine.put_profile(version(0), 0);
        engine.put_profile(profile_of("Q", vec![conns("B1", 5, 1, 1)]).unwrap(), 0);
        let mut ids = Counter::default();
        let mut open: BTreeMap<(String, String, String), u128> = BTreeMap::new();
        let mut seen: BTreeSet<u128> = BTreeSet::new();
        let mut t = 0;
        let things = ["a", "b", "c"];
        for op in ops {
            t += PERIOD_MS;
            let events = match op {
                Op::Report { thing, profiles, conns, bytes } => {
                    let names: Vec<&str> = ["P", "Q"].into_iter().enumerate()
                        .filter(|(i, _)| profiles & (1 << i) != 0).map(|(_, n)| n).collect();
                    let points = [dp(CONNS, t, MetricValue::count(conns)), dp(OUT, t, MetricValue::count(bytes))];
                    engine.observe(things[thing], &names, &points, t, &mut ids)
                }
                Op::PutP(v) => engine.put_profile(version(v), t),
                Op::RemoveQ => engine.remove_profile("Q", t),
                Op::PutQ => engine.put_profile(profile_of("Q", vec![conns("B1", 5, 1, 1)]).unwrap(), t),
                Op::Detach(thing) => engine.detach(things[thing], "P", t),
                Op::Delete(thing) => engine.remove_thing(things[thing], t),
                Op::Silence => {
                    t += 3 * 24 * 3600 * 1000;
                    engine.invalidate_stale(t)
                }
            };
            for e in events {
                let key = (e.thing.clone(), e.profile.clone(), e.behavior.clone());
                let id = e.violation_id.as_u128();
                if e.kind == ViolationEventKind::InAlarm {
                    prop_assert!(seen.insert(id), "id {} reused", id);
                    prop_assert!(open.insert(key.clone(), id).is_none(), "second in-alarm for {:?}", key);
                } else {
                    prop_assert_eq!(open.remove(&key), Some(id), "{:?} ends an alarm that is not open", e);
                }
            }
            let mut active = BTreeMap::new();
            for thing in things {
                for a in engine.active_violations(thing) {
                    active.insert((a.thing.to_owned(), a.profile.name.clone(), a.behavior.name.clone()), a.violation_id.as_u128());
                }
            }
            prop_assert_eq!(&active, &open);
        }
    }

    #[test]
    fn ipv4_containment_is_prefix_equality(net in any::<u32>(), addr in any::<u32>(), prefix in 0u8..=32) {
        let c = Cidr::new(IpAddr::V4(Ipv4Addr::from(net)), prefix).unwrap();
        let shift = 32 - u32::from(prefix);
        let same = net.checked_shr(shift).unwrap_or(0) == addr.checked_shr(shift).unwrap_or(0);
        prop_assert_eq!(c.contains_addr(IpAddr::V4(Ipv4Addr::from(addr))), same);
        prop_assert_eq!(c.contains_addr(IpAddr::V6(Ipv4Addr::from(addr).to_ipv6_mapped())), same);
        prop_assert_eq!(c.to_string().parse::<Cidr>().unwrap(), c);
    }

    #[test]
    fn ipv6_containment_is_prefix_equality(net in any::<u128>(), addr in any::<u128>(), prefix in 0u8..=128) {
        let net_addr = Ipv6Addr::from(net);
        prop_assume!(net_addr.to_ipv4_mapped().is_none() && Ipv6Addr::from(addr).to_ipv4_mapped().is_none());
        let c = Cidr::new(IpAddr::V6(net_addr), prefix).unwrap();
        let shift = 128 - u32::from(prefix);
        let same = net.checked_shr(shift).unwrap_or(0) == addr.checked_shr(shift).unwrap_or(0);
        prop_assert_eq!(c.contains_addr(IpAddr::V6(Ipv6Addr::from(addr))), same);
        prop_assert_eq!(c.to_string().parse::<Cidr>().unwrap(), c);
    }

    /// Arbitrary text never panics the parser, and what parses prints back to the same block.
    #[test]
    fn cidr_parsing_never_panics(text in "[0-9a-fA-F:./]{0,45}") {
        if let Ok(c) = text.parse::<Cidr>() {
            prop_assert_eq!(c.to_string().parse::<Cidr>().unwrap(), c);
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Report { thing: usize, profiles: u8, conns: u64, bytes: u64 },
    PutP(u8),
    RemoveQ,
    PutQ,
    Detach(usize),
    Delete(usize),
    Silence,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..3usize, 0..4u8, 0..10u64, 0..200u64)
            .prop_map(|(thing, profiles, conns, bytes)| Op::Report { thing, profiles, conns, bytes }),
        1 => (0..3u8).prop_map(Op::PutP),
        1 => Just(Op::RemoveQ),
        1 => Just(Op::PutQ),
        1 => (0..3usize).prop_map(Op::Detach),
        1 => (0..3usize).prop_map(Op::Delete),
        1 => Just(Op::Silence),
    ]
}

/// Versions of profile P: the original; B1 with other criteria and B2 gone; B1 on another
/// metric and B2 back.
fn version(v: u8) -> warden_detect::SecurityProfile {
    let mut bytes = criteria("less-than-equals", MetricValue::count(150));
    bytes.duration_seconds = Some(600);
    let b2 = behavior("B2", OUT, bytes);
    let behaviors = match v {
        0 => vec![conns("B1", 5, 2, 2), b2],
        1 => vec![conns("B1", 3, 1, 3)],
        _ => vec![
            behavior("B1", "aws:num-listening-tcp-ports", criteria("less-than", MetricValue::count(3))),
            b2,
        ],
    };
    profile_of("P", behaviors).unwrap()
}
