//! Orders, order lines and the command that carries an accepted request.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    FieldError, FieldErrorCode, FieldErrors, MemberId, OmsError, OmsResult, OrderId, ProductId,
    TraceId,
};

/// Most lines one order may have.
pub const MAX_LINES: usize = 100;
/// Largest quantity of one line.
pub const MAX_QUANTITY: u32 = 1000;
/// Longest receiver field, in characters.
pub const MAX_RECEIVER_FIELD: usize = 255;

/// One line of an order request: a product and how many units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct OrderLine {
    /// The product ordered.
    #[cfg_attr(feature = "openapi", schema(value_type = u64, minimum = 1))]
    pub product_id: ProductId,
    /// Units, 1..=1000.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1000))]
    pub quantity: u32,
}

/// Where the order goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ReceiverInfo {
    /// Receiver's name.
    pub name: String,
    /// Receiver's phone number.
    pub phone: String,
    /// Delivery address.
    pub address: String,
}

impl ReceiverInfo {
    /// Adds the errors of every field to `errors`, under `prefix` (e.g.
    /// `receiverInfo.`): each must be non-blank and at most
    /// [`MAX_RECEIVER_FIELD`] characters.
    fn check(&self, prefix: &str, errors: &mut FieldErrors) {
        for (field, value) in [
            ("name", &self.name),
            ("phone", &self.phone),
            ("address", &self.address),
        ] {
            if value.trim().is_empty() {
                errors.push(
                    format!("{prefix}{field}"),
                    FieldErrorCode::Required,
                    "must not be empty",
                );
            } else if value.chars().count() > MAX_RECEIVER_FIELD {
                errors.push(
                    format!("{prefix}{field}"),
                    FieldErrorCode::TooLong,
                    format!("must be at most {MAX_RECEIVER_FIELD} characters"),
                );
            }
        }
    }
}

/// What a member asks for: the lines and the receiver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct OrderRequest {
    /// The lines, 1..=100.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 100))]
    pub items: Vec<OrderLine>,
    /// Where it goes.
    pub receiver_info: ReceiverInfo,
}

impl OrderRequest {
    /// Checks the request against the rules of API.md: 1–100 lines, quantities
    /// 1–1000, product ids above 0, every receiver field present and at most
    /// [`MAX_RECEIVER_FIELD`] characters. Every field that breaks a rule is
    /// reported ([`OmsError::Validation`]).
    pub fn validate(&self) -> OmsResult<()> {
        self.field_errors().into_result()
    }

    /// The fields that break the rules of [`validate`](Self::validate), in
    /// the order of the request, by their paths (`items[0].quantity`,
    /// `receiverInfo.phone`).
    pub fn field_errors(&self) -> FieldErrors {
        let mut errors = FieldErrors::new();
        check_lines(&self.items, &mut errors);
        self.receiver_info.check("receiverInfo.", &mut errors);
        errors
    }
}

/// Adds the errors of `items` to `errors`. When there are too many lines,
/// that is the one error of the list: its lines are not looked at.
fn check_lines(items: &[OrderLine], errors: &mut FieldErrors) {
    if items.is_empty() {
        errors.push("items", FieldErrorCode::Required, "must not be empty");
        return;
    }
    if items.len() > MAX_LINES {
        errors.push(
            "items",
            FieldErrorCode::TooLong,
            format!("must have at most {MAX_LINES} lines"),
        );
        return;
    }
    for (i, line) in items.iter().enumerate() {
        if line.quantity < 1 || line.quantity > MAX_QUANTITY {
            errors.push(
                format!("items[{i}].quantity"),
                FieldErrorCode::OutOfRange,
                format!("must be between 1 and {MAX_QUANTITY}"),
            );
        }
        if line.product_id.0 == 0 {
            errors.push(
                format!("items[{i}].productId"),
                FieldErrorCode::OutOfRange,
                "must be a positive integer",
            );
        }
    }
}

/// The rule of an `Idempotency-Key`, about the key.
const IDEMPOTENCY_KEY_RULE: &str = "must be 1 to 64 visible ASCII characters";

