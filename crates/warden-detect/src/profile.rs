//! The compiled security profile: behaviors whose metric, dimension and criteria have been
//! checked against the catalogue, so evaluation never meets an operator/value mismatch.
//! Built only by [`crate::compile`] from the AWS-shaped input of [`crate::aws`].

use std::fmt;

use crate::criteria::Criteria;
use crate::metric::{Metric, MetricKind};
use crate::value::MetricValue;

/// The period that AWS's `durationSeconds` values are multiples of: one report every 5 minutes.
/// A window of `durationSeconds` spans `durationSeconds / 300` reporting periods, whatever the
/// configured period is, so a demo with 2 s periods reads "300 s" as "one period".
pub const BASE_PERIOD_SECONDS: u32 = 300;

/// The `durationSeconds` values AWS accepts (DG-DSM, DG-CSM "Duration").
pub const DURATIONS_SECONDS: [u32; 5] = [300, 600, 900, 1800, 3600];

/// A security profile as the engine evaluates it.
#[derive(Debug, Clone, PartialEq)]
pub struct SecurityProfile {
    pub name: String,
    pub behaviors: Vec<Behavior>,
}

/// One behavior: what is measured, and what is normal for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Behavior {
    pub name: String,
    pub metric: Metric,
    /// Narrows a message metric to the topics of a `TOPIC_FILTER` dimension. Datapoints carry
    /// the same dimension; the server computes one series per dimension in use.
    pub dimension: Option<MetricDimension>,
    pub criteria: Criteria,
    /// Violations are still raised and kept, but no alert is sent for them (spec §5.7).
    pub suppress_alerts: bool,
    /// Carried for the server's metrics export; the engine does not use it.
    pub export_metric: bool,
}

impl Behavior {
    /// How many reporting periods the evaluated value covers: `durationSeconds / 300` for
    /// counters (one period without `durationSeconds`), 1 for everything else, which is judged
    /// on its latest datapoint.
    pub fn window_periods(&self) -> usize {
        match self.metric.kind() {
            MetricKind::Counter => {
                let seconds = self.criteria.duration_seconds.unwrap_or(BASE_PERIOD_SECONDS);
                (seconds / BASE_PERIOD_SECONDS).max(1) as usize
            }
            _ => 1,
        }
    }

    /// Whether a datapoint belongs to this behavior's series.
    pub fn measures(&self, metric: &str, dimension: Option<&MetricDimension>) -> bool {
        self.metric.name() == metric && self.dimension.as_ref() == dimension
    }

    /// Checks one value against the criteria, as for a single datapoint (no window): see
    /// [`crate::Condition::check`].
    pub fn check(&self, observed: &MetricValue) -> Option<bool> {
        self.criteria.condition.check(observed)
    }
}

/// A behavior's `metricDimension`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MetricDimension {
    pub name: String,
    pub operator: DimensionOperator,
}

/// `IN` counts messages whose topic matches one of the dimension's filters, `NOT_IN` those that
/// match none. AWS reads a missing operator as `IN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DimensionOperator {
    #[default]
    In,
    NotIn,
}

impl DimensionOperator {
    pub fn as_str(self) -> &'static str {
        match self {
            DimensionOperator::In => "IN",
            DimensionOperator::NotIn => "NOT_IN",
        }
    }

    pub fn parse(s: &str) -> Option<DimensionOperator> {
        match s {
            "IN" => Some(DimensionOperator::In),
            "NOT_IN" => Some(DimensionOperator::NotIn),
            _ => None,
        }
    }
}

impl fmt::Display for DimensionOperator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
