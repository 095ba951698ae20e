#!/usr/bin/env bash
# Shared helpers for the stack scripts. Source it; do not run it.
#   FHIRWALL_ROOT   the checkout
#   FHIRWALL_CACHE  downloads kept across clones ($HOME/.cache/fhirwall)
#   FHIRWALL_STATE  runtime state, logs, build outputs (ignored folder in the checkout)
set -euo pipefail
FHIRWALL_ROOT=${FHIRWALL_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
FHIRWALL_CACHE=${FHIRWALL_CACHE:-$HOME/.cache/fhirwall}
FHIRWALL_STATE=${FHIRWALL_STATE:-$FHIRWALL_ROOT/.fhirwall}
# shellcheck source=ports.env
. "$FHIRWALL_ROOT/test/stack/ports.env"
mkdir -p "$FHIRWALL_CACHE" "$FHIRWALL_STATE/run" "$FHIRWALL_STATE/log"

log() { printf '[%s] %s\n' "$(basename "$0")" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# newest JDK >= 21 under /usr/lib/jvm, else empty
jdk21() {
  local d
  for d in /usr/lib/jvm/temurin-25-jdk-amd64 /usr/lib/jvm/temurin-2[1-9]*-jdk* /usr/lib/jvm/java-2[1-9]-openjdk*; do
    [ -x "$d/bin/java" ] && { echo "$d"; return 0; }
  done
  return 1
}

pidfile() { echo "$FHIRWALL_STATE/run/$1.pid"; }
logfile() { echo "$FHIRWALL_STATE/log/$1.log"; }

# is_running NAME: the process in NAME's pid file is alive
is_running() {
  local p; p=$(pidfile "$1")
  [ -f "$p" ] && kill -0 "$(cat "$p")" 2>/dev/null
}

# start_bg NAME CMD...: start CMD detached in its own session, log to the log file, record the pid
start_bg() {
  local name=$1; shift
  : >"$(logfile "$name")"
  setsid "$@" >>"$(logfile "$name")" 2>&1 </dev/null &
  echo $! >"$(pidfile "$name")"
}

# stop_bg NAME: TERM the process group, wait up to 30 s, then KILL
stop_bg() {
  local name=$1 p pid i
  p=$(pidfile "$name")
  [ -f "$p" ] || return 0
  pid=$(cat "$p")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$p"
}

# wait_http NAME URL SECONDS: poll until URL answers 2xx; fail with the log tail if NAME dies or time runs out
wait_http() {
  local name=$1 url=$2 secs=$3 i
  for i in $(seq 1 "$secs"); do
    if curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; then return 0; fi
    if ! is_running "$name"; then
      log "$name exited; last lines of $(logfile "$name"):"; tail -40 "$(logfile "$name")" >&2; return 1
    fi
    sleep 1
  done
  log "$name not healthy after ${secs}s at $url; last lines of $(logfile "$name"):"
  tail -40 "$(logfile "$name")" >&2
  return 1
}

# wait_port NAME PORT SECONDS: poll until a TCP port on 127.0.0.1 accepts
wait_port() {
  local name=$1 port=$2 secs=$3 i
  for i in $(seq 1 "$secs"); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    if ! is_running "$name"; then
      log "$name exited; last lines of $(logfile "$name"):"; tail -40 "$(logfile "$name")" >&2; return 1
    fi
    sleep 1
  done
  log "$name not listening on $port after ${secs}s"; tail -40 "$(logfile "$name")" >&2
  return 1
}

# fetch URL DEST: download once into the cache (atomic rename), reuse afterwards
fetch() {
  local url=$1 dest=$2
  [ -s "$dest" ] && return 0
  mkdir -p "$(dirname "$dest")"
  curl -fSL --retry 3 -o "$dest.part" "$url"
  mv "$dest.part" "$dest"
}
