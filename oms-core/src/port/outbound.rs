//! Outbound ports: what the application services need from the outside.
//!
//! Every port is an `#[async_trait]` trait object (`Arc<dyn Port>`); each has
//! an in-memory adapter in [`crate::memory`], a real adapter in an adapter
//! crate, and a conformance suite in `testkit` that both pass. With the
//! `mock` feature, mockall generates `MockXxx` for each.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{
    Attempts, Email, FailureReason, HeldUnits, LifecycleEvent, Member, MemberId, NewMember,
    OmsError, OmsResult, Order, OrderCommand, OrderEvent, OrderFilter, OrderId, OrderLine,
    OrderPage, OrderStatus, OrderTrace, PasswordHash, Payment, Placement, Product, ProductChange,
    ProductId, ProductUpdate, Purchase, PurchaseLimit, Rate, RateDecision, Role, RoomStatus,
    Rotation, SessionId, TokenClaims, TokenId, TraceId, TraceState,
};

/// A record for the dead-letter topic: the original key and bytes and why
/// they failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The original record key, if any.
    pub key: Option<Vec<u8>>,
    /// The original record value, byte for byte.
    pub payload: Vec<u8>,
    /// Why it failed.
    pub reason: FailureReason,
    /// The trace it belongs to, when the record could be decoded.
    pub trace_id: Option<TraceId>,
    /// When it failed.
    pub failed_at: DateTime<Utc>,
}

impl DeadLetter {
    /// A dead letter for a decoded command, re-encoded as the order topic
    /// carries it.
    pub fn for_command(command: &OrderCommand, reason: FailureReason) -> OmsResult<Self> {
        Ok(Self {
            key: command.partition_key().map(|p| p.to_string().into_bytes()),
            payload: encode_command(command)?,
            reason,
            trace_id: Some(command.trace_id),
            failed_at: Utc::now(),
        })
    }

    /// A dead letter for a FAILED trace whose record is not at hand (lost
    /// before processing, refused before queueing, or relayed from the
    /// store's outbox): the payload is the trace as JSON and the reason is
    /// the trace's own.
    pub fn for_trace(trace: &OrderTrace) -> OmsResult<Self> {
        let TraceState::Failed { reason } = trace.state else {
            return Err(OmsError::Internal(format!(
                "trace {} is not FAILED; it has no dead letter",
                trace.trace_id
            )));
        };
        let payload = serde_json::to_vec(trace)
            .map_err(|e| OmsError::Internal(format!("cannot encode trace: {e}")))?;
        Ok(Self {
            key: None,
            payload,
            reason,
            trace_id: Some(trace.trace_id),
            failed_at: Utc::now(),
        })
    }

    /// A dead letter for a record that could not be decoded; its trace id
    /// is kept when the bytes are JSON with a readable `traceId`.
    pub fn poison(key: Option<Vec<u8>>, payload: Vec<u8>) -> Self {
        let trace_id = serde_json::from_slice::<serde_json::Value>(&payload)
            .ok()
            .and_then(|v| v.get("traceId")?.as_str()?.parse().ok());
        Self {
            key,
            payload,
            reason: FailureReason::Poison,
            trace_id,
            failed_at: Utc::now(),
        }
    }
}

/// Encodes a command as the JSON record value of the order topic.
pub fn encode_command(command: &OrderCommand) -> OmsResult<Vec<u8>> {
    serde_json::to_vec(command).map_err(|e| OmsError::Internal(format!("cannot encode order: {e}")))
}

/// Decodes a record value of the order topic.
pub fn decode_command(bytes: &[u8]) -> OmsResult<OrderCommand> {
    serde_json::from_slice(bytes).map_err(|e| OmsError::Invalid(format!("undecodable order: {e}")))
}

