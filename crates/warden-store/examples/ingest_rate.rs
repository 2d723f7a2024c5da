//! Prints how many datapoints per second `SqliteStore` stores when many tasks append at once,
//! one datapoint per call (as the ingest path does per report) and in batches of 1000.
//! Figures only, nothing asserted.
//!
//! ```text
//! cargo run --release -p warden-store --example ingest_rate -- [tasks] [datapoints per task]
//! ```

use std::sync::Arc;
use std::time::Instant;

use warden_store::{Datapoint, MetricValue, SqliteStore, Store};

const T0: i64 = 1_767_225_600_000;

fn datapoint(task: usize, i: usize) -> Datapoint {
    Datapoint {
        thing: format!("dev-{task}").into(),
        metric: "aws:all-bytes-out".into(),
        dimension: None,
        timestamp_ms: T0 + i64::try_from(i).unwrap_or(i64::MAX),
        value: MetricValue::count(u64::try_from(i).unwrap_or(u64::MAX)),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let tasks: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(100);
    let per_task: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(200);
    let dir = tempfile::tempdir()?;
    let store = Arc::new(SqliteStore::open(dir.path().join("bench.db"))?);

    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|task| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for i in 0..per_task {
                    store.append_datapoints(vec![datapoint(task, i)]).await?;
                }
                Ok::<_, warden_store::StoreError>(())
            })
        })
        .collect();
    for handle in handles {
        handle.await??;
    }
    let total = tasks * per_task;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "one per call: {total} datapoints from {tasks} tasks in {secs:.2} s = {:.0}/s",
        total as f64 / secs
    );

    let started = Instant::now();
    let batches = total / 1000;
    for b in 0..batches {
        let batch = (0..1000).map(|i| datapoint(tasks + b, i)).collect();
        store.append_datapoints(batch).await?;
    }
    let secs = started.elapsed().as_secs_f64();
    let stored = batches * 1000;
    println!("batches of 1000: {stored} datapoints in {secs:.2} s = {:.0}/s", stored as f64 / secs);

    match Arc::try_unwrap(store) {
        Ok(store) => store.close().await?,
        Err(_) => unreachable!("every task has finished, so this is the last reference"),
    }
    Ok(())
}
