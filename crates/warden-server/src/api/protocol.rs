//! The AWS rest-json protocol as the handlers see it: the one error type ([`ApiError`], AWS's
//! error shape), the extractors for URI labels ([`Name`]), query strings ([`Query`]) and JSON
//! bodies ([`Json`]), pagination ([`Paging`]), timestamps and the JSON reply.
//!
//! Inputs are parsed here by hand rather than with axum's `Query`/`Json` so that every rejection,
//! down to a malformed percent-escape, reaches the client as `x-amzn-ErrorType` plus
//! `{"message"}` naming the offending field, which is what botocore turns into a `ClientError`.
//! Inputs Warden does not support (thing types, tags, ...) are refused rather than ignored: a
//! caller who asked for them must not believe they took effect.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use warden_store::{MAX_PAGE_SIZE, Page, PageRequest, StoreError};

use crate::state::Arns;

/// The header botocore reads the error code from (rest-json).
pub const ERROR_TYPE_HEADER: &str = "x-amzn-errortype";

/// An error in AWS's rest-json shape: an HTTP status, the code in `x-amzn-ErrorType`, and a
/// JSON body `{"message": ...}` (plus `resourceId`/`resourceArn` for
/// `ResourceAlreadyExistsException`, as AWS sends them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    resource_id: Option<String>,
    resource_arn: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), resource_id: None, resource_arn: None }
    }

    /// `InvalidRequestException` (400): the request itself is wrong.
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "InvalidRequestException", message)
    }

    /// `ResourceNotFoundException` (404).
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "ResourceNotFoundException", message)
    }

    /// Adds the ARN AWS reports with `ResourceAlreadyExistsException`; the store knows names,
    /// not ARNs, so the handler that created the resource supplies it. Other errors pass through.
    pub fn with_arn(mut self, arn: String) -> Self {
        if self.code == "ResourceAlreadyExistsException" {
            self.resource_arn = Some(arn);
        }
        self
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { .. } => ApiError::not_found(e.to_string()),
            StoreError::AlreadyExists { ref name, .. } => ApiError {
                resource_id: Some(name.clone()),
                ..ApiError::new(StatusCode::CONFLICT, "ResourceAlreadyExistsException", e.to_string())
            },
            StoreError::VersionConflict { .. } => {
                ApiError::new(StatusCode::CONFLICT, "VersionConflictException", e.to_string())
            }
            StoreError::Conflict(message) => {
                ApiError::new(StatusCode::CONFLICT, "DeleteConflictException", message)
            }
            StoreError::InvalidState(message) => {
                ApiError::new(StatusCode::NOT_ACCEPTABLE, "CertificateStateException", message)
            }
            StoreError::Invalid(message) => ApiError::invalid(message),
            StoreError::Database(message) => {
                // The details are for the operator, not the caller.
                tracing::error!(error = %message, "store failure while serving an API request");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalFailureException",
                    "internal failure; the server log has the details",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "message": self.message });
        if let Some(id) = self.resource_id {
            body["resourceId"] = Value::String(id);
        }
        if let Some(arn) = self.resource_arn {
            body["resourceArn"] = Value::String(arn);
        }
        let mut response = (self.status, json_body(&body)).into_response();
        response.headers_mut().insert(ERROR_TYPE_HEADER, HeaderValue::from_static(self.code));
        response
    }
}

/// What every handler returns.
pub type ApiResult = Result<Response, ApiError>;

/// A 200 reply with a JSON body.
pub fn reply(body: Value) -> ApiResult {
    Ok((StatusCode::OK, json_body(&body)).into_response())
}

/// The reply of operations whose AWS output shape is empty.
pub fn empty() -> ApiResult {
    reply(json!({}))
}

fn json_body(body: &Value) -> ([(header::HeaderName, HeaderValue); 1], String) {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body.to_string())
}

/// A store time (milliseconds) as rest-json sends timestamps in bodies: epoch seconds, a JSON
/// number that may be fractional.
pub fn epoch_seconds(ms: i64) -> Value {
    json!(ms as f64 / 1000.0)
}

