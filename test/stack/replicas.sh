#!/usr/bin/env bash
# Several fhirwall-proxy replicas and two Envoys beside the running stack, sharing its HAPI, Keycloak, Kafka
# and PostgreSQL: what test/replicas runs its e2e test against (docs/replicas.md).
#
#   replicas.sh start [N]    N replicas (default 3, at most 9), xds-a + Envoy a, xds-b + Envoy b; waits until all are ready
#   replicas.sh stop         stop everything this script started (idempotent)
#   replicas.sh status       one line per process; exit 1 when any is down
#   replicas.sh kill K       SIGKILL replica K (no shutdown: its in-flight requests and unshipped spool stay behind)
#   replicas.sh start-one K  start replica K again (after kill) and wait until it is ready
#
# Replica K (1..9): proxy.admin 127.0.0.1:92K0, proxy.grpc 92K1, proxy.local 92K2, proxy.http 828K, its own audit
# spool $FHIRWALL_STATE/replicas/rK/spool (the stack's signing key), portal off. Every replica names
# http://127.0.0.1:8281 as proxy.public_url (one public face behind a balancer) and https://127.0.0.1:10010
# as public_url. xds-a: ADS 18010, admin 18011, node fhirwall-envoy-a, Envoy listener 10010, Envoy admin 9911;
# xds-b: 18020, 18021, fhirwall-envoy-b, 10020, 9921. Both Envoys balance over every replica.
#
# The processes run the binaries in $REPLICAS_BIN (default $FHIRWALL_STATE/bin, made by `fhirwall.sh build`)
# on the stack's runtime config ($FHIRWALL_STATE/config/fhirwall.yaml) with FHIRWALL_<KEY> overrides; only the
# portal's listener (and DCR on it) is switched off, in a copy beside it (replicas.yaml), because an empty
# environment value does not override a key. REPLICAS_AUDIT_TOPIC (default the stack's fhirwall.audit) is the
# replicas' audit topic. Logs: $FHIRWALL_STATE/log/replica-K.log, xds-{a,b}.log, envoy-{a,b}.log.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STACK_CONFIG=$FHIRWALL_STATE/config/fhirwall.yaml
CONFIG=$FHIRWALL_STATE/config/replicas.yaml
DIR=$FHIRWALL_STATE/replicas
# start-one restarts a replica from the binaries `start` used, whatever REPLICAS_BIN says now.
if [ -z "${REPLICAS_BIN:-}" ] && [ "${1:-}" != start ] && [ -f "$DIR/bin" ]; then REPLICAS_BIN=$(cat "$DIR/bin"); fi
REPLICAS_BIN=${REPLICAS_BIN:-$FHIRWALL_STATE/bin}
# The audit topic the replicas ship to (the test passes one of its own, so `fhirwall audit verify` over it sees
# exactly their chains); start-one keeps the one start used.
if [ -z "${REPLICAS_AUDIT_TOPIC:-}" ] && [ "${1:-}" != start ] && [ -f "$DIR/topic" ]; then REPLICAS_AUDIT_TOPIC=$(cat "$DIR/topic"); fi
REPLICAS_AUDIT_TOPIC=${REPLICAS_AUDIT_TOPIC:-fhirwall.audit}
ENVOYS="a b"
PUBLIC_URL=https://127.0.0.1:10010
PROXY_PUBLIC_URL=http://127.0.0.1:8281

replica_count() { cat "$DIR/count" 2>/dev/null || echo 3; }

# Ports of replica k and of Envoy e.
admin_port() { echo "92${1}0"; }
grpc_port() { echo "92${1}1"; }
local_port() { echo "92${1}2"; }
http_port() { echo "828${1}"; }
xds_port() { case $1 in a) echo 18010 ;; b) echo 18020 ;; esac; }
xds_admin_port() { case $1 in a) echo 18011 ;; b) echo 18021 ;; esac; }
envoy_port() { case $1 in a) echo 10010 ;; b) echo 10020 ;; esac; }
envoy_admin_port() { case $1 in a) echo 9911 ;; b) echo 9921 ;; esac; }

need_stack() {
  [ -f "$STACK_CONFIG" ] || die "no stack config at $STACK_CONFIG: start the stack first (test/stack/up.sh)"
  [ -f "$FHIRWALL_STATE/audit/signing.key" ] || die "no audit signing key at $FHIRWALL_STATE/audit/signing.key: start the stack first"
  local b
  for b in fhirwall-proxy fhirwall-xds fhirwall; do
    [ -x "$REPLICAS_BIN/$b" ] || die "no $REPLICAS_BIN/$b: run test/stack/fhirwall.sh build (or set REPLICAS_BIN)"
  done
}

