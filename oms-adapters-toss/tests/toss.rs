//! `TossPaymentGateway` against a wiremock stand-in for Toss Payments.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use oms_adapters_toss::{TossConfig, TossPaymentGateway};
use oms_core::domain::{OmsError, OrderId};
use oms_core::port::outbound::{
    gateway_order_id, GatewayPayment, GatewayStatus, PaymentGateway, PaymentRequest,
};
use serde_json::{json, Value};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const SECRET: &str = "test_sk_zXLkKEypNArWmo50nX3lmeaxYG5R";
/// `Basic base64("test_sk_zXLkKEypNArWmo50nX3lmeaxYG5R:")`.
const AUTH: &str = "Basic dGVzdF9za196WExrS0V5cE5BcldtbzUwblgzbG1lYXhZRzVSOg==";
const TIMEOUT: Duration = Duration::from_millis(300);
/// The most a call may take in these tests: the timeout and a generous
/// margin.
const BOUND: Duration = Duration::from_millis(300 + 2000);

const KEY: &str = "tgen_20240213121757MvuS8";
const APPROVED_AT: &str = "2024-02-13T12:18:14+09:00";

fn config(base_url: &str) -> TossConfig {
    TossConfig::new(SECRET)
        .with_base_url(base_url)
        .with_timeout(TIMEOUT)
        .with_connect_timeout(TIMEOUT)
}

fn gateway(server: &MockServer) -> TossPaymentGateway {
    TossPaymentGateway::new(config(&server.uri())).unwrap()
}

fn request(amount: i64) -> PaymentRequest {
    PaymentRequest {
        payment_key: KEY.into(),
        order_id: OrderId(42),
        amount,
        idempotency_key: "confirm-42-7f3c".into(),
    }
}

/// A Toss Payment object, with fields the gateway must ignore.
fn payment(key: &str, order_id: &str, status: &str, amount: i64) -> Value {
    json!({
        "mId": "tosspayments",
        "lastTransactionKey": "9C62B18EEF0DE3EB7F4422EB6D14BC6E",
        "paymentKey": key,
        "orderId": order_id,
        "orderName": "토스 티셔츠 외 2건",
        "taxExemptionAmount": 0,
        "status": status,
        "requestedAt": "2024-02-13T12:17:57+09:00",
        "approvedAt": if status == "DONE" || status == "CANCELED" { json!(APPROVED_AT) } else { Value::Null },
        "useEscrow": false,
        "cultureExpense": false,
        "card": { "issuerCode": "71", "number": "12345678****000*", "approveNo": "00000000" },
        "virtualAccount": null,
        "cancels": null,
        "secret": null,
        "type": "NORMAL",
        "easyPay": { "provider": "토스페이", "amount": 0, "discountAmount": 0 },
        "country": "KR",
        "failure": null,
        "isPartialCancelable": true,
        "currency": "KRW",
        "totalAmount": amount,
        "balanceAmount": amount,
        "suppliedAmount": 11727,
        "vat": 1173,
        "taxFreeAmount": 0,
        "method": "카드",
        "version": "2022-11-16"
    })
}

fn toss_error(code: &str, message: &str) -> Value {
    json!({ "code": code, "message": message })
}

fn approved_at() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(APPROVED_AT)
        .unwrap()
        .with_timezone(&Utc)
}

async fn confirm_answering(
    answer: ResponseTemplate,
) -> Result<oms_core::domain::Payment, OmsError> {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payments/confirm"))
        .respond_with(answer)
        .expect(1)
        .mount(&server)
        .await;
    gateway(&server).confirm(&request(12900)).await
}

// --- configuration ----------------------------------------------------------

#[test]
fn the_secret_key_is_never_printed() {
    let config = config("http://127.0.0.1:1");
    let shown = format!("{config:?}");
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(shown.contains("redacted"), "{shown}");
    let gateway = TossPaymentGateway::new(config).unwrap();
    let shown = format!("{gateway:?}");
    assert!(!shown.contains(SECRET), "{shown}");
}

