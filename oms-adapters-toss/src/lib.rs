#![doc = include_str!("../README.md")]
//!
//! # Checked before any request
//!
//! What the gateway cannot send never leaves the process: here the gateway
//! points at a port where nothing listens, and the cancel is refused as
//! `Invalid` before any connection is tried.
//!
//! ```
//! use std::time::Duration;
//! use oms_adapters_toss::{TossConfig, TossPaymentGateway, DEFAULT_BASE_URL};
//! use oms_core::domain::OmsError;
//! use oms_core::port::outbound::PaymentGateway;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), OmsError> {
//! let config = TossConfig::new("test_sk_0123456789").with_timeout(Duration::from_secs(3));
//! assert_eq!(config.base_url(), DEFAULT_BASE_URL);
//! assert!(!format!("{config:?}").contains("test_sk_0123456789"));
//!
//! let gateway = TossPaymentGateway::new(config.with_base_url("http://127.0.0.1:9"))?;
//! let refused = gateway.cancel("tgen_20240101abcd", "", "cancel-1").await;
//! assert!(matches!(refused, Err(OmsError::Invalid(_)))); // an empty reason
//! # Ok(())
//! # }
//! ```
//!
//! This crate has no feature flags.
//!
//! # Minimum supported Rust version
//!
//! Rust 1.89, as for every oms crate.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::time::Duration;

use async_trait::async_trait;
use oms_core::domain::{validate_payment_key, OmsError, OmsResult, Payment};
use oms_core::port::outbound::{gateway_order_id, GatewayPayment, PaymentGateway, PaymentRequest};
use reqwest::header::HeaderValue;
use reqwest::{Client, RequestBuilder, StatusCode, Url};

mod wire;
use wire::{refusal, CancelBody, ConfirmBody, Refusal, TossPayment};

/// Toss Payments' API host.
pub const DEFAULT_BASE_URL: &str = "https://api.tosspayments.com";
/// How long a call may take, from sending the request to the end of the
/// answer, unless configured otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long connecting may take, unless configured otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest `Idempotency-Key` Toss accepts.
const MAX_IDEMPOTENCY_KEY: usize = 300;
/// Longest `cancelReason` Toss accepts, in characters.
const MAX_CANCEL_REASON: usize = 200;
/// Largest answer read; Toss's are a few kilobytes.
const MAX_BODY: usize = 1 << 20;

/// How to reach Toss Payments: the secret key, the base URL and the
/// timeouts.
///
/// Its `Debug` never shows the secret key.
#[derive(Clone)]
pub struct TossConfig {
    secret_key: String,
    base_url: String,
    timeout: Duration,
    connect_timeout: Duration,
}

impl std::fmt::Debug for TossConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TossConfig")
            .field("secret_key", &"<redacted>")
            .field("base_url", &self.base_url)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl TossConfig {
    /// The configuration of the secret key `secret_key` (`test_sk_…` or
    /// `live_sk_…`), with the default base URL and timeouts.
    pub fn new(secret_key: impl Into<String>) -> Self {
        Self {
            secret_key: secret_key.into(),
            base_url: DEFAULT_BASE_URL.into(),
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }

    /// Replaces the base URL (default [`DEFAULT_BASE_URL`]); a path in it
    /// is kept, and `/v1/…` goes after it.
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into();
        self
    }

    /// Replaces the time a call may take, from sending the request to the
    /// end of the answer (default [`DEFAULT_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Replaces the time connecting may take (default
    /// [`DEFAULT_CONNECT_TIMEOUT`]).
    pub fn with_connect_timeout(mut self, connect_timeout: Duration) -> Self {
        self.connect_timeout = connect_timeout;
        self
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The time a call may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The time connecting may take.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }
}

/// The [`PaymentGateway`] on Toss Payments' v1 API.
#[derive(Clone)]
pub struct TossPaymentGateway {
    client: Client,
    base_url: Url,
    secret_key: String,
    timeout: Duration,
}

impl std::fmt::Debug for TossPaymentGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TossPaymentGateway")
            .field("base_url", &self.base_url.as_str())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// What the gateway reports when Toss cannot be used as configured.
const WHAT: &str = "toss";

fn unknown(op: &'static str, payment_key: &str, why: String) -> OmsError {
    tracing::warn!(op, payment_key, why = %why, "Toss payment outcome unknown");
    OmsError::PaymentUnknown(why)
}

fn misconfigured(op: &'static str, payment_key: &str, why: String) -> OmsError {
    tracing::error!(op, payment_key, why = %why, "Toss refused our credentials");
    OmsError::unavailable(WHAT, why)
}

