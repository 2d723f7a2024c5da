//! Checks of names and ids at the storage boundary, so that no backend ever stores a name that
//! the AWS API could not address (or that could not be a certificate CN and MQTT client id).

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
