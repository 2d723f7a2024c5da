//! `warden profiles`: profiles written as rules, stored in AWS's shape, shown as rules again;
//! updates, targets, alert topics and automatic mitigation; bad rules named by their bad word.

use serde_json::{Value, json};

use crate::{TestServer, warden};

/// A custom metric and a dimension, through the API (no CLI command makes them).
fn define_metrics(s: &TestServer) {
    s.api(
        "POST",
        "/custom-metric/battery_pct",
        json!({ "metricType": "number", "clientRequestToken": "t1" }),
    );
    s.api(
        "POST",
        "/custom-metric/daemons",
        json!({ "metricType": "string-list", "clientRequestToken": "t2" }),
    );
    s.api(
        "POST",
        "/dimensions/auth-topics",
        json!({ "type": "TOPIC_FILTER", "stringValues": ["things/+/auth"], "clientRequestToken": "t3" }),
    );
}

/// The table without its CREATED and MODIFIED lines, which depend on the clock.
fn timeless(stdout: &str) -> String {
    stdout
        .lines()
        .filter(|l| !l.starts_with("CREATED ") && !l.starts_with("MODIFIED "))
        .map(|l| format!("{l}\n"))
        .collect()
}

const RULES: [&str; 6] = [
    "alarm when aws:all-bytes-out > 35000 over 300s",
    "ports: alarm when aws:listening-tcp-ports not in {22,443}",
    "alarm when aws:destination-ip-addresses in {10.0.0.0/8, 192.168.1.1}",
    "battery: alarm when battery_pct < 12.5 for 3 datapoints clear after 2",
    "auth: alarm when aws:num-authorization-failures >= 5 over 1h on dimension auth-topics quietly",
    "daemons: alarm when daemons not in {sshd, \"my agent\"}",
];

