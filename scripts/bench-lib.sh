# Shared by the benchmark scripts (sourced, not run): the processes a run
# starts, stopped together on exit, and the wait for an `api` to be ready.

PIDS=()
stop_all() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}
trap stop_all EXIT

# wait_ready ADDR: until the api on ADDR answers /readyz 200 (30 s at most).
wait_ready() {
  for _ in $(seq 1 300); do
    curl -fsS "http://$1/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "api on $1 not ready" >&2
  return 1
}

# baseline_binaries: builds `api` and `consumer` of $BASELINE_REV into $BIN
# once, in the same target directory (the dependencies are shared), setting
# them aside before this tree's are built.
baseline_binaries() {
  [ -x "$BIN/api-$BASELINE_REV" ] && return 0
  local src=target/baseline-src
  rm -rf "$src"
  git worktree prune
  git worktree add --detach "$src" "$BASELINE_REV"
  cargo build --release --all-features --manifest-path "$src/Cargo.toml" --target-dir target \
    --example api --example consumer
  cp target/release/examples/api "$BIN/api-$BASELINE_REV"
  cp target/release/examples/consumer "$BIN/consumer-$BASELINE_REV"
  git worktree remove --force "$src"
}

# A database of its own for each process: the two builds have different
# migrations.
database() {
  local name=$1 url=$OMS_DATABASE_URL
  local rest=${url#mysql://} creds host_port
  creds=${rest%%@*}; host_port=${rest#*@}; host_port=${host_port%%/*}
  mariadb --no-defaults --host="${host_port%:*}" --port="${host_port#*:}" \
    --user="${creds%%:*}" --password="${creds#*:}" -e "CREATE DATABASE IF NOT EXISTS $name"
  echo "mysql://$creds@$host_port/$name"
}

# start NAME ADDR BUILD(current|baseline) CONSUMERS [extra env...]: an `api`
# on ADDR with CONSUMERS consumers, on topics, a consumer group, a Redis
# prefix and a database of their own; `baseline` runs the binaries in
# $BIN built from $BASELINE_REV. Logs and pids go to $OUT.
start() {
  local name=$1 addr=$2 build=$3 consumers=$4
  shift 4
  local id; id="$name-$(date +%s%N)"
  local api=target/release/examples/api consumer=target/release/examples/consumer
  if [ "$build" = baseline ]; then
    api=$BIN/api-$BASELINE_REV consumer=$BIN/consumer-$BASELINE_REV
  fi
  local db; db=$(database "bench_${build}_$(date +%s%N)")
  (
    export OMS_ORDER_TOPIC="bench-orders-$id" OMS_DLQ_TOPIC="bench-dlq-$id"
    export OMS_CONSUMER_GROUP="bench-$id" OMS_REDIS_PREFIX="bench-$id"
    export OMS_HTTP_ADDR=$addr OMS_DATABASE_URL=$db
    for kv in "$@"; do export "${kv?}"; done
    export -p | grep -E '^declare -x (OMS_|RUST_LOG)' >"$OUT/$name.env"
    echo "$api" >"$OUT/$name.api"
    "$api" >"$OUT/$name-api.log" 2>&1 &
    echo $! >"$OUT/$name.pids"
    wait_ready "$addr"
    for c in $(seq 1 "$consumers"); do
      OMS_METRICS_ADDR=127.0.0.1:0 "$consumer" >"$OUT/$name-consumer-$c.log" 2>&1 &
      echo $! >>"$OUT/$name.pids"
    done
  )
  while read -r pid; do PIDS+=("$pid"); done <"$OUT/$name.pids"
}

# restart_api NAME ADDR: stops the `api` of `start NAME ADDR …` and starts
# it again with the same settings while its consumers keep running: a fresh
# `api` in front of a pipeline that is already up.
restart_api() {
  local name=$1 addr=$2 old=${PIDS[0]}
  kill "$old" 2>/dev/null || true
  wait "$old" 2>/dev/null || true
  (
    # shellcheck disable=SC1090
    source "$OUT/$name.env"
    "$(cat "$OUT/$name.api")" >>"$OUT/$name-api.log" 2>&1 &
    echo $! >"$OUT/$name.api.pid"
    wait_ready "$addr"
  )
  PIDS[0]=$(cat "$OUT/$name.api.pid")
}

# tool NAME ADDR LABEL STOCK [extra negowang args...]: one negowang run of
# $MEMBERS members at $CONCURRENCY against ADDR, its report in $OUT/NAME.md.
tool() {
  local name=$1 addr=$2 label=$3 stock=$4
  shift 4
  target/release/examples/negowang --quiet --label "$label" --url "http://$addr" \
    --members "$MEMBERS" --products 1 --stock "$stock" --concurrency "$CONCURRENCY" "$@" >"$OUT/$name.md"
}

# accepted REPORT: the accepted/s of a negowang report.
accepted() { sed -nE 's/.*\| accepted \|.*\*\*([0-9]+) \/s\*\*.*/\1/p' "$1"; }
