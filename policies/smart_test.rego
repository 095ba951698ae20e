package fhirwall.smart_test

import rego.v1

import data.fhirwall.smart
import data.fhirwall.testdata as td

test_wildcard_scope_permits_any_type if {
	smart.permits("patient", "Observation", "r") with input as {"identity": {"scopes": [td.scope("patient", "*", "rs")]}}
}

test_read_scope_does_not_permit_search if {
	not smart.permits("patient", "Patient", "s") with input as {"identity": {"scopes": [td.scope("patient", "Patient", "r")]}}
}

test_other_context_does_not_permit if {
	not smart.permits("patient", "Patient", "r") with input as {"identity": {"scopes": [td.scope("user", "Patient", "rs")]}}
}

test_granular_scope_permits_but_restricts if {
	scopes := [td.granular("patient", "Observation", "rs", {"category": ["laboratory"]})]
	smart.permits("patient", "Observation", "s") with input as {"identity": {"scopes": scopes}}
	not smart.unrestricted("patient", "Observation", "s") with input as {"identity": {"scopes": scopes}}
	smart.granular_params("patient", "Observation", "s") == {"category": {"laboratory"}} with input as {"identity": {"scopes": scopes}}
}

test_unrestricted_scope_has_no_granular_params if {
	scopes := [td.granular("patient", "Observation", "rs", {"category": ["laboratory"]}), td.scope("patient", "*", "rs")]
	smart.granular_params("patient", "Observation", "s") == {} with input as {"identity": {"scopes": scopes}}
}

test_needed_permission if {
	every interaction, want in {
		"read": "r", "vread": "r", "history-instance": "r",
		"search-type": "s", "search-compartment": "s", "search-system": "s", "history-type": "s",
		"create": "c", "update": "u", "patch": "u", "delete": "d",
	} {
		smart.needed_permission == want with input as {"request": {"interaction": interaction}}
	}
}
