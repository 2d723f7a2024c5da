//! Checks of names and ids at the storage boundary, so that no backend ever stores a name that
//! the AWS API could not address (or that could not be a certificate CN and MQTT client id),
//! and that the JSON texts the store keeps without interpreting them are JSON.

use crate::error::{Result, StoreError};

const MAX_NAME_LEN: usize = 128;

/// Thing and thing group names: `[a-zA-Z0-9:_-]{1,128}`.
pub(crate) fn check_registry_name(what: &str, name: &str) -> Result<()> {
    let ok = (1..=MAX_NAME_LEN).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::invalid(format!(
            "{what} name {name:?} must be 1 to 128 characters of [a-zA-Z0-9:_-]"
        )))
    }
}

pub(crate) fn check_thing_name(name: &str) -> Result<()> {
    check_registry_name("thing", name)
}

pub(crate) fn check_group_name(name: &str) -> Result<()> {
    check_registry_name("thing group", name)
}

/// Policy names: `[\w+=,.@-]{1,128}` (AWS `PolicyName`).
pub(crate) fn check_policy_name(name: &str) -> Result<()> {
    let ok = (1..=MAX_NAME_LEN).contains(&name.len())
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'=' | b',' | b'.' | b'@' | b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(StoreError::invalid(format!(
            "policy name {name:?} must be 1 to 128 characters of [a-zA-Z0-9_+=,.@-]"
        )))
    }
}

/// A certificate id is the SHA-256 of the DER: 64 hex digits, stored in lower case so that the
/// same certificate always has the same key.
pub(crate) fn normalize_certificate_id(id: &str) -> Result<String> {
    if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id.to_ascii_lowercase())
    } else {
        Err(StoreError::invalid(format!("certificate id {id:?} must be 64 hex digits")))
    }
}

/// Attribute names must be non-empty; finer rules (AWS's character set, 50 attributes at most)
/// are the API's to enforce and report.
pub(crate) fn check_attribute_names<'a>(names: impl IntoIterator<Item = &'a String>) -> Result<()> {
    match names.into_iter().find(|n| n.is_empty()) {
        Some(_) => Err(StoreError::invalid("attribute names must not be empty")),
        None => Ok(()),
    }
}

/// Metric and dimension names: non-empty, at most 128 characters.
pub(crate) fn check_metric_name(what: &str, name: &str) -> Result<()> {
    if (1..=MAX_NAME_LEN).contains(&name.len()) {
        Ok(())
    } else {
        Err(StoreError::invalid(format!("{what} name {name:?} must be 1 to 128 characters")))
    }
}

/// Security profile, behavior, custom metric and dimension names: `[a-zA-Z0-9:_-]{1,128}`, like
/// thing names (AWS `SecurityProfileName`, `BehaviorName`, `MetricName`, `DimensionName`).
pub(crate) fn check_detect_name(what: &str, name: &str) -> Result<()> {
    check_registry_name(what, name)
}

/// Mitigation action names and task ids: `[a-zA-Z0-9_-]{1,128}` (AWS `MitigationActionName`,
/// `MitigationActionsTaskId`).
pub(crate) fn check_action_name(what: &str, name: &str) -> Result<()> {
    check_plain_id(what, name, MAX_NAME_LEN)
}

/// Client request tokens: `[a-zA-Z0-9_-]{1,64}` (AWS `ClientRequestToken`).
pub(crate) fn check_client_request_token(token: &str) -> Result<()> {
    check_plain_id("client request token", token, 64)
}

fn check_plain_id(what: &str, id: &str, max_len: usize) -> Result<()> {
    let ok = (1..=max_len).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::invalid(format!("{what} {id:?} must be 1 to {max_len} characters of [a-zA-Z0-9_-]")))
    }
}

/// Violation ids: `[a-zA-Z0-9-]{1,128}` (AWS `ViolationId`). Warden's are 32 hex digits, but an
/// id that merely fits AWS's pattern is looked up (and not found) rather than refused.
pub(crate) fn check_violation_id(id: &str) -> Result<()> {
    let ok =
        (1..=MAX_NAME_LEN).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(StoreError::invalid(format!("violation id {id:?} must be 1 to 128 characters of [a-zA-Z0-9-]")))
    }
}

/// Alert topic names: `[a-zA-Z0-9_-]{1,256}`, the SNS topic name rule.
pub(crate) fn check_topic_name(name: &str) -> Result<()> {
    check_plain_id("alert topic name", name, 256)
}

/// Strings that are keys but have no AWS pattern (targets, endpoints, metric types, ids the
/// store generated): non-empty is all the store needs.
pub(crate) fn check_not_empty(what: &str, value: &str) -> Result<()> {
    if value.is_empty() { Err(StoreError::invalid(format!("{what} must not be empty"))) } else { Ok(()) }
}

/// A JSON text the store keeps as given (a profile document, a behavior, a metric value, action
/// parameters). Only its syntax is checked, without building the value.
pub(crate) fn check_json(what: &str, text: &str) -> Result<()> {
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map(|_| ())
        .map_err(|e| StoreError::invalid(format!("{what} is not JSON: {e}")))
}
