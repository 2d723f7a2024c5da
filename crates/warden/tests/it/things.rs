//! `warden things`: onboarding with `--cert-dir`, list, describe, update, delete, pagination.

use std::os::unix::fs::PermissionsExt as _;

use serde_json::{Value, json};
use x509_parser::pem::parse_x509_pem;

use crate::TestServer;

/// The id of the one certificate attached to `thing`.
fn only_certificate(s: &TestServer, thing: &str) -> String {
    let reply = s.json(&["certs", "list", "--thing", thing]);
    let principals = reply["principals"].as_array().unwrap();
    assert_eq!(principals.len(), 1, "{reply}");
    principals[0].as_str().unwrap().rsplit_once("cert/").unwrap().1.to_owned()
}

#[test]
fn create_with_cert_dir_writes_the_things_identity() {
    let s = TestServer::start();
    let run = s
        .run_in(s.dir.path(), &["things", "create", "dev-1", "--attr", "site=lab", "--cert-dir", "dev-1"])
        .success();
    let id = only_certificate(&s, "dev-1");
    assert_eq!(
        run.stdout,
        format!(
            "\
THING        dev-1
ARN          arn:aws:iot:local:000000000000:thing/dev-1
CERTIFICATE  {id}
POLICY       WardenThingPolicy
CA           dev-1/ca.pem
CERT         dev-1/dev-1.crt
KEY          dev-1/dev-1.key

Start the agent on the device:
  warden-agent --thing dev-1 --endpoint 127.0.0.1 --port 8883 --ca dev-1/ca.pem --cert dev-1/dev-1.crt --key dev-1/dev-1.key
"
        )
    );

    let dir = s.path("dev-1");
    let ca_pem = std::fs::read_to_string(dir.join("ca.pem")).unwrap();
    let cert_pem = std::fs::read_to_string(dir.join("dev-1.crt")).unwrap();
    let key_pem = std::fs::read_to_string(dir.join("dev-1.key")).unwrap();
    let key_mode = std::fs::metadata(dir.join("dev-1.key")).unwrap().permissions().mode();
    assert_eq!(key_mode & 0o777, 0o600, "the private key must be readable by its owner only");

    // The CA the server's data dir holds, which also signs the MQTT endpoint's certificate.
    assert_eq!(ca_pem, std::fs::read_to_string(s.data_dir.join("pki/ca.crt")).unwrap());
    let (_, ca) = parse_x509_pem(ca_pem.as_bytes()).unwrap();
    let ca = ca.parse_x509().unwrap();
    let (_, cert) = parse_x509_pem(cert_pem.as_bytes()).unwrap();
    let cert = cert.parse_x509().unwrap();
    let cn = cert.subject().iter_common_name().next().unwrap().as_str().unwrap();
    assert_eq!(cn, "dev-1", "the broker takes the thing name from the CN");
    cert.verify_signature(Some(ca.public_key())).expect("the certificate is signed by ca.pem");
    let key = rcgen::KeyPair::from_pem(&key_pem).unwrap();
    assert_eq!(
        key.public_key_raw(),
        &cert.public_key().subject_public_key.data[..],
        "the key is the certificate's"
    );

    // Registered as the thing's active certificate, with the default thing policy.
    assert_eq!(s.json(&["certs", "describe", &id])["certificateDescription"]["status"], "ACTIVE");
    s.check(
        &["policies", "for-cert", &id],
        "
NAME               ARN
WardenThingPolicy  arn:aws:iot:local:000000000000:policy/WardenThingPolicy
",
    );
    assert_eq!(s.json(&["things", "describe", "dev-1"])["attributes"], json!({ "site": "lab" }));
}

