package fhirwall.authz_test

import rego.v1

import data.fhirwall.authz
import data.fhirwall.testdata as td

test_unauthenticated_is_401 if {
	d := authz.decision with input as {"api": "patient-access", "authenticated": false, "request": td.request("search-type", "ExplanationOfBenefit", "", [])}
	d.allow == false
	d.status == 401
}

test_unknown_api_is_denied if {
	d := authz.decision with input as {"api": "no-such-api", "authenticated": true, "identity": td.member01, "request": td.request("search-type", "Patient", "", [])}
	d.allow == false
	d.reasons == ["no_policy_for_api"]
}

sandbox_config := object.union(td.config, {"apis": {
	"patient-access-sandbox": object.union(td.config.apis["patient-access"], {"sandbox_of": "patient-access"}),
	"provider-access-sandbox": object.union(td.config.apis["provider-access"], {"sandbox_of": "provider-access"}),
	"patient-access-sandbox-sandbox": {"sandbox_of": "patient-access-sandbox", "resources": {}},
	"sandbox-of-patient-access": {"sandbox_of": "patient-access", "resources": {}},
}})

sandbox_search(api) := d if {
	d := authz.decision with input as object.union(td.patient_access(td.member01, td.request("search-type", "ExplanationOfBenefit", "", [])), {"api": api})
		with data.config as sandbox_config
}

test_patient_access_sandbox_is_decided_by_patient_access_policy if {
	d := sandbox_search("patient-access-sandbox")
	d.allow == true
	d.obligations.narrow == [{"param": "patient", "value": "member-01"}]
	d.obligations.compartment == {"patient": "member-01"}
	d.obligations.data_scope == "patient-access"
}

test_provider_access_sandbox_is_decided_by_provider_access_policy if {
	req := td.request("search-type", "ExplanationOfBenefit", "", [td.param("patient", "patient", ["member-01"])])
	d := authz.decision with input as object.union(td.provider_access(td.org_a, req), {"api": "provider-access-sandbox"})
		with data.config as sandbox_config
	prod := authz.decision with input as td.provider_access(td.org_a, req) with data.config as sandbox_config
	d.allow == true
	d == prod
	d.obligations.data_scope == "provider-access"
}

test_sandbox_refusals_are_its_base_policys if {
	d := authz.decision with input as object.union(td.patient_access(td.member01, td.request("read", "Patient", "member-02", [])), {"api": "patient-access-sandbox"})
		with data.config as sandbox_config
	prod := authz.decision with input as td.patient_access(td.member01, td.request("read", "Patient", "member-02", [])) with data.config as sandbox_config
	d.allow == false
	d == prod
}

test_sandbox_of_a_sandbox_has_no_policy if {
	d := sandbox_search("patient-access-sandbox-sandbox")
	d.allow == false
	d.reasons == ["no_policy_for_api"]
}

test_sandbox_not_named_after_its_base_has_no_policy if {
	d := sandbox_search("sandbox-of-patient-access")
	d.allow == false
	d.reasons == ["no_policy_for_api"]
}

test_api_named_like_a_sandbox_without_sandbox_of_has_no_policy if {
	d := authz.decision with input as object.union(td.patient_access(td.member01, td.request("search-type", "ExplanationOfBenefit", "", [])), {"api": "patient-access-sandbox"})
		with data.config as td.config
	d.allow == false
	d.reasons == ["no_policy_for_api"]
}

test_unauthenticated_sandbox_request_is_401 if {
	d := authz.decision with input as {"api": "patient-access-sandbox", "authenticated": false, "request": td.request("search-type", "ExplanationOfBenefit", "", [])}
		with data.config as sandbox_config
	d.status == 401
}
