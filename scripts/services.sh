#!/usr/bin/env bash
# Real Redis, MariaDB and a Kafka-protocol broker on loopback, as plain
# processes with their data under target/services/. Installs what is missing.
#
#   scripts/services.sh up     start what is not running, wait until all three
#                              accept connections, write target/services.env
#   scripts/services.sh down   stop what `up` and `up-cluster` started
#   scripts/services.sh status
#   scripts/services.sh up-cluster     a Redis Cluster of three masters (no
#                              replicas) on 17001-17003, created once, waited
#                              for until `cluster_state:ok`; adds
#                              OMS_REDIS_CLUSTER_NODES to the env file
#   scripts/services.sh down-cluster   stop it (and drop its data)
#   scripts/services.sh stop-mariadb   (fault tests: `up` brings it back)
#   scripts/services.sh stop-redis     (fault tests: `up` brings it back, empty)
#   scripts/services.sh stop-broker    (stops the broker OMS_BROKER selects)
#
# OMS_BROKER selects the broker (docs/brokers.md):
#   tansu (default)  tansu 0.6, built once into target/tools
#   mock             librdkafka's mock cluster in a process of its own (the
#                    `mockbroker` example); it does not answer CreateTopics,
#                    so services.env also names its control port
#                    (OMS_MOCK_CONTROL), through which tests create topics
#
# Ports (not the services' defaults): Redis 16379, MariaDB 13306, Kafka
# (tansu) 19092, the Redis Cluster 17001-17003; override with OMS_REDIS_PORT,
# OMS_MYSQL_PORT, OMS_KAFKA_PORT, OMS_REDIS_CLUSTER_PORTS (space-separated).
# The mock listens on ports of its own choosing. OMS_SERVICES_ENV names the
# env file to write instead of target/services.env (e.g. to keep one per
# broker).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
RUN="$ROOT/target/services"
TOOLS="$ROOT/target/tools"
REDIS_PORT=${OMS_REDIS_PORT:-16379}
MYSQL_PORT=${OMS_MYSQL_PORT:-13306}
KAFKA_PORT=${OMS_KAFKA_PORT:-19092}
CLUSTER_PORTS=${OMS_REDIS_CLUSTER_PORTS:-17001 17002 17003}
TANSU_VERSION=0.6.0
TANSU="$TOOLS/tansu-$TANSU_VERSION/bin/tansu"
BROKER=${OMS_BROKER:-tansu}
ENV_FILE=${OMS_SERVICES_ENV:-$ROOT/target/services.env}
case "$BROKER" in
  tansu | mock) ;;
  *) echo "OMS_BROKER must be tansu or mock, not $BROKER" >&2; exit 2 ;;
esac
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"

log() { echo "[services] $*" >&2; }

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # name, seconds, command...
  local name=$1 secs=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@"; do
    if [ $SECONDS -ge $deadline ]; then
      log "$name did not come up within ${secs}s; see $RUN/$name.log"
      tail -n 30 "$RUN/$name.log" >&2 || true
      return 1
    fi
    sleep 0.2
  done
}

install_packages() {
  local missing=()
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v mariadbd >/dev/null || missing+=(mariadb-server)
  command -v mariadb >/dev/null || missing+=(mariadb-client)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]} (apt-get)"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

install_tansu() {
  if [ ! -x "$TANSU" ]; then
    log "building tansu $TANSU_VERSION into $TOOLS (once; takes a while on 2 cores)"
    mkdir -p "$TOOLS"
    cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore \
      --root "$TOOLS/tansu-$TANSU_VERSION" --quiet
  fi
}

start_redis() {
  if alive "$RUN/redis.pid" && port_open "$REDIS_PORT"; then return; fi
  mkdir -p "$RUN/redis"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes \
    --pidfile "$RUN/redis.pid" --dir "$RUN/redis" --logfile "$RUN/redis.log" \
    --save "" --appendonly no
  wait_for redis 30 port_open "$REDIS_PORT"
}

cluster_pid() { echo "$RUN/redis-cluster-$1.pid"; }

cluster_nodes() { # the nodes' URLs, comma-separated
  local port urls=()
  for port in $CLUSTER_PORTS; do urls+=("redis://127.0.0.1:$port"); done
  (IFS=,; echo "${urls[*]}")
}

cluster_running() { # every node of the cluster is up
  local port
  for port in $CLUSTER_PORTS; do
    alive "$(cluster_pid "$port")" && port_open "$port" || return 1
  done
}

