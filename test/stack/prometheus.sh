#!/usr/bin/env bash
# Prometheus beside the stack, for the alert rules' fault test (test/faults/alerts_test.go): built from its Go
# module (test/tools/prometheus), scraping fhirwall-proxy's admin /metrics and Envoy's stats every second, and
# evaluating the rules file $FHIRWALL_STATE/prometheus/rules.yaml (the chart's rules; empty until a test writes
# them) every second. Not part of up.sh: only the alert tests need it.
#   prometheus.sh install   build prometheus and promtool (once per version; cached in $FHIRWALL_CACHE/bin)
#   prometheus.sh start     install, then start on 127.0.0.1:$PROMETHEUS_PORT (idempotent)
#   prometheus.sh reload    re-read the config and the rules file (POST /-/reload)
#   prometheus.sh stop      stop it (idempotent)
#   prometheus.sh status    "running" or "stopped" (exit 1)
. "$(dirname "$0")/lib.sh"
NAME=prometheus
DIR=$FHIRWALL_STATE/prometheus
BIN=$FHIRWALL_STATE/bin/prometheus

install() {
  bash "$FHIRWALL_ROOT/test/tools/prometheus/build.sh" >/dev/null
}

write_config() {
  mkdir -p "$DIR/data"
  [ -f "$DIR/rules.yaml" ] || echo "groups: []" >"$DIR/rules.yaml"
  cat >"$DIR/prometheus.yml.tmp" <<CONF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [$DIR/rules.yaml]
scrape_configs:
  - job_name: fhirwall-proxy
    static_configs: [{targets: ['127.0.0.1:$PROXY_ADMIN_PORT']}]
  - job_name: envoy
    metrics_path: /stats/prometheus
    static_configs: [{targets: ['127.0.0.1:$ENVOY_ADMIN_PORT']}]
CONF
  mv "$DIR/prometheus.yml.tmp" "$DIR/prometheus.yml"
}

start() {
  install
  write_config
  if is_running "$NAME"; then log "$NAME already running"; return 0; fi
  start_bg "$NAME" "$BIN" --config.file="$DIR/prometheus.yml" --storage.tsdb.path="$DIR/data" \
    --storage.tsdb.retention.time=1d --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" --web.enable-lifecycle
  wait_http "$NAME" "http://127.0.0.1:$PROMETHEUS_PORT/-/ready" 60
  log "$NAME on http://127.0.0.1:$PROMETHEUS_PORT (rules: $DIR/rules.yaml)"
}

reload() {
  is_running "$NAME" || die "$NAME is not running; start it first"
  write_config
  curl -fsS -X POST "http://127.0.0.1:$PROMETHEUS_PORT/-/reload" >/dev/null || die "$NAME refused the reload; see $(logfile "$NAME")"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  reload) reload ;;
  stop) stop_bg "$NAME" ;;
  status) if is_running "$NAME"; then echo running; else echo stopped; exit 1; fi ;;
  *) echo "usage: $0 {install|start|reload|stop|status}" >&2; exit 2 ;;
esac
