//! Verification of AWS Signature Version 4 on incoming REST requests, so that `boto3` and the
//! `aws` CLI, pointed at Warden with `endpoint_url`, authenticate with configured access keys.
//!
//! This module is pure: it sees a request as plain data ([`SignedRequest`]), the secret for an
//! access key through a lookup function, and the time as an argument. [`verify`] checks, in order:
//! the `Authorization` header (algorithm `AWS4-HMAC-SHA256`, `Credential`, `SignedHeaders`,
//! `Signature`), the `x-amz-date` header, the credential scope (its date is the request's date,
//! the service is `iot`, the terminator `aws4_request`, the region is the configured one if any),
//! that the request time is within 15 minutes of `now` either way (AWS's rule, which bounds
//! replays), that `x-amz-content-sha256`, when sent, is the hash of the body, that the access key
//! is known, and finally the signature, compared in constant time. It returns the access key id.
//!
//! The canonical request is the one botocore builds for a rest-json service such as `iot`
//! (`SigV4Auth.canonical_request` in `botocore/auth.py`); the test vectors in `sigv4_vectors/`
//! are requests botocore sent to a recording server. What botocore does, and so what we do:
//!
//! - **Path.** botocore percent-encodes each URI label once when it builds the URL (everything but
//!   `A-Za-z0-9-._~`; greedy labels also keep `/`), and signs
//!   `quote(remove_dot_segments(path), safe='/~')`: the *already encoded* path is encoded again,
//!   so `/things/a%24b` is signed as `/things/a%2524b` (the "double encoding" of non-S3
//!   services). The server receives the once-encoded path, so the canonical URI is the raw path
//!   encoded once more. botocore signs the path with `.` and `..` segments resolved and empty
//!   segments removed, but sends it unchanged; Warden refuses such paths instead of normalizing
//!   them, so that one signature never stands for two different paths.
//! - **Query.** botocore encodes query keys and values (everything but `A-Za-z0-9-._~`; a space
//!   is `%20`, never `+`) and signs the raw query string split on `&`, each pair split at its
//!   first `=`, sorted by key then value, without decoding or re-encoding. So the canonical query
//!   is built from the raw query as received, which also binds its exact bytes. A key without
//!   `=` is signed as `key=`; an empty `?` is not sent.
//! - **Headers.** botocore signs every header the request has when it is signed, except a few
//!   hop-by-hop ones and `User-Agent`: for `iot` that is `host`, `x-amz-date`, `content-type` when
//!   there is a body, and the members bound to headers (`x-amzn-principal`). Headers added after
//!   signing (`amz-sdk-invocation-id`, `amz-sdk-request`, urllib3's `Accept-Encoding` and
//!   `Content-Length`) are not in `SignedHeaders` and are ignored. Names are lower-cased and
//!   sorted; each value has its whitespace runs collapsed to one space and is trimmed (Python's
//!   `' '.join(value.split())`), and repeated lines of one header are joined with `,` (urllib3
//!   only sends the last one, so boto3 never does this).
//! - **Payload.** For `iot` botocore sends no `x-amz-content-sha256` and signs the SHA-256 of the
//!   body (of nothing, for a GET). When the header is present its value is signed instead, so it
//!   must equal the body's hash: an unsigned or streaming payload is refused.
//! - **Date.** botocore sends `x-amz-date` unless the caller set a `Date` header; Warden only
//!   accepts `x-amz-date`. Temporary credentials (`x-amz-security-token`) and presigned URLs are
//!   refused, since Warden only has long-term access keys.
//!
//! The region is not a secret and boto3 users with an `endpoint_url` often keep whatever region
//! their profile names, so [`verify`] takes the region as an option: `None` accepts any region
//! (the signature still covers it), `Some` requires that one.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use ring::{digest, hmac};
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

/// The only signing algorithm accepted, as it opens the `Authorization` header.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The service name in the credential scope: the signing name of the AWS IoT API.
pub const SERVICE: &str = "iot";

/// How far, in seconds, the request time may be from the server's time, either way (AWS's rule).
pub const MAX_SKEW_SECS: u64 = 15 * 60;

/// The bytes `quote(path, safe='/~')` encodes: all but ASCII letters and digits, `-._~` and `/`.
const PATH: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b'/');

/// The bytes botocore's `percent_encode` encodes in URI labels and query keys and values: `/` too.
const COMPONENT: &AsciiSet = &PATH.add(b'/');

/// Headers botocore never signs (`SIGNED_HEADERS_BLACKLIST`, and `authorization`, which it removes
/// before signing); [`sign`] skips them too.
const UNSIGNED_HEADERS: &[&str] = &[
    "authorization",
    "baggage",
    "connection",
    "expect",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "traceparent",
    "tracestate",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "x-amzn-trace-id",
];

/// A long-term access key, as configured.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for Credentials {
    // The secret never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// An HTTP request as received, before any decoding.
///
/// - `path` and `query` are the request target's raw, percent-encoded parts, split at the first
///   `?` (`query` is `None` without one).
/// - `headers` are the header lines in the order received, repeated names included. botocore
///   sends header values as UTF-8 bytes and signs them as text, so a value is its bytes read as
///   UTF-8 (`std::str::from_utf8(value.as_bytes())`, since `HeaderValue::to_str` refuses anything
///   but visible ASCII); a value that is not UTF-8 can only be refused. With HTTP/2 the caller
///   adds `host` from the `:authority` pseudo-header.
/// - `body` is the whole body; the caller bounds its size.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

