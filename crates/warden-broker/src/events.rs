//! What the broker tells the server: [`BrokerEvent`]s on a bounded channel, and [`BrokerStats`]
//! counters that stay exact even when events are dropped.
//!
//! The channel is bounded so that a slow consumer costs a counted drop, never unbounded memory,
//! and never stalls the broker: every event except [`BrokerEvent::Published`] is offered with
//! `try_send` and dropped (and counted) when the channel is full. `Published` carries a device
//! report, which matters more than a metric sample, so the publishing session waits for room,
//! up to [`BrokerConfig::published_backpressure`](crate::BrokerConfig). Only that one session
//! waits: its PUBACK (and so its next QoS 1 message) is delayed, which is ordinary MQTT flow
//! control. After the wait the report is dropped and counted in
//! [`BrokerStats::published_dropped`], and the publish is still acknowledged as successful:
//! the device did nothing wrong, and refusing would make it retry into the same congestion.
//! So that a dropped report is not lost silently, the server may install a handler
//! ([`Broker::on_dropped_publish`](crate::Broker::on_dropped_publish)), which is called with it
//! right there and can answer the device.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::{Identity, RefusalReason};

/// Something that happened on the MQTT endpoint.
#[derive(Debug, Clone)]
pub enum BrokerEvent {
    /// A session was established (CONNACK accepted).
    Connected(Arc<Identity>),
    /// A CONNECT was refused by the certificate checks or by
    /// [`AccessControl::connect`](crate::AccessControl::connect).
    ConnectRefused {
        /// The client id sent in CONNECT.
        client_id: String,
        /// The certificate CN, when there was one (valid thing name or not).
        common_name: Option<String>,
        /// The client's address.
        remote_addr: Option<SocketAddr>,
        /// Why it was refused.
        reason: RefusalReason,
    },
    /// A session ended, for whatever reason (client DISCONNECT, network error, keepalive timeout,
    /// publish refused on MQTT 3.1.1, takeover by a newer connection with the same client id, or
    /// [`Broker::disconnect_where`](crate::Broker::disconnect_where)).
    Disconnected {
        /// The session's identity.
        identity: Arc<Identity>,
        /// rmqtt's description of the cause, for logs.
        reason: String,
    },
    /// A PUBLISH from a device was allowed by
    /// [`AccessControl::publish`](crate::AccessControl::publish). Emitted only after that
    /// decision, and before the broker acknowledges a QoS 1 publish.
    Published {
        /// The publishing session.
        identity: Arc<Identity>,
        /// The topic name.
        topic: String,
        /// The message body.
        payload: Bytes,
        /// The QoS the device published with (0, 1 or 2).
        qos: u8,
        /// When the broker took it (after the policy check): how long it then waits for the
        /// server is the server's queueing, apart from the network's and the session's.
        received: std::time::Instant,
    },
    /// A PUBLISH was refused: MQTT 5 sessions got PUBACK 0x87 (QoS 1) and stay connected,
    /// MQTT 3.1.1 sessions are disconnected (3.1.1 has no way to refuse a single publish).
    PublishDenied {
        /// The publishing session.
        identity: Arc<Identity>,
        /// The topic name.
        topic: String,
    },
    /// A SUBSCRIBE filter was refused (SUBACK 0x87 on MQTT 5, 0x80 on 3.1.1).
    SubscribeDenied {
        /// The subscribing session.
        identity: Arc<Identity>,
        /// The topic filter.
        filter: String,
    },
    /// A message was not delivered to a subscribed session because
    /// [`AccessControl::receive`](crate::AccessControl::receive) refused it.
    ReceiveDenied {
        /// The subscribed session.
        identity: Arc<Identity>,
        /// The topic of the message.
        topic: String,
    },
    /// A message is being written to a device (after the receive check), for cloud-side
    /// metrics such as messages received. While
    /// [`Broker::set_system_delivery_events`](crate::Broker::set_system_delivery_events) is off,
    /// the broker's own messages ([`Broker::publish`](crate::Broker::publish)) are only counted.
    Delivered {
        /// The receiving session.
        identity: Arc<Identity>,
        /// The topic of the message.
        topic: String,
        /// The payload size in bytes.
        bytes: usize,
    },
}

