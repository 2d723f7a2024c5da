//! Security profiles: create, describe, versioned update and delete, listing, and attachment
//! to opaque targets.

use warden_store::{
    NewSecurityProfile, PageRequest, ResourceKind, SecurityProfileUpdate, SqliteStore, Store, StoreError,
};

use crate::{T0, all_pages, assert_matches, bad_page, open, strings};

/// A profile body as the API would pass it: whitespace and an unknown member must survive.
const DOC: &str = r#"{"behaviors": [{"name": "BytesOut", "metric": "aws:all-bytes-out",
  "criteria": {"comparisonOperator": "less-than-equals", "value": {"count": 35000}}}],
  "alertTargets": {"SNS": {"alertTargetArn": "arn:aws:sns:local:000000000000:alerts",
                           "roleArn": "arn:aws:iam::000000000000:role/alerts"}},
  "wardenAutomaticMitigation": {"actions": ["quarantine"]}}"#;
const GROUP: &str = "arn:aws:iot:local:000000000000:thinggroup/fleet";
const ALL: &str = "arn:aws:iot:local:000000000000:all/things";

fn profile(name: &str, description: Option<&str>) -> NewSecurityProfile {
    NewSecurityProfile {
        name: name.to_owned(),
        description: description.map(str::to_owned),
        document: DOC.to_owned(),
    }
}

fn update(description: Option<&str>, document: &str) -> SecurityProfileUpdate {
    SecurityProfileUpdate { description: description.map(str::to_owned), document: document.to_owned() }
}

async fn names(store: &SqliteStore, size: usize) -> Vec<String> {
    all_pages(size, |p| async move { store.list_security_profiles(&p).await })
        .await
        .into_iter()
        .map(|p| p.name)
        .collect()
}

#[tokio::test]
async fn create_describe_update_delete() {
    let (_dir, store) = open();
    let created = store.create_security_profile(profile("baseline", Some("traffic")), T0).await.unwrap();
    assert_eq!(created.name, "baseline");
    assert_eq!(created.description.as_deref(), Some("traffic"));
    assert_eq!(created.document, DOC, "kept byte for byte");
    assert_eq!((created.version, created.created_at_ms, created.last_modified_ms), (1, T0, T0));
    assert_eq!(store.describe_security_profile("baseline").await.unwrap(), created);

    let updated =
        store.update_security_profile("baseline", update(None, "{}"), Some(1), T0 + 10).await.unwrap();
    assert_eq!((updated.version, updated.created_at_ms, updated.last_modified_ms), (2, T0, T0 + 10));
    assert_eq!((updated.description, updated.document.as_str()), (None, "{}"));
    assert_eq!(store.describe_security_profile("baseline").await.unwrap().version, 2);

    // Without an expected version, the update applies to whatever version is there.
    let updated =
        store.update_security_profile("baseline", update(Some("again"), DOC), None, T0 + 20).await.unwrap();
    assert_eq!((updated.version, updated.description.as_deref()), (3, Some("again")));

    store.delete_security_profile("baseline", Some(3)).await.unwrap();
    assert_matches!(
        store.describe_security_profile("baseline").await,
        Err(StoreError::NotFound { kind: ResourceKind::SecurityProfile, ref name }) if name == "baseline"
    );
    // The name is free again, and a new profile starts over at version 1.
    let again = store.create_security_profile(profile("baseline", None), T0 + 30).await.unwrap();
    assert_eq!((again.version, again.created_at_ms), (1, T0 + 30));
    store.delete_security_profile("baseline", None).await.unwrap();
}

#[tokio::test]
async fn versions_guard_updates_and_deletes() {
    let (_dir, store) = open();
    store.create_security_profile(profile("p", None), T0).await.unwrap();
    store.update_security_profile("p", update(None, DOC), Some(1), T0).await.unwrap();

    assert_matches!(
        store.update_security_profile("p", update(None, "{}"), Some(1), T0).await,
        Err(StoreError::VersionConflict { kind: ResourceKind::SecurityProfile, expected: 1, actual: 2, .. })
    );
    assert_matches!(
        store.delete_security_profile("p", Some(3)).await,
        Err(StoreError::VersionConflict { kind: ResourceKind::SecurityProfile, expected: 3, actual: 2, .. })
    );
    // The refused update changed nothing.
    let current = store.describe_security_profile("p").await.unwrap();
    assert_eq!((current.version, current.document.as_str()), (2, DOC));
    assert_matches!(
        store.update_security_profile("p", update(None, DOC), Some(u64::MAX), T0).await,
        Err(StoreError::Invalid(_))
    );
    store.delete_security_profile("p", Some(2)).await.unwrap();
}

