//! Custom metrics: `CreateCustomMetric`, `DescribeCustomMetric`, `UpdateCustomMetric`,
//! `DeleteCustomMetric` and `ListCustomMetrics`.
//!
//! A custom metric is a name and a type that behaviors may then use as their `metric`. Only
//! the display name can change, as in AWS. A metric still used by a security profile cannot be
//! deleted: the profile would no longer compile. `clientRequestToken` is required as in AWS but
//! not kept; repeating a creation exactly succeeds, which is the idempotence it stands for.

use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use warden_detect::CustomMetricType;
use warden_store::{CustomMetric, StoreError};

use super::profiles::all_profiles;
use super::protocol::{
    ApiError, ApiResult, Json, Name, PageStyle, Paging, Query, check_name, empty, epoch_seconds, reply,
};
use crate::state::{AppState, Arns};

/// `arn:aws:iot:{region}:{account}:custommetric/{name}`.
pub fn metric_arn(arns: &Arns, name: &str) -> String {
    format!("{}custommetric/{name}", arns.prefix())
}

fn check_display_name(display_name: &Option<String>) -> Result<(), ApiError> {
    if display_name.as_ref().is_some_and(|d| d.chars().count() > 128 || d.chars().any(char::is_control)) {
        return Err(ApiError::invalid(
            "displayName must be at most 128 characters, without control characters",
        ));
    }
    Ok(())
}

/// Checks a `clientRequestToken` against AWS's `^[a-zA-Z0-9-_]+$`, 1 to 64 characters.
pub fn check_client_request_token(token: &str) -> Result<(), ApiError> {
    if (1..=64).contains(&token.len())
        && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(())
    } else {
        Err(ApiError::invalid("clientRequestToken must be 1 to 64 characters of [a-zA-Z0-9_-]"))
    }
}

fn describe_body(arns: &Arns, m: &CustomMetric) -> Value {
    let mut body = json!({
        "metricName": m.name,
        "metricArn": metric_arn(arns, &m.name),
        "metricType": m.metric_type,
        "creationDate": epoch_seconds(m.created_at_ms),
        "lastModifiedDate": epoch_seconds(m.last_modified_ms),
    });
    if let Some(d) = &m.display_name {
        body["displayName"] = json!(d);
    }
    body
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateCustomMetric {
    metric_type: String,
    display_name: Option<String>,
    client_request_token: String,
}

pub async fn create(
    State(s): State<AppState>,
    Name(name): Name,
    Json(input): Json<CreateCustomMetric>,
) -> ApiResult {
    check_name("metricName", &name)?;
    if name.starts_with("aws:") {
        return Err(ApiError::invalid("metricName must not start with aws:, which names AWS's own metrics"));
    }
    if CustomMetricType::parse(&input.metric_type).is_none() {
        return Err(ApiError::invalid(format!(
            "metricType must be string-list, ip-address-list, number-list or number, not {:?}",
            input.metric_type
        )));
    }
    check_display_name(&input.display_name)?;
    check_client_request_token(&input.client_request_token)?;
    let display_name = input.display_name.as_deref().filter(|d| !d.is_empty());
    match s.store.create_custom_metric(&name, &input.metric_type, display_name, s.now_ms()).await {
        Ok(_) => {}
        Err(e @ StoreError::AlreadyExists { .. }) => match s.store.describe_custom_metric(&name).await {
            Ok(existing)
                if existing.metric_type == input.metric_type
                    && existing.display_name.as_deref() == display_name => {}
            _ => return Err(ApiError::from(e).with_arn(metric_arn(&s.arns, &name))),
        },
        Err(e) => return Err(e.into()),
    }
    reply(json!({ "metricName": name, "metricArn": metric_arn(&s.arns, &name) }))
}

pub async fn describe(State(s): State<AppState>, Name(name): Name) -> ApiResult {
    check_name("metricName", &name)?;
    let metric = s.store.describe_custom_metric(&name).await?;
    reply(describe_body(&s.arns, &metric))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateCustomMetric {
    display_name: String,
}

pub async fn update(
    State(s): State<AppState>,
    Name(name): Name,
    Json(input): Json<UpdateCustomMetric>,
) -> ApiResult {
    check_name("metricName", &name)?;
    let display_name = Some(input.display_name);
    check_display_name(&display_name)?;
    let metric = s.store.update_custom_metric(&name, display_name.as_deref(), s.now_ms()).await?;
    reply(describe_body(&s.arns, &metric))
}

/// Refused while a profile uses the metric; a metric that does not exist is deleted already.
pub async fn delete(State(s): State<AppState>, Name(name): Name) -> ApiResult {
    check_name("metricName", &name)?;
    if let Some((profile, _)) = all_profiles(&s).await?.into_iter().find(|(_, d)| d.uses_metric(&name)) {
        return Err(ApiError::invalid(format!(
            "custom metric {name} is used by security profile {}; remove it from the profile first",
            profile.name
        )));
    }
    match s.store.delete_custom_metric(&name).await {
        Ok(()) | Err(StoreError::NotFound { .. }) => empty(),
        Err(e) => Err(e.into()),
    }
}

pub async fn list(State(s): State<AppState>, mut q: Query) -> ApiResult {
    let paging = Paging::from_query(&mut q, PageStyle::Token)?;
    q.finish()?;
    let page = s.store.list_custom_metrics(&paging.request).await?;
    paging.reply("metricNames", page, |m| json!(m.name))
}