impl TossPaymentGateway {
    /// A gateway with `config`. [`OmsError::Invalid`] when the secret key
    /// is empty, the base URL is not an `http(s)` URL, or a timeout is
    /// zero.
    pub fn new(config: TossConfig) -> OmsResult<Self> {
        let TossConfig {
            secret_key,
            base_url,
            timeout,
            connect_timeout,
        } = config;
        if secret_key.trim().is_empty() {
            return Err(OmsError::Invalid("the Toss secret key is empty".into()));
        }
        if secret_key.chars().any(char::is_control) {
            return Err(OmsError::Invalid(
                "the Toss secret key has control characters".into(),
            ));
        }
        let base_url = Url::parse(&base_url)
            .map_err(|e| OmsError::Invalid(format!("Toss base URL {base_url:?}: {e}")))?;
        if !matches!(base_url.scheme(), "http" | "https")
            || base_url.cannot_be_a_base()
            || base_url.query().is_some()
            || base_url.fragment().is_some()
        {
            return Err(OmsError::Invalid(format!(
                "Toss base URL {:?} is not an http(s) URL without query or fragment",
                base_url.as_str()
            )));
        }
        if timeout.is_zero() || connect_timeout.is_zero() {
            return Err(OmsError::Invalid("Toss timeouts must be positive".into()));
        }
        let client = Client::builder()
            .timeout(timeout)
            .connect_timeout(connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("oms/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| OmsError::Internal(format!("cannot build the Toss HTTP client: {e}")))?;
        Ok(Self {
            client,
            base_url,
            secret_key,
            timeout,
        })
    }

    /// `{base}/v1/payments/{segments…}`, each segment percent-encoded.
    fn url(&self, segments: &[&str]) -> OmsResult<Url> {
        let mut url = self.base_url.clone();
        url.path_segments_mut()
            .map_err(|()| OmsError::Internal("the Toss base URL cannot take a path".into()))?
            .pop_if_empty()
            .extend(["v1", "payments"])
            .extend(segments);
        Ok(url)
    }

    fn post(&self, url: Url, idempotency_key: &str) -> OmsResult<RequestBuilder> {
        let key = idempotency_header(idempotency_key)?;
        Ok(self
            .client
            .post(url)
            .basic_auth(&self.secret_key, None::<&str>)
            .header("Idempotency-Key", key))
    }

    /// Sends a request and reads the answer (at most [`MAX_BODY`] bytes).
    /// `Err` is why no complete answer came.
    async fn send(&self, request: RequestBuilder) -> Result<(StatusCode, Vec<u8>), String> {
        let mut response = request.send().await.map_err(|e| self.describe(&e))?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.describe(&e))? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(format!(
                    "Toss answered {status} with a body over {MAX_BODY} bytes"
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, body))
    }

    fn describe(&self, e: &reqwest::Error) -> String {
        let what = if e.is_timeout() {
            format!("no answer from Toss within {:?}", self.timeout)
        } else if e.is_connect() {
            "cannot connect to Toss".to_owned()
        } else {
            "the call to Toss failed".to_owned()
        };
        let mut why = format!("{what}: {e}");
        let mut source = std::error::Error::source(e);
        while let Some(cause) = source {
            why.push_str(": ");
            why.push_str(&cause.to_string());
            source = cause.source();
        }
        why
    }
}

/// The `Idempotency-Key` header: 1 to 300 visible ASCII characters.
fn idempotency_header(key: &str) -> OmsResult<HeaderValue> {
    let invalid = || {
        OmsError::Invalid(format!(
            "the gateway's idempotency key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"
        ))
    };
    if key.is_empty()
        || key.len() > MAX_IDEMPOTENCY_KEY
        || !key.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(invalid());
    }
    HeaderValue::from_str(key).map_err(|_| invalid())
}

/// A payment key that may go into a path: the domain's rule, and not a
/// dot segment.
fn path_key(payment_key: &str) -> OmsResult<&str> {
    validate_payment_key(payment_key)?;
    if payment_key.bytes().all(|b| b == b'.') {
        return Err(OmsError::Invalid(
            "paymentKey must not be made of dots only".into(),
        ));
    }
    Ok(payment_key)
}

