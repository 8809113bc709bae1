//! Every request gets an `x-request-id`, kept when the client sent one, in
//! the answer and in the request's log lines. One test in its own process:
//! it installs the process's log subscriber.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{auth, get, send};
use oms::embedded::EmbeddedPipeline;
use oms::http::router;

#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn every_answer_has_a_request_id_that_its_log_lines_carry() {
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let pipeline = EmbeddedPipeline::start();
    let app = router(pipeline.app_state(auth()));

    // None sent: a new UUID per request.
    let (s1, h1, _) = send(&app, get("/healthz", None)).await;
    let (_, h2, _) = send(&app, get("/healthz", None)).await;
    assert_eq!(s1, 200);
    let id1 = h1["x-request-id"].to_str().unwrap().to_owned();
    let id2 = h2["x-request-id"].to_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&id1).is_ok(), "{id1}");
    assert_ne!(id1, id2);

    // One sent: kept, on errors too, and in the request's log lines.
    let (s, h, _) = send(
        &app,
        get("/api/v1/products/987654", Some("client-chosen-7")),
    )
    .await;
    assert_eq!(s, 401);
    assert_eq!(h["x-request-id"], "client-chosen-7");
    let log = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    let tagged: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("request_id=client-chosen-7"))
        .collect();
    assert!(
        tagged.iter().any(|l| l.contains("/api/v1/products/987654")),
        "no log line of the request carries its id:\n{log}"
    );
    assert!(log.contains(&format!("request_id={id1}")), "{log}");
    pipeline.shutdown().await;
}