/// The URI label of a route with one label (`/things/{thingName}`), percent-decoded.
#[derive(Debug, Clone)]
pub struct Name(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Name {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(name)) => Ok(Name(name)),
            Err(e) => Err(ApiError::invalid(format!("request path: {}", e.body_text()))),
        }
    }
}

/// A request's query parameters, percent-decoded. Handlers take the members they know, then
/// [`Query::finish`] refuses any left over, so that a filter Warden does not implement is an
/// error rather than silently ignored.
#[derive(Debug, Default)]
pub struct Query(BTreeMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Query::parse(parts.uri.query().unwrap_or(""))
    }
}

impl Query {
    /// Parses a raw query string. botocore encodes a space as `%20` and `+` as `%2B`, so `+`
    /// is taken literally.
    pub fn parse(raw: &str) -> Result<Query, ApiError> {
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| ApiError::invalid(format!("query parameter {s:?} is not UTF-8 once decoded")))
        };
        let mut params = BTreeMap::new();
        for pair in raw.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = decode(key)?;
            if params.insert(key.clone(), decode(value)?).is_some() {
                return Err(ApiError::invalid(format!("query parameter {key} is given more than once")));
            }
        }
        Ok(Query(params))
    }

    /// An optional string parameter.
    pub fn take(&mut self, key: &str) -> Option<String> {
        self.0.remove(key)
    }

    /// A required string parameter.
    pub fn required(&mut self, key: &str) -> Result<String, ApiError> {
        self.take(key).ok_or_else(|| ApiError::invalid(format!("{key} is required")))
    }

    /// An optional boolean, spelled `true` or `false` as botocore sends it.
    pub fn bool(&mut self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.take(key).as_deref() {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(other) => Err(ApiError::invalid(format!("{key} must be true or false, not {other:?}"))),
        }
    }

    /// An optional unsigned integer (versions, page sizes).
    pub fn u64(&mut self, key: &str) -> Result<Option<u64>, ApiError> {
        self.take(key)
            .map(|v| {
                v.parse().map_err(|_| ApiError::invalid(format!("{key} must be a whole number, not {v:?}")))
            })
            .transpose()
    }

    /// A required timestamp: ISO 8601 as botocore sends it in query strings, or epoch seconds.
    pub fn timestamp_ms(&mut self, key: &str) -> Result<i64, ApiError> {
        let value = self.required(key)?;
        parse_timestamp_ms(&value).ok_or_else(|| {
            ApiError::invalid(format!(
                "{key} must be an ISO 8601 time such as 2026-11-27T10:00:00Z, or epoch seconds; got {value:?}"
            ))
        })
    }

    /// Refuses the parameters no handler took.
    pub fn finish(self) -> Result<(), ApiError> {
        match self.0.keys().next() {
            None => Ok(()),
            Some(key) => Err(ApiError::invalid(format!("query parameter {key} is not supported"))),
        }
    }
}

/// A JSON request body, deserialized into `T`. An empty body reads as `{}`, since botocore sends
/// none when no body member is set. Put `#[serde(deny_unknown_fields)]` on `T`: members Warden
/// does not support are then refused with a message naming them.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::invalid(format!("request body: {}", e.body_text())))?;
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &bytes };
        serde_json::from_slice(bytes).map(Json).map_err(|e| ApiError::invalid(format!("request body: {e}")))
    }
}

/// The two pagination dialects of the AWS IoT API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageStyle {
    /// `maxResults` and `nextToken` in, `nextToken` out (things, groups, principals, metrics).
    Token,
    /// `pageSize` and `marker` in, `nextMarker` out (certificates and policies).
    Marker,
}

/// The page size when the caller gives none: AWS documents 25 for `ListCertificates`; the other
/// lists use the same.
pub const DEFAULT_PAGE_SIZE: usize = 25;

