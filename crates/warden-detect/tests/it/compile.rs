//! Compiling AWS-shaped profiles: what is accepted, and the exact message for each refusal.

use crate::support::{behavior, compile_one, criteria, defs, profile_of};
use warden_detect::{
    AwsMetric, ComparisonOperator, Condition, DimensionOperator, MetricKind, MetricValue, Order,
    ProfileError, SetOp, aws, compile,
};

/// Checks that the behaviors are refused with exactly these messages, in order.
#[track_caller]
fn refused(behaviors: Vec<aws::Behavior>, expect: &[&str]) {
    let errors = profile_of("P", behaviors).expect_err("accepted").0;
    let got: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(got, expect);
}

/// A behavior with criteria `op value` on `metric`.
fn b(metric: &str, op: &str, value: MetricValue) -> aws::Behavior {
    behavior("B", metric, criteria(op, value))
}

/// The value a behavior on a metric of `kind` needs.
fn value_for(kind: MetricKind) -> MetricValue {
    match kind {
        MetricKind::Counter | MetricKind::Gauge => MetricValue::count(1),
        MetricKind::Number => MetricValue::number(1.0),
        MetricKind::PortSet => MetricValue::ports(vec![22]),
        MetricKind::CidrSet => MetricValue::cidrs(["10.0.0.0/8"]),
        MetricKind::NumberSet => MetricValue::numbers(vec![1.0]),
        MetricKind::StringSet => MetricValue::strings(["a"]),
    }
}

/// Every catalogue metric with every operator: accepted exactly for the operators of spec §3.
#[test]
fn operators_per_catalogue_metric() {
    use ComparisonOperator::*;
    let numeric = [LessThan, LessThanEquals, GreaterThan, GreaterThanEquals];
    for metric in AwsMetric::ALL {
        let allowed: &[ComparisonOperator] = match metric {
            AwsMetric::ListeningTcpPorts | AwsMetric::ListeningUdpPorts => &[InPortSet, NotInPortSet],
            AwsMetric::DestinationIpAddresses | AwsMetric::SourceIpAddress => &[InCidrSet, NotInCidrSet],
            AwsMetric::DisconnectDuration => &[LessThan, LessThanEquals],
            _ => &numeric,
        };
        for op in ComparisonOperator::ALL {
            let result = compile_one(b(metric.as_str(), op.as_str(), value_for(metric.kind())));
            assert_eq!(result.is_ok(), allowed.contains(&op), "{metric} {op}: {result:?}");
            if let Err(e) = result {
                let message = e.to_string();
                assert!(
                    message.starts_with(&format!(
                        "behaviors[0].criteria.comparisonOperator: {op} is not allowed for {metric}; use "
                    )),
                    "{message}"
                );
            }
        }
    }
}

#[test]
fn operators_per_custom_metric_type() {
    use ComparisonOperator::*;
    let cases: [(&str, &[ComparisonOperator], MetricKind); 4] = [
        ("battery_pct", &[LessThan, LessThanEquals, GreaterThan, GreaterThanEquals], MetricKind::Number),
        ("cpu_temps", &[InSet, NotInSet], MetricKind::NumberSet),
        ("daemons", &[InSet, NotInSet], MetricKind::StringSet),
        ("peers", &[InCidrSet, NotInCidrSet], MetricKind::CidrSet),
    ];
    for (metric, allowed, kind) in cases {
        for op in ComparisonOperator::ALL {
            let result = compile_one(b(metric, op.as_str(), value_for(kind)));
            assert_eq!(result.is_ok(), allowed.contains(&op), "{metric} {op}: {result:?}");
        }
    }
}

#[test]
fn compiled_form() {
    let c = compile_one(b("aws:all-bytes-out", "less-than-equals", MetricValue::count(35_000))).unwrap();
    assert_eq!(c.criteria.condition, Condition::Count(Order::LessThanEquals, 35_000));
    assert_eq!((c.criteria.consecutive_to_alarm, c.criteria.consecutive_to_clear), (1, 1));
    assert_eq!(c.criteria.duration_seconds, None);
    assert_eq!(c.window_periods(), 1);
    assert!(!c.suppress_alerts && !c.export_metric && c.dimension.is_none());

    let c =
        compile_one(b("aws:listening-tcp-ports", "not-in-port-set", MetricValue::ports(vec![8080, 22, 22])))
            .unwrap();
    assert_eq!(c.criteria.condition, Condition::Ports(SetOp::NotIn, vec![22, 8080]));
    assert_eq!(c.criteria.condition.operator(), ComparisonOperator::NotInPortSet);

    let c = compile_one(b("daemons", "in-set", MetricValue::strings(["b", "a", "b"]))).unwrap();
    assert_eq!(c.criteria.condition, Condition::Strings(SetOp::In, vec!["a".into(), "b".into()]));

    let c = compile_one(b("cpu_temps", "in-set", MetricValue::numbers(vec![2.0, -0.0, 0.0, 1.5]))).unwrap();
    assert_eq!(c.criteria.condition, Condition::Numbers(SetOp::In, vec![0.0, 1.5, 2.0]));

    let c = compile_one(b("peers", "in-cidr-set", MetricValue::cidrs(["10.1.0.0/8", "10.0.0.0/8", "::1"])))
        .unwrap();
    let Condition::Cidrs(SetOp::In, set) = &c.criteria.condition else { panic!("{c:?}") };
    assert_eq!(set.iter().map(ToString::to_string).collect::<Vec<_>>(), ["10.0.0.0/8", "::1/128"]);
}

