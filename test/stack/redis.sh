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
  # The package's postinst would start (and enable) Debian's own redis-server service; a policy-rc.d that
  # answers 101 ("action forbidden") stops invoke-rc.d and deb-systemd-invoke from doing it. Ours only.
  local policy=/usr/sbin/policy-rc.d made=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made=1
  fi
  local ok=1
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null; } || ok=""
  if [ -n "$made" ]; then rm -f "$policy"; fi
  [ -n "$ok" ] || die "apt-get install redis-server failed"
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
