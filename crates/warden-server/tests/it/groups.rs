//! Thing groups: their hierarchy, membership, lists and deletion.

use serde_json::{Value, json};
use warden_server::state::RegistryChange;

use crate::support::{ARN, NOW_MS, Paged, TestServer, collect_pages, redact};

fn group_ref(name: &str) -> Value {
    json!({ "groupName": name, "groupArn": format!("{ARN}thinggroup/{name}") })
}

fn names(list: &Value, key: &str) -> Vec<String> {
    list[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().map_or_else(|| v["groupName"].as_str().unwrap().to_owned(), str::to_owned))
        .collect()
}

#[tokio::test]
async fn groups_nest_and_describe_their_ancestry() {
    let server = TestServer::start().await;
    let created = server.ok("POST", "/thing-groups/site", None).await;
    assert_eq!(
        redact(created, &["/thingGroupId"]),
        json!({ "thingGroupName": "site", "thingGroupArn": format!("{ARN}thinggroup/site"), "thingGroupId": "<redacted>" })
    );
    server.group("floor-1", Some("site")).await;
    let properties = json!({
        "parentGroupName": "floor-1",
        "thingGroupProperties": { "thingGroupDescription": "The lab", "attributePayload": { "attributes": { "k": "v" } } },
    });
    server.ok("POST", "/thing-groups/lab", Some(properties.clone())).await;
    // Again, exactly as it is: success (AWS); otherwise a conflict.
    server.ok("POST", "/thing-groups/lab", Some(properties)).await;
    server.call("POST", "/thing-groups/lab", None).await.error(409, "ResourceAlreadyExistsException");

    let described = server.ok("GET", "/thing-groups/lab", None).await;
    assert_eq!(
        redact(described, &["/thingGroupId"]),
        json!({
            "thingGroupName": "lab",
            "thingGroupId": "<redacted>",
            "thingGroupArn": format!("{ARN}thinggroup/lab"),
            "version": 1,
            "thingGroupProperties": {
                "thingGroupDescription": "The lab",
                "attributePayload": { "attributes": { "k": "v" } },
            },
            "thingGroupMetadata": {
                "parentGroupName": "floor-1",
                "rootToParentThingGroups": [group_ref("site"), group_ref("floor-1")],
                "creationDate": NOW_MS as f64 / 1000.0,
            },
        })
    );
    let root = server.ok("GET", "/thing-groups/site", None).await;
    assert_eq!(
        (&root["thingGroupProperties"], &root["thingGroupMetadata"]),
        (&json!({}), &json!({ "creationDate": NOW_MS as f64 / 1000.0 }))
    );

    let update = json!({ "thingGroupProperties": { "thingGroupDescription": "" }, "expectedVersion": 1 });
    assert_eq!(server.ok("PATCH", "/thing-groups/lab", Some(update.clone())).await, json!({ "version": 2 }));
    server.call("PATCH", "/thing-groups/lab", Some(update)).await.error(409, "VersionConflictException");
    let described = server.ok("GET", "/thing-groups/lab", None).await;
    assert_eq!(
        described["thingGroupProperties"],
        json!({ "attributePayload": { "attributes": { "k": "v" } } })
    );
    let message = server
        .call("PATCH", "/thing-groups/lab", Some(json!({})))
        .await
        .error(400, "InvalidRequestException");
    assert!(message.contains("missing field `thingGroupProperties`"), "{message}");
    server
        .call("PATCH", "/thing-groups/nope", Some(json!({ "thingGroupProperties": {} })))
        .await
        .error(404, "ResourceNotFoundException");
    let message = server
        .call("POST", "/thing-groups/x", Some(json!({ "parentGroupName": "nope" })))
        .await
        .error(404, "ResourceNotFoundException");
    assert_eq!(message, "thing group nope does not exist");
    let message = server
        .call(
            "POST",
            "/thing-groups/x",
            Some(json!({ "thingGroupProperties": { "thingGroupDescription": "a\nb" } })),
        )
        .await
        .error(400, "InvalidRequestException");
    assert!(message.contains("thingGroupDescription"), "{message}");
    server
        .call("POST", "/thing-groups/x", Some(json!({ "tags": [] })))
        .await
        .error(400, "InvalidRequestException");

    let all = server.ok("GET", "/thing-groups", None).await;
    assert_eq!(all, json!({ "thingGroups": [group_ref("floor-1"), group_ref("lab"), group_ref("site")] }));
    let children = server.ok("GET", "/thing-groups?parentGroup=site", None).await;
    assert_eq!(names(&children, "thingGroups"), ["floor-1"]);
    let descendants = server.ok("GET", "/thing-groups?parentGroup=site&recursive=true", None).await;
    assert_eq!(names(&descendants, "thingGroups"), ["floor-1", "lab"]);
    let prefixed = server.ok("GET", "/thing-groups?namePrefixFilter=fl", None).await;
    assert_eq!(names(&prefixed, "thingGroups"), ["floor-1"]);
    server.call("GET", "/thing-groups?parentGroup=nope", None).await.error(404, "ResourceNotFoundException");
    server.call("GET", "/thing-groups?recursive=yes", None).await.error(400, "InvalidRequestException");
    let (all, pages) =
        collect_pages(&server, "GET", "/thing-groups?maxResults=2", "thingGroups", Paged::Token, |g| {
            g["groupName"].as_str().unwrap().to_owned()
        })
        .await;
    assert_eq!((all, pages), (vec!["floor-1".to_owned(), "lab".into(), "site".into()], 2));
    assert_eq!(server.changes.take(), vec![], "creating and updating groups changes no permission");
}

