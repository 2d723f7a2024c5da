//! Security profiles: `CreateSecurityProfile`, `DescribeSecurityProfile`,
//! `UpdateSecurityProfile`, `DeleteSecurityProfile`, `ListSecurityProfiles`,
//! `ValidateSecurityProfileBehaviors`, and their targets: `AttachSecurityProfile`,
//! `DetachSecurityProfile`, `ListTargetsForSecurityProfile`, `ListSecurityProfilesForTarget`.
//!
//! The request members are mapped onto plain serde mirrors of the AWS shapes, whose canonical
//! JSON (members that were not given are left out) is what the store keeps as the profile's
//! document. Behaviors are checked by `warden-detect`'s compiler against the custom metrics and
//! dimensions the store holds, so a profile is stored only if the engine can run it, and every
//! problem is reported with the path of its member. Statistical thresholds and ML Detect are
//! refused as not supported yet rather than stored and never evaluated.
//!
//! Profiles are not part of MQTT authorization, so no handler here announces a registry change.

use std::collections::{BTreeMap, HashMap};

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use warden_detect::{AwsMetric, CustomMetricType, Definitions, aws};
use warden_store::{
    NewSecurityProfile, Page, PageRequest, SecurityProfile, SecurityProfileUpdate, StoreError, all_pages,
};

use super::protocol::{
    ApiError, ApiResult, Json, Name, PageStyle, Paging, Query, arn_resource, check_name, empty,
    epoch_seconds, page_in_memory, reply,
};
use crate::state::{AppState, Arns, RegistryChange};

/// AWS's limit on security profiles attached to one target.
const MAX_PROFILES_PER_TARGET: usize = 5;

/// `arn:aws:iot:{region}:{account}:securityprofile/{name}`.
pub fn profile_arn(arns: &Arns, name: &str) -> String {
    format!("{}securityprofile/{name}", arns.prefix())
}

/// AWS `MetricValue`, as a threshold in a behavior.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MetricValueDoc {
    #[serde(skip_serializing_if = "Option::is_none")]
    count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cidrs: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ports: Option<Vec<u16>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    number: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    numbers: Option<Vec<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    strings: Option<Vec<String>>,
}

/// AWS `MetricDimension`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MetricDimensionDoc {
    dimension_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    operator: Option<String>,
}

/// AWS `BehaviorCriteria`. Integers are wide so that out-of-range values reach the compiler,
/// which names them; `statisticalThreshold` and `mlDetectionConfig` are taken as any JSON only
/// to be refused there.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CriteriaDoc {
    #[serde(skip_serializing_if = "Option::is_none")]
    comparison_operator: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<MetricValueDoc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    consecutive_datapoints_to_alarm: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    consecutive_datapoints_to_clear: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    statistical_threshold: Option<Value>,
    #[serde(rename = "mlDetectionConfig", skip_serializing_if = "Option::is_none")]
    ml_detection_config: Option<Value>,
}

/// AWS `Behavior`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BehaviorDoc {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    metric: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metric_dimension: Option<MetricDimensionDoc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    criteria: Option<CriteriaDoc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    suppress_alerts: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    export_metric: Option<bool>,
}

impl BehaviorDoc {
    fn to_aws(&self) -> aws::Behavior {
        aws::Behavior {
            name: self.name.clone(),
            metric: self.metric.clone(),
            metric_dimension: self.metric_dimension.as_ref().map(|d| aws::MetricDimension {
                dimension_name: d.dimension_name.clone(),
                operator: d.operator.clone(),
            }),
            criteria: self.criteria.as_ref().map(|c| aws::BehaviorCriteria {
                comparison_operator: c.comparison_operator.clone(),
                value: c.value.as_ref().map(|v| warden_detect::MetricValue {
                    count: v.count,
                    number: v.number,
                    numbers: v.numbers.clone(),
                    strings: v.strings.clone(),
                    ports: v.ports.clone(),
                    cidrs: v.cidrs.clone(),
                }),
                duration_seconds: c.duration_seconds,
                consecutive_datapoints_to_alarm: c.consecutive_datapoints_to_alarm,
                consecutive_datapoints_to_clear: c.consecutive_datapoints_to_clear,
                statistical_threshold: c.statistical_threshold.as_ref().map(|t| aws::StatisticalThreshold {
                    statistic: t.get("statistic").and_then(Value::as_str).map(str::to_owned),
                }),
                ml_detection_config: c.ml_detection_config.as_ref().map(|m| {
                    aws::MachineLearningDetectionConfig {
                        confidence_level: m.get("confidenceLevel").and_then(Value::as_str).map(str::to_owned),
                    }
                }),
            }),
            suppress_alerts: self.suppress_alerts,
            export_metric: self.export_metric,
        }
    }
}