#[test]
fn the_defaults_are_tosss_host_and_five_seconds() {
    let config = TossConfig::new(SECRET);
    assert_eq!(config.base_url(), "https://api.tosspayments.com");
    assert_eq!(config.timeout(), Duration::from_secs(5));
    assert!(config.connect_timeout() <= config.timeout());
    assert!(TossPaymentGateway::new(config).is_ok());
}

#[test]
fn a_bad_configuration_is_refused() {
    for config in [
        TossConfig::new(""),
        TossConfig::new("  "),
        TossConfig::new("sk\nx"),
        TossConfig::new(SECRET).with_base_url("not a url"),
        TossConfig::new(SECRET).with_base_url("ftp://api.tosspayments.com"),
        TossConfig::new(SECRET).with_base_url("mailto:toss@example.com"),
        TossConfig::new(SECRET).with_base_url("https://api.tosspayments.com/?x=1"),
        TossConfig::new(SECRET).with_timeout(Duration::ZERO),
        TossConfig::new(SECRET).with_connect_timeout(Duration::ZERO),
    ] {
        let shown = format!("{config:?}");
        assert!(
            matches!(TossPaymentGateway::new(config), Err(OmsError::Invalid(_))),
            "{shown}"
        );
    }
}

// --- confirm ----------------------------------------------------------------

#[tokio::test]
async fn a_confirmed_payment_is_returned_and_the_request_is_tosss() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payments/confirm"))
        .and(header("authorization", AUTH))
        .and(header("idempotency-key", "confirm-42-7f3c"))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({
            "paymentKey": KEY,
            "orderId": "oms-order-42",
            "amount": 12900
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(payment(
            KEY,
            "oms-order-42",
            "DONE",
            12900,
        )))
        .expect(1)
        .mount(&server)
        .await;

    let paid = gateway(&server).confirm(&request(12900)).await.unwrap();

    assert_eq!(paid.payment_key, KEY);
    assert_eq!(paid.amount, 12900);
    assert_eq!(paid.approved_at, approved_at());
    let received = server.received_requests().await.unwrap();
    assert_eq!(received.len(), 1);
    let body: Value = received[0].body_json().unwrap();
    assert_eq!(body.as_object().map(|o| o.len()), Some(3), "{body}");
    assert_eq!(gateway_order_id(OrderId(42)), "oms-order-42");
}

#[tokio::test]
async fn a_base_url_with_a_path_keeps_it() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/toss/v1/payments/confirm"))
        .respond_with(ResponseTemplate::new(200).set_body_json(payment(
            KEY,
            "oms-order-42",
            "DONE",
            12900,
        )))
        .expect(1)
        .mount(&server)
        .await;
    let gateway = TossPaymentGateway::new(config(&format!("{}/toss/", server.uri()))).unwrap();
    assert!(gateway.confirm(&request(12900)).await.is_ok());
}

#[tokio::test]
async fn a_card_refusal_is_a_decline_with_tosss_code_and_message() {
    for status in [400, 403] {
        let err = confirm_answering(ResponseTemplate::new(status).set_body_json(toss_error(
            "REJECT_CARD_COMPANY",
            "결제 승인이 거절되었습니다",
        )))
        .await
        .unwrap_err();
        match err {
            OmsError::PaymentDeclined { code, message } => {
                assert_eq!(code, "REJECT_CARD_COMPANY");
                assert_eq!(message, "결제 승인이 거절되었습니다");
            }
            other => panic!("{status}: {other:?}"),
        }
    }
    let err = confirm_answering(
        ResponseTemplate::new(400).set_body_json(toss_error("INVALID_CARD_NUMBER", "카드번호")),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, OmsError::PaymentDeclined { code, .. } if code == "INVALID_CARD_NUMBER"));
}

