//! The "AS-IS" baseline of the benchmark (`OMS_BASELINE_AS_IS=1`): a
//! synchronous order endpoint that locks the product rows and writes the
//! order within the request, as the design oms replaces did. Not part of the
//! API contract.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::routing::post;
use axum::Extension;
use axum::{Json, Router};
use oms::domain::{OrderCommand, OrderRequest, TraceId};
use oms::http::{ApiJson, AppState, Auth, Problem, TraceBody};
use oms::mysql::MySqlStore;

/// `POST /baseline/as-is/orders`: 201 with the final trace.
pub fn routes(state: AppState, store: Arc<MySqlStore>) -> Router {
    Router::new()
        .route("/baseline/as-is/orders", post(place))
        .layer(Extension(store))
        .with_state(state)
}

async fn place(
    Extension(store): Extension<Arc<MySqlStore>>,
    Auth(caller): Auth,
    ApiJson(request): ApiJson<OrderRequest>,
) -> Result<(StatusCode, Json<TraceBody>), Problem> {
    request.validate()?;
    let command = OrderCommand::new(TraceId::new(), caller.member_id, request);
    let placed = store.place_locked(&command).await?;
    Ok((StatusCode::CREATED, Json(placed.trace.into())))
}
