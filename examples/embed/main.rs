//! A host service that embeds oms: the host's own axum app, state,
//! authentication and database pool, with oms's API mounted under
//! `/shop/oms`.
//!
//! ```text
//! cargo run --example embed --all-features                 # serves on 127.0.0.1:3000 until Ctrl-C
//! cargo run --example embed --all-features -- --addr 127.0.0.1:4000
//! cargo run --example embed --all-features -- --check      # serves on an ephemeral port, checks itself, exits
//! ```
//!
//! Needs `OMS_DATABASE_URL` (`source target/services.env` after
//! `scripts/services.sh up`).
//!
//! - **Mount.** `router(state)` is nested at `/shop/oms`: oms answers
//!   `/shop/oms/api/v1/...`, `/shop/oms/healthz`, `/shop/oms/readyz`, and
//!   its `Location` headers carry the prefix.
//! - **State.** The host's routes (`/shop/status`,
//!   `/shop/reports/orders/{traceId}`) have a state of their own
//!   ([`Shop`]); oms's routes have oms's [`AppState`].
//! - **Authentication.** The host's routes take only the host's API keys
//!   (`x-api-key`, checked by a host middleware). oms's routes ask the
//!   [`Authenticator`] in their state: here [`ShopAuth`], which knows the
//!   same API keys (a staff key is an oms operator) and otherwise asks
//!   oms's own bearer tokens, so buyers sign up and log in through
//!   `/shop/oms/api/v1/auth/*` as usual.
//! - **Database.** The host builds its own `sqlx::MySqlPool` and hands a
//!   clone to [`MySqlStore::new`]: oms's products, orders, outcomes and
//!   members live in the host's database, and the host reads them with
//!   the same pool (`/shop/reports/orders/{traceId}`). The other ports are
//!   oms's in-memory adapters (queue, consumer, traces, sessions); a
//!   deployment of several processes puts the Kafka and Redis adapters in
//!   their place, as `oms::runtime::Services` does.
//!
//! `--check` starts the service on `127.0.0.1:0`, then, as a client: calls
//! the host's route with and without a key, creates a product with the
//! staff key through the prefix, signs a buyer up and logs it in, places an
//! order, polls it to COMPLETED, and reads it back from the host's report.
//! It prints each step and exits 0, or 1 with the step that failed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::extract::{Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use oms::application::{
    AuthService, OrderService, ProductCatalog, ProductService, QueryService, RequestOrderService,
};
use oms::domain::Caller;
use oms::http::{router, AppState, Authenticator, JwtAuth, Problem};
use oms::memory::{
    InMemoryAttemptCounter, InMemoryOrderQueue, InMemorySessionStore, InMemoryTraceStore,
};
use oms::mysql::MySqlStore;
use oms::password::Argon2idHasher;
use oms::port::outbound::HealthCheck;
use serde_json::{json, Value};
use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The header of the host's API keys.
const API_KEY: &str = "x-api-key";

type Error = Box<dyn std::error::Error + Send + Sync>;

// ---------------------------------------------------------------------------
// The host: its state, its authentication, its routes.

/// The host's state: its database pool and its API keys.
#[derive(Clone)]
struct Shop {
    pool: MySqlPool,
    keys: Arc<HashMap<String, Caller>>,
}

impl Shop {
    fn caller(&self, headers: &HeaderMap) -> Option<Caller> {
        let key = headers.get(API_KEY)?.to_str().ok()?;
        self.keys.get(key).copied()
    }
}

/// The host's middleware on its own routes: a known `x-api-key` or 401.
/// The caller goes into the request's extensions.
async fn require_api_key(State(shop): State<Shop>, mut request: Request, next: Next) -> Response {
    match shop.caller(request.headers()) {
        Some(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        None => (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "a known x-api-key is required"})),
        )
            .into_response(),
    }
}

/// Who calls oms's routes: the host's API keys first, oms's bearer tokens
/// otherwise.
struct ShopAuth {
    keys: Arc<HashMap<String, Caller>>,
    bearer: Arc<dyn Authenticator>,
}

