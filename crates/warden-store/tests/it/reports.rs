//! `record_report`, the ingest hot path: a report's ingest state and datapoints in one write,
//! shared commits under concurrency, the writer's caches surviving rollbacks and retention, and
//! `close` committing what is queued.

use std::sync::Arc;

use warden_store::{
    Datapoint, DatapointQuery, IngestState, MetricValue, PageRequest, SqliteStore, Store, StoreError, UtcDay,
};

use crate::{T0, all_pages, assert_matches, open};

const DAY_MS: i64 = 86_400_000;

fn point(thing: &str, metric: &str, timestamp_ms: i64, count: u64) -> Datapoint {
    Datapoint {
        thing: thing.into(),
        metric: metric.to_owned().into(),
        dimension: None,
        timestamp_ms,
        value: MetricValue::count(count),
    }
}

/// A report of `thing` as ingest makes it: a few counters and a set, all at `timestamp_ms`.
fn report(thing: &str, timestamp_ms: i64, n: u64) -> Vec<Datapoint> {
    vec![
        point(thing, "aws:all-bytes-in", timestamp_ms, n),
        point(thing, "aws:all-bytes-out", timestamp_ms, n + 1),
        Datapoint {
            thing: thing.into(),
            metric: "aws:listening-tcp-ports".into(),
            dimension: None,
            timestamp_ms,
            value: MetricValue::ports(vec![22, 443]),
        },
    ]
}

fn state(last_report_id: u64, accepted_at_ms: i64) -> IngestState {
    IngestState { last_report_id, accepted_at_ms }
}

async fn values(store: &SqliteStore, thing: &str, metric: &str) -> Vec<(i64, MetricValue)> {
    let q = DatapointQuery {
        thing: thing.to_owned(),
        metric: metric.to_owned(),
        dimension: None,
        start_ms: 0,
        end_ms: i64::MAX,
    };
    let data = all_pages(250, |p| {
        let q = &q;
        async move { store.query_datapoints(q, &p).await }
    })
    .await;
    data.into_iter().map(|d| (d.timestamp_ms, d.value)).collect()
}

async fn counts(store: &SqliteStore, thing: &str, metric: &str) -> Vec<u64> {
    values(store, thing, metric).await.into_iter().filter_map(|(_, v)| v.count).collect()
}

#[tokio::test]
async fn a_report_stores_its_state_and_datapoints() {
    let (_dir, store) = open();
    store.record_report("dev-1", state(10, T0), report("dev-1", T0, 100)).await.unwrap();
    store.record_report("dev-1", state(11, T0 + 300_000), report("dev-1", T0 + 300_000, 200)).await.unwrap();

    assert_eq!(store.ingest_state("dev-1").await.unwrap(), Some(state(11, T0 + 300_000)));
    assert_eq!(counts(&store, "dev-1", "aws:all-bytes-in").await, [100, 200]);
    assert_eq!(counts(&store, "dev-1", "aws:all-bytes-out").await, [101, 201]);
    assert_eq!(
        values(&store, "dev-1", "aws:listening-tcp-ports").await,
        [(T0, MetricValue::ports(vec![22, 443])), (T0 + 300_000, MetricValue::ports(vec![22, 443]))]
    );
    // The same series as `append_datapoints` writes: one store for both paths.
    store.append_datapoints(vec![point("dev-1", "aws:all-bytes-in", T0 + 600_000, 300)]).await.unwrap();
    assert_eq!(counts(&store, "dev-1", "aws:all-bytes-in").await, [100, 200, 300]);
}

#[tokio::test]
async fn a_report_without_datapoints_still_records_its_state() {
    let (_dir, store) = open();
    store.record_report("dev-1", state(1, T0), Vec::new()).await.unwrap();
    assert_eq!(store.ingest_state("dev-1").await.unwrap(), Some(state(1, T0)));
}

