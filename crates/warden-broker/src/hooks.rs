//! The rmqtt hook handler: turns rmqtt's hook calls into [`AccessControl`] questions and
//! [`BrokerEvent`]s, and keeps the table of live sessions.
//!
//! Each hook answers `(false, Some(result))` to decide (ending the hook chain) or
//! `(true, acc)` to let rmqtt's default apply. Which hook is used for what is dictated by traps
//! in rmqtt 0.24 (notes §1.3); each is named next to the code that avoids it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use rmqtt::codec::v5::SubscribeAckReason;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType};
use rmqtt::session::Session;
use rmqtt::types::{AuthResult, ConnectInfo, HashMap, Id, LastWill, PublishAclResult, SubscribeAclResult};
use tokio::sync::Notify;

use crate::events::{Counters, EventSink};
use crate::identity::identity_of;
use crate::{AccessControl, BrokerEvent, Identity, RefusalReason};

/// State shared by the hook handler and the [`Broker`](crate::Broker) handle.
pub(crate) struct State {
    pub(crate) acl: Arc<dyn AccessControl>,
    /// Live sessions by rmqtt session id. Filled in `ClientConnected` (before the CONNACK is
    /// written, so before the client can send anything) and emptied in `ClientDisconnected`.
    /// A std `RwLock`: read on every PUBLISH, SUBSCRIBE and delivery, written twice per session,
    /// never held across an `.await`. Hashed with rmqtt's aHash: an `Id` is several fields
    /// (addresses, client id, the SDK's long username), hashed three times per report.
    pub(crate) sessions: RwLock<HashMap<Id, Arc<Identity>>>,
    /// Signalled whenever a session leaves `sessions`; shutdown waits on it.
    pub(crate) session_left: Notify,
    pub(crate) events: EventSink,
    pub(crate) counters: Counters,
    /// Whether the server's own messages (`Broker::publish`: report replies, MQTT alerts)
    /// delivered to a session are sent as [`BrokerEvent::Delivered`] events; otherwise they are
    /// only counted per session in `system_deliveries`. One reply per report made these half of
    /// all events, and the server's one event consumer was the bottleneck past its knee.
    pub(crate) system_delivery_events: AtomicBool,
    /// The server's messages delivered per session since the last
    /// [`Broker::take_system_deliveries`](crate::Broker::take_system_deliveries), by the
    /// address of the session's identity (kept alive by the entry, so never reused meanwhile).
    /// Entries of sessions that have ended stay until taken.
    pub(crate) system_deliveries: Mutex<HashMap<usize, (Arc<Identity>, u64)>>,
}

impl State {
    /// The identity of a live session. `None` means rmqtt called a hook for a session we never
    /// saw connect; callers then deny (fail closed).
    fn identity(&self, session: &Session) -> Option<Arc<Identity>> {
        self.sessions.read().unwrap_or_else(|p| p.into_inner()).get(&session.id).cloned()
    }

    pub(crate) fn live_sessions(&self) -> Vec<(Id, Arc<Identity>)> {
        let sessions = self.sessions.read().unwrap_or_else(|p| p.into_inner());
        sessions.iter().map(|(id, identity)| (id.clone(), identity.clone())).collect()
    }

    /// Certificate checks, then the access control, then the last-will topic.
    fn authenticate(&self, connect: &ConnectInfo) -> Result<Identity, RefusalReason> {
        let identity = identity_of(connect)?;
        self.acl.connect(&identity).map_err(RefusalReason::Denied)?;
        // Trap (found here, not in the notes): rmqtt publishes a last-will message without the
        // publish ACL hook (`process_last_will` runs only `MessagePublish`, which cannot drop a
        // message). A device could otherwise leave a will on another thing's topic and drop its
        // connection. So the will topic is checked here, at CONNECT, as a publish.
        if let Some(will) = connect.last_will() {
            let topic = match will {
                LastWill::V3(w) => &w.topic,
                LastWill::V5(w) => &w.topic,
            };
            if !self.acl.publish(&identity, topic) {
                return Err(RefusalReason::WillTopicDenied(topic.to_string()));
            }
        }
        Ok(identity)
    }
}

