package fhirwall.api.patient_access_test

import rego.v1

import data.fhirwall.authz
import data.fhirwall.testdata as td

decide(identity, req) := d if {
	d := authz.decision with input as td.patient_access(identity, req) with data.config as td.config
}

search(type, params) := td.request("search-type", type, "", params)

read(type, id) := td.request("read", type, id, [])

p(name, values) := td.param(name, name, values)

member_with(scopes) := object.union(td.member01, {"scopes": scopes})

lab := "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"

# --- what a member may do -----------------------------------------------------------------------------------

test_member_searches_own_eobs_narrowed_to_self if {
	d := decide(td.member01, search("ExplanationOfBenefit", []))
	d.allow == true
	d.obligations.narrow == [{"param": "patient", "value": "member-01"}]
	d.obligations.compartment == {"patient": "member-01"}
	d.obligations.data_scope == "patient-access"
	d.obligations.rate_class == "default"
}

test_rate_class_comes_from_the_client_tier if {
	d := authz.decision with input as object.union(td.patient_access(td.member01, search("Observation", [])), {"client": {"tier": "gold"}})
		with data.config as td.config
	d.obligations.rate_class == "gold"
}

test_member_search_naming_self_is_allowed if {
	d := decide(td.member01, search("ExplanationOfBenefit", [p("patient", ["Patient/member-01"])]))
	d.allow == true
}

test_patient_search_is_narrowed_by_id if {
	d := decide(td.member01, search("Patient", []))
	d.obligations.narrow == [{"param": "_id", "value": "member-01"}]
}

test_compartment_search_is_not_served if {
	every id in ["member-01", "member-02"] {
		req := object.union(td.request("search-compartment", "Observation", "", []), {"compartment": {"type": "Patient", "id": id}})
		d := decide(td.member01, req)
		d.status == 400
		d.reasons == ["interaction_not_served"]
	}
}

test_read_own_patient_is_allowed_without_narrowing if {
	d := decide(td.member01, read("Patient", "member-01"))
	d.allow == true
	d.obligations.narrow == []
}

test_read_of_compartment_type_must_match_the_patient if {
	d := decide(td.member01, read("ExplanationOfBenefit", "eob-x"))
	d.allow == true
	d.obligations.narrow == [{"param": "patient", "value": "member-01"}]
}

test_read_of_type_outside_the_compartment_is_not_narrowed if {
	d := decide(td.member01, read("Practitioner", "pract-01"))
	d.allow == true
	d.obligations.narrow == []
}

test_supported_parameters_and_result_controls_pass if {
	d := decide(td.member01, search("Observation", [p("code", ["4548-4"]), p("_count", ["10"]), td.param("code:text", "code", ["a1c"])]))
	d.allow == true
}

test_capabilities_and_discovery_are_public if {
	every interaction in ["capabilities", "smart-configuration"] {
		d := authz.decision with input as {"api": "patient-access", "authenticated": false, "request": td.request(interaction, "", "", [])}
			with data.config as td.config
		d.allow == true
	}
}

# --- "not yours" is "not found" -----------------------------------------------------------------------------

test_search_naming_other_patient_is_404 if {
	d := decide(td.member01, search("ExplanationOfBenefit", [p("patient", ["member-02"])]))
	d.status == 404
	d.reasons == ["not_this_patient"]
}

test_or_list_with_other_patient_is_404 if {
	d := decide(td.member01, search("Observation", [p("subject", ["member-01", "member-02"])]))
	d.status == 404
}

test_repeated_param_with_other_patient_is_404 if {
	d := decide(td.member01, search("Observation", [p("subject", ["member-01"]), p("subject", ["Patient/member-02"])]))
	d.status == 404
}

test_other_compartment_parameter_naming_other_patient_is_404 if {
	d := decide(td.member01, search("Coverage", [p("subscriber", ["member-02"])]))
	d.status == 404
}

test_patient_search_by_other_id_is_404 if {
	d := decide(td.member01, search("Patient", [p("_id", ["member-02"])]))
	d.status == 404
}

test_read_other_patient_is_404 if {
	d := decide(td.member01, read("Patient", "member-02"))
	d.status == 404
}

# --- scopes ---------------------------------------------------------------------------------------------------

test_token_without_patient_is_403 if {
	d := decide(object.remove(td.member01, ["patient"]), search("Observation", []))
	d.status == 403
	d.reasons == ["no_patient_context"]
}

