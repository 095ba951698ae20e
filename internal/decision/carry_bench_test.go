package decision

import (
	"context"
	"testing"

	"github.com/fhirwall/fhirwall/internal/policy"
	"github.com/fhirwall/fhirwall/internal/token"
)

// benchCarried are the decisions Envoy mode seals most: a member's app searching its EOBs, and a provider
// organisation's search (its membership is read again on Unseal, from the fakes here, as from the cache there).
func benchCarried(b *testing.B) map[string]*Decision {
	all := carryDecisions(b)
	q := "patient=p1&_count=10&_sort=-billable-period"
	eob := *all["sandbox"]
	eob.ID, eob.Input.API, eob.Input.Path, eob.Input.RawQuery, eob.UpstreamQuery = "dec-eob", "patient-access", "/ExplanationOfBenefit", q, q
	eob.Request = carryRequestOf(b, "GET", "/ExplanationOfBenefit", q, nil, nil)
	eob.Identity = &token.Identity{Issuer: "https://idp.example/realms/smart", ClientID: "patient-app", Subject: "5f0c2d7e-3b8a-4e61-9a2f-1d6c8b7e4a90",
		Patient: "p1", FHIRUser: "Patient/p1", JTI: "2b8d0b0e-64a4-4b59-9b8f-7f6b1b0c9a11", Expiry: carryT0.Add(5 * 60e9),
		Scopes: []string{"openid", "fhirUser", "launch/patient", "patient/ExplanationOfBenefit.rs", "patient/Coverage.rs"}}
	eob.Policy = policy.Result{Allow: true, Status: 200, Reasons: []string{}, Revision: "sha256:3f1c9a0e5b7d2c48",
		Obligations: policy.Obligations{Compartment: &policy.Compartment{Patient: "p1"}, RateClass: "standard",
			ResourceTypes: map[string]policy.Constraints{"ExplanationOfBenefit": {}, "Coverage": {}}, PublicTypes: []string{"Practitioner", "Organization"}}}
	// The inputs the policy saw, as Decide records them: they travel with the decision (carry.go).
	eob.PolicyInput, _ = recordedInput(withRegistry(policyInput(eob.Input.API, eob.Identity, eob.Request), &eob))
	prov := *all["provider access with membership"]
	in := withRegistry(policyInput(prov.Input.API, prov.Identity, prov.Request), &prov)
	in["facts"] = map[string]any{"provider": "Organization/org-a", "attribution_group": "attribution-org-a",
		"has_permitted": true, "patients": map[string]any{"m1": true}}
	prov.PolicyInput, _ = recordedInput(in)
	return map[string]*Decision{"patient EOB search": &eob, "provider with membership": &prov}
}

func BenchmarkSeal(b *testing.B) {
	for name, d := range benchCarried(b) {
		b.Run(name, func(b *testing.B) {
			c, _ := carryCore(b)
			sealed, err := c.Seal(d)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Seal(d); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(sealed)), "sealed-bytes") // after the loop: b.Loop's reset deletes metrics
		})
	}
}

func BenchmarkUnseal(b *testing.B) {
	for name, d := range benchCarried(b) {
		b.Run(name, func(b *testing.B) {
			c, _ := carryCore(b)
			sealed, err := c.Seal(d)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(sealed)))
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Unseal(ctx, sealed); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
