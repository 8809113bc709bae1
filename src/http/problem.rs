//! RFC 9457 problem details for every error the API returns.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use oms_core::domain::{FieldError, FieldErrors, OmsError};
use serde::Serialize;

/// An API error, rendered as `application/problem+json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(
    description = "An RFC 9457 problem: every 4xx/5xx answer. Some codes add extension members (`errors` for VALIDATION_FAILED when fields of the body break rules, `position` for NOT_ADMITTED, `gatewayCode` and `gatewayMessage` for PAYMENT_DECLINED)."
)]
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
    /// Seconds to wait before trying again: sent as `Retry-After` (429).
    #[serde(skip)]
    pub retry_after: Option<u32>,
    /// Extension members of the problem (RFC 9457, section 3.2), e.g.
    /// `errors` (the fields that break rules) for `VALIDATION_FAILED`, or
    /// `position` in the waiting room's line for `NOT_ADMITTED`.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    #[schema(ignore)]
    pub extensions: Option<Box<serde_json::Map<String, serde_json::Value>>>,
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
            retry_after: None,
            extensions: None,
        }
    }

    /// The same problem with one more extension member.
    pub fn with_extension(mut self, name: &str, value: impl Into<serde_json::Value>) -> Self {
        self.extensions
            .get_or_insert_with(Default::default)
            .insert(name.to_owned(), value.into());
        self
    }

    /// The same problem with the extension member `errors`: the fields that
    /// break rules, each as `{"field", "code", "message"}` (none: the
    /// problem as it is).
    pub fn with_errors<'a>(self, errors: impl IntoIterator<Item = &'a FieldError>) -> Self {
        let list: Vec<serde_json::Value> = errors
            .into_iter()
            .map(|e| {
                serde_json::json!({
                    "field": e.field,
                    "code": e.code.as_str(),
                    "message": e.message,
                })
            })
            .collect();
        if list.is_empty() {
            self
        } else {
            self.with_extension("errors", list)
        }
    }

    /// 400 `VALIDATION_FAILED` for these fields: the detail names each
    /// (`invalid input: items[0].quantity must be between 1 and 1000; …`),
    /// `errors` lists them.
    pub fn invalid_fields(errors: FieldErrors) -> Self {
        Self::from(OmsError::Validation(errors))
    }

    /// 500 `INTERNAL_ERROR`: a broken invariant or a value that cannot be
    /// encoded. `what` is logged at error level, never sent.
    pub fn internal(what: impl std::fmt::Display) -> Self {
        Self::from(OmsError::Internal(what.to_string()))
    }

    /// The same problem, asking the client to wait `secs` (`Retry-After`).
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(u32::try_from(secs).unwrap_or(u32::MAX));
        self
    }

    /// 400 `VALIDATION_FAILED`.
    pub fn validation(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "VALIDATION_FAILED", detail)
    }

    /// 500 `INTERNAL_ERROR`, saying nothing of the cause (logged by the
    /// caller).
    fn internal_error() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            "the request could not be handled; the error was logged",
        )
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

