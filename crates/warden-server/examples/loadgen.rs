//! Load generator for the server benchmark (`bench/server.sh`): many real MQTT/mTLS devices in
//! one process, each with its own certificate and client id, publishing pre-encoded Device
//! Defender CBOR reports at a controlled aggregate rate and timing each report until its reply.
//!
//! ```text
//! loadgen provision --data-dir DIR --count N --out devices.jsonl [--prefix bench-]
//! loadgen run --target warden|mosquitto --port P --devices devices.jsonl --ca ca.pem
//!             --server-pid PID [--metrics 127.0.0.1:H] [--mem-at 1000,10000]
//!             [--rates 2000,5000,...] [--passes unpinned,pinned] [--step-secs 8] [--warmup-secs 2]
//!             [--connect-concurrency 64] [--qos 0|1]
//! loadgen latency --port P --devices devices.jsonl --ca ca.pem --count N --webhook-port W
//!             [--server-pid PID] [--metrics 127.0.0.1:H] [--rates 1000,5000,10000]
//!             [--violators-pct 2] [--prime-rate 2000] [--step-secs 20] [--warmup-secs 5]
//!             [--alerts-out alerts.jsonl]
//! ```
//!
//! `provision` registers N things offline, straight into a stopped server's data dir (its CA and
//! its store, exactly as the API would: thing, ACTIVE certificate with CN = thing, principal,
//! `WardenThingPolicy` on the certificate), and writes each device's certificate and key to a
//! JSON-lines file. Going through the REST API would be the real path, but every registry
//! change makes the authorizer re-read the whole registry, so registering N devices one by one
//! costs O(N²) reads (`bench/server.sh` measures one registration at 10k instead).
//!
//! `run` connects the devices in stages (server memory is sampled at each `--mem-at` count),
//! then, for each pass (`pinned` puts the server on CPU 0 and this process on CPU 1 with
//! `taskset`), steps the offered rate and prints one JSON line per step on stdout: reports sent,
//! replies received, publish-to-reply latency percentiles, the server's CPU (whole process and
//! by thread name), this process's CPU and the CPU of everything else on the machine, and, for
//! Warden, the deltas of the server's `/metrics` counters.
//!
//! Against Warden a device subscribes to `$aws/things/{thing}/defender/metrics/cbor/+` and the
//! reply is its `/accepted` (or `/rejected`) message; against Mosquitto (which does no decoding,
//! no storage and sends no replies) a device subscribes to its own report topic, so each report
//! also comes back once: one message in and one out per report on both brokers. Reports carry
//! nothing but a realistic agent report with a strictly increasing `report_id` per device; the
//! send time stays in this process, keyed by that id.
//!
//! `latency` measures report-to-alert latency (`bench/alert-latency.sh` sets the server up: a
//! profile on all things with `aws:all-bytes-out <= 35000`, alarm and clear after one
//! datapoint, alerting to a topic whose subscriber is this process's webhook at
//! `http://127.0.0.1:W/alerts`). Every device sends conforming reports, except one in
//! `100 / violators-pct`, which alternates a violating and a conforming one, so each of its
//! reports raises an `in-alarm` or `alarm-cleared` alert. Each such report carries a
//! `bytes_out` of its own, which comes back as the alert's `metricValue`: the alert is matched to
//! its report exactly, and latency is the webhook's arrival minus the publish (one process, one
//! clock). The alert's `violationEventTime` (the server's ingest time, same machine clock) splits
//! it into the part before ingest and the part after. After a round of first reports (which
//! cost the server store reads), each rate is a warm-up, a measured window and a drain (rate 0
//! until every alert and reply of the window arrived); one JSON line per step.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead as _, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use warden_wire::{Format, Limits, Names, ReplyStatus, decode_reply, decode_report, encode_report};

/// A typical agent report (the Warden agent's default content: traffic counters, two listening
/// TCP ports, one UDP port, three established connections). Its CBOR short-key encoding is about
/// 200 bytes and gives 10 datapoints when stored.
const REPORT_JSON: &str = r#"{"header":{"report_id":81985529216486895,"version":"1.0"},
 "metrics":{"network_stats":{"bytes_in":48213,"bytes_out":36590,"packets_in":412,"packets_out":380},
  "tcp_connections":{"established_connections":{"connections":[
    {"remote_addr":"52.94.236.248:8883","local_interface":"eth0","local_port":50124},
    {"remote_addr":"192.168.1.20:22","local_interface":"eth0","local_port":41822},
    {"remote_addr":"10.0.0.7:443","local_interface":"eth0","local_port":39110}],"total":3}},
  "listening_tcp_ports":{"ports":[{"port":22,"interface":"eth0"},{"port":80,"interface":"eth0"}],"total":2},
  "listening_udp_ports":{"ports":[{"port":68,"interface":"eth0"}],"total":1}}}"#;

/// The report id in [`REPORT_JSON`] (0x0123456789abcdef): encoded as a CBOR 8-byte unsigned, so
/// every later id (all above 2^32) can be patched in place.
const SENTINEL_ID: u64 = 0x0123_4567_89ab_cdef;

/// Send times kept per device, indexed by report id modulo this (a device never has this many
/// reports in flight unless the server is minutes behind, and then the match check says so).
const SLOTS: usize = 64;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_default();
    let flags = Flags::parse(args)?;
    let _ = rumqttc::tokio_rustls::rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match command.as_str() {
        "provision" => runtime.block_on(provision(&flags)),
        "run" => runtime.block_on(run(&flags)),
        "latency" => runtime.block_on(latency(&flags)),
        _ => bail!("usage: loadgen provision|run|latency [--flag value ...] (see the file's docs)"),
    }
}

// ----------------------------------------------------------------------------------- arguments

#[derive(Debug)]
struct Flags(HashMap<String, String>);

impl Flags {
    fn parse(mut args: impl Iterator<Item = String>) -> anyhow::Result<Flags> {
        let mut map = HashMap::new();
        while let Some(key) = args.next() {
            let Some(name) = key.strip_prefix("--") else { bail!("unexpected argument {key}") };
            let value = args.next().with_context(|| format!("{key} needs a value"))?;
            map.insert(name.to_owned(), value);
        }
        Ok(Flags(map))
    }
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
    fn req(&self, name: &str) -> anyhow::Result<&str> {
        self.get(name).with_context(|| format!("--{name} is required"))
    }
    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> anyhow::Result<T> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| anyhow::anyhow!("--{name}: not a number: {v}")),
        }
    }
    fn list(&self, name: &str, default: &str) -> Vec<String> {
        self.get(name).unwrap_or(default).split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect()
    }
}

fn log(msg: impl std::fmt::Display) {
    eprintln!("[loadgen {:>8.1}s] {msg}", T0.get_or_init(Instant::now).elapsed().as_secs_f64());
}

static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

// -------------------------------------------------------------------------------- provisioning

