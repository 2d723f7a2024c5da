//! Detection: the datapoints of every accepted report and of every cloud-side period go through
//! the `warden-detect` engine; the violation events it returns are alerted, stored and
//! mitigated.
//!
//! One task owns the engine, so evaluation takes no locks, and takes its inputs in order from a
//! bounded channel: datapoints from ingest and the cloud-side aggregator, and registry changes
//! from the API, which waits until they are applied (a profile attached by a request that has
//! returned judges the next report). Events go two ways at once: alerts are queued without
//! waiting for the database (report-to-alert latency is the figure of merit), and a second task
//! records them in order, then starts automatic mitigation for `in-alarm` events (mitigation
//! reads the violation it acts on from the store).
//!
//! Which profiles monitor a thing comes from the profiles' targets (`all/things`,
//! `all/registered-things`, `all/unregistered-things`, thing groups with their nested members)
//! and the thing's groups, read from the store the first time the thing is seen and kept until
//! its memberships may have changed. Alarms of a profile that stopped monitoring a thing are
//! invalidated when the profile's targets change, or at the thing's next datapoint when its
//! memberships changed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use warden_detect::{
    Datapoint, Engine, EngineConfig, RestoredAlarm, ViolationEvent, ViolationEventKind, ViolationId,
};
use warden_store::{
    ActiveViolationFilter, ActiveViolationUpdate, NewViolationEvent, StoreError, ThingFilter,
    ViolationChange, ViolationEventType, all_pages,
};

use crate::alerts::{Alert, Alerts};
use crate::api::profiles::{all_profiles, definitions};
use crate::cloud::{DimensionSeries, Period};
use crate::state::{AppState, RegistryChange, RegistryListener};

/// Inputs waiting for the engine; ingest waits when it is full (backpressure, never loss).
const QUEUE: usize = 8192;
/// How often alarms without data are looked for.
const SWEEP: Duration = Duration::from_secs(3600);

/// Counts for `/metrics`.
#[derive(Debug, Default)]
pub struct DetectStats {
    /// Batches of datapoints evaluated (a report, or one thing's cloud-side period).
    pub evaluations: AtomicU64,
    pub in_alarm: AtomicU64,
    pub alarm_cleared: AtomicU64,
    pub alarm_invalidated: AtomicU64,
    /// Violation changes the store refused or could not write.
    pub store_errors: AtomicU64,
}

enum Input {
    Observe { thing: Box<str>, points: Vec<Datapoint>, now_ms: i64 },
    Changed { change: RegistryChange, done: oneshot::Sender<()> },
}

/// The handle ingest, the cloud-side aggregator and the API use; cheap to clone.
#[derive(Debug, Clone)]
pub struct Detection {
    tx: mpsc::Sender<Input>,
    /// False while no profile is attached anywhere: datapoints are then not even sent.
    monitoring: Arc<AtomicBool>,
    /// The dimensioned series behaviors use, for the cloud-side aggregator to count.
    series: SharedSeries,
    /// The metrics behaviors measure undivided: a report's other datapoints are not sent.
    watched: SharedWatched,
    pub stats: Arc<DetectStats>,
}

type SharedSeries = Arc<RwLock<Arc<Vec<DimensionSeries>>>>;
type SharedWatched = Arc<RwLock<Arc<HashSet<String>>>>;

/// The running detection stage: the handle, and the tasks to await at shutdown (the engine's
/// loop, then the recorder, which finishes writing what the loop produced).
#[derive(Debug)]
pub struct DetectionTasks {
    pub engine: tokio::task::JoinHandle<()>,
    pub recorder: tokio::task::JoinHandle<()>,
}