/// Why a request's signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigV4Error {
    /// A required header or `Authorization` component is absent.
    #[error("missing {0}")]
    Missing(&'static str),
    /// The request or its `Authorization` header does not have the expected syntax.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// A valid SigV4 feature Warden does not accept (another algorithm, presigned URLs,
    /// temporary credentials, unsigned payloads).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The credential scope names another date, region or service than the request.
    #[error("credential scope: {0}")]
    BadScope(String),
    /// The request time is more than [`MAX_SKEW_SECS`] away from the server's time.
    #[error(
        "signature expired: the request time {} is more than 15 minutes away from the server time {}",
        show_time(i128::from(*request_time)),
        show_time(i128::from(*now))
    )]
    Expired { request_time: i64, now: u64 },
    /// `x-amz-content-sha256` is not the SHA-256 of the body.
    #[error("x-amz-content-sha256 does not match the body")]
    PayloadHashMismatch,
    /// A header listed in `SignedHeaders` is not in the request.
    #[error("signed header {0:?} is not in the request")]
    SignedHeaderAbsent(String),
    /// No secret is configured for this access key id.
    #[error("unknown access key id {0:?}")]
    UnknownAccessKey(String),
    /// The signature is not the one the secret gives for this request.
    #[error("the request signature does not match the signature Warden calculated")]
    SignatureMismatch,
}

impl SigV4Error {
    /// The error code AWS returns for this kind of failure (`__type` in a rest-json error body).
    pub fn aws_code(&self) -> &'static str {
        match self {
            SigV4Error::Missing("Authorization header") => "MissingAuthenticationTokenException",
            SigV4Error::Missing(_) | SigV4Error::Malformed(_) | SigV4Error::Unsupported(_) => {
                "IncompleteSignatureException"
            }
            SigV4Error::UnknownAccessKey(_) => "UnrecognizedClientException",
            SigV4Error::BadScope(_)
            | SigV4Error::Expired { .. }
            | SigV4Error::PayloadHashMismatch
            | SigV4Error::SignedHeaderAbsent(_)
            | SigV4Error::SignatureMismatch => "InvalidSignatureException",
        }
    }

    /// The HTTP status AWS pairs with [`SigV4Error::aws_code`].
    pub fn http_status(&self) -> u16 {
        match self.aws_code() {
            "IncompleteSignatureException" => 400,
            _ => 403,
        }
    }
}

/// Verifies a SigV4-signed request and returns its access key id.
///
/// `secret_for` gives the secret access key of an access key id, `region` is the region the
/// credential scope must name (`None`: any), `now_unix_secs` the server's time. See the module
/// documentation for what is checked.
pub fn verify(
    req: &SignedRequest<'_>,
    secret_for: impl Fn(&str) -> Option<String>,
    region: Option<&str>,
    now_unix_secs: u64,
) -> Result<String, SigV4Error> {
    let Some(authorization) = single_header(req.headers, "authorization")? else {
        if req.query.is_some_and(|q| q.split('&').any(|p| p.starts_with("X-Amz-Signature="))) {
            return Err(unsupported("presigned URLs (query string authentication)"));
        }
        return Err(SigV4Error::Missing("Authorization header"));
    };
    let auth = Authorization::parse(authorization)?;

    let date = single_header(req.headers, "x-amz-date")?.ok_or(SigV4Error::Missing("x-amz-date header"))?;
    let request_time = parse_amz_date(date)?;
    let scope = &auth.scope;
    if scope.date != &date[..8] {
        return Err(SigV4Error::BadScope(format!(
            "date {} is not the date of x-amz-date {date}",
            scope.date
        )));
    }
    if scope.service != SERVICE {
        return Err(SigV4Error::BadScope(format!("service {:?} is not {SERVICE:?}", scope.service)));
    }
    if let Some(region) = region
        && scope.region != region
    {
        return Err(SigV4Error::BadScope(format!("region {:?} is not {region:?}", scope.region)));
    }
    for required in ["host", "x-amz-date"] {
        if !auth.signed_headers.contains(&required) {
            return Err(malformed(format!("SignedHeaders must include {required}")));
        }
    }

    if i128::from(request_time).abs_diff(i128::from(now_unix_secs)) > u128::from(MAX_SKEW_SECS) {
        return Err(SigV4Error::Expired { request_time, now: now_unix_secs });
    }

    if single_header(req.headers, "x-amz-security-token")?.is_some() {
        return Err(unsupported("temporary credentials (x-amz-security-token)"));
    }
    let payload_hash = payload_hash(req)?;

    let secret = secret_for(scope.access_key_id)
        .ok_or_else(|| SigV4Error::UnknownAccessKey(scope.access_key_id.to_owned()))?;
    let canonical = canonical_request(req, &auth.signed_headers, &payload_hash)?;
    let string_to_sign = string_to_sign(date, scope, &canonical);
    let key = signing_key(&secret, scope.date, scope.region);
    hmac::verify(&key, string_to_sign.as_bytes(), &auth.signature)
        .map_err(|_| SigV4Error::SignatureMismatch)?;
    Ok(scope.access_key_id.to_owned())
}

/// The headers [`sign`] adds to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub x_amz_date: String,
    pub authorization: String,
}

/// Signs a request as botocore would, for service `iot`: every header of `req` is signed except
/// the ones botocore leaves out (such as `user-agent`), plus the `x-amz-date` returned.
///
/// `req` must have a `host` header and neither `authorization` nor `x-amz-date`. This is for tests
/// and tools that call Warden; the server only verifies.
pub fn sign(
    req: &SignedRequest<'_>,
    credentials: &Credentials,
    region: &str,
    now_unix_secs: u64,
) -> Result<Signature, SigV4Error> {
    for name in ["authorization", "x-amz-date"] {
        if header_values(req.headers, name).next().is_some() {
            return Err(malformed(format!("a request to sign must not have {name}")));
        }
    }
    let date = i64::try_from(now_unix_secs).ok().and_then(amz_date).ok_or_else(|| {
        unsupported(format!("signing at {now_unix_secs} (epoch seconds), after the year 9999"))
    })?;
    let mut headers = req.headers.to_vec();
    headers.push(("x-amz-date", &date));
    let req = SignedRequest { headers: &headers, ..*req };

    let mut names: Vec<String> = headers
        .iter()
        .map(|(name, _)| name.to_ascii_lowercase())
        .filter(|name| !UNSIGNED_HEADERS.contains(&name.as_str()))
        .collect();
    names.sort_unstable();
    names.dedup();
    if !names.iter().any(|n| n == "host") {
        return Err(SigV4Error::Missing("host header"));
    }
    let names: Vec<&str> = names.iter().map(String::as_str).collect();

    let scope =
        Scope { access_key_id: &credentials.access_key_id, date: &date[..8], region, service: SERVICE };
    let payload_hash = payload_hash(&req)?;
    let canonical = canonical_request(&req, &names, &payload_hash)?;
    let string_to_sign = string_to_sign(&date, &scope, &canonical);
    let key = signing_key(&credentials.secret_access_key, scope.date, region);
    let tag = hmac::sign(&key, string_to_sign.as_bytes());
    let authorization = format!(
        "{ALGORITHM} Credential={}/{}/{}/{}/aws4_request, SignedHeaders={}, Signature={}",
        scope.access_key_id,
        scope.date,
        scope.region,
        scope.service,
        names.join(";"),
        hex::encode(tag.as_ref())
    );
    Ok(Signature { x_amz_date: date, authorization })
}

