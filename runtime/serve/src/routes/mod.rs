//! The router: one module per endpoint, and the layers every request passes (the API key,
//! the body limit, metrics, OpenAI-shaped errors for what the HTTP layer rejects).

mod adapters;
mod chat;
mod completions;
mod feedback;
mod generate;
mod health;
mod models;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::engine::Engine;
use crate::error::ApiError;

/// What every handler gets.
pub type AppState = Arc<Engine>;

/// The server's routes over `engine`.
pub fn router(engine: Arc<Engine>) -> Router {
    let limit = engine.limits.max_body_bytes;
    let api = Router::new()
        .route("/v1/chat/completions", post(chat::handle))
        .route("/v1/completions", post(completions::handle))
        .route("/v1/models", get(models::list))
        .route("/v1/adapters", get(adapters::list))
        .route("/v1/adapters/activate", post(adapters::activate))
        .route("/v1/feedback", post(feedback::handle))
        .route("/metrics", get(health::metrics))
        .route_layer(middleware::from_fn_with_state(engine.clone(), authorize));
    Router::new()
        .route("/health", get(health::health))
        .merge(api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(engine.clone(), count))
        .with_state(engine)
}

/// Refuses a request without the server's key, when it has one.
async fn authorize(State(engine): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(key) = &engine.limits.api_key {
        let sent = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !constant_time_eq(sent.as_bytes(), key.as_bytes()) {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(req).await
}

/// Equality whose time does not depend on where the inputs differ (only on their lengths).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Counts each answer by route and status, with its latency (to the response's head).
async fn count(State(engine): State<AppState>, req: Request, next: Next) -> Response {
    let endpoint = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("other".to_string(), |p| p.as_str().to_string());
    let start = Instant::now();
    let r = next.run(req).await;
    engine.metrics.request(
        &endpoint,
        r.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    r
}

async fn not_found(req: Request) -> ApiError {
    ApiError::status(
        StatusCode::NOT_FOUND,
        format!("no route {} {}", req.method(), req.uri().path()),
    )
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::status(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

/// A JSON body whose rejections (malformed, wrong types, too large, wrong content type) are
/// answered in OpenAI's error shape: a type error is a 400 naming its field, as OpenAI's is.
pub struct ApiJson<T>(pub T);

impl<T> FromRequest<AppState> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(';').next().unwrap_or("").trim().ends_with("json"));
        if !json {
            return Err(ApiError::status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "expected a request with `Content-Type: application/json`",
            ));
        }
        // A client trickling its body would otherwise hold the request (and its connection)
        // for as long as it likes: the header timeout ends with the headers.
        let wait = state.limits.body_wait;
        let bytes = tokio::time::timeout(wait, axum::body::Bytes::from_request(req, state))
            .await
            .map_err(|_| {
                ApiError::status(
                    StatusCode::REQUEST_TIMEOUT,
                    format!("the request body took more than {} s", wait.as_secs_f64()),
                )
            })?
            .map_err(|r| ApiError::status(r.status(), r.body_text()))?;
        body_of(&bytes).map(Self)
    }
}

/// `bytes` read as a `T`, or the 400 naming the field at fault.
fn body_of<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let e = match serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(bytes))
    {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    if e.inner().is_syntax() || e.inner().is_eof() {
        let why = format!("the body is not valid JSON: {}", e.inner());
        return Err(ApiError::status(StatusCode::BAD_REQUEST, why));
    }
    let mut field = e.path().to_string();
    let mut message = e.inner().to_string();
    if field == "." {
        // Serde loses the path inside a flattened struct: the sampling fields are read again
        // on their own to find it.
        if let Some(located) = sampling_fault(bytes) {
            (field, message) = located;
        }
    }
    if field == "." {
        return Err(ApiError::status(StatusCode::BAD_REQUEST, message));
    }
    Err(ApiError::invalid(&field, format!("{field}: {message}")))
}

/// The sampling field at fault in `bytes`, and why (none when they read well alone).
fn sampling_fault(bytes: &[u8]) -> Option<(String, String)> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let e = serde_path_to_error::deserialize::<_, crate::api::Sampling>(v).err()?;
    Some((e.path().to_string(), e.inner().to_string()))
}

/// A query string whose rejections (a bad percent-encoding, a wrong type) are answered in
/// OpenAI's error shape.
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| Self(q.0))
            .map_err(|r| ApiError::status(r.status(), r.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn keys_compare_equal_only_when_identical() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
