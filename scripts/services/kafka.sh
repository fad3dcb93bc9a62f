# Kafka 3.9 (KRaft, one node that is broker and controller), sourced by
# svc.sh. Jars from Maven Central (scripts/engines/kafka/pom.xml, fetched
# by maven.sh into the cache). The broker listens on 127.0.0.1:PORT, the
# controller on PORT+1; logs and metadata in $SVC_DIR. The storage is
# formatted once (kafka.tools.StorageTool) and kept across restarts, so a
# restart keeps topics, messages and committed offsets. stop is SIGTERM
# (a controlled shutdown), kill is SIGKILL.

kafka_default_port() { echo 19092; }
kafka_span() { echo 2; }

kafka_start() {
  local lib root
  lib=$(svc_maven_fetch kafka)
  root=$(svc_root)
  mkdir -p "$SVC_DIR/log" "$SVC_DIR/meta"
  local cport=$((PORT + 1))
  sed -e "s|@PORT@|$PORT|g" -e "s|@CONTROLLER_PORT@|$cport|g" \
      -e "s|@DATA_DIR@|$SVC_DIR|g" -e "s|@PARTITIONS@|$SVC_PARTITIONS|g" \
      "$root/scripts/engines/kafka/server.properties.in" >"$SVC_DIR/server.properties"
  local java_common=(-Dlog4j.configuration="file:$root/scripts/engines/kafka/log4j.properties"
                     -Dkafka.logs.dir="$SVC_DIR" -cp "$lib/*")
  local t0
  t0=$(svc_now_ms)
  if [ ! -f "$SVC_DIR/meta/meta.properties" ]; then
    local id
    id=$(java "${java_common[@]}" kafka.tools.StorageTool random-uuid 2>>"$SVC_DIR/format.log") ||
      svc_die "kafka: StorageTool random-uuid failed (log: $SVC_DIR/format.log)"
    java "${java_common[@]}" kafka.tools.StorageTool format -t "$id" \
      -c "$SVC_DIR/server.properties" >>"$SVC_DIR/format.log" 2>&1 ||
      { tail -n 20 "$SVC_DIR/format.log" >&2; svc_die "kafka: storage format failed"; }
  fi
  svc_need_free_port 127.0.0.1 "$PORT" kafka
  svc_need_free_port 127.0.0.1 "$cport" "kafka controller"
  local pid rc=0
  pid=$(svc_spawn "$SVC_DIR/kafka.log" java -Xms"$SVC_HEAP" -Xmx"$SVC_HEAP" \
          -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
          -Djava.awt.headless=true "${java_common[@]}" \
          kafka.Kafka "$SVC_DIR/server.properties")
  svc_wait_port 127.0.0.1 "$PORT" "$pid" "$SVC_DIR" "$TIMEOUT" || rc=$?
  if [ $rc -eq 0 ]; then
    # The listener opens a moment before the broker has registered with
    # the controller; a metadata request that lists the broker is ready.
    if command -v kcat >/dev/null 2>&1; then
      local deadline=$(( $(date +%s) + TIMEOUT ))
      until kcat -b "127.0.0.1:$PORT" -L -m 2 2>/dev/null | grep -q '1 brokers:'; do
        svc_pid_ours "$pid" "$SVC_DIR" || { rc=1; break; }
        [ "$(date +%s)" -lt "$deadline" ] || { rc=2; break; }
        sleep 0.2
      done
    fi
  fi
  if [ $rc -ne 0 ]; then
    tail -n 30 "$SVC_DIR/kafka.log" >&2
    svc_stop_pid "$pid" "$SVC_DIR" KILL 5 || true
    svc_die "kafka: did not start on 127.0.0.1:$PORT (log: $SVC_DIR/kafka.log)"
  fi
  START_MS=$(( $(svc_now_ms) - t0 ))
  PIDS=$pid
  svc_state_save PORT PIDS START_MS
}

kafka_stop() {
  local sig=${1:-TERM} pid
  for pid in $PIDS; do
    svc_stop_pid "$pid" "$SVC_DIR" "$sig" "$TIMEOUT" ||
      svc_die "kafka: pid $pid would not stop"
  done
}

kafka_env() {
  svc_print_env "CHAT_KAFKA_BROKERS=127.0.0.1:$PORT"
}
