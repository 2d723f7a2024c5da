//! `GET /warden/events`: the live-event bus as server-sent events, one JSON object per event in
//! `data:` lines (`{"type": "report", ...}`; the shapes are [`crate::state::LiveEvent`]'s).
//!
//! The stream opens with `{"type": "hello"}`, so a client knows it is subscribed. A client that
//! falls more than [`crate::state::LIVE_BUFFER`] events behind gets `{"type": "resync"}` in
//! place of what it missed, and refetches what it shows: a slow browser costs itself a refetch,
//! never ingest a wait. A comment line every [`KEEPALIVE`] keeps proxies from closing an idle
//! stream and lets the server notice a browser that went away. Streams end at shutdown, and a
//! stream opened with the dashboard's session cookie ends at the first keep-alive after that
//! session ended (sign-out or expiry).

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::broadcast::error::RecvError;

use super::Dashboard;

/// How often an idle stream carries a comment line.
pub const KEEPALIVE: Duration = Duration::from_secs(15);

/// One SSE frame carrying `json`.
fn frame(json: &str) -> Bytes {
    Bytes::from(format!("data: {json}\n\n"))
}

pub(super) async fn stream(State(d): State<Dashboard>, headers: HeaderMap) -> Response {
    // The cookie counts only without an `Authorization` header (as in `api::auth`).
    let session = match headers.contains_key(header::AUTHORIZATION) {
        true => None,
        false => super::session_id(&headers).map(|id| (d.state.clone(), id.to_owned())),
    };
    let rx = d.state.subscribe_live();
    let stop = d.state.live_stopped();
    let mut keepalive = tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The reconnect delay for the browser, and the greeting.
    let first = Bytes::from_static(b"retry: 2000\ndata: {\"type\":\"hello\"}\n\n");
    let body = futures_util::stream::unfold(
        (Some(first), rx, stop, keepalive, session),
        |(first, mut rx, mut stop, mut keepalive, session)| async move {
            if let Some(first) = first {
                return Some((
                    Ok::<_, std::convert::Infallible>(first),
                    (None, rx, stop, keepalive, session),
                ));
            }
            if *stop.borrow() {
                return None;
            }
            let bytes = tokio::select! {
                _ = stop.wait_for(|s| *s) => return None,
                _ = keepalive.tick() => {
                    if let Some((state, id)) = &session
                        && !state.sessions.is_valid(id, state.now_ms())
                    {
                        return None;
                    }
                    Bytes::from_static(b": keep-alive\n\n")
                }
                event = rx.recv() => match event {
                    Ok(event) => frame(&serde_json::to_string(&event).unwrap_or_default()),
                    Err(RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "a live-event stream fell behind; told to resync");
                        frame(r#"{"type":"resync"}"#)
                    }
                    Err(RecvError::Closed) => return None,
                },
            };
            Some((Ok(bytes), (None, rx, stop, keepalive, session)))
        },
    );
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}
