package fhirwall.api.prior_auth_test

import rego.v1

import data.fhirwall.authz
import data.fhirwall.testdata as td

# provider-org-a's backend with the prior-auth scopes clients.yaml gives it (v2).
org_a := {
	"client_id": "provider-org-a", "subject": "svc-a", "org": "Organization/org-a",
	"scopes": [td.scope("system", "Claim", "cr"), td.scope("system", "Subscription", "crd")],
}

org_facts := {"provider": "Organization/org-a"}

# A clinician in provider-app (fhirUser Practitioner/pract-01) with user/ scopes.
dr_smith := {
	"client_id": "provider-app", "subject": "u-dr", "fhir_user": "Practitioner/pract-01",
	"scopes": [td.scope("user", "Claim", "cr")],
}

dr_facts := {"provider": "Practitioner/pract-01"}

decide_with(identity, req, facts) := d if {
	d := authz.decision with input as {
		"api": "prior-auth", "authenticated": true, "identity": identity, "request": req, "facts": facts,
		"client": {"id": identity.client_id, "tier": "backend"},
	}
}

decide(req) := decide_with(org_a, req, org_facts)

op(method, name, level) := object.union(td.request("operation", "Claim", "", []), {
	"method": method, "operation": {"name": name, "level": level},
})

submit := op("POST", "submit", "type")

inquire := op("POST", "inquire", "type")

subscription(interaction, id) := object.union(td.request(interaction, "Subscription", id, []), {"method": {"create": "POST", "read": "GET", "delete": "DELETE"}[interaction]})

test_submit_and_inquire_are_answered_by_the_adapter if {
	s := decide(submit)
	s.allow == true
	s.status == 200
	s.reasons == ["prior_auth_submit"]
	s.obligations == {"adapter": "prior-auth", "rate_class": "backend"}
	i := decide(inquire)
	i.reasons == ["prior_auth_inquire"]
	i.obligations.adapter == "prior-auth"
}

test_own_subscriptions_are_created_read_and_deleted_by_the_adapter if {
	every interaction in ["create", "read", "delete"] {
		d := decide(subscription(interaction, {"create": "", "read": "sub-1", "delete": "sub-1"}[interaction]))
		d.allow == true
		d.reasons == [concat("", ["prior_auth_subscription_", interaction])]
		d.obligations.adapter == "prior-auth"
	}
}

test_clinician_with_user_scopes_submits_and_inquires if {
	decide_with(dr_smith, submit, dr_facts).allow == true
	decide_with(dr_smith, inquire, dr_facts).allow == true
}

# internal/smart parses v1 write as c, u, d (td.scope reads permission letters).
v1_write(type) := {
	"raw": sprintf("system/%s.write", [type]), "context": "system", "resource_type": type,
	"permissions": {"c": true, "r": false, "u": true, "d": true, "s": false},
}

test_v1_scopes_grant_what_v2_scopes_do if {
	v1 := object.union(org_a, {"scopes": [v1_write("Claim"), v1_write("Subscription")]})
	decide_with(v1, submit, org_facts).allow == true
	decide_with(v1, subscription("create", ""), org_facts).allow == true
	decide_with(v1, subscription("delete", "sub-1"), org_facts).allow == true

	# v1 write is c, u, d: no read, so no $inquire and no Subscription read without v1 read
	decide_with(v1, inquire, org_facts).reasons == ["insufficient_scope"]
	read := object.union(org_a, {"scopes": [
		{"raw": "system/Claim.read", "context": "system", "resource_type": "Claim", "permissions": {"r": true, "s": true}},
		{"raw": "system/Subscription.read", "context": "system", "resource_type": "Subscription", "permissions": {"r": true, "s": true}},
	]})
	decide_with(read, inquire, org_facts).allow == true
	decide_with(read, subscription("read", "sub-1"), org_facts).allow == true
	decide_with(read, submit, org_facts).reasons == ["insufficient_scope"]
}