#[async_trait]
impl Authenticator for ShopAuth {
    async fn authenticate(&self, parts: &Parts) -> Result<Caller, Problem> {
        match parts.headers.get(API_KEY) {
            Some(key) => key
                .to_str()
                .ok()
                .and_then(|k| self.keys.get(k))
                .copied()
                .ok_or_else(|| Problem::unauthorized("unknown x-api-key")),
            None => self.bearer.authenticate(parts).await,
        }
    }
}

/// `GET /shop/status`: the host's own route, on its own pool.
async fn status(State(shop): State<Shop>, Extension(caller): Extension<Caller>) -> Response {
    match sqlx::query("SELECT 1").execute(&shop.pool).await {
        Ok(_) => Json(json!({
            "shop": "open",
            "database": "ok",
            "caller": caller.member_id.0,
        }))
        .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"shop": "open", "database": e.to_string()})),
        )
            .into_response(),
    }
}

/// `GET /shop/reports/orders/{traceId}` (staff): the order oms placed for a
/// trace, read from the host's database with the host's pool.
async fn order_report(
    State(shop): State<Shop>,
    Extension(caller): Extension<Caller>,
    Path(trace_id): Path<String>,
) -> Response {
    if !caller.is_admin() {
        return (StatusCode::FORBIDDEN, Json(json!({"error": "staff only"}))).into_response();
    }
    let row: Result<Option<(i64, String)>, _> =
        sqlx::query_as("SELECT id, status FROM orders WHERE trace_id = ?")
            .bind(&trace_id)
            .fetch_optional(&shop.pool)
            .await;
    match row {
        Ok(Some((order_id, status))) => {
            Json(json!({"orderId": order_id, "status": status})).into_response()
        }
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "no such order"})),
        )
            .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}

// ---------------------------------------------------------------------------
// oms on the host's pool.

