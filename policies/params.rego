# Search-parameter checks shared by the APIs. A parameter is allowed only if the API's configuration lists it
# for the resource type (data.config.apis[api].resources[type].search_params) or it is a harmless result
# control. Everything else is refused and named.
package fhirwall.params

import rego.v1

# Result controls that change the shape of a page, never which resources match.
result_controls := {"_count", "_sort", "_summary", "_elements", "_total", "_format"}

# Modifiers that narrow or reword a match on the parameter's own value; never a way to reach other resources.
value_modifiers := {"", "exact", "contains", "text", "not", "missing", "above", "below", "in", "not-in", "of-type", "identifier"}

# unsupported(api, type): the request's parameters this API does not accept, by key.
unsupported(api, type) := {param.key |
	some param in input.request.params
	not acceptable(api, type, param)
}

acceptable(_, _, param) if {
	param.name in result_controls
	param.modifier == ""
}

acceptable(api, type, param) if {
	not param.name in result_controls
	param.name in data.config.apis[api].resources[type].search_params # the list itself: a set of it costs more per request
	param.modifier in value_modifiers
	count(param.chain) == 0
	not param.has
	object.get(param, "target_type", "") == ""
}

# patient_linking(type): the parameters of a request that link a resource of this type to a patient: the
# compartment parameters (generated from the R4 CompartmentDefinition), "patient" for every compartment type
# (R4 defines it as the patient-only form of subject, beneficiary, ...) and _id for Patient itself.
patient_linking(type) := (compartment_params | {"patient" | count(compartment_params) > 0}) | {"_id" | type == "Patient"}

compartment_params := {p | some p in input.request.patient_params}

# public_types(api): the resource types the API's config names public reference data (Practitioner,
# Organization, Location): they carry no patient's data, so they may leave without a compartment. Every other
# type outside the Patient compartment is withheld from answers.
public_types(api) := sort([type |
	some type, resource in data.config.apis[api].resources
	object.get(resource, "public", false) == true
])
