//! Thing groups: nesting, updates, deletion rules, listings, membership and the effective
//! (inherited) groups of a thing.

use warden_store::{
    AttributeUpdate, NewThingGroup, PageRequest, ResourceKind, SqliteStore, Store, StoreError,
    ThingGroupFilter, ThingGroupUpdate,
};

use crate::{T0, all_pages, assert_matches, attrs, open, strings};

fn group(name: &str, parent: Option<&str>) -> NewThingGroup {
    NewThingGroup {
        name: name.to_owned(),
        parent: parent.map(str::to_owned),
        description: None,
        attributes: attrs(&[]),
    }
}

/// ```text
/// fleet ── site-a ── cams
///      └── site-b
/// quarantine
/// ```
async fn hierarchy() -> (tempfile::TempDir, SqliteStore) {
    let (dir, store) = open();
    for (name, parent) in [
        ("fleet", None),
        ("site-a", Some("fleet")),
        ("site-b", Some("fleet")),
        ("cams", Some("site-a")),
        ("quarantine", None),
    ] {
        store.create_thing_group(group(name, parent), T0).await.unwrap();
    }
    (dir, store)
}

#[tokio::test]
async fn create_and_describe_nested_groups() {
    let (_dir, store) = open();
    let root = store
        .create_thing_group(
            NewThingGroup {
                name: "fleet".into(),
                parent: None,
                description: Some("all devices".into()),
                attributes: attrs(&[("owner", "ops")]),
            },
            T0,
        )
        .await
        .unwrap();
    assert_eq!(root.parent, None);
    assert!(root.root_to_parent.is_empty());
    assert_eq!(root.description.as_deref(), Some("all devices"));
    assert_eq!(root.attributes, attrs(&[("owner", "ops")]));
    assert_eq!((root.version, root.created_at_ms), (1, T0));

    store.create_thing_group(group("site-a", Some("fleet")), T0 + 1).await.unwrap();
    let leaf = store.create_thing_group(group("cams", Some("site-a")), T0 + 2).await.unwrap();
    assert_eq!(leaf.parent.as_deref(), Some("site-a"));
    assert_eq!(leaf.root_to_parent, strings(&["fleet", "site-a"]));
    assert_eq!(store.describe_thing_group("cams").await.unwrap(), leaf);
    assert_ne!(leaf.id, root.id);
}

#[tokio::test]
async fn create_group_errors() {
    let (_dir, store) = hierarchy().await;
    assert_matches!(
        store.create_thing_group(group("fleet", None), T0).await,
        Err(StoreError::AlreadyExists { kind: ResourceKind::ThingGroup, .. })
    );
    assert_matches!(
        store.create_thing_group(group("orphan", Some("missing")), T0).await,
        Err(StoreError::NotFound { kind: ResourceKind::ThingGroup, ref name }) if name == "missing"
    );
    assert_matches!(store.describe_thing_group("orphan").await, Err(StoreError::NotFound { .. }));
    // The only cycle a create could make is a group that is its own parent.
    assert_matches!(
        store.create_thing_group(group("loop", Some("loop")), T0).await,
        Err(StoreError::Invalid(_))
    );
    assert_matches!(store.create_thing_group(group("a b", None), T0).await, Err(StoreError::Invalid(_)));
    assert_matches!(
        store.create_thing_group(group("ok", Some("a/b")), T0).await,
        Err(StoreError::Invalid(_))
    );
}

