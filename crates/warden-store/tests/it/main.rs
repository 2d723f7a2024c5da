//! Integration tests of `warden-store` through the `Store` trait, each on a real SQLite file in
//! a temporary directory.

mod alerts;
mod authz_load;
mod certificates;
mod custom_metrics;
mod datapoints;
mod detect_lifecycle;
mod groups;
mod ingest;
mod lifecycle;
mod mitigation;
mod policies;
mod profiles;
mod reports;
mod things;
mod violations;

use std::collections::BTreeMap;
use std::future::Future;

use tempfile::TempDir;
use warden_store::{Page, PageRequest, Result, SqliteStore};

/// 2026-01-01T00:00:00Z.
pub const T0: i64 = 1_767_225_600_000;

/// Asserts that an expression matches a pattern, printing the value if it does not.
#[macro_export]
macro_rules! assert_matches {
    ($value:expr, $pattern:pat $(if $guard:expr)? $(,)?) => {
        match $value {
            $pattern $(if $guard)? => {}
            ref other => panic!("expected {}, got {:?}", stringify!($pattern), other),
        }
    };
}

/// A store in a fresh temporary directory; the directory lives as long as the returned guard.
pub fn open() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open(dir.path().join("warden.db")).expect("open store");
    (dir, store)
}

pub fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

pub fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Follows `next_token` from the first page to the last, checking that no page is empty or
/// larger than asked, and returns all items in order.
pub async fn all_pages<T, F, Fut>(max_results: usize, mut list: F) -> Vec<T>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: Future<Output = Result<Page<T>>>,
{
    let mut request = PageRequest::first(max_results);
    let mut items = Vec::new();
    loop {
        let page = list(request.clone()).await.expect("list page");
        assert!(page.items.len() <= max_results, "page larger than max_results");
        assert!(
            !page.items.is_empty() || (items.is_empty() && page.next_token.is_none()),
            "empty page in the middle of a listing"
        );
        let next = request.after(&page);
        items.extend(page.items);
        match next {
            Some(next) => request = next,
            None => return items,
        }
    }
}

/// A page request with a token that decodes to garbage or does not decode at all.
pub fn bad_page(token: &str) -> PageRequest {
    PageRequest { max_results: 10, next_token: Some(token.to_owned()) }
}

/// The server holds the store as `Arc<dyn Store>`, so the trait must stay object safe.
#[tokio::test]
async fn the_store_works_as_a_trait_object() {
    let (_dir, store) = open();
    let store: std::sync::Arc<dyn warden_store::Store> = std::sync::Arc::new(store);
    store.create_thing("t1", attrs(&[]), T0).await.unwrap();
    assert_eq!(store.describe_thing("t1").await.unwrap().version, 1);
}
