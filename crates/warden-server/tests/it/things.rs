//! Things: CreateThing, DescribeThing, UpdateThing, DeleteThing, ListThings.

use serde_json::json;
use warden_server::state::RegistryChange;

use crate::support::{ARN, Paged, TestServer, collect_pages, redact};

#[tokio::test]
async fn a_thing_is_created_described_updated_and_deleted() {
    let server = TestServer::start().await;
    let created = server
        .ok(
            "POST",
            "/things/sensor-1",
            Some(json!({ "attributePayload": { "attributes": { "room": "lab" } } })),
        )
        .await;
    let id = created["thingId"].as_str().unwrap().to_owned();
    assert_eq!(
        redact(created, &["/thingId"]),
        json!({ "thingName": "sensor-1", "thingArn": format!("{ARN}thing/sensor-1"), "thingId": "<redacted>" })
    );

    // Creating it again exactly as it is succeeds (AWS), differently does not.
    let again = server
        .ok(
            "POST",
            "/things/sensor-1",
            Some(json!({ "attributePayload": { "attributes": { "room": "lab" } } })),
        )
        .await;
    assert_eq!(again["thingId"], json!(id));
    let conflict = server.call("POST", "/things/sensor-1", None).await;
    conflict.error(409, "ResourceAlreadyExistsException");
    assert_eq!(
        conflict.json(),
        json!({
            "message": "thing sensor-1 already exists",
            "resourceId": "sensor-1",
            "resourceArn": format!("{ARN}thing/sensor-1"),
        })
    );

    let described = server.ok("GET", "/things/sensor-1", None).await;
    assert_eq!(
        described,
        json!({
            "defaultClientId": "sensor-1",
            "thingName": "sensor-1",
            "thingId": id,
            "thingArn": format!("{ARN}thing/sensor-1"),
            "attributes": { "room": "lab" },
            "version": 1,
        })
    );

    // Merge adds and, with an empty value, removes; without merge the attributes are replaced.
    let merge = json!({ "attributePayload": { "attributes": { "floor": "2", "room": "" }, "merge": true } });
    assert_eq!(server.ok("PATCH", "/things/sensor-1", Some(merge)).await, json!({}));
    let described = server.ok("GET", "/things/sensor-1", None).await;
    assert_eq!((&described["attributes"], &described["version"]), (&json!({ "floor": "2" }), &json!(2)));

    let stale = json!({ "attributePayload": { "attributes": { "a": "b" } }, "expectedVersion": 1 });
    let message =
        server.call("PATCH", "/things/sensor-1", Some(stale)).await.error(409, "VersionConflictException");
    assert_eq!(message, "thing sensor-1 is at version 2, not the expected version 1");
    let replace = json!({ "attributePayload": { "attributes": { "a": "b" } }, "expectedVersion": 2 });
    server.ok("PATCH", "/things/sensor-1", Some(replace)).await;
    let described = server.ok("GET", "/things/sensor-1", None).await;
    assert_eq!((&described["attributes"], &described["version"]), (&json!({ "a": "b" }), &json!(3)));
    assert_eq!(server.changes.take(), vec![], "attributes do not change permissions");

    server
        .call("DELETE", "/things/sensor-1?expectedVersion=2", None)
        .await
        .error(409, "VersionConflictException");
    assert_eq!(server.ok("DELETE", "/things/sensor-1?expectedVersion=3", None).await, json!({}));
    assert_eq!(server.changes.take(), vec![RegistryChange::ThingDeleted { thing: "sensor-1".into() }]);
    let message = server.call("GET", "/things/sensor-1", None).await.error(404, "ResourceNotFoundException");
    assert_eq!(message, "thing sensor-1 does not exist");
    // Deleting a thing that does not exist succeeds, as in AWS, and changes nothing.
    server.ok("DELETE", "/things/sensor-1", None).await;
    assert_eq!(server.changes.take(), vec![]);
    server.call("PATCH", "/things/sensor-1", None).await.error(404, "ResourceNotFoundException");
}

#[tokio::test]
async fn things_with_colons_and_dashes_round_trip_through_encoded_paths() {
    let server = TestServer::start().await;
    server.ok("POST", "/things/arn%3Alike_name-1", None).await;
    assert_eq!(
        server.ok("GET", "/things/arn%3Alike_name-1", None).await["thingName"],
        json!("arn:like_name-1")
    );
}

