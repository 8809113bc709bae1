#!/usr/bin/env bash
# The cost of authentication on the real stack, in one run:
#
#   scripts/bench-auth.sh [members] [concurrency] [rounds] [logins]
#                                  (defaults: 20000 32 5 300)
#
# 1. The revocation check against none (OMS_REVOCATION_CHECK=off), A/B at
#    the same moment: two release `api` processes, one with the check and
#    one without, each on topics, a consumer group and a Redis prefix of
#    its own, are driven at once by two examples/negowang runs of the same
#    size, so that both share whatever else the machine does. Buyers'
#    tokens are minted (typ access, a jti): each POST is checked like an
#    issued token. The check as shipped answers from a copy of the
#    revocations synced every 250 ms ("mirror"); the A/B is also run with
#    OMS_REVOCATION_SYNC_MS=0, one Redis MGET per request ("mget").
#    - sold out: members × 1 product × 0 stock, no consumer: every POST is
#      authenticated and answered by the stock gate alone, the least other
#      work per request, so the check's share is at its largest;
#    - hot product: members × 1 product × members stock, one consumer each.
#    `rounds` rounds of each, the start order alternating.
# 2. Sign-ups and logins (Argon2id, default parameters): `logins` buyers
#    sign up and log in with `--auth login`, 16 at a time.
# SHAPES (default "sold-out hot logins") picks the parts to run.
# Reports go to target/bench/auth-*.md.
set -euo pipefail
cd "$(dirname "$0")/.."
MEMBERS=${1:-20000}
CONCURRENCY=${2:-32}
ROUNDS=${3:-5}
LOGINS=${4:-300}
SHAPES=${SHAPES:-sold-out hot logins}
wants() { [[ " $SHAPES " == *" $1 "* ]]; }
OUT=target/bench
mkdir -p "$OUT"

scripts/services.sh up
# shellcheck disable=SC1091
source target/services.env
export OMS_JWT_SECRET=bench-secret-of-the-negowang-benchmark RUST_LOG=warn
export OMS_ADMIN_EMAIL=bench-operator@example.com OMS_ADMIN_PASSWORD=bench-operator-password
cargo build --release --all-features --example api --example consumer --example negowang

# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh

# auth_api NAME ADDR REVOCATION_CHECK CONSUMERS [REVOCATION_SYNC_MS]: this
# tree's `api` (and consumers) with the revocation check as given (`start`,
# `tool` and `accepted` are in bench-lib.sh).
auth_api() {
  local name=$1 addr=$2 check=$3 consumers=$4 sync=${5:-250}
  start "$name" "$addr" current "$consumers" \
    OMS_REVOCATION_CHECK="$check" OMS_REVOCATION_SYNC_MS="$sync"
}

# ab SHAPE CHECK ROUND STOCK CONSUMERS SYNC_MS
ab() {
  local shape=$1 check=$2 round=$3 stock=$4 consumers=$5 sync=$6
  local on="auth-$shape-$check-$round" off="auth-$shape-$check-off-$round"
  auth_api "$on" 127.0.0.1:18183 on "$consumers" "$sync"
  auth_api "$off" 127.0.0.1:18184 off "$consumers"
  # The tool's ids come from the clock: start the two 50 ms apart.
  if [ $((round % 2)) -eq 1 ]; then
    tool "$on" 127.0.0.1:18183 "$shape, check: $check" "$stock" &
    a=$!
    sleep 0.05
    tool "$off" 127.0.0.1:18184 "$shape, check: off" "$stock" &
    b=$!
  else
    tool "$off" 127.0.0.1:18184 "$shape, check: off" "$stock" &
    b=$!
    sleep 0.05
    tool "$on" 127.0.0.1:18183 "$shape, check: $check" "$stock" &
    a=$!
  fi
  wait "$a"; wait "$b"
  stop_all
  local x y
  x=$(accepted "$OUT/$on.md"); y=$(accepted "$OUT/$off.md")
  echo "$shape, $check vs off, round $round: $x /s vs $y /s, ratio $(awk -v a="$x" -v b="$y" 'BEGIN { printf "%.3f", a / b }')" | tee -a "$OUT/auth-ab.txt"
}

: >"$OUT/auth-ab.txt"
if wants sold-out; then
  for round in $(seq 1 "$ROUNDS"); do
    ab sold-out mirror "$round" 0 0 250
    ab sold-out mget "$round" 0 0 0
  done
fi
if wants hot; then
  for round in $(seq 1 "$ROUNDS"); do
    ab hot mirror "$round" "$MEMBERS" 1 250
  done
fi

if wants logins; then
  name=auth-logins
  auth_api "$name" 127.0.0.1:18183 on 1
  echo
  echo "### $name"
  target/release/examples/negowang --quiet --label "sign-up and login" --url "http://127.0.0.1:18183" --auth login \
    --members "$LOGINS" --products 1 --stock "$LOGINS" --concurrency 16 | tee "$OUT/$name.md"
  stop_all
fi

echo
echo "### accepted/s with the revocation check on and off, at the same moment"
cat "$OUT/auth-ab.txt"
