//! Certificates: issuing, registering, status, deletion, listing, and attachment to things.

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use serde_json::{Value, json};
use warden_server::pki::certificate_id_of_pem;
use warden_server::state::RegistryChange;

use crate::support::{ARN, NOW_MS, Paged, TestServer, collect_pages};

/// A CA that is not Warden's.
fn other_ca() -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, "Other CA");
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A device certificate with CN `cn`, issued by `issuer`.
fn device_cert(cn: &str, issuer: &CertifiedIssuer<'static, KeyPair>) -> String {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.signed_by(&KeyPair::generate().unwrap(), issuer).unwrap().pem()
}

fn changed(id: &str) -> RegistryChange {
    RegistryChange::Certificate { certificate_id: id.to_owned() }
}

#[tokio::test]
async fn keys_and_certificates_are_issued_by_warden_ca() {
    let server = TestServer::start().await;
    let created = server.ok("POST", "/keys-and-certificate?setAsActive=true&thingName=sensor-1", None).await;
    let id = created["certificateId"].as_str().unwrap().to_owned();
    let pem = created["certificatePem"].as_str().unwrap();
    assert_eq!(certificate_id_of_pem(pem).unwrap(), id);
    assert_eq!(created["certificateArn"], json!(format!("{ARN}cert/{id}")));
    assert!(created["keyPair"]["PublicKey"].as_str().unwrap().starts_with("-----BEGIN PUBLIC KEY-----"));
    assert!(created["keyPair"]["PrivateKey"].as_str().unwrap().starts_with("-----BEGIN PRIVATE KEY-----"));
    assert_eq!(server.changes.take(), vec![changed(&id)]);

    let stored = server.state.store.describe_certificate(&id).await.unwrap();
    assert_eq!(stored.subject_cn.as_deref(), Some("sensor-1"));
    let ca_id = certificate_id_of_pem(server.state.pki.ca_cert_pem()).unwrap();
    let described = server.ok("GET", &format!("/certificates/{id}"), None).await;
    let description = &described["certificateDescription"];
    assert_eq!(description["validity"], json!({ "notBefore": 1_577_836_800.0, "notAfter": 4_102_358_400.0 }));
    let mut description = description.clone();
    description.as_object_mut().unwrap().remove("validity");
    assert_eq!(
        description,
        json!({
            "certificateArn": format!("{ARN}cert/{id}"),
            "certificateId": id,
            "caCertificateId": ca_id,
            "status": "ACTIVE",
            "certificatePem": pem,
            "ownedBy": "000000000000",
            "creationDate": NOW_MS as f64 / 1000.0,
            "lastModifiedDate": NOW_MS as f64 / 1000.0,
            "certificateMode": "DEFAULT",
        })
    );
    // Upper-case ids name the same certificate.
    server.ok("GET", &format!("/certificates/{}", id.to_uppercase()), None).await;

    // Without a thing name the CN is AWS's made a thing name, and without setAsActive the certificate is inactive.
    let plain = server.ok("POST", "/keys-and-certificate", None).await;
    let plain_id = plain["certificateId"].as_str().unwrap();
    let stored = server.state.store.describe_certificate(plain_id).await.unwrap();
    assert_eq!(
        (stored.subject_cn.as_deref(), stored.status.as_str()),
        (Some("AWS-IoT-Certificate"), "INACTIVE")
    );
    let message = server
        .call("POST", "/keys-and-certificate?thingName=a%20b", None)
        .await
        .error(400, "InvalidRequestException");
    assert!(message.starts_with("thingName \"a b\""), "{message}");
}