#[tokio::test]
async fn a_refused_secret_key_is_our_configuration_not_a_decline() {
    let err = confirm_answering(
        ResponseTemplate::new(401)
            .set_body_json(toss_error("UNAUTHORIZED_KEY", "인증되지 않은 시크릿 키")),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, OmsError::Unavailable { .. }), "{err:?}");
    assert!(!err.to_string().contains(SECRET));

    let err = confirm_answering(
        ResponseTemplate::new(400).set_body_json(toss_error("INVALID_API_KEY", "잘못된 시크릿키")),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, OmsError::Unavailable { .. }), "{err:?}");

    let err = confirm_answering(ResponseTemplate::new(403).set_body_string("<html>denied</html>"))
        .await
        .unwrap_err();
    assert!(matches!(err, OmsError::Unavailable { .. }), "{err:?}");
}

#[tokio::test]
async fn an_already_processed_payment_is_unknown() {
    let err = confirm_answering(ResponseTemplate::new(400).set_body_json(toss_error(
        "ALREADY_PROCESSED_PAYMENT",
        "이미 처리된 결제 입니다.",
    )))
    .await
    .unwrap_err();
    assert!(matches!(err, OmsError::PaymentUnknown(_)), "{err:?}");
}

#[tokio::test]
async fn a_server_error_is_unknown() {
    for answer in [
        ResponseTemplate::new(500).set_body_json(toss_error(
            "FAILED_INTERNAL_SYSTEM_PROCESSING",
            "내부 시스템 처리 작업이 실패했습니다.",
        )),
        ResponseTemplate::new(502).set_body_string("bad gateway"),
        ResponseTemplate::new(503),
        ResponseTemplate::new(400).set_body_json(toss_error("PROVIDER_ERROR", "일시적인 오류")),
        ResponseTemplate::new(302).insert_header("location", "https://example.invalid/"),
    ] {
        let err = confirm_answering(answer).await.unwrap_err();
        assert!(matches!(err, OmsError::PaymentUnknown(_)), "{err:?}");
    }
}

#[tokio::test]
async fn a_slow_answer_is_unknown_after_the_timeout() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payments/confirm"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(payment(KEY, "oms-order-42", "DONE", 12900))
                .set_delay(Duration::from_secs(4)),
        )
        .mount(&server)
        .await;
    let gateway = gateway(&server);

    let started = Instant::now();
    let err = gateway.confirm(&request(12900)).await.unwrap_err();
    let took = started.elapsed();

    assert!(matches!(err, OmsError::PaymentUnknown(_)), "{err:?}");
    assert!(took >= TIMEOUT, "{took:?}");
    assert!(took < BOUND, "{took:?}");
}

#[tokio::test]
async fn no_connection_is_unknown() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let gateway = TossPaymentGateway::new(config(&format!("http://127.0.0.1:{port}"))).unwrap();
    let started = Instant::now();
    let err = gateway.confirm(&request(12900)).await.unwrap_err();
    assert!(matches!(err, OmsError::PaymentUnknown(_)), "{err:?}");
    assert!(started.elapsed() < BOUND);
}

#[tokio::test]
async fn an_unreadable_answer_is_unknown() {
    for answer in [
        ResponseTemplate::new(200).set_body_string("not json"),
        ResponseTemplate::new(200).set_body_json(json!({ "paymentKey": KEY })),
        ResponseTemplate::new(200),
        ResponseTemplate::new(400).set_body_string("not json"),
        ResponseTemplate::new(404),
    ] {
        let err = confirm_answering(answer).await.unwrap_err();
        assert!(matches!(err, OmsError::PaymentUnknown(_)), "{err:?}");
    }
}

#[tokio::test]
async fn an_approval_of_another_amount_is_unknown() {
    let err = confirm_answering(ResponseTemplate::new(200).set_body_json(payment(
        KEY,
        "oms-order-42",
        "DONE",
        1290,
    )))
    .await
    .unwrap_err();
    assert!(matches!(err, OmsError::PaymentUnknown(_)), "{err:?}");
}

