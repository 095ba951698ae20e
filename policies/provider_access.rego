# Provider Access API (CMS-0057-F §422.121(a)): an in-network provider's system reads the data of the
# patients attributed to it who have not opted out. The provider is a backend service acting for an
# organisation (system/ scopes, token claim fhirwall_org) or a practitioner signed in through an app (user/
# scopes, fhirUser Practitioner/...). Attribution and opt-outs arrive as facts (input.facts): for each patient
# the request names, whether it is attributed to the provider and has not opted out (facts.patients), never
# the whole attribution list, which for a provider organisation holds tens of thousands of members.
package fhirwall.api.provider_access

import rego.v1

import data.fhirwall.params
import data.fhirwall.smart

api := "provider-access"

req := input.request

type := req.resource_type

writes := {"create", "update", "patch", "delete", "transaction"}

served := {"read", "search-type", "paging"}

# The scope context a provider's token acts in.
scope_context := "system" if {
	input.identity.org
} else := "user" if {
	startswith(object.get(input.identity, "fhir_user", ""), "Practitioner/")
}

# CMS-0057-F: only attributed members who have not opted out are shared with providers. The core answers the
# question for each patient the request names (facts.patients: id -> bool) from its membership cache.
permitted(value) if input.facts.patients[patient_id(value)] == true

decision := {"allow": true, "status": 200, "reasons": ["public_discovery"], "obligations": {}} if {
	req.interaction in {"capabilities", "smart-configuration"}
} else := refuse(405, "read_only_api") if {
	req.interaction in writes
} else := export_decision if {
	export_request
} else := refuse(400, "interaction_not_served") if {
	not req.interaction in served
} else := paging_decision if {
	req.interaction == "paging"
} else := refuse(400, "resource_type_not_served") if {
	not data.config.apis[api].resources[type]
} else := refuse(403, "no_provider_identity") if {
	not scope_context
} else := refuse(403, "insufficient_scope") if {
	not smart.permits(scope_context, type, smart.needed_permission)
} else := refuse(403, "no_attributed_patients") if {
	not input.facts.has_permitted
} else := refuse(404, "not_attributed") if {
	names_unpermitted_patient
} else := refuse_with(400, "unsupported_parameter", sprintf("search parameter %q is not supported for %s on this API", [first_unsupported, type])) if {
	first_unsupported
} else := refuse_with(400, "patient_required", sprintf("Provider Access searches of %s name a patient (patient=Patient/<id>); for every attributed member, export the attribution group: GET [base]/Group/%s/$export", [type, input.facts.attribution_group])) if {
	needs_patient
} else := refuse(403, "outside_granular_scope") if {
	smart.outside_granular(granular)
} else := {"allow": true, "status": 200, "reasons": ["attributed"], "obligations": obligations}

# A paging link is followed only by the client, provider and scopes whose search created it (bound when the
# page was answered, decision.PageOwner); any other caller gets the 404 of a page that does not exist. The
# page's entries are held to the same obligations as a search's.
paging_decision := refuse(403, "no_provider_identity") if {
	not scope_context
} else := {"allow": true, "status": 200, "reasons": ["own_page"], "obligations": obligations} if {
	input.facts.page_bound_to_caller == true
} else := refuse(404, "page_not_bound_to_caller")

refuse(status, reason) := {"allow": false, "status": status, "reasons": [reason], "obligations": {}}

refuse_with(status, reason, details) := object.union(refuse(status, reason), {"details": details})

linking := params.patient_linking(type)

in_compartment if count(params.compartment_params) > 0

patient_id(value) := trim_prefix(value, "Patient/")

# Any patient named that is not attributed to this provider, or opted out: the same 404 as a missing one.
names_unpermitted_patient if {
	req.interaction == "read"
	type == "Patient"
	not permitted(req.id)
}

names_unpermitted_patient if {
	some param in req.params
	param.name in linking
	param.key == param.name
	some value in param.values
	not permitted(value)
}

# A search of a compartment type names its patients: narrowing it to every attributed member would put tens
# of thousands of ids in a URL. Bulk export is the way to everybody's data.
needs_patient if {
	req.interaction == "search-type"
	type != "Patient"
	in_compartment
	not names_patient
}

names_patient if {
	some param in req.params
	param.name in linking
	param.key == param.name
}

unsupported contains key if some key in params.unsupported(api, type)

unsupported contains param.key if {
	some param in req.params
	param.name in linking
	param.key != param.name
}

first_unsupported := sort(unsupported)[0]

requested(name) := smart.requested(name)

# Granular scopes hold on Provider Access as on Patient Access (SMART 2.x §Finer-grained resource constraints).
default granular := {}

granular := smart.granular_params(scope_context, type, smart.needed_permission)

