//! The OpenAPI 3.1 document of [`router`](super::router): every route with
//! its parameters, bodies and answers, each error answer as
//! `application/problem+json` with the codes it may carry. Served at
//! `GET /openapi.json`; a copy is committed as `docs/openapi.json`.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::example::ExampleBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{RefOr, Response as ApiResponse};
use utoipa::{Modify, OpenApi, ToSchema};

use oms_core::domain::{FieldError, FieldErrorCode};

use super::Problem;

/// The media type of every error answer.
const PROBLEM_JSON: &str = "application/problem+json";

/// The name of the bearer security scheme in the document.
pub(super) const BEARER: &str = "bearer";

/// Answers an operation shares with others of its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shared {
    /// Needs a bearer access token.
    Bearer,
    /// Needs the ADMIN role.
    Admin,
    /// Reads a JSON body.
    Json,
    /// Checks the fields of its body: `VALIDATION_FAILED` lists those that
    /// break rules in `errors` (these in its example).
    Fields(&'static [FieldExample]),
}

/// An example of a field error: path, code, message.
pub(super) type FieldExample = (&'static str, FieldErrorCode, &'static str);

/// The problem responses of an operation: its own `(status, codes)`, those
/// of its kinds (`shared`), and those every operation may give (the
/// server's limits, an unexpected error).
pub(super) fn problem_responses(
    shared: &[Shared],
    own: &[(u16, &[&'static str])],
) -> BTreeMap<String, RefOr<ApiResponse>> {
    let mut codes: BTreeMap<u16, Vec<&'static str>> = BTreeMap::new();
    let mut fields: &[FieldExample] = &[];
    let mut add = |status: u16, list: &[&'static str]| {
        let entry = codes.entry(status).or_default();
        for code in list {
            if !entry.contains(code) {
                entry.push(code);
            }
        }
    };
    for kind in shared {
        match kind {
            Shared::Bearer => {
                add(401, &["UNAUTHORIZED"]);
                add(503, &["SERVICE_UNAVAILABLE"]);
            }
            Shared::Admin => add(403, &["FORBIDDEN"]),
            Shared::Json => {
                add(400, &["VALIDATION_FAILED", "MALFORMED_JSON", "BAD_REQUEST"]);
                add(413, &["PAYLOAD_TOO_LARGE"]);
                add(415, &["UNSUPPORTED_MEDIA_TYPE"]);
            }
            Shared::Fields(examples) => {
                add(400, &["VALIDATION_FAILED"]);
                fields = examples;
            }
        }
    }
    for (status, list) in own {
        add(*status, list);
    }
    add(500, &["INTERNAL_ERROR"]);
    add(503, &["OVERLOADED", "TIMEOUT"]);
    codes
        .into_iter()
        .map(|(status, list)| {
            let response = problem_response(status, &list, fields);
            (status.to_string(), response.into())
        })
        .collect()
}

/// One problem response: a description naming each code, an example of
/// each as the API sends it (`VALIDATION_FAILED` with `fields` as its
/// `errors`, if any), and the headers that come with them.
fn problem_response(status: u16, codes: &[&str], fields: &[FieldExample]) -> ApiResponse {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let reason = code.canonical_reason().unwrap_or("Error");
    let mut description = format!("{reason}, `application/problem+json`:");
    let mut examples = Vec::new();
    for c in codes {
        let explanation = explain(c);
        let mut example = with_extensions(Problem::new(code, c, explanation));
        description.push_str(&format!("\n- `{c}`: {explanation}"));
        if *c == "VALIDATION_FAILED" && !fields.is_empty() {
            description.push_str(
                "; when fields of the body break rules, `errors` lists every one of them \
                 (`field`, `code`, `message`)",
            );
            let errors: Vec<FieldError> = fields
                .iter()
                .map(|(field, rule, message)| FieldError::new(*field, *rule, *message))
                .collect();
            example = example.with_errors(&errors);
            example.detail = fields
                .iter()
                .map(|(field, _, message)| format!("{field} {message}"))
                .collect::<Vec<_>>()
                .join("; ");
            example.detail.insert_str(0, "invalid input: ");
        }
        let example = serde_json::to_value(example).ok();
        examples.push((c.to_string(), ExampleBuilder::new().value(example).build()));
    }
    let content = ContentBuilder::new()
        .schema(Some(utoipa::openapi::Ref::from_schema_name("Problem")))
        .examples_from_iter(examples)
        .build();
    let mut response = ResponseBuilder::new()
        .description(description)
        .content(PROBLEM_JSON, content);
    let text = || ObjectBuilder::new().schema_type(Type::String);
    if status == 401 {
        response = response.header(
            "WWW-Authenticate",
            HeaderBuilder::new()
                .schema(text())
                .description(Some("`Bearer`"))
                .build(),
        );
    }
    if codes.iter().any(|c| RETRY_AFTER.contains(c)) {
        response = response.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::Integer))
                .description(Some(
                    "Seconds to wait before trying again (RATE_LIMITED, NOT_ADMITTED, TOO_MANY_ATTEMPTS, OVERLOADED)",
                ))
                .build(),
        );
    }
    response.build()
}

