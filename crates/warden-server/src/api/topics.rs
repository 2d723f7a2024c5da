//! Alert topics, a Warden API (SNS itself is not emulated): the topics a security profile's
//! `alertTargets.SNS.alertTargetArn` names, and their subscriptions, the HTTP(S) webhooks and
//! MQTT topics alerts are delivered to.
//!
//! `POST|GET|DELETE /warden/alert-topics/{topicName}`, `GET /warden/alert-topics`,
//! `POST|GET /warden/alert-topics/{topicName}/subscriptions` and
//! `DELETE /warden/alert-subscriptions/{subscriptionId}`, with the same authentication, JSON,
//! error shapes and paging (`maxResults`, `nextToken`) as the AWS operations. A topic's ARN is
//! `arn:aws:sns:{region}:{account}:{topicName}`; alerts find their topic by the last segment of
//! the profile's ARN alone, so profiles written for AWS work unchanged. The delivery counters of
//! a subscription (`delivered`, `failed`, `lastError`, `lastAttemptDate`) are where failing
//! deliveries show.

use axum::extract::State;
use axum::http::Uri;
use serde::Deserialize;
use serde_json::{Value, json};
use warden_store::{AlertSubscription, AlertTopic, PageRequest, SubscriptionProtocol};

use super::protocol::{
    ApiError, ApiResult, Json, Name, PageStyle, Paging, Query, empty, epoch_seconds, reply,
};
use crate::state::AppState;

/// The longest endpoint accepted: a URL or an MQTT topic.
const MAX_ENDPOINT_LEN: usize = 2048;

/// Checks a topic name against SNS's `[a-zA-Z0-9_-]{1,256}`.
fn check_topic_name(name: &str) -> Result<(), ApiError> {
    if (1..=256).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
    {
        Ok(())
    } else {
        Err(ApiError::invalid(format!("topicName {name:?} must be 1 to 256 characters of [a-zA-Z0-9_-]")))
    }
}

fn topic_body(s: &AppState, t: &AlertTopic) -> Value {
    json!({
        "topicName": t.name,
        "topicArn": s.arns.sns_topic(&t.name),
        "creationDate": epoch_seconds(t.created_at_ms),
    })
}

fn subscription_body(sub: AlertSubscription) -> Value {
    json!({
        "subscriptionId": sub.subscription_id,
        "topicName": sub.topic,
        "protocol": sub.protocol.as_str(),
        "endpoint": sub.endpoint,
        "creationDate": epoch_seconds(sub.created_at_ms),
        "delivered": sub.delivered,
        "failed": sub.failed,
        "lastError": sub.last_error,
        "lastAttemptDate": sub.last_attempt_ms.map(epoch_seconds),
    })
}

/// A request without members; any member given is refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoMembers {}

pub async fn create(State(s): State<AppState>, Name(name): Name, Json(_): Json<NoMembers>) -> ApiResult {
    check_topic_name(&name)?;
    let topic = s
        .store
        .create_alert_topic(&name, s.now_ms())
        .await
        .map_err(|e| ApiError::from(e).with_arn(s.arns.sns_topic(&name)))?;
    reply(topic_body(&s, &topic))
}

pub async fn list(State(s): State<AppState>, mut q: Query) -> ApiResult {
    let paging = Paging::from_query(&mut q, PageStyle::Token)?;
    q.finish()?;
    let page = s.store.list_alert_topics(&paging.request).await?;
    paging.reply("topics", page, |t| topic_body(&s, &t))
}

/// The topic with all its subscriptions.
pub async fn describe(State(s): State<AppState>, Name(name): Name) -> ApiResult {
    check_topic_name(&name)?;
    let topic = s.store.describe_alert_topic(&name).await?;
    let mut subscriptions = Vec::new();
    let mut request = Some(PageRequest::default());
    while let Some(current) = request {
        let page = s.store.list_subscriptions(&name, &current).await?;
        request = current.after(&page);
        subscriptions.extend(page.items.into_iter().map(subscription_body));
    }
    let mut body = topic_body(&s, &topic);
    body["subscriptions"] = Value::Array(subscriptions);
    reply(body)
}

