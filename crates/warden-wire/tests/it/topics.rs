//! The reserved topics: `$aws/things/{thing}/defender/metrics/{json|cbor}[/accepted|/rejected]`.

use warden_wire::{Format, ReportTopic, TopicKind, is_valid_metric_name, is_valid_thing_name};

#[track_caller]
fn check(topic: &str, expect: Option<(&str, Format, TopicKind)>) {
    let parsed = ReportTopic::parse(topic);
    assert_eq!(parsed, expect.map(|(thing, format, kind)| ReportTopic::new(thing, format, kind)), "{topic}");
    if let Some(parsed) = parsed {
        assert_eq!(parsed.to_string(), topic, "builds back");
    }
}

#[test]
fn the_six_topics_of_a_thing() {
    use Format::*;
    use TopicKind::*;
    check("$aws/things/thing-1/defender/metrics/json", Some(("thing-1", Json, Report)));
    check("$aws/things/thing-1/defender/metrics/cbor", Some(("thing-1", Cbor, Report)));
    check("$aws/things/thing-1/defender/metrics/json/accepted", Some(("thing-1", Json, Accepted)));
    check("$aws/things/thing-1/defender/metrics/json/rejected", Some(("thing-1", Json, Rejected)));
    check("$aws/things/thing-1/defender/metrics/cbor/accepted", Some(("thing-1", Cbor, Accepted)));
    check("$aws/things/thing-1/defender/metrics/cbor/rejected", Some(("thing-1", Cbor, Rejected)));
}

#[test]
fn thing_names_in_topics() {
    use Format::*;
    use TopicKind::*;
    check("$aws/things/a/defender/metrics/json", Some(("a", Json, Report)));
    check("$aws/things/My_Thing:01-x/defender/metrics/cbor", Some(("My_Thing:01-x", Cbor, Report)));
    let longest = "t".repeat(128);
    check(&format!("$aws/things/{longest}/defender/metrics/json"), Some((&longest, Json, Report)));
    for thing in ["", "+", "#", "a/b", "a+", "dev#1", "with space", "thing.1", "thïng", &"t".repeat(129)] {
        check(&format!("$aws/things/{thing}/defender/metrics/json"), None);
    }
    // A thing name cannot carry the rest of another topic.
    check("$aws/things/a/defender/metrics/b/defender/metrics/json", None);
}

#[test]
fn other_topics_are_not_defender_topics() {
    for topic in [
        "",
        "$aws/things/thing-1/defender/metrics",
        "$aws/things/thing-1/defender/metrics/",
        "$aws/things/thing-1/defender/metrics/xml",
        "$aws/things/thing-1/defender/metrics/JSON",
        "$aws/things/thing-1/defender/metrics/json/",
        "$aws/things/thing-1/defender/metrics/json/+",
        "$aws/things/thing-1/defender/metrics/json/#",
        "$aws/things/thing-1/defender/metrics/json/accepted/",
        "$aws/things/thing-1/defender/metrics/json/accepted/x",
        "$aws/things/thing-1/defender/metrics/json/ACCEPTED",
        "$aws/things/thing-1/defender/metrics/json/deleted",
        "$aws/things/thing-1/defender/metrics/accepted",
        "$aws/things/thing-1/shadow/update",
        "$aws/things/thing-1",
        "aws/things/thing-1/defender/metrics/json",
        "$AWS/things/thing-1/defender/metrics/json",
        "/$aws/things/thing-1/defender/metrics/json",
        "$aws/things/thing-1/defender/metrics/json ",
    ] {
        check(topic, None);
    }
}

#[test]
fn reply_topics() {
    let report = ReportTopic::new("dev-1", Format::Cbor, TopicKind::Report);
    assert_eq!(report.reply(true).to_string(), "$aws/things/dev-1/defender/metrics/cbor/accepted");
    assert_eq!(report.reply(false).to_string(), "$aws/things/dev-1/defender/metrics/cbor/rejected");
    let report = ReportTopic::new("dev-1", Format::Json, TopicKind::Report);
    assert_eq!(report.reply(true).to_string(), "$aws/things/dev-1/defender/metrics/json/accepted");
    assert_eq!(report.reply(false).to_string(), "$aws/things/dev-1/defender/metrics/json/rejected");
}

#[test]
fn thing_names() {
    for name in ["a", "thing-1", "A_b:c-9", "0", &"x".repeat(128)] {
        assert!(is_valid_thing_name(name), "{name:?} is valid");
    }
    for name in ["", "a/b", "+", "#", "a b", "a\tb", "a\0", "é", "a.b", "$aws", "a*", &"x".repeat(129)] {
        assert!(!is_valid_thing_name(name), "{name:?} is invalid");
    }
}

/// Custom metric names follow the thing-name pattern without the reserved `aws:` prefix.
#[test]
fn metric_names() {
    for name in ["cpu_usage", "a", "AWS:x", "x:aws:", "aws", "aws-x", &"m".repeat(128)] {
        assert!(is_valid_metric_name(name), "{name:?} is valid");
    }
    for name in ["", "aws:", "aws:all-bytes-out", "a b", "a/b", &"m".repeat(129)] {
        assert!(!is_valid_metric_name(name), "{name:?} is invalid");
    }
}

#[test]
fn format_names() {
    assert_eq!("json".parse::<Format>(), Ok(Format::Json));
    assert_eq!("cbor".parse::<Format>(), Ok(Format::Cbor));
    assert_eq!("xml".parse::<Format>(), Err(r#"unknown format "xml"; expected "json" or "cbor""#.to_owned()));
    assert_eq!(Format::Json.as_str(), "json");
    assert_eq!(Format::Cbor.as_str(), "cbor");
    assert_eq!("long".parse::<warden_wire::Names>(), Ok(warden_wire::Names::Long));
    assert_eq!("short".parse::<warden_wire::Names>(), Ok(warden_wire::Names::Short));
    assert!("Short".parse::<warden_wire::Names>().is_err());
}
