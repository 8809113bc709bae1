//! The contract of [`PaymentGateway`], for a gateway (or a stand-in of the
//! real one) that approves `paymentKey`s beginning `pay-`, declines those
//! beginning `decline-`, and charges those beginning `timeout-` without
//! answering in time.

use crate::domain::{OmsError, OrderId};
use crate::port::outbound::{gateway_order_id, GatewayStatus, PaymentGateway, PaymentRequest};

use super::random_id;

/// Runs every check of the payment gateway contract.
pub async fn run(gateway: &dyn PaymentGateway) {
    a_payment_is_charged_once_whatever_the_retries(gateway).await;
    a_declined_payment_is_not_charged(gateway).await;
    a_lost_answer_is_unknown_and_the_lookup_finds_the_charge(gateway).await;
    a_refund_is_made_once(gateway).await;
    unknown_payments_are_none_and_not_refunded(gateway).await;
}

fn request(prefix: &str, amount: i64) -> PaymentRequest {
    let order_id = OrderId(random_id());
    let payment_key = format!("{prefix}{}", uuid::Uuid::new_v4().simple());
    PaymentRequest {
        idempotency_key: format!("confirm-{order_id}-{payment_key}"),
        payment_key,
        order_id,
        amount,
    }
}

pub async fn a_payment_is_charged_once_whatever_the_retries(gateway: &dyn PaymentGateway) {
    let req = request("pay-", 12900);
    assert_eq!(gateway.lookup(&req.payment_key).await.unwrap(), None);
    let paid = gateway.confirm(&req).await.unwrap();
    assert_eq!(
        (paid.payment_key.as_str(), paid.amount),
        (req.payment_key.as_str(), 12900)
    );
    // The same request again: the same payment.
    assert_eq!(gateway.confirm(&req).await.unwrap(), paid);
    // Another idempotency key for a payment made: the same payment, or an
    // outcome to look up — never a second charge.
    let other = PaymentRequest {
        idempotency_key: format!("{}-again", req.idempotency_key),
        ..req.clone()
    };
    match gateway.confirm(&other).await {
        Ok(again) => assert_eq!(again, paid),
        Err(OmsError::PaymentUnknown(_)) => {}
        Err(e) => panic!("a confirmed payment confirmed again: {e:?}"),
    }
    let found = gateway.lookup(&req.payment_key).await.unwrap().unwrap();
    assert_eq!(found.status, GatewayStatus::Done);
    assert_eq!(found.amount, 12900);
    assert_eq!(found.order_id, gateway_order_id(req.order_id));
}

pub async fn a_declined_payment_is_not_charged(gateway: &dyn PaymentGateway) {
    let req = request("decline-", 5000);
    assert!(matches!(
        gateway.confirm(&req).await,
        Err(OmsError::PaymentDeclined { .. })
    ));
    let found = gateway.lookup(&req.payment_key).await.unwrap();
    assert!(
        found
            .as_ref()
            .is_none_or(|p| p.status != GatewayStatus::Done),
        "{found:?}"
    );
}

pub async fn a_lost_answer_is_unknown_and_the_lookup_finds_the_charge(
    gateway: &dyn PaymentGateway,
) {
    let req = request("timeout-", 7000);
    assert!(matches!(
        gateway.confirm(&req).await,
        Err(OmsError::PaymentUnknown(_))
    ));
    let found = gateway.lookup(&req.payment_key).await.unwrap().unwrap();
    assert_eq!((found.status, found.amount), (GatewayStatus::Done, 7000));
}

pub async fn a_refund_is_made_once(gateway: &dyn PaymentGateway) {
    let req = request("pay-", 3000);
    gateway.confirm(&req).await.unwrap();
    let refund = format!("refund-{}", req.order_id);
    gateway
        .cancel(&req.payment_key, "cancelled by the buyer", &refund)
        .await
        .unwrap();
    // Retried: still one refund, and no error.
    gateway
        .cancel(&req.payment_key, "cancelled by the buyer", &refund)
        .await
        .unwrap();
    let found = gateway.lookup(&req.payment_key).await.unwrap().unwrap();
    assert_eq!(found.status, GatewayStatus::Canceled);
}

pub async fn unknown_payments_are_none_and_not_refunded(gateway: &dyn PaymentGateway) {
    let key = format!("pay-{}", uuid::Uuid::new_v4().simple());
    assert_eq!(gateway.lookup(&key).await.unwrap(), None);
    assert!(gateway
        .cancel(&key, "no such payment", "refund-x")
        .await
        .is_err());
}
