//! The CLI's client of the Warden REST API: where the server is and how to authenticate
//! ([`ApiArgs`], shared by every command group), one request type ([`Call`]) that knows AWS's
//! rest-json conventions (URI labels, query strings, the `x-amzn-ErrorType` error shape), and
//! [`Call::paginate`], which follows both of AWS's pagination dialects.
//!
//! The client is blocking on purpose: a command makes a handful of requests one after the other,
//! so an async runtime would buy nothing but compile time.

use std::cell::OnceCell;
use std::fmt;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value};
use ureq::http::{Method, Request};

use crate::output::Format;

/// Where the API is, how to authenticate, and how to print. Every option is global, so it can be
/// given before or after the subcommand (`warden things --output json list` or
/// `warden things list --output json`). Defaults are applied here rather than by clap, which
/// would otherwise list defaulted options in its usage lines as if they had been required.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// URL of the Warden API [default: http://127.0.0.1:8080].
    #[arg(long, env = "WARDEN_ENDPOINT", value_name = "URL", global = true, help_heading = "Global options")]
    endpoint: Option<String>,
    /// API token [default: the one in DATA_DIR/api-token].
    #[arg(
        long,
        env = "WARDEN_TOKEN",
        hide_env_values = true,
        global = true,
        help_heading = "Global options"
    )]
    token: Option<String>,
    /// Data directory of a local server, read for its API token when --token is not given
    /// [default: ./warden-data].
    #[arg(long, env = "WARDEN_DATA_DIR", value_name = "DIR", global = true, help_heading = "Global options")]
    data_dir: Option<PathBuf>,
    /// Output format: aligned columns for people, or the API's JSON for scripts.
    #[arg(long, value_enum, default_value_t = Format::Table, global = true, help_heading = "Global options")]
    pub output: Format,
}

/// The API of a server started with `warden server` on this machine (its default `http.listen`).
const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:8080";
/// `warden server`'s default data directory, where it writes the API token.
const DEFAULT_DATA_DIR: &str = "./warden-data";

impl ApiArgs {
    /// The client these options describe. The token is resolved here, before any request, so
    /// that a missing token is reported as such rather than as the server's 401.
    pub fn connect(&self) -> anyhow::Result<Api> {
        let token = match &self.token {
            Some(token) => token.trim().to_owned(),
            None => {
                let data_dir = self.data_dir.as_deref().unwrap_or(Path::new(DEFAULT_DATA_DIR));
                let path = data_dir.join("api-token");
                let token = std::fs::read_to_string(&path).with_context(|| {
                    format!(
                        "no API token: pass --token (or set WARDEN_TOKEN), or point --data-dir (WARDEN_DATA_DIR) \
                         at the server's data directory; cannot read {}",
                        path.display()
                    )
                })?;
                token.trim().to_owned()
            }
        };
        if token.is_empty() {
            anyhow::bail!("the API token is empty");
        }
        Ok(Api::new(self.endpoint.as_deref().unwrap_or(DEFAULT_ENDPOINT), token))
    }
}

/// The options of every list command.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Stop after N items [default: all, following the API's pages].
    #[arg(long, value_name = "N")]
    max: Option<std::num::NonZeroUsize>,
}

impl ListArgs {
    pub fn max(&self) -> Option<usize> {
        self.max.map(std::num::NonZeroUsize::get)
    }
}

/// A connection to one Warden API: the base URL and the bearer token.
#[derive(Debug)]
pub struct Api {
    base: String,
    token: String,
    agent: ureq::Agent,
    /// The server's region and account, learnt on first use ([`Api::scope`]).
    scope: OnceCell<Scope>,
}

/// The region and account of a server's ARNs, `arn:aws:iot:{region}:{account}:...`, which the
/// CLI needs to write the ARNs that no API call hands out: security profile targets
/// (`all/things`) and the placeholder IAM roles that AWS shapes require.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub region: String,
    pub account: String,
}

impl Scope {
    /// `arn:aws:iot:{region}:{account}:{resource}`.
    pub fn iot_arn(&self, resource: &str) -> String {
        format!("arn:aws:iot:{}:{}:{resource}", self.region, self.account)
    }

    /// The role AWS shapes require next to an alert target or a mitigation action. Warden has no
    /// IAM and ignores it, so every command sends this one.
    pub fn role_arn(&self) -> String {
        format!("arn:aws:iam::{}:role/warden", self.account)
    }
}

/// The header AWS's rest-json protocol carries the error code in.
const ERROR_TYPE_HEADER: &str = "x-amzn-errortype";

/// A bound on a whole request, so that a server that accepts but never answers does not hang a
/// script forever. Every API call is a small registry operation.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

impl Api {
    pub fn new(endpoint: &str, token: String) -> Api {
        let config = ureq::Agent::config_builder()
            // Error replies carry the AWS error code and message; read them instead of failing.
            .http_status_as_error(false)
            .timeout_global(Some(REQUEST_TIMEOUT))
            .user_agent(concat!("warden-cli/", env!("CARGO_PKG_VERSION")))
            .build();
        Api {
            base: endpoint.trim_end_matches('/').to_owned(),
            token,
            agent: ureq::Agent::new_with_config(config),
            scope: OnceCell::new(),
        }
    }