/// An example problem with the extension members its code carries.
fn with_extensions(problem: Problem) -> Problem {
    match problem.code.as_str() {
        "NOT_ADMITTED" => problem.with_extension("position", 42),
        "PAYMENT_DECLINED" => problem
            .with_extension("gatewayCode", "REJECT_CARD_COMPANY")
            .with_extension("gatewayMessage", "the card company declined the payment"),
        _ => problem,
    }
}

/// The codes answered with a `Retry-After` header.
const RETRY_AFTER: [&str; 4] = [
    "RATE_LIMITED",
    "NOT_ADMITTED",
    "TOO_MANY_ATTEMPTS",
    "OVERLOADED",
];

/// What a problem code means (the `detail` of its example).
fn explain(code: &str) -> &'static str {
    match code {
        "VALIDATION_FAILED" => "a field, path segment, query value or header breaks a rule of the contract",
        "MALFORMED_JSON" => "the body is not well-formed JSON",
        "BAD_REQUEST" => "the body could not be read",
        "PAYLOAD_TOO_LARGE" => "the body is over 64 KiB",
        "UNSUPPORTED_MEDIA_TYPE" => "the body is not `Content-Type: application/json`",
        "UNAUTHORIZED" => "no bearer access token, or one that is malformed, wrongly signed, expired, of another type or revoked",
        "FORBIDDEN" => "this needs the ADMIN role",
        "BAD_CREDENTIALS" => "email or password is wrong (the same answer for an unknown email)",
        "EMAIL_TAKEN" => "a member with this email exists already",
        "TOO_MANY_ATTEMPTS" => "too many login attempts for the email, or failures from the client address, in the window",
        "MEMBER_NOT_FOUND" => "the token names a member nobody has",
        "PRODUCT_NOT_FOUND" => "no product has this id",
        "PRODUCT_EXISTS" => "a product has this id already",
        "OUT_OF_STOCK" => "the change would take the stock below zero",
        "CONFLICT" => "the resource was changed at the same time; try again",
        "PRECONDITION_FAILED" => "the product is no longer at the version of `If-Match` (or `version`)",
        "PRECONDITION_REQUIRED" => "setting `stock` to another figure needs the version read (`If-Match` or `version`)",
        "LIMIT_EXCEEDED" => "the order would take the member past the product's `maxPerMember`",
        "SALE_NOT_STARTED" => "the product's sale has not started (`saleStartsAt`)",
        "SALE_ENDED" => "the product's sale has ended (`saleEndsAt`)",
        "RATE_LIMITED" => "over the member's order rate (`OMS_ORDER_RATE`)",
        "NOT_ADMITTED" => "the waiting room is on and the member holds no admission; `position`: the place in line, or, when not in it, the place entering now would give",
        "NOT_IN_WAITING_ROOM" => "the member is not in the waiting room (never entered, or the admission ended)",
        "WAITING_ROOM_OFF" => "the waiting room is off",
        "TRACE_NOT_FOUND" => "no trace with this id, or another member's",
        "ORDER_NOT_FOUND" => "no order with this id, or another member's",
        "AMOUNT_MISMATCH" => "the amount is not the order's total; the gateway was not called",
        "PAYMENT_DECLINED" => "the gateway declined the payment: its `gatewayCode` and `gatewayMessage`",
        "ORDER_NOT_PAYABLE" => "the order cannot be paid: expired, cancelled, past `paymentDueAt`, or paid or being confirmed with another key",
        "ORDER_NOT_CANCELLABLE" => "the order is final, or its payment is being confirmed",
        "PAYMENT_UNKNOWN" => "the payment gateway did not answer in time; the order is reconciled with it and never charged twice",
        "SERVICE_UNAVAILABLE" => "a dependency (queue, Redis, database, gateway, the password hashers) is unavailable; try again later",
        "NOT_READY" => "a configured dependency does not answer; the detail names it",
        "NOT_FOUND" => "no such resource (or this process records no metrics)",
        "OVERLOADED" => "too many requests in flight; try again after `Retry-After`",
        "TIMEOUT" => "the request took longer than the server's request timeout",
        "INTERNAL_ERROR" => "the request could not be handled; the error was logged",
        _ => "see docs/API.md",
    }
}

