//! `POST /api/v1/payments/confirm` and `POST /api/v1/orders/{orderId}/cancel`.

use async_trait::async_trait;
use axum::extract::State;
use chrono::{DateTime, Utc};
use oms_core::domain::{Caller, OmsError, OmsResult, Order, OrderId};
use oms_core::port::inbound::PaymentUseCase;
use serde::{Deserialize, Serialize};

use super::{ApiJson, Auth, OrderBody, Problem, Segment, SharedState};

/// The body of `POST /api/v1/payments/confirm`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfirmBody {
    /// The order to pay.
    pub order_id: u64,
    /// The gateway's key of the payment the buyer authorised: 1 to 200
    /// characters of `A-Z a-z 0-9 - _ ~ .`.
    #[schema(min_length = 1, max_length = 200, pattern = "^[A-Za-z0-9_~.-]+$")]
    pub payment_key: String,
    /// The amount, which must be the order's total.
    pub amount: i64,
}

/// The answer of a confirmed payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaidBody {
    /// The order.
    pub order_id: u64,
    /// `PAID`.
    #[schema(value_type = oms_core::domain::OrderStatus)]
    pub status: String,
    /// The payment's key.
    pub payment_key: String,
    /// When the gateway approved it.
    pub approved_at: DateTime<Utc>,
    /// The amount paid.
    pub amount: i64,
}

#[utoipa::path(
    post,
    path = "/api/v1/payments/confirm",
    tag = "payments",
    description = "Confirms the payment of the caller's order through the gateway. Confirming a PAID order again with its key answers the same body.",
    security(("bearer" = [])),
    request_body = ConfirmBody,
    responses(
        (status = 200, description = "Paid", body = PaidBody),
        super::openapi::ConfirmProblems,
    )
)]
pub(super) async fn confirm(
    State(state): State<SharedState>,
    Auth(caller): Auth,
    ApiJson(body): ApiJson<ConfirmBody>,
) -> Result<ApiJson<PaidBody>, Problem> {
    let order = state
        .payments
        .confirm(
            caller,
            OrderId(body.order_id),
            body.payment_key,
            body.amount,
        )
        .await?;
    let payment = order.payment.ok_or_else(|| {
        Problem::from(OmsError::Internal(format!(
            "order {} was confirmed without a payment",
            order.order_id
        )))
    })?;
    Ok(ApiJson(PaidBody {
        order_id: order.order_id.0,
        status: order.status.as_str().to_owned(),
        payment_key: payment.payment_key,
        approved_at: payment.approved_at,
        amount: payment.amount,
    }))
}

#[utoipa::path(
    post,
    path = "/api/v1/orders/{orderId}/cancel",
    tag = "payments",
    description = "Cancels the order (its owner or ADMIN): CANCELLED when unpaid, REFUNDED through the gateway when paid; either gives its units back.",
    security(("bearer" = [])),
    params(("orderId" = u64, Path, description = "The order")),
    responses(
        (status = 200, description = "The order, CANCELLED or REFUNDED", body = super::OrderBody),
        super::openapi::CancelProblems,
    )
)]
pub(super) async fn cancel(
    State(state): State<SharedState>,
    Auth(caller): Auth,
    Segment(raw): Segment,
) -> Result<ApiJson<OrderBody>, Problem> {
    let order_id = super::parse_order_id(&raw)?;
    Ok(ApiJson(
        state.payments.cancel(caller, order_id).await?.into(),
    ))
}

/// The payment use cases of a service without a payment gateway: every
/// call is 503.
pub(super) struct PaymentsOff;

#[async_trait]
impl PaymentUseCase for PaymentsOff {
    async fn confirm(&self, _: Caller, _: OrderId, _: String, _: i64) -> OmsResult<Order> {
        Err(OmsError::unavailable(
            "payment gateway",
            "none is configured",
        ))
    }

    async fn cancel(&self, _: Caller, _: OrderId) -> OmsResult<Order> {
        Err(OmsError::unavailable(
            "payment gateway",
            "none is configured",
        ))
    }
}
