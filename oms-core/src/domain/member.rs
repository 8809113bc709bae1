//! Members: buyers and operators, with their sign-up rules.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{FieldError, FieldErrorCode, FieldErrors, MemberId, OmsError, OmsResult, Role};

/// Longest email address, in bytes (RFC 5321's path limit less the angle
/// brackets).
pub const MAX_EMAIL_LEN: usize = 254;
/// Longest local part (before the `@`) of an email address.
pub const MAX_EMAIL_LOCAL_LEN: usize = 64;
/// Shortest password, in characters.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Longest password, in characters.
pub const MAX_PASSWORD_CHARS: usize = 128;
/// Longest display name, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// A normalized email address: trimmed, ASCII, lowercase, one `@` between a
/// local part and a domain of dot-separated labels.
///
/// Internationalized addresses are refused (write the domain in punycode):
/// with ASCII only, two addresses that look the same are the same.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    /// Checks and normalizes `raw`; [`OmsError::Validation`] of the field
    /// `email` when it is not an address.
    pub fn parse(raw: &str) -> OmsResult<Self> {
        Self::parse_field(raw).map_err(OmsError::from)
    }

    /// [`parse`](Self::parse), with the error of the field `email`.
    fn parse_field(raw: &str) -> Result<Self, FieldError> {
        let invalid = |code: FieldErrorCode, why: &str| {
            FieldError::new("email", code, format!("is malformed: {why}"))
        };
        let malformed = |why: &str| invalid(FieldErrorCode::Malformed, why);
        let email = raw.trim();
        if email.is_empty() {
            return Err(invalid(FieldErrorCode::Required, "it is empty"));
        }
        if email.len() > MAX_EMAIL_LEN {
            return Err(invalid(
                FieldErrorCode::TooLong,
                "it is longer than 254 characters",
            ));
        }
        if !email.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(malformed(
                "it must be visible ASCII characters without spaces",
            ));
        }
        let Some((local, domain)) = email.split_once('@') else {
            return Err(malformed("it has no `@`"));
        };
        if local.is_empty() || local.len() > MAX_EMAIL_LOCAL_LEN {
            return Err(malformed("the part before `@` must be 1 to 64 characters"));
        }
        const LOCAL_SPECIALS: &[u8] = b".!#$%&'*+/=?^_`{|}~-";
        if !local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || LOCAL_SPECIALS.contains(&b))
            || local.starts_with('.')
            || local.ends_with('.')
            || local.contains("..")
        {
            return Err(malformed(
                "the part before `@` has characters it may not have",
            ));
        }
        let labels: Vec<&str> = domain.split('.').collect();
        let label_ok = |l: &&str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if labels.len() < 2 || !labels.iter().all(label_ok) {
            return Err(malformed(
                "the domain must be dot-separated labels of letters, digits and hyphens",
            ));
        }
        Ok(Self(email.to_ascii_lowercase()))
    }

    /// The normalized address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Email {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// A stored password hash (a PHC string such as `$argon2id$v=19$...`).
/// Its `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Wraps a PHC string read from a store or made by a
    /// [`PasswordHasher`](crate::port::outbound::PasswordHasher).
    pub fn new(phc: impl Into<String>) -> Self {
        Self(phc.into())
    }

    /// The PHC string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(<hidden>)")
    }
}

/// Checks a password's length: [`MIN_PASSWORD_CHARS`] to
/// [`MAX_PASSWORD_CHARS`] characters (Unicode scalar values). Any
/// character is allowed; passwords are compared byte for byte.
/// [`OmsError::Validation`] of the field `password` otherwise.
pub fn validate_password(password: &str) -> OmsResult<()> {
    match password_error(password) {
        None => Ok(()),
        Some(e) => Err(e.into()),
    }
}

fn password_error(password: &str) -> Option<FieldError> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Some(FieldError::new(
            "password",
            FieldErrorCode::TooShort,
            format!("must be at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Some(FieldError::new(
            "password",
            FieldErrorCode::TooLong,
            format!("must be at most {MAX_PASSWORD_CHARS} characters"),
        ));
    }
    None
}

/// Checks and trims a display name: not empty, at most
/// [`MAX_NAME_CHARS`] characters, no control characters.
/// [`OmsError::Validation`] of the field `name` otherwise.
pub fn normalize_name(raw: &str) -> OmsResult<String> {
    name_field(raw).map_err(OmsError::from)
}

fn name_field(raw: &str) -> Result<String, FieldError> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(FieldError::new(
            "name",
            FieldErrorCode::Required,
            "must not be empty",
        ));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(FieldError::new(
            "name",
            FieldErrorCode::TooLong,
            format!("must be at most {MAX_NAME_CHARS} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(FieldError::new(
            "name",
            FieldErrorCode::Malformed,
            "must not contain control characters",
        ));
    }
    Ok(name.to_owned())
}

/// What a new buyer sends to sign up, as received.
#[derive(Clone, PartialEq, Eq)]
pub struct Signup {
    /// Email address (normalized by [`Signup::validate`]).
    pub email: String,
    /// Password in clear.
    pub password: String,
    /// Display name.
    pub name: String,
}

impl fmt::Debug for Signup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signup")
            .field("email", &self.email)
            .field("password", &"<hidden>")
            .field("name", &self.name)
            .finish()
    }
}

