# The entry point of every request decision. fhirwall evaluates data.fhirwall.authz.decision with the input
# described in README.md and enforces the result: allow or refuse with status, and the obligations.
package fhirwall.authz

import rego.v1

# Rego packages cannot contain "-": API names map to the package that decides for them.
api_packages := {"patient-access": "patient_access", "provider-access": "provider_access", "payer-to-payer": "payer_to_payer", "prior-auth": "prior_auth"}

# Deny by default: an API without a package, or a package without an answer, refuses.
default decision := {"allow": false, "status": 403, "reasons": ["no_policy_for_api"], "obligations": {}}

decision := refuse(401, "unauthenticated") if {
	not input.request.interaction in {"capabilities", "smart-configuration"}
	not input.authenticated
} else := data.fhirwall.api[api_packages[input.api]].decision

refuse(status, reason) := {"allow": false, "status": status, "reasons": [reason], "obligations": {}}
