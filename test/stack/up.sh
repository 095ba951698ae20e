#!/usr/bin/env bash
# Bring up the whole default stack on loopback, once: Kafka, Keycloak and HAPI FHIR (started side by side),
# PostgreSQL and Redis, the seed data, then fhirwall-xds, fhirwall-proxy, the global rate limiter and Envoy;
# the profile validator the prior-auth API asks starts beside the JVMs. Idempotent: what runs already is left alone.
. "$(dirname "$0")/lib.sh"
S=$FHIRWALL_ROOT/test/stack
t0=$(date +%s)

# The JVMs start in parallel; each script waits for its own health check.
pids=()
for svc in kafka keycloak hapi validator; do
  bash "$S/$svc.sh" start >"$FHIRWALL_STATE/log/$svc-start.log" 2>&1 &
  pids+=("$!:$svc")
done
bash "$S/postgres.sh" start >/dev/null
bash "$S/redis.sh" start >/dev/null # the global rate limit's counters
# Meanwhile, the Go binaries and Envoy get built and installed.
bash "$S/fhirwall.sh" build
bash "$S/envoy.sh" install
bash "$S/ratelimit.sh" install
bash "$S/jaeger.sh" install # the trace collector, built once from its Go module
failed=0
for p in "${pids[@]}"; do
  if ! wait "${p%%:*}"; then
    log "${p#*:} failed to start:"; cat "$FHIRWALL_STATE/log/${p#*:}-start.log" >&2; failed=1
  fi
done
[ "$failed" = 0 ] || die "stack did not come up; logs in $FHIRWALL_STATE/log"

(cd "$FHIRWALL_ROOT" && go run ./test/seed -fhir "http://127.0.0.1:$HAPI_PORT/fhir") || die "seed data was refused"
bash "$S/jaeger.sh" start # before fhirwall and Envoy, which export their spans to it
# fhirwall itself is always restarted, so the binaries just built are the ones tested.
bash "$S/fhirwall.sh" stop
bash "$S/fhirwall.sh" reset-config
bash "$S/fhirwall.sh" start
bash "$S/ratelimit.sh" start # after fhirwall-xds, which serves it its limits
bash "$S/envoy.sh" start
bash "$S/envoy.sh" wait-ready
log "stack up in $(( $(date +%s) - t0 ))s"
