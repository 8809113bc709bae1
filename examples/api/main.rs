//! The oms HTTP API.
//!
//! With none of `OMS_KAFKA_BROKERS`, `OMS_REDIS_URL`, `OMS_DATABASE_URL` set
//! it runs the whole pipeline in this process on in-memory adapters (the
//! embedded default), consumer included. With all three set it accepts and
//! publishes; `examples/consumer` processes.
//!
//! At start it makes the member of `OMS_ADMIN_EMAIL` / `OMS_ADMIN_PASSWORD`
//! an operator (created, or promoted with that password); the embedded
//! default without them creates a development admin and logs its
//! credentials once.

mod as_is;

use std::process::ExitCode;
use std::sync::Arc;

use oms::application::{AdminBootstrap, AuthService};
use oms::config::{Settings, DEV_ADMIN_EMAIL, DEV_JWT_SECRET};
use oms::embedded::{EmbeddedOptions, EmbeddedPipeline};
use oms::http::{router, serve, ClientIpSource, JwtAuth, ServerLimits};
use oms::observe::{Metrics, GAUGE_EVERY};
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
    let secret = match settings.checked_jwt_secret() {
        Ok(s) => s,
        Err(e) => {
            error!("cannot start: {e}");
            return ExitCode::from(2);
        }
    };
    let metrics = match settings.metrics.then(Metrics::install).transpose() {
        Ok(m) => m,
        Err(e) => {
            error!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut embedded = None;
    let mut baseline = None;
    let mut supervisor = Supervisor::new();
    let state = if settings.is_embedded() {
        if secret == DEV_JWT_SECRET {
            warn!("tokens are signed with the development secret `{DEV_JWT_SECRET}`, which is public and refused on a non-loopback OMS_HTTP_ADDR; never expose this server");
        }
        info!("embedded default: no OMS_KAFKA_BROKERS / OMS_REDIS_URL / OMS_DATABASE_URL set, so the whole pipeline (intake, queue, consumer, trace store, database) runs in this process on in-memory adapters");
        let pipeline = EmbeddedPipeline::start_with_options(EmbeddedOptions {
            front_door: settings.front_door,
            payment_timeout: Some(settings.payment_timeout),
            ..EmbeddedOptions::default()
        });
        let accounts = Arc::new(pipeline.accounts(
            Arc::new(JwtAuth::new(secret.as_bytes())),
            settings.auth_policy(),
        ));
        if let Err(code) = bootstrap_admin(&accounts, &settings).await {
            return code;
        }
        let state = pipeline.app_state_with(accounts);
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
        let accounts = Arc::new(services.accounts(
            Arc::new(JwtAuth::new(secret.as_bytes())),
            settings.auth_policy(),
        ));
        if let Err(code) = bootstrap_admin(&accounts, &settings).await {
            return code;
        }
        let state = services.app_state_with(accounts);
        services.spawn_front_door(&mut supervisor);
        if metrics.is_some() {
            services.spawn_gauges(&mut supervisor, GAUGE_EVERY);
        }
        if settings.baseline_as_is {
            warn!("OMS_BASELINE_AS_IS=1: serving the synchronous benchmark baseline at POST /baseline/as-is/orders");
            baseline = Some(as_is::routes(state.clone(), services.store.clone()));
        }
        state
    };

    let state = match metrics {
        Some(metrics) => state.with_metrics(metrics),
        None => state,
    };
    let state = match settings.client_ip_header.as_deref().map(str::parse) {
        None => state,
        Some(Ok(name)) => state.with_client_ip(ClientIpSource::Header(name)),
        Some(Err(e)) => {
            error!("OMS_CLIENT_IP_HEADER: {e}");
            return ExitCode::from(2);
        }
    };
    if !settings.revocation_check {
        warn!("OMS_REVOCATION_CHECK=off: logged-out and revoked access tokens stay valid until they expire; for benchmarks only");
    }

    // The first wave of a sale must not pay for connections, metadata and
    // scripts: they are made ready now, and `/readyz` says 503 until then.
    let warm_up = state.warm_up();
    supervisor.spawn(Stage::Intake, "warm-up", |stop| async move {
        tokio::select! {
            () = warm_up => {}
            () = stop => {}
        }
    });

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
    // The server has drained: background work stops in stage order.
    let mut report = supervisor.shutdown(SHUTDOWN_DEADLINE).await;
    if let Some(pipeline) = embedded {
        report.aborted.extend(pipeline.shutdown().await.aborted);
    }
    if !report.is_clean() {
        error!(aborted = ?report.aborted, "background work did not stop in time");
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

/// Creates or promotes the operator of `OMS_ADMIN_EMAIL` /
/// `OMS_ADMIN_PASSWORD`; in the embedded default without them, a
/// development admin with a random password, whose credentials are logged
/// once.
async fn bootstrap_admin(accounts: &AuthService, settings: &Settings) -> Result<(), ExitCode> {
    if let Err(e) = accounts.prepare().await {
        error!("cannot start: password hashing: {e}");
        return Err(ExitCode::FAILURE);
    }
    let (email, password, development) = match &settings.admin {
        Some((email, password)) => (
            email.clone(),
            oms::config::ExposeSecret::expose_secret(password).to_owned(),
            false,
        ),
        None if settings.is_embedded() => (
            DEV_ADMIN_EMAIL.to_owned(),
            uuid::Uuid::new_v4().simple().to_string(),
            true,
        ),
        None => {
            info!("no OMS_ADMIN_EMAIL / OMS_ADMIN_PASSWORD: no operator bootstrapped");
            return Ok(());
        }
    };
    match accounts.ensure_admin(&email, &password).await {
        Ok(_) if development => {
            warn!(email = %email, password = %password, "development admin created (in memory, this run only): log in with these credentials; set OMS_ADMIN_EMAIL and OMS_ADMIN_PASSWORD to choose them");
            Ok(())
        }
        Ok(AdminBootstrap::Created(m)) => {
            info!(member_id = %m.id, email = %m.email, "operator created from OMS_ADMIN_EMAIL");
            Ok(())
        }
        Ok(AdminBootstrap::Promoted(m)) => {
            warn!(member_id = %m.id, email = %m.email, "existing member made operator from OMS_ADMIN_EMAIL, with the password of OMS_ADMIN_PASSWORD");
            Ok(())
        }
        Ok(AdminBootstrap::Unchanged(m)) => {
            info!(member_id = %m.id, email = %m.email, "operator of OMS_ADMIN_EMAIL is in place");
            Ok(())
        }
        Err(e) => {
            error!("cannot start: operator bootstrap: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}