/// Declares marker types whose [`IntoResponses`] are the problem responses
/// of one operation (see [`problem_responses`]).
macro_rules! problems {
    ($($(#[$meta:meta])* $name:ident = [$($shared:ident $(($arg:expr))?),*], $own:expr;)*) => {
        $(
            $(#[$meta])*
            pub(super) struct $name;

            impl utoipa::IntoResponses for $name {
                fn responses() -> BTreeMap<String, RefOr<ApiResponse>> {
                    problem_responses(&[$(Shared::$shared $(($arg))?),*], $own)
                }
            }
        )*
    };
}

/// The example field errors of `POST /api/v1/auth/signup`.
const SIGNUP_FIELDS: &[FieldExample] = &[
    (
        "email",
        FieldErrorCode::Malformed,
        "is malformed: it has no `@`",
    ),
    (
        "password",
        FieldErrorCode::TooShort,
        "must be at least 10 characters",
    ),
];

/// The example field errors of `POST /api/v1/products`.
const PRODUCT_FIELDS: &[FieldExample] = &[
    (
        "price",
        FieldErrorCode::OutOfRange,
        "must be greater than 0",
    ),
    ("stock", FieldErrorCode::OutOfRange, "must not be negative"),
];

/// The example field errors of `PUT /api/v1/products/{productId}`.
const PRODUCT_UPDATE_FIELDS: &[FieldExample] = &[
    ("name", FieldErrorCode::Required, "must not be empty"),
    (
        "stockDelta",
        FieldErrorCode::Conflicting,
        "must not be sent with stock",
    ),
];

/// The example field errors of `POST /api/v1/orders`.
const ORDER_FIELDS: &[FieldExample] = &[
    (
        "items[0].quantity",
        FieldErrorCode::OutOfRange,
        "must be between 1 and 1000",
    ),
    (
        "receiverInfo.phone",
        FieldErrorCode::Required,
        "must not be empty",
    ),
];

/// The example field errors of `POST /api/v1/payments/confirm`.
const CONFIRM_FIELDS: &[FieldExample] = &[(
    "paymentKey",
    FieldErrorCode::Malformed,
    "must be 1 to 200 characters of A-Z a-z 0-9 - _ ~ .",
)];

problems! {
    /// `GET /healthz`, `GET /openapi.json`.
    Plain = [], &[];
    /// `GET /readyz`.
    Readiness = [], &[(503, &["NOT_READY"])];
    /// `GET /metrics`.
    MetricsProblems = [], &[(404, &["NOT_FOUND"])];
    /// `POST /api/v1/auth/signup`.
    SignupProblems = [Json, Fields(SIGNUP_FIELDS)], &[
        (409, &["EMAIL_TAKEN"]),
        (503, &["SERVICE_UNAVAILABLE"]),
    ];
    /// `POST /api/v1/auth/login`.
    LoginProblems = [Json], &[
        (401, &["BAD_CREDENTIALS"]),
        (429, &["TOO_MANY_ATTEMPTS"]),
        (503, &["SERVICE_UNAVAILABLE"]),
    ];
    /// `POST /api/v1/auth/refresh`.
    RefreshProblems = [Json], &[(401, &["UNAUTHORIZED"]), (503, &["SERVICE_UNAVAILABLE"])];
    /// `POST /api/v1/auth/logout`.
    LogoutProblems = [Bearer, Json], &[];
    /// `GET /api/v1/members/me`.
    MeProblems = [Bearer], &[(404, &["MEMBER_NOT_FOUND"])];
    /// `GET /api/v1/products`, `GET /api/v1/waiting-room` (room on).
    BearerOnly = [Bearer], &[];
    /// `POST /api/v1/products`.
    CreateProductProblems = [Bearer, Admin, Json, Fields(PRODUCT_FIELDS)], &[(409, &["PRODUCT_EXISTS"])];
    /// `GET /api/v1/products/{productId}`.
    GetProductProblems = [Bearer], &[(400, &["VALIDATION_FAILED"]), (404, &["PRODUCT_NOT_FOUND"])];
    /// `PUT /api/v1/products/{productId}`.
    UpdateProductProblems = [Bearer, Admin, Json, Fields(PRODUCT_UPDATE_FIELDS)], &[
        (404, &["PRODUCT_NOT_FOUND"]),
        (409, &["OUT_OF_STOCK", "CONFLICT"]),
        (412, &["PRECONDITION_FAILED"]),
        (428, &["PRECONDITION_REQUIRED"]),
    ];
    /// `POST /api/v1/waiting-room`.
    EnterRoomProblems = [Bearer], &[(404, &["WAITING_ROOM_OFF"])];
    /// `GET /api/v1/waiting-room`.
    RoomStatusProblems = [Bearer], &[(404, &["NOT_IN_WAITING_ROOM", "WAITING_ROOM_OFF"])];
    /// `GET /api/v1/orders`.
    MyOrdersProblems = [Bearer], &[(400, &["VALIDATION_FAILED"])];
    /// `POST /api/v1/orders`.
    PlaceOrderProblems = [Bearer, Json, Fields(ORDER_FIELDS)], &[
        (404, &["PRODUCT_NOT_FOUND"]),
        (409, &["LIMIT_EXCEEDED", "SALE_NOT_STARTED", "SALE_ENDED"]),
        (429, &["RATE_LIMITED", "NOT_ADMITTED"]),
    ];
    /// `GET /api/v1/orders/by-trace/{traceId}`.
    TraceProblems = [Bearer], &[(400, &["VALIDATION_FAILED"]), (404, &["TRACE_NOT_FOUND"])];
    /// `GET /api/v1/orders/{orderId}`.
    OrderProblems = [Bearer], &[(400, &["VALIDATION_FAILED"]), (404, &["ORDER_NOT_FOUND"])];
    /// `POST /api/v1/orders/{orderId}/cancel`.
    CancelProblems = [Bearer], &[
        (400, &["VALIDATION_FAILED"]),
        (404, &["ORDER_NOT_FOUND"]),
        (409, &["ORDER_NOT_CANCELLABLE"]),
        (504, &["PAYMENT_UNKNOWN"]),
    ];
    /// `POST /api/v1/payments/confirm`.
    ConfirmProblems = [Bearer, Json, Fields(CONFIRM_FIELDS)], &[
        (400, &["AMOUNT_MISMATCH"]),
        (402, &["PAYMENT_DECLINED"]),
        (404, &["ORDER_NOT_FOUND"]),
        (409, &["ORDER_NOT_PAYABLE"]),
        (504, &["PAYMENT_UNKNOWN"]),
    ];
    /// `GET /api/v1/admin/orders`.
    AdminOrdersProblems = [Bearer, Admin], &[(400, &["VALIDATION_FAILED"])];
    /// `GET /api/v1/admin/products/{productId}/stock`.
    AdminStockProblems = [Bearer, Admin], &[
        (400, &["VALIDATION_FAILED"]),
        (404, &["PRODUCT_NOT_FOUND"]),
    ];
}

// The schema of `TraceBody::status` (a string made from the trace's
// state); never built.
/// Where a trace stands.
#[allow(dead_code)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(super) enum TraceStatus {
    /// Accepted, not yet final.
    Processing,
    /// Placed: the trace carries `orderId`.
    Completed,
    /// Not placed: the trace carries `reason`.
    Failed,
}

/// The answer of `GET /healthz`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(super) struct Health {
    /// Always `ok`.
    #[schema(example = "ok")]
    status: String,
}

/// The answer of `GET /readyz` when every dependency answers.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(super) struct Ready {
    /// Always `ready`.
    #[schema(example = "ready")]
    status: String,
    /// The dependencies checked, e.g. `["kafka", "redis", "database"]`.
    checked: Vec<String>,
}

