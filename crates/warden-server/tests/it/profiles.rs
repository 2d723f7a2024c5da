//! Security profiles, their targets, and the custom metrics and dimensions behaviors refer to.

use serde_json::{Value, json};

use crate::support::{ARN, NOW_MS, TestServer};

fn bytes_out(limit: u64) -> Value {
    json!({
        "name": "OutboundBytes",
        "metric": "aws:all-bytes-out",
        "criteria": { "comparisonOperator": "less-than-equals", "value": { "count": limit }, "durationSeconds": 300 },
    })
}

fn identifier(name: &str) -> Value {
    json!({ "name": name, "arn": format!("{ARN}securityprofile/{name}") })
}

/// Creating `body` as profile `name` is refused with `InvalidRequestException`; its message.
async fn refused(server: &TestServer, name: &str, body: Value) -> String {
    server
        .call("POST", &format!("/security-profiles/{name}"), Some(body))
        .await
        .error(400, "InvalidRequestException")
}

#[tokio::test]
async fn profiles_are_created_described_updated_and_deleted() {
    let server = TestServer::start().await;
    let alert = json!({ "SNS": {
        "alertTargetArn": "arn:aws:sns:us-east-1:123456789012:DDD_Alerts",
        "roleArn": "arn:aws:iam::123456789012:role/DDDtoSNSRole",
    }});
    let body = json!({
        "securityProfileDescription": "Device-side traffic baseline",
        "behaviors": [bytes_out(35_000)],
        "alertTargets": alert,
        "additionalMetricsToRetainV2": [{ "metric": "aws:num-established-tcp-connections" }],
    });
    let created = server.ok("POST", "/security-profiles/baseline", Some(body.clone())).await;
    assert_eq!(
        created,
        json!({ "securityProfileName": "baseline", "securityProfileArn": format!("{ARN}securityprofile/baseline") })
    );
    // Again exactly as it is: success; otherwise a conflict naming the ARN.
    server.ok("POST", "/security-profiles/baseline", Some(body)).await;
    let conflict = server.call("POST", "/security-profiles/baseline", Some(json!({}))).await;
    conflict.error(409, "ResourceAlreadyExistsException");
    assert_eq!(conflict.json()["resourceArn"], json!(format!("{ARN}securityprofile/baseline")));

    let described = server.ok("GET", "/security-profiles/baseline", None).await;
    let t = NOW_MS as f64 / 1000.0;
    assert_eq!(
        described,
        json!({
            "securityProfileName": "baseline",
            "securityProfileArn": format!("{ARN}securityprofile/baseline"),
            "securityProfileDescription": "Device-side traffic baseline",
            "behaviors": [bytes_out(35_000)],
            "alertTargets": alert,
            "additionalMetricsToRetainV2": [{ "metric": "aws:num-established-tcp-connections" }],
            "version": 1,
            "creationDate": t,
            "lastModifiedDate": t,
        })
    );

    // Given lists replace; delete flags remove; the rest stays.
    server.advance_ms(1000);
    let update = json!({ "behaviors": [bytes_out(50_000)], "deleteAlertTargets": true });
    let updated =
        server.ok("PATCH", "/security-profiles/baseline?expectedVersion=1", Some(update.clone())).await;
    assert_eq!(updated["version"], json!(2));
    assert_eq!(updated["behaviors"], json!([bytes_out(50_000)]));
    assert_eq!(updated.get("alertTargets"), None);
    assert_eq!(updated["securityProfileDescription"], json!("Device-side traffic baseline"));
    assert_eq!(updated["lastModifiedDate"], json!(t + 1.0));
    assert_eq!(server.ok("GET", "/security-profiles/baseline", None).await, updated);

    server
        .call("PATCH", "/security-profiles/baseline?expectedVersion=1", Some(update))
        .await
        .error(409, "VersionConflictException");
    let message = server
        .call(
            "PATCH",
            "/security-profiles/baseline",
            Some(json!({ "behaviors": [], "deleteBehaviors": true })),
        )
        .await
        .error(400, "InvalidRequestException");
    assert_eq!(message, "deleteBehaviors cannot be combined with behaviors");
    server
        .call("PATCH", "/security-profiles/nope", Some(json!({})))
        .await
        .error(404, "ResourceNotFoundException");

    server
        .call("DELETE", "/security-profiles/baseline?expectedVersion=1", None)
        .await
        .error(409, "VersionConflictException");
    server.ok("DELETE", "/security-profiles/baseline?expectedVersion=2", None).await;
    server.call("GET", "/security-profiles/baseline", None).await.error(404, "ResourceNotFoundException");
    // As in AWS, deleting what is not there succeeds.
    server.ok("DELETE", "/security-profiles/baseline", None).await;
}