/// AWS `AlertTarget`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AlertTargetDoc {
    alert_target_arn: String,
    role_arn: String,
}

/// AWS `MetricToRetain`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MetricToRetainDoc {
    metric: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    metric_dimension: Option<MetricDimensionDoc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    export_metric: Option<bool>,
}

/// AWS `MetricsExportConfig`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MetricsExportConfigDoc {
    mqtt_topic: String,
    role_arn: String,
}

/// The stored document of a profile: everything but its name and description.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileDocument {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    behaviors: Option<Vec<BehaviorDoc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    alert_targets: Option<BTreeMap<String, AlertTargetDoc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    additional_metrics_to_retain: Option<Vec<String>>,
    #[serde(default, rename = "additionalMetricsToRetainV2", skip_serializing_if = "Option::is_none")]
    additional_metrics_to_retain_v2: Option<Vec<MetricToRetainDoc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    metrics_export_config: Option<MetricsExportConfigDoc>,
    /// Warden extension: the mitigation actions run on each `in-alarm` violation of the profile
    /// (at most 5, of the types that act on violations); never empty when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    automatic_mitigation_actions: Option<Vec<String>>,
    /// Members this API does not set: kept through updates rather than dropped.
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

impl ProfileDocument {
    /// Reads a stored document. The store keeps only documents this module wrote, so a failure
    /// means the database was edited by hand; it is reported, not guessed around.
    pub fn parse(profile: &SecurityProfile) -> Result<ProfileDocument, ApiError> {
        serde_json::from_str(&profile.document).map_err(|e| {
            tracing::error!(profile = %profile.name, error = %e, "stored security profile document is unreadable");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalFailureException",
                "internal failure; the server log has the details",
            )
        })
    }

    /// Every `alertTargets.*.alertTargetArn`: the alert topics the profile's violations go to.
    pub fn alert_target_arns(&self) -> Vec<&str> {
        self.alert_targets.iter().flatten().map(|(_, t)| t.alert_target_arn.as_str()).collect()
    }

    /// The mitigation actions to run on each `in-alarm` violation (Warden extension).
    pub fn automatic_mitigation_actions(&self) -> &[String] {
        self.automatic_mitigation_actions.as_deref().unwrap_or_default()
    }

    /// Whether the profile's behaviors or retained metrics name `metric`.
    pub fn uses_metric(&self, metric: &str) -> bool {
        self.behaviors.iter().flatten().any(|b| b.metric.as_deref() == Some(metric))
            || self.additional_metrics_to_retain.iter().flatten().any(|m| m == metric)
            || self.additional_metrics_to_retain_v2.iter().flatten().any(|m| m.metric == metric)
    }

    /// Whether the profile's behaviors or retained metrics name `dimension`.
    pub fn uses_dimension(&self, dimension: &str) -> bool {
        let named =
            |d: &Option<MetricDimensionDoc>| d.as_ref().is_some_and(|d| d.dimension_name == dimension);
        self.behaviors.iter().flatten().any(|b| named(&b.metric_dimension))
            || self.additional_metrics_to_retain_v2.iter().flatten().any(|m| named(&m.metric_dimension))
    }

    /// Checks the document against what the account defines.
    fn check(&self, defs: &Definitions) -> Result<(), ApiError> {
        if let Some(behaviors) = &self.behaviors {
            let behaviors: Vec<aws::Behavior> = behaviors.iter().map(BehaviorDoc::to_aws).collect();
            warden_detect::compile_behaviors(&behaviors, defs)
                .map_err(|e| ApiError::invalid(e.to_string()))?;
        }
        if let Some(targets) = &self.alert_targets {
            for (kind, target) in targets {
                if kind != "SNS" {
                    return Err(ApiError::invalid(format!(
                        "alertTargets: unknown alert target type {kind:?}; the only type is SNS"
                    )));
                }
                check_length(&format!("alertTargets.{kind}.roleArn"), &target.role_arn, 20, 2048)?;
                if target.alert_target_arn.is_empty() {
                    return Err(ApiError::invalid(format!(
                        "alertTargets.{kind}.alertTargetArn must not be empty"
                    )));
                }
            }
        }
        let check_metric = |path: &str, metric: &str| -> Result<(), ApiError> {
            let known = if metric.starts_with("aws:") {
                AwsMetric::parse(metric).is_some()
            } else {
                defs.custom_metrics.contains_key(metric)
            };
            if known {
                Ok(())
            } else {
                Err(ApiError::invalid(format!(
                    "{path}: metric {metric:?} is neither an aws: metric nor a defined custom metric"
                )))
            }
        };
        for (i, metric) in self.additional_metrics_to_retain.iter().flatten().enumerate() {
            check_metric(&format!("additionalMetricsToRetain[{i}]"), metric)?;
        }
        for (i, retained) in self.additional_metrics_to_retain_v2.iter().flatten().enumerate() {
            let path = format!("additionalMetricsToRetainV2[{i}]");
            check_metric(&format!("{path}.metric"), &retained.metric)?;
            if let Some(d) = &retained.metric_dimension {
                if !defs.dimensions.contains(&d.dimension_name) {
                    return Err(ApiError::invalid(format!(
                        "{path}.metricDimension.dimensionName: dimension {:?} is not defined",
                        d.dimension_name
                    )));
                }
                if !matches!(d.operator.as_deref(), None | Some("IN" | "NOT_IN")) {
                    return Err(ApiError::invalid(format!(
                        "{path}.metricDimension.operator: must be IN or NOT_IN"
                    )));
                }
            }
        }
        if let Some(export) = &self.metrics_export_config {
            check_length("metricsExportConfig.mqttTopic", &export.mqtt_topic, 1, 512)?;
            check_length("metricsExportConfig.roleArn", &export.role_arn, 20, 2048)?;
        }
        Ok(())
    }

    /// The profile as the detection engine runs it, with each behavior's AWS JSON by behavior
    /// name (what violations and alerts echo as `behavior`).
    pub fn for_detection(
        &self,
        name: &str,
        defs: &Definitions,
    ) -> Result<(warden_detect::SecurityProfile, HashMap<String, Value>), warden_detect::ProfileErrors> {
        let behaviors = self.behaviors.as_deref().unwrap_or_default();
        let profile = aws::SecurityProfile {
            name: name.to_owned(),
            behaviors: behaviors.iter().map(BehaviorDoc::to_aws).collect(),
        };
        let compiled = warden_detect::compile(&profile, defs)?;
        let json = behaviors
            .iter()
            .map(|b| (b.name.clone(), serde_json::to_value(b).expect("a behavior always serializes")))
            .collect();
        Ok((compiled, json))
    }

    fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a profile document always serializes")
    }
}