#[test]
fn create_with_group_and_policy_in_json() {
    let s = TestServer::start();
    s.run(&["groups", "create", "lab"]).success();
    let policy = s.path("policy.json");
    std::fs::write(
        &policy,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"*"}]}"#,
    )
    .unwrap();
    s.run(&["policies", "create", "Open", "--document", policy.to_str().unwrap()]).success();
    let dir = s.path("certs");
    let reply = s.json(&[
        "things",
        "create",
        "dev-1",
        "--group",
        "lab",
        "--policy",
        "Open",
        "--cert-dir",
        dir.to_str().unwrap(),
    ]);
    let id = only_certificate(&s, "dev-1");
    assert_eq!(
        reply,
        json!({
            "thingName": "dev-1",
            "thingArn": "arn:aws:iot:local:000000000000:thing/dev-1",
            "thingId": reply["thingId"],
            "thingGroupName": "lab",
            "certificateId": id,
            "certificateArn": format!("arn:aws:iot:local:000000000000:cert/{id}"),
            "policyName": "Open",
            "files": {
                "ca": dir.join("ca.pem").to_str().unwrap(),
                "certificate": dir.join("dev-1.crt").to_str().unwrap(),
                "privateKey": dir.join("dev-1.key").to_str().unwrap(),
            },
        })
    );
    assert!(reply["thingId"].as_str().is_some_and(|id| !id.is_empty()));
    s.check(&["groups", "things", "lab"], "THING\ndev-1\n");
    s.check(&["policies", "for-cert", &id], "NAME  ARN\nOpen  arn:aws:iot:local:000000000000:policy/Open\n");
}

#[test]
fn create_refuses_to_overwrite_a_key_before_creating_anything() {
    let s = TestServer::start();
    let dir = s.path("dev-1");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("dev-1.key"), "precious").unwrap();
    let run = s.run(&["things", "create", "dev-1", "--cert-dir", dir.to_str().unwrap()]).failure(1);
    assert!(run.stderr.contains("dev-1.key already exists"), "{}", run.stderr);
    assert_eq!(std::fs::read_to_string(dir.join("dev-1.key")).unwrap(), "precious");
    assert_eq!(s.json(&["things", "list"]), json!({ "things": [] }));
    assert_eq!(s.json(&["certs", "list"]), json!({ "certificates": [] }));
}

#[test]
fn list_describe_update_delete() {
    let s = TestServer::start();
    s.run(&["things", "create", "dev-1", "--attr", "site=lab", "--attr", "model=x1"]).success();
    s.check(
        &["things", "create", "dev-2"],
        "
THING  dev-2
ARN    arn:aws:iot:local:000000000000:thing/dev-2
",
    );
    s.run(&["things", "create", "dev-3", "--attr", "site=home"]).success();

    s.check(
        &["things", "list"],
        "
NAME   VERSION  ATTRIBUTES
dev-1  1        model=x1,site=lab
dev-2  1        -
dev-3  1        site=home
",
    );
    s.check(
        &["things", "list", "--attr", "site=lab"],
        "NAME   VERSION  ATTRIBUTES\ndev-1  1        model=x1,site=lab\n",
    );
    let with_site = s.json(&["things", "list", "--attr", "site"]);
    let names: Vec<&str> =
        with_site["things"].as_array().unwrap().iter().map(|t| t["thingName"].as_str().unwrap()).collect();
    assert_eq!(names, ["dev-1", "dev-3"]);
    assert_eq!(
        s.json(&["things", "list", "--attr", "site=home"]),
        json!({ "things": [{
            "thingName": "dev-3",
            "thingArn": "arn:aws:iot:local:000000000000:thing/dev-3",
            "attributes": { "site": "home" },
            "version": 1,
        }]})
    );

    let described = s.json(&["things", "describe", "dev-1"]);
    let thing_id = described["thingId"].as_str().unwrap();
    assert_eq!(
        described,
        json!({
            "thingName": "dev-1",
            "thingId": thing_id,
            "thingArn": "arn:aws:iot:local:000000000000:thing/dev-1",
            "defaultClientId": "dev-1",
            "attributes": { "model": "x1", "site": "lab" },
            "version": 1,
        })
    );
    s.check(
        &["things", "describe", "dev-1"],
        &format!(
            "
NAME        dev-1
ID          {thing_id}
ARN         arn:aws:iot:local:000000000000:thing/dev-1
VERSION     1
ATTRIBUTES  model=x1,site=lab
"
        ),
    );

    // Merged: `site=` removes site, firmware is added, model stays.
    s.check(
        &["things", "update", "dev-1", "--attr", "site=", "--attr", "firmware=1.2.0"],
        "Updated thing dev-1.\n",
    );
    let updated = s.json(&["things", "describe", "dev-1"]);
    assert_eq!(updated["attributes"], json!({ "firmware": "1.2.0", "model": "x1" }));
    assert_eq!(updated["version"], 2);
    assert_eq!(s.json(&["things", "update", "dev-1", "--attr", "a=b", "--replace"]), json!({}));
    assert_eq!(s.json(&["things", "describe", "dev-1"])["attributes"], json!({ "a": "b" }));

    s.check(&["things", "delete", "dev-2"], "Deleted thing dev-2.\n");
    s.check(&["things", "delete", "dev-2"], "Deleted thing dev-2.\n");
    s.check(
        &["things", "list"],
        "
NAME   VERSION  ATTRIBUTES
dev-1  3        a=b
dev-3  1        site=home
",
    );
}

