//! Authentication of every API request except `/health` and `/openapi.json`: the one layer in
//! front of all operations.
//!
//! Two schemes are accepted. `Authorization: Bearer <token>` carries the API token created at
//! first start; only its SHA-256 is kept in memory, and hashes are compared in constant time.
//! AWS Signature Version 4 (`Authorization: AWS4-HMAC-SHA256 ...`) is verified by
//! [`sigv4::verify`] against the configured access keys, so `boto3` and the `aws` CLI work with
//! nothing but an `endpoint_url`; any region is accepted, since boto3 users keep whatever region
//! their profile names. A signature covers the body, so the body is buffered here, up to
//! [`MAX_BODY_BYTES`], and handed on to the handler already in memory.
//!
//! The dashboard's browser session is a third way in: without an `Authorization` header, a
//! `warden_session` cookie set by the dashboard's sign-in ([`crate::dashboard`]) authenticates
//! the request. A cookie is sent by the browser whatever page asks, so a cookie-authenticated
//! request that may change something (any method but GET, HEAD and OPTIONS) must also pass the
//! CSRF guard ([`crate::dashboard::csrf_check`]): the `X-Warden-Csrf` header, which another
//! site cannot send without a CORS preflight Warden never grants, and a matching `Origin`.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq as _;

use super::protocol::ApiError;
use super::sigv4::{self, SignedRequest};
use crate::state::AppState;

/// The largest request body accepted. The largest AWS IoT input Warden takes is a policy
/// document (at most 404,600 characters), which fits with room for JSON escaping.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The middleware: authenticates, then passes the request on with its body buffered.
pub async fn authenticate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLargeException",
            format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
        )
        .into_response()
    };
    let declared =
        parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return too_large();
    }
    // Reading fails when the limit is exceeded, or when the client stops sending mid-body, in
    // which case nobody reads this reply anyway.
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return too_large();
    };
    if let Err(e) = check(&state, &parts, &body) {
        tracing::debug!(method = %parts.method, path = parts.uri.path(), code = e.code, "API request refused");
        return e.into_response();
    }
    next.run(Request::from_parts(parts, Body::from(body))).await
}

fn check(state: &AppState, parts: &Parts, body: &Bytes) -> Result<(), ApiError> {
    if let Some(token) = parts.headers.get(header::AUTHORIZATION).and_then(|v| bearer_token(v.as_bytes())) {
        let hash = ring::digest::digest(&ring::digest::SHA256, token);
        return if bool::from(hash.as_ref().ct_eq(&state.api_token_sha256)) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "UnrecognizedClientException",
                "the API token is not valid",
            ))
        };
    }

    if parts.headers.get(header::AUTHORIZATION).is_none()
        && let Some(session) = crate::dashboard::session_id(&parts.headers)
    {
        if !state.sessions.is_valid(session, state.now_ms()) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "UnrecognizedClientException",
                "the dashboard session is not valid or has expired: sign in again",
            ));
        }
        let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        return if safe { Ok(()) } else { crate::dashboard::csrf_check(&parts.headers) };
    }

    // botocore sends header values as UTF-8 and signs them as text (see `sigv4`).
    let headers = parts
        .headers
        .iter()
        .map(|(name, value)| Ok((name.as_str(), std::str::from_utf8(value.as_bytes())?)))
        .collect::<Result<Vec<(&str, &str)>, std::str::Utf8Error>>()
        .map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "IncompleteSignatureException",
                "a header value is not UTF-8, so the request cannot be verified",
            )
        })?;
    let request = SignedRequest {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers: &headers,
        body,
    };
    let secret_for = |akid: &str| {
        state.config.access_keys.iter().find(|k| k.access_key_id == akid).map(|k| k.secret_access_key.clone())
    };
    let now_secs = u64::try_from(state.now_ms() / 1000).unwrap_or(0);
    match sigv4::verify(&request, secret_for, None, now_secs) {
        Ok(_access_key_id) => Ok(()),
        Err(e) if e.aws_code() == "MissingAuthenticationTokenException" => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "MissingAuthenticationTokenException",
            "missing credentials: send Authorization: Bearer <API token>, or sign the request with AWS SigV4",
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::FORBIDDEN),
            e.aws_code(),
            e.to_string(),
        )),
    }
}

/// The token of an `Authorization: Bearer <token>` header (the scheme is case-insensitive).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = value.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then(|| token.trim_ascii())
}
