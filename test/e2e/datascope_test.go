//go:build e2e

package e2e

import (
	"strings"
	"testing"

	"github.com/fhirwall/fhirwall/internal/evidence"
)

// TestProviderSeesClaimsWithoutCostSharingWhileTheMemberStillDoes: the same member's claims through both
// APIs. Provider Access returns them without remittance or cost-sharing, without claims before 2016 and
// without drug prior authorisations; the member's own Patient Access view still carries all of it.
func TestProviderSeesClaimsWithoutCostSharingWhileTheMemberStillDoes(t *testing.T) {
	evidence.Proves(t, "CMS-PA-03", "CMS-PROV-03", "CMS-PROV-04", "CMS-PA-05")
	provider := providerOrgAToken(t)
	member := member01Token(t)
	for i, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			own := send(t, "GET", m.base+"/ExplanationOfBenefit?_count=50", member, nil, "")
			if own.status != 200 {
				t.Fatalf("member's own claims: %d", own.status)
			}
			ownIDs := map[string]bool{}
			costShared := false
			for _, r := range entries(t, own.body) {
				ownIDs[r["id"].(string)] = true
				if _, ok := r["total"]; ok {
					costShared = true
				}
			}
			if !costShared || !ownIDs["eob-member-01-1"] || !ownIDs["priorauth-member-01-1"] {
				t.Fatalf("the member's own view lost cost-sharing or claims: %v", ownIDs)
			}
			if ownIDs["priorauth-member-01-2"] {
				t.Error("a drug prior authorisation reached the member (CMS-0057-F: prior auths, not drugs)")
			}

			prov := send(t, "GET", providerModes[i].base+"/ExplanationOfBenefit?patient=member-01&_count=50", provider, nil, "")
			if prov.status != 200 {
				t.Fatalf("provider's view: %d %.200s", prov.status, prov.body)
			}
			got := map[string]bool{}
			for _, r := range entries(t, prov.body) {
				id := r["id"].(string)
				got[id] = true
				body := mustJSON(r)
				for _, financial := range []string{`"total"`, `"payment":{"amount"`, `"amount":{"value"`, `"unitPrice"`, `"net"`} {
					if r["use"] == "claim" && strings.Contains(body, financial) {
						t.Errorf("%s reaches the provider with %s", id, financial)
					}
				}
				if r["use"] == "claim" && !strings.Contains(mustJSON(r["meta"]), "NonFinancial") {
					t.Errorf("%s does not claim a non-financial profile: %v", id, r["meta"])
				}
			}
			if got["eob-member-01-1"] {
				t.Error("a claim from before 2016 reached the provider")
			}
			if got["priorauth-member-01-2"] {
				t.Error("a drug prior authorisation reached the provider")
			}
			if !got["eob-member-01-2"] || !got["priorauth-member-01-1"] {
				t.Errorf("claims the provider may see are missing: %v", got)
			}
		})
	}
}