cluster_info() { # field [port]: a field of CLUSTER INFO on a node (the first)
  local port=${2:-${CLUSTER_PORTS%% *}}
  redis-cli -h 127.0.0.1 -p "$port" cluster info 2>/dev/null | tr -d '\r' \
    | awk -F: -v k="$1" '$1 == k { print $2 }'
}

cluster_ok() { # every node sees the cluster ok
  local port
  for port in $CLUSTER_PORTS; do
    [ "$(cluster_info cluster_state "$port")" = ok ] || return 1
  done
}

start_redis_cluster() {
  local port nodes=() any=""
  for port in $CLUSTER_PORTS; do alive "$(cluster_pid "$port")" && any=yes; done
  # No node left: start over from empty nodes (the data is not kept anyway).
  [ -z "$any" ] && rm -rf "$RUN/redis-cluster"
  for port in $CLUSTER_PORTS; do
    nodes+=("127.0.0.1:$port")
    if alive "$(cluster_pid "$port")" && port_open "$port"; then continue; fi
    mkdir -p "$RUN/redis-cluster/$port"
    redis-server --port "$port" --bind 127.0.0.1 --daemonize yes \
      --cluster-enabled yes --cluster-config-file nodes.conf \
      --cluster-node-timeout 5000 --pidfile "$(cluster_pid "$port")" \
      --dir "$RUN/redis-cluster/$port" --logfile "$RUN/redis-cluster-$port.log" \
      --save "" --appendonly no
    wait_for "redis-cluster-$port" 30 port_open "$port"
  done
  if [ "$(cluster_info cluster_slots_assigned)" = 0 ]; then
    log "creating the Redis Cluster of ${nodes[*]}"
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes \
      >"$RUN/redis-cluster.log" 2>&1
  fi
  wait_for redis-cluster 60 cluster_ok
}

stop_redis_cluster() {
  local port
  for port in $CLUSTER_PORTS; do stop "redis-cluster-$port"; done
  rm -rf "$RUN/redis-cluster"
}

# The line of the env file naming the cluster's nodes, while it runs.
cluster_env() {
  if cluster_running; then echo "export OMS_REDIS_CLUSTER_NODES=$(cluster_nodes)"; fi
}

# Rewrites the cluster's line of an env file that exists.
update_cluster_env() {
  [ -f "$ENV_FILE" ] || return 0
  local rest; rest=$(grep -v '^export OMS_REDIS_CLUSTER_NODES=' "$ENV_FILE" || true)
  { echo "$rest"; cluster_env; } >"$ENV_FILE"
}

mysql_root() { mariadb --no-defaults --socket="$RUN/mariadb.sock" -uroot "$@"; }

start_mariadb() {
  if alive "$RUN/mariadb.pid" && port_open "$MYSQL_PORT"; then return; fi
  local data="$RUN/mariadb"
  if [ ! -d "$data/mysql" ]; then
    mkdir -p "$data"
    mariadb-install-db --no-defaults --datadir="$data" --user="$(id -un)" \
      --auth-root-authentication-method=normal --skip-test-db >"$RUN/mariadb-install.log" 2>&1
  fi
  nohup mariadbd --no-defaults --datadir="$data" --socket="$RUN/mariadb.sock" \
    --port="$MYSQL_PORT" --bind-address=127.0.0.1 --pid-file="$RUN/mariadb.pid" \
    --user="$(id -un)" --skip-name-resolve --max-connections=512 \
    --innodb-buffer-pool-size=512M --innodb-log-file-size=256M \
    --log-error="$RUN/mariadb.log" >/dev/null 2>&1 &
  wait_for mariadb 60 mariadb-admin --no-defaults --socket="$RUN/mariadb.sock" -uroot ping --silent
  mysql_root <<SQL
CREATE DATABASE IF NOT EXISTS oms;
CREATE USER IF NOT EXISTS 'oms'@'127.0.0.1' IDENTIFIED BY 'oms';
CREATE USER IF NOT EXISTS 'oms'@'localhost' IDENTIFIED BY 'oms';
GRANT ALL PRIVILEGES ON *.* TO 'oms'@'127.0.0.1';
GRANT ALL PRIVILEGES ON *.* TO 'oms'@'localhost';
FLUSH PRIVILEGES;
SQL
  wait_for mariadb 30 port_open "$MYSQL_PORT"
}

start_tansu() {
  if alive "$RUN/tansu.pid" && port_open "$KAFKA_PORT"; then return; fi
  nohup "$TANSU" broker --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --storage-engine memory://tansu/ >"$RUN/tansu.log" 2>&1 &
  echo $! >"$RUN/tansu.pid"
  wait_for tansu 30 port_open "$KAFKA_PORT"
}

