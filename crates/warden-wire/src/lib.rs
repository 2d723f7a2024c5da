//! The AWS IoT Device Defender wire format, shared by the device agent and the server.
//!
//! This crate owns the metrics report model ([`MetricReport`]), its four encodings (JSON or CBOR,
//! with long or short key names), validation with the AWS error code `InvalidPayload`, the MQTT
//! topic names and the `/accepted` and `/rejected` reply payloads. It does no I/O and never reads
//! the clock: timestamps are arguments, so the same bytes in always give the same result out.
//!
//! ```
//! use warden_wire::{decode_report, encode_report, Format, Limits, Names};
//!
//! let json = br#"{"hed":{"rid":7,"v":"1.0"},"met":{"ns":{"bo":12}}}"#;
//! let report = decode_report(json, Format::Json, &Limits::default()).unwrap();
//! assert_eq!(report.header.report_id, 7);
//! let cbor = encode_report(&report, Format::Cbor, Names::Short);
//! assert_eq!(decode_report(&cbor, Format::Cbor, &Limits::default()).unwrap(), report);
//! ```

mod codec;
mod decode;
mod document;
mod encode;
mod error;
mod keys;
mod model;
mod reply;
mod topic;
mod value;

pub use codec::{Format, Limits, Names, decode_report, encode_report};
pub use error::{ErrorCode, Rejection};
pub use model::{
    Connection, CustomMetricValue, EstablishedConnections, Header, ListeningPort, ListeningPorts,
    MetricReport, Metrics, NetworkStats, TcpConnections,
};
pub use reply::{Reply, ReplyStatus, decode_reply, encode_reply};
pub use topic::{ReportTopic, TopicKind, is_valid_metric_name, is_valid_thing_name};