/// Client errors keep their message (it is about the request), and
/// `Validation` lists its fields in `errors`; server-side errors are logged
/// here and answered with what a client can act on: the dependency that
/// failed, never the text of its error. `Internal` (a bug, a corrupted
/// record, a value that does not encode) is 500 `INTERNAL_ERROR`, logged at
/// error level, with a detail that says nothing of it.
impl From<OmsError> for Problem {
    fn from(e: OmsError) -> Self {
        match &e {
            OmsError::Invalid(_) => Self::validation(e.to_string()),
            OmsError::Validation(errors) => Self::validation(e.to_string()).with_errors(errors),
            OmsError::Forbidden(_) => Self::new(StatusCode::FORBIDDEN, "FORBIDDEN", e.to_string()),
            OmsError::ProductNotFound { .. } => {
                Self::new(StatusCode::NOT_FOUND, "PRODUCT_NOT_FOUND", e.to_string())
            }
            OmsError::OrderNotFound { .. } => {
                Self::new(StatusCode::NOT_FOUND, "ORDER_NOT_FOUND", e.to_string())
            }
            OmsError::TraceNotFound { .. } => {
                Self::new(StatusCode::NOT_FOUND, "TRACE_NOT_FOUND", e.to_string())
            }
            OmsError::ProductExists { .. } => {
                Self::new(StatusCode::CONFLICT, "PRODUCT_EXISTS", e.to_string())
            }
            OmsError::OutOfStock { .. } => {
                Self::new(StatusCode::CONFLICT, "OUT_OF_STOCK", e.to_string())
            }
            OmsError::LimitExceeded { .. } => {
                Self::new(StatusCode::CONFLICT, "LIMIT_EXCEEDED", e.to_string())
            }
            OmsError::SaleNotStarted { .. } => {
                Self::new(StatusCode::CONFLICT, "SALE_NOT_STARTED", e.to_string())
            }
            OmsError::SaleEnded { .. } => {
                Self::new(StatusCode::CONFLICT, "SALE_ENDED", e.to_string())
            }
            OmsError::RateLimited { retry_after } => {
                let secs = retry_after.as_millis().div_ceil(1000).max(1) as u64;
                Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "RATE_LIMITED",
                    format!("too many order requests; try again in {secs} s"),
                )
                .with_retry_after(secs)
            }
            OmsError::NotAdmitted {
                position,
                in_line,
                retry_after,
            } => {
                let secs = retry_after.as_millis().div_ceil(1000).max(1) as u64;
                let detail = match (in_line, position) {
                    (true, Some(p)) => {
                        format!("waiting in line at position {p}; ordering opens on admission")
                    }
                    (true, None) => "waiting in line; ordering opens on admission".to_owned(),
                    (false, Some(p)) => format!(
                        "enter the waiting room first (POST /api/v1/waiting-room): \
                         you would be at position {p}"
                    ),
                    (false, None) => {
                        "enter the waiting room first (POST /api/v1/waiting-room)".to_owned()
                    }
                };
                let problem = Self::new(StatusCode::TOO_MANY_REQUESTS, "NOT_ADMITTED", detail)
                    .with_retry_after(secs);
                match position {
                    Some(p) => problem.with_extension("position", *p),
                    None => problem,
                }
            }
            OmsError::AmountMismatch { .. } => {
                Self::new(StatusCode::BAD_REQUEST, "AMOUNT_MISMATCH", e.to_string())
            }
            OmsError::PaymentDeclined { code, message } => Self::new(
                StatusCode::PAYMENT_REQUIRED,
                "PAYMENT_DECLINED",
                format!("the payment was declined: {message}"),
            )
            .with_extension("gatewayCode", code.clone())
            .with_extension("gatewayMessage", message.clone()),
            OmsError::OrderNotPayable { .. } => {
                Self::new(StatusCode::CONFLICT, "ORDER_NOT_PAYABLE", e.to_string())
            }
            OmsError::OrderNotCancellable { .. } | OmsError::IllegalTransition { .. } => {
                Self::new(StatusCode::CONFLICT, "ORDER_NOT_CANCELLABLE", e.to_string())
            }
            OmsError::PaymentUnknown(_) => {
                tracing::warn!(error = %e, "payment outcome unknown");
                Self::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "PAYMENT_UNKNOWN",
                    "the payment gateway did not answer in time; the order is reconciled with it and never charged twice",
                )
            }
            OmsError::NotInWaitingRoom => Self::new(
                StatusCode::NOT_FOUND,
                "NOT_IN_WAITING_ROOM",
                "not in the waiting room: enter it with POST /api/v1/waiting-room",
            ),
            OmsError::WaitingRoomOff => Self::new(
                StatusCode::NOT_FOUND,
                "WAITING_ROOM_OFF",
                "the waiting room is off: order directly",
            ),
            OmsError::Unauthenticated(detail) => Self::unauthorized(detail.clone()),
            OmsError::BadCredentials => Self::new(
                StatusCode::UNAUTHORIZED,
                "BAD_CREDENTIALS",
                "email or password is wrong",
            ),
            OmsError::EmailTaken => Self::new(
                StatusCode::CONFLICT,
                "EMAIL_TAKEN",
                "a member with this email exists already",
            ),
            OmsError::MemberNotFound { .. } => {
                Self::new(StatusCode::NOT_FOUND, "MEMBER_NOT_FOUND", e.to_string())
            }
            OmsError::Throttled { retry_after } => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "TOO_MANY_ATTEMPTS",
                format!(
                    "too many failed attempts; try again in {} s",
                    retry_after.as_secs().max(1)
                ),
            )
            .with_retry_after(retry_after.as_secs().max(1)),
            OmsError::PreconditionFailed { .. } => Self::new(
                StatusCode::PRECONDITION_FAILED,
                "PRECONDITION_FAILED",
                e.to_string(),
            ),
            OmsError::PreconditionRequired(_) => Self::new(
                StatusCode::PRECONDITION_REQUIRED,
                "PRECONDITION_REQUIRED",
                e.to_string(),
            ),
            OmsError::Conflict(_) => {
                // The message may come from the database (a deadlock, a
                // constraint): log it, answer what the client can do.
                tracing::info!(error = %e, "conflict");
                Self::new(
                    StatusCode::CONFLICT,
                    "CONFLICT",
                    "the resource was changed at the same time; try again",
                )
            }
            OmsError::Unavailable { what, .. } => {
                tracing::warn!(error = %e, "dependency unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "SERVICE_UNAVAILABLE",
                    format!("{what} is unavailable; try again later"),
                )
            }
            OmsError::Internal(_) => {
                tracing::error!(error = %e, "internal error");
                Self::internal_error()
            }
            // An error this version does not know yet.
            _ => {
                tracing::error!(error = %e, "unexpected error");
                Self::internal_error()
            }
        }
    }
}

