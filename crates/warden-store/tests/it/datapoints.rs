//! Metric datapoints: value shapes, series, time ranges across day tables, pagination,
//! retention, and many concurrent appends.

use std::sync::Arc;

use warden_store::{
    Datapoint, DatapointQuery, MetricDatum, MetricValue, PageRequest, SqliteStore, Store, StoreError, UtcDay,
};

use crate::{T0, all_pages, assert_matches, bad_page, open};

const DAY_MS: i64 = 86_400_000;
const BYTES_OUT: &str = "aws:all-bytes-out";

fn dp(thing: &str, metric: &str, timestamp_ms: i64, value: MetricValue) -> Datapoint {
    Datapoint { thing: thing.into(), metric: metric.to_owned().into(), dimension: None, timestamp_ms, value }
}

fn query(thing: &str, metric: &str, start_ms: i64, end_ms: i64) -> DatapointQuery {
    DatapointQuery { thing: thing.to_owned(), metric: metric.to_owned(), dimension: None, start_ms, end_ms }
}

async fn read_all(store: &SqliteStore, q: &DatapointQuery, page_size: usize) -> Vec<MetricDatum> {
    all_pages(page_size, |p| async move { store.query_datapoints(q, &p).await }).await
}

fn times(data: &[MetricDatum]) -> Vec<i64> {
    data.iter().map(|d| d.timestamp_ms).collect()
}