/// Anything invalid refuses the whole report: neither its state nor any datapoint is stored.
#[tokio::test]
async fn an_invalid_report_stores_nothing() {
    let (_dir, store) = open();
    store.record_report("dev-1", state(1, T0), report("dev-1", T0, 1)).await.unwrap();
    let check = |thing: &'static str, state: IngestState, points: Vec<Datapoint>| {
        let store = &store;
        async move {
            assert_matches!(store.record_report(thing, state, points).await, Err(StoreError::Invalid(_)));
            assert_eq!(store.ingest_state("dev-1").await.unwrap(), Some(self::state(1, T0)));
            assert_eq!(counts(store, "dev-1", "aws:all-bytes-in").await, [1]);
        }
    };
    let later = T0 + 1000;
    let mut nan = report("dev-1", later, 2);
    nan.push(Datapoint { value: MetricValue::number(f64::NAN), ..point("dev-1", "m", later, 0) });
    check("dev-1", state(2, later), nan).await;
    let mut empty_value = report("dev-1", later, 2);
    empty_value.push(Datapoint { value: MetricValue::default(), ..point("dev-1", "m", later, 0) });
    check("dev-1", state(2, later), empty_value).await;
    let mut bad_metric = report("dev-1", later, 2);
    bad_metric.push(point("dev-1", &"m".repeat(129), later, 1));
    check("dev-1", state(2, later), bad_metric).await;
    check("dev-1", state(2, later), report("dev-1", -1, 2)).await;
    check("dev-1", state(u64::MAX, later), report("dev-1", later, 2)).await;
    check("bad name", state(2, later), Vec::new()).await;
}

/// Metric and dimension names are free-form (custom metrics), so series whose names would
/// run together if simply concatenated must stay apart.
#[tokio::test]
async fn series_names_do_not_run_together() {
    let (_dir, store) = open();
    let with_dimension = |metric: &str, dimension: &str, count: u64| Datapoint {
        dimension: Some(dimension.to_owned()),
        ..point("dev-1", metric, T0, count)
    };
    store
        .record_report(
            "dev-1",
            state(1, T0),
            vec![
                with_dimension("a\0b", "c", 1),
                with_dimension("a", "b\0c", 2),
                point("dev-1", "a\0b\0c", T0, 3),
            ],
        )
        .await
        .unwrap();
    let read = |metric: &'static str, dimension: Option<&'static str>| {
        let store = &store;
        async move {
            let q = DatapointQuery {
                thing: "dev-1".into(),
                metric: metric.into(),
                dimension: dimension.map(str::to_owned),
                start_ms: 0,
                end_ms: i64::MAX,
            };
            let page = store.query_datapoints(&q, &PageRequest::first(10)).await.unwrap();
            page.items.into_iter().filter_map(|d| d.value.count).collect::<Vec<_>>()
        }
    };
    assert_eq!(read("a\0b", Some("c")).await, [1]);
    assert_eq!(read("a", Some("b\0c")).await, [2]);
    assert_eq!(read("a\0b\0c", None).await, [3]);
}