#[tokio::test]
async fn things_join_and_leave_groups_by_name_or_arn() {
    let server = TestServer::start().await;
    server.group("site", None).await;
    server.group("lab", Some("site")).await;
    server.thing("t1").await;
    server.thing("t2").await;

    let add = |body: Value| server.call("PUT", "/thing-groups/addThingToThingGroup", Some(body));
    assert_eq!(add(json!({ "thingGroupName": "site", "thingName": "t1" })).await.json(), json!({}));
    let by_arn =
        json!({ "thingGroupArn": format!("{ARN}thinggroup/lab"), "thingArn": format!("{ARN}thing/t2") });
    assert_eq!(add(by_arn.clone()).await.status, 200);
    assert_eq!(add(by_arn).await.status, 200, "adding again is no error");
    let joined = |thing: &str| RegistryChange::ThingGroups { thing: thing.into() };
    assert_eq!(server.changes.take(), vec![joined("t1"), joined("t2"), joined("t2")]);

    assert_eq!(server.ok("GET", "/thing-groups/site/things", None).await, json!({ "things": ["t1"] }));
    assert_eq!(
        server.ok("GET", "/thing-groups/site/things?recursive=true", None).await,
        json!({ "things": ["t1", "t2"] })
    );
    let first = server.ok("GET", "/thing-groups/site/things?recursive=true&maxResults=1", None).await;
    assert_eq!(first["things"], json!(["t1"]));
    let token = first["nextToken"].as_str().unwrap();
    let second = server
        .ok("GET", &format!("/thing-groups/site/things?recursive=true&maxResults=1&nextToken={token}"), None)
        .await;
    assert_eq!(second, json!({ "things": ["t2"] }));
    assert_eq!(
        server.ok("GET", "/things/t2/thing-groups", None).await,
        json!({ "thingGroups": [group_ref("lab")] })
    );

    let remove = json!({ "thingGroupName": "lab", "thingArn": format!("{ARN}thing/t2") });
    assert_eq!(server.ok("PUT", "/thing-groups/removeThingFromThingGroup", Some(remove)).await, json!({}));
    assert_eq!(server.ok("GET", "/things/t2/thing-groups", None).await, json!({ "thingGroups": [] }));
    assert_eq!(server.changes.take(), vec![joined("t2")]);

    let message = add(json!({ "thingGroupName": "nope", "thingName": "t1" }))
        .await
        .error(404, "ResourceNotFoundException");
    assert_eq!(message, "thing group nope does not exist");
    add(json!({ "thingGroupName": "site", "thingName": "nope" }))
        .await
        .error(404, "ResourceNotFoundException");
    let message = add(json!({ "thingName": "t1" })).await.error(400, "InvalidRequestException");
    assert_eq!(message, "thingGroupName or thingGroupArn is required");
    let message = add(json!({ "thingGroupArn": format!("{ARN}thing/t1"), "thingName": "t1" }))
        .await
        .error(400, "InvalidRequestException");
    assert!(message.contains("is not a thinggroup ARN of this server"), "{message}");
    let other_account =
        json!({ "thingGroupArn": "arn:aws:iot:us-east-1:123456789012:thinggroup/site", "thingName": "t1" });
    add(other_account).await.error(400, "InvalidRequestException");
    let disagree = json!({ "thingGroupName": "lab", "thingGroupArn": format!("{ARN}thinggroup/site"), "thingName": "t1" });
    add(disagree).await.error(400, "InvalidRequestException");
    server.call("GET", "/thing-groups/nope/things", None).await.error(404, "ResourceNotFoundException");
    server.call("GET", "/things/nope/thing-groups", None).await.error(404, "ResourceNotFoundException");
    server.call("PUT", "/thing-groups/site", Some(json!({}))).await.error(405, "MethodNotAllowedException");
    assert_eq!(server.changes.take(), vec![]);

    // A group may be named like the two operations and is still reachable by its other methods.
    server.group("addThingToThingGroup", None).await;
    assert_eq!(
        server.ok("GET", "/thing-groups/addThingToThingGroup", None).await["thingGroupName"],
        json!("addThingToThingGroup")
    );
}

