//! Settings of the `api` and `consumer` processes (see README,
//! "Configuration").
//!
//! Every setting is a command-line option `--some-name`, an environment
//! variable `OMS_SOME_NAME` and a key `some_name` of an optional TOML file
//! (`--config FILE` / `OMS_CONFIG`). A setting takes its value from the
//! first of these that has one: the command line, the environment, the
//! file, the built-in default. [`Settings::command`] is the clap command:
//! its `--help` lists every setting with its variable and default.
//!
//! The secrets (`OMS_JWT_SECRET`, `OMS_ADMIN_PASSWORD`,
//! `OMS_TOSS_SECRET_KEY`) are held as [`SecretString`]: neither `Debug`,
//! `--help` nor an error message shows them, nor the passwords of
//! `OMS_REDIS_URL` and `OMS_DATABASE_URL`.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory};
use oms_core::application::GatePolicy;

pub use secrecy::{ExposeSecret, SecretString};

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

/// The variable naming the config file.
pub const CONFIG_VAR: &str = "OMS_CONFIG";

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// The built-in default.
    Default,
    /// The config file (`--config` / `OMS_CONFIG`).
    File(PathBuf),
    /// The environment variable.
    Env,
    /// The command line.
    Arg,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("the default"),
            Self::File(path) => write!(f, "the config file {}", path.display()),
            Self::Env => f.write_str("the environment"),
            Self::Arg => f.write_str("the command line"),
        }
    }
}

/// The command-line option of the variable `name`: `OMS_ORDER_RATE` →
/// `--order-rate`. Its key in the config file is the same without the
/// dashes in front, with underscores (`order_rate`).
pub fn option_of(name: &str) -> String {
    let bare = name.strip_prefix("OMS_").unwrap_or(name);
    format!("--{}", bare.to_ascii_lowercase().replace('_', "-"))
}

/// Shows a variable's option, as in [`option_of`].
struct Opt<'a>(&'a str);

impl fmt::Display for Opt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&option_of(self.0))
    }
}

/// A setting that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A setting has a value that does not parse or is out of range.
    #[error("{name}={value:?} ({}, from {from}) is not valid: {reason}", Opt(name))]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// Why.
        reason: String,
        /// Where the value came from.
        from: Origin,
    },
    /// A variable that this mode needs is not set.
    #[error("{name} ({}) must be set: {why}", Opt(name))]
    Missing {
        /// The variable.
        name: &'static str,
        /// Why it is needed.
        why: &'static str,
    },
    /// A secret is set but too weak for this mode (its value is never
    /// shown).
    #[error("{name} ({}) is refused: {reason}", Opt(name))]
    Insecure {
        /// The variable.
        name: &'static str,
        /// Why, and what to do instead.
        reason: String,
    },
    /// The config file cannot be read, is not TOML, or has a value that is
    /// not a string, a number or a boolean.
    #[error("config file {}: {reason}", path.display())]
    File {
        /// The file (`--config` / `OMS_CONFIG`).
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The config file has a key that is no setting.
    #[error("config file {}: `{key}` is not a setting; the keys are the options of --help with underscores, e.g. `http_addr`{hint}", path.display())]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// A suggestion (`; did you mean …?`), or empty.
        hint: String,
    },
    /// The command line is not valid, or asks for `--help` or `--version`:
    /// [`clap::Error::exit`] prints it and exits (0 for help, 2 for an
    /// error).
    #[error("{0}")]
    Command(clap::Error),
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

const GENERAL: &str = "General";
const SERVICES: &str =
    "Services (all three unset: the embedded default, everything in memory in one process)";
const KAFKA: &str = "Topics and consumers";
const HTTP: &str = "HTTP server (api)";
const AUTH: &str = "Members and sessions";
const FRONT_DOOR: &str = "The front door of a sale";
const PAYMENTS: &str = "Payments";
const METRICS: &str = "Metrics";

/// The settings as the command line, the environment and the config file
/// give them: every field is one setting, its doc comment is its help line.
/// Values are read by id from the matches (see [`Sources`]), so that each
/// is checked with the name of its variable and where it came from; the
/// fields themselves are never read.
#[derive(clap::Parser)]
#[command(
    name = "oms",
    version,
    about = "Flash-sale order intake: the settings of `api` and `consumer`.",
    after_help = "Every option can also be set by its environment variable [env: OMS_…], or as a key of the \
--config file: the option's name with underscores, e.g. `order_rate = 20`. The command line wins over the \
environment, the environment over the file, the file over the defaults. Switches take `on` or `off`. \
Secrets are never shown."
)]
#[allow(dead_code)]
struct Cli {
    /// A TOML file of settings: keys are the options' names with underscores (`http_addr = "0.0.0.0:8080"`, `order_rate = 20`); the environment and the command line override it.
    #[arg(long, env = "OMS_CONFIG", value_name = "FILE", help_heading = GENERAL)]
    config: Option<String>,

    /// Where the HTTP API listens.
    #[arg(long, env = "OMS_HTTP_ADDR", default_value = "127.0.0.1:8080", value_name = "ADDR", help_heading = SERVICES)]
    http_addr: String,
    /// Kafka bootstrap servers; unset → an in-memory queue.
    #[arg(long, env = "OMS_KAFKA_BROKERS", value_name = "HOST:PORT,…", help_heading = SERVICES)]
    kafka_brokers: Option<String>,
    /// Redis URL for traces, idempotency keys, the stock gate and sessions; unset → in memory.
    #[arg(long, env = "OMS_REDIS_URL", value_name = "URL", hide_env_values = true, help_heading = SERVICES)]
    redis_url: Option<String>,
    /// `on`: OMS_REDIS_URL names nodes of a Redis Cluster, comma-separated (one or more; the others are found); `off`: one Redis.
    #[arg(long, env = "OMS_REDIS_CLUSTER", default_value = "off", value_name = "on|off", help_heading = SERVICES)]
    redis_cluster: String,
    /// MySQL/MariaDB URL, e.g. mysql://oms:oms@127.0.0.1:13306/oms; unset → in memory.
    #[arg(long, env = "OMS_DATABASE_URL", value_name = "URL", hide_env_values = true, help_heading = SERVICES)]
    database_url: Option<String>,
    /// Prefix of every Redis key (1 to 64 visible ASCII characters), so that several deployments can share one Redis.
    #[arg(long, env = "OMS_REDIS_PREFIX", default_value = "oms", value_name = "PREFIX", help_heading = SERVICES)]
    redis_prefix: String,

    /// Topic of order requests.
    #[arg(long, env = "OMS_ORDER_TOPIC", default_value = "order-request-v1", value_name = "TOPIC", help_heading = KAFKA)]
    order_topic: String,
    /// Dead-letter topic of orders that failed.
    #[arg(long, env = "OMS_DLQ_TOPIC", default_value = "order-request-dlq-v1", value_name = "TOPIC", help_heading = KAFKA)]
    dlq_topic: String,
    /// Topic of order events (one record per status change, keyed by order id).
    #[arg(long, env = "OMS_EVENTS_TOPIC", default_value = "order-events-v1", value_name = "TOPIC", help_heading = KAFKA)]
    events_topic: String,
    /// Partitions of the order topic when it is created (1 to 1024).
    #[arg(long, env = "OMS_ORDER_PARTITIONS", default_value = "6", value_name = "N", help_heading = KAFKA)]
    order_partitions: String,
    /// Replication factor of the topics created at start; -1 is the broker's default.
    #[arg(long, env = "OMS_TOPIC_REPLICATION", default_value = "-1", value_name = "N", allow_negative_numbers = true, help_heading = KAFKA)]
    topic_replication: String,
    /// Consumer group of the consumers.
    #[arg(long, env = "OMS_CONSUMER_GROUP", default_value = "oms-order-group", value_name = "GROUP", help_heading = KAFKA)]
    consumer_group: String,
    /// Most records a consumer places in one transaction (1 to 10000; 1 is one transaction per order).
    #[arg(long, env = "OMS_CONSUMER_BATCH", default_value = "500", value_name = "N", help_heading = KAFKA)]
    consumer_batch: String,
    /// A consumer holding records it does not process for this long rejoins its group (1 to 3600 s).
    #[arg(long, env = "OMS_CONSUMER_STALL_SECS", default_value = "30", value_name = "SECS", help_heading = KAFKA)]
    consumer_stall_secs: String,
    /// The consumer group session timeout: a member silent for longer loses its partitions (1 to 300 s).
    #[arg(long, env = "OMS_KAFKA_SESSION_TIMEOUT_SECS", default_value = "10", value_name = "SECS", help_heading = KAFKA)]
    kafka_session_timeout_secs: String,
    /// `on` re-reads records a fetch skipped, for brokers that skip the rest of a producer batch (tansu 0.6); `off` for Apache Kafka.
    #[arg(long, env = "OMS_KAFKA_REWIND_ON_GAP", default_value = "off", value_name = "on|off", help_heading = KAFKA)]
    kafka_rewind_on_gap: String,
    /// librdkafka properties of every Kafka client (producer, consumers, admin): `name=value` entries separated by `;` or line breaks (`\;` is a `;` in a value), e.g. `security.protocol=SASL_SSL;client.id=oms-1`. They override oms's defaults; the few oms's guarantees rest on are refused.
    #[arg(long, env = "OMS_KAFKA_PROPERTIES", value_name = "NAME=VALUE;…", hide_env_values = true, help_heading = KAFKA)]
    kafka_properties: Option<String>,
    /// librdkafka properties of the producer only (e.g. `compression.type=zstd;linger.ms=5`), applied after OMS_KAFKA_PROPERTIES.
    #[arg(long, env = "OMS_KAFKA_PRODUCER_PROPERTIES", value_name = "NAME=VALUE;…", hide_env_values = true, help_heading = KAFKA)]
    kafka_producer_properties: Option<String>,
    /// librdkafka properties of the consumers only (e.g. `fetch.max.bytes=1048576`), applied after OMS_KAFKA_PROPERTIES.
    #[arg(long, env = "OMS_KAFKA_CONSUMER_PROPERTIES", value_name = "NAME=VALUE;…", hide_env_values = true, help_heading = KAFKA)]
    kafka_consumer_properties: Option<String>,
    /// Age at which a PROCESSING trace is stuck and resolved by the sweeper; 0 turns it off, otherwise at least 30 s.
    #[arg(long, env = "OMS_SWEEP_AFTER_SECS", default_value = "300", value_name = "SECS", help_heading = KAFKA)]
    sweep_after_secs: String,
    /// Refusals a second each gate keeper may always settle (1 to 1000000); see OMS_GATE_CATCH_UP_SECS.
    #[arg(long, env = "OMS_GATE_SETTLE_RATE", default_value = "1000", value_name = "N", help_heading = KAFKA)]
    gate_settle_rate: String,
    /// A gate keeper settles at least the refusals waiting ÷ this many seconds a second (0 to 3600; 0: always at full speed).
    #[arg(long, env = "OMS_GATE_CATCH_UP_SECS", default_value = "30", value_name = "SECS", help_heading = KAFKA)]
    gate_catch_up_secs: String,
    /// `on` reserves stock in Redis at intake and answers orders for sold-out products at once; `off` queues every order.
    #[arg(long, env = "OMS_STOCK_GATE", default_value = "on", value_name = "on|off", help_heading = KAFKA)]
    stock_gate: String,