fn idempotency_key_ok(key: &str) -> bool {
    !key.is_empty() && key.len() <= 64 && key.bytes().all(|b| b.is_ascii_graphic())
}

/// Checks an `Idempotency-Key` (a header, not a field of the body): 1–64
/// visible ASCII characters; [`OmsError::Invalid`] otherwise.
pub fn validate_idempotency_key(key: &str) -> OmsResult<()> {
    if !idempotency_key_ok(key) {
        return Err(OmsError::Invalid(format!(
            "Idempotency-Key {IDEMPOTENCY_KEY_RULE}"
        )));
    }
    Ok(())
}

/// An accepted order request on its way to processing: the record on the
/// order topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCommand {
    /// The trace the client polls.
    pub trace_id: TraceId,
    /// Who ordered.
    pub member_id: MemberId,
    /// What was ordered.
    pub items: Vec<OrderLine>,
    /// Where it goes.
    pub receiver_info: ReceiverInfo,
    /// When the API accepted it.
    pub requested_at: DateTime<Utc>,
    /// The member's `Idempotency-Key`, if the request had one: the store
    /// binds it to this trace for good, so no other trace with the same
    /// key can place an order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

impl OrderCommand {
    /// A command for a request accepted now.
    pub fn new(trace_id: TraceId, member_id: MemberId, request: OrderRequest) -> Self {
        Self {
            trace_id,
            member_id,
            items: request.items,
            receiver_info: request.receiver_info,
            requested_at: Utc::now(),
            idempotency_key: None,
        }
    }

    /// The command with the request's `Idempotency-Key`.
    pub fn with_idempotency_key(mut self, key: Option<String>) -> Self {
        self.idempotency_key = key;
        self
    }

    /// The member's idempotency binding of this command, if it has a key.
    pub fn idempotency_binding(&self) -> Option<(MemberId, String)> {
        self.idempotency_key
            .as_ref()
            .map(|k| (self.member_id, k.clone()))
    }

    /// Checks the command as the consumer receives it (the same rules as
    /// intake, and a member); every field that breaks a rule is reported
    /// ([`OmsError::Validation`]).
    pub fn validate(&self) -> OmsResult<()> {
        let mut errors = FieldErrors::new();
        if self.member_id.0 == 0 {
            errors.push("memberId", FieldErrorCode::OutOfRange, "must be positive");
        }
        if self
            .idempotency_key
            .as_deref()
            .is_some_and(|key| !idempotency_key_ok(key))
        {
            errors.push(
                "idempotencyKey",
                FieldErrorCode::Malformed,
                IDEMPOTENCY_KEY_RULE,
            );
        }
        check_lines(&self.items, &mut errors);
        self.receiver_info.check("receiverInfo.", &mut errors);
        errors.into_result()
    }

    /// Units per product, summed over the lines, by product id.
    pub fn units_by_product(&self) -> Vec<(ProductId, u64)> {
        units_by_product(&self.items)
    }

    /// The partition key of the command: the smallest product id it orders,
    /// so that every order whose lowest product is the same lands on the same
    /// partition and keeps its order there.
    pub fn partition_key(&self) -> Option<ProductId> {
        self.items.iter().map(|l| l.product_id).min()
    }
}

/// Life-cycle state of a placed order (see [`LifecycleEvent`] for the
/// transitions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(
        description = "An order's status: `PENDING_PAYMENT` → `PAID` → (`REFUNDED`), `PENDING_PAYMENT` → `CANCELLED` | `EXPIRED`."
    )
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum OrderStatus {
    /// Placed, stock taken, waiting for its payment until `paymentDueAt`.
    PendingPayment,
    /// Paid.
    Paid,
    /// Paid, then refunded; its stock went back.
    Refunded,
    /// Cancelled before payment; its stock went back.
    Cancelled,
    /// Not paid in time; its stock went back.
    Expired,
}

super::wire::wire_names!(OrderStatus, "order status", {
    PendingPayment => "PENDING_PAYMENT",
    Paid => "PAID",
    Refunded => "REFUNDED",
    Cancelled => "CANCELLED",
    Expired => "EXPIRED",
});

