//! The OpenAPI document: the committed copy (`docs/openapi.json`) is the
//! one the code generates, the router serves it, every route of the router
//! is in it (and answers), every problem code of docs/API.md is in it, and
//! status fields are enums.
//!
//! After changing a route or a body: `OMS_UPDATE_OPENAPI=1 cargo test
//! --test openapi` rewrites `docs/openapi.json`; commit it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;

use axum::http::StatusCode;
use common::{auth, token};
use oms::domain::{FieldErrorCode, Role};
use oms::embedded::EmbeddedPipeline;
use oms::http::router;
use serde_json::Value;

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
const ROUTER_SOURCE: &str = include_str!("../src/http/mod.rs");
const CONTRACT: &str = include_str!("../docs/API.md");

fn generated() -> String {
    oms::http::openapi_json().expect("the document serializes")
}

fn document() -> Value {
    serde_json::from_str(&generated()).unwrap()
}

/// Every `(METHOD, path)` of the document, path parameters as `{}`.
fn documented() -> BTreeSet<(String, String)> {
    let doc = document();
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            ops.insert((method.to_uppercase(), normalize(path)));
        }
    }
    ops
}

/// A path with every `{parameter}` as `{}`.
fn normalize(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push_str("{}");
            }
            '}' => in_param = false,
            _ if !in_param => out.push(c),
            _ => {}
        }
    }
    out
}

/// Every `(METHOD, path)` that `router()` mounts, read from its source:
/// each `.route("path", get(..).post(..))`.
fn routed() -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    let mut rest = ROUTER_SOURCE;
    while let Some(at) = rest.find(".route(") {
        rest = &rest[at + ".route(".len()..];
        // The call's arguments, up to its closing parenthesis.
        let mut depth = 1;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                depth == 0
            })
            .map(|(i, _)| i)
            .unwrap();
        let call = &rest[..end];
        let path = call.split('"').nth(1).expect("a path literal");
        for method in ["get", "post", "put", "patch", "delete"] {
            let called = call.match_indices(&format!("{method}(")).any(|(i, _)| {
                i == 0
                    || !call.as_bytes()[i - 1].is_ascii_alphanumeric()
                        && call.as_bytes()[i - 1] != b'_'
            });
            if called {
                ops.insert((method.to_uppercase(), normalize(path)));
            }
        }
    }
    ops
}

#[test]
fn the_committed_document_is_the_one_the_code_generates() {
    let generated = generated();
    if std::env::var("OMS_UPDATE_OPENAPI").is_ok_and(|v| v == "1") {
        std::fs::write(COMMITTED, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    if committed != generated {
        let (line, ours, theirs) = committed
            .lines()
            .chain(std::iter::repeat(""))
            .zip(generated.lines().chain(std::iter::repeat("")))
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .map(|(i, (a, b))| (i + 1, a, b))
            .unwrap_or((0, "", ""));
        panic!(
            "docs/openapi.json is not the OpenAPI document the code generates \
             (first difference at line {line}:\n  committed: {ours}\n  generated: {theirs}).\n\
             Regenerate it with\n\n    OMS_UPDATE_OPENAPI=1 cargo test --test openapi\n\n\
             and commit docs/openapi.json."
        );
    }
}

#[tokio::test]
async fn the_router_serves_the_document_without_a_token() {
    let pipeline = EmbeddedPipeline::start();
    let app = router(pipeline.app_state(auth()));
    let (status, headers, body) = common::call(&app, "GET", "/openapi.json", None, &[], None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(body, document());
    assert_eq!(body["openapi"], "3.1.0");
}

#[test]
fn every_route_of_the_router_is_documented_and_nothing_else() {
    let routed = routed();
    let documented = documented();
    assert!(
        routed.len() > 20,
        "the router's routes were not read: {routed:?}"
    );
    let missing: Vec<_> = routed.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&routed).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "routes without a description: {missing:?}; described but not routed: {extra:?}"
    );
}

/// Each documented operation, called on the app with sample parameters,
/// is answered by its handler, never by the router's fallbacks.
#[tokio::test]
async fn every_documented_operation_is_routed() {
    let pipeline = EmbeddedPipeline::start();
    let app = router(pipeline.app_state(auth()));
    let admin = token(1, Role::Admin);
    let trace = uuid::Uuid::now_v7().to_string();
    let doc = document();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let uri = path
            .replace("{productId}", "1")
            .replace("{orderId}", "1")
            .replace("{traceId}", &trace);
        assert!(!uri.contains('{'), "no sample for a parameter of {path}");
        for method in item.as_object().unwrap().keys() {
            let method = method.to_uppercase();
            let body = matches!(method.as_str(), "POST" | "PUT").then(|| serde_json::json!({}));
            let (status, _, answer) =
                common::call(&app, &method, &uri, Some(&admin), &[], body).await;
            let fallback = (status == StatusCode::NOT_FOUND
                && answer["detail"] == "no such resource")
                || status == StatusCode::METHOD_NOT_ALLOWED;
            assert!(!fallback, "{method} {uri} is not routed: {status} {answer}");
        }
    }
}