    /// Longest a request may take before it is answered 503 TIMEOUT (6 to 3600 s).
    #[arg(long, env = "OMS_HTTP_REQUEST_TIMEOUT_SECS", default_value = "15", value_name = "SECS", help_heading = HTTP)]
    http_request_timeout_secs: String,
    /// Longest a client may take to send a request's headers; also the keep-alive idle timeout (1 to 300 s).
    #[arg(long, env = "OMS_HTTP_HEADER_TIMEOUT_SECS", default_value = "10", value_name = "SECS", help_heading = HTTP)]
    http_header_timeout_secs: String,
    /// Most requests handled at once; more are answered 503 OVERLOADED (1 to 1000000).
    #[arg(long, env = "OMS_HTTP_MAX_IN_FLIGHT", default_value = "1024", value_name = "N", help_heading = HTTP)]
    http_max_in_flight: String,
    /// Most connections open at once; more wait in the listen backlog (1 to 1000000; keep it below `ulimit -n`).
    #[arg(long, env = "OMS_HTTP_MAX_CONNECTIONS", default_value = "8192", value_name = "N", help_heading = HTTP)]
    http_max_connections: String,
    /// Behind a reverse proxy: the header naming the client (its last address), e.g. x-forwarded-for; unset → the connection's peer.
    #[arg(long, env = "OMS_CLIENT_IP_HEADER", value_name = "HEADER", help_heading = HTTP)]
    client_ip_header: Option<String>,
    /// `on` serves the synchronous AS-IS design at POST /baseline/as-is/orders on the real stack, for benchmarks only.
    #[arg(long, env = "OMS_BASELINE_AS_IS", default_value = "off", value_name = "on|off", help_heading = HTTP)]
    baseline_as_is: String,

    /// HS256 secret of the tokens: at least 32 bytes outside the embedded default on loopback (which uses `oms-dev-secret` when unset).
    #[arg(long, env = "OMS_JWT_SECRET", value_name = "SECRET", hide_env_values = true, help_heading = AUTH)]
    jwt_secret: Option<String>,
    /// Email of the operator created, or promoted, at `api` start; with OMS_ADMIN_PASSWORD, both or neither.
    #[arg(long, env = "OMS_ADMIN_EMAIL", value_name = "EMAIL", help_heading = AUTH)]
    admin_email: Option<String>,
    /// Password of the operator of OMS_ADMIN_EMAIL.
    #[arg(long, env = "OMS_ADMIN_PASSWORD", value_name = "PASSWORD", hide_env_values = true, help_heading = AUTH)]
    admin_password: Option<String>,
    /// Lifetime of access tokens (60 to 86400 s).
    #[arg(long, env = "OMS_ACCESS_TOKEN_TTL_SECS", default_value = "900", value_name = "SECS", help_heading = AUTH)]
    access_token_ttl_secs: String,
    /// Lifetime of refresh tokens, renewed by each refresh (300 s to 365 days, longer than access tokens).
    #[arg(long, env = "OMS_REFRESH_TOKEN_TTL_SECS", default_value = "1209600", value_name = "SECS", help_heading = AUTH)]
    refresh_token_ttl_secs: String,
    /// Login attempts per email and window before 429 (1 to 1000).
    #[arg(long, env = "OMS_LOGIN_MAX_FAILURES", default_value = "5", value_name = "N", help_heading = AUTH)]
    login_max_failures: String,
    /// Failed logins per client address (IPv4, or IPv6 /64) and window, whatever the email (1 to 1000000).
    #[arg(long, env = "OMS_LOGIN_MAX_FAILURES_PER_ADDR", default_value = "50", value_name = "N", help_heading = AUTH)]
    login_max_failures_per_addr: String,
    /// The login throttling window (1 to 86400 s).
    #[arg(long, env = "OMS_LOGIN_WINDOW_SECS", default_value = "900", value_name = "SECS", help_heading = AUTH)]
    login_window_secs: String,
    /// `on` checks every access token against the revocations; `off` only for benchmarks.
    #[arg(long, env = "OMS_REVOCATION_CHECK", default_value = "on", value_name = "on|off", help_heading = AUTH)]
    revocation_check: String,
    /// How often an `api` process copies the revocations other processes made from Redis (0 to 10000 ms; 0 asks Redis on every request).
    #[arg(long, env = "OMS_REVOCATION_SYNC_MS", default_value = "250", value_name = "MS", help_heading = AUTH)]
    revocation_sync_ms: String,

    /// `on` puts a waiting room in front of POST /api/v1/orders.
    #[arg(long, env = "OMS_WAITING_ROOM", default_value = "off", value_name = "on|off", help_heading = FRONT_DOOR)]
    waiting_room: String,
    /// With the waiting room: members admitted per second (1 to 100000).
    #[arg(long, env = "OMS_ADMIT_PER_SEC", default_value = "100", value_name = "N", help_heading = FRONT_DOOR)]
    admit_per_sec: String,
    /// With the waiting room: most members admitted at once (1 to 10000000).
    #[arg(long, env = "OMS_ADMIT_MAX_ACTIVE", default_value = "1000", value_name = "N", help_heading = FRONT_DOOR)]
    admit_max_active: String,
    /// With the waiting room: how long an admission lasts (1 to 86400 s).
    #[arg(long, env = "OMS_ADMIT_TTL_SECS", default_value = "120", value_name = "SECS", help_heading = FRONT_DOOR)]
    admit_ttl_secs: String,
    /// Order requests per member and second, with a burst of as many (0 to 100000; 0 turns the limit off).
    #[arg(long, env = "OMS_ORDER_RATE", default_value = "10", value_name = "N", help_heading = FRONT_DOOR)]
    order_rate: String,
    /// How often intake re-reads the products it checks orders against (50 to 60000 ms).
    #[arg(long, env = "OMS_CATALOG_REFRESH_MS", default_value = "1000", value_name = "MS", help_heading = FRONT_DOOR)]
    catalog_refresh_ms: String,

    /// How long a placed order waits for its payment before it expires (1 to 604800 s).
    #[arg(long, env = "OMS_PAYMENT_TIMEOUT_SECS", default_value = "600", value_name = "SECS", help_heading = PAYMENTS)]
    payment_timeout_secs: String,
    /// Secret key of the Toss Payments gateway; unset → an in-memory gateway, for trials only.
    #[arg(long, env = "OMS_TOSS_SECRET_KEY", value_name = "KEY", hide_env_values = true, help_heading = PAYMENTS)]
    toss_secret_key: Option<String>,
    /// Base URL of the Toss Payments API.
    #[arg(long, env = "OMS_TOSS_BASE_URL", default_value = "https://api.tosspayments.com", value_name = "URL", help_heading = PAYMENTS)]
    toss_base_url: String,