# A Patient search that names no _id is narrowed on the FHIR server through the attribution Group (R4
# §3.1.1.4.9 reverse chaining), whatever its size; members who opted out, or who are in the Group but not
# attributed to this practitioner, are withheld on the way out (compartment.provider). Other searches name
# their patients (needs_patient), and reads are judged on the resource the FHIR server returns.
narrowing contains {"param": "_has:Group:member:_id", "value": input.facts.attribution_group} if {
	type == "Patient"
	req.interaction == "search-type"
	not requested("_id")
}

obligations := {
	"compartment": {"provider": input.facts.provider},
	"narrow": sort(narrowing | smart.granular_narrowing(granular)),
	"data_scope": "provider-access",
	"rate_class": object.get(input, ["client", "tier"], "default"),
	"resource_types": smart.response_types(scope_context, object.keys(data.config.apis[api].resources)),
	"public_types": params.public_types(api),
}

# Bulk Data Access 2.0 for providers (CMS-0057-F Provider Access: "bulk $export of the provider's attribution
# group"). A provider may export its own attribution Group only; the status URL and every output file are
# bound by the core to the client that started the job (facts export_job_bound_to_caller,
# export_file_bound_to_caller), and another client, even a valid one, gets the same 404 as an unknown job.
export_request if {
	req.interaction == "operation"
	req.operation.name in {"export", "export-poll-status"}
}

export_request if {
	req.interaction == "read"
	type == "Binary"
}

kickoff if req.operation.name == "export"

# Bulk Data 2.0 §Query Parameters: the ones fhirwall passes on. _outputFormat only as NDJSON, which response
# enforcement filters line by line.
export_params := {"_type", "_since", "_outputFormat"}

ndjson_formats := {"application/fhir+ndjson", "application/ndjson", "ndjson"}

bad_export_param contains param.key if {
	some param in req.params
	not param.key in export_params
}

bad_export_param contains "_outputFormat" if {
	some param in req.params
	param.key == "_outputFormat"
	some value in param.values
	not value in ndjson_formats
}

bad_poll_param contains param.key if {
	some param in req.params
	param.key != "_jobId"
}

export_obligations := {
	"compartment": {"provider": input.facts.provider},
	"data_scope": "provider-access",
	"rate_class": object.get(input, ["client", "tier"], "default"),
	"resource_types": smart.response_types(scope_context, object.keys(data.config.apis[api].resources)),
	"public_types": params.public_types(api),
}

# Bulk Data 2.0 §Bulk Data Kick-off Request; FHIR-NOTES: a patient-scoped token never starts an export.
export_decision := refuse(403, "patient_token_cannot_export") if {
	input.identity.patient
} else := refuse(403, "no_provider_identity") if {
	not scope_context
} else := refuse(405, "method_not_allowed") if {
	not req.method in export_methods
} else := refuse(403, "export_not_allowed") if {
	kickoff
	not group_kickoff
} else := refuse(403, "insufficient_scope") if {
	kickoff
	not smart.permits(scope_context, "Group", "r")
} else := refuse(404, "not_own_attribution_group") if {
	kickoff
	not own_group
} else := refuse_with(400, "unsupported_parameter", sprintf("parameter %q is not supported for $export on this API", [sort(bad_export_param)[0]])) if {
	kickoff
	count(bad_export_param) > 0
} else := refuse_with(400, "respond_async_required", "Bulk Data kick-off requires the header Prefer: respond-async") if {
	kickoff
	not input.facts.prefer_respond_async
} else := {"allow": true, "status": 200, "reasons": ["own_attribution_group"], "obligations": export_obligations} if {
	kickoff
} else := refuse(400, "unsupported_parameter") if {
	req.interaction == "operation"
	count(bad_poll_param) > 0
} else := {"allow": true, "status": 200, "reasons": ["export_job_owner"], "obligations": export_obligations} if {
	req.interaction == "operation"
	req.operation.level == "system"
	input.facts.export_job_bound_to_caller == true
} else := {"allow": true, "status": 200, "reasons": ["export_file_owner"], "obligations": export_obligations} if {
	req.interaction == "read"
	input.facts.export_file_bound_to_caller == true
} else := refuse(404, "export_not_found")

# Bulk Data 2.0 §Delete a Bulk Data Request: DELETE on the status URL cancels (owner only, like a poll).
# Kick-off by POST (a Parameters body) is not served.
export_methods := {"GET", "DELETE"} if req.operation.name == "export-poll-status"

else := {"GET"}

group_kickoff if {
	type == "Group"
	req.operation.level == "instance"
}

own_group if {
	input.facts.attribution_group != ""
	req.id == input.facts.attribution_group
}
