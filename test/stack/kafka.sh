#!/usr/bin/env bash
# Apache Kafka 4.x, one node in KRaft mode (broker + controller in one JVM), from Maven Central jars.
#   test/stack/kafka.sh install              resolve kafka_2.13 (+ tools, log4j2) into $FHIRWALL_CACHE/kafka-<ver>/libs
#   test/stack/kafka.sh start                install if needed, format storage once, start, wait until a
#                                            CreateTopics round trip works, ensure topic fhirwall.audit (3 partitions)
#   test/stack/kafka.sh stop                 controlled shutdown (TERM to the process group)
#   test/stack/kafka.sh status               exit 0 when running and accepting on $KAFKA_PORT
#   test/stack/kafka.sh topic NAME [PARTS]   create a topic (default 1 partition) unless it exists
#                                            (every topic made here takes messages of up to 18 MiB)
#   test/stack/kafka.sh size-topic [NAME]    max.message.bytes of an existing topic (default fhirwall.audit)
#                                            set to 18 MiB on the running broker
# Broker on 127.0.0.1:$KAFKA_PORT (PLAINTEXT), controller on 127.0.0.1:$KAFKA_CONTROLLER_PORT.
# Data in $FHIRWALL_STATE/kafka (kept across stop/start; delete that folder for a clean cluster).
# Env: KAFKA_HEAP_OPTS (default -Xms128m -Xmx512m), KAFKA_JAVA (a java >= 17 to use).
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NAME=kafka
HERE=$FHIRWALL_ROOT/test/stack/kafka
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$HERE/pom.xml")
[ -n "$KAFKA_VERSION" ] || die "no <kafka.version> in $HERE/pom.xml"
KAFKA_HOME=$FHIRWALL_CACHE/kafka-$KAFKA_VERSION
LIBS=$KAFKA_HOME/libs
STATE=$FHIRWALL_STATE/kafka
DATA=$STATE/data
AUDIT_TOPIC=fhirwall.audit
AUDIT_PARTITIONS=3
# The largest message the audit topic takes: an audit entry is at most 16 MiB (audit.MaxEntryBytes), the
# shipper's produce batches at most 17 MiB; Kafka's default (about 1 MB) would stop shipping at the first
# record that passes it. Must equal kafka.MaxMessageBytes (adapters/auditsink/kafka) and message.max.bytes /
# replica.fetch.max.bytes in server.properties.in.
MAX_MESSAGE_BYTES=18874368

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

java_major() { "$1" -version 2>&1 | sed -n '1s/.*version "\([0-9]*\).*/\1/p'; }

# a java >= 17 (Kafka 4 brokers need 17+): $KAFKA_JAVA, $JAVA_HOME, PATH, else the newest JDK 21+
kafka_java() {
  local j m
  for j in "${KAFKA_JAVA:-}" "${JAVA_HOME:+$JAVA_HOME/bin/java}" "$(command -v java || true)"; do
    [ -n "$j" ] && [ -x "$j" ] || continue
    m=$(java_major "$j"); [ -n "$m" ] && [ "$m" -ge 17 ] && { echo "$j"; return 0; }
  done
  j=$(jdk21) && { echo "$j/bin/java"; return 0; }
  die "Kafka needs Java 17 or newer (none found; apt-get install openjdk-17-jre-headless)"
}

install() {
  local want
  want=$(sha256sum "$HERE/pom.xml" | cut -d' ' -f1)
  if [ -f "$KAFKA_HOME/.installed" ] && [ "$(cat "$KAFKA_HOME/.installed")" = "$want" ] && [ -d "$LIBS" ]; then
    return 0
  fi
  command -v mvn >/dev/null || die "mvn not found (apt-get install maven)"
  log "resolving org.apache.kafka:kafka_2.13:$KAFKA_VERSION from Maven Central into $LIBS"
  mkdir -p "$KAFKA_HOME"
  rm -rf "$LIBS.part"
  local out=$FHIRWALL_STATE/log/kafka-install.log
  if ! mvn -B -q -f "$HERE/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$LIBS.part" >"$out" 2>&1; then
    tail -30 "$out" >&2; die "maven could not resolve the Kafka jars (log: $out)"
  fi
  [ -f "$LIBS.part/kafka_2.13-$KAFKA_VERSION.jar" ] || die "kafka_2.13-$KAFKA_VERSION.jar missing after resolve"
  rm -rf "$LIBS" "$KAFKA_HOME/cds"
  mv "$LIBS.part" "$LIBS"
  echo "$want" >"$KAFKA_HOME/.installed"
  log "installed $(ls "$LIBS" | wc -l) jars ($(du -sh "$LIBS" | cut -f1))"
}

