#!/usr/bin/env bash
# fhirwall's own processes for the stack: fhirwall-xds (Envoy's control plane) and fhirwall-proxy
# (ext_authz/ext_proc for Envoy, and the standalone reverse proxy).
#   fhirwall.sh {build|start|stop|status|start-proxy|stop-proxy|start-xds|stop-xds}
# The processes read a runtime copy of the config, $FHIRWALL_STATE/config/{fhirwall,clients,prior-auth-rules}.yaml, made from
# config/ when missing (FHIRWALL_CONFIG names another source file). Edit the copy to watch hot reload; the
# tests do too. `fhirwall.sh reset-config` copies config/ again. Envoy's listener serves TLS with a
# certificate from a CA generated here ($FHIRWALL_STATE/tls/ca.pem: curl --cacert it).
. "$(dirname "$0")/lib.sh"
SRC_CONFIG=${FHIRWALL_CONFIG:-$FHIRWALL_ROOT/config/fhirwall.yaml}
RUN_CONFIG_DIR=$FHIRWALL_STATE/config
CONFIG=$RUN_CONFIG_DIR/fhirwall.yaml
TLS_DIR=$FHIRWALL_STATE/tls
BIN=$FHIRWALL_STATE/bin

reset_config() {
  mkdir -p "$RUN_CONFIG_DIR"
  cp "$SRC_CONFIG" "$CONFIG.tmp" && mv "$CONFIG.tmp" "$CONFIG"
  local f
  for f in clients.yaml prior-auth-rules.yaml; do # the files fhirwall.yaml names beside it
    cp "$(dirname "$SRC_CONFIG")/$f" "$RUN_CONFIG_DIR/$f.tmp" && mv "$RUN_CONFIG_DIR/$f.tmp" "$RUN_CONFIG_DIR/$f"
  done
}

# Envoy's listener certificate: generated once (the CA is kept, so clients that trust it keep working).
ensure_tls() {
  [ -f "$TLS_DIR/tls.crt" ] && [ -f "$TLS_DIR/tls.key" ] && [ -f "$TLS_DIR/ca.pem" ] && return 0
  (cd "$FHIRWALL_ROOT" && go run ./test/tools/gencert -dir "$TLS_DIR" 127.0.0.1 localhost)
  log "generated Envoy's listener certificate under $TLS_DIR (CA: $TLS_DIR/ca.pem)"
}

export FHIRWALL_XDS_TLS_CERT_FILE=$TLS_DIR/tls.crt
export FHIRWALL_XDS_TLS_KEY_FILE=$TLS_DIR/tls.key
export FHIRWALL_PUBLIC_URL=https://127.0.0.1:$ENVOY_PORT
# Tracing on, to the stack's collector (jaeger.sh); FHIRWALL_TRACING_ENDPOINT= (empty) turns it off.
export FHIRWALL_TRACING_ENDPOINT=${FHIRWALL_TRACING_ENDPOINT-127.0.0.1:$JAEGER_OTLP_PORT}
# The audit spool and the key that signs its checkpoints (generated once; verify with signing.key.pub).
AUDIT_DIR=$FHIRWALL_STATE/audit
export FHIRWALL_AUDIT_SPOOL_DIR=$AUDIT_DIR/spool
export FHIRWALL_AUDIT_SIGNING_KEY_FILE=$AUDIT_DIR/signing.key

ensure_audit_key() {
  [ -f "$FHIRWALL_AUDIT_SIGNING_KEY_FILE" ] && return 0
  mkdir -p "$AUDIT_DIR" && chmod 700 "$AUDIT_DIR"
  "$BIN/fhirwall" audit keygen -out "$FHIRWALL_AUDIT_SIGNING_KEY_FILE" >/dev/null
  log "generated the audit signing key $FHIRWALL_AUDIT_SIGNING_KEY_FILE"
}