/// Publishes accepted orders to the order queue, and failures to the DLQ.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait OrderRequestPublisher: Send + Sync {
    /// Sends an accepted order; returns once the queue has durably taken it.
    async fn send(&self, command: &OrderCommand) -> OmsResult<()>;

    /// Sends a failed record to the dead-letter queue with its reason.
    async fn send_to_dlq(&self, letter: &DeadLetter) -> OmsResult<()>;
}

/// Fast, expiring store of traces for polling, and of idempotency keys.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait TraceStore: Send + Sync {
    /// Writes (or overwrites) a trace.
    async fn save(&self, trace: &OrderTrace) -> OmsResult<()>;

    /// Writes many traces at once.
    async fn save_all(&self, traces: &[OrderTrace]) -> OmsResult<()>;

    /// Reads a trace; `None` if unknown or expired.
    async fn get(&self, trace_id: TraceId) -> OmsResult<Option<OrderTrace>>;

    /// Forgets a trace (used when the order could not be queued).
    async fn remove(&self, trace_id: TraceId) -> OmsResult<()>;

    /// Claims an idempotency key of a member for `trace_id`. Returns `None`
    /// when the key was free and is now held by `trace_id`, or the trace id
    /// that already holds it.
    async fn claim_key(
        &self,
        member_id: MemberId,
        key: &str,
        trace_id: TraceId,
    ) -> OmsResult<Option<TraceId>>;

    /// Releases a key claimed by [`claim_key`](Self::claim_key).
    async fn release_key(&self, member_id: MemberId, key: &str) -> OmsResult<()>;

    /// Up to `limit` PROCESSING traces saved more than `older_than` ago,
    /// oldest first (what the [sweeper](crate::application::TraceSweeper)
    /// resolves).
    async fn stale_processing(
        &self,
        older_than: std::time::Duration,
        limit: usize,
    ) -> OmsResult<Vec<OrderTrace>>;
}

/// How far the consumers are behind the order queue.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait OrderBacklog: Send + Sync {
    /// How many accepted records the consumers have not finished yet (their
    /// outcomes are not durable, or their offsets are not committed). Zero
    /// means every record queued before the call has a durable outcome.
    async fn pending(&self) -> OmsResult<u64>;
}

/// The durable record of orders and of every final outcome.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait OrderStore: Send + Sync {
    /// Places a batch atomically and idempotently, in order: for every
    /// command, either the order (stock decremented with the versioned
    /// conditional update, order and items inserted) and a COMPLETED outcome,
    /// or a FAILED outcome — all in one transaction. A trace id that has an
    /// outcome already returns it with `replayed: true` and changes nothing.
    /// A lost optimistic lock rolls everything back and returns
    /// [`OmsError::Conflict`].
    async fn place_batch(&self, commands: &[OrderCommand]) -> OmsResult<Vec<Placement>>;

    /// Records `trace` (a FAILED outcome) unless the trace has an outcome
    /// already, and returns the outcome that stands (`replayed: true` when it
    /// was there before). The first writer wins, so this settles a race with
    /// a late delivery of the same trace. With `dead_letter: false` a new
    /// outcome is recorded as needing no DLQ record; with `true` it needs one
    /// until [`mark_dead_lettered`](Self::mark_dead_lettered). The returned
    /// `needs_dead_letter` tells whether the standing outcome still needs its
    /// DLQ record.
    async fn settle_failure(&self, trace: &OrderTrace, dead_letter: bool) -> OmsResult<Placement>;

    /// [`settle_failure`](Self::settle_failure) with `dead_letter: true` for
    /// many traces, in input order. Adapters override it to settle the
    /// whole batch in one round trip.
    async fn settle_failures(&self, traces: &[OrderTrace]) -> OmsResult<Vec<Placement>> {
        let mut settled = Vec::with_capacity(traces.len());
        for trace in traces {
            settled.push(self.settle_failure(trace, true).await?);
        }
        Ok(settled)
    }

    /// Confirms that the DLQ records of these FAILED traces are sent.
    async fn mark_dead_lettered(&self, trace_ids: &[TraceId]) -> OmsResult<()>;

    /// The recorded outcome of a trace, if it has one.
    async fn outcome(&self, trace_id: TraceId) -> OmsResult<Option<OrderTrace>>;

    /// An order by id.
    async fn order(&self, order_id: OrderId) -> OmsResult<Option<Order>>;

    /// A page of a member's orders, newest first (see [`OrderPage`]).
    async fn orders_of(&self, member_id: MemberId, page: OrderPage) -> OmsResult<Vec<Order>>;

    /// The trace a member's idempotency key is bound to, if a placement
    /// bound it (see [`OrderCommand::idempotency_key`]).
    async fn trace_for_key(&self, member_id: MemberId, key: &str) -> OmsResult<Option<TraceId>>;

    /// Up to `limit` FAILED outcomes recorded more than `older_than` ago
    /// whose DLQ record is not confirmed, oldest first: the DLQ's outbox,
    /// which the [sweeper](crate::application::TraceSweeper) relays.
    async fn undead_lettered(
        &self,
        older_than: std::time::Duration,
        limit: usize,
    ) -> OmsResult<Vec<OrderTrace>>;
}

