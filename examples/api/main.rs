//! The oms HTTP API.
//!
//! With none of `OMS_KAFKA_BROKERS`, `OMS_REDIS_URL`, `OMS_DATABASE_URL` set
//! it runs the whole pipeline in this process on in-memory adapters (the
//! embedded default), consumer included. With all three set it accepts and
//! publishes; `examples/consumer` processes.

mod as_is;

use std::process::ExitCode;

use oms::config::{Settings, DEV_JWT_SECRET};
use oms::embedded::EmbeddedPipeline;
use oms::http::{router, serve, JwtAuth, ServerLimits};
use oms::runtime::{shutdown_signal, Services};
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            error!("{e}");
            return ExitCode::from(2);
        }
    };
    let secret = match settings.checked_jwt_secret() {
        Ok(s) => s,
        Err(e) => {
            error!("cannot start: {e}");
            return ExitCode::from(2);
        }
    };
    let mut embedded = None;
    let mut baseline = None;
    let state = if settings.is_embedded() {
        if secret == DEV_JWT_SECRET {
            warn!("tokens are signed with the development secret `{DEV_JWT_SECRET}`, which is public and refused on a non-loopback OMS_HTTP_ADDR; never expose this server");
        }
        info!("embedded default: no OMS_KAFKA_BROKERS / OMS_REDIS_URL / OMS_DATABASE_URL set, so the whole pipeline (intake, queue, consumer, trace store, database) runs in this process on in-memory adapters");
        let pipeline = EmbeddedPipeline::start();
        let state = pipeline.app_state(JwtAuth::new(secret.as_bytes()));
        embedded = Some(pipeline);
        state
    } else {
        let services = match Services::connect(&settings).await {
            Ok(s) => s,
            Err(e) => {
                error!("cannot start: {e}");
                return ExitCode::FAILURE;
            }
        };
        info!(topic = %services.kafka.order_topic, stock_gate = settings.stock_gate, "real adapters: orders are published to Kafka and processed by `examples/consumer`");
        if let Err(e) = services.fill_gate().await {
            // Products without a gate pass; the consumers' keeper fills it.
            warn!(error = %e, "stock gate not filled at start");
        }
        let state = services.app_state(JwtAuth::new(secret.as_bytes()));
        if std::env::var("OMS_BASELINE_AS_IS").is_ok_and(|v| v == "1") {
            warn!("OMS_BASELINE_AS_IS=1: serving the synchronous benchmark baseline at POST /baseline/as-is/orders");
            baseline = Some(as_is::routes(state.clone(), services.store.clone()));
        }
        state
    };

    let listener = match tokio::net::TcpListener::bind(settings.http_addr).await {
        Ok(l) => l,
        Err(e) => {
            error!(addr = %settings.http_addr, "cannot listen: {e}");
            return ExitCode::FAILURE;
        }
    };
    let limits = ServerLimits::from_settings(&settings);
    info!(addr = %settings.http_addr, ?limits, "oms api listening");
    let mut app = router(state);
    if let Some(baseline) = baseline {
        app = app.merge(baseline);
    }
    let served = serve(listener, app, limits, shutdown_signal()).await;
    if let Some(pipeline) = embedded {
        pipeline.shutdown().await;
    }
    match served {
        Ok(()) => {
            info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            error!("server error: {e}");
            ExitCode::FAILURE
        }
    }
}
