# Provider Access API (CMS-0057-F §422.121(a)): an in-network provider's system reads the data of the
# patients attributed to it who have not opted out. The provider is a backend service acting for an
# organisation (system/ scopes, token claim fhirwall_org) or a practitioner signed in through an app (user/
# scopes, fhirUser Practitioner/...). Attribution and opt-outs arrive as facts (input.facts).
package fhirwall.api.provider_access

import rego.v1

import data.fhirwall.params
import data.fhirwall.smart

api := "provider-access"

req := input.request

type := req.resource_type

writes := {"create", "update", "patch", "delete", "transaction"}

served := {"read", "search-type"}

# The scope context a provider's token acts in.
scope_context := "system" if {
	input.identity.org
} else := "user" if {
	startswith(object.get(input.identity, "fhir_user", ""), "Practitioner/")
}

opted_out := {p | some p in input.facts.opted_out}

# CMS-0057-F: attributed members who opted out are never shared with providers.
permitted := {p | some p in input.facts.attributed_patients; not p in opted_out}

decision := {"allow": true, "status": 200, "reasons": ["public_discovery"], "obligations": {}} if {
	req.interaction in {"capabilities", "smart-configuration"}
} else := refuse(405, "read_only_api") if {
	req.interaction in writes
} else := refuse(400, "interaction_not_served") if {
	not req.interaction in served
} else := refuse(400, "resource_type_not_served") if {
	not data.config.apis[api].resources[type]
} else := refuse(403, "no_provider_identity") if {
	not scope_context
} else := refuse(403, "insufficient_scope") if {
	not smart.permits(scope_context, type, smart.needed_permission)
} else := refuse(403, "no_attributed_patients") if {
	count(permitted) == 0
} else := refuse(404, "not_attributed") if {
	names_unpermitted_patient
} else := refuse_with(400, "unsupported_parameter", sprintf("search parameter %q is not supported for %s on this API", [first_unsupported, type])) if {
	first_unsupported
} else := {"allow": true, "status": 200, "reasons": ["attributed"], "obligations": obligations}

refuse(status, reason) := {"allow": false, "status": status, "reasons": [reason], "obligations": {}}

refuse_with(status, reason, details) := object.union(refuse(status, reason), {"details": details})

linking := params.patient_linking(type)

in_compartment if count(params.compartment_params) > 0

patient_id(value) := trim_prefix(value, "Patient/")

# Any patient named that is not attributed to this provider, or opted out: the same 404 as a missing one.
names_unpermitted_patient if {
	req.interaction == "read"
	type == "Patient"
	not req.id in permitted
}

names_unpermitted_patient if {
	some param in req.params
	param.name in linking
	param.key == param.name
	some value in param.values
	not patient_id(value) in permitted
}

unsupported contains key if some key in params.unsupported(api, type)

unsupported contains param.key if {
	some param in req.params
	param.name in linking
	param.key != param.name
}

first_unsupported := sort(unsupported)[0]

requested(name) if {
	some param in req.params
	param.name == name
}

# Searches and reads are narrowed to the permitted patients unless the client already named only permitted
# ones with the same parameter.
narrowing contains {"param": "_id", "value": concat(",", sort(permitted))} if {
	type == "Patient"
	req.interaction == "search-type"
	not requested("_id")
}

narrowing contains {"param": "patient", "value": concat(",", sort(permitted))} if {
	type != "Patient"
	in_compartment
	not requested("patient")
}

obligations := {
	"compartment": {"patients": sort(permitted)},
	"narrow": sort(narrowing),
	"data_scope": "provider-access",
	"rate_class": object.get(input, ["client", "tier"], "default"),
}