async fn provision(flags: &Flags) -> anyhow::Result<()> {
    use warden_server::server::DEFAULT_THING_POLICY;
    use warden_server::state::Arns;
    use warden_store::{CertificateStatus, NewCertificate, SqliteStore, Store as _};

    let data_dir = PathBuf::from(flags.req("data-dir")?);
    let count: usize = flags.num("count", 1000)?;
    let prefix = flags.get("prefix").unwrap_or("bench-").to_owned();
    let out = PathBuf::from(flags.req("out")?);
    let started = Instant::now();
    let pki = Arc::new(warden_server::pki::Pki::load_or_create(&data_dir.join("pki"))?);
    let store = Arc::new(SqliteStore::open(data_dir.join("warden.db"))?);
    store
        .get_policy(DEFAULT_THING_POLICY)
        .await
        .context("the data dir has no WardenThingPolicy: start the server on it once first")?;
    let arns = Arns::new("local", "000000000000");
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;

    // Certificates: ECDSA key generation and signing, on every core.
    let issued = {
        let mut tasks = tokio::task::JoinSet::new();
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        for w in 0..workers {
            let (pki, prefix) = (pki.clone(), prefix.clone());
            tasks.spawn_blocking(move || {
                (w..count)
                    .step_by(workers)
                    .map(|i| {
                        let thing = format!("{prefix}{i:06}");
                        pki.issue_thing_cert(&thing).map(|c| (i, thing, c))
                    })
                    .collect::<Result<Vec<_>, _>>()
            });
        }
        let mut all = Vec::with_capacity(count);
        while let Some(r) = tasks.join_next().await {
            all.extend(r??);
        }
        all.sort_by_key(|(i, _, _)| *i);
        all
    };
    log(format!("issued {count} certificates in {:.1} s", started.elapsed().as_secs_f64()));

    // Registry rows: many devices at once, so the store's writer batches them.
    let sem = Arc::new(tokio::sync::Semaphore::new(512));
    let mut tasks = tokio::task::JoinSet::new();
    for (_, thing, cert) in &issued {
        let permit = sem.clone().acquire_owned().await?;
        let (store, thing, cert, arn) =
            (store.clone(), thing.clone(), cert.clone(), arns.certificate(&cert.certificate_id));
        tasks.spawn(async move {
            let _permit = permit;
            store.create_thing(&thing, BTreeMap::new(), now_ms).await?;
            store
                .create_certificate(NewCertificate {
                    certificate_id: cert.certificate_id.clone(),
                    pem: cert.cert_pem.clone(),
                    status: CertificateStatus::Active,
                    ca_certificate_id: None,
                    subject_cn: Some(thing.clone()),
                    created_at_ms: now_ms,
                })
                .await?;
            store.attach_thing_principal(&thing, &cert.certificate_id).await?;
            store.attach_policy(DEFAULT_THING_POLICY, &arn).await?;
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    drop(tasks);
    let store = Arc::try_unwrap(store).map_err(|_| anyhow::anyhow!("store still shared"))?;
    store.close().await?;

    let mut file = std::io::BufWriter::new(std::fs::File::create(&out)?);
    for (_, thing, cert) in &issued {
        let line = serde_json::json!({ "thing": thing, "cert": cert.cert_pem, "key": cert.key_pem });
        writeln!(file, "{line}")?;
    }
    file.flush()?;
    log(format!(
        "registered {count} devices in {} in {:.1} s; identities in {}",
        data_dir.display(),
        started.elapsed().as_secs_f64(),
        out.display()
    ));
    Ok(())
}

// ----------------------------------------------------------------------------------------- run

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Warden,
    Mosquitto,
}

#[derive(Debug)]
struct DeviceSpec {
    thing: String,
    cert: String,
    key: String,
}

/// Send times of one device's recent reports.
#[derive(Debug)]
struct Slots {
    rid: [AtomicU64; SLOTS],
    sent_ns: [AtomicU64; SLOTS],
}

impl Slots {
    fn new() -> Self {
        Slots {
            rid: std::array::from_fn(|_| AtomicU64::new(0)),
            sent_ns: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// Counters shared by the device tasks, the pacers and the controller.
#[derive(Debug)]
struct Shared {
    target: Target,
    start: Instant,
    /// Offset of the 8 report-id bytes in the template.
    rid_offset: usize,
    ready: AtomicUsize,
    connect_errors: AtomicU64,
    connection_errors: AtomicU64,
    sent: AtomicU64,
    /// `try_publish` refused: the device's request queue was full (its socket backed up).
    send_full: AtomicU64,
    /// The pacer fell more than 100 ms behind its schedule and skipped ahead.
    skipped: AtomicU64,
    accepted: AtomicU64,
    rejected: AtomicU64,
    unmatched: AtomicU64,
    /// Publish-to-reply latencies (µs) of matched accepted replies since the last drain.
    latencies: Mutex<Vec<u32>>,
    rate: AtomicU64,
    epoch: AtomicU64,
    /// Only replies to reports sent in `[from, until)` (ns since `start`) are timed.
    timed_from_ns: AtomicU64,
    timed_until_ns: AtomicU64,
}

impl Shared {
    fn new(target: Target, rid_offset: usize) -> Shared {
        Shared {
            target,
            start: Instant::now(),
            rid_offset,
            ready: AtomicUsize::new(0),
            connect_errors: AtomicU64::new(0),
            connection_errors: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            send_full: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            unmatched: AtomicU64::new(0),
            latencies: Mutex::new(Vec::new()),
            rate: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            timed_from_ns: AtomicU64::new(0),
            timed_until_ns: AtomicU64::new(u64::MAX),
        }
    }
    fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }
    fn replies(&self) -> u64 {
        self.accepted.load(Relaxed) + self.rejected.load(Relaxed)
    }
}

async fn run(flags: &Flags) -> anyhow::Result<()> {
    let target = match flags.req("target")? {
        "warden" => Target::Warden,
        "mosquitto" => Target::Mosquitto,
        t => bail!("--target: warden or mosquitto, not {t}"),
    };
    let port: u16 = flags.num("port", 0)?;
    let host = flags.get("host").unwrap_or("127.0.0.1").to_owned();
    let ca = std::fs::read(flags.req("ca")?)?;
    let server_pid: u32 = flags.num("server-pid", 0)?;
    let metrics = flags.get("metrics").map(str::to_owned);
    let mem_at: Vec<usize> =
        flags.list("mem-at", "1000,10000").iter().map(|s| s.parse()).collect::<Result<_, _>>()?;
    let rates: Vec<u64> = flags
        .list("rates", "2000,5000,10000,20000,40000")
        .iter()
        .map(|s| s.parse())
        .collect::<Result<_, _>>()?;
    let passes = flags.list("passes", "unpinned,pinned");
    let step = Duration::from_secs_f64(flags.num("step-secs", 8.0)?);
    let warmup = Duration::from_secs_f64(flags.num("warmup-secs", 2.0)?);
    let settle = Duration::from_secs_f64(flags.num("settle-secs", 3.0)?);
    let concurrency: usize = flags.num("connect-concurrency", 64)?;
    let qos = if flags.num::<u8>("qos", 0)? == 1 { QoS::AtLeastOnce } else { QoS::AtMostOnce };
    let pacers: usize = flags.num("pacers", 2)?;
    // Stop a pass at the first step whose replies fall below 90% of the offered rate: higher
    // rates only pile up a backlog that the next pass would have to wait out.
    let stop_when_saturated = flags.get("stop-when-saturated").unwrap_or("true") == "true";
    let label = flags.get("label").unwrap_or(match target {
        Target::Warden => "warden",
        Target::Mosquitto => "mosquitto",
    });
    let label = label.to_owned();
    let total = *mem_at.iter().max().unwrap_or(&1000);
    let devices = read_devices(Path::new(flags.req("devices")?), total)?;
    if devices.len() < total {
        bail!("--devices has {} identities, --mem-at asks for {total}", devices.len());
    }

    // The report template, and where its id sits.
    let template = Template::new(REPORT_JSON, None)?;
    log(format!("{label}: report template {} bytes of CBOR (short keys)", template.bytes.len()));
    let shared = Arc::new(Shared::new(target, template.rid_offset));
    let emit = |v: serde_json::Value| {
        let mut v = v;
        v["label"] = label.clone().into();
        println!("{v}");
        let _ = std::io::stdout().flush();
    };

    // Memory before any device.
    emit(memory_sample("idle", 0, server_pid));

    // Connect in stages.
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut publishers: Vec<Vec<Publisher>> = (0..pacers).map(|_| Vec::new()).collect();
    let base_rid =
        (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64) * 1000;
    let mut next = 0usize;
    let mut stages = mem_at.clone();
    stages.sort_unstable();
    stages.dedup();
    for &stage in &stages {
        let t = Instant::now();
        let cpu0 = CpuSnapshot::take(server_pid);
        while next < stage {
            let device = spawn_device(&shared, &sem, &devices[next], &host, port, &ca, base_rid);
            publishers[next % pacers].push(device);
            next += 1;
        }
        let deadline = Instant::now() + Duration::from_secs(240);
        while shared.ready.load(Relaxed) < stage && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let ready = shared.ready.load(Relaxed);
        let secs = t.elapsed().as_secs_f64();
        let cpu1 = CpuSnapshot::take(server_pid);
        log(format!(
            "{label}: {ready} devices connected and subscribed ({:.0} new/s; connect errors {})",
            (stage - stages.iter().filter(|s| **s < stage).max().copied().unwrap_or(0)) as f64 / secs,
            shared.connect_errors.load(Relaxed)
        ));
        emit(serde_json::json!({
            "kind": "connect", "devices": ready, "secs": secs,
            "server_cpu_s": cpu1.proc_s - cpu0.proc_s,
            "gen_cpu_s": cpu1.self_s - cpu0.self_s,
            "connect_errors": shared.connect_errors.load(Relaxed),
        }));
        if ready < stage {
            bail!("only {ready} of {stage} devices connected");
        }
        tokio::time::sleep(settle).await;
        emit(memory_sample("connected, idle", ready, server_pid));
    }

    // Pacers: each owns a share of the devices and sends its share of the rate.
    let templates = Arc::new(Templates { normal: template, alarm: None });
    for devs in publishers {
        tokio::spawn(pacer(shared.clone(), devs, templates.clone(), qos, pacers));
    }

    for pass in &passes {
        let pinned = pass == "pinned";
        if pinned {
            pin(server_pid, "0");
            pin(std::process::id(), "1");
        } else {
            pin(server_pid, "0-1");
            pin(std::process::id(), "0-1");
        }
        for &rate in &rates {
            shared.rate.store(rate, Relaxed);
            shared.epoch.fetch_add(1, Relaxed);
            tokio::time::sleep(warmup).await;
            let m0 = scrape(metrics.as_deref());
            let c0 = CpuSnapshot::take(server_pid);
            let (s0, a0, r0, f0, k0, u0) = counters(&shared);
            shared.latencies.lock().expect("latencies").clear();
            let t0 = Instant::now();
            tokio::time::sleep(step).await;
            let secs = t0.elapsed().as_secs_f64();
            let c1 = CpuSnapshot::take(server_pid);
            let (s1, a1, r1, f1, k1, u1) = counters(&shared);
            let m1 = scrape(metrics.as_deref());
            let mut lat = std::mem::take(&mut *shared.latencies.lock().expect("latencies"));
            lat.sort_unstable();
            let pct = |p: f64| -> f64 {
                if lat.is_empty() {
                    return f64::NAN;
                }
                let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
                f64::from(lat[i]) / 1000.0
            };
            let CpuShares { server_cpu, gen_cpu, busy, threads } = c1.shares_since(&c0);
            let delta = |name: &str| match (&m0, &m1) {
                (Some(a), Some(b)) => serde_json::json!(
                    b.get(name).copied().unwrap_or(0.0) - a.get(name).copied().unwrap_or(0.0)
                ),
                _ => serde_json::Value::Null,
            };
            let accepted_per_s = (a1 - a0) as f64 / secs;
            log(format!(
                "{label} {pass} offered {rate}/s: sent {:.0}/s, replies {:.0}/s, p50 {:.1} ms, p99 {:.1} ms, server CPU {server_cpu:.0}%, gen CPU {gen_cpu:.0}%",
                (s1 - s0) as f64 / secs,
                accepted_per_s,
                pct(0.5),
                pct(0.99)
            ));
            emit(serde_json::json!({
                "kind": "step", "pass": pass, "offered": rate, "secs": secs,
                "sent_per_s": (s1 - s0) as f64 / secs,
                "accepted_per_s": accepted_per_s,
                "rejected_per_s": (r1 - r0) as f64 / secs,
                "send_full": f1 - f0, "skipped": k1 - k0, "unmatched": u1 - u0,
                "samples": lat.len(),
                "p50_ms": pct(0.5), "p90_ms": pct(0.9), "p99_ms": pct(0.99), "p999_ms": pct(0.999),
                "server_queue_wait_le_ms": queue_wait(&m0, &m1),
                "max_ms": lat.last().map_or(f64::NAN, |v| f64::from(*v) / 1000.0),
                "server_cpu_pct": server_cpu, "gen_cpu_pct": gen_cpu,
                "other_cpu_pct": busy - server_cpu - gen_cpu, "machine_busy_pct": busy,
                "server_threads_pct": threads,
                "server_accepted_per_s": match (&m0, &m1) {
                    (Some(a), Some(b)) => serde_json::json!((b.get("warden_reports_accepted_total").copied().unwrap_or(0.0) - a.get("warden_reports_accepted_total").copied().unwrap_or(0.0)) / secs),
                    _ => serde_json::Value::Null,
                },
                "store_errors": delta("warden_store_errors_total"),
                "dropped_reports": delta("warden_mqtt_events_dropped_total{kind=\"report\"}"),
                "dropped_other_events": delta("warden_mqtt_events_dropped_total{kind=\"other\"}"),
                "server_rss_kb": proc_status(server_pid, "VmRSS"),
            }));
            if stop_when_saturated && accepted_per_s < 0.9 * rate as f64 {
                log(format!("{label} {pass}: saturated at {rate}/s; no higher rates in this pass"));
                break;
            }
        }
        // Drain before the next pass: wait until every sent report got its reply, or progress stops.
        shared.rate.store(0, Relaxed);
        shared.epoch.fetch_add(1, Relaxed);
        let t = Instant::now();
        let mut last = (shared.replies(), Instant::now());
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let replies = shared.replies();
            let sent = shared.sent.load(Relaxed);
            if replies >= sent {
                break;
            }
            if replies != last.0 {
                last = (replies, Instant::now());
            } else if last.1.elapsed() > Duration::from_secs(5) || t.elapsed() > Duration::from_secs(120) {
                break;
            }
        }
        emit(serde_json::json!({
            "kind": "drain", "pass": pass, "secs": t.elapsed().as_secs_f64(),
            "sent_total": shared.sent.load(Relaxed), "replies_total": shared.replies(),
            "accepted_total": shared.accepted.load(Relaxed), "rejected_total": shared.rejected.load(Relaxed),
            "send_full_total": shared.send_full.load(Relaxed), "unmatched_total": shared.unmatched.load(Relaxed),
            "connection_errors_total": shared.connection_errors.load(Relaxed),
            "ready": shared.ready.load(Relaxed),
        }));
    }
    pin(server_pid, "0-1");
    tokio::time::sleep(settle).await;
    emit(memory_sample("connected, idle after load", shared.ready.load(Relaxed), server_pid));
    if let Some(m) = scrape(metrics.as_deref()) {
        let interesting: BTreeMap<&String, &f64> = m.iter().filter(|(k, _)| !k.starts_with('#')).collect();
        emit(serde_json::json!({ "kind": "metrics", "server": interesting }));
    }
    emit(serde_json::json!({
        "kind": "totals",
        "sent": shared.sent.load(Relaxed), "accepted": shared.accepted.load(Relaxed),
        "rejected": shared.rejected.load(Relaxed), "unmatched": shared.unmatched.load(Relaxed),
        "send_full": shared.send_full.load(Relaxed), "skipped": shared.skipped.load(Relaxed),
        "connect_errors": shared.connect_errors.load(Relaxed),
        "connection_errors": shared.connection_errors.load(Relaxed),
    }));
    // The process exit closes every connection.
    Ok(())
}

fn counters(s: &Shared) -> (u64, u64, u64, u64, u64, u64) {
    (
        s.sent.load(Relaxed),
        s.accepted.load(Relaxed),
        s.rejected.load(Relaxed),
        s.send_full.load(Relaxed),
        s.skipped.load(Relaxed),
        s.unmatched.load(Relaxed),
    )
}

fn read_devices(path: &Path, n: usize) -> anyhow::Result<Vec<DeviceSpec>> {
    let file =
        std::io::BufReader::new(std::fs::File::open(path).with_context(|| path.display().to_string())?);
    let mut out = Vec::with_capacity(n);
    for line in file.lines().take(n) {
        let v: serde_json::Value = serde_json::from_str(&line?)?;
        let field = |k: &str| v[k].as_str().map(str::to_owned).with_context(|| format!("device without {k}"));
        out.push(DeviceSpec { thing: field("thing")?, cert: field("cert")?, key: field("key")? });
    }
    Ok(out)
}

/// Creates one device's client and starts its task (connect, subscribe, time replies); the
/// returned publisher is what a pacer sends through.
fn spawn_device(
    shared: &Arc<Shared>,
    sem: &Arc<tokio::sync::Semaphore>,
    d: &DeviceSpec,
    host: &str,
    port: u16,
    ca: &[u8],
    base_rid: u64,
) -> Publisher {
    let mut options = MqttOptions::new(d.thing.clone(), host.to_owned(), port);
    // Reports reset the keepalive; a long one keeps idle devices silent, as the agent does.
    options.set_keep_alive(Duration::from_secs(600));
    options.set_clean_session(true);
    options.set_max_packet_size(64 * 1024, 64 * 1024);
    options.set_transport(Transport::Tls(TlsConfiguration::Simple {
        ca: ca.to_vec(),
        alpn: None,
        client_auth: Some((d.cert.clone().into_bytes(), d.key.clone().into_bytes())),
    }));
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    // Handshakes queue behind each other while thousands connect.
    eventloop.network_options.set_connection_timeout(60);
    let slots = Arc::new(Slots::new());
    let filter = match shared.target {
        Target::Warden => format!("$aws/things/{}/defender/metrics/cbor/+", d.thing),
        Target::Mosquitto => format!("$aws/things/{}/defender/metrics/cbor", d.thing),
    };
    tokio::spawn(device_task(shared.clone(), sem.clone(), client.clone(), eventloop, filter, slots.clone()));
    Publisher {
        client,
        topic: format!("$aws/things/{}/defender/metrics/cbor", d.thing),
        rid: base_rid,
        slots,
        violator: None,
    }
}

/// One device: connects (bounded concurrency: TLS handshakes are CPU-heavy), subscribes to its
/// replies, then times every reply against the send time the pacer recorded.
async fn device_task(
    shared: Arc<Shared>,
    sem: Arc<tokio::sync::Semaphore>,
    client: AsyncClient,
    mut eventloop: EventLoop,
    filter: String,
    slots: Arc<Slots>,
) {
    let permit = sem.acquire().await.expect("semaphore");
    if client.subscribe(filter.clone(), QoS::AtMostOnce).await.is_err() {
        return;
    }
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::SubAck(_))) => break,
            Ok(_) => {}
            Err(e) => {
                if shared.connect_errors.fetch_add(1, Relaxed) < 5 {
                    log(format!("connect error ({filter}): {e}"));
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                // rumqttc forgets queued requests on a failed connection attempt: ask again.
                let _ = client.try_subscribe(filter.clone(), QoS::AtMostOnce);
            }
        }
    }
    drop(permit);
    shared.ready.fetch_add(1, Relaxed);
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::Publish(p))) => on_reply(&shared, &slots, &p.payload),
            Ok(_) => {}
            Err(e) => {
                if shared.connection_errors.fetch_add(1, Relaxed) < 5 {
                    log(format!("connection error ({filter}): {e}"));
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                let _ = client.try_subscribe(filter.clone(), QoS::AtMostOnce);
            }
        }
    }
}