impl OrderStatus {
    /// Reads a stored name: a wire name, or `ORDERED` (the name before
    /// payments existed), which reads as `PENDING_PAYMENT`. Any other name
    /// is a record the service cannot read: [`OmsError::Internal`]. (A
    /// client's name is read with [`FromStr`](std::str::FromStr), which
    /// takes the wire names only.)
    pub fn parse(s: &str) -> OmsResult<Self> {
        match s {
            "ORDERED" => Ok(Self::PendingPayment),
            other => other
                .parse()
                .map_err(|e: super::ParseEnumError| OmsError::Internal(e.to_string())),
        }
    }

    /// Whether an order in this status holds its units (PENDING_PAYMENT,
    /// PAID); the others gave them back.
    pub fn holds_stock(self) -> bool {
        matches!(self, Self::PendingPayment | Self::Paid)
    }

    /// Whether no transition leaves this status.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::PendingPayment | Self::Paid)
    }

    /// The status `event` leads to, or [`OmsError::IllegalTransition`]:
    /// `PENDING_PAYMENT → PAID | CANCELLED | EXPIRED`, `PAID → REFUNDED`.
    pub fn after(self, event: LifecycleEvent) -> OmsResult<Self> {
        match (self, event) {
            (Self::PendingPayment, LifecycleEvent::Pay) => Ok(Self::Paid),
            (Self::PendingPayment, LifecycleEvent::Cancel) => Ok(Self::Cancelled),
            (Self::PendingPayment, LifecycleEvent::Expire) => Ok(Self::Expired),
            (Self::Paid, LifecycleEvent::Refund) => Ok(Self::Refunded),
            (from, event) => Err(OmsError::IllegalTransition { from, event }),
        }
    }
}

/// What happens to an order after it is placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LifecycleEvent {
    /// The payment was approved.
    Pay,
    /// The buyer (or an operator) cancelled before paying.
    Cancel,
    /// The payment was not made by `paymentDueAt`.
    Expire,
    /// A paid order was cancelled and its payment refunded.
    Refund,
}

super::wire::wire_names!(LifecycleEvent, "lifecycle event", {
    Pay => "PAY",
    Cancel => "CANCEL",
    Expire => "EXPIRE",
    Refund => "REFUND",
});

/// An approved payment of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Payment {
    /// The gateway's key of the payment.
    pub payment_key: String,
    /// The amount approved (minor unit).
    pub amount: i64,
    /// When the gateway approved it.
    pub approved_at: DateTime<Utc>,
}

/// Longest `paymentKey` accepted (Toss's keys are at most 200 characters).
pub const MAX_PAYMENT_KEY: usize = 200;

/// Checks a `paymentKey`: 1 to 200 characters of `A-Z a-z 0-9 - _ ~ .`.
/// [`OmsError::Invalid`] otherwise (a check for the ports that take a
/// key; a request body's key is checked with [`payment_key_error`]).
pub fn validate_payment_key(key: &str) -> OmsResult<()> {
    match payment_key_error(key) {
        None => Ok(()),
        Some(e) => Err(OmsError::Invalid(e.to_string())),
    }
}

/// The error of a `paymentKey` field that is not 1 to 200 characters of
/// `A-Z a-z 0-9 - _ ~ .`, if it is not.
pub fn payment_key_error(key: &str) -> Option<FieldError> {
    let valid = !key.is_empty()
        && key.len() <= MAX_PAYMENT_KEY
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~' | b'.'));
    let code = if key.is_empty() {
        FieldErrorCode::Required
    } else if key.len() > MAX_PAYMENT_KEY {
        FieldErrorCode::TooLong
    } else {
        FieldErrorCode::Malformed
    };
    (!valid).then(|| {
        FieldError::new(
            "paymentKey",
            code,
            format!("must be 1 to {MAX_PAYMENT_KEY} characters of A-Z a-z 0-9 - _ ~ ."),
        )
    })
}

