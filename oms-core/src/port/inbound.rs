//! Inbound ports: the use cases the core offers to driving adapters (HTTP,
//! queue consumers).

use async_trait::async_trait;

use crate::domain::{
    Caller, Login, Member, OmsResult, Order, OrderCommand, OrderFilter, OrderId, OrderPage,
    OrderRequest, OrderTrace, Orders, Placement, Product, ProductDraft, ProductId, ProductUpdate,
    RoomStatus, Signup, StockReport, TokenPair, TraceId,
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

/// What operators read: every member's orders and where a product's units
/// are. Every call needs the ADMIN role
/// ([`OmsError::Forbidden`](crate::domain::OmsError::Forbidden) otherwise).
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait AdminQuery: Send + Sync {
    /// A page of every member's orders matching `filter`, newest first.
    async fn orders(
        &self,
        caller: Caller,
        filter: OrderFilter,
        page: OrderPage,
    ) -> OmsResult<Orders>;

    /// A product's stock in the database and in the stock gate, and the
    /// units its orders hold;
    /// [`OmsError::ProductNotFound`](crate::domain::OmsError::ProductNotFound)
    /// for an unknown product.
    async fn stock(&self, caller: Caller, product_id: ProductId) -> OmsResult<StockReport>;
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

/// Members and their logins: sign-up, login, refresh, logout, and the
/// check of an access token on every authenticated request.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait AuthUseCase: Send + Sync {
    /// Signs a buyer up (role `USER`); [`OmsError::EmailTaken`] if the
    /// email is taken, [`OmsError::Validation`] listing every field that
    /// breaks a rule.
    ///
    /// [`OmsError::EmailTaken`]: crate::domain::OmsError::EmailTaken
    /// [`OmsError::Validation`]: crate::domain::OmsError::Validation
    async fn signup(&self, signup: Signup) -> OmsResult<Member>;

    /// Logs in: a new login (family) and its first token pair;
    /// [`OmsError::BadCredentials`] for an unknown email and a wrong
    /// password alike, [`OmsError::Throttled`] after too many attempts.
    ///
    /// [`OmsError::BadCredentials`]: crate::domain::OmsError::BadCredentials
    /// [`OmsError::Throttled`]: crate::domain::OmsError::Throttled
    async fn login(&self, login: Login) -> OmsResult<TokenPair>;

    /// Exchanges the live refresh token of a login for a new pair; the
    /// presented token is dead from then on, and presenting a dead one
    /// revokes the login.
    async fn refresh(&self, refresh_token: &str) -> OmsResult<TokenPair>;

    /// Revokes the access token and its login, and the login of
    /// `refresh_token` when given (it must be the same member's).
    async fn logout(&self, access_token: &str, refresh_token: Option<String>) -> OmsResult<()>;

    /// The caller's own member record.
    async fn me(&self, caller: Caller) -> OmsResult<Member>;

    /// The caller an access token stands for: signature, type, expiry and
    /// revocation checked.
    async fn authenticate(&self, access_token: &str) -> OmsResult<Caller>;
}

/// The waiting room as members see it.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait WaitingRoomUseCase: Send + Sync {
    /// Enters the caller (idempotent);
    /// [`OmsError::WaitingRoomOff`](crate::domain::OmsError::WaitingRoomOff)
    /// when there is no room.
    async fn enter(&self, caller: Caller) -> OmsResult<RoomStatus>;

    /// Where the caller stands;
    /// [`OmsError::NotInWaitingRoom`](crate::domain::OmsError::NotInWaitingRoom)
    /// when they are not in it.
    async fn status(&self, caller: Caller) -> OmsResult<RoomStatus>;
}

/// Paying for orders and cancelling them.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait PaymentUseCase: Send + Sync {
    /// Confirms the payment `payment_key` of `amount` for the caller's
    /// order: the order, PAID (the same for a PAID order confirmed again
    /// with its key). Errors: `OrderNotFound` (not the caller's),
    /// `AmountMismatch`, `OrderNotPayable`, `PaymentDeclined`,
    /// `PaymentUnknown` (the gateway did not answer: reconciled later).
    async fn confirm(
        &self,
        caller: Caller,
        order_id: OrderId,
        payment_key: String,
        amount: i64,
    ) -> OmsResult<Order>;

    /// Cancels the order (its owner or an operator): CANCELLED when unpaid,
    /// REFUNDED through the gateway when paid. `OrderNotCancellable` when
    /// final, or while a payment is being confirmed.
    async fn cancel(&self, caller: Caller, order_id: OrderId) -> OmsResult<Order>;
}
