//! The domain: orders, products, traces and their rules. No I/O.

mod caller;
mod error;
mod ids;
mod order;
pub mod placement;
mod pricing;
mod product;
mod trace;

pub use caller::{Caller, Role};
pub use error::{BoxError, OmsError, OmsResult};
pub use ids::{MemberId, OrderId, ProductId, TraceId};
pub use order::{
    units_by_product, validate_idempotency_key, Order, OrderCommand, OrderItem, OrderLine,
    OrderPage, OrderRequest, OrderStatus, Orders, ReceiverInfo, MAX_LINES, MAX_QUANTITY,
    MAX_RECEIVER_FIELD,
};
pub use placement::{BatchPlan, KeyBindings, KnownOutcome, Placement, StockDecrement};
pub use pricing::{OrderPriceCalculator, PricedOrder};
pub use product::{Product, ProductChange, ProductDraft, ProductUpdate, StockChange};
pub use trace::{FailureReason, OrderTrace, TraceState};
