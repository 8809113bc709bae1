#!/usr/bin/env bash
# The 네고왕 benchmark on the real stack, with its baselines, in one run:
#
#   scripts/bench.sh [members] [concurrency] [hot-members] [sold-out-requests]
#                                            (defaults: 1000 64 20000 50000)
#
# For each design it starts a release `api` and two `consumer` processes on
# topics, a consumer group and a Redis prefix of their own, runs
# `examples/negowang`, and stops them:
#   oms    — 202 + Redis stock gate + Kafka + consumers placing a poll's worth
#            per transaction
#   seed   — 202 + Kafka, one transaction per order, no gate
#            (OMS_CONSUMER_BATCH=1 OMS_STOCK_GATE=off)
#   as-is  — synchronous POST that locks the product rows (SELECT … FOR UPDATE)
# for the 네고왕 shape (members × 3 products × 500 stock), for one hot
# product with stock for each of hot-members, and for one sold-out product
# (stock 0). Then `examples/drain` times the consumers alone on a full topic
# (hot-members orders, batched against one transaction per order). Reports
# and charts go to target/bench/. Last, scripts/bench-tail.sh: the first
# wave of a fresh api, cold and warm, and wrk under load against /healthz,
# this tree against the build before warm-up (target/bench/tail.md).
set -euo pipefail
cd "$(dirname "$0")/.."
MEMBERS=${1:-1000}
CONCURRENCY=${2:-64}
HOT_MEMBERS=${3:-20000}
SOLD_OUT=${4:-50000}
OUT=target/bench
mkdir -p "$OUT"

scripts/services.sh up
# shellcheck disable=SC1091
source target/services.env
export OMS_JWT_SECRET=bench-secret-of-the-negowang-benchmark RUST_LOG=warn
cargo build --release --all-features --example api --example consumer --example negowang --example drain

# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh

# run NAME DESIGN BATCH MEMBERS PRODUCTS STOCK LABEL [GATE]
run() {
  local name=$1 design=$2 batch=$3 members=$4 products=$5 stock=$6 label=$7 gate=${8:-on}
  local id; id="$name-$(date +%s%N)"
  export OMS_ORDER_TOPIC="bench-orders-$id" OMS_DLQ_TOPIC="bench-dlq-$id"
  export OMS_CONSUMER_GROUP="bench-$id" OMS_CONSUMER_BATCH=$batch
  export OMS_REDIS_PREFIX="bench-$id" OMS_STOCK_GATE=$gate
  export OMS_HTTP_ADDR=127.0.0.1:18181 OMS_BASELINE_AS_IS=1
  target/release/examples/api >"$OUT/$name-api.log" 2>&1 &
  PIDS+=($!)
  wait_ready "$OMS_HTTP_ADDR"
  if [ "$design" = oms ]; then
    for c in 1 2; do
      target/release/examples/consumer >"$OUT/$name-consumer-$c.log" 2>&1 &
      PIDS+=($!)
    done
  fi
  echo
  echo "### $name"
  target/release/examples/negowang --quiet --label "$label" --url "http://$OMS_HTTP_ADDR" --design "$design" \
    --members "$members" --products "$products" --stock "$stock" \
    --concurrency "$CONCURRENCY" --chart "$OUT/$name.svg" | tee "$OUT/$name.md"
  stop_all
}

OMS="oms: 202 + stock gate + Kafka + batched consumers"
SEED="(a) seed: 202 + Kafka + one transaction per order"
ASIS="(b) AS-IS: synchronous, SELECT … FOR UPDATE"
run negowang-oms oms 500 "$MEMBERS" 3 500 "$OMS"
run negowang-seed oms 1 "$MEMBERS" 3 500 "$SEED" off
run negowang-as-is as-is 500 "$MEMBERS" 3 500 "$ASIS"
run hot-oms oms 500 "$HOT_MEMBERS" 1 "$HOT_MEMBERS" "$OMS"
run hot-seed oms 1 "$HOT_MEMBERS" 1 "$HOT_MEMBERS" "$SEED" off
run hot-as-is as-is 500 "$HOT_MEMBERS" 1 "$HOT_MEMBERS" "$ASIS"
run sold-out-oms oms 500 "$SOLD_OUT" 1 0 "$OMS"
run sold-out-as-is as-is 500 "$SOLD_OUT" 1 0 "$ASIS"

echo
echo "### drain"
unset OMS_ORDER_TOPIC OMS_DLQ_TOPIC OMS_CONSUMER_GROUP OMS_CONSUMER_BATCH OMS_REDIS_PREFIX OMS_STOCK_GATE
target/release/examples/drain --orders "$HOT_MEMBERS" --batch 500 --baseline-batch 1 --consumers 2 | tee "$OUT/drain.md"

echo
echo "### cold start and tail latency (scripts/bench-tail.sh)"
stop_all
scripts/bench-tail.sh
