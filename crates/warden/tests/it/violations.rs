//! `warden violations`: active violations, their history and verification states, over
//! violations written into the server's store as its detection engine writes them.

use serde_json::{Value, json};
use warden_store::{NewViolationEvent, ViolationChange, ViolationEventType};

use crate::TestServer;

/// 2026-01-15T10:00:00Z.
pub const T0_MS: i64 = 1_768_471_200_000;

pub fn id(n: u8) -> String {
    format!("{n:032x}")
}

fn behavior(name: &str) -> Value {
    match name {
        "ports" => json!({
            "name": "ports",
            "metric": "aws:listening-tcp-ports",
            "criteria": { "comparisonOperator": "in-port-set", "value": { "ports": [22, 443] } },
        }),
        _ => json!({
            "name": name,
            "metric": "aws:all-bytes-out",
            "criteria": { "comparisonOperator": "less-than-equals", "value": { "count": 35000 }, "durationSeconds": 300 },
        }),
    }
}

/// One event of profile `Fleet`.
pub fn event(
    n: u8,
    kind: ViolationEventType,
    thing: &str,
    behavior_name: &str,
    value: Value,
    at_ms: i64,
) -> ViolationChange {
    ViolationChange::Event(NewViolationEvent {
        violation_id: id(n),
        event_type: kind,
        thing: thing.into(),
        security_profile: "Fleet".into(),
        behavior: behavior_name.into(),
        behavior_json: behavior(behavior_name).to_string(),
        metric_value: value.to_string(),
        event_time_ms: at_ms,
        suppress_alerts: false,
    })
}

/// Two active violations (1 and 2) and one cleared (3), in the minutes after [`T0_MS`].
fn seeded() -> TestServer {
    let s = TestServer::start();
    let minute = 60_000;
    let changes = vec![
        event(1, ViolationEventType::InAlarm, "dev-1", "all-bytes-out", json!({ "count": 90000 }), T0_MS),
        event(
            2,
            ViolationEventType::InAlarm,
            "dev-2",
            "ports",
            json!({ "ports": [22, 8080] }),
            T0_MS + minute,
        ),
        event(
            3,
            ViolationEventType::InAlarm,
            "dev-2",
            "all-bytes-out",
            json!({ "count": 40000 }),
            T0_MS + 2 * minute,
        ),
        event(
            3,
            ViolationEventType::AlarmCleared,
            "dev-2",
            "all-bytes-out",
            json!({ "count": 100 }),
            T0_MS + 3 * minute,
        ),
    ];
    s.block_on(s.store().record_violation_events(changes)).unwrap();
    s
}

