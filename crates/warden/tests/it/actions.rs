//! `warden actions`: mitigation actions, and tasks that apply them to violations recorded in the
//! server's store, followed until they end.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use warden_store::ViolationEventType;

use crate::TestServer;
use crate::violations::{T0_MS, event, id};

/// Polls `actions task ID` until the task has ended; tasks run in the server, after the start
/// request has answered.
fn finished_task(s: &TestServer, task: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reply = s.json(&["actions", "task", task]);
        if reply["taskSummary"]["taskStatus"] != "IN_PROGRESS" {
            return reply;
        }
        assert!(Instant::now() < deadline, "task {task} is still running: {reply}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn actions_are_created_listed_shown_and_deleted() {
    let s = TestServer::start();
    s.run(&["groups", "create", "quarantine"]).success();
    let created = s.json(&["actions", "create", "quarantine", "--add-to-group", "quarantine"]);
    assert_eq!(created["actionArn"], "arn:aws:iot:local:000000000000:mitigationaction/quarantine");
    let run = s.run(&["actions", "create", "revoke", "--deactivate-certificate"]).success();
    assert!(run.stdout.starts_with("NAME  revoke\nID    "), "{}", run.stdout);
    assert!(
        run.stdout.ends_with("\nARN   arn:aws:iot:local:000000000000:mitigationaction/revoke\n"),
        "{}",
        run.stdout
    );

    let run = s.run(&["actions", "show", "quarantine"]).success();
    let fields: Vec<(&str, &str)> = run
        .stdout
        .lines()
        .map(|l| l.split_once("  ").map(|(k, v)| (k, v.trim())).unwrap())
        .filter(|(k, _)| !["ID", "CREATED", "MODIFIED"].contains(k))
        .collect();
    assert_eq!(
        fields,
        [
            ("NAME", "quarantine"),
            ("TYPE", "ADD_THINGS_TO_THING_GROUP"),
            ("DOES", "add the thing to quarantine"),
            ("ARN", "arn:aws:iot:local:000000000000:mitigationaction/quarantine"),
            ("ROLE", "arn:aws:iam::000000000000:role/warden"),
        ]
    );
    let shown = s.json(&["actions", "show", "revoke"]);
    assert_eq!(shown["actionParams"], json!({ "updateDeviceCertificateParams": { "action": "DEACTIVATE" } }));
    assert!(
        s.run(&["actions", "show", "revoke"])
            .success()
            .stdout
            .contains("\nDOES      deactivate the thing's certificates\n")
    );

    let listed = s.json(&["actions", "list"]);
    let names: Vec<&str> = listed["actionIdentifiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["actionName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["quarantine", "revoke"]);
    let run = s.run(&["actions", "list"]).success();
    let header: Vec<&str> = run.stdout.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "ARN", "CREATED"], "{}", run.stdout);

    s.check(&["actions", "delete", "revoke"], "Deleted mitigation action revoke.\n");
    let run = s.run(&["actions", "show", "revoke"]).failure(1);
    assert!(run.stderr.starts_with("warden: ResourceNotFoundException: "), "{}", run.stderr);

    for args in [
        &["actions", "create", "x"][..],
        &["actions", "create", "x", "--add-to-group", "g", "--deactivate-certificate"],
        &["actions", "run", "--action", "quarantine"],
        &["actions", "run", "--violation", "1", "--profile", "P", "--action", "quarantine"],
        &["actions", "run", "--violation", "1"],
        &["actions", "run", "--behavior", "b", "--violation", "1", "--action", "quarantine"],
    ] {
        let run = s.run(args);
        assert_eq!(run.code, Some(2), "warden {}: {}", args.join(" "), run.stderr);
    }
}

