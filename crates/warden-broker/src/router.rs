//! [`ExactRouter`]: rmqtt's default subscription router with a fast path for fleets whose
//! subscriptions are all exact topics.
//!
//! Every message is routed twice per report: the device's report (to find its subscribers,
//! normally none) and the server's `/accepted` reply (to the device). rmqtt's router parses the
//! topic into levels and walks its topic trie for both, allocating at every level; at 10,000
//! reports/s that walk was ~10 % of the server's CPU. Device fleets subscribe to exact topics
//! (the agents subscribe to their own `/accepted` and `/rejected`), and for an exact filter the
//! trie answers nothing a lookup of the topic in rmqtt's subscription table does not: a topic
//! name matches a filter without wildcards exactly when the strings are equal. So while no
//! wildcard filter is subscribed anywhere, [`ExactRouter`] answers from that table; once one
//! is, every match takes rmqtt's trie walk again, unchanged.

use std::collections::HashMap as StdHashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use rmqtt::Result;
use rmqtt::context::ServerContext;
use rmqtt::router::{DefaultRouter, Router};
use rmqtt::types::{
    AllRelationsMap, Id, NodeId, Route, SubRelationsMap, SubsSearchParams, SubsSearchResult,
    SubscriptioRelationsCollectorMap, SubscriptionOptions, TopicName,
};
use rmqtt::utils::Counter;
use tokio::sync::Mutex;

/// rmqtt's [`DefaultRouter`], answering matches by table lookup while no wildcard filter is
/// subscribed. Everything else is delegated unchanged.
pub(crate) struct ExactRouter {
    inner: DefaultRouter,
    /// Subscriptions per wildcard filter. Changed, together with the inner router's table,
    /// under this lock, so the count never says "none" while one is in the table. Wildcard
    /// subscriptions are rare, so the lock is not on any hot path.
    wildcards: Mutex<StdHashMap<String, usize>>,
    /// Whether `wildcards` is non-empty, read on every match without the lock. A match racing
    /// a wildcard SUBSCRIBE is one that happened just before it.
    any_wildcard: AtomicBool,
}

/// Whether an MQTT topic filter has a wildcard level.
fn is_wildcard(filter: &str) -> bool {
    filter.contains(['+', '#'])
}

impl ExactRouter {
    pub(crate) fn new(scx: ServerContext) -> ExactRouter {
        ExactRouter {
            inner: DefaultRouter::new(Some(scx)),
            wildcards: Mutex::default(),
            any_wildcard: AtomicBool::new(false),
        }
    }

    /// The subscriptions whose filter is exactly `topic`, as rmqtt's router collects them
    /// (rmqtt is built without shared subscriptions, so every relation is delivered).
    fn exact_matches(relations: &AllRelationsMap, this_id: &Id, topic: &TopicName) -> SubRelationsMap {
        let mut collector = SubscriptioRelationsCollectorMap::default();
        if let Some(rels) = relations.get(topic) {
            for (client_id, (id, opts)) in rels.iter() {
                // MQTT 5 No Local: not back to the publishing session.
                if opts.no_local() == Some(true) && this_id == id {
                    continue;
                }
                collector.entry(id.node_id).or_default().add(
                    rels.key(),
                    client_id.clone(),
                    opts.clone(),
                    None,
                );
            }
        }
        collector.into_iter().map(|(node, c)| (node, c.into())).collect()
    }
}

#[async_trait]
impl Router for ExactRouter {
    async fn add(&self, topic_filter: &str, id: Id, opts: SubscriptionOptions) -> Result<()> {
        if !is_wildcard(topic_filter) {
            return self.inner.add(topic_filter, id, opts).await;
        }
        let mut wildcards = self.wildcards.lock().await;
        let client_id = id.client_id.clone();
        let had = self.inner.relations.get(topic_filter).is_some_and(|r| r.contains_key(&client_id));
        self.inner.add(topic_filter, id, opts).await?;
        if !had {
            *wildcards.entry(topic_filter.to_owned()).or_default() += 1;
            self.any_wildcard.store(true, Ordering::Release);
        }
        Ok(())
    }

    async fn remove(&self, topic_filter: &str, id: Id) -> Result<bool> {
        if !is_wildcard(topic_filter) {
            return self.inner.remove(topic_filter, id).await;
        }
        let mut wildcards = self.wildcards.lock().await;
        let removed = self.inner.remove(topic_filter, id).await?;
        if removed && let Some(n) = wildcards.get_mut(topic_filter) {
            *n -= 1;
            if *n == 0 {
                wildcards.remove(topic_filter);
            }
            self.any_wildcard.store(!wildcards.is_empty(), Ordering::Release);
        }
        Ok(removed)
    }

    async fn matches(&self, id: Id, topic: &TopicName) -> Result<SubRelationsMap> {
        if self.any_wildcard.load(Ordering::Acquire) {
            return self.inner.matches(id, topic).await;
        }
        Ok(Self::exact_matches(&self.inner.relations, &id, topic))
    }

    async fn is_online(&self, node_id: NodeId, client_id: &str) -> bool {
        self.inner.is_online(node_id, client_id).await
    }

    async fn gets(&self, limit: usize) -> Vec<Route> {
        self.inner.gets(limit).await
    }

    async fn get(&self, topic: &str) -> Result<Vec<Route>> {
        self.inner.get(topic).await
    }

    async fn query_subscriptions(&self, q: &SubsSearchParams) -> Vec<SubsSearchResult> {
        self.inner.query_subscriptions(q).await
    }

    async fn topics_tree(&self) -> usize {
        self.inner.topics_tree().await
    }

    fn topics(&self) -> Counter {
        self.inner.topics()
    }

    fn routes(&self) -> Counter {
        self.inner.routes()
    }

    fn merge_topics(&self, topics_map: &rmqtt::types::HashMap<NodeId, Counter>) -> Counter {
        self.inner.merge_topics(topics_map)
    }

    fn merge_routes(&self, routes_map: &rmqtt::types::HashMap<NodeId, Counter>) -> Counter {
        self.inner.merge_routes(routes_map)
    }

    async fn list_topics(&self, top: usize) -> Vec<String> {
        self.inner.list_topics(top).await
    }

    async fn list_relations(&self, top: usize) -> Vec<serde_json::Value> {
        self.inner.list_relations(top).await
    }

    fn relations(&self) -> &AllRelationsMap {
        self.inner.relations()
    }
}

#[cfg(test)]
mod tests {
    use super::is_wildcard;

    #[test]
    fn wildcard_filters_are_those_with_plus_or_hash() {
        assert!(is_wildcard("$aws/things/+/shadow"));
        assert!(is_wildcard("#"));
        assert!(is_wildcard("a/#"));
        assert!(!is_wildcard("$aws/things/dev-1/defender/metrics/json/accepted"));
    }
}
