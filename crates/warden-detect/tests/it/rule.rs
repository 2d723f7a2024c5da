//! The rule language: each operator and option parsed into AWS's shape and written back in the
//! canonical form, errors that point at the offending word, and round trips on random behaviors.

use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use proptest::sample::select;
use warden_detect::rule::{format, format_value, parse};
use warden_detect::{
    AwsMetric, CustomMetricType, DURATIONS_SECONDS, Metric, MetricValue, aws, compile_behaviors,
};

use crate::support::defs;

/// The custom metrics of [`defs`], as the parser looks them up.
fn custom(name: &str) -> Option<CustomMetricType> {
    defs().custom_metrics.get(name).copied()
}

/// A behavior of one criteria, the way the parser builds it.
fn b(name: &str, metric: &str, op: &str, value: MetricValue) -> aws::Behavior {
    aws::Behavior {
        name: name.into(),
        metric: Some(metric.into()),
        criteria: Some(aws::BehaviorCriteria {
            comparison_operator: Some(op.into()),
            value: Some(value),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn over(mut behavior: aws::Behavior, seconds: i64) -> aws::Behavior {
    behavior.criteria.as_mut().unwrap().duration_seconds = Some(seconds);
    behavior
}

/// `text` parses into `expect`, formats as `canonical`, and the canonical text parses back into
/// the same behavior, which the profile compiler accepts.
#[track_caller]
fn check(text: &str, canonical: &str, expect: aws::Behavior) {
    let parsed = parse(text, custom).unwrap_or_else(|e| panic!("{text}: {e}\n{}", e.underline(text)));
    assert_eq!(parsed, expect, "{text}");
    assert_eq!(format(&parsed), canonical, "{text}");
    assert_eq!(parse(canonical, custom).unwrap(), expect, "{canonical}");
    if let Err(e) = compile_behaviors(std::slice::from_ref(&parsed), &defs()) {
        panic!("{text}: the compiler refuses what the parser built: {e}");
    }
}

/// `text` fails with `message`, underlining `word`.
#[track_caller]
fn check_err(text: &str, message: &str, word: &str) {
    let e = parse(text, custom).expect_err(text);
    assert_eq!(e.message(), message, "{text}");
    assert_eq!(&text[e.span()], word, "{text}: the span is not the offending word");
}

#[test]
fn each_operator_is_inverted_into_the_normal_criteria() {
    let cases: &[(&str, &str, aws::Behavior)] = &[
        (
            "alarm when aws:all-bytes-out > 35000 over 300s",
            "all-bytes-out: alarm when aws:all-bytes-out > 35000 over 5m",
            over(
                b("all-bytes-out", "aws:all-bytes-out", "less-than-equals", MetricValue::count(35_000)),
                300,
            ),
        ),
        (
            "conns: alarm when aws:num-established-tcp-connections >= 10",
            "conns: alarm when aws:num-established-tcp-connections >= 10",
            b("conns", "aws:num-established-tcp-connections", "less-than", MetricValue::count(10)),
        ),
        (
            "quiet: alarm when aws:all-packets-in < 1",
            "quiet: alarm when aws:all-packets-in < 1",
            b("quiet", "aws:all-packets-in", "greater-than-equals", MetricValue::count(1)),
        ),
        (
            "low: alarm when aws:num-listening-tcp-ports <= 0",
            "low: alarm when aws:num-listening-tcp-ports <= 0",
            b("low", "aws:num-listening-tcp-ports", "greater-than", MetricValue::count(0)),
        ),
        (
            "alarm when aws:listening-tcp-ports not in {22, 443}",
            "listening-tcp-ports: alarm when aws:listening-tcp-ports not in {22, 443}",
            b(
                "listening-tcp-ports",
                "aws:listening-tcp-ports",
                "in-port-set",
                MetricValue::ports(vec![22, 443]),
            ),
        ),
        (
            "udp: alarm when aws:listening-udp-ports in {53,5353}",
            "udp: alarm when aws:listening-udp-ports in {53, 5353}",
            b("udp", "aws:listening-udp-ports", "not-in-port-set", MetricValue::ports(vec![53, 5353])),
        ),
        (
            "alarm when aws:destination-ip-addresses in {10.0.0.0/8}",
            "destination-ip-addresses: alarm when aws:destination-ip-addresses in {10.0.0.0/8}",
            b(
                "destination-ip-addresses",
                "aws:destination-ip-addresses",
                "not-in-cidr-set",
                MetricValue::cidrs(["10.0.0.0/8"]),
            ),
        ),
        (
            "src: alarm when aws:source-ip-address not in {192.168.0.0/16, ::1, 2001:db8::/32}",
            "src: alarm when aws:source-ip-address not in {192.168.0.0/16, ::1, 2001:db8::/32}",
            b(
                "src",
                "aws:source-ip-address",
                "in-cidr-set",
                MetricValue::cidrs(["192.168.0.0/16", "::1", "2001:db8::/32"]),
            ),
        ),
        (
            "daemons: alarm when daemons not in {sshd, \"my agent\", \"say \\\"hi\\\"\"}",
            "daemons: alarm when daemons not in {sshd, \"my agent\", \"say \\\"hi\\\"\"}",
            b("daemons", "daemons", "in-set", MetricValue::strings(["sshd", "my agent", "say \"hi\""])),
        ),
        (
            "temps: alarm when cpu_temps in {90, 95.5, 1e3}",
            "temps: alarm when cpu_temps in {90, 95.5, 1000}",
            b("temps", "cpu_temps", "not-in-set", MetricValue::numbers(vec![90.0, 95.5, 1000.0])),
        ),
        (
            "alarm when peers in {}",
            "peers: alarm when peers in {}",
            b("peers", "peers", "not-in-cidr-set", MetricValue::cidrs(Vec::<String>::new())),
        ),
        (
            "battery: alarm when battery_pct < 12.5",
            "battery: alarm when battery_pct < 12.5",
            b("battery", "battery_pct", "greater-than-equals", MetricValue::number(12.5)),
        ),
    ];
    for (text, canonical, expect) in cases {
        check(text, canonical, expect.clone());
    }
}

#[test]
fn options_set_their_members_in_any_order() {
    let mut expect = b("AuthFail", "aws:num-authorization-failures", "less-than", MetricValue::count(10));
    let c = expect.criteria.as_mut().unwrap();
    c.duration_seconds = Some(3600);
    c.consecutive_datapoints_to_alarm = Some(3);
    c.consecutive_datapoints_to_clear = Some(1);
    expect.metric_dimension = Some(aws::MetricDimension {
        dimension_name: "TopicFilterForAuthMessages".into(),
        operator: Some("NOT_IN".into()),
    });
    expect.suppress_alerts = Some(true);
    expect.export_metric = Some(true);
    let canonical = "AuthFail: alarm when aws:num-authorization-failures >= 10 over 1h for 3 datapoints \
                     clear after 1 datapoint on dimension TopicFilterForAuthMessages not quietly exported";
    check(canonical, canonical, expect.clone());
    check(
        "AuthFail:   ALARM When aws:num-authorization-failures>=10 exported quietly clear after 1 \
         on dimension TopicFilterForAuthMessages not for 3 over 60m",
        canonical,
        expect,
    );

    let mut expect = b("sent", "aws:num-messages-sent", "less-than-equals", MetricValue::count(100));
    expect.metric_dimension =
        Some(aws::MetricDimension { dimension_name: "telemetry".into(), operator: Some("IN".into()) });
    expect.criteria.as_mut().unwrap().duration_seconds = Some(900);
    check(
        "sent: alarm when aws:num-messages-sent > 100 over 900s on dimension telemetry",
        "sent: alarm when aws:num-messages-sent > 100 over 15m on dimension telemetry",
        expect,
    );
}

#[test]
fn errors_point_at_the_offending_word() {
    for (text, message, word) in [
        (
            "alarm when aws:all-bytes-out bigger 35000",
            "expected an operator after aws:all-bytes-out, found 'bigger'; use >, >=, < or <=",
            "bigger",
        ),
        ("", "the rule is empty; expected 'alarm when METRIC ...'", ""),
        ("warn when x > 1", "expected 'alarm when' or 'NAME: alarm when' at the start, found 'warn'", "warn"),
        ("b: alert when", "expected 'alarm when' after 'b:', found 'alert'", "alert"),
        (
            "bad name: alarm when",
            "expected 'alarm when' or 'NAME: alarm when' at the start, found 'bad'",
            "bad",
        ),
        (
            "b/1: alarm when",
            "behavior name 'b/1' must be 1 to 128 characters of a-z, A-Z, 0-9, ':', '_' and '-'",
            "b/1:",
        ),
        ("alarm if", "expected 'when' after 'alarm', found 'if'", "if"),
        ("alarm when", "expected a metric name after 'when', found the end of the rule", ""),
        (
            "alarm when aws:bytes-out > 1",
            "unknown metric 'aws:bytes-out'; the aws: metrics are aws:all-bytes-in, aws:all-bytes-out, \
             aws:all-packets-in, aws:all-packets-out, aws:num-listening-tcp-ports, aws:num-listening-udp-ports, \
             aws:num-established-tcp-connections, aws:listening-tcp-ports, aws:listening-udp-ports, \
             aws:destination-ip-addresses, aws:message-byte-size, aws:num-messages-sent, \
             aws:num-messages-received, aws:num-authorization-failures, aws:source-ip-address, \
             aws:num-connection-attempts, aws:num-disconnects, aws:disconnect-duration",
            "aws:bytes-out",
        ),
        (
            "alarm when battery > 1",
            "'battery' is neither an aws: metric nor a defined custom metric",
            "battery",
        ),
        (
            "alarm when aws:listening-tcp-ports > 3",
            "aws:listening-tcp-ports is a set of ports: expected 'in {...}' or 'not in {...}' after it, found '>'",
            ">",
        ),
        (
            "alarm when aws:all-bytes-in not in {1}",
            "aws:all-bytes-in is a number: expected >, >=, < or <= after it, found 'not'",
            "not",
        ),
        (
            "alarm when aws:disconnect-duration < 5",
            "'<' is not allowed for aws:disconnect-duration; use '>' or '>='",
            "<",
        ),
        (
            "alarm when aws:all-bytes-out > 35,000",
            "unexpected ',' after the condition; expected over, for, clear after, on dimension, quietly or exported",
            ",",
        ),
        (
            "alarm when aws:all-bytes-out > -1",
            "expected a whole number (0 or more) after '>', found '-1'",
            "-1",
        ),
        (
            "alarm when aws:all-bytes-out >",
            "expected a whole number after '>', found the end of the rule",
            "",
        ),
        ("alarm when battery_pct > NaN", "expected a number after '>', found 'NaN'", "NaN"),
        ("alarm when aws:listening-tcp-ports not in 22", "expected '{' to open the set, found '22'", "22"),
        ("alarm when aws:listening-tcp-ports not {22}", "expected 'in' after 'not', found '{'", "{"),
        (
            "alarm when aws:listening-tcp-ports not in {22 443}",
            "expected ',' or '}' after '22', found '443'",
            "443",
        ),
        ("alarm when aws:listening-tcp-ports not in {22,}", "expected a port in the set, found '}'", "}"),
        (
            "alarm when aws:listening-tcp-ports not in {22, 70000}",
            "'70000' is not a port (0 to 65535)",
            "70000",
        ),
        (
            "alarm when aws:listening-tcp-ports not in {22",
            "expected ',' or '}' after '22', found the end of the rule",
            "",
        ),
        (
            "alarm when aws:destination-ip-addresses in {10.0.0.0/33}",
            "'10.0.0.0/33' is not an IP address or CIDR block",
            "10.0.0.0/33",
        ),
        ("alarm when cpu_temps in {hot}", "'hot' is not a number", "hot"),
        ("alarm when daemons in {\"sshd}", "this quoted string has no closing '\"'", "\"sshd}"),
        ("alarm when daemons in {\"a\\b\"}", "in quotes, '\\' may only escape '\"' or '\\'", "\\b"),
        (
            "alarm when aws:all-bytes-out > 1 over 7m",
            "the window after 'over' must be 5m, 10m, 15m, 30m or 1h, found '7m'",
            "7m",
        ),
        (
            "alarm when aws:all-bytes-out > 1 over 5",
            "the window after 'over' must be 5m, 10m, 15m, 30m or 1h, found '5'",
            "5",
        ),
        (
            "alarm when aws:all-bytes-out > 1 over",
            "expected a window (5m, 10m, 15m, 30m or 1h) after 'over', found the end of the rule",
            "",
        ),
        (
            "alarm when aws:listening-tcp-ports not in {22} over 5m",
            "aws:listening-tcp-ports, a set, is judged on each report: it takes no window ('over')",
            "over",
        ),
        (
            "alarm when aws:disconnect-duration > 5 over 5m",
            "aws:disconnect-duration is a duration already: it takes no window ('over')",
            "over",
        ),
        (
            "alarm when aws:all-bytes-out > 1 for 11 datapoints",
            "expected a count of 1 to 10 after 'for', found '11'",
            "11",
        ),
        ("alarm when aws:all-bytes-out > 1 for 0", "expected a count of 1 to 10 after 'for', found '0'", "0"),
        ("alarm when aws:all-bytes-out > 1 clear 2", "expected 'after' after 'clear', found '2'", "2"),
        ("alarm when aws:all-bytes-out > 1 for 2 for 3", "'for' is given twice", "for"),
        (
            "alarm when aws:all-bytes-out > 1 on dimension d",
            "aws:all-bytes-out cannot be narrowed by a dimension; dimensions apply to aws:num-messages-sent, \
             aws:num-messages-received, aws:message-byte-size, aws:num-authorization-failures and \
             aws:source-ip-address",
            "on",
        ),
        (
            "alarm when aws:num-messages-sent > 1 on dimension",
            "expected a dimension name after 'on dimension', found the end of the rule",
            "",
        ),
        (
            "alarm when aws:all-bytes-out > 1 loudly",
            "unexpected 'loudly' after the condition; expected over, for, clear after, on dimension, quietly or exported",
            "loudly",
        ),
        ("alarm when aws:all-bytes-out > 1 \\", "'\\' may only appear in quotes", "\\"),
    ] {
        check_err(text, message, word);
    }
}

#[test]
fn underline_marks_the_word() {
    let text = "alarm when aws:all-bytes-out bigger 35000";
    let e = parse(text, custom).unwrap_err();
    assert_eq!(e.underline(text), format!("{text}\n                             ^^^^^^"));
    let text = "alarm when";
    assert_eq!(parse(text, custom).unwrap_err().underline(text), "alarm when\n          ^");
}

#[test]
fn what_rules_cannot_express_formats_as_a_placeholder() {
    let mut stat = b("BytesOutP90", "aws:all-bytes-out", "less-than-equals", MetricValue::default());
    let c = stat.criteria.as_mut().unwrap();
    c.value = None;
    c.statistical_threshold = Some(aws::StatisticalThreshold { statistic: Some("p90".into()) });
    assert_eq!(
        format(&stat),
        "BytesOutP90: <not expressible as a rule: statistical threshold p90 on aws:all-bytes-out>"
    );
    let ml = aws::Behavior {
        name: "MsgSentML".into(),
        metric: Some("aws:num-messages-sent".into()),
        criteria: Some(aws::BehaviorCriteria {
            ml_detection_config: Some(aws::MachineLearningDetectionConfig {
                confidence_level: Some("HIGH".into()),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        format(&ml),
        "MsgSentML: <not expressible as a rule: ML Detect on aws:num-messages-sent, confidence HIGH>"
    );
    for (behavior, why) in [
        (aws::Behavior { name: "x".into(), ..Default::default() }, "it has no criteria"),
        (
            b("x", "aws:all-bytes-out", "in-port-set", MetricValue::ports(vec![1])),
            "in-port-set with value.ports does not fit aws:all-bytes-out",
        ),
        (
            b("x", "aws:all-bytes-out", "bigger", MetricValue::count(1)),
            "unknown comparison operator \"bigger\" on aws:all-bytes-out",
        ),
        (
            b("x", "battery_pct", "less-than", MetricValue::ports(vec![1])),
            "less-than does not compare value.ports",
        ),
        (
            b(
                "x",
                "aws:all-bytes-out",
                "less-than",
                MetricValue { number: Some(1.0), ..MetricValue::count(1) },
            ),
            "less-than on aws:all-bytes-out has 2 value fields",
        ),
        (b("x", "two words", "less-than", MetricValue::number(1.0)), "metric \"two words\" is not one word"),
    ] {
        assert_eq!(format(&behavior), format!("x: <not expressible as a rule: {why}>"));
    }
}

#[test]
fn values_format_as_rules_write_them() {
    assert_eq!(format_value(&MetricValue::count(54)), "54");
    assert_eq!(format_value(&MetricValue::number(-0.5)), "-0.5");
    assert_eq!(format_value(&MetricValue::number(1e300)), "1e300");
    assert_eq!(format_value(&MetricValue::ports(vec![22, 8080])), "{22, 8080}");
    assert_eq!(format_value(&MetricValue::cidrs(["10.0.0.1"])), "{10.0.0.1}");
    assert_eq!(format_value(&MetricValue::strings(["a", "", "b,c"])), "{a, \"\", \"b,c\"}");
    assert_eq!(format_value(&MetricValue::default()), "{}");
}

// ---------------------------------------------------------------------------------------------
// Properties

const CUSTOM: [(&str, CustomMetricType); 4] = [
    ("battery_pct", CustomMetricType::Number),
    ("cpu_temps", CustomMetricType::NumberList),
    ("daemons", CustomMetricType::StringList),
    ("peers", CustomMetricType::IpAddressList),
];

fn metric() -> impl Strategy<Value = Metric> {
    let aws = select(AwsMetric::ALL.to_vec()).prop_map(Metric::Aws);
    let custom = select(CUSTOM.to_vec())
        .prop_map(|(name, metric_type)| Metric::Custom { name: name.to_owned(), metric_type });
    prop_oneof![aws, custom]
}

fn finite() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("finite", |n| n.is_finite())
}

fn cidr() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u32>().prop_map(|a| Ipv4Addr::from(a).to_string()),
        (any::<u32>(), 0u8..=32).prop_map(|(a, p)| format!("{}/{p}", Ipv4Addr::from(a))),
        (any::<u128>(), 0u8..=128).prop_map(|(a, p)| format!("{}/{p}", Ipv6Addr::from(a))),
    ]
}

fn value(metric: &Metric) -> BoxedStrategy<MetricValue> {
    use warden_detect::MetricKind::*;
    match metric.kind() {
        Counter | Gauge => any::<u64>().prop_map(MetricValue::count).boxed(),
        Number => finite().prop_map(MetricValue::number).boxed(),
        PortSet => prop::collection::vec(any::<u16>(), 0..5).prop_map(MetricValue::ports).boxed(),
        CidrSet => prop::collection::vec(cidr(), 0..5).prop_map(MetricValue::cidrs).boxed(),
        NumberSet => prop::collection::vec(finite(), 0..5).prop_map(MetricValue::numbers).boxed(),
        StringSet => prop::collection::vec(any::<String>(), 0..5).prop_map(MetricValue::strings).boxed(),
    }
}

/// Any behavior a rule can express: a metric, an operator it allows, a value of its type, and
/// the options that fit it.
fn expressible() -> impl Strategy<Value = aws::Behavior> {
    metric().prop_flat_map(|metric| {
        let op = select(metric.operators().to_vec());
        let duration = if metric.takes_duration() {
            prop::option::of(select(DURATIONS_SECONDS.to_vec())).boxed()
        } else {
            Just(None).boxed()
        };
        let dimension = if metric.takes_dimension() {
            prop::option::of(("[a-zA-Z0-9:_-]{1,12}", select(vec!["IN", "NOT_IN"]))).boxed()
        } else {
            Just(None).boxed()
        };
        (
            "[a-zA-Z0-9:_-]{1,20}",
            Just(metric.name().to_owned()),
            op,
            value(&metric),
            duration,
            prop::option::of(1i64..=10),
            prop::option::of(1i64..=10),
            dimension,
            prop::option::of(Just(true)),
            prop::option::of(Just(true)),
        )
            .prop_map(
                |(name, metric, op, value, duration, to_alarm, to_clear, dimension, suppress, export)| {
                    aws::Behavior {
                        name,
                        metric: Some(metric),
                        metric_dimension: dimension.map(|(name, op)| aws::MetricDimension {
                            dimension_name: name,
                            operator: Some(op.to_owned()),
                        }),
                        criteria: Some(aws::BehaviorCriteria {
                            comparison_operator: Some(op.as_str().to_owned()),
                            value: Some(value),
                            duration_seconds: duration.map(i64::from),
                            consecutive_datapoints_to_alarm: to_alarm,
                            consecutive_datapoints_to_clear: to_clear,
                            ..Default::default()
                        }),
                        suppress_alerts: suppress,
                        export_metric: export,
                    }
                },
            )
    })
}

/// Text made of the rule language's own words, so that random input gets past the first word.
fn rule_like() -> impl Strategy<Value = String> {
    let word = select(vec![
        "alarm",
        "when",
        "b:",
        "aws:all-bytes-out",
        "aws:listening-tcp-ports",
        "aws:num-messages-sent",
        "aws:destination-ip-addresses",
        "daemons",
        "cpu_temps",
        "battery_pct",
        ">",
        ">=",
        "<",
        "<=",
        "in",
        "not",
        "{",
        "}",
        ",",
        "22",
        "-1",
        "1.5",
        "10.0.0.0/8",
        "\"x y\"",
        "\"",
        "over",
        "5m",
        "1h",
        "for",
        "3",
        "datapoints",
        "clear",
        "after",
        "on",
        "dimension",
        "d",
        "quietly",
        "exported",
        "\\",
        "é",
    ]);
    prop::collection::vec(word, 0..16).prop_map(|words| words.join(" "))
}

fn any_value() -> impl Strategy<Value = MetricValue> {
    (
        prop::option::of(any::<u64>()),
        prop::option::of(any::<f64>()),
        prop::option::of(prop::collection::vec(any::<f64>(), 0..3)),
        prop::option::of(prop::collection::vec(any::<String>(), 0..3)),
        prop::option::of(prop::collection::vec(any::<u16>(), 0..3)),
        prop::option::of(prop::collection::vec(any::<String>(), 0..3)),
    )
        .prop_map(|(count, number, numbers, strings, ports, cidrs)| MetricValue {
            count,
            number,
            numbers,
            strings,
            ports,
            cidrs,
        })
}

/// Any behavior at all, sensible or not.
fn any_behavior() -> impl Strategy<Value = aws::Behavior> {
    let text = || {
        prop::option::of(prop_oneof![
            any::<String>(),
            select(vec!["aws:all-bytes-out".to_owned(), "less-than".to_owned(), "in-set".to_owned()])
        ])
    };
    (
        any::<String>(),
        text(),
        prop::option::of((any::<String>(), text())),
        prop::option::of((
            text(),
            prop::option::of(any_value()),
            prop::option::of(any::<i64>()),
            prop::option::of(any::<i64>()),
            prop::option::of(any::<i64>()),
            prop::option::of(text()),
        )),
        prop::option::of(any::<bool>()),
        prop::option::of(any::<bool>()),
    )
        .prop_map(|(name, metric, dimension, criteria, suppress_alerts, export_metric)| aws::Behavior {
            name,
            metric,
            metric_dimension: dimension
                .map(|(dimension_name, operator)| aws::MetricDimension { dimension_name, operator }),
            criteria: criteria.map(|(op, value, duration, to_alarm, to_clear, statistic)| {
                aws::BehaviorCriteria {
                    comparison_operator: op,
                    value,
                    duration_seconds: duration,
                    consecutive_datapoints_to_alarm: to_alarm,
                    consecutive_datapoints_to_clear: to_clear,
                    statistical_threshold: statistic.map(|statistic| aws::StatisticalThreshold { statistic }),
                    ml_detection_config: None,
                }
            }),
            suppress_alerts,
            export_metric,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// What a rule can express survives the text: `parse(format(b)) == b`, and the text is
    /// already canonical.
    #[test]
    fn expressible_behaviors_round_trip(behavior in expressible()) {
        let text = format(&behavior);
        let parsed = parse(&text, custom).map_err(|e| TestCaseError::fail(format!("{e}\n{}", e.underline(&text))))?;
        prop_assert_eq!(&parsed, &behavior, "{}", text);
        prop_assert_eq!(format(&parsed), text);
    }

    /// Parsing never panics; what parses formats to a canonical text that parses to the same
    /// behavior, and every error's span lies within the text on character boundaries.
    #[test]
    fn parsing_never_panics_and_canonicalizes(text in prop_oneof![rule_like(), any::<String>()]) {
        match parse(&text, custom) {
            Ok(behavior) => {
                let canonical = format(&behavior);
                prop_assert_eq!(parse(&canonical, custom).ok(), Some(behavior), "{}", canonical);
            }
            Err(e) => {
                prop_assert!(text.get(e.span()).is_some(), "span {:?} of {:?}", e.span(), text);
                let _ = e.underline(&text);
            }
        }
    }

    /// Formatting never panics, whatever the behavior holds.
    #[test]
    fn formatting_never_panics(behavior in any_behavior()) {
        let text = format(&behavior);
        let prefix = format!("{}: ", behavior.name);
        prop_assert!(text.starts_with(&prefix), "{}", text);
    }
}
