//! Code built on oms, unit-tested as its users test theirs: with the
//! mockall mocks of oms's ports (feature `mock`) and the mockall oms
//! re-exports (`oms::mockall`), so that `predicate`, `Sequence` and the
//! mocks are of one version.
//!
//! The code under test is a shop's checkout, written against oms's
//! use-case traits: a service that places an order and follows it, an
//! axum handler of the shop on that service, and the shop's app with oms's
//! router mounted under a prefix.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use http_body_util::BodyExt;
use oms::domain::{
    Caller, FailureReason, MemberId, OmsError, OrderId, OrderLine, OrderRequest, OrderTrace,
    ProductId, ReceiverInfo, TraceId, TraceState,
};
use oms::http::{router, AppState, Authenticator, Problem};
use oms::mockall::predicate::eq;
use oms::mockall::Sequence;
use oms::port::inbound::{
    MockAuthUseCase, MockOrderQuery, MockProductUseCase, MockRequestOrderUseCase, OrderQuery,
    RequestOrderUseCase,
};
use serde_json::{json, Value};
use tower::ServiceExt;

// ---------------------------------------------------------------------------
// The shop's code.

/// Where a checkout stands, as the shop shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Checkout {
    /// Accepted; follow it with this trace.
    Pending(TraceId),
    /// Placed as this order.
    Placed(OrderId),
    /// Nothing left to sell.
    SoldOut,
}

/// Why a checkout did not go through.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CheckoutError {
    /// oms could not take it now; the buyer may try again.
    TryLater,
    /// oms refused it for good, for this reason.
    Refused(String),
}

/// The shop's checkout, on oms's use cases.
struct CheckoutService {
    intake: Arc<dyn RequestOrderUseCase>,
    orders: Arc<dyn OrderQuery>,
}

fn shop_address() -> ReceiverInfo {
    ReceiverInfo {
        name: "Pick-up counter".into(),
        phone: "02-000-0000".into(),
        address: "Seoul store".into(),
    }
}

fn checkout_of(trace: OrderTrace) -> Result<Checkout, CheckoutError> {
    match trace.state {
        TraceState::Processing => Ok(Checkout::Pending(trace.trace_id)),
        TraceState::Completed { order_id } => Ok(Checkout::Placed(order_id)),
        TraceState::Failed {
            reason: FailureReason::OutOfStock,
        } => Ok(Checkout::SoldOut),
        TraceState::Failed { reason } => Err(CheckoutError::Refused(reason.to_string())),
    }
}

fn error_of(e: OmsError) -> CheckoutError {
    if e.is_retryable() {
        CheckoutError::TryLater
    } else {
        CheckoutError::Refused(e.to_string())
    }
}

impl CheckoutService {
    /// One click: `quantity` of `product` for `member`, picked up at the
    /// store; a second click of the same member on the same product is the
    /// same order (the idempotency key).
    async fn buy(
        &self,
        member: u64,
        product: u64,
        quantity: u32,
    ) -> Result<Checkout, CheckoutError> {
        let request = OrderRequest {
            items: vec![OrderLine {
                product_id: ProductId(product),
                quantity,
            }],
            receiver_info: shop_address(),
        };
        let key = format!("one-click-{member}-{product}");
        let trace = self
            .intake
            .request_order(Caller::user(member), request, Some(key))
            .await
            .map_err(error_of)?;
        checkout_of(trace)
    }

    /// Where the member's checkout stands now.
    async fn follow(&self, member: u64, trace_id: TraceId) -> Result<Checkout, CheckoutError> {
        let trace = self
            .orders
            .trace(Caller::user(member), trace_id)
            .await
            .map_err(error_of)?;
        checkout_of(trace)
    }
}