/// What operators read of the orders: every member's, filtered, and the
/// units they hold.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait OrderAdminStore: Send + Sync {
    /// Up to `page.limit` orders of any member that match `filter`, newest
    /// (largest id) first, with ids below `page.before` when it is set.
    /// Pages read one after the other with the last id of each as the next
    /// `before` are disjoint and together hold every match.
    async fn find_orders(&self, filter: &OrderFilter, page: OrderPage) -> OmsResult<Vec<Order>>;

    /// The units of `product_id` in PENDING_PAYMENT and in PAID orders
    /// (zero for a product nobody ordered, or that does not exist).
    async fn held_units(&self, product_id: ProductId) -> OmsResult<HeldUnits>;
}

/// The product catalogue and its stock.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait ProductStore: Send + Sync {
    /// Adds a product; [`OmsError::ProductExists`] if the id is taken.
    async fn create(&self, product: &Product) -> OmsResult<()>;

    /// Applies `update` with [`ProductUpdate::apply_to`] to the product as
    /// it stands, in one atomic step (a transaction that reads the row for
    /// update), bumping the version; [`OmsError::ProductNotFound`] if
    /// unknown. Returns the product and the stock delta the update applied.
    async fn update(
        &self,
        product_id: ProductId,
        update: &ProductUpdate,
    ) -> OmsResult<ProductChange>;

    /// A product by id.
    async fn get(&self, product_id: ProductId) -> OmsResult<Option<Product>>;

    /// Every product, by id.
    async fn list(&self) -> OmsResult<Vec<Product>>;

    /// What each member has bought of `product_id` (units of placed orders
    /// not given back), members with none left out.
    async fn purchases(&self, product_id: ProductId) -> OmsResult<Vec<Purchase>>;
}

/// What the [`StockGate`] decided for an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Units are reserved for every gated line (lines of products without a
    /// gate pass unchecked) and the trace is PROCESSING.
    Reserved,
    /// A gated product lacks the units: nothing is reserved, the trace is
    /// FAILED `OUT_OF_STOCK`, and the refusal is journaled.
    Refused {
        /// The first product that lacked the units.
        product_id: ProductId,
    },
    /// The order would take the member past a product's purchase limit:
    /// nothing is reserved and no trace is written.
    OverLimit {
        /// The first product whose limit the order exceeds.
        product_id: ProductId,
    },
    /// The member is over the order rate ([`IntakeChecks::rate`]): nothing
    /// is reserved and no trace is written.
    RateLimited {
        /// How long until a request would be allowed.
        retry_after: Duration,
    },
    /// The member holds no waiting-room admission
    /// ([`IntakeChecks::admission`]): nothing is reserved and no trace is
    /// written.
    NotAdmitted,
}