#[test]
fn durations_and_consecutive_counts() {
    for (seconds, periods) in [(300, 1), (600, 2), (900, 3), (1800, 6), (3600, 12)] {
        let mut c = criteria("less-than", MetricValue::count(10));
        c.duration_seconds = Some(seconds);
        c.consecutive_datapoints_to_alarm = Some(10);
        c.consecutive_datapoints_to_clear = Some(1);
        let counter = compile_one(behavior("B", "aws:num-messages-sent", c.clone())).unwrap();
        assert_eq!(counter.window_periods(), periods);
        assert_eq!(counter.criteria.duration_seconds, Some(seconds as u32));
        assert_eq!(counter.criteria.consecutive_to_alarm, 10);
        // Gauges accept a duration (AWS lists one for them) and still judge the latest value.
        let gauge = compile_one(behavior("B", "aws:num-established-tcp-connections", c)).unwrap();
        assert_eq!(gauge.window_periods(), 1);
    }
    let mut c = criteria("greater-than", MetricValue::number(1.0));
    c.duration_seconds = Some(600);
    assert!(compile_one(behavior("B", "battery_pct", c)).is_ok());
}

#[test]
fn duration_refusals() {
    let with = |metric: &str, op: &str, value: MetricValue, seconds: i64| {
        let mut c = criteria(op, value);
        c.duration_seconds = Some(seconds);
        behavior("B", metric, c)
    };
    let count = MetricValue::count(1);
    for seconds in [0, -300, 299, 301, 450, 1200, 7200, i64::MAX] {
        refused(
            vec![with("aws:all-bytes-in", "less-than", count.clone(), seconds)],
            &[&format!(
                "behaviors[0].criteria.durationSeconds: must be 300, 600, 900, 1800 or 3600, found {seconds}"
            )],
        );
    }
    refused(
        vec![with("aws:listening-tcp-ports", "in-port-set", MetricValue::ports(vec![22]), 300)],
        &["behaviors[0].criteria.durationSeconds: not allowed for aws:listening-tcp-ports (a set metric)"],
    );
    refused(
        vec![with("aws:source-ip-address", "in-cidr-set", MetricValue::cidrs(["10.0.0.0/8"]), 300)],
        &["behaviors[0].criteria.durationSeconds: not allowed for aws:source-ip-address (a set metric)"],
    );
    refused(
        vec![with("daemons", "in-set", MetricValue::strings(["a"]), 300)],
        &["behaviors[0].criteria.durationSeconds: not allowed for daemons (a set metric)"],
    );
    refused(
        vec![with("aws:disconnect-duration", "less-than", count, 300)],
        &["behaviors[0].criteria.durationSeconds: not allowed for aws:disconnect-duration"],
    );
}

#[test]
fn consecutive_count_refusals() {
    let mut c = criteria("less-than", MetricValue::count(1));
    c.consecutive_datapoints_to_alarm = Some(0);
    c.consecutive_datapoints_to_clear = Some(11);
    refused(
        vec![behavior("B", "aws:num-disconnects", c)],
        &[
            "behaviors[0].criteria.consecutiveDatapointsToAlarm: must be 1 to 10, found 0",
            "behaviors[0].criteria.consecutiveDatapointsToClear: must be 1 to 10, found 11",
        ],
    );
}