/// Pagination of one list request: reads the page parameters and shapes the reply.
#[derive(Debug)]
pub struct Paging {
    style: PageStyle,
    pub request: PageRequest,
}

impl Paging {
    pub fn from_query(query: &mut Query, style: PageStyle) -> Result<Paging, ApiError> {
        let (size_key, token_key) = match style {
            PageStyle::Token => ("maxResults", "nextToken"),
            PageStyle::Marker => ("pageSize", "marker"),
        };
        let bad_size = || ApiError::invalid(format!("{size_key} must be between 1 and {MAX_PAGE_SIZE}"));
        let max_results = match query.u64(size_key).map_err(|_| bad_size())? {
            None => DEFAULT_PAGE_SIZE,
            Some(n) => {
                usize::try_from(n).ok().filter(|n| (1..=MAX_PAGE_SIZE).contains(n)).ok_or_else(bad_size)?
            }
        };
        let next_token = query.take(token_key);
        if next_token.as_deref() == Some("") {
            return Err(ApiError::invalid(format!("{token_key} must not be empty")));
        }
        Ok(Paging { style, request: PageRequest { max_results, next_token } })
    }

    /// The reply: the items under `key`, and the token of the next page if there is one.
    pub fn reply<T>(&self, key: &str, page: Page<T>, item: impl FnMut(T) -> Value) -> ApiResult {
        let items: Vec<Value> = page.items.into_iter().map(item).collect();
        let mut body = json!({ key: items });
        if let Some(token) = page.next_token {
            let token_key = match self.style {
                PageStyle::Token => "nextToken",
                PageStyle::Marker => "nextMarker",
            };
            body[token_key] = Value::String(token);
        }
        reply(body)
    }
}

/// One page of names already in memory and sorted, for the lists the store cannot page (such as
/// the policies a thing group inherits). Its tokens have the store's form (the last key in hex).
pub fn page_in_memory(names: Vec<String>, request: &PageRequest) -> Result<Page<String>, ApiError> {
    let after = match &request.next_token {
        None => None,
        Some(token) => Some(
            hex::decode(token)
                .ok()
                .and_then(|key| String::from_utf8(key).ok())
                .ok_or_else(|| ApiError::invalid("malformed page token"))?,
        ),
    };
    let mut items: Vec<String> = names.into_iter().filter(|n| after.as_ref().is_none_or(|a| n > a)).collect();
    let mut next_token = None;
    if items.len() > request.max_results {
        items.truncate(request.max_results);
        next_token = items.last().map(hex::encode);
    }
    Ok(Page { items, next_token })
}

/// The resource part of one of our ARNs of kind `kind` (`thing`, `thinggroup`, `cert`, ...):
/// `arn:aws:iot:{region}:{account}:{kind}/{resource}` gives `resource`. `None` for anything
/// else, including ARNs of other regions or accounts, which name nothing Warden holds.
pub fn arn_resource<'a>(arns: &Arns, arn: &'a str, kind: &str) -> Option<&'a str> {
    arn.strip_prefix(arns.prefix())?.strip_prefix(kind)?.strip_prefix('/').filter(|r| !r.is_empty())
}

/// Checks a thing or thing group name against AWS's `[a-zA-Z0-9:_-]{1,128}`.
pub fn check_name(field: &str, name: &str) -> Result<(), ApiError> {
    if warden_wire::is_valid_thing_name(name) {
        Ok(())
    } else {
        Err(ApiError::invalid(format!("{field} {name:?} must be 1 to 128 characters of [a-zA-Z0-9:_-]")))
    }
}

