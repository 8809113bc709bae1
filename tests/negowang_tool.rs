//! The load tool's invariant check at a small size, against real `api` and
//! `consumer` processes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::stack::{example, Stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_load_tool_finds_every_invariant_holding() {
    let stack = Stack::start(2).await;
    let secret = stack
        .envs
        .iter()
        .find(|(k, _)| k == "OMS_JWT_SECRET")
        .map(|(_, v)| v.clone())
        .unwrap();
    let chart = std::env::temp_dir().join(format!("negowang-{}.svg", stack.run));
    let mut tool = std::process::Command::new(example("negowang"));
    tool.args(["--quiet", "--url", &stack.base])
        .args(["--members", "200", "--products", "2", "--stock", "120"])
        .args(["--concurrency", "16", "--timeout", "60"])
        .arg("--chart")
        .arg(&chart)
        .env("OMS_JWT_SECRET", secret);
    let out = tokio::task::spawn_blocking(move || tool.output())
        .await
        .unwrap()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
