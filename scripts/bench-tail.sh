#!/usr/bin/env bash
# Cold start and tail latency of intake on the real stack, this tree against
# a baseline build, in one run:
#
#   scripts/bench-tail.sh [seconds] [connections]     (defaults: 10 64)
#
# For each build (this tree, then BASELINE_REV: the intake before warm-up at
# start), on a release `api` with two `consumer`s, on topics, a consumer
# group, a Redis prefix and a database of their own (the consumers are
# running and have taken a few orders before the `api` is started afresh):
#   1. cold and warm first waves: examples/negowang --cold (1,000 members ×
#      3 products × 500 stock at 64 in flight) right after `/readyz` says
#      200, then the same again: the first 64 POSTs against the rest;
#   2. under load: wrk (2 threads, CONNECTIONS connections, SECONDS s) on
#      POST /api/v1/orders for a product with stock for every order
#      (intake: gate, Redis, Kafka acknowledgement), then for a sold-out
#      product (answered by the stock gate alone), then on GET /healthz (the
#      same server doing no work: the ceiling of this machine), each reported
#      as requests/s, p50/p99/max, and requests/s as a share of /healthz's.
# Buyers: 4,000 members' tokens taken in turn, so none meets its order rate
# (10 /s). The services are restarted before each build (Redis and the
# broker hold earlier runs' data in memory). Reports:
# target/bench/tail-*.txt, summary target/bench/tail.md.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
CONNS=${2:-64}
# The last commit before the api warmed its dependencies at start.
BASELINE_REV=${BASELINE_REV:-47e0e71}
OUT=target/bench
BIN=$OUT/baseline-bin
mkdir -p "$OUT" "$BIN"

command -v wrk >/dev/null || {
  echo "[bench] installing wrk (apt-get)" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null ||
    { $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
}

scripts/services.sh up
# shellcheck disable=SC1091
source target/services.env
export OMS_JWT_SECRET=bench-secret-of-the-negowang-benchmark RUST_LOG=warn

# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
baseline_binaries
cargo build --release --all-features --example api --example consumer --example negowang --example token


TOKENS=$OUT/tail-tokens.txt
target/release/examples/token 1000001-1004000 USER 7200 >"$TOKENS"
ADMIN=$(target/release/examples/token 1 ADMIN 7200)

product() { # ADDR ID STOCK
  curl -fsS -o /dev/null -X POST "http://$1/api/v1/products" -H "Authorization: Bearer $ADMIN" \
    -H 'Content-Type: application/json' \
    -d "{\"productId\": $2, \"name\": \"tail $2\", \"price\": 12900, \"stock\": $3}"
}

# load NAME ADDR PATH [PRODUCT]: wrk's report in $OUT/tail-NAME.txt.
load() {
  local name=$1 addr=$2 path=$3 product=${4:-}
  if [ -n "$product" ]; then
    OMS_WRK_TOKENS=$TOKENS OMS_WRK_PRODUCT=$product wrk -t2 -c"$CONNS" -d"${SECS}s" --latency \
      -s scripts/wrk/order.lua "http://$addr" >"$OUT/tail-$name.txt"
  else
    wrk -t2 -c"$CONNS" -d"${SECS}s" --latency "http://$addr$path" >"$OUT/tail-$name.txt"
  fi
}

# wrk's figures: requests/s, p50, p99, max (its own units).
rps() { sed -nE 's/^Requests\/sec: +([0-9.]+).*/\1/p' "$1"; }
pct() { sed -nE "s/^ +$2% +([0-9.]+[a-z]+).*/\1/p" "$1"; }
max() { sed -nE 's/^ +Latency +[^ ]+ +[^ ]+ +([0-9.]+[a-z]+).*/\1/p' "$1"; }
line() { # LABEL FILE HEALTHZ-FILE
  printf '| %s | %.0f /s | %s | %s | %s | %s | %.2f |\n' "$1" "$(rps "$2")" "$(pct "$2" 50)" "$(pct "$2" 99)" \
    "$(max "$2")" "$(sed -nE 's/^statuses: (.*)/\1/p' "$2")" "$(awk -v a="$(rps "$2")" -v b="$(rps "$3")" 'BEGIN { print a / b }')"
}
wave() { sed -nE "s/^\| $2 [^|]*\| (.*) \|$/\1/p" "$1"; }

SUMMARY=$OUT/tail.md
: >"$SUMMARY"
for build in current baseline; do
  name=tail-$build
  addr=127.0.0.1:18189
  # Each build meets services as fresh as the other's: Redis and the broker
  # keep what earlier runs wrote in memory, and it slows them down.
  scripts/services.sh down >/dev/null
  scripts/services.sh up >/dev/null
  start "$name" "$addr" "$build" 2
  # The consumers are up (these orders are final only once they are), as
  # they are long before a sale opens; then the `api` starts afresh.
  target/release/examples/negowang --quiet --url "http://$addr" --members 20 --products 1 \
    --stock 10 --concurrency 4 >/dev/null
  restart_api "$name" "$addr"
  # Right after /readyz: the cold first wave, then a warm one.
  target/release/examples/negowang --quiet --cold --url "http://$addr" --members 1000 --products 3 \
    --stock 500 --concurrency 64 >"$OUT/$name-cold.md"
  target/release/examples/negowang --quiet --cold --url "http://$addr" --members 1000 --products 3 \
    --stock 500 --concurrency 64 >"$OUT/$name-warm.md"
  base=$(( ($(date +%s) % 100000) * 1000 ))
  product "$addr" $((base + 1)) 100000000
  product "$addr" $((base + 2)) 0
  load "$build-intake" "$addr" "" $((base + 1))
  load "$build-sold-out" "$addr" "" $((base + 2))
  load "$build-healthz" "$addr" /healthz
  stop_all
  {
    echo "### $build ($([ "$build" = current ] && git rev-parse --short HEAD || echo "$BASELINE_REV"))"
    echo
    echo "| first wave of a fresh api | POST latency |"
    echo "|---|---|"
    echo "| cold: first 64 POSTs (ms) | $(wave "$OUT/$name-cold.md" "first wave:") |"
    echo "| cold: the 936 after (ms) | $(wave "$OUT/$name-cold.md" "after the first wave:") |"
    echo "| warm (second round): first 64 POSTs (ms) | $(wave "$OUT/$name-warm.md" "first wave:") |"
    echo "| warm (second round): the 936 after (ms) | $(wave "$OUT/$name-warm.md" "after the first wave:") |"
    echo
    echo "| wrk, 2 threads, $CONNS connections, $SECS s | requests | p50 | p99 | max | answers | ÷ /healthz |"
    echo "|---|---|---|---|---|---|---|"
    line "POST /orders, in stock" "$OUT/tail-$build-intake.txt" "$OUT/tail-$build-healthz.txt"
    line "POST /orders, sold out" "$OUT/tail-$build-sold-out.txt" "$OUT/tail-$build-healthz.txt"
    line "GET /healthz" "$OUT/tail-$build-healthz.txt" "$OUT/tail-$build-healthz.txt"
    echo
  } >>"$SUMMARY"
done
cat "$SUMMARY"