impl Detection {
    /// Loads the profiles, restores the alarms that were active at the last stop, and starts.
    pub async fn start(
        state: AppState,
        alerts: Alerts,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> anyhow::Result<(Detection, DetectionTasks)> {
        let config =
            EngineConfig { period: state.config.detect.period, max_silence: state.config.detect.max_silence };
        let (record_tx, record_rx) = mpsc::unbounded_channel();
        let stats = Arc::new(DetectStats::default());
        let monitoring = Arc::new(AtomicBool::new(false));
        let series = SharedSeries::default();
        let watched = SharedWatched::default();
        let mut detector = Detector {
            state: state.clone(),
            engine: Engine::new(config),
            profiles: HashMap::new(),
            targets: Vec::new(),
            things: HashMap::new(),
            things_loaded: false,
            alerts,
            record: record_tx,
            stats: stats.clone(),
            monitoring: monitoring.clone(),
            series: series.clone(),
            watched: watched.clone(),
        };
        detector.reload().await.context("loading security profiles")?;
        detector.restore().await.context("restoring active violations")?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let engine = tokio::spawn(detector.run(rx, stop));
        let recorder = tokio::spawn(record(state, record_rx, stats.clone()));
        Ok((Detection { tx, monitoring, series, watched, stats }, DetectionTasks { engine, recorder }))
    }

    /// Evaluates a report's datapoints: those of the metrics some behavior measures (a report
    /// has ten or so; most fleets watch a few metrics, and copying the rest to the engine task
    /// was a visible share of the server's CPU per report).
    pub async fn observe(&self, thing: &str, points: &[warden_store::Datapoint], now_ms: i64) {
        if !self.monitoring.load(Ordering::Relaxed) {
            return;
        }
        let watched = self.watched.read().expect("watched lock").clone();
        let points: Vec<Datapoint> =
            points.iter().filter(|d| watched.contains(&*d.metric)).map(undivided).collect();
        if points.is_empty() {
            return;
        }
        self.send(thing, points, now_ms).await;
    }

    /// Evaluates a cloud-side period, thing by thing: its undivided and dimensioned datapoints.
    pub async fn observe_period(&self, period: &Period, now_ms: i64) {
        if !self.monitoring.load(Ordering::Relaxed) {
            return;
        }
        let mut by_thing: BTreeMap<&str, Vec<Datapoint>> = BTreeMap::new();
        for d in period.points.iter().filter(|d| d.dimension.is_none()) {
            by_thing.entry(&d.thing).or_default().push(undivided(d));
        }
        for (thing, d) in &period.dimensioned {
            by_thing.entry(thing).or_default().push(d.clone());
        }
        for (thing, points) in by_thing {
            self.send(thing, points, now_ms).await;
        }
    }

    async fn send(&self, thing: &str, points: Vec<Datapoint>, now_ms: i64) {
        // Only fails once the engine has stopped, at shutdown.
        let _ = self.tx.send(Input::Observe { thing: thing.into(), points, now_ms }).await;
    }

    /// The dimensioned series the cloud-side aggregator should count, as of now. The same
    /// `Arc` until profiles change, so the aggregator can ask on every event.
    pub fn dimension_series(&self) -> Arc<Vec<DimensionSeries>> {
        self.series.read().expect("series lock").clone()
    }
}

fn undivided(d: &warden_store::Datapoint) -> Datapoint {
    Datapoint {
        metric: d.metric.clone(),
        dimension: None,
        timestamp_ms: d.timestamp_ms,
        value: d.value.clone(),
    }
}

#[async_trait::async_trait]
impl RegistryListener for Detection {
    async fn registry_changed(&self, change: &RegistryChange) {
        let (done, applied) = oneshot::channel();
        if self.tx.send(Input::Changed { change: change.clone(), done }).await.is_ok() {
            let _ = applied.await;
        }
    }
}

/// What the engine does not keep of a profile: its behaviors as AWS JSON, where it alerts and
/// what it mitigates automatically.
#[derive(Debug, Default)]
struct ProfileExtras {
    behavior_json: HashMap<String, Value>,
    alert_target_arns: Vec<String>,
    automatic_actions: Vec<String>,
}

/// What a profile is attached to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    AllThings,
    Registered,
    Unregistered,
    Group(String),
}

/// A thing as targeting sees it, cached.
#[derive(Debug)]
struct ThingInfo {
    registered: bool,
    groups: Vec<String>,
    profiles: Arc<[String]>,
}

