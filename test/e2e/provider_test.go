//go:build e2e

package e2e

import (
	"github.com/fhirwall/fhirwall/test/stackenv"

	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/test/smartclient"
)

// The seed attributes member-01 04 07 10 12 13 16 19 22 24 to org-a; member-12 opted out of Provider Access.
var orgAPermitted = []string{"member-01", "member-04", "member-07", "member-10", "member-13", "member-16", "member-19", "member-22", "member-24"}

// providerOrgAToken is a SMART Backend Services token of provider-org-a (client_credentials with a signed
// client assertion, as a provider's system gets one).
func providerOrgAToken(t *testing.T) string {
	t.Helper()
	key, err := smartclient.LoadPrivateKey(filepath.Join(repoRoot(), "test", "fixtures", "keys", "provider-org-a.TEST-ONLY.key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := smartclient.BackendServiceToken(ctx(t), issuer, "provider-org-a", key, "provider-org-a-test-1", []string{"system/*.rs"})
	if err != nil {
		t.Fatalf("backend token for provider-org-a: %v", err)
	}
	return tok.AccessToken
}

var providerModes = []struct{ name, base string }{
	{"envoy", stackenv.EnvoyURL() + "/provider-access/fhir"},
	{"standalone", stackenv.StandaloneURL + "/provider-access/fhir"},
}

func TestProviderSeesExactlyItsAttributedMembersWhoDidNotOptOut(t *testing.T) {
	evidence.Proves(t, "CMS-PROV-01", "CMS-PROV-02")
	provider := providerOrgAToken(t)
	member := member01Token(t)
	for _, m := range providerModes {
		t.Run(m.name, func(t *testing.T) {
			// Every patient the provider can list is attributed and not opted out, and all of them are there.
			a := send(t, "GET", m.base+"/Patient?_count=100", provider, nil, "")
			if a.status != 200 {
				t.Fatalf("Patient search: %d %.300s", a.status, a.body)
			}
			var ids []string
			for _, r := range entries(t, a.body) {
				ids = append(ids, r["id"].(string))
			}
			slices.Sort(ids)
			if !slices.Equal(ids, orgAPermitted) {
				t.Fatalf("provider sees %v, want exactly %v", ids, orgAPermitted)
			}
			// Claims: a search names its members (every permitted one here), and only their EOBs come back.
			a = send(t, "GET", m.base+"/ExplanationOfBenefit?_count=200&patient="+strings.Join(orgAPermitted, ","), provider, nil, "")
			if a.status != 200 {
				t.Fatalf("EOB search: %d %.300s", a.status, a.body)
			}
			for _, r := range entries(t, a.body) {
				ref := mustJSON(r["patient"])
				if !slices.ContainsFunc(orgAPermitted, func(p string) bool { return strings.Contains(ref, `"Patient/`+p+`"`) }) {
					t.Errorf("EOB %v of %s returned to org-a", r["id"], ref)
				}
			}
			// A search naming nobody would list every member in a URL: refused, pointing at the group export.
			if r := send(t, "GET", m.base+"/ExplanationOfBenefit", provider, nil, ""); r.status != 400 || !strings.Contains(string(r.body), "$export") {
				t.Errorf("EOB search naming nobody: %d %.300s", r.status, r.body)
			}
			// The links the provider is shown never name a member it did not send (the Group narrowing is
			// fhirwall's, not the client's).
			if strings.Contains(string(send(t, "GET", m.base+"/Patient?_count=2", provider, nil, "").body), "_has") {
				t.Error("a link shows the attribution Group narrowing")
			}
			// Opted out, not attributed, and missing: one answer.
			optedOut := send(t, "GET", m.base+"/Patient/member-12", provider, nil, "")
			unattributed := send(t, "GET", m.base+"/Patient/member-02", provider, nil, "")
			missing := send(t, "GET", m.base+"/Patient/no-such-member", provider, nil, "")
			for name, r := range map[string]exchangeResult{"opted out": optedOut, "unattributed": unattributed, "missing": missing} {
				if r.status != 404 || string(r.body) != string(missing.body) {
					t.Errorf("%s member: %d %s, want the same 404 as a missing one", name, r.status, r.body)
				}
			}
			if r := send(t, "GET", m.base+"/ExplanationOfBenefit?patient=member-12", provider, nil, ""); r.status != 404 {
				t.Errorf("opted-out member's claims by search: %d", r.status)
			}
			if r := send(t, "GET", m.base+"/ExplanationOfBenefit/"+eobIDOf(t, "member-02"), provider, nil, ""); r.status != 404 {
				t.Errorf("unattributed member's claim by id: %d", r.status)
			}
			// A member's patient app is not a provider: the client is not registered for this API.
			if r := send(t, "GET", m.base+"/Patient", member, nil, ""); r.status != 403 {
				t.Errorf("patient app on Provider Access: %d %.200s", r.status, r.body)
			}
		})
	}
}
