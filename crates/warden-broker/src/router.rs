//! [`FleetRouter`]: rmqtt's default subscription router, matching by lookup instead of a trie walk.
//!
//! Two messages are routed per report: the device's report (to find its subscribers,
//! normally none) and the server's `/accepted` reply (to the device). rmqtt's router parses the
//! topic into levels and walks its topic trie for both, allocating at every level; at 9,000
//! reports/s that walk was ~10 % of the server's CPU. A fleet's subscriptions are few per
//! device and mostly exact (the agents subscribe to their own `/accepted` and `/rejected`) or
//! wildcards under the device's own prefix (`$aws/things/dev-1/defender/metrics/cbor/+`).
//! So [`FleetRouter`] matches by lookup instead: the exact filter equal to the topic in rmqtt's
//! subscription table, and the wildcard filters indexed by their literal prefix (the levels
//! before the first wildcard), of which only those under one of the topic's own prefixes are
//! tried, with a string comparison. The index is split by the prefix's number of levels, so a
//! fleet whose wildcard filters all have the same depth costs one hash lookup per message.
//! rmqtt's trie is still kept, for its other uses; a property test checks the matching
//! against it.

use std::sync::RwLock;

use async_trait::async_trait;
use rmqtt::Result;
use rmqtt::context::ServerContext;
use rmqtt::router::{DefaultRouter, Router};
use rmqtt::types::{
    AllRelationsMap, HashMap, Id, NodeId, Route, SubRelationsMap, SubsSearchParams, SubsSearchResult,
    SubscriptioRelationsCollectorMap, SubscriptionOptions, TopicName,
};
use rmqtt::utils::Counter;
use tokio::sync::Mutex;

/// rmqtt's [`DefaultRouter`] with matching by lookup; everything else is delegated.
pub(crate) struct FleetRouter {
    inner: DefaultRouter,
    /// The subscribed wildcard filters. Read on every match (a std lock, never held across an
    /// `.await`).
    wildcards: RwLock<WildcardIndex>,
    /// Serialises wildcard subscription changes, so that the index changes together with the
    /// inner router's table. Wildcard subscriptions come and go with sessions, not messages.
    changing: Mutex<()>,
}

/// Whether an MQTT topic filter level is a wildcard.
fn is_wildcard_level(level: &str) -> bool {
    level == "+" || level == "#"
}

/// Wildcard filters by the number of levels before their first wildcard, then by those
/// levels ([`literal_prefix`]). Hashed with rmqtt's aHash: keys are topics, hashed per message.
type WildcardIndex = Vec<HashMap<String, Vec<String>>>;

/// How many levels `filter` has before its first wildcard, and those levels joined by `/`
/// (`(0, "")` when it starts with one): where it is indexed. `None` without a wildcard.
fn literal_prefix(filter: &str) -> Option<(usize, &str)> {
    let mut start: usize = 0;
    for (depth, level) in filter.split('/').enumerate() {
        if is_wildcard_level(level) {
            return Some((depth, &filter[..start.saturating_sub(1)]));
        }
        start += level.len() + 1;
    }
    None
}

/// The first `d` levels of `topic` for d = 0, 1, … up to all of them (`a/#` matches `a`): the
/// keys at depth d under which filters that may match `topic` are indexed.
fn topic_prefixes(topic: &str) -> impl Iterator<Item = &str> {
    let cuts = topic.match_indices('/').map(|(i, _)| i);
    std::iter::once(0).chain(cuts).chain(std::iter::once(topic.len())).map(|end| &topic[..end])
}

/// MQTT topic matching (3.1.1 §4.7): `+` is one level, a trailing `#` any number including
/// none, and topics starting with `$` are not matched by filters starting with a wildcard.
fn filter_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.split('/').next().is_some_and(is_wildcard_level) {
        return false;
    }
    let (mut f, mut t) = (filter.split('/'), topic.split('/'));
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) if fl == tl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// The filters of a wildcard index that match `topic`, each once.
fn matching_filters<'a>(index: &'a WildcardIndex, topic: &'a str) -> impl Iterator<Item = &'a str> {
    index
        .iter()
        .zip(topic_prefixes(topic))
        .filter(|(by_prefix, _)| !by_prefix.is_empty())
        .flat_map(|(by_prefix, prefix)| {
            by_prefix.get(prefix).into_iter().flatten().map(move |filter| (filter.as_str(), prefix.len()))
        })
        // A filter indexed under a prefix starts with the topic's own levels up to there, so
        // only the rest is compared (for a device's `.../cbor/+`, the last level). At depth 0
        // the prefix is empty and the whole filter is compared, with its `$` rule.
        .filter(move |(filter, same)| filter_matches(&filter[*same..], &topic[*same..]))
        .map(|(filter, _)| filter)
}

impl FleetRouter {
    pub(crate) fn new(scx: ServerContext) -> FleetRouter {
        FleetRouter {
            inner: DefaultRouter::new(Some(scx)),
            wildcards: RwLock::default(),
            changing: Mutex::default(),
        }
    }

    /// The subscriptions matching `topic`, as rmqtt's router collects them (rmqtt is built
    /// without shared subscriptions, so every relation is delivered).
    fn collect(&self, this_id: &Id, topic: &TopicName) -> SubRelationsMap {
        let relations = &self.inner.relations;
        let mut collector = SubscriptioRelationsCollectorMap::default();
        let mut add = |filter: &str| {
            let Some(rels) = relations.get(filter) else { return };
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
        };
        add(topic);
        let wildcards = self.wildcards.read().unwrap_or_else(|p| p.into_inner());
        matching_filters(&wildcards, topic).for_each(add);
        collector.into_iter().map(|(node, c)| (node, c.into())).collect()
    }
}

