//! Settings from the environment (see README, "Configuration").

use std::env;
use std::net::SocketAddr;
use std::time::Duration;

/// The fixed secret of the embedded default. Never use it with real services.
pub const DEV_JWT_SECRET: &str = "oms-dev-secret";

/// Shortest `OMS_JWT_SECRET`, in bytes, accepted outside the embedded
/// default on loopback. HS256 with a short secret can be brute-forced from
/// any captured token.
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// Default of `OMS_HTTP_REQUEST_TIMEOUT_SECS`.
pub const DEFAULT_HTTP_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Default of `OMS_HTTP_HEADER_TIMEOUT_SECS`.
pub const DEFAULT_HTTP_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of `OMS_HTTP_MAX_IN_FLIGHT`.
pub const DEFAULT_HTTP_MAX_IN_FLIGHT: usize = 1024;
/// Default of `OMS_HTTP_MAX_CONNECTIONS`.
pub const DEFAULT_HTTP_MAX_CONNECTIONS: usize = 8192;

/// Default of `OMS_ACCESS_TOKEN_TTL_SECS`.
pub const DEFAULT_ACCESS_TOKEN_TTL: Duration = Duration::from_secs(15 * 60);
/// Default of `OMS_REFRESH_TOKEN_TTL_SECS`.
pub const DEFAULT_REFRESH_TOKEN_TTL: Duration = Duration::from_secs(14 * 24 * 3600);
/// The email of the development admin the embedded default creates when
/// `OMS_ADMIN_EMAIL` is not set.
pub const DEV_ADMIN_EMAIL: &str = "admin@oms.local";

/// A setting that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A variable has a value that does not parse.
    #[error("{name}={value:?} is not valid: {reason}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// Why.
        reason: String,
    },
    /// A variable that this mode needs is not set.
    #[error("{name} must be set: {why}")]
    Missing {
        /// The variable.
        name: &'static str,
        /// Why it is needed.
        why: &'static str,
    },
    /// A secret is set but too weak for this mode (its value is never
    /// shown).
    #[error("{name} is refused: {reason}")]
    Insecure {
        /// The variable.
        name: &'static str,
        /// Why, and what to do instead.
        reason: String,
    },
}

/// The secret policy of `OMS_JWT_SECRET` (API.md, "Members and sessions"):
/// the secret to sign and verify tokens with, or why the process must not
/// start.
///
/// - Outside the embedded default (`embedded` false) the secret must be set,
///   at least [`MIN_JWT_SECRET_BYTES`] bytes long and not
///   [`DEV_JWT_SECRET`].
/// - The embedded default on a loopback `http_addr` takes any secret, and
///   [`DEV_JWT_SECRET`] when none is set (the caller should warn).
/// - The embedded default on any other address is held to the same rule as
///   outside it: the development secret is public, so anyone who can reach
///   the port could mint `ADMIN` tokens.
pub fn jwt_secret_policy(
    secret: Option<&str>,
    embedded: bool,
    http_addr: SocketAddr,
) -> Result<String, ConfigError> {
    const NAME: &str = "OMS_JWT_SECRET";
    let hint =
        format!("use at least {MIN_JWT_SECRET_BYTES} random bytes, e.g. `openssl rand -base64 48`");
    let loopback = http_addr.ip().is_loopback();
    match secret {
        None if embedded && loopback => Ok(DEV_JWT_SECRET.to_owned()),
        Some(s) if embedded && loopback => Ok(s.to_owned()),
        None if embedded => Err(ConfigError::Insecure {
            name: NAME,
            reason: format!(
                "it is not set, and the development secret `{DEV_JWT_SECRET}` is refused on the non-loopback address {http_addr}; {hint}"
            ),
        }),
        None => Err(ConfigError::Missing {
            name: NAME,
            why: "a service URL (OMS_KAFKA_BROKERS, OMS_REDIS_URL or OMS_DATABASE_URL) is set, so this is not the embedded default",
        }),
        Some(s) if s.trim() == DEV_JWT_SECRET => Err(ConfigError::Insecure {
            name: NAME,
            reason: format!(
                "it is the public development secret `{DEV_JWT_SECRET}`, which is only for the embedded default on a loopback address; {hint}"
            ),
        }),
        Some(s) if s.len() < MIN_JWT_SECRET_BYTES => Err(ConfigError::Insecure {
            name: NAME,
            reason: format!("it is {} bytes long; {hint}", s.len()),
        }),
        Some(s) => Ok(s.to_owned()),
    }
}

