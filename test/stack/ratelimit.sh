#!/usr/bin/env bash
# envoyproxy/ratelimit: the global rate limit service Envoy and the standalone proxy ask (gRPC
# envoy.service.ratelimit.v3.RateLimitService), counting in Redis (redis.sh). It takes its limits from
# fhirwall-xds over xDS (RateLimitConfig resources for node id fhirwall-ratelimit), so a config change
# reaches it without a restart.
#   ratelimit.sh install   build the pinned version from its Go module (once; cached in $FHIRWALL_CACHE/bin)
#   ratelimit.sh start     install, then start on gRPC 127.0.0.1:$RATELIMIT_GRPC_PORT (idempotent)
#   ratelimit.sh stop      stop it (idempotent)
#   ratelimit.sh status    "running" or "stopped" (exit 1)
# Env: RATELIMIT_VERSION (the module version), RATELIMIT_XDS_ADDR (127.0.0.1:$XDS_PORT),
# RATELIMIT_NODE_ID (fhirwall-ratelimit), REDIS_PORT.
. "$(dirname "$0")/lib.sh"
VERSION=${RATELIMIT_VERSION:-v1.4.1-0.20260122083618-3fb702589d36}
MODULE=github.com/envoyproxy/ratelimit
BIN=$FHIRWALL_CACHE/bin/ratelimit-$VERSION
NAME=ratelimit
RATELIMIT_HTTP_PORT=${RATELIMIT_HTTP_PORT:-8084}
RATELIMIT_DEBUG_PORT=${RATELIMIT_DEBUG_PORT:-6070}

install() {
  [ -x "$BIN" ] && return 0
  command -v go >/dev/null || die "go is not on PATH; install Go (see go.mod) to build $MODULE"
  log "building $MODULE@$VERSION into $BIN"
  mkdir -p "$(dirname "$BIN")"
  local tmp; tmp=$(mktemp -d)
  # go install refuses modules whose go.mod has replace directives; build from a writable copy then.
  if ! GOBIN=$tmp go install "$MODULE/src/service_cmd@$VERSION" 2>"$tmp/install.err"; then
    grep -q "replace directives" "$tmp/install.err" || { cat "$tmp/install.err" >&2; rm -rf "$tmp"; die "building $MODULE@$VERSION failed"; }
    local dir
    dir=$(cd "$tmp" && go mod download -json "$MODULE@$VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    [ -n "$dir" ] || { rm -rf "$tmp"; die "go mod download $MODULE@$VERSION gave no module directory"; }
    cp -r "$dir" "$tmp/src" && chmod -R u+w "$tmp/src"
    (cd "$tmp/src" && go build -o "$tmp/service_cmd" ./src/service_cmd) || { rm -rf "$tmp"; die "building $MODULE@$VERSION failed"; }
  fi
  mv "$tmp/service_cmd" "$BIN.part" && mv "$BIN.part" "$BIN"
  rm -rf "$tmp"
}

start() {
  install
  if is_running "$NAME"; then log "$NAME already running"; return 0; fi
  # envconfig settings of envoyproxy/ratelimit (src/settings/settings.go). No statsd, and DISABLE_STATS: without
  # a statsd its stats would go to the log, a line for each on every flush.
  start_bg "$NAME" env -i PATH="$PATH" HOME="$HOME" \
    HOST=127.0.0.1 PORT="$RATELIMIT_HTTP_PORT" \
    GRPC_HOST=127.0.0.1 GRPC_PORT="$RATELIMIT_GRPC_PORT" \
    DEBUG_HOST=127.0.0.1 DEBUG_PORT="$RATELIMIT_DEBUG_PORT" \
    LOG_LEVEL="${RATELIMIT_LOG_LEVEL:-WARN}" USE_STATSD=false DISABLE_STATS=true \
    BACKEND_TYPE=redis REDIS_SOCKET_TYPE=tcp REDIS_URL="127.0.0.1:$REDIS_PORT" \
    CONFIG_TYPE=GRPC_XDS_SOTW \
    CONFIG_GRPC_XDS_SERVER_URL="${RATELIMIT_XDS_ADDR:-127.0.0.1:$XDS_PORT}" \
    CONFIG_GRPC_XDS_NODE_ID="${RATELIMIT_NODE_ID:-fhirwall-ratelimit}" \
    XDS_CLIENT_BACKOFF_INITIAL_INTERVAL=1s XDS_CLIENT_BACKOFF_MAX_INTERVAL=10s \
    FORCE_START_WITHOUT_INITIAL_CONFIG=true \
    "$BIN"
  wait_port "$NAME" "$RATELIMIT_GRPC_PORT" 60
  log "$NAME on grpc 127.0.0.1:$RATELIMIT_GRPC_PORT (config from ${RATELIMIT_XDS_ADDR:-127.0.0.1:$XDS_PORT})"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop_bg "$NAME" ;;
  status) if is_running "$NAME"; then echo running; else echo stopped; exit 1; fi ;;
  *) echo "usage: $0 {install|start|stop|status}" >&2; exit 2 ;;
esac