/// `GET /readyz`: the answer is made by the router's readiness checks.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    description = "200 when every configured dependency answers (checked at most once a second), else 503 `NOT_READY` naming the one that does not.",
    responses(
        (status = 200, description = "Every dependency answers", body = Ready),
        Readiness,
    )
)]
#[allow(dead_code)]
fn readyz() {}

/// `GET /metrics`: answered by the router's metrics handler.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    description = "Every metric of the process in the Prometheus text format (404 `NOT_FOUND` when the process records none).",
    responses(
        (status = 200, description = "Prometheus text format 0.0.4", body = String,
            content_type = "text/plain; version=0.0.4; charset=utf-8"),
        MetricsProblems,
    )
)]
#[allow(dead_code)]
fn metrics() {}

/// `GET /openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of the API (this one)",
            body = Object, content_type = "application/json"),
        Plain,
    )
)]
pub(super) async fn serve_openapi() -> Response {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    let text = match DOCUMENT.get() {
        Some(text) => text.clone(),
        None => match openapi_json() {
            Ok(text) => DOCUMENT.get_or_init(|| text).clone(),
            Err(e) => {
                tracing::error!(error = %e, "the OpenAPI document cannot be written");
                return Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "INTERNAL_ERROR",
                    "the OpenAPI document could not be written",
                )
                .into_response();
            }
        },
    };
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Adds the extension member `errors` to the schema of [`Problem`] (kept
/// with the other extension members, out of its Rust fields).
struct ProblemErrors;

impl Modify for ProblemErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let Some(RefOr::T(Schema::Object(problem))) = components.schemas.get_mut("Problem") else {
            return;
        };
        let errors = ArrayBuilder::new()
            .items(utoipa::openapi::Ref::from_schema_name("FieldError"))
            .description(Some(
                "`VALIDATION_FAILED` of a body whose fields break rules: every such field, in the order of the body, with its path (`items[0].quantity`), a code (`out_of_range`) and a message. Absent otherwise.",
            ))
            .build();
        problem
            .properties
            .insert("errors".to_owned(), errors.into());
    }
}

