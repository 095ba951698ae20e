#!/usr/bin/env bash
# Printed by `make demo` once the stack is up: what runs where, and requests to try.
. "$(dirname "$0")/lib.sh"
cat <<MSG

fhirwall is up (all on 127.0.0.1):
  Envoy            :$ENVOY_PORT   -> http://127.0.0.1:$ENVOY_PORT/patient-access/fhir
  standalone proxy :$PROXY_HTTP_PORT   -> http://127.0.0.1:$PROXY_HTTP_PORT/patient-access/fhir
  HAPI FHIR        :$HAPI_PORT   Keycloak :$KEYCLOAK_PORT (admin/admin)   Kafka :$KAFKA_PORT   fhirwall-xds :$XDS_PORT
  logs: $FHIRWALL_STATE/log/

Try it:
  # a member's app logs member01 in (authorization code + PKCE against Keycloak) and gets an access token
  TOKEN=\$(go run ./test/demo/token member01)

  # the member's own claims: 200, narrowed to Patient/member-01
  curl -s -H "Authorization: Bearer \$TOKEN" http://127.0.0.1:$ENVOY_PORT/patient-access/fhir/ExplanationOfBenefit | head -c 600; echo

  # another member's claim: 404 OperationOutcome, the same as for a claim that does not exist
  curl -si -H "Authorization: Bearer \$TOKEN" http://127.0.0.1:$ENVOY_PORT/patient-access/fhir/ExplanationOfBenefit/eob-member-02-1
  curl -si -H "Authorization: Bearer \$TOKEN" http://127.0.0.1:$ENVOY_PORT/patient-access/fhir/ExplanationOfBenefit/no-such-claim

  # no token: 401 OperationOutcome
  curl -si http://127.0.0.1:$ENVOY_PORT/patient-access/fhir/ExplanationOfBenefit

  # the same requests in standalone mode: replace :$ENVOY_PORT with :$PROXY_HTTP_PORT

  # the audit stream: one record per request, keyed by patient
  go run ./test/demo/audit-tail

Stop everything with: make stack-down
MSG
