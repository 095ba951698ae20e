package fhirwall.api.payer_to_payer_test

import rego.v1

import data.fhirwall.authz
import data.fhirwall.testdata as td

payer_b := {
	"client_id": "payer-b", "subject": "svc-b", "org": "Organization/payer-b",
	"scopes": [td.scope("system", "*", "rs")],
}

# The core's facts for payer-b: p2p-exact opted in to payer-b; p2p-notopted did not.
facts := {"payer": "Organization/payer-b", "patients": {"p2p-exact": true, "p2p-notopted": false}}

config := {"apis": {"payer-to-payer": {"resources": {
	"Patient": {"search_params": ["_id", "identifier"]},
	"ExplanationOfBenefit": {"search_params": ["_id", "patient", "created"]},
	"Observation": {"search_params": ["_id", "patient", "category"]},
	"Organization": {"search_params": ["_id", "name"], "public": true},
}}}}

decide_with(identity, req, f) := d if {
	d := authz.decision with input as {"api": "payer-to-payer", "authenticated": true, "identity": identity, "request": req, "facts": f}
		with data.config as config
}

decide(identity, req) := decide_with(identity, req, facts)

search(type, params) := td.request("search-type", type, "", params)

read(type, id) := td.request("read", type, id, [])

p(name, values) := td.param(name, name, values)

op(method, type, id, name, level, params) := object.union(td.request("operation", type, id, params), {
	"method": method, "operation": {"name": name, "level": level},
})

member_match := op("POST", "Patient", "", "member-match", "type", [])

test_opted_in_member_data_is_held_to_the_payers_opt_ins if {
	d := decide(payer_b, search("ExplanationOfBenefit", [p("patient", ["Patient/p2p-exact"])]))
	d.allow == true
	d.reasons == ["opted_in"]
	d.obligations.compartment == {"payer": "Organization/payer-b"}
	d.obligations.data_scope == "payer-to-payer"
	d.obligations.public_types == ["Organization"]
}

test_member_who_did_not_opt_in_is_not_found if {
	d := decide(payer_b, search("ExplanationOfBenefit", [p("patient", ["p2p-notopted"])]))
	d.status == 404
	d.reasons == ["not_opted_in"]
	r := decide(payer_b, read("Patient", "p2p-notopted"))
	r.status == 404
}

test_opted_in_patient_read_is_allowed if {
	decide(payer_b, read("Patient", "p2p-exact")).allow == true
}

test_every_search_names_the_member if {
	d := decide(payer_b, search("ExplanationOfBenefit", []))
	d.status == 400
	d.reasons == ["patient_required"]
	contains(d.details, "$member-match")
	q := decide(payer_b, search("Patient", []))
	q.reasons == ["patient_required"]
	contains(q.details, "identifier=")
}

test_patient_search_by_member_identifier_is_held_on_the_way_out if {
	d := decide(payer_b, search("Patient", [p("identifier", ["https://payer-a.example.org/member-id|P2P-1001"])]))
	d.allow == true
	d.obligations.compartment == {"payer": "Organization/payer-b"}
}

test_modifier_on_the_patient_parameter_is_refused if {
	d := decide(payer_b, search("ExplanationOfBenefit", [td.param("patient:missing", "patient", ["true"])]))
	d.status == 400
	d.reasons == ["unsupported_parameter"]
}

test_unlisted_parameter_is_refused if {
	d := decide(payer_b, search("ExplanationOfBenefit", [p("patient", ["p2p-exact"]), p("_has:Claim:patient:_id", ["x"])]))
	d.status == 400
}

test_member_and_provider_tokens_are_refused if {
	decide_with(td.member01, read("Patient", "member-01"), {}).reasons == ["patient_token_not_allowed"]
	decide_with(td.org_a, member_match, {}).reasons == ["no_payer_identity"]
	decide_with(td.dr_smith, read("Patient", "p2p-exact"), {}).reasons == ["no_payer_identity"]
	user_scopes := object.union(payer_b, {"scopes": [td.scope("user", "*", "rs")]})
	decide(user_scopes, read("Patient", "p2p-exact")).reasons == ["no_payer_identity"]
}

test_read_only_and_served_interactions_only if {
	decide(payer_b, td.request("create", "Patient", "", [])).status == 405
	decide(payer_b, td.request("history-instance", "Patient", "p2p-exact", [])).reasons == ["interaction_not_served"]
	decide(payer_b, read("Condition", "c1")).reasons == ["resource_type_not_served"]
}

test_scope_for_the_type_is_needed if {
	eob_only := object.union(payer_b, {"scopes": [td.scope("system", "ExplanationOfBenefit", "rs")]})
	decide(eob_only, read("Patient", "p2p-exact")).reasons == ["insufficient_scope"]
}

test_granular_scope_is_narrowed if {
	labs := object.union(payer_b, {"scopes": [td.granular("system", "Observation", "rs", {"category": ["laboratory"]})]})
	d := decide(labs, search("Observation", [p("patient", ["p2p-exact"])]))
	d.obligations.narrow == [{"param": "category", "value": "laboratory"}]
	decide(labs, search("Observation", [p("patient", ["p2p-exact"]), p("category", ["vital-signs"])])).reasons == ["outside_granular_scope"]
}

