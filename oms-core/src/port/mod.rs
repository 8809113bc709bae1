//! Ports: what the core offers (inbound) and what it needs (outbound).

pub mod inbound;
pub mod outbound;
