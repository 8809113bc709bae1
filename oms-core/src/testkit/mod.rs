//! Conformance suites: one per outbound port, run against the in-memory
//! adapter and against each real adapter, so that they all keep the same
//! contract.
//!
//! Each suite is a plain async function that panics (as tests do) when the
//! adapter breaks the contract. Ids are random, so a suite can run again and
//! again against the same database.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

pub mod lifecycle_store;
pub mod member_store;
pub mod order_admin_store;
pub mod order_store;
pub mod payment_gateway;
pub mod product_store;
pub mod rate_limiter;
pub mod services;
pub mod session_store;
pub mod stock_gate;
pub mod trace_store;
pub mod waiting_room;

use crate::domain::{
    MemberId, OrderCommand, OrderLine, OrderRequest, ProductDraft, ProductId, ReceiverInfo, TraceId,
};

/// A random id in `1..2^52`, for products and members of a test run.
pub fn random_id() -> u64 {
    let bits = uuid::Uuid::new_v4().as_u128() as u64;
    (bits >> 12).max(1)
}

/// A fresh product id.
pub fn random_product_id() -> ProductId {
    ProductId(random_id())
}

/// A fresh member id.
pub fn random_member_id() -> MemberId {
    MemberId(random_id())
}

/// A draft with this stock and price 1000.
pub fn draft(name: &str, stock: i64) -> ProductDraft {
    ProductDraft {
        name: name.to_owned(),
        price: 1000,
        stock,
        rules: Default::default(),
    }
}

/// A command of `member` for these `(product, quantity)` lines.
pub fn command(member: MemberId, lines: &[(ProductId, u32)]) -> OrderCommand {
    OrderCommand::new(
        TraceId::new(),
        member,
        OrderRequest {
            items: lines
                .iter()
                .map(|&(product_id, quantity)| OrderLine {
                    product_id,
                    quantity,
                })
                .collect(),
            receiver_info: ReceiverInfo {
                name: "Kim".into(),
                phone: "010-0000-0000".into(),
                address: "Seoul".into(),
            },
        },
    )
}