/// Adds the bearer security scheme.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An access token of `POST /api/v1/auth/login` (HS256; claims `sub`, `role`, `typ: \"access\"`, `jti`, `exp`), or any HS256 token of the secret with `sub`, `role` and `exp`",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document's description.
const DESCRIPTION: &str = "Flash-sale order intake: orders are accepted at once \
(`202` and a trace to poll) and placed in the background. The contract is \
`docs/API.md` in the repository; this document describes the same routes. \
Every 4xx/5xx answer is `application/problem+json` (RFC 9457) with a stable \
`code`; each operation lists the codes it may answer with. Any path not \
listed is `404 NOT_FOUND`, a method a path does not take `405 \
METHOD_NOT_ALLOWED`.";

/// The OpenAPI document of the API.
#[derive(OpenApi)]
#[openapi(
    info(title = "oms", description = DESCRIPTION),
    paths(
        super::healthz,
        readyz,
        metrics,
        serve_openapi,
        super::accounts::signup,
        super::accounts::login,
        super::accounts::refresh,
        super::accounts::logout,
        super::accounts::me,
        super::list_products,
        super::create_product,
        super::get_product,
        super::update_product,
        super::room_status,
        super::enter_room,
        super::my_orders,
        super::place_order,
        super::get_trace,
        super::get_order,
        super::payments::cancel,
        super::payments::confirm,
        super::admin::orders,
        super::admin::stock,
    ),
    components(
        schemas(Problem, FieldError, FieldErrorCode, TraceStatus),
        responses(super::accounts::TokenAnswer)
    ),
    modifiers(&BearerScheme, &ProblemErrors),
    tags(
        (name = "operations", description = "Health, readiness, metrics and this document"),
        (name = "members", description = "Sign-up, login, token refresh, logout"),
        (name = "products", description = "The catalogue (writes: ADMIN)"),
        (name = "waiting-room", description = "Admission in front of ordering, when the room is on"),
        (name = "orders", description = "Ordering, traces and orders"),
        (name = "payments", description = "Paying and cancelling orders"),
        (name = "admin", description = "Operators' views (ADMIN)"),
    )
)]
pub struct ApiDoc;

/// The OpenAPI document of [`router`](super::router).
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The OpenAPI document as `GET /openapi.json` serves it and
/// `docs/openapi.json` holds it: pretty-printed JSON, keys in a stable
/// order, and a final newline.
pub fn openapi_json() -> Result<String, serde_json::Error> {
    let mut text = openapi().to_pretty_json()?;
    text.push('\n');
    Ok(text)
}
