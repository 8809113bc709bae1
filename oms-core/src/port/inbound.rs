//! Inbound ports: the use cases the core offers to driving adapters (HTTP,
//! queue consumers).

use async_trait::async_trait;

use crate::domain::{
    Caller, OmsResult, Order, OrderCommand, OrderId, OrderPage, OrderRequest, OrderTrace, Orders,
    Placement, Product, ProductDraft, ProductId, ProductUpdate, TraceId,
};
use crate::port::outbound::DeadLetter;

/// Accepts an order request: records it as PROCESSING and queues it (or,
/// with a stock gate, refuses it at once when a product is sold out), and
/// returns its trace.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait RequestOrderUseCase: Send + Sync {
    /// Accepts `request` from `caller` and returns its trace: PROCESSING, or
    /// already final (FAILED `OUT_OF_STOCK` from the stock gate). With an
    /// idempotency key, the same member and key return the same trace and
    /// queue nothing new.
    async fn request_order(
        &self,
        caller: Caller,
        request: OrderRequest,
        idempotency_key: Option<String>,
    ) -> OmsResult<OrderTrace>;
}

/// Processes queued order commands.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait OrderUseCase: Send + Sync {
    /// Processes a batch: one placement per command, in input order. Final
    /// outcomes are durable when this returns `Ok`; a retryable error means
    /// nothing of the batch may be acknowledged.
    async fn process(&self, batch: Vec<OrderCommand>) -> OmsResult<Vec<Placement>>;

    /// Sends a record that cannot be processed at all to the DLQ.
    async fn reject(&self, letter: DeadLetter) -> OmsResult<()>;
}

/// Reads traces and orders, with ownership checks: a member sees its own,
/// an operator sees all.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait OrderQuery: Send + Sync {
    /// A trace; not found if unknown or owned by another member.
    async fn trace(&self, caller: Caller, trace_id: TraceId) -> OmsResult<OrderTrace>;

    /// An order; not found if unknown or owned by another member.
    async fn order(&self, caller: Caller, order_id: OrderId) -> OmsResult<Order>;

    /// The caller's own orders, newest first.
    async fn my_orders(&self, caller: Caller, page: OrderPage) -> OmsResult<Orders>;
}

/// Manages and reads the product catalogue.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait ProductUseCase: Send + Sync {
    /// Adds a product (operators only).
    async fn create(
        &self,
        caller: Caller,
        product_id: ProductId,
        draft: ProductDraft,
    ) -> OmsResult<Product>;

    /// Updates a product (operators only): name and price are replaced;
    /// the stock changes only as [`ProductUpdate::stock`] says, atomically
    /// in the database and in the stock gate.
    async fn update(
        &self,
        caller: Caller,
        product_id: ProductId,
        update: ProductUpdate,
    ) -> OmsResult<Product>;

    /// A product.
    async fn get(&self, product_id: ProductId) -> OmsResult<Product>;

    /// Every product.
    async fn list(&self) -> OmsResult<Vec<Product>>;
}
