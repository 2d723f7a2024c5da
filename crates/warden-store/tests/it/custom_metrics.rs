//! Custom metrics and dimensions: create, describe, update, delete and list.

use warden_store::{PageRequest, ResourceKind, Store, StoreError};

use crate::{T0, all_pages, assert_matches, bad_page, open, strings};

#[tokio::test]
async fn custom_metric_lifecycle() {
    let (_dir, store) = open();
    let created =
        store.create_custom_metric("batteryPercentage", "number", Some("Battery"), T0).await.unwrap();
    assert_eq!(created.name, "batteryPercentage");
    assert_eq!(created.metric_type, "number");
    assert_eq!(created.display_name.as_deref(), Some("Battery"));
    assert_eq!((created.created_at_ms, created.last_modified_ms), (T0, T0));
    assert_eq!(store.describe_custom_metric("batteryPercentage").await.unwrap(), created);

    let renamed = store.update_custom_metric("batteryPercentage", Some("Charge"), T0 + 5).await.unwrap();
    assert_eq!(renamed.display_name.as_deref(), Some("Charge"));
    assert_eq!(
        (renamed.metric_type.as_str(), renamed.created_at_ms, renamed.last_modified_ms),
        ("number", T0, T0 + 5)
    );
    let unnamed = store.update_custom_metric("batteryPercentage", Some(""), T0 + 6).await.unwrap();
    assert_eq!(unnamed.display_name, None);

    store.delete_custom_metric("batteryPercentage").await.unwrap();
    assert_matches!(
        store.describe_custom_metric("batteryPercentage").await,
        Err(StoreError::NotFound { kind: ResourceKind::CustomMetric, .. })
    );
}

#[tokio::test]
async fn custom_metric_errors_and_listing() {
    let (_dir, store) = open();
    for name in ["m3", "m1", "m2"] {
        store.create_custom_metric(name, "string-list", None, T0).await.unwrap();
    }
    assert_matches!(
        store.create_custom_metric("m1", "number", None, T0).await,
        Err(StoreError::AlreadyExists { kind: ResourceKind::CustomMetric, ref name }) if name == "m1"
    );
    assert_matches!(
        store.update_custom_metric("nope", Some("x"), T0).await,
        Err(StoreError::NotFound { kind: ResourceKind::CustomMetric, .. })
    );
    assert_matches!(
        store.delete_custom_metric("nope").await,
        Err(StoreError::NotFound { kind: ResourceKind::CustomMetric, .. })
    );
    assert_matches!(store.create_custom_metric("m4", "", None, T0).await, Err(StoreError::Invalid(_)));
    for bad in ["", "a b", "a/b"] {
        assert_matches!(
            store.create_custom_metric(bad, "number", None, T0).await,
            Err(StoreError::Invalid(_))
        );
    }
    for size in [1, 2, 3] {
        let listed = all_pages(size, |p| {
            let store = &store;
            async move { store.list_custom_metrics(&p).await }
        })
        .await;
        let names: Vec<String> = listed.into_iter().map(|m| m.name).collect();
        assert_eq!(names, strings(&["m1", "m2", "m3"]), "page size {size}");
    }
    assert_matches!(store.list_custom_metrics(&bad_page("0")).await, Err(StoreError::Invalid(_)));
}

#[tokio::test]
async fn dimension_lifecycle() {
    let (_dir, store) = open();
    let values = strings(&["$aws/things/+/shadow/#", "telemetry/${iot:ClientId}"]);
    let created = store.create_dimension("ShadowTopics", "TOPIC_FILTER", values.clone(), T0).await.unwrap();
    assert_eq!(created.name, "ShadowTopics");
    assert_eq!(created.dimension_type, "TOPIC_FILTER");
    assert_eq!(created.string_values, values, "kept in order");
    assert_eq!((created.created_at_ms, created.last_modified_ms), (T0, T0));
    assert_eq!(store.describe_dimension("ShadowTopics").await.unwrap(), created);

    let updated = store.update_dimension("ShadowTopics", strings(&["b/#", "a/#"]), T0 + 1).await.unwrap();
    assert_eq!(updated.string_values, strings(&["b/#", "a/#"]));
    assert_eq!((updated.created_at_ms, updated.last_modified_ms), (T0, T0 + 1));

    assert_matches!(
        store.create_dimension("ShadowTopics", "TOPIC_FILTER", values.clone(), T0).await,
        Err(StoreError::AlreadyExists { kind: ResourceKind::Dimension, .. })
    );
    assert_matches!(
        store.create_dimension("Empty", "TOPIC_FILTER", Vec::new(), T0).await,
        Err(StoreError::Invalid(_))
    );
    assert_matches!(
        store.update_dimension("ShadowTopics", Vec::new(), T0).await,
        Err(StoreError::Invalid(_))
    );
    assert_matches!(
        store.update_dimension("nope", values.clone(), T0).await,
        Err(StoreError::NotFound { kind: ResourceKind::Dimension, .. })
    );
    assert_matches!(
        store.create_dimension("a b", "TOPIC_FILTER", values, T0).await,
        Err(StoreError::Invalid(_))
    );

    store.delete_dimension("ShadowTopics").await.unwrap();
    assert_matches!(
        store.delete_dimension("ShadowTopics").await,
        Err(StoreError::NotFound { kind: ResourceKind::Dimension, .. })
    );
}

#[tokio::test]
async fn dimensions_in_pages() {
    let (_dir, store) = open();
    let all = ["d1", "d2", "d3", "d4"];
    for name in all.iter().rev() {
        store.create_dimension(name, "TOPIC_FILTER", strings(&["#"]), T0).await.unwrap();
    }
    for size in [1, 3, 4] {
        let listed = all_pages(size, |p| {
            let store = &store;
            async move { store.list_dimensions(&p).await }
        })
        .await;
        let names: Vec<String> = listed.into_iter().map(|d| d.name).collect();
        assert_eq!(names, strings(&all), "page size {size}");
    }
    assert_matches!(store.list_dimensions(&PageRequest::first(251)).await, Err(StoreError::Invalid(_)));
}
