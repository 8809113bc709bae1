//! The HTTP inbound adapter: an axum [`Router`] for the API of oms, with
//! members and sessions, pluggable authentication (HS256 bearer tokens by
//! default) and problem+json errors. Mount [`router`] in your own service,
//! or serve it with [`serve`], which adds timeouts and load shedding (see
//! `examples/api`).

mod accounts;
mod admin;
mod auth;
mod json;
mod observe;
mod openapi;
mod payments;
mod problem;
mod ready;
mod serve;

use std::sync::Arc;

use axum::extract::FromRef;
use axum::extract::{DefaultBodyLimit, NestedPath, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use chrono::{DateTime, Utc};
use oms_core::application::WaitingRoomService;
use oms_core::domain::{
    FieldError, FieldErrorCode, Order, OrderId, OrderItem, OrderPage, OrderRequest, OrderStatus,
    OrderTrace, Orders, Product, ProductDraft, ProductId, ProductUpdate, ReceiverInfo, RoomStatus,
    RulesChange, SaleRules, StockChange, TraceId, TraceState,
};
use oms_core::port::inbound::{
    AdminQuery, AuthUseCase, OrderQuery, PaymentUseCase, ProductUseCase, RequestOrderUseCase,
    WaitingRoomUseCase,
};
use oms_core::port::outbound::HealthCheck;
use serde::{Deserialize, Serialize};

pub use accounts::{
    ClientAddress, ClientIpSource, LoginBody, MemberBody, RefreshBody, SignupBody, TokenBody,
};
pub use admin::{AdminOrdersQuery, HeldBody, StockBody};
pub use auth::{
    bearer_token, AdminAuth, Auth, Authenticator, BearerAuthenticator, Claims, JwtAuth,
};
pub use json::ApiJson;
use json::Segment;
pub use observe::{metrics_page, REQUEST_ID};
pub use openapi::{openapi, openapi_json, ApiDoc};
pub use payments::{ConfirmBody, PaidBody};
pub use problem::Problem;
pub use ready::Warmth;
pub use serve::{serve, with_limits, ServerLimits};

/// Largest request body, in bytes.
pub const BODY_LIMIT: usize = 64 * 1024;

/// What the handlers need: the inbound ports, the authenticator and the
/// dependencies `/readyz` checks.
#[derive(Clone)]
pub struct AppState {
    /// Order intake.
    pub intake: Arc<dyn RequestOrderUseCase>,
    /// Trace and order reads.
    pub orders: Arc<dyn OrderQuery>,
    /// Product catalogue.
    pub products: Arc<dyn ProductUseCase>,
    /// Members and sessions (`/api/v1/auth/*`, `/api/v1/members/me`).
    pub accounts: Arc<dyn AuthUseCase>,
    /// Who is calling, for every authenticated route: by default a
    /// [`BearerAuthenticator`] on `accounts`; a host may put its own.
    pub auth: Arc<dyn Authenticator>,
    /// Where the client's address (login throttling) comes from.
    pub client_ip: ClientIpSource,
    /// Checked by `/readyz` (at most one round of checks at a time; a
    /// round answers for 1 s).
    pub checks: Vec<Arc<dyn HealthCheck>>,
    /// The waiting room (`/api/v1/waiting-room`); off unless set with
    /// [`with_waiting_room`](Self::with_waiting_room).
    pub waiting_room: Arc<dyn WaitingRoomUseCase>,
    /// Payments and cancellations; 503 unless set with
    /// [`with_payments`](Self::with_payments).
    pub payments: Arc<dyn PaymentUseCase>,
    /// The operators' views (`/api/v1/admin/*`); 503 unless set with
    /// [`with_admin`](Self::with_admin).
    pub admin: Arc<dyn AdminQuery>,
    /// The recorder `/metrics` renders, which also times every request;
    /// none unless set with [`with_metrics`](Self::with_metrics).
    pub metrics: Option<crate::observe::Metrics>,
    /// Whether [`warm_up`](Self::warm_up) has finished; `/readyz` answers
    /// 503 until it has.
    pub warmth: Warmth,
}

impl AppState {
    /// A state on these use cases, authenticating with a
    /// [`BearerAuthenticator`] on `accounts` and throttling logins by the
    /// connection's peer address.
    pub fn new(
        intake: Arc<dyn RequestOrderUseCase>,
        orders: Arc<dyn OrderQuery>,
        products: Arc<dyn ProductUseCase>,
        accounts: Arc<dyn AuthUseCase>,
        checks: Vec<Arc<dyn HealthCheck>>,
    ) -> Self {
        Self {
            intake,
            orders,
            products,
            auth: Arc::new(BearerAuthenticator::new(accounts.clone())),
            accounts,
            client_ip: ClientIpSource::Peer,
            checks,
            waiting_room: Arc::new(WaitingRoomService::off()),
            payments: Arc::new(payments::PaymentsOff),
            admin: Arc::new(admin::AdminOff),
            metrics: None,
            warmth: Warmth::default(),
        }
    }

    /// Warms up every dependency of [`checks`](Self::checks) — what the
    /// first orders of a sale would otherwise pay for: connections,
    /// metadata, scripts ([`HealthCheck::warm`]) — and until that is done
    /// `/readyz` answers 503. The state is marked cold at once, when this
    /// is called; spawn (or await) the future it returns.
    pub fn warm_up(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.warmth.warm_up(self.checks.clone())
    }

    /// Serves `metrics` at `/metrics` and times every request into it.
    pub fn with_metrics(mut self, metrics: crate::observe::Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Serves the operators' views with `admin`.
    pub fn with_admin(mut self, admin: Arc<dyn AdminQuery>) -> Self {
        self.admin = admin;
        self
    }

    /// Serves payments and cancellations with `payments`.
    pub fn with_payments(mut self, payments: Arc<dyn PaymentUseCase>) -> Self {
        self.payments = payments;
        self
    }

    /// Serves this waiting room (the intake must require its admissions:
    /// [`RequestOrderService::with_waiting_room`](oms_core::application::RequestOrderService::with_waiting_room)).
    pub fn with_waiting_room(mut self, room: Arc<dyn WaitingRoomUseCase>) -> Self {
        self.waiting_room = room;
        self
    }

    /// Replaces the authenticator (a host's own identities).
    pub fn with_authenticator(mut self, auth: Arc<dyn Authenticator>) -> Self {
        self.auth = auth;
        self
    }

    /// Replaces the source of client addresses.
    pub fn with_client_ip(mut self, source: ClientIpSource) -> Self {
        self.client_ip = source;
        self
    }
}

/// The state of the [`router`]'s handlers: its [`AppState`] behind one
/// pointer, so that a request clones the pointer, not every port.
#[derive(Clone)]
pub struct SharedState(Arc<AppState>);

impl std::ops::Deref for SharedState {
    type Target = AppState;

    fn deref(&self) -> &AppState {
        &self.0
    }
}

impl FromRef<AppState> for Option<crate::observe::Metrics> {
    fn from_ref(state: &AppState) -> Self {
        state.metrics.clone()
    }
}

impl FromRef<AppState> for Arc<dyn Authenticator> {
    fn from_ref(state: &AppState) -> Self {
        state.auth.clone()
    }
}

impl FromRef<SharedState> for Option<crate::observe::Metrics> {
    fn from_ref(state: &SharedState) -> Self {
        state.metrics.clone()
    }
}

impl FromRef<SharedState> for Arc<dyn Authenticator> {
    fn from_ref(state: &SharedState) -> Self {
        state.auth.clone()
    }
}

/// The API router of the contract in `docs/API.md`.
pub fn router(state: AppState) -> Router {
    let readiness = Arc::new(ready::Readiness::new(
        state.checks.clone(),
        state.warmth.clone(),
        ready::READY_CACHE,
    ));
    let measured = state.metrics.is_some();
    let routes = Router::new()
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(openapi::serve_openapi))
        .route("/metrics", get(observe::metrics))
        .route(
            "/readyz",
            get(move || {
                let readiness = readiness.clone();
                async move { readiness.respond().await }
            }),
        )
        .route("/api/v1/auth/signup", post(accounts::signup))
        .route("/api/v1/auth/login", post(accounts::login))
        .route("/api/v1/auth/refresh", post(accounts::refresh))
        .route("/api/v1/auth/logout", post(accounts::logout))
        .route("/api/v1/members/me", get(accounts::me))
        .route("/api/v1/products", get(list_products).post(create_product))
        .route(
            "/api/v1/products/{product_id}",
            get(get_product).put(update_product),
        )
        .route("/api/v1/waiting-room", get(room_status).post(enter_room))
        .route("/api/v1/orders", get(my_orders).post(place_order))
        .route("/api/v1/orders/by-trace/{trace_id}", get(get_trace))
        .route("/api/v1/orders/{order_id}/cancel", post(payments::cancel))
        .route("/api/v1/payments/confirm", post(payments::confirm))
        .route("/api/v1/orders/{order_id}", get(get_order))
        .route("/api/v1/admin/orders", get(admin::orders))
        .route(
            "/api/v1/admin/products/{product_id}/stock",
            get(admin::stock),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(on_panic));
    observe::layers(routes, measured).with_state(SharedState(Arc::new(state)))
}

fn on_panic(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("request handler panicked");
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "INTERNAL_ERROR",
        "the request could not be handled",
    )
    .into_response()
}

