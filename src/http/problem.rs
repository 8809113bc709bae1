//! RFC 9457 problem details for every error the API returns.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use oms_core::domain::OmsError;
use serde::Serialize;

/// An API error, rendered as `application/problem+json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the kind.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong this time.
    pub detail: String,
    /// Stable machine-readable code, e.g. `VALIDATION_FAILED`.
    pub code: String,
}

impl Problem {
    /// A problem with this status, code and detail.
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!(
                "https://oms.dev/problems/{}",
                code.to_ascii_lowercase().replace('_', "-")
            ),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            code: code.to_owned(),
        }
    }

    /// 400 `VALIDATION_FAILED`.
    pub fn validation(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "VALIDATION_FAILED", detail)
    }

    /// 401 `UNAUTHORIZED`.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", detail)
    }

    /// The status as a [`StatusCode`].
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl From<OmsError> for Problem {
    fn from(e: OmsError) -> Self {
        let detail = e.to_string();
        let (status, code) = match &e {
            OmsError::Invalid(_) => (StatusCode::BAD_REQUEST, "VALIDATION_FAILED"),
            OmsError::Forbidden(_) => (StatusCode::FORBIDDEN, "FORBIDDEN"),
            OmsError::ProductNotFound { .. } => (StatusCode::NOT_FOUND, "PRODUCT_NOT_FOUND"),
            OmsError::OrderNotFound { .. } => (StatusCode::NOT_FOUND, "ORDER_NOT_FOUND"),
            OmsError::TraceNotFound { .. } => (StatusCode::NOT_FOUND, "TRACE_NOT_FOUND"),
            OmsError::ProductExists { .. } => (StatusCode::CONFLICT, "PRODUCT_EXISTS"),
            OmsError::OutOfStock { .. } => (StatusCode::CONFLICT, "OUT_OF_STOCK"),
            OmsError::Conflict(_) => (StatusCode::CONFLICT, "CONFLICT"),
            OmsError::Unavailable { .. } => {
                tracing::warn!(error = %e, "dependency unavailable");
                (StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE")
            }
            _ => {
                tracing::error!(error = %e, "unexpected error");
                (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR")
            }
        };
        Self::new(status, code, detail)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
