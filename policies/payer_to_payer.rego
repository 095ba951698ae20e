# Payer-to-Payer API (CMS-0057-F §422.121(b)): a member's new payer, a backend service acting for its
# organisation (system/ scopes, token claim fhirwall_org or the registry's org), finds the member here with
# Patient/$member-match or Group/$bulk-member-match (HRex 1.0.0, PDex 2.1.0), sending the member's opt-in
# Consent, and then reads that member's data: five years of it, without remittance, cost-sharing, denied or
# drug prior auths (data scope payer-to-payer). The match operations are answered by fhirwall itself
# (adapters/payerexchange, obligation "adapter"); the opt-in is read from the FHIR server on every request
# (facts.patients: for each patient the request names, whether an active opt-in Consent names this payer now),
# so a revoked Consent stops the very next request.
package fhirwall.api.payer_to_payer

import rego.v1

import data.fhirwall.params
import data.fhirwall.smart

api := "payer-to-payer"

req := input.request

type := req.resource_type

served := {"read", "search-type", "paging"}

# The operations fhirwall answers itself (adapters/payerexchange), by name.
match_operations := {"member-match", "bulk-member-match", "bulk-member-match-status"}

# The organisation the caller acts for (the core's fact, from the token or the registry); none: not a payer.
payer := input.facts.payer

# The opt-in of each patient the request names, as the core read it from the FHIR server for this payer now.
opted_in(value) if input.facts.patients[patient_id(value)] == true

decision := {"allow": true, "status": 200, "reasons": ["public_discovery"], "obligations": {}} if {
	req.interaction in {"capabilities", "smart-configuration"}
} else := refuse(405, "read_only_api") if {
	req.interaction in {"create", "update", "patch", "delete", "transaction", "batch"}
} else := refuse(400, "interaction_not_served") if {
	not req.interaction in served
	not match_request
	not export_request
} else := refuse(400, "resource_type_not_served") if {
	req.interaction in {"read", "search-type"}
	not data.config.apis[api].resources[type]
	not export_request
} else := refuse(403, "patient_token_not_allowed") if {
	input.identity.patient
} else := refuse(403, "no_payer_identity") if {
	not payer
} else := refuse(403, "no_payer_identity") if {
	not system_scopes
} else := match_decision if {
	match_request
} else := export_decision if {
	export_request
} else := paging_decision if {
	req.interaction == "paging"
} else := refuse(403, "insufficient_scope") if {
	not smart.permits("system", type, smart.needed_permission)
} else := refuse(404, "not_opted_in") if {
	names_patient_not_opted_in
} else := refuse_with(400, "unsupported_parameter", sprintf("search parameter %q is not supported for %s on this API", [first_unsupported, type])) if {
	first_unsupported
} else := refuse_with(400, "patient_required", sprintf("Payer-to-Payer searches of %s name the member (%s): find it with Patient/$member-match first", [type, patient_hint])) if {
	needs_patient
} else := refuse(403, "outside_granular_scope") if {
	smart.outside_granular(granular)
} else := {"allow": true, "status": 200, "reasons": ["opted_in"], "obligations": obligations}

refuse(status, reason) := {"allow": false, "status": status, "reasons": [reason], "obligations": {}}

refuse_with(status, reason, details) := object.union(refuse(status, reason), {"details": details})

system_scopes if {
	some scope in input.identity.scopes
	scope.context == "system"
}

patient_id(value) := trim_prefix(value, "Patient/")

rate_class := object.get(input, ["client", "tier"], "default")

# --- data requests --------------------------------------------------------------------------------------

# A paging link is followed only by the client and scopes whose search created it (decision.PageOwner); its
# entries are held to the same obligations as a search's.
paging_decision := {"allow": true, "status": 200, "reasons": ["own_page"], "obligations": obligations} if {
	input.facts.page_bound_to_caller == true
} else := refuse(404, "page_not_bound_to_caller")

linking := params.patient_linking(type)

in_compartment if count(params.compartment_params) > 0

# A member named who has not opted in to this payer (or whose opt-in was revoked or ended): the same 404 as a
# member that does not exist.
names_patient_not_opted_in if {
	req.interaction == "read"
	type == "Patient"
	not opted_in(req.id)
}

names_patient_not_opted_in if {
	some param in req.params
	param.name in linking
	param.key == param.name
	some value in param.values
	not opted_in(value)
}

# Every search names the member: a compartment type by its patient parameter, Patient by _id or by the
# identifier $member-match answered with (held on the way out to opted-in members, compartment.payer).
needs_patient if {
	req.interaction == "search-type"
	type != "Patient"
	in_compartment
	not names_patient
}

needs_patient if {
	req.interaction == "search-type"
	type == "Patient"
	not names_patient
	not smart.requested("identifier")
}

names_patient if {
	some param in req.params
	param.name in linking
	param.key == param.name
}

patient_hint := "_id=<id> or identifier=<system>|<value>" if type == "Patient"

else := "patient=Patient/<id>"

unsupported contains key if some key in params.unsupported(api, type)

unsupported contains param.key if {
	some param in req.params
	param.name in linking
	param.key != param.name
}

first_unsupported := sort(unsupported)[0]

default granular := {}

granular := smart.granular_params("system", type, smart.needed_permission)

obligations := {
	"compartment": {"payer": payer},
	"narrow": sort(smart.granular_narrowing(granular)),
	"data_scope": "payer-to-payer",
	"rate_class": rate_class,
	"resource_types": smart.response_types("system", object.keys(data.config.apis[api].resources)),
	"public_types": params.public_types(api),
}

