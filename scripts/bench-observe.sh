#!/usr/bin/env bash
# What metrics and tracing cost, on the real stack, in one run:
#
#   scripts/bench-observe.sh [members] [concurrency] [rounds] [drain-orders]
#                                       (defaults: 20000 32 3 20000)
#
# Intake: two release `api` processes of this tree, each on topics, a
# consumer group, a Redis prefix and a database of its own, driven at once
# by two examples/negowang runs of the same size (so both share whatever
# else the machine does): one as shipped, metrics and tracing on
# (OMS_METRICS=on, RUST_LOG=info: the request and use-case spans are
# recorded), one with both off (OMS_METRICS=off, RUST_LOG=warn). Shapes:
# sold out (no consumer; every POST is answered by the stock gate alone, the
# least other work per request, so the cost's share is at its largest) and
# hot (members stock, one consumer each).
# Consumer: examples/drain (one hot product, 2 consumers, durable commits)
# with and without metrics (`--metrics`, RUST_LOG=info vs warn), in turns.
# Reports go to target/bench/observe-*.md and target/bench/observe-ab.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
MEMBERS=${1:-20000}
CONCURRENCY=${2:-32}
ROUNDS=${3:-3}
DRAIN_ORDERS=${4:-20000}
OUT=target/bench
mkdir -p "$OUT"

scripts/services.sh up
# shellcheck disable=SC1091
source target/services.env
export OMS_JWT_SECRET=bench-secret-of-the-negowang-benchmark RUST_LOG=warn
cargo build --release --all-features --example api --example consumer --example negowang --example drain

# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh

ON=(OMS_METRICS=on RUST_LOG=info)
OFF=(OMS_METRICS=off RUST_LOG=warn)

# ab SHAPE ROUND STOCK CONSUMERS
ab() {
  local shape=$1 round=$2 stock=$3 consumers=$4
  local a="observe-$shape-on-$round" b="observe-$shape-off-$round"
  start "$a" 127.0.0.1:18187 current "$consumers" "${ON[@]}"
  start "$b" 127.0.0.1:18188 current "$consumers" "${OFF[@]}"
  # The tool's ids come from the clock: start the two 50 ms apart, the
  # first one alternating.
  if [ $((round % 2)) -eq 1 ]; then
    tool "$a" 127.0.0.1:18187 "$shape, observed" "$stock" & local pa=$!
    sleep 0.05
    tool "$b" 127.0.0.1:18188 "$shape, not observed" "$stock" & local pb=$!
  else
    tool "$b" 127.0.0.1:18188 "$shape, not observed" "$stock" & local pb=$!
    sleep 0.05
    tool "$a" 127.0.0.1:18187 "$shape, observed" "$stock" & local pa=$!
  fi
  wait "$pa"; wait "$pb"
  stop_all
  local x y
  x=$(accepted "$OUT/$a.md"); y=$(accepted "$OUT/$b.md")
  echo "intake $shape, observed vs not, round $round: $x /s vs $y /s, ratio $(awk -v a="$x" -v b="$y" 'BEGIN { printf "%.3f", a / b }')" | tee -a "$OUT/observe-ab.txt"
}

drained() { sed -nE 's/.*→ ([0-9]+) orders\/s.*/\1/p' "$1"; }

# drain_ab ROUND: the two drains one after the other, in turns.
drain_ab() {
  local round=$1 a="$OUT/observe-drain-on-$round.md" b="$OUT/observe-drain-off-$round.md"
  local on=(env RUST_LOG=info target/release/examples/drain --orders "$DRAIN_ORDERS" --baseline-batch 0 --metrics)
  local off=(env RUST_LOG=warn target/release/examples/drain --orders "$DRAIN_ORDERS" --baseline-batch 0)
  if [ $((round % 2)) -eq 1 ]; then
    "${on[@]}" >"$a"; "${off[@]}" >"$b"
  else
    "${off[@]}" >"$b"; "${on[@]}" >"$a"
  fi
  local x y
  x=$(drained "$a"); y=$(drained "$b")
  echo "consumer drain, observed vs not, round $round: $x /s vs $y /s, ratio $(awk -v a="$x" -v b="$y" 'BEGIN { printf "%.3f", a / b }')" | tee -a "$OUT/observe-ab.txt"
}

: >"$OUT/observe-ab.txt"
for round in $(seq 1 "$ROUNDS"); do
  ab sold-out "$round" 0 0
  ab hot "$round" "$MEMBERS" 1
  drain_ab "$round"
done

echo
echo "### observed (metrics + tracing on) against not, at the same moment"
cat "$OUT/observe-ab.txt"