#[tokio::test]
async fn behaviors_are_checked_as_detection_compiles_them() {
    let server = TestServer::start().await;
    let statistical = json!({ "behaviors": [{
        "name": "BytesOutP90", "metric": "aws:all-bytes-out",
        "criteria": { "comparisonOperator": "less-than-equals", "statisticalThreshold": { "statistic": "p90" }, "durationSeconds": 900 },
    }]});
    assert_eq!(
        refused(&server, "p", statistical).await,
        "behaviors[0].criteria.statisticalThreshold: statistical thresholds are not supported yet; give a static value instead"
    );
    let ml = json!({ "behaviors": [{
        "name": "MsgSentML", "metric": "aws:num-messages-sent",
        "criteria": { "mlDetectionConfig": { "confidenceLevel": "HIGH" } },
    }]});
    assert_eq!(
        refused(&server, "p", ml).await,
        "behaviors[0].criteria.mlDetectionConfig: ML Detect is not supported yet; give a comparisonOperator and a static value instead"
    );
    let bad_operator = json!({ "behaviors": [{
        "name": "b", "metric": "aws:all-bytes-out", "criteria": { "comparisonOperator": "in-port-set", "value": { "ports": [22] } },
    }]});
    let message = refused(&server, "p", bad_operator).await;
    assert!(
        message.starts_with("behaviors[0].criteria.comparisonOperator: in-port-set is not allowed"),
        "{message}"
    );
    let bad_value = json!({ "behaviors": [{
        "name": "b", "metric": "aws:listening-tcp-ports", "criteria": { "comparisonOperator": "in-port-set", "value": { "count": 3 } },
    }]});
    let message = refused(&server, "p", bad_value).await;
    assert!(message.contains("behaviors[0].criteria.value.count: not used by in-port-set"), "{message}");
    let undefined = json!({ "behaviors": [{
        "name": "b", "metric": "batteryPercentage", "criteria": { "comparisonOperator": "greater-than", "value": { "number": 75 } },
    }]});
    assert_eq!(
        refused(&server, "p", undefined.clone()).await,
        "behaviors[0].metric: custom metric \"batteryPercentage\" is not defined"
    );
    let message = refused(&server, "p", json!({ "tags": [{ "Key": "k", "Value": "v" }] })).await;
    assert!(message.contains("unknown field `tags`"), "{message}");
    let message = refused(&server, "p", json!({ "alertTargets": { "EMAIL": { "alertTargetArn": "x", "roleArn": "arn:aws:iam::1:role/abcdefgh" } } })).await;
    assert!(message.starts_with("alertTargets: unknown alert target type \"EMAIL\""), "{message}");

    // ValidateSecurityProfileBehaviors answers with the same findings instead of refusing.
    let validated = server
        .ok(
            "POST",
            "/security-profile-behaviors/validate",
            Some(json!({ "behaviors": undefined["behaviors"] })),
        )
        .await;
    assert_eq!(
        validated,
        json!({ "valid": false, "validationErrors": [{ "errorMessage": "behaviors[0].metric: custom metric \"batteryPercentage\" is not defined" }] })
    );
    let validated = server
        .ok("POST", "/security-profile-behaviors/validate", Some(json!({ "behaviors": [bytes_out(1)] })))
        .await;
    assert_eq!(validated, json!({ "valid": true, "validationErrors": [] }));

    // Once the metric is defined, the behavior is valid, and the metric cannot be deleted.
    let metric = json!({ "metricType": "number", "displayName": "Battery", "clientRequestToken": "t-1" });
    server.ok("POST", "/custom-metric/batteryPercentage", Some(metric)).await;
    server.ok("POST", "/security-profiles/p", Some(undefined)).await;
    let message = server
        .call("DELETE", "/custom-metric/batteryPercentage", None)
        .await
        .error(400, "InvalidRequestException");
    assert_eq!(
        message,
        "custom metric batteryPercentage is used by security profile p; remove it from the profile first"
    );
}