/// What intake asks the [`StockGate`] to check in the same atomic step as
/// the reservation, so that the front door of a sale costs no round trip
/// of its own. Checked in this order: admission, rate, limits, stock; the
/// first that fails decides and nothing is changed, except that an order
/// refused for its limit or for stock took a token of the rate, and one
/// refused for stock (final at once) ends the member's admission.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IntakeChecks {
    /// The member must hold a waiting-room admission (of the room sharing
    /// the gate's store).
    pub admission: bool,
    /// The member's order rate (GCRA, the budget a [`RateLimiter`] of the
    /// same store keeps for the member's id).
    pub rate: Option<Rate>,
    /// The purchase limits of the order's products.
    pub limits: Vec<PurchaseLimit>,
}

/// A product's gate level as of a version of the product: the units the
/// database held at `version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateLevel {
    /// The product.
    pub product_id: ProductId,
    /// Units available.
    pub available: i64,
    /// The product's version these units were read at.
    pub version: i64,
}

/// A journaled refusal, waiting to be settled in the database and the DLQ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The journal's id of the entry, for [`StockGate::settled`].
    pub id: String,
    /// The refused order.
    pub command: OrderCommand,
}

/// Units available to intake per product, reserved atomically before an
/// order is queued, so that orders for a sold-out product are answered at
/// once and never reach the queue.
///
/// The database stays the source of truth: a gate may count *more* units
/// than are left (the consumer then fails the extra orders `OUT_OF_STOCK`,
/// as it would without a gate), and every count it holds is filled and
/// reconciled from the database (see
/// [`GateKeeper`](crate::application::GateKeeper)). A gate that is down
/// fails intake (503); it never lets an order skip the database's check.
///
/// Every decision writes the order's trace in the trace store the gate
/// shares, in the same atomic step: PROCESSING when reserved; FAILED
/// `OUT_OF_STOCK` when refused, together with a journal entry that stays
/// until [`settled`](Self::settled), so a refused order is never lost
/// between the answer and its durable outcome.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait StockGate: Send + Sync {
    /// Reserves the units of every line of `command`, all or none, and
    /// records its trace (see the trait's docs), after the front-door
    /// `checks` in the same atomic step ([`IntakeChecks`]). For each
    /// product with a limit, the units are also counted against the
    /// member's purchases of it: an order that would take the member past
    /// the limit reserves nothing ([`Admission::OverLimit`]).
    async fn admit(&self, command: &OrderCommand, checks: &IntakeChecks) -> OmsResult<Admission>;

    /// Gives back the units reserved for `lines` of `member_id`'s order (an
    /// order that was not queued, or that failed for a reason other than
    /// stock), to the product counters and to the member's purchases.
    /// Products without a gate are left without one.
    async fn release(&self, member_id: MemberId, lines: &[OrderLine]) -> OmsResult<()>;

    /// Gives back purchases of `member_id` counted against limits (units
    /// of a cancelled, expired or refunded order), never below 0.
    async fn give_back_purchases(
        &self,
        member_id: MemberId,
        units: &[(ProductId, i64)],
    ) -> OmsResult<()>;

    /// Replaces the purchases the gate counts for `product_id` with
    /// `purchases` (the database's, read when no order was in flight).
    async fn set_purchases(&self, product_id: ProductId, purchases: &[Purchase]) -> OmsResult<()>;

    /// Sets the available units of products. Each gate remembers the
    /// product version its level was read at, and a level read at an older
    /// version than the gate's never replaces it (compare-and-set), so a
    /// slow reader cannot undo a newer stock change. With
    /// `overwrite: false` only products without a gate are set.
    async fn set_available(&self, levels: &[GateLevel], overwrite: bool) -> OmsResult<()>;

    /// Applies an operator's stock change of `delta` units that brought the
    /// product to `level` (its stock and new version in the database): a
    /// gate at an older version moves by `delta`, keeping the units reserved
    /// for orders in flight; a gate at `level.version` or newer already
    /// holds the change and stays; a product without a gate gets `level`.
    async fn adjust(&self, level: GateLevel, delta: i64) -> OmsResult<()>;

    /// The available units of a product; `None` when it has no gate.
    async fn available(&self, product_id: ProductId) -> OmsResult<Option<i64>>;

    /// Up to `limit` journaled refusals not yet settled, oldest first. An
    /// entry handed out and not settled within the adapter's redelivery
    /// time (its settler died) is handed out again.
    async fn refusals(&self, limit: usize) -> OmsResult<Vec<Refusal>>;

    /// Removes settled refusals from the journal.
    async fn settled(&self, ids: &[String]) -> OmsResult<()>;

    /// How many refusals the journal holds, handed out or not: what the
    /// keepers have yet to settle. The
    /// [`GateKeeper`](crate::application::GateKeeper) paces itself by it.
    async fn refusals_waiting(&self) -> OmsResult<u64>;
}