/// Percent-encodes a URI label or a query key or value the way botocore does before sending it,
/// so that callers of [`sign`] build the request target boto3 would.
pub fn encode_component(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

/// The parsed `Authorization` header.
#[derive(Debug)]
struct Authorization<'a> {
    scope: Scope<'a>,
    /// Lower-case, strictly sorted, as the client listed them.
    signed_headers: Vec<&'a str>,
    signature: Vec<u8>,
}

/// `Credential=AKID/DATE/REGION/SERVICE/aws4_request`.
#[derive(Debug)]
struct Scope<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
}

impl<'a> Authorization<'a> {
    fn parse(header: &'a str) -> Result<Authorization<'a>, SigV4Error> {
        let (algorithm, params) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
        if algorithm != ALGORITHM {
            return Err(unsupported(format!("authorization scheme {algorithm:?}, expected {ALGORITHM}")));
        }
        let (mut credential, mut signed_headers, mut signature) = (None, None, None);
        for param in params.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = param
                .split_once('=')
                .ok_or_else(|| malformed(format!("Authorization component {param:?} has no '='")))?;
            let slot = match key {
                "Credential" => &mut credential,
                "SignedHeaders" => &mut signed_headers,
                "Signature" => &mut signature,
                _ => return Err(malformed(format!("unknown Authorization component {key:?}"))),
            };
            if slot.replace(value).is_some() {
                return Err(malformed(format!("Authorization component {key} appears twice")));
            }
        }
        let credential = credential.ok_or(SigV4Error::Missing("Credential in the Authorization header"))?;
        let signed_headers =
            signed_headers.ok_or(SigV4Error::Missing("SignedHeaders in the Authorization header"))?;
        let signature = signature.ok_or(SigV4Error::Missing("Signature in the Authorization header"))?;
        Ok(Authorization {
            scope: Scope::parse(credential)?,
            signed_headers: parse_signed_headers(signed_headers)?,
            signature: parse_signature(signature)?,
        })
    }
}

impl<'a> Scope<'a> {
    fn parse(credential: &'a str) -> Result<Scope<'a>, SigV4Error> {
        let parts: Vec<&str> = credential.split('/').collect();
        let [access_key_id, date, region, service, terminator] = parts[..] else {
            return Err(malformed(format!(
                "Credential {credential:?} is not ACCESS_KEY_ID/YYYYMMDD/REGION/SERVICE/aws4_request"
            )));
        };
        if access_key_id.is_empty() {
            return Err(malformed("Credential has an empty access key id"));
        }
        if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed(format!("Credential date {date:?} is not YYYYMMDD")));
        }
        if region.is_empty() {
            return Err(malformed("Credential has an empty region"));
        }
        if terminator != "aws4_request" {
            return Err(SigV4Error::BadScope(format!("terminator {terminator:?} is not \"aws4_request\"")));
        }
        Ok(Scope { access_key_id, date, region, service })
    }
}

fn parse_signed_headers(list: &str) -> Result<Vec<&str>, SigV4Error> {
    let names: Vec<&str> = list.split(';').collect();
    for name in &names {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && !b.is_ascii_uppercase()) {
            return Err(malformed(format!("SignedHeaders {list:?} has an invalid name {name:?}")));
        }
    }
    if !names.windows(2).all(|w| w[0] < w[1]) {
        return Err(malformed(format!("SignedHeaders {list:?} is not sorted without duplicates")));
    }
    Ok(names)
}

fn parse_signature(signature: &str) -> Result<Vec<u8>, SigV4Error> {
    // botocore sends lower-case hex; one spelling per signature keeps the header unambiguous.
    let lower_hex = signature.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    match hex::decode(signature) {
        Ok(bytes) if lower_hex && bytes.len() == digest::SHA256_OUTPUT_LEN => Ok(bytes),
        _ => Err(malformed(format!("Signature {signature:?} is not 64 lower-case hexadecimal digits"))),
    }
}

/// The hash that ends the canonical request: the body's, or `x-amz-content-sha256` once checked.
fn payload_hash(req: &SignedRequest<'_>) -> Result<String, SigV4Error> {
    let body_hash = hex::encode(digest::digest(&digest::SHA256, req.body));
    match single_header(req.headers, "x-amz-content-sha256")? {
        None => Ok(body_hash),
        Some(value) if value == body_hash => Ok(body_hash),
        Some(value) if value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Err(SigV4Error::PayloadHashMismatch)
        }
        Some(value) if value == "UNSIGNED-PAYLOAD" || value.starts_with("STREAMING-") => {
            Err(unsupported(format!("x-amz-content-sha256 {value}: the payload must be signed")))
        }
        Some(value) => Err(malformed(format!("x-amz-content-sha256 {value:?} is not a SHA-256"))),
    }
}