async fn not_found() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such resource")
}

async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        "this method is not allowed here",
    )
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    description = "200 while the process runs.",
    responses(
        (status = 200, description = "The process runs", body = openapi::Health),
        openapi::Plain,
    )
)]
async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

// ---- products ----

/// A product as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductBody {
    /// Id.
    #[schema(minimum = 1)]
    pub product_id: u64,
    /// Name.
    pub name: String,
    /// Unit price (minor unit).
    pub price: i64,
    /// Units in stock.
    pub stock: i64,
    /// The product's version (also its `ETag`): send it back as `If-Match`
    /// to set the stock. Ignored on create.
    #[serde(default)]
    pub version: i64,
    /// `maxPerMember`, `saleStartsAt`, `saleEndsAt` (RFC 3339), each
    /// optional.
    #[serde(flatten)]
    pub rules: SaleRules,
}

impl From<Product> for ProductBody {
    fn from(p: Product) -> Self {
        Self {
            version: p.version,
            rules: p.rules,
            product_id: p.id.0,
            name: p.name,
            price: p.price,
            stock: p.stock,
        }
    }
}

fn parse_order_id(raw: &str) -> Result<OrderId, Problem> {
    raw.parse::<u64>()
        .map(OrderId)
        .map_err(|_| Problem::validation(format!("`{raw}` is not an order id")))
}