test_scope_for_other_type_is_403 if {
	d := decide(member_with([td.scope("patient", "Coverage", "rs")]), search("ExplanationOfBenefit", []))
	d.reasons == ["insufficient_scope"]
}

test_user_scope_does_not_work_on_patient_access if {
	d := decide(member_with([td.scope("user", "*", "rs")]), read("Observation", "o-1"))
	d.status == 403
}

test_read_scope_does_not_allow_search if {
	d := decide(member_with([td.scope("patient", "Observation", "r")]), search("Observation", []))
	d.status == 403
}

test_search_scope_does_not_allow_read if {
	d := decide(member_with([td.scope("patient", "Observation", "s")]), read("Observation", "o-1"))
	d.status == 403
}

test_granular_scope_narrows_a_search_without_category if {
	d := decide(member_with([td.granular("patient", "Observation", "rs", {"category": [lab]})]), search("Observation", []))
	d.allow == true
	d.obligations.narrow == [
		{"param": "category", "value": lab},
		{"param": "patient", "value": "member-01"},
	]
}

test_granular_scopes_union_their_values if {
	scopes := [
		td.granular("patient", "Observation", "rs", {"category": ["vital-signs"]}),
		td.granular("patient", "Observation", "rs", {"category": ["laboratory"]}),
	]
	d := decide(member_with(scopes), search("Observation", []))
	{"param": "category", "value": "laboratory,vital-signs"} in d.obligations.narrow
}

test_granular_scope_allows_a_granted_category if {
	d := decide(member_with([td.granular("patient", "Observation", "rs", {"category": [lab]})]), search("Observation", [p("category", [lab])]))
	d.allow == true
	d.obligations.narrow == [{"param": "patient", "value": "member-01"}]
}

test_granular_scope_refuses_another_category if {
	scopes := [td.granular("patient", "Observation", "rs", {"category": [lab]})]
	d := decide(member_with(scopes), search("Observation", [p("category", ["social-history"])]))
	d.status == 403
	d.reasons == ["outside_granular_scope"]
}

test_granular_scope_narrows_a_read if {
	d := decide(member_with([td.granular("patient", "Observation", "rs", {"category": [lab]})]), read("Observation", "o-1"))
	{"param": "category", "value": lab} in d.obligations.narrow
}

test_unrestricted_scope_lifts_granular_restriction if {
	scopes := [td.granular("patient", "Observation", "rs", {"category": [lab]}), td.scope("patient", "Observation", "rs")]
	d := decide(member_with(scopes), search("Observation", [p("category", ["social-history"])]))
	d.allow == true
}

# --- what the API does not serve ----------------------------------------------------------------------------

test_writes_are_405 if {
	every interaction in ["create", "update", "patch", "delete", "transaction"] {
		d := decide(member_with([td.scope("patient", "*", "cruds")]), td.request(interaction, "Observation", "o-1", []))
		d.status == 405
		d.reasons == ["read_only_api"]
	}
}

test_vread_and_instance_history_are_served_without_narrowing if {
	every interaction in ["vread", "history-instance"] {
		d := decide(td.member01, td.request(interaction, "Observation", "o-1", []))
		d.allow == true
		d.obligations.narrow == []
		d.obligations.compartment == {"patient": "member-01"}
	}
}

test_history_of_another_patient_is_404 if {
	d := decide(td.member01, td.request("history-instance", "Patient", "member-02", []))
	d.status == 404
}

test_own_page_is_served if {
	d := authz.decision with input as object.union(td.patient_access(td.member01, td.request("paging", "", "", [])), {"facts": {"page_bound_to_caller": true}})
		with data.config as td.config
	d.allow == true
	d.obligations.compartment == {"patient": "member-01"}
}

test_someone_elses_page_is_404 if {
	every facts in [{"page_bound_to_caller": false}, {}] {
		d := authz.decision with input as object.union(td.patient_access(td.member01, td.request("paging", "", "", [])), {"facts": facts})
			with data.config as td.config
		d.status == 404
		d.reasons == ["page_not_bound_to_caller"]
	}
}

test_interactions_not_served_are_400 if {
	every interaction in ["history-type", "history-system", "search-system", "operation", "batch"] {
		d := decide(td.member01, td.request(interaction, "Observation", "o-1", []))
		d.status == 400
		d.reasons == ["interaction_not_served"]
	}
}

