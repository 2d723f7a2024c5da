//! Dimensions: `CreateDimension`, `DescribeDimension`, `UpdateDimension`, `DeleteDimension` and
//! `ListDimensions`.
//!
//! A dimension is a named list of MQTT topic filters (`TOPIC_FILTER`, the one type AWS has) that
//! narrows a message metric in a behavior. Only the values can change, as in AWS. A dimension
//! still used by a security profile cannot be deleted. `clientRequestToken` is handled as for
//! custom metrics.

use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use warden_store::{Dimension, StoreError};

use super::custom_metrics::check_client_request_token;
use super::profiles::all_profiles;
use super::protocol::{
    ApiError, ApiResult, Json, Name, PageStyle, Paging, Query, check_name, empty, epoch_seconds, reply,
};
use crate::state::{AppState, Arns, RegistryChange};

/// AWS's limit on values per dimension.
const MAX_VALUES: usize = 100;

/// `arn:aws:iot:{region}:{account}:dimension/{name}`.
pub fn dimension_arn(arns: &Arns, name: &str) -> String {
    format!("{}dimension/{name}", arns.prefix())
}

/// Checks `stringValues`: 1 to 100 topic filters of 1 to 256 characters, each a valid MQTT
/// topic filter (wildcards only as whole levels, `#` last).
fn check_values(values: &[String]) -> Result<(), ApiError> {
    if !(1..=MAX_VALUES).contains(&values.len()) {
        return Err(ApiError::invalid(format!("stringValues must have 1 to {MAX_VALUES} topic filters")));
    }
    for (i, v) in values.iter().enumerate() {
        let levels: Vec<&str> = v.split('/').collect();
        let well_formed = levels.iter().enumerate().all(|(j, level)| match *level {
            "#" => j == levels.len() - 1,
            "+" => true,
            l => !l.contains(['#', '+']),
        });
        if !(1..=256).contains(&v.chars().count()) || v.contains('\0') || !well_formed {
            return Err(ApiError::invalid(format!(
                "stringValues[{i}] {v:?} must be an MQTT topic filter of 1 to 256 characters"
            )));
        }
    }
    Ok(())
}

fn describe_body(arns: &Arns, d: &Dimension) -> Value {
    json!({
        "name": d.name,
        "arn": dimension_arn(arns, &d.name),
        "type": d.dimension_type,
        "stringValues": d.string_values,
        "creationDate": epoch_seconds(d.created_at_ms),
        "lastModifiedDate": epoch_seconds(d.last_modified_ms),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateDimension {
    #[serde(rename = "type")]
    dimension_type: String,
    string_values: Vec<String>,
    client_request_token: String,
}

pub async fn create(
    State(s): State<AppState>,
    Name(name): Name,
    Json(input): Json<CreateDimension>,
) -> ApiResult {
    check_name("name", &name)?;
    if input.dimension_type != "TOPIC_FILTER" {
        return Err(ApiError::invalid(format!("type must be TOPIC_FILTER, not {:?}", input.dimension_type)));
    }
    check_values(&input.string_values)?;
    check_client_request_token(&input.client_request_token)?;
    let created =
        s.store.create_dimension(&name, &input.dimension_type, input.string_values.clone(), s.now_ms()).await;
    match created {
        Ok(_) => {}
        Err(e @ StoreError::AlreadyExists { .. }) => match s.store.describe_dimension(&name).await {
            Ok(existing) if existing.string_values == input.string_values => {}
            _ => return Err(ApiError::from(e).with_arn(dimension_arn(&s.arns, &name))),
        },
        Err(e) => return Err(e.into()),
    }
    reply(json!({ "name": name, "arn": dimension_arn(&s.arns, &name) }))
}

pub async fn describe(State(s): State<AppState>, Name(name): Name) -> ApiResult {
    check_name("name", &name)?;
    let dimension = s.store.describe_dimension(&name).await?;
    reply(describe_body(&s.arns, &dimension))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateDimension {
    string_values: Vec<String>,
}

pub async fn update(
    State(s): State<AppState>,
    Name(name): Name,
    Json(input): Json<UpdateDimension>,
) -> ApiResult {
    check_name("name", &name)?;
    check_values(&input.string_values)?;
    let dimension = s.store.update_dimension(&name, input.string_values, s.now_ms()).await?;
    // Behaviors filter by the dimension's values: detection recompiles the profiles using it.
    s.registry_changed(RegistryChange::SecurityProfiles).await;
    reply(describe_body(&s.arns, &dimension))
}

/// Refused while a profile uses the dimension; one that does not exist is deleted already.
pub async fn delete(State(s): State<AppState>, Name(name): Name) -> ApiResult {
    check_name("name", &name)?;
    if let Some((profile, _)) = all_profiles(&s).await?.into_iter().find(|(_, d)| d.uses_dimension(&name)) {
        return Err(ApiError::invalid(format!(
            "dimension {name} is used by security profile {}; remove it from the profile first",
            profile.name
        )));
    }
    match s.store.delete_dimension(&name).await {
        Ok(()) | Err(StoreError::NotFound { .. }) => empty(),
        Err(e) => Err(e.into()),
    }
}

pub async fn list(State(s): State<AppState>, mut q: Query) -> ApiResult {
    let paging = Paging::from_query(&mut q, PageStyle::Token)?;
    q.finish()?;
    let page = s.store.list_dimensions(&paging.request).await?;
    paging.reply("dimensionNames", page, |d| json!(d.name))
}