#[test]
fn value_refusals() {
    refused(
        vec![b("aws:listening-tcp-ports", "in-port-set", MetricValue::count(22))],
        &[
            "behaviors[0].criteria.value.count: not used by in-port-set, which compares value.ports",
            "behaviors[0].criteria.value: in-port-set needs value.ports",
        ],
    );
    refused(
        vec![b("aws:all-bytes-out", "less-than", MetricValue::number(1.0))],
        &[
            "behaviors[0].criteria.value.number: not used by less-than, which compares value.count",
            "behaviors[0].criteria.value: less-than needs value.count",
        ],
    );
    refused(
        vec![b("battery_pct", "less-than", MetricValue::count(75))],
        &[
            "behaviors[0].criteria.value.count: not used by less-than, which compares value.number",
            "behaviors[0].criteria.value: less-than needs value.number",
        ],
    );
    let both = MetricValue { count: Some(1), ports: Some(vec![22]), ..Default::default() };
    refused(
        vec![b("aws:listening-udp-ports", "not-in-port-set", both)],
        &["behaviors[0].criteria.value.count: not used by not-in-port-set, which compares value.ports"],
    );
    refused(
        vec![b("aws:all-bytes-out", "less-than", MetricValue::default())],
        &["behaviors[0].criteria.value: less-than needs value.count"],
    );
    refused(
        vec![behavior(
            "B",
            "aws:all-bytes-out",
            aws::BehaviorCriteria { comparison_operator: Some("less-than".into()), ..Default::default() },
        )],
        &["behaviors[0].criteria.value: missing; less-than needs value.count"],
    );
    refused(
        vec![b("cpu_temps", "in-set", MetricValue::strings(["41"]))],
        &[
            "behaviors[0].criteria.value.strings: not used by in-set, which compares value.numbers",
            "behaviors[0].criteria.value: in-set needs value.numbers",
        ],
    );
    refused(
        vec![b(
            "aws:destination-ip-addresses",
            "in-cidr-set",
            MetricValue::cidrs(["10.0.0.0/8", "10.0.0/8", "::1/200"]),
        )],
        &[
            r#"behaviors[0].criteria.value.cidrs[1]: "10.0.0/8" is not an IP address or CIDR block"#,
            r#"behaviors[0].criteria.value.cidrs[2]: "::1/200" is not an IP address or CIDR block"#,
        ],
    );
    refused(
        vec![b("battery_pct", "less-than", MetricValue::number(f64::NAN))],
        &["behaviors[0].criteria.value.number: must be a finite number, found NaN"],
    );
    refused(
        vec![b("cpu_temps", "not-in-set", MetricValue::numbers(vec![1.0, f64::NEG_INFINITY]))],
        &["behaviors[0].criteria.value.numbers[1]: must be a finite number, found -inf"],
    );
}

#[test]
fn operator_refusals() {
    refused(
        vec![b("aws:all-bytes-out", "more-than", MetricValue::count(1))],
        &[
            "behaviors[0].criteria.comparisonOperator: unknown operator \"more-than\"; expected one of less-than, \
           less-than-equals, greater-than, greater-than-equals, in-cidr-set, not-in-cidr-set, in-port-set, \
           not-in-port-set, in-set or not-in-set",
        ],
    );
    refused(
        vec![b("aws:all-bytes-out", "in-port-set", MetricValue::ports(vec![22]))],
        &["behaviors[0].criteria.comparisonOperator: in-port-set is not allowed for aws:all-bytes-out; use \
           less-than, less-than-equals, greater-than or greater-than-equals"],
    );
    refused(
        vec![b("aws:disconnect-duration", "greater-than", MetricValue::count(5))],
        &[
            "behaviors[0].criteria.comparisonOperator: greater-than is not allowed for aws:disconnect-duration; use \
           less-than or less-than-equals",
        ],
    );
    refused(
        vec![b("peers", "in-set", MetricValue::cidrs(["10.0.0.1"]))],
        &[
            "behaviors[0].criteria.comparisonOperator: in-set is not allowed for peers; use in-cidr-set or not-in-cidr-set",
        ],
    );
    refused(
        vec![behavior(
            "B",
            "aws:all-bytes-out",
            aws::BehaviorCriteria { value: Some(MetricValue::count(1)), ..Default::default() },
        )],
        &["behaviors[0].criteria.comparisonOperator: missing"],
    );
}