#[async_trait]
impl Router for FleetRouter {
    async fn add(&self, topic_filter: &str, id: Id, opts: SubscriptionOptions) -> Result<()> {
        let Some((depth, prefix)) = literal_prefix(topic_filter) else {
            return self.inner.add(topic_filter, id, opts).await;
        };
        let _changing = self.changing.lock().await;
        self.inner.add(topic_filter, id, opts).await?;
        let mut wildcards = self.wildcards.write().unwrap_or_else(|p| p.into_inner());
        if wildcards.len() <= depth {
            wildcards.resize_with(depth + 1, HashMap::default);
        }
        let filters = wildcards[depth].entry(prefix.to_owned()).or_default();
        if !filters.iter().any(|f| f == topic_filter) {
            filters.push(topic_filter.to_owned());
        }
        Ok(())
    }

    async fn remove(&self, topic_filter: &str, id: Id) -> Result<bool> {
        let Some((depth, prefix)) = literal_prefix(topic_filter) else {
            return self.inner.remove(topic_filter, id).await;
        };
        let _changing = self.changing.lock().await;
        let removed = self.inner.remove(topic_filter, id).await?;
        if !self.inner.relations.contains_key(topic_filter) {
            let mut wildcards = self.wildcards.write().unwrap_or_else(|p| p.into_inner());
            if let Some(by_prefix) = wildcards.get_mut(depth)
                && let Some(filters) = by_prefix.get_mut(prefix)
            {
                filters.retain(|f| f != topic_filter);
                if filters.is_empty() {
                    by_prefix.remove(prefix);
                }
            }
        }
        Ok(removed)
    }

    async fn matches(&self, id: Id, topic: &TopicName) -> Result<SubRelationsMap> {
        Ok(self.collect(&id, topic))
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
    use std::collections::BTreeSet;
    use std::str::FromStr;

    use proptest::prelude::*;
    use rmqtt::topic::Topic;
    use rmqtt::trie::TopicTree;

    use super::*;

    #[test]
    fn filters_are_indexed_by_their_levels_before_the_first_wildcard() {
        assert_eq!(
            literal_prefix("$aws/things/dev-1/defender/metrics/cbor/+"),
            Some((6, "$aws/things/dev-1/defender/metrics/cbor"))
        );
        assert_eq!(literal_prefix("a/+/b/#"), Some((1, "a")));
        assert_eq!(literal_prefix("#"), Some((0, "")));
        assert_eq!(literal_prefix("+/a"), Some((0, "")));
        assert_eq!(literal_prefix("/+"), Some((1, "")));
        assert_eq!(literal_prefix("a/b"), None);
        assert_eq!(topic_prefixes("a/b/c").collect::<Vec<_>>(), ["", "a", "a/b", "a/b/c"]);
        assert_eq!(topic_prefixes("/a").collect::<Vec<_>>(), ["", "", "/a"]);
    }

    #[test]
    fn dollar_topics_are_not_matched_by_filters_starting_with_a_wildcard() {
        assert!(filter_matches("$aws/things/+/x", "$aws/things/dev-1/x"));
        assert!(!filter_matches("+/things/dev-1/x", "$aws/things/dev-1/x"));
        assert!(!filter_matches("#", "$aws/things/dev-1/x"));
        assert!(filter_matches("#", "aws/things"));
        assert!(filter_matches("a/#", "a"));
        assert!(!filter_matches("a/+", "a"));
    }

    /// A topic or filter of one to four levels from a small alphabet (so that they often
    /// match), `+` anywhere and `#` last in filters.
    fn levels(wildcards: bool) -> impl Strategy<Value = String> {
        let level = if wildcards {
            prop::sample::select(vec!["a", "b", "$s", "", "+"]).boxed()
        } else {
            prop::sample::select(vec!["a", "b", "$s", ""]).boxed()
        };
        (prop::collection::vec(level, 1..4), any::<bool>()).prop_map(move |(levels, hash)| {
            let mut s = levels.join("/");
            if wildcards && hash {
                s.push_str("/#");
            }
            s
        })
    }

    proptest! {
        /// The index finds exactly the filters rmqtt's topic trie matches, each once.
        #[test]
        fn wildcard_index_matches_like_rmqtts_trie(
            filters in prop::collection::btree_set(levels(true), 0..12),
            topic in levels(false),
        ) {
            let mut trie = TopicTree::<String>::default();
            let mut index = WildcardIndex::new();
            // Filters rmqtt cannot parse (`$` past the first level) are refused at SUBSCRIBE,
            // before they reach a router, and such topics match no subscription.
            let parses = |s: &str| Topic::from_str(s).ok();
            for filter in filters.iter().filter(|f| literal_prefix(f).is_some()) {
                let Some(parsed) = parses(filter) else { continue };
                trie.insert(&parsed, filter.clone());
                let (depth, prefix) = literal_prefix(filter).unwrap();
                if index.len() <= depth {
                    index.resize_with(depth + 1, HashMap::default);
                }
                index[depth].entry(prefix.to_owned()).or_default().push(filter.clone());
            }
            let Some(parsed) = parses(&topic) else { return Ok(()) };
            let expected: BTreeSet<String> =
                trie.matches(&parsed).iter().flat_map(|(_, values)| values.into_iter().cloned()).collect();
            let found: Vec<&str> = matching_filters(&index, &topic).collect();
            let unique: BTreeSet<String> = found.iter().map(|f| f.to_string()).collect();
            prop_assert_eq!(found.len(), unique.len(), "a filter found twice: {:?}", found);
            prop_assert_eq!(unique, expected);
        }
    }
}