#[tokio::test]
async fn deleting_a_group_drops_its_memberships_and_policies() {
    let server = TestServer::start().await;
    server.group("site", None).await;
    server.group("lab", Some("site")).await;
    server.thing("t1").await;
    server
        .ok(
            "PUT",
            "/thing-groups/addThingToThingGroup",
            Some(json!({ "thingGroupName": "lab", "thingName": "t1" })),
        )
        .await;
    let document =
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"*"}]}"#;
    server.ok("POST", "/policies/p", Some(json!({ "policyDocument": document }))).await;
    server.ok("PUT", "/target-policies/p", Some(json!({ "target": format!("{ARN}thinggroup/lab") }))).await;
    server.changes.take();

    let message =
        server.call("DELETE", "/thing-groups/site", None).await.error(409, "DeleteConflictException");
    assert_eq!(message, "thing group site has 1 child group(s); delete them first");
    server
        .call("DELETE", "/thing-groups/lab?expectedVersion=2", None)
        .await
        .error(409, "VersionConflictException");
    assert_eq!(server.ok("DELETE", "/thing-groups/lab?expectedVersion=1", None).await, json!({}));
    assert_eq!(
        server.changes.take(),
        vec![
            RegistryChange::ThingGroupDeleted { group: "lab".into() },
            RegistryChange::PolicyTarget { policy: "p".into(), target: format!("{ARN}thinggroup/lab") }
        ]
    );
    assert_eq!(server.ok("GET", "/things/t1/thing-groups", None).await, json!({ "thingGroups": [] }));
    assert_eq!(server.ok("POST", "/policy-targets/p", None).await, json!({ "targets": [] }));

    // Deleting a group that does not exist succeeds and changes nothing.
    server.ok("DELETE", "/thing-groups/lab", None).await;
    assert_eq!(server.changes.take(), vec![]);
    server.ok("DELETE", "/thing-groups/site", None).await;
    server.call("GET", "/thing-groups/site", None).await.error(404, "ResourceNotFoundException");
}
