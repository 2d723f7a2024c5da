//! The metric catalogue (spec §3): every `aws:` metric with how its datapoints are evaluated,
//! which operators and `value` field its behaviors use, and whether it takes `durationSeconds`
//! or a `TOPIC_FILTER` dimension; plus the four custom metric types (spec §1.5).

use std::fmt;

use crate::criteria::ComparisonOperator;

/// The `aws:` metrics of the catalogue, device-side (§3.1) and cloud-side (§3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AwsMetric {
    AllBytesIn,
    AllBytesOut,
    AllPacketsIn,
    AllPacketsOut,
    NumListeningTcpPorts,
    NumListeningUdpPorts,
    NumEstablishedTcpConnections,
    ListeningTcpPorts,
    ListeningUdpPorts,
    DestinationIpAddresses,
    MessageByteSize,
    NumMessagesSent,
    NumMessagesReceived,
    NumAuthorizationFailures,
    SourceIpAddress,
    NumConnectionAttempts,
    NumDisconnects,
    DisconnectDuration,
}

/// How datapoints of a metric become the value that a behavior's criteria are checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    /// An amount per reporting period (`value.count`), summed over `durationSeconds`: bytes,
    /// packets, messages, authorization failures, connection attempts, disconnects.
    Counter,
    /// A count measured at one instant (`value.count`); the latest datapoint is evaluated:
    /// listening port and connection counts, message size, disconnect duration.
    Gauge,
    /// A custom `number` metric (`value.number`); the latest datapoint.
    Number,
    /// A set of ports (`value.ports`); the latest datapoint.
    PortSet,
    /// A set of addresses (`value.cidrs`); the latest datapoint.
    CidrSet,
    /// A custom `number-list` metric (`value.numbers`); the latest datapoint.
    NumberSet,
    /// A custom `string-list` metric (`value.strings`); the latest datapoint.
    StringSet,
}

impl MetricKind {
    /// The list kinds take no `durationSeconds` (AWS API doc of `durationSeconds`).
    pub fn is_list(self) -> bool {
        matches!(
            self,
            MetricKind::PortSet | MetricKind::CidrSet | MetricKind::NumberSet | MetricKind::StringSet
        )
    }

    /// The operators behaviors on metrics of this kind may use (spec §3 and §1.5).
    pub fn operators(self) -> &'static [ComparisonOperator] {
        use ComparisonOperator::*;
        match self {
            MetricKind::Counter | MetricKind::Gauge | MetricKind::Number => {
                &[LessThan, LessThanEquals, GreaterThan, GreaterThanEquals]
            }
            MetricKind::PortSet => &[InPortSet, NotInPortSet],
            MetricKind::CidrSet => &[InCidrSet, NotInCidrSet],
            MetricKind::NumberSet | MetricKind::StringSet => &[InSet, NotInSet],
        }
    }

    /// The `MetricValue` field that thresholds and datapoints of this kind use.
    pub fn value_field(self) -> &'static str {
        match self {
            MetricKind::Counter | MetricKind::Gauge => "count",
            MetricKind::Number => "number",
            MetricKind::PortSet => "ports",
            MetricKind::CidrSet => "cidrs",
            MetricKind::NumberSet => "numbers",
            MetricKind::StringSet => "strings",
        }
    }
}

impl AwsMetric {
    pub const ALL: [AwsMetric; 18] = [
        AwsMetric::AllBytesIn,
        AwsMetric::AllBytesOut,
        AwsMetric::AllPacketsIn,
        AwsMetric::AllPacketsOut,
        AwsMetric::NumListeningTcpPorts,
        AwsMetric::NumListeningUdpPorts,
        AwsMetric::NumEstablishedTcpConnections,
        AwsMetric::ListeningTcpPorts,
        AwsMetric::ListeningUdpPorts,
        AwsMetric::DestinationIpAddresses,
        AwsMetric::MessageByteSize,
        AwsMetric::NumMessagesSent,
        AwsMetric::NumMessagesReceived,
        AwsMetric::NumAuthorizationFailures,
        AwsMetric::SourceIpAddress,
        AwsMetric::NumConnectionAttempts,
        AwsMetric::NumDisconnects,
        AwsMetric::DisconnectDuration,
    ];

