#!/usr/bin/env bash
# The Java binding's send -> ack round trip and msgs/s against one chatd,
# side by side with the C client SDK, interleaved (C, Java/JDK,
# Java/OkHttp, C, ...) so machine noise hits each alike. Same format as
# bench/bindings.sh (the bench of every binding):
#   run <i> {"lang":..,"n":..,"rtt_p50_us":..,"rtt_p99_us":..,"window":..,"msgs":..,"msgs_per_s":..}
#   median {"lang":L,"runs":R,"rtt_p50_us":..,"rtt_p99_us":..,"msgs_per_s":..}
#   ratio {"lang":L,"vs":"c","rtt_p50":..,"rtt_p99":..,"msgs_per_s":..}
# (a ratio above 1 is slower for the rtt figures, faster for msgs_per_s).
#
# Usage: bindings/java/bench/run.sh [--build-dir DIR] [--runs 3] [--n 1000]
#          [--window 32] [--msgs 5000] [--c-bench PATH]
#   --c-bench  the C client's bench (bench/client_rtt.c; default
#              DIR/bench/client-rtt when built); without it, Java only.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
build=$root/build runs=3 n=1000 window=32 msgs=5000 cbench=""
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) build=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --n) n=$2; shift 2 ;;
    --window) window=$2; shift 2 ;;
    --msgs) msgs=$2; shift 2 ;;
    --c-bench) cbench=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$build" in /*) ;; *) build=$(pwd)/$build ;; esac
[ -n "$cbench" ] || { [ -x "$build/bench/client-rtt" ] && cbench=$build/bench/client-rtt; } || true
chatd=$build/chatd/chatd
jni=$("$here/../scripts/build-native.sh" --build-dir "$build")
mvn_out=$build/java-maven
work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
mvn -B -q -Dstyle.color=never -f "$here/../pom.xml" compile dependency:build-classpath \
  -DbuildDir="$mvn_out" -Dlibchat.native.skip=true \
  -Dmdep.outputFile="$work/cp" -Dmdep.includeScope=compile </dev/null >/dev/null 2>&1
cp="$mvn_out/classes:$(cat "$work/cp")"

"$chatd" serve --listen 127.0.0.1:0 --data-dir "$work/data" \
  --rate-per-minute 100000000 --sync normal >"$work/out" 2>"$work/log" &
pid=$!
for _ in $(seq 100); do
  grep -q '^listening on' "$work/out" 2>/dev/null && break
  sleep 0.1
done
port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$work/out")
[ -n "$port" ] || { echo "run.sh: chatd did not start" >&2; cat "$work/log" >&2; exit 1; }

benches=()
[ -n "$cbench" ] && benches+=("c $cbench")
java_cmd="java -Djava.library.path=$jni -cp $cp $here/ClientRtt.java"
benches+=("java-jdk $java_cmd --transport jdk" "java-okhttp $java_cmd --transport okhttp")
: >"$work/results"
for i in $(seq "$runs"); do
  for b in "${benches[@]}"; do
    lang=${b%% *}
    user="bench-$lang-$i"
    tok=$("$chatd" token --data-dir "$work/data" --user "$user" --device d1)
    # shellcheck disable=SC2086  # the command is a word list
    line=$(${b#* } --url "ws://127.0.0.1:$port" --token "$tok" --peer "peer-$i" \
             --n "$n" --window "$window" --msgs "$msgs" </dev/null)
    echo "run $i $line"
    echo "$line" >>"$work/results"
  done
done
python3 - "$work/results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
med = {}
for lang in dict.fromkeys(r["lang"] for r in rows):
    rs = [r for r in rows if r["lang"] == lang]
    m = {k: statistics.median(r[k] for r in rs) for k in ("rtt_p50_us", "rtt_p99_us", "msgs_per_s")}
    med[lang] = m
    print("median " + json.dumps(dict(lang=lang, runs=len(rs), **m)))
if "c" in med:
    c = med["c"]
    for lang, m in med.items():
        if lang != "c":
            print("ratio " + json.dumps(dict(lang=lang, vs="c",
                rtt_p50=round(m["rtt_p50_us"] / c["rtt_p50_us"], 2),
                rtt_p99=round(m["rtt_p99_us"] / c["rtt_p99_us"], 2),
                msgs_per_s=round(m["msgs_per_s"] / c["msgs_per_s"], 2))))
PY
