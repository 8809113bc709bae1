//! Mints a bearer access token for the API, for tools and scripts that do
//! not log in (buyers and operators log in: `POST /api/v1/auth/login`).
//!
//! `cargo run --example token -- <member-id>[-<last-id>] [USER|ADMIN] [ttl-seconds]`
//!
//! With a range of ids it prints one token per member, a line each (for
//! load generators).
//!
//! The token is an access token like those the API issues (`typ:
//! "access"`, a random `jti`), without a login (`sid`): it is checked,
//! and can be revoked by logging it out, like any other.
//!
//! Signs with `OMS_JWT_SECRET`, or with the development secret of the
//! embedded default when it is not set. It warns when `OMS_JWT_SECRET` is one
//! the `api` refuses outside the embedded default on loopback (shorter than
//! 32 bytes, or the development secret).

use std::process::ExitCode;
use std::time::Duration;

use oms::config::{DEV_JWT_SECRET, MIN_JWT_SECRET_BYTES};
use oms::domain::Role;
use oms::http::JwtAuth;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: token <member-id>[-<last-id>] [USER|ADMIN] [ttl-seconds]";
    let id = |s: &str| s.parse::<u64>().ok().filter(|m| *m > 0);
    let members = args.first().and_then(|m| match m.split_once('-') {
        None => id(m).map(|m| m..=m),
        Some((first, last)) => Some(id(first)?..=id(last)?).filter(|r| !r.is_empty()),
    });
    let Some(members) = members else {
        eprintln!("{usage}");
        return ExitCode::from(2);
    };
    let role = match args.get(1).map(String::as_str) {
        None | Some("USER") => Role::User,
        Some("ADMIN") => Role::Admin,
        Some(other) => {
            eprintln!("unknown role {other:?}; {usage}");
            return ExitCode::from(2);
        }
    };
    let ttl = match args.get(2).map(|t| t.parse::<u64>()) {
        None => 3600,
        Some(Ok(t)) => t,
        Some(Err(_)) => {
            eprintln!("{usage}");
            return ExitCode::from(2);
        }
    };
    let given = std::env::var("OMS_JWT_SECRET")
        .ok()
        .filter(|s| !s.trim().is_empty());
    let weak = given
        .as_deref()
        .is_some_and(|s| s.trim() == DEV_JWT_SECRET || s.len() < MIN_JWT_SECRET_BYTES);
    let secret = given.unwrap_or_else(|| DEV_JWT_SECRET.to_owned());
    if weak {
        eprintln!(
            "warning: this secret only works with the embedded default on a loopback address; elsewhere the api needs OMS_JWT_SECRET of at least {MIN_JWT_SECRET_BYTES} bytes"
        );
    }
    let auth = JwtAuth::new(secret.as_bytes());
    for member in members {
        match auth.mint(member, role, Duration::from_secs(ttl)) {
            Ok(token) => println!("{token}"),
            Err(e) => {
                eprintln!("{}", e.detail);
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
