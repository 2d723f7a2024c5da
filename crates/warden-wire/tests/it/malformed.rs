//! Rejections: each malformed report with the exact message the device gets back.
//!
//! Validation messages do not depend on the encoding, so every case of the table is checked
//! as JSON and as CBOR with definite and indefinite lengths. Syntax errors, which do, have
//! their own tests per format.

use crate::support::{Doc, Lengths, cbor, decode, head};
use warden_wire::{ErrorCode, Format, Limits, decode_report};

const MALFORMED: &str = "Malformed metrics report";

/// Checks that `json` (and its CBOR forms) is rejected with `InvalidPayload` and
/// `Malformed metrics report: {expect}`.
#[track_caller]
fn check(json: &str, expect: &str) {
    let doc = Doc::from_json(json);
    let encodings = [
        ("JSON", doc.to_json(), Format::Json),
        ("CBOR", doc.to_cbor(Lengths::Definite), Format::Cbor),
        ("CBOR indefinite", doc.to_cbor(Lengths::Indefinite), Format::Cbor),
    ];
    for (name, bytes, format) in encodings {
        check_bytes(&bytes, format, expect, name);
    }
}

#[track_caller]
fn check_bytes(bytes: &[u8], format: Format, expect: &str, what: &str) {
    match decode(bytes, format) {
        Ok(report) => panic!("{what}: accepted {report:?}, expected: {expect}"),
        Err(rejection) => {
            assert_eq!(rejection.code, ErrorCode::InvalidPayload, "{what}");
            assert_eq!(rejection.message, format!("{MALFORMED}: {expect}"), "{what}");
        }
    }
}

