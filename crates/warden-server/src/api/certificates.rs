//! Certificates and their attachment to things: `CreateKeysAndCertificate`,
//! `RegisterCertificate`, `RegisterCertificateWithoutCA`, `DescribeCertificate`,
//! `UpdateCertificate`, `DeleteCertificate`, `ListCertificates`, `AttachThingPrincipal`,
//! `DetachThingPrincipal`, `ListThingPrincipals` and `ListPrincipalThings`.
//!
//! On MQTT a device presents its certificate, whose CN the broker requires to be a valid thing
//! name; the authorizer takes the thing from the CN when the certificate is attached to that
//! thing, else from the client id, as AWS does. `CreateKeysAndCertificate` has no thing in
//! AWS's shape, so Warden takes an optional `thingName` query parameter (an additive extension)
//! to put in the CN. Without it the CN is `AWS-IoT-Certificate`: AWS's `AWS IoT Certificate`
//! made a valid thing name, so the broker lets the device in and the authorizer finds its thing
//! through the attachment.
//! Every change to a certificate, or to what it is attached to, is announced as
//! [`RegistryChange::Certificate`], since it can let a device in or shut it out.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use warden_store::{Certificate, CertificateStatus, NewCertificate};
use x509_parser::certificate::X509Certificate;

use super::protocol::{
    ApiError, ApiResult, Json, Name, PageStyle, Paging, Query, arn_resource, check_name, empty,
    epoch_seconds, reply,
};
use crate::pki::{self, PkiError};
use crate::state::{AppState, Arns, RegistryChange};

/// The CN of `CreateKeysAndCertificate` certificates when no `thingName` is given: AWS's
/// `AWS IoT Certificate` without the spaces, which no thing name may contain.
const AWS_CERTIFICATE_CN: &str = "AWS-IoT-Certificate";

/// The header AWS binds the `principal` member to.
const PRINCIPAL_HEADER: &str = "x-amzn-principal";