mock_field() { # name: a line of the mock's info file
  awk -v k="$1" '$1 == k { print $2 }' "$RUN/mock.info" 2>/dev/null
}

start_mock() {
  if alive "$RUN/mock.pid" && [ -s "$RUN/mock.info" ]; then return; fi
  # The same features as scripts/test.sh's builds, so this reuses them.
  log "building the mock broker (cargo build --workspace --all-features --example mockbroker)"
  cargo build --quiet --workspace --all-features --example mockbroker
  rm -f "$RUN/mock.info"
  OMS_MOCK_INFO="$RUN/mock.info" nohup "$ROOT/target/debug/examples/mockbroker" \
    >"$RUN/mock.log" 2>&1 &
  echo $! >"$RUN/mock.pid"
  wait_for mock 30 test -s "$RUN/mock.info"
  local bootstrap; bootstrap=$(mock_field bootstrap)
  wait_for mock 30 port_open "${bootstrap##*:}"
}

write_env() {
  local brokers rewind extra=""
  if [ "$BROKER" = mock ]; then
    brokers=$(mock_field bootstrap)
    # The mock delivers a batch from the offset asked for.
    rewind=off
    extra="export OMS_MOCK_CONTROL=$(mock_field control)"
  else
    brokers=127.0.0.1:$KAFKA_PORT
    # tansu 0.6 answers a fetch that starts inside a producer batch with the
    # batches after it: the consumers and the backlog probe must re-read
    # what it skips. It accepts the default replication factor (-1).
    rewind=on
  fi
  # The file names itself, so that a nested `up` (fault tests restart
  # MariaDB) rewrites this file and not another broker's.
  cat >"$ENV_FILE" <<ENV
export OMS_BROKER=$BROKER
export OMS_SERVICES_ENV=$ENV_FILE
export OMS_KAFKA_BROKERS=$brokers
export OMS_KAFKA_REWIND_ON_GAP=$rewind
export OMS_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/
export OMS_DATABASE_URL=mysql://oms:oms@127.0.0.1:$MYSQL_PORT/oms
$extra
$(cluster_env)
ENV
}

stop() { # name
  local pidfile="$RUN/$1.pid"
  if alive "$pidfile"; then
    local pid; pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    log "$1 stopped"
  fi
  rm -f "$pidfile"
}

case "${1:-}" in
  up)
    mkdir -p "$RUN"
    install_packages
    [ "$BROKER" = tansu ] && install_tansu
    start_redis
    start_mariadb
    if [ "$BROKER" = mock ]; then start_mock; else start_tansu; fi
    write_env
    log "up: redis 127.0.0.1:$REDIS_PORT, mariadb 127.0.0.1:$MYSQL_PORT, kafka ($BROKER) $(grep OMS_KAFKA_BROKERS "$ENV_FILE" | cut -d= -f2); env in $ENV_FILE"
    ;;
  down)
    stop "$BROKER"
    stop mariadb
    stop redis
    stop_redis_cluster
    update_cluster_env
    ;;
  up-cluster)
    mkdir -p "$RUN"
    install_packages
    start_redis_cluster
    if [ -f "$ENV_FILE" ]; then update_cluster_env; else write_env; fi
    log "up: redis cluster $(cluster_nodes) ($(cluster_info cluster_known_nodes) nodes, state $(cluster_info cluster_state)); env in $ENV_FILE"
    ;;
  down-cluster)
    stop_redis_cluster
    update_cluster_env
    ;;
  stop-broker)
    stop "$BROKER"
    ;;
  stop-mariadb)
    # For fault tests: stop the database only (`up` starts it again).
    stop mariadb
    ;;
  stop-redis)
    # For fault tests: stop Redis only (`up` starts it again, without the
    # keys it held: it keeps no data).
    stop redis
    ;;
  status)
    for s in redis mariadb "$BROKER"; do
      if alive "$RUN/$s.pid"; then echo "$s: running (pid $(cat "$RUN/$s.pid"))"; else echo "$s: stopped"; fi
    done
    for port in $CLUSTER_PORTS; do
      s=redis-cluster-$port
      if alive "$RUN/$s.pid"; then echo "$s: running (pid $(cat "$RUN/$s.pid"))"; else echo "$s: stopped"; fi
    done
    ;;
  *)
    echo "usage: $0 up|down|status|up-cluster|down-cluster|stop-mariadb|stop-redis|stop-broker" >&2
    exit 2
    ;;
esac
