#!/usr/bin/env bash
# Print an HAProxy 2.6 configuration that balances chat gateways (chatd):
# WebSocket upgrades and REST on one frontend, health checks on /healthz,
# timeouts fit for long-lived WebSockets, and a bounded graceful stop.
#
# Usage: haproxy-config.sh --port P --backends H:P,H:P,... [options]
#   --port P              frontend port on 127.0.0.1
#   --backends LIST       gateways, host:port comma-separated (1 or more)
#   --admin-socket PATH   runtime API socket (show stat, set server ...
#                         state drain|ready|maint)
#   --balance ALG         leastconn (default: WebSockets are long-lived, so
#                         new ones go to the emptiest gateway), roundrobin,
#                         or user (consistent hash of the access token,
#                         from the query's access_token or else the
#                         Authorization header: one token, which is one
#                         user's device, keeps landing on the same gateway
#                         while that gateway is up)
#   --tunnel-timeout T    idle limit of an upgraded connection [90s]
#   --drain T             hard-stop-after: how long a soft stop (SIGUSR1)
#                         lets established connections run [30s]
#   --check-interval T    health check period [1s]
#   --maxconn N           frontend connection cap [from ulimit -n]
#   --rate N              new sessions per second cap on the frontend
#                         (shapes a reconnect storm); none by default
#
# Why these settings (see /usr/share/doc/haproxy/configuration.txt):
# - `timeout tunnel` replaces client/server timeouts once a connection is
#   upgraded to WebSocket. chatd pings a peer silent for --heartbeat-ms
#   (30 s) and cuts it after --idle-timeout-ms (75 s), so 90 s leaves the
#   gateway, not the proxy, in charge of idle WebSockets.
# - `timeout client-fin`/`server-fin` bound half-closed tunnels, which the
#   tunnel timeout alone would keep for 90 s.
# - Health: `option httpchk GET /healthz` with `http-check expect status
#   200`. A draining chatd closes new connections and answers 503, so two
#   failed checks (fall 2 at 1 s, fastinter 500 ms once one failed) take it
#   out of rotation within about 1.5 s; `rise 2` brings a restarted one back,
#   and `slowstart 5s` ramps its weight up so a reconnect storm does not
#   land on it alone. Established WebSockets to a gateway marked down are
#   left alone (no shutdown-sessions): chatd closes them itself with 1001
#   when it drains, and a SIGKILLed one has no sessions left anyway.
# - `option redispatch` + `retries 2`: a connection refused by a dead
#   gateway is retried on another before the client sees an error.
# - Graceful stop: SIGUSR1 makes HAProxy unbind and wait for established
#   connections; `hard-stop-after` bounds that wait (WebSocket tunnels do
#   not end by themselves), and `close-spread-time` spreads the closing of
#   idle keep-alive connections over half of it. svc.sh stop sends SIGUSR1.
set -euo pipefail

port="" backends="" sock="" balance=leastconn tunnel=90s drain=30s
inter=1s maxconn="" rate=""
while [ $# -gt 0 ]; do
  case "$1" in
    --port) port=$2; shift 2 ;;
    --backends) backends=$2; shift 2 ;;
    --admin-socket) sock=$2; shift 2 ;;
    --balance) balance=$2; shift 2 ;;
    --tunnel-timeout) tunnel=$2; shift 2 ;;
    --drain) drain=$2; shift 2 ;;
    --check-interval) inter=$2; shift 2 ;;
    --maxconn) maxconn=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "haproxy-config.sh: unknown argument: $1" >&2; exit 2 ;;
  esac
done
[ -n "$port" ] || { echo "haproxy-config.sh: --port is required" >&2; exit 2; }
[ -n "$backends" ] || { echo "haproxy-config.sh: --backends is required" >&2; exit 2; }

case "$balance" in
  leastconn) balance_line="balance leastconn" ;;
  roundrobin) balance_line="balance roundrobin" ;;
  user)
    # Hash the token wherever the client put it; consistent hashing moves
    # only the dead gateway's share when one goes away.
    balance_line="http-request set-var(txn.chat_key) url_param(access_token)
  http-request set-var(txn.chat_key) req.hdr(Authorization) unless { var(txn.chat_key) -m found }
  balance hash var(txn.chat_key)
  hash-type consistent" ;;
  *) echo "haproxy-config.sh: --balance: leastconn, roundrobin or user" >&2; exit 2 ;;
esac

# Each proxied connection holds two descriptors (client and server side);
# keep a margin for checks, logs and listeners under the process's limit.
if [ -z "$maxconn" ]; then
  nofile=$(ulimit -n)
  if [ "$nofile" = unlimited ]; then nofile=1048576; fi
  maxconn=$(( (nofile - 100) / 2 ))
  [ "$maxconn" -gt 0 ] || maxconn=1
fi

drain_ms() {
  # Half of the drain, for close-spread-time, in milliseconds.
  local v=$1 n
  case "$v" in
    *ms) n=${v%ms} ;;
    *s) n=$(( ${v%s} * 1000 )) ;;
    *m) n=$(( ${v%m} * 60000 )) ;;
    *) n=$v ;;
  esac
  echo $(( n / 2 ))
}

cat <<EOF
# Generated by scripts/services/haproxy-config.sh; edit that, not this.
global
  maxconn $maxconn
  hard-stop-after $drain
  close-spread-time $(drain_ms "$drain")ms
  log stdout format raw local0 notice
EOF
if [ -n "$sock" ]; then
  echo "  stats socket $sock mode 600 level admin"
fi
cat <<EOF

defaults
  mode http
  log global
  option dontlognull
  option redispatch
  retries 2
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  timeout http-request 10s
  timeout http-keep-alive 10s
  timeout queue 5s
  timeout check 2s
  timeout tunnel $tunnel
  timeout client-fin 10s
  timeout server-fin 10s

frontend chat
  bind 127.0.0.1:$port
  maxconn $maxconn
EOF
if [ -n "$rate" ]; then
  echo "  rate-limit sessions $rate"
fi
cat <<EOF
  default_backend gateways

backend gateways
  $balance_line
  option httpchk GET /healthz
  http-check expect status 200
  default-server check inter $inter fastinter 500ms downinter $inter fall 2 rise 2 slowstart 5s
EOF
i=0
IFS=',' read -r -a list <<<"$backends"
for b in "${list[@]}"; do
  b=${b// /}
  [ -n "$b" ] || continue
  case "$b" in
    *:*) ;;
    *) echo "haproxy-config.sh: backend '$b' is not host:port" >&2; exit 2 ;;
  esac
  i=$((i + 1))
  echo "  server gw$i $b"
done
[ "$i" -gt 0 ] || { echo "haproxy-config.sh: no backend in '$backends'" >&2; exit 2; }