pub async fn create_keys_and_certificate(State(s): State<AppState>, mut q: Query) -> ApiResult {
    let active = q.bool("setAsActive")?.unwrap_or(false);
    let thing = q.take("thingName");
    q.finish()?;
    if let Some(thing) = &thing {
        check_name("thingName", thing)?;
    }
    let cn = thing.as_deref().unwrap_or(AWS_CERTIFICATE_CN);
    let issued = s.pki.issue_thing_cert(cn).map_err(pki_failure)?;
    let public_key =
        rcgen::KeyPair::from_pem(&issued.key_pem).map_err(|e| pki_failure(e.into()))?.public_key_pem();
    let certificate = NewCertificate {
        certificate_id: issued.certificate_id.clone(),
        pem: issued.cert_pem.clone(),
        status: if active { CertificateStatus::Active } else { CertificateStatus::Inactive },
        ca_certificate_id: Some(server_ca_id(&s)?),
        subject_cn: Some(cn.to_owned()),
        created_at_ms: s.now_ms(),
    };
    let created = s.store.create_certificate(certificate).await?;
    s.registry_changed(RegistryChange::Certificate { certificate_id: created.certificate_id.clone() }).await;
    reply(json!({
        "certificateArn": s.arns.certificate(&created.certificate_id),
        "certificateId": created.certificate_id,
        "certificatePem": issued.cert_pem,
        "keyPair": { "PublicKey": public_key, "PrivateKey": issued.key_pem },
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RegisterCertificate {
    certificate_pem: String,
    ca_certificate_pem: Option<String>,
    status: Option<String>,
}

/// `RegisterCertificate`: the certificate must be signed by `caCertificatePem` if given, else by
/// Warden's CA (the one CA Warden knows); that CA becomes its `caCertificateId`.
pub async fn register(
    State(s): State<AppState>,
    mut q: Query,
    Json(input): Json<RegisterCertificate>,
) -> ApiResult {
    let set_as_active = q.bool("setAsActive")?;
    q.finish()?;
    let status = registration_status(set_as_active, input.status.as_deref())?;
    let ca_pem = input.ca_certificate_pem.as_deref().unwrap_or(s.pki.ca_cert_pem());
    let ca_id = with_certificate(ca_pem, "caCertificatePem", |ca, ca_id| {
        with_certificate(&input.certificate_pem, "certificatePem", |cert, _| {
            cert.verify_signature(Some(ca.public_key())).map_err(|_| {
                let issuer =
                    if input.ca_certificate_pem.is_some() { "caCertificatePem" } else { "Warden's CA" };
                validation_error(format!("certificatePem is not signed by {issuer}"))
            })
        })?;
        Ok(ca_id)
    })?;
    register_pem(&s, input.certificate_pem, status, Some(ca_id)).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RegisterCertificateWithoutCa {
    certificate_pem: String,
    status: Option<String>,
}

pub async fn register_without_ca(
    State(s): State<AppState>,
    Json(input): Json<RegisterCertificateWithoutCa>,
) -> ApiResult {
    let status = registration_status(None, input.status.as_deref())?;
    register_pem(&s, input.certificate_pem, status, None).await
}

async fn register_pem(
    s: &AppState,
    pem: String,
    status: CertificateStatus,
    ca_id: Option<String>,
) -> ApiResult {
    let (certificate_id, subject_cn) = with_certificate(&pem, "certificatePem", |cert, id| {
        let cn = cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).map(str::to_owned);
        Ok((id, cn))
    })?;
    let certificate = NewCertificate {
        certificate_id: certificate_id.clone(),
        pem,
        status,
        ca_certificate_id: ca_id,
        subject_cn,
        created_at_ms: s.now_ms(),
    };
    let created = s
        .store
        .create_certificate(certificate)
        .await
        .map_err(|e| ApiError::from(e).with_arn(s.arns.certificate(&certificate_id)))?;
    s.registry_changed(RegistryChange::Certificate { certificate_id: created.certificate_id.clone() }).await;
    reply(json!({
        "certificateArn": s.arns.certificate(&created.certificate_id),
        "certificateId": created.certificate_id,
    }))
}

pub async fn describe(State(s): State<AppState>, Name(id): Name) -> ApiResult {
    let id = certificate_id(&id)?;
    let c: Certificate = s.store.describe_certificate(&id).await?;
    let mut description = json!({
        "certificateArn": s.arns.certificate(&c.certificate_id),
        "certificateId": c.certificate_id,
        "status": c.status.as_str(),
        "certificatePem": c.pem,
        "ownedBy": s.config.account_id,
        "creationDate": epoch_seconds(c.created_at_ms),
        "lastModifiedDate": epoch_seconds(c.last_modified_ms),
        "certificateMode": "DEFAULT",
    });
    if let Some(ca) = &c.ca_certificate_id {
        description["caCertificateId"] = json!(ca);
    }
    // A stored certificate was parsed when it was registered, so this only fails if the
    // database was edited by hand; the validity is then left out rather than failing the call.
    if let Ok(validity) = with_certificate(&c.pem, "certificatePem", |cert, _| {
        let v = cert.validity();
        Ok(json!({
            "notBefore": epoch_seconds(v.not_before.timestamp().saturating_mul(1000)),
            "notAfter": epoch_seconds(v.not_after.timestamp().saturating_mul(1000)),
        }))
    }) {
        description["validity"] = validity;
    }
    reply(json!({ "certificateDescription": description }))
}

pub async fn update(State(s): State<AppState>, Name(id): Name, mut q: Query) -> ApiResult {
    let id = certificate_id(&id)?;
    let status = parse_status("newStatus", &q.required("newStatus")?)?;
    q.finish()?;
    let updated = s.store.update_certificate_status(&id, status, s.now_ms()).await?;
    s.registry_changed(RegistryChange::Certificate { certificate_id: updated.certificate_id }).await;
    empty()
}

pub async fn delete(State(s): State<AppState>, Name(id): Name, mut q: Query) -> ApiResult {
    let id = certificate_id(&id)?;
    if q.bool("forceDelete")? == Some(true) {
        return Err(ApiError::invalid(
            "forceDelete is not supported: detach the certificate's policies, then delete it",
        ));
    }
    q.finish()?;
    s.store.delete_certificate(&id, &s.arns.certificate(&id)).await?;
    s.registry_changed(RegistryChange::Certificate { certificate_id: id }).await;
    empty()
}

/// `ListCertificates`, oldest first whatever `isAscendingOrder` says: the store keeps one order.
pub async fn list(State(s): State<AppState>, mut q: Query) -> ApiResult {
    let paging = Paging::from_query(&mut q, PageStyle::Marker)?;
    q.bool("isAscendingOrder")?;
    q.finish()?;
    let page = s.store.list_certificates(&paging.request).await?;
    paging.reply("certificates", page, |c| {
        json!({
            "certificateArn": s.arns.certificate(&c.certificate_id),
            "certificateId": c.certificate_id,
            "status": c.status.as_str(),
            "certificateMode": "DEFAULT",
            "creationDate": epoch_seconds(c.created_at_ms),
        })
    })
}

pub async fn attach_thing_principal(
    State(s): State<AppState>,
    Name(thing): Name,
    headers: HeaderMap,
    mut q: Query,
) -> ApiResult {
    check_name("thingName", &thing)?;
    let id = principal(&s.arns, &headers)?;
    match q.take("thingPrincipalType").as_deref() {
        None | Some("NON_EXCLUSIVE_THING") => {}
        Some("EXCLUSIVE_THING") => {
            return Err(ApiError::invalid("thingPrincipalType EXCLUSIVE_THING is not supported"));
        }
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "thingPrincipalType must be EXCLUSIVE_THING or NON_EXCLUSIVE_THING, not {other:?}"
            )));
        }
    }
    q.finish()?;
    s.store.attach_thing_principal(&thing, &id).await?;
    s.registry_changed(RegistryChange::Certificate { certificate_id: id }).await;
    empty()
}

