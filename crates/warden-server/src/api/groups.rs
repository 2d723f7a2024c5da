//! Static thing groups: `CreateThingGroup`, `DescribeThingGroup`, `UpdateThingGroup`,
//! `DeleteThingGroup`, `ListThingGroups`, `AddThingToThingGroup`, `RemoveThingFromThingGroup`
//! and `ListThingsInThingGroup`.
//!
//! Groups matter for permissions: a thing inherits the policies of its groups and their
//! ancestors, so membership changes are announced as [`RegistryChange::ThingGroups`] and
//! deletions as [`RegistryChange::ThingGroupDeleted`]. Dynamic groups, tags and billing groups
//! do not exist in Warden.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use warden_store::{NewThingGroup, PageRequest, StoreError, ThingGroup, ThingGroupFilter, ThingGroupUpdate};

use super::protocol::{
    ApiError, ApiResult, Json, Name, PageStyle, Paging, Query, arn_resource, check_name, empty,
    epoch_seconds, reply,
};
use super::things::AttributePayload;
use crate::state::{AppState, Arns, RegistryChange};

/// AWS `GroupNameAndArn`, the item of group lists.
pub fn group_ref(arns: &Arns, name: &str) -> Value {
    json!({ "groupName": name, "groupArn": arns.thing_group(name) })
}

/// AWS `ThingGroupProperties`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ThingGroupProperties {
    thing_group_description: Option<String>,
    attribute_payload: Option<AttributePayload>,
}

