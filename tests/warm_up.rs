//! `/readyz` while the dependencies warm up: 503 until every warm-up has
//! finished (or failed), then the checks decide.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::{auth, get, send};
use oms::domain::{OmsError, OmsResult};
use oms::embedded::EmbeddedPipeline;
use oms::http::router;
use oms::port::outbound::HealthCheck;
use tokio::sync::Notify;

/// A dependency whose warm-up lasts until `release` is notified, then ends
/// with `outcome`.
struct Slow {
    release: Arc<Notify>,
    fails: bool,
}

#[async_trait]
impl HealthCheck for Slow {
    fn name(&self) -> &'static str {
        "slow"
    }

    async fn check(&self) -> OmsResult<()> {
        Ok(())
    }

    async fn warm(&self) -> OmsResult<()> {
        self.release.notified().await;
        if self.fails {
            Err(OmsError::unavailable("slow", "warm-up failed"))
        } else {
            Ok(())
        }
    }
}

async fn readyz(app: &axum::Router) -> (u16, serde_json::Value) {
    let (s, _, body) = send(app, get("/readyz", None)).await;
    (s.as_u16(), body)
}

/// Polls `/readyz` until it answers `status` (5 s at most).
async fn until_ready(app: &axum::Router, status: u16) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (s, body) = readyz(app).await;
        if s == status {
            return body;
        }
        assert!(tokio::time::Instant::now() < deadline, "{s} {body}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn readyz_is_503_until_every_dependency_has_warmed_up() {
    for fails in [false, true] {
        let pipeline = EmbeddedPipeline::start();
        let release = Arc::new(Notify::new());
        let mut state = pipeline.app_state(auth());
        state.checks.push(Arc::new(Slow {
            release: release.clone(),
            fails,
        }));
        let app = router(state.clone());
        // Without a warm-up the checks decide at once.
        assert_eq!(readyz(&app).await.0, 200);

        let warming = tokio::spawn(state.warm_up());
        let (s, body) = readyz(&app).await;
        assert_eq!(
            (s, body["code"].as_str()),
            (503, Some("NOT_READY")),
            "{body}"
        );
        assert!(body["detail"].as_str().unwrap().contains("warming up"));
        assert!(!state.warmth.is_warm());

        // A failed warm-up does not hold readiness back: the checks decide.
        release.notify_one();
        warming.await.unwrap();
        let body = until_ready(&app, 200).await;
        assert!(body["checked"].as_array().unwrap().contains(&"slow".into()));
        assert!(state.warmth.is_warm());
        pipeline.shutdown().await;
    }
}