/// A change of an order's status, as published on the events topic
/// (written with the change, in the same transaction: an outbox).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderEvent {
    /// The event's id (increasing; consumers may deduplicate by it).
    pub event_id: u64,
    /// The order.
    pub order_id: OrderId,
    /// Its owner.
    pub member_id: MemberId,
    /// The status before.
    pub from: OrderStatus,
    /// The status after.
    pub to: OrderStatus,
    /// When it changed.
    pub at: DateTime<Utc>,
}

/// One line of a placed order, with the name and price at the time of order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderItem {
    /// The product.
    pub product_id: ProductId,
    /// Its name when ordered.
    pub product_name: String,
    /// Its unit price when ordered.
    pub price: i64,
    /// Units.
    pub quantity: u32,
}

/// A placed order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    /// Id assigned at placement.
    pub order_id: OrderId,
    /// The trace that created it (unique).
    #[serde(skip)]
    pub trace_id: Option<TraceId>,
    /// Owner.
    pub member_id: MemberId,
    /// State.
    pub status: OrderStatus,
    /// When it was placed.
    pub order_date: DateTime<Utc>,
    /// When an unpaid order expires.
    pub payment_due_at: DateTime<Utc>,
    /// The approved payment (PAID and REFUNDED orders).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment: Option<Payment>,
    /// The `paymentKey` of a confirmation under way or in doubt (the
    /// gateway did not answer): while set, the order is neither expired
    /// nor cancelled, and the reconciler asks the gateway.
    #[serde(skip)]
    pub payment_claim: Option<String>,
    /// Sum of price × quantity.
    pub total_price: i64,
    /// Lines, one per product.
    pub items: Vec<OrderItem>,
    /// Receiver.
    pub receiver_info: ReceiverInfo,
}

/// Units per product of `lines`, summed, by product id.
pub fn units_by_product(lines: &[OrderLine]) -> Vec<(ProductId, u64)> {
    let mut units = std::collections::BTreeMap::<ProductId, u64>::new();
    for line in lines {
        *units.entry(line.product_id).or_default() += u64::from(line.quantity);
    }
    units.into_iter().collect()
}

/// A page of a member's orders, newest first: at most `limit` orders with
/// ids below `before` (all when `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderPage {
    /// Most orders on the page.
    pub limit: usize,
    /// Only orders older (with smaller ids) than this one: the cursor the
    /// previous page returned.
    pub before: Option<OrderId>,
}

impl OrderPage {
    /// Largest page a caller may ask for.
    pub const MAX_LIMIT: usize = 100;

    /// The first page of up to `limit` orders; `limit` must be 1 to
    /// [`MAX_LIMIT`](Self::MAX_LIMIT).
    pub fn first(limit: usize) -> OmsResult<Self> {
        if !(1..=Self::MAX_LIMIT).contains(&limit) {
            return Err(OmsError::Invalid(format!(
                "limit must be from 1 to {}",
                Self::MAX_LIMIT
            )));
        }
        Ok(Self {
            limit,
            before: None,
        })
    }

    /// This page continued after the cursor `before`.
    pub fn after(self, before: Option<OrderId>) -> Self {
        Self { before, ..self }
    }

    /// What a service asks a store for to answer this page: one order more
    /// than the page holds (its limit brought to 1 to
    /// [`MAX_LIMIT`](Self::MAX_LIMIT)), so that [`Orders::of_probe`] can
    /// tell whether another page follows.
    pub fn probe(self) -> Self {
        Self {
            limit: self.limit.clamp(1, Self::MAX_LIMIT) + 1,
            ..self
        }
    }
}

impl Default for OrderPage {
    fn default() -> Self {
        Self {
            limit: Self::MAX_LIMIT,
            before: None,
        }
    }
}

/// One page of orders and the cursor of the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orders {
    /// The orders, newest first.
    pub orders: Vec<Order>,
    /// Pass it as [`OrderPage::before`] for the next page; `None` on the
    /// last page.
    pub next: Option<OrderId>,
}

