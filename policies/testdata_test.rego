# Inputs shared by the policy tests.
package fhirwall.testdata

import rego.v1

scope(context, type, perms) := {"raw": sprintf("%s/%s.%s", [context, type, perms]), "context": context, "resource_type": type, "permissions": {p: true | some p in split(perms, "")}}

member01 := {
	"client_id": "patient-app", "subject": "u-1", "patient": "member-01",
	"scopes": [scope("patient", "*", "rs")],
}

request(interaction, type, id, params) := {"interaction": interaction, "resource_type": type, "id": id, "params": params}

patient_access(identity, req) := {"api": "patient-access", "authenticated": true, "identity": identity, "request": req}
