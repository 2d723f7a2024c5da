//! The control endpoint of a running simulator, and its client (`warden sim misbehave`,
//! `calm`, `status`).
//!
//! A small HTTP API on 127.0.0.1 on a port the system picks; its address and a bearer token
//! are written to the state directory (`sim.addr`, `sim.token` with mode 0600), which is how
//! the commands find it. Refusals have the shape of AWS's errors (an `x-amzn-ErrorType` header
//! and a `{"message"}` body), as Warden's API does.
//!
//! ```text
//! GET  /status                    totals, and the devices that misbehave or are in trouble
//! GET  /devices                   every device's status
//! GET  /devices/{thing}           one device's status
//! POST /devices/{thing}/misbehave {"kind": "scan", "forSeconds": 60}
//! POST /devices/{thing}/calm      {"kind": "scan"} or {} for every misbehaviour
//! ```

use std::hash::{BuildHasher as _, Hasher as _};
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::{Value, json};

use crate::fleet::{DeviceStatus, Fleet, FleetError, FleetTotals, LinkState};
use crate::identity::StateDir;
use crate::misbehaviour::Misbehaviour;

/// Devices listed by `GET /status` in each of its lists, at most.
const STATUS_LIST_MAX: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "no simulator is running with state directory {0} (no sim.addr there); start one with `warden sim --devices N`, or pass its --state-dir"
    )]
    NotRunning(String),
    #[error("cannot reach the simulator at {addr} (from {file}); has it stopped? {source}")]
    Unreachable {
        addr: String,
        file: String,
        #[source]
        source: Box<ureq::Error>,
    },
    /// The simulator refused the request: its error code and message.
    #[error("{message}")]
    Refused { status: u16, code: String, message: String },
}

fn io_error(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> ControlError + '_ {
    move |source| ControlError::Io { path: path.display().to_string(), source }
}

/// The running control endpoint.
#[derive(Debug)]
pub struct ControlServer {
    pub addr: SocketAddr,
    state_dir: StateDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Clone)]
struct Ctx {
    fleet: Arc<Fleet>,
    token: Arc<str>,
}

impl ControlServer {
    /// Serves `fleet` on 127.0.0.1 (a free port) and writes `sim.addr` and `sim.token`.
    pub async fn start(fleet: Arc<Fleet>, state_dir: &StateDir) -> Result<ControlServer, ControlError> {
        let listener =
            tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.map_err(io_error(state_dir.root()))?;
        let addr = listener.local_addr().map_err(io_error(state_dir.root()))?;
        let token = new_token();
        std::fs::create_dir_all(state_dir.root()).map_err(io_error(state_dir.root()))?;
        let token_path = state_dir.control_token();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&token_path)
            .map_err(io_error(&token_path))?;
        file.write_all(token.as_bytes()).map_err(io_error(&token_path))?;
        let addr_path = state_dir.control_addr();
        std::fs::write(&addr_path, format!("{addr}\n")).map_err(io_error(&addr_path))?;

        let app = router(fleet, token.into());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "the control endpoint failed");
            }
        });
        Ok(ControlServer { addr, state_dir: state_dir.clone(), stop: Some(stop), task })
    }

    /// Stops serving and removes `sim.addr` and `sim.token`, unless another simulator has
    /// written its own since.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
        let addr_path = self.state_dir.control_addr();
        if std::fs::read_to_string(&addr_path).is_ok_and(|a| a.trim() == self.addr.to_string()) {
            let _ = std::fs::remove_file(&addr_path);
            let _ = std::fs::remove_file(self.state_dir.control_token());
        }
    }
}

/// 128 bits from the standard library's OS-seeded hasher keys: enough for a token that only
/// keeps other local users from driving the simulator, without another crate.
fn new_token() -> String {
    (0..2)
        .map(|_| {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(crate::fleet::now_epoch_ms() as u64);
            format!("{:016x}", h.finish())
        })
        .collect()
}

fn router(fleet: Arc<Fleet>, token: Arc<str>) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/devices", get(devices))
        .route("/devices/{thing}", get(device))
        .route("/devices/{thing}/misbehave", post(misbehave))
        .route("/devices/{thing}/calm", post(calm))
        .fallback(|| async {
            Refusal {
                status: StatusCode::NOT_FOUND,
                code: "ResourceNotFoundException",
                message: "no such path".into(),
            }
        })
        .with_state(Ctx { fleet, token })
}