struct Detector {
    state: AppState,
    engine: Engine,
    profiles: HashMap<String, ProfileExtras>,
    targets: Vec<(String, Target)>,
    things: HashMap<Box<str>, ThingInfo>,
    /// Whether `things` holds every registered thing (read in bulk at the first report that
    /// needs one); until then, and for things registered since, a miss reads the store.
    things_loaded: bool,
    alerts: Alerts,
    record: mpsc::UnboundedSender<RecordBatch>,
    stats: Arc<DetectStats>,
    monitoring: Arc<AtomicBool>,
    series: SharedSeries,
    watched: SharedWatched,
}

/// Violation changes to write in order; `done` is told when they and all before are written.
struct RecordBatch {
    records: Vec<ViolationRecord>,
    done: Option<oneshot::Sender<()>>,
}

/// One event for the recorder, with what it needs to mitigate.
struct ViolationRecord {
    change: ViolationChange,
    /// Mitigation actions to run when this is an `in-alarm` event.
    automatic_actions: Vec<String>,
}

impl Detector {
    async fn run(mut self, mut rx: mpsc::Receiver<Input>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut sweep = tokio::time::interval_at(tokio::time::Instant::now() + SWEEP, SWEEP);
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                input = rx.recv() => match input {
                    None => break,
                    Some(Input::Observe { thing, points, now_ms }) => self.observe(&thing, &points, now_ms).await,
                    Some(Input::Changed { change, done }) => {
                        self.changed(&change).await;
                        // Answered once the recorder has written what the change caused.
                        let _ = self.record.send(RecordBatch { records: Vec::new(), done: Some(done) });
                    }
                },
                _ = sweep.tick() => {
                    let now = self.state.now_ms();
                    let events = self.engine.invalidate_stale(now);
                    self.emit(events, Vec::new());
                }
            }
        }
        // Evaluate what was already handed over, so accepted reports are judged.
        rx.close();
        while let Some(input) = rx.recv().await {
            match input {
                Input::Observe { thing, points, now_ms } => self.observe(&thing, &points, now_ms).await,
                Input::Changed { done, .. } => {
                    let _ = done.send(());
                }
            }
        }
    }

    async fn observe(&mut self, thing: &str, points: &[Datapoint], now_ms: i64) {
        let profiles = match self.monitoring_profiles(thing).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(%thing, error = %e, "cannot read the thing's groups; datapoints not evaluated");
                return;
            }
        };
        let mut ids = random_violation_id;
        let names: Vec<&str> = profiles.iter().map(String::as_str).collect();
        let events = self.engine.observe(thing, &names, points, now_ms, &mut ids);
        self.stats.evaluations.fetch_add(1, Ordering::Relaxed);
        // Alarms that saw another violating value: their last value and time move on.
        let latest = points.iter().map(|p| p.timestamp_ms).max().unwrap_or(now_ms);
        let updates = self
            .engine
            .active_violations(thing)
            .into_iter()
            .filter(|v| v.last_violation_ms == latest && v.violation_start_ms != latest)
            .map(|v| ActiveViolationUpdate {
                violation_id: v.violation_id.to_string(),
                behavior_json: self.behavior_json(&v.profile.name, &v.behavior.name).to_string(),
                last_violation_value: metric_value_json(v.last_violation_value),
                last_violation_ms: v.last_violation_ms,
                suppress_alerts: v.behavior.suppress_alerts,
            })
            .collect();
        self.emit(events, updates);
    }

    /// Alerts on the events now, and hands them with the updates to the recorder.
    fn emit(&self, events: Vec<ViolationEvent>, updates: Vec<ActiveViolationUpdate>) {
        if events.is_empty() && updates.is_empty() {
            return;
        }
        let mut records = Vec::with_capacity(events.len() + updates.len());
        for event in events {
            let counter = match event.kind {
                ViolationEventKind::InAlarm => &self.stats.in_alarm,
                ViolationEventKind::AlarmCleared => &self.stats.alarm_cleared,
                ViolationEventKind::AlarmInvalidated(_) => &self.stats.alarm_invalidated,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            let behavior = self.behavior_json(&event.profile, &event.behavior);
            let extras = self.profiles.get(&event.profile);
            if !event.suppress_alerts {
                let message = alert_message(&event, &behavior);
                for arn in extras.map(|e| e.alert_target_arns.as_slice()).unwrap_or_default() {
                    self.alerts.send(Alert {
                        topic_arn: arn.clone(),
                        message: message.clone(),
                        at_ms: event.at_ms,
                    });
                }
            }
            let automatic_actions = match (event.kind, extras) {
                (ViolationEventKind::InAlarm, Some(e)) if !event.suppress_alerts => {
                    e.automatic_actions.clone()
                }
                _ => Vec::new(),
            };
            tracing::info!(
                thing = %event.thing,
                profile = %event.profile,
                behavior = %event.behavior,
                event = %event.kind,
                violation = %event.violation_id,
                "violation event"
            );
            records.push(ViolationRecord {
                change: ViolationChange::Event(NewViolationEvent {
                    violation_id: event.violation_id.to_string(),
                    event_type: match event.kind {
                        ViolationEventKind::InAlarm => ViolationEventType::InAlarm,
                        ViolationEventKind::AlarmCleared => ViolationEventType::AlarmCleared,
                        ViolationEventKind::AlarmInvalidated(_) => ViolationEventType::AlarmInvalidated,
                    },
                    thing: event.thing,
                    security_profile: event.profile,
                    behavior: event.behavior,
                    behavior_json: behavior.to_string(),
                    metric_value: metric_value_json(&event.metric_value),
                    event_time_ms: event.at_ms,
                    suppress_alerts: event.suppress_alerts,
                }),
                automatic_actions,
            });
        }
        records.extend(
            updates.into_iter().map(|u| ViolationRecord {
                change: ViolationChange::Update(u),
                automatic_actions: Vec::new(),
            }),
        );
        // Only fails once the recorder has stopped, at shutdown.
        let _ = self.record.send(RecordBatch { records, done: None });
    }

    /// The behavior as configured, or a minimal one when its profile is gone (an invalidation).
    fn behavior_json(&self, profile: &str, behavior: &str) -> Value {
        self.profiles
            .get(profile)
            .and_then(|p| p.behavior_json.get(behavior))
            .cloned()
            .unwrap_or_else(|| json!({ "name": behavior }))
    }

    async fn changed(&mut self, change: &RegistryChange) {
        match change {
            RegistryChange::SecurityProfiles => {
                if let Err(e) = self.reload().await {
                    tracing::error!(error = %format!("{e:#}"), "cannot reload security profiles; detection keeps the previous ones");
                }
            }
            RegistryChange::ThingDeleted { thing } => {
                self.things.remove(thing.as_str());
                let events = self.engine.remove_thing(thing, self.state.now_ms());
                self.emit(events, Vec::new());
            }
            RegistryChange::ThingGroups { thing } => self.regroup(std::slice::from_ref(thing)).await,
            RegistryChange::ThingGroupDeleted { group } => {
                let members: Vec<String> = self
                    .things
                    .iter()
                    .filter(|(_, info)| info.groups.contains(group))
                    .map(|(thing, _)| thing.to_string())
                    .collect();
                self.regroup(&members).await;
            }
            // Which groups things are in may have changed: read them again when next needed.
            RegistryChange::Memberships => {
                self.things.clear();
                self.things_loaded = false;
            }
            RegistryChange::Policy { .. }
            | RegistryChange::PolicyTarget { .. }
            | RegistryChange::Policies
            | RegistryChange::Certificate { .. } => {}
        }
    }

    /// Reads the groups of known things again; alarms of profiles that no longer monitor them
    /// are invalidated now rather than at their next report.
    async fn regroup(&mut self, things: &[String]) {
        let now = self.state.now_ms();
        let mut events = Vec::new();
        for thing in things {
            let Some(old) = self.things.remove(thing.as_str()) else { continue };
            match self.monitoring_profiles(thing).await {
                Ok(profiles) => {
                    for gone in old.profiles.iter().filter(|p| !profiles.contains(p)) {
                        events.extend(self.engine.detach(thing, gone, now));
                    }
                }
                Err(e) => tracing::error!(%thing, error = %e, "cannot read the thing's groups"),
            }
        }
        self.emit(events, Vec::new());
    }

    /// Loads every profile and target from the store into the engine, and re-targets the
    /// things already known (their groups are unchanged by this).
    async fn reload(&mut self) -> anyhow::Result<()> {
        let now = self.state.now_ms();
        let defs = definitions(&self.state).await.map_err(api_error)?;
        let mut events = Vec::new();
        let mut profiles = HashMap::new();
        let mut targets = Vec::new();
        for (profile, document) in all_profiles(&self.state).await.map_err(api_error)? {
            match document.for_detection(&profile.name, &defs) {
                Ok((compiled, behavior_json)) => {
                    events.extend(self.engine.put_profile(compiled, now));
                    profiles.insert(
                        profile.name.clone(),
                        ProfileExtras {
                            behavior_json,
                            alert_target_arns: document
                                .alert_target_arns()
                                .into_iter()
                                .map(str::to_owned)
                                .collect(),
                            automatic_actions: document.automatic_mitigation_actions().to_vec(),
                        },
                    );
                }
                // The API refuses such profiles; one can still become invalid if a custom
                // metric it uses changed type through the database. It is not evaluated.
                Err(e) => {
                    tracing::error!(profile = %profile.name, error = %e, "security profile cannot be evaluated")
                }
            }
            let prefix = self.state.arns.prefix().to_owned();
            for arn in all_pages(|page| {
                let store = self.state.store.clone();
                let name = profile.name.clone();
                async move { store.list_targets_for_security_profile(&name, &page).await }
            })
            .await?
            {
                let target = match arn.strip_prefix(&prefix) {
                    Some("all/things") => Target::AllThings,
                    Some("all/registered-things") => Target::Registered,
                    Some("all/unregistered-things") => Target::Unregistered,
                    Some(rest) => match rest.strip_prefix("thinggroup/") {
                        Some(group) => Target::Group(group.to_owned()),
                        None => continue,
                    },
                    None => continue,
                };
                targets.push((profile.name.clone(), target));
            }
        }
        let gone: Vec<String> =
            self.engine.profiles().map(|p| p.name.clone()).filter(|n| !profiles.contains_key(n)).collect();
        for name in gone {
            events.extend(self.engine.remove_profile(&name, now));
        }
        self.profiles = profiles;
        self.targets = targets;
        self.monitoring.store(!self.targets.is_empty(), Ordering::Relaxed);
        let filters: HashMap<String, Vec<String>> = all_pages(|page| {
            let store = self.state.store.clone();
            async move { store.list_dimensions(&page).await }
        })
        .await?
        .into_iter()
        .map(|d| (d.name, d.string_values))
        .collect();
        let series = self
            .engine
            .dimensioned_series()
            .into_iter()
            .filter(|(metric, _)| DimensionSeries::supported(metric))
            .map(|(metric, dimension)| DimensionSeries {
                metric: metric.to_owned(),
                dimension: dimension.clone(),
                filters: filters.get(&dimension.name).cloned().unwrap_or_default(),
            })
            .collect();
        *self.series.write().expect("series lock") = Arc::new(series);
        let watched = self.engine.undivided_metrics().into_iter().map(str::to_owned).collect();
        *self.watched.write().expect("watched lock") = Arc::new(watched);
        // Things keep their groups; which profiles monitor them may have changed.
        let mut detached = Vec::new();
        for (thing, info) in &mut self.things {
            let now_monitoring = profiles_for(&self.targets, info.registered, &info.groups);
            for old in info.profiles.iter().filter(|p| !now_monitoring.contains(p)) {
                detached.push((thing.clone(), old.clone()));
            }
            info.profiles = now_monitoring;
        }
        for (thing, profile) in detached {
            events.extend(self.engine.detach(&thing, &profile, now));
        }
        self.emit(events, Vec::new());
        Ok(())
    }

    /// Puts the alarms active at the last stop back into the engine.
    async fn restore(&mut self) -> Result<(), StoreError> {
        let filter = ActiveViolationFilter::default();
        let active = all_pages(|page| {
            let (store, filter) = (self.state.store.clone(), filter.clone());
            async move { store.list_active_violations(&filter, &page).await }
        })
        .await?;
        for v in active {
            let (Ok(id), Ok(value)) =
                (v.violation_id.parse::<ViolationId>(), serde_json::from_str(&v.last_violation_value))
            else {
                tracing::warn!(violation = %v.violation_id, "active violation not restored: not one of Warden's");
                continue;
            };
            let alarm = RestoredAlarm {
                violation_id: id,
                violation_start_ms: v.violation_start_ms,
                last_violation_ms: v.last_violation_ms,
                last_violation_value: value,
            };
            if let Err(e) = self.engine.restore_alarm(&v.thing, &v.security_profile, &v.behavior, alarm) {
                tracing::warn!(violation = %v.violation_id, error = %e, "active violation not restored");
            }
        }
        Ok(())
    }

    /// The profiles monitoring `thing`, from the cache or the store.
    async fn monitoring_profiles(&mut self, thing: &str) -> Result<Arc<[String]>, StoreError> {
        if !self.things_loaded
            && !self.things.contains_key(thing)
            && let Err(e) = self.load_things().await
        {
            tracing::warn!(error = %e, "cannot read the registry in bulk; reading thing by thing");
        }
        if let Some(info) = self.things.get(thing) {
            return Ok(info.profiles.clone());
        }
        let registered = match self.state.store.describe_thing(thing).await {
            Ok(_) => true,
            Err(StoreError::NotFound { .. }) => false,
            Err(e) => return Err(e),
        };
        let groups =
            if registered { self.state.store.effective_groups_for_thing(thing).await? } else { Vec::new() };
        let profiles = profiles_for(&self.targets, registered, &groups);
        self.things.insert(thing.into(), ThingInfo { registered, groups, profiles: profiles.clone() });
        Ok(profiles)
    }
}

