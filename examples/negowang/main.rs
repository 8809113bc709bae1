//! The 네고왕 load tool: runs the flash-sale scenario against a running API
//! and reports throughput, latencies, time to all-final and the invariants.
//!
//! ```text
//! cargo run --release --example negowang -- --url http://127.0.0.1:8080 \
//!     --members 1000 --products 3 --stock 500 --concurrency 64 --chart negowang.svg
//! ```
//!
//! Every member orders one unit of every product, once, with at most
//! `--concurrency` requests in flight.
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

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, ValueEnum};
use futures::{stream, StreamExt};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use oms::config::DEV_JWT_SECRET;
use oms::domain::Role;
use oms::http::JwtAuth;
use serde_json::{json, Value};

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

/// Runs the 네고왕 flash-sale scenario against a running oms API.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Base URL of the API.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Buyers; each orders one unit of every product, once.
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
    /// Gives up waiting for final traces after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
    /// A name for the run in the report (default: the design).
    #[arg(long)]
    label: Option<String>,
}

/// What one POST did.
struct Post {
    member: u64,
    /// Since the first POST.
    sent_at: Duration,
    latency: Duration,
    status: u16,
    trace: Option<String>,
    /// The final trace, when the answer was already final (as-is).
    final_body: Option<Value>,
}

/// A final trace and when it was seen (since the first POST).
struct Final {
    at: Duration,
    body: Value,
}

type Failure = Box<dyn std::error::Error + Send + Sync>;

/// The password of every buyer the tool signs up.
const BUYER_PASSWORD: &str = "negowang buyer password";

/// How the buyers signed up and logged in (`--auth login`).
struct AuthReport {
    signups: usize,
    signup_secs: f64,
    signup_latency: Histogram<u64>,
    logins: usize,
    login_secs: f64,
    login_latency: Histogram<u64>,
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

struct Run {
    args: Args,
    client: reqwest::Client,
    auth: JwtAuth,
    admin: String,
}

impl Run {
    fn token(&self, member: u64) -> Result<String, Failure> {
        Ok(self
            .auth
            .mint(member, Role::User, Duration::from_secs(3600))
            .map_err(|p| format!("cannot mint a token: {p:?}"))?)
    }

    /// Logs in at `/api/v1/auth/login`; returns the access token.
    async fn log_in(&self, email: &str, password: &str) -> Result<String, Failure> {
        let r = self
            .client
            .post(format!("{}/api/v1/auth/login", self.args.url))
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
        let url = format!("{}/api/v1/auth/signup", self.args.url);
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

        let url = format!("{}/api/v1/auth/login", self.args.url);
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
            let r = self
                .client
                .post(format!("{}/api/v1/products", self.args.url))
                .bearer_auth(&self.admin)
                .json(&json!({"productId": id, "name": format!("네고왕 {i}"), "price": 12_900, "stock": self.args.stock}))
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
        let body = json!({
            "items": products.iter().map(|p| json!({"productId": p, "quantity": 1})).collect::<Vec<_>>(),
            "receiverInfo": {"name": "Kim", "phone": "010-0000-0000", "address": "Seoul"},
        });
        let path = match self.args.design {
            Design::Oms => "/api/v1/orders",
            Design::AsIs => "/baseline/as-is/orders",
        };
        let url = format!("{}{path}", self.args.url);
        let pb = bar(&self.args, members.len() as u64, "POST");
        let posts = stream::iter(members.iter())
            .map(|(member, token)| {
                let (url, body, client, pb) = (&url, &body, &self.client, &pb);
                async move {
                    let sent_at = start.elapsed();
                    let t = Instant::now();
                    let answer = client.post(url).bearer_auth(token).json(body).send().await;
                    let (status, value) = match answer {
                        Ok(r) => {
                            let status = r.status().as_u16();
                            (status, r.json::<Value>().await.ok())
                        }
                        Err(_) => (0, None),
                    };
                    let latency = t.elapsed();
                    pb.inc(1);
                    let trace = value
                        .as_ref()
                        .and_then(|v| v["traceId"].as_str())
                        .map(str::to_owned);
                    let final_body =
                        value.filter(|v| v["status"] == "COMPLETED" || v["status"] == "FAILED");
                    Post {
                        member: *member,
                        sent_at,
                        latency,
                        status,
                        trace,
                        final_body,
                    }
                }
            })
            .buffer_unordered(self.args.concurrency)
            .collect()
            .await;
        pb.finish();
        posts
    }

