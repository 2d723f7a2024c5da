//! Why a report was rejected, in the form the `/rejected` reply carries.

use std::fmt;

/// The `statusDetails.ErrorCode` of a `/rejected` reply.
///
/// AWS documents one code, `InvalidPayload`; clients only know that one, so every decoding and
/// validation failure uses it. The other variants are Warden extensions for refusals that AWS
/// handles silently (it drops duplicates and throttles fast reporters without saying so); they
/// are listed in the README and never replace `InvalidPayload`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The payload is not a well-formed metrics report (AWS).
    InvalidPayload,
    /// Extension: `report_id` is not greater than the thing's last accepted one.
    DuplicateReportId,
    /// Extension: the thing reported sooner than the minimum period allows.
    Throttled,
    /// Any other code found in a reply from another server.
    Other(String),
}

impl ErrorCode {
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::InvalidPayload => "InvalidPayload",
            ErrorCode::DuplicateReportId => "DuplicateReportId",
            ErrorCode::Throttled => "Throttled",
            ErrorCode::Other(s) => s,
        }
    }

    pub fn parse(s: &str) -> ErrorCode {
        match s {
            "InvalidPayload" => ErrorCode::InvalidPayload,
            "DuplicateReportId" => ErrorCode::DuplicateReportId,
            "Throttled" => ErrorCode::Throttled,
            other => ErrorCode::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The prefix of every `InvalidPayload` message: the exact text AWS sends, so clients that
/// match on it keep working; Warden appends what was wrong.
pub const MALFORMED: &str = "Malformed metrics report";

/// A refused report: the code and message for `/rejected`, and the report id when the header
/// could be read (AWS echoes it so devices can correlate).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Rejection {
    pub code: ErrorCode,
    pub message: String,
    pub report_id: Option<u64>,
}

impl Rejection {
    /// An `InvalidPayload` rejection listing each problem as `field: what is wrong`.
    pub fn invalid_payload(problems: &[String], report_id: Option<u64>) -> Rejection {
        let message = match problems {
            [] => MALFORMED.to_owned(),
            problems => format!("{MALFORMED}: {}", problems.join("; ")),
        };
        Rejection { code: ErrorCode::InvalidPayload, message, report_id }
    }
}
