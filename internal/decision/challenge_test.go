package decision

import (
	"testing"

	"github.com/fhirwall/fhirwall/internal/fhir"
	"github.com/fhirwall/fhirwall/internal/outcome"
	"github.com/fhirwall/fhirwall/internal/token"
)

func TestScopeRefusalNamesTheScopeThatWouldPermitTheRequest(t *testing.T) {
	member := &token.Identity{Patient: "member-01"}
	backend := &token.Identity{Org: "Organization/org-a"}
	clinician := &token.Identity{FHIRUser: "Practitioner/p1"}
	for _, tc := range []struct {
		name string
		id   *token.Identity
		req  fhir.Request
		want string
	}{
		{"member reads a claim", member, fhir.Request{Interaction: fhir.Read, ResourceType: "ExplanationOfBenefit"}, "patient/ExplanationOfBenefit.rs"},
		{"member searches coverage", member, fhir.Request{Interaction: fhir.SearchType, ResourceType: "Coverage"}, "patient/Coverage.rs"},
		{"backend searches patients", backend, fhir.Request{Interaction: fhir.SearchType, ResourceType: "Patient"}, "system/Patient.rs"},
		{"clinician reads a condition", clinician, fhir.Request{Interaction: fhir.VRead, ResourceType: "Condition"}, "user/Condition.rs"},
		{"backend starts a group export", backend, fhir.Request{Interaction: fhir.Operation, ResourceType: "Group", Operation: &fhir.OperationName{Name: "export"}}, "system/Group.rs"},
		{"a write names its letter", member, fhir.Request{Interaction: fhir.Update, ResourceType: "Patient"}, "patient/Patient.u"},
		{"no identity, no scope", nil, fhir.Request{Interaction: fhir.Read, ResourceType: "Patient"}, ""},
		{"a batch has no one scope", member, fhir.Request{Interaction: fhir.Batch}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := NeededScope(tc.id, tc.req); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRefusalsCarryTheRFC6750ChallengeAnAppCanActOn(t *testing.T) {
	for _, tc := range []struct {
		name string
		d    Decision
		want string
	}{
		{"no token", Decision{Refusal: outcome.Unauthenticated}, `Bearer realm="fhirwall"`},
		{"token refused", Decision{Refusal: outcome.Unauthenticated, Input: Input{Authorization: []string{"Bearer expired"}}},
			`Bearer realm="fhirwall", error="invalid_token"`},
		{"scope refused", Decision{Refusal: outcome.Forbidden, Reasons: []string{"insufficient_scope"}, Identity: &token.Identity{Patient: "m"},
			Request: fhir.Request{Interaction: fhir.Read, ResourceType: "ExplanationOfBenefit"}},
			`Bearer realm="fhirwall", error="insufficient_scope", scope="patient/ExplanationOfBenefit.rs"`},
		{"another 403 says nothing of scopes", Decision{Refusal: outcome.Forbidden, Reasons: []string{"client_inactive"}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.d
			withChallenge(&d)
			if got := d.Refusal.Headers()["www-authenticate"]; got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}
