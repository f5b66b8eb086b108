//! Every failure a request can meet, and the one place that turns it into an HTTP status
//! with a JSON body `{"error": "..."}`.

use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// A request that failed, with what the client needs to fix or retry it.
#[derive(Debug)]
pub enum ApiError {
    /// The body is too large, not JSON, or not the JSON this endpoint reads (413, 400,
    /// 415 or 422).
    Body {
        /// The status the rejection carries.
        status: StatusCode,
        /// What was wrong.
        detail: String,
    },
    /// A value is out of range or cannot be used (422).
    Invalid(String),
    /// A request over one of the server's limits (413), naming the limit.
    Limit {
        /// The limit's name, as `racm3 serve --help` spells it.
        name: &'static str,
        /// Its value.
        limit: u64,
        /// What the request asked for.
        got: u64,
    },
    /// A missing or wrong bearer token (401).
    Unauthorized,
    /// No such endpoint (404).
    NotFound,
    /// No document with that id (404).
    NotFoundId(String),
    /// A document id that is already in the memory (409).
    Conflict(String),
    /// The queue of this kind of work is full (503 with Retry-After).
    Busy {
        /// Which queue.
        lane: &'static str,
    },
    /// The request took longer than the server allows (408).
    Timeout {
        /// The limit.
        seconds: u64,
    },
    /// The server was started without what this endpoint needs (503).
    Unavailable(String),
    /// A failure on the server's side (500); the message names what failed.
    Internal(String),
}

/// Seconds a client should wait after a 503 from a full queue.
const RETRY_AFTER_S: u32 = 1;

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::Body { status, .. } => *status,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Limit { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound | ApiError::NotFoundId(_) => StatusCode::NOT_FOUND,
            ApiError::Timeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Busy { .. } | ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn message(&self) -> String {
        match self {
            ApiError::Body { status, .. } if *status == StatusCode::PAYLOAD_TOO_LARGE => {
                "the body is larger than the server's limit max_body_bytes (--max-body-bytes)"
                    .into()
            }
            ApiError::Body { detail, .. } => format!("bad JSON body: {detail}"),
            ApiError::Invalid(message)
            | ApiError::Conflict(message)
            | ApiError::NotFoundId(message)
            | ApiError::Unavailable(message)
            | ApiError::Internal(message) => message.clone(),
            ApiError::Limit { name, limit, got } => {
                format!("{name} is {got}, above the server's limit of {limit}")
            }
            ApiError::Unauthorized => {
                "missing or wrong bearer token: send `Authorization: Bearer <token>`".into()
            }
            ApiError::Timeout { seconds } => format!(
                "the request took longer than the server's limit of {seconds} s (--timeout); \
                 ask for fewer samples or retry later"
            ),
            ApiError::NotFound => "no such endpoint: see GET / for the page and the API".into(),
            ApiError::Busy { lane } => {
                format!("the {lane} queue is full; retry in {RETRY_AFTER_S} s")
            }
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for ApiError {}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        ApiError::Body {
            status: rejection.status(),
            detail: rejection.body_text(),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        ApiError::Body {
            status: rejection.status(),
            detail: rejection.body_text(),
        }
    }
}

impl From<racm3::Error> for ApiError {
    fn from(error: racm3::Error) -> Self {
        match error {
            racm3::Error::BadInput(message) => ApiError::Invalid(message),
            racm3::Error::Memory(inner) => inner.as_ref().into(),
            racm3::Error::Retrieve(inner) => (*inner).into(),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<&racm3::memory::Error> for ApiError {
    fn from(error: &racm3::memory::Error) -> Self {
        match error {
            racm3::memory::Error::DuplicateId { .. } => ApiError::Conflict(error.to_string()),
            racm3::memory::Error::Dimension { .. }
            | racm3::memory::Error::KeyWidth { .. }
            | racm3::memory::Error::Document { .. } => ApiError::Invalid(error.to_string()),
            // Another process (a `racm3 memory add`) holds the memory: a retry may pass.
            racm3::memory::Error::Locked { .. } => ApiError::Unavailable(error.to_string()),
            _ => ApiError::Internal(error.to_string()),
        }
    }
}

impl From<racm3::retrieve::Error> for ApiError {
    fn from(error: racm3::retrieve::Error) -> Self {
        match error {
            racm3::retrieve::Error::BadInput(message) => ApiError::Invalid(message),
            racm3::retrieve::Error::Memory(inner) => (&inner).into(),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = Json(serde_json::json!({ "error": self.message() }));
        match self {
            ApiError::Busy { .. } => (
                status,
                [(header::RETRY_AFTER, RETRY_AFTER_S.to_string())],
                body,
            )
                .into_response(),
            ApiError::Unauthorized => (
                status,
                [(header::WWW_AUTHENTICATE, "Bearer".to_owned())],
                body,
            )
                .into_response(),
            _ => (status, body).into_response(),
        }
    }
}