#[test]
fn statistical_and_ml_behaviors_are_not_supported_yet() {
    let statistical = aws::BehaviorCriteria {
        comparison_operator: Some("less-than-equals".into()),
        statistical_threshold: Some(aws::StatisticalThreshold { statistic: Some("p90".into()) }),
        duration_seconds: Some(900),
        ..Default::default()
    };
    let ml = aws::BehaviorCriteria {
        ml_detection_config: Some(aws::MachineLearningDetectionConfig {
            confidence_level: Some("HIGH".into()),
        }),
        ..Default::default()
    };
    // Even alongside a valid static value, a statistical threshold is refused, not ignored.
    let mut with_value = statistical.clone();
    with_value.value = Some(MetricValue::count(1));
    let errors = profile_of(
        "P",
        vec![
            behavior("BytesOutP90", "aws:all-bytes-out", statistical),
            behavior("MsgSentML", "aws:num-messages-sent", ml),
            behavior("Both", "aws:all-bytes-in", with_value),
        ],
    )
    .unwrap_err()
    .0;
    assert!(errors.iter().all(|e| matches!(e, ProfileError::NotSupported { .. })), "{errors:?}");
    let got: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        [
            "behaviors[0].criteria.statisticalThreshold: statistical thresholds are not supported yet; give a static value instead",
            "behaviors[1].criteria.mlDetectionConfig: ML Detect is not supported yet; give a comparisonOperator and a static value instead",
            "behaviors[2].criteria.statisticalThreshold: statistical thresholds are not supported yet; give a static value instead",
        ]
    );
    assert_eq!(errors[1].path(), "behaviors[1].criteria.mlDetectionConfig");
}

