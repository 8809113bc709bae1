//! The 네고왕 load tool: runs the flash-sale scenario against a running API
//! and reports throughput, latencies, time to all-final and the invariants.
//!
//! ```text
//! cargo run --release --example negowang -- --url http://127.0.0.1:8080 \
//!     --members 1000 --products 3 --stock 500 --concurrency 64 --chart negowang.svg
//! ```
//!
//! Every member orders one unit of every product, once (by default), with
//! at most `--concurrency` requests in flight.
//!
//! Buyers' tokens: with `--auth mint` (default) the tool mints access
//! tokens locally with the API's secret (`typ: "access"`, a random `jti`,
//! checked and revocable like issued ones), so that the run measures order
//! intake alone; with `--auth login` every buyer signs up and logs in first
//! (`/api/v1/auth/signup`, `/api/v1/auth/login`), and the report adds the
//! sign-up and login throughput and latencies (Argon2id on the server). The
//! operator logs in with `--admin-email` / `--admin-password` when given,
//! otherwise its token is minted too. With `--design oms` (default) it
//! POSTs `/api/v1/orders` and polls each trace until it is final; with
//! `--design as-is` it POSTs the synchronous baseline
//! `/baseline/as-is/orders` (served by `examples/api` with
//! `OMS_BASELINE_AS_IS=1`), whose answer is already final. It exits with 1
//! when an invariant does not hold.
//!
//! `--url` may be given more than once (or as a comma-separated list): the
//! members are spread over those replicas round-robin by member id. With
//! `--orders-per-member K` every member sends K such orders at once, and
//! with `--max-per-member N` the products carry `maxPerMember` N, so the
//! purchase limit is exercised under concurrency. With `--waiting-room`
//! every member first enters `/api/v1/waiting-room`, sleeps until about 90 %
//! of the wait it was told, asks every 500 ms until it is admitted, then
//! orders and follows its traces; the report adds the admission rate, the
//! fairness of the order of admission and the waits against the estimates
//! (`--room-chart` draws the line and the admissions over time).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use clap::{Parser, ValueEnum};
use futures::future::join_all;
use futures::{stream, StreamExt};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use oms::config::DEV_JWT_SECRET;
use oms::domain::Role;
use oms::http::JwtAuth;
use plotters::coord::Shift;
use plotters::prelude::{
    ChartBuilder, Color, DrawingArea, IntoDrawingArea, LineSeries, PathElement, RGBColor,
    SVGBackend, SeriesLabelPosition, BLACK, BLUE, GREEN, RED, WHITE,
};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum AuthMode {
    /// Mint access tokens locally with the secret (fast; intake alone).
    Mint,
    /// Sign every buyer up and log it in (measures Argon2id logins).
    Login,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Design {
    /// Accept (202), queue, process in the background; poll the traces.
    Oms,
    /// The synchronous baseline: lock the product rows, write the order,
    /// answer the final status.
    AsIs,
}

/// The API when no `--url` is given.
const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// Runs the 네고왕 flash-sale scenario against a running oms API.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Base URL of the API; give it more than once (or comma-separated) to
    /// spread the members over replicas, round-robin by member id.
    #[arg(long = "url", value_name = "URL", value_delimiter = ',', default_value = DEFAULT_URL)]
    urls: Vec<String>,
    /// Buyers; each orders one unit of every product, once (or
    /// `--orders-per-member` times).
    #[arg(long, default_value_t = 1000)]
    members: u64,
    /// Products on sale.
    #[arg(long, default_value_t = 3)]
    products: u64,
    /// Initial stock of every product.
    #[arg(long, default_value_t = 500)]
    stock: i64,
    /// Requests in flight at most.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Which design to drive.
    #[arg(long, value_enum, default_value_t = Design::Oms)]
    design: Design,
    /// The API's HS256 secret (tokens are minted locally).
    #[arg(long, env = "OMS_JWT_SECRET", default_value = DEV_JWT_SECRET, hide_env_values = true)]
    secret: String,
    /// How buyers get their tokens.
    #[arg(long, value_enum, default_value_t = AuthMode::Mint)]
    auth: AuthMode,
    /// The operator's email (logs in instead of minting an ADMIN token).
    #[arg(long, env = "OMS_ADMIN_EMAIL")]
    admin_email: Option<String>,
    /// The operator's password.
    #[arg(long, env = "OMS_ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: Option<String>,
    /// Writes a chart (SVG) of accepted and final orders over time.
    #[arg(long)]
    chart: Option<PathBuf>,
    /// Gives up waiting for final traces after this many seconds (and, with
    /// `--waiting-room`, for an admission this long past its estimate).
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
    /// A name for the run in the report (default: the design).
    #[arg(long)]
    label: Option<String>,
    /// Creates the products with this `maxPerMember`.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_per_member: Option<u64>,
    /// Orders every member sends at once, each of one unit of every
    /// product.
    #[arg(long, value_name = "K", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1000))]
    orders_per_member: u64,
    /// Every member enters the waiting room first and orders once admitted.
    #[arg(long)]
    waiting_room: bool,
    /// The API's `OMS_ADMIT_TTL_SECS` (an admission began at expiresAt − TTL).
    #[arg(long, value_name = "T", default_value_t = 120)]
    admit_ttl_secs: u64,
    /// The API's `OMS_ADMIT_PER_SEC` (for the report only).
    #[arg(long, value_name = "R", default_value_t = 100)]
    admit_per_sec: u64,
    /// Writes a chart (SVG) of the waiting room's line and admissions.
    #[arg(long, value_name = "PATH", requires = "waiting_room")]
    room_chart: Option<PathBuf>,
    /// With the waiting room: every member is admitted before anyone
    /// orders, and the orders are timed alone (what the room's check costs
    /// intake, against a run without the room).
    #[arg(long, requires = "waiting_room")]
    admit_first: bool,
    /// Reports the first wave — the first `--concurrency` POSTs, what a
    /// freshly started API meets at the opening of a sale — apart from the
    /// rest. The tool warms nothing first: start the API just before.
    #[arg(long)]
    cold: bool,
}

/// What one POST did.
struct Post {
    member: u64,
    /// Since the first POST.
    sent_at: Duration,
    latency: Duration,
    status: u16,
    /// The problem's `code` of a refusal (`LIMIT_EXCEEDED`, `NOT_ADMITTED`).
    code: Option<String>,
    trace: Option<String>,
    /// The final trace, when the answer was already final (as-is).
    final_body: Option<Value>,
}

impl Post {
    /// Refused with this status and problem code.
    fn refused(&self, status: u16, code: &str) -> bool {
        self.status == status && self.code.as_deref() == Some(code)
    }
}

/// A final trace and when it was seen (since the first POST).
struct Final {
    at: Duration,
    body: Value,
}

type Failure = Box<dyn std::error::Error + Send + Sync>;

/// The password of every buyer the tool signs up.
const BUYER_PASSWORD: &str = "negowang buyer password";

/// How long a waiting member sleeps before it asks for its place: this
/// share of the wait it was told at entry.
const ESTIMATE_SHARE: f64 = 0.9;

/// How often a waiting member asks whether it is admitted.
const ROOM_POLL: Duration = Duration::from_millis(500);

/// How often a member in the waiting-room run asks for its traces.
const TRACE_POLL: Duration = Duration::from_millis(100);

