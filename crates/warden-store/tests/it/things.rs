//! Things: create, describe, update with versions, delete, list with filters and pages.

use warden_store::{
    AttributeUpdate, CertificateStatus, IngestState, NewCertificate, NewThingGroup, PageRequest,
    ResourceKind, Store, StoreError, ThingFilter,
};

use crate::{T0, all_pages, assert_matches, attrs, bad_page, open, strings};

#[tokio::test]
async fn create_then_describe() {
    let (_dir, store) = open();
    let created = store.create_thing("sensor-1", attrs(&[("site", "lab")]), T0).await.unwrap();
    assert_eq!(created.name, "sensor-1");
    assert_eq!(created.version, 1);
    assert_eq!(created.created_at_ms, T0);
    assert_eq!(created.attributes, attrs(&[("site", "lab")]));
    // A version-4 UUID: 8-4-4-4-12 lowercase hex digits, version nibble 4.
    let parts: Vec<&str> = created.id.split('-').collect();
    assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), [8, 4, 4, 4, 12]);
    assert!(created.id.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
    assert!(parts[2].starts_with('4'));

    assert_eq!(store.describe_thing("sensor-1").await.unwrap(), created);
    let other = store.create_thing("sensor-2", attrs(&[]), T0).await.unwrap();
    assert_ne!(other.id, created.id);
}

#[tokio::test]
async fn create_and_describe_errors() {
    let (_dir, store) = open();
    store.create_thing("t1", attrs(&[]), T0).await.unwrap();
    assert_matches!(
        store.create_thing("t1", attrs(&[]), T0).await,
        Err(StoreError::AlreadyExists { kind: ResourceKind::Thing, ref name }) if name == "t1"
    );
    assert_matches!(
        store.describe_thing("nope").await,
        Err(StoreError::NotFound { kind: ResourceKind::Thing, ref name }) if name == "nope"
    );
    let long = "x".repeat(129);
    for bad in ["", "a b", "a/b", "a#", "é", long.as_str()] {
        assert_matches!(store.create_thing(bad, attrs(&[]), T0).await, Err(StoreError::Invalid(_)));
        assert_matches!(store.describe_thing(bad).await, Err(StoreError::Invalid(_)));
    }
    assert_matches!(store.create_thing("t2", attrs(&[("", "v")]), T0).await, Err(StoreError::Invalid(_)));
    // The longest and the most varied valid names are fine.
    store.create_thing(&"x".repeat(128), attrs(&[]), T0).await.unwrap();
    store.create_thing("Ab:9_-z", attrs(&[]), T0).await.unwrap();
}

#[tokio::test]
async fn update_attributes_bumps_the_version() {
    let (_dir, store) = open();
    store.create_thing("t1", attrs(&[("a", "1"), ("b", "2")]), T0).await.unwrap();

    let check = |update: &[(&str, &str)], merge: bool, expect: &[(&str, &str)], version: u64| {
        let store = &store;
        let update = AttributeUpdate { attributes: attrs(update), merge };
        let expect = attrs(expect);
        async move {
            let thing = store.update_thing("t1", update, None).await.unwrap();
            assert_eq!(thing.attributes, expect);
            assert_eq!(thing.version, version);
            assert_eq!(store.describe_thing("t1").await.unwrap(), thing);
        }
    };
    // Merge: add, replace, and an empty value removes.
    check(&[("c", "3"), ("a", "10")], true, &[("a", "10"), ("b", "2"), ("c", "3")], 2).await;
    check(&[("b", "")], true, &[("a", "10"), ("c", "3")], 3).await;
    check(&[("zzz", "")], true, &[("a", "10"), ("c", "3")], 4).await;
    // No merge: replace everything.
    check(&[("only", "one")], false, &[("only", "one")], 5).await;
    check(&[], false, &[], 6).await;
}

#[tokio::test]
async fn update_with_expected_version() {
    let (_dir, store) = open();
    store.create_thing("t1", attrs(&[]), T0).await.unwrap();
    let update = || AttributeUpdate { attributes: attrs(&[("k", "v")]), merge: true };

    assert_matches!(
        store.update_thing("t1", update(), Some(7)).await,
        Err(StoreError::VersionConflict { kind: ResourceKind::Thing, expected: 7, actual: 1, .. })
    );
    assert_eq!(store.describe_thing("t1").await.unwrap().version, 1, "failed update changed it");
    assert_eq!(store.update_thing("t1", update(), Some(1)).await.unwrap().version, 2);
    assert_matches!(
        store.update_thing("t1", update(), Some(1)).await,
        Err(StoreError::VersionConflict { expected: 1, actual: 2, .. })
    );
    assert_matches!(
        store.update_thing("ghost", update(), None).await,
        Err(StoreError::NotFound { kind: ResourceKind::Thing, .. })
    );
}

