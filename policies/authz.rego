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
} else := data.fhirwall.api[api_packages[policy_api]].decision

# A sandbox API (config apis[].sandbox_of, named "<base>-sandbox") is decided by its base API's policy;
# fhirwall itself holds its answers to synthetic data. A sandbox of a sandbox, or one named otherwise, has
# no policy (config validation refuses both; this is the policy's own guard).
policy_api := base if {
	base := data.config.apis[input.api].sandbox_of
	input.api == concat("", [base, "-sandbox"])
	not data.config.apis[base].sandbox_of
} else := input.api if {
	not data.config.apis[input.api].sandbox_of
}

refuse(status, reason) := {"allow": false, "status": status, "reasons": [reason], "obligations": {}}