/// The problem codes docs/API.md names after an HTTP status (`409
/// \`OUT_OF_STOCK\``), and the one of its example body.
fn contract_codes() -> BTreeSet<String> {
    let mut codes = BTreeSet::new();
    let parts: Vec<&str> = CONTRACT.split('`').collect();
    // Odd parts are inside backticks; what precedes one is the even part
    // before it.
    for i in (1..parts.len()).step_by(2) {
        let token = parts[i];
        if token.len() < 4 || !token.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
            continue;
        }
        let before = parts[i - 1].trim_end_matches(|c: char| c.is_whitespace() || c == '*');
        let status: String = before.chars().rev().take(3).collect();
        let after_status = before.chars().rev().nth(3);
        let is_status = status.len() == 3
            && status.chars().all(|c| c.is_ascii_digit())
            && matches!(status.chars().last(), Some('4' | '5'))
            && after_status.is_none_or(|c| !c.is_ascii_alphanumeric());
        if is_status {
            codes.insert(token.to_owned());
        }
    }
    codes.extend(
        example_codes()
            .into_iter()
            .filter(|c| c.chars().all(|c| c.is_ascii_uppercase() || c == '_')),
    );
    codes
}

/// Every `"code": "..."` of the example bodies of docs/API.md: problem
/// codes (`VALIDATION_FAILED`) and the codes of field errors
/// (`out_of_range`).
fn example_codes() -> Vec<String> {
    CONTRACT
        .split("\"code\": \"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_field_error_codes_of_the_contract_are_those_of_the_code() {
    let field_codes: Vec<String> = example_codes()
        .into_iter()
        .filter(|c| c.chars().any(|c| c.is_ascii_lowercase()))
        .collect();
    assert!(
        field_codes.len() >= 2,
        "no field error codes in docs/API.md"
    );
    for code in &field_codes {
        assert!(
            code.parse::<FieldErrorCode>().is_ok(),
            "{code} of docs/API.md is no field error code"
        );
    }
    // Every code is named in docs/API.md.
    for code in FieldErrorCode::NAMES {
        assert!(
            CONTRACT.contains(&format!("`{code}`")),
            "{code} is not in docs/API.md"
        );
    }
}

/// Every problem response of the document: `(status, code)` of each
/// example, checking on the way that each 4xx/5xx is problem+json.
fn documented_problems() -> BTreeSet<(u16, String)> {
    let doc = document();
    let mut problems = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for (status, response) in op["responses"].as_object().unwrap() {
                let status: u16 = status.parse().unwrap();
                if status < 400 {
                    continue;
                }
                let content = response["content"].as_object().unwrap();
                let problem = &content["application/problem+json"];
                assert_eq!(content.len(), 1, "{method} {path} {status}: {content:?}");
                assert_eq!(problem["schema"]["$ref"], "#/components/schemas/Problem");
                let examples = problem["examples"].as_object().unwrap();
                assert!(!examples.is_empty(), "{method} {path} {status}");
                for (code, example) in examples {
                    assert_eq!(example["value"]["code"], code.as_str());
                    assert_eq!(example["value"]["status"], status);
                    let described = response["description"].as_str().unwrap();
                    assert!(described.contains(&format!("`{code}`")), "{method} {path}");
                    problems.insert((status, code.clone()));
                }
            }
        }
    }
    problems
}