fn on_reply(shared: &Shared, slots: &Slots, payload: &[u8]) {
    let now = shared.now_ns();
    let rid = match shared.target {
        Target::Warden => match decode_reply(payload, Format::Cbor) {
            Ok(r) if r.status == ReplyStatus::Accepted => r.report_id,
            Ok(_) | Err(_) => {
                shared.rejected.fetch_add(1, Relaxed);
                return;
            }
        },
        Target::Mosquitto => payload
            .get(shared.rid_offset..shared.rid_offset + 8)
            .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes"))),
    };
    shared.accepted.fetch_add(1, Relaxed);
    let Some(rid) = rid else {
        shared.unmatched.fetch_add(1, Relaxed);
        return;
    };
    let slot = (rid % SLOTS as u64) as usize;
    if slots.rid[slot].load(Relaxed) != rid {
        shared.unmatched.fetch_add(1, Relaxed);
        return;
    }
    let sent = slots.sent_ns[slot].load(Relaxed);
    if sent < shared.timed_from_ns.load(Relaxed) || sent >= shared.timed_until_ns.load(Relaxed) {
        return;
    }
    let us = (now.saturating_sub(sent) / 1000).min(u64::from(u32::MAX)) as u32;
    shared.latencies.lock().expect("latencies").push(us);
}

