#!/usr/bin/env bash
# Kafka smoke check with kcat (librdkafka) against a running broker:
#   1. an idempotent producer (enable.idempotence, acks=all) writes 200
#      keyed messages to a new topic with 4 partitions;
#   2. a plain consumer reads the topic back: every message once, and each
#      key's messages in the order they were produced (one key stays in one
#      partition, as one conversation will);
#   3. a consumer group reads the 200 and commits its offsets; after 20 more
#      are produced, the same group reads exactly those 20, so committed
#      offsets survive the consumer's exit.
# Usage: kafka-smoke.sh [BROKERS]   (default: $CHAT_KAFKA_BROKERS)
# Exit 0 when every check holds; prints one line per check.
set -euo pipefail

brokers=${1:-${CHAT_KAFKA_BROKERS:-}}
[ -n "$brokers" ] || { echo "kafka-smoke: no brokers (arg or CHAT_KAFKA_BROKERS)" >&2; exit 2; }
command -v kcat >/dev/null 2>&1 || { echo "kafka-smoke: no kcat (apt-get install kcat)" >&2; exit 2; }

topic="smoke.$(date +%s).$$"
group="smoke-group.$$"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail=0
check() {
  if [ "$1" = 0 ]; then echo "ok: $2"; else echo "FAILED: $2"; fail=1; fi
}

produce() { # first last
  local i
  for i in $(seq "$1" "$2"); do
    printf 'conv%d:%d\n' $((i % 4)) "$i"
  done | kcat -P -b "$brokers" -t "$topic" -K: -p -1 \
           -X enable.idempotence=true -X acks=all -X linger.ms=5 \
           -X topic.partitioner=murmur2_random
}

# Create the topic through auto-creation with a first message, then wait
# for its metadata, so the produce below sees all partitions.
produce 1 200
kcat -C -b "$brokers" -t "$topic" -o beginning -e -q -f '%k %s %p\n' >"$work/all" 2>"$work/err" || true
n=$(wc -l <"$work/all")
check $([ "$n" -eq 200 ] && echo 0 || echo 1) "plain consumer read $n of 200 messages"
dups=$(awk '{print $2}' "$work/all" | sort | uniq -d | wc -l)
check $([ "$dups" -eq 0 ] && echo 0 || echo 1) "no message twice ($dups duplicated)"
# Per key: values increase in read order, and the key sits in one partition.
order=$(awk '{ if (($1 in last) && $2 <= last[$1]) bad++; last[$1] = $2;
               if (($1 in part) && part[$1] != $3) moved++; part[$1] = $3 }
             END { print bad + moved + 0 }' "$work/all")
check $([ "$order" -eq 0 ] && echo 0 || echo 1) "each key in order and in one partition ($order violations)"
parts=$(awk '{print $3}' "$work/all" | sort -u | wc -l)
echo "    (the 4 keys landed in $parts partition(s))"

kcat -C -b "$brokers" -G "$group" -c 200 -q -f '%s\n' \
  -X auto.offset.reset=earliest "$topic" >"$work/g1" 2>"$work/err1" || true
n1=$(wc -l <"$work/g1")
check $([ "$n1" -eq 200 ] && echo 0 || echo 1) "group consumer read $n1 of 200"
produce 201 220
kcat -C -b "$brokers" -G "$group" -c 20 -q -f '%s\n' \
  -X auto.offset.reset=earliest "$topic" >"$work/g2" 2>"$work/err2" || true
n2=$(wc -l <"$work/g2")
first=$(sort -n "$work/g2" | head -n 1)
check $([ "$n2" -eq 20 ] && [ "${first:-0}" -ge 201 ] && echo 0 || echo 1) \
  "group resumed from its committed offsets ($n2 read, lowest ${first:-none}; want 20 from 201)"
exit $fail