#[tokio::test]
async fn certificates_are_registered_from_pem() {
    let server = TestServer::start().await;
    let other = other_ca();

    let pem = device_cert("byo-1", &other);
    let id = certificate_id_of_pem(&pem).unwrap();
    let registered = server
        .ok("POST", "/certificate/register-no-ca", Some(json!({ "certificatePem": pem, "status": "ACTIVE" })))
        .await;
    assert_eq!(registered, json!({ "certificateArn": format!("{ARN}cert/{id}"), "certificateId": id }));
    assert_eq!(server.changes.take(), vec![changed(&id)]);
    let stored = server.state.store.describe_certificate(&id).await.unwrap();
    assert_eq!(
        (stored.subject_cn.as_deref(), stored.ca_certificate_id, stored.status.as_str()),
        (Some("byo-1"), None, "ACTIVE")
    );
    let again =
        server.call("POST", "/certificate/register-no-ca", Some(json!({ "certificatePem": pem }))).await;
    again.error(409, "ResourceAlreadyExistsException");
    assert_eq!(again.json()["resourceArn"], json!(format!("{ARN}cert/{id}")));
    assert_eq!(again.json()["resourceId"], json!(id));

    // RegisterCertificate checks the issuer: Warden's CA by default, else caCertificatePem.
    let foreign = device_cert("byo-2", &other);
    let message = server
        .call("POST", "/certificate/register", Some(json!({ "certificatePem": foreign })))
        .await
        .error(400, "CertificateValidationException");
    assert_eq!(message, "certificatePem is not signed by Warden's CA");
    let with_ca = json!({ "certificatePem": foreign, "caCertificatePem": other.pem() });
    let registered = server.ok("POST", "/certificate/register?setAsActive=true", Some(with_ca)).await;
    let foreign_id = registered["certificateId"].as_str().unwrap();
    let stored = server.state.store.describe_certificate(foreign_id).await.unwrap();
    assert_eq!(stored.ca_certificate_id, Some(certificate_id_of_pem(&other.pem()).unwrap()));
    assert_eq!(stored.status.as_str(), "ACTIVE");
    let wrong_ca =
        json!({ "certificatePem": device_cert("byo-3", &other), "caCertificatePem": other_ca().pem() });
    let message = server
        .call("POST", "/certificate/register", Some(wrong_ca))
        .await
        .error(400, "CertificateValidationException");
    assert_eq!(message, "certificatePem is not signed by caCertificatePem");

    let ours = server.state.pki.issue_thing_cert("sensor-9").unwrap();
    let registered =
        server.ok("POST", "/certificate/register", Some(json!({ "certificatePem": ours.cert_pem }))).await;
    assert_eq!(registered["certificateId"], json!(ours.certificate_id));
    let stored = server.state.store.describe_certificate(&ours.certificate_id).await.unwrap();
    assert_eq!(stored.status.as_str(), "INACTIVE");
    assert_eq!(
        stored.ca_certificate_id,
        Some(certificate_id_of_pem(server.state.pki.ca_cert_pem()).unwrap())
    );

    let check = |body: Value, code: &'static str, expect: &'static str| {
        let server = &server;
        async move {
            let resp = server.call("POST", "/certificate/register-no-ca", Some(body)).await;
            let message = resp.error(400, code);
            assert!(message.contains(expect), "{message:?} should contain {expect:?}");
        }
    };
    check(
        json!({ "certificatePem": "hello" }),
        "CertificateValidationException",
        "certificatePem is not PEM",
    )
    .await;
    let key = KeyPair::generate().unwrap().serialize_pem();
    check(json!({ "certificatePem": key }), "CertificateValidationException", "holds a PRIVATE KEY").await;
    let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    check(json!({ "certificatePem": garbage }), "CertificateValidationException", "not an X.509 certificate")
        .await;
    let fresh = device_cert("x", &other);
    check(
        json!({ "certificatePem": fresh, "status": "PENDING_TRANSFER" }),
        "InvalidRequestException",
        "not supported",
    )
    .await;
    check(
        json!({ "certificatePem": fresh, "status": "ON" }),
        "InvalidRequestException",
        "status must be one of",
    )
    .await;
    check(json!({}), "InvalidRequestException", "missing field `certificatePem`").await;
}

#[tokio::test]
async fn certificate_status_governs_deletion() {
    let server = TestServer::start().await;
    let id = server.certificate().await;
    server.thing("t1").await;
    server.changes.take();
    let path = format!("/certificates/{id}");

    let message = server.call("DELETE", &path, None).await.error(406, "CertificateStateException");
    assert!(message.contains("is ACTIVE"), "{message}");
    server.advance_ms(1500);
    assert_eq!(server.ok("PUT", &format!("{path}?newStatus=INACTIVE"), None).await, json!({}));
    let described = server.ok("GET", &path, None).await;
    assert_eq!(described["certificateDescription"]["status"], json!("INACTIVE"));
    assert_eq!(
        described["certificateDescription"]["lastModifiedDate"],
        json!((NOW_MS + 1500) as f64 / 1000.0)
    );
    assert_eq!(server.changes.take(), vec![changed(&id)]);

    let arn = format!("{ARN}cert/{id}");
    server.call_with("PUT", "/things/t1/principals", &[("x-amzn-principal", &arn)], None).await;
    let message = server.call("DELETE", &path, None).await.error(409, "DeleteConflictException");
    assert!(message.contains("attached to 1 thing"), "{message}");
    server.call_with("DELETE", "/things/t1/principals", &[("x-amzn-principal", &arn)], None).await;

    server.ok("PUT", &format!("{path}?newStatus=REVOKED"), None).await;
    let message = server
        .call("PUT", &format!("{path}?newStatus=ACTIVE"), None)
        .await
        .error(406, "CertificateStateException");
    assert!(message.contains("REVOKED"), "{message}");
    server.call("PUT", &format!("{path}?newStatus=ON"), None).await.error(400, "InvalidRequestException");
    let message = server.call("PUT", &path, None).await.error(400, "InvalidRequestException");
    assert_eq!(message, "newStatus is required");
    let message = server
        .call("DELETE", &format!("{path}?forceDelete=true"), None)
        .await
        .error(400, "InvalidRequestException");
    assert!(message.starts_with("forceDelete is not supported"), "{message}");
    server.changes.take();

    assert_eq!(server.ok("DELETE", &format!("{path}?forceDelete=false"), None).await, json!({}));
    assert_eq!(server.changes.take(), vec![changed(&id)]);
    server.call("GET", &path, None).await.error(404, "ResourceNotFoundException");
    let message = server.call("GET", "/certificates/abc", None).await.error(400, "InvalidRequestException");
    assert_eq!(message, "certificateId \"abc\" must be 64 hexadecimal digits");
}

