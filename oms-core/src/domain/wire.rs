//! Wire names of the public enums: `Display` writes the name the API and
//! the records use, `FromStr` reads it back, and an unknown name is a
//! [`ParseEnumError`].

/// A string that is the wire name of no variant of an enum (e.g. `SHIPPED`
/// for an [`OrderStatus`](super::OrderStatus)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{value}`; expected one of {}", expected.join(", "))]
pub struct ParseEnumError {
    kind: &'static str,
    value: String,
    expected: &'static [&'static str],
}

impl ParseEnumError {
    /// The error for `value`, which is none of the `expected` names of a
    /// `kind` (e.g. `"order status"`).
    pub fn new(
        kind: &'static str,
        value: impl Into<String>,
        expected: &'static [&'static str],
    ) -> Self {
        Self {
            kind,
            value: value.into(),
            expected,
        }
    }

    /// What was to be parsed, e.g. `"order status"`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The string that was refused.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Every name that would have been accepted.
    pub fn expected(&self) -> &'static [&'static str] {
        self.expected
    }
}

/// Gives a fieldless enum its wire names: a `pub const ALL` of every
/// variant, `pub const NAMES` of their names, `as_str`, `Display` and
/// `FromStr` (with [`ParseEnumError`]).
macro_rules! wire_names {
    ($ty:ident, $kind:literal, { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The wire name of every variant, in the order of
            /// [`ALL`](Self::ALL).
            pub const NAMES: &'static [&'static str] = &[$($name),+];

            /// The wire name, as the API and the records spell it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }
        }

        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $ty {
            type Err = $crate::domain::ParseEnumError;

            /// Reads a wire name (exactly: case matters).
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    other => Err($crate::domain::ParseEnumError::new($kind, other, Self::NAMES)),
                }
            }
        }
    };
}

pub(crate) use wire_names;

#[cfg(test)]
mod tests {
    use std::fmt::{Debug, Display};
    use std::str::FromStr;

    use serde::Serialize;

    use super::ParseEnumError;
    use crate::domain::{
        FailureReason, FieldErrorCode, LifecycleEvent, OrderStatus, Role, TokenType,
    };

    /// Every variant's `Display` parses back to it, is the name serde
    /// writes, and an unknown name is refused with a [`ParseEnumError`]
    /// naming the kind, the value and the names expected.
    fn round_trips<T>(all: &[T], names: &[&str], kind: &str)
    where
        T: Copy + Debug + PartialEq + Display + Serialize + FromStr<Err = ParseEnumError>,
    {
        assert_eq!(all.len(), names.len());
        for (variant, name) in all.iter().zip(names) {
            let text = variant.to_string();
            assert_eq!(&text, name);
            assert_eq!(text.parse::<T>(), Ok(*variant), "{text}");
            assert_eq!(
                serde_json::to_value(variant).ok(),
                Some(serde_json::Value::String(text.clone())),
                "{variant:?}: the wire name is the serde name"
            );
            let other_case = if text == text.to_ascii_lowercase() {
                text.to_ascii_uppercase()
            } else {
                text.to_ascii_lowercase()
            };
            assert!(
                other_case.parse::<T>().is_err(),
                "{other_case}: names are exact"
            );
        }
        for unknown in ["", "SHIPPED", " PAID", "nonsense"] {
            let Err(e) = unknown.parse::<T>() else {
                panic!("{unknown:?} parsed as a {kind}");
            };
            assert_eq!((e.kind(), e.value()), (kind, unknown));
            assert_eq!(e.expected(), names);
            let message = e.to_string();
            assert!(
                message.contains(kind) && message.contains(names[0]),
                "{message}"
            );
        }
    }

    /// One test per enum, each checking every variant.
    macro_rules! round_trip_tests {
        ($($test:ident: $ty:ty, $kind:literal;)+) => {
            $(
                #[test]
                fn $test() {
                    round_trips::<$ty>(<$ty>::ALL, <$ty>::NAMES, $kind);
                }
            )+
        };
    }

    round_trip_tests! {
        order_status_names_round_trip: OrderStatus, "order status";
        lifecycle_event_names_round_trip: LifecycleEvent, "lifecycle event";
        failure_reason_names_round_trip: FailureReason, "failure reason";
        role_names_round_trip: Role, "role";
        token_type_names_round_trip: TokenType, "token type";
        field_error_code_names_round_trip: FieldErrorCode, "field error code";
    }

    #[test]
    fn the_names_are_those_of_the_contract() {
        assert_eq!(
            OrderStatus::NAMES,
            [
                "PENDING_PAYMENT",
                "PAID",
                "REFUNDED",
                "CANCELLED",
                "EXPIRED"
            ]
        );
        assert_eq!(Role::NAMES, ["USER", "ADMIN"]);
        assert_eq!(TokenType::NAMES, ["access", "refresh"]);
        for reason in [
            "OUT_OF_STOCK",
            "PRODUCT_NOT_FOUND",
            "POISON",
            "NOT_ACCEPTED",
            "LOST",
            "DUPLICATE",
            "UNPROCESSABLE",
            "LIMIT_EXCEEDED",
            "SALE_NOT_STARTED",
            "SALE_ENDED",
        ] {
            assert!(reason.parse::<FailureReason>().is_ok(), "{reason}");
        }
        assert_eq!(
            "SHIPPED".parse::<OrderStatus>().map_err(|e| e.to_string()),
            Err("unknown order status `SHIPPED`; expected one of PENDING_PAYMENT, PAID, REFUNDED, CANCELLED, EXPIRED".to_owned())
        );
    }
}
