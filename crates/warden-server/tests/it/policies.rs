//! Policies and their targets.

use serde_json::{Value, json};
use warden_server::state::RegistryChange;

use crate::support::{ARN, NOW_MS, Paged, TestServer, collect_pages};

const DOCUMENT: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"arn:aws:iot:local:000000000000:client/${iot:Connection.Thing.ThingName}"}]}"#;

fn create_body() -> Option<Value> {
    Some(json!({ "policyDocument": DOCUMENT }))
}

fn policy_ref(name: &str) -> Value {
    json!({ "policyName": name, "policyArn": format!("{ARN}policy/{name}") })
}

#[tokio::test]
async fn a_policy_is_created_attached_detached_and_deleted() {
    let server = TestServer::start().await;
    let created = server.ok("POST", "/policies/connect-own", create_body()).await;
    assert_eq!(
        created,
        json!({
            "policyName": "connect-own",
            "policyArn": format!("{ARN}policy/connect-own"),
            "policyDocument": DOCUMENT,
            "policyVersionId": "1",
        })
    );
    let changed = || RegistryChange::Policy { policy: "connect-own".into() };
    assert_eq!(server.changes.take(), vec![changed()]);
    let conflict = server.call("POST", "/policies/connect-own", create_body()).await;
    conflict.error(409, "ResourceAlreadyExistsException");
    assert_eq!(conflict.json()["resourceArn"], json!(format!("{ARN}policy/connect-own")));
    assert_eq!(
        server.ok("GET", "/policies/connect-own", None).await,
        json!({
            "policyName": "connect-own",
            "policyArn": format!("{ARN}policy/connect-own"),
            "policyDocument": DOCUMENT,
            "defaultVersionId": "1",
            "creationDate": NOW_MS as f64 / 1000.0,
            "lastModifiedDate": NOW_MS as f64 / 1000.0,
        })
    );

    let id = server.certificate().await;
    server.group("fleet", None).await;
    let cert_arn = format!("{ARN}cert/{id}");
    let group_arn = format!("{ARN}thinggroup/fleet");
    server.changes.take();
    for target in [&cert_arn, &group_arn] {
        assert_eq!(
            server.ok("PUT", "/target-policies/connect-own", Some(json!({ "target": target }))).await,
            json!({})
        );
    }
    // A certificate ARN with an upper-case id names the same target.
    let upper = format!("{ARN}cert/{}", id.to_uppercase());
    server.ok("PUT", "/target-policies/connect-own", Some(json!({ "target": upper }))).await;
    let target =
        |target: &str| RegistryChange::PolicyTarget { policy: "connect-own".into(), target: target.into() };
    assert_eq!(server.changes.take(), vec![target(&cert_arn), target(&group_arn), target(&cert_arn)]);

    let targets = server.ok("POST", "/policy-targets/connect-own", None).await;
    let mut expected = vec![cert_arn.clone(), group_arn.clone()];
    expected.sort();
    assert_eq!(targets, json!({ "targets": expected }));
    let attached = server.ok("POST", &format!("/attached-policies/{}", encode(&cert_arn)), None).await;
    assert_eq!(attached, json!({ "policies": [policy_ref("connect-own")] }));
    let message =
        server.call("DELETE", "/policies/connect-own", None).await.error(409, "DeleteConflictException");
    assert_eq!(message, "policy connect-own is attached to 2 target(s); detach it first");
    // The certificate cannot go while a policy is attached to it either.
    server.ok("PUT", &format!("/certificates/{id}?newStatus=INACTIVE"), None).await;
    server.call("DELETE", &format!("/certificates/{id}"), None).await.error(409, "DeleteConflictException");
    server.changes.take();

    for target in [&cert_arn, &group_arn] {
        assert_eq!(
            server.ok("POST", "/target-policies/connect-own", Some(json!({ "target": target }))).await,
            json!({})
        );
    }
    assert_eq!(server.changes.take(), vec![target(&cert_arn), target(&group_arn)]);
    assert_eq!(server.ok("POST", "/policy-targets/connect-own", None).await, json!({ "targets": [] }));
    assert_eq!(server.ok("DELETE", "/policies/connect-own", None).await, json!({}));
    assert_eq!(server.changes.take(), vec![changed()]);
    server.call("GET", "/policies/connect-own", None).await.error(404, "ResourceNotFoundException");
    server.call("DELETE", "/policies/connect-own", None).await.error(404, "ResourceNotFoundException");
}

