//! Device Defender Detect's rules engine: security profiles and their behaviors, evaluated
//! against metric datapoints, raising and ending violations.
//!
//! This crate owns the metric catalogue ([`AwsMetric`], custom metric types), the compilation of
//! AWS-shaped profiles ([`aws`]) into checked ones ([`compile`]), the ten comparison operators
//! with their set semantics ([`Condition`], [`Cidr`]), counter windows, the consecutive-datapoint
//! alarm state machine and the [`ViolationEvent`]s of the [`Engine`].
//!
//! It is pure: no I/O, no clock, no randomness, no JSON or MQTT. Times are arguments,
//! violation ids come from the caller, and the server maps JSON to [`aws`] types and stores
//! what the engine returns. The same inputs always give the same events.
//!
//! ```
//! use warden_detect::{aws, compile, Datapoint, Definitions, Engine, MetricValue, ViolationId};
//!
//! // "Alarm when more than 35,000 bytes go out in 5 minutes": criteria describe normal.
//! let profile = aws::SecurityProfile {
//!     name: "OutboundBytesSecProfile".into(),
//!     behaviors: vec![aws::Behavior {
//!         name: "OutboundBytesBehavior".into(),
//!         metric: Some("aws:all-bytes-out".into()),
//!         criteria: Some(aws::BehaviorCriteria {
//!             comparison_operator: Some("less-than-equals".into()),
//!             value: Some(MetricValue::count(35_000)),
//!             duration_seconds: Some(300),
//!             ..Default::default()
//!         }),
//!         ..Default::default()
//!     }],
//! };
//! let mut engine = Engine::default();
//! engine.put_profile(compile(&profile, &Definitions::default()).unwrap(), 0);
//!
//! let mut next = 0u128;
//! let mut ids = || { next += 1; ViolationId::from_u128(next) };
//! let report = |at_ms, bytes| Datapoint {
//!     metric: "aws:all-bytes-out".into(),
//!     dimension: None,
//!     timestamp_ms: at_ms,
//!     value: MetricValue::count(bytes),
//! };
//! let events = engine.observe("dev-1", &["OutboundBytesSecProfile"], &[report(300_000, 90_000)], 300_000, &mut ids);
//! assert_eq!(events[0].kind.as_str(), "in-alarm");
//! assert_eq!(events[0].violation_id.to_string(), "00000000000000000000000000000001");
//! let events = engine.observe("dev-1", &["OutboundBytesSecProfile"], &[report(600_000, 1_000)], 600_000, &mut ids);
//! assert_eq!(events[0].kind.as_str(), "alarm-cleared");
//! ```

pub mod aws;
mod cidr;
mod compile;
mod criteria;
mod engine;
mod metric;
mod profile;
pub mod rule;
mod state;
mod value;

pub use cidr::{Cidr, CidrError};
pub use compile::{Definitions, MAX_BEHAVIORS, ProfileError, ProfileErrors, compile, compile_behaviors};
pub use criteria::{ComparisonOperator, Condition, Criteria, DEFAULT_CONSECUTIVE_DATAPOINTS, Order, SetOp};
pub use engine::{
    ActiveViolation, Datapoint, Engine, EngineConfig, InvalidViolationId, InvalidationReason, RestoreError,
    RestoredAlarm, StateSize, ViolationEvent, ViolationEventKind, ViolationId, ViolationIds,
};
pub use metric::{AwsMetric, CustomMetricType, Metric, MetricKind};
pub use profile::{
    BASE_PERIOD_SECONDS, Behavior, DURATIONS_SECONDS, DimensionOperator, MetricDimension, SecurityProfile,
};
pub use value::MetricValue;