impl Signup {
    /// The normalized email and name, once every rule holds: a well-formed
    /// email, a password of 10 to 128 characters, a name. Every field that
    /// breaks a rule is reported ([`OmsError::Validation`]).
    pub fn validate(&self) -> OmsResult<(Email, String)> {
        let mut errors = FieldErrors::new();
        let email = errors.record(Email::parse_field(&self.email));
        errors.extend(password_error(&self.password));
        let name = errors.record(name_field(&self.name));
        match (email, name) {
            (Some(email), Some(name)) if errors.is_empty() => Ok((email, name)),
            _ => Err(OmsError::Validation(errors)),
        }
    }
}

/// What a member sends to log in, as received, with the client's address
/// when known (for throttling).
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    /// Email address, as typed.
    pub email: String,
    /// Password in clear.
    pub password: String,
    /// The client's address.
    pub client: Option<std::net::IpAddr>,
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("email", &self.email)
            .field("password", &"<hidden>")
            .field("client", &self.client)
            .finish()
    }
}

/// A member to be stored: everything but the id the store assigns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMember {
    /// Normalized email, unique among members.
    pub email: Email,
    /// Display name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Argon2id hash of the password.
    pub password_hash: PasswordHash,
}

/// A stored member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Id, assigned by the store.
    pub id: MemberId,
    /// Normalized email, unique among members.
    pub email: Email,
    /// Display name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Argon2id hash of the password.
    pub password_hash: PasswordHash,
    /// When the member signed up.
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lowercased() {
        let e = Email::parse("  Kim.Buyer+sale@Example.CO.kr ").unwrap();
        assert_eq!(e.as_str(), "kim.buyer+sale@example.co.kr");
        assert_eq!(e, Email::parse("kim.buyer+sale@example.co.kr").unwrap());
    }

    #[test]
    fn malformed_emails_are_refused() {
        let long_local = format!("{}@example.com", "a".repeat(65));
        let long = format!("a@{}.com", "b".repeat(250));
        for bad in [
            "",
            "   ",
            "kim",
            "kim@",
            "@example.com",
            "kim@example",
            "kim@@example.com",
            "kim@exa mple.com",
            "kim@-example.com",
            "kim@example..com",
            "kim@example.com.",
            ".kim@example.com",
            "kim.@example.com",
            "k..im@example.com",
            "kim\u{0}@example.com",
            "김@example.com",
            "kim@例え.jp",
            "kim@example.com\u{200b}",
            "kim(x)@example.com",
            &long_local,
            &long,
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn password_length_counts_characters() {
        assert!(validate_password("123456789").is_err());
        assert!(validate_password("1234567890").is_ok());
        assert!(
            validate_password(&"비".repeat(10)).is_ok(),
            "10 characters, 30 bytes"
        );
        assert!(validate_password(&"x".repeat(128)).is_ok());
        assert!(validate_password(&"x".repeat(129)).is_err());
        assert!(validate_password(&"비".repeat(129)).is_err());
    }

    #[test]
    fn names_are_trimmed_and_checked() {
        assert_eq!(normalize_name("  Kim  ").unwrap(), "Kim");
        assert_eq!(normalize_name("김철수").unwrap(), "김철수");
        for bad in ["", "   ", "a\u{7}b", "line\nbreak"] {
            assert!(normalize_name(bad).is_err(), "{bad:?}");
        }
        assert!(normalize_name(&"가".repeat(100)).is_ok());
        assert!(normalize_name(&"가".repeat(101)).is_err());
    }

    #[test]
    fn a_signup_lists_every_failing_field() {
        let signup = |email: &str, password: &str, name: &str| Signup {
            email: email.into(),
            password: password.into(),
            name: name.into(),
        };
        let all_bad = signup("kim@", "short", " ");
        let Err(e) = all_bad.validate() else {
            panic!("a bad signup validates");
        };
        assert_eq!(
            e.field_errors()
                .iter()
                .map(|e| (e.field.as_str(), e.code))
                .collect::<Vec<_>>(),
            [
                ("email", FieldErrorCode::Malformed),
                ("password", FieldErrorCode::TooShort),
                ("name", FieldErrorCode::Required),
            ]
        );
        assert_eq!(
            e.to_string(),
            "invalid input: email is malformed: the domain must be dot-separated labels \
             of letters, digits and hyphens; password must be at least 10 characters; \
             name must not be empty"
        );
        let Err(e) = signup("", &"x".repeat(129), "Kim").validate() else {
            panic!("a bad signup validates");
        };
        assert_eq!(
            e.field_errors()
                .iter()
                .map(|e| (e.field.as_str(), e.code))
                .collect::<Vec<_>>(),
            [
                ("email", FieldErrorCode::Required),
                ("password", FieldErrorCode::TooLong)
            ]
        );
        let (email, name) = signup(" Kim@Example.com", "1234567890", " Kim ")
            .validate()
            .unwrap();
        assert_eq!((email.as_str(), name.as_str()), ("kim@example.com", "Kim"));
    }

    #[test]
    fn single_rules_keep_their_messages() {
        assert_eq!(
            validate_password("short").map_err(|e| e.to_string()),
            Err("invalid input: password must be at least 10 characters".to_owned())
        );
        assert_eq!(
            Email::parse("kim").map_err(|e| e.to_string()),
            Err("invalid input: email is malformed: it has no `@`".to_owned())
        );
        assert_eq!(
            normalize_name("a\u{7}b").map_err(|e| e.to_string()),
            Err("invalid input: name must not contain control characters".to_owned())
        );
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let s = Signup {
            email: "a@b.co".into(),
            password: "correct horse battery".into(),
            name: "A".into(),
        };
        assert!(!format!("{s:?}").contains("horse"));
        let h = PasswordHash::new("$argon2id$v=19$secret");
        assert!(!format!("{h:?}").contains("secret"));
    }
}