    /// `on` records metrics; `off` turns recording off (to benchmark with and without).
    #[arg(long, env = "OMS_METRICS", default_value = "on", value_name = "on|off", help_heading = METRICS)]
    metrics: String,
    /// Where a `consumer` serves GET /metrics, /healthz and /readyz (`api` serves them on OMS_HTTP_ADDR).
    #[arg(long, env = "OMS_METRICS_ADDR", default_value = "127.0.0.1:9464", value_name = "ADDR", help_heading = METRICS)]
    metrics_addr: String,
}
/// Every setting of the two processes.
#[derive(Clone)]
pub struct Settings {
    /// `OMS_HTTP_ADDR`.
    pub http_addr: SocketAddr,
    /// `OMS_KAFKA_BROKERS`.
    pub kafka_brokers: Option<String>,
    /// `OMS_REDIS_URL` (its password never prints).
    pub redis_url: Option<String>,
    /// `OMS_REDIS_CLUSTER`: `on` makes [`redis_url`](Self::redis_url) the
    /// nodes of a Redis Cluster, comma-separated (default `off`: one Redis).
    pub redis_cluster: bool,
    /// `OMS_DATABASE_URL` (its password never prints).
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
    /// `OMS_KAFKA_PROPERTIES`: librdkafka properties of every Kafka client,
    /// by name (`KafkaConfig::properties`). `Debug` shows their names only.
    pub kafka_properties: BTreeMap<String, String>,
    /// `OMS_KAFKA_PRODUCER_PROPERTIES`: librdkafka properties of the
    /// producer (`KafkaConfig::producer_properties`).
    pub kafka_producer_properties: BTreeMap<String, String>,
    /// `OMS_KAFKA_CONSUMER_PROPERTIES`: librdkafka properties of the
    /// consumers (`KafkaConfig::consumer_properties`).
    pub kafka_consumer_properties: BTreeMap<String, String>,
    /// `OMS_JWT_SECRET`: check it with [`Settings::checked_jwt_secret`].
    pub jwt_secret: Option<SecretString>,
    /// `OMS_CONSUMER_BATCH`: most records a consumer places in one
    /// transaction (default 500; `1` is one transaction per order).
    pub consumer_batch: usize,
    /// `OMS_SWEEP_AFTER_SECS`: age at which a PROCESSING trace is stuck
    /// (default 300 s; `0` turns the sweeper off).
    pub sweep_after: Option<std::time::Duration>,
    /// `OMS_GATE_SETTLE_RATE` and `OMS_GATE_CATCH_UP_SECS`: the pace of
    /// the consumers' gate keepers (see [`GatePolicy`]; defaults 1,000
    /// refusals a second and 30 s).
    pub gate_policy: GatePolicy,
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
    pub admin: Option<(String, SecretString)>,
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
    /// `OMS_METRICS`: `on` (default) records metrics; `off` turns recording
    /// off, to benchmark with and without.
    pub metrics: bool,
    /// `OMS_METRICS_ADDR`: where a `consumer` serves `GET /metrics`,
    /// `/healthz` and `/readyz` (default `127.0.0.1:9464`); `api` serves
    /// them on [`http_addr`](Self::http_addr).
    pub metrics_addr: SocketAddr,
    /// `OMS_BASELINE_AS_IS`: `on` serves the synchronous AS-IS design at
    /// `POST /baseline/as-is/orders` on the real stack, for benchmarks only
    /// (default `off`).
    pub baseline_as_is: bool,
    /// `OMS_CONFIG`: the TOML file these settings were read from, if any.
    pub config_file: Option<PathBuf>,
}

/// The Toss Payments settings. The secret key never prints.
#[derive(Clone)]
pub struct TossSettings {
    /// `OMS_TOSS_SECRET_KEY`.
    pub secret_key: SecretString,
    /// `OMS_TOSS_BASE_URL`.
    pub base_url: String,
}

impl TossSettings {
    /// The secret key itself, for the gateway's client.
    pub fn expose_secret_key(&self) -> &str {
        self.secret_key.expose_secret()
    }
}

impl PartialEq for TossSettings {
    fn eq(&self, other: &Self) -> bool {
        self.secret_key.expose_secret() == other.secret_key.expose_secret()
            && self.base_url == other.base_url
    }
}

impl Eq for TossSettings {}

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
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("redis_cluster", &self.redis_cluster)
            .field(
                "database_url",
                &self.database_url.as_deref().map(redact_url),
            )
            .field("order_topic", &self.order_topic)
            .field("dlq_topic", &self.dlq_topic)
            .field("order_partitions", &self.order_partitions)
            .field("consumer_group", &self.consumer_group)
            .field("kafka_rewind_on_gap", &self.kafka_rewind_on_gap)
            .field("topic_replication", &self.topic_replication)
            .field("consumer_stall", &self.consumer_stall)
            .field("kafka_session_timeout", &self.kafka_session_timeout)
            .field("kafka_properties", &self.kafka_properties.keys())
            .field(
                "kafka_producer_properties",
                &self.kafka_producer_properties.keys(),
            )
            .field(
                "kafka_consumer_properties",
                &self.kafka_consumer_properties.keys(),
            )
            .field("jwt_secret", &self.jwt_secret.as_ref().map(|_| "<hidden>"))
            .field("consumer_batch", &self.consumer_batch)
            .field("sweep_after", &self.sweep_after)
            .field("gate_policy", &self.gate_policy)
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
            .field("metrics", &self.metrics)
            .field("metrics_addr", &self.metrics_addr)
            .field("baseline_as_is", &self.baseline_as_is)
            .field("config_file", &self.config_file)
            .finish()
    }
}

/// `url` with the password of its user info replaced by `***`
/// (`mysql://oms:***@host/oms`). An `@` further on (in a path or query)
/// may hide more than the password, never less.
fn redact_url(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[start..];
    let Some(at) = rest.rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].find(':') {
        Some(colon) => format!("{}{}:***{}", &url[..start], &rest[..colon], &rest[at..]),
        None => url.to_owned(),
    }
}

/// A setting's value and where it came from.
struct Value {
    raw: String,
    from: Origin,
}

/// Whether `raw` counts as a value of `name`: blank values count as unset
/// (the password only when empty, as a password may be spaces).
fn is_set(name: &str, raw: &str) -> bool {
    if name == "OMS_ADMIN_PASSWORD" {
        !raw.is_empty()
    } else {
        !raw.trim().is_empty()
    }
}

/// Every setting's value, by variable name, from the first layer that has
/// one: the command line, the environment, the config file, the default.
struct Sources {
    values: HashMap<String, Value>,
    config_file: Option<PathBuf>,
}

impl Sources {
    fn resolve(
        command: &clap::Command,
        matches: &ArgMatches,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let given = |id: &str| -> Option<String> {
            if matches.value_source(id) != Some(ValueSource::CommandLine) {
                return None;
            }
            matches.try_get_one::<String>(id).ok().flatten().cloned()
        };
        let config_file = given(CONFIG_ID)
            .filter(|p| is_set(CONFIG_VAR, p))
            .or_else(|| env(CONFIG_VAR).filter(|p| is_set(CONFIG_VAR, p)))
            .map(PathBuf::from);
        let file = match &config_file {
            Some(path) => read_file(path, command)?,
            None => HashMap::new(),
        };
        let mut values = HashMap::new();
        for (id, name) in settings_of(command) {
            let set = |raw: &String| is_set(name, raw);
            let value = given(id)
                .filter(set)
                .map(|raw| (raw, Origin::Arg))
                .or_else(|| env(name).filter(set).map(|raw| (raw, Origin::Env)))
                .or_else(|| {
                    let raw = file.get(id).filter(|raw| set(raw))?;
                    let path = config_file.clone()?;
                    Some((raw.clone(), Origin::File(path)))
                })
                .or_else(|| {
                    let arg = command.get_arguments().find(|a| a.get_id() == id)?;
                    let default = arg.get_default_values().first()?.to_str()?;
                    Some((default.to_owned(), Origin::Default))
                });
            if let Some((raw, from)) = value {
                values.insert(name.to_owned(), Value { raw, from });
            }
        }
        Ok(Self {
            values,
            config_file,
        })
    }

    fn var(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(|v| v.raw.as_str())
    }

    fn optional(&self, name: &str) -> Option<String> {
        self.var(name).map(str::to_owned)
    }

    fn secret(&self, name: &str) -> Option<SecretString> {
        self.var(name).map(SecretString::from)
    }

    /// The value of a setting that has a default.
    fn required(&self, name: &'static str) -> Result<&str, ConfigError> {
        self.var(name).ok_or(ConfigError::Missing {
            name,
            why: "it has no default",
        })
    }

