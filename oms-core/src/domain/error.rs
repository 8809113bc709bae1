//! The one error type of the core.

use std::error::Error as StdError;

use super::{
    FieldError, FieldErrors, LifecycleEvent, MemberId, OrderId, OrderStatus, ProductId, TraceId,
};

/// A boxed source error from an adapter.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Every failure a port or a use case can report.
///
/// Adapters keep their own error types private and convert into this one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OmsError {
    /// Not enough stock of a product for an order.
    #[error("product {product_id} is out of stock")]
    OutOfStock {
        /// The product that ran out.
        product_id: ProductId,
    },
    /// An order names a product that does not exist.
    #[error("product {product_id} does not exist")]
    ProductNotFound {
        /// The unknown product.
        product_id: ProductId,
    },
    /// The order would take the member past the product's `maxPerMember`.
    #[error("the order exceeds the purchase limit of product {product_id}")]
    LimitExceeded {
        /// The limited product.
        product_id: ProductId,
    },
    /// The product's sale has not started yet.
    #[error("the sale of product {product_id} has not started")]
    SaleNotStarted {
        /// The product.
        product_id: ProductId,
    },
    /// The product's sale has ended.
    #[error("the sale of product {product_id} has ended")]
    SaleEnded {
        /// The product.
        product_id: ProductId,
    },
    /// The member sent more order requests than the rate allows.
    #[error("too many order requests; try again in {} ms", retry_after.as_millis())]
    RateLimited {
        /// How long to wait.
        retry_after: std::time::Duration,
    },
    /// The waiting room is on and the member holds no admission.
    #[error("not admitted yet")]
    NotAdmitted {
        /// The member's place in the line (1 = next) when they are in it;
        /// otherwise the place entering now would give them. `None` when
        /// the room could not tell.
        position: Option<u64>,
        /// Whether the member is in the line (else they must enter first).
        in_line: bool,
        /// When to ask again.
        retry_after: std::time::Duration,
    },
    /// The member is not in the waiting room (never entered, or their
    /// admission ended).
    #[error("not in the waiting room")]
    NotInWaitingRoom,
    /// The waiting room is not in use.
    #[error("the waiting room is off")]
    WaitingRoomOff,
    /// The order cannot move by this event from its status.
    #[error("an order {from} cannot {event}")]
    IllegalTransition {
        /// The order's status.
        from: OrderStatus,
        /// What was asked.
        event: LifecycleEvent,
    },
    /// The order cannot be paid (expired, cancelled, paid with another
    /// key, or a confirmation with another key is under way).
    #[error("order {order_id} cannot be paid: it is {status}")]
    OrderNotPayable {
        /// The order.
        order_id: OrderId,
        /// Its status.
        status: OrderStatus,
    },
    /// The order cannot be cancelled (already final, or its payment is
    /// being confirmed).
    #[error("order {order_id} cannot be cancelled: {why}")]
    OrderNotCancellable {
        /// The order.
        order_id: OrderId,
        /// Why.
        why: String,
    },
    /// The amount to pay is not the order's total.
    #[error("the amount {actual} is not the order's total {expected}")]
    AmountMismatch {
        /// The order's total.
        expected: i64,
        /// The amount sent.
        actual: i64,
    },
    /// The payment gateway declined the payment.
    #[error("payment declined: {code}: {message}")]
    PaymentDeclined {
        /// The gateway's code.
        code: String,
        /// The gateway's message.
        message: String,
    },
    /// The payment gateway did not answer in time, or answered what cannot
    /// be read: the payment may or may not have been made. The order keeps
    /// the confirmation in doubt and a reconciler asks the gateway later.
    #[error("the payment's outcome is unknown: {0}")]
    PaymentUnknown(String),
    /// A product with this id exists already.
    #[error("product {product_id} exists already")]
    ProductExists {
        /// The taken id.
        product_id: ProductId,
    },
    /// No order with this id (or not visible to the caller).
    #[error("order {order_id} not found")]
    OrderNotFound {
        /// The requested order.
        order_id: OrderId,
    },
    /// No trace with this id (or not visible to the caller).
    #[error("trace {trace_id} not found")]
    TraceNotFound {
        /// The requested trace.
        trace_id: TraceId,
    },
    /// A concurrent writer changed the data first (optimistic lock lost); retry.
    #[error("concurrent update conflict: {0}")]
    Conflict(String),
    /// The input breaks a rule of the domain (one that belongs to no
    /// single field of a request body: a header, a query value, a path
    /// segment).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// Fields of a request body break rules of the domain: every one of
    /// them, with its path, a code and a message. Answered like
    /// [`Invalid`](Self::Invalid) (`VALIDATION_FAILED`), with the list.
    #[error("invalid input: {0}")]
    Validation(FieldErrors),
    /// The caller may not do this.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// A conditional write found the resource at another version than the
    /// caller expected (the caller read a stale copy).
    #[error("version mismatch: expected {expected}, found {actual}")]
    PreconditionFailed {
        /// The version the caller sent.
        expected: i64,
        /// The version that stands.
        actual: i64,
    },
    /// The write needs a precondition (the version the caller read) and
    /// none was given.
    #[error("precondition required: {0}")]
    PreconditionRequired(String),
    /// No valid credentials: a token that is missing, malformed, of the
    /// wrong type, expired or revoked.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// A login with an unknown email or a wrong password (the same error
    /// for both, so that it does not tell which).
    #[error("email or password is wrong")]
    BadCredentials,
    /// A member with this email exists already.
    #[error("a member with this email exists already")]
    EmailTaken,
    /// No member with this id.
    #[error("member {member_id} not found")]
    MemberNotFound {
        /// The requested member.
        member_id: MemberId,
    },
    /// Too many attempts (e.g. failed logins); try again after the wait.
    #[error("too many attempts; try again in {} s", retry_after.as_secs())]
    Throttled {
        /// How long to wait.
        retry_after: std::time::Duration,
    },
    /// A broken invariant, data the service cannot read or write (a value
    /// that does not encode, a record that does not decode): a bug or a
    /// corrupted record, never the caller's fault, never retryable.
    /// Answered 500 `INTERNAL_ERROR` without the message, which is logged.
    #[error("internal error: {0}")]
    Internal(String),
    /// A dependency (broker, cache, database) did not answer.
    #[error("{what} is unavailable: {source}")]
    Unavailable {
        /// Which dependency.
        what: &'static str,
        /// What went wrong.
        #[source]
        source: BoxError,
    },
}

