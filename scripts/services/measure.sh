#!/usr/bin/env bash
# Measure each engine's start time and memory on this machine: for every
# engine given (default: all five),
# three fresh starts (empty data directory) and three restarts (data kept),
# each followed by a stop. Prints the median and the three runs, and the
# memory (PSS of the process tree, MiB) right after each start, as used in
# docs/services.md. Runs on free ports under a temporary directory.
#
# Usage: scripts/services/measure.sh [--nodes 1|3] [ENGINE...]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
svc="$here/svc.sh"
nodes=1
if [ "${1:-}" = --nodes ]; then nodes=$2; shift 2; fi
engines=("$@")
[ ${#engines[@]} -gt 0 ] || engines=(redis postgres haproxy kafka cassandra)
work=$(mktemp -d /tmp/libchat-measure.XXXXXX)
trap '"$svc" stop "${cur:-redis}" --dir "$work/${cur:-none}" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

median() { printf '%s\n' "$@" | sort -n | sed -n 2p; }

# Milliseconds of the last start, summed over Cassandra's nodes.
start_ms() {
  "$svc" status "$1" --dir "$work/$1" 2>/dev/null |
    sed -n 's/.*last start took //p' | tr ' ' '\n' |
    sed 's/^node[0-9]*=//; s/ ms$//' | awk '{ s += $1 } END { print s + 0 }'
}

mem_mib() {
  "$svc" status "$1" --dir "$work/$1" 2>/dev/null |
    sed -n 's/.*, \([0-9]*\) MiB.*/\1/p' | awk '{ s += $1 } END { print s + 0 }'
}

for e in "${engines[@]}"; do
  cur=$e
  extra=()
  case "$e" in
    haproxy) extra=(--backends 127.0.0.1:9,127.0.0.1:10,127.0.0.1:11 --drain 1s) ;;
    cassandra) extra=(--nodes "$nodes") ;;
  esac
  for kind in fresh restart; do
    times=() mems=()
    for i in 1 2 3; do
      f=()
      [ "$kind" = fresh ] && f=(--fresh)
      "$svc" start "$e" --dir "$work/$e" --port auto "${f[@]}" "${extra[@]}" >/dev/null
      times+=("$(start_ms "$e")")
      mems+=("$(mem_mib "$e")")
      "$svc" stop "$e" --dir "$work/$e" >/dev/null 2>&1
    done
    printf '%-10s %-8s start %6s ms (runs %s)   memory %5s MiB (runs %s)\n' \
      "$e" "$kind" "$(median "${times[@]}")" "${times[*]}" \
      "$(median "${mems[@]}")" "${mems[*]}"
  done
  rm -rf "${work:?}/$e"
done