impl Detector {
    /// Fills `things` with every registered thing and its effective groups, in four bulk reads.
    /// This runs inside the one detection task, so reading thing by thing on first sight would
    /// hold up every other thing's evaluation: after a restart the whole fleet's first reports
    /// would queue behind two store reads each.
    async fn load_things(&mut self) -> Result<(), StoreError> {
        let store = &self.state.store;
        let filter = ThingFilter::default();
        let filter = &filter;
        let things = all_pages(|page| async move { store.list_things(filter, &page).await }).await?;
        let parents: HashMap<String, Option<String>> =
            store.all_thing_group_parents().await?.into_iter().collect();
        let mut direct: HashMap<String, Vec<String>> = HashMap::new();
        for (thing, group) in store.all_thing_group_members().await? {
            direct.entry(thing).or_default().push(group);
        }
        for thing in things {
            if self.things.contains_key(thing.name.as_str()) {
                continue;
            }
            let groups = with_ancestors(direct.get(&thing.name).map_or(&[][..], Vec::as_slice), &parents);
            let profiles = profiles_for(&self.targets, true, &groups);
            self.things.insert(thing.name.into(), ThingInfo { registered: true, groups, profiles });
        }
        self.things_loaded = true;
        Ok(())
    }
}

/// `groups` and all their ancestors, each once, in name order (as
/// `Store::effective_groups_for_thing` answers). A parent chain is at most 7 deep in AWS; the
/// walk stops at a group already seen, so a corrupt cycle cannot loop.
fn with_ancestors(groups: &[String], parents: &HashMap<String, Option<String>>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for group in groups {
        let mut next = Some(group);
        while let Some(g) = next {
            if out.contains(g) {
                break;
            }
            out.push(g.clone());
            next = parents.get(g).and_then(Option::as_ref);
        }
    }
    out.sort();
    out
}

