//! Certificates: registration, status changes, the AWS delete rules, listing, and attachment
//! to things.

use warden_store::{CertificateStatus, NewCertificate, PageRequest, ResourceKind, Store, StoreError};

use crate::{T0, all_pages, assert_matches, attrs, bad_page, open, strings};

/// A certificate id made of one repeated hex digit pair, e.g. `cert_id("0a")`.
fn cert_id(pair: &str) -> String {
    pair.repeat(32)
}

fn new_cert(id: &str, status: CertificateStatus, created_at_ms: i64) -> NewCertificate {
    NewCertificate {
        certificate_id: id.to_owned(),
        pem: format!("-----BEGIN CERTIFICATE-----\n{id}\n-----END CERTIFICATE-----\n"),
        status,
        ca_certificate_id: None,
        subject_cn: Some("thing-1".into()),
        created_at_ms,
    }
}

fn arn(id: &str) -> String {
    format!("arn:aws:iot:local:000000000000:cert/{id}")
}

#[tokio::test]
async fn create_and_describe() {
    let (_dir, store) = open();
    let mut cert = new_cert(&cert_id("AB"), CertificateStatus::Active, T0);
    cert.ca_certificate_id = Some(cert_id("CD"));
    let created = store.create_certificate(cert.clone()).await.unwrap();
    // Ids are stored in lower case, whatever case they came in.
    assert_eq!(created.certificate_id, cert_id("ab"));
    assert_eq!(created.ca_certificate_id, Some(cert_id("cd")));
    assert_eq!(created.status, CertificateStatus::Active);
    assert_eq!((created.created_at_ms, created.last_modified_ms), (T0, T0));
    assert_eq!(created.pem, cert.pem);
    assert_eq!(created.subject_cn.as_deref(), Some("thing-1"));
    assert_eq!(store.describe_certificate(&cert_id("AB")).await.unwrap(), created);
    assert_eq!(store.describe_certificate(&cert_id("ab")).await.unwrap(), created);

    assert_matches!(
        store.create_certificate(cert).await,
        Err(StoreError::AlreadyExists { kind: ResourceKind::Certificate, .. })
    );
    assert_matches!(
        store.describe_certificate(&cert_id("00")).await,
        Err(StoreError::NotFound { kind: ResourceKind::Certificate, .. })
    );
    for bad in ["", "abc", "zz".repeat(32).as_str(), "a".repeat(65).as_str()] {
        assert_matches!(store.describe_certificate(bad).await, Err(StoreError::Invalid(_)));
        let cert = new_cert(bad, CertificateStatus::Active, T0);
        assert_matches!(store.create_certificate(cert).await, Err(StoreError::Invalid(_)));
    }
}

#[tokio::test]
async fn status_changes() {
    let (_dir, store) = open();
    let id = cert_id("01");
    store.create_certificate(new_cert(&id, CertificateStatus::PendingActivation, T0)).await.unwrap();

    let check = |status: CertificateStatus, at: i64| {
        let (store, id) = (&store, &id);
        async move {
            let cert = store.update_certificate_status(id, status, at).await.unwrap();
            assert_eq!((cert.status, cert.last_modified_ms, cert.created_at_ms), (status, at, T0));
            assert_eq!(store.describe_certificate(id).await.unwrap(), cert);
        }
    };
    check(CertificateStatus::Active, T0 + 1).await;
    check(CertificateStatus::Inactive, T0 + 2).await;
    check(CertificateStatus::Active, T0 + 3).await;
    check(CertificateStatus::Active, T0 + 4).await;

    // Nobody sets PENDING_ACTIVATION; REVOKED is final.
    assert_matches!(
        store.update_certificate_status(&id, CertificateStatus::PendingActivation, T0).await,
        Err(StoreError::InvalidState(_))
    );
    check(CertificateStatus::Revoked, T0 + 5).await;
    check(CertificateStatus::Revoked, T0 + 6).await;
    for status in [CertificateStatus::Active, CertificateStatus::Inactive] {
        assert_matches!(
            store.update_certificate_status(&id, status, T0).await,
            Err(StoreError::InvalidState(_))
        );
    }
    assert_matches!(
        store.update_certificate_status(&cert_id("02"), CertificateStatus::Active, T0).await,
        Err(StoreError::NotFound { .. })
    );
}

#[tokio::test]
async fn status_names() {
    for status in [
        CertificateStatus::Active,
        CertificateStatus::Inactive,
        CertificateStatus::Revoked,
        CertificateStatus::PendingActivation,
    ] {
        assert_eq!(status.as_str().parse::<CertificateStatus>().unwrap(), status);
        assert_eq!(status.to_string(), status.as_str());
    }
    assert_eq!(CertificateStatus::PendingActivation.as_str(), "PENDING_ACTIVATION");
    assert_matches!("active".parse::<CertificateStatus>(), Err(StoreError::Invalid(_)));
}

