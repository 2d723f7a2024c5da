//! AWS's `MetricValue`: the one shape used both for a behavior's threshold (`criteria.value`) and
//! for an observed datapoint (`ListMetricValues`, `metricValue` of a violation).
//!
//! It is plain data with the AWS member names, so the server maps JSON to it field by field; the
//! engine never sees JSON. Exactly one field is meant to be set, chosen by the metric's type; the
//! profile compiler enforces that for thresholds, and evaluation ignores a datapoint that lacks
//! the field its behavior compares.

/// A metric value in AWS's `MetricValue` shape (spec §4.2). With the `serde` feature it
/// serialises with the AWS member names and without the unset ones, e.g. `{"count":1024}`.
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct MetricValue {
    /// `aws:` numeric metrics: a non-negative integer.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub count: Option<u64>,
    /// Custom `number` metrics.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub number: Option<f64>,
    /// Custom `number-list` metrics.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub numbers: Option<Vec<f64>>,
    /// Custom `string-list` metrics.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub strings: Option<Vec<String>>,
    /// `aws:listening-tcp-ports`, `aws:listening-udp-ports`.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub ports: Option<Vec<u16>>,
    /// IP metrics and custom `ip-address-list` metrics: addresses or CIDR blocks as text.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub cidrs: Option<Vec<String>>,
}

impl MetricValue {
    pub fn count(count: u64) -> Self {
        MetricValue { count: Some(count), ..MetricValue::default() }
    }

    pub fn number(number: f64) -> Self {
        MetricValue { number: Some(number), ..MetricValue::default() }
    }

    pub fn numbers(numbers: Vec<f64>) -> Self {
        MetricValue { numbers: Some(numbers), ..MetricValue::default() }
    }

    pub fn strings<S: Into<String>>(strings: impl IntoIterator<Item = S>) -> Self {
        MetricValue { strings: Some(strings.into_iter().map(Into::into).collect()), ..MetricValue::default() }
    }

    pub fn ports(ports: Vec<u16>) -> Self {
        MetricValue { ports: Some(ports), ..MetricValue::default() }
    }

    pub fn cidrs<S: Into<String>>(cidrs: impl IntoIterator<Item = S>) -> Self {
        MetricValue { cidrs: Some(cidrs.into_iter().map(Into::into).collect()), ..MetricValue::default() }
    }

    /// The AWS names of the fields that are set, in declaration order; used to name surplus
    /// fields in error messages.
    pub(crate) fn present_fields(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        let MetricValue { count, number, numbers, strings, ports, cidrs } = self;
        for (set, name) in [
            (count.is_some(), "count"),
            (number.is_some(), "number"),
            (numbers.is_some(), "numbers"),
            (strings.is_some(), "strings"),
            (ports.is_some(), "ports"),
            (cidrs.is_some(), "cidrs"),
        ] {
            if set {
                out.push(name);
            }
        }
        out
    }
}
