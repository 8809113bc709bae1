//! `/readyz`: checks every configured dependency, at most one round of
//! checks at a time, and answers from the last round for a short while, so
//! that a flood of `/readyz` costs the dependencies almost nothing.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use oms_core::port::outbound::HealthCheck;

use super::Problem;

/// How long one round of checks answers `/readyz`.
pub(crate) const READY_CACHE: Duration = Duration::from_secs(1);

/// How long one dependency may take to answer its check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The outcome of one round of checks.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Round {
    /// Every dependency answered.
    Ready(Vec<&'static str>),
    /// What a client may learn about each dependency that did not answer.
    NotReady(Vec<String>),
}

/// The readiness of a set of dependencies, checked at most once per
/// [`READY_CACHE`].
pub(crate) struct Readiness {
    checks: Vec<Arc<dyn HealthCheck>>,
    ttl: Duration,
    last: Mutex<Option<(Instant, Round)>>,
    turn: tokio::sync::Mutex<()>,
}

impl Readiness {
    /// Readiness of `checks`, a round of checks answering for `ttl`.
    pub(crate) fn new(checks: Vec<Arc<dyn HealthCheck>>, ttl: Duration) -> Self {
        Self {
            checks,
            ttl,
            last: Mutex::new(None),
            turn: tokio::sync::Mutex::new(()),
        }
    }

    /// The `/readyz` response: 200 with the names checked, or 503 naming
    /// the dependencies that did not answer (their errors are logged, never
    /// sent).
    pub(crate) async fn respond(&self) -> Response {
        match self.round().await {
            Round::Ready(names) => {
                Json(serde_json::json!({"status": "ready", "checked": names})).into_response()
            }
            Round::NotReady(failing) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "NOT_READY",
                format!("not ready: {}", failing.join("; ")),
            )
            .into_response(),
        }
    }

    fn fresh(&self) -> Option<Round> {
        let last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        last.as_ref()
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, round)| round.clone())
    }

    async fn round(&self) -> Round {
        if let Some(round) = self.fresh() {
            return round;
        }
        let _turn = self.turn.lock().await;
        // Whoever held the turn may have just finished a round.
        if let Some(round) = self.fresh() {
            return round;
        }
        let round = self.check_all().await;
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((Instant::now(), round.clone()));
        round
    }

    async fn check_all(&self) -> Round {
        let outcomes = futures::future::join_all(self.checks.iter().map(|check| async move {
            let name = check.name();
            match tokio::time::timeout(CHECK_TIMEOUT, check.check()).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => {
                    tracing::warn!(dependency = name, error = %e, "readiness check failed");
                    Some(format!("{name} is unavailable"))
                }
                Err(_) => {
                    tracing::warn!(dependency = name, timeout = ?CHECK_TIMEOUT, "readiness check did not answer");
                    Some(format!(
                        "{name} did not answer within {} s",
                        CHECK_TIMEOUT.as_secs()
                    ))
                }
            }
        }))
        .await;
        let failing: Vec<String> = outcomes.into_iter().flatten().collect();
        if failing.is_empty() {
            Round::Ready(self.checks.iter().map(|c| c.name()).collect())
        } else {
            Round::NotReady(failing)
        }
    }
}