/// The waiting room in front of the order endpoint: members enter, wait in
/// line, and are admitted first come first served at the room's rate with
/// at most a set number admitted at once (a
/// [`RoomPolicy`](crate::domain::RoomPolicy), given to the adapter).
///
/// Every operation is atomic in the adapter's store, so any number of
/// processes may share one room; [`admit`](Self::admit) keeps its rate in
/// the store too, so it may run in every process at once (no leader).
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait WaitingRoom: Send + Sync {
    /// Enters the member, or answers where they stand if they are in the
    /// room already (entering twice keeps the place).
    async fn enter(&self, member_id: MemberId) -> OmsResult<RoomStatus>;

    /// Where the member stands; `None` when they are not in the room (never
    /// entered, or their admission ended).
    async fn status(&self, member_id: MemberId) -> OmsResult<Option<RoomStatus>>;

    /// One round of the admitter: ends admissions past their TTL, then
    /// admits the next in line as far as the rate (tokens accrued since
    /// the last round, shared by every process) and the free slots allow.
    /// Returns how many it admitted.
    async fn admit(&self) -> OmsResult<u64>;

    /// Ends the admissions of these members (their order is final); their
    /// slots go to the next in line.
    async fn release(&self, members: &[MemberId]) -> OmsResult<()>;

    /// How many wait and how many are admitted.
    async fn occupancy(&self) -> OmsResult<Occupancy>;
}

/// How full the waiting room is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Occupancy {
    /// Members in line.
    pub waiting: u64,
    /// Members admitted now.
    pub admitted: u64,
}

/// A rate limiter shared by every process (the per-member order rate).
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Counts one request of `key` against `rate` (GCRA: a burst of
    /// `rate.burst`, then one per interval).
    async fn acquire(&self, key: &str, rate: Rate) -> OmsResult<RateDecision>;
}

/// A dependency whose health `/readyz` reports.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait HealthCheck: Send + Sync {
    /// The dependency's name, e.g. `redis`.
    fn name(&self) -> &'static str;

    /// Answers `Ok` when the dependency answers.
    async fn check(&self) -> OmsResult<()>;

    /// Does at start what the first requests would otherwise pay for:
    /// connections opened, metadata fetched, scripts loaded. `/readyz`
    /// answers 200 only once every dependency has warmed (or failed to;
    /// readiness then rests on [`check`](Self::check)). Nothing by default.
    async fn warm(&self) -> OmsResult<()> {
        Ok(())
    }
}

/// The members: buyers and operators, with their password hashes.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait MemberStore: Send + Sync {
    /// Stores a new member and returns it with the id the store assigned
    /// (a positive integer); [`OmsError::EmailTaken`] if a member has the
    /// email already (emails are unique, normalized).
    async fn create(&self, member: &NewMember) -> OmsResult<Member>;

    /// A member by id.
    async fn get(&self, member_id: MemberId) -> OmsResult<Option<Member>>;

    /// A member by (normalized) email.
    async fn find_by_email(&self, email: &Email) -> OmsResult<Option<Member>>;

    /// Replaces a member's role and password hash;
    /// [`OmsError::MemberNotFound`] if unknown.
    async fn set_credentials(
        &self,
        member_id: MemberId,
        role: Role,
        password_hash: &PasswordHash,
    ) -> OmsResult<()>;
}

