//! `warden policies`: documents, and their attachment to certificates and thing groups.

use serde_json::json;

use crate::{TestServer, warden};

const DOCUMENT: &str = r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"}]}"#;

#[test]
fn create_get_list_delete() {
    let s = TestServer::start();
    let file = s.path("lab.json");
    std::fs::write(&file, DOCUMENT).unwrap();
    s.check(
        &["policies", "create", "LabPolicy", "--document", file.to_str().unwrap()],
        "
NAME     LabPolicy
ARN      arn:aws:iot:local:000000000000:policy/LabPolicy
VERSION  1
",
    );
    // From standard input.
    let mut args = vec!["policies", "create", "Piped", "--document", "-", "--output", "json"];
    args.extend(["--endpoint", &s.endpoint, "--token", &s.token]);
    let run = warden(&args, Some(DOCUMENT)).success();
    let created: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        created,
        json!({
            "policyName": "Piped",
            "policyArn": "arn:aws:iot:local:000000000000:policy/Piped",
            "policyDocument": DOCUMENT,
            "policyVersionId": "1",
        })
    );

    s.check(
        &["policies", "list"],
        "
NAME               ARN
LabPolicy          arn:aws:iot:local:000000000000:policy/LabPolicy
Piped              arn:aws:iot:local:000000000000:policy/Piped
WardenThingPolicy  arn:aws:iot:local:000000000000:policy/WardenThingPolicy
",
    );
    assert_eq!(s.json(&["policies", "get", "Piped"])["policyDocument"], DOCUMENT);
    let run = s.run(&["policies", "get", "LabPolicy"]).success();
    let (record, document) = run.stdout.split_once("\n\n").unwrap();
    assert!(record.starts_with("NAME      LabPolicy\nARN       arn:aws:iot:local:000000000000:policy/LabPolicy\nVERSION   1\nCREATED   "));
    assert_eq!(document, format!("{DOCUMENT}\n"), "the document is printed as written");

    s.check(&["policies", "delete", "Piped"], "Deleted policy Piped.\n");
    assert_eq!(s.json(&["policies", "list", "--max", "1"])["policies"].as_array().unwrap().len(), 1);

    let bad = s.path("bad.json");
    std::fs::write(&bad, r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Maybe"}]}"#).unwrap();
    let run = s.run(&["policies", "create", "Bad", "--document", bad.to_str().unwrap()]).failure(1);
    assert!(run.stderr.starts_with("warden: MalformedPolicyException: "), "{}", run.stderr);
}

#[test]
fn attach_to_groups_and_certificates() {
    let s = TestServer::start();
    let file = s.path("lab.json");
    std::fs::write(&file, DOCUMENT).unwrap();
    s.run(&["policies", "create", "LabPolicy", "--document", file.to_str().unwrap()]).success();
    s.run(&["groups", "create", "building-1"]).success();
    s.run(&["groups", "create", "floor-2", "--parent", "building-1"]).success();
    s.run(&["things", "create", "dev-1", "--cert-dir", s.path("dev-1").to_str().unwrap()]).success();
    let principals = s.json(&["certs", "list", "--thing", "dev-1"]);
    let cert_arn = principals["principals"][0].as_str().unwrap().to_owned();
    let cert = cert_arn.rsplit_once("cert/").unwrap().1.to_owned();

    s.check(
        &["policies", "attach", "LabPolicy", "--group", "building-1"],
        "Attached policy LabPolicy to thing group building-1.\n",
    );
    s.check(
        &["policies", "attach", "LabPolicy", "--cert", &cert],
        &format!("Attached policy LabPolicy to certificate {cert}.\n"),
    );
    s.check(
        &["policies", "targets", "LabPolicy"],
        &format!(
            "
TARGET
{cert_arn}
arn:aws:iot:local:000000000000:thinggroup/building-1
"
        ),
    );
    // floor-2 inherits building-1's policy.
    s.check(&["policies", "for-group", "floor-2"], "NAME  ARN\n");
    s.check(
        &["policies", "for-group", "floor-2", "--recursive"],
        "NAME       ARN\nLabPolicy  arn:aws:iot:local:000000000000:policy/LabPolicy\n",
    );
    assert_eq!(
        s.json(&["policies", "for-cert", &cert]),
        json!({ "policies": [
            { "policyName": "LabPolicy", "policyArn": "arn:aws:iot:local:000000000000:policy/LabPolicy" },
            { "policyName": "WardenThingPolicy", "policyArn": "arn:aws:iot:local:000000000000:policy/WardenThingPolicy" },
        ]})
    );

    // A certificate may also be named by its ARN.
    s.check(
        &["policies", "detach", "LabPolicy", "--cert", &cert_arn],
        &format!("Detached policy LabPolicy from certificate {cert}.\n"),
    );
    s.check(
        &["policies", "detach", "LabPolicy", "--group", "building-1"],
        "Detached policy LabPolicy from thing group building-1.\n",
    );
    s.check(&["policies", "targets", "LabPolicy"], "TARGET\n");

    let run = s.run(&["policies", "attach", "LabPolicy", "--group", "nowhere"]).failure(1);
    assert!(run.stderr.starts_with("warden: ResourceNotFoundException: "), "{}", run.stderr);
    s.run(&["policies", "attach", "LabPolicy"]).failure(2);
    s.run(&["policies", "attach", "LabPolicy", "--cert", &cert, "--group", "floor-2"]).failure(2);
}
