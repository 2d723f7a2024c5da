//! The read side of violations: `ListActiveViolations`, `ListViolationEvents`, and
//! `PutVerificationStateOnViolation`, the one thing a person writes about a violation.
//!
//! The store keeps a violation's behavior and values as the JSON text the engine produced; here
//! they become the AWS objects again (`behavior`, `metricValue`, `lastViolationValue`), and its
//! millisecond times become epoch seconds. Every Warden behavior has static criteria, so
//! `behaviorCriteriaType` `STATIC` filters nothing and the other two types match nothing.
//! `listSuppressedAlerts=true` lists only the violations of behaviors with `suppressAlerts`,
//! `false` only the others, and no value lists both.

use std::str::FromStr;

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use warden_store::{
    ActiveViolation, ActiveViolationFilter, StoreError, VerificationState, ViolationEvent,
    ViolationEventFilter,
};

use super::protocol::{
    ApiError, ApiResult, Json, Name, PageStyle, Paging, Query, check_name, empty, epoch_seconds,
};
use crate::state::AppState;

/// A stored JSON text as the JSON value it is. The store checks these are JSON when it writes
/// them, so a failure means the database was edited by hand.
fn stored_json(violation_id: &str, text: &str) -> Result<Value, ApiError> {
    serde_json::from_str(text).map_err(|e| {
        tracing::error!(violation = %violation_id, error = %e, "stored violation JSON is unreadable");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalFailureException",
            "internal failure; the server log has the details",
        )
    })
}

/// Checks a violation id against AWS's `[a-zA-Z0-9-]{1,128}`.
fn check_violation_id(id: &str) -> Result<(), ApiError> {
    if (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        Ok(())
    } else {
        Err(ApiError::invalid(format!("violationId {id:?} must be 1 to 128 characters of [a-zA-Z0-9-]")))
    }
}

/// The filters both lists share.
struct Filters {
    thing: Option<String>,
    security_profile: Option<String>,
    suppressed: Option<bool>,
    verification_state: Option<VerificationState>,
    /// A `behaviorCriteriaType` that no Warden behavior has: the list is empty.
    matches_nothing: bool,
}

impl Filters {
    fn from_query(q: &mut Query) -> Result<Filters, ApiError> {
        let thing = q.take("thingName");
        if let Some(thing) = &thing {
            check_name("thingName", thing)?;
        }
        let security_profile = q.take("securityProfileName");
        if let Some(profile) = &security_profile {
            check_name("securityProfileName", profile)?;
        }
        let matches_nothing = match q.take("behaviorCriteriaType").as_deref() {
            None | Some("STATIC") => false,
            Some("STATISTICAL" | "MACHINE_LEARNING") => true,
            Some(other) => {
                return Err(ApiError::invalid(format!(
                    "behaviorCriteriaType must be STATIC, STATISTICAL or MACHINE_LEARNING, not {other:?}"
                )));
            }
        };
        let suppressed = q.bool("listSuppressedAlerts")?;
        let verification_state = q.take("verificationState").map(|v| parse_state(&v)).transpose()?;
        Ok(Filters { thing, security_profile, suppressed, verification_state, matches_nothing })
    }
}

fn parse_state(value: &str) -> Result<VerificationState, ApiError> {
    VerificationState::from_str(value).map_err(|_| {
        ApiError::invalid(format!(
            "verificationState must be FALSE_POSITIVE, BENIGN_POSITIVE, TRUE_POSITIVE or UNKNOWN, not {value:?}"
        ))
    })
}

fn active_violation(v: ActiveViolation) -> Result<Value, ApiError> {
    let mut body = json!({
        "violationId": v.violation_id,
        "thingName": v.thing,
        "securityProfileName": v.security_profile,
        "behavior": stored_json(&v.violation_id, &v.behavior_json)?,
        "lastViolationValue": stored_json(&v.violation_id, &v.last_violation_value)?,
        "verificationState": v.verification_state.as_str(),
        "lastViolationTime": epoch_seconds(v.last_violation_ms),
        "violationStartTime": epoch_seconds(v.violation_start_ms),
    });
    if let Some(d) = v.verification_description {
        body["verificationStateDescription"] = json!(d);
    }
    Ok(body)
}