#[tokio::test]
async fn an_answer_that_is_not_done_or_not_ours_is_unknown() {
    let mut without_approval = payment(KEY, "oms-order-42", "DONE", 12900);
    without_approval["approvedAt"] = Value::Null;
    for body in [
        payment(KEY, "oms-order-42", "IN_PROGRESS", 12900),
        payment(KEY, "oms-order-42", "WAITING_FOR_DEPOSIT", 12900),
        payment(KEY, "oms-order-42", "ABORTED", 12900),
        payment("another-key", "oms-order-42", "DONE", 12900),
        payment(KEY, "oms-order-43", "DONE", 12900),
        without_approval,
    ] {
        let err = confirm_answering(ResponseTemplate::new(200).set_body_json(body))
            .await
            .unwrap_err();
        assert!(matches!(err, OmsError::PaymentUnknown(_)), "{err:?}");
    }
}

#[tokio::test]
async fn a_retry_sends_the_same_idempotency_key_and_body() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payments/confirm"))
        .respond_with(ResponseTemplate::new(500).set_body_json(toss_error(
            "FAILED_INTERNAL_SYSTEM_PROCESSING",
            "내부 시스템 처리 작업이 실패했습니다.",
        )))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/payments/confirm"))
        .respond_with(ResponseTemplate::new(200).set_body_json(payment(
            KEY,
            "oms-order-42",
            "DONE",
            12900,
        )))
        .expect(1)
        .mount(&server)
        .await;
    let gateway = gateway(&server);

    let first = gateway.confirm(&request(12900)).await;
    assert!(
        matches!(first, Err(OmsError::PaymentUnknown(_))),
        "{first:?}"
    );
    let second = gateway.confirm(&request(12900)).await.unwrap();
    assert_eq!(second.amount, 12900);

    let received = server.received_requests().await.unwrap();
    assert_eq!(received.len(), 2);
    let keys: Vec<_> = received
        .iter()
        .map(|r| r.headers.get("idempotency-key").cloned())
        .collect();
    assert_eq!(
        keys[0].as_ref().map(|k| k.to_str().unwrap()),
        Some("confirm-42-7f3c")
    );
    assert_eq!(keys[0], keys[1]);
    assert_eq!(received[0].body, received[1].body);
}

#[tokio::test]
async fn what_cannot_be_sent_is_invalid_and_not_sent() {
    let server = MockServer::start().await;
    let gateway = gateway(&server);
    let mut bad_key = request(12900);
    bad_key.payment_key = "a/b".into();
    let bad_amount = request(0);
    let mut bad_idempotency = request(12900);
    bad_idempotency.idempotency_key = "line\nbreak".into();
    let mut no_idempotency = request(12900);
    no_idempotency.idempotency_key = String::new();
    for request in [bad_key, bad_amount, bad_idempotency, no_idempotency] {
        let err = gateway.confirm(&request).await.unwrap_err();
        assert!(matches!(err, OmsError::Invalid(_)), "{err:?}");
    }
    for key in ["..", ".", "a/b", "", "a%2Fb"] {
        let err = gateway.lookup(key).await.unwrap_err();
        assert!(matches!(err, OmsError::Invalid(_)), "{key:?}: {err:?}");
        let err = gateway.cancel(key, "buyer asked", "c-1").await.unwrap_err();
        assert!(matches!(err, OmsError::Invalid(_)), "{key:?}: {err:?}");
    }
    let err = gateway.cancel(KEY, " ", "c-1").await.unwrap_err();
    assert!(matches!(err, OmsError::Invalid(_)), "{err:?}");
    assert!(server.received_requests().await.unwrap().is_empty());
}

// --- cancel -----------------------------------------------------------------

#[tokio::test]
async fn a_cancellation_is_sent_with_its_reason_and_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/v1/payments/{KEY}/cancel")))
        .and(header("authorization", AUTH))
        .and(header("idempotency-key", "cancel-42-1"))
        .and(body_json(json!({ "cancelReason": "구매자 변심" })))
        .respond_with(ResponseTemplate::new(200).set_body_json(payment(
            KEY,
            "oms-order-42",
            "CANCELED",
            12900,
        )))
        .expect(1)
        .mount(&server)
        .await;

    gateway(&server)
        .cancel(KEY, "구매자 변심", "cancel-42-1")
        .await
        .unwrap();
}

