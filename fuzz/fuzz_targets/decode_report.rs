//! Feeds arbitrary bytes to the report and reply decoders in both formats. Beyond "never
//! panics", a report that decodes must survive every encoding unchanged and every rejection
//! must carry the AWS code.

#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_wire::{ErrorCode, Format, Limits, Names, decode_reply, decode_report, encode_report};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    for format in [Format::Json, Format::Cbor] {
        match decode_report(data, format, &limits) {
            Ok(report) => {
                for format in [Format::Json, Format::Cbor] {
                    for names in [Names::Long, Names::Short] {
                        let bytes = encode_report(&report, format, names);
                        let again = decode_report(&bytes, format, &limits);
                        assert_eq!(again.as_ref(), Ok(&report), "{format:?} {names:?}");
                    }
                }
            }
            Err(rejection) => assert_eq!(rejection.code, ErrorCode::InvalidPayload),
        }
        let _ = decode_reply(data, format);
    }
});
