//! Shutdown with reports in flight: every report the server accepted is in the database when
//! `shutdown` returns, because the store's writer commits its queue and is joined before that.

use std::sync::atomic::Ordering;
use std::time::Duration;

use rumqttc::QoS;
use warden_store::{DatapointQuery, PageRequest, SqliteStore, Store};
use warden_wire::{Format, Limits, Names, decode_report, encode_report};

use crate::devices::{Client, lab};

const REPORT: &str = r#"{"header":{"report_id":1,"version":"1.0"},
 "metrics":{"network_stats":{"bytes_in":10,"bytes_out":20,"packets_in":1,"packets_out":2}}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_accepted_before_shutdown_are_on_disk_after_it() {
    let lab = lab(Duration::ZERO).await;
    let device = lab.device("dev-1").await;
    let mut client = lab.client(&device, "dev-1");
    client.connect().await.unwrap();
    let Client { client, mut eventloop } = client;
    let poller = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    let template = decode_report(REPORT.as_bytes(), Format::Json, &Limits::default()).unwrap();
    let topic = "$aws/things/dev-1/defender/metrics/cbor";
    // A burst that is still being stored and answered when the server is told to stop.
    for id in 1..=500u64 {
        let mut report = template.clone();
        report.header.report_id = id;
        let payload = encode_report(&report, Format::Cbor, Names::Short);
        client.publish(topic, QoS::AtMostOnce, false, payload).await.unwrap();
    }
    let stats = lab.server.ingest_stats.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while stats.accepted.load(Ordering::Relaxed) < 50 {
        assert!(tokio::time::Instant::now() < deadline, "the burst was not being accepted");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let path = lab.server.state.config.data_dir.join("warden.db");
    lab.server.shutdown().await;
    poller.abort();
    let accepted = stats.accepted.load(Ordering::Relaxed);
    assert_eq!(stats.store_errors.load(Ordering::Relaxed), 0);

    // One `aws:all-bytes-out` datapoint per accepted report, and the last one's ingest state.
    let store = SqliteStore::open(&path).unwrap();
    let query = DatapointQuery {
        thing: "dev-1".into(),
        metric: "aws:all-bytes-out".into(),
        dimension: None,
        start_ms: 0,
        end_ms: i64::MAX / 2,
    };
    let mut stored = 0;
    let mut page = PageRequest::first(250);
    loop {
        let got = store.query_datapoints(&query, &page).await.unwrap();
        stored += got.items.len() as u64;
        match page.after(&got) {
            Some(next) => page = next,
            None => break,
        }
    }
    assert_eq!(stored, accepted, "every accepted report is stored, and only those");
    let last = store.ingest_state("dev-1").await.unwrap().expect("ingest state").last_report_id;
    assert_eq!(last, accepted, "reports are accepted in order, so the last stored is the last accepted");
    store.close().await.unwrap();
}