/// A refused request, answered in AWS's error shape.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Refusal {
    fn invalid(message: impl Into<String>) -> Refusal {
        Refusal { status: StatusCode::BAD_REQUEST, code: "InvalidRequestException", message: message.into() }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = json!({ "message": self.message }).to_string();
        let mut response = (self.status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
        response.headers_mut().insert("x-amzn-errortype", HeaderValue::from_static(self.code));
        response
    }
}

impl From<FleetError> for Refusal {
    fn from(e: FleetError) -> Refusal {
        match e {
            FleetError::UnknownThing(_) => Refusal {
                status: StatusCode::NOT_FOUND,
                code: "ResourceNotFoundException",
                message: e.to_string(),
            },
            other => Refusal {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "ServiceUnavailableException",
                message: other.to_string(),
            },
        }
    }
}

type Reply = Result<Response, Refusal>;

fn reply(value: &impl Serialize) -> Reply {
    let text = serde_json::to_string(value).map_err(|e| Refusal {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        code: "InternalFailureException",
        message: e.to_string(),
    })?;
    Ok(([(header::CONTENT_TYPE, "application/json")], text).into_response())
}

fn check_token(ctx: &Ctx, headers: &HeaderMap) -> Result<(), Refusal> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given.is_some_and(|t| t.trim() == &*ctx.token) {
        Ok(())
    } else {
        Err(Refusal {
            status: StatusCode::UNAUTHORIZED,
            code: "UnauthorizedException",
            message: "a valid bearer token (sim.token) is required".into(),
        })
    }
}

/// `GET /status`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReply {
    pub uptime_s: f64,
    pub totals: FleetTotals,
    /// Devices with an active misbehaviour (at most 100).
    pub misbehaving: Vec<DeviceStatus>,
    /// Devices not connected, contained, or with rejected reports (at most 100).
    pub troubled: Vec<DeviceStatus>,
}

async fn status(State(ctx): State<Ctx>, headers: HeaderMap) -> Reply {
    check_token(&ctx, &headers)?;
    let all = ctx.fleet.devices();
    let troubled = |d: &&DeviceStatus| {
        d.agent.state != LinkState::Connected
            || d.app.as_ref().is_some_and(|a| a.state != LinkState::Connected)
            || d.contained
            || d.reports_rejected > 0
    };
    reply(&StatusReply {
        uptime_s: ctx.fleet.uptime().as_secs_f64(),
        totals: ctx.fleet.totals(),
        misbehaving: all
            .iter()
            .filter(|d| !d.misbehaving.is_empty())
            .take(STATUS_LIST_MAX)
            .cloned()
            .collect(),
        troubled: all.iter().filter(troubled).take(STATUS_LIST_MAX).cloned().collect(),
    })
}

async fn devices(State(ctx): State<Ctx>, headers: HeaderMap) -> Reply {
    check_token(&ctx, &headers)?;
    reply(&json!({ "devices": ctx.fleet.devices() }))
}

async fn device(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    thing: Result<Path<String>, PathRejection>,
) -> Reply {
    check_token(&ctx, &headers)?;
    let thing = path(thing)?;
    reply(&ctx.fleet.device(&thing)?)
}

/// The thing of a path, or axum's refusal in AWS's shape.
fn path(p: Result<Path<String>, PathRejection>) -> Result<String, Refusal> {
    p.map(|Path(thing)| thing).map_err(|e| Refusal::invalid(e.body_text()))
}

/// The body, or axum's refusal (too large, unreadable) in AWS's shape.
fn content(b: Result<Bytes, BytesRejection>) -> Result<Bytes, Refusal> {
    b.map_err(|e| Refusal { status: e.status(), code: "InvalidRequestException", message: e.body_text() })
}

/// The body of `misbehave` and `calm`: a JSON object with the fields named, nothing else.
fn body(bytes: &Bytes, allowed: &[&str]) -> Result<serde_json::Map<String, Value>, Refusal> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(bytes) else {
        return Err(Refusal::invalid("the body must be a JSON object"));
    };
    if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(Refusal::invalid(format!("unknown field {unknown:?}; expected {}", allowed.join(", "))));
    }
    Ok(map)
}

fn kind_field(map: &serde_json::Map<String, Value>) -> Result<Option<Misbehaviour>, Refusal> {
    match map.get("kind") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => s.parse().map(Some).map_err(Refusal::invalid),
        Some(_) => Err(Refusal::invalid("kind: must be a string such as \"scan\"")),
    }
}