/// Many devices reporting at once: every report is stored once, whatever batches it shared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reports_are_all_stored() {
    let (_dir, store) = open();
    let store = Arc::new(store);
    const DEVICES: usize = 50;
    const REPORTS: u64 = 20;
    let tasks: Vec<_> = (0..DEVICES)
        .map(|d| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let thing = format!("dev-{d}");
                for r in 1..=REPORTS {
                    let at = T0 + i64::try_from(r).unwrap() * 1000;
                    store.record_report(&thing, state(r, at), report(&thing, at, r)).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    for d in 0..DEVICES {
        let thing = format!("dev-{d}");
        let last = T0 + i64::try_from(REPORTS).unwrap() * 1000;
        assert_eq!(store.ingest_state(&thing).await.unwrap(), Some(state(REPORTS, last)));
        assert_eq!(counts(&store, &thing, "aws:all-bytes-out").await, (2..=REPORTS + 1).collect::<Vec<_>>());
    }
}

/// Retention drops a day table the writer has been inserting into; a late datapoint of that
/// day must create the table again rather than go to a table that no longer exists.
#[tokio::test]
async fn writes_after_retention_recreate_the_day_table() {
    let (_dir, store) = open();
    store.record_report("dev-1", state(1, T0), report("dev-1", T0, 1)).await.unwrap();
    let dropped = store.drop_datapoints_before(UtcDay::of_timestamp_ms(T0 + DAY_MS)).await.unwrap();
    assert_eq!(dropped, [UtcDay::of_timestamp_ms(T0)]);
    assert!(counts(&store, "dev-1", "aws:all-bytes-in").await.is_empty());

    store.record_report("dev-1", state(2, T0 + 10), report("dev-1", T0 + 10, 2)).await.unwrap();
    store.append_datapoints(vec![point("dev-1", "aws:all-bytes-in", T0 + 20, 3)]).await.unwrap();
    assert_eq!(counts(&store, "dev-1", "aws:all-bytes-in").await, [2, 3]);
}

/// A job that fails after creating a day table rolls the table back; the writer must not keep
/// inserting into the table it had remembered.
#[tokio::test]
async fn a_rolled_back_day_table_is_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.db");
    let store = SqliteStore::open(&path).unwrap();
    store.record_report("dev-0", state(1, T0), Vec::new()).await.unwrap();
    // The store has no failure to provoke from outside, so a trigger makes one: the table of
    // the day after T0 refuses inserts, so a job writing T0's day (a new table) and then that
    // day fails after creating T0's table.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE points_20260102 (thing TEXT NOT NULL, ts_ms INTEGER NOT NULL, points BLOB NOT NULL) STRICT;
         CREATE TRIGGER boom AFTER INSERT ON points_20260102 BEGIN SELECT RAISE(ABORT, 'boom'); END;",
    )
    .unwrap();
    drop(conn);

    let mut failing = report("dev-1", T0, 1);
    failing.push(point("dev-1", "aws:all-bytes-in", T0 + DAY_MS, 1));
    assert_matches!(
        store.record_report("dev-1", state(1, T0), failing).await,
        Err(StoreError::Database(ref m)) if m.contains("boom")
    );
    assert_eq!(store.ingest_state("dev-1").await.unwrap(), None, "the failed report left its state");
    assert!(counts(&store, "dev-1", "aws:all-bytes-in").await.is_empty());

    store.record_report("dev-1", state(2, T0 + 1), report("dev-1", T0 + 1, 2)).await.unwrap();
    assert_eq!(counts(&store, "dev-1", "aws:all-bytes-in").await, [2]);
    assert_eq!(counts(&store, "dev-1", "aws:all-bytes-out").await, [3]);
    store.close().await.unwrap();
}

/// `close` on a store that is shared and busy: every write queued before it is committed and
/// answered, writes after it fail, and everything acknowledged is in the file when it reopens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_commits_what_is_queued() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.db");
    let store: Arc<SqliteStore> = Arc::new(SqliteStore::open(&path).unwrap());
    let writers: Vec<_> = (0..200u64)
        .map(|d| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let thing = format!("dev-{d}");
                let mut acknowledged = 0;
                for r in 1..=1000u64 {
                    let at = T0 + i64::try_from(r).unwrap();
                    match store.record_report(&thing, state(r, at), report(&thing, at, r)).await {
                        Ok(()) => acknowledged = r,
                        Err(StoreError::Database(m)) if m.contains("stopped") => break,
                        Err(e) => panic!("unexpected error {e}"),
                    }
                }
                (thing, acknowledged)
            })
        })
        .collect();
    // Let the writers get going, so that close meets a full queue.
    while store.ingest_state("dev-199").await.unwrap().is_none() {
        tokio::task::yield_now().await;
    }
    store.close().await.unwrap();
    store.close().await.unwrap();
    assert_matches!(
        store.record_report("late", state(1, T0), Vec::new()).await,
        Err(StoreError::Database(ref m)) if m.contains("stopped")
    );
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.push(writer.await.unwrap());
    }
    assert!(acknowledged.iter().any(|(_, n)| *n > 0));
    assert!(acknowledged.iter().all(|(_, n)| *n < 1000), "close should have stopped the writers");
    drop(store);

    let store = SqliteStore::open(&path).unwrap();
    for (thing, n) in acknowledged {
        // Exactly what was acknowledged: nothing lost, and no write that was refused.
        let last = store.ingest_state(&thing).await.unwrap().map_or(0, |s| s.last_report_id);
        assert_eq!(last, n, "{thing}");
        assert_eq!(counts(&store, &thing, "aws:all-bytes-in").await, (1..=n).collect::<Vec<_>>(), "{thing}");
    }
    let things = store.list_things(&Default::default(), &PageRequest::first(10)).await.unwrap();
    assert!(things.items.is_empty());
    store.close().await.unwrap();
}