#[tokio::test]
async fn an_already_cancelled_payment_is_cancelled() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/v1/payments/{KEY}/cancel")))
        .respond_with(ResponseTemplate::new(400).set_body_json(toss_error(
            "ALREADY_CANCELED_PAYMENT",
            "이미 취소된 결제 입니다.",
        )))
        .expect(1)
        .mount(&server)
        .await;

    gateway(&server)
        .cancel(KEY, "expired", "cancel-42-2")
        .await
        .unwrap();
}

#[tokio::test]
async fn a_refused_cancellation_is_declined_and_an_unanswered_one_unknown() {
    let cases = [
        (
            ResponseTemplate::new(403).set_body_json(toss_error(
                "NOT_CANCELABLE_PAYMENT",
                "취소 할 수 없는 결제 입니다.",
            )),
            "declined",
        ),
        (
            ResponseTemplate::new(404).set_body_json(toss_error(
                "NOT_FOUND_PAYMENT",
                "존재하지 않는 결제 입니다.",
            )),
            "declined",
        ),
        (
            ResponseTemplate::new(401).set_body_json(toss_error("UNAUTHORIZED_KEY", "m")),
            "unavailable",
        ),
        (ResponseTemplate::new(500), "unknown"),
        (
            ResponseTemplate::new(200).set_body_string("not json"),
            "unknown",
        ),
        (
            ResponseTemplate::new(200).set_body_json(payment(
                KEY,
                "oms-order-42",
                "PARTIAL_CANCELED",
                12900,
            )),
            "unknown",
        ),
        (
            ResponseTemplate::new(200)
                .set_body_json(payment(KEY, "oms-order-42", "CANCELED", 12900))
                .set_delay(Duration::from_secs(4)),
            "unknown",
        ),
    ];
    for (answer, expected) in cases {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(format!("/v1/payments/{KEY}/cancel")))
            .respond_with(answer)
            .mount(&server)
            .await;
        let started = Instant::now();
        let err = gateway(&server)
            .cancel(KEY, "expired", "cancel-42-3")
            .await
            .unwrap_err();
        assert!(started.elapsed() < BOUND);
        let got = match err {
            OmsError::PaymentDeclined { .. } => "declined",
            OmsError::Unavailable { .. } => "unavailable",
            OmsError::PaymentUnknown(_) => "unknown",
            ref other => panic!("{other:?}"),
        };
        assert_eq!(got, expected, "{err:?}");
    }
}

// --- lookup -----------------------------------------------------------------

#[tokio::test]
async fn a_payment_is_looked_up() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("/v1/payments/{KEY}")))
        .and(header("authorization", AUTH))
        .respond_with(ResponseTemplate::new(200).set_body_json(payment(
            KEY,
            "oms-order-42",
            "DONE",
            12900,
        )))
        .expect(1)
        .mount(&server)
        .await;

    let found = gateway(&server).lookup(KEY).await.unwrap();

    assert_eq!(
        found,
        Some(GatewayPayment {
            payment_key: KEY.into(),
            order_id: "oms-order-42".into(),
            amount: 12900,
            status: GatewayStatus::Done,
            approved_at: Some(approved_at()),
        })
    );
}

#[tokio::test]
async fn the_status_of_a_payment_is_named() {
    for (status, expected) in [
        ("CANCELED", GatewayStatus::Canceled),
        ("ABORTED", GatewayStatus::Other("ABORTED".into())),
        (
            "PARTIAL_CANCELED",
            GatewayStatus::Other("PARTIAL_CANCELED".into()),
        ),
        ("READY", GatewayStatus::Other("READY".into())),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(format!("/v1/payments/{KEY}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(payment(
                KEY,
                "oms-order-42",
                status,
                500,
            )))
            .mount(&server)
            .await;
        let found = gateway(&server).lookup(KEY).await.unwrap().unwrap();
        assert_eq!(found.status, expected);
        assert_eq!(found.amount, 500);
    }
}

