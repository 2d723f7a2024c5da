//! The four encodings: JSON or CBOR, with long or short key names.

use crate::decode::report_from_value;
use crate::document::Document;
use crate::encode::report_to_value;
use crate::error::Rejection;
use crate::model::MetricReport;
use crate::value::Value;

/// Payload encoding, chosen by the topic suffix (`/json` or `/cbor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Json,
    Cbor,
}

impl Format {
    /// The topic suffix and config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Cbor => "cbor",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "json" => Ok(Format::Json),
            "cbor" => Ok(Format::Cbor),
            other => Err(format!("unknown format \"{other}\"; expected \"json\" or \"cbor\"")),
        }
    }
}

/// Key names used when encoding; decoding accepts both, even mixed in one report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Names {
    /// `header`, `report_id`, ...: readable.
    Long,
    /// `hed`, `rid`, ...: roughly 40% smaller, recommended on metered links.
    Short,
}

impl std::str::FromStr for Names {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "long" => Ok(Names::Long),
            "short" => Ok(Names::Short),
            other => Err(format!("unknown key names \"{other}\"; expected \"long\" or \"short\"")),
        }
    }
}

/// Limits applied before decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted payload. AWS IoT caps MQTT payloads at 128 KiB.
    pub max_payload_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_payload_bytes: 128 * 1024 }
    }
}

/// Decodes and validates a report. Never panics, whatever the bytes.
pub fn decode_report(bytes: &[u8], format: Format, limits: &Limits) -> Result<MetricReport, Rejection> {
    if bytes.len() > limits.max_payload_bytes {
        let why = format!(
            "report: payload of {} bytes exceeds the limit of {} bytes",
            bytes.len(),
            limits.max_payload_bytes
        );
        return Err(Rejection::invalid_payload(&[why], None));
    }
    let doc = parse(bytes, format).map_err(|why| Rejection::invalid_payload(&[why], None))?;
    report_from_value(doc.root())
        .map_err(|(problems, report_id)| Rejection::invalid_payload(&problems, report_id))
}

/// Encodes a report. JSON is compact (no spaces); CBOR uses definite lengths and text keys.
///
/// The report is written as given: one that would not validate (a port 0, a non-finite custom
/// number, which JSON writes as `null`) is encoded anyway and rejected by the receiver.
pub fn encode_report(report: &MetricReport, format: Format, names: Names) -> Vec<u8> {
    let doc = report_to_value(report, names);
    serialize(&doc, format)
}

pub(crate) fn parse(bytes: &[u8], format: Format) -> Result<Document<'_>, String> {
    match format {
        Format::Json => {
            let mut de = serde_json::Deserializer::from_slice(bytes);
            let doc =
                Document::deserialize(&mut de, bytes.len()).map_err(|e| format!("not valid JSON: {e}"))?;
            de.end().map_err(|e| format!("not valid JSON: {e}"))?;
            Ok(doc)
        }
        Format::Cbor => {
            let mut de = minicbor_serde::Deserializer::new(bytes);
            let doc =
                Document::deserialize(&mut de, bytes.len()).map_err(|e| format!("not valid CBOR: {e}"))?;
            // A CBOR item is self-delimiting, so the deserialiser stops at its end; anything
            // after it is a second item or garbage, and accepting it would hide a broken encoder.
            match bytes.len() - de.decoder().position() {
                0 => {}
                1 => return Err("not valid CBOR: 1 byte after the end of the document".to_owned()),
                n => return Err(format!("not valid CBOR: {n} bytes after the end of the document")),
            }
            Ok(doc)
        }
    }
}

pub(crate) fn serialize(doc: &Value<'_>, format: Format) -> Vec<u8> {
    // Neither serialiser can fail on a tree of maps with string keys written to a Vec.
    match format {
        Format::Json => serde_json::to_vec(doc).expect("JSON encoding of a document tree"),
        Format::Cbor => minicbor_serde::to_vec(doc).expect("CBOR encoding of a document tree"),
    }
}