impl Orders {
    /// The answer to `page` out of what a store answered to
    /// [`page.probe()`](OrderPage::probe): the page's orders, and the
    /// cursor of the next page when the probe found more.
    pub fn of_probe(page: OrderPage, mut orders: Vec<Order>) -> Self {
        let limit = page.limit.clamp(1, OrderPage::MAX_LIMIT);
        let next = if orders.len() > limit {
            orders.truncate(limit);
            orders.last().map(|o| o.order_id)
        } else {
            None
        };
        Self { orders, next }
    }
}

#[cfg(test)]
mod lifecycle_tests {
    use super::*;

    const ALL: [OrderStatus; 5] = [
        OrderStatus::PendingPayment,
        OrderStatus::Paid,
        OrderStatus::Refunded,
        OrderStatus::Cancelled,
        OrderStatus::Expired,
    ];
    const EVENTS: [LifecycleEvent; 4] = [
        LifecycleEvent::Pay,
        LifecycleEvent::Cancel,
        LifecycleEvent::Expire,
        LifecycleEvent::Refund,
    ];

    #[test]
    fn only_the_four_transitions_are_legal() {
        let legal = [
            (
                OrderStatus::PendingPayment,
                LifecycleEvent::Pay,
                OrderStatus::Paid,
            ),
            (
                OrderStatus::PendingPayment,
                LifecycleEvent::Cancel,
                OrderStatus::Cancelled,
            ),
            (
                OrderStatus::PendingPayment,
                LifecycleEvent::Expire,
                OrderStatus::Expired,
            ),
            (
                OrderStatus::Paid,
                LifecycleEvent::Refund,
                OrderStatus::Refunded,
            ),
        ];
        for from in ALL {
            for event in EVENTS {
                let expected = legal
                    .iter()
                    .find(|(f, e, _)| *f == from && *e == event)
                    .map(|(_, _, to)| *to);
                match (from.after(event), expected) {
                    (Ok(to), Some(want)) => assert_eq!(to, want),
                    (Err(OmsError::IllegalTransition { .. }), None) => {}
                    (got, want) => panic!("{from} + {event}: {got:?}, expected {want:?}"),
                }
            }
        }
    }

    #[test]
    fn final_statuses_hold_no_stock_and_names_round_trip() {
        for s in ALL {
            assert_eq!(s.is_final(), !s.holds_stock());
            assert_eq!(OrderStatus::parse(s.as_str()).unwrap(), s);
        }
        assert_eq!(
            OrderStatus::parse("ORDERED").unwrap(),
            OrderStatus::PendingPayment
        );
        assert!(OrderStatus::parse("SHIPPED").is_err());
    }

