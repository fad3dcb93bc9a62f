# PostgreSQL (Debian's postgresql package, 15 on bookworm), sourced by
# svc.sh. One cluster in $SVC_DIR/data, listening on 127.0.0.1:PORT only,
# its Unix socket in $SVC_DIR (never /var/run/postgresql), trust auth for
# the `postgres` role (loopback tests only). PostgreSQL refuses to run as
# root, so as root initdb and the server run as the `postgres` system user
# (setpriv, which execs in place so the recorded PID is the postmaster's);
# the data directory is then chowned to it. Stop is a fast shutdown
# (SIGINT: roll back open transactions, checkpoint, exit); kill is SIGKILL
# of the postmaster (its backends exit when they see it gone), which is
# what a crash test wants: committed transactions survive it.

postgres_default_port() { echo 15432; }
postgres_span() { echo 1; }

postgres_bindir() {
  local d best=""
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/postgres" ] && best=$d
  done
  if [ -z "$best" ] && command -v pg_config >/dev/null 2>&1; then
    best=$(pg_config --bindir)
  fi
  [ -n "$best" ] && [ -x "$best/postgres" ] ||
    svc_die "postgres: no PostgreSQL server binaries (apt-get install postgresql; see scripts/services/packages.sh)"
  echo "$best"
}

# Run a PostgreSQL program as the right user: as `postgres` when we are
# root, else as ourselves.
postgres_as() {
  if [ "$(id -u)" -eq 0 ]; then
    setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"
  else
    "$@"
  fi
}

# Temporary directories (mktemp -d, pytest's tmp_path) are mode 0700, so
# the postgres user cannot reach a data directory inside them. Under the
# system's temporary directory only, let it traverse them (o+x: no listing,
# no reading), which is all it needs; anywhere else the caller decides.
postgres_open_path() {
  local d=$1 tmp
  tmp=$(cd "${TMPDIR:-/tmp}" && pwd -P)
  d=$(cd "$d" && pwd -P)
  case "$d" in
    "$tmp"/*) ;;
    *) return 0 ;;
  esac
  d=$(dirname "$d")
  while [ "$d" != "$tmp" ] && [ "$d" != / ]; do
    if [ "$(stat -c %u "$d")" = "$(id -u)" ]; then
      chmod o+x "$d"
    fi
    d=$(dirname "$d")
  done
}

postgres_start() {
  local bin
  bin=$(postgres_bindir)
  mkdir -p "$SVC_DIR"
  if [ "$(id -u)" -eq 0 ]; then
    getent passwd postgres >/dev/null ||
      svc_die "postgres: no 'postgres' user to run the server as (install the postgresql package)"
    chown postgres: "$SVC_DIR"
    chmod 700 "$SVC_DIR"
    if ! postgres_as test -w "$SVC_DIR"; then
      postgres_open_path "$SVC_DIR"
      postgres_as test -w "$SVC_DIR" ||
        svc_die "postgres: the postgres user cannot reach $SVC_DIR (a parent is not traversable); use a --dir under /tmp"
    fi
  fi
  local t0
  t0=$(svc_now_ms)
  if [ ! -f "$SVC_DIR/data/PG_VERSION" ]; then
    rm -rf "$SVC_DIR/data"
    # -N: no fsync of the fresh cluster files (a test cluster is rebuilt,
    # not recovered, if the machine dies during initdb).
    postgres_as "$bin/initdb" -D "$SVC_DIR/data" -U postgres -A trust \
      -E UTF8 --locale=C -N >"$SVC_DIR/initdb.log" 2>&1 ||
      { cat "$SVC_DIR/initdb.log" >&2; svc_die "postgres: initdb failed"; }
  fi
  local extra=()
  if [ "$SVC_NO_FSYNC" = 1 ]; then
    # Only an OS crash can lose data with fsync off; a SIGKILL of the
    # server cannot (the WAL is in the page cache).
    extra+=(-c fsync=off -c full_page_writes=off)
  fi
  svc_need_free_port 127.0.0.1 "$PORT" postgres
  # After a kill, the lock files (postmaster.pid, the socket's .lock) name
  # a dead process. PostgreSQL checks it with kill(pid, 0), which a zombie
  # not yet reaped still passes; we know better, so stale files go.
  local lock old
  for lock in "$SVC_DIR/data/postmaster.pid" "$SVC_DIR/.s.PGSQL.$PORT.lock"; do
    old=$(head -n 1 "$lock" 2>/dev/null || true)
    if [ -n "$old" ] && ! svc_pid_ours "$old" postgres; then
      rm -f "$lock"
    fi
  done
  local as=()
  if [ "$(id -u)" -eq 0 ]; then
    as=(setpriv --reuid=postgres --regid=postgres --init-groups --)
  fi
  local pid
  pid=$(svc_spawn "$SVC_DIR/postgres.log" \
          "${as[@]}" "$bin/postgres" -D "$SVC_DIR/data" -p "$PORT" \
          -c listen_addresses=127.0.0.1 -c "unix_socket_directories=$SVC_DIR" \
          -c max_connections=200 -c shared_buffers=64MB "${extra[@]}")
  local rc=0
  svc_wait_port 127.0.0.1 "$PORT" "$pid" "$SVC_DIR" "$TIMEOUT" || rc=$?
  if [ $rc -eq 0 ]; then
    # The port opens before recovery ends; pg_isready says when it takes
    # queries.
    local deadline=$(( $(date +%s) + TIMEOUT ))
    until "$bin/pg_isready" -q -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -t 1; do
      svc_pid_ours "$pid" "$SVC_DIR" || { rc=1; break; }
      [ "$(date +%s)" -lt "$deadline" ] || { rc=2; break; }
      sleep 0.1
    done
  fi
  if [ $rc -ne 0 ]; then
    tail -n 20 "$SVC_DIR/postgres.log" >&2
    svc_stop_pid "$pid" "$SVC_DIR" KILL 5 || true
    svc_die "postgres: did not start on 127.0.0.1:$PORT (log: $SVC_DIR/postgres.log)"
  fi
  START_MS=$(( $(svc_now_ms) - t0 ))
  PIDS=$pid
  svc_state_save PORT PIDS START_MS
}

postgres_stop() {
  local sig=${1:-INT} pid
  if [ "$sig" = KILL ]; then
    # A crash: the postmaster and every backend at once, as when the
    # machine loses the server. Committed transactions are in the WAL.
    local kids k
    for pid in $PIDS; do
      kids=$(cat "/proc/$pid/task/"*/children 2>/dev/null || true)
      kill -KILL "$pid" $kids 2>/dev/null || true
      for k in $kids; do
        svc_stop_pid "$k" postgres KILL 5 || true
      done
    done
  fi
  for pid in $PIDS; do
    svc_stop_pid "$pid" "$SVC_DIR" "$sig" "$TIMEOUT" ||
      svc_die "postgres: pid $pid would not stop"
  done
}

postgres_env() {
  svc_print_env \
    "CHAT_PG_URL=postgres://postgres@127.0.0.1:$PORT/postgres" \
    "CHAT_PG_PORT=$PORT" \
    "CHAT_PG_SOCKET_DIR=$SVC_DIR"
}
