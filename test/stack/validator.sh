#!/usr/bin/env bash
# The FHIR profile validator as a service (test/tools/fhir-validator, "serve" mode): HAPI's instance validator
# with the Da Vinci PAS 2.0.1 and US Core 3.1.1 packages loaded once, which the prior-auth API asks over HTTP
# (prior_auth.validator.url) about every request Bundle.
#   validator.sh install     build the jar with Maven (skipped while newer than the sources)
#   validator.sh start       install if needed, start on 127.0.0.1:$VALIDATOR_PORT, wait for /healthz
#   validator.sh wait-ready  wait for /healthz (200 only after the warm-up validation of a PAS example)
#   validator.sh stop        stop it (idempotent)
#   validator.sh status      exit 0 when running and healthy
# Environment:
#   VALIDATOR_JAVA           java binary (default: java on PATH, JDK >= 17)
#   VALIDATOR_JAVA_OPTS      JVM options (default below)
#   VALIDATOR_START_TIMEOUT  seconds to wait for health (default 300: up.sh starts four JVMs at once on 2 cores)
#   FHIR_PACKAGES            folder of the IG packages (default test/fixtures/fhir-packages)
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NAME=validator
SRC_DIR=$FHIRWALL_ROOT/test/tools/fhir-validator
JAR=$SRC_DIR/target/fhir-validator-0.1.0.jar
PKG_DIR=${FHIR_PACKAGES:-$FHIRWALL_ROOT/test/fixtures/fhir-packages}
# PAS 2.2.1 is not loaded beside 2.0.1: both define the same canonical URLs (and need different US Core
# versions under the same URLs), and its dependencies (hrex 1.2.0, cdex, sdc, xver-r5) are not in the fixtures.
PACKAGES=(hl7.fhir.us.core-3.1.1.tgz hl7.fhir.us.davinci-pas-2.0.1.tgz)
BASE=http://127.0.0.1:$VALIDATOR_PORT
HEALTH_URL=$BASE/healthz
VALIDATOR_JAVA=${VALIDATOR_JAVA:-java}
# 768 MiB holds the packages, their snapshots and two validations at once with room to spare.
VALIDATOR_JAVA_OPTS=${VALIDATOR_JAVA_OPTS:--Xmx768m -XX:+UseSerialGC}
VALIDATOR_START_TIMEOUT=${VALIDATOR_START_TIMEOUT:-300}

healthy() { curl -fsS -o /dev/null --max-time 5 "$HEALTH_URL" 2>/dev/null; }

# the jar is up to date when it and its classpath exist and no source file is newer
built() {
  [ -s "$JAR" ] && [ -d "$SRC_DIR/target/lib" ] || return 1
  [ -z "$(find "$SRC_DIR/src" "$SRC_DIR/pom.xml" -type f -newer "$JAR" -print -quit)" ]
}

install() {
  if built; then log "jar up to date: $JAR"; return 0; fi
  # the running JVM reads classes from the jar lazily: never rewrite it underneath
  is_running "$NAME" && die "the validator is running; run '$0 stop' before rebuilding"
  command -v mvn >/dev/null || die "mvn not found (Maven >= 3.8 needed)"
  log "building $JAR (an empty ~/.m2 first downloads HAPI's validator, ~190 MB)"
  local blog; blog=$(logfile validator-build)
  if ! mvn -q -B -Dstyle.color=never -f "$SRC_DIR/pom.xml" package >"$blog" 2>&1; then
    log "maven build failed; last lines of $blog:"; tail -40 "$blog" >&2; exit 1
  fi
  [ -s "$JAR" ] || die "build produced no $JAR"
  touch "$JAR"
}

start() {
  if is_running "$NAME"; then
    if healthy; then log "already running (pid $(cat "$(pidfile "$NAME")")) at $BASE"; return 0; fi
    log "running but not healthy yet; waiting"
    wait_http "$NAME" "$HEALTH_URL" "$VALIDATOR_START_TIMEOUT"
    return
  fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$VALIDATOR_PORT") 2>/dev/null; then
    die "port $VALIDATOR_PORT is taken by another process (not started by validator.sh)"
  fi
  install
  local args=() p
  for p in "${PACKAGES[@]}"; do
    [ -s "$PKG_DIR/$p" ] || die "IG package missing: $PKG_DIR/$p"
    args+=(-package "$PKG_DIR/$p")
  done
  log "starting the profile validator on $BASE (log $(logfile "$NAME"))"
  local t0=$SECONDS
  # shellcheck disable=SC2086 # VALIDATOR_JAVA_OPTS is a list of options
  start_bg "$NAME" "$VALIDATOR_JAVA" $VALIDATOR_JAVA_OPTS -jar "$JAR" serve \
    -addr "127.0.0.1:$VALIDATOR_PORT" -threads 2 "${args[@]}"
  wait_http "$NAME" "$HEALTH_URL" "$VALIDATOR_START_TIMEOUT"
  log "profile validator healthy after $((SECONDS - t0))s at $BASE"
}

wait_ready() {
  is_running "$NAME" || die "not running; run '$0 start'"
  wait_http "$NAME" "$HEALTH_URL" "$VALIDATOR_START_TIMEOUT"
}

stop() {
  if is_running "$NAME"; then log "stopping"; fi
  stop_bg "$NAME"
}

status() {
  if is_running "$NAME" && healthy; then
    echo "validator: running (pid $(cat "$(pidfile "$NAME")")) at $BASE"
    return 0
  elif is_running "$NAME"; then
    echo "validator: starting (pid $(cat "$(pidfile "$NAME")")), not healthy yet"
    return 1
  fi
  echo "validator: stopped"
  return 1
}

case "${1:-}" in
  install | start | stop | status) "$1" ;;
  wait-ready) wait_ready ;;
  *) echo "usage: $0 {install|start|stop|status|wait-ready}" >&2; exit 2 ;;
esac