pub async fn detach_thing_principal(
    State(s): State<AppState>,
    Name(thing): Name,
    headers: HeaderMap,
    q: Query,
) -> ApiResult {
    check_name("thingName", &thing)?;
    let id = principal(&s.arns, &headers)?;
    q.finish()?;
    s.store.detach_thing_principal(&thing, &id).await?;
    s.registry_changed(RegistryChange::Certificate { certificate_id: id }).await;
    empty()
}

pub async fn list_thing_principals(State(s): State<AppState>, Name(thing): Name, mut q: Query) -> ApiResult {
    check_name("thingName", &thing)?;
    let paging = Paging::from_query(&mut q, PageStyle::Token)?;
    q.finish()?;
    let page = s.store.list_thing_principals(&thing, &paging.request).await?;
    paging.reply("principals", page, |id| Value::String(s.arns.certificate(&id)))
}

pub async fn list_principal_things(State(s): State<AppState>, headers: HeaderMap, mut q: Query) -> ApiResult {
    let id = principal(&s.arns, &headers)?;
    let paging = Paging::from_query(&mut q, PageStyle::Token)?;
    q.finish()?;
    let page = s.store.list_principal_things(&id, &paging.request).await?;
    paging.reply("things", page, Value::String)
}

/// A certificate id as AWS writes it (64 hex digits), in the lower case the store keeps, so that
/// ARNs built from it match the stored policy targets.
pub fn certificate_id(id: &str) -> Result<String, ApiError> {
    if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id.to_ascii_lowercase())
    } else {
        Err(ApiError::invalid(format!("certificateId {id:?} must be 64 hexadecimal digits")))
    }
}

/// The certificate id in a certificate ARN of this server.
pub fn certificate_arn_id(arns: &Arns, field: &str, arn: &str) -> Result<String, ApiError> {
    let id = arn_resource(arns, arn, "cert").ok_or_else(|| {
        ApiError::invalid(format!(
            "{field} {arn:?} is not a certificate ARN of this server ({}cert/<id>)",
            arns.prefix()
        ))
    })?;
    certificate_id(id)
}

/// The certificate named by the `x-amzn-principal` header (AWS's `principal` member).
fn principal(arns: &Arns, headers: &HeaderMap) -> Result<String, ApiError> {
    let value = headers
        .get(PRINCIPAL_HEADER)
        .ok_or_else(|| ApiError::invalid(format!("principal (the {PRINCIPAL_HEADER} header) is required")))?;
    let arn = value.to_str().map_err(|_| ApiError::invalid("principal must be an ARN"))?;
    certificate_arn_id(arns, "principal", arn)
}

/// Parses the first certificate of a PEM text and hands it, with its AWS id, to `f`. Anything
/// that is not a parseable X.509 certificate is AWS's `CertificateValidationException`.
fn with_certificate<T>(
    pem: &str,
    field: &str,
    f: impl FnOnce(&X509Certificate<'_>, String) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| validation_error(format!("{field} is not PEM: {e}")))?;
    if block.label != "CERTIFICATE" {
        return Err(validation_error(format!("{field} holds a {}, not a CERTIFICATE", block.label)));
    }
    let cert = block
        .parse_x509()
        .map_err(|e| validation_error(format!("{field} is not an X.509 certificate: {e}")))?;
    f(&cert, pki::certificate_id(&block.contents))
}

fn validation_error(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "CertificateValidationException", message)
}

/// The status of a registered certificate: `setAsActive=true` wins, then `status`, else
/// INACTIVE, as in AWS.
fn registration_status(
    set_as_active: Option<bool>,
    status: Option<&str>,
) -> Result<CertificateStatus, ApiError> {
    match (set_as_active, status) {
        (Some(true), _) => Ok(CertificateStatus::Active),
        (_, Some(status)) => parse_status("status", status),
        (_, None) => Ok(CertificateStatus::Inactive),
    }
}

fn parse_status(field: &str, status: &str) -> Result<CertificateStatus, ApiError> {
    match status {
        "ACTIVE" => Ok(CertificateStatus::Active),
        "INACTIVE" => Ok(CertificateStatus::Inactive),
        "REVOKED" => Ok(CertificateStatus::Revoked),
        "PENDING_ACTIVATION" => Ok(CertificateStatus::PendingActivation),
        "PENDING_TRANSFER" | "REGISTER_INACTIVE" => Err(ApiError::invalid(format!(
            "{field} {status} is not supported: Warden has no certificate transfers"
        ))),
        other => Err(ApiError::invalid(format!(
            "{field} must be one of ACTIVE, INACTIVE, REVOKED, PENDING_ACTIVATION, not {other:?}"
        ))),
    }
}

/// The id of Warden's CA certificate.
fn server_ca_id(s: &AppState) -> Result<String, ApiError> {
    pki::certificate_id_of_pem(s.pki.ca_cert_pem()).map_err(pki_failure)
}

fn pki_failure(e: PkiError) -> ApiError {
    tracing::error!(error = %e, "the CA failed while serving an API request");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalFailureException",
        "the CA failed; the server log has the details",
    )
}