    #[test]
    fn payment_keys_are_checked() {
        assert!(validate_payment_key("tgen_20240213121814abcd").is_ok());
        for bad in ["", "has space", "semi;colon", &"k".repeat(201)] {
            assert!(validate_payment_key(bad).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod validation_tests {
    use super::*;

    fn line(product_id: u64, quantity: u32) -> OrderLine {
        OrderLine {
            product_id: ProductId(product_id),
            quantity,
        }
    }

    fn receiver(name: &str, phone: &str, address: &str) -> ReceiverInfo {
        ReceiverInfo {
            name: name.into(),
            phone: phone.into(),
            address: address.into(),
        }
    }

    fn listed(errors: &FieldErrors) -> Vec<(&str, FieldErrorCode)> {
        errors.iter().map(|e| (e.field.as_str(), e.code)).collect()
    }

    #[test]
    fn a_valid_request_has_no_field_errors() {
        let request = OrderRequest {
            items: vec![line(1, 1), line(2, MAX_QUANTITY)],
            receiver_info: receiver("Kim", "010-0000-0000", "Seoul"),
        };
        assert!(request.field_errors().is_empty());
        assert!(request.validate().is_ok());
    }

    #[test]
    fn every_failing_field_is_listed_by_its_path_in_request_order() {
        let request = OrderRequest {
            items: vec![line(1, 1), line(2, 0), line(0, 1001), line(3, 5)],
            receiver_info: receiver("Kim", "  ", &"a".repeat(MAX_RECEIVER_FIELD + 1)),
        };
        let errors = request.field_errors();
        assert_eq!(
            listed(&errors),
            [
                ("items[1].quantity", FieldErrorCode::OutOfRange),
                ("items[2].quantity", FieldErrorCode::OutOfRange),
                ("items[2].productId", FieldErrorCode::OutOfRange),
                ("receiverInfo.phone", FieldErrorCode::Required),
                ("receiverInfo.address", FieldErrorCode::TooLong),
            ]
        );
        assert_eq!(errors.as_slice()[0].message, "must be between 1 and 1000");
        let Err(OmsError::Validation(reported)) = request.validate() else {
            panic!("an invalid request validates");
        };
        assert_eq!(reported, errors);
        assert_eq!(
            OmsError::Validation(reported).to_string(),
            "invalid input: items[1].quantity must be between 1 and 1000; \
             items[2].quantity must be between 1 and 1000; \
             items[2].productId must be a positive integer; \
             receiverInfo.phone must not be empty; \
             receiverInfo.address must be at most 255 characters"
        );
    }

    #[test]
    fn a_single_failure_reads_as_it_always_did() {
        let request = OrderRequest {
            items: vec![line(1, 0)],
            receiver_info: receiver("Kim", "010", "Seoul"),
        };
        assert_eq!(
            request.validate().map_err(|e| e.to_string()),
            Err("invalid input: items[0].quantity must be between 1 and 1000".to_owned())
        );
    }

    #[test]
    fn empty_and_oversized_item_lists_are_one_error_each() {
        let blank = receiver("", "", "");
        let empty = OrderRequest {
            items: vec![],
            receiver_info: blank.clone(),
        };
        assert_eq!(
            listed(&empty.field_errors()),
            [
                ("items", FieldErrorCode::Required),
                ("receiverInfo.name", FieldErrorCode::Required),
                ("receiverInfo.phone", FieldErrorCode::Required),
                ("receiverInfo.address", FieldErrorCode::Required),
            ]
        );
        let oversized = OrderRequest {
            items: vec![line(0, 0); MAX_LINES + 1],
            receiver_info: receiver("Kim", "010", "Seoul"),
        };
        assert_eq!(
            listed(&oversized.field_errors()),
            [("items", FieldErrorCode::TooLong)]
        );
    }

    #[test]
    fn a_command_lists_its_member_and_key_with_the_request_fields() {
        let mut command = OrderCommand::new(
            TraceId::new(),
            MemberId(0),
            OrderRequest {
                items: vec![line(1, 2000)],
                receiver_info: receiver("Kim", "010", " "),
            },
        )
        .with_idempotency_key(Some("has space".into()));
        let Err(e) = command.validate() else {
            panic!("an invalid command validates");
        };
        assert_eq!(
            e.field_errors()
                .iter()
                .map(|e| e.field.as_str())
                .collect::<Vec<_>>(),
            [
                "memberId",
                "idempotencyKey",
                "items[0].quantity",
                "receiverInfo.address"
            ]
        );
        assert_eq!(
            crate::domain::FailureReason::of(&e),
            Some(crate::domain::FailureReason::Invalid)
        );
        command.member_id = MemberId(7);
        command.idempotency_key = Some("k-1".into());
        command.items = vec![line(1, 2)];
        command.receiver_info.address = "Seoul".into();
        assert!(command.validate().is_ok());
    }

    #[test]
    fn payment_keys_have_a_field_error_and_ports_an_invalid_one() {
        assert_eq!(payment_key_error("pay-1"), None);
        for (key, code) in [
            ("", FieldErrorCode::Required),
            ("has space", FieldErrorCode::Malformed),
            (&"k".repeat(MAX_PAYMENT_KEY + 1), FieldErrorCode::TooLong),
        ] {
            let e = payment_key_error(key);
            assert_eq!(
                e.as_ref().map(|e| (e.field.as_str(), e.code)),
                Some(("paymentKey", code)),
                "{key:?}"
            );
            assert!(matches!(
                validate_payment_key(key),
                Err(OmsError::Invalid(m)) if Some(m.as_str()) == e.as_ref().map(ToString::to_string).as_deref()
            ));
        }
    }
}