fn parse_product_id(raw: &str) -> Result<ProductId, Problem> {
    raw.parse::<u64>()
        .ok()
        .filter(|&id| id > 0)
        .map(ProductId)
        .ok_or_else(|| Problem::validation(format!("`{raw}` is not a product id")))
}

#[utoipa::path(
    post,
    path = "/api/v1/products",
    tag = "products",
    description = "Adds a product (ADMIN). `version` is ignored; the answer has the product's.",
    security(("bearer" = [])),
    request_body = ProductBody,
    responses(
        (status = 201, description = "Created", body = ProductBody),
        openapi::CreateProductProblems,
    )
)]
async fn create_product(
    State(state): State<SharedState>,
    AdminAuth(caller): AdminAuth,
    ApiJson(body): ApiJson<ProductBody>,
) -> Result<(StatusCode, ApiJson<ProductBody>), Problem> {
    let draft = ProductDraft {
        name: body.name,
        price: body.price,
        stock: body.stock,
        rules: body.rules,
    };
    let product = state
        .products
        .create(caller, ProductId(body.product_id), draft)
        .await?;
    Ok((StatusCode::CREATED, ApiJson(product.into())))
}

/// The body of `PUT /api/v1/products/{id}`: name and price are replaced;
/// the stock changes only when asked, and safely (see [`StockChange`]):
/// `stock` sets it and needs the version read (`If-Match` header or
/// `version` field) unless it equals the stock now; `stockDelta` adds or
/// removes units relative to what is left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(
    description = "Name and price are replaced; the stock changes only when asked, and safely: `stock` sets it and needs the version read (`If-Match` header or `version` field) unless it equals the stock now; `stockDelta` adds or removes units relative to what is left; not both."
)]
#[serde(rename_all = "camelCase")]
pub struct ProductUpdateBody {
    /// New name.
    pub name: String,
    /// New unit price.
    pub price: i64,
    /// New absolute stock (conditional).
    #[serde(default)]
    pub stock: Option<i64>,
    /// Units to add (negative: to remove).
    #[serde(default)]
    pub stock_delta: Option<i64>,
    /// The version read, when not sent as `If-Match`.
    #[serde(default)]
    pub version: Option<i64>,
    /// New `maxPerMember`: absent keeps it, `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>, minimum = 1)]
    pub max_per_member: Option<Option<i64>>,
    /// New `saleStartsAt`: absent keeps it, `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub sale_starts_at: Option<Option<DateTime<Utc>>>,
    /// New `saleEndsAt`: absent keeps it, `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub sale_ends_at: Option<Option<DateTime<Utc>>>,
}