/// Every setting of the two processes.
#[derive(Clone)]
pub struct Settings {
    /// `OMS_HTTP_ADDR`.
    pub http_addr: SocketAddr,
    /// `OMS_KAFKA_BROKERS`.
    pub kafka_brokers: Option<String>,
    /// `OMS_REDIS_URL`.
    pub redis_url: Option<String>,
    /// `OMS_DATABASE_URL`.
    pub database_url: Option<String>,
    /// `OMS_ORDER_TOPIC`.
    pub order_topic: String,
    /// `OMS_DLQ_TOPIC`.
    pub dlq_topic: String,
    /// `OMS_ORDER_PARTITIONS`.
    pub order_partitions: i32,
    /// `OMS_CONSUMER_GROUP`.
    pub consumer_group: String,
    /// `OMS_KAFKA_REWIND_ON_GAP`: `on` re-reads records a fetch skipped, for
    /// brokers that skip the rest of a producer batch when a fetch starts
    /// inside it (tansu 0.6); `off` (default) for Apache Kafka. See
    /// `KafkaConfig::rewind_on_gap`.
    pub kafka_rewind_on_gap: bool,
    /// `OMS_TOPIC_REPLICATION`: replication factor of the topics created at
    /// start (default `-1`, the broker's default).
    pub topic_replication: i32,
    /// `OMS_CONSUMER_STALL_SECS`: how long a consumer may hold partitions
    /// with records waiting and process none before it rejoins its group
    /// (default 30 s, from 1 to 3600).
    pub consumer_stall: std::time::Duration,
    /// `OMS_KAFKA_SESSION_TIMEOUT_SECS`: the consumer group session timeout
    /// (default 10 s, from 1 to 300): how long the coordinator waits for a
    /// silent member before it gives its partitions to another. A broker
    /// pause longer than it makes every member rejoin.
    pub kafka_session_timeout: std::time::Duration,
    /// `OMS_JWT_SECRET`.
    pub jwt_secret: Option<String>,
    /// `OMS_CONSUMER_BATCH`: most records a consumer places in one
    /// transaction (default 500; `1` is one transaction per order).
    pub consumer_batch: usize,
    /// `OMS_SWEEP_AFTER_SECS`: age at which a PROCESSING trace is stuck
    /// (default 300 s; `0` turns the sweeper off).
    pub sweep_after: Option<std::time::Duration>,
    /// `OMS_STOCK_GATE`: `on` (default) reserves stock in Redis at intake
    /// and answers orders for sold-out products at once; `off` queues every
    /// order and lets the consumer decide.
    pub stock_gate: bool,
    /// `OMS_REDIS_PREFIX`: the prefix of every Redis key (default `oms`), so
    /// that several deployments can share one Redis.
    pub redis_prefix: String,
    /// `OMS_HTTP_REQUEST_TIMEOUT_SECS`: longest a request may take before it
    /// is answered 503 `TIMEOUT` (default 15 s, from 6 to 3600: above the 5 s
    /// send bound of intake).
    pub http_request_timeout: Duration,
    /// `OMS_HTTP_HEADER_TIMEOUT_SECS`: longest a client may take to send a
    /// request's headers, and the idle timeout of kept-alive connections
    /// (default 10 s, from 1 to 300).
    pub http_header_timeout: Duration,
    /// `OMS_HTTP_MAX_IN_FLIGHT`: most requests handled at once; more are
    /// answered 503 `OVERLOADED` at once (default 1024).
    pub http_max_in_flight: usize,
    /// `OMS_HTTP_MAX_CONNECTIONS`: most connections open at once; more wait
    /// in the listen backlog (default 8192; keep it below `ulimit -n`).
    pub http_max_connections: usize,
    /// `OMS_ADMIN_EMAIL` and `OMS_ADMIN_PASSWORD`: the operator created (or
    /// promoted, with this password) at `api` start. Both or neither.
    pub admin: Option<(String, String)>,
    /// `OMS_ACCESS_TOKEN_TTL_SECS`: lifetime of access tokens (default
    /// 900 s, from 60 to 86,400).
    pub access_token_ttl: Duration,
    /// `OMS_REFRESH_TOKEN_TTL_SECS`: lifetime of refresh tokens, renewed by
    /// each refresh (default 14 days, from 300 s to 365 days, and longer
    /// than the access tokens').
    pub refresh_token_ttl: Duration,
    /// `OMS_LOGIN_MAX_FAILURES`: login attempts per email and window
    /// before 429 (default 5, from 1 to 1000).
    pub login_max_failures: u64,
    /// `OMS_LOGIN_MAX_FAILURES_PER_ADDR`: failed logins per client address
    /// (IPv4, or IPv6 /64) and window, whatever the email (default 50, from
    /// 1 to 1,000,000).
    pub login_max_failures_per_addr: u64,
    /// `OMS_LOGIN_WINDOW_SECS`: the throttling window (default 900 s, from
    /// 1 to 86,400).
    pub login_window: Duration,
    /// `OMS_CLIENT_IP_HEADER`: a header naming the client's address (its
    /// last entry), set by a reverse proxy in front of `api`; unset → the
    /// connection's peer.
    pub client_ip_header: Option<String>,
    /// `OMS_REVOCATION_CHECK`: `on` (default) checks every access token
    /// against the revocations in the session store; `off` only for
    /// benchmarks (logged-out tokens then stay valid until they expire).
    pub revocation_check: bool,
    /// `OMS_REVOCATION_SYNC_MS`: with Redis, how often an `api` process
    /// copies the revocations other processes made (default 250 ms, up to
    /// 10,000); `0` asks Redis on every request instead (one `MGET`).
    pub revocation_sync: Duration,
    /// The front door of a sale: waiting room, order rate, catalogue.
    pub front_door: FrontDoor,
    /// `OMS_PAYMENT_TIMEOUT_SECS`: how long a placed order waits for its
    /// payment before it expires (default 600 s, from 1 to 604,800).
    pub payment_timeout: Duration,
    /// `OMS_TOSS_SECRET_KEY` and `OMS_TOSS_BASE_URL` (default
    /// `https://api.tosspayments.com`): the Toss Payments gateway; unset →
    /// the in-memory gateway.
    pub toss: Option<TossSettings>,
    /// `OMS_EVENTS_TOPIC`: the topic of order events (default
    /// `order-events-v1`).
    pub events_topic: String,
}