/// The profiles whose targets include a thing with these groups, each once, in name order.
fn profiles_for(targets: &[(String, Target)], registered: bool, groups: &[String]) -> Arc<[String]> {
    let mut out: Vec<String> = targets
        .iter()
        .filter(|(_, t)| match t {
            Target::AllThings => true,
            Target::Registered => registered,
            Target::Unregistered => !registered,
            Target::Group(g) => groups.contains(g),
        })
        .map(|(p, _)| p.clone())
        .collect();
    out.sort();
    out.dedup();
    out.into()
}

/// Writes violation changes in the order they were made, then starts automatic mitigation.
async fn record(state: AppState, mut rx: mpsc::UnboundedReceiver<RecordBatch>, stats: Arc<DetectStats>) {
    while let Some(RecordBatch { records, done }) = rx.recv().await {
        if !records.is_empty() {
            write(&state, records, &stats).await;
        }
        if let Some(done) = done {
            let _ = done.send(());
        }
    }
}

async fn write(state: &AppState, records: Vec<ViolationRecord>, stats: &DetectStats) {
    let mut mitigate = Vec::new();
    let mut changes = Vec::with_capacity(records.len());
    for r in records {
        if let (ViolationChange::Event(e), false) = (&r.change, r.automatic_actions.is_empty()) {
            let target =
                (e.violation_id.clone(), e.thing.clone(), e.security_profile.clone(), e.behavior.clone());
            mitigate.push((target, r.automatic_actions));
        }
        changes.push(r.change);
    }
    let live = state.live_violations(&changes);
    if let Err(e) = state.store.record_violation_events(changes).await {
        stats.store_errors.fetch_add(1, Ordering::Relaxed);
        tracing::error!(error = %e, "cannot record violation events");
        return;
    }
    live.into_iter().for_each(|event| state.emit(event));
    for ((violation_id, thing, profile, behavior), actions) in mitigate {
        let state = state.clone();
        tokio::spawn(async move {
            crate::mitigation::run_automatic(&state, &violation_id, &thing, &profile, &behavior, &actions)
                .await;
        });
    }
}

