#!/usr/bin/env bash
# Start, stop and inspect the engines libchat's scale-out tests run on,
# each on loopback with its own data directory and port (docs/services.md).
#
# Usage: scripts/services/svc.sh ACTION NAME [options]
#   ACTION  start    start (idempotent: a running instance just prints its
#                    environment), then print `export VAR=...` lines
#           stop     graceful stop, data kept
#           kill     SIGKILL (crash tests), data kept
#           restart  stop, then start on the same port
#           status   running or not, PIDs, port, memory; exit 0 if running,
#                    3 if not
#           env      print the `export VAR=...` lines of a running instance
#           clean    stop, then delete the data directory
#           fetch    kafka, cassandra: fetch the jars from Maven Central
#           cmd      haproxy: send one runtime API command ("show stat")
#   NAME    postgres | redis | haproxy | kafka | cassandra
# Options:
#   --dir D           data directory [$LIBCHAT_SVC_ROOT/NAME, where
#                     LIBCHAT_SVC_ROOT defaults to /tmp/libchat-services]
#   --port P|auto     port (auto: a free one) [postgres 15432, redis 16379,
#                     haproxy 18000, kafka 19092 (+1 controller), cassandra
#                     19042 (+1 storage)]
#   --fresh           start from an empty data directory
#   --timeout S       readiness deadline and stop deadline [180]
#   --heap SIZE       kafka, cassandra: Java heap [512m]
#   --nodes 1|3       cassandra: ring size, RF = nodes [1]
#   --node I          cassandra: start/stop/kill node I only
#   --partitions N    kafka: partitions of auto-created topics [4]
#   --persist         redis: append-only file (default: no persistence)
#   --no-fsync        postgres: fsync=off (an OS crash may lose data)
#   --backends LIST   haproxy: gateways, host:port,...
#   --balance ALG     haproxy: leastconn | roundrobin | user [leastconn]
#   --drain T         haproxy: hard-stop-after of a graceful stop [30s]
#   --tunnel-timeout T  haproxy: WebSocket idle limit [90s]
#   --rate N          haproxy: new sessions per second cap
# A test does:  eval "$(scripts/services/svc.sh start redis --port auto --dir "$tmp/redis")"
# and later:    scripts/services/svc.sh stop redis --dir "$tmp/redis"
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$here/common.sh"
# shellcheck source=maven.sh
. "$here/maven.sh"

usage() { sed -n '2,38p' "$0" | sed 's/^# \{0,1\}//'; }

[ $# -ge 1 ] || { usage >&2; exit 2; }
case "$1" in -h|--help) usage; exit 0 ;; esac
action=$1
shift
name=${1:-}
[ -n "$name" ] || { usage >&2; exit 2; }
shift
case "$name" in
  postgres|redis|haproxy|kafka|cassandra) ;;
  *) svc_die "unknown service '$name' (postgres, redis, haproxy, kafka, cassandra)" ;;
esac

opt_dir="" opt_port="" fresh=0 TIMEOUT=180 nodes_given=0
SVC_HEAP=512m SVC_NODES=1 SVC_NODE="" SVC_PARTITIONS=4 SVC_PERSIST=0
SVC_NO_FSYNC=0 SVC_BACKENDS="" SVC_BALANCE=leastconn SVC_DRAIN=30s
SVC_TUNNEL=90s SVC_RATE=""
cmd_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) opt_dir=$2; shift 2 ;;
    --port) opt_port=$2; shift 2 ;;
    --fresh) fresh=1; shift ;;
    --timeout) TIMEOUT=$2; shift 2 ;;
    --heap) SVC_HEAP=$2; shift 2 ;;
    --nodes) SVC_NODES=$2; nodes_given=1; shift 2 ;;
    --node) SVC_NODE=$2; shift 2 ;;
    --partitions) SVC_PARTITIONS=$2; shift 2 ;;
    --persist) SVC_PERSIST=1; shift ;;
    --no-fsync) SVC_NO_FSYNC=1; shift ;;
    --backends) SVC_BACKENDS=$2; shift 2 ;;
    --balance) SVC_BALANCE=$2; shift 2 ;;
    --drain) SVC_DRAIN=$2; shift 2 ;;
    --tunnel-timeout) SVC_TUNNEL=$2; shift 2 ;;
    --rate) SVC_RATE=$2; shift 2 ;;
    --) shift; cmd_args+=("$@"); break ;;
    -*) svc_die "unknown option $1 (try --help)" ;;
    *) cmd_args+=("$1"); shift ;;
  esac
done
case "$TIMEOUT" in ''|*[!0-9]*) svc_die "--timeout takes seconds" ;; esac

SVC_DIR=${opt_dir:-${LIBCHAT_SVC_ROOT:-/tmp/libchat-services}/$name}
mkdir -p "$SVC_DIR"
SVC_DIR=$(cd "$SVC_DIR" && pwd)
export SVC_DIR

# shellcheck source=/dev/null
. "$here/$name.sh"

PORT="" PIDS="" START_MS="" NODES="" BACKENDS="" DRAIN=""
svc_state_load || true

# The needle that proves a PID is this instance's (see svc_pid_ours).
needle() {
  case "$name" in
    redis) echo "$PORT" ;;
    *) echo "$SVC_DIR" ;;
  esac
}

