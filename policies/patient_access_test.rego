package fhirwall.api.patient_access_test

import rego.v1

import data.fhirwall.authz
import data.fhirwall.testdata as td

decide(identity, req) := d if {
	d := authz.decision with input as td.patient_access(identity, req)
}

test_member_searches_own_eobs_narrowed_to_self if {
	d := decide(td.member01, td.request("search-type", "ExplanationOfBenefit", "", {}))
	d.allow == true
	d.obligations.narrow == {"param": "patient", "value": "member-01"}
	d.obligations.compartment == {"patient": "member-01"}
}

test_member_search_naming_self_is_allowed if {
	d := decide(td.member01, td.request("search-type", "ExplanationOfBenefit", "", {"patient": ["Patient/member-01"]}))
	d.allow == true
}

test_member_search_of_other_patient_is_404 if {
	d := decide(td.member01, td.request("search-type", "ExplanationOfBenefit", "", {"patient": ["member-02"]}))
	d.allow == false
	d.status == 404
}

test_or_list_with_other_patient_is_404 if {
	d := decide(td.member01, td.request("search-type", "Observation", "", {"patient": ["member-01,member-02"]}))
	d.status == 404
}

test_repeated_param_with_other_patient_is_404 if {
	d := decide(td.member01, td.request("search-type", "Observation", "", {"subject": ["member-01", "Patient/member-02"]}))
	d.status == 404
}

test_patient_search_by_other_id_is_404 if {
	d := decide(td.member01, td.request("search-type", "Patient", "", {"_id": ["member-02"]}))
	d.status == 404
}

test_read_own_patient_is_allowed if {
	d := decide(td.member01, td.request("read", "Patient", "member-01", {}))
	d.allow == true
	d.obligations.compartment == {"patient": "member-01"}
	not d.obligations.narrow
}

test_read_other_patient_is_404 if {
	d := decide(td.member01, td.request("read", "Patient", "member-02", {}))
	d.status == 404
}

test_read_of_eob_must_match_the_patient if {
	d := decide(td.member01, td.request("read", "ExplanationOfBenefit", "eob-x", {}))
	d.allow == true
	d.obligations.compartment == {"patient": "member-01"}
	d.obligations.narrow == {"param": "patient", "value": "member-01"}
}

test_vread_waits_for_response_enforcement if {
	d := decide(td.member01, td.request("vread", "ExplanationOfBenefit", "eob-x", {}))
	d.status == 400
	d.reasons == ["interaction_not_served"]
}

test_type_not_served_is_400 if {
	d := decide(td.member01, td.request("search-type", "Group", "", {}))
	d.status == 400
	d.reasons == ["resource_type_not_served"]
}

test_token_without_patient_is_403 if {
	d := decide(object.remove(td.member01, ["patient"]), td.request("search-type", "Observation", "", {}))
	d.status == 403
	d.reasons == ["no_patient_context"]
}

test_scope_for_other_type_is_403 if {
	id := object.union(td.member01, {"scopes": [td.scope("patient", "Coverage", "rs")]})
	d := decide(id, td.request("search-type", "ExplanationOfBenefit", "", {}))
	d.status == 403
	d.reasons == ["insufficient_scope"]
}

test_user_scope_does_not_work_on_patient_access if {
	id := object.union(td.member01, {"scopes": [td.scope("user", "*", "rs")]})
	d := decide(id, td.request("read", "Observation", "o-1", {}))
	d.status == 403
}

test_read_scope_does_not_allow_search if {
	id := object.union(td.member01, {"scopes": [td.scope("patient", "Observation", "r")]})
	d := decide(id, td.request("search-type", "Observation", "", {}))
	d.status == 403
}

test_modifier_on_patient_param_is_refused if {
	d := decide(td.member01, td.request("search-type", "Observation", "", {"patient:missing": ["member-01"]}))
	d.allow == false
}

test_chain_on_subject_is_refused if {
	d := decide(td.member01, td.request("search-type", "Observation", "", {"subject.name": ["member-01"]}))
	d.allow == false
}

test_reverse_chain_is_refused if {
	d := decide(td.member01, td.request("search-type", "Patient", "", {"_has:Observation:patient:code": ["1234"]}))
	d.status == 400
}

test_includes_are_refused_until_response_filtering if {
	d := decide(td.member01, td.request("search-type", "ExplanationOfBenefit", "", {"_include": ["ExplanationOfBenefit:*"]}))
	d.status == 400
}

test_token_in_query_is_refused if {
	d := decide(td.member01, td.request("search-type", "Observation", "", {"access_token": ["x"]}))
	d.status == 400
}
