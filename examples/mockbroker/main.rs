//! A second Kafka-protocol broker for the tests: librdkafka's mock cluster
//! (one broker, in memory) in a process of its own, so that the real stack
//! can run on it as it runs on tansu (`OMS_BROKER=mock scripts/services.sh
//! up`).
//!
//! The mock does not answer `CreateTopics`, so the process creates topics
//! itself:
//!
//! * at start, `OMS_ORDER_TOPIC` and `OMS_DLQ_TOPIC` (defaults
//!   `order-request-v1`, `order-request-dlq-v1`) with `OMS_ORDER_PARTITIONS`
//!   partitions (default 6);
//! * on request, through a line protocol on a control port on loopback:
//!   `create <topic> <partitions>` is answered `ok` or `error <reason>`.
//!
//! It prints `bootstrap <host:port>` and `control <host:port>` on stdout
//! (and writes them to `OMS_MOCK_INFO`, when set, once both are known), then
//! serves until it is killed.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

fn var(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

fn main() -> ExitCode {
    let partitions: i32 = match var("OMS_ORDER_PARTITIONS", "6").trim().parse() {
        Ok(p) if p > 0 => p,
        _ => {
            eprintln!("OMS_ORDER_PARTITIONS must be a positive integer");
            return ExitCode::from(2);
        }
    };
    let mock = match MockCluster::new(1) {
        Ok(mock) => mock,
        Err(e) => {
            eprintln!("cannot start the mock cluster: {e}");
            return ExitCode::FAILURE;
        }
    };
    for topic in [
        var("OMS_ORDER_TOPIC", "order-request-v1"),
        var("OMS_DLQ_TOPIC", "order-request-dlq-v1"),
        var("OMS_EVENTS_TOPIC", "order-events-v1"),
    ] {
        if let Err(e) = mock.create_topic(&topic, partitions, 1) {
            eprintln!("cannot create {topic}: {e}");
            return ExitCode::FAILURE;
        }
    }
    let control = match TcpListener::bind(var("OMS_MOCK_CONTROL_ADDR", "127.0.0.1:0")) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen for control connections: {e}");
            return ExitCode::FAILURE;
        }
    };
    let control_addr = match control.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let info = format!(
        "bootstrap {}\ncontrol {control_addr}\n",
        mock.bootstrap_servers()
    );
    print!("{info}");
    let _ = std::io::stdout().flush();
    if let Ok(path) = std::env::var("OMS_MOCK_INFO") {
        // Written whole, then renamed, so a reader never sees half of it.
        let partial = format!("{path}.partial");
        if let Err(e) =
            std::fs::write(&partial, &info).and_then(|()| std::fs::rename(&partial, &path))
        {
            eprintln!("cannot write {path}: {e}");
            return ExitCode::FAILURE;
        }
    }
    // The mock cluster lives on this thread: connections are served one at
    // a time, which is plenty for test set-up.
    for stream in control.incoming() {
        match stream {
            Ok(stream) => serve(&mock, stream),
            Err(e) => eprintln!("control connection failed: {e}"),
        }
    }
    ExitCode::SUCCESS
}

fn serve(mock: &MockCluster<'static, DefaultProducerContext>, stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else {
            return;
        };
        let answer = match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["create", topic, partitions] => match partitions.parse::<i32>() {
                Ok(p) if p > 0 => match mock.create_topic(topic, p, 1) {
                    Ok(()) => "ok".to_owned(),
                    Err(e) => format!("error {e}"),
                },
                _ => "error partitions must be a positive integer".to_owned(),
            },
            [] => continue,
            _ => "error usage: create <topic> <partitions>".to_owned(),
        };
        if writeln!(writer, "{answer}").is_err() {
            return;
        }
    }
}