    /// Polls every accepted trace until it is final.
    async fn poll_all(
        &self,
        posts: &[Post],
        tokens: &HashMap<u64, String>,
        start: Instant,
    ) -> HashMap<String, Final> {
        let mut finals = HashMap::new();
        let mut pending: Vec<(u64, &str)> = Vec::new();
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
        let pb = bar(&self.args, pending.len() as u64, "final");
        let deadline = Instant::now() + Duration::from_secs(self.args.timeout);
        while !pending.is_empty() && Instant::now() < deadline {
            let round: Vec<Option<(String, Value)>> = stream::iter(pending.iter())
                .map(|(member, trace)| async move {
                    let token = tokens.get(member)?;
                    let r = self
                        .client
                        .get(format!("{}/api/v1/orders/by-trace/{trace}", self.args.url))
                        .bearer_auth(token)
                        .send()
                        .await
                        .ok()?;
                    let v: Value = r.json().await.ok()?;
                    (v["status"] == "COMPLETED" || v["status"] == "FAILED")
                        .then(|| ((*trace).to_owned(), v))
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

fn chart(
    path: &PathBuf,
    title: &str,
    posts: &[Post],
    finals: &HashMap<String, Final>,
) -> Result<(), Failure> {
    use plotters::prelude::*;
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
    let x_max = accepted
        .iter()
        .chain(finished.iter())
        .copied()
        .fold(1.0, f64::max)
        * 1.05;
    let y_max = accepted.len().max(finished.len()).max(1) as f64 * 1.05;
    let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut c = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    c.configure_mesh()
        .x_desc("ms since the first POST")
        .y_desc("orders")
        .draw()?;
    let cumulative = |xs: &[f64]| -> Vec<(f64, f64)> {
        let mut points = vec![(0.0, 0.0)];
        points.extend(xs.iter().enumerate().map(|(i, x)| (*x, (i + 1) as f64)));
        points
    };
    c.draw_series(LineSeries::new(cumulative(&accepted), BLUE.stroke_width(2)))?
        .label("accepted (POST answered)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    c.draw_series(LineSeries::new(cumulative(&finished), RED.stroke_width(2)))?
        .label("final (COMPLETED or FAILED)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
    c.configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
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
    let mut run = Run {
        args,
        client,
        auth,
        admin,
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

    let start = Instant::now();
    let posts = run.post_all(&products, &members, start).await;
    let finals = run.poll_all(&posts, &tokens, start).await;

    // ---- the report ----
    let accepted: Vec<&Post> = posts.iter().filter(|p| p.trace.is_some()).collect();
    let rejected = posts.len() - accepted.len();
    let intake_secs = posts
        .iter()
        .map(|p| p.sent_at + p.latency)
        .max()
        .unwrap_or_default()
        .as_secs_f64();
    let all_final = finals.values().map(|f| f.at).max().unwrap_or_default();
    let post_latency = histogram(posts.iter().map(|p| p.latency))?;
    let to_final = histogram(accepted.iter().filter_map(|p| {
        let f = finals.get(p.trace.as_deref()?)?;
        Some(f.at.saturating_sub(p.sent_at + p.latency))
    }))?;
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
    let failed: usize = reasons.values().sum();

    // ---- invariants ----
    let mut broken: Vec<String> = Vec::new();
    if rejected > 0 {
        let mut statuses: HashMap<u16, usize> = HashMap::new();
        for p in posts.iter().filter(|p| p.trace.is_none()) {
            *statuses.entry(p.status).or_default() += 1;
        }
        broken.push(format!(
            "{rejected} POSTs were not accepted (status: count {statuses:?}; 0 = no answer)"
        ));
    }
    let processing = accepted.len().saturating_sub(finals.len());
    if processing > 0 {
        broken.push(format!("{processing} traces never became final"));
    }
    let expected_sold = args.members.min(u64::try_from(args.stock).unwrap_or(0)) as usize;
    if completed.len() != expected_sold && rejected == 0 {
        broken.push(format!(
            "{} COMPLETED, expected {expected_sold} (min of members and stock)",
            completed.len()
        ));
    }
    let order_ids: HashSet<u64> = completed
        .iter()
        .filter_map(|b| b["orderId"].as_u64())
        .collect();
    if order_ids.len() != completed.len() {
        broken.push(format!(
            "{} distinct order ids for {} COMPLETED traces",
            order_ids.len(),
            completed.len()
        ));
    }
    if reasons.keys().any(|r| r != "OUT_OF_STOCK") {
        broken.push(format!("unexpected failure reasons {reasons:?}"));
    }
    for id in &products {
        let p: Value = run
            .client
            .get(format!("{}/api/v1/products/{id}", args.url))
            .bearer_auth(&run.admin)
            .send()
            .await?
            .json()
            .await?;
        let left = p["stock"].as_i64().unwrap_or(i64::MIN);
        let want = args.stock - completed.len() as i64;
        if left != want || left < 0 {
            broken.push(format!("product {id}: stock {left}, expected {want}"));
        }
    }
    // Members see their own orders only: one for a COMPLETED trace, none
    // otherwise.
    let owners: HashMap<&str, u64> = accepted
        .iter()
        .filter_map(|p| Some((p.trace.as_deref()?, p.member)))
        .collect();
    let checks: Vec<Option<String>> = stream::iter(finals.iter())
        .map(|(trace, f)| {
            let member = owners.get(trace.as_str()).copied().unwrap_or(0);
            let token = tokens.get(&member).cloned().unwrap_or_default();
            let client = &run.client;
            let url = format!("{}/api/v1/orders", args.url);
            async move {
                let list: Value = match client.get(url).bearer_auth(token).send().await {
                    Ok(r) => r.json().await.unwrap_or(Value::Null),
                    Err(e) => return Some(format!("member {member}: {e}")),
                };
                let list = list.as_array().cloned().unwrap_or_default();
                let want = usize::from(f.body["status"] == "COMPLETED");
                let own = list.iter().all(|o| o["memberId"] == member);
                let matches = want == 0 || list.iter().any(|o| o["orderId"] == f.body["orderId"]);
                (list.len() != want || !own || !matches)
                    .then(|| format!("member {member} sees {} orders", list.len()))
            }
        })
        .buffer_unordered(args.concurrency)
        .collect()
        .await;
    let ownership: Vec<String> = checks.into_iter().flatten().collect();
    if let Some(first) = ownership.first() {
        broken.push(format!(
            "{} members see wrong orders, e.g. {first}",
            ownership.len()
        ));
    }

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
        "| scenario | {} members × {} products × {} stock, concurrency {} |",
        args.members, args.products, args.stock, args.concurrency
    );
    println!(
        "| accepted | {} of {} in {:.3} s → **{:.0} /s** |",
        accepted.len(),
        posts.len(),
        intake_secs,
        accepted.len() as f64 / intake_secs.max(1e-9)
    );
    println!("| POST latency (ms) | {} |", percentiles(&post_latency));
    if let Some(a) = &auth_report {
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
        "| COMPLETED / FAILED | {} / {failed} {reasons:?} |",
        completed.len()
    );
    if broken.is_empty() {
        println!("| invariants | OK: sold = COMPLETED = min(members, stock), stock = initial − sold ≥ 0, one order per COMPLETED trace, none PROCESSING, members see only their own orders |");
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
