#!/usr/bin/env bash
# Printed by `make demo` once the stack is up: what runs where, and requests to try.
. "$(dirname "$0")/lib.sh"
cat <<MSG

fhirwall is up (all on 127.0.0.1):
  Envoy (TLS)      :$ENVOY_PORT   -> https://127.0.0.1:$ENVOY_PORT/patient-access/fhir  (CA: $FHIRWALL_STATE/tls/ca.pem)
  standalone proxy :$PROXY_HTTP_PORT   -> http://127.0.0.1:$PROXY_HTTP_PORT/patient-access/fhir
  developer portal :9443    -> https://127.0.0.1:9443/  (sign in: dev-dana, rev-riley or member01; see below)
  HAPI FHIR        :$HAPI_PORT   Keycloak :$KEYCLOAK_PORT (admin/admin)   Kafka :$KAFKA_PORT   fhirwall-xds :$XDS_PORT
  logs: $FHIRWALL_STATE/log/    metrics: http://127.0.0.1:$PROXY_ADMIN_PORT/metrics
  traces (Jaeger's API): http://127.0.0.1:$JAEGER_QUERY_PORT/api/traces/<trace_id from the request's audit record>
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

  # Prior Authorization: provider organisation A submits a PAS request Bundle for member-05 (an MRI of the brain: the
  # rules in config/prior-auth-rules.yaml approve it at once, reviewAction A1 with an authorization number)
  PTOKEN=\$(go run ./test/demo/token -backend provider-org-a)
  curl -s --cacert \$CA -H "Authorization: Bearer \$PTOKEN" -H 'Content-Type: application/fhir+json' --data-binary @<(sed 's/"99212"/"70551"/' test/priorauth/testdata/request-medicalservices.json) https://127.0.0.1:$ENVOY_PORT/prior-auth/fhir/Claim/\\\$submit | head -c 900; echo
  # the same request for a CABG (CPT 33510) is pended for review; reviewers list and decide the queue
  sed 's/"99212"/"33510"/' test/priorauth/testdata/request-medicalservices.json | curl -s --cacert \$CA -H "Authorization: Bearer \$PTOKEN" -H 'Content-Type: application/fhir+json' --data-binary @- https://127.0.0.1:$ENVOY_PORT/prior-auth/fhir/Claim/\\\$submit >/dev/null
  .fhirwall/bin/fhirwall prior-auth queue -token-file .fhirwall/admin/prior-auth.token
  .fhirwall/bin/fhirwall prior-auth decide -token-file .fhirwall/admin/prior-auth.token -id <id from the queue> -verdict approved -reviewer you

  # Apps: open https://127.0.0.1:9443/ in a browser (it trusts the stack's CA only if you import $FHIRWALL_STATE/tls/ca.pem).
  # dev-dana / password registers a sandbox app, rev-riley / password reviews production requests, member01 /
  # fhirwall-demo sees and revokes their connected apps. Or register a sandbox app with Dynamic Client Registration:
  curl -s --cacert \$CA -H 'Content-Type: application/json' https://127.0.0.1:9443/register -d '{"client_name":"My app","redirect_uris":["http://127.0.0.1:9300/callback"],"token_endpoint_auth_method":"none","grant_types":["authorization_code"],"scope":"openid launch/patient patient/*.rs","contacts":["me@example.org"]}'
  # the app registry (each app's Keycloak sync state: .fhirwall/bin/fhirwall apps show -id <client id>)
  .fhirwall/bin/fhirwall apps list -token-file .fhirwall/admin/admin.token

  # the audit stream: one record per request, keyed by patient
  go run ./test/demo/audit-tail
  # is the trail intact? (hash chain, signed checkpoints, the spool's signed head)
  .fhirwall/bin/fhirwall audit verify -kafka 127.0.0.1:$KAFKA_PORT -key .fhirwall/audit/signing.key.pub -head .fhirwall/audit/spool/head.json
  # who saw member-01's data, and the CMS Patient Access figures
  .fhirwall/bin/fhirwall audit query -kafka 127.0.0.1:$KAFKA_PORT -patient member-01
  .fhirwall/bin/fhirwall audit report cms-patient-access -year $(date -u +%Y) -kafka 127.0.0.1:$KAFKA_PORT

Stop everything with: make stack-down
MSG
