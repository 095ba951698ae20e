//go:build e2e

package priorauth_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/test/membermatch"
	pa "github.com/fhirwall/fhirwall/test/priorauth"
	"github.com/fhirwall/fhirwall/test/stackauth"
)

// consentTag marks the Consents fhirwall stores after a Payer-to-Payer match (adapters/payerexchange).
const consentTag = "https://fhirwall.dev/CodeSystem/payer-to-payer-consent-from"

// TestDecisionsShowThroughPatientAccessAndPayerToPayer: org-a's approved (MRI), denied (B4185), pended
// (CABG) and drug (J1745) requests for member-05 become PDex prior authorizations (ExplanationOfBenefit
// use=preauthorization). She sees the first three through Patient Access, never the drug one; payer-b, after
// a $member-match with her opt-in, sees the approved and the pended one, never the denied nor the drug one.
func TestDecisionsShowThroughPatientAccessAndPayerToPayer(t *testing.T) {
	evidence.Proves(t, "CMS-PA-05", "CMS-P2P-03")
	stackReady(t)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			tok, mt := provider(t, "provider-org-a"), member(t)
			payerB := backendP2P(t)
			approved := mustSubmit(t, m, tok, pa.NewRequest(id(m, "visible-approved"), pa.MRIBrain), pa.Approved)
			denied := mustSubmit(t, m, tok, pa.NewRequest(id(m, "visible-denied"), pa.EnteralB4185), pa.Denied)
			pendedReq := pa.NewRequest(id(m, "visible-pended"), pa.CABG)
			decideLeftovers(t, &pendedReq)
			pended := mustSubmit(t, m, tok, pendedReq, pa.Pended)
			drug := mustSubmit(t, m, tok, pa.NewRequest(id(m, "visible-drug"), pa.Infliximab), pa.Approved)

			// The admin API's view of one request names its PDex prior authorization.
			eob := map[string]string{}
			for name, s := range map[string]submission{"approved": approved, "denied": denied, "pended": pended, "drug": drug} {
				if s.decision.RequestID == "" {
					t.Fatalf("the %s request's ClaimResponse has no identifier %s: %s", name, pa.RequestIDSystem, s.a.body)
				}
				it, st, err := admin(t).Get(ctx(t), s.decision.RequestID)
				if err != nil || st != http.StatusOK {
					t.Fatalf("admin API GET requests/%s: %d %v", s.decision.RequestID, st, err)
				}
				eob[name] = it.EOBID
				if it.EOBID == "" && name != "drug" {
					t.Fatalf("the admin API names no ExplanationOfBenefit for the %s request: %v", name, it.Raw)
				}
			}

			// Patient Access: her own prior auths, not the drug one.
			for _, name := range []string{"approved", "denied", "pended"} {
				a := send(t, "GET", m.patientAccess+"/ExplanationOfBenefit/"+eob[name], mt, nil, nil)
				var r struct{ ResourceType, Use string }
				if a.status != http.StatusOK || json.Unmarshal(a.body, &r) != nil || r.Use != "preauthorization" {
					t.Errorf("Patient Access read of her %s prior auth: %s; want 200 use=preauthorization", name, a)
				}
			}
			if eob["drug"] != "" {
				if a := send(t, "GET", m.patientAccess+"/ExplanationOfBenefit/"+eob["drug"], mt, nil, nil); a.status != http.StatusNotFound {
					t.Errorf("Patient Access read of her drug prior auth: %s; want 404", a)
				}
			}
			seen := searchEOBs(t, m.patientAccess, mt, "patient="+pa.Member05.ID, drug.req.Identifier)
			for _, name := range []string{"approved", "denied", "pended"} {
				if !seen[eob[name]] {
					t.Errorf("Patient Access search of her claims lacks the %s prior auth ExplanationOfBenefit/%s", name, eob[name])
				}
			}
			if eob["drug"] != "" && seen[eob["drug"]] {
				t.Errorf("Patient Access search of her claims carries the drug prior auth ExplanationOfBenefit/%s", eob["drug"])
			}

			// Payer-to-Payer: payer-b after matching her with her opt-in.
			forgetConsents(t)
			match := send(t, "POST", m.payerToPayer+"/Patient/$member-match", payerB, nil, memberMatchIn())
			if match.status != http.StatusOK {
				t.Fatalf("payer-b's $member-match of member-05: %s", match)
			}
			for name, want := range map[string]int{"approved": 200, "pended": 200, "denied": 404, "drug": 404} {
				if eob[name] == "" {
					continue
				}
				if a := send(t, "GET", m.payerToPayer+"/ExplanationOfBenefit/"+eob[name], payerB, nil, nil); a.status != want {
					t.Errorf("payer-b reading the %s prior auth: %s; want %d", name, a, want)
				}
			}
			seen = searchEOBs(t, m.payerToPayer, payerB, "patient=Patient/"+pa.Member05.ID, drug.req.Identifier, denied.req.Identifier)
			for _, name := range []string{"approved", "pended"} {
				if !seen[eob[name]] {
					t.Errorf("payer-b's search of her claims lacks the %s prior auth ExplanationOfBenefit/%s", name, eob[name])
				}
			}
			for _, name := range []string{"denied", "drug"} {
				if eob[name] != "" && seen[eob[name]] {
					t.Errorf("payer-b's search of her claims carries the %s prior auth ExplanationOfBenefit/%s", name, eob[name])
				}
			}
		})
	}
}

