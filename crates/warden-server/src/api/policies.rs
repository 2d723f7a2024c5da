//! AWS IoT policies and their targets: `CreatePolicy`, `GetPolicy`, `DeletePolicy`,
//! `ListPolicies`, `AttachPolicy`, `DetachPolicy`, `ListAttachedPolicies` and
//! `ListTargetsForPolicy`.
//!
//! A document is accepted only if the MQTT endpoint can enforce it exactly
//! ([`warden_broker::policy::Policy::parse`]); anything else is AWS's
//! `MalformedPolicyException`. Targets are certificate and thing group ARNs of this server, kept
//! in one canonical spelling (lower-case certificate ids) because the store compares them as
//! strings. Creating or deleting a policy is announced as [`RegistryChange::Policy`], attaching
//! or detaching it as [`RegistryChange::PolicyTarget`]. Policy versions are out of scope: every
//! policy has the one version `"1"`.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use warden_broker::policy::Policy as PolicyDocument;
use warden_store::Policy;

use super::certificates::certificate_arn_id;
use super::protocol::{
    ApiError, ApiResult, Json, Name, PageStyle, Paging, Query, arn_resource, check_name, empty,
    epoch_seconds, page_in_memory, reply,
};
use crate::state::{AppState, RegistryChange};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreatePolicy {
    policy_document: String,
}

pub async fn create(
    State(s): State<AppState>,
    Name(name): Name,
    Json(input): Json<CreatePolicy>,
) -> ApiResult {
    check_policy_name(&name)?;
    PolicyDocument::parse(&input.policy_document)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "MalformedPolicyException", e.to_string()))?;
    let policy = s
        .store
        .create_policy(&name, &input.policy_document, s.now_ms())
        .await
        .map_err(|e| ApiError::from(e).with_arn(s.arns.policy(&name)))?;
    s.registry_changed(RegistryChange::Policy { policy: policy.name.clone() }).await;
    reply(json!({
        "policyName": policy.name,
        "policyArn": s.arns.policy(&policy.name),
        "policyDocument": policy.document,
        "policyVersionId": policy.default_version_id,
    }))
}

pub async fn get(State(s): State<AppState>, Name(name): Name) -> ApiResult {
    check_policy_name(&name)?;
    let p: Policy = s.store.get_policy(&name).await?;
    reply(json!({
        "policyName": p.name,
        "policyArn": s.arns.policy(&p.name),
        "policyDocument": p.document,
        "defaultVersionId": p.default_version_id,
        "creationDate": epoch_seconds(p.created_at_ms),
        "lastModifiedDate": epoch_seconds(p.last_modified_ms),
    }))
}

pub async fn delete(State(s): State<AppState>, Name(name): Name) -> ApiResult {
    check_policy_name(&name)?;
    s.store.delete_policy(&name).await?;
    s.registry_changed(RegistryChange::Policy { policy: name }).await;
    empty()
}