# AppCDS (class-data sharing): a JVM of a kind (broker, tool) with no archive yet writes one when it
# exits to NAME-<java version>.jsa.<pid>.new; the script renames it to NAME-<java version>.jsa once that
# JVM has exited cleanly, and later JVMs map it: warm broker starts take about a third of the time.
# The JVM ignores an archive that does not match its java or classpath (-Xshare:auto). KAFKA_CDS=0: off.
java_version() { "$1" -version 2>&1 | sed -n '1s/.*version "\([^"]*\)".*/\1/p'; }
cds_jsa() { echo "$KAFKA_HOME/cds/$1-$(java_version "$2").jsa"; }
# cds_opts NAME JAVA WRITE_TO: flags to map the archive, or to write one to WRITE_TO at exit
cds_opts() {
  [ "${KAFKA_CDS:-1}" = 1 ] || return 0
  local jsa; jsa=$(cds_jsa "$1" "$2")
  mkdir -p "$KAFKA_HOME/cds"
  if [ -s "$jsa" ]; then echo "-XX:SharedArchiveFile=$jsa -Xlog:cds=off -Xlog:cds+dynamic=off"
  else echo "-XX:ArchiveClassesAtExit=$3 -Xlog:cds=off -Xlog:cds+dynamic=off"; fi
}
# cds_keep NAME JAVA FILE: adopt a freshly written archive
cds_keep() { [ -s "$3" ] && mv -f "$3" "$(cds_jsa "$1" "$2")"; rm -f "$3"; }

# run a Kafka tool class on the resolved classpath, small quiet JVM
kafka_tool() {
  local java rc=0 new=$KAFKA_HOME/cds/tool.$$.new
  java=$(kafka_java)
  # shellcheck disable=SC2046  # cds_opts is a list of flags
  "$java" $(cds_opts tool "$java" "$new") -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Djava.awt.headless=true -Dlog4j2.configurationFile="$HERE/log4j2.properties" \
    -Dfhirwall.kafka.loglevel=WARN -cp "$LIBS/*" "$@" || rc=$?
  cds_keep tool "$java" "$new"
  return "$rc"
}

