#!/usr/bin/env bash
# The Go binding's overhead against the C client, on one chatd, runs
# interleaved (C, Go, C, Go, ...) so that machine noise hits both alike:
#   rtt     N sends one after the other, each when the previous one was
#           acked: send -> ack round trip, p50 and p99
#   msgs/s  MSGS sends keeping WINDOW unacked: acked messages per second
# Each bench prints one JSON line in bench/bindings.sh's format:
#   {"lang":"go","n":1000,"rtt_p50_us":..,"rtt_p99_us":..,"window":32,"msgs":5000,"msgs_per_s":..}
# and this script then prints "run <i> <line>" for each run, "median {...}"
# per bench and "ratio {"lang":"go","vs":"c",...}" (above 1: slower for
# the rtt figures, faster for msgs_per_s).
#
# The C side is the C client SDK's bench (<build>/bench/client-rtt, from
# bench/client_rtt.c) when the build has it. Without it, the C figures
# come from chat-bench (a minimal hand-written C WebSocket client, no SDK:
# the protocol's floor): `floor` gives the sequential p50/p99 and `direct
# --pairs 1 --window W` the msgs/s, labelled "c-raw".
#
# C_RTT=PATH names another C client-rtt binary.
#
# Usage: bindings/go/bench/run.sh [--build-dir DIR] [--runs 3] [--n 1000]
#                                 [--window 32] [--msgs 5000]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
build=build runs=3 n=1000 window=32 msgs=5000
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) build=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --n) n=$2; shift 2 ;;
    --window) window=$2; shift 2 ;;
    --msgs) msgs=$2; shift 2 ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$build" in /*) ;; *) build=$root/$build ;; esac
chatd=$build/chatd/chatd
[ -x "$chatd" ] || { echo "run.sh: build $build first" >&2; exit 1; }

work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

eval "$("$root/scripts/stage.sh" --build-dir "$build" --stage "$build/stage-go")"
(cd "$root/bindings/go" && GOFLAGS="-buildvcs=false -mod=readonly" go build -o "$work/client-rtt-go" ./bench/client-rtt)

c_raw() { # the chat-bench fallback, in the bench format
  local floor direct
  floor=$("$build/bench/chat-bench" floor --chatd "$chatd" --sync normal | head -n 1)
  direct=$("$build/bench/chat-bench" direct --pairs 1 --window "$window" --messages "$msgs" \
           --chatd "$chatd" --sync normal | head -n 1)
  python3 - "$floor" "$direct" "$window" "$msgs" <<'PY'
import json, sys
f, d = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(json.dumps({"lang": "c-raw", "n": f["send_to_ack_ms"]["n"],
                  "rtt_p50_us": round(f["send_to_ack_ms"]["p50"] * 1000, 1),
                  "rtt_p99_us": round(f["send_to_ack_ms"]["p99"] * 1000, 1),
                  "window": int(sys.argv[3]), "msgs": int(sys.argv[4]),
                  "msgs_per_s": d["acked_per_s"]}, separators=(",", ":")))
PY
}

# --sync normal: the figures are about the clients, not the disk's fsync.
"$chatd" serve --listen 127.0.0.1:0 --data-dir "$work/data" \
  --rate-per-minute 100000000 --sync normal >"$work/out" 2>"$work/log" &
pid=$!
for _ in $(seq 100); do
  grep -q '^listening on' "$work/out" 2>/dev/null && break
  sleep 0.1
done
port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$work/out")
[ -n "$port" ] || { echo "run.sh: chatd did not start" >&2; cat "$work/log" >&2; exit 1; }

c_rtt=${C_RTT:-$build/bench/client-rtt}
benches=("go $work/client-rtt-go")
if [ -x "$c_rtt" ]; then
  benches=("c $c_rtt" "${benches[@]}")
fi
results=$work/results
: >"$results"
for i in $(seq "$runs"); do
  if [ ! -x "$c_rtt" ]; then
    line=$(c_raw)
    echo "run $i $line"
    echo "$line" >>"$results"
  fi
  for b in "${benches[@]}"; do
    lang=${b%% *}
    cmd=${b#* }
    tok=$("$chatd" token --data-dir "$work/data" --user "bench-$lang" --device "d$i")
    line=$($cmd --url "ws://127.0.0.1:$port" --token "$tok" --peer bench-peer \
           --n "$n" --window "$window" --msgs "$msgs" | tail -n 1)
    echo "run $i $line"
    echo "$line" >>"$results"
  done
done
python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
med = {}
for lang in dict.fromkeys(r["lang"] for r in rows):
    rs = [r for r in rows if r["lang"] == lang]
    med[lang] = {k: statistics.median(r[k] for r in rs)
                 for k in ("rtt_p50_us", "rtt_p99_us", "msgs_per_s")}
    print("median " + json.dumps(dict(lang=lang, runs=len(rs), **med[lang]),
                                 separators=(",", ":")))
base = "c" if "c" in med else "c-raw"
c = med[base]
m = med["go"]
print("ratio " + json.dumps({
    "lang": "go", "vs": base,
    "rtt_p50": round(m["rtt_p50_us"] / c["rtt_p50_us"], 2),
    "rtt_p99": round(m["rtt_p99_us"] / c["rtt_p99_us"], 2),
    "msgs_per_s": round(m["msgs_per_s"] / c["msgs_per_s"], 2)},
    separators=(",", ":")))
PY
