//! The oms Kafka consumer: reads the order topic as a member of
//! `OMS_CONSUMER_GROUP`, places orders in batches, writes final traces and
//! sends failures to the DLQ. Needs `OMS_KAFKA_BROKERS`, `OMS_REDIS_URL` and
//! `OMS_DATABASE_URL`. Run as many as the topic has partitions. Each also
//! runs the stuck-trace sweeper (`OMS_SWEEP_AFTER_SECS`, default 300) and,
//! unless `OMS_STOCK_GATE=off`, the keeper of the stock gate (settles the
//! orders the gate refused: outcome in the database, DLQ record), and the
//! keeper of the order life cycle: expires unpaid orders past their
//! `paymentDueAt`, reconciles payments in doubt with the gateway, and
//! publishes order events to `OMS_EVENTS_TOPIC`.
//! `OMS_JWT_SECRET` must pass the same policy as for `api` (at least 32
//! bytes, not the development secret), or the consumer refuses to start.
//!
//! It answers `GET /healthz`, `GET /readyz` and `GET /metrics` (Prometheus
//! text; unless `OMS_METRICS=off`) on `OMS_METRICS_ADDR`
//! (default `127.0.0.1:9464`; a consumer that cannot bind it logs so and
//! runs without): `/readyz` is 503 `CONSUMER_STALLED` while the stall
//! watchdog finds it holding records it does not process (it rejoins its
//! group by itself), with the counts of processed, skipped and rejoins.

use std::process::ExitCode;
use std::sync::Arc;

use oms::config::Settings;
use oms::core::application::SweepPolicy;
use oms::kafka::ConsumerHealth;
use oms::observe::{Metrics, Observed};
use oms::runtime::{shutdown_signal, Services};
use oms::tasks::{Stage, Supervisor, SHUTDOWN_DEADLINE};
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

/// The allocator of the served processes: many small, short-lived
/// allocations on several threads, which glibc's allocator serves slower.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let settings = match Settings::from_args() {
        Ok(s) => s,
        Err(e) => {
            error!("{e}");
            return ExitCode::from(2);
        }
    };
    let missing: Vec<&str> = [
        ("OMS_KAFKA_BROKERS", settings.kafka_brokers.is_none()),
        ("OMS_REDIS_URL", settings.redis_url.is_none()),
        ("OMS_DATABASE_URL", settings.database_url.is_none()),
    ]
    .into_iter()
    .filter_map(|(name, unset)| unset.then_some(name))
    .collect();
    if !missing.is_empty() {
        error!(
            "the consumer needs {} (run `scripts/services.sh up` and `source target/services.env`); for a single process with no servers, run `cargo run --release --example api`",
            missing.join(", ")
        );
        return ExitCode::from(2);
    }
    // The consumer signs nothing, but it shares its environment with `api`:
    // a deployment with a weak secret is refused here too.
    if let Err(e) = settings.checked_jwt_secret() {
        error!("cannot start: {e}");
        return ExitCode::from(2);
    }
    let services = match Services::connect(&settings).await {
        Ok(s) => s,
        Err(e) => {
            error!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let consumer = match services.consumer() {
        Ok(c) => c,
        Err(e) => {
            error!("cannot join the consumer group: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut supervisor = Supervisor::new();
    if let Some(after) = settings.sweep_after {
        match services.sweeper(SweepPolicy::after(after)) {
            // Every step of a sweep is idempotent: stopping it anywhere is safe.
            Ok(sweeper) => {
                supervisor.spawn(Stage::Settle, "trace sweeper", |stop| sweeper.run(stop));
            }
            Err(e) => {
                error!("cannot start the trace sweeper: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    match services.gate_keeper() {
        // The keeper finishes the settlement under way when told to stop (a
        // refusal it holds would otherwise wait for the journal's
        // redelivery time).
        Ok(Some(keeper)) => {
            supervisor.spawn(Stage::Settle, "stock gate keeper", |stop| keeper.run(stop));
        }
        Ok(None) => {}
        Err(e) => {
            error!("cannot start the stock gate keeper: {e}");
            return ExitCode::FAILURE;
        }
    }
    let lifecycle = services.lifecycle_keeper();
    supervisor.spawn(Stage::Settle, "order life-cycle keeper", |stop| {
        lifecycle.run(stop)
    });
    let metrics = match settings.metrics.then(Metrics::install).transpose() {
        Ok(m) => m,
        Err(e) => {
            error!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    if metrics.is_some() {
        services.spawn_gauges(&mut supervisor, oms::observe::GAUGE_EVERY);
    }
    serve_health(
        &mut supervisor,
        consumer.health(),
        settings.metrics_addr,
        metrics,
    )
    .await;
    info!(topic = %services.kafka.order_topic, group = %services.kafka.group, sweep_after = ?settings.sweep_after, "consumer running");
    let ended = consumer
        .run(
            Arc::new(Observed::new(Arc::new(services.order_service()))),
            shutdown_signal(),
        )
        .await;
    let report = supervisor.shutdown(SHUTDOWN_DEADLINE).await;
    if !report.is_clean() {
        error!(aborted = ?report.aborted, "background work did not stop in time");
    }
    match ended {
        Ok(()) => {
            info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            error!("consumer ended: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Serves `/healthz`, `/readyz` and `/metrics` of the consumer on
/// `OMS_METRICS_ADDR`.
async fn serve_health(
    supervisor: &mut Supervisor,
    health: ConsumerHealth,
    addr: std::net::SocketAddr,
    metrics: Option<Metrics>,
) {
    use axum::http::StatusCode;
    use axum::routing::get;
    use axum::Json;
    use oms::http::Problem;

    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => {
            warn!(%addr, error = %e, "consumer health endpoint not served");
            return;
        }
    };
    let readyz = move || {
        let health = health.clone();
        async move {
            let counts = serde_json::json!({
                "processedRecords": health.processed_records(),
                "skippedRecords": health.skipped_records(),
                "rejoins": health.rejoins(),
            });
            if health.stalled() {
                Err(Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "CONSUMER_STALLED",
                    format!("the consumer holds records it does not process; rejoining its group ({counts})"),
                ))
            } else {
                Ok(Json(
                    serde_json::json!({"status": "ready", "consumer": counts}),
                ))
            }
        }
    };
    let app = axum::Router::new()
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/readyz", get(readyz))
        .route(
            "/metrics",
            get(move || {
                let page = oms::http::metrics_page(metrics.as_ref());
                async move { page }
            }),
        );
    info!(%addr, "consumer health on /healthz and /readyz, metrics on /metrics");
    supervisor.spawn(Stage::Observe, "health endpoint", |stop| async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            warn!(error = %e, "consumer health endpoint stopped");
        }
    });
}