#[tokio::test]
async fn policy_documents_warden_cannot_enforce_are_malformed() {
    let server = TestServer::start().await;
    for document in [
        "not json",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"*","Condition":{"Bool":{"x":"true"}}}]}"#,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Perhaps","Action":"iot:Connect","Resource":"*"}]}"#,
    ] {
        let resp = server.call("POST", "/policies/p", Some(json!({ "policyDocument": document }))).await;
        let message = resp.error(400, "MalformedPolicyException");
        assert!(!message.is_empty());
    }
    let message =
        server.call("POST", "/policies/p", Some(json!({}))).await.error(400, "InvalidRequestException");
    assert!(message.contains("missing field `policyDocument`"), "{message}");
    let message =
        server.call("POST", "/policies/a%20b", create_body()).await.error(400, "InvalidRequestException");
    assert_eq!(message, "policyName \"a b\" must be 1 to 128 characters of [a-zA-Z0-9_+=,.@-]");
    server
        .call("POST", "/policies/p", Some(json!({ "policyDocument": DOCUMENT, "tags": [] })))
        .await
        .error(400, "InvalidRequestException");
    assert_eq!(server.changes.take(), vec![]);
}

#[tokio::test]
async fn policy_targets_must_be_certificates_or_groups_that_exist() {
    let server = TestServer::start().await;
    server.ok("POST", "/policies/p", create_body()).await;
    server.thing("t1").await;
    server.changes.take();
    let attach = |target: String| server.call("PUT", "/target-policies/p", Some(json!({ "target": target })));

    let message = attach(format!("{ARN}thing/t1")).await.error(400, "InvalidRequestException");
    assert!(
        message.starts_with(&format!("target \"{ARN}thing/t1\" must be a certificate or thing group ARN")),
        "{message}"
    );
    attach("arn:aws:iot:us-east-1:123456789012:thinggroup/g".into())
        .await
        .error(400, "InvalidRequestException");
    attach(format!("{ARN}cert/xyz")).await.error(400, "InvalidRequestException");
    attach(format!("{ARN}cert/{}", "b".repeat(64))).await.error(404, "ResourceNotFoundException");
    attach(format!("{ARN}thinggroup/nope")).await.error(404, "ResourceNotFoundException");
    server.group("g", None).await;
    let message = server
        .call("PUT", "/target-policies/nope", Some(json!({ "target": format!("{ARN}thinggroup/g") })))
        .await
        .error(404, "ResourceNotFoundException");
    assert_eq!(message, "policy nope does not exist");
    // Detaching needs no existing target, so stale attachments can always be removed.
    server.ok("POST", "/target-policies/p", Some(json!({ "target": format!("{ARN}thinggroup/gone") }))).await;
    let encoded = encode(&format!("{ARN}thinggroup/nope"));
    server
        .call("POST", &format!("/attached-policies/{encoded}"), None)
        .await
        .error(404, "ResourceNotFoundException");
    server.call("POST", "/policy-targets/nope", None).await.error(404, "ResourceNotFoundException");
    assert_eq!(
        server.changes.take(),
        vec![RegistryChange::PolicyTarget { policy: "p".into(), target: format!("{ARN}thinggroup/gone") }]
    );
}

#[tokio::test]
async fn groups_list_inherited_policies_recursively_in_pages() {
    let server = TestServer::start().await;
    server.group("site", None).await;
    server.group("lab", Some("site")).await;
    for (policy, group) in [("a-site", "site"), ("b-lab", "lab"), ("c-site", "site"), ("d-lab", "lab")] {
        server.ok("POST", &format!("/policies/{policy}"), create_body()).await;
        server
            .ok(
                "PUT",
                &format!("/target-policies/{policy}"),
                Some(json!({ "target": format!("{ARN}thinggroup/{group}") })),
            )
            .await;
    }
    let lab = encode(&format!("{ARN}thinggroup/lab"));
    let direct = server.ok("POST", &format!("/attached-policies/{lab}"), None).await;
    assert_eq!(direct, json!({ "policies": [policy_ref("b-lab"), policy_ref("d-lab")] }));
    let name = |p: &Value| p["policyName"].as_str().unwrap().to_owned();
    let target = format!("/attached-policies/{lab}?recursive=true&pageSize=3");
    let (all, pages) = collect_pages(&server, "POST", &target, "policies", Paged::Marker, name).await;
    assert_eq!((all, pages), (vec!["a-site".to_owned(), "b-lab".into(), "c-site".into(), "d-lab".into()], 2));
    let target = format!("/attached-policies/{lab}?recursive=true&marker=zz");
    server.call("POST", &target, None).await.error(400, "InvalidRequestException");

    let (all, pages) =
        collect_pages(&server, "GET", "/policies?pageSize=3", "policies", Paged::Marker, name).await;
    assert_eq!((all.len(), pages), (4, 2));
    let (targets, pages) =
        collect_pages(&server, "POST", "/policy-targets/a-site?pageSize=1", "targets", Paged::Marker, |t| {
            t.to_string()
        })
        .await;
    assert_eq!((targets.len(), pages), (1, 1));
}

/// Percent-encodes a URI label as botocore does.
fn encode(label: &str) -> String {
    warden_server::api::sigv4::encode_component(label)
}
