//! The detection engine: compiled profiles, the evaluation state of every monitored thing, and
//! the violation events that datapoints and registry changes cause.
//!
//! The engine is a plain value driven by its owner. Time comes in as arguments (datapoint
//! timestamps, `now_ms`), violation ids from a [`ViolationIds`] the owner supplies (the server
//! gives random ones, tests give counters), and which profiles monitor a thing is the owner's
//! knowledge (thing groups, `all/things` targets), passed with every batch of datapoints.
//!
//! An alarm ends in one of three ways: cleared by conforming datapoints, or invalidated when
//! its behavior stopped getting data for [`EngineConfig::max_silence`] (AWS: two days), when the
//! behavior or profile is removed, when the profile no longer monitors the thing, or when the
//! thing is deleted. Every path yields exactly one event per alarm, so the owner's active
//! violations mirror the engine's.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::profile::{Behavior, MetricDimension, SecurityProfile};
use crate::state::{Alarm, BehaviorState, Change};
use crate::value::MetricValue;

/// Engine settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// The reporting period: 300 s like AWS, shorter in demos and tests. A counter window of
    /// `durationSeconds` spans `durationSeconds / 300` of these periods.
    pub period: Duration,
    /// How long a behavior in alarm may go without datapoints before its alarm is invalidated
    /// by [`Engine::invalidate_stale`]. AWS: two days (DG-TS).
    pub max_silence: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig { period: Duration::from_secs(300), max_silence: Duration::from_secs(2 * 24 * 3600) }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A violation id: 128 bits, written as 32 lowercase hex digits like AWS's
/// (`37e18651d207bbc74236c13faf146127`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ViolationId(u128);

impl ViolationId {
    pub fn from_u128(bits: u128) -> Self {
        ViolationId(bits)
    }

    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        ViolationId(u128::from_be_bytes(bytes))
    }

    pub fn as_u128(self) -> u128 {
        self.0
    }
}

impl fmt::Display for ViolationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// A text that is not 32 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a violation id (32 hex digits)")]
pub struct InvalidViolationId(pub String);

impl FromStr for ViolationId {
    type Err = InvalidViolationId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(InvalidViolationId(s.to_owned()));
        }
        u128::from_str_radix(s, 16).map(ViolationId).map_err(|_| InvalidViolationId(s.to_owned()))
    }
}

/// Where new violation ids come from. The engine has no randomness of its own.
pub trait ViolationIds {
    fn next_id(&mut self) -> ViolationId;
}

impl<F: FnMut() -> ViolationId> ViolationIds for F {
    fn next_id(&mut self) -> ViolationId {
        self()
    }
}

/// One observation of one metric of a thing, as the server stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct Datapoint {
    /// `aws:...` or a custom metric name (borrowed for the catalogue's, so copying a
    /// datapoint from ingest allocates no name).
    pub metric: Cow<'static, str>,
    /// The dimension the server counted this series for; `None` for the undivided metric.
    pub dimension: Option<MetricDimension>,
    /// When the value was measured (the report's arrival, the end of a cloud-side period).
    pub timestamp_ms: i64,
    pub value: MetricValue,
}

/// AWS `violationEventType`, with why an alarm was invalidated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ViolationEventKind {
    InAlarm,
    AlarmCleared,
    AlarmInvalidated(InvalidationReason),
}

impl ViolationEventKind {
    /// `in-alarm`, `alarm-cleared` or `alarm-invalidated`.
    pub fn as_str(self) -> &'static str {
        match self {
            ViolationEventKind::InAlarm => "in-alarm",
            ViolationEventKind::AlarmCleared => "alarm-cleared",
            ViolationEventKind::AlarmInvalidated(_) => "alarm-invalidated",
        }
    }
}

impl fmt::Display for ViolationEventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an alarm ended without being cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InvalidationReason {
    /// The behavior got no datapoint for longer than `max_silence`.
    NoData,
    /// The behavior left its profile, or its metric or dimension changed.
    BehaviorRemoved,
    /// The profile was deleted.
    ProfileRemoved,
    /// The profile no longer monitors the thing (detached target, thing left the group).
    NotMonitored,
    /// The thing was deleted.
    ThingDeleted,
}

