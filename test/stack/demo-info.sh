#!/usr/bin/env bash
# Printed by `make demo` once the stack is up: what runs where, and requests to try.
. "$(dirname "$0")/lib.sh"
cat <<MSG

fhirwall is up (all on 127.0.0.1):
  Envoy (TLS)      :$ENVOY_PORT   -> https://127.0.0.1:$ENVOY_PORT/patient-access/fhir  (CA: $FHIRWALL_STATE/tls/ca.pem)
  standalone proxy :$PROXY_HTTP_PORT   -> http://127.0.0.1:$PROXY_HTTP_PORT/patient-access/fhir
  HAPI FHIR        :$HAPI_PORT   Keycloak :$KEYCLOAK_PORT (admin/admin)   Kafka :$KAFKA_PORT   fhirwall-xds :$XDS_PORT
  logs: $FHIRWALL_STATE/log/    metrics: http://127.0.0.1:$PROXY_ADMIN_PORT/metrics
  running config (edit it: rate limits and routes reload without restart): $FHIRWALL_STATE/config/fhirwall.yaml

Try it (curl trusts Envoy's certificate through the stack's own CA):
  CA=$FHIRWALL_STATE/tls/ca.pem
  # a member's app logs member01 in (authorization code + PKCE against Keycloak) and gets an access token
  TOKEN=\$(go run ./test/demo/token member01)

  # the member's own claims: 200, narrowed to Patient/member-01
  curl -s --cacert \$CA -H "Authorization: Bearer \$TOKEN" https://127.0.0.1:$ENVOY_PORT/patient-access/fhir/ExplanationOfBenefit | head -c 600; echo

  # another member's claim: 404 OperationOutcome, the same as for a claim that does not exist
  curl -si --cacert \$CA -H "Authorization: Bearer \$TOKEN" https://127.0.0.1:$ENVOY_PORT/patient-access/fhir/ExplanationOfBenefit/eob-member-02-1
  curl -si --cacert \$CA -H "Authorization: Bearer \$TOKEN" https://127.0.0.1:$ENVOY_PORT/patient-access/fhir/ExplanationOfBenefit/no-such-claim

  # no token: 401 OperationOutcome
  curl -si --cacert \$CA https://127.0.0.1:$ENVOY_PORT/patient-access/fhir/ExplanationOfBenefit

  # the same requests in standalone mode (plain HTTP): http://127.0.0.1:$PROXY_HTTP_PORT/patient-access/fhir/...

  # the audit stream: one record per request, keyed by patient
  go run ./test/demo/audit-tail
  # is the trail intact? (hash chain, signed checkpoints, the spool's signed head)
  .fhirwall/bin/fhirwall audit verify -kafka 127.0.0.1:$KAFKA_PORT -key .fhirwall/audit/signing.key.pub -head .fhirwall/audit/spool/head.json
  # who saw member-01's data, and the CMS Patient Access figures
  .fhirwall/bin/fhirwall audit query -kafka 127.0.0.1:$KAFKA_PORT -patient member-01
  .fhirwall/bin/fhirwall audit report cms-patient-access -year $(date -u +%Y) -kafka 127.0.0.1:$KAFKA_PORT

Stop everything with: make stack-down
MSG
