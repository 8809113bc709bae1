//! What the processes show of themselves: a Prometheus recorder for the
//! metrics oms records through its ports ([`oms_core::observe`]), and the
//! log and span subscriber.
//!
//! ```no_run
//! # async fn run() -> Result<(), oms::observe::MetricsError> {
//! let metrics = oms::observe::Metrics::install()?;
//! // … serve `metrics.render()` at `/metrics` (the router does, with
//! // `AppState::with_metrics`).
//! # let _ = metrics.render();
//! # Ok(()) }
//! ```

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use oms_core::observe::names;

pub use oms_core::observe::{describe, names as metric_names, Observed};

/// Bucket bounds of the `_seconds` histograms: 250 µs to 10 s.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0,
];

/// Bucket bounds of the consumer's batch sizes.
pub const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0,
];

/// How often the gauges of `/metrics` (gate levels, waiting room) are
/// read ([`GaugeSampler`](oms_core::application::GaugeSampler)).
pub const GAUGE_EVERY: Duration = Duration::from_secs(2);

/// How often histograms are compacted.
const UPKEEP: Duration = Duration::from_secs(5);

/// The recorder could not be installed.
#[derive(Debug, thiserror::Error)]
#[error("metrics recorder not installed: {0}")]
pub struct MetricsError(String);

/// The process's Prometheus recorder: cheap to clone; renders the text
/// format `/metrics` serves.
#[derive(Clone, Debug)]
pub struct Metrics {
    handle: PrometheusHandle,
}

static INSTALLED: OnceLock<Metrics> = OnceLock::new();

impl Metrics {
    /// Installs the Prometheus recorder as the process's global recorder
    /// (once: later calls return the same one), with histograms for the
    /// durations and batch sizes, and describes every metric. Inside a
    /// tokio runtime it also starts the histograms' upkeep.
    pub fn install() -> Result<Self, MetricsError> {
        if let Some(metrics) = INSTALLED.get() {
            return Ok(metrics.clone());
        }
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(names::CONSUMER_BATCH_SIZE.into()),
                    BATCH_BUCKETS,
                )
            })
            .map_err(|e| MetricsError(e.to_string()))?
            .install_recorder()
            .map_err(|e| MetricsError(e.to_string()))?;
        let metrics = INSTALLED.get_or_init(|| Self { handle }).clone();
        describe();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let handle = metrics.handle.clone();
            runtime.spawn(async move {
                let mut tick = tokio::time::interval(UPKEEP);
                loop {
                    tick.tick().await;
                    handle.run_upkeep();
                }
            });
        }
        Ok(metrics)
    }

    /// The installed recorder, if [`install`](Self::install) ran.
    pub fn installed() -> Option<Self> {
        INSTALLED.get().cloned()
    }

    /// Every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        self.handle.render()
    }
}