#[tokio::test]
async fn things_are_listed_in_pages_and_filtered_by_attribute() {
    let server = TestServer::start().await;
    for i in 0..7 {
        let attributes = json!({ "attributePayload": { "attributes": { "kind": if i % 2 == 0 { "even" } else { "odd" } } } });
        server.ok("POST", &format!("/things/t{i}"), Some(attributes)).await;
    }
    let name = |t: &serde_json::Value| t["thingName"].as_str().unwrap().to_owned();
    let (names, pages) =
        collect_pages(&server, "GET", "/things?maxResults=3", "things", Paged::Token, name).await;
    assert_eq!(
        (names, pages),
        (vec!["t0", "t1", "t2", "t3", "t4", "t5", "t6"].into_iter().map(String::from).collect(), 3)
    );

    let page = server.ok("GET", "/things?attributeName=kind&attributeValue=odd", None).await;
    assert_eq!(
        page,
        json!({ "things": [
            { "thingName": "t1", "thingArn": format!("{ARN}thing/t1"), "attributes": { "kind": "odd" }, "version": 1 },
            { "thingName": "t3", "thingArn": format!("{ARN}thing/t3"), "attributes": { "kind": "odd" }, "version": 1 },
            { "thingName": "t5", "thingArn": format!("{ARN}thing/t5"), "attributes": { "kind": "odd" }, "version": 1 },
        ]})
    );
    assert_eq!(server.ok("GET", "/things?attributeName=colour", None).await, json!({ "things": [] }));
}

#[tokio::test]
async fn bad_thing_input_is_refused_with_a_message_naming_the_field() {
    let server = TestServer::start().await;
    let check = |method: &'static str,
                 target: &'static str,
                 body: Option<serde_json::Value>,
                 expect: &'static str| {
        let server = &server;
        async move {
            let message = server.call(method, target, body).await.error(400, "InvalidRequestException");
            assert!(message.contains(expect), "{method} {target}: {message:?} should contain {expect:?}");
        }
    };
    check("POST", "/things/bad%20name", None, "thingName \"bad name\" must be 1 to 128 characters").await;
    check("GET", "/things/bad.name", None, "thingName \"bad.name\"").await;
    check("POST", "/things/t", Some(json!({ "thingTypeName": "bulb" })), "unknown field `thingTypeName`")
        .await;
    check(
        "POST",
        "/things/t",
        Some(json!({ "attributePayload": { "attributes": { "a b": "1" } } })),
        "name \"a b\"",
    )
    .await;
    check(
        "POST",
        "/things/t",
        Some(json!({ "attributePayload": { "attributes": { "a": "x y" } } })),
        "value of \"a\"",
    )
    .await;
    check(
        "POST",
        "/things/t",
        Some(json!({ "attributePayload": { "attributes": { "a": 1 } } })),
        "request body",
    )
    .await;
    check("PATCH", "/things/t", Some(json!({ "expectedVersion": -1 })), "request body").await;
    check("GET", "/things?maxResults=0", None, "maxResults must be between 1 and 250").await;
    check("GET", "/things?maxResults=251", None, "maxResults must be between 1 and 250").await;
    check("GET", "/things?maxResults=ten", None, "maxResults must be between 1 and 250").await;
    check("GET", "/things?nextToken=zz", None, "malformed next_token").await;
    check("GET", "/things?attributeValue=x", None, "attributeValue requires attributeName").await;
    check("GET", "/things?thingTypeName=bulb", None, "query parameter thingTypeName is not supported").await;
    check("DELETE", "/things/t?expectedVersion=one", None, "expectedVersion must be a whole number").await;
    let many: serde_json::Map<String, serde_json::Value> =
        (0..51).map(|i| (format!("a{i}"), json!("v"))).collect();
    check("POST", "/things/t", Some(json!({ "attributePayload": { "attributes": many } })), "at most 50")
        .await;

    let malformed = server
        .raw(
            "POST",
            "/things/t",
            &[("authorization", &format!("Bearer {}", crate::support::TOKEN))],
            b"{".to_vec(),
        )
        .await;
    assert!(malformed.error(400, "InvalidRequestException").starts_with("request body: EOF while parsing"));
}
