//! Helpers shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use oms::domain::Role;
use oms::http::JwtAuth;

pub const SECRET: &[u8] = b"test-secret";

pub fn auth() -> JwtAuth {
    JwtAuth::new(SECRET)
}

pub fn token(member: u64, role: Role) -> String {
    auth().mint(member, role, Duration::from_secs(600)).unwrap()
}

pub fn order_body(lines: &[(u64, u32)]) -> serde_json::Value {
    serde_json::json!({
        "items": lines.iter().map(|(p, q)| serde_json::json!({"productId": p, "quantity": q})).collect::<Vec<_>>(),
        "receiverInfo": {"name": "Kim", "phone": "010-0000-0000", "address": "Seoul"}
    })
}

pub mod stack;