/// How the buyers signed up and logged in (`--auth login`).
struct AuthReport {
    signups: usize,
    signup_secs: f64,
    signup_latency: Histogram<u64>,
    logins: usize,
    login_secs: f64,
    login_latency: Histogram<u64>,
}

/// The run's clock: seconds since its start, read from the wall clock for
/// the server's times (same machine).
struct Clock {
    start: Instant,
    wall_micros: i64,
}

impl Clock {
    fn start() -> Self {
        Self {
            start: Instant::now(),
            wall_micros: Utc::now().timestamp_micros(),
        }
    }

    /// Now, in seconds since the start.
    fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// A server time, in seconds since the start.
    fn at(&self, t: DateTime<Utc>) -> f64 {
        (t.timestamp_micros() - self.wall_micros) as f64 / 1e6
    }

    /// The instant `secs` after the start.
    fn instant(&self, secs: f64) -> tokio::time::Instant {
        let offset = Duration::try_from_secs_f64(secs).unwrap_or_default();
        tokio::time::Instant::from_std(self.start + offset)
    }
}

/// Where a member stands in the waiting room.
enum Stand {
    Waiting { position: u64, estimate: f64 },
    Admitted { expires_at: DateTime<Utc> },
}

/// Why a waiting-room request did not tell where the member stands.
enum RoomError {
    /// No answer, or one worth asking again (429, 5xx).
    Transient(String),
    /// A refusal (`NOT_IN_WAITING_ROOM`, `WAITING_ROOM_OFF`, …).
    Refused(String),
}

/// One member's way through the waiting room, in seconds on the run's
/// clock.
struct Visit {
    member: u64,
    /// When the entry that was answered was sent, and when its answer came
    /// (client time).
    entry_sent: f64,
    arrival: Option<f64>,
    /// The place in line answered at entry (0: admitted at once).
    position: u64,
    /// The wait answered at entry, in seconds.
    estimate: f64,
    /// The server's admission instant: expiresAt − TTL.
    admitted_at: Option<f64>,
    /// Waiting-room requests that failed and were made again.
    retried: u64,
    /// Why the member was never admitted.
    trouble: Option<String>,
}

/// What one member did in the waiting-room run.
struct MemberRun {
    visit: Visit,
    posts: Vec<Post>,
    finals: Vec<(String, Final)>,
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0))
}