/// oms's services on the host's pool, and the background work they need.
struct Oms {
    state: AppState,
    stop: Vec<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Oms {
    /// Composes oms's services: the MySQL adapter on `pool` (migrated),
    /// the in-memory adapters for the rest; tokens signed with `secret`;
    /// oms's routes authenticated by [`ShopAuth`] on `keys`.
    async fn start(
        pool: MySqlPool,
        keys: Arc<HashMap<String, Caller>>,
        secret: &[u8],
    ) -> Result<Self, Error> {
        let store = Arc::new(MySqlStore::new(pool));
        store.migrate().await?;
        let traces = Arc::new(InMemoryTraceStore::new());
        let (queue, receiver) = InMemoryOrderQueue::new();
        let queue = Arc::new(queue);
        let catalog = Arc::new(ProductCatalog::new(store.clone(), Duration::from_secs(1)));

        let intake = RequestOrderService::new(queue.clone(), traces.clone())
            .with_arbiter(store.clone())
            .with_catalog(catalog.clone());
        let processing = Arc::new(OrderService::new(
            store.clone(),
            traces.clone(),
            queue.clone(),
        ));
        let accounts = AuthService::new(
            store.clone(),
            Arc::new(InMemorySessionStore::new()),
            Arc::new(InMemoryAttemptCounter::new()),
            Arc::new(Argon2idHasher::new()),
            Arc::new(JwtAuth::new(secret)),
        );
        accounts.prepare().await?;
        let checks: Vec<Arc<dyn HealthCheck>> = vec![store.clone(), queue.clone(), traces.clone()];
        let state = AppState::new(
            Arc::new(intake),
            Arc::new(QueryService::new(store.clone(), traces.clone())),
            Arc::new(ProductService::new(store.clone()).with_catalog(catalog.clone())),
            Arc::new(accounts),
            checks,
        );
        let auth = ShopAuth {
            keys,
            bearer: state.auth.clone(),
        };
        let state = state.with_authenticator(Arc::new(auth));

        let (stop_consumer, consumer_stopped) = oneshot::channel::<()>();
        let (stop_refresh, refresh_stopped) = oneshot::channel::<()>();
        let tasks = vec![
            tokio::spawn(receiver.run(processing, async move {
                let _ = consumer_stopped.await;
            })),
            tokio::spawn(catalog.run(async move {
                let _ = refresh_stopped.await;
            })),
        ];
        Ok(Self {
            state,
            stop: vec![stop_consumer, stop_refresh],
            tasks,
        })
    }

    /// Stops the consumer (after it has processed what it holds) and the
    /// catalogue refresh.
    async fn shutdown(self) {
        for stop in self.stop {
            let _ = stop.send(());
        }
        for task in self.tasks {
            if let Err(e) = task.await {
                eprintln!("an oms task ended abnormally: {e}");
            }
        }
    }
}

/// The host's whole app: its routes under `/shop`, oms under `/shop/oms`.
fn app(shop: Shop, oms: AppState) -> Router {
    let host_routes = Router::new()
        .route("/status", get(status))
        .route("/reports/orders/{trace_id}", get(order_report))
        // Only the host's routes: oms's are nested after this layer.
        .route_layer(middleware::from_fn_with_state(
            shop.clone(),
            require_api_key,
        ))
        .with_state(shop);
    Router::new().nest("/shop", host_routes.nest("/oms", router(oms)))
}

// ---------------------------------------------------------------------------
// The process.

/// A random hexadecimal string of `uuids` × 32 characters.
fn random_hex(uuids: usize) -> String {
    (0..uuids)
        .map(|_| uuid::Uuid::new_v4().simple().to_string())
        .collect()
}

struct Args {
    check: bool,
    addr: SocketAddr,
}

fn args() -> Result<Args, String> {
    let usage = "usage: embed [--check] [--addr HOST:PORT]";
    let mut parsed = Args {
        check: false,
        addr: SocketAddr::from(([127, 0, 0, 1], 3000)),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--check" => parsed.check = true,
            "--addr" => {
                let value = args.next().ok_or(usage)?;
                parsed.addr = value
                    .parse()
                    .map_err(|e| format!("--addr {value}: {e}; {usage}"))?;
            }
            "-h" | "--help" => return Err(usage.into()),
            other => return Err(format!("unknown argument {other:?}; {usage}")),
        }
    }
    if parsed.check {
        parsed.addr = SocketAddr::from(([127, 0, 0, 1], 0));
    }
    Ok(parsed)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let default_log = if args.check { "warn" } else { "info" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_log)),
        )
        .init();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("embed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Error> {
    let url = std::env::var("OMS_DATABASE_URL").map_err(|_| {
        "OMS_DATABASE_URL is not set: run `scripts/services.sh up && source target/services.env`"
    })?;
    // The host's own pool, with the host's own settings.
    // (`MySqlStore::pool_options()` has oms's statement and lock-wait
    // bounds, to start from instead.)
    let pool = MySqlPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&url)
        .await
        .map_err(|e| format!("cannot connect to OMS_DATABASE_URL: {e}"))?;

    // The host's API keys: a staff key (an oms operator) and a clerk's.
    let staff_key = format!("staff-{}", random_hex(1));
    let clerk_key = format!("clerk-{}", random_hex(1));
    let keys = Arc::new(HashMap::from([
        (staff_key.clone(), Caller::admin(1)),
        (clerk_key.clone(), Caller::user(2)),
    ]));
    let oms = Oms::start(pool.clone(), keys.clone(), random_hex(2).as_bytes()).await?;
    let app = app(Shop { pool, keys }, oms.state.clone());

    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    let addr = listener.local_addr()?;
    let (stop_server, server_stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            // oms throttles logins by the client's address.
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = server_stopped.await;
        })
        .await
    });

    let outcome = if args.check {
        check(&format!("http://{addr}"), &staff_key, &clerk_key).await
    } else {
        println!("shop on http://{addr}: host routes under /shop, oms under /shop/oms");
        println!("staff key (an oms operator): {staff_key}");
        println!("clerk key: {clerk_key}");
        println!("curl -H '{API_KEY}: {staff_key}' http://{addr}/shop/status");
        tokio::signal::ctrl_c().await.map_err(Error::from)
    };

    let _ = stop_server.send(());
    let served = server.await;
    oms.shutdown().await;
    outcome?;
    served??;
    Ok(())
}

