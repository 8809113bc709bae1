//! The domain: orders, products, traces, members, tokens and their rules.
//! No I/O.

pub mod admission;
mod caller;
mod error;
mod ids;
mod member;
mod order;
pub mod placement;
mod pricing;
mod product;
mod report;
pub mod throttle;
pub mod token;
mod trace;
mod validation;
mod wire;

pub use admission::{gcra, Purchase, PurchaseLimit, Rate, RateDecision, RoomPolicy, RoomStatus};
pub use caller::{Caller, Role};
pub use error::{BoxError, OmsError, OmsResult};
pub use ids::{MemberId, OrderId, ProductId, TraceId};
pub use member::{
    normalize_name, validate_password, Email, Login, Member, NewMember, PasswordHash, Signup,
    MAX_EMAIL_LEN, MAX_NAME_CHARS, MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS,
};
pub use order::{
    payment_key_error, units_by_product, validate_idempotency_key, validate_payment_key,
    LifecycleEvent, Order, OrderCommand, OrderEvent, OrderItem, OrderLine, OrderPage, OrderRequest,
    OrderStatus, Orders, Payment, ReceiverInfo, MAX_LINES, MAX_PAYMENT_KEY, MAX_QUANTITY,
    MAX_RECEIVER_FIELD,
};
pub use placement::{
    limited_pairs, BatchPlan, Bought, KeyBindings, KnownOutcome, Placement, StockDecrement,
};
pub use pricing::{OrderPriceCalculator, PricedOrder};
pub use product::{
    Product, ProductChange, ProductDraft, ProductUpdate, RulesChange, SaleRules, StockChange,
};
pub use report::{HeldUnits, OrderFilter, StockReport};
pub use throttle::{Attempts, ThrottlePolicy};
pub use token::{
    FamilyState, IssuedPair, Rotation, SessionId, TokenClaims, TokenId, TokenPair, TokenPolicy,
    TokenRejection, TokenType,
};
pub use trace::{FailureReason, OrderTrace, TraceState};
pub use validation::{FieldError, FieldErrorCode, FieldErrors};
pub use wire::ParseEnumError;