#[tokio::test]
async fn custom_metrics_and_dimensions_have_aws_shapes() {
    let server = TestServer::start().await;
    let t = NOW_MS as f64 / 1000.0;
    let body = json!({ "metricType": "string-list", "clientRequestToken": "tok" });
    assert_eq!(
        server.ok("POST", "/custom-metric/fw", Some(body)).await,
        json!({ "metricName": "fw", "metricArn": format!("{ARN}custommetric/fw") })
    );
    server
        .call(
            "POST",
            "/custom-metric/fw",
            Some(json!({ "metricType": "number", "clientRequestToken": "tok" })),
        )
        .await
        .error(409, "ResourceAlreadyExistsException");
    let message = server
        .call("POST", "/custom-metric/x", Some(json!({ "metricType": "bool", "clientRequestToken": "tok" })))
        .await
        .error(400, "InvalidRequestException");
    assert!(message.starts_with("metricType must be"), "{message}");
    server.advance_ms(2000);
    assert_eq!(
        server.ok("PATCH", "/custom-metric/fw", Some(json!({ "displayName": "Firmware" }))).await,
        json!({
            "metricName": "fw",
            "metricArn": format!("{ARN}custommetric/fw"),
            "metricType": "string-list",
            "displayName": "Firmware",
            "creationDate": t,
            "lastModifiedDate": t + 2.0,
        })
    );
    assert_eq!(server.ok("GET", "/custom-metrics", None).await, json!({ "metricNames": ["fw"] }));
    server.ok("DELETE", "/custom-metric/fw", None).await;
    server.call("GET", "/custom-metric/fw", None).await.error(404, "ResourceNotFoundException");

    let body = json!({ "type": "TOPIC_FILTER", "stringValues": ["admin/#"], "clientRequestToken": "tok" });
    assert_eq!(
        server.ok("POST", "/dimensions/admin", Some(body)).await,
        json!({ "name": "admin", "arn": format!("{ARN}dimension/admin") })
    );
    let message = server
        .call(
            "POST",
            "/dimensions/bad",
            Some(json!({ "type": "TOPIC_FILTER", "stringValues": ["a/#/b"], "clientRequestToken": "t" })),
        )
        .await
        .error(400, "InvalidRequestException");
    assert!(message.starts_with("stringValues[0]"), "{message}");
    assert_eq!(
        server.ok("PATCH", "/dimensions/admin", Some(json!({ "stringValues": ["admin/+", "ops/#"] }))).await,
        json!({
            "name": "admin",
            "arn": format!("{ARN}dimension/admin"),
            "type": "TOPIC_FILTER",
            "stringValues": ["admin/+", "ops/#"],
            "creationDate": t + 2.0,
            "lastModifiedDate": t + 2.0,
        })
    );
    assert_eq!(server.ok("GET", "/dimensions", None).await, json!({ "dimensionNames": ["admin"] }));

    // A profile using the dimension: listed by the filters, and it keeps the dimension alive.
    let behavior = json!({
        "name": "AuthFailures", "metric": "aws:num-authorization-failures",
        "metricDimension": { "dimensionName": "admin", "operator": "IN" },
        "criteria": { "comparisonOperator": "less-than", "value": { "count": 10 }, "durationSeconds": 300 },
    });
    server.ok("POST", "/security-profiles/auth", Some(json!({ "behaviors": [behavior] }))).await;
    server.ok("POST", "/security-profiles/bytes", Some(json!({ "behaviors": [bytes_out(5)] }))).await;
    let all = server.ok("GET", "/security-profiles", None).await;
    assert_eq!(all, json!({ "securityProfileIdentifiers": [identifier("auth"), identifier("bytes")] }));
    let by_dimension = server.ok("GET", "/security-profiles?dimensionName=admin", None).await;
    assert_eq!(by_dimension, json!({ "securityProfileIdentifiers": [identifier("auth")] }));
    let by_metric =
        server.ok("GET", "/security-profiles?metricName=aws:all-bytes-out&maxResults=1", None).await;
    assert_eq!(by_metric, json!({ "securityProfileIdentifiers": [identifier("bytes")] }));
    server.call("DELETE", "/dimensions/admin", None).await.error(400, "InvalidRequestException");
}

