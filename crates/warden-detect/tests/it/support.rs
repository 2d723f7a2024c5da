//! Builders shared by the tests: AWS-shaped behaviors, the account's definitions, datapoints
//! and a deterministic violation id source.

use warden_detect::{
    Behavior, CustomMetricType, Datapoint, Definitions, Engine, EngineConfig, MetricDimension, MetricValue,
    ProfileErrors, SecurityProfile, ViolationEvent, ViolationEventKind, ViolationId, aws, compile,
};

pub const PERIOD_MS: i64 = 300_000;

/// Custom metrics and dimensions as in spec §1.6 and §4.3.
pub fn defs() -> Definitions {
    let mut d = Definitions::default();
    for (name, t) in [
        ("battery_pct", CustomMetricType::Number),
        ("cpu_temps", CustomMetricType::NumberList),
        ("daemons", CustomMetricType::StringList),
        ("peers", CustomMetricType::IpAddressList),
    ] {
        d.custom_metrics.insert(name.to_owned(), t);
    }
    d.dimensions.insert("TopicFilterForAuthMessages".to_owned());
    d.dimensions.insert("telemetry".to_owned());
    d
}

pub fn criteria(op: &str, value: MetricValue) -> aws::BehaviorCriteria {
    aws::BehaviorCriteria {
        comparison_operator: Some(op.to_owned()),
        value: Some(value),
        ..Default::default()
    }
}

pub fn behavior(name: &str, metric: &str, criteria: aws::BehaviorCriteria) -> aws::Behavior {
    aws::Behavior {
        name: name.to_owned(),
        metric: Some(metric.to_owned()),
        criteria: Some(criteria),
        ..Default::default()
    }
}

pub fn profile_of(name: &str, behaviors: Vec<aws::Behavior>) -> Result<SecurityProfile, ProfileErrors> {
    compile(&aws::SecurityProfile { name: name.to_owned(), behaviors }, &defs())
}

/// Compiles a profile of one behavior and returns that behavior.
pub fn compile_one(b: aws::Behavior) -> Result<Behavior, ProfileErrors> {
    profile_of("P", vec![b]).map(|mut p| p.behaviors.remove(0))
}

/// An engine with one profile `P` of the given behaviors and 300 s periods.
pub fn engine_with(behaviors: Vec<aws::Behavior>) -> Engine {
    let mut engine = Engine::new(EngineConfig::default());
    engine.put_profile(profile_of("P", behaviors).unwrap(), 0);
    engine
}

/// Ids 1, 2, 3, ... so tests can name them.
#[derive(Debug, Default)]
pub struct Counter(pub u128);

impl warden_detect::ViolationIds for Counter {
    fn next_id(&mut self) -> ViolationId {
        self.0 += 1;
        ViolationId::from_u128(self.0)
    }
}

pub fn id(n: u128) -> ViolationId {
    ViolationId::from_u128(n)
}

pub fn dp(metric: &str, timestamp_ms: i64, value: MetricValue) -> Datapoint {
    Datapoint { metric: metric.to_owned().into(), dimension: None, timestamp_ms, value }
}

pub fn dp_dim(metric: &str, dimension: &MetricDimension, timestamp_ms: i64, value: MetricValue) -> Datapoint {
    Datapoint { metric: metric.to_owned().into(), dimension: Some(dimension.clone()), timestamp_ms, value }
}

/// `(kind, behavior, id)` of each event, for compact assertions.
pub fn summary(events: &[ViolationEvent]) -> Vec<(ViolationEventKind, String, u128)> {
    events.iter().map(|e| (e.kind, e.behavior.clone(), e.violation_id.as_u128())).collect()
}