test_paging_is_the_searchers_own if {
	page := td.request("paging", "", "", [])
	decide_with(payer_b, page, object.union(facts, {"page_bound_to_caller": true})).allow == true
	decide_with(payer_b, page, object.union(facts, {"page_bound_to_caller": false})).status == 404
}

test_member_match_is_answered_by_the_adapter if {
	d := decide(payer_b, member_match)
	d.allow == true
	d.reasons == ["payer_member_match"]
	d.obligations == {"adapter": "payer-exchange", "rate_class": "default"}
}

test_member_match_needs_post_its_level_and_a_patient_scope if {
	decide(payer_b, op("GET", "Patient", "", "member-match", "type", [])).status == 405
	decide(payer_b, op("POST", "Patient", "x", "member-match", "instance", [])).reasons == ["operation_not_served"]
	decide(payer_b, op("POST", "Group", "", "member-match", "type", [])).reasons == ["operation_not_served"]
	decide(payer_b, op("POST", "Patient", "", "member-match", "type", [p("_format", ["json"])])).reasons == ["unsupported_parameter"]
	groups_only := object.union(payer_b, {"scopes": [td.scope("system", "Group", "rs")]})
	decide(groups_only, member_match).reasons == ["insufficient_scope"]
}

test_bulk_member_match_is_asynchronous if {
	bulk := op("POST", "Group", "", "bulk-member-match", "type", [])
	decide(payer_b, bulk).reasons == ["respond_async_required"]
	d := decide_with(payer_b, bulk, object.union(facts, {"prefer_respond_async": true}))
	d.allow == true
	d.obligations.adapter == "payer-exchange"
}

test_bulk_match_status_is_the_starters_own if {
	poll := op("GET", "", "", "bulk-member-match-status", "system", [p("_jobId", ["j1"])])
	decide_with(payer_b, poll, object.union(facts, {"match_job_bound_to_caller": true})).allow == true
	decide_with(payer_b, poll, object.union(facts, {"match_job_bound_to_caller": false})).status == 404
	decide_with(payer_b, op("DELETE", "", "", "bulk-member-match-status", "system", [p("_jobId", ["j1"])]), object.union(facts, {"match_job_bound_to_caller": true})).status == 405
	decide_with(payer_b, op("GET", "", "", "bulk-member-match-status", "system", [p("other", ["1"])]), object.union(facts, {"match_job_bound_to_caller": true})).status == 400
}

export := op("GET", "Group", "g1", "davinci-data-export", "instance", [])

own_group := object.union(facts, {"group_bound_to_caller": true, "prefer_respond_async": true})

test_data_export_of_the_payers_own_match_group if {
	d := decide_with(payer_b, export, own_group)
	d.allow == true
	d.obligations.adapter == "payer-exchange"
	d.obligations.compartment == {"payer": "Organization/payer-b"}
	d.obligations.data_scope == "payer-to-payer"
}

test_data_export_of_another_group_is_not_found if {
	decide_with(payer_b, export, object.union(facts, {"group_bound_to_caller": false, "prefer_respond_async": true})).reasons == ["not_own_match_group"]
}

with_params(params) := op("GET", "Group", "g1", "davinci-data-export", "instance", params)

test_data_export_checks_its_parameters if {
	decide_with(payer_b, with_params([p("exportType", ["hl7.fhir.us.davinci-pdex#payertopayer"]), p("_type", ["ExplanationOfBenefit,Patient"])]), own_group).allow == true
	decide_with(payer_b, with_params([p("exportType", ["hl7.fhir.us.davinci-pdex#provider-download"])]), own_group).status == 400
	decide_with(payer_b, with_params([p("_type", ["Consent"])]), own_group).status == 400
	decide_with(payer_b, with_params([p("_outputFormat", ["text/csv"])]), own_group).status == 400
	decide_with(payer_b, with_params([p("_typeFilter", ["x"])]), own_group).status == 400
	decide_with(payer_b, export, object.union(own_group, {"prefer_respond_async": false})).reasons == ["respond_async_required"]
	decide_with(payer_b, op("GET", "Group", "", "davinci-data-export", "type", []), own_group).reasons == ["operation_not_served"]
	decide_with(payer_b, op("GET", "Patient", "g1", "davinci-data-export", "instance", []), own_group).reasons == ["operation_not_served"]
	decide_with(payer_b, op("POST", "Group", "g1", "davinci-data-export", "instance", []), own_group).status == 405
	groups_less := object.union(payer_b, {"scopes": [td.scope("system", "Patient", "rs")]})
	decide_with(groups_less, export, own_group).reasons == ["insufficient_scope"]
}

test_export_status_and_files_are_the_starters_own if {
	poll := op("GET", "", "", "export-poll-status", "system", [p("_jobId", ["j"])])
	decide_with(payer_b, poll, object.union(facts, {"export_job_bound_to_caller": true})).reasons == ["export_job_owner"]
	decide_with(payer_b, poll, object.union(facts, {"export_job_bound_to_caller": false})).status == 404
	decide_with(payer_b, op("GET", "", "", "export-poll-status", "system", [p("x", ["1"])]), facts).status == 400
	file := read("Binary", "b1")
	decide_with(payer_b, file, object.union(facts, {"export_file_bound_to_caller": true})).reasons == ["export_file_owner"]
	decide_with(payer_b, file, facts).status == 404
}

test_discovery_is_public if {
	decide_with({}, td.request("capabilities", "", "", []), {}).allow == true
}
