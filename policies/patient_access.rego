# Patient Access API (CMS-0057-F): a member's app, with patient/ scopes, sees only that member's data.
package fhirwall.api.patient_access

import rego.v1

import data.fhirwall.smart

# The resource types this API serves so far, each with the search parameter that names the patient.
patient_param := {
	"Patient": "_id",
	"Coverage": "patient",
	"ExplanationOfBenefit": "patient",
	"Condition": "patient",
	"Observation": "patient",
}

# Parameters that name a patient, whatever the type; a value other than the token's patient is refused
# with the same 404 a missing resource gets, so a search cannot tell "not yours" from "does not exist".
patient_naming_params := {"_id", "patient", "subject", "beneficiary"}

patient := input.identity.patient

decision := {"allow": true, "status": 200, "reasons": ["capabilities_public"], "obligations": {}} if {
	input.request.interaction == "capabilities"
} else := refuse(400, "interaction_not_served") if {
	# Old versions can belong to another patient; vread waits for response enforcement.
	not input.request.interaction in {"read", "search-type"}
} else := refuse(400, "resource_type_not_served") if {
	not patient_param[input.request.resource_type]
} else := refuse(403, "no_patient_context") if {
	not patient
} else := refuse(403, "insufficient_scope") if {
	not smart.permits("patient", input.request.resource_type, smart.needed_permission)
} else := refuse(404, "not_this_patient") if {
	names_other_patient
} else := refuse(400, "unsupported_parameter") if {
	count(unsupported_params) > 0
} else := {"allow": true, "status": 200, "reasons": ["patient_scope"], "obligations": obligations}

refuse(status, reason) := {"allow": false, "status": status, "reasons": [reason], "obligations": {}}

# Every resource returned must be in the token patient's compartment. "narrow" names the search parameter
# that ties the type to the patient: a search is sent upstream with it set (or overwritten) by the proxy,
# and a read is only answered if the resource matches it. A Patient read was checked by id above.
obligations := {"compartment": {"patient": patient}} if {
	input.request.interaction == "read"
	input.request.resource_type == "Patient"
} else := {"compartment": {"patient": patient}, "narrow": {"param": patient_param[input.request.resource_type], "value": patient}}

names_other_patient if {
	input.request.resource_type == "Patient"
	input.request.interaction in {"read", "vread"}
	input.request.id != patient
}

names_other_patient if {
	some name, values in input.request.params
	base_name(name) in patient_naming_params
	some value in values
	some one in split(value, ",")
	not one in {patient, concat("/", ["Patient", patient])}
}

# Modifiers and chains on patient parameters (patient:missing, subject:Patient.name, patient.name) and
# reverse chains are ways around narrowing; until the full parser lands they are not supported.
unsupported_params contains name if {
	some name, _ in input.request.params
	base_name(name) in patient_naming_params
	name != base_name(name)
}

unsupported_params contains name if {
	some name, _ in input.request.params
	startswith(name, "_has")
}

unsupported_params contains name if {
	some name, _ in input.request.params
	name in {"access_token", "_include", "_revinclude"}
}

base_name(name) := regex.split(`[:.]`, name)[0]
