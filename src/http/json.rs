//! A JSON body extractor whose rejections are problem+json.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::Problem;

/// Like [`axum::Json`], but a bad body is a problem: 415 when it is not
/// JSON, 413 when it is over the body limit, 400 for everything else.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

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