fn violation_event(e: ViolationEvent) -> Result<Value, ApiError> {
    let mut body = json!({
        "violationId": e.violation_id,
        "thingName": e.thing,
        "securityProfileName": e.security_profile,
        "behavior": stored_json(&e.violation_id, &e.behavior_json)?,
        "metricValue": stored_json(&e.violation_id, &e.metric_value)?,
        "violationEventType": e.event_type.as_str(),
        "verificationState": e.verification_state.as_str(),
        "violationEventTime": epoch_seconds(e.event_time_ms),
    });
    if let Some(d) = e.verification_description {
        body["verificationStateDescription"] = json!(d);
    }
    Ok(body)
}

/// Shapes a page whose items may fail to convert.
fn reply_page<T>(
    paging: &Paging,
    key: &str,
    page: warden_store::Page<T>,
    item: impl Fn(T) -> Result<Value, ApiError>,
) -> ApiResult {
    let items = page.items.into_iter().map(item).collect::<Result<Vec<_>, _>>()?;
    paging.reply(key, warden_store::Page { items, next_token: page.next_token }, |v| v)
}

pub async fn list_active(State(s): State<AppState>, mut q: Query) -> ApiResult {
    let paging = Paging::from_query(&mut q, PageStyle::Token)?;
    let f = Filters::from_query(&mut q)?;
    q.finish()?;
    if f.matches_nothing {
        return reply_page(
            &paging,
            "activeViolations",
            warden_store::Page { items: Vec::new(), next_token: None },
            active_violation,
        );
    }
    let filter = ActiveViolationFilter {
        thing: f.thing,
        security_profile: f.security_profile,
        behavior: None,
        suppressed: f.suppressed,
        verification_state: f.verification_state,
    };
    let page = s.store.list_active_violations(&filter, &paging.request).await?;
    reply_page(&paging, "activeViolations", page, active_violation)
}

/// The range is `[startTime, endTime)`.
pub async fn list_events(State(s): State<AppState>, mut q: Query) -> ApiResult {
    let paging = Paging::from_query(&mut q, PageStyle::Token)?;
    let start_ms = q.timestamp_ms("startTime")?;
    let end_ms = q.timestamp_ms("endTime")?;
    let f = Filters::from_query(&mut q)?;
    q.finish()?;
    if start_ms > end_ms {
        return Err(ApiError::invalid("startTime must not be after endTime"));
    }
    if f.matches_nothing {
        return reply_page(
            &paging,
            "violationEvents",
            warden_store::Page { items: Vec::new(), next_token: None },
            violation_event,
        );
    }
    let filter = ViolationEventFilter {
        thing: f.thing,
        security_profile: f.security_profile,
        suppressed: f.suppressed,
        verification_state: f.verification_state,
        ..ViolationEventFilter::between(start_ms, end_ms)
    };
    let page = s.store.list_violation_events(&filter, &paging.request).await?;
    reply_page(&paging, "violationEvents", page, violation_event)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PutVerificationState {
    verification_state: String,
    verification_state_description: Option<String>,
}

/// An unknown violation id is an `InvalidRequestException`, the only client error AWS models
/// for this operation.
pub async fn put_verification_state(
    State(s): State<AppState>,
    Name(violation_id): Name,
    Json(input): Json<PutVerificationState>,
) -> ApiResult {
    check_violation_id(&violation_id)?;
    let state = parse_state(&input.verification_state)?;
    let description = input.verification_state_description.filter(|d| !d.is_empty());
    if description.as_ref().is_some_and(|d| d.chars().count() > 1000 || d.chars().any(char::is_control)) {
        return Err(ApiError::invalid(
            "verificationStateDescription must be at most 1000 characters, without control characters",
        ));
    }
    match s.store.put_verification_state(&violation_id, state, description.as_deref()).await {
        Ok(()) => empty(),
        Err(StoreError::NotFound { .. }) => {
            Err(ApiError::invalid(format!("no violation has id {violation_id}")))
        }
        Err(e) => Err(e.into()),
    }
}