/// The shop's handler: `POST /checkout/{productId}` for the member its
/// gateway names in `x-member`.
async fn checkout_handler(
    State(service): State<Arc<CheckoutService>>,
    Path(product): Path<u64>,
    headers: HeaderMap,
) -> Response {
    let Some(member) = headers
        .get("x-member")
        .and_then(|v| v.to_str().ok()?.parse().ok())
    else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    match service.buy(member, product, 1).await {
        Ok(Checkout::Pending(trace)) => (
            StatusCode::ACCEPTED,
            Json(json!({"follow": trace.to_string()})),
        )
            .into_response(),
        Ok(Checkout::Placed(order)) => {
            (StatusCode::CREATED, Json(json!({"order": order.0}))).into_response()
        }
        Ok(Checkout::SoldOut) => {
            (StatusCode::CONFLICT, Json(json!({"soldOut": true}))).into_response()
        }
        Err(CheckoutError::TryLater) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        Err(CheckoutError::Refused(why)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"refused": why})),
        )
            .into_response(),
    }
}

fn shop_app(service: CheckoutService) -> Router {
    Router::new()
        .route("/checkout/{product_id}", post(checkout_handler))
        .with_state(Arc::new(service))
}

// ---------------------------------------------------------------------------
// The shop's tests.

fn service(intake: MockRequestOrderUseCase, orders: MockOrderQuery) -> CheckoutService {
    CheckoutService {
        intake: Arc::new(intake),
        orders: Arc::new(orders),
    }
}

fn trace(member: u64, state: TraceState) -> OrderTrace {
    OrderTrace {
        trace_id: TraceId::new(),
        member_id: MemberId(member),
        state,
    }
}

#[tokio::test]
async fn buy_sends_the_members_order_once_with_its_idempotency_key() {
    let accepted = trace(7, TraceState::Processing);
    let mut intake = MockRequestOrderUseCase::new();
    intake
        .expect_request_order()
        .withf(|caller, request, key| {
            *caller == Caller::user(7)
                && request.items
                    == [OrderLine {
                        product_id: ProductId(3),
                        quantity: 2,
                    }]
                && request.receiver_info == shop_address()
                && key.as_deref() == Some("one-click-7-3")
        })
        .times(1)
        .return_once(move |_, _, _| Ok(accepted));
    let checkout = service(intake, MockOrderQuery::new());

    assert_eq!(
        checkout.buy(7, 3, 2).await,
        Ok(Checkout::Pending(accepted.trace_id))
    );
}

#[tokio::test]
async fn buy_tells_sold_out_refusals_and_outages_apart() {
    let mut intake = MockRequestOrderUseCase::new();
    let mut order = Sequence::new();
    intake
        .expect_request_order()
        .times(1)
        .in_sequence(&mut order)
        .returning(|caller, _, _| {
            Ok(trace(
                caller.member_id.0,
                TraceState::Failed {
                    reason: FailureReason::OutOfStock,
                },
            ))
        });
    intake
        .expect_request_order()
        .times(1)
        .in_sequence(&mut order)
        .returning(|_, _, _| Err(OmsError::unavailable("order queue", "broker down")));
    intake
        .expect_request_order()
        .times(1)
        .in_sequence(&mut order)
        .returning(|_, request, _| {
            Err(OmsError::ProductNotFound {
                product_id: request.items[0].product_id,
            })
        });
    let checkout = service(intake, MockOrderQuery::new());

    assert_eq!(checkout.buy(7, 3, 1).await, Ok(Checkout::SoldOut));
    assert_eq!(checkout.buy(7, 3, 1).await, Err(CheckoutError::TryLater));
    match checkout.buy(7, 4, 1).await {
        Err(CheckoutError::Refused(why)) => assert!(why.contains('4'), "{why}"),
        other => panic!("an unknown product is refused for good, got {other:?}"),
    }
}

