//! Security profiles as AWS shapes them (spec §4.2): plain data mirroring the members of the
//! JSON bodies of `CreateSecurityProfile` and `ValidateSecurityProfileBehaviors`, one Rust field
//! per JSON member (`comparisonOperator` is `comparison_operator`).
//!
//! The server maps JSON to these types and nothing more; all checking happens in
//! [`crate::compile`], so that every problem is reported with the path of the member, and no
//! rule lives in a JSON mapping. Enums stay strings and integers stay wide (`i64`) for the same
//! reason: `"durationSeconds": -5` must reach the compiler to be named, not fail in a decoder.

use crate::value::MetricValue;

/// The parts of a security profile that detection uses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SecurityProfile {
    /// `securityProfileName`.
    pub name: String,
    pub behaviors: Vec<Behavior>,
}

/// AWS `Behavior`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Behavior {
    pub name: String,
    pub metric: Option<String>,
    pub metric_dimension: Option<MetricDimension>,
    pub criteria: Option<BehaviorCriteria>,
    pub suppress_alerts: Option<bool>,
    pub export_metric: Option<bool>,
}

/// AWS `MetricDimension`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricDimension {
    pub dimension_name: String,
    /// `IN` or `NOT_IN`; `None` means `IN`.
    pub operator: Option<String>,
}

/// AWS `BehaviorCriteria`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BehaviorCriteria {
    pub comparison_operator: Option<String>,
    pub value: Option<MetricValue>,
    pub duration_seconds: Option<i64>,
    pub consecutive_datapoints_to_alarm: Option<i64>,
    pub consecutive_datapoints_to_clear: Option<i64>,
    pub statistical_threshold: Option<StatisticalThreshold>,
    pub ml_detection_config: Option<MachineLearningDetectionConfig>,
}

/// AWS `StatisticalThreshold`. Not supported yet: its presence is an error, never ignored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatisticalThreshold {
    pub statistic: Option<String>,
}

/// AWS `MachineLearningDetectionConfig`. Not supported yet: its presence is an error.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MachineLearningDetectionConfig {
    pub confidence_level: Option<String>,
}