/// The Toss Payments settings. The secret key never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct TossSettings {
    /// `OMS_TOSS_SECRET_KEY`.
    pub secret_key: String,
    /// `OMS_TOSS_BASE_URL`.
    pub base_url: String,
}

impl std::fmt::Debug for TossSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TossSettings")
            .field("secret_key", &"<hidden>")
            .field("base_url", &self.base_url)
            .finish()
    }
}

/// The front door of a sale: what intake checks before it takes an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrontDoor {
    /// `OMS_WAITING_ROOM` (`on`/`off`, default off), with
    /// `OMS_ADMIT_PER_SEC` (default 100), `OMS_ADMIT_MAX_ACTIVE` (default
    /// 1000) and `OMS_ADMIT_TTL_SECS` (default 120): the waiting room's
    /// policy when it is on.
    pub waiting_room: Option<oms_core::domain::RoomPolicy>,
    /// `OMS_ORDER_RATE`: order requests per second one member may send
    /// (default 10, with a burst of as many; `0` turns the limit off).
    pub order_rate: Option<oms_core::domain::Rate>,
    /// `OMS_CATALOG_REFRESH_MS`: how often intake's copy of the products
    /// (existence, sale windows, limits) is read again (default 1000 ms,
    /// from 50 to 60,000).
    pub catalog_refresh: Duration,
}

