//! Errors: [`ApiError`] is what a request gets back, in OpenAI's error shape
//! (`{"error": {"message", "type", "param", "code"}}`); [`ServeError`] is what stops the server
//! from starting.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use retroformer_llm::LlmError;
use serde_json::json;

/// An error answered to a client: an HTTP status and OpenAI's error body.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's `type`: `invalid_request_error`, `authentication_error`, `not_found_error`,
    /// `rate_limit_error`, `server_error`.
    pub kind: &'static str,
    /// The request field at fault, when there is one.
    pub param: Option<String>,
    /// A stable machine-readable code (`model_not_found`, `queue_full`, ...).
    pub code: Option<&'static str>,
    /// Seconds a client should wait before retrying (429).
    pub retry_after: Option<u32>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
            retry_after: None,
        }
    }

    /// 400: the request is wrong; `param` names the field.
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message);
        e.param = Some(param.to_string());
        e
    }

    /// 400 for a field the server understands but does not implement.
    pub fn unsupported(param: &str, message: impl Into<String>) -> Self {
        let mut e = Self::invalid(param, message);
        e.code = Some("unsupported_parameter");
        e
    }

    /// 404 for a model or adapter that is not served.
    pub fn not_found(param: &str, code: &'static str, message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::NOT_FOUND, "not_found_error", message);
        e.param = Some(param.to_string());
        e.code = Some(code);
        e
    }

    /// 401: no key, or the wrong one.
    pub fn unauthorized() -> Self {
        let mut e = Self::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "a valid API key is needed: send `Authorization: Bearer KEY`",
        );
        e.code = Some("invalid_api_key");
        e
    }

    /// 409: a compare-and-swap on the adapter generation lost.
    pub fn conflict(message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::CONFLICT, "invalid_request_error", message);
        e.code = Some("generation_mismatch");
        e
    }

    /// 429: the queue is full; retry after `seconds`.
    pub fn queue_full(depth: usize, seconds: u32) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            format!("the server's queue is full ({depth} requests waiting); retry later"),
        );
        e.code = Some("queue_full");
        e.retry_after = Some(seconds);
        e
    }

    /// 504: the request ran past the server's deadline.
    pub fn deadline(seconds: f64) -> Self {
        let mut e = Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "server_error",
            format!("the request ran past the server's deadline of {seconds} s"),
        );
        e.code = Some("deadline_exceeded");
        e
    }

    /// 503: the model no longer serves (its session failed and could not be reopened).
    pub fn unavailable(message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message);
        e.code = Some("model_unavailable");
        e
    }

    /// 500: a failure of the server or the model, not of the request.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    /// Any status with a message (rejections of the HTTP layer: 413, 415, 405, 404).
    pub fn status(status: StatusCode, message: impl Into<String>) -> Self {
        let kind = if status.is_server_error() {
            "server_error"
        } else {
            "invalid_request_error"
        };
        Self::new(status, kind, message)
    }

    /// The JSON body OpenAI's clients parse.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl From<LlmError> for ApiError {
    /// A request's own fault (prompt too long, bad parameter, bad grammar) is a 400; the rest
    /// is the server's.
    fn from(e: LlmError) -> Self {
        let param = match &e {
            LlmError::InvalidParam { field, .. } => field.to_string(),
            LlmError::Grammar { .. } => "grammar".into(),
            _ => "prompt".into(),
        };
        if e.is_request_error() {
            Self::invalid(&param, e.to_string())
        } else {
            Self::internal(e.to_string())
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body())).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if matches!(
            self.status,
            StatusCode::GATEWAY_TIMEOUT | StatusCode::SERVICE_UNAVAILABLE
        ) {
            // OpenAI's clients retry a 5xx twice by default: a request that ran out its whole
            // deadline would run it out twice more, and a model that stopped serving stays
            // stopped. They honour this header.
            r.headers_mut()
                .insert("x-should-retry", HeaderValue::from_static("false"));
        }
        r
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("--listen {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("--listen {addr} is not a loopback address: serving other machines needs --api-key")]
    NeedsKey { addr: String },
    #[error("the server stopped: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Config(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_error_tells_openais_clients_not_to_retry_it_and_a_full_queue_when_to() {
        let r = ApiError::deadline(600.0).into_response();
        assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(r.headers()["x-should-retry"], "false");
        let r = ApiError::queue_full(64, 2).into_response();
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
        assert!(r.headers().get("x-should-retry").is_none());
        let r = ApiError::unavailable("stopped").into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()["x-should-retry"], "false");
    }
}