    /// The server's region and account, from `GET /warden/info` (a Warden extension: no AWS
    /// operation states them).
    pub fn scope(&self) -> anyhow::Result<Scope> {
        if let Some(scope) = self.scope.get() {
            return Ok(scope.clone());
        }
        let info = self.get("/warden/info".to_owned()).send()?;
        let (Some(region), Some(account)) = (info["region"].as_str(), info["accountId"].as_str()) else {
            anyhow::bail!("the server's /warden/info names no region and account: {info}");
        };
        let scope = Scope { region: region.to_owned(), account: account.to_owned() };
        Ok(self.scope.get_or_init(|| scope).clone())
    }

    /// The endpoint as the user gave it (without a trailing `/`).
    pub fn endpoint(&self) -> &str {
        &self.base
    }

    /// The bearer token, for clients built on other libraries (`warden sim`).
    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn get(&self, path: String) -> Call<'_> {
        Call::new(self, Method::GET, path)
    }

    pub fn post(&self, path: String) -> Call<'_> {
        Call::new(self, Method::POST, path)
    }

    pub fn put(&self, path: String) -> Call<'_> {
        Call::new(self, Method::PUT, path)
    }

    pub fn patch(&self, path: String) -> Call<'_> {
        Call::new(self, Method::PATCH, path)
    }

    pub fn delete(&self, path: String) -> Call<'_> {
        Call::new(self, Method::DELETE, path)
    }

    /// `GET /warden/ca.pem` (a Warden extension, no authentication): the CA that signs the MQTT
    /// endpoint's certificate and the things' certificates.
    pub fn ca_pem(&self) -> anyhow::Result<String> {
        let mut call = self.get("/warden/ca.pem".into());
        call.authenticate = false;
        let text = call.send_text()?;
        if !text.contains("-----BEGIN CERTIFICATE-----") {
            anyhow::bail!("GET {}/warden/ca.pem did not return a PEM certificate", self.base);
        }
        Ok(text)
    }
}

/// Characters left as they are in a URI label or query value: RFC 3986's unreserved ones, as
/// botocore encodes them. Everything else, `/` and `:` of ARNs included, is percent-encoded.
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// A URI label (thing name, certificate id, ARN), percent-encoded for a path segment.
pub fn label(value: &str) -> String {
    utf8_percent_encode(value, ENCODE).to_string()
}

/// The two pagination dialects of the AWS IoT API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paging {
    /// `maxResults` and `nextToken` in, `nextToken` out (things, groups, principals).
    Token,
    /// `pageSize` and `marker` in, `nextMarker` out (certificates and policies).
    Marker,
}

impl Paging {
    fn keys(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Paging::Token => ("maxResults", "nextToken", "nextToken"),
            Paging::Marker => ("pageSize", "marker", "nextMarker"),
        }
    }
}

/// The largest page the API serves (AWS's limit for these operations).
const MAX_PAGE_SIZE: usize = 250;