#[test]
fn tasks_apply_actions_to_violations() {
    let s = TestServer::start();
    s.run(&["groups", "create", "quarantine"]).success();
    s.run(&["things", "create", "dev-1"]).success();
    s.run(&["things", "create", "dev-2"]).success();
    s.run(&["actions", "create", "quarantine", "--add-to-group", "quarantine"]).success();
    let changes = vec![
        event(1, ViolationEventType::InAlarm, "dev-1", "all-bytes-out", json!({ "count": 90000 }), T0_MS),
        event(2, ViolationEventType::InAlarm, "dev-2", "ports", json!({ "ports": [8080] }), T0_MS + 1000),
    ];
    s.block_on(s.store().record_violation_events(changes)).unwrap();

    let one = id(1);
    s.check(
        &["actions", "run", "t1", "--violation", &one, "--action", "quarantine"],
        "Started mitigation task t1.\nFollow it with: warden actions task t1\n",
    );
    let task = finished_task(&s, "t1");
    assert_eq!(task["taskSummary"]["taskStatus"], "SUCCESSFUL", "{task}");
    assert_eq!(task["taskSummary"]["target"], json!({ "violationIds": [one] }));
    let executions = &task["actionsExecutions"];
    assert_eq!(executions.as_array().unwrap().len(), 1, "{task}");
    assert_eq!(executions[0]["thingName"], "dev-1");
    assert_eq!(executions[0]["status"], "SUCCESSFUL");
    s.check(&["groups", "things", "quarantine"], "THING\ndev-1\n");

    let run = s.run(&["actions", "task", "t1"]).success();
    let fields: Vec<&str> = run.stdout.lines().map(|l| l.split("  ").next().unwrap()).collect();
    assert_eq!(
        fields,
        [
            "TASK",
            "STATUS",
            "STARTED",
            "ENDED",
            "TARGET",
            "ACTIONS",
            "ACTIVE ONLY",
            "SUPPRESSED",
            "EXECUTED",
            "SKIPPED",
            "FAILED",
            "",
            "VIOLATION",
            &one,
        ],
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains(&format!("TARGET       violations {one}\n")), "{}", run.stdout);
    assert!(run.stdout.contains("STATUS       SUCCESSFUL\n"), "{}", run.stdout);
    let row = run.stdout.lines().last().unwrap();
    assert!(row.starts_with(&format!("{one}  dev-1  quarantine  SUCCESSFUL  20")), "{row}");

    // A whole profile's violations, under a new task id.
    let run = s
        .run(&[
            "actions",
            "run",
            "--profile",
            "Fleet",
            "--behavior",
            "ports",
            "--action",
            "quarantine",
            "--active-only",
        ])
        .success();
    let started = run.stdout.lines().next().unwrap();
    let generated =
        started.strip_prefix("Started mitigation task ").and_then(|t| t.strip_suffix('.')).unwrap();
    assert!(generated.starts_with("warden-") && generated.len() == 23, "{started}");
    let task = finished_task(&s, generated);
    assert_eq!(
        task["taskSummary"]["target"],
        json!({ "securityProfileName": "Fleet", "behaviorName": "ports" })
    );
    assert_eq!(task["taskSummary"]["onlyActiveViolationsIncluded"], true);
    s.check(&["groups", "things", "quarantine"], "THING\ndev-1\ndev-2\n");

    let tasks = s.json(&["actions", "tasks"]);
    let ids: Vec<&str> =
        tasks["tasks"].as_array().unwrap().iter().map(|t| t["taskId"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 2, "{tasks}");
    assert!(ids.contains(&"t1") && ids.contains(&generated), "{tasks}");
    let run = s.run(&["actions", "tasks"]).success();
    assert!(run.stdout.starts_with("TASK "), "{}", run.stdout);
    let row = run.stdout.lines().find(|l| l.starts_with(generated)).unwrap();
    let cells: Vec<&str> = row.split("  ").map(str::trim).filter(|c| !c.is_empty()).collect();
    assert_eq!(cells[1], "SUCCESSFUL", "{row}");
    assert_eq!(cells[4..], ["profile Fleet, behavior ports", "quarantine", "1", "0", "0"], "{row}");
    assert_eq!(
        s.json(&["actions", "tasks", "--since", "2026-01-01", "--until", "2026-01-02"]),
        json!({ "tasks": [] })
    );

    // The same id again is another task: refused.
    let run = s.run(&["actions", "run", "t1", "--violation", &one, "--action", "quarantine"]).failure(1);
    assert!(run.stderr.starts_with("warden: TaskAlreadyExistsException: "), "{}", run.stderr);
    let run = s.run(&["actions", "run", "--violation", &id(9), "--action", "quarantine"]).failure(1);
    assert_eq!(
        run.stderr,
        format!(
            "warden: InvalidRequestException: target.violationIds[0]: violation {} does not exist\n",
            id(9)
        )
    );
}