#[test]
fn active_violations_list_with_filters() {
    let s = seeded();
    let (one, two) = (id(1), id(2));
    s.check(
        &["violations", "list"],
        &format!(
            "
VIOLATION                         THING  PROFILE  BEHAVIOR       VALUE       SINCE                 STATE
{one}  dev-1  Fleet    all-bytes-out  90000       2026-01-15T10:00:00Z  UNKNOWN
{two}  dev-2  Fleet    ports          {{22, 8080}}  2026-01-15T10:01:00Z  UNKNOWN
"
        ),
    );
    let ids = |args: &[&str]| -> Vec<String> {
        let mut full = vec!["violations", "list"];
        full.extend(args);
        let reply = s.json(&full);
        reply["activeViolations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["violationId"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&["--thing", "dev-2"]), [two.as_str()]);
    assert_eq!(ids(&["--profile", "Fleet", "--behavior", "all-bytes-out"]), [one.as_str()]);
    assert_eq!(ids(&["--behavior", "ports"]), [two.as_str()]);
    assert_eq!(ids(&["--profile", "Other"]), Vec::<String>::new());
    assert_eq!(ids(&["--max", "1"]), [one.as_str()]);
    assert_eq!(ids(&["--state", "unknown"]), [one.as_str(), two.as_str()]);
    assert_eq!(ids(&["--state", "TRUE_POSITIVE"]), Vec::<String>::new());

    // The JSON is the API's, with the behavior as configured.
    let reply = s.json(&["violations", "list", "--thing", "dev-1"]);
    assert_eq!(reply["activeViolations"][0]["behavior"], behavior("all-bytes-out"));
    assert_eq!(reply["activeViolations"][0]["lastViolationValue"], json!({ "count": 90000 }));
}

#[test]
fn history_lists_events_in_a_range() {
    let s = seeded();
    let (one, two, three) = (id(1), id(2), id(3));
    let range = ["--since", "2026-01-15", "--until", "2026-01-16"];
    let mut args = vec!["violations", "history"];
    args.extend(range);
    s.check(
        &args,
        &format!(
            "
TIME                  EVENT          VIOLATION                         THING  PROFILE  BEHAVIOR       VALUE       STATE
2026-01-15T10:00:00Z  in-alarm       {one}  dev-1  Fleet    all-bytes-out  90000       UNKNOWN
2026-01-15T10:01:00Z  in-alarm       {two}  dev-2  Fleet    ports          {{22, 8080}}  UNKNOWN
2026-01-15T10:02:00Z  in-alarm       {three}  dev-2  Fleet    all-bytes-out  40000       UNKNOWN
2026-01-15T10:03:00Z  alarm-cleared  {three}  dev-2  Fleet    all-bytes-out  100         UNKNOWN
"
        ),
    );
    let count = |extra: &[&str]| {
        let mut full = args.clone();
        full.extend(extra);
        s.json(&full)["violationEvents"].as_array().unwrap().len()
    };
    assert_eq!(count(&["--thing", "dev-2"]), 3);
    assert_eq!(count(&["--thing", "dev-2", "--behavior", "all-bytes-out"]), 2);
    let first =
        s.json(&["violations", "history", "--since", "2026-01-15", "--until", "2026-01-15T10:01:00Z"]);
    assert_eq!(first["violationEvents"].as_array().unwrap().len(), 1, "the end is exclusive");

    // By default the last 24 hours: an event of an hour ago, and none of 2026-01-15.
    let now_ms = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let recent = event(
        4,
        ViolationEventType::InAlarm,
        "dev-3",
        "all-bytes-out",
        json!({ "count": 1 }),
        now_ms - 3_600_000,
    );
    s.block_on(s.store().record_violation_events(vec![recent])).unwrap();
    let ids = |args: &[&str]| -> Vec<String> {
        let mut full = vec!["violations", "history"];
        full.extend(args);
        let reply = s.json(&full);
        reply["violationEvents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["violationId"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&[]), [id(4)]);
    assert_eq!(ids(&["--since", "30m"]), Vec::<String>::new());
    assert_eq!(ids(&["--since", "2h", "--until", "now"]), [id(4)]);

    let run = s.run(&["violations", "history", "--since", "2026-01-16", "--until", "2026-01-15"]).failure(1);
    assert_eq!(run.stderr, "warden: --since is after --until\n");
    let run = s.run(&["violations", "history", "--since", "yesterday"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("expected an age such as 1h"), "{}", run.stderr);
}

#[test]
fn verification_states_are_recorded() {
    let s = seeded();
    let one = id(1);
    s.check(
        &["violations", "verify", &one, "benign-positive", "--description", "nightly backup"],
        &format!("Violation {one} is now BENIGN_POSITIVE.\n"),
    );
    let active = s.json(&["violations", "list", "--state", "benign-positive"]);
    assert_eq!(active["activeViolations"][0]["violationId"], one.as_str());
    assert_eq!(active["activeViolations"][0]["verificationStateDescription"], "nightly backup");
    // AWS's spelling works too, and the state is on the violation's events as well.
    s.run(&["violations", "verify", &one, "TRUE_POSITIVE"]).success();
    let events = s.json(&[
        "violations",
        "history",
        "--since",
        "2026-01-15",
        "--until",
        "2026-01-16",
        "--thing",
        "dev-1",
    ]);
    assert_eq!(events["violationEvents"][0]["verificationState"], "TRUE_POSITIVE");

    let run = s.run(&["violations", "verify", "ffff", "unknown"]).failure(1);
    assert_eq!(run.stderr, "warden: InvalidRequestException: no violation has id ffff\n");
    let run = s.run(&["violations", "verify", &one, "maybe"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("[possible values: false-positive, benign-positive, true-positive, unknown]"),
        "{}",
        run.stderr
    );
}
