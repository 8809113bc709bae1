//! What Toss sends and answers, and how an answer that is not a success is
//! read.

use chrono::{DateTime, Utc};
use oms_core::port::outbound::GatewayStatus;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

/// The body of `POST /v1/payments/confirm`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConfirmBody<'a> {
    pub(crate) payment_key: &'a str,
    pub(crate) order_id: &'a str,
    pub(crate) amount: i64,
}

/// The body of `POST /v1/payments/{paymentKey}/cancel`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CancelBody<'a> {
    pub(crate) cancel_reason: &'a str,
}

/// The fields of Toss's Payment object the gateway reads; every other
/// field is ignored.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TossPayment {
    pub(crate) payment_key: String,
    pub(crate) order_id: String,
    pub(crate) status: String,
    pub(crate) total_amount: i64,
    #[serde(default)]
    pub(crate) approved_at: Option<String>,
}

impl TossPayment {
    /// Reads a Payment object.
    pub(crate) fn parse(body: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(body)
            .map_err(|e| format!("unreadable payment ({e}): {}", snippet(body)))
    }

    /// Where the payment stands, as the port names it.
    pub(crate) fn gateway_status(&self) -> GatewayStatus {
        match self.status.as_str() {
            "DONE" => GatewayStatus::Done,
            "CANCELED" => GatewayStatus::Canceled,
            other => GatewayStatus::Other(other.to_owned()),
        }
    }

    /// `approvedAt` (ISO 8601 with an offset) in UTC; `None` when absent.
    pub(crate) fn approved_at(&self) -> Result<Option<DateTime<Utc>>, String> {
        self.approved_at
            .as_deref()
            .map(|at| {
                DateTime::parse_from_rfc3339(at)
                    .map(|at| at.with_timezone(&Utc))
                    .map_err(|e| format!("unreadable approvedAt {at:?}: {e}"))
            })
            .transpose()
    }
}

/// Toss's error object.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct TossError {
    pub(crate) code: String,
    #[serde(default)]
    pub(crate) message: String,
}

/// Codes that say our credentials or contract are wrong: nothing was done,
/// and nothing will be until the configuration is fixed.
const CONFIG_CODES: &[&str] = &[
    "UNAUTHORIZED_KEY",
    "INVALID_API_KEY",
    "INCORRECT_BASIC_AUTH_FORMAT",
    "FORBIDDEN_REQUEST",
];

/// Codes after which the request may still have been carried out: a
/// previous attempt went through, a request is still being processed, or
/// Toss (or the card company behind it) failed on its side.
const IN_DOUBT_CODES: &[&str] = &[
    "ALREADY_PROCESSED_PAYMENT",
    "FORBIDDEN_CONSECUTIVE_REQUEST",
    "PROVIDER_ERROR",
    "CARD_PROCESSING_ERROR",
    "FAILED_INTERNAL_SYSTEM_PROCESSING",
    "FAILED_PAYMENT_INTERNAL_SYSTEM_PROCESSING",
    "UNKNOWN_PAYMENT_ERROR",
];

/// How an answer other than a success reads.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// Our key or account is wrong (401, or a configuration code).
    Config(String),
    /// The request may have been carried out (5xx, an in-doubt code, an
    /// unexpected status, an unreadable body).
    InDoubt(String),
    /// Toss refused the request, with a reason: nothing was done.
    Refused(TossError),
}

/// Reads an answer whose status is not a success.
pub(crate) fn refusal(status: StatusCode, body: &[u8]) -> Refusal {
    let error = serde_json::from_slice::<TossError>(body)
        .ok()
        .filter(|e| !e.code.is_empty());
    if status.is_server_error() || !status.is_client_error() {
        return Refusal::InDoubt(match error {
            Some(e) => format!("Toss answered {status}: {}: {}", e.code, e.message),
            None => format!("Toss answered {status}: {}", snippet(body)),
        });
    }
    match error {
        Some(e) if IN_DOUBT_CODES.contains(&e.code.as_str()) => {
            Refusal::InDoubt(format!("Toss answered {status}: {}: {}", e.code, e.message))
        }
        Some(e)
            if status == StatusCode::UNAUTHORIZED || CONFIG_CODES.contains(&e.code.as_str()) =>
        {
            Refusal::Config(format!("Toss answered {status}: {}: {}", e.code, e.message))
        }
        Some(e) => Refusal::Refused(e),
        None if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
            Refusal::Config(format!("Toss answered {status}: {}", snippet(body)))
        }
        None => Refusal::InDoubt(format!(
            "Toss answered {status} without an error object: {}",
            snippet(body)
        )),
    }
}

