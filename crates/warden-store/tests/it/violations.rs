//! Violations: the active set and the history that `record_violation_events` keeps in step,
//! their filters and pages, verification states, and retention.

use warden_store::{
    ActiveViolation, ActiveViolationFilter, ActiveViolationUpdate, NewViolationEvent, PageRequest,
    ResourceKind, SqliteStore, Store, StoreError, VerificationState, ViolationChange, ViolationEvent,
    ViolationEventFilter, ViolationEventType,
};

use crate::{T0, all_pages, assert_matches, bad_page, open};

const BEHAVIOR: &str = r#"{"name":"b","metric":"aws:all-bytes-out","criteria":{"comparisonOperator":"less-than-equals","value":{"count":35000}}}"#;
const CHANGED_BEHAVIOR: &str = r#"{"name":"b","metric":"aws:all-bytes-out","criteria":{"comparisonOperator":"less-than-equals","value":{"count":50000}}}"#;

/// One alarm's identity; its methods make the changes the engine would report for it.
#[derive(Clone, Copy)]
struct Alarm {
    id: u128,
    thing: &'static str,
    profile: &'static str,
    behavior: &'static str,
    suppress: bool,
}

const fn alarm(id: u128, thing: &'static str, profile: &'static str, behavior: &'static str) -> Alarm {
    Alarm { id, thing, profile, behavior, suppress: false }
}

