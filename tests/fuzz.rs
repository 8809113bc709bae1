//! Property tests of the two decoders that take bytes from outside: the
//! order body of `POST /api/v1/orders` and the record value of the order
//! topic. Neither may panic or answer 5xx, whatever the input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use common::{auth, token};
use http_body_util::BodyExt;
use oms::domain::{
    MemberId, OrderCommand, OrderLine, OrderRequest, ProductId, ReceiverInfo, Role, TraceId,
};
use oms::embedded::EmbeddedPipeline;
use oms::http::router;
use oms::port::outbound::{decode_command, encode_command};
use proptest::prelude::*;
use serde_json::{json, Value};
use tower::ServiceExt;

/// Cases per property (each also runs its shrinking on failure).
const CASES: u32 = 2_000;

/// Any JSON value, up to a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    common::any_json(4, 8)
}

/// Order bodies near the valid shape: every field may be missing, of the
/// wrong type, out of range or just right.
fn order_like() -> impl Strategy<Value = Value> {
    let number = prop_oneof![
        6 => (1i64..1_000).prop_map(Value::from),
        2 => (-3i64..1_005).prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        1 => any::<f64>().prop_map(|f| json!(f)),
        1 => any_json(),
    ];
    let line = (number.clone(), number, prop::bool::weighted(0.1)).prop_map(|(p, q, extra)| {
        let mut line = json!({"productId": p, "quantity": q});
        if extra {
            line["note"] = json!("x");
        }
        line
    });
    let text = prop_oneof![
        8 => ".{0,40}".prop_map(Value::from),
        1 => "[ \t\u{3000}\u{a0}]{0,3}".prop_map(Value::from),
        1 => ".{250,260}".prop_map(Value::from),
        2 => any_json(),
    ];
    let receiver = (text.clone(), text.clone(), text)
        .prop_map(|(n, p, a)| json!({"name": n, "phone": p, "address": a}));
    (
        prop_oneof![
            8 => prop::collection::vec(line.clone(), 0..4),
            1 => prop::collection::vec(line, 95..104),
        ],
        prop::option::weighted(0.9, receiver),
        prop::bool::weighted(0.05),
    )
        .prop_map(|(items, receiver, items_as_object)| {
            let mut body = json!({ "items": items });
            if items_as_object {
                body["items"] = json!({"0": body["items"].clone()});
            }
            if let Some(r) = receiver {
                body["receiverInfo"] = r;
            }
            body
        })
}

/// Whether `docs/API.md` says an order body is accepted (202), written from
/// the contract alone, not with the decoder or validation under test: an
/// object whose `items` is an array of 1 to 100 lines, each with an integer
/// `productId` of a product on sale (here 1..=1005: every one exists, so the
/// body alone decides; an unknown one is refused at once) and an integer
/// `quantity` of 1 to 1000; and whose `receiverInfo` has `name`, `phone` and
/// `address`, each a string that is not blank (whitespace only) and, as oms
/// adds, at most 255 characters. Other members are ignored.
fn the_contract_accepts(body: &Value) -> bool {
    let integer_in = |v: Option<&Value>, range: std::ops::RangeInclusive<u64>| {
        v.and_then(Value::as_u64)
            .is_some_and(|n| range.contains(&n))
    };
    let Some(items) = body.get("items").and_then(Value::as_array) else {
        return false;
    };
    let lines_ok = (1..=100).contains(&items.len())
        && items.iter().all(|line| {
            line.is_object()
                && integer_in(line.get("productId"), 1..=1_005)
                && integer_in(line.get("quantity"), 1..=1_000)
        });
    let Some(receiver) = body.get("receiverInfo").filter(|r| r.is_object()) else {
        return false;
    };
    let receiver_ok = ["name", "phone", "address"].iter().all(|field| {
        receiver
            .get(*field)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.chars().all(char::is_whitespace) && s.chars().count() <= 255)
    });
    body.is_object() && lines_ok && receiver_ok
}

fn command() -> impl Strategy<Value = OrderCommand> {
    let line = (1u64..u64::MAX / 2, 1u32..=1000).prop_map(|(p, q)| OrderLine {
        product_id: ProductId(p),
        quantity: q,
    });
    (
        any::<u128>(),
        1u64..u64::MAX / 2,
        prop::collection::vec(line, 1..10),
        ".{1,30}",
        ".{1,30}",
        ".{1,60}",
    )
        .prop_map(|(id, member, items, name, phone, address)| {
            OrderCommand::new(
                TraceId(uuid::Uuid::from_u128(id)),
                MemberId(member),
                OrderRequest {
                    items,
                    receiver_info: ReceiverInfo {
                        name,
                        phone,
                        address,
                    },
                },
            )
        })
}

