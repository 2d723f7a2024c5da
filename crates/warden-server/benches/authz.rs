//! Micro benchmark of MQTT authorization (`warden_server::authz`): what the broker pays per
//! metrics report, what a registry change costs the API, and what the registry costs in memory.
//!
//! ```text
//! cargo bench -p warden-server --bench authz [-- 10000,100000]
//! ```
//!
//! Registers things straight into a SQLite store in a temp dir (thing, ACTIVE certificate with
//! CN = thing, `WardenThingPolicy` on the certificate, the thing in one of ten groups under a
//! `fleet` group with a policy of its own), then for each size prints:
//! - the full load (`Authorizer::new`, what start-up pays) and the RSS it added; the snapshot's
//!   bytes per thing are taken as the RSS a second, simultaneous load adds, because the first one
//!   also leaves the load's transient allocations in the allocator;
//! - ns per check for a report's two checks (the device's PUBLISH and the delivery of its
//!   `/accepted` reply), over every thing in turn: steady state, the first round after a change
//!   to one certificate, and the first after a change to the policies of the group every thing
//!   is in (the fastest of 5 rounds each, as other work shares the machine);
//! - the time of one registry change as the API announces it: a certificate attached to a new
//!   thing (`AttachThingPrincipal`), a policy attached to a certificate (`AttachPolicy`), a
//!   thing added to a group (`AddThingToThingGroup`); and of `RegistryChange::Memberships`,
//!   which names nothing and so reloads the whole registry (the median of up to 5 each).
//!
//! Numbers only: no time is asserted (each check is asserted to allow, so that the path measured
//! is the one a device takes).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use warden_broker::{AccessControl as _, Identity};
use warden_server::authz::{Authorizer, serial_of_pem};
use warden_server::config::ServerConfig;
use warden_server::pki::Pki;
use warden_server::state::{AppState, RegistryChange, RegistryListener as _, SystemClock};
use warden_store::{CertificateStatus, NewCertificate, NewThingGroup, SqliteStore, Store};

/// The server's default thing policy.
const THING_POLICY: &str = warden_server::server::DEFAULT_THING_POLICY_DOCUMENT;

/// A group policy every thing inherits: a quarantine-style Deny on topics reports never use.
const FLEET_POLICY: &str = r#"{"Statement": [{"Effect": "Deny", "Action": "iot:Publish",
  "Resource": "arn:aws:iot:*:*:topic/things/*/firmware"}]}"#;

const GROUPS: usize = 10;

/// Repetitions of each measurement.
const REPEAT: usize = 5;

fn main() -> anyhow::Result<()> {
    let sizes: Vec<usize> = match std::env::args().skip(1).find(|a| !a.starts_with('-')) {
        Some(list) => list.split(',').map(str::parse).collect::<Result<_, _>>().context("sizes")?,
        None => vec![10_000, 100_000],
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(run(&sizes))
}

struct Device {
    identity: Identity,
}

async fn run(sizes: &[usize]) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = ServerConfig { data_dir: dir.path().to_owned(), ..ServerConfig::default() };
    let store = Arc::new(SqliteStore::open(dir.path().join("warden.db"))?);
    let pki = Arc::new(Pki::load_or_create(&dir.path().join("pki"))?);
    let state = AppState::new(Arc::new(config), store.clone(), pki.clone(), Arc::new(SystemClock), [0; 32]);
    let now = state.now_ms();
    store.create_policy("WardenThingPolicy", THING_POLICY, now).await?;
    store.create_policy("FleetPolicy", FLEET_POLICY, now).await?;
    let group = |name: String, parent: Option<&str>| NewThingGroup {
        name,
        parent: parent.map(Into::into),
        description: None,
        attributes: BTreeMap::new(),
    };
    store.create_thing_group(group("fleet".into(), None), now).await?;
    for g in 0..GROUPS {
        store.create_thing_group(group(format!("fleet-{g}"), Some("fleet")), now).await?;
    }
    store.attach_policy("FleetPolicy", &state.arns.thing_group("fleet")).await?;

    println!(
        "{:>8} | {:>9} {:>11} {:>12} | {:>9} {:>10} {:>10} | {:>12} {:>12} {:>12} {:>12}",
        "things",
        "load ms",
        "load RSS kB",
        "bytes/thing",
        "ns/check",
        "1st: cert",
        "1st: all",
        "attach cert",
        "attach pol",
        "add to grp",
        "Memberships"
    );
    let mut devices: Vec<Device> = Vec::new();
    for &n in sizes {
        let started = Instant::now();
        provision(&state, &pki, &mut devices, n).await?;
        eprintln!("[bench] {n} things registered in {:.1} s", started.elapsed().as_secs_f64());
        measure(&state, &pki, &devices).await?;
    }
    Ok(())
}

