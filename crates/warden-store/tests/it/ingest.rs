//! Per-thing ingest state: what the ingest path needs to reject duplicates and throttle.

use warden_store::{IngestState, SqliteStore, Store, StoreError};

use crate::{T0, assert_matches, open};

#[tokio::test]
async fn round_trip() {
    let (_dir, store) = open();
    assert_eq!(store.ingest_state("dev-1").await.unwrap(), None);

    let first = IngestState { last_report_id: 1_767_225_600, accepted_at_ms: T0 };
    store.set_ingest_state("dev-1", first).await.unwrap();
    assert_eq!(store.ingest_state("dev-1").await.unwrap(), Some(first));
    assert_eq!(store.ingest_state("dev-2").await.unwrap(), None, "state is per thing");

    let second = IngestState { last_report_id: 1_767_225_900, accepted_at_ms: T0 + 300_000 };
    store.set_ingest_state("dev-1", second).await.unwrap();
    assert_eq!(store.ingest_state("dev-1").await.unwrap(), Some(second));

    // Reports admitted in order may be written out of order: the state never moves back.
    let older = IngestState { last_report_id: 1_767_225_600, accepted_at_ms: T0 + 600_000 };
    store.set_ingest_state("dev-1", older).await.unwrap();
    assert_eq!(store.ingest_state("dev-1").await.unwrap(), Some(second));

    let largest = IngestState { last_report_id: i64::MAX as u64, accepted_at_ms: T0 };
    store.set_ingest_state("dev-3", largest).await.unwrap();
    assert_eq!(store.ingest_state("dev-3").await.unwrap(), Some(largest));
}

#[tokio::test]
async fn errors() {
    let (_dir, store) = open();
    let too_large = IngestState { last_report_id: u64::MAX, accepted_at_ms: T0 };
    assert_matches!(store.set_ingest_state("dev-1", too_large).await, Err(StoreError::Invalid(_)));
    assert_eq!(store.ingest_state("dev-1").await.unwrap(), None);
    let ok = IngestState { last_report_id: 1, accepted_at_ms: T0 };
    assert_matches!(store.set_ingest_state("bad name", ok).await, Err(StoreError::Invalid(_)));
    assert_matches!(store.ingest_state("").await, Err(StoreError::Invalid(_)));
}

#[tokio::test]
async fn every_state_in_one_read() {
    let (_dir, store) = open();
    assert_eq!(store.all_ingest_states().await.unwrap(), Vec::new());
    let a = IngestState { last_report_id: 7, accepted_at_ms: T0 };
    let b = IngestState { last_report_id: 9, accepted_at_ms: T0 + 1 };
    store.set_ingest_state("dev-a", a).await.unwrap();
    store.set_ingest_state("dev-b", b).await.unwrap();
    let mut all = store.all_ingest_states().await.unwrap();
    all.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(all, vec![("dev-a".to_owned(), a), ("dev-b".to_owned(), b)]);
}

/// Reports append their state to `ingest_log`, which the writer folds into `ingest_state` now
/// and then; reads must give the same answer on either side of a fold. The rows are written
/// directly so that both places hold states when the store opens (a store folds only in a
/// write batch, and these reads write nothing).
#[tokio::test]
async fn reads_see_through_the_ingest_log_as_a_fold_would() {
    let (dir, store) = open();
    store.close().await.unwrap();
    let path = dir.path().join("warden.db");
    let at = |ms: i64| T0 + ms;
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(&format!(
            "INSERT INTO ingest_state VALUES ('a', 5, {a}), ('b', 9, {a}), ('c', 3, {a}), ('e', 4, {a});
             INSERT INTO ingest_log VALUES
                 ('a', 7, {b}),  -- newer than the table
                 ('a', 6, {c}),  -- logged after 7 but older: must not win
                 ('b', 8, {b}),  -- older than the table
                 ('d', 2, {b}),  -- only in the log
                 ('d', 2, {c}),  -- the same report id again: the first stays
                 ('c', 3, {b});  -- the same report id as the table: the table's stays",
            a = at(0),
            b = at(1),
            c = at(2),
        ))
        .unwrap();
    }
    let state = |last_report_id, accepted_at_ms| IngestState { last_report_id, accepted_at_ms };
    let expected = vec![
        ("a".to_owned(), state(7, at(1))),
        ("b".to_owned(), state(9, at(0))),
        ("c".to_owned(), state(3, at(0))),
        ("d".to_owned(), state(2, at(1))),
        ("e".to_owned(), state(4, at(0))),
    ];
    let check = |store: SqliteStore, when: &'static str| {
        let expected = expected.clone();
        async move {
            assert_eq!(store.all_ingest_states().await.unwrap(), expected, "{when}");
            for (thing, state) in &expected {
                assert_eq!(store.ingest_state(thing).await.unwrap(), Some(*state), "{thing} {when}");
            }
            assert_eq!(store.ingest_state("f").await.unwrap(), None, "{when}");
            // A page of things in one read: in the order asked, unknown ones as `None`.
            let page: Vec<String> = ["e", "f", "a", "d"].map(String::from).into();
            let states = store.ingest_states(&page).await.unwrap();
            assert_eq!(
                states,
                vec![Some(state(4, at(0))), None, Some(state(7, at(1))), Some(state(2, at(1)))],
                "{when}"
            );
            assert!(store.ingest_states(&["not a name".into()]).await.is_err(), "{when}");
            store
        }
    };
    let log_rows = || {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.query_row("SELECT count(*) FROM ingest_log", [], |row| row.get::<_, i64>(0)).unwrap()
    };

    let store = check(SqliteStore::open(&path).unwrap(), "before the fold").await;
    assert_eq!(log_rows(), 6);
    store.fold_ingest_log().await.unwrap();
    assert_eq!(log_rows(), 0);
    let store = check(store, "after the fold").await;
    store.close().await.unwrap();
    check(SqliteStore::open(&path).unwrap(), "after reopening").await.close().await.unwrap();
}

/// A deleted thing's state is gone wherever it was, and a later fold does not bring it back.
#[tokio::test]
async fn delete_thing_removes_its_state_from_the_log_and_the_table() {
    let (dir, store) = open();
    let state = |last_report_id| IngestState { last_report_id, accepted_at_ms: T0 };
    for thing in ["in-table", "in-log", "in-both", "kept"] {
        store.create_thing(thing, Default::default(), T0).await.unwrap();
    }
    store.record_report("in-table", state(1), Vec::new()).await.unwrap();
    store.record_report("in-both", state(1), Vec::new()).await.unwrap();
    store.fold_ingest_log().await.unwrap();
    store.record_report("in-log", state(2), Vec::new()).await.unwrap();
    store.record_report("in-both", state(2), Vec::new()).await.unwrap();
    store.record_report("kept", state(3), Vec::new()).await.unwrap();

    for thing in ["in-table", "in-log", "in-both"] {
        store.delete_thing(thing, None).await.unwrap();
        assert_eq!(store.ingest_state(thing).await.unwrap(), None, "{thing}");
    }
    let only_kept = vec![("kept".to_owned(), state(3))];
    assert_eq!(store.all_ingest_states().await.unwrap(), only_kept);
    store.fold_ingest_log().await.unwrap();
    assert_eq!(store.all_ingest_states().await.unwrap(), only_kept);
    store.close().await.unwrap();

    let store = SqliteStore::open(dir.path().join("warden.db")).unwrap();
    assert_eq!(store.all_ingest_states().await.unwrap(), only_kept);
    store.close().await.unwrap();
}
