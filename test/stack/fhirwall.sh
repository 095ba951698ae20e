#!/usr/bin/env bash
# fhirwall's own processes for the stack: fhirwall-xds (Envoy's control plane) and fhirwall-proxy
# (ext_authz/ext_proc for Envoy, and the standalone reverse proxy).
#   fhirwall.sh {build|start|stop|status|start-proxy|stop-proxy|start-xds|stop-xds}
# FHIRWALL_CONFIG selects the config file (default config/fhirwall.yaml).
. "$(dirname "$0")/lib.sh"
CONFIG=${FHIRWALL_CONFIG:-$FHIRWALL_ROOT/config/fhirwall.yaml}
BIN=$FHIRWALL_STATE/bin

build() {
  mkdir -p "$BIN"
  (cd "$FHIRWALL_ROOT" && go build -o "$BIN/fhirwall-proxy" ./cmd/proxy && go build -o "$BIN/fhirwall-xds" ./cmd/xds)
}

start_proxy() {
  is_running proxy && return 0
  [ -x "$BIN/fhirwall-proxy" ] || build
  start_bg proxy "$BIN/fhirwall-proxy" -config "$CONFIG"
  wait_http proxy "http://127.0.0.1:$PROXY_ADMIN_PORT/readyz" 30
  wait_port proxy "$PROXY_GRPC_PORT" 10
  log "fhirwall-proxy ready (gRPC :$PROXY_GRPC_PORT, standalone :$PROXY_HTTP_PORT)"
}

start_xds() {
  is_running xds && return 0
  [ -x "$BIN/fhirwall-xds" ] || build
  start_bg xds "$BIN/fhirwall-xds" -config "$CONFIG"
  wait_port xds "$XDS_PORT" 30
  log "fhirwall-xds ready (ADS :$XDS_PORT)"
}

case "${1:-}" in
  build) build ;;
  start) build; start_xds; start_proxy ;;
  stop) stop_bg proxy; stop_bg xds ;;
  start-proxy) start_proxy ;;
  stop-proxy) stop_bg proxy ;;
  start-xds) start_xds ;;
  stop-xds) stop_bg xds ;;
  status) is_running proxy && is_running xds ;;
  *) echo "usage: $0 {build|start|stop|status|start-proxy|stop-proxy|start-xds|stop-xds}" >&2; exit 2 ;;
esac
