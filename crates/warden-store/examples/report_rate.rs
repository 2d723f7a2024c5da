//! Prints what storing accepted reports costs the writer: `record_report` calls as the ingest
//! path makes them (the thing's ingest state and ten datapoints, the benchmark report's shape),
//! from many tasks at once over a fleet of things, and the CPU time the writer thread (and the
//! checkpointer) used per report. Figures only, nothing asserted.
//!
//! ```text
//! cargo run --release -p warden-store --example report_rate -- [things] [reports] [tasks]
//! ```
//!
//! Defaults: 10,000 things, 200,000 reports, 1,024 tasks (ingest's `MAX_IN_FLIGHT`). CPU times
//! come from `/proc/self/task/*/stat` (Linux), so they hold on a machine others are loading.

use std::sync::Arc;
use std::time::Instant;

use warden_store::{Datapoint, IngestState, MetricValue, SqliteStore, Store};

const T0: i64 = 1_767_225_600_000;

/// The ten datapoints `ingest::datapoints` makes of the load generator's report.
fn report(thing: &str, now_ms: i64, n: u64) -> Vec<Datapoint> {
    let dp = |metric: &str, value: MetricValue| Datapoint {
        thing: thing.into(),
        metric: metric.to_owned().into(),
        dimension: None,
        timestamp_ms: now_ms,
        value,
    };
    vec![
        dp("aws:all-bytes-in", MetricValue::count(1_000 + n)),
        dp("aws:all-bytes-out", MetricValue::count(2_000 + n)),
        dp("aws:all-packets-in", MetricValue::count(10 + n)),
        dp("aws:all-packets-out", MetricValue::count(20 + n)),
        dp("aws:num-listening-tcp-ports", MetricValue::count(2)),
        dp("aws:listening-tcp-ports", MetricValue::ports(vec![22, 443])),
        dp("aws:num-listening-udp-ports", MetricValue::count(1)),
        dp("aws:listening-udp-ports", MetricValue::ports(vec![5353])),
        dp("aws:num-established-tcp-connections", MetricValue::count(3)),
        dp("aws:destination-ip-addresses", MetricValue::cidrs(["10.0.0.1", "10.0.0.2", "192.168.1.7"])),
    ]
}

/// CPU seconds (user + system) of this process's threads whose name starts with `prefix`.
fn thread_cpu(prefix: &str) -> f64 {
    let tick = 100.0; // USER_HZ on Linux
    let mut total = 0;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0.0 };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        if !stat[open + 1..close].starts_with(prefix) {
            continue;
        }
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        let num = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
        total += num(11) + num(12);
    }
    total as f64 / tick
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let things: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(10_000);
    let reports: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(200_000);
    let tasks: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1_024);
    let dir = tempfile::tempdir()?;
    let store = Arc::new(SqliteStore::open(dir.path().join("bench.db"))?);
    let names: Arc<Vec<String>> = Arc::new((0..things).map(|i| format!("bench-{i:06}")).collect());

    // Every thing reports once first, so series exist as in a running server.
    let run = |from: u64, count: u64| {
        let (store, names) = (store.clone(), names.clone());
        async move {
            let handles: Vec<_> = (0..tasks)
                .map(|task| {
                    let (store, names) = (store.clone(), names.clone());
                    tokio::spawn(async move {
                        let mut i = from + task;
                        while i < from + count {
                            let thing = &names[(i % things) as usize];
                            let now_ms = T0 + i as i64;
                            let state = IngestState { last_report_id: i + 1, accepted_at_ms: now_ms };
                            store.record_report(thing, state, report(thing, now_ms, i)).await?;
                            i += tasks;
                        }
                        Ok::<_, warden_store::StoreError>(())
                    })
                })
                .collect();
            for handle in handles {
                handle.await??;
            }
            Ok::<_, Box<dyn std::error::Error>>(())
        }
    };
    run(0, things).await?;

    let (writer0, ckpt0) = (thread_cpu("warden-store-wr"), thread_cpu("warden-store-ch"));
    let started = Instant::now();
    run(things, reports).await?;
    let secs = started.elapsed().as_secs_f64();
    let (writer, ckpt) = (thread_cpu("warden-store-wr") - writer0, thread_cpu("warden-store-ch") - ckpt0);
    let per = |cpu: f64| cpu * 1e6 / reports as f64;
    println!(
        "{reports} reports of 10 datapoints from {tasks} tasks over {things} things in {secs:.2} s = {:.0} reports/s; \
         writer CPU {writer:.2} s = {:.1} us/report, checkpointer {ckpt:.2} s = {:.1} us/report",
        reports as f64 / secs,
        per(writer),
        per(ckpt),
    );
    match Arc::try_unwrap(store) {
        Ok(store) => store.close().await?,
        Err(_) => unreachable!("every task has finished, so this is the last reference"),
    }
    let size: u64 =
        std::fs::read_dir(dir.path())?.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum();
    println!("database after close: {:.1} MB", size as f64 / 1e6);
    Ok(())
}