    /// The AWS name, e.g. `aws:all-bytes-out`.
    pub fn as_str(self) -> &'static str {
        match self {
            AwsMetric::AllBytesIn => "aws:all-bytes-in",
            AwsMetric::AllBytesOut => "aws:all-bytes-out",
            AwsMetric::AllPacketsIn => "aws:all-packets-in",
            AwsMetric::AllPacketsOut => "aws:all-packets-out",
            AwsMetric::NumListeningTcpPorts => "aws:num-listening-tcp-ports",
            AwsMetric::NumListeningUdpPorts => "aws:num-listening-udp-ports",
            AwsMetric::NumEstablishedTcpConnections => "aws:num-established-tcp-connections",
            AwsMetric::ListeningTcpPorts => "aws:listening-tcp-ports",
            AwsMetric::ListeningUdpPorts => "aws:listening-udp-ports",
            AwsMetric::DestinationIpAddresses => "aws:destination-ip-addresses",
            AwsMetric::MessageByteSize => "aws:message-byte-size",
            AwsMetric::NumMessagesSent => "aws:num-messages-sent",
            AwsMetric::NumMessagesReceived => "aws:num-messages-received",
            AwsMetric::NumAuthorizationFailures => "aws:num-authorization-failures",
            AwsMetric::SourceIpAddress => "aws:source-ip-address",
            AwsMetric::NumConnectionAttempts => "aws:num-connection-attempts",
            AwsMetric::NumDisconnects => "aws:num-disconnects",
            AwsMetric::DisconnectDuration => "aws:disconnect-duration",
        }
    }

    pub fn parse(name: &str) -> Option<AwsMetric> {
        AwsMetric::ALL.into_iter().find(|m| m.as_str() == name)
    }

    pub fn kind(self) -> MetricKind {
        use AwsMetric::*;
        match self {
            AllBytesIn
            | AllBytesOut
            | AllPacketsIn
            | AllPacketsOut
            | NumMessagesSent
            | NumMessagesReceived
            | NumAuthorizationFailures
            | NumConnectionAttempts
            | NumDisconnects => MetricKind::Counter,
            NumListeningTcpPorts
            | NumListeningUdpPorts
            | NumEstablishedTcpConnections
            | MessageByteSize
            | DisconnectDuration => MetricKind::Gauge,
            ListeningTcpPorts | ListeningUdpPorts => MetricKind::PortSet,
            DestinationIpAddresses | SourceIpAddress => MetricKind::CidrSet,
        }
    }

    /// The operators this metric allows. Its kind's, except `aws:disconnect-duration`: only
    /// "disconnected for less than N minutes is normal" makes sense there, and a validator of
    /// AWS profiles allows only `less-than` and `less-than-equals` (spec §3.2, UNVERIFIED).
    pub fn operators(self) -> &'static [ComparisonOperator] {
        match self {
            AwsMetric::DisconnectDuration => {
                &[ComparisonOperator::LessThan, ComparisonOperator::LessThanEquals]
            }
            other => other.kind().operators(),
        }
    }

    /// Whether `durationSeconds` may be given. Lists never (AWS API); `aws:disconnect-duration`
    /// neither, as it is already a duration measured by the server (UNVERIFIED in AWS).
    pub fn takes_duration(self) -> bool {
        !self.kind().is_list() && self != AwsMetric::DisconnectDuration
    }

    /// Whether a `TOPIC_FILTER` dimension may narrow it (spec §3.3, DG-DIM).
    pub fn takes_dimension(self) -> bool {
        matches!(
            self,
            AwsMetric::NumMessagesSent
                | AwsMetric::NumMessagesReceived
                | AwsMetric::MessageByteSize
                | AwsMetric::SourceIpAddress
                | AwsMetric::NumAuthorizationFailures
        )
    }
}

impl fmt::Display for AwsMetric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A custom metric's `metricType` (AWS `CustomMetricType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CustomMetricType {
    Number,
    NumberList,
    StringList,
    IpAddressList,
}

impl CustomMetricType {
    pub fn as_str(self) -> &'static str {
        match self {
            CustomMetricType::Number => "number",
            CustomMetricType::NumberList => "number-list",
            CustomMetricType::StringList => "string-list",
            CustomMetricType::IpAddressList => "ip-address-list",
        }
    }

    pub fn parse(s: &str) -> Option<CustomMetricType> {
        [
            CustomMetricType::Number,
            CustomMetricType::NumberList,
            CustomMetricType::StringList,
            CustomMetricType::IpAddressList,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }

    pub fn kind(self) -> MetricKind {
        match self {
            CustomMetricType::Number => MetricKind::Number,
            CustomMetricType::NumberList => MetricKind::NumberSet,
            CustomMetricType::StringList => MetricKind::StringSet,
            CustomMetricType::IpAddressList => MetricKind::CidrSet,
        }
    }
}

impl fmt::Display for CustomMetricType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a behavior measures: a catalogue metric or a defined custom metric.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Metric {
    Aws(AwsMetric),
    Custom { name: String, metric_type: CustomMetricType },
}

impl Metric {
    /// The name datapoints carry.
    pub fn name(&self) -> &str {
        match self {
            Metric::Aws(m) => m.as_str(),
            Metric::Custom { name, .. } => name,
        }
    }

    pub fn kind(&self) -> MetricKind {
        match self {
            Metric::Aws(m) => m.kind(),
            Metric::Custom { metric_type, .. } => metric_type.kind(),
        }
    }

    pub fn operators(&self) -> &'static [ComparisonOperator] {
        match self {
            Metric::Aws(m) => m.operators(),
            Metric::Custom { metric_type, .. } => metric_type.kind().operators(),
        }
    }

    /// Custom `number` metrics may carry `durationSeconds` (it does not change a static
    /// evaluation of the latest value); custom lists may not.
    pub fn takes_duration(&self) -> bool {
        match self {
            Metric::Aws(m) => m.takes_duration(),
            Metric::Custom { metric_type, .. } => !metric_type.kind().is_list(),
        }
    }

    /// Dimensions cannot be used with custom metrics (AWS API).
    pub fn takes_dimension(&self) -> bool {
        matches!(self, Metric::Aws(m) if m.takes_dimension())
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