/// Counters of the MQTT endpoint since start, for `/metrics`.
///
/// They are counted where the decision is made, so they are exact even when the matching
/// events were dropped from a full channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BrokerStats {
    /// Sessions established.
    pub connected: u64,
    /// CONNECTs refused by the certificate checks or the access control.
    pub connect_refused: u64,
    /// PUBLISHes refused.
    pub publish_denied: u64,
    /// SUBSCRIBE filters refused.
    pub subscribe_denied: u64,
    /// Deliveries refused by the receive check.
    pub receive_denied: u64,
    /// Events other than `Published` dropped because the channel was full.
    pub events_dropped: u64,
    /// `Published` events dropped after waiting `published_backpressure` for room.
    pub published_dropped: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) connected: AtomicU64,
    pub(crate) connect_refused: AtomicU64,
    pub(crate) publish_denied: AtomicU64,
    pub(crate) subscribe_denied: AtomicU64,
    pub(crate) receive_denied: AtomicU64,
    pub(crate) events_dropped: AtomicU64,
    pub(crate) published_dropped: AtomicU64,
}

impl Counters {
    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> BrokerStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        BrokerStats {
            connected: get(&self.connected),
            connect_refused: get(&self.connect_refused),
            publish_denied: get(&self.publish_denied),
            subscribe_denied: get(&self.subscribe_denied),
            receive_denied: get(&self.receive_denied),
            events_dropped: get(&self.events_dropped),
            published_dropped: get(&self.published_dropped),
        }
    }
}

/// What the server does with a device's PUBLISH that the broker had to drop because the event
/// channel stayed full for `published_backpressure` (see `Broker::on_dropped_publish`).
pub(crate) type DroppedPublishHandler = Arc<dyn Fn(&Arc<Identity>, &str, &Bytes) + Send + Sync>;

/// The sending half of the event channel, shared by all hook invocations.
pub(crate) struct EventSink {
    /// `None` once the broker shut down: dropping the only sender is what ends the consumer's
    /// `recv()` loop. A std `RwLock` because it is only held for a `try_send` or a clone, never
    /// across an `.await`.
    tx: RwLock<Option<mpsc::Sender<BrokerEvent>>>,
    published_backpressure: Duration,
    /// Set once by the server; see [`DroppedPublishHandler`].
    dropped: OnceLock<DroppedPublishHandler>,
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSink")
            .field("published_backpressure", &self.published_backpressure)
            .field("dropped_handler", &self.dropped.get().is_some())
            .finish_non_exhaustive()
    }
}

impl EventSink {
    pub(crate) fn new(tx: mpsc::Sender<BrokerEvent>, published_backpressure: Duration) -> EventSink {
        EventSink { tx: RwLock::new(Some(tx)), published_backpressure, dropped: OnceLock::new() }
    }

    /// Installs the handler for dropped publishes; `false` if one was installed already.
    pub(crate) fn on_dropped(&self, handler: DroppedPublishHandler) -> bool {
        self.dropped.set(handler).is_ok()
    }

    /// Offers `event` without waiting; counts it in `events_dropped` if the channel is full.
    pub(crate) fn emit(&self, event: BrokerEvent, counters: &Counters) {
        let guard = self.tx.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(tx) = guard.as_ref()
            && let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(event)
        {
            Counters::inc(&counters.events_dropped);
        }
    }

    /// Sends a `Published` event, waiting up to `published_backpressure` for room (see the
    /// module docs for why this one event may wait).
    pub(crate) async fn emit_published(&self, event: BrokerEvent, counters: &Counters) {
        let tx = {
            let guard = self.tx.read().unwrap_or_else(|poisoned| poisoned.into_inner());
            match guard.as_ref() {
                Some(tx) => tx.clone(),
                None => return,
            }
        };
        // Usually there is room: no timer is armed for that.
        let event = match tx.try_send(event) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Closed(_)) => return,
            Err(mpsc::error::TrySendError::Full(event)) => event,
        };
        let permit = match tokio::time::timeout(self.published_backpressure, tx.reserve()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_closed)) => return,
            Err(_elapsed) => {
                Counters::inc(&counters.published_dropped);
                tracing::warn!(
                    wait = ?self.published_backpressure,
                    "event consumer too slow: a device report was dropped"
                );
                if let (Some(handler), BrokerEvent::Published { identity, topic, payload, .. }) =
                    (self.dropped.get(), &event)
                {
                    handler(identity, topic, payload);
                }
                return;
            }
        };
        permit.send(event);
    }

    /// Drops the sender, so the consumer sees the end of the stream once it drained it.
    pub(crate) fn close(&self) {
        self.tx.write().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
    }
}