/// A field that is present (`Some`), possibly as `null` (`Some(None)`);
/// absent fields are `None` through `#[serde(default)]`.
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// The version of an `If-Match` header: `"7"`, `W/"7"` or `7`.
fn if_match(headers: &HeaderMap) -> Result<Option<i64>, Problem> {
    let Some(raw) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = raw.to_str().unwrap_or_default().trim();
    let text = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
    text.parse::<i64>()
        .map(Some)
        .map_err(|_| Problem::validation("If-Match must be the product's version, e.g. \"7\""))
}

fn etag(version: i64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("\"{version}\"")).ok()
}

#[utoipa::path(
    put,
    path = "/api/v1/products/{productId}",
    tag = "products",
    description = "Updates a product (ADMIN): name and price are replaced; the stock changes only as `stock` (conditional on the version) or `stockDelta` say; `maxPerMember`, `saleStartsAt`, `saleEndsAt` are kept when absent, removed when `null`. See \"Stock changes\" in docs/API.md.",
    security(("bearer" = [])),
    params(
        ("productId" = u64, Path, description = "The product", minimum = 1),
        ("If-Match" = Option<String>, Header, description = "The product's version read, e.g. `\"7\"`: needed to set `stock` to another figure"),
    ),
    request_body = ProductUpdateBody,
    responses(
        (status = 200, description = "Updated", body = ProductBody,
            headers(("ETag" = String, description = "The new version, e.g. `\"8\"`"))),
        openapi::UpdateProductProblems,
    )
)]
async fn update_product(
    State(state): State<SharedState>,
    AdminAuth(caller): AdminAuth,
    Segment(raw): Segment,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ProductUpdateBody>,
) -> Result<Response, Problem> {
    let id = parse_product_id(&raw)?;
    let expected_version = match (if_match(&headers)?, body.version) {
        (Some(a), Some(b)) if a != b => {
            return Err(
                Problem::validation("If-Match and version name different versions").with_errors(&[
                    FieldError::new(
                        "version",
                        FieldErrorCode::Conflicting,
                        format!("is {b}, If-Match is {a}"),
                    ),
                ]),
            )
        }
        (a, b) => a.or(b),
    };
    let stock = match (body.stock, body.stock_delta) {
        (Some(_), Some(_)) => {
            return Err(
                Problem::validation("send either stock or stockDelta, not both").with_errors(&[
                    FieldError::new(
                        "stockDelta",
                        FieldErrorCode::Conflicting,
                        "must not be sent with stock",
                    ),
                ]),
            )
        }
        (Some(stock), None) => StockChange::Set {
            stock,
            expected_version,
        },
        (None, Some(delta)) => StockChange::Adjust(delta),
        (None, None) => StockChange::Keep,
    };
    let update = ProductUpdate {
        name: body.name,
        price: body.price,
        stock,
        rules: RulesChange {
            max_per_member: body.max_per_member,
            sale_starts_at: body.sale_starts_at,
            sale_ends_at: body.sale_ends_at,
        },
    };
    let product = state.products.update(caller, id, update).await?;
    let tag = etag(product.version);
    let mut response = ApiJson(ProductBody::from(product)).into_response();
    if let Some(tag) = tag {
        response.headers_mut().insert(header::ETAG, tag);
    }
    Ok(response)
}

