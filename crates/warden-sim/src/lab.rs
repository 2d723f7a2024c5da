//! The AWS workshop's set-up, "the lab", made through the REST API as an operator would make it:
//! a `Quarantine` group whose policy denies a thing its application topics (its Defender
//! reports stay allowed by its own policy), the mitigation action that moves a thing there, an
//! alert topic, and `OutboundBytesSecProfile` (at most 35,000 bytes out per 5 minutes) on all
//! things, alerting to the topic and quarantining automatically (Warden's
//! `automaticMitigationActions`, which does what the workshop's Lambda did).
//!
//! [`set_up`] may run again on a server that has it already (`warden demo --data-dir` kept from
//! an earlier run): what exists is kept, the profile is brought back to the lab's values.
//! [`AlertReceiver`] is a webhook on 127.0.0.1 that hands the alerts the server delivers to its
//! caller, so that `warden demo` prints them as they arrive.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::api::{Api, ApiError, encode_query};

pub const QUARANTINE_GROUP: &str = "Quarantine";
pub const QUARANTINE_POLICY: &str = "QuarantinePolicy";
pub const QUARANTINE_ACTION: &str = "QuarantineAction";
pub const ALERT_TOPIC: &str = "DDD_Alerts";
pub const PROFILE: &str = "OutboundBytesSecProfile";
pub const BEHAVIOR: &str = "OutboundBytesBehavior";
pub const METRIC: &str = "aws:all-bytes-out";
/// The workshop's threshold: a device may send at most this many bytes per 5 minutes.
pub const THRESHOLD_BYTES: u64 = 35_000;
/// The behavior's window: one report period of the workshop (and of a fleet whose reports each
/// cover 5 simulated minutes, with the server's `detect.period` equal to the report period).
pub const DURATION_SECONDS: u64 = 300;

/// The path [`AlertReceiver`] serves; subscriptions to it on 127.0.0.1 are the lab's own.
pub const ALERT_PATH: &str = "/warden-lab/alerts";

/// The quarantine policy: deny publishing to `things/{thing}/...`, the application topics.
pub fn quarantine_policy() -> Value {
    json!({ "Version": "2012-10-17", "Statement": [{
        "Effect": "Deny", "Action": "iot:Publish",
        "Resource": "arn:aws:iot:*:*:topic/things/${iot:Connection.Thing.ThingName}/*" }] })
}

/// What [`set_up`] made (or found).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabSetup {
    pub group_arn: String,
    pub topic_arn: String,
    /// The webhook's subscription to the alert topic, if one was asked for.
    pub subscription_id: Option<String>,
}

/// Makes the lab through `api`, alerting to `webhook` (an `http://` URL) if given. Blocking.
pub fn set_up(api: &Api, webhook: Option<&str>) -> Result<LabSetup, ApiError> {
    let group = format!("/thing-groups/{QUARANTINE_GROUP}");
    exists_ok(api.call("CreateThingGroup", "POST", &group, None))?;
    let group_arn =
        text(&api.call("DescribeThingGroup", "GET", &group, None)?, "thingGroupArn", "DescribeThingGroup")?;
    let policy = json!({ "policyDocument": quarantine_policy().to_string() });
    exists_ok(api.call("CreatePolicy", "POST", &format!("/policies/{QUARANTINE_POLICY}"), Some(policy)))?;
    api.attach_policy(QUARANTINE_POLICY, &group_arn)?;
    let action = json!({
        // Stored, not used: Warden has no IAM.
        "roleArn": "arn:aws:iam::000000000000:role/WardenLabMitigation",
        "actionParams": { "addThingsToThingGroupParams": { "thingGroupNames": [QUARANTINE_GROUP] } },
    });
    let action_path = format!("/mitigationactions/actions/{QUARANTINE_ACTION}");
    exists_ok(api.call("CreateMitigationAction", "POST", &action_path, Some(action)))?;

    let topic = format!("/warden/alert-topics/{ALERT_TOPIC}");
    exists_ok(api.call("CreateAlertTopic", "POST", &topic, None))?;
    let topic_arn =
        text(&api.call("DescribeAlertTopic", "GET", &topic, None)?, "topicArn", "DescribeAlertTopic")?;
    let subscription_id = match webhook {
        None => None,
        Some(url) => Some(subscribe(api, url)?),
    };

    let profile = json!({
        "securityProfileDescription": "The AWS workshop's profile: at most 35,000 bytes out per 5 minutes.",
        "behaviors": [{
            "name": BEHAVIOR,
            "metric": METRIC,
            "criteria": {
                "comparisonOperator": "less-than-equals",
                "value": { "count": THRESHOLD_BYTES },
                "durationSeconds": DURATION_SECONDS,
            },
        }],
        "alertTargets": { "SNS": {
            "alertTargetArn": topic_arn,
            "roleArn": "arn:aws:iam::000000000000:role/WardenLabAlerts",
        }},
        "automaticMitigationActions": [QUARANTINE_ACTION],
    });
    let profile_path = format!("/security-profiles/{PROFILE}");
    match api.call("CreateSecurityProfile", "POST", &profile_path, Some(profile.clone())) {
        Err(e) if e.code() == Some("ResourceAlreadyExistsException") => {
            api.call("UpdateSecurityProfile", "PATCH", &profile_path, Some(profile))?;
        }
        other => {
            other?;
        }
    }
    // `arn:aws:iot:{region}:{account}:all/things`, with the server's region and account.
    let prefix = group_arn.strip_suffix(&format!("thinggroup/{QUARANTINE_GROUP}")).ok_or_else(|| {
        ApiError::BadReply {
            operation: "DescribeThingGroup".into(),
            why: format!("unexpected group ARN {group_arn:?}"),
        }
    })?;
    let all = encode_query(&format!("{prefix}all/things"));
    api.call(
        "AttachSecurityProfile",
        "PUT",
        &format!("{profile_path}/targets?securityProfileTargetArn={all}"),
        None,
    )?;
    Ok(LabSetup { group_arn, topic_arn, subscription_id })
}