struct Api {
    runtime: tokio::runtime::Runtime,
    app: Router,
    bearer: String,
    _pipeline: EmbeddedPipeline,
}

impl Api {
    fn new() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        // No rate limit: one member sends every case. Every product id the
        // strategy draws from exists, so the body alone decides.
        let pipeline = runtime.block_on(async {
            let pipeline = EmbeddedPipeline::start_with(oms::config::FrontDoor {
                order_rate: None,
                ..oms::config::FrontDoor::default()
            });
            for id in 1..=1_005 {
                let draft = oms::domain::ProductDraft {
                    name: format!("p{id}"),
                    price: 100,
                    stock: 1_000_000_000,
                    rules: Default::default(),
                };
                pipeline
                    .products
                    .create(
                        oms::domain::Caller::admin(1),
                        oms::domain::ProductId(id),
                        draft,
                    )
                    .await
                    .unwrap();
            }
            pipeline
        });
        let app = router(pipeline.app_state(auth()));
        Self {
            runtime,
            app,
            bearer: format!("Bearer {}", token(1, Role::User)),
            _pipeline: pipeline,
        }
    }

    /// POSTs `body` and checks the answer: 202 with a trace id, or a 4xx
    /// problem.
    fn post(&self, body: Vec<u8>) -> Result<StatusCode, TestCaseError> {
        let req = Request::post("/api/v1/orders")
            .header(header::AUTHORIZATION, &self.bearer)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap();
        let (status, content_type, bytes) = self.runtime.block_on(async {
            let res = self.app.clone().oneshot(req).await.unwrap();
            let content_type = res
                .headers()
                .get(header::CONTENT_TYPE)
                .map(|v| v.to_str().unwrap_or_default().to_owned())
                .unwrap_or_default();
            let status = res.status();
            let bytes = res.into_body().collect().await.unwrap().to_bytes();
            (status, content_type, bytes)
        });
        let body: Value = serde_json::from_slice(&bytes)
            .map_err(|e| TestCaseError::fail(format!("{status}: body is not JSON: {e}")))?;
        if status == StatusCode::ACCEPTED {
            prop_assert!(body["traceId"].is_string(), "{body}");
        } else {
            prop_assert!(status.is_client_error(), "{status}: {body}");
            prop_assert_eq!(content_type, "application/problem+json");
            prop_assert_eq!(body["status"].as_u64(), Some(u64::from(status.as_u16())));
            prop_assert!(body["code"].is_string(), "{body}");
        }
        Ok(status)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn order_bodies_near_the_shape_are_accepted_or_rejected_with_a_problem(body in order_like()) {
        thread_local!(static API: Api = Api::new());
        let valid = the_contract_accepts(&body);
        let status = API.with(|api| api.post(serde_json::to_vec(&body).unwrap()))?;
        prop_assert_eq!(status == StatusCode::ACCEPTED, valid, "{}", body);
    }

    #[test]
    fn arbitrary_bytes_and_json_are_rejected_with_a_problem(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..512),
            any_json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        ]
    ) {
        thread_local!(static API: Api = Api::new());
        let status = API.with(|api| api.post(bytes))?;
        prop_assert_ne!(status, StatusCode::ACCEPTED);
    }

    #[test]
    fn the_record_decoder_never_panics(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..512),
            any_json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
            (command(), any::<prop::sample::Index>(), any::<u8>()).prop_map(|(c, at, byte)| {
                // A valid record with one byte changed.
                let mut bytes = encode_command(&c).unwrap();
                let i = at.index(bytes.len());
                bytes[i] = byte;
                bytes
            }),
        ]
    ) {
        if let Ok(command) = decode_command(&bytes) {
            // Whatever decodes, re-encodes to something that decodes the same.
            let again = decode_command(&encode_command(&command).unwrap()).unwrap();
            prop_assert_eq!(again, command);
        }
    }

    #[test]
    fn records_round_trip(command in command()) {
        let bytes = encode_command(&command).unwrap();
        prop_assert_eq!(decode_command(&bytes).unwrap(), command);
    }
}
