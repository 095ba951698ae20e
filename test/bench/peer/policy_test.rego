# Tests of the benchmark peer policy. Tokens are signed here, with RSA keys generated for these tests only
# (they protect nothing), and time is fixed, so the tests need no network, no clock and no files.
package envoy.authz_test

import data.envoy.authz

now_s := 1800000000

issuer := "https://idp.test/realms/payer"

# trusted_key signs the tokens the peer accepts; its public half is the JWK set in data.peer.
trusted_key := {
	"kty": "RSA",
	"kid": "bench-trusted",
	"alg": "RS256",
	"n": "vdrfSlsGYcvflIxgtVQE6q4MEfBmg09trtJANwf1LHjM9Cfpv6_LCGvcR91S6OUm8YYIwmPVJp4Ge_ETjcUl0Ov0KDsQEKV1bqAkXCNE2Wly5y2Cfueac6I9Br9HzeEJ1URj3n0yswIxV6ClPZ6DrGfdTP0c04v1ALcDLgQOoaJ6LQ8ik0ozE-uykV6bLxP3f94iWgDZHOlQoZs9qu9LvnH0p2FWUW6XmvW3xrNtCGwSRE_kIGZbVMVu3J7y1-4MjGmj3cbQ7lA_ZS9S27Sj-ZUzm9nmVEKOOTQoY7w2PMGGNybMTZp3AMqUI7799TWZuphv9j-Wb3hip04vcXqKVQ",
	"e": "AQAB",
	"d": "Q4SyQlRK2b7SfZbK0dHWictp-XtASdSWkkStl6SZ2b4ATZhgNc6D6zPIvDoGwVK1XdGoDdHJPRmX_r4GkTWatEklpKUUmobtU3FaXPYiBxvMRFDYBt_A-vyorVybYal1gMX4qmhl_ml6OMql2VslQswRVM7zUHyGnkF3vQauWWa8LVtf2jb0KshpfKgEhEXy6-b3BKz-HgyeU4rBoMT5dpbmzodmsm4MK42hXnNAAcCxlc3UCH9jlvi_8Uo_ec1CpGe234YnfR808tKTkwMDGDNXGBGMJX3ulfysriM_ZV2o8vuASLlCew2tXZ4YiNtfuPUpvhZ5ABR3kli1g3UJxQ",
	"p": "9yZrxQvFSrY_LBxx_QT3IgBJbtjpOC-kvXDAUhff_Aju4iIw7gtmJqMb_Z7BB1dZ3TCprhEwk2IAwBYs4vybkvJj-__-8f-RmblxYa_sOoZfCLtsU3-VDoqV_64BlzpH4DCUi_w8zVDD8usA2I4x63etcKkU2omKP5d83r7MXvM",
	"q": "xKc80WyZlgXoJHgjEuAcB69iOzw-3XgeB1IwrhebIgVngnOieMuLTpUKzcLjjZW8VQMi0w8B-vmmw4MfpFMU6rHdMwG90guoUPaaGPV-jjXn9ZyS6owS47wR9EOhO02BTQF1eH9koqS-aBHPnqRyqnfk6l_euZXizjPrG1Yzk5c",
	"dp": "GtfTcK1cmka9Cb91KfP2G31IfH-WpQGXtPOgD8qEC021FF5-Tfxy9dNVYPBzKqb0HbABXeSEEB3e0v4Vlfm1s_obne0p9YK6f6XCiMegsqKRg9NHarI6sD-hFwoBJjmwQMtF9wZIXExfW-zmRJ79EQQIlGno1-uEVm_Poim67L0",
	"dq": "K-Pzg_5MDRrGZBVYJqdUOjbfor7gfQeJFDM44DIukppILupmEbXEIsbLAX-E0B3iScsIY7jOxVgg6zQBxOgyG-uUpgS2fAHUEDXp0LZCB7VqTvwiIi0fLirUiwLpIlY7DJfNwxYTvOUuBgYro4mqefeGZPT-vccBNuqJh7Fmk4M",
	"qi": "bomdZKk6u6jBX2hY_WTRak6b9CETHKI23m7BOWhvBiSlgELJ4CwweRDqQxInua7n2lvoMcz9CPynmOXaHDALHAHzsGn7G6B7FrtIGn1yOpRUqXNhsOyVXpbg1XAt7tsErlQ2J0f_I43ybBQ7LKjMe6yo9XQJPDUubOKaPyYZSZ8",
}