#[utoipa::path(
    get,
    path = "/api/v1/products/{productId}",
    tag = "products",
    security(("bearer" = [])),
    params(("productId" = u64, Path, description = "The product", minimum = 1)),
    responses(
        (status = 200, description = "The product; `stock` as committed in the database", body = ProductBody),
        openapi::GetProductProblems,
    )
)]
async fn get_product(
    State(state): State<SharedState>,
    Auth(_): Auth,
    Segment(raw): Segment,
) -> Result<ApiJson<ProductBody>, Problem> {
    let id = parse_product_id(&raw)?;
    Ok(ApiJson(state.products.get(id).await?.into()))
}

#[utoipa::path(
    get,
    path = "/api/v1/products",
    tag = "products",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every product, by id; `stock` as committed in the database", body = Vec<ProductBody>),
        openapi::BearerOnly,
    )
)]
async fn list_products(
    State(state): State<SharedState>,
    Auth(_): Auth,
) -> Result<ApiJson<Vec<ProductBody>>, Problem> {
    let products = state.products.list().await?;
    Ok(ApiJson(products.into_iter().map(Into::into).collect()))
}

// ---- waiting room ----

/// Where a member stands in the waiting room, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "status", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RoomBody {
    /// In line.
    #[serde(rename_all = "camelCase")]
    Waiting {
        /// Place in the line, 1 = next.
        position: u64,
        /// Estimated wait in whole seconds (rounded up).
        estimated_wait_secs: u64,
    },
    /// May order until `expiresAt`.
    #[serde(rename_all = "camelCase")]
    Admitted {
        /// When the admission ends unless the member's order is final
        /// first.
        expires_at: DateTime<Utc>,
    },
}

impl From<RoomStatus> for RoomBody {
    fn from(s: RoomStatus) -> Self {
        match s {
            RoomStatus::Waiting {
                position,
                estimated_wait,
            } => Self::Waiting {
                position,
                estimated_wait_secs: estimated_wait.as_millis().div_ceil(1000) as u64,
            },
            RoomStatus::Admitted { expires_at } => Self::Admitted { expires_at },
        }
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/waiting-room",
    tag = "waiting-room",
    description = "Enters the waiting room (idempotent: entering again keeps the place).",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Where the member stands", body = RoomBody),
        openapi::EnterRoomProblems,
    )
)]
async fn enter_room(
    State(state): State<SharedState>,
    Auth(caller): Auth,
) -> Result<ApiJson<RoomBody>, Problem> {
    Ok(ApiJson(state.waiting_room.enter(caller).await?.into()))
}

#[utoipa::path(
    get,
    path = "/api/v1/waiting-room",
    tag = "waiting-room",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Where the member stands", body = RoomBody),
        openapi::RoomStatusProblems,
    )
)]
async fn room_status(
    State(state): State<SharedState>,
    Auth(caller): Auth,
) -> Result<ApiJson<RoomBody>, Problem> {
    Ok(ApiJson(state.waiting_room.status(caller).await?.into()))
}

// ---- orders ----

/// A trace as the API shows it; also the body of `202 Accepted` (the
/// trace as it stands: PROCESSING, or already FAILED `OUT_OF_STOCK` when the
/// stock gate refused the order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TraceBody {
    /// The trace id.
    #[schema(value_type = String, format = Uuid)]
    pub trace_id: TraceId,
    /// `PROCESSING`, `COMPLETED` or `FAILED`.
    #[schema(value_type = openapi::TraceStatus)]
    pub status: String,
    /// The order, when COMPLETED.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub order_id: Option<u64>,
    /// Why, when FAILED.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    #[schema(value_type = Option<oms_core::domain::FailureReason>)]
    pub reason: Option<String>,
}

