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