impl Default for FrontDoor {
    fn default() -> Self {
        Self {
            waiting_room: None,
            order_rate: Some(oms_core::domain::Rate::per_second(10)),
            catalog_refresh: Duration::from_secs(1),
        }
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("http_addr", &self.http_addr)
            .field("kafka_brokers", &self.kafka_brokers)
            .field("redis_url", &self.redis_url.as_ref().map(|_| "<set>"))
            .field("database_url", &self.database_url.as_ref().map(|_| "<set>"))
            .field("order_topic", &self.order_topic)
            .field("dlq_topic", &self.dlq_topic)
            .field("order_partitions", &self.order_partitions)
            .field("consumer_group", &self.consumer_group)
            .field("kafka_rewind_on_gap", &self.kafka_rewind_on_gap)
            .field("topic_replication", &self.topic_replication)
            .field("consumer_stall", &self.consumer_stall)
            .field("kafka_session_timeout", &self.kafka_session_timeout)
            .field("jwt_secret", &self.jwt_secret.as_ref().map(|_| "<hidden>"))
            .field("consumer_batch", &self.consumer_batch)
            .field("sweep_after", &self.sweep_after)
            .field("stock_gate", &self.stock_gate)
            .field("redis_prefix", &self.redis_prefix)
            .field("http_request_timeout", &self.http_request_timeout)
            .field("http_header_timeout", &self.http_header_timeout)
            .field("http_max_in_flight", &self.http_max_in_flight)
            .field("http_max_connections", &self.http_max_connections)
            .field(
                "admin",
                &self.admin.as_ref().map(|(email, _)| (email, "<hidden>")),
            )
            .field("access_token_ttl", &self.access_token_ttl)
            .field("refresh_token_ttl", &self.refresh_token_ttl)
            .field("login_max_failures", &self.login_max_failures)
            .field(
                "login_max_failures_per_addr",
                &self.login_max_failures_per_addr,
            )
            .field("login_window", &self.login_window)
            .field("client_ip_header", &self.client_ip_header)
            .field("revocation_check", &self.revocation_check)
            .field("revocation_sync", &self.revocation_sync)
            .field("front_door", &self.front_door)
            .field("payment_timeout", &self.payment_timeout)
            .field("toss", &self.toss)
            .field("events_topic", &self.events_topic)
            .finish()
    }
}

fn var(name: &str) -> Option<String> {
    env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The Kafka settings read by [`kafka_settings`].
type KafkaSettings = (bool, i32, std::time::Duration, std::time::Duration);

/// `OMS_KAFKA_REWIND_ON_GAP`, `OMS_TOPIC_REPLICATION`,
/// `OMS_CONSUMER_STALL_SECS` and `OMS_KAFKA_SESSION_TIMEOUT_SECS`.
fn kafka_settings() -> Result<KafkaSettings, ConfigError> {
    let rewind = var("OMS_KAFKA_REWIND_ON_GAP").unwrap_or_else(|| "off".into());
    let rewind_on_gap = match rewind.trim().to_ascii_lowercase().as_str() {
        "on" | "1" | "true" => true,
        "off" | "0" | "false" => false,
        _ => {
            return Err(ConfigError::Invalid {
                name: "OMS_KAFKA_REWIND_ON_GAP",
                value: rewind,
                reason: "must be `on` or `off`".into(),
            })
        }
    };
    let replication = var("OMS_TOPIC_REPLICATION").unwrap_or_else(|| "-1".into());
    let topic_replication = replication
        .trim()
        .parse::<i32>()
        .ok()
        .filter(|r| *r == -1 || (1..=i32::from(i16::MAX)).contains(r))
        .ok_or_else(|| ConfigError::Invalid {
            name: "OMS_TOPIC_REPLICATION",
            value: replication.clone(),
            reason: "must be -1 (the broker's default) or a replication factor from 1".into(),
        })?;
    let stall = var("OMS_CONSUMER_STALL_SECS").unwrap_or_else(|| "30".into());
    let consumer_stall = stall
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|s| (1..=3600).contains(s))
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| ConfigError::Invalid {
            name: "OMS_CONSUMER_STALL_SECS",
            value: stall.clone(),
            reason: "must be an integer from 1 to 3600".into(),
        })?;
    let session = var("OMS_KAFKA_SESSION_TIMEOUT_SECS").unwrap_or_else(|| "10".into());
    let kafka_session_timeout = session
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|s| (1..=300).contains(s))
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| ConfigError::Invalid {
            name: "OMS_KAFKA_SESSION_TIMEOUT_SECS",
            value: session.clone(),
            reason: "must be an integer from 1 to 300".into(),
        })?;
    Ok((
        rewind_on_gap,
        topic_replication,
        consumer_stall,
        kafka_session_timeout,
    ))
}

