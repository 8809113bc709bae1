#!/usr/bin/env bash
# Every check of the project on the real stack: starts Redis, MariaDB, the
# Kafka broker and a Redis Cluster (installing what is missing), then format,
# lints, unit, adapter and end-to-end tests, docs; stops the services it
# started.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)

status=$(scripts/services.sh status)
if grep -v '^redis-cluster' <<<"$status" | grep -q stopped; then
  trap 'scripts/services.sh down' EXIT # the cluster too
elif grep -q stopped <<<"$status"; then
  trap 'scripts/services.sh down-cluster' EXIT
fi
scripts/services.sh up
# The Redis adapters' suite runs on it too (oms-adapters-redis/tests/cluster.rs).
scripts/services.sh up-cluster
# shellcheck disable=SC1091
source target/services.env
# A real-stack test that finds a service unset fails here instead of
# reporting itself skipped (a plain `cargo test` without services skips).
export OMS_REQUIRE_SERVICES=1

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --all-features -- -D warnings
echo "== cargo build --examples"
cargo build --workspace --examples --all-features
echo "== cargo test"
cargo test --workspace --all-features
echo "== examples: embed --check (a host service with oms under /shop/oms, on its own MySQL pool)"
cargo run --quiet --example embed --all-features -- --check
echo "== examples: custom_adapter (a trace store of the user's own against the conformance suite)"
cargo run --quiet --example custom_adapter --all-features
echo "== cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps --quiet

# ---------------------------------------------------------------------------
# The second Kafka-protocol broker: librdkafka's mock cluster (the mockbroker
# example; docs/brokers.md). The Kafka adapter suite, the consumer crash
# loop, the end-to-end run and the fault tests run again on it, with an env file of their own; the mock is stopped
# afterwards.
echo "== Kafka adapters, crash loop, end-to-end and fault tests on librdkafka's mock cluster"
OMS_BROKER=mock OMS_SERVICES_ENV=target/services-mock.env scripts/services.sh up
(
  trap 'OMS_BROKER=mock scripts/services.sh stop-broker' EXIT
  # shellcheck disable=SC1091
  source target/services-mock.env
  cargo test -p oms-adapters-kafka --test kafka
  cargo test --all-features --test crash_loop --test negowang_real --test faults
)
# ---------------------------------------------------------------------------

echo "== all checks passed in $(( $(date +%s) - started )) s"
