//! Mints a bearer token for the API.
//!
//! `cargo run --example token -- <member-id> [USER|ADMIN] [ttl-seconds]`
//!
//! Signs with `OMS_JWT_SECRET`, or with the development secret of the
//! embedded default when it is not set.

use std::process::ExitCode;
use std::time::Duration;

use oms::config::DEV_JWT_SECRET;
use oms::domain::Role;
use oms::http::JwtAuth;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: token <member-id> [USER|ADMIN] [ttl-seconds]";
    let Some(member) = args
        .first()
        .and_then(|m| m.parse::<u64>().ok())
        .filter(|m| *m > 0)
    else {
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
    let secret = std::env::var("OMS_JWT_SECRET").unwrap_or_else(|_| DEV_JWT_SECRET.to_owned());
    match JwtAuth::new(secret.as_bytes()).mint(member, role, Duration::from_secs(ttl)) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}", e.detail);
            ExitCode::FAILURE
        }
    }
}