# other_key is a key the peer does not know.
other_key := {
	"kty": "RSA",
	"kid": "bench-other",
	"alg": "RS256",
	"n": "44BuBnMhC9k_UXbxcAoCRzpa0k7hdXMl2_OxZ0aIEch0XP4mOCLRYMSAJiaL_WnB5hGklwaWeK8RZOnXfBzw8c0tyHyLgl4Khq_M-Z1nsODWN4UMZshQwa1kuXxtcd9S1a1zXG_JBbj2vNK4dnaCDyMBJ6u24g_twcqa8THw0BdQi1eOe6YnTgqeilTQW2JVo2D30Ltd9yueFo-aVPkedJHscJRJh-XfNF-ODvbj3blVVxT5Qwn0DqveDlsR_5odxZy29WUUpL0u_rhAOCfRlj5zeUIR296ZSuVVH303OFZ7P6EItwI5Ajbqi3qSD0q99Xe0LZkeKbHYSWk7y4YR3w",
	"e": "AQAB",
	"d": "I9MFgF6AxazgG6PvQQVSdoTp6FQjjKslOw2U0f55TtOR_1LGEfDpp6NJyrgnMzCEKAZ_NIkFCNwIkSuBkzm7d1gn7XovPcgxQCRO0r_GpEPDd9qrqUPB872qLss5MMVJ9fvqPpQbw5rsv68u_PiMYnXQqL6RfeekOO_-lhyXHy1ArD2Rw1FpaNCmqqHYW-ELPXZ6INZMV2i5o64aM5Pr9h_qNQOWw20pl-LShE4ZIFJLW0x2ykOMdVUmm9hEmV0jvhu0XqUIUdE-D_gtnc82eCLNpSB-USaxPgMjoudVBrGLYIoKcVurDKBU8ymB7XKkwiReIj9WQK4YC5oDjd3EAQ",
	"p": "9mGsiMZveP1tglOtxtyOSXxPiOGdyEQSahLTKA5bxPSitvPCfM99cEXzZLtYA3zgNARMnW6yUyGLLd3xeOGRvwOy0gfcibZqVZHKMHtd60eZVaugcFXkEYeaVrkFaQzW_KqTBGLUqZtaaKHQRqO8kMizKrCKUtZHD3QmL-1vHj8",
	"q": "7GISQ__AfHLk9jppC-7q5BpTIVt1XpZlYb9HBEsG76zi5ZasMvJCAg5Da26YMWKMosWwfjFbbky9kGmYBjlgKBpvlntj2u9G8gDRi2vmXshDVfdaGoltLMGYvr8Z8L_GfPFl2ypaGhxb336KappGrgxkewk52GxQX2oMS5KlZGE",
	"dp": "gwYGXuZIOatsJTai33JDKMk28rAo3Gt273n7WP3px5_hODIBZ6ZgKujIOvV2JMSv5nmy1LYdlx_riATTeVlbzJ0G57LOkV20xrS1NXslww1ceba_p33Fv5zBcwUJ34e4fL2pWVfFiDzZo3MJ88b3bHeO8FDZ_pt9RraZ6Dr4MLk",
	"dq": "X8tyuYnouMZbEYokTgi5uk0MyWTmELoERfOdVRkOq4y1uvMvv8m7hFfBbMU5-jGE6uYQm2NnOTDyVZblXAhedoIYHLTOh8gWSTaZtNW6W0jvOORv6Hcu_kdKnmqVmaIuTy4I6COmthQuC0md0IvK_vfYtJ_NiG6Et9YjO3Eng6E",
	"qi": "mt20kROrdfy_jnp12K1-u1agEyYWpghWDiZOijGUhynYie_TeB6sXoVWPmZ_wzLaNgzO8ThYZhTwRhdTBsUNNoKNmeRBiGOe98bXfdnIDQrq0DWaVvFs2IkGa4xMBTabLUX45-cdq03br_OZf_OQDQ3h7EYfN43SEc_b4UpipNs",
}

public_jwk(key) := object.filter(key, ["kty", "kid", "alg", "n", "e"])

peer := {
	"jwks": json.marshal({"keys": [public_jwk(trusted_key)]}),
	"issuer": issuer,
	"audience": "fhirwall",
}

member_claims := {
	"iss": issuer,
	"aud": "fhirwall",
	"sub": "member-01",
	"iat": now_s,
	"exp": now_s + 300,
	"scope": "openid fhirUser launch/patient patient/ExplanationOfBenefit.rs",
	"patient": "pat-1",
}