/// Logins (refresh-token families) and revoked tokens, shared by every
/// `api` replica.
///
/// A family holds the one refresh token of a login that may be used next.
/// Revocations are kept only as long as what they revoke could still be
/// used (the TTL the caller gives): a revoked access token until it
/// expires, a revoked family until every token it issued has expired.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Starts the family `session` with `refresh` as its live token, kept
    /// for `ttl` unless rotated.
    async fn start(&self, session: SessionId, refresh: TokenId, ttl: Duration) -> OmsResult<()>;

    /// Presents the refresh token `presented` to its family, atomically, by
    /// [`rotate`](crate::domain::token::rotate): the live token is replaced
    /// by `next` (kept for `ttl`) and [`Rotation::Rotated`] returned; any
    /// other token of a live family revokes the family (for `ttl`) and
    /// returns [`Rotation::Reused`]; a revoked or unknown family returns
    /// [`Rotation::Dead`] and changes nothing.
    async fn rotate(
        &self,
        session: SessionId,
        presented: TokenId,
        next: TokenId,
        ttl: Duration,
    ) -> OmsResult<Rotation>;

    /// Revokes, in one atomic step, an access token (for as long as it has
    /// to live) and a family (for as long as its tokens may live): the
    /// family's refresh tokens stop rotating and every token carrying its
    /// `sid` is revoked.
    async fn revoke(
        &self,
        token: Option<(TokenId, Duration)>,
        session: Option<(SessionId, Duration)>,
    ) -> OmsResult<()>;

    /// Whether the token `token`, or the family `session` it belongs to, is
    /// revoked. Called on every authenticated request: adapters answer it
    /// in one round trip at most (and a
    /// [`RevocationMirror`](crate::memory::RevocationMirror) from memory).
    async fn is_revoked(&self, token: TokenId, session: Option<SessionId>) -> OmsResult<bool>;

    /// The revocations in force, for a [`RevocationMirror`] to copy: with
    /// `cursor: None`, every revocation in force (`complete: true`);
    /// otherwise at least those made after `cursor` (a cursor of an earlier
    /// answer). Revocations made by [`rotate`](Self::rotate) (a reuse)
    /// count. A revocation's `until_ms` may be shorter than the TTL it was
    /// made with, but not shorter than access tokens live. Adapters keep
    /// what follows a cursor for at least [`REVOCATION_FEED_WINDOW`]; an
    /// older cursor may miss revocations.
    ///
    /// [`RevocationMirror`]: crate::memory::RevocationMirror
    async fn revocations(&self, cursor: Option<String>) -> OmsResult<RevocationFeed>;
}

/// How long a [`SessionStore`] keeps the revocations that follow a cursor
/// of [`SessionStore::revocations`].
pub const REVOCATION_FEED_WINDOW: Duration = Duration::from_secs(10 * 60);

/// What a revocation revokes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Revoked {
    /// One access token.
    Token(TokenId),
    /// A login: every token carrying its `sid`.
    Session(SessionId),
}

/// A revocation in force until `until_ms` (unix milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revocation {
    /// What it revokes.
    pub revoked: Revoked,
    /// Until when, unix milliseconds.
    pub until_ms: u64,
}

/// An answer of [`SessionStore::revocations`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationFeed {
    /// Revocations, in no particular order.
    pub revocations: Vec<Revocation>,
    /// Where the next call goes on from.
    pub cursor: Option<String>,
    /// Whether these are all the revocations in force (replace the copy)
    /// rather than the ones since the cursor (add them to it).
    pub complete: bool,
}

