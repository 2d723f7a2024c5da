//! Warden's embedded MQTT endpoint: devices connect here over mutual TLS, and the server gets a
//! small, safe interface to them.
//!
//! What this crate owns:
//! - **Identity.** A session's thing name is the CN of its verified client certificate, checked
//!   to be a valid thing name; the MQTT username is ignored ([`Identity`]).
//! - **Enforcement.** Every CONNECT, PUBLISH, SUBSCRIBE and delivery is decided by the server's
//!   [`AccessControl`]; the broker has no policy of its own, so policy changes apply to live
//!   sessions at their next operation.
//! - **Events.** Connections, refusals, allowed reports, denials and deliveries arrive as
//!   [`BrokerEvent`]s on a bounded channel; [`BrokerStats`] counts them exactly.
//! - **Control.** In-process publishing and dropping sessions ([`Broker`]).
//!
//! It knows nothing about detection, storage or HTTP. Inside, it embeds rmqtt 0.24.0 (pinned:
//! several of its hook semantics are security relevant, see `notes/rust-stack.md` §1.3, and each
//! trap is covered by a test in `tests/it`). [`policy`] is the pure AWS IoT policy engine the
//! server uses to implement [`AccessControl`].

mod access;
mod broker;
mod config;
mod events;
mod hooks;
mod identity;
pub mod policy;
mod router;
mod tls;

pub use access::AccessControl;
pub use broker::{Broker, BrokerError};
pub use config::BrokerConfig;
pub use events::{BrokerEvent, BrokerStats};
pub use identity::{Identity, RefusalReason, is_valid_thing_name};
pub use tls::{TLS_FAILURE_LOG_TARGET, is_tls_handshake_failure};
