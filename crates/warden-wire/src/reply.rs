//! The `/accepted` and `/rejected` payloads (spec §2.2–2.3), in the request's encoding.
//!
//! ```json
//! {"thingName":"dev-1","reportId":1542697506,"status":"ACCEPTED","timestamp":1542697506269}
//! {"thingName":"dev-1","reportId":7,"status":"REJECTED",
//!  "statusDetails":{"ErrorCode":"InvalidPayload","ErrorMessage":"Malformed metrics report: ..."},
//!  "timestamp":1635802047699}
//! ```

use crate::codec::{Format, parse, serialize};
use crate::error::ErrorCode;
use crate::value::Value;

/// A reply to one report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub thing_name: String,
    /// Echoed from the report so devices can correlate; absent when the header was unreadable.
    pub report_id: Option<u64>,
    pub status: ReplyStatus,
    /// Server time of the reply, epoch milliseconds.
    pub timestamp_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyStatus {
    Accepted,
    Rejected { code: ErrorCode, message: String },
}

pub fn encode_reply(reply: &Reply, format: Format) -> Vec<u8> {
    let text = |s: &str| Value::Text(s.to_owned());
    let mut doc = vec![("thingName".to_owned(), text(&reply.thing_name))];
    if let Some(id) = reply.report_id {
        doc.push(("reportId".to_owned(), Value::Int(id.into())));
    }
    match &reply.status {
        ReplyStatus::Accepted => doc.push(("status".to_owned(), text("ACCEPTED"))),
        ReplyStatus::Rejected { code, message } => {
            doc.push(("status".to_owned(), text("REJECTED")));
            doc.push((
                "statusDetails".to_owned(),
                Value::Map(vec![
                    ("ErrorCode".to_owned(), text(code.as_str())),
                    ("ErrorMessage".to_owned(), text(message)),
                ]),
            ));
        }
    }
    doc.push(("timestamp".to_owned(), Value::Int(reply.timestamp_ms.into())));
    serialize(&Value::Map(doc), format)
}

/// Decodes a reply from any Device Defender server (Warden or AWS IoT).
pub fn decode_reply(bytes: &[u8], format: Format) -> Result<Reply, String> {
    let doc = parse(bytes, format)?;
    let Value::Map(entries) = &doc else {
        return Err("reply is not a map".to_owned());
    };
    let text = |v: Option<&Value>| match v {
        Some(Value::Text(s)) => Some(s.clone()),
        _ => None,
    };
    let int = |v: Option<&Value>| match v {
        Some(Value::Int(i)) => u64::try_from(*i).ok(),
        _ => None,
    };
    let status = match text(get(entries, "status")).as_deref() {
        Some("ACCEPTED") => ReplyStatus::Accepted,
        Some("REJECTED") => {
            let details = match get(entries, "statusDetails") {
                Some(Value::Map(d)) => d.as_slice(),
                _ => &[],
            };
            ReplyStatus::Rejected {
                code: ErrorCode::parse(&text(get(details, "ErrorCode")).unwrap_or_default()),
                message: text(get(details, "ErrorMessage")).unwrap_or_default(),
            }
        }
        Some(other) => {
            return Err(format!("reply status is {other:?}, expected \"ACCEPTED\" or \"REJECTED\""));
        }
        None => return Err("reply has no \"status\" string".to_owned()),
    };
    Ok(Reply {
        thing_name: text(get(entries, "thingName")).unwrap_or_default(),
        report_id: int(get(entries, "reportId")),
        status,
        timestamp_ms: int(get(entries, "timestamp")).unwrap_or_default(),
    })
}

fn get<'v>(entries: &'v [(String, Value)], key: &str) -> Option<&'v Value> {
    entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}
