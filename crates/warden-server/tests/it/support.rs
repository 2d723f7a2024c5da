//! The test harness: the API served on `127.0.0.1:0` over a real SQLite store and a real CA in a
//! temp dir, a plain HTTP/1 client over TCP, and a listener that records registry changes.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tempfile::TempDir;
use warden_server::api::sigv4::{self, Credentials, SignedRequest};
use warden_server::config::{AccessKey, ServerConfig};
use warden_server::pki::Pki;
use warden_server::state::{AppState, Clock, ManualClock, RegistryChange, RegistryListener, SystemClock};
use warden_store::SqliteStore;

/// The API token of every test server.
pub const TOKEN: &str = "test-api-token-0123456789";
/// 2026-11-27T10:00:00Z: the manual clock's start.
pub const NOW_MS: i64 = 1_795_773_600_000;
/// The access key configured for SigV4.
pub const ACCESS_KEY_ID: &str = "AKIAWARDENTEST0001";
pub const SECRET_ACCESS_KEY: &str = "warden/test+secret=key";
/// The ARN prefix of the default region and account.
pub const ARN: &str = "arn:aws:iot:local:000000000000:";

/// A running API server. Dropping it stops nothing explicitly: the runtime of the test that
/// started it ends with the test, and the temp dir is removed.
pub struct TestServer {
    pub addr: SocketAddr,
    pub state: AppState,
    /// The manual clock, when the server runs on one.
    pub clock: Option<Arc<ManualClock>>,
    pub changes: Arc<Changes>,
    _dir: TempDir,
}

impl TestServer {
    /// A server on a manual clock set to [`NOW_MS`].
    pub async fn start() -> TestServer {
        let clock = Arc::new(ManualClock::new(NOW_MS));
        TestServer::start_with(clock.clone(), Some(clock)).await
    }

    /// A server on the wall clock, for clients that sign with the real time (boto3).
    pub async fn start_on_system_clock() -> TestServer {
        TestServer::start_with(Arc::new(SystemClock), None).await
    }

    async fn start_with(clock: Arc<dyn Clock>, manual: Option<Arc<ManualClock>>) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let config = ServerConfig {
            data_dir: dir.path().to_owned(),
            access_keys: vec![AccessKey {
                access_key_id: ACCESS_KEY_ID.into(),
                secret_access_key: SECRET_ACCESS_KEY.into(),
            }],
            ..ServerConfig::default()
        };
        let store = SqliteStore::open(dir.path().join("warden.db")).unwrap();
        let pki = Pki::load_or_create(&dir.path().join("pki")).unwrap();
        let token_hash: [u8; 32] =
            ring::digest::digest(&ring::digest::SHA256, TOKEN.as_bytes()).as_ref().try_into().unwrap();
        let state = AppState::new(Arc::new(config), Arc::new(store), Arc::new(pki), clock, token_hash);
        let changes = Arc::new(Changes::default());
        state.subscribe_registry(changes.clone());

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = warden_server::api::router(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        TestServer { addr, state, clock: manual, changes, _dir: dir }
    }

    /// An authenticated request (bearer token) with an optional JSON body.
    pub async fn call(&self, method: &str, target: &str, body: Option<Value>) -> Resp {
        self.call_with(method, target, &[], body).await
    }

