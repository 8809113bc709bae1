//! A JSON body extractor whose rejections are problem+json, a JSON answer
//! whose encoding failure is one, and a path parameter extractor whose
//! rejections are too.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Problem;

/// Like [`axum::Json`], but a bad body is a problem: 415 when it is not
/// JSON, 413 when it is over the body limit, 400 for everything else. As
/// an answer, a value that cannot be encoded is 500 `INTERNAL_ERROR`
/// (problem+json, the cause logged), never a text body with the encoder's
/// message.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(body) => {
                let mut response = body.into_response();
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                response
            }
            Err(e) => Problem::internal(format!("cannot encode the answer: {e}")).into_response(),
        }
    }
}

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(problem_of(rejection)),
        }
    }
}

fn problem_of(rejection: JsonRejection) -> Problem {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "the body must be JSON with `Content-Type: application/json`",
        ),
        JsonRejection::JsonDataError(e) => Problem::validation(e.body_text()),
        JsonRejection::JsonSyntaxError(e) => {
            Problem::new(StatusCode::BAD_REQUEST, "MALFORMED_JSON", e.body_text())
        }
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                format!("the body must be at most {} bytes", super::BODY_LIMIT),
            )
        }
        other => Problem::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", other.body_text()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn an_answer_that_cannot_be_encoded_is_an_internal_problem() {
        // JSON object keys must be strings.
        let unencodable = BTreeMap::from([((1, 2), "pair keys")]);
        let response = ApiJson(unencodable).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE).unwrap(),
            "application/problem+json"
        );
        let fine = ApiJson(BTreeMap::from([("a", 1)])).into_response();
        assert_eq!(fine.status(), StatusCode::OK);
        assert_eq!(
            fine.headers().get(header::CONTENT_TYPE).unwrap(),
            "application/json"
        );
    }
}

/// One path parameter as text, decoded: a segment that does not decode (not
/// UTF-8 once percent-decoded) is 400 `VALIDATION_FAILED`, as a malformed id
/// is, instead of [`Path`]'s plain-text rejection.
#[derive(Debug, Clone)]
pub(crate) struct Segment(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for Segment {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(raw)| Self(raw))
            .map_err(|e| Problem::validation(format!("the path is not valid: {}", e.body_text())))
    }
}
