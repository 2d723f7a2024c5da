//! ListMetricValues over datapoints written to the store.

use serde_json::json;
use warden_store::{Datapoint, MetricValue};

use crate::support::{NOW_MS, Paged, TestServer, collect_pages};

fn datapoint(metric: &str, dimension: Option<&str>, minutes: i64, value: MetricValue) -> Datapoint {
    Datapoint {
        thing: "t1".into(),
        metric: metric.to_owned().into(),
        dimension: dimension.map(str::to_owned),
        timestamp_ms: NOW_MS + minutes * 60_000,
        value,
    }
}

#[tokio::test]
async fn metric_values_are_listed_by_series_and_time_range() {
    let server = TestServer::start().await;
    server
        .state
        .store
        .append_datapoints(vec![
            datapoint("aws:all-bytes-out", None, 0, MetricValue::count(100)),
            datapoint("aws:all-bytes-out", None, 5, MetricValue::count(250)),
            datapoint("aws:all-bytes-out", None, 10, MetricValue::count(75)),
            datapoint("aws:all-bytes-out", None, 15, MetricValue::count(0)),
            datapoint("aws:listening-tcp-ports", None, 5, MetricValue::ports(vec![22, 443])),
            datapoint("aws:num-authorization-failures", Some("TopicFilters"), 5, MetricValue::count(3)),
            datapoint("batteryPercentage", None, 5, MetricValue::number(87.5)),
        ])
        .await
        .unwrap();

    // [10:00, 10:15): the 10:15 datapoint is out; botocore sends ISO 8601 with a Z.
    let range = "startTime=2026-11-27T10%3A00%3A00Z&endTime=2026-11-27T10%3A15%3A00Z";
    let bytes = server
        .ok("GET", &format!("/metric-values?thingName=t1&metricName=aws%3Aall-bytes-out&{range}"), None)
        .await;
    assert_eq!(
        bytes,
        json!({ "metricDatumList": [
            { "timestamp": 1_795_773_600.0, "value": { "count": 100 } },
            { "timestamp": 1_795_773_900.0, "value": { "count": 250 } },
            { "timestamp": 1_795_774_200.0, "value": { "count": 75 } },
        ]})
    );
    let ports = server
        .ok("GET", &format!("/metric-values?thingName=t1&metricName=aws%3Alistening-tcp-ports&{range}"), None)
        .await;
    assert_eq!(ports["metricDatumList"][0]["value"], json!({ "ports": [22, 443] }));
    let battery = server
        .ok("GET", &format!("/metric-values?thingName=t1&metricName=batteryPercentage&{range}"), None)
        .await;
    assert_eq!(battery["metricDatumList"][0]["value"], json!({ "number": 87.5 }));
    let dimension = "&dimensionName=TopicFilters&dimensionValueOperator=IN";
    let failures = format!("/metric-values?thingName=t1&metricName=aws%3Anum-authorization-failures&{range}");
    let with = server.ok("GET", &format!("{failures}{dimension}"), None).await;
    assert_eq!(with["metricDatumList"][0]["value"], json!({ "count": 3 }));
    assert_eq!(server.ok("GET", &failures, None).await, json!({ "metricDatumList": [] }));

    // Epoch seconds and offsets are accepted too; pages follow each other.
    let target = "/metric-values?thingName=t1&metricName=aws%3Aall-bytes-out&startTime=1795773600&endTime=2026-11-27T12%3A15%3A00%2B02%3A00&maxResults=3";
    let (values, pages) = collect_pages(&server, "GET", target, "metricDatumList", Paged::Token, |d| {
        d["value"]["count"].to_string()
    })
    .await;
    assert_eq!((values, pages), (vec!["100".to_owned(), "250".into(), "75".into()], 1));
    let target = "/metric-values?thingName=t1&metricName=aws%3Aall-bytes-out&startTime=1795773600&endTime=1795780000&maxResults=3";
    let (values, pages) = collect_pages(&server, "GET", target, "metricDatumList", Paged::Token, |d| {
        d["value"]["count"].to_string()
    })
    .await;
    assert_eq!((values, pages), (vec!["100".to_owned(), "250".into(), "75".into(), "0".into()], 2));
}

#[tokio::test]
async fn bad_metric_queries_name_the_field() {
    let server = TestServer::start().await;
    let base = "/metric-values?thingName=t1&metricName=m";
    let cases: Vec<(String, &str)> = vec![
        ("/metric-values?metricName=m&startTime=0&endTime=1".to_owned(), "thingName is required"),
        ("/metric-values?thingName=t1&startTime=0&endTime=1".to_owned(), "metricName is required"),
        (format!("{base}&endTime=1"), "startTime is required"),
        (format!("{base}&startTime=yesterday&endTime=1"), "startTime must be an ISO 8601 time"),
        (format!("{base}&startTime=2026-11-27&endTime=1"), "startTime must be an ISO 8601 time"),
        (format!("{base}&startTime=2&endTime=1"), "startTime must not be after endTime"),
        (
            format!("{base}&startTime=0&endTime=1&dimensionName=d&dimensionValueOperator=NOT_IN"),
            "NOT_IN is not supported",
        ),
        (
            format!("{base}&startTime=0&endTime=1&dimensionValueOperator=ALL"),
            "dimensionValueOperator must be IN or NOT_IN",
        ),
        (format!("{base}&startTime=0&endTime=1&maxResults=0"), "maxResults must be between 1 and 250"),
        (format!("{base}&startTime=0&endTime=1&nextToken=nothex"), "malformed next_token"),
        (format!("{base}&startTime=0&endTime=1&period=300"), "query parameter period is not supported"),
    ];
    for (query, expect) in cases {
        let message = server.call("GET", &query, None).await.error(400, "InvalidRequestException");
        assert!(message.contains(expect), "{query}: {message:?} should contain {expect:?}");
    }
}