/// Deletes the topic with its subscriptions. Profiles that name it keep their alert target; their
/// alerts are dropped (and counted) until a topic of that name exists again.
pub async fn delete(State(s): State<AppState>, Name(name): Name) -> ApiResult {
    check_topic_name(&name)?;
    s.store.delete_alert_topic(&name).await?;
    empty()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscribe {
    protocol: String,
    endpoint: String,
}

/// Checks an endpoint for its protocol: an absolute `http://` or `https://` URL with a host, or
/// an MQTT topic name (no wildcards, no `$` topics, which belong to the broker and AWS).
pub fn check_endpoint(protocol: SubscriptionProtocol, endpoint: &str) -> Result<(), String> {
    if endpoint.is_empty() || endpoint.len() > MAX_ENDPOINT_LEN {
        return Err(format!("endpoint must be 1 to {MAX_ENDPOINT_LEN} bytes"));
    }
    match protocol {
        SubscriptionProtocol::Http | SubscriptionProtocol::Https => {
            let scheme = protocol.as_str();
            let uri: Uri =
                endpoint.parse().map_err(|e| format!("endpoint {endpoint:?} is not a URL: {e}"))?;
            let host = uri.authority().map(|a| a.host()).unwrap_or_default();
            if uri.scheme_str() != Some(scheme) || host.is_empty() {
                return Err(format!("endpoint {endpoint:?} must be an absolute {scheme}:// URL with a host"));
            }
            Ok(())
        }
        SubscriptionProtocol::Mqtt => {
            if endpoint.contains(['+', '#']) {
                Err(format!(
                    "endpoint {endpoint:?} must be an MQTT topic name, without the wildcards + and #"
                ))
            } else if endpoint.starts_with('$') {
                Err(format!("endpoint {endpoint:?}: topics starting with $ are reserved"))
            } else if endpoint.contains('\0') {
                Err("endpoint must not contain NUL".into())
            } else {
                Ok(())
            }
        }
    }
}

/// Subscribing the same protocol and endpoint again returns the existing subscription, as SNS
/// does.
pub async fn subscribe(
    State(s): State<AppState>,
    Name(topic): Name,
    Json(input): Json<Subscribe>,
) -> ApiResult {
    check_topic_name(&topic)?;
    let protocol = match input.protocol.as_str() {
        "http" => SubscriptionProtocol::Http,
        "https" => SubscriptionProtocol::Https,
        "mqtt" => SubscriptionProtocol::Mqtt,
        other => {
            return Err(ApiError::invalid(format!("protocol must be http, https or mqtt, not {other:?}")));
        }
    };
    check_endpoint(protocol, &input.endpoint).map_err(ApiError::invalid)?;
    let subscription = s.store.subscribe(&topic, protocol, &input.endpoint, s.now_ms()).await?;
    reply(subscription_body(subscription))
}

pub async fn list_subscriptions(State(s): State<AppState>, Name(topic): Name, mut q: Query) -> ApiResult {
    check_topic_name(&topic)?;
    let paging = Paging::from_query(&mut q, PageStyle::Token)?;
    q.finish()?;
    let page = s.store.list_subscriptions(&topic, &paging.request).await?;
    paging.reply("subscriptions", page, subscription_body)
}

pub async fn unsubscribe(State(s): State<AppState>, Name(id): Name) -> ApiResult {
    if !(1..=128).contains(&id.len()) || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(ApiError::invalid(format!(
            "subscriptionId {id:?} must be 1 to 128 characters of [a-zA-Z0-9-]"
        )));
    }
    s.store.unsubscribe(&id).await?;
    empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_must_fit_their_protocol() {
        use SubscriptionProtocol::{Http, Https, Mqtt};
        for (protocol, endpoint) in [
            (Http, "http://127.0.0.1:8080/alerts"),
            (Https, "https://hooks.example.com/T0/B0?secret=x"),
            (Mqtt, "warden/alerts"),
            (Mqtt, "alerts"),
        ] {
            assert_eq!(check_endpoint(protocol, endpoint), Ok(()), "{endpoint}");
        }
        for (protocol, endpoint, message) in [
            (Http, "https://example.com/", "must be an absolute http:// URL"),
            (Https, "http://example.com/", "must be an absolute https:// URL"),
            (Https, "/alerts", "must be an absolute https:// URL"),
            (Http, "http://", "is not a URL"),
            (Http, "http://exa mple.com/", "is not a URL"),
            (Mqtt, "alerts/#", "without the wildcards"),
            (Mqtt, "alerts/+/x", "without the wildcards"),
            (Mqtt, "$aws/things/t/shadow", "reserved"),
            (Mqtt, "", "1 to 2048 bytes"),
        ] {
            let got = check_endpoint(protocol, endpoint).unwrap_err();
            assert!(got.contains(message), "{endpoint}: {got}");
        }
    }
}