#[test]
fn list_follows_every_page_and_max_stops_early() {
    let s = TestServer::start();
    // More than one page of the largest size (250), created over HTTP: faster than 260 runs.
    let agent = ureq::Agent::new_with_defaults();
    for i in 0..260 {
        agent
            .post(format!("{}/things/t-{i:03}", s.endpoint))
            .header("authorization", format!("Bearer {}", s.token))
            .send_empty()
            .unwrap();
    }
    let all = s.json(&["things", "list"]);
    let names: Vec<&str> =
        all["things"].as_array().unwrap().iter().map(|t| t["thingName"].as_str().unwrap()).collect();
    let expected: Vec<String> = (0..260).map(|i| format!("t-{i:03}")).collect();
    assert_eq!(names, expected);
    assert_eq!(all.get("nextToken"), None);

    let first = s.json(&["things", "list", "--max", "2"]);
    assert_eq!(first["things"].as_array().unwrap().len(), 2);
    assert!(first["nextToken"].is_string(), "{first}");
    s.check(
        &["things", "list", "--max", "2"],
        "
NAME   VERSION  ATTRIBUTES
t-000  1        -
t-001  1        -
(more not shown: raise --max)
",
    );
    let run = s.run(&["things", "list", "--max", "0"]).failure(2);
    assert!(run.stderr.contains("--max"), "{}", run.stderr);
}

#[test]
fn delete_with_certs_retires_the_certificates_no_other_thing_uses() {
    let s = TestServer::start();
    s.run(&["things", "create", "dev-1", "--cert-dir", s.path("a").to_str().unwrap()]).success();
    s.run(&["things", "create", "dev-2", "--cert-dir", s.path("b").to_str().unwrap()]).success();
    let own = only_certificate(&s, "dev-1");
    let shared = only_certificate(&s, "dev-2");
    s.check(
        &["certs", "attach", &shared, "dev-1"],
        &format!("Attached certificate {shared} to thing dev-1.\n"),
    );

    let run = s.run(&["things", "delete", "dev-1", "--with-certs"]).success();
    let mut lines: Vec<&str> = run.stdout.lines().collect();
    lines.sort();
    let (deleted, kept) =
        (format!("Deleted certificate {own}."), format!("Detached certificate {shared}; kept it for dev-2."));
    let mut expected = vec![deleted.as_str(), "Deleted thing dev-1.", kept.as_str()];
    expected.sort();
    assert_eq!(lines, expected);

    let certificates: Vec<Value> = s.json(&["certs", "list"])["certificates"].as_array().unwrap().clone();
    assert_eq!(certificates.len(), 1);
    assert_eq!(certificates[0]["certificateId"], shared.as_str());
    assert_eq!(certificates[0]["status"], "ACTIVE", "dev-2 still connects with it");
    s.check(
        &["policies", "targets", "WardenThingPolicy"],
        &format!("TARGET\narn:aws:iot:local:000000000000:cert/{shared}\n"),
    );
    assert_eq!(s.json(&["things", "list"])["things"].as_array().unwrap().len(), 1);
}
