#!/usr/bin/env bash
# Every check of the project on the real stack: starts Redis, MariaDB, the
# Kafka broker and a Redis Cluster (installing what is missing), then format,
# lints, unit, adapter and end-to-end tests, docs; stops the services it
# started.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)

# target/ is kept from run to run (services, tools and builds are cached
# there). A run whose dependencies or features changed leaves the previous
# test and example binaries behind: the run removes those it did not build
# (prune_stale, at its end), and a run that starts short of space starts from
# an empty target/debug.
# Builds are not incremental: a run rebuilds the workspace's crates from a
# fresh checkout anyway, and incremental caches of every test binary, for
# every feature set, took more room than the binaries.
export CARGO_INCREMENTAL=0
mkdir -p target
rm -rf target/debug/incremental
free_gb() { df -P -BG target | awk 'NR == 2 { sub("G", "", $4); print $4 }'; }
if [ "$(free_gb)" -lt "${OMS_MIN_FREE_GB:-20}" ]; then
  echo "[target] $(free_gb) GB free: removing target/debug and target/publish/debug"
  rm -rf target/debug target/publish/debug
fi
prune_stale() { # the hashed test and example binaries no build of this run made
  local kept
  kept=$({
    cargo test --workspace --all-features --no-run --message-format=json --quiet
    cargo build --workspace --examples --all-features --message-format=json --quiet
  } | grep -o '"executable":"[^"]*"' | cut -d'"' -f4 | xargs -r stat -c %i | sort -u)
  if [ -z "$kept" ]; then
    echo "[target] no binaries of this run listed; nothing removed"
    return
  fi
  { find target/debug/deps target/debug/examples -maxdepth 1 -type f -perm -u+x \
    -regex '.*-[0-9a-f]\{16\}' -printf '%i %p\n' 2>/dev/null || true; } |
    while read -r inode path; do
      grep -qx "$inode" <<<"$kept" || rm -f "$path"
    done
  echo "[target] stale binaries removed; $(du -sh target/debug/ | cut -f1) in target/debug, $(free_gb) GB free"
}

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
# The examples run as built above: `cargo run --example` without --workspace
# would resolve other dependency features and build the whole tree again.
echo "== examples: embed --check (a host service with oms under /shop/oms, on its own MySQL pool)"
target/debug/examples/embed --check
echo "== examples: custom_adapter (a trace store of the user's own against the conformance suite)"
target/debug/examples/custom_adapter
echo "== cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps --quiet

# Publishing: licences, bans and sources of the dependency tree (advisories
# need the RustSec database, out of reach here; README, "Publishing and
# supply chain"), every feature of the facade and the core alone, and every
# crate packaged and built from its package. cargo-deny and cargo-hack are
# built once into target/tools.
tool() { # crate version: puts its bin directory first on PATH, building it once
  local bin="$PWD/target/tools/$1-$2/bin"
  if [ ! -x "$bin/$1" ]; then
    echo "[tools] building $1 $2 into target/tools (once)" >&2
    cargo install "$1" --version "$2" --locked --root "target/tools/$1-$2" --quiet
  fi
  PATH="$bin:$PATH"
}
tool cargo-deny 0.20.2
tool cargo-hack 0.6.46
echo "== cargo deny check licenses bans sources"
cargo deny check --hide-inclusion-graph licenses bans sources
echo "== cargo hack: each feature of oms and oms-core"
cargo hack check -p oms -p oms-core --each-feature --quiet
echo "== cargo publish --workspace --dry-run"
# Each crate is built from its package against the packages of the others,
# which cargo takes for registry crates: fixed for a version, so it would
# reuse the unpacked sources and the build of an earlier run of the same
# version. The check builds in target/publish (its dependencies kept from run
# to run) after removing what an earlier run left of the oms crates.
rm -rf target/publish/debug/.fingerprint/oms-* "${CARGO_HOME:-$HOME/.cargo}"/registry/src/-*/oms-*
CARGO_TARGET_DIR=target/publish cargo publish --workspace --dry-run --quiet

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
  # --workspace --all-features: the binaries of the run above, not a second build.
  cargo test --workspace --all-features --test kafka --test crash_loop --test negowang_real \
    --test faults --test oversell_real --test crash_busy
)
prune_stale
# ---------------------------------------------------------------------------

echo "== all checks passed in $(( $(date +%s) - started )) s"
