//! Application services: the inbound ports implemented on the outbound ones.

mod gate;
mod order;
mod product;
mod query;
mod request;
mod sweeper;

pub use gate::{fill_gate, GateKeeper, GatePolicy};
pub use order::{OrderService, RetryPolicy};
pub use product::ProductService;
pub use query::QueryService;
pub use request::RequestOrderService;
pub use sweeper::{SweepPolicy, SweepReport, TraceSweeper};
