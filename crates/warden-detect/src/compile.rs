//! Compiles the AWS-shaped profile ([`crate::aws`]) into the typed one ([`SecurityProfile`]),
//! reporting every problem at once, each with the path of the offending member, e.g.
//! `behaviors[2].criteria.value: in-port-set needs value.ports`.
//!
//! What is checked: names (`[a-zA-Z0-9:_-]{1,128}`, unique behaviors, at most 100), metrics
//! (catalogue or defined custom metric), dimensions (defined, on a metric that takes one),
//! operators per metric (spec §3, §1.5), the one `value` field each operator compares and its
//! elements, `durationSeconds` (300, 600, 900, 1800 or 3600; never on lists) and the consecutive
//! counts (1–10). Statistical thresholds and ML Detect are refused as not supported yet: a
//! profile that relies on them must not be accepted and then never alarm.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use crate::aws;
use crate::cidr::Cidr;
use crate::criteria::{ComparisonOperator, Condition, Criteria, DEFAULT_CONSECUTIVE_DATAPOINTS, normalize};
use crate::metric::{AwsMetric, CustomMetricType, Metric, MetricKind};
use crate::profile::{Behavior, DURATIONS_SECONDS, DimensionOperator, MetricDimension, SecurityProfile};
use crate::value::MetricValue;

/// AWS's limit on behaviors per profile.
pub const MAX_BEHAVIORS: usize = 100;

/// What the account defines that behaviors may refer to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Definitions {
    /// Custom metrics by name, with their `metricType`.
    pub custom_metrics: BTreeMap<String, CustomMetricType>,
    /// Names of the defined `TOPIC_FILTER` dimensions.
    pub dimensions: BTreeSet<String>,
}

/// One problem with a profile, at the path of the member that has it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    /// The member is wrong.
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    /// The member asks for something Warden does not do yet (statistical thresholds, ML Detect).
    #[error("{path}: {message}")]
    NotSupported { path: String, message: String },
}

impl ProfileError {
    pub fn path(&self) -> &str {
        match self {
            ProfileError::Invalid { path, .. } | ProfileError::NotSupported { path, .. } => path,
        }
    }
}

/// Every problem found in a profile, in member order. Never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ProfileErrors(pub Vec<ProfileError>);

impl fmt::Display for ProfileErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Compiles a whole profile: its name and its behaviors.
pub fn compile(profile: &aws::SecurityProfile, defs: &Definitions) -> Result<SecurityProfile, ProfileErrors> {
    let mut errors = Errors::default();
    if !is_valid_name(&profile.name) {
        errors.invalid("securityProfileName", NAME_RULE);
    }
    let behaviors = compile_into(&profile.behaviors, defs, &mut errors);
    errors.finish(SecurityProfile { name: profile.name.clone(), behaviors })
}

/// Compiles a list of behaviors alone, as `ValidateSecurityProfileBehaviors` does.
pub fn compile_behaviors(
    behaviors: &[aws::Behavior],
    defs: &Definitions,
) -> Result<Vec<Behavior>, ProfileErrors> {
    let mut errors = Errors::default();
    let out = compile_into(behaviors, defs, &mut errors);
    errors.finish(out)
}

const NAME_RULE: &str = "must be 1 to 128 characters of a-z, A-Z, 0-9, ':', '_' and '-'";

fn is_valid_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'))
}

#[derive(Default)]
struct Errors(Vec<ProfileError>);

impl Errors {
    fn invalid(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ProfileError::Invalid { path: path.into(), message: message.into() });
    }

    fn not_supported(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ProfileError::NotSupported { path: path.into(), message: message.into() });
    }

    fn finish<T>(self, value: T) -> Result<T, ProfileErrors> {
        if self.0.is_empty() { Ok(value) } else { Err(ProfileErrors(self.0)) }
    }
}

fn compile_into(behaviors: &[aws::Behavior], defs: &Definitions, errors: &mut Errors) -> Vec<Behavior> {
    if behaviors.len() > MAX_BEHAVIORS {
        errors.invalid("behaviors", format!("at most {MAX_BEHAVIORS} behaviors, found {}", behaviors.len()));
    }
    let mut first_index: HashMap<&str, usize> = HashMap::new();
    let mut out = Vec::with_capacity(behaviors.len());
    for (i, b) in behaviors.iter().enumerate() {
        let path = format!("behaviors[{i}]");
        match first_index.entry(&b.name) {
            Entry::Occupied(first) => errors.invalid(
                format!("{path}.name"),
                format!("{:?} is already the name of behaviors[{}]", b.name, first.get()),
            ),
            Entry::Vacant(slot) => {
                slot.insert(i);
            }
        }
        if let Some(behavior) = compile_behavior(b, &path, defs, errors) {
            out.push(behavior);
        }
    }
    out
}