#[derive(Debug)]
struct Publisher {
    client: AsyncClient,
    topic: String,
    rid: u64,
    slots: Arc<Slots>,
    /// Set on the devices that alternate violating and conforming reports (`latency`).
    violator: Option<Violator>,
}

/// A device whose every report changes its alarm state, so that each one causes an alert.
#[derive(Debug)]
struct Violator {
    /// Its index in the tracker's table.
    device: u32,
    /// Reports sent so far: even → the next one violates, odd → it conforms.
    sent: u64,
}

/// A pre-encoded report and where the per-report fields sit in it.
#[derive(Debug)]
struct Template {
    bytes: Vec<u8>,
    /// Offset of the 8 report-id bytes.
    rid_offset: usize,
    /// Offset and width of `bytes_out`'s big-endian value, when it is patched per report.
    bytes_out: Option<(usize, usize)>,
}

impl Template {
    /// Encodes `json` as the agent would (CBOR, short keys) and finds the report id and, if
    /// `bytes_out` is given, that value (it must appear exactly once in the encoding).
    fn new(json: &str, bytes_out: Option<u64>) -> anyhow::Result<Template> {
        let report = decode_report(json.as_bytes(), Format::Json, &Limits::default())
            .map_err(|r| anyhow::anyhow!("template: {}", r.message))?;
        let bytes = encode_report(&report, Format::Cbor, Names::Short);
        let find = |needle: &[u8]| -> anyhow::Result<usize> {
            let mut hits = bytes.windows(needle.len()).enumerate().filter(|(_, w)| *w == needle);
            match (hits.next(), hits.next()) {
                (Some((i, _)), None) => Ok(i + 1),
                _ => bail!("{needle:02x?} is not in the CBOR template exactly once"),
            }
        };
        let mut sentinel = vec![0x1b];
        sentinel.extend_from_slice(&SENTINEL_ID.to_be_bytes());
        let rid_offset = find(&sentinel)?;
        let bytes_out = match bytes_out {
            None => None,
            Some(v) => {
                // CBOR's unsigned heads: 0x19 + 2 bytes, 0x1a + 4 bytes.
                let needle: Vec<u8> = match u16::try_from(v) {
                    Ok(v) if v >= 256 => [&[0x19][..], &v.to_be_bytes()].concat(),
                    _ => [&[0x1a][..], &u32::try_from(v)?.to_be_bytes()].concat(),
                };
                Some((find(&needle)?, needle.len() - 1))
            }
        };
        Ok(Template { bytes, rid_offset, bytes_out })
    }