/// Parses `2026-11-27T10:00:00Z`, `2026-11-27T10:00:00.123456Z`, `...+02:00`, or epoch seconds
/// (`1795773600`, `1795773600.5`), into milliseconds since the epoch. A fraction finer than a
/// millisecond rounds up, so that an inclusive start never takes in a datapoint before it (in an
/// ISO time, digits past the nanosecond are ignored). A leap second, `23:59:60` UTC, is only taken
/// on the last day of a month, and reads as the midnight after it.
pub fn parse_timestamp_ms(s: &str) -> Option<i64> {
    if s.bytes().next().is_some_and(|b| b.is_ascii_digit()) && !s.contains('-') {
        let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
        if !secs.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let secs: i64 = secs.parse().ok()?;
        return secs.checked_mul(1000)?.checked_add(fraction_ms(frac)?);
    }
    // RFC 3339 lets the date and the time be separated by any character, and `time` takes any;
    // ISO 8601, which AWS documents, has only `T`.
    if !matches!(s.as_bytes().get(10), Some(b'T' | b't')) {
        return None;
    }
    let time = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    Some(time.unix_timestamp() * 1000 + i64::from(time.nanosecond().div_ceil(1_000_000)))
}

/// Milliseconds in a decimal fraction of a second, rounded up.
fn fraction_ms(frac: &str) -> Option<i64> {
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut ms = 0;
    for i in 0..3 {
        ms = ms * 10 + frac.as_bytes().get(i).map_or(0, |d| i64::from(d - b'0'));
    }
    let finer = frac.bytes().skip(3).any(|d| d != b'0');
    Some(ms + i64::from(finer))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use time::macros::format_description;

    use super::*;

    proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC{0,40}", t in "[0-9TZ:.+-]{0,32}") {
            let _ = parse_timestamp_ms(&s);
            let _ = parse_timestamp_ms(&t);
            let _ = Query::parse(&s);
        }

        #[test]
        fn iso_timestamps_round_trip(secs in 0i64..253_402_300_800, ms in 0i64..1000) {
            let time = OffsetDateTime::from_unix_timestamp(secs).unwrap();
            let text = format!(
                "{}.{ms:03}Z",
                time.format(format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]")).unwrap()
            );
            prop_assert_eq!(parse_timestamp_ms(&text), Some(secs * 1000 + ms));
        }
    }

    #[test]
    fn timestamps_in_the_forms_botocore_and_people_send() {
        let t = 1_795_773_600_000; // 2026-11-27T10:00:00Z
        for (text, ms) in [
            ("2026-11-27T10:00:00Z", Some(t)),
            ("2026-11-27T10:00:00.250000Z", Some(t + 250)),
            ("2026-11-27T10:00:00.123Z", Some(t + 123)),
            ("2026-11-27T10:00:00.0001Z", Some(t + 1)),
            ("2026-11-27T12:00:00+02:00", Some(t)),
            ("2026-11-27T09:30:00-00:30", Some(t)),
            ("1795773600", Some(t)),
            ("1795773600.5", Some(t + 500)),
            ("1970-01-01T00:00:00Z", Some(0)),
            ("2024-02-29T00:00:00Z", Some(1_709_164_800_000)),
            ("2026-02-29T00:00:00Z", None),
            ("2026-11-27T10:00:00", None),
            ("2026-11-27 10:00:00Z", None),
            ("2026-11-27T10:00:00.Z", None),
            ("2026-13-01T00:00:00Z", None),
            ("2026-11-27T24:00:00Z", None),
            ("2026-11-27T10:00:00+2:00", None),
            ("+2026-11-27T10:00:00Z", None),
            ("", None),
            ("1e9", None),
            ("99999999999999999999", None),
            ("2026-11-27T10:00:00Zé", None),
            ("éééé-11-27T10:00:00Z", None),
        ] {
            assert_eq!(parse_timestamp_ms(text), ms, "{text}");
        }
    }

    #[test]
    fn queries_decode_and_refuse_duplicates_and_leftovers() {
        let mut q = Query::parse("a=x%20y&b=1+2&c").unwrap();
        assert_eq!(q.take("a").as_deref(), Some("x y"));
        assert_eq!(q.take("b").as_deref(), Some("1+2"));
        assert_eq!(q.finish().unwrap_err().message, "query parameter c is not supported");
        assert!(Query::parse("a=1&a=2").is_err());
        assert!(Query::parse("a=%ff").is_err());
    }
}
