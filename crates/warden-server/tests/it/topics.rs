//! Warden's alert topics API: topics, subscriptions and the delivery counters that show failing
//! deliveries.

use serde_json::{Value, json};

use crate::support::{NOW_MS, Paged, TestServer, collect_pages, redact};

const SNS: &str = "arn:aws:sns:local:000000000000:";

fn topic(name: &str) -> Value {
    json!({ "topicName": name, "topicArn": format!("{SNS}{name}"), "creationDate": NOW_MS as f64 / 1000.0 })
}

#[tokio::test]
async fn topics_are_created_listed_described_and_deleted() {
    let server = TestServer::start().await;
    assert_eq!(server.ok("POST", "/warden/alert-topics/DDD_Alerts", None).await, topic("DDD_Alerts"));
    let conflict = server.call("POST", "/warden/alert-topics/DDD_Alerts", None).await;
    let message = conflict.error(409, "ResourceAlreadyExistsException");
    assert_eq!(message, "alert topic DDD_Alerts already exists");
    assert_eq!(conflict.json()["resourceArn"], json!(format!("{SNS}DDD_Alerts")));

    for name in ["b-topic", "a-topic", "c-topic"] {
        server.ok("POST", &format!("/warden/alert-topics/{name}"), Some(json!({}))).await;
    }
    let (names, pages) =
        collect_pages(&server, "GET", "/warden/alert-topics?maxResults=2", "topics", Paged::Token, |t| {
            t["topicName"].as_str().unwrap().to_owned()
        })
        .await;
    assert_eq!(names, ["DDD_Alerts", "a-topic", "b-topic", "c-topic"]);
    assert_eq!(pages, 2);
    assert_eq!(
        server.ok("GET", "/warden/alert-topics?maxResults=1", None).await["topics"],
        json!([topic("DDD_Alerts")])
    );

    let mut described = topic("a-topic");
    described["subscriptions"] = json!([]);
    assert_eq!(server.ok("GET", "/warden/alert-topics/a-topic", None).await, described);

    server.ok("DELETE", "/warden/alert-topics/a-topic", None).await;
    let message = server
        .call("GET", "/warden/alert-topics/a-topic", None)
        .await
        .error(404, "ResourceNotFoundException");
    assert_eq!(message, "alert topic a-topic does not exist");
    server.call("DELETE", "/warden/alert-topics/a-topic", None).await.error(404, "ResourceNotFoundException");
}

#[tokio::test]
async fn bad_topic_requests_are_refused_with_a_message() {
    let server = TestServer::start().await;
    for (method, target, body, status, code, message) in [
        (
            "POST",
            "/warden/alert-topics/a.b",
            None,
            400,
            "InvalidRequestException",
            "topicName \"a.b\" must be 1 to 256 characters of [a-zA-Z0-9_-]",
        ),
        (
            "POST",
            "/warden/alert-topics/t",
            Some(json!({ "tags": [] })),
            400,
            "InvalidRequestException",
            "unknown field `tags`",
        ),
        (
            "GET",
            "/warden/alert-topics?maxResults=0",
            None,
            400,
            "InvalidRequestException",
            "maxResults must be between 1 and 250",
        ),
        (
            "GET",
            "/warden/alert-topics?nextToken=zz",
            None,
            400,
            "InvalidRequestException",
            "malformed next_token",
        ),
        (
            "GET",
            "/warden/alert-topics?filter=x",
            None,
            400,
            "InvalidRequestException",
            "query parameter filter is not supported",
        ),
        (
            "GET",
            "/warden/alert-topics/missing/subscriptions",
            None,
            404,
            "ResourceNotFoundException",
            "alert topic missing does not exist",
        ),
        (
            "POST",
            "/warden/alert-topics/missing/subscriptions",
            Some(json!({ "protocol": "mqtt", "endpoint": "alerts" })),
            404,
            "ResourceNotFoundException",
            "alert topic missing does not exist",
        ),
        (
            "DELETE",
            "/warden/alert-subscriptions/no_such",
            None,
            400,
            "InvalidRequestException",
            "subscriptionId \"no_such\" must be",
        ),
        (
            "DELETE",
            "/warden/alert-subscriptions/0000",
            None,
            404,
            "ResourceNotFoundException",
            "alert subscription 0000 does not exist",
        ),
        ("PUT", "/warden/alert-topics/t", None, 405, "MethodNotAllowedException", "PUT is not an operation"),
    ] {
        let got = server.call(method, target, body).await.error(status, code);
        assert!(got.contains(message), "{method} {target}: {got}");
    }
    // Like every operation, the topics need credentials.
    let resp = server.raw("GET", "/warden/alert-topics", &[], Vec::new()).await;
    resp.error(401, "MissingAuthenticationTokenException");
}

