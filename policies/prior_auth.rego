# Prior Authorization API (CMS-0057-F §422.122, Da Vinci PAS 2.0.1): a provider asks this payer for prior
# authorization. The caller acts for a provider: a backend service for its organisation (system/ scopes,
# facts.provider Organization/<id>, from the token's fhirwall_org or the registry) or a clinician signed in
# through an app (user/ scopes, facts.provider the fhirUser Practitioner/<id>). Members never call it: they
# see their prior authorizations through Patient Access.
#
# fhirwall answers every allowed request itself (adapters/priorauth, obligation "adapter"); the adapter holds
# each request to the provider that submitted it (an $inquire or Subscription of another provider: 404).
# Served: POST Claim/$submit and Claim/$inquire (type level, PAS 2.0.1 §Operations), and the caller's own
# Subscriptions (Subscriptions Backport R4): create, read, delete. Nothing else.
package fhirwall.api.prior_auth

import rego.v1

import data.fhirwall.smart

req := input.request

type := req.resource_type

writes := {"create", "update", "patch", "delete", "transaction", "batch"}

# The PAS operations (by name, without the $) and the permission on Claim each needs: $submit creates a
# request, $inquire is a POST that only reads (SMART 2.x: v1 write grants c, v1 read grants r).
operation_permission := {"submit": "c", "inquire": "r"}

# The Subscription interactions served and the permission each needs.
subscription_permission := {"create": "c", "read": "r", "delete": "d"}

operation_request if {
	req.interaction == "operation"
	type == "Claim"
	req.operation.level == "type"
	operation_permission[req.operation.name]
}

subscription_request if {
	type == "Subscription"
	subscription_permission[req.interaction]
	not req.conditional
}

served if operation_request

served if subscription_request

# The type and permission the request needs a scope for.
needed := {"type": "Claim", "permission": operation_permission[req.operation.name]} if operation_request

else := {"type": "Subscription", "permission": subscription_permission[req.interaction]}

# The scope context the provider acts in (the core's fact, decision.providerOf).
scope_context := "system" if {
	startswith(input.facts.provider, "Organization/")
} else := "user" if {
	startswith(input.facts.provider, "Practitioner/")
}

decision := {"allow": true, "status": 200, "reasons": ["public_discovery"], "obligations": {}} if {
	req.interaction in {"capabilities", "smart-configuration"}
} else := refuse(405, "interaction_not_served") if {
	req.interaction in writes
	not served
} else := refuse(400, "interaction_not_served") if {
	not served
} else := refuse(403, "patient_token_not_allowed") if {
	input.identity.patient
} else := refuse(403, "no_provider_identity") if {
	not scope_context
} else := refuse(405, "method_not_allowed") if {
	# FHIR R4 §Operations: an operation that changes state is POSTed; PAS answers a Bundle sent in the body.
	operation_request
	req.method != "POST"
} else := refuse_with(400, "unsupported_parameter", sprintf("parameter %q is not supported on this API: the request goes in the body", [sort(params)[0]])) if {
	count(params) > 0
} else := refuse(403, "insufficient_scope") if {
	not smart.permits(scope_context, needed.type, needed.permission)
} else := {"allow": true, "status": 200, "reasons": [reason], "obligations": {
	"adapter": "prior-auth",
	"rate_class": object.get(input, ["client", "tier"], "default"),
}}

refuse(status, reason) := {"allow": false, "status": status, "reasons": [reason], "obligations": {}}

refuse_with(status, reason, details) := object.union(refuse(status, reason), {"details": details})

params := {param.key | some param in req.params}

reason := concat("", ["prior_auth_", req.operation.name]) if operation_request

else := concat("", ["prior_auth_subscription_", req.interaction])