/// A change of a violation's state: what the owner stores, shows and alerts on.
#[derive(Debug, Clone, PartialEq)]
pub struct ViolationEvent {
    pub kind: ViolationEventKind,
    pub thing: String,
    pub profile: String,
    pub behavior: String,
    /// The behavior's metric name.
    pub metric: String,
    /// The value judged: the window sum for counters, the datapoint otherwise. For an
    /// invalidation, the last violating value.
    pub metric_value: MetricValue,
    pub violation_id: ViolationId,
    /// When the alarm was raised.
    pub violation_start_ms: i64,
    /// When this event happened: the datapoint's timestamp, or `now_ms` for invalidations.
    pub at_ms: i64,
    /// The behavior's `suppressAlerts`: keep the violation, send no alert.
    pub suppress_alerts: bool,
}

/// An alarm in force (AWS `ActiveViolation`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ActiveViolation<'a> {
    pub thing: &'a str,
    pub profile: &'a SecurityProfile,
    pub behavior: &'a Behavior,
    pub violation_id: ViolationId,
    pub violation_start_ms: i64,
    pub last_violation_ms: i64,
    pub last_violation_value: &'a MetricValue,
}

/// An active violation as the owner persisted it, to restore after a restart.
#[derive(Debug, Clone, PartialEq)]
pub struct RestoredAlarm {
    pub violation_id: ViolationId,
    pub violation_start_ms: i64,
    pub last_violation_ms: i64,
    pub last_violation_value: MetricValue,
}

/// Why an alarm could not be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    #[error("no security profile {0:?}")]
    UnknownProfile(String),
    #[error("security profile {profile:?} has no behavior {behavior:?}")]
    UnknownBehavior { profile: String, behavior: String },
}

/// The heap the engine holds for per-thing state, computed from the sizes of its parts (the
/// profiles themselves are shared by all things and not included). For the memory budget and
/// for operators' dashboards; it leaves out the allocator's own overhead per allocation
/// (typically 8 to 16 bytes), which is why allocations are counted too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StateSize {
    pub things: usize,
    pub bytes: usize,
    pub allocations: usize,
}

/// The evaluation state of one thing: one entry per profile monitoring it.
#[derive(Debug, Default)]
struct ThingState {
    profiles: Vec<ProfileState>,
}

/// One profile's state for one thing: the states of its behaviors, in the profile's order.
#[derive(Debug)]
struct ProfileState {
    /// Always the engine's current version of the profile: replacing a profile updates every
    /// thing at once, so behaviors and states never disagree.
    profile: Arc<SecurityProfile>,
    behaviors: Box<[BehaviorState]>,
}

impl ProfileState {
    fn new(profile: Arc<SecurityProfile>) -> Self {
        let behaviors = profile.behaviors.iter().map(BehaviorState::new).collect();
        ProfileState { profile, behaviors }
    }

    /// Ends every alarm of this profile for `thing` with `reason`.
    fn invalidate_all(
        &mut self,
        thing: &str,
        reason: InvalidationReason,
        now_ms: i64,
        events: &mut Vec<ViolationEvent>,
    ) {
        for (behavior, state) in self.profile.behaviors.iter().zip(self.behaviors.iter_mut()) {
            if let Some(alarm) = state.take_alarm() {
                events.push(invalidated(thing, &self.profile, behavior, &alarm, reason, now_ms));
            }
        }
    }

    /// Moves to a new version of the profile. A behavior keeps its state if one with the same
    /// name, metric and dimension was there before, with its window and run restarted if the
    /// criteria changed; the alarms of the other old behaviors are invalidated.
    fn replace(
        &mut self,
        new: &Arc<SecurityProfile>,
        thing: &str,
        now_ms: i64,
        events: &mut Vec<ViolationEvent>,
    ) {
        let old = std::mem::replace(&mut self.profile, new.clone());
        let mut old_states: Vec<Option<BehaviorState>> =
            std::mem::take(&mut self.behaviors).into_vec().into_iter().map(Some).collect();
        let mut states = Vec::with_capacity(new.behaviors.len());
        for behavior in &new.behaviors {
            let same = old.behaviors.iter().position(|b| {
                b.name == behavior.name && b.metric == behavior.metric && b.dimension == behavior.dimension
            });
            let state = match same.and_then(|i| Some((i, old_states[i].take()?))) {
                Some((i, mut state)) => {
                    if old.behaviors[i].criteria != behavior.criteria {
                        state.reset(behavior);
                    }
                    state
                }
                None => BehaviorState::new(behavior),
            };
            states.push(state);
        }
        for (behavior, state) in old.behaviors.iter().zip(old_states) {
            if let Some(alarm) = state.and_then(|mut s| s.take_alarm()) {
                events.push(invalidated(
                    thing,
                    &old,
                    behavior,
                    &alarm,
                    InvalidationReason::BehaviorRemoved,
                    now_ms,
                ));
            }
        }
        self.behaviors = states.into_boxed_slice();
    }
}

