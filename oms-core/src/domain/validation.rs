//! Field-by-field validation: every field of a request that breaks a rule,
//! with its path in the request, a stable code and a message.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{OmsError, OmsResult};

/// The kind of rule a field breaks (the `code` of a field error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FieldErrorCode {
    /// Empty (or blank) where a value is needed.
    Required,
    /// Shorter than allowed.
    TooShort,
    /// Longer than allowed (characters of a string, entries of a list).
    TooLong,
    /// A number (or an instant) outside the range allowed.
    OutOfRange,
    /// Not in the form required (an email address, a key's characters).
    Malformed,
    /// Sent together with a field it excludes, or disagreeing with it.
    Conflicting,
}

super::wire::wire_names!(FieldErrorCode, "field error code", {
    Required => "required",
    TooShort => "too_short",
    TooLong => "too_long",
    OutOfRange => "out_of_range",
    Malformed => "malformed",
    Conflicting => "conflicting",
});

/// One field of a request that breaks a rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldError {
    /// The field's path in the request body, as the JSON names it:
    /// `items[0].quantity`, `receiverInfo.name`, `email`.
    #[cfg_attr(feature = "openapi", schema(example = "items[0].quantity"))]
    pub field: String,
    /// The kind of rule broken.
    pub code: FieldErrorCode,
    /// What the rule is, about the field (without its name), e.g.
    /// `must be between 1 and 1000`.
    #[cfg_attr(feature = "openapi", schema(example = "must be between 1 and 1000"))]
    pub message: String,
}

impl FieldError {
    /// The error of `field`.
    pub fn new(field: impl Into<String>, code: FieldErrorCode, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            code,
            message: message.into(),
        }
    }
}

/// `field message`, e.g. `items[0].quantity must be between 1 and 1000`.
impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.field, self.message)
    }
}

/// The fields of a request that break rules, in the order of the request.
///
/// Collect them with [`push`](Self::push), then
/// [`into_result`](Self::into_result): `Ok` when there are none, else
/// [`OmsError::Validation`] with all of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    /// None yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the error of `field`.
    pub fn push(
        &mut self,
        field: impl Into<String>,
        code: FieldErrorCode,
        message: impl Into<String>,
    ) {
        self.0.push(FieldError::new(field, code, message));
    }

    /// The value of `result`, or `None` after adding its error.
    pub fn record<T>(&mut self, result: Result<T, FieldError>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(e) => {
                self.0.push(e);
                None
            }
        }
    }

    /// Adds the errors of `other`, after these.
    pub fn extend(&mut self, other: impl IntoIterator<Item = FieldError>) {
        self.0.extend(other);
    }

    /// Whether no field breaks a rule.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many errors.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The errors, in the order of the request.
    pub fn as_slice(&self) -> &[FieldError] {
        &self.0
    }

    /// The errors, in the order of the request.
    pub fn iter(&self) -> std::slice::Iter<'_, FieldError> {
        self.0.iter()
    }

    /// The field paths that break rules, in order (convenient in tests).
    pub fn fields(&self) -> Vec<&str> {
        self.0.iter().map(|e| e.field.as_str()).collect()
    }

    /// `Ok(())` when there are none, else [`OmsError::Validation`].
    pub fn into_result(self) -> OmsResult<()> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(OmsError::Validation(self))
        }
    }
}

/// Each error as [`FieldError`]'s `Display`, separated by `; `.
impl fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("the request breaks a rule");
        }
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            e.fmt(f)?;
        }
        Ok(())
    }
}

impl From<FieldError> for FieldErrors {
    fn from(e: FieldError) -> Self {
        Self(vec![e])
    }
}

impl From<Vec<FieldError>> for FieldErrors {
    fn from(errors: Vec<FieldError>) -> Self {
        Self(errors)
    }
}

impl From<FieldError> for OmsError {
    fn from(e: FieldError) -> Self {
        Self::Validation(e.into())
    }
}

impl FromIterator<FieldError> for FieldErrors {
    fn from_iter<I: IntoIterator<Item = FieldError>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl IntoIterator for FieldErrors {
    type Item = FieldError;
    type IntoIter = std::vec::IntoIter<FieldError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a FieldErrors {
    type Item = &'a FieldError;
    type IntoIter = std::slice::Iter<'a, FieldError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_as_one_sentence_each_and_become_a_validation_error() {
        let mut errors = FieldErrors::new();
        assert!(errors.clone().into_result().is_ok());
        errors.push(
            "items[0].quantity",
            FieldErrorCode::OutOfRange,
            "must be between 1 and 1000",
        );
        errors.push(
            "receiverInfo.name",
            FieldErrorCode::Required,
            "must not be empty",
        );
        assert_eq!(
            errors.to_string(),
            "items[0].quantity must be between 1 and 1000; receiverInfo.name must not be empty"
        );
        let Err(e) = errors.clone().into_result() else {
            panic!("two errors are an error");
        };
        assert_eq!(e.kind(), "VALIDATION_FAILED");
        assert_eq!(e.field_errors(), errors.as_slice());
        assert_eq!(
            e.to_string(),
            "invalid input: items[0].quantity must be between 1 and 1000; receiverInfo.name must not be empty"
        );
        assert_eq!(
            serde_json::to_value(&errors).ok(),
            Some(serde_json::json!([
                {"field": "items[0].quantity", "code": "out_of_range", "message": "must be between 1 and 1000"},
                {"field": "receiverInfo.name", "code": "required", "message": "must not be empty"},
            ]))
        );
    }
}