signed_by(key, kid, claims) := io.jwt.encode_sign({"typ": "JWT", "alg": "RS256", "kid": kid}, claims, key)

member_token(changes) := signed_by(trusted_key, "bench-trusted", object.union(member_claims, changes))

with_scope(scope) := member_token({"scope": scope})

eob_path := "/patient-access/fhir/ExplanationOfBenefit"

eob_segments := ["patient-access", "fhir", "ExplanationOfBenefit"]

# http_request builds the plugin's input: parsed_path and parsed_query are given as the plugin (Go's
# url.Parse and url.Query) would derive them from path, so a test can show what it drops or decodes.
http_request(method, path, parsed_path, parsed_query, headers) := {
	"attributes": {"request": {"http": {
		"method": method,
		"path": path,
		"host": "fhirwall.test",
		"headers": headers,
	}}},
	"parsed_path": parsed_path,
	"parsed_query": parsed_query,
}

bearer(token) := {"authorization": concat(" ", ["Bearer", token])}

eob_search(query, parsed_query, token) := http_request(
	"GET", concat("?", [eob_path, query]), eob_segments, parsed_query,
	bearer(token),
)

own_search(token) := eob_search("patient=pat-1", {"patient": ["pat-1"]}, token)

now_ns := now_s * 1000000000

decide(req) := d if {
	d := authz.result with input as req with data.peer as peer with time.now_ns as now_ns
}

allowed(req) if {
	decide(req) == {"allowed": true}
	authz.allow with input as req with data.peer as peer with time.now_ns as now_ns
}

refused(req, status) if {
	d := decide(req)
	d.allowed == false
	d.http_status == status
	json.unmarshal(d.body).resourceType == "OperationOutcome"
	not authz.allow with input as req with data.peer as peer with time.now_ns as now_ns
}

# forbidden: refused with 403, for exactly the reason given.
forbidden(req, reason) if {
	refused(req, 403)
	json.unmarshal(decide(req).body).issue[0].diagnostics == reason
}

scope_reason := "no patient/ scope grants read and search of ExplanationOfBenefit"

patient_reason := "query must carry exactly one patient parameter equal to the token's patient"

param_reason := "query parameter not allowed or not parsed"

method_reason := "method must be GET"

path_reason := "path must be exactly /patient-access/fhir/ExplanationOfBenefit"

# --- allowed ----------------------------------------------------------------------------------------------------

test_member_can_search_own_eob if {
	allowed(own_search(member_token({})))
}

test_member_can_search_own_eob_by_reference_with_result_and_date_params if {
	allowed(eob_search(
		"patient=Patient%2Fpat-1&_count=10&service-date=ge2024-01-01&_lastUpdated=gt2024-06-01&type=pharmacy&status=active",
		{
			"patient": ["Patient/pat-1"], "_count": ["10"], "service-date": ["ge2024-01-01"],
			"_lastUpdated": ["gt2024-06-01"], "type": ["pharmacy"], "status": ["active"],
		},
		member_token({}),
	))
}

# The load harness's issuer (test/bench/load/issuer.go): typ at+jwt, "use": "sig" in the JWK set; an audience
# list is accepted when it names ours.
test_token_shaped_like_the_harness_issuers_is_accepted if {
	token := io.jwt.encode_sign(
		{"typ": "at+jwt", "alg": "RS256", "kid": "bench-trusted"},
		object.union(member_claims, {"aud": ["fhirwall"], "client_id": "patient-app", "jti": "bench-jti"}),
		trusted_key,
	)
	harness_peer := object.union(peer, {"jwks": json.marshal({"keys": [object.union(public_jwk(trusted_key), {"use": "sig"})]})})
	d := authz.result with input as own_search(token) with data.peer as harness_peer with time.now_ns as now_ns
	d == {"allowed": true}
}

test_bearer_scheme_is_case_insensitive if {
	allowed(http_request("GET", concat("?", [eob_path, "patient=pat-1"]), eob_segments, {"patient": ["pat-1"]}, {"authorization": concat(" ", ["bearer", member_token({})])}))
}

test_scopes_granting_read_and_search_of_eob_are_accepted if {
	every scope in [
		"patient/ExplanationOfBenefit.read", # v1
		"patient/*.read", # v1, any type
		"patient/ExplanationOfBenefit.*", # v1, every permission
		"patient/*.rs",
		"patient/ExplanationOfBenefit.cruds",
		"patient/ExplanationOfBenefit.rus",
		"openid patient/Coverage.rs patient/ExplanationOfBenefit.rs", # among others
	] {
		allowed(own_search(with_scope(scope)))
	}
}

