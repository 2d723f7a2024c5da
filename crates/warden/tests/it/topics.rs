//! `warden topics`: alert topics and their subscriptions, with the delivery counters written into
//! the server's store as its alert delivery writes them.

use serde_json::json;

use crate::TestServer;
use crate::violations::T0_MS;

#[test]
fn topics_and_subscriptions() {
    let s = TestServer::start();
    let run = s.run(&["topics", "create", "ops"]).success();
    assert!(
        run.stdout.starts_with("NAME     ops\nARN      arn:aws:sns:local:000000000000:ops\nCREATED  20"),
        "{}",
        run.stdout
    );
    s.run(&["topics", "create", "audit"]).success();
    let run = s.run(&["topics", "create", "ops"]).failure(1);
    assert!(run.stderr.starts_with("warden: ResourceAlreadyExistsException: "), "{}", run.stderr);

    let hook = s.json(&["topics", "subscribe", "ops", "http://127.0.0.1:9/hook"]);
    let hook_id = hook["subscriptionId"].as_str().unwrap().to_owned();
    assert_eq!(hook["protocol"], "http");
    let run = s.run(&["topics", "subscribe", "ops", "mqtt:warden/alerts"]).success();
    let mqtt_id = run
        .stdout
        .strip_prefix("Subscribed mqtt:warden/alerts to alert topic ops (subscription ")
        .and_then(|rest| rest.strip_suffix(").\n"))
        .unwrap_or_else(|| panic!("{}", run.stdout))
        .to_owned();
    // Subscribing again changes nothing.
    assert_eq!(
        s.json(&["topics", "subscribe", "ops", "http://127.0.0.1:9/hook"])["subscriptionId"],
        hook_id.as_str()
    );

    // A failed delivery, then a delivered one, as the alert sender records them.
    s.block_on(s.store().record_delivery(&hook_id, false, Some("connection refused"), T0_MS)).unwrap();
    s.block_on(s.store().record_delivery(&mqtt_id, true, None, T0_MS + 1000)).unwrap();
    let run = s.run(&["topics", "show", "ops"]).success();
    let (record, table) = run.stdout.split_once("\n\n").unwrap();
    assert!(
        record.starts_with("NAME     ops\nARN      arn:aws:sns:local:000000000000:ops\nCREATED  20"),
        "{record}"
    );
    let id_width = hook_id.len().max("SUBSCRIPTION".len());
    let pad = |s: &str| format!("{s:<id_width$}");
    assert_eq!(
        table,
        format!(
            "\
{}  PROTOCOL  ENDPOINT                 DELIVERED  FAILED  LAST ATTEMPT          LAST ERROR
{}  http      http://127.0.0.1:9/hook  0          1       2026-01-15T10:00:00Z  connection refused
{}  mqtt      warden/alerts            1          0       2026-01-15T10:00:01Z  -
",
            pad("SUBSCRIPTION"),
            pad(&hook_id),
            pad(&mqtt_id)
        )
    );
    let shown = s.json(&["topics", "show", "ops"]);
    assert_eq!(shown["subscriptions"][0]["lastError"], "connection refused");
    assert_eq!(shown["subscriptions"][1]["delivered"], 1);

    let listed = s.json(&["topics", "list"]);
    let names: Vec<&str> =
        listed["topics"].as_array().unwrap().iter().map(|t| t["topicName"].as_str().unwrap()).collect();
    assert_eq!(names, ["audit", "ops"]);
    let run = s.run(&["topics", "list", "--max", "1"]).success();
    assert!(run.stdout.starts_with("NAME   ARN"), "{}", run.stdout);
    assert!(run.stdout.ends_with("(more not shown: raise --max)\n"), "{}", run.stdout);

    s.check(&["topics", "unsubscribe", &hook_id], &format!("Removed subscription {hook_id}.\n"));
    assert_eq!(s.json(&["topics", "show", "ops"])["subscriptions"].as_array().unwrap().len(), 1);
    let run = s.run(&["topics", "show", "audit"]).success();
    assert!(
        run.stdout.ends_with("\nNo subscriptions: subscribe with `warden topics subscribe audit URL`.\n"),
        "{}",
        run.stdout
    );

    // Endpoints: the CLI tells the protocol from the form, the server checks the rest.
    let run = s.run(&["topics", "subscribe", "ops", "ftp://example.com"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("expected an http:// or https:// URL, or mqtt:TOPIC"), "{}", run.stderr);
    let run = s.run(&["topics", "subscribe", "ops", "mqtt:alerts/#"]).failure(1);
    assert_eq!(
        run.stderr,
        "warden: InvalidRequestException: endpoint \"alerts/#\" must be an MQTT topic name, without the wildcards + and #\n"
    );
    let run = s.run(&["topics", "subscribe", "nope", "mqtt:alerts"]).failure(1);
    assert!(run.stderr.starts_with("warden: ResourceNotFoundException: "), "{}", run.stderr);

    s.check(&["topics", "delete", "ops"], "Deleted alert topic ops.\n");
    let run = s.run(&["topics", "show", "ops"]).failure(1);
    assert!(run.stderr.starts_with("warden: ResourceNotFoundException: "), "{}", run.stderr);
    assert_eq!(s.json(&["topics", "delete", "audit"]), json!({}));
}