/// `ListPolicies`, by name whatever `isAscendingOrder` says: the store keeps one order.
pub async fn list(State(s): State<AppState>, mut q: Query) -> ApiResult {
    let paging = Paging::from_query(&mut q, PageStyle::Marker)?;
    q.bool("isAscendingOrder")?;
    q.finish()?;
    let page = s.store.list_policies(&paging.request).await?;
    paging.reply("policies", page, |p| policy_ref(&s, &p.name))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicyTarget {
    target: String,
}

pub async fn attach(
    State(s): State<AppState>,
    Name(name): Name,
    Json(input): Json<PolicyTarget>,
) -> ApiResult {
    check_policy_name(&name)?;
    let target = existing_target(&s, &input.target).await?;
    s.store.attach_policy(&name, target.arn()).await?;
    s.registry_changed(RegistryChange::PolicyTarget { policy: name, target: target.arn().to_owned() }).await;
    empty()
}

/// Detaching does not require the target to exist, so that an attachment outliving its target
/// can still be removed.
pub async fn detach(
    State(s): State<AppState>,
    Name(name): Name,
    Json(input): Json<PolicyTarget>,
) -> ApiResult {
    check_policy_name(&name)?;
    let target = Target::parse(&s, &input.target)?;
    s.store.detach_policy(&name, target.arn()).await?;
    s.registry_changed(RegistryChange::PolicyTarget { policy: name, target: target.arn().to_owned() }).await;
    empty()
}

/// `ListAttachedPolicies`. With `recursive`, a thing group's list also has the policies of its
/// ancestors, which its members inherit.
pub async fn list_attached(State(s): State<AppState>, Name(target): Name, mut q: Query) -> ApiResult {
    let paging = Paging::from_query(&mut q, PageStyle::Marker)?;
    let recursive = q.bool("recursive")?.unwrap_or(false);
    q.finish()?;
    let target = existing_target(&s, &target).await?;
    let page = match &target {
        Target::Group { ancestors, .. } if recursive => {
            let mut targets: Vec<String> = ancestors.iter().map(|g| s.arns.thing_group(g)).collect();
            targets.push(target.arn().to_owned());
            let names = s.store.policies_for_targets(&targets).await?.into_iter().map(|p| p.name).collect();
            page_in_memory(names, &paging.request)?
        }
        _ => s.store.list_attached_policies(target.arn(), &paging.request).await?,
    };
    paging.reply("policies", page, |name| policy_ref(&s, &name))
}

pub async fn list_targets(State(s): State<AppState>, Name(name): Name, mut q: Query) -> ApiResult {
    check_policy_name(&name)?;
    let paging = Paging::from_query(&mut q, PageStyle::Marker)?;
    q.finish()?;
    let page = s.store.list_targets_for_policy(&name, &paging.request).await?;
    paging.reply("targets", page, Value::String)
}

/// AWS `Policy`, the item of policy lists.
fn policy_ref(s: &AppState, name: &str) -> Value {
    json!({ "policyName": name, "policyArn": s.arns.policy(name) })
}

/// AWS's `PolicyName`: `[\w+=,.@-]{1,128}`.
fn check_policy_name(name: &str) -> Result<(), ApiError> {
    let ok = (1..=128).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "policyName {name:?} must be 1 to 128 characters of [a-zA-Z0-9_+=,.@-]"
        )))
    }
}

/// A policy target, in its canonical ARN.
#[derive(Debug)]
enum Target {
    Certificate {
        arn: String,
    },
    /// `ancestors` is filled in only by [`existing_target`].
    Group {
        arn: String,
        name: String,
        ancestors: Vec<String>,
    },
}

impl Target {
    fn parse(s: &AppState, arn: &str) -> Result<Target, ApiError> {
        if let Some(name) = arn_resource(&s.arns, arn, "thinggroup") {
            check_name("target thing group", name)?;
            return Ok(Target::Group {
                arn: s.arns.thing_group(name),
                name: name.to_owned(),
                ancestors: Vec::new(),
            });
        }
        if arn_resource(&s.arns, arn, "cert").is_some() {
            let id = certificate_arn_id(&s.arns, "target", arn)?;
            return Ok(Target::Certificate { arn: s.arns.certificate(&id) });
        }
        Err(ApiError::invalid(format!(
            "target {arn:?} must be a certificate or thing group ARN of this server ({}cert/<id> or {}thinggroup/<name>)",
            s.arns.prefix(),
            s.arns.prefix()
        )))
    }

    fn arn(&self) -> &str {
        match self {
            Target::Certificate { arn } | Target::Group { arn, .. } => arn,
        }
    }
}

/// A target that must exist (`ResourceNotFoundException` otherwise).
async fn existing_target(s: &AppState, arn: &str) -> Result<Target, ApiError> {
    let mut target = Target::parse(s, arn)?;
    match &mut target {
        Target::Certificate { arn } => {
            let id = certificate_arn_id(&s.arns, "target", arn)?;
            s.store.describe_certificate(&id).await?;
        }
        Target::Group { name, ancestors, .. } => {
            *ancestors = s.store.describe_thing_group(name).await?.root_to_parent;
        }
    }
    Ok(target)
}
