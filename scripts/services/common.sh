# Helpers shared by scripts/services/*.sh (sourced, not run). Everything
# here works on one service instance: a data directory ($SVC_DIR) holding
# the engine's data, its log, and svc.state, the record of what runs there
# (port, PIDs) that stop/status/env read back. Processes are started in
# their own session (setsid), so a Ctrl-C or a job kill aimed at the caller
# does not reach them; they are stopped by the PIDs recorded in svc.state,
# checked against /proc/PID/cmdline first so a recycled PID is never hit.

svc_log() { printf 'svc: %s\n' "$*" >&2; }
svc_die() { printf 'svc: error: %s\n' "$*" >&2; exit 1; }

svc_root() { (cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd); }

# Where Maven's local repository and the engines' jars live: outside the
# work tree, shared by every checkout on the machine.
svc_cache() {
  printf '%s\n' "${LIBCHAT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/libchat}"
}

# Milliseconds since the epoch, for start-time figures.
svc_now_ms() { date +%s%3N; }

# Whether something accepts TCP connections on host:port.
svc_port_open() {
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# Whether host:port can be bound now by a server: nobody listens on it.
# SO_REUSEADDR as servers set it, so connections in TIME_WAIT from an
# earlier instance do not count.
svc_port_free() {
  python3 - "$1" "$2" <<'PY' 2>/dev/null
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind((sys.argv[1], int(sys.argv[2])))
except OSError:
    sys.exit(1)
PY
}

# A free port with `span` consecutive free ports on every given address
# (default 127.0.0.1). It is drawn at random below the kernel's ephemeral
# range, so outgoing connections (which take their local port from that
# range) cannot be holding it by the time the engine binds. The small race
# with other programs is accepted: a lost one fails the start clearly.
svc_pick_port() {
  local span=${1:-1}
  shift || true
  python3 - "$span" "${@:-127.0.0.1}" <<'PY'
import random, socket, sys
span = int(sys.argv[1])
hosts = sys.argv[2:]
try:
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except (OSError, ValueError, IndexError):
    low = 32768
top = max(low - span, 10001)
for _ in range(500):
    p = random.randint(10000, top)
    ok = True
    for q in range(p, p + span):
        for h in hosts:
            t = socket.socket()
            t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                t.bind((h, q))
            except OSError:
                ok = False
            t.close()
    if ok:
        print(p)
        sys.exit(0)
sys.exit(1)
PY
}

# Whether `pid` is alive (not a zombie) and its command line mentions
# `needle` (the data directory), so a recycled PID is never taken for ours.
svc_pid_ours() {
  local pid=$1 needle=$2 state
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  state=$(awk '/^State:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)
  [ "$state" != "Z" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$needle"
}

# Start "$@" in its own session with output to `log`; prints its PID.
# setsid execs in place here (a background job is not a group leader), so
# $! is the engine's own PID.
svc_spawn() {
  local log=$1
  shift
  setsid "$@" >>"$log" 2>&1 </dev/null &
  echo $!
}

# Wait until host:port accepts connections, while `pid` stays alive.
# Returns 1 when the process died, 2 on timeout.
svc_wait_port() {
  local host=$1 port=$2 pid=$3 needle=$4 timeout_s=$5
  local deadline=$(( $(date +%s) + timeout_s ))
  while :; do
    if ! svc_pid_ours "$pid" "$needle"; then
      return 1
    fi
    if svc_port_open "$host" "$port"; then
      return 0
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      return 2
    fi
    sleep 0.1
  done
}

# Send `sig` to an instance's process and wait up to `timeout_s` for it to
# go; then SIGKILL. Returns 0 once it is gone.
svc_stop_pid() {
  local pid=$1 needle=$2 sig=$3 timeout_s=$4
  svc_pid_ours "$pid" "$needle" || return 0
  kill "-$sig" "$pid" 2>/dev/null || true
  local deadline=$(( $(date +%s) + timeout_s ))
  while svc_pid_ours "$pid" "$needle"; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      svc_log "pid $pid still there after ${timeout_s}s of SIG$sig: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.2
      break
    fi
    sleep 0.1
  done
  # Reap nothing: the process is not our child (setsid). Wait for /proc
  # to drop it so the port and the data dir are free when we return.
  local i
  for i in $(seq 1 50); do
    svc_pid_ours "$pid" "$needle" || return 0
    sleep 0.1
  done
  return 1
}

# Proportional set size of `pid` and its descendants, in MiB (shared pages
# split between the processes that map them, so PostgreSQL's shared buffers
# count once). Falls back to RSS without smaps_rollup.
svc_mem_mib() {
  local pid=$1 total=0 p kb
  local pids=("$pid")
  local i=0
  while [ $i -lt ${#pids[@]} ]; do
    p=${pids[$i]}
    local kids
    kids=$(cat "/proc/$p/task/"*/children 2>/dev/null || true)
    for k in $kids; do pids+=("$k"); done
    i=$((i + 1))
  done
  for p in "${pids[@]}"; do
    kb=$(awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null || true)
    if [ -z "$kb" ]; then
      kb=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null || echo 0)
    fi
    total=$((total + ${kb:-0}))
  done
  echo $((total / 1024))
}

# svc.state: shell assignments (KEY='value'), read back with svc_state_load.
svc_state_save() {
  local f="$SVC_DIR/svc.state" k
  : >"$f.tmp"
  for k in "$@"; do
    printf "%s=%q\n" "$k" "${!k}" >>"$f.tmp"
  done
  mv "$f.tmp" "$f"
}

svc_state_load() {
  [ -f "$SVC_DIR/svc.state" ] || return 1
  # shellcheck disable=SC1091
  . "$SVC_DIR/svc.state"
}

# The `export NAME=value` lines a test evals, one per argument NAME=value.
svc_print_env() {
  local kv
  local v
  for kv in "$@"; do
    v=${kv#*=}
    printf "export %s='%s'\n" "${kv%%=*}" "${v//\'/\'\\\'\'}"
  done
}

# Check `port` on `host` is free before a start, with a clear message.
svc_need_free_port() {
  local host=$1 port=$2 what=$3
  if ! svc_port_free "$host" "$port"; then
    svc_die "$what: $host:$port is in use (another instance, or another program); pick --port"
  fi
}