#[test]
fn metric_values_serialise_in_the_aws_shape() {
    let check = |value: MetricValue, expect: &str| {
        assert_eq!(serde_json::to_string(&value).unwrap(), expect);
        assert_eq!(serde_json::from_str::<MetricValue>(expect).unwrap(), value);
    };
    check(MetricValue::count(1024), r#"{"count":1024}"#);
    check(MetricValue::number(1.5), r#"{"number":1.5}"#);
    check(MetricValue::numbers(vec![1.0, -2.5]), r#"{"numbers":[1.0,-2.5]}"#);
    check(MetricValue::strings(["a"]), r#"{"strings":["a"]}"#);
    check(MetricValue::ports(vec![22, 443]), r#"{"ports":[22,443]}"#);
    check(MetricValue::cidrs(["10.0.0.0/8"]), r#"{"cidrs":["10.0.0.0/8"]}"#);
    check(MetricValue::default(), "{}");
}

#[tokio::test]
async fn every_value_shape_round_trips() {
    let (_dir, store) = open();
    let values = [
        MetricValue::count(u64::MAX),
        MetricValue::number(-0.125),
        MetricValue::numbers(vec![1e300, 0.1, -7.0]),
        MetricValue::strings(vec!["α".into(), String::new()]),
        MetricValue::ports(vec![0, 8883, 65535]),
        MetricValue::cidrs(["192.0.2.1/32", "2001:db8::/32"]),
        MetricValue { count: Some(3), ports: Some(vec![1]), ..MetricValue::default() },
        // An empty set (no listening ports) is a value, not an absent one.
        MetricValue::ports(Vec::new()),
    ];
    let batch = values.iter().enumerate().map(|(i, v)| dp("t1", "m", T0 + i as i64, v.clone()));
    store.append_datapoints(batch.collect()).await.unwrap();
    let data = read_all(&store, &query("t1", "m", T0, T0 + DAY_MS), 250).await;
    let read: Vec<MetricValue> = data.into_iter().map(|d| d.value).collect();
    assert_eq!(read, values);
}

#[tokio::test]
async fn series_are_separate() {
    let (_dir, store) = open();
    let mut with_dimension = dp("t1", "aws:num-messages-sent", T0, MetricValue::count(2));
    with_dimension.dimension = Some("telemetry-topics".into());
    store
        .append_datapoints(vec![
            dp("t1", "aws:num-messages-sent", T0, MetricValue::count(1)),
            with_dimension,
            dp("t2", "aws:num-messages-sent", T0, MetricValue::count(3)),
            dp("t1", BYTES_OUT, T0, MetricValue::count(4)),
        ])
        .await
        .unwrap();
    let check = |thing: &str, metric: &str, dimension: Option<&str>, expect: &[u64]| {
        let store = &store;
        let mut q = query(thing, metric, T0, T0 + 1);
        q.dimension = dimension.map(str::to_owned);
        let expect: Vec<MetricValue> = expect.iter().map(|&c| MetricValue::count(c)).collect();
        async move {
            let values: Vec<MetricValue> =
                read_all(store, &q, 10).await.into_iter().map(|d| d.value).collect();
            assert_eq!(values, expect, "{q:?}");
        }
    };
    check("t1", "aws:num-messages-sent", None, &[1]).await;
    check("t1", "aws:num-messages-sent", Some("telemetry-topics"), &[2]).await;
    check("t2", "aws:num-messages-sent", None, &[3]).await;
    check("t1", BYTES_OUT, None, &[4]).await;
    check("t2", BYTES_OUT, None, &[]).await;
    check("t1", "aws:num-messages-sent", Some("other"), &[]).await;
    check("never", BYTES_OUT, None, &[]).await;
}

#[tokio::test]
async fn range_is_half_open_and_ordered() {
    let (_dir, store) = open();
    // Appended out of order, with a duplicate timestamp: reads come back by time, ties in
    // insertion order.
    let stamps = [T0 + 30, T0 + 10, T0 + 20, T0 + 10, T0 + 40];
    let batch = stamps.iter().enumerate().map(|(i, &t)| dp("t1", BYTES_OUT, t, MetricValue::count(i as u64)));
    store.append_datapoints(batch.collect()).await.unwrap();

    let data = read_all(&store, &query("t1", BYTES_OUT, T0 + 10, T0 + 40), 2).await;
    assert_eq!(times(&data), [T0 + 10, T0 + 10, T0 + 20, T0 + 30]);
    assert_eq!(data[0].value, MetricValue::count(1));
    assert_eq!(data[1].value, MetricValue::count(3));
    assert!(read_all(&store, &query("t1", BYTES_OUT, T0 + 20, T0 + 20), 5).await.is_empty());
    assert_eq!(times(&read_all(&store, &query("t1", BYTES_OUT, i64::MIN, i64::MAX), 5).await).len(), 5);
}

#[tokio::test]
async fn a_query_spans_day_tables() {
    let (_dir, store) = open();
    let midnight = T0 + DAY_MS; // 2026-01-02T00:00:00Z
    let stamps = [
        midnight - DAY_MS - 1, // 2025-12-31, outside the query
        midnight - 2,
        midnight - 1, // 2026-01-01T23:59:59.999Z
        midnight,     // 2026-01-02T00:00:00.000Z
        midnight + 1,
        midnight + 3 * DAY_MS, // 2026-01-05, a day table after a gap
    ];
    // One batch spanning four days, appended in reverse.
    let batch = stamps.iter().rev().map(|&t| dp("t1", BYTES_OUT, t, MetricValue::count(t as u64)));
    store.append_datapoints(batch.collect()).await.unwrap();

    let q = query("t1", BYTES_OUT, midnight - 2, midnight + 4 * DAY_MS);
    for page_size in [1, 2, 3, 250] {
        let data = read_all(&store, &q, page_size).await;
        assert_eq!(times(&data), &stamps[1..], "page size {page_size}");
        assert!(data.iter().all(|d| d.value == MetricValue::count(d.timestamp_ms as u64)));
    }
    let first_day_only = query("t1", BYTES_OUT, midnight - 2, midnight);
    assert_eq!(times(&read_all(&store, &first_day_only, 1).await), [midnight - 2, midnight - 1]);
}

#[tokio::test]
async fn retention_drops_whole_days() {
    let (_dir, store) = open();
    let day = |n: i64| T0 + n * DAY_MS;
    let batch = (0..5).map(|n| dp("t1", BYTES_OUT, day(n) + 1000, MetricValue::count(n as u64)));
    store.append_datapoints(batch.collect()).await.unwrap();

    let cutoff = UtcDay::from_ymd(2026, 1, 3).unwrap();
    assert_eq!(cutoff.start_ms(), day(2));
    let dropped = store.drop_datapoints_before(cutoff).await.unwrap();
    let expect = [UtcDay::from_ymd(2026, 1, 1).unwrap(), UtcDay::from_ymd(2026, 1, 2).unwrap()];
    assert_eq!(dropped, expect);
    assert_eq!(dropped[0].to_string(), "2026-01-01");

    let left = read_all(&store, &query("t1", BYTES_OUT, day(0), day(10)), 10).await;
    assert_eq!(times(&left), [day(2) + 1000, day(3) + 1000, day(4) + 1000]);
    assert!(store.drop_datapoints_before(cutoff).await.unwrap().is_empty(), "nothing left to drop");

    // Writing to a dropped day starts a new table for it; the next retention run drops it again.
    store.append_datapoints(vec![dp("t1", BYTES_OUT, day(0), MetricValue::count(9))]).await.unwrap();
    assert_eq!(times(&read_all(&store, &query("t1", BYTES_OUT, day(0), day(1)), 10).await), [day(0)]);
    assert_eq!(store.drop_datapoints_before(cutoff).await.unwrap(), expect[..1]);

    // A cutoff far in the future drops everything, one in the past nothing.
    let past = UtcDay::from_ymd(1969, 12, 31).unwrap();
    assert!(store.drop_datapoints_before(past).await.unwrap().is_empty());
    let future = UtcDay::from_ymd(20000, 1, 1).unwrap();
    assert_eq!(store.drop_datapoints_before(future).await.unwrap().len(), 3);
    assert!(read_all(&store, &query("t1", BYTES_OUT, day(0), day(10)), 10).await.is_empty());
}

#[tokio::test]
async fn invalid_datapoints_and_queries() {
    let (_dir, store) = open();
    let ok = || dp("t1", BYTES_OUT, T0, MetricValue::count(1));
    let check = |change: fn(&mut Datapoint)| {
        let store = &store;
        let mut bad = ok();
        change(&mut bad);
        async move {
            // The whole batch is refused, including its valid datapoint.
            let result = store.append_datapoints(vec![ok(), bad.clone()]).await;
            assert_matches!(result, Err(StoreError::Invalid(_)));
        }
    };
    check(|d| d.value = MetricValue::number(f64::NAN)).await;
    check(|d| d.value = MetricValue::numbers(vec![1.0, f64::INFINITY])).await;
    check(|d| d.value = MetricValue::default()).await;
    check(|d| d.timestamp_ms = -1).await;
    check(|d| d.timestamp_ms = 253_402_300_800_000).await;
    check(|d| d.thing = "bad thing".into()).await;
    check(|d| d.metric = "".into()).await;
    check(|d| d.dimension = Some(String::new())).await;
    assert!(read_all(&store, &query("t1", BYTES_OUT, 0, i64::MAX), 10).await.is_empty());
    store.append_datapoints(Vec::new()).await.unwrap();

    let q = query("t1", BYTES_OUT, T0 + 1, T0);
    assert_matches!(store.query_datapoints(&q, &PageRequest::default()).await, Err(StoreError::Invalid(_)));
    let q = query("t1", BYTES_OUT, T0, T0 + 1);
    for token in ["zz", "616263" /* "abc": no colon */, "313a78" /* "1:x" */] {
        assert_matches!(store.query_datapoints(&q, &bad_page(token)).await, Err(StoreError::Invalid(_)));
    }
}

/// Ten tasks append a thousand datapoints each, one per call, all at once: the writer batches
/// them, and every acknowledged datapoint is there afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_are_all_stored() {
    let (_dir, store) = open();
    let store = Arc::new(store);
    let tasks: Vec<_> = (0..10)
        .map(|task| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for i in 0..1000 {
                    let thing = format!("dev-{task}");
                    let point = dp(&thing, BYTES_OUT, T0 + i * 1000, MetricValue::count(i as u64));
                    store.append_datapoints(vec![point]).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    for task in 0..10 {
        let q = query(&format!("dev-{task}"), BYTES_OUT, T0, T0 + DAY_MS);
        let data = read_all(&store, &q, 250).await;
        let expect: Vec<i64> = (0..1000).map(|i| T0 + i * 1000).collect();
        assert_eq!(times(&data), expect, "dev-{task}");
    }
}

/// Migration 4: a version 3 database (a row per datapoint in `datapoints_YYYYMMDD`, series in
/// `metric_series`) keeps every datapoint, in order, with dimensions and same-time duplicates,
/// and the old tables are gone.
#[tokio::test]
async fn migration_4_keeps_the_datapoints_of_a_version_3_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.db");
    {
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        let tx = conn.transaction().unwrap();
        for migration in &warden_store::sqlite::MIGRATIONS[..3] {
            tx.execute_batch(migration.sql).unwrap();
        }
        tx.pragma_update(None, "user_version", 3).unwrap();
        tx.execute_batch(
            r#"INSERT INTO metric_series (id, thing, metric, dimension) VALUES
                   (1, 't1', 'aws:all-bytes-out', ''), (2, 't1', 'aws:num-messages-sent', 'dim'),
                   (3, 't2', 'aws:all-bytes-out', ''), (4, 't1', 'aws:listening-tcp-ports', '');
               CREATE TABLE datapoints_20260101 (series INTEGER NOT NULL, ts_ms INTEGER NOT NULL, value TEXT NOT NULL) STRICT;
               CREATE INDEX datapoints_20260101_by_series ON datapoints_20260101 (series, ts_ms);
               CREATE TABLE datapoints_20260102 (series INTEGER NOT NULL, ts_ms INTEGER NOT NULL, value TEXT NOT NULL) STRICT;
               INSERT INTO datapoints_20260101 (series, ts_ms, value) VALUES
                   (1, 1767225600000, '{"count":1}'), (2, 1767225600000, '{"count":7}'),
                   (4, 1767225600000, '{"ports":[22,443]}'), (3, 1767225600000, '{"count":50}'),
                   (1, 1767225600000, '{"count":2}'), (1, 1767225600005, '{"count":3}');
               INSERT INTO datapoints_20260102 (series, ts_ms, value) VALUES (1, 1767312000000, '{"count":4}');"#,
        )
        .unwrap();
        tx.commit().unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.schema_version().await.unwrap(), warden_store::sqlite::MIGRATIONS.len());
    let counts =
        |data: Vec<MetricDatum>| data.iter().map(|d| (d.timestamp_ms, d.value.count)).collect::<Vec<_>>();
    let whole = query("t1", BYTES_OUT, T0, T0 + 2 * DAY_MS);
    assert_eq!(
        counts(read_all(&store, &whole, 1).await),
        [(T0, Some(1)), (T0, Some(2)), (T0 + 5, Some(3)), (T0 + DAY_MS, Some(4))]
    );
    let mut dimensioned = query("t1", "aws:num-messages-sent", T0, T0 + 2 * DAY_MS);
    dimensioned.dimension = Some("dim".into());
    assert_eq!(counts(read_all(&store, &dimensioned, 10).await), [(T0, Some(7))]);
    let ports = read_all(&store, &query("t1", "aws:listening-tcp-ports", T0, T0 + 1), 10).await;
    assert_eq!(ports[0].value, MetricValue::ports(vec![22, 443]));
    assert_eq!(counts(read_all(&store, &query("t2", BYTES_OUT, T0, T0 + 1), 10).await), [(T0, Some(50))]);
    // New writes land beside the converted rows, and retention still sees the converted days.
    store.append_datapoints(vec![dp("t1", BYTES_OUT, T0 + 6, MetricValue::count(9))]).await.unwrap();
    assert_eq!(
        times(&read_all(&store, &query("t1", BYTES_OUT, T0, T0 + DAY_MS), 10).await),
        [T0, T0, T0 + 5, T0 + 6]
    );
    assert_eq!(
        store.drop_datapoints_before(UtcDay::of_timestamp_ms(T0 + DAY_MS)).await.unwrap(),
        [UtcDay::of_timestamp_ms(T0)]
    );
    store.close().await.unwrap();

    let conn = rusqlite::Connection::open(&path).unwrap();
    let old: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name GLOB 'datapoints_*' OR name = 'metric_series'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(old, 0, "the old tables are dropped");
}
