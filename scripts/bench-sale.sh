#!/usr/bin/env bash
# A sale behind the waiting room, on the real stack:
#
#   scripts/bench-sale.sh [members] [admit-per-sec] [max-active] [concurrency]
#                                   (defaults: 20000 500 2000 64)
#
# One product × 1,000 units with maxPerMember 2, the waiting room on
# (OMS_WAITING_ROOM=on, OMS_ADMIT_PER_SEC, OMS_ADMIT_MAX_ACTIVE,
# OMS_ADMIT_TTL_SECS=120). Two release `api` replicas (addresses of their
# own; one Redis prefix, topics and consumer group, like one deployment) and
# two `consumer` processes, on topics, a group and a prefix of this run.
# `examples/negowang` spreads the members over both replicas; every member
# enters the room, waits for its admission, then sends 3 single-unit orders
# at once and follows them until final. The report and charts go to
# target/bench/: sale.md, sale.svg (orders), sale-room.svg (the line).
set -euo pipefail
cd "$(dirname "$0")/.."
MEMBERS=${1:-20000}
ADMIT_PER_SEC=${2:-500}
MAX_ACTIVE=${3:-2000}
CONCURRENCY=${4:-64}
TTL_SECS=120
OUT=target/bench
mkdir -p "$OUT"

scripts/services.sh up
# shellcheck disable=SC1091
source target/services.env
export OMS_JWT_SECRET=bench-secret-of-the-negowang-benchmark RUST_LOG=warn
cargo build --release --all-features --example api --example consumer --example negowang

# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh

id="sale-$(date +%s%N)"
export OMS_ORDER_TOPIC="bench-orders-$id" OMS_DLQ_TOPIC="bench-dlq-$id"
export OMS_CONSUMER_GROUP="bench-$id" OMS_REDIS_PREFIX="bench-$id"
export OMS_WAITING_ROOM=on OMS_ADMIT_PER_SEC=$ADMIT_PER_SEC
export OMS_ADMIT_MAX_ACTIVE=$MAX_ACTIVE OMS_ADMIT_TTL_SECS=$TTL_SECS

# One replica after the other: the first creates the topics and migrates.
URLS=""
for r in 1 2; do
  addr="127.0.0.1:1818$r"
  OMS_HTTP_ADDR=$addr target/release/examples/api >"$OUT/sale-api-$r.log" 2>&1 &
  PIDS+=($!)
  wait_ready "$addr"
  URLS="${URLS:+$URLS,}http://$addr"
done
for c in 1 2; do
  OMS_METRICS_ADDR="127.0.0.1:1946$c" target/release/examples/consumer >"$OUT/sale-consumer-$c.log" 2>&1 &
  PIDS+=($!)
done

echo
echo "### sale"
target/release/examples/negowang --quiet --label "sale: waiting room + limit, 2 api replicas" \
  --url "$URLS" --members "$MEMBERS" --products 1 --stock 1000 --concurrency "$CONCURRENCY" \
  --waiting-room --admit-per-sec "$ADMIT_PER_SEC" --admit-ttl-secs "$TTL_SECS" \
  --max-per-member 2 --orders-per-member 3 \
  --chart "$OUT/sale.svg" --room-chart "$OUT/sale-room.svg" | tee "$OUT/sale.md"