    /// The report with this id and, if the template has the slot, this `bytes_out` (which must
    /// fit the width the template was made with).
    fn render(&self, rid: u64, bytes_out: u64) -> Vec<u8> {
        let mut payload = self.bytes.clone();
        payload[self.rid_offset..self.rid_offset + 8].copy_from_slice(&rid.to_be_bytes());
        if let Some((at, width)) = self.bytes_out {
            payload[at..at + width].copy_from_slice(&bytes_out.to_be_bytes()[8 - width..]);
        }
        payload
    }
}

/// What pacers send: `normal` for every device, and for violators (`latency`) the two
/// alternating reports with their `bytes_out` values.
#[derive(Debug)]
struct Templates {
    normal: Template,
    alarm: Option<AlarmTemplates>,
}

#[derive(Debug)]
struct AlarmTemplates {
    violating: Template,
    conforming: Template,
    tracker: Arc<Tracker>,
}

/// Sends `rate / pacers` reports per second over its devices in turn, checking the schedule
/// every millisecond.
async fn pacer(
    shared: Arc<Shared>,
    mut devs: Vec<Publisher>,
    templates: Arc<Templates>,
    qos: QoS,
    pacers: usize,
) {
    if devs.is_empty() {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let (mut epoch, mut step_start, mut due_sent) = (u64::MAX, Instant::now(), 0u64);
    let mut next = 0usize;
    loop {
        tick.tick().await;
        let e = shared.epoch.load(Relaxed);
        if e != epoch {
            (epoch, step_start, due_sent) = (e, Instant::now(), 0);
        }
        let rate = shared.rate.load(Relaxed) as f64 / pacers as f64;
        if rate <= 0.0 {
            continue;
        }
        let target = (rate * step_start.elapsed().as_secs_f64()) as u64;
        let mut due = target.saturating_sub(due_sent);
        // More than 100 ms behind: this process cannot keep up; skip ahead and count it.
        let cap = (rate * 0.1).max(1.0) as u64;
        if due > cap {
            shared.skipped.fetch_add(due - cap, Relaxed);
            due_sent += due - cap;
            due = cap;
        }
        for _ in 0..due {
            let n = devs.len();
            let d = &mut devs[next];
            next = (next + 1) % n;
            d.rid += 1;
            let now_ns = shared.now_ns();
            let (payload, expected) = match (&d.violator, &templates.alarm) {
                (Some(v), Some(alarm)) => {
                    let (template, value) = alarm_report(alarm, v.sent);
                    let key = (v.device, value);
                    alarm.tracker.expect(key, now_ns);
                    (template.render(d.rid, value), Some((key, &alarm.tracker)))
                }
                _ => (templates.normal.render(d.rid, 0), None),
            };
            let slot = (d.rid % SLOTS as u64) as usize;
            d.slots.sent_ns[slot].store(now_ns, Relaxed);
            d.slots.rid[slot].store(d.rid, Relaxed);
            match d.client.try_publish(d.topic.clone(), qos, false, payload) {
                Ok(()) => {
                    shared.sent.fetch_add(1, Relaxed);
                    if let Some(v) = &mut d.violator {
                        v.sent += 1;
                    }
                }
                Err(_) => {
                    shared.send_full.fetch_add(1, Relaxed);
                    // Not sent: no alert will come, and the alternation stays where it was.
                    if let Some((key, tracker)) = expected {
                        tracker.forget(key);
                    }
                }
            };
            due_sent += 1;
        }
    }
}

// ------------------------------------------------------------------------------------- latency

/// `bytes_out` of violators' reports. Violating ones count up from here (CBOR 4-byte values,
/// the width of the violating template); conforming ones cycle through 1,000..31,000 (2-byte
/// values). Each value names one report of its device, so an alert's `metricValue` tells which
/// report raised it.
const VIOLATING_FROM: u64 = 100_000;
const CONFORMING_FROM: u64 = 1_000;
const CONFORMING_SPAN: u64 = 30_000;
/// The behavior's normal bound (the profile `bench/alert-latency.sh` creates).
const THRESHOLD: u64 = 35_000;
/// The placeholders the templates are encoded with (each unique in its encoding).
const NORMAL_BYTES_OUT: u64 = 31_415;
const VIOLATING_PLACEHOLDER: u64 = 0x0bad_cafe;

/// The report a violator sends after `sent` reports: violating when `sent` is even, conforming
/// when odd, so with `consecutiveDatapointsToAlarm` and `…ToClear` of 1 every report is an
/// `in-alarm` or `alarm-cleared` event.
fn alarm_report(alarm: &AlarmTemplates, sent: u64) -> (&Template, u64) {
    let n = sent / 2;
    if sent.is_multiple_of(2) {
        (&alarm.violating, VIOLATING_FROM + n)
    } else {
        (&alarm.conforming, CONFORMING_FROM + n % CONFORMING_SPAN)
    }
}

fn wall_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

/// The alerts expected (one per violator report sent, keyed by device and `bytes_out`) and
/// the latencies of those that arrived at the webhook.
#[derive(Debug)]
struct Tracker {
    /// The same origin as [`Shared::start`], for send and arrival instants.
    start: Instant,
    /// Violators' thing names → device index.
    things: HashMap<String, u32>,
    pending: Mutex<HashMap<(u32, u64), Pending>>,
    /// The step being measured: reports sent meanwhile are timed; 0 is none.
    step: AtomicU64,
    samples: Mutex<Vec<AlertSample>>,
    received: AtomicU64,
    /// Alerts that match no report sent (or arrived after their step gave up on them).
    unexpected: AtomicU64,
    /// Alerts whose event type is not the one the report should cause.
    wrong_type: AtomicU64,
    /// Bodies that are not an SNS envelope around an AWS alert.
    malformed: AtomicU64,
    /// Every matched alert of a measured step, for `--alerts-out` (joined with the server's
    /// `violation event` log lines by `bench/alert-latency.sh`).
    log: Option<Mutex<Vec<serde_json::Value>>>,
}

#[derive(Debug)]
struct Pending {
    sent_ns: u64,
    sent_wall_us: i64,
    step: u64,
}

#[derive(Debug)]
struct AlertSample {
    step: u64,
    /// Publish to webhook arrival, monotonic clock.
    total_us: u64,
    /// Publish to the server's ingest time (`violationEventTime`, ms, taken +0.5 ms), and from
    /// there to the arrival; wall clock, shared by both processes.
    to_ingest_us: i64,
    from_ingest_us: i64,
}

impl Tracker {
    fn expect(&self, key: (u32, u64), now_ns: u64) {
        let p = Pending { sent_ns: now_ns, sent_wall_us: wall_us(), step: self.step.load(Relaxed) };
        self.pending.lock().expect("pending").insert(key, p);
    }

    fn forget(&self, key: (u32, u64)) {
        self.pending.lock().expect("pending").remove(&key);
    }

    fn arrived(&self, body: &[u8]) {
        let arrived_ns = self.start.elapsed().as_nanos() as u64;
        let arrived_wall_us = wall_us();
        self.received.fetch_add(1, Relaxed);
        let alert = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|e| serde_json::from_str::<serde_json::Value>(e["Message"].as_str()?).ok());
        let Some((thing, kind, value, event_ms, violation)) = alert.as_ref().and_then(|a| {
            Some((
                a["thingName"].as_str()?,
                a["violationEventType"].as_str()?,
                a["metricValue"]["count"].as_u64()?,
                a["violationEventTime"].as_i64()?,
                a["violationId"].as_str()?,
            ))
        }) else {
            self.malformed.fetch_add(1, Relaxed);
            return;
        };
        let pending =
            self.things.get(thing).and_then(|d| self.pending.lock().expect("pending").remove(&(*d, value)));
        let Some(p) = pending else {
            self.unexpected.fetch_add(1, Relaxed);
            return;
        };
        let expected = if value > THRESHOLD { "in-alarm" } else { "alarm-cleared" };
        if kind != expected {
            self.wrong_type.fetch_add(1, Relaxed);
        }
        if p.step != 0 {
            if let Some(log) = &self.log {
                log.lock().expect("alert log").push(serde_json::json!({
                    "step": p.step, "thing": thing, "type": kind, "violation": violation,
                    "sent_us": p.sent_wall_us, "event_ms": event_ms, "arrived_us": arrived_wall_us,
                }));
            }
            let ingest_us = event_ms * 1000 + 500;
            self.samples.lock().expect("samples").push(AlertSample {
                step: p.step,
                total_us: arrived_ns.saturating_sub(p.sent_ns) / 1000,
                to_ingest_us: ingest_us - p.sent_wall_us,
                from_ingest_us: arrived_wall_us - ingest_us,
            });
        }
    }

    fn pending_of(&self, step: u64) -> usize {
        self.pending.lock().expect("pending").values().filter(|p| p.step == step).count()
    }

    /// Gives up on the alerts still expected for `step`: their number.
    fn give_up(&self, step: u64) -> usize {
        let mut pending = self.pending.lock().expect("pending");
        let before = pending.len();
        pending.retain(|_, p| p.step != step);
        before - pending.len()
    }

    fn take(&self, step: u64) -> Vec<AlertSample> {
        let mut samples = self.samples.lock().expect("samples");
        let (mine, rest) = std::mem::take(&mut *samples).into_iter().partition(|s| s.step == step);
        *samples = rest;
        mine
    }
}