/// The start of a body, for a message.
pub(crate) fn snippet(body: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".into();
    }
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{:?}…", &text[..end]),
        None => format!("{text:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(status: u16, body: &str) -> Refusal {
        let status = StatusCode::from_u16(status).unwrap();
        refusal(status, body.as_bytes())
    }

    #[test]
    fn a_card_refusal_is_refused_whatever_the_4xx() {
        for status in [400, 403, 404] {
            let body = r#"{"code":"REJECT_CARD_COMPANY","message":"no"}"#;
            assert!(
                matches!(read(status, body), Refusal::Refused(e) if e.code == "REJECT_CARD_COMPANY")
            );
        }
    }

    #[test]
    fn credentials_are_configuration() {
        assert!(matches!(
            read(401, r#"{"code":"UNAUTHORIZED_KEY","message":"m"}"#),
            Refusal::Config(_)
        ));
        assert!(matches!(
            read(401, r#"{"code":"SOMETHING","message":"m"}"#),
            Refusal::Config(_)
        ));
        assert!(matches!(
            read(400, r#"{"code":"INVALID_API_KEY","message":"m"}"#),
            Refusal::Config(_)
        ));
        assert!(matches!(
            read(403, r#"{"code":"FORBIDDEN_REQUEST","message":"m"}"#),
            Refusal::Config(_)
        ));
        assert!(matches!(read(401, ""), Refusal::Config(_)));
        assert!(matches!(
            read(403, "<html>denied</html>"),
            Refusal::Config(_)
        ));
    }

    #[test]
    fn what_may_have_happened_is_in_doubt() {
        assert!(matches!(
            read(400, r#"{"code":"ALREADY_PROCESSED_PAYMENT","message":"m"}"#),
            Refusal::InDoubt(_)
        ));
        assert!(matches!(
            read(400, r#"{"code":"PROVIDER_ERROR","message":"m"}"#),
            Refusal::InDoubt(_)
        ));
        assert!(matches!(
            read(500, r#"{"code":"REJECT_CARD_COMPANY","message":"m"}"#),
            Refusal::InDoubt(_)
        ));
        assert!(matches!(read(502, "bad gateway"), Refusal::InDoubt(_)));
        assert!(matches!(read(302, ""), Refusal::InDoubt(_)));
        assert!(matches!(read(400, "not json"), Refusal::InDoubt(_)));
        assert!(matches!(
            read(400, r#"{"code":"","message":"m"}"#),
            Refusal::InDoubt(_)
        ));
        assert!(matches!(
            read(429, r#"{"message":"slow down"}"#),
            Refusal::InDoubt(_)
        ));
    }

    #[test]
    fn a_snippet_is_short_and_cut_on_a_character() {
        let long = "결".repeat(500);
        let s = snippet(long.as_bytes());
        assert!(s.chars().count() < 210);
        assert_eq!(snippet(b"  "), "(empty body)");
    }

    #[test]
    fn a_payment_reads_its_fields_and_ignores_the_rest() {
        let body = r#"{"mId":"tosspayments","paymentKey":"k","orderId":"oms-order-1","status":"DONE",
            "totalAmount":12900,"approvedAt":"2024-02-13T12:18:14+09:00","method":"카드","failure":null}"#;
        let p = TossPayment::parse(body.as_bytes()).unwrap();
        assert_eq!(p.gateway_status(), GatewayStatus::Done);
        assert_eq!(
            p.approved_at().unwrap().unwrap().to_rfc3339(),
            "2024-02-13T03:18:14+00:00"
        );
        let mut p = p;
        p.status = "PARTIAL_CANCELED".into();
        assert_eq!(
            p.gateway_status(),
            GatewayStatus::Other("PARTIAL_CANCELED".into())
        );
        p.approved_at = Some("yesterday".into());
        assert!(p.approved_at().is_err());
        assert!(TossPayment::parse(br#"{"paymentKey":"k"}"#).is_err());
        assert!(TossPayment::parse(
            br#"{"paymentKey":"k","orderId":"o","status":"DONE","totalAmount":12.5}"#
        )
        .is_err());
    }
}
