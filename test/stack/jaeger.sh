#!/usr/bin/env bash
# Jaeger v2 (an OpenTelemetry Collector build): the trace collector of the stack. Envoy and fhirwall-proxy
# export their spans to it over OTLP/gRPC (config tracing.endpoint; fhirwall.sh sets it), it keeps them in
# memory, and the tests read a trace back from its query API: GET /api/traces/{trace id} (docs/tracing.md).
#   jaeger.sh install   build the pinned version from its Go module (once; cached in $FHIRWALL_CACHE/bin)
#   jaeger.sh start     install, then start: OTLP/gRPC 127.0.0.1:$JAEGER_OTLP_PORT, query 127.0.0.1:$JAEGER_QUERY_PORT
#   jaeger.sh stop      stop it (idempotent; the traces are gone: memory only)
#   jaeger.sh status    "running" or "stopped" (exit 1)
# Env: JAEGER_VERSION (the Go module's version: v1.N tags carry Jaeger v2's cmd/jaeger).
. "$(dirname "$0")/lib.sh"
VERSION=${JAEGER_VERSION:-v1.75.0}
MODULE=github.com/jaegertracing/jaeger
BIN=$FHIRWALL_CACHE/bin/jaeger-$VERSION
NAME=jaeger
CONFIG=$FHIRWALL_STATE/jaeger/config.yaml

install() {
  [ -x "$BIN" ] && return 0
  command -v go >/dev/null || die "go is not on PATH; install Go (see go.mod) to build $MODULE"
  log "building $MODULE/cmd/jaeger@$VERSION into $BIN (a large module: several minutes on 2 cores, once)"
  mkdir -p "$(dirname "$BIN")"
  local tmp dir; tmp=$(mktemp -d)
  # go install refuses the module (its go.mod has a replace directive): build it as the main module, from a
  # writable copy of the module's source, with its own go.sum.
  dir=$(cd "$tmp" && go mod download -json "$MODULE@$VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -n "$dir" ] || { rm -rf "$tmp"; die "go mod download $MODULE@$VERSION gave no module directory"; }
  cp -r "$dir" "$tmp/src" && chmod -R u+w "$tmp/src"
  (cd "$tmp/src" && go build -trimpath -o "$tmp/jaeger" ./cmd/jaeger) || { rm -rf "$tmp"; die "building $MODULE@$VERSION failed"; }
  mv "$tmp/jaeger" "$BIN.part" && mv "$BIN.part" "$BIN"
  rm -rf "$tmp"
}

# config writes the collector's configuration: OTLP/gRPC in, memory storage, the query API, a health check;
# loopback only, and no other receiver or port than these.
config() {
  mkdir -p "$(dirname "$CONFIG")"
  cat >"$CONFIG" <<EOF
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 127.0.0.1:$JAEGER_HEALTH_PORT
  jaeger_storage:
    backends:
      memory_store:
        memory:
          max_traces: 100000
  jaeger_query:
    storage:
      traces: memory_store
    enable_tracing: false
    http:
      endpoint: 127.0.0.1:$JAEGER_QUERY_PORT
    grpc:
      endpoint: 127.0.0.1:$JAEGER_QUERY_GRPC_PORT
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:$JAEGER_OTLP_PORT
processors:
  batch:
    timeout: 200ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memory_store
EOF
}

start() {
  install
  if is_running "$NAME"; then log "$NAME already running"; return 0; fi
  config
  start_bg "$NAME" "$BIN" --config "$CONFIG"
  wait_http "$NAME" "http://127.0.0.1:$JAEGER_HEALTH_PORT/status" 60
  wait_port "$NAME" "$JAEGER_OTLP_PORT" 30
  log "$NAME: OTLP/gRPC 127.0.0.1:$JAEGER_OTLP_PORT, query http://127.0.0.1:$JAEGER_QUERY_PORT/api/traces/{id}"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop_bg "$NAME" ;;
  status) if is_running "$NAME"; then echo running; else echo stopped; exit 1; fi ;;
  *) echo "usage: $0 {install|start|stop|status}" >&2; exit 2 ;;
esac
