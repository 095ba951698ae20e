package decision

import (
	"errors"
	"net/http"
	"slices"

	"github.com/fhirwall/fhirwall/internal/fhir"
	"github.com/fhirwall/fhirwall/internal/smart"
	"github.com/fhirwall/fhirwall/internal/token"
)

// ReasonInsufficientScope is the policies' reason for a refusal the token's scopes caused.
const ReasonInsufficientScope = "insufficient_scope"

// withChallenge gives a refusal the RFC 6750 §3 challenge an app can act on: a 401 says invalid_token when a
// token was presented and refused (none presented: the plain challenge), and a 403 the policy gave for
// insufficient_scope names a scope that would have been enough.
func withChallenge(d *Decision) {
	if d.Allow {
		return
	}
	switch d.Refusal.Status {
	case http.StatusUnauthorized:
		if _, err := token.FromAuthorization(d.Input.Authorization); !errors.Is(err, token.ErrMissing) {
			d.Refusal = d.Refusal.InvalidToken()
		}
	case http.StatusForbidden:
		if slices.Contains(d.Reasons, ReasonInsufficientScope) {
			d.Refusal = d.Refusal.InsufficientScope(NeededScope(d.Identity, d.Request))
		}
	}
}

// NeededScope is the SMART scope that would permit req for this identity, e.g. patient/ExplanationOfBenefit.rs;
// "" when none can be named. The context is the identity's: a patient in the token is patient/, a backend
// client's organisation system/, anyone else user/ (policies/provider_access.rego scope_context). Reads and
// searches name "rs", the form the realm grants (config/keycloak); writes name their one letter.
func NeededScope(id *token.Identity, req fhir.Request) string {
	if id == nil {
		return ""
	}
	ctx := smart.UserContext
	switch {
	case id.Patient != "":
		ctx = smart.PatientContext
	case id.Org != "":
		ctx = smart.SystemContext
	}
	typ, perm := req.ResourceType, ""
	switch req.Interaction {
	case fhir.Read, fhir.VRead, fhir.HistoryInstance, fhir.SearchType, fhir.SearchCompartment, fhir.HistoryType:
		perm = "rs"
	case fhir.Create:
		perm = "c"
	case fhir.Update, fhir.Patch:
		perm = "u"
	case fhir.Delete:
		perm = "d"
	case fhir.Operation:
		if req.Operation != nil && req.Operation.Name == "export" {
			// Bulk Data kick-off on a Group: policies/provider_access.rego asks for Group read.
			typ, perm = "Group", "rs"
		}
	}
	if perm == "" || typ == "" {
		return ""
	}
	return string(ctx) + "/" + typ + "." + perm
}