/// Subscribes `url` to the alert topic, first removing the subscriptions of earlier receivers
/// (on 127.0.0.1, at [`ALERT_PATH`]), which are gone with the process that served them.
fn subscribe(api: &Api, url: &str) -> Result<String, ApiError> {
    let topic = format!("/warden/alert-topics/{ALERT_TOPIC}");
    let subscriptions =
        api.call("ListSubscriptions", "GET", &format!("{topic}/subscriptions?maxResults=250"), None)?;
    for s in subscriptions["subscriptions"].as_array().into_iter().flatten() {
        let endpoint = s["endpoint"].as_str().unwrap_or_default();
        let stale =
            endpoint != url && endpoint.starts_with("http://127.0.0.1:") && endpoint.ends_with(ALERT_PATH);
        if let (true, Some(id)) = (stale, s["subscriptionId"].as_str()) {
            api.call("Unsubscribe", "DELETE", &format!("/warden/alert-subscriptions/{id}"), None)?;
        }
    }
    let body = json!({ "protocol": "http", "endpoint": url });
    let reply = api.call("Subscribe", "POST", &format!("{topic}/subscriptions"), Some(body))?;
    text(&reply, "subscriptionId", "Subscribe")
}

/// Takes `things` out of the quarantine group (those in it: an earlier run of the lab left them
/// there, and the quarantine is never lifted by itself); the ones released. Blocking.
pub fn release(api: &Api, things: &[String]) -> Result<Vec<String>, ApiError> {
    let members = api.things_in_group(QUARANTINE_GROUP, 100)?;
    let mut released = Vec::new();
    for thing in things.iter().filter(|t| members.contains(t)) {
        let body = json!({ "thingGroupName": QUARANTINE_GROUP, "thingName": thing });
        api.call("RemoveThingFromThingGroup", "PUT", "/thing-groups/removeThingFromThingGroup", Some(body))?;
        released.push(thing.clone());
    }
    Ok(released)
}

fn exists_ok(result: Result<Value, ApiError>) -> Result<(), ApiError> {
    match result {
        Err(e) if e.code() == Some("ResourceAlreadyExistsException") => Ok(()),
        other => other.map(drop),
    }
}

fn text(reply: &Value, key: &str, operation: &str) -> Result<String, ApiError> {
    reply[key]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| ApiError::BadReply { operation: operation.to_owned(), why: format!("no {key}") })
}

/// One alert, as AWS IoT Device Defender sends it to SNS (the `Message` of the notification).
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub thing: String,
    pub profile: String,
    pub behavior: String,
    pub metric: String,
    /// `in-alarm`, `alarm-cleared` or `alarm-invalidated`.
    pub event_type: String,
    /// `metricValue`, as sent (`{"count": 70000}`); absent on `alarm-invalidated`.
    pub value: Option<Value>,
    pub violation_id: String,
    pub event_time_ms: i64,
    /// The alert JSON itself.
    pub message: Value,
}

