# HAProxy (Debian's haproxy, 2.6 on bookworm), sourced by svc.sh. One
# process in the foreground (-db) on 127.0.0.1:PORT in front of the
# gateways given with --backends, its configuration generated into
# $SVC_DIR/haproxy.cfg by haproxy-config.sh (see there for every setting)
# and its runtime API on $SVC_DIR/admin.sock (svc.sh cmd haproxy "show
# stat"). stop is graceful: SIGUSR1 unbinds the port at once and lets
# established connections finish, for at most --drain (hard-stop-after);
# kill is SIGKILL.

haproxy_default_port() { echo 18000; }
haproxy_span() { echo 1; }

haproxy_start() {
  command -v haproxy >/dev/null 2>&1 ||
    svc_die "haproxy: no haproxy (apt-get install haproxy; see scripts/services/packages.sh)"
  mkdir -p "$SVC_DIR"
  if [ -n "$SVC_BACKENDS" ]; then
    BACKENDS=$SVC_BACKENDS
  fi
  [ -n "${BACKENDS:-}" ] ||
    svc_die "haproxy: --backends host:port,... is required (the gateways to balance)"
  local gen=("$(dirname "${BASH_SOURCE[0]}")/haproxy-config.sh"
             --port "$PORT" --backends "$BACKENDS"
             --admin-socket "$SVC_DIR/admin.sock"
             --balance "$SVC_BALANCE" --drain "$SVC_DRAIN"
             --tunnel-timeout "$SVC_TUNNEL")
  if [ -n "$SVC_RATE" ]; then
    gen+=(--rate "$SVC_RATE")
  fi
  "${gen[@]}" >"$SVC_DIR/haproxy.cfg"
  haproxy -q -c -f "$SVC_DIR/haproxy.cfg" >"$SVC_DIR/check.log" 2>&1 ||
    { cat "$SVC_DIR/check.log" >&2; svc_die "haproxy: the generated configuration is invalid"; }
  svc_need_free_port 127.0.0.1 "$PORT" haproxy
  local t0 pid rc=0
  t0=$(svc_now_ms)
  pid=$(svc_spawn "$SVC_DIR/haproxy.log" haproxy -db -f "$SVC_DIR/haproxy.cfg")
  svc_wait_port 127.0.0.1 "$PORT" "$pid" "$SVC_DIR" "$TIMEOUT" || rc=$?
  if [ $rc -ne 0 ]; then
    tail -n 20 "$SVC_DIR/haproxy.log" >&2
    svc_stop_pid "$pid" "$SVC_DIR" KILL 5 || true
    svc_die "haproxy: did not start on 127.0.0.1:$PORT (log: $SVC_DIR/haproxy.log)"
  fi
  START_MS=$(( $(svc_now_ms) - t0 ))
  PIDS=$pid
  DRAIN=$SVC_DRAIN
  svc_state_save PORT PIDS START_MS BACKENDS DRAIN
}

haproxy_stop() {
  local sig=${1:-USR1} pid wait=$TIMEOUT
  if [ "$sig" = USR1 ]; then
    # The soft stop lasts up to hard-stop-after; give it that plus a bit.
    wait=$(( $(haproxy_seconds "${DRAIN:-30s}") + 5 ))
  fi
  for pid in $PIDS; do
    svc_stop_pid "$pid" "$SVC_DIR" "$sig" "$wait" ||
      svc_die "haproxy: pid $pid would not stop"
  done
}

haproxy_seconds() {
  case "$1" in
    *ms) echo $(( ${1%ms} / 1000 + 1 )) ;;
    *s) echo "${1%s}" ;;
    *m) echo $(( ${1%m} * 60 )) ;;
    *) echo $(( $1 / 1000 + 1 )) ;;
  esac
}

haproxy_env() {
  svc_print_env \
    "CHAT_HAPROXY_ADDR=127.0.0.1:$PORT" \
    "CHAT_HAPROXY_URL=http://127.0.0.1:$PORT" \
    "CHAT_HAPROXY_WS=ws://127.0.0.1:$PORT/chat/v1/ws" \
    "CHAT_HAPROXY_SOCKET=$SVC_DIR/admin.sock"
}

# svc.sh cmd haproxy "show stat": one runtime API command, answer on stdout.
haproxy_cmd() {
  python3 - "$SVC_DIR/admin.sock" "$*" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\n")
out = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    out += b
sys.stdout.write(out.decode(errors="replace"))
PY
}