# render_config: the stack's runtime config with the portal's listener off (every other key as the stack has
# it; relative paths in it resolve beside it, hence the copy in the same directory).
render_config() {
  awk '
    /^[^ #]/ { in_portal = ($0 ~ /^portal:/) }
    in_portal && /^  listen:/ { print "  listen: \"\"  # replicas.sh: the stack serves the portal"; next }
    in_portal && /^    enabled:/ { print "    enabled: false  # replicas.sh: DCR lives on the portal listener"; next }
    { print }
  ' "$STACK_CONFIG" >"$CONFIG.tmp" && mv "$CONFIG.tmp" "$CONFIG"
}

addresses() { # addresses PORTFN: the N replicas' host:port list, comma-separated
  local fn=$1 k out=""
  for k in $(seq 1 "$(replica_count)"); do out="$out${out:+,}127.0.0.1:$($fn "$k")"; done
  echo "$out"
}

# launch NAME VAR=VALUE... -- CMD...: start_bg with a private environment.
launch() {
  local name=$1; shift
  local vars=()
  while [ "$1" != "--" ]; do vars+=("$1"); shift; done
  shift
  start_bg "$name" env "${vars[@]}" "$@"
}

start_one() {
  local k=$1 name="replica-$1"
  [[ "$k" =~ ^[1-9]$ ]] || die "replica number $k: want 1 to 9"
  is_running "$name" && return 0
  need_stack
  [ -f "$CONFIG" ] || render_config
  mkdir -p "$DIR/r$k/spool" && chmod 700 "$DIR/r$k"
  launch "$name" \
    FHIRWALL_PROXY_GRPC="127.0.0.1:$(grpc_port "$k")" \
    FHIRWALL_PROXY_ADMIN="127.0.0.1:$(admin_port "$k")" \
    FHIRWALL_PROXY_LOCAL="127.0.0.1:$(local_port "$k")" \
    FHIRWALL_PROXY_HTTP="127.0.0.1:$(http_port "$k")" \
    FHIRWALL_PROXY_PUBLIC_URL="$PROXY_PUBLIC_URL" \
    FHIRWALL_PUBLIC_URL="$PUBLIC_URL" \
    FHIRWALL_AUDIT_SPOOL_DIR="$DIR/r$k/spool" \
    FHIRWALL_AUDIT_SIGNING_KEY_FILE="$FHIRWALL_STATE/audit/signing.key" \
    FHIRWALL_AUDIT_KAFKA_TOPIC="$REPLICAS_AUDIT_TOPIC" \
    FHIRWALL_PRIOR_AUTH_ADMIN_TOKEN_FILE="${FHIRWALL_PRIOR_AUTH_ADMIN_TOKEN_FILE:-$FHIRWALL_STATE/admin/prior-auth.token}" \
    -- "$REPLICAS_BIN/fhirwall-proxy" -config "$CONFIG"
  wait_http "$name" "http://127.0.0.1:$(admin_port "$k")/readyz" 60
  wait_port "$name" "$(grpc_port "$k")" 10
  log "replica $k ready (gRPC :$(grpc_port "$k"), standalone :$(http_port "$k"), admin :$(admin_port "$k"))"
}

start_xds() {
  local e=$1 name="xds-$1"
  is_running "$name" && return 0
  launch "$name" \
    FHIRWALL_XDS_LISTEN="127.0.0.1:$(xds_port "$e")" \
    FHIRWALL_XDS_ADMIN="127.0.0.1:$(xds_admin_port "$e")" \
    FHIRWALL_XDS_NODE_ID="fhirwall-envoy-$e" \
    FHIRWALL_XDS_ENVOY_LISTEN="127.0.0.1:$(envoy_port "$e")" \
    FHIRWALL_XDS_AUTHZ_ADDRESSES="$(addresses grpc_port)" \
    FHIRWALL_XDS_LOCAL_ADDRESSES="$(addresses local_port)" \
    FHIRWALL_XDS_TLS_CERT_FILE="$FHIRWALL_STATE/tls/tls.crt" \
    FHIRWALL_XDS_TLS_KEY_FILE="$FHIRWALL_STATE/tls/tls.key" \
    FHIRWALL_PUBLIC_URL="$PUBLIC_URL" \
    -- "$REPLICAS_BIN/fhirwall-xds" -config "$CONFIG"
  wait_http "$name" "http://127.0.0.1:$(xds_admin_port "$e")/readyz" 30
}

start_envoy() {
  local e=$1 name="envoy-$1" bin cfg
  is_running "$name" && return 0
  bin=$("$FHIRWALL_ROOT/test/stack/envoy.sh" bin) || die "envoy is not installed: test/stack/envoy.sh install"
  mkdir -p "$DIR/envoy-$e"
  cfg=$DIR/envoy-$e/bootstrap.yaml
  sed -e "s/port_value: 9901\b/port_value: $(envoy_admin_port "$e")/" \
      -e "s/port_value: 18000\b/port_value: $(xds_port "$e")/" \
      -e "s/^\(  id:\) fhirwall-envoy$/\1 fhirwall-envoy-$e/" \
      "$FHIRWALL_ROOT/config/envoy/bootstrap.yaml" >"$cfg"
  grep -q "id: fhirwall-envoy-$e" "$cfg" || die "could not set the node id in $cfg (config/envoy/bootstrap.yaml changed?)"
  # --disable-hot-restart: several Envoys on one machine, and no PDEATHSIG (test/stack/envoy.sh says why).
  start_bg "$name" "$bin" -c "$cfg" --concurrency 1 --disable-hot-restart --log-level warn --drain-time-s 1
  wait_http "$name" "http://127.0.0.1:$(envoy_admin_port "$e")/ready" 30
  # Fail closed on a binary that predates xds.authz_addresses: it would point Envoy at the stack's own proxy.
  local k clusters
  clusters=$(curl -fsS --max-time 5 "http://127.0.0.1:$(envoy_admin_port "$e")/clusters")
  for k in $(seq 1 "$(replica_count)"); do
    grep -q "^fhirwall_authz::127.0.0.1:$(grpc_port "$k")::" <<<"$clusters" \
      || die "Envoy $e does not balance over replica $k (:$(grpc_port "$k")): rebuild with test/stack/fhirwall.sh build"
  done
  log "Envoy $e ready: https://127.0.0.1:$(envoy_port "$e") (admin :$(envoy_admin_port "$e"))"
}

start() {
  local n=${1:-3} k e
  [[ "$n" =~ ^[1-9]$ ]] || die "replica count $n: want 1 to 9"
  need_stack
  mkdir -p "$DIR"
  echo "$n" >"$DIR/count"
  echo "$REPLICAS_BIN" >"$DIR/bin"
  echo "$REPLICAS_AUDIT_TOPIC" >"$DIR/topic"
  render_config
  for k in $(seq 1 "$n"); do start_one "$k"; done
  for e in $ENVOYS; do start_xds "$e"; start_envoy "$e"; done
  log "$n replicas behind Envoys a (:10010) and b (:10020); standalone faces :8281..:828$n"
}

stop() {
  local k e
  for e in $ENVOYS; do stop_bg "envoy-$e"; stop_bg "xds-$e"; done
  for k in $(seq 1 9); do stop_bg "replica-$k"; done
}

kill_one() {
  local k=$1 p
  p=$(pidfile "replica-$k")
  is_running "replica-$k" || die "replica $k is not running"
  kill -KILL "$(cat "$p")"
  rm -f "$p"
  log "replica $k SIGKILLed"
}

status() {
  local bad=0 k e
  for k in $(seq 1 "$(replica_count)"); do
    if is_running "replica-$k"; then echo "replica-$k running (pid $(cat "$(pidfile "replica-$k")"))"; else echo "replica-$k stopped"; bad=1; fi
  done
  for e in $ENVOYS; do
    for name in "xds-$e" "envoy-$e"; do
      if is_running "$name"; then echo "$name running (pid $(cat "$(pidfile "$name")"))"; else echo "$name stopped"; bad=1; fi
    done
  done
  return $bad
}

case "${1:-}" in
  start) start "${2:-3}" ;;
  stop) stop ;;
  status) status ;;
  kill) kill_one "${2:?replica number}" ;;
  start-one) start_one "${2:?replica number}" ;;
  *) echo "usage: $0 {start [N]|stop|status|kill K|start-one K}" >&2; exit 2 ;;
esac