impl OmsError {
    /// Wraps a dependency failure.
    pub fn unavailable(what: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Unavailable {
            what,
            source: source.into(),
        }
    }

    /// A broken invariant or an encoding failure (see
    /// [`Internal`](Self::Internal)).
    pub fn internal(what: impl Into<String>) -> Self {
        Self::Internal(what.into())
    }

    /// The fields that break rules, for [`Validation`](Self::Validation);
    /// none for every other error.
    pub fn field_errors(&self) -> &[FieldError] {
        match self {
            Self::Validation(errors) => errors.as_slice(),
            _ => &[],
        }
    }

    /// Whether the input was refused by a rule of the domain
    /// ([`Invalid`](Self::Invalid) or [`Validation`](Self::Validation)).
    pub fn is_invalid_input(&self) -> bool {
        matches!(self, Self::Invalid(_) | Self::Validation(_))
    }

    /// Whether trying the same operation again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Conflict(_) | Self::Unavailable { .. })
    }

    /// A short, stable name of the kind of error (the problem code the
    /// HTTP API answers with, e.g. `OUT_OF_STOCK`), without its details:
    /// what metrics label refusals and failures with.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::OutOfStock { .. } => "OUT_OF_STOCK",
            Self::ProductNotFound { .. } => "PRODUCT_NOT_FOUND",
            Self::LimitExceeded { .. } => "LIMIT_EXCEEDED",
            Self::SaleNotStarted { .. } => "SALE_NOT_STARTED",
            Self::SaleEnded { .. } => "SALE_ENDED",
            Self::RateLimited { .. } => "RATE_LIMITED",
            Self::NotAdmitted { .. } => "NOT_ADMITTED",
            Self::NotInWaitingRoom => "NOT_IN_WAITING_ROOM",
            Self::WaitingRoomOff => "WAITING_ROOM_OFF",
            Self::IllegalTransition { .. } => "ILLEGAL_TRANSITION",
            Self::OrderNotPayable { .. } => "ORDER_NOT_PAYABLE",
            Self::OrderNotCancellable { .. } => "ORDER_NOT_CANCELLABLE",
            Self::AmountMismatch { .. } => "AMOUNT_MISMATCH",
            Self::PaymentDeclined { .. } => "PAYMENT_DECLINED",
            Self::PaymentUnknown(_) => "PAYMENT_UNKNOWN",
            Self::ProductExists { .. } => "PRODUCT_EXISTS",
            Self::OrderNotFound { .. } => "ORDER_NOT_FOUND",
            Self::TraceNotFound { .. } => "TRACE_NOT_FOUND",
            Self::Conflict(_) => "CONFLICT",
            Self::Invalid(_) | Self::Validation(_) => "VALIDATION_FAILED",
            Self::Forbidden(_) => "FORBIDDEN",
            Self::PreconditionFailed { .. } => "PRECONDITION_FAILED",
            Self::PreconditionRequired(_) => "PRECONDITION_REQUIRED",
            Self::Unauthenticated(_) => "UNAUTHORIZED",
            Self::BadCredentials => "BAD_CREDENTIALS",
            Self::EmailTaken => "EMAIL_TAKEN",
            Self::MemberNotFound { .. } => "MEMBER_NOT_FOUND",
            Self::Throttled { .. } => "TOO_MANY_ATTEMPTS",
            Self::Internal(_) => "INTERNAL_ERROR",
            Self::Unavailable { .. } => "SERVICE_UNAVAILABLE",
        }
    }
}

/// Result with [`OmsError`].
pub type OmsResult<T> = Result<T, OmsError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_are_neither_retryable_nor_the_callers_fault() {
        let e = OmsError::internal("cannot encode order: key must be a string");
        assert_eq!(e.kind(), "INTERNAL_ERROR");
        assert!(!e.is_retryable());
        assert!(!e.is_invalid_input());
        assert!(e.field_errors().is_empty());
        assert!(OmsError::Invalid("x".into()).is_invalid_input());
        assert!(OmsError::Validation(FieldErrors::new()).is_invalid_input());
    }
}
