//! Pagination: a page request (size and opaque token) and a page of results.
//!
//! Lists are keyset-paginated: a token is the key of the last item returned, hex-encoded so it
//! is opaque and URL-safe. Keyset pagination stays correct while rows are inserted or deleted
//! between pages, and costs one index seek per page however deep the caller goes.

use crate::error::{Result, StoreError};

/// Every item of a paged listing, read page by page at the largest page size: `list` is called
/// with each page's request until the last page.
pub async fn all_pages<T, F, Fut>(mut list: F) -> Result<Vec<T>>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: std::future::Future<Output = Result<Page<T>>>,
{
    let mut items = Vec::new();
    let mut request = Some(PageRequest::first(MAX_PAGE_SIZE));
    while let Some(current) = request {
        let page = list(current.clone()).await?;
        request = current.after(&page);
        items.extend(page.items);
    }
    Ok(items)
}

/// The largest page any list returns (the AWS `maxResults` limit of the registry APIs).
pub const MAX_PAGE_SIZE: usize = 250;

/// Which page to return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// 1..=250.
    pub max_results: usize,
    /// The `next_token` of the previous page; `None` for the first page.
    pub next_token: Option<String>,
}

impl PageRequest {
    /// The first page, with `max_results` items at most.
    pub fn first(max_results: usize) -> Self {
        PageRequest { max_results, next_token: None }
    }

    /// The page after `page`, or `None` if `page` was the last.
    pub fn after<T>(&self, page: &Page<T>) -> Option<Self> {
        page.next_token
            .as_ref()
            .map(|t| PageRequest { max_results: self.max_results, next_token: Some(t.clone()) })
    }

    /// The page size, checked.
    pub(crate) fn limit(&self) -> Result<usize> {
        if (1..=MAX_PAGE_SIZE).contains(&self.max_results) {
            Ok(self.max_results)
        } else {
            Err(StoreError::invalid(format!(
                "max_results must be between 1 and {MAX_PAGE_SIZE}, not {}",
                self.max_results
            )))
        }
    }

    /// The key the token carries, or `None` for the first page.
    pub(crate) fn cursor(&self) -> Result<Option<String>> {
        self.next_token.as_deref().map(decode_token).transpose()
    }
}

impl Default for PageRequest {
    fn default() -> Self {
        PageRequest::first(MAX_PAGE_SIZE)
    }
}

/// One page of a list; `next_token` is `None` on the last page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_token: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` fetched rows: the extra row only says that there is
    /// another page, so no caller ever fetches a trailing empty page.
    pub(crate) fn from_rows(mut rows: Vec<T>, limit: usize, key: impl Fn(&T) -> String) -> Self {
        let next_token = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|last| encode_token(&key(last)))
        } else {
            None
        };
        Page { items: rows, next_token }
    }

    /// Converts the items, keeping the token.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page { items: self.items.into_iter().map(f).collect(), next_token: self.next_token }
    }
}

fn encode_token(key: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(key.len() * 2);
    for b in key.bytes() {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

fn decode_token(token: &str) -> Result<String> {
    let bad = || StoreError::invalid("malformed next_token");
    let digits = token.as_bytes();
    if digits.is_empty() || !digits.len().is_multiple_of(2) {
        return Err(bad());
    }
    let nibble = |d: u8| char::from(d).to_digit(16).and_then(|v| u8::try_from(v).ok());
    let bytes = digits
        .chunks_exact(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(bad)?;
    String::from_utf8(bytes).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for key in ["a", "thing-1", "1700000000000:42", "ü"] {
            assert_eq!(decode_token(&encode_token(key)).unwrap(), key);
        }
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for token in ["", "a", "zz", "0g", "c3"] {
            assert!(matches!(decode_token(token), Err(StoreError::Invalid(_))), "{token}");
        }
    }
}
