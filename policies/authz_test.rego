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
