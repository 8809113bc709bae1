//! Consumer throughput on one hot product, durable commits, against its
//! baseline in the same run.
//!
//! ```text
//! source target/services.env
//! cargo run --release --example drain -- --orders 20000
//! ```
//!
//! For each of `--batch` (default 500) and `--baseline-batch` (default 1,
//! the seed's one transaction per order) it creates a product with one unit
//! per order and topics and a consumer group of their own, fills the order
//! topic with `--orders` one-unit orders from distinct members, then starts
//! `--consumers` consumer-group members in this process and times the
//! drain: from the first committed order to the product's stock reaching 0
//! in the database. Then it checks that every trace has a COMPLETED outcome
//! and that the queue is drained. Needs `OMS_KAFKA_BROKERS`,
//! `OMS_REDIS_URL` and `OMS_DATABASE_URL`; exits 1 when a check fails.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use futures::{stream, StreamExt, TryStreamExt};
use oms::config::Settings;
use oms::core::domain::{
    MemberId, OrderCommand, OrderLine, OrderRequest, ProductDraft, ProductId, ReceiverInfo,
    TraceId, TraceState,
};
use oms::core::port::outbound::{OrderBacklog, OrderRequestPublisher, OrderStore, ProductStore};
use oms::kafka::KafkaBacklog;
use oms::runtime::Services;

/// Times the consumers draining a full order topic for one hot product.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Orders queued before the consumers start (one unit each).
    #[arg(long, default_value_t = 20_000)]
    orders: u64,
    /// Records per transaction of the measured run.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Records per transaction of the baseline run (0: no baseline).
    #[arg(long, default_value_t = 1)]
    baseline_batch: usize,
    /// Consumer-group members.
    #[arg(long, default_value_t = 2)]
    consumers: usize,
    /// Gives up after this many seconds per run.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Records metrics as the `consumer` does by default (a Prometheus
    /// recorder installed; the consumers' use case measured), to compare
    /// runs with and without (`scripts/bench-observe.sh`).
    #[arg(long)]
    metrics: bool,
}

type Failure = Box<dyn std::error::Error + Send + Sync>;

struct Drained {
    batch: usize,
    fill: Duration,
    join: Duration,
    drain: Duration,
    broken: Vec<String>,
}

fn command(trace_id: TraceId, member: u64, product: ProductId) -> OrderCommand {
    OrderCommand::new(
        trace_id,
        MemberId(member),
        OrderRequest {
            items: vec![OrderLine {
                product_id: product,
                quantity: 1,
            }],
            receiver_info: ReceiverInfo {
                name: "Kim".into(),
                phone: "010-0000-0000".into(),
                address: "Seoul".into(),
            },
        },
    )
}