/// The webhook: every POST is an SNS-style notification from the server's alert delivery.
async fn webhook(
    axum::extract::State(tracker): axum::extract::State<Arc<Tracker>>,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    tracker.arrived(&body);
    axum::http::StatusCode::OK
}

/// Percentiles (ms) of a sorted list of µs.
fn percentiles<T: Copy + Into<f64>>(sorted: &[T]) -> serde_json::Value {
    let pct = |p: f64| -> Option<f64> {
        if sorted.is_empty() {
            return None;
        }
        let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
        Some((sorted[i].into() / 1000.0 * 100.0).round() / 100.0)
    };
    serde_json::json!({
        "n": sorted.len(), "p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "max": pct(1.0),
    })
}

/// `loadgen latency`: report-to-alert latency. See `bench/alert-latency.sh`.
async fn latency(flags: &Flags) -> anyhow::Result<()> {
    let port: u16 = flags.num("port", 0)?;
    let host = flags.get("host").unwrap_or("127.0.0.1").to_owned();
    let ca = std::fs::read(flags.req("ca")?)?;
    let server_pid: u32 = flags.num("server-pid", 0)?;
    let metrics = flags.get("metrics").map(str::to_owned);
    let count: usize = flags.num("count", 1000)?;
    let webhook_port: u16 = flags.num("webhook-port", 0)?;
    let rates: Vec<u64> =
        flags.list("rates", "1000,5000,10000").iter().map(|s| s.parse()).collect::<Result<_, _>>()?;
    let prime_rate: u64 = flags.num("prime-rate", 2000)?;
    let step = Duration::from_secs_f64(flags.num("step-secs", 20.0)?);
    let warmup = Duration::from_secs_f64(flags.num("warmup-secs", 5.0)?);
    let violators_pct: f64 = flags.num("violators-pct", 2.0)?;
    let concurrency: usize = flags.num("connect-concurrency", 64)?;
    let qos = if flags.num::<u8>("qos", 0)? == 1 { QoS::AtLeastOnce } else { QoS::AtMostOnce };
    let pacers: usize = flags.num("pacers", 2)?;
    let label = flags.get("label").unwrap_or("latency").to_owned();
    if !(violators_pct > 0.0 && violators_pct <= 100.0) {
        bail!("--violators-pct: more than 0 and at most 100");
    }
    let devices = read_devices(Path::new(flags.req("devices")?), count)?;
    if devices.len() < count {
        bail!("--devices has {} identities, --count asks for {count}", devices.len());
    }

    let with_bytes_out = |v: u64| {
        let json = REPORT_JSON.replace("\"bytes_out\":36590", &format!("\"bytes_out\":{v}"));
        assert_ne!(json, REPORT_JSON, "the template's bytes_out");
        json
    };
    let normal = Template::new(&with_bytes_out(NORMAL_BYTES_OUT), None)?;
    let violating = Template::new(&with_bytes_out(VIOLATING_PLACEHOLDER), Some(VIOLATING_PLACEHOLDER))?;
    let conforming = Template::new(&with_bytes_out(NORMAL_BYTES_OUT), Some(NORMAL_BYTES_OUT))?;
    // Every k-th device is a violator.
    let every = (100.0 / violators_pct).round().max(1.0) as usize;
    let shared = Arc::new(Shared::new(Target::Warden, normal.rid_offset));
    let tracker = Arc::new(Tracker {
        start: shared.start,
        things: (0..count).step_by(every).map(|i| (devices[i].thing.clone(), i as u32)).collect(),
        pending: Mutex::new(HashMap::new()),
        step: AtomicU64::new(0),
        samples: Mutex::new(Vec::new()),
        received: AtomicU64::new(0),
        unexpected: AtomicU64::new(0),
        wrong_type: AtomicU64::new(0),
        malformed: AtomicU64::new(0),
        log: flags.get("alerts-out").map(|_| Mutex::new(Vec::new())),
    });
    let violators = tracker.things.len();
    let emit = |mut v: serde_json::Value| {
        v["label"] = label.clone().into();
        v["devices"] = count.into();
        v["violators"] = violators.into();
        println!("{v}");
        let _ = std::io::stdout().flush();
    };

    // The webhook runs on a thread of its own, so that arrival instants are not delayed behind
    // the thousands of device tasks of the main runtime.
    let listener = std::net::TcpListener::bind(("127.0.0.1", webhook_port))
        .with_context(|| format!("webhook port {webhook_port}"))?;
    listener.set_nonblocking(true)?;
    let app = axum::Router::new().route("/alerts", axum::routing::post(webhook)).with_state(tracker.clone());
    std::thread::Builder::new().name("webhook".into()).spawn(move || {
        let served = tokio::runtime::Builder::new_current_thread().enable_all().build().and_then(|rt| {
            rt.block_on(async move { axum::serve(tokio::net::TcpListener::from_std(listener)?, app).await })
        });
        if let Err(e) = served {
            log(format!("webhook server: {e}"));
        }
    })?;

    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let base_rid =
        (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64) * 1000;
    let mut publishers: Vec<Vec<Publisher>> = (0..pacers).map(|_| Vec::new()).collect();
    let t = Instant::now();
    for (i, d) in devices.iter().enumerate() {
        let mut p = spawn_device(&shared, &sem, d, &host, port, &ca, base_rid);
        if i % every == 0 {
            p.violator = Some(Violator { device: i as u32, sent: 0 });
        }
        publishers[i % pacers].push(p);
    }
    let deadline = Instant::now() + Duration::from_secs(240);
    while shared.ready.load(Relaxed) < count && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ready = shared.ready.load(Relaxed);
    log(format!(
        "{label}: {ready} devices connected in {:.1} s, {violators} of them violators",
        t.elapsed().as_secs_f64()
    ));
    if ready < count {
        bail!("only {ready} of {count} devices connected");
    }
    let templates = Arc::new(Templates {
        normal,
        alarm: Some(AlarmTemplates { violating, conforming, tracker: tracker.clone() }),
    });
    for devs in publishers {
        tokio::spawn(pacer(shared.clone(), devs, templates.clone(), qos, pacers));
    }

    // The first report of each thing after a start costs the server store reads (its ingest
    // state, its groups): one round of the fleet first, measured as a step of its own.
    let prime_secs = (count as f64 / prime_rate.max(1) as f64).ceil() + 1.0;
    let mut steps =
        vec![("first report of each thing", prime_rate, Duration::ZERO, Duration::from_secs_f64(prime_secs))];
    steps.extend(rates.iter().map(|&r| ("steady", r, warmup, step)));
    for (id, (phase, rate, warmup, step)) in steps.into_iter().enumerate() {
        let id = id as u64 + 1;
        shared.rate.store(rate, Relaxed);
        shared.epoch.fetch_add(1, Relaxed);
        tokio::time::sleep(warmup).await;
        let m0 = scrape(metrics.as_deref());
        let c0 = CpuSnapshot::take(server_pid);
        let (s0, a0, r0, f0, k0, _) = counters(&shared);
        shared.latencies.lock().expect("latencies").clear();
        shared.timed_from_ns.store(shared.now_ns(), Relaxed);
        shared.timed_until_ns.store(u64::MAX, Relaxed);
        tracker.step.store(id, Relaxed);
        let t0 = Instant::now();
        tokio::time::sleep(step).await;
        tracker.step.store(0, Relaxed);
        shared.timed_until_ns.store(shared.now_ns(), Relaxed);
        let secs = t0.elapsed().as_secs_f64();
        let c1 = CpuSnapshot::take(server_pid);
        let (s1, a1, r1, f1, k1, _) = counters(&shared);
        let m1 = scrape(metrics.as_deref());
        shared.rate.store(0, Relaxed);
        shared.epoch.fetch_add(1, Relaxed);

        // Drain: until every report has its reply and every alert of the step arrived, or
        // nothing moved for 10 s (or 180 s in all).
        let t = Instant::now();
        let mut last = (usize::MAX, u64::MAX, Instant::now());
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let (waiting, replies) = (tracker.pending_of(id), shared.replies());
            if waiting == 0 && replies >= shared.sent.load(Relaxed) {
                break;
            }
            if (waiting, replies) != (last.0, last.1) {
                last = (waiting, replies, Instant::now());
            } else if last.2.elapsed() > Duration::from_secs(10) || t.elapsed() > Duration::from_secs(180) {
                break;
            }
        }
        let drain_secs = t.elapsed().as_secs_f64();
        let lost = tracker.give_up(id);
        let m2 = scrape(metrics.as_deref());

        let samples = tracker.take(id);
        let sorted = |f: &dyn Fn(&AlertSample) -> f64| {
            let mut v: Vec<f64> = samples.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v
        };
        let total = sorted(&|s| s.total_us as f64);
        let to_ingest = sorted(&|s| s.to_ingest_us as f64);
        let from_ingest = sorted(&|s| s.from_ingest_us as f64);
        let mut replies = std::mem::take(&mut *shared.latencies.lock().expect("latencies"));
        replies.sort_unstable();
        let CpuShares { server_cpu, gen_cpu, busy, threads } = c1.shares_since(&c0);
        let delta =
            |a: &Option<BTreeMap<String, f64>>, b: &Option<BTreeMap<String, f64>>, name: &str| match (a, b) {
                (Some(a), Some(b)) => {
                    serde_json::json!(
                        b.get(name).copied().unwrap_or(0.0) - a.get(name).copied().unwrap_or(0.0)
                    )
                }
                _ => serde_json::Value::Null,
            };
        let accepted_per_s = (a1 - a0) as f64 / secs;
        log(format!(
            "{label} {phase} {rate}/s: sent {:.0}/s, replies {accepted_per_s:.0}/s; alerts {} (lost {lost}), p50 {} ms, p99 {} ms; drain {drain_secs:.1} s; server CPU {server_cpu:.0}%",
            (s1 - s0) as f64 / secs,
            total.len(),
            percentiles(&total)["p50"],
            percentiles(&total)["p99"],
        ));
        emit(serde_json::json!({
            "kind": "step", "step": id, "phase": phase, "offered": rate, "secs": secs,
            "sent_per_s": (s1 - s0) as f64 / secs,
            "accepted_per_s": accepted_per_s,
            "rejected_per_s": (r1 - r0) as f64 / secs,
            "send_full": f1 - f0, "skipped": k1 - k0,
            "reply_ms": percentiles(&replies),
            "alert_ms": percentiles(&total),
            "to_ingest_ms": percentiles(&to_ingest),
            "from_ingest_ms": percentiles(&from_ingest),
            "alerts_lost": lost,
            "drain_secs": drain_secs,
            "server_queue_wait_le_ms": queue_wait(&m0, &m1),
            "server_cpu_pct": server_cpu, "gen_cpu_pct": gen_cpu,
            "other_cpu_pct": busy - server_cpu - gen_cpu, "machine_busy_pct": busy,
            "server_threads_pct": threads,
            "server_accepted_per_s": match delta(&m0, &m1, "warden_reports_accepted_total") {
                serde_json::Value::Number(n) => serde_json::json!(n.as_f64().unwrap_or(0.0) / secs),
                v => v,
            },
            // From the start of the measured window to the end of the drain.
            "server": {
                "alerts_queued": delta(&m0, &m2, "warden_alerts_total{outcome=\"queued\"}"),
                "alerts_dropped": delta(&m0, &m2, "warden_alerts_total{outcome=\"dropped\"}"),
                "delivered": delta(&m0, &m2, "warden_alert_deliveries_total{outcome=\"delivered\"}"),
                "failed_attempts": delta(&m0, &m2, "warden_alert_deliveries_total{outcome=\"failed_attempt\"}"),
                "in_alarm": delta(&m0, &m2, "warden_violation_events_total{type=\"in-alarm\"}"),
                "alarm_cleared": delta(&m0, &m2, "warden_violation_events_total{type=\"alarm-cleared\"}"),
                "dropped_reports": delta(&m0, &m2, "warden_mqtt_events_dropped_total{kind=\"report\"}"),
            },
        }));
    }
    if let (Some(path), Some(log)) = (flags.get("alerts-out"), &tracker.log) {
        let mut file = std::io::BufWriter::new(std::fs::File::create(path).context("--alerts-out")?);
        for line in log.lock().expect("alert log").iter() {
            writeln!(file, "{line}")?;
        }
        file.flush()?;
    }
    emit(serde_json::json!({
        "kind": "totals",
        "sent": shared.sent.load(Relaxed), "accepted": shared.accepted.load(Relaxed),
        "rejected": shared.rejected.load(Relaxed), "send_full": shared.send_full.load(Relaxed),
        "connection_errors": shared.connection_errors.load(Relaxed),
        "alerts_received": tracker.received.load(Relaxed),
        "alerts_unexpected": tracker.unexpected.load(Relaxed),
        "alerts_wrong_type": tracker.wrong_type.load(Relaxed),
        "alerts_malformed": tracker.malformed.load(Relaxed),
    }));
    Ok(())
}