fn compile_behavior(
    b: &aws::Behavior,
    path: &str,
    defs: &Definitions,
    errors: &mut Errors,
) -> Option<Behavior> {
    let before = errors.0.len();
    if !is_valid_name(&b.name) {
        errors.invalid(format!("{path}.name"), NAME_RULE);
    }
    let metric = compile_metric(b.metric.as_deref(), &format!("{path}.metric"), defs, errors);
    let dimension = b.metric_dimension.as_ref().and_then(|d| {
        compile_dimension(d, metric.as_ref(), &format!("{path}.metricDimension"), defs, errors)
    });
    let criteria = match &b.criteria {
        None => {
            errors.invalid(format!("{path}.criteria"), "missing");
            None
        }
        Some(c) => compile_criteria(c, metric.as_ref(), &format!("{path}.criteria"), errors),
    };
    if errors.0.len() != before {
        return None;
    }
    Some(Behavior {
        name: b.name.clone(),
        metric: metric?,
        dimension,
        criteria: criteria?,
        suppress_alerts: b.suppress_alerts.unwrap_or(false),
        export_metric: b.export_metric.unwrap_or(false),
    })
}

fn compile_metric(name: Option<&str>, path: &str, defs: &Definitions, errors: &mut Errors) -> Option<Metric> {
    let Some(name) = name else {
        errors.invalid(path, "missing");
        return None;
    };
    if name.starts_with("aws:") {
        let metric = AwsMetric::parse(name).map(Metric::Aws);
        if metric.is_none() {
            errors.invalid(path, format!("unknown metric {name:?}"));
        }
        return metric;
    }
    if !is_valid_name(name) {
        errors.invalid(path, format!("{name:?} is not a metric name: {NAME_RULE}"));
        return None;
    }
    match defs.custom_metrics.get(name) {
        Some(t) => Some(Metric::Custom { name: name.to_owned(), metric_type: *t }),
        None => {
            errors.invalid(path, format!("custom metric {name:?} is not defined"));
            None
        }
    }
}

fn compile_dimension(
    d: &aws::MetricDimension,
    metric: Option<&Metric>,
    path: &str,
    defs: &Definitions,
    errors: &mut Errors,
) -> Option<MetricDimension> {
    let before = errors.0.len();
    match metric {
        Some(m @ Metric::Custom { .. }) => errors
            .invalid(path, format!("not allowed for {m}: dimensions cannot be used with custom metrics")),
        Some(m) if !m.takes_dimension() => errors.invalid(
            path,
            format!(
                "not allowed for {m}: dimensions apply to aws:num-messages-sent, aws:num-messages-received, \
                 aws:message-byte-size, aws:num-authorization-failures and aws:source-ip-address"
            ),
        ),
        _ => {}
    }
    let name = &d.dimension_name;
    if !is_valid_name(name) {
        errors.invalid(format!("{path}.dimensionName"), NAME_RULE);
    } else if !defs.dimensions.contains(name) {
        errors.invalid(format!("{path}.dimensionName"), format!("dimension {name:?} is not defined"));
    }
    let operator = match d.operator.as_deref() {
        None => DimensionOperator::In,
        Some(s) => DimensionOperator::parse(s).unwrap_or_else(|| {
            errors.invalid(format!("{path}.operator"), format!("must be IN or NOT_IN, found {s:?}"));
            DimensionOperator::In
        }),
    };
    (errors.0.len() == before).then(|| MetricDimension { name: name.clone(), operator })
}

fn compile_criteria(
    c: &aws::BehaviorCriteria,
    metric: Option<&Metric>,
    path: &str,
    errors: &mut Errors,
) -> Option<Criteria> {
    let mut unsupported = false;
    if c.statistical_threshold.is_some() {
        errors.not_supported(
            format!("{path}.statisticalThreshold"),
            "statistical thresholds are not supported yet; give a static value instead",
        );
        unsupported = true;
    }
    if c.ml_detection_config.is_some() {
        errors.not_supported(
            format!("{path}.mlDetectionConfig"),
            "ML Detect is not supported yet; give a comparisonOperator and a static value instead",
        );
        unsupported = true;
    }
    if unsupported {
        return None;
    }
    let consecutive = |n: Option<i64>, member: &str, errors: &mut Errors| match n {
        None => DEFAULT_CONSECUTIVE_DATAPOINTS,
        Some(n @ 1..=10) => n as u8,
        Some(n) => {
            errors.invalid(format!("{path}.{member}"), format!("must be 1 to 10, found {n}"));
            DEFAULT_CONSECUTIVE_DATAPOINTS
        }
    };
    let consecutive_to_alarm =
        consecutive(c.consecutive_datapoints_to_alarm, "consecutiveDatapointsToAlarm", errors);
    let consecutive_to_clear =
        consecutive(c.consecutive_datapoints_to_clear, "consecutiveDatapointsToClear", errors);
    let duration_seconds =
        compile_duration(c.duration_seconds, metric, &format!("{path}.durationSeconds"), errors);

    let op_path = format!("{path}.comparisonOperator");
    let operator = match c.comparison_operator.as_deref() {
        None => {
            errors.invalid(&op_path, "missing");
            None
        }
        Some(s) => {
            let op = ComparisonOperator::parse(s);
            if op.is_none() {
                errors.invalid(
                    &op_path,
                    format!("unknown operator {s:?}; expected one of {}", list(&ComparisonOperator::ALL)),
                );
            }
            op
        }
    };
    let condition = match (operator, metric) {
        (Some(op), Some(metric)) if !metric.operators().contains(&op) => {
            errors.invalid(
                &op_path,
                format!("{op} is not allowed for {metric}; use {}", list(metric.operators())),
            );
            None
        }
        (Some(op), Some(metric)) => match &c.value {
            None => {
                errors.invalid(
                    format!("{path}.value"),
                    format!("missing; {op} needs value.{}", metric.kind().value_field()),
                );
                None
            }
            Some(value) => compile_condition(op, metric.kind(), value, &format!("{path}.value"), errors),
        },
        _ => None,
    };
    Some(Criteria { condition: condition?, duration_seconds, consecutive_to_alarm, consecutive_to_clear })
}