/// `name` as `on` / `off` (also `1`/`0`, `true`/`false`), or `default`.
fn switch(name: &'static str, default: bool) -> Result<bool, ConfigError> {
    let Some(raw) = var(name) else {
        return Ok(default);
    };
    match raw.trim().to_ascii_lowercase().as_str() {
        "on" | "1" | "true" => Ok(true),
        "off" | "0" | "false" => Ok(false),
        _ => Err(ConfigError::Invalid {
            name,
            value: raw,
            reason: "must be `on` or `off`".into(),
        }),
    }
}

fn front_door_settings() -> Result<FrontDoor, ConfigError> {
    let defaults = oms_core::domain::RoomPolicy::default();
    let room = if switch("OMS_WAITING_ROOM", false)? {
        Some(oms_core::domain::RoomPolicy {
            admit_per_sec: u32::try_from(ranged(
                "OMS_ADMIT_PER_SEC",
                u64::from(defaults.admit_per_sec),
                1..=100_000,
            )?)
            .unwrap_or(defaults.admit_per_sec),
            max_active: u32::try_from(ranged(
                "OMS_ADMIT_MAX_ACTIVE",
                u64::from(defaults.max_active),
                1..=10_000_000,
            )?)
            .unwrap_or(defaults.max_active),
            ttl: Duration::from_secs(ranged(
                "OMS_ADMIT_TTL_SECS",
                defaults.ttl.as_secs(),
                1..=86_400,
            )?),
        })
    } else {
        None
    };
    let rate = ranged("OMS_ORDER_RATE", 10, 0..=100_000)?;
    let rate = u32::try_from(rate)
        .ok()
        .filter(|r| *r > 0)
        .map(oms_core::domain::Rate::per_second);
    let refresh = Duration::from_millis(ranged("OMS_CATALOG_REFRESH_MS", 1000, 50..=60_000)?);
    Ok(FrontDoor {
        waiting_room: room,
        order_rate: rate,
        catalog_refresh: refresh,
    })
}

/// The settings of members and sessions.
struct AuthSettings {
    admin: Option<(String, String)>,
    access_token_ttl: Duration,
    refresh_token_ttl: Duration,
    login_max_failures: u64,
    login_max_failures_per_addr: u64,
    login_window: Duration,
    client_ip_header: Option<String>,
    revocation_check: bool,
    revocation_sync: Duration,
}

fn auth_settings() -> Result<AuthSettings, ConfigError> {
    let admin = match (
        var("OMS_ADMIN_EMAIL"),
        env::var("OMS_ADMIN_PASSWORD")
            .ok()
            .filter(|p| !p.is_empty()),
    ) {
        (None, None) => None,
        (Some(email), Some(password)) => {
            oms_core::domain::Email::parse(&email).map_err(|e| ConfigError::Invalid {
                name: "OMS_ADMIN_EMAIL",
                value: email.clone(),
                reason: e.to_string(),
            })?;
            oms_core::domain::validate_password(&password).map_err(|e| ConfigError::Insecure {
                name: "OMS_ADMIN_PASSWORD",
                reason: e.to_string(),
            })?;
            Some((email, password))
        }
        (Some(_), None) => {
            return Err(ConfigError::Missing {
                name: "OMS_ADMIN_PASSWORD",
                why: "OMS_ADMIN_EMAIL is set; the operator needs a password",
            })
        }
        (None, Some(_)) => {
            return Err(ConfigError::Missing {
                name: "OMS_ADMIN_EMAIL",
                why:
                    "OMS_ADMIN_PASSWORD is set; it is the password of the operator with that email",
            })
        }
    };
    let access_token_ttl = Duration::from_secs(ranged(
        "OMS_ACCESS_TOKEN_TTL_SECS",
        DEFAULT_ACCESS_TOKEN_TTL.as_secs(),
        60..=86_400,
    )?);
    let refresh_token_ttl = Duration::from_secs(ranged(
        "OMS_REFRESH_TOKEN_TTL_SECS",
        DEFAULT_REFRESH_TOKEN_TTL.as_secs(),
        300..=365 * 86_400,
    )?);
    if refresh_token_ttl <= access_token_ttl {
        return Err(ConfigError::Invalid {
            name: "OMS_REFRESH_TOKEN_TTL_SECS",
            value: refresh_token_ttl.as_secs().to_string(),
            reason: "must be longer than OMS_ACCESS_TOKEN_TTL_SECS".into(),
        });
    }
    let client_ip_header = match var("OMS_CLIENT_IP_HEADER") {
        None => None,
        Some(name) => {
            let name = name.trim().to_ascii_lowercase();
            header_name(&name).ok_or_else(|| ConfigError::Invalid {
                name: "OMS_CLIENT_IP_HEADER",
                value: name.clone(),
                reason: "must be a header name, e.g. x-forwarded-for".into(),
            })?;
            Some(name)
        }
    };
    Ok(AuthSettings {
        admin,
        access_token_ttl,
        refresh_token_ttl,
        login_max_failures: ranged("OMS_LOGIN_MAX_FAILURES", 5, 1..=1000)?,
        login_max_failures_per_addr: ranged("OMS_LOGIN_MAX_FAILURES_PER_ADDR", 50, 1..=1_000_000)?,
        login_window: Duration::from_secs(ranged("OMS_LOGIN_WINDOW_SECS", 900, 1..=86_400)?),
        client_ip_header,
        revocation_check: switch("OMS_REVOCATION_CHECK", true)?,
        revocation_sync: Duration::from_millis(ranged("OMS_REVOCATION_SYNC_MS", 250, 0..=10_000)?),
    })
}