#[tokio::test]
async fn subscriptions_are_checked_and_show_their_deliveries() {
    let server = TestServer::start().await;
    server.ok("POST", "/warden/alert-topics/DDD_Alerts", None).await;
    let server = &server;
    let subscribe = |protocol: &str, endpoint: &str| {
        let body = json!({ "protocol": protocol, "endpoint": endpoint });
        async move { server.call("POST", "/warden/alert-topics/DDD_Alerts/subscriptions", Some(body)).await }
    };
    let hook = subscribe("https", "https://hooks.example.com/alerts?secret=s3cr3t").await;
    assert_eq!(hook.status, 200, "{}", hook.text());
    let hook = hook.json();
    let t = NOW_MS as f64 / 1000.0;
    assert_eq!(
        redact(hook.clone(), &["/subscriptionId"]),
        json!({
            "subscriptionId": "<redacted>",
            "topicName": "DDD_Alerts",
            "protocol": "https",
            "endpoint": "https://hooks.example.com/alerts?secret=s3cr3t",
            "creationDate": t,
            "delivered": 0,
            "failed": 0,
            "lastError": null,
            "lastAttemptDate": null,
        })
    );
    // The same endpoint again is the same subscription, as in SNS.
    let again = subscribe("https", "https://hooks.example.com/alerts?secret=s3cr3t").await.json();
    assert_eq!(again["subscriptionId"], hook["subscriptionId"]);
    let mqtt = subscribe("mqtt", "warden/alerts").await.json();
    let http = subscribe("http", "http://127.0.0.1:9/alerts").await.json();

    for (protocol, endpoint, message) in [
        ("email", "ops@example.com", "protocol must be http, https or mqtt, not \"email\""),
        (
            "http",
            "https://example.com/",
            "endpoint \"https://example.com/\" must be an absolute http:// URL with a host",
        ),
        ("https", "/alerts", "must be an absolute https:// URL with a host"),
        ("https", "example.com/alerts", "is not a URL"),
        ("https", "https://exa mple.com/", "is not a URL"),
        ("mqtt", "alerts/#", "without the wildcards + and #"),
        ("mqtt", "$aws/things/t/shadow/update", "topics starting with $ are reserved"),
        ("mqtt", "", "endpoint must be 1 to 2048 bytes"),
    ] {
        let got = subscribe(protocol, endpoint).await.error(400, "InvalidRequestException");
        assert!(got.contains(message), "{protocol} {endpoint}: {got}");
    }
    let got = server
        .call("POST", "/warden/alert-topics/DDD_Alerts/subscriptions", Some(json!({ "protocol": "mqtt" })))
        .await
        .error(400, "InvalidRequestException");
    assert!(got.contains("missing field `endpoint`"), "{got}");

    // Deliveries, as the alert sender records them, show on the subscription.
    let store = &server.state.store;
    let id = |s: &Value| s["subscriptionId"].as_str().unwrap().to_owned();
    store.record_delivery(&id(&hook), true, None, NOW_MS + 1000).await.unwrap();
    store.record_delivery(&id(&http), false, Some("connection refused"), NOW_MS + 2000).await.unwrap();
    let listed = server.ok("GET", "/warden/alert-topics/DDD_Alerts/subscriptions", None).await;
    let counters: Vec<Value> = listed["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| json!([s["protocol"], s["delivered"], s["failed"], s["lastError"], s["lastAttemptDate"]]))
        .collect();
    assert_eq!(
        counters,
        [
            json!(["https", 1, 0, null, t + 1.0]),
            json!(["mqtt", 0, 0, null, null]),
            json!(["http", 0, 1, "connection refused", t + 2.0]),
        ]
    );
    assert_eq!(listed.get("nextToken"), None);
    let (ids, pages) = collect_pages(
        server,
        "GET",
        "/warden/alert-topics/DDD_Alerts/subscriptions?maxResults=2",
        "subscriptions",
        Paged::Token,
        |s| s["subscriptionId"].as_str().unwrap().to_owned(),
    )
    .await;
    assert_eq!((ids, pages), (vec![id(&hook), id(&mqtt), id(&http)], 2));
    let described = server.ok("GET", "/warden/alert-topics/DDD_Alerts", None).await;
    assert_eq!(described["subscriptions"], listed["subscriptions"]);

    server.ok("DELETE", &format!("/warden/alert-subscriptions/{}", id(&mqtt)), None).await;
    server
        .call("DELETE", &format!("/warden/alert-subscriptions/{}", id(&mqtt)), None)
        .await
        .error(404, "ResourceNotFoundException");
    let listed = server.ok("GET", "/warden/alert-topics/DDD_Alerts/subscriptions", None).await;
    assert_eq!(listed["subscriptions"].as_array().unwrap().len(), 2);

    // Deleting the topic takes its subscriptions with it.
    server.ok("DELETE", "/warden/alert-topics/DDD_Alerts", None).await;
    server.ok("POST", "/warden/alert-topics/DDD_Alerts", None).await;
    let listed = server.ok("GET", "/warden/alert-topics/DDD_Alerts/subscriptions", None).await;
    assert_eq!(listed["subscriptions"], json!([]));
}