/// Attempt counters in fixed windows (login throttling), shared by every
/// `api` replica.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait AttemptCounter: Send + Sync {
    /// Counts one attempt under each key, atomically, and returns the
    /// counts, in key order. A key's window starts with its first attempt
    /// and lasts `window`; when it ends the key counts from zero again.
    async fn hit(&self, keys: &[String], window: Duration) -> OmsResult<Vec<Attempts>>;

    /// The counts of the keys, in key order, without counting (a key
    /// without attempts in a window: count 0, `resets_in` zero).
    async fn peek(&self, keys: &[String]) -> OmsResult<Vec<Attempts>>;

    /// Forgets the keys' counts.
    async fn clear(&self, keys: &[String]) -> OmsResult<()>;
}

/// Hashes and verifies passwords. Deliberately slow (see
/// [`Argon2idHasher`](crate::password::Argon2idHasher)): implementations
/// run off the async runtime's worker threads.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait PasswordHasher: Send + Sync {
    /// A new salted hash of `password`.
    async fn hash(&self, password: &str) -> OmsResult<PasswordHash>;

    /// Whether `password` matches `hash`. A hash the hasher cannot read
    /// verifies nothing (`Ok(false)`, logged).
    async fn verify(&self, password: &str, hash: &PasswordHash) -> OmsResult<bool>;
}

/// Signs and reads bearer tokens.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
pub trait TokenCodec: Send + Sync {
    /// The signed token of `claims`.
    fn encode(&self, claims: &TokenClaims) -> OmsResult<String>;

    /// The claims of a token whose signature and shape are valid, expired
    /// or not (expiry and type are the domain's rules:
    /// [`TokenClaims::check`]); [`OmsError::Unauthenticated`] otherwise.
    fn decode(&self, token: &str) -> OmsResult<TokenClaims>;
}

/// A payment request to the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRequest {
    /// The gateway's key of the payment the buyer authorised.
    pub payment_key: String,
    /// The order paid for.
    pub order_id: OrderId,
    /// The amount to capture (minor unit).
    pub amount: i64,
    /// Sent with the request: the same key never charges twice.
    pub idempotency_key: String,
}

/// Where the gateway says a payment stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayStatus {
    /// Approved (captured).
    Done,
    /// Cancelled (refunded) in full.
    Canceled,
    /// Anything else the gateway reports (ready, in progress, aborted,
    /// expired, partially cancelled), by its name.
    Other(String),
}

/// A payment as the gateway knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayPayment {
    /// The payment's key.
    pub payment_key: String,
    /// The order id the payment was made for, as the gateway holds it.
    pub order_id: String,
    /// The amount (minor unit).
    pub amount: i64,
    /// Where it stands.
    pub status: GatewayStatus,
    /// When it was approved, if it was.
    pub approved_at: Option<DateTime<Utc>>,
}

/// The order id a gateway knows an order by: `oms-order-{orderId}`.
pub fn gateway_order_id(order_id: OrderId) -> String {
    format!("oms-order-{order_id}")
}

/// A payment gateway: confirms, cancels and looks up payments (Toss
/// Payments in `oms-adapters-toss`, an in-memory one for the embedded
/// default and tests).
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait PaymentGateway: Send + Sync {
    /// Confirms (captures) a payment. [`OmsError::PaymentDeclined`] when
    /// the gateway says no; [`OmsError::PaymentUnknown`] when it does not
    /// answer in time or answers what cannot be read (the payment may have
    /// been made: ask again with the same idempotency key, or
    /// [`lookup`](Self::lookup)).
    async fn confirm(&self, request: &PaymentRequest) -> OmsResult<Payment>;

    /// Cancels (refunds) a confirmed payment in full; the same
    /// `idempotency_key` never refunds twice.
    async fn cancel(&self, payment_key: &str, reason: &str, idempotency_key: &str)
        -> OmsResult<()>;

    /// The payment as the gateway knows it; `None` when it has none.
    async fn lookup(&self, payment_key: &str) -> OmsResult<Option<GatewayPayment>>;
}