#[tokio::test]
async fn update_group() {
    let (_dir, store) = hierarchy().await;
    let update = ThingGroupUpdate {
        description: Some("first site".into()),
        attributes: Some(AttributeUpdate { attributes: attrs(&[("floor", "2")]), merge: true }),
    };
    let updated = store.update_thing_group("site-a", update, Some(1)).await.unwrap();
    assert_eq!(updated.description.as_deref(), Some("first site"));
    assert_eq!(updated.attributes, attrs(&[("floor", "2")]));
    assert_eq!(updated.version, 2);
    assert_eq!(updated.parent.as_deref(), Some("fleet"), "the parent never changes");

    // Nothing given: nothing changes but the version.
    let same = store.update_thing_group("site-a", ThingGroupUpdate::default(), None).await.unwrap();
    assert_eq!((same.description.as_deref(), same.version), (Some("first site"), 3));

    // An empty description removes it.
    let update = ThingGroupUpdate { description: Some(String::new()), attributes: None };
    assert_eq!(store.update_thing_group("site-a", update, None).await.unwrap().description, None);

    assert_matches!(
        store.update_thing_group("site-a", ThingGroupUpdate::default(), Some(1)).await,
        Err(StoreError::VersionConflict { kind: ResourceKind::ThingGroup, expected: 1, actual: 4, .. })
    );
    assert_matches!(
        store.update_thing_group("nope", ThingGroupUpdate::default(), None).await,
        Err(StoreError::NotFound { .. })
    );
}

#[tokio::test]
async fn delete_group_with_children_is_refused() {
    let (_dir, store) = hierarchy().await;
    store.create_thing("t1", attrs(&[]), T0).await.unwrap();
    store.add_thing_to_group("cams", "t1").await.unwrap();

    assert_matches!(
        store.delete_thing_group("fleet", None).await,
        Err(StoreError::Conflict(ref m)) if m.contains("fleet") && m.contains("child")
    );
    assert_matches!(store.delete_thing_group("site-a", None).await, Err(StoreError::Conflict(_)));
    assert_matches!(store.delete_thing_group("cams", Some(2)).await, Err(StoreError::VersionConflict { .. }));
    // A leaf with members can go; its memberships go with it.
    store.delete_thing_group("cams", Some(1)).await.unwrap();
    assert!(store.effective_groups_for_thing("t1").await.unwrap().is_empty());
    store.delete_thing_group("site-a", None).await.unwrap();
    store.delete_thing_group("site-b", None).await.unwrap();
    store.delete_thing_group("fleet", None).await.unwrap();
    assert_matches!(store.delete_thing_group("fleet", None).await, Err(StoreError::NotFound { .. }));
}

#[tokio::test]
async fn list_groups() {
    let (_dir, store) = hierarchy().await;
    let check = |parent: Option<&str>, prefix: Option<&str>, recursive: bool, expect: &[&str]| {
        let store = &store;
        let filter = ThingGroupFilter {
            parent: parent.map(str::to_owned),
            name_prefix: prefix.map(str::to_owned),
            recursive,
        };
        let expect = strings(expect);
        async move {
            let listed = all_pages(2, |p| {
                let filter = &filter;
                async move { store.list_thing_groups(filter, &p).await }
            })
            .await;
            let names: Vec<String> = listed.into_iter().map(|g| g.name).collect();
            assert_eq!(names, expect, "{filter:?}");
        }
    };
    check(None, None, false, &["cams", "fleet", "quarantine", "site-a", "site-b"]).await;
    check(None, None, true, &["cams", "fleet", "quarantine", "site-a", "site-b"]).await;
    check(Some("fleet"), None, false, &["site-a", "site-b"]).await;
    check(Some("fleet"), None, true, &["cams", "site-a", "site-b"]).await;
    check(Some("cams"), None, true, &[]).await;
    check(None, Some("site"), false, &["site-a", "site-b"]).await;
    check(Some("fleet"), Some("site-b"), true, &["site-b"]).await;

    let all = ThingGroupFilter::default();
    let listed = store.list_thing_groups(&all, &PageRequest::first(250)).await.unwrap();
    let cams = listed.items.into_iter().find(|g| g.name == "cams").unwrap();
    assert_eq!(cams.root_to_parent, strings(&["fleet", "site-a"]), "listings are full records");

    let missing = ThingGroupFilter { parent: Some("nope".into()), ..Default::default() };
    assert_matches!(
        store.list_thing_groups(&missing, &PageRequest::default()).await,
        Err(StoreError::NotFound { .. })
    );
}

