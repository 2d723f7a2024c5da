//! The [`AccessControl`] trait: the broker asks it, and only it, whether an operation is allowed.
//!
//! The broker holds no policy of its own. The server implements this trait over its registry and
//! AWS IoT policies (`policy.rs` is the pure engine), so a registry or policy change applies to
//! the next operation of every live session without telling the broker anything.

use crate::Identity;

/// Decides every CONNECT, PUBLISH, SUBSCRIBE and delivery of a session.
///
/// The methods are synchronous and run on the broker's connection tasks, once per packet (once
/// per subscriber for [`AccessControl::receive`]). They must answer from memory and must not
/// block: a slow decision stalls that connection, and a blocking one stalls a runtime worker
/// (and, on tokio, the timers that worker drives).
pub trait AccessControl: Send + Sync + 'static {
    /// Called once per CONNECT, after the certificate checks passed (`id.thing` is a valid thing
    /// name from a verified certificate). This is where the client id policy (e.g. `id.client_id`
    /// must be the thing name or `{thing}/{suffix}`), deactivated certificates and unknown things
    /// are refused. The `Err` text is logged and carried by
    /// [`BrokerEvent::ConnectRefused`](crate::BrokerEvent); the client only sees "not authorized".
    fn connect(&self, id: &Identity) -> Result<(), String>;

    /// May this session publish to `topic` (a topic name, no wildcards)? Also asked at CONNECT
    /// for the topic of a last-will message.
    fn publish(&self, id: &Identity, topic: &str) -> bool;

    /// May this session subscribe to `filter` (a topic filter, possibly with `+` and `#`)?
    fn subscribe(&self, id: &Identity, filter: &str) -> bool;

    /// May this session receive a message published on `topic`? Asked for every message right
    /// before it is delivered to the session, whoever published it (devices or
    /// [`Broker::publish`](crate::Broker::publish)), like AWS IoT's `iot:Receive`. This is what
    /// makes a policy change cut off subscriptions that were granted earlier, including those
    /// restored from a persistent session.
    fn receive(&self, id: &Identity, topic: &str) -> bool;
}
