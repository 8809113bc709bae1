//! Application services: the inbound ports implemented on the outbound ones.

mod admin;
mod admitter;
mod auth;
mod catalog;
mod gate;
mod lifecycle;
mod order;
mod payment;
mod product;
mod query;
mod request;
mod room;
mod sampler;
mod sweeper;

pub use admin::AdminService;
pub use admitter::run_admitter;
pub use auth::{AdminBootstrap, AuthPolicy, AuthService};
pub use catalog::ProductCatalog;
pub use gate::{fill_gate, GateKeeper, GatePolicy};
pub use lifecycle::{LifecycleKeeper, LifecyclePolicy};
pub use order::{OrderService, RetryPolicy};
pub use payment::{confirm_idempotency_key, PaymentService};
pub use product::ProductService;
pub use query::QueryService;
pub use request::RequestOrderService;
pub use room::WaitingRoomService;
pub use sampler::GaugeSampler;
pub use sweeper::{SweepPolicy, SweepReport, TraceSweeper};

/// Sends a DLQ record, retrying what can be retried (5 times, from 50 ms):
/// the background services (sweeper, gate keeper) send this way.
pub(crate) async fn send_dead_letter(
    publisher: &dyn crate::port::outbound::OrderRequestPublisher,
    letter: &crate::port::outbound::DeadLetter,
) -> crate::domain::OmsResult<()> {
    use backon::{ExponentialBuilder, Retryable};
    (|| async { publisher.send_to_dlq(letter).await })
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(std::time::Duration::from_millis(50))
                .with_max_times(5),
        )
        .when(crate::domain::OmsError::is_retryable)
        .await
}