/// botocore's canonical request; see the module documentation.
fn canonical_request(
    req: &SignedRequest<'_>,
    signed_headers: &[&str],
    payload_hash: &str,
) -> Result<String, SigV4Error> {
    if !is_normalized(req.path) {
        return Err(malformed(format!(
            "path {:?} is not normalized: it must start with '/' and have no '.', '..' or empty segment",
            req.path
        )));
    }
    let mut out = String::with_capacity(256 + req.path.len() + req.query.map_or(0, str::len));
    out.push_str(req.method);
    out.push('\n');
    out.extend(utf8_percent_encode(req.path, PATH));
    out.push('\n');
    push_canonical_query(&mut out, req.query.unwrap_or(""));
    out.push('\n');
    for name in signed_headers {
        let mut values = header_values(req.headers, name).peekable();
        if values.peek().is_none() {
            return Err(SigV4Error::SignedHeaderAbsent((*name).to_owned()));
        }
        out.push_str(name);
        out.push(':');
        for (i, value) in values.enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_trimmed(&mut out, value);
        }
        out.push('\n');
    }
    out.push('\n');
    for (i, name) in signed_headers.iter().enumerate() {
        if i > 0 {
            out.push(';');
        }
        out.push_str(name);
    }
    out.push('\n');
    out.push_str(payload_hash);
    Ok(out)
}

/// Whether botocore's `remove_dot_segments` leaves `path` unchanged.
fn is_normalized(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else { return false };
    let segments: Vec<&str> = rest.split('/').collect();
    let last = segments.len() - 1; // `split` yields at least one item.
    segments.iter().enumerate().all(|(i, s)| *s != "." && *s != ".." && (!s.is_empty() || i == last))
}

/// botocore's `_canonical_query_string_url`: raw pairs sorted by key, then value.
fn push_canonical_query(out: &mut String, query: &str) {
    if query.is_empty() {
        return;
    }
    let mut pairs: Vec<(&str, &str)> =
        query.split('&').map(|p| p.split_once('=').unwrap_or((p, ""))).collect();
    pairs.sort_unstable();
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(key);
        out.push('=');
        out.push_str(value);
    }
}

/// Python's `' '.join(value.split())`: whitespace runs become one space, ends are trimmed.
fn push_trimmed(out: &mut String, value: &str) {
    let python_space = |c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c);
    for (i, word) in value.split(python_space).filter(|w| !w.is_empty()).enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(word);
    }
}

fn string_to_sign(date: &str, scope: &Scope<'_>, canonical_request: &str) -> String {
    let hash = digest::digest(&digest::SHA256, canonical_request.as_bytes());
    format!(
        "{ALGORITHM}\n{date}\n{}/{}/{}/aws4_request\n{}",
        scope.date,
        scope.region,
        scope.service,
        hex::encode(hash)
    )
}

/// kSecret → kDate → kRegion → kService → kSigning.
fn signing_key(secret: &str, date: &str, region: &str) -> hmac::Key {
    let k_secret = hmac::Key::new(hmac::HMAC_SHA256, format!("AWS4{secret}").as_bytes());
    let k_date = hmac::sign(&k_secret, date.as_bytes());
    let k_region = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, k_date.as_ref()), region.as_bytes());
    let k_service = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, k_region.as_ref()), SERVICE.as_bytes());
    let k_signing = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, k_service.as_ref()), b"aws4_request");
    hmac::Key::new(hmac::HMAC_SHA256, k_signing.as_ref())
}

fn header_values<'h>(headers: &'h [(&'h str, &'h str)], name: &'h str) -> impl Iterator<Item = &'h str> {
    headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
}

/// The value of a header that must not be repeated.
fn single_header<'h>(
    headers: &'h [(&'h str, &'h str)],
    name: &'h str,
) -> Result<Option<&'h str>, SigV4Error> {
    let mut values = header_values(headers, name);
    let first = values.next();
    if values.next().is_some() {
        return Err(malformed(format!("more than one {name} header")));
    }
    Ok(first)
}

/// The form of `x-amz-date`, also the credential scope's date in its first eight characters.
const AMZ_DATE: &[BorrowedFormatItem<'_>] = format_description!("[year][month][day]T[hour][minute][second]Z");

/// `YYYYMMDDTHHMMSSZ` to seconds since the Unix epoch.
fn parse_amz_date(s: &str) -> Result<i64, SigV4Error> {
    let bad = || malformed(format!("x-amz-date {s:?} is not YYYYMMDDTHHMMSSZ"));
    // `[year]` also takes a leading sign, which YYYY does not have.
    if !s.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(bad());
    }
    let time = PrimitiveDateTime::parse(s, AMZ_DATE).map_err(|_| bad())?;
    Ok(time.assume_utc().unix_timestamp())
}

/// Seconds since the Unix epoch to `YYYYMMDDTHHMMSSZ`; `None` outside the years 0 to 9999, which
/// that form cannot write.
fn amz_date(unix_secs: i64) -> Option<String> {
    let time =
        OffsetDateTime::from_unix_timestamp(unix_secs).ok().filter(|t| (0..=9999).contains(&t.year()))?;
    time.format(AMZ_DATE).ok()
}

/// A time in an error message: `YYYYMMDDTHHMMSSZ` when it has that form, else epoch seconds (a
/// server clock gone past the year 9999).
fn show_time(unix_secs: i128) -> String {
    i64::try_from(unix_secs).ok().and_then(amz_date).unwrap_or_else(|| format!("{unix_secs} (epoch seconds)"))
}

fn malformed(reason: impl Into<String>) -> SigV4Error {
    SigV4Error::Malformed(reason.into())
}