impl From<OrderTrace> for TraceBody {
    fn from(t: OrderTrace) -> Self {
        let (order_id, reason) = match t.state {
            TraceState::Processing => (None, None),
            TraceState::Completed { order_id } => (Some(order_id.0), None),
            TraceState::Failed { reason } => (None, Some(reason.as_str().to_owned())),
        };
        Self {
            trace_id: t.trace_id,
            status: t.state.status_str().to_owned(),
            order_id,
            reason,
        }
    }
}

/// An order line as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderItemBody {
    /// Product.
    pub product_id: u64,
    /// Its name when ordered.
    pub product_name: String,
    /// Its unit price when ordered.
    pub price: i64,
    /// Units.
    pub quantity: u32,
}

/// An order as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderBody {
    /// Id.
    pub order_id: u64,
    /// Owner.
    pub member_id: u64,
    /// `PENDING_PAYMENT`, `PAID`, `REFUNDED`, `CANCELLED` or `EXPIRED`.
    #[schema(value_type = OrderStatus)]
    pub status: String,
    /// When it was placed (RFC 3339).
    pub order_date: DateTime<Utc>,
    /// When it expires unless paid.
    pub payment_due_at: DateTime<Utc>,
    /// The payment, once approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment: Option<oms_core::domain::Payment>,
    /// Sum of price × quantity.
    pub total_price: i64,
    /// Lines.
    pub items: Vec<OrderItemBody>,
    /// Receiver.
    pub receiver_info: ReceiverInfo,
}

impl From<Order> for OrderBody {
    fn from(o: Order) -> Self {
        Self {
            order_id: o.order_id.0,
            member_id: o.member_id.0,
            status: status_name(o.status).to_owned(),
            order_date: o.order_date,
            payment_due_at: o.payment_due_at,
            payment: o.payment,
            total_price: o.total_price,
            items: o.items.into_iter().map(item_body).collect(),
            receiver_info: o.receiver_info,
        }
    }
}

fn status_name(s: OrderStatus) -> &'static str {
    s.as_str()
}

fn item_body(i: OrderItem) -> OrderItemBody {
    OrderItemBody {
        product_id: i.product_id.0,
        product_name: i.product_name,
        price: i.price,
        quantity: i.quantity,
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.to_owned()))
            .map_err(|_| Problem::validation("Idempotency-Key must be visible ASCII")),
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/orders",
    tag = "orders",
    description = "Accepts an order (USER or ADMIN) and answers its trace at once: PROCESSING, or FAILED `OUT_OF_STOCK` when the stock gate refused it. The same member and `Idempotency-Key` answer the same trace and never place a second order. 503 within 5 s when the queue cannot take it.",
    security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 64 visible ASCII characters", min_length = 1, max_length = 64)),
    request_body = OrderRequest,
    responses(
        (status = 202, description = "Accepted: the trace as it stands", body = TraceBody,
            headers(("Location" = String, description = "`/api/v1/orders/by-trace/{traceId}`"))),
        openapi::PlaceOrderProblems,
    )
)]
async fn place_order(
    State(state): State<SharedState>,
    Auth(caller): Auth,
    nested: Option<Extension<NestedPath>>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<OrderRequest>,
) -> Result<Response, Problem> {
    let key = idempotency_key(&headers)?;
    let trace = state.intake.request_order(caller, request, key).await?;
    let trace_id = trace.trace_id;
    let mut response = (StatusCode::ACCEPTED, ApiJson(TraceBody::from(trace))).into_response();
    // Under the prefix the router is mounted at (`Router::nest`), if any.
    let prefix = nested.as_ref().map_or("", |Extension(p)| p.as_str());
    let prefix = prefix.trim_end_matches('/');
    if let Ok(location) =
        HeaderValue::from_str(&format!("{prefix}/api/v1/orders/by-trace/{trace_id}"))
    {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

#[utoipa::path(
    get,
    path = "/api/v1/orders/by-trace/{traceId}",
    tag = "orders",
    description = "A trace of the caller (or any, for ADMIN). A final status stays readable long after any cache TTL.",
    security(("bearer" = [])),
    params(("traceId" = String, Path, description = "The trace id (a UUID)", format = Uuid)),
    responses(
        (status = 200, description = "The trace", body = TraceBody),
        openapi::TraceProblems,
    )
)]
async fn get_trace(
    State(state): State<SharedState>,
    Auth(caller): Auth,
    Segment(raw): Segment,
) -> Result<ApiJson<TraceBody>, Problem> {
    let trace_id: TraceId = raw.parse()?;
    Ok(ApiJson(state.orders.trace(caller, trace_id).await?.into()))
}