/// What `show` prints for [`RULES`]: the canonical form of each.
const SHOWN: &str = "
RULES
  all-bytes-out: alarm when aws:all-bytes-out > 35000 over 5m
  ports: alarm when aws:listening-tcp-ports not in {22, 443}
  destination-ip-addresses: alarm when aws:destination-ip-addresses in {10.0.0.0/8, 192.168.1.1}
  battery: alarm when battery_pct < 12.5 for 3 datapoints clear after 2 datapoints
  auth: alarm when aws:num-authorization-failures >= 5 over 1h on dimension auth-topics quietly
  daemons: alarm when daemons not in {sshd, \"my agent\"}
";

/// [`RULES`] as AWS stores them: criteria of normal behavior.
fn stored_behaviors() -> Value {
    json!([
        {
            "name": "all-bytes-out",
            "metric": "aws:all-bytes-out",
            "criteria": { "comparisonOperator": "less-than-equals", "value": { "count": 35000 }, "durationSeconds": 300 },
        },
        {
            "name": "ports",
            "metric": "aws:listening-tcp-ports",
            "criteria": { "comparisonOperator": "in-port-set", "value": { "ports": [22, 443] } },
        },
        {
            "name": "destination-ip-addresses",
            "metric": "aws:destination-ip-addresses",
            "criteria": { "comparisonOperator": "not-in-cidr-set", "value": { "cidrs": ["10.0.0.0/8", "192.168.1.1"] } },
        },
        {
            "name": "battery",
            "metric": "battery_pct",
            "criteria": {
                "comparisonOperator": "greater-than-equals",
                "value": { "number": 12.5 },
                "consecutiveDatapointsToAlarm": 3,
                "consecutiveDatapointsToClear": 2,
            },
        },
        {
            "name": "auth",
            "metric": "aws:num-authorization-failures",
            "metricDimension": { "dimensionName": "auth-topics", "operator": "IN" },
            "criteria": { "comparisonOperator": "less-than", "value": { "count": 5 }, "durationSeconds": 3600 },
            "suppressAlerts": true,
        },
        {
            "name": "daemons",
            "metric": "daemons",
            "criteria": { "comparisonOperator": "in-set", "value": { "strings": ["sshd", "my agent"] } },
        },
    ])
}

#[test]
fn profiles_are_written_stored_and_shown_as_rules() {
    let s = TestServer::start();
    define_metrics(&s);
    s.run(&["topics", "create", "ops"]).success();
    s.run(&["groups", "create", "lab"]).success();

    let mut args = vec!["profiles", "create", "Fleet", "--description", "Device-side baseline"];
    for rule in RULES {
        args.extend(["--rule", rule]);
    }
    args.extend(["--alert-topic", "ops", "--attach", "all", "--attach", "lab"]);
    s.check(
        &args,
        "
NAME     Fleet
ARN      arn:aws:iot:local:000000000000:securityprofile/Fleet
TARGETS  all, lab
",
    );

    // Stored in AWS's shape, as DescribeSecurityProfile returns it.
    let described = s.json(&["profiles", "show", "Fleet"]);
    assert_eq!(described["behaviors"], stored_behaviors());
    assert_eq!(
        described["alertTargets"],
        json!({ "SNS": {
            "alertTargetArn": "arn:aws:sns:local:000000000000:ops",
            "roleArn": "arn:aws:iam::000000000000:role/warden",
        }})
    );
    assert_eq!(described["securityProfileDescription"], "Device-side baseline");
    assert_eq!(described["version"], 1);
    let targets = s.api("GET", "/security-profiles/Fleet/targets", json!({}));
    assert_eq!(
        targets["securityProfileTargets"],
        json!([
            { "arn": "arn:aws:iot:local:000000000000:all/things" },
            { "arn": "arn:aws:iot:local:000000000000:thinggroup/lab" },
        ])
    );

    // Shown with each behavior as a rule, in canonical form.
    let run = s.run(&["profiles", "show", "Fleet"]).success();
    assert_eq!(
        timeless(&run.stdout),
        format!(
            "\
NAME         Fleet
ARN          arn:aws:iot:local:000000000000:securityprofile/Fleet
DESCRIPTION  Device-side baseline
VERSION      1
ALERTS       ops
TARGETS      all, lab{SHOWN}"
        )
    );
    assert!(run.stdout.contains("\nCREATED      20"), "{}", run.stdout);

    // The rules shown are rules: given back, they store the same behaviors.
    let mut args = vec!["profiles", "update", "Fleet"];
    let shown: Vec<&str> = SHOWN.lines().skip(2).map(str::trim).collect();
    for rule in &shown {
        args.extend(["--rule", rule]);
    }
    let updated = s.json(&args);
    assert_eq!(updated["version"], 2);
    assert_eq!(updated["behaviors"], stored_behaviors());

    s.check(
        &["profiles", "list"],
        "NAME   ARN\nFleet  arn:aws:iot:local:000000000000:securityprofile/Fleet\n",
    );
    s.check(
        &["profiles", "list", "--metric", "battery_pct"],
        "NAME   ARN\nFleet  arn:aws:iot:local:000000000000:securityprofile/Fleet\n",
    );
    s.check(&["profiles", "list", "--dimension", "other"], "NAME  ARN\n");
}

#[test]
fn updates_edit_rules_alerts_mitigation_and_targets() {
    let s = TestServer::start();
    s.run(&["groups", "create", "lab"]).success();
    s.run(&["groups", "create", "quarantine"]).success();
    s.run(&["actions", "create", "quarantine", "--add-to-group", "quarantine"]).success();
    s.run(&["topics", "create", "ops"]).success();
    s.run(&["profiles", "create", "P", "--rule", "alarm when aws:all-bytes-out > 1000"]).success();

    let show = |s: &TestServer| timeless(&s.run(&["profiles", "show", "P"]).success().stdout);
    s.run(&[
        "profiles",
        "update",
        "P",
        "--add-rule",
        "conns: alarm when aws:num-established-tcp-connections > 50",
    ])
    .success();
    s.run(&["profiles", "update", "P", "--remove-rule", "all-bytes-out", "--alert-topic", "ops"]).success();
    s.run(&["profiles", "update", "P", "--mitigate", "quarantine", "--description", "edited"]).success();
    s.run(&["profiles", "attach", "P", "lab", "all"]).success();
    assert_eq!(
        show(&s),
        "\
NAME         P
ARN          arn:aws:iot:local:000000000000:securityprofile/P
DESCRIPTION  edited
VERSION      4
ALERTS       ops
MITIGATE     quarantine
TARGETS      all, lab
RULES
  conns: alarm when aws:num-established-tcp-connections > 50
"
    );
    assert_eq!(s.json(&["profiles", "show", "P"])["automaticMitigationActions"], json!(["quarantine"]));

    // Edits that cannot apply change nothing.
    let run = s.run(&["profiles", "update", "P", "--remove-rule", "nope"]).failure(1);
    assert_eq!(run.stderr, "warden: security profile P has no behavior named nope\n");
    let run = s
        .run(&[
            "profiles",
            "update",
            "P",
            "--add-rule",
            "conns: alarm when aws:num-established-tcp-connections > 9",
        ])
        .failure(1);
    assert!(run.stderr.starts_with("warden: security profile P already has a behavior named conns; remove it with --remove-rule conns"), "{}", run.stderr);
    let run = s.run(&["profiles", "update", "P", "--description", "x", "--expected-version", "1"]).failure(1);
    assert!(run.stderr.starts_with("warden: VersionConflictException: "), "{}", run.stderr);
    let run = s.run(&["profiles", "update", "P", "--mitigate", "missing"]).failure(1);
    assert_eq!(
        run.stderr,
        "warden: InvalidRequestException: automaticMitigationActions[0]: mitigation action missing does not exist\n"
    );
    let run = s.run(&["actions", "delete", "quarantine"]).failure(1);
    assert!(
        run.stderr.contains("is in the automaticMitigationActions of security profile P"),
        "{}",
        run.stderr
    );

    s.check(&["profiles", "detach", "P", "lab"], "Detached security profile P from thing group lab.\n");
    s.check(&["profiles", "attach", "P", "all"], "Attached security profile P to all things.\n");
    s.run(&["profiles", "update", "P", "--no-mitigate", "--no-alert-topic"]).success();
    assert_eq!(
        show(&s),
        "\
NAME         P
ARN          arn:aws:iot:local:000000000000:securityprofile/P
DESCRIPTION  edited
VERSION      5
TARGETS      all
RULES
  conns: alarm when aws:num-established-tcp-connections > 50
"
    );
    let stored = s.json(&["profiles", "show", "P"]);
    assert!(
        stored.get("automaticMitigationActions").is_none() && stored.get("alertTargets").is_none(),
        "{stored}"
    );

    let run = s.run(&["profiles", "update", "P"]);
    assert_eq!(run.code, Some(2), "an update needs a change: {}", run.stderr);
    s.check(&["profiles", "delete", "P", "--expected-version", "5"], "Deleted security profile P.\n");
    s.check(&["profiles", "list"], "NAME  ARN\n");
    let run = s.run(&["profiles", "show", "P"]).failure(1);
    assert!(run.stderr.starts_with("warden: ResourceNotFoundException: "), "{}", run.stderr);
}

#[test]
fn bad_rules_name_the_bad_word_and_change_nothing() {
    let s = TestServer::start();
    define_metrics(&s);
    let run = s
        .run(&[
            "profiles",
            "create",
            "P",
            "--rule",
            "alarm when aws:all-bytes-out > 1",
            "--rule",
            "alarm when aws:all-bytes-in bigger 35000",
        ])
        .failure(1);
    assert_eq!(
        run.stderr,
        "\
warden: rule 2: expected an operator after aws:all-bytes-in, found 'bigger'; use >, >=, < or <=
  alarm when aws:all-bytes-in bigger 35000
                              ^^^^^^
"
    );
    for (rule, message) in [
        ("alarm when battery > 5", "rule 1: 'battery' is neither an aws: metric nor a defined custom metric"),
        (
            "alarm when battery_pct in {1}",
            "rule 1: battery_pct is a number: expected >, >=, < or <= after it, found 'in'",
        ),
        ("alarm when aws:listening-tcp-ports not in {22, ssh}", "rule 1: 'ssh' is not a port (0 to 65535)"),
        (
            "alarm when aws:all-bytes-out > 1 over 2m",
            "rule 1: the window after 'over' must be 5m, 10m, 15m, 30m or 1h, found '2m'",
        ),
    ] {
        let run = s.run(&["profiles", "create", "P", "--rule", rule]).failure(1);
        assert!(run.stderr.starts_with(&format!("warden: {message}\n")), "{rule}: {}", run.stderr);
    }
    let run = s
        .run(&[
            "profiles",
            "create",
            "P",
            "--rule",
            "alarm when aws:all-bytes-out > 1",
            "--rule",
            "alarm when aws:all-bytes-out > 2",
        ])
        .failure(1);
    assert_eq!(
        run.stderr,
        "warden: rules 1 and 2 are both named all-bytes-out; name one of them ('NAME: alarm when ...')\n"
    );
    // What only the server knows is reported in its words.
    let run = s
        .run(&["profiles", "create", "P", "--rule", "alarm when aws:num-messages-sent > 1 on dimension nope"])
        .failure(1);
    assert_eq!(
        run.stderr,
        "warden: InvalidRequestException: behaviors[0].metricDimension.dimensionName: dimension \"nope\" is not defined\n"
    );
    let run = s
        .run(&[
            "profiles",
            "create",
            "P",
            "--rule",
            "alarm when aws:all-bytes-out > 1",
            "--alert-topic",
            "nope",
        ])
        .failure(1);
    assert_eq!(
        run.stderr,
        "warden: alert topic nope does not exist; create it with `warden topics create nope`\n"
    );
    let run = s.run(&["profiles", "create", "P", "--attach", "nogroup"]).failure(1);
    assert!(
        run.stderr.starts_with("warden: security profile P was created, but attaching it to nogroup failed: ResourceNotFoundException: "),
        "{}",
        run.stderr
    );
    s.check(&["profiles", "list"], "NAME  ARN\nP     arn:aws:iot:local:000000000000:securityprofile/P\n");
}

/// The ARNs the CLI writes itself (targets, roles) are in the server's region and account, which
/// it reads from the ARNs the server reports.
#[test]
fn arns_follow_the_servers_region_and_account() {
    let s = TestServer::start_with(|config| {
        config.region = "eu-west-1".into();
        config.account_id = "123456789012".into();
    });
    s.run(&["topics", "create", "ops"]).success();
    s.run(&["groups", "create", "quarantine"]).success();
    s.run(&["profiles", "create", "P", "--attach", "all", "--attach", "quarantine", "--alert-topic", "ops"])
        .success();
    let targets = s.api("GET", "/security-profiles/P/targets", json!({}));
    assert_eq!(
        targets["securityProfileTargets"],
        json!([
            { "arn": "arn:aws:iot:eu-west-1:123456789012:all/things" },
            { "arn": "arn:aws:iot:eu-west-1:123456789012:thinggroup/quarantine" },
        ])
    );
    assert_eq!(
        s.json(&["profiles", "show", "P"])["alertTargets"]["SNS"],
        json!({ "alertTargetArn": "arn:aws:sns:eu-west-1:123456789012:ops", "roleArn": "arn:aws:iam::123456789012:role/warden" })
    );
    s.run(&["actions", "create", "q", "--add-to-group", "quarantine"]).success();
    assert_eq!(s.json(&["actions", "show", "q"])["roleArn"], "arn:aws:iam::123456789012:role/warden");
}

#[test]
fn new_groups_have_help_with_examples_and_the_rule_syntax() {
    let groups: &[(&str, &[&str])] = &[
        ("profiles", &["create", "list", "show", "update", "delete", "attach", "detach"]),
        ("violations", &["list", "history", "verify"]),
        ("actions", &["create", "list", "show", "delete", "run", "tasks", "task"]),
        ("topics", &["create", "list", "show", "delete", "subscribe", "unsubscribe"]),
    ];
    for (group, commands) in groups {
        let help = warden(&[group, "--help"], None).success().stdout;
        assert!(help.contains("\nExamples:\n"), "warden {group} --help:\n{help}");
        for command in *commands {
            assert!(
                help.contains(&format!("\n  {command} ")),
                "warden {group} --help lacks {command}:\n{help}"
            );
            let help = warden(&[group, command, "--help"], None).success().stdout;
            assert!(help.contains("--endpoint <URL>") && help.contains("--output <OUTPUT>"), "{help}");
        }
    }
    for command in ["create", "update"] {
        let help = warden(&["profiles", command, "--help"], None).success().stdout;
        assert!(help.contains("[NAME:] alarm when METRIC CONDITION [OPTION ...]"), "{help}");
        assert!(help.contains("stored as less-than-equals 35000"), "{help}");
    }
}