fn bar(args: &Args, len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    if args.quiet {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    let style = ProgressStyle::with_template(
        "{msg:>10} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    pb.set_style(style);
    pb.set_message(what.to_owned());
    pb
}

fn is_final(trace: &Value) -> bool {
    trace["status"] == "COMPLETED" || trace["status"] == "FAILED"
}

/// The body of every order: one unit of every product.
fn order_body(products: &[u64]) -> Value {
    json!({
        "items": products.iter().map(|p| json!({"productId": p, "quantity": 1})).collect::<Vec<_>>(),
        "receiverInfo": {"name": "Kim", "phone": "010-0000-0000", "address": "Seoul"},
    })
}

/// The traces whose answer was already final, and the accepted ones still
/// to poll (member, trace).
fn answered(posts: &[Post]) -> (HashMap<String, Final>, Vec<(u64, &str)>) {
    let mut finals = HashMap::new();
    let mut pending = Vec::new();
    for p in posts {
        match (&p.trace, &p.final_body) {
            (Some(t), Some(body)) => {
                finals.insert(
                    t.clone(),
                    Final {
                        at: p.sent_at + p.latency,
                        body: body.clone(),
                    },
                );
            }
            (Some(t), None) => pending.push((p.member, t.as_str())),
            _ => {}
        }
    }
    (finals, pending)
}

/// Where the waiting room's answer says the member stands.
fn parse_stand(v: &Value) -> Option<Stand> {
    match v["status"].as_str()? {
        "WAITING" => Some(Stand::Waiting {
            position: v["position"].as_u64()?,
            estimate: v["estimatedWaitSecs"].as_f64()?,
        }),
        "ADMITTED" => {
            let expires_at = DateTime::parse_from_rfc3339(v["expiresAt"].as_str()?).ok()?;
            Some(Stand::Admitted {
                expires_at: expires_at.with_timezone(&Utc),
            })
        }
        _ => None,
    }
}

struct Run {
    args: Args,
    client: reqwest::Client,
    auth: JwtAuth,
    admin: String,
    /// One permit per request in flight (`--concurrency`).
    slots: Semaphore,
}

impl Run {
    fn token(&self, member: u64) -> Result<String, Failure> {
        Ok(self
            .auth
            .mint(member, Role::User, Duration::from_secs(3600))
            .map_err(|p| format!("cannot mint a token: {p:?}"))?)
    }

    /// The first `--url`: the operator's requests go there.
    fn base(&self) -> &str {
        self.args.urls.first().map_or(DEFAULT_URL, String::as_str)
    }

    /// The replica a member talks to: round-robin by member id.
    fn url_for(&self, member: u64) -> &str {
        let replicas = self.args.urls.len().max(1) as u64;
        usize::try_from(member % replicas)
            .ok()
            .and_then(|i| self.args.urls.get(i))
            .map_or_else(|| self.base(), String::as_str)
    }

    /// Logs in at `/api/v1/auth/login`; returns the access token.
    async fn log_in(&self, email: &str, password: &str) -> Result<String, Failure> {
        let r = self
            .client
            .post(format!("{}/api/v1/auth/login", self.base()))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await?;
        if r.status() != 200 {
            return Err(format!("login of {email}: {} {}", r.status(), r.text().await?).into());
        }
        let v: Value = r.json().await?;
        v["accessToken"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("login of {email}: no accessToken").into())
    }

    /// Signs `count` buyers up, then logs them in, each phase with at most
    /// `--concurrency` requests in flight; returns their member ids and
    /// access tokens.
    async fn sign_up_and_log_in(
        &self,
        count: u64,
        stamp: u64,
    ) -> Result<(Vec<(u64, String)>, AuthReport), Failure> {
        let emails: Vec<String> = (1..=count)
            .map(|i| format!("buyer-{stamp}-{i}@negowang.test"))
            .collect();
        let url = format!("{}/api/v1/auth/signup", self.base());
        let pb = bar(&self.args, count, "sign-up");
        let started = Instant::now();
        let signed: Vec<Result<(u64, String, Duration), String>> = stream::iter(emails.iter())
            .map(|email| {
                let (url, client, pb) = (&url, &self.client, &pb);
                async move {
                    let t = Instant::now();
                    let r = client
                        .post(url)
                        .json(
                            &json!({"email": email, "password": BUYER_PASSWORD, "name": "구매자"}),
                        )
                        .send()
                        .await
                        .map_err(|e| e.to_string())?;
                    let latency = t.elapsed();
                    pb.inc(1);
                    if r.status() != 201 {
                        return Err(format!("sign-up: {}", r.status()));
                    }
                    let v: Value = r.json().await.map_err(|e| e.to_string())?;
                    let id = v["memberId"].as_u64().ok_or("sign-up: no memberId")?;
                    Ok((id, email.clone(), latency))
                }
            })
            .buffer_unordered(self.args.concurrency)
            .collect()
            .await;
        let signup_secs = started.elapsed().as_secs_f64();
        pb.finish();
        let signed: Vec<(u64, String, Duration)> = signed
            .into_iter()
            .collect::<Result<_, _>>()
            .map_err(|e| format!("not every buyer could sign up: {e}"))?;
        let signup_latency = histogram(signed.iter().map(|(_, _, l)| *l))?;

        let url = format!("{}/api/v1/auth/login", self.base());
        let pb = bar(&self.args, count, "login");
        let started = Instant::now();
        let logged: Vec<Result<(u64, String, Duration), String>> = stream::iter(signed.iter())
            .map(|(id, email, _)| {
                let (url, client, pb) = (&url, &self.client, &pb);
                async move {
                    let t = Instant::now();
                    let r = client
                        .post(url)
                        .json(&json!({"email": email, "password": BUYER_PASSWORD}))
                        .send()
                        .await
                        .map_err(|e| e.to_string())?;
                    let latency = t.elapsed();
                    pb.inc(1);
                    if r.status() != 200 {
                        return Err(format!("login: {}", r.status()));
                    }
                    let v: Value = r.json().await.map_err(|e| e.to_string())?;
                    let token = v["accessToken"].as_str().ok_or("login: no accessToken")?;
                    Ok((*id, token.to_owned(), latency))
                }
            })
            .buffer_unordered(self.args.concurrency)
            .collect()
            .await;
        let login_secs = started.elapsed().as_secs_f64();
        pb.finish();
        let logged: Vec<(u64, String, Duration)> = logged
            .into_iter()
            .collect::<Result<_, _>>()
            .map_err(|e| format!("not every buyer could log in: {e}"))?;
        let login_latency = histogram(logged.iter().map(|(_, _, l)| *l))?;
        let report = AuthReport {
            signups: signed.len(),
            signup_secs,
            signup_latency,
            logins: logged.len(),
            login_secs,
            login_latency,
        };
        Ok((
            logged.into_iter().map(|(id, t, _)| (id, t)).collect(),
            report,
        ))
    }

    async fn create_products(&self, base: u64) -> Result<Vec<u64>, Failure> {
        let mut ids = Vec::new();
        for i in 1..=self.args.products {
            let id = base + i;
            let mut product = json!({"productId": id, "name": format!("네고왕 {i}"), "price": 12_900, "stock": self.args.stock});
            if let Some(limit) = self.args.max_per_member {
                product["maxPerMember"] = json!(limit);
            }
            let r = self
                .client
                .post(format!("{}/api/v1/products", self.base()))
                .bearer_auth(&self.admin)
                .json(&product)
                .send()
                .await?;
            if r.status() != 201 {
                return Err(
                    format!("creating product {id}: {} {}", r.status(), r.text().await?).into(),
                );
            }
            ids.push(id);
        }
        Ok(ids)
    }

    async fn post_all(
        &self,
        products: &[u64],
        members: &[(u64, String)],
        start: Instant,
    ) -> Vec<Post> {
        let body = order_body(products);
        let orders = members.len() as u64 * self.args.orders_per_member;
        let pb = bar(&self.args, orders, "POST");
        let posts: Vec<Vec<Post>> = stream::iter(members.iter())
            .map(|(member, token)| {
                let (body, pb) = (&body, &pb);
                async move {
                    let posts = self.post_orders(*member, token, body, start).await;
                    pb.inc(posts.len() as u64);
                    posts
                }
            })
            .buffer_unordered(self.args.concurrency)
            .collect()
            .await;
        pb.finish();
        posts.into_iter().flatten().collect()
    }

    /// The member's `--orders-per-member` orders, sent at once.
    async fn post_orders(
        &self,
        member: u64,
        token: &str,
        body: &Value,
        start: Instant,
    ) -> Vec<Post> {
        let orders =
            (0..self.args.orders_per_member).map(|_| self.post_order(member, token, body, start));
        join_all(orders).await
    }

    async fn post_order(&self, member: u64, token: &str, body: &Value, start: Instant) -> Post {
        let path = match self.args.design {
            Design::Oms => "/api/v1/orders",
            Design::AsIs => "/baseline/as-is/orders",
        };
        let url = format!("{}{path}", self.url_for(member));
        let _slot = self.slots.acquire().await;
        let sent_at = start.elapsed();
        let t = Instant::now();
        let answer = self
            .client
            .post(url)
            .bearer_auth(token)
            .json(body)
            .send()
            .await;
        let (status, value) = match answer {
            Ok(r) => {
                let status = r.status().as_u16();
                (status, r.json::<Value>().await.ok())
            }
            Err(_) => (0, None),
        };
        let latency = t.elapsed();
        let field = |name: &str| {
            value
                .as_ref()
                .and_then(|v| v[name].as_str())
                .map(str::to_owned)
        };
        let (trace, code) = (field("traceId"), field("code"));
        Post {
            member,
            sent_at,
            latency,
            status,
            code,
            trace,
            final_body: value.filter(is_final),
        }
    }

    /// The trace, when it is final.
    async fn final_trace(&self, member: u64, token: &str, trace: &str) -> Option<Value> {
        let url = format!("{}/api/v1/orders/by-trace/{trace}", self.url_for(member));
        let _slot = self.slots.acquire().await;
        let r = self.client.get(url).bearer_auth(token).send().await.ok()?;
        let v: Value = r.json().await.ok()?;
        is_final(&v).then_some(v)
    }

    /// Polls every accepted trace until it is final.
    async fn poll_all(
        &self,
        posts: &[Post],
        tokens: &HashMap<u64, String>,
        start: Instant,
    ) -> HashMap<String, Final> {
        let (mut finals, mut pending) = answered(posts);
        let pb = bar(&self.args, pending.len() as u64, "final");
        let deadline = Instant::now() + Duration::from_secs(self.args.timeout);
        while !pending.is_empty() && Instant::now() < deadline {
            let round: Vec<Option<(String, Value)>> = stream::iter(pending.iter())
                .map(|(member, trace)| async move {
                    let token = tokens.get(member)?;
                    let body = self.final_trace(*member, token, trace).await?;
                    Some(((*trace).to_owned(), body))
                })
                .buffer_unordered(self.args.concurrency)
                .collect()
                .await;
            let now = start.elapsed();
            for (trace, body) in round.into_iter().flatten() {
                finals.insert(trace, Final { at: now, body });
                pb.inc(1);
            }
            pending.retain(|(_, t)| !finals.contains_key(*t));
            if !pending.is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        pb.finish();
        finals
    }

    /// Every member through the waiting room at once: each enters, waits
    /// for its admission, orders and follows its traces.
    async fn through_the_room(
        &self,
        products: &[u64],
        members: &[(u64, String)],
        clock: &Clock,
    ) -> (Vec<Visit>, Vec<Post>, HashMap<String, Final>) {
        let body = order_body(products);
        let pb = bar(&self.args, members.len() as u64, "members");
        let runs = join_all(members.iter().map(|(member, token)| {
            let (body, pb) = (&body, &pb);
            async move {
                let run = self.visit(*member, token, body, clock).await;
                pb.inc(1);
                run
            }
        }))
        .await;
        pb.finish();
        let mut visits = Vec::with_capacity(runs.len());
        let mut posts = Vec::new();
        let mut finals = HashMap::new();
        for run in runs {
            visits.push(run.visit);
            posts.extend(run.posts);
            finals.extend(run.finals);
        }
        (visits, posts, finals)
    }

    /// Every member through the waiting room's door, nobody ordering yet
    /// (`--admit-first`).
    async fn admit_all(&self, members: &[(u64, String)], clock: &Clock) -> Vec<Visit> {
        let pb = bar(&self.args, members.len() as u64, "admitted");
        let visits = join_all(members.iter().map(|(member, token)| {
            let pb = &pb;
            async move {
                let visit = self.wait_for_admission(*member, token, clock).await;
                pb.inc(1);
                visit
            }
        }))
        .await;
        pb.finish();
        visits
    }

    /// One member: waits for its admission, then orders and follows its
    /// traces until they are final.
    async fn visit(&self, member: u64, token: &str, body: &Value, clock: &Clock) -> MemberRun {
        let visit = self.wait_for_admission(member, token, clock).await;
        if visit.admitted_at.is_none() {
            return MemberRun {
                visit,
                posts: Vec::new(),
                finals: Vec::new(),
            };
        }
        let posts = self.post_orders(member, token, body, clock.start).await;
        let finals = self.follow(member, token, &posts, clock.start).await;
        MemberRun {
            visit,
            posts,
            finals,
        }
    }

    /// Enters the waiting room and waits until admitted.
    async fn wait_for_admission(&self, member: u64, token: &str, clock: &Clock) -> Visit {
        let mut visit = Visit {
            member,
            entry_sent: 0.0,
            arrival: None,
            position: 0,
            estimate: 0.0,
            admitted_at: None,
            retried: 0,
            trouble: None,
        };
        let admitted = match self.enter(member, token, clock, &mut visit).await {
            Ok(Stand::Admitted { expires_at }) => Ok(expires_at),
            Ok(Stand::Waiting { position, estimate }) => {
                visit.position = position;
                visit.estimate = estimate;
                self.await_admission(member, token, clock, &mut visit).await
            }
            Err(e) => Err(e),
        };
        match admitted {
            Ok(expires_at) => {
                visit.admitted_at = Some(clock.at(expires_at) - self.args.admit_ttl_secs as f64);
            }
            Err(e) => visit.trouble = Some(e),
        }
        visit
    }

    /// `POST /api/v1/waiting-room` (idempotent: made again until answered,
    /// `--timeout` at most); the arrival is the time of the answer.
    async fn enter(
        &self,
        member: u64,
        token: &str,
        clock: &Clock,
        visit: &mut Visit,
    ) -> Result<Stand, String> {
        let give_up = Instant::now() + Duration::from_secs(self.args.timeout);
        loop {
            match self.room(Method::POST, member, token, clock).await {
                Ok((sent, stand)) => {
                    visit.entry_sent = sent;
                    visit.arrival = Some(clock.now());
                    return Ok(stand);
                }
                Err(RoomError::Transient(e)) if Instant::now() >= give_up => {
                    return Err(format!("entering: {e}"))
                }
                Err(RoomError::Transient(_)) => visit.retried += 1,
                Err(RoomError::Refused(e)) => return Err(format!("entering: {e}")),
            }
            tokio::time::sleep(ROOM_POLL).await;
        }
    }

    /// Sleeps until about 90 % of the estimate, then asks every 500 ms
    /// until admitted (`--timeout` past the estimate at most).
    async fn await_admission(
        &self,
        member: u64,
        token: &str,
        clock: &Clock,
        visit: &mut Visit,
    ) -> Result<DateTime<Utc>, String> {
        let arrival = visit.arrival.unwrap_or_else(|| clock.now());
        tokio::time::sleep_until(clock.instant(arrival + ESTIMATE_SHARE * visit.estimate)).await;
        let give_up = arrival + visit.estimate + self.args.timeout as f64;
        loop {
            match self.room(Method::GET, member, token, clock).await {
                Ok((_, Stand::Admitted { expires_at })) => return Ok(expires_at),
                Ok((_, Stand::Waiting { .. })) => {}
                Err(RoomError::Transient(_)) => visit.retried += 1,
                Err(RoomError::Refused(e)) => return Err(format!("waiting: {e}")),
            }
            if clock.now() >= give_up {
                return Err(format!(
                    "not admitted {} s after its estimate",
                    self.args.timeout
                ));
            }
            tokio::time::sleep(ROOM_POLL).await;
        }
    }

    /// One waiting-room request: `POST` enters, `GET` asks; the answer
    /// and when the request was sent.
    async fn room(
        &self,
        method: Method,
        member: u64,
        token: &str,
        clock: &Clock,
    ) -> Result<(f64, Stand), RoomError> {
        let url = format!("{}/api/v1/waiting-room", self.url_for(member));
        let _slot = self.slots.acquire().await;
        let sent = clock.now();
        let r = self
            .client
            .request(method, url)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| RoomError::Transient(e.to_string()))?;
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            let stand =
                parse_stand(&v).ok_or_else(|| RoomError::Refused(format!("answered {v}")))?;
            return Ok((sent, stand));
        }
        let what = format!("{status} {}", v["code"].as_str().unwrap_or("?"));
        if status.is_server_error() || status == 429 {
            Err(RoomError::Transient(what))
        } else {
            Err(RoomError::Refused(what))
        }
    }

    /// Polls the member's accepted traces until they are final
    /// (`--timeout` at most).
    async fn follow(
        &self,
        member: u64,
        token: &str,
        posts: &[Post],
        start: Instant,
    ) -> Vec<(String, Final)> {
        let (finals, mut pending) = answered(posts);
        let mut finals: Vec<(String, Final)> = finals.into_iter().collect();
        let deadline = Instant::now() + Duration::from_secs(self.args.timeout);
        while !pending.is_empty() && Instant::now() < deadline {
            let mut still = Vec::new();
            for trace in pending {
                match self.final_trace(member, token, trace.1).await {
                    Some(body) => finals.push((
                        trace.1.to_owned(),
                        Final {
                            at: start.elapsed(),
                            body,
                        },
                    )),
                    None => still.push(trace),
                }
            }
            pending = still;
            if !pending.is_empty() {
                tokio::time::sleep(TRACE_POLL).await;
            }
        }
        finals
    }
}

fn histogram(values: impl Iterator<Item = Duration>) -> Result<Histogram<u64>, Failure> {
    // Microseconds, from 1 µs to an hour, 3 significant digits.
    let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)?;
    for v in values {
        h.saturating_record(u64::try_from(v.as_micros()).unwrap_or(u64::MAX).max(1));
    }
    Ok(h)
}

