//! Alert topics: topics, subscriptions and delivery counters.

use warden_store::{PageRequest, ResourceKind, Store, StoreError, SubscriptionProtocol};

use crate::{T0, all_pages, assert_matches, bad_page, open, strings};

#[tokio::test]
async fn topics() {
    let (_dir, store) = open();
    let created = store.create_alert_topic("DDD_Alerts", T0).await.unwrap();
    assert_eq!((created.name.as_str(), created.created_at_ms), ("DDD_Alerts", T0));
    assert_eq!(store.describe_alert_topic("DDD_Alerts").await.unwrap(), created);
    assert_matches!(
        store.create_alert_topic("DDD_Alerts", T0).await,
        Err(StoreError::AlreadyExists { kind: ResourceKind::AlertTopic, .. })
    );
    let long = "x".repeat(257);
    for bad in ["", "a b", "a:b", "a.fifo", long.as_str()] {
        assert_matches!(store.create_alert_topic(bad, T0).await, Err(StoreError::Invalid(_)));
    }
    store.create_alert_topic(&"x".repeat(256), T0).await.unwrap();

    for name in ["b", "a", "c"] {
        store.create_alert_topic(name, T0).await.unwrap();
    }
    for size in [1, 2, 10] {
        let listed = all_pages(size, |p| {
            let store = &store;
            async move { store.list_alert_topics(&p).await }
        })
        .await;
        let names: Vec<String> = listed.into_iter().map(|t| t.name).collect();
        assert_eq!(names, strings(&["DDD_Alerts", "a", "b", "c", &"x".repeat(256)]), "page size {size}");
    }
    assert_matches!(store.list_alert_topics(&bad_page("q")).await, Err(StoreError::Invalid(_)));

    store.delete_alert_topic("a").await.unwrap();
    assert_matches!(
        store.describe_alert_topic("a").await,
        Err(StoreError::NotFound { kind: ResourceKind::AlertTopic, .. })
    );
    assert_matches!(
        store.delete_alert_topic("a").await,
        Err(StoreError::NotFound { kind: ResourceKind::AlertTopic, .. })
    );
}

#[tokio::test]
async fn subscriptions() {
    let (_dir, store) = open();
    store.create_alert_topic("alerts", T0).await.unwrap();
    store.create_alert_topic("other", T0).await.unwrap();

    let hook =
        store.subscribe("alerts", SubscriptionProtocol::Https, "https://ops.example/hook", T0).await.unwrap();
    assert_eq!(hook.topic, "alerts");
    assert_eq!(
        (hook.protocol, hook.endpoint.as_str()),
        (SubscriptionProtocol::Https, "https://ops.example/hook")
    );
    assert_eq!((hook.created_at_ms, hook.delivered, hook.failed), (T0, 0, 0));
    assert_eq!((hook.last_error.as_deref(), hook.last_attempt_ms), (None, None));
    assert_eq!(hook.subscription_id.len(), 36);

    // Subscribing again is answered with the existing subscription, as SNS does.
    let again = store
        .subscribe("alerts", SubscriptionProtocol::Https, "https://ops.example/hook", T0 + 9)
        .await
        .unwrap();
    assert_eq!(again, hook);
    let mqtt = store.subscribe("alerts", SubscriptionProtocol::Mqtt, "ops/alerts", T0 + 1).await.unwrap();
    let http = store
        .subscribe("alerts", SubscriptionProtocol::Http, "https://ops.example/hook", T0 + 2)
        .await
        .unwrap();
    assert_ne!(http.subscription_id, hook.subscription_id, "another protocol is another subscription");
    let elsewhere = store.subscribe("other", SubscriptionProtocol::Mqtt, "ops/alerts", T0).await.unwrap();

    let listed = |topic: &'static str, size: usize| {
        let store = &store;
        async move {
            let all = all_pages(size, |p| async move { store.list_subscriptions(topic, &p).await }).await;
            all.into_iter().map(|s| s.subscription_id).collect::<Vec<_>>()
        }
    };
    for size in [1, 2, 10] {
        assert_eq!(
            listed("alerts", size).await,
            [hook.subscription_id.clone(), mqtt.subscription_id.clone(), http.subscription_id.clone()],
            "in the order they were made, page size {size}"
        );
    }
    assert_eq!(listed("other", 1).await, std::slice::from_ref(&elsewhere.subscription_id));

    store.unsubscribe(&mqtt.subscription_id).await.unwrap();
    assert_eq!(listed("alerts", 10).await, [hook.subscription_id.clone(), http.subscription_id.clone()]);
    assert_matches!(
        store.unsubscribe(&mqtt.subscription_id).await,
        Err(StoreError::NotFound { kind: ResourceKind::AlertSubscription, .. })
    );

    assert_matches!(
        store.subscribe("nope", SubscriptionProtocol::Mqtt, "x", T0).await,
        Err(StoreError::NotFound { kind: ResourceKind::AlertTopic, .. })
    );
    assert_matches!(
        store.list_subscriptions("nope", &PageRequest::default()).await,
        Err(StoreError::NotFound { kind: ResourceKind::AlertTopic, .. })
    );
    assert_matches!(
        store.subscribe("alerts", SubscriptionProtocol::Mqtt, "", T0).await,
        Err(StoreError::Invalid(_))
    );
    assert_matches!(store.list_subscriptions("alerts", &bad_page("7a")).await, Err(StoreError::Invalid(_)));

    // Deleting a topic takes its subscriptions along.
    store.delete_alert_topic("alerts").await.unwrap();
    assert_matches!(
        store.record_delivery(&hook.subscription_id, true, None, T0).await,
        Err(StoreError::NotFound { kind: ResourceKind::AlertSubscription, .. })
    );
    store.create_alert_topic("alerts", T0).await.unwrap();
    assert!(listed("alerts", 10).await.is_empty());
    assert_eq!(listed("other", 10).await, [elsewhere.subscription_id]);
}

