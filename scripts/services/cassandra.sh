# Cassandra 5.0, one node or a ring of three, sourced by svc.sh. Jars from
# Maven Central (scripts/engines/cassandra/pom.xml, fetched by maven.sh into
# the cache), run as org.apache.cassandra.service.CassandraDaemon without
# upstream's launcher scripts. Node i binds 127.0.0.i: CQL on PORT, the
# storage (gossip) port on PORT+1; node 1 is the seed. Each node lives in
# $SVC_DIR/node<i> (data, commit log, generated cassandra.yaml, log).
#
# --nodes 3 starts the nodes one after the other (a node may only join a
# ring while no other is joining). --node I acts on node I alone, for
# failure tests: `svc.sh kill cassandra --node 2`, then `start --node 2`.
# JMX stays off (no port); nodetool is not needed by anything here.

cassandra_default_port() { echo 19042; }
cassandra_span() { echo 2; }

cassandra_node_needle() { echo "$SVC_DIR/node$1/cassandra.yaml"; }

# The PID recorded for node i ("-" when it is not running).
cassandra_pid_of() {
  local i=$1 k=1 p
  for p in $PIDS; do
    if [ "$k" -eq "$i" ]; then echo "$p"; return; fi
    k=$((k + 1))
  done
  echo -
}

cassandra_set_pid() {
  local i=$1 new=$2 k=1 p out=()
  for p in $PIDS; do
    if [ "$k" -eq "$i" ]; then out+=("$new"); else out+=("$p"); fi
    k=$((k + 1))
  done
  while [ ${#out[@]} -lt "$i" ]; do
    if [ $((${#out[@]} + 1)) -eq "$i" ]; then out+=("$new"); else out+=(-); fi
  done
  PIDS="${out[*]}"
}

cassandra_start_node() {
  local i=$1 lib=$2 root addr ndir t0 pid rc=0
  root=$(svc_root)
  addr=127.0.0.$i
  ndir="$SVC_DIR/node$i"
  pid=$(cassandra_pid_of "$i")
  if [ "$pid" != - ] && svc_pid_ours "$pid" "$(cassandra_node_needle "$i")"; then
    return 0
  fi
  mkdir -p "$ndir"
  sed -e "s|@ADDR@|$addr|g" -e "s|@PORT@|$PORT|g" \
      -e "s|@STORAGE_PORT@|$((PORT + 1))|g" -e "s|@NODE_DIR@|$ndir|g" \
      -e "s|@RF@|$NODES|g" \
      "$root/scripts/engines/cassandra/cassandra.yaml.in" >"$ndir/cassandra.yaml"
  svc_need_free_port "$addr" "$PORT" "cassandra node $i"
  svc_need_free_port "$addr" "$((PORT + 1))" "cassandra node $i storage"
  local jamm
  jamm=$(ls "$lib"/jamm-*.jar 2>/dev/null | head -n 1)
  [ -n "$jamm" ] || svc_die "cassandra: no jamm jar in $lib"
  t0=$(svc_now_ms)
  # ring_delay_ms, skip_wait_for_gossip_to_settle and
  # superuser_setup_delay_ms cut the start from ~40 s to a few seconds;
  # they only wait for other nodes' gossip, which a fresh local ring
  # exchanges at once.
  pid=$(svc_spawn "$ndir/cassandra.log" java \
          -Xms"$SVC_HEAP" -Xmx"$SVC_HEAP" -Xss256k \
          @"$root/scripts/engines/cassandra/jvm17.args" \
          -javaagent:"$jamm" \
          -Dcassandra.config="file://$ndir/cassandra.yaml" \
          -Dcassandra.storagedir="$ndir" \
          -Dcassandra.logdir="$ndir" \
          -Dlogback.configurationFile="file://$root/scripts/engines/cassandra/logback.xml" \
          -Dcassandra-foreground=yes \
          -Dcassandra.ring_delay_ms=1000 \
          -Dcassandra.skip_wait_for_gossip_to_settle=0 \
          -Dcassandra.superuser_setup_delay_ms=0 \
          -cp "$lib/*" org.apache.cassandra.service.CassandraDaemon)
  svc_wait_port "$addr" "$PORT" "$pid" "$(cassandra_node_needle "$i")" "$TIMEOUT" || rc=$?
  if [ $rc -ne 0 ]; then
    tail -n 30 "$ndir/cassandra.log" >&2
    svc_stop_pid "$pid" "$(cassandra_node_needle "$i")" KILL 5 || true
    cassandra_set_pid "$i" -
    svc_state_save PORT PIDS NODES START_MS
    svc_die "cassandra: node $i did not open CQL on $addr:$PORT (log: $ndir/cassandra.log)"
  fi
  cassandra_set_pid "$i" "$pid"
  local ms=$(( $(svc_now_ms) - t0 ))
  svc_log "cassandra: node $i up on $addr:$PORT in ${ms} ms"
  START_MS="${START_MS:+$START_MS }node$i=$ms"
  svc_state_save PORT PIDS NODES START_MS
}

cassandra_start() {
  local lib i
  lib=$(svc_maven_fetch cassandra)
  NODES=${NODES:-$SVC_NODES}
  case "$NODES" in
    1|3) ;;
    *) svc_die "cassandra: --nodes is 1 or 3" ;;
  esac
  mkdir -p "$SVC_DIR"
  START_MS=""
  if [ -n "$SVC_NODE" ]; then
    [ "$SVC_NODE" -ge 1 ] && [ "$SVC_NODE" -le "$NODES" ] ||
      svc_die "cassandra: --node must be 1..$NODES"
    cassandra_start_node "$SVC_NODE" "$lib"
    return
  fi
  for i in $(seq 1 "$NODES"); do
    cassandra_start_node "$i" "$lib"
  done
}

cassandra_stop() {
  local sig=${1:-TERM} i pid
  local which
  if [ -n "$SVC_NODE" ]; then which=$SVC_NODE; else which=$(seq 1 "$NODES"); fi
  for i in $which; do
    pid=$(cassandra_pid_of "$i")
    if [ "$pid" != - ]; then
      svc_stop_pid "$pid" "$(cassandra_node_needle "$i")" "$sig" "$TIMEOUT" ||
        svc_die "cassandra: node $i (pid $pid) would not stop"
    fi
    cassandra_set_pid "$i" -
  done
  svc_state_save PORT PIDS NODES START_MS
}

# Node i's PID if it runs, for status.
cassandra_live_pids() {
  local i pid
  for i in $(seq 1 "$NODES"); do
    pid=$(cassandra_pid_of "$i")
    if [ "$pid" != - ] && svc_pid_ours "$pid" "$(cassandra_node_needle "$i")"; then
      echo "node$i $pid"
    else
      echo "node$i -"
    fi
  done
}

cassandra_env() {
  local i hosts=""
  for i in $(seq 1 "$NODES"); do
    hosts="${hosts:+$hosts,}127.0.0.$i:$PORT"
  done
  svc_print_env "CHAT_CQL_HOSTS=$hosts" "CHAT_CQL_RF=$NODES"
}