#[tokio::test]
async fn an_unknown_payment_is_none() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("/v1/payments/{KEY}")))
        .respond_with(ResponseTemplate::new(404).set_body_json(toss_error(
            "NOT_FOUND_PAYMENT",
            "존재하지 않는 결제 입니다.",
        )))
        .expect(1)
        .mount(&server)
        .await;

    assert_eq!(gateway(&server).lookup(KEY).await.unwrap(), None);
}

#[tokio::test]
async fn a_lookup_without_an_answer_is_unknown() {
    for answer in [
        ResponseTemplate::new(500).set_body_json(toss_error(
            "FAILED_INTERNAL_SYSTEM_PROCESSING",
            "내부 시스템 처리 작업이 실패했습니다.",
        )),
        ResponseTemplate::new(200).set_body_string("not json"),
        // A 404 that is not Toss's: a wrong base URL must not read as "no payment".
        ResponseTemplate::new(404).set_body_string("Not Found"),
        ResponseTemplate::new(404)
            .set_body_json(toss_error("NOT_FOUND", "존재하지 않는 정보 입니다.")),
        ResponseTemplate::new(200)
            .set_body_json(payment(KEY, "oms-order-42", "DONE", 12900))
            .set_delay(Duration::from_secs(4)),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(format!("/v1/payments/{KEY}")))
            .respond_with(answer)
            .mount(&server)
            .await;
        let started = Instant::now();
        let err = gateway(&server).lookup(KEY).await.unwrap_err();
        assert!(matches!(err, OmsError::PaymentUnknown(_)), "{err:?}");
        assert!(started.elapsed() < BOUND);
    }
}

// --- the port's contract, against a stateful stand-in ------------------------

/// A small Toss: payments confirmed once, idempotency keys honoured, full
/// cancellations.
#[derive(Clone, Default)]
struct FakeToss {
    state: Arc<Mutex<FakeState>>,
}

#[derive(Default)]
struct FakeState {
    /// Payment key → (order id, status, amount).
    payments: HashMap<String, (String, &'static str, i64)>,
    /// Idempotency key → the answer it got first.
    answers: HashMap<String, (u16, Value)>,
    charges: u32,
    refunds: u32,
}

impl Respond for FakeToss {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut state = self.state.lock().unwrap();
        let segments: Vec<&str> = request
            .url
            .path()
            .trim_start_matches('/')
            .split('/')
            .collect();
        let idempotency = request
            .headers
            .get("idempotency-key")
            .map(|k| k.to_str().unwrap().to_owned());
        if let Some(key) = &idempotency {
            if let Some((status, body)) = state.answers.get(key) {
                return ResponseTemplate::new(*status).set_body_json(body.clone());
            }
        }
        let (status, body) = match (request.method.as_str(), segments.as_slice()) {
            ("POST", ["v1", "payments", "confirm"]) => {
                let body: Value = request.body_json().unwrap();
                let key = body["paymentKey"].as_str().unwrap().to_owned();
                let order = body["orderId"].as_str().unwrap().to_owned();
                let amount = body["amount"].as_i64().unwrap();
                if key.starts_with("decline-") {
                    (
                        400,
                        toss_error("REJECT_CARD_COMPANY", "카드사에서 거절한 결제입니다."),
                    )
                } else if key.starts_with("timeout-") && !state.payments.contains_key(&key) {
                    // Charged, but the answer comes too late.
                    state.charges += 1;
                    state
                        .payments
                        .insert(key.clone(), (order.clone(), "DONE", amount));
                    return ResponseTemplate::new(200)
                        .set_body_json(payment(&key, &order, "DONE", amount))
                        .set_delay(Duration::from_secs(3));
                } else if state.payments.contains_key(&key) {
                    (
                        400,
                        toss_error("ALREADY_PROCESSED_PAYMENT", "이미 처리된 결제 입니다."),
                    )
                } else {
                    state.charges += 1;
                    state
                        .payments
                        .insert(key.clone(), (order.clone(), "DONE", amount));
                    (200, payment(&key, &order, "DONE", amount))
                }
            }
            ("POST", ["v1", "payments", key, "cancel"]) => {
                match state.payments.get(*key).cloned() {
                    None => (
                        404,
                        toss_error("NOT_FOUND_PAYMENT", "존재하지 않는 결제 입니다."),
                    ),
                    Some((_, "CANCELED", _)) => (
                        400,
                        toss_error("ALREADY_CANCELED_PAYMENT", "이미 취소된 결제 입니다."),
                    ),
                    Some((order, _, amount)) => {
                        state.refunds += 1;
                        state
                            .payments
                            .insert((*key).to_owned(), (order.clone(), "CANCELED", amount));
                        (200, payment(key, &order, "CANCELED", amount))
                    }
                }
            }
            ("GET", ["v1", "payments", key]) => match state.payments.get(*key) {
                None => (
                    404,
                    toss_error("NOT_FOUND_PAYMENT", "존재하지 않는 결제 입니다."),
                ),
                Some((order, status, amount)) => (200, payment(key, order, status, *amount)),
            },
            _ => (404, toss_error("NOT_FOUND", "존재하지 않는 정보 입니다.")),
        };
        if let Some(key) = idempotency {
            state.answers.insert(key, (status, body.clone()));
        }
        ResponseTemplate::new(status).set_body_json(body)
    }
}