/// A header name's characters (RFC 9110 token), lowercase.
fn header_name(name: &str) -> Option<&str> {
    const SPECIALS: &[u8] = b"!#$%&'*+-.^_`|~";
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || SPECIALS.contains(&b));
    ok.then_some(name)
}

/// `name` as an integer in `range`, or `default` when unset.
fn ranged(
    name: &'static str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ConfigError> {
    let Some(raw) = var(name) else {
        return Ok(default);
    };
    raw.trim()
        .parse::<u64>()
        .ok()
        .filter(|v| range.contains(v))
        .ok_or_else(|| ConfigError::Invalid {
            name,
            value: raw.clone(),
            reason: format!(
                "must be an integer from {} to {}",
                range.start(),
                range.end()
            ),
        })
}

impl Settings {
    /// Reads the `OMS_*` variables, with the defaults of API.md.
    pub fn from_env() -> Result<Self, ConfigError> {
        let http_addr = var("OMS_HTTP_ADDR").unwrap_or_else(|| "127.0.0.1:8080".into());
        let http_addr =
            http_addr
                .parse()
                .map_err(|e: std::net::AddrParseError| ConfigError::Invalid {
                    name: "OMS_HTTP_ADDR",
                    value: http_addr.clone(),
                    reason: e.to_string(),
                })?;
        let partitions = var("OMS_ORDER_PARTITIONS").unwrap_or_else(|| "6".into());
        let order_partitions = partitions
            .parse::<i32>()
            .ok()
            .filter(|p| (1..=1024).contains(p))
            .ok_or_else(|| ConfigError::Invalid {
                name: "OMS_ORDER_PARTITIONS",
                value: partitions.clone(),
                reason: "must be an integer from 1 to 1024".into(),
            })?;
        let sweep = var("OMS_SWEEP_AFTER_SECS").unwrap_or_else(|| "300".into());
        let sweep_after = sweep
            .parse::<u64>()
            .map_err(|e| ConfigError::Invalid {
                name: "OMS_SWEEP_AFTER_SECS",
                value: sweep.clone(),
                reason: e.to_string(),
            })
            .and_then(|secs| match secs {
                0 => Ok(None),
                1..=29 => Err(ConfigError::Invalid {
                    name: "OMS_SWEEP_AFTER_SECS",
                    value: sweep.clone(),
                    reason: "must be 0 (off) or at least 30 s, well above the 5 s send bound"
                        .into(),
                }),
                _ => Ok(Some(std::time::Duration::from_secs(secs))),
            })?;
        let batch = var("OMS_CONSUMER_BATCH").unwrap_or_else(|| "500".into());
        let consumer_batch = batch
            .parse::<usize>()
            .ok()
            .filter(|b| (1..=10_000).contains(b))
            .ok_or_else(|| ConfigError::Invalid {
                name: "OMS_CONSUMER_BATCH",
                value: batch.clone(),
                reason: "must be an integer from 1 to 10000".into(),
            })?;
        let gate = var("OMS_STOCK_GATE").unwrap_or_else(|| "on".into());
        let stock_gate = match gate.trim().to_ascii_lowercase().as_str() {
            "on" | "1" | "true" => true,
            "off" | "0" | "false" => false,
            _ => {
                return Err(ConfigError::Invalid {
                    name: "OMS_STOCK_GATE",
                    value: gate,
                    reason: "must be `on` or `off`".into(),
                })
            }
        };
        let redis_prefix = var("OMS_REDIS_PREFIX").unwrap_or_else(|| "oms".into());
        if redis_prefix.len() > 64 || !redis_prefix.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConfigError::Invalid {
                name: "OMS_REDIS_PREFIX",
                value: redis_prefix,
                reason: "must be 1 to 64 visible ASCII characters".into(),
            });
        }
        let http_request_timeout = Duration::from_secs(ranged(
            "OMS_HTTP_REQUEST_TIMEOUT_SECS",
            DEFAULT_HTTP_REQUEST_TIMEOUT.as_secs(),
            6..=3600,
        )?);
        let http_header_timeout = Duration::from_secs(ranged(
            "OMS_HTTP_HEADER_TIMEOUT_SECS",
            DEFAULT_HTTP_HEADER_TIMEOUT.as_secs(),
            1..=300,
        )?);
        let http_max_in_flight = usize::try_from(ranged(
            "OMS_HTTP_MAX_IN_FLIGHT",
            DEFAULT_HTTP_MAX_IN_FLIGHT as u64,
            1..=1_000_000,
        )?)
        .unwrap_or(DEFAULT_HTTP_MAX_IN_FLIGHT);
        let http_max_connections = usize::try_from(ranged(
            "OMS_HTTP_MAX_CONNECTIONS",
            DEFAULT_HTTP_MAX_CONNECTIONS as u64,
            1..=1_000_000,
        )?)
        .unwrap_or(DEFAULT_HTTP_MAX_CONNECTIONS);
        let (kafka_rewind_on_gap, topic_replication, consumer_stall, kafka_session_timeout) =
            kafka_settings()?;
        let auth = auth_settings()?;
        let front_door = front_door_settings()?;
        let payment_timeout =
            Duration::from_secs(ranged("OMS_PAYMENT_TIMEOUT_SECS", 600, 1..=604_800)?);
        let toss = var("OMS_TOSS_SECRET_KEY").map(|secret_key| TossSettings {
            secret_key,
            base_url: var("OMS_TOSS_BASE_URL")
                .unwrap_or_else(|| "https://api.tosspayments.com".into()),
        });
        Ok(Self {
            front_door,
            payment_timeout,
            toss,
            events_topic: var("OMS_EVENTS_TOPIC").unwrap_or_else(|| "order-events-v1".into()),
            admin: auth.admin,
            access_token_ttl: auth.access_token_ttl,
            refresh_token_ttl: auth.refresh_token_ttl,
            login_max_failures: auth.login_max_failures,
            login_max_failures_per_addr: auth.login_max_failures_per_addr,
            login_window: auth.login_window,
            client_ip_header: auth.client_ip_header,
            revocation_check: auth.revocation_check,
            revocation_sync: auth.revocation_sync,
            kafka_rewind_on_gap,
            topic_replication,
            consumer_stall,
            kafka_session_timeout,
            http_request_timeout,
            http_header_timeout,
            http_max_in_flight,
            http_max_connections,
            redis_prefix,
            stock_gate,
            consumer_batch,
            sweep_after,
            http_addr,
            kafka_brokers: var("OMS_KAFKA_BROKERS"),
            redis_url: var("OMS_REDIS_URL"),
            database_url: var("OMS_DATABASE_URL"),
            order_topic: var("OMS_ORDER_TOPIC").unwrap_or_else(|| "order-request-v1".into()),
            dlq_topic: var("OMS_DLQ_TOPIC").unwrap_or_else(|| "order-request-dlq-v1".into()),
            order_partitions,
            consumer_group: var("OMS_CONSUMER_GROUP").unwrap_or_else(|| "oms-order-group".into()),
            jwt_secret: var("OMS_JWT_SECRET"),
        })
    }

    /// Whether no service URL is set: the embedded default.
    pub fn is_embedded(&self) -> bool {
        self.kafka_brokers.is_none() && self.redis_url.is_none() && self.database_url.is_none()
    }

    /// The rules of members and sessions these settings give.
    pub fn auth_policy(&self) -> oms_core::application::AuthPolicy {
        oms_core::application::AuthPolicy {
            tokens: oms_core::domain::TokenPolicy {
                access_ttl: self.access_token_ttl,
                refresh_ttl: self.refresh_token_ttl,
            },
            throttle: oms_core::domain::ThrottlePolicy {
                per_email: self.login_max_failures,
                per_address: self.login_max_failures_per_addr,
                window: self.login_window,
            },
            check_revocation: self.revocation_check,
            accept_when_unchecked: true,
        }
    }

    /// The JWT secret these settings allow, by [`jwt_secret_policy`].
    pub fn checked_jwt_secret(&self) -> Result<String, ConfigError> {
        jwt_secret_policy(
            self.jwt_secret.as_deref(),
            self.is_embedded(),
            self.http_addr,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const STRONG: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn the_embedded_default_on_loopback_uses_the_dev_secret_or_any_given() {
        for a in ["127.0.0.1:8080", "[::1]:8080", "127.0.0.2:1"] {
            assert_eq!(
                jwt_secret_policy(None, true, addr(a)).ok().as_deref(),
                Some(DEV_JWT_SECRET),
                "{a}"
            );
            assert_eq!(
                jwt_secret_policy(Some("short"), true, addr(a))
                    .ok()
                    .as_deref(),
                Some("short")
            );
        }
    }

    #[test]
    fn the_embedded_default_refuses_the_dev_secret_on_a_public_address() {
        for a in ["0.0.0.0:8080", "192.168.1.5:8080", "[::]:8080"] {
            assert!(
                matches!(
                    jwt_secret_policy(None, true, addr(a)),
                    Err(ConfigError::Insecure { .. })
                ),
                "{a}"
            );
            assert!(matches!(
                jwt_secret_policy(Some(DEV_JWT_SECRET), true, addr(a)),
                Err(ConfigError::Insecure { .. })
            ));
            assert!(matches!(
                jwt_secret_policy(Some("change-me"), true, addr(a)),
                Err(ConfigError::Insecure { .. })
            ));
            assert_eq!(
                jwt_secret_policy(Some(STRONG), true, addr(a))
                    .ok()
                    .as_deref(),
                Some(STRONG)
            );
        }
    }

    #[test]
    fn real_services_need_a_long_secret_that_is_not_the_dev_one() {
        for a in ["127.0.0.1:8080", "0.0.0.0:8080"] {
            let a = addr(a);
            assert!(matches!(
                jwt_secret_policy(None, false, a),
                Err(ConfigError::Missing {
                    name: "OMS_JWT_SECRET",
                    ..
                })
            ));
            assert!(matches!(
                jwt_secret_policy(Some(DEV_JWT_SECRET), false, a),
                Err(ConfigError::Insecure { .. })
            ));
            let padded = format!(" {DEV_JWT_SECRET} ");
            assert!(matches!(
                jwt_secret_policy(Some(&padded), false, a),
                Err(ConfigError::Insecure { .. })
            ));
            let short = &STRONG[..MIN_JWT_SECRET_BYTES - 1];
            assert!(matches!(
                jwt_secret_policy(Some(short), false, a),
                Err(ConfigError::Insecure { .. })
            ));
            assert_eq!(
                jwt_secret_policy(Some(STRONG), false, a).ok().as_deref(),
                Some(STRONG)
            );
        }
    }

    #[test]
    fn a_refusal_says_why_without_showing_the_secret() {
        let secret = "a-secret-of-23-bytes-xx";
        let refused = jwt_secret_policy(Some(secret), false, addr("127.0.0.1:8080"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(refused.contains("OMS_JWT_SECRET"), "{refused}");
        assert!(refused.contains("23 bytes"), "{refused}");
        assert!(refused.contains("at least 32"), "{refused}");
        assert!(!refused.contains(secret), "{refused}");
    }
}