fn ms(micros: u64) -> String {
    format!("{:.2}", micros as f64 / 1000.0)
}

fn percentiles(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "-".into();
    }
    format!(
        "p50 {} · p90 {} · p99 {} · max {}",
        ms(h.value_at_quantile(0.50)),
        ms(h.value_at_quantile(0.90)),
        ms(h.value_at_quantile(0.99)),
        ms(h.max())
    )
}

// ---- charts ----

/// One line of a chart.
struct Line {
    label: String,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

/// One chart: axes from zero to just past its lines, a caption, a legend.
struct Panel {
    title: String,
    x_desc: &'static str,
    y_desc: &'static str,
    legend: SeriesLabelPosition,
    lines: Vec<Line>,
}

/// Writes the panels, one above the other, as an SVG of `size`.
fn svg(path: &Path, size: (u32, u32), panels: Vec<Panel>) -> Result<(), Failure> {
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE)?;
    let areas = root.split_evenly((panels.len().max(1), 1));
    for (area, panel) in areas.iter().zip(panels) {
        draw(area, panel)?;
    }
    root.present()?;
    Ok(())
}

fn draw(area: &DrawingArea<SVGBackend<'_>, Shift>, panel: Panel) -> Result<(), Failure> {
    let points = || panel.lines.iter().flat_map(|l| l.points.iter());
    let x_max = points().map(|p| p.0).fold(1.0, f64::max) * 1.05;
    let y_max = points().map(|p| p.1).fold(1.0, f64::max) * 1.05;
    let mut c = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    c.configure_mesh()
        .x_desc(panel.x_desc)
        .y_desc(panel.y_desc)
        .draw()?;
    for line in panel.lines {
        let style = line.color.stroke_width(2);
        c.draw_series(LineSeries::new(line.points, style))?
            .label(line.label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    c.configure_series_labels()
        .position(panel.legend)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// The running count of sorted event times, from the origin.
fn cumulative(xs: &[f64]) -> Vec<(f64, f64)> {
    let mut points = vec![(0.0, 0.0)];
    points.extend(xs.iter().enumerate().map(|(i, x)| (*x, (i + 1) as f64)));
    points
}

fn chart(
    path: &Path,
    title: &str,
    posts: &[Post],
    finals: &HashMap<String, Final>,
) -> Result<(), Failure> {
    let mut accepted: Vec<f64> = posts
        .iter()
        .filter(|p| p.trace.is_some())
        .map(|p| (p.sent_at + p.latency).as_secs_f64() * 1000.0)
        .collect();
    let mut finished: Vec<f64> = finals
        .values()
        .map(|f| f.at.as_secs_f64() * 1000.0)
        .collect();
    accepted.sort_by(f64::total_cmp);
    finished.sort_by(f64::total_cmp);
    let panel = Panel {
        title: title.to_owned(),
        x_desc: "ms since the first POST",
        y_desc: "orders",
        legend: SeriesLabelPosition::LowerRight,
        lines: vec![
            Line {
                label: "accepted (POST answered)".into(),
                color: BLUE,
                points: cumulative(&accepted),
            },
            Line {
                label: "final (COMPLETED or FAILED)".into(),
                color: RED,
                points: cumulative(&finished),
            },
        ],
    };
    svg(path, (960, 540), vec![panel])
}

/// The waiting room over time: the line (entered − admitted) and the
/// admissions per second, against the server's rate.
fn room_chart(path: &Path, title: &str, visits: &[Visit], rate: u64) -> Result<(), Failure> {
    // A member admitted at once counts as entered when admitted.
    let mut entered: Vec<f64> = visits
        .iter()
        .filter_map(|v| Some(v.arrival?.min(v.admitted_at.unwrap_or(f64::INFINITY))))
        .collect();
    let mut admitted: Vec<f64> = visits.iter().filter_map(|v| v.admitted_at).collect();
    entered.sort_by(f64::total_cmp);
    admitted.sort_by(f64::total_cmp);
    let end = entered
        .iter()
        .chain(admitted.iter())
        .copied()
        .fold(1.0, f64::max);
    let steps = 600;
    let line: Vec<(f64, f64)> = (0..=steps)
        .map(|i| {
            let t = end * f64::from(i) / f64::from(steps);
            let inside = entered.partition_point(|x| *x <= t);
            let out = admitted.partition_point(|x| *x <= t);
            (t, inside.saturating_sub(out) as f64)
        })
        .collect();
    let mut per_second: Vec<(f64, f64)> = Vec::new();
    for (second, count) in per_second_counts(&admitted, 0.0).iter().enumerate() {
        let (from, to) = (second as f64, second as f64 + 1.0);
        per_second.extend([(from, *count as f64), (to, *count as f64)]);
    }
    let queue = Panel {
        title: title.to_owned(),
        x_desc: "s since the first entry",
        y_desc: "members waiting",
        legend: SeriesLabelPosition::UpperRight,
        lines: vec![Line {
            label: "in line (entered − admitted)".into(),
            color: BLUE,
            points: line,
        }],
    };
    let admissions = Panel {
        title: "admissions per second".into(),
        x_desc: "s since the first entry",
        y_desc: "admitted / s",
        legend: SeriesLabelPosition::LowerRight,
        lines: vec![
            Line {
                label: format!("server rate ({rate} /s)"),
                color: GREEN,
                points: vec![(0.0, rate as f64), (end, rate as f64)],
            },
            Line {
                label: "admitted (expiresAt − TTL)".into(),
                color: RED,
                points: per_second,
            },
        ],
    };
    svg(path, (960, 900), vec![queue, admissions])
}

/// How many of the times fall in each second from `origin`.
fn per_second_counts(times: &[f64], origin: f64) -> Vec<usize> {
    let mut counts: Vec<usize> = Vec::new();
    for t in times {
        let second = (t - origin).max(0.0).floor() as usize;
        if counts.len() <= second {
            counts.resize(second + 1, 0);
        }
        if let Some(c) = counts.get_mut(second) {
            *c += 1;
        }
    }
    counts
}

// ---- the orders ----

/// The orders of the run, counted for the report and the invariants.
struct Tally<'a> {
    accepted: Vec<&'a Post>,
    finals: usize,
    completed: Vec<&'a Value>,
    reasons: HashMap<String, usize>,
    /// Who sent each accepted trace.
    owners: HashMap<&'a str, u64>,
    /// `409 LIMIT_EXCEEDED` answers (with `--max-per-member`).
    over_limit: usize,
    /// `429 NOT_ADMITTED` answers (with `--waiting-room`), and how many
    /// members got one.
    not_admitted: usize,
    not_admitted_members: usize,
    /// The answers the scenario does not expect: neither accepted nor one
    /// of the refusals above.
    unexpected: Vec<&'a Post>,
    /// Units of each product the members asked for within their limit: per
    /// member, its orders accepted or refused over the limit, at most
    /// `maxPerMember`.
    demand: u64,
    /// COMPLETED orders per member (each of one unit of every product).
    bought: HashMap<u64, u64>,
}

fn tally<'a>(args: &Args, posts: &'a [Post], finals: &'a HashMap<String, Final>) -> Tally<'a> {
    let accepted: Vec<&Post> = posts.iter().filter(|p| p.trace.is_some()).collect();
    let completed: Vec<&Value> = finals
        .values()
        .map(|f| &f.body)
        .filter(|b| b["status"] == "COMPLETED")
        .collect();
    let mut reasons: HashMap<String, usize> = HashMap::new();
    for f in finals.values().filter(|f| f.body["status"] == "FAILED") {
        *reasons
            .entry(f.body["reason"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
    }
    let owners: HashMap<&str, u64> = accepted
        .iter()
        .filter_map(|p| Some((p.trace.as_deref()?, p.member)))
        .collect();
    let over_limit = |p: &Post| args.max_per_member.is_some() && p.refused(409, "LIMIT_EXCEEDED");
    let not_admitted = |p: &Post| args.waiting_room && p.refused(429, "NOT_ADMITTED");
    let mut tried: HashMap<u64, u64> = HashMap::new();
    for p in posts.iter().filter(|p| p.trace.is_some() || over_limit(p)) {
        *tried.entry(p.member).or_default() += 1;
    }
    let cap = args.max_per_member.unwrap_or(u64::MAX);
    let mut bought: HashMap<u64, u64> = HashMap::new();
    for (trace, f) in finals {
        if f.body["status"] != "COMPLETED" {
            continue;
        }
        if let Some(member) = owners.get(trace.as_str()) {
            *bought.entry(*member).or_default() += 1;
        }
    }
    let refused_members: HashSet<u64> = posts
        .iter()
        .filter(|p| not_admitted(p))
        .map(|p| p.member)
        .collect();
    Tally {
        finals: finals.len(),
        completed,
        reasons,
        owners,
        over_limit: posts.iter().filter(|p| over_limit(p)).count(),
        not_admitted: posts.iter().filter(|p| not_admitted(p)).count(),
        not_admitted_members: refused_members.len(),
        unexpected: posts
            .iter()
            .filter(|p| p.trace.is_none() && !over_limit(p) && !not_admitted(p))
            .collect(),
        demand: tried.values().map(|n| (*n).min(cap)).sum(),
        bought,
        accepted,
    }
}

/// What sold = COMPLETED is measured against.
fn sold_target(args: &Args, t: &Tally<'_>) -> &'static str {
    if t.demand == args.members {
        "min(members, stock)"
    } else {
        "min(demand, stock)"
    }
}

/// The invariants the answers and the final traces show.
fn order_checks(args: &Args, t: &Tally<'_>) -> Vec<String> {
    let mut broken = Vec::new();
    if !t.unexpected.is_empty() {
        let mut statuses: HashMap<u16, usize> = HashMap::new();
        for p in &t.unexpected {
            *statuses.entry(p.status).or_default() += 1;
        }
        broken.push(format!(
            "{} POSTs were not accepted (status: count {statuses:?}; 0 = no answer)",
            t.unexpected.len()
        ));
    }
    let processing = t.accepted.len().saturating_sub(t.finals);
    if processing > 0 {
        broken.push(format!("{processing} traces never became final"));
    }
    let expected_sold = t.demand.min(u64::try_from(args.stock).unwrap_or(0)) as usize;
    if t.completed.len() != expected_sold && t.unexpected.is_empty() {
        let of = if t.demand == args.members {
            "min of members and stock".to_owned()
        } else {
            format!("min of the members' demand {} and stock", t.demand)
        };
        broken.push(format!(
            "{} COMPLETED, expected {expected_sold} ({of})",
            t.completed.len()
        ));
    }
    let order_ids: HashSet<u64> = t
        .completed
        .iter()
        .filter_map(|b| b["orderId"].as_u64())
        .collect();
    if order_ids.len() != t.completed.len() {
        broken.push(format!(
            "{} distinct order ids for {} COMPLETED traces",
            order_ids.len(),
            t.completed.len()
        ));
    }
    let expected =
        |r: &str| r == "OUT_OF_STOCK" || (args.max_per_member.is_some() && r == "LIMIT_EXCEEDED");
    if t.reasons.keys().any(|r| !expected(r)) {
        broken.push(format!("unexpected failure reasons {:?}", t.reasons));
    }
    broken
}

/// No member bought more than `maxPerMember` of any product.
fn limit_check(args: &Args, t: &Tally<'_>) -> Option<String> {
    let limit = args.max_per_member?;
    let over: Vec<(&u64, &u64)> = t.bought.iter().filter(|(_, n)| **n > limit).collect();
    let (member, units) = over.first()?;
    Some(format!(
        "{} members bought more than maxPerMember {limit}, e.g. member {member}: {units} units of each product",
        over.len()
    ))
}

/// Final stock = initial − sold, never negative, for every product.
async fn stock_checks(run: &Run, products: &[u64], sold: usize) -> Result<Vec<String>, Failure> {
    let mut broken = Vec::new();
    for id in products {
        let p: Value = run
            .client
            .get(format!("{}/api/v1/products/{id}", run.base()))
            .bearer_auth(&run.admin)
            .send()
            .await?
            .json()
            .await?;
        let left = p["stock"].as_i64().unwrap_or(i64::MIN);
        let want = run.args.stock - sold as i64;
        if left != want || left < 0 {
            broken.push(format!("product {id}: stock {left}, expected {want}"));
        }
    }
    Ok(broken)
}

/// Members see their own orders only: one for each of their COMPLETED
/// traces, none otherwise.
async fn ownership_check(
    run: &Run,
    t: &Tally<'_>,
    finals: &HashMap<String, Final>,
    tokens: &HashMap<u64, String>,
) -> Option<String> {
    let mut want: HashMap<u64, Vec<&Value>> = HashMap::new();
    for (trace, f) in finals {
        let member = t.owners.get(trace.as_str()).copied().unwrap_or(0);
        let ids = want.entry(member).or_default();
        if f.body["status"] == "COMPLETED" {
            ids.push(&f.body["orderId"]);
        }
    }
    let checks: Vec<Option<String>> = stream::iter(want.iter())
        .map(|(member, ids)| {
            let token = tokens.get(member).cloned().unwrap_or_default();
            let client = &run.client;
            let url = format!("{}/api/v1/orders", run.url_for(*member));
            async move {
                let list: Value = match client.get(url).bearer_auth(token).send().await {
                    Ok(r) => r.json().await.unwrap_or(Value::Null),
                    Err(e) => return Some(format!("member {member}: {e}")),
                };
                let list = list.as_array().cloned().unwrap_or_default();
                let own = list.iter().all(|o| o["memberId"] == *member);
                let matches = ids
                    .iter()
                    .all(|id| list.iter().any(|o| o["orderId"] == **id));
                (list.len() != ids.len() || !own || !matches)
                    .then(|| format!("member {member} sees {} orders", list.len()))
            }
        })
        .buffer_unordered(run.args.concurrency)
        .collect()
        .await;
    let wrong: Vec<String> = checks.into_iter().flatten().collect();
    let first = wrong.first()?;
    Some(format!(
        "{} members see wrong orders, e.g. {first}",
        wrong.len()
    ))
}

fn print_orders(
    args: &Args,
    posts: &[Post],
    finals: &HashMap<String, Final>,
    t: &Tally<'_>,
    auth_report: Option<&AuthReport>,
) -> Result<(), Failure> {
    let intake_secs = posts
        .iter()
        .map(|p| p.sent_at + p.latency)
        .max()
        .unwrap_or_default()
        .as_secs_f64();
    let all_final = finals.values().map(|f| f.at).max().unwrap_or_default();
    let post_latency = histogram(posts.iter().map(|p| p.latency))?;
    let to_final = histogram(t.accepted.iter().filter_map(|p| {
        let f = finals.get(p.trace.as_deref()?)?;
        Some(f.at.saturating_sub(p.sent_at + p.latency))
    }))?;
    let failed: usize = t.reasons.values().sum();
    let design = args.label.clone().unwrap_or_else(|| {
        match args.design {
            Design::Oms => "oms (202 + queue + batched consumer)",
            Design::AsIs => "as-is (synchronous, SELECT … FOR UPDATE)",
        }
        .to_owned()
    });
    println!();
    println!("| 네고왕 | {design} |");
    println!("|---|---|");
    println!(
        "| scenario | {} members × {} products × {} stock, concurrency {}{} |",
        args.members,
        args.products,
        args.stock,
        args.concurrency,
        scenario_options(args)
    );
    println!(
        "| accepted | {} of {} in {:.3} s → **{:.0} /s** |",
        t.accepted.len(),
        posts.len(),
        intake_secs,
        t.accepted.len() as f64 / intake_secs.max(1e-9)
    );
    println!("| POST latency (ms) | {} |", percentiles(&post_latency));
    if args.cold {
        print_first_wave(args, posts)?;
    }
    if let Some(a) = auth_report {
        println!(
            "| sign-ups (Argon2id hash) | {} in {:.3} s → **{:.0} /s**; latency (ms) {} |",
            a.signups,
            a.signup_secs,
            a.signups as f64 / a.signup_secs.max(1e-9),
            percentiles(&a.signup_latency)
        );
        println!(
            "| logins (Argon2id verify) | {} in {:.3} s → **{:.0} /s**; latency (ms) {} |",
            a.logins,
            a.login_secs,
            a.logins as f64 / a.login_secs.max(1e-9),
            percentiles(&a.login_latency)
        );
    }
    println!(
        "| all final after first POST | **{:.3} s** ({:.0} orders/s) |",
        all_final.as_secs_f64(),
        finals.len() as f64 / all_final.as_secs_f64().max(1e-9)
    );
    println!("| answer → final (ms) | {} |", percentiles(&to_final));
    println!(
        "| COMPLETED / FAILED | {} / {failed} {:?} |",
        t.completed.len(),
        t.reasons
    );
    print_limits(args, t);
    Ok(())
}

/// The POST latencies of the first wave (the first `--concurrency` POSTs
/// sent) against those of the rest, and their p99 ratio.
fn print_first_wave(args: &Args, posts: &[Post]) -> Result<(), Failure> {
    let mut by_send: Vec<&Post> = posts.iter().collect();
    by_send.sort_by_key(|p| p.sent_at);
    let wave = args.concurrency.min(by_send.len());
    let (first, rest) = by_send.split_at(wave);
    let first = histogram(first.iter().map(|p| p.latency))?;
    println!(
        "| first wave: first {wave} POSTs (ms) | {} |",
        percentiles(&first)
    );
    if rest.is_empty() {
        return Ok(());
    }
    let rest = histogram(rest.iter().map(|p| p.latency))?;
    println!(
        "| after the first wave: {} POSTs (ms) | {} |",
        posts.len() - wave,
        percentiles(&rest)
    );
    println!(
        "| first-wave p99 / later p99 | **{:.2}** |",
        first.value_at_quantile(0.99) as f64 / rest.value_at_quantile(0.99).max(1) as f64
    );
    Ok(())
}

/// The options beyond the 네고왕 shape, for the scenario line.
fn scenario_options(args: &Args) -> String {
    let mut options = String::new();
    if args.orders_per_member > 1 {
        options.push_str(&format!(", {} orders per member", args.orders_per_member));
    }
    if let Some(limit) = args.max_per_member {
        options.push_str(&format!(", maxPerMember {limit}"));
    }
    if args.waiting_room {
        options.push_str(", waiting room");
    }
    if args.urls.len() > 1 {
        options.push_str(&format!(", {} API replicas", args.urls.len()));
    }
    if args.cold {
        options.push_str(", cold start");
    }
    options
}

fn print_limits(args: &Args, t: &Tally<'_>) {
    if args.max_per_member.is_some() || args.orders_per_member > 1 || args.waiting_room {
        println!(
            "| refused at intake | 409 LIMIT_EXCEEDED {} · 429 NOT_ADMITTED {} ({} members) |",
            t.over_limit, t.not_admitted, t.not_admitted_members
        );
    }
    if let Some(limit) = args.max_per_member {
        let most = t.bought.values().copied().max().unwrap_or(0);
        let failed = t.reasons.get("LIMIT_EXCEEDED").copied().unwrap_or(0);
        println!(
            "| purchase limit | maxPerMember {limit}: at most **{most}** units of each product COMPLETED by one member; LIMIT_EXCEEDED {} at intake (409) + {failed} FAILED by the consumer |",
            t.over_limit
        );
    }
}

// ---- the waiting room ----

/// An admitted member, on the run's clock.
struct Admitted {
    sent: f64,
    arrival: f64,
    position: u64,
    estimate: f64,
    at: f64,
}

/// The waiting room's figures.
struct RoomFigures {
    entered: usize,
    admitted: usize,
    retried: u64,
    /// Members never admitted, and why.
    never: Vec<(u64, String)>,
    /// Admissions per second from the first to the last one, over `span`
    /// seconds, and the most in one second.
    rate: f64,
    span: f64,
    peak: usize,
    /// Spearman's ρ between arrival and admission order.
    rho: f64,
    /// The most places one member moved up between arrival and admission,
    /// and how uncertain an arrival is: the most members admitted while
    /// one entry request was under way.
    overtaking: usize,
    uncertainty: usize,
    /// Actual wait over the estimate (at least 1 s).
    ratio_max: f64,
    ratio_p99: f64,
    over_twice: usize,
}

fn room_figures(visits: &[Visit]) -> RoomFigures {
    let admitted: Vec<Admitted> = visits
        .iter()
        .filter_map(|v| {
            Some(Admitted {
                sent: v.entry_sent,
                arrival: v.arrival?,
                position: v.position,
                estimate: v.estimate,
                at: v.admitted_at?,
            })
        })
        .collect();
    let mut times: Vec<f64> = admitted.iter().map(|a| a.at).collect();
    times.sort_by(f64::total_cmp);
    let (rate, span, peak) = admission_rate(&times);
    let (rho, overtaking) = fairness(&admitted, &times);
    let uncertainty = admitted
        .iter()
        .filter(|a| a.position > 0)
        .map(|a| admitted_between(&times, a.sent, a.arrival))
        .max()
        .unwrap_or(0);
    let (ratio_max, ratio_p99, over_twice) = wait_ratios(&admitted);
    RoomFigures {
        entered: visits.iter().filter(|v| v.arrival.is_some()).count(),
        admitted: admitted.len(),
        retried: visits.iter().map(|v| v.retried).sum(),
        never: visits
            .iter()
            .filter_map(|v| Some((v.member, v.trouble.clone()?)))
            .collect(),
        rate,
        span,
        peak,
        rho,
        overtaking,
        uncertainty,
        ratio_max,
        ratio_p99,
        over_twice,
    }
}

/// Admissions per second from the first to the last (sorted) admission,
/// that span, and the most admissions in one second.
fn admission_rate(times: &[f64]) -> (f64, f64, usize) {
    let (Some(first), Some(last)) = (times.first(), times.last()) else {
        return (0.0, 0.0, 0);
    };
    let span = last - first;
    let n = times.len() as f64;
    let rate = if span > 0.0 { n / span } else { n };
    let peak = per_second_counts(times, *first)
        .into_iter()
        .max()
        .unwrap_or(0);
    (rate, span, peak)
}

/// Spearman's ρ between arrival and admission order, and the largest
/// overtaking (arrival rank − admission rank). A member's arrival is its
/// place in the whole line: those admitted before its entry was answered
/// plus its position then (ties: the earlier answer first), so that the
/// positions answered while the line moves compare; `admissions` are the
/// sorted admission times.
fn fairness(admitted: &[Admitted], admissions: &[f64]) -> (f64, usize) {
    let place = |a: &Admitted| {
        let (since, position) = if a.position == 0 {
            (a.at, 1)
        } else {
            (a.arrival, a.position)
        };
        admitted_between(admissions, f64::NEG_INFINITY, since) as u64 + position
    };
    let mut arrivals: Vec<(u64, f64, f64)> = admitted
        .iter()
        .map(|a| (place(a), a.arrival, a.at))
        .collect();
    arrivals.sort_by(|x, y| x.0.cmp(&y.0).then(x.1.total_cmp(&y.1)));
    // (admitted at, arrival rank), in admission order; ties keep arrival order.
    let mut order: Vec<(f64, usize)> = arrivals
        .iter()
        .enumerate()
        .map(|(rank, a)| (a.2, rank))
        .collect();
    order.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
    let mut squares = 0.0;
    let mut overtaking = 0;
    for (admission_rank, (_, arrival_rank)) in order.iter().enumerate() {
        let d = *arrival_rank as f64 - admission_rank as f64;
        squares += d * d;
        overtaking = overtaking.max(arrival_rank.saturating_sub(admission_rank));
    }
    let n = order.len() as f64;
    let rho = if order.len() < 2 {
        1.0
    } else {
        1.0 - 6.0 * squares / (n * (n * n - 1.0))
    };
    (rho, overtaking)
}

/// How many of the sorted admission times fall in `from..to`.
fn admitted_between(admissions: &[f64], from: f64, to: f64) -> usize {
    let before = |t: f64| admissions.partition_point(|x| *x < t);
    before(to).saturating_sub(before(from))
}

/// Actual wait (admission − arrival) over the estimate at entry (at least
/// 1 s): the max, the p99, and how many waited over twice their estimate.
fn wait_ratios(admitted: &[Admitted]) -> (f64, f64, usize) {
    let mut ratios: Vec<f64> = admitted
        .iter()
        .map(|a| (a.at - a.arrival).max(0.0) / a.estimate.max(1.0))
        .collect();
    ratios.sort_by(f64::total_cmp);
    let max = ratios.last().copied().unwrap_or(0.0);
    let p99 = ((0.99 * ratios.len() as f64).ceil() as usize)
        .checked_sub(1)
        .and_then(|i| ratios.get(i))
        .copied()
        .unwrap_or(0.0);
    (max, p99, ratios.iter().filter(|r| **r > 2.0).count())
}

/// Every member who entered was admitted.
fn room_check(room: &RoomFigures) -> Option<String> {
    let (member, why) = room.never.first()?;
    Some(format!(
        "{} members were never admitted, e.g. member {member}: {why}",
        room.never.len()
    ))
}

fn print_room(args: &Args, room: &RoomFigures) {
    let mut notes = String::new();
    if let Some((member, why)) = room.never.first() {
        notes.push_str(&format!(
            "; **{} never admitted**, e.g. member {member}: {why}",
            room.never.len()
        ));
    }
    if room.retried > 0 {
        notes.push_str(&format!(
            "; {} waiting-room requests failed and were made again",
            room.retried
        ));
    }
    println!(
        "| waiting room | {} of {} entered, {} admitted{notes} |",
        room.entered, args.members, room.admitted
    );
    println!(
        "| admissions | **{:.0} /s** from the first to the last ({:.3} s), at most {} in one second; server rate {} /s |",
        room.rate, room.span, room.peak, args.admit_per_sec
    );
    println!(
        "| fairness | Spearman ρ **{:.4}** between arrival (place in line at entry + those admitted before) and admission (expiresAt − TTL) order; largest overtaking {} places (an arrival is uncertain by up to {} places: admissions while its entry was answered) |",
        room.rho, room.overtaking, room.uncertainty
    );
    println!(
        "| wait / estimate | max {:.2} · p99 {:.2}; {} of {} waited over 2× their estimate (estimates under 1 s count as 1 s) |",
        room.ratio_max, room.ratio_p99, room.over_twice, room.admitted
    );
}

async fn run(args: Args) -> Result<bool, Failure> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency.max(1))
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()?;
    let auth = JwtAuth::new(args.secret.as_bytes());
    let admin = auth
        .mint(1, Role::Admin, Duration::from_secs(3600))
        .map_err(|p| format!("cannot mint a token: {p:?}"))?;
    let slots = Semaphore::new(args.concurrency.clamp(1, Semaphore::MAX_PERMITS));
    let mut run = Run {
        args,
        client,
        auth,
        admin,
        slots,
    };
    if let (Some(email), Some(password)) = (&run.args.admin_email, &run.args.admin_password) {
        run.admin = run.log_in(email, password).await?;
    }
    let args = &run.args;
    // Ids of their own for every run, so runs against one database never mix.
    let stamp = unix_millis() % 100_000_000_000;
    let products = run.create_products(stamp * 100).await?;
    let (members, auth_report): (Vec<(u64, String)>, Option<AuthReport>) = match args.auth {
        AuthMode::Mint => {
            let member_base = (stamp % 1_000_000_000) * 100_000;
            let minted = (1..=args.members)
                .map(|i| run.token(member_base + i).map(|t| (member_base + i, t)))
                .collect::<Result<_, _>>()?;
            (minted, None)
        }
        AuthMode::Login => {
            let (members, report) = run.sign_up_and_log_in(args.members, stamp).await?;
            (members, Some(report))
        }
    };
    let tokens: HashMap<u64, String> = members.iter().cloned().collect();

    let clock = Clock::start();
    let (posts, finals, visits) = if args.admit_first {
        let visits = run.admit_all(&members, &clock).await;
        let admitted: Vec<(u64, String)> = members
            .iter()
            .zip(&visits)
            .filter(|(_, v)| v.admitted_at.is_some())
            .map(|(m, _)| m.clone())
            .collect();
        let orders = Clock::start();
        let posts = run.post_all(&products, &admitted, orders.start).await;
        let finals = run.poll_all(&posts, &tokens, orders.start).await;
        (posts, finals, visits)
    } else if args.waiting_room {
        let (visits, posts, finals) = run.through_the_room(&products, &members, &clock).await;
        (posts, finals, visits)
    } else {
        let posts = run.post_all(&products, &members, clock.start).await;
        let finals = run.poll_all(&posts, &tokens, clock.start).await;
        (posts, finals, Vec::new())
    };

    let t = tally(args, &posts, &finals);
    let room = args.waiting_room.then(|| room_figures(&visits));
    let mut broken = order_checks(args, &t);
    broken.extend(stock_checks(&run, &products, t.completed.len()).await?);
    broken.extend(ownership_check(&run, &t, &finals, &tokens).await);
    broken.extend(limit_check(args, &t));
    broken.extend(room.as_ref().and_then(room_check));

    print_orders(args, &posts, &finals, &t, auth_report.as_ref())?;
    if let Some(room) = &room {
        print_room(args, room);
    }
    if broken.is_empty() {
        let mut held = format!("OK: sold = COMPLETED = {}, stock = initial − sold ≥ 0, one order per COMPLETED trace, none PROCESSING, members see only their own orders", sold_target(args, &t));
        if args.max_per_member.is_some() {
            held.push_str(", no member bought more than maxPerMember");
        }
        if args.waiting_room {
            held.push_str(", every member admitted");
        }
        println!("| invariants | {held} |");
    } else {
        println!("| invariants | **BROKEN**: {} |", broken.join("; "));
    }
    if let Some(path) = &args.chart {
        let title = format!(
            "네고왕 — {} members, {} × {} stock ({})",
            args.members,
            args.products,
            args.stock,
            match args.design {
                Design::Oms => "oms",
                Design::AsIs => "as-is",
            }
        );
        chart(path, &title, &posts, &finals)?;
        println!("\nchart: {}", path.display());
    }
    if let Some(path) = &args.room_chart {
        let title = format!(
            "네고왕 — waiting room, {} members (server rate {} /s)",
            args.members, args.admit_per_sec
        );
        room_chart(path, &title, &visits, args.admit_per_sec)?;
        println!("room chart: {}", path.display());
    }
    Ok(broken.is_empty())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("negowang: {e}");
            ExitCode::from(2)
        }
    }
}
