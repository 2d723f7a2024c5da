//! The `/accepted` and `/rejected` payloads, in the exact AWS JSON shapes (spec §2.2–2.3) and
//! the same document in CBOR.

use crate::support::{Doc, Lengths};
use warden_wire::{ErrorCode, Format, Reply, ReplyStatus, decode_reply, encode_reply};

fn accepted(thing: &str, report_id: u64, timestamp_ms: u64) -> Reply {
    Reply {
        thing_name: thing.to_owned(),
        report_id: Some(report_id),
        status: ReplyStatus::Accepted,
        timestamp_ms,
    }
}

fn rejected(thing: &str, report_id: Option<u64>, code: ErrorCode, message: &str) -> Reply {
    Reply {
        thing_name: thing.to_owned(),
        report_id,
        status: ReplyStatus::Rejected { code, message: message.to_owned() },
        timestamp_ms: 1635802047699,
    }
}

/// Checks that `reply` encodes to exactly `json`, to the same document in CBOR, and that both
/// decode back to `reply`.
#[track_caller]
fn check(reply: &Reply, json: &str) {
    let ours = encode_reply(reply, Format::Json);
    assert_eq!(String::from_utf8(ours).unwrap(), json);
    let cbor = encode_reply(reply, Format::Cbor);
    let cbor_doc: Doc = minicbor_serde::from_slice(&cbor).unwrap();
    assert_eq!(cbor_doc, Doc::from_json(json), "CBOR carries the same document");
    assert_eq!(cbor, Doc::from_json(json).to_cbor(Lengths::Definite), "CBOR is minimal");
    assert_eq!(decode_reply(json.as_bytes(), Format::Json).as_ref(), Ok(reply));
    assert_eq!(decode_reply(&cbor, Format::Cbor).as_ref(), Ok(reply));
}

#[test]
fn accepted_as_aws_sends_it() {
    // The verified sample of spec §2.2 (WS18), byte for byte.
    check(
        &accepted("DefenderWorkshopThing", 1542697506, 1542697506269),
        r#"{"thingName":"DefenderWorkshopThing","reportId":1542697506,"status":"ACCEPTED","timestamp":1542697506269}"#,
    );
}

#[test]
fn rejected_as_aws_sends_it() {
    // The verified sample of spec §2.3 (DG-TS), without a report id, byte for byte.
    check(
        &rejected("myThing", None, ErrorCode::InvalidPayload, "Malformed metrics report"),
        r#"{"thingName":"myThing","status":"REJECTED","statusDetails":{"ErrorCode":"InvalidPayload","ErrorMessage":"Malformed metrics report"},"timestamp":1635802047699}"#,
    );
    check(
        &rejected(
            "myThing",
            Some(7),
            ErrorCode::InvalidPayload,
            "Malformed metrics report: hed.rid: must be a positive integer, got 0",
        ),
        r#"{"thingName":"myThing","reportId":7,"status":"REJECTED","statusDetails":{"ErrorCode":"InvalidPayload","ErrorMessage":"Malformed metrics report: hed.rid: must be a positive integer, got 0"},"timestamp":1635802047699}"#,
    );
}

#[test]
fn extension_and_foreign_error_codes() {
    for (code, name) in [
        (ErrorCode::DuplicateReportId, "DuplicateReportId"),
        (ErrorCode::Throttled, "Throttled"),
        (ErrorCode::Other("SomethingNew".to_owned()), "SomethingNew"),
    ] {
        assert_eq!(code.as_str(), name);
        assert_eq!(code.to_string(), name);
        assert_eq!(ErrorCode::parse(name), code);
        check(
            &rejected("t", Some(1), code, "m"),
            &format!(
                r#"{{"thingName":"t","reportId":1,"status":"REJECTED","statusDetails":{{"ErrorCode":"{name}","ErrorMessage":"m"}},"timestamp":1635802047699}}"#
            ),
        );
    }
    assert_eq!(ErrorCode::parse("InvalidPayload"), ErrorCode::InvalidPayload);
}

#[test]
fn text_is_escaped() {
    check(
        &rejected("t", None, ErrorCode::InvalidPayload, "say \"hi\"\n"),
        r#"{"thingName":"t","status":"REJECTED","statusDetails":{"ErrorCode":"InvalidPayload","ErrorMessage":"say \"hi\"\n"},"timestamp":1635802047699}"#,
    );
}

#[test]
fn large_numbers() {
    check(
        &accepted("t", u64::MAX, u64::MAX),
        r#"{"thingName":"t","reportId":18446744073709551615,"status":"ACCEPTED","timestamp":18446744073709551615}"#,
    );
}

/// Decoding is tolerant: it reads replies of other servers, in any key order, with fields it
/// does not know.
#[test]
fn decode_tolerates_order_and_extra_fields() {
    let json = br#"{"timestamp":5,"status":"ACCEPTED","extra":[1],"reportId":3,"thingName":"t"}"#;
    assert_eq!(decode_reply(json, Format::Json), Ok(accepted("t", 3, 5)));
    let cbor = Doc::from_json(std::str::from_utf8(json).unwrap()).to_cbor(Lengths::Indefinite);
    assert_eq!(decode_reply(&cbor, Format::Cbor), Ok(accepted("t", 3, 5)));
    let json = br#"{"thingName":"t","status":"ACCEPTED","timestamp":5}"#;
    assert_eq!(decode_reply(json, Format::Json).unwrap().report_id, None);
}

#[test]
fn decode_errors() {
    let check_error = |bytes: &[u8], format, expect: &str| {
        assert_eq!(decode_reply(bytes, format), Err(expect.to_owned()), "{}", String::from_utf8_lossy(bytes));
    };
    check_error(b"[]", Format::Json, "reply is not a map");
    check_error(br#"{"thingName":"t"}"#, Format::Json, r#"reply has no "status" string"#);
    check_error(br#"{"status":1}"#, Format::Json, r#"reply has no "status" string"#);
    check_error(
        br#"{"status":"accepted"}"#,
        Format::Json,
        r#"reply status is "accepted", expected "ACCEPTED" or "REJECTED""#,
    );
    check_error(b"{", Format::Json, "not valid JSON: EOF while parsing an object at line 1 column 1");
    check_error(&[0xa0, 0x00], Format::Cbor, "not valid CBOR: 1 byte after the end of the document");
    check_error(&[0x81; 1000], Format::Cbor, "not valid CBOR: decode error: nested deeper than 16 levels");
}
