//! The web dashboard: the page at `/` (embedded from `crates/warden-server/dashboard/`), the
//! browser's sign-in, the live-event stream, and two read-only summaries the page would
//! otherwise join from many API calls (the fleet, and one thing).
//!
//! The page is a client of the same authenticated REST API as the CLI: [`crate::api`]'s
//! authentication accepts the session cookie set here in addition to bearer tokens and SigV4
//! (see `api::auth` for the CSRF guard on cookie-authenticated changes). The summaries and the
//! event stream sit behind that same authentication.

mod events;
mod fleet;
pub mod session;

use std::sync::{Arc, Weak};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq as _;
use warden_broker::Broker;

pub use events::KEEPALIVE;
pub use session::Sessions;

use crate::api::protocol::{ApiError, Json};
use crate::state::AppState;

/// The header every state-changing request authenticated by the session cookie must carry
/// (the page's `fetch` always sends it). Another site's form or script cannot set it without a
/// CORS preflight, which Warden never grants.
pub const CSRF_HEADER: &str = "x-warden-csrf";

/// The dashboard's files, embedded at build time (also in debug builds, so tests serve what a
/// release serves).
#[derive(rust_embed::Embed)]
#[folder = "dashboard/"]
struct Assets;

/// What the dashboard routes need besides the state: the broker, to say who is connected. Held
/// weakly: shutdown needs the last strong reference to stop the broker.
#[derive(Clone)]
struct Dashboard {
    state: AppState,
    broker: Weak<Broker>,
}

/// The dashboard's routes, to merge with [`crate::api::router`].
pub fn router(state: AppState, broker: &Arc<Broker>) -> Router {
    let dashboard = Dashboard { state: state.clone(), broker: Arc::downgrade(broker) };
    let authenticated = Router::new()
        .route("/warden/fleet", get(fleet::fleet))
        .route("/warden/things/{thingName}/overview", get(fleet::overview))
        .route("/warden/events", get(events::stream))
        .route_layer(middleware::from_fn_with_state(state.clone(), crate::api::auth::authenticate))
        .with_state(dashboard);
    Router::new()
        .route("/", get(index))
        .route("/dashboard/assets/{*file}", get(asset))
        .route("/dashboard/session", get(session_status).post(sign_in).delete(sign_out))
        .with_state(state)
        .merge(authenticated)
}

async fn index() -> Response {
    serve_file("index.html")
}

async fn asset(request: Request) -> Response {
    let path = request.uri().path().trim_start_matches("/dashboard/assets/").to_owned();
    serve_file(&path)
}

fn serve_file(path: &str) -> Response {
    let Some(file) = Assets::get(path) else {
        return ApiError::not_found(format!("no dashboard file {path}")).into_response();
    };
    let content_type = match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => "text/plain; charset=utf-8",
    };
    let mut response = (StatusCode::OK, file.data.into_owned()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Small files on a local server: always revalidate, so an upgrade is seen at once.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    response
}

/// `GET /dashboard/session`: whether the browser's cookie is a live session.
async fn session_status(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let signed_in = session_id(&headers).is_some_and(|id| s.sessions.is_valid(id, s.now_ms()));
    json_response(json!({ "signedIn": signed_in }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    token: String,
}

/// `POST /dashboard/session` with `{"token": API token}`: sets the session cookie.
async fn sign_in(State(s): State<AppState>, headers: HeaderMap, Json(input): Json<SignIn>) -> Response {
    if let Err(e) = csrf_check(&headers) {
        return e.into_response();
    }
    let hash = ring::digest::digest(&ring::digest::SHA256, input.token.trim().as_bytes());
    if !bool::from(hash.as_ref().ct_eq(&s.api_token_sha256)) {
        tracing::info!("dashboard sign-in refused: wrong API token");
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "UnrecognizedClientException",
            "the API token is not valid",
        )
        .into_response();
    }
    let id = s.sessions.create(s.now_ms());
    let cookie = format!(
        "{}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        session::COOKIE,
        session::SESSION_LIFETIME_MS / 1000
    );
    let mut response = json_response(json!({ "expiresIn": session::SESSION_LIFETIME_MS / 1000 }));
    response.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("hex and ASCII"));
    response
}

/// `DELETE /dashboard/session`: ends the session and clears the cookie.
async fn sign_out(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(e) = csrf_check(&headers) {
        return e.into_response();
    }
    if let Some(id) = session_id(&headers) {
        s.sessions.end(id);
    }
    let mut response = json_response(json!({}));
    let cookie = format!("{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0", session::COOKIE);
    response.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("ASCII"));
    response
}

/// A 200 reply with a JSON body, as the API's replies are shaped.
fn json_response(body: serde_json::Value) -> Response {
    crate::api::protocol::reply(body).unwrap_or_else(IntoResponse::into_response)
}

/// The session id in the request's `Cookie` header, if any.
pub fn session_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| session::cookie(v, session::COOKIE))
}

/// The CSRF guard: the custom header, and, when the browser names the page's origin, the same
/// host as the request's.
pub fn csrf_check(headers: &HeaderMap) -> Result<(), ApiError> {
    let refused = |why: &str| ApiError::new(StatusCode::FORBIDDEN, "AccessDeniedException", why.to_owned());
    if headers.get(CSRF_HEADER).is_none_or(|v| v.is_empty()) {
        return Err(refused(
            "a change made with the dashboard's session cookie must carry the X-Warden-Csrf header",
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let origin_host = origin.split_once("://").map_or("", |(_, h)| h);
        if origin_host != host {
            return Err(refused("the request's Origin is not this server"));
        }
    }
    Ok(())
}