#[test]
fn metric_refusals() {
    refused(
        vec![b("aws:source-ip-addresses", "in-cidr-set", MetricValue::cidrs(["10.0.0.1"]))],
        &[r#"behaviors[0].metric: unknown metric "aws:source-ip-addresses""#],
    );
    refused(
        vec![b("temperature", "less-than", MetricValue::number(1.0))],
        &[r#"behaviors[0].metric: custom metric "temperature" is not defined"#],
    );
    refused(
        vec![b("temp erature", "less-than", MetricValue::number(1.0))],
        &[
            r#"behaviors[0].metric: "temp erature" is not a metric name: must be 1 to 128 characters of a-z, A-Z, 0-9, ':', '_' and '-'"#,
        ],
    );
    refused(
        vec![aws::Behavior {
            name: "B".into(),
            criteria: Some(criteria("less-than", MetricValue::count(1))),
            ..Default::default()
        }],
        &["behaviors[0].metric: missing"],
    );
    refused(
        vec![aws::Behavior {
            name: "B".into(),
            metric: Some("aws:all-bytes-in".into()),
            ..Default::default()
        }],
        &["behaviors[0].criteria: missing"],
    );
}

#[test]
fn dimensions() {
    let with_dimension = |metric: &str, name: &str, operator: Option<&str>| {
        let mut x = b(metric, "less-than", MetricValue::count(10));
        x.metric_dimension = Some(aws::MetricDimension {
            dimension_name: name.to_owned(),
            operator: operator.map(str::to_owned),
        });
        x
    };
    for metric in [
        "aws:num-messages-sent",
        "aws:num-messages-received",
        "aws:message-byte-size",
        "aws:num-authorization-failures",
    ] {
        let c = compile_one(with_dimension(metric, "telemetry", None)).unwrap();
        let d = c.dimension.unwrap();
        assert_eq!((d.name.as_str(), d.operator), ("telemetry", DimensionOperator::In));
        let c = compile_one(with_dimension(metric, "telemetry", Some("NOT_IN"))).unwrap();
        assert_eq!(c.dimension.unwrap().operator, DimensionOperator::NotIn);
    }
    let mut source = b("aws:source-ip-address", "not-in-cidr-set", MetricValue::cidrs(["10.0.0.0/8"]));
    source.metric_dimension =
        Some(aws::MetricDimension { dimension_name: "telemetry".into(), operator: Some("IN".into()) });
    assert!(compile_one(source).is_ok());

    refused(
        vec![with_dimension("aws:all-bytes-out", "telemetry", None)],
        &[
            "behaviors[0].metricDimension: not allowed for aws:all-bytes-out: dimensions apply to aws:num-messages-sent, \
         aws:num-messages-received, aws:message-byte-size, aws:num-authorization-failures and aws:source-ip-address",
        ],
    );
    refused(
        vec![with_dimension("aws:num-messages-sent", "nope", Some("in"))],
        &[
            r#"behaviors[0].metricDimension.dimensionName: dimension "nope" is not defined"#,
            r#"behaviors[0].metricDimension.operator: must be IN or NOT_IN, found "in""#,
        ],
    );
    refused(
        vec![with_dimension("aws:num-messages-sent", "", None)],
        &[
            "behaviors[0].metricDimension.dimensionName: must be 1 to 128 characters of a-z, A-Z, 0-9, ':', '_' and '-'",
        ],
    );
    let mut custom = b("battery_pct", "less-than", MetricValue::number(1.0));
    custom.metric_dimension =
        Some(aws::MetricDimension { dimension_name: "telemetry".into(), operator: None });
    refused(
        vec![custom],
        &[
            "behaviors[0].metricDimension: not allowed for battery_pct: dimensions cannot be used with custom metrics",
        ],
    );
}

#[test]
fn names() {
    let ok = |name: &str| behavior(name, "aws:num-disconnects", criteria("less-than", MetricValue::count(3)));
    assert!(profile_of("a:b_c-D9", vec![ok(&"x".repeat(128))]).is_ok());
    refused(
        vec![ok(""), ok(&"x".repeat(129)), ok("a b"), ok("ä")],
        &[
            "behaviors[0].name: must be 1 to 128 characters of a-z, A-Z, 0-9, ':', '_' and '-'",
            "behaviors[1].name: must be 1 to 128 characters of a-z, A-Z, 0-9, ':', '_' and '-'",
            "behaviors[2].name: must be 1 to 128 characters of a-z, A-Z, 0-9, ':', '_' and '-'",
            "behaviors[3].name: must be 1 to 128 characters of a-z, A-Z, 0-9, ':', '_' and '-'",
        ],
    );
    refused(
        vec![ok("X"), ok("Y"), ok("X"), ok("X")],
        &[
            r#"behaviors[2].name: "X" is already the name of behaviors[0]"#,
            r#"behaviors[3].name: "X" is already the name of behaviors[0]"#,
        ],
    );
    let e = profile_of("bad name", vec![ok("X")]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "securityProfileName: must be 1 to 128 characters of a-z, A-Z, 0-9, ':', '_' and '-'"
    );
    let many: Vec<_> = (0..101).map(|i| ok(&format!("b{i}"))).collect();
    refused(many, &["behaviors: at most 100 behaviors, found 101"]);
    let hundred: Vec<_> = (0..100).map(|i| ok(&format!("b{i}"))).collect();
    assert!(profile_of("P", hundred).is_ok());
    assert!(profile_of("P", vec![]).is_ok(), "a profile may have no behaviors yet");
}

#[test]
fn all_problems_are_reported_at_once() {
    let mut bad_duration = criteria("less-than", MetricValue::count(1));
    bad_duration.duration_seconds = Some(5);
    let e = profile_of(
        "P",
        vec![
            behavior("fine", "aws:all-bytes-out", criteria("less-than", MetricValue::count(1))),
            behavior("B1", "aws:all-bytes-out", bad_duration),
            b("aws:nope", "in-set", MetricValue::strings(["x"])),
        ],
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "behaviors[1].criteria.durationSeconds: must be 300, 600, 900, 1800 or 3600, found 5; \
         behaviors[2].metric: unknown metric \"aws:nope\""
    );
}

/// The example body of spec §4.3 without its statistical and ML behaviors, plus the rules of the
/// lab (§7.2) and the documentation's examples.
#[test]
fn spec_examples_compile() {
    let mut outbound = criteria("less-than-equals", MetricValue::count(35_000));
    outbound.duration_seconds = Some(300);
    outbound.consecutive_datapoints_to_alarm = Some(1);
    outbound.consecutive_datapoints_to_clear = Some(1);
    let mut auth = criteria("less-than", MetricValue::count(10));
    auth.duration_seconds = Some(300);
    let mut battery = criteria("greater-than", MetricValue::number(75.0));
    battery.consecutive_datapoints_to_alarm = Some(5);
    let mut auth_behavior = behavior("AuthFailOnAuthTopics", "aws:num-authorization-failures", auth);
    auth_behavior.metric_dimension = Some(aws::MetricDimension {
        dimension_name: "TopicFilterForAuthMessages".into(),
        operator: Some("IN".into()),
    });
    let mut outbound_behavior = behavior("OutboundBytesBehavior", "aws:all-bytes-out", outbound);
    outbound_behavior.suppress_alerts = Some(false);
    let profile = aws::SecurityProfile {
        name: "OutboundBytesSecProfile".into(),
        behaviors: vec![
            outbound_behavior,
            behavior(
                "AllowedListeners",
                "aws:listening-tcp-ports",
                criteria("in-port-set", MetricValue::ports(vec![22, 8080])),
            ),
            auth_behavior,
            behavior("Battery", "battery_pct", battery),
            behavior(
                "MaxMessageSize",
                "aws:message-byte-size",
                criteria("less-than-equals", MetricValue::count(1024)),
            ),
        ],
    };
    let compiled = compile(&profile, &defs()).unwrap();
    assert_eq!(compiled.behaviors.len(), 5);
    assert_eq!(compiled.behaviors[3].criteria.consecutive_to_alarm, 5);
}
