//! The reserved MQTT topics of Device Defender (spec §2.1):
//! `$aws/things/{thing}/defender/metrics/{json|cbor}[/accepted|/rejected]`.

use crate::codec::Format;
use std::fmt;

/// Which of the three topics of a thing and format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopicKind {
    /// Device → server: the report itself.
    Report,
    /// Server → device: the report was accepted.
    Accepted,
    /// Server → device: the report was rejected, with a reason.
    Rejected,
}

/// A parsed Device Defender topic. `Display` builds the topic string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReportTopic<'a> {
    pub thing: &'a str,
    pub format: Format,
    pub kind: TopicKind,
}

const PREFIX: &str = "$aws/things/";
const MIDDLE: &str = "/defender/metrics/";

impl<'a> ReportTopic<'a> {
    pub fn new(thing: &'a str, format: Format, kind: TopicKind) -> Self {
        ReportTopic { thing, format, kind }
    }

    /// Parses a topic; `None` unless it is exactly one of the Defender topics of a validly
    /// named thing.
    pub fn parse(topic: &'a str) -> Option<Self> {
        let rest = topic.strip_prefix(PREFIX)?;
        let (thing, rest) = rest.split_once(MIDDLE)?;
        if !is_valid_thing_name(thing) {
            return None;
        }
        let (format, kind) = match rest.split_once('/') {
            None => (rest, TopicKind::Report),
            Some((format, "accepted")) => (format, TopicKind::Accepted),
            Some((format, "rejected")) => (format, TopicKind::Rejected),
            Some(_) => return None,
        };
        let format = format.parse().ok()?;
        Some(ReportTopic { thing, format, kind })
    }

    /// The topic of a reply to this report topic.
    pub fn reply(self, accepted: bool) -> Self {
        let kind = if accepted { TopicKind::Accepted } else { TopicKind::Rejected };
        ReportTopic { kind, ..self }
    }
}

impl fmt::Display for ReportTopic<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}{MIDDLE}{}", self.thing, self.format.as_str())?;
        match self.kind {
            TopicKind::Report => Ok(()),
            TopicKind::Accepted => f.write_str("/accepted"),
            TopicKind::Rejected => f.write_str("/rejected"),
        }
    }
}

/// Thing names are 1–128 characters of `a-z A-Z 0-9 : _ -` (the AWS pattern). Because `/`,
/// `+` and `#` cannot occur, a thing name can never widen a topic filter or reach another
/// thing's topics.
pub fn is_valid_thing_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'))
}

/// Custom metric names follow the thing-name pattern and may not use the reserved `aws:`
/// prefix.
pub fn is_valid_metric_name(name: &str) -> bool {
    is_valid_thing_name(name) && !name.starts_with("aws:")
}
