#!/usr/bin/env bash
# Redis for the global rate limit's counters (envoyproxy/ratelimit, ratelimit.sh): Debian's redis-server,
# installed when missing, run as our own process on 127.0.0.1:$REDIS_PORT (the Debian service is neither
# enabled nor started). Counters live a second or a minute, so nothing is persisted.
#   redis.sh install   apt-get install redis-server when missing
#   redis.sh start     install, then start (idempotent)
#   redis.sh stop      stop it (idempotent)
#   redis.sh status    "running" or "stopped" (exit 1)
. "$(dirname "$0")/lib.sh"
NAME=redis
DIR=$FHIRWALL_STATE/redis

install() {
  command -v redis-server >/dev/null && return 0
  log "installing redis-server from Debian"
  # policy-rc.d 101 keeps the package's postinst from starting the Debian service where invoke-rc.d is used
  apt-get update -qq && RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null
  if command -v systemctl >/dev/null && systemctl is-enabled redis-server >/dev/null 2>&1; then
    systemctl disable --now redis-server >/dev/null 2>&1 || true
  fi
  command -v redis-server >/dev/null || die "redis-server is still missing after apt-get install"
}

start() {
  install
  if is_running "$NAME"; then log "$NAME already running"; return 0; fi
  mkdir -p "$DIR"
  cat >"$DIR/redis.conf" <<CONF
bind 127.0.0.1
port $REDIS_PORT
protected-mode yes
daemonize no
dir $DIR
save ""
appendonly no
logfile ""
CONF
  start_bg "$NAME" redis-server "$DIR/redis.conf"
  wait_port "$NAME" "$REDIS_PORT" 30
  log "$NAME on 127.0.0.1:$REDIS_PORT"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop_bg "$NAME" ;;
  status) if is_running "$NAME"; then echo running; else echo stopped; exit 1; fi ;;
  *) echo "usage: $0 {install|start|stop|status}" >&2; exit 2 ;;
esac