# 0 when every process of the instance runs (cassandra: every node, or
# node --node), 1 when none does, 2 when some do.
running() {
  local up=0 down=0 p
  if [ "$name" = cassandra ]; then
    [ -n "$NODES" ] || return 1
    local line
    while read -r line; do
      if [ -n "$SVC_NODE" ] && [ "${line%% *}" != "node$SVC_NODE" ]; then continue; fi
      if [ "${line#* }" = - ]; then down=$((down + 1)); else up=$((up + 1)); fi
    done < <(cassandra_live_pids)
  else
    for p in $PIDS; do
      if svc_pid_ours "$p" "$(needle)"; then up=$((up + 1)); else down=$((down + 1)); fi
    done
  fi
  if [ $up -gt 0 ] && [ $down -eq 0 ]; then return 0; fi
  if [ $up -eq 0 ]; then return 1; fi
  return 2
}

do_stop() {
  local sig=$1 rc=0
  running || rc=$?
  if [ $rc -eq 1 ]; then
    svc_log "$name: not running ($SVC_DIR)"
    if [ "$name" != cassandra ]; then PIDS=""; fi
    return 0
  fi
  if [ "$name" = cassandra ]; then
    cassandra_stop "$sig"
  else
    "${name}_stop" "$sig"
    PIDS=""
    svc_state_save PORT PIDS START_MS BACKENDS DRAIN
  fi
  if [ "$name" = cassandra ] && [ -n "$SVC_NODE" ]; then
    svc_log "cassandra: node $SVC_NODE stopped ($SVC_DIR)"
  else
    svc_log "$name: stopped ($SVC_DIR)"
  fi
}

check_nodes() {
  if [ -n "$NODES" ] && [ "$nodes_given" = 1 ] && [ "$SVC_NODES" != "$NODES" ]; then
    svc_die "cassandra: $SVC_DIR holds a $NODES-node ring; add --fresh for a $SVC_NODES-node one"
  fi
}

do_start() {
  local rc=0
  running || rc=$?
  if [ $rc -eq 0 ]; then
    if [ -n "$opt_port" ] && [ "$opt_port" != auto ] && [ "$opt_port" != "$PORT" ]; then
      svc_die "$name: already running on port $PORT in $SVC_DIR; stop it first"
    fi
    check_nodes
    "${name}_env"
    return 0
  fi
  if [ "$fresh" = 1 ]; then
    if [ $rc -eq 2 ]; then SVC_NODE="" do_stop TERM; fi
    find "$SVC_DIR" -mindepth 1 -delete
    PORT="" PIDS="" START_MS="" NODES="" BACKENDS=""
  fi
  # A restart keeps the port it had (with --port auto too, while that
  # port is free): clients and, for a Cassandra ring, the other nodes know
  # the instance by it.
  if [ "$opt_port" = auto ] && [ -n "$PORT" ] && svc_port_free 127.0.0.1 "$PORT"; then
    :
  elif [ -n "$opt_port" ]; then
    if [ "$name" = cassandra ] && [ -n "$PORT" ] && [ "$opt_port" != "$PORT" ]; then
      svc_die "cassandra: the ring in $SVC_DIR lives on port $PORT; restart it there, or add --fresh"
    fi
    PORT=$opt_port
  fi
  if [ "$PORT" = auto ]; then
    local hosts=(127.0.0.1)
    if [ "$name" = cassandra ]; then
      hosts=(); for i in $(seq 1 "${NODES:-$SVC_NODES}"); do hosts+=("127.0.0.$i"); done
    fi
    PORT=$(svc_pick_port "$("${name}_span")" "${hosts[@]}") || svc_die "no free port found"
  fi
  PORT=${PORT:-$("${name}_default_port")}
  case "$PORT" in ''|*[!0-9]*) svc_die "--port takes a number or auto" ;; esac
  if [ "$name" = cassandra ]; then
    # A ring keeps its size: a partly running one (a node killed by a
    # test) restarts its missing nodes.
    check_nodes
    NODES=${NODES:-$SVC_NODES}
  fi
  "${name}_start"
  "${name}_env"
}

case "$action" in
  start)
    do_start
    ;;
  stop)
    do_stop ""
    ;;
  kill)
    do_stop KILL
    ;;
  restart)
    do_stop ""
    do_start
    ;;
  status)
    rc=0
    running || rc=$?
    if [ "$name" = cassandra ] && [ -n "$NODES" ]; then
      while read -r node pid; do
        if [ "$pid" = - ]; then
          echo "cassandra $node: stopped"
        else
          echo "cassandra $node: running, pid $pid, CQL 127.0.0.${node#node}:$PORT, $(svc_mem_mib "$pid") MiB"
        fi
      done < <(cassandra_live_pids)
    elif [ $rc -eq 0 ]; then
      for p in $PIDS; do
        echo "$name: running, pid $p, port $PORT, $(svc_mem_mib "$p") MiB (PSS, with children), dir $SVC_DIR"
      done
    else
      echo "$name: stopped, dir $SVC_DIR"
    fi
    if [ -n "$START_MS" ]; then echo "$name: last start took $START_MS ms"; fi
    [ $rc -eq 0 ] || exit 3
    ;;
  env)
    running || svc_die "$name: not running in $SVC_DIR"
    "${name}_env"
    ;;
  clean)
    SVC_NODE=""
    do_stop ""
    rm -rf "$SVC_DIR"
    svc_log "$name: removed $SVC_DIR"
    ;;
  fetch)
    case "$name" in
      kafka|cassandra) svc_maven_fetch "$name" ;;
      *) svc_die "fetch: only kafka and cassandra come from Maven Central" ;;
    esac
    ;;
  cmd)
    [ "$name" = haproxy ] || svc_die "cmd: haproxy only"
    running || svc_die "haproxy: not running in $SVC_DIR"
    haproxy_cmd "${cmd_args[*]}"
    ;;
  *)
    svc_die "unknown action '$action' (try --help)"
    ;;
esac
