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
        _ => bail!("usage: loadgen provision|run [--flag value ...] (see the file's docs)"),
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
}

impl Shared {
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
    let report = decode_report(REPORT_JSON.as_bytes(), Format::Json, &Limits::default())
        .map_err(|r| anyhow::anyhow!("template: {}", r.message))?;
    let template = encode_report(&report, Format::Cbor, Names::Short);
    let mut sentinel = vec![0x1b];
    sentinel.extend_from_slice(&SENTINEL_ID.to_be_bytes());
    let rid_offset = template
        .windows(9)
        .position(|w| w == sentinel.as_slice())
        .context("report id not found in the CBOR template")?
        + 1;
    let template: Arc<[u8]> = template.into();
    log(format!("{label}: report template {} bytes of CBOR (short keys)", template.len()));

    let shared = Arc::new(Shared {
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
    });
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
            let d = &devices[next];
            let client_id = d.thing.clone();
            let mut options = MqttOptions::new(client_id, host.clone(), port);
            // Reports reset the keepalive; a long one keeps idle devices silent, as the agent does.
            options.set_keep_alive(Duration::from_secs(600));
            options.set_clean_session(true);
            options.set_max_packet_size(64 * 1024, 64 * 1024);
            options.set_transport(Transport::Tls(TlsConfiguration::Simple {
                ca: ca.clone(),
                alpn: None,
                client_auth: Some((d.cert.clone().into_bytes(), d.key.clone().into_bytes())),
            }));
            let (client, mut eventloop) = AsyncClient::new(options, 16);
            // Handshakes queue behind each other while thousands connect.
            eventloop.network_options.set_connection_timeout(60);
            let slots = Arc::new(Slots::new());
            let filter = match target {
                Target::Warden => format!("$aws/things/{}/defender/metrics/cbor/+", d.thing),
                Target::Mosquitto => format!("$aws/things/{}/defender/metrics/cbor", d.thing),
            };
            tokio::spawn(device_task(
                shared.clone(),
                sem.clone(),
                client.clone(),
                eventloop,
                filter,
                slots.clone(),
            ));
            publishers[next % pacers].push(Publisher {
                client,
                topic: format!("$aws/things/{}/defender/metrics/cbor", d.thing),
                rid: base_rid,
                slots,
            });
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
    let template_for = template.clone();
    for devs in publishers {
        tokio::spawn(pacer(shared.clone(), devs, template_for.clone(), qos, pacers));
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
            let wall = c1.wall_s - c0.wall_s;
            let server_cpu = (c1.proc_s - c0.proc_s) / wall * 100.0;
            let gen_cpu = (c1.self_s - c0.self_s) / wall * 100.0;
            let busy = (c1.busy_s - c0.busy_s) / wall * 100.0;
            let threads: BTreeMap<String, f64> = c1
                .threads
                .iter()
                .map(|(name, s)| {
                    (name.clone(), (s - c0.threads.get(name).copied().unwrap_or(0.0)) / wall * 100.0)
                })
                .filter(|(_, pct)| *pct >= 0.5)
                .map(|(n, p)| (n, (p * 10.0).round() / 10.0))
                .collect();
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
    let us = (now.saturating_sub(sent) / 1000).min(u64::from(u32::MAX)) as u32;
    shared.latencies.lock().expect("latencies").push(us);
}

#[derive(Debug)]
struct Publisher {
    client: AsyncClient,
    topic: String,
    rid: u64,
    slots: Arc<Slots>,
}

/// Sends `rate / pacers` reports per second over its devices in turn, checking the schedule
/// every millisecond.
async fn pacer(shared: Arc<Shared>, mut devs: Vec<Publisher>, template: Arc<[u8]>, qos: QoS, pacers: usize) {
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
            let mut payload = template.to_vec();
            payload[shared.rid_offset..shared.rid_offset + 8].copy_from_slice(&d.rid.to_be_bytes());
            let slot = (d.rid % SLOTS as u64) as usize;
            d.slots.sent_ns[slot].store(shared.now_ns(), Relaxed);
            d.slots.rid[slot].store(d.rid, Relaxed);
            match d.client.try_publish(d.topic.clone(), qos, false, payload) {
                Ok(()) => shared.sent.fetch_add(1, Relaxed),
                Err(_) => shared.send_full.fetch_add(1, Relaxed),
            };
            due_sent += 1;
        }
    }
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