/// A valid header followed by `rest`.
fn with_header(rest: &str) -> String {
    format!(r#"{{"hed":{{"rid":7,"v":"1.0"}},{rest}}}"#)
}

fn with_metrics(metrics: &str) -> String {
    with_header(&format!(r#""met":{metrics}"#))
}

fn with_custom(custom: &str) -> String {
    with_header(&format!(r#""cmet":{custom}"#))
}

fn with_connection(connection: &str) -> String {
    with_metrics(&format!(r#"{{"tc":{{"ec":{{"cs":[{connection}]}}}}}}"#))
}

fn with_remote_addr(rad: &str) -> String {
    with_connection(&format!(r#"{{"rad":{rad}}}"#))
}

fn with_custom_value(value: &str) -> String {
    with_custom(&format!(r#"{{"m":{value}}}"#))
}

// Top level and header.

#[test]
fn not_a_map() {
    check("[]", "report: must be a map, found an array");
    check("7", "report: must be a map, found an integer");
    check("null", "report: must be a map, found null");
    check(r#""report""#, "report: must be a map, found a string");
}

#[test]
fn empty_map() {
    check(
        "{}",
        r#"report: missing "header" ("hed"); report: needs "metrics" ("met"), "custom_metrics" ("cmet") or both"#,
    );
}

#[test]
fn header_missing() {
    check(r#"{"met":{}}"#, r#"report: missing "header" ("hed")"#);
    check(r#"{"hed":null,"met":{}}"#, r#"report: missing "header" ("hed")"#);
    check(r#"{"headers":{"rid":7,"v":"1.0"},"met":{}}"#, r#"report: missing "header" ("hed")"#);
}

#[test]
fn header_not_a_map() {
    check(r#"{"hed":[],"met":{}}"#, "hed: must be a map, found an array");
    check(r#"{"header":"1.0","met":{}}"#, "header: must be a map, found a string");
}

#[test]
fn header_given_twice() {
    let header = r#"{"rid":7,"v":"1.0"}"#;
    check(
        &format!(r#"{{"header":{header},"hed":{header},"met":{{}}}}"#),
        r#"header: given twice (as "header" and "hed")"#,
    );
    check(
        &format!(r#"{{"hed":{header},"hed":{header},"met":{{}}}}"#),
        r#"hed: given twice (as "hed" and "hed")"#,
    );
    check(
        &format!(r#"{{"hed":{header},"h":{header},"met":{{}}}}"#),
        r#"hed: given twice (as "hed" and "h")"#,
    );
}

#[test]
fn report_id() {
    let check_rid = |rid: &str, expect: &str| {
        check(&format!(r#"{{"hed":{{"rid":{rid},"v":"1.0"}},"met":{{}}}}"#), expect)
    };
    check_rid("0", "hed.rid: must be a positive integer, got 0");
    check_rid("-5", "hed.rid: must be a positive integer, got -5");
    check_rid("1.5", "hed.rid: must be a positive integer, found a float");
    check_rid(r#""7""#, "hed.rid: must be a positive integer, found a string");
    check_rid("[7]", "hed.rid: must be a positive integer, found an array");
    check_rid("true", "hed.rid: must be a positive integer, found a boolean");
    check(r#"{"hed":{"v":"1.0"},"met":{}}"#, r#"hed: missing "report_id" ("rid")"#);
    check(r#"{"hed":{"rid":null,"v":"1.0"},"met":{}}"#, r#"hed: missing "report_id" ("rid")"#);
    check(
        r#"{"hed":{"rid":7,"report_id":7,"v":"1.0"},"met":{}}"#,
        r#"hed.rid: given twice (as "rid" and "report_id")"#,
    );
    check(
        r#"{"header":{"report_id":0,"version":"1.0"},"metrics":{}}"#,
        "header.report_id: must be a positive integer, got 0",
    );
}

#[test]
fn version() {
    let check_version =
        |v: &str, expect: &str| check(&format!(r#"{{"hed":{{"rid":7,"v":{v}}},"met":{{}}}}"#), expect);
    check_version(r#""2.0""#, r#"hed.v: unsupported version "2.0", expected "1.0""#);
    check_version(r#""1""#, r#"hed.v: unsupported version "1", expected "1.0""#);
    check_version(r#""1.""#, r#"hed.v: unsupported version "1.", expected "1.0""#);
    check_version(r#""1.0.1""#, r#"hed.v: unsupported version "1.0.1", expected "1.0""#);
    check_version(r#""1.x""#, r#"hed.v: unsupported version "1.x", expected "1.0""#);
    check_version(r#"" 1.0""#, r#"hed.v: unsupported version " 1.0", expected "1.0""#);
    check_version(r#""""#, r#"hed.v: unsupported version "", expected "1.0""#);
    check_version("1.0", r#"hed.v: must be the string "1.0", found a float"#);
    check_version("1", r#"hed.v: must be the string "1.0", found an integer"#);
    check(r#"{"hed":{"rid":7},"met":{}}"#, r#"hed: missing "version" ("v")"#);
}

#[test]
fn metrics_and_custom_metrics_missing() {
    let needs = r#"report: needs "metrics" ("met"), "custom_metrics" ("cmet") or both"#;
    check(&with_header(r#""x":1"#), needs);
    check(&with_header(r#""met":null,"cmet":null"#), needs);
    check(r#"{"hed":{"rid":7,"v":"1.0"}}"#, needs);
}

#[test]
fn blocks_of_the_wrong_type() {
    check(&with_metrics("[]"), "met: must be a map, found an array");
    check(&with_header(r#""metrics":1"#), "metrics: must be a map, found an integer");
    check(&with_custom("5"), "cmet: must be a map of metric name to value, found an integer");
    check(&with_metrics(r#"{"ns":[]}"#), "met.ns: must be a map, found an array");
    check(&with_metrics(r#"{"tp":5}"#), "met.tp: must be a map, found an integer");
    check(&with_metrics(r#"{"up":"x"}"#), "met.up: must be a map, found a string");
    check(&with_metrics(r#"{"tc":[]}"#), "met.tc: must be a map, found an array");
    check(&with_metrics(r#"{"tc":{"ec":[]}}"#), "met.tc.ec: must be a map, found an array");
}

#[test]
fn fields_given_twice() {
    check(&with_header(r#""met":{},"metrics":{}"#), r#"met: given twice (as "met" and "metrics")"#);
    check(
        &with_metrics(r#"{"ns":{"bi":1,"bytes_in":1}}"#),
        r#"met.ns.bi: given twice (as "bi" and "bytes_in")"#,
    );
    check(
        &with_metrics(r#"{"tp":{"pts":[{"pt":22,"port":22}]}}"#),
        r#"met.tp.pts[0].pt: given twice (as "pt" and "port")"#,
    );
    check(&with_metrics(r#"{"tp":{"t":1,"t":1}}"#), r#"met.tp.t: given twice (as "t" and "t")"#);
    check(
        &with_connection(r#"{"rad":"10.0.0.1:1","remote_addr":"10.0.0.1:1"}"#),
        r#"met.tc.ec.cs[0].rad: given twice (as "rad" and "remote_addr")"#,
    );
    check(&with_custom(r#"{"m":[{"number":1}],"m":[{"number":2}]}"#), "cmet.m: given twice");
}

// Counters.

#[test]
fn counters() {
    let check_ns = |ns: &str, expect: &str| check(&with_metrics(&format!(r#"{{"ns":{ns}}}"#)), expect);
    check_ns(r#"{"bi":-1}"#, "met.ns.bi: must be a non-negative integer, got -1");
    check_ns(r#"{"bo":"12"}"#, "met.ns.bo: must be a non-negative integer, found a string");
    check_ns(r#"{"pi":1.5}"#, "met.ns.pi: must be a non-negative integer, found a float");
    check_ns(r#"{"po":true}"#, "met.ns.po: must be a non-negative integer, found a boolean");
    check_ns(r#"{"po":{}}"#, "met.ns.po: must be a non-negative integer, found a map");
    check(
        &with_header(r#""metrics":{"network_stats":{"packets_out":-9}}"#),
        "metrics.network_stats.packets_out: must be a non-negative integer, got -9",
    );
    check(&with_metrics(r#"{"tp":{"t":-1}}"#), "met.tp.t: must be a non-negative integer, got -1");
    check(&with_metrics(r#"{"tc":{"ec":{"t":-2}}}"#), "met.tc.ec.t: must be a non-negative integer, got -2");
}

#[test]
fn total_below_the_entries_listed() {
    check(
        &with_metrics(r#"{"tp":{"pts":[{"pt":22},{"pt":80}],"t":1}}"#),
        "met.tp.t: 1 is less than the 2 entries listed",
    );
    check(
        &with_metrics(r#"{"up":{"ports":[{"port":53}],"total":0}}"#),
        "met.up.total: 0 is less than the 1 entries listed",
    );
    check(
        &with_metrics(r#"{"tc":{"ec":{"cs":[{"rad":"10.0.0.1:1"}],"t":0}}}"#),
        "met.tc.ec.t: 0 is less than the 1 entries listed",
    );
}

// Listening ports.

#[test]
fn listening_ports() {
    let check_tp = |tp: &str, expect: &str| check(&with_metrics(&format!(r#"{{"tp":{tp}}}"#)), expect);
    check_tp(
        r#"{"pts":[{"pt":22},{"pt":80},{"pt":0}]}"#,
        "met.tp.pts[2].pt: must be a port number 1-65535, got 0",
    );
    check_tp(r#"{"pts":[{"pt":65536}]}"#, "met.tp.pts[0].pt: must be a port number 1-65535, got 65536");
    check_tp(r#"{"pts":[{"pt":-22}]}"#, "met.tp.pts[0].pt: must be a port number 1-65535, got -22");
    check_tp(r#"{"pts":[{"pt":22.5}]}"#, "met.tp.pts[0].pt: must be a port number 1-65535, found a float");
    check_tp(r#"{"pts":[{"pt":"ssh"}]}"#, "met.tp.pts[0].pt: must be a port number 1-65535, found a string");
    check_tp(r#"{"pts":[{"pt":"0"}]}"#, "met.tp.pts[0].pt: must be a port number 1-65535, got 0");
    check_tp(r#"{"pts":[{"pt":"+22"}]}"#, "met.tp.pts[0].pt: must be a port number 1-65535, found a string");
    check_tp(r#"{"pts":[{"if":"eth0"}]}"#, r#"met.tp.pts[0]: missing "port" ("pt")"#);
    check_tp(r#"{"pts":[{"pt":22,"if":5}]}"#, "met.tp.pts[0].if: must be a string, found an integer");
    check_tp(r#"{"pts":[5]}"#, "met.tp.pts[0]: must be a map, found an integer");
    check_tp(r#"{"pts":{}}"#, "met.tp.pts: must be an array, found a map");
    check(
        &with_metrics(r#"{"up":{"pts":[{"pt":53},{"pt":0},{"pt":70000}]}}"#),
        "met.up.pts[1].pt: must be a port number 1-65535, got 0; \
         met.up.pts[2].pt: must be a port number 1-65535, got 70000",
    );
    check(
        &with_header(r#""metrics":{"listening_udp_ports":{"ports":[{"port":0,"interface":"eth0"}]}}"#),
        "metrics.listening_udp_ports.ports[0].port: must be a port number 1-65535, got 0",
    );
}

// Connections.

#[test]
fn connections() {
    check(&with_connection(r#"{"lp":22}"#), r#"met.tc.ec.cs[0]: missing "remote_addr" ("rad")"#);
    check(&with_connection(r#"{"rad":null}"#), r#"met.tc.ec.cs[0]: missing "remote_addr" ("rad")"#);
    check(
        &with_connection(r#"{"rad":"10.0.0.1:1","lp":0}"#),
        "met.tc.ec.cs[0].lp: must be a port number 1-65535, got 0",
    );
    check(
        &with_connection(r#"{"rad":"10.0.0.1:1","lp":"abc"}"#),
        "met.tc.ec.cs[0].lp: must be a port number 1-65535, found a string",
    );
    check(
        &with_connection(r#"{"rad":"10.0.0.1:1","li":1}"#),
        "met.tc.ec.cs[0].li: must be a string, found an integer",
    );
    check(&with_connection("[]"), "met.tc.ec.cs[0]: must be a map, found an array");
    check(
        &with_metrics(r#"{"tc":{"ec":{"cs":{"rad":"10.0.0.1:1"}}}}"#),
        "met.tc.ec.cs: must be an array, found a map",
    );
}

#[test]
fn remote_addr() {
    let check_rad =
        |rad: &str, expect: &str| check(&with_remote_addr(rad), &format!("met.tc.ec.cs[0].rad: {expect}"));
    let not_addr = "is not an address of the form ip:port";
    check_rad(r#""10.0.0.1""#, &format!(r#""10.0.0.1" {not_addr}"#));
    check_rad(r#""10.0.0.1:""#, &format!(r#""10.0.0.1:" {not_addr}"#));
    check_rad(r#""10.0.0.1:http""#, &format!(r#""10.0.0.1:http" {not_addr}"#));
    check_rad(r#""10.0.0.1:+80""#, &format!(r#""10.0.0.1:+80" {not_addr}"#));
    check_rad(r#""10.0.0.1:123456""#, &format!(r#""10.0.0.1:123456" {not_addr}"#));
    check_rad(r#""10.0.0.256:80""#, &format!(r#""10.0.0.256:80" {not_addr}"#));
    check_rad(r#""host.example:80""#, &format!(r#""host.example:80" {not_addr}"#));
    check_rad(r#""[10.0.0.1]:80""#, &format!(r#""[10.0.0.1]:80" {not_addr}"#));
    check_rad(r#""[2001:db8::1]443""#, &format!(r#""[2001:db8::1]443" {not_addr}"#));
    check_rad(r#""[2001:db8::1]""#, &format!(r#""[2001:db8::1]" {not_addr}"#));
    check_rad(r#""2001:db8::1""#, &format!(r#""2001:db8::1" {not_addr}"#));
    check_rad(r#""[fe80::1%eth0]:22""#, &format!(r#""[fe80::1%eth0]:22" {not_addr}"#));
    check_rad(r#"":80""#, &format!(r#"":80" {not_addr}"#));
    check_rad(r#""""#, &format!(r#""" {not_addr}"#));
    check_rad(r#""10.0.0.1:0""#, r#""10.0.0.1:0" has a port outside 1-65535"#);
    check_rad(r#""10.0.0.1:65536""#, r#""10.0.0.1:65536" has a port outside 1-65535"#);
    check_rad(r#""[2001:db8::1]:0""#, r#""[2001:db8::1]:0" has a port outside 1-65535"#);
    check_rad("8883", r#"must be a string "ip:port", found an integer"#);
    check_rad(r#"["10.0.0.1",80]"#, r#"must be a string "ip:port", found an array"#);
}

/// Text from the device is escaped and clipped in messages, so a rejection stays readable and
/// small whatever was sent.
#[test]
fn echoed_text_is_escaped_and_clipped() {
    check(
        &with_remote_addr(r#""a\"b\n\u0000:1""#),
        r#"met.tc.ec.cs[0].rad: "a\"b\n\0:1" is not an address of the form ip:port"#,
    );
    let long = "9".repeat(100);
    check(
        &with_remote_addr(&format!(r#""{long}""#)),
        &format!(r#"met.tc.ec.cs[0].rad: "{}"... is not an address of the form ip:port"#, &long[..64]),
    );
    // Cut at a character boundary: "é" is two bytes and the 64th byte falls inside one.
    let accents = format!("x{}", "é".repeat(40));
    check(
        &with_remote_addr(&format!(r#""{accents}""#)),
        &format!(r#"met.tc.ec.cs[0].rad: "x{}"... is not an address of the form ip:port"#, "é".repeat(31)),
    );
    let name = "n".repeat(200);
    check(
        &with_custom(&format!(r#"{{"{name}":[{{"number":1}}]}}"#)),
        &format!(
            "cmet.{}...: metric name must be 1-128 characters of a-z, A-Z, 0-9, ':', '_', '-' \
             and not start with \"aws:\"",
            &name[..64]
        ),
    );
}

// Custom metrics.

#[test]
fn custom_metric_names() {
    let bad_name = "metric name must be 1-128 characters of a-z, A-Z, 0-9, ':', '_', '-' and not \
                    start with \"aws:\"";
    for name in ["aws:cpu", "bad name", "", "temp/1", "temp+", "temp#", "température"] {
        check(
            &with_custom(&format!(r#"{{"{name}":[{{"number":1}}]}}"#)),
            &format!("cmet.{name}: {bad_name}"),
        );
    }
    let long = "m".repeat(129);
    check(
        &with_custom(&format!(r#"{{"{long}":[{{"number":1}}]}}"#)),
        &format!("cmet.{}...: {bad_name}", &long[..64]),
    );
}

#[test]
fn custom_metric_shape() {
    let shape = r#"must be an array of one object such as [{"number": 1}]"#;
    let one_of = r#"must be an object with exactly one of "number", "number_list", "string_list", "ip_list""#;
    // The case AWS documents (DG-TS): a bare object instead of a one-element array.
    check(&with_custom_value(r#"{"number":0}"#), &format!("cmet.m: {shape}, found a map"));
    check(&with_custom_value("[]"), &format!("cmet.m: {shape}, found 0 elements"));
    check(
        &with_custom_value(r#"[{"number":1},{"number":2}]"#),
        &format!("cmet.m: {shape}, found 2 elements"),
    );
    check(&with_custom_value("75"), &format!("cmet.m: {shape}, found an integer"));
    check(&with_custom_value("[75]"), &format!("cmet.m[0]: {one_of}"));
    check(&with_custom_value("[{}]"), &format!("cmet.m[0]: {one_of}"));
    check(&with_custom_value(r#"[{"number":1,"number_list":[1]}]"#), &format!("cmet.m[0]: {one_of}"));
    check(
        &with_custom_value(r#"[{"numbers":[1]}]"#),
        r#"cmet.m[0].numbers: unknown custom metric type "numbers"; expected "number", "number_list", "string_list" or "ip_list""#,
    );
}

#[test]
fn custom_metric_values() {
    let check_value =
        |value: &str, expect: &str| check(&with_custom_value(value), &format!("cmet.m[0].{expect}"));
    check_value(r#"[{"number":"1"}]"#, "number: must be a number, found a string");
    check_value(r#"[{"number":null}]"#, "number: must be a number, found null");
    check_value(r#"[{"number":[1]}]"#, "number: must be a number, found an array");
    check_value(r#"[{"number_list":1}]"#, "number_list: must be an array, found an integer");
    check_value(r#"[{"number_list":[1,"a"]}]"#, "number_list[1]: must be a number, found a string");
    check_value(r#"[{"string_list":"a"}]"#, "string_list: must be an array, found a string");
    check_value(r#"[{"string_list":["a",1]}]"#, "string_list[1]: must be a string, found an integer");
    check_value(r#"[{"ip_list":"10.0.0.1"}]"#, "ip_list: must be an array, found a string");
    check_value(
        r#"[{"ip_list":["10.0.0.1","300.1.1.1"]}]"#,
        r#"ip_list[1]: "300.1.1.1" is not an IPv4 or IPv6 address"#,
    );
    check_value(
        r#"[{"ip_list":["10.0.0.0/8"]}]"#,
        r#"ip_list[0]: "10.0.0.0/8" is not an IPv4 or IPv6 address"#,
    );
    check_value(r#"[{"ip_list":["[::1]"]}]"#, r#"ip_list[0]: "[::1]" is not an IPv4 or IPv6 address"#);
    check_value(r#"[{"ip_list":[7]}]"#, "ip_list[0]: must be an IP address string, found an integer");
}

#[test]
fn several_problems_are_listed_together() {
    check(
        r#"{"hed":{"rid":0,"v":"2.0"},"met":{"ns":{"bi":-1},"tp":{"pts":[{"pt":0}]}},"cmet":{"m":{"number":1}}}"#,
        r#"hed.rid: must be a positive integer, got 0; hed.v: unsupported version "2.0", expected "1.0"; met.tp.pts[0].pt: must be a port number 1-65535, got 0; met.ns.bi: must be a non-negative integer, got -1; cmet.m: must be an array of one object such as [{"number": 1}], found a map"#,
    );
}

#[test]
fn at_most_ten_problems_are_listed_and_the_rest_counted() {
    let ports = vec![r#"{"pt":0}"#; 25].join(",");
    let rejection =
        decode(with_metrics(&format!(r#"{{"tp":{{"pts":[{ports}]}}}}"#)).as_bytes(), Format::Json)
            .unwrap_err();
    let problems: Vec<&str> = rejection.message.split("; ").collect();
    assert_eq!(problems.len(), 11);
    assert_eq!(problems[9], "met.tp.pts[9].pt: must be a port number 1-65535, got 0");
    assert_eq!(problems[10], "and 15 more");
}

/// The report id is echoed in the rejection whenever it could be read, so that the device can
/// correlate the reply.
#[test]
fn rejection_carries_the_report_id_when_readable() {
    let report_id = |json: &str| decode(json.as_bytes(), Format::Json).unwrap_err().report_id;
    assert_eq!(report_id(&with_metrics(r#"{"ns":{"bi":-1}}"#)), Some(7));
    assert_eq!(report_id(r#"{"hed":{"rid":7,"v":"2.0"},"met":{}}"#), Some(7));
    assert_eq!(report_id(r#"{"hed":{"rid":7,"v":"1.0"}}"#), Some(7));
    assert_eq!(report_id(r#"{"h":{"rid":9,"v":"1.0"},"met":5}"#), Some(9));
    assert_eq!(report_id(r#"{"hed":{"rid":0,"v":"1.0"},"met":{}}"#), None);
    assert_eq!(report_id(r#"{"met":{}}"#), None);
    assert_eq!(report_id(r#"{"hed":{"rid":7,"v":"1.0"},"met":{}"#), None);
}

// Syntax and limits, per format: these messages come from the parsers.

#[track_caller]
fn check_json(bytes: &[u8], expect: &str) {
    check_bytes(bytes, Format::Json, expect, "JSON");
}

#[track_caller]
fn check_cbor(bytes: &[u8], expect: &str) {
    check_bytes(bytes, Format::Cbor, expect, "CBOR");
}

const VALID: &str = r#"{"hed":{"rid":7,"v":"1.0"},"met":{}}"#;

#[test]
fn json_syntax() {
    check_json(b"", "not valid JSON: EOF while parsing a value at line 1 column 0");
    check_json(b"{", "not valid JSON: EOF while parsing an object at line 1 column 1");
    check_json(&VALID.as_bytes()[..20], "not valid JSON: EOF while parsing a value at line 1 column 20");
    check_json(format!("{VALID} x").as_bytes(), "not valid JSON: trailing characters at line 1 column 38");
    check_json(
        format!("{VALID}{VALID}").as_bytes(),
        "not valid JSON: trailing characters at line 1 column 37",
    );
    check_json(b"\xff", "not valid JSON: expected value at line 1 column 1");
    check_json(b"{\"hed\":\"\xff\"}", "not valid JSON: invalid unicode code point at line 1 column 9");
    check_json(b"{'hed':1}", "not valid JSON: key must be a string at line 1 column 2");
    check_json(b"{\"a\":NaN}", "not valid JSON: expected value at line 1 column 6");
    check_json(&cbor(VALID), "not valid JSON: expected value at line 1 column 1");
}

#[test]
fn json_whitespace_around_the_document_is_fine() {
    assert!(decode(format!(" \n{VALID}\r\n ").as_bytes(), Format::Json).is_ok());
}

#[test]
fn cbor_syntax() {
    let valid = cbor(VALID);
    check_cbor(b"", "not valid CBOR: end of input bytes");
    check_cbor(&valid[..valid.len() - 1], "not valid CBOR: end of input bytes");
    // A map key that is not text.
    check_cbor(
        &[0xa1, 0x01, 0x02],
        "not valid CBOR: decode error: map keys must be strings, found an integer",
    );
    check_cbor(
        &[0xa1, 0x41, b'k', 0x02],
        "not valid CBOR: decode error: map keys must be strings, found a byte string",
    );
    // Text that is not UTF-8.
    check_cbor(&[0xa1, 0x61, 0xff, 0x02], "not valid CBOR: invalid utf-8 at position 1");
    // Tags other than bignums, `undefined`, a lone `break`, a reserved head.
    check_cbor(&[0xc1, 0x01], "not valid CBOR: unexpected tag 1 at position 0");
    check_cbor(&[0xf7], "not valid CBOR: unexpected type undefined at position 0: unexpected type");
    check_cbor(&[0xff], "not valid CBOR: unexpected type break at position 0: unexpected type");
    check_cbor(&[0x1c], "not valid CBOR: unexpected type 0x1c at position 0: unexpected type");
    // Lengths that promise more than the payload holds allocate nothing up front.
    check_cbor(&[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], "not valid CBOR: end of input bytes");
    check_cbor(&[0xbb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], "not valid CBOR: end of input bytes");
    check_cbor(&[0x7b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], "not valid CBOR: end of input bytes");
    // An indefinite map with a key and no value.
    check_cbor(
        &[0xbf, 0x61, b'k', 0xff],
        "not valid CBOR: unexpected type break at position 3: unexpected type",
    );
    // JSON on the CBOR topic: `{` is the head of a text string with an 8-byte length.
    check_cbor(VALID.as_bytes(), "not valid CBOR: end of input bytes");
}

#[test]
fn cbor_trailing_bytes() {
    let mut bytes = cbor(VALID);
    bytes.push(0x00);
    check_cbor(&bytes, "not valid CBOR: 1 byte after the end of the document");
    bytes.extend_from_slice(&cbor(VALID));
    check_cbor(
        &bytes,
        &format!("not valid CBOR: {} bytes after the end of the document", 1 + cbor(VALID).len()),
    );
}

#[test]
fn cbor_values_json_cannot_express() {
    let with_number = |number: &[u8]| {
        let mut bytes = cbor(&with_custom_value(r#"[{"number":0}]"#));
        bytes.pop();
        bytes.extend_from_slice(number);
        bytes
    };
    check_cbor(
        &with_number(&[0xfb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0]),
        "cmet.m[0].number: must be a finite number, got NaN",
    );
    check_cbor(&with_number(&[0xf9, 0x7c, 0x00]), "cmet.m[0].number: must be a finite number, got inf");
    check_cbor(
        &with_number(&[0xfa, 0xff, 0x80, 0, 0]),
        "cmet.m[0].number: must be a finite number, got -inf",
    );
    check_cbor(&with_number(&[0x41, 0x01]), "cmet.m[0].number: must be a number, found a byte string");
    // A report id beyond u64, as a positive bignum (tag 2) of 2^64.
    let mut bytes = vec![0xa2];
    Doc::Text("hed".into()).to_cbor(Lengths::Definite).iter().for_each(|b| bytes.push(*b));
    bytes.push(0xa2);
    bytes.extend_from_slice(&Doc::Text("rid".into()).to_cbor(Lengths::Definite));
    bytes.extend_from_slice(&[0xc2, 0x49, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
    bytes.extend_from_slice(&cbor(r#""v""#));
    bytes.extend_from_slice(&cbor(r#""1.0""#));
    bytes.extend_from_slice(&cbor(r#""met""#));
    bytes.push(0xa0);
    check_cbor(&bytes, "hed.rid: must be at most 18446744073709551615, got 18446744073709551616");
    // The most negative CBOR integer, -2^64.
    let mut counter = Vec::new();
    head(&mut counter, 1, u64::MAX);
    let mut bytes = cbor(&with_metrics(r#"{"ns":{"bi":0}}"#));
    bytes.pop();
    bytes.extend_from_slice(&counter);
    check_cbor(&bytes, "met.ns.bi: must be a non-negative integer, got -18446744073709551616");
}

/// Nesting is bounded while parsing, so no payload can exhaust the stack, whatever the size
/// limit.
#[test]
fn deep_nesting() {
    let deep = "nested deeper than 16 levels";
    check_json(&vec![b'['; 100_000], &format!("not valid JSON: {deep} at line 1 column 17"));
    check_json("{\"a\":".repeat(20_000).as_bytes(), &format!("not valid JSON: {deep} at line 1 column 81"));
    check_cbor(&vec![0x81; 100_000], &format!("not valid CBOR: decode error: {deep}"));
    check_cbor(&vec![0x9f; 100_000], &format!("not valid CBOR: decode error: {deep}"));
    check_cbor(&[0xbf, 0x60].repeat(50_000), &format!("not valid CBOR: decode error: {deep}"));
    check_cbor(&[0xa1, 0x60].repeat(50_000), &format!("not valid CBOR: decode error: {deep}"));

    let unlimited = Limits { max_payload_bytes: usize::MAX };
    for (bytes, format) in [(vec![b'['; 4_000_000], Format::Json), (vec![0x81; 4_000_000], Format::Cbor)] {
        let rejection = decode_report(&bytes, format, &unlimited).unwrap_err();
        assert!(rejection.message.contains(deep), "{}", rejection.message);
    }
}

/// Nesting as deep as a valid report and a little more is fine: unknown extensions may nest.
#[test]
fn nesting_within_the_limit() {
    let nested = format!("{}1{}", "[".repeat(14), "]".repeat(14));
    let json = with_header(&format!(r#""met":{{}},"ext":{nested}"#));
    assert!(decode(json.as_bytes(), Format::Json).is_ok());
    assert!(decode(&cbor(&json), Format::Cbor).is_ok());
}

#[test]
fn size_limit() {
    let limits = Limits { max_payload_bytes: VALID.len() };
    for (bytes, format) in [(VALID.as_bytes().to_vec(), Format::Json), (cbor(VALID), Format::Cbor)] {
        assert!(decode_report(&bytes, format, &limits).is_ok(), "{format:?} at the limit");
        let mut bigger = bytes.clone();
        match format {
            Format::Json => bigger.insert(0, b' '),
            Format::Cbor => bigger.push(0),
        }
        let limits = Limits { max_payload_bytes: bytes.len() };
        let rejection = decode_report(&bigger, format, &limits).unwrap_err();
        assert_eq!(rejection.code, ErrorCode::InvalidPayload);
        assert_eq!(
            rejection.message,
            format!(
                "{MALFORMED}: report: payload of {} bytes exceeds the limit of {} bytes",
                bytes.len() + 1,
                bytes.len()
            )
        );
        assert_eq!(rejection.report_id, None);
    }
    assert_eq!(Limits::default().max_payload_bytes, 128 * 1024);
}