async fn drain(args: &Args, batch: usize) -> Result<Drained, Failure> {
    let mut settings = Settings::from_env()?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    settings.order_topic = format!("drain-orders-{id}");
    settings.dlq_topic = format!("drain-dlq-{id}");
    settings.consumer_group = format!("drain-{id}");
    settings.redis_prefix = format!("drain-{id}");
    settings.consumer_batch = batch;
    settings.stock_gate = false;
    let services = Services::connect(&settings).await?;

    let product = ProductId(oms::core::testkit::random_id());
    let stock = i64::try_from(args.orders)?;
    services
        .store
        .create(
            &ProductDraft {
                name: format!("drain {product}"),
                price: 1000,
                stock,
                rules: Default::default(),
            }
            .into_product(product),
        )
        .await?;
    let member_base = oms::core::testkit::random_id();
    let traces: Vec<TraceId> = (0..args.orders).map(|_| TraceId::new()).collect();
    let filling = Instant::now();
    let publisher = services.publisher.clone();
    stream::iter(traces.iter().enumerate())
        .map(|(i, trace)| {
            let publisher = publisher.clone();
            let command = command(*trace, member_base + i as u64, product);
            async move { publisher.send(&command).await }
        })
        .buffer_unordered(2000)
        .try_collect::<Vec<()>>()
        .await?;
    let fill = filling.elapsed();

    let started = Instant::now();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for _ in 0..args.consumers {
        let consumer = services.consumer()?;
        let use_case: Arc<dyn oms::core::port::inbound::OrderUseCase> = if args.metrics {
            Arc::new(oms::observe::Observed::new(Arc::new(
                services.order_service(),
            )))
        } else {
            Arc::new(services.order_service())
        };
        let mut stopped = stopped.clone();
        tasks.push(tokio::spawn(consumer.run(use_case, async move {
            let _ = stopped.wait_for(|s| *s).await;
        })));
    }
    let deadline = started + Duration::from_secs(args.timeout);
    let mut first = None;
    let mut broken = Vec::new();
    loop {
        let left = services
            .store
            .get(product)
            .await?
            .map_or(i64::MIN, |p| p.stock);
        if left < stock && first.is_none() {
            first = Some(Instant::now());
        }
        if left <= 0 {
            if left < 0 {
                broken.push(format!("stock {left} < 0"));
            }
            break;
        }
        if Instant::now() > deadline {
            broken.push(format!("stock still {left} after {} s", args.timeout));
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let done = Instant::now();
    let first = first.unwrap_or(done);

    let outcomes: Vec<Option<TraceState>> = stream::iter(traces.iter())
        .map(|t| {
            let store = services.store.clone();
            async move { store.outcome(*t).await.map(|o| o.map(|o| o.state)) }
        })
        .buffer_unordered(64)
        .try_collect()
        .await?;
    let completed = outcomes
        .iter()
        .filter(|s| matches!(s, Some(TraceState::Completed { .. })))
        .count();
    if completed != traces.len() {
        broken.push(format!("{completed} of {} traces COMPLETED", traces.len()));
    }
    let backlog = KafkaBacklog::new(&services.kafka)?;
    let settle = Instant::now() + Duration::from_secs(30);
    let mut pending = backlog.pending().await?;
    while pending > 0 && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(100)).await;
        pending = backlog.pending().await?;
    }
    if pending > 0 {
        broken.push(format!("{pending} records not committed"));
    }
    let _ = stop.send(true);
    for task in tasks {
        task.await??;
    }
    Ok(Drained {
        batch,
        fill,
        join: first.saturating_duration_since(started),
        drain: done.saturating_duration_since(first),
        broken,
    })
}

fn per_sec(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

async fn run(args: Args) -> Result<bool, Failure> {
    if args.metrics {
        oms::observe::Metrics::install()?;
    }
    let mut runs = vec![drain(&args, args.batch).await?];
    if args.baseline_batch > 0 {
        runs.push(drain(&args, args.baseline_batch).await?);
    }
    println!(
        "| consumers on one hot product | {} orders queued first, {} consumers, durable commits, metrics {} |",
        args.orders,
        args.consumers,
        if args.metrics { "on" } else { "off" }
    );
    println!("|---|---|");
    for r in &runs {
        println!(
            "| batch {} | queue filled in {:.3} s; first commit {:.3} s after start; drained in **{:.3} s → {:.0} orders/s** |",
            r.batch,
            r.fill.as_secs_f64(),
            r.join.as_secs_f64(),
            r.drain.as_secs_f64(),
            per_sec(args.orders, r.drain)
        );
    }
    if let [measured, baseline] = &runs[..] {
        println!(
            "| ratio | **{:.1}×** (batch {} vs batch {}) |",
            baseline.drain.as_secs_f64() / measured.drain.as_secs_f64().max(1e-9),
            measured.batch,
            baseline.batch
        );
    }
    let broken: Vec<String> = runs.iter().flat_map(|r| r.broken.clone()).collect();
    if broken.is_empty() {
        println!("| invariants | OK: stock = 0 (never below), every trace COMPLETED, every record committed |");
    } else {
        println!("| invariants | **BROKEN**: {} |", broken.join("; "));
    }
    Ok(broken.is_empty())
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    match run(Args::parse()).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("drain: {e}");
            ExitCode::from(2)
        }
    }
}
