//! `warden certs`: issuing, registering, status changes, attachment and deletion.

use serde_json::json;
use warden_testkit::{KeyKind, Pki};

use crate::TestServer;

#[test]
fn register_activate_attach_delete() {
    let s = TestServer::start();
    let pki = Pki::new();
    let device = pki.client("byo-1", KeyKind::EcdsaP256);
    s.run(&["things", "create", "byo-1"]).success();

    let registered = s.json(&[
        "certs",
        "register",
        "--cert-pem",
        device.cert_path.to_str().unwrap(),
        "--ca-pem",
        pki.ca_pem_path().to_str().unwrap(),
    ]);
    let id = registered["certificateId"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 64);
    assert_eq!(registered["certificateArn"], format!("arn:aws:iot:local:000000000000:cert/{id}"));

    let described = s.json(&["certs", "describe", &id]);
    assert_eq!(described["certificateDescription"]["status"], "INACTIVE");
    assert_eq!(described["certificateDescription"]["certificatePem"], device.cert_pem.as_str());
    let run = s.run(&["certs", "describe", &id]).success();
    let fields: Vec<&str> = run.stdout.lines().map(|l| l.split("  ").next().unwrap()).collect();
    assert_eq!(
        fields,
        ["ID", "ARN", "STATUS", "CA", "CREATED", "MODIFIED", "NOT BEFORE", "NOT AFTER"],
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("\nSTATUS      INACTIVE\n"), "{}", run.stdout);

    s.check(&["certs", "activate", &id], &format!("Certificate {id} is now ACTIVE.\n"));
    s.check(&["certs", "attach", &id, "byo-1"], &format!("Attached certificate {id} to thing byo-1.\n"));
    s.check(
        &["certs", "list", "--thing", "byo-1"],
        &format!("CERTIFICATE\narn:aws:iot:local:000000000000:cert/{id}\n"),
    );
    let run = s.run(&["certs", "list"]).success();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    assert!(lines[0].starts_with("ID") && lines[0].ends_with("STATUS  CREATED"), "{}", run.stdout);
    assert!(lines[1].starts_with(&format!("{id}  ACTIVE  20")), "{}", run.stdout);

    // The API's own preconditions, reported with AWS's codes.
    let run = s.run(&["certs", "delete", &id]).failure(1);
    assert!(run.stderr.starts_with("warden: CertificateStateException: "), "{}", run.stderr);
    s.check(&["certs", "deactivate", &id], &format!("Certificate {id} is now INACTIVE.\n"));
    let run = s.run(&["certs", "delete", &id]).failure(1);
    assert!(run.stderr.starts_with("warden: DeleteConflictException: "), "{}", run.stderr);
    s.check(&["certs", "detach", &id, "byo-1"], &format!("Detached certificate {id} from thing byo-1.\n"));
    s.check(&["certs", "revoke", &id], &format!("Certificate {id} is now REVOKED.\n"));
    assert_eq!(s.json(&["certs", "delete", &id]), json!({}));
    assert_eq!(s.json(&["certs", "list"]), json!({ "certificates": [] }));

    // Without --ca-pem the certificate must come from Warden's CA.
    let run = s.run(&["certs", "register", "--cert-pem", device.cert_path.to_str().unwrap()]).failure(1);
    assert!(run.stderr.starts_with("warden: CertificateValidationException: "), "{}", run.stderr);
}

#[test]
fn create_for_an_existing_thing() {
    let s = TestServer::start();
    let run = s.run(&["certs", "create", "--thing", "ghost"]).failure(1);
    assert!(run.stderr.starts_with("warden: ResourceNotFoundException: "), "{}", run.stderr);
    assert_eq!(
        s.json(&["certs", "list"]),
        json!({ "certificates": [] }),
        "no key was made for a missing thing"
    );

    s.run(&["things", "create", "dev-1"]).success();
    // Without --cert-dir the key is printed, since it exists nowhere else.
    let run = s.run(&["certs", "create", "--thing", "dev-1"]).success();
    assert!(run.stdout.starts_with("THING        dev-1\nCERTIFICATE  "), "{}", run.stdout);
    assert!(
        run.stdout.contains("\nPOLICY       WardenThingPolicy\n\n-----BEGIN CERTIFICATE-----\n"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("-----BEGIN PRIVATE KEY-----"), "{}", run.stdout);
    let issued =
        s.json(&["certs", "create", "--thing", "dev-1", "--cert-dir", s.path("dev-1").to_str().unwrap()]);
    assert_eq!(issued.get("keyPair"), None, "with --cert-dir the key is only in the file");
    assert!(s.path("dev-1/dev-1.key").exists());
    assert_eq!(s.json(&["certs", "list", "--thing", "dev-1"])["principals"].as_array().unwrap().len(), 2);

    let id = issued["certificateId"].as_str().unwrap();
    s.check(&["certs", "delete", id, "--force"], &format!("Deleted certificate {id}.\n"));
    assert_eq!(s.json(&["certs", "list", "--thing", "dev-1"])["principals"].as_array().unwrap().len(), 1);
    s.check(&["policies", "targets", "WardenThingPolicy", "--max", "5"], &{
        let left =
            s.json(&["certs", "list", "--thing", "dev-1"])["principals"][0].as_str().unwrap().to_owned();
        format!("TARGET\n{left}\n")
    });
}
