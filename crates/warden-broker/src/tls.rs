//! Recognising failed TLS handshakes, which rmqtt reports only in its log.
//!
//! Trap (notes §1.3 #3): a handshake that fails (certificate from an unknown CA, no client
//! certificate, handshake timeout) never reaches an rmqtt hook, so the broker cannot count it or
//! emit an event. rmqtt 0.24 logs it through the `log` crate as a warning with target
//! `rmqtt::server` and a message starting `TLS accept error: ` (then the rustls error and
//! `, from: {remote address}`). The server, which owns the process's logger, counts such
//! records with [`is_tls_handshake_failure`]. The text is rmqtt's and may change with its
//! version, so a test pins it.

/// The `log` target under which rmqtt reports accept errors (as warnings).
pub const TLS_FAILURE_LOG_TARGET: &str = "rmqtt::server";

/// The start of rmqtt's message for a failed TLS handshake.
const PREFIX: &str = "TLS accept error: ";

/// Whether a `log` record (its target and formatted message) is rmqtt reporting a failed TLS
/// handshake on the MQTT listener. Meant for the server's log bridge, to count these failures.
pub fn is_tls_handshake_failure(target: &str, message: &str) -> bool {
    target == TLS_FAILURE_LOG_TARGET && message.starts_with(PREFIX)
}