fn count(n: u64) -> String {
    format!(r#"{{"count":{n}}}"#)
}

impl Alarm {
    fn id(self) -> String {
        format!("{:032x}", self.id)
    }

    fn suppressed(self) -> Alarm {
        Alarm { suppress: true, ..self }
    }

    fn event(self, event_type: ViolationEventType, at_ms: i64, value: u64) -> ViolationChange {
        ViolationChange::Event(NewViolationEvent {
            violation_id: self.id(),
            event_type,
            thing: self.thing.to_owned(),
            security_profile: self.profile.to_owned(),
            behavior: self.behavior.to_owned(),
            behavior_json: BEHAVIOR.to_owned(),
            metric_value: count(value),
            event_time_ms: at_ms,
            suppress_alerts: self.suppress,
        })
    }

    fn raised(self, at_ms: i64, value: u64) -> ViolationChange {
        self.event(ViolationEventType::InAlarm, at_ms, value)
    }

    fn cleared(self, at_ms: i64, value: u64) -> ViolationChange {
        self.event(ViolationEventType::AlarmCleared, at_ms, value)
    }

    fn invalidated(self, at_ms: i64, value: u64) -> ViolationChange {
        self.event(ViolationEventType::AlarmInvalidated, at_ms, value)
    }

    fn update(self, at_ms: i64, value: u64) -> ViolationChange {
        ViolationChange::Update(ActiveViolationUpdate {
            violation_id: self.id(),
            behavior_json: BEHAVIOR.to_owned(),
            last_violation_value: count(value),
            last_violation_ms: at_ms,
            suppress_alerts: self.suppress,
        })
    }
}

async fn active(store: &SqliteStore, filter: ActiveViolationFilter, size: usize) -> Vec<ActiveViolation> {
    let filter = &filter;
    all_pages(size, |p| async move { store.list_active_violations(filter, &p).await }).await
}

async fn events(store: &SqliteStore, filter: ViolationEventFilter, size: usize) -> Vec<ViolationEvent> {
    let filter = &filter;
    all_pages(size, |p| async move { store.list_violation_events(filter, &p).await }).await
}

fn everything() -> ViolationEventFilter {
    ViolationEventFilter::between(0, i64::MAX)
}

fn active_ids(list: &[ActiveViolation]) -> Vec<String> {
    list.iter().map(|v| v.violation_id.clone()).collect()
}

/// `(violation id, event type, time)` of each event.
fn timeline(list: &[ViolationEvent]) -> Vec<(String, ViolationEventType, i64)> {
    list.iter().map(|e| (e.violation_id.clone(), e.event_type, e.event_time_ms)).collect()
}

const A: Alarm = alarm(0xa, "t1", "p1", "b1");
const B: Alarm = alarm(0xb, "t1", "p1", "b2");

#[tokio::test]
async fn an_alarm_from_raise_to_clear() {
    let (_dir, store) = open();
    store.record_violation_events(vec![A.raised(T0, 40_000)]).await.unwrap();
    let raised = store.describe_active_violation(&A.id()).await.unwrap();
    assert_eq!(
        raised,
        ActiveViolation {
            violation_id: A.id(),
            thing: "t1".into(),
            security_profile: "p1".into(),
            behavior: "b1".into(),
            behavior_json: BEHAVIOR.into(),
            last_violation_value: count(40_000),
            violation_start_ms: T0,
            last_violation_ms: T0,
            suppress_alerts: false,
            verification_state: VerificationState::Unknown,
            verification_description: None,
        }
    );

    // Another violating value moves the active violation on, without an event.
    let mut update = A.update(T0 + 300, 50_000);
    if let ViolationChange::Update(u) = &mut update {
        u.behavior_json = CHANGED_BEHAVIOR.into();
    }
    store.record_violation_events(vec![update]).await.unwrap();
    let moved = store.describe_active_violation(&A.id()).await.unwrap();
    assert_eq!((moved.violation_start_ms, moved.last_violation_ms), (T0, T0 + 300));
    assert_eq!(moved.last_violation_value, count(50_000));
    assert_eq!(moved.behavior_json, CHANGED_BEHAVIOR);
    assert_eq!(events(&store, everything(), 10).await.len(), 1);

    // Clearing leaves no active violation, and the history keeps both events.
    store.record_violation_events(vec![A.cleared(T0 + 600, 100)]).await.unwrap();
    assert_matches!(
        store.describe_active_violation(&A.id()).await,
        Err(StoreError::NotFound { kind: ResourceKind::Violation, ref name }) if *name == A.id()
    );
    assert!(active(&store, ActiveViolationFilter::default(), 10).await.is_empty());
    let history = events(&store, everything(), 10).await;
    assert_eq!(
        timeline(&history),
        [(A.id(), ViolationEventType::InAlarm, T0), (A.id(), ViolationEventType::AlarmCleared, T0 + 600)]
    );
    assert_eq!(history[0].metric_value, count(40_000));
    assert_eq!(history[1].metric_value, count(100));
    assert_eq!(
        (history[1].thing.as_str(), history[1].security_profile.as_str(), history[1].behavior.as_str()),
        ("t1", "p1", "b1")
    );
    assert_eq!(history[1].behavior_json, BEHAVIOR);

    // An ended violation cannot be updated.
    assert_matches!(
        store.record_violation_events(vec![A.update(T0 + 900, 1)]).await,
        Err(StoreError::NotFound { kind: ResourceKind::Violation, .. })
    );
}

#[tokio::test]
async fn invalidation_ends_an_alarm() {
    let (_dir, store) = open();
    store.record_violation_events(vec![A.raised(T0, 1), B.raised(T0, 1)]).await.unwrap();
    store.record_violation_events(vec![A.invalidated(T0 + 1, 1)]).await.unwrap();
    assert_eq!(active_ids(&active(&store, ActiveViolationFilter::default(), 10).await), [B.id()]);
    let history = events(&store, everything(), 10).await;
    assert_eq!(history.iter().filter(|e| e.event_type == ViolationEventType::AlarmInvalidated).count(), 1);
    // An end event for a violation that is not active is still history.
    let stray = alarm(0xc, "t9", "p9", "b9");
    store.record_violation_events(vec![stray.cleared(T0 + 2, 0)]).await.unwrap();
    assert_eq!(events(&store, everything(), 10).await.len(), 4);
    assert_eq!(active(&store, ActiveViolationFilter::default(), 10).await.len(), 1);
}

#[tokio::test]
async fn a_batch_is_all_or_nothing() {
    let (_dir, store) = open();
    let stranger = alarm(0xdead, "t1", "p1", "b9");
    assert_matches!(
        store.record_violation_events(vec![A.raised(T0, 1), B.raised(T0, 1), stranger.update(T0, 1)]).await,
        Err(StoreError::NotFound { kind: ResourceKind::Violation, .. })
    );
    assert!(active(&store, ActiveViolationFilter::default(), 10).await.is_empty());
    assert!(events(&store, everything(), 10).await.is_empty());

    store.record_violation_events(vec![A.raised(T0, 1)]).await.unwrap();
    // One active violation per thing, profile and behavior...
    let a2 = Alarm { id: 0xa2, ..A };
    assert_matches!(
        store.record_violation_events(vec![B.raised(T0, 1), a2.raised(T0 + 1, 1)]).await,
        Err(StoreError::Conflict(ref m)) if m.contains(&A.id())
    );
    // ...and an active violation cannot be raised again.
    assert_matches!(
        store.record_violation_events(vec![A.raised(T0 + 1, 1)]).await,
        Err(StoreError::Conflict(_))
    );
    assert_eq!(active_ids(&active(&store, ActiveViolationFilter::default(), 10).await), [A.id()]);
    assert_eq!(events(&store, everything(), 10).await.len(), 1);

    // Changes apply in order: a behavior can clear and alarm again within one evaluation.
    store.record_violation_events(vec![A.cleared(T0 + 2, 1), a2.raised(T0 + 2, 9)]).await.unwrap();
    assert_eq!(active_ids(&active(&store, ActiveViolationFilter::default(), 10).await), [a2.id()]);
    assert_eq!(
        timeline(&events(&store, everything(), 10).await),
        [
            (A.id(), ViolationEventType::InAlarm, T0),
            (A.id(), ViolationEventType::AlarmCleared, T0 + 2),
            (a2.id(), ViolationEventType::InAlarm, T0 + 2)
        ]
    );

    // Malformed input is refused before anything is written.
    let mut bad = B.raised(T0 + 3, 1);
    if let ViolationChange::Event(e) = &mut bad {
        e.behavior_json = "{not json".into();
    }
    assert_matches!(
        store.record_violation_events(vec![B.raised(T0 + 3, 1), bad]).await,
        Err(StoreError::Invalid(_))
    );
    let mut bad = B.raised(T0 + 3, 1);
    if let ViolationChange::Event(e) = &mut bad {
        e.violation_id = "not an id".into();
    }
    assert_matches!(store.record_violation_events(vec![bad]).await, Err(StoreError::Invalid(_)));
    let bad_thing = alarm(0xe, "a b", "p1", "b1");
    assert_matches!(
        store.record_violation_events(vec![bad_thing.raised(T0, 1)]).await,
        Err(StoreError::Invalid(_))
    );
    assert_eq!(events(&store, everything(), 10).await.len(), 3);

    store.record_violation_events(Vec::new()).await.unwrap();
}

#[tokio::test]
async fn active_violations_filters_and_pages() {
    let (_dir, store) = open();
    let set = [
        alarm(5, "t3", "p2", "b2").suppressed(),
        alarm(1, "t1", "p1", "b1"),
        alarm(2, "t1", "p1", "b2").suppressed(),
        alarm(4, "t2", "p1", "b1"),
        alarm(3, "t1", "p2", "b1"),
    ];
    store.record_violation_events(set.iter().map(|a| a.raised(T0, 1)).collect()).await.unwrap();
    store.put_verification_state(&set[3].id(), VerificationState::TruePositive, None).await.unwrap();

    let check = |filter: ActiveViolationFilter, expect: &[u128]| {
        let store = &store;
        let expect: Vec<String> = expect.iter().map(|n| format!("{n:032x}")).collect();
        async move {
            for size in [1, 2, 5] {
                let listed = active(store, filter.clone(), size).await;
                assert_eq!(active_ids(&listed), expect, "{filter:?}, page size {size}");
            }
        }
    };
    let by = |f: fn(&mut ActiveViolationFilter)| {
        let mut filter = ActiveViolationFilter::default();
        f(&mut filter);
        filter
    };
    // Ordered by thing, profile, behavior.
    check(ActiveViolationFilter::default(), &[1, 2, 3, 4, 5]).await;
    check(by(|f| f.thing = Some("t1".into())), &[1, 2, 3]).await;
    check(by(|f| f.security_profile = Some("p1".into())), &[1, 2, 4]).await;
    check(
        by(|f| {
            f.security_profile = Some("p1".into());
            f.behavior = Some("b1".into());
        }),
        &[1, 4],
    )
    .await;
    check(by(|f| f.suppressed = Some(true)), &[2, 5]).await;
    check(by(|f| f.suppressed = Some(false)), &[1, 3, 4]).await;
    check(by(|f| f.verification_state = Some(VerificationState::TruePositive)), &[4]).await;
    check(by(|f| f.verification_state = Some(VerificationState::Unknown)), &[1, 2, 3, 5]).await;
    check(
        by(|f| {
            f.thing = Some("t1".into());
            f.suppressed = Some(false);
            f.security_profile = Some("p2".into());
        }),
        &[3],
    )
    .await;
    check(by(|f| f.thing = Some("nobody".into())), &[]).await;

    assert_matches!(
        store.list_active_violations(&by(|f| f.behavior = Some("b1".into())), &PageRequest::default()).await,
        Err(StoreError::Invalid(ref m)) if m.contains("profile")
    );
    assert_matches!(
        store.list_active_violations(&by(|f| f.thing = Some("a/b".into())), &PageRequest::default()).await,
        Err(StoreError::Invalid(_))
    );
    let filter = ActiveViolationFilter::default();
    // "ab": a token that decodes, but not to a key of this list.
    for token in ["zz", "6162"] {
        assert_matches!(
            store.list_active_violations(&filter, &bad_page(token)).await,
            Err(StoreError::Invalid(_))
        );
    }
}

#[tokio::test]
async fn violation_events_by_time_with_filters_and_pages() {
    let (_dir, store) = open();
    let x = alarm(1, "t1", "p1", "b1");
    let y = alarm(2, "t2", "p1", "b1").suppressed();
    let z = alarm(3, "t1", "p2", "b2");
    // Recorded out of time order, and with ties.
    store.record_violation_events(vec![x.raised(T0 + 200, 1)]).await.unwrap();
    store.record_violation_events(vec![y.raised(T0 + 100, 1)]).await.unwrap();
    store.record_violation_events(vec![x.cleared(T0 + 300, 1), z.raised(T0 + 100, 1)]).await.unwrap();
    store.record_violation_events(vec![y.invalidated(T0 + 400, 1)]).await.unwrap();
    store.put_verification_state(&y.id(), VerificationState::BenignPositive, Some("lab")).await.unwrap();

    let check = |filter: ViolationEventFilter, expect: &[(u128, ViolationEventType, i64)]| {
        let store = &store;
        let expect: Vec<(String, ViolationEventType, i64)> =
            expect.iter().map(|&(n, kind, at)| (format!("{n:032x}"), kind, at)).collect();
        async move {
            for size in [1, 2, 10] {
                let listed = events(store, filter.clone(), size).await;
                assert_eq!(timeline(&listed), expect, "{filter:?}, page size {size}");
            }
        }
    };
    use ViolationEventType::{AlarmCleared as Cleared, AlarmInvalidated as Invalidated, InAlarm};
    // By time, ties in recording order.
    check(
        everything(),
        &[
            (2, InAlarm, T0 + 100),
            (3, InAlarm, T0 + 100),
            (1, InAlarm, T0 + 200),
            (1, Cleared, T0 + 300),
            (2, Invalidated, T0 + 400),
        ],
    )
    .await;
    // The range includes its start and excludes its end.
    check(
        ViolationEventFilter::between(T0 + 100, T0 + 300),
        &[(2, InAlarm, T0 + 100), (3, InAlarm, T0 + 100), (1, InAlarm, T0 + 200)],
    )
    .await;
    check(ViolationEventFilter::between(T0 + 101, T0 + 200), &[]).await;
    check(ViolationEventFilter::between(T0, T0), &[]).await;
    let with = |f: fn(&mut ViolationEventFilter)| {
        let mut filter = everything();
        f(&mut filter);
        filter
    };
    check(
        with(|f| f.thing = Some("t1".into())),
        &[(3, InAlarm, T0 + 100), (1, InAlarm, T0 + 200), (1, Cleared, T0 + 300)],
    )
    .await;
    check(
        with(|f| f.security_profile = Some("p1".into())),
        &[(2, InAlarm, T0 + 100), (1, InAlarm, T0 + 200), (1, Cleared, T0 + 300), (2, Invalidated, T0 + 400)],
    )
    .await;
    check(
        with(|f| {
            f.security_profile = Some("p2".into());
            f.behavior = Some("b2".into());
        }),
        &[(3, InAlarm, T0 + 100)],
    )
    .await;
    check(
        with(|f| f.violation_id = Some(format!("{:032x}", 1))),
        &[(1, InAlarm, T0 + 200), (1, Cleared, T0 + 300)],
    )
    .await;
    check(with(|f| f.suppressed = Some(true)), &[(2, InAlarm, T0 + 100), (2, Invalidated, T0 + 400)]).await;
    check(
        with(|f| f.verification_state = Some(VerificationState::BenignPositive)),
        &[(2, InAlarm, T0 + 100), (2, Invalidated, T0 + 400)],
    )
    .await;
    check(
        with(|f| {
            f.thing = Some("t1".into());
            f.security_profile = Some("p1".into());
            f.suppressed = Some(false);
        }),
        &[(1, InAlarm, T0 + 200), (1, Cleared, T0 + 300)],
    )
    .await;

    assert_matches!(
        store
            .list_violation_events(&ViolationEventFilter::between(T0 + 1, T0), &PageRequest::default())
            .await,
        Err(StoreError::Invalid(_))
    );
    assert_matches!(
        store.list_violation_events(&with(|f| f.behavior = Some("b1".into())), &PageRequest::default()).await,
        Err(StoreError::Invalid(_))
    );
    assert_matches!(
        store
            .list_violation_events(&with(|f| f.violation_id = Some("x y".into())), &PageRequest::default())
            .await,
        Err(StoreError::Invalid(_))
    );
    for token in ["zz", "6162", "313a78"] {
        assert_matches!(
            store.list_violation_events(&everything(), &bad_page(token)).await,
            Err(StoreError::Invalid(_))
        );
    }
}

#[tokio::test]
async fn verification_state_shows_on_active_and_history() {
    let (_dir, store) = open();
    store.record_violation_events(vec![A.raised(T0, 1), B.raised(T0, 1)]).await.unwrap();
    store.put_verification_state(&A.id(), VerificationState::TruePositive, Some("confirmed")).await.unwrap();

    let a = store.describe_active_violation(&A.id()).await.unwrap();
    assert_eq!(a.verification_state, VerificationState::TruePositive);
    assert_eq!(a.verification_description.as_deref(), Some("confirmed"));
    let b = store.describe_active_violation(&B.id()).await.unwrap();
    assert_eq!((b.verification_state, b.verification_description), (VerificationState::Unknown, None));
    let of = |alarm: Alarm| {
        let mut filter = everything();
        filter.violation_id = Some(alarm.id());
        filter
    };
    let a_events = events(&store, of(A), 10).await;
    assert_eq!(a_events[0].verification_state, VerificationState::TruePositive);
    assert_eq!(a_events[0].verification_description.as_deref(), Some("confirmed"));
    assert_eq!(events(&store, of(B), 10).await[0].verification_state, VerificationState::Unknown);

    // The engine's later writes do not reset it, and later events inherit it.
    store.record_violation_events(vec![A.update(T0 + 1, 2)]).await.unwrap();
    let a = store.describe_active_violation(&A.id()).await.unwrap();
    assert_eq!(a.verification_state, VerificationState::TruePositive);
    store.record_violation_events(vec![A.cleared(T0 + 2, 0)]).await.unwrap();
    let a_events = events(&store, of(A), 10).await;
    assert_eq!(a_events.len(), 2);
    assert!(a_events.iter().all(|e| e.verification_state == VerificationState::TruePositive
        && e.verification_description.as_deref() == Some("confirmed")));

    // A violation that has ended can still be judged; an empty description is none.
    store.put_verification_state(&A.id(), VerificationState::FalsePositive, Some("")).await.unwrap();
    let a_events = events(&store, of(A), 10).await;
    assert!(
        a_events.iter().all(|e| e.verification_state == VerificationState::FalsePositive
            && e.verification_description.is_none())
    );

    // A new alarm of the same behavior is a new violation, unjudged.
    let a2 = Alarm { id: 0xa2, ..A };
    store.record_violation_events(vec![a2.raised(T0 + 3, 1)]).await.unwrap();
    assert_eq!(
        store.describe_active_violation(&a2.id()).await.unwrap().verification_state,
        VerificationState::Unknown
    );

    // Both lists filter on it.
    let filter =
        ActiveViolationFilter { verification_state: Some(VerificationState::Unknown), ..Default::default() };
    assert_eq!(active_ids(&active(&store, filter, 10).await), [a2.id(), B.id()], "b1 before b2");
    let mut filter = everything();
    filter.verification_state = Some(VerificationState::FalsePositive);
    assert_eq!(events(&store, filter, 10).await.len(), 2);

    assert_matches!(
        store.put_verification_state(&format!("{:032x}", 0xfff), VerificationState::TruePositive, None).await,
        Err(StoreError::NotFound { kind: ResourceKind::Violation, .. })
    );
    assert_matches!(
        store.put_verification_state("not/an/id", VerificationState::TruePositive, None).await,
        Err(StoreError::Invalid(_))
    );
    assert_matches!(store.describe_active_violation("").await, Err(StoreError::Invalid(_)));
}

#[test]
fn verification_states_and_event_types_use_the_aws_spellings() {
    for (state, text) in [
        (VerificationState::Unknown, "UNKNOWN"),
        (VerificationState::FalsePositive, "FALSE_POSITIVE"),
        (VerificationState::BenignPositive, "BENIGN_POSITIVE"),
        (VerificationState::TruePositive, "TRUE_POSITIVE"),
    ] {
        assert_eq!(state.as_str(), text);
        assert_eq!(text.parse::<VerificationState>().unwrap(), state);
    }
    for (kind, text) in [
        (ViolationEventType::InAlarm, "in-alarm"),
        (ViolationEventType::AlarmCleared, "alarm-cleared"),
        (ViolationEventType::AlarmInvalidated, "alarm-invalidated"),
    ] {
        assert_eq!(kind.to_string(), text);
        assert_eq!(text.parse::<ViolationEventType>().unwrap(), kind);
    }
    assert_matches!("unknown".parse::<VerificationState>(), Err(StoreError::Invalid(_)));
    assert_eq!(VerificationState::default(), VerificationState::Unknown);
}

#[tokio::test]
async fn retention_drops_old_events_only() {
    let (_dir, store) = open();
    store.record_violation_events(vec![A.raised(T0, 1), B.raised(T0 + 1, 1)]).await.unwrap();
    store.record_violation_events(vec![B.cleared(T0 + 2, 1)]).await.unwrap();
    assert_eq!(store.drop_violation_events_before(T0 + 2).await.unwrap(), 2);
    assert_eq!(
        timeline(&events(&store, everything(), 10).await),
        [(B.id(), ViolationEventType::AlarmCleared, T0 + 2)]
    );
    assert_eq!(active_ids(&active(&store, ActiveViolationFilter::default(), 10).await), [A.id()]);
    assert_eq!(store.drop_violation_events_before(T0).await.unwrap(), 0);
}
