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

org_a := {"provider": "Organization/org-a"}

test_org_search_of_a_named_member_is_held_to_the_providers_members if {
	d := decide(td.org_a, search("ExplanationOfBenefit", [p("patient", ["member-01"])]))
	d.allow == true
	d.obligations.narrow == []
	d.obligations.compartment == org_a
	d.obligations.data_scope == "provider-access"
}

test_search_naming_no_patient_points_to_the_group_export if {
	d := decide(td.org_a, search("ExplanationOfBenefit", []))
	d.status == 400
	d.reasons == ["patient_required"]
	contains(d.details, "Group/attribution-org-a/$export")
}

test_patient_search_is_narrowed_through_the_attribution_group if {
	d := decide(td.org_a, search("Patient", []))
	d.obligations.narrow == [{"param": "_has:Group:member:_id", "value": "attribution-org-a"}]
	not contains(json.marshal(d.obligations), "member-01")
}

test_patient_search_by_id_is_not_narrowed if {
	d := decide(td.org_a, search("Patient", [p("_id", ["member-01", "member-04"])]))
	d.allow == true
	d.obligations.narrow == []
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

test_read_of_compartment_type_is_judged_on_the_answer if {
	d := decide(td.org_a, read("ExplanationOfBenefit", "eob-1"))
	d.allow == true
	d.obligations.narrow == []
	d.obligations.compartment == org_a
}

test_practitioner_with_user_scopes_acts_as_provider if {
	d := decide(td.dr_smith, search("Observation", [p("patient", ["member-04"])]))
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
	d := authz.decision with input as object.union(td.provider_access(td.org_a, search("Observation", [])), {"facts": {"provider": "Organization/org-a", "attribution_group": "", "has_permitted": false, "patients": {}}})
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

op(type, id, name, level, params) := object.union(td.request("operation", type, id, params), {"operation": {"name": name, "level": level}})

kickoff(group, params) := op("Group", group, "export", "instance", params)

poll(job) := op("", "", "export-poll-status", "system", [p("_jobId", [job])])

decide_with(identity, req, facts) := d if {
	inp := object.union(td.provider_access(identity, req), {"facts": object.union(td.org_a_facts, facts)})
	d := authz.decision with input as inp with data.config as td.config
}

async := {"prefer_respond_async": true}

test_provider_exports_its_own_attribution_group if {
	d := decide_with(td.org_a, kickoff("attribution-org-a", [p("_type", ["Patient,Observation"]), p("_outputFormat", ["application/fhir+ndjson"])]), async)
	d.allow == true
	d.reasons == ["own_attribution_group"]
	d.obligations.compartment == org_a
}

test_practitioner_with_user_scopes_exports_its_group if {
	decide_with(td.dr_smith, kickoff("attribution-org-a", []), async).allow == true
}

test_export_of_another_group_is_not_found if {
	d := decide_with(td.org_a, kickoff("attribution-org-b", []), async)
	d.status == 404
	d.reasons == ["not_own_attribution_group"]
}

test_export_without_attribution_group_is_not_found if {
	decide_with(td.org_a, kickoff("attribution-org-a", []), {"prefer_respond_async": true, "attribution_group": ""}).status == 404
}

test_patient_and_system_export_are_forbidden_for_providers if {
	every req in [op("Patient", "", "export", "type", []), op("", "", "export", "system", []), op("Group", "", "export", "type", [])] {
		d := decide_with(td.org_a, req, async)
		d.status == 403
		d.reasons == ["export_not_allowed"]
	}
}

test_patient_context_token_never_starts_an_export if {
	every id in [td.member01, object.union(td.org_a, {"patient": "member-01"})] {
		d := decide_with(id, kickoff("attribution-org-a", []), async)
		d.status == 403
		d.reasons == ["patient_token_cannot_export"]
	}
}

test_export_needs_a_group_read_scope if {
	id := object.union(td.org_a, {"scopes": [td.scope("system", "Patient", "rs")]})
	decide_with(id, kickoff("attribution-org-a", []), async).reasons == ["insufficient_scope"]
	group := object.union(td.org_a, {"scopes": [td.scope("system", "Group", "r")]})
	decide_with(group, kickoff("attribution-org-a", []), async).allow == true
}

test_export_refuses_other_parameters_and_formats if {
	decide_with(td.org_a, kickoff("attribution-org-a", [p("_typeFilter", ["Observation?code=x"])]), async).reasons == ["unsupported_parameter"]
	decide_with(td.org_a, kickoff("attribution-org-a", [p("_outputFormat", ["text/csv"])]), async).status == 400
}

test_export_requires_respond_async if {
	decide_with(td.org_a, kickoff("attribution-org-a", []), {}).reasons == ["respond_async_required"]
}

test_export_kickoff_only_by_get if {
	req := object.union(kickoff("attribution-org-a", []), {"method": "POST"})
	decide_with(td.org_a, req, async).status == 405
}

test_poll_only_by_the_jobs_owner if {
	d := decide_with(td.org_a, poll("job-1"), {"export_job_bound_to_caller": true})
	d.allow == true
	d.obligations.compartment == org_a
	other := decide_with(td.org_a, poll("job-1"), {"export_job_bound_to_caller": false})
	other.status == 404
	other.reasons == ["export_not_found"]
	decide_with(td.org_a, poll("job-1"), {}).status == 404
}

test_poll_refuses_other_parameters if {
	req := op("", "", "export-poll-status", "system", [p("_jobId", ["j"]), p("_format", ["xml"])])
	decide_with(td.org_a, req, {"export_job_bound_to_caller": true}).status == 400
}

test_poll_status_below_a_type_is_not_found if {
	req := op("Patient", "", "export-poll-status", "type", [p("_jobId", ["j"])])
	decide_with(td.org_a, req, {"export_job_bound_to_caller": true}).status == 404
}

test_export_file_only_for_the_jobs_owner if {
	d := decide_with(td.org_a, read("Binary", "b1"), {"export_file_bound_to_caller": true})
	d.allow == true
	d.reasons == ["export_file_owner"]
	decide_with(td.org_a, read("Binary", "b1"), {"export_file_bound_to_caller": false}).status == 404
}

test_patient_token_cannot_poll if {
	decide_with(td.member01, poll("job-1"), {"export_job_bound_to_caller": true}).status == 403
}

test_patient_token_is_no_provider_for_export_files if {
	id := object.union(td.member01, {"patient": ""})
	decide_with(object.remove(id, ["patient"]), read("Binary", "b1"), {"export_file_bound_to_caller": true}).reasons == ["no_provider_identity"]
}

test_owner_may_cancel_its_job if {
	req := object.union(poll("job-1"), {"method": "DELETE"})
	decide_with(td.org_a, req, {"export_job_bound_to_caller": true}).allow == true
	decide_with(td.org_a, req, {"export_job_bound_to_caller": false}).status == 404
	decide_with(td.org_a, object.union(req, {"method": "POST"}), {"export_job_bound_to_caller": true}).status == 405
}

# --- granular scopes and what may leave ----------------------------------------------------------------------

org_a_with(scopes) := object.union(td.org_a, {"scopes": scopes})

vitals := [td.granular("system", "Observation", "rs", {"category": ["vital-signs"]})]

test_provider_granular_scope_narrows_a_search if {
	d := decide(org_a_with(vitals), search("Observation", [p("patient", ["member-01"])]))
	d.allow == true
	{"param": "category", "value": "vital-signs"} in d.obligations.narrow
	d.obligations.resource_types == {"Observation": {"category": ["vital-signs"]}}
}

test_provider_granular_scope_refuses_another_category if {
	d := decide(org_a_with(vitals), search("Observation", [p("patient", ["member-01"]), p("category", ["laboratory"])]))
	d.status == 403
	d.reasons == ["outside_granular_scope"]
}

test_provider_modifier_on_a_granular_parameter_is_refused if {
	param := object.union(td.param("category:not", "category", ["vital-signs"]), {"modifier": "not"})
	d := decide(org_a_with(vitals), search("Observation", [p("patient", ["member-01"]), param]))
	d.status == 403
	d.reasons == ["outside_granular_scope"]
}

test_provider_obligations_name_public_types if {
	d := decide(td.org_a, search("Observation", [p("patient", ["member-01"])]))
	d.obligations.public_types == ["Practitioner"]
	d.obligations.resource_types == {t: {} | some t, _ in td.config.apis["provider-access"].resources}
}

# --- paging -------------------------------------------------------------------------------------------------

paging(facts) := decide_with(td.org_a, td.request("paging", "", "", []), facts)

test_provider_follows_its_own_page if {
	d := paging({"page_bound_to_caller": true})
	d.allow == true
	d.obligations.compartment == org_a
	d.obligations.data_scope == "provider-access"
	d.obligations.narrow == []
}

test_provider_cannot_follow_anothers_page if {
	every facts in [{"page_bound_to_caller": false}, {}] {
		d := paging(facts)
		d.allow == false
		d.status == 404
		d.reasons == ["page_not_bound_to_caller"]
	}
}

test_paging_needs_a_provider_identity if {
	d := decide_with(object.remove(td.org_a, {"org"}), td.request("paging", "", "", []), {"page_bound_to_caller": true})
	d.status == 403
}
