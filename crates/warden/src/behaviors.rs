//! AWS's `Behavior` and `MetricValue` JSON, to and from `warden_detect`'s plain types, which the
//! rule language ([`warden_detect::rule`]) reads and writes.
//!
//! Reading is lenient: a member of the wrong JSON type is left out rather than failing the
//! command, because the server only stores behaviors it could compile, and `profiles show` must
//! print what it can of anything else. The rule formatter then says what it cannot express.

use serde_json::{Map, Value, json};
use warden_detect::{MetricValue, aws};

/// A behavior as the API's JSON, with only the members that are set.
pub fn to_json(b: &aws::Behavior) -> Value {
    let mut out = Map::new();
    out.insert("name".into(), json!(b.name));
    if let Some(metric) = &b.metric {
        out.insert("metric".into(), json!(metric));
    }
    if let Some(d) = &b.metric_dimension {
        let mut dimension = json!({ "dimensionName": d.dimension_name });
        if let Some(op) = &d.operator {
            dimension["operator"] = json!(op);
        }
        out.insert("metricDimension".into(), dimension);
    }
    if let Some(c) = &b.criteria {
        let mut criteria = Map::new();
        let mut put = |key: &str, value: Option<Value>| {
            if let Some(value) = value {
                criteria.insert(key.to_owned(), value);
            }
        };
        put("comparisonOperator", c.comparison_operator.as_ref().map(|o| json!(o)));
        put("value", c.value.as_ref().map(value_to_json));
        put("durationSeconds", c.duration_seconds.map(|n| json!(n)));
        put("consecutiveDatapointsToAlarm", c.consecutive_datapoints_to_alarm.map(|n| json!(n)));
        put("consecutiveDatapointsToClear", c.consecutive_datapoints_to_clear.map(|n| json!(n)));
        put(
            "statisticalThreshold",
            c.statistical_threshold.as_ref().map(|t| match &t.statistic {
                Some(s) => json!({ "statistic": s }),
                None => json!({}),
            }),
        );
        put(
            "mlDetectionConfig",
            c.ml_detection_config.as_ref().map(|m| match &m.confidence_level {
                Some(l) => json!({ "confidenceLevel": l }),
                None => json!({}),
            }),
        );
        out.insert("criteria".into(), Value::Object(criteria));
    }
    if let Some(s) = b.suppress_alerts {
        out.insert("suppressAlerts".into(), json!(s));
    }
    if let Some(e) = b.export_metric {
        out.insert("exportMetric".into(), json!(e));
    }
    Value::Object(out)
}

/// A behavior from the API's JSON.
pub fn from_json(v: &Value) -> aws::Behavior {
    let string = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
    aws::Behavior {
        name: string(v, "name").unwrap_or_default(),
        metric: string(v, "metric"),
        metric_dimension: v.get("metricDimension").filter(|d| d.is_object()).map(|d| aws::MetricDimension {
            dimension_name: string(d, "dimensionName").unwrap_or_default(),
            operator: string(d, "operator"),
        }),
        criteria: v.get("criteria").filter(|c| c.is_object()).map(|c| aws::BehaviorCriteria {
            comparison_operator: string(c, "comparisonOperator"),
            value: c.get("value").filter(|v| v.is_object()).map(value_from_json),
            duration_seconds: c.get("durationSeconds").and_then(Value::as_i64),
            consecutive_datapoints_to_alarm: c.get("consecutiveDatapointsToAlarm").and_then(Value::as_i64),
            consecutive_datapoints_to_clear: c.get("consecutiveDatapointsToClear").and_then(Value::as_i64),
            statistical_threshold: c
                .get("statisticalThreshold")
                .map(|t| aws::StatisticalThreshold { statistic: string(t, "statistic") }),
            ml_detection_config: c.get("mlDetectionConfig").map(|m| aws::MachineLearningDetectionConfig {
                confidence_level: string(m, "confidenceLevel"),
            }),
        }),
        suppress_alerts: v.get("suppressAlerts").and_then(Value::as_bool),
        export_metric: v.get("exportMetric").and_then(Value::as_bool),
    }
}

/// AWS `MetricValue` JSON, with only the fields that are set.
pub fn value_to_json(v: &MetricValue) -> Value {
    let mut out = Map::new();
    let MetricValue { count, number, numbers, strings, ports, cidrs } = v;
    if let Some(c) = count {
        out.insert("count".into(), json!(c));
    }
    if let Some(n) = number {
        out.insert("number".into(), json!(n));
    }
    if let Some(n) = numbers {
        out.insert("numbers".into(), json!(n));
    }
    if let Some(s) = strings {
        out.insert("strings".into(), json!(s));
    }
    if let Some(p) = ports {
        out.insert("ports".into(), json!(p));
    }
    if let Some(c) = cidrs {
        out.insert("cidrs".into(), json!(c));
    }
    Value::Object(out)
}

/// AWS `MetricValue` from JSON; elements of the wrong type are left out.
pub fn value_from_json(v: &Value) -> MetricValue {
    fn list<T>(v: &Value, key: &str, item: impl Fn(&Value) -> Option<T>) -> Option<Vec<T>> {
        v.get(key).and_then(Value::as_array).map(|items| items.iter().filter_map(item).collect())
    }
    MetricValue {
        count: v.get("count").and_then(Value::as_u64),
        number: v.get("number").and_then(Value::as_f64),
        numbers: list(v, "numbers", Value::as_f64),
        strings: list(v, "strings", |s| s.as_str().map(str::to_owned)),
        ports: list(v, "ports", |p| p.as_u64().and_then(|p| u16::try_from(p).ok())),
        cidrs: list(v, "cidrs", |s| s.as_str().map(str::to_owned)),
    }
}

/// A `MetricValue` as rules write it (`54`, `{22, 443}`), for tables; `-` when absent.
pub fn value_text(v: Option<&Value>) -> String {
    match v {
        Some(v) if v.is_object() => warden_detect::rule::format_value(&value_from_json(v)),
        _ => "-".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaviors_survive_json() {
        let text = json!({
            "name": "AuthFail",
            "metric": "aws:num-authorization-failures",
            "metricDimension": { "dimensionName": "auth", "operator": "NOT_IN" },
            "criteria": {
                "comparisonOperator": "less-than",
                "value": { "count": 10 },
                "durationSeconds": 300,
                "consecutiveDatapointsToAlarm": 2,
                "consecutiveDatapointsToClear": 3,
            },
            "suppressAlerts": true,
            "exportMetric": false,
        });
        assert_eq!(to_json(&from_json(&text)), text);
        let stat = json!({
            "name": "p90",
            "metric": "aws:all-bytes-out",
            "criteria": { "comparisonOperator": "less-than", "statisticalThreshold": { "statistic": "p90" } },
        });
        assert_eq!(to_json(&from_json(&stat)), stat);
        let value = json!({ "numbers": [1.5, -2.0], "strings": ["a"], "ports": [22], "cidrs": ["::1"], "number": 0.5 });
        assert_eq!(value_to_json(&value_from_json(&value)), value);
        assert_eq!(value_text(Some(&json!({ "ports": [22, 443] }))), "{22, 443}");
        assert_eq!(value_text(None), "-");
    }
}
