//! `/readyz`: checks every configured dependency, at most one round of
//! checks at a time, and answers from the last round for a short while, so
//! that a flood of `/readyz` costs the dependencies almost nothing. While
//! the dependencies warm up ([`AppState::warm_up`](super::AppState::warm_up))
//! it answers 503 without checking.

use std::sync::atomic::{AtomicBool, Ordering};
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

/// How long one dependency may take to warm up.
pub(crate) const WARM_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the dependencies of an [`AppState`](super::AppState) have warmed
/// up: warm unless a warm-up ([`AppState::warm_up`](super::AppState::warm_up))
/// is under way. Clones share the flag.
#[derive(Debug, Clone)]
pub struct Warmth(Arc<AtomicBool>);

impl Default for Warmth {
    fn default() -> Self {
        Self(Arc::new(AtomicBool::new(true)))
    }
}

impl Warmth {
    /// Whether no warm-up is under way.
    pub fn is_warm(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    fn set(&self, warm: bool) {
        self.0.store(warm, Ordering::Release);
    }

    /// Marks the dependencies cold now and returns what warms them: each
    /// [`HealthCheck::warm`] at once, within [`WARM_TIMEOUT`]; failures
    /// are logged (readiness then rests on the checks).
    pub(crate) fn warm_up(
        &self,
        checks: Vec<Arc<dyn HealthCheck>>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.set(false);
        let warmth = self.clone();
        async move {
            let started = Instant::now();
            futures::future::join_all(checks.iter().map(|check| async move {
                let name = check.name();
                match tokio::time::timeout(WARM_TIMEOUT, check.warm()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(dependency = name, error = %e, "warm-up failed");
                    }
                    Err(_) => {
                        tracing::warn!(dependency = name, timeout = ?WARM_TIMEOUT, "warm-up did not finish");
                    }
                }
            }))
            .await;
            tracing::info!(took = ?started.elapsed(), "dependencies warmed up");
            warmth.set(true);
        }
    }
}

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
    warmth: Warmth,
    ttl: Duration,
    last: Mutex<Option<(Instant, Round)>>,
    turn: tokio::sync::Mutex<()>,
}

impl Readiness {
    /// Readiness of `checks`, a round of checks answering for `ttl`.
    pub(crate) fn new(checks: Vec<Arc<dyn HealthCheck>>, warmth: Warmth, ttl: Duration) -> Self {
        Self {
            checks,
            warmth,
            ttl,
            last: Mutex::new(None),
            turn: tokio::sync::Mutex::new(()),
        }
    }

    /// The `/readyz` response: 200 with the names checked, or 503 naming
    /// the dependencies that did not answer (their errors are logged, never
    /// sent).
    pub(crate) async fn respond(&self) -> Response {
        if !self.warmth.is_warm() {
            return Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "NOT_READY",
                "not ready: warming up (connections, metadata, scripts)",
            )
            .into_response();
        }
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