fn unsupported(what: impl Into<String>) -> SigV4Error {
    SigV4Error::Unsupported(what.into())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde::Deserialize;

    use super::*;

    /// `sigv4_vectors/vectors.json`, written by `gen.py` from requests botocore sent.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct VectorFile {
        generator: String,
        access_key_id: String,
        secret_access_key: String,
        region: String,
        now_unix_secs: u64,
        vectors: Vec<Vector>,
    }

    #[derive(Debug, Clone, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Vector {
        name: String,
        method: String,
        path: String,
        query: Option<String>,
        headers: Vec<(String, String)>,
        body: String,
        /// botocore's canonical request for this request.
        canonical_request: String,
        /// `ok`, or the name of the `SigV4Error` variant expected.
        expect: String,
        #[serde(default)]
        note: Option<String>,
    }

    fn vector_file() -> VectorFile {
        serde_json::from_str(include_str!("sigv4_vectors/vectors.json")).unwrap()
    }

    /// An owned request, to be mutated before verification.
    #[derive(Debug, Clone)]
    struct Req {
        method: String,
        path: String,
        query: Option<String>,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Req {
        fn from_vector(v: &Vector) -> Req {
            Req {
                method: v.method.clone(),
                path: v.path.clone(),
                query: v.query.clone(),
                headers: v.headers.clone(),
                body: v.body.clone().into_bytes(),
            }
        }

        fn with<T>(&self, f: impl FnOnce(&SignedRequest<'_>) -> T) -> T {
            let headers: Vec<(&str, &str)> =
                self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            f(&SignedRequest {
                method: &self.method,
                path: &self.path,
                query: self.query.as_deref(),
                headers: &headers,
                body: &self.body,
            })
        }

        fn header_mut(&mut self, name: &str) -> &mut String {
            &mut self.headers.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(name)).unwrap().1
        }

        fn remove_header(&mut self, name: &str) {
            self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        }
    }

    /// What the server knows when it verifies: its region, its clock and its keys.
    struct Env {
        region: Option<String>,
        now: u64,
        keys: Vec<(String, String)>,
    }

    /// Verifies vector `name` after `mutate` changed the request or the server's side.
    fn check(name: &str, mutate: impl FnOnce(&mut Req, &mut Env)) -> Result<String, SigV4Error> {
        let file = vector_file();
        let vector = file.vectors.iter().find(|v| v.name == name).unwrap();
        let mut req = Req::from_vector(vector);
        let mut env = Env {
            region: Some(file.region.clone()),
            now: file.now_unix_secs,
            keys: vec![(file.access_key_id.clone(), file.secret_access_key.clone())],
        };
        mutate(&mut req, &mut env);
        let lookup = |akid: &str| env.keys.iter().find(|(k, _)| k == akid).map(|(_, s)| s.clone());
        req.with(|r| verify(r, lookup, env.region.as_deref(), env.now))
    }

    fn ok() -> Result<String, SigV4Error> {
        Ok("AKIDEXAMPLE".to_owned())
    }

    fn malformed(result: Result<String, SigV4Error>) -> String {
        match result {
            Err(SigV4Error::Malformed(reason)) => reason,
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    const POST: &str = "client-create-thing";
    const GET: &str = "client-list-violation-events";

    #[test]
    fn every_botocore_vector_gives_its_expected_answer() {
        let file = vector_file();
        assert!(file.generator.starts_with("botocore "));
        assert!(file.vectors.len() >= 50, "{} vectors", file.vectors.len());
        let mut failures = Vec::new();
        for v in &file.vectors {
            let result = check(&v.name, |_, _| ());
            let variant = match &result {
                Ok(akid) if *akid == file.access_key_id => "ok".to_owned(),
                Ok(other) => format!("ok for {other}"),
                Err(e) => format!("{e:?}").split(['(', ' ']).next().unwrap().to_owned(),
            };
            if variant != v.expect {
                failures.push(format!("{}: expected {}, got {result:?} ({:?})", v.name, v.expect, v.note));
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
    }

    #[test]
    fn canonical_requests_are_botocores() {
        for v in vector_file().vectors.iter().filter(|v| v.expect == "ok") {
            let req = Req::from_vector(v);
            let canonical = req.with(|r| {
                let auth = Authorization::parse(single_header(r.headers, "authorization")?.unwrap())?;
                canonical_request(r, &auth.signed_headers, &payload_hash(r)?)
            });
            assert_eq!(canonical.as_ref(), Ok(&v.canonical_request), "{}", v.name);
        }
    }

    #[test]
    fn sign_reproduces_botocores_authorization() {
        let file = vector_file();
        let credentials = Credentials {
            access_key_id: file.access_key_id.clone(),
            secret_access_key: file.secret_access_key.clone(),
        };
        for v in file.vectors.iter().filter(|v| v.expect == "ok") {
            let mut req = Req::from_vector(v);
            let authorization = req.header_mut("authorization").clone();
            let date = req.header_mut("x-amz-date").clone();
            let signed = authorization.split("SignedHeaders=").nth(1).unwrap().split(',').next().unwrap();
            req.headers.retain(|(n, _)| {
                let n = n.to_ascii_lowercase();
                n != "x-amz-date" && signed.split(';').any(|s| s == n)
            });
            let signature = req.with(|r| sign(r, &credentials, &file.region, file.now_unix_secs)).unwrap();
            assert_eq!(signature, Signature { x_amz_date: date, authorization }, "{}", v.name);
        }
    }

    #[test]
    fn any_change_to_a_signed_part_breaks_the_signature() {
        let mismatch = Err(SigV4Error::SignatureMismatch);
        assert_eq!(check(POST, |r, _| r.body.push(b' ')), mismatch);
        assert_eq!(check(POST, |r, _| r.body.clear()), mismatch);
        assert_eq!(check(POST, |r, _| r.method = "PUT".into()), mismatch);
        assert_eq!(check(POST, |r, _| r.path = "/things/my-thinG".into()), mismatch);
        assert_eq!(check(POST, |r, _| r.path = "/things/my%2Dthing".into()), mismatch);
        assert_eq!(check(POST, |r, _| r.query = Some("a=b".into())), mismatch);
        assert_eq!(check(POST, |r, _| *r.header_mut("content-type") = "text/plain".into()), mismatch);
        assert_eq!(check(POST, |r, _| *r.header_mut("host") = "localhost:18444".into()), mismatch);
        let query =
            |f: fn(&str) -> String| move |r: &mut Req, _: &mut Env| r.query = r.query.as_deref().map(f);
        assert_eq!(check(GET, query(|q| q.replace("maxResults=100", "maxResults=101"))), mismatch);
        assert_eq!(check(GET, query(|q| q.replace("thingName=my-thing", "thingName=other"))), mismatch);
        assert_eq!(check(GET, query(|q| format!("{q}&securityProfileName=p"))), mismatch);
        assert_eq!(check(GET, query(|q| format!("{q}&"))), mismatch);
        assert_eq!(check(GET, query(|q| q.replace("%3A", "%3a"))), mismatch);
        assert_eq!(check(GET, |r, _| r.query = None), mismatch);
        assert_eq!(check(GET, |_, e| e.keys[0].1.push('x')), mismatch);
        assert_eq!(
            check(GET, |r, _| *r.header_mut("authorization") =
                r.header_mut("authorization").replace("af64", "af65")),
            mismatch
        );
    }

    #[test]
    fn what_is_not_signed_may_change() {
        assert_eq!(check(POST, |r, _| *r.header_mut("user-agent") = "curl/8".into()), ok());
        assert_eq!(check(POST, |r, _| r.headers.push(("X-Extra".into(), "1".into()))), ok());
        assert_eq!(check(POST, |r, _| r.remove_header("content-length")), ok());
        assert_eq!(
            check(POST, |r, _| {
                for (name, _) in &mut r.headers {
                    *name = name.to_ascii_uppercase();
                }
            }),
            ok()
        );
        // Header values are compared after whitespace is collapsed, as botocore signs them.
        assert_eq!(check(POST, |r, _| *r.header_mut("content-type") = "  application/json\t".into()), ok());
        // Query pairs are sorted before signing, as in every SigV4 implementation.
        assert_eq!(
            check(GET, |r, _| {
                let mut pairs: Vec<&str> = r.query.as_deref().unwrap().split('&').collect();
                pairs.reverse();
                r.query = Some(pairs.join("&"));
            }),
            ok()
        );
        // The region is not checked when none is configured.
        assert_eq!(check(GET, |_, e| e.region = None), ok());
    }

    #[test]
    fn the_request_time_must_be_within_15_minutes() {
        let file = vector_file();
        let t = file.now_unix_secs;
        assert_eq!(check(GET, |_, e| e.now = t + 900), ok());
        assert_eq!(check(GET, |_, e| e.now = t - 900), ok());
        let t = i64::try_from(t).unwrap();
        assert_eq!(
            check(GET, |_, e| e.now += 901),
            Err(SigV4Error::Expired { request_time: t, now: (t + 901) as u64 })
        );
        assert_eq!(
            check(GET, |_, e| e.now -= 901),
            Err(SigV4Error::Expired { request_time: t, now: (t - 901) as u64 })
        );
        assert_eq!(check(GET, |_, e| e.now = 0), Err(SigV4Error::Expired { request_time: t, now: 0 }));
        assert_eq!(
            check(GET, |_, e| e.now = u64::MAX),
            Err(SigV4Error::Expired { request_time: t, now: u64::MAX })
        );
        assert_eq!(
            check(GET, |_, e| e.now += 3600).unwrap_err().to_string(),
            "signature expired: the request time 20261127T123456Z is more than 15 minutes away from the \
             server time 20261127T133456Z"
        );
        // Moving x-amz-date within the window keeps the time check happy but not the signature.
        assert_eq!(
            check(GET, |r, _| *r.header_mut("x-amz-date") = "20261127T123457Z".into()),
            Err(SigV4Error::SignatureMismatch)
        );
    }

    #[test]
    fn unknown_keys_and_foreign_scopes_are_refused() {
        assert_eq!(
            check(GET, |_, e| e.keys.clear()),
            Err(SigV4Error::UnknownAccessKey("AKIDEXAMPLE".into()))
        );
        let auth = |from: &'static str, to: &'static str| {
            move |r: &mut Req, _: &mut Env| {
                *r.header_mut("authorization") = r.header_mut("authorization").replace(from, to)
            }
        };
        assert_eq!(
            check(GET, auth("AKIDEXAMPLE/", "AKIDOTHER/")),
            Err(SigV4Error::UnknownAccessKey("AKIDOTHER".into()))
        );
        let scope = |r| match r {
            Err(SigV4Error::BadScope(reason)) => reason,
            other => panic!("expected BadScope, got {other:?}"),
        };
        assert_eq!(
            scope(check(GET, |_, e| e.region = Some("local".into()))),
            r#"region "us-east-1" is not "local""#
        );
        assert_eq!(scope(check(GET, auth("/iot/", "/s3/"))), r#"service "s3" is not "iot""#);
        assert_eq!(
            scope(check(GET, auth("/20261127/", "/20261126/"))),
            "date 20261126 is not the date of x-amz-date 20261127T123456Z"
        );
        assert_eq!(
            scope(check(GET, auth("/aws4_request", "/aws5_request"))),
            r#"terminator "aws5_request" is not "aws4_request""#
        );
    }

    #[test]
    fn missing_and_absent_headers_are_named() {
        assert_eq!(
            check(GET, |r, _| r.remove_header("authorization")),
            Err(SigV4Error::Missing("Authorization header"))
        );
        assert_eq!(
            check(GET, |r, _| r.remove_header("x-amz-date")),
            Err(SigV4Error::Missing("x-amz-date header"))
        );
        assert_eq!(
            check(POST, |r, _| r.remove_header("content-type")),
            Err(SigV4Error::SignedHeaderAbsent("content-type".into()))
        );
        assert_eq!(
            check(POST, |r, _| r.remove_header("host")),
            Err(SigV4Error::SignedHeaderAbsent("host".into()))
        );
        assert_eq!(
            check(GET, |r, _| r.headers.push(("X-Amz-Date".into(), "20261127T123456Z".into()))),
            Err(SigV4Error::Malformed("more than one x-amz-date header".into()))
        );
        assert_eq!(
            check(GET, |r, _| {
                r.remove_header("authorization");
                r.query = Some("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=00".into());
            }),
            Err(SigV4Error::Unsupported("presigned URLs (query string authentication)".into()))
        );
    }

    #[test]
    fn malformed_authorization_headers_say_what_is_wrong() {
        let set = |value: &'static str| {
            move |r: &mut Req, _: &mut Env| *r.header_mut("authorization") = value.into()
        };
        let edit = |from: &'static str, to: &'static str| {
            move |r: &mut Req, _: &mut Env| {
                *r.header_mut("authorization") = r.header_mut("authorization").replacen(from, to, 1)
            }
        };
        assert_eq!(
            check(GET, set("Bearer abc")),
            Err(SigV4Error::Unsupported(
                r#"authorization scheme "Bearer", expected AWS4-HMAC-SHA256"#.into()
            ))
        );
        assert_eq!(
            check(GET, set("AWS4-HMAC-SHA1 Credential=a")),
            Err(SigV4Error::Unsupported(
                r#"authorization scheme "AWS4-HMAC-SHA1", expected AWS4-HMAC-SHA256"#.into()
            ))
        );
        assert_eq!(
            check(GET, set("")),
            Err(SigV4Error::Unsupported(r#"authorization scheme "", expected AWS4-HMAC-SHA256"#.into()))
        );
        assert_eq!(
            check(GET, set("AWS4-HMAC-SHA256")),
            Err(SigV4Error::Missing("Credential in the Authorization header"))
        );
        assert_eq!(
            check(GET, edit("SignedHeaders=", "Signedheaders=")),
            Err(SigV4Error::Malformed(r#"unknown Authorization component "Signedheaders""#.into()))
        );
        assert_eq!(
            check(GET, edit(", Signature=", ", Sig=")),
            Err(SigV4Error::Malformed(r#"unknown Authorization component "Sig""#.into()))
        );
        assert_eq!(
            check(GET, edit(", Signature=", ", Credential=x, Signature=")),
            Err(SigV4Error::Malformed("Authorization component Credential appears twice".into()))
        );
        assert_eq!(check(GET, edit(", Signature=", ", Signature")), Err(SigV4Error::Malformed(r#"Authorization component "Signature7419aea53bf9837200189d7afdd7b3978ec736260c503866f103b9554b51af64" has no '='"#.into())));
        assert!(
            malformed(check(GET, edit("/us-east-1", "")))
                .starts_with("Credential \"AKIDEXAMPLE/20261127/iot/aws4_request\" is not")
        );
        assert!(malformed(check(GET, edit("/20261127", "/2026-11-27"))).starts_with("Credential date"));
        assert_eq!(malformed(check(GET, edit("AKIDEXAMPLE", ""))), "Credential has an empty access key id");
        assert_eq!(
            malformed(check(GET, edit("host;x-amz-date", "x-amz-date;host"))),
            r#"SignedHeaders "x-amz-date;host" is not sorted without duplicates"#
        );
        assert_eq!(
            malformed(check(GET, edit("host;x-amz-date", "host;host;x-amz-date"))),
            r#"SignedHeaders "host;host;x-amz-date" is not sorted without duplicates"#
        );
        assert_eq!(
            malformed(check(GET, edit("host;x-amz-date", "Host;x-amz-date"))),
            r#"SignedHeaders "Host;x-amz-date" has an invalid name "Host""#
        );
        assert_eq!(
            malformed(check(GET, edit("host;x-amz-date", "host;;x-amz-date"))),
            r#"SignedHeaders "host;;x-amz-date" has an invalid name """#
        );
        assert_eq!(
            malformed(check(GET, edit("host;x-amz-date", "x-amz-date"))),
            "SignedHeaders must include host"
        );
        assert_eq!(
            malformed(check(GET, edit("host;x-amz-date", "host"))),
            "SignedHeaders must include x-amz-date"
        );
        assert!(
            malformed(check(GET, edit("Signature=7419", "Signature=")))
                .ends_with("is not 64 lower-case hexadecimal digits")
        );
        assert!(
            malformed(check(GET, edit("Signature=7419", "Signature=741g")))
                .ends_with("is not 64 lower-case hexadecimal digits")
        );
        assert!(
            malformed(check(GET, edit("Signature=7419ae", "Signature=7419AE")))
                .ends_with("is not 64 lower-case hexadecimal digits")
        );
        // Spacing around the components is free, as AWS allows.
        assert_eq!(check(GET, edit(", ", ",")), ok());
        assert_eq!(check(GET, edit(", SignedHeaders", " ,  SignedHeaders")), ok());
    }

    #[test]
    fn malformed_dates_and_paths_are_refused() {
        let date =
            |value: &'static str| move |r: &mut Req, _: &mut Env| *r.header_mut("x-amz-date") = value.into();
        for bad in [
            "",
            "20261127T123456",
            "2026-11-27T12:34:56Z",
            "20261327T123456Z",
            "20260229T123456Z",
            "20261127T246000Z",
            "20261127T12345éZ",
        ] {
            assert_eq!(
                malformed(check(GET, date(bad))),
                format!("x-amz-date {bad:?} is not YYYYMMDDTHHMMSSZ")
            );
        }
        for bad in [
            "/things/../things/my-thing",
            "/things/./my-thing",
            "/things//my-thing",
            "things/my-thing",
            "",
            "*",
        ] {
            let reason = malformed(check(POST, |r, _| r.path = bad.into()));
            assert!(reason.starts_with(&format!("path {bad:?} is not normalized")), "{reason}");
        }
    }

    #[test]
    fn the_payload_hash_header_must_be_the_bodys() {
        let vector = "post-content-sha256-header";
        assert_eq!(check(vector, |_, _| ()), ok());
        assert_eq!(check(vector, |r, _| r.body = b"{ }".to_vec()), Err(SigV4Error::PayloadHashMismatch));
        let header = |value: &'static str| {
            move |r: &mut Req, _: &mut Env| *r.header_mut("x-amz-content-sha256") = value.into()
        };
        assert_eq!(
            check(vector, header("STREAMING-AWS4-HMAC-SHA256-PAYLOAD")),
            Err(SigV4Error::Unsupported(
                "x-amz-content-sha256 STREAMING-AWS4-HMAC-SHA256-PAYLOAD: the payload must be signed".into()
            ))
        );
        assert_eq!(malformed(check(vector, header("abc"))), r#"x-amz-content-sha256 "abc" is not a SHA-256"#);
    }

    #[test]
    fn empty_query_is_no_query() {
        assert_eq!(check("get-vanilla", |r, _| r.query = Some(String::new())), ok());
    }

    #[test]
    fn errors_map_to_aws_codes() {
        assert_eq!(
            SigV4Error::Missing("Authorization header").aws_code(),
            "MissingAuthenticationTokenException"
        );
        assert_eq!(SigV4Error::Malformed(String::new()).http_status(), 400);
        assert_eq!(SigV4Error::UnknownAccessKey(String::new()).aws_code(), "UnrecognizedClientException");
        assert_eq!(SigV4Error::SignatureMismatch.aws_code(), "InvalidSignatureException");
        assert_eq!(SigV4Error::SignatureMismatch.http_status(), 403);
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let credentials = Credentials { access_key_id: "AKID".into(), secret_access_key: "s3cr3t".into() };
        assert!(!format!("{credentials:?}").contains("s3cr3t"));
    }

    /// botocore's `remove_dot_segments`, ported line by line.
    fn remove_dot_segments(url: &str) -> String {
        if url.is_empty() {
            return String::new();
        }
        let mut output: Vec<&str> = Vec::new();
        for x in url.split('/') {
            if !x.is_empty() && x != "." {
                if x == ".." {
                    output.pop();
                } else {
                    output.push(x);
                }
            }
        }
        let first = if url.starts_with('/') { "/" } else { "" };
        let last = if url.ends_with('/') && !output.is_empty() { "/" } else { "" };
        format!("{first}{}{last}", output.join("/"))
    }

    proptest! {
        #[test]
        fn is_normalized_agrees_with_botocore(path in "[/.a]{0,14}") {
            let botocore = if path.is_empty() { "/".to_owned() } else { remove_dot_segments(&path) };
            // Unlike botocore, Warden also wants the leading '/' that every HTTP path has.
            prop_assert_eq!(is_normalized(&path), path.starts_with('/') && botocore == path);
        }

        #[test]
        fn amz_dates_round_trip(t in -62_167_219_200i64..253_402_300_800) {
            prop_assert_eq!(parse_amz_date(&amz_date(t).unwrap()), Ok(t));
        }

        #[test]
        fn verify_never_panics(
            method in ".{0,8}",
            path in ".{0,40}",
            query in proptest::option::of(".{0,60}"),
            headers in proptest::collection::vec(("(?i)(authorization|x-amz-date|host|x-amz-content-sha256|[a-z-]{1,10})", ".{0,120}"), 0..8),
            body in proptest::collection::vec(any::<u8>(), 0..64),
            now in any::<u64>(),
        ) {
            let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            let req = SignedRequest { method: &method, path: &path, query: query.as_deref(), headers: &headers, body: &body };
            let _ = verify(&req, |_| Some("secret".into()), None, now);
            let _ = verify(&req, |_| Some("secret".into()), Some("us-east-1"), now);
        }

        #[test]
        fn edited_authorization_never_panics_nor_passes(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<char>(), any::<bool>()), 1..6),
        ) {
            let file = vector_file();
            let vector = file.vectors.iter().find(|v| v.name == GET).unwrap();
            let mut req = Req::from_vector(vector);
            let original = req.header_mut("authorization").clone();
            let mut chars: Vec<char> = original.chars().collect();
            for (at, c, insert) in edits {
                let i = at.index(chars.len() + 1);
                if insert || i == chars.len() {
                    chars.insert(i, c);
                } else {
                    chars[i] = c;
                }
            }
            let edited: String = chars.into_iter().collect();
            *req.header_mut("authorization") = edited.clone();
            let lookup = |akid: &str| (akid == file.access_key_id).then(|| file.secret_access_key.clone());
            let result = req.with(|r| verify(r, lookup, Some(&file.region), file.now_unix_secs));
            // Only an edit that the parser normalizes away (spacing around components) may pass.
            if result.is_ok() {
                let squeeze = |s: &str| s.replace(|c: char| c == ',' || c.is_whitespace(), "");
                prop_assert_eq!(squeeze(&edited), squeeze(&original));
            }
        }

        #[test]
        fn what_sign_signs_verify_accepts(
            method in prop::sample::select(vec!["GET", "POST", "PUT", "PATCH", "DELETE"]),
            segments in proptest::collection::vec("\\PC{1,12}", 0..4),
            trailing_slash in any::<bool>(),
            pairs in proptest::collection::vec(("\\PC{0,8}", "\\PC{0,8}"), 0..5),
            extra in proptest::collection::vec(("x-[a-z]{1,6}", "[ -~]{0,20}"), 0..4),
            body in proptest::collection::vec(any::<u8>(), 0..64),
            region in "[a-z0-9-]{1,12}",
            now in 0u64..253_402_300_800,
        ) {
            let segments: Vec<String> = segments.iter().map(|s| encode_component(s)).filter(|s| s != "." && s != "..").collect();
            let mut path = format!("/{}", segments.join("/"));
            if trailing_slash && !segments.is_empty() {
                path.push('/');
            }
            let query = (!pairs.is_empty()).then(|| {
                pairs.iter().map(|(k, v)| format!("{}={}", encode_component(k), encode_component(v))).collect::<Vec<_>>().join("&")
            });
            let mut headers: Vec<(String, String)> = vec![("Host".into(), "warden.local:8443".into())];
            headers.extend(extra);
            let credentials = Credentials { access_key_id: "AKID".into(), secret_access_key: "secret/+=".into() };
            let mut req = Req { method: method.into(), path, query, headers, body };
            let signature = req.with(|r| sign(r, &credentials, &region, now)).unwrap();
            req.headers.push(("X-Amz-Date".into(), signature.x_amz_date));
            req.headers.push(("Authorization".into(), signature.authorization));
            let lookup = |akid: &str| (akid == "AKID").then(|| credentials.secret_access_key.clone());
            prop_assert_eq!(req.with(|r| verify(r, lookup, Some(&region), now)), Ok("AKID".to_owned()));
            req.body.push(0);
            prop_assert_eq!(req.with(|r| verify(r, lookup, Some(&region), now)), Err(SigV4Error::SignatureMismatch));
        }
    }
}