# --- member match ---------------------------------------------------------------------------------------

# HRex 1.0.0 $member-match (POST [base]/Patient/$member-match) and PDex 2.1.0 $bulk-member-match (POST
# [base]/Group/$bulk-member-match, asynchronous), whose status URL ([base]/$bulk-member-match-status?_jobId=)
# is bound by the core to the client that started the job, like a bulk export's.
match_request if {
	req.interaction == "operation"
	req.operation.name in match_operations
}

# Each answer says whether somebody is a member: the caller must hold a system scope that reads Patient.
match_decision := refuse(403, "insufficient_scope") if {
	not smart.permits("system", "Patient", "r")
} else := refuse(405, "method_not_allowed") if {
	req.operation.name in {"member-match", "bulk-member-match"}
	req.method != "POST"
} else := refuse(404, "operation_not_served") if {
	not match_at_its_level
} else := refuse_with(400, "unsupported_parameter", sprintf("parameter %q is not supported for $%s", [sort(bad_match_param)[0], req.operation.name])) if {
	count(bad_match_param) > 0
} else := refuse_with(400, "respond_async_required", "$bulk-member-match is asynchronous: send the header Prefer: respond-async") if {
	req.operation.name == "bulk-member-match"
	not input.facts.prefer_respond_async
} else := refuse(405, "method_not_allowed") if {
	req.operation.name == "bulk-member-match-status"
	req.method != "GET"
} else := refuse(404, "match_job_not_found") if {
	req.operation.name == "bulk-member-match-status"
	input.facts.match_job_bound_to_caller != true
} else := {"allow": true, "status": 200, "reasons": [concat("", ["payer_", replace(req.operation.name, "-", "_")])], "obligations": {
	"adapter": "payer-exchange",
	"rate_class": rate_class,
}}

match_at_its_level if {
	req.operation.name == "member-match"
	type == "Patient"
	req.operation.level == "type"
}

match_at_its_level if {
	req.operation.name == "bulk-member-match"
	type == "Group"
	req.operation.level == "type"
}

match_at_its_level if {
	req.operation.name == "bulk-member-match-status"
	req.operation.level == "system"
}

bad_match_param contains param.key if {
	req.operation.name in {"member-match", "bulk-member-match"}
	some param in req.params
}

bad_match_param contains param.key if {
	req.operation.name == "bulk-member-match-status"
	some param in req.params
	param.key != "_jobId"
}

# --- data export ----------------------------------------------------------------------------------------

# PDex 2.1.0 Payer-to-Payer (bulk): GET [base]/Group/[id]/$davinci-data-export of a Group the caller's own
# $bulk-member-match created; fhirwall starts the FHIR server's Bulk Data export of it and binds the job to
# the caller. Polls and output files are the FHIR server's, bound to the caller like Provider Access exports
# (another client gets the 404 of a job that does not exist), and every line is held to this payer's
# opted-in members and the data scope.
export_request if {
	req.interaction == "operation"
	req.operation.name in {"davinci-data-export", "export-poll-status"}
}

export_request if {
	req.interaction == "read"
	type == "Binary"
}

# Bulk Data 2.0 §Query Parameters: _type and _since pass on; _outputFormat only as NDJSON; exportType, when
# sent, is the one PDex names for this exchange.
export_params := {"_type", "_since", "_outputFormat", "exportType"}

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

bad_export_param contains "exportType" if {
	some param in req.params
	param.key == "exportType"
	some value in param.values
	value != "hl7.fhir.us.davinci-pdex#payertopayer"
}

bad_export_param contains "_type" if {
	some param in req.params
	param.key == "_type"
	some value in param.values
	some t in split(value, ",")
	not data.config.apis[api].resources[t]
}

bad_poll_param contains param.key if {
	some param in req.params
	param.key != "_jobId"
}

kickoff if req.operation.name == "davinci-data-export"

export_obligations := {
	"compartment": {"payer": payer},
	"data_scope": "payer-to-payer",
	"rate_class": rate_class,
	"resource_types": smart.response_types("system", object.keys(data.config.apis[api].resources)),
	"public_types": params.public_types(api),
}

export_methods := {"GET", "DELETE"} if req.operation.name == "export-poll-status"

else := {"GET"}

export_decision := refuse(405, "method_not_allowed") if {
	not req.method in export_methods
} else := refuse(403, "insufficient_scope") if {
	kickoff
	not smart.permits("system", "Group", "r")
} else := refuse(404, "operation_not_served") if {
	kickoff
	req.operation.level != "instance"
} else := refuse(404, "operation_not_served") if {
	kickoff
	type != "Group"
} else := refuse(404, "not_own_match_group") if {
	kickoff
	input.facts.group_bound_to_caller != true
} else := refuse_with(400, "unsupported_parameter", sprintf("parameter %q is not supported for $davinci-data-export on this API", [sort(bad_export_param)[0]])) if {
	kickoff
	count(bad_export_param) > 0
} else := refuse_with(400, "respond_async_required", "Bulk Data kick-off requires the header Prefer: respond-async") if {
	kickoff
	not input.facts.prefer_respond_async
} else := {"allow": true, "status": 200, "reasons": ["own_match_group"], "obligations": object.union(export_obligations, {"adapter": "payer-exchange"})} if {
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
