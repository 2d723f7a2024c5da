//! Bulk reads of the registry (what the MQTT authorizer loads at start-up): each relation in one
//! statement, saying the same as the per-resource lists. Called through `dyn Store`, as the
//! server holds the store.

use std::sync::Arc;

use warden_store::{CertificateStatus, NewCertificate, NewThingGroup, Store, StoreError};

use crate::{T0, assert_matches, attrs, open};

const DOC: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"*"}]}"#;

fn cert_id(pair: &str) -> String {
    pair.repeat(32)
}

fn new_cert(id: &str, created_at_ms: i64) -> NewCertificate {
    NewCertificate {
        certificate_id: id.to_owned(),
        pem: format!("-----BEGIN CERTIFICATE-----\n{id}\n-----END CERTIFICATE-----\n"),
        status: CertificateStatus::Active,
        ca_certificate_id: None,
        subject_cn: None,
        created_at_ms,
    }
}

fn group(name: &str, parent: Option<&str>) -> NewThingGroup {
    NewThingGroup {
        name: name.to_owned(),
        parent: parent.map(str::to_owned),
        description: None,
        attributes: attrs(&[]),
    }
}

fn sorted<T: Ord>(mut items: Vec<T>) -> Vec<T> {
    items.sort();
    items
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect()
}

fn store() -> (tempfile::TempDir, Arc<dyn Store>) {
    let (dir, store) = open();
    (dir, Arc::new(store))
}

#[tokio::test]
async fn an_empty_registry_reads_as_empty() {
    let (_dir, store) = store();
    assert!(store.certificates_after("", 10).await.unwrap().is_empty());
    assert!(store.all_thing_principals().await.unwrap().is_empty());
    assert!(store.all_thing_group_parents().await.unwrap().is_empty());
    assert!(store.all_thing_group_members().await.unwrap().is_empty());
    assert!(store.all_policy_targets().await.unwrap().is_empty());
}

#[tokio::test]
async fn every_relation_reads_in_one_call() {
    let (_dir, store) = store();
    for thing in ["t1", "t2", "t3"] {
        store.create_thing(thing, attrs(&[]), T0).await.unwrap();
    }
    for (name, parent) in [("fleet", None), ("site", Some("fleet")), ("lab", Some("site")), ("lone", None)] {
        store.create_thing_group(group(name, parent), T0).await.unwrap();
    }
    for (group, thing) in [("lab", "t1"), ("fleet", "t1"), ("site", "t2")] {
        store.add_thing_to_group(group, thing).await.unwrap();
    }
    for (id, t) in [("0a", 3), ("0b", 1), ("0c", 2)] {
        store.create_certificate(new_cert(&cert_id(id), T0 + t)).await.unwrap();
    }
    for (thing, id) in [("t1", "0a"), ("t2", "0a"), ("t3", "0c")] {
        store.attach_thing_principal(thing, &cert_id(id)).await.unwrap();
    }
    store.create_policy("p", DOC, T0).await.unwrap();
    store.create_policy("q", DOC, T0).await.unwrap();
    for (policy, target) in [("p", "cert-a"), ("q", "cert-a"), ("p", "group-lab")] {
        store.attach_policy(policy, target).await.unwrap();
    }

    let (a, c) = (cert_id("0a"), cert_id("0c"));
    assert_eq!(
        sorted(store.all_thing_principals().await.unwrap()),
        pairs(&[(&a, "t1"), (&a, "t2"), (&c, "t3")])
    );
    assert_eq!(
        sorted(store.all_thing_group_parents().await.unwrap()),
        vec![
            ("fleet".to_owned(), None),
            ("lab".to_owned(), Some("site".to_owned())),
            ("lone".to_owned(), None),
            ("site".to_owned(), Some("fleet".to_owned())),
        ]
    );
    assert_eq!(
        sorted(store.all_thing_group_members().await.unwrap()),
        pairs(&[("t1", "fleet"), ("t1", "lab"), ("t2", "site")])
    );
    assert_eq!(
        sorted(store.all_policy_targets().await.unwrap()),
        pairs(&[("p", "cert-a"), ("p", "group-lab"), ("q", "cert-a")])
    );

    // Each read reflects the writes before it: removals and deletions are gone.
    store.remove_thing_from_group("lab", "t1").await.unwrap();
    store.delete_thing_group("lone", None).await.unwrap();
    store.detach_policy("q", "cert-a").await.unwrap();
    store.detach_thing_principal("t2", &a).await.unwrap();
    assert_eq!(sorted(store.all_thing_principals().await.unwrap()), pairs(&[(&a, "t1"), (&c, "t3")]));
    assert_eq!(store.all_thing_group_parents().await.unwrap().len(), 3);
    assert_eq!(
        sorted(store.all_thing_group_members().await.unwrap()),
        pairs(&[("t1", "fleet"), ("t2", "site")])
    );
    assert_eq!(
        sorted(store.all_policy_targets().await.unwrap()),
        pairs(&[("p", "cert-a"), ("p", "group-lab")])
    );
}

#[tokio::test]
async fn certificates_come_in_chunks_ordered_by_id() {
    let (_dir, store) = store();
    let ids: Vec<String> = ["5e", "01", "ff", "a0", "3c", "77", "0b"].iter().map(|p| cert_id(p)).collect();
    for (i, id) in ids.iter().enumerate() {
        store.create_certificate(new_cert(id, T0 - i as i64)).await.unwrap();
    }
    store.update_certificate_status(&ids[0], CertificateStatus::Revoked, T0).await.unwrap();

    let mut read = Vec::new();
    let mut after = String::new();
    loop {
        let chunk = store.certificates_after(&after, 3).await.unwrap();
        assert!(chunk.len() <= 3);
        let Some(last) = chunk.last() else { break };
        after = last.certificate_id.clone();
        read.extend(chunk);
    }
    let read_ids: Vec<&str> = read.iter().map(|c| c.certificate_id.as_str()).collect();
    assert_eq!(read_ids, sorted(ids.iter().map(String::as_str).collect()));
    let revoked = read.iter().find(|c| c.certificate_id == ids[0]).unwrap();
    assert_eq!(revoked.status, CertificateStatus::Revoked, "certificates come whole, as described");
    assert_eq!(*revoked, store.describe_certificate(&ids[0]).await.unwrap());

    assert_matches!(store.certificates_after("", 0).await, Err(StoreError::Invalid(_)));
}