/// The alert JSON AWS sends to SNS (spec §5.5); `violationEventTime` in milliseconds.
pub fn alert_message(event: &ViolationEvent, behavior: &Value) -> String {
    json!({
        "violationEventTime": event.at_ms,
        "thingName": event.thing,
        "behavior": behavior,
        "violationEventType": event.kind.as_str(),
        "metricValue": event.metric_value,
        "violationId": event.violation_id.to_string(),
        "securityProfileName": event.profile,
    })
    .to_string()
}

fn metric_value_json(value: &warden_detect::MetricValue) -> String {
    serde_json::to_string(value).expect("a metric value always serializes")
}

/// 128 random bits: violation ids must not repeat across restarts or servers.
fn random_violation_id() -> ViolationId {
    let mut b = [0u8; 16];
    // The system RNG does not fail on Linux.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    ViolationId::from_bytes(b)
}

/// The API's loaders report store failures as API errors.
fn api_error(e: crate::api::protocol::ApiError) -> anyhow::Error {
    anyhow::anyhow!("{}: {}", e.code, e.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_select_profiles() {
        let targets = vec![
            ("all".to_owned(), Target::AllThings),
            ("reg".to_owned(), Target::Registered),
            ("unreg".to_owned(), Target::Unregistered),
            ("cams".to_owned(), Target::Group("cameras".into())),
            ("all".to_owned(), Target::Group("cameras".into())),
        ];
        assert_eq!(&*profiles_for(&targets, true, &["cameras".into()]), ["all", "cams", "reg"]);
        assert_eq!(&*profiles_for(&targets, true, &[]), ["all", "reg"]);
        assert_eq!(&*profiles_for(&targets, false, &[]), ["all", "unreg"]);
    }

    #[test]
    fn effective_groups_are_the_groups_and_their_ancestors_once() {
        let parents: HashMap<String, Option<String>> = [
            ("building", None),
            ("floor-1", Some("building")),
            ("lobby", Some("floor-1")),
            ("kitchen", Some("floor-1")),
            ("loop-a", Some("loop-b")),
            ("loop-b", Some("loop-a")),
        ]
        .into_iter()
        .map(|(g, p)| (g.to_owned(), p.map(str::to_owned)))
        .collect();
        let groups = |direct: &[&str]| {
            let direct: Vec<String> = direct.iter().map(|g| (*g).to_owned()).collect();
            with_ancestors(&direct, &parents)
        };
        assert_eq!(groups(&["lobby"]), ["building", "floor-1", "lobby"]);
        assert_eq!(groups(&["lobby", "kitchen"]), ["building", "floor-1", "kitchen", "lobby"]);
        assert_eq!(groups(&[]), Vec::<String>::new());
        // A group the parents table does not know (deleted meanwhile) is still its own.
        assert_eq!(groups(&["gone"]), ["gone"]);
        // A corrupt cycle ends.
        assert_eq!(groups(&["loop-a"]), ["loop-a", "loop-b"]);
    }
}
