//! Things: `CreateThing`, `DescribeThing`, `UpdateThing`, `DeleteThing`, `ListThings`, and the
//! attribute payloads that things and thing groups share.
//!
//! Thing types and billing groups do not exist in Warden, so the members naming them are refused
//! (`removeThingType` is accepted: there is never a type to remove).

use std::collections::BTreeMap;

use axum::extract::State;
use serde::Deserialize;
use serde_json::json;
use warden_store::{AttributeUpdate, StoreError, Thing, ThingFilter};

use super::groups::group_ref;
use super::protocol::{ApiError, ApiResult, Json, Name, PageStyle, Paging, Query, check_name, empty, reply};
use crate::state::{AppState, RegistryChange};

/// AWS's limit on attributes per thing or group.
const MAX_ATTRIBUTES: usize = 50;

/// AWS `AttributePayload`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AttributePayload {
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    #[serde(default)]
    merge: bool,
}

impl AttributePayload {
    /// The attributes, checked against AWS's patterns: names `[a-zA-Z0-9_.,@/:#-]{1,128}`,
    /// values `[a-zA-Z0-9_.,@/:#=\[\]-]{0,800}`, at most 50.
    pub fn into_update(self) -> Result<AttributeUpdate, ApiError> {
        if self.attributes.len() > MAX_ATTRIBUTES {
            return Err(ApiError::invalid(format!(
                "attributePayload.attributes has {} attributes; at most {MAX_ATTRIBUTES} are allowed",
                self.attributes.len()
            )));
        }
        let name_char = |b: u8| b.is_ascii_alphanumeric() || b"_.,@/:#-".contains(&b);
        for (name, value) in &self.attributes {
            if !(1..=128).contains(&name.len()) || !name.bytes().all(name_char) {
                return Err(ApiError::invalid(format!(
                    "attributePayload.attributes: name {name:?} must be 1 to 128 characters of [a-zA-Z0-9_.,@/:#-]"
                )));
            }
            if value.len() > 800 || !value.bytes().all(|b| name_char(b) || b"=[]".contains(&b)) {
                return Err(ApiError::invalid(format!(
                    "attributePayload.attributes: the value of {name:?} must be at most 800 characters of [a-zA-Z0-9_.,@/:#=[]-]"
                )));
            }
        }
        Ok(AttributeUpdate { attributes: self.attributes, merge: self.merge })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateThing {
    #[serde(default)]
    attribute_payload: AttributePayload,
}

/// As in AWS, creating a thing again with the same attributes succeeds and returns it.
pub async fn create(
    State(s): State<AppState>,
    Name(name): Name,
    Json(input): Json<CreateThing>,
) -> ApiResult {
    check_name("thingName", &name)?;
    let attributes = input.attribute_payload.into_update()?.attributes;
    let thing = match s.store.create_thing(&name, attributes.clone(), s.now_ms()).await {
        Ok(thing) => thing,
        Err(e @ StoreError::AlreadyExists { .. }) => match s.store.describe_thing(&name).await {
            Ok(existing) if existing.attributes == attributes => existing,
            _ => return Err(ApiError::from(e).with_arn(s.arns.thing(&name))),
        },
        Err(e) => return Err(e.into()),
    };
    reply(json!({ "thingName": thing.name, "thingArn": s.arns.thing(&thing.name), "thingId": thing.id }))
}

pub async fn describe(State(s): State<AppState>, Name(name): Name) -> ApiResult {
    check_name("thingName", &name)?;
    let thing = s.store.describe_thing(&name).await?;
    reply(json!({
        // AWS's default MQTT client id of a thing is its name, as in Warden.
        "defaultClientId": thing.name,
        "thingName": thing.name,
        "thingId": thing.id,
        "thingArn": s.arns.thing(&thing.name),
        "attributes": thing.attributes,
        "version": thing.version,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateThing {
    attribute_payload: Option<AttributePayload>,
    expected_version: Option<u64>,
    #[serde(default, rename = "removeThingType")]
    _remove_thing_type: bool,
}

pub async fn update(
    State(s): State<AppState>,
    Name(name): Name,
    Json(input): Json<UpdateThing>,
) -> ApiResult {
    check_name("thingName", &name)?;
    let update = match input.attribute_payload {
        Some(payload) => payload.into_update()?,
        // Merging nothing changes nothing.
        None => AttributeUpdate { attributes: BTreeMap::new(), merge: true },
    };
    s.store.update_thing(&name, update, input.expected_version).await?;
    empty()
}

/// As in AWS, deleting a thing that does not exist succeeds.
pub async fn delete(State(s): State<AppState>, Name(name): Name, mut q: Query) -> ApiResult {
    check_name("thingName", &name)?;
    let expected_version = q.u64("expectedVersion")?;
    q.finish()?;
    match s.store.delete_thing(&name, expected_version).await {
        Ok(()) => s.registry_changed(RegistryChange::ThingDeleted { thing: name }).await,
        Err(StoreError::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    empty()
}

pub async fn list(State(s): State<AppState>, mut q: Query) -> ApiResult {
    let paging = Paging::from_query(&mut q, PageStyle::Token)?;
    let filter =
        ThingFilter { attribute_name: q.take("attributeName"), attribute_value: q.take("attributeValue") };
    q.finish()?;
    if filter.attribute_value.is_some() && filter.attribute_name.is_none() {
        return Err(ApiError::invalid("attributeValue requires attributeName"));
    }
    let page = s.store.list_things(&filter, &paging.request).await?;
    paging.reply("things", page, |t: Thing| {
        json!({
            "thingName": t.name,
            "thingArn": s.arns.thing(&t.name),
            "attributes": t.attributes,
            "version": t.version,
        })
    })
}

/// `ListThingGroupsForThing`: the groups the thing is a direct member of.
pub async fn list_groups(State(s): State<AppState>, Name(name): Name, mut q: Query) -> ApiResult {
    check_name("thingName", &name)?;
    let paging = Paging::from_query(&mut q, PageStyle::Token)?;
    q.finish()?;
    let page = s.store.list_groups_for_thing(&name, &paging.request).await?;
    paging.reply("thingGroups", page, |g| group_ref(&s.arns, &g))
}
