//! Who is on the other end of a session: the [`Identity`] fixed at CONNECT from the verified
//! client certificate, and the reasons a CONNECT is refused before any policy is asked.
//!
//! The thing name is the certificate's CN and nothing else. The MQTT username is never read: the
//! AWS IoT Device SDK sends one of its own (`?SDK=IoTDeviceSDK/Python&Platform=...`), and a
//! username is whatever the client chose, while the CN was signed by a CA we trust.

use std::fmt;
use std::net::SocketAddr;

use rmqtt::types::ConnectInfo;
use serde::Serialize;

/// The longest thing name AWS IoT accepts.
const MAX_THING_NAME_LEN: usize = 128;

/// Whether `name` is a valid AWS IoT thing name: 1 to 128 characters from `[A-Za-z0-9:_-]`.
///
/// Identity checks depend on this: policies substitute the thing name into topic patterns
/// (`$aws/things/${iot:Connection.Thing.ThingName}/*`), so a CN containing `/`, `+`, `#` or `*`
/// could otherwise widen what a device may touch.
pub fn is_valid_thing_name(name: &str) -> bool {
    (1..=MAX_THING_NAME_LEN).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'))
}

/// The identity of one MQTT session, fixed at CONNECT from the verified client certificate.
///
/// It never changes for the life of the session; a device that presents another certificate gets
/// another session.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Identity {
    /// The thing name: the certificate's subject CN, checked with [`is_valid_thing_name`].
    pub thing: String,
    /// The MQTT client id as sent in CONNECT. [`AccessControl::connect`](crate::AccessControl)
    /// decides whether this thing may use it.
    pub client_id: String,
    /// The certificate's serial number in lowercase hex without leading zeros (as rmqtt reports
    /// it). rmqtt 0.24 hands hooks neither the DER nor the issuer, so this is the most specific
    /// certificate reference available; it is unique per CA, not across CAs.
    pub cert_serial: String,
    /// The client's address as seen by the listener.
    pub remote_addr: SocketAddr,
    /// Whether the session speaks MQTT 5 (otherwise 3.1 or 3.1.1).
    pub mqtt5: bool,
}

/// Why a CONNECT was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefusalReason {
    /// The connection carried no verified client certificate. The TLS listener demands one, so
    /// this only guards against a listener misconfiguration.
    MissingCertificate,
    /// The certificate's subject has no CN (or one that is not a UTF-8 string).
    MissingCommonName,
    /// The CN is not a valid thing name; it carries the offending CN.
    InvalidThingName(String),
    /// The CONNECT carried a last-will message on a topic the thing may not publish to.
    WillTopicDenied(String),
    /// [`AccessControl::connect`](crate::AccessControl) refused, with its reason.
    Denied(String),
}

impl RefusalReason {
    /// A short stable name for logs and metric labels.
    pub fn label(&self) -> &'static str {
        match self {
            RefusalReason::MissingCertificate => "missing_certificate",
            RefusalReason::MissingCommonName => "missing_common_name",
            RefusalReason::InvalidThingName(_) => "invalid_thing_name",
            RefusalReason::WillTopicDenied(_) => "will_topic_denied",
            RefusalReason::Denied(_) => "denied",
        }
    }
}

impl fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefusalReason::MissingCertificate => f.write_str("no client certificate"),
            RefusalReason::MissingCommonName => f.write_str("the client certificate has no CN"),
            RefusalReason::InvalidThingName(cn) => {
                write!(f, "the certificate CN {cn:?} is not a valid thing name")
            }
            RefusalReason::WillTopicDenied(topic) => write!(f, "last-will topic {topic:?} is not allowed"),
            RefusalReason::Denied(reason) => write!(f, "denied: {reason}"),
        }
    }
}

/// Builds the identity of a connecting client from what rmqtt extracted from its certificate.
///
/// Trap (notes §1.3 #4): with `cert_cn_as_username`, rmqtt keeps the client's own username when
/// the certificate has no CN, so a username can never stand in for a CN. We do not enable that
/// option and never look at the username; only the CN of the verified certificate counts.
pub(crate) fn identity_of(connect: &ConnectInfo) -> Result<Identity, RefusalReason> {
    let cert = connect.cert().ok_or(RefusalReason::MissingCertificate)?;
    let cn = cert.common_name.as_deref().ok_or(RefusalReason::MissingCommonName)?;
    if !is_valid_thing_name(cn) {
        return Err(RefusalReason::InvalidThingName(cn.to_owned()));
    }
    let id = connect.id();
    Ok(Identity {
        thing: cn.to_owned(),
        client_id: id.client_id.to_string(),
        cert_serial: cert.serial.clone().unwrap_or_default(),
        // rmqtt fills the remote address for every TCP connection; the fallback is only there
        // so that a missing one cannot panic.
        remote_addr: id.remote_addr.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
        mqtt5: connect.proto_ver() == rmqtt::codec::types::MQTT_LEVEL_5,
    })
}

#[cfg(test)]
mod tests {
    use super::is_valid_thing_name;

    #[test]
    fn thing_names() {
        for ok in ["a", "thing-1", "Thing_2", "arn:like:name", &"x".repeat(128)] {
            assert!(is_valid_thing_name(ok), "{ok:?} should be valid");
        }
        for bad in ["", "a/b", "a+b", "a#", "a*", "a b", "ä", "$aws", &"x".repeat(129)] {
            assert!(!is_valid_thing_name(bad), "{bad:?} should be invalid");
        }
    }
}
