# Redis (Debian's redis-server, 7.0 on bookworm), sourced by svc.sh. Bound
# to 127.0.0.1:PORT, working directory $SVC_DIR. No persistence by default
# (no RDB snapshots, no AOF): the scale-out design keeps only presence,
# pub/sub and counters there, all rebuilt after a restart. --persist turns
# on the append-only file (fsync every second) in $SVC_DIR.
# Redis rewrites its command line to "redis-server 127.0.0.1:PORT", so the
# PID check looks for the port, which both forms of the line contain.

redis_default_port() { echo 16379; }
redis_span() { echo 1; }

redis_start() {
  command -v redis-server >/dev/null 2>&1 ||
    svc_die "redis: no redis-server (apt-get install redis-server; see scripts/services/packages.sh)"
  mkdir -p "$SVC_DIR"
  svc_need_free_port 127.0.0.1 "$PORT" redis
  local persist=(--save '' --appendonly no)
  if [ "$SVC_PERSIST" = 1 ]; then
    persist=(--save '' --appendonly yes --appendfsync everysec)
  fi
  local t0 pid rc=0
  t0=$(svc_now_ms)
  # --dir holds the AOF (and would hold dump.rdb); the log goes to stdout,
  # which svc_spawn sends to redis.log.
  pid=$(svc_spawn "$SVC_DIR/redis.log" redis-server \
          --bind 127.0.0.1 --port "$PORT" --protected-mode yes \
          --dir "$SVC_DIR" --daemonize no --logfile '' \
          "${persist[@]}")
  svc_wait_port 127.0.0.1 "$PORT" "$pid" "$PORT" "$TIMEOUT" || rc=$?
  if [ $rc -ne 0 ]; then
    tail -n 20 "$SVC_DIR/redis.log" >&2
    svc_stop_pid "$pid" "$PORT" KILL 5 || true
    svc_die "redis: did not start on 127.0.0.1:$PORT (log: $SVC_DIR/redis.log)"
  fi
  START_MS=$(( $(svc_now_ms) - t0 ))
  PIDS=$pid
  svc_state_save PORT PIDS START_MS
}

redis_stop() {
  local sig=${1:-TERM} pid
  for pid in $PIDS; do
    svc_stop_pid "$pid" "$PORT" "$sig" "$TIMEOUT" ||
      svc_die "redis: pid $pid would not stop"
  done
}

redis_env() {
  svc_print_env \
    "CHAT_REDIS_URL=redis://127.0.0.1:$PORT/0" \
    "CHAT_REDIS_PORT=$PORT"
}