# --- 403: scopes --------------------------------------------------------------------------------------------

test_scope_for_another_type_is_refused if {
	forbidden(own_search(with_scope("patient/Claim.rs patient/Coverage.read")), scope_reason)
}

test_user_and_system_scopes_are_refused if {
	every scope in ["user/ExplanationOfBenefit.rs", "user/*.read", "system/ExplanationOfBenefit.rs", "system/*.*"] {
		forbidden(own_search(with_scope(scope)), scope_reason)
	}
}

test_read_without_search_and_malformed_permissions_are_refused if {
	every scope in [
		"patient/ExplanationOfBenefit.r", # read is not search (SMART 2.x)
		"patient/ExplanationOfBenefit.s", # the brief asks for both r and s
		"patient/ExplanationOfBenefit.sr", # letters out of cruds order
		"patient/ExplanationOfBenefit.write",
		"patient/ExplanationOfBenefit.rs?type=pharmacy", # granular: would need narrowing
		"patient/ExplanationOfBenefit",
		"launch/patient",
	] {
		forbidden(own_search(with_scope(scope)), scope_reason)
	}
}

test_refusal_names_the_failed_checks if {
	d := decide(own_search(with_scope("patient/Claim.rs")))
	json.unmarshal(d.body).issue == [{
		"severity": "error",
		"code": "forbidden",
		"diagnostics": "no patient/ scope grants read and search of ExplanationOfBenefit",
	}]
	d.headers == {"content-type": "application/fhir+json"}
}

# --- 403: patient -------------------------------------------------------------------------------------------

test_other_patients_eob_is_refused if {
	forbidden(eob_search("patient=pat-2", {"patient": ["pat-2"]}, member_token({})), patient_reason)
	forbidden(eob_search("patient=Patient%2Fpat-2", {"patient": ["Patient/pat-2"]}, member_token({})), patient_reason)
}

test_two_patient_params_are_refused if {
	forbidden(eob_search("patient=pat-1&patient=pat-2", {"patient": ["pat-1", "pat-2"]}, member_token({})), patient_reason)
	forbidden(eob_search("patient=pat-1&patient=pat-1", {"patient": ["pat-1", "pat-1"]}, member_token({})), patient_reason)
}

test_patient_or_list_is_refused if {
	forbidden(eob_search("patient=pat-1,pat-2", {"patient": ["pat-1,pat-2"]}, member_token({})), patient_reason)
}

test_missing_patient_param_is_refused if {
	forbidden(eob_search("_count=10", {"_count": ["10"]}, member_token({})), patient_reason)
	forbidden(http_request("GET", eob_path, eob_segments, {}, bearer(member_token({}))), concat("; ", [patient_reason, param_reason]))
}

test_token_without_patient_claim_is_refused if {
	forbidden(own_search(signed_by(trusted_key, "bench-trusted", object.remove(member_claims, ["patient"]))), patient_reason)
	forbidden(eob_search("patient=", {"patient": [""]}, member_token({"patient": ""})), patient_reason)
}

# --- 403: other parameters ----------------------------------------------------------------------------------

test_compartment_escaping_params_are_refused if {
	every name in [
		"_has:Claim:patient:_id",
		"patient.name",
		"patient:Patient",
		"subject",
		"beneficiary",
		"_include",
		"_revinclude",
		"_id",
		"_filter",
		"_query",
	] {
		forbidden(
			eob_search(concat("", ["patient=pat-1&", name, "=x"]), {"patient": ["pat-1"], name: ["x"]}, member_token({})),
			param_reason,
		)
	}
}

# Go's url.Query drops a pair with a bad escape, a ";" or no name; the upstream may still read it.
test_pairs_the_plugin_could_not_parse_are_refused if {
	every query in ["patient=pat-1&_has%zz=x", "patient=pat-1&_has:Claim:patient:_id=x;y=z", "patient=pat-1&&", "patient=pat-1&=x"] {
		forbidden(eob_search(query, {"patient": ["pat-1"]}, member_token({})), param_reason)
	}
}

# --- 403: method and path -----------------------------------------------------------------------------------

test_post_is_refused if {
	forbidden(http_request("POST", concat("?", [eob_path, "patient=pat-1"]), eob_segments, {"patient": ["pat-1"]}, bearer(member_token({}))), method_reason)
	forbidden(http_request("HEAD", concat("?", [eob_path, "patient=pat-1"]), eob_segments, {"patient": ["pat-1"]}, bearer(member_token({}))), method_reason)
}