# topic NAME PARTITIONS: create unless it exists (replication factor 1); needs the broker up
# (drops TopicCommand's warning about '.' and '_' in names, which every fhirwall.* topic triggers)
create_topic() {
  local out rc=0
  out=$(kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" \
    --command-config "$HERE/admin.properties" \
    --create --if-not-exists --topic "$1" --partitions "$2" --replication-factor 1 \
    --config max.message.bytes=$MAX_MESSAGE_BYTES 2>&1) || rc=$?
  printf '%s\n' "$out" | grep -v -e '^WARNING: Due to limitations in metric names' -e '^$' || true
  return "$rc"
}

# size_topic NAME: max.message.bytes of an existing topic (created before the audit topic was sized, as on a
# long-lived stack) set to MAX_MESSAGE_BYTES; idempotent. The audit topic also gets flush.messages=1: this
# broker is the only replica, so an acknowledgement must mean the record is on its disk (the spool deletes
# what Kafka acknowledged; a machine that restarted with acked records only in the page cache once left a gap
# in a chain). With three brokers, replication 3 and min.insync.replicas 2 are the production answer instead.
size_topic() {
  local cfg="max.message.bytes=$MAX_MESSAGE_BYTES"
  [ "$1" = "$AUDIT_TOPIC" ] && cfg="$cfg,flush.messages=1"
  kafka_tool kafka.admin.ConfigCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" \
    --command-config "$HERE/admin.properties" --alter --entity-type topics --entity-name "$1" \
    --add-config "$cfg" >/dev/null
}

render_config() {
  mkdir -p "$DATA" "$STATE/logs"
  sed -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" -e "s|@KAFKA_CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
      -e "s|@DATA_DIR@|$DATA|g" "$HERE/server.properties.in" >"$STATE/server.properties"
}

# A KRaft cluster id: 16 random bytes in URL-safe base64 without padding (22 characters). Never one that
# starts with '-', which StorageTool would read as an option (1 id in 64); Kafka's own Uuid.randomUuid
# draws again for the same reason.
new_cluster_id() {
  local id
  while :; do
    id=$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
    [ "${id:0:1}" != "-" ] && break
  done
  printf '%s\n' "$id"
}

# format the storage once (meta.properties marks a formatted log dir)
format_storage() {
  [ -f "$DATA/meta.properties" ] && return 0
  local id
  id=$(new_cluster_id)
  log "formatting $DATA (cluster id $id)"
  local out=$FHIRWALL_STATE/log/kafka-format.log
  # KAFKA_CDS=0: a one-off JVM; its classes would make a poor archive for TopicCommand
  KAFKA_CDS=0 kafka_tool kafka.tools.StorageTool format -t "$id" -c "$STATE/server.properties" \
    --ignore-formatted >"$out" 2>&1 || { cat "$out" >&2; die "storage format failed"; }
}

# readiness: the broker accepts TCP (Kafka 4 enables the 9092 acceptor only once the broker is registered
# and unfenced, right before "Kafka Server started"), then a real CreateTopics round trip through the
# Admin client, retried (it fails with "0 broker(s) are registered" before registration)
wait_ready() {
  local deadline=$((SECONDS + 120)) out
  wait_port "$NAME" "$KAFKA_PORT" 120 || return 1
  while :; do
    if out=$(create_topic "$AUDIT_TOPIC" "$AUDIT_PARTITIONS" 2>&1); then
      [ -n "$out" ] && log "$out"
      size_topic "$AUDIT_TOPIC" || { log "could not set max.message.bytes of $AUDIT_TOPIC"; return 1; }
      return 0
    fi
    if ! is_running "$NAME"; then
      log "kafka exited; last lines of $(logfile "$NAME"):"; tail -40 "$(logfile "$NAME")" >&2; return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "kafka not ready after 120s; last admin error:"; printf '%s\n' "$out" | tail -5 >&2
      tail -40 "$(logfile "$NAME")" >&2; return 1
    fi
    sleep 1
  done
}

start() {
  local t0=$SECONDS p
  if is_running "$NAME"; then
    if port_open "$KAFKA_PORT"; then log "already running (pid $(cat "$(pidfile "$NAME")"))"; return 0; fi
    log "running but not listening yet; waiting"
  else
    for p in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
      port_open "$p" && die "port $p on 127.0.0.1 is taken by another process"
    done
    install
    render_config
    format_storage
    local java heap
    java=$(kafka_java)
    heap=${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}
    rm -f "$KAFKA_HOME/cds/broker.new"
    # shellcheck disable=SC2086,SC2046  # heap and cds_opts are lists of flags
    start_bg "$NAME" "$java" $heap $(cds_opts broker "$java" "$KAFKA_HOME/cds/broker.new") -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
      -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
      -Dkafka.logs.dir="$STATE/logs" -Dlog4j2.configurationFile="$HERE/log4j2.properties" \
      -Dfhirwall.kafka.loglevel=INFO \
      -cp "$LIBS/*" kafka.Kafka "$STATE/server.properties"
    log "started kafka $KAFKA_VERSION (pid $(cat "$(pidfile "$NAME")")), waiting for 127.0.0.1:$KAFKA_PORT"
  fi
  wait_ready || { stop_bg "$NAME"; die "kafka failed to start"; }
  log "kafka ready on 127.0.0.1:$KAFKA_PORT, topic $AUDIT_TOPIC ok ($((SECONDS - t0))s)"
}

stop() {
  is_running "$NAME" || { stop_bg "$NAME"; return 0; }
  log "stopping kafka (pid $(cat "$(pidfile "$NAME")"))"
  local t0=$SECONDS
  stop_bg "$NAME"
  # a broker that wrote a class-data archive at exit: keep it unless stop_bg had to KILL (after 30 s)
  if [ -s "$KAFKA_HOME/cds/broker.new" ]; then
    if [ $((SECONDS - t0)) -lt 29 ]; then cds_keep broker "$(kafka_java)" "$KAFKA_HOME/cds/broker.new"
    else rm -f "$KAFKA_HOME/cds/broker.new"; fi
  fi
}

status() {
  if is_running "$NAME" && port_open "$KAFKA_PORT"; then
    echo "kafka $KAFKA_VERSION running (pid $(cat "$(pidfile "$NAME")")) on 127.0.0.1:$KAFKA_PORT"
    return 0
  fi
  if is_running "$NAME"; then echo "kafka starting (pid $(cat "$(pidfile "$NAME")")), not listening yet"; return 1; fi
  echo "kafka stopped"; return 3
}

topic() {
  local name=${1:-} parts=${2:-1}
  [ -n "$name" ] || die "usage: $0 topic NAME [PARTITIONS]"
  [[ $parts =~ ^[1-9][0-9]*$ ]] || die "PARTITIONS must be a positive integer"
  is_running "$NAME" && port_open "$KAFKA_PORT" || die "kafka is not running (test/stack/kafka.sh start)"
  create_topic "$name" "$parts"
}

# size-topic [NAME]: set max.message.bytes (and the audit topic's flush.messages=1) of a running broker's topic (default the audit topic), without a
# restart; start does it for the audit topic anyway
size() {
  local name=${1:-$AUDIT_TOPIC}
  is_running "$NAME" && port_open "$KAFKA_PORT" || die "kafka is not running (test/stack/kafka.sh start)"
  size_topic "$name" && log "topic $name: max.message.bytes=$MAX_MESSAGE_BYTES"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  topic) shift; topic "$@" ;;
  size-topic) shift; size "$@" ;;
  *) echo "usage: $0 {install|start|stop|status|topic NAME [PARTITIONS]|size-topic [NAME]}" >&2; exit 2 ;;
esac
