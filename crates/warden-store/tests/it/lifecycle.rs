//! The store as a file over time: reopening, migrations, shutdown without `close`, a process
//! crash, and the isolation of failing writes inside a batch.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use warden_store::sqlite::MIGRATIONS;
use warden_store::{
    CertificateStatus, Datapoint, DatapointQuery, IngestState, MetricValue, NewCertificate, NewThingGroup,
    PageRequest, SqliteStore, Store, StoreError,
};

use crate::{T0, all_pages, assert_matches, attrs, strings};

fn bytes_out(thing: &str, timestamp_ms: i64, count: u64) -> Datapoint {
    Datapoint {
        thing: thing.into(),
        metric: "aws:all-bytes-out".into(),
        dimension: None,
        timestamp_ms,
        value: MetricValue::count(count),
    }
}

async fn stored_times(store: &SqliteStore, thing: &str) -> Vec<i64> {
    let q = DatapointQuery {
        thing: thing.to_owned(),
        metric: "aws:all-bytes-out".into(),
        dimension: None,
        start_ms: 0,
        end_ms: i64::MAX,
    };
    let data = all_pages(250, |p| {
        let q = &q;
        async move { store.query_datapoints(q, &p).await }
    })
    .await;
    data.into_iter().map(|d| d.timestamp_ms).collect()
}

#[tokio::test]
async fn reopen_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.db");
    let cert = "c0".repeat(32);
    {
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.schema_version().await.unwrap(), MIGRATIONS.len());
        store.create_thing("t1", attrs(&[("a", "1")]), T0).await.unwrap();
        let group = NewThingGroup { name: "g".into(), ..Default::default() };
        store.create_thing_group(group, T0).await.unwrap();
        store.add_thing_to_group("g", "t1").await.unwrap();
        store
            .create_certificate(NewCertificate {
                certificate_id: cert.clone(),
                pem: "PEM".into(),
                status: CertificateStatus::Active,
                ca_certificate_id: None,
                subject_cn: None,
                created_at_ms: T0,
            })
            .await
            .unwrap();
        store.attach_thing_principal("t1", &cert).await.unwrap();
        store.create_policy("p", "{}", T0).await.unwrap();
        store.attach_policy("p", "target").await.unwrap();
        store.set_ingest_state("t1", IngestState { last_report_id: 7, accepted_at_ms: T0 }).await.unwrap();
        store.append_datapoints(vec![bytes_out("t1", T0, 1)]).await.unwrap();
        store.close().await.unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.schema_version().await.unwrap(), MIGRATIONS.len());
    assert_eq!(store.describe_thing("t1").await.unwrap().attributes, attrs(&[("a", "1")]));
    assert_eq!(store.effective_groups_for_thing("t1").await.unwrap(), strings(&["g"]));
    let principals = store.list_thing_principals("t1", &PageRequest::default()).await.unwrap();
    assert_eq!(principals.items, vec![cert]);
    let attached = store.list_attached_policies("target", &PageRequest::default()).await.unwrap();
    assert_eq!(attached.items, strings(&["p"]));
    assert_eq!(store.ingest_state("t1").await.unwrap().map(|s| s.last_report_id), Some(7));
    assert_eq!(stored_times(&store, "t1").await, [T0]);
    store.close().await.unwrap();
}

#[tokio::test]
async fn open_applies_only_missing_migrations() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.db");
    // A database as an older build left it: the first migration only, with a thing in it.
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATIONS[0].sql).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO things (name, thing_id, version, created_at_ms) VALUES ('old', 'id', 1, 0)",
            [],
        )
        .unwrap();
    }
    // Re-running the first migration would fail (its tables exist), so opening proves it ran
    // only the rest.
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.schema_version().await.unwrap(), MIGRATIONS.len());
    assert_eq!(store.describe_thing("old").await.unwrap().id, "id");
    store.set_ingest_state("old", IngestState { last_report_id: 1, accepted_at_ms: 0 }).await.unwrap();
    store.close().await.unwrap();

    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.schema_version().await.unwrap(), MIGRATIONS.len());
    store.close().await.unwrap();
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    assert_matches!(
        SqliteStore::open(&path),
        Err(StoreError::Database(ref m)) if m.contains("99") && m.contains("newer")
    );
}