async fn misbehave(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    thing: Result<Path<String>, PathRejection>,
    bytes: Result<Bytes, BytesRejection>,
) -> Reply {
    check_token(&ctx, &headers)?;
    let (thing, bytes) = (path(thing)?, content(bytes)?);
    let map = body(&bytes, &["kind", "forSeconds"])?;
    let kind = kind_field(&map)?.ok_or_else(|| Refusal::invalid("kind: required"))?;
    let duration = match map.get("forSeconds") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_f64() {
            Some(s) if s > 0.0 && s <= 366.0 * 86_400.0 => Some(Duration::from_secs_f64(s)),
            _ => {
                return Err(Refusal::invalid(
                    "forSeconds: must be a number of seconds above 0, at most a year",
                ));
            }
        },
    };
    ctx.fleet.misbehave(&thing, kind, duration).await?;
    reply(&ctx.fleet.device(&thing)?)
}

async fn calm(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    thing: Result<Path<String>, PathRejection>,
    bytes: Result<Bytes, BytesRejection>,
) -> Reply {
    check_token(&ctx, &headers)?;
    let (thing, bytes) = (path(thing)?, content(bytes)?);
    let kind = kind_field(&body(&bytes, &["kind"])?)?;
    ctx.fleet.calm(&thing, kind).await?;
    reply(&ctx.fleet.device(&thing)?)
}

/// A client of the control endpoint of the simulator running in a state directory. Blocking.
#[derive(Debug)]
pub struct ControlClient {
    base: String,
    token: String,
    addr_file: String,
    agent: ureq::Agent,
}

impl ControlClient {
    /// Finds the simulator through `sim.addr` and `sim.token`.
    pub fn find(state_dir: &StateDir) -> Result<ControlClient, ControlError> {
        let addr_path = state_dir.control_addr();
        let addr = match std::fs::read_to_string(&addr_path) {
            Ok(a) => a.trim().to_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ControlError::NotRunning(state_dir.root().display().to_string()));
            }
            Err(e) => return Err(io_error(&addr_path)(e)),
        };
        let token_path = state_dir.control_token();
        let token = std::fs::read_to_string(&token_path).map_err(io_error(&token_path))?.trim().to_owned();
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build();
        Ok(ControlClient {
            base: format!("http://{addr}"),
            token,
            addr_file: addr_path.display().to_string(),
            agent: ureq::Agent::new_with_config(config),
        })
    }

    pub fn status(&self) -> Result<Value, ControlError> {
        self.call("GET", "/status", None)
    }

    pub fn device(&self, thing: &str) -> Result<Value, ControlError> {
        self.call("GET", &format!("/devices/{thing}"), None)
    }

    pub fn misbehave(
        &self,
        thing: &str,
        kind: Misbehaviour,
        duration: Option<Duration>,
    ) -> Result<Value, ControlError> {
        let mut body = json!({ "kind": kind.as_str() });
        if let Some(d) = duration {
            body["forSeconds"] = json!(d.as_secs_f64());
        }
        self.call("POST", &format!("/devices/{thing}/misbehave"), Some(body))
    }

    pub fn calm(&self, thing: &str, kind: Option<Misbehaviour>) -> Result<Value, ControlError> {
        let body = kind.map_or_else(|| json!({}), |k| json!({ "kind": k.as_str() }));
        self.call("POST", &format!("/devices/{thing}/calm"), Some(body))
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, ControlError> {
        let unreachable = |e: ureq::Error| ControlError::Unreachable {
            addr: self.base.clone(),
            file: self.addr_file.clone(),
            source: Box::new(e),
        };
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json");
        let request = request.body(body.map(|b| b.to_string()).unwrap_or_default()).map_err(|e| {
            ControlError::Refused { status: 0, code: "InvalidRequest".into(), message: e.to_string() }
        })?;
        let mut response = self.agent.run(request).map_err(unreachable)?;
        let status = response.status().as_u16();
        let code =
            response.headers().get("x-amzn-errortype").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let text = response.body_mut().read_to_string().map_err(unreachable)?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(value);
        }
        Err(ControlError::Refused {
            status,
            code: code.unwrap_or_else(|| format!("HTTP {status}")),
            message: value["message"].as_str().map_or(text, str::to_owned),
        })
    }
}