#[async_trait]
impl PaymentGateway for TossPaymentGateway {
    async fn confirm(&self, request: &PaymentRequest) -> OmsResult<Payment> {
        const OP: &str = "confirm";
        let key = request.payment_key.as_str();
        validate_payment_key(key)?;
        if request.amount <= 0 {
            return Err(OmsError::Invalid(format!(
                "the amount to confirm must be positive, not {}",
                request.amount
            )));
        }
        let order_id = gateway_order_id(request.order_id);
        let body = ConfirmBody {
            payment_key: key,
            order_id: &order_id,
            amount: request.amount,
        };
        let call = self
            .post(self.url(&["confirm"])?, &request.idempotency_key)?
            .json(&body);
        let (status, body) = self.send(call).await.map_err(|why| unknown(OP, key, why))?;
        if !status.is_success() {
            return Err(match refusal(status, &body) {
                Refusal::Refused(e) => {
                    tracing::info!(op = OP, payment_key = key, code = %e.code, "Toss declined the payment");
                    OmsError::PaymentDeclined {
                        code: e.code,
                        message: e.message,
                    }
                }
                Refusal::Config(why) => misconfigured(OP, key, why),
                Refusal::InDoubt(why) => unknown(OP, key, why),
            });
        }
        let payment = TossPayment::parse(&body).map_err(|why| unknown(OP, key, why))?;
        if payment.payment_key != key || payment.order_id != order_id {
            return Err(unknown(
                OP,
                key,
                format!(
                    "Toss answered for payment {:?} of order {:?}, not {key:?} of {order_id:?}",
                    payment.payment_key, payment.order_id
                ),
            ));
        }
        if payment.status != "DONE" {
            return Err(unknown(
                OP,
                key,
                format!(
                    "Toss answered with the payment {}, not DONE",
                    payment.status
                ),
            ));
        }
        if payment.total_amount != request.amount {
            return Err(unknown(
                OP,
                key,
                format!(
                    "Toss approved {}, not the amount asked {}",
                    payment.total_amount, request.amount
                ),
            ));
        }
        let approved_at = payment
            .approved_at()
            .and_then(|at| at.ok_or_else(|| "Toss answered DONE without approvedAt".to_owned()))
            .map_err(|why| unknown(OP, key, why))?;
        Ok(Payment {
            payment_key: payment.payment_key,
            amount: payment.total_amount,
            approved_at,
        })
    }

    async fn cancel(
        &self,
        payment_key: &str,
        reason: &str,
        idempotency_key: &str,
    ) -> OmsResult<()> {
        const OP: &str = "cancel";
        let key = path_key(payment_key)?;
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > MAX_CANCEL_REASON {
            return Err(OmsError::Invalid(format!(
                "the cancel reason must be 1 to {MAX_CANCEL_REASON} characters"
            )));
        }
        let call = self
            .post(self.url(&[key, "cancel"])?, idempotency_key)?
            .json(&CancelBody {
                cancel_reason: reason,
            });
        let (status, body) = self.send(call).await.map_err(|why| unknown(OP, key, why))?;
        if !status.is_success() {
            return match refusal(status, &body) {
                Refusal::Refused(e) if e.code == "ALREADY_CANCELED_PAYMENT" => Ok(()),
                Refusal::Refused(e) => {
                    tracing::info!(op = OP, payment_key = key, code = %e.code, "Toss refused the cancellation");
                    Err(OmsError::PaymentDeclined {
                        code: e.code,
                        message: e.message,
                    })
                }
                Refusal::Config(why) => Err(misconfigured(OP, key, why)),
                Refusal::InDoubt(why) => Err(unknown(OP, key, why)),
            };
        }
        let payment = TossPayment::parse(&body).map_err(|why| unknown(OP, key, why))?;
        if payment.payment_key != key || payment.status != "CANCELED" {
            return Err(unknown(
                OP,
                key,
                format!(
                    "Toss answered the cancellation with payment {:?} {}, not CANCELED",
                    payment.payment_key, payment.status
                ),
            ));
        }
        Ok(())
    }

    async fn lookup(&self, payment_key: &str) -> OmsResult<Option<GatewayPayment>> {
        const OP: &str = "lookup";
        let key = path_key(payment_key)?;
        let call = self
            .client
            .get(self.url(&[key])?)
            .basic_auth(&self.secret_key, None::<&str>);
        let (status, body) = self.send(call).await.map_err(|why| unknown(OP, key, why))?;
        if !status.is_success() {
            return match refusal(status, &body) {
                Refusal::Refused(e) if e.code == "NOT_FOUND_PAYMENT" => Ok(None),
                Refusal::Refused(e) => Err(unknown(
                    OP,
                    key,
                    format!("Toss answered {status}: {}: {}", e.code, e.message),
                )),
                Refusal::Config(why) => Err(misconfigured(OP, key, why)),
                Refusal::InDoubt(why) => Err(unknown(OP, key, why)),
            };
        }
        let payment = TossPayment::parse(&body).map_err(|why| unknown(OP, key, why))?;
        if payment.payment_key != key {
            return Err(unknown(
                OP,
                key,
                format!("Toss answered with payment {:?}", payment.payment_key),
            ));
        }
        let approved_at = payment.approved_at().map_err(|why| unknown(OP, key, why))?;
        Ok(Some(GatewayPayment {
            status: payment.gateway_status(),
            payment_key: payment.payment_key,
            order_id: payment.order_id,
            amount: payment.total_amount,
            approved_at,
        }))
    }
}
