# The benchmark peer: the SMART patient-compartment check fhirwall makes for the load test's one request
# shape, written for opa-envoy-plugin (an Envoy ext_authz gRPC server) the way a team without fhirwall
# would write it. Only GET /patient-access/fhir/ExplanationOfBenefit?patient=<id> with a Bearer JWT is
# allowed; everything else is refused. What this does not do that fhirwall does: see README.md.
#
# Input is the plugin's: input.attributes.request.http.{method,path,headers} (header names lower-case,
# path with its query string), input.parsed_path (the path split on "/", percent-decoded) and
# input.parsed_query (name → array of values, percent-decoded, as Go's url.Query builds it).
# data.peer holds {"jwks": "<JWK set as a JSON string>", "issuer": "...", "audience": "..."}.
#
# Decisions: data.envoy.authz.allow (boolean, the plugin's default path) or data.envoy.authz.result (object
# with allowed, http_status, headers and an OperationOutcome body; the path config.yaml uses).
package envoy.authz

http_request := input.attributes.request.http

default allow := false

allow if {
	authenticated
	method_ok
	path_ok
	scope_ok
	patient_ok
	params_ok
}

# result is evaluated in order: the else branches, and the reasons they list, only run on a refusal.
result := {"allowed": true} if {
	allow
} else := refusal(401, "login", {"missing or invalid bearer token"}) if {
	not authenticated
} else := refusal(403, "forbidden", reasons)

# An unauthenticated request gets 401 with an OperationOutcome body (FHIR-NOTES.md, SMART scopes); RFC 6750
# §3 asks for the WWW-Authenticate challenge. A refusal of an authenticated request is 403.
refusal(status, code, why) := {
	"allowed": false,
	"http_status": status,
	"headers": refusal_headers[status],
	"body": json.marshal({
		"resourceType": "OperationOutcome",
		"issue": [{
			"severity": "error",
			"code": code,
			"diagnostics": concat("; ", sort(why)),
		}],
	}),
}

refusal_headers := {
	401: {"content-type": "application/fhir+json", "www-authenticate": `Bearer error="invalid_token"`},
	403: {"content-type": "application/fhir+json"},
}

reasons contains "method must be GET" if not method_ok

reasons contains "path must be exactly /patient-access/fhir/ExplanationOfBenefit" if not path_ok

reasons contains "no patient/ scope grants read and search of ExplanationOfBenefit" if not scope_ok

reasons contains "query must carry exactly one patient parameter equal to the token's patient" if not patient_ok

reasons contains "query parameter not allowed or not parsed" if not params_ok

# --- token ---------------------------------------------------------------------------------------------------

# RFC 7235 §2.1: the scheme name is case-insensitive. One space, one token: a second Authorization header
# (Envoy joins them with ",") or any extra part makes this undefined.
bearer := token if {
	[scheme, token] := split(http_request.headers.authorization, " ")
	lower(scheme) == "bearer"
}

# decode_verify checks the RS256 signature against the JWK set (by kid when the token has one), iss, aud,
# and exp/nbf against the time given. A token without exp would pass it, so exp is required here.
claims := payload if {
	[valid, _, payload] := io.jwt.decode_verify(bearer, {
		"cert": data.peer.jwks,
		"alg": "RS256",
		"iss": data.peer.issuer,
		"aud": data.peer.audience,
		"time": time.now_ns(),
	})
	valid
	is_number(payload.exp)
}

authenticated if is_object(claims)

# --- request line --------------------------------------------------------------------------------------------

method_ok if http_request.method == "GET"

# parsed_path is percent-decoded before it is split, so "%2F" becomes a segment boundary and "%2E%2E" a ".."
# segment: both fail the equality. The raw path is compared too, so no encoded form of the right path (which
# the upstream might decode differently) gets through either.
path_ok if {
	input.parsed_path == ["patient-access", "fhir", "ExplanationOfBenefit"]
	split(http_request.path, "?")[0] == "/patient-access/fhir/ExplanationOfBenefit"
}

# --- scopes --------------------------------------------------------------------------------------------------

scope_ok if {
	some scope in split(claims.scope, " ")
	grants_read_and_search(scope)
}

# SMART App Launch 2.x §scopes: patient/ context only (user/ and system/ act for someone else), the type or
# "*". A granular scope ("...rs?type=...") fails the permission match: honouring it means narrowing the
# query or filtering the response, which an ext_authz check cannot do, so it is refused.
grants_read_and_search(scope) if {
	[resource, permissions] := split(scope, ".")
	resource in {"patient/ExplanationOfBenefit", "patient/*"}
	read_and_search(permissions)
}

# v1: "read" == "rs"; "*" is every permission.
read_and_search(permissions) if permissions in {"read", "*"}

# v2: letters of "cruds" in that order, r and s among them.
read_and_search(permissions) if regex.match(`^c?ru?d?s$`, permissions)

# --- query ---------------------------------------------------------------------------------------------------

# One patient parameter with one value, equal to the token's patient claim (launch/patient), bare or as a
# reference. "A,B" is an OR list and never equals the claim.
patient_ok if {
	is_string(claims.patient)
	claims.patient != ""
	[value] := input.parsed_query.patient
	value in {claims.patient, concat("/", ["Patient", claims.patient])}
}

# An allow-list: chained (patient.name), reverse-chained (_has:...), modified (patient:Patient),
# other compartment parameters (subject, beneficiary) and _include/_revinclude all fall outside it.
allowed_params := {"patient", "_count", "_lastUpdated", "service-date", "type", "status"}

params_ok if {
	every name, _ in input.parsed_query {
		name in allowed_params
	}
	query_fully_parsed
}

# Go's url.Query drops the pairs it cannot parse (a bad percent escape, a ";", an empty name) without a
# word, so a parameter the upstream would see can be missing from parsed_query. Every "&"-separated pair of
# the raw query must be one of the values parsed.
query_fully_parsed if {
	[_, raw_query] := split(http_request.path, "?")
	count(split(raw_query, "&")) == sum([count(values) | some values in input.parsed_query])
}