/// One API request being built.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    api: &'a Api,
    method: Method,
    path: String,
    query: Vec<(&'static str, String)>,
    headers: Vec<(&'static str, String)>,
    body: Option<Value>,
    authenticate: bool,
}

impl<'a> Call<'a> {
    fn new(api: &'a Api, method: Method, path: String) -> Call<'a> {
        Call { api, method, path, query: Vec::new(), headers: Vec::new(), body: None, authenticate: true }
    }

    pub fn query(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.query.push((key, value.into()));
        self
    }

    pub fn query_opt(self, key: &'static str, value: Option<impl Into<String>>) -> Self {
        match value {
            Some(value) => self.query(key, value),
            None => self,
        }
    }

    /// AWS binds some members to headers (`principal` is `x-amzn-principal`).
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn json(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    /// Sends the request; the reply's JSON body (`{}` when it has none).
    pub fn send(self) -> anyhow::Result<Value> {
        let what = self.describe();
        let text = self.send_text()?;
        if text.trim().is_empty() {
            return Ok(Value::Object(Map::new()));
        }
        serde_json::from_str(&text).with_context(|| format!("{what}: the reply is not JSON"))
    }

    /// Sends a list request again and again, following the page token, until the last page or
    /// until `max` items. The result has the shape of one page holding every item, plus the
    /// token of the next page when `max` stopped it early (as `aws --max-items` does), so that
    /// scripts read it like a single reply. Page sizes are chosen so that no page overshoots
    /// `max`: the token returned then points exactly past the last item printed.
    pub fn paginate(self, items_key: &str, paging: Paging, max: Option<usize>) -> anyhow::Result<Value> {
        let (size_key, token_in, token_out) = paging.keys();
        let mut items = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let remaining = max.map_or(MAX_PAGE_SIZE, |max| max - items.len());
            if remaining == 0 {
                break;
            }
            let call = self
                .clone()
                .query(size_key, remaining.min(MAX_PAGE_SIZE).to_string())
                .query_opt(token_in, token.take());
            let what = call.describe();
            let mut page = call.send()?;
            match page.get_mut(items_key).map(Value::take) {
                Some(Value::Array(page_items)) => items.extend(page_items),
                _ => anyhow::bail!("{what}: the reply has no {items_key:?} list"),
            }
            token = match page.get(token_out) {
                Some(Value::String(t)) if !t.is_empty() => Some(t.clone()),
                _ => None,
            };
            if token.is_none() {
                break;
            }
        }
        let mut all = Map::new();
        all.insert(items_key.to_owned(), Value::Array(items));
        if let Some(token) = token {
            all.insert(token_out.to_owned(), Value::String(token));
        }
        Ok(Value::Object(all))
    }

    /// `GET /things` and the like, for messages.
    fn describe(&self) -> String {
        format!("{} {}{}", self.method, self.api.base, self.path)
    }

    fn url(&self) -> String {
        let mut url = format!("{}{}", self.api.base, self.path);
        for (i, (key, value)) in self.query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(key);
            url.push('=');
            url.push_str(&utf8_percent_encode(value, ENCODE).to_string());
        }
        url
    }

    /// Sends the request; the reply's body as text if the status is a success, else the API's
    /// error as an [`ApiError`].
    fn send_text(self) -> anyhow::Result<String> {
        let what = self.describe();
        let mut request = Request::builder().method(self.method.clone()).uri(self.url());
        if self.authenticate {
            request = request.header("authorization", format!("Bearer {}", self.api.token));
        }
        for (name, value) in &self.headers {
            request = request.header(*name, value);
        }
        let result = match &self.body {
            Some(body) => self.api.agent.run(
                request
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .context("building the request")?,
            ),
            None => self.api.agent.run(request.body(()).context("building the request")?),
        };
        let mut response = result.map_err(|e| connection_error(&self.api.base, e))?;
        let status = response.status();
        let code = response.headers().get(ERROR_TYPE_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let text =
            response.body_mut().read_to_string().with_context(|| format!("{what}: reading the reply"))?;
        if status.is_success() {
            return Ok(text);
        }
        Err(ApiError::from_reply(status.as_u16(), code, &text).into())
    }
}

/// An error the API answered with: AWS's code (`ResourceNotFoundException`) and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl ApiError {
    /// Reads AWS's rest-json error shape. A reply without it (a proxy's error page, or a path
    /// that is not an API) is reported by its HTTP status and the start of its body.
    fn from_reply(status: u16, code: Option<String>, body: &str) -> ApiError {
        let message = serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| {
                v.get("message").or_else(|| v.get("Message")).and_then(Value::as_str).map(str::to_owned)
            })
            .unwrap_or_else(|| body.trim().chars().take(200).collect());
        // botocore takes the code before any ':' (the rest is a type URI some services append).
        let code = code.map(|c| c.split(':').next().unwrap_or_default().to_owned()).filter(|c| !c.is_empty());
        ApiError { status, code: code.unwrap_or_else(|| format!("HTTP {status}")), message }
    }

    pub fn is_not_found(&self) -> bool {
        self.code == "ResourceNotFoundException"
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

/// A transport failure, worded for the person at the terminal: most often the server is simply
/// not running, or the endpoint is wrong.
fn connection_error(endpoint: &str, e: ureq::Error) -> anyhow::Error {
    let refused = matches!(&e, ureq::Error::Io(io) if io.kind() == ErrorKind::ConnectionRefused)
        || matches!(e, ureq::Error::ConnectionFailed);
    if refused {
        anyhow::anyhow!(
            "cannot connect to the Warden API at {endpoint} (connection refused). Is the server running? \
             Start it with `warden server`, or point --endpoint (WARDEN_ENDPOINT) at it"
        )
    } else {
        anyhow::Error::new(e).context(format!("cannot reach the Warden API at {endpoint}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_write_arns() {
        let scope = Scope { region: "local".into(), account: "000000000000".into() };
        assert_eq!(scope.iot_arn("all/things"), "arn:aws:iot:local:000000000000:all/things");
        assert_eq!(scope.role_arn(), "arn:aws:iam::000000000000:role/warden");
    }

    #[test]
    fn labels_encode_arns_like_botocore() {
        assert_eq!(
            label("arn:aws:iot:local:000000000000:thinggroup/lab-1"),
            "arn%3Aaws%3Aiot%3Alocal%3A000000000000%3Athinggroup%2Flab-1"
        );
        assert_eq!(label("dev_1.a~b-c"), "dev_1.a~b-c");
    }

    #[test]
    fn error_replies_without_the_aws_shape_keep_the_status() {
        let e = ApiError::from_reply(502, None, "<html>bad gateway</html>");
        assert_eq!(e.to_string(), "HTTP 502: <html>bad gateway</html>");
        let e = ApiError::from_reply(
            404,
            Some("ResourceNotFoundException:http://x".into()),
            r#"{"message":"no"}"#,
        );
        assert_eq!(e.to_string(), "ResourceNotFoundException: no");
    }
}
