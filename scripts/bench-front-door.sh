#!/usr/bin/env bash
# What the front door of a sale costs intake, on the real stack, in one run:
#
#   scripts/bench-front-door.sh [members] [concurrency] [rounds]
#                                       (defaults: 20000 32 3)
#
# A/B at the same moment, as scripts/bench-auth.sh does: two release `api`
# processes, each on topics, a consumer group, a Redis prefix and a database
# of its own, driven at once by two examples/negowang runs of the same size,
# so that both share whatever else the machine does.
#  - front door vs before: this tree's `api` (waiting room off; the order
#    rate, OMS_ORDER_RATE=10, and the catalogue checks on, as shipped)
#    against the `api` built from BASELINE_REV, the intake before the front
#    door existed;
#  - room on vs off: this tree's `api` with OMS_WAITING_ROOM=on (every
#    member enters and is admitted before anyone orders, `negowang
#    --admit-first`, and the orders are timed alone; the admission rate is
#    set high so that the room only adds its check) against the same `api`
#    with the room off. These two run one after the other (in turns), as the
#    room's run spends its first seconds admitting.
# Shapes: sold out (members × 1 product × 0 stock, no consumer: every POST
# is answered by the stock gate alone, the least other work per request, so
# the front door's share is at its largest) and hot (members × 1 product ×
# members stock, one consumer each). `rounds` rounds of each, the start
# order alternating. Reports go to target/bench/door-*.md.
set -euo pipefail
cd "$(dirname "$0")/.."
MEMBERS=${1:-20000}
CONCURRENCY=${2:-32}
ROUNDS=${3:-3}
# The last commit before the front door (waiting room, limits, windows,
# order rate) was added.
BASELINE_REV=${BASELINE_REV:-9864822}
SHAPES=${SHAPES:-sold-out hot room}
wants() { [[ " $SHAPES " == *" $1 "* ]]; }
OUT=target/bench
BIN=$OUT/baseline-bin
mkdir -p "$OUT" "$BIN"

scripts/services.sh up
# shellcheck disable=SC1091
source target/services.env
export OMS_JWT_SECRET=bench-secret-of-the-negowang-benchmark RUST_LOG=warn

# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
baseline_binaries
cargo build --release --all-features --example api --example consumer --example negowang

# ab SHAPE WHAT ROUND STOCK CONSUMERS
#   WHAT: door (this tree vs the baseline) or room (room on vs off)
ab() {
  local shape=$1 what=$2 round=$3 stock=$4 consumers=$5
  local a="door-$shape-$what-$round" b="door-$shape-$what-off-$round"
  local a_args=() b_build=current
  if [ "$what" = door ]; then
    b_build=baseline
    start "$a" 127.0.0.1:18185 current "$consumers"
  else
    start "$a" 127.0.0.1:18185 current "$consumers" OMS_WAITING_ROOM=on \
      OMS_ADMIT_PER_SEC=100000 OMS_ADMIT_MAX_ACTIVE=10000000 OMS_ADMIT_TTL_SECS=3600
    a_args=(--waiting-room --admit-first --admit-per-sec 100000 --admit-ttl-secs 3600)
  fi
  start "$b" 127.0.0.1:18186 "$b_build" "$consumers"
  if [ "$what" = room ]; then
    # The room's run admits everyone before it orders, so the two order
    # phases cannot overlap: one after the other, in turns.
    if [ $((round % 2)) -eq 1 ]; then
      tool "$a" 127.0.0.1:18185 "$shape, $what" "$stock" "${a_args[@]}"
      tool "$b" 127.0.0.1:18186 "$shape, $what off" "$stock"
    else
      tool "$b" 127.0.0.1:18186 "$shape, $what off" "$stock"
      tool "$a" 127.0.0.1:18185 "$shape, $what" "$stock" "${a_args[@]}"
    fi
  # The tool's ids come from the clock: start the two 50 ms apart.
  elif [ $((round % 2)) -eq 1 ]; then
    tool "$a" 127.0.0.1:18185 "$shape, $what" "$stock" "${a_args[@]}" &
    local pa=$!
    sleep 0.05
    tool "$b" 127.0.0.1:18186 "$shape, $what off" "$stock" &
    local pb=$!
  else
    tool "$b" 127.0.0.1:18186 "$shape, $what off" "$stock" &
    local pb=$!
    sleep 0.05
    tool "$a" 127.0.0.1:18185 "$shape, $what" "$stock" "${a_args[@]}" &
    local pa=$!
  fi
  if [ "$what" != room ]; then wait "$pa"; wait "$pb"; fi
  stop_all
  local x y
  x=$(accepted "$OUT/$a.md"); y=$(accepted "$OUT/$b.md")
  echo "$shape, $what vs off, round $round: $x /s vs $y /s, ratio $(awk -v a="$x" -v b="$y" 'BEGIN { printf "%.3f", a / b }')" | tee -a "$OUT/door-ab.txt"
}

: >"$OUT/door-ab.txt"
for round in $(seq 1 "$ROUNDS"); do
  if wants sold-out; then ab sold-out door "$round" 0 0; fi
  if wants hot; then ab hot door "$round" "$MEMBERS" 1; fi
  if wants room; then ab sold-out room "$round" 0 0; fi
done

echo
echo "### accepted/s, A against B at the same moment"
cat "$OUT/door-ab.txt"