#[tokio::test]
async fn profiles_attach_to_groups_and_the_all_targets() {
    let server = TestServer::start().await;
    server.group("site", None).await;
    server.group("lab", Some("site")).await;
    for name in ["a", "b", "c"] {
        server
            .ok("POST", &format!("/security-profiles/{name}"), Some(json!({ "behaviors": [bytes_out(1)] })))
            .await;
    }
    let site = format!("{ARN}thinggroup/site");
    let lab = format!("{ARN}thinggroup/lab");
    let all = format!("{ARN}all/things");
    server.ok("PUT", &format!("/security-profiles/a/targets?securityProfileTargetArn={site}"), None).await;
    server.ok("PUT", &format!("/security-profiles/b/targets?securityProfileTargetArn={lab}"), None).await;
    server.ok("PUT", &format!("/security-profiles/c/targets?securityProfileTargetArn={all}"), None).await;
    server.ok("PUT", &format!("/security-profiles/a/targets?securityProfileTargetArn={all}"), None).await;

    let missing = format!("{ARN}thinggroup/nope");
    server
        .call("PUT", &format!("/security-profiles/a/targets?securityProfileTargetArn={missing}"), None)
        .await
        .error(404, "ResourceNotFoundException");
    server
        .call("PUT", &format!("/security-profiles/zz/targets?securityProfileTargetArn={site}"), None)
        .await
        .error(404, "ResourceNotFoundException");
    let message = server
        .call(
            "PUT",
            "/security-profiles/a/targets?securityProfileTargetArn=arn:aws:iot:elsewhere:1:all/things",
            None,
        )
        .await
        .error(400, "InvalidRequestException");
    assert!(message.contains("is neither a thing group ARN"), "{message}");

    assert_eq!(
        server.ok("GET", "/security-profiles/a/targets", None).await,
        json!({ "securityProfileTargets": [{ "arn": all }, { "arn": site }] })
    );
    let mapping =
        |p: &str, t: &str| json!({ "securityProfileIdentifier": identifier(p), "target": { "arn": t } });
    assert_eq!(
        server
            .ok("GET", &format!("/security-profiles-for-target?securityProfileTargetArn={lab}"), None)
            .await,
        json!({ "securityProfileTargetMappings": [mapping("b", &lab)] })
    );
    let recursive = format!("/security-profiles-for-target?securityProfileTargetArn={lab}&recursive=true");
    assert_eq!(
        server.ok("GET", &recursive, None).await,
        json!({ "securityProfileTargetMappings": [mapping("b", &lab), mapping("a", &site)] })
    );
    let first = server.ok("GET", &format!("{recursive}&maxResults=1"), None).await;
    assert_eq!(first["securityProfileTargetMappings"], json!([mapping("b", &lab)]));
    let token = first["nextToken"].as_str().unwrap();
    assert_eq!(
        server.ok("GET", &format!("{recursive}&maxResults=1&nextToken={token}"), None).await,
        json!({ "securityProfileTargetMappings": [mapping("a", &site)] })
    );

    server.ok("DELETE", &format!("/security-profiles/a/targets?securityProfileTargetArn={site}"), None).await;
    assert_eq!(
        server.ok("GET", "/security-profiles/a/targets", None).await,
        json!({ "securityProfileTargets": [{ "arn": all }] })
    );
    server.call("GET", "/security-profiles/zz/targets", None).await.error(404, "ResourceNotFoundException");
}
