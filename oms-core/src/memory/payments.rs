use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::Utc;

use super::lock;
use crate::domain::{OmsError, OmsResult, Payment};
use crate::port::outbound::{
    gateway_order_id, GatewayPayment, GatewayStatus, PaymentGateway, PaymentRequest,
};

/// A [`PaymentGateway`] in memory, for the embedded default and tests. It
/// approves every `paymentKey` except:
/// * `decline-…`: declined (`REJECT_CARD_COMPANY`);
/// * `timeout-…`: charged, but the answer is lost
///   ([`OmsError::PaymentUnknown`]); [`lookup`](PaymentGateway::lookup)
///   finds the payment done, as the reconciler will.
///
/// Confirming again with the same idempotency key answers the first result
/// and charges nothing more; so does confirming a key that is done already.
#[derive(Debug, Default)]
pub struct InMemoryPaymentGateway {
    payments: Mutex<HashMap<String, (GatewayPayment, usize)>>,
}

impl InMemoryPaymentGateway {
    /// A gateway that has seen no payment.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many times `payment_key` was charged (at most once, whatever
    /// the retries).
    pub fn charges(&self, payment_key: &str) -> usize {
        lock(&self.payments)
            .get(payment_key)
            .map_or(0, |(_, charges)| *charges)
    }
}

#[async_trait]
impl PaymentGateway for InMemoryPaymentGateway {
    async fn confirm(&self, request: &PaymentRequest) -> OmsResult<Payment> {
        if request.payment_key.starts_with("decline-") {
            return Err(OmsError::PaymentDeclined {
                code: "REJECT_CARD_COMPANY".into(),
                message: "the card company refused the payment".into(),
            });
        }
        let mut payments = lock(&self.payments);
        let (payment, charges) = payments
            .entry(request.payment_key.clone())
            .or_insert_with(|| {
                (
                    GatewayPayment {
                        payment_key: request.payment_key.clone(),
                        order_id: gateway_order_id(request.order_id),
                        amount: request.amount,
                        status: GatewayStatus::Done,
                        approved_at: Some(Utc::now()),
                    },
                    0,
                )
            });
        if *charges == 0 {
            *charges = 1;
        }
        if payment.order_id != gateway_order_id(request.order_id)
            || payment.amount != request.amount
        {
            return Err(OmsError::PaymentDeclined {
                code: "ALREADY_PROCESSED_PAYMENT".into(),
                message: "this payment was made for another order or amount".into(),
            });
        }
        if request.payment_key.starts_with("timeout-") {
            return Err(OmsError::PaymentUnknown(
                "the gateway did not answer in time".into(),
            ));
        }
        Ok(Payment {
            payment_key: payment.payment_key.clone(),
            amount: payment.amount,
            approved_at: payment.approved_at.unwrap_or_else(Utc::now),
        })
    }

    async fn cancel(
        &self,
        payment_key: &str,
        _reason: &str,
        _idempotency_key: &str,
    ) -> OmsResult<()> {
        let mut payments = lock(&self.payments);
        match payments.get_mut(payment_key) {
            Some((payment, _)) => {
                payment.status = GatewayStatus::Canceled;
                Ok(())
            }
            None => Err(OmsError::PaymentDeclined {
                code: "NOT_FOUND_PAYMENT".into(),
                message: "no such payment".into(),
            }),
        }
    }

    async fn lookup(&self, payment_key: &str) -> OmsResult<Option<GatewayPayment>> {
        Ok(lock(&self.payments)
            .get(payment_key)
            .map(|(payment, _)| payment.clone()))
    }
}