#[tokio::test]
async fn delete_thing_and_what_goes_with_it() {
    let (_dir, store) = open();
    store.create_thing("t1", attrs(&[("a", "1")]), T0).await.unwrap();
    store.create_thing_group(NewThingGroup { name: "g".into(), ..Default::default() }, T0).await.unwrap();
    store.add_thing_to_group("g", "t1").await.unwrap();
    let state = IngestState { last_report_id: 5, accepted_at_ms: T0 };
    store.set_ingest_state("t1", state).await.unwrap();

    assert_matches!(
        store.delete_thing("t1", Some(3)).await,
        Err(StoreError::VersionConflict { expected: 3, actual: 1, .. })
    );
    store.delete_thing("t1", Some(1)).await.unwrap();
    assert_matches!(store.describe_thing("t1").await, Err(StoreError::NotFound { .. }));
    assert_matches!(store.delete_thing("t1", None).await, Err(StoreError::NotFound { .. }));
    assert_eq!(store.ingest_state("t1").await.unwrap(), None);
    let members = store.list_things_in_group("g", false, &PageRequest::default()).await.unwrap();
    assert!(members.items.is_empty());

    // A re-created thing starts afresh: new id, version 1, no attributes, no groups.
    let again = store.create_thing("t1", attrs(&[]), T0 + 1).await.unwrap();
    assert_eq!((again.version, again.attributes.len()), (1, 0));
    assert!(store.effective_groups_for_thing("t1").await.unwrap().is_empty());
}

#[tokio::test]
async fn delete_thing_with_a_certificate_is_refused() {
    let (_dir, store) = open();
    store.create_thing("t1", attrs(&[]), T0).await.unwrap();
    let id = "ab".repeat(32);
    store
        .create_certificate(NewCertificate {
            certificate_id: id.clone(),
            pem: "PEM".into(),
            status: CertificateStatus::Active,
            ca_certificate_id: None,
            subject_cn: Some("t1".into()),
            created_at_ms: T0,
        })
        .await
        .unwrap();
    store.attach_thing_principal("t1", &id).await.unwrap();
    assert_matches!(store.delete_thing("t1", None).await, Err(StoreError::Conflict(_)));
    store.detach_thing_principal("t1", &id).await.unwrap();
    store.delete_thing("t1", None).await.unwrap();
}

#[tokio::test]
async fn list_things_in_pages() {
    let (_dir, store) = open();
    let names = ["a", "b", "c", "d", "e", "f", "g"];
    // Created out of order: the listing is by name, not by creation.
    for name in names.iter().rev() {
        store.create_thing(name, attrs(&[]), T0).await.unwrap();
    }
    let filter = ThingFilter::default();
    for size in [1, 3, 7, 250] {
        let listed = all_pages(size, |p| {
            let (store, filter) = (&store, &filter);
            async move { store.list_things(filter, &p).await }
        })
        .await;
        let listed: Vec<String> = listed.into_iter().map(|t| t.name).collect();
        assert_eq!(listed, strings(&names), "page size {size}");
    }
    let first = store.list_things(&filter, &PageRequest::first(7)).await.unwrap();
    assert_eq!((first.items.len(), first.next_token), (7, None), "an exact fit has no next page");
}

#[tokio::test]
async fn list_things_refuses_bad_pages() {
    let (_dir, store) = open();
    let filter = ThingFilter::default();
    for bad in ["zz", "abc", "", "ff"] {
        assert_matches!(store.list_things(&filter, &bad_page(bad)).await, Err(StoreError::Invalid(_)));
    }
    for size in [0, 251] {
        assert_matches!(
            store.list_things(&filter, &PageRequest::first(size)).await,
            Err(StoreError::Invalid(_))
        );
    }
}

#[tokio::test]
async fn list_things_by_attribute() {
    let (_dir, store) = open();
    store.create_thing("t1", attrs(&[("site", "lab"), ("kind", "cam")]), T0).await.unwrap();
    store.create_thing("t2", attrs(&[("site", "field")]), T0).await.unwrap();
    store.create_thing("t3", attrs(&[("site", "lab")]), T0).await.unwrap();
    store.create_thing("t4", attrs(&[]), T0).await.unwrap();

    let check = |name: Option<&str>, value: Option<&str>, expect: &[&str]| {
        let store = &store;
        let filter = ThingFilter {
            attribute_name: name.map(str::to_owned),
            attribute_value: value.map(str::to_owned),
        };
        let expect = strings(expect);
        async move {
            let listed = all_pages(1, |p| {
                let filter = &filter;
                async move { store.list_things(filter, &p).await }
            })
            .await;
            let listed: Vec<String> = listed.into_iter().map(|t| t.name).collect();
            assert_eq!(listed, expect, "{filter:?}");
        }
    };
    check(None, None, &["t1", "t2", "t3", "t4"]).await;
    check(Some("site"), None, &["t1", "t2", "t3"]).await;
    check(Some("site"), Some("lab"), &["t1", "t3"]).await;
    check(Some("kind"), Some("cam"), &["t1"]).await;
    check(Some("site"), Some("moon"), &[]).await;

    let value_only = ThingFilter { attribute_name: None, attribute_value: Some("lab".into()) };
    assert_matches!(
        store.list_things(&value_only, &PageRequest::default()).await,
        Err(StoreError::Invalid(_))
    );
}