/// The body answered when a problem cannot be encoded itself.
const UNENCODABLE_PROBLEM: &str = r#"{"type":"https://oms.dev/problems/internal-error","title":"Internal Server Error","status":500,"detail":"the request could not be handled; the error was logged","code":"INTERNAL_ERROR"}"#;

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let (status, body) = match serde_json::to_vec(&self) {
            Ok(body) => (self.status_code(), body),
            Err(e) => {
                tracing::error!(error = %e, code = %self.code, "a problem could not be encoded");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    UNENCODABLE_PROBLEM.as_bytes().to_vec(),
                )
            }
        };
        let mut response = (status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use oms_core::domain::{FieldErrorCode, FieldErrors};

    use super::*;

    #[test]
    fn field_errors_are_listed_in_an_errors_member() {
        let mut errors = FieldErrors::new();
        errors.push(
            "items[0].quantity",
            FieldErrorCode::OutOfRange,
            "must be between 1 and 1000",
        );
        errors.push(
            "receiverInfo.name",
            FieldErrorCode::Required,
            "must not be empty",
        );
        let problem = Problem::from(OmsError::Validation(errors));
        assert_eq!(problem.status, 400);
        let body = serde_json::to_value(&problem).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "type": "https://oms.dev/problems/validation-failed",
                "title": "Bad Request",
                "status": 400,
                "detail": "invalid input: items[0].quantity must be between 1 and 1000; receiverInfo.name must not be empty",
                "code": "VALIDATION_FAILED",
                "errors": [
                    {"field": "items[0].quantity", "code": "out_of_range", "message": "must be between 1 and 1000"},
                    {"field": "receiverInfo.name", "code": "required", "message": "must not be empty"},
                ],
            })
        );
        let plain = serde_json::to_value(Problem::validation("bad query")).unwrap();
        assert!(plain.get("errors").is_none(), "{plain}");
    }

    #[test]
    fn internal_errors_are_500_and_say_nothing_of_their_cause() {
        let problem = Problem::from(OmsError::Internal(
            "cannot encode order: secret column `pw_hash` at 10.1.2.3".into(),
        ));
        assert_eq!(
            (problem.status, problem.code.as_str()),
            (500, "INTERNAL_ERROR")
        );
        let text = serde_json::to_string(&problem).unwrap();
        for leak in ["encode", "pw_hash", "10.1.2.3"] {
            assert!(!text.contains(leak), "{leak:?} leaked: {text}");
        }
        assert_eq!(UNENCODABLE_PROBLEM, text);
    }
}