/// The one hook handler registered for every hook type we use.
pub(crate) struct Hooks {
    pub(crate) state: Arc<State>,
}

#[async_trait]
impl Handler for Hooks {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        let state = &self.state;
        match param {
            Parameter::ClientAuthenticate(connect) => {
                let result = match state.authenticate(connect) {
                    Ok(_) => AuthResult::Allow(false, None),
                    Err(reason) => {
                        // Trap (notes §1.3 #2): a refused CONNECT never reaches `ClientConnack`,
                        // so refusals are counted and reported here, where they are decided.
                        refused(state, connect, reason);
                        AuthResult::NotAuthorized
                    }
                };
                (false, Some(HookResult::AuthResult(result)))
            }

            Parameter::ClientConnected(session) => {
                let connect = match session.connect_info().await {
                    Ok(connect) => connect,
                    Err(e) => {
                        tracing::error!(error = %e, "connected session without CONNECT info; it will be denied everything");
                        return (true, acc);
                    }
                };
                match identity_of(&connect) {
                    Ok(identity) => {
                        let identity = Arc::new(identity);
                        state
                            .sessions
                            .write()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(session.id.clone(), identity.clone());
                        Counters::inc(&state.counters.connected);
                        tracing::info!(thing = %identity.thing, client_id = %identity.client_id, remote = %identity.remote_addr, mqtt5 = identity.mqtt5, "device connected");
                        state.events.emit(BrokerEvent::Connected(identity), &state.counters);
                    }
                    Err(reason) => {
                        // Unreachable while authentication checks the same certificate.
                        tracing::error!(%reason, "connected session failed the identity check; it will be denied everything");
                    }
                }
                (true, acc)
            }

            Parameter::ClientDisconnected(session, reason) => {
                let identity = state.sessions.write().unwrap_or_else(|p| p.into_inner()).remove(&session.id);
                state.session_left.notify_waiters();
                if let Some(identity) = identity {
                    tracing::info!(thing = %identity.thing, client_id = %identity.client_id, %reason, "device disconnected");
                    state.events.emit(
                        BrokerEvent::Disconnected { identity, reason: reason.to_string() },
                        &state.counters,
                    );
                }
                (true, acc)
            }

            // Trap (notes §1.3 #1): `MessagePublish` runs *before* this ACL hook and also sees
            // publishes that are then refused, so reports are taken only here, after the
            // decision. rmqtt sends the QoS 1 PUBACK only after this hook returns.
            Parameter::MessagePublishCheckAcl(session, publish) => {
                let identity = state.identity(session);
                let allowed = identity.as_ref().is_some_and(|id| state.acl.publish(id, &publish.topic));
                if allowed && let Some(identity) = identity {
                    let event = BrokerEvent::Published {
                        identity,
                        topic: publish.topic.to_string(),
                        payload: publish.payload.clone(),
                        qos: publish.qos.value(),
                        received: std::time::Instant::now(),
                    };
                    state.events.emit_published(event, &state.counters).await;
                    return (false, Some(HookResult::PublishAclResult(PublishAclResult::allow())));
                }
                Counters::inc(&state.counters.publish_denied);
                let mqtt5 = match &identity {
                    Some(identity) => identity.mqtt5,
                    None => session.protocol().await.is_ok_and(|v| v == rmqtt::codec::types::MQTT_LEVEL_5),
                };
                if let Some(identity) = identity {
                    tracing::warn!(thing = %identity.thing, client_id = %identity.client_id, topic = %publish.topic, "publish denied");
                    state.events.emit(
                        BrokerEvent::PublishDenied { identity, topic: publish.topic.to_string() },
                        &state.counters,
                    );
                }
                // MQTT 3.1.1 cannot refuse one publish (its PUBACK has no reason code), so the
                // session is closed, as AWS IoT does; MQTT 5 gets PUBACK 0x87 and stays.
                let disconnect = !mqtt5;
                (
                    false,
                    Some(HookResult::PublishAclResult(PublishAclResult::rejected(
                        disconnect,
                        Some("not authorized".into()),
                    ))),
                )
            }

            Parameter::ClientSubscribeCheckAcl(session, subscribe) => {
                let identity = state.identity(session);
                let filter = &subscribe.topic_filter;
                if let Some(identity) = &identity
                    && state.acl.subscribe(identity, filter)
                {
                    let granted = SubscribeAclResult::new_success(subscribe.opts.qos(), None);
                    return (false, Some(HookResult::SubscribeAclResult(granted)));
                }
                Counters::inc(&state.counters.subscribe_denied);
                if let Some(identity) = identity {
                    tracing::warn!(thing = %identity.thing, client_id = %identity.client_id, %filter, "subscribe denied");
                    state.events.emit(
                        BrokerEvent::SubscribeDenied { identity, filter: filter.to_string() },
                        &state.counters,
                    );
                }
                let refused = SubscribeAclResult::new_failure(SubscribeAckReason::NotAuthorized);
                (false, Some(HookResult::SubscribeAclResult(refused)))
            }

            // rmqtt has no delivery ACL, but runs `MessageExpiryCheck` for every message right
            // before writing it to a subscriber, and answering `MessageExpiry` drops that one
            // delivery. That is our `iot:Receive` check, so a policy change also cuts off
            // subscriptions granted before it.
            Parameter::MessageExpiryCheck(session, _from, publish) => {
                let identity = state.identity(session);
                if let Some(identity) = &identity
                    && state.acl.receive(identity, &publish.topic)
                {
                    // Let rmqtt's own expiry computation apply.
                    return (true, acc);
                }
                Counters::inc(&state.counters.receive_denied);
                if let Some(identity) = identity {
                    tracing::warn!(thing = %identity.thing, client_id = %identity.client_id, topic = %publish.topic, "delivery denied");
                    state.events.emit(
                        BrokerEvent::ReceiveDenied { identity, topic: publish.topic.to_string() },
                        &state.counters,
                    );
                }
                (false, Some(HookResult::MessageExpiry))
            }

            Parameter::MessageDelivered(session, from, publish) => {
                let Some(identity) = state.identity(session) else { return (true, acc) };
                if from.is_system() && !state.system_delivery_events.load(Ordering::Relaxed) {
                    let mut counts = state.system_deliveries.lock().unwrap_or_else(|p| p.into_inner());
                    let key = Arc::as_ptr(&identity) as usize;
                    counts.entry(key).or_insert_with(|| (identity, 0)).1 += 1;
                } else {
                    let event = BrokerEvent::Delivered {
                        identity,
                        topic: publish.topic.to_string(),
                        bytes: publish.payload.len(),
                    };
                    state.events.emit(event, &state.counters);
                }
                (true, acc)
            }

            _ => (true, acc),
        }
    }
}

fn refused(state: &State, connect: &ConnectInfo, reason: RefusalReason) {
    Counters::inc(&state.counters.connect_refused);
    let id = connect.id();
    let common_name = connect.cert().and_then(|c| c.common_name.clone());
    tracing::warn!(
        client_id = %id.client_id,
        common_name = common_name.as_deref().unwrap_or(""),
        remote = ?id.remote_addr,
        reason = reason.label(),
        detail = %reason,
        "connect refused"
    );
    state.events.emit(
        BrokerEvent::ConnectRefused {
            client_id: id.client_id.to_string(),
            common_name,
            remote_addr: id.remote_addr,
            reason,
        },
        &state.counters,
    );
}