#[test]
fn open_fails_cleanly_on_a_bad_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-dir").join("warden.db");
    assert_matches!(SqliteStore::open(&path), Err(StoreError::Database(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_without_close_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.db");
    let store = SqliteStore::open(&path).unwrap();
    for i in 0..100 {
        store.append_datapoints(vec![bytes_out("t1", T0 + i, 1)]).await.unwrap();
    }
    store.create_thing("t1", attrs(&[]), T0).await.unwrap();
    drop(store);

    // The old writer thread may still be shutting down; the new store opens beside it.
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(stored_times(&store, "t1").await, (0..100).map(|i| T0 + i).collect::<Vec<_>>());
    store.describe_thing("t1").await.unwrap();
    store.close().await.unwrap();
}

/// Failing writes that share a batch with successful ones fail alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_write_does_not_spoil_its_batch() {
    let (_dir, store) = crate::open();
    let store = Arc::new(store);
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                // Even tasks race for one name, odd tasks create their own.
                let name = if i % 2 == 0 { "contested".to_owned() } else { format!("own-{i}") };
                store.create_thing(&name, attrs(&[]), T0).await
            })
        })
        .collect();
    let mut created = 0;
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => created += 1,
            Err(StoreError::AlreadyExists { .. }) => refused += 1,
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!((created, refused), (101, 99));
    let things = store.list_things(&Default::default(), &PageRequest::first(250)).await.unwrap();
    assert_eq!(things.items.len(), 101);
}

const CRASH_CHILD_DB: &str = "WARDEN_STORE_CRASH_CHILD_DB";
const CRASH_AFTER_ACKS: usize = 2000;
const CRASH_EXIT_CODE: i32 = 86;

/// The report id of the crash child's `i`th report (from 0) of a thing.
fn report_id(i: i64) -> u64 {
    u64::try_from(i).unwrap() + 1
}

/// The child half of `a_crash_loses_nothing_acknowledged`: records reports from several tasks,
/// prints every acknowledgement, and ends the process abruptly while writes are still in
/// flight (and, most likely, before the writer has folded the ingest log).
#[test]
#[ignore = "run as a child process by a_crash_loses_nothing_acknowledged"]
fn crash_child() {
    let Ok(path) = std::env::var(CRASH_CHILD_DB) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    runtime.block_on(async move {
        let store = Arc::new(SqliteStore::open(Path::new(&path)).unwrap());
        let (acks, mut acked) = tokio::sync::mpsc::unbounded_channel();
        for task in 0..4 {
            let (store, acks) = (Arc::clone(&store), acks.clone());
            tokio::spawn(async move {
                for i in 0.. {
                    let thing = format!("crash-{task}");
                    let state = IngestState { last_report_id: report_id(i), accepted_at_ms: T0 + i };
                    store.record_report(&thing, state, vec![bytes_out(&thing, T0 + i, 1)]).await.unwrap();
                    if acks.send((task, i)).is_err() {
                        return;
                    }
                }
            });
        }
        let mut count = 0;
        while let Some((task, i)) = acked.recv().await {
            // stdout is line-buffered: each line is out before the next ack is counted.
            println!("ACK {task} {i}");
            count += 1;
            if count == CRASH_AFTER_ACKS {
                // To SQLite this is a crash: the process ends mid-batch with no destructor,
                // close or checkpoint run. (`abort` would be the same but may leave a core file.)
                std::process::exit(CRASH_EXIT_CODE);
            }
        }
    });
}

#[test]
fn a_crash_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.db");
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["lifecycle::crash_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CRASH_CHILD_DB, &path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(CRASH_EXIT_CODE), "the child should have crashed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let acked: BTreeSet<(usize, i64)> = stdout
        .lines()
        .filter_map(|line| {
            // The first ACK shares its line with libtest's "test ... " prefix.
            let mut words = line[line.find("ACK ")? + 4..].split(' ');
            Some((words.next()?.parse().ok()?, words.next()?.parse().ok()?))
        })
        .collect();
    assert_eq!(acked.len(), CRASH_AFTER_ACKS, "child output:\n{stdout}");

    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(async {
        let store = SqliteStore::open(&path).unwrap();
        for task in 0..4 {
            let thing = format!("crash-{task}");
            let stored: BTreeSet<i64> = stored_times(&store, &thing).await.into_iter().collect();
            for (_, i) in acked.iter().filter(|(t, _)| *t == task) {
                assert!(stored.contains(&(T0 + i)), "acknowledged {thing} #{i} is missing");
            }
            // Reports acknowledged last may be followed by some that committed unacknowledged.
            let last_acked = acked.iter().filter(|(t, _)| *t == task).map(|&(_, i)| report_id(i)).max();
            let last_stored = store.ingest_state(&thing).await.unwrap().map(|s| s.last_report_id);
            assert!(last_stored >= last_acked, "{thing}: state {last_stored:?}, acknowledged {last_acked:?}");
        }
        store.close().await.unwrap();
    });
}
