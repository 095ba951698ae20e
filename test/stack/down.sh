#!/usr/bin/env bash
# Stop everything up.sh started. Data stays under .fhirwall/ for the next start.
. "$(dirname "$0")/lib.sh"
S=$FHIRWALL_ROOT/test/stack
bash "$S/replicas.sh" stop >/dev/null 2>&1 || true # several replicas, if a test left them (docs/replicas.md)
bash "$S/envoy.sh" stop || true
bash "$S/fhirwall.sh" stop || true
bash "$S/ratelimit.sh" stop || true
bash "$S/jaeger.sh" stop || true
for svc in validator hapi keycloak kafka; do bash "$S/$svc.sh" stop || true; done
bash "$S/postgres.sh" stop || true
bash "$S/redis.sh" stop || true
