//! The operators' views: `GET /api/v1/admin/orders` and
//! `GET /api/v1/admin/products/{productId}/stock` (ADMIN only).

use async_trait::async_trait;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Response;
use oms_core::domain::{
    Caller, OmsError, OmsResult, OrderFilter, OrderId, OrderPage, OrderStatus, Orders, ProductId,
    StockReport,
};
use oms_core::port::inbound::AdminQuery;
use serde::{Deserialize, Serialize};

use super::{parse_product_id, AdminAuth, ApiJson, Problem, Segment, SharedState};

/// The query of `GET /api/v1/admin/orders`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct AdminOrdersQuery {
    /// Only orders in this status.
    pub status: Option<OrderStatus>,
    /// Only orders with a line of this product.
    #[param(minimum = 1)]
    pub product_id: Option<u64>,
    /// Orders per page, 1 to 100 (default 100).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<usize>,
    /// The cursor of the previous page (`X-Next-Cursor`).
    pub cursor: Option<u64>,
}

/// Units a product's orders hold, as the API shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeldBody {
    /// Units in PENDING_PAYMENT orders.
    pub pending_payment: i64,
    /// Units in PAID orders.
    pub paid: i64,
}

/// The answer of `GET /api/v1/admin/products/{productId}/stock`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StockBody {
    /// The product.
    #[schema(minimum = 1)]
    pub product_id: u64,
    /// Units left, as committed in the database.
    pub stock: i64,
    /// The product's version.
    pub version: i64,
    /// Units the stock gate lets intake reserve; `null` when the gate is
    /// off or holds no level for the product.
    #[schema(required = true)]
    pub gate_level: Option<i64>,
    /// Units held by placed orders.
    pub held: HeldBody,
}

impl From<StockReport> for StockBody {
    fn from(r: StockReport) -> Self {
        Self {
            product_id: r.product_id.0,
            stock: r.stock,
            version: r.version,
            gate_level: r.gate_level,
            held: HeldBody {
                pending_payment: r.held.pending_payment,
                paid: r.held.paid,
            },
        }
    }
}

/// The next page's URI: the same filters, the same limit, the cursor.
fn next_uri(filter: &OrderFilter, limit: usize, cursor: OrderId) -> String {
    let mut uri = String::from("/api/v1/admin/orders?");
    if let Some(status) = filter.status {
        uri.push_str(&format!("status={status}&"));
    }
    if let Some(product) = filter.product_id {
        uri.push_str(&format!("productId={product}&"));
    }
    uri.push_str(&format!("limit={limit}&cursor={cursor}"));
    uri
}

/// Every member's orders, newest first, paged like `GET /api/v1/orders`.
#[utoipa::path(
    get,
    path = "/api/v1/admin/orders",
    tag = "admin",
    description = "Every member's orders that match the filters (ADMIN), newest first, each as `GET /api/v1/orders/{orderId}` shows it, paged like `GET /api/v1/orders`.",
    security(("bearer" = [])),
    params(AdminOrdersQuery),
    responses(
        (status = 200, description = "A page of orders, newest first", body = Vec<super::OrderBody>,
            headers(
                ("Link" = String, description = "When more follow: `</api/v1/admin/orders?status=s&productId=p&limit=n&cursor=c>; rel=\"next\"`, with the request's filters"),
                ("X-Next-Cursor" = String, description = "When more follow: the cursor of the next page"),
            )),
        super::openapi::AdminOrdersProblems,
    )
)]
pub(super) async fn orders(
    State(state): State<SharedState>,
    AdminAuth(caller): AdminAuth,
    query: Result<Query<AdminOrdersQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let Query(query) = query.map_err(|e| Problem::validation(format!("bad query: {e}")))?;
    let product_id = match query.product_id {
        Some(0) => return Err(Problem::validation("`0` is not a product id")),
        id => id.map(ProductId),
    };
    let filter = OrderFilter {
        status: query.status,
        product_id,
    };
    let limit = query.limit.unwrap_or(OrderPage::MAX_LIMIT);
    let page = OrderPage::first(limit)?.after(query.cursor.map(OrderId));
    let page = state.admin.orders(caller, filter, page).await?;
    Ok(super::orders_page(page, |next| {
        next_uri(&filter, limit, next)
    }))
}

/// A product's stock in the database and the gate, and what its orders
/// hold.
#[utoipa::path(
    get,
    path = "/api/v1/admin/products/{productId}/stock",
    tag = "admin",
    description = "A product's stock (ADMIN): in the database, in the stock gate, and held by its PENDING_PAYMENT and PAID orders.",
    security(("bearer" = [])),
    params(("productId" = u64, Path, description = "The product", minimum = 1)),
    responses(
        (status = 200, description = "Where the product's units are", body = StockBody),
        super::openapi::AdminStockProblems,
    )
)]
pub(super) async fn stock(
    State(state): State<SharedState>,
    AdminAuth(caller): AdminAuth,
    Segment(raw): Segment,
) -> Result<ApiJson<StockBody>, Problem> {
    let product_id = parse_product_id(&raw)?;
    Ok(ApiJson(state.admin.stock(caller, product_id).await?.into()))
}

/// The views of a service that did not set them up: every call is 503.
pub(super) struct AdminOff;

fn off() -> OmsError {
    OmsError::unavailable("admin views", "none are configured")
}

#[async_trait]
impl AdminQuery for AdminOff {
    async fn orders(&self, _: Caller, _: OrderFilter, _: OrderPage) -> OmsResult<Orders> {
        Err(off())
    }

    async fn stock(&self, _: Caller, _: ProductId) -> OmsResult<StockReport> {
        Err(off())
    }
}