# The prior-auth review admin API's bearer token (a reviewer's credential: fhirwall prior-auth reads it too).
ADMIN_DIR=$FHIRWALL_STATE/admin
export FHIRWALL_PRIOR_AUTH_ADMIN_TOKEN_FILE=${FHIRWALL_PRIOR_AUTH_ADMIN_TOKEN_FILE:-$ADMIN_DIR/prior-auth.token}
ensure_admin_token() {
  [ -s "$FHIRWALL_PRIOR_AUTH_ADMIN_TOKEN_FILE" ] && return 0
  mkdir -p "$(dirname "$FHIRWALL_PRIOR_AUTH_ADMIN_TOKEN_FILE")" && chmod 700 "$(dirname "$FHIRWALL_PRIOR_AUTH_ADMIN_TOKEN_FILE")"
  (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$FHIRWALL_PRIOR_AUTH_ADMIN_TOKEN_FILE")
  log "generated the prior-auth admin token $FHIRWALL_PRIOR_AUTH_ADMIN_TOKEN_FILE"
}

# The files fhirwall.yaml names beside itself that the stack makes rather than config/ ships: the secrets of
# the realm's own clients (made by keycloak.sh, linked so a re-import and fhirwall agree), the portal's TLS
# certificate (the same as Envoy's listener), the portal's session key and the shared admin API token (made
# once per checkout).
link_stack_files() {
  mkdir -p "$RUN_CONFIG_DIR"
  ensure_tls
  ln -sf "$FHIRWALL_STATE/keycloak/secrets/registry.secret" "$RUN_CONFIG_DIR/keycloak-registry.secret"
  ln -sf "$FHIRWALL_STATE/keycloak/secrets/portal.secret" "$RUN_CONFIG_DIR/portal-client.secret"
  ln -sf "$TLS_DIR/tls.crt" "$RUN_CONFIG_DIR/portal-tls.crt"
  ln -sf "$TLS_DIR/tls.key" "$RUN_CONFIG_DIR/portal-tls.key"
  local f
  for f in portal-session.key admin.token; do
    [ -s "$ADMIN_DIR/$f" ] || { mkdir -p "$ADMIN_DIR" && chmod 700 "$ADMIN_DIR" &&
      (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$ADMIN_DIR/$f"); }
    ln -sf "$ADMIN_DIR/$f" "$RUN_CONFIG_DIR/$f"
  done
  # proxy.decision_keys_file: one base64 key per line, the first seals; every replica of this checkout
  # shares it, so ext_proc on one opens what ext_authz on another sealed.
  [ -s "$ADMIN_DIR/decision.keys" ] || { mkdir -p "$ADMIN_DIR" && chmod 700 "$ADMIN_DIR" &&
    (umask 077 && head -c 32 /dev/urandom | base64 >"$ADMIN_DIR/decision.keys"); }
  ln -sf "$ADMIN_DIR/decision.keys" "$RUN_CONFIG_DIR/decision.keys"
}

build() {
  mkdir -p "$BIN"
  (cd "$FHIRWALL_ROOT" && go build -o "$BIN/fhirwall-proxy" ./cmd/proxy && go build -o "$BIN/fhirwall-xds" ./cmd/xds && go build -o "$BIN/fhirwall" ./cmd/fhirwall)
}

start_proxy() {
  is_running proxy && return 0
  [ -x "$BIN/fhirwall-proxy" ] && [ -x "$BIN/fhirwall" ] || build
  ensure_audit_key
  ensure_admin_token
  link_stack_files
  start_bg proxy "$BIN/fhirwall-proxy" -config "$CONFIG"
  wait_http proxy "http://127.0.0.1:$PROXY_ADMIN_PORT/readyz" 30
  wait_port proxy "$PROXY_GRPC_PORT" 10
  log "fhirwall-proxy ready (gRPC :$PROXY_GRPC_PORT, standalone :$PROXY_HTTP_PORT)"
}

start_xds() {
  is_running xds && return 0
  ensure_tls
  [ -x "$BIN/fhirwall-xds" ] || build
  start_bg xds "$BIN/fhirwall-xds" -config "$CONFIG"
  wait_port xds "$XDS_PORT" 30
  wait_http xds "http://127.0.0.1:$XDS_ADMIN_PORT/readyz" 10
  log "fhirwall-xds ready (ADS :$XDS_PORT)"
}

[ -f "$CONFIG" ] || reset_config

case "${1:-}" in
  build) build ;;
  reset-config) reset_config ;;
  start) build; start_xds; start_proxy ;;
  stop) stop_bg proxy; stop_bg xds ;;
  start-proxy) start_proxy ;;
  stop-proxy) stop_bg proxy ;;
  start-xds) start_xds ;;
  stop-xds) stop_bg xds ;;
  status) is_running proxy && is_running xds ;;
  config-path) echo "$CONFIG" ;;
  *) echo "usage: $0 {build|start|stop|status|start-proxy|stop-proxy|start-xds|stop-xds|reset-config|config-path}" >&2; exit 2 ;;
esac