/// Registers things up to `n`, many at once so that the store's writer batches them.
async fn provision(
    state: &AppState,
    pki: &Arc<Pki>,
    devices: &mut Vec<Device>,
    n: usize,
) -> anyhow::Result<()> {
    let from = devices.len();
    let issued = {
        let mut tasks = tokio::task::JoinSet::new();
        let workers = std::thread::available_parallelism().map_or(2, |w| w.get());
        for w in 0..workers {
            let pki = pki.clone();
            tasks.spawn_blocking(move || {
                (from + w..n)
                    .step_by(workers)
                    .map(|i| {
                        let thing = format!("bench-{i:06}");
                        pki.issue_thing_cert(&thing).map(|c| (i, thing, c))
                    })
                    .collect::<Result<Vec<_>, _>>()
            });
        }
        let mut all = Vec::with_capacity(n - from);
        while let Some(r) = tasks.join_next().await {
            all.extend(r??);
        }
        all.sort_by_key(|(i, _, _)| *i);
        all
    };
    let sem = Arc::new(tokio::sync::Semaphore::new(512));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, thing, cert) in &issued {
        let permit = sem.clone().acquire_owned().await?;
        let (store, thing, id, pem) =
            (state.store.clone(), thing.clone(), cert.certificate_id.clone(), cert.cert_pem.clone());
        let (arn, group, now) =
            (state.arns.certificate(&id), format!("fleet-{}", i % GROUPS), state.now_ms());
        tasks.spawn(async move {
            let _permit = permit;
            store.create_thing(&thing, BTreeMap::new(), now).await?;
            store
                .create_certificate(NewCertificate {
                    certificate_id: id.clone(),
                    pem,
                    status: CertificateStatus::Active,
                    ca_certificate_id: None,
                    subject_cn: Some(thing.clone()),
                    created_at_ms: now,
                })
                .await?;
            store.attach_thing_principal(&thing, &id).await?;
            store.attach_policy("WardenThingPolicy", &arn).await?;
            store.add_thing_to_group(&group, &thing).await?;
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    for (_, thing, cert) in issued {
        let identity = Identity {
            thing: thing.clone(),
            client_id: thing,
            cert_serial: serial_of_pem(&cert.cert_pem).context("serial")?,
            remote_addr: ([127, 0, 0, 1], 40000).into(),
            mqtt5: false,
        };
        devices.push(Device { identity });
    }
    Ok(())
}

async fn measure(state: &AppState, pki: &Pki, devices: &[Device]) -> anyhow::Result<()> {
    let n = devices.len();
    let rss0 = rss_kb();
    let started = Instant::now();
    let authz = Authorizer::new(state.clone()).await?;
    let load = started.elapsed();
    let rss1 = rss_kb();
    let second = Authorizer::new(state.clone()).await?;
    let rss2 = rss_kb();
    drop(second);

    let topics: Vec<(String, String)> = devices
        .iter()
        .map(|d| {
            let base = format!("$aws/things/{}/defender/metrics/cbor", d.identity.thing);
            let accepted = format!("{base}/accepted");
            (base, accepted)
        })
        .collect();
    let round = |authz: &Authorizer| {
        let started = Instant::now();
        for (d, (report, accepted)) in devices.iter().zip(&topics) {
            assert!(authz.publish(&d.identity, report), "{} may report", d.identity.thing);
            assert!(authz.receive(&d.identity, accepted), "{} may receive its reply", d.identity.thing);
        }
        started.elapsed()
    };
    // The machine is shared: of repeated measurements the fastest is the least disturbed.
    round(&authz);
    let hot = (0..REPEAT).map(|_| round(&authz)).min().unwrap_or_default();
    let per_check = |d: Duration| d.as_nanos() as f64 / (n * 2) as f64;

    let store = &state.store;
    let extra = format!("bench-extra-{n}");
    store.create_thing(&extra, BTreeMap::new(), state.now_ms()).await?;
    let issued = pki.issue_thing_cert(&extra)?;
    store
        .create_certificate(NewCertificate {
            certificate_id: issued.certificate_id.clone(),
            pem: issued.cert_pem.clone(),
            status: CertificateStatus::Active,
            ca_certificate_id: None,
            subject_cn: Some(extra.clone()),
            created_at_ms: state.now_ms(),
        })
        .await?;
    let id = issued.certificate_id.clone();
    let certificate_changed = || RegistryChange::Certificate { certificate_id: id.clone() };
    let timed = async |change: RegistryChange| {
        let started = Instant::now();
        authz.registry_changed(&change).await;
        started.elapsed()
    };

    // A registry change, then every session's first two checks: after a change to one
    // certificate, and after one to the policies of the group every thing is in.
    let mut first = Vec::new();
    let mut first_all = Vec::new();
    let fleet = RegistryChange::PolicyTarget {
        policy: "FleetPolicy".into(),
        target: state.arns.thing_group("fleet"),
    };
    for _ in 0..REPEAT {
        timed(certificate_changed()).await;
        first.push(round(&authz));
        timed(fleet.clone()).await;
        first_all.push(round(&authz));
    }
    let first = first.into_iter().min().unwrap_or_default();
    let first_all = first_all.into_iter().min().unwrap_or_default();

    // Each change undone by the next, as long as one takes less than a second (the old
    // authorizer took tens of seconds per change at 100,000 things).
    let target = state.arns.certificate(&id);
    let (mut attach_cert, mut attach_policy, mut add_to_group, mut coarse) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..REPEAT {
        if i % 2 == 0 {
            store.attach_thing_principal(&extra, &id).await?;
        } else {
            store.detach_thing_principal(&extra, &id).await?;
        }
        attach_cert.push(timed(certificate_changed()).await);
        if i % 2 == 0 {
            store.attach_policy("WardenThingPolicy", &target).await?;
        } else {
            store.detach_policy("WardenThingPolicy", &target).await?;
        }
        let change =
            RegistryChange::PolicyTarget { policy: "WardenThingPolicy".into(), target: target.clone() };
        attach_policy.push(timed(change).await);
        if i % 2 == 0 {
            store.add_thing_to_group("fleet-0", &extra).await?;
        } else {
            store.remove_thing_from_group("fleet-0", &extra).await?;
        }
        add_to_group.push(timed(RegistryChange::ThingGroups { thing: extra.clone() }).await);
        // What a writer that cannot say what changed costs: the whole registry again.
        coarse.push(timed(RegistryChange::Memberships).await);
        if coarse.iter().chain(&attach_cert).any(|d| *d > Duration::from_secs(1)) {
            break;
        }
    }
    let median = |mut samples: Vec<Duration>| {
        samples.sort();
        samples[samples.len() / 2]
    };
    let (attach_cert, attach_policy, add_to_group, coarse) =
        (median(attach_cert), median(attach_policy), median(add_to_group), median(coarse));

    let ms = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1000.0);
    println!(
        "{:>8} | {:>9.0} {:>11} {:>12.0} | {:>9.0} {:>10.0} {:>10.0} | {:>12} {:>12} {:>12} {:>12}",
        n,
        load.as_secs_f64() * 1000.0,
        rss1.saturating_sub(rss0),
        rss2.saturating_sub(rss1) as f64 * 1024.0 / n as f64,
        per_check(hot),
        per_check(first),
        per_check(first_all),
        ms(attach_cert),
        ms(attach_policy),
        ms(add_to_group),
        ms(coarse),
    );
    Ok(())
}

/// This process's resident set, from `/proc/self/status` (0 where there is none).
fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().trim_end_matches(" kB").to_owned()))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