#[tokio::test]
async fn the_gateway_keeps_the_ports_contract() {
    let server = MockServer::start().await;
    let toss = FakeToss::default();
    Mock::given(wiremock::matchers::any())
        .respond_with(toss.clone())
        .mount(&server)
        .await;
    let gateway: Arc<dyn PaymentGateway> = Arc::new(gateway(&server));
    let order_id = OrderId(7);
    let request = PaymentRequest {
        payment_key: "tgen_contract.key~1".into(),
        order_id,
        amount: 33000,
        idempotency_key: "confirm-7-a".into(),
    };

    // Nothing yet.
    assert_eq!(gateway.lookup(&request.payment_key).await.unwrap(), None);

    // Confirmed, and confirmed again with the same key: one charge.
    let paid = gateway.confirm(&request).await.unwrap();
    let again = gateway.confirm(&request).await.unwrap();
    assert_eq!(paid, again);
    assert_eq!(paid.payment_key, request.payment_key);
    assert_eq!(paid.amount, 33000);

    // Another key for a payment made: unknown, and a lookup settles it.
    let mut other = request.clone();
    other.idempotency_key = "confirm-7-b".into();
    assert!(matches!(
        gateway.confirm(&other).await,
        Err(OmsError::PaymentUnknown(_))
    ));
    let found = gateway.lookup(&request.payment_key).await.unwrap().unwrap();
    assert_eq!(found.status, GatewayStatus::Done);
    assert_eq!(found.order_id, gateway_order_id(order_id));
    assert_eq!(found.amount, 33000);
    assert_eq!(found.approved_at, Some(paid.approved_at));

    // Cancelled, retried with the same key and with another: one refund.
    gateway
        .cancel(&request.payment_key, "expired", "cancel-7-a")
        .await
        .unwrap();
    gateway
        .cancel(&request.payment_key, "expired", "cancel-7-a")
        .await
        .unwrap();
    gateway
        .cancel(&request.payment_key, "expired", "cancel-7-b")
        .await
        .unwrap();
    let found = gateway.lookup(&request.payment_key).await.unwrap().unwrap();
    assert_eq!(found.status, GatewayStatus::Canceled);

    // A payment Toss does not know cannot be cancelled.
    assert!(matches!(
        gateway.cancel("unknown-key", "expired", "cancel-x").await,
        Err(OmsError::PaymentDeclined { code, .. }) if code == "NOT_FOUND_PAYMENT"
    ));

    let state = toss.state.lock().unwrap();
    assert_eq!((state.charges, state.refunds), (1, 1));
}

#[tokio::test]
async fn the_gateway_passes_the_shared_contract() {
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(FakeToss::default())
        .mount(&server)
        .await;
    oms_core::testkit::payment_gateway::run(&gateway(&server)).await;
}