#[tokio::test]
async fn delete_rules() {
    let (_dir, store) = open();
    let id = cert_id("0f");
    store.create_certificate(new_cert(&id, CertificateStatus::Active, T0)).await.unwrap();
    store.create_thing("thing-1", attrs(&[]), T0).await.unwrap();
    store.attach_thing_principal("thing-1", &id).await.unwrap();
    store.create_policy("p", "{}", T0).await.unwrap();
    store.attach_policy("p", &arn(&id)).await.unwrap();

    // Active: refused first, whatever else holds it.
    assert_matches!(
        store.delete_certificate(&id, &arn(&id)).await,
        Err(StoreError::InvalidState(ref m)) if m.contains("ACTIVE")
    );
    store.update_certificate_status(&id, CertificateStatus::Inactive, T0).await.unwrap();
    assert_matches!(
        store.delete_certificate(&id, &arn(&id)).await,
        Err(StoreError::Conflict(ref m)) if m.contains("thing")
    );
    store.detach_thing_principal("thing-1", &id).await.unwrap();
    assert_matches!(
        store.delete_certificate(&id, &arn(&id)).await,
        Err(StoreError::Conflict(ref m)) if m.contains("polic")
    );
    store.detach_policy("p", &arn(&id)).await.unwrap();
    store.delete_certificate(&id, &arn(&id)).await.unwrap();
    assert_matches!(store.describe_certificate(&id).await, Err(StoreError::NotFound { .. }));
    assert_matches!(store.delete_certificate(&id, &arn(&id)).await, Err(StoreError::NotFound { .. }));

    // A revoked, detached certificate can be deleted too.
    let revoked = cert_id("1f");
    store.create_certificate(new_cert(&revoked, CertificateStatus::Revoked, T0)).await.unwrap();
    store.delete_certificate(&revoked, &arn(&revoked)).await.unwrap();
}

#[tokio::test]
async fn list_in_creation_order() {
    let (_dir, store) = open();
    // Creation times interleave with id order; equal times fall back to the id.
    let certs = [("05", T0 + 2), ("01", T0 + 3), ("04", T0 + 1), ("02", T0 + 1), ("03", T0)];
    for (pair, at) in certs {
        store.create_certificate(new_cert(&cert_id(pair), CertificateStatus::Active, at)).await.unwrap();
    }
    let expect: Vec<String> = ["03", "02", "04", "05", "01"].iter().map(|p| cert_id(p)).collect();
    for size in [1, 2, 5, 10] {
        let listed = all_pages(size, |p| {
            let store = &store;
            async move { store.list_certificates(&p).await }
        })
        .await;
        let ids: Vec<String> = listed.into_iter().map(|c| c.certificate_id).collect();
        assert_eq!(ids, expect, "page size {size}");
    }
    // A token that decodes but is not a certificate key.
    let not_a_key = bad_page("6e6f2d636f6c6f6e"); // "no-colon"
    assert_matches!(store.list_certificates(&not_a_key).await, Err(StoreError::Invalid(_)));
    assert_matches!(store.list_certificates(&bad_page("xyz")).await, Err(StoreError::Invalid(_)));
}

#[tokio::test]
async fn attach_to_things() {
    let (_dir, store) = open();
    let (a, b) = (cert_id("0a"), cert_id("0b"));
    for id in [&a, &b] {
        store.create_certificate(new_cert(id, CertificateStatus::Active, T0)).await.unwrap();
    }
    for thing in ["t1", "t2"] {
        store.create_thing(thing, attrs(&[]), T0).await.unwrap();
    }
    store.attach_thing_principal("t1", &a).await.unwrap();
    store.attach_thing_principal("t1", &a).await.unwrap();
    store.attach_thing_principal("t1", &b.to_uppercase()).await.unwrap();
    store.attach_thing_principal("t2", &a).await.unwrap();

    let principals = |thing: &'static str| {
        let store = &store;
        all_pages(1, move |p| async move { store.list_thing_principals(thing, &p).await })
    };
    let things = |id: String| {
        let store = &store;
        all_pages(1, move |p| {
            let id = id.clone();
            async move { store.list_principal_things(&id, &p).await }
        })
    };
    assert_eq!(principals("t1").await, vec![a.clone(), b.clone()]);
    assert_eq!(principals("t2").await, vec![a.clone()]);
    assert_eq!(things(a.clone()).await, strings(&["t1", "t2"]));
    assert_eq!(things(b.clone()).await, strings(&["t1"]));

    store.detach_thing_principal("t1", &a).await.unwrap();
    store.detach_thing_principal("t1", &a).await.unwrap();
    assert_eq!(principals("t1").await, vec![b.clone()]);
    assert_eq!(things(a.clone()).await, strings(&["t2"]));

    let missing = cert_id("99");
    assert_matches!(
        store.attach_thing_principal("t1", &missing).await,
        Err(StoreError::NotFound { kind: ResourceKind::Certificate, .. })
    );
    assert_matches!(
        store.attach_thing_principal("nope", &a).await,
        Err(StoreError::NotFound { kind: ResourceKind::Thing, .. })
    );
    assert_matches!(store.detach_thing_principal("nope", &a).await, Err(StoreError::NotFound { .. }));
    assert_matches!(
        store.list_principal_things(&missing, &PageRequest::default()).await,
        Err(StoreError::NotFound { .. })
    );
    assert_matches!(
        store.list_thing_principals("nope", &PageRequest::default()).await,
        Err(StoreError::NotFound { .. })
    );
}