/// What [`LifecycleStore::claim_payment`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The order is PENDING_PAYMENT and now claimed for confirming with
    /// this key (or was already, by a retry with the same key): expiry and
    /// cancellation wait for it.
    Claimed(Order),
    /// The order cannot be claimed: it is as it stands here (paid,
    /// final, overdue, or claimed with another key).
    Refused(Order),
}

/// Units an order gave back to a product, and the product after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StockReturn {
    /// The product.
    pub product_id: ProductId,
    /// Units given back.
    pub units: i64,
    /// The product's stock after.
    pub stock: i64,
    /// The product's version after.
    pub version: i64,
}

/// An order that changed status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transitioned {
    /// The order after the change.
    pub order: Order,
    /// Its status before.
    pub from: OrderStatus,
    /// The units it gave back (empty unless the new status holds none).
    pub returned: Vec<StockReturn>,
}

/// The order life cycle in the store. Every change is conditional on the
/// order's status as it stands (so confirm racing expiry or cancel has
/// exactly one winner), and happens in one transaction with its effects:
/// the units given back to the products (a versioned increment) and to the
/// member's purchases when the new status holds none, and one
/// [`OrderEvent`] in the outbox.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait LifecycleStore: Send + Sync {
    /// Claims a PENDING_PAYMENT order not past its `paymentDueAt` for
    /// confirming with `payment_key` (see [`Claim`]);
    /// [`OmsError::OrderNotFound`] when there is no such order.
    async fn claim_payment(
        &self,
        order_id: OrderId,
        payment_key: &str,
        now: DateTime<Utc>,
    ) -> OmsResult<Claim>;

    /// Settles the claim of `payment_key`: with `Some(payment)` the order
    /// is PAID (an event); with `None` the claim is dropped (declined) and
    /// the order stays PENDING_PAYMENT. `None` when the order does not
    /// hold that claim (someone settled it first).
    async fn settle_payment(
        &self,
        order_id: OrderId,
        payment_key: &str,
        payment: Option<Payment>,
    ) -> OmsResult<Option<Transitioned>>;

    /// Cancels an unclaimed PENDING_PAYMENT order (`Cancel`) or refunds a
    /// PAID one (`Refund`). [`OmsError::IllegalTransition`] from any other
    /// status; [`OmsError::OrderNotCancellable`] while a confirmation is
    /// under way; [`OmsError::OrderNotFound`].
    async fn transition(
        &self,
        order_id: OrderId,
        event: LifecycleEvent,
        now: DateTime<Utc>,
    ) -> OmsResult<Transitioned>;

    /// Expires up to `limit` unclaimed PENDING_PAYMENT orders whose
    /// `paymentDueAt` is at or before `now`. Safe to run in many processes
    /// at once: each order expires once.
    async fn expire_due(&self, now: DateTime<Utc>, limit: usize) -> OmsResult<Vec<Transitioned>>;

    /// Up to `limit` orders whose payment claim was taken before `before`
    /// and is still held (the gateway's answer is unknown).
    async fn payments_in_doubt(&self, before: DateTime<Utc>, limit: usize)
        -> OmsResult<Vec<Order>>;

    /// Leases up to `limit` unpublished events, oldest first, to `owner`
    /// for `lease` (events leased to another owner whose lease has not
    /// run out are skipped).
    async fn lease_events(
        &self,
        owner: &str,
        limit: usize,
        lease: Duration,
    ) -> OmsResult<Vec<OrderEvent>>;

    /// Marks events published: they are never leased again.
    async fn events_published(&self, event_ids: &[u64]) -> OmsResult<()>;
}

/// Publishes order events (the `order-events-v1` topic).
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait OrderEventPublisher: Send + Sync {
    /// Publishes every event, keyed by order id, or fails.
    async fn publish(&self, events: &[OrderEvent]) -> OmsResult<()>;
}