#[tokio::test]
async fn follow_reads_the_members_own_trace_until_it_is_placed() {
    let trace_id = TraceId::new();
    let mut orders = MockOrderQuery::new();
    let mut polls = Sequence::new();
    orders
        .expect_trace()
        .with(eq(Caller::user(7)), eq(trace_id))
        .times(1)
        .in_sequence(&mut polls)
        .returning(|caller, trace_id| Ok(OrderTrace::processing(trace_id, caller.member_id)));
    orders
        .expect_trace()
        .with(eq(Caller::user(7)), eq(trace_id))
        .times(1)
        .in_sequence(&mut polls)
        .returning(|caller, trace_id| {
            Ok(OrderTrace {
                trace_id,
                member_id: caller.member_id,
                state: TraceState::Completed {
                    order_id: OrderId(42),
                },
            })
        });
    let checkout = service(MockRequestOrderUseCase::new(), orders);

    assert_eq!(
        checkout.follow(7, trace_id).await,
        Ok(Checkout::Pending(trace_id))
    );
    assert_eq!(
        checkout.follow(7, trace_id).await,
        Ok(Checkout::Placed(OrderId(42)))
    );
}

async fn answer(app: Router, request: Request<Body>) -> (StatusCode, HeaderMap, Value) {
    let response = app.oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (status, headers, body)
}

#[tokio::test]
async fn the_shops_handler_answers_by_what_oms_said() {
    let mut intake = MockRequestOrderUseCase::new();
    intake
        .expect_request_order()
        .with(
            eq(Caller::user(9)),
            oms::mockall::predicate::always(),
            eq(Some("one-click-9-5".to_owned())),
        )
        .times(1)
        .returning(|caller, _, _| {
            Ok(trace(
                caller.member_id.0,
                TraceState::Failed {
                    reason: FailureReason::OutOfStock,
                },
            ))
        });
    let app = shop_app(service(intake, MockOrderQuery::new()));

    let request = Request::post("/checkout/5")
        .header("x-member", "9")
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = answer(app.clone(), request).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body, json!({"soldOut": true}));

    // No member: oms is not asked (the mock would fail on a second call).
    let request = Request::post("/checkout/5").body(Body::empty()).unwrap();
    let (status, _, _) = answer(app, request).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// The shop's gateway names the member; oms's routes take its word.
struct GatewayMember;

#[async_trait]
impl Authenticator for GatewayMember {
    async fn authenticate(&self, parts: &Parts) -> Result<Caller, Problem> {
        parts
            .headers
            .get("x-member")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .map(Caller::user)
            .ok_or_else(|| Problem::unauthorized("no member"))
    }
}

#[tokio::test]
async fn oms_mounted_under_the_shops_prefix_links_under_it() {
    let accepted = trace(9, TraceState::Processing);
    let mut intake = MockRequestOrderUseCase::new();
    intake
        .expect_request_order()
        .withf(|caller, request, key| {
            *caller == Caller::user(9) && request.items.len() == 1 && key.is_none()
        })
        .times(1)
        .return_once(move |_, _, _| Ok(accepted));
    // The other use cases must not be asked: their mocks have no
    // expectations, so any call fails the test.
    let state = AppState::new(
        Arc::new(intake),
        Arc::new(MockOrderQuery::new()),
        Arc::new(MockProductUseCase::new()),
        Arc::new(MockAuthUseCase::new()),
        Vec::new(),
    )
    .with_authenticator(Arc::new(GatewayMember));
    let app = Router::new().nest("/shop/oms", router(state));

    let request = Request::post("/shop/oms/api/v1/orders")
        .header("x-member", "9")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({
                "items": [{"productId": 5, "quantity": 1}],
                "receiverInfo": {"name": "Kim", "phone": "010-0000-0000", "address": "Seoul"},
            })
            .to_string(),
        ))
        .unwrap();
    let (status, headers, body) = answer(app.clone(), request).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["traceId"], accepted.trace_id.to_string());
    assert_eq!(
        headers[header::LOCATION],
        format!("/shop/oms/api/v1/orders/by-trace/{}", accepted.trace_id)
    );

    // Without the gateway's header, oms's route refuses, as problem+json.
    let request = Request::get("/shop/oms/api/v1/orders")
        .body(Body::empty())
        .unwrap();
    let (status, headers, body) = answer(app, request).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("application/problem+json"));
}