fn check_length(path: &str, value: &str, min: usize, max: usize) -> Result<(), ApiError> {
    if (min..=max).contains(&value.chars().count()) {
        Ok(())
    } else {
        Err(ApiError::invalid(format!("{path} must be {min} to {max} characters")))
    }
}

/// One member of an update: removed if its `delete...` flag is set, replaced if given.
fn replace<T>(slot: &mut Option<T>, given: Option<T>, delete: bool) {
    if delete {
        *slot = None;
    } else if given.is_some() {
        *slot = given;
    }
}

/// Checks a description against AWS's `[\p{Graph}\x20]*`, at most 1000 characters.
fn check_description(description: &Option<String>) -> Result<(), ApiError> {
    if let Some(d) = description
        && (d.chars().count() > 1000 || d.chars().any(|c| c.is_control() || (c.is_whitespace() && c != ' ')))
    {
        return Err(ApiError::invalid(
            "securityProfileDescription must be at most 1000 visible characters and spaces",
        ));
    }
    Ok(())
}

/// The custom metrics and dimensions behaviors may refer to, read from the store.
pub async fn definitions(s: &AppState) -> Result<Definitions, ApiError> {
    let mut defs = Definitions::default();
    for m in all_pages(|page| async move { s.store.list_custom_metrics(&page).await }).await? {
        // The API checks the type at creation, so an unknown one is a hand-edited database;
        // such a metric is left undefined rather than guessed.
        if let Some(t) = CustomMetricType::parse(&m.metric_type) {
            defs.custom_metrics.insert(m.name, t);
        }
    }
    let dimensions = all_pages(|page| async move { s.store.list_dimensions(&page).await }).await?;
    defs.dimensions.extend(dimensions.into_iter().map(|d| d.name));
    Ok(defs)
}