#[utoipa::path(
    get,
    path = "/api/v1/orders/{orderId}",
    tag = "orders",
    description = "An order of the caller (or any, for ADMIN).",
    security(("bearer" = [])),
    params(("orderId" = u64, Path, description = "The order")),
    responses(
        (status = 200, description = "The order", body = OrderBody),
        openapi::OrderProblems,
    )
)]
async fn get_order(
    State(state): State<SharedState>,
    Auth(caller): Auth,
    Segment(raw): Segment,
) -> Result<ApiJson<OrderBody>, Problem> {
    let order_id = parse_order_id(&raw)?;
    Ok(ApiJson(state.orders.order(caller, order_id).await?.into()))
}

/// The query of `GET /api/v1/orders`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrdersQuery {
    /// Orders per page, 1 to 100 (default 100).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<usize>,
    /// The `next` cursor of the previous page.
    pub cursor: Option<u64>,
}

/// A page of the caller's orders, newest first. The body is the array of
/// orders; when more follow, the `Link` header names the next page
/// (`rel="next"`) and `X-Next-Cursor` carries its cursor.
#[utoipa::path(
    get,
    path = "/api/v1/orders",
    tag = "orders",
    security(("bearer" = [])),
    params(OrdersQuery),
    responses(
        (status = 200, description = "A page of the caller's orders, newest first", body = Vec<OrderBody>,
            headers(
                ("Link" = String, description = "When more follow: `</api/v1/orders?limit=n&cursor=c>; rel=\"next\"`"),
                ("X-Next-Cursor" = String, description = "When more follow: the cursor of the next page"),
            )),
        openapi::MyOrdersProblems,
    )
)]
async fn my_orders(
    State(state): State<SharedState>,
    Auth(caller): Auth,
    query: Result<axum::extract::Query<OrdersQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let axum::extract::Query(query) =
        query.map_err(|e| Problem::validation(format!("bad query: {e}")))?;
    let limit = query.limit.unwrap_or(OrderPage::MAX_LIMIT);
    let page = OrderPage::first(limit)?.after(query.cursor.map(OrderId));
    let page = state.orders.my_orders(caller, page).await?;
    Ok(orders_page(page, |next| {
        format!("/api/v1/orders?limit={limit}&cursor={next}")
    }))
}

/// A page of orders: the array of the page's orders; when more follow,
/// `Link: <uri>; rel="next"` (`uri` made by `next_uri` from the cursor)
/// and `X-Next-Cursor`.
fn orders_page(page: Orders, next_uri: impl FnOnce(OrderId) -> String) -> Response {
    let body: Vec<OrderBody> = page.orders.into_iter().map(Into::into).collect();
    let mut response = ApiJson(body).into_response();
    if let Some(next) = page.next {
        let link = format!("<{}>; rel=\"next\"", next_uri(next));
        if let Ok(v) = HeaderValue::from_str(&link) {
            response.headers_mut().insert(header::LINK, v);
        }
        if let Ok(v) = HeaderValue::from_str(&next.0.to_string()) {
            response.headers_mut().insert("x-next-cursor", v);
        }
    }
    response
}