impl ThingGroupProperties {
    /// Checks the description against AWS's `[\p{Graph}\x20]{0,2028}`.
    fn into_update(self) -> Result<ThingGroupUpdate, ApiError> {
        if let Some(d) = &self.thing_group_description
            && (d.chars().count() > 2028
                || d.chars().any(|c| c.is_control() || (c.is_whitespace() && c != ' ')))
        {
            return Err(ApiError::invalid(
                "thingGroupProperties.thingGroupDescription must be at most 2028 visible characters and spaces",
            ));
        }
        Ok(ThingGroupUpdate {
            description: self.thing_group_description,
            attributes: self.attribute_payload.map(AttributePayload::into_update).transpose()?,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateThingGroup {
    parent_group_name: Option<String>,
    #[serde(default)]
    thing_group_properties: ThingGroupProperties,
}

pub async fn create(
    State(s): State<AppState>,
    Name(name): Name,
    Json(input): Json<CreateThingGroup>,
) -> ApiResult {
    check_name("thingGroupName", &name)?;
    if let Some(parent) = &input.parent_group_name {
        check_name("parentGroupName", parent)?;
    }
    let properties = input.thing_group_properties.into_update()?;
    let group = NewThingGroup {
        name: name.clone(),
        parent: input.parent_group_name,
        description: properties.description,
        attributes: properties.attributes.map(|a| a.attributes).unwrap_or_default(),
    };
    let group = match s.store.create_thing_group(group.clone(), s.now_ms()).await {
        Ok(created) => created,
        // As in AWS, creating a group again exactly as it is succeeds and returns it.
        Err(e @ StoreError::AlreadyExists { .. }) => match s.store.describe_thing_group(&name).await {
            Ok(existing)
                if existing.parent == group.parent
                    && existing.description == group.description.filter(|d| !d.is_empty())
                    && existing.attributes == group.attributes =>
            {
                existing
            }
            _ => return Err(ApiError::from(e).with_arn(s.arns.thing_group(&name))),
        },
        Err(e) => return Err(e.into()),
    };
    reply(json!({
        "thingGroupName": group.name,
        "thingGroupArn": s.arns.thing_group(&group.name),
        "thingGroupId": group.id,
    }))
}

pub async fn describe(State(s): State<AppState>, Name(name): Name) -> ApiResult {
    check_name("thingGroupName", &name)?;
    let g: ThingGroup = s.store.describe_thing_group(&name).await?;
    let mut properties = json!({});
    if let Some(description) = &g.description {
        properties["thingGroupDescription"] = json!(description);
    }
    if !g.attributes.is_empty() {
        properties["attributePayload"] = json!({ "attributes": g.attributes });
    }
    let mut metadata = json!({ "creationDate": epoch_seconds(g.created_at_ms) });
    if let Some(parent) = &g.parent {
        metadata["parentGroupName"] = json!(parent);
        metadata["rootToParentThingGroups"] =
            g.root_to_parent.iter().map(|n| group_ref(&s.arns, n)).collect::<Vec<_>>().into();
    }
    reply(json!({
        "thingGroupName": g.name,
        "thingGroupId": g.id,
        "thingGroupArn": s.arns.thing_group(&g.name),
        "version": g.version,
        "thingGroupProperties": properties,
        "thingGroupMetadata": metadata,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateThingGroup {
    thing_group_properties: ThingGroupProperties,
    expected_version: Option<u64>,
}

pub async fn update(
    State(s): State<AppState>,
    Name(name): Name,
    Json(input): Json<UpdateThingGroup>,
) -> ApiResult {
    check_name("thingGroupName", &name)?;
    let update = input.thing_group_properties.into_update()?;
    let group = s.store.update_thing_group(&name, update, input.expected_version).await?;
    reply(json!({ "version": group.version }))
}

/// Deletes the group, then detaches the policies attached to it, so that a group created later
/// under the same name does not inherit them. Deleting a group that does not exist succeeds, as
/// `DeleteThing` does (AWS models no `ResourceNotFoundException` for it).
pub async fn delete(State(s): State<AppState>, Name(name): Name, mut q: Query) -> ApiResult {
    check_name("thingGroupName", &name)?;
    let expected_version = q.u64("expectedVersion")?;
    q.finish()?;
    match s.store.delete_thing_group(&name, expected_version).await {
        Ok(()) => {}
        Err(StoreError::NotFound { .. }) => return empty(),
        Err(e) => return Err(e.into()),
    }
    s.registry_changed(RegistryChange::ThingGroupDeleted { group: name.clone() }).await;
    let target = s.arns.thing_group(&name);
    let mut request = Some(PageRequest::default());
    while let Some(current) = request {
        // Keyset pagination stays correct while the listed rows are deleted.
        let page = s.store.list_attached_policies(&target, &current).await?;
        for policy in page.items.iter().cloned() {
            s.store.detach_policy(&policy, &target).await?;
            s.registry_changed(RegistryChange::PolicyTarget { policy, target: target.clone() }).await;
        }
        request = current.after(&page);
    }
    empty()
}

pub async fn list(State(s): State<AppState>, mut q: Query) -> ApiResult {
    let paging = Paging::from_query(&mut q, PageStyle::Token)?;
    let filter = ThingGroupFilter {
        parent: q.take("parentGroup"),
        name_prefix: q.take("namePrefixFilter"),
        recursive: q.bool("recursive")?.unwrap_or(false),
    };
    q.finish()?;
    if let Some(parent) = &filter.parent {
        check_name("parentGroup", parent)?;
    }
    if let Some(prefix) = &filter.name_prefix {
        check_name("namePrefixFilter", prefix)?;
    }
    let page = s.store.list_thing_groups(&filter, &paging.request).await?;
    paging.reply("thingGroups", page, |g| group_ref(&s.arns, &g.name))
}

pub async fn list_things(State(s): State<AppState>, Name(name): Name, mut q: Query) -> ApiResult {
    check_name("thingGroupName", &name)?;
    let paging = Paging::from_query(&mut q, PageStyle::Token)?;
    let recursive = q.bool("recursive")?.unwrap_or(false);
    q.finish()?;
    let page = s.store.list_things_in_group(&name, recursive, &paging.request).await?;
    paging.reply("things", page, Value::String)
}

/// The body of `AddThingToThingGroup` and `RemoveThingFromThingGroup`: each side by name or ARN.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Membership {
    thing_group_name: Option<String>,
    thing_group_arn: Option<String>,
    thing_name: Option<String>,
    thing_arn: Option<String>,
    /// Only `AddThingToThingGroup` has it; without dynamic groups it changes nothing.
    #[serde(default, rename = "overrideDynamicGroups")]
    _override_dynamic_groups: bool,
}

/// `PUT /thing-groups/addThingToThingGroup` and `PUT /thing-groups/removeThingFromThingGroup`.
/// They share their path with `/thing-groups/{thingGroupName}`, which has no `PUT`, so they are
/// routed here; a group with one of these names thus stays reachable by its other methods.
pub async fn membership(
    State(s): State<AppState>,
    Name(operation): Name,
    Json(input): Json<Membership>,
) -> ApiResult {
    let add = match operation.as_str() {
        "addThingToThingGroup" => true,
        "removeThingFromThingGroup" => false,
        _ => {
            return Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowedException",
                format!("PUT /thing-groups/{operation} is not an operation"),
            ));
        }
    };
    let group = name_or_arn(
        &s.arns,
        "thingGroupName",
        input.thing_group_name,
        "thingGroupArn",
        input.thing_group_arn,
        "thinggroup",
    )?;
    let thing = name_or_arn(&s.arns, "thingName", input.thing_name, "thingArn", input.thing_arn, "thing")?;
    if add {
        s.store.add_thing_to_group(&group, &thing).await?;
    } else {
        s.store.remove_thing_from_group(&group, &thing).await?;
    }
    s.registry_changed(RegistryChange::ThingGroups { thing }).await;
    empty()
}

/// A thing or group given by name or by ARN (if both, they must agree), checked.
fn name_or_arn(
    arns: &Arns,
    name_field: &str,
    name: Option<String>,
    arn_field: &str,
    arn: Option<String>,
    kind: &str,
) -> Result<String, ApiError> {
    let from_arn = arn
        .map(|arn| {
            arn_resource(arns, &arn, kind).map(str::to_owned).ok_or_else(|| {
                ApiError::invalid(format!("{arn_field} {arn:?} is not a {kind} ARN of this server"))
            })
        })
        .transpose()?;
    let resolved = match (name, from_arn) {
        (Some(name), Some(from_arn)) if name != from_arn => {
            return Err(ApiError::invalid(format!("{name_field} and {arn_field} name different resources")));
        }
        (Some(name), _) | (None, Some(name)) => name,
        (None, None) => return Err(ApiError::invalid(format!("{name_field} or {arn_field} is required"))),
    };
    check_name(name_field, &resolved)?;
    Ok(resolved)
}
