package fhirwall.api.provider_access_test

import rego.v1

import data.fhirwall.authz
import data.fhirwall.testdata as td

decide(identity, req) := d if {
	d := authz.decision with input as td.provider_access(identity, req) with data.config as td.config
}

search(type, params) := td.request("search-type", type, "", params)

read(type, id) := td.request("read", type, id, [])

p(name, values) := td.param(name, name, values)

permitted := "member-01,member-04"

test_org_search_is_narrowed_to_attributed_not_opted_out if {
	d := decide(td.org_a, search("ExplanationOfBenefit", []))
	d.allow == true
	d.obligations.narrow == [{"param": "patient", "value": permitted}]
	d.obligations.compartment == {"patients": ["member-01", "member-04"]}
	d.obligations.data_scope == "provider-access"
}

test_patient_search_is_narrowed_by_id if {
	d := decide(td.org_a, search("Patient", []))
	d.obligations.narrow == [{"param": "_id", "value": permitted}]
}

test_naming_an_attributed_patient_keeps_the_clients_narrowing if {
	d := decide(td.org_a, search("Observation", [p("patient", ["Patient/member-04"])]))
	d.allow == true
	d.obligations.narrow == []
}

test_opted_out_member_is_not_found if {
	every req in [read("Patient", "member-05"), search("Observation", [p("patient", ["member-05"])])] {
		d := decide(td.org_a, req)
		d.status == 404
		d.reasons == ["not_attributed"]
	}
}

test_unattributed_member_is_not_found if {
	d := decide(td.org_a, search("Observation", [p("subject", ["member-01", "member-02"])]))
	d.status == 404
}

test_read_of_compartment_type_is_narrowed if {
	d := decide(td.org_a, read("ExplanationOfBenefit", "eob-1"))
	d.allow == true
	d.obligations.narrow == [{"param": "patient", "value": permitted}]
}

test_practitioner_with_user_scopes_acts_as_provider if {
	d := decide(td.dr_smith, search("Observation", []))
	d.allow == true
}

test_patient_token_is_no_provider if {
	d := decide(td.member01, search("Observation", []))
	d.status == 403
	d.reasons == ["no_provider_identity"]
}

test_patient_scopes_do_not_work_for_a_provider if {
	id := object.union(td.org_a, {"scopes": [td.scope("patient", "*", "rs")]})
	d := decide(id, search("Observation", []))
	d.reasons == ["insufficient_scope"]
}

test_no_attributed_patients_refuses_searches if {
	d := authz.decision with input as object.union(td.provider_access(td.org_a, search("Observation", [])), {"facts": {"attributed_patients": [], "opted_out": []}})
		with data.config as td.config
	d.status == 403
	d.reasons == ["no_attributed_patients"]
}

test_writes_are_405 if {
	d := decide(td.org_a, td.request("create", "Observation", "", []))
	d.status == 405
}

test_unserved_interactions_and_types if {
	decide(td.org_a, td.request("history-type", "Observation", "", [])).status == 400
	decide(td.org_a, search("Group", [])).reasons == ["resource_type_not_served"]
}

test_unknown_parameter_is_named if {
	d := decide(td.org_a, search("Observation", [p("focus", ["x"])]))
	d.status == 400
	contains(d.details, `"focus"`)
}

test_modifier_on_patient_param_is_refused if {
	d := decide(td.org_a, search("Observation", [object.union(p("patient", ["member-01"]), {"key": "patient:missing", "modifier": "missing"})]))
	d.status == 400
}

test_discovery_is_public if {
	d := authz.decision with input as {"api": "provider-access", "authenticated": false, "request": td.request("capabilities", "", "", [])}
	d.allow == true
}

test_non_compartment_type_is_not_narrowed if {
	d := decide(td.org_a, search("Practitioner", []))
	d.allow == true
	d.obligations.narrow == []
}