/// Checks every thing's state, by both reads, against `expected` (thing, last report id), for
/// reports made by `record` below.
async fn check_states(store: &SqliteStore, expected: &[(&str, u64)], when: &str) {
    let expected: Vec<_> = expected
        .iter()
        .map(|&(thing, id)| (thing.to_owned(), state(id, T0 + i64::try_from(id).unwrap())))
        .collect();
    assert_eq!(store.all_ingest_states().await.unwrap(), expected, "{when}");
    for (thing, state) in &expected {
        assert_eq!(store.ingest_state(thing).await.unwrap(), Some(*state), "{thing} {when}");
    }
}

/// Reports of several things, one written out of order: each thing's state is its greatest
/// report id, whether it is read from the ingest log (before a fold), the table (after one),
/// both, or a reopened file.
#[tokio::test]
async fn the_greatest_report_id_is_the_state_before_and_after_a_fold_and_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.db");
    let store = SqliteStore::open(&path).unwrap();
    let record = |thing: &'static str, id: u64| {
        let store = &store;
        async move {
            let at = T0 + i64::try_from(id).unwrap();
            store.record_report(thing, state(id, at), report(thing, at, id)).await.unwrap();
        }
    };
    for id in 1..=3 {
        for thing in ["dev-a", "dev-b", "dev-c"] {
            record(thing, id).await;
        }
    }
    // Admitted in order, committed out of order: the older report must not win.
    record("dev-b", 7).await;
    record("dev-b", 5).await;
    let expected = [("dev-a", 3), ("dev-b", 7), ("dev-c", 3)];
    check_states(&store, &expected, "before a fold").await;
    store.fold_ingest_log().await.unwrap();
    check_states(&store, &expected, "after a fold").await;

    // Table and log together: newer reports of some things, an older one of another.
    record("dev-a", 4).await;
    record("dev-c", 2).await;
    record("dev-d", 1).await;
    let expected = [("dev-a", 4), ("dev-b", 7), ("dev-c", 3), ("dev-d", 1)];
    check_states(&store, &expected, "with the table and the log").await;
    assert_eq!(counts(&store, "dev-b", "aws:all-bytes-in").await, [1, 2, 3, 5, 7], "datapoints are all kept");
    store.close().await.unwrap();

    let conn = rusqlite::Connection::open(&path).unwrap();
    let logged: i64 = conn.query_row("SELECT count(*) FROM ingest_log", [], |row| row.get(0)).unwrap();
    assert_eq!(logged, 0, "close folds the log");
    drop(conn);
    let store = SqliteStore::open(&path).unwrap();
    check_states(&store, &expected, "after reopening").await;
    store.close().await.unwrap();
}