// searchEOBs follows an ExplanationOfBenefit search's pages (up to 20) and returns the ids seen; no page may
// carry any of never (the unique Claim identifiers of requests that must not show).
func searchEOBs(t *testing.T, base, token, query string, never ...string) map[string]bool {
	t.Helper()
	seen := map[string]bool{}
	next := base + "/ExplanationOfBenefit?" + query + "&_count=100"
	for page := 0; next != "" && page < 20; page++ {
		a := send(t, "GET", next, token, nil, nil)
		if a.status != http.StatusOK {
			t.Fatalf("search: %s", a)
		}
		for _, n := range never {
			if strings.Contains(string(a.body), n) {
				t.Errorf("search page %d carries %s, which must not show here", page+1, n)
			}
		}
		var b struct {
			Entry []struct{ Resource struct{ ID string } }
			Link  []struct{ Relation, URL string }
		}
		if err := json.Unmarshal(a.body, &b); err != nil {
			t.Fatalf("search page is not a Bundle: %.300s", a.body)
		}
		for _, e := range b.Entry {
			seen[e.Resource.ID] = true
		}
		next = ""
		for _, l := range b.Link {
			if l.Relation == "next" {
				next = l.URL
			}
		}
	}
	return seen
}

func backendP2P(t *testing.T) string {
	t.Helper()
	tok, err := stackauth.Backend(ctx(t), "payer-b", "system/*.rs")
	if err != nil {
		t.Fatal(err)
	}
	return tok.AccessToken
}

// memberMatchIn is payer-b's HRex member-match-in for member-05 (the seed's demographics and member id),
// with an opt-in naming payer-b.
func memberMatchIn() []byte {
	mb := pa.Member05
	return membermatch.In(membermatch.Member{Name: membermatch.Name(mb.Family, mb.Given), BirthDate: mb.BirthDate, Gender: mb.Gender,
		IDSystem: pa.MemberIDSystem, MemberID: mb.Number}.Parts(membermatch.OptIn("Organization/payer-b", membermatch.PolicyRegular)))
}

// forgetConsents deletes the Consents fhirwall stored for member-05 after payer-b's matches (a previous run's
// too), now and when t ends, so no other suite meets her opted in.
func forgetConsents(t *testing.T) {
	t.Helper()
	sweep := func() {
		q := url.Values{"patient": {"Patient/" + pa.Member05.ID}, "_tag": {consentTag + "|payer-b"}, "_count": {"500"}}
		st, b := hapi(t, "GET", "Consent?"+q.Encode())
		if st != http.StatusOK {
			t.Errorf("HAPI Consent search: %d %.300s", st, b)
			return
		}
		var bundle struct {
			Entry []struct{ Resource struct{ ID string } }
		}
		_ = json.Unmarshal(b, &bundle)
		for _, e := range bundle.Entry {
			if st, body := hapi(t, "DELETE", "Consent/"+e.Resource.ID); st >= 300 {
				t.Errorf("HAPI DELETE Consent/%s: %d %.300s", e.Resource.ID, st, body)
			}
		}
	}
	sweep()
	t.Cleanup(sweep)
}