    fn invalid(&self, name: &'static str, value: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            name,
            value: value.to_owned(),
            reason: reason.into(),
            from: self
                .values
                .get(name)
                .map_or(Origin::Default, |v| v.from.clone()),
        }
    }

    /// `name` as `on` / `off` (also `1`/`0`, `true`/`false`, any case).
    fn switch(&self, name: &'static str) -> Result<bool, ConfigError> {
        let raw = self.required(name)?;
        match raw.trim().to_ascii_lowercase().as_str() {
            "on" | "1" | "true" => Ok(true),
            "off" | "0" | "false" => Ok(false),
            _ => Err(self.invalid(name, raw, "must be `on` or `off`")),
        }
    }

    /// `name` as an integer in `range`.
    fn ranged(&self, name: &'static str, range: RangeInclusive<u64>) -> Result<u64, ConfigError> {
        let raw = self.required(name)?;
        raw.trim()
            .parse::<u64>()
            .ok()
            .filter(|v| range.contains(v))
            .ok_or_else(|| {
                self.invalid(
                    name,
                    raw,
                    format!(
                        "must be an integer from {} to {}",
                        range.start(),
                        range.end()
                    ),
                )
            })
    }

    fn socket_addr(&self, name: &'static str) -> Result<SocketAddr, ConfigError> {
        let raw = self.required(name)?;
        raw.parse().map_err(|e: std::net::AddrParseError| {
            self.invalid(
                name,
                raw,
                format!("{e}; it must be an IP address and a port, e.g. 127.0.0.1:8080"),
            )
        })
    }
}

/// The id of the `--config` option.
const CONFIG_ID: &str = "config";

/// The settings of `command`: (id, variable) of every option with a
/// variable, `--config` aside.
fn settings_of(command: &clap::Command) -> impl Iterator<Item = (&str, &str)> {
    command.get_arguments().filter_map(|arg| {
        let name = arg.get_env()?.to_str()?;
        let id = arg.get_id().as_str();
        (id != CONFIG_ID).then_some((id, name))
    })
}

/// The settings of the TOML file at `path`, by option id, as strings.
fn read_file(path: &Path, command: &clap::Command) -> Result<HashMap<String, String>, ConfigError> {
    let failed = |reason: String| ConfigError::File {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| failed(e.to_string()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| failed(format!("not TOML: {e}")))?;
    let ids: Vec<&str> = settings_of(command).map(|(id, _)| id).collect();
    let mut values = HashMap::new();
    for (key, value) in table {
        if !ids.contains(&key.as_str()) {
            let near = key
                .trim_start_matches("--")
                .to_ascii_lowercase()
                .replace('-', "_");
            let near = near.strip_prefix("oms_").unwrap_or(&near);
            let hint = ids
                .iter()
                .map(|id| (edit_distance(id, near), id))
                .filter(|(distance, _)| *distance <= 2)
                .min()
                .map(|(_, id)| format!("; did you mean `{id}`?"))
                .unwrap_or_default();
            return Err(ConfigError::UnknownKey {
                path: path.to_owned(),
                key,
                hint,
            });
        }
        let raw = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => if b { "on" } else { "off" }.to_owned(),
            other => {
                return Err(failed(format!(
                    "`{key}` must be a string, a number or a boolean, not {}",
                    other.type_str()
                )))
            }
        };
        values.insert(key, raw);
    }
    Ok(values)
}

/// The Levenshtein distance of `a` and `b`, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
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

/// The Kafka settings read by [`kafka_settings`].
type KafkaSettings = (bool, i32, Duration, Duration);

/// `OMS_KAFKA_REWIND_ON_GAP`, `OMS_TOPIC_REPLICATION`,
/// `OMS_CONSUMER_STALL_SECS` and `OMS_KAFKA_SESSION_TIMEOUT_SECS`.
fn kafka_settings(s: &Sources) -> Result<KafkaSettings, ConfigError> {
    let rewind_on_gap = s.switch("OMS_KAFKA_REWIND_ON_GAP")?;
    let replication = s.required("OMS_TOPIC_REPLICATION")?;
    let topic_replication = replication
        .trim()
        .parse::<i32>()
        .ok()
        .filter(|r| *r == -1 || (1..=i32::from(i16::MAX)).contains(r))
        .ok_or_else(|| {
            s.invalid(
                "OMS_TOPIC_REPLICATION",
                replication,
                "must be -1 (the broker's default) or a replication factor from 1",
            )
        })?;
    let consumer_stall = Duration::from_secs(s.ranged("OMS_CONSUMER_STALL_SECS", 1..=3600)?);
    let kafka_session_timeout =
        Duration::from_secs(s.ranged("OMS_KAFKA_SESSION_TIMEOUT_SECS", 1..=300)?);
    Ok((
        rewind_on_gap,
        topic_replication,
        consumer_stall,
        kafka_session_timeout,
    ))
}

/// The librdkafka properties of `name`: `name=value` entries separated by
/// `;` or line breaks, `\;` standing for a `;` in a value; blank entries are
/// skipped, and space around names and values is trimmed. An error names
/// the entry by its position, never shows a value (one may be a password).
fn kafka_properties(
    s: &Sources,
    name: &'static str,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut properties = BTreeMap::new();
    let Some(raw) = s.var(name) else {
        return Ok(properties);
    };
    let hidden = "<hidden>";
    let mut entries = Vec::new();
    let mut entry = String::new();
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&';') => {
                chars.next();
                entry.push(';');
            }
            ';' | '\n' | '\r' => entries.push(std::mem::take(&mut entry)),
            c => entry.push(c),
        }
    }
    entries.push(entry);
    for (i, entry) in entries.iter().filter(|e| !e.trim().is_empty()).enumerate() {
        let Some((key, value)) = entry.split_once('=') else {
            return Err(s.invalid(name, hidden, format!("entry {} is not `name=value`", i + 1)));
        };
        let key = key.trim();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(s.invalid(
                name,
                hidden,
                format!("entry {} has no property name before `=`", i + 1),
            ));
        }
        if properties
            .insert(key.to_owned(), value.trim().to_owned())
            .is_some()
        {
            return Err(s.invalid(name, hidden, format!("`{key}` is given twice")));
        }
    }
    Ok(properties)
}

fn front_door_settings(s: &Sources) -> Result<FrontDoor, ConfigError> {
    let defaults = oms_core::domain::RoomPolicy::default();
    let room = if s.switch("OMS_WAITING_ROOM")? {
        Some(oms_core::domain::RoomPolicy {
            admit_per_sec: u32::try_from(s.ranged("OMS_ADMIT_PER_SEC", 1..=100_000)?)
                .unwrap_or(defaults.admit_per_sec),
            max_active: u32::try_from(s.ranged("OMS_ADMIT_MAX_ACTIVE", 1..=10_000_000)?)
                .unwrap_or(defaults.max_active),
            ttl: Duration::from_secs(s.ranged("OMS_ADMIT_TTL_SECS", 1..=86_400)?),
        })
    } else {
        None
    };
    let rate = s.ranged("OMS_ORDER_RATE", 0..=100_000)?;
    let rate = u32::try_from(rate)
        .ok()
        .filter(|r| *r > 0)
        .map(oms_core::domain::Rate::per_second);
    let refresh = Duration::from_millis(s.ranged("OMS_CATALOG_REFRESH_MS", 50..=60_000)?);
    Ok(FrontDoor {
        waiting_room: room,
        order_rate: rate,
        catalog_refresh: refresh,
    })
}

/// The settings of members and sessions.
struct AuthSettings {
    admin: Option<(String, SecretString)>,
    access_token_ttl: Duration,
    refresh_token_ttl: Duration,
    login_max_failures: u64,
    login_max_failures_per_addr: u64,
    login_window: Duration,
    client_ip_header: Option<String>,
    revocation_check: bool,
    revocation_sync: Duration,
}