    /// Like [`TestServer::call`], with extra headers.
    pub async fn call_with(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Resp {
        let auth = format!("Bearer {TOKEN}");
        let mut all = vec![("authorization", auth.as_str())];
        all.extend_from_slice(headers);
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        self.raw(method, target, &all, body).await
    }

    /// An authenticated request that must succeed; its JSON body.
    pub async fn ok(&self, method: &str, target: &str, body: Option<Value>) -> Value {
        let resp = self.call(method, target, body).await;
        assert_eq!(resp.status, 200, "{method} {target}: {}", resp.text());
        resp.json()
    }

    /// A request signed with SigV4 as botocore signs it, at the server's time.
    pub async fn signed(&self, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        let host = self.addr.to_string();
        let mut all: Vec<(&str, &str)> = vec![("host", &host)];
        all.extend_from_slice(headers);
        let request = SignedRequest { method, path, query, headers: &all, body };
        let credentials =
            Credentials { access_key_id: ACCESS_KEY_ID.into(), secret_access_key: SECRET_ACCESS_KEY.into() };
        let now = u64::try_from(self.state.now_ms() / 1000).unwrap();
        let signature = sigv4::sign(&request, &credentials, "us-east-1", now).unwrap();
        let mut all = all.clone();
        all.push(("x-amz-date", &signature.x_amz_date));
        all.push(("authorization", &signature.authorization));
        self.raw(method, target, &all, body.to_vec()).await
    }

    /// Any request, sent as given (plus `host`, unless given).
    pub async fn raw(&self, method: &str, target: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Resp {
        request(self.addr, method, target, headers, body).await
    }

    /// Creates a thing, returning nothing.
    pub async fn thing(&self, name: &str) {
        self.ok("POST", &format!("/things/{name}"), None).await;
    }

    /// Creates a thing group under `parent`.
    pub async fn group(&self, name: &str, parent: Option<&str>) {
        let body = parent.map(|p| serde_json::json!({ "parentGroupName": p }));
        self.ok("POST", &format!("/thing-groups/{name}"), body).await;
    }

    /// Creates a key and an active certificate; returns its id.
    pub async fn certificate(&self) -> String {
        let created = self.ok("POST", "/keys-and-certificate?setAsActive=true", None).await;
        created["certificateId"].as_str().unwrap().to_owned()
    }

    /// Moves the manual clock.
    pub fn advance_ms(&self, ms: i64) {
        self.clock.as_ref().expect("a manual clock").advance(ms);
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    /// `x-amzn-ErrorType`.
    pub error_type: Option<String>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts an AWS-shaped error and returns its message.
    #[track_caller]
    pub fn error(&self, status: u16, code: &str) -> String {
        assert_eq!((self.status, self.error_type.as_deref()), (status, Some(code)), "{}", self.text());
        assert_eq!(self.content_type.as_deref(), Some("application/json"));
        let body = self.json();
        body["message"].as_str().unwrap_or_else(|| panic!("no message in {body}")).to_owned()
    }
}

/// Records every registry change the API announces.
#[derive(Debug, Default)]
pub struct Changes(Mutex<Vec<RegistryChange>>);

impl Changes {
    /// The changes since the last call.
    pub fn take(&self) -> Vec<RegistryChange> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

#[async_trait::async_trait]
impl RegistryListener for Changes {
    async fn registry_changed(&self, change: &RegistryChange) {
        self.0.lock().unwrap().push(change.clone());
    }
}

/// Replaces the value at each of `pointers` (JSON pointers) with `"<redacted>"`, for values that
/// are random (ids) or otherwise not worth pinning, after checking they are there.
#[track_caller]
pub fn redact(mut value: Value, pointers: &[&str]) -> Value {
    for pointer in pointers {
        let slot = value.pointer_mut(pointer).unwrap_or_else(|| panic!("{pointer} is missing"));
        *slot = Value::String("<redacted>".into());
    }
    value
}

/// How a list paginates: `maxResults`/`nextToken`, or `pageSize`/`marker`/`nextMarker`.
#[derive(Debug, Clone, Copy)]
pub enum Paged {
    Token,
    Marker,
}

/// Every item of a paginated list (`target` has a query with the page size), following tokens
/// until the last page; also the number of pages.
pub async fn collect_pages(
    server: &TestServer,
    method: &str,
    target: &str,
    items: &str,
    paged: Paged,
    item_name: impl Fn(&Value) -> String,
) -> (Vec<String>, usize) {
    let (token_in, token_out) = match paged {
        Paged::Token => ("nextToken", "nextToken"),
        Paged::Marker => ("marker", "nextMarker"),
    };
    let mut names = Vec::new();
    let mut pages = 0;
    let mut token: Option<String> = None;
    loop {
        let url = match &token {
            None => target.to_owned(),
            Some(t) => format!("{target}&{token_in}={t}"),
        };
        let page = server.ok(method, &url, None).await;
        pages += 1;
        names.extend(page[items].as_array().unwrap().iter().map(&item_name));
        match page.get(token_out) {
            Some(t) => token = Some(t.as_str().unwrap().to_owned()),
            None => return (names, pages),
        }
    }
}

/// Any request to the HTTP server at `addr`, sent as given (plus `host`, unless given).
pub async fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Resp {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let mut request = hyper::Request::builder().method(method).uri(target);
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        request = request.header("host", addr.to_string());
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = sender.send_request(request.body(Full::new(Bytes::from(body))).unwrap()).await.unwrap();
    let status = response.status().as_u16();
    let error_type = response.headers().get("x-amzn-errortype").map(|v| v.to_str().unwrap().to_owned());
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes().to_vec();
    Resp { status, error_type, content_type, body }
}
