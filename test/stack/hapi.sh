#!/usr/bin/env bash
# HAPI FHIR JPA server (R4, H2) for the fhirwall test stack: our own Spring Boot app in test/stack/hapi.
#   hapi.sh install   build the jar into $FHIRWALL_STATE/build/hapi (skipped while newer than the sources)
#   hapi.sh start     install if needed, start on 127.0.0.1:$HAPI_PORT, wait for /fhir/metadata
#   hapi.sh stop      stop it (idempotent)
#   hapi.sh status    exit 0 when running and healthy
#   hapi.sh reset     stop and delete the database (next start is empty)
# Environment:
#   HAPI_DB=file|mem       file (default): H2 database in $FHIRWALL_STATE/hapi/h2, kept across restarts;
#                          mem: in-memory, empty at every start
#   HAPI_SERVER_ADDRESS    fixed base URL for links (default: from the request and X-Forwarded-*)
#   HAPI_JAVA              java binary (default: java on PATH, JDK 17)
#   HAPI_JAVA_OPTS         JVM options (default below)
#   HAPI_START_TIMEOUT     seconds to wait for health (default 300)
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NAME=hapi
SRC_DIR=$FHIRWALL_ROOT/test/stack/hapi
BUILD_DIR=$FHIRWALL_STATE/build/hapi
JAR=$BUILD_DIR/fhirwall-hapi.jar
DATA_DIR=$FHIRWALL_STATE/hapi
BASE=http://127.0.0.1:$HAPI_PORT/fhir
HEALTH_URL=$BASE/metadata
HAPI_JAVA=${HAPI_JAVA:-java}
# C1 only and the serial collector: faster start on 2 cores; peak speed does not matter for tests.
HAPI_JAVA_OPTS=${HAPI_JAVA_OPTS:--Xmx1g -XX:TieredStopAtLevel=1 -XX:+UseSerialGC}
HAPI_START_TIMEOUT=${HAPI_START_TIMEOUT:-300}

healthy() { curl -fsS -o /dev/null --max-time 5 "$HEALTH_URL" 2>/dev/null; }

# the jar is up to date when it exists and no source file is newer
built() {
  [ -s "$JAR" ] || return 1
  [ -z "$(find "$SRC_DIR" -path "$SRC_DIR/target" -prune -o -type f -newer "$JAR" -print -quit)" ]
}

install() {
  if built; then log "jar up to date: $JAR"; return 0; fi
  # the running server reads classes from the jar lazily: never rewrite it underneath
  is_running "$NAME" && die "HAPI is running; run '$0 stop' before rebuilding"
  command -v mvn >/dev/null || die "mvn not found (Maven >= 3.8.3 needed)"
  log "building $JAR (the first build downloads ~300 MB into ~/.m2)"
  mkdir -p "$BUILD_DIR"
  local blog; blog=$(logfile hapi-build)
  if ! mvn -B -Dstyle.color=never -f "$SRC_DIR/pom.xml" package -Dfhirwall.build.dir="$BUILD_DIR" >"$blog" 2>&1; then
    log "maven build failed; last lines of $blog:"; tail -40 "$blog" >&2; exit 1
  fi
  [ -s "$JAR" ] || die "build produced no $JAR"
  touch "$JAR"
}

start() {
  if is_running "$NAME"; then
    if healthy; then log "already running (pid $(cat "$(pidfile "$NAME")")) at $BASE"; return 0; fi
    log "running but not healthy yet; waiting"
    wait_http "$NAME" "$HEALTH_URL" "$HAPI_START_TIMEOUT"
    return
  fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$HAPI_PORT") 2>/dev/null; then
    die "port $HAPI_PORT is taken by another process (not started by hapi.sh)"
  fi
  install
  local db_url
  case "${HAPI_DB:-file}" in
    file) mkdir -p "$DATA_DIR/h2"; db_url="jdbc:h2:file:$DATA_DIR/h2/fhirwall" ;;
    mem) db_url="jdbc:h2:mem:fhirwall;DB_CLOSE_DELAY=-1" ;;
    *) die "HAPI_DB must be file or mem" ;;
  esac
  mkdir -p "$DATA_DIR"
  log "starting HAPI FHIR on $BASE (log $(logfile "$NAME"))"
  local t0=$SECONDS
  # shellcheck disable=SC2086 # HAPI_JAVA_OPTS is a list of options
  (cd "$DATA_DIR" && start_bg "$NAME" "$HAPI_JAVA" $HAPI_JAVA_OPTS -jar "$JAR" \
    --server.address=127.0.0.1 \
    --server.port="$HAPI_PORT" \
    --spring.datasource.url="$db_url" \
    --fhirwall.hapi.server-address="${HAPI_SERVER_ADDRESS:-}")
  wait_http "$NAME" "$HEALTH_URL" "$HAPI_START_TIMEOUT"
  log "HAPI FHIR healthy after $((SECONDS - t0))s at $BASE"
}

stop() {
  if is_running "$NAME"; then log "stopping"; fi
  stop_bg "$NAME"
}

status() {
  if is_running "$NAME" && healthy; then
    echo "hapi: running (pid $(cat "$(pidfile "$NAME")")) at $BASE"
    return 0
  elif is_running "$NAME"; then
    echo "hapi: starting (pid $(cat "$(pidfile "$NAME")")), not healthy yet"
    return 1
  fi
  echo "hapi: stopped"
  return 1
}

reset() {
  stop
  rm -rf "$DATA_DIR/h2"
  log "database deleted"
}

case "${1:-}" in
  install | start | stop | status | reset) "$1" ;;
  *) echo "usage: $0 {install|start|stop|status|reset}" >&2; exit 2 ;;
esac