#[tokio::test]
async fn certificates_attach_to_things_as_principals() {
    let server = TestServer::start().await;
    let id = server.certificate().await;
    let arn = format!("{ARN}cert/{id}");
    server.thing("t1").await;
    server.thing("t2").await;
    server.changes.take();
    let principal = [("x-amzn-principal", arn.as_str())];

    for thing in ["t1", "t2"] {
        let resp = server.call_with("PUT", &format!("/things/{thing}/principals"), &principal, None).await;
        assert_eq!((resp.status, resp.json()), (200, json!({})));
    }
    assert_eq!(server.changes.take(), vec![changed(&id), changed(&id)]);
    assert_eq!(server.ok("GET", "/things/t1/principals", None).await, json!({ "principals": [arn] }));
    let things = server.call_with("GET", "/principals/things?maxResults=1", &principal, None).await.json();
    assert_eq!(things["things"], json!(["t1"]));
    let token = things["nextToken"].as_str().unwrap();
    let rest = server
        .call_with("GET", &format!("/principals/things?maxResults=1&nextToken={token}"), &principal, None)
        .await;
    assert_eq!(rest.json(), json!({ "things": ["t2"] }));

    server.call("DELETE", "/things/t1", None).await.error(409, "DeleteConflictException");
    let resp = server.call_with("DELETE", "/things/t1/principals", &principal, None).await;
    assert_eq!(resp.status, 200);
    assert_eq!(server.changes.take(), vec![changed(&id)]);
    assert_eq!(server.ok("GET", "/things/t1/principals", None).await, json!({ "principals": [] }));

    let message =
        server.call("PUT", "/things/t1/principals", None).await.error(400, "InvalidRequestException");
    assert_eq!(message, "principal (the x-amzn-principal header) is required");
    let message = server
        .call_with("PUT", "/things/t1/principals", &[("x-amzn-principal", "arn:aws:iam::1:user/x")], None)
        .await
        .error(400, "InvalidRequestException");
    assert!(message.starts_with("principal \"arn:aws:iam::1:user/x\" is not a certificate ARN"), "{message}");
    let unknown = format!("{ARN}cert/{}", "a".repeat(64));
    server
        .call_with("PUT", "/things/t1/principals", &[("x-amzn-principal", &unknown)], None)
        .await
        .error(404, "ResourceNotFoundException");
    server
        .call_with("PUT", "/things/nope/principals", &principal, None)
        .await
        .error(404, "ResourceNotFoundException");
    let exclusive = server
        .call_with("PUT", "/things/t1/principals?thingPrincipalType=EXCLUSIVE_THING", &principal, None)
        .await;
    exclusive.error(400, "InvalidRequestException");
    server.call("GET", "/principals/things", None).await.error(400, "InvalidRequestException");
    server.call("GET", "/things/nope/principals", None).await.error(404, "ResourceNotFoundException");
    assert_eq!(server.changes.take(), vec![]);
}

#[tokio::test]
async fn certificates_are_listed_oldest_first_in_pages() {
    let server = TestServer::start().await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(server.certificate().await);
        server.advance_ms(1000);
    }
    let (listed, pages) =
        collect_pages(&server, "GET", "/certificates?pageSize=2", "certificates", Paged::Marker, |c| {
            c["certificateId"].as_str().unwrap().to_owned()
        })
        .await;
    assert_eq!((listed, pages), (ids.clone(), 3));
    let first = server.ok("GET", "/certificates?pageSize=1&isAscendingOrder=true", None).await;
    assert_eq!(
        first["certificates"],
        json!([{
            "certificateArn": format!("{ARN}cert/{}", ids[0]),
            "certificateId": ids[0],
            "status": "ACTIVE",
            "certificateMode": "DEFAULT",
            "creationDate": NOW_MS as f64 / 1000.0,
        }])
    );
    let message =
        server.call("GET", "/certificates?pageSize=300", None).await.error(400, "InvalidRequestException");
    assert_eq!(message, "pageSize must be between 1 and 250");
    server.call("GET", "/certificates?maxResults=2", None).await.error(400, "InvalidRequestException");
}
