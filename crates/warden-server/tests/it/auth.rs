//! Authentication: the bearer API token, AWS SigV4, and the two routes that need neither.

use serde_json::json;

use crate::support::{TOKEN, TestServer};

#[tokio::test]
async fn requests_without_credentials_are_refused_except_health_and_openapi() {
    let server = TestServer::start().await;
    for target in ["/things", "/no/such/route"] {
        let resp = server.raw("GET", target, &[], Vec::new()).await;
        let message = resp.error(401, "MissingAuthenticationTokenException");
        assert_eq!(
            message,
            "missing credentials: send Authorization: Bearer <API token>, or sign the request with AWS SigV4"
        );
    }
    let health = server.raw("GET", "/health", &[], Vec::new()).await;
    assert_eq!((health.status, health.json()), (200, json!({ "status": "ok" })));
    let openapi = server.raw("GET", "/openapi.json", &[], Vec::new()).await;
    assert_eq!((openapi.status, openapi.content_type.as_deref()), (200, Some("application/json")));
    assert_eq!(openapi.json()["openapi"], json!("3.0.3"));
}

#[tokio::test]
async fn a_wrong_token_is_refused() {
    let server = TestServer::start().await;
    for header in ["Bearer nope", "bearer nope", &format!("Bearer {TOKEN}x")] {
        let resp = server.raw("GET", "/things", &[("authorization", header)], Vec::new()).await;
        assert_eq!(resp.error(403, "UnrecognizedClientException"), "the API token is not valid");
    }
    let scheme = server.raw("GET", "/things", &[("authorization", "Basic dXNlcjpwdw==")], Vec::new()).await;
    scheme.error(400, "IncompleteSignatureException");
    let lower =
        server.raw("GET", "/things", &[("authorization", &format!("bearer {TOKEN}"))], Vec::new()).await;
    assert_eq!(lower.status, 200, "the scheme is case-insensitive");
}

/// A change to a signed request before it is sent: its headers, body and target.
type Edit = fn(&mut Vec<(String, String)>, &mut Vec<u8>, &mut String);

#[tokio::test]
async fn sigv4_signed_requests_are_accepted_and_tampered_ones_refused() {
    let server = TestServer::start().await;
    let body = br#"{"attributePayload":{"attributes":{"k":"v"}}}"#;
    let json_type = [("content-type", "application/x-amz-json-1.1")];
    let created = server.signed("POST", "/things/signed%3Athing", &json_type, body).await;
    assert_eq!(created.status, 200, "{}", created.text());
    assert_eq!(created.json()["thingName"], json!("signed:thing"));
    let listed = server.signed("GET", "/things?attributeName=k&maxResults=5", &[], b"").await;
    assert_eq!(listed.json()["things"][0]["thingName"], json!("signed:thing"));

    // Signed headers bind their values: here, the principal of ListPrincipalThings.
    let cert = server.certificate().await;
    let arn = format!("arn:aws:iot:local:000000000000:cert/{cert}");
    let resp = server.signed("GET", "/principals/things", &[("x-amzn-principal", &arn)], b"").await;
    assert_eq!((resp.status, resp.json()), (200, json!({ "things": [] })));

    // The same signature over another body, query or time does not pass.
    let signed_at = u64::try_from(server.state.now_ms() / 1000).unwrap();
    let sign_then = |edit: Edit| {
        let server = &server;
        async move {
            let host = server.addr.to_string();
            let headers = [("host", host.as_str()), ("content-type", "application/x-amz-json-1.1")];
            let credentials = warden_server::api::sigv4::Credentials {
                access_key_id: crate::support::ACCESS_KEY_ID.into(),
                secret_access_key: crate::support::SECRET_ACCESS_KEY.into(),
            };
            let request = warden_server::api::sigv4::SignedRequest {
                method: "POST",
                path: "/things/t2",
                query: None,
                headers: &headers,
                body: b"{}",
            };
            let signature =
                warden_server::api::sigv4::sign(&request, &credentials, "eu-west-1", signed_at).unwrap();
            let mut headers: Vec<(String, String)> =
                headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
            headers.push(("x-amz-date".into(), signature.x_amz_date));
            headers.push(("authorization".into(), signature.authorization));
            let mut body = b"{}".to_vec();
            let mut target = "/things/t2".to_owned();
            edit(&mut headers, &mut body, &mut target);
            let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            server.raw("POST", &target, &headers, body).await
        }
    };
    let tampered = sign_then(|_, body, _| *body = br#"{"attributePayload":{}}"#.to_vec()).await;
    assert_eq!(
        tampered.error(403, "InvalidSignatureException"),
        "the request signature does not match the signature Warden calculated"
    );
    sign_then(|_, _, target| target.push_str("?x=1")).await.error(403, "InvalidSignatureException");
    let unknown = sign_then(|headers, _, _| {
        let auth = headers.iter_mut().find(|(n, _)| n == "authorization").unwrap();
        auth.1 = auth.1.replace(crate::support::ACCESS_KEY_ID, "AKIAUNKNOWNKEY0000");
    })
    .await;
    unknown.error(403, "UnrecognizedClientException");
    // Any region is accepted (the scope above says eu-west-1).
    assert_eq!(sign_then(|_, _, _| ()).await.status, 200);

    server.advance_ms(16 * 60 * 1000);
    let message = sign_then(|_, _, _| ()).await.error(403, "InvalidSignatureException");
    assert!(message.starts_with("signature expired"), "{message}");
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let server = TestServer::start().await;
    let big = vec![b' '; warden_server::api::MAX_BODY_BYTES + 1];
    let resp = server.raw("POST", "/things/t", &[("authorization", &format!("Bearer {TOKEN}"))], big).await;
    assert_eq!(
        resp.error(413, "RequestEntityTooLargeException"),
        "the request body is larger than 1048576 bytes"
    );
}
