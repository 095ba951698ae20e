# Inputs shared by the policy tests.
package fhirwall.testdata

import rego.v1

scope(context, type, perms) := {
	"raw": sprintf("%s/%s.%s", [context, type, perms]),
	"context": context, "resource_type": type,
	"permissions": {p: true | some p in split(perms, "")},
}

granular(context, type, perms, params) := object.union(scope(context, type, perms), {"params": params})

member01 := {
	"client_id": "patient-app", "subject": "u-1", "patient": "member-01",
	"scopes": [scope("patient", "*", "rs")],
}

# The compartment parameters internal/fhir generates from the R4 CompartmentDefinition, for the types used here.
patient_params := {
	"Patient": ["link"],
	"Observation": ["subject", "performer"],
	"ExplanationOfBenefit": ["patient", "payee"],
	"Coverage": ["policy-holder", "subscriber", "beneficiary", "payor"],
	"Condition": ["patient", "asserter"],
}

param(key, name, values) := {"key": key, "name": name, "modifier": "", "target_type": "", "chain": [], "values": values}

request(interaction, type, id, params) := {
	"method": "GET", "interaction": interaction, "resource_type": type, "id": id, "version_id": "",
	"conditional": false, "params": params, "patient_params": object.get(patient_params, type, []),
}

patient_access(identity, req) := {"api": "patient-access", "authenticated": true, "identity": identity, "request": req}

org_a := {
	"client_id": "provider-org-a", "subject": "svc-a", "org": "Organization/org-a",
	"scopes": [scope("system", "*", "rs")],
}

dr_smith := {
	"client_id": "provider-app", "subject": "u-dr", "fhir_user": "Practitioner/pract-01",
	"scopes": [scope("user", "*", "rs")],
}

# The core's facts for org-a (attributed: member-01, -04, -05; member-05 and -12 opted out), for the patients
# the tests name.
org_a_facts := {
	"provider": "Organization/org-a", "attribution_group": "attribution-org-a", "has_permitted": true,
	"patients": {"member-01": true, "member-04": true, "member-05": false, "member-12": false, "member-02": false},
}

provider_access(identity, req) := {
	"api": "provider-access", "authenticated": true, "identity": identity, "request": req,
	"facts": org_a_facts,
}

config := {"apis": {
	"provider-access": {"resources": {
		"Patient": {"search_params": ["_id", "identifier", "name"]},
		"ExplanationOfBenefit": {"search_params": ["_id", "patient", "type"]},
		"Observation": {"search_params": ["_id", "patient", "subject", "category", "code"]},
		"Practitioner": {"search_params": ["_id", "name"], "public": true},
	}},
	"patient-access": {"resources": {
		"Patient": {"search_params": ["_id", "identifier", "name", "birthdate", "gender"]},
		"ExplanationOfBenefit": {"search_params": ["_id", "patient", "identifier", "type", "service-date", "_lastUpdated"]},
		"Coverage": {"search_params": ["_id", "patient", "beneficiary"]},
		"Condition": {"search_params": ["_id", "patient", "category", "code", "clinical-status"]},
		"Observation": {"search_params": ["_id", "patient", "subject", "category", "code", "date", "status"]},
		"Practitioner": {"search_params": ["_id", "identifier", "name"], "public": true},
		"Organization": {"search_params": ["_id", "name"], "public": false},
	}},
}}