fn auth_settings(s: &Sources) -> Result<AuthSettings, ConfigError> {
    let admin = match (s.var("OMS_ADMIN_EMAIL"), s.var("OMS_ADMIN_PASSWORD")) {
        (None, None) => None,
        (Some(email), Some(password)) => {
            oms_core::domain::Email::parse(email)
                .map_err(|e| s.invalid("OMS_ADMIN_EMAIL", email, e.to_string()))?;
            oms_core::domain::validate_password(password).map_err(|e| ConfigError::Insecure {
                name: "OMS_ADMIN_PASSWORD",
                reason: e.to_string(),
            })?;
            Some((email.to_owned(), SecretString::from(password)))
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
    let access_token_ttl = Duration::from_secs(s.ranged("OMS_ACCESS_TOKEN_TTL_SECS", 60..=86_400)?);
    let refresh_token_ttl =
        Duration::from_secs(s.ranged("OMS_REFRESH_TOKEN_TTL_SECS", 300..=365 * 86_400)?);
    if refresh_token_ttl <= access_token_ttl {
        return Err(s.invalid(
            "OMS_REFRESH_TOKEN_TTL_SECS",
            &refresh_token_ttl.as_secs().to_string(),
            format!(
                "must be longer than OMS_ACCESS_TOKEN_TTL_SECS ({} s)",
                access_token_ttl.as_secs()
            ),
        ));
    }
    let client_ip_header = match s.var("OMS_CLIENT_IP_HEADER") {
        None => None,
        Some(name) => {
            let name = name.trim().to_ascii_lowercase();
            header_name(&name).ok_or_else(|| {
                s.invalid(
                    "OMS_CLIENT_IP_HEADER",
                    &name,
                    "must be a header name, e.g. x-forwarded-for",
                )
            })?;
            Some(name)
        }
    };
    Ok(AuthSettings {
        admin,
        access_token_ttl,
        refresh_token_ttl,
        login_max_failures: s.ranged("OMS_LOGIN_MAX_FAILURES", 1..=1000)?,
        login_max_failures_per_addr: s.ranged("OMS_LOGIN_MAX_FAILURES_PER_ADDR", 1..=1_000_000)?,
        login_window: Duration::from_secs(s.ranged("OMS_LOGIN_WINDOW_SECS", 1..=86_400)?),
        client_ip_header,
        revocation_check: s.switch("OMS_REVOCATION_CHECK")?,
        revocation_sync: Duration::from_millis(s.ranged("OMS_REVOCATION_SYNC_MS", 0..=10_000)?),
    })
}

impl Settings {
    /// The clap command of the settings: one option `--some-name` per
    /// setting, with its variable `OMS_SOME_NAME`, its default and its help
    /// line, plus `--config FILE`. Embed it in another command with
    /// [`clap::Command::args`] on its arguments, or render its help.
    pub fn command() -> clap::Command {
        Cli::command()
    }

    /// Reads the `OMS_*` variables and the `OMS_CONFIG` file, with the
    /// defaults of API.md; ignores the command line.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::parse_from([env!("CARGO_PKG_NAME")], |name| std::env::var(name).ok())
    }

    /// Reads the command line, the `OMS_*` variables and the config file
    /// (`--config` or `OMS_CONFIG`), in this order of precedence. Like
    /// clap's `parse`, it prints the help for `--help` and exits 0, and
    /// prints the error and exits 2 for a command line that is not valid
    /// (an unknown option, a missing value); a setting that is not valid
    /// is returned as the error.
    pub fn from_args() -> Result<Self, ConfigError> {
        match Self::parse_from(std::env::args_os(), |name| std::env::var(name).ok()) {
            Err(ConfigError::Command(e)) => e.exit(),
            other => other,
        }
    }

    /// The settings of the command line `args` (the program's name first),
    /// the variables `env` gives (`None`: unset) and the config file, for
    /// embedders and tests: it reads neither the process's environment nor
    /// its arguments. `--help`, `--version` and a command line that is not
    /// valid are [`ConfigError::Command`].
    pub fn parse_from<I, T>(
        args: I,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let command = Self::command();
        let matches = command
            .clone()
            .try_get_matches_from(args)
            .map_err(ConfigError::Command)?;
        let sources = Sources::resolve(&command, &matches, &env)?;
        Self::from_sources(&sources)
    }

    fn from_sources(s: &Sources) -> Result<Self, ConfigError> {
        let http_addr = s.socket_addr("OMS_HTTP_ADDR")?;
        let partitions = s.required("OMS_ORDER_PARTITIONS")?;
        let order_partitions = partitions
            .parse::<i32>()
            .ok()
            .filter(|p| (1..=1024).contains(p))
            .ok_or_else(|| {
                s.invalid(
                    "OMS_ORDER_PARTITIONS",
                    partitions,
                    "must be an integer from 1 to 1024",
                )
            })?;
        let sweep = s.required("OMS_SWEEP_AFTER_SECS")?;
        let sweep_after = sweep
            .parse::<u64>()
            .map_err(|e| {
                s.invalid(
                    "OMS_SWEEP_AFTER_SECS",
                    sweep,
                    format!("{e}; it must be 0 (off) or a number of seconds from 30"),
                )
            })
            .and_then(|secs| match secs {
                0 => Ok(None),
                1..=29 => Err(s.invalid(
                    "OMS_SWEEP_AFTER_SECS",
                    sweep,
                    "must be 0 (off) or at least 30 s, well above the 5 s send bound",
                )),
                _ => Ok(Some(Duration::from_secs(secs))),
            })?;
        let gate_policy = GatePolicy {
            min_rate: u32::try_from(s.ranged("OMS_GATE_SETTLE_RATE", 1..=1_000_000)?)
                .unwrap_or(u32::MAX),
            catch_up: Duration::from_secs(s.ranged("OMS_GATE_CATCH_UP_SECS", 0..=3600)?),
            ..GatePolicy::default()
        };
        let batch = s.required("OMS_CONSUMER_BATCH")?;
        let consumer_batch = batch
            .parse::<usize>()
            .ok()
            .filter(|b| (1..=10_000).contains(b))
            .ok_or_else(|| {
                s.invalid(
                    "OMS_CONSUMER_BATCH",
                    batch,
                    "must be an integer from 1 to 10000",
                )
            })?;
        let stock_gate = s.switch("OMS_STOCK_GATE")?;
        let redis_prefix = s.required("OMS_REDIS_PREFIX")?;
        if redis_prefix.len() > 64 || !redis_prefix.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(s.invalid(
                "OMS_REDIS_PREFIX",
                redis_prefix,
                "must be 1 to 64 visible ASCII characters",
            ));
        }
        let http_request_timeout =
            Duration::from_secs(s.ranged("OMS_HTTP_REQUEST_TIMEOUT_SECS", 6..=3600)?);
        let http_header_timeout =
            Duration::from_secs(s.ranged("OMS_HTTP_HEADER_TIMEOUT_SECS", 1..=300)?);
        let http_max_in_flight =
            usize::try_from(s.ranged("OMS_HTTP_MAX_IN_FLIGHT", 1..=1_000_000)?)
                .unwrap_or(DEFAULT_HTTP_MAX_IN_FLIGHT);
        let http_max_connections =
            usize::try_from(s.ranged("OMS_HTTP_MAX_CONNECTIONS", 1..=1_000_000)?)
                .unwrap_or(DEFAULT_HTTP_MAX_CONNECTIONS);
        let (kafka_rewind_on_gap, topic_replication, consumer_stall, kafka_session_timeout) =
            kafka_settings(s)?;
        let auth = auth_settings(s)?;
        let front_door = front_door_settings(s)?;
        let payment_timeout =
            Duration::from_secs(s.ranged("OMS_PAYMENT_TIMEOUT_SECS", 1..=604_800)?);
        let toss = match s.secret("OMS_TOSS_SECRET_KEY") {
            None => None,
            Some(secret_key) => Some(TossSettings {
                secret_key,
                base_url: s.required("OMS_TOSS_BASE_URL")?.to_owned(),
            }),
        };
        Ok(Self {
            front_door,
            payment_timeout,
            toss,
            events_topic: s.required("OMS_EVENTS_TOPIC")?.to_owned(),
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
            kafka_properties: kafka_properties(s, "OMS_KAFKA_PROPERTIES")?,
            kafka_producer_properties: kafka_properties(s, "OMS_KAFKA_PRODUCER_PROPERTIES")?,
            kafka_consumer_properties: kafka_properties(s, "OMS_KAFKA_CONSUMER_PROPERTIES")?,
            http_request_timeout,
            http_header_timeout,
            http_max_in_flight,
            http_max_connections,
            redis_prefix: redis_prefix.to_owned(),
            stock_gate,
            consumer_batch,
            sweep_after,
            gate_policy,
            http_addr,
            kafka_brokers: s.optional("OMS_KAFKA_BROKERS"),
            redis_url: s.optional("OMS_REDIS_URL"),
            redis_cluster: s.switch("OMS_REDIS_CLUSTER")?,
            database_url: s.optional("OMS_DATABASE_URL"),
            order_topic: s.required("OMS_ORDER_TOPIC")?.to_owned(),
            dlq_topic: s.required("OMS_DLQ_TOPIC")?.to_owned(),
            order_partitions,
            consumer_group: s.required("OMS_CONSUMER_GROUP")?.to_owned(),
            jwt_secret: s.secret("OMS_JWT_SECRET"),
            metrics: s.switch("OMS_METRICS")?,
            metrics_addr: s.socket_addr("OMS_METRICS_ADDR")?,
            baseline_as_is: s.switch("OMS_BASELINE_AS_IS")?,
            config_file: s.config_file.clone(),
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
            self.jwt_secret.as_ref().map(ExposeSecret::expose_secret),
            self.is_embedded(),
            self.http_addr,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const STRONG: &str = "0123456789abcdef0123456789abcdef";

    /// The settings of the command line `args` (program name added) and the
    /// variables `env`, and nothing of this process's environment.
    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::parse_from(std::iter::once("oms").chain(args.iter().copied()), |name| {
            env.get(name).cloned()
        })
    }

    fn settings(args: &[&str], env: &[(&str, &str)]) -> Settings {
        match parse(args, env) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    fn error(args: &[&str], env: &[(&str, &str)]) -> ConfigError {
        match parse(args, env) {
            Ok(s) => panic!("accepted: {s:?}"),
            Err(e) => e,
        }
    }

    /// A TOML file, removed when dropped.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(contents: &str) -> Self {
            let path = std::env::temp_dir()
                .join(format!("oms-config-{}.toml", uuid::Uuid::new_v4().simple()));
            std::fs::write(&path, contents).unwrap();
            Self(path)
        }

        fn path(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// Every variable of the command, `OMS_CONFIG` included.
    fn variables() -> BTreeSet<String> {
        Settings::command()
            .get_arguments()
            .filter_map(|a| a.get_env())
            .map(|e| e.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn the_command_is_well_formed() {
        Settings::command().debug_assert();
    }

    #[test]
    fn every_option_is_named_after_its_variable() {
        for arg in Settings::command().get_arguments() {
            let Some(name) = arg.get_env().and_then(|e| e.to_str()) else {
                continue;
            };
            let id = arg.get_id().as_str();
            assert_eq!(
                Some(id.to_owned()),
                name.strip_prefix("OMS_").map(str::to_ascii_lowercase),
                "{name}"
            );
            assert_eq!(
                arg.get_long().map(|l| format!("--{l}")),
                Some(option_of(name)),
                "{name}"
            );
            assert!(arg.get_help().is_some(), "{name} has no help line");
        }
    }

    #[test]
    fn the_gate_keepers_pace_is_set_by_two_variables() {
        let s = settings(
            &[],
            &[
                ("OMS_GATE_SETTLE_RATE", "250"),
                ("OMS_GATE_CATCH_UP_SECS", "0"),
            ],
        );
        assert_eq!(s.gate_policy.min_rate, 250);
        assert_eq!(s.gate_policy.catch_up, Duration::ZERO);
        assert_eq!(s.gate_policy.batch, GatePolicy::default().batch);
        let s = settings(&["--gate-catch-up-secs", "120"], &[]);
        assert_eq!(s.gate_policy.catch_up, Duration::from_secs(120));
        assert_eq!(s.gate_policy.min_rate, 1000);
    }

    #[test]
    fn the_defaults_are_those_of_api_md() {
        let s = settings(&[], &[]);
        assert_eq!(s.http_addr, addr("127.0.0.1:8080"));
        assert!(s.is_embedded());
        assert_eq!(s.order_topic, "order-request-v1");
        assert_eq!(s.dlq_topic, "order-request-dlq-v1");
        assert_eq!(s.events_topic, "order-events-v1");
        assert_eq!(s.order_partitions, 6);
        assert_eq!(s.consumer_group, "oms-order-group");
        assert!(!s.kafka_rewind_on_gap);
        assert_eq!(s.topic_replication, -1);
        assert_eq!(s.consumer_stall, Duration::from_secs(30));
        assert_eq!(s.kafka_session_timeout, Duration::from_secs(10));
        assert!(s.jwt_secret.is_none());
        assert_eq!(s.consumer_batch, 500);
        assert_eq!(s.sweep_after, Some(Duration::from_secs(300)));
        assert_eq!(s.gate_policy, GatePolicy::default());
        assert!(s.stock_gate);
        assert_eq!(s.redis_prefix, "oms");
        assert_eq!(s.http_request_timeout, DEFAULT_HTTP_REQUEST_TIMEOUT);
        assert_eq!(s.http_header_timeout, DEFAULT_HTTP_HEADER_TIMEOUT);
        assert_eq!(s.http_max_in_flight, DEFAULT_HTTP_MAX_IN_FLIGHT);
        assert_eq!(s.http_max_connections, DEFAULT_HTTP_MAX_CONNECTIONS);
        assert!(s.admin.is_none());
        assert_eq!(s.access_token_ttl, DEFAULT_ACCESS_TOKEN_TTL);
        assert_eq!(s.refresh_token_ttl, DEFAULT_REFRESH_TOKEN_TTL);
        assert_eq!(s.login_max_failures, 5);
        assert_eq!(s.login_max_failures_per_addr, 50);
        assert_eq!(s.login_window, Duration::from_secs(900));
        assert!(s.client_ip_header.is_none());
        assert!(s.revocation_check);
        assert_eq!(s.revocation_sync, Duration::from_millis(250));
        assert_eq!(s.front_door, FrontDoor::default());
        assert_eq!(s.payment_timeout, Duration::from_secs(600));
        assert!(s.toss.is_none());
        assert!(s.metrics);
        assert_eq!(s.metrics_addr, addr("127.0.0.1:9464"));
        assert!(!s.baseline_as_is);
        assert!(s.config_file.is_none());

        let room = settings(&[], &[("OMS_WAITING_ROOM", "on")]);
        assert_eq!(
            room.front_door.waiting_room,
            Some(oms_core::domain::RoomPolicy::default())
        );
        let toss = settings(&[], &[("OMS_TOSS_SECRET_KEY", "test_sk_x")]).toss;
        assert_eq!(
            toss.map(|t| t.base_url).as_deref(),
            Some("https://api.tosspayments.com")
        );
    }

    #[test]
    fn blank_values_count_as_unset() {
        let s = settings(
            &["--order-rate", " "],
            &[("OMS_HTTP_ADDR", ""), ("OMS_KAFKA_BROKERS", "  ")],
        );
        assert_eq!(s.http_addr, addr("127.0.0.1:8080"));
        assert!(s.kafka_brokers.is_none());
        assert_eq!(s.front_door, FrontDoor::default());
    }

    #[test]
    fn the_command_line_wins_over_the_environment_over_the_file_over_the_defaults() {
        let file = TempFile::new(
            "http_addr = \"127.0.0.1:1001\"\norder_rate = 20\nstock_gate = false\nconsumer_group = \"from-file\"\n",
        );
        let rate = |s: &Settings| s.front_door.order_rate;
        let per_second = |n| Some(oms_core::domain::Rate::per_second(n));

        let defaults = settings(&[], &[]);
        assert_eq!(rate(&defaults), per_second(10));

        let from_file = settings(&["--config", file.path()], &[]);
        assert_eq!(from_file.http_addr, addr("127.0.0.1:1001"));
        assert_eq!(rate(&from_file), per_second(20));
        assert!(!from_file.stock_gate);
        assert_eq!(from_file.consumer_group, "from-file");
        assert_eq!(from_file.config_file.as_deref(), Some(file.0.as_path()));
        // The file named by OMS_CONFIG is read the same way.
        let by_variable = settings(&[], &[("OMS_CONFIG", file.path())]);
        assert_eq!(rate(&by_variable), per_second(20));

        let env = [
            ("OMS_CONFIG", file.path()),
            ("OMS_HTTP_ADDR", "127.0.0.1:1002"),
            ("OMS_ORDER_RATE", "30"),
        ];
        let from_env = settings(&[], &env);
        assert_eq!(from_env.http_addr, addr("127.0.0.1:1002"));
        assert_eq!(rate(&from_env), per_second(30));
        assert_eq!(from_env.consumer_group, "from-file");

        let from_args = settings(&["--http-addr", "127.0.0.1:1003", "--order-rate=40"], &env);
        assert_eq!(from_args.http_addr, addr("127.0.0.1:1003"));
        assert_eq!(rate(&from_args), per_second(40));
        assert!(!from_args.stock_gate);

        // --config on the command line wins over OMS_CONFIG.
        let other = TempFile::new("order_rate = 50\n");
        let s = settings(&["--config", other.path()], &[("OMS_CONFIG", file.path())]);
        assert_eq!(rate(&s), per_second(50));
        assert_eq!(s.http_addr, addr("127.0.0.1:8080"));
    }

    #[test]
    fn an_unknown_key_in_the_file_is_an_error_naming_it() {
        let file = TempFile::new("order_rate = 20\nordr_rate = 30\n");
        let e = error(&["--config", file.path()], &[]);
        assert!(
            matches!(&e, ConfigError::UnknownKey { key, .. } if key == "ordr_rate"),
            "{e:?}"
        );
        let message = e.to_string();
        assert!(message.contains("`ordr_rate`"), "{message}");
        assert!(message.contains(file.path()), "{message}");
        assert!(message.contains("did you mean `order_rate`?"), "{message}");
        let far = TempFile::new("colour = \"blue\"\n");
        let message = error(&["--config", far.path()], &[]).to_string();
        assert!(!message.contains("did you mean"), "{message}");

        for (key, near) in [
            ("http-addr", "http_addr"),
            ("OMS_HTTP_ADDR", "http_addr"),
            ("ordr_rate", "order_rate"),
            ("--order-rates", "order_rate"),
        ] {
            let file = TempFile::new(&format!("{key:?} = \"127.0.0.1:1\"\n"));
            let message = error(&["--config", file.path()], &[]).to_string();
            assert!(
                message.contains(&format!("did you mean `{near}`")),
                "{message}"
            );
        }
        // `config` names the file; it is not a setting of the file.
        let file = TempFile::new("config = \"other.toml\"\n");
        assert!(matches!(
            error(&["--config", file.path()], &[]),
            ConfigError::UnknownKey { .. }
        ));
    }

    #[test]
    fn a_file_that_cannot_be_used_is_an_error_naming_it() {
        let missing = std::env::temp_dir().join("oms-config-that-does-not-exist.toml");
        let missing = missing.to_str().unwrap();
        let e = error(&[], &[("OMS_CONFIG", missing)]);
        assert!(matches!(&e, ConfigError::File { .. }), "{e:?}");
        assert!(e.to_string().contains(missing), "{e}");

        let broken = TempFile::new("order_rate = = 3\n");
        let e = error(&["--config", broken.path()], &[]);
        assert!(e.to_string().contains("not TOML"), "{e}");

        let table = TempFile::new("[kafka]\nbrokers = \"x\"\n");
        let e = error(&["--config", table.path()], &[]);
        assert!(
            matches!(&e, ConfigError::UnknownKey { key, .. } if key == "kafka"),
            "{e:?}"
        );

        let array = TempFile::new("kafka_brokers = [\"a:9092\", \"b:9092\"]\n");
        let e = error(&["--config", array.path()], &[]);
        assert!(
            e.to_string().contains("`kafka_brokers` must be a string"),
            "{e}"
        );
    }

    /// Variables and their values.
    type Env<'a> = &'a [(&'a str, &'a str)];

    /// A bad value of each kind, with the variables it needs besides.
    const BAD: &[(&str, &str, Env<'_>)] = &[
        ("OMS_HTTP_ADDR", "localhost", &[]),
        ("OMS_METRICS_ADDR", "9464", &[]),
        ("OMS_ORDER_PARTITIONS", "0", &[]),
        ("OMS_ORDER_PARTITIONS", "1025", &[]),
        ("OMS_ORDER_PARTITIONS", "six", &[]),
        ("OMS_SWEEP_AFTER_SECS", "10", &[]),
        ("OMS_SWEEP_AFTER_SECS", "5m", &[]),
        ("OMS_GATE_SETTLE_RATE", "0", &[]),
        ("OMS_GATE_CATCH_UP_SECS", "3601", &[]),
        ("OMS_CONSUMER_BATCH", "0", &[]),
        ("OMS_CONSUMER_BATCH", "10001", &[]),
        ("OMS_STOCK_GATE", "maybe", &[]),
        ("OMS_REDIS_CLUSTER", "three", &[]),
        ("OMS_METRICS", "yes", &[]),
        ("OMS_BASELINE_AS_IS", "2", &[]),
        ("OMS_REDIS_PREFIX", "has space", &[]),
        ("OMS_HTTP_REQUEST_TIMEOUT_SECS", "5", &[]),
        ("OMS_HTTP_HEADER_TIMEOUT_SECS", "0", &[]),
        ("OMS_HTTP_MAX_IN_FLIGHT", "0", &[]),
        ("OMS_HTTP_MAX_CONNECTIONS", "many", &[]),
        ("OMS_KAFKA_REWIND_ON_GAP", "sometimes", &[]),
        ("OMS_TOPIC_REPLICATION", "0", &[]),
        ("OMS_CONSUMER_STALL_SECS", "3601", &[]),
        ("OMS_KAFKA_SESSION_TIMEOUT_SECS", "301", &[]),
        ("OMS_ACCESS_TOKEN_TTL_SECS", "59", &[]),
        ("OMS_REFRESH_TOKEN_TTL_SECS", "299", &[]),
        (
            "OMS_REFRESH_TOKEN_TTL_SECS",
            "900",
            &[("OMS_ACCESS_TOKEN_TTL_SECS", "900")],
        ),
        ("OMS_LOGIN_MAX_FAILURES", "0", &[]),
        ("OMS_LOGIN_MAX_FAILURES_PER_ADDR", "1000001", &[]),
        ("OMS_LOGIN_WINDOW_SECS", "0", &[]),
        ("OMS_CLIENT_IP_HEADER", "x forwarded for", &[]),
        ("OMS_REVOCATION_CHECK", "never", &[]),
        ("OMS_REVOCATION_SYNC_MS", "10001", &[]),
        ("OMS_WAITING_ROOM", "open", &[]),
        ("OMS_ADMIT_PER_SEC", "0", &[("OMS_WAITING_ROOM", "on")]),
        ("OMS_ADMIT_MAX_ACTIVE", "0", &[("OMS_WAITING_ROOM", "on")]),
        ("OMS_ADMIT_TTL_SECS", "86401", &[("OMS_WAITING_ROOM", "on")]),
        ("OMS_ORDER_RATE", "-1", &[]),
        ("OMS_CATALOG_REFRESH_MS", "49", &[]),
        ("OMS_PAYMENT_TIMEOUT_SECS", "0", &[]),
        (
            "OMS_ADMIN_EMAIL",
            "not-an-email",
            &[("OMS_ADMIN_PASSWORD", "a long enough password")],
        ),
    ];

    #[test]
    fn each_bad_value_is_an_error_naming_the_variable_the_option_the_value_and_its_origin() {
        for (name, value, with) in BAD {
            let mut env = with.to_vec();
            env.push((name, value));
            let from_env = error(&[], &env);
            let ConfigError::Invalid {
                name: named,
                value: shown,
                from,
                ..
            } = &from_env
            else {
                panic!("{name}={value}: {from_env:?}");
            };
            assert_eq!((named, shown.as_str()), (name, *value), "{from_env}");
            assert_eq!(*from, Origin::Env, "{from_env}");
            let message = from_env.to_string();
            for part in [
                (*name).to_owned(),
                option_of(name),
                format!("{value:?}"),
                "from the environment".to_owned(),
                "is not valid: ".to_owned(),
            ] {
                assert!(message.contains(&part), "{part} not in: {message}");
            }

            let option = format!("{}={value}", option_of(name));
            let from_args = error(&[&option], with);
            assert!(
                matches!(&from_args, ConfigError::Invalid { name: n, from: Origin::Arg, .. } if n == name),
                "{option}: {from_args:?}"
            );
            assert!(from_args.to_string().contains("from the command line"));

            let key = name.trim_start_matches("OMS_").to_ascii_lowercase();
            let file = TempFile::new(&format!("{key} = {value:?}\n"));
            let from_file = error(&["--config", file.path()], with);
            assert!(
                matches!(&from_file, ConfigError::Invalid { name: n, from: Origin::File(p), .. } if n == name && p == &file.0),
                "{key}: {from_file:?}"
            );
            assert!(from_file.to_string().contains(file.path()));
        }
        // Every setting with a rule has a bad value above.
        let checked: BTreeSet<&str> = BAD.iter().map(|(name, _, _)| *name).collect();
        let free = [
            "OMS_CONFIG",
            "OMS_KAFKA_BROKERS",
            "OMS_REDIS_URL",
            "OMS_DATABASE_URL",
            "OMS_ORDER_TOPIC",
            "OMS_DLQ_TOPIC",
            "OMS_EVENTS_TOPIC",
            "OMS_CONSUMER_GROUP",
            "OMS_JWT_SECRET",
            "OMS_ADMIN_PASSWORD",
            "OMS_TOSS_SECRET_KEY",
            "OMS_TOSS_BASE_URL",
        ];
        // Bad values of these are tested by
        // `kafka_properties_are_entries_of_name_and_value_whose_values_never_show`
        // (their values are never shown).
        let hidden = [
            "OMS_KAFKA_PROPERTIES",
            "OMS_KAFKA_PRODUCER_PROPERTIES",
            "OMS_KAFKA_CONSUMER_PROPERTIES",
        ];
        for name in variables() {
            assert!(
                checked.contains(name.as_str())
                    || free.contains(&name.as_str())
                    || hidden.contains(&name.as_str()),
                "no bad value of {name} is tested"
            );
        }
    }

    #[test]
    fn the_admin_needs_both_variables_and_a_password_that_is_never_shown() {
        let password = "a long enough password";
        let s = settings(
            &[],
            &[
                ("OMS_ADMIN_EMAIL", "ops@example.com"),
                ("OMS_ADMIN_PASSWORD", password),
            ],
        );
        let (email, secret) = s.admin.as_ref().unwrap();
        assert_eq!(email, "ops@example.com");
        assert_eq!(secret.expose_secret(), password);

        assert!(matches!(
            error(&[], &[("OMS_ADMIN_EMAIL", "ops@example.com")]),
            ConfigError::Missing {
                name: "OMS_ADMIN_PASSWORD",
                ..
            }
        ));
        assert!(matches!(
            error(&[], &[("OMS_ADMIN_PASSWORD", password)]),
            ConfigError::Missing {
                name: "OMS_ADMIN_EMAIL",
                ..
            }
        ));
        let weak = "short";
        let e = error(
            &[],
            &[
                ("OMS_ADMIN_EMAIL", "ops@example.com"),
                ("OMS_ADMIN_PASSWORD", weak),
            ],
        );
        assert!(
            matches!(
                &e,
                ConfigError::Insecure {
                    name: "OMS_ADMIN_PASSWORD",
                    ..
                }
            ),
            "{e:?}"
        );
        let message = e.to_string();
        assert!(message.contains("--admin-password"), "{message}");
        assert!(!message.contains(weak), "{message}");
    }

    #[test]
    fn a_negative_replication_factor_is_taken_on_the_command_line() {
        let s = settings(
            &["--topic-replication", "-1"],
            &[("OMS_TOPIC_REPLICATION", "3")],
        );
        assert_eq!(s.topic_replication, -1);
        assert_eq!(
            settings(&[], &[("OMS_TOPIC_REPLICATION", "3")]).topic_replication,
            3
        );
    }

    #[test]
    fn kafka_properties_are_entries_of_name_and_value_whose_values_never_show() {
        let file = TempFile::new(
            "kafka_producer_properties = \"\"\"\ncompression.type = zstd\nlinger.ms=5\n\"\"\"\n",
        );
        let s = settings(
            &["--config", file.path()],
            &[
                (
                    "OMS_KAFKA_PROPERTIES",
                    " security.protocol=SASL_SSL; sasl.password = pa\\;ss=word ;;client.id=oms-1",
                ),
                ("OMS_KAFKA_CONSUMER_PROPERTIES", "  "),
            ],
        );
        let expected: BTreeMap<String, String> = [
            ("client.id", "oms-1"),
            ("sasl.password", "pa;ss=word"),
            ("security.protocol", "SASL_SSL"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(s.kafka_properties, expected);
        assert_eq!(
            s.kafka_producer_properties
                .get("compression.type")
                .map(String::as_str),
            Some("zstd")
        );
        assert_eq!(
            s.kafka_producer_properties
                .get("linger.ms")
                .map(String::as_str),
            Some("5")
        );
        assert!(s.kafka_consumer_properties.is_empty());
        let shown = format!("{s:?}");
        assert!(shown.contains("sasl.password"), "{shown}");
        assert!(!shown.contains("pa;ss"), "{shown}");
        assert!(
            !Settings::command()
                .render_long_help()
                .to_string()
                .contains("SASL_SSL; sasl.password"),
            "help hides the values"
        );

        for name in [
            "OMS_KAFKA_PROPERTIES",
            "OMS_KAFKA_PRODUCER_PROPERTIES",
            "OMS_KAFKA_CONSUMER_PROPERTIES",
        ] {
            for (raw, why) in [
                ("security.protocol", "entry 1 is not `name=value`"),
                ("a=1;=secret", "entry 2 has no property name"),
                ("a=1;a=2", "`a` is given twice"),
            ] {
                let e = error(&[], &[(name, raw)]);
                let shown = e.to_string();
                assert!(
                    matches!(&e, ConfigError::Invalid { name: n, from: Origin::Env, .. } if *n == name),
                    "{e:?}"
                );
                assert!(shown.contains(why), "{shown}");
                assert!(shown.contains(&option_of(name)), "{shown}");
                assert!(!shown.contains("secret"), "{shown}");
            }
        }
    }

    #[test]
    fn switches_take_on_and_off_and_their_old_spellings() {
        for (raw, on) in [
            ("on", true),
            ("ON", true),
            (" 1 ", true),
            ("true", true),
            ("off", false),
            ("Off", false),
            ("0", false),
            ("false", false),
        ] {
            let s = settings(
                &[],
                &[
                    ("OMS_STOCK_GATE", raw),
                    ("OMS_METRICS", raw),
                    ("OMS_REVOCATION_CHECK", raw),
                    ("OMS_KAFKA_REWIND_ON_GAP", raw),
                    ("OMS_BASELINE_AS_IS", raw),
                ],
            );
            assert_eq!(
                [
                    s.stock_gate,
                    s.metrics,
                    s.revocation_check,
                    s.kafka_rewind_on_gap,
                    s.baseline_as_is
                ],
                [on; 5],
                "{raw}"
            );
            assert_eq!(
                settings(&[], &[("OMS_WAITING_ROOM", raw)])
                    .front_door
                    .waiting_room
                    .is_some(),
                on
            );
        }
        let file = TempFile::new("metrics = false\nstock_gate = \"off\"\n");
        let s = settings(&["--config", file.path()], &[]);
        assert!(!s.metrics && !s.stock_gate);
    }

    #[test]
    fn debug_never_shows_the_secrets_nor_the_urls_passwords() {
        let jwt = "jwt-secret-0123456789abcdef0123456789";
        let password = "admin-password-9876";
        let toss = "test_sk_toss-secret-5555";
        let s = settings(
            &["--jwt-secret", jwt],
            &[
                ("OMS_ADMIN_EMAIL", "ops@example.com"),
                ("OMS_ADMIN_PASSWORD", password),
                ("OMS_TOSS_SECRET_KEY", toss),
                (
                    "OMS_DATABASE_URL",
                    "mysql://oms:dbpass-4444@127.0.0.1:13306/oms",
                ),
                ("OMS_REDIS_URL", "redis://:redispass-3333@127.0.0.1:16379/0"),
                ("OMS_KAFKA_BROKERS", "127.0.0.1:19092"),
            ],
        );
        for shown in [format!("{s:?}"), format!("{s:#?}")] {
            for secret in [jwt, password, toss, "dbpass-4444", "redispass-3333"] {
                assert!(!shown.contains(secret), "{secret} shown in {shown}");
            }
            assert!(
                shown.contains("mysql://oms:***@127.0.0.1:13306/oms"),
                "{shown}"
            );
            assert!(shown.contains("redis://:***@127.0.0.1:16379/0"), "{shown}");
            assert!(shown.contains("ops@example.com"), "{shown}");
        }
        // The values themselves are there for whoever asks for them.
        assert_eq!(
            s.jwt_secret.as_ref().map(ExposeSecret::expose_secret),
            Some(jwt)
        );
        assert_eq!(
            s.toss.as_ref().map(|t| t.secret_key.expose_secret()),
            Some(toss)
        );
        assert_eq!(s.checked_jwt_secret().ok().as_deref(), Some(jwt));
    }

    #[test]
    fn urls_lose_their_passwords_only() {
        for (url, shown) in [
            (
                "mysql://oms:oms@127.0.0.1:13306/oms",
                "mysql://oms:***@127.0.0.1:13306/oms",
            ),
            ("redis://:p%40ss@h:6379/0", "redis://:***@h:6379/0"),
            ("redis://user@h:6379", "redis://user@h:6379"),
            ("redis://127.0.0.1:16379", "redis://127.0.0.1:16379"),
            ("mysql://u:pa/ss@h/db", "mysql://u:***@h/db"),
        ] {
            assert_eq!(redact_url(url), shown);
        }
    }

    #[test]
    fn help_hides_the_values_of_the_secrets() {
        let command = Settings::command();
        for name in [
            "OMS_JWT_SECRET",
            "OMS_ADMIN_PASSWORD",
            "OMS_TOSS_SECRET_KEY",
            "OMS_REDIS_URL",
            "OMS_DATABASE_URL",
        ] {
            let arg = command
                .get_arguments()
                .find(|a| a.get_env().and_then(|e| e.to_str()) == Some(name))
                .unwrap();
            assert!(arg.is_hide_env_values_set(), "{name}");
            assert!(arg.get_default_values().is_empty(), "{name}");
        }
    }

    #[test]
    fn help_lists_every_variable_with_its_option_and_default() {
        let help = Settings::command().render_long_help().to_string();
        let command = Settings::command();
        for arg in command.get_arguments() {
            let Some(name) = arg.get_env().and_then(|e| e.to_str()) else {
                continue;
            };
            assert!(
                help.contains(&format!("[env: {name}")),
                "{name} not in\n{help}"
            );
            assert!(help.contains(&option_of(name)), "{name}");
            if let Some(default) = arg.get_default_values().first() {
                let default = default.to_string_lossy();
                assert!(help.contains(&format!("[default: {default}]")), "{name}");
            }
        }
        assert!(help.contains("OMS_METRICS_ADDR") && help.contains("127.0.0.1:9464"));

        // `--help` on the command line is the same help, and exits 0.
        match error(&["--help"], &[]) {
            ConfigError::Command(e) => {
                assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp);
                assert_eq!(e.exit_code(), 0);
                let shown = e.to_string();
                for name in variables() {
                    assert!(shown.contains(&name), "{name}");
                }
            }
            other => panic!("{other:?}"),
        }
        match error(&["--no-such-option"], &[]) {
            ConfigError::Command(e) => assert_eq!(e.exit_code(), 2),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_readme_documents_every_variable_and_no_other() {
        let readme = include_str!("../README.md");
        let section = readme
            .split("\n## ")
            .find(|s| s.starts_with("Configuration\n"))
            .unwrap();
        let documented: BTreeSet<String> = section
            .lines()
            .filter(|l| l.starts_with('|'))
            .flat_map(|l| {
                l.split(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
                    .filter(|w| w.starts_with("OMS_") && w.len() > 4)
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect();
        let help = Settings::command().render_long_help().to_string();
        let listed: BTreeSet<String> = variables()
            .into_iter()
            .filter(|name| help.contains(name.as_str()))
            .collect();
        assert_eq!(listed, variables(), "help misses variables");
        assert_eq!(
            documented, listed,
            "README's Configuration table and --help disagree"
        );
    }

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
    fn the_secret_policy_applies_to_the_parsed_settings() {
        let services = [("OMS_KAFKA_BROKERS", "127.0.0.1:19092")];
        let e = settings(&[], &services).checked_jwt_secret().unwrap_err();
        assert!(matches!(
            e,
            ConfigError::Missing {
                name: "OMS_JWT_SECRET",
                ..
            }
        ));
        assert!(e.to_string().contains("--jwt-secret"), "{e}");
        let weak = settings(&["--jwt-secret", "weak-secret"], &services)
            .checked_jwt_secret()
            .unwrap_err()
            .to_string();
        assert!(!weak.contains("weak-secret"), "{weak}");
        assert_eq!(
            settings(&[], &[]).checked_jwt_secret().ok().as_deref(),
            Some(DEV_JWT_SECRET)
        );
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