impl Alert {
    /// Reads an SNS HTTP notification (`{"Type":"Notification",...,"Message":"<alert JSON>"}`).
    pub fn from_notification(body: &[u8]) -> Result<Alert, String> {
        let envelope: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
        let message = envelope["Message"].as_str().ok_or("no Message in the notification")?;
        let message: Value =
            serde_json::from_str(message).map_err(|e| format!("the Message is not JSON: {e}"))?;
        let field = |pointer: &str| {
            message
                .pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or(format!("no {pointer} in the alert"))
        };
        Ok(Alert {
            thing: field("/thingName")?,
            profile: field("/securityProfileName")?,
            behavior: field("/behavior/name")?,
            metric: field("/behavior/metric").unwrap_or_default(),
            event_type: field("/violationEventType")?,
            value: message.get("metricValue").cloned(),
            violation_id: field("/violationId")?,
            event_time_ms: message["violationEventTime"]
                .as_i64()
                .ok_or("no violationEventTime in the alert")?,
            message,
        })
    }
}

/// A webhook on 127.0.0.1 (a free port) for the lab's alert topic: each alert POSTed to it is
/// answered 200 and handed over on the channel [`AlertReceiver::start`] returns. A notification
/// that is not an alert is answered 400 (the server counts the failure on the subscription).
#[derive(Debug)]
pub struct AlertReceiver {
    pub addr: SocketAddr,
    /// Stops the server; the task is awaited at [`AlertReceiver::stop`].
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

/// Alerts kept for a slow reader; more are answered 503, and the server retries them.
const ALERT_BUFFER: usize = 256;

impl AlertReceiver {
    pub async fn start() -> std::io::Result<(AlertReceiver, mpsc::Receiver<Alert>)> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = mpsc::channel(ALERT_BUFFER);
        let app = Router::new().route(
            ALERT_PATH,
            post(move |body: Bytes| {
                let tx = tx.clone();
                async move {
                    match Alert::from_notification(&body) {
                        Ok(alert) => match tx.try_send(alert) {
                            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => StatusCode::OK,
                            Err(mpsc::error::TrySendError::Full(_)) => StatusCode::SERVICE_UNAVAILABLE,
                        },
                        Err(why) => {
                            tracing::warn!(%why, "not an alert");
                            StatusCode::BAD_REQUEST
                        }
                    }
                }
            }),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "the alert receiver failed");
            }
        });
        Ok((AlertReceiver { addr, stop: Some(stop), task }, rx))
    }

    /// The URL to subscribe.
    pub fn url(&self) -> String {
        format!("http://{}{ALERT_PATH}", self.addr)
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_is_read_from_its_sns_notification() {
        let message = json!({
            "violationEventTime": 1_795_833_642_000i64, "thingName": "dev-07",
            "behavior": { "name": BEHAVIOR, "metric": METRIC,
                "criteria": { "comparisonOperator": "less-than-equals", "value": { "count": 35000 }, "durationSeconds": 300 } },
            "violationEventType": "in-alarm", "metricValue": { "count": 70123 },
            "violationId": "aa03a2d9a692a75b65925831eab65693", "securityProfileName": PROFILE,
        });
        let body = json!({ "Type": "Notification", "MessageId": "m", "Message": message.to_string() });
        let alert = Alert::from_notification(body.to_string().as_bytes()).unwrap();
        assert_eq!(
            (
                alert.thing.as_str(),
                alert.profile.as_str(),
                alert.behavior.as_str(),
                alert.event_type.as_str()
            ),
            ("dev-07", PROFILE, BEHAVIOR, "in-alarm")
        );
        assert_eq!(alert.value, Some(json!({ "count": 70123 })));
        assert_eq!(alert.event_time_ms, 1_795_833_642_000);
        assert_eq!(alert.message, message);

        let err = |body: &str| Alert::from_notification(body.as_bytes()).unwrap_err();
        assert!(err("nope").starts_with("not JSON"));
        assert_eq!(err("{}"), "no Message in the notification");
        assert_eq!(err(r#"{"Message":"{}"}"#), "no /thingName in the alert");
    }
}