/// Every profile with its document, for the checks that must look inside all of them.
pub async fn all_profiles(s: &AppState) -> Result<Vec<(SecurityProfile, ProfileDocument)>, ApiError> {
    let profiles = all_pages(|page| async move { s.store.list_security_profiles(&page).await }).await?;
    profiles
        .into_iter()
        .map(|profile| {
            let document = ProfileDocument::parse(&profile)?;
            Ok((profile, document))
        })
        .collect()
}

fn describe_body(arns: &Arns, p: &SecurityProfile, document: &ProfileDocument) -> Value {
    let mut body = serde_json::to_value(document).expect("a profile document always serializes");
    body["securityProfileName"] = json!(p.name);
    body["securityProfileArn"] = json!(profile_arn(arns, &p.name));
    if let Some(d) = &p.description {
        body["securityProfileDescription"] = json!(d);
    }
    body["version"] = json!(p.version);
    body["creationDate"] = epoch_seconds(p.created_at_ms);
    body["lastModifiedDate"] = epoch_seconds(p.last_modified_ms);
    body
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateSecurityProfile {
    security_profile_description: Option<String>,
    behaviors: Option<Vec<BehaviorDoc>>,
    alert_targets: Option<BTreeMap<String, AlertTargetDoc>>,
    additional_metrics_to_retain: Option<Vec<String>>,
    #[serde(rename = "additionalMetricsToRetainV2")]
    additional_metrics_to_retain_v2: Option<Vec<MetricToRetainDoc>>,
    metrics_export_config: Option<MetricsExportConfigDoc>,
    /// Warden extension; see [`ProfileDocument::automatic_mitigation_actions`].
    automatic_mitigation_actions: Option<Vec<String>>,
}

/// As for things, creating a profile again exactly as it is succeeds.
pub async fn create(
    State(s): State<AppState>,
    Name(name): Name,
    Json(input): Json<CreateSecurityProfile>,
) -> ApiResult {
    check_name("securityProfileName", &name)?;
    check_description(&input.security_profile_description)?;
    let document = ProfileDocument {
        behaviors: input.behaviors,
        alert_targets: input.alert_targets,
        additional_metrics_to_retain: input.additional_metrics_to_retain,
        additional_metrics_to_retain_v2: input.additional_metrics_to_retain_v2,
        metrics_export_config: input.metrics_export_config,
        automatic_mitigation_actions: input.automatic_mitigation_actions.filter(|a| !a.is_empty()),
        other: BTreeMap::new(),
    };
    document.check(&definitions(&s).await?)?;
    super::mitigation::check_automatic_actions(&s, document.automatic_mitigation_actions()).await?;
    let profile = NewSecurityProfile {
        name: name.clone(),
        description: input.security_profile_description.filter(|d| !d.is_empty()),
        document: document.to_json(),
    };
    match s.store.create_security_profile(profile.clone(), s.now_ms()).await {
        Ok(_) => {}
        Err(e @ StoreError::AlreadyExists { .. }) => match s.store.describe_security_profile(&name).await {
            Ok(existing)
                if existing.description == profile.description && existing.document == profile.document => {}
            _ => return Err(ApiError::from(e).with_arn(profile_arn(&s.arns, &name))),
        },
        Err(e) => return Err(e.into()),
    }
    s.registry_changed(RegistryChange::SecurityProfiles).await;
    reply(json!({ "securityProfileName": name, "securityProfileArn": profile_arn(&s.arns, &name) }))
}

pub async fn describe(State(s): State<AppState>, Name(name): Name) -> ApiResult {
    check_name("securityProfileName", &name)?;
    let profile = s.store.describe_security_profile(&name).await?;
    let document = ProfileDocument::parse(&profile)?;
    reply(describe_body(&s.arns, &profile, &document))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateSecurityProfile {
    security_profile_description: Option<String>,
    behaviors: Option<Vec<BehaviorDoc>>,
    alert_targets: Option<BTreeMap<String, AlertTargetDoc>>,
    additional_metrics_to_retain: Option<Vec<String>>,
    #[serde(rename = "additionalMetricsToRetainV2")]
    additional_metrics_to_retain_v2: Option<Vec<MetricToRetainDoc>>,
    metrics_export_config: Option<MetricsExportConfigDoc>,
    /// Warden extension: replaces the list; `[]` removes it.
    automatic_mitigation_actions: Option<Vec<String>>,
    #[serde(default)]
    delete_behaviors: bool,
    #[serde(default)]
    delete_alert_targets: bool,
    #[serde(default)]
    delete_additional_metrics_to_retain: bool,
    #[serde(default)]
    delete_metrics_export_config: bool,
}

/// Replaces the members given and removes those whose `delete...` flag is set, then checks the
/// merged profile as a whole against today's custom metrics and dimensions, so that an update
/// never stores a profile that detection could not compile.
pub async fn update(
    State(s): State<AppState>,
    Name(name): Name,
    mut q: Query,
    Json(input): Json<UpdateSecurityProfile>,
) -> ApiResult {
    check_name("securityProfileName", &name)?;
    let expected_version = q.u64("expectedVersion")?;
    q.finish()?;
    check_description(&input.security_profile_description)?;
    for (flag, set, member, given) in [
        ("deleteBehaviors", input.delete_behaviors, "behaviors", input.behaviors.is_some()),
        ("deleteAlertTargets", input.delete_alert_targets, "alertTargets", input.alert_targets.is_some()),
        (
            "deleteAdditionalMetricsToRetain",
            input.delete_additional_metrics_to_retain,
            "additionalMetricsToRetainV2",
            input.additional_metrics_to_retain_v2.is_some() || input.additional_metrics_to_retain.is_some(),
        ),
        (
            "deleteMetricsExportConfig",
            input.delete_metrics_export_config,
            "metricsExportConfig",
            input.metrics_export_config.is_some(),
        ),
    ] {
        if set && given {
            return Err(ApiError::invalid(format!("{flag} cannot be combined with {member}")));
        }
    }
    let current = s.store.describe_security_profile(&name).await?;
    // The merge below is based on this read, so the write must apply to exactly this version.
    if let Some(expected) = expected_version
        && expected != current.version
    {
        return Err(StoreError::VersionConflict {
            kind: warden_store::ResourceKind::SecurityProfile,
            name: name.clone(),
            expected,
            actual: current.version,
        }
        .into());
    }
    let mut document = ProfileDocument::parse(&current)?;
    replace(&mut document.behaviors, input.behaviors, input.delete_behaviors);
    replace(&mut document.alert_targets, input.alert_targets, input.delete_alert_targets);
    let delete_retained = input.delete_additional_metrics_to_retain;
    replace(&mut document.additional_metrics_to_retain, input.additional_metrics_to_retain, delete_retained);
    replace(
        &mut document.additional_metrics_to_retain_v2,
        input.additional_metrics_to_retain_v2,
        delete_retained,
    );
    replace(
        &mut document.metrics_export_config,
        input.metrics_export_config,
        input.delete_metrics_export_config,
    );
    if let Some(actions) = input.automatic_mitigation_actions {
        super::mitigation::check_automatic_actions(&s, &actions).await?;
        document.automatic_mitigation_actions = Some(actions).filter(|a| !a.is_empty());
    }
    document.check(&definitions(&s).await?)?;
    let description = match input.security_profile_description {
        Some(d) => Some(d).filter(|d| !d.is_empty()),
        None => current.description.clone(),
    };
    let update = SecurityProfileUpdate { description, document: document.to_json() };
    let updated = s.store.update_security_profile(&name, update, Some(current.version), s.now_ms()).await?;
    s.registry_changed(RegistryChange::SecurityProfiles).await;
    reply(describe_body(&s.arns, &updated, &document))
}

/// As in AWS (which models no `ResourceNotFoundException` here), deleting a profile that does
/// not exist succeeds.
pub async fn delete(State(s): State<AppState>, Name(name): Name, mut q: Query) -> ApiResult {
    check_name("securityProfileName", &name)?;
    let expected_version = q.u64("expectedVersion")?;
    q.finish()?;
    match s.store.delete_security_profile(&name, expected_version).await {
        Ok(()) => s.registry_changed(RegistryChange::SecurityProfiles).await,
        Err(StoreError::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    empty()
}

/// Without a filter the store pages; with `metricName` or `dimensionName` (one at most, as in
/// AWS) every document is read and the matching names are paged in memory.
pub async fn list(State(s): State<AppState>, mut q: Query) -> ApiResult {
    let paging = Paging::from_query(&mut q, PageStyle::Token)?;
    let metric = q.take("metricName");
    let dimension = q.take("dimensionName");
    q.finish()?;
    let identifier = |name: String| json!({ "name": name, "arn": profile_arn(&s.arns, &name) });
    let page: Page<String> = match (metric, dimension) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid("metricName and dimensionName cannot be used together"));
        }
        (None, None) => s.store.list_security_profiles(&paging.request).await?.map(|p| p.name),
        (metric, dimension) => {
            let names = all_profiles(&s)
                .await?
                .into_iter()
                .filter(|(_, d)| {
                    metric.as_deref().is_none_or(|m| d.uses_metric(m))
                        && dimension.as_deref().is_none_or(|n| d.uses_dimension(n))
                })
                .map(|(p, _)| p.name)
                .collect();
            page_in_memory(names, &paging.request)?
        }
    };
    paging.reply("securityProfileIdentifiers", page, identifier)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ValidateBehaviors {
    behaviors: Vec<BehaviorDoc>,
}

/// `ValidateSecurityProfileBehaviors`: the compiler's findings, one `errorMessage` each.
pub async fn validate(State(s): State<AppState>, Json(input): Json<ValidateBehaviors>) -> ApiResult {
    let behaviors: Vec<aws::Behavior> = input.behaviors.iter().map(BehaviorDoc::to_aws).collect();
    match warden_detect::compile_behaviors(&behaviors, &definitions(&s).await?) {
        Ok(_) => reply(json!({ "valid": true, "validationErrors": [] })),
        Err(errors) => {
            let errors: Vec<Value> =
                errors.0.iter().map(|e| json!({ "errorMessage": e.to_string() })).collect();
            reply(json!({ "valid": false, "validationErrors": errors }))
        }
    }
}

/// The targets a profile may be attached to: a thing group of this server that exists, or one
/// of the `all/...` targets of its region and account.
async fn check_target(s: &AppState, target: &str) -> Result<(), ApiError> {
    if let Some(group) = arn_resource(&s.arns, target, "thinggroup") {
        check_name("securityProfileTargetArn", group)?;
        s.store.describe_thing_group(group).await?;
        return Ok(());
    }
    match target.strip_prefix(s.arns.prefix()) {
        Some("all/things" | "all/registered-things" | "all/unregistered-things") => Ok(()),
        _ => Err(ApiError::invalid(format!(
            "securityProfileTargetArn {target:?} is neither a thing group ARN nor \
             {prefix}all/things, {prefix}all/registered-things or {prefix}all/unregistered-things",
            prefix = s.arns.prefix()
        ))),
    }
}

pub async fn attach(State(s): State<AppState>, Name(name): Name, mut q: Query) -> ApiResult {
    check_name("securityProfileName", &name)?;
    let target = q.required("securityProfileTargetArn")?;
    q.finish()?;
    s.store.describe_security_profile(&name).await?;
    check_target(&s, &target).await?;
    let attached = s
        .store
        .list_security_profiles_for_target(&target, &PageRequest::first(MAX_PROFILES_PER_TARGET + 1))
        .await?;
    if attached.items.len() >= MAX_PROFILES_PER_TARGET && !attached.items.contains(&name) {
        return Err(ApiError::new(
            StatusCode::GONE,
            "LimitExceededException",
            format!(
                "{target} already has {MAX_PROFILES_PER_TARGET} security profiles, the most a target may have"
            ),
        ));
    }
    s.store.attach_security_profile(&name, &target).await?;
    s.registry_changed(RegistryChange::SecurityProfiles).await;
    empty()
}

pub async fn detach(State(s): State<AppState>, Name(name): Name, mut q: Query) -> ApiResult {
    check_name("securityProfileName", &name)?;
    let target = q.required("securityProfileTargetArn")?;
    q.finish()?;
    s.store.describe_security_profile(&name).await?;
    s.store.detach_security_profile(&name, &target).await?;
    s.registry_changed(RegistryChange::SecurityProfiles).await;
    empty()
}

pub async fn list_targets(State(s): State<AppState>, Name(name): Name, mut q: Query) -> ApiResult {
    check_name("securityProfileName", &name)?;
    let paging = Paging::from_query(&mut q, PageStyle::Token)?;
    q.finish()?;
    s.store.describe_security_profile(&name).await?;
    let page = s.store.list_targets_for_security_profile(&name, &paging.request).await?;
    paging.reply("securityProfileTargets", page, |arn| json!({ "arn": arn }))
}

/// `ListSecurityProfilesForTarget`. With `recursive` on a thing group, the profiles attached to
/// its ancestors are listed too, each under the target it is attached to; that list is built
/// in memory (a group has at most 6 ancestors and each target at most 5 profiles).
pub async fn list_for_target(State(s): State<AppState>, mut q: Query) -> ApiResult {
    let paging = Paging::from_query(&mut q, PageStyle::Token)?;
    let target = q.required("securityProfileTargetArn")?;
    let recursive = q.bool("recursive")?.unwrap_or(false);
    q.finish()?;
    let mapping = |profile: &str, target: &str| {
        json!({
            "securityProfileIdentifier": { "name": profile, "arn": profile_arn(&s.arns, profile) },
            "target": { "arn": target },
        })
    };
    let group = arn_resource(&s.arns, &target, "thinggroup");
    let Some(group) = group.filter(|_| recursive) else {
        let page = s.store.list_security_profiles_for_target(&target, &paging.request).await?;
        return paging.reply("securityProfileTargetMappings", page, |p| mapping(&p, &target));
    };
    check_name("securityProfileTargetArn", group)?;
    let described = s.store.describe_thing_group(group).await?;
    let mut targets: Vec<String> = described.root_to_parent.iter().map(|g| s.arns.thing_group(g)).collect();
    targets.push(target.clone());
    // Keys sort by target, then profile; NUL separates them, as neither contains one.
    let mut keys = Vec::new();
    let store = &s.store;
    for t in &targets {
        let profiles =
            all_pages(|page| async move { store.list_security_profiles_for_target(t, &page).await }).await?;
        keys.extend(profiles.into_iter().map(|p| format!("{t}\0{p}")));
    }
    keys.sort();
    let page = page_in_memory(keys, &paging.request)?;
    paging.reply("securityProfileTargetMappings", page, |key| {
        let (t, p) = key.split_once('\0').expect("keys are built with a NUL");
        mapping(p, t)
    })
}
