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

test_granular_scope_does_not_widen if {
	granular := object.union(td.scope("patient", "Observation", "rs"), {"params": {"category": ["laboratory"]}})
	not smart.permits("patient", "Observation", "s") with input as {"identity": {"scopes": [granular]}}
}

test_needed_permission if {
	smart.needed_permission == "r" with input as {"request": {"interaction": "read"}}
	smart.needed_permission == "r" with input as {"request": {"interaction": "vread"}}
	smart.needed_permission == "s" with input as {"request": {"interaction": "search-type"}}
}
