//! An adapter of the user's own for one of oms's outbound ports, held to
//! the port's contract by oms's conformance suite, then plugged into the
//! intake service.
//!
//! `cargo run --example custom_adapter --all-features`
//!
//! [`MapTraceStore`](store::MapTraceStore) (in `store.rs`) implements
//! [`TraceStore`](oms::port::outbound::TraceStore) on a `Mutex<HashMap>`.
//! Every adapter of a port passes the suite of `oms_core::testkit` for that
//! port, as oms's own in-memory, Redis and MySQL adapters do. The suites are
//! behind oms-core's `testkit` feature; a crate of its own adds, for its
//! tests:
//!
//! ```toml
//! [dev-dependencies]
//! oms-core = { version = "0.1", features = ["testkit"] }
//! ```
//!
//! A suite is an async function that panics, as a test does, where the
//! adapter breaks the contract; in a test, call it directly
//! (`tests/custom_adapter.rs`). Here it runs on a task of its own, so that a
//! failure is reported and the process exits 1.

mod store;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use oms::application::RequestOrderService;
use oms::domain::{Caller, OrderLine, OrderRequest, ProductId, ReceiverInfo, TraceState};
use oms::memory::InMemoryOrderQueue;
use oms::port::inbound::RequestOrderUseCase;
use oms::port::outbound::TraceStore;
use oms_core::testkit::trace_store;
use store::MapTraceStore;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let store = Arc::new(MapTraceStore::new(Duration::from_secs(3600)));

    let suite = {
        let store = store.clone();
        tokio::spawn(async move { trace_store::run(&*store).await })
    };
    match suite.await {
        Ok(()) => println!(
            "ok: MapTraceStore passes the TraceStore conformance suite (oms_core::testkit::trace_store::run)"
        ),
        Err(e) => {
            eprintln!("FAILED: MapTraceStore breaks the TraceStore contract: {e} (the suite's message is above)");
            return ExitCode::FAILURE;
        }
    }

    // The adapter in use: order intake writes its traces to it.
    let (queue, _receiver) = InMemoryOrderQueue::new();
    let intake = RequestOrderService::new(Arc::new(queue), store.clone());
    let request = OrderRequest {
        items: vec![OrderLine {
            product_id: ProductId(1),
            quantity: 1,
        }],
        receiver_info: ReceiverInfo {
            name: "Kim".into(),
            phone: "010-0000-0000".into(),
            address: "Seoul".into(),
        },
    };
    let accepted = match intake.request_order(Caller::user(7), request, None).await {
        Ok(trace) => trace,
        Err(e) => {
            eprintln!("FAILED: intake on MapTraceStore refused an order: {e}");
            return ExitCode::FAILURE;
        }
    };
    match store.get(accepted.trace_id).await {
        Ok(Some(trace)) if trace.state == TraceState::Processing => {
            println!(
                "ok: intake on MapTraceStore accepted trace {} (PROCESSING, read back from the store)",
                trace.trace_id
            );
            ExitCode::SUCCESS
        }
        other => {
            eprintln!(
                "FAILED: trace {} should be PROCESSING in MapTraceStore, found {other:?}",
                accepted.trace_id
            );
            ExitCode::FAILURE
        }
    }
}