test_each_request_needs_its_own_permission if {
	read_only := object.union(org_a, {"scopes": [td.scope("system", "*", "rs")]})
	decide_with(read_only, submit, org_facts).reasons == ["insufficient_scope"]
	decide_with(read_only, inquire, org_facts).allow == true
	decide_with(read_only, subscription("create", ""), org_facts).reasons == ["insufficient_scope"]
	decide_with(read_only, subscription("delete", "sub-1"), org_facts).reasons == ["insufficient_scope"]
	decide_with(read_only, subscription("read", "sub-1"), org_facts).allow == true
	claims_only := object.union(org_a, {"scopes": [td.scope("system", "Claim", "cruds")]})
	decide_with(claims_only, subscription("create", ""), org_facts).status == 403
}

test_scopes_of_another_context_do_not_count if {
	# a backend's token carrying user/ scopes, a clinician's carrying system/ ones
	user_scoped := object.union(org_a, {"scopes": [td.scope("user", "Claim", "cr")]})
	decide_with(user_scoped, submit, org_facts).reasons == ["insufficient_scope"]
	system_scoped := object.union(dr_smith, {"scopes": [td.scope("system", "Claim", "cr")]})
	decide_with(system_scoped, submit, dr_facts).reasons == ["insufficient_scope"]
}

test_member_tokens_are_refused if {
	d := decide_with(td.member01, submit, {})
	d.status == 403
	d.reasons == ["patient_token_not_allowed"]

	# even one whose token also names a provider
	decide_with(object.union(td.member01, {"org": "Organization/org-a"}), inquire, org_facts).reasons == ["patient_token_not_allowed"]
}

test_a_caller_acting_for_no_provider_is_refused if {
	decide_with(org_a, submit, {}).reasons == ["no_provider_identity"]
	decide_with(org_a, submit, {"provider": "Patient/member-01"}).reasons == ["no_provider_identity"]
	d := decide_with(dr_smith, subscription("create", ""), {})
	d.status == 403
	d.reasons == ["no_provider_identity"]
}

test_operations_are_posted if {
	d := decide(op("GET", "inquire", "type"))
	d.status == 405
	d.reasons == ["method_not_allowed"]
}

test_parameters_are_refused_and_named if {
	d := decide(object.union(submit, {"params": [td.param("_format", "_format", ["xml"])]}))
	d.status == 400
	d.reasons == ["unsupported_parameter"]
	contains(d.details, "_format")
}

test_writes_not_served_are_405 if {
	every req in [
		td.request("create", "Claim", "", []),
		td.request("update", "Subscription", "sub-1", []),
		td.request("patch", "Subscription", "sub-1", []),
		td.request("delete", "ClaimResponse", "cr-1", []),
		object.union(td.request("delete", "Subscription", "", []), {"conditional": true}),
		object.union(td.request("create", "Subscription", "", []), {"conditional": true}),
		td.request("transaction", "", "", []),
	] {
		d := decide(req)
		d.status == 405
		d.reasons == ["interaction_not_served"]
	}
}

test_reads_searches_and_other_operations_are_not_served if {
	every req in [
		td.request("read", "Claim", "c-1", []),
		td.request("read", "ClaimResponse", "cr-1", []),
		td.request("search-type", "Subscription", "", []),
		td.request("search-type", "Claim", "", []),
		td.request("history-instance", "Subscription", "sub-1", []),
		td.request("read", "Patient", "member-01", []),
		td.request("paging", "", "", []),
		op("POST", "submit", "instance"),
		op("POST", "validate", "type"),
		object.union(op("POST", "submit", "type"), {"resource_type": "ClaimResponse"}),
	] {
		d := decide(req)
		d.status == 400
		d.reasons == ["interaction_not_served"]
	}
}

test_discovery_is_public if {
	every interaction in ["capabilities", "smart-configuration"] {
		d := authz.decision with input as {"api": "prior-auth", "authenticated": false, "request": td.request(interaction, "", "", [])}
		d.allow == true
		d.reasons == ["public_discovery"]
	}
}

test_unauthenticated_is_401 if {
	d := authz.decision with input as {"api": "prior-auth", "authenticated": false, "request": submit}
	d.status == 401
}

test_rate_class_defaults_without_a_client if {
	d := authz.decision with input as {"api": "prior-auth", "authenticated": true, "identity": org_a, "request": submit, "facts": org_facts}
	d.obligations.rate_class == "default"
}