#[test]
fn every_problem_code_of_the_contract_is_documented() {
    let contract = contract_codes();
    assert!(
        contract.len() > 20,
        "codes not read from docs/API.md: {contract:?}"
    );
    let documented: BTreeSet<String> = documented_problems().into_iter().map(|(_, c)| c).collect();
    let missing: Vec<_> = contract.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "codes of docs/API.md not in the document: {missing:?}"
    );
}

#[test]
fn status_fields_are_enums() {
    let doc = document();
    let schemas = &doc["components"]["schemas"];
    let names = |schema: &Value| -> Vec<String> {
        schema["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("not an enum: {schema}"))
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        names(&schemas["OrderStatus"]),
        [
            "PENDING_PAYMENT",
            "PAID",
            "REFUNDED",
            "CANCELLED",
            "EXPIRED"
        ]
    );
    assert_eq!(
        names(&schemas["TraceStatus"]),
        ["PROCESSING", "COMPLETED", "FAILED"]
    );
    assert_eq!(names(&schemas["Role"]), ["USER", "ADMIN"]);
    assert_eq!(names(&schemas["FieldErrorCode"]), FieldErrorCode::NAMES);
    assert_eq!(
        schemas["Problem"]["properties"]["errors"]["items"]["$ref"],
        "#/components/schemas/FieldError"
    );
    assert!(names(&schemas["FailureReason"]).contains(&"OUT_OF_STOCK".to_owned()));
    for (schema, field, of) in [
        ("OrderBody", "status", "OrderStatus"),
        ("PaidBody", "status", "OrderStatus"),
        ("TraceBody", "status", "TraceStatus"),
        ("MemberBody", "role", "Role"),
    ] {
        assert_eq!(
            schemas[schema]["properties"][field]["$ref"],
            format!("#/components/schemas/{of}"),
            "{schema}.{field}"
        );
    }
    let reason = &schemas["TraceBody"]["properties"]["reason"];
    assert!(reason
        .to_string()
        .contains("#/components/schemas/FailureReason"));
    let room: Vec<String> = schemas["RoomBody"]["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|v| names(&v["properties"]["status"]))
        .collect();
    assert_eq!(room, ["WAITING", "ADMITTED"]);
    let admin = &doc["paths"]["/api/v1/admin/orders"]["get"]["parameters"];
    let status = admin
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "status")
        .unwrap();
    assert_eq!(status["schema"]["$ref"], "#/components/schemas/OrderStatus");
}

#[test]
fn authenticated_operations_name_the_bearer_scheme() {
    let doc = document();
    let scheme = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(
        (&scheme["type"], &scheme["scheme"]),
        (&"http".into(), &"bearer".into())
    );
    let open: BTreeSet<&str> = [
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/api/v1/auth/signup",
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
    ]
    .into();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let secured = op["security"] == serde_json::json!([{"bearer": []}]);
            let unauthorized = op["responses"]["401"]["content"]["application/problem+json"]
                ["examples"]
                .get("UNAUTHORIZED")
                .is_some();
            assert_eq!(secured, !open.contains(path.as_str()), "{method} {path}");
            if secured {
                assert!(unauthorized, "{method} {path} answers 401 UNAUTHORIZED");
            }
        }
    }
}
