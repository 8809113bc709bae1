//! The oms HTTP API.
//!
//! With none of `OMS_KAFKA_BROKERS`, `OMS_REDIS_URL`, `OMS_DATABASE_URL` set
//! it runs the whole pipeline in this process on in-memory adapters (the
//! embedded default), consumer included.

use std::process::ExitCode;

use oms::config::{Settings, DEV_JWT_SECRET};
use oms::embedded::EmbeddedPipeline;
use oms::http::{router, JwtAuth};
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
    if !settings.is_embedded() {
        error!("real adapters are configured but this build serves only the embedded default; unset OMS_KAFKA_BROKERS, OMS_REDIS_URL and OMS_DATABASE_URL");
        return ExitCode::from(2);
    }
    let secret = settings.jwt_secret.clone().unwrap_or_else(|| {
        warn!("OMS_JWT_SECRET is not set: using the development secret `{DEV_JWT_SECRET}`; never expose this server");
        DEV_JWT_SECRET.to_owned()
    });
    info!("embedded default: no OMS_KAFKA_BROKERS / OMS_REDIS_URL / OMS_DATABASE_URL set, so the whole pipeline (intake, queue, consumer, trace store, database) runs in this process on in-memory adapters");
    let pipeline = EmbeddedPipeline::start();
    let app = router(pipeline.app_state(JwtAuth::new(secret.as_bytes())));
    let listener = match tokio::net::TcpListener::bind(settings.http_addr).await {
        Ok(l) => l,
        Err(e) => {
            error!(addr = %settings.http_addr, "cannot listen: {e}");
            return ExitCode::FAILURE;
        }
    };
    info!(addr = %settings.http_addr, "oms api listening");
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await;
    pipeline.shutdown().await;
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

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            error!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    info!("shutting down: finishing requests in flight");
}