#[tokio::test]
async fn delivery_counters() {
    let (_dir, store) = open();
    store.create_alert_topic("alerts", T0).await.unwrap();
    let sub =
        store.subscribe("alerts", SubscriptionProtocol::Http, "http://127.0.0.1:9/hook", T0).await.unwrap();
    let id = sub.subscription_id.as_str();
    let state = || {
        let store = &store;
        async move {
            let page = store.list_subscriptions("alerts", &PageRequest::default()).await.unwrap();
            let s = page.items.into_iter().next().unwrap();
            (s.delivered, s.failed, s.last_error, s.last_attempt_ms)
        }
    };

    store.record_delivery(id, true, None, T0 + 1).await.unwrap();
    store.record_delivery(id, true, None, T0 + 2).await.unwrap();
    assert_eq!(state().await, (2, 0, None, Some(T0 + 2)));
    store.record_delivery(id, false, Some("connection refused"), T0 + 3).await.unwrap();
    assert_eq!(state().await, (2, 1, Some("connection refused".to_owned()), Some(T0 + 3)));
    // A failure always leaves an error, so a failing subscription is visible as such.
    store.record_delivery(id, false, None, T0 + 4).await.unwrap();
    assert_eq!(state().await, (2, 2, Some("delivery failed".to_owned()), Some(T0 + 4)));
    // A success means the subscription works again.
    store.record_delivery(id, true, Some("ignored"), T0 + 5).await.unwrap();
    assert_eq!(state().await, (3, 2, None, Some(T0 + 5)));

    assert_matches!(
        store.record_delivery("no-such-subscription", true, None, T0).await,
        Err(StoreError::NotFound { kind: ResourceKind::AlertSubscription, .. })
    );
    assert_matches!(store.record_delivery("", true, None, T0).await, Err(StoreError::Invalid(_)));
}

#[test]
fn protocols_are_spelled_in_lower_case() {
    for (protocol, text) in [
        (SubscriptionProtocol::Http, "http"),
        (SubscriptionProtocol::Https, "https"),
        (SubscriptionProtocol::Mqtt, "mqtt"),
    ] {
        assert_eq!(protocol.as_str(), text);
        assert_eq!(text.parse::<SubscriptionProtocol>().unwrap(), protocol);
    }
    assert_matches!("sqs".parse::<SubscriptionProtocol>(), Err(StoreError::Invalid(_)));
}
