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
    units_by_product, Order, OrderCommand, OrderItem, OrderLine, OrderRequest, OrderStatus,
    ReceiverInfo, MAX_LINES, MAX_QUANTITY, MAX_RECEIVER_FIELD,
};
pub use placement::{BatchPlan, KnownOutcome, Placement, StockDecrement};
pub use pricing::{OrderPriceCalculator, PricedOrder};
pub use product::{Product, ProductDraft};
pub use trace::{FailureReason, OrderTrace, TraceState};
