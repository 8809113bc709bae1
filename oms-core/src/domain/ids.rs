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

    /// The W3C Trace Context `traceparent` of the order: the trace id is
    /// this id's 128 bits, the parent span id its last 64 bits (never zero),
    /// sampled. Every process derives the same value from the order's trace
    /// id, so its spans join one distributed trace wherever they run.
    pub fn traceparent(&self) -> String {
        format!("00-{}-{:016x}-01", self.0.simple(), self.span_id())
    }

    /// The span id [`traceparent`](Self::traceparent) names as the parent:
    /// the id's last 64 bits, or 1 when they are all zero.
    pub fn span_id(&self) -> u64 {
        let low = self.0.as_u128() as u64;
        if low == 0 {
            1
        } else {
            low
        }
    }

    /// The trace id a `traceparent` header names, when the header is well
    /// formed (version `00`, 32 + 16 lowercase hex digits, not all zero).
    pub fn from_traceparent(header: &str) -> Option<Self> {
        let mut parts = header.split('-');
        let (version, trace, span, _flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, len: usize| {
            s.len() == len
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if version != "00" || !hex(trace, 32) || !hex(span, 16) || parts.next().is_some() {
            return None;
        }
        let id = u128::from_str_radix(trace, 16).ok()?;
        (id != 0).then(|| Self(Uuid::from_u128(id)))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_carries_the_trace_id_and_reads_back() {
        let id = TraceId::new();
        let header = id.traceparent();
        assert_eq!(header.len(), 55, "{header}");
        assert!(
            header.starts_with("00-") && header.ends_with("-01"),
            "{header}"
        );
        assert_eq!(&header[3..35], id.0.simple().to_string());
        assert_eq!(TraceId::from_traceparent(&header), Some(id));
        assert_ne!(id.span_id(), 0);
    }

    #[test]
    fn malformed_traceparents_are_refused() {
        let id = TraceId::new().traceparent();
        for bad in [
            "",
            "00",
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-00",
            &id[..40],
        ] {
            assert_eq!(TraceId::from_traceparent(bad), None, "{bad:?}");
        }
        assert_eq!(
            TraceId::from_traceparent(&id).map(|t| t.traceparent()),
            Some(id)
        );
    }

    #[test]
    fn a_zero_low_half_still_names_a_span() {
        let id = TraceId(Uuid::from_u128(5 << 64));
        assert_eq!(id.span_id(), 1);
        assert!(id.traceparent().ends_with("-0000000000000001-01"));
    }
}