#[tokio::test]
async fn membership_is_idempotent_and_inherited() {
    let (_dir, store) = hierarchy().await;
    for thing in ["cam-1", "cam-2", "gw-1", "gw-2"] {
        store.create_thing(thing, attrs(&[]), T0).await.unwrap();
    }
    store.add_thing_to_group("cams", "cam-1").await.unwrap();
    store.add_thing_to_group("cams", "cam-1").await.unwrap();
    store.add_thing_to_group("cams", "cam-2").await.unwrap();
    store.add_thing_to_group("site-a", "gw-1").await.unwrap();
    store.add_thing_to_group("site-a", "cam-2").await.unwrap();
    store.add_thing_to_group("site-b", "gw-2").await.unwrap();

    let check = |group: &str, recursive: bool, expect: &[&str]| {
        let store = &store;
        let group = group.to_owned();
        let expect = strings(expect);
        async move {
            let listed = all_pages(1, |p| {
                let group = &group;
                async move { store.list_things_in_group(group, recursive, &p).await }
            })
            .await;
            assert_eq!(listed, expect, "{group} recursive={recursive}");
        }
    };
    check("cams", false, &["cam-1", "cam-2"]).await;
    check("site-a", false, &["cam-2", "gw-1"]).await;
    check("site-a", true, &["cam-1", "cam-2", "gw-1"]).await;
    check("fleet", false, &[]).await;
    check("fleet", true, &["cam-1", "cam-2", "gw-1", "gw-2"]).await;

    store.remove_thing_from_group("cams", "cam-2").await.unwrap();
    store.remove_thing_from_group("cams", "cam-2").await.unwrap();
    check("cams", false, &["cam-1"]).await;
    check("site-a", true, &["cam-1", "cam-2", "gw-1"]).await;

    for (group, thing) in [("nope", "cam-1"), ("cams", "nope")] {
        assert_matches!(store.add_thing_to_group(group, thing).await, Err(StoreError::NotFound { .. }));
        assert_matches!(store.remove_thing_from_group(group, thing).await, Err(StoreError::NotFound { .. }));
    }
    assert_matches!(
        store.list_things_in_group("nope", true, &PageRequest::default()).await,
        Err(StoreError::NotFound { .. })
    );
}

#[tokio::test]
async fn groups_of_a_thing_direct_and_effective() {
    let (_dir, store) = hierarchy().await;
    store.create_thing("cam-1", attrs(&[]), T0).await.unwrap();
    store.create_thing("loner", attrs(&[]), T0).await.unwrap();
    store.add_thing_to_group("cams", "cam-1").await.unwrap();
    store.add_thing_to_group("site-a", "cam-1").await.unwrap();
    store.add_thing_to_group("quarantine", "cam-1").await.unwrap();

    let direct = all_pages(2, |p| {
        let store = &store;
        async move { store.list_groups_for_thing("cam-1", &p).await }
    })
    .await;
    assert_eq!(direct, strings(&["cams", "quarantine", "site-a"]));

    // Ancestors are included once each, though site-a is reached twice.
    let effective = store.effective_groups_for_thing("cam-1").await.unwrap();
    assert_eq!(effective, strings(&["cams", "fleet", "quarantine", "site-a"]));
    assert!(store.effective_groups_for_thing("loner").await.unwrap().is_empty());

    store.remove_thing_from_group("cams", "cam-1").await.unwrap();
    store.remove_thing_from_group("quarantine", "cam-1").await.unwrap();
    let effective = store.effective_groups_for_thing("cam-1").await.unwrap();
    assert_eq!(effective, strings(&["fleet", "site-a"]));

    assert_matches!(
        store.effective_groups_for_thing("nope").await,
        Err(StoreError::NotFound { kind: ResourceKind::Thing, .. })
    );
    assert_matches!(
        store.list_groups_for_thing("nope", &PageRequest::default()).await,
        Err(StoreError::NotFound { .. })
    );
}