// ------------------------------------------------------------------------------ measurements

fn pin(pid: u32, cpus: &str) {
    if pid == 0 {
        return;
    }
    match std::process::Command::new("taskset").args(["-apc", cpus, &pid.to_string()]).output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => log(format!("taskset {cpus} {pid} failed: {}", String::from_utf8_lossy(&o.stderr))),
        Err(e) => log(format!("taskset: {e}")),
    }
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// A `/proc/PID/status` field in kB.
fn proc_status(pid: u32, field: &str) -> u64 {
    let text = read(&format!("/proc/{pid}/status"));
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn memory_sample(phase: &str, devices: usize, server_pid: u32) -> serde_json::Value {
    let sockstat = read("/proc/net/sockstat");
    let tcp = |key: &str| -> u64 {
        sockstat
            .lines()
            .find(|l| l.starts_with("TCP:"))
            .and_then(|l| {
                let parts: Vec<&str> = l.split_whitespace().collect();
                parts.iter().position(|p| *p == key).and_then(|i| parts.get(i + 1)?.parse().ok())
            })
            .unwrap_or(0)
    };
    let meminfo = read("/proc/meminfo");
    let mem = |key: &str| -> u64 {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let me = std::process::id();
    serde_json::json!({
        "kind": "mem", "phase": phase, "devices": devices,
        "server_rss_kb": proc_status(server_pid, "VmRSS"),
        "server_hwm_kb": proc_status(server_pid, "VmHWM"),
        "server_anon_kb": proc_status(server_pid, "RssAnon"),
        "server_threads": proc_status(server_pid, "Threads"),
        "gen_rss_kb": proc_status(me, "VmRSS"),
        "tcp_inuse": tcp("inuse"), "tcp_mem_pages": tcp("mem"),
        "slab_kb": mem("Slab"), "mem_available_kb": mem("MemAvailable"),
    })
}

/// CPU seconds of the server (whole and by thread name), of this process and of the machine.
#[derive(Debug)]
struct CpuSnapshot {
    wall_s: f64,
    proc_s: f64,
    self_s: f64,
    busy_s: f64,
    threads: BTreeMap<String, f64>,
}

/// CPU used between two snapshots, in % of one core: the server, this process, the whole
/// machine, and the server's threads by name (those at 0.5 % or more, to 0.1 %).
struct CpuShares {
    server_cpu: f64,
    gen_cpu: f64,
    busy: f64,
    threads: BTreeMap<String, f64>,
}

impl CpuSnapshot {
    fn shares_since(&self, before: &CpuSnapshot) -> CpuShares {
        let wall = self.wall_s - before.wall_s;
        let threads = self
            .threads
            .iter()
            .map(|(name, s)| {
                (name.clone(), (s - before.threads.get(name).copied().unwrap_or(0.0)) / wall * 100.0)
            })
            .filter(|(_, pct)| *pct >= 0.5)
            .map(|(n, p)| (n, (p * 10.0).round() / 10.0))
            .collect();
        CpuShares {
            server_cpu: (self.proc_s - before.proc_s) / wall * 100.0,
            gen_cpu: (self.self_s - before.self_s) / wall * 100.0,
            busy: (self.busy_s - before.busy_s) / wall * 100.0,
            threads,
        }
    }
}

const TICKS: f64 = 100.0;

fn stat_cpu(text: &str) -> Option<(String, f64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let name = text[open + 1..close].to_owned();
    let fields: Vec<&str> = text[close + 2..].split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime) are 12 and 13 after the name.
    let u: f64 = fields.get(11)?.parse().ok()?;
    let s: f64 = fields.get(12)?.parse().ok()?;
    Some((name, (u + s) / TICKS))
}

impl CpuSnapshot {
    fn take(pid: u32) -> CpuSnapshot {
        let proc_s = stat_cpu(&read(&format!("/proc/{pid}/stat"))).map_or(0.0, |(_, s)| s);
        let self_s = stat_cpu(&read("/proc/self/stat")).map_or(0.0, |(_, s)| s);
        let mut threads = BTreeMap::new();
        if pid != 0
            && let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task"))
        {
            for entry in dir.flatten() {
                if let Some((name, s)) = stat_cpu(&read(&format!("{}/stat", entry.path().display()))) {
                    *threads.entry(name).or_insert(0.0) += s;
                }
            }
        }
        let stat = read("/proc/stat");
        let busy_s = stat
            .lines()
            .next()
            .map(|l| {
                let v: Vec<f64> = l.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
                // user nice system idle iowait irq softirq steal
                let all: f64 = v.iter().take(8).sum();
                let idle = v.get(3).copied().unwrap_or(0.0) + v.get(4).copied().unwrap_or(0.0);
                (all - idle) / TICKS
            })
            .unwrap_or(0.0);
        CpuSnapshot {
            wall_s: T0.get_or_init(Instant::now).elapsed().as_secs_f64(),
            proc_s,
            self_s,
            busy_s,
            threads,
        }
    }
}

/// The server's `warden_report_queue_seconds` histogram over a step: for each bucket bound
/// in ms, the reports that waited at most that long between the MQTT endpoint and ingest.
fn queue_wait(a: &Option<BTreeMap<String, f64>>, b: &Option<BTreeMap<String, f64>>) -> serde_json::Value {
    let (Some(a), Some(b)) = (a, b) else { return serde_json::Value::Null };
    let prefix = "warden_report_queue_seconds_bucket{le=\"";
    let buckets: serde_json::Map<String, serde_json::Value> = b
        .iter()
        .filter_map(|(k, v)| {
            let le = k.strip_prefix(prefix)?.strip_suffix("\"}")?;
            let ms = le.parse::<f64>().map_or_else(|_| le.to_owned(), |s| format!("{}", s * 1000.0));
            Some((ms, serde_json::json!(v - a.get(k).copied().unwrap_or(0.0))))
        })
        .collect();
    serde_json::Value::Object(buckets)
}

/// The server's `/metrics` as name{labels} → value.
fn scrape(addr: Option<&str>) -> Option<BTreeMap<String, f64>> {
    let addr = addr?;
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let body = text.split_once("\r\n\r\n")?.1;
    Some(
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                Some((k.to_owned(), v.parse().ok()?))
            })
            .collect(),
    )
}