// ---------------------------------------------------------------------------
// --check: the service, called as a client would.

/// A client of the running service.
struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    /// `method path` with these headers and JSON body; the status and the
    /// JSON answer (`Null` when empty).
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Result<(StatusCode, HeaderMap, Value), Error> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let answer_headers = response.headers().clone();
        let bytes = response.bytes().await?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .map_err(|e| format!("{path}: answer is not JSON ({e})"))?
        };
        Ok((status, answer_headers, body))
    }
}

/// Fails with `message` unless `ok`.
fn ensure(ok: bool, message: impl FnOnce() -> String) -> Result<(), Error> {
    if ok {
        Ok(())
    } else {
        Err(message().into())
    }
}

/// Fails unless `status` is `expected`.
fn expect(step: &str, status: StatusCode, expected: StatusCode, body: &Value) -> Result<(), Error> {
    ensure(status == expected, || {
        format!("{step}: expected {expected}, got {status}: {body}")
    })?;
    println!("ok: {step} ({status})");
    Ok(())
}

async fn check(base: &str, staff_key: &str, clerk_key: &str) -> Result<(), Error> {
    use reqwest::Method;
    let client = Client {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?,
        base: base.to_owned(),
    };
    let staff = [(API_KEY, staff_key)];
    let clerk = [(API_KEY, clerk_key)];

    // The host's route: the host's key or nothing.
    let (s, _, b) = client.call(Method::GET, "/shop/status", &[], None).await?;
    expect(
        "host route without a key is refused",
        s,
        StatusCode::UNAUTHORIZED,
        &b,
    )?;
    let (s, _, b) = client
        .call(Method::GET, "/shop/status", &clerk, None)
        .await?;
    expect("host route with the clerk's key", s, StatusCode::OK, &b)?;
    ensure(b["database"] == "ok" && b["caller"] == 2, || {
        format!("/shop/status answered {b}")
    })?;

    // oms under the prefix.
    let (s, _, b) = client
        .call(Method::GET, "/shop/oms/readyz", &[], None)
        .await?;
    expect(
        "oms readiness through the prefix (the host's pool answers)",
        s,
        StatusCode::OK,
        &b,
    )?;
    let (s, headers, b) = client
        .call(Method::GET, "/shop/oms/api/v1/products", &[], None)
        .await?;
    expect(
        "oms route without credentials is refused",
        s,
        StatusCode::UNAUTHORIZED,
        &b,
    )?;
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    ensure(content_type.starts_with("application/problem+json"), || {
        format!("oms's 401 should be problem+json, is {content_type:?}: {b}")
    })?;

    // The staff key is an oms operator: it adds a product.
    let product_id = ((uuid::Uuid::new_v4().as_u128() as u64) >> 12).max(1);
    let (s, _, b) = client
        .call(
            Method::POST,
            "/shop/oms/api/v1/products",
            &staff,
            Some(
                json!({"productId": product_id, "name": "Tteokbokki", "price": 12900, "stock": 5}),
            ),
        )
        .await?;
    expect(
        "staff key adds a product through oms",
        s,
        StatusCode::CREATED,
        &b,
    )?;
    let (s, _, b) = client
        .call(
            Method::POST,
            "/shop/oms/api/v1/products",
            &clerk,
            Some(json!({"productId": product_id + 1, "name": "Odeng", "price": 3000, "stock": 5})),
        )
        .await?;
    expect(
        "clerk key is no operator of oms",
        s,
        StatusCode::FORBIDDEN,
        &b,
    )?;

    // A buyer of oms's own: signs up (a member in the host's database) and
    // logs in for a bearer token.
    let email = format!("buyer-{}@example.com", random_hex(1));
    let password = "correct horse battery staple";
    let (s, _, b) = client
        .call(
            Method::POST,
            "/shop/oms/api/v1/auth/signup",
            &[],
            Some(json!({"email": email, "password": password, "name": "Kim"})),
        )
        .await?;
    expect("buyer signs up through oms", s, StatusCode::CREATED, &b)?;
    let (s, _, b) = client
        .call(
            Method::POST,
            "/shop/oms/api/v1/auth/login",
            &[],
            Some(json!({"email": email, "password": password})),
        )
        .await?;
    expect("buyer logs in through oms", s, StatusCode::OK, &b)?;
    let token = b["accessToken"]
        .as_str()
        .ok_or_else(|| format!("login answered no accessToken: {b}"))?;
    let bearer = format!("Bearer {token}");
    let buyer = [("authorization", bearer.as_str())];

    let (s, _, b) = client
        .call(Method::GET, "/shop/status", &buyer, None)
        .await?;
    expect(
        "host route refuses oms's bearer token",
        s,
        StatusCode::UNAUTHORIZED,
        &b,
    )?;

    // The buyer orders; the Location header carries the prefix.
    let (s, headers, b) = client
        .call(
            Method::POST,
            "/shop/oms/api/v1/orders",
            &buyer,
            Some(json!({
                "items": [{"productId": product_id, "quantity": 1}],
                "receiverInfo": {"name": "Kim", "phone": "010-0000-0000", "address": "Seoul"},
            })),
        )
        .await?;
    expect(
        "buyer places an order through oms",
        s,
        StatusCode::ACCEPTED,
        &b,
    )?;
    let trace_id = b["traceId"]
        .as_str()
        .ok_or_else(|| format!("order answered no traceId: {b}"))?
        .to_owned();
    let location = headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let expected = format!("/shop/oms/api/v1/orders/by-trace/{trace_id}");
    ensure(location == expected, || {
        format!("Location should be {expected}, is {location:?}")
    })?;
    println!("ok: Location is {location}");

    // Poll the trace to a final status.
    let deadline = Instant::now() + Duration::from_secs(30);
    let order_id = loop {
        let (s, _, b) = client.call(Method::GET, &location, &buyer, None).await?;
        ensure(s == StatusCode::OK, || format!("GET {location}: {s} {b}"))?;
        match b["status"].as_str() {
            Some("PROCESSING") => {}
            Some("COMPLETED") => {
                break b["orderId"]
                    .as_i64()
                    .ok_or_else(|| format!("COMPLETED without an orderId: {b}"))?
            }
            _ => return Err(format!("the order should complete, its trace is {b}").into()),
        }
        ensure(Instant::now() < deadline, || {
            format!("trace {trace_id} still PROCESSING after 30 s")
        })?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!("ok: trace {trace_id} COMPLETED as order {order_id}");

    // The stock moved in the host's database, and the host's report, on
    // the host's pool, finds the order oms placed.
    let (s, _, b) = client
        .call(
            Method::GET,
            &format!("/shop/oms/api/v1/products/{product_id}"),
            &buyer,
            None,
        )
        .await?;
    expect("product read through oms", s, StatusCode::OK, &b)?;
    ensure(b["stock"] == 4, || {
        format!("stock should be 4 of 5, product is {b}")
    })?;
    let report = format!("/shop/reports/orders/{trace_id}");
    let (s, _, b) = client.call(Method::GET, &report, &clerk, None).await?;
    expect(
        "host report refuses the clerk",
        s,
        StatusCode::FORBIDDEN,
        &b,
    )?;
    let (s, _, b) = client.call(Method::GET, &report, &staff, None).await?;
    expect("host report with the staff key", s, StatusCode::OK, &b)?;
    ensure(
        b["orderId"] == order_id && b["status"] == "PENDING_PAYMENT",
        || format!("the host's report should show order {order_id} PENDING_PAYMENT, shows {b}"),
    )?;
    println!("ok: the host's pool reads order {order_id} that oms placed");
    println!("embed check passed");
    Ok(())
}