/// What a power cut leaves: the database file and its WAL as they are while the store runs,
/// with reports acknowledged but not yet folded. Every acknowledged report's state is there.
///
/// The copy is consistent although the checkpointer may be copying WAL pages into the database
/// file meanwhile: nothing writes while the files are copied, so the WAL is not restarted, and
/// it is copied after the database file, so it holds every page the copied file may lack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_the_running_files_has_every_acknowledged_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.db");
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    const DEVICES: u64 = 20;
    const REPORTS: u64 = 10;
    let tasks: Vec<_> = (0..DEVICES)
        .map(|d| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let thing = format!("dev-{d:02}");
                for r in 1..=REPORTS {
                    let at = T0 + i64::try_from(r).unwrap();
                    store.record_report(&thing, state(r, at), report(&thing, at, r)).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let copy = tempfile::tempdir().unwrap();
    let copied = copy.path().join("warden.db");
    std::fs::copy(&path, &copied).unwrap();
    std::fs::copy(dir.path().join("warden.db-wal"), copy.path().join("warden.db-wal")).unwrap();

    let recovered = SqliteStore::open(&copied).unwrap();
    let expected: Vec<_> = (0..DEVICES)
        .map(|d| (format!("dev-{d:02}"), state(REPORTS, T0 + i64::try_from(REPORTS).unwrap())))
        .collect();
    assert_eq!(recovered.all_ingest_states().await.unwrap(), expected);
    assert_eq!(counts(&recovered, "dev-07", "aws:all-bytes-in").await, (1..=REPORTS).collect::<Vec<_>>());
    recovered.close().await.unwrap();
    store.close().await.unwrap();
}

/// While reports keep coming, the writer folds the log by itself (about once a second), and
/// the states read the same afterwards.
#[tokio::test]
async fn the_writer_folds_the_log_while_reports_keep_coming() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.db");
    let store = SqliteStore::open(&path).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let logged =
        || conn.query_row("SELECT count(*) FROM ingest_log", [], |row| row.get::<_, u64>(0)).unwrap();
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut id = 0;
    loop {
        id += 1;
        let thing = if id % 2 == 0 { "dev-even" } else { "dev-odd" };
        store.record_report(thing, state(id, T0 + i64::try_from(id).unwrap()), Vec::new()).await.unwrap();
        if logged() < id {
            break;
        }
        assert!(std::time::Instant::now() < give_up, "no fold after {id} reports");
    }
    check_states(&store, &[("dev-even", id - id % 2), ("dev-odd", id - 1 + id % 2)], "after the fold").await;
    store.close().await.unwrap();
}

/// A fold that fails (here a trigger refuses it) is rolled back alone: the reports stand, the
/// log keeps their states, and a later fold moves them.
#[tokio::test]
async fn a_failing_fold_loses_no_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.db");
    let store = SqliteStore::open(&path).unwrap();
    store.record_report("dev-1", state(1, T0 + 1), report("dev-1", T0 + 1, 1)).await.unwrap();
    store.fold_ingest_log().await.unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TRIGGER boom BEFORE UPDATE ON ingest_state BEGIN SELECT RAISE(ABORT, 'boom'); END;",
    )
    .unwrap();
    store.record_report("dev-1", state(2, T0 + 2), report("dev-1", T0 + 2, 2)).await.unwrap();
    store.record_report("dev-2", state(3, T0 + 3), report("dev-2", T0 + 3, 3)).await.unwrap();
    assert_matches!(
        store.fold_ingest_log().await,
        Err(StoreError::Database(ref m)) if m.contains("boom")
    );
    // Closing folds once more, which fails the same way, but only that fold.
    store.close().await.unwrap();
    let logged: i64 = conn.query_row("SELECT count(*) FROM ingest_log", [], |row| row.get(0)).unwrap();
    assert_eq!(logged, 2, "the failed folds left the log");
    let store = SqliteStore::open(&path).unwrap();
    check_states(&store, &[("dev-1", 2), ("dev-2", 3)], "with the log kept").await;
    assert_eq!(counts(&store, "dev-1", "aws:all-bytes-in").await, [1, 2]);

    conn.execute_batch("DROP TRIGGER boom").unwrap();
    store.fold_ingest_log().await.unwrap();
    check_states(&store, &[("dev-1", 2), ("dev-2", 3)], "after the fold").await;
    store.close().await.unwrap();
}
