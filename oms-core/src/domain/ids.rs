//! Identifiers of the domain.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::OmsError;

macro_rules! numeric_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<u64> for $name {
            fn from(value: u64) -> Self {
                Self(value)
            }
        }
    };
}

numeric_id!(
    /// A member (buyer or operator) as named by the `sub` claim of its token.
    MemberId
);
numeric_id!(
    /// A product, chosen by the operator who creates it.
    ProductId
);
numeric_id!(
    /// An order, assigned by the persistence adapter when the order is placed.
    OrderId
);

/// The id a client polls to follow one accepted order request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TraceId(pub Uuid);

impl TraceId {
    /// A new trace id: a UUIDv7, random and ordered by creation time (kind
    /// to the database index of outcomes, and it tells its own age).
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// How long ago the id was made, for a UUIDv7 (`None` for other
    /// versions, or a time in the future).
    pub fn age(&self) -> Option<std::time::Duration> {
        let (secs, nanos) = self.0.get_timestamp()?.to_unix();
        let made = std::time::UNIX_EPOCH + std::time::Duration::new(secs, nanos);
        std::time::SystemTime::now().duration_since(made).ok()
    }
}

impl Default for TraceId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for TraceId {
    type Err = OmsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s)
            .map(Self)
            .map_err(|_| OmsError::Invalid(format!("`{s}` is not a trace id (UUID)")))
    }
}
