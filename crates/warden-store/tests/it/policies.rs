//! Policies: create, get, delete rules, listing, and attachment to opaque targets.

use warden_store::{DEFAULT_POLICY_VERSION_ID, PageRequest, ResourceKind, Store, StoreError};

use crate::{T0, all_pages, assert_matches, open, strings};

const DOC: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"*"}]}"#;
const CERT: &str = "arn:aws:iot:local:000000000000:cert/abc";
const GROUP: &str = "arn:aws:iot:local:000000000000:thinggroup/fleet";

#[tokio::test]
async fn create_get_delete() {
    let (_dir, store) = open();
    let created = store.create_policy("device.default", DOC, T0).await.unwrap();
    assert_eq!(created.name, "device.default");
    assert_eq!(created.document, DOC, "kept byte for byte");
    assert_eq!(created.default_version_id, DEFAULT_POLICY_VERSION_ID);
    assert_eq!((created.created_at_ms, created.last_modified_ms), (T0, T0));
    assert_eq!(store.get_policy("device.default").await.unwrap(), created);

    assert_matches!(
        store.create_policy("device.default", DOC, T0).await,
        Err(StoreError::AlreadyExists { kind: ResourceKind::Policy, .. })
    );
    assert_matches!(
        store.create_policy("broken", "{not json", T0).await,
        Err(StoreError::Invalid(ref m)) if m.contains("JSON")
    );
    for bad in ["", "a b", "a/b", "x".repeat(129).as_str()] {
        assert_matches!(store.create_policy(bad, DOC, T0).await, Err(StoreError::Invalid(_)));
    }
    store.create_policy("Odd+name=,.@_-1", DOC, T0).await.unwrap();

    store.delete_policy("device.default").await.unwrap();
    assert_matches!(
        store.get_policy("device.default").await,
        Err(StoreError::NotFound { kind: ResourceKind::Policy, .. })
    );
    assert_matches!(store.delete_policy("device.default").await, Err(StoreError::NotFound { .. }));
}

#[tokio::test]
async fn attach_and_detach() {
    let (_dir, store) = open();
    for name in ["a", "b", "c"] {
        store.create_policy(name, DOC, T0).await.unwrap();
    }
    store.attach_policy("a", CERT).await.unwrap();
    store.attach_policy("a", CERT).await.unwrap();
    store.attach_policy("a", GROUP).await.unwrap();
    store.attach_policy("c", CERT).await.unwrap();

    let attached = |target: &'static str| {
        let store = &store;
        all_pages(1, move |p| async move { store.list_attached_policies(target, &p).await })
    };
    let targets = |policy: &'static str| {
        let store = &store;
        all_pages(1, move |p| async move { store.list_targets_for_policy(policy, &p).await })
    };
    assert_eq!(attached(CERT).await, strings(&["a", "c"]));
    assert_eq!(attached(GROUP).await, strings(&["a"]));
    assert_eq!(attached("arn:unknown").await, Vec::<String>::new());
    assert_eq!(targets("a").await, strings(&[CERT, GROUP]));
    assert_eq!(targets("b").await, Vec::<String>::new());

    // Attached policies cannot be deleted.
    assert_matches!(
        store.delete_policy("a").await,
        Err(StoreError::Conflict(ref m)) if m.contains("attached")
    );
    store.detach_policy("a", CERT).await.unwrap();
    store.detach_policy("a", CERT).await.unwrap();
    assert_matches!(store.delete_policy("a").await, Err(StoreError::Conflict(_)));
    store.detach_policy("a", GROUP).await.unwrap();
    store.delete_policy("a").await.unwrap();
    assert_eq!(attached(CERT).await, strings(&["c"]));

    assert_matches!(store.attach_policy("nope", CERT).await, Err(StoreError::NotFound { .. }));
    assert_matches!(store.detach_policy("nope", CERT).await, Err(StoreError::NotFound { .. }));
    assert_matches!(store.attach_policy("b", "").await, Err(StoreError::Invalid(_)));
    assert_matches!(
        store.list_targets_for_policy("nope", &PageRequest::default()).await,
        Err(StoreError::NotFound { .. })
    );
}

#[tokio::test]
async fn policies_for_several_targets() {
    let (_dir, store) = open();
    for name in ["quarantine", "base", "extra"] {
        store.create_policy(name, DOC, T0).await.unwrap();
    }
    store.attach_policy("base", CERT).await.unwrap();
    store.attach_policy("base", GROUP).await.unwrap();
    store.attach_policy("quarantine", GROUP).await.unwrap();
    store.attach_policy("extra", "arn:other").await.unwrap();

    let check = |targets: &[&str], expect: &[&str]| {
        let store = &store;
        let targets = strings(targets);
        let expect = strings(expect);
        async move {
            let policies = store.policies_for_targets(&targets).await.unwrap();
            let names: Vec<String> = policies.iter().map(|p| p.name.clone()).collect();
            assert_eq!(names, expect, "{targets:?}");
            assert!(policies.iter().all(|p| p.document == DOC));
        }
    };
    check(&[CERT, GROUP], &["base", "quarantine"]).await;
    check(&[CERT], &["base"]).await;
    check(&[GROUP, "arn:other", "arn:none"], &["base", "extra", "quarantine"]).await;
    check(&["arn:none"], &[]).await;
    check(&[], &[]).await;
}

#[tokio::test]
async fn list_in_pages() {
    let (_dir, store) = open();
    let names = ["p1", "p2", "p3", "p4", "p5"];
    for name in names.iter().rev() {
        store.create_policy(name, DOC, T0).await.unwrap();
    }
    for size in [1, 2, 5] {
        let listed = all_pages(size, |p| {
            let store = &store;
            async move { store.list_policies(&p).await }
        })
        .await;
        let listed: Vec<String> = listed.into_iter().map(|p| p.name).collect();
        assert_eq!(listed, strings(&names), "page size {size}");
    }
    assert_matches!(store.list_policies(&PageRequest::first(0)).await, Err(StoreError::Invalid(_)));
}
