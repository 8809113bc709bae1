//! The trace a client polls: PROCESSING, then COMPLETED or FAILED.

use serde::{Deserialize, Serialize};

use super::{MemberId, OmsError, OrderId, TraceId};

/// Why an order request failed. The wire names are those of API.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum FailureReason {
    /// Not enough stock.
    OutOfStock,
    /// A product of the order does not exist.
    ProductNotFound,
    /// The command broke a rule (validated again by the consumer).
    Invalid,
    /// The record could not be decoded.
    Poison,
    /// The record was lost before it was processed (found by the sweeper).
    Lost,
    /// The queue did not take the order; the client was answered 503 and
    /// the order can never be placed by a late delivery.
    NotAccepted,
    /// The member's `Idempotency-Key` was already bound to another trace,
    /// which stands for the request: this one places nothing.
    Duplicate,
    /// The store refused the order for a reason that no retry can change
    /// (found by splitting its batch); the rest of the batch was placed.
    Unprocessable,
    /// The order would take the member past the product's `maxPerMember`.
    LimitExceeded,
    /// The order was accepted before the product's sale started.
    SaleNotStarted,
    /// The order was accepted after the product's sale ended.
    SaleEnded,
}

super::wire::wire_names!(FailureReason, "failure reason", {
    OutOfStock => "OUT_OF_STOCK",
    ProductNotFound => "PRODUCT_NOT_FOUND",
    Invalid => "INVALID",
    Poison => "POISON",
    Lost => "LOST",
    NotAccepted => "NOT_ACCEPTED",
    Duplicate => "DUPLICATE",
    Unprocessable => "UNPROCESSABLE",
    LimitExceeded => "LIMIT_EXCEEDED",
    SaleNotStarted => "SALE_NOT_STARTED",
    SaleEnded => "SALE_ENDED",
});

impl FailureReason {
    /// Reads a stored name (a wire name). Any other name is a record the
    /// service cannot read: [`OmsError::Internal`].
    pub fn parse(s: &str) -> Result<Self, OmsError> {
        s.parse()
            .map_err(|e: super::ParseEnumError| OmsError::Internal(e.to_string()))
    }

    /// The reason an error of the domain stands for, if it is final.
    pub fn of(error: &OmsError) -> Option<Self> {
        match error {
            OmsError::OutOfStock { .. } => Some(Self::OutOfStock),
            OmsError::ProductNotFound { .. } => Some(Self::ProductNotFound),
            OmsError::Invalid(_) | OmsError::Validation(_) => Some(Self::Invalid),
            OmsError::LimitExceeded { .. } => Some(Self::LimitExceeded),
            OmsError::SaleNotStarted { .. } => Some(Self::SaleNotStarted),
            OmsError::SaleEnded { .. } => Some(Self::SaleEnded),
            _ => None,
        }
    }
}

/// The state of a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TraceState {
    /// Accepted, not yet processed.
    Processing,
    /// Placed as this order.
    Completed {
        /// The order placed.
        #[serde(rename = "orderId")]
        order_id: OrderId,
    },
    /// Not placed, for this reason.
    Failed {
        /// Why.
        reason: FailureReason,
    },
}

impl TraceState {
    /// Whether the state is COMPLETED or FAILED.
    pub fn is_final(&self) -> bool {
        !matches!(self, Self::Processing)
    }

    /// The wire name of the status.
    pub fn status_str(&self) -> &'static str {
        match self {
            Self::Processing => "PROCESSING",
            Self::Completed { .. } => "COMPLETED",
            Self::Failed { .. } => "FAILED",
        }
    }
}

/// The trace of one order request, with its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderTrace {
    /// The trace id.
    pub trace_id: TraceId,
    /// The member who made the request.
    pub member_id: MemberId,
    /// Where it stands.
    #[serde(flatten)]
    pub state: TraceState,
}

impl OrderTrace {
    /// A trace that was just accepted.
    pub fn processing(trace_id: TraceId, member_id: MemberId) -> Self {
        Self {
            trace_id,
            member_id,
            state: TraceState::Processing,
        }
    }
}