#[tokio::test]
async fn profile_errors() {
    let (_dir, store) = open();
    store.create_security_profile(profile("p", None), T0).await.unwrap();
    assert_matches!(
        store.create_security_profile(profile("p", None), T0).await,
        Err(StoreError::AlreadyExists { kind: ResourceKind::SecurityProfile, ref name }) if name == "p"
    );
    assert_matches!(
        store.update_security_profile("nope", update(None, DOC), None, T0).await,
        Err(StoreError::NotFound { kind: ResourceKind::SecurityProfile, .. })
    );
    assert_matches!(
        store.delete_security_profile("nope", None).await,
        Err(StoreError::NotFound { kind: ResourceKind::SecurityProfile, .. })
    );
    let not_json = NewSecurityProfile { document: "{behaviors".into(), ..profile("q", None) };
    assert_matches!(
        store.create_security_profile(not_json, T0).await,
        Err(StoreError::Invalid(ref m)) if m.contains("JSON")
    );
    assert_matches!(
        store.update_security_profile("p", update(None, ""), None, T0).await,
        Err(StoreError::Invalid(_))
    );
    let long = "x".repeat(129);
    for bad in ["", "a b", "a/b", "é", long.as_str()] {
        assert_matches!(
            store.create_security_profile(profile(bad, None), T0).await,
            Err(StoreError::Invalid(_))
        );
        assert_matches!(store.describe_security_profile(bad).await, Err(StoreError::Invalid(_)));
    }
    store.create_security_profile(profile("Ab:9_-z", None), T0).await.unwrap();
    // An empty description is no description.
    let empty = store.create_security_profile(profile("e", Some("")), T0).await.unwrap();
    assert_eq!(empty.description, None);
}

#[tokio::test]
async fn list_in_pages() {
    let (_dir, store) = open();
    let all = ["a", "b", "c", "d", "e"];
    for name in all.iter().rev() {
        store.create_security_profile(profile(name, None), T0).await.unwrap();
    }
    for size in [1, 2, 5, 250] {
        assert_eq!(names(&store, size).await, strings(&all), "page size {size}");
    }
    let first = store.list_security_profiles(&PageRequest::first(2)).await.unwrap();
    assert_eq!(first.items[0].document, DOC, "pages carry whole profiles");
    assert_matches!(store.list_security_profiles(&PageRequest::first(0)).await, Err(StoreError::Invalid(_)));
    assert_matches!(store.list_security_profiles(&bad_page("zz")).await, Err(StoreError::Invalid(_)));
}

#[tokio::test]
async fn attach_detach_and_list_targets() {
    let (_dir, store) = open();
    for name in ["p1", "p2", "p3"] {
        store.create_security_profile(profile(name, None), T0).await.unwrap();
    }
    store.attach_security_profile("p1", GROUP).await.unwrap();
    store.attach_security_profile("p1", GROUP).await.unwrap();
    store.attach_security_profile("p1", ALL).await.unwrap();
    store.attach_security_profile("p3", GROUP).await.unwrap();

    let targets = |name: &'static str| {
        let store = &store;
        all_pages(1, move |p| async move { store.list_targets_for_security_profile(name, &p).await })
    };
    let profiles_for = |target: &'static str| {
        let store = &store;
        all_pages(1, move |p| async move { store.list_security_profiles_for_target(target, &p).await })
    };
    assert_eq!(targets("p1").await, strings(&[ALL, GROUP]));
    assert_eq!(targets("p2").await, Vec::<String>::new());
    assert_eq!(profiles_for(GROUP).await, strings(&["p1", "p3"]));
    assert_eq!(profiles_for(ALL).await, strings(&["p1"]));
    // Targets are exact strings: no prefix or group recursion here.
    assert_eq!(profiles_for("arn:aws:iot:local:000000000000:thinggroup/fle").await, Vec::<String>::new());

    let for_targets = |targets: &[&str]| {
        let store = &store;
        let targets = strings(targets);
        async move { store.security_profiles_for_targets(&targets).await.unwrap() }
    };
    assert_eq!(for_targets(&[GROUP, ALL, "arn:none"]).await, strings(&["p1", "p3"]));
    assert_eq!(for_targets(&[ALL]).await, strings(&["p1"]));
    assert_eq!(for_targets(&[]).await, Vec::<String>::new());

    store.detach_security_profile("p1", GROUP).await.unwrap();
    store.detach_security_profile("p1", GROUP).await.unwrap();
    assert_eq!(targets("p1").await, strings(&[ALL]));
    assert_eq!(profiles_for(GROUP).await, strings(&["p3"]));

    // Deleting a profile detaches it everywhere; a new profile of that name starts bare.
    store.delete_security_profile("p3", None).await.unwrap();
    assert_eq!(profiles_for(GROUP).await, Vec::<String>::new());
    store.create_security_profile(profile("p3", None), T0).await.unwrap();
    assert_eq!(targets("p3").await, Vec::<String>::new());

    assert_matches!(
        store.attach_security_profile("nope", GROUP).await,
        Err(StoreError::NotFound { kind: ResourceKind::SecurityProfile, .. })
    );
    assert_matches!(store.detach_security_profile("nope", GROUP).await, Err(StoreError::NotFound { .. }));
    assert_matches!(
        store.list_targets_for_security_profile("nope", &PageRequest::default()).await,
        Err(StoreError::NotFound { .. })
    );
    assert_matches!(store.attach_security_profile("p1", "").await, Err(StoreError::Invalid(_)));
    assert_matches!(
        store.list_security_profiles_for_target("", &PageRequest::default()).await,
        Err(StoreError::Invalid(_))
    );
}