/// Profiles, per-thing state, and the rules that connect them. See the module doc.
#[derive(Debug, Default)]
pub struct Engine {
    config: EngineConfig,
    profiles: BTreeMap<String, Arc<SecurityProfile>>,
    /// Only things monitored by at least one known profile have an entry.
    things: HashMap<Box<str>, ThingState>,
}

impl Engine {
    pub fn new(config: EngineConfig) -> Self {
        Engine { config, profiles: BTreeMap::new(), things: HashMap::new() }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn profile(&self, name: &str) -> Option<&SecurityProfile> {
        self.profiles.get(name).map(|p| &**p)
    }

    pub fn profiles(&self) -> impl Iterator<Item = &SecurityProfile> {
        self.profiles.values().map(|p| &**p)
    }

    /// The series that behaviors narrow by a dimension, each once: the cloud-side aggregator
    /// counts these in addition to the undivided metrics.
    pub fn dimensioned_series(&self) -> Vec<(&str, &MetricDimension)> {
        let mut out: Vec<(&str, &MetricDimension)> = Vec::new();
        for behavior in self.profiles.values().flat_map(|p| &p.behaviors) {
            if let Some(d) = &behavior.dimension {
                let series = (behavior.metric.name(), d);
                if !out.contains(&series) {
                    out.push(series);
                }
            }
        }
        out
    }

    /// The metrics that behaviors without a dimension measure, each once. A device's report
    /// carries undivided datapoints only, and one of a metric no such behavior measures changes
    /// nothing in [`Engine::observe`], so the caller may leave it out.
    pub fn undivided_metrics(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for behavior in self.profiles.values().flat_map(|p| &p.behaviors) {
            if behavior.dimension.is_none() && !out.contains(&behavior.metric.name()) {
                out.push(behavior.metric.name());
            }
        }
        out
    }

    /// How many things have evaluation state.
    pub fn thing_count(&self) -> usize {
        self.things.len()
    }

    /// Measures the per-thing state (see [`StateSize`]).
    pub fn state_size(&self) -> StateSize {
        use std::mem::size_of;
        // The map's table: std's hash map keeps buckets in a power of two with at most 7/8 of
        // them used, each bucket an entry and a control byte, plus one group of control bytes.
        let capacity = self.things.capacity();
        let buckets = match capacity {
            0 => 0,
            c if c < 7 => c + 1,
            c => c / 7 * 8,
        };
        let mut size = StateSize {
            things: self.things.len(),
            bytes: if buckets == 0 { 0 } else { buckets * (size_of::<(Box<str>, ThingState)>() + 1) + 16 },
            allocations: usize::from(buckets > 0),
        };
        for (name, state) in &self.things {
            size.bytes += name.len() + state.profiles.capacity() * size_of::<ProfileState>();
            size.allocations += 1 + usize::from(state.profiles.capacity() > 0);
            for ps in &state.profiles {
                size.bytes += ps.behaviors.len() * size_of::<BehaviorState>();
                size.allocations += usize::from(!ps.behaviors.is_empty());
                for bs in &ps.behaviors {
                    let (bytes, allocations) = bs.heap();
                    size.bytes += bytes;
                    size.allocations += allocations;
                }
            }
        }
        size
    }

    /// Adds a profile or replaces the one of the same name. Replacing keeps the state of
    /// unchanged behaviors and returns the invalidations of alarms whose behavior is gone.
    pub fn put_profile(&mut self, profile: SecurityProfile, now_ms: i64) -> Vec<ViolationEvent> {
        let new = Arc::new(profile);
        let mut events = Vec::new();
        if self.profiles.insert(new.name.clone(), new.clone()).is_some() {
            for (thing, state) in &mut self.things {
                if let Some(ps) = state.profiles.iter_mut().find(|ps| ps.profile.name == new.name) {
                    ps.replace(&new, thing, now_ms, &mut events);
                }
            }
        }
        events
    }

    /// Deletes a profile, invalidating its alarms on every thing.
    pub fn remove_profile(&mut self, name: &str, now_ms: i64) -> Vec<ViolationEvent> {
        let mut events = Vec::new();
        if self.profiles.remove(name).is_some() {
            self.things.retain(|thing, state| {
                state.profiles.retain_mut(|ps| {
                    let keep = ps.profile.name != name;
                    if !keep {
                        ps.invalidate_all(thing, InvalidationReason::ProfileRemoved, now_ms, &mut events);
                    }
                    keep
                });
                !state.profiles.is_empty()
            });
        }
        events
    }

    /// Evaluates a batch of datapoints of `thing` (a report, or a cloud-side period) against
    /// the behaviors of `profiles`, the names of every profile that monitors the thing now.
    /// Alarms of profiles not in that list are invalidated: the thing is no longer monitored
    /// by them. Unknown profile names are ignored. Datapoints are evaluated in the order given;
    /// events carry their datapoint's timestamp, and `now_ms` stamps the invalidations.
    pub fn observe(
        &mut self,
        thing: &str,
        profiles: &[&str],
        datapoints: &[Datapoint],
        now_ms: i64,
        ids: &mut impl ViolationIds,
    ) -> Vec<ViolationEvent> {
        let mut events = Vec::new();
        if let Some(state) = self.things.get_mut(thing) {
            state.profiles.retain_mut(|ps| {
                let keep = profiles.contains(&ps.profile.name.as_str());
                if !keep {
                    ps.invalidate_all(thing, InvalidationReason::NotMonitored, now_ms, &mut events);
                }
                keep
            });
        }
        let monitoring: Vec<&Arc<SecurityProfile>> =
            profiles.iter().filter_map(|n| self.profiles.get(*n)).collect();
        if monitoring.is_empty() {
            self.things.remove(thing);
            return events;
        }
        if !self.things.contains_key(thing) {
            self.things.insert(thing.into(), ThingState::default());
        }
        let state = self.things.get_mut(thing).expect("inserted above");
        let before = state.profiles.len();
        for profile in monitoring {
            if !state.profiles.iter().any(|ps| ps.profile.name == profile.name) {
                state.profiles.push(ProfileState::new(profile.clone()));
            }
        }
        if state.profiles.len() != before {
            // A `Vec` grows by doubling; most things have one or two profiles for their life.
            state.profiles.shrink_to_fit();
        }
        let period_ms = millis(self.config.period);
        for dp in datapoints {
            for ps in &mut state.profiles {
                for (behavior, bs) in ps.profile.behaviors.iter().zip(ps.behaviors.iter_mut()) {
                    if !behavior.measures(&dp.metric, dp.dimension.as_ref()) {
                        continue;
                    }
                    let change = bs.observe(behavior, period_ms, dp.timestamp_ms, &dp.value, ids);
                    let event = match change {
                        None => continue,
                        Some(Change::Raised { id, value }) => ViolationEvent {
                            kind: ViolationEventKind::InAlarm,
                            thing: thing.to_owned(),
                            profile: ps.profile.name.clone(),
                            behavior: behavior.name.clone(),
                            metric: behavior.metric.name().to_owned(),
                            metric_value: value,
                            violation_id: id,
                            violation_start_ms: dp.timestamp_ms,
                            at_ms: dp.timestamp_ms,
                            suppress_alerts: behavior.suppress_alerts,
                        },
                        Some(Change::Cleared { alarm, value }) => ViolationEvent {
                            kind: ViolationEventKind::AlarmCleared,
                            thing: thing.to_owned(),
                            profile: ps.profile.name.clone(),
                            behavior: behavior.name.clone(),
                            metric: behavior.metric.name().to_owned(),
                            metric_value: value,
                            violation_id: alarm.id,
                            violation_start_ms: alarm.started_ms,
                            at_ms: dp.timestamp_ms,
                            suppress_alerts: behavior.suppress_alerts,
                        },
                    };
                    events.push(event);
                }
            }
        }
        events
    }

    /// The profile no longer monitors the thing: its alarms there are invalidated and its
    /// state for the thing dropped.
    pub fn detach(&mut self, thing: &str, profile: &str, now_ms: i64) -> Vec<ViolationEvent> {
        let mut events = Vec::new();
        if let Some(state) = self.things.get_mut(thing) {
            state.profiles.retain_mut(|ps| {
                let keep = ps.profile.name != profile;
                if !keep {
                    ps.invalidate_all(thing, InvalidationReason::NotMonitored, now_ms, &mut events);
                }
                keep
            });
            if state.profiles.is_empty() {
                self.things.remove(thing);
            }
        }
        events
    }

    /// The thing was deleted: all its alarms are invalidated and its state dropped.
    pub fn remove_thing(&mut self, thing: &str, now_ms: i64) -> Vec<ViolationEvent> {
        let mut events = Vec::new();
        if let Some(mut state) = self.things.remove(thing) {
            for ps in &mut state.profiles {
                ps.invalidate_all(thing, InvalidationReason::ThingDeleted, now_ms, &mut events);
            }
        }
        events
    }

    /// Invalidates every alarm whose behavior has had no datapoint for more than
    /// `max_silence`, and forgets things none of whose behaviors has had one in that time (their
    /// windows would be all zero gaps anyway). Call it periodically, e.g. hourly.
    pub fn invalidate_stale(&mut self, now_ms: i64) -> Vec<ViolationEvent> {
        let max_silence = millis(self.config.max_silence);
        let silent = |last: Option<i64>| last.is_none_or(|t| now_ms.saturating_sub(t) > max_silence);
        let mut events = Vec::new();
        self.things.retain(|thing, state| {
            let mut any_recent = false;
            for ps in &mut state.profiles {
                for (behavior, bs) in ps.profile.behaviors.iter().zip(ps.behaviors.iter_mut()) {
                    if !silent(bs.last_ms()) {
                        any_recent = true;
                    } else if let Some(alarm) = bs.take_alarm() {
                        events.push(invalidated(
                            thing,
                            &ps.profile,
                            behavior,
                            &alarm,
                            InvalidationReason::NoData,
                            now_ms,
                        ));
                    }
                }
            }
            any_recent
        });
        events
    }

    /// The alarms in force for `thing`, profile by profile in the order they were attached,
    /// behaviors in profile order.
    pub fn active_violations<'a>(&'a self, thing: &str) -> Vec<ActiveViolation<'a>> {
        let Some((name, state)) = self.things.get_key_value(thing) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for ps in &state.profiles {
            for (behavior, bs) in ps.profile.behaviors.iter().zip(ps.behaviors.iter()) {
                if let Some(alarm) = bs.alarm() {
                    out.push(ActiveViolation {
                        thing: name,
                        profile: &ps.profile,
                        behavior,
                        violation_id: alarm.id,
                        violation_start_ms: alarm.started_ms,
                        last_violation_ms: alarm.last_violation_ms,
                        last_violation_value: &alarm.last_value,
                    });
                }
            }
        }
        out
    }

    /// Puts back an alarm the owner persisted before a restart, so that it is cleared or
    /// invalidated like any other instead of lingering, and the next violation of the behavior
    /// does not open a second one. Datapoints not newer than its last violation are ignored.
    pub fn restore_alarm(
        &mut self,
        thing: &str,
        profile: &str,
        behavior: &str,
        alarm: RestoredAlarm,
    ) -> Result<(), RestoreError> {
        let p = self.profiles.get(profile).ok_or_else(|| RestoreError::UnknownProfile(profile.to_owned()))?;
        let index = p.behaviors.iter().position(|b| b.name == behavior).ok_or_else(|| {
            RestoreError::UnknownBehavior { profile: profile.to_owned(), behavior: behavior.to_owned() }
        })?;
        if !self.things.contains_key(thing) {
            self.things.insert(thing.into(), ThingState::default());
        }
        let state = self.things.get_mut(thing).expect("inserted above");
        let ps = match state.profiles.iter().position(|ps| ps.profile.name == profile) {
            Some(i) => &mut state.profiles[i],
            None => {
                state.profiles.push(ProfileState::new(p.clone()));
                state.profiles.shrink_to_fit();
                state.profiles.last_mut().expect("pushed above")
            }
        };
        ps.behaviors[index].restore(Alarm {
            id: alarm.violation_id,
            started_ms: alarm.violation_start_ms,
            last_violation_ms: alarm.last_violation_ms,
            last_value: alarm.last_violation_value,
        });
        Ok(())
    }
}

fn invalidated(
    thing: &str,
    profile: &SecurityProfile,
    behavior: &Behavior,
    alarm: &Alarm,
    reason: InvalidationReason,
    now_ms: i64,
) -> ViolationEvent {
    ViolationEvent {
        kind: ViolationEventKind::AlarmInvalidated(reason),
        thing: thing.to_owned(),
        profile: profile.name.clone(),
        behavior: behavior.name.clone(),
        metric: behavior.metric.name().to_owned(),
        metric_value: alarm.last_value.clone(),
        violation_id: alarm.id,
        violation_start_ms: alarm.started_ms,
        at_ms: now_ms,
        suppress_alerts: behavior.suppress_alerts,
    }
}