fn compile_duration(
    seconds: Option<i64>,
    metric: Option<&Metric>,
    path: &str,
    errors: &mut Errors,
) -> Option<u32> {
    let seconds = seconds?;
    match metric {
        Some(m) if !m.takes_duration() => {
            let why = if m.kind().is_list() { " (a set metric)" } else { "" };
            errors.invalid(path, format!("not allowed for {m}{why}"));
            return None;
        }
        _ => {}
    }
    match DURATIONS_SECONDS.into_iter().find(|d| i64::from(*d) == seconds) {
        Some(d) => Some(d),
        None => {
            errors.invalid(path, format!("must be 300, 600, 900, 1800 or 3600, found {seconds}"));
            None
        }
    }
}

/// Builds the condition from the one `value` field that `op` compares for metrics of `kind`
/// (the pair is already known to be allowed).
fn compile_condition(
    op: ComparisonOperator,
    kind: MetricKind,
    value: &MetricValue,
    path: &str,
    errors: &mut Errors,
) -> Option<Condition> {
    let field = kind.value_field();
    let before = errors.0.len();
    for other in value.present_fields() {
        if other != field {
            errors.invalid(
                format!("{path}.{other}"),
                format!("not used by {op}, which compares value.{field}"),
            );
        }
    }
    let missing = |errors: &mut Errors| errors.invalid(path, format!("{op} needs value.{field}"));
    let condition = match kind {
        MetricKind::Counter | MetricKind::Gauge => match value.count {
            Some(c) => Some(Condition::Count(op.order()?, c)),
            None => {
                missing(errors);
                None
            }
        },
        MetricKind::Number => match value.number {
            Some(n) if n.is_finite() => Some(Condition::Number(op.order()?, n)),
            Some(n) => {
                errors.invalid(format!("{path}.number"), format!("must be a finite number, found {n}"));
                None
            }
            None => {
                missing(errors);
                None
            }
        },
        MetricKind::PortSet => match &value.ports {
            Some(ports) => {
                let mut ports = ports.clone();
                ports.sort_unstable();
                ports.dedup();
                Some(Condition::Ports(op.set_op()?, ports))
            }
            None => {
                missing(errors);
                None
            }
        },
        MetricKind::CidrSet => match &value.cidrs {
            Some(cidrs) => {
                let mut set: Vec<Cidr> = Vec::with_capacity(cidrs.len());
                for (i, text) in cidrs.iter().enumerate() {
                    match text.parse::<Cidr>() {
                        Ok(c) if !set.contains(&c) => set.push(c),
                        Ok(_) => {}
                        Err(e) => errors.invalid(format!("{path}.cidrs[{i}]"), e.to_string()),
                    }
                }
                Some(Condition::Cidrs(op.set_op()?, set))
            }
            None => {
                missing(errors);
                None
            }
        },
        MetricKind::NumberSet => match &value.numbers {
            Some(numbers) => {
                for (i, n) in numbers.iter().enumerate() {
                    if !n.is_finite() {
                        errors.invalid(
                            format!("{path}.numbers[{i}]"),
                            format!("must be a finite number, found {n}"),
                        );
                    }
                }
                let mut set: Vec<f64> = numbers.iter().copied().map(normalize).collect();
                set.sort_unstable_by(f64::total_cmp);
                set.dedup();
                Some(Condition::Numbers(op.set_op()?, set))
            }
            None => {
                missing(errors);
                None
            }
        },
        MetricKind::StringSet => match &value.strings {
            Some(strings) => {
                let mut set = strings.clone();
                set.sort_unstable();
                set.dedup();
                Some(Condition::Strings(op.set_op()?, set))
            }
            None => {
                missing(errors);
                None
            }
        },
    };
    if errors.0.len() != before {
        return None;
    }
    condition
}

/// `a, b or c`.
fn list(ops: &[ComparisonOperator]) -> String {
    let names: Vec<&str> = ops.iter().map(|o| o.as_str()).collect();
    match names.split_last() {
        None => String::new(),
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}
