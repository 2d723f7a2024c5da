//! Failed TLS handshakes: they reach no rmqtt hook, so the broker neither counts them nor emits
//! an event; rmqtt's log is the only trace, and `is_tls_handshake_failure` recognises it.

use std::sync::{Condvar, Mutex};
use std::time::Instant;

use tokio::io::AsyncReadExt;
use warden_broker::{BrokerStats, is_tls_handshake_failure};

use crate::harness::{TestAcl, TestBroker, WAIT, tls_connect};

/// Every `log` record at warning level or above from the whole test process, as
/// (target, message). Installed once; the logger is process-wide.
struct Capture {
    records: Mutex<Vec<(String, String)>>,
    added: Condvar,
}

static CAPTURE: Capture = Capture { records: Mutex::new(Vec::new()), added: Condvar::new() };

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Warn
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            let entry = (record.target().to_owned(), record.args().to_string());
            self.records.lock().unwrap().push(entry);
            self.added.notify_all();
        }
    }

    fn flush(&self) {}
}

fn capture_logs() {
    if log::set_logger(&CAPTURE).is_ok() {
        log::set_max_level(log::LevelFilter::Warn);
    }
}

/// Waits until a captured record satisfies `f`.
fn wait_for_record(f: impl Fn(&str, &str) -> bool) -> Option<String> {
    let deadline = Instant::now() + WAIT;
    let mut records = CAPTURE.records.lock().unwrap();
    loop {
        if let Some((_, message)) = records.iter().find(|(target, message)| f(target, message)) {
            return Some(message.clone());
        }
        let left = deadline.checked_duration_since(Instant::now())?;
        records = CAPTURE.added.wait_timeout(records, left).unwrap().0;
    }
}

/// Trap (notes §1.3 #3), pinned to rmqtt 0.24.0's log text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_handshake_failures_are_visible_only_in_rmqtts_log() {
    capture_logs();
    let mut t = TestBroker::start(TestAcl::new()).await;
    let foreign = t.pki.foreign_client("thing-1");

    let (local, stream) = tls_connect(&t, &foreign).await;
    // TLS 1.3 clients finish their side before the server checks their certificate, so the
    // refusal may only show on the first read.
    if let Ok(mut stream) = stream {
        let mut buf = [0u8; 16];
        assert!(!matches!(stream.read(&mut buf).await, Ok(n) if n > 0));
    }

    let suffix = format!("from: {local}");
    let message = tokio::task::spawn_blocking(move || {
        wait_for_record(|target, message| {
            is_tls_handshake_failure(target, message) && message.ends_with(&suffix)
        })
    })
    .await
    .unwrap()
    .expect("rmqtt logs the failed handshake");
    assert!(message.contains("UnknownIssuer") || message.contains("unknown"), "{message}");

    assert_eq!(t.broker.stats(), BrokerStats::default());
    assert!(t.events.try_recv().is_err());
}
