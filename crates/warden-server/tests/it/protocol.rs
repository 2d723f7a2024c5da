//! What every operation shares: the AWS error shape for unknown operations and methods, and
//! JSON replies.

use crate::support::TestServer;

#[tokio::test]
async fn unknown_operations_and_methods_have_the_aws_error_shape() {
    let server = TestServer::start().await;
    let message = server.call("GET", "/no/such/route", None).await.error(404, "UnknownOperationException");
    assert_eq!(message, "no operation at GET /no/such/route");
    let message = server.call("POST", "/things", None).await.error(405, "MethodNotAllowedException");
    assert_eq!(message, "POST is not an operation on /things");
    let message = server.call("GET", "/things/a%ffb", None).await.error(400, "InvalidRequestException");
    assert!(message.starts_with("request path:"), "{message}");
    let reply = server.call("GET", "/things", None).await;
    assert_eq!((reply.status, reply.content_type.as_deref()), (200, Some("application/json")));
}

/// Hostile input to every documented operation: odd labels, queries and bodies. Each gets a 2xx
/// or a 4xx in the AWS error shape, never a 5xx or a dropped connection.
#[tokio::test]
async fn no_input_breaks_any_operation() {
    let server = TestServer::start().await;
    server.thing("t").await;
    server.group("g", None).await;
    let document = server.ok("GET", "/openapi.json", None).await;
    let labels = [
        "a".repeat(129),
        "%C3%BC".into(),
        "a%2Fb".into(),
        "a%00b".into(),
        "..".into(),
        "t".into(),
        "g".into(),
    ];
    let queries = [
        "",
        "?maxResults=-1",
        "?nextToken=%FF%FE",
        "?pageSize=99999999999999999999",
        "?recursive=1&setAsActive=maybe",
        "?startTime=9999-99-99T99%3A99%3A99Z&endTime=0&thingName=t&metricName=m",
    ];
    let bodies: [&[u8]; 7] = [
        b"",
        b"[]",
        b"null",
        b"\"s\"",
        b"\xff\xfe",
        br#"{"attributePayload":[],"thingGroupProperties":{"attributePayload":{"attributes":{"a":null}}},"target":7}"#,
        br#"{"certificatePem":"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----","policyDocument":"{\"Statement\":[[]]}","thingName":"t","thingGroupName":"g","expectedVersion":18446744073709551615}"#,
    ];
    let auth = format!("Bearer {}", crate::support::TOKEN);
    // Every query with an empty body, every body with no query: the two do not interact.
    let cases = queries.iter().map(|q| (*q, &b""[..])).chain(bodies.iter().map(|b| ("", *b)));
    let cases: Vec<(&str, &[u8])> = cases.collect();
    for (path, methods) in document["paths"].as_object().unwrap() {
        let targets: Vec<String> = if path.contains('{') {
            labels
                .iter()
                .map(|label| {
                    let segments: Vec<&str> = path
                        .split('/')
                        .map(|s| if s.starts_with('{') { label.as_str() } else { s })
                        .collect();
                    segments.join("/")
                })
                .collect()
        } else {
            vec![path.clone()]
        };
        for method in methods.as_object().unwrap().keys() {
            for target in &targets {
                for (query, body) in &cases {
                    let headers = [
                        ("authorization", auth.as_str()),
                        ("x-amzn-principal", "arn:aws:iot:local:000000000000:cert/%"),
                    ];
                    let url = format!("{target}{query}");
                    let resp = server.raw(&method.to_uppercase(), &url, &headers, body.to_vec()).await;
                    assert!(resp.status < 500, "{method} {url} {body:?}: {} {}", resp.status, resp.text());
                    if resp.status >= 400 {
                        resp.error(resp.status, resp.error_type.clone().unwrap().as_str());
                    }
                }
            }
        }
    }
}
