//! The load tool's invariant check at a small size, against real `api` and
//! `consumer` processes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::stack::{example, Stack};

/// Runs the tool to its end; its report, once it exited 0.
async fn succeeded(mut tool: std::process::Command) -> String {
    let out = tokio::task::spawn_blocking(move || tool.output())
        .await
        .unwrap()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_load_tool_finds_every_invariant_holding() {
    if !common::real_stack() {
        return;
    }
    let stack = Stack::start(2).await;
    let secret = stack.setting("OMS_JWT_SECRET");
    let chart = std::env::temp_dir().join(format!("negowang-{}.svg", stack.run));
    let mut tool = std::process::Command::new(example("negowang"));
    tool.args(["--quiet", "--url", &stack.base])
        .args(["--members", "200", "--products", "2", "--stock", "120"])
        .args(["--concurrency", "16", "--timeout", "60"])
        .arg("--chart")
        .arg(&chart)
        .env("OMS_JWT_SECRET", secret);
    let report = succeeded(tool).await;
    assert!(
        report.contains("| COMPLETED / FAILED | 120 / 80"),
        "{report}"
    );
    assert!(report.contains("| invariants | OK"), "{report}");
    let svg = std::fs::read_to_string(&chart).unwrap();
    assert!(svg.contains("<svg") && svg.contains("accepted"));
    std::fs::remove_file(chart).unwrap();
    stack.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_load_tool_signs_its_buyers_up_and_logs_them_in() {
    if !common::real_stack() {
        return;
    }
    let admin_email = format!("ops-{}@example.com", uuid::Uuid::new_v4().simple());
    let admin_password = "operator password of the tool test";
    let mut stack = Stack::start_api_with(&[
        ("OMS_ADMIN_EMAIL", admin_email.as_str()),
        ("OMS_ADMIN_PASSWORD", admin_password),
    ])
    .await;
    stack.start_consumer();
    // No secret: every token of the run is issued by the API.
    let mut tool = std::process::Command::new(example("negowang"));
    tool.args(["--quiet", "--url", &stack.base, "--auth", "login"])
        .args([
            "--admin-email",
            &admin_email,
            "--admin-password",
            admin_password,
        ])
        .args(["--members", "40", "--products", "1", "--stock", "30"])
        .args(["--concurrency", "8", "--timeout", "60"])
        .env("OMS_JWT_SECRET", "not the secret of the api under test");
    let report = succeeded(tool).await;
    assert!(
        report.contains("| sign-ups (Argon2id hash) | 40 in"),
        "{report}"
    );
    assert!(
        report.contains("| logins (Argon2id verify) | 40 in"),
        "{report}"
    );
    assert!(
        report.contains("| COMPLETED / FAILED | 30 / 10"),
        "{report}"
    );
    assert!(report.contains("| invariants | OK"), "{report}");
    stack.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_load_tool_runs_a_sale_behind_the_waiting_room() {
    if !common::real_stack() {
        return;
    }
    let mut stack = Stack::configure();
    for (k, v) in [
        ("OMS_WAITING_ROOM", "on"),
        ("OMS_ADMIT_PER_SEC", "200"),
        ("OMS_ADMIT_MAX_ACTIVE", "100"),
        ("OMS_ADMIT_TTL_SECS", "120"),
    ] {
        stack.envs.push((k.to_owned(), v.to_owned()));
    }
    let stack = stack.launch(2).await;
    let secret = stack.setting("OMS_JWT_SECRET");
    let chart = std::env::temp_dir().join(format!("negowang-room-{}.svg", stack.run));
    let mut tool = std::process::Command::new(example("negowang"));
    tool.args(["--quiet", "--url", &stack.base])
        .args(["--members", "300", "--products", "1", "--stock", "100"])
        .args(["--concurrency", "16", "--timeout", "60"])
        .args([
            "--waiting-room",
            "--admit-per-sec",
            "200",
            "--admit-ttl-secs",
            "120",
        ])
        .args(["--max-per-member", "2", "--orders-per-member", "3"])
        .arg("--room-chart")
        .arg(&chart)
        .env("OMS_JWT_SECRET", secret);
    let report = succeeded(tool).await;
    // 100 units sold, none of them as a third unit to anyone.
    assert!(report.contains("| COMPLETED / FAILED | 100 /"), "{report}");
    assert!(report.contains("at most **2** units"), "{report}");
    assert!(
        report.contains("300 of 300 entered, 300 admitted"),
        "{report}"
    );
    assert!(report.contains("| invariants | OK"), "{report}");
    let svg = std::fs::read_to_string(&chart).unwrap();
    assert!(svg.contains("<svg"));
    std::fs::remove_file(chart).unwrap();
    stack.stop();
}
