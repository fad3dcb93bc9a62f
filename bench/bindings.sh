#!/usr/bin/env bash
# Binding overhead: the C client SDK (bench/client_rtt.c) and each
# language binding's client measure the same two things against one chatd,
# interleaved (C, Python, ..., C, Python, ...) so that machine noise hits
# every one alike:
#   rtt       N sends one after the other, each sent when the previous one
#             was acked: send -> ack round trip, p50 and p99
#   msgs/s    MSGS sends keeping WINDOW unacked: acked messages per second
#
# Usage: bench/bindings.sh [--build-dir DIR] [--runs 3] [--n 1000]
#                          [--window 32] [--msgs 5000]
# Environment: PYTHON (an interpreter that imports libchat; default the
# bindings-python suite's venv under the build dir, else python3).
#
# Output format (stable; every binding's bench speaks it):
#   A bench is a command taking --url URL --token TOKEN --peer USER --n N
#   --window W --msgs M, printing ONE JSON line on stdout:
#     {"lang":"c","n":1000,"rtt_p50_us":412.3,"rtt_p99_us":980.1,
#      "window":32,"msgs":5000,"msgs_per_s":8123}
#   This script prints, in order:
#     run <i> <that JSON line>                        for every run of every bench
#     median {"lang":L,"runs":R,"rtt_p50_us":..,"rtt_p99_us":..,"msgs_per_s":..}
#                                                     per bench, medians over runs
#     ratio {"lang":L,"vs":"c","rtt_p50":..,"rtt_p99":..,"msgs_per_s":..}
#                                                     per binding: its median / C's
#   (a ratio above 1 is slower for the rtt figures and faster for msgs_per_s)
# Adding a binding: add one line "LANG COMMAND..." to the benches list
# below; the script appends the arguments above.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=build runs=3 n=1000 window=32 msgs=5000
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) build=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --n) n=$2; shift 2 ;;
    --window) window=$2; shift 2 ;;
    --msgs) msgs=$2; shift 2 ;;
    -h|--help) sed -n '2,32p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bindings.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$build" in /*) ;; *) build=$root/$build ;; esac
chatd=$build/chatd/chatd
[ -x "$chatd" ] && [ -x "$build/bench/client-rtt" ] ||
  { echo "bindings.sh: build $build first (chatd, bench/client-rtt)" >&2; exit 1; }
python=${PYTHON:-}
if [ -z "$python" ]; then
  python=$build/bindings-python/venv/bin/python
  [ -x "$python" ] || python=python3
fi

benches=(
  "c $build/bench/client-rtt"
  "python $python $root/bench/client_rtt.py"
)

work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
# --sync normal: the figures are about the clients, not the disk's fsync.
"$chatd" serve --listen 127.0.0.1:0 --data-dir "$work/data" \
  --rate-per-minute 100000000 --sync normal >"$work/out" 2>"$work/log" &
pid=$!
for _ in $(seq 100); do
  grep -q '^listening on' "$work/out" 2>/dev/null && break
  sleep 0.1
done
port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$work/out")
[ -n "$port" ] || { echo "bindings.sh: chatd did not start" >&2; cat "$work/log" >&2; exit 1; }

results=$work/results
: >"$results"
for i in $(seq "$runs"); do
  for b in "${benches[@]}"; do
    lang=${b%% *}
    cmd=${b#* }
    tok=$("$chatd" token --data-dir "$work/data" --user "bench-$lang" --device "d$i")
    # shellcheck disable=SC2086  # the command is words
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
c = med.get("c")
for lang, m in med.items():
    if lang == "c" or not c:
        continue
    print("ratio " + json.dumps({
        "lang": lang, "vs": "c",
        "rtt_p50": round(m["rtt_p50_us"] / c["rtt_p50_us"], 2),
        "rtt_p99": round(m["rtt_p99_us"] / c["rtt_p99_us"], 2),
        "msgs_per_s": round(m["msgs_per_s"] / c["msgs_per_s"], 2)},
        separators=(",", ":")))
PY
