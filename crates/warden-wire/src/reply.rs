//! The `/accepted` and `/rejected` payloads (spec §2.2–2.3), in the request's encoding.
//!
//! ```json
//! {"thingName":"dev-1","reportId":1542697506,"status":"ACCEPTED","timestamp":1542697506269}
//! {"thingName":"dev-1","reportId":7,"status":"REJECTED",
//!  "statusDetails":{"ErrorCode":"InvalidPayload","ErrorMessage":"Malformed metrics report: ..."},
//!  "timestamp":1635802047699}
//! ```

use crate::codec::{Format, parse, serialize};
use crate::document::{Item, Node};
use crate::error::ErrorCode;
use crate::value::Value;
use std::borrow::Cow;

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
    let text = |s| Value::Text(Cow::Borrowed(s));
    let mut doc = vec![(Cow::Borrowed("thingName"), text(&reply.thing_name))];
    if let Some(id) = reply.report_id {
        doc.push((Cow::Borrowed("reportId"), Value::Int(id.into())));
    }
    match &reply.status {
        ReplyStatus::Accepted => doc.push((Cow::Borrowed("status"), text("ACCEPTED"))),
        ReplyStatus::Rejected { code, message } => {
            doc.push((Cow::Borrowed("status"), text("REJECTED")));
            doc.push((
                Cow::Borrowed("statusDetails"),
                Value::Map(vec![
                    (Cow::Borrowed("ErrorCode"), text(code.as_str())),
                    (Cow::Borrowed("ErrorMessage"), text(message)),
                ]),
            ));
        }
    }
    doc.push((Cow::Borrowed("timestamp"), Value::Int(reply.timestamp_ms.into())));
    serialize(&Value::Map(doc), format)
}

/// Decodes a reply from any Device Defender server (Warden or AWS IoT).
pub fn decode_reply(bytes: &[u8], format: Format) -> Result<Reply, String> {
    let doc = parse(bytes, format)?;
    let reply = doc.root();
    if !matches!(reply.item(), Item::Map { .. }) {
        return Err("reply is not a map".to_owned());
    }
    let text = |v: Option<Node>| match v.map(Node::item) {
        Some(Item::Text(s)) => Some(String::from(&**s)),
        _ => None,
    };
    let int = |v: Option<Node>| match v.map(Node::item) {
        Some(Item::Int(i)) => u64::try_from(*i).ok(),
        _ => None,
    };
    let status = match text(get(reply, "status")).as_deref() {
        Some("ACCEPTED") => ReplyStatus::Accepted,
        Some("REJECTED") => {
            // A `statusDetails` that is not a map has no entries, so both fields read as absent.
            let details = get(reply, "statusDetails");
            let detail = |key| details.and_then(|d| get(d, key));
            ReplyStatus::Rejected {
                code: ErrorCode::parse(&text(detail("ErrorCode")).unwrap_or_default()),
                message: text(detail("ErrorMessage")).unwrap_or_default(),
            }
        }
        Some(other) => {
            return Err(format!("reply status is {other:?}, expected \"ACCEPTED\" or \"REJECTED\""));
        }
        None => return Err("reply has no \"status\" string".to_owned()),
    };
    Ok(Reply {
        thing_name: text(get(reply, "thingName")).unwrap_or_default(),
        report_id: int(get(reply, "reportId")),
        status,
        timestamp_ms: int(get(reply, "timestamp")).unwrap_or_default(),
    })
}

/// The first entry under `key`, if `map` is a map.
fn get<'v>(map: Node<'v>, key: &str) -> Option<Node<'v>> {
    map.entries().find(|(k, _)| *k == key).map(|(_, v)| v)
}
