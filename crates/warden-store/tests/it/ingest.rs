//! Per-thing ingest state: what the ingest path needs to reject duplicates and throttle.

use warden_store::{IngestState, Store, StoreError};

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