test_type_not_served_is_400 if {
	d := decide(td.member01, search("Group", []))
	d.status == 400
	d.reasons == ["resource_type_not_served"]
}

test_unknown_parameter_is_400_and_named if {
	d := decide(td.member01, search("Observation", [p("code", ["x"]), p("focus", ["y"])]))
	d.status == 400
	d.reasons == ["unsupported_parameter"]
	contains(d.details, `"focus"`)
}

test_modifier_on_patient_param_is_refused if {
	d := decide(td.member01, search("Observation", [object.union(p("patient", ["member-01"]), {"key": "patient:missing", "modifier": "missing"})]))
	d.status == 400
}

test_type_modifier_and_chain_on_subject_are_refused if {
	chained := object.union(p("subject", ["Smith"]), {"key": "subject:Patient.name", "target_type": "Patient", "chain": ["name"]})
	d := decide(td.member01, search("Observation", [chained]))
	d.status == 400
	contains(d.details, "subject:Patient.name")
}

test_chain_on_other_parameter_is_refused if {
	chained := object.union(p("code", ["x"]), {"key": "code.system", "chain": ["system"]})
	d := decide(td.member01, search("Observation", [chained]))
	d.status == 400
}

test_reverse_chain_is_refused if {
	has := object.union(p("_has", ["1234"]), {"key": "_has:Observation:patient:code", "has": {"target_type": "Observation", "ref_param": "patient", "param": "code"}})
	d := decide(td.member01, search("Patient", [has]))
	d.status == 400
}

test_includes_are_served_and_filtered_on_the_way_out if {
	d := decide(td.member01, search("ExplanationOfBenefit", [p("_include", ["ExplanationOfBenefit:*"]), p("_revinclude", ["Provenance:target"])]))
	d.allow == true
	d.obligations.compartment == {"patient": "member-01"}
}

test_include_with_an_unknown_modifier_is_refused if {
	d := decide(td.member01, search("ExplanationOfBenefit", [object.union(p("_include", ["ExplanationOfBenefit:*"]), {"key": "_include:recurse", "modifier": "recurse"})]))
	d.status == 400
}

test_token_in_query_is_refused if {
	d := decide(td.member01, search("Observation", [p("access_token", ["x"])]))
	d.status == 400
}

test_modifier_on_result_control_is_refused if {
	d := decide(td.member01, search("Observation", [object.union(p("_count", ["1"]), {"key": "_count:x", "modifier": "x"})]))
	d.status == 400
}

# --- what may leave (Invariant 2) ----------------------------------------------------------------------------

test_obligations_name_the_types_the_token_reveals if {
	scopes := [
		td.scope("patient", "Patient", "rs"),
		td.granular("patient", "Observation", "rs", {"category": ["vital-signs"]}),
		td.scope("patient", "Condition", "c"),
	]
	d := decide(member_with(scopes), search("Patient", []))
	d.allow == true
	d.obligations.resource_types == {"Patient": {}, "Observation": {"category": ["vital-signs"]}}
}

test_obligations_name_the_public_reference_types_of_the_api if {
	d := decide(td.member01, search("Patient", []))
	d.obligations.public_types == ["Practitioner"]
}

test_wildcard_scope_reveals_every_served_type_and_no_other if {
	d := decide(td.member01, search("Patient", []))
	d.obligations.resource_types == {t: {} | some t, _ in td.config.apis["patient-access"].resources}
	not d.obligations.resource_types.AuditEvent
	not d.obligations.resource_types["*"]
}

test_modifier_on_a_granular_parameter_is_refused if {
	scopes := [td.granular("patient", "Observation", "rs", {"category": ["vital-signs"]})]
	every key in ["category:not", "category:missing", "category:text", "category:in", "category:below"] {
		param := object.union(td.param(key, "category", ["vital-signs"]), {"modifier": split(key, ":")[1]})
		d := decide(member_with(scopes), search("Observation", [param]))
		d.allow == false
		d.status == 403
		d.reasons == ["outside_granular_scope"]
	}
}

test_paging_carries_the_types_the_token_reveals if {
	scopes := [td.scope("patient", "Patient", "rs")]
	d := authz.decision with input as object.union(td.patient_access(member_with(scopes), td.request("paging", "", "", [])), {"facts": {"page_bound_to_caller": true}})
		with data.config as td.config
	d.allow == true
	d.obligations.resource_types == {"Patient": {}}
}
