# Patient Access API (CMS-0057-F §422.119(a)): a member's app, holding patient/ scopes, reads that member's
# data and nothing else. The API is read-only.
package fhirwall.api.patient_access

import rego.v1

import data.fhirwall.params
import data.fhirwall.smart

api := "patient-access"

req := input.request

type := req.resource_type

patient := input.identity.patient

writes := {"create", "update", "patch", "delete"}

# Reads, vreads, instance history and searches; every answer goes through response enforcement, which drops
# whatever is not in the patient's compartment (old versions, _include/_revinclude results). Paging links are
# served to the client and patient whose search created them. Not served: type and system history (whole
# tables of other patients to filter), operations and batches (not yet), and compartment search
# ([base]/Patient/[id]/[type]), which HAPI's JPA server does not implement.
served := {"read", "vread", "history-instance", "search-type", "paging"}

decision := {"allow": true, "status": 200, "reasons": ["public_discovery"], "obligations": {}} if {
	req.interaction in {"capabilities", "smart-configuration"}
} else := refuse(405, "read_only_api") if {
	req.interaction in writes
} else := refuse(405, "read_only_api") if {
	req.interaction == "transaction"
} else := refuse(400, "interaction_not_served") if {
	not req.interaction in served
} else := refuse(403, "no_patient_context") if {
	not patient
} else := paging_decision if {
	req.interaction == "paging"
} else := refuse(400, "resource_type_not_served") if {
	not data.config.apis[api].resources[type]
} else := refuse(403, "insufficient_scope") if {
	not smart.permits("patient", type, smart.needed_permission)
} else := refuse(404, "not_this_patient") if {
	names_other_patient
} else := refuse_with(400, "unsupported_parameter", sprintf("search parameter %q is not supported for %s on this API", [first_unsupported, type])) if {
	first_unsupported
} else := refuse(403, "outside_granular_scope") if {
	outside_granular_scope
} else := {"allow": true, "status": 200, "reasons": ["patient_scope"], "obligations": obligations}

# A paging link is followed only by the client and patient whose search created it (bound when the page was
# answered); any other caller gets the 404 of a page that does not exist.
paging_decision := {"allow": true, "status": 200, "reasons": ["own_page"], "obligations": obligations} if {
	input.facts.page_bound_to_caller == true
} else := refuse(404, "page_not_bound_to_caller")

refuse(status, reason) := {"allow": false, "status": status, "reasons": [reason], "obligations": {}}

refuse_with(status, reason, details) := object.union(refuse(status, reason), {"details": details})

# --- the patient -------------------------------------------------------------------------------------------

linking := params.patient_linking(type)

in_compartment if count(linking) > 0

own_reference(value) if value in {patient, concat("/", ["Patient", patient])}

# A value other than the token's patient, anywhere a patient is named: the same 404 a missing resource gets,
# so "not yours" cannot be told from "does not exist".
names_other_patient if {
	req.interaction in {"read", "vread", "history-instance"}
	type == "Patient"
	req.id != patient
}

names_other_patient if {
	some param in req.params
	param.name in linking
	param.key == param.name # other forms are refused as unsupported below
	some value in param.values
	not own_reference(value)
}

# --- parameters --------------------------------------------------------------------------------------------

unsupported contains key if {
	some key in params.unsupported(api, type)
	not include_key(key)
}

# _include and _revinclude are served (CARIN BB requires _include=ExplanationOfBenefit:*): what they add is
# filtered on the way out like every other entry.
include_key(key) if key in {"_include", "_revinclude", "_include:iterate", "_revinclude:iterate"}

# On a parameter that names the patient, only the plain form is accepted: modifiers, chains and type
# modifiers are ways around narrowing (patient:missing, subject:Patient.name, subject.name).
unsupported contains param.key if {
	some param in req.params
	param.name in linking
	param.key != param.name
}

first_unsupported := sort(unsupported)[0]

# --- granular scopes ---------------------------------------------------------------------------------------

default granular := {}

granular := smart.granular_params("patient", type, smart.needed_permission)

outside_granular_scope if smart.outside_granular(granular)

granular_narrowing := smart.granular_narrowing(granular)

# --- obligations -------------------------------------------------------------------------------------------

# The parameter the proxy sets (overwriting the client's) so a search or read matches only this patient.
patient_narrowing contains {"param": "_id", "value": patient} if {
	type == "Patient"
	req.interaction == "search-type"
}

patient_narrowing contains {"param": "patient", "value": patient} if {
	type != "Patient"
	in_compartment
	req.interaction in {"search-type", "read"}
}

# Every resource that leaves is held to the token's scope for its own type (resource_types), whatever brought
# it (_include, _revinclude, :iterate, a page, a history version); types outside the Patient compartment leave
# only when the API's config names them public reference data (public_types).
obligations := {
	"compartment": {"patient": patient},
	"narrow": sort(patient_narrowing | granular_narrowing),
	"data_scope": "patient-access",
	"rate_class": object.get(input, ["client", "tier"], "default"),
	"resource_types": smart.response_types("patient", object.keys(data.config.apis[api].resources)),
	"public_types": params.public_types(api),
}