test_other_paths_are_refused if {
	every path_case in [
		# dot segments
		["/patient-access/fhir/Claim/../ExplanationOfBenefit", ["patient-access", "fhir", "Claim", "..", "ExplanationOfBenefit"]],
		# an encoded slash: parsed_path is decoded before it is split
		["/patient-access/fhir/ExplanationOfBenefit%2F..%2FClaim", ["patient-access", "fhir", "ExplanationOfBenefit", "..", "Claim"]],
		# the right path, encoded: parsed_path matches, the raw path does not
		["/patient-access/fhir/Explanation%4FfBenefit", eob_segments],
		# another type, another API, a trailing slash, an instance
		["/patient-access/fhir/Claim", ["patient-access", "fhir", "Claim"]],
		["/provider-access/fhir/ExplanationOfBenefit", ["provider-access", "fhir", "ExplanationOfBenefit"]],
		["/patient-access/fhir/ExplanationOfBenefit/", ["patient-access", "fhir", "ExplanationOfBenefit", ""]],
		["/patient-access/fhir/ExplanationOfBenefit/eob-9", ["patient-access", "fhir", "ExplanationOfBenefit", "eob-9"]],
	] {
		forbidden(http_request("GET", concat("?", [path_case[0], "patient=pat-1"]), path_case[1], {"patient": ["pat-1"]}, bearer(member_token({}))), path_reason)
	}
}

# --- 401: token ---------------------------------------------------------------------------------------------

test_missing_authorization_header_is_401 if {
	refused(http_request("GET", concat("?", [eob_path, "patient=pat-1"]), eob_segments, {"patient": ["pat-1"]}, {}), 401)
}

test_401_is_an_operation_outcome_with_a_bearer_challenge if {
	d := decide(http_request("GET", concat("?", [eob_path, "patient=pat-1"]), eob_segments, {"patient": ["pat-1"]}, {}))
	json.unmarshal(d.body).issue[0].code == "login"
	d.headers["www-authenticate"] == `Bearer error="invalid_token"`
}

test_authorization_that_is_not_one_bearer_token_is_401 if {
	token := member_token({})
	every authorization in [
		concat(" ", ["Basic", token]),
		concat(" ", ["Bearer", token, "extra"]),
		concat("", ["Bearer", token]),
		concat(",", [concat(" ", ["Bearer", token]), concat(" ", ["Bearer", token])]), # two headers, joined by Envoy
		"Bearer not-a-jwt",
	] {
		refused(http_request("GET", concat("?", [eob_path, "patient=pat-1"]), eob_segments, {"patient": ["pat-1"]}, {"authorization": authorization}), 401)
	}
}

test_expired_token_is_401 if {
	refused(own_search(member_token({"iat": now_s - 600, "exp": now_s - 1})), 401)
}

test_token_without_exp_is_401 if {
	refused(own_search(signed_by(trusted_key, "bench-trusted", object.remove(member_claims, ["exp"]))), 401)
}

test_token_not_yet_valid_is_401 if {
	refused(own_search(member_token({"nbf": now_s + 60})), 401)
}

test_wrong_issuer_is_401 if {
	refused(own_search(member_token({"iss": "https://idp.test/realms/other"})), 401)
}

test_wrong_audience_is_401 if {
	refused(own_search(member_token({"aud": "another-api"})), 401)
	refused(own_search(signed_by(trusted_key, "bench-trusted", object.remove(member_claims, ["aud"]))), 401)
}

test_token_signed_with_another_key_is_401 if {
	# the trusted key's kid, the wrong key
	refused(own_search(signed_by(other_key, "bench-trusted", member_claims)), 401)

	# its own kid, unknown to the peer
	refused(own_search(signed_by(other_key, "bench-other", member_claims)), 401)
}

test_token_with_another_algorithm_is_401 if {
	token := io.jwt.encode_sign({"typ": "JWT", "alg": "HS256"}, member_claims, {"kty": "oct", "k": base64url.encode_no_pad("shared secret")})
	refused(own_search(token), 401)
}

# With no usable key set, nothing is authenticated.
test_missing_or_broken_jwks_is_401 if {
	req := own_search(member_token({}))
	d := authz.result with input as req with data.peer as object.union(peer, {"jwks": "{not json"}) with time.now_ns as now_ns
	d.http_status == 401
	d2 := authz.result with input as req with data.peer as {} with time.now_ns as now_ns
	d2.http_status == 401
}
